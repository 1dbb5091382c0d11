//! The trigger vocabulary, stated once: the catalog of triggers ([`catalog`]), the domain events
//! that fire them and who receives each ([`event`]), the subscribe inputs ([`inputs`]) and the
//! typed notification bodies, which serialize to the wire and derive their schema ([`notifications`]).
//!
//! A leaf of the crate: it uses only [`crate::openapi_fields`]. The engine raises events, the
//! store's outbox queues their deliveries, the webhooks module sends them, the api and spec
//! modules build the subscribe operations from the catalog.
//!
//! Adding a trigger: a variant and an entry in [`catalog`], its inputs and payload types, its
//! event kind with its audience and notification in [`event`], the engine code that raises it,
//! its subscribe handler, and tests.

pub mod catalog;
pub mod event;
pub mod inputs;
pub mod notifications;

pub use catalog::{
    notification_schema_json, notification_schemas, Trigger, TriggerDefinition, TRIGGERS,
};
pub use event::{Audience, DomainEvent, EventKind, ThresholdTarget};
pub use inputs::SubscriptionInputs;
