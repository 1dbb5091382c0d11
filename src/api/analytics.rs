//! Segments, measures, unification and the full refresh.

use actix_web::{get, http::header, post, put, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::entities::{encode, Item};
use super::jobs::accepted;
use super::problem::{ApiError, Problem};
use super::state::AppState;
use crate::engine::jobs::Job;
use crate::engine::measures::{Measure, NewMeasure};
use crate::engine::segments::{NewSegment, Segment};
use crate::engine::unify::UnificationConfig;
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_segments)
        .service(create_segment)
        .service(get_segment)
        .service(refresh_segment)
        .service(get_segment_members)
        .service(list_measures)
        .service(create_measure)
        .service(get_measure)
        .service(refresh_measure)
        .service(get_unification_config)
        .service(set_unification_config)
        .service(run_unification)
        .service(start_full_refresh);
}

/// The segments of an instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentList {
    /// The segments.
    pub value: Vec<Segment>,
}

/// The measures of an instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct MeasureList {
    /// The measures.
    pub value: Vec<Measure>,
}

/// A page of segment members (unified customer profiles).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberList {
    /// The members of this page.
    pub value: Vec<Item>,
    /// Absolute URL of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(extensions(("x-ms-summary" = json!("Next link"))))]
    pub next_link: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct PageParams {
    #[serde(rename = "$top")]
    top: Option<i64>,
    #[serde(rename = "$skip")]
    skip: Option<i64>,
}

fn created<T: Serialize>(state: &AppState, path: String, body: &T) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, state.url(&path)))
        .json(body)
}

/// List segments
///
/// Lists the segments of an instance with their member counts.
#[utoipa::path(
    operation_id = "ListSegments", tag = "Segments",
    params(("instanceId" = String, Path, description = "The instance.")),
    responses(
        (status = 200, description = "The segments.", body = SegmentList),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/segments")]
async fn list_segments(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<String>,
) -> Result<web::Json<SegmentList>, ApiError> {
    Ok(web::Json(SegmentList {
        value: state.engine.list_segments(&tenant, &path).await?,
    }))
}

/// Create a segment
///
/// Creates a segment of the unified customer profiles that match an OData filter.
#[utoipa::path(
    operation_id = "CreateSegment", tag = "Segments",
    params(("instanceId" = String, Path, description = "The instance.")),
    request_body(content = NewSegment, description = "The segment to create."),
    responses(
        (status = 201, description = "The segment was created.", body = Segment,
            headers(("Location" = String, description = "Absolute URL of the new segment."))),
        (status = 400, description = "The input is not valid.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/segments")]
async fn create_segment(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<String>,
    body: web::Json<NewSegment>,
) -> Result<HttpResponse, ApiError> {
    let segment = state
        .engine
        .create_segment(&tenant, &path, body.into_inner())
        .await?;
    Ok(created(
        &state,
        format!(
            "/instances/{}/segments/{}",
            path.as_str(),
            segment.segment_id
        ),
        &segment,
    ))
}

/// Get a segment
///
/// Gets a segment with its member count and the time of its last refresh.
#[utoipa::path(
    operation_id = "GetSegment", tag = "Segments",
    params(("instanceId" = String, Path, description = "The instance."), ("segmentId" = String, Path, description = "The segment.")),
    responses(
        (status = 200, description = "The segment.", body = Segment),
        (status = 404, description = "No such instance or segment.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/segments/{segmentId}")]
async fn get_segment(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<(String, String)>,
) -> Result<web::Json<Segment>, ApiError> {
    let (instance_id, id) = path.into_inner();
    Ok(web::Json(
        state.engine.segment(&tenant, &instance_id, &id).await?,
    ))
}

/// Refresh a segment
///
/// Starts a job that recomputes the segment's members; the result has memberCount and previousCount.
#[utoipa::path(
    operation_id = "RefreshSegment", tag = "Segments",
    params(("instanceId" = String, Path, description = "The instance."), ("segmentId" = String, Path, description = "The segment.")),
    responses(
        (status = 202, description = "The refresh job was queued.", body = Job,
            headers(("Location" = String, description = "URL of the job to poll."), ("Retry-After" = i32, description = "Seconds to wait before polling."))),
        (status = 404, description = "No such instance or segment.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/segments/{segmentId}/refresh")]
async fn refresh_segment(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (instance_id, id) = path.into_inner();
    let job = state
        .engine
        .refresh_segment(&tenant, &instance_id, &id)
        .await?;
    Ok(accepted(&state, &job))
}

/// Get segment members
///
/// Gets a page of the unified customer profiles that were members of the segment at its last refresh.
#[utoipa::path(
    operation_id = "GetSegmentMembers", tag = "Segments",
    params(
        ("instanceId" = String, Path, description = "The instance."),
        ("segmentId" = String, Path, description = "The segment."),
        ("$top" = Option<i64>, Query, minimum = 1, maximum = 1000, description = "Page size (1 to 1000, default 100)."),
        ("$skip" = Option<i64>, Query, minimum = 0, description = "Number of members to skip."),
    ),
    responses(
        (status = 200, description = "A page of members.", body = MemberList),
        (status = 400, description = "An invalid paging option.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or segment.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")), ("x-ms-pageable" = json!({"nextLinkName": "nextLink"})))
)]
#[get("/instances/{instanceId}/segments/{segmentId}/members")]
async fn get_segment_members(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<(String, String)>,
    query: web::Query<PageParams>,
) -> Result<web::Json<MemberList>, ApiError> {
    let (instance_id, id) = path.into_inner();
    let page = state
        .engine
        .segment_members(&tenant, &instance_id, &id, query.top, query.skip)
        .await?;
    let next_link = page.next_skip.map(|skip| {
        state.url(&format!(
            "/instances/{}/segments/{}/members?%24top={}&%24skip={skip}",
            encode(&instance_id),
            encode(&id),
            page.top
        ))
    });
    Ok(web::Json(MemberList {
        value: page
            .items
            .into_iter()
            .map(|v| {
                Item(match v {
                    Value::Object(m) => m,
                    _ => Default::default(),
                })
            })
            .collect(),
        next_link,
    }))
}

