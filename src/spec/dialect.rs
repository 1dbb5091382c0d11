//! Spec step: the Power Automate connector dialect (`x-ms-*`), applied to the OpenAPI 3.1
//! document from small tables. May use the trigger catalog, nothing of `api`.
//!
//! Each table-driven fact lives here once. Handlers declare only what is particular to one
//! operation or field: operation `x-ms-visibility`, `x-ms-pageable` and `x-ms-trigger-hint` in
//! `#[utoipa::path(extensions(...))]`, and a field's `x-ms-summary` only where it differs from
//! the derived display name (step 4). Annotating anything the steps below set is dead text: the
//! table overwrites it.
//!
//! [`apply`] runs on the JSON of the assembled document (a `Modify` over `serde_json::Value`:
//! utoipa's typed `Ref` cannot carry extensions, and several rules below need them next to a
//! `$ref`). It fails loudly: a path or query parameter without a table entry, a table entry
//! naming an operation that does not exist, or a trigger whose path or notification schema is
//! missing is an error, never silently skipped.
//!
//! What it does, in order:
//! 1. **Parameters** ([`PATH_PARAMETERS`], [`QUERY_PARAMETERS`]): `x-ms-summary`, one shared
//!    `description` per path parameter name (Power Automate requires same-named parameters to
//!    be identical across operations), `x-ms-url-encoding: single` on path parameters and the
//!    pickers (`x-ms-dynamic-values`). Operations that *feed* a picker or the dynamic schema
//!    ([`picker_sources`]) get no pickers on their own parameters.
//! 2. **Dynamic item schemas** ([`DYNAMIC_SCHEMAS`]): the item bodies and outputs of the item
//!    operations become *per-operation inline* object schemas carrying `x-ms-dynamic-schema`
//!    from `GetEntitySchema`, fed by the operation's own `instanceId`/`entityName`. They are
//!    inline rather than the shared `Item`/`ItemList` components because the dynamic schema is
//!    a property of the operation (segment members also use `Item` and have no entity
//!    parameter), and because Swagger 2.0 allows nothing next to a `$ref`.
//! 3. **Triggers** ([`crate::webhooks::TRIGGERS`]): `x-ms-trigger: single` on each subscribe
//!    operation, path-level `x-ms-notification-content` referencing the notification schema,
//!    pickers on the subscribe body's `segmentId`/`measureId`/`dataSourceId`, and
//!    `x-ms-visibility: internal` on every `x-ms-notification-url` property.
//! 4. **Property display names**: every schema property without an `x-ms-summary` gets one
//!    derived from its name (`dataSourceId` → "Data Source ID").

use serde_json::{json, Map, Value};

use crate::triggers::Trigger;

/// A table entry names something the document does not have (or vice versa).
#[derive(Debug, thiserror::Error)]
#[error("connector dialect: {0}")]
pub struct DialectError(pub String);

type Result<T> = std::result::Result<T, DialectError>;

fn fail<T>(message: impl Into<String>) -> Result<T> {
    Err(DialectError(message.into()))
}

/// `x-ms-dynamic-values`: a dropdown filled from a list operation.
#[derive(Debug, Clone, Copy)]
pub struct Picker {
    pub operation_id: &'static str,
    /// Parameters of the list operation, each fed by the same-named parameter of the caller.
    pub parameters: &'static [&'static str],
    pub value_collection: &'static str,
    pub value_path: &'static str,
    pub value_title: &'static str,
}

impl Picker {
    pub fn extension(&self) -> Value {
        let parameters: Map<String, Value> = self
            .parameters
            .iter()
            .map(|p| (p.to_string(), json!({ "parameter": p })))
            .collect();
        let mut v = json!({
            "operationId": self.operation_id,
            "value-collection": self.value_collection,
            "value-path": self.value_path,
            "value-title": self.value_title,
        });
        if !parameters.is_empty() {
            v["parameters"] = Value::Object(parameters);
        }
        v
    }
}

/// Dialect of one path parameter name (the same for every operation, as Power Automate requires
/// of same-named parameters).
#[derive(Debug, Clone, Copy)]
pub struct PathParameter {
    pub name: &'static str,
    pub summary: &'static str,
    pub description: &'static str,
    pub picker: Option<Picker>,
}

