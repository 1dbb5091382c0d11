//! Trigger subscriptions, the transactional outbox and its dispatcher.

pub mod retry;
pub mod signing;
pub mod ssrf;

/// The six webhook triggers: `(trigger, subscribe path, notification component schema name)`.
/// `spec::dialect` derives `x-ms-trigger` and the path-level `x-ms-notification-content` from it.
pub const TRIGGERS: &[(crate::store::events::Trigger, &str, &str)] = &[];
