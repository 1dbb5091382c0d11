//! HTTP layer: entities and their items (schema, OData-queried pages, create, get, update). May
//! use engine, never store.
use std::sync::Arc;

use actix_web::{get, http::header, patch, post, web, HttpRequest, HttpResponse};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use super::params::{EntityPath, InstancePath, ItemPath};
use super::problem::{ApiError, Problem};
use super::query_options;
use super::state::AppState;
use super::urls;
use crate::engine::entities::{skiptoken, Entity, ItemsQuery, NextPage};
use crate::engine::TenantId;

pub fn configure(cfg: &mut utoipa_actix_web::service_config::ServiceConfig) {
    cfg.service(get_entities)
        .service(get_entity_schema)
        .service(get_items)
        .service(create_item)
        .service(get_item)
        .service(update_item);
}

/// The entities of an instance.
#[derive(Debug, Serialize, ToSchema)]
pub struct EntityList {
    /// The entities.
    pub value: Vec<Entity>,
}

/// An item: a JSON object whose fields are described by the entity's schema.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(transparent)]
#[schema(value_type = Object)]
pub struct Item(pub Map<String, Value>);

/// A page of items.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ItemList {
    /// The items of this page.
    #[schema(value_type = Vec<Item>)]
    pub value: Arc<RawValue>,
    /// Absolute URL of the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(extensions(("x-ms-summary" = json!("Next link"))))]
    pub next_link: Option<String>,
    /// With $count=true: how many items match the filter in all.
    #[serde(rename = "@odata.count", skip_serializing_if = "Option::is_none")]
    #[schema(extensions(("x-ms-summary" = json!("Count"))))]
    pub count: Option<i64>,
}

/// Get entities
///
/// Gets the entities of an instance with their kind, key field and item count.
#[utoipa::path(
    operation_id = "GetEntities",
    tag = "Entities",
    params(InstancePath),
    responses(
        (status = 200, description = "The entities.", body = EntityList),
        (status = 404, description = "No such instance.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")))
)]
#[get("/instances/{instanceId}/entities")]
async fn get_entities(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<InstancePath>,
) -> Result<web::Json<EntityList>, ApiError> {
    let value = state
        .engine
        .list_entities(&tenant, &path.instance_id)
        .await?;
    Ok(web::Json(EntityList { value }))
}

/// Get entity schema
///
/// Gets the JSON Schema of an entity's items, with field types inferred from the data.
#[utoipa::path(
    operation_id = "GetEntitySchema",
    tag = "Entities",
    params(EntityPath),
    responses(
        (status = 200, description = "A JSON Schema object describing the items.", body = Object),
        (status = 404, description = "No such instance or entity.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("internal")))
)]
#[get("/instances/{instanceId}/entities/{entityName}/schema")]
async fn get_entity_schema(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<EntityPath>,
) -> Result<web::Json<Value>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .entity_schema(&tenant, &path.instance_id, &path.entity_name)
            .await?,
    ))
}

/// Get items from an entity
///
/// Gets items from an entity, filtered, projected, ordered and paged with OData query options.
#[utoipa::path(
    operation_id = "GetItems",
    tag = "Entities",
    params(
        EntityPath,
        ("$filter" = Option<String>, Query, description = "OData filter, for example City eq 'Berlin' and Age gt 30 or createdAt ge 2024-01-01T00:00:00Z."),
        ("$select" = Option<String>, Query, description = "Comma-separated fields to return (each one present, null where an item has none)."),
        ("$orderby" = Option<String>, Query, description = "Comma-separated fields or expressions to order by, each optionally followed by asc or desc."),
        ("$top" = Option<i64>, Query, minimum = 0, maximum = 100000, description = "At most this many items in all (0 to 100,000); they come in pages of up to 1,000 linked by nextLink."),
        ("$skip" = Option<i64>, Query, minimum = 0, description = "Number of items to skip."),
        ("$count" = Option<bool>, Query, description = "Whether to include the number of matching items (@odata.count)."),
        ("$search" = Option<String>, Query, description = "Words or quoted phrases to find in the text fields, with AND, OR and NOT."),
        ("$skiptoken" = Option<String>, Query, description = "Where the next page starts; the nextLink carries it."),
    ),
    responses(
        (status = 200, description = "A page of items.", body = ItemList),
        (status = 400, description = "An invalid or unsupported query option; the message says where.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or entity.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")), ("x-ms-pageable" = json!({"nextLinkName": "nextLink"})))
)]
#[get("/instances/{instanceId}/entities/{entityName}/items")]
async fn get_items(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<EntityPath>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let EntityPath {
        instance_id,
        entity_name,
    } = path.into_inner();
    let q = query_options::items_query(&req)?;
    let page = state
        .engine
        .get_items(&tenant, &instance_id, &entity_name, &q)
        .await?;
    let body = page.rendered.get_or_init(|| {
        let next_link = page.next.as_ref().map(|next| {
            next_link(
                &state,
                &instance_id,
                &entity_name,
                &q,
                page.remaining_top,
                next,
            )
        });
        let list = ItemList {
            value: page.items.clone(),
            next_link,
            count: page.count,
        };
        serde_json::to_vec(&list)
            .expect("a page of stored JSON serializes")
            .into()
    });
    let mut response = HttpResponse::Ok();
    response.content_type(header::ContentType::json());
    if let Some(n) = q.max_page_size {
        response.insert_header(("Preference-Applied", format!("odata.maxpagesize={n}")));
    }
    Ok(response.body(body.clone()))
}

