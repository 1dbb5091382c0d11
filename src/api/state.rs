//! HTTP layer: the state every handler shares (the engine, keys, metrics, routes and the
//! generated documents). May use engine, telemetry and the leaf modules of `api`.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::auth::{KeyRing, Throttle};
use super::routes::RouteTable;
use crate::engine::Engine;
use crate::telemetry::Metrics;
use crate::webhooks::ssrf::CallbackPolicy;

/// Shared state of every handler.
pub struct AppState {
    pub engine: Engine,
    /// Absolute base URL without a trailing slash.
    pub public_url: String,
    pub keys: KeyRing,
    pub throttle: Option<Arc<Throttle>>,
    pub metrics: Metrics,
    pub routes: RouteTable,
    pub documents: Documents,
    /// Which webhook callback URLs may be subscribed (and called).
    pub callback_policy: CallbackPolicy,
}

impl AppState {
    /// Absolute URL of a path of this service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }
}

/// Generated documents served as they are.
#[derive(Debug, Clone, Default)]
pub struct Documents {
    pub openapi_json: String,
    /// File name → (content type, bytes) of the connector package.
    pub connector: BTreeMap<String, (&'static str, Vec<u8>)>,
}
