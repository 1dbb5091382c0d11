//! PostgreSQL: segments.

use super::{PgDb, PgTx};
use crate::item_query::Expr;
use crate::store::entities::EntityRecord;
use crate::store::segments::*;
use crate::store::*;
use chrono::{DateTime, Utc};

impl PgDb {
    pub async fn insert_segment(&self, _s: &SegmentRecord) -> StoreResult<()> {
        todo!("postgres insert_segment")
    }

    pub async fn list_segments(&self, _instance_id: &str) -> StoreResult<Vec<SegmentRecord>> {
        todo!("postgres list_segments")
    }

    pub async fn get_segment(&self, _instance_id: &str, _id: &str) -> StoreResult<SegmentRecord> {
        todo!("postgres get_segment")
    }

    pub async fn compute_segment(
        _tx: &mut PgTx<'_>,
        _segment_id: &str,
        _customer: &EntityRecord,
        _filter: &Expr,
        _now: DateTime<Utc>,
    ) -> StoreResult<i64> {
        todo!("postgres compute_segment")
    }

    pub async fn segment_members(
        &self,
        _segment_id: &str,
        _customer: &EntityRecord,
        _limit: i64,
        _offset: i64,
    ) -> StoreResult<Vec<String>> {
        todo!("postgres segment_members")
    }
}
