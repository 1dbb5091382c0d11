//! Business measures: their definitions and last values, and the aggregate query that
//! computes them.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use crate::item_query::Aggregate;
use crate::item_query::Predicate;
use crate::store::entities::EntityRecord;
use chrono::{DateTime, Utc};

/// A stored measure.
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

impl Store {
    pub async fn insert_measure(&self, m: &MeasureRecord) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.insert_measure(m).await,
            Db::Postgres(db) => db.insert_measure(m).await,
        }
    }

    pub async fn list_measures(&self, instance_id: &str) -> StoreResult<Vec<MeasureRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_measures(instance_id).await,
            Db::Postgres(db) => db.list_measures(instance_id).await,
        }
    }

    pub async fn get_measure(&self, instance_id: &str, id: &str) -> StoreResult<MeasureRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_measure(instance_id, id).await,
            Db::Postgres(db) => db.get_measure(instance_id, id).await,
        }
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
        match &self.db {
            Db::Sqlite(db) => db.aggregate(entity, aggregate, field, filter).await,
            Db::Postgres(db) => db.aggregate(entity, aggregate, field, filter).await,
        }
    }

    pub async fn set_measure_value(
        tx: &mut Tx<'_>,
        measure_id: &str,
        value: Option<f64>,
        now: DateTime<Utc>,
    ) -> StoreResult<()> {
        match tx {
            Tx::Sqlite(tx) => SqliteDb::set_measure_value(tx, measure_id, value, now).await,
            Tx::Postgres(tx) => PgDb::set_measure_value(tx, measure_id, value, now).await,
        }
    }
}
