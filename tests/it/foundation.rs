//! The service foundation: auth, tenancy, persistence, error shapes, operational endpoints.

use crate::common;

use crate::common::{spawn_app, spawn_app_in, spawn_app_with, KEY_A, KEY_B};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn requests_without_or_with_a_wrong_key_get_401() {
    let app = spawn_app().await;
    let none = app.send(Method::GET, "/instances", None, None).await;
    none.assert_problem(401);
    let wrong = app
        .send(Method::GET, "/instances", Some("not-a-key"), None)
        .await;
    wrong.assert_problem(401);
    let ok = app.get("/instances").await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json(), json!({ "value": [] }));
}

#[tokio::test]
async fn create_answers_201_with_absolute_location_that_resolves() {
    let app = spawn_app().await;
    let r = app
        .post("/instances", json!({ "name": "  Contoso  " }))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let body = r.json();
    assert_eq!(body["name"], "Contoso");
    let location = r.header("location").unwrap().to_string();
    assert!(location.starts_with("http://127.0.0.1:"), "{location}");
    let fetched = app.get(&location).await;
    assert_eq!(fetched.status, 200);
    assert_eq!(fetched.json(), body);
}

#[tokio::test]
async fn tenants_cannot_see_change_or_delete_each_others_instances() {
    let app = spawn_app().await;
    let id = app.create_instance("A's workspace").await;
    let path = format!("/instances/{id}");

    let b_get = app.send(Method::GET, &path, Some(KEY_B), None).await;
    b_get.assert_problem(404);
    let missing = app
        .send(Method::GET, "/instances/does-not-exist", Some(KEY_B), None)
        .await;
    let missing = missing.assert_problem(404);
    let b_body = b_get.json();
    // Exactly like a missing one: same status, type and title.
    assert_eq!(b_body["type"], missing["type"]);
    assert_eq!(b_body["title"], missing["title"]);

    let b_list = app.send(Method::GET, "/instances", Some(KEY_B), None).await;
    assert_eq!(b_list.json(), json!({ "value": [] }));
    let b_delete = app.send(Method::DELETE, &path, Some(KEY_B), None).await;
    b_delete.assert_problem(404);
    let b_source = app
        .send(
            Method::POST,
            &format!("{path}/datasources"),
            Some(KEY_B),
            Some(&json!({"name":"x","entityName":"X","format":"csv","keyField":"id","content":"id\n1\n"})),
        )
        .await;
    b_source.assert_problem(404);

    assert_eq!(app.get(&path).await.status, 200, "A still sees it");
    assert_eq!(app.delete(&path).await.status, 204);
    app.get(&path).await.assert_problem(404);
    let _ = KEY_A;
}

