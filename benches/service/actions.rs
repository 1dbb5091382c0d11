//! Item 1: GetItems (page of 100, with and without `$filter`) and GetItem under wrk, against a
//! bare actix-web handler returning the same bytes. On PostgreSQL with N replicas, the load is
//! split over the replicas (one wrk each), and the baseline gets the same split.

use actix_web::web::Bytes;
use serde_json::{json, Value};

use crate::api::Api;
use crate::backend::{Backend, Cluster};
use crate::baseline::{start_fixed, FixedBodies};
use crate::process::{free_port, API_KEY};
use crate::report::{ms, ratio, thousands};
use crate::stats::{median, range};
use crate::wrk::{self, WrkResult};
use crate::{datagen, Ctx};

pub struct Opts {
    pub rows: u64,
    pub runs: usize,
    pub seconds: u32,
    pub connections: Vec<u32>,
    pub backend: Backend,
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
    let folder = dir.path().join("files").join("bench");
    std::fs::create_dir_all(&folder).expect("tenant folder");
    let gen = datagen::write_people(&folder.join("people.csv"), o.rows, 0.0, 7).expect("data");
    eprintln!(
        "[actions] generated {} rows ({} bytes)",
        gen.rows, gen.bytes
    );
    let backend = &o.backend;
    let suffix = backend.suffix();
    let service = Cluster::start(
        ctx,
        backend,
        dir.path(),
        &[],
        &format!("actions-service{suffix}"),
    )
    .await;
    let api = Api::new(&service.first().base);
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
    // On SQLite, the same service over the same database with its read cache off: what a read
    // costs when it must go to SQLite (a first read, or a read right after a change). On
    // PostgreSQL the cache is off anyway (another replica's write would not invalidate it), so
    // that side would measure the service side again.
    let uncached = if backend.is_postgres() {
        None
    } else {
        Some(
            Cluster::start(
                ctx,
                backend,
                dir.path(),
                &["--read-cache-mib", "0"],
                "actions-service-uncached",
            )
            .await,
        )
    };
    // The baseline is one process however many replicas there are (it has no database to
    // share), driven by the same number of wrk processes with the same connection split, so
    // both sides pay the same load-generator overhead.
    let baseline_base = format!("http://127.0.0.1:{baseline_port}");
    let mut sides: Vec<(&str, Vec<String>)> = vec![
        ("service", service.bases()),
        ("baseline", vec![baseline_base; backend.replicas]),
    ];
    if let Some(u) = &uncached {
        sides.push(("uncached", u.bases()));
    }
    let script = ctx.out.join("wrk.lua");
    std::fs::write(&script, wrk::SCRIPT).expect("write wrk.lua");

