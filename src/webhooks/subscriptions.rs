//! Trigger subscriptions: the subscription and delivery resources, and the rules applied when
//! subscribing (tenant-scoped ids, callback URL policy, signing secret, idempotent
//! re-subscribe). The subscribe request bodies are the trigger catalog's.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::openapi::schema::Schema;
use utoipa::openapi::{Ref, RefOr};
use utoipa::{PartialSchema, ToSchema};

use super::signing::SigningSecret;
use super::ssrf::CallbackPolicy;
use crate::engine::{not_found, Engine, EngineError, EngineResult, TenantId};
use crate::openapi_fields::{annotated, array_of, string_enum};
use crate::store::outbox::{AttemptRecord, DeliveryRecord, Requeue};
use crate::store::subscriptions::SubscriptionRecord;
use crate::triggers::inputs::{
    DataSourceTriggerInput, MeasureTriggerInput, PlainTriggerInput, SegmentTriggerInput,
};
use crate::triggers::{SubscriptionInputs, Trigger};

/// Longest accepted callback URL.
pub const MAX_URL_LEN: usize = 2048;
/// Attempts shown with each delivery.
pub const RECENT_ATTEMPTS: i64 = 5;

// ----- subscribe inputs (one request body per trigger shape) -----

/// A subscribe request reduced to what every trigger has in common.
#[derive(Debug, Clone)]
pub struct SubscribeRequest {
    pub notification_url: String,
    pub secret: Option<String>,
    pub inputs: SubscriptionInputs,
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_string()).filter(|s| !s.is_empty())
}

impl From<DataSourceTriggerInput> for SubscribeRequest {
    fn from(i: DataSourceTriggerInput) -> Self {
        Self {
            notification_url: i.notification_url,
            secret: non_empty(i.secret),
            inputs: SubscriptionInputs {
                data_source_id: non_empty(i.data_source_id),
                ..Default::default()
            },
        }
    }
}

impl From<SegmentTriggerInput> for SubscribeRequest {
    fn from(i: SegmentTriggerInput) -> Self {
        Self {
            notification_url: i.notification_url,
            secret: non_empty(i.secret),
            inputs: SubscriptionInputs {
                segment_id: Some(i.segment_id.trim().to_string()),
                threshold: Some(serde_json::Number::from(i.threshold)),
                ..Default::default()
            },
        }
    }
}

impl TryFrom<MeasureTriggerInput> for SubscribeRequest {
    type Error = EngineError;
    fn try_from(i: MeasureTriggerInput) -> EngineResult<Self> {
        let threshold = serde_json::Number::from_f64(i.threshold)
            .ok_or_else(|| EngineError::Invalid("threshold must be a finite number".into()))?;
        Ok(Self {
            notification_url: i.notification_url,
            secret: non_empty(i.secret),
            inputs: SubscriptionInputs {
                measure_id: Some(i.measure_id.trim().to_string()),
                threshold: Some(threshold),
                ..Default::default()
            },
        })
    }
}

impl From<PlainTriggerInput> for SubscribeRequest {
    fn from(i: PlainTriggerInput) -> Self {
        Self {
            notification_url: i.notification_url,
            secret: non_empty(i.secret),
            inputs: SubscriptionInputs::default(),
        }
    }
}

// ----- resources -----

fn subscription_status() -> RefOr<Schema> {
    string_enum(
        &["active", "dead"],
        "`active`, or `dead` once the callback answered 404 or 410 (the flow is gone).",
        "Status",
    )
}

fn subscription_inputs() -> RefOr<Schema> {
    annotated(
        SubscriptionInputs::schema(),
        "The trigger inputs.",
        "Inputs",
    )
}

fn subscription_list() -> RefOr<Schema> {
    array_of(
        RefOr::Ref(Ref::from_schema_name("TriggerSubscription")),
        "The subscriptions.",
        "Subscriptions",
    )
}

fn delivery_status() -> RefOr<Schema> {
    string_enum(
        &["pending", "delivered", "failed", "dead"],
        "`pending`, `delivered`, `failed` (refused for good) or `dead` (dead-lettered).",
        "Status",
    )
}

fn recent_attempts() -> RefOr<Schema> {
    array_of(
        DeliveryAttempt::schema(),
        "The most recent attempts, newest first.",
        "Recent Attempts",
    )
}

fn delivery_list() -> RefOr<Schema> {
    array_of(
        RefOr::Ref(Ref::from_schema_name("Delivery")),
        "The deliveries, newest first.",
        "Deliveries",
    )
}

