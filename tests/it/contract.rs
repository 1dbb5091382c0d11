//! The whole surface against the spec: route ↔ spec parity, every operation served, and a tour
//! that exercises every operation of `openapi/openapi.json` (each response validated by the
//! shared helper in `tests/it/common/contract.rs`).

use crate::common;
use crate::receiver;

use std::collections::BTreeSet;

use crate::common::contract::contract;
use crate::common::{spawn_app, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

/// Operational endpoints: served, deliberately not part of the documented API.
const OPERATIONAL: [&str; 6] = [
    "/health",
    "/ready",
    "/metrics",
    "/openapi.json",
    "/docs",
    "/connector/{file}",
];

/// Routes declared in the handlers' source (`#[get("…")]` and friends) and in `operational.rs`.
fn routes_in_source() -> BTreeSet<(String, String)> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api");
    let mut routes = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        for line in text.lines() {
            let line = line.trim();
            for method in ["get", "post", "put", "patch", "delete"] {
                if let Some(rest) = line.strip_prefix(&format!("#[{method}(\"")) {
                    let route = rest.split('"').next().unwrap();
                    routes.insert((method.to_uppercase(), route.to_string()));
                }
                if let Some(idx) = line.find(".route(\"") {
                    let rest = &line[idx + 8..];
                    let route = rest.split('"').next().unwrap();
                    if rest.contains(&format!("web::{method}()")) {
                        routes.insert((method.to_uppercase(), route.to_string()));
                    }
                }
            }
        }
    }
    routes
}