const fn list(
    operation_id: &'static str,
    parameters: &'static [&'static str],
    value_path: &'static str,
) -> Option<Picker> {
    Some(Picker {
        operation_id,
        parameters,
        value_collection: "value",
        value_path,
        value_title: "name",
    })
}

/// Every path parameter of the API. The names are part of the published contract: renaming one
/// breaks every flow that uses the operation.
pub const PATH_PARAMETERS: &[PathParameter] = &[
    PathParameter {
        name: "instanceId",
        summary: "Instance",
        description: "The instance (workspace) to work in.",
        picker: list("ListInstances", &[], "instanceId"),
    },
    PathParameter {
        name: "entityName",
        summary: "Entity",
        description: "The entity of the instance.",
        picker: list("GetEntities", &["instanceId"], "name"),
    },
    PathParameter {
        name: "itemId",
        summary: "Item key",
        description: "The value of the entity's key field that identifies the item.",
        picker: None,
    },
    PathParameter {
        name: "dataSourceId",
        summary: "Data source",
        description: "The data source of the instance.",
        picker: list("ListDataSources", &["instanceId"], "dataSourceId"),
    },
    PathParameter {
        name: "segmentId",
        summary: "Segment",
        description: "The segment of the instance.",
        picker: list("ListSegments", &["instanceId"], "segmentId"),
    },
    PathParameter {
        name: "measureId",
        summary: "Measure",
        description: "The business measure of the instance.",
        picker: list("ListMeasures", &["instanceId"], "measureId"),
    },
    PathParameter {
        name: "jobId",
        summary: "Job ID",
        description: "The background job.",
        picker: None,
    },
    PathParameter {
        name: "subscriptionId",
        summary: "Subscription ID",
        description: "The trigger subscription.",
        picker: None,
    },
    PathParameter {
        name: "deliveryId",
        summary: "Delivery ID",
        description: "The delivery of one notification to a trigger subscription.",
        picker: None,
    },
];

/// Dialect of one query parameter name: display name and visibility (descriptions stay the
/// handlers' own, they differ per operation).
#[derive(Debug, Clone, Copy)]
pub struct QueryParameter {
    pub name: &'static str,
    pub summary: &'static str,
    pub visibility: Option<&'static str>,
}

/// Every query parameter of the API.
pub const QUERY_PARAMETERS: &[QueryParameter] = &[
    QueryParameter {
        name: "$filter",
        summary: "Filter query",
        visibility: None,
    },
    QueryParameter {
        name: "$select",
        summary: "Select query",
        visibility: Some("advanced"),
    },
    QueryParameter {
        name: "$orderby",
        summary: "Order by",
        visibility: Some("advanced"),
    },
    QueryParameter {
        name: "$top",
        summary: "Top count",
        visibility: None,
    },
    QueryParameter {
        name: "$skip",
        summary: "Skip count",
        visibility: Some("advanced"),
    },
    QueryParameter {
        name: "$count",
        summary: "Include count",
        visibility: Some("advanced"),
    },
    QueryParameter {
        name: "$search",
        summary: "Search query",
        visibility: Some("advanced"),
    },
    QueryParameter {
        name: "$skiptoken",
        summary: "Skip token",
        visibility: Some("internal"),
    },
    QueryParameter {
        name: "status",
        summary: "Delivery status",
        visibility: None,
    },
];

/// Display names of properties that utoipa cannot carry: it drops
/// `#[schema(extensions(...))]` on `Vec` fields (the features go to the items, a `$ref`, which
/// has no extensions). `(component schema, property, x-ms-summary)`.
pub const PROPERTY_SUMMARIES: &[(&str, &str, &str)] = &[
    ("InstanceList", "value", "Instances"),
    ("EntityList", "value", "Entities"),
    ("ItemList", "value", "Items"),
    ("DataSourceList", "value", "Data Sources"),
    ("SegmentList", "value", "Segments"),
    ("MeasureList", "value", "Measures"),
    ("MemberList", "value", "Members"),
];

