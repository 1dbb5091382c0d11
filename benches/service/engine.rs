//! Item 3: ingest, unification, segment and measure refresh over a generated 1,000,000-row
//! file, each stage in a fresh server process so its peak RSS (VmHWM) is its own.

use std::path::Path;
use std::process::Command;

use serde_json::{json, Value};

use crate::api::Api;
use crate::process::Service;
use crate::report::{mib, ratio, thousands};
use crate::stats::{median, range};
use crate::{datagen, Ctx};

pub struct Opts {
    pub rows: u64,
    pub dup_rate: f64,
    pub runs: usize,
}

pub const SEGMENT_FILTER: &str = "country eq 'DE'";

pub fn unification_config() -> Value {
    json!({
        "sources": [{
            "entityName": "People",
            "fields": {"email": "Email", "firstName": "FirstName", "lastName": "LastName",
                       "phone": "Phone", "city": "City", "country": "Country", "totalSpend": "TotalSpend"},
            "priority": 1
        }],
        "rules": [
            {"name": "same email", "conditions": [{"field": "email", "normalization": "email", "precision": "exact"}]},
            {"name": "same phone, similar last name", "conditions": [
                {"field": "phone", "normalization": "phone", "precision": "exact"},
                {"field": "lastName", "normalization": "case-insensitive", "precision": "fuzzy", "threshold": 0.9}
            ]}
        ],
        "merge": {"policy": "sourcePriority"}
    })
}

/// The same sources with a scored (Fellegi–Sunter) rule instead of the deterministic rules.
pub fn scored_unification_config() -> Value {
    let mut config = unification_config();
    config["rules"] = json!([]);
    config["scoredRules"] = json!([{
        "name": "scored",
        "blocking": [["email"], ["phone"]],
        "comparisons": [
            {"field": "email", "normalization": "email", "comparator": "jaroWinkler", "levels": [0.95]},
            {"field": "firstName", "normalization": "case-insensitive", "comparator": "jaroWinkler", "levels": [0.9], "alsoAgainst": ["lastName"]},
            {"field": "lastName", "normalization": "case-insensitive", "comparator": "jaroWinkler", "levels": [0.9], "alsoAgainst": ["firstName"]},
            {"field": "phone", "normalization": "phone", "comparator": "damerauLevenshtein", "levels": [1.0]},
            {"field": "city", "normalization": "case-insensitive", "comparator": "exact"}
        ],
        "threshold": {"matchProbability": 0.9}
    }]);
    config
}

