//! Entities and items: the Customer Insights connector's own actions.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use std::sync::Arc;

use super::odata;
pub use super::reads::{ItemsPage, ItemsQuery, NextPage};
use super::reads::{ReadKey, ReadValue};
use super::schema_inference::{check_item, query_type, widen_schema};
use super::{not_found, Engine, EngineError, EngineResult, TenantId};
use crate::item_query::{Filter, ItemQuery, Type};
use crate::store::entities::EntityRecord;

/// Page size of segment member pages without `$top`.
pub const DEFAULT_TOP: i64 = 100;
/// The largest page: a `$top` above it is served in pages of this size.
pub const MAX_TOP: i64 = 1000;
/// The largest `$top` of `GetItems` (Power Automate's pagination ceiling).
pub const MAX_ITEMS_TOP: i64 = 100_000;
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

/// The entity's fields with the types its schema states (the key field is always one).
pub(crate) fn columns(entity: &EntityRecord) -> odata::Columns {
    let mut fields: std::collections::BTreeMap<String, Type> = entity
        .schema
        .get("properties")
        .and_then(Value::as_object)
        .map(|properties| {
            properties
                .iter()
                .map(|(name, p)| (name.clone(), query_type(p)))
                .collect()
        })
        .unwrap_or_default();
    fields
        .entry(entity.key_field.clone())
        .or_insert(Type::String);
    odata::Columns {
        fields,
        any_field: false,
    }
}

fn odata_error(option: &str, e: odata::ODataError) -> EngineError {
    EngineError::Invalid(format!("invalid {option}: {e}"))
}

