//! Webhook triggers end to end: subscribe/unsubscribe, matching, payloads, delivery outcomes,
//! signatures, SSRF refusals and crash safety, against a real receiver on 127.0.0.1.
//!
//! Events are injected with `Store::record_event` (the engine's own outbox call) so these tests do not
//! depend on the engine, except `engine_refreshes_fire_every_trigger_end_to_end` and
//! `kill_9_and_restart_lose_no_notification`, which drive the engine over HTTP.

use crate::common;

use std::time::{Duration, Instant};

use crate::common::process::{free_port, wait_job, Server};
use crate::common::{spawn_app, spawn_app_in, spawn_app_with, TestApp, KEY_B};
use crate::receiver::{Received, Receiver, Reply};
use insights_connector::store::Store;
use insights_connector::triggers::{notification_schema_json, TRIGGERS};
use insights_connector::triggers::{DomainEvent, EventKind, Trigger};
use insights_connector::webhooks::retry::RetryPolicy;
use reqwest::Method;
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(15);
const QUIET: Duration = Duration::from_millis(800);

// ----- helpers -----

fn trigger_path(trigger: Trigger, instance: &str) -> String {
    trigger.definition().path.replace("{instanceId}", instance)
}

fn schema_name(trigger: Trigger) -> String {
    trigger.definition().payload_name()
}

/// The body validates against the trigger's notification schema, with nothing undescribed.
fn assert_matches_schema(trigger: Trigger, body: &Value) {
    let mut schema = notification_schema_json(&schema_name(trigger)).unwrap();
    schema["additionalProperties"] = json!(false);
    let validator = jsonschema::validator_for(&schema).unwrap();
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{trigger:?}: {errors:?}\n{body}");
    assert_eq!(body["eventType"], trigger.event_type());
}

/// Records an event the way the engine does (outbox rows in the same transaction), then wakes
/// the dispatcher. Returns the event id.
async fn fire(app: &TestApp, instance: &str, kind: EventKind) -> String {
    let event = DomainEvent::new(instance, kind);
    let mut tx = app.engine.store().begin().await.unwrap();
    Store::record_event(&mut tx, &event).await.unwrap();
    app.engine.store().commit(tx).await.unwrap();
    app.engine.events_committed();
    event.id
}

fn data_source_event(id: &str, succeeded: bool) -> EventKind {
    let now = chrono::Utc::now();
    EventKind::DataSourceRefreshed {
        data_source_id: id.into(),
        data_source_name: format!("Source {id}"),
        succeeded,
        rows_ingested: if succeeded { 42 } else { 0 },
        error: (!succeeded).then(|| "line 3: unterminated quote".to_string()),
        started_at: now - chrono::Duration::seconds(2),
        completed_at: now,
    }
}

fn segment_event(id: &str, previous: Option<i64>, current: i64) -> EventKind {
    EventKind::SegmentRefreshed {
        segment_id: id.into(),
        segment_name: "Big spenders".into(),
        previous_count: previous,
        current_count: current,
    }
}

fn measure_event(id: &str, previous: Option<f64>, current: f64) -> EventKind {
    EventKind::MeasureRefreshed {
        measure_id: id.into(),
        measure_name: "Revenue".into(),
        previous_value: previous,
        current_value: Some(current),
    }
}

fn unification_event() -> EventKind {
    EventKind::UnificationCompleted {
        job_id: "job-u".into(),
        source_records: 30,
        unified_profiles: 20,
        matched_records: 14,
        completed_at: chrono::Utc::now(),
    }
}

fn full_refresh_event() -> EventKind {
    let now = chrono::Utc::now();
    EventKind::FullRefreshCompleted {
        job_id: "job-f".into(),
        status: "failed".into(),
        started_at: now - chrono::Duration::seconds(5),
        completed_at: now,
        stages: serde_json::from_value(json!([
            {"stage": "dataSource", "name": "Orders", "id": "ds-1", "status": "succeeded", "detail": {"rowsIngested": 3}},
            {"stage": "dataSource", "name": "Shop", "id": "ds-2", "status": "failed", "error": "file missing"},
            {"stage": "unification", "name": "unification", "status": "succeeded",
             "detail": {"sourceRecords": 3, "unifiedProfiles": 2, "matchedRecords": 2}}
        ]))
        .unwrap(),
    }
}

/// Ids of things triggers can reference, inserted directly (no engine needed).
struct Seeds {
    ds1: String,
    ds2: String,
    segment: String,
    segment2: String,
    measure: String,
}

async fn seed(app: &TestApp, instance: &str) -> Seeds {
    use insights_connector::store::datasources::DataSourceRecord;
    use insights_connector::store::measures::MeasureRecord;
    use insights_connector::store::segments::SegmentRecord;
    let store = app.engine.store();
    let now = chrono::Utc::now();
    let id = || uuid::Uuid::new_v4().to_string();
    let s = Seeds {
        ds1: id(),
        ds2: id(),
        segment: id(),
        segment2: id(),
        measure: id(),
    };
    // One entity per data source (a rule of the store).
    for (ds, entity) in [(&s.ds1, "Orders"), (&s.ds2, "MoreOrders")] {
        store
            .insert_data_source(&DataSourceRecord {
                id: ds.clone(),
                instance_id: instance.to_string(),
                name: format!("Source {ds}"),
                entity_name: entity.into(),
                format: "csv".into(),
                key_field: "id".into(),
                content: Some("id\n1\n".into()),
                path: None,
                created_at: now,
                last_status: None,
                last_rows: None,
                last_error: None,
                last_started_at: None,
                last_completed_at: None,
            })
            .await
            .unwrap();
    }
    for seg in [&s.segment, &s.segment2] {
        store
            .insert_segment(&SegmentRecord {
                id: seg.clone(),
                instance_id: instance.to_string(),
                name: "Big spenders".into(),
                filter: "true".into(),
                member_count: None,
                last_refreshed_at: None,
                created_at: now,
            })
            .await
            .unwrap();
    }
    store
        .insert_measure(&MeasureRecord {
            id: s.measure.clone(),
            instance_id: instance.to_string(),
            name: "Revenue".into(),
            entity_name: "Orders".into(),
            aggregate: "count".into(),
            field: None,
            filter: None,
            value: None,
            last_refreshed_at: None,
            created_at: now,
        })
        .await
        .unwrap();
    s
}

struct Sub {
    id: String,
    location: String,
    body: Value,
}

