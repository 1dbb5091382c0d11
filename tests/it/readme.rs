//! README.md's table of actions and triggers is generated from `openapi/openapi.json` (itself
//! generated from the code and checked for drift by `tests/it/spec.rs`), so it cannot drift either.
//!
//! The block between [`START`] and [`END`] must equal [`operations_table`]. To rewrite it after
//! the API changed:
//!
//! ```sh
//! UPDATE_README=1 cargo test --test it readme::
//! ```

use std::path::PathBuf;

use serde_json::Value;

const START: &str = "<!-- operations:start -->";
const END: &str = "<!-- operations:end -->";
const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace('\n', " ")
}

/// The Markdown table of every operation of the spec: triggers first, then actions, each in path
/// order (then GET, POST, PUT, PATCH, DELETE).
fn operations_table(spec: &Value) -> String {
    let mut rows = Vec::new();
    let paths = spec["paths"].as_object().expect("the spec has paths");
    for (path, item) in paths {
        for (m, method) in METHODS.iter().enumerate() {
            let Some(op) = item.get(*method) else {
                continue;
            };
            let id = op["operationId"]
                .as_str()
                .expect("every operation has an operationId");
            let kind = if op.get("x-ms-trigger").is_some() {
                (0, "Trigger")
            } else if op["x-ms-visibility"] == "internal" {
                (1, "Action (internal)")
            } else {
                (1, "Action")
            };
            let summary = op["summary"].as_str().unwrap_or_default();
            rows.push((
                (kind.0, path.clone(), m),
                format!(
                    "| {} | `{}` | {} | `{}` | {} |",
                    kind.1,
                    id,
                    method.to_uppercase(),
                    cell(path),
                    cell(summary)
                ),
            ));
        }
    }
    rows.sort();
    let mut table =
        String::from("| Kind | Operation ID | Method | Path | Summary |\n|---|---|---|---|---|\n");
    for (_, row) in rows {
        table.push_str(&row);
        table.push('\n');
    }
    table
}

#[test]
fn readme_operations_table_matches_the_spec() {
    let spec_text = std::fs::read_to_string(root().join("openapi/openapi.json")).unwrap();
    let spec: Value = serde_json::from_str(&spec_text).unwrap();
    let readme_path = root().join("README.md");
    let readme = std::fs::read_to_string(&readme_path).unwrap();

    assert_eq!(
        readme.matches(START).count(),
        1,
        "README.md must contain the marker {START} exactly once"
    );
    assert_eq!(
        readme.matches(END).count(),
        1,
        "README.md must contain the marker {END} exactly once"
    );
    let (before, rest) = readme.split_once(START).unwrap();
    let (current, after) = rest
        .split_once(END)
        .unwrap_or_else(|| panic!("{END} must come after {START} in README.md"));

    let expected = format!("\n{}", operations_table(&spec));
    if current == expected {
        return;
    }
    if std::env::var_os("UPDATE_README").is_some() {
        std::fs::write(
            &readme_path,
            format!("{before}{START}{expected}{END}{after}"),
        )
        .unwrap();
        eprintln!("README.md: operations table rewritten from openapi/openapi.json");
        return;
    }
    panic!(
        "README.md's table of actions and triggers differs from openapi/openapi.json.\n\
         Regenerate it with `UPDATE_README=1 cargo test --test it readme::`. Expected block:\n{expected}"
    );
}

#[test]
fn the_table_lists_every_operation_once() {
    let spec: Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("openapi/openapi.json")).unwrap(),
    )
    .unwrap();
    let table = operations_table(&spec);
    let mut ids: Vec<&str> = spec["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| METHODS.iter().filter_map(|m| item.get(*m)))
        .map(|op| op["operationId"].as_str().unwrap())
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    assert_eq!(before, ids.len(), "operation ids are unique");
    for id in &ids {
        assert_eq!(
            table.matches(&format!("| `{id}` |")).count(),
            1,
            "{id} appears once in the table"
        );
    }
    // Header, separator and one row per operation.
    assert_eq!(table.lines().count(), ids.len() + 2);
    // The triggers of the contract are all there, and listed as triggers.
    for trigger in [
        "OnDataSourceRefreshFailed",
        "OnDataSourceRefreshSucceeded",
        "OnSegmentThresholdCrossed",
        "OnMeasureThresholdCrossed",
        "OnFullRefreshCompleted",
        "OnUnificationCompleted",
    ] {
        assert!(
            table.contains(&format!("| Trigger | `{trigger}` |")),
            "{trigger} is a trigger"
        );
    }
}
