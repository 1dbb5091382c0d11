//! PostgreSQL: entities.

use super::item_sql::{bind_all, filter_sql, order_sql, param, Bind};
use super::{parse_id, PgDb, PgTx};
use crate::item_query::{ItemQuery, SortDirection};
use crate::store::entities::*;
use crate::store::{StoreError, StoreResult};
use serde_json::Value;
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::Row;
use uuid::Uuid;

/// Rows staged per `INSERT … SELECT FROM UNNEST` statement.
const STAGE_BATCH: usize = 1000;

const ENTITY_COLUMNS: &str =
    "e.id, e.instance_id, e.name, e.kind, e.key_field, e.generation, e.item_count, e.schema";

fn entity_from_row(r: PgRow) -> StoreResult<EntityRecord> {
    let instance_id: Uuid = r.try_get("instance_id")?;
    let Json(schema): Json<Value> = r.try_get("schema")?;
    Ok(EntityRecord {
        id: r.try_get("id")?,
        instance_id: instance_id.to_string(),
        name: r.try_get("name")?,
        kind: r.try_get("kind")?,
        key_field: r.try_get("key_field")?,
        generation: r.try_get("generation")?,
        item_count: r.try_get("item_count")?,
        schema,
    })
}

fn key_and_data(r: PgRow) -> StoreResult<(String, String)> {
    Ok((r.try_get("item_key")?, r.try_get("data")?))
}