async fn subscribe(app: &TestApp, trigger: Trigger, instance: &str, body: Value) -> Sub {
    let r = app.post(&trigger_path(trigger, instance), body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = r.json();
    Sub {
        id: body["subscriptionId"].as_str().unwrap().to_string(),
        location: r.header("location").unwrap().to_string(),
        body,
    }
}

/// Polls the subscription until `pred` holds for it.
async fn wait_subscription(app: &TestApp, sub: &Sub, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = app.get(&sub.location).await;
        assert_eq!(r.status, 200, "{}", r.text);
        let v = r.json();
        if pred(&v) {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "subscription never satisfied the condition: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls the subscription's deliveries until `pred` holds for the list.
async fn wait_deliveries(app: &TestApp, sub: &Sub, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = app
            .get(&format!("{}/deliveries?$top=500", sub.location))
            .await;
        assert_eq!(r.status, 200, "{}", r.text);
        let list = r.json()["value"].as_array().unwrap().clone();
        if pred(&list) {
            return list;
        }
        assert!(
            Instant::now() < deadline,
            "deliveries never satisfied the condition: {list:#?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn event_ids(received: &[Received]) -> Vec<String> {
    let mut ids: Vec<String> = received.iter().map(Received::event_id).collect();
    ids.sort();
    ids
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

// ----- subscribe / unsubscribe -----

#[tokio::test]
async fn every_trigger_subscribes_with_201_and_location_and_resubscribing_is_idempotent() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let s = seed(&app, &instance).await;
    let rx = Receiver::start().await;
    let cases: Vec<(Trigger, Value, Value, Value)> = vec![
        // (trigger, extra inputs, expected stored inputs, other inputs giving another subscription)
        (
            Trigger::OnDataSourceRefreshFailed,
            json!({"dataSourceId": s.ds1}),
            json!({"dataSourceId": s.ds1}),
            json!({}),
        ),
        (
            Trigger::OnDataSourceRefreshSucceeded,
            json!({}),
            json!({}),
            json!({"dataSourceId": s.ds2}),
        ),
        (
            Trigger::OnSegmentThresholdCrossed,
            json!({"segmentId": s.segment, "threshold": 10}),
            json!({"segmentId": s.segment, "threshold": 10}),
            json!({"segmentId": s.segment, "threshold": 11}),
        ),
        (
            Trigger::OnMeasureThresholdCrossed,
            json!({"measureId": s.measure, "threshold": 99.5}),
            json!({"measureId": s.measure, "threshold": 99.5}),
            json!({"measureId": s.measure, "threshold": 100}),
        ),
        (
            Trigger::OnFullRefreshCompleted,
            json!({}),
            json!({}),
            json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ),
        (
            Trigger::OnUnificationCompleted,
            json!({}),
            json!({}),
            json!({"secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}),
        ),
    ];
    let mut created = Vec::new();
    for (trigger, inputs, stored, other) in cases {
        let url = rx.url(&format!("/{}", trigger.as_str()));
        let mut body = json!({"notificationUrl": url});
        body.as_object_mut()
            .unwrap()
            .extend(inputs.as_object().unwrap().clone());
        let first = subscribe(&app, trigger, &instance, body.clone()).await;
        let b = &first.body;
        assert_eq!(b["trigger"], trigger.as_str());
        assert_eq!(b["instanceId"], instance);
        assert_eq!(b["inputs"], stored, "{trigger:?}");
        assert_eq!(b["status"], "active");
        assert_eq!(b["signed"], false);
        assert_eq!(b["consecutiveFailures"], 0);
        assert!(b["createdAt"].is_string());
        assert!(
            b.get("notificationUrl").is_none(),
            "the callback URL is not echoed"
        );
        assert_eq!(
            first.location,
            format!(
                "{}/instances/{instance}/subscriptions/{}",
                app.address, first.id
            )
        );

        // Power Automate retries subscribes: the same subscription comes back.
        let again = subscribe(&app, trigger, &instance, body.clone()).await;
        assert_eq!(again.id, first.id);
        assert_eq!(again.location, first.location);
        assert_eq!(again.body["createdAt"], b["createdAt"]);

        // The Location is the subscription.
        let got = app.get(&first.location).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.json(), first.body);

        // Other inputs (or a secret on an input-less trigger) give another subscription.
        let mut other_body = json!({"notificationUrl": url});
        other_body
            .as_object_mut()
            .unwrap()
            .extend(other.as_object().unwrap().clone());
        let other_sub = subscribe(&app, trigger, &instance, other_body).await;
        if trigger == Trigger::OnFullRefreshCompleted || trigger == Trigger::OnUnificationCompleted
        {
            // Same URL, same inputs, new secret: still the same subscription, now signed.
            assert_eq!(other_sub.id, first.id);
            assert_eq!(other_sub.body["signed"], true);
        } else {
            assert_ne!(other_sub.id, first.id);
            created.push(other_sub.id);
        }
        created.push(first.id.clone());

        // Unsubscribe at the Location; idempotent.
        if trigger == Trigger::OnSegmentThresholdCrossed {
            let del = app.delete(&first.location).await;
            assert_eq!(del.status, 204, "{}", del.text);
            let del = app.delete(&first.location).await;
            assert_eq!(del.status, 204, "{}", del.text);
            app.get(&first.location).await.assert_problem(404);
            created.retain(|id| id != &first.id);
        }
    }
    let list = app
        .get(&format!("/instances/{instance}/subscriptions"))
        .await;
    assert_eq!(list.status, 200);
    let ids: Vec<String> = list.json()["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["subscriptionId"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sorted(ids), sorted(created));
    // Deleting an unknown id (or in an unknown instance) is still 204.
    assert_eq!(
        app.delete(&format!("/instances/{instance}/subscriptions/nope"))
            .await
            .status,
        204
    );
    assert_eq!(
        app.delete("/instances/nope/subscriptions/nope")
            .await
            .status,
        204
    );
}

#[tokio::test]
async fn subscribe_refuses_bad_input_and_unknown_or_foreign_ids() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let s = seed(&app, &instance).await;
    let url = "http://127.0.0.1:9/hook";
    let seg = trigger_path(Trigger::OnSegmentThresholdCrossed, &instance);
    let mea = trigger_path(Trigger::OnMeasureThresholdCrossed, &instance);
    let ds = trigger_path(Trigger::OnDataSourceRefreshFailed, &instance);
    let plain = trigger_path(Trigger::OnUnificationCompleted, &instance);

    let bad: Vec<(&str, Value)> = vec![
        (&plain, json!({})),
        (&plain, json!({"notificationUrl": ""})),
        (&plain, json!({"notificationUrl": "not a url"})),
        (&plain, json!({"notificationUrl": "ftp://127.0.0.1/x"})),
        (
            &plain,
            json!({"notificationUrl": format!("http://127.0.0.1/{}", "a".repeat(2100))}),
        ),
        (&plain, json!({"notificationUrl": url, "extra": 1})),
        (&plain, json!({"notificationUrl": url, "secret": "nope"})),
        (
            &plain,
            json!({"notificationUrl": url, "secret": "whsec_c2hvcnQ="}),
        ),
        (&plain, json!({"notificationUrl": 5})),
        (
            &seg,
            json!({"notificationUrl": url, "segmentId": s.segment}),
        ),
        (
            &seg,
            json!({"notificationUrl": url, "segmentId": s.segment, "threshold": -1}),
        ),
        (
            &seg,
            json!({"notificationUrl": url, "segmentId": s.segment, "threshold": 1.5}),
        ),
        (
            &seg,
            json!({"notificationUrl": url, "segmentId": s.segment, "threshold": "10"}),
        ),
        (
            &seg,
            json!({"notificationUrl": url, "segmentId": "", "threshold": 1}),
        ),
        (
            &mea,
            json!({"notificationUrl": url, "measureId": s.measure}),
        ),
        (
            &mea,
            json!({"notificationUrl": url, "measureId": s.measure, "threshold": "x"}),
        ),
        (&ds, json!({"notificationUrl": url, "dataSourceId": 7})),
    ];
    for (path, body) in bad {
        let r = app.post(path, body.clone()).await;
        let _ = body;
        r.assert_problem(400);
    }

    // Unknown ids: 404.
    let unknown: Vec<(&str, Value)> = vec![
        (
            &seg,
            json!({"notificationUrl": url, "segmentId": "nope", "threshold": 1}),
        ),
        (
            &mea,
            json!({"notificationUrl": url, "measureId": "nope", "threshold": 1}),
        ),
        (&ds, json!({"notificationUrl": url, "dataSourceId": "nope"})),
        (
            &ds,
            json!({"notificationUrl": url, "dataSourceId": s.segment}),
        ),
    ];
    for (path, body) in unknown {
        app.post(path, body).await.assert_problem(404);
    }
    let missing_instance = trigger_path(Trigger::OnUnificationCompleted, "nope");
    app.post(&missing_instance, json!({"notificationUrl": url}))
        .await
        .assert_problem(404);

    // Another tenant's instance, segment and subscription are unknown.
    let b_instance = app
        .send(
            Method::POST,
            "/instances",
            Some(KEY_B),
            Some(&json!({"name": "B"})),
        )
        .await
        .json()["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let b_seeds = seed(&app, &b_instance).await;
    app.post(
        &seg,
        json!({"notificationUrl": url, "segmentId": b_seeds.segment, "threshold": 1}),
    )
    .await
    .assert_problem(404);
    app.post(
        &mea,
        json!({"notificationUrl": url, "measureId": b_seeds.measure, "threshold": 1}),
    )
    .await
    .assert_problem(404);
    let a_sub = subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": url}),
    )
    .await;
    let as_b = |m: Method, p: String| {
        let app = &app;
        async move { app.send(m, &p, Some(KEY_B), None).await }
    };
    as_b(Method::GET, a_sub.location.clone())
        .await
        .assert_problem(404);
    as_b(Method::GET, format!("/instances/{instance}/subscriptions"))
        .await
        .assert_problem(404);
    as_b(Method::GET, format!("{}/deliveries", a_sub.location))
        .await
        .assert_problem(404);
    app.send(
        Method::POST,
        &plain,
        Some(KEY_B),
        Some(&json!({"notificationUrl": url})),
    )
    .await
    .assert_problem(404);
    assert_eq!(
        as_b(Method::DELETE, a_sub.location.clone()).await.status,
        204
    );
    assert_eq!(
        app.get(&a_sub.location).await.status,
        200,
        "B's DELETE must not remove A's subscription"
    );
    let b_list = app
        .send(
            Method::GET,
            &format!("/instances/{b_instance}/subscriptions"),
            Some(KEY_B),
            None,
        )
        .await;
    assert_eq!(b_list.json(), json!({"value": []}));
    // Unknown delivery.
    app.post(
        &format!("{}/deliveries/nope/redeliver", a_sub.location),
        json!({}),
    )
    .await
    .assert_problem(404);
    app.get(&format!("{}/deliveries?$top=0", a_sub.location))
        .await
        .assert_problem(400);
    app.get(&format!("{}/deliveries?status=bogus", a_sub.location))
        .await
        .assert_problem(400);
}

// ----- matching and payloads -----

#[tokio::test]
async fn data_source_triggers_fire_with_the_documented_payload_and_honour_the_filter() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let s = seed(&app, &instance).await;
    let rx = Receiver::start().await;
    let failed = Trigger::OnDataSourceRefreshFailed;
    let succeeded = Trigger::OnDataSourceRefreshSucceeded;
    subscribe(
        &app,
        failed,
        &instance,
        json!({"notificationUrl": rx.url("/failed-any")}),
    )
    .await;
    subscribe(
        &app,
        failed,
        &instance,
        json!({"notificationUrl": rx.url("/failed-ds1"), "dataSourceId": s.ds1}),
    )
    .await;
    subscribe(
        &app,
        succeeded,
        &instance,
        json!({"notificationUrl": rx.url("/ok-ds2"), "dataSourceId": s.ds2}),
    )
    .await;

    let before = chrono::Utc::now().timestamp();
    let e1 = fire(&app, &instance, data_source_event(&s.ds1, false)).await;
    let e2 = fire(&app, &instance, data_source_event(&s.ds2, false)).await;
    let e3 = fire(&app, &instance, data_source_event(&s.ds2, true)).await;
    let _e4 = fire(&app, &instance, data_source_event(&s.ds1, true)).await; // nobody listens

    let any = rx.wait_for(Some("/failed-any"), 2, WAIT).await;
    assert_eq!(event_ids(&any), sorted(vec![e1.clone(), e2.clone()]));
    let ds1 = rx.wait_for(Some("/failed-ds1"), 1, WAIT).await;
    assert_eq!(event_ids(&ds1), vec![e1.clone()]);
    let ok = rx.wait_for(Some("/ok-ds2"), 1, WAIT).await;
    assert_eq!(event_ids(&ok), vec![e3.clone()]);
    tokio::time::sleep(QUIET).await;
    assert_eq!(
        rx.received().len(),
        4,
        "only the matching notifications are sent"
    );

    let f = ds1[0].json();
    assert_matches_schema(failed, &f);
    assert_eq!(f["eventType"], "dataSourceRefreshFailed");
    assert_eq!(f["instanceId"], instance);
    assert_eq!(f["dataSourceId"], s.ds1);
    assert_eq!(f["dataSourceName"], format!("Source {}", s.ds1));
    assert_eq!(f["status"], "failed");
    assert_eq!(f["rowsIngested"], 0);
    assert_eq!(f["error"], "line 3: unterminated quote");
    for field in ["occurredAt", "startedAt", "completedAt"] {
        chrono::DateTime::parse_from_rfc3339(f[field].as_str().unwrap()).unwrap();
    }
    let o = ok[0].json();
    assert_matches_schema(succeeded, &o);
    assert_eq!(o["status"], "succeeded");
    assert_eq!(o["rowsIngested"], 42);
    assert!(o.get("error").is_none());

    // Headers: JSON, Standard Webhooks id = eventId, a current timestamp, no signature.
    let r = &ds1[0];
    assert_eq!(r.method, "POST");
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.header("webhook-id"), Some(e1.as_str()));
    let ts: i64 = r.header("webhook-timestamp").unwrap().parse().unwrap();
    assert!((before - 5..=chrono::Utc::now().timestamp() + 5).contains(&ts));
    assert_eq!(r.header("webhook-signature"), None);
    assert_eq!(
        r.header("user-agent"),
        Some("insights-connector-webhooks/1")
    );
}

#[tokio::test]
async fn segment_threshold_fires_only_when_the_count_crosses_above() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let s = seed(&app, &instance).await;
    let rx = Receiver::start().await;
    let t = Trigger::OnSegmentThresholdCrossed;
    subscribe(
        &app,
        t,
        &instance,
        json!({"notificationUrl": rx.url("/t10"), "segmentId": s.segment, "threshold": 10}),
    )
    .await;
    subscribe(
        &app,
        t,
        &instance,
        json!({"notificationUrl": rx.url("/t0"), "segmentId": s.segment, "threshold": 0}),
    )
    .await;
    subscribe(
        &app,
        t,
        &instance,
        json!({"notificationUrl": rx.url("/other"), "segmentId": s.segment2, "threshold": 0}),
    )
    .await;

    // (previous, current): first refresh counts from 0; equal is not above; staying above,
    // going down and the other segment fire nothing.
    let steps = [
        (None, 5),
        (Some(5), 10),
        (Some(10), 11),
        (Some(11), 20),
        (Some(20), 3),
        (Some(3), 15),
    ];
    let mut ids = Vec::new();
    for (prev, cur) in steps {
        ids.push(fire(&app, &instance, segment_event(&s.segment, prev, cur)).await);
    }
    let t10 = rx.wait_for(Some("/t10"), 2, WAIT).await;
    let t0 = rx.wait_for(Some("/t0"), 1, WAIT).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(rx.received_at("/t10").len(), 2);
    assert_eq!(rx.received_at("/t0").len(), 1);
    assert_eq!(rx.received_at("/other").len(), 0);
    assert_eq!(
        event_ids(&t10),
        sorted(vec![ids[2].clone(), ids[5].clone()])
    );
    assert_eq!(event_ids(&t0), vec![ids[0].clone()]);

    let mut bodies: Vec<Value> = t10.iter().map(Received::json).collect();
    bodies.sort_by_key(|b| b["currentCount"].as_i64());
    for b in &bodies {
        assert_matches_schema(t, b);
        assert_eq!(b["segmentId"], s.segment);
        assert_eq!(b["segmentName"], "Big spenders");
        assert_eq!(b["threshold"], 10);
        assert_eq!(b["instanceId"], instance);
    }
    assert_eq!(
        (
            bodies[0]["previousCount"].clone(),
            bodies[0]["currentCount"].clone()
        ),
        (json!(10), json!(11))
    );
    assert_eq!(
        (
            bodies[1]["previousCount"].clone(),
            bodies[1]["currentCount"].clone()
        ),
        (json!(3), json!(15))
    );
    let first = t0[0].json();
    assert_eq!(
        (
            first["previousCount"].clone(),
            first["currentCount"].clone(),
            first["threshold"].clone()
        ),
        (json!(0), json!(5), json!(0))
    );
}

#[tokio::test]
async fn measure_threshold_fires_only_when_the_value_crosses_above() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let s = seed(&app, &instance).await;
    let rx = Receiver::start().await;
    let t = Trigger::OnMeasureThresholdCrossed;
    subscribe(
        &app,
        t,
        &instance,
        json!({"notificationUrl": rx.url("/m"), "measureId": s.measure, "threshold": 99.5}),
    )
    .await;
    let steps = [
        (None, 50.0),
        (Some(50.0), 99.5),
        (Some(99.5), 100.0),
        (Some(100.0), 150.0),
        (Some(150.0), 10.0),
        (Some(10.0), 200.25),
    ];
    let mut ids = Vec::new();
    for (prev, cur) in steps {
        ids.push(fire(&app, &instance, measure_event(&s.measure, prev, cur)).await);
    }
    let got = rx.wait_for(Some("/m"), 2, WAIT).await;
    rx.assert_quiet("/m", 2, QUIET).await;
    assert_eq!(
        event_ids(&got),
        sorted(vec![ids[2].clone(), ids[5].clone()])
    );
    let mut bodies: Vec<Value> = got.iter().map(Received::json).collect();
    bodies.sort_by(|a, b| {
        a["currentValue"]
            .as_f64()
            .partial_cmp(&b["currentValue"].as_f64())
            .unwrap()
    });
    for b in &bodies {
        assert_matches_schema(t, b);
        assert_eq!(b["measureId"], s.measure);
        assert_eq!(b["measureName"], "Revenue");
        assert_eq!(b["threshold"], 99.5);
    }
    assert_eq!(
        (
            bodies[0]["previousValue"].clone(),
            bodies[0]["currentValue"].clone()
        ),
        (json!(99.5), json!(100.0))
    );
    assert_eq!(
        (
            bodies[1]["previousValue"].clone(),
            bodies[1]["currentValue"].clone()
        ),
        (json!(10.0), json!(200.25))
    );
}

#[tokio::test]
async fn full_refresh_and_unification_notifications_carry_the_documented_fields() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let other = app.create_instance("Other").await;
    let rx = Receiver::start().await;
    subscribe(
        &app,
        Trigger::OnFullRefreshCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/full")}),
    )
    .await;
    subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/unify")}),
    )
    .await;
    let fired_at = Instant::now();
    let f = fire(&app, &instance, full_refresh_event()).await;
    let u = fire(&app, &instance, unification_event()).await;
    // Events of another instance do not reach these subscriptions.
    fire(&app, &other, unification_event()).await;
    fire(&app, &other, full_refresh_event()).await;

    let full = rx.wait_for(Some("/full"), 1, WAIT).await[0].clone();
    eprintln!("commit to callback: {:?}", full.at - fired_at);
    let full = full.json();
    let unify = rx.wait_for(Some("/unify"), 1, WAIT).await[0].json();
    tokio::time::sleep(QUIET).await;
    assert_eq!(rx.received().len(), 2);

    assert_matches_schema(Trigger::OnFullRefreshCompleted, &full);
    assert_eq!(full["eventId"], f);
    assert_eq!(full["jobId"], "job-f");
    assert_eq!(full["status"], "failed");
    assert_eq!(full["stages"].as_array().unwrap().len(), 3);
    assert_eq!(full["stages"][1]["error"], "file missing");
    assert_matches_schema(Trigger::OnUnificationCompleted, &unify);
    assert_eq!(unify["eventId"], u);
    assert_eq!(
        (
            unify["sourceRecords"].clone(),
            unify["unifiedProfiles"].clone(),
            unify["matchedRecords"].clone()
        ),
        (json!(30), json!(20), json!(14))
    );
}

