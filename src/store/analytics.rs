//! Segments, measures and the unification configuration.

use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use super::entities::EntityRecord;
use super::item_sql::{aggregate_sql, bind_all, filter_sql, Bind};
use super::{parse_opt_ts, parse_ts, ts, Store, StoreError, StoreResult, Tx};
use crate::item_query::{Aggregate, Expr};

#[derive(Debug, Clone)]
pub struct SegmentRecord {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub filter: String,
    pub member_count: Option<i64>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct MeasureRecord {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub entity_name: String,
    pub aggregate: String,
    pub field: Option<String>,
    pub filter: Option<String>,
    pub value: Option<f64>,
    pub last_refreshed_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

fn segment_from_row(r: SqliteRow) -> StoreResult<SegmentRecord> {
    Ok(SegmentRecord {
        id: r.get("id"),
        instance_id: r.get("instance_id"),
        name: r.get("name"),
        filter: r.get("filter"),
        member_count: r.get("member_count"),
        last_refreshed_at: parse_opt_ts(r.get("last_refreshed_at"))?,
        created_at: parse_ts(r.get::<&str, _>("created_at"))?,
    })
}

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

impl Store {
    pub async fn insert_segment(&self, s: &SegmentRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO segments (id, instance_id, name, filter, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.instance_id)
        .bind(&s.name)
        .bind(&s.filter)
        .bind(ts(s.created_at))
        .execute(&self.writer)
        .await?;
        Ok(())
    }

    pub async fn list_segments(&self, instance_id: &str) -> StoreResult<Vec<SegmentRecord>> {
        sqlx::query("SELECT * FROM segments WHERE instance_id = ? ORDER BY created_at, id")
            .bind(instance_id)
            .fetch_all(&self.reader)
            .await?
            .into_iter()
            .map(segment_from_row)
            .collect()
    }

    pub async fn get_segment(&self, instance_id: &str, id: &str) -> StoreResult<SegmentRecord> {
        let row = sqlx::query("SELECT * FROM segments WHERE instance_id = ? AND id = ?")
            .bind(instance_id)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .ok_or(StoreError::NotFound)?;
        segment_from_row(row)
    }

    /// Recomputes a segment's members from `Customer` inside `tx`; returns the new count.
    pub async fn compute_segment(
        tx: &mut Tx<'_>,
        segment_id: &str,
        customer: &EntityRecord,
        filter: &Expr,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let mut binds = Vec::new();
        let where_sql = filter_sql(filter, "data", &mut binds);
        sqlx::query("DELETE FROM segment_members WHERE segment_id = ?")
            .bind(segment_id)
            .execute(tx.connection())
            .await?;
        let sql = format!(
            "INSERT INTO segment_members (segment_id, customer_id)
             SELECT ?, item_key FROM items WHERE entity_id = ? AND generation = ? AND ({where_sql})"
        );
        let q = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(segment_id)
            .bind(customer.id)
            .bind(customer.generation);
        let inserted = bind_all(q, &binds)
            .execute(tx.connection())
            .await?
            .rows_affected() as i64;
        sqlx::query("UPDATE segments SET member_count = ?, last_refreshed_at = ? WHERE id = ?")
            .bind(inserted)
            .bind(ts(now))
            .bind(segment_id)
            .execute(tx.connection())
            .await?;
        Ok(inserted)
    }

    /// A page of a segment's members (their `Customer` items as JSON text).
    pub async fn segment_members(
        &self,
        segment_id: &str,
        customer: &EntityRecord,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT i.data FROM segment_members m
             JOIN items i ON i.entity_id = ? AND i.generation = ? AND i.item_key = m.customer_id
             WHERE m.segment_id = ? ORDER BY m.customer_id LIMIT ? OFFSET ?",
        )
        .bind(customer.id)
        .bind(customer.generation)
        .bind(segment_id)
        .bind(limit)
        .bind(offset)
        .fetch_all(&self.reader)
        .await?)
    }

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
        .execute(&self.writer)
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
        filter: Option<&Expr>,
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
        tx: &mut Tx<'_>,
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

    pub async fn get_unification_config(&self, instance_id: &str) -> StoreResult<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT config FROM unification_configs WHERE instance_id = ?")
                .bind(instance_id)
                .fetch_optional(&self.reader)
                .await?,
        )
    }

    pub async fn set_unification_config(&self, instance_id: &str, config: &str) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO unification_configs (instance_id, config, updated_at) VALUES (?, ?, ?)
             ON CONFLICT (instance_id) DO UPDATE SET config = excluded.config, updated_at = excluded.updated_at",
        )
        .bind(instance_id)
        .bind(config)
        .bind(ts(Utc::now()))
        .execute(&self.writer)
        .await?;
        Ok(())
    }
}
