//! Domain events and the transactional outbox: an event row and one delivery row per matching
//! trigger subscription are written in the caller's transaction, so committing the state change
//! commits its notifications (DESIGN §7).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sqlx::{Sqlite, Transaction};

use super::{ts, StoreResult};

/// The six triggers (their operationIds are the stored trigger names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Trigger {
    OnDataSourceRefreshFailed,
    OnDataSourceRefreshSucceeded,
    OnSegmentThresholdCrossed,
    OnMeasureThresholdCrossed,
    OnFullRefreshCompleted,
    OnUnificationCompleted,
}

impl Trigger {
    pub const ALL: [Trigger; 6] = [
        Trigger::OnDataSourceRefreshFailed,
        Trigger::OnDataSourceRefreshSucceeded,
        Trigger::OnSegmentThresholdCrossed,
        Trigger::OnMeasureThresholdCrossed,
        Trigger::OnFullRefreshCompleted,
        Trigger::OnUnificationCompleted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Trigger::OnDataSourceRefreshFailed => "OnDataSourceRefreshFailed",
            Trigger::OnDataSourceRefreshSucceeded => "OnDataSourceRefreshSucceeded",
            Trigger::OnSegmentThresholdCrossed => "OnSegmentThresholdCrossed",
            Trigger::OnMeasureThresholdCrossed => "OnMeasureThresholdCrossed",
            Trigger::OnFullRefreshCompleted => "OnFullRefreshCompleted",
            Trigger::OnUnificationCompleted => "OnUnificationCompleted",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// The `eventType` of the notifications this trigger receives.
    pub fn event_type(self) -> &'static str {
        match self {
            Trigger::OnDataSourceRefreshFailed => "dataSourceRefreshFailed",
            Trigger::OnDataSourceRefreshSucceeded => "dataSourceRefreshSucceeded",
            Trigger::OnSegmentThresholdCrossed => "segmentThresholdCrossed",
            Trigger::OnMeasureThresholdCrossed => "measureThresholdCrossed",
            Trigger::OnFullRefreshCompleted => "fullRefreshCompleted",
            Trigger::OnUnificationCompleted => "unificationCompleted",
        }
    }
}

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
        stages: Value,
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

    pub fn event_type_name(&self) -> &'static str {
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

    /// The notification body for a subscription with the given inputs (DESIGN §4).
    pub fn notification(&self, subscription_inputs: &Value) -> Value {
        let mut body = json!({
            "eventId": self.id,
            "eventType": self.trigger().event_type(),
            "occurredAt": self.occurred_at,
            "instanceId": self.instance_id,
        });
        let fields = match &self.kind {
            EventKind::DataSourceRefreshed {
                data_source_id,
                data_source_name,
                succeeded,
                rows_ingested,
                error,
                started_at,
                completed_at,
            } => {
                let mut f = json!({
                    "dataSourceId": data_source_id,
                    "dataSourceName": data_source_name,
                    "status": if *succeeded { "succeeded" } else { "failed" },
                    "rowsIngested": rows_ingested,
                    "startedAt": started_at,
                    "completedAt": completed_at,
                });
                if let Some(e) = error {
                    f["error"] = json!(e);
                }
                f
            }
            EventKind::SegmentRefreshed {
                segment_id,
                segment_name,
                previous_count,
                current_count,
            } => json!({
                "segmentId": segment_id,
                "segmentName": segment_name,
                "threshold": subscription_inputs.get("threshold").cloned().unwrap_or(Value::Null),
                "previousCount": previous_count.unwrap_or(0),
                "currentCount": current_count,
            }),
            EventKind::MeasureRefreshed {
                measure_id,
                measure_name,
                previous_value,
                current_value,
            } => json!({
                "measureId": measure_id,
                "measureName": measure_name,
                "threshold": subscription_inputs.get("threshold").cloned().unwrap_or(Value::Null),
                "previousValue": previous_value.unwrap_or(0.0),
                "currentValue": current_value,
            }),
            EventKind::FullRefreshCompleted {
                job_id,
                status,
                started_at,
                completed_at,
                stages,
            } => json!({
                "jobId": job_id,
                "status": status,
                "startedAt": started_at,
                "completedAt": completed_at,
                "stages": stages,
            }),
            EventKind::UnificationCompleted {
                job_id,
                source_records,
                unified_profiles,
                matched_records,
                completed_at,
            } => json!({
                "jobId": job_id,
                "sourceRecords": source_records,
                "unifiedProfiles": unified_profiles,
                "matchedRecords": matched_records,
                "completedAt": completed_at,
            }),
        };
        if let (Some(b), Value::Object(f)) = (body.as_object_mut(), fields) {
            b.extend(f);
        }
        body
    }
}