/// List measures
///
/// Lists the business measures of an instance with their last values.
#[utoipa::path(
    operation_id = "ListMeasures", tag = "Measures",
    params(("instanceId" = String, Path, description = "The instance.")),
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
    path: web::Path<String>,
) -> Result<web::Json<MeasureList>, ApiError> {
    Ok(web::Json(MeasureList {
        value: state.engine.list_measures(&tenant, &path).await?,
    }))
}

/// Create a measure
///
/// Creates a business measure: an aggregate of a field of an entity, optionally filtered.
#[utoipa::path(
    operation_id = "CreateMeasure", tag = "Measures",
    params(("instanceId" = String, Path, description = "The instance.")),
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
    path: web::Path<String>,
    body: web::Json<NewMeasure>,
) -> Result<HttpResponse, ApiError> {
    let measure = state
        .engine
        .create_measure(&tenant, &path, body.into_inner())
        .await?;
    Ok(created(
        &state,
        format!(
            "/instances/{}/measures/{}",
            path.as_str(),
            measure.measure_id
        ),
        &measure,
    ))
}

/// Get a measure
///
/// Gets a business measure with its value and the time of its last refresh.
#[utoipa::path(
    operation_id = "GetMeasure", tag = "Measures",
    params(("instanceId" = String, Path, description = "The instance."), ("measureId" = String, Path, description = "The measure.")),
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
    path: web::Path<(String, String)>,
) -> Result<web::Json<Measure>, ApiError> {
    let (instance_id, id) = path.into_inner();
    Ok(web::Json(
        state.engine.measure(&tenant, &instance_id, &id).await?,
    ))
}

/// Refresh a measure
///
/// Starts a job that recomputes the measure; the result has value and previousValue.
#[utoipa::path(
    operation_id = "RefreshMeasure", tag = "Measures",
    params(("instanceId" = String, Path, description = "The instance."), ("measureId" = String, Path, description = "The measure.")),
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
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (instance_id, id) = path.into_inner();
    let job = state
        .engine
        .refresh_measure(&tenant, &instance_id, &id)
        .await?;
    Ok(accepted(&state, &job))
}

/// Get the unification configuration
///
/// Gets how an instance unifies its sources: field mapping, match rules and merge policy.
#[utoipa::path(
    operation_id = "GetUnificationConfig", tag = "Unification",
    params(("instanceId" = String, Path, description = "The instance.")),
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
    path: web::Path<String>,
) -> Result<web::Json<UnificationConfig>, ApiError> {
    Ok(web::Json(
        state.engine.unification_config(&tenant, &path).await?,
    ))
}

/// Set the unification configuration
///
/// Replaces how an instance unifies its sources: field mapping, match rules and merge policy.
#[utoipa::path(
    operation_id = "SetUnificationConfig", tag = "Unification",
    params(("instanceId" = String, Path, description = "The instance.")),
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
    path: web::Path<String>,
    body: web::Json<UnificationConfig>,
) -> Result<web::Json<UnificationConfig>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .set_unification_config(&tenant, &path, body.into_inner())
            .await?,
    ))
}

/// Run unification
///
/// Starts a job that maps, matches and merges the sources into unified Customer profiles.
#[utoipa::path(
    operation_id = "RunUnification", tag = "Unification",
    params(("instanceId" = String, Path, description = "The instance.")),
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
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let job = state.engine.run_unification(&tenant, &path).await?;
    Ok(accepted(&state, &job))
}

/// Start a full refresh
///
/// Starts a job that refreshes all data sources, then unification, measures and segments.
#[utoipa::path(
    operation_id = "StartFullRefresh", tag = "Unification",
    params(("instanceId" = String, Path, description = "The instance.")),
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
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let job = state.engine.start_full_refresh(&tenant, &path).await?;
    Ok(accepted(&state, &job))
}
