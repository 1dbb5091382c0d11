//! The PostgreSQL backend: any number of replicas on one database.

mod datasources;
mod entities;
mod instances;
mod item_sql;
mod jobs;
mod keys;
mod measures;
mod outbox;
mod segments;
mod subscriptions;
mod unification;

use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::StoreResult;

/// The channel `record_event` notifies after queueing deliveries.
pub(in crate::store) const OUTBOX_CHANNEL: &str = "outbox";

/// A write transaction.
pub struct PgTx<'a>(sqlx::Transaction<'a, sqlx::Postgres>);

impl PgTx<'_> {
    pub(in crate::store) fn connection(&mut self) -> &mut sqlx::PgConnection {
        &mut self.0
    }

    pub(in crate::store) async fn commit(self) -> StoreResult<()> {
        self.0.commit().await?;
        Ok(())
    }
}

/// An id from outside as the uuid it names, or `None` when it names no row, so callers answer
/// `NotFound` (or an empty list) instead of letting PostgreSQL reject the cast. The engine's ids
/// are `Uuid::new_v4().to_string()`, so only that spelling matches, as on SQLite, where ids are
/// compared as text.
pub(in crate::store) fn parse_id(id: &str) -> Option<uuid::Uuid> {
    uuid::Uuid::try_parse(id).ok().filter(|u| {
        *u.hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer())
            == *id
    })
}

/// [`parse_id`] for a lookup of one row: a malformed id is `NotFound`.
pub(in crate::store) fn id_or_not_found(id: &str) -> super::StoreResult<uuid::Uuid> {
    parse_id(id).ok_or(super::StoreError::NotFound)
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

    /// Wakes `signal` whenever any replica commits deliveries (a NOTIFY on `outbox` from
    /// `record_event`), until `stop`. A hint only: the dispatcher polls as well, so a dropped
    /// connection costs latency, never a delivery; the listener reconnects after a pause.
    pub async fn relay_outbox_hints(&self, signal: Arc<Notify>, stop: CancellationToken) {
        while !stop.is_cancelled() {
            let mut listener = match PgListener::connect_with(&self.pool).await {
                Ok(listener) => listener,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for outbox hints; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            if let Err(e) = listener.listen(OUTBOX_CHANNEL).await {
                tracing::warn!(error = %e, "LISTEN outbox failed; retrying");
                continue;
            }
            // Deliveries committed while no one listened are found by the poll; one wake-up
            // now covers a reconnect's gap.
            signal.notify_one();
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    hint = listener.recv() => match hint {
                        Ok(_) => signal.notify_one(),
                        Err(e) => {
                            tracing::warn!(error = %e, "outbox hint connection lost; reconnecting");
                            break;
                        }
                    },
                }
            }
        }
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}
