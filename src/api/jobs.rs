//! HTTP layer: background jobs and the 202 answer that starts polling them. May use engine, never
//! store.
use actix_web::{get, http::header, web, HttpResponse};

use super::params::JobPath;
use super::problem::{ApiError, Problem};
use super::state::AppState;
use super::urls;
use crate::engine::jobs::Job;
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_job);
}

/// Seconds a client should wait before polling a running job again.
pub const RETRY_AFTER_SECS: u32 = 1;

/// 202 Accepted with the job, `Location` of `GetJob` and `Retry-After` (Power Automate's
/// asynchronous pattern polls the location until it answers 200).
pub fn accepted(state: &AppState, job: &Job) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            state.url(&urls::job(&job.instance_id, &job.job_id)),
        ))
        .insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS.to_string()))
        .json(job)
}

/// Get a job
///
/// Gets the status of a background job: 202 while it is queued or running, 200 with its result once it has finished.
#[utoipa::path(
    operation_id = "GetJob",
    tag = "Jobs",
    params(JobPath),
    responses(
        (status = 200, description = "The job has finished (succeeded or failed).", body = Job),
        (status = 202, description = "The job is queued or running; poll the Location again after Retry-After seconds.", body = Job,
            headers(("Location" = String, description = "URL of this job."), ("Retry-After" = i32, description = "Seconds to wait before polling again."))),
        (status = 404, description = "No such instance or job.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("internal")))
)]
#[get("/instances/{instanceId}/jobs/{jobId}")]
async fn get_job(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<JobPath>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .engine
        .job(&tenant, &path.instance_id, &path.job_id)
        .await?;
    Ok(if job.is_finished() {
        HttpResponse::Ok().json(job)
    } else {
        accepted(&state, &job)
    })
}
