//! PostgreSQL: datasources.

use super::{PgDb, PgTx};
use crate::store::datasources::*;
use crate::store::*;
use chrono::{DateTime, Utc};

impl PgDb {
    pub async fn insert_data_source(&self, _d: &DataSourceRecord) -> StoreResult<()> {
        todo!("postgres insert_data_source")
    }

    pub async fn list_data_sources(
        &self,
        _instance_id: &str,
    ) -> StoreResult<Vec<DataSourceRecord>> {
        todo!("postgres list_data_sources")
    }

    pub async fn get_data_source(
        &self,
        _instance_id: &str,
        _id: &str,
    ) -> StoreResult<DataSourceRecord> {
        todo!("postgres get_data_source")
    }

    pub async fn record_data_source_refresh(
        _tx: &mut PgTx<'_>,
        _id: &str,
        _succeeded: bool,
        _rows: i64,
        _error: Option<&str>,
        _started_at: DateTime<Utc>,
        _completed_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        todo!("postgres record_data_source_refresh")
    }
}
