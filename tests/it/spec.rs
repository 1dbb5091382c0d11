//! The published documents: committed files equal the export, the connector package passes
//! Microsoft's schemas and the connector lint, and the Swagger 2.0 definition corresponds
//! one-to-one with the OpenAPI 3.1 document.

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::path::PathBuf;

use insights_connector::spec::{self, connector, lint};
use serde_json::{json, Value};

const METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read_json(rel: &str) -> Value {
    let path = root().join(rel);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `cargo run -- export`)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn openapi() -> Value {
    read_json("openapi/openapi.json")
}

fn swagger() -> Value {
    read_json("connector-definition/apiDefinition.swagger.json")
}

/// `(path, method, operation)` of every operation of a 2.0 or 3.1 document.
fn operations(doc: &Value) -> Vec<(String, String, Value)> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in METHODS {
            if let Some(op) = item.get(method) {
                ops.push((path.clone(), method.to_owned(), op.clone()));
            }
        }
    }
    ops
}

// ---------------------------------------------------------------------------------------------
// (a) committed files equal the export

#[test]
fn committed_documents_equal_what_the_code_exports() {
    let changed = spec::export(&root(), spec::DEFAULT_PUBLIC_URL, true).expect("export works");
    assert!(
        changed.is_empty(),
        "out of date, run `cargo run -- export` and commit: {changed:?}"
    );
}

#[test]
fn the_export_covers_the_whole_connector_package() {
    let files: BTreeSet<String> = spec::exported_files(spec::DEFAULT_PUBLIC_URL)
        .unwrap()
        .into_iter()
        .map(|(name, _)| name)
        .collect();
    let expected: BTreeSet<String> = [
        "openapi/openapi.json",
        "connector-definition/apiDefinition.swagger.json",
        "connector-definition/apiProperties.json",
        "connector-definition/settings.json",
        "connector-definition/icon.png",
        "connector-definition/readme.md",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    assert_eq!(files, expected);
}

#[test]
fn export_writes_into_an_empty_directory_and_then_checks_clean() {
    let dir = tempfile::tempdir().unwrap();
    let written = spec::export(dir.path(), spec::DEFAULT_PUBLIC_URL, false).unwrap();
    assert_eq!(written.len(), 6, "{written:?}");
    assert!(spec::export(dir.path(), spec::DEFAULT_PUBLIC_URL, true)
        .unwrap()
        .is_empty());
    // A hand edit is detected.
    let def = dir
        .path()
        .join("connector-definition/apiDefinition.swagger.json");
    let edited = std::fs::read_to_string(&def)
        .unwrap()
        .replace("Audience Insights", "Edited");
    std::fs::write(&def, edited).unwrap();
    assert_eq!(
        spec::export(dir.path(), spec::DEFAULT_PUBLIC_URL, true).unwrap(),
        vec!["connector-definition/apiDefinition.swagger.json".to_string()]
    );
}

// ---------------------------------------------------------------------------------------------
// (b) Microsoft's JSON schemas

/// Removes `//` line comments outside JSON strings (the schemas contain `// TODO` lines, and
/// strings such as `"https://…"` must survive).
fn strip_line_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let (mut in_string, mut escaped) = (false, false);
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
        } else if c == '/' && chars.peek() == Some(&'/') {
            for next in chars.by_ref() {
                if next == '\n' {
                    out.push('\n');
                    break;
                }
            }
        } else {
            if c == '"' {
                in_string = true;
            }
            out.push(c);
        }
    }
    out
}

#[test]
fn comment_stripping_keeps_urls_and_escapes() {
    let text = "{\n  \"a\": \"https://x.example/\\\"//\", // gone\n  \"b\": 1 // too\n}\n";
    let parsed: Value = serde_json::from_str(&strip_line_comments(text)).unwrap();
    assert_eq!(parsed, json!({"a": "https://x.example/\"//", "b": 1}));
}

