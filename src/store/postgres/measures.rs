//! PostgreSQL: measures.

use super::item_sql::{aggregate_sql, bind_all, filter_sql, Bind};
use super::parse_id;
use super::{PgDb, PgTx};
use crate::item_query::{Aggregate, Predicate};
use crate::store::entities::EntityRecord;
use crate::store::measures::*;
use crate::store::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

fn measure_from_row(r: PgRow) -> StoreResult<MeasureRecord> {
    Ok(MeasureRecord {
        id: r.try_get::<Uuid, _>("id")?.to_string(),
        instance_id: r.try_get::<Uuid, _>("instance_id")?.to_string(),
        name: r.try_get("name")?,
        entity_name: r.try_get("entity_name")?,
        aggregate: r.try_get("aggregate")?,
        field: r.try_get("field")?,
        filter: r.try_get("filter")?,
        value: r.try_get("value")?,
        last_refreshed_at: r.try_get("last_refreshed_at")?,
        created_at: r.try_get("created_at")?,
    })
}

impl PgDb {
    pub async fn insert_measure(&self, m: &MeasureRecord) -> StoreResult<()> {
        // A measure of an instance that cannot exist (not a UUID) is one of a missing instance.
        let (Some(id), Some(instance)) = (parse_id(&m.id), parse_id(&m.instance_id)) else {
            return Err(StoreError::NotFound);
        };
        sqlx::query(
            "INSERT INTO measures (id, instance_id, name, entity_name, aggregate, field, filter, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(id)
        .bind(instance)
        .bind(&m.name)
        .bind(&m.entity_name)
        .bind(&m.aggregate)
        .bind(&m.field)
        .bind(&m.filter)
        .bind(m.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_measures(&self, instance_id: &str) -> StoreResult<Vec<MeasureRecord>> {
        let Some(instance) = parse_id(instance_id) else {
            return Ok(Vec::new());
        };
        sqlx::query("SELECT * FROM measures WHERE instance_id = $1 ORDER BY created_at, id")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(measure_from_row)
            .collect()
    }

    pub async fn get_measure(&self, instance_id: &str, id: &str) -> StoreResult<MeasureRecord> {
        let (Some(instance), Some(id)) = (parse_id(instance_id), parse_id(id)) else {
            return Err(StoreError::NotFound);
        };
        let row = sqlx::query("SELECT * FROM measures WHERE instance_id = $1 AND id = $2")
            .bind(instance)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        measure_from_row(row)
    }

    /// Evaluates an aggregate of a field (or of the items) over an entity's current items,
    /// optionally of the items a filter keeps.
    pub async fn aggregate(
        &self,
        entity: &EntityRecord,
        aggregate: Aggregate,
        field: Option<&str>,
        filter: Option<&Predicate>,
    ) -> StoreResult<Option<f64>> {
        let mut binds = vec![Bind::Integer(entity.id), Bind::Integer(entity.generation)];
        let aggregate_sql = aggregate_sql(aggregate, field, &mut binds);
        let where_sql = filter
            .map(|f| format!(" AND ({})", filter_sql(f, "data", &mut binds)))
            .unwrap_or_default();
        let sql = format!(
            "SELECT {aggregate_sql} FROM items WHERE entity_id = $1 AND generation = $2{where_sql}"
        );
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get::<Option<f64>, _>(0)?)
    }

    pub async fn set_measure_value(
        tx: &mut PgTx<'_>,
        measure_id: &str,
        value: Option<f64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        let Some(id) = parse_id(measure_id) else {
            return Ok(());
        };
        sqlx::query("UPDATE measures SET value = $1, last_refreshed_at = $2 WHERE id = $3")
            .bind(value)
            .bind(now)
            .bind(id)
            .execute(tx.connection())
            .await?;
        Ok(())
    }
}