#[tokio::test]
async fn delete_at_location_stops_deliveries_including_queued_ones() {
    if !common::sqlite_only("delete_at_location_stops_deliveries_including_queued_ones") {
        return;
    }
    let app =
        spawn_app_with(|s| s.retry = RetryPolicy::fast_for_tests(1000, Duration::from_millis(100)))
            .await;
    let instance = app.create_instance("Hooks").await;
    let rx = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(Reply::status(503));
    let sub = subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/h")}),
    )
    .await;
    let retrying = subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": failing.url("/h")}),
    )
    .await;

    fire(&app, &instance, unification_event()).await;
    rx.wait_for(Some("/h"), 1, WAIT).await;
    failing.wait_for(Some("/h"), 3, WAIT).await; // being retried

    assert_eq!(app.delete(&sub.location).await.status, 204);
    assert_eq!(app.delete(&retrying.location).await.status, 204);
    fire(&app, &instance, unification_event()).await;
    rx.assert_quiet("/h", 1, QUIET).await;
    // At most an attempt that was already in flight at the DELETE lands afterwards.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let settled = failing.received().len();
    failing.assert_quiet("/h", settled, QUIET).await;
    let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM deliveries")
        .fetch_one(app.engine.store().pool())
        .await
        .unwrap();
    assert_eq!(left, 0, "the deleted subscriptions' deliveries are gone");
}

