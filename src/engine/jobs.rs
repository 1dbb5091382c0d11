//! Asynchronous jobs (Power Automate's 202 + Location polling pattern), run by a bounded pool
//! of background workers. Jobs are rows, so they survive restarts: queued jobs simply run. A
//! running job names its owner (the engine's process) and carries a heartbeat the owner renews;
//! every replica sweeps periodically and fails the running jobs whose heartbeat stopped, so a
//! crashed or killed replica's jobs fail with a reason while a replica starting leaves the jobs
//! of the others alone. On SQLite (one process per file) a job left running by the previous
//! process is also failed at start-up, at once.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::Notify;
use utoipa::ToSchema;

use super::{not_found, Engine, EngineError, EngineResult, TenantId};
use crate::store::jobs::JobRecord;

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "camelCase")]
#[strum(serialize_all = "camelCase")]
pub enum JobKind {
    DataSourceRefresh,
    SegmentRefresh,
    MeasureRefresh,
    Unification,
    FullRefresh,
}

impl JobKind {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    fn parse(s: &str) -> Option<Self> {
        s.parse().ok()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

/// A background job and, once it has finished, its result.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Job {
    /// Unique identifier of the job.
    pub job_id: String,
    /// The instance the job runs in.
    pub instance_id: String,
    /// What the job does.
    pub kind: JobKind,
    /// The data source, segment or measure the job works on, if any.
    pub target_id: Option<String>,
    /// queued, running, succeeded or failed.
    pub status: JobStatus,
    /// When the job was queued.
    #[schema(extensions(("x-ms-summary" = json!("Created at"))))]
    pub created_at: DateTime<Utc>,
    /// When the job started running.
    #[schema(extensions(("x-ms-summary" = json!("Started at"))))]
    pub started_at: Option<DateTime<Utc>>,
    /// When the job finished.
    #[schema(extensions(("x-ms-summary" = json!("Completed at"))))]
    pub completed_at: Option<DateTime<Utc>>,
    /// The job's result once finished (its shape depends on the kind).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Why the job failed.
    pub error: Option<String>,
}

impl Job {
    pub fn is_finished(&self) -> bool {
        matches!(self.status, JobStatus::Succeeded | JobStatus::Failed)
    }
}

impl TryFrom<JobRecord> for Job {
    type Error = EngineError;
    fn try_from(r: JobRecord) -> EngineResult<Self> {
        Ok(Job {
            kind: JobKind::parse(&r.kind)
                .ok_or_else(|| EngineError::Internal(format!("unknown job kind {}", r.kind)))?,
            status: match r.status.as_str() {
                "queued" => JobStatus::Queued,
                "running" => JobStatus::Running,
                "succeeded" => JobStatus::Succeeded,
                _ => JobStatus::Failed,
            },
            job_id: r.id,
            instance_id: r.instance_id,
            target_id: r.target_id,
            created_at: r.created_at,
            started_at: r.started_at,
            completed_at: r.completed_at,
            result: r.result,
            error: r.error,
        })
    }
}

/// A job this process runs, heartbeated while the guard lives (dropped on a panic too).
struct RunningJob {
    engine: Engine,
    id: String,
}

impl RunningJob {
    fn new(engine: &Engine, id: &str) -> Self {
        engine.running_jobs().insert(id.to_string());
        Self {
            engine: engine.clone(),
            id: id.to_string(),
        }
    }
}

impl Drop for RunningJob {
    fn drop(&mut self) {
        self.engine.running_jobs().remove(&self.id);
    }
}

/// The record of a job about to be queued.
pub(crate) fn new_job(instance_id: &str, kind: JobKind, target_id: Option<&str>) -> JobRecord {
    JobRecord {
        id: uuid::Uuid::new_v4().to_string(),
        instance_id: instance_id.to_string(),
        kind: kind.as_str().to_string(),
        target_id: target_id.map(String::from),
        status: "queued".into(),
        created_at: super::now(),
        started_at: None,
        completed_at: None,
        result: None,
        error: None,
    }
}

/// What a finished job reports.
pub struct JobOutcome {
    pub succeeded: bool,
    pub result: Value,
    pub error: Option<String>,
}

/// How often this process renews the heartbeat of its running jobs (at most).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(10);
/// How often every replica looks for running jobs whose heartbeat stopped (at most).
const SWEEP_EVERY: Duration = Duration::from_secs(15);

impl Engine {
    /// Queues a job and wakes a worker.
    pub(crate) async fn enqueue_job(
        &self,
        instance_id: &str,
        kind: JobKind,
        target_id: Option<&str>,
    ) -> EngineResult<Job> {
        let rec = new_job(instance_id, kind, target_id);
        self.store().insert_job(&rec).await?;
        self.job_signal().notify_one();
        rec.try_into()
    }

    pub async fn job(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        job_id: &str,
    ) -> EngineResult<Job> {
        self.instance(tenant, instance_id).await?;
        self.store()
            .get_job(instance_id, job_id)
            .await
            .map_err(|e| not_found(e, "job", job_id))?
            .try_into()
    }

