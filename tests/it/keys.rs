//! Key management: `insights-connector keys create|list|revoke` on the database of a running app
//! (its SQLite file, or its PostgreSQL database), what the app answers a key created or revoked
//! behind its back, and on PostgreSQL two apps on one database.

use std::path::Path;
use std::process::Output;
use std::time::{Duration, Instant};

use insights_connector::api::auth::{key_prefix, store_key};
use insights_connector::store::DatabaseUrl;
use reqwest::Method;
use serde_json::Value;

use crate::common::{self, spawn_app, spawn_app_in, spawn_app_with, TestApp, KEY_A, KEY_B};

const KEY_C: &str = "tenant-c-key-0123456789abcdef";

/// Runs `insights-connector keys ARGS` on the database of the app over `dir`: SQLite through
/// `--data-dir`, PostgreSQL through `CONNECTOR_DATABASE_URL`.
async fn keys(dir: &Path, args: &[&str]) -> Output {
    let url = match common::database_for(dir).await {
        DatabaseUrl::Sqlite(_) => None,
        DatabaseUrl::Postgres(url) => Some(url),
    };
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_insights-connector"));
        cmd.arg("keys")
            .args(&args)
            .arg("--data-dir")
            .arg(&dir)
            .env_remove("CONNECTOR_DATABASE_URL")
            .env_remove("CONNECTOR_DATA_DIR")
            .env("RUST_LOG", "error");
        if let Some(url) = url {
            cmd.env("CONNECTOR_DATABASE_URL", url);
        }
        cmd.output().expect("the binary runs")
    })
    .await
    .unwrap()
}

