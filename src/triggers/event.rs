//! Domain events: what happened, with every field its notifications need; which trigger's
//! subscriptions may receive it and which of them do (the [`Audience`]); and the typed
//! notification each receiving subscription gets.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::catalog::Trigger;
use super::inputs::SubscriptionInputs;
use super::notifications::{
    DataSourceRefreshNotification, FullRefreshNotification, FullRefreshStage,
    MeasureThresholdNotification, Notification, SegmentThresholdNotification,
    UnificationNotification,
};

/// What happened, with every field the notifications need.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum EventKind {
    #[serde(rename_all = "camelCase")]
    DataSourceRefreshed {
        data_source_id: String,
        data_source_name: String,
        succeeded: bool,
        rows_ingested: u64,
        error: Option<String>,
        started_at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
    },
    #[serde(rename_all = "camelCase")]
    SegmentRefreshed {
        segment_id: String,
        segment_name: String,
        previous_count: Option<i64>,
        current_count: i64,
    },
    #[serde(rename_all = "camelCase")]
    MeasureRefreshed {
        measure_id: String,
        measure_name: String,
        previous_value: Option<f64>,
        current_value: Option<f64>,
    },
    #[serde(rename_all = "camelCase")]
    FullRefreshCompleted {
        job_id: String,
        status: String,
        started_at: DateTime<Utc>,
        completed_at: DateTime<Utc>,
        stages: Vec<FullRefreshStage>,
    },
    #[serde(rename_all = "camelCase")]
    UnificationCompleted {
        job_id: String,
        source_records: u64,
        unified_profiles: u64,
        matched_records: u64,
        completed_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainEvent {
    pub id: String,
    pub instance_id: String,
    pub occurred_at: DateTime<Utc>,
    pub kind: EventKind,
}

/// Which of the trigger's active subscriptions in the event's instance receive an event.
#[derive(Debug, Clone, PartialEq)]
pub enum Audience {
    /// Every one.
    All,
    /// Those without a data source filter, and those filtering on this data source.
    DataSource { data_source_id: String },
    /// Those watching this segment or measure (`target_id`) whose threshold the value crossed
    /// upwards: `previous <= threshold < current`, a never-computed previous value counting as 0.
    /// Crossing downwards, or staying on one side, notifies nobody.
    ThresholdCrossed {
        target: ThresholdTarget,
        target_id: String,
        previous: f64,
        current: f64,
    },
    /// Nobody (a measure without a value crosses no threshold).
    Nobody,
}

/// The input that names what a threshold subscription watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdTarget {
    Segment,
    Measure,
}

impl ThresholdTarget {
    /// The key of [`SubscriptionInputs`] that holds the watched id.
    pub fn input_key(self) -> &'static str {
        match self {
            ThresholdTarget::Segment => "segmentId",
            ThresholdTarget::Measure => "measureId",
        }
    }
}

impl Audience {
    /// Whether a subscription with these inputs is in the audience (the rule the outbox's
    /// query implements; the store's tests hold the two to each other).
    pub fn includes(&self, inputs: &SubscriptionInputs) -> bool {
        match self {
            Audience::All => true,
            Audience::DataSource { data_source_id } => inputs
                .data_source_id
                .as_ref()
                .is_none_or(|id| id == data_source_id),
            Audience::ThresholdCrossed {
                target,
                target_id,
                previous,
                current,
            } => {
                let watched = match target {
                    ThresholdTarget::Segment => &inputs.segment_id,
                    ThresholdTarget::Measure => &inputs.measure_id,
                };
                let threshold = inputs.threshold.as_ref().and_then(|t| t.as_f64());
                watched.as_ref() == Some(target_id)
                    && threshold.is_some_and(|t| *previous <= t && t < *current)
            }
            Audience::Nobody => false,
        }
    }
}

impl DomainEvent {
    pub fn new(instance_id: &str, kind: EventKind) -> Self {
        use chrono::SubsecRound;
        Self {
            id: uuid::Uuid::new_v4().to_string(),
            instance_id: instance_id.to_string(),
            occurred_at: Utc::now().trunc_subsecs(6),
            kind,
        }
    }

    /// The trigger whose subscriptions may receive this event.
    pub fn trigger(&self) -> Trigger {
        match &self.kind {
            EventKind::DataSourceRefreshed {
                succeeded: true, ..
            } => Trigger::OnDataSourceRefreshSucceeded,
            EventKind::DataSourceRefreshed { .. } => Trigger::OnDataSourceRefreshFailed,
            EventKind::SegmentRefreshed { .. } => Trigger::OnSegmentThresholdCrossed,
            EventKind::MeasureRefreshed { .. } => Trigger::OnMeasureThresholdCrossed,
            EventKind::FullRefreshCompleted { .. } => Trigger::OnFullRefreshCompleted,
            EventKind::UnificationCompleted { .. } => Trigger::OnUnificationCompleted,
        }
    }

