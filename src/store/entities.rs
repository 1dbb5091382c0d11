//! Entities and their items. Items of an entity live in numbered generations: readers see the
//! entity's current generation; a refresh stages the next one in batches and switches to it in
//! one transaction, so a failed refresh leaves the old items untouched.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use crate::item_query::{Aggregate, ItemQuery};
use serde_json::Value;

#[derive(Debug, Clone)]
pub struct EntityRecord {
    pub id: i64,
    pub instance_id: String,
    pub name: String,
    pub kind: String,
    pub key_field: String,
    pub generation: i64,
    pub item_count: i64,
    pub schema: Value,
}

impl Store {
    pub async fn list_entities(&self, instance_id: &str) -> StoreResult<Vec<EntityRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_entities(instance_id).await,
            Db::Postgres(db) => db.list_entities(instance_id).await,
        }
    }

    pub async fn entity(&self, instance_id: &str, name: &str) -> StoreResult<EntityRecord> {
        match &self.db {
            Db::Sqlite(db) => db.entity(instance_id, name).await,
            Db::Postgres(db) => db.entity(instance_id, name).await,
        }
    }

    /// The entity if it exists in an instance of `tenant` (one query for the hot read paths;
    /// callers fall back to separate lookups to say what is missing).
    pub async fn tenant_entity(
        &self,
        tenant: &str,
        instance_id: &str,
        name: &str,
    ) -> StoreResult<Option<EntityRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.tenant_entity(tenant, instance_id, name).await,
            Db::Postgres(db) => db.tenant_entity(tenant, instance_id, name).await,
        }
    }

    /// The entity, created empty if it does not exist yet.
    pub async fn ensure_entity(
        &self,
        instance_id: &str,
        name: &str,
        kind: &str,
        key_field: &str,
    ) -> StoreResult<EntityRecord> {
        match &self.db {
            Db::Sqlite(db) => db.ensure_entity(instance_id, name, kind, key_field).await,
            Db::Postgres(db) => db.ensure_entity(instance_id, name, kind, key_field).await,
        }
    }

    /// One page of items (key, JSON text) of the current generation: run as SQL when the whole
    /// query has a SQL form, otherwise evaluated here over the entity's items (same answers).
    pub async fn query_items(
        &self,
        entity: &EntityRecord,
        query: &ItemQuery,
    ) -> StoreResult<Vec<(String, String)>> {
        if !query.runs_in_sql() {
            let kept = self.items_kept(entity, query).await?;
            return Ok(query.order_and_page(kept));
        }
        match &self.db {
            Db::Sqlite(db) => db.query_items(entity, query).await,
            Db::Postgres(db) => db.query_items(entity, query).await,
        }
    }

    /// How many current items pass the query's filter and search.
    pub async fn count_items(&self, entity: &EntityRecord, query: &ItemQuery) -> StoreResult<i64> {
        if query.search.is_none() {
            match query.filter.as_ref().map(|f| f.predicate.as_ref()) {
                None => return Ok(entity.item_count),
                Some(Some(predicate)) => {
                    let count = self
                        .aggregate(entity, Aggregate::Count, None, Some(predicate))
                        .await?;
                    return Ok(count.unwrap_or(0.0) as i64);
                }
                Some(None) => {}
            }
        }
        Ok(self.items_kept(entity, query).await?.len() as i64)
    }

    /// The current items (after the query's `after_key`) that pass its filter and search, in
    /// key order, evaluated here (read in batches, so that only the kept ones are held).
    pub async fn items_kept(
        &self,
        entity: &EntityRecord,
        query: &ItemQuery,
    ) -> StoreResult<Vec<(String, String)>> {
        const BATCH: i64 = 5_000;
        let mut kept = Vec::new();
        let mut after = query.after_key.clone();
        loop {
            let batch = self
                .items_page_after(entity, after.as_deref(), BATCH)
                .await?;
            let full = batch.len() as i64 == BATCH;
            after = batch.last().map(|(key, _)| key.clone());
            kept.extend(batch.into_iter().filter(|(_, text)| {
                query.keeps(&serde_json::from_str(text).unwrap_or(Value::Null))
            }));
            if !full {
                return Ok(kept);
            }
        }
    }

    pub async fn get_item(&self, entity: &EntityRecord, key: &str) -> StoreResult<String> {
        match &self.db {
            Db::Sqlite(db) => db.get_item(entity, key).await,
            Db::Postgres(db) => db.get_item(entity, key).await,
        }
    }

    /// Creates (`create`) or rewrites an item of the current generation in one write
    /// transaction: `change` gets the stored item (`None` when creating) and the entity's schema
    /// as they are *inside* the transaction and returns the new item text and schema. So
    /// concurrent writes to one entity never lose each other's fields or schema widening.
    /// A create of an existing key is a conflict; an update of a missing key is `NotFound`.
    /// When `change` refuses, nothing is written and its error is returned inside `Ok`.
    pub async fn write_item<E>(
        &self,
        entity: &EntityRecord,
        key: &str,
        create: bool,
        change: impl FnOnce(Option<&str>, Value) -> Result<(String, Value), E>,
    ) -> StoreResult<Result<String, E>> {
        match &self.db {
            Db::Sqlite(db) => db.write_item(entity, key, create, change).await,
            Db::Postgres(db) => db.write_item(entity, key, create, change).await,
        }
    }

    /// Starts staging a new generation: removes leftovers of an interrupted earlier attempt.
    pub async fn begin_generation(&self, entity: &EntityRecord) -> StoreResult<i64> {
        match &self.db {
            Db::Sqlite(db) => db.begin_generation(entity).await,
            Db::Postgres(db) => db.begin_generation(entity).await,
        }
    }

    /// Writes one batch of staged items in one transaction.
    pub async fn stage_items(
        &self,
        entity_id: i64,
        generation: i64,
        rows: Vec<(String, String)>,
    ) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.stage_items(entity_id, generation, rows).await,
            Db::Postgres(db) => db.stage_items(entity_id, generation, &rows).await,
        }
    }

    /// Makes `generation` current inside the caller's transaction (which also records the event).
    pub async fn switch_generation(
        tx: &mut Tx<'_>,
        entity_id: i64,
        generation: i64,
        item_count: i64,
        key_field: &str,
        schema: &Value,
    ) -> StoreResult<()> {
        match tx {
            Tx::Sqlite(tx) => {
                SqliteDb::switch_generation(
                    tx, entity_id, generation, item_count, key_field, schema,
                )
                .await
            }
            Tx::Postgres(tx) => {
                PgDb::switch_generation(tx, entity_id, generation, item_count, key_field, schema)
                    .await
            }
        }
    }

    /// Deletes every item of a generation, in batches so no single transaction grows huge.
    pub async fn drop_generation(&self, entity_id: i64, generation: i64) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.drop_generation(entity_id, generation).await,
            Db::Postgres(db) => db.drop_generation(entity_id, generation).await,
        }
    }

    /// Removes items of generations that are not current (left by crashes or replaced data).
    pub async fn sweep_stale_generations(&self) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.sweep_stale_generations().await,
            Db::Postgres(db) => db.sweep_stale_generations().await,
        }
    }

    /// Streams all items of the current generation in key order, page by page.
    pub async fn items_page_after(
        &self,
        entity: &EntityRecord,
        after_key: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        match &self.db {
            Db::Sqlite(db) => db.items_page_after(entity, after_key, limit).await,
            Db::Postgres(db) => db.items_page_after(entity, after_key, limit).await,
        }
    }
}
