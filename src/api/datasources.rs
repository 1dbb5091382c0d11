//! HTTP layer: data sources (list, create, get, refresh). May use engine, never store.
use actix_web::{get, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::jobs::accepted;
use super::params::{DataSourcePath, InstancePath};
use super::problem::{ApiError, Problem};
use super::state::AppState;
use super::urls;
use crate::engine::datasources::{DataSource, NewDataSource};
use crate::engine::jobs::Job;
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_data_sources)
        .service(create_data_source)
        .service(get_data_source)
        .service(refresh_data_source);
}

/// The data sources of an instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct DataSourceList {
    /// The data sources.
    pub value: Vec<DataSource>,
}

/// List data sources
///
/// Lists the data sources of an instance with the outcome of their last refresh.
#[utoipa::path(
    operation_id = "ListDataSources",
    tag = "Data sources",
    params(InstancePath),
    responses(
        (status = 200, description = "The data sources.", body = DataSourceList),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/datasources")]
async fn list_data_sources(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<web::Json<DataSourceList>, ApiError> {
    let value = state
        .engine
        .list_data_sources(&tenant, &path.instance_id)
        .await?;
    Ok(web::Json(DataSourceList { value }))
}

/// Create a data source
///
/// Creates a CSV or JSON Lines data source, given inline or as a file in the service's data directory.
#[utoipa::path(
    operation_id = "CreateDataSource",
    tag = "Data sources",
    params(InstancePath),
    request_body(content = NewDataSource, description = "The data source to create."),
    responses(
        (status = 201, description = "The data source was created.", body = DataSource,
            headers(("Location" = String, description = "Absolute URL of the new data source."))),
        (status = 400, description = "The input is not valid.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The entity is already fed by another data source.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/datasources")]
async fn create_data_source(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<NewDataSource>,
) -> Result<HttpResponse, ApiError> {
    let source = state
        .engine
        .create_data_source(&tenant, &path.instance_id, body.into_inner())
        .await?;
    let location = urls::data_source(&path.instance_id, &source.data_source_id);
    Ok(urls::created(&state, &location, &source))
}

/// Get a data source
///
/// Gets a data source with the status, row count, error and times of its last refresh.
#[utoipa::path(
    operation_id = "GetDataSource",
    tag = "Data sources",
    params(DataSourcePath),
    responses(
        (status = 200, description = "The data source.", body = DataSource),
        (status = 404, description = "No such instance or data source.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/datasources/{dataSourceId}")]
async fn get_data_source(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<DataSourcePath>,
) -> Result<web::Json<DataSource>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .data_source(&tenant, &path.instance_id, &path.data_source_id)
            .await?,
    ))
}

/// Refresh a data source
///
/// Starts a refresh that ingests the data source into its entity; poll the returned job until it finishes.
#[utoipa::path(
    operation_id = "RefreshDataSource",
    tag = "Data sources",
    params(DataSourcePath),
    responses(
        (status = 202, description = "The refresh job was queued.", body = Job,
            headers(("Location" = String, description = "URL of the job to poll."), ("Retry-After" = i32, description = "Seconds to wait before polling."))),
        (status = 404, description = "No such instance or data source.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/datasources/{dataSourceId}/refresh")]
async fn refresh_data_source(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<DataSourcePath>,
) -> Result<HttpResponse, ApiError> {
    let job = state
        .engine
        .refresh_data_source(&tenant, &path.instance_id, &path.data_source_id)
        .await?;
    Ok(accepted(&state, &job))
}
