//! Item 2: webhook fan-out (10,000 subscriptions, one event) and end-to-end latency of one
//! subscription on an idle service, against a bare HTTP client posting the same payload. On
//! PostgreSQL with N replicas, the subscriptions and the event go through the first replica and
//! every replica's dispatcher delivers from the shared outbox.

use std::time::Duration;

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use crate::api::Api;
use crate::backend::{Backend, Cluster};
use crate::baseline::{unix_micros, Receipt, Sink};
use crate::report::{ms, ratio, thousands};
use crate::stats::{median, percentile, range};
use crate::Ctx;

pub struct Opts {
    pub subscriptions: u32,
    pub runs: usize,
    pub events: u32,
    /// The service's `--delivery-concurrency`, also the baseline client's concurrency.
    pub concurrency: usize,
    pub backend: Backend,
    /// The sustained stream: events per second, for how long, to how many subscriptions each.
    pub stream_rate: u32,
    pub stream_secs: u32,
    pub stream_subscriptions: u32,
}

const TRIGGER: &str = "triggers/full-refresh-completed";

/// Subscribes `urls` (16 at a time); `None` when the service has no trigger endpoints yet.
pub async fn subscribe_all(api: &Api, inst: &str, urls: Vec<String>) -> Option<()> {
    let path = format!("/instances/{inst}/{TRIGGER}");
    let (status, _, body) = api.post(&path, json!({"notificationUrl": urls[0]})).await;
    if status == 404 || status == 405 {
        eprintln!(
            "[webhooks] {path} answered {status}: the trigger endpoints have not landed ({body})"
        );
        return None;
    }
    assert_eq!(status, 201, "subscribe: {body}");
    stream::iter(urls.into_iter().skip(1))
        .map(|url| {
            let api = api.clone();
            let path = path.clone();
            async move {
                api.post_ok(&path, json!({"notificationUrl": url}), 201)
                    .await
            }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    Some(())
}

/// Fires one event (a full refresh of an instance without data sources).
pub async fn fire(api: &Api, inst: &str) {
    let (status, _, body) = api
        .post(&format!("/instances/{inst}/refresh"), Value::Null)
        .await;
    assert_eq!(status, 202, "full refresh: {body}");
}

struct Fanout {
    /// From the event's `occurredAt` (service) or the first send (baseline) to the last receipt.
    total_us: i64,
    first_us: i64,
    distinct: usize,
    duplicates: usize,
}

fn account(receipts: &[Receipt], start_us: i64, expected: u32) -> Fanout {
    let mut hooks: Vec<u32> = receipts.iter().map(|r| r.hook).collect();
    hooks.sort_unstable();
    let all = hooks.len();
    hooks.dedup();
    let last = receipts.iter().map(|r| r.at_us).max().unwrap_or(start_us);
    let first = receipts.iter().map(|r| r.at_us).min().unwrap_or(start_us);
    assert_eq!(
        hooks.len(),
        expected as usize,
        "every subscription got the event (void run otherwise)"
    );
    Fanout {
        total_us: last - start_us,
        first_us: first - start_us,
        distinct: hooks.len(),
        duplicates: all - hooks.len(),
    }
}

pub async fn run(ctx: &Ctx, o: &Opts) -> (Value, String) {
    let sink = Sink::start(2);
    let conc = o.concurrency.to_string();
    let args = [
        "--allow-private-callbacks",
        "--delivery-concurrency",
        conc.as_str(),
    ];

    // --- Fan-out ---
    let backend = &o.backend;
    let suffix = backend.suffix();
    let dir = ctx.temp_dir("webhooks");
    let service = Cluster::start(
        ctx,
        backend,
        dir.path(),
        &args,
        &format!("webhooks-fanout{suffix}"),
    )
    .await;
    let api = Api::new(&service.first().base);
    let inst = api.create_instance("bench-fanout").await;
    let urls: Vec<String> = (0..o.subscriptions).map(|i| sink.url(i)).collect();
    let t = std::time::Instant::now();
    if subscribe_all(&api, &inst, urls).await.is_none() {
        service.stop();
        sink.stop().await;
        return (
            json!({"status": "pending", "reason": "the service has no trigger endpoints yet"}),
            "**Pending**: the trigger/webhook endpoints are not in this build yet; the harness (`webhooks` item) runs once they are.\n".into(),
        );
    }
    eprintln!(
        "[webhooks] {} subscriptions in {:.1} s",
        o.subscriptions,
        t.elapsed().as_secs_f64()
    );
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .expect("client");
    let mut runs = Vec::new();
    let mut payload = actix_web::web::Bytes::new();
    for run in 0..o.runs {
        let mut pair = [None, None];
        let mut cpu: Vec<f64> = Vec::new();
        let mut pg_cpu: Option<f64> = None;
        let order = if run % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            sink.reset();
            if side == 0 {
                let cpu_before = service.cpu_secs();
                let pg_before = service.postgres_cpu_secs();
                fire(&api, &inst).await;
                assert!(
                    sink.wait_for(u64::from(o.subscriptions), Duration::from_secs(900))
                        .await,
                    "fan-out incomplete: {} of {}",
                    sink.count(),
                    o.subscriptions
                );
                // Let stragglers (duplicates) arrive before counting.
                tokio::time::sleep(Duration::from_millis(200)).await;
                let receipts = sink.receipts();
                let occurred = receipts[0]
                    .occurred_at_us
                    .expect("occurredAt in the payload");
                assert!(receipts.iter().all(|r| r.event_id == receipts[0].event_id));
                payload = sink.last_body();
                // CPU each replica spent: shows that every dispatcher took part.
                cpu = service
                    .cpu_secs()
                    .iter()
                    .zip(&cpu_before)
                    .map(|(after, before)| after - before)
                    .collect();
                pg_cpu = service
                    .postgres_cpu_secs()
                    .zip(pg_before)
                    .map(|(after, before)| after - before);
                pair[0] = Some(account(&receipts, occurred, o.subscriptions));
            } else {
                if payload.is_empty() {
                    // The baseline needs the service's payload; it ran first this time only
                    // when run 0 had side 0 first, which it always does.
                    unreachable!("service runs first in run 0");
                }
                let start = unix_micros();
                stream::iter(0..o.subscriptions)
                    .map(|i| {
                        let client = client.clone();
                        let url = sink.url(i);
                        let body = payload.clone();
                        async move {
                            let res = client
                                .post(url)
                                .header("content-type", "application/json")
                                .body(body)
                                .send()
                                .await
                                .expect("baseline POST");
                            assert!(res.status().is_success());
                        }
                    })
                    .buffer_unordered(o.concurrency)
                    .collect::<Vec<_>>()
                    .await;
                sink.wait_for(u64::from(o.subscriptions), Duration::from_secs(60))
                    .await;
                pair[1] = Some(account(&sink.receipts(), start, o.subscriptions));
            }
        }
        let [Some(ours), Some(base)] = pair else {
            unreachable!()
        };
        eprintln!(
            "[webhooks] run {} fan-out service {:.3} s (first after {:.1} ms, {} duplicates, replica CPU s {:.2?}, PostgreSQL CPU s {:.2?}) · baseline {:.3} s",
            run + 1,
            ours.total_us as f64 / 1e6,
            ours.first_us as f64 / 1e3,
            ours.duplicates,
            cpu,
            pg_cpu,
            base.total_us as f64 / 1e6
        );
        runs.push(json!({
            "service": {"total_us": ours.total_us, "first_us": ours.first_us, "distinct": ours.distinct, "duplicates": ours.duplicates, "replica_cpu_secs": cpu, "postgres_cpu_secs": pg_cpu},
            "baseline": {"total_us": base.total_us, "first_us": base.first_us, "distinct": base.distinct, "duplicates": base.duplicates},
        }));
    }
    let fanout_peak = service.hwm_kb();
    service.stop();
    drop(dir);

    // --- Latency of one subscription on an idle service ---
    let dir = ctx.temp_dir("webhooks");
    let service = Cluster::start(
        ctx,
        backend,
        dir.path(),
        &args,
        &format!("webhooks-latency{suffix}"),
    )
    .await;
    let api = Api::new(&service.first().base);
    let inst = api.create_instance("bench-latency").await;
    subscribe_all(&api, &inst, vec![sink.url(0)])
        .await
        .expect("trigger endpoints");
    let mut ours = Vec::new();
    let mut base = Vec::new();
    sink.reset();
    for k in 0..o.events {
        fire(&api, &inst).await;
        assert!(
            sink.wait_for(u64::from(k) + 1, Duration::from_secs(30))
                .await,
            "event {k} not delivered"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for r in sink.receipts() {
        ours.push((r.at_us - r.occurred_at_us.expect("occurredAt")) as f64);
    }
    let body = sink.last_body();
    sink.reset();
    for k in 0..o.events {
        let sent = unix_micros();
        let res = client
            .post(sink.url(0))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("baseline POST");
        assert!(res.status().is_success());
        sink.wait_for(u64::from(k) + 1, Duration::from_secs(5))
            .await;
        base.push((sink.receipts().last().expect("receipt").at_us - sent) as f64);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    service.stop();

    let stream = sustained_stream(ctx, o, &sink, &args).await;
    sink.stop().await;

    let total = |side: &str| -> Vec<f64> {
        runs.iter()
            .map(|r| r[side]["total_us"].as_f64().unwrap_or(f64::NAN))
            .collect()
    };
    let (a, b) = (total("service"), total("baseline"));
    let ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| y / x).collect();
    let (lo, hi) = range(&ratios);
    let n = f64::from(o.subscriptions);
    let replicas = if backend.replicas > 1 {
        format!(
            " {} replicas on one database: subscriptions and the event through the first, every replica's dispatcher delivering.",
            backend.replicas
        )
    } else {
        String::new()
    };
    let mut md = format!(
        "Backend: {}.{replicas} {} subscriptions of `OnFullRefreshCompleted` on one instance, one event per run, {} runs; service with `--delivery-concurrency {}`; baseline = reqwest posting the service's own payload ({} bytes) to the same sink with the same concurrency, no persistence. Service time = event `occurredAt` (stamped just before its commit) → last notification received; baseline time = first send → last received.\n\n| figure | service | baseline | ratio (throughput, min–max) |\n|---|---:|---:|---:|\n",
        backend.label(), thousands(n), o.runs, o.concurrency, payload.len()
    );
    md.push_str(&format!(
        "| fan-out of one event to {} | {:.2} s = {} deliveries/s | {:.2} s = {} deliveries/s | {} (target ≥ 0.5×) |\n",
        thousands(n),
        median(&a) / 1e6,
        thousands(n / (median(&a) / 1e6)),
        median(&b) / 1e6,
        thousands(n / (median(&b) / 1e6)),
        ratio(median(&ratios), lo, hi)
    ));
    md.push_str(&format!(
        "| one subscription, idle: commit → received, p50 / p99 over {} events | {} / {} (target p50 ≤ 10 ms) | {} / {} (send → received) | {:.1}× (p50) |\n",
        o.events,
        ms(percentile(&ours, 50.0)),
        ms(percentile(&ours, 99.0)),
        ms(percentile(&base, 50.0)),
        ms(percentile(&base, 99.0)),
        percentile(&ours, 50.0) / percentile(&base, 50.0)
    ));
    let duplicates: i64 = runs
        .iter()
        .map(|r| r["service"]["duplicates"].as_i64().unwrap_or(0))
        .sum();
    let cpu_line = runs
        .iter()
        .map(|r| {
            let cores: Vec<String> = r["service"]["replica_cpu_secs"]
                .as_array()
                .map(|v| {
                    v.iter()
                        .map(|x| format!("{:.2}", x.as_f64().unwrap_or(f64::NAN)))
                        .collect()
                })
                .unwrap_or_default();
            let pg = r["service"]["postgres_cpu_secs"]
                .as_f64()
                .map_or(String::new(), |p| format!(", PostgreSQL {p:.2}"));
            format!("[{}{pg}]", cores.join(" + "))
        })
        .collect::<Vec<_>>()
        .join(" ");
    md.push_str(&format!(
        "\nCPU seconds per fan-out run (each replica{}): {cpu_line}.\n",
        if backend.is_postgres() {
            ", then the PostgreSQL server"
        } else {
            ""
        }
    ));
    md.push_str(&stream.1);
    md.push_str(&format!(
        "\nDuplicates over all runs: {duplicates}. Service peak RSS during the fan-out{}: {:.1} MiB.\n",
        if backend.replicas > 1 { " (sum over the replicas)" } else { "" },
        fanout_peak as f64 / 1024.0
    ));
    (
        json!({
            "backend": backend.label(), "replicas": backend.replicas,
            "subscriptions": o.subscriptions, "concurrency": o.concurrency, "payload_bytes": payload.len(),
            "fanout": {"runs": runs, "service_total_us_median": median(&a), "baseline_total_us_median": median(&b),
                       "ratio_median": median(&ratios), "ratio_min": lo, "ratio_max": hi, "service_peak_rss_kb": fanout_peak},
            "latency": {"events": o.events,
                        "service_p50_us": percentile(&ours, 50.0), "service_p99_us": percentile(&ours, 99.0),
                        "baseline_p50_us": percentile(&base, 50.0), "baseline_p99_us": percentile(&base, 99.0),
                        "service_us": ours, "baseline_us": base},
            "stream": stream.0,
        }),
        md,
    )
}

/// A sustained stream: `stream_rate` events a second for `stream_secs`, each to the same
/// `stream_subscriptions` subscriptions, fired on a steady clock (each firing its own task, so a
/// slow answer does not hold up the clock; missed ticks are fired late, in a burst). Every
/// notification's commit (`occurredAt`) → received latency is counted.
async fn sustained_stream(ctx: &Ctx, o: &Opts, sink: &Sink, args: &[&str]) -> (Value, String) {
    let dir = ctx.temp_dir("webhooks");
    let service = Cluster::start(
        ctx,
        &o.backend,
        dir.path(),
        args,
        &format!("webhooks-stream{}", o.backend.suffix()),
    )
    .await;
    let api = Api::new(&service.first().base);
    let inst = api.create_instance("bench-stream").await;
    let urls = (0..o.stream_subscriptions).map(|i| sink.url(i)).collect();
    subscribe_all(&api, &inst, urls)
        .await
        .expect("trigger endpoints");
    sink.reset();
    let events = o.stream_rate * o.stream_secs;
    let started = std::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1) / o.stream_rate.max(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut fired = Vec::with_capacity(events as usize);
    for _ in 0..events {
        tick.tick().await;
        let api = api.clone();
        let inst = inst.clone();
        fired.push(tokio::spawn(async move { fire(&api, &inst).await }));
    }
    for f in fired {
        f.await.expect("fire task");
    }
    let firing_secs = started.elapsed().as_secs_f64();
    let expected = u64::from(events) * u64::from(o.stream_subscriptions);
    let complete = sink.wait_for(expected, Duration::from_secs(300)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let drain_secs = started.elapsed().as_secs_f64() - firing_secs;
    let receipts = sink.receipts();
    service.stop();
    drop(dir);
    let mut seen = std::collections::HashSet::new();
    let mut latencies = Vec::with_capacity(receipts.len());
    let mut duplicates = 0u64;
    for r in &receipts {
        if seen.insert((r.event_id.clone(), r.hook)) {
            latencies.push((r.at_us - r.occurred_at_us.expect("occurredAt")) as f64);
        } else {
            duplicates += 1;
        }
    }
    let distinct_events = receipts
        .iter()
        .map(|r| r.event_id.as_str())
        .collect::<std::collections::HashSet<_>>()
        .len();
    let missing = expected.saturating_sub(seen.len() as u64);
    let max = latencies.iter().cloned().fold(0.0, f64::max);
    eprintln!(
        "[webhooks] stream: {events} events in {firing_secs:.1} s, {} of {expected} notifications (complete {complete}), p50 {:.1} ms p99 {:.1} ms max {:.1} ms, {duplicates} duplicates",
        seen.len(),
        percentile(&latencies, 50.0) / 1e3,
        percentile(&latencies, 99.0) / 1e3,
        max / 1e3
    );
    let md = format!(
        "\nSustained stream: {} events/s asked for {} s (fired {events} in {firing_secs:.1} s = {:.0} events/s, each a full refresh queued as a job), each to the same {} subscriptions = {} notifications; drained {drain_secs:.1} s after the last firing. Commit → received: **p50 {} / p99 {}** / max {} (target p99 ≤ 100 ms); {} events seen, {missing} notifications missing, {duplicates} duplicates.\n",
        o.stream_rate,
        o.stream_secs,
        f64::from(events) / firing_secs,
        o.stream_subscriptions,
        thousands(expected as f64),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(max),
        distinct_events,
    );
    (
        json!({"rate": o.stream_rate, "secs": o.stream_secs, "subscriptions": o.stream_subscriptions,
               "events": events, "firing_secs": firing_secs, "drain_secs": drain_secs,
               "received": seen.len(), "missing": missing, "duplicates": duplicates,
               "p50_us": percentile(&latencies, 50.0), "p99_us": percentile(&latencies, 99.0), "max_us": max}),
        md,
    )
}
