//! Benchmarks of the service against its ceilings (issue 7). Not part of the test suite.
//!
//! ```text
//! CARGO_TARGET_DIR=target cargo bench --bench service -- [actions] [webhooks] [engine] [footprint]
//!     [--runs N] [--seconds N] [--quick] [--rows-actions N] [--rows-engine N]
//!     [--subscriptions N] [--events N] [--connections 1,16,64]
//!     [--postgres URL] [--replicas N]
//! ```
//! Each item starts the real release binary on 127.0.0.1 over a temporary data directory,
//! generates its own seeded data, measures a baseline in the same run, and writes raw results
//! (`<item>.json`) and a Markdown table (`<item>.md`, all of them in `summary.md`) to
//! `<target>/bench/`. `scripts/bench.sh` installs wrk and runs everything.
//!
//! `--postgres URL` (or `CONNECTOR_BENCH_POSTGRES_URL`) names a PostgreSQL server: `actions`
//! and `webhooks` then run on a fresh database created on it for each server start (dropped
//! afterwards), with `--replicas N` binaries on that one database; their files are named
//! `<item>-postgres-r<N>.*`.

mod actions;
mod api;
mod backend;
mod baseline;
mod datagen;
mod engine;
mod footprint;
mod process;
mod profile;
mod report;
mod stats;
mod webhooks;
mod wrk;

use std::path::PathBuf;

use serde_json::json;

/// Where a run writes and keeps its temporary data.
pub struct Ctx {
    pub out: PathBuf,
    pub work: PathBuf,
}

impl Ctx {
    /// A temporary data directory on the same disk as the target dir (not tmpfs).
    pub fn temp_dir(&self, prefix: &str) -> tempfile::TempDir {
        tempfile::Builder::new()
            .prefix(&format!("{prefix}-"))
            .tempdir_in(&self.work)
            .expect("temp dir")
    }
    /// The log file of a server process.
    pub fn log(&self, name: &str) -> PathBuf {
        self.out.join("logs").join(format!("{name}.log"))
    }
}

struct Args {
    items: Vec<String>,
    /// Items were named on the command line.
    explicit: bool,
    runs: Option<usize>,
    seconds: u32,
    quick: bool,
    rows_actions: Option<u64>,
    rows_engine: Option<u64>,
    subscriptions: Option<u32>,
    events: Option<u32>,
    /// The scenario of `profile` (getitems, filter, getitem).
    scenario: String,
    /// Connection counts of `actions` (default 1, 16, 64).
    connections: Vec<u32>,
    postgres: Option<String>,
    replicas: usize,
}

fn parse_args(raw: &[String]) -> Args {
    let mut a = Args {
        items: Vec::new(),
        explicit: false,
        runs: None,
        seconds: 5,
        quick: false,
        rows_actions: None,
        rows_engine: None,
        subscriptions: None,
        events: None,
        scenario: String::new(),
        connections: vec![1, 16, 64],
        postgres: std::env::var("CONNECTOR_BENCH_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty()),
        replicas: 1,
    };
    let mut it = raw.iter();
    while let Some(arg) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| panic!("{arg} needs a value"))
                .clone()
        };
        match arg.as_str() {
            "--bench" => {}
            "--quick" => a.quick = true,
            "--runs" => a.runs = Some(value().parse().expect("--runs N")),
            "--seconds" => a.seconds = value().parse().expect("--seconds N"),
            "--rows-actions" => a.rows_actions = Some(value().parse().expect("--rows-actions N")),
            "--rows-engine" => a.rows_engine = Some(value().parse().expect("--rows-engine N")),
            "--subscriptions" => {
                a.subscriptions = Some(value().parse().expect("--subscriptions N"))
            }
            "--connections" => {
                a.connections = value()
                    .split(',')
                    .map(|c| c.trim().parse().expect("--connections 1,16,64"))
                    .collect()
            }
            "--events" => a.events = Some(value().parse().expect("--events N")),
            "--postgres" => a.postgres = Some(value()),
            "--replicas" => a.replicas = value().parse().expect("--replicas N"),
            "actions" | "webhooks" | "engine" | "footprint" => a.items.push(arg.clone()),
            "profile" => {
                a.items.push(arg.clone());
                a.scenario = value();
            }
            "all" => a
                .items
                .extend(["footprint", "actions", "engine", "webhooks"].map(String::from)),
            other if other.starts_with("--") => panic!("unknown option {other}"),
            _ => {} // cargo's test-name filter and the like
        }
    }
    a.explicit = !a.items.is_empty();
    if a.items.is_empty() && a.postgres.is_some() {
        // The items that have a PostgreSQL variant.
        a.items = vec!["actions".into(), "webhooks".into()];
    } else if a.items.is_empty() {
        a.items = ["footprint", "actions", "engine", "webhooks"]
            .map(String::from)
            .to_vec();
    }
    a
}

fn target_dir() -> PathBuf {
    // <target>/release/deps/service-<hash>
    let exe = std::env::current_exe().expect("own path");
    exe.ancestors()
        .nth(3)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target"))
}

