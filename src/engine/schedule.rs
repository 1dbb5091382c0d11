//! Scheduled full refreshes: an instance's `refreshSchedule` (cron, UTC) queues a full refresh
//! at each occurrence. Occurrences missed while the service was down are not caught up. Every
//! replica runs the scheduler; the store records each occurrence it queues, so an occurrence
//! queues one refresh however many replicas see it.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};

use super::jobs::{new_job, JobKind};
use super::Engine;

impl Engine {
    /// Starts the scheduler task; it checks every `tick`.
    pub fn start_scheduler(&self, tick: Duration) {
        let engine = self.clone();
        self.spawn_background(async move {
            let mut last_check = Utc::now();
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let shutdown = engine.shutdown_token();
            let mut last_prune: Option<DateTime<Utc>> = None;
            loop {
                tokio::select! {
                    _ = interval.tick() => {}
                    _ = shutdown.cancelled() => return,
                }
                let now = Utc::now();
                if let Err(e) = engine.run_due_schedules(last_check, now).await {
                    tracing::error!(error = %e, "scheduled refreshes could not be checked");
                }
                last_check = now;
                if last_prune.is_none_or(|at| now - at >= PRUNE_EVERY) {
                    engine.prune_schedule_occurrences(now).await;
                    last_prune = Some(now);
                }
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
            let Some(occurrence) = first_occurrence_in(&cron, after, until) else {
                continue;
            };
            let job = new_job(&instance.id, JobKind::FullRefresh, None);
            if self.store().queue_scheduled_job(occurrence, &job).await? {
                tracing::info!(instance = %instance.id, %occurrence, "scheduled full refresh");
                self.job_signal().notify_one();
            }
        }
        Ok(())
    }
}

impl Engine {
    /// Forgets the recorded occurrences older than [`KEEP_OCCURRENCES`].
    async fn prune_schedule_occurrences(&self, now: DateTime<Utc>) {
        match self
            .store()
            .prune_schedule_occurrences(now - KEEP_OCCURRENCES)
            .await
        {
            Ok(0) => {}
            Ok(pruned) => tracing::debug!(pruned, "old schedule occurrences pruned"),
            Err(e) => tracing::warn!(error = %e, "schedule occurrences could not be pruned"),
        }
    }
}

/// Recorded occurrences are only compared with the last second or so; a day is ample.
const KEEP_OCCURRENCES: chrono::Duration = chrono::Duration::days(1);
/// How often the scheduler prunes them (also at its first tick).
const PRUNE_EVERY: chrono::Duration = chrono::Duration::hours(1);

/// The first occurrence of `cron` in `(after, until]`.
///
/// Occurrences fall on whole seconds. The search starts from `after` rounded down to its second:
/// croner looks from one second past the time it is given and keeps its fraction, so searching
/// from an unrounded tick skipped the occurrence just after it.
fn first_occurrence_in(
    cron: &croner::Cron,
    after: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Option<DateTime<Utc>> {
    let whole_second = after.with_nanosecond(0)?;
    cron.find_next_occurrence(&whole_second, false)
        .ok()
        .filter(|next| *next > after && *next <= until)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    /// Ticks about one second apart (a few milliseconds early or late, as a timer runs), at
    /// every phase within the second, see each occurrence once.
    #[test]
    fn one_second_ticks_catch_every_occurrence_once() {
        let cron = croner::Cron::from_str("*/10 * * * * *").unwrap();
        let jitter_ms = [0, -2, 3, -1, 1, -3, 2];
        for phase_ms in [0, 1, 250, 500, 996] {
            let start = Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, 0).unwrap()
                + chrono::Duration::milliseconds(phase_ms);
            let ticks: Vec<_> = (0..=40)
                .map(|s| {
                    let jitter = if s == 0 || s == 40 {
                        0
                    } else {
                        jitter_ms[s % 7]
                    };
                    start
                        + chrono::Duration::seconds(s as i64)
                        + chrono::Duration::milliseconds(jitter)
                })
                .collect();
            let found: Vec<_> = ticks
                .windows(2)
                .filter_map(|w| first_occurrence_in(&cron, w[0], w[1]))
                .collect();
            // (10:00:00.phase, 10:00:40.phase] holds :10, :20, :30 and :40 (and :00 when the
            // phase is 0, which the window excludes).
            let expected: Vec<_> = [10, 20, 30, 40]
                .iter()
                .map(|s| Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, *s).unwrap())
                .collect();
            assert_eq!(found, expected, "phase {phase_ms} ms");
        }
    }

    #[test]
    fn an_occurrence_on_the_window_edges_belongs_to_the_window_it_ends() {
        let cron = croner::Cron::from_str("*/10 * * * * *").unwrap();
        let at = |s: u32, ms: i64| {
            Utc.with_ymd_and_hms(2026, 12, 2, 10, 0, s).unwrap()
                + chrono::Duration::milliseconds(ms)
        };
        assert_eq!(
            first_occurrence_in(&cron, at(9, 0), at(10, 0)),
            Some(at(10, 0))
        );
        assert_eq!(first_occurrence_in(&cron, at(10, 0), at(11, 0)), None);
        assert_eq!(
            first_occurrence_in(&cron, at(9, 999), at(10, 0)),
            Some(at(10, 0))
        );
        assert_eq!(first_occurrence_in(&cron, at(9, 0), at(9, 999)), None);
    }
}