/// Percent-encodes the characters of `$ref` values that are not allowed in a URI reference
/// (the schemas name definitions like `x-ms-api-annotation<info>`). A JSON pointer in a URI
/// fragment is percent-decoded before use (RFC 6901 §6), so the references are unchanged.
fn encode_refs(v: &mut Value) {
    match v {
        Value::Object(o) => {
            for (k, child) in o.iter_mut() {
                match child {
                    Value::String(r) if k == "$ref" => {
                        *r = r
                            .chars()
                            .map(|c| match c {
                                '<' | '>' | ' ' | '{' | '}' | '|' | '^' | '`' | '"' | '\\' => {
                                    format!("%{:02X}", c as u32)
                                }
                                c => c.to_string(),
                            })
                            .collect();
                    }
                    _ => encode_refs(child),
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(encode_refs),
        _ => {}
    }
}

#[test]
fn ref_encoding_only_touches_invalid_characters() {
    let mut v = json!({"a": {"$ref": "#/definitions/x-ms-api-annotation<info>"},
                       "b": [{"$ref": "http://json-schema.org/draft-04/schema#/properties/title"}],
                       "c": "<kept>"});
    encode_refs(&mut v);
    assert_eq!(
        v,
        json!({"a": {"$ref": "#/definitions/x-ms-api-annotation%3Cinfo%3E"},
               "b": [{"$ref": "http://json-schema.org/draft-04/schema#/properties/title"}],
               "c": "<kept>"})
    );
}

/// A vendored Microsoft schema, ready for the `jsonschema` crate: `//` comments stripped and
/// `$ref`s percent-encoded.
fn schema(name: &str) -> Value {
    let path = root().join("tests/schemas").join(name);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut schema: Value =
        serde_json::from_str(&strip_line_comments(&text)).unwrap_or_else(|e| panic!("{name}: {e}"));
    encode_refs(&mut schema);
    schema
}

fn assert_valid(schema_file: &str, instance_file: &str) {
    let validator = jsonschema::validator_for(&schema(schema_file))
        .unwrap_or_else(|e| panic!("{schema_file} does not compile: {e}"));
    let instance = read_json(instance_file);
    let errors: Vec<String> = validator
        .iter_errors(&instance)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{instance_file} breaks {schema_file}:\n{}",
        errors.join("\n")
    );
}

#[test]
fn api_definition_passes_microsofts_swagger_schema() {
    assert_valid(
        "apiDefinition.swagger.schema.json",
        "connector-definition/apiDefinition.swagger.json",
    );
}

#[test]
fn api_properties_pass_microsofts_schema() {
    assert_valid(
        "paconn-apiProperties.schema.json",
        "connector-definition/apiProperties.json",
    );
}

#[test]
fn settings_pass_microsofts_schema() {
    assert_valid(
        "paconn-settings.schema.json",
        "connector-definition/settings.json",
    );
}

#[test]
fn the_swagger_schema_rejects_a_broken_definition() {
    // Guards against a schema that accepts everything (e.g. a failed comment strip).
    let validator =
        jsonschema::validator_for(&schema("apiDefinition.swagger.schema.json")).unwrap();
    let mut broken = swagger();
    broken["paths"]["/instances"]["get"]["x-ms-visibilty"] = json!("advanced");
    assert!(!validator.is_valid(&broken));
    let mut broken = swagger();
    broken["host"] = json!("https://insights-connector.example.com");
    assert!(!validator.is_valid(&broken));
}

// ---------------------------------------------------------------------------------------------
// (c) connector lint

#[test]
fn the_committed_definition_is_lint_clean() {
    let path = root().join("connector-definition/apiDefinition.swagger.json");
    let bytes = std::fs::read(path).unwrap();
    let doc: Value = serde_json::from_slice(&bytes).unwrap();
    let issues = lint::lint_connector(&doc, Some(&bytes));
    let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert!(issues.is_empty(), "{}", list.join("\n"));
}

#[test]
fn api_properties_match_the_definition_and_the_rules() {
    let props = read_json("connector-definition/apiProperties.json");
    let swagger = swagger();
    let p = &props["properties"];
    assert_eq!(
        swagger["securityDefinitions"],
        json!({"api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key",
                           "description": "API key of the tenant."}})
    );
    let key = &p["connectionParameters"]["api_key"];
    assert_eq!(key["type"], "securestring");
    assert_eq!(key["uiDefinition"]["constraints"]["required"], "true");
    assert_eq!(p["capabilities"], json!(["actions", "triggers"]));
    assert_eq!(p["publisher"], connector::PUBLISHER);
    let color = p["iconBrandColor"].as_str().unwrap();
    assert!(
        color.len() == 7
            && color.starts_with('#')
            && color[1..].chars().all(|c| c.is_ascii_hexdigit()),
        "{color}"
    );
    assert!(!["#ffffff", "#007ee5"].contains(&color.to_lowercase().as_str()));
}

/// Decodes an 8-bit RGB, non-interlaced PNG into rows of pixels.
fn decode_rgb_png(bytes: &[u8]) -> (u32, u32, Vec<Vec<[u8; 3]>>) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    let (mut pos, mut width, mut height, mut idat) = (8, 0, 0, Vec::new());
    while pos < bytes.len() {
        let len = u32::from_be_bytes(bytes[pos..pos + 4].try_into().unwrap()) as usize;
        let kind = &bytes[pos + 4..pos + 8];
        let data = &bytes[pos + 8..pos + 8 + len];
        match kind {
            b"IHDR" => {
                width = u32::from_be_bytes(data[0..4].try_into().unwrap());
                height = u32::from_be_bytes(data[4..8].try_into().unwrap());
                assert_eq!(&data[8..13], &[8, 2, 0, 0, 0], "8-bit RGB, no interlace");
            }
            b"IDAT" => idat.extend_from_slice(data),
            _ => {}
        }
        pos += 12 + len;
    }
    let mut raw = Vec::new();
    flate2::read::ZlibDecoder::new(&idat[..])
        .read_to_end(&mut raw)
        .unwrap();
    let stride = 1 + 3 * width as usize;
    assert_eq!(raw.len(), stride * height as usize);
    let rows = raw
        .chunks(stride)
        .map(|row| {
            assert_eq!(row[0], 0, "the icon uses filter type 0");
            row[1..].chunks(3).map(|p| [p[0], p[1], p[2]]).collect()
        })
        .collect();
    (width, height, rows)
}

