//! Spec step: the OpenAPI 3.1 document (assembled from the handlers' annotations) and the Power
//! Automate connector package exported from it. May use `api` (to register the handlers and for
//! the problem type) and the trigger vocabulary of `webhooks`; nothing in `api` uses it.
//!
//! Pipeline, one source of truth:
//! 1. [`openapi`]: utoipa-actix-web collects every handler registered in
//!    [`crate::api::configure`]; [`decorate`] adds what no single handler owns (info, contact,
//!    security, connector metadata, the 401/429 answers of the auth middleware, notification
//!    schemas).
//! 2. [`document`]: its JSON plus the connector dialect ([`dialect`]) — the published 3.1
//!    document, served at `/openapi.json` and written to `openapi/openapi.json`.
//! 3. [`connector::package`]: [`swagger2::convert`] and the export step
//!    [`connector::single_schema_responses`], then `apiProperties.json`, `settings.json`,
//!    `icon.png` and `readme.md`; linted by [`lint::lint_connector`] on export.

pub mod connector;
pub mod dialect;
pub mod lint;
pub mod swagger2;

pub use connector::to_stable_json;

use actix_web::App;
use serde_json::{json, Value};
use utoipa::openapi::extensions::Extensions;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::info::ContactBuilder;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{Object, Type};
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::{Content, OpenApi, Ref, RefOr, ResponseBuilder};
use utoipa_actix_web::AppExt;

use crate::api::problem::{Problem, PROBLEM_JSON};

pub const DEFAULT_PUBLIC_URL: &str = "https://insights-connector.example.com";

/// Where [`export`] writes, relative to the project root.
pub const OPENAPI_FILE: &str = "openapi/openapi.json";
pub const CONNECTOR_DIR: &str = "connector-definition";

/// The OpenAPI 3.1 document of every action and trigger, as utoipa assembles it (without the
/// connector dialect, see [`document`]).
pub fn openapi() -> OpenApi {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .configure(crate::api::configure)
        .split_for_parts();
    decorate(&mut doc);
    doc
}

/// Document-level settings that no single handler owns.
fn decorate(doc: &mut OpenApi) {
    doc.info.title = connector::TITLE.into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Work with audience insights instances from flows: read and write entity items, manage data sources, unification, segments and measures, and trigger flows when refreshes fail or succeed or when segments and measures cross thresholds.".into(),
    );
    doc.info.license = None;
    doc.info.contact = Some(
        ContactBuilder::new()
            .name(Some(connector::PUBLISHER))
            .url(Some(connector::CONTACT_URL))
            .email(Some(connector::CONTACT_EMAIL))
            .build(),
    );
    doc.info.extensions = Some(extensions([(
        "x-ms-api-annotation",
        json!({ "status": connector::API_STATUS }),
    )]));
    doc.extensions = Some(extensions([(
        "x-ms-connector-metadata",
        json!([
            { "propertyName": "Website", "propertyValue": connector::WEBSITE },
            { "propertyName": "Privacy policy", "propertyValue": connector::PRIVACY_POLICY },
            { "propertyName": "Categories", "propertyValue": connector::CATEGORIES },
        ]),
    )]));

    add_schema::<Problem>(doc);
    let components = doc.components.get_or_insert_with(Default::default);
    // The trigger notification bodies: no handler references them (they are the path-level
    // `x-ms-notification-content`), so the catalog brings them in.
    for (name, schema) in crate::triggers::notification_schemas() {
        components.schemas.insert(name, schema);
    }
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            crate::api::auth::API_KEY_HEADER,
            "API key of the tenant.",
        ))),
    );
    doc.security = Some(vec![utoipa::openapi::security::SecurityRequirement::new(
        "api_key",
        Vec::<String>::new(),
    )]);
    for op in operations_mut(doc) {
        add_auth_responses(op);
    }
}

fn extensions<const N: usize>(entries: [(&str, Value); N]) -> Extensions {
    entries
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
}

/// Adds `T` and every schema it references to the components (for schemas no handler names).
pub fn add_schema<T: utoipa::ToSchema>(doc: &mut OpenApi) {
    let components = doc.components.get_or_insert_with(Default::default);
    let mut dependencies = Vec::new();
    T::schemas(&mut dependencies);
    for (name, schema) in dependencies {
        components.schemas.entry(name).or_insert(schema);
    }
    components
        .schemas
        .insert(T::name().into_owned(), T::schema());
}

fn operations_mut(doc: &mut OpenApi) -> impl Iterator<Item = &mut Operation> {
    doc.paths.paths.values_mut().flat_map(|item| {
        [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.delete,
            &mut item.options,
            &mut item.head,
            &mut item.patch,
            &mut item.trace,
        ]
        .into_iter()
        .flatten()
    })
}

