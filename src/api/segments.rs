//! HTTP layer: segments (list, create, get, refresh) and their members. May use engine, never
//! store.

use actix_web::{get, post, web, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::entities::Item;
use super::jobs::accepted;
use super::params::{InstancePath, SegmentPath};
use super::problem::{ApiError, Problem};
use super::state::AppState;
use super::urls;
use crate::engine::jobs::Job;
use crate::engine::segments::{NewSegment, Segment};
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_segments)
        .service(create_segment)
        .service(get_segment)
        .service(refresh_segment)
        .service(get_segment_members);
}

/// The segments of an instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct SegmentList {
    /// The segments.
    pub value: Vec<Segment>,
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

/// List segments
///
/// Lists the segments of an instance with their member counts.
#[utoipa::path(
    operation_id = "ListSegments", tag = "Segments",
    params(InstancePath),
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
    path: web::Path<InstancePath>,
) -> Result<web::Json<SegmentList>, ApiError> {
    Ok(web::Json(SegmentList {
        value: state
            .engine
            .list_segments(&tenant, &path.instance_id)
            .await?,
    }))
}

/// Create a segment
///
/// Creates a segment of the unified customer profiles that match an OData filter.
#[utoipa::path(
    operation_id = "CreateSegment", tag = "Segments",
    params(InstancePath),
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
    path: web::Path<InstancePath>,
    body: web::Json<NewSegment>,
) -> Result<HttpResponse, ApiError> {
    let segment = state
        .engine
        .create_segment(&tenant, &path.instance_id, body.into_inner())
        .await?;
    let location = urls::segment(&path.instance_id, &segment.segment_id);
    Ok(urls::created(&state, &location, &segment))
}

/// Get a segment
///
/// Gets a segment with its member count and the time of its last refresh.
#[utoipa::path(
    operation_id = "GetSegment", tag = "Segments",
    params(SegmentPath),
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
    path: web::Path<SegmentPath>,
) -> Result<web::Json<Segment>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .segment(&tenant, &path.instance_id, &path.segment_id)
            .await?,
    ))
}

/// Refresh a segment
///
/// Starts a job that recomputes the segment's members; the result has memberCount and previousCount.
#[utoipa::path(
    operation_id = "RefreshSegment", tag = "Segments",
    params(SegmentPath),
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
    path: web::Path<SegmentPath>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .engine
        .refresh_segment(&tenant, &path.instance_id, &path.segment_id)
        .await?;
    Ok(accepted(&state, &job))
}

/// Get segment members
///
/// Gets a page of the unified customer profiles that were members of the segment at its last refresh.
#[utoipa::path(
    operation_id = "GetSegmentMembers", tag = "Segments",
    params(
        SegmentPath,
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
    path: web::Path<SegmentPath>,
    query: web::Query<PageParams>,
) -> Result<web::Json<MemberList>, ApiError> {
    let SegmentPath {
        instance_id,
        segment_id,
    } = path.into_inner();
    let page = state
        .engine
        .segment_members(&tenant, &instance_id, &segment_id, query.top, query.skip)
        .await?;
    let next_link = page.next_skip.map(|skip| {
        state.url(&format!(
            "{}/members?%24top={}&%24skip={skip}",
            urls::segment(&instance_id, &segment_id),
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