#[test]
fn the_icon_is_a_230_px_logo_on_the_brand_colour() {
    let bytes = std::fs::read(root().join("connector-definition/icon.png")).unwrap();
    let (width, height, rows) = decode_rgb_png(&bytes);
    assert_eq!((width, height), (230, 230));
    let hex = connector::ICON_BRAND_COLOR.trim_start_matches('#');
    let brand: [u8; 3] =
        std::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap());
    // A solid background: a 30 px frame of the brand colour around a ~160 px logo.
    for (y, row) in rows.iter().enumerate() {
        for (x, pixel) in row.iter().enumerate() {
            if !(30..200).contains(&x) || !(30..200).contains(&y) {
                assert_eq!(*pixel, brand, "background at ({x}, {y})");
            }
        }
    }
    let logo = rows.iter().flatten().filter(|p| **p != brand).count();
    assert!(logo > 5_000, "the logo covers {logo} pixels");
}

#[test]
fn readme_follows_the_certified_connector_template() {
    let readme = std::fs::read_to_string(root().join("connector-definition/readme.md")).unwrap();
    let headings: Vec<&str> = readme.lines().filter(|l| l.starts_with("## ")).collect();
    assert_eq!(
        headings,
        [
            "## Publisher: Insights Connector Team",
            "## Prerequisites",
            "## Supported Operations",
            "## Obtaining Credentials",
            "## Getting Started",
            "## Known Issues and Limitations",
            "## Deployment Instructions",
        ]
    );
    assert!(readme.starts_with("# Audience Insights\n"));
    for (_, _, op) in operations(&swagger()) {
        let summary = op["summary"].as_str().unwrap();
        assert!(readme.contains(summary), "readme lacks {summary}");
    }
}