/// The authentication middleware answers 401 (no or a wrong key) and 429 (request budget
/// exhausted, with `Retry-After`) on every route, so every operation declares them; the JSON
/// body extractor answers 400 (malformed), 413 (too large) and 415 (not JSON) on every
/// operation with a request body.
fn add_auth_responses(op: &mut Operation) {
    let problem = || Content::new(Some(Ref::from_schema_name("Problem")));
    let has_body = op.request_body.is_some();
    let responses = &mut op.responses.responses;
    if has_body {
        for (code, description) in [
            (
                "400",
                "The body is not valid JSON or does not have the documented shape.",
            ),
            ("413", "The body is larger than the configured limit."),
            ("415", "The body was not sent as application/json."),
        ] {
            responses.entry(code.into()).or_insert_with(|| {
                RefOr::T(
                    ResponseBuilder::new()
                        .description(description)
                        .content(PROBLEM_JSON, problem())
                        .build(),
                )
            });
        }
    }
    responses.entry("401".into()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description("The X-API-Key header is missing or the key is not valid.")
                .content(PROBLEM_JSON, problem())
                .header(
                    "WWW-Authenticate",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::String)))
                        .description(Some("The authentication scheme to use."))
                        .build(),
                )
                .build(),
        )
    });
    responses.entry("429".into()).or_insert_with(|| {
        RefOr::T(
            ResponseBuilder::new()
                .description(
                    "The tenant's request budget is exhausted; retry after the Retry-After delay.",
                )
                .content(PROBLEM_JSON, problem())
                .header(
                    "Retry-After",
                    HeaderBuilder::new()
                        .schema(Some(Object::with_type(Type::Integer)))
                        .description(Some("Seconds to wait before retrying."))
                        .build(),
                )
                .build(),
        )
    });
}

/// The published OpenAPI 3.1 document: [`openapi`]'s JSON with the connector dialect.
pub fn document(doc: &OpenApi) -> anyhow::Result<Value> {
    let mut value = serde_json::to_value(doc)?;
    dialect::apply(&mut value)?;
    Ok(value)
}

/// The documents the service serves: the 3.1 document and the connector package for its own
/// public URL (plain `http://127.0.0.1:…` gives `schemes: ["http"]`).
pub fn documents(doc: &OpenApi, public_url: &str) -> anyhow::Result<crate::api::state::Documents> {
    let published = document(doc)?;
    Ok(crate::api::state::Documents {
        openapi_json: to_stable_json(&published),
        connector: connector::package(&published, public_url, false)?,
    })
}

/// Every file [`export`] writes, relative to the project root, with its bytes. Fails when the
/// connector definition breaks a connector rule ([`lint::lint_connector`]).
pub fn exported_files(public_url: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let published = document(&openapi())?;
    let mut files = vec![(
        OPENAPI_FILE.to_owned(),
        to_stable_json(&published).into_bytes(),
    )];
    for (name, (_, bytes)) in connector::package(&published, public_url, true)? {
        files.push((format!("{CONNECTOR_DIR}/{name}"), bytes));
    }
    Ok(files)
}

