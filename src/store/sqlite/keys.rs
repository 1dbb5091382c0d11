//! SQLite: keys.

use super::SqliteDb;
use super::{parse_opt_ts, parse_ts, ts};
use crate::store::keys::*;
use crate::store::StoreResult;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

const KEY_COLUMNS: &str = "id, tenant, key_hash, prefix, created_at, last_used_at, expires_at";

fn key_from_row(r: SqliteRow) -> StoreResult<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.get("id"),
        tenant: r.get("tenant"),
        key_hash: r.get("key_hash"),
        prefix: r.get("prefix"),
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
        last_used_at: parse_opt_ts(r.get("last_used_at"))?,
        expires_at: parse_opt_ts(r.get("expires_at"))?,
    })
}

impl SqliteDb {
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.reader)
            .await?)
    }

    pub async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<Option<String>> {
        Ok(sqlx::query_scalar(
            "INSERT INTO api_keys (id, tenant, key_hash, prefix, created_at) VALUES (?, ?, ?, ?, ?)
             ON CONFLICT (key_hash) DO NOTHING RETURNING id",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(key.tenant)
        .bind(key.key_hash)
        .bind(key.prefix)
        .bind(ts(chrono::Utc::now()))
        .fetch_optional(&mut *self.write_alone().await?)
        .await?)
    }

    pub async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = ?"
        )))
        .bind(key_hash)
        .fetch_optional(&self.reader)
        .await?
        .map(key_from_row)
        .transpose()
    }

    pub async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = ? ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&self.reader)
        .await?
        .into_iter()
        .map(key_from_row)
        .collect()
    }

    pub async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let done = sqlx::query("DELETE FROM api_keys WHERE id = ?")
            .bind(id)
            .execute(&mut *self.write_alone().await?)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_api_key(
        &self,
        id: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<()> {
        // The text timestamps compare in time order (fixed width, UTC).
        sqlx::query(
            "UPDATE api_keys SET last_used_at = ?1
             WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)",
        )
        .bind(ts(at))
        .bind(id)
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(())
    }
}
