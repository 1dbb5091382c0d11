//! Entities and items: the Customer Insights connector's own actions.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use std::sync::Arc;

use super::odata;
pub use super::reads::{ItemsPage, NextPage};
use super::reads::{ReadKey, ReadValue};
use super::schema_inference::widen_schema;
use super::{not_found, Engine, EngineError, EngineResult, TenantId};
use crate::item_query::{Expr, ItemQuery};
use crate::store::entities::EntityRecord;

pub const DEFAULT_TOP: i64 = 100;
pub const MAX_TOP: i64 = 1000;
/// Name of the entity unification produces.
pub const CUSTOMER_ENTITY: &str = "Customer";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum EntityKind {
    Source,
    Unified,
}

/// An entity (a table of items) of an instance.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Entity {
    /// Name of the entity.
    #[schema(extensions(("x-ms-summary" = json!("Entity name"))))]
    pub name: String,
    /// `source` for entities ingested from data sources or written by actions, `unified` for the profiles built by unification.
    pub kind: EntityKind,
    /// The field that identifies an item.
    #[schema(extensions(("x-ms-summary" = json!("Key field"))))]
    pub key_field: String,
    /// Number of items.
    #[schema(extensions(("x-ms-summary" = json!("Item count"))))]
    pub item_count: i64,
}

impl From<EntityRecord> for Entity {
    fn from(r: EntityRecord) -> Self {
        Self {
            kind: if r.kind == "unified" {
                EntityKind::Unified
            } else {
                EntityKind::Source
            },
            name: r.name,
            key_field: r.key_field,
            item_count: r.item_count,
        }
    }
}

/// OData query options of `GetItems`, as received.
#[derive(Debug, Clone, Default)]
pub struct ItemsQuery {
    pub filter: Option<String>,
    pub select: Option<String>,
    pub orderby: Option<String>,
    pub top: Option<i64>,
    pub skip: Option<i64>,
    /// The continuation of a page in key order, as the previous page's next link gave it.
    pub skiptoken: Option<String>,
}

/// The `$skiptoken` of the page after `key`: the key itself, base64url, so a link never has
/// to escape it and a client has nothing to read into it.
pub fn skiptoken(key: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key)
}

fn key_of_skiptoken(token: &str) -> EngineResult<String> {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .ok_or_else(|| {
            EngineError::Invalid(
                "invalid $skiptoken: use the nextLink of the previous page as it is".into(),
            )
        })
}

/// A stored item as raw JSON; anything that is not a JSON object reads as `{}`.
fn raw_object(data: String) -> Box<RawValue> {
    if data.starts_with('{') {
        if let Ok(raw) = RawValue::from_string(data) {
            return raw;
        }
    }
    RawValue::from_string("{}".into()).expect("valid JSON")
}

/// Field names an entity's items can be queried by.
fn known_fields(entity: &EntityRecord) -> Vec<String> {
    let mut fields: Vec<String> = entity
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    if !fields.contains(&entity.key_field) {
        fields.push(entity.key_field.clone());
    }
    fields
}

fn odata_error(option: &str, e: odata::ODataError) -> EngineError {
    EngineError::Invalid(format!("invalid {option}: {e}"))
}

/// Parses a `$filter` and checks every field exists on the entity.
pub(crate) fn parse_filter_for(
    entity: &EntityRecord,
    text: &str,
    option: &str,
) -> EngineResult<Expr> {
    let expr = odata::parse_filter(text).map_err(|e| odata_error(option, e))?;
    let known = known_fields(entity);
    for f in expr.fields() {
        if !known.iter().any(|k| k == f) {
            return Err(EngineError::Invalid(format!(
                "invalid {option}: unknown field '{f}' (entity '{}' has: {})",
                entity.name,
                known.join(", ")
            )));
        }
    }
    Ok(expr)
}

impl Engine {
    pub(crate) async fn entity_record(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
    ) -> EngineResult<Arc<EntityRecord>> {
        let key = ReadKey::Entity {
            tenant: tenant.0.clone(),
            instance: instance_id.to_string(),
            entity: entity_name.to_string(),
        };
        let epoch = self.store().data_epoch();
        if let Some(ReadValue::Entity(entity)) = self.reads().get(&key, epoch) {
            return Ok(entity);
        }
        // One query when both exist; otherwise the separate lookups name what is missing.
        if let Some(entity) = self
            .store()
            .tenant_entity(tenant.as_str(), instance_id, entity_name)
            .await?
        {
            let entity = Arc::new(entity);
            self.reads()
                .put(key, epoch, ReadValue::Entity(entity.clone()));
            return Ok(entity);
        }
        self.instance(tenant, instance_id).await?;
        self.store()
            .entity(instance_id, entity_name)
            .await
            .map(Arc::new)
            .map_err(|e| not_found(e, "entity", entity_name))
    }

