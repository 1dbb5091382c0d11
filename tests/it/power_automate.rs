//! The service used the way Power Automate uses it: through nothing but
//! `connector-definition/apiDefinition.swagger.json` (see `power_automate/connector.rs`).
//!
//! One flow-maker's story: create an instance and data sources, subscribe every webhook trigger
//! (dropdowns filled from `x-ms-dynamic-values`, the callback in the `x-ms-notification-url`
//! property), drive the engine with actions (202 + polling), check every notification against
//! its trigger's `x-ms-notification-content`, sweep every dynamic extension and every pageable
//! operation, then unsubscribe through the `Location`s and check that deliveries stop.

mod connector;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use crate::common::{spawn_app, KEY_A};
use crate::receiver::{Received, Receiver};
use connector::{Connector, Subscription, DYNAMIC_SCHEMA, DYNAMIC_VALUES};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);

const CONTACTS: &str = "Id,Email,First,City,Age\n\
1,ann@example.com,Ann,Berlin,34\n\
2,bob@example.com,Bob,Hamburg,41\n\
3,carl@example.com,Carl,Berlin,\n\
4,dora@example.com,Dora,Munich,58\n\
5,eve@example.com,Eve,Cologne,29\n";

const SHOP: &str = "CustomerNo,Mail,Town,Spend\n\
S1,bob@example.com,Hamburg,120.5\n\
S2,fay@example.com,Munich,80\n\
S3,ann@example.com,Berlin,15.25\n";

/// Refreshing it fails: the key `1` appears twice.
const BROKEN: &str = "id,name\n1,a\n1,b\n";

/// A dropdown choice by display name.
fn pick(title: &str) -> Value {
    json!({ "$pick": title })
}

/// `{"instanceId": pick("Contoso")}` plus `more`.
fn contoso(more: Value) -> Value {
    let mut v = json!({ "instanceId": pick("Contoso") });
    v.as_object_mut()
        .unwrap()
        .extend(more.as_object().cloned().unwrap_or_default());
    v
}

/// Fills (dropdowns) and runs an asynchronous action to its end; returns the finished job.
async fn run(pa: &Connector, op_id: &str, given: Value) -> Value {
    let params = pa.fill(op_id, given).await;
    pa.call_async(op_id, params).await.json()
}

/// Fills and calls an action, expecting `status`; returns the body.
async fn act(pa: &Connector, op_id: &str, given: Value, status: u16) -> Value {
    let params = pa.fill(op_id, given).await;
    let r = pa.call(op_id, params).await;
    assert_eq!(r.status, status, "{op_id}: {}", r.text);
    r.json()
}

/// Notifications received so far per trigger, duplicates (same `eventId`) dropped.
fn notifications(rx: &Receiver, subs: &[Subscription]) -> BTreeMap<String, Vec<Value>> {
    let mut by_trigger: BTreeMap<String, Vec<Value>> = BTreeMap::new();
    for r in rx.received() {
        let sub = subs
            .iter()
            .find(|s| s.callback.ends_with(&r.path))
            .unwrap_or_else(|| panic!("a notification at an unknown callback {}", r.path));
        let list = by_trigger.entry(sub.op_id.clone()).or_default();
        let body = r.json();
        if !list.iter().any(|b| b["eventId"] == body["eventId"]) {
            list.push(body);
        }
    }
    by_trigger
}

/// Every request the receiver got is a JSON POST valid against the `x-ms-notification-content`
/// schema of the trigger it was subscribed through.
fn check_notifications(pa: &Connector, received: &[Received], subs: &[Subscription]) {
    for r in received {
        let sub = subs
            .iter()
            .find(|s| s.callback.ends_with(&r.path))
            .unwrap_or_else(|| panic!("a notification at an unknown callback {}", r.path));
        assert_eq!(r.method, "POST", "{}", sub.op_id);
        assert!(
            r.header("content-type")
                .is_some_and(|c| c.starts_with("application/json")),
            "{}: {:?}",
            sub.op_id,
            r.headers
        );
        let body = r.json();
        let errors = pa.validate(&pa.notification_schema(&sub.op_id), &body);
        assert!(
            errors.is_empty(),
            "{}: the notification does not match x-ms-notification-content:\n{}\n{body}",
            sub.op_id,
            errors.join("\n")
        );
    }
}

