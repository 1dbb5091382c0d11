//! `spawn_app`: the real application on 127.0.0.1:0 over a temporary data directory.
#![allow(dead_code)]

pub mod contract;
pub mod process;

use std::path::Path;
use std::sync::Arc;

use insights_connector::configuration::Settings;
use insights_connector::startup::Application;
use insights_connector::store::DatabaseUrl;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::Connection;

pub const KEY_A: &str = "tenant-a-key-0123456789abcdef";
pub const KEY_B: &str = "tenant-b-key-0123456789abcdef";

pub struct TestApp {
    pub address: String,
    pub engine: insights_connector::engine::Engine,
    pub client: reqwest::Client,
    pub dir: Arc<tempfile::TempDir>,
    handle: actix_web::dev::ServerHandle,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// A response read whole, for assertions.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn content_type(&self) -> &str {
        self.header("content-type").unwrap_or("")
    }
    /// Asserts a problem+json body with the given status.
    pub fn assert_problem(&self, status: u16) -> Value {
        assert_eq!(self.status.as_u16(), status, "body: {}", self.text);
        assert!(
            self.content_type().starts_with("application/problem+json"),
            "content type {} for {}",
            self.content_type(),
            self.text
        );
        let body = self.json();
        assert_eq!(body["status"], status);
        for field in ["type", "title", "detail"] {
            assert!(body[field].is_string(), "problem lacks {field}: {body}");
        }
        body
    }
}

/// The PostgreSQL server the suite runs on instead of SQLite, when set (the test script sets it
/// to a throw-away cluster): every app gets a fresh database of its own there.
pub const TEST_POSTGRES_ENV: &str = "CONNECTOR_TEST_POSTGRES_URL";

/// Whether this run of the suite is on PostgreSQL.
pub fn on_postgres() -> bool {
    std::env::var(TEST_POSTGRES_ENV).is_ok_and(|u| !u.is_empty())
}

/// A test that reads or writes the SQLite file itself: skipped on PostgreSQL (where the same
/// behaviour is covered through the API).
pub fn sqlite_only(test: &str) -> bool {
    if on_postgres() {
        eprintln!("{test}: runs on SQLite only (it inspects the SQLite file)");
        return false;
    }
    true
}

/// The database of the app over `dir`: SQLite in `dir`, or on PostgreSQL a database created for
/// `dir` on first use (its URL kept in `dir`, so a restart finds the same data).
pub async fn database_for(dir: &Path) -> DatabaseUrl {
    let Some(server) = std::env::var(TEST_POSTGRES_ENV)
        .ok()
        .filter(|u| !u.is_empty())
    else {
        return DatabaseUrl::Sqlite(dir.join("connector.db"));
    };
    let marker = dir.join("database-url");
    if let Ok(url) = std::fs::read_to_string(&marker) {
        return DatabaseUrl::Postgres(url);
    }
    let name = format!("it_{}", uuid::Uuid::new_v4().simple());
    let mut admin = sqlx::postgres::PgConnection::connect(&server)
        .await
        .expect("the test PostgreSQL server answers");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut admin)
        .await
        .expect("create a test database");
    let mut url = reqwest::Url::parse(&server).expect("a postgres:// URL");
    url.set_path(&name);
    std::fs::write(&marker, url.as_str()).unwrap();
    DatabaseUrl::Postgres(url.to_string())
}

/// A CSV of `rows` rows `id,value` (key `id`): an inline data source whose refresh takes a while.
pub fn big_csv(rows: usize) -> String {
    let mut csv = String::from("id,value\n");
    for i in 0..rows {
        csv.push_str(&format!("{i},{}\n", i * 7));
    }
    csv
}

pub fn settings_for(dir: &Path) -> Settings {
    let mut settings = Settings::for_tests(dir.to_path_buf());
    settings.bootstrap_keys = vec![
        ("alpha".into(), KEY_A.into()),
        ("beta".into(), KEY_B.into()),
    ];
    settings.allow_private_callbacks = true;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = Arc::new(tempfile::tempdir().expect("temp dir"));
    spawn_app_in(dir, adjust).await
}

