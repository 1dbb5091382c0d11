//! SQLite: jobs.

use super::{parse_opt_ts, parse_ts, ts};
use super::{SqliteDb, SqliteTx};
use crate::store::jobs::stale_reason;
use crate::store::jobs::still_running;
use crate::store::jobs::*;
use crate::store::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use std::time::Duration;

fn job_from_row(r: SqliteRow) -> StoreResult<JobRecord> {
    let result: Option<String> = r.get("result");
    Ok(JobRecord {
        id: r.get("id"),
        instance_id: r.get("instance_id"),
        kind: r.get("kind"),
        target_id: r.get("target_id"),
        status: r.get("status"),
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
        started_at: parse_opt_ts(r.get("started_at"))?,
        completed_at: parse_opt_ts(r.get("completed_at"))?,
        result: result
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(|e| StoreError::Corrupt(format!("job result: {e}")))?,
        error: r.get("error"),
    })
}

async fn insert_job(conn: &mut sqlx::SqliteConnection, job: &JobRecord) -> StoreResult<()> {
    sqlx::query(
        "INSERT INTO jobs (id, instance_id, kind, target_id, status, created_at) VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&job.id)
    .bind(&job.instance_id)
    .bind(&job.kind)
    .bind(&job.target_id)
    .bind(&job.status)
    .bind(ts(job.created_at))
    .execute(conn)
    .await?;
    Ok(())
}

impl SqliteDb {
    pub async fn insert_job(&self, job: &JobRecord) -> StoreResult<()> {
        let mut conn = self.writer.acquire().await?;
        insert_job(&mut conn, job).await
    }

    pub async fn get_job(&self, instance_id: &str, job_id: &str) -> StoreResult<JobRecord> {
        let row = sqlx::query("SELECT * FROM jobs WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(job_id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        job_from_row(row)
    }

    /// Claims the oldest queued job of an instance that has no running job (jobs of one instance
    /// run one at a time, so refreshes never race on the same entities), for `owner`.
    pub async fn claim_next_job(&self, owner: &str) -> StoreResult<Option<JobRecord>> {
        let now = ts(Utc::now());
        let row = sqlx::query(
            "UPDATE jobs SET status = 'running', started_at = ?, owner = ?, heartbeat_at = ?
             WHERE id = (SELECT j.id FROM jobs j
                         WHERE j.status = 'queued'
                           AND NOT EXISTS (SELECT 1 FROM jobs r WHERE r.instance_id = j.instance_id AND r.status = 'running')
                         ORDER BY j.created_at, j.id LIMIT 1)
             RETURNING *",
        )
        .bind(&now)
        .bind(owner)
        .bind(&now)
        .fetch_optional(&mut *self.write_alone().await?)
        .await?;
        row.map(job_from_row).transpose()
    }

    pub async fn heartbeat_jobs(&self, owner: &str, ids: &[String]) -> StoreResult<u64> {
        let ids = serde_json::to_string(ids).expect("strings serialize");
        let done = sqlx::query(
            "UPDATE jobs SET heartbeat_at = ?
             WHERE owner = ? AND status = 'running' AND id IN (SELECT value FROM json_each(?))",
        )
        .bind(ts(Utc::now()))
        .bind(owner)
        .bind(ids)
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(done.rows_affected())
    }

    /// A running job without a heartbeat predates owners: stale too.
    pub async fn fail_stale_jobs(&self, timeout: Duration) -> StoreResult<u64> {
        let now = Utc::now();
        let cutoff = now - chrono::Duration::from_std(timeout).unwrap_or(chrono::Duration::MAX);
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', completed_at = ?, error = ?
             WHERE status = 'running' AND (heartbeat_at IS NULL OR heartbeat_at < ?)",
        )
        .bind(ts(now))
        .bind(stale_reason(timeout))
        .bind(ts(cutoff))
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(done.rows_affected())
    }

    pub async fn queue_scheduled_job(
        &self,
        occurrence: DateTime<Utc>,
        job: &JobRecord,
    ) -> StoreResult<bool> {
        let mut tx = self.begin().await?;
        let taken = sqlx::query(
            "INSERT INTO schedule_occurrences (instance_id, occurrence) VALUES (?, ?)
             ON CONFLICT DO NOTHING",
        )
        .bind(&job.instance_id)
        .bind(ts(occurrence))
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
        let done = sqlx::query("DELETE FROM schedule_occurrences WHERE occurrence < ?")
            .bind(ts(before))
            .execute(&mut *self.write_alone().await?)
            .await?;
        Ok(done.rows_affected())
    }

    /// Marks the job finished inside the caller's transaction.
    pub async fn finish_job(
        tx: &mut SqliteTx<'_>,
        job_id: &str,
        succeeded: bool,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE jobs SET status = ?, completed_at = ?, result = ?, error = ?
             WHERE id = ? AND status = 'running'",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(ts(Utc::now()))
        .bind(result.map(Value::to_string))
        .bind(error)
        .bind(job_id)
        .execute(tx.connection())
        .await?;
        still_running(done.rows_affected())
    }

    /// At start-up: a job left `running` was interrupted by a crash or a kill.
    pub async fn fail_interrupted_jobs(&self) -> StoreResult<u64> {
        let done = sqlx::query(
            "UPDATE jobs SET status = 'failed', completed_at = ?, error = 'interrupted: the service stopped while the job was running; start it again'
             WHERE status = 'running'",
        )
        .bind(ts(Utc::now()))
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(done.rows_affected())
    }
}
