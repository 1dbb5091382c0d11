//! SQLite: datasources.

use super::{parse_opt_ts, parse_ts, ts};
use super::{SqliteDb, SqliteTx};
use crate::store::datasources::*;
use crate::store::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

fn from_row(r: SqliteRow) -> StoreResult<DataSourceRecord> {
    Ok(DataSourceRecord {
        id: r.get("id"),
        instance_id: r.get("instance_id"),
        name: r.get("name"),
        entity_name: r.get("entity_name"),
        format: r.get("format"),
        key_field: r.get("key_field"),
        content: r.get("content"),
        path: r.get("path"),
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
        last_status: r.get("last_status"),
        last_rows: r.get("last_rows"),
        last_error: r.get("last_error"),
        last_started_at: parse_opt_ts(r.get("last_started_at"))?,
        last_completed_at: parse_opt_ts(r.get("last_completed_at"))?,
    })
}

impl SqliteDb {
    pub async fn insert_data_source(&self, d: &DataSourceRecord) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT name FROM data_sources WHERE instance_id = ? AND entity_name = ?",
        )
        .bind(&d.instance_id)
        .bind(&d.entity_name)
        .fetch_optional(tx.connection())
        .await?;
        if let Some(other) = taken {
            return Err(StoreError::Conflict(format!(
                "entity '{}' is already fed by data source '{other}'",
                d.entity_name
            )));
        }
        sqlx::query(
            "INSERT INTO data_sources (id, instance_id, name, entity_name, format, key_field, content, path, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&d.id)
        .bind(&d.instance_id)
        .bind(&d.name)
        .bind(&d.entity_name)
        .bind(&d.format)
        .bind(&d.key_field)
        .bind(&d.content)
        .bind(&d.path)
        .bind(ts(d.created_at))
        .execute(tx.connection())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_data_sources(&self, instance_id: &str) -> StoreResult<Vec<DataSourceRecord>> {
        sqlx::query("SELECT * FROM data_sources WHERE instance_id = ? ORDER BY created_at, id")
            .bind(instance_id)
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(from_row)
            .collect()
    }

    pub async fn get_data_source(
        &self,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<DataSourceRecord> {
        let row = sqlx::query("SELECT * FROM data_sources WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        from_row(row)
    }

    /// Records the outcome of a refresh inside the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_data_source_refresh(
        tx: &mut SqliteTx<'_>,
        id: &str,
        succeeded: bool,
        rows: i64,
        error: Option<&str>,
        started_at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE data_sources SET last_status = ?, last_rows = ?, last_error = ?, last_started_at = ?, last_completed_at = ?
             WHERE id = ?",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(rows)
        .bind(error)
        .bind(ts(started_at))
        .bind(ts(completed_at))
        .bind(id)
        .execute(tx.connection())
        .await?;
        Ok(())
    }
}
