//! Spec step: the Power Automate connector package (`connector-definition/`), built from the
//! published OpenAPI 3.1 document: `apiDefinition.swagger.json` (our 3.1 → 2.0 converter plus the
//! export step [`single_schema_responses`]), `apiProperties.json`, `settings.json`, `icon.png`
//! and `readme.md`. May use `spec::swagger2` and `spec::lint`, nothing outside `spec`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::{lint, swagger2};

/// Pretty JSON with sorted keys (serde_json's map is a `BTreeMap`; the `preserve_order`
/// feature must stay off) and a final newline, so the output is byte-stable.
pub fn to_stable_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("JSON serializes");
    text.push('\n');
    text
}

/// The connector's display name (`info.title`, ≤ 30 characters, no "API"/"Connector").
pub const TITLE: &str = "Audience Insights";
pub const PUBLISHER: &str = "Insights Connector Team";
pub const CONTACT_URL: &str = "https://insights-connector.example.com/support";
pub const CONTACT_EMAIL: &str = "support@insights-connector.example.com";
pub const WEBSITE: &str = "https://insights-connector.example.com";
pub const PRIVACY_POLICY: &str = "https://insights-connector.example.com/privacy";
/// At most two, from the certification's category list ([`super::lint::ALLOWED_CATEGORIES`]).
pub const CATEGORIES: &str = "Data;Marketing";
/// `x-ms-api-annotation.status` of the definition.
pub const API_STATUS: &str = "Preview";
/// `iconBrandColor`: the background colour of [`ICON_PNG`] (checked by a test).
pub const ICON_BRAND_COLOR: &str = "#1E5B8C";
/// 230×230 PNG, logo on a solid [`ICON_BRAND_COLOR`] background. Drawn once by
/// `scripts/make-icon.py` and committed; the export copies these bytes.
pub const ICON_PNG: &[u8] = include_bytes!("icon.png");

/// The files of the package, by name, with their content type.
pub type Package = BTreeMap<String, (&'static str, Vec<u8>)>;

const JSON: &str = "application/json";
const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

/// Builds the connector package for `public_url` from the published 3.1 document.
/// With `strict`, any connector lint issue is an error (the export); otherwise the lint is
/// left to the tests (the server builds the package for whatever URL it runs on).
pub fn package(openapi: &Value, public_url: &str, strict: bool) -> anyhow::Result<Package> {
    let swagger = api_definition(openapi, public_url)?;
    let swagger_json = to_stable_json(&swagger);
    if strict {
        let issues = lint::lint_connector(&swagger, Some(swagger_json.as_bytes()));
        if !issues.is_empty() {
            let list: Vec<String> = issues.iter().map(|i| format!("  {i}")).collect();
            anyhow::bail!(
                "the connector definition breaks {} connector rule(s):\n{}",
                issues.len(),
                list.join("\n")
            );
        }
    }
    let mut files = Package::new();
    files.insert(
        "apiDefinition.swagger.json".into(),
        (JSON, swagger_json.into_bytes()),
    );
    files.insert(
        "apiProperties.json".into(),
        (JSON, to_stable_json(&api_properties()).into_bytes()),
    );
    files.insert(
        "settings.json".into(),
        (JSON, to_stable_json(&settings()).into_bytes()),
    );
    files.insert("icon.png".into(), ("image/png", ICON_PNG.to_vec()));
    files.insert(
        "readme.md".into(),
        (
            "text/markdown; charset=utf-8",
            readme(&swagger).into_bytes(),
        ),
    );
    Ok(files)
}

/// `apiDefinition.swagger.json`: the converted document after [`single_schema_responses`].
pub fn api_definition(openapi: &Value, public_url: &str) -> anyhow::Result<Value> {
    let mut swagger = swagger2::convert(openapi, public_url)?;
    single_schema_responses(&mut swagger);
    Ok(swagger)
}

/// Export step (not the converter's job): Power Automate uses one response schema per
/// operation (validator rule `OperationHasManyResponsesWithSchema`), while the 3.1 document
/// declares `application/problem+json` bodies on its error responses for contract tests.
///
/// For each operation:
/// * an action keeps the schema of its first (lowest) 2xx response that has one; every other
///   response loses `schema` and `examples` (status, description and headers stay);
/// * a webhook trigger (`x-ms-trigger` without polling metadata) keeps no response schema: its
///   outputs are the path-level `x-ms-notification-content` (the validator's
///   `SchemaDefinitionSetIncorrectly`); the 201 keeps its `Location` header;
/// * the operation-level `produces` that the converter adds for `application/problem+json` is
///   removed: the root `produces` lists both JSON media types, because every error body is
///   still `application/problem+json` (only its schema is dropped here).
pub fn single_schema_responses(swagger: &mut Value) {
    let Some(paths) = swagger.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for method in HTTP_METHODS {
            let Some(op) = item.get_mut(method).and_then(Value::as_object_mut) else {
                continue;
            };
            let webhook = op.contains_key("x-ms-trigger")
                && op.get("x-ms-trigger-metadata").and_then(|m| m.get("mode"))
                    != Some(&json!("polling"));
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            let keep: Option<String> = if webhook {
                None
            } else {
                responses
                    .iter()
                    .filter(|(code, r)| code.starts_with('2') && r.get("schema").is_some())
                    .map(|(code, _)| code.clone())
                    .min()
            };
            for (code, response) in responses.iter_mut() {
                if Some(code) == keep.as_ref() || code.starts_with("x-") {
                    continue;
                }
                if let Some(r) = response.as_object_mut() {
                    r.remove("schema");
                    r.remove("examples");
                }
            }
            op.remove("produces");
        }
    }
    swagger["produces"] = json!(["application/json", "application/problem+json"]);
}