/// Milliseconds since the epoch: the outbox schedules by integer time.
pub fn epoch_ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// Records the event and queues one delivery per matching active subscription, inside `tx`.
/// Returns the number of deliveries queued.
///
/// Matching (issue contract): trigger and instance match; data-source triggers honour an optional
/// `dataSourceId`; threshold triggers fire only when the value crosses the threshold from at or
/// below to above (`previous <= threshold < current`; a never-refreshed value counts as 0).
pub async fn record_event(
    tx: &mut Transaction<'_, Sqlite>,
    event: &DomainEvent,
) -> StoreResult<u64> {
    let now = Utc::now();
    sqlx::query(
        "INSERT INTO events (id, instance_id, event_type, payload, occurred_at) VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&event.id)
    .bind(&event.instance_id)
    .bind(event.event_type_name())
    .bind(serde_json::to_string(&event.kind).expect("event serializes"))
    .bind(ts(event.occurred_at))
    .execute(&mut **tx)
    .await?;

    const INSERT: &str = "INSERT INTO deliveries
            (id, event_id, subscription_id, instance_id, status, attempts, next_attempt_at, created_at, updated_at)
        SELECT lower(hex(randomblob(16))), ?, s.id, s.instance_id, 'pending', 0, ?, ?, ?
        FROM subscriptions s
        WHERE s.instance_id = ? AND s.trigger = ? AND s.status = 'active'";
    let trigger = event.trigger().as_str();
    let base = |sql: String| {
        sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(event.id.clone())
            .bind(epoch_ms(now))
            .bind(ts(now))
            .bind(ts(now))
            .bind(event.instance_id.clone())
            .bind(trigger)
    };
    let done = match &event.kind {
        EventKind::DataSourceRefreshed { data_source_id, .. } => {
            base(format!(
                "{INSERT} AND (json_extract(s.inputs, '$.dataSourceId') IS NULL
                              OR json_extract(s.inputs, '$.dataSourceId') = ?)"
            ))
            .bind(data_source_id.clone())
            .execute(&mut **tx)
            .await?
        }
        EventKind::SegmentRefreshed {
            segment_id,
            previous_count,
            current_count,
            ..
        } => {
            base(format!(
                "{INSERT} AND json_extract(s.inputs, '$.segmentId') = ?
                          AND ? <= json_extract(s.inputs, '$.threshold')
                          AND json_extract(s.inputs, '$.threshold') < ?"
            ))
            .bind(segment_id.clone())
            .bind(previous_count.unwrap_or(0))
            .bind(*current_count)
            .execute(&mut **tx)
            .await?
        }
        EventKind::MeasureRefreshed {
            measure_id,
            previous_value,
            current_value,
            ..
        } => {
            let Some(current) = current_value else {
                return Ok(0);
            };
            base(format!(
                "{INSERT} AND json_extract(s.inputs, '$.measureId') = ?
                          AND ? <= json_extract(s.inputs, '$.threshold')
                          AND json_extract(s.inputs, '$.threshold') < ?"
            ))
            .bind(measure_id.clone())
            .bind(previous_value.unwrap_or(0.0))
            .bind(*current)
            .execute(&mut **tx)
            .await?
        }
        EventKind::FullRefreshCompleted { .. } | EventKind::UnificationCompleted { .. } => {
            base(INSERT.to_string()).execute(&mut **tx).await?
        }
    };
    Ok(done.rows_affected())
}
