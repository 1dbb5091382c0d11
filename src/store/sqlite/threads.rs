//! Synchronous SQLite connections, each on a thread of its own, that run a whole unit of work
//! (a read, or a transaction) handed over as one closure.
//!
//! Through sqlx every statement, and every batch of rows, is a hand-off between the async
//! runtime and the connection's thread; on the hot paths (pages of items, the dispatcher's
//! claims and records) those hand-offs cost more than SQLite's own work (BENCHMARKS.md). Here a
//! unit of work is one hand-off each way, its statements are prepared once and reused, and a
//! connection that also wrote what it reads next keeps its page cache.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::store::{StoreError, StoreResult};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// A fixed set of connections to one database file, each owned by its thread; work goes to
/// whichever is free first.
#[derive(Clone, Debug)]
pub struct ConnectionThreads {
    jobs: flume::Sender<Job>,
}

/// How a set of connections opens the file.
#[derive(Clone, Copy, Debug)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl ConnectionThreads {
    /// Opens `count` connections to an existing database (migrations have run) and starts their
    /// threads, named `name-N`. The threads end when the last handle is dropped.
    pub fn open(path: &Path, count: usize, access: Access, name: &str) -> StoreResult<Self> {
        let (jobs, queue) = flume::unbounded::<Job>();
        for n in 0..count.max(1) {
            let mut connection = open_connection(path, access)?;
            let queue = queue.clone();
            std::thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    while let Ok(job) = queue.recv() {
                        // A panicking job drops its reply (its caller gets an error); the
                        // connection and its thread go on serving the others.
                        let _ = std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut connection)));
                    }
                })
                .map_err(|e| StoreError::Corrupt(format!("cannot start a database thread: {e}")))?;
        }
        Ok(Self { jobs })
    }

    /// Runs `work` on the next free connection and returns its result.
    ///
    /// If the caller stops waiting, the work still runs to its end (a transaction commits or
    /// rolls back whole); only its result is dropped.
    pub async fn run<T, F>(&self, work: F) -> StoreResult<T>
    where
        F: FnOnce(&mut Connection) -> StoreResult<T> + Send + 'static,
        T: Send + 'static,
    {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move |connection| {
                let _ = reply.send(work(connection));
            }))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

fn gone() -> StoreError {
    StoreError::Corrupt("the database connection thread stopped".into())
}

fn open_connection(path: &Path, access: Access) -> StoreResult<Connection> {
    let flags = OpenFlags::SQLITE_OPEN_NO_MUTEX
        | match access {
            Access::ReadOnly => OpenFlags::SQLITE_OPEN_READ_ONLY,
            Access::ReadWrite => OpenFlags::SQLITE_OPEN_READ_WRITE,
        };
    let connection = Connection::open_with_flags(path, flags)?;
    // The same settings as the sqlx connections (`SqliteDb::open`); WAL mode is the file's.
    connection.busy_timeout(Duration::from_secs(30))?;
    connection.pragma_update(None, "foreign_keys", true)?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    connection.pragma_update(None, "temp_store", "MEMORY")?;
    connection.pragma_update(None, "cache_size", -16384)?;
    connection.pragma_update(None, "mmap_size", 268_435_456)?;
    connection.set_prepared_statement_cache_capacity(128);
    Ok(connection)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_the_connections_and_a_panic_spares_the_thread() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path)
            .unwrap()
            .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE t (n INTEGER);")
            .unwrap();
        let threads = ConnectionThreads::open(&path, 1, Access::ReadWrite, "test").unwrap();
        threads
            .run(|c| Ok(c.execute("INSERT INTO t (n) VALUES (1)", [])?))
            .await
            .unwrap();
        let failed = threads
            .run(|_| -> StoreResult<()> { panic!("a bug in a unit of work") })
            .await;
        assert!(failed.is_err());
        let n: i64 = threads
            .run(|c| Ok(c.query_row("SELECT count(*) FROM t", [], |r| r.get(0))?))
            .await
            .unwrap();
        assert_eq!(
            n, 1,
            "the thread survived the panic and kept its connection"
        );
    }
}