/// `apiProperties.json`: API key connection parameter (matches `securityDefinitions.api_key`).
pub fn api_properties() -> Value {
    json!({
        "properties": {
            "connectionParameters": {
                "api_key": {
                    "type": "securestring",
                    "uiDefinition": {
                        "displayName": "API Key",
                        "description": "The API key of your tenant, sent in the X-API-Key header.",
                        "tooltip": "Provide your API key",
                        "constraints": {
                            "tabIndex": 2,
                            "clearText": false,
                            "required": "true"
                        }
                    }
                }
            },
            "iconBrandColor": ICON_BRAND_COLOR,
            "capabilities": ["actions", "triggers"],
            "publisher": PUBLISHER
        }
    })
}

/// `settings.json` for `paconn create --settings settings.json` (only keys its schema allows;
/// `environment` and `connectorId` are the user's, paconn asks for or writes them).
pub fn settings() -> Value {
    json!({
        "apiDefinition": "apiDefinition.swagger.json",
        "apiProperties": "apiProperties.json",
        "icon": "icon.png",
        "powerAppsApiVersion": "2016-11-01",
        "powerAppsUrl": "https://api.powerapps.com"
    })
}

struct OperationDoc {
    id: String,
    summary: String,
    description: String,
    visibility: String,
    trigger: bool,
}

fn operations(swagger: &Value) -> Vec<OperationDoc> {
    let mut ops = Vec::new();
    for item in swagger
        .get("paths")
        .and_then(Value::as_object)
        .into_iter()
        .flat_map(Map::values)
    {
        for method in HTTP_METHODS {
            let Some(op) = item.get(method) else {
                continue;
            };
            let text = |k: &str| op.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
            ops.push(OperationDoc {
                id: text("operationId"),
                summary: text("summary"),
                description: text("description"),
                visibility: text("x-ms-visibility"),
                trigger: op.get("x-ms-trigger").is_some(),
            });
        }
    }
    // Important first, then by summary: the order a maker meets them in.
    ops.sort_by(|a, b| {
        (a.visibility != "important", &a.summary).cmp(&(b.visibility != "important", &b.summary))
    });
    ops
}