/// Starts the app over an existing data directory (used to restart on the same data).
pub async fn spawn_app_in(
    dir: Arc<tempfile::TempDir>,
    adjust: impl FnOnce(&mut Settings),
) -> TestApp {
    insights_connector::telemetry::init_tracing("error");
    let mut settings = settings_for(dir.path());
    settings.database = database_for(dir.path()).await;
    adjust(&mut settings);
    let app = Application::build(settings).await.expect("app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    let engine = app.engine().clone();
    let task = tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        engine,
        client: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .unwrap(),
        dir,
        handle,
        task,
    }
}

impl TestApp {
    /// Graceful stop; returns the data directory so the app can be started again on it.
    pub async fn stop(self) -> Arc<tempfile::TempDir> {
        self.handle.stop(true).await;
        let _ = self.task.await;
        self.dir
    }

    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{}", self.address, path)
        }
    }

    pub async fn send(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        self.send_with(method, path, key, body, &[]).await
    }

    /// Every request of the tests goes through here.
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let url = self.url(path);
        let mut req = self.client.request(method.clone(), &url);
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        if let Some(key) = key {
            req = req.header("X-API-Key", key);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let res = req.send().await.expect("request sent");
        let reply = Reply {
            status: res.status(),
            headers: res.headers().clone(),
            text: res.text().await.unwrap_or_default(),
        };
        // Every response a test receives is checked against the committed spec.
        let url_path = reqwest::Url::parse(&url)
            .expect("absolute URL")
            .path()
            .to_string();
        contract::contract().check(
            method.as_str(),
            &url_path,
            reply.status.as_u16(),
            &reply.headers,
            &reply.text,
        );
        reply
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send(Method::GET, path, Some(KEY_A), None).await
    }
    /// A GET asking for pages of at most `size` items (`Prefer: odata.maxpagesize`).
    pub async fn get_pages_of(&self, size: usize, path: &str) -> Reply {
        let prefer = format!("odata.maxpagesize={size}");
        self.send_with(Method::GET, path, Some(KEY_A), None, &[("Prefer", &prefer)])
            .await
    }
    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.send(Method::POST, path, Some(KEY_A), Some(&body))
            .await
    }
    pub async fn patch(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PATCH, path, Some(KEY_A), Some(&body))
            .await
    }
    pub async fn put(&self, path: &str, body: Value) -> Reply {
        self.send(Method::PUT, path, Some(KEY_A), Some(&body)).await
    }
    pub async fn delete(&self, path: &str) -> Reply {
        self.send(Method::DELETE, path, Some(KEY_A), None).await
    }

    /// Where tenant A's server-side data-source file `name` goes (`files/alpha/` of the data
    /// directory, created if missing).
    pub fn tenant_file(&self, name: &str) -> std::path::PathBuf {
        let folder = self.dir.path().join("files").join("alpha");
        std::fs::create_dir_all(&folder).expect("tenant folder");
        folder.join(name)
    }

    /// Creates an instance for tenant A and returns its id.
    pub async fn create_instance(&self, name: &str) -> String {
        let r = self
            .post("/instances", serde_json::json!({ "name": name }))
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["instanceId"].as_str().unwrap().to_string()
    }
}

impl TestApp {
    /// Polls a job location (202 while running) until it answers 200; returns the job.
    pub async fn wait_job(&self, location: &str) -> Value {
        for _ in 0..600 {
            let r = self.get(location).await;
            match r.status.as_u16() {
                200 => return r.json(),
                202 => {
                    assert!(r.header("location").is_some(), "202 without Location");
                    assert!(r.header("retry-after").is_some(), "202 without Retry-After");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
                other => panic!("polling {location}: {other} {}", r.text),
            }
        }
        panic!("job at {location} did not finish");
    }

    /// POSTs an action that starts a job, checks the 202 contract and waits for the job.
    pub async fn run_job(&self, path: &str) -> Value {
        let r = self.post(path, Value::Null).await;
        assert_eq!(r.status, 202, "{path}: {}", r.text);
        let location = r.header("location").expect("Location").to_string();
        assert!(
            location.starts_with("http"),
            "absolute Location: {location}"
        );
        assert!(r.header("retry-after").is_some());
        self.wait_job(&location).await
    }

    /// Creates an inline data source and returns its id.
    pub async fn create_source(&self, instance: &str, body: Value) -> String {
        let r = self
            .post(&format!("/instances/{instance}/datasources"), body)
            .await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["dataSourceId"].as_str().unwrap().to_string()
    }
}
