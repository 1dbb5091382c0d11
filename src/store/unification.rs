//! The unification configuration of an instance, stored as the JSON the engine validated.

use super::{Db, Store, StoreResult};

impl Store {
    pub async fn get_unification_config(&self, instance_id: &str) -> StoreResult<Option<String>> {
        match &self.db {
            Db::Sqlite(db) => db.get_unification_config(instance_id).await,
            Db::Postgres(db) => db.get_unification_config(instance_id).await,
        }
    }

    pub async fn set_unification_config(&self, instance_id: &str, config: &str) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.set_unification_config(instance_id, config).await,
            Db::Postgres(db) => db.set_unification_config(instance_id, config).await,
        }
    }
}
