//! Spec step: the connector lint, the offline-checkable Power Automate connector rules
//! (certification, swagger validator and webhook trigger rules) that a JSON schema cannot
//! express. Works on the Swagger 2.0 JSON alone; may use `spec::swagger2` in tests only.
//!
//! Rule names follow Microsoft's swagger validator where one is documented
//! (e.g. `OperationIdSanitized`, `DefaultResponseHasSchema`); the others are ours.
//! Everything is reported as an issue — including the validator's warning-level rules such as
//! `OperationHasManyResponsesWithSchema` — because the generated connector aims for zero.
//!
//! Deliberate choices:
//! * `$ref` may point at `#/definitions/X`, `#/parameters/X` or `#/responses/X` (all three are
//!   valid in Swagger 2.0 connectors) and must resolve; nothing may sit next to a `$ref`.
//! * An operation with `x-ms-trigger` is treated as a webhook trigger unless it declares
//!   `x-ms-trigger-metadata.mode == "polling"`.
//! * The unsubscribe rule (a webhook's `Location` must have a DELETE to answer it) is checked
//!   generically: some `delete` operation marked `x-ms-visibility: internal` must exist in the
//!   document.
//! * `operationId` must be ASCII alphanumeric (no `_`), and path parameters must use
//!   `x-ms-url-encoding: "single"` exactly.
//! * The file size limit is 1,000,000 bytes (decimal "1 MB", the stricter reading).
//! * The `x-ms-*` whitelist is positional (root, info, path item, operation, parameter, schema,
//!   response, header): each extension only where Microsoft's extension reference allows it.

use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};

/// One rule violation. `pointer` is a JSON pointer into the swagger (`""` = document/file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LintIssue {
    pub pointer: String,
    pub rule: &'static str,
    pub message: String,
}

impl std::fmt::Display for LintIssue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at `{}`: {}", self.rule, self.pointer, self.message)
    }
}

/// Largest accepted `apiDefinition.swagger.json` (the limit is "less than 1 MB").
pub const MAX_FILE_BYTES: usize = 1_000_000;
pub const MAX_OPERATIONS: usize = 256;
pub const MAX_TITLE_CHARS: usize = 30;
pub const MAX_SUMMARY_CHARS: usize = 80;

/// Allowed values of the `Categories` connector metadata (the certification's list).
pub const ALLOWED_CATEGORIES: [&str; 19] = [
    "AI",
    "Business Management",
    "Business Intelligence",
    "Collaboration",
    "Commerce",
    "Communication",
    "Content and Files",
    "Finance",
    "Data",
    "Human Resources",
    "Internet of Things",
    "IT Operations",
    "Lifestyle and Entertainment",
    "Marketing",
    "Productivity",
    "Sales and CRM",
    "Security",
    "Social Media",
    "Website",
];

const HTTP_METHODS: [&str; 7] = ["get", "put", "post", "delete", "options", "head", "patch"];
const VISIBILITY_VALUES: [&str; 3] = ["important", "advanced", "internal"];
const NEXT_LINK_NAMES: [&str; 2] = ["nextLink", "@odata.nextLink"];
const DYNAMIC_EXTENSIONS: [&str; 4] = [
    "x-ms-dynamic-values",
    "x-ms-dynamic-schema",
    "x-ms-dynamic-list",
    "x-ms-dynamic-properties",
];
const PRODUCT_NAMES: [&str; 8] = [
    "power automate",
    "power apps",
    "powerapps",
    "logic apps",
    "microsoft flow",
    "power platform",
    "copilot studio",
    "power virtual agents",
];

/// Where an `x-ms-*` key sits; decides which extensions are allowed there.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Position {
    Root,
    Info,
    PathItem,
    Operation,
    BodyParameter,
    PathOrQueryParameter,
    HeaderParameter,
    Schema,
    Response,
    Header,
    Other,
}

fn allowed_extensions(pos: Position) -> &'static [&'static str] {
    const NON_BODY_PARAM: &[&str] = &[
        "x-ms-summary",
        "x-ms-visibility",
        "x-ms-url-encoding",
        "x-ms-dynamic-values",
        "x-ms-dynamic-list",
        "x-ms-dynamic-tree",
        "x-ms-enum-values",
        "x-ms-test-value",
        "x-ms-trigger-value",
        "x-ms-localizeDefaultValue",
    ];
    match pos {
        Position::Root => &["x-ms-capabilities", "x-ms-connector-metadata", "x-ms-docs"],
        Position::Info => &["x-ms-api-annotation", "x-ms-deployment-version"],
        Position::PathItem => &["x-ms-notification-content"],
        Position::Operation => &[
            "x-ms-visibility",
            "x-ms-api-annotation",
            "x-ms-operation-context",
            "x-ms-capabilities",
            "x-ms-trigger",
            "x-ms-trigger-hint",
            "x-ms-trigger-metadata",
            "x-ms-notification",
            "x-ms-pageable",
            "x-ms-safe-operation",
            "x-ms-no-generic-test",
        ],
        Position::BodyParameter => &["x-ms-summary", "x-ms-visibility", "x-ms-test-value"],
        Position::PathOrQueryParameter => NON_BODY_PARAM,
        Position::HeaderParameter => &[
            "x-ms-summary",
            "x-ms-visibility",
            "x-ms-dynamic-values",
            "x-ms-dynamic-list",
            "x-ms-enum-values",
            "x-ms-test-value",
            "x-ms-trigger-value",
            "x-ms-localizeDefaultValue",
        ],
        Position::Schema => &[
            "x-ms-summary",
            "x-ms-visibility",
            "x-ms-dynamic-values",
            "x-ms-dynamic-list",
            "x-ms-dynamic-schema",
            "x-ms-dynamic-properties",
            "x-ms-dynamic-tree",
            "x-ms-enum-values",
            "x-ms-test-value",
            "x-ms-media-kind",
            "x-ms-localizeDefaultValue",
            "x-ms-notification-url",
        ],
        Position::Response => &["x-ms-summary"],
        Position::Header => &["x-ms-summary", "x-ms-visibility"],
        Position::Other => &[],
    }
}

fn is_known_extension(key: &str) -> bool {
    [
        Position::Root,
        Position::Info,
        Position::PathItem,
        Position::Operation,
        Position::PathOrQueryParameter,
        Position::Schema,
    ]
    .iter()
    .any(|p| allowed_extensions(*p).contains(&key))
}

/// Lints a Swagger 2.0 connector definition. `raw_file_bytes`, when given, are the exact bytes
/// that will be written as `apiDefinition.swagger.json` (encoding and size checks).
/// Returns an empty vector when the definition is clean.
pub fn lint_connector(swagger: &Value, raw_file_bytes: Option<&[u8]>) -> Vec<LintIssue> {
    let mut linter = Linter {
        doc: swagger,
        issues: Vec::new(),
    };
    if let Some(bytes) = raw_file_bytes {
        linter.check_file(bytes);
    }
    linter.check_version();
    linter.check_info();
    linter.check_transport();
    linter.check_metadata();
    linter.check_security();
    let ops = collect_operations(swagger);
    linter.check_operations(&ops);
    linter.check_refs(swagger, "");
    linter.check_extensions();
    linter.check_dynamic(swagger, "", &ops);

    let mut seen = HashSet::new();
    linter
        .issues
        .into_iter()
        .filter(|i| seen.insert((i.pointer.clone(), i.rule, i.message.clone())))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// helpers

fn child(ptr: &str, token: &str) -> String {
    format!("{ptr}/{}", token.replace('~', "~0").replace('/', "~1"))
}

fn str_of(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str)
}

fn non_empty_str(v: Option<&Value>) -> Option<&str> {
    str_of(v).filter(|s| !s.trim().is_empty())
}

fn is_true(v: Option<&Value>) -> bool {
    v == Some(&Value::Bool(true))
}

fn is_internal(o: &Map<String, Value>) -> bool {
    str_of(o.get("x-ms-visibility")) == Some("internal")
}

fn required_names(o: &Map<String, Value>) -> Vec<&str> {
    o.get("required")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

fn words(s: &str) -> impl Iterator<Item = String> + '_ {
    s.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
}

fn contains_product_name(s: &str) -> Option<&'static str> {
    let normalized = words(s).collect::<Vec<_>>().join(" ");
    PRODUCT_NAMES
        .iter()
        .find(|p| format!(" {normalized} ").contains(&format!(" {p} ")))
        .copied()
}

fn is_absolute_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| {
        matches!(u.scheme(), "http" | "https") && u.host_str().is_some_and(|h| !h.is_empty())
    })
}

fn is_valid_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else {
        return false;
    };
    let labels: Vec<&str> = domain.split('.').collect();
    !local.is_empty()
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
        && !domain.contains('@')
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        })
}

/// Swagger `host`: `^[^{}/ :\\]+(?::\d+)?$`.
fn is_bare_host(host: &str) -> bool {
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    let name_ok = !name.is_empty() && !name.chars().any(|c| "{}/ :\\".contains(c));
    let port_ok = port.is_none_or(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    name_ok && port_ok
}

fn template_variables(path: &str) -> Vec<&str> {
    let mut vars = Vec::new();
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        vars.push(&rest[start + 1..start + len]);
        rest = &rest[start + len + 1..];
    }
    vars
}

struct Param<'a> {
    ptr: String,
    value: &'a Map<String, Value>,
}

impl Param<'_> {
    fn name(&self) -> &str {
        str_of(self.value.get("name")).unwrap_or_default()
    }
    fn location(&self) -> &str {
        str_of(self.value.get("in")).unwrap_or_default()
    }
    fn is_body(&self) -> bool {
        self.location() == "body"
    }
}

struct Operation<'a> {
    path: &'a str,
    method: &'a str,
    ptr: String,
    value: &'a Map<String, Value>,
    path_item: &'a Map<String, Value>,
    path_item_ptr: String,
    /// Effective parameters: path-item ones overridden by operation ones (same name + in).
    params: Vec<Param<'a>>,
}

