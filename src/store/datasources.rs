//! Data sources: their definitions and the outcome of their last refresh.

use super::postgres::PgDb;
use super::sqlite::SqliteDb;
use super::{Db, Store, StoreResult, Tx};
use chrono::{DateTime, Utc};

#[derive(Debug, Clone)]
pub struct DataSourceRecord {
    pub id: String,
    pub instance_id: String,
    pub name: String,
    pub entity_name: String,
    pub format: String,
    pub key_field: String,
    pub content: Option<String>,
    pub path: Option<String>,
    pub created_at: DateTime<Utc>,
    pub last_status: Option<String>,
    pub last_rows: Option<i64>,
    pub last_error: Option<String>,
    pub last_started_at: Option<DateTime<Utc>>,
    pub last_completed_at: Option<DateTime<Utc>>,
}

impl Store {
    pub async fn insert_data_source(&self, d: &DataSourceRecord) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.insert_data_source(d).await,
            Db::Postgres(db) => db.insert_data_source(d).await,
        }
    }

    pub async fn list_data_sources(&self, instance_id: &str) -> StoreResult<Vec<DataSourceRecord>> {
        match &self.db {
            Db::Sqlite(db) => db.list_data_sources(instance_id).await,
            Db::Postgres(db) => db.list_data_sources(instance_id).await,
        }
    }

    pub async fn get_data_source(
        &self,
        instance_id: &str,
        id: &str,
    ) -> StoreResult<DataSourceRecord> {
        match &self.db {
            Db::Sqlite(db) => db.get_data_source(instance_id, id).await,
            Db::Postgres(db) => db.get_data_source(instance_id, id).await,
        }
    }

    /// Records the outcome of a refresh inside the caller's transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn record_data_source_refresh(
        tx: &mut Tx<'_>,
        id: &str,
        succeeded: bool,
        rows: i64,
        error: Option<&str>,
        started_at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
    ) -> StoreResult<()> {
        match tx {
            Tx::Sqlite(tx) => {
                SqliteDb::record_data_source_refresh(
                    tx,
                    id,
                    succeeded,
                    rows,
                    error,
                    started_at,
                    completed_at,
                )
                .await
            }
            Tx::Postgres(tx) => {
                PgDb::record_data_source_refresh(
                    tx,
                    id,
                    succeeded,
                    rows,
                    error,
                    started_at,
                    completed_at,
                )
                .await
            }
        }
    }
}
