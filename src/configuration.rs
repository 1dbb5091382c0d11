//! Settings for `serve`: every flag has an environment fallback (`CONNECTOR_…`), so a container
//! or a service manager configures the service without a command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;

use crate::store::DatabaseUrl;
use crate::webhooks::retry::RetryPolicy;

/// Command-line / environment settings of the server.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "CONNECTOR_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,

    /// Directory for the SQLite database and server-side data source files.
    #[arg(long, env = "CONNECTOR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database: `sqlite://PATH`, or `postgres://USER:PASSWORD@HOST:PORT/DB` for replicas
    /// sharing one PostgreSQL database (default: SQLite at DATA_DIR/connector.db).
    #[arg(long, env = "CONNECTOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// Absolute public base URL used in `Location` headers and next links
    /// (default: http://<bind address>).
    #[arg(long, env = "CONNECTOR_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// Bootstrap API keys, `tenant:key,tenant:key`. Stored hashed; existing keys are kept.
    #[arg(long, env = "CONNECTOR_API_KEYS", hide_env_values = true)]
    pub api_keys: Option<String>,

    /// Development only: let webhook callbacks target loopback and private addresses (and plain http).
    #[arg(
        long,
        env = "CONNECTOR_ALLOW_PRIVATE_CALLBACKS",
        default_value_t = false
    )]
    pub allow_private_callbacks: bool,

    /// Comma-separated host patterns (e.g. `*.logic.azure.com`); when set, callbacks to any other host are refused.
    #[arg(long, env = "CONNECTOR_CALLBACK_HOSTS")]
    pub callback_hosts: Option<String>,

    /// Optional per-API-key request budget, e.g. `100/60s` (off when unset).
    #[arg(long, env = "CONNECTOR_RATE_LIMIT")]
    pub rate_limit: Option<String>,

    /// Largest accepted request body in bytes.
    #[arg(long, env = "CONNECTOR_MAX_BODY_BYTES", default_value_t = 16 * 1024 * 1024)]
    pub max_body_bytes: usize,

    /// Number of background job workers (refreshes, unification).
    #[arg(long, env = "CONNECTOR_JOB_WORKERS", default_value_t = 2)]
    pub job_workers: usize,

    /// Seconds a running job may go without a heartbeat before any replica fails it as
    /// interrupted (its replica stopped or lost the database).
    #[arg(
        long,
        env = "CONNECTOR_JOB_HEARTBEAT_TIMEOUT_SECS",
        default_value_t = 60
    )]
    pub job_heartbeat_timeout_secs: u64,

    /// Number of concurrent webhook deliveries.
    #[arg(long, env = "CONNECTOR_DELIVERY_CONCURRENCY", default_value_t = 64)]
    pub delivery_concurrency: usize,

    /// Total deadline of one webhook delivery attempt, in seconds.
    #[arg(long, env = "CONNECTOR_DELIVERY_TIMEOUT_SECS", default_value_t = 15)]
    pub delivery_timeout_secs: u64,

    /// Maximum delivery attempts before a notification is dead-lettered.
    #[arg(long, env = "CONNECTOR_DELIVERY_MAX_ATTEMPTS", default_value_t = 8)]
    pub delivery_max_attempts: u32,

    /// Retry schedule in seconds (comma-separated delay before attempt 2, 3, …);
    /// default is Svix-like: 5s, 5m, 30m, 2h, 5h, 10h, 10h.
    #[arg(long, env = "CONNECTOR_DELIVERY_SCHEDULE")]
    pub delivery_schedule: Option<String>,

    /// Days finished webhook deliveries (and their attempts and events) are kept; 0 keeps
    /// them forever. Pending deliveries are never pruned.
    #[arg(long, env = "CONNECTOR_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u64,

    /// Memory for cached entity and item reads, in MiB (0 switches the cache off).
    #[arg(long, env = "CONNECTOR_READ_CACHE_MIB", default_value_t = 64)]
    pub read_cache_mib: u64,

    /// HTTP worker threads (default: number of cores).
    #[arg(long, env = "CONNECTOR_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

