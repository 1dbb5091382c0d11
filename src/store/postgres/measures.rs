//! PostgreSQL: measures.

use super::{PgDb, PgTx};
use crate::item_query::Aggregate;
use crate::item_query::Expr;
use crate::store::entities::EntityRecord;
use crate::store::measures::*;
use crate::store::*;
use chrono::{DateTime, Utc};

impl PgDb {
    pub async fn insert_measure(&self, _m: &MeasureRecord) -> StoreResult<()> {
        todo!("postgres insert_measure")
    }

    pub async fn list_measures(&self, _instance_id: &str) -> StoreResult<Vec<MeasureRecord>> {
        todo!("postgres list_measures")
    }

    pub async fn get_measure(&self, _instance_id: &str, _id: &str) -> StoreResult<MeasureRecord> {
        todo!("postgres get_measure")
    }

    pub async fn aggregate(
        &self,
        _entity: &EntityRecord,
        _aggregate: Aggregate,
        _field: Option<&str>,
        _filter: Option<&Expr>,
    ) -> StoreResult<Option<f64>> {
        todo!("postgres aggregate")
    }

    pub async fn set_measure_value(
        _tx: &mut PgTx<'_>,
        _measure_id: &str,
        _value: Option<f64>,
        _now: DateTime<Utc>,
    ) -> StoreResult<()> {
        todo!("postgres set_measure_value")
    }
}
