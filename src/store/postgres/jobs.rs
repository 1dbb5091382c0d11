//! PostgreSQL: jobs.
//!
//! Heartbeats and the stale cut-off use the database's clock, so replicas whose clocks disagree
//! still agree on which jobs stopped heartbeating.

use super::{id_or_not_found, PgDb, PgTx};
use crate::store::jobs::*;
use crate::store::*;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::Row;
use std::time::Duration;

/// The advisory lock (transaction level) that serialises claims across replicas: the choice
/// "oldest queued job of an instance with no running job" must see every earlier claim, or two
/// replicas could start two jobs of one instance.
const CLAIM_LOCK: i64 = 0x6a6f_6273_636c_6169; // "jobsclai"

fn job_from_row(r: PgRow) -> JobRecord {
    JobRecord {
        id: r.get::<uuid::Uuid, _>("id").to_string(),
        instance_id: r.get::<uuid::Uuid, _>("instance_id").to_string(),
        kind: r.get("kind"),
        target_id: r.get("target_id"),
        status: r.get("status"),
        created_at: r.get("created_at"),
        started_at: r.get("started_at"),
        completed_at: r.get("completed_at"),
        result: r
            .get::<Option<sqlx::types::Json<Value>>, _>("result")
            .map(|j| j.0),
        error: r.get("error"),
    }
}

const JOB_COLUMNS: &str =
    "id, instance_id, kind, target_id, status, created_at, started_at, completed_at, result, error";

async fn insert_job(conn: &mut sqlx::PgConnection, job: &JobRecord) -> StoreResult<()> {
    let id = id_or_not_found(&job.id)?;
    let instance_id = id_or_not_found(&job.instance_id)?;
    sqlx::query(
        "INSERT INTO jobs (id, instance_id, kind, target_id, status, created_at) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(id)
    .bind(instance_id)
    .bind(&job.kind)
    .bind(&job.target_id)
    .bind(&job.status)
    .bind(job.created_at)
    .execute(conn)
    .await?;
    Ok(())
}

impl PgDb {
    pub async fn insert_job(&self, job: &JobRecord) -> StoreResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_job(&mut conn, job).await
    }

    pub async fn get_job(&self, instance_id: &str, job_id: &str) -> StoreResult<JobRecord> {
        let instance_id = id_or_not_found(instance_id)?;
        let job_id = id_or_not_found(job_id)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE instance_id = $1 AND id = $2"
        )))
        .bind(instance_id)
        .bind(job_id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(job_from_row(row))
    }

    /// Claims the oldest queued job of an instance that has no running job, for `owner`. Claims
    /// of all replicas take turns on [`CLAIM_LOCK`]; the UPDATE runs after the lock is granted,
    /// so (read committed) it sees every claim committed before.
    pub async fn claim_next_job(&self, owner: &str) -> StoreResult<Option<JobRecord>> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(CLAIM_LOCK)
            .execute(tx.connection())
            .await?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "UPDATE jobs SET status = 'running', started_at = $1, owner = $2, heartbeat_at = now()
             WHERE id = (SELECT j.id FROM jobs j
                         WHERE j.status = 'queued'
                           AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.instance_id = j.instance_id AND r.status = 'running')
                         ORDER BY j.created_at, j.id LIMIT 1)
             RETURNING {JOB_COLUMNS}"
        )))
        .bind(Utc::now())
        .bind(owner)
        .fetch_optional(tx.connection())
        .await?;
        tx.commit().await?;
        Ok(row.map(job_from_row))
    }

    pub async fn heartbeat_jobs(&self, owner: &str, ids: &[String]) -> StoreResult<u64> {
        let ids: Vec<uuid::Uuid> = ids.iter().filter_map(|id| super::parse_id(id)).collect();
        let done = sqlx::query(
            "UPDATE jobs SET heartbeat_at = now()
             WHERE owner = $1 AND status = 'running' AND id = ANY($2)",
        )
        .bind(owner)
        .bind(ids)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn fail_stale_jobs(&self, timeout: Duration) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', completed_at = $1, error = $2
             WHERE status = 'running'
               AND (heartbeat_at IS NULL OR heartbeat_at < now() - make_interval(secs => $3))",
        )
        .bind(Utc::now())
        .bind(stale_reason(timeout))
        .bind(timeout.as_secs_f64())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    /// Other replicas' running jobs are alive: the heartbeat sweep, not start-up, fails jobs.
    pub async fn fail_interrupted_jobs(&self) -> StoreResult<u64> {
        Ok(0)
    }

    /// Marks the job finished inside the caller's transaction.
    pub async fn finish_job(
        tx: &mut PgTx<'_>,
        job_id: &str,
        succeeded: bool,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let Some(job_id) = super::parse_id(job_id) else {
            return still_running(0);
        };
        let done = sqlx::query(
            "UPDATE jobs SET status = $1, completed_at = $2, result = $3, error = $4
             WHERE id = $5 AND status = 'running'",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(Utc::now())
        .bind(result.map(sqlx::types::Json))
        .bind(error)
        .bind(job_id)
        .execute(tx.connection())
        .await?;
        still_running(done.rows_affected())
    }

    pub async fn queue_scheduled_job(
        &self,
        occurrence: DateTime<Utc>,
        job: &JobRecord,
    ) -> StoreResult<bool> {
        let instance_id = id_or_not_found(&job.instance_id)?;
        let mut tx = self.begin().await?;
        // A replica that loses the race waits here for the winner's commit, then does nothing.
        let taken = sqlx::query(
            "INSERT INTO schedule_occurrences (instance_id, occurrence) VALUES ($1, $2)
             ON CONFLICT DO NOTHING",
        )
        .bind(instance_id)
        .bind(occurrence)
        .execute(tx.connection())
        .await?
        .rows_affected()
            == 1;
        if !taken {
            return Ok(false);
        }
        insert_job(tx.connection(), job).await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn prune_schedule_occurrences(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let done = sqlx::query("DELETE FROM schedule_occurrences WHERE occurrence < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