    pub async fn list_entities(
        &self,
        tenant: &TenantId,
        instance_id: &str,
    ) -> EngineResult<Vec<Entity>> {
        self.instance(tenant, instance_id).await?;
        Ok(self
            .store()
            .list_entities(instance_id)
            .await?
            .into_iter()
            .map(Entity::from)
            .collect())
    }

    /// JSON Schema of the entity's items (feeds the connector's dynamic schema).
    pub async fn entity_schema(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
    ) -> EngineResult<Value> {
        let entity = self.entity_record(tenant, instance_id, entity_name).await?;
        let mut schema = entity.schema.clone();
        if let Some(key) = schema
            .get_mut("properties")
            .and_then(|p| p.get_mut(&entity.key_field))
        {
            key["description"] = json!(format!("The {} field (the item's key).", entity.key_field));
        }
        Ok(schema)
    }

    pub async fn get_items(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
        q: &ItemsQuery,
    ) -> EngineResult<Arc<ItemsPage>> {
        let key = ReadKey::Page {
            tenant: tenant.0.clone(),
            instance: instance_id.to_string(),
            entity: entity_name.to_string(),
            filter: q.filter.clone(),
            select: q.select.clone(),
            orderby: q.orderby.clone(),
            top: q.top,
            skip: q.skip,
            skiptoken: q.skiptoken.clone(),
        };
        let epoch = self.store().data_epoch();
        if let Some(ReadValue::Page(page)) = self.reads().get(&key, epoch) {
            return Ok(page);
        }
        let page = Arc::new(self.read_items(tenant, instance_id, entity_name, q).await?);
        self.reads().put(key, epoch, ReadValue::Page(page.clone()));
        Ok(page)
    }

    async fn read_items(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
        q: &ItemsQuery,
    ) -> EngineResult<ItemsPage> {
        let entity = self.entity_record(tenant, instance_id, entity_name).await?;
        let top = q.top.unwrap_or(DEFAULT_TOP);
        if !(1..=MAX_TOP).contains(&top) {
            return Err(EngineError::Invalid(format!(
                "invalid $top: {top}; it must be between 1 and {MAX_TOP}"
            )));
        }
        let skip = q.skip.unwrap_or(0);
        if skip < 0 {
            return Err(EngineError::Invalid(
                "invalid $skip: it must not be negative".into(),
            ));
        }
        let known = known_fields(&entity);
        let mut query = ItemQuery {
            limit: top + 1,
            offset: skip,
            after_key: q.skiptoken.as_deref().map(key_of_skiptoken).transpose()?,
            ..ItemQuery::default()
        };
        if let Some(text) = q.filter.as_deref().filter(|t| !t.trim().is_empty()) {
            let expr = parse_filter_for(&entity, text, "$filter")?;
            query.filter = Some(expr);
        }
        if let Some(text) = q.orderby.as_deref().filter(|t| !t.trim().is_empty()) {
            for key in odata::parse_orderby(text).map_err(|e| odata_error("$orderby", e))? {
                if !known.contains(&key.field) {
                    return Err(EngineError::Invalid(format!(
                        "invalid $orderby: unknown field '{}'",
                        key.field
                    )));
                }
                query.order_by.push(key);
            }
        }
        let select = match q.select.as_deref().filter(|t| !t.trim().is_empty()) {
            Some(text) => {
                let fields = odata::parse_select(text).map_err(|e| odata_error("$select", e))?;
                if let Some(f) = fields.iter().find(|f| !known.contains(f)) {
                    return Err(EngineError::Invalid(format!(
                        "invalid $select: unknown field '{f}'"
                    )));
                }
                Some(fields)
            }
            None => None,
        };
        if query.after_key.is_some() && !query.order_by.is_empty() {
            return Err(EngineError::Invalid(
                "invalid $skiptoken: it continues pages in key order and cannot be combined with $orderby".into(),
            ));
        }
        let mut rows = self.store().query_items(&entity, &query).await?;
        let has_more = rows.len() as i64 > top;
        rows.truncate(top as usize);
        // Pages in key order continue after their last key (keyset: page 1,000 costs what the
        // first does); ordered pages continue at an offset.
        let next = match rows.last() {
            Some((last_key, _)) if has_more && query.order_by.is_empty() => {
                Some(NextPage::AfterKey(last_key.clone()))
            }
            _ if has_more => Some(NextPage::Skip(skip + top)),
            _ => None,
        };
        let items: Vec<Box<RawValue>> = rows
            .into_iter()
            .map(|(_, data)| match &select {
                // Items are stored as the serializer wrote them, so passing the text through
                // gives the same bytes as parsing and serializing again.
                None => raw_object(data),
                Some(fields) => {
                    let projected = match serde_json::from_str::<Value>(&data) {
                        Ok(Value::Object(mut map)) => fields
                            .iter()
                            .filter_map(|f| map.remove(f).map(|v| (f.clone(), v)))
                            .collect(),
                        _ => Map::new(),
                    };
                    raw_object(Value::Object(projected).to_string())
                }
            })
            .collect();
        // One JSON array of the (already checked) items, written without a second parse.
        let items = serde_json::value::to_raw_value(&items)
            .map_err(|e| EngineError::Internal(format!("page of items: {e}")))?;
        Ok(ItemsPage {
            items: Arc::from(items),
            next,
            top,
            rendered: std::sync::OnceLock::new(),
        })
    }