/// Parses and type-checks a filter over the entity's fields.
pub(crate) fn parse_filter_for(
    entity: &EntityRecord,
    text: &str,
    option: &str,
) -> EngineResult<Filter> {
    let expr = odata::parse_filter(text, &columns(entity)).map_err(|e| odata_error(option, e))?;
    Ok(Filter::new(expr))
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
            options: q.clone(),
        };
        let epoch = self.store().data_epoch();
        if let Some(ReadValue::Page(page)) = self.reads().get(&key, epoch) {
            return Ok(page);
        }
        let (page, uses_clock) = self.read_items(tenant, instance_id, entity_name, q).await?;
        let page = Arc::new(page);
        // A filter on `now()` answers differently without the data changing.
        if !uses_clock {
            self.reads().put(key, epoch, ReadValue::Page(page.clone()));
        }
        Ok(page)
    }

    /// A page of items, and whether the query reads the clock.
    async fn read_items(
        &self,
        tenant: &TenantId,
        instance_id: &str,
        entity_name: &str,
        q: &ItemsQuery,
    ) -> EngineResult<(ItemsPage, bool)> {
        let entity = self.entity_record(tenant, instance_id, entity_name).await?;
        if let Some(top) = q.top {
            if !(0..=MAX_ITEMS_TOP).contains(&top) {
                return Err(EngineError::Invalid(format!(
                    "invalid $top: {top}; it must be between 0 and {MAX_ITEMS_TOP}"
                )));
            }
        }
        let skip = q.skip.unwrap_or(0);
        if skip < 0 {
            return Err(EngineError::Invalid(
                "invalid $skip: it must not be negative".into(),
            ));
        }
        let page_size = q
            .max_page_size
            .unwrap_or(MAX_TOP)
            .clamp(1, MAX_TOP)
            .min(q.top.unwrap_or(MAX_TOP));
        let columns = columns(&entity);
        let mut query = ItemQuery {
            limit: page_size + 1,
            offset: skip,
            after_key: q.skiptoken.as_deref().map(key_of_skiptoken).transpose()?,
            ..ItemQuery::default()
        };
        if let Some(text) = q.filter.as_deref() {
            query.filter = Some(parse_filter_for(&entity, text, "$filter")?);
        }
        if let Some(text) = q.orderby.as_deref() {
            query.order_by =
                odata::parse_orderby(text, &columns).map_err(|e| odata_error("$orderby", e))?;
        }
        if let Some(text) = q.search.as_deref() {
            let search = odata::parse_search(text).map_err(|e| odata_error("$search", e))?;
            let strings = columns
                .fields
                .iter()
                .filter(|(_, t)| **t == Type::String)
                .map(|(name, _)| name.clone())
                .collect();
            query.search = Some((search, strings));
        }
        let select = match q.select.as_deref() {
            Some(text) => {
                odata::parse_select(text, &columns).map_err(|e| odata_error("$select", e))?
            }
            None => None,
        };
        if query.after_key.is_some() && !query.order_by.is_empty() {
            return Err(EngineError::Invalid(
                "invalid $skiptoken: it continues pages in key order and cannot be combined with $orderby".into(),
            ));
        }
        let uses_clock = query.filter.as_ref().is_some_and(|f| f.expr.uses_now())
            || query.order_by.iter().any(|k| k.expr.uses_now());
        let count = if q.count {
            let everything = ItemQuery {
                limit: i64::MAX,
                offset: 0,
                after_key: None,
                order_by: Vec::new(),
                ..query.clone()
            };
            Some(self.store().count_items(&entity, &everything).await?)
        } else {
            None
        };
        let mut rows = if page_size == 0 || q.top == Some(0) {
            Vec::new()
        } else {
            self.store().query_items(&entity, &query).await?
        };
        let has_more = rows.len() as i64 > page_size;
        rows.truncate(page_size as usize);
        let remaining_top = q.top.map(|top| top - rows.len() as i64);
        let has_more = has_more && remaining_top.is_none_or(|r| r > 0);
        // Pages in key order continue after their last key (keyset: page 1,000 costs what the
        // first does); ordered pages continue at an offset.
        let next = match rows.last() {
            Some((last_key, _)) if has_more && query.order_by.is_empty() => {
                Some(NextPage::AfterKey(last_key.clone()))
            }
            _ if has_more => Some(NextPage::Skip(skip + rows.len() as i64)),
            _ => None,
        };
        let items: Vec<Box<RawValue>> = rows
            .into_iter()
            .map(|(_, data)| match &select {
                // Items are stored as the serializer wrote them, so passing the text through
                // gives the same bytes as parsing and serializing again.
                None => raw_object(data),
                // Every selected field is present: null where the item has none.
                Some(fields) => {
                    let mut item = match serde_json::from_str::<Value>(&data) {
                        Ok(Value::Object(map)) => map,
                        _ => Map::new(),
                    };
                    let projected: Map<String, Value> = fields
                        .iter()
                        .map(|f| (f.clone(), item.remove(f).unwrap_or(Value::Null)))
                        .collect();
                    raw_object(Value::Object(projected).to_string())
                }
            })
            .collect();
        // One JSON array of the (already checked) items, written without a second parse.
        let items = serde_json::value::to_raw_value(&items)
            .map_err(|e| EngineError::Internal(format!("page of items: {e}")))?;
        Ok((
            ItemsPage {
                items: Arc::from(items),
                next,
                remaining_top,
                count,
                rendered: std::sync::OnceLock::new(),
            },
            uses_clock,
        ))
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
            Some(v) => {
                let key = key_text(&entity.key_field, v)?;
                // The item holds the key it is addressed by (trimmed).
                if v.as_str().is_some_and(|s| s != key) {
                    item.insert(entity.key_field.clone(), json!(key));
                }
                key
            }
        };
        let data = Value::Object(item);
        refuse_nul(&data)?;
        let text = data.to_string();
        self.store()
            .write_item(&entity, &key, true, |_, mut schema| {
                let item = data.as_object().expect("an object");
                check_item(&schema, item).map_err(EngineError::Invalid)?;
                widen_schema(&mut schema, item);
                check_field_count(&schema)?;
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
                check_item(&schema, &patch).map_err(EngineError::Invalid)?;
                for (field, value) in patch {
                    if value.is_null() {
                        item.remove(&field);
                    } else {
                        item.insert(field, value);
                    }
                }
                widen_schema(&mut schema, &item);
                check_field_count(&schema)?;
                Ok::<_, EngineError>((Value::Object(item).to_string(), schema))
            })
            .await
            .map_err(|e| not_found(e, "item", item_id))??;
        let data: Value =
            serde_json::from_str(&data).map_err(|e| EngineError::Internal(e.to_string()))?;
        Ok(data)
    }
}

/// Refuses a write that would give the entity more fields than [`MAX_COLUMNS`] (an item has
/// at most as many).
fn check_field_count(schema: &Value) -> EngineResult<()> {
    use crate::engine::ingest::MAX_COLUMNS;
    let fields = schema
        .get("properties")
        .and_then(Value::as_object)
        .map_or(0, Map::len);
    if fields > MAX_COLUMNS {
        return Err(EngineError::Invalid(format!(
            "an entity has at most {MAX_COLUMNS} fields; this write would give it {fields}"
        )));
    }
    Ok(())
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
    if crate::engine::ingest::is_path_step(&text) {
        return Err(EngineError::Invalid(format!(
            "key field '{key_field}': '{text}' cannot be addressed in a URL ('.' and '..' are path steps)"
        )));
    }
    Ok(text)
}
