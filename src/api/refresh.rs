//! HTTP layer: the full refresh of an instance (every data source, then unification, measures
//! and segments). May use engine, never store.

use actix_web::{post, web, HttpResponse};

use super::jobs::accepted;
use super::params::InstancePath;
use super::problem::{ApiError, Problem};
use super::state::AppState;
use crate::engine::jobs::Job;
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(start_full_refresh);
}

/// Start a full refresh
///
/// Starts a job that refreshes all data sources, then unification, measures and segments.
#[utoipa::path(
    operation_id = "StartFullRefresh", tag = "Unification",
    params(InstancePath),
    responses(
        (status = 202, description = "The full refresh job was queued.", body = Job,
            headers(("Location" = String, description = "URL of the job to poll."), ("Retry-After" = i32, description = "Seconds to wait before polling."))),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/refresh")]
async fn start_full_refresh(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .engine
        .start_full_refresh(&tenant, &path.instance_id)
        .await?;
    Ok(accepted(&state, &job))
}