    pub async fn get_item(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
        item_id: &str,
    ) -> EngineResult<Arc<RawValue>> {
        let key = ReadKey::Item {
            tenant: tenant.0.clone(),
            instance: instance_id.to_string(),
            entity: entity_name.to_string(),
            item: item_id.to_string(),
        };
        let epoch = self.store().data_epoch();
        if let Some(ReadValue::Item(item)) = self.reads().get(&key, epoch) {
            return Ok(item);
        }
        let entity = self.entity_record(tenant, instance_id, entity_name).await?;
        let data = self
            .store()
            .get_item(&entity, item_id)
            .await
            .map_err(|e| not_found(e, "item", item_id))?;
        let item: Arc<RawValue> = Arc::from(
            RawValue::from_string(data).map_err(|e| EngineError::Internal(e.to_string()))?,
        );
        self.reads().put(key, epoch, ReadValue::Item(item.clone()));
        Ok(item)
    }

    /// Creates an item; the key field is taken from the item (a UUID is generated when absent).
    pub async fn create_item(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
        mut item: Map<String, Value>,
    ) -> EngineResult<(String, Value)> {
        let entity = self.entity_record(tenant, instance_id, entity_name).await?;
        if entity.kind == "unified" {
            return Err(EngineError::Invalid(format!(
                "entity '{entity_name}' is produced by unification and cannot be written to"
            )));
        }
        let key = match item.get(&entity.key_field) {
            None | Some(Value::Null) => {
                let key = uuid::Uuid::new_v4().to_string();
                item.insert(entity.key_field.clone(), json!(key));
                key
            }
            Some(v) => key_text(&entity.key_field, v)?,
        };
        let data = Value::Object(item);
        refuse_nul(&data)?;
        let text = data.to_string();
        self.store()
            .write_item(&entity, &key, true, |_, mut schema| {
                widen_schema(&mut schema, data.as_object().expect("an object"));
                Ok::<_, EngineError>((text, schema))
            })
            .await??;
        Ok((key, data))
    }

    /// Merges `patch` into an item (fields set to null are removed); the key cannot change.
    pub async fn update_item(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
        item_id: &str,
        patch: Map<String, Value>,
    ) -> EngineResult<Value> {
        let entity = self.entity_record(tenant, instance_id, entity_name).await?;
        if entity.kind == "unified" {
            return Err(EngineError::Invalid(format!(
                "entity '{entity_name}' is produced by unification and cannot be written to"
            )));
        }
        refuse_nul(&Value::Object(patch.clone()))?;
        if let Some(k) = patch.get(&entity.key_field) {
            if key_text(&entity.key_field, k)? != item_id {
                return Err(EngineError::Invalid(format!(
                    "the key field '{}' cannot be changed",
                    entity.key_field
                )));
            }
        }
        let data = self
            .store()
            .write_item(&entity, item_id, false, |current, mut schema| {
                let current = current.expect("an update reads the stored item");
                let mut item: Map<String, Value> = serde_json::from_str(current)
                    .map_err(|e| EngineError::Internal(format!("stored item: {e}")))?;
                for (field, value) in patch {
                    if value.is_null() {
                        item.remove(&field);
                    } else {
                        item.insert(field, value);
                    }
                }
                widen_schema(&mut schema, &item);
                Ok::<_, EngineError>((Value::Object(item).to_string(), schema))
            })
            .await
            .map_err(|e| not_found(e, "item", item_id))??;
        let data: Value =
            serde_json::from_str(&data).map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(data)
    }
}

/// Refuses text with U+0000 anywhere in an item, names or values (the rule of ingestion too).
fn refuse_nul(value: &Value) -> EngineResult<()> {
    if crate::engine::ingest::has_nul(value) {
        return Err(EngineError::Invalid(format!(
            "{}, in a field name or a value",
            crate::engine::ingest::NUL_REFUSED
        )));
    }
    Ok(())
}

/// The key of an item as text; only strings and numbers make keys.
pub fn key_text(key_field: &str, v: &Value) -> EngineResult<String> {
    let text = match v {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        _ => {
            return Err(EngineError::Invalid(format!(
                "key field '{key_field}' must be a string or a number"
            )))
        }
    };
    if text.is_empty() || text.len() > 512 {
        return Err(EngineError::Invalid(format!(
            "key field '{key_field}' must be 1 to 512 characters"
        )));
    }
    Ok(text)
}
