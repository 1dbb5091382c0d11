//! Persistence: every SQL statement of the service lives in this module. The engine and the
//! webhooks module call [`Store`]'s methods with typed values (records, the typed item query,
//! domain events) and an opaque unit of work ([`Tx`]); no sqlx type leaves the module.
//!
//! Two backends, chosen by the database URL: embedded SQLite ([`sqlite`], the default: one
//! file, nothing to install, one process) and PostgreSQL ([`postgres`]: any number of replicas
//! on one database). Each has its own SQL and migrations; the files beside this one hold the
//! records and the one interface both implement, each method a dispatch to the backend.
//!
//! The bottom layer: it may use the leaf vocabularies ([`crate::item_query`], [`crate::triggers`])
//! and nothing else of the crate.

pub mod datasources;
pub mod entities;
mod instances;
pub mod jobs;
mod keys;
pub mod measures;
pub mod outbox;
mod postgres;
pub mod segments;
mod sqlite;
pub mod subscriptions;
pub mod unification;

pub use instances::InstanceRecord;
pub use keys::{ApiKeyRecord, KeyWindow, NewApiKey};

use std::path::{Path, PathBuf};

use postgres::{PgDb, PgTx};
use sqlite::{SqliteDb, SqliteTx};

/// Errors from the store. `NotFound` is a normal outcome; the rest are infrastructure failures.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("conflict: {0}")]
    Conflict(String),
    /// A value the database cannot hold (PostgreSQL refuses U+0000 in text and documents).
    #[error("{0}")]
    Unstorable(String),
    #[error("database error: {0}")]
    Database(sqlx::Error),
    /// An error of the synchronous SQLite connections (`store/sqlite/threads.rs`).
    #[error("database error: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        // PostgreSQL's "untranslatable character" (U+0000 in jsonb) and "invalid byte sequence"
        // (U+0000 in text): bad input, not a failure of the database.
        let code = e.as_database_error().and_then(|d| d.code());
        if matches!(code.as_deref(), Some("22P05") | Some("22021")) {
            return Self::Unstorable("text must not contain the NUL character (U+0000)".into());
        }
        Self::Database(e)
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// Where the data lives, from `--database-url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseUrl {
    /// An SQLite file (`sqlite://PATH`, or the data directory's `connector.db` when no URL is
    /// given).
    Sqlite(PathBuf),
    /// A PostgreSQL server (`postgres://…` or `postgresql://…`).
    Postgres(String),
}

impl DatabaseUrl {
    /// The URL given, or the embedded default under `data_dir`.
    pub fn resolve(url: Option<&str>, data_dir: &Path) -> Result<Self, String> {
        let Some(url) = url.map(str::trim).filter(|u| !u.is_empty()) else {
            return Ok(Self::Sqlite(data_dir.join("connector.db")));
        };
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_string()));
        }
        if let Some(path) = url.strip_prefix("sqlite://") {
            let path = path.split('?').next().unwrap_or_default();
            if path.is_empty() {
                return Err(
                    "--database-url sqlite:// needs a file path (sqlite://./data/connector.db)"
                        .into(),
                );
            }
            return Ok(Self::Sqlite(PathBuf::from(path)));
        }
        Err(format!(
            "--database-url '{}' is neither sqlite://PATH nor postgres://…",
            url.split('@').next_back().unwrap_or(url)
        ))
    }
}