/// Subscribe-body properties of triggers that get the picker of the same-named path parameter.
pub const TRIGGER_BODY_PICKERS: &[&str] = &["dataSourceId", "segmentId", "measureId"];

/// The operation whose response is the JSON Schema of an entity's items.
pub const ENTITY_SCHEMA_OPERATION: &str = "GetEntitySchema";

/// Where an item schema sits in an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Slot {
    /// The `application/json` request body.
    RequestBody,
    /// The `application/json` body of a response.
    Response(&'static str),
    /// The items of an array property of a response body (`GetItems`' `value`).
    ResponseArray(&'static str, &'static str),
}

/// Item inputs and outputs whose shape is the entity's schema (`x-ms-dynamic-schema`).
pub const DYNAMIC_SCHEMAS: &[(&str, Slot)] = &[
    ("GetItems", Slot::ResponseArray("200", "value")),
    ("GetItem", Slot::Response("200")),
    ("CreateItem", Slot::RequestBody),
    ("CreateItem", Slot::Response("201")),
    ("UpdateItem", Slot::RequestBody),
    ("UpdateItem", Slot::Response("200")),
];

/// The `x-ms-dynamic-schema` value of entity items.
pub fn entity_item_schema() -> Value {
    json!({
        "operationId": ENTITY_SCHEMA_OPERATION,
        "parameters": {
            "instanceId": { "parameter": "instanceId" },
            "entityName": { "parameter": "entityName" },
        },
    })
}

/// Operations that feed a picker or the dynamic schema: their own parameters get no pickers.
pub fn picker_sources() -> Vec<&'static str> {
    let mut ids: Vec<&str> = PATH_PARAMETERS
        .iter()
        .filter_map(|p| p.picker.map(|k| k.operation_id))
        .collect();
    ids.push(ENTITY_SCHEMA_OPERATION);
    ids
}

/// Display names of words that are not simply capitalised.
const WORD_DISPLAY: &[(&str, &str)] = &[
    ("id", "ID"),
    ("ids", "IDs"),
    ("url", "URL"),
    ("csv", "CSV"),
    ("json", "JSON"),
    ("jsonl", "JSON Lines"),
];