impl Default for ServeArgs {
    fn default() -> Self {
        Self {
            bind: "127.0.0.1:8080".into(),
            data_dir: PathBuf::from("./data"),
            database_url: None,
            public_url: None,
            api_keys: None,
            allow_private_callbacks: false,
            callback_hosts: None,
            rate_limit: None,
            max_body_bytes: 16 * 1024 * 1024,
            job_workers: 2,
            job_heartbeat_timeout_secs: JOB_HEARTBEAT_TIMEOUT.as_secs(),
            delivery_concurrency: 64,
            delivery_timeout_secs: 15,
            delivery_max_attempts: 8,
            delivery_schedule: None,
            retention_days: 30,
            read_cache_mib: 64,
            http_workers: None,
        }
    }
}

/// Where the `keys` commands find the database: resolved exactly like `serve`'s.
#[derive(Debug, Clone, Args)]
pub struct StoreArgs {
    /// Directory of the SQLite database (used when no database URL is given).
    #[arg(long, env = "CONNECTOR_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,

    /// The database: `sqlite://PATH` or `postgres://USER:PASSWORD@HOST:PORT/DB`
    /// (default: SQLite at DATA_DIR/connector.db).
    #[arg(long, env = "CONNECTOR_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
}

impl StoreArgs {
    pub fn database(&self) -> anyhow::Result<DatabaseUrl> {
        DatabaseUrl::resolve(self.database_url.as_deref(), &self.data_dir)
            .map_err(|e| anyhow::anyhow!(e))
    }
}

/// A parsed `N/Ds` budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub requests: u32,
    pub per: Duration,
}

impl std::str::FromStr for RateLimit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || format!("rate limit '{s}' must look like 100/60s (requests/seconds)");
        let (n, window) = s.trim().split_once('/').ok_or_else(err)?;
        let requests: u32 = n.trim().parse().map_err(|_| err())?;
        let window = window.trim();
        let secs: u64 = window
            .strip_suffix('s')
            .unwrap_or(window)
            .parse()
            .map_err(|_| err())?;
        if requests == 0 || secs == 0 {
            return Err(err());
        }
        Ok(Self {
            requests,
            per: Duration::from_secs(secs),
        })
    }
}

/// The default of `--job-heartbeat-timeout-secs`: several missed beats (one every 10 s), so
/// only a stopped replica or one cut off from the database loses its jobs.
pub const JOB_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);

/// Validated settings the application is built from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    /// Without a trailing slash.
    pub public_url: Option<String>,
    pub bootstrap_keys: Vec<(String, String)>,
    pub allow_private_callbacks: bool,
    pub callback_hosts: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    pub max_body_bytes: usize,
    pub job_workers: usize,
    /// A running job whose heartbeat is older than this is failed as interrupted.
    pub job_heartbeat_timeout: Duration,
    pub delivery_concurrency: usize,
    pub delivery_timeout: Duration,
    pub retry: RetryPolicy,
    pub http_workers: Option<usize>,
    pub read_cache_bytes: u64,
    /// How long finished deliveries are kept (zero: forever).
    pub retention: Duration,
    /// How often the dispatcher polls the outbox when it was not woken up.
    pub dispatcher_poll_interval: Duration,
    /// Whether this process delivers webhooks (a replica that only answers requests does not).
    pub deliver_webhooks: bool,
}