/// A unit of work: one write transaction. Opaque outside the store: the engine gets one from
/// [`Store::begin`], hands it to store functions and ends it with [`Store::commit`]; dropped
/// without a commit, it rolls back.
pub enum Tx<'a> {
    Sqlite(SqliteTx<'a>),
    Postgres(PgTx<'a>),
}

#[derive(Clone, Debug)]
enum Db {
    Sqlite(SqliteDb),
    Postgres(PgDb),
}

/// Handle to the database (cheap to clone).
#[derive(Clone, Debug)]
pub struct Store {
    db: Db,
}

impl Store {
    /// Opens the database (creating an SQLite file if needed) and runs its migrations.
    pub async fn connect(url: &DatabaseUrl) -> StoreResult<Self> {
        let db = match url {
            DatabaseUrl::Sqlite(path) => Db::Sqlite(SqliteDb::open(path).await?),
            DatabaseUrl::Postgres(url) => Db::Postgres(PgDb::open(url).await?),
        };
        Ok(Self { db })
    }

    /// Opens (creating if needed) `connector.db` under `data_dir`: the embedded default.
    pub async fn open(data_dir: &Path) -> StoreResult<Self> {
        Self::connect(&DatabaseUrl::Sqlite(data_dir.join("connector.db"))).await
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self.db, Db::Postgres(_))
    }

    /// Starts a write transaction (the engine commits a state change and its events in one).
    pub async fn begin(&self) -> StoreResult<Tx<'static>> {
        Ok(match &self.db {
            Db::Sqlite(db) => Tx::Sqlite(db.begin().await?),
            Db::Postgres(db) => Tx::Postgres(db.begin().await?),
        })
    }

    /// Commits a transaction that may have changed entities or items.
    pub async fn commit(&self, tx: Tx<'_>) -> StoreResult<()> {
        match (&self.db, tx) {
            (Db::Sqlite(db), Tx::Sqlite(tx)) => db.commit(tx).await,
            (Db::Postgres(db), Tx::Postgres(tx)) => db.commit(tx).await,
            _ => unreachable!("a transaction is committed by the store that began it"),
        }
    }

    /// The data epoch, where this process can know it: it moves after every commit that changes
    /// an entity or its visible items (and after an instance is deleted). A value read *before*
    /// reading the data is a valid tag for what was read: any later change moves the epoch past
    /// it. On SQLite this process is the database's only writer, so an in-process counter sees
    /// every change. On PostgreSQL other replicas write too: `None`, and read caches stay off.
    pub fn data_epoch(&self) -> Option<u64> {
        match &self.db {
            Db::Sqlite(db) => Some(db.data_epoch()),
            Db::Postgres(_) => None,
        }
    }

    /// The SQLite writer connection, for tests that run their own SQL (SQLite only).
    pub fn pool(&self) -> &sqlx::SqlitePool {
        match &self.db {
            Db::Sqlite(db) => db.pool(),
            Db::Postgres(_) => panic!("Store::pool is the SQLite writer; this store is PostgreSQL"),
        }
    }

    /// The SQLite backend, for its own unit tests.
    #[cfg(test)]
    fn sqlite(&self) -> &SqliteDb {
        match &self.db {
            Db::Sqlite(db) => db,
            Db::Postgres(_) => panic!("not SQLite"),
        }
    }

    /// Wakes `signal` when another process commits deliveries, until `stop` (PostgreSQL: a
    /// LISTEN on the outbox channel). On SQLite this process is the only writer and wakes its
    /// dispatcher itself, so this returns at once.
    pub async fn relay_outbox_hints(
        &self,
        signal: std::sync::Arc<tokio::sync::Notify>,
        stop: tokio_util::sync::CancellationToken,
    ) {
        if let Db::Postgres(db) = &self.db {
            db.relay_outbox_hints(signal, stop).await;
        }
    }

    /// Readiness probe: a trivial query.
    pub async fn ping(&self) -> StoreResult<()> {
        match &self.db {
            Db::Sqlite(db) => db.ping().await,
            Db::Postgres(db) => db.ping().await,
        }
    }

    pub async fn close(&self) {
        match &self.db {
            Db::Sqlite(db) => db.close().await,
            Db::Postgres(db) => db.close().await,
        }
    }
}

/// Longest error text kept in `last_error` columns.
pub(in crate::store) const MAX_ERROR_CHARS: usize = 500;

/// `s` cut to `max` characters, with an ellipsis when cut.
pub(in crate::store) fn clip(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_string(),
    }
}
