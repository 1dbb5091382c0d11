//! PostgreSQL: datasources.

use super::{id_or_not_found, parse_id, PgDb, PgTx};
use crate::store::datasources::*;
use crate::store::*;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

fn from_row(r: PgRow) -> DataSourceRecord {
    DataSourceRecord {
        id: r.get::<uuid::Uuid, _>("id").to_string(),
        instance_id: r.get::<uuid::Uuid, _>("instance_id").to_string(),
        name: r.get("name"),
        entity_name: r.get("entity_name"),
        format: r.get("format"),
        key_field: r.get("key_field"),
        content: r.get("content"),
        path: r.get("path"),
        created_at: r.get("created_at"),
        last_status: r.get("last_status"),
        last_rows: r.get("last_rows"),
        last_error: r.get("last_error"),
        last_started_at: r.get("last_started_at"),
        last_completed_at: r.get("last_completed_at"),
    }
}

impl PgDb {
    pub async fn insert_data_source(&self, d: &DataSourceRecord) -> StoreResult<()> {
        let id = parse_id(&d.id)
            .ok_or_else(|| StoreError::Corrupt(format!("data source id '{}' is no uuid", d.id)))?;
        let instance_id = id_or_not_found(&d.instance_id)?;
        let mut tx = self.begin().await?;
        // Locking the instance row serialises data-source inserts of one instance across
        // replicas, so two of them cannot both find the entity free and both take it.
        let instance: Option<i32> =
            sqlx::query_scalar("SELECT 1 FROM instances WHERE id = $1 FOR UPDATE")
                .bind(instance_id)
                .fetch_optional(tx.connection())
                .await?;
        if instance.is_none() {
            return Err(StoreError::NotFound);
        }
        let taken: Option<String> = sqlx::query_scalar(
            "SELECT name FROM data_sources WHERE instance_id = $1 AND entity_name = $2",
        )
        .bind(instance_id)
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
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(id)
        .bind(instance_id)
        .bind(&d.name)
        .bind(&d.entity_name)
        .bind(&d.format)
        .bind(&d.key_field)
        .bind(&d.content)
        .bind(&d.path)
        .bind(d.created_at)
        .execute(tx.connection())
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_data_sources(&self, instance_id: &str) -> StoreResult<Vec<DataSourceRecord>> {
        let Some(instance_id) = parse_id(instance_id) else {
            return Ok(Vec::new());
        };
        Ok(
            sqlx::query(
                "SELECT * FROM data_sources WHERE instance_id = $1 ORDER BY created_at, id",
            )
            .bind(instance_id)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(from_row)
            .collect(),
        )
    }

    pub async fn get_data_source(
        &self,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<DataSourceRecord> {
        let instance_id = id_or_not_found(instance_id)?;
        let id = id_or_not_found(id)?;
        let row = sqlx::query("SELECT * FROM data_sources WHERE instance_id = $1 AND id = $2")
            .bind(instance_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        Ok(from_row(row))
    }

    /// Records the outcome of a refresh inside the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_data_source_refresh(
        tx: &mut PgTx<'_>,
        id: &str,
        succeeded: bool,
        rows: i64,
        error: Option<&str>,
        started_at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        let Some(id) = parse_id(id) else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE data_sources SET last_status = $1, last_rows = $2, last_error = $3, last_started_at = $4, last_completed_at = $5
             WHERE id = $6",
        )
        .bind(if succeeded { "succeeded" } else { "failed" })
        .bind(rows)
        .bind(error)
        .bind(started_at)
        .bind(completed_at)
        .bind(id)
        .execute(tx.connection())
        .await?;
        Ok(())
    }
}
