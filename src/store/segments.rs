//! Segments: their definitions, their members (computed from the `Customer` entity by a
//! filter, inside the caller's transaction) and their counts.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use crate::item_query::Predicate;

/// Who the members of a segment are: the profiles a filter's SQL form keeps, or the keys of
/// those its evaluation over the profiles kept (a filter without a SQL form).
#[derive(Debug, Clone, Copy)]
pub enum Members<'a> {
    Matching(&'a Predicate),
    Keys(&'a [String]),
}
use crate::store::entities::EntityRecord;
use chrono::{DateTime, Utc};

/// A stored segment.
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

impl Store {
    pub async fn insert_segment(&self, s: &SegmentRecord) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.insert_segment(s).await,
            Db::Postgres(db) => db.insert_segment(s).await,
        }
    }

    pub async fn list_segments(&self, instance_id: &str) -> StoreResult<Vec<SegmentRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_segments(instance_id).await,
            Db::Postgres(db) => db.list_segments(instance_id).await,
        }
    }

    pub async fn get_segment(&self, instance_id: &str, id: &str) -> StoreResult<SegmentRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_segment(instance_id, id).await,
            Db::Postgres(db) => db.get_segment(instance_id, id).await,
        }
    }

    /// Recomputes a segment's members from `Customer` inside `tx`; returns the new count.
    pub async fn compute_segment(
        tx: &mut Tx<'_>,
        segment_id: &str,
        customer: &EntityRecord,
        filter: Members<'_>,
        now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        match tx {
            Tx::Sqlite(tx) => {
                SqliteDb::compute_segment(tx, segment_id, customer, filter, now).await
            }
            Tx::Postgres(tx) => PgDb::compute_segment(tx, segment_id, customer, filter, now).await,
        }
    }

    /// A page of a segment's members (their `Customer` items as JSON text).
    pub async fn segment_members(
        &self,
        segment_id: &str,
        customer: &EntityRecord,
        limit: i64,
        offset: i64,
    ) -> StoreResult<Vec<String>> {
        match &self.db {
            Db::Sqlite(db) => {
                db.segment_members(segment_id, customer, limit, offset)
                    .await
            }
            Db::Postgres(db) => {
                db.segment_members(segment_id, customer, limit, offset)
                    .await
            }
        }
    }
}
