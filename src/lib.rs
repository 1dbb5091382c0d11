//! insights-connector: the backend of a Power Automate custom connector modelled on Dynamics 365
//! Customer Insights (audience insights).
//!
//! Layers depend in one direction: [`api`] → [`engine`] → [`store`]; [`webhooks`] and [`spec`]
//! stand beside them.

pub mod api;
pub mod configuration;
pub mod engine;
pub mod item_query;
pub mod openapi_fields;
pub mod spec;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod triggers;
pub mod webhooks;
