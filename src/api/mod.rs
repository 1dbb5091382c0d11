//! HTTP layer: handlers with their OpenAPI annotations, authentication and error mapping.
//! Registering a handler in [`configure`] registers it in the OpenAPI document too
//! (utoipa-actix-web), so the served routes and the spec cannot drift apart.

pub mod analytics;
pub mod auth;
pub mod datasources;
pub mod entities;
pub mod instances;
pub mod jobs;
pub mod operational;
pub mod problem;
pub mod triggers;

use std::sync::Arc;

use actix_web::{web, HttpRequest};

use crate::engine::Engine;
use crate::telemetry::Metrics;
use problem::ApiError;

/// Shared state of every handler.
pub struct AppState {
    pub engine: Engine,
    /// Absolute base URL without a trailing slash.
    pub public_url: String,
    pub keys: auth::KeyRing,
    pub throttle: Option<Arc<auth::Throttle>>,
    pub metrics: Metrics,
    pub routes: RouteTable,
    pub documents: operational::Documents,
    /// Which webhook callback URLs may be subscribed (and called).
    pub callback_policy: crate::webhooks::ssrf::CallbackPolicy,
}

impl AppState {
    /// Absolute URL of a path of this service.
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.public_url, path)
    }
}

/// Every documented action and trigger. The one place to add an operation.
pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    instances::configure(cfg);
    entities::configure(cfg);
    datasources::configure(cfg);
    analytics::configure(cfg);
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
    .app_data(web::QueryConfig::default().error_handler(|e, _| problem::query_error(e).into()))
    .app_data(web::PathConfig::default().error_handler(|e, _| problem::path_error(e).into()));
}

/// Path templates and their methods, to tell 405 (known path, other method) from 404.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// (segments, methods, template)
    routes: Vec<(Vec<String>, Vec<String>, String)>,
}

impl RouteTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut table = Self::default();
        let value = serde_json::to_value(doc).unwrap_or_default();
        if let Some(paths) = value.get("paths").and_then(|p| p.as_object()) {
            for (template, item) in paths {
                let methods = item
                    .as_object()
                    .map(|o| {
                        o.keys()
                            .filter(|k| {
                                matches!(
                                    k.as_str(),
                                    "get"
                                        | "post"
                                        | "put"
                                        | "patch"
                                        | "delete"
                                        | "head"
                                        | "options"
                                )
                            })
                            .map(|k| k.to_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                table.add(template, methods);
            }
        }
        for p in [
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/connector/{file}",
        ] {
            table.add(p, vec!["GET".into()]);
        }
        table
    }

    /// The template a concrete path belongs to (the most literal one when several fit), e.g. for
    /// metric labels. Plain segment comparison: cheaper than asking the router to match again.
    pub fn template(&self, path: &str) -> Option<&str> {
        if path.starts_with("/docs/") {
            return Some("/docs/");
        }
        let parts: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(segments, _, _)| Self::fits(segments, &parts))
            .max_by_key(|(segments, _, _)| segments.iter().filter(|s| !Self::is_param(s)).count())
            .map(|(_, _, template)| template.as_str())
    }

    fn is_param(segment: &str) -> bool {
        segment.starts_with('{') && segment.ends_with('}')
    }

    fn fits(segments: &[String], parts: &[&str]) -> bool {
        segments.len() == parts.len()
            && segments
                .iter()
                .zip(parts)
                .all(|(s, p)| (Self::is_param(s) && !p.is_empty()) || s == p)
    }

    fn add(&mut self, template: &str, methods: Vec<String>) {
        let segments = template.split('/').map(String::from).collect();
        self.routes.push((segments, methods, template.to_string()));
    }

    /// The methods served at this concrete path, if the path is known at all.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut found: Option<Vec<String>> = None;
        for (segments, methods, _) in &self.routes {
            if Self::fits(segments, &parts) {
                let all = found.get_or_insert_with(Vec::new);
                for m in methods {
                    if !all.contains(m) {
                        all.push(m.clone());
                    }
                }
            }
        }
        found
    }
}

/// Fallback: 405 with `Allow` for a known path, otherwise 404 — both problem+json.
pub async fn fallback(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<actix_web::HttpResponse, ApiError> {
    Err(match state.routes.allowed(req.path()) {
        Some(mut methods) => {
            methods.sort();
            ApiError::MethodNotAllowed {
                method: req.method().to_string(),
                allow: methods.join(", "),
            }
        }
        None => ApiError::NotFound(format!("no resource at {}", req.path())),
    })
}

/// Middleware: a panicking handler answers 500 problem+json instead of dropping the connection
/// (and never takes the worker down).
pub async fn catch_panic(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<impl actix_web::body::MessageBody + 'static>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    use futures_util::FutureExt;
    // Cloning the request here would break routing (it needs the only reference), so a panic is
    // turned into an error, which actix renders through `ApiError::error_response`.
    match std::panic::AssertUnwindSafe(next.call(req))
        .catch_unwind()
        .await
    {
        Ok(res) => Ok(res?.map_into_boxed_body()),
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(ApiError::Internal(format!("handler panicked: {message}")).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use actix_web::middleware::from_fn;
    use actix_web::{test, web, App, HttpResponse};

    #[actix_web::test]
    async fn a_panicking_handler_answers_500_problem_and_the_service_keeps_serving() {
        let app = test::init_service(
            App::new()
                .wrap(from_fn(super::catch_panic))
                .route(
                    "/boom",
                    web::get().to(|| async {
                        if true {
                            panic!("boom");
                        }
                        HttpResponse::Ok().finish()
                    }),
                )
                .route(
                    "/fine",
                    web::get().to(|| async { HttpResponse::Ok().finish() }),
                ),
        )
        .await;
        // The HTTP dispatcher renders a middleware error through `error_response`; do the same.
        let err = test::try_call_service(&app, test::TestRequest::get().uri("/boom").to_request())
            .await
            .expect_err("the panic becomes an error");
        let res = err.error_response();
        assert_eq!(res.status(), 500);
        assert_eq!(
            res.headers().get("content-type").unwrap(),
            super::problem::PROBLEM_JSON
        );
        let bytes = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(body["status"], 500);
        assert!(
            !body["detail"].as_str().unwrap().contains("boom"),
            "no internals leak"
        );
        let res =
            test::call_service(&app, test::TestRequest::get().uri("/fine").to_request()).await;
        assert_eq!(res.status(), 200);
    }
}

#[cfg(test)]
mod route_tests {
    #[test]
    fn metric_routes_are_the_documented_templates() {
        let table = super::RouteTable::from_openapi(&crate::spec::openapi());
        let cases = [
            ("/instances", Some("/instances")),
            ("/instances/abc", Some("/instances/{instanceId}")),
            (
                "/instances/abc/entities/People/items",
                Some("/instances/{instanceId}/entities/{entityName}/items"),
            ),
            (
                "/instances/abc/entities/People/items/42",
                Some("/instances/{instanceId}/entities/{entityName}/items/{itemId}"),
            ),
            (
                "/instances/abc/unification/run",
                Some("/instances/{instanceId}/unification/run"),
            ),
            ("/metrics", Some("/metrics")),
            ("/docs/index.html", Some("/docs/")),
            ("/connector/icon.png", Some("/connector/{file}")),
            ("/instances//entities", None),
            ("/no/such/route", None),
        ];
        for (path, expected) in cases {
            assert_eq!(table.template(path), expected, "{path}");
        }
    }
}
