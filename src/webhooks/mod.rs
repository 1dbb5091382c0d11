//! Trigger subscriptions, the transactional outbox and its dispatcher.

pub mod retry;
pub mod signing;
pub mod ssrf;
