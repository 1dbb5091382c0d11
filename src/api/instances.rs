//! HTTP layer: instances (workspaces) of the caller's tenant: list, create, get, delete. May use
//! engine, never store.
use actix_web::{delete, get, post, web, HttpResponse};
use serde::Serialize;
use utoipa::ToSchema;

use super::params::InstancePath;
use super::problem::{ApiError, Problem};
use super::state::AppState;
use super::urls;
use crate::engine::instances::{Instance, NewInstance};
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(list_instances)
        .service(create_instance)
        .service(get_instance)
        .service(delete_instance);
}

/// A list of instances.
#[derive(Debug, Serialize, ToSchema)]
pub struct InstanceList {
    /// The instances.
    pub value: Vec<Instance>,
}

/// List instances
///
/// Lists the instances (workspaces) that the connection's API key can use.
#[utoipa::path(
    operation_id = "ListInstances",
    tag = "Instances",
    responses(
        (status = 200, description = "The instances of the caller's tenant.", body = InstanceList),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances")]
async fn list_instances(
    state: web::Data<AppState>,
    tenant: TenantId,
) -> Result<web::Json<InstanceList>, ApiError> {
    let value = state.engine.list_instances(&tenant).await?;
    Ok(web::Json(InstanceList { value }))
}

/// Create an instance
///
/// Creates a new, empty instance (workspace) for the caller's tenant.
#[utoipa::path(
    operation_id = "CreateInstance",
    tag = "Instances",
    request_body(content = NewInstance, description = "The instance to create."),
    responses(
        (status = 201, description = "The instance was created.", body = Instance,
            headers(("Location" = String, description = "Absolute URL of the new instance."))),
        (status = 400, description = "The input is not valid.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances")]
async fn create_instance(
    state: web::Data<AppState>,
    tenant: TenantId,
    body: web::Json<NewInstance>,
) -> Result<HttpResponse, ApiError> {
    let instance = state
        .engine
        .create_instance(&tenant, body.into_inner())
        .await?;
    let location = urls::instance(&instance.instance_id);
    Ok(urls::created(&state, &location, &instance))
}

/// Get an instance
///
/// Gets one instance of the caller's tenant.
#[utoipa::path(
    operation_id = "GetInstance",
    tag = "Instances",
    params(InstancePath),
    responses(
        (status = 200, description = "The instance.", body = Instance),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}")]
async fn get_instance(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<web::Json<Instance>, ApiError> {
    Ok(web::Json(
        state.engine.instance(&tenant, &path.instance_id).await?,
    ))
}

/// Delete an instance
///
/// Deletes an instance with all its data sources, entities, segments, measures, jobs and trigger subscriptions.
#[utoipa::path(
    operation_id = "DeleteInstance",
    tag = "Instances",
    params(InstancePath),
    responses(
        (status = 204, description = "The instance was deleted."),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[delete("/instances/{instanceId}")]
async fn delete_instance(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<HttpResponse, ApiError> {
    state
        .engine
        .delete_instance(&tenant, &path.instance_id)
        .await?;
    Ok(HttpResponse::NoContent().finish())
}
