//! Item 1: GetItems (page of 100, with and without `$filter`) and GetItem under wrk, against a
//! bare actix-web handler returning the same bytes.

use actix_web::web::Bytes;
use serde_json::{json, Value};

use crate::api::Api;
use crate::baseline::{start_fixed, FixedBodies};
use crate::process::{free_port, Service, API_KEY};
use crate::report::{ms, ratio, thousands};
use crate::stats::{median, range};
use crate::wrk::{self, Load, WrkResult};
use crate::{datagen, Ctx};

pub struct Opts {
    pub rows: u64,
    pub runs: usize,
    pub seconds: u32,
    pub connections: Vec<u32>,
}

/// The filter of the filtered scenario: 1 row in 24 has the city, ~80 % of those the age.
pub const FILTER: &str = "City eq 'Berlin' and Age gt 30";

struct Scenario {
    name: &'static str,
    path: String,
    random_items: Option<(String, u64)>,
}

fn encode_query(s: &str) -> String {
    s.replace(' ', "%20").replace('\'', "%27")
}

pub async fn run(ctx: &Ctx, o: &Opts) -> (Value, String) {
    let dir = ctx.temp_dir("actions");
    let gen = datagen::write_people(&dir.path().join("people.csv"), o.rows, 0.0, 7).expect("data");
    eprintln!(
        "[actions] generated {} rows ({} bytes)",
        gen.rows, gen.bytes
    );
    let service = Service::start(dir.path(), &[], &ctx.log("actions-service"));
    let api = Api::new(&service.base);
    let (inst, job) = api.instance_with_people("bench-actions").await;
    eprintln!(
        "[actions] ingested {} rows in {:.1} s",
        o.rows, job.server_secs
    );

    let items = format!("/instances/{inst}/entities/People/items");
    let scenarios = [
        Scenario {
            name: "GetItems",
            path: format!("{items}?$top=100"),
            random_items: None,
        },
        Scenario {
            name: "GetItems $filter",
            path: format!("{items}?$top=100&$filter={}", encode_query(FILTER)),
            random_items: None,
        },
        Scenario {
            name: "GetItem",
            path: format!("{items}/{}", o.rows / 2),
            random_items: Some((format!("{items}/"), o.rows)),
        },
    ];
    let mut bodies = Vec::new();
    for s in &scenarios {
        let (status, text) = api.get_text(&s.path).await;
        assert_eq!(status, 200, "{}: {text}", s.path);
        if s.random_items.is_none() {
            let v: Value = serde_json::from_str(&text).expect("JSON page");
            assert_eq!(v["value"].as_array().map(Vec::len), Some(100), "{}", s.path);
        }
        bodies.push(Bytes::from(text));
    }
    let body_sizes: Vec<usize> = bodies.iter().map(Bytes::len).collect();
    let baseline_port = free_port();
    let baseline = start_fixed(
        FixedBodies {
            page: bodies[0].clone(),
            filtered: bodies[1].clone(),
            item: bodies[2].clone(),
        },
        baseline_port,
    );
    // The same service over the same database with its read cache off: what a read costs when
    // it must go to SQLite (a first read, or a read right after a change).
    let uncached = Service::start(
        dir.path(),
        &["--read-cache-mib", "0"],
        &ctx.log("actions-service-uncached"),
    );
    let bases = [
        service.base.clone(),
        format!("http://127.0.0.1:{baseline_port}"),
        uncached.base.clone(),
    ];
    const SIDES: [&str; 3] = ["service", "baseline", "uncached"];
    let script = ctx.out.join("wrk.lua");
    std::fs::write(&script, wrk::SCRIPT).expect("write wrk.lua");

    let load = |side: usize, s: &Scenario, c: u32, seconds: u32| {
        let url = format!("{}{}", bases[side], s.path);
        let prefixes = s.random_items.as_ref().map(|(p, n)| (p.as_str(), *n));
        wrk::run(
            &script,
            &Load {
                url: &url,
                connections: c,
                seconds,
                api_key: API_KEY,
                random_items: prefixes,
            },
        )
    };
    // Warm both (SQLite page cache, connection pools, allocator).
    for s in &scenarios {
        for side in 0..SIDES.len() {
            load(side, s, 16, 2);
        }
    }
    // results[scenario][connections][side] = runs
    let mut results: Vec<Vec<[Vec<WrkResult>; 3]>> = scenarios
        .iter()
        .map(|_| {
            o.connections
                .iter()
                .map(|_| [Vec::new(), Vec::new(), Vec::new()])
                .collect()
        })
        .collect();
    for run in 0..o.runs {
        for (si, s) in scenarios.iter().enumerate() {
            for (ci, &c) in o.connections.iter().enumerate() {
                // Rotate who goes first so a drift in machine load hits all sides alike.
                let first = (run + si + ci) % SIDES.len();
                let order = [first, (first + 1) % 3, (first + 2) % 3];
                for side in order {
                    let r = load(side, s, c, o.seconds);
                    assert_eq!(
                        r.err_status + r.err_connect,
                        0,
                        "{} c={c} side={side}: errors {r:?}",
                        s.name
                    );
                    eprintln!(
                        "[actions] run {} {:<17} c={:<3} {:<8} {:>9.0} req/s p50 {:>6} µs p99 {:>7} µs errors {}",
                        run + 1,
                        s.name,
                        c,
                        SIDES[side],
                        r.rps(),
                        r.p50_us,
                        r.p99_us,
                        r.errors()
                    );
                    results[si][ci][side].push(r);
                }
            }
        }
    }
    let service_hwm = service.hwm_kb();
    baseline.stop(true).await;
    service.stop();
    uncached.stop();

    let mut rows = Vec::new();
    let mut md = String::new();
    md.push_str(&format!(
        "Entity of {} items; page = `$top=100` ({} bytes), filtered page = `$filter={FILTER}` ({} bytes), GetItem = random ids ({} bytes for id {}). wrk {} s per point, {} runs, threads = min(2, connections).\n\n",
        thousands(o.rows as f64),
        body_sizes[0],
        body_sizes[1],
        body_sizes[2],
        o.rows / 2,
        o.seconds,
        o.runs
    ));
    md.push_str("| action | conns | service req/s | baseline req/s | ratio (min–max) | service p50 / p99 | baseline p50 / p99 | cache off req/s | cache off ratio (min–max) | cache off p50 / p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (si, s) in scenarios.iter().enumerate() {
        for (ci, &c) in o.connections.iter().enumerate() {
            let [ours, base, cold] = &results[si][ci];
            let f = |v: &[WrkResult], g: fn(&WrkResult) -> f64| {
                median(&v.iter().map(g).collect::<Vec<_>>())
            };
            let ratios: Vec<f64> = ours
                .iter()
                .zip(base)
                .map(|(a, b)| a.rps() / b.rps())
                .collect();
            let (lo, hi) = range(&ratios);
            let r = median(&ratios);
            let cold_ratios: Vec<f64> = cold
                .iter()
                .zip(base)
                .map(|(a, b)| a.rps() / b.rps())
                .collect();
            let (cold_lo, cold_hi) = range(&cold_ratios);
            let cold_r = median(&cold_ratios);
            let row = json!({
                "action": s.name,
                "connections": c,
                "service": {"rps": f(ours, WrkResult::rps), "p50_us": f(ours, |r| r.p50_us as f64), "p99_us": f(ours, |r| r.p99_us as f64)},
                "baseline": {"rps": f(base, WrkResult::rps), "p50_us": f(base, |r| r.p50_us as f64), "p99_us": f(base, |r| r.p99_us as f64)},
                "ratio_median": r, "ratio_min": lo, "ratio_max": hi,
                "uncached": {"rps": f(cold, WrkResult::rps), "p50_us": f(cold, |r| r.p50_us as f64), "p99_us": f(cold, |r| r.p99_us as f64),
                    "ratio_median": cold_r, "ratio_min": cold_lo, "ratio_max": cold_hi},
                "runs": {"service": ours, "baseline": base, "uncached": cold},
            });
            md.push_str(&format!(
                "| {} | {c} | {} | {} | {} | {} / {} | {} / {} | {} | {} | {} / {} |\n",
                s.name,
                thousands(row["service"]["rps"].as_f64().unwrap_or(f64::NAN)),
                thousands(row["baseline"]["rps"].as_f64().unwrap_or(f64::NAN)),
                ratio(r, lo, hi),
                ms(row["service"]["p50_us"].as_f64().unwrap_or(f64::NAN)),
                ms(row["service"]["p99_us"].as_f64().unwrap_or(f64::NAN)),
                ms(row["baseline"]["p50_us"].as_f64().unwrap_or(f64::NAN)),
                ms(row["baseline"]["p99_us"].as_f64().unwrap_or(f64::NAN)),
                thousands(row["uncached"]["rps"].as_f64().unwrap_or(f64::NAN)),
                ratio(cold_r, cold_lo, cold_hi),
                ms(row["uncached"]["p50_us"].as_f64().unwrap_or(f64::NAN)),
                ms(row["uncached"]["p99_us"].as_f64().unwrap_or(f64::NAN)),
            ));
            rows.push(row);
        }
    }
    let target = rows
        .iter()
        .filter(|r| {
            r["action"].as_str().unwrap_or("").starts_with("GetItems") && r["connections"] == 64
        })
        .map(|r| {
            format!(
                "{} {:.2}×",
                r["action"].as_str().unwrap_or(""),
                r["ratio_median"].as_f64().unwrap_or(f64::NAN)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    md.push_str(&format!(
        "\nTarget: GetItems ≥ 0.5× baseline at 64 connections → {target}. Service peak RSS during the load: {:.1} MiB.\n",
        service_hwm as f64 / 1024.0
    ));
    (
        json!({"rows": o.rows, "filter": FILTER, "body_bytes": body_sizes, "seconds": o.seconds, "service_peak_rss_kb": service_hwm, "results": rows}),
        md,
    )
}
