//! The embedded SQLite backend: one file under the data directory, nothing to install.
//!
//! Writes go through one connection and queue for it in the application; reads use a pool of
//! read-only connections, which WAL mode never blocks behind a writer. A task that holds a
//! write transaction may read through the reader pool but can never wait for a second writer
//! connection while writers waiting for the lock hold all the others: with one writer
//! connection there are no others, and the mistake would hang every test that writes.

mod datasources;
mod entities;
mod field_indexes;
mod instances;
mod item_sql;
mod jobs;
mod keys;
mod measures;
mod outbox;
mod segments;
mod subscriptions;
mod threads;
mod unification;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::{StoreError, StoreResult};
use threads::{Access, ConnectionThreads};

/// A write transaction on the writer connection, holding the write turn until it ends.
pub struct SqliteTx<'a> {
    tx: sqlx::Transaction<'a, sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl SqliteTx<'_> {
    pub(in crate::store) fn connection(&mut self) -> &mut sqlx::SqliteConnection {
        &mut self.tx
    }

    /// Commits a transaction that changed nothing readers of entities and items can see.
    pub(in crate::store) async fn commit(self) -> StoreResult<()> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// The writer connection in its turn, for statements outside a transaction.
pub(in crate::store) struct WriteAlone {
    connection: sqlx::pool::PoolConnection<sqlx::Sqlite>,
    _turn: tokio::sync::OwnedMutexGuard<()>,
}

impl std::ops::Deref for WriteAlone {
    type Target = sqlx::SqliteConnection;
    fn deref(&self) -> &Self::Target {
        &self.connection
    }
}

impl std::ops::DerefMut for WriteAlone {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.connection
    }
}

#[derive(Clone, Debug)]
pub struct SqliteDb {
    writer: SqlitePool,
    reader: SqlitePool,
    /// Synchronous read-only connections for the hot reads (entities, pages and items): a
    /// read is one hand-off to a connection thread, not one per statement and row batch.
    readers: ConnectionThreads,
    /// The dispatcher's connection: its scans, claims, reads of claimed deliveries and attempt
    /// records, each one hand-off; reading on the connection that wrote keeps its page cache.
    outbox: ConnectionThreads,
    /// The connection that writes staged items (refreshes and unification), a batch at a time.
    bulk: ConnectionThreads,
    /// Queues the writers of the two write connections (the sqlx writer's transactions and the
    /// outbox connection's) in the application: SQLite's busy handler would make the loser
    /// poll with sleeps of a millisecond and more.
    write_turn: Arc<tokio::sync::Mutex<()>>,
    /// The indexes on filtered fields (`field_indexes.rs`).
    field_indexes: Arc<field_indexes::FieldIndexes>,
    /// Counts committed changes to what readers of entities and items can see; read caches
    /// tag their entries with it (see [`crate::store::Store::data_epoch`]). This process is the
    /// file's only writer, so the counter sees every change.
    epoch: Arc<AtomicU64>,
}

