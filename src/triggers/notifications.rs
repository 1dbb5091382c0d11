//! The bodies POSTed to trigger callbacks. Each is one typed struct: serialized, it is the
//! notification on the wire; derived, it is the schema the connector definition shows as the
//! trigger's `x-ms-notification-content` (a test checks real bodies against them).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

use crate::openapi_fields::{array_of, free_object};

/// Notification sent when a data source refresh fails or succeeds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSourceRefreshNotification {
    /// Unique identifier of the event; the same on every retry, so duplicates can be dropped.
    pub event_id: String,
    /// Kind of event: `dataSourceRefreshFailed` or `dataSourceRefreshSucceeded`.
    pub event_type: String,
    /// When the event happened (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Identifier of the instance the data source belongs to.
    pub instance_id: String,
    /// Identifier of the refreshed data source.
    pub data_source_id: String,
    /// Name of the refreshed data source.
    pub data_source_name: String,
    /// Outcome of the refresh: `succeeded` or `failed`.
    pub status: String,
    /// Number of rows ingested by the refresh (0 when it failed).
    pub rows_ingested: u64,
    /// Why the refresh failed (only present when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the refresh started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the refresh completed (UTC).
    pub completed_at: DateTime<Utc>,
}

/// Notification sent when a segment's member count rises above a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentThresholdNotification {
    /// Unique identifier of the event; the same on every retry, so duplicates can be dropped.
    pub event_id: String,
    /// Kind of event: `segmentThresholdCrossed`.
    pub event_type: String,
    /// When the event happened (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Identifier of the instance the segment belongs to.
    pub instance_id: String,
    /// Identifier of the segment.
    pub segment_id: String,
    /// Name of the segment.
    pub segment_name: String,
    /// The threshold of the subscription that was crossed.
    pub threshold: u64,
    /// Member count before the refresh (0 if the segment had never been refreshed).
    pub previous_count: i64,
    /// Member count after the refresh.
    pub current_count: i64,
}

/// Notification sent when a measure's value rises above a threshold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasureThresholdNotification {
    /// Unique identifier of the event; the same on every retry, so duplicates can be dropped.
    pub event_id: String,
    /// Kind of event: `measureThresholdCrossed`.
    pub event_type: String,
    /// When the event happened (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Identifier of the instance the measure belongs to.
    pub instance_id: String,
    /// Identifier of the measure.
    pub measure_id: String,
    /// Name of the measure.
    pub measure_name: String,
    /// The threshold of the subscription that was crossed.
    pub threshold: f64,
    /// Value before the refresh (0 if the measure had never been computed).
    pub previous_value: f64,
    /// Value after the refresh.
    pub current_value: f64,
}

/// Notification sent when a full refresh job completes, successfully or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FullRefreshNotification {
    /// Unique identifier of the event; the same on every retry, so duplicates can be dropped.
    pub event_id: String,
    /// Kind of event: `fullRefreshCompleted`.
    pub event_type: String,
    /// When the event happened (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Identifier of the instance that was refreshed.
    pub instance_id: String,
    /// Identifier of the full refresh job.
    pub job_id: String,
    /// Final status of the job, e.g. `succeeded` or `failed`.
    pub status: String,
    /// When the job started (UTC).
    pub started_at: DateTime<Utc>,
    /// When the job completed (UTC).
    pub completed_at: DateTime<Utc>,
    /// Outcome of each stage, in the order they ran: data sources, unification, measures, segments.
    #[schema(schema_with = stages_schema)]
    pub stages: Vec<FullRefreshStage>,
}

/// Outcome of one stage of a full refresh.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FullRefreshStage {
    /// Kind of stage: `dataSource`, `unification`, `measure` or `segment`.
    pub stage: String,
    /// Name of the data source, measure or segment (`unification` for the unification stage).
    #[schema(extensions(("x-ms-summary" = json!("Stage Name"))))]
    pub name: String,
    /// Identifier of the data source, measure or segment (absent for unification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(extensions(("x-ms-summary" = json!("Stage Item ID"))))]
    pub id: Option<String>,
    /// Outcome of the stage: `succeeded` or `failed`.
    #[schema(extensions(("x-ms-summary" = json!("Stage Status"))))]
    pub status: String,
    /// Figures of a stage that succeeded, e.g. `rowsIngested`, `memberCount` or `value`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(schema_with = stage_detail_schema)]
    pub detail: Option<Value>,
    /// Why the stage failed (only present when it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(extensions(("x-ms-summary" = json!("Stage Error"))))]
    pub error: Option<String>,
}