/// `dataSourceId` → "Data Source ID" (title case, as Power Automate's string guidance asks of
/// display names).
pub fn display_name(property: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();
    let mut prev_lower = false;
    for c in property.chars() {
        if c == '_' || c == '-' || c == ' ' || c == '$' || c == '@' || c == '.' {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            prev_lower = false;
            continue;
        }
        if c.is_uppercase() && prev_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        prev_lower = c.is_lowercase() || c.is_ascii_digit();
        current.push(c);
    }
    if !current.is_empty() {
        words.push(current);
    }
    words
        .iter()
        .map(|w| {
            let lower = w.to_lowercase();
            match WORD_DISPLAY.iter().find(|(k, _)| *k == lower) {
                Some((_, display)) => display.to_string(),
                None => {
                    let mut chars = lower.chars();
                    chars
                        .next()
                        .map(|first| first.to_uppercase().chain(chars).collect())
                        .unwrap_or_default()
                }
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

const METHODS: [&str; 8] = [
    "get", "put", "post", "delete", "options", "head", "patch", "trace",
];
const SCHEMA_PREFIX: &str = "#/components/schemas/";

/// Applies the whole dialect (module docs) with the triggers of [`crate::webhooks::TRIGGERS`].
pub fn apply(doc: &mut Value) -> Result<()> {
    let names: Vec<(Trigger, &str, String)> = crate::triggers::TRIGGERS
        .iter()
        .map(|d| (d.trigger, d.path, d.payload_name()))
        .collect();
    let table: Vec<(Trigger, &str, &str)> =
        names.iter().map(|(t, p, s)| (*t, *p, s.as_str())).collect();
    apply_with_triggers(doc, &table)
}

/// [`apply`] with an explicit trigger table (tests use a fake one).
pub fn apply_with_triggers(doc: &mut Value, triggers: &[(Trigger, &str, &str)]) -> Result<()> {
    parameters(doc)?;
    property_table(doc)?;
    dynamic_schemas(doc)?;
    apply_triggers(doc, triggers)?;
    property_summaries(doc);
    Ok(())
}

/// `(path, method, operation)` of every operation, mutably.
fn operations_mut(doc: &mut Value) -> Vec<(String, String, &mut Map<String, Value>)> {
    let mut out = Vec::new();
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        for (path, item) in paths.iter_mut() {
            let Some(item) = item.as_object_mut() else {
                continue;
            };
            for (method, op) in item.iter_mut() {
                if METHODS.contains(&method.as_str()) {
                    if let Some(op) = op.as_object_mut() {
                        out.push((path.clone(), method.clone(), op));
                    }
                }
            }
        }
    }
    out
}

fn operation_id(op: &Map<String, Value>) -> &str {
    op.get("operationId")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

fn set(o: &mut Map<String, Value>, key: &str, value: Value) {
    o.insert(key.to_owned(), value);
}

fn parameters(doc: &mut Value) -> Result<()> {
    let sources = picker_sources();
    for (path, method, op) in operations_mut(doc) {
        let feeds_picker = sources.contains(&operation_id(op));
        let id = operation_id(op).to_owned();
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for param in params.iter_mut() {
            let Some(p) = param.as_object_mut() else {
                continue;
            };
            let name = p
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            let location = p.get("in").and_then(Value::as_str).unwrap_or_default();
            match location {
                "path" => {
                    let Some(entry) = PATH_PARAMETERS.iter().find(|e| e.name == name) else {
                        return fail(format!(
                            "path parameter `{name}` of {id} ({method} {path}) has no entry in PATH_PARAMETERS"
                        ));
                    };
                    set(p, "x-ms-summary", json!(entry.summary));
                    set(p, "description", json!(entry.description));
                    set(p, "x-ms-url-encoding", json!("single"));
                    match entry.picker {
                        Some(picker) if !feeds_picker => {
                            set(p, "x-ms-dynamic-values", picker.extension())
                        }
                        _ => {
                            p.remove("x-ms-dynamic-values");
                        }
                    }
                }
                "query" => {
                    let Some(entry) = QUERY_PARAMETERS.iter().find(|e| e.name == name) else {
                        return fail(format!(
                            "query parameter `{name}` of {id} ({method} {path}) has no entry in QUERY_PARAMETERS"
                        ));
                    };
                    set(p, "x-ms-summary", json!(entry.summary));
                    if let Some(v) = entry.visibility {
                        set(p, "x-ms-visibility", json!(v));
                    }
                }
                other => {
                    return fail(format!(
                        "{other} parameter `{name}` of {id} has no connector dialect"
                    ))
                }
            }
        }
    }
    Ok(())
}

/// The inline object schema of an entity item: the component's description plus the dynamic
/// schema.
fn item_schema(description: &str) -> Value {
    json!({
        "type": "object",
        "description": description,
        "x-ms-dynamic-schema": entity_item_schema(),
    })
}

fn component<'a>(doc: &'a Value, reference: &str) -> Option<&'a Value> {
    let name = reference.strip_prefix(SCHEMA_PREFIX)?;
    doc.pointer(&format!("/components/schemas/{name}"))
}

/// Follows a `$ref` to a component (one level) and returns an owned copy.
fn resolved(doc: &Value, schema: &Value) -> Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => component(doc, r).cloned().unwrap_or(Value::Null),
        None => schema.clone(),
    }
}

fn description_of(doc: &Value, schema: &Value, fallback: &str) -> String {
    resolved(doc, schema)
        .get("description")
        .or_else(|| schema.get("description"))
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_owned()
}

fn escape(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

/// JSON pointer of the operation with this operationId.
fn operation_pointer(doc: &Value, id: &str) -> Result<String> {
    for (path, item) in doc
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        for (method, op) in item.as_object().into_iter().flatten() {
            if METHODS.contains(&method.as_str()) && op.get("operationId") == Some(&json!(id)) {
                return Ok(format!("/paths/{}/{method}", escape(path)));
            }
        }
    }
    fail(format!("no operation `{id}`"))
}

fn parameter_names(op: &Value) -> Vec<&str> {
    op.get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("name").and_then(Value::as_str))
        .collect()
}