impl Settings {
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Self> {
        let bind: SocketAddr = args
            .bind
            .parse()
            .map_err(|e| anyhow::anyhow!("--bind '{}': {e}", args.bind))?;
        let public_url = match &args.public_url {
            Some(u) => {
                let parsed = url::Url::parse(u).map_err(|e| {
                    anyhow::anyhow!("--public-url '{u}' is not an absolute URL: {e}")
                })?;
                if !matches!(parsed.scheme(), "http" | "https") {
                    anyhow::bail!("--public-url must be http or https");
                }
                Some(u.trim_end_matches('/').to_string())
            }
            None => None,
        };
        let bootstrap_keys = match &args.api_keys {
            Some(s) => parse_bootstrap_keys(s)?,
            None => Vec::new(),
        };
        let callback_hosts = args
            .callback_hosts
            .as_deref()
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        let rate_limit = args
            .rate_limit
            .as_deref()
            .map(str::parse)
            .transpose()
            .map_err(|e: String| anyhow::anyhow!(e))?;
        let mut retry = RetryPolicy {
            max_attempts: args.delivery_max_attempts.max(1),
            ..RetryPolicy::default()
        };
        if let Some(schedule) = &args.delivery_schedule {
            retry.schedule = parse_schedule(schedule)?;
        }
        Ok(Self {
            bind,
            data_dir: args.data_dir.clone(),
            database: DatabaseUrl::resolve(args.database_url.as_deref(), &args.data_dir)
                .map_err(|e| anyhow::anyhow!(e))?,
            public_url,
            bootstrap_keys,
            allow_private_callbacks: args.allow_private_callbacks,
            callback_hosts,
            rate_limit,
            max_body_bytes: args.max_body_bytes,
            job_workers: args.job_workers.max(1),
            job_heartbeat_timeout: Duration::from_secs(args.job_heartbeat_timeout_secs.max(1)),
            delivery_concurrency: args.delivery_concurrency.max(1),
            delivery_timeout: Duration::from_secs(args.delivery_timeout_secs.max(1)),
            retry,
            http_workers: args.http_workers,
            read_cache_bytes: args.read_cache_mib.saturating_mul(1024 * 1024),
            retention: Duration::from_secs(args.retention_days.saturating_mul(86_400)),
            dispatcher_poll_interval: Duration::from_secs(1),
            deliver_webhooks: true,
        })
    }

    /// Settings for tests: port 0 on loopback, everything else default.
    pub fn for_tests(data_dir: PathBuf) -> Self {
        let mut s = Self::from_args(&ServeArgs {
            bind: "127.0.0.1:0".into(),
            data_dir,
            ..ServeArgs::default()
        })
        .expect("default settings are valid");
        s.http_workers = Some(2);
        s
    }
}

fn parse_bootstrap_keys(s: &str) -> anyhow::Result<Vec<(String, String)>> {
    s.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (tenant, key) = pair
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("CONNECTOR_API_KEYS entries must be tenant:key"))?;
            let (tenant, key) = (tenant.trim(), key.trim());
            if tenant.is_empty() || key.len() < 16 {
                anyhow::bail!(
                    "CONNECTOR_API_KEYS entry for '{tenant}': tenant must be non-empty and the key at least 16 characters"
                );
            }
            Ok((tenant.to_string(), key.to_string()))
        })
        .collect()
}

fn parse_schedule(s: &str) -> anyhow::Result<Vec<Duration>> {
    let mut schedule = vec![Duration::ZERO];
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let secs: f64 = part.parse().map_err(|_| {
            anyhow::anyhow!("delivery schedule entry '{part}' is not a number of seconds")
        })?;
        if !(0.0..=7.0 * 86400.0).contains(&secs) {
            anyhow::bail!("delivery schedule entry '{part}' is out of range");
        }
        schedule.push(Duration::from_secs_f64(secs));
    }
    Ok(schedule)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_parses_and_rejects() {
        assert_eq!(
            "100/60s".parse::<RateLimit>().unwrap(),
            RateLimit {
                requests: 100,
                per: Duration::from_secs(60)
            }
        );
        assert!("100".parse::<RateLimit>().is_err());
        assert!("0/60s".parse::<RateLimit>().is_err());
        assert!("x/60s".parse::<RateLimit>().is_err());
    }

    #[test]
    fn bootstrap_keys_need_tenant_and_long_key() {
        let keys = parse_bootstrap_keys("a:0123456789abcdef, b:fedcba9876543210").unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[1].0, "b");
        assert!(parse_bootstrap_keys("a:short").is_err());
        assert!(parse_bootstrap_keys("nokey").is_err());
    }
}
