//! HTTP layer: handlers with their OpenAPI annotations (one file per resource), middleware,
//! shared state and error mapping. May use engine, webhooks and telemetry, never store (two
//! exceptions remain, named in the headers of [`auth`] and [`triggers`]).
//!
//! Registering a handler in [`configure`] registers it in the OpenAPI document too
//! (utoipa-actix-web), so the served routes and the spec cannot drift apart. Annotations state
//! per-operation facts only (summary, description, visibility, paging, trigger hint, responses);
//! what is the same for every operation comes from the spec step's tables (`spec::dialect`).

pub mod auth;
pub mod datasources;
pub mod entities;
pub mod instances;
pub mod jobs;
pub mod measures;
pub mod middleware;
pub mod operational;
pub mod params;
pub mod problem;
pub mod query_options;
pub mod refresh;
pub mod routes;
pub mod segments;
pub mod state;
pub mod triggers;
pub mod unification;
pub mod urls;

use actix_web::web;

pub use middleware::fallback;
pub use routes::RouteTable;
pub use state::AppState;

/// Every documented action and trigger. The one place to add an operation.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    instances::configure(cfg);
    entities::configure(cfg);
    datasources::configure(cfg);
    segments::configure(cfg);
    measures::configure(cfg);
    unification::configure(cfg);
    refresh::configure(cfg);
    jobs::configure(cfg);
    triggers::configure(cfg);
}

/// Extractor configuration: every extractor failure is a problem+json.
pub fn extractor_config(cfg: &mut web::ServiceConfig, max_body_bytes: usize) {
    cfg.app_data(
        web::JsonConfig::default()
            .limit(max_body_bytes)
            .error_handler(|e, _| problem::json_error(e).into()),
    )
    .app_data(web::PayloadConfig::default().limit(max_body_bytes))
    .app_data(middleware::MaxBody(max_body_bytes))
    .app_data(web::QueryConfig::default().error_handler(|e, _| problem::query_error(e).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| problem::path_error(e).into()));
}
