//! SQLite: keys.

use super::ts;
use super::SqliteDb;
use crate::store::keys::*;
use crate::store::StoreResult;
use sqlx::Row;

impl SqliteDb {
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.reader)
            .await?)
    }

    /// Inserts a key hash; an already stored hash is left as it is (bootstrap keys are re-applied
    /// on every start).
    pub async fn insert_api_key(&self, tenant: &str, key_hash: &[u8]) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO api_keys (id, tenant, key_hash, created_at) VALUES (?, ?, ?, ?)
             ON CONFLICT (key_hash) DO NOTHING",
        )
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tenant)
        .bind(key_hash)
        .bind(ts(chrono::Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        let row = sqlx::query("SELECT id, tenant, key_hash FROM api_keys WHERE key_hash = ?")
            .bind(key_hash)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| ApiKeyRecord {
            id: r.get("id"),
            tenant: r.get("tenant"),
            key_hash: r.get("key_hash"),
        }))
    }
}
