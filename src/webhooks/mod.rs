//! Trigger subscriptions and the delivery of notifications: the subscribe rules, the
//! dispatcher that sends what the store's outbox queued, the retry policy, Standard Webhooks
//! signing, the SSRF guard on callback URLs, and the pruning of finished outbox rows.
//!
//! Uses the engine (tenant-scoped lookups), the store (subscriptions and outbox) and the trigger
//! catalog; the api layer uses it. Events and their deliveries are written by
//! [`crate::store::Store::record_event`] in the engine's transactions; [`dispatcher`] sends them.

pub mod dispatcher;
pub mod retention;
pub mod retry;
pub mod signing;
pub mod ssrf;
pub mod subscriptions;
