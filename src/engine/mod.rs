//! The audience-insights domain: instances, data sources and ingestion, entities and items,
//! unification, segments, measures, refresh jobs and the domain events they record.
//!
//! The middle layer: it may use the store, the trigger catalog and the typed item query; never
//! HTTP types or SQL. Domain types derive `utoipa::ToSchema` because their JSON shape is the
//! public contract; that is schema metadata, not transport.

pub mod column_types;
pub mod comparators;
pub mod datasources;
pub mod entities;
pub mod entity_resolution;
mod epoch_cache;
pub mod full_refresh;
pub mod ingest;
pub mod instances;
pub mod jobs;
pub mod measures;
pub mod odata;
mod reads;
pub mod schedule;
pub mod schema_inference;
pub mod scored_rules;
pub mod segments;
pub mod unification;

use std::path::PathBuf;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::{Store, StoreError};

/// The tenant a request acts for (from its API key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TenantId(pub String);

impl TenantId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The thing does not exist for this tenant (another tenant's ids look exactly like this).
    #[error("{0}")]
    NotFound(String),
    /// The input is not acceptable; the message says why and where.
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Internal(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => EngineError::NotFound("not found".into()),
            StoreError::Conflict(m) => EngineError::Conflict(m),
            StoreError::Unstorable(m) => EngineError::Invalid(m),
            other => EngineError::Internal(other.to_string()),
        }
    }
}

pub type EngineResult<T> = Result<T, EngineError>;

/// Entry point to the domain; cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    store: Store,
    /// This process among the replicas: the owner of the jobs it claims, which it keeps
    /// heartbeating while it runs them.
    owner: String,
    /// The jobs this process's workers are running now: only these get heartbeats, so a job
    /// whose worker died (a panic) stops heartbeating and is failed by the sweep.
    running_jobs: std::sync::Mutex<std::collections::HashSet<String>>,
    data_dir: PathBuf,
    /// Entity and item reads, valid while the store's data epoch is unchanged.
    reads: reads::ReadCache,
    /// Woken after a transaction that queued outbox deliveries commits.
    outbox_signal: Arc<tokio::sync::Notify>,
    /// Woken when a job is queued or finishes.
    job_signal: Arc<tokio::sync::Notify>,
    /// Cancelled when the service stops; background loops end.
    shutdown: CancellationToken,
    /// The background loops (job workers, scheduler, retention), awaited at shutdown.
    background: TaskTracker,
}

impl Engine {
    /// `read_cache_bytes` bounds the cache of entity and item reads (0 switches it off).
    pub fn new(store: Store, data_dir: PathBuf, read_cache_bytes: u64) -> Self {
        Self {
            inner: Arc::new(EngineInner {
                store,
                owner: uuid::Uuid::new_v4().to_string(),
                running_jobs: Default::default(),
                data_dir,
                reads: reads::ReadCache::new(read_cache_bytes),
                outbox_signal: Arc::new(tokio::sync::Notify::new()),
                job_signal: Arc::new(tokio::sync::Notify::new()),
                shutdown: CancellationToken::new(),
                background: TaskTracker::new(),
            }),
        }
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    /// The owner id of this process's jobs.
    pub fn owner(&self) -> &str {
        &self.inner.owner
    }

    fn running_jobs(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<String>> {
        self.inner
            .running_jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub(crate) fn reads(&self) -> &reads::ReadCache {
        &self.inner.reads
    }

    pub fn data_dir(&self) -> &std::path::Path {
        &self.inner.data_dir
    }

    /// The dispatcher waits on this; the engine signals it after committing events.
    pub fn outbox_signal(&self) -> Arc<tokio::sync::Notify> {
        self.inner.outbox_signal.clone()
    }

    /// Tells background loops (job workers, scheduler, dispatcher, retention) to stop.
    pub fn shut_down(&self) {
        self.inner.shutdown.cancel();
    }

    /// Cancelled when the service stops.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.inner.shutdown.clone()
    }

    /// Runs a background loop that ends when [`Self::shut_down`] is called.
    pub fn spawn_background<F>(&self, task: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        self.inner.background.spawn(task);
    }

    /// After [`Self::shut_down`]: waits up to `grace` for the background loops to end (a job
    /// that is running finishes its current step; one cut off stops heartbeating and is failed
    /// by the sweep of a replica, or at the next start on SQLite).
    pub async fn background_stopped(&self, grace: std::time::Duration) {
        self.inner.background.close();
        if tokio::time::timeout(grace, self.inner.background.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running at shutdown");
        }
    }

    pub(crate) fn job_signal(&self) -> Arc<tokio::sync::Notify> {
        self.inner.job_signal.clone()
    }

    /// Call after a commit that recorded events.
    pub fn events_committed(&self) {
        self.inner.outbox_signal.notify_one();
    }
}

/// Maps a store NotFound to a message naming what was missing.
pub fn not_found(e: StoreError, what: &str, id: &str) -> EngineError {
    match e {
        StoreError::NotFound => EngineError::NotFound(format!("{what} '{id}' was not found")),
        other => other.into(),
    }
}

/// Validates a human-entered name: trimmed, 1–200 characters, no control characters.
pub fn parse_name(field: &str, value: &str) -> EngineResult<String> {
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(EngineError::Invalid(format!("{field} must not be empty")));
    }
    if trimmed.chars().count() > 200 {
        return Err(EngineError::Invalid(format!(
            "{field} must be at most 200 characters"
        )));
    }
    if trimmed.chars().any(char::is_control) {
        return Err(EngineError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(trimmed.to_string())
}

/// The current time at the precision the store keeps (microseconds), so an object reads back
/// exactly as it was returned when created.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    use chrono::{SubsecRound, Utc};
    Utc::now().trunc_subsecs(6)
}