/// Whether a subscription still receives notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    /// Notifications are delivered.
    Active,
    /// The callback answered 404 or 410 (the flow is gone): nothing more is delivered.
    Dead,
}

/// A trigger subscription with its delivery state.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TriggerSubscription {
    /// Unique identifier of the subscription.
    pub subscription_id: String,
    /// The trigger (its operation ID), e.g. `OnSegmentThresholdCrossed`.
    pub trigger: String,
    /// Identifier of the instance the subscription watches.
    pub instance_id: String,
    /// The trigger inputs.
    #[schema(schema_with = subscription_inputs)]
    pub inputs: SubscriptionInputs,
    /// `active`, or `dead` once the callback answered 404 or 410 (the flow is gone).
    #[schema(schema_with = subscription_status)]
    pub status: SubscriptionStatus,
    /// Whether notifications are signed (a secret was given).
    pub signed: bool,
    /// When the subscription was created.
    pub created_at: DateTime<Utc>,
    /// When a notification was last sent to the callback, whatever the outcome.
    pub last_delivery_at: Option<DateTime<Utc>>,
    /// Failed attempts since the last successful delivery.
    pub consecutive_failures: i64,
    /// The error of the last failed attempt, cleared by a successful delivery.
    pub last_error: Option<String>,
}

impl TriggerSubscription {
    pub fn from_record(r: SubscriptionRecord) -> EngineResult<Self> {
        let inputs = serde_json::from_value(r.inputs)
            .map_err(|e| EngineError::Internal(format!("stored subscription inputs: {e}")))?;
        Ok(Self {
            subscription_id: r.id,
            trigger: r.trigger,
            instance_id: r.instance_id,
            inputs,
            status: if r.status == "active" {
                SubscriptionStatus::Active
            } else {
                SubscriptionStatus::Dead
            },
            signed: r.secret.is_some(),
            created_at: r.created_at,
            last_delivery_at: r.last_delivery_at,
            consecutive_failures: r.consecutive_failures,
            last_error: r.last_error,
        })
    }
}

/// A list of trigger subscriptions.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TriggerSubscriptionList {
    /// The subscriptions.
    #[schema(schema_with = subscription_list)]
    pub value: Vec<TriggerSubscription>,
}

/// State of a delivery.
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
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum DeliveryStatus {
    /// Queued, waiting for its next attempt or being attempted.
    Pending,
    /// The callback accepted it (2xx).
    Delivered,
    /// Failed for good: the callback refused it (4xx) or the destination is not allowed.
    Failed,
    /// Dead-lettered: retries exhausted, or not sent because the subscription died.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// A stored status; anything unknown reads as pending (it will be attempted).
    fn parse(s: &str) -> Self {
        s.parse().unwrap_or(DeliveryStatus::Pending)
    }
}

/// One attempt to deliver a notification.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeliveryAttempt {
    /// When the attempt was made.
    pub attempted_at: DateTime<Utc>,
    /// HTTP status the callback answered (absent when no answer came).
    pub status_code: Option<i64>,
    /// Milliseconds from sending to the end of the answer (or the failure).
    #[schema(extensions(("x-ms-summary" = json!("Latency (ms)"))))]
    pub latency_ms: i64,
    /// The beginning of the callback's answer, truncated.
    pub response_excerpt: Option<String>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl From<AttemptRecord> for DeliveryAttempt {
    fn from(a: AttemptRecord) -> Self {
        Self {
            attempted_at: a.attempted_at,
            status_code: a.status_code,
            latency_ms: a.latency_ms,
            response_excerpt: a.response_excerpt,
            error: a.error,
        }
    }
}

/// The delivery of one event to one subscription.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Delivery {
    /// Unique identifier of the delivery.
    pub delivery_id: String,
    /// Identifier of the subscription.
    pub subscription_id: String,
    /// Identifier of the event (the notification's `eventId` and `webhook-id`).
    pub event_id: String,
    /// `pending`, `delivered`, `failed` (refused for good) or `dead` (dead-lettered).
    #[schema(schema_with = delivery_status)]
    pub status: DeliveryStatus,
    /// Attempts made since the delivery was last queued.
    pub attempts: i64,
    /// When the next attempt is due (pending deliveries only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When the delivery was queued.
    pub created_at: DateTime<Utc>,
    /// When the delivery last changed.
    pub updated_at: DateTime<Utc>,
    /// The error of the last failed attempt.
    pub last_error: Option<String>,
    /// The most recent attempts, newest first.
    #[schema(schema_with = recent_attempts)]
    pub recent_attempts: Vec<DeliveryAttempt>,
}

