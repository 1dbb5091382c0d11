//! A client that knows the service only through `connector-definition/apiDefinition.swagger.json`
//! and uses it the way Power Automate does: operations by `operationId`, `host`/`basePath`
//! replaced by the test app's address, the API key in the header named by the `apiKey` security
//! definition, `x-ms-dynamic-values` dropdowns, `x-ms-dynamic-schema`, `x-ms-pageable` next links,
//! the 202 + `Location` polling pattern and webhook triggers (`x-ms-notification-url`, unsubscribe
//! by `DELETE` on the subscribe answer's `Location`).
//!
//! Every answer is checked against the definition (declared status, content type, `Location` on
//! 201/202, body against the response schema) and against `openapi/openapi.json`.

use std::collections::HashMap;
use std::time::Duration;

use reqwest::header::HeaderMap;
use reqwest::Method;
use serde_json::{json, Map, Value};

/// Longest wait between two polls of a 202 `Location`, whatever `Retry-After` says (keeps the
/// test fast; the platform itself honours the header).
const RETRY_AFTER_CAP: Duration = Duration::from_millis(100);
const METHODS: [&str; 7] = ["get", "put", "post", "delete", "patch", "head", "options"];
/// The extensions this client understands; any other `x-ms-dynamic-*` fails the sweep.
pub const DYNAMIC_VALUES: &str = "x-ms-dynamic-values";
pub const DYNAMIC_SCHEMA: &str = "x-ms-dynamic-schema";

/// One answer, read whole, with the operation of the definition it belongs to.
#[derive(Debug, Clone)]
pub struct Response {
    pub op_id: String,
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Response {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}: body is not JSON ({e}): {}", self.op_id, self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The `Location` header, which must be an absolute URL.
    pub fn location(&self) -> String {
        let location = self
            .header("location")
            .unwrap_or_else(|| panic!("{}: {} without Location", self.op_id, self.status));
        assert!(
            reqwest::Url::parse(location).is_ok(),
            "{}: Location is not absolute: {location}",
            self.op_id
        );
        location.to_string()
    }
}

/// An operation of the definition.
pub struct Op<'a> {
    pub id: &'a str,
    pub method: Method,
    pub template: &'a str,
    /// The path item (holds path-level parameters and `x-ms-notification-content`).
    pub item: &'a Value,
    pub value: &'a Value,
}

/// A trigger subscription as the platform keeps it: where to `DELETE` to unsubscribe.
#[derive(Debug, Clone)]
pub struct Subscription {
    pub op_id: String,
    pub location: String,
    pub callback: String,
}

pub struct Connector {
    doc: Value,
    base: reqwest::Url,
    auth: (String, String),
    client: reqwest::Client,
}