#[tokio::test]
async fn data_survives_a_restart_on_the_same_data_dir() {
    let app = spawn_app().await;
    let id = app.create_instance("Durable").await;
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let r = app.get(&format!("/instances/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["name"], "Durable");
}

#[tokio::test]
async fn malformed_json_wrong_content_type_oversized_body_and_trace_are_problems() {
    let app = spawn_app_with(|s| s.max_body_bytes = 1024).await;
    let raw = |method: Method, ct: Option<&str>, body: String| {
        let mut req = app
            .client
            .request(method, app.url("/instances"))
            .header("X-API-Key", KEY_A);
        if let Some(ct) = ct {
            req = req.header("content-type", ct);
        }
        async move {
            let res = req.body(body).send().await.unwrap();
            common::Reply {
                status: res.status(),
                headers: res.headers().clone(),
                text: res.text().await.unwrap(),
            }
        }
    };
    raw(Method::POST, Some("application/json"), "{\"name\":".into())
        .await
        .assert_problem(400);
    raw(
        Method::POST,
        Some("application/json"),
        "{\"name\":5}".into(),
    )
    .await
    .assert_problem(400);
    raw(Method::POST, Some("text/plain"), "{\"name\":\"x\"}".into())
        .await
        .assert_problem(415);
    // A body in an encoding the service does not decode is refused, not read as plain JSON.
    for encoding in ["compress", "x-unknown", "gzip, rot13"] {
        let res = app
            .client
            .post(app.url("/instances"))
            .header("X-API-Key", KEY_A)
            .header("content-type", "application/json")
            .header("content-encoding", encoding)
            .body("{\"name\":\"x\"}")
            .send()
            .await
            .unwrap();
        let reply = common::Reply {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap(),
        };
        let body = reply.assert_problem(415);
        assert!(
            body["detail"].as_str().unwrap().contains(encoding),
            "{body}"
        );
    }
    let identity = app
        .client
        .post(app.url("/instances"))
        .header("X-API-Key", KEY_A)
        .header("content-type", "application/json")
        .header("content-encoding", "identity")
        .body("{\"name\":\"plain\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(identity.status(), 201);
    let big = format!("{{\"name\":\"{}\"}}", "x".repeat(4096));
    let too_big = raw(Method::POST, Some("application/json"), big)
        .await
        .assert_problem(413);
    // Read no further than the limit, whoever reads the body.
    assert!(
        too_big["detail"].as_str().unwrap().contains("1024"),
        "{too_big}"
    );
    // A member named twice in one object is refused, at any depth; the same name in two
    // objects is fine.
    for body in [
        r#"{"name":"a","name":"b"}"#,
        r#"{"name":"a","x":{"k":1,"k":2}}"#,
        r#"{"name":"a","x":[{"k":1},{"k":2,"k":3}]}"#,
    ] {
        let problem = raw(Method::POST, Some("application/json"), body.into())
            .await
            .assert_problem(400);
        assert!(
            problem["detail"].as_str().unwrap().contains("twice"),
            "{body}: {problem}"
        );
    }
    let distinct = raw(
        Method::POST,
        Some("application/json"),
        r#"{"name":"twice ok","x":{"k":1},"y":{"k":2}}"#.into(),
    )
    .await;
    assert_eq!(
        distinct.status, 400,
        "unknown fields are still refused: {}",
        distinct.text
    );
    assert!(
        !distinct.text.contains("twice in one object"),
        "{}",
        distinct.text
    );
    let fine = raw(
        Method::POST,
        Some("application/json"),
        r#"{"name":"once"}"#.into(),
    )
    .await;
    assert_eq!(fine.status, 201, "{}", fine.text);
    let trace = raw(Method::TRACE, None, String::new()).await;
    trace.assert_problem(405);
    assert_eq!(trace.header("allow"), Some("GET, POST"));
    let unknown = app.get("/no/such/route").await;
    unknown.assert_problem(404);
    let empty_name = app.post("/instances", json!({"name": "   "})).await;
    empty_name.assert_problem(400);
}

#[tokio::test]
async fn operational_endpoints_answer_without_a_key() {
    let app = spawn_app().await;
    let _ = app.get("/instances").await;
    for (path, ct) in [
        ("/health", "application/json"),
        ("/ready", "application/json"),
        ("/metrics", "text/plain"),
        ("/openapi.json", "application/json"),
        ("/docs/", "text/html"),
    ] {
        let r = app.send(Method::GET, path, None, None).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        assert!(
            r.content_type().starts_with(ct),
            "{path}: {}",
            r.content_type()
        );
    }
    let metrics = app.send(Method::GET, "/metrics", None, None).await.text;
    assert!(
        metrics.contains("http_requests_total{method=\"GET\",route=\"/instances\",status=\"200\"}"),
        "{metrics}"
    );
    let docs = app.send(Method::GET, "/docs", None, None).await;
    assert_eq!(docs.status, 308);
    assert_eq!(docs.header("location"), Some("/docs/"));
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let app = spawn_app_with(|s| {
        s.rate_limit = Some("3/60s".parse().unwrap());
    })
    .await;
    for _ in 0..3 {
        assert_eq!(app.get("/instances").await.status, 200);
    }
    let limited = app.get("/instances").await;
    limited.assert_problem(429);
    let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after));
    // Another key has its own budget.
    let b = app.send(Method::GET, "/instances", Some(KEY_B), None).await;
    assert_eq!(b.status, 200);
}

#[tokio::test]
async fn first_start_without_keys_generates_a_usable_default_key() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = insights_connector::configuration::Settings::for_tests(dir.path().into());
    settings.bootstrap_keys.clear();
    let app = insights_connector::startup::Application::build(settings)
        .await
        .unwrap();
    let key = app.generated_key().expect("a key is generated").to_string();
    let url = format!("http://127.0.0.1:{}/instances", app.port());
    let handle = app.handle();
    let task = tokio::spawn(app.run_until_stopped());
    let res = reqwest::Client::new()
        .get(&url)
        .header("X-API-Key", &key)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    handle.stop(true).await;
    let _ = task.await;
    // Second start: a key exists, so none is generated.
    let mut settings = insights_connector::configuration::Settings::for_tests(dir.path().into());
    settings.bootstrap_keys.clear();
    let again = insights_connector::startup::Application::build(settings)
        .await
        .unwrap();
    assert!(again.generated_key().is_none());
}

#[test]
fn sigterm_stops_the_binary_gracefully() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_insights-connector"))
        .args([
            "serve",
            "--bind",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(dir.path())
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let stopping = Instant::now();
    loop {
        if let Some(code) = child.try_wait().unwrap() {
            assert!(code.success(), "exit status {code:?}");
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(25),
            "did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // The first start generated and printed a key for tenant 'default'.
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(stderr.contains("X-API-Key: ick_"), "{stderr}");
}
