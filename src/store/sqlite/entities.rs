//! SQLite: entities.

use super::item_sql::{field_path, filter_sql, Bind};
use super::{SqliteDb, SqliteTx};
use crate::item_query::{ItemQuery, SortDirection};
use crate::store::entities::*;
use crate::store::{StoreError, StoreResult};
use rusqlite::OptionalExtension;
use serde_json::Value;
use sqlx::Row;

/// An entity row, read on the synchronous connections (`threads.rs`).
fn entity_from_row(r: &rusqlite::Row) -> StoreResult<EntityRecord> {
    let schema: String = r.get("schema")?;
    Ok(EntityRecord {
        id: r.get("id")?,
        instance_id: r.get("instance_id")?,
        name: r.get("name")?,
        kind: r.get("kind")?,
        key_field: r.get("key_field")?,
        generation: r.get("generation")?,
        item_count: r.get("item_count")?,
        schema: serde_json::from_str(&schema)
            .map_err(|e| StoreError::Corrupt(format!("entity schema: {e}")))?,
    })
}

impl SqliteDb {
    pub async fn list_entities(&self, instance_id: &str) -> StoreResult<Vec<EntityRecord>> {
        let instance_id = instance_id.to_string();
        self.readers
            .run(move |c| {
                let mut list = c.prepare_cached(
                    "SELECT * FROM entities WHERE instance_id = ?1 ORDER BY name",
                )?;
                let mut rows = list.query([&instance_id])?;
                let mut entities = Vec::new();
                while let Some(row) = rows.next()? {
                    entities.push(entity_from_row(row)?);
                }
                Ok(entities)
            })
            .await
    }

    pub async fn entity(&self, instance_id: &str, name: &str) -> StoreResult<EntityRecord> {
        let (instance_id, name) = (instance_id.to_string(), name.to_string());
        self.readers
            .run(move |c| {
                c.prepare_cached("SELECT * FROM entities WHERE instance_id = ?1 AND name = ?2")?
                    .query_row([&instance_id, &name], |r| Ok(entity_from_row(r)))
                    .optional()?
                    .ok_or(StoreError::NotFound)?
            })
            .await
    }

    /// The entity if it exists in an instance of `tenant` (one query for the hot read paths;
    /// callers fall back to separate lookups to say what is missing).
    pub async fn tenant_entity(
        &self,
        tenant: &str,
        instance_id: &str,
        name: &str,
    ) -> StoreResult<Option<EntityRecord>> {
        let (tenant, instance_id, name) = (
            tenant.to_string(),
            instance_id.to_string(),
            name.to_string(),
        );
        self.readers
            .run(move |c| {
                c.prepare_cached(
                    "SELECT e.* FROM entities e JOIN instances i ON i.id = e.instance_id
                     WHERE i.tenant = ?1 AND e.instance_id = ?2 AND e.name = ?3",
                )?
                .query_row([&tenant, &instance_id, &name], |r| Ok(entity_from_row(r)))
                .optional()?
                .transpose()
            })
            .await
    }

    /// The entity, created empty if it does not exist yet.
    pub async fn ensure_entity(
        &self,
        instance_id: &str,
        name: &str,
        kind: &str,
        key_field: &str,
    ) -> StoreResult<EntityRecord> {
        sqlx::query(
            "INSERT INTO entities (instance_id, name, kind, key_field) VALUES (?, ?, ?, ?)
             ON CONFLICT (instance_id, name) DO NOTHING",
        )
        .bind(instance_id)
        .bind(name)
        .bind(kind)
        .bind(key_field)
        .execute(&self.writer)
        .await?;
        self.data_changed();
        self.entity(instance_id, name).await
    }

