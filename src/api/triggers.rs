//! HTTP layer: webhook triggers, the six subscribe operations and the subscription resource
//! (unsubscribe, inspect, deliveries, redeliver). May use engine, webhooks and the trigger
//! catalog.

use actix_web::{delete, get, post, web, HttpResponse};
use serde::Deserialize;

use super::params::{DeliveryPath, InstancePath, SubscriptionPath};
use super::problem::{ApiError, Problem};
use super::state::AppState;
use super::urls;
use crate::engine::TenantId;
use crate::triggers::inputs::{
    DataSourceTriggerInput, MeasureTriggerInput, PlainTriggerInput, SegmentTriggerInput,
};
use crate::triggers::Trigger;
use crate::webhooks::subscriptions::{
    self as subs, Delivery, DeliveryList, DeliveryStatus, SubscribeRequest, TriggerSubscription,
    TriggerSubscriptionList,
};

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(on_data_source_refresh_failed)
        .service(on_data_source_refresh_succeeded)
        .service(on_segment_threshold_crossed)
        .service(on_measure_threshold_crossed)
        .service(on_full_refresh_completed)
        .service(on_unification_completed)
        .service(list_trigger_subscriptions)
        .service(get_trigger_subscription)
        .service(delete_trigger_subscription)
        .service(list_deliveries)
        .service(redeliver_event);
}

async fn subscribe(
    state: &AppState,
    tenant: &TenantId,
    instance_id: &str,
    trigger: Trigger,
    req: SubscribeRequest,
) -> Result<HttpResponse, ApiError> {
    let sub = subs::subscribe(
        &state.engine,
        &state.callback_policy,
        tenant,
        instance_id,
        trigger,
        req,
    )
    .await?;
    let location = urls::subscription(&sub.instance_id, &sub.subscription_id);
    Ok(urls::created(state, &location, &sub))
}

/// When a data source refresh fails
///
/// This operation triggers when a refresh of a data source of the instance fails (optionally of one data source only).
#[utoipa::path(
    operation_id = "OnDataSourceRefreshFailed",
    tag = "Triggers",
    params(InstancePath),
    request_body(content = DataSourceTriggerInput, description = "The subscription."),
    responses(
        (status = 201, description = "Subscribed; DELETE the Location URL to unsubscribe.", body = TriggerSubscription,
            headers(("Location" = String, description = "Absolute URL of the subscription; DELETE it to unsubscribe."))),
        (status = 400, description = "The input is not valid or the notification URL is not allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or data source.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")),
        ("x-ms-trigger-hint" = json!("To see it work, refresh a data source whose file is missing or malformed.")))
)]
#[post("/instances/{instanceId}/triggers/datasource-refresh-failed")]
async fn on_data_source_refresh_failed(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<DataSourceTriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner().into();
    subscribe(
        &state,
        &tenant,
        &path.instance_id,
        Trigger::OnDataSourceRefreshFailed,
        req,
    )
    .await
}

/// When a data source refresh succeeds
///
/// This operation triggers when a refresh of a data source of the instance succeeds (optionally of one data source only).
#[utoipa::path(
    operation_id = "OnDataSourceRefreshSucceeded",
    tag = "Triggers",
    params(InstancePath),
    request_body(content = DataSourceTriggerInput, description = "The subscription."),
    responses(
        (status = 201, description = "Subscribed; DELETE the Location URL to unsubscribe.", body = TriggerSubscription,
            headers(("Location" = String, description = "Absolute URL of the subscription; DELETE it to unsubscribe."))),
        (status = 400, description = "The input is not valid or the notification URL is not allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or data source.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")),
        ("x-ms-trigger-hint" = json!("To see it work, refresh a data source.")))
)]
#[post("/instances/{instanceId}/triggers/datasource-refresh-succeeded")]
async fn on_data_source_refresh_succeeded(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<DataSourceTriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner().into();
    subscribe(
        &state,
        &tenant,
        &path.instance_id,
        Trigger::OnDataSourceRefreshSucceeded,
        req,
    )
    .await
}