fn stdout_of(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

async fn status(app: &TestApp, key: &str) -> u16 {
    app.send(Method::GET, "/instances", Some(key), None)
        .await
        .status
        .as_u16()
}

/// Polls until the app answers `expected` for `key`; fails after 5 s.
async fn answers_within_5_s(app: &TestApp, key: &str, expected: u16) -> Duration {
    let started = Instant::now();
    loop {
        if status(app, key).await == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still not {expected} after 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The `keys list --tenant` lines, split into their five fields.
async fn list(dir: &Path, tenant: &str) -> Vec<Vec<String>> {
    stdout_of(&keys(dir, &["list", "--tenant", tenant]).await)
        .lines()
        .map(|l| l.split_whitespace().map(String::from).collect())
        .collect()
}

fn is_time(s: &str) -> bool {
    chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

#[tokio::test]
async fn keys_created_listed_and_revoked_through_the_cli_take_effect_on_the_running_app() {
    let app = spawn_app().await;
    let dir = app.dir.path().to_path_buf();

    let created = keys(&dir, &["create", "--tenant", "gamma"]).await;
    let key = stdout_of(&created).trim().to_string();
    assert!(key.starts_with("ick_"), "{key}");
    assert!(
        stderr_of(&created).contains("created key "),
        "{}",
        stderr_of(&created)
    );
    // Unknown keys were refused before; the new one works on its first request.
    assert_eq!(status(&app, "ick_not-a-key-at-all").await, 401);
    assert_eq!(status(&app, &key).await, 200);

    let lines = list(&dir, "gamma").await;
    assert_eq!(lines.len(), 1, "{lines:?}");
    let line = &lines[0];
    assert_eq!(line.len(), 5, "{line:?}");
    let id = line[0].clone();
    assert_eq!(line[1], key[..8]);
    assert!(is_time(&line[2]), "{line:?}");
    assert_eq!(line[4], "-", "no expiry");
    // The last use is written in the background, without the request waiting for it.
    let started = Instant::now();
    let last_used = loop {
        let line = list(&dir, "gamma").await.remove(0);
        if line[3] != "-" {
            break line[3].clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "last use not recorded"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(is_time(&last_used), "{last_used}");

    let json: Value = serde_json::from_str(&stdout_of(
        &keys(&dir, &["list", "--tenant", "gamma", "--json"]).await,
    ))
    .unwrap();
    let rows = json.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["id"], id.as_str());
    assert_eq!(rows[0]["tenant"], "gamma");
    assert_eq!(rows[0]["prefix"], &key[..8]);
    assert!(is_time(rows[0]["createdAt"].as_str().unwrap()));
    assert!(is_time(rows[0]["lastUsedAt"].as_str().unwrap()));
    assert!(rows[0]["expiresAt"].is_null());
    // Bootstrap keys show a shorter prefix (at most a quarter of the key).
    let alpha = list(&dir, "alpha").await;
    assert_eq!(alpha.len(), 1, "{alpha:?}");
    assert_eq!(alpha[0][1], key_prefix(KEY_A));

    // Revoked while the app holds it in its cache: refused within 5 s; other keys unaffected.
    assert_eq!(status(&app, &key).await, 200);
    let revoked = keys(&dir, &["revoke", &id]).await;
    stdout_of(&revoked);
    assert!(
        stderr_of(&revoked).contains("revoked key"),
        "{}",
        stderr_of(&revoked)
    );
    answers_within_5_s(&app, &key, 401).await;
    assert_eq!(status(&app, KEY_A).await, 200);
    assert!(list(&dir, "gamma").await.is_empty());
    assert_eq!(
        stdout_of(&keys(&dir, &["list", "--tenant", "gamma", "--json"]).await).trim(),
        "[]"
    );

    // Unknown and malformed ids: a clear message and a failing exit status, not a crash.
    for unknown in [
        id.as_str(),
        "not-a-key-id",
        "00000000-0000-0000-0000-000000000000",
    ] {
        let out = keys(&dir, &["revoke", unknown]).await;
        assert!(!out.status.success(), "revoking {unknown} succeeded");
        let err = stderr_of(&out);
        assert!(err.contains("no API key has the id"), "{unknown}: {err}");
        assert!(!err.contains("panicked"), "{unknown}: {err}");
    }
}

#[tokio::test]
async fn a_key_stored_while_the_app_runs_is_accepted_at_once() {
    let app = spawn_app().await;
    assert_eq!(status(&app, KEY_C).await, 401);
    let id = store_key(app.engine.store(), "gamma", KEY_C)
        .await
        .unwrap()
        .expect("a new key");
    assert_eq!(status(&app, KEY_C).await, 200, "a refusal is not cached");
    assert!(app.engine.store().revoke_api_key(&id).await.unwrap());
    answers_within_5_s(&app, KEY_C, 401).await;
}

/// Waits, if needed, so that a fixed window of `per` seconds does not end within the next
/// `margin` seconds (the test's requests then all count in one window).
async fn away_from_a_window_end(per: i64, margin: i64) {
    let now = chrono::Utc::now().timestamp();
    let left = per - now.rem_euclid(per);
    if left <= margin {
        tokio::time::sleep(Duration::from_secs(left as u64 + 1)).await;
    }
}

#[tokio::test]
async fn replicas_on_one_database_share_the_rate_limit_and_see_keys_come_and_go() {
    if !common::on_postgres() {
        eprintln!("runs on PostgreSQL only (several replicas on one database)");
        return;
    }
    let limit = |s: &mut insights_connector::configuration::Settings| {
        s.rate_limit = Some("4/3600s".parse().unwrap());
    };
    let a = spawn_app_with(limit).await;
    let b = spawn_app_in(a.dir.clone(), limit).await;
    away_from_a_window_end(3600, 10).await;

    for app in [&a, &b, &a, &b] {
        assert_eq!(status(app, KEY_A).await, 200);
    }
    for app in [&a, &b] {
        let limited = app.send(Method::GET, "/instances", Some(KEY_A), None).await;
        limited.assert_problem(429);
        let retry_after: u64 = limited.header("retry-after").unwrap().parse().unwrap();
        assert!((1..=3600).contains(&retry_after), "{retry_after}");
    }
    // Another key has its own budget.
    assert_eq!(status(&b, KEY_B).await, 200);

    // Created through one replica: the other accepts it at once, though it refused it before.
    assert_eq!(status(&a, KEY_C).await, 401);
    let id = store_key(b.engine.store(), "gamma", KEY_C)
        .await
        .unwrap()
        .expect("a new key");
    assert_eq!(status(&a, KEY_C).await, 200);
    assert_eq!(status(&b, KEY_C).await, 200);
    // Revoked through one replica while both hold it: both refuse it within 5 s.
    assert!(a.engine.store().revoke_api_key(&id).await.unwrap());
    answers_within_5_s(&b, KEY_C, 401).await;
    answers_within_5_s(&a, KEY_C, 401).await;
}
