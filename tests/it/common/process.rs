//! The real binary as a child process on a 127.0.0.1 port: for crash tests (`kill -9`) and for
//! several replicas on one database.

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::KEY_A;

/// How long a job may take in these tests.
const JOB_WAIT: Duration = Duration::from_secs(15);

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Server {
    pub port: u16,
    child: std::process::Child,
    pub base: String,
}

impl Server {
    /// The binary on SQLite in `dir/data`.
    pub async fn start(dir: &Path, port: u16, log: &str) -> Self {
        let data = dir.join("data");
        Self::start_with(
            dir,
            port,
            log,
            &[std::ffi::OsStr::new("--data-dir"), data.as_os_str()],
        )
        .await
    }

    /// The binary with `args` after the common ones (the database, say), its log in `dir/log`.
    pub async fn start_with(dir: &Path, port: u16, log: &str, args: &[&std::ffi::OsStr]) -> Self {
        let log = std::fs::File::create(dir.join(log)).unwrap();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_insights-connector"))
            .args(["--bind", &format!("127.0.0.1:{port}")])
            .args(["--api-keys", &format!("alpha:{KEY_A}")])
            .arg("--allow-private-callbacks")
            .args(["--delivery-schedule", "0.2"])
            .args(["--delivery-timeout-secs", "2"])
            .args(["--delivery-max-attempts", "1000"])
            .env("RUST_LOG", "warn")
            .args(args)
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .spawn()
            .expect("binary starts");
        let server = Self {
            child,
            port,
            base: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = reqwest::Client::new();
        loop {
            if let Ok(r) = client.get(format!("{}/health", server.base)).send().await {
                if r.status() == 200 {
                    return server;
                }
            }
            assert!(Instant::now() < deadline, "server did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn kill_9(mut self) {
        // std's Child::kill sends SIGKILL on Unix: no shutdown code runs.
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value, Option<String>) {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .header("X-API-Key", KEY_A)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let location = r
            .headers()
            .get("location")
            .map(|v| v.to_str().unwrap().to_string());
        (status, r.json().await.unwrap_or(Value::Null), location)
    }

    /// Refreshes the data source and waits for the job: its event is committed afterwards.
    pub async fn refresh(&self, instance: &str, ds: &str) {
        let (status, body, location) = self
            .post(
                &format!("/instances/{instance}/datasources/{ds}/refresh"),
                json!({}),
            )
            .await;
        assert_eq!(status, 202, "{body}");
        let job = wait_job(&reqwest::Client::new(), &self.base, &location.unwrap()).await;
        assert_eq!(job["status"], "succeeded", "{job}");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn wait_job(app_client: &reqwest::Client, base: &str, location: &str) -> Value {
    let deadline = Instant::now() + JOB_WAIT;
    let url = if location.starts_with("http") {
        location.to_string()
    } else {
        format!("{base}{location}")
    };
    loop {
        let r = app_client
            .get(&url)
            .header("X-API-Key", KEY_A)
            .send()
            .await
            .unwrap();
        let status = r.status().as_u16();
        let body: Value = r.json().await.unwrap();
        if status == 200 {
            return body;
        }
        assert_eq!(status, 202, "{body}");
        assert!(Instant::now() < deadline, "job never finished: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
