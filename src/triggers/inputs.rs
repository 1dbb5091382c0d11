//! The subscribe request bodies of the triggers, and the inputs a subscription keeps (what
//! the outbox matches events against).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Subscription to a data source refresh trigger.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DataSourceTriggerInput {
    /// Callback URL that receives the notifications (filled in by Power Automate).
    #[schema(extensions(("x-ms-notification-url" = json!(true))))]
    pub notification_url: String,
    /// Only refreshes of this data source trigger the flow; leave empty for every data source of the instance.
    #[serde(default)]
    pub data_source_id: Option<String>,
    /// Standard Webhooks signing secret (`whsec_` followed by base64 of 24 to 64 random bytes); when set, every notification is signed.
    #[serde(default)]
    #[schema(extensions(("x-ms-summary" = json!("Signing Secret")), ("x-ms-visibility" = json!("advanced"))))]
    pub secret: Option<String>,
}

/// Subscription to the segment threshold trigger.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentTriggerInput {
    /// Callback URL that receives the notifications (filled in by Power Automate).
    #[schema(extensions(("x-ms-notification-url" = json!(true))))]
    pub notification_url: String,
    /// The segment to watch.
    pub segment_id: String,
    /// The flow runs when a refresh moves the member count from at most this number to above it.
    #[schema(minimum = 0)]
    pub threshold: u64,
    /// Standard Webhooks signing secret (`whsec_` followed by base64 of 24 to 64 random bytes); when set, every notification is signed.
    #[serde(default)]
    #[schema(extensions(("x-ms-summary" = json!("Signing Secret")), ("x-ms-visibility" = json!("advanced"))))]
    pub secret: Option<String>,
}

/// Subscription to the measure threshold trigger.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeasureTriggerInput {
    /// Callback URL that receives the notifications (filled in by Power Automate).
    #[schema(extensions(("x-ms-notification-url" = json!(true))))]
    pub notification_url: String,
    /// The measure to watch.
    pub measure_id: String,
    /// The flow runs when a refresh moves the measure's value from at most this number to above it.
    pub threshold: f64,
    /// Standard Webhooks signing secret (`whsec_` followed by base64 of 24 to 64 random bytes); when set, every notification is signed.
    #[serde(default)]
    #[schema(extensions(("x-ms-summary" = json!("Signing Secret")), ("x-ms-visibility" = json!("advanced"))))]
    pub secret: Option<String>,
}

/// Subscription to a trigger without inputs (full refresh, unification).
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlainTriggerInput {
    /// Callback URL that receives the notifications (filled in by Power Automate).
    #[schema(extensions(("x-ms-notification-url" = json!(true))))]
    pub notification_url: String,
    /// Standard Webhooks signing secret (`whsec_` followed by base64 of 24 to 64 random bytes); when set, every notification is signed.
    #[serde(default)]
    #[schema(extensions(("x-ms-summary" = json!("Signing Secret")), ("x-ms-visibility" = json!("advanced"))))]
    pub secret: Option<String>,
}

/// The trigger inputs of a subscription; which ones are present depends on the trigger.
// Stored as JSON with exactly these keys: the outbox matches events against them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionInputs {
    /// Data source filter of a data source trigger (absent = every data source).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_source_id: Option<String>,
    /// Segment of a segment threshold trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_id: Option<String>,
    /// Measure of a measure threshold trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measure_id: Option<String>,
    /// Threshold of a segment (integer) or measure (number) threshold trigger.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<f64>)]
    pub threshold: Option<serde_json::Number>,
}

impl SubscriptionInputs {
    /// Canonical text of the inputs: equal inputs give equal keys (idempotent subscribe).
    pub fn key(&self) -> String {
        serde_json::to_string(self).expect("inputs serialize")
    }
}
