//! HTTP layer: business measures (list, create, get, refresh). May use engine, never store.

use actix_web::{get, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::jobs::accepted;
use super::params::{InstancePath, MeasurePath};
use super::problem::{ApiError, Problem};
use super::state::AppState;
use super::urls;
use crate::engine::jobs::Job;
use crate::engine::measures::{Measure, NewMeasure};
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_measures)
        .service(create_measure)
        .service(get_measure)
        .service(refresh_measure);
}

/// The measures of an instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeasureList {
    /// The measures.
    pub value: Vec<Measure>,
}

/// List measures
///
/// Lists the business measures of an instance with their last values.
#[utoipa::path(
    operation_id = "ListMeasures", tag = "Measures",
    params(InstancePath),
    responses(
        (status = 200, description = "The measures.", body = MeasureList),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/measures")]
async fn list_measures(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<web::Json<MeasureList>, ApiError> {
    Ok(web::Json(MeasureList {
        value: state
            .engine
            .list_measures(&tenant, &path.instance_id)
            .await?,
    }))
}

/// Create a measure
///
/// Creates a business measure: an aggregate of a field of an entity, optionally filtered.
#[utoipa::path(
    operation_id = "CreateMeasure", tag = "Measures",
    params(InstancePath),
    request_body(content = NewMeasure, description = "The measure to create."),
    responses(
        (status = 201, description = "The measure was created.", body = Measure,
            headers(("Location" = String, description = "Absolute URL of the new measure."))),
        (status = 400, description = "The input is not valid.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/measures")]
async fn create_measure(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<NewMeasure>,
) -> Result<HttpResponse, ApiError> {
    let measure = state
        .engine
        .create_measure(&tenant, &path.instance_id, body.into_inner())
        .await?;
    let location = urls::measure(&path.instance_id, &measure.measure_id);
    Ok(urls::created(&state, &location, &measure))
}

/// Get a measure
///
/// Gets a business measure with its value and the time of its last refresh.
#[utoipa::path(
    operation_id = "GetMeasure", tag = "Measures",
    params(MeasurePath),
    responses(
        (status = 200, description = "The measure.", body = Measure),
        (status = 404, description = "No such instance or measure.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/measures/{measureId}")]
async fn get_measure(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<MeasurePath>,
) -> Result<web::Json<Measure>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .measure(&tenant, &path.instance_id, &path.measure_id)
            .await?,
    ))
}

/// Refresh a measure
///
/// Starts a job that recomputes the measure; the result has value and previousValue.
#[utoipa::path(
    operation_id = "RefreshMeasure", tag = "Measures",
    params(MeasurePath),
    responses(
        (status = 202, description = "The refresh job was queued.", body = Job,
            headers(("Location" = String, description = "URL of the job to poll."), ("Retry-After" = i32, description = "Seconds to wait before polling."))),
        (status = 404, description = "No such instance or measure.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/measures/{measureId}/refresh")]
async fn refresh_measure(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<MeasurePath>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .engine
        .refresh_measure(&tenant, &path.instance_id, &path.measure_id)
        .await?;
    Ok(accepted(&state, &job))
}