/// A list of deliveries.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct DeliveryList {
    /// The deliveries, newest first.
    #[schema(schema_with = delivery_list)]
    pub value: Vec<Delivery>,
}

// ----- operations -----

/// Subscribes (or returns the identical existing subscription).
pub async fn subscribe(
    engine: &Engine,
    policy: &CallbackPolicy,
    tenant: &TenantId,
    instance_id: &str,
    trigger: Trigger,
    req: SubscribeRequest,
) -> EngineResult<TriggerSubscription> {
    engine.instance(tenant, instance_id).await?;
    let store = engine.store();

    let url = req.notification_url.trim();
    if url.is_empty() {
        return Err(EngineError::Invalid(
            "notificationUrl must not be empty".into(),
        ));
    }
    if url.len() > MAX_URL_LEN {
        return Err(EngineError::Invalid(format!(
            "notificationUrl must be at most {MAX_URL_LEN} characters"
        )));
    }
    let parsed = policy
        .check_url(url)
        .map_err(|r| EngineError::Invalid(format!("notificationUrl is not allowed: {r}")))?;
    policy
        .check_resolved(&parsed)
        .await
        .map_err(|r| EngineError::Invalid(format!("notificationUrl is not allowed: {r}")))?;

    let secret = match req.secret {
        Some(s) => {
            SigningSecret::parse(&s).map_err(|e| EngineError::Invalid(format!("secret: {e}")))?;
            Some(s.trim().to_string())
        }
        None => None,
    };

    let inputs = req.inputs;
    let tenant_s = tenant.as_str();
    let check = |found: bool, what: &str, id: &str| {
        if found {
            Ok(())
        } else {
            Err(EngineError::NotFound(format!(
                "{what} '{id}' was not found in instance '{instance_id}'"
            )))
        }
    };
    match trigger {
        Trigger::OnDataSourceRefreshFailed | Trigger::OnDataSourceRefreshSucceeded => {
            if let Some(id) = &inputs.data_source_id {
                check(
                    store.data_source_exists(tenant_s, instance_id, id).await?,
                    "data source",
                    id,
                )?;
            }
        }
        Trigger::OnSegmentThresholdCrossed => {
            let id = inputs.segment_id.as_deref().unwrap_or_default();
            if id.is_empty() {
                return Err(EngineError::Invalid("segmentId must not be empty".into()));
            }
            check(
                store.segment_exists(tenant_s, instance_id, id).await?,
                "segment",
                id,
            )?;
        }
        Trigger::OnMeasureThresholdCrossed => {
            let id = inputs.measure_id.as_deref().unwrap_or_default();
            if id.is_empty() {
                return Err(EngineError::Invalid("measureId must not be empty".into()));
            }
            check(
                store.measure_exists(tenant_s, instance_id, id).await?,
                "measure",
                id,
            )?;
        }
        Trigger::OnFullRefreshCompleted | Trigger::OnUnificationCompleted => {}
    }

    let record = SubscriptionRecord {
        id: uuid::Uuid::new_v4().to_string(),
        instance_id: instance_id.to_string(),
        trigger: trigger.as_str().to_string(),
        // Stored as given (trimmed): the platform's callback URL is opaque and signed.
        notification_url: url.to_string(),
        inputs_key: inputs.key(),
        inputs: serde_json::to_value(&inputs).expect("inputs serialize"),
        secret,
        status: "active".into(),
        created_at: crate::engine::now(),
        last_delivery_at: None,
        consecutive_failures: 0,
        last_error: None,
    };
    TriggerSubscription::from_record(store.upsert_subscription(&record).await?)
}

pub async fn list(
    engine: &Engine,
    tenant: &TenantId,
    instance_id: &str,
) -> EngineResult<Vec<TriggerSubscription>> {
    engine.instance(tenant, instance_id).await?;
    engine
        .store()
        .list_subscriptions(tenant.as_str(), instance_id)
        .await?
        .into_iter()
        .map(TriggerSubscription::from_record)
        .collect()
}

pub async fn get(
    engine: &Engine,
    tenant: &TenantId,
    instance_id: &str,
    subscription_id: &str,
) -> EngineResult<TriggerSubscription> {
    let rec = engine
        .store()
        .get_subscription(tenant.as_str(), instance_id, subscription_id)
        .await
        .map_err(|e| not_found(e, "subscription", subscription_id))?;
    TriggerSubscription::from_record(rec)
}

