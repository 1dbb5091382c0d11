//! Asynchronous jobs (Power Automate's 202 + Location polling pattern), run by a bounded pool
//! of background workers. Jobs are rows, so they survive restarts: a job left running by a crash
//! is marked failed at start-up; queued jobs simply run.

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

/// What a finished job reports.
pub struct JobOutcome {
    pub succeeded: bool,
    pub result: Value,
    pub error: Option<String>,
}

impl Engine {
    /// Queues a job and wakes a worker.
    pub(crate) async fn enqueue_job(
        &self,
        instance_id: &str,
        kind: JobKind,
        target_id: Option<&str>,
    ) -> EngineResult<Job> {
        let rec = JobRecord {
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
        };
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

    /// Starts `workers` background tasks that run queued jobs until the runtime stops.
    pub async fn start_job_workers(&self, workers: usize) -> EngineResult<()> {
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
        Ok(())
    }

    async fn job_worker(self, worker: usize) {
        let signal: Arc<Notify> = self.job_signal();
        let shutdown = self.shutdown_token();
        loop {
            if shutdown.is_cancelled() {
                return;
            }
            match self.store().claim_next_job().await {
                Ok(Some(job)) => {
                    let id = job.id.clone();
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
