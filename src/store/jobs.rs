//! Jobs: queued, claimed by a worker (one running job per instance), finished with their
//! result inside the domain transaction that produced it, and failed when interrupted: a
//! running job carries its owner (the process running it) and a heartbeat that owner refreshes.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct JobRecord {
    pub id: String,
    pub instance_id: String,
    pub kind: String,
    pub target_id: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub result: Option<Value>,
    pub error: Option<String>,
}

/// Why the sweep failed a job whose heartbeat stopped.
pub(in crate::store) fn stale_reason(timeout: Duration) -> String {
    format!(
        "interrupted: the replica running it stopped heartbeating (no heartbeat for {} s: it stopped or lost the database); start it again",
        timeout.as_secs()
    )
}

impl Store {
    pub async fn insert_job(&self, job: &JobRecord) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.insert_job(job).await,
            Db::Postgres(db) => db.insert_job(job).await,
        }
    }

    pub async fn get_job(&self, instance_id: &str, job_id: &str) -> StoreResult<JobRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_job(instance_id, job_id).await,
            Db::Postgres(db) => db.get_job(instance_id, job_id).await,
        }
    }

    /// Claims the oldest queued job of an instance that has no running job (jobs of one instance
    /// run one at a time, so refreshes never race on the same entities), for `owner` (the
    /// process that will run it), with a fresh heartbeat.
    pub async fn claim_next_job(&self, owner: &str) -> StoreResult<Option<JobRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.claim_next_job(owner).await,
            Db::Postgres(db) => db.claim_next_job(owner).await,
        }
    }

    /// Says that `owner` still runs the jobs `ids` (those still running and its own); returns
    /// how many it renewed.
    pub async fn heartbeat_jobs(&self, owner: &str, ids: &[String]) -> StoreResult<u64> {
        match &self.db {
            Db::Sqlite(db) => db.heartbeat_jobs(owner, ids).await,
            Db::Postgres(db) => db.heartbeat_jobs(owner, ids).await,
        }
    }

    /// Fails every running job whose heartbeat is older than `timeout` (its process stopped or
    /// lost the database); returns how many.
    pub async fn fail_stale_jobs(&self, timeout: Duration) -> StoreResult<u64> {
        match &self.db {
            Db::Sqlite(db) => db.fail_stale_jobs(timeout).await,
            Db::Postgres(db) => db.fail_stale_jobs(timeout).await,
        }
    }

    /// Queues `job`, the refresh of the schedule occurrence `occurrence` of its instance, unless
    /// that occurrence was queued already (by this process or another replica): the occurrence
    /// is recorded and the job inserted in one transaction. Returns whether it queued.
    pub async fn queue_scheduled_job(
        &self,
        occurrence: DateTime<Utc>,
        job: &JobRecord,
    ) -> StoreResult<bool> {
        match &self.db {
            Db::Sqlite(db) => db.queue_scheduled_job(occurrence, job).await,
            Db::Postgres(db) => db.queue_scheduled_job(occurrence, job).await,
        }
    }

    /// Forgets the schedule occurrences before `before` (long past; no scheduler looks back
    /// that far); returns how many.
    pub async fn prune_schedule_occurrences(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        match &self.db {
            Db::Sqlite(db) => db.prune_schedule_occurrences(before).await,
            Db::Postgres(db) => db.prune_schedule_occurrences(before).await,
        }
    }

    /// Marks the running job finished inside the caller's transaction. A job that is no longer
    /// running (another replica failed it when this one stopped heartbeating) is a `Conflict`:
    /// the caller's transaction, with the job's results and events, must then be dropped.
    pub async fn finish_job(
        tx: &mut Tx<'_>,
        job_id: &str,
        succeeded: bool,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        match tx {
            Tx::Sqlite(tx) => SqliteDb::finish_job(tx, job_id, succeeded, result, error).await,
            Tx::Postgres(tx) => PgDb::finish_job(tx, job_id, succeeded, result, error).await,
        }
    }

    /// At start-up. On SQLite this process is the file's only user, so a job left `running`
    /// was interrupted by a crash or a kill of the previous one: failed at once. On PostgreSQL
    /// running jobs may belong to live replicas: nothing here, [`Self::fail_stale_jobs`] fails
    /// those of replicas that stopped.
    pub async fn fail_interrupted_jobs(&self) -> StoreResult<u64> {
        match &self.db {
            Db::Sqlite(db) => db.fail_interrupted_jobs().await,
            Db::Postgres(db) => db.fail_interrupted_jobs().await,
        }
    }
}

/// The outcome of a finish that changed `rows` jobs: a finish of a job that is no longer running
/// is refused, so the results of a job declared dead never land.
pub(in crate::store) fn still_running(rows: u64) -> StoreResult<()> {
    if rows == 1 {
        Ok(())
    } else {
        Err(crate::store::StoreError::Conflict(
            "the job is no longer running (it was failed while this replica was not heartbeating); its results were discarded".into(),
        ))
    }
}