/// Idempotent: deleting what is not there (any more) is not an error.
pub async fn delete(
    engine: &Engine,
    tenant: &TenantId,
    instance_id: &str,
    subscription_id: &str,
) -> EngineResult<()> {
    engine
        .store()
        .delete_subscription(tenant.as_str(), instance_id, subscription_id)
        .await?;
    Ok(())
}

async fn delivery_view(engine: &Engine, d: DeliveryRecord) -> EngineResult<Delivery> {
    let status = DeliveryStatus::parse(&d.status);
    let recent_attempts = engine
        .store()
        .recent_attempts(&d.id, RECENT_ATTEMPTS)
        .await?
        .into_iter()
        .map(DeliveryAttempt::from)
        .collect();
    Ok(Delivery {
        delivery_id: d.id,
        subscription_id: d.subscription_id,
        event_id: d.event_id,
        status,
        attempts: d.attempts,
        next_attempt_at: (status == DeliveryStatus::Pending)
            .then(|| DateTime::<Utc>::from_timestamp_millis(d.next_attempt_at))
            .flatten(),
        created_at: d.created_at,
        updated_at: d.updated_at,
        last_error: d.last_error,
        recent_attempts,
    })
}

pub async fn list_deliveries(
    engine: &Engine,
    tenant: &TenantId,
    instance_id: &str,
    subscription_id: &str,
    status: Option<DeliveryStatus>,
    top: i64,
) -> EngineResult<Vec<Delivery>> {
    get(engine, tenant, instance_id, subscription_id).await?;
    let records = engine
        .store()
        .list_deliveries(subscription_id, status.map(DeliveryStatus::as_str), top)
        .await?;
    let mut out = Vec::with_capacity(records.len());
    for d in records {
        out.push(delivery_view(engine, d).await?);
    }
    Ok(out)
}

/// Queues a delivery again. A pending one is returned as it is; the delivery of a dead
/// subscription cannot be queued (subscribe again first).
pub async fn redeliver(
    engine: &Engine,
    tenant: &TenantId,
    instance_id: &str,
    subscription_id: &str,
    delivery_id: &str,
) -> EngineResult<Delivery> {
    get(engine, tenant, instance_id, subscription_id).await?;
    let store = engine.store();
    match store
        .requeue_delivery(subscription_id, delivery_id)
        .await
        .map_err(|e| not_found(e, "delivery", delivery_id))?
    {
        Requeue::Queued => engine.events_committed(),
        Requeue::AlreadyPending => {}
        Requeue::SubscriptionDead => {
            return Err(EngineError::Conflict(format!(
                "subscription '{subscription_id}' is dead (its callback answered that the flow is gone); subscribe again to receive notifications"
            )))
        }
    }
    let d = store
        .get_delivery(subscription_id, delivery_id)
        .await
        .map_err(|e| not_found(e, "delivery", delivery_id))?;
    delivery_view(engine, d).await
}

/// The `Value` of the inputs as stored (for tests and the outbox contract).
pub fn stored_inputs(inputs: &SubscriptionInputs) -> Value {
    serde_json::to_value(inputs).expect("inputs serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_keys_are_canonical() {
        let a = SubscriptionInputs {
            measure_id: Some("m".into()),
            threshold: serde_json::Number::from_f64(100.0),
            ..Default::default()
        };
        let b: SubscriptionInputs =
            serde_json::from_str(r#"{"threshold":100.0,"measureId":"m"}"#).unwrap();
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key(), r#"{"measureId":"m","threshold":100.0}"#);
        let seg: SubscribeRequest = SegmentTriggerInput {
            notification_url: "https://x".into(),
            segment_id: " s ".into(),
            threshold: 10,
            secret: Some("  ".into()),
        }
        .into();
        assert_eq!(seg.inputs.key(), r#"{"segmentId":"s","threshold":10}"#);
        assert_eq!(seg.secret, None);
        let plain: SubscribeRequest = DataSourceTriggerInput {
            notification_url: "https://x".into(),
            data_source_id: Some(String::new()),
            secret: None,
        }
        .into();
        assert_eq!(plain.inputs.key(), "{}");
    }

    #[test]
    fn stored_inputs_use_the_keys_the_outbox_matches_on() {
        let v = stored_inputs(&SubscriptionInputs {
            data_source_id: Some("d".into()),
            segment_id: Some("s".into()),
            measure_id: Some("m".into()),
            threshold: Some(1.into()),
        });
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["dataSourceId", "measureId", "segmentId", "threshold"]
        );
    }
}
