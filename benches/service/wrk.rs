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
    /// For a load split over several servers: each wrk's own result (empty otherwise).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parts: Vec<WrkResult>,
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

/// `connections` split over `bases` (one wrk per base, all at once, `path` on each), summed: a
/// client-side load balancer. One wrk per server rather than a proxy in front of them, because
/// a proxy would take CPU from the same two cores and add a hop the baseline does not have.
/// Requests, bytes and errors are sums; the duration is the longest wrk's, so the throughput is
/// at most the sum of the parts'; p50 / p90 / p99 / max are the worst part's (wrk does not
/// export its histogram, so the percentiles cannot be merged exactly).
pub fn run_split(
    script: &Path,
    bases: &[String],
    path: &str,
    connections: u32,
    seconds: u32,
    api_key: &str,
    random_items: Option<(&str, u64)>,
) -> WrkResult {
    let n = bases.len() as u32;
    assert!(
        n >= 1 && connections >= n,
        "{connections} connections over {n} servers"
    );
    let urls: Vec<String> = bases.iter().map(|b| format!("{b}{path}")).collect();
    if urls.len() == 1 {
        return run(
            script,
            &Load {
                url: &urls[0],
                connections,
                seconds,
                api_key,
                random_items,
            },
        );
    }
    let parts: Vec<WrkResult> = std::thread::scope(|scope| {
        let handles: Vec<_> = urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let c = connections / n + u32::from((i as u32) < connections % n);
                scope.spawn(move || {
                    run(
                        script,
                        &Load {
                            url,
                            connections: c,
                            seconds,
                            api_key,
                            random_items,
                        },
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("wrk thread"))
            .collect()
    });
    let sum = |f: fn(&WrkResult) -> u64| parts.iter().map(f).sum::<u64>();
    let max = |f: fn(&WrkResult) -> u64| parts.iter().map(f).max().unwrap_or(0);
    let requests = sum(|r| r.requests);
    WrkResult {
        requests,
        duration_us: max(|r| r.duration_us),
        bytes: sum(|r| r.bytes),
        err_connect: sum(|r| r.err_connect),
        err_read: sum(|r| r.err_read),
        err_write: sum(|r| r.err_write),
        err_status: sum(|r| r.err_status),
        err_timeout: sum(|r| r.err_timeout),
        p50_us: max(|r| r.p50_us),
        p90_us: max(|r| r.p90_us),
        p99_us: max(|r| r.p99_us),
        max_us: max(|r| r.max_us),
        mean_us: parts
            .iter()
            .map(|r| r.mean_us * r.requests as f64)
            .sum::<f64>()
            / requests.max(1) as f64,
        parts,
    }
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