impl PgDb {
    pub async fn list_entities(&self, instance_id: &str) -> StoreResult<Vec<EntityRecord>> {
        let Some(instance) = parse_id(instance_id) else {
            return Ok(Vec::new());
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities e WHERE e.instance_id = $1 ORDER BY e.name COLLATE \"C\""
        )))
        .bind(instance)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(entity_from_row)
        .collect()
    }

    pub async fn entity(&self, instance_id: &str, name: &str) -> StoreResult<EntityRecord> {
        let instance = parse_id(instance_id).ok_or(StoreError::NotFound)?;
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities e WHERE e.instance_id = $1 AND e.name = $2"
        )))
        .bind(instance)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)?;
        entity_from_row(row)
    }

    pub async fn tenant_entity(
        &self,
        tenant: &str,
        instance_id: &str,
        name: &str,
    ) -> StoreResult<Option<EntityRecord>> {
        let Some(instance) = parse_id(instance_id) else {
            return Ok(None);
        };
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {ENTITY_COLUMNS} FROM entities e JOIN instances i ON i.id = e.instance_id
             WHERE i.tenant = $1 AND e.instance_id = $2 AND e.name = $3"
        )))
        .bind(tenant)
        .bind(instance)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .map(entity_from_row)
        .transpose()
    }

    /// The entity, created empty if it does not exist yet. No data epoch to move: PostgreSQL
    /// has none in process (see [`crate::store::Store::data_epoch`]).
    pub async fn ensure_entity(
        &self,
        instance_id: &str,
        name: &str,
        kind: &str,
        key_field: &str,
    ) -> StoreResult<EntityRecord> {
        let instance = parse_id(instance_id).ok_or(StoreError::NotFound)?;
        sqlx::query(
            "INSERT INTO entities (instance_id, name, kind, key_field) VALUES ($1, $2, $3, $4)
             ON CONFLICT (instance_id, name) DO NOTHING",
        )
        .bind(instance)
        .bind(name)
        .bind(kind)
        .bind(key_field)
        .execute(&self.pool)
        .await?;
        self.entity(instance_id, name).await
    }

    /// One page of items (key, JSON text) of the current generation. The text is `jsonb`'s
    /// rendering (`{"a": 1}`, keys by length, then bytes), not the text that was written.
    pub async fn query_items(
        &self,
        entity: &EntityRecord,
        query: &ItemQuery,
    ) -> StoreResult<Vec<(String, String)>> {
        let mut binds = vec![Bind::Integer(entity.id), Bind::Integer(entity.generation)];
        let mut sql = String::from(
            "SELECT item_key, data::text AS data FROM items WHERE entity_id = $1 AND generation = $2",
        );
        if let Some(after) = &query.after_key {
            let after = param(&mut binds, Bind::Text(after.clone()));
            sql.push_str(&format!(" AND item_key > {after}"));
        }
        if let Some(predicate) = query.filter.as_ref().and_then(|f| f.predicate.as_ref()) {
            sql.push_str(" AND ");
            sql.push_str(&filter_sql(predicate, "data", &mut binds));
        }
        sql.push_str(" ORDER BY ");
        for key in &query.order_by {
            sql.push_str(&order_sql(
                key.sql_field().expect("a query run as SQL sorts by fields"),
                key.direction == SortDirection::Desc,
                &mut binds,
            ));
            sql.push_str(", ");
        }
        let limit = param(&mut binds, Bind::Integer(query.limit));
        let offset = param(&mut binds, Bind::Integer(query.offset));
        sql.push_str(&format!("item_key LIMIT {limit} OFFSET {offset}"));
        bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(key_and_data)
            .collect()
    }

    pub async fn get_item(&self, entity: &EntityRecord, key: &str) -> StoreResult<String> {
        sqlx::query_scalar(
            "SELECT data::text FROM items WHERE entity_id = $1 AND generation = $2 AND item_key = $3",
        )
        .bind(entity.id)
        .bind(entity.generation)
        .bind(key)
        .fetch_optional(&self.pool)
        .await?
        .ok_or(StoreError::NotFound)
    }

    /// Creates (`create`) or rewrites an item of the current generation in one transaction
    /// (see [`crate::store::Store::write_item`]).
    pub async fn write_item<E>(
        &self,
        entity: &EntityRecord,
        key: &str,
        create: bool,
        change: impl FnOnce(Option<&str>, Value) -> Result<(String, Value), E>,
    ) -> StoreResult<Result<String, E>> {
        let mut tx = self.begin().await?;
        // Re-read inside the transaction, locking the entity row: a refresh may have switched
        // the generation, and writers to one entity take turns as SQLite's single writer does,
        // so none loses another's fields or schema widening.
        let row = sqlx::query("SELECT generation, schema FROM entities WHERE id = $1 FOR UPDATE")
            .bind(entity.id)
            .fetch_optional(tx.connection())
            .await?
            .ok_or(StoreError::NotFound)?;
        let generation: i64 = row.try_get("generation")?;
        let Json(schema): Json<Value> = row.try_get("schema")?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT data::text FROM items WHERE entity_id = $1 AND generation = $2 AND item_key = $3",
        )
        .bind(entity.id)
        .bind(generation)
        .bind(key)
        .fetch_optional(tx.connection())
        .await?;
        match (create, &current) {
            (true, Some(_)) => {
                return Err(StoreError::Conflict(format!(
                    "an item with key '{key}' already exists"
                )))
            }
            (false, None) => return Err(StoreError::NotFound),
            _ => {}
        }
        let (data, schema) = match change(current.as_deref(), schema) {
            Ok(changed) => changed,
            Err(refused) => return Ok(Err(refused)),
        };
        if create {
            sqlx::query(
                "INSERT INTO items (entity_id, generation, item_key, data)
                 VALUES ($1, $2, $3, $4::jsonb)",
            )
            .bind(entity.id)
            .bind(generation)
            .bind(key)
            .bind(&data)
            .execute(tx.connection())
            .await?;
            sqlx::query("UPDATE entities SET item_count = item_count + 1 WHERE id = $1")
                .bind(entity.id)
                .execute(tx.connection())
                .await?;
        } else {
            sqlx::query(
                "UPDATE items SET data = $1::jsonb
                 WHERE entity_id = $2 AND generation = $3 AND item_key = $4",
            )
            .bind(&data)
            .bind(entity.id)
            .bind(generation)
            .bind(key)
            .execute(tx.connection())
            .await?;
        }
        sqlx::query("UPDATE entities SET schema = $1 WHERE id = $2")
            .bind(Json(&schema))
            .bind(entity.id)
            .execute(tx.connection())
            .await?;
        tx.commit().await?;
        Ok(Ok(data))
    }

    /// Starts staging a new generation: removes leftovers of an interrupted earlier attempt.
    pub async fn begin_generation(&self, entity: &EntityRecord) -> StoreResult<i64> {
        let next = entity.generation + 1;
        self.drop_generation(entity.id, next).await?;
        Ok(next)
    }

    /// Writes one batch of staged items in one transaction, a statement per [`STAGE_BATCH`]
    /// rows (two array parameters instead of four placeholders a row).
    pub async fn stage_items(
        &self,
        entity_id: i64,
        generation: i64,
        rows: &[(String, String)],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for chunk in rows.chunks(STAGE_BATCH) {
            let keys: Vec<&str> = chunk.iter().map(|(k, _)| k.as_str()).collect();
            let data: Vec<&str> = chunk.iter().map(|(_, d)| d.as_str()).collect();
            sqlx::query(
                "INSERT INTO items (entity_id, generation, item_key, data)
                 SELECT $1, $2, k, d::jsonb FROM UNNEST($3::text[], $4::text[]) AS t (k, d)",
            )
            .bind(entity_id)
            .bind(generation)
            .bind(&keys)
            .bind(&data)
            .execute(tx.connection())
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes `generation` current inside the caller's transaction (which also records the event).
    pub async fn switch_generation(
        tx: &mut PgTx<'_>,
        entity_id: i64,
        generation: i64,
        item_count: i64,
        key_field: &str,
        schema: &Value,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE entities SET generation = $1, item_count = $2, key_field = $3, schema = $4
             WHERE id = $5",
        )
        .bind(generation)
        .bind(item_count)
        .bind(key_field)
        .bind(Json(schema))
        .bind(entity_id)
        .execute(tx.connection())
        .await?;
        // A refresh has just written a whole generation: without fresh statistics the planner
        // takes the new rows for a handful and answers a filtered page by scanning and sorting
        // all of them (40 ms instead of 1 ms for 100,000 items) until autovacuum analyses the
        // table, a minute or more later.
        sqlx::query("ANALYZE items")
            .execute(tx.connection())
            .await?;
        Ok(())
    }

    /// Deletes every item of a generation, in batches so no single transaction grows huge.
    pub async fn drop_generation(&self, entity_id: i64, generation: i64) -> StoreResult<()> {
        loop {
            let done = sqlx::query(
                "DELETE FROM items WHERE entity_id = $1 AND generation = $2 AND item_key IN
                   (SELECT item_key FROM items WHERE entity_id = $1 AND generation = $2 LIMIT 20000)",
            )
            .bind(entity_id)
            .bind(generation)
            .execute(&self.pool)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(());
            }
        }
    }

    /// Removes items of generations that are not current (left by crashes or replaced data).
    ///
    /// Only generations older than the current one: a newer one may be what another replica's
    /// refresh is staging right now. A newer one left by an interrupted refresh is dropped by
    /// the next refresh of its entity (`begin_generation`).
    pub async fn sweep_stale_generations(&self) -> StoreResult<()> {
        let stale: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT i.entity_id, i.generation FROM items i JOIN entities e ON e.id = i.entity_id
             WHERE i.generation < e.generation",
        )
        .fetch_all(&self.pool)
        .await?;
        for (entity_id, generation) in stale {
            self.drop_generation(entity_id, generation).await?;
        }
        Ok(())
    }

    /// Streams all items of the current generation in key order (bytes), page by page.
    pub async fn items_page_after(
        &self,
        entity: &EntityRecord,
        after_key: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        sqlx::query(
            "SELECT item_key, data::text AS data FROM items
             WHERE entity_id = $1 AND generation = $2 AND item_key > $3
             ORDER BY item_key LIMIT $4",
        )
        .bind(entity.id)
        .bind(entity.generation)
        .bind(after_key.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?
        .into_iter()
        .map(key_and_data)
        .collect()
    }
}