fn dynamic_schemas(doc: &mut Value) -> Result<()> {
    operation_pointer(doc, ENTITY_SCHEMA_OPERATION)?;
    for (id, slot) in DYNAMIC_SCHEMAS {
        let op_ptr = operation_pointer(doc, id)?;
        let op = doc.pointer(&op_ptr).cloned().unwrap_or_default();
        for needed in ["instanceId", "entityName"] {
            if !parameter_names(&op).contains(&needed) {
                return fail(format!(
                    "{id} has no `{needed}` parameter for the dynamic schema"
                ));
            }
        }
        let ptr = match slot {
            Slot::RequestBody => format!("{op_ptr}/requestBody/content/application~1json/schema"),
            Slot::Response(code) | Slot::ResponseArray(code, _) => {
                format!("{op_ptr}/responses/{code}/content/application~1json/schema")
            }
        };
        let Some(schema) = doc.pointer(&ptr) else {
            return fail(format!("{id} has no JSON schema at {ptr}"));
        };
        let new = match slot {
            Slot::RequestBody | Slot::Response(_) => {
                item_schema(&description_of(doc, schema, "The item's fields."))
            }
            Slot::ResponseArray(_, property) => {
                let mut inline = resolved(doc, schema);
                let Some(items) = inline.pointer_mut(&format!("/properties/{property}/items"))
                else {
                    return fail(format!("{id}: the response has no array `{property}`"));
                };
                let description = description_of(doc, items, "An item.");
                *items = item_schema(&description);
                inline
            }
        };
        *doc.pointer_mut(&ptr).expect("checked above") = new;
    }
    Ok(())
}

