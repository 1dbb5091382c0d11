//! HTTP layer: the URLs this service hands out, in `Location` headers and `nextLink`s. Every
//! path segment is percent-encoded here, once, so an item key with a space or a slash still
//! yields a URL that routes back to the item. May use `api::state` only.

use actix_web::http::header;
use actix_web::HttpResponse;
use serde::Serialize;

use super::state::AppState;

/// Percent-encodes one path segment.
pub fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

pub fn instance(instance_id: &str) -> String {
    format!("/instances/{}", encode(instance_id))
}

pub fn data_source(instance_id: &str, data_source_id: &str) -> String {
    format!(
        "{}/datasources/{}",
        instance(instance_id),
        encode(data_source_id)
    )
}

pub fn items(instance_id: &str, entity_name: &str) -> String {
    format!(
        "{}/entities/{}/items",
        instance(instance_id),
        encode(entity_name)
    )
}

pub fn item(instance_id: &str, entity_name: &str, item_id: &str) -> String {
    format!("{}/{}", items(instance_id, entity_name), encode(item_id))
}

pub fn segment(instance_id: &str, segment_id: &str) -> String {
    format!("{}/segments/{}", instance(instance_id), encode(segment_id))
}

pub fn measure(instance_id: &str, measure_id: &str) -> String {
    format!("{}/measures/{}", instance(instance_id), encode(measure_id))
}

pub fn job(instance_id: &str, job_id: &str) -> String {
    format!("{}/jobs/{}", instance(instance_id), encode(job_id))
}

/// The `Location` of a subscribe answer: what the platform DELETEs to unsubscribe.
pub fn subscription(instance_id: &str, subscription_id: &str) -> String {
    format!(
        "{}/subscriptions/{}",
        instance(instance_id),
        encode(subscription_id)
    )
}

/// 201 Created with the body and the absolute URL of the new resource at `path` as `Location`.
pub fn created<T: Serialize>(state: &AppState, path: &str, body: &T) -> HttpResponse {
    HttpResponse::Created()
        .insert_header((header::LOCATION, state.url(path)))
        .json(body)
}
