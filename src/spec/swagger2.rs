//! Spec step: OpenAPI 3.1 (as emitted by utoipa 6) → Swagger 2.0 converter for the Power
//! Automate connector definition (`apiDefinition.swagger.json`). Depends on nothing in the crate.
//!
//! The converter handles the subset of OpenAPI 3.1 that utoipa emits for this service and
//! **fails loudly** (`ConvertError::Unsupported`, carrying the JSON pointer of the offending
//! construct in the *input* document) on anything it cannot express in Swagger 2.0. Nothing is
//! dropped silently; the only deliberate, documented losses are:
//!
//! * `servers` — replaced by the `public_url` argument (`host`/`basePath`/`schemes`).
//! * `info.license` with an empty name (utoipa's default when Cargo.toml has no license);
//!   `info.license.identifier` when it equals `name` (utoipa copies `CARGO_PKG_LICENSE` into both).
//! * `$schema`, `$id`, `$comment` keywords.
//! * `examples` (array) keeps only its first item, as `example`.
//! * `propertyNames: {"type": "string"}` (utoipa's `HashMap<String, _>`): always true for JSON
//!   object keys. Any other `propertyNames` is `Unsupported`.
//! * `deprecated: false` / `writeOnly: false` / `allowReserved: false` (defaults, no information).
//! * **Nullability of `Option<SomeStruct>`**: utoipa emits `oneOf: [{"type":"null"}, {"$ref": …}]`.
//!   Swagger 2.0 forbids siblings next to `$ref`, so this becomes `{"$ref": …}` (or the `allOf`
//!   wrapper below when there are other siblings) *without* `x-nullable`. A `null` value for such
//!   a property may therefore be rejected by strict clients; use an inline schema if that matters.
//!   (Inline unions `oneOf: [{"type":"null"}, {inline schema}]` keep nullability as `x-nullable`.)
//! * Response media types other than `application/json`/`application/problem+json` that carry
//!   **no** schema (e.g. a bare `text/plain`) are ignored; with a schema they are `Unsupported`.
//!   When both JSON media types are present, the `application/json` schema wins.
//!
//! `$ref` with sibling keywords (allowed in 3.1, rejected by 2.0 validators) is rewritten to
//! `{"allOf": [{"$ref": …}], <siblings…>}` so descriptions and `x-ms-*` annotations survive.
//!
//! Output is deterministic: `serde_json::Map` is a `BTreeMap` (the `preserve_order` feature must
//! stay off), so keys are emitted sorted.

use serde_json::{json, Map, Value};

/// Error returned by [`convert`].
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    /// A construct of the input document has no faithful Swagger 2.0 representation.
    #[error("unsupported OpenAPI construct at `{pointer}`: {reason}")]
    Unsupported {
        /// JSON pointer (RFC 6901) into the input OpenAPI document.
        pointer: String,
        reason: String,
    },
    /// The public URL cannot be turned into `host`/`basePath`/`schemes`.
    #[error("invalid public URL: {0}")]
    InvalidPublicUrl(String),
}

type Result<T> = std::result::Result<T, ConvertError>;

const SCHEMA_REF_PREFIX: &str = "#/components/schemas/";
const DEFINITIONS_REF_PREFIX: &str = "#/definitions/";
const JSON_MEDIA: &str = "application/json";
const PROBLEM_JSON_MEDIA: &str = "application/problem+json";
const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];
const JSON_TYPES: [&str; 6] = ["string", "number", "integer", "boolean", "array", "object"];

/// Converts an OpenAPI 3.0/3.1 document (`serde_json::Value` of utoipa's `OpenApi`) into a
/// Swagger 2.0 document served at `public_url` (e.g. `https://ci.example.com:8443/base`).
pub fn convert(openapi: &Value, public_url: &str) -> Result<Value> {
    let (host, base_path, scheme) = parse_public_url(public_url)?;
    let root = as_object(openapi, "")?;
    match root.get("openapi") {
        Some(Value::String(v)) if v.starts_with("3.1.") || v.starts_with("3.0.") => {}
        _ => return unsupported("/openapi", "expected an OpenAPI 3.0.x or 3.1.x document"),
    }

    let mut out = Map::new();
    out.insert("swagger".into(), json!("2.0"));
    out.insert("host".into(), json!(host));
    out.insert("basePath".into(), json!(base_path));
    out.insert("schemes".into(), json!([scheme]));
    out.insert("consumes".into(), json!([JSON_MEDIA]));
    out.insert("produces".into(), json!([JSON_MEDIA]));
    out.insert("paths".into(), json!({}));

    for (key, value) in root {
        let ptr = child("", key);
        match key.as_str() {
            "openapi" => {}
            // Replaced by `public_url` (documented in the module docs).
            "servers" => {}
            "info" => {
                out.insert("info".into(), convert_info(value, &ptr)?);
            }
            "paths" => {
                out.insert("paths".into(), convert_paths(value, &ptr)?);
            }
            "components" => convert_components(value, &ptr, &mut out)?,
            "security" | "tags" | "externalDocs" => {
                out.insert(key.clone(), rewrite_refs(value, &ptr)?);
            }
            "webhooks" => {
                if !is_empty_container(value) {
                    return unsupported(
                        &ptr,
                        "OpenAPI 3.1 `webhooks` have no Swagger 2.0 equivalent",
                    );
                }
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), rewrite_refs(value, &ptr)?);
            }
            _ => {
                return unsupported(
                    &ptr,
                    format!("top-level key `{key}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// helpers

fn unsupported<T>(pointer: &str, reason: impl Into<String>) -> Result<T> {
    Err(ConvertError::Unsupported {
        pointer: pointer.to_owned(),
        reason: reason.into(),
    })
}

/// Appends one reference token (RFC 6901 escaped) to a JSON pointer.
fn child(ptr: &str, token: &str) -> String {
    format!("{ptr}/{}", token.replace('~', "~0").replace('/', "~1"))
}

fn index(ptr: &str, i: usize) -> String {
    format!("{ptr}/{i}")
}

fn as_object<'a>(v: &'a Value, ptr: &str) -> Result<&'a Map<String, Value>> {
    v.as_object()
        .map_or_else(|| unsupported(ptr, "expected a JSON object"), Ok)
}

fn as_array<'a>(v: &'a Value, ptr: &str) -> Result<&'a Vec<Value>> {
    v.as_array()
        .map_or_else(|| unsupported(ptr, "expected a JSON array"), Ok)
}

fn as_bool(v: &Value, ptr: &str) -> Result<bool> {
    v.as_bool()
        .map_or_else(|| unsupported(ptr, "expected a boolean"), Ok)
}

fn as_str<'a>(v: &'a Value, ptr: &str) -> Result<&'a str> {
    v.as_str()
        .map_or_else(|| unsupported(ptr, "expected a string"), Ok)
}

fn is_extension(key: &str) -> bool {
    key.starts_with("x-")
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(o) => o.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Null => true,
        _ => false,
    }
}

/// `true` for keys that only restate a default and carry no information when `false`.
fn is_false(v: &Value) -> bool {
    v == &Value::Bool(false)
}

fn parse_public_url(public_url: &str) -> Result<(String, String, String)> {
    let bad = |why: &str| ConvertError::InvalidPublicUrl(format!("`{public_url}`: {why}"));
    let url = url::Url::parse(public_url).map_err(|e| bad(&e.to_string()))?;
    let scheme = url.scheme().to_owned();
    if scheme != "http" && scheme != "https" {
        return Err(bad("scheme must be http or https"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("must not contain credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("must not contain a query or fragment"));
    }
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| bad("missing host"))?;
    let host = match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    };
    let path = url.path().trim_end_matches('/');
    let base_path = if path.is_empty() { "/" } else { path }.to_owned();
    Ok((host, base_path, scheme))
}

/// Rewrites a `#/components/schemas/X` reference to `#/definitions/X`.
fn rewrite_ref(reference: &str, ptr: &str) -> Result<String> {
    match reference.strip_prefix(SCHEMA_REF_PREFIX) {
        Some(name) if !name.is_empty() && !name.contains('/') => {
            Ok(format!("{DEFINITIONS_REF_PREFIX}{name}"))
        }
        _ => unsupported(
            ptr,
            format!("$ref `{reference}` must point directly at #/components/schemas/<Name>"),
        ),
    }
}

/// Deep-copies an extension (or other free-form) value, rewriting every schema `$ref`.
/// References to other component kinds cannot be expressed and are rejected.
fn rewrite_refs(v: &Value, ptr: &str) -> Result<Value> {
    Ok(match v {
        Value::Object(o) => {
            let mut out = Map::new();
            for (k, val) in o {
                let p = child(ptr, k);
                let new = match (k.as_str(), val) {
                    ("$ref", Value::String(r)) if r.starts_with("#/components/") => {
                        Value::String(rewrite_ref(r, &p)?)
                    }
                    _ => rewrite_refs(val, &p)?,
                };
                out.insert(k.clone(), new);
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| rewrite_refs(x, &index(ptr, i)))
                .collect::<Result<_>>()?,
        ),
        other => other.clone(),
    })
}

/// Inserts `key` unless already present with a different value (then `Unsupported`).
fn insert_no_conflict(out: &mut Map<String, Value>, key: &str, v: Value, ptr: &str) -> Result<()> {
    match out.get(key) {
        Some(existing) if existing != &v => unsupported(
            ptr,
            format!("`{key}` is defined twice with different values and cannot be merged"),
        ),
        _ => {
            out.insert(key.to_owned(), v);
            Ok(())
        }
    }
}

fn reason_phrase(code: &str) -> &'static str {
    match code {
        "200" => "OK",
        "201" => "Created",
        "202" => "Accepted",
        "204" => "No Content",
        "301" => "Moved Permanently",
        "302" => "Found",
        "304" => "Not Modified",
        "400" => "Bad Request",
        "401" => "Unauthorized",
        "403" => "Forbidden",
        "404" => "Not Found",
        "405" => "Method Not Allowed",
        "409" => "Conflict",
        "410" => "Gone",
        "412" => "Precondition Failed",
        "413" => "Content Too Large",
        "415" => "Unsupported Media Type",
        "422" => "Unprocessable Content",
        "429" => "Too Many Requests",
        "500" => "Internal Server Error",
        "502" => "Bad Gateway",
        "503" => "Service Unavailable",
        "504" => "Gateway Timeout",
        "default" => "Default response",
        _ => "Response",
    }
}