impl Connector {
    /// Reads the committed definition; requests go to `address` instead of its `host`.
    pub fn load(address: &str, key: &str) -> Self {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/connector-definition/apiDefinition.swagger.json"
        );
        let text = std::fs::read_to_string(path).expect("the connector definition is committed");
        let doc: Value = serde_json::from_str(&text).expect("the definition is JSON");
        assert_eq!(doc["swagger"], "2.0");
        let base_path = doc["basePath"].as_str().unwrap_or("/");
        let base = reqwest::Url::parse(&format!("{}{base_path}", address.trim_end_matches('/')))
            .expect("test address");
        // The connection's credentials go where the first security requirement says.
        let scheme = doc["security"][0]
            .as_object()
            .and_then(|o| o.keys().next())
            .expect("a root security requirement")
            .clone();
        let definition = &doc["securityDefinitions"][&scheme];
        assert_eq!(definition["type"], "apiKey", "{scheme}: {definition}");
        assert_eq!(definition["in"], "header", "{scheme}: {definition}");
        let header = definition["name"]
            .as_str()
            .expect("apiKey name")
            .to_string();
        Self {
            doc,
            base,
            auth: (header, key.to_string()),
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .build()
                .unwrap(),
        }
    }

    pub fn operations(&self) -> Vec<Op<'_>> {
        let mut ops = Vec::new();
        for (template, item) in self.doc["paths"].as_object().expect("paths") {
            for (method, value) in item.as_object().expect("path item") {
                if METHODS.contains(&method.as_str()) {
                    ops.push(Op {
                        id: value["operationId"].as_str().expect("operationId"),
                        method: method.to_uppercase().parse().unwrap(),
                        template,
                        item,
                        value,
                    });
                }
            }
        }
        ops
    }

    pub fn op(&self, op_id: &str) -> Op<'_> {
        self.operations()
            .into_iter()
            .find(|o| o.id == op_id)
            .unwrap_or_else(|| panic!("the connector definition has no operation `{op_id}`"))
    }

    /// Path-level and operation-level parameters (the latter win), `$ref`s resolved.
    pub fn parameters(&self, op: &Op) -> Vec<Value> {
        let mut params: Vec<Value> = Vec::new();
        for p in [&op.item["parameters"], &op.value["parameters"]]
            .into_iter()
            .filter_map(Value::as_array)
            .flatten()
        {
            let p = self.resolve(p);
            params.retain(|q| q["name"] != p["name"] || q["in"] != p["in"]);
            params.push(p);
        }
        params
    }

    /// `schema` with every `$ref` (into `definitions`, `parameters`, `responses`) inlined.
    pub fn resolve(&self, schema: &Value) -> Value {
        self.resolve_at(schema, 0)
    }

    fn resolve_at(&self, v: &Value, depth: usize) -> Value {
        assert!(depth < 200, "$ref cycle or schema too deep");
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    let target = r
                        .strip_prefix('#')
                        .and_then(|p| self.doc.pointer(p))
                        .unwrap_or_else(|| panic!("unresolvable $ref {r}"));
                    return self.resolve_at(target, depth + 1);
                }
                Value::Object(
                    o.iter()
                        .map(|(k, x)| (k.clone(), self.resolve_at(x, depth + 1)))
                        .collect(),
                )
            }
            Value::Array(a) => {
                Value::Array(a.iter().map(|x| self.resolve_at(x, depth + 1)).collect())
            }
            other => other.clone(),
        }
    }

    /// A Swagger 2.0 schema as a draft-4 JSON Schema: `$ref`s inlined, `x-nullable: true` allows
    /// null, other `x-` keys dropped.
    pub fn json_schema(&self, schema: &Value) -> Value {
        fn convert(v: &Value) -> Value {
            let Value::Object(o) = v else {
                return v.clone();
            };
            let mut out = Map::new();
            for (k, x) in o.iter().filter(|(k, _)| !k.starts_with("x-")) {
                let x = match (k.as_str(), x) {
                    ("properties" | "definitions" | "patternProperties", Value::Object(m)) => {
                        Value::Object(m.iter().map(|(n, s)| (n.clone(), convert(s))).collect())
                    }
                    ("items" | "additionalProperties" | "not", Value::Object(_)) => convert(x),
                    ("items" | "allOf" | "anyOf" | "oneOf", Value::Array(a)) => {
                        Value::Array(a.iter().map(convert).collect())
                    }
                    _ => x.clone(),
                };
                out.insert(k.clone(), x);
            }
            if o.get("x-nullable") == Some(&Value::Bool(true)) {
                json!({"anyOf": [{"type": "null"}, out]})
            } else {
                Value::Object(out)
            }
        }
        let mut s = convert(&self.resolve(schema));
        s["$schema"] = json!("http://json-schema.org/draft-04/schema#");
        s
    }

    /// Errors of `instance` against a Swagger schema of the definition (empty when valid).
    pub fn validate(&self, schema: &Value, instance: &Value) -> Vec<String> {
        let schema = self.json_schema(schema);
        let validator = jsonschema::draft4::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("schema does not compile ({e}): {schema}"));
        validator
            .iter_errors(instance)
            .map(|e| format!("  at '{}': {e}", e.instance_path()))
            .collect()
    }

    /// The operation serving `method url` (literal segments beat parameters).
    fn op_for(&self, method: &Method, url: &reqwest::Url) -> Option<Op<'_>> {
        let base = self.base.path().trim_end_matches('/');
        let path = url.path().strip_prefix(base)?;
        let parts: Vec<&str> = path.split('/').collect();
        self.operations()
            .into_iter()
            .filter(|o| {
                let segments: Vec<&str> = o.template.split('/').collect();
                o.method == method
                    && segments.len() == parts.len()
                    && segments
                        .iter()
                        .zip(&parts)
                        .all(|(s, p)| (s.starts_with('{') && !p.is_empty()) || s == p)
            })
            .max_by_key(|o| {
                o.template
                    .split('/')
                    .filter(|s| !s.starts_with('{'))
                    .count()
            })
    }

    /// Calls an operation. `params` maps parameter names to values (the body parameter by its
    /// name, e.g. `"body"`); unknown names and missing required parameters fail the test.
    pub async fn call(&self, op_id: &str, params: Value) -> Response {
        let op = self.op(op_id);
        let mut given = match params {
            Value::Object(o) => o,
            Value::Null => Map::new(),
            other => panic!("{op_id}: parameters must be an object, not {other}"),
        };
        let mut path_values = HashMap::new();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        let mut body = None;
        for p in self.parameters(&op) {
            let name = p["name"].as_str().expect("parameter name");
            // Internal parameters with a default are sent by the platform itself.
            let value = given.remove(name).or_else(|| {
                (p["x-ms-visibility"] == "internal")
                    .then(|| p.get("default").cloned())
                    .flatten()
            });
            let Some(value) = value else {
                assert!(
                    p["required"] != true,
                    "{op_id}: required parameter `{name}` has no value"
                );
                continue;
            };
            match p["in"].as_str() {
                Some("path") => {
                    path_values.insert(name.to_string(), scalar(&value));
                }
                Some("query") => query.push((name.to_string(), scalar(&value))),
                Some("header") => headers.push((name.to_string(), scalar(&value))),
                Some("body") => {
                    let errors = self.validate(&p["schema"], &value);
                    assert!(
                        errors.is_empty(),
                        "{op_id}: the body does not match the definition:\n{}\n{value}",
                        errors.join("\n")
                    );
                    body = Some(value);
                }
                other => panic!("{op_id}: parameters in {other:?} are not supported"),
            }
        }
        assert!(
            given.is_empty(),
            "{op_id} has no parameters {:?}",
            given.keys().collect::<Vec<_>>()
        );
        let mut url = self.base.clone();
        {
            let mut segments = url.path_segments_mut().expect("base URL");
            segments.pop_if_empty();
            for s in op.template.trim_start_matches('/').split('/') {
                match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => segments.push(
                        path_values
                            .get(name)
                            .unwrap_or_else(|| panic!("{op_id}: `{name}` is not a path parameter")),
                    ),
                    None => segments.push(s),
                };
            }
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(&query);
        }
        let r = self
            .send_with(op.method.clone(), url.as_str(), &headers, body.as_ref())
            .await;
        assert_eq!(r.op_id, op_id, "{url} was served as another operation");
        r
    }

    /// A plain request to an absolute URL the service handed out (next link, Location).
    pub async fn send(&self, method: Method, url: &str, body: Option<&Value>) -> Response {
        self.send_with(method, url, &[], body).await
    }

    async fn send_with(
        &self,
        method: Method,
        url: &str,
        headers: &[(String, String)],
        body: Option<&Value>,
    ) -> Response {
        let parsed = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("{url}: {e}"));
        let op = self.op_for(&method, &parsed).unwrap_or_else(|| {
            panic!("{method} {url} is no operation of the connector definition")
        });
        let mut req = self
            .client
            .request(method.clone(), parsed.clone())
            .header(&self.auth.0, &self.auth.1);
        for (n, v) in headers {
            req = req.header(n, v);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let r = Response {
            op_id: op.id.to_string(),
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap_or_default(),
        };
        self.check(&op, &r);
        crate::common::contract::contract().check(
            method.as_str(),
            parsed.path(),
            r.status,
            &r.headers,
            &r.text,
        );
        r
    }

    /// The answer is what the definition declares for it.
    fn check(&self, op: &Op, r: &Response) {
        let id = op.id;
        let responses = &op.value["responses"];
        let declared = responses
            .get(r.status.to_string())
            .or_else(|| responses.get("default"))
            .map(|d| self.resolve(d))
            .unwrap_or_else(|| {
                panic!(
                    "{id}: status {} is not in the definition; body: {}",
                    r.status, r.text
                )
            });
        if matches!(r.status, 201 | 202) && declared["headers"].get("Location").is_some() {
            r.location();
        }
        if r.text.is_empty() {
            return;
        }
        let produces = op
            .value
            .get("produces")
            .unwrap_or(&self.doc["produces"])
            .as_array()
            .cloned()
            .unwrap_or_default();
        let content_type = r.header("content-type").unwrap_or("");
        let media = content_type.split(';').next().unwrap().trim();
        assert!(
            produces.iter().any(|p| p == media),
            "{id}: {} answered {content_type}, the definition produces {produces:?}",
            r.status
        );
        if let Some(schema) = declared.get("schema") {
            let errors = self.validate(schema, &r.json());
            assert!(
                errors.is_empty(),
                "{id}: {} does not match the definition:\n{}\nbody: {}",
                r.status,
                errors.join("\n"),
                r.text
            );
        }
    }

    /// Power Automate's asynchronous pattern: while the answer is 202, wait `Retry-After`
    /// (capped) and GET its `Location`; returns the final 200.
    pub async fn call_async(&self, op_id: &str, params: Value) -> Response {
        let mut r = self.call(op_id, params).await;
        let mut polls = 0;
        while r.status == 202 {
            let location = r.location();
            let wait = r
                .header("retry-after")
                .and_then(|s| s.trim().parse::<u64>().ok())
                .map_or(RETRY_AFTER_CAP, Duration::from_secs)
                .min(RETRY_AFTER_CAP);
            tokio::time::sleep(wait).await;
            r = self.send(Method::GET, &location, None).await;
            polls += 1;
            assert!(polls < 600, "{op_id}: still 202 after {polls} polls");
        }
        assert_eq!(
            r.status, 200,
            "{op_id} finished with {}: {}",
            r.status, r.text
        );
        r
    }

    /// Every item of an `x-ms-pageable` operation: `value` of the first answer, then GET each
    /// next link until there is none.
    pub async fn pages(&self, op_id: &str, params: Value) -> Vec<Value> {
        let op = self.op(op_id);
        let next_name = op.value["x-ms-pageable"]["nextLinkName"]
            .as_str()
            .unwrap_or_else(|| panic!("{op_id} is not x-ms-pageable"))
            .to_string();
        let mut r = self.call(op_id, params).await;
        let mut items = Vec::new();
        for page in 1.. {
            assert_eq!(r.status, 200, "{op_id} page {page}: {}", r.text);
            let body = r.json();
            let value = body["value"].as_array();
            items.extend(value.expect("a page has `value`").iter().cloned());
            let next = match body.get(&next_name) {
                None | Some(Value::Null) => return items,
                Some(Value::String(next)) => next.clone(),
                Some(other) => panic!("{op_id}: {next_name} is {other}"),
            };
            let parsed = reqwest::Url::parse(&next)
                .unwrap_or_else(|e| panic!("{op_id}: {next_name} {next} is not absolute: {e}"));
            assert_eq!(
                parsed.origin(),
                self.base.origin(),
                "{op_id}: {next_name} leaves the connector's host"
            );
            assert!(page < 1000, "{op_id}: endless next links");
            r = self.send(Method::GET, &next, None).await;
            assert_eq!(r.op_id, op_id, "{next_name} {next} is another operation");
        }
        unreachable!()
    }

    /// Calls the operation an `x-ms-dynamic-values` / `x-ms-dynamic-schema` names, with its
    /// parameters: `{"parameter": p}` from `chosen`, literals as given.
    async fn call_dynamic(&self, ext: &Value, chosen: &Map<String, Value>) -> Value {
        let op_id = ext["operationId"]
            .as_str()
            .unwrap_or_else(|| panic!("unsupported dynamic extension {ext}"));
        let mut params = Map::new();
        for (name, spec) in ext["parameters"].as_object().into_iter().flatten() {
            let value = match spec.get("parameter").and_then(Value::as_str) {
                Some(p) => chosen
                    .get(p)
                    .cloned()
                    .unwrap_or_else(|| panic!("{op_id}: `{p}` has no value yet ({ext})")),
                None => spec.clone(),
            };
            params.insert(name.clone(), value);
        }
        let r = self.call(op_id, Value::Object(params)).await;
        assert_eq!(r.status, 200, "{op_id} (dynamic): {}", r.text);
        r.json()
    }

    /// The dropdown of an `x-ms-dynamic-values`: `(value, title)` of every entry; the
    /// `value-collection`, `value-path` and `value-title` paths must exist in the answer.
    pub async fn dynamic_values(
        &self,
        ext: &Value,
        chosen: &Map<String, Value>,
    ) -> Vec<(Value, String)> {
        let answer = self.call_dynamic(ext, chosen).await;
        let at = |v: &Value, key: &str| match ext.get(key).and_then(Value::as_str) {
            Some(path) => v.pointer(&format!("/{path}")).cloned().unwrap_or_else(|| {
                panic!(
                    "{key} `{path}` is not in the answer of {}: {v}",
                    ext["operationId"]
                )
            }),
            None => v.clone(),
        };
        let collection = at(&answer, "value-collection");
        let entries = collection
            .as_array()
            .unwrap_or_else(|| panic!("{ext}: the collection is not an array: {answer}"));
        entries
            .iter()
            .map(|entry| {
                let value = at(entry, "value-path");
                assert!(!value.is_null(), "{ext}: null value in {entry}");
                let title = match at(entry, "value-title") {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (value, title)
            })
            .collect()
    }

    /// The answer of an `x-ms-dynamic-schema` (at its `value-path`), which must be a JSON
    /// Schema object.
    pub async fn dynamic_schema(&self, ext: &Value, chosen: &Map<String, Value>) -> Value {
        let answer = self.call_dynamic(ext, chosen).await;
        let schema = match ext.get("value-path").and_then(Value::as_str) {
            Some(path) => answer
                .pointer(&format!("/{path}"))
                .cloned()
                .unwrap_or_else(|| panic!("value-path `{path}` is not in {answer}")),
            None => answer,
        };
        assert!(schema.is_object(), "{ext}: not a schema object: {schema}");
        jsonschema::validator_for(&schema)
            .unwrap_or_else(|e| panic!("{ext}: the answer is not a JSON Schema ({e}): {schema}"));
        schema
    }

    /// Fills an operation's inputs the way a maker does in the designer: a value
    /// `{"$pick": "Title"}` of a parameter or of a top-level body property chooses the entry
    /// with that title from the field's `x-ms-dynamic-values` dropdown, which is fed by the
    /// parameters filled before it (declaration order). Returns the parameters for [`call`].
    pub async fn fill(&self, op_id: &str, given: Value) -> Value {
        let op = self.op(op_id);
        let mut given = given.as_object().cloned().unwrap_or_default();
        let mut filled = Map::new();
        for p in self.parameters(&op) {
            let name = p["name"].as_str().unwrap().to_string();
            let Some(value) = given.remove(&name) else {
                continue;
            };
            let value = if p["in"] == "body" {
                let schema = self.resolve(&p["schema"]);
                let mut body = value.as_object().cloned().expect("an object body");
                for (k, v) in body.iter_mut() {
                    *v = self
                        .pick(&schema["properties"][k.as_str()], v.clone(), &filled)
                        .await;
                }
                Value::Object(body)
            } else {
                self.pick(&p, value, &filled).await
            };
            filled.insert(name, value);
        }
        assert!(
            given.is_empty(),
            "{op_id} has no parameters {:?}",
            given.keys().collect::<Vec<_>>()
        );
        Value::Object(filled)
    }

    async fn pick(&self, field: &Value, value: Value, chosen: &Map<String, Value>) -> Value {
        let Some(title) = value.get("$pick").and_then(Value::as_str) else {
            return value;
        };
        let ext = field
            .get(DYNAMIC_VALUES)
            .unwrap_or_else(|| panic!("`{title}`: the field has no dropdown: {field}"));
        let options = self.dynamic_values(ext, chosen).await;
        options
            .iter()
            .find(|(_, t)| t == title)
            .map(|(v, _)| v.clone())
            .unwrap_or_else(|| panic!("no `{title}` in the dropdown of {ext}: {options:?}"))
    }

    /// The `x-ms-dynamic-schema` of an operation's body parameter, fetched with `params`.
    pub async fn body_schema(&self, op_id: &str, params: &Value) -> Option<Value> {
        let op = self.op(op_id);
        let body = self
            .parameters(&op)
            .into_iter()
            .find(|p| p["in"] == "body")?;
        let ext = self.resolve(&body["schema"]).get(DYNAMIC_SCHEMA)?.clone();
        Some(self.dynamic_schema(&ext, params.as_object().unwrap()).await)
    }

    /// Every `x-ms-dynamic-values` / `x-ms-dynamic-schema` as `(operation, extension)`, found
    /// through the operations (parameters, body and response schemas with `$ref`s resolved).
    /// Fails when the document holds one that no operation reaches, or another
    /// `x-ms-dynamic-*` extension this client does not know.
    pub fn dynamic_extensions(&self) -> Vec<(String, Value)> {
        fn collect(v: &Value, out: &mut Vec<Value>) {
            match v {
                Value::Object(o) => {
                    for (k, x) in o {
                        if k == DYNAMIC_VALUES || k == DYNAMIC_SCHEMA {
                            out.push(json!({ k: x }));
                        } else {
                            assert!(!k.starts_with("x-ms-dynamic-"), "unsupported {k}");
                            collect(x, out);
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for op in self.operations() {
            let mut within = Vec::new();
            for p in self.parameters(&op) {
                collect(&p, &mut within);
            }
            for r in op.value["responses"].as_object().into_iter().flatten() {
                collect(&self.resolve(r.1), &mut within);
            }
            found.extend(within.into_iter().map(|e| (op.id.to_string(), e)));
        }
        let mut raw = Vec::new();
        collect(&self.doc, &mut raw);
        for e in &raw {
            assert!(
                found.iter().any(|(_, f)| f == e),
                "{e} is in the definition but no operation reaches it"
            );
        }
        found
    }

    /// Subscribes like the platform on saving a flow: the body property marked
    /// `x-ms-notification-url` gets `callback`; expects 201 with an absolute `Location`.
    pub async fn subscribe(&self, op_id: &str, params: Value, callback: &str) -> Subscription {
        let op = self.op(op_id);
        assert!(
            op.value.get("x-ms-trigger").is_some(),
            "{op_id} is no trigger"
        );
        let body = self
            .parameters(&op)
            .into_iter()
            .find(|p| p["in"] == "body")
            .unwrap_or_else(|| panic!("{op_id}: a webhook trigger needs a body parameter"));
        let schema = self.resolve(&body["schema"]);
        let url_property = schema["properties"]
            .as_object()
            .into_iter()
            .flatten()
            .find(|(_, p)| p["x-ms-notification-url"] == true)
            .map(|(k, _)| k.clone())
            .unwrap_or_else(|| panic!("{op_id}: no body property is marked x-ms-notification-url"));
        let mut params = params;
        let name = body["name"].as_str().unwrap();
        if params.get(name).is_none() {
            params[name] = json!({});
        }
        params[name][&url_property] = json!(callback);
        let r = self.call(op_id, params).await;
        assert_eq!(r.status, 201, "{op_id}: {}", r.text);
        Subscription {
            op_id: op_id.to_string(),
            location: r.location(),
            callback: callback.to_string(),
        }
    }

    /// Unsubscribes like the platform: a plain `DELETE` on the subscription's `Location`.
    pub async fn unsubscribe(&self, sub: &Subscription) -> Response {
        let r = self.send(Method::DELETE, &sub.location, None).await;
        assert!(
            (200..300).contains(&r.status),
            "DELETE {}: {} {}",
            sub.location,
            r.status,
            r.text
        );
        r
    }

    /// The path-level `x-ms-notification-content` schema of a trigger.
    pub fn notification_schema(&self, op_id: &str) -> Value {
        self.op(op_id).item["x-ms-notification-content"]["schema"]
            .as_object()
            .map(|o| Value::Object(o.clone()))
            .unwrap_or_else(|| panic!("{op_id}: no x-ms-notification-content schema"))
    }

    /// Operation ids of the webhook triggers.
    pub fn triggers(&self) -> Vec<String> {
        self.operations()
            .iter()
            .filter(|o| o.value.get("x-ms-trigger").is_some())
            .map(|o| o.id.to_string())
            .collect()
    }

    /// Operation ids of the `x-ms-pageable` operations.
    pub fn pageable(&self) -> Vec<String> {
        self.operations()
            .iter()
            .filter(|o| o.value.get("x-ms-pageable").is_some())
            .map(|o| o.id.to_string())
            .collect()
    }

    /// Whether `op_id` declares a parameter `name` other than its body.
    pub fn has_parameter(&self, op_id: &str, name: &str) -> bool {
        self.parameters(&self.op(op_id))
            .iter()
            .any(|p| p["name"] == name && p["in"] != "body")
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
