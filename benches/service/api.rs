//! A small client for the service's REST API (what a flow or an integrator would call).

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::process::API_KEY;

#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
}

/// A finished job with the server's own timing.
#[derive(Debug, Clone)]
pub struct FinishedJob {
    pub body: Value,
    /// `completedAt - startedAt` as the server recorded them.
    pub server_secs: f64,
    /// From the POST that queued it until the poll that saw it finished (20 ms polling).
    pub wall_secs: f64,
}

impl Api {
    pub fn new(base: &str) -> Self {
        Api {
            http: reqwest::Client::builder()
                .no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(256)
                .build()
                .expect("http client"),
            base: base.to_string(),
        }
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            path.to_string()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends a request; returns status, `Location` and the body (JSON or `Null`).
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (u16, Option<String>, Value) {
        let mut req = self
            .http
            .request(method, self.url(path))
            .header("X-API-Key", API_KEY);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let res = req.send().await.unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let text = res.text().await.unwrap_or_default();
        (
            status,
            location,
            serde_json::from_str(&text).unwrap_or(Value::Null),
        )
    }

    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let res = self
            .http
            .get(self.url(path))
            .header("X-API-Key", API_KEY)
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        let status = res.status().as_u16();
        (status, res.text().await.unwrap_or_default())
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Option<String>, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// POST that must answer `expected`; returns the body.
    pub async fn post_ok(&self, path: &str, body: Value, expected: u16) -> Value {
        let (status, _, body) = self.post(path, body).await;
        assert_eq!(status, expected, "POST {path}: {body}");
        body
    }

    pub async fn create_instance(&self, name: &str) -> String {
        let body = self.post_ok("/instances", json!({"name": name}), 201).await;
        body["instanceId"].as_str().expect("instanceId").to_string()
    }

    /// A CSV data source over a file in the data directory.
    pub async fn create_file_source(
        &self,
        instance: &str,
        entity: &str,
        key_field: &str,
        path: &str,
    ) -> String {
        let body = self
            .post_ok(
                &format!("/instances/{instance}/datasources"),
                json!({"name": entity, "entityName": entity, "format": "csv", "keyField": key_field, "path": path}),
                201,
            )
            .await;
        body["dataSourceId"]
            .as_str()
            .expect("dataSourceId")
            .to_string()
    }

    /// A new instance whose `People` entity is ingested from `people.csv` in the bench tenant's folder
    /// (`files/bench/`) of the data directory
    /// (the generated data set); returns the instance id and the finished refresh job.
    pub async fn instance_with_people(&self, name: &str) -> (String, FinishedJob) {
        let inst = self.create_instance(name).await;
        let ds = self
            .create_file_source(&inst, "People", "Id", "people.csv")
            .await;
        let job = self
            .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
            .await;
        assert_eq!(job.body["status"], "succeeded", "{}", job.body);
        (inst, job)
    }

    /// POSTs an action that answers 202 + Location and polls the job until it has finished.
    pub async fn run_job(&self, path: &str) -> FinishedJob {
        let started = Instant::now();
        let (status, location, body) = self.post(path, Value::Null).await;
        assert_eq!(status, 202, "POST {path}: {body}");
        let location = location.expect("Location of the job");
        loop {
            let (status, _, body) = self.send(reqwest::Method::GET, &location, None).await;
            match status {
                200 => {
                    let wall_secs = started.elapsed().as_secs_f64();
                    let at = |f: &str| {
                        body[f]
                            .as_str()
                            .and_then(|s| s.parse::<DateTime<Utc>>().ok())
                            .expect("job timestamps")
                    };
                    let server_secs = (at("completedAt") - at("startedAt"))
                        .num_microseconds()
                        .unwrap_or(0) as f64
                        / 1e6;
                    return FinishedJob {
                        body,
                        server_secs,
                        wall_secs,
                    };
                }
                202 => tokio::time::sleep(Duration::from_millis(20)).await,
                other => panic!("polling {location}: {other} {body}"),
            }
        }
    }
}