// ----- delivery outcomes -----

#[tokio::test]
async fn a_503_is_retried_honouring_retry_after_then_delivered() {
    let app = spawn_app_with(|s| {
        s.retry = RetryPolicy {
            max_attempts: 5,
            schedule: vec![Duration::ZERO, Duration::from_millis(100)],
            jitter: 0.0,
            retry_after_cap: Duration::from_millis(1500),
        }
    })
    .await;
    let instance = app.create_instance("Hooks").await;
    let rx = Receiver::start().await;
    rx.plan([
        Reply::status(503)
            .with_header("Retry-After", "1")
            .with_body("busy"),
        Reply::status(503).with_header("Retry-After", "3600"),
        Reply::status(202),
    ]);
    let sub = subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/h")}),
    )
    .await;
    let id = fire(&app, &instance, unification_event()).await;
    let got = rx.wait_for(Some("/h"), 3, WAIT).await;

    // The same event (and webhook-id) every time.
    for r in &got {
        assert_eq!(r.event_id(), id);
        assert_eq!(r.header("webhook-id"), Some(id.as_str()));
    }
    // Retry-After: 1 is honoured (the schedule alone would retry after 100 ms) ...
    let gap1 = got[1].at - got[0].at;
    assert!(
        gap1 >= Duration::from_millis(950) && gap1 < Duration::from_millis(2500),
        "{gap1:?}"
    );
    // ... and Retry-After: 3600 is clamped to the 1.5 s cap.
    let gap2 = got[2].at - got[1].at;
    assert!(
        gap2 >= Duration::from_millis(1450) && gap2 < Duration::from_millis(3500),
        "{gap2:?}"
    );

    let list = wait_deliveries(&app, &sub, |l| {
        l.len() == 1 && l[0]["status"] == "delivered"
    })
    .await;
    let d = &list[0];
    assert_eq!(d["eventId"], id);
    assert_eq!(d["attempts"], 3);
    assert!(d["nextAttemptAt"].is_null());
    let codes: Vec<i64> = d["recentAttempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["statusCode"].as_i64().unwrap())
        .collect();
    assert_eq!(codes, [202, 503, 503]);
    assert_eq!(d["recentAttempts"][2]["responseExcerpt"], "busy");
    assert!(d["recentAttempts"][0]["latencyMs"].as_i64().unwrap() >= 0);

    let s = wait_subscription(&app, &sub, |s| {
        s["consecutiveFailures"] == 0 && s["lastDeliveryAt"].is_string()
    })
    .await;
    assert_eq!(s["status"], "active");
    assert!(s["lastError"].is_null());

    let metrics = app.send(Method::GET, "/metrics", None, None).await.text;
    assert!(
        metrics.contains(r#"webhook_delivery_attempts_total{outcome="retry"} 2"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"webhook_delivery_attempts_total{outcome="delivered"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn exhausted_retries_are_dead_lettered_visible_and_redeliverable() {
    let app =
        spawn_app_with(|s| s.retry = RetryPolicy::fast_for_tests(3, Duration::from_millis(100)))
            .await;
    let instance = app.create_instance("Hooks").await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(500).with_body("boom"));
    let sub = subscribe(
        &app,
        Trigger::OnFullRefreshCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/h")}),
    )
    .await;
    let id = fire(&app, &instance, full_refresh_event()).await;

    rx.wait_for(Some("/h"), 3, WAIT).await;
    let list = wait_deliveries(&app, &sub, |l| l.len() == 1 && l[0]["status"] == "dead").await;
    rx.assert_quiet("/h", 3, QUIET).await; // no fourth attempt
    let d = &list[0];
    assert_eq!(d["attempts"], 3);
    assert_eq!(d["lastError"], "callback answered 500");
    assert_eq!(d["recentAttempts"].as_array().unwrap().len(), 3);
    assert_eq!(d["recentAttempts"][0]["responseExcerpt"], "boom");
    let s = app.get(&sub.location).await.json();
    assert_eq!(s["consecutiveFailures"], 3);
    assert_eq!(s["lastError"], "callback answered 500");
    assert_eq!(
        s["status"], "active",
        "a dead letter does not kill the subscription"
    );
    let dead = app
        .get(&format!("{}/deliveries?status=dead", sub.location))
        .await
        .json();
    assert_eq!(dead["value"].as_array().unwrap().len(), 1);
    let none = app
        .get(&format!(
            "{}/deliveries?status=delivered&$top=5",
            sub.location
        ))
        .await
        .json();
    assert_eq!(none, json!({"value": []}));

    // RedeliverEvent queues it again; the receiver is healthy now.
    rx.set_default(Reply::status(200));
    let delivery_id = d["deliveryId"].as_str().unwrap();
    let r = app
        .post(
            &format!("{}/deliveries/{delivery_id}/redeliver", sub.location),
            json!({}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "pending");
    assert_eq!(r.json()["attempts"], 0);
    let got = rx.wait_for(Some("/h"), 4, WAIT).await;
    assert_eq!(
        got[3].event_id(),
        id,
        "the same eventId as the original attempts"
    );
    wait_deliveries(&app, &sub, |l| {
        l[0]["status"] == "delivered" && l[0]["attempts"] == 1
    })
    .await;
    wait_subscription(&app, &sub, |s| s["consecutiveFailures"] == 0).await;
}

#[tokio::test]
async fn a_404_or_410_marks_the_subscription_dead_and_stops_deliveries() {
    let app =
        spawn_app_with(|s| s.retry = RetryPolicy::fast_for_tests(5, Duration::from_millis(100)))
            .await;
    let instance = app.create_instance("Hooks").await;
    for code in [410u16, 404] {
        let rx = Receiver::start().await;
        rx.plan([Reply::status(code)]);
        let body = json!({"notificationUrl": rx.url("/h")});
        let sub = subscribe(
            &app,
            Trigger::OnUnificationCompleted,
            &instance,
            body.clone(),
        )
        .await;
        fire(&app, &instance, unification_event()).await;
        rx.wait_for(Some("/h"), 1, WAIT).await;
        let s = wait_subscription(&app, &sub, |s| s["status"] == "dead").await;
        assert!(
            s["lastError"].as_str().unwrap().contains(&code.to_string()),
            "{s}"
        );
        let list =
            wait_deliveries(&app, &sub, |l| l.len() == 1 && l[0]["status"] == "failed").await;
        assert_eq!(list[0]["recentAttempts"][0]["statusCode"], code);

        // Nothing more is queued or sent to it.
        fire(&app, &instance, unification_event()).await;
        rx.assert_quiet("/h", 1, QUIET).await;
        assert_eq!(
            app.get(&format!("{}/deliveries", sub.location))
                .await
                .json()["value"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
        let delivery_id = list[0]["deliveryId"].as_str().unwrap();
        app.post(
            &format!("{}/deliveries/{delivery_id}/redeliver", sub.location),
            json!({}),
        )
        .await
        .assert_problem(409);

        // The platform subscribing again (flow re-enabled) revives the same subscription.
        let again = subscribe(&app, Trigger::OnUnificationCompleted, &instance, body).await;
        assert_eq!(again.id, sub.id);
        assert_eq!(again.body["status"], "active");
        assert_eq!(again.body["consecutiveFailures"], 0);
        let e = fire(&app, &instance, unification_event()).await;
        let got = rx.wait_for(Some("/h"), 2, WAIT).await;
        assert_eq!(got[1].event_id(), e);
        assert_eq!(app.delete(&sub.location).await.status, 204);
    }
}

#[tokio::test]
async fn another_4xx_fails_only_that_delivery() {
    let app =
        spawn_app_with(|s| s.retry = RetryPolicy::fast_for_tests(5, Duration::from_millis(100)))
            .await;
    let instance = app.create_instance("Hooks").await;
    let rx = Receiver::start().await;
    rx.plan([Reply::status(400).with_body("schema mismatch")]);
    let sub = subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/h")}),
    )
    .await;
    let first = fire(&app, &instance, unification_event()).await;
    rx.wait_for(Some("/h"), 1, WAIT).await;
    let list = wait_deliveries(&app, &sub, |l| l.len() == 1 && l[0]["status"] == "failed").await;
    assert_eq!(list[0]["eventId"], first);
    assert_eq!(list[0]["attempts"], 1);
    rx.assert_quiet("/h", 1, QUIET).await; // not retried
    let second = fire(&app, &instance, unification_event()).await;
    let got = rx.wait_for(Some("/h"), 2, WAIT).await;
    assert_eq!(got[1].event_id(), second);
    let s = wait_subscription(&app, &sub, |s| s["consecutiveFailures"] == 0).await;
    assert_eq!(s["status"], "active");
}

/// A fan-out records its attempts in batches (group commit): every one of them lands, with
/// its own outcome, and nothing is sent twice.
#[tokio::test]
async fn a_fan_out_records_every_attempt_with_its_own_outcome_and_sends_each_once() {
    if !common::sqlite_only(
        "a_fan_out_records_every_attempt_with_its_own_outcome_and_sends_each_once",
    ) {
        return;
    }
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let ok = Receiver::start().await;
    let gone = Receiver::start().await;
    gone.set_default(Reply::status(410));
    for i in 0..200 {
        let url = if i % 4 == 3 {
            gone.url(&format!("/g{i}"))
        } else {
            ok.url(&format!("/h{i}"))
        };
        subscribe(
            &app,
            Trigger::OnUnificationCompleted,
            &instance,
            json!({"notificationUrl": url}),
        )
        .await;
    }
    fire(&app, &instance, unification_event()).await;
    ok.wait_for(None, 150, WAIT).await;
    gone.wait_for(None, 50, WAIT).await;
    let pool = app.engine.store().pool();
    let deadline = Instant::now() + WAIT;
    let counts = loop {
        let counts: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT d.status, count(*), sum(d.attempts = 1 AND
                    (SELECT count(*) FROM delivery_attempts a WHERE a.delivery_id = d.id) = 1)
             FROM deliveries d GROUP BY d.status ORDER BY d.status",
        )
        .fetch_all(pool)
        .await
        .unwrap();
        if counts.iter().all(|c| c.0 != "pending") || Instant::now() > deadline {
            break counts;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(
        counts,
        vec![("delivered".into(), 150, 150), ("failed".into(), 50, 50)]
    );
    let dead: i64 = sqlx::query_scalar("SELECT count(*) FROM subscriptions WHERE status = 'dead'")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(
        dead, 50,
        "each 410 killed its own subscription, and only it"
    );
    let mut paths: Vec<String> = ok.received().into_iter().map(|r| r.path).collect();
    paths.sort();
    paths.dedup();
    assert_eq!(paths.len(), 150);
    ok.assert_quiet("/h0", 1, QUIET).await;
    assert_eq!(ok.received().len(), 150, "nothing was sent twice");
    assert_eq!(gone.received().len(), 50);
}

#[tokio::test]
async fn a_callback_that_never_answers_hits_the_deadline_and_does_not_hold_up_others() {
    let app = spawn_app_with(|s| {
        s.delivery_timeout = Duration::from_secs(2);
        s.delivery_concurrency = 4; // at most 2 in flight per subscription
        s.retry = RetryPolicy::fast_for_tests(3, Duration::from_millis(200));
    })
    .await;
    let instance = app.create_instance("Hooks").await;
    let slow = Receiver::start().await;
    slow.set_default(Reply::Hang);
    let fast = Receiver::start().await;
    subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": fast.url("/fast")}),
    )
    .await;

    // A backlog of 300 notifications for the hanging callback.
    let slow_sub = subscribe(
        &app,
        Trigger::OnFullRefreshCompleted,
        &instance,
        json!({"notificationUrl": slow.url("/slow-backlog")}),
    )
    .await;
    let mut tx = app.engine.store().begin().await.unwrap();
    for _ in 0..300 {
        let event = DomainEvent::new(&instance, full_refresh_event());
        Store::record_event(&mut tx, &event).await.unwrap();
    }
    app.engine.store().commit(tx).await.unwrap();
    app.engine.events_committed();
    tokio::time::sleep(Duration::from_millis(100)).await;

    let started = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(fire(&app, &instance, unification_event()).await);
    }
    let got = fast.wait_for(Some("/fast"), 6, WAIT).await;
    let all_fast = got.iter().map(|r| r.at).max().unwrap() - started;
    assert!(
        all_fast < Duration::from_millis(1800),
        "fast receiver waited for the slow one: {all_fast:?}"
    );
    assert_eq!(event_ids(&got), sorted(ids));
    // The hanging callback holds at most its share of slots.
    let n = slow.received_at("/slow-backlog").len();
    assert!(n <= 2, "{n} concurrent attempts on one subscription");
    let pending = app
        .get(&format!(
            "{}/deliveries?status=pending&$top=500",
            slow_sub.location
        ))
        .await
        .json();
    assert_eq!(pending["value"].as_array().unwrap().len(), 300);

    // Each attempt ends at the deadline and is recorded as a timeout.
    let list = wait_deliveries(&app, &slow_sub, |l| {
        l.iter().any(|d| {
            d["recentAttempts"]
                .as_array()
                .is_some_and(|a| !a.is_empty())
        })
    })
    .await;
    let attempt = list
        .iter()
        .flat_map(|d| d["recentAttempts"].as_array().unwrap().clone())
        .next()
        .unwrap();
    assert!(attempt["statusCode"].is_null());
    assert_eq!(
        attempt["error"],
        "no complete answer within the 2000 ms deadline"
    );
    let latency = attempt["latencyMs"].as_i64().unwrap();
    assert!((1950..4000).contains(&latency), "latency {latency}");
    eprintln!(
        "fast receiver got 6 notifications in {all_fast:?}; timed-out attempt took {latency} ms"
    );
}

#[tokio::test]
async fn notifications_are_signed_and_verify_with_the_standardwebhooks_crate() {
    let app =
        spawn_app_with(|s| s.retry = RetryPolicy::fast_for_tests(3, Duration::from_millis(100)))
            .await;
    let instance = app.create_instance("Hooks").await;
    let rx = Receiver::start().await;
    rx.plan([Reply::status(500)]); // the retry is signed afresh
    let (_, secret) = insights_connector::webhooks::signing::SigningSecret::generate();
    let sub = subscribe(
        &app,
        Trigger::OnFullRefreshCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/signed"), "secret": secret}),
    )
    .await;
    assert_eq!(sub.body["signed"], true);
    assert!(
        !sub.body.to_string().contains(&secret[6..]),
        "the secret is never echoed"
    );
    let id = fire(&app, &instance, full_refresh_event()).await;
    let got = rx.wait_for(Some("/signed"), 2, WAIT).await;

    let verifier = standardwebhooks::Webhook::new(&secret).unwrap();
    for r in &got {
        let mut headers = reqwest::header::HeaderMap::new();
        for (name, value) in &r.headers {
            headers.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                reqwest::header::HeaderValue::from_str(value).unwrap(),
            );
        }
        verifier
            .verify(&r.body, &headers)
            .expect("signature verifies");
        assert_eq!(r.header("webhook-id"), Some(id.as_str()));
        assert!(r.header("webhook-signature").unwrap().starts_with("v1,"));
        // Tampering is detected.
        let mut tampered = r.body.clone();
        tampered[0] = b' ';
        assert!(verifier.verify(&tampered, &headers).is_err());
        // Another key does not verify.
        let (_, other) = insights_connector::webhooks::signing::SigningSecret::generate();
        assert!(standardwebhooks::Webhook::new(&other)
            .unwrap()
            .verify(&r.body, &headers)
            .is_err());
    }
}

// ----- outbound safety -----

/// A host name other than `localhost` that resolves to loopback only (from /etc/hosts).
async fn loopback_name() -> Option<String> {
    let mut candidates = vec![
        "vm".to_string(),
        "runsc".to_string(),
        "ip6-localhost".to_string(),
        "localhost.localdomain".to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/etc/hostname") {
        candidates.insert(0, h.trim().to_string());
    }
    for name in candidates
        .into_iter()
        .filter(|n| !n.is_empty() && n != "localhost")
    {
        let addrs: Vec<std::net::SocketAddr> =
            match tokio::net::lookup_host((name.as_str(), 80)).await {
                Ok(found) => found.collect(),
                Err(_) => continue,
            };
        if !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback()) {
            return Some(name);
        }
    }
    None
}