/// When a segment crosses a threshold
///
/// This operation triggers when a segment refresh moves the segment's member count from at most the threshold to above it.
#[utoipa::path(
    operation_id = "OnSegmentThresholdCrossed",
    tag = "Triggers",
    params(InstancePath),
    request_body(content = SegmentTriggerInput, description = "The subscription."),
    responses(
        (status = 201, description = "Subscribed; DELETE the Location URL to unsubscribe.", body = TriggerSubscription,
            headers(("Location" = String, description = "Absolute URL of the subscription; DELETE it to unsubscribe."))),
        (status = 400, description = "The input is not valid or the notification URL is not allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or segment.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")),
        ("x-ms-trigger-hint" = json!("To see it work, refresh the segment after its member count has grown above the threshold.")))
)]
#[post("/instances/{instanceId}/triggers/segment-threshold")]
async fn on_segment_threshold_crossed(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<SegmentTriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner().into();
    subscribe(
        &state,
        &tenant,
        &path.instance_id,
        Trigger::OnSegmentThresholdCrossed,
        req,
    )
    .await
}

/// When a measure crosses a threshold
///
/// This operation triggers when a measure refresh moves the measure's value from at most the threshold to above it.
#[utoipa::path(
    operation_id = "OnMeasureThresholdCrossed",
    tag = "Triggers",
    params(InstancePath),
    request_body(content = MeasureTriggerInput, description = "The subscription."),
    responses(
        (status = 201, description = "Subscribed; DELETE the Location URL to unsubscribe.", body = TriggerSubscription,
            headers(("Location" = String, description = "Absolute URL of the subscription; DELETE it to unsubscribe."))),
        (status = 400, description = "The input is not valid or the notification URL is not allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or measure.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")),
        ("x-ms-trigger-hint" = json!("To see it work, refresh the measure after its value has grown above the threshold.")))
)]
#[post("/instances/{instanceId}/triggers/measure-threshold")]
async fn on_measure_threshold_crossed(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<MeasureTriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner().try_into()?;
    subscribe(
        &state,
        &tenant,
        &path.instance_id,
        Trigger::OnMeasureThresholdCrossed,
        req,
    )
    .await
}

/// When a full refresh completes
///
/// This operation triggers when a full refresh of the instance completes, successfully or not.
#[utoipa::path(
    operation_id = "OnFullRefreshCompleted",
    tag = "Triggers",
    params(InstancePath),
    request_body(content = PlainTriggerInput, description = "The subscription."),
    responses(
        (status = 201, description = "Subscribed; DELETE the Location URL to unsubscribe.", body = TriggerSubscription,
            headers(("Location" = String, description = "Absolute URL of the subscription; DELETE it to unsubscribe."))),
        (status = 400, description = "The input is not valid or the notification URL is not allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")),
        ("x-ms-trigger-hint" = json!("To see it work, start a full refresh of the instance.")))
)]
#[post("/instances/{instanceId}/triggers/full-refresh-completed")]
async fn on_full_refresh_completed(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<PlainTriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner().into();
    subscribe(
        &state,
        &tenant,
        &path.instance_id,
        Trigger::OnFullRefreshCompleted,
        req,
    )
    .await
}

/// When a unification run completes
///
/// This operation triggers when a unification (map, match and merge) run of the instance completes.
#[utoipa::path(
    operation_id = "OnUnificationCompleted",
    tag = "Triggers",
    params(InstancePath),
    request_body(content = PlainTriggerInput, description = "The subscription."),
    responses(
        (status = 201, description = "Subscribed; DELETE the Location URL to unsubscribe.", body = TriggerSubscription,
            headers(("Location" = String, description = "Absolute URL of the subscription; DELETE it to unsubscribe."))),
        (status = 400, description = "The input is not valid or the notification URL is not allowed.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")),
        ("x-ms-trigger-hint" = json!("To see it work, run unification for the instance.")))
)]
#[post("/instances/{instanceId}/triggers/unification-completed")]
async fn on_unification_completed(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
    body: web::Json<PlainTriggerInput>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner().into();
    subscribe(
        &state,
        &tenant,
        &path.instance_id,
        Trigger::OnUnificationCompleted,
        req,
    )
    .await
}

