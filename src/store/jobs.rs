//! Jobs: queued, claimed by a worker (one running job per instance), finished with their
//! result inside the domain transaction that produced it, and failed when interrupted.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use chrono::{DateTime, Utc};
use serde_json::Value;

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
    /// run one at a time, so refreshes never race on the same entities).
    pub async fn claim_next_job(&self) -> StoreResult<Option<JobRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.claim_next_job().await,
            Db::Postgres(db) => db.claim_next_job().await,
        }
    }

    /// Marks the job finished inside the caller's transaction.
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

    /// At start-up: a job left `running` was interrupted by a crash or a kill.
    pub async fn fail_interrupted_jobs(&self) -> StoreResult<u64> {
        match &self.db {
            Db::Sqlite(db) => db.fail_interrupted_jobs().await,
            Db::Postgres(db) => db.fail_interrupted_jobs().await,
        }
    }
}
