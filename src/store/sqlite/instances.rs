//! SQLite: instances.

use super::SqliteDb;
use super::{parse_ts, ts};
use crate::store::instances::*;
use crate::store::{StoreError, StoreResult};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

fn instance_from_row(r: SqliteRow) -> StoreResult<InstanceRecord> {
    Ok(InstanceRecord {
        id: r.get("id"),
        tenant: r.get("tenant"),
        name: r.get("name"),
        refresh_schedule: r.get("refresh_schedule"),
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
    })
}

const INSTANCE_COLUMNS: &str = "id, tenant, name, refresh_schedule, created_at";

impl SqliteDb {
    pub async fn insert_instance(&self, rec: &InstanceRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO instances (id, tenant, name, refresh_schedule, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&rec.id)
        .bind(&rec.tenant)
        .bind(&rec.name)
        .bind(&rec.refresh_schedule)
        .bind(ts(rec.created_at))
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(())
    }

    pub async fn list_instances(&self, tenant: &str) -> StoreResult<Vec<InstanceRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = ? ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(instance_from_row)
        .collect()
    }

    /// Another tenant's instance is `NotFound`, exactly like a missing one.
    pub async fn get_instance(&self, tenant: &str, id: &str) -> StoreResult<InstanceRecord> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE tenant = ? AND id = ?"
        )))
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.reader)
        .await?
        .ok_or(StoreError::NotFound)?;
        instance_from_row(row)
    }

    pub async fn instance_tenant(&self, id: &str) -> StoreResult<String> {
        sqlx::query_scalar("SELECT tenant FROM instances WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)
    }

    pub async fn all_scheduled_instances(&self) -> StoreResult<Vec<InstanceRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {INSTANCE_COLUMNS} FROM instances WHERE refresh_schedule IS NOT NULL"
        )))
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(instance_from_row)
        .collect()
    }

    pub async fn update_instance(
        &self,
        tenant: &str,
        id: &str,
        name: &str,
        refresh_schedule: Option<&str>,
    ) -> StoreResult<()> {
        let done = sqlx::query(
            "UPDATE instances SET name = ?, refresh_schedule = ? WHERE tenant = ? AND id = ?",
        )
        .bind(name)
        .bind(refresh_schedule)
        .bind(tenant)
        .bind(id)
        .execute(&mut *self.write_alone().await?)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Deletes the instance and, through foreign keys, everything in it.
    pub async fn delete_instance(&self, tenant: &str, id: &str) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        let done = sqlx::query("DELETE FROM instances WHERE tenant = ? AND id = ?")
            .bind(tenant)
            .bind(id)
            .execute(tx.connection())
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        // Outbox rows reference the instance loosely (they must outlive nothing); drop them too.
        sqlx::query("DELETE FROM deliveries WHERE instance_id = ?")
            .bind(id)
            .execute(tx.connection())
            .await?;
        sqlx::query("DELETE FROM events WHERE instance_id = ?")
            .bind(id)
            .execute(tx.connection())
            .await?;
        self.commit(tx).await?;
        Ok(())
    }
}
