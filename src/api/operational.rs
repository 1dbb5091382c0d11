//! HTTP layer: operational endpoints (health, readiness, metrics, the OpenAPI document, Swagger UI
//! and the connector package). They need no key and are not part of the documented API. May use
//! `api::state` and `api::problem`.

use actix_web::{http::header, web, HttpResponse};
use serde_json::json;

use super::problem::{ApiError, PROBLEM_JSON};
use super::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/openapi.json", web::get().to(openapi))
        .route("/docs", web::get().to(docs_redirect))
        .route("/connector/{file}", web::get().to(connector_file));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.engine.store().ping().await {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(e) => HttpResponse::ServiceUnavailable()
            .content_type(PROBLEM_JSON)
            .json(json!({
                "type": "urn:insights-connector:problem:not-ready",
                "title": "Service Unavailable",
                "status": 503,
                "detail": format!("database not reachable: {e}"),
            })),
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn openapi(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(state.documents.openapi_json.clone())
}

async fn docs_redirect() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/docs/"))
        .finish()
}

async fn connector_file(
    state: web::Data<AppState>,
    file: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (content_type, bytes) = state
        .documents
        .connector
        .get(file.as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no connector file named {file}")))?;
    Ok(HttpResponse::Ok()
        .content_type(*content_type)
        .body(bytes.clone()))
}