#[tokio::test]
async fn power_automate_uses_the_service_through_the_connector_definition() {
    let app = spawn_app().await;
    let pa = Connector::load(&app.address, KEY_A);
    let rx = Receiver::start().await;

    // ----- The maker prepares an instance with three data sources.
    act(
        &pa,
        "CreateInstance",
        json!({"body": {"name": "Contoso"}}),
        201,
    )
    .await;
    for (name, entity, key, content) in [
        ("CRM contacts", "Contacts", "Id", CONTACTS),
        ("Shop customers", "Shop", "CustomerNo", SHOP),
        ("Broken export", "Broken", "id", BROKEN),
    ] {
        act(
            &pa,
            "CreateDataSource",
            contoso(json!({"body": {"name": name, "entityName": entity, "format": "csv", "keyField": key, "content": content}})),
            201,
        )
        .await;
    }

    // ----- Flows on the triggers that need no segment or measure; every save re-subscribes.
    let mut subs: Vec<Subscription> = Vec::new();
    let subscribe = |op_id: &'static str, given: Value| {
        let pa = &pa;
        let callback = rx.url(&format!("/{op_id}"));
        async move {
            let params = pa.fill(op_id, given).await;
            let sub = pa.subscribe(op_id, params.clone(), &callback).await;
            let again = pa.subscribe(op_id, params, &callback).await;
            assert_eq!(again.location, sub.location, "{op_id}: re-subscribe");
            sub
        }
    };
    subs.push(
        subscribe(
            "OnDataSourceRefreshFailed",
            contoso(json!({"body": {"dataSourceId": pick("Broken export")}})),
        )
        .await,
    );
    for op_id in [
        "OnDataSourceRefreshSucceeded",
        "OnUnificationCompleted",
        "OnFullRefreshCompleted",
    ] {
        subs.push(subscribe(op_id, contoso(json!({}))).await);
    }

    // ----- Refresh the sources (one fails), configure and run unification.
    for (source, status) in [
        ("CRM contacts", "succeeded"),
        ("Shop customers", "succeeded"),
        ("Broken export", "failed"),
    ] {
        let job = run(
            &pa,
            "RefreshDataSource",
            contoso(json!({"dataSourceId": pick(source)})),
        )
        .await;
        assert_eq!(job["status"], status, "{source}: {job}");
    }
    let config = json!({
        "sources": [
            {"entityName": "Contacts", "fields": {"email": "Email", "firstName": "First", "city": "City"}, "priority": 1},
            {"entityName": "Shop", "fields": {"email": "Mail", "city": "Town"}, "priority": 2}
        ],
        "rules": [{"name": "same email", "conditions": [{"field": "email", "normalization": "email", "precision": "exact"}]}],
        "merge": {"policy": "sourcePriority"}
    });
    act(
        &pa,
        "SetUnificationConfig",
        contoso(json!({ "body": config })),
        200,
    )
    .await;
    let job = run(&pa, "RunUnification", contoso(json!({}))).await;
    assert_eq!(job["result"]["unifiedProfiles"], 6, "{job}");
    let mut unification_jobs = BTreeSet::from([job["jobId"].to_string()]);

    // ----- A segment and a measure, each watched by a threshold flow (threshold 2).
    act(
        &pa,
        "CreateSegment",
        contoso(json!({"body": {"name": "Berliners", "filter": "city eq 'Berlin'"}})),
        201,
    )
    .await;
    act(
        &pa,
        "CreateMeasure",
        contoso(json!({"body": {"name": "Berlin contacts", "entityName": "Contacts", "aggregate": "count", "filter": "City eq 'Berlin'"}})),
        201,
    )
    .await;
    subs.push(
        subscribe(
            "OnSegmentThresholdCrossed",
            contoso(json!({"body": {"segmentId": pick("Berliners"), "threshold": 2}})),
        )
        .await,
    );
    subs.push(
        subscribe(
            "OnMeasureThresholdCrossed",
            contoso(json!({"body": {"measureId": pick("Berlin contacts"), "threshold": 2}})),
        )
        .await,
    );
    let mut triggers = pa.triggers();
    triggers.sort();
    let mut subscribed: Vec<String> = subs.iter().map(|s| s.op_id.clone()).collect();
    subscribed.sort();
    assert_eq!(
        triggers, subscribed,
        "every trigger of the definition has a flow"
    );

    // 0 → 2 reaches the thresholds without crossing them.
    let seg = contoso(json!({"segmentId": pick("Berliners")}));
    let measure = contoso(json!({"measureId": pick("Berlin contacts")}));
    let job = run(&pa, "RefreshSegment", seg.clone()).await;
    assert_eq!(job["result"]["memberCount"], 2, "{job}");
    let job = run(&pa, "RefreshMeasure", measure.clone()).await;
    assert_eq!(job["result"]["value"], 2.0, "{job}");

    // A third Berliner, entered through CreateItem's dynamic schema, crosses both.
    let add_berliner = |id: &'static str, email: &'static str| {
        let pa = &pa;
        async move {
            let params = pa
                .fill(
                    "CreateItem",
                    contoso(json!({"entityName": pick("Contacts")})),
                )
                .await;
            let schema = pa.body_schema("CreateItem", &params).await.unwrap();
            let item =
                json!({"Id": id, "Email": email, "First": "Gus", "City": "Berlin", "Age": 40});
            let validator = jsonschema::validator_for(&schema).unwrap();
            assert!(validator.is_valid(&item), "{item} vs {schema}");
            let mut params = params;
            params["body"] = item;
            let r = pa.call("CreateItem", params).await;
            assert_eq!(r.status, 201, "{}", r.text);
            assert!(validator.is_valid(&r.json()), "{}", r.text);
        }
    };
    add_berliner("6", "gus@example.com").await;
    let job = run(&pa, "RunUnification", contoso(json!({}))).await;
    unification_jobs.insert(job["jobId"].to_string());
    let job = run(&pa, "RefreshSegment", seg.clone()).await;
    assert_eq!(job["result"]["memberCount"], 3, "{job}");
    let job = run(&pa, "RefreshMeasure", measure.clone()).await;
    assert_eq!(job["result"]["value"], 3.0, "{job}");

    // A full refresh re-reads the sources (back to two Berliners, no crossing) and fails on the
    // broken one.
    let job = run(&pa, "StartFullRefresh", contoso(json!({}))).await;
    assert_eq!(job["status"], "failed", "{job}");
    let full_refresh_job = job["jobId"].clone();
    unification_jobs.insert(full_refresh_job.to_string());

    // ----- Every trigger fired; every notification matches its schema.
    let expected = [
        ("OnDataSourceRefreshSucceeded", 4),
        ("OnDataSourceRefreshFailed", 2),
        ("OnUnificationCompleted", 3),
        ("OnFullRefreshCompleted", 1),
        ("OnSegmentThresholdCrossed", 1),
        ("OnMeasureThresholdCrossed", 1),
    ];
    for (op_id, n) in expected {
        rx.wait_for(Some(&format!("/{op_id}")), n, WAIT).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    check_notifications(&pa, &rx.received(), &subs);
    let got = notifications(&rx, &subs);
    for (op_id, n) in expected {
        assert_eq!(got[op_id].len(), n, "{op_id}: {:?}", got[op_id]);
    }
    let broken = pa
        .fill(
            "GetDataSource",
            contoso(json!({"dataSourceId": pick("Broken export")})),
        )
        .await["dataSourceId"]
        .clone();
    assert!(got["OnDataSourceRefreshFailed"]
        .iter()
        .all(|n| n["dataSourceId"] == broken && n["error"].is_string()));
    let crossed = &got["OnSegmentThresholdCrossed"][0];
    assert_eq!(
        (&crossed["previousCount"], &crossed["currentCount"]),
        (&json!(2), &json!(3))
    );
    let crossed = &got["OnMeasureThresholdCrossed"][0];
    assert_eq!(
        (&crossed["previousValue"], &crossed["currentValue"]),
        (&json!(2.0), &json!(3.0))
    );
    assert_eq!(got["OnFullRefreshCompleted"][0]["status"], "failed");
    assert_eq!(got["OnFullRefreshCompleted"][0]["jobId"], full_refresh_job);
    // Each unification names the job that ran it (the full refresh's included).
    let named: BTreeSet<String> = got["OnUnificationCompleted"]
        .iter()
        .map(|n| n["jobId"].to_string())
        .collect();
    assert_eq!(named, unification_jobs);

    // ----- Every dynamic extension answers, with values the test has chosen so far.
    let mut chosen = pa
        .fill("GetItems", contoso(json!({"entityName": pick("Contacts")})))
        .await
        .as_object()
        .cloned()
        .unwrap();
    for (name, given) in [
        (
            "dataSourceId",
            (
                "GetDataSource",
                json!({"dataSourceId": pick("CRM contacts")}),
            ),
        ),
        ("segmentId", ("GetSegment", seg.clone())),
        ("measureId", ("GetMeasure", measure.clone())),
    ] {
        let filled = pa.fill(given.0, contoso(given.1)).await;
        chosen.insert(name.into(), filled[name].clone());
    }
    let extensions = pa.dynamic_extensions();
    for (owner, ext) in &extensions {
        let (kind, ext) = ext.as_object().unwrap().iter().next().unwrap();
        for (_, spec) in ext["parameters"].as_object().into_iter().flatten() {
            if let Some(p) = spec.get("parameter").and_then(Value::as_str) {
                assert!(
                    pa.has_parameter(owner, p),
                    "{owner}: {kind} refers to `{p}`, which is not a parameter of {owner}"
                );
            }
        }
        if kind == DYNAMIC_VALUES {
            let values = pa.dynamic_values(ext, &chosen).await;
            assert!(!values.is_empty(), "{owner}: {ext} offers nothing");
        } else {
            assert_eq!(kind, DYNAMIC_SCHEMA);
            let schema = pa.dynamic_schema(ext, &chosen).await;
            assert_eq!(schema["type"], "object", "{owner}: {schema}");
            assert!(schema["properties"]["Email"].is_object(), "{schema}");
        }
    }

    // ----- Paging: every entity and segment, followed through its next links.
    let entities = act(
        &pa,
        "GetEntities",
        json!({"instanceId": chosen["instanceId"]}),
        200,
    )
    .await;
    let mut paged = BTreeSet::new();
    for entity in entities["value"].as_array().unwrap() {
        let params = pa
            .fill(
                "GetItems",
                contoso(json!({"entityName": pick(entity["name"].as_str().unwrap()), "$top": 2})),
            )
            .await;
        // Top Count caps the items of all pages together, as OData's `$top` does.
        let capped = pa.pages("GetItems", params.clone()).await;
        let count = entity["itemCount"].as_u64().unwrap() as usize;
        assert_eq!(capped.len(), count.min(2), "{entity}");
        let params = pa
            .fill(
                "GetItems",
                contoso(json!({"entityName": pick(entity["name"].as_str().unwrap())})),
            )
            .await;
        let items = pa.pages("GetItems", params.clone()).await;
        assert_eq!(items.len(), count, "{entity}");
        // The items are what the entity's dynamic schema says.
        let ext = &pa.resolve(&pa.op("GetItems").value["responses"]["200"]["schema"])["properties"]
            ["value"]["items"][DYNAMIC_SCHEMA];
        let schema = pa.dynamic_schema(ext, params.as_object().unwrap()).await;
        let validator = jsonschema::validator_for(&schema).unwrap();
        for item in &items {
            assert!(validator.is_valid(item), "{item} vs {schema}");
        }
        paged.insert("GetItems");
    }
    let segment = act(&pa, "GetSegment", seg.clone(), 200).await;
    let members = pa
        .pages(
            "GetSegmentMembers",
            pa.fill(
                "GetSegmentMembers",
                contoso(json!({"segmentId": pick("Berliners"), "$top": 1})),
            )
            .await,
        )
        .await;
    assert_eq!(json!(members.len()), segment["memberCount"]);
    paged.insert("GetSegmentMembers");
    assert_eq!(
        pa.pageable()
            .iter()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        paged,
        "every pageable operation is paged"
    );

    // ----- The flows are turned off: DELETE on each Location (twice: it is idempotent).
    // A control flow subscribed now proves that deliveries go on while the others stop.
    let control = pa
        .subscribe(
            "OnFullRefreshCompleted",
            pa.fill("OnFullRefreshCompleted", contoso(json!({}))).await,
            &rx.url("/control"),
        )
        .await;
    for sub in &subs {
        pa.unsubscribe(sub).await;
        pa.unsubscribe(sub).await;
    }
    let before = rx.received().len();
    add_berliner("7", "hal@example.com").await;
    run(&pa, "RunUnification", contoso(json!({}))).await;
    let job = run(&pa, "RefreshSegment", seg.clone()).await;
    assert_eq!(
        (
            &job["result"]["previousCount"],
            &job["result"]["memberCount"]
        ),
        (&json!(2), &json!(3))
    );
    let job = run(&pa, "RefreshMeasure", measure.clone()).await;
    assert_eq!(job["result"]["value"], 3.0, "{job}");
    run(&pa, "StartFullRefresh", contoso(json!({}))).await;
    rx.wait_for(Some("/control"), 1, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rx.received();
    let mut all = subs.clone();
    all.push(control);
    check_notifications(&pa, &after, &all);
    let late: Vec<&Received> = after[before..]
        .iter()
        .filter(|r| r.path != "/control")
        .collect();
    assert!(
        late.is_empty(),
        "deliveries after unsubscribe: {:?}",
        late.iter().map(|r| &r.path).collect::<Vec<_>>()
    );
}