impl SqliteDb {
    /// Opens (creating if needed) the database file at `path` and runs its migrations.
    pub async fn open(path: &Path) -> StoreResult<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(sqlx::Error::Io(std::io::Error::new(
                    e.kind(),
                    format!("cannot create data directory {}: {e}", dir.display()),
                )))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-65536")
            .pragma("mmap_size", "268435456")
            // A page of items (up to 1,001 rows) fits the row channel, so the connection's
            // worker thread never waits for the reader halfway through a page (each wait is
            // two thread hand-offs).
            .row_buffer_size(1024);
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // No ping round trip to the connection's worker thread on every acquire: the
            // database is a local file, a connection does not go stale (BENCHMARKS.md).
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(8)
            .min_connections(1)
            .test_before_acquire(false)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        let index_names: Vec<String> = sqlx::query_scalar(
            "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'items_field_%'",
        )
        .fetch_all(&writer)
        .await?;
        let field_indexes =
            field_indexes::FieldIndexes::from_names(index_names.iter().map(String::as_str));
        let readers = ConnectionThreads::open(path, 4, Access::ReadOnly, "sqlite-read")?;
        let outbox = ConnectionThreads::open(path, 1, Access::ReadWrite, "sqlite-outbox")?;
        let bulk = ConnectionThreads::open(path, 1, Access::ReadWrite, "sqlite-bulk")?;
        Ok(Self {
            writer,
            reader,
            readers,
            outbox,
            bulk,
            write_turn: Arc::new(tokio::sync::Mutex::new(())),
            field_indexes,
            epoch: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Starts a write transaction.
    ///
    /// `BEGIN IMMEDIATE` takes SQLite's write lock up front. A deferred transaction that reads
    /// and then writes fails at once with `SQLITE_BUSY` (the busy timeout does not apply) when
    /// another connection committed in between; an immediate one waits its turn instead.
    pub async fn begin(&self) -> StoreResult<SqliteTx<'static>> {
        let turn = self.write_turn.clone().lock_owned().await;
        Ok(SqliteTx {
            tx: self.writer.begin_with("BEGIN IMMEDIATE").await?,
            _turn: turn,
        })
    }

    /// The writer connection for one statement outside a transaction, in its turn (see
    /// `write_turn`): use it as `.execute(&mut *self.write_alone().await?)`, so the turn lasts
    /// until the statement has run.
    pub(in crate::store) async fn write_alone(&self) -> StoreResult<WriteAlone> {
        let turn = self.write_turn.clone().lock_owned().await;
        Ok(WriteAlone {
            connection: self.writer.acquire().await?,
            _turn: turn,
        })
    }

    /// Commits a transaction that may have changed entities or items, then moves the data epoch.
    pub async fn commit(&self, tx: SqliteTx<'_>) -> StoreResult<()> {
        tx.commit().await?;
        self.data_changed();
        Ok(())
    }

    pub fn data_epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    fn data_changed(&self) {
        self.epoch.fetch_add(1, Ordering::AcqRel);
    }

    pub fn pool(&self) -> &SqlitePool {
        &self.writer
    }

    pub async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.reader.close().await;
        self.writer.close().await;
    }
}

/// A column by name from a row of either SQLite driver (sqlx's, or the synchronous
/// connections' in `threads.rs`), so a record is mapped from its row once for both.
pub trait Columns {
    fn column<T>(&self, name: &str) -> StoreResult<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + rusqlite::types::FromSql;
}

impl Columns for sqlx::sqlite::SqliteRow {
    fn column<T>(&self, name: &str) -> StoreResult<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + rusqlite::types::FromSql,
    {
        Ok(sqlx::Row::try_get(self, name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn column<T>(&self, name: &str) -> StoreResult<T>
    where
        T: for<'r> sqlx::Decode<'r, sqlx::Sqlite>
            + sqlx::Type<sqlx::Sqlite>
            + rusqlite::types::FromSql,
    {
        Ok(self.get(name)?)
    }
}

/// Timestamps are stored as RFC 3339 text with microseconds, so they sort lexicographically.
pub fn ts(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

pub fn parse_ts(s: &str) -> StoreResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&chrono::Utc))
        .map_err(|e| StoreError::Corrupt(format!("bad timestamp '{s}': {e}")))
}

pub fn parse_opt_ts(s: Option<String>) -> StoreResult<Option<chrono::DateTime<chrono::Utc>>> {
    s.as_deref().map(parse_ts).transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A transaction that reads and then writes must not fail because another connection
    /// committed in between (what a deferred `BEGIN` does in WAL mode: `SQLITE_BUSY` at once).
    #[tokio::test]
    async fn a_read_then_write_transaction_survives_a_concurrent_commit() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::Store::open(dir.path()).await.unwrap();
        sqlx::query("CREATE TABLE counters (n INTEGER)")
            .execute(store.pool())
            .await
            .unwrap();

        let mut tx = store.sqlite().begin().await.unwrap();
        let before: i64 = sqlx::query_scalar("SELECT count(*) FROM counters")
            .fetch_one(tx.connection())
            .await
            .unwrap();
        let other = {
            let pool = store.pool().clone();
            tokio::spawn(async move {
                sqlx::query("INSERT INTO counters (n) VALUES (2)")
                    .execute(&pool)
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(100)).await;
        sqlx::query("INSERT INTO counters (n) VALUES (?)")
            .bind(before + 1)
            .execute(tx.connection())
            .await
            .expect("the write after a read must wait for its turn, not fail");
        tx.commit().await.unwrap();
        other
            .await
            .unwrap()
            .expect("the concurrent writer waits too");

        let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM counters")
            .fetch_one(store.pool())
            .await
            .unwrap();
        assert_eq!(rows, 2);
    }
}
