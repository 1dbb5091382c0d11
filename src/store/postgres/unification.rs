//! PostgreSQL: unification.

use super::PgDb;
use crate::store::*;

impl PgDb {
    pub async fn get_unification_config(&self, _instance_id: &str) -> StoreResult<Option<String>> {
        todo!("postgres get_unification_config")
    }

    pub async fn set_unification_config(
        &self,
        _instance_id: &str,
        _config: &str,
    ) -> StoreResult<()> {
        todo!("postgres set_unification_config")
    }
}
