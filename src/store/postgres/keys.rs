//! PostgreSQL: keys, and the rate-limit windows every replica counts in.

use super::PgDb;
use crate::store::keys::*;
use crate::store::*;
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;

const KEY_COLUMNS: &str = "id, tenant, key_hash, prefix, created_at, last_used_at, expires_at";

fn key_from_row(r: PgRow) -> ApiKeyRecord {
    ApiKeyRecord {
        id: r.get::<uuid::Uuid, _>("id").to_string(),
        tenant: r.get("tenant"),
        key_hash: r.get("key_hash"),
        prefix: r.get("prefix"),
        created_at: r.get("created_at"),
        last_used_at: r.get("last_used_at"),
        expires_at: r.get("expires_at"),
    }
}

impl PgDb {
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    pub async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<Option<String>> {
        let id: Option<uuid::Uuid> = sqlx::query_scalar(
            "INSERT INTO api_keys (id, tenant, key_hash, prefix, created_at)
             VALUES ($1, $2, $3, $4, now())
             ON CONFLICT (key_hash) DO NOTHING RETURNING id",
        )
        .bind(uuid::Uuid::new_v4())
        .bind(key.tenant)
        .bind(key.key_hash)
        .bind(key.prefix)
        .fetch_optional(&self.pool)
        .await?;
        Ok(id.map(|id| id.to_string()))
    }

    pub async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?
        .map(key_from_row))
    }

    pub async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_at, id"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(key_from_row)
        .collect())
    }

    /// Deletes the key and its rate-limit window (nothing else refers to a key).
    pub async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        let Some(uuid) = super::parse_id(id) else {
            return Ok(false);
        };
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query("DELETE FROM api_keys WHERE id = $1")
            .bind(uuid)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM rate_limit_windows WHERE key_id = $1")
            .bind(uuid.to_string())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        let Some(uuid) = super::parse_id(id) else {
            return Ok(());
        };
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)",
        )
        .bind(uuid)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// One statement, so concurrent requests on any replica count atomically: the row lock of
    /// the upsert orders them, and a request in a new window restarts the count. A replica whose
    /// clock lags counts into the newer window instead of resetting it.
    pub async fn count_key_request(
        &self,
        key_id: &str,
        window_start: i64,
    ) -> StoreResult<KeyWindow> {
        let (used, window_start) = sqlx::query_as(
            "INSERT INTO rate_limit_windows (key_id, window_start, used) VALUES ($1, $2, 1)
             ON CONFLICT (key_id) DO UPDATE
             SET used = CASE WHEN rate_limit_windows.window_start >= $2
                             THEN rate_limit_windows.used + 1 ELSE 1 END,
                 window_start = GREATEST(rate_limit_windows.window_start, $2)
             RETURNING used, window_start",
        )
        .bind(key_id)
        .bind(window_start)
        .fetch_one(&self.pool)
        .await?;
        Ok(KeyWindow { used, window_start })
    }
}