/// `x-ms-trigger`, path-level `x-ms-notification-content`, subscribe-body pickers and internal
/// notification URLs, from the trigger table `(trigger, subscribe path, notification schema)`.
pub fn apply_triggers(doc: &mut Value, triggers: &[(Trigger, &str, &str)]) -> Result<()> {
    for (trigger, path, schema_name) in triggers {
        let id = trigger.as_str();
        let Some(schema) = doc.pointer(&format!("/components/schemas/{schema_name}")) else {
            return fail(format!(
                "notification schema `{schema_name}` of {id} is not in the components; give it as the payload of its trigger catalog entry"
            ));
        };
        let description = schema
            .get("description")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("The notification of {id}."));
        let Some(item) = doc
            .get_mut("paths")
            .and_then(|p| p.get_mut(*path))
            .and_then(Value::as_object_mut)
        else {
            return fail(format!(
                "the subscribe path `{path}` of {id} is not in the document"
            ));
        };
        let Some(op) = item.get_mut("post").and_then(Value::as_object_mut) else {
            return fail(format!("`{path}` has no POST operation for {id}"));
        };
        if operation_id(op) != id {
            return fail(format!(
                "POST {path} is `{}`, the trigger table says `{id}`",
                operation_id(op)
            ));
        }
        set(op, "x-ms-trigger", json!("single"));
        let body_ref = op
            .get("requestBody")
            .and_then(|b| b.pointer("/content/application~1json/schema/$ref"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        item.insert(
            "x-ms-notification-content".into(),
            json!({
                "description": description,
                "schema": { "$ref": format!("{SCHEMA_PREFIX}{schema_name}") },
            }),
        );
        // The subscribe body: a component (modified in place) or an inline schema.
        let body_pointer = match &body_ref {
            Some(r) => match r.strip_prefix(SCHEMA_PREFIX) {
                Some(name) => format!("/components/schemas/{name}"),
                None => return fail(format!("{id}: unsupported body reference `{r}`")),
            },
            None => format!(
                "/paths/{}/post/requestBody/content/application~1json/schema",
                escape(path)
            ),
        };
        let Some(body) = doc.pointer_mut(&body_pointer) else {
            return fail(format!("{id} has no JSON request body"));
        };
        subscribe_body(body);
    }
    Ok(())
}

fn subscribe_body(body: &mut Value) {
    let Some(props) = body.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (name, prop) in props.iter_mut() {
        let Some(p) = prop.as_object_mut() else {
            continue;
        };
        if p.get("x-ms-notification-url") == Some(&Value::Bool(true)) {
            set(p, "x-ms-visibility", json!("internal"));
        }
        if !TRIGGER_BODY_PICKERS.contains(&name.as_str()) {
            continue;
        }
        if let Some(entry) = PATH_PARAMETERS.iter().find(|e| e.name == name) {
            set(p, "x-ms-summary", json!(entry.summary));
            p.entry("description")
                .or_insert_with(|| json!(entry.description));
            if let Some(picker) = entry.picker {
                set(p, "x-ms-dynamic-values", picker.extension());
            }
        }
    }
}

fn property_table(doc: &mut Value) -> Result<()> {
    for (schema, property, summary) in PROPERTY_SUMMARIES {
        let pointer = format!("/components/schemas/{schema}/properties/{property}");
        match doc.pointer_mut(&pointer).and_then(Value::as_object_mut) {
            Some(p) => set(p, "x-ms-summary", json!(summary)),
            None => return fail(format!("PROPERTY_SUMMARIES: no property {pointer}")),
        }
    }
    Ok(())
}

/// Adds a derived `x-ms-summary` to every schema property that has none, everywhere.
fn property_summaries(doc: &mut Value) {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Object(props)) = o.get_mut("properties") {
                    for (name, prop) in props.iter_mut() {
                        if let Value::Object(p) = prop {
                            p.entry("x-ms-summary")
                                .or_insert_with(|| json!(display_name(name)));
                        }
                    }
                }
                for (k, child) in o.iter_mut() {
                    // Never treat example values as schemas.
                    if k != "example" && k != "examples" && k != "default" && k != "enum" {
                        walk(child);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    for section in ["/components/schemas", "/paths"] {
        if let Some(v) = doc.pointer_mut(section) {
            walk(v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> Value {
        let mut d = fake_doc();
        for (schema, property, _) in PROPERTY_SUMMARIES {
            let schemas = d["components"]["schemas"].as_object_mut().unwrap();
            schemas.entry(schema.to_string()).or_insert_with(
                || json!({"type": "object", "properties": {*property: {"type": "array", "items": {}}}}),
            );
        }
        d
    }

    fn fake_doc() -> Value {
        json!({
            "openapi": "3.1.0",
            "paths": {
                "/instances": { "get": { "operationId": "ListInstances", "responses": {} } },
                "/instances/{instanceId}/entities": { "get": { "operationId": "GetEntities",
                    "parameters": [ { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } } ],
                    "responses": {} } },
                "/instances/{instanceId}/entities/{entityName}/schema": { "get": { "operationId": "GetEntitySchema",
                    "parameters": [
                        { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } },
                        { "name": "entityName", "in": "path", "required": true, "schema": { "type": "string" } } ],
                    "responses": {} } },
                "/instances/{instanceId}/entities/{entityName}/items": {
                    "get": { "operationId": "GetItems",
                        "parameters": [
                            { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "entityName", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "$top", "in": "query", "schema": { "type": "integer" } } ],
                        "responses": { "200": { "description": "A page.", "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/ItemList" } } } } } },
                    "post": { "operationId": "CreateItem",
                        "parameters": [
                            { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "entityName", "in": "path", "required": true, "schema": { "type": "string" } } ],
                        "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Item" } } } },
                        "responses": { "201": { "description": "Created.", "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Item" } } } } } } },
                "/instances/{instanceId}/entities/{entityName}/items/{itemId}": {
                    "get": { "operationId": "GetItem",
                        "parameters": [
                            { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "entityName", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "itemId", "in": "path", "required": true, "schema": { "type": "string" } } ],
                        "responses": { "200": { "description": "The item.", "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Item" } } } } } },
                    "patch": { "operationId": "UpdateItem",
                        "parameters": [
                            { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "entityName", "in": "path", "required": true, "schema": { "type": "string" } },
                            { "name": "itemId", "in": "path", "required": true, "schema": { "type": "string" } } ],
                        "requestBody": { "content": { "application/json": { "schema": { "$ref": "#/components/schemas/Item" } } } },
                        "responses": { "200": { "description": "The item.", "content": { "application/json": {
                            "schema": { "$ref": "#/components/schemas/Item" } } } } } } },
                "/instances/{instanceId}/hooks/segment-threshold": { "post": { "operationId": "OnSegmentThresholdCrossed",
                    "parameters": [ { "name": "instanceId", "in": "path", "required": true, "schema": { "type": "string" } } ],
                    "requestBody": { "required": true, "content": { "application/json": {
                        "schema": { "$ref": "#/components/schemas/SegmentSubscribe" } } } },
                    "responses": { "201": { "description": "Subscribed." } } } }
            },
            "components": { "schemas": {
                "Item": { "type": "object", "description": "An item." },
                "ItemList": { "type": "object", "description": "A page of items.", "properties": {
                    "value": { "type": "array", "items": { "$ref": "#/components/schemas/Item" } },
                    "nextLink": { "type": "string", "description": "Next page." } } },
                "SegmentSubscribe": { "type": "object", "required": ["notificationUrl", "segmentId"], "properties": {
                    "notificationUrl": { "type": "string", "x-ms-notification-url": true },
                    "segmentId": { "type": "string", "description": "The segment to watch." },
                    "threshold": { "type": "integer", "description": "Member count." } } },
                "SegmentThresholdEvent": { "type": "object", "description": "A segment crossed its threshold.",
                    "properties": { "eventId": { "type": "string", "description": "Stable event ID." } } }
            } }
        })
    }

    const FAKE_TRIGGERS: &[(Trigger, &str, &str)] = &[(
        Trigger::OnSegmentThresholdCrossed,
        "/instances/{instanceId}/hooks/segment-threshold",
        "SegmentThresholdEvent",
    )];

    #[test]
    fn display_names_are_title_case_with_acronyms() {
        assert_eq!(display_name("dataSourceId"), "Data Source ID");
        assert_eq!(display_name("nextLink"), "Next Link");
        assert_eq!(display_name("name"), "Name");
        assert_eq!(display_name("notificationUrl"), "Notification URL");
        assert_eq!(display_name("rowsIngested"), "Rows Ingested");
        assert_eq!(display_name("$top"), "Top");
        assert_eq!(display_name("key_field"), "Key Field");
    }

    #[test]
    fn path_parameters_get_shared_dialect_and_pickers_except_on_sources() {
        let mut d = doc();
        apply_with_triggers(&mut d, FAKE_TRIGGERS).unwrap();
        let get_item =
            &d["paths"]["/instances/{instanceId}/entities/{entityName}/items/{itemId}"]["get"];
        let instance = &get_item["parameters"][0];
        assert_eq!(instance["x-ms-summary"], "Instance");
        assert_eq!(instance["x-ms-url-encoding"], "single");
        assert_eq!(
            instance["x-ms-dynamic-values"],
            json!({"operationId": "ListInstances", "value-collection": "value", "value-path": "instanceId", "value-title": "name"})
        );
        assert_eq!(
            get_item["parameters"][1]["x-ms-dynamic-values"],
            json!({"operationId": "GetEntities", "parameters": {"instanceId": {"parameter": "instanceId"}},
                   "value-collection": "value", "value-path": "name", "value-title": "name"})
        );
        assert!(get_item["parameters"][2]
            .get("x-ms-dynamic-values")
            .is_none());
        // GetEntities feeds the entity picker and GetEntitySchema the dynamic schema.
        for path in [
            "/instances/{instanceId}/entities",
            "/instances/{instanceId}/entities/{entityName}/schema",
        ] {
            let p = &d["paths"][path]["get"]["parameters"][0];
            assert!(p.get("x-ms-dynamic-values").is_none(), "{path}");
            assert_eq!(
                p["description"], instance["description"],
                "same-named parameters share one description"
            );
            assert_eq!(p["x-ms-url-encoding"], "single");
        }
        let top = &d["paths"]["/instances/{instanceId}/entities/{entityName}/items"]["get"]
            ["parameters"][2];
        assert_eq!(top["x-ms-summary"], "Top count");
        assert!(top.get("x-ms-url-encoding").is_none());
    }

    #[test]
    fn item_operations_get_inline_dynamic_schemas() {
        let mut d = doc();
        apply_with_triggers(&mut d, FAKE_TRIGGERS).unwrap();
        let items = "/instances/{instanceId}/entities/{entityName}/items";
        let expected = entity_item_schema();
        let page =
            &d["paths"][items]["get"]["responses"]["200"]["content"]["application/json"]["schema"];
        assert_eq!(
            page["properties"]["value"]["items"]["x-ms-dynamic-schema"],
            expected
        );
        assert_eq!(page["properties"]["nextLink"]["x-ms-summary"], "Next Link");
        assert_eq!(page["properties"]["value"]["x-ms-summary"], "Items");
        let create = &d["paths"][items]["post"];
        assert_eq!(
            create["requestBody"]["content"]["application/json"]["schema"],
            json!({"type": "object", "description": "An item.", "x-ms-dynamic-schema": expected})
        );
        assert_eq!(
            create["responses"]["201"]["content"]["application/json"]["schema"]
                ["x-ms-dynamic-schema"],
            expected
        );
        // The shared components stay as they were (segment members use them).
        assert_eq!(
            d["components"]["schemas"]["Item"],
            json!({"type": "object", "description": "An item."})
        );
        assert_eq!(
            d["components"]["schemas"]["ItemList"]["properties"]["value"]["items"],
            json!({"$ref": "#/components/schemas/Item"})
        );
    }

    #[test]
    fn triggers_get_notification_content_pickers_and_internal_urls() {
        let mut d = doc();
        apply_with_triggers(&mut d, FAKE_TRIGGERS).unwrap();
        let item = &d["paths"]["/instances/{instanceId}/hooks/segment-threshold"];
        assert_eq!(
            item["x-ms-notification-content"],
            json!({"description": "A segment crossed its threshold.",
                   "schema": {"$ref": "#/components/schemas/SegmentThresholdEvent"}})
        );
        assert_eq!(item["post"]["x-ms-trigger"], "single");
        let body = &d["components"]["schemas"]["SegmentSubscribe"]["properties"];
        assert_eq!(body["notificationUrl"]["x-ms-visibility"], "internal");
        assert_eq!(
            body["segmentId"]["x-ms-dynamic-values"]["operationId"],
            "ListSegments"
        );
        assert_eq!(body["segmentId"]["description"], "The segment to watch.");
        assert_eq!(body["segmentId"]["x-ms-summary"], "Segment");
        assert!(body["threshold"].get("x-ms-dynamic-values").is_none());
        assert_eq!(body["threshold"]["x-ms-summary"], "Threshold");
        // The notification schema's properties get display names like any other schema.
        assert_eq!(
            d["components"]["schemas"]["SegmentThresholdEvent"]["properties"]["eventId"]
                ["x-ms-summary"],
            "Event ID"
        );
    }

    #[test]
    fn missing_things_fail_loudly() {
        let mut d = doc();
        let err = apply_with_triggers(
            &mut d,
            &[(
                Trigger::OnSegmentThresholdCrossed,
                "/instances/{instanceId}/hooks/segment-threshold",
                "Nope",
            )],
        )
        .unwrap_err();
        assert!(err.to_string().contains("trigger catalog entry"), "{err}");

        let mut d = doc();
        let err = apply_with_triggers(
            &mut d,
            &[(
                Trigger::OnMeasureThresholdCrossed,
                "/instances/{instanceId}/hooks/segment-threshold",
                "SegmentThresholdEvent",
            )],
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("OnMeasureThresholdCrossed"),
            "{err}"
        );

        let mut d = doc();
        d["paths"]["/instances"]["get"]["parameters"] = json!([{ "name": "tenant", "in": "path", "required": true, "schema": { "type": "string" } }]);
        let err = apply_with_triggers(&mut d, &[]).unwrap_err();
        assert!(err.to_string().contains("PATH_PARAMETERS"), "{err}");

        let mut d = doc();
        d["paths"]["/instances"]["get"]["parameters"] =
            json!([{ "name": "q", "in": "query", "schema": { "type": "string" } }]);
        let err = apply_with_triggers(&mut d, &[]).unwrap_err();
        assert!(err.to_string().contains("QUERY_PARAMETERS"), "{err}");
    }
}
