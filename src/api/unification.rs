//! HTTP layer: the unification configuration (field mapping, match rules, merge policy) and
//! unification runs. May use engine, never store.

use actix_web::{get, post, put, web, HttpResponse};

use super::jobs::accepted;
use super::params::InstancePath;
use super::problem::{ApiError, Problem};
use super::state::AppState;
use crate::engine::jobs::Job;
use crate::engine::unification::{UnificationConfig, UnificationPreview};
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_unification_config)
        .service(set_unification_config)
        .service(run_unification)
        .service(preview_unification);
}

/// Get the unification configuration
///
/// Gets how an instance unifies its sources: field mapping, match rules and merge policy.
#[utoipa::path(
    operation_id = "GetUnificationConfig", tag = "Unification",
    params(InstancePath),
    responses(
        (status = 200, description = "The configuration (empty, with no sources and rules, until one is set).", body = UnificationConfig),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/unification")]
async fn get_unification_config(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<web::Json<UnificationConfig>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .unification_config(&tenant, &path.instance_id)
            .await?,
    ))
}

/// Set the unification configuration
///
/// Replaces how an instance unifies its sources: field mapping, match rules and merge policy.
#[utoipa::path(
    operation_id = "SetUnificationConfig", tag = "Unification",
    params(InstancePath),
    request_body(content = UnificationConfig, description = "The configuration."),
    responses(
        (status = 200, description = "The stored configuration.", body = UnificationConfig),
        (status = 400, description = "The configuration is not valid.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[put("/instances/{instanceId}/unification")]
async fn set_unification_config(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<UnificationConfig>,
) -> Result<web::Json<UnificationConfig>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .set_unification_config(&tenant, &path.instance_id, body.into_inner())
            .await?,
    ))
}

/// Run unification
///
/// Starts a job that maps, matches and merges the sources into unified Customer profiles.
#[utoipa::path(
    operation_id = "RunUnification", tag = "Unification",
    params(InstancePath),
    responses(
        (status = 202, description = "The unification job was queued.", body = Job,
            headers(("Location" = String, description = "URL of the job to poll."), ("Retry-After" = i32, description = "Seconds to wait before polling."))),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The instance has no unification configuration yet.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/unification/run")]
async fn run_unification(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .engine
        .run_unification(&tenant, &path.instance_id)
        .await?;
    Ok(accepted(&state, &job))
}

/// Preview unification
///
/// Runs a configuration's rules over the current source items without writing profiles: per rule the pairs compared and matched and the records linked, and pairs just above and below each scored rule's threshold.
#[utoipa::path(
    operation_id = "PreviewUnification",
    tag = "Unification",
    params(InstancePath),
    request_body(content = UnificationConfig, description = "The configuration to try (it is not stored)."),
    responses(
        (status = 200, description = "What a run with this configuration would do.", body = UnificationPreview),
        (status = 400, description = "The configuration is not valid.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A source entity does not exist yet.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/unification/preview")]
async fn preview_unification(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<UnificationConfig>,
) -> Result<web::Json<UnificationPreview>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .preview_unification(&tenant, &path.instance_id, body.into_inner())
            .await?,
    ))
}
