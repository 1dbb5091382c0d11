//! API keys: stored as hashes, looked up by the hash of the presented key; listed and revoked by
//! operators (`insights-connector keys …`).

use chrono::{DateTime, Utc};

use super::{Db, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: String,
    pub key_hash: Vec<u8>,
    /// The key's first characters, so an operator can tell keys apart (`None` for keys stored
    /// before prefixes were kept).
    pub prefix: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A key's rate-limit window after counting a request in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyWindow {
    /// Requests counted in the window, this one included.
    pub used: i64,
    /// Start of the window counted in (Unix seconds).
    pub window_start: i64,
}

/// A key about to be stored.
#[derive(Debug, Clone, Copy)]
pub struct NewApiKey<'a> {
    pub tenant: &'a str,
    pub key_hash: &'a [u8],
    pub prefix: &'a str,
}

impl Store {
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        match &self.db {
            Db::Sqlite(db) => db.count_api_keys().await,
            Db::Postgres(db) => db.count_api_keys().await,
        }
    }

    /// Inserts a key hash and returns the new key's id; an already stored hash is left as it is
    /// and gives `None` (bootstrap keys are re-applied on every start).
    pub async fn insert_api_key(&self, key: NewApiKey<'_>) -> StoreResult<Option<String>> {
        match &self.db {
            Db::Sqlite(db) => db.insert_api_key(key).await,
            Db::Postgres(db) => db.insert_api_key(key).await,
        }
    }

    pub async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.find_api_key(key_hash).await,
            Db::Postgres(db) => db.find_api_key(key_hash).await,
        }
    }

    /// A tenant's keys, oldest first.
    pub async fn list_api_keys(&self, tenant: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_api_keys(tenant).await,
            Db::Postgres(db) => db.list_api_keys(tenant).await,
        }
    }

    /// Deletes a key; `false` when no key has that id (a malformed id included).
    pub async fn revoke_api_key(&self, id: &str) -> StoreResult<bool> {
        match &self.db {
            Db::Sqlite(db) => db.revoke_api_key(id).await,
            Db::Postgres(db) => db.revoke_api_key(id).await,
        }
    }

    /// Records that the key authenticated at `at` (never moves `last_used_at` back).
    pub async fn touch_api_key(&self, id: &str, at: DateTime<Utc>) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.touch_api_key(id, at).await,
            Db::Postgres(db) => db.touch_api_key(id, at).await,
        }
    }

    /// Counts one request of key `key_id` in the fixed rate-limit window that starts at
    /// `window_start` (Unix seconds, or a later window another process already counts in), as
    /// seen by every process on the database. `None` on SQLite: one process serves a file, so the
    /// caller's in-process limiter is the whole budget and no request pays for a write.
    pub async fn count_key_request(
        &self,
        key_id: &str,
        window_start: i64,
    ) -> StoreResult<Option<KeyWindow>> {
        match &self.db {
            Db::Sqlite(_) => Ok(None),
            Db::Postgres(db) => db.count_key_request(key_id, window_start).await.map(Some),
        }
    }
}
