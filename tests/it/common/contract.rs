//! Validates every response the tests receive against the committed OpenAPI document: the status
//! is declared for the operation, the Content-Type is declared, the body is valid against the
//! declared schema and declared required headers (Location on 201/202) are present. It also
//! records which operations the tests exercised.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::sync::{Mutex, OnceLock};

thread_local! {
    /// The operations checked on this thread. A `#[tokio::test]` (current-thread runtime) runs
    /// on its own thread, so this is what that one test exercised, whatever else the binary runs.
    static EXERCISED_ON_THIS_THREAD: RefCell<BTreeSet<String>> = const { RefCell::new(BTreeSet::new()) };
}

use serde_json::Value;

pub struct Contract {
    spec: Value,
    /// (method, template segments, operation pointer)
    routes: Vec<(String, Vec<String>, String)>,
    exercised: Mutex<BTreeSet<String>>,
}

pub fn contract() -> &'static Contract {
    static CONTRACT: OnceLock<Contract> = OnceLock::new();
    CONTRACT.get_or_init(|| {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.json");
        let text = std::fs::read_to_string(path).expect("openapi/openapi.json is committed");
        Contract::new(serde_json::from_str(&text).expect("valid JSON"))
    })
}

impl Contract {
    pub fn new(spec: Value) -> Self {
        let mut routes = Vec::new();
        for (template, item) in spec["paths"].as_object().expect("paths") {
            for (method, _) in item.as_object().unwrap() {
                if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                    let pointer = format!(
                        "/paths/{}/{method}",
                        template.replace('~', "~0").replace('/', "~1")
                    );
                    routes.push((
                        method.to_uppercase(),
                        template.split('/').map(String::from).collect(),
                        pointer,
                    ));
                }
            }
        }
        Self {
            spec,
            routes,
            exercised: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn spec(&self) -> &Value {
        &self.spec
    }

    /// Every operationId of the document.
    pub fn operation_ids(&self) -> BTreeSet<String> {
        self.routes
            .iter()
            .map(|(_, _, p)| {
                self.spec.pointer(p).unwrap()["operationId"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    pub fn exercised(&self) -> BTreeSet<String> {
        self.exercised.lock().unwrap().clone()
    }

    /// The operations checked on the calling thread (by the current-thread test running there):
    /// every integration test shares this binary, so [`Contract::exercised`] also holds what
    /// other tests exercised.
    pub fn exercised_on_this_thread(&self) -> BTreeSet<String> {
        EXERCISED_ON_THIS_THREAD.with(|set| set.borrow().clone())
    }

    /// The operation serving `method path` (literal segments beat parameters).
    pub fn operation(&self, method: &str, path: &str) -> Option<&Value> {
        let parts: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(m, segments, _)| {
                m == method
                    && segments.len() == parts.len()
                    && segments
                        .iter()
                        .zip(&parts)
                        .all(|(s, p)| (s.starts_with('{') && !p.is_empty()) || s == p)
            })
            .max_by_key(|(_, segments, _)| segments.iter().filter(|s| !s.starts_with('{')).count())
            .and_then(|(_, _, pointer)| self.spec.pointer(pointer))
    }

    /// Panics with a clear message when the response breaks the contract. Responses from
    /// operational endpoints (no operation in the document) are not checked.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        status: u16,
        headers: &reqwest::header::HeaderMap,
        body: &str,
    ) {
        let Some(op) = self.operation(method, path) else {
            return;
        };
        let op_id = op["operationId"].as_str().unwrap_or("?").to_string();
        self.exercised.lock().unwrap().insert(op_id.clone());
        EXERCISED_ON_THIS_THREAD.with(|set| set.borrow_mut().insert(op_id.clone()));
        let responses = &op["responses"];
        let response = responses
            .get(status.to_string())
            .or_else(|| responses.get("default"))
            .unwrap_or_else(|| {
                panic!(
                    "{op_id}: status {status} is not declared (declared: {:?}); body: {body}",
                    responses.as_object().map(|o| o.keys().collect::<Vec<_>>())
                )
            });
        if let Some(declared) = response.get("headers").and_then(Value::as_object) {
            for (name, h) in declared {
                let required = h.get("required").and_then(Value::as_bool).unwrap_or(false)
                    || (name.eq_ignore_ascii_case("location") && (status == 201 || status == 202));
                if required {
                    assert!(
                        headers.contains_key(name.as_str()),
                        "{op_id}: {status} lacks the {name} header"
                    );
                }
            }
        }
        let content = response.get("content").and_then(Value::as_object);
        if body.is_empty() {
            return;
        }
        let content = content.unwrap_or_else(|| {
            panic!("{op_id}: {status} declares no content but the body is {body}")
        });
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap()
            .trim()
            .to_string();
        let media = content.get(&content_type).unwrap_or_else(|| {
            panic!(
                "{op_id}: {status} answered Content-Type '{content_type}', declared: {:?}",
                content.keys().collect::<Vec<_>>()
            )
        });
        if let Some(schema) = media.get("schema") {
            let instance: Value = serde_json::from_str(body)
                .unwrap_or_else(|e| panic!("{op_id}: {status} body is not JSON ({e}): {body}"));
            let errors = self.validate(schema, &instance);
            assert!(
                errors.is_empty(),
                "{op_id}: {status} body does not match its schema:\n{}\nbody: {body}",
                errors.join("\n")
            );
        }
    }

    /// Validates `instance` against a schema of the document (its `$ref`s resolve inside it).
    pub fn validate(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let mut root = self.spec.clone();
        let obj = root.as_object_mut().unwrap();
        obj.insert(
            "$schema".into(),
            "https://json-schema.org/draft/2020-12/schema".into(),
        );
        obj.insert("x-validate".into(), schema.clone());
        obj.insert("$ref".into(), "#/x-validate".into());
        let validator = jsonschema::validator_for(&root).expect("schema compiles");
        validator
            .iter_errors(instance)
            .map(|e| format!("  at {}: {}", e.instance_path(), e))
            .collect()
    }
}
