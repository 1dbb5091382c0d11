//! The full refresh of an instance, as one job: every data source, then unification (when
//! configured), then every measure, then every segment. A failing stage does not stop the
//! others; the job and its `OnFullRefreshCompleted` notification say which stages failed.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::jobs::{Job, JobKind};
use super::{Engine, EngineResult, TenantId};
use crate::store::Store;
use crate::triggers::notifications::FullRefreshStage;
use crate::triggers::{DomainEvent, EventKind};

impl Engine {
    pub async fn start_full_refresh(
        &self,
        tenant: &TenantId,
        instance_id: &str,
    ) -> EngineResult<Job> {
        self.instance(tenant, instance_id).await?;
        self.enqueue_job(instance_id, JobKind::FullRefresh, None)
            .await
    }

    /// All data sources → unification (if configured) → measures → segments. A failing stage
    /// does not stop the others (they use the last good data); the job fails if any stage did.
    pub(crate) async fn full_refresh_now(
        &self,
        instance_id: &str,
        job_id: &str,
        started_at: DateTime<Utc>,
    ) -> EngineResult<()> {
        let mut stages: Vec<FullRefreshStage> = Vec::new();
        let mut all_ok = true;
        let mut stage =
            |kind: &str, id: Option<&str>, name: &str, outcome: Result<Value, String>| {
                let (status, detail, error) = match outcome {
                    Ok(detail) => ("succeeded", Some(detail), None),
                    Err(e) => {
                        all_ok = false;
                        ("failed", None, Some(e))
                    }
                };
                stages.push(FullRefreshStage {
                    stage: kind.into(),
                    name: name.into(),
                    id: id.map(String::from),
                    status: status.into(),
                    detail,
                    error,
                });
            };

        for source in self.store().list_data_sources(instance_id).await? {
            let outcome = self
                .refresh_data_source_now(instance_id, &source.id, None)
                .await?;
            stage(
                "dataSource",
                Some(&source.id),
                &source.name,
                outcome.map(|rows| json!({"rowsIngested": rows})),
            );
        }
        if self
            .store()
            .get_unification_config(instance_id)
            .await?
            .is_some()
        {
            let outcome = self.run_unification_now(instance_id, None, job_id).await?;
            stage(
                "unification",
                None,
                "unification",
                outcome.map(|s| {
                    json!({"sourceRecords": s.source_records, "unifiedProfiles": s.unified_profiles, "matchedRecords": s.matched_records})
                }),
            );
        }
        for measure in self.store().list_measures(instance_id).await? {
            let outcome = self
                .refresh_measure_now(instance_id, &measure.id, None)
                .await?;
            stage(
                "measure",
                Some(&measure.id),
                &measure.name,
                outcome.map(|v| json!({"value": v})),
            );
        }
        for segment in self.store().list_segments(instance_id).await? {
            let outcome = self
                .refresh_segment_now(instance_id, &segment.id, None)
                .await?;
            stage(
                "segment",
                Some(&segment.id),
                &segment.name,
                outcome.map(|c| json!({"memberCount": c})),
            );
        }

        let status = if all_ok { "succeeded" } else { "failed" };
        let failed: Vec<String> = stages
            .iter()
            .filter(|s| s.status == "failed")
            .map(|s| format!("{} '{}'", s.stage, s.name))
            .collect();
        let result = json!({"status": status, "stages": stages});
        let error = (!all_ok).then(|| format!("failed stages: {}", failed.join(", ")));
        let event = DomainEvent::new(
            instance_id,
            EventKind::FullRefreshCompleted {
                job_id: job_id.to_string(),
                status: status.into(),
                started_at,
                completed_at: super::now(),
                stages,
            },
        );
        let mut tx = self.store().begin().await?;
        Store::record_event(&mut tx, &event).await?;
        Store::finish_job(&mut tx, job_id, all_ok, Some(&result), error.as_deref()).await?;
        self.store().commit(tx).await?;
        self.events_committed();
        Ok(())
    }
}
