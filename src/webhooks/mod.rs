//! Trigger subscriptions, the transactional outbox's dispatcher, and the delivery policy:
//! retry schedule, Standard Webhooks signing and the SSRF guard.
//!
//! Events and their outbox rows are written by [`crate::store::events::record_event`] in the
//! engine's transactions; [`dispatcher`] delivers them.

pub mod dispatcher;
pub mod notifications;
pub mod retention;
pub mod retry;
mod schema;
pub mod signing;
pub mod ssrf;
pub mod subscriptions;

pub use notifications::{notification_schema_json, notification_schemas};

use crate::store::events::Trigger;

/// Every trigger: its subscribe path and the name of its notification schema (a component
/// from [`notification_schemas`], for the path-level `x-ms-notification-content`).
pub const TRIGGERS: &[(Trigger, &str, &str)] = &[
    (
        Trigger::OnDataSourceRefreshFailed,
        "/instances/{instanceId}/triggers/datasource-refresh-failed",
        "DataSourceRefreshNotification",
    ),
    (
        Trigger::OnDataSourceRefreshSucceeded,
        "/instances/{instanceId}/triggers/datasource-refresh-succeeded",
        "DataSourceRefreshNotification",
    ),
    (
        Trigger::OnSegmentThresholdCrossed,
        "/instances/{instanceId}/triggers/segment-threshold",
        "SegmentThresholdNotification",
    ),
    (
        Trigger::OnMeasureThresholdCrossed,
        "/instances/{instanceId}/triggers/measure-threshold",
        "MeasureThresholdNotification",
    ),
    (
        Trigger::OnFullRefreshCompleted,
        "/instances/{instanceId}/triggers/full-refresh-completed",
        "FullRefreshNotification",
    ),
    (
        Trigger::OnUnificationCompleted,
        "/instances/{instanceId}/triggers/unification-completed",
        "UnificationNotification",
    ),
];
