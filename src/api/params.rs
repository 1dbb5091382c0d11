//! HTTP layer: the path parameters of the handlers, one struct per resource path, shared by
//! every handler of that path. Only names and types are stated here: display names,
//! descriptions and pickers of path parameters come from the spec step's `PATH_PARAMETERS`
//! table, which keeps same-named parameters identical across operations. Depends on nothing in
//! the crate.

use serde::Deserialize;
use utoipa::IntoParams;

/// `/instances/{instanceId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct InstancePath {
    pub instance_id: String,
}

/// `/instances/{instanceId}/entities/{entityName}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct EntityPath {
    pub instance_id: String,
    pub entity_name: String,
}

/// `/instances/{instanceId}/entities/{entityName}/items/{itemId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct ItemPath {
    pub instance_id: String,
    pub entity_name: String,
    pub item_id: String,
}

/// `/instances/{instanceId}/datasources/{dataSourceId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct DataSourcePath {
    pub instance_id: String,
    pub data_source_id: String,
}

/// `/instances/{instanceId}/segments/{segmentId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct SegmentPath {
    pub instance_id: String,
    pub segment_id: String,
}

/// `/instances/{instanceId}/measures/{measureId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct MeasurePath {
    pub instance_id: String,
    pub measure_id: String,
}

/// `/instances/{instanceId}/jobs/{jobId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct JobPath {
    pub instance_id: String,
    pub job_id: String,
}

/// `/instances/{instanceId}/subscriptions/{subscriptionId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct SubscriptionPath {
    pub instance_id: String,
    pub subscription_id: String,
}

/// `/instances/{instanceId}/subscriptions/{subscriptionId}/deliveries/{deliveryId}`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Path)]
pub struct DeliveryPath {
    pub instance_id: String,
    pub subscription_id: String,
    pub delivery_id: String,
}