/// Regenerates `openapi/` and `connector-definition/` under `root`. Returns the files that
/// changed (with `check`, nothing is written).
pub fn export(
    root: &std::path::Path,
    public_url: &str,
    check: bool,
) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for (rel, bytes) in exported_files(public_url)? {
        let path = root.join(&rel);
        if std::fs::read(&path).ok().as_deref() != Some(bytes.as_slice()) {
            if !check {
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&path, &bytes)?;
            }
            changed.push(rel);
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    struct FakeNotification {
        /// Stable across retries.
        event_id: String,
        detail: FakeDetail,
    }

    #[derive(utoipa::ToSchema)]
    #[allow(dead_code)]
    struct FakeDetail {
        /// A number.
        n: i64,
    }

    #[test]
    fn add_schema_registers_the_type_and_its_dependencies() {
        let mut doc = OpenApi::default();
        add_schema::<FakeNotification>(&mut doc);
        let schemas = &doc.components.as_ref().unwrap().schemas;
        assert!(schemas.contains_key("FakeNotification"));
        assert!(schemas.contains_key("FakeDetail"));
    }

    #[test]
    fn every_operation_declares_401_and_429() {
        let doc = openapi();
        let value = serde_json::to_value(&doc).unwrap();
        for (path, item) in value["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                for code in ["401", "429"] {
                    let r = &op["responses"][code];
                    assert_eq!(
                        r["content"][PROBLEM_JSON]["schema"]["$ref"],
                        "#/components/schemas/Problem",
                        "{method} {path} {code}"
                    );
                }
                assert!(op["responses"]["429"]["headers"]["Retry-After"].is_object());
            }
        }
    }

    #[test]
    fn documents_build_for_a_plain_http_loopback_url() {
        let docs = documents(&openapi(), "http://127.0.0.1:8080").unwrap();
        let (content_type, bytes) = &docs.connector["apiDefinition.swagger.json"];
        assert_eq!(*content_type, "application/json");
        let swagger: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(swagger["schemes"], json!(["http"]));
        assert_eq!(swagger["host"], "127.0.0.1:8080");
        assert_eq!(swagger["basePath"], "/");
        for name in [
            "apiProperties.json",
            "settings.json",
            "icon.png",
            "readme.md",
        ] {
            assert!(docs.connector.contains_key(name), "{name}");
        }
    }

    /// What the trigger handlers emit in 3.1, in miniature: a subscribe operation (201 with a
    /// body and `Location`, plus an error answer) and the internal unsubscribe.
    fn with_fake_trigger(mut v: Value) -> Value {
        let problem = json!({"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}});
        let instance = json!({"name": "instanceId", "in": "path", "required": true, "schema": {"type": "string"}});
        v["paths"]["/instances/{instanceId}/triggers/segment-threshold"] = json!({"post": {
        "operationId": "OnSegmentThresholdCrossed",
        "summary": "When a segment threshold is crossed",
        "description": "This operation triggers when the member count of a segment rises above the threshold.",
        "x-ms-visibility": "important",
        "parameters": [instance],
        "requestBody": {"required": true, "description": "The subscription.", "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/SegmentThresholdSubscription"}}}},
        "responses": {
            "201": {"description": "Subscribed.",
                    "headers": {"Location": {"description": "URL to delete the subscription.", "schema": {"type": "string"}}},
                    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/SegmentThresholdSubscription"}}}},
            "400": {"description": "Not valid.", "content": problem.clone()}
        }}});
        v["paths"]["/instances/{instanceId}/subscriptions/{subscriptionId}"] = json!({"delete": {
            "operationId": "DeleteTriggerSubscription",
            "summary": "Delete a trigger subscription",
            "description": "Deletes a trigger subscription; deleting it again also succeeds.",
            "x-ms-visibility": "internal",
            "parameters": [instance, {"name": "subscriptionId", "in": "path", "required": true, "schema": {"type": "string"}}],
            "responses": {"204": {"description": "Deleted."}}}});
        v["components"]["schemas"]["SegmentThresholdSubscription"] = json!({
            "type": "object", "description": "A subscription.", "required": ["notificationUrl", "segmentId", "threshold"],
            "properties": {
                "notificationUrl": {"type": "string", "description": "Callback URL.", "x-ms-notification-url": true},
                "segmentId": {"type": "string", "description": "The segment to watch."},
                "threshold": {"type": "integer", "format": "int64", "minimum": 0, "description": "Member count to exceed."}}});
        v["components"]["schemas"]["SegmentThresholdEvent"] = json!({
            "type": "object", "description": "A segment's member count rose above the threshold.",
            "required": ["eventId"],
            "properties": {
                "eventId": {"type": "string", "description": "Stable across retries."},
                "previousCount": {"type": "integer", "description": "Members before the refresh."}}});
        v
    }

    #[test]
    fn a_trigger_goes_through_dialect_converter_and_export_lint_clean() {
        // The real trigger table, with the segment trigger replaced by the fake one.
        let fake: Vec<(crate::triggers::Trigger, &str, String)> = crate::triggers::TRIGGERS
            .iter()
            .map(|d| {
                if d.trigger == crate::triggers::Trigger::OnSegmentThresholdCrossed {
                    (d.trigger, d.path, "SegmentThresholdEvent".to_string())
                } else {
                    (d.trigger, d.path, d.payload_name())
                }
            })
            .collect();
        let fake: Vec<(crate::triggers::Trigger, &str, &str)> =
            fake.iter().map(|(t, p, s)| (*t, *p, s.as_str())).collect();
        let mut v = with_fake_trigger(serde_json::to_value(openapi()).unwrap());
        dialect::apply_with_triggers(&mut v, &fake).unwrap();
        let swagger = connector::api_definition(&v, DEFAULT_PUBLIC_URL).unwrap();
        let issues = lint::lint_connector(&swagger, None);
        let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
        assert!(issues.is_empty(), "{}", list.join("\n"));

        let item = &swagger["paths"]["/instances/{instanceId}/triggers/segment-threshold"];
        assert_eq!(
            item["x-ms-notification-content"]["schema"],
            json!({"$ref": "#/definitions/SegmentThresholdEvent"})
        );
        let op = &item["post"];
        assert_eq!(op["x-ms-trigger"], "single");
        assert!(op["responses"]["201"].get("schema").is_none());
        assert!(op["responses"]["201"]["headers"]["Location"].is_object());
        let body = &swagger["definitions"]["SegmentThresholdSubscription"]["properties"];
        assert_eq!(body["notificationUrl"]["x-ms-visibility"], "internal");
        assert_eq!(
            body["segmentId"]["x-ms-dynamic-values"]["operationId"],
            "ListSegments"
        );
        let event = &swagger["definitions"]["SegmentThresholdEvent"]["properties"];
        assert_eq!(event["previousCount"]["x-ms-summary"], "Previous Count");
    }

    #[test]
    fn the_export_is_deterministic() {
        let a = exported_files(DEFAULT_PUBLIC_URL).unwrap();
        let b = exported_files(DEFAULT_PUBLIC_URL).unwrap();
        assert_eq!(a, b);
    }
}