/// List trigger subscriptions
///
/// Lists the trigger subscriptions of an instance with their delivery state.
#[utoipa::path(
    operation_id = "ListTriggerSubscriptions",
    tag = "Triggers",
    params(InstancePath),
    responses(
        (status = 200, description = "The subscriptions of the instance.", body = TriggerSubscriptionList),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/subscriptions")]
async fn list_trigger_subscriptions(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<web::Json<TriggerSubscriptionList>, ApiError> {
    let value = subs::list(&state.engine, &tenant, &path.instance_id).await?;
    Ok(web::Json(TriggerSubscriptionList { value }))
}

/// Get a trigger subscription
///
/// Gets a trigger subscription with its delivery state: status, last delivery, consecutive failures and last error.
#[utoipa::path(
    operation_id = "GetTriggerSubscription",
    tag = "Triggers",
    params(SubscriptionPath),
    responses(
        (status = 200, description = "The subscription.", body = TriggerSubscription),
        (status = 404, description = "No such subscription.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/subscriptions/{subscriptionId}")]
async fn get_trigger_subscription(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<SubscriptionPath>,
) -> Result<web::Json<TriggerSubscription>, ApiError> {
    Ok(web::Json(
        subs::get(
            &state.engine,
            &tenant,
            &path.instance_id,
            &path.subscription_id,
        )
        .await?,
    ))
}

/// Delete a trigger subscription
///
/// Deletes a trigger subscription and its queued notifications. Deleting a subscription that is already gone also succeeds.
#[utoipa::path(
    operation_id = "DeleteTriggerSubscription",
    tag = "Triggers",
    params(SubscriptionPath),
    responses(
        (status = 204, description = "The subscription is gone."),
    ),
    extensions(("x-ms-visibility" = json!("internal")))
)]
#[delete("/instances/{instanceId}/subscriptions/{subscriptionId}")]
async fn delete_trigger_subscription(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<SubscriptionPath>,
) -> Result<HttpResponse, ApiError> {
    subs::delete(
        &state.engine,
        &tenant,
        &path.instance_id,
        &path.subscription_id,
    )
    .await?;
    Ok(HttpResponse::NoContent().finish())
}

/// Query of `ListDeliveries`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DeliveryQuery {
    status: Option<DeliveryStatus>,
    #[serde(rename = "$top")]
    top: Option<i64>,
}

/// List deliveries
///
/// Lists the deliveries of a trigger subscription, newest first, with their recent attempts, so failed and dead-lettered notifications are visible.
#[utoipa::path(
    operation_id = "ListDeliveries",
    tag = "Triggers",
    params(
        SubscriptionPath,
        ("status" = inline(Option<DeliveryStatus>), Query, description = "Only deliveries in this state: pending, delivered, failed or dead."),
        ("$top" = Option<i64>, Query, minimum = 1, maximum = 500, description = "Most deliveries to return (1 to 500, default 100)."),
    ),
    responses(
        (status = 200, description = "The deliveries.", body = DeliveryList),
        (status = 400, description = "The query is not valid.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such subscription.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[get("/instances/{instanceId}/subscriptions/{subscriptionId}/deliveries")]
async fn list_deliveries(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<SubscriptionPath>,
    query: web::Query<DeliveryQuery>,
) -> Result<web::Json<DeliveryList>, ApiError> {
    let top = query.top.unwrap_or(100);
    if !(1..=500).contains(&top) {
        return Err(ApiError::BadRequest(
            "$top must be between 1 and 500".into(),
        ));
    }
    let value = subs::list_deliveries(
        &state.engine,
        &tenant,
        &path.instance_id,
        &path.subscription_id,
        query.status,
        top,
    )
    .await?;
    Ok(web::Json(DeliveryList { value }))
}

/// Redeliver an event
///
/// Queues a failed or dead-lettered notification again, with a fresh series of attempts.
#[utoipa::path(
    operation_id = "RedeliverEvent",
    tag = "Triggers",
    params(DeliveryPath),
    responses(
        (status = 200, description = "The delivery, queued again (status pending).", body = Delivery),
        (status = 404, description = "No such subscription or delivery.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The subscription is dead; subscribe again first.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("advanced")))
)]
#[post("/instances/{instanceId}/subscriptions/{subscriptionId}/deliveries/{deliveryId}/redeliver")]
async fn redeliver_event(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<DeliveryPath>,
) -> Result<HttpResponse, ApiError> {
    let delivery = subs::redeliver(
        &state.engine,
        &tenant,
        &path.instance_id,
        &path.subscription_id,
        &path.delivery_id,
    )
    .await?;
    // 200, not 202: in Power Automate 202 means "poll the Location", and there is nothing to
    // poll here (the delivery's state is in ListDeliveries).
    Ok(HttpResponse::Ok().json(delivery))
}
