//! PostgreSQL: entities.

use super::{PgDb, PgTx};
use crate::item_query::ItemQuery;
use crate::store::entities::*;
use crate::store::*;
use serde_json::Value;

impl PgDb {
    pub async fn list_entities(&self, _instance_id: &str) -> StoreResult<Vec<EntityRecord>> {
        todo!("postgres list_entities")
    }

    pub async fn entity(&self, _instance_id: &str, _name: &str) -> StoreResult<EntityRecord> {
        todo!("postgres entity")
    }

    pub async fn tenant_entity(
        &self,
        _tenant: &str,
        _instance_id: &str,
        _name: &str,
    ) -> StoreResult<Option<EntityRecord>> {
        todo!("postgres tenant_entity")
    }

    pub async fn ensure_entity(
        &self,
        _instance_id: &str,
        _name: &str,
        _kind: &str,
        _key_field: &str,
    ) -> StoreResult<EntityRecord> {
        todo!("postgres ensure_entity")
    }

    pub async fn query_items(
        &self,
        _entity: &EntityRecord,
        _query: &ItemQuery,
    ) -> StoreResult<Vec<(String, String)>> {
        todo!("postgres query_items")
    }

    pub async fn get_item(&self, _entity: &EntityRecord, _key: &str) -> StoreResult<String> {
        todo!("postgres get_item")
    }

    pub async fn write_item<E>(
        &self,
        _entity: &EntityRecord,
        _key: &str,
        _create: bool,
        _change: impl FnOnce(Option<&str>, Value) -> Result<(String, Value), E>,
    ) -> StoreResult<Result<String, E>> {
        todo!("postgres write_item")
    }

    pub async fn begin_generation(&self, _entity: &EntityRecord) -> StoreResult<i64> {
        todo!("postgres begin_generation")
    }

    pub async fn stage_items(
        &self,
        _entity_id: i64,
        _generation: i64,
        _rows: &[(String, String)],
    ) -> StoreResult<()> {
        todo!("postgres stage_items")
    }

    pub async fn switch_generation(
        _tx: &mut PgTx<'_>,
        _entity_id: i64,
        _generation: i64,
        _item_count: i64,
        _key_field: &str,
        _schema: &Value,
    ) -> StoreResult<()> {
        todo!("postgres switch_generation")
    }

    pub async fn drop_generation(&self, _entity_id: i64, _generation: i64) -> StoreResult<()> {
        todo!("postgres drop_generation")
    }

    pub async fn sweep_stale_generations(&self) -> StoreResult<()> {
        todo!("postgres sweep_stale_generations")
    }

    pub async fn items_page_after(
        &self,
        _entity: &EntityRecord,
        _after_key: Option<&str>,
        _limit: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        todo!("postgres items_page_after")
    }
}
