//! PostgreSQL: keys.

use super::PgDb;
use crate::store::keys::*;
use crate::store::*;

impl PgDb {
    pub async fn count_api_keys(&self) -> StoreResult<i64> {
        todo!("postgres count_api_keys")
    }

    pub async fn insert_api_key(&self, _tenant: &str, _key_hash: &[u8]) -> StoreResult<()> {
        todo!("postgres insert_api_key")
    }

    pub async fn find_api_key(&self, _key_hash: &[u8]) -> StoreResult<Option<ApiKeyRecord>> {
        todo!("postgres find_api_key")
    }
}