/// Runs this bench binary's `csv-baseline` mode in a child process (so its peak RSS is its own).
fn csv_baseline(file: &Path, mode: &str) -> Value {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .arg("csv-baseline")
        .arg(file)
        .arg(mode)
        .output()
        .expect("csv baseline runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("csv baseline prints JSON")
}

/// `csv-baseline FILE MODE`: reads and parses FILE with the `csv` crate alone (`parse`), or
/// also builds and serializes each row as a JSON object (`json`, for context).
pub fn csv_baseline_main(file: &str, mode: &str) {
    let started = std::time::Instant::now();
    let mut rdr = csv::ReaderBuilder::new()
        .buffer_capacity(256 * 1024)
        .from_path(file)
        .expect("open csv");
    let headers = rdr.headers().expect("header").clone();
    let mut record = csv::StringRecord::new();
    let mut rows = 0u64;
    let mut bytes = 0usize;
    while rdr.read_record(&mut record).expect("valid csv") {
        rows += 1;
        if mode == "json" {
            let mut obj = serde_json::Map::new();
            for (h, v) in headers.iter().zip(record.iter()) {
                obj.insert(h.to_string(), Value::String(v.to_string()));
            }
            bytes += Value::Object(obj).to_string().len();
        } else {
            bytes += record.as_slice().len();
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let hwm = crate::process::proc_status_kb(std::process::id(), "VmHWM");
    println!(
        "{}",
        json!({"rows": rows, "secs": secs, "rows_per_sec": rows as f64 / secs, "peak_rss_kb": hwm, "bytes": bytes})
    );
}

struct Stage {
    secs: f64,
    /// CPU seconds the server process used during the job.
    cpu_secs: f64,
    wall_secs: f64,
    peak_kb: u64,
    idle_kb: u64,
    ready_secs: f64,
    job: Value,
}

pub async fn run(ctx: &Ctx, o: &Opts) -> (Value, String) {
    let file = ctx.work.join(format!("engine-people-{}.csv", o.rows));
    let t = std::time::Instant::now();
    let gen = datagen::write_people(&file, o.rows, o.dup_rate, 11).expect("data");
    eprintln!(
        "[engine] generated {} rows, {} duplicates, {} bytes in {:.1} s",
        gen.rows,
        gen.duplicates,
        gen.bytes,
        t.elapsed().as_secs_f64()
    );
    let expected_profiles = gen.rows - gen.duplicates;
    let mut runs = Vec::new();
    for run in 0..o.runs {
        let base_parse = csv_baseline(&file, "parse");
        let base_json = csv_baseline(&file, "json");
        eprintln!(
            "[engine] run {} csv baseline {:.0} rows/s (csv+json {:.0} rows/s)",
            run + 1,
            base_parse["rows_per_sec"].as_f64().unwrap_or(0.0),
            base_json["rows_per_sec"].as_f64().unwrap_or(0.0)
        );
        let dir = ctx.temp_dir("engine");
        let data = dir.path().join("files").join("bench").join("people.csv");
        std::fs::create_dir_all(data.parent().expect("a folder")).expect("tenant folder");
        if std::fs::hard_link(&file, &data).is_err() {
            std::fs::copy(&file, &data).expect("copy data file");
        }
        let stage = |name: &str| ctx.log(&format!("engine-{name}-{run}"));

        // 1. Ingest (and the cheap setup of the later stages).
        let s = Service::start(dir.path(), &[], &stage("ingest"));
        let api = Api::new(&s.base);
        let inst = api.create_instance("bench-engine").await;
        let ds = api
            .create_file_source(&inst, "People", "Id", "people.csv")
            .await;
        let (st, _, body) = api
            .send(
                reqwest::Method::PUT,
                &format!("/instances/{inst}/unification"),
                Some(unification_config()),
            )
            .await;
        assert_eq!(st, 200, "{body}");
        let seg = api
            .post_ok(
                &format!("/instances/{inst}/segments"),
                json!({"name": "DE", "filter": SEGMENT_FILTER}),
                201,
            )
            .await["segmentId"]
            .as_str()
            .unwrap()
            .to_string();
        let m_count = api
            .post_ok(
                &format!("/instances/{inst}/measures"),
                json!({"name": "Customers in DE", "entityName": "Customer", "aggregate": "count", "filter": SEGMENT_FILTER}),
                201,
            )
            .await["measureId"]
            .as_str()
            .unwrap()
            .to_string();
        let m_sum = api
            .post_ok(
                &format!("/instances/{inst}/measures"),
                json!({"name": "Total spend", "entityName": "People", "aggregate": "sum", "field": "TotalSpend"}),
                201,
            )
            .await["measureId"]
            .as_str()
            .unwrap()
            .to_string();
        let idle = s.rss_kb();
        let cpu = s.cpu_secs();
        let job = api
            .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
            .await;
        assert_eq!(job.body["status"], "succeeded", "{}", job.body);
        let ingest = Stage {
            cpu_secs: s.cpu_secs() - cpu,
            secs: job.server_secs,
            wall_secs: job.wall_secs,
            peak_kb: s.hwm_kb(),
            idle_kb: idle,
            ready_secs: s.ready_after.as_secs_f64(),
            job: job.body,
        };
        s.stop();
        let db_bytes = std::fs::metadata(dir.path().join("connector.db"))
            .map(|m| m.len())
            .unwrap_or(0);
        eprintln!(
            "[engine] run {} ingest {:.1} s ({:.1} CPU s), peak {} kB",
            run + 1,
            ingest.secs,
            ingest.cpu_secs,
            ingest.peak_kb
        );

        // A fresh process per stage: its VmHWM is that stage's peak.
        let in_fresh = |name: &'static str, path: String| {
            let log = stage(name);
            let dir = dir.path().to_path_buf();
            async move {
                let s = Service::start(&dir, &[], &log);
                let api = Api::new(&s.base);
                let idle = s.rss_kb();
                let cpu = s.cpu_secs();
                let job = api.run_job(&path).await;
                assert_eq!(job.body["status"], "succeeded", "{name}: {}", job.body);
                let out = Stage {
                    cpu_secs: s.cpu_secs() - cpu,
                    secs: job.server_secs,
                    wall_secs: job.wall_secs,
                    peak_kb: s.hwm_kb(),
                    idle_kb: idle,
                    ready_secs: s.ready_after.as_secs_f64(),
                    job: job.body,
                };
                s.stop();
                eprintln!(
                    "[engine] run {} {name} {:.2} s ({:.1} CPU s), peak {} kB (ready after {:.2} s)",
                    run + 1,
                    out.secs,
                    out.cpu_secs,
                    out.peak_kb,
                    out.ready_secs
                );
                out
            }
        };
        let unify = in_fresh("unification", format!("/instances/{inst}/unification/run")).await;
        let profiles = unify.job["result"]["unifiedProfiles"].as_u64().unwrap_or(0);
        // The scored rule over the same records (then the deterministic rules again, so the
        // segment and measures below see the same profiles as before).
        let set_config = |config: Value| {
            let log = stage("config");
            let dir = dir.path().to_path_buf();
            let inst = inst.clone();
            async move {
                let s = Service::start(&dir, &[], &log);
                let api = Api::new(&s.base);
                let (st, _, body) = api
                    .send(
                        reqwest::Method::PUT,
                        &format!("/instances/{inst}/unification"),
                        Some(config),
                    )
                    .await;
                assert_eq!(st, 200, "{body}");
                s.stop();
            }
        };
        set_config(scored_unification_config()).await;
        let unify_scored = in_fresh(
            "unification-scored",
            format!("/instances/{inst}/unification/run"),
        )
        .await;
        set_config(unification_config()).await;
        let _ = in_fresh("unification", format!("/instances/{inst}/unification/run")).await;
        let segment = in_fresh(
            "segment",
            format!("/instances/{inst}/segments/{seg}/refresh"),
        )
        .await;
        let measure_count = in_fresh(
            "measure-count",
            format!("/instances/{inst}/measures/{m_count}/refresh"),
        )
        .await;
        let measure_sum = in_fresh(
            "measure-sum",
            format!("/instances/{inst}/measures/{m_sum}/refresh"),
        )
        .await;
        let st = |s: &Stage| json!({"secs": s.secs, "cpu_secs": s.cpu_secs, "wall_secs": s.wall_secs, "peak_rss_kb": s.peak_kb, "idle_rss_kb": s.idle_kb, "ready_secs": s.ready_secs, "job": s.job});
        runs.push(json!({
            "csv_baseline": base_parse,
            "csv_json_baseline": base_json,
            "db_bytes": db_bytes,
            "profiles": profiles,
            "ingest": st(&ingest),
            "unification": st(&unify),
            "unification_scored": st(&unify_scored),
            "segment": st(&segment),
            "measure_count": st(&measure_count),
            "measure_sum": st(&measure_sum),
        }));
        drop(dir);
    }

    // Summary.
    let col = |f: &dyn Fn(&Value) -> f64| runs.iter().map(f).collect::<Vec<f64>>();
    let rows = o.rows as f64;
    let ingest_rps = col(&|r| rows / r["ingest"]["secs"].as_f64().unwrap_or(f64::NAN));
    let base_rps = col(&|r| {
        r["csv_baseline"]["rows_per_sec"]
            .as_f64()
            .unwrap_or(f64::NAN)
    });
    let json_rps = col(&|r| {
        r["csv_json_baseline"]["rows_per_sec"]
            .as_f64()
            .unwrap_or(f64::NAN)
    });
    let ratios: Vec<f64> = ingest_rps
        .iter()
        .zip(&base_rps)
        .map(|(a, b)| a / b)
        .collect();
    let (lo, hi) = range(&ratios);
    let secs = |k: &str| median(&col(&|r| r[k]["secs"].as_f64().unwrap_or(f64::NAN)));
    let peak = |k: &str| median(&col(&|r| r[k]["peak_rss_kb"].as_f64().unwrap_or(f64::NAN)));
    let profiles = median(&col(&|r| r["profiles"].as_f64().unwrap_or(f64::NAN)));
    let members = median(&col(&|r| {
        r["segment"]["job"]["result"]["memberCount"]
            .as_f64()
            .unwrap_or(f64::NAN)
    }));
    let ready_big = median(&col(&|r| {
        r["unification"]["ready_secs"].as_f64().unwrap_or(f64::NAN)
    }));
    let idle_big = median(&col(&|r| {
        r["unification"]["idle_rss_kb"].as_f64().unwrap_or(f64::NAN)
    }));
    let mut md = String::new();
    md.push_str(&format!(
        "Generated file: {} rows, {} duplicates ({:.1} %), {:.0} MiB; {} runs; each stage in a fresh server process (peak = its VmHWM). Times are the job's `completedAt − startedAt`.\n\n",
        thousands(rows), thousands(gen.duplicates as f64), 100.0 * gen.duplicates as f64 / rows, gen.bytes as f64 / 1048576.0, o.runs
    ));
    md.push_str("| stage | service | baseline | ratio (min–max) | service peak RSS | baseline peak RSS |\n|---|---:|---:|---:|---:|---:|\n");
    md.push_str(&format!(
        "| ingest CSV → items | {} rows/s ({:.1} s) | {} rows/s (csv crate, parse only) | {} | {} | {} |\n",
        thousands(median(&ingest_rps)), secs("ingest"), thousands(median(&base_rps)), ratio(median(&ratios), lo, hi),
        mib(peak("ingest")), mib(median(&col(&|r| r["csv_baseline"]["peak_rss_kb"].as_f64().unwrap_or(f64::NAN))))
    ));
    md.push_str(&format!(
        "| (context) csv + JSON object per row | | {} rows/s | {:.2}× | | {} |\n",
        thousands(median(&json_rps)),
        median(&ingest_rps) / median(&json_rps),
        mib(median(&col(&|r| r["csv_json_baseline"]["peak_rss_kb"]
            .as_f64()
            .unwrap_or(f64::NAN))))
    ));
    md.push_str(&format!(
        "| unification ({} records → {} profiles, expected {}) | {:.1} s (target < 20 s) | – | – | {} | – |\n",
        thousands(rows), thousands(profiles), thousands(expected_profiles as f64), secs("unification"), mib(peak("unification"))
    ));
    let scored_profiles = median(&col(&|r| {
        r["unification_scored"]["job"]["result"]["unifiedProfiles"]
            .as_f64()
            .unwrap_or(f64::NAN)
    }));
    md.push_str(&format!(
        "| unification, scored rule ({} records → {} profiles) | {:.1} s (target < 20 s) | – | – | {} (target ≤ 1 GiB) | – |\n",
        thousands(rows), thousands(scored_profiles), secs("unification_scored"), mib(peak("unification_scored"))
    ));
    md.push_str(&format!(
        "| segment refresh `{SEGMENT_FILTER}` over {} profiles ({} members) | {:.2} s | – | – | {} | – |\n",
        thousands(profiles), thousands(members), secs("segment"), mib(peak("segment"))
    ));
    md.push_str(&format!(
        "| measure refresh: count of Customer with `{SEGMENT_FILTER}` | {:.2} s | – | – | {} | – |\n",
        secs("measure_count"), mib(peak("measure_count"))
    ));
    md.push_str(&format!(
        "| measure refresh: sum of People.TotalSpend over {} rows | {:.2} s | – | – | {} | – |\n",
        thousands(rows),
        secs("measure_sum"),
        mib(peak("measure_sum"))
    ));
    md.push_str(&format!(
        "\nDatabase after ingest: {:.0} MiB. A restart over the ingested database was ready after {:.2} s with {} idle RSS.\n",
        median(&col(&|r| r["db_bytes"].as_f64().unwrap_or(f64::NAN))) / 1048576.0,
        ready_big,
        mib(idle_big)
    ));
    (
        json!({"rows": o.rows, "duplicates": gen.duplicates, "file_bytes": gen.bytes, "expected_profiles": expected_profiles,
               "segment_filter": SEGMENT_FILTER, "unification_config": unification_config(), "runs": runs}),
        md,
    )
}
