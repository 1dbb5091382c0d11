//! The OData system query options of `GetItems`, read from the raw query string the way OData
//! 4.01 names them: case-insensitive, the `$` optional. An unknown `$` option, an option given
//! twice, an empty one and a known one this service does not implement are refused, so a query
//! never silently means something else than what was asked.

use actix_web::HttpRequest;

use super::problem::ApiError;
use crate::engine::entities::ItemsQuery;

/// The system query options `GetItems` implements.
const IMPLEMENTED: [&str; 9] = [
    "filter",
    "select",
    "orderby",
    "top",
    "skip",
    "skiptoken",
    "count",
    "search",
    "format",
];

/// System query options of OData that a flat entity of items has no use for.
const NOT_IMPLEMENTED: [&str; 7] = [
    "expand",
    "apply",
    "compute",
    "levels",
    "index",
    "schemaversion",
    "deltatoken",
];

fn bad(message: String) -> ApiError {
    ApiError::BadRequest(message)
}

/// Reads the query options of a `GetItems` request (and its `Prefer: odata.maxpagesize`).
pub fn items_query(req: &HttpRequest) -> Result<ItemsQuery, ApiError> {
    let mut q = ItemsQuery::default();
    let mut seen: Vec<String> = Vec::new();
    for (name, value) in url::form_urlencoded::parse(req.query_string().as_bytes()) {
        let lower = name.to_ascii_lowercase();
        let dollar = lower.starts_with('$');
        let option = lower.trim_start_matches('$');
        if name.starts_with('@') {
            return Err(bad(format!(
                "parameter aliases ('{name}') are not supported: write the value into the option"
            )));
        }
        if NOT_IMPLEMENTED.contains(&option) {
            return Err(bad(format!("${option} is not supported by GetItems")));
        }
        if !IMPLEMENTED.contains(&option) {
            if dollar {
                return Err(bad(format!(
                    "unknown system query option '{name}' (GetItems takes $filter, $select, \
                     $orderby, $top, $skip, $skiptoken, $count, $search and $format)"
                )));
            }
            // A custom query option (no `$`, not a system option's name): not ours to judge.
            continue;
        }
        if seen.iter().any(|s| s == option) {
            return Err(bad(format!(
                "${option} is given more than once (option names ignore case and the '$')"
            )));
        }
        seen.push(option.to_string());
        if value.trim().is_empty() {
            return Err(bad(format!("${option} must not be empty")));
        }
        let value = value.into_owned();
        let integer = |value: &str| {
            value.trim().parse::<i64>().map_err(|_| {
                bad(format!(
                    "invalid ${option}: '{value}' is not a whole number"
                ))
            })
        };
        match option {
            "filter" => q.filter = Some(value),
            "select" => q.select = Some(value),
            "orderby" => q.orderby = Some(value),
            "search" => q.search = Some(value),
            "skiptoken" => q.skiptoken = Some(value),
            "top" => q.top = Some(integer(&value)?),
            "skip" => q.skip = Some(integer(&value)?),
            "count" => {
                q.count = match value.trim().to_ascii_lowercase().as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(bad(format!(
                            "invalid $count: '{value}' (expected true or false)"
                        )))
                    }
                }
            }
            _ => {
                // `$format`: JSON is the only format.
                let format = value.trim().to_ascii_lowercase();
                if format != "json" && !format.starts_with("application/json") {
                    return Err(bad(format!(
                        "invalid $format: '{value}' (GetItems answers JSON only)"
                    )));
                }
            }
        }
    }
    // In `$search` a `;` must be percent-encoded (the grammar reserves it), as `&` must.
    if q.search.is_some() {
        let raw_search = req.query_string().split('&').find(|pair| {
            let name = pair.split('=').next().unwrap_or("").to_ascii_lowercase();
            name.trim_start_matches('$') == "search" || name.trim_start_matches("%24") == "search"
        });
        if raw_search.is_some_and(|pair| pair.contains(';')) {
            return Err(bad(
                "a ';' in $search must be percent-encoded (%3B)".to_string()
            ));
        }
    }
    q.max_page_size = max_page_size(req);
    Ok(q)
}

/// `Prefer: odata.maxpagesize=n` (or the 4.01 `maxpagesize=n`); other preferences are ignored.
fn max_page_size(req: &HttpRequest) -> Option<i64> {
    req.headers()
        .get_all(actix_web::http::header::HeaderName::from_static("prefer"))
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|preference| {
            let (name, value) = preference.split_once('=')?;
            let name = name.trim().to_ascii_lowercase();
            (name == "odata.maxpagesize" || name == "maxpagesize")
                .then(|| value.trim().trim_matches('"').parse::<i64>().ok())
                .flatten()
        })
        .find(|n| *n > 0)
}