impl<'a> Operation<'a> {
    fn id(&self) -> Option<&'a str> {
        non_empty_str(self.value.get("operationId"))
    }
    fn body_params(&self) -> Vec<&Param<'a>> {
        self.params.iter().filter(|p| p.is_body()).collect()
    }
}

fn resolve_local<'a>(doc: &'a Value, v: &'a Value, section: &str) -> &'a Value {
    match str_of(v.get("$ref")).and_then(|r| r.strip_prefix(&format!("#/{section}/"))) {
        Some(name) => doc
            .pointer(&format!("/{section}/{name}"))
            .unwrap_or(&Value::Null),
        None => v,
    }
}

fn collect_operations(doc: &Value) -> Vec<Operation<'_>> {
    let mut ops = Vec::new();
    let Some(paths) = doc.get("paths").and_then(Value::as_object) else {
        return ops;
    };
    for (path, item) in paths {
        let Some(item_obj) = item.as_object().filter(|_| path.starts_with('/')) else {
            continue;
        };
        let item_ptr = child("/paths", path);
        let shared = collect_params(
            doc,
            item_obj.get("parameters"),
            &child(&item_ptr, "parameters"),
        );
        for method in HTTP_METHODS {
            let Some(op) = item_obj.get(method).and_then(Value::as_object) else {
                continue;
            };
            let op_ptr = child(&item_ptr, method);
            let own = collect_params(doc, op.get("parameters"), &child(&op_ptr, "parameters"));
            let mut params: Vec<Param<'_>> = shared
                .iter()
                .filter(|s| {
                    !own.iter()
                        .any(|o| o.name() == s.name() && o.location() == s.location())
                })
                .map(|s| Param {
                    ptr: s.ptr.clone(),
                    value: s.value,
                })
                .collect();
            params.extend(own);
            ops.push(Operation {
                path,
                method,
                ptr: op_ptr,
                value: op,
                path_item: item_obj,
                path_item_ptr: item_ptr.clone(),
                params,
            });
        }
    }
    ops
}

fn collect_params<'a>(doc: &'a Value, list: Option<&'a Value>, ptr: &str) -> Vec<Param<'a>> {
    list.and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(i, p)| {
            resolve_local(doc, p, "parameters")
                .as_object()
                .map(|value| Param {
                    ptr: format!("{ptr}/{i}"),
                    value,
                })
        })
        .collect()
}

/// A property flagged `x-ms-notification-url: true` inside a trigger's body schema.
struct NotificationUrl {
    ptr: String,
    is_string: bool,
    internal: bool,
    required: bool,
}

struct Linter<'a> {
    doc: &'a Value,
    issues: Vec<LintIssue>,
}

impl<'a> Linter<'a> {
    fn issue(
        &mut self,
        pointer: impl Into<String>,
        rule: &'static str,
        message: impl Into<String>,
    ) {
        self.issues.push(LintIssue {
            pointer: pointer.into(),
            rule,
            message: message.into(),
        });
    }

