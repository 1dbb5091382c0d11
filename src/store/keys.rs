//! API keys: stored as hashes, looked up by the hash of the presented key.

use super::{Db, Store, StoreResult};

#[derive(Debug, Clone)]
pub struct ApiKeyRecord {
    pub id: String,
    pub tenant: String,
    pub key_hash: Vec<u8>,
}

impl Store {
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        match &self.db {
            Db::Sqlite(db) => db.count_api_keys().await,
            Db::Postgres(db) => db.count_api_keys().await,
        }
    }

    /// Inserts a key hash; an already stored hash is left as it is (bootstrap keys are re-applied
    /// on every start).
    pub async fn insert_api_key(&self, tenant: &str, key_hash: &[u8]) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.insert_api_key(tenant, key_hash).await,
            Db::Postgres(db) => db.insert_api_key(tenant, key_hash).await,
        }
    }

    pub async fn find_api_key(&self, key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.find_api_key(key_hash).await,
            Db::Postgres(db) => db.find_api_key(key_hash).await,
        }
    }
}