#[tokio::test]
async fn ssrf_targets_are_refused_at_subscribe_time_without_private_callbacks() {
    let app = spawn_app_with(|s| s.allow_private_callbacks = false).await;
    let instance = app.create_instance("Hooks").await;
    let rx = Receiver::start().await;
    let p = rx.port;
    let mut urls = vec![
        format!("https://127.0.0.1:{p}/h"),
        format!("http://127.0.0.1:{p}/h"),
        "https://10.0.0.1/h".to_string(),
        "https://192.168.1.10/h".to_string(),
        "https://169.254.169.254/latest/meta-data/".to_string(),
        "https://100.64.0.1/h".to_string(),
        "https://0.0.0.0/h".to_string(),
        "https://224.0.0.1/h".to_string(),
        format!("https://[::1]:{p}/h"),
        "https://[fd00::1]/h".to_string(),
        "https://[fe80::1]/h".to_string(),
        "https://[::ffff:127.0.0.1]/h".to_string(),
        format!("https://localhost:{p}/h"),
        "https://metadata.google.internal/computeMetadata/v1/".to_string(),
        "http://example.com/h".to_string(),
        "file:///etc/passwd".to_string(),
        "https://user:pw@example.com/h".to_string(),
    ];
    match loopback_name().await {
        Some(name) => urls.push(format!("https://{name}:{p}/h")),
        None => eprintln!("no non-localhost name resolves to loopback here; that case is skipped"),
    }
    for url in &urls {
        let r = app
            .post(
                &trigger_path(Trigger::OnUnificationCompleted, &instance),
                json!({"notificationUrl": url}),
            )
            .await;
        let problem = r.assert_problem(400);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("notificationUrl is not allowed"),
            "{url}: {problem}"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rx.received().is_empty());
    assert_eq!(rx.connections(), 0, "a refused URL was contacted");
    assert_eq!(
        app.get(&format!("/instances/{instance}/subscriptions"))
            .await
            .json(),
        json!({"value": []})
    );

    // Even with private callbacks allowed, cloud metadata stays refused.
    let dev = spawn_app().await;
    let dev_instance = dev.create_instance("Dev").await;
    for url in [
        "http://169.254.169.254/latest/meta-data/",
        "http://metadata.google.internal/",
    ] {
        dev.post(
            &trigger_path(Trigger::OnUnificationCompleted, &dev_instance),
            json!({"notificationUrl": url}),
        )
        .await
        .assert_problem(400);
    }
}

