//! Where the benchmarked servers keep their data: SQLite in their data directory (the default,
//! one process), or a fresh database on a PostgreSQL server shared by N replicas.

use std::path::Path;

use sqlx::Connection;

use crate::process::Service;
use crate::Ctx;

/// The storage backend and the number of replicas of a run.
#[derive(Debug, Clone)]
pub struct Backend {
    /// A PostgreSQL server URL (`postgres://user@host:port/db`); each cluster gets its own
    /// database on it. `None`: SQLite.
    pub postgres: Option<String>,
    pub replicas: usize,
}

impl Backend {
    pub fn new(postgres: Option<String>, replicas: usize) -> Self {
        assert!(replicas >= 1, "--replicas must be at least 1");
        assert!(
            replicas == 1 || postgres.is_some(),
            "--replicas {replicas} needs --postgres URL: one SQLite file serves one process"
        );
        Backend { postgres, replicas }
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres.is_some()
    }

    /// For tables: `SQLite` or `PostgreSQL, 3 replicas`.
    pub fn label(&self) -> String {
        match (&self.postgres, self.replicas) {
            (None, _) => "SQLite".into(),
            (Some(_), 1) => "PostgreSQL, 1 replica".into(),
            (Some(_), n) => format!("PostgreSQL, {n} replicas"),
        }
    }

    /// Appended to the result file names, so runs on different backends do not overwrite
    /// each other: `` (SQLite) or `-postgres-r3`.
    pub fn suffix(&self) -> String {
        match &self.postgres {
            None => String::new(),
            Some(_) => format!("-postgres-r{}", self.replicas),
        }
    }
}

/// A database created on a PostgreSQL server for one cluster, dropped when the cluster is.
struct FreshDb {
    server: String,
    name: String,
    url: String,
    /// The server's postmaster, when it runs on this machine and we may read its data
    /// directory: its CPU time (and that of its backends) is part of what the run cost.
    postmaster: Option<u32>,
}

impl FreshDb {
    async fn create(server: &str) -> FreshDb {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::postgres::PgConnection::connect(server)
            .await
            .unwrap_or_else(|e| panic!("the PostgreSQL server of --postgres answers: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .expect("create the benchmark database");
        let data_dir: Option<String> = sqlx::query_scalar("SHOW data_directory")
            .fetch_one(&mut admin)
            .await
            .ok();
        let postmaster = data_dir.and_then(|d| {
            let pid = std::fs::read_to_string(Path::new(&d).join("postmaster.pid")).ok()?;
            pid.lines().next()?.trim().parse().ok()
        });
        let _ = admin.close().await;
        let mut url = reqwest::Url::parse(server).expect("--postgres is a postgres:// URL");
        url.set_path(&name);
        FreshDb {
            server: server.to_string(),
            name,
            url: url.to_string(),
            postmaster,
        }
    }
}

impl Drop for FreshDb {
    /// Also on a panic, so a failed run leaves no database behind. A thread of its own: Drop
    /// may run inside the harness's runtime, which must not block on itself.
    fn drop(&mut self) {
        let (server, name) = (self.server.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(async {
                    let mut admin = sqlx::postgres::PgConnection::connect(&server).await?;
                    // FORCE: a replica killed rather than stopped may leave a session behind.
                    sqlx::query(sqlx::AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                    )))
                    .execute(&mut admin)
                    .await?;
                    admin.close().await
                })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop the benchmark database {}", self.name);
        }
    }
}

/// The servers of one scenario: one process on SQLite, or N replicas on one fresh PostgreSQL
/// database, each on its own 127.0.0.1 port, all over the same data directory (a server-side
/// file must be there for whichever replica runs the refresh).
pub struct Cluster {
    // Declared before `db`: the replicas stop before their database is dropped.
    pub replicas: Vec<Service>,
    db: Option<FreshDb>,
}

impl Cluster {
    pub async fn start(
        ctx: &Ctx,
        backend: &Backend,
        data_dir: &Path,
        extra_args: &[&str],
        log: &str,
    ) -> Cluster {
        let db = match &backend.postgres {
            Some(server) => Some(FreshDb::create(server).await),
            None => None,
        };
        let mut args: Vec<&str> = Vec::new();
        if let Some(db) = &db {
            args.extend(["--database-url", db.url.as_str()]);
        }
        args.extend_from_slice(extra_args);
        // One after the other: the first applies the migrations, the others find them done.
        let replicas = (0..backend.replicas)
            .map(|i| {
                let name = if backend.replicas == 1 {
                    log.to_string()
                } else {
                    format!("{log}-r{i}")
                };
                Service::start(data_dir, &args, &ctx.log(&name))
            })
            .collect();
        Cluster { replicas, db }
    }

    /// Where requests go that any replica may answer (set-up, firing events).
    pub fn first(&self) -> &Service {
        &self.replicas[0]
    }

    pub fn bases(&self) -> Vec<String> {
        self.replicas.iter().map(|s| s.base.clone()).collect()
    }

    /// Peak RSS summed over the replicas, in KiB.
    pub fn hwm_kb(&self) -> u64 {
        self.replicas.iter().map(Service::hwm_kb).sum()
    }

    /// CPU seconds each replica has used so far.
    pub fn cpu_secs(&self) -> Vec<f64> {
        self.replicas.iter().map(Service::cpu_secs).collect()
    }

    /// CPU seconds the PostgreSQL server has used so far: the postmaster with the backends it
    /// has reaped, plus the live ones. `None` on SQLite, or when the server is not a local
    /// process we can see.
    pub fn postgres_cpu_secs(&self) -> Option<f64> {
        let pm = self.db.as_ref()?.postmaster?;
        let (own, reaped) = proc_times(pm)?;
        let mut total = own + reaped;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|p| p.parse::<u32>().ok())
            else {
                continue;
            };
            if pid != pm && parent_of(pid) == Some(pm) {
                total += proc_times(pid).map_or(0.0, |(own, reaped)| own + reaped);
            }
        }
        Some(total)
    }

    /// Stops every replica (SIGTERM, drain), then drops the database.
    pub fn stop(self) {
        let Cluster { replicas, db } = self;
        for r in replicas {
            r.stop();
        }
        drop(db);
    }
}

/// (utime + stime, cutime + cstime) of a process in seconds, from `/proc/<pid>/stat`.
fn proc_times(pid: u32) -> Option<(f64, f64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<f64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0.0))
        .collect();
    // After the command name: index 0 is field 3 (state); utime..cstime are fields 14..17.
    Some((
        (f.get(11)? + f.get(12)?) / 100.0,
        (f.get(13)? + f.get(14)?) / 100.0,
    ))
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}
