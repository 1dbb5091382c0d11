//! PostgreSQL: segments.

use super::item_sql::{bind_all, filter_sql, param, Bind};
use super::parse_id;
use super::{PgDb, PgTx};
use crate::store::entities::EntityRecord;
use crate::store::segments::*;
use crate::store::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::postgres::PgRow;
use sqlx::Row;
use uuid::Uuid;

fn segment_from_row(r: PgRow) -> StoreResult<SegmentRecord> {
    Ok(SegmentRecord {
        id: r.try_get::<Uuid, _>("id")?.to_string(),
        instance_id: r.try_get::<Uuid, _>("instance_id")?.to_string(),
        name: r.try_get("name")?,
        filter: r.try_get("filter")?,
        member_count: r.try_get("member_count")?,
        last_refreshed_at: r.try_get("last_refreshed_at")?,
        created_at: r.try_get("created_at")?,
    })
}

impl PgDb {
    pub async fn insert_segment(&self, s: &SegmentRecord) -> StoreResult<()> {
        // A segment of an instance that cannot exist (not a UUID) is one of a missing instance.
        let (Some(id), Some(instance)) = (parse_id(&s.id), parse_id(&s.instance_id)) else {
            return Err(StoreError::NotFound);
        };
        sqlx::query(
            "INSERT INTO segments (id, instance_id, name, filter, created_at)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(id)
        .bind(instance)
        .bind(&s.name)
        .bind(&s.filter)
        .bind(s.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn list_segments(&self, instance_id: &str) -> StoreResult<Vec<SegmentRecord>> {
        let Some(instance) = parse_id(instance_id) else {
            return Ok(Vec::new());
        };
        sqlx::query("SELECT * FROM segments WHERE instance_id = $1 ORDER BY created_at, id")
            .bind(instance)
            .fetch_all(&self.pool)
            .await?
            .into_iter()
            .map(segment_from_row)
            .collect()
    }

    pub async fn get_segment(&self, instance_id: &str, id: &str) -> StoreResult<SegmentRecord> {
        let (Some(instance), Some(id)) = (parse_id(instance_id), parse_id(id)) else {
            return Err(StoreError::NotFound);
        };
        let row = sqlx::query("SELECT * FROM segments WHERE instance_id = $1 AND id = $2")
            .bind(instance)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        segment_from_row(row)
    }

    /// Recomputes a segment's members from `Customer` inside `tx`; returns the new count.
    pub async fn compute_segment(
        tx: &mut PgTx<'_>,
        segment_id: &str,
        customer: &EntityRecord,
        members: Members<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        let segment = parse_id(segment_id).ok_or(StoreError::NotFound)?;
        sqlx::query("DELETE FROM segment_members WHERE segment_id = $1")
            .bind(segment)
            .execute(tx.connection())
            .await?;
        let inserted = match members {
            Members::Matching(filter) => {
                let mut binds = vec![
                    Bind::Text(segment.to_string()),
                    Bind::Integer(customer.id),
                    Bind::Integer(customer.generation),
                ];
                let where_sql = filter_sql(filter, "data", &mut binds);
                let sql = format!(
                    "INSERT INTO segment_members (segment_id, customer_id)
                     SELECT $1::uuid, item_key FROM items
                     WHERE entity_id = $2 AND generation = $3 AND ({where_sql})"
                );
                bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
                    .execute(tx.connection())
                    .await?
                    .rows_affected() as i64
            }
            Members::Keys(keys) => sqlx::query(
                "INSERT INTO segment_members (segment_id, customer_id)
                 SELECT $1, key FROM unnest($2::text[]) AS key",
            )
            .bind(segment)
            .bind(keys)
            .execute(tx.connection())
            .await?
            .rows_affected() as i64,
        };
        sqlx::query("UPDATE segments SET member_count = $1, last_refreshed_at = $2 WHERE id = $3")
            .bind(inserted)
            .bind(now)
            .bind(segment)
            .execute(tx.connection())
            .await?;
        Ok(inserted)
    }

    /// A page of a segment's members (their `Customer` items as JSON text), by key.
    pub async fn segment_members(
        &self,
        segment_id: &str,
        customer: &EntityRecord,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<String>> {
        let Some(segment) = parse_id(segment_id) else {
            return Ok(Vec::new());
        };
        let mut binds = vec![
            Bind::Integer(customer.id),
            Bind::Integer(customer.generation),
            Bind::Text(segment.to_string()),
        ];
        let limit = param(&mut binds, Bind::Integer(limit));
        let offset = param(&mut binds, Bind::Integer(offset));
        let sql = format!(
            "SELECT i.data::text FROM segment_members m
             JOIN items i ON i.entity_id = $1 AND i.generation = $2 AND i.item_key = m.customer_id
             WHERE m.segment_id = $3::uuid ORDER BY m.customer_id LIMIT {limit} OFFSET {offset}"
        );
        let rows = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
            .fetch_all(&self.pool)
            .await?;
        rows.into_iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }
}
