//! SQLite: segments.

use super::item_sql::{bind_all, filter_sql};
use super::{parse_opt_ts, parse_ts, ts};
use super::{SqliteDb, SqliteTx};
use crate::store::entities::EntityRecord;
use crate::store::segments::*;
use crate::store::{StoreError, StoreResult};
use chrono::{DateTime, Utc};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

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

impl SqliteDb {
    pub async fn insert_segment(&self, s: &SegmentRecord) -> StoreResult<()> {
        sqlx::query(
            "INSERT INTO segments (id, instance_id, name, filter, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&s.id)
        .bind(&s.instance_id)
        .bind(&s.name)
        .bind(&s.filter)
        .bind(ts(s.created_at))
        .execute(&mut *self.write_alone().await?)
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
        tx: &mut SqliteTx<'_>,
        segment_id: &str,
        customer: &EntityRecord,
        members: Members<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        sqlx::query("DELETE FROM segment_members WHERE segment_id = ?")
            .bind(segment_id)
            .execute(tx.connection())
            .await?;
        let inserted = match members {
            Members::Matching(filter) => {
                let mut binds = Vec::new();
                let where_sql = filter_sql(filter, "data", &mut binds);
                let sql = format!(
                    "INSERT INTO segment_members (segment_id, customer_id)
                     SELECT ?, item_key FROM items WHERE entity_id = ? AND generation = ? AND ({where_sql})"
                );
                let q = sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(segment_id)
                    .bind(customer.id)
                    .bind(customer.generation);
                bind_all(q, &binds)
                    .execute(tx.connection())
                    .await?
                    .rows_affected() as i64
            }
            Members::Keys(keys) => {
                for key in keys {
                    sqlx::query(
                        "INSERT INTO segment_members (segment_id, customer_id) VALUES (?, ?)",
                    )
                    .bind(segment_id)
                    .bind(key)
                    .execute(tx.connection())
                    .await?;
                }
                keys.len() as i64
            }
        };
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
}