/// `readme.md` after the certified-connector template
/// (PowerPlatformConnectors `templates/certified-connectors/readme.md`). The operation list is
/// generated from the definition so it cannot drift.
pub fn readme(swagger: &Value) -> String {
    let info = &swagger["info"];
    let title = info["title"].as_str().unwrap_or(TITLE);
    let description = info["description"].as_str().unwrap_or_default();
    let ops = operations(swagger);
    let mut out = String::new();
    let mut line = |s: &str| {
        out.push_str(s);
        out.push('\n');
    };
    line(&format!("# {title}"));
    line(description);
    line("");
    line(&format!("## Publisher: {PUBLISHER}"));
    line("");
    line("## Prerequisites");
    line("You need:");
    line("* A running insights-connector service that Power Automate can reach over HTTPS; its public URL is the connector's host.");
    line("* An API key of your tenant on that service.");
    line("* A Power Automate plan that allows custom connectors.");
    line("");
    line("## Supported Operations");
    line("Operations marked internal are used by the connector itself (dropdowns, dynamic item schemas, polling of jobs and removing trigger subscriptions) and are hidden in the designer.");
    line("");
    for (heading, triggers) in [("Triggers", true), ("Actions", false)] {
        let list: Vec<&OperationDoc> = ops.iter().filter(|o| o.trigger == triggers).collect();
        if list.is_empty() {
            continue;
        }
        line(&format!("### {heading}"));
        for op in list {
            let internal = if op.visibility == "internal" {
                " (internal)"
            } else {
                ""
            };
            line(&format!("#### {}{internal}", op.summary));
            line(&format!("`{}`: {}", op.id, op.description));
            line("");
        }
    }
    line("## Obtaining Credentials");
    line("The connector authenticates with an API key sent in the `X-API-Key` header. Keys belong to a tenant, and a tenant sees only its own instances, subscriptions and jobs. An operator of the service creates a key with `insights-connector keys create --tenant <name>`; the key is printed once and only its hash is stored. On first start without any key the service creates one for the tenant `default` and prints it.");
    line("");
    line("## Getting Started");
    line("1. Create a connection with your API key.");
    line("2. Add an action such as *Get entities* or *Get items from an entity*, pick the instance and the entity from the dropdowns; item inputs and outputs follow the entity's schema.");
    line("3. Build a flow on a trigger, for example *When a data source refresh fails* followed by a Teams message, or *When a segment threshold is crossed* followed by an email to the data owners.");
    line("4. Refresh and unification actions start background jobs; the connector waits for the job to finish before the flow continues.");
    line("");
    line("## Known Issues and Limitations");
    line("* Threshold triggers fire when a value rises above the threshold, not when it falls below it.");
    line("* Item schemas are inferred from the data of the entity, so a field that no item has yet does not appear in the designer.");
    line("* Custom connectors are limited to 500 requests per minute per connection; the service can also answer 429 with a `Retry-After` header.");
    line("* Nullable fields that refer to shared definitions are not marked nullable in the Swagger 2.0 definition.");
    line("");
    line("## Deployment Instructions");
    line("1. Generate the definition for your host: `insights-connector export --public-url https://your-host.example.com` rewrites `connector-definition/`.");
    line("2. Install the paconn CLI (`pip install paconn`) and sign in with `paconn login`.");
    line("3. Run `paconn create --settings settings.json` in `connector-definition/` (or `paconn create --api-def apiDefinition.swagger.json --api-prop apiProperties.json --icon icon.png`), or import `apiDefinition.swagger.json` in the custom connector wizard.");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_keep_only_the_first_success_schema() {
        let mut swagger = json!({"paths": {"/jobs/{jobId}": {"get": {
        "operationId": "GetJob",
        "produces": ["application/json", "application/problem+json"],
        "responses": {
            "200": {"description": "Done.", "schema": {"$ref": "#/definitions/Job"}},
            "202": {"description": "Running.", "schema": {"$ref": "#/definitions/Job"},
                    "headers": {"Location": {"type": "string"}}},
            "404": {"description": "Missing.", "schema": {"$ref": "#/definitions/Problem"},
                    "examples": {"application/problem+json": {}}},
            "429": {"description": "Slow down.", "schema": {"$ref": "#/definitions/Problem"},
                    "headers": {"Retry-After": {"type": "integer"}}}
        }}}}});
        single_schema_responses(&mut swagger);
        let op = &swagger["paths"]["/jobs/{jobId}"]["get"];
        assert_eq!(
            op["responses"]["200"]["schema"],
            json!({"$ref": "#/definitions/Job"})
        );
        assert_eq!(
            op["responses"]["202"],
            json!({"description": "Running.", "headers": {"Location": {"type": "string"}}})
        );
        assert_eq!(op["responses"]["404"], json!({"description": "Missing."}));
        assert_eq!(
            op["responses"]["429"],
            json!({"description": "Slow down.", "headers": {"Retry-After": {"type": "integer"}}})
        );
        assert!(op.get("produces").is_none());
    }

    #[test]
    fn webhook_triggers_keep_no_response_schema() {
        let mut swagger = json!({"paths": {"/hooks": {"post": {
        "x-ms-trigger": "single",
        "responses": {
            "201": {"description": "Subscribed.", "schema": {"$ref": "#/definitions/Subscription"},
                    "headers": {"Location": {"type": "string"}}},
            "400": {"description": "Bad.", "schema": {"$ref": "#/definitions/Problem"}}
        }}}}});
        single_schema_responses(&mut swagger);
        let responses = &swagger["paths"]["/hooks"]["post"]["responses"];
        assert_eq!(
            responses["201"],
            json!({"description": "Subscribed.", "headers": {"Location": {"type": "string"}}})
        );
        assert_eq!(responses["400"], json!({"description": "Bad."}));
    }

    #[test]
    fn an_error_only_schema_is_dropped_too() {
        let mut swagger = json!({"paths": {"/x": {"delete": {"responses": {
            "204": {"description": "Deleted."},
            "404": {"description": "Missing.", "schema": {"$ref": "#/definitions/Problem"}}
        }}}}});
        single_schema_responses(&mut swagger);
        assert_eq!(
            swagger["paths"]["/x"]["delete"]["responses"]["404"],
            json!({"description": "Missing."})
        );
    }
}