// ---------------------------------------------------------------------------------------------
// info / components / security

fn convert_info(v: &Value, ptr: &str) -> Result<Value> {
    let mut out = Map::new();
    for (k, val) in as_object(v, ptr)? {
        let p = child(ptr, k);
        match k.as_str() {
            "title" | "version" | "description" | "termsOfService" | "contact" => {
                out.insert(k.clone(), rewrite_refs(val, &p)?);
            }
            "license" => {
                if let Some(license) = convert_license(val, &p)? {
                    out.insert(k.clone(), license);
                }
            }
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => return unsupported(&p, format!("info.{k} has no Swagger 2.0 equivalent")),
        }
    }
    Ok(Value::Object(out))
}

/// `None` when the license is empty (utoipa emits `{"name": ""}` without a Cargo license).
fn convert_license(v: &Value, ptr: &str) -> Result<Option<Value>> {
    let o = as_object(v, ptr)?;
    let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
    if name.is_empty() {
        return Ok(None);
    }
    let mut out = Map::new();
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "name" | "url" => {
                out.insert(k.clone(), val.clone());
            }
            // utoipa copies CARGO_PKG_LICENSE into both `name` and `identifier`.
            "identifier" if val.as_str() == Some(name) => {}
            "identifier" => {
                return unsupported(
                    &p,
                    "license.identifier differs from license.name and has no Swagger 2.0 field",
                )
            }
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => return unsupported(&p, format!("license.{k} has no Swagger 2.0 equivalent")),
        }
    }
    Ok(Some(Value::Object(out)))
}

fn convert_components(v: &Value, ptr: &str, out: &mut Map<String, Value>) -> Result<()> {
    for (k, val) in as_object(v, ptr)? {
        let p = child(ptr, k);
        match k.as_str() {
            "schemas" => {
                let mut defs = Map::new();
                for (name, schema) in as_object(val, &p)? {
                    defs.insert(name.clone(), convert_schema(schema, &child(&p, name))?);
                }
                if !defs.is_empty() {
                    out.insert("definitions".into(), Value::Object(defs));
                }
            }
            "securitySchemes" => {
                let mut defs = Map::new();
                for (name, scheme) in as_object(val, &p)? {
                    defs.insert(
                        name.clone(),
                        convert_security_scheme(scheme, &child(&p, name))?,
                    );
                }
                if !defs.is_empty() {
                    out.insert("securityDefinitions".into(), Value::Object(defs));
                }
            }
            _ if is_empty_container(val) => {}
            k if is_extension(k) => {
                return unsupported(
                    &p,
                    "components-level extensions have no Swagger 2.0 location",
                )
            }
            _ => {
                return unsupported(
                    &p,
                    format!("components.{k} is not supported; inline these objects instead"),
                )
            }
        }
    }
    Ok(())
}