/// Absolute URL of the next page: the same options, what is left of `$top`, and where the
/// page starts.
fn next_link(
    state: &AppState,
    instance_id: &str,
    entity_name: &str,
    q: &ItemsQuery,
    remaining_top: Option<i64>,
    next: &NextPage,
) -> String {
    let mut url = url::Url::parse(&state.url(&urls::items(instance_id, entity_name)))
        .expect("public URL is absolute");
    {
        let mut pairs = url.query_pairs_mut();
        for (name, value) in [
            ("$filter", &q.filter),
            ("$select", &q.select),
            ("$orderby", &q.orderby),
            ("$search", &q.search),
        ] {
            if let Some(v) = value {
                pairs.append_pair(name, v);
            }
        }
        if q.count {
            pairs.append_pair("$count", "true");
        }
        if let Some(top) = remaining_top {
            pairs.append_pair("$top", &top.to_string());
        }
        match next {
            NextPage::AfterKey(key) => pairs.append_pair("$skiptoken", &skiptoken(key)),
            NextPage::Skip(skip) => pairs.append_pair("$skip", &skip.to_string()),
        };
    }
    url.to_string()
}

/// Get item
///
/// Gets one item of an entity by its key.
#[utoipa::path(
    operation_id = "GetItem",
    tag = "Entities",
    params(ItemPath),
    responses(
        (status = 200, description = "The item.", body = Item),
        (status = 404, description = "No such instance, entity or item.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")))
)]
#[get("/instances/{instanceId}/entities/{entityName}/items/{itemId}")]
async fn get_item(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<ItemPath>,
) -> Result<web::Json<Arc<RawValue>>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .get_item(&tenant, &path.instance_id, &path.entity_name, &path.item_id)
            .await?,
    ))
}

/// Create item
///
/// Creates an item in an entity; when the key field is absent a unique key is generated.
#[utoipa::path(
    operation_id = "CreateItem",
    tag = "Entities",
    params(EntityPath),
    request_body(content = Item, description = "The item's fields."),
    responses(
        (status = 201, description = "The item was created.", body = Item,
            headers(("Location" = String, description = "Absolute URL of the new item."))),
        (status = 400, description = "The item is not valid: not an object, a bad key, or a value that does not fit its column's type.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance or entity.", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "An item with this key exists.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")))
)]
#[post("/instances/{instanceId}/entities/{entityName}/items")]
async fn create_item(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<EntityPath>,
    body: web::Json<Item>,
) -> Result<HttpResponse, ApiError> {
    let (key, item) = state
        .engine
        .create_item(
            &tenant,
            &path.instance_id,
            &path.entity_name,
            body.into_inner().0,
        )
        .await?;
    let location = urls::item(&path.instance_id, &path.entity_name, &key);
    Ok(urls::created(&state, &location, &item))
}

/// Update item
///
/// Updates an item by merging the given fields into it; a field set to null is removed.
#[utoipa::path(
    operation_id = "UpdateItem",
    tag = "Entities",
    params(ItemPath),
    request_body(content = Item, description = "The fields to change."),
    responses(
        (status = 200, description = "The updated item.", body = Item),
        (status = 400, description = "The change is not valid: a changed key or a value that does not fit its column's type.", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such instance, entity or item.", body = Problem, content_type = "application/problem+json"),
    ),
    extensions(("x-ms-visibility" = json!("important")))
)]
#[patch("/instances/{instanceId}/entities/{entityName}/items/{itemId}")]
async fn update_item(
    state: web::Data<AppState>,
    tenant: TenantId,
    path: web::Path<ItemPath>,
    body: web::Json<Item>,
) -> Result<web::Json<Value>, ApiError> {
    Ok(web::Json(
        state
            .engine
            .update_item(
                &tenant,
                &path.instance_id,
                &path.entity_name,
                &path.item_id,
                body.into_inner().0,
            )
            .await?,
    ))
}
