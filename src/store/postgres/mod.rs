//! The PostgreSQL backend: any number of replicas on one database.

mod datasources;
mod entities;
mod instances;
mod jobs;
mod keys;
mod measures;
mod outbox;
mod segments;
mod subscriptions;
mod unification;

use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;

use super::StoreResult;

/// A write transaction.
pub struct PgTx<'a>(sqlx::Transaction<'a, sqlx::Postgres>);

impl PgTx<'_> {
    #[allow(dead_code)]
    pub(in crate::store) fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.0
    }

    pub(in crate::store) async fn commit(self) -> StoreResult<()> {
        self.0.commit().await?;
        Ok(())
    }
}

#[derive(Clone, Debug)]
pub struct PgDb {
    pool: PgPool,
}

impl PgDb {
    /// Connects and runs the migrations. sqlx's migrator holds a PostgreSQL advisory lock while
    /// it runs, so replicas starting together apply each migration once.
    pub async fn open(url: &str) -> StoreResult<Self> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.application_name("insights-connector"))
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(Self { pool })
    }

    pub async fn begin(&self) -> StoreResult<PgTx<'static>> {
        Ok(PgTx(self.pool.begin().await?))
    }

    pub async fn commit(&self, tx: PgTx<'_>) -> StoreResult<()> {
        tx.commit().await
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