fn convert_security_scheme(v: &Value, ptr: &str) -> Result<Value> {
    let o = as_object(v, ptr)?;
    let kind = o.get("type").and_then(Value::as_str).unwrap_or_default();
    let mut out = Map::new();
    match kind {
        "apiKey" => {
            out.insert("type".into(), json!("apiKey"));
            for (k, val) in o {
                let p = child(ptr, k);
                match k.as_str() {
                    "type" => {}
                    "in" => match val.as_str() {
                        Some("header" | "query") => {
                            out.insert(k.clone(), val.clone());
                        }
                        _ => return unsupported(&p, "apiKey must be `in` header or query"),
                    },
                    "name" | "description" => {
                        out.insert(k.clone(), json!(as_str(val, &p)?));
                    }
                    k if is_extension(k) => {
                        out.insert(k.to_owned(), rewrite_refs(val, &p)?);
                    }
                    _ => return unsupported(&p, format!("apiKey scheme field `{k}`")),
                }
            }
            if !out.contains_key("name") || !out.contains_key("in") {
                return unsupported(ptr, "apiKey scheme needs `name` and `in`");
            }
        }
        "http"
            if o.get("scheme")
                .and_then(Value::as_str)
                .map(str::to_ascii_lowercase)
                == Some("basic".into()) =>
        {
            out.insert("type".into(), json!("basic"));
            for (k, val) in o {
                let p = child(ptr, k);
                match k.as_str() {
                    "type" | "scheme" => {}
                    "description" => {
                        out.insert(k.clone(), json!(as_str(val, &p)?));
                    }
                    k if is_extension(k) => {
                        out.insert(k.to_owned(), rewrite_refs(val, &p)?);
                    }
                    _ => return unsupported(&p, format!("basic scheme field `{k}`")),
                }
            }
        }
        _ => {
            return unsupported(
                ptr,
                format!(
                    "security scheme type `{kind}` is not supported (only apiKey and http basic)"
                ),
            )
        }
    }
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// paths / operations

fn convert_paths(v: &Value, ptr: &str) -> Result<Value> {
    let mut out = Map::new();
    for (path, item) in as_object(v, ptr)? {
        let p = child(ptr, path);
        if is_extension(path) {
            out.insert(path.clone(), rewrite_refs(item, &p)?);
        } else if path.starts_with('/') {
            out.insert(path.clone(), convert_path_item(item, &p)?);
        } else {
            return unsupported(&p, "path keys must start with `/`");
        }
    }
    Ok(Value::Object(out))
}

fn convert_path_item(v: &Value, ptr: &str) -> Result<Value> {
    let mut out = Map::new();
    for (k, val) in as_object(v, ptr)? {
        let p = child(ptr, k);
        match k.as_str() {
            m if HTTP_METHODS.contains(&m) => {
                out.insert(k.clone(), convert_operation(val, &p)?);
            }
            "parameters" => {
                let params = as_array(val, &p)?
                    .iter()
                    .enumerate()
                    .map(|(i, x)| convert_parameter(x, &index(&p, i)))
                    .collect::<Result<Vec<_>>>()?;
                if !params.is_empty() {
                    out.insert(k.clone(), Value::Array(params));
                }
            }
            "x-ms-notification-content" => {
                out.insert(k.clone(), convert_notification_content(val, &p)?);
            }
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            "trace" | "query" => {
                return unsupported(
                    &p,
                    format!("HTTP method `{k}` is not supported by Swagger 2.0"),
                )
            }
            _ => {
                return unsupported(
                    &p,
                    format!("path item field `{k}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    Ok(Value::Object(out))
}

/// `x-ms-notification-content: {description?, schema}`: the schema is converted like any other.
fn convert_notification_content(v: &Value, ptr: &str) -> Result<Value> {
    let mut out = Map::new();
    for (k, val) in as_object(v, ptr)? {
        let p = child(ptr, k);
        let new = if k == "schema" {
            convert_schema(val, &p)?
        } else {
            rewrite_refs(val, &p)?
        };
        out.insert(k.clone(), new);
    }
    Ok(Value::Object(out))
}

fn convert_operation(v: &Value, ptr: &str) -> Result<Value> {
    let mut out = Map::new();
    let mut params = Vec::new();
    let mut body = None;
    let mut uses_problem_json = false;
    for (k, val) in as_object(v, ptr)? {
        let p = child(ptr, k);
        match k.as_str() {
            "operationId" | "summary" | "description" | "tags" | "deprecated" | "externalDocs"
            | "security" => {
                out.insert(k.clone(), rewrite_refs(val, &p)?);
            }
            "parameters" => {
                for (i, x) in as_array(val, &p)?.iter().enumerate() {
                    params.push(convert_parameter(x, &index(&p, i))?);
                }
            }
            "requestBody" => body = Some(convert_request_body(val, &p)?),
            "responses" => {
                let (responses, problem) = convert_responses(val, &p)?;
                uses_problem_json = problem;
                out.insert(k.clone(), responses);
            }
            "callbacks" if is_empty_container(val) => {}
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => {
                return unsupported(
                    &p,
                    format!("operation field `{k}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    if !out.contains_key("responses") {
        return unsupported(ptr, "Swagger 2.0 operations need at least one response");
    }
    params.extend(body);
    if !params.is_empty() {
        out.insert("parameters".into(), Value::Array(params));
    }
    if uses_problem_json {
        out.insert("produces".into(), json!([JSON_MEDIA, PROBLEM_JSON_MEDIA]));
    }
    Ok(Value::Object(out))
}

fn convert_parameter(v: &Value, ptr: &str) -> Result<Value> {
    let o = as_object(v, ptr)?;
    if o.contains_key("$ref") {
        return unsupported(
            ptr,
            "parameter $ref (components.parameters) is not supported; inline the parameter",
        );
    }
    let name = match o.get("name") {
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        _ => return unsupported(ptr, "parameter without a name"),
    };
    let location = match o.get("in").and_then(Value::as_str) {
        Some(l @ ("query" | "path" | "header")) => l,
        _ => {
            return unsupported(
                &child(ptr, "in"),
                "only query, path and header parameters are supported",
            )
        }
    };
    let mut out = Map::new();
    out.insert("name".into(), json!(name));
    out.insert("in".into(), json!(location));
    let (mut style, mut explode, mut schema) = (None, None, None);
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "name" | "in" => {}
            "description" => {
                out.insert(k.clone(), json!(as_str(val, &p)?));
            }
            "required" => {
                out.insert(k.clone(), json!(as_bool(val, &p)?));
            }
            "allowEmptyValue" if location == "query" => {
                out.insert(k.clone(), json!(as_bool(val, &p)?));
            }
            "deprecated" | "allowReserved" if is_false(val) => {}
            "style" => style = Some(as_str(val, &p)?.to_owned()),
            "explode" => explode = Some(as_bool(val, &p)?),
            "schema" => schema = Some(val),
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => {
                return unsupported(
                    &p,
                    format!("parameter field `{k}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    if location == "path" && out.get("required") != Some(&Value::Bool(true)) {
        return unsupported(ptr, "path parameters must be `required: true`");
    }
    let Some(schema) = schema else {
        return unsupported(ptr, "parameter without a schema");
    };
    let flat = flatten_simple_schema(schema, &child(ptr, "schema"), false)?;
    merge_flattened(&mut out, flat);

    let style_ptr = child(ptr, "style");
    if out.get("type") == Some(&json!("array")) {
        let format = match (location, style.as_deref(), explode) {
            ("query", None | Some("form"), None | Some(true)) => "multi",
            ("query", None | Some("form"), Some(false)) => "csv",
            ("query", Some("spaceDelimited"), _) => "ssv",
            ("query", Some("pipeDelimited"), _) => "pipes",
            ("path" | "header", None | Some("simple"), _) => "csv",
            _ => {
                return unsupported(
                    &style_ptr,
                    "array serialization style has no collectionFormat",
                )
            }
        };
        out.insert("collectionFormat".into(), json!(format));
    } else if let Some(style) = style {
        let default = if location == "query" {
            "form"
        } else {
            "simple"
        };
        if style != default {
            return unsupported(
                &style_ptr,
                format!("style `{style}` for a {location} parameter"),
            );
        }
    }
    Ok(Value::Object(out))
}

/// Merges a flattened schema onto a parameter/header: the parameter's own `description` and
/// extensions win over the schema's.
fn merge_flattened(out: &mut Map<String, Value>, flat: Map<String, Value>) {
    for (k, v) in flat {
        if k == "description" || is_extension(&k) {
            out.entry(k).or_insert(v);
        } else {
            out.insert(k, v);
        }
    }
}

/// Flattens a primitive (or array-of-primitive) schema into Swagger 2.0 parameter/header/items
/// fields.
fn flatten_simple_schema(v: &Value, ptr: &str, is_items: bool) -> Result<Map<String, Value>> {
    let o = as_object(v, ptr)?;
    if o.contains_key("$ref") {
        return unsupported(
            ptr,
            "a $ref schema cannot be flattened onto a non-body parameter or header; use an inline primitive schema",
        );
    }
    for key in ["oneOf", "anyOf"] {
        if o.contains_key(key) {
            return flatten_nullable_union(o, key, ptr, is_items);
        }
    }
    let is_object_type = match o.get("type") {
        Some(Value::String(t)) => t == "object",
        Some(Value::Array(ts)) => ts.contains(&json!("object")),
        _ => false,
    };
    if is_object_type || o.contains_key("properties") || o.contains_key("additionalProperties") {
        return unsupported(
            ptr,
            "object schemas cannot be used for non-body parameters or headers",
        );
    }
    let mut out = Map::new();
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "type" => {
                let (t, nullable) = convert_type(val, &p)?;
                out.insert("type".into(), json!(t));
                if nullable {
                    out.insert("x-nullable".into(), json!(true));
                }
            }
            "nullable" => {
                if as_bool(val, &p)? {
                    out.insert("x-nullable".into(), json!(true));
                }
            }
            "format" | "enum" | "default" | "minimum" | "maximum" | "minLength" | "maxLength"
            | "pattern" | "maxItems" | "minItems" | "uniqueItems" | "multipleOf" => {
                out.insert(k.clone(), val.clone());
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {}
            "const" => {
                if o.contains_key("enum") {
                    return unsupported(&p, "`const` together with `enum`");
                }
                out.insert("enum".into(), json!([val]));
            }
            "items" => {
                out.insert(k.clone(), Value::Object(flatten_simple_schema(val, &p, true)?));
            }
            "description" if !is_items => {
                out.insert(k.clone(), val.clone());
            }
            "$schema" | "$id" | "$comment" => {}
            "deprecated" | "readOnly" | "writeOnly" if is_false(val) => {}
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => {
                return unsupported(
                    &p,
                    format!("`{k}` cannot be expressed on a Swagger 2.0 non-body parameter, header or items object"),
                )
            }
        }
    }
    convert_exclusive_bounds(o, &mut out, ptr)?;
    match out.get("type").and_then(Value::as_str) {
        None => unsupported(ptr, "non-body parameters and headers need a schema `type`"),
        Some("array") if !out.contains_key("items") => {
            unsupported(ptr, "array parameters and headers need `items` with a type")
        }
        Some(_) => Ok(out),
    }
}

/// `oneOf`/`anyOf` `[X, {"type":"null"}]` with an inline primitive `X` (utoipa's
/// `#[param(inline)] Option<Enum>`) → flattened `X` plus `x-nullable: true`.
fn flatten_nullable_union(
    o: &Map<String, Value>,
    key: &str,
    ptr: &str,
    is_items: bool,
) -> Result<Map<String, Value>> {
    let kp = child(ptr, key);
    let members = as_array(&o[key], &kp)?;
    let others: Vec<(usize, &Value)> = members
        .iter()
        .enumerate()
        .filter(|(_, m)| !is_null_schema(m))
        .collect();
    let [(i, other)] = others.as_slice() else {
        return unsupported(
            &kp,
            format!("`{key}` is only supported as `[X, {{\"type\": \"null\"}}]` (Option<X>)"),
        );
    };
    if members.len() != 2 || o.contains_key(if key == "oneOf" { "anyOf" } else { "oneOf" }) {
        return unsupported(
            &kp,
            format!("`{key}` is only supported as `[X, {{\"type\": \"null\"}}]`"),
        );
    }
    let mut flat = flatten_simple_schema(other, &index(&kp, *i), is_items)?;
    for (k, v) in o.iter().filter(|(k, _)| k.as_str() != key) {
        let p = child(ptr, k);
        match k.as_str() {
            "description" if !is_items => insert_no_conflict(&mut flat, k, v.clone(), &p)?,
            "default" => insert_no_conflict(&mut flat, k, v.clone(), &p)?,
            "$schema" | "$id" | "$comment" => {}
            k if is_extension(k) => insert_no_conflict(&mut flat, k, rewrite_refs(v, &p)?, &p)?,
            _ => {
                return unsupported(
                    &p,
                    format!("`{k}` next to `{key}` in a non-body parameter or header"),
                )
            }
        }
    }
    flat.insert("x-nullable".into(), json!(true));
    Ok(flat)
}

fn convert_request_body(v: &Value, ptr: &str) -> Result<Value> {
    let o = as_object(v, ptr)?;
    if o.contains_key("$ref") {
        return unsupported(
            ptr,
            "requestBody $ref (components.requestBodies) is not supported",
        );
    }
    let mut param = Map::new();
    param.insert("name".into(), json!("body"));
    param.insert("in".into(), json!("body"));
    param.insert("required".into(), json!(false));
    let mut media_extensions = Map::new();
    let mut schema = None;
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "description" => {
                param.insert(k.clone(), json!(as_str(val, &p)?));
            }
            "required" => {
                param.insert(k.clone(), json!(as_bool(val, &p)?));
            }
            "content" => {
                for (media_type, media) in as_object(val, &p)? {
                    let mp = child(&p, media_type);
                    if media_type != JSON_MEDIA {
                        return unsupported(
                            &mp,
                            "only application/json request bodies are supported",
                        );
                    }
                    for (mk, mv) in as_object(media, &mp)? {
                        let mkp = child(&mp, mk);
                        match mk.as_str() {
                            "schema" => schema = Some(convert_schema(mv, &mkp)?),
                            mk if is_extension(mk) => {
                                media_extensions.insert(mk.to_owned(), rewrite_refs(mv, &mkp)?);
                            }
                            _ => {
                                return unsupported(
                                    &mkp,
                                    format!(
                                    "request media type field `{mk}` has no Swagger 2.0 equivalent"
                                ),
                                )
                            }
                        }
                    }
                }
            }
            k if is_extension(k) => {
                param.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => {
                return unsupported(
                    &p,
                    format!("requestBody field `{k}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    for (k, v) in media_extensions {
        insert_no_conflict(&mut param, &k, v, ptr)?;
    }
    let Some(schema) = schema else {
        return unsupported(ptr, "request body without an application/json schema");
    };
    param.insert("schema".into(), schema);
    Ok(Value::Object(param))
}

/// Returns the converted responses and whether any of them uses `application/problem+json`.
fn convert_responses(v: &Value, ptr: &str) -> Result<(Value, bool)> {
    let mut out = Map::new();
    let mut uses_problem_json = false;
    for (code, response) in as_object(v, ptr)? {
        let p = child(ptr, code);
        if is_extension(code) {
            out.insert(code.clone(), rewrite_refs(response, &p)?);
            continue;
        }
        let valid_code =
            code == "default" || (code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit()));
        if !valid_code {
            return unsupported(
                &p,
                "response keys must be a 3-digit status code or `default`",
            );
        }
        let (converted, problem) = convert_response(response, &p, code)?;
        uses_problem_json |= problem;
        out.insert(code.clone(), converted);
    }
    if !out.keys().any(|k| !is_extension(k)) {
        return unsupported(ptr, "Swagger 2.0 operations need at least one response");
    }
    Ok((Value::Object(out), uses_problem_json))
}

fn convert_response(v: &Value, ptr: &str, code: &str) -> Result<(Value, bool)> {
    let o = as_object(v, ptr)?;
    if o.contains_key("$ref") {
        return unsupported(ptr, "response $ref (components.responses) is not supported");
    }
    let mut out = Map::new();
    let mut media_extensions = Map::new();
    let mut examples = Map::new();
    let (mut json_schema, mut problem_schema, mut uses_problem_json) = (None, None, false);
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "description" => {
                out.insert(k.clone(), json!(as_str(val, &p)?));
            }
            "headers" => {
                let mut headers = Map::new();
                for (name, header) in as_object(val, &p)? {
                    headers.insert(name.clone(), convert_header(header, &child(&p, name))?);
                }
                if !headers.is_empty() {
                    out.insert(k.clone(), Value::Object(headers));
                }
            }
            "content" => {
                for (media_type, media) in as_object(val, &p)? {
                    let mp = child(&p, media_type);
                    let is_json = media_type == JSON_MEDIA;
                    let is_problem = media_type == PROBLEM_JSON_MEDIA;
                    uses_problem_json |= is_problem;
                    for (mk, mv) in as_object(media, &mp)? {
                        let mkp = child(&mp, mk);
                        match mk.as_str() {
                            "schema" if is_json => json_schema = Some(convert_schema(mv, &mkp)?),
                            "schema" if is_problem => {
                                problem_schema = Some(convert_schema(mv, &mkp)?)
                            }
                            "schema" => {
                                return unsupported(
                                    &mkp,
                                    "response schemas must use application/json or application/problem+json",
                                )
                            }
                            "example" if is_json || is_problem => {
                                examples.insert(media_type.clone(), rewrite_refs(mv, &mkp)?);
                            }
                            mk if is_extension(mk) => {
                                media_extensions.insert(mk.to_owned(), rewrite_refs(mv, &mkp)?);
                            }
                            _ => {
                                return unsupported(
                                    &mkp,
                                    format!("response media type field `{mk}` has no Swagger 2.0 equivalent"),
                                )
                            }
                        }
                    }
                }
            }
            "links" if is_empty_container(val) => {}
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => {
                return unsupported(
                    &p,
                    format!("response field `{k}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    for (k, v) in media_extensions {
        insert_no_conflict(&mut out, &k, v, ptr)?;
    }
    if let Some(schema) = json_schema.or(problem_schema) {
        out.insert("schema".into(), schema);
    }
    if !examples.is_empty() {
        out.insert("examples".into(), Value::Object(examples));
    }
    out.entry("description")
        .or_insert_with(|| json!(reason_phrase(code)));
    Ok((Value::Object(out), uses_problem_json))
}

fn convert_header(v: &Value, ptr: &str) -> Result<Value> {
    let o = as_object(v, ptr)?;
    if o.contains_key("$ref") {
        return unsupported(ptr, "header $ref (components.headers) is not supported");
    }
    let mut out = Map::new();
    let mut flat = None;
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "description" => {
                out.insert(k.clone(), json!(as_str(val, &p)?));
            }
            "schema" => flat = Some(flatten_simple_schema(val, &p, false)?),
            "style" if val.as_str() == Some("simple") => {}
            // `explode` does not change how a primitive or array header is serialized.
            "explode" => {
                as_bool(val, &p)?;
            }
            "required" | "deprecated" if is_false(val) => {}
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            _ => {
                return unsupported(
                    &p,
                    format!("header field `{k}` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    let Some(flat) = flat else {
        return unsupported(ptr, "header without a schema");
    };
    merge_flattened(&mut out, flat);
    Ok(Value::Object(out))
}

// ---------------------------------------------------------------------------------------------
// JSON Schema (2020-12 dialect of OAS 3.1) → Swagger 2.0 schema object

/// `"string"` → `("string", false)`; `["string","null"]` → `("string", true)`.
fn convert_type(v: &Value, ptr: &str) -> Result<(String, bool)> {
    let valid = |t: &str| JSON_TYPES.contains(&t);
    match v {
        Value::String(t) if valid(t) => Ok((t.clone(), false)),
        Value::String(t) => unsupported(ptr, format!("type `{t}` has no Swagger 2.0 equivalent")),
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).collect();
            let non_null: Vec<&str> = names.iter().copied().filter(|t| *t != "null").collect();
            match (names.len() == types.len(), names.len(), non_null.as_slice()) {
                (true, 1, [t]) if valid(t) => Ok(((*t).to_owned(), false)),
                (true, 2, [t]) if valid(t) => Ok(((*t).to_owned(), true)),
                _ => unsupported(ptr, "only `[T, \"null\"]` type arrays are supported"),
            }
        }
        _ => unsupported(ptr, "`type` must be a string or an array of strings"),
    }
}

/// 3.1 numeric `exclusiveMinimum: n` → `minimum: n, exclusiveMinimum: true` (keeping whichever
/// of `minimum`/`exclusiveMinimum` is stricter); likewise for maximum. Boolean (3.0 style)
/// values are copied as they are.
fn convert_exclusive_bounds(
    src: &Map<String, Value>,
    out: &mut Map<String, Value>,
    ptr: &str,
) -> Result<()> {
    for (exclusive, inclusive, is_lower) in [
        ("exclusiveMinimum", "minimum", true),
        ("exclusiveMaximum", "maximum", false),
    ] {
        match src.get(exclusive) {
            None => {}
            Some(Value::Bool(b)) => {
                out.insert(exclusive.into(), json!(b));
            }
            Some(Value::Number(n)) => {
                let bound = n.as_f64().unwrap_or(f64::NAN);
                let inclusive_is_stricter = match src.get(inclusive).and_then(Value::as_f64) {
                    Some(i) if is_lower => i > bound,
                    Some(i) => i < bound,
                    None => false,
                };
                if !inclusive_is_stricter {
                    out.insert(inclusive.into(), Value::Number(n.clone()));
                    out.insert(exclusive.into(), json!(true));
                }
            }
            Some(_) => return unsupported(&child(ptr, exclusive), "expected a number or boolean"),
        }
    }
    Ok(())
}

fn is_null_schema(v: &Value) -> bool {
    v.as_object()
        .is_some_and(|o| o.len() == 1 && o.get("type") == Some(&json!("null")))
}

/// Converts one JSON schema (recursively).
fn convert_schema(v: &Value, ptr: &str) -> Result<Value> {
    let o = match v {
        Value::Object(o) => o,
        Value::Bool(true) => return Ok(json!({})),
        Value::Bool(false) => return unsupported(ptr, "the `false` schema"),
        _ => return unsupported(ptr, "a schema must be an object"),
    };
    if let Some(reference) = o.get("$ref") {
        let reference = as_str(reference, &child(ptr, "$ref"))?;
        let siblings = o.iter().filter(|(k, _)| k.as_str() != "$ref");
        return ref_with_siblings(reference, siblings, ptr);
    }
    match (o.get("oneOf"), o.get("anyOf")) {
        (Some(_), Some(_)) => return unsupported(ptr, "`oneOf` together with `anyOf`"),
        (Some(_), None) => return convert_nullable_union(o, "oneOf", ptr),
        (None, Some(_)) => return convert_nullable_union(o, "anyOf", ptr),
        (None, None) => {}
    }

    let mut out = Map::new();
    for (k, val) in o {
        let p = child(ptr, k);
        match k.as_str() {
            "type" => {
                let (t, nullable) = convert_type(val, &p)?;
                out.insert("type".into(), json!(t));
                if nullable {
                    out.insert("x-nullable".into(), json!(true));
                }
            }
            "nullable" => {
                if as_bool(val, &p)? {
                    out.insert("x-nullable".into(), json!(true));
                }
            }
            "format" | "title" | "description" | "default" | "multipleOf" | "minimum"
            | "maximum" | "maxLength" | "minLength" | "pattern" | "maxItems" | "minItems"
            | "uniqueItems" | "maxProperties" | "minProperties" | "required" | "enum"
            | "readOnly" | "xml" | "externalDocs" | "example" => {
                out.insert(k.clone(), val.clone());
            }
            "exclusiveMinimum" | "exclusiveMaximum" => {}
            "const" => {
                if o.contains_key("enum") {
                    return unsupported(&p, "`const` together with `enum`");
                }
                out.insert("enum".into(), json!([val]));
            }
            "examples" => {
                if !o.contains_key("example") {
                    if let Some(first) = as_array(val, &p)?.first() {
                        out.insert("example".into(), first.clone());
                    }
                }
            }
            "$schema" | "$id" | "$comment" => {}
            "writeOnly" | "deprecated" if is_false(val) => {}
            // utoipa emits this for HashMap<String, _>; JSON object keys are always strings.
            "propertyNames" if val == &json!({"type": "string"}) => {}
            "properties" => {
                let mut props = Map::new();
                for (name, prop) in as_object(val, &p)? {
                    props.insert(name.clone(), convert_schema(prop, &child(&p, name))?);
                }
                out.insert(k.clone(), Value::Object(props));
            }
            "items" => match val {
                Value::Object(_) | Value::Bool(true) => {
                    out.insert(k.clone(), convert_schema(val, &p)?);
                }
                _ => return unsupported(&p, "only a single `items` schema is supported"),
            },
            "additionalProperties" => {
                let new = match val {
                    Value::Bool(b) => json!(b),
                    _ => convert_schema(val, &p)?,
                };
                out.insert(k.clone(), new);
            }
            "allOf" => {
                let members = as_array(val, &p)?
                    .iter()
                    .enumerate()
                    .map(|(i, m)| convert_schema(m, &index(&p, i)))
                    .collect::<Result<Vec<_>>>()?;
                out.insert(k.clone(), Value::Array(members));
            }
            k if is_extension(k) => {
                out.insert(k.to_owned(), rewrite_refs(val, &p)?);
            }
            "contentEncoding" | "contentMediaType" | "contentSchema" => {
                return unsupported(&p, format!("`{k}` has no Swagger 2.0 equivalent"))
            }
            _ => {
                return unsupported(
                    &p,
                    format!("JSON Schema keyword `{k}` is not supported by Swagger 2.0"),
                )
            }
        }
    }
    convert_exclusive_bounds(o, &mut out, ptr)?;
    Ok(Value::Object(out))
}

/// `$ref` plus 3.1 sibling keywords → bare `$ref`, or `allOf: [{$ref}]` wrapper keeping the
/// siblings (Swagger 2.0 ignores/rejects siblings next to `$ref`).
fn ref_with_siblings<'a>(
    reference: &str,
    siblings: impl Iterator<Item = (&'a String, &'a Value)>,
    ptr: &str,
) -> Result<Value> {
    let new_ref = rewrite_ref(reference, &child(ptr, "$ref"))?;
    let mut wrapper = Map::new();
    let mut examples = None;
    for (k, val) in siblings {
        let p = child(ptr, k);
        match k.as_str() {
            "description" | "title" | "default" | "readOnly" | "example" | "externalDocs" => {
                insert_no_conflict(&mut wrapper, k, val.clone(), &p)?;
            }
            "examples" => examples = as_array(val, &p)?.first().cloned(),
            "$schema" | "$id" | "$comment" => {}
            "writeOnly" | "deprecated" if is_false(val) => {}
            k if is_extension(k) => {
                insert_no_conflict(&mut wrapper, k, rewrite_refs(val, &p)?, &p)?;
            }
            _ => {
                return unsupported(
                    &p,
                    format!("`{k}` next to `$ref` has no Swagger 2.0 equivalent"),
                )
            }
        }
    }
    if let Some(first) = examples {
        wrapper.entry("example").or_insert(first);
    }
    if wrapper.is_empty() {
        return Ok(json!({ "$ref": new_ref }));
    }
    wrapper.insert("allOf".into(), json!([{ "$ref": new_ref }]));
    Ok(Value::Object(wrapper))
}

/// `oneOf`/`anyOf` of exactly `[X, {"type":"null"}]` (utoipa's `Option<X>`).
fn convert_nullable_union(o: &Map<String, Value>, key: &str, ptr: &str) -> Result<Value> {
    let kp = child(ptr, key);
    let members = as_array(&o[key], &kp)?;
    let null_count = members.iter().filter(|m| is_null_schema(m)).count();
    if members.len() != 2 || null_count != 1 {
        return unsupported(
            &kp,
            format!("`{key}` is only supported as `[X, {{\"type\": \"null\"}}]` (Option<X>)"),
        );
    }
    let (i, other) = members
        .iter()
        .enumerate()
        .find(|(_, m)| !is_null_schema(m))
        .expect("one non-null member");
    let other_ptr = index(&kp, i);
    let outer = o.iter().filter(|(k, _)| k.as_str() != key);

    if let Some(reference) = other.get("$ref") {
        // Option<SomeStruct>: nullability is dropped (no siblings allowed next to $ref).
        let reference = as_str(reference, &child(&other_ptr, "$ref"))?;
        let inner = as_object(other, &other_ptr)?
            .iter()
            .filter(|(k, _)| k.as_str() != "$ref");
        return ref_with_siblings(reference, outer.chain(inner), ptr);
    }

    // Inline schema: nullability survives as `x-nullable`.
    let mut converted = convert_schema(other, &other_ptr)?;
    let outer_map: Map<String, Value> = outer.map(|(k, v)| (k.clone(), v.clone())).collect();
    let outer_converted = convert_schema(&Value::Object(outer_map), ptr)?;
    let target = converted
        .as_object_mut()
        .expect("convert_schema returns objects");
    for (k, v) in outer_converted.as_object().into_iter().flatten() {
        insert_no_conflict(target, k, v.clone(), ptr)?;
    }
    if target.contains_key("$ref") {
        // Cannot happen (refs handled above) but never emit siblings next to $ref.
        return unsupported(&other_ptr, "nullable $ref with siblings");
    }
    target.insert("x-nullable".into(), json!(true));
    Ok(converted)
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://ci.example.com:8443/base";

    /// A document shaped like utoipa 6 output.
    fn base() -> Value {
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Contoso Insights",
                "description": "",
                "license": {"name": ""},
                "version": "0.1.0",
                "x-ms-api-annotation": {"status": "Preview"}
            },
            "paths": {
                "/items/{id}": {
                    "get": {
                        "operationId": "GetItem",
                        "parameters": [{
                            "name": "id", "in": "path", "required": true,
                            "description": "Item id",
                            "schema": {"type": "string", "format": "uuid"}
                        }],
                        "responses": {
                            "200": {"description": "OK", "content": {"application/json": {
                                "schema": {"$ref": "#/components/schemas/Item"}}}}
                        }
                    }
                }
            },
            "components": {"schemas": {
                "Item": {"type": "object", "required": ["id"], "properties": {
                    "id": {"type": "string", "format": "uuid"}
                }}
            }}
        })
    }

    fn conv(doc: &Value) -> Value {
        convert(doc, URL).expect("conversion succeeds")
    }

    fn set(doc: &mut Value, ptr: &str, v: Value) {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        match doc
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no parent {parent}"))
        {
            Value::Object(o) => {
                o.insert(key, v);
            }
            Value::Array(a) => {
                let i: usize = key.parse().unwrap();
                if i < a.len() {
                    a[i] = v;
                } else {
                    a.push(v);
                }
            }
            other => panic!("cannot set {key} in {other}"),
        }
    }

    fn op_path() -> &'static str {
        "/paths/~1items~1{id}/get"
    }

    fn assert_unsupported(doc: &Value, pointer: &str) {
        match convert(doc, URL) {
            Err(ConvertError::Unsupported { pointer: p, reason }) => {
                assert_eq!(p, pointer, "reason: {reason}");
                let msg = ConvertError::Unsupported { pointer: p, reason }.to_string();
                assert!(msg.contains(pointer), "{msg}");
            }
            other => panic!("expected Unsupported at {pointer}, got {other:?}"),
        }
    }

    #[test]
    fn root_fields_and_definitions() {
        let out = conv(&base());
        assert_eq!(out["swagger"], "2.0");
        assert_eq!(out["consumes"], json!(["application/json"]));
        assert_eq!(out["produces"], json!(["application/json"]));
        assert_eq!(out["definitions"]["Item"]["required"], json!(["id"]));
        assert!(out.get("components").is_none() && out.get("openapi").is_none());
    }

    #[test]
    fn host_base_path_and_schemes_from_public_url() {
        let doc = base();
        let out = conv(&doc);
        assert_eq!(out["host"], "ci.example.com:8443");
        assert_eq!(out["basePath"], "/base");
        assert_eq!(out["schemes"], json!(["https"]));

        let out = convert(&doc, "https://ci.example.com").unwrap();
        assert_eq!(
            (out["host"].as_str(), out["basePath"].as_str()),
            (Some("ci.example.com"), Some("/"))
        );
        let out = convert(&doc, "http://ci.example.com:443/a/b/").unwrap();
        assert_eq!(out["host"], "ci.example.com:443");
        assert_eq!(out["basePath"], "/a/b");
        assert_eq!(out["schemes"], json!(["http"]));
        // The default port is not repeated.
        let out = convert(&doc, "https://ci.example.com:443/").unwrap();
        assert_eq!(out["host"], "ci.example.com");

        for bad in [
            "not a url",
            "ftp://x.example.com",
            "https://u:p@x.example.com",
            "https://x.example.com/?q=1",
            "https://x.example.com/#f",
        ] {
            assert!(
                matches!(convert(&doc, bad), Err(ConvertError::InvalidPublicUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn info_copied_and_empty_license_dropped() {
        let mut doc = base();
        set(
            &mut doc,
            "/info/contact",
            json!({"name": "Support", "email": "s@example.com"}),
        );
        let out = conv(&doc);
        assert!(out["info"].get("license").is_none());
        assert_eq!(
            out["info"]["x-ms-api-annotation"],
            json!({"status": "Preview"})
        );
        assert_eq!(out["info"]["contact"]["name"], "Support");
        assert_eq!(out["info"]["title"], "Contoso Insights");

        // utoipa copies CARGO_PKG_LICENSE into name and identifier.
        set(
            &mut doc,
            "/info/license",
            json!({"name": "MIT", "identifier": "MIT"}),
        );
        assert_eq!(conv(&doc)["info"]["license"], json!({"name": "MIT"}));
        set(
            &mut doc,
            "/info/license",
            json!({"name": "Custom", "identifier": "MIT"}),
        );
        assert_unsupported(&doc, "/info/license/identifier");
    }

    #[test]
    fn refs_rewritten_everywhere() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/List",
            json!({
                "type": "object",
                "properties": {
                    "value": {"type": "array", "items": {"$ref": "#/components/schemas/Item"}},
                    "byId": {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Item"}},
                    "both": {"allOf": [{"$ref": "#/components/schemas/Item"}]}
                }
            }),
        );
        set(
            &mut doc,
            "/paths/~1items~1{id}/x-ms-notification-content",
            json!({"description": "Event", "schema": {"$ref": "#/components/schemas/Item"}}),
        );
        set(
            &mut doc,
            &format!("{}/x-custom", op_path()),
            json!({"nested": [{"$ref": "#/components/schemas/List"}], "other": {"$ref": "https://example.com/x"}}),
        );
        let out = conv(&doc);
        let list = &out["definitions"]["List"]["properties"];
        assert_eq!(list["value"]["items"]["$ref"], "#/definitions/Item");
        assert_eq!(
            list["byId"]["additionalProperties"]["$ref"],
            "#/definitions/Item"
        );
        assert_eq!(list["both"]["allOf"][0]["$ref"], "#/definitions/Item");
        let item = &out["paths"]["/items/{id}"];
        assert_eq!(
            item["x-ms-notification-content"]["schema"]["$ref"],
            "#/definitions/Item"
        );
        assert_eq!(
            item["get"]["responses"]["200"]["schema"]["$ref"],
            "#/definitions/Item"
        );
        assert_eq!(
            item["get"]["x-custom"]["nested"][0]["$ref"],
            "#/definitions/List"
        );
        assert_eq!(
            item["get"]["x-custom"]["other"]["$ref"],
            "https://example.com/x"
        );
        assert!(!serde_json::to_string(&out)
            .unwrap()
            .contains("#/components/"));
    }

    #[test]
    fn request_body_becomes_body_parameter() {
        let mut doc = base();
        set(
            &mut doc,
            "/paths/~1items",
            json!({"post": {
                "operationId": "CreateItem",
                "requestBody": {
                    "description": "The item to create.",
                    "required": true,
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Item"}}},
                    "x-ms-summary": "Item"
                },
                "responses": {"201": {"description": "Created"}}
            }}),
        );
        let out = conv(&doc);
        let params = &out["paths"]["/items"]["post"]["parameters"];
        assert_eq!(
            params,
            &json!([{
                "name": "body", "in": "body", "required": true,
                "description": "The item to create.",
                "schema": {"$ref": "#/definitions/Item"},
                "x-ms-summary": "Item"
            }])
        );

        // `required` defaults to false; body comes after the other parameters.
        set(
            &mut doc,
            "/paths/~1items/post/requestBody",
            json!({"content": {"application/json": {"schema": {"type": "object"}}}}),
        );
        set(
            &mut doc,
            "/paths/~1items/post/parameters",
            json!([{"name": "q", "in": "query", "required": false, "schema": {"type": "string"}}]),
        );
        let out = conv(&doc);
        let params = out["paths"]["/items"]["post"]["parameters"]
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(params[0]["name"], "q");
        assert_eq!(params[1]["required"], false);
        assert_eq!(params[1]["in"], "body");
    }

    #[test]
    fn parameter_schema_flattened() {
        let mut doc = base();
        set(
            &mut doc,
            &format!("{}/parameters", op_path()),
            json!([
                {"name": "id", "in": "path", "required": true, "description": "Item id",
                 "schema": {"type": "string", "format": "uuid", "description": "ignored"},
                 "x-ms-summary": "Item ID", "x-ms-url-encoding": "single"},
                {"name": "top", "in": "query", "required": false,
                 "schema": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 100, "default": 10}},
                {"name": "kind", "in": "query",
                 "schema": {"type": "string", "enum": ["a", "b"], "minLength": 1, "maxLength": 5, "pattern": "^[ab]$",
                            "description": "Kind from schema", "x-ms-visibility": "advanced"}},
                {"name": "X-Trace", "in": "header", "schema": {"type": "string"}}
            ]),
        );
        let out = conv(&doc);
        let params = &out["paths"]["/items/{id}"]["get"]["parameters"];
        assert_eq!(
            params[0],
            json!({
                "name": "id", "in": "path", "required": true, "description": "Item id",
                "type": "string", "format": "uuid", "x-ms-summary": "Item ID", "x-ms-url-encoding": "single"
            })
        );
        assert_eq!(
            params[1],
            json!({
                "name": "top", "in": "query", "required": false,
                "type": "integer", "format": "int32", "minimum": 1, "maximum": 100, "default": 10
            })
        );
        assert_eq!(
            params[2],
            json!({
                "name": "kind", "in": "query", "type": "string", "enum": ["a", "b"], "minLength": 1,
                "maxLength": 5, "pattern": "^[ab]$", "description": "Kind from schema",
                "x-ms-visibility": "advanced"
            })
        );
        assert_eq!(
            params[3],
            json!({"name": "X-Trace", "in": "header", "type": "string"})
        );
    }

    #[test]
    fn array_parameters_get_items_and_collection_format() {
        let mut doc = base();
        set(
            &mut doc,
            &format!("{}/parameters", op_path()),
            json!([
                {"name": "id", "in": "path", "required": true, "schema": {"type": "string"}},
                {"name": "tags", "in": "query", "schema": {"type": "array", "items": {"type": "string", "format": "uuid"}}},
                {"name": "csv", "in": "query", "explode": false, "schema": {"type": "array", "items": {"type": "integer"}}},
                {"name": "pipes", "in": "query", "style": "pipeDelimited", "schema": {"type": ["array", "null"], "items": {"type": "string"}}}
            ]),
        );
        let out = conv(&doc);
        let params = &out["paths"]["/items/{id}"]["get"]["parameters"];
        assert_eq!(
            params[1],
            json!({"name": "tags", "in": "query", "type": "array",
            "items": {"type": "string", "format": "uuid"}, "collectionFormat": "multi"})
        );
        assert_eq!(params[2]["collectionFormat"], "csv");
        assert_eq!(params[3]["collectionFormat"], "pipes");
        assert_eq!(params[3]["x-nullable"], true);

        set(
            &mut doc,
            &format!("{}/parameters/1/schema", op_path()),
            json!({"type": "array"}),
        );
        assert_unsupported(&doc, &format!("{}/parameters/1/schema", op_path()));
    }

    #[test]
    fn nullable_types_become_x_nullable() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/Item/properties/note",
            json!({"type": ["string", "null"], "maxLength": 10}),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/count",
            json!({"type": ["null", "integer"], "format": "int64"}),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/legacy",
            json!({"type": "string", "nullable": true}),
        );
        set(
            &mut doc,
            &format!("{}/parameters/1", op_path()),
            json!({"name": "top", "in": "query", "required": false, "schema": {"type": ["integer", "null"], "format": "int32"}}),
        );
        let out = conv(&doc);
        let props = &out["definitions"]["Item"]["properties"];
        assert_eq!(
            props["note"],
            json!({"type": "string", "x-nullable": true, "maxLength": 10})
        );
        assert_eq!(
            props["count"],
            json!({"type": "integer", "format": "int64", "x-nullable": true})
        );
        assert_eq!(
            props["legacy"],
            json!({"type": "string", "x-nullable": true})
        );
        assert_eq!(
            out["paths"]["/items/{id}"]["get"]["parameters"][1],
            json!({
                "name": "top", "in": "query", "required": false, "type": "integer", "format": "int32", "x-nullable": true
            })
        );
    }

    #[test]
    fn option_of_ref_becomes_plain_ref() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/Item/properties/parent",
            json!({"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Item"}]}),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/other",
            json!({"anyOf": [{"$ref": "#/components/schemas/Item"}, {"type": "null"}]}),
        );
        let out = conv(&doc);
        let props = &out["definitions"]["Item"]["properties"];
        assert_eq!(props["parent"], json!({"$ref": "#/definitions/Item"}));
        assert_eq!(props["other"], json!({"$ref": "#/definitions/Item"}));
    }

    #[test]
    fn hash_map_property_names_dropped() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/Item/properties/map",
            json!({
                "type": "object",
                "additionalProperties": {"type": "integer", "format": "int32"},
                "propertyNames": {"type": "string"}
            }),
        );
        let out = conv(&doc);
        assert_eq!(
            out["definitions"]["Item"]["properties"]["map"],
            json!({
                "type": "object", "additionalProperties": {"type": "integer", "format": "int32"}
            })
        );
    }

    #[test]
    fn optional_inline_enum_parameter_is_flattened() {
        // utoipa: `#[param(inline)] kind: Option<Kind>`
        let mut doc = base();
        set(
            &mut doc,
            &format!("{}/parameters/1", op_path()),
            json!({
                "name": "kind", "in": "query", "required": false,
                "schema": {"oneOf": [
                    {"description": "Kind of item.", "enum": ["Alpha", "Beta"], "type": "string"},
                    {"type": "null"}
                ]}
            }),
        );
        let out = conv(&doc);
        assert_eq!(
            out["paths"]["/items/{id}"]["get"]["parameters"][1],
            json!({
                "name": "kind", "in": "query", "required": false, "type": "string",
                "enum": ["Alpha", "Beta"], "description": "Kind of item.", "x-nullable": true
            })
        );
        // An optional $ref parameter schema (no `inline`) stays unsupported.
        set(
            &mut doc,
            &format!("{}/parameters/1/schema", op_path()),
            json!({"oneOf": [
                {"$ref": "#/components/schemas/Item"}, {"type": "null"}
            ]}),
        );
        assert_unsupported(&doc, &format!("{}/parameters/1/schema/oneOf/0", op_path()));
    }

    #[test]
    fn option_of_inline_schema_keeps_nullability() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/Item/properties/inline",
            json!({
                "oneOf": [{"type": "null"}, {"type": "object", "properties": {"a": {"type": "string"}}}],
                "description": "Inline"
            }),
        );
        let out = conv(&doc);
        assert_eq!(
            out["definitions"]["Item"]["properties"]["inline"],
            json!({
                "type": "object", "properties": {"a": {"type": "string"}},
                "description": "Inline", "x-nullable": true
            })
        );
    }

    #[test]
    fn ref_with_siblings_wrapped_in_all_of() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/Item/properties/parent",
            json!({
                "$ref": "#/components/schemas/Item",
                "description": "The parent item.",
                "x-ms-summary": "Parent"
            }),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/maybe",
            json!({
                "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Item"}],
                "description": "Optional item.",
                "x-ms-visibility": "advanced"
            }),
        );
        let out = conv(&doc);
        let props = &out["definitions"]["Item"]["properties"];
        assert_eq!(
            props["parent"],
            json!({
                "allOf": [{"$ref": "#/definitions/Item"}],
                "description": "The parent item.",
                "x-ms-summary": "Parent"
            })
        );
        assert_eq!(
            props["maybe"],
            json!({
                "allOf": [{"$ref": "#/definitions/Item"}],
                "description": "Optional item.",
                "x-ms-visibility": "advanced"
            })
        );
    }

    #[test]
    fn responses_with_headers() {
        let mut doc = base();
        set(
            &mut doc,
            "/paths/~1items",
            json!({"post": {
                "operationId": "Subscribe",
                "responses": {
                    "201": {
                        "description": "Created",
                        "headers": {"Location": {"schema": {"type": "string"}, "description": "Delete URL.", "x-ms-summary": "Location"}}
                    },
                    "204": {},
                    "default": {"description": "Error", "content": {"text/plain": {}}}
                }
            }}),
        );
        let out = conv(&doc);
        let responses = &out["paths"]["/items"]["post"]["responses"];
        assert_eq!(
            responses["201"],
            json!({
                "description": "Created",
                "headers": {"Location": {"type": "string", "description": "Delete URL.", "x-ms-summary": "Location"}}
            })
        );
        assert_eq!(responses["204"], json!({"description": "No Content"}));
        assert_eq!(responses["default"], json!({"description": "Error"}));
        assert!(out["paths"]["/items"]["post"].get("produces").is_none());
    }

    #[test]
    fn problem_json_added_to_produces() {
        let mut doc = base();
        set(
            &mut doc,
            &format!("{}/responses/404", op_path()),
            json!({
                "description": "Not Found",
                "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Item"}}}
            }),
        );
        set(
            &mut doc,
            &format!(
                "{}/responses/200/content/application~1problem+json",
                op_path()
            ),
            json!({"schema": {"type": "string"}}),
        );
        let out = conv(&doc);
        let op = &out["paths"]["/items/{id}"]["get"];
        assert_eq!(
            op["produces"],
            json!(["application/json", "application/problem+json"])
        );
        assert_eq!(
            op["responses"]["404"]["schema"]["$ref"],
            "#/definitions/Item"
        );
        // application/json wins when both are present.
        assert_eq!(
            op["responses"]["200"]["schema"]["$ref"],
            "#/definitions/Item"
        );
    }

    #[test]
    fn extensions_kept_at_each_level() {
        let mut doc = base();
        let op = op_path();
        set(
            &mut doc,
            "/x-ms-connector-metadata",
            json!([{"propertyName": "Website", "propertyValue": "https://x.example.com"}]),
        );
        set(&mut doc, "/paths/~1items~1{id}/x-ms-path", json!("p"));
        set(
            &mut doc,
            &format!("{op}/x-ms-visibility"),
            json!("important"),
        );
        set(
            &mut doc,
            &format!("{op}/parameters/0/x-ms-summary"),
            json!("Item ID"),
        );
        set(
            &mut doc,
            &format!("{op}/parameters/0/schema/x-ms-test-value"),
            json!("abc"),
        );
        set(
            &mut doc,
            &format!("{op}/responses/200/x-ms-summary"),
            json!("Result"),
        );
        set(
            &mut doc,
            &format!("{op}/responses/200/content/application~1json/x-media"),
            json!(1),
        );
        set(
            &mut doc,
            "/components/schemas/Item/x-ms-summary",
            json!("Item object"),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/id/x-ms-visibility",
            json!("internal"),
        );
        set(
            &mut doc,
            "/components/securitySchemes",
            json!({"api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key", "x-sec": true}}),
        );
        let out = conv(&doc);
        assert_eq!(out["x-ms-connector-metadata"][0]["propertyName"], "Website");
        let item = &out["paths"]["/items/{id}"];
        assert_eq!(item["x-ms-path"], "p");
        assert_eq!(item["get"]["x-ms-visibility"], "important");
        assert_eq!(item["get"]["parameters"][0]["x-ms-summary"], "Item ID");
        assert_eq!(item["get"]["parameters"][0]["x-ms-test-value"], "abc");
        assert_eq!(item["get"]["responses"]["200"]["x-ms-summary"], "Result");
        assert_eq!(item["get"]["responses"]["200"]["x-media"], 1);
        assert_eq!(out["definitions"]["Item"]["x-ms-summary"], "Item object");
        assert_eq!(
            out["definitions"]["Item"]["properties"]["id"]["x-ms-visibility"],
            "internal"
        );
        assert_eq!(out["securityDefinitions"]["api_key"]["x-sec"], true);
        assert_eq!(out["info"]["x-ms-api-annotation"]["status"], "Preview");
    }

    #[test]
    fn notification_content_schema_converted() {
        let mut doc = base();
        set(
            &mut doc,
            "/paths/~1items~1{id}/x-ms-notification-content",
            json!({
                "description": "Event payload",
                "schema": {"type": "object", "properties": {
                    "item": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Item"}]},
                    "note": {"type": ["string", "null"], "x-ms-summary": "Note"}
                }}
            }),
        );
        let out = conv(&doc);
        assert_eq!(
            out["paths"]["/items/{id}"]["x-ms-notification-content"],
            json!({
                "description": "Event payload",
                "schema": {"type": "object", "properties": {
                    "item": {"$ref": "#/definitions/Item"},
                    "note": {"type": "string", "x-nullable": true, "x-ms-summary": "Note"}
                }}
            })
        );
    }

    #[test]
    fn security_schemes_and_requirements() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/securitySchemes",
            json!({
                "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "Key"},
                "basic": {"type": "http", "scheme": "basic"}
            }),
        );
        set(&mut doc, "/security", json!([{"api_key": []}]));
        set(
            &mut doc,
            &format!("{}/security", op_path()),
            json!([{"basic": []}]),
        );
        let out = conv(&doc);
        assert_eq!(
            out["securityDefinitions"],
            json!({
                "api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "Key"},
                "basic": {"type": "basic"}
            })
        );
        assert_eq!(out["security"], json!([{"api_key": []}]));
        assert_eq!(
            out["paths"]["/items/{id}"]["get"]["security"],
            json!([{"basic": []}])
        );
    }

    #[test]
    fn json_schema_keywords_mapped() {
        let mut doc = base();
        set(
            &mut doc,
            "/components/schemas/Item/properties/kind",
            json!({"const": "fixed", "examples": ["fixed", "other"], "$schema": "x", "$id": "y"}),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/n",
            json!({"type": "number", "exclusiveMinimum": 0, "exclusiveMaximum": 10, "maximum": 5}),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/m",
            json!({"type": "integer", "exclusiveMinimum": 0, "minimum": 0}),
        );
        set(
            &mut doc,
            "/components/schemas/Item/properties/map",
            json!({"type": "object", "additionalProperties": false, "readOnly": true, "title": "Map"}),
        );
        let out = conv(&doc);
        let props = &out["definitions"]["Item"]["properties"];
        assert_eq!(
            props["kind"],
            json!({"enum": ["fixed"], "example": "fixed"})
        );
        // exclusiveMaximum 10 is weaker than maximum 5 → kept as maximum 5.
        assert_eq!(
            props["n"],
            json!({"type": "number", "minimum": 0, "exclusiveMinimum": true, "maximum": 5})
        );
        assert_eq!(
            props["m"],
            json!({"type": "integer", "minimum": 0, "exclusiveMinimum": true})
        );
        assert_eq!(
            props["map"],
            json!({"type": "object", "additionalProperties": false, "readOnly": true, "title": "Map"})
        );
    }

    #[test]
    fn output_is_deterministic() {
        let mut doc = base();
        set(&mut doc, "/x-b", json!(1));
        set(&mut doc, "/x-a", json!(2));
        let a = serde_json::to_string_pretty(&conv(&doc)).unwrap();
        let b = serde_json::to_string_pretty(&conv(&doc)).unwrap();
        assert_eq!(a, b);
        assert!(a.find("\"x-a\"").unwrap() < a.find("\"x-b\"").unwrap());
    }

    // ---- Unsupported constructs: each names the JSON pointer of the offending construct.

    macro_rules! unsupported_case {
        ($name:ident, $ptr:expr, $value:expr, $expected:expr) => {
            #[test]
            fn $name() {
                let mut doc = base();
                let ptr: String = $ptr;
                set(&mut doc, &ptr, $value);
                let expected: String = $expected;
                assert_unsupported(&doc, &expected);
            }
        };
    }

    fn op(suffix: &str) -> String {
        format!("{}{suffix}", op_path())
    }
    fn prop(suffix: &str) -> String {
        format!("/components/schemas/Item/properties/x{suffix}")
    }

    unsupported_case!(
        unsupported_parameter_ref,
        op("/parameters/0"),
        json!({"$ref": "#/components/parameters/Id"}),
        op("/parameters/0")
    );
    unsupported_case!(
        unsupported_parameter_object_schema,
        op("/parameters/0/schema"),
        json!({"type": "object", "properties": {}}),
        op("/parameters/0/schema")
    );
    unsupported_case!(
        unsupported_parameter_ref_schema,
        op("/parameters/0/schema"),
        json!({"$ref": "#/components/schemas/Item"}),
        op("/parameters/0/schema")
    );
    unsupported_case!(
        unsupported_cookie_parameter,
        op("/parameters/0"),
        json!({"name": "c", "in": "cookie", "schema": {"type": "string"}}),
        op("/parameters/0/in")
    );
    unsupported_case!(
        unsupported_optional_path_parameter,
        op("/parameters/0"),
        json!({"name": "id", "in": "path", "required": false, "schema": {"type": "string"}}),
        op("/parameters/0")
    );
    unsupported_case!(
        unsupported_parameter_example,
        op("/parameters/0/example"),
        json!("abc"),
        op("/parameters/0/example")
    );
    unsupported_case!(
        unsupported_request_body_media_type,
        op("/requestBody"),
        json!({"content": {"application/xml": {"schema": {"type": "string"}}}}),
        op("/requestBody/content/application~1xml")
    );
    unsupported_case!(
        unsupported_response_text_plain_schema,
        op("/responses/200/content/text~1plain"),
        json!({"schema": {"type": "string"}}),
        op("/responses/200/content/text~1plain/schema")
    );
    unsupported_case!(
        unsupported_response_range,
        op("/responses/2XX"),
        json!({"description": "x"}),
        op("/responses/2XX")
    );
    unsupported_case!(
        unsupported_response_ref,
        op("/responses/404"),
        json!({"$ref": "#/components/responses/NotFound"}),
        op("/responses/404")
    );
    unsupported_case!(
        unsupported_one_of_two_refs,
        prop(""),
        json!({"oneOf": [{"$ref": "#/components/schemas/Item"}, {"$ref": "#/components/schemas/Item"}]}),
        prop("/oneOf")
    );
    unsupported_case!(
        unsupported_any_of_primitives,
        prop(""),
        json!({"anyOf": [{"type": "string"}, {"type": "integer"}]}),
        prop("/anyOf")
    );
    unsupported_case!(
        unsupported_type_array,
        prop(""),
        json!({"type": ["string", "integer"]}),
        prop("/type")
    );
    unsupported_case!(
        unsupported_type_null,
        prop(""),
        json!({"type": "null"}),
        prop("/type")
    );
    unsupported_case!(
        unsupported_content_encoding,
        prop(""),
        json!({"type": "string", "contentEncoding": "base64"}),
        prop("/contentEncoding")
    );
    unsupported_case!(
        unsupported_content_media_type,
        prop(""),
        json!({"type": "string", "contentMediaType": "image/png"}),
        prop("/contentMediaType")
    );
    unsupported_case!(
        unsupported_property_names,
        prop(""),
        json!({"type": "object", "propertyNames": {"pattern": "^a"}}),
        prop("/propertyNames")
    );
    unsupported_case!(
        unsupported_prefix_items,
        prop(""),
        json!({"type": "array", "prefixItems": [{"type": "string"}]}),
        prop("/prefixItems")
    );
    unsupported_case!(
        unsupported_if_then_else,
        prop(""),
        json!({"if": {"type": "string"}, "then": {}, "else": {}}),
        prop("/else")
    );
    unsupported_case!(
        unsupported_pattern_properties,
        prop(""),
        json!({"type": "object", "patternProperties": {"^a": {}}}),
        prop("/patternProperties")
    );
    unsupported_case!(
        unsupported_unevaluated_properties,
        prop(""),
        json!({"type": "object", "unevaluatedProperties": false}),
        prop("/unevaluatedProperties")
    );
    unsupported_case!(
        unsupported_write_only,
        prop(""),
        json!({"type": "string", "writeOnly": true}),
        prop("/writeOnly")
    );
    unsupported_case!(
        unsupported_deprecated_property,
        prop(""),
        json!({"type": "string", "deprecated": true}),
        prop("/deprecated")
    );
    unsupported_case!(
        unsupported_tuple_items,
        prop(""),
        json!({"type": "array", "items": [{"type": "string"}]}),
        prop("/items")
    );
    unsupported_case!(
        unsupported_ref_outside_schemas,
        prop(""),
        json!({"$ref": "#/components/responses/X"}),
        prop("/$ref")
    );
    unsupported_case!(
        unsupported_ref_summary_sibling,
        prop(""),
        json!({"$ref": "#/components/schemas/Item", "summary": "S"}),
        prop("/summary")
    );
    unsupported_case!(
        unsupported_components_parameters,
        "/components/parameters".into(),
        json!({"Id": {"name": "id", "in": "query"}}),
        "/components/parameters".into()
    );
    unsupported_case!(
        unsupported_bearer_security,
        "/components/securitySchemes".into(),
        json!({"bearer": {"type": "http", "scheme": "bearer"}}),
        "/components/securitySchemes/bearer".into()
    );
    unsupported_case!(
        unsupported_webhooks,
        "/webhooks".into(),
        json!({"ev": {}}),
        "/webhooks".into()
    );
    unsupported_case!(
        unsupported_trace_method,
        "/paths/~1items~1{id}/trace".into(),
        json!({"responses": {"200": {"description": "OK"}}}),
        "/paths/~1items~1{id}/trace".into()
    );
    unsupported_case!(
        unsupported_callbacks,
        op("/callbacks"),
        json!({"cb": {}}),
        op("/callbacks")
    );
    unsupported_case!(
        unsupported_extension_ref_to_other_component,
        op("/x-thing"),
        json!({"$ref": "#/components/parameters/P"}),
        op("/x-thing/$ref")
    );

    #[test]
    fn unsupported_openapi_version() {
        let mut doc = base();
        set(&mut doc, "/openapi", json!("2.0"));
        assert_unsupported(&doc, "/openapi");
    }
}
