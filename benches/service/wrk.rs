//! Runs `wrk` (an external HTTP load generator) and reads its summary.

use std::path::Path;
use std::process::Command;

use serde::{Deserialize, Serialize};

pub const SCRIPT: &str = include_str!("wrk.lua");

/// What one wrk run measured.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WrkResult {
    pub requests: u64,
    pub duration_us: u64,
    pub bytes: u64,
    pub err_connect: u64,
    pub err_read: u64,
    pub err_write: u64,
    pub err_status: u64,
    pub err_timeout: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

impl WrkResult {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / (self.duration_us as f64 / 1e6)
    }
    pub fn errors(&self) -> u64 {
        self.err_connect + self.err_read + self.err_write + self.err_status + self.err_timeout
    }
}

/// Where `random_items` points wrk at random item ids: `(path prefix, count)`.
pub struct Load<'a> {
    pub url: &'a str,
    pub connections: u32,
    pub seconds: u32,
    pub api_key: &'a str,
    pub random_items: Option<(&'a str, u64)>,
}

pub fn run(script: &Path, load: &Load) -> WrkResult {
    let threads = load.connections.clamp(1, 2);
    let mut cmd = Command::new("wrk");
    cmd.arg(format!("-t{threads}"))
        .arg(format!("-c{}", load.connections))
        .arg(format!("-d{}s", load.seconds))
        .arg("--timeout")
        .arg("10s")
        .arg("-s")
        .arg(script)
        .arg(load.url)
        .env("BENCH_KEY", load.api_key);
    if let Some((prefix, count)) = load.random_items {
        cmd.env("BENCH_ITEM_PREFIX", prefix)
            .env("BENCH_ITEM_COUNT", count.to_string());
    }
    let out = cmd
        .output()
        .expect("wrk runs (scripts/bench.sh installs it: apt-get install wrk)");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("BENCHJSON "))
        .unwrap_or_else(|| {
            panic!(
                "wrk printed no summary: {stdout}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    serde_json::from_str(line).expect("wrk summary is JSON")
}
