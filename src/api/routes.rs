//! HTTP layer: the table of served path templates, built from the OpenAPI document. It labels
//! metrics by template and tells 405 (known path, other method) from 404. May use nothing else of
//! the crate.

/// Path templates and their methods, to tell 405 (known path, other method) from 404.
#[derive(Debug, Clone, Default)]
pub struct RouteTable {
    /// (segments, methods, template)
    routes: Vec<(Vec<String>, Vec<String>, String)>,
}

impl RouteTable {
    pub fn from_openapi(doc: &utoipa::openapi::OpenApi) -> Self {
        let mut table = Self::default();
        let value = serde_json::to_value(doc).unwrap_or_default();
        if let Some(paths) = value.get("paths").and_then(|p| p.as_object()) {
            for (template, item) in paths {
                let methods = item
                    .as_object()
                    .map(|o| {
                        o.keys()
                            .filter(|k| {
                                matches!(
                                    k.as_str(),
                                    "get"
                                        | "post"
                                        | "put"
                                        | "patch"
                                        | "delete"
                                        | "head"
                                        | "options"
                                )
                            })
                            .map(|k| k.to_uppercase())
                            .collect()
                    })
                    .unwrap_or_default();
                table.add(template, methods);
            }
        }
        for p in [
            "/health",
            "/ready",
            "/metrics",
            "/openapi.json",
            "/docs",
            "/connector/{file}",
        ] {
            table.add(p, vec!["GET".into()]);
        }
        table
    }

    /// The template a concrete path belongs to (the most literal one when several fit), e.g. for
    /// metric labels. Plain segment comparison: cheaper than asking the router to match again.
    pub fn template(&self, path: &str) -> Option<&str> {
        if path.starts_with("/docs/") {
            return Some("/docs/");
        }
        let parts: Vec<&str> = path.split('/').collect();
        self.routes
            .iter()
            .filter(|(segments, _, _)| Self::fits(segments, &parts))
            .max_by_key(|(segments, _, _)| segments.iter().filter(|s| !Self::is_param(s)).count())
            .map(|(_, _, template)| template.as_str())
    }

    fn is_param(segment: &str) -> bool {
        segment.starts_with('{') && segment.ends_with('}')
    }

    fn fits(segments: &[String], parts: &[&str]) -> bool {
        segments.len() == parts.len()
            && segments
                .iter()
                .zip(parts)
                .all(|(s, p)| (Self::is_param(s) && !p.is_empty()) || s == p)
    }

    fn add(&mut self, template: &str, methods: Vec<String>) {
        let segments = template.split('/').map(String::from).collect();
        self.routes.push((segments, methods, template.to_string()));
    }

    /// The methods served at this concrete path, if the path is known at all.
    pub fn allowed(&self, path: &str) -> Option<Vec<String>> {
        let parts: Vec<&str> = path.split('/').collect();
        let mut found: Option<Vec<String>> = None;
        for (segments, methods, _) in &self.routes {
            if Self::fits(segments, &parts) {
                let all = found.get_or_insert_with(Vec::new);
                for m in methods {
                    if !all.contains(m) {
                        all.push(m.clone());
                    }
                }
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn metric_routes_are_the_documented_templates() {
        let table = super::RouteTable::from_openapi(&crate::spec::openapi());
        let cases = [
            ("/instances", Some("/instances")),
            ("/instances/abc", Some("/instances/{instanceId}")),
            (
                "/instances/abc/entities/People/items",
                Some("/instances/{instanceId}/entities/{entityName}/items"),
            ),
            (
                "/instances/abc/entities/People/items/42",
                Some("/instances/{instanceId}/entities/{entityName}/items/{itemId}"),
            ),
            (
                "/instances/abc/unification/run",
                Some("/instances/{instanceId}/unification/run"),
            ),
            ("/metrics", Some("/metrics")),
            ("/docs/index.html", Some("/docs/")),
            ("/connector/icon.png", Some("/connector/{file}")),
            ("/instances//entities", None),
            ("/no/such/route", None),
        ];
        for (path, expected) in cases {
            assert_eq!(table.template(path), expected, "{path}");
        }
    }
}