    let load = |side: usize, s: &Scenario, c: u32, seconds: u32| {
        let prefixes = s.random_items.as_ref().map(|(p, n)| (p.as_str(), *n));
        wrk::run_split(
            &script,
            &sides[side].1,
            &s.path,
            c,
            seconds,
            API_KEY,
            prefixes,
        )
    };
    // Warm every side (page caches, connection pools, allocator).
    for s in &scenarios {
        for side in 0..sides.len() {
            load(side, s, 16.max(backend.replicas as u32), 2);
        }
    }
    // results[scenario][connections][side] = runs
    let mut results: Vec<Vec<Vec<Vec<WrkResult>>>> = scenarios
        .iter()
        .map(|_| {
            o.connections
                .iter()
                .map(|_| vec![Vec::new(); sides.len()])
                .collect()
        })
        .collect();
    // cpu[scenario][connections] = [wall s, service CPU s, PostgreSQL CPU s] of the service side
    let mut cpu = vec![vec![[0.0f64; 3]; o.connections.len()]; scenarios.len()];
    let cpu_of_service = |c: &Cluster| c.cpu_secs().iter().sum::<f64>();
    for run in 0..o.runs {
        for (si, s) in scenarios.iter().enumerate() {
            for (ci, &c) in o.connections.iter().enumerate() {
                // Rotate who goes first so a drift in machine load hits all sides alike.
                let first = (run + si + ci) % sides.len();
                let order = (0..sides.len()).map(|k| (first + k) % sides.len());
                for side in order {
                    let before = (cpu_of_service(&service), service.postgres_cpu_secs());
                    let started = std::time::Instant::now();
                    let r = load(side, s, c, o.seconds);
                    if side == 0 {
                        // Where the two cores went while the service side was loaded.
                        let wall = started.elapsed().as_secs_f64();
                        let acc = &mut cpu[si][ci];
                        acc[0] += wall;
                        acc[1] += cpu_of_service(&service) - before.0;
                        if let (Some(a), Some(b)) = (service.postgres_cpu_secs(), before.1) {
                            acc[2] += a - b;
                        }
                    }
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
                        sides[side].0,
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
    let deep = deep_pages(
        &api,
        &items,
        o,
        &script,
        &sides[if uncached.is_some() { 2 } else { 0 }].1,
    )
    .await;
    let service_hwm = service.hwm_kb();
    let pg_cpu_known = service.postgres_cpu_secs().is_some();
    baseline.stop(true).await;
    service.stop();
    let uncached_present = uncached.is_some();
    if let Some(u) = uncached {
        u.stop();
    }

    let mut rows = Vec::new();
    let mut md = String::new();
    let split = if backend.replicas > 1 {
        format!(
            " The load is split over the {n} replicas: one wrk per replica, connections divided evenly, throughput summed, p50 / p99 the worst wrk's; the baseline (one process) gets the same {n} wrks.",
            n = backend.replicas
        )
    } else {
        String::new()
    };
    md.push_str(&format!(
        "Backend: {}. Entity of {} items; page = `$top=100` ({} bytes), filtered page = `$filter={FILTER}` ({} bytes), GetItem = random ids ({} bytes for id {}). wrk {} s per point, {} runs, threads = min(2, connections).{split}\n\n",
        backend.label(),
        thousands(o.rows as f64),
        body_sizes[0],
        body_sizes[1],
        body_sizes[2],
        o.rows / 2,
        o.seconds,
        o.runs
    ));
    let has_cold = uncached_present;
    md.push_str("| action | conns | service req/s | baseline req/s | ratio (min–max) | service p50 / p99 | baseline p50 / p99 | CPU: service / PostgreSQL (cores) |");
    md.push_str(if has_cold {
        " cache off req/s | cache off ratio (min–max) | cache off p50 / p99 |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    } else {
        "\n|---|---:|---:|---:|---:|---:|---:|---:|\n"
    });
    for (si, s) in scenarios.iter().enumerate() {
        for (ci, &c) in o.connections.iter().enumerate() {
            let sides_runs = &results[si][ci];
            let (ours, base) = (&sides_runs[0], &sides_runs[1]);
            let f = |v: &[WrkResult], g: fn(&WrkResult) -> f64| {
                median(&v.iter().map(g).collect::<Vec<_>>())
            };
            let summary = |v: &[WrkResult]| json!({"rps": f(v, WrkResult::rps), "p50_us": f(v, |r| r.p50_us as f64), "p99_us": f(v, |r| r.p99_us as f64)});
            let against_base = |v: &[WrkResult]| {
                let ratios: Vec<f64> = v.iter().zip(base).map(|(a, b)| a.rps() / b.rps()).collect();
                let (lo, hi) = range(&ratios);
                (median(&ratios), lo, hi)
            };
            let (r, lo, hi) = against_base(ours);
            let mut row = json!({
                "action": s.name,
                "connections": c,
                "service": summary(ours),
                "baseline": summary(base),
                "ratio_median": r, "ratio_min": lo, "ratio_max": hi,
                "runs": {"service": ours, "baseline": base},
            });
            let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
            let [wall, service_cpu, pg_cpu] = cpu[si][ci];
            let (service_cores, pg_cores) =
                (service_cpu / wall, pg_cpu_known.then_some(pg_cpu / wall));
            row["service"]["cpu_cores"] = json!(service_cores);
            row["service"]["postgres_cpu_cores"] = json!(pg_cores);
            md.push_str(&format!(
                "| {} | {c} | {} | {} | {} | {} / {} | {} / {} | {service_cores:.2} / {} |",
                s.name,
                thousands(num(&row["service"]["rps"])),
                thousands(num(&row["baseline"]["rps"])),
                ratio(r, lo, hi),
                ms(num(&row["service"]["p50_us"])),
                ms(num(&row["service"]["p99_us"])),
                ms(num(&row["baseline"]["p50_us"])),
                ms(num(&row["baseline"]["p99_us"])),
                pg_cores.map_or("–".into(), |p| format!("{p:.2}")),
            ));
            if let Some(cold) = sides_runs.get(2) {
                let (cold_r, cold_lo, cold_hi) = against_base(cold);
                let mut u = summary(cold);
                u["ratio_median"] = json!(cold_r);
                u["ratio_min"] = json!(cold_lo);
                u["ratio_max"] = json!(cold_hi);
                md.push_str(&format!(
                    " {} | {} | {} / {} |",
                    thousands(num(&u["rps"])),
                    ratio(cold_r, cold_lo, cold_hi),
                    ms(num(&u["p50_us"])),
                    ms(num(&u["p99_us"])),
                ));
                row["uncached"] = u;
                row["runs"]["uncached"] = json!(cold);
            }
            md.push('\n');
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
        "\nTarget: GetItems ≥ 0.5× baseline at 64 connections → {target}. Service peak RSS during the load{}: {:.1} MiB.\n",
        if backend.replicas > 1 { " (sum over the replicas)" } else { "" },
        service_hwm as f64 / 1024.0
    ));
    md.push_str(&deep.1);
    (
        json!({"backend": backend.label(), "replicas": backend.replicas, "rows": o.rows, "filter": FILTER, "body_bytes": body_sizes, "seconds": o.seconds, "service_peak_rss_kb": service_hwm, "results": rows, "deep_pages": deep.0}),
        md,
    )
}

/// Deep pages, read with the cache off (SQLite's `--read-cache-mib 0` service; PostgreSQL's
/// service, whose cache is off): page 1 against page 1,000 reached by following `nextLink` 999
/// times (the link as the service gives it, taken as opaque) and against `$skip=99900`.
/// Cost of a page = page 1's req/s ÷ its req/s, per run.
async fn deep_pages(
    api: &Api,
    items: &str,
    o: &Opts,
    script: &std::path::Path,
    bases: &[String],
) -> (Value, String) {
    // Page 1,000 of 100,000 items; with fewer items (`--quick`), the last page.
    let deepest = (o.rows / 100).clamp(2, 1_000);
    let first = format!("{items}?$top=100");
    let mut link = first.clone();
    for _ in 1..deepest {
        let (status, text) = api.get_text(&link).await;
        assert_eq!(status, 200, "{link}: {text}");
        let page: Value = serde_json::from_str(&text).expect("JSON page");
        let next = page["nextLink"].as_str().expect("a next page");
        link = next[next.find("/instances/").expect("a path in nextLink")..].to_string();
    }
    let skip = (deepest - 1) * 100;
    let pages = [
        ("page 1".to_string(), first),
        (
            format!("page {} by nextLink", thousands(deepest as f64)),
            link,
        ),
        (
            format!("page {} by $skip={skip}", thousands(deepest as f64)),
            format!("{items}?$top=100&$skip={skip}"),
        ),
    ];
    for (name, path) in &pages {
        let (status, text) = api.get_text(path).await;
        assert_eq!(status, 200, "{name}: {text}");
        let page: Value = serde_json::from_str(&text).expect("JSON page");
        assert_eq!(page["value"].as_array().map(Vec::len), Some(100), "{name}");
    }
    // results[connections][page] = runs
    let mut results = vec![vec![Vec::new(); pages.len()]; o.connections.len()];
    for run in 0..o.runs {
        for (ci, &c) in o.connections.iter().enumerate() {
            for k in 0..pages.len() {
                let pi = (run + k) % pages.len();
                let r = wrk::run_split(script, bases, &pages[pi].1, c, o.seconds, API_KEY, None);
                assert_eq!(r.err_status + r.err_connect, 0, "{}: {r:?}", pages[pi].0);
                eprintln!(
                    "[actions] run {} {:<26} c={c:<3} {:>9.0} req/s p50 {:>6} µs p99 {:>7} µs",
                    run + 1,
                    pages[pi].0,
                    r.rps(),
                    r.p50_us,
                    r.p99_us
                );
                results[ci][pi].push(r);
            }
        }
    }
    let mut md = format!(
        "\nDeep pages (cache off; page {} of an entity of {} items; {} runs): cost = page 1's req/s ÷ the page's, per run (target ≤ 2 for page 1,000 of 100,000).\n\n| page | conns | req/s | p50 / p99 | cost vs page 1 (min–max) |\n|---|---:|---:|---:|---:|\n",
        thousands(deepest as f64),
        thousands(o.rows as f64),
        o.runs
    );
    let mut rows = Vec::new();
    for (ci, &c) in o.connections.iter().enumerate() {
        for (pi, (name, path)) in pages.iter().enumerate() {
            let runs = &results[ci][pi];
            let costs: Vec<f64> = results[ci][0]
                .iter()
                .zip(runs)
                .map(|(p1, p)| p1.rps() / p.rps())
                .collect();
            let (lo, hi) = range(&costs);
            let rps = median(&runs.iter().map(WrkResult::rps).collect::<Vec<_>>());
            let p50 = median(&runs.iter().map(|r| r.p50_us as f64).collect::<Vec<_>>());
            let p99 = median(&runs.iter().map(|r| r.p99_us as f64).collect::<Vec<_>>());
            md.push_str(&format!(
                "| {name} | {c} | {} | {} / {} | {} |\n",
                thousands(rps),
                ms(p50),
                ms(p99),
                ratio(median(&costs), lo, hi)
            ));
            rows.push(json!({"page": name, "path": path, "connections": c, "rps": rps, "p50_us": p50, "p99_us": p99,
                             "cost_median": median(&costs), "cost_min": lo, "cost_max": hi, "runs": runs}));
        }
    }
    (json!(rows), md)
}