    /// One page of items (key, JSON text) of the current generation.
    pub async fn query_items(
        &self,
        entity: &EntityRecord,
        query: &ItemQuery,
    ) -> StoreResult<Vec<(String, String)>> {
        let mut sql =
            String::from("SELECT item_key, data FROM items WHERE entity_id = ? AND generation = ?");
        let mut binds = vec![Bind::Integer(entity.id), Bind::Integer(entity.generation)];
        if let Some(after) = &query.after_key {
            sql.push_str(" AND item_key > ?");
            binds.push(Bind::Text(after.clone()));
        }
        if let Some(filter) = &query.filter {
            sql.push_str(" AND ");
            sql.push_str(&filter_sql(filter, "data", &mut binds));
        }
        sql.push_str(" ORDER BY ");
        for key in &query.order_by {
            sql.push_str("json_extract(data, ?)");
            sql.push_str(match key.direction {
                SortDirection::Desc => " DESC, ",
                SortDirection::Asc => " ASC, ",
            });
            binds.push(Bind::Text(field_path(&key.field)));
        }
        sql.push_str("item_key LIMIT ? OFFSET ?");
        binds.push(Bind::Integer(query.limit));
        binds.push(Bind::Integer(query.offset));
        self.readers
            .run(move |c| {
                // The text repeats for every query of one shape (literals are binds), so the
                // statement cache serves it.
                let mut page = c.prepare_cached(&sql)?;
                let rows = page.query_map(rusqlite::params_from_iter(&binds), |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }

    pub async fn get_item(&self, entity: &EntityRecord, key: &str) -> StoreResult<String> {
        let (entity_id, generation, key) = (entity.id, entity.generation, key.to_string());
        self.readers
            .run(move |c| {
                c.prepare_cached(
                    "SELECT data FROM items WHERE entity_id = ?1 AND generation = ?2 AND item_key = ?3",
                )?
                .query_row(rusqlite::params![entity_id, generation, key], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound)
            })
            .await
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
        let mut tx = self.begin().await?;
        // Re-read inside the transaction: a refresh may have switched the generation, and
        // another write may have widened the schema.
        let row = sqlx::query("SELECT generation, schema FROM entities WHERE id = ?")
            .bind(entity.id)
            .fetch_optional(tx.connection())
            .await?
            .ok_or(StoreError::NotFound)?;
        let generation: i64 = row.get("generation");
        let schema_text: String = row.get("schema");
        let schema: Value = serde_json::from_str(&schema_text)
            .map_err(|e| StoreError::Corrupt(format!("entity schema: {e}")))?;
        let current: Option<String> = sqlx::query_scalar(
            "SELECT data FROM items WHERE entity_id = ? AND generation = ? AND item_key = ?",
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
                "INSERT INTO items (entity_id, generation, item_key, data) VALUES (?, ?, ?, ?)",
            )
            .bind(entity.id)
            .bind(generation)
            .bind(key)
            .bind(&data)
            .execute(tx.connection())
            .await?;
            sqlx::query("UPDATE entities SET item_count = item_count + 1 WHERE id = ?")
                .bind(entity.id)
                .execute(tx.connection())
                .await?;
        } else {
            sqlx::query(
                "UPDATE items SET data = ? WHERE entity_id = ? AND generation = ? AND item_key = ?",
            )
            .bind(&data)
            .bind(entity.id)
            .bind(generation)
            .bind(key)
            .execute(tx.connection())
            .await?;
        }
        sqlx::query("UPDATE entities SET schema = ? WHERE id = ?")
            .bind(schema.to_string())
            .bind(entity.id)
            .execute(tx.connection())
            .await?;
        self.commit(tx).await?;
        Ok(Ok(data))
    }

    /// Starts staging a new generation: removes leftovers of an interrupted earlier attempt.
    pub async fn begin_generation(&self, entity: &EntityRecord) -> StoreResult<i64> {
        let next = entity.generation + 1;
        self.drop_generation(entity.id, next).await?;
        Ok(next)
    }

    /// Writes one batch of staged items in one transaction.
    pub async fn stage_items(
        &self,
        entity_id: i64,
        generation: i64,
        rows: &[(String, String)],
    ) -> StoreResult<()> {
        let mut tx = self.begin().await?;
        for chunk in rows.chunks(200) {
            let mut sql =
                String::from("INSERT INTO items (entity_id, generation, item_key, data) VALUES ");
            for i in 0..chunk.len() {
                sql.push_str(if i == 0 {
                    "(?, ?, ?, ?)"
                } else {
                    ", (?, ?, ?, ?)"
                });
            }
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (key, data) in chunk {
                q = q.bind(entity_id).bind(generation).bind(key).bind(data);
            }
            q.execute(tx.connection()).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Makes `generation` current inside the caller's transaction (which also records the event).
    pub async fn switch_generation(
        tx: &mut SqliteTx<'_>,
        entity_id: i64,
        generation: i64,
        item_count: i64,
        key_field: &str,
        schema: &Value,
    ) -> StoreResult<()> {
        sqlx::query(
            "UPDATE entities SET generation = ?, item_count = ?, key_field = ?, schema = ? WHERE id = ?",
        )
        .bind(generation)
        .bind(item_count)
        .bind(key_field)
        .bind(schema.to_string())
        .bind(entity_id)
        .execute(tx.connection())
        .await?;
        Ok(())
    }

    /// Deletes every item of a generation, in batches so no single transaction grows huge.
    pub async fn drop_generation(&self, entity_id: i64, generation: i64) -> StoreResult<()> {
        loop {
            let done = sqlx::query(
                "DELETE FROM items WHERE entity_id = ? AND generation = ? AND item_key IN
                   (SELECT item_key FROM items WHERE entity_id = ? AND generation = ? LIMIT 20000)",
            )
            .bind(entity_id)
            .bind(generation)
            .bind(entity_id)
            .bind(generation)
            .execute(&self.writer)
            .await?;
            if done.rows_affected() == 0 {
                return Ok(());
            }
        }
    }

    /// Removes items of generations that are not current (left by crashes or replaced data).
    pub async fn sweep_stale_generations(&self) -> StoreResult<()> {
        let stale: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT DISTINCT i.entity_id, i.generation FROM items i JOIN entities e ON e.id = i.entity_id
             WHERE i.generation <> e.generation",
        )
        .fetch_all(&self.reader)
        .await?;
        for (entity_id, generation) in stale {
            self.drop_generation(entity_id, generation).await?;
        }
        Ok(())
    }

    /// Streams all items of the current generation in key order, page by page.
    pub async fn items_page_after(
        &self,
        entity: &EntityRecord,
        after_key: Option<&str>,
        limit: i64,
    ) -> StoreResult<Vec<(String, String)>> {
        let (entity_id, generation) = (entity.id, entity.generation);
        let after_key = after_key.unwrap_or("").to_string();
        self.readers
            .run(move |c| {
                let mut page = c.prepare_cached(
                    "SELECT item_key, data FROM items WHERE entity_id = ?1 AND generation = ?2 AND item_key > ?3
                     ORDER BY item_key LIMIT ?4",
                )?;
                let rows = page.query_map(
                    rusqlite::params![entity_id, generation, after_key, limit],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                Ok(rows.collect::<Result<_, _>>()?)
            })
            .await
    }
}
