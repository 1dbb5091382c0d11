//! SQLite: entities.

use super::field_indexes::{self, Use};
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
        .execute(&mut *self.write_alone().await?)
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
        let (sql, binds) = self.page_sql(entity, query);
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

    /// The SQL of a page and its binds; a filter on a field may start building its index.
    fn page_sql(&self, entity: &EntityRecord, query: &ItemQuery) -> (String, Vec<Bind>) {
        let mut sql = String::from("SELECT item_key, data FROM items ");
        let mut binds = Vec::new();
        let predicate = query.filter.as_ref().and_then(|f| f.predicate.as_ref());
        let plan = predicate.map_or(Use::Nothing, |predicate| {
            self.field_indexes
                .plan(entity.id, entity.item_count, predicate)
        });
        match plan {
            Use::Indexed(field, value) => {
                // The index is partial on the entity, which the query must name as the index
                // does (a literal), and its expression must be written as the index has it.
                // Named, because without statistics the planner rates the primary key, with
                // as many equalities and the whole row at hand, as good.
                sql.push_str(&format!(
                    "INDEXED BY {} WHERE entity_id = {} AND generation = ? AND {} = ?",
                    field_indexes::name(entity.id, &field),
                    entity.id,
                    field_indexes::expression(&field)
                ));
                binds.extend([Bind::Integer(entity.generation), value]);
            }
            Use::Build(field) => {
                self.build_field_index(entity.id, field);
                sql.push_str("WHERE entity_id = ? AND generation = ?");
                binds.extend([Bind::Integer(entity.id), Bind::Integer(entity.generation)]);
            }
            Use::Nothing => {
                sql.push_str("WHERE entity_id = ? AND generation = ?");
                binds.extend([Bind::Integer(entity.id), Bind::Integer(entity.generation)]);
            }
        }
        if let Some(after) = &query.after_key {
            sql.push_str(" AND item_key > ?");
            binds.push(Bind::Text(after.clone()));
        }
        if let Some(predicate) = predicate {
            sql.push_str(" AND ");
            sql.push_str(&filter_sql(predicate, "data", &mut binds));
        }
        sql.push_str(" ORDER BY ");
        for key in &query.order_by {
            sql.push_str("json_extract(data, ?)");
            sql.push_str(match key.direction {
                SortDirection::Desc => " DESC, ",
                SortDirection::Asc => " ASC, ",
            });
            let field = key.sql_field().expect("a query run as SQL sorts by fields");
            binds.push(Bind::Text(field_path(field)));
        }
        sql.push_str("item_key LIMIT ? OFFSET ?");
        binds.push(Bind::Integer(query.limit));
        binds.push(Bind::Integer(query.offset));
        (sql, binds)
    }

    /// Builds the index on a filtered field in the background (the query that asked goes on
    /// without it); a failure is logged, and the field is not indexed.
    fn build_field_index(&self, entity_id: i64, field: String) {
        let db = self.clone();
        tokio::spawn(async move {
            let started = std::time::Instant::now();
            let built = match db.write_alone().await {
                Ok(mut writer) => sqlx::query(sqlx::AssertSqlSafe(field_indexes::create_sql(
                    entity_id, &field,
                )))
                .execute(&mut *writer)
                .await
                .map_err(StoreError::from),
                Err(e) => Err(e),
            };
            match &built {
                Ok(_) => tracing::info!(
                    entity_id,
                    field,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "indexed a filtered field"
                ),
                Err(e) => {
                    tracing::warn!(entity_id, field, error = %e, "could not index a filtered field")
                }
            }
            db.field_indexes.built(entity_id, &field, built.is_ok());
        });
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

    /// Writes one batch of staged items in one transaction, on the bulk connection: one
    /// hand-off and one prepared insert for the whole batch.
    pub async fn stage_items(
        &self,
        entity_id: i64,
        generation: i64,
        mut rows: Vec<(String, String)>,
    ) -> StoreResult<()> {
        // In key order, consecutive inserts land on the same pages of the items tree instead of
        // all over it (keys in a file are rarely sorted as text).
        rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        let _turn = self.write_turn.lock().await;
        self.bulk
            .run(move |c| {
                let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
                {
                    let mut insert = tx.prepare_cached(
                        "INSERT INTO items (entity_id, generation, item_key, data) VALUES (?1, ?2, ?3, ?4)",
                    )?;
                    for (key, data) in &rows {
                        insert.execute(rusqlite::params![entity_id, generation, key, data])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
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
            .execute(&mut *self.write_alone().await?)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::odata::tests_support::filter as parse_filter;
    use crate::store::Store;

    /// A filter on a field of a big entity builds the field's index in the background; once
    /// built, the same filter reads the matches from it in key order (no scan, no sort) and
    /// answers exactly what it answered without it.
    #[tokio::test]
    async fn a_filtered_field_gets_an_index_that_pages_use() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).await.unwrap();
        let db = store.sqlite();
        sqlx::query(
            "INSERT INTO instances (id, tenant, name, created_at) VALUES ('i', 't', 'i', '')",
        )
        .execute(&db.writer)
        .await
        .unwrap();
        let entity = db
            .ensure_entity("i", "People", "source", "Id")
            .await
            .unwrap();
        let generation = db.begin_generation(&entity).await.unwrap();
        let rows: Vec<(String, String)> = (0..1_500)
            .map(|n| {
                let city = ["Berlin", "Paris", "it's"][n % 3];
                (
                    format!("{n:05}"),
                    serde_json::json!({"Id": n, "City": city, "Age": n % 90}).to_string(),
                )
            })
            .collect();
        db.stage_items(entity.id, generation, rows).await.unwrap();
        let mut tx = db.begin().await.unwrap();
        SqliteDb::switch_generation(
            &mut tx,
            entity.id,
            generation,
            1_500,
            "Id",
            &serde_json::json!({}),
        )
        .await
        .unwrap();
        db.commit(tx).await.unwrap();
        let entity = db.entity("i", "People").await.unwrap();

        for filter in ["City eq 'it''s' and Age gt 30", "City eq 'Paris'"] {
            let query = ItemQuery {
                filter: Some(parse_filter(filter)),
                limit: 50,
                offset: 10,
                ..ItemQuery::default()
            };
            let before = db.query_items(&entity, &query).await.unwrap();
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while !matches!(
                db.field_indexes.plan(
                    entity.id,
                    entity.item_count,
                    query.filter.as_ref().unwrap().predicate.as_ref().unwrap()
                ),
                Use::Indexed(..)
            ) {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the index was not built"
                );
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            }
            let after = db.query_items(&entity, &query).await.unwrap();
            assert_eq!(after, before, "{filter}");
            assert_eq!(after.len(), 50);

            let (sql, binds) = db.page_sql(&entity, &query);
            let plan: Vec<String> = db
                .readers
                .run(move |c| {
                    let mut explain = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows = explain.query_map(rusqlite::params_from_iter(&binds), |r| {
                        r.get::<_, String>(3)
                    })?;
                    Ok(rows.collect::<Result<_, _>>()?)
                })
                .await
                .unwrap();
            let plan = plan.join("; ");
            assert!(
                plan.contains("USING INDEX items_field_"),
                "{filter}: {plan}"
            );
            assert!(!plan.contains("TEMP B-TREE"), "no sort: {plan}");
        }
    }
}