/// Notification sent when a unification (map, match, merge) run completes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UnificationNotification {
    /// Unique identifier of the event; the same on every retry, so duplicates can be dropped.
    pub event_id: String,
    /// Kind of event: `unificationCompleted`.
    pub event_type: String,
    /// When the event happened (UTC).
    pub occurred_at: DateTime<Utc>,
    /// Identifier of the instance that was unified.
    pub instance_id: String,
    /// Identifier of the job that ran the unification (a full refresh job when it ran in one).
    pub job_id: String,
    /// Number of source records that went into unification.
    pub source_records: u64,
    /// Number of unified customer profiles produced.
    pub unified_profiles: u64,
    /// Number of source records that matched at least one other record.
    pub matched_records: u64,
    /// When the unification completed (UTC).
    pub completed_at: DateTime<Utc>,
}

fn stages_schema() -> RefOr<Schema> {
    array_of(
        FullRefreshStage::schema(),
        "Outcome of each stage, in the order they ran: data sources, unification, measures, segments.",
        "Stages",
    )
}

fn stage_detail_schema() -> RefOr<Schema> {
    free_object(
        "Figures of a stage that succeeded, e.g. `rowsIngested`, `memberCount` or `value`.",
        "Stage Detail",
    )
}

/// A notification of any trigger: what is serialized as a delivery's body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Notification {
    DataSourceRefresh(DataSourceRefreshNotification),
    SegmentThreshold(SegmentThresholdNotification),
    MeasureThreshold(MeasureThresholdNotification),
    FullRefresh(FullRefreshNotification),
    Unification(UnificationNotification),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::triggers::catalog::{notification_schema_json, notification_schemas, TRIGGERS};
    use crate::triggers::event::{DomainEvent, EventKind};
    use crate::triggers::inputs::SubscriptionInputs;
    use serde_json::json;
    use std::collections::BTreeSet;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Real bodies of every kind, with the inputs of a matching subscription.
    fn samples() -> Vec<(DomainEvent, Value)> {
        let ds = |succeeded: bool, error: Option<&str>| EventKind::DataSourceRefreshed {
            data_source_id: "ds-1".into(),
            data_source_name: "Web orders".into(),
            succeeded,
            rows_ingested: if succeeded { 1200 } else { 0 },
            error: error.map(String::from),
            started_at: t("2026-03-01T10:00:00.123456Z"),
            completed_at: t("2026-03-01T10:00:02Z"),
        };
        vec![
            (DomainEvent::new("i-1", ds(true, None)), json!({})),
            (
                DomainEvent::new("i-1", ds(false, Some("line 7: missing field 'email'"))),
                json!({"dataSourceId": "ds-1"}),
            ),
            (
                DomainEvent::new(
                    "i-1",
                    EventKind::SegmentRefreshed {
                        segment_id: "seg-1".into(),
                        segment_name: "Big spenders".into(),
                        previous_count: Some(9),
                        current_count: 12,
                    },
                ),
                json!({"segmentId": "seg-1", "threshold": 10}),
            ),
            (
                DomainEvent::new(
                    "i-1",
                    EventKind::SegmentRefreshed {
                        segment_id: "seg-1".into(),
                        segment_name: "Big spenders".into(),
                        previous_count: None,
                        current_count: 12,
                    },
                ),
                json!({"segmentId": "seg-1", "threshold": 0}),
            ),
            (
                DomainEvent::new(
                    "i-1",
                    EventKind::MeasureRefreshed {
                        measure_id: "m-1".into(),
                        measure_name: "Revenue".into(),
                        previous_value: Some(99.5),
                        current_value: Some(120.25),
                    },
                ),
                json!({"measureId": "m-1", "threshold": 100.0}),
            ),
            (
                DomainEvent::new(
                    "i-1",
                    EventKind::MeasureRefreshed {
                        measure_id: "m-1".into(),
                        measure_name: "Revenue".into(),
                        previous_value: None,
                        current_value: Some(3.0),
                    },
                ),
                json!({"measureId": "m-1", "threshold": 2.5}),
            ),
            (
                DomainEvent::new(
                    "i-1",
                    EventKind::FullRefreshCompleted {
                        job_id: "job-1".into(),
                        status: "succeeded".into(),
                        started_at: t("2026-03-01T10:00:00Z"),
                        completed_at: t("2026-03-01T10:05:00Z"),
                        stages: serde_json::from_value(json!([
                            {"stage": "dataSource", "name": "Web orders", "id": "ds-1", "status": "succeeded", "detail": {"rowsIngested": 12}},
                            {"stage": "dataSource", "name": "Shop", "id": "ds-2", "status": "failed", "error": "line 3: bad quote"},
                            {"stage": "unification", "name": "unification", "status": "succeeded",
                             "detail": {"sourceRecords": 12, "unifiedProfiles": 10, "matchedRecords": 4}},
                            {"stage": "segment", "name": "Big", "id": "seg-1", "status": "succeeded", "detail": {"memberCount": 3}}
                        ]))
                        .unwrap(),
                    },
                ),
                json!({}),
            ),
            (
                DomainEvent::new(
                    "i-1",
                    EventKind::UnificationCompleted {
                        job_id: "job-2".into(),
                        source_records: 300,
                        unified_profiles: 120,
                        matched_records: 210,
                        completed_at: t("2026-03-01T10:04:00Z"),
                    },
                ),
                json!({}),
            ),
        ]
    }

    fn schema_name_for(event: &DomainEvent) -> String {
        TRIGGERS
            .iter()
            .find(|d| d.trigger == event.trigger())
            .map(|d| d.payload_name())
            .unwrap()
    }

    /// The body sent to a subscription with these inputs.
    fn body(event: &DomainEvent, inputs: &Value) -> Value {
        let inputs: SubscriptionInputs = serde_json::from_value(inputs.clone()).unwrap();
        serde_json::to_value(event.notification(&inputs)).unwrap()
    }

    #[test]
    fn real_bodies_validate_against_their_schemas_and_nothing_is_left_undescribed() {
        let mut seen: std::collections::HashMap<String, BTreeSet<String>> = Default::default();
        for (event, inputs) in samples() {
            let body = body(&event, &inputs);
            let name = schema_name_for(&event);
            let mut schema = notification_schema_json(&name).unwrap();
            // Exactness: no property may appear that the schema does not describe.
            schema["additionalProperties"] = json!(false);
            let validator = jsonschema::validator_for(&schema).unwrap();
            let errors: Vec<String> = validator
                .iter_errors(&body)
                .map(|e| e.to_string())
                .collect();
            assert!(
                errors.is_empty(),
                "{name}: {errors:?}\nbody: {body}\nschema: {schema}"
            );
            assert_eq!(body["eventType"], event.trigger().event_type());
            seen.entry(name.clone())
                .or_default()
                .extend(body.as_object().unwrap().keys().cloned());
        }
        // And every described property occurs in some real body.
        for (name, schema) in notification_schemas() {
            let schema = serde_json::to_value(schema).unwrap();
            let described: BTreeSet<String> = schema["properties"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect();
            assert_eq!(seen[name.as_str()], described, "{name}");
        }
    }

    #[test]
    fn real_bodies_deserialize_into_the_typed_notifications() {
        for (event, inputs) in samples() {
            let body = body(&event, &inputs);
            let ok = match schema_name_for(&event).as_str() {
                "DataSourceRefreshNotification" => {
                    serde_json::from_value::<DataSourceRefreshNotification>(body.clone()).is_ok()
                }
                "SegmentThresholdNotification" => {
                    serde_json::from_value::<SegmentThresholdNotification>(body.clone()).is_ok()
                }
                "MeasureThresholdNotification" => {
                    serde_json::from_value::<MeasureThresholdNotification>(body.clone()).is_ok()
                }
                "FullRefreshNotification" => {
                    serde_json::from_value::<FullRefreshNotification>(body.clone()).is_ok()
                }
                "UnificationNotification" => {
                    serde_json::from_value::<UnificationNotification>(body.clone()).is_ok()
                }
                other => panic!("unknown schema {other}"),
            };
            assert!(ok, "{body}");
        }
    }

    /// Every property at every depth has a description (a sentence) and an `x-ms-summary`.
    pub(crate) fn assert_documented(path: &str, schema: &Value) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (prop, s) in props {
                let here = format!("{path}.{prop}");
                assert!(
                    s["description"].as_str().is_some_and(|d| d.ends_with('.')),
                    "{here}: {s}"
                );
                assert!(s["x-ms-summary"].is_string(), "{here} has no x-ms-summary");
                assert_documented(&here, s);
            }
        }
        if let Some(items) = schema.get("items") {
            assert_documented(&format!("{path}[]"), items);
        }
    }

    #[test]
    fn every_property_has_a_description_and_a_summary() {
        // As published: the spec step derives the summaries a field does not state itself.
        let doc = crate::spec::document(&crate::spec::openapi()).unwrap();
        for (name, _) in notification_schemas() {
            let schema = doc["components"]["schemas"][&name].clone();
            assert!(
                schema["description"].is_string(),
                "{name} has no description"
            );
            assert_documented(&name, &schema);
        }
    }
}