#[tokio::test]
async fn the_dispatcher_checks_the_destination_again_before_each_attempt() {
    // Subscribed while private callbacks were allowed; the operator then turns them off.
    let rx = Receiver::start().await;
    let p = rx.port;
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let mut targets = vec![
        format!("https://127.0.0.1:{p}/literal"),
        format!("http://127.0.0.1:{p}/plain"),
    ];
    if let Some(name) = loopback_name().await {
        targets.push(format!("https://{name}:{p}/by-name"));
    }
    let mut subs = Vec::new();
    for url in &targets {
        subs.push(
            subscribe(
                &app,
                Trigger::OnUnificationCompleted,
                &instance,
                json!({"notificationUrl": url}),
            )
            .await,
        );
    }
    let old_address = app.address.clone();
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |s| s.allow_private_callbacks = false).await;
    for sub in &mut subs {
        sub.location = sub.location.replace(&old_address, &app.address);
    }
    fire(&app, &instance, unification_event()).await;
    for sub in &subs {
        let list = wait_deliveries(&app, sub, |l| l.len() == 1 && l[0]["status"] == "failed").await;
        let error = list[0]["lastError"].as_str().unwrap();
        assert!(error.starts_with("destination refused"), "{error}");
        assert!(list[0]["recentAttempts"][0]["statusCode"].is_null());
    }
    assert_eq!(rx.connections(), 0, "a refused destination was contacted");
}

#[tokio::test]
async fn redirects_are_not_followed() {
    let app = spawn_app().await;
    let instance = app.create_instance("Hooks").await;
    let target = Receiver::start().await;
    let rx = Receiver::start().await;
    rx.set_default(Reply::status(307).with_header("Location", &target.url("/internal")));
    let sub = subscribe(
        &app,
        Trigger::OnUnificationCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/h")}),
    )
    .await;
    fire(&app, &instance, unification_event()).await;
    rx.wait_for(Some("/h"), 1, WAIT).await;
    let list = wait_deliveries(&app, &sub, |l| l.len() == 1 && l[0]["status"] == "failed").await;
    assert_eq!(list[0]["recentAttempts"][0]["statusCode"], 307);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(target.connections(), 0, "the redirect was followed");
}