fn main() {
    let raw: Vec<String> = std::env::args().skip(1).collect();
    match raw.first().map(String::as_str) {
        Some("csv-baseline") => {
            engine::csv_baseline_main(&raw[1], raw.get(2).map_or("parse", String::as_str));
            return;
        }
        Some("bare-server") => {
            let port: u16 = raw[1].parse().expect("port");
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime")
                .block_on(baseline::run_bare_server(port))
                .expect("bare server");
            return;
        }
        _ => {}
    }
    // `cargo test --all-targets` runs this target too (without `--bench`): do nothing then,
    // unless an item was named explicitly.
    let args = parse_args(&raw);
    if !raw.iter().any(|a| a == "--bench") && !args.explicit {
        println!("benches/service: run it with `cargo bench --bench service` (see BENCHMARKS.md)");
        return;
    }
    let out = target_dir().join("bench");
    let ctx = Ctx {
        work: out.join("work"),
        out: out.clone(),
    };
    std::fs::create_dir_all(ctx.out.join("logs")).expect("out dir");
    std::fs::create_dir_all(&ctx.work).expect("work dir");
    let machine = report::machine();
    let command = format!(
        "CARGO_TARGET_DIR=target cargo bench --bench service -- {}",
        raw.iter()
            .filter(|a| *a != "--bench")
            .scan(false, |after_postgres, a| {
                // The server URL may carry a password: the command is printed and stored.
                let shown = if *after_postgres {
                    "URL".to_string()
                } else {
                    a.clone()
                };
                *after_postgres = a == "--postgres";
                Some(shown)
            })
            .collect::<Vec<_>>()
            .join(" ")
    );
    eprintln!("machine: {}", report::machine_line(&machine));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let q = args.quick;
    let backend = backend::Backend::new(args.postgres.clone(), args.replicas);
    if backend.is_postgres() {
        for item in &args.items {
            assert!(
                matches!(item.as_str(), "actions" | "webhooks"),
                "`{item}` runs on SQLite only; with --postgres, name actions and/or webhooks"
            );
        }
    }
    let suffix = backend.suffix();
    let mut summary = format!(
        "# Benchmark summary\n\nMachine: {}\n\nCommand: `{command}`\n\nBackend: {}\n",
        report::machine_line(&machine),
        backend.label()
    );
    for item in &args.items {
        let started = std::time::Instant::now();
        let (raw_result, md, options) = rt.block_on(async {
            match item.as_str() {
                "actions" => {
                    let o = actions::Opts {
                        rows: args.rows_actions.unwrap_or(if q { 10_000 } else { 100_000 }),
                        runs: args.runs.unwrap_or(if q { 1 } else { 5 }),
                        seconds: if q { 2 } else { args.seconds },
                        connections: args.connections.clone(),
                        backend: backend.clone(),
                    };
                    let (r, md) = actions::run(&ctx, &o).await;
                    (r, md, json!({"rows": o.rows, "runs": o.runs, "seconds": o.seconds, "connections": o.connections, "backend": backend.label(), "replicas": backend.replicas}))
                }
                "engine" => {
                    let o = engine::Opts {
                        rows: args.rows_engine.unwrap_or(if q { 50_000 } else { 1_000_000 }),
                        dup_rate: 0.1,
                        runs: args.runs.unwrap_or(if q { 1 } else { 3 }),
                    };
                    let (r, md) = engine::run(&ctx, &o).await;
                    (r, md, json!({"rows": o.rows, "dup_rate": o.dup_rate, "runs": o.runs}))
                }
                "footprint" => {
                    let runs = args.runs.unwrap_or(if q { 2 } else { 10 });
                    let (r, md) = footprint::run(&ctx, runs).await;
                    (r, md, json!({"runs": runs}))
                }
                "webhooks" => {
                    let o = webhooks::Opts {
                        subscriptions: args.subscriptions.unwrap_or(if q { 500 } else { 10_000 }),
                        runs: args.runs.unwrap_or(if q { 1 } else { 5 }),
                        events: args.events.unwrap_or(if q { 50 } else { 1_000 }),
                        concurrency: 64,
                        backend: backend.clone(),
                        stream_rate: if q { 20 } else { 200 },
                        stream_secs: if q { 5 } else { 30 },
                        stream_subscriptions: 50,
                    };
                    let (r, md) = webhooks::run(&ctx, &o).await;
                    (r, md, json!({"subscriptions": o.subscriptions, "runs": o.runs, "events": o.events, "concurrency": o.concurrency, "backend": backend.label(), "replicas": backend.replicas}))
                }
                "profile" if args.scenario == "fanout" => {
                    let n = args.subscriptions.unwrap_or(10_000);
                    let md = profile::run_fanout(&ctx, n).await;
                    (json!(null), md, json!({"subscriptions": n, "scenario": args.scenario}))
                }
                "profile" if args.scenario == "unification" => {
                    let rows = args.rows_engine.unwrap_or(1_000_000);
                    let md = profile::run_unification(&ctx, rows).await;
                    (json!(null), md, json!({"rows": rows, "scenario": args.scenario}))
                }
                "profile" => {
                    let rows = args.rows_actions.unwrap_or(100_000);
                    let md = profile::run(&ctx, rows, &args.scenario, args.seconds).await;
                    (json!(null), md, json!({"rows": rows, "scenario": args.scenario}))
                }
                _ => unreachable!(),
            }
        });
        let elapsed = started.elapsed().as_secs_f64();
        let item = &format!("{item}{suffix}");
        let doc = json!({
            "item": item,
            "machine": machine,
            "command": command,
            "options": options,
            "elapsed_secs": elapsed,
            "loadavg_at_end": report::loadavg(),
            "result": raw_result,
        });
        std::fs::write(
            ctx.out.join(format!("{item}.json")),
            serde_json::to_string_pretty(&doc).expect("json"),
        )
        .expect("write result");
        std::fs::write(ctx.out.join(format!("{item}.md")), &md).expect("write md");
        summary.push_str(&format!(
            "\n## {item}\n\n{md}\n_{:.0} s; load average at the end: {}_\n",
            elapsed,
            report::loadavg()
        ));
        eprintln!("\n{md}");
    }
    std::fs::write(ctx.out.join("summary.md"), &summary).expect("write summary");
    println!("{summary}");
    eprintln!("written: {}", ctx.out.display());
}