    /// Starts `workers` background tasks that run queued jobs until the runtime stops, the
    /// heartbeat of this process's running jobs, and the sweep that fails running jobs whose
    /// heartbeat is older than `heartbeat_timeout`.
    pub async fn start_job_workers(
        &self,
        workers: usize,
        heartbeat_timeout: Duration,
    ) -> EngineResult<()> {
        let interrupted = self.store().fail_interrupted_jobs().await?;
        if interrupted > 0 {
            tracing::warn!(
                interrupted,
                "jobs interrupted by the last stop were marked failed"
            );
        }
        self.store().sweep_stale_generations().await?;
        for worker in 0..workers {
            let engine = self.clone();
            self.spawn_background(async move { engine.job_worker(worker).await });
        }
        // Heartbeats well within the timeout, so a slow database round trip or a missed beat
        // does not make a live job look stale; the sweep runs at least twice per timeout.
        let beat = HEARTBEAT_EVERY.min(heartbeat_timeout / 3);
        let sweep = SWEEP_EVERY.min(heartbeat_timeout / 2);
        let engine = self.clone();
        self.spawn_background(async move {
            engine
                .every(beat, |engine| async move {
                    if let Err(e) = engine.heartbeat_jobs().await {
                        tracing::error!(error = %e, "job heartbeat failed");
                    }
                })
                .await
        });
        let engine = self.clone();
        self.spawn_background(async move {
            engine
                .every(sweep, move |engine| async move {
                    if let Err(e) = engine.fail_stale_jobs(heartbeat_timeout).await {
                        tracing::error!(error = %e, "the sweep of stale jobs failed");
                    }
                })
                .await
        });
        Ok(())
    }

    /// Runs `step` now and then every `period` until shutdown.
    async fn every<F, Fut>(self, period: Duration, step: F)
    where
        F: Fn(Engine) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let shutdown = self.shutdown_token();
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = interval.tick() => {}
            }
            step(self.clone()).await;
        }
    }

    /// Renews the heartbeat of the jobs this process runs.
    pub async fn heartbeat_jobs(&self) -> EngineResult<u64> {
        let running: Vec<String> = self.running_jobs().iter().cloned().collect();
        if running.is_empty() {
            return Ok(0);
        }
        Ok(self.store().heartbeat_jobs(self.owner(), &running).await?)
    }

    /// Fails the running jobs (of any replica) whose heartbeat is older than `timeout`.
    pub async fn fail_stale_jobs(&self, timeout: Duration) -> EngineResult<u64> {
        let failed = self.store().fail_stale_jobs(timeout).await?;
        if failed > 0 {
            tracing::warn!(
                failed,
                "running jobs whose replica stopped heartbeating were marked failed"
            );
            // Their instances are free again: queued jobs there may run.
            self.job_signal().notify_one();
        }
        Ok(failed)
    }

    async fn job_worker(self, worker: usize) {
        let signal: Arc<Notify> = self.job_signal();
        let shutdown = self.shutdown_token();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.store().claim_next_job(self.owner()).await {
                Ok(Some(job)) => {
                    let id = job.id.clone();
                    let _running = RunningJob::new(&self, &id);
                    tracing::info!(worker, job = %id, kind = %job.kind, "job started");
                    if let Err(e) = self.run_job(job).await {
                        tracing::error!(job = %id, error = %e, "job could not record its outcome");
                        let _ = self
                            .finish_job_alone(
                                &id,
                                false,
                                None,
                                Some(&format!("internal error: {e}")),
                            )
                            .await;
                    }
                    // Another worker may be waiting for this instance to be free.
                    signal.notify_one();
                }
                Ok(None) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = signal.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim jobs");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    async fn run_job(&self, job: JobRecord) -> EngineResult<()> {
        let kind = JobKind::parse(&job.kind)
            .ok_or_else(|| EngineError::Internal(format!("unknown job kind {}", job.kind)))?;
        let target = job.target_id.clone().unwrap_or_default();
        let started_at = job.started_at.unwrap_or_else(super::now);
        // Each stage records its own outcome (success or domain failure) on the job; only
        // infrastructure errors come back here.
        match kind {
            JobKind::DataSourceRefresh => {
                let _ = self
                    .refresh_data_source_now(&job.instance_id, &target, Some(&job.id))
                    .await?;
            }
            JobKind::SegmentRefresh => {
                let _ = self
                    .refresh_segment_now(&job.instance_id, &target, Some(&job.id))
                    .await?;
            }
            JobKind::MeasureRefresh => {
                let _ = self
                    .refresh_measure_now(&job.instance_id, &target, Some(&job.id))
                    .await?;
            }
            JobKind::Unification => {
                let _ = self
                    .run_unification_now(&job.instance_id, Some(&job.id), &job.id)
                    .await?;
            }
            JobKind::FullRefresh => {
                self.full_refresh_now(&job.instance_id, &job.id, started_at)
                    .await?;
            }
        }
        Ok(())
    }

    /// Records a job's end in its own transaction (used when no domain transaction exists).
    pub(crate) async fn finish_job_alone(
        &self,
        job_id: &str,
        succeeded: bool,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> EngineResult<()> {
        let mut tx = self.store().begin().await?;
        crate::store::Store::finish_job(&mut tx, job_id, succeeded, result, error).await?;
        self.store().commit(tx).await?;
        Ok(())
    }
}