    fn get(&self, ptr: &str) -> Option<&'a Value> {
        self.doc.pointer(ptr)
    }

    fn check_file(&mut self, bytes: &[u8]) {
        if bytes.starts_with(&[0xEF, 0xBB, 0xBF]) {
            self.issue(
                "",
                "FileHasByteOrderMark",
                "write UTF-8 without a byte order mark",
            );
        }
        if std::str::from_utf8(bytes).is_err() {
            self.issue("", "FileNotUtf8", "the file is not valid UTF-8");
        }
        if bytes.len() >= MAX_FILE_BYTES {
            self.issue(
                "",
                "FileTooLarge",
                format!(
                    "{} bytes; the definition must be smaller than {MAX_FILE_BYTES} bytes",
                    bytes.len()
                ),
            );
        }
    }

    fn check_version(&mut self) {
        if str_of(self.doc.get("swagger")) != Some("2.0") {
            self.issue(
                "/swagger",
                "SpecificationVersionIncorrect",
                "`swagger` must be \"2.0\"",
            );
        }
    }

    fn check_info(&mut self) {
        let info = self.doc.get("info").and_then(Value::as_object);
        let field = |k: &str| info.and_then(|i| i.get(k));

        match non_empty_str(field("title")) {
            None => self.issue("/info/title", "InfoTitleRequired", "info.title is required"),
            Some(title) => {
                if title.chars().count() > MAX_TITLE_CHARS {
                    self.issue(
                        "/info/title",
                        "InfoTitleTooLong",
                        format!(
                            "title has {} characters; the maximum is {MAX_TITLE_CHARS}",
                            title.chars().count()
                        ),
                    );
                }
                if let Some(w) = words(title)
                    .find(|w| matches!(w.as_str(), "api" | "apis" | "connector" | "connectors"))
                {
                    self.issue(
                        "/info/title",
                        "InfoTitleContainsRestrictedWords",
                        format!("title must not contain `{w}`"),
                    );
                }
                if let Some(p) = contains_product_name(title) {
                    self.issue(
                        "/info/title",
                        "InfoTitleContainsRestrictedWords",
                        format!("title must not name a product (`{p}`)"),
                    );
                }
                if !title.chars().last().is_some_and(char::is_alphanumeric) {
                    self.issue(
                        "/info/title",
                        "InfoTitleMustEndWithAlphanumeric",
                        "title must end with a letter or digit",
                    );
                }
            }
        }
        if non_empty_str(field("version")).is_none() {
            self.issue(
                "/info/version",
                "InfoVersionRequired",
                "info.version is required",
            );
        }
        match str_of(field("description")) {
            None => self.issue(
                "/info/description",
                "InfoDescriptionRequired",
                "info.description is required (paconn reads it)",
            ),
            Some(d) => {
                let n = d.chars().count();
                if !(30..=500).contains(&n) {
                    self.issue(
                        "/info/description",
                        "InfoDescriptionLength",
                        format!("description has {n} characters; it must have 30 to 500"),
                    );
                }
                if words(d).any(|w| w == "api" || w == "apis") {
                    self.issue(
                        "/info/description",
                        "InfoDescriptionContainsRestrictedWords",
                        "description must not contain the word `API`",
                    );
                }
                if let Some(p) = contains_product_name(d) {
                    self.issue(
                        "/info/description",
                        "InfoDescriptionContainsRestrictedWords",
                        format!("description must not name a product (`{p}`)"),
                    );
                }
            }
        }
        let Some(contact) = field("contact").and_then(Value::as_object) else {
            self.issue(
                "/info/contact",
                "ContactMissing",
                "info.contact {name, url, email} is required",
            );
            return;
        };
        if non_empty_str(contact.get("name")).is_none() {
            self.issue(
                "/info/contact/name",
                "ContactNameMissing",
                "contact name is required",
            );
        }
        if !str_of(contact.get("url")).is_some_and(is_absolute_http_url) {
            self.issue(
                "/info/contact/url",
                "ContactUrlNotValid",
                "contact url must be an absolute http(s) URL",
            );
        }
        if !str_of(contact.get("email")).is_some_and(is_valid_email) {
            self.issue(
                "/info/contact/email",
                "ContactEmailNotValid",
                "contact email is missing or not valid",
            );
        }
    }

    fn check_transport(&mut self) {
        match str_of(self.doc.get("host")) {
            Some(h) if is_bare_host(h) => {}
            _ => self.issue(
                "/host",
                "HostNameNotValid",
                "host must be a bare host name with an optional port (no scheme, path or braces)",
            ),
        }
        if !str_of(self.doc.get("basePath")).is_some_and(|b| b.starts_with('/')) {
            self.issue(
                "/basePath",
                "BasePathNotValid",
                "basePath must start with `/`",
            );
        }
        match self.doc.get("schemes").and_then(Value::as_array) {
            Some(s) if !s.is_empty() => {
                for (i, scheme) in s.iter().enumerate() {
                    if !matches!(scheme.as_str(), Some("http" | "https")) {
                        self.issue(
                            format!("/schemes/{i}"),
                            "SchemeNotValid",
                            "only http and https are supported",
                        );
                    }
                }
            }
            _ => self.issue(
                "/schemes",
                "SchemesArrayEmpty",
                "schemes must list http and/or https",
            ),
        }
    }

    fn check_metadata(&mut self) {
        const PTR: &str = "/x-ms-connector-metadata";
        let Some(entries) = self
            .doc
            .get("x-ms-connector-metadata")
            .and_then(Value::as_array)
        else {
            self.issue(
                PTR,
                "ConnectorMetadataPropertiesMissing",
                "x-ms-connector-metadata is required",
            );
            return;
        };
        let find = |name: &str| {
            entries.iter().enumerate().find_map(|(i, e)| {
                (str_of(e.get("propertyName")) == Some(name)).then(|| {
                    (
                        format!("{PTR}/{i}/propertyValue"),
                        str_of(e.get("propertyValue")),
                    )
                })
            })
        };
        for name in ["Website", "Privacy policy"] {
            match find(name) {
                None => self.issue(
                    PTR,
                    "ConnectorMetadataPropertiesMissing",
                    format!("`{name}` is missing"),
                ),
                Some((ptr, value)) => {
                    if !value.is_some_and(is_absolute_http_url) {
                        self.issue(
                            ptr,
                            "UrlNotValid",
                            format!("`{name}` must be an absolute http(s) URL"),
                        );
                    }
                }
            }
        }
        match find("Categories") {
            None => self.issue(
                PTR,
                "ConnectorMetadataPropertiesMissing",
                "`Categories` is missing",
            ),
            Some((ptr, value)) => {
                let categories: Vec<&str> = value
                    .unwrap_or_default()
                    .split(';')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .collect();
                if categories.is_empty() {
                    self.issue(
                        ptr.clone(),
                        "InvalidConnectorCategory",
                        "at least one category is required",
                    );
                }
                if categories.len() > 2 {
                    self.issue(
                        ptr.clone(),
                        "TooManyConnectorCategories",
                        format!("{} categories; at most 2 are allowed", categories.len()),
                    );
                }
                for c in categories {
                    if !ALLOWED_CATEGORIES.contains(&c) {
                        self.issue(
                            ptr.clone(),
                            "InvalidConnectorCategory",
                            format!("`{c}` is not an allowed category"),
                        );
                    }
                }
            }
        }
    }

    fn check_security(&mut self) {
        let defs = self
            .doc
            .get("securityDefinitions")
            .and_then(Value::as_object);
        let count = defs.map_or(0, Map::len);
        if count != 1 {
            self.issue(
                "/securityDefinitions",
                "SecurityDefinitionsMustHaveOneEntry",
                format!("{count} security definitions; exactly one is expected (the wizard only uses the first)"),
            );
        }
        let mut requirements = vec![("/security".to_owned(), self.doc.get("security"))];
        for op in collect_operations(self.doc) {
            requirements.push((child(&op.ptr, "security"), op.value.get("security")));
        }
        for (ptr, security) in requirements {
            for (i, req) in security
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                for name in req.as_object().into_iter().flat_map(Map::keys) {
                    if !defs.is_some_and(|d| d.contains_key(name)) {
                        self.issue(
                            format!("{ptr}/{i}"),
                            "SecurityRequirementNotDefined",
                            format!("`{name}` is not in securityDefinitions"),
                        );
                    }
                }
            }
        }
    }

    fn check_operations(&mut self, ops: &[Operation<'a>]) {
        if ops.len() > MAX_OPERATIONS {
            self.issue(
                "/paths",
                "TotalOperationsCountExceedsMaxAllowed",
                format!("{} operations; the maximum is {MAX_OPERATIONS}", ops.len()),
            );
        }
        let has_internal_delete = ops
            .iter()
            .any(|o| o.method == "delete" && is_internal(o.value));
        let root_consumes = self
            .doc
            .get("consumes")
            .and_then(Value::as_array)
            .is_some_and(|a| !a.is_empty());
        let mut seen_ids: HashMap<String, String> = HashMap::new();
        let mut visited_definitions = HashSet::new();

        for op in ops {
            self.check_operation_id(op, &mut seen_ids);
            self.check_operation_strings(op);
            self.check_parameters(op);
            for body in op.body_params() {
                if let Some(schema) = body.value.get("schema") {
                    self.check_input_schema(
                        schema,
                        &child(&body.ptr, "schema"),
                        &mut visited_definitions,
                    );
                }
            }
            let op_consumes = op
                .value
                .get("consumes")
                .and_then(Value::as_array)
                .is_some_and(|a| !a.is_empty());
            if !op.body_params().is_empty() && !root_consumes && !op_consumes {
                self.issue(
                    op.ptr.clone(),
                    "ConsumesMissing",
                    "operations with a body need `consumes`",
                );
            }
            self.check_responses(op);
            if op.value.contains_key("x-ms-trigger") {
                self.check_trigger(op, has_internal_delete);
            }
            if let Some(pageable) = op.value.get("x-ms-pageable") {
                if !str_of(pageable.get("nextLinkName"))
                    .is_some_and(|n| NEXT_LINK_NAMES.contains(&n))
                {
                    self.issue(
                        child(&op.ptr, "x-ms-pageable"),
                        "InvalidNextLinkNameValue",
                        "x-ms-pageable.nextLinkName must be `nextLink` or `@odata.nextLink`",
                    );
                }
            }
        }
    }

    fn check_operation_id(&mut self, op: &Operation<'_>, seen: &mut HashMap<String, String>) {
        let ptr = child(&op.ptr, "operationId");
        let Some(id) = op.id() else {
            self.issue(
                ptr,
                "OperationIdRequired",
                "every operation needs an operationId",
            );
            return;
        };
        if !id.chars().all(|c| c.is_ascii_alphanumeric()) {
            self.issue(
                ptr.clone(),
                "OperationIdSanitized",
                format!("`{id}` must contain only letters and digits"),
            );
        }
        if let Some(first) = seen.get(&id.to_ascii_lowercase()) {
            self.issue(
                ptr,
                "OperationIdNotUnique",
                format!("`{id}` is already used at {first}"),
            );
        } else {
            seen.insert(id.to_ascii_lowercase(), op.ptr.clone());
        }
    }

    fn check_operation_strings(&mut self, op: &Operation<'_>) {
        let summary_ptr = child(&op.ptr, "summary");
        let summary = non_empty_str(op.value.get("summary"));
        match summary {
            None => self.issue(
                summary_ptr,
                "OperationSummaryRequired",
                "every operation needs a summary",
            ),
            Some(s) => {
                if s.chars().count() > MAX_SUMMARY_CHARS {
                    self.issue(
                        summary_ptr.clone(),
                        "OperationSummaryTooLong",
                        format!(
                            "summary has {} characters; the maximum is {MAX_SUMMARY_CHARS}",
                            s.chars().count()
                        ),
                    );
                }
                let bad: String = s
                    .chars()
                    .filter(|c| !(c.is_alphanumeric() || matches!(c, ' ' | '(' | ')')))
                    .collect();
                if !bad.is_empty() {
                    self.issue(
                        summary_ptr.clone(),
                        "RestrictedCharactersInSummary",
                        format!("summary may only contain letters, digits, spaces and parentheses; found `{bad}`"),
                    );
                }
                if !s
                    .chars()
                    .last()
                    .is_some_and(|c| c.is_alphanumeric() || c == ')')
                {
                    self.issue(
                        summary_ptr,
                        "ValueMustEndWithAlphanumeric",
                        "summary must end with a letter, digit or `)`",
                    );
                }
            }
        }
        let description_ptr = child(&op.ptr, "description");
        match non_empty_str(op.value.get("description")) {
            None => self.issue(
                description_ptr,
                "OperationDescriptionRequired",
                "every operation needs a description",
            ),
            Some(d) => {
                if !d.trim_end().ends_with(['.', '!', '?']) {
                    self.issue(
                        description_ptr.clone(),
                        "DescriptionMustEndWithPunctuation",
                        "description must be a full sentence ending with `.`, `!` or `?`",
                    );
                }
                let norm = |s: &str| {
                    s.trim()
                        .trim_end_matches(['.', '!', '?'])
                        .trim()
                        .to_lowercase()
                };
                if summary.is_some_and(|s| norm(s) == norm(d)) {
                    self.issue(
                        description_ptr,
                        "SummaryAndDescriptionMustDiffer",
                        "description must differ from summary",
                    );
                }
            }
        }
    }

    fn check_parameters(&mut self, op: &Operation<'_>) {
        let template_vars = template_variables(op.path);
        let mut bodies = 0;
        for p in &op.params {
            let v = p.value;
            match p.location() {
                "body" | "formData" => {
                    if p.is_body() {
                        bodies += 1;
                        if !v.contains_key("schema") {
                            self.issue(
                                p.ptr.clone(),
                                "BodyParameterSchemaRequired",
                                "body parameters need a schema",
                            );
                        }
                    }
                    if matches!(op.method, "get" | "head") {
                        self.issue(
                            p.ptr.clone(),
                            "BodyOrFormDataParameterInFetchOperationNotAllowed",
                            format!(
                                "{} operations cannot take a {} parameter",
                                op.method.to_uppercase(),
                                p.location()
                            ),
                        );
                    }
                }
                location => {
                    if non_empty_str(v.get("x-ms-summary")).is_none() {
                        self.issue(
                            p.ptr.clone(),
                            "ParameterSummaryRequired",
                            format!("parameter `{}` needs x-ms-summary", p.name()),
                        );
                    }
                    if non_empty_str(v.get("description")).is_none() {
                        self.issue(
                            p.ptr.clone(),
                            "ParameterDescriptionRequired",
                            format!("parameter `{}` needs a description", p.name()),
                        );
                    }
                    let required = is_true(v.get("required"));
                    let has_default = v.contains_key("default");
                    if is_internal(v) && required && !has_default {
                        self.issue(
                            p.ptr.clone(),
                            "InternalRequiredWithoutDefault",
                            format!("internal required parameter `{}` needs a default", p.name()),
                        );
                    }
                    if is_internal(v) && has_default && !required {
                        self.issue(
                            p.ptr.clone(),
                            "InternalPropertyWithDefaultOptional",
                            format!(
                                "internal parameter `{}` with a default must be required",
                                p.name()
                            ),
                        );
                    }
                    if location == "path" {
                        if !required {
                            self.issue(
                                p.ptr.clone(),
                                "PathParameterMustBeRequired",
                                "path parameters must be `required: true`",
                            );
                        }
                        if str_of(v.get("x-ms-url-encoding")) != Some("single") {
                            self.issue(
                                p.ptr.clone(),
                                "PathParameterMissingEncoding",
                                "path parameters need `x-ms-url-encoding: \"single\"`",
                            );
                        }
                        if !template_vars.contains(&p.name()) {
                            self.issue(
                                p.ptr.clone(),
                                "PathParameterNotDefinedInTemplate",
                                format!("`{}` does not appear in `{}`", p.name(), op.path),
                            );
                        }
                    }
                    if location == "query" && v.contains_key("x-ms-url-encoding") {
                        self.issue(
                            p.ptr.clone(),
                            "QueryParameterEncodingNotSupported",
                            "query parameters must not set x-ms-url-encoding",
                        );
                    }
                }
            }
        }
        if bodies > 1 {
            self.issue(
                op.ptr.clone(),
                "MultipleBodyParameters",
                "an operation may have at most one body parameter",
            );
        }
        for var in template_vars {
            if !op
                .params
                .iter()
                .any(|p| p.location() == "path" && p.name() == var)
            {
                self.issue(
                    op.ptr.clone(),
                    "OperationMissingPathParameter",
                    format!("template variable `{{{var}}}` has no path parameter"),
                );
            }
        }
    }

    /// internal + required ⇒ default (except the notification URL); internal + default ⇒ required.
    fn check_input_schema(&mut self, schema: &'a Value, ptr: &str, visited: &mut HashSet<String>) {
        let Some(o) = schema.as_object() else {
            return;
        };
        if let Some(name) = str_of(o.get("$ref")).and_then(|r| r.strip_prefix("#/definitions/")) {
            if visited.insert(name.to_owned()) {
                let target_ptr = format!("/definitions/{name}");
                if let Some(target) = self.get(&target_ptr) {
                    self.check_input_schema(target, &target_ptr, visited);
                }
            }
            return;
        }
        let required = required_names(o);
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            let props_ptr = child(ptr, "properties");
            for (name, prop) in props {
                let prop_ptr = child(&props_ptr, name);
                if let Some(po) = prop.as_object() {
                    let is_required = required.contains(&name.as_str());
                    let has_default = po.contains_key("default");
                    let is_notification_url = is_true(po.get("x-ms-notification-url"));
                    if is_internal(po) && is_required && !has_default && !is_notification_url {
                        self.issue(
                            prop_ptr.clone(),
                            "InternalRequiredWithoutDefault",
                            format!("internal required property `{name}` needs a default"),
                        );
                    }
                    if is_internal(po) && has_default && !is_required {
                        self.issue(
                            prop_ptr.clone(),
                            "InternalPropertyWithDefaultOptional",
                            format!("internal property `{name}` with a default must be listed in `required`"),
                        );
                    }
                }
                self.check_input_schema(prop, &prop_ptr, visited);
            }
        }
        if let Some(items) = o.get("items") {
            self.check_input_schema(items, &child(ptr, "items"), visited);
        }
        if let Some(extra) = o.get("additionalProperties").filter(|v| v.is_object()) {
            self.check_input_schema(extra, &child(ptr, "additionalProperties"), visited);
        }
        for (i, member) in o
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.check_input_schema(member, &format!("{}/{i}", child(ptr, "allOf")), visited);
        }
    }

    fn check_responses(&mut self, op: &Operation<'_>) {
        let ptr = child(&op.ptr, "responses");
        let responses: Vec<(&String, &Value)> = op
            .value
            .get("responses")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .filter(|(code, _)| !code.starts_with("x-"))
            .collect();
        if responses.is_empty() {
            self.issue(
                ptr,
                "OperationMustHaveResponse",
                "every operation needs at least one response",
            );
            return;
        }
        if !responses.iter().any(|(code, _)| code.starts_with('2')) {
            self.issue(
                ptr.clone(),
                "OperationShouldHaveSuccessfulResponse",
                "add a 2xx response",
            );
        }
        let mut with_schema = Vec::new();
        for (code, response) in &responses {
            let resolved = resolve_local(self.doc, response, "responses");
            if resolved.get("schema").is_some() {
                with_schema.push(code.as_str());
                if code.as_str() == "default" {
                    self.issue(
                        child(&ptr, "default"),
                        "DefaultResponseHasSchema",
                        "the default response must not have a schema",
                    );
                }
            }
        }
        if with_schema.len() > 1 {
            self.issue(
                ptr,
                "OperationHasManyResponsesWithSchema",
                format!(
                    "responses {} all have a schema; keep exactly one",
                    with_schema.join(", ")
                ),
            );
        }
    }

    fn check_trigger(&mut self, op: &Operation<'a>, has_internal_delete: bool) {
        let trigger_ptr = child(&op.ptr, "x-ms-trigger");
        if !matches!(
            str_of(op.value.get("x-ms-trigger")),
            Some("single" | "batch")
        ) {
            self.issue(
                trigger_ptr,
                "InvalidTriggerValue",
                "x-ms-trigger must be `single` or `batch`",
            );
        }
        let polling = op
            .value
            .get("x-ms-trigger-metadata")
            .and_then(|m| m.get("mode"))
            .and_then(Value::as_str)
            == Some("polling");
        if polling {
            return;
        }
        if op.method != "post" {
            self.issue(
                op.ptr.clone(),
                "WebhookTriggerMustBePost",
                "webhook triggers must use POST",
            );
        }
        let bodies = op.body_params();
        match bodies.as_slice() {
            [] => self.issue(
                op.ptr.clone(),
                "WebhookOperationsMissingNotificationUrlProperty",
                "a webhook trigger needs exactly one body parameter carrying the notification URL",
            ),
            [body] => {
                if !is_true(body.value.get("required")) {
                    self.issue(
                        body.ptr.clone(),
                        "NotificationUrlNotRequired",
                        "the body parameter carrying the notification URL must be `required: true`",
                    );
                }
                let mut found = Vec::new();
                if let Some(schema) = body.value.get("schema") {
                    let mut stack = Vec::new();
                    self.find_notification_urls(
                        schema,
                        &child(&body.ptr, "schema"),
                        false,
                        true,
                        &mut stack,
                        &mut found,
                    );
                }
                if found.is_empty() {
                    self.issue(
                        body.ptr.clone(),
                        "WebhookOperationsMissingNotificationUrlProperty",
                        "the body schema needs a property with `x-ms-notification-url: true`",
                    );
                }
                for url in found {
                    if !url.is_string {
                        self.issue(
                            url.ptr.clone(),
                            "NotificationUrlNotString",
                            "the notification URL property must be `type: string`",
                        );
                    }
                    if !url.internal {
                        self.issue(
                            url.ptr.clone(),
                            "NotificationUrlNotInternal",
                            "the notification URL property must be `x-ms-visibility: internal`",
                        );
                    }
                    if !url.required {
                        self.issue(
                            url.ptr,
                            "NotificationUrlNotRequired",
                            "the notification URL property must be listed in every enclosing `required`",
                        );
                    }
                }
            }
            _ => {} // reported as MultipleBodyParameters
        }
        let has_content = op
            .path_item
            .get("x-ms-notification-content")
            .and_then(Value::as_object)
            .is_some_and(|c| c.contains_key("schema"));
        if !has_content {
            self.issue(
                op.path_item_ptr.clone(),
                "OperationMustHaveNotificationContentExtension",
                "the path item of a webhook trigger needs `x-ms-notification-content` with a `schema`",
            );
        }
        if op.value.contains_key("x-ms-notification") {
            self.issue(
                child(&op.ptr, "x-ms-notification"),
                "NotificationExtensionNotSupportedInWebhookOperation",
                "x-ms-notification must not be used on a webhook trigger",
            );
        }
        let has_201 = op
            .value
            .get("responses")
            .and_then(Value::as_object)
            .is_some_and(|r| r.contains_key("201"));
        if !has_201 {
            self.issue(
                child(&op.ptr, "responses"),
                "WebhookMissingCreatedResponse",
                "a webhook trigger must answer 201 Created with a Location header",
            );
        }
        if !has_internal_delete {
            self.issue(
                op.ptr.clone(),
                "WebhookMissingDeleteOperation",
                "the swagger needs an internal DELETE operation to remove webhook subscriptions",
            );
        }
    }

    fn find_notification_urls(
        &self,
        schema: &'a Value,
        ptr: &str,
        internal: bool,
        required: bool,
        stack: &mut Vec<String>,
        found: &mut Vec<NotificationUrl>,
    ) {
        let Some(o) = schema.as_object() else {
            return;
        };
        if let Some(name) = str_of(o.get("$ref")).and_then(|r| r.strip_prefix("#/definitions/")) {
            if stack.iter().any(|s| s == name) {
                return;
            }
            let target_ptr = format!("/definitions/{name}");
            if let Some(target) = self.get(&target_ptr) {
                stack.push(name.to_owned());
                self.find_notification_urls(target, &target_ptr, internal, required, stack, found);
                stack.pop();
            }
            return;
        }
        let required_here = required_names(o);
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                let prop_ptr = child(&child(ptr, "properties"), name);
                let Some(po) = prop.as_object() else {
                    continue;
                };
                let prop_internal = internal || is_internal(po);
                let prop_required = required && required_here.contains(&name.as_str());
                if is_true(po.get("x-ms-notification-url")) {
                    found.push(NotificationUrl {
                        ptr: prop_ptr,
                        is_string: str_of(po.get("type")) == Some("string"),
                        internal: prop_internal,
                        required: prop_required,
                    });
                } else {
                    self.find_notification_urls(
                        prop,
                        &prop_ptr,
                        prop_internal,
                        prop_required,
                        stack,
                        found,
                    );
                }
            }
        }
        for (i, member) in o
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            let member_ptr = format!("{}/{i}", child(ptr, "allOf"));
            self.find_notification_urls(member, &member_ptr, internal, required, stack, found);
        }
    }

    /// `$ref` must be local to definitions/parameters/responses, resolve, and stand alone.
    fn check_refs(&mut self, v: &'a Value, ptr: &str) {
        match v {
            Value::Object(o) => {
                if let Some(reference) = str_of(o.get("$ref")) {
                    let ref_ptr = child(ptr, "$ref");
                    let target = ["definitions", "parameters", "responses"]
                        .into_iter()
                        .find_map(|s| reference.strip_prefix(&format!("#/{s}/")).map(|n| (s, n)));
                    match target {
                        Some((section, name)) if !name.is_empty() && !name.contains('/') => {
                            if self.get(&format!("/{section}/{name}")).is_none() {
                                self.issue(ref_ptr, "UnresolvedReference", format!("`{reference}` does not resolve"));
                            }
                        }
                        _ => self.issue(
                            ref_ptr,
                            "InvalidReferenceLocation",
                            format!("`{reference}` must point directly under #/definitions, #/parameters or #/responses"),
                        ),
                    }
                    if o.len() > 1 {
                        self.issue(
                            ptr,
                            "RefSiblingsNotAllowed",
                            "Swagger 2.0 ignores keywords next to `$ref`; wrap in allOf",
                        );
                    }
                }
                for (k, child_value) in o {
                    self.check_refs(child_value, &child(ptr, k));
                }
            }
            Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    self.check_refs(item, &format!("{ptr}/{i}"));
                }
            }
            _ => {}
        }
    }

    fn check_extension_keys(&mut self, v: &Value, ptr: &str, pos: Position) {
        let Some(o) = v.as_object() else {
            return;
        };
        for (k, value) in o {
            if !k.starts_with("x-ms-") {
                continue;
            }
            let p = child(ptr, k);
            if !is_known_extension(k) {
                self.issue(
                    p.clone(),
                    "UnknownExtension",
                    format!("`{k}` is not a supported connector extension"),
                );
            } else if !allowed_extensions(pos).contains(&k.as_str()) {
                let rule = if k == "x-ms-notification-url" {
                    "NotificationUrlNotAllowedInThisPosition"
                } else {
                    "ExtensionNotAllowedInThisPosition"
                };
                self.issue(p.clone(), rule, format!("`{k}` is not allowed here"));
            }
            if k == "x-ms-visibility"
                && !str_of(Some(value)).is_some_and(|s| VISIBILITY_VALUES.contains(&s))
            {
                self.issue(
                    p,
                    "InvalidVisibilityValue",
                    "x-ms-visibility must be important, advanced or internal",
                );
            }
        }
    }

    fn check_schema_extensions(&mut self, v: &Value, ptr: &str) {
        let Some(o) = v.as_object() else {
            return;
        };
        self.check_extension_keys(v, ptr, Position::Schema);
        if let Some(props) = o.get("properties").and_then(Value::as_object) {
            for (name, prop) in props {
                self.check_schema_extensions(prop, &child(&child(ptr, "properties"), name));
            }
        }
        match o.get("items") {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    self.check_schema_extensions(item, &format!("{ptr}/items/{i}"));
                }
            }
            Some(items) => self.check_schema_extensions(items, &child(ptr, "items")),
            None => {}
        }
        if let Some(extra) = o.get("additionalProperties") {
            self.check_schema_extensions(extra, &child(ptr, "additionalProperties"));
        }
        for (i, member) in o
            .get("allOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.check_schema_extensions(member, &format!("{ptr}/allOf/{i}"));
        }
    }

    fn check_parameter_extensions(&mut self, p: &Value, ptr: &str) {
        if p.get("$ref").is_some() {
            return;
        }
        let pos = match str_of(p.get("in")) {
            Some("body") => Position::BodyParameter,
            Some("header") => Position::HeaderParameter,
            _ => Position::PathOrQueryParameter,
        };
        self.check_extension_keys(p, ptr, pos);
        if let Some(schema) = p.get("schema") {
            self.check_schema_extensions(schema, &child(ptr, "schema"));
        }
        let mut items = p.get("items");
        let mut items_ptr = child(ptr, "items");
        while let Some(i) = items {
            self.check_extension_keys(i, &items_ptr, Position::Other);
            items = i.get("items");
            items_ptr = child(&items_ptr, "items");
        }
    }

    fn check_response_extensions(&mut self, r: &Value, ptr: &str) {
        if r.get("$ref").is_some() {
            return;
        }
        self.check_extension_keys(r, ptr, Position::Response);
        if let Some(schema) = r.get("schema") {
            self.check_schema_extensions(schema, &child(ptr, "schema"));
        }
        for (name, h) in r
            .get("headers")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.check_extension_keys(h, &child(&child(ptr, "headers"), name), Position::Header);
        }
    }

    fn check_extensions(&mut self) {
        let doc = self.doc;
        self.check_extension_keys(doc, "", Position::Root);
        if let Some(info) = doc.get("info") {
            self.check_extension_keys(info, "/info", Position::Info);
            for k in ["contact", "license"] {
                if let Some(v) = info.get(k) {
                    self.check_extension_keys(v, &child("/info", k), Position::Other);
                }
            }
        }
        for (i, tag) in doc
            .get("tags")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            self.check_extension_keys(tag, &format!("/tags/{i}"), Position::Other);
        }
        for (name, def) in doc
            .get("securityDefinitions")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.check_extension_keys(def, &child("/securityDefinitions", name), Position::Other);
        }
        for (name, def) in doc
            .get("definitions")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.check_schema_extensions(def, &child("/definitions", name));
        }
        for (name, p) in doc
            .get("parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.check_parameter_extensions(p, &child("/parameters", name));
        }
        for (name, r) in doc
            .get("responses")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            self.check_response_extensions(r, &child("/responses", name));
        }
        let Some(paths_value) = doc.get("paths") else {
            return;
        };
        self.check_extension_keys(paths_value, "/paths", Position::Other);
        let Some(paths) = paths_value.as_object() else {
            return;
        };
        for (path, item) in paths.iter().filter(|(p, _)| p.starts_with('/')) {
            let item_ptr = child("/paths", path);
            self.check_extension_keys(item, &item_ptr, Position::PathItem);
            if let Some(content) = item.get("x-ms-notification-content") {
                let content_ptr = child(&item_ptr, "x-ms-notification-content");
                self.check_extension_keys(content, &content_ptr, Position::Other);
                if let Some(schema) = content.get("schema") {
                    self.check_schema_extensions(schema, &child(&content_ptr, "schema"));
                }
            }
            for (i, p) in item
                .get("parameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                self.check_parameter_extensions(p, &format!("{item_ptr}/parameters/{i}"));
            }
            for method in HTTP_METHODS {
                let Some(op) = item.get(method) else {
                    continue;
                };
                let op_ptr = child(&item_ptr, method);
                self.check_extension_keys(op, &op_ptr, Position::Operation);
                for (i, p) in op
                    .get("parameters")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .enumerate()
                {
                    self.check_parameter_extensions(p, &format!("{op_ptr}/parameters/{i}"));
                }
                let responses_ptr = child(&op_ptr, "responses");
                if let Some(responses_value) = op.get("responses") {
                    self.check_extension_keys(responses_value, &responses_ptr, Position::Other);
                    let responses = responses_value.as_object().into_iter().flatten();
                    for (code, r) in responses.filter(|(c, _)| !c.starts_with("x-")) {
                        self.check_response_extensions(r, &child(&responses_ptr, code));
                    }
                }
            }
        }
    }

    /// `x-ms-dynamic-*` must name an existing operation and only its parameters.
    fn check_dynamic(&mut self, v: &Value, ptr: &str, ops: &[Operation<'_>]) {
        match v {
            Value::Object(o) => {
                for (k, value) in o {
                    let p = child(ptr, k);
                    if DYNAMIC_EXTENSIONS.contains(&k.as_str()) {
                        self.check_dynamic_reference(k, value, &p, ops);
                    }
                    self.check_dynamic(value, &p, ops);
                }
            }
            Value::Array(a) => {
                for (i, item) in a.iter().enumerate() {
                    self.check_dynamic(item, &format!("{ptr}/{i}"), ops);
                }
            }
            _ => {}
        }
    }

    fn check_dynamic_reference(
        &mut self,
        ext: &str,
        value: &Value,
        ptr: &str,
        ops: &[Operation<'_>],
    ) {
        // `builtInOperation` / `capability` variants carry no operationId.
        let Some(operation_id) = str_of(value.get("operationId")) else {
            return;
        };
        let Some(target) = ops.iter().find(|o| o.id() == Some(operation_id)) else {
            self.issue(
                child(ptr, "operationId"),
                "DynamicOperationNotFound",
                format!("{ext} refers to unknown operation `{operation_id}`"),
            );
            return;
        };
        for key in value
            .get("parameters")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(Map::keys)
        {
            if !target.params.iter().any(|p| p.name() == key) {
                self.issue(
                    child(&child(ptr, "parameters"), key),
                    "DynamicParameterNotFound",
                    format!("`{key}` is not a parameter of `{operation_id}`"),
                );
            }
        }
    }
}

#[cfg(test)]
use super::swagger2;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance_param() -> Value {
        json!({
            "name": "instanceId", "in": "path", "required": true, "type": "string",
            "x-ms-url-encoding": "single", "x-ms-summary": "Instance",
            "description": "Select the instance.",
            "x-ms-dynamic-values": {"operationId": "ListInstances", "value-collection": "value",
                                    "value-path": "instanceId", "value-title": "name"}
        })
    }

    /// A minimal connector that satisfies every rule: one paged action, one dynamic-values
    /// source, one webhook trigger and its internal DELETE.
    fn valid() -> Value {
        json!({
            "swagger": "2.0",
            "info": {
                "title": "Contoso Insights",
                "description": "Read Contoso customer data and react to segment changes in your flows.",
                "version": "1.0.0",
                "contact": {"name": "Contoso Support", "url": "https://contoso.example.com/support",
                            "email": "support@contoso.example.com"},
                "x-ms-api-annotation": {"status": "Preview"}
            },
            "host": "insights.contoso.example.com",
            "basePath": "/",
            "schemes": ["https"],
            "consumes": ["application/json"],
            "produces": ["application/json"],
            "securityDefinitions": {"api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}},
            "security": [{"api_key": []}],
            "x-ms-connector-metadata": [
                {"propertyName": "Website", "propertyValue": "https://contoso.example.com"},
                {"propertyName": "Privacy policy", "propertyValue": "https://contoso.example.com/privacy"},
                {"propertyName": "Categories", "propertyValue": "Data;Marketing"}
            ],
            "paths": {
                "/v1/instances": {
                    "get": {
                        "operationId": "ListInstances",
                        "summary": "List instances",
                        "description": "Lists the instances that the connection can access.",
                        "x-ms-visibility": "internal",
                        "x-ms-pageable": {"nextLinkName": "nextLink"},
                        "parameters": [{
                            "name": "api-version", "in": "query", "required": true, "type": "string",
                            "default": "2024-01-01", "x-ms-visibility": "internal",
                            "x-ms-summary": "Version", "description": "Version of the service."
                        }],
                        "responses": {
                            "200": {"description": "OK", "schema": {"$ref": "#/definitions/InstanceList"}},
                            "default": {"description": "Error"}
                        }
                    }
                },
                "/v1/instances/{instanceId}/segments": {
                    "parameters": [instance_param()],
                    "get": {
                        "operationId": "ListSegments",
                        "summary": "List segments",
                        "description": "Lists the segments of an instance.",
                        "x-ms-visibility": "internal",
                        "responses": {"200": {"description": "OK", "schema": {"$ref": "#/definitions/SegmentList"}}}
                    }
                },
                "/v1/instances/{instanceId}/hooks/segment-threshold": {
                    "x-ms-notification-content": {
                        "description": "Segment threshold event",
                        "schema": {"$ref": "#/definitions/SegmentEvent"}
                    },
                    "post": {
                        "operationId": "OnSegmentThresholdCrossed",
                        "summary": "When a segment threshold is crossed",
                        "description": "This operation triggers when a segment grows above the threshold.",
                        "x-ms-trigger": "single",
                        "x-ms-trigger-hint": "Refresh the segment so that it grows above the threshold.",
                        "x-ms-visibility": "important",
                        "parameters": [
                            instance_param(),
                            {"name": "body", "in": "body", "required": true,
                             "schema": {"$ref": "#/definitions/SegmentSubscription"}}
                        ],
                        "responses": {"201": {
                            "description": "Created",
                            "headers": {"Location": {"type": "string", "description": "URL used to delete the subscription."}}
                        }}
                    }
                },
                "/v1/instances/{instanceId}/hooks/{subscriptionId}": {
                    "delete": {
                        "operationId": "DeleteSubscription",
                        "summary": "Delete a trigger subscription",
                        "description": "Deletes a trigger subscription.",
                        "x-ms-visibility": "internal",
                        "parameters": [
                            instance_param(),
                            {"name": "subscriptionId", "in": "path", "required": true, "type": "string",
                             "x-ms-url-encoding": "single", "x-ms-summary": "Subscription ID",
                             "description": "Identifier of the subscription."}
                        ],
                        "responses": {"204": {"description": "No Content"}}
                    }
                }
            },
            "definitions": {
                "InstanceList": {"type": "object", "properties": {
                    "value": {"type": "array", "items": {"$ref": "#/definitions/Instance"}},
                    "nextLink": {"type": "string", "x-nullable": true, "x-ms-summary": "Next link",
                                 "description": "URL of the next page."}
                }},
                "Instance": {"type": "object", "required": ["instanceId", "name"], "properties": {
                    "instanceId": {"type": "string", "format": "uuid", "x-ms-summary": "Instance ID"},
                    "name": {"type": "string", "x-ms-summary": "Name"}
                }},
                "SegmentList": {"type": "object", "properties": {
                    "value": {"type": "array", "items": {"type": "object", "properties": {
                        "name": {"type": "string", "x-ms-summary": "Name"}}}}
                }},
                "SegmentSubscription": {
                    "type": "object",
                    "required": ["notificationUrl", "event", "segmentName", "threshold"],
                    "properties": {
                        "notificationUrl": {"type": "string", "x-ms-notification-url": true,
                                            "x-ms-visibility": "internal", "description": "Callback URL."},
                        "event": {"type": "string", "x-ms-visibility": "internal",
                                  "default": "segment-threshold", "description": "Event type."},
                        "segmentName": {"type": "string", "x-ms-summary": "Segment",
                                        "description": "Select the segment.",
                                        "x-ms-dynamic-values": {"operationId": "ListSegments",
                                            "parameters": {"instanceId": {"parameter": "instanceId"}},
                                            "value-collection": "value", "value-path": "name", "value-title": "name"}},
                        "threshold": {"type": "integer", "format": "int32", "x-ms-summary": "Threshold",
                                      "description": "Member count that must be exceeded."}
                    }
                },
                "SegmentEvent": {"type": "object", "properties": {
                    "segmentName": {"type": "string", "x-ms-summary": "Segment"},
                    "memberCount": {"type": "integer", "format": "int64", "x-ms-summary": "Member count"}
                }}
            }
        })
    }

    const TRIGGER: &str = "/paths/~1v1~1instances~1{instanceId}~1hooks~1segment-threshold/post";
    const LIST: &str = "/paths/~1v1~1instances/get";
    const DELETE: &str = "/paths/~1v1~1instances~1{instanceId}~1hooks~1{subscriptionId}/delete";
    const SUBSCRIPTION: &str = "/definitions/SegmentSubscription";

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

    fn remove(doc: &mut Value, ptr: &str) {
        let (parent, key) = ptr.rsplit_once('/').unwrap();
        let key = key.replace("~1", "/").replace("~0", "~");
        match doc
            .pointer_mut(parent)
            .unwrap_or_else(|| panic!("no parent {parent}"))
        {
            Value::Object(o) => {
                o.remove(&key).unwrap_or_else(|| panic!("no {ptr}"));
            }
            Value::Array(a) => {
                a.remove(key.parse::<usize>().unwrap());
            }
            other => panic!("cannot remove {key} from {other}"),
        }
    }

    fn rules(doc: &Value) -> Vec<&'static str> {
        lint_connector(doc, None)
            .into_iter()
            .map(|i| i.rule)
            .collect()
    }

    #[test]
    fn valid_connector_is_clean() {
        let doc = valid();
        let bytes = serde_json::to_vec_pretty(&doc).unwrap();
        let issues = lint_connector(&doc, Some(&bytes));
        assert!(issues.is_empty(), "{:#?}", issues);
    }

    #[test]
    fn issue_display_names_rule_and_pointer() {
        let mut doc = valid();
        set(&mut doc, "/swagger", json!("3.0"));
        let issue = &lint_connector(&doc, None)[0];
        assert_eq!(
            issue.to_string(),
            "SpecificationVersionIncorrect at `/swagger`: `swagger` must be \"2.0\""
        );
    }

    #[test]
    fn converted_utoipa_document_is_clean() {
        let openapi = json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Contoso Insights", "version": "1.0.0",
                "description": "Read Contoso customer data and react to segment changes in your flows.",
                "license": {"name": "MIT", "identifier": "MIT"},
                "contact": {"name": "Contoso Support", "url": "https://contoso.example.com/support",
                            "email": "support@contoso.example.com"}
            },
            "x-ms-connector-metadata": valid()["x-ms-connector-metadata"].clone(),
            "security": [{"api_key": []}],
            "paths": {
                "/v1/instances": {"get": {
                    "operationId": "ListInstances", "summary": "List instances",
                    "description": "Lists the instances that the connection can access.",
                    "x-ms-visibility": "internal",
                    "responses": {
                        "200": {"description": "OK", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/InstanceList"}}}},
                        "default": {"description": "Error", "content": {"text/plain": {}}}
                    }
                }},
                "/v1/instances/{instanceId}/hooks/segment-threshold": {
                    "x-ms-notification-content": {"description": "Event", "schema": {"$ref": "#/components/schemas/SegmentEvent"}},
                    "post": {
                        "operationId": "OnSegmentThresholdCrossed",
                        "summary": "When a segment threshold is crossed",
                        "description": "This operation triggers when a segment grows above the threshold.",
                        "x-ms-trigger": "single",
                        "parameters": [{
                            "name": "instanceId", "in": "path", "required": true, "description": "Select the instance.",
                            "schema": {"type": "string", "format": "uuid"},
                            "x-ms-summary": "Instance", "x-ms-url-encoding": "single",
                            "x-ms-dynamic-values": {"operationId": "ListInstances", "value-collection": "value",
                                                    "value-path": "instanceId", "value-title": "name"}
                        }],
                        "requestBody": {"required": true, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Subscribe"}}}},
                        "responses": {"201": {"description": "Created", "headers": {"Location": {"schema": {"type": "string"}, "description": "Delete URL."}}}}
                    }
                },
                "/v1/instances/{instanceId}/hooks/{subscriptionId}": {"delete": {
                    "operationId": "DeleteSubscription", "summary": "Delete a trigger subscription",
                    "description": "Deletes a trigger subscription.", "x-ms-visibility": "internal",
                    "parameters": [
                        {"name": "instanceId", "in": "path", "required": true, "description": "Select the instance.",
                         "schema": {"type": "string", "format": "uuid"}, "x-ms-summary": "Instance", "x-ms-url-encoding": "single"},
                        {"name": "subscriptionId", "in": "path", "required": true, "description": "Subscription id.",
                         "schema": {"type": "string", "format": "uuid"}, "x-ms-summary": "Subscription ID", "x-ms-url-encoding": "single"}
                    ],
                    "responses": {"204": {"description": "No Content"}}
                }}
            },
            "components": {
                "schemas": {
                    "InstanceList": {"type": "object", "required": ["value"], "properties": {
                        "value": {"type": "array", "items": {"$ref": "#/components/schemas/Instance"}},
                        "nextLink": {"type": ["string", "null"]}
                    }},
                    "Instance": {"type": "object", "required": ["instanceId", "name"], "properties": {
                        "instanceId": {"type": "string", "format": "uuid"},
                        "name": {"type": "string"},
                        "parent": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Instance"}],
                                   "description": "Parent instance."}
                    }},
                    "Subscribe": {"type": "object", "required": ["notificationUrl", "threshold"], "properties": {
                        "notificationUrl": {"type": "string", "x-ms-notification-url": true, "x-ms-visibility": "internal"},
                        "threshold": {"type": "integer", "format": "int64", "minimum": 0, "x-ms-summary": "Threshold"}
                    }},
                    "SegmentEvent": {"type": "object", "properties": {
                        "memberCount": {"type": "integer", "format": "int64"},
                        "note": {"type": ["string", "null"]}
                    }}
                },
                "securitySchemes": {"api_key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}
            }
        });
        let swagger = swagger2::convert(&openapi, "https://insights.contoso.example.com").unwrap();
        let bytes = serde_json::to_vec_pretty(&swagger).unwrap();
        let issues = lint_connector(&swagger, Some(&bytes));
        assert!(issues.is_empty(), "{:#?}", issues);
    }

    macro_rules! rule_case {
        ($name:ident, $rule:expr, |$doc:ident| $body:block) => {
            #[test]
            fn $name() {
                let mut $doc = valid();
                $body
                let found = rules(&$doc);
                assert!(found.contains(&$rule), "expected {} in {:?}", $rule, found);
            }
        };
    }

    fn file_rules(bytes: &[u8]) -> Vec<&'static str> {
        lint_connector(&valid(), Some(bytes))
            .into_iter()
            .map(|i| i.rule)
            .collect()
    }

    #[test]
    fn file_with_bom() {
        let mut bytes = vec![0xEF, 0xBB, 0xBF];
        bytes.extend(serde_json::to_vec(&valid()).unwrap());
        assert!(file_rules(&bytes).contains(&"FileHasByteOrderMark"));
    }

    #[test]
    fn file_not_utf8() {
        assert!(file_rules(&[b'{', 0xFF, 0xFE, b'}']).contains(&"FileNotUtf8"));
    }

    #[test]
    fn file_too_large() {
        let bytes = vec![b' '; MAX_FILE_BYTES];
        assert_eq!(file_rules(&bytes), vec!["FileTooLarge"]);
        assert!(file_rules(&vec![b' '; MAX_FILE_BYTES - 1]).is_empty());
    }

    rule_case!(version_not_2_0, "SpecificationVersionIncorrect", |d| {
        set(&mut d, "/swagger", json!("3.0"));
    });
    rule_case!(title_missing, "InfoTitleRequired", |d| {
        remove(&mut d, "/info/title");
    });
    rule_case!(title_too_long, "InfoTitleTooLong", |d| {
        set(
            &mut d,
            "/info/title",
            json!("Contoso Customer Insights Plus1"),
        );
    });
    rule_case!(title_with_api, "InfoTitleContainsRestrictedWords", |d| {
        set(&mut d, "/info/title", json!("Contoso API"));
    });
    rule_case!(
        title_with_connector,
        "InfoTitleContainsRestrictedWords",
        |d| {
            set(&mut d, "/info/title", json!("Contoso connector"));
        }
    );
    rule_case!(
        title_with_product_name,
        "InfoTitleContainsRestrictedWords",
        |d| {
            set(&mut d, "/info/title", json!("Contoso for Power Automate"));
        }
    );
    rule_case!(
        title_trailing_punctuation,
        "InfoTitleMustEndWithAlphanumeric",
        |d| {
            set(&mut d, "/info/title", json!("Contoso Insights."));
        }
    );
    rule_case!(version_missing, "InfoVersionRequired", |d| {
        remove(&mut d, "/info/version");
    });
    rule_case!(description_missing, "InfoDescriptionRequired", |d| {
        remove(&mut d, "/info/description");
    });
    rule_case!(description_too_short, "InfoDescriptionLength", |d| {
        set(&mut d, "/info/description", json!("Contoso data."));
    });
    rule_case!(description_too_long, "InfoDescriptionLength", |d| {
        set(&mut d, "/info/description", json!("a".repeat(501)));
    });
    rule_case!(
        description_with_api,
        "InfoDescriptionContainsRestrictedWords",
        |d| {
            set(
                &mut d,
                "/info/description",
                json!("Read Contoso customer data through the Contoso API."),
            );
        }
    );
    rule_case!(contact_missing, "ContactMissing", |d| {
        remove(&mut d, "/info/contact");
    });
    rule_case!(contact_name_missing, "ContactNameMissing", |d| {
        remove(&mut d, "/info/contact/name");
    });
    rule_case!(contact_url_invalid, "ContactUrlNotValid", |d| {
        set(&mut d, "/info/contact/url", json!("contoso.example.com"));
    });
    rule_case!(contact_email_invalid, "ContactEmailNotValid", |d| {
        set(&mut d, "/info/contact/email", json!("support at contoso"));
    });
    rule_case!(host_with_scheme, "HostNameNotValid", |d| {
        set(
            &mut d,
            "/host",
            json!("https://insights.contoso.example.com"),
        );
    });
    rule_case!(host_missing, "HostNameNotValid", |d| {
        remove(&mut d, "/host");
    });
    rule_case!(base_path_relative, "BasePathNotValid", |d| {
        set(&mut d, "/basePath", json!("api"));
    });
    rule_case!(schemes_empty, "SchemesArrayEmpty", |d| {
        set(&mut d, "/schemes", json!([]));
    });
    rule_case!(scheme_wss, "SchemeNotValid", |d| {
        set(&mut d, "/schemes", json!(["https", "wss"]));
    });
    rule_case!(consumes_missing, "ConsumesMissing", |d| {
        remove(&mut d, "/consumes");
    });
    rule_case!(
        metadata_missing,
        "ConnectorMetadataPropertiesMissing",
        |d| {
            remove(&mut d, "/x-ms-connector-metadata");
        }
    );
    rule_case!(
        metadata_privacy_missing,
        "ConnectorMetadataPropertiesMissing",
        |d| {
            remove(&mut d, "/x-ms-connector-metadata/1");
        }
    );
    rule_case!(metadata_url_invalid, "UrlNotValid", |d| {
        set(
            &mut d,
            "/x-ms-connector-metadata/0/propertyValue",
            json!("contoso"),
        );
    });
    rule_case!(too_many_categories, "TooManyConnectorCategories", |d| {
        set(
            &mut d,
            "/x-ms-connector-metadata/2/propertyValue",
            json!("Data;Marketing;AI"),
        );
    });
    rule_case!(invalid_category, "InvalidConnectorCategory", |d| {
        set(
            &mut d,
            "/x-ms-connector-metadata/2/propertyValue",
            json!("Data;Insights"),
        );
    });
    rule_case!(
        two_security_definitions,
        "SecurityDefinitionsMustHaveOneEntry",
        |d| {
            set(
                &mut d,
                "/securityDefinitions/basic",
                json!({"type": "basic"}),
            );
        }
    );
    rule_case!(
        no_security_definitions,
        "SecurityDefinitionsMustHaveOneEntry",
        |d| {
            remove(&mut d, "/securityDefinitions");
            remove(&mut d, "/security");
        }
    );
    rule_case!(
        undefined_security_requirement,
        "SecurityRequirementNotDefined",
        |d| {
            set(&mut d, &format!("{LIST}/security"), json!([{"oauth": []}]));
        }
    );
    rule_case!(
        too_many_operations,
        "TotalOperationsCountExceedsMaxAllowed",
        |d| {
            let op = d.pointer(LIST).unwrap().clone();
            for i in 0..MAX_OPERATIONS {
                let mut op = op.clone();
                op["operationId"] = json!(format!("ListInstances{i}"));
                set(&mut d, &format!("/paths/~1extra{i}"), json!({ "get": op }));
            }
        }
    );
    rule_case!(operation_id_missing, "OperationIdRequired", |d| {
        remove(&mut d, &format!("{LIST}/operationId"));
    });
    rule_case!(operation_id_duplicate, "OperationIdNotUnique", |d| {
        set(
            &mut d,
            &format!("{DELETE}/operationId"),
            json!("listinstances"),
        );
    });
    rule_case!(operation_id_underscore, "OperationIdSanitized", |d| {
        set(
            &mut d,
            &format!("{DELETE}/operationId"),
            json!("Delete_Subscription"),
        );
    });
    rule_case!(summary_missing, "OperationSummaryRequired", |d| {
        remove(&mut d, &format!("{LIST}/summary"));
    });
    rule_case!(summary_too_long, "OperationSummaryTooLong", |d| {
        set(
            &mut d,
            &format!("{LIST}/summary"),
            json!(format!("List {}", "instances ".repeat(8).trim_end())),
        );
    });
    rule_case!(summary_with_slash, "RestrictedCharactersInSummary", |d| {
        set(
            &mut d,
            &format!("{LIST}/summary"),
            json!("List instances/segments"),
        );
    });
    rule_case!(
        summary_trailing_space,
        "ValueMustEndWithAlphanumeric",
        |d| {
            set(&mut d, &format!("{LIST}/summary"), json!("List instances "));
        }
    );
    rule_case!(
        description_op_missing,
        "OperationDescriptionRequired",
        |d| {
            remove(&mut d, &format!("{LIST}/description"));
        }
    );
    rule_case!(
        description_op_no_punctuation,
        "DescriptionMustEndWithPunctuation",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/description"),
                json!("Lists the instances"),
            );
        }
    );
    rule_case!(
        description_equals_summary,
        "SummaryAndDescriptionMustDiffer",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/description"),
                json!("List instances."),
            );
        }
    );
    rule_case!(visibility_invalid, "InvalidVisibilityValue", |d| {
        set(&mut d, &format!("{LIST}/x-ms-visibility"), json!("hidden"));
    });
    rule_case!(
        visibility_invalid_on_property,
        "InvalidVisibilityValue",
        |d| {
            set(
                &mut d,
                "/definitions/Instance/properties/name/x-ms-visibility",
                json!("Important"),
            );
        }
    );
    rule_case!(parameter_summary_missing, "ParameterSummaryRequired", |d| {
        remove(&mut d, &format!("{DELETE}/parameters/1/x-ms-summary"));
    });
    rule_case!(
        parameter_description_missing,
        "ParameterDescriptionRequired",
        |d| {
            remove(&mut d, &format!("{DELETE}/parameters/1/description"));
        }
    );
    rule_case!(
        path_parameter_optional,
        "PathParameterMustBeRequired",
        |d| {
            set(
                &mut d,
                &format!("{DELETE}/parameters/1/required"),
                json!(false),
            );
        }
    );
    rule_case!(
        path_parameter_without_encoding,
        "PathParameterMissingEncoding",
        |d| {
            remove(&mut d, &format!("{DELETE}/parameters/1/x-ms-url-encoding"));
        }
    );
    rule_case!(
        path_parameter_not_in_template,
        "PathParameterNotDefinedInTemplate",
        |d| {
            set(
                &mut d,
                &format!("{DELETE}/parameters/1/name"),
                json!("hookId"),
            );
        }
    );
    rule_case!(
        template_variable_without_parameter,
        "OperationMissingPathParameter",
        |d| {
            remove(&mut d, &format!("{DELETE}/parameters/1"));
        }
    );
    rule_case!(
        query_parameter_with_encoding,
        "QueryParameterEncodingNotSupported",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/parameters/0/x-ms-url-encoding"),
                json!("single"),
            );
        }
    );
    rule_case!(
        get_with_body,
        "BodyOrFormDataParameterInFetchOperationNotAllowed",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/parameters/1"),
                json!({"name": "body", "in": "body", "schema": {"type": "object"}}),
            );
        }
    );
    rule_case!(two_body_parameters, "MultipleBodyParameters", |d| {
        set(
            &mut d,
            &format!("{TRIGGER}/parameters/2"),
            json!({"name": "extra", "in": "body", "schema": {"type": "object"}}),
        );
    });
    rule_case!(body_without_schema, "BodyParameterSchemaRequired", |d| {
        remove(&mut d, &format!("{TRIGGER}/parameters/1/schema"));
    });
    rule_case!(
        internal_required_parameter_without_default,
        "InternalRequiredWithoutDefault",
        |d| {
            remove(&mut d, &format!("{LIST}/parameters/0/default"));
        }
    );
    rule_case!(
        internal_required_property_without_default,
        "InternalRequiredWithoutDefault",
        |d| {
            remove(&mut d, &format!("{SUBSCRIPTION}/properties/event/default"));
        }
    );
    rule_case!(
        internal_default_parameter_optional,
        "InternalPropertyWithDefaultOptional",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/parameters/0/required"),
                json!(false),
            );
        }
    );
    rule_case!(
        internal_default_property_optional,
        "InternalPropertyWithDefaultOptional",
        |d| {
            set(
                &mut d,
                &format!("{SUBSCRIPTION}/required"),
                json!(["notificationUrl", "segmentName", "threshold"]),
            );
        }
    );
    rule_case!(no_responses, "OperationMustHaveResponse", |d| {
        set(&mut d, &format!("{LIST}/responses"), json!({}));
    });
    rule_case!(
        no_success_response,
        "OperationShouldHaveSuccessfulResponse",
        |d| {
            remove(&mut d, &format!("{LIST}/responses/200"));
        }
    );
    rule_case!(
        error_response_with_schema,
        "OperationHasManyResponsesWithSchema",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/responses/404"),
                json!({"description": "Not Found", "schema": {"type": "object"}}),
            );
        }
    );
    rule_case!(
        default_response_with_schema,
        "DefaultResponseHasSchema",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/responses/default/schema"),
                json!({"type": "object"}),
            );
        }
    );
    rule_case!(ref_to_components, "InvalidReferenceLocation", |d| {
        set(
            &mut d,
            &format!("{LIST}/responses/200/schema"),
            json!({"$ref": "#/components/schemas/InstanceList"}),
        );
    });
    rule_case!(ref_unresolved, "UnresolvedReference", |d| {
        set(
            &mut d,
            &format!("{LIST}/responses/200/schema"),
            json!({"$ref": "#/definitions/Missing"}),
        );
    });
    rule_case!(ref_with_siblings, "RefSiblingsNotAllowed", |d| {
        set(
            &mut d,
            "/definitions/InstanceList/properties/value/items/description",
            json!("An instance."),
        );
    });
    rule_case!(trigger_value_invalid, "InvalidTriggerValue", |d| {
        set(
            &mut d,
            &format!("{TRIGGER}/x-ms-trigger"),
            json!("multiple"),
        );
    });
    rule_case!(trigger_not_post, "WebhookTriggerMustBePost", |d| {
        let op = d.pointer(TRIGGER).unwrap().clone();
        remove(&mut d, TRIGGER);
        set(&mut d, &TRIGGER.replace("/post", "/put"), op);
    });
    rule_case!(
        trigger_without_body,
        "WebhookOperationsMissingNotificationUrlProperty",
        |d| {
            remove(&mut d, &format!("{TRIGGER}/parameters/1"));
        }
    );
    rule_case!(
        trigger_without_notification_url,
        "WebhookOperationsMissingNotificationUrlProperty",
        |d| {
            remove(
                &mut d,
                &format!("{SUBSCRIPTION}/properties/notificationUrl/x-ms-notification-url"),
            );
        }
    );
    rule_case!(
        notification_url_not_string,
        "NotificationUrlNotString",
        |d| {
            set(
                &mut d,
                &format!("{SUBSCRIPTION}/properties/notificationUrl/type"),
                json!("object"),
            );
        }
    );
    rule_case!(
        notification_url_not_internal,
        "NotificationUrlNotInternal",
        |d| {
            set(
                &mut d,
                &format!("{SUBSCRIPTION}/properties/notificationUrl/x-ms-visibility"),
                json!("advanced"),
            );
        }
    );
    rule_case!(
        notification_url_not_in_required,
        "NotificationUrlNotRequired",
        |d| {
            set(
                &mut d,
                &format!("{SUBSCRIPTION}/required"),
                json!(["event", "segmentName", "threshold"]),
            );
        }
    );
    rule_case!(
        notification_body_not_required,
        "NotificationUrlNotRequired",
        |d| {
            set(
                &mut d,
                &format!("{TRIGGER}/parameters/1/required"),
                json!(false),
            );
        }
    );
    rule_case!(
        nested_notification_url_parent_optional,
        "NotificationUrlNotRequired",
        |d| {
            set(
                &mut d,
                &format!("{TRIGGER}/parameters/1/schema"),
                json!({
                    "type": "object",
                    "properties": {"callback": {"$ref": "#/definitions/SegmentSubscription"}}
                }),
            );
        }
    );
    rule_case!(
        notification_content_missing,
        "OperationMustHaveNotificationContentExtension",
        |d| {
            remove(&mut d, "/paths/~1v1~1instances~1{instanceId}~1hooks~1segment-threshold/x-ms-notification-content/schema");
        }
    );
    rule_case!(
        notification_extension_on_webhook,
        "NotificationExtensionNotSupportedInWebhookOperation",
        |d| {
            set(
                &mut d,
                &format!("{TRIGGER}/x-ms-notification"),
                json!({"operationId": "ListInstances"}),
            );
        }
    );
    rule_case!(trigger_without_201, "WebhookMissingCreatedResponse", |d| {
        let created = d
            .pointer(&format!("{TRIGGER}/responses/201"))
            .unwrap()
            .clone();
        remove(&mut d, &format!("{TRIGGER}/responses/201"));
        set(&mut d, &format!("{TRIGGER}/responses/200"), created);
    });
    rule_case!(
        trigger_without_internal_delete,
        "WebhookMissingDeleteOperation",
        |d| {
            set(
                &mut d,
                &format!("{DELETE}/x-ms-visibility"),
                json!("advanced"),
            );
        }
    );
    rule_case!(
        dynamic_values_unknown_operation,
        "DynamicOperationNotFound",
        |d| {
            set(
                &mut d,
                &format!("{SUBSCRIPTION}/properties/segmentName/x-ms-dynamic-values/operationId"),
                json!("GetSegments"),
            );
        }
    );
    rule_case!(
        dynamic_schema_unknown_operation,
        "DynamicOperationNotFound",
        |d| {
            set(
                &mut d,
                "/definitions/SegmentEvent/x-ms-dynamic-schema",
                json!({"operationId": "GetSchema", "value-path": "schema"}),
            );
        }
    );
    rule_case!(
        dynamic_values_unknown_parameter,
        "DynamicParameterNotFound",
        |d| {
            set(
                &mut d,
                &format!(
                    "{SUBSCRIPTION}/properties/segmentName/x-ms-dynamic-values/parameters/top"
                ),
                json!(5),
            );
        }
    );
    rule_case!(pageable_bad_next_link, "InvalidNextLinkNameValue", |d| {
        set(
            &mut d,
            &format!("{LIST}/x-ms-pageable/nextLinkName"),
            json!("next"),
        );
    });
    rule_case!(unknown_extension, "UnknownExtension", |d| {
        set(&mut d, &format!("{LIST}/x-ms-visibilty"), json!("internal"));
    });
    rule_case!(
        extension_in_wrong_position,
        "ExtensionNotAllowedInThisPosition",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/x-ms-summary"),
                json!("List instances"),
            );
        }
    );
    rule_case!(
        dynamic_values_on_body_parameter,
        "ExtensionNotAllowedInThisPosition",
        |d| {
            set(
                &mut d,
                &format!("{TRIGGER}/parameters/1/x-ms-dynamic-values"),
                json!({"operationId": "ListInstances"}),
            );
        }
    );
    rule_case!(
        notification_url_on_query_parameter,
        "NotificationUrlNotAllowedInThisPosition",
        |d| {
            set(
                &mut d,
                &format!("{LIST}/parameters/0/x-ms-notification-url"),
                json!(true),
            );
        }
    );

    #[test]
    fn issues_are_deduplicated_for_shared_path_parameters() {
        let mut doc = valid();
        remove(
            &mut doc,
            "/paths/~1v1~1instances~1{instanceId}~1segments/parameters/0/x-ms-summary",
        );
        set(
            &mut doc,
            "/paths/~1v1~1instances~1{instanceId}~1segments/post",
            json!({
                "operationId": "CreateSegment", "summary": "Create a segment", "description": "Creates a segment.",
                "responses": {"201": {"description": "Created"}}
            }),
        );
        let hits = lint_connector(&doc, None)
            .into_iter()
            .filter(|i| i.rule == "ParameterSummaryRequired")
            .count();
        assert_eq!(hits, 1);
    }

    #[test]
    fn polling_trigger_skips_webhook_rules() {
        let mut doc = valid();
        set(&mut doc, &format!("{LIST}/x-ms-trigger"), json!("batch"));
        set(
            &mut doc,
            &format!("{LIST}/x-ms-trigger-metadata"),
            json!({"kind": "query", "mode": "polling"}),
        );
        assert!(rules(&doc).is_empty(), "{:?}", rules(&doc));
    }
}
