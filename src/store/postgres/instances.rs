//! PostgreSQL: instances.

use super::{id_or_not_found, parse_id, PgDb};
use crate::store::instances::*;
use crate::store::*;
use sqlx::postgres::PgRow;
use sqlx::Row;

fn instance_from_row(r: PgRow) -> InstanceRecord {
    InstanceRecord {
        id: r.get::<uuid::Uuid, _>("id").to_string(),
        tenant: r.get("tenant"),
        name: r.get("name"),
        refresh_schedule: r.get("refresh_schedule"),
        created_at: r.get("created_at"),
    }
}

const INSTANCE_COLUMNS: &str = "id, tenant, name, refresh_schedule, created_at";

impl PgDb {
    pub async fn insert_instance(&self, rec: &InstanceRecord) -> StoreResult<()> {
        let id = parse_id(&rec.id)
            .ok_or_else(|| StoreError::Corrupt(format!("instance id '{}' is no uuid", rec.id)))?;
        sqlx::query(
            "INSERT INTO instances (id, tenant, name, refresh_schedule, created_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(&rec.tenant)
        .bind(&rec.name)
        .bind(&rec.refresh_schedule)
        .bind(rec.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_instances(&self, tenant: &str) -> StoreResult<Vec<InstanceRecord>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = $1 ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(instance_from_row)
        .collect())
    }

    /// Another tenant's instance is `NotFound`, exactly like a missing one.
    pub async fn get_instance(&self, tenant: &str, id: &str) -> StoreResult<InstanceRecord> {
        let id = id_or_not_found(id)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = $1 AND id = $2"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        Ok(instance_from_row(row))
    }

    pub async fn instance_tenant(&self, id: &str) -> StoreResult<String> {
        let id = id_or_not_found(id)?;
        sqlx::query_scalar("SELECT tenant FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn all_scheduled_instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE refresh_schedule IS NOT NULL"
        )))
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(instance_from_row)
        .collect())
    }

    pub async fn update_instance(
        &self,
        tenant: &str,
        id: &str,
        name: &str,
        refresh_schedule: Option<&str>,
    ) -> StoreResult<()> {
        let id = id_or_not_found(id)?;
        let done = sqlx::query(
            "UPDATE instances SET name = $1, refresh_schedule = $2 WHERE tenant = $3 AND id = $4",
        )
        .bind(name)
        .bind(refresh_schedule)
        .bind(tenant)
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes the instance and, through foreign keys, everything in it.
    pub async fn delete_instance(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let id = id_or_not_found(id)?;
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM instances WHERE tenant = $1 AND id = $2")
            .bind(tenant)
            .bind(id)
            .execute(tx.connection())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Outbox rows reference the instance loosely (they must outlive nothing); drop them too.
        sqlx::query("DELETE FROM deliveries WHERE instance_id = $1")
            .bind(id)
            .execute(tx.connection())
            .await?;
        sqlx::query("DELETE FROM events WHERE instance_id = $1")
            .bind(id)
            .execute(tx.connection())
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