// ---------------------------------------------------------------------------------------------
// (d) 3.1 ↔ 2.0 one-to-one

/// `{(name, in)}` of an operation; a 3.1 `requestBody` counts as `("body", "body")`.
fn parameter_keys(op: &Value) -> BTreeSet<(String, String)> {
    let mut keys: BTreeSet<(String, String)> = op["parameters"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap().to_owned(),
                p["in"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    if op.get("requestBody").is_some() {
        keys.insert(("body".into(), "body".into()));
    }
    keys
}

#[test]
fn swagger_operations_and_parameters_match_the_openapi_document_one_to_one() {
    let v3 = openapi();
    let v2 = swagger();
    let index = |doc: &Value| -> BTreeMap<String, (String, String, Value)> {
        operations(doc)
            .into_iter()
            .map(|(path, method, op)| {
                let id = op["operationId"].as_str().expect("operationId").to_owned();
                (id, (path, method, op))
            })
            .collect()
    };
    let (ops3, ops2) = (index(&v3), index(&v2));
    assert_eq!(operations(&v3).len(), ops3.len(), "operationIds are unique");
    assert_eq!(
        ops3.keys().collect::<Vec<_>>(),
        ops2.keys().collect::<Vec<_>>(),
        "same operations"
    );
    for (id, (path3, method3, op3)) in &ops3 {
        let (path2, method2, op2) = &ops2[id];
        assert_eq!((path3, method3), (path2, method2), "{id}");
        assert_eq!(parameter_keys(op3), parameter_keys(op2), "{id}");
        for key in ["summary", "description", "x-ms-visibility", "x-ms-trigger"] {
            assert_eq!(op3.get(key), op2.get(key), "{id} {key}");
        }
        let codes = |op: &Value| -> Vec<String> {
            op["responses"]
                .as_object()
                .unwrap()
                .keys()
                .cloned()
                .collect()
        };
        assert_eq!(codes(op3), codes(op2), "{id} responses");
    }
}

#[test]
fn error_responses_keep_their_problem_schema_in_openapi_only() {
    let v3 = openapi();
    let v2 = swagger();
    for (path, method, op) in operations(&v3) {
        let id = op["operationId"].as_str().unwrap();
        for code in ["401", "429"] {
            assert_eq!(
                op["responses"][code]["content"]["application/problem+json"]["schema"]["$ref"],
                "#/components/schemas/Problem",
                "{id} {code}"
            );
        }
        let responses2 = v2["paths"][&path][&method]["responses"]
            .as_object()
            .unwrap();
        let with_schema: Vec<&String> = responses2
            .iter()
            .filter(|(_, r)| r.get("schema").is_some())
            .map(|(code, _)| code)
            .collect();
        assert!(with_schema.len() <= 1, "{id}: {with_schema:?}");
        assert!(
            with_schema.iter().all(|c| c.starts_with('2')),
            "{id}: {with_schema:?}"
        );
        assert!(
            responses2["429"]["headers"]["Retry-After"].is_object(),
            "{id}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (e) strings and dialect

#[test]
fn every_operation_and_parameter_is_described() {
    for doc in [openapi(), swagger()] {
        for (path, method, op) in operations(&doc) {
            let at = format!("{method} {path}");
            for key in ["operationId", "summary", "description", "x-ms-visibility"] {
                assert!(
                    op[key].as_str().is_some_and(|s| !s.trim().is_empty()),
                    "{at} lacks {key}"
                );
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                let name = p["name"].as_str().unwrap();
                assert!(
                    p["description"].as_str().is_some_and(|s| !s.is_empty()),
                    "{at} parameter {name} lacks a description"
                );
                if p["in"] != "body" {
                    assert!(
                        p["x-ms-summary"].as_str().is_some_and(|s| !s.is_empty()),
                        "{at} parameter {name} lacks x-ms-summary"
                    );
                }
                if p["in"] == "path" {
                    assert_eq!(p["x-ms-url-encoding"], "single", "{at} {name}");
                }
            }
        }
    }
}

/// Every property of every schema in the definition (definitions, bodies, responses and
/// notification contents) has `description` and `x-ms-summary`.
#[test]
fn every_schema_property_has_a_display_name_and_a_description() {
    fn walk(v: &Value, at: &str, missing: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(Value::Object(props)) = o.get("properties") {
                    for (name, prop) in props {
                        for key in ["description", "x-ms-summary"] {
                            if prop[key].as_str().is_none_or(str::is_empty) {
                                missing.push(format!("{at}/properties/{name} lacks {key}"));
                            }
                        }
                    }
                }
                for (k, child) in o {
                    if !matches!(k.as_str(), "example" | "examples" | "default" | "enum") {
                        walk(child, &format!("{at}/{k}"), missing);
                    }
                }
            }
            Value::Array(a) => {
                for (i, child) in a.iter().enumerate() {
                    walk(child, &format!("{at}/{i}"), missing);
                }
            }
            _ => {}
        }
    }
    let doc = swagger();
    let mut missing = Vec::new();
    walk(&doc["definitions"], "/definitions", &mut missing);
    walk(&doc["paths"], "/paths", &mut missing);
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn same_named_parameters_have_the_same_type_and_visibility() {
    // Rule W8 (ParamtersWithSameNameMustHaveSameTypeAndVisibility).
    let mut seen: BTreeMap<String, (Value, Value, String)> = BTreeMap::new();
    for (_, _, op) in operations(&swagger()) {
        let id = op["operationId"].as_str().unwrap().to_owned();
        for p in op["parameters"].as_array().into_iter().flatten() {
            let key = format!("{}:{}", p["in"], p["name"]);
            let shape = (p["type"].clone(), p["x-ms-visibility"].clone());
            match seen.get(&key) {
                Some((t, v, first)) => {
                    assert_eq!((t, v), (&shape.0, &shape.1), "{key}: {id} vs {first}")
                }
                None => {
                    seen.insert(key, (shape.0, shape.1, id.clone()));
                }
            }
        }
    }
}

#[test]
fn pickers_dynamic_schemas_and_paging_are_in_place() {
    let v2 = swagger();
    let op = |id: &str| {
        operations(&v2)
            .into_iter()
            .find(|(_, _, op)| op["operationId"] == id)
            .unwrap_or_else(|| panic!("no {id}"))
            .2
    };
    let param = |id: &str, name: &str| {
        op(id)["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{id} has no {name}"))
    };
    assert_eq!(
        param("GetItem", "instanceId")["x-ms-dynamic-values"]["operationId"],
        "ListInstances"
    );
    assert_eq!(
        param("GetItem", "entityName")["x-ms-dynamic-values"],
        json!({"operationId": "GetEntities", "parameters": {"instanceId": {"parameter": "instanceId"}},
               "value-collection": "value", "value-path": "name", "value-title": "name"})
    );
    for (id, name, source) in [
        ("GetDataSource", "dataSourceId", "ListDataSources"),
        ("GetSegment", "segmentId", "ListSegments"),
        ("GetMeasure", "measureId", "ListMeasures"),
    ] {
        assert_eq!(
            param(id, name)["x-ms-dynamic-values"]["operationId"],
            source
        );
    }
    // Operations that feed pickers have none themselves.
    for id in [
        "GetEntities",
        "ListDataSources",
        "ListSegments",
        "ListMeasures",
        "GetEntitySchema",
    ] {
        for p in op(id)["parameters"].as_array().unwrap() {
            assert!(p.get("x-ms-dynamic-values").is_none(), "{id}");
        }
    }
    let dynamic = json!({"operationId": "GetEntitySchema", "parameters": {
        "instanceId": {"parameter": "instanceId"}, "entityName": {"parameter": "entityName"}}});
    let body = |id: &str| {
        op(id)["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["in"] == "body")
            .unwrap()["schema"]
            .clone()
    };
    assert_eq!(body("CreateItem")["x-ms-dynamic-schema"], dynamic);
    assert_eq!(body("UpdateItem")["x-ms-dynamic-schema"], dynamic);
    assert_eq!(
        op("GetItem")["responses"]["200"]["schema"]["x-ms-dynamic-schema"],
        dynamic
    );
    assert_eq!(
        op("CreateItem")["responses"]["201"]["schema"]["x-ms-dynamic-schema"],
        dynamic
    );
    assert_eq!(
        op("GetItems")["responses"]["200"]["schema"]["properties"]["value"]["items"]
            ["x-ms-dynamic-schema"],
        dynamic
    );
    assert_eq!(
        op("GetItems")["x-ms-pageable"],
        json!({"nextLinkName": "nextLink"})
    );
    assert_eq!(op("GetEntitySchema")["x-ms-visibility"], "internal");
    assert_eq!(op("GetJob")["x-ms-visibility"], "internal");
    let meta = &v2["x-ms-connector-metadata"];
    assert_eq!(
        meta[2],
        json!({"propertyName": "Categories", "propertyValue": "Data;Marketing"})
    );
    assert_eq!(
        v2["info"]["x-ms-api-annotation"],
        json!({"status": "Preview"})
    );
    assert_eq!(v2["info"]["title"], "Audience Insights");
    assert_eq!(v2["host"], "insights-connector.example.com");
    assert_eq!(v2["schemes"], json!(["https"]));
}

#[test]
fn triggers_in_the_table_are_webhook_triggers_with_notification_content() {
    let v2 = swagger();
    for definition in insights_connector::triggers::TRIGGERS {
        let (trigger, schema_name) = (definition.trigger, definition.payload_name());
        let item = &v2["paths"][definition.path];
        assert_eq!(item["post"]["operationId"], trigger.as_str());
        assert_eq!(item["post"]["x-ms-trigger"], "single");
        assert_eq!(
            item["x-ms-notification-content"]["schema"]["$ref"],
            format!("#/definitions/{schema_name}")
        );
    }
}

// ---------------------------------------------------------------------------------------------
// (f) served documents

#[tokio::test]
async fn the_service_serves_both_documents_and_the_package() {
    let app = common::spawn_app().await;
    let r = app
        .send(reqwest::Method::GET, "/openapi.json", None, None)
        .await;
    assert_eq!(r.status, 200);
    let published = spec::document(&spec::openapi()).unwrap();
    assert_eq!(r.json(), published);
    assert_eq!(r.text, spec::to_stable_json(&published));

    let r = app
        .send(
            reqwest::Method::GET,
            "/connector/apiDefinition.swagger.json",
            None,
            None,
        )
        .await;
    assert_eq!(r.status, 200);
    assert!(r.content_type().starts_with("application/json"));
    let served = r.json();
    assert_eq!(served["swagger"], "2.0");
    assert_eq!(served["schemes"], json!(["http"]));
    assert_eq!(
        served["host"],
        app.address.trim_start_matches("http://"),
        "the served definition points at the service itself"
    );
    // Apart from where it points, it is the committed definition.
    let mut committed = swagger();
    for key in ["host", "basePath", "schemes"] {
        committed[key] = served[key].clone();
    }
    assert_eq!(served, committed);

    for (file, content_type) in [
        ("apiProperties.json", "application/json"),
        ("settings.json", "application/json"),
        ("icon.png", "image/png"),
        ("readme.md", "text/markdown"),
    ] {
        let r = app
            .send(
                reqwest::Method::GET,
                &format!("/connector/{file}"),
                None,
                None,
            )
            .await;
        assert_eq!(r.status, 200, "{file}");
        assert!(r.content_type().starts_with(content_type), "{file}");
    }
    app.send(reqwest::Method::GET, "/connector/nothing.json", None, None)
        .await
        .assert_problem(404);
}
