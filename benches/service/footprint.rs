//! Item 4: time from process start to `/ready` answering 200, and idle RSS, against the
//! smallest actix-web process (this binary's `bare-server` mode).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::process::{free_port, proc_status_kb, terminate, wait_ready, Service};
use crate::report::{mib, ratio};
use crate::stats::{median, range};
use crate::Ctx;

/// How long a process idles after `/ready` before its RSS is read.
const SETTLE: Duration = Duration::from_secs(1);

pub async fn run(ctx: &Ctx, runs: usize) -> (Value, String) {
    let mut samples = Vec::new();
    for run in 0..runs {
        let mut pair = [json!(null), json!(null)];
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            pair[side] = if side == 0 {
                let dir = ctx.temp_dir("footprint");
                let s = Service::start(dir.path(), &[], &ctx.log("footprint-service"));
                std::thread::sleep(SETTLE);
                let v = json!({"ready_ms": s.ready_after.as_secs_f64() * 1e3, "idle_rss_kb": s.rss_kb()});
                s.stop();
                v
            } else {
                let port = free_port();
                let started = Instant::now();
                let mut child = Command::new(std::env::current_exe().expect("own path"))
                    .arg("bare-server")
                    .arg(port.to_string())
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("bare server starts");
                let ready = wait_ready(port, started, Duration::from_secs(60), &mut child);
                std::thread::sleep(SETTLE);
                let v = json!({"ready_ms": ready.as_secs_f64() * 1e3, "idle_rss_kb": proc_status_kb(child.id(), "VmRSS")});
                terminate(&mut child, Duration::from_secs(10));
                v
            };
        }
        eprintln!(
            "[footprint] run {}: service {} · baseline {}",
            run + 1,
            pair[0],
            pair[1]
        );
        samples.push(json!({"service": pair[0], "baseline": pair[1]}));
    }
    let col = |side: &str, k: &str| -> Vec<f64> {
        samples
            .iter()
            .map(|s| s[side][k].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let mut md = format!(
        "{runs} runs, alternating. Service: the release binary on a new, empty data directory (creates the database, runs migrations, stores the key). Baseline: a bare actix-web process answering `/ready` (`service bare-server`). Ready = from spawn to the first 200 from `/ready` (polled every 1 ms); idle RSS = VmRSS {} s later.\n\n| figure | service | baseline | ratio service/baseline (min–max) |\n|---|---:|---:|---:|\n",
        SETTLE.as_secs()
    );
    let mut summary = serde_json::Map::new();
    for (k, label) in [
        ("ready_ms", "start → /ready 200"),
        ("idle_rss_kb", "idle RSS"),
    ] {
        let (a, b) = (col("service", k), col("baseline", k));
        let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
        let (lo, hi) = range(&ratios);
        let fmt = |v: f64| {
            if k == "ready_ms" {
                format!("{v:.1} ms")
            } else {
                mib(v)
            }
        };
        md.push_str(&format!(
            "| {label} | {} | {} | {} |\n",
            fmt(median(&a)),
            fmt(median(&b)),
            ratio(median(&ratios), lo, hi)
        ));
        summary.insert(k.into(), json!({"service": median(&a), "baseline": median(&b), "ratio": median(&ratios), "ratio_min": lo, "ratio_max": hi}));
    }
    (json!({"summary": summary, "runs": samples}), md)
}
