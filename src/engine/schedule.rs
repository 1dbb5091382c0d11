//! Scheduled full refreshes: an instance's `refreshSchedule` (cron, UTC) queues a full refresh
//! at each occurrence. Occurrences missed while the service was down are not caught up.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::jobs::JobKind;
use super::Engine;

impl Engine {
    /// Starts the scheduler task; it checks every `tick`.
    pub fn start_scheduler(&self, tick: Duration) {
        let engine = self.clone();
        tokio::spawn(async move {
            let mut last_check = Utc::now();
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut shutdown = engine.shutdown_signal();
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = shutdown.changed() => return,
                }
                let now = Utc::now();
                if let Err(e) = engine.run_due_schedules(last_check, now).await {
                    tracing::error!(error = %e, "scheduled refreshes could not be checked");
                }
                last_check = now;
            }
        });
    }

    /// Queues a full refresh for every instance whose schedule has an occurrence in
    /// `(after, until]`.
    async fn run_due_schedules(
        &self,
        after: DateTime<Utc>,
        until: DateTime<Utc>,
    ) -> super::EngineResult<()> {
        for instance in self.store().all_scheduled_instances().await? {
            let Some(expr) = instance.refresh_schedule.as_deref() else {
                continue;
            };
            let Ok(cron) = croner::Cron::from_str(expr) else {
                continue;
            };
            let due = cron
                .find_next_occurrence(&after, false)
                .map(|next| next <= until)
                .unwrap_or(false);
            if due {
                tracing::info!(instance = %instance.id, "scheduled full refresh");
                self.enqueue_job(&instance.id, JobKind::FullRefresh, None)
                    .await?;
            }
        }
        Ok(())
    }
}