fn operations_in_spec() -> BTreeSet<(String, String)> {
    let spec = contract().spec();
    let mut ops = BTreeSet::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                ops.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

#[test]
fn every_served_route_is_in_the_spec_and_every_operation_is_served() {
    let served = routes_in_source();
    let documented = operations_in_spec();
    let undocumented: Vec<_> = served
        .iter()
        .filter(|(_, r)| !OPERATIONAL.contains(&r.as_str()))
        .filter(|r| !documented.contains(*r))
        .collect();
    assert!(
        undocumented.is_empty(),
        "served but not in openapi.json: {undocumented:?}"
    );
    let unserved: Vec<_> = documented.iter().filter(|o| !served.contains(*o)).collect();
    assert!(
        unserved.is_empty(),
        "in openapi.json but not served: {unserved:?}"
    );
    for op in OPERATIONAL.iter().filter(|p| **p != "/connector/{file}") {
        assert!(
            served.iter().any(|(_, r)| r == op) || *op == "/docs",
            "operational route {op} is not served"
        );
    }
}

#[tokio::test]
async fn every_documented_operation_is_routed_to_a_handler() {
    let app = spawn_app().await;
    for (method, template) in operations_in_spec() {
        let path = template
            .split('/')
            .map(|s| if s.starts_with('{') { "x" } else { s })
            .collect::<Vec<_>>()
            .join("/");
        let res = app
            .client
            .request(
                Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .header("X-API-Key", common::KEY_A)
            .header("content-type", "application/json")
            .body("{}")
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let body = res.text().await.unwrap();
        assert_ne!(status, 405, "{method} {template} is not routed: {body}");
        assert!(
            !body.contains("no resource at"),
            "{method} {template} fell through to the fallback: {body}"
        );
    }
}

#[test]
fn the_contract_checker_rejects_what_the_spec_does_not_allow() {
    let c = contract();
    let json_headers = |ct: &str| {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert("content-type", ct.parse().unwrap());
        h
    };
    let ok = r#"{"instanceId":"i","name":"n","refreshSchedule":null,"createdAt":"2026-01-01T00:00:00Z"}"#;
    c.check(
        "GET",
        "/instances/i",
        200,
        &json_headers("application/json"),
        ok,
    );
    let fails = |status: u16, ct: &str, body: &str| {
        let headers = json_headers(ct);
        std::panic::catch_unwind(|| c.check("GET", "/instances/i", status, &headers, body)).is_err()
    };
    assert!(fails(418, "application/json", ok), "undeclared status");
    assert!(fails(200, "text/plain", ok), "undeclared content type");
    assert!(
        fails(200, "application/json", r#"{"instanceId":5}"#),
        "wrong field type"
    );
    assert!(
        fails(200, "application/json", r#"{"name":"n"}"#),
        "missing required field"
    );
    let created = json_headers("application/json");
    assert!(
        std::panic::catch_unwind(|| c.check("POST", "/instances", 201, &created, ok)).is_err(),
        "201 without Location"
    );
}

async fn ok(app: &TestApp, method: Method, path: &str, body: Option<Value>) -> Value {
    let r = app
        .send(method.clone(), path, Some(common::KEY_A), body.as_ref())
        .await;
    assert!(
        r.status.is_success(),
        "{method} {path}: {} {}",
        r.status,
        r.text
    );
    if r.text.is_empty() {
        Value::Null
    } else {
        r.json()
    }
}

/// Exercises every operation in the document; fails naming any operation no test called.
#[tokio::test]
async fn a_tour_exercises_every_operation() {
    let app = spawn_app().await;
    let inst = ok(
        &app,
        Method::POST,
        "/instances",
        Some(json!({"name":"Tour"})),
    )
    .await["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let i = format!("/instances/{inst}");
    ok(&app, Method::GET, "/instances", None).await;
    ok(&app, Method::GET, &i, None).await;

    let ds = ok(
        &app,
        Method::POST,
        &format!("{i}/datasources"),
        Some(json!({"name":"People","entityName":"People","format":"csv","keyField":"Id",
                    "content":"Id,Email,City,Spend\n1,a@x.com,Berlin,10\n2,A@x.com,Berlin,20\n3,c@x.com,Paris,5\n"})),
    )
    .await["dataSourceId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&app, Method::GET, &format!("{i}/datasources"), None).await;
    ok(&app, Method::GET, &format!("{i}/datasources/{ds}"), None).await;
    let job = app.run_job(&format!("{i}/datasources/{ds}/refresh")).await;
    assert_eq!(job["status"], "succeeded");

    ok(&app, Method::GET, &format!("{i}/entities"), None).await;
    ok(
        &app,
        Method::GET,
        &format!("{i}/entities/People/schema"),
        None,
    )
    .await;
    ok(
        &app,
        Method::GET,
        &format!("{i}/entities/People/items?$top=1"),
        None,
    )
    .await;
    ok(
        &app,
        Method::GET,
        &format!("{i}/entities/People/items/1"),
        None,
    )
    .await;
    ok(
        &app,
        Method::POST,
        &format!("{i}/entities/People/items"),
        Some(json!({"Id":"4","City":"Rome"})),
    )
    .await;
    ok(
        &app,
        Method::PATCH,
        &format!("{i}/entities/People/items/4"),
        Some(json!({"Spend":7})),
    )
    .await;

    let config = json!({"sources":[{"entityName":"People","fields":{"email":"Email","city":"City","spend":"Spend"},"priority":1}],
                        "rules":[{"name":"email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]}],
                        "merge":{"policy":"mostComplete"}});
    ok(
        &app,
        Method::POST,
        &format!("{i}/unification/preview"),
        Some(config.clone()),
    )
    .await;
    ok(&app, Method::PUT, &format!("{i}/unification"), Some(config)).await;
    ok(&app, Method::GET, &format!("{i}/unification"), None).await;
    assert_eq!(
        app.run_job(&format!("{i}/unification/run")).await["status"],
        "succeeded"
    );

    let seg = ok(
        &app,
        Method::POST,
        &format!("{i}/segments"),
        Some(json!({"name":"Berlin","filter":"city eq 'Berlin'"})),
    )
    .await["segmentId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&app, Method::GET, &format!("{i}/segments"), None).await;
    ok(&app, Method::GET, &format!("{i}/segments/{seg}"), None).await;
    assert_eq!(
        app.run_job(&format!("{i}/segments/{seg}/refresh")).await["result"]["memberCount"],
        1
    );
    ok(
        &app,
        Method::GET,
        &format!("{i}/segments/{seg}/members"),
        None,
    )
    .await;

    let measure = ok(
        &app,
        Method::POST,
        &format!("{i}/measures"),
        Some(json!({"name":"Spend","entityName":"People","aggregate":"sum","field":"Spend"})),
    )
    .await["measureId"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&app, Method::GET, &format!("{i}/measures"), None).await;
    ok(&app, Method::GET, &format!("{i}/measures/{measure}"), None).await;
    assert_eq!(
        app.run_job(&format!("{i}/measures/{measure}/refresh"))
            .await["result"]["value"],
        42.0
    );

    assert_eq!(
        app.run_job(&format!("{i}/refresh")).await["status"],
        "succeeded"
    );

    tour_triggers(&app, &i).await;

    let r = app.delete(&i).await;
    assert_eq!(r.status, 204);

    // What this test exercised (the binary's other tests exercise operations too, concurrently).
    let missing: Vec<String> = contract()
        .operation_ids()
        .difference(&contract().exercised_on_this_thread())
        .cloned()
        .collect();
    assert!(
        missing.is_empty(),
        "operations no test exercised: {missing:?}"
    );
}

/// The trigger operations (subscriptions) of the tour: the six subscribes against a local
/// receiver, list/get, a delivery (a unification run), its listing and redelivery, unsubscribe.
async fn tour_triggers(app: &TestApp, i: &str) {
    let rx = receiver::Receiver::start().await;
    let url = rx.url("/tour");
    let first = |v: Value, key: &str| v["value"][0][key].as_str().unwrap().to_string();
    let ds = first(
        ok(app, Method::GET, &format!("{i}/datasources"), None).await,
        "dataSourceId",
    );
    let seg = first(
        ok(app, Method::GET, &format!("{i}/segments"), None).await,
        "segmentId",
    );
    let measure = first(
        ok(app, Method::GET, &format!("{i}/measures"), None).await,
        "measureId",
    );
    let subscribes = [
        (
            "datasource-refresh-failed",
            json!({"notificationUrl": url, "dataSourceId": ds}),
        ),
        (
            "datasource-refresh-succeeded",
            json!({"notificationUrl": url}),
        ),
        (
            "segment-threshold",
            json!({"notificationUrl": url, "segmentId": seg, "threshold": 1000}),
        ),
        (
            "measure-threshold",
            json!({"notificationUrl": url, "measureId": measure, "threshold": 1e9}),
        ),
        ("full-refresh-completed", json!({"notificationUrl": url})),
        ("unification-completed", json!({"notificationUrl": url})),
    ];
    let mut location = String::new();
    for (trigger, body) in subscribes {
        let r = app.post(&format!("{i}/triggers/{trigger}"), body).await;
        assert_eq!(r.status, 201, "{trigger}: {}", r.text);
        location = r.header("location").unwrap().to_string(); // the last: unification
    }
    ok(app, Method::GET, &format!("{i}/subscriptions"), None).await;
    ok(app, Method::GET, &location, None).await;

    // One notification, delivered; then queued again.
    app.run_job(&format!("{i}/unification/run")).await;
    rx.wait_for(Some("/tour"), 1, std::time::Duration::from_secs(15))
        .await;
    let deliveries = format!("{location}/deliveries");
    let mut delivery = Value::Null;
    for _ in 0..300 {
        delivery = ok(app, Method::GET, &deliveries, None).await["value"][0].clone();
        if delivery["status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivery["status"], "delivered", "{delivery}");
    let id = delivery["deliveryId"].as_str().unwrap();
    let again = ok(
        app,
        Method::POST,
        &format!("{deliveries}/{id}/redeliver"),
        None,
    )
    .await;
    assert_eq!(again["status"], "pending");

    let r = app.delete(&location).await;
    assert_eq!(r.status, 204);
}