#[tokio::test]
async fn the_callback_host_allowlist_is_enforced() {
    let app = spawn_app_with(|s| s.callback_hosts = vec!["*.logic.azure.com".into()]).await;
    let instance = app.create_instance("Hooks").await;
    let r = app
        .post(
            &trigger_path(Trigger::OnUnificationCompleted, &instance),
            json!({"notificationUrl": "http://127.0.0.1:9/h"}),
        )
        .await;
    let problem = r.assert_problem(400);
    assert!(
        problem["detail"].as_str().unwrap().contains("allowlist"),
        "{problem}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut settings = common::settings_for(dir.path());
    settings.callback_hosts = vec!["*bad*".into()];
    assert!(insights_connector::startup::Application::build(settings)
        .await
        .is_err());
}

// ----- the OpenAPI document -----

#[tokio::test]
async fn the_openapi_document_describes_the_triggers_for_power_automate() {
    let app = spawn_app().await;
    let doc = app
        .send(Method::GET, "/openapi.json", None, None)
        .await
        .json();
    for definition in TRIGGERS {
        let (trigger, schema) = (definition.trigger, definition.payload_name());
        let op = &doc["paths"][definition.path]["post"];
        assert_eq!(op["operationId"], trigger.as_str());
        assert_eq!(op["x-ms-trigger"], "single");
        assert_eq!(op["x-ms-visibility"], "important");
        let summary = op["summary"].as_str().unwrap();
        assert!(
            summary.starts_with("When a") && !summary.ends_with('.'),
            "{summary}"
        );
        let description = op["description"].as_str().unwrap();
        assert!(
            description.starts_with("This operation triggers when") && description.ends_with('.')
        );
        assert!(op["responses"]["201"]["headers"]["Location"].is_object());
        let body_ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
            .as_str()
            .unwrap();
        let body_name = body_ref.rsplit('/').next().unwrap();
        assert_eq!(body_name, (definition.inputs)(), "{trigger:?}");
        let body = &doc["components"]["schemas"][body_name];
        let url = &body["properties"]["notificationUrl"];
        assert_eq!(url["type"], "string");
        assert_eq!(url["x-ms-notification-url"], true);
        assert_eq!(url["x-ms-visibility"], "internal");
        assert!(body["required"]
            .as_array()
            .unwrap()
            .contains(&json!("notificationUrl")));
        assert_eq!(body["additionalProperties"], false);
        assert!(notification_schema_json(&schema).is_some());
    }
    let seg = &doc["components"]["schemas"]["SegmentTriggerInput"]["properties"]["threshold"];
    assert_eq!(
        (seg["type"].clone(), seg["minimum"].clone()),
        (json!("integer"), json!(0))
    );
    assert_eq!(
        doc["components"]["schemas"]["MeasureTriggerInput"]["properties"]["threshold"]["type"],
        "number"
    );
    // The id pickers list values from operations of this document.
    let operation_ids: Vec<&str> = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .filter_map(|op| op["operationId"].as_str())
        .collect();
    for (schema, prop) in [
        ("DataSourceTriggerInput", "dataSourceId"),
        ("SegmentTriggerInput", "segmentId"),
        ("MeasureTriggerInput", "measureId"),
    ] {
        let dv = &doc["components"]["schemas"][schema]["properties"][prop]["x-ms-dynamic-values"];
        assert!(
            operation_ids.contains(&dv["operationId"].as_str().unwrap()),
            "{schema}.{prop}: {dv}"
        );
        assert_eq!(dv["value-path"], prop);
    }
    let sub_path = "/instances/{instanceId}/subscriptions/{subscriptionId}";
    assert_eq!(
        doc["paths"][sub_path]["delete"]["operationId"],
        "DeleteTriggerSubscription"
    );
    assert_eq!(
        doc["paths"][sub_path]["delete"]["x-ms-visibility"],
        "internal"
    );
    assert_eq!(
        doc["paths"][sub_path]["get"]["operationId"],
        "GetTriggerSubscription"
    );
    for (path, method, op) in [
        ("/instances/{instanceId}/subscriptions", "get", "ListTriggerSubscriptions"),
        ("/instances/{instanceId}/subscriptions/{subscriptionId}/deliveries", "get", "ListDeliveries"),
        ("/instances/{instanceId}/subscriptions/{subscriptionId}/deliveries/{deliveryId}/redeliver", "post", "RedeliverEvent"),
    ] {
        assert_eq!(doc["paths"][path][method]["operationId"], op);
        assert_eq!(doc["paths"][path][method]["x-ms-visibility"], "advanced");
    }
    // Every property of the webhook schemas is documented, at every depth.
    fn documented(path: &str, schema: &Value) {
        if let Some(props) = schema.get("properties").and_then(Value::as_object) {
            for (name, s) in props {
                let here = format!("{path}.{name}");
                assert!(s["description"].is_string(), "{here} has no description");
                assert!(s["x-ms-summary"].is_string(), "{here} has no x-ms-summary");
                documented(&here, s);
            }
        }
        if let Some(items) = schema.get("items") {
            documented(path, items);
        }
    }
    for name in [
        "DataSourceTriggerInput",
        "SegmentTriggerInput",
        "MeasureTriggerInput",
        "PlainTriggerInput",
        "TriggerSubscription",
        "TriggerSubscriptionList",
        "Delivery",
        "DeliveryList",
    ] {
        documented(name, &doc["components"]["schemas"][name]);
    }
}

// ----- the engine, end to end -----

async fn start_job(app: &TestApp, path: &str) -> Value {
    let r = app.post(path, json!({})).await;
    assert_eq!(r.status, 202, "{path}: {}", r.text);
    wait_job(&app.client, &app.address, r.header("location").unwrap()).await
}

#[tokio::test]
async fn engine_refreshes_fire_every_trigger_end_to_end() {
    let app = spawn_app().await;
    let instance = app.create_instance("Engine").await;
    let base = format!("/instances/{instance}");
    std::fs::write(
        app.tenant_file("people.csv"),
        "id,email,city\n1,a@x.org,Berlin\n2,b@x.org,Paris\n",
    )
    .unwrap();
    let ds = app
        .post(&format!("{base}/datasources"), json!({"name": "People", "entityName": "People", "format": "csv", "keyField": "id", "path": "people.csv"}))
        .await;
    assert_eq!(ds.status, 201, "{}", ds.text);
    let ds_id = ds.json()["dataSourceId"].as_str().unwrap().to_string();
    let config = json!({
        "sources": [{"entityName": "People", "fields": {"email": "email", "city": "city"}, "priority": 1}],
        "rules": [{"name": "email", "conditions": [{"field": "email", "normalization": "email", "precision": "exact"}]}],
        "merge": {"policy": "sourcePriority"}
    });
    let r = app.put(&format!("{base}/unification"), config).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let seg = app
        .post(
            &format!("{base}/segments"),
            json!({"name": "Berliners", "filter": "city eq 'Berlin'"}),
        )
        .await;
    assert_eq!(seg.status, 201, "{}", seg.text);
    let seg_id = seg.json()["segmentId"].as_str().unwrap().to_string();
    let m = app
        .post(
            &format!("{base}/measures"),
            json!({"name": "People", "entityName": "People", "aggregate": "count"}),
        )
        .await;
    assert_eq!(m.status, 201, "{}", m.text);
    let m_id = m.json()["measureId"].as_str().unwrap().to_string();

    let rx = Receiver::start().await;
    let subs = [
        (
            Trigger::OnDataSourceRefreshFailed,
            json!({"dataSourceId": ds_id}),
        ),
        (Trigger::OnDataSourceRefreshSucceeded, json!({})),
        (
            Trigger::OnSegmentThresholdCrossed,
            json!({"segmentId": seg_id, "threshold": 1}),
        ),
        (
            Trigger::OnMeasureThresholdCrossed,
            json!({"measureId": m_id, "threshold": 2}),
        ),
        (Trigger::OnFullRefreshCompleted, json!({})),
        (Trigger::OnUnificationCompleted, json!({})),
    ];
    for (t, inputs) in &subs {
        let mut body = json!({"notificationUrl": rx.url(&format!("/{}", t.as_str()))});
        body.as_object_mut()
            .unwrap()
            .extend(inputs.as_object().unwrap().clone());
        subscribe(&app, *t, &instance, body).await;
    }

    // 1: two people, one in Berlin: measure 0→2 and segment 0→1 stay at their thresholds.
    let job = start_job(&app, &format!("{base}/refresh")).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // 2: four people, three in Berlin: both cross.
    std::fs::write(
        app.tenant_file("people.csv"),
        "id,email,city\n1,a@x.org,Berlin\n2,b@x.org,Paris\n3,c@x.org,Berlin\n4,d@x.org,Berlin\n",
    )
    .unwrap();
    start_job(&app, &format!("{base}/refresh")).await;
    // 3: the file is gone: the data source refresh fails.
    std::fs::remove_file(app.tenant_file("people.csv")).unwrap();
    start_job(&app, &format!("{base}/datasources/{ds_id}/refresh")).await;

    let expect = [
        (Trigger::OnDataSourceRefreshSucceeded, 2),
        (Trigger::OnUnificationCompleted, 2),
        (Trigger::OnFullRefreshCompleted, 2),
        (Trigger::OnMeasureThresholdCrossed, 1),
        (Trigger::OnSegmentThresholdCrossed, 1),
        (Trigger::OnDataSourceRefreshFailed, 1),
    ];
    for (t, n) in expect {
        let path = format!("/{}", t.as_str());
        let got = rx.wait_for(Some(&path), n, WAIT).await;
        for r in &got {
            let body = r.json();
            assert_matches_schema(t, &body);
            assert_eq!(body["instanceId"], instance);
        }
    }
    tokio::time::sleep(QUIET).await;
    for (t, n) in expect {
        assert_eq!(
            rx.received_at(&format!("/{}", t.as_str())).len(),
            n,
            "{t:?}"
        );
    }
    let seg_body = rx.received_at("/OnSegmentThresholdCrossed")[0].json();
    assert_eq!(
        (
            seg_body["previousCount"].clone(),
            seg_body["currentCount"].clone()
        ),
        (json!(1), json!(3))
    );
    let m_body = rx.received_at("/OnMeasureThresholdCrossed")[0].json();
    assert_eq!(
        (
            m_body["previousValue"].clone(),
            m_body["currentValue"].clone()
        ),
        (json!(2.0), json!(4.0))
    );
    let failed = rx.received_at("/OnDataSourceRefreshFailed")[0].json();
    assert_eq!(failed["status"], "failed");
    assert!(failed["error"].is_string());
}

// ----- crash safety (the real binary, kill -9) -----

#[tokio::test]
async fn kill_9_and_restart_lose_no_notification() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let rx_port = free_port();
    let p1 = Server::start(dir.path(), port, "p1.log").await;
    let (s, inst, _) = p1.post("/instances", json!({"name": "Crash"})).await;
    assert_eq!(s, 201);
    let instance = inst["instanceId"].as_str().unwrap().to_string();
    let (s, ds, _) = p1
        .post(
            &format!("/instances/{instance}/datasources"),
            json!({"name": "Orders", "entityName": "Orders", "format": "csv", "keyField": "id", "content": "id,amount\n1,10\n2,20\n"}),
        )
        .await;
    assert_eq!(s, 201, "{ds}");
    let ds = ds["dataSourceId"].as_str().unwrap().to_string();
    let (s, sub, _) = p1
        .post(
            &trigger_path(Trigger::OnDataSourceRefreshSucceeded, &instance),
            json!({"notificationUrl": format!("http://127.0.0.1:{rx_port}/hook")}),
        )
        .await;
    assert_eq!(s, 201, "{sub}");

    // Phase 1: three events while the receiver is not there yet (attempts fail and are
    // retried every 0.2 s); then it accepts but never answers; kill -9 while those attempts
    // are in flight (well inside their 2 s deadline).
    for _ in 0..3 {
        p1.refresh(&instance, &ds).await;
    }
    let rx = Receiver::start_on(rx_port).await;
    rx.set_default(Reply::Hang);
    rx.wait_for(Some("/hook"), 1, WAIT).await;
    p1.kill_9();
    // Phase 2: the receiver is down; events committed, attempts fail (connection refused)
    // and are being retried; kill -9 again.
    rx.stop();
    drop(rx);
    let p2 = Server::start(dir.path(), port, "p2.log").await;
    for _ in 0..3 {
        p2.refresh(&instance, &ds).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    p2.kill_9();

    // Phase 3: both come back; every committed event arrives (duplicates allowed).
    let p3 = Server::start(dir.path(), port, "p3.log").await;
    let started = Instant::now();
    let rx = Receiver::start_on(rx_port).await;
    let deadline = Instant::now() + Duration::from_secs(40);
    let expected: i64 = {
        let store = insights_connector::store::Store::open(&dir.path().join("data"))
            .await
            .unwrap();
        let n = sqlx::query_scalar(
            "SELECT COUNT(*) FROM events WHERE event_type = 'dataSourceRefreshSucceeded'",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        store.close().await;
        n
    };
    assert_eq!(expected, 6);
    loop {
        let mut ids = event_ids(&rx.received());
        ids.dedup();
        if ids.len() as i64 == expected {
            eprintln!(
                "all {expected} events arrived {:?} after the restart ({} requests in all)",
                started.elapsed(),
                rx.received().len()
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {expected} events arrived",
            ids.len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(p3);
}

// ----- retention -----

/// Retention deletes finished deliveries (and their attempts and events) past the retention
/// period and never a pending one, however old.
#[tokio::test]
async fn retention_prunes_finished_deliveries_and_never_pending_ones() {
    if !common::sqlite_only("retention_prunes_finished_deliveries_and_never_pending_ones") {
        return;
    }
    // The failing endpoint's next retry is an hour away, so its deliveries stay pending.
    let app = spawn_app_with(|s| {
        s.retry = RetryPolicy::fast_for_tests(5, Duration::from_secs(3600));
    })
    .await;
    let instance = app.create_instance("Retention").await;
    let rx = Receiver::start().await;
    let failing = Receiver::start().await;
    failing.set_default(Reply::status(503));
    let ok = subscribe(
        &app,
        Trigger::OnFullRefreshCompleted,
        &instance,
        json!({"notificationUrl": rx.url("/ok")}),
    )
    .await;
    let down = subscribe(
        &app,
        Trigger::OnFullRefreshCompleted,
        &instance,
        json!({"notificationUrl": failing.url("/down")}),
    )
    .await;
    fire(&app, &instance, full_refresh_event()).await;
    fire(&app, &instance, full_refresh_event()).await;
    wait_deliveries(&app, &ok, |l| {
        l.len() == 2 && l.iter().all(|d| d["status"] == "delivered")
    })
    .await;
    wait_deliveries(&app, &down, |l| {
        l.len() == 2
            && l.iter()
                .all(|d| d["attempts"].as_u64() >= Some(1) && d["status"] == "pending")
    })
    .await;

    let store = app.engine.store();
    let count = |sql: &'static str| async move {
        sqlx::query_scalar::<_, i64>(sql)
            .fetch_one(store.pool())
            .await
            .unwrap()
    };
    // A period that has not passed yet keeps everything.
    insights_connector::webhooks::retention::prune(store, Duration::from_secs(3600)).await;
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 4);
    // Everything finished before now goes; the pending deliveries and their events stay.
    insights_connector::webhooks::retention::prune(store, Duration::ZERO).await;
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 2);
    assert_eq!(
        count("SELECT count(*) FROM deliveries WHERE status = 'pending'").await,
        2
    );
    assert_eq!(count("SELECT count(*) FROM events").await, 2);
    assert_eq!(
        count("SELECT count(*) FROM delivery_attempts a JOIN deliveries d ON d.id = a.delivery_id")
            .await,
        count("SELECT count(*) FROM delivery_attempts").await,
        "no attempt outlives its delivery"
    );
    assert!(wait_deliveries(&app, &ok, |l| l.is_empty())
        .await
        .is_empty());
    assert_eq!(
        wait_deliveries(&app, &down, |l| l.len() == 2).await.len(),
        2
    );

    // Once those are finished too (here: the subscription is removed), the events go as well.
    app.delete(&down.location).await;
    sqlx::query("UPDATE deliveries SET status = 'dead'")
        .execute(store.pool())
        .await
        .unwrap();
    insights_connector::webhooks::retention::prune(store, Duration::ZERO).await;
    assert_eq!(count("SELECT count(*) FROM deliveries").await, 0);
    assert_eq!(count("SELECT count(*) FROM events").await, 0);
    assert_eq!(count("SELECT count(*) FROM delivery_attempts").await, 0);
}