    /// The name the event is stored under (what happened, not who is told: a segment refresh
    /// is recorded whether or not it crossed a threshold).
    pub fn stored_name(&self) -> &'static str {
        match &self.kind {
            EventKind::DataSourceRefreshed {
                succeeded: true, ..
            } => "dataSourceRefreshSucceeded",
            EventKind::DataSourceRefreshed { .. } => "dataSourceRefreshFailed",
            EventKind::SegmentRefreshed { .. } => "segmentRefreshed",
            EventKind::MeasureRefreshed { .. } => "measureRefreshed",
            EventKind::FullRefreshCompleted { .. } => "fullRefreshCompleted",
            EventKind::UnificationCompleted { .. } => "unificationCompleted",
        }
    }

    /// Which subscriptions of [`Self::trigger`] receive the event.
    pub fn audience(&self) -> Audience {
        match &self.kind {
            EventKind::DataSourceRefreshed { data_source_id, .. } => Audience::DataSource {
                data_source_id: data_source_id.clone(),
            },
            EventKind::SegmentRefreshed {
                segment_id,
                previous_count,
                current_count,
                ..
            } => Audience::ThresholdCrossed {
                target: ThresholdTarget::Segment,
                target_id: segment_id.clone(),
                previous: previous_count.unwrap_or(0) as f64,
                current: *current_count as f64,
            },
            EventKind::MeasureRefreshed {
                measure_id,
                previous_value,
                current_value,
                ..
            } => match current_value {
                Some(current) => Audience::ThresholdCrossed {
                    target: ThresholdTarget::Measure,
                    target_id: measure_id.clone(),
                    previous: previous_value.unwrap_or(0.0),
                    current: *current,
                },
                None => Audience::Nobody,
            },
            EventKind::FullRefreshCompleted { .. } | EventKind::UnificationCompleted { .. } => {
                Audience::All
            }
        }
    }

    /// The notification for a subscription with the given inputs.
    pub fn notification(&self, inputs: &SubscriptionInputs) -> Notification {
        let event_id = self.id.clone();
        let event_type = self.trigger().event_type().to_string();
        let occurred_at = self.occurred_at;
        let instance_id = self.instance_id.clone();
        let threshold = inputs.threshold.as_ref();
        match &self.kind {
            EventKind::DataSourceRefreshed {
                data_source_id,
                data_source_name,
                succeeded,
                rows_ingested,
                error,
                started_at,
                completed_at,
            } => Notification::DataSourceRefresh(DataSourceRefreshNotification {
                event_id,
                event_type,
                occurred_at,
                instance_id,
                data_source_id: data_source_id.clone(),
                data_source_name: data_source_name.clone(),
                status: if *succeeded { "succeeded" } else { "failed" }.into(),
                rows_ingested: *rows_ingested,
                error: error.clone(),
                started_at: *started_at,
                completed_at: *completed_at,
            }),
            EventKind::SegmentRefreshed {
                segment_id,
                segment_name,
                previous_count,
                current_count,
            } => Notification::SegmentThreshold(SegmentThresholdNotification {
                event_id,
                event_type,
                occurred_at,
                instance_id,
                segment_id: segment_id.clone(),
                segment_name: segment_name.clone(),
                threshold: threshold.and_then(|t| t.as_u64()).unwrap_or(0),
                previous_count: previous_count.unwrap_or(0),
                current_count: *current_count,
            }),
            EventKind::MeasureRefreshed {
                measure_id,
                measure_name,
                previous_value,
                current_value,
            } => Notification::MeasureThreshold(MeasureThresholdNotification {
                event_id,
                event_type,
                occurred_at,
                instance_id,
                measure_id: measure_id.clone(),
                measure_name: measure_name.clone(),
                threshold: threshold.and_then(|t| t.as_f64()).unwrap_or(0.0),
                previous_value: previous_value.unwrap_or(0.0),
                // A measure without a value has no audience (see `audience`), so this default
                // is never sent.
                current_value: current_value.unwrap_or(0.0),
            }),
            EventKind::FullRefreshCompleted {
                job_id,
                status,
                started_at,
                completed_at,
                stages,
            } => Notification::FullRefresh(FullRefreshNotification {
                event_id,
                event_type,
                occurred_at,
                instance_id,
                job_id: job_id.clone(),
                status: status.clone(),
                started_at: *started_at,
                completed_at: *completed_at,
                stages: stages.clone(),
            }),
            EventKind::UnificationCompleted {
                job_id,
                source_records,
                unified_profiles,
                matched_records,
                completed_at,
            } => Notification::Unification(UnificationNotification {
                event_id,
                event_type,
                occurred_at,
                instance_id,
                job_id: job_id.clone(),
                source_records: *source_records,
                unified_profiles: *unified_profiles,
                matched_records: *matched_records,
                completed_at: *completed_at,
            }),
        }
    }
}
