//! SQLite: measures.

use super::item_sql::{aggregate_sql, bind_all, filter_sql, Bind};
use super::{parse_opt_ts, parse_ts, ts};
use super::{SqliteDb, SqliteTx};
use crate::item_query::{Aggregate, Predicate};
use crate::store::entities::EntityRecord;
use crate::store::measures::*;
use crate::store::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

fn measure_from_row(r: SqliteRow) -> StoreResult<MeasureRecord> {
    Ok(MeasureRecord {
        id: r.get("id"),
        instance_id: r.get("instance_id"),
        name: r.get("name"),
        entity_name: r.get("entity_name"),
        aggregate: r.get("aggregate"),
        field: r.get("field"),
        filter: r.get("filter"),
        value: r.get("value"),
        last_refreshed_at: parse_opt_ts(r.get("last_refreshed_at"))?,
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
    })
}

impl SqliteDb {
    pub async fn insert_measure(&self, m: &MeasureRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO measures (id, instance_id, name, entity_name, aggregate, field, filter, created_at)
             VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&m.id)
        .bind(&m.instance_id)
        .bind(&m.name)
        .bind(&m.entity_name)
        .bind(&m.aggregate)
        .bind(&m.field)
        .bind(&m.filter)
        .bind(ts(m.created_at))
        .execute(&mut *self.write_alone().await?)
        .await?;
        Ok(())
    }

    pub async fn list_measures(&self, instance_id: &str) -> StoreResult<Vec<MeasureRecord>> {
        sqlx::query("SELECT * FROM measures WHERE instance_id = ? ORDER BY created_at, id")
            .bind(instance_id)
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(measure_from_row)
            .collect()
    }

    pub async fn get_measure(&self, instance_id: &str, id: &str) -> StoreResult<MeasureRecord> {
        let row = sqlx::query("SELECT * FROM measures WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id)
            .fetch_optional(&self.reader)
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
        let (aggregate_sql, mut binds) = aggregate_sql(aggregate, field);
        binds.push(Bind::Integer(entity.id));
        binds.push(Bind::Integer(entity.generation));
        let where_sql = filter
            .map(|f| format!(" AND ({})", filter_sql(f, "data", &mut binds)))
            .unwrap_or_default();
        let sql = format!(
            "SELECT CAST({aggregate_sql} AS REAL) FROM items WHERE entity_id = ? AND generation = ?{where_sql}"
        );
        let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
            .fetch_one(&self.reader)
            .await?;
        Ok(row.get::<Option<f64>, _>(0))
    }

    pub async fn set_measure_value(
        tx: &mut SqliteTx<'_>,
        measure_id: &str,
        value: Option<f64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        sqlx::query("UPDATE measures SET value = ?, last_refreshed_at = ? WHERE id = ?")
            .bind(value)
            .bind(ts(now))
            .bind(measure_id)
            .execute(tx.connection())
            .await?;
        Ok(())
    }
}
