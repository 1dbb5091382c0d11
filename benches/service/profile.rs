//! `profile` item: the actions set-up, then wrk at 64 connections on one scenario while
//! `perf record` samples the service (cpu-clock, DWARF call graphs). Writes
//! `<target>/bench/perf-<scenario>.data` and a text report `perf-<scenario>.txt`.

use std::process::{Command, Stdio};

use crate::api::Api;
use crate::process::{Service, API_KEY};
use crate::wrk::{self, Load};
use crate::{actions, datagen, Ctx};

/// `perf record` sampling one process (cpu-clock at `hz`, DWARF call graphs of `stack` bytes).
struct Perf(std::process::Child);

impl Perf {
    fn record(data: &std::path::Path, pid: u32, hz: u32, stack: u32) -> Self {
        let child = Command::new("perf")
            .args(["record", "-e", "cpu-clock", "-F", &hz.to_string()])
            .arg("--call-graph")
            .arg(format!("dwarf,{stack}"))
            .arg("-o")
            .arg(data)
            .arg("-p")
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("perf runs (apt-get install linux-perf)");
        Self(child)
    }

    /// Stops sampling (SIGINT makes perf write its data) and waits for perf to finish.
    fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-INT")
            .arg(self.0.id().to_string())
            .status();
        let _ = self.0.wait();
    }
}

/// `profile unification`: ingest the engine data set, then sample the service while the
/// unification job runs.
pub async fn run_unification(ctx: &Ctx, rows: u64) -> String {
    let dir = ctx.temp_dir("profile");
    let folder = dir.path().join("files").join("bench");
    std::fs::create_dir_all(&folder).expect("tenant folder");
    let gen = datagen::write_people(&folder.join("people.csv"), rows, 0.1, 11).expect("data");
    let service = Service::start(dir.path(), &[], &ctx.log("profile-service"));
    let api = Api::new(&service.base);
    let (inst, _) = api.instance_with_people("bench-profile").await;
    let (st, _, body) = api
        .send(
            reqwest::Method::PUT,
            &format!("/instances/{inst}/unification"),
            Some(crate::engine::unification_config()),
        )
        .await;
    assert_eq!(st, 200, "{body}");
    let data = ctx.out.join("perf-unification.data");
    let perf = Perf::record(&data, service.pid(), 199, 16384);
    let job = api
        .run_job(&format!("/instances/{inst}/unification/run"))
        .await;
    perf.stop();
    let peak = service.hwm_kb();
    service.stop();
    format!(
        "unification of {} records ({} duplicates): {:.1} s under perf, peak RSS {} kB; perf data {}\n",
        gen.rows,
        gen.duplicates,
        job.server_secs,
        peak,
        data.display()
    )
}

/// `profile fanout`: N subscriptions to a local sink, then sample the service while one event
/// fans out.
pub async fn run_fanout(ctx: &Ctx, subscriptions: u32) -> String {
    let sink = crate::baseline::Sink::start(2);
    let dir = ctx.temp_dir("profile");
    let service = Service::start(
        dir.path(),
        &["--allow-private-callbacks", "--delivery-concurrency", "64"],
        &ctx.log("profile-service"),
    );
    let api = Api::new(&service.base);
    let inst = api.create_instance("bench-profile").await;
    let urls = (0..subscriptions).map(|i| sink.url(i)).collect();
    crate::webhooks::subscribe_all(&api, &inst, urls)
        .await
        .expect("trigger endpoints");
    let data = ctx.out.join("perf-fanout.data");
    let perf = Perf::record(&data, service.pid(), 499, 16384);
    let started = std::time::Instant::now();
    crate::webhooks::fire(&api, &inst).await;
    assert!(
        sink.wait_for(
            u64::from(subscriptions),
            std::time::Duration::from_secs(900)
        )
        .await
    );
    let secs = started.elapsed().as_secs_f64();
    perf.stop();
    service.stop();
    sink.stop().await;
    format!(
        "fan-out to {subscriptions}: {secs:.2} s under perf; perf data {}\n",
        data.display()
    )
}

pub async fn run(ctx: &Ctx, rows: u64, scenario: &str, seconds: u32) -> String {
    let dir = ctx.temp_dir("profile");
    let folder = dir.path().join("files").join("bench");
    std::fs::create_dir_all(&folder).expect("tenant folder");
    datagen::write_people(&folder.join("people.csv"), rows, 0.0, 7).expect("data");
    // `<scenario>-uncached`: the same with the read cache off, what every first read costs.
    let (scenario, service_args): (&str, &[&str]) = match scenario.strip_suffix("-uncached") {
        Some(base) => (base, &["--read-cache-mib", "0"]),
        None => (scenario, &[]),
    };
    let service = Service::start(dir.path(), service_args, &ctx.log("profile-service"));
    let api = Api::new(&service.base);
    let (inst, _) = api.instance_with_people("bench-profile").await;
    let items = format!("{}/instances/{inst}/entities/People/items", service.base);
    let (url, random) = match scenario {
        "getitems" => (format!("{items}?$top=100"), None),
        "filter" => (
            format!(
                "{items}?$top=100&$filter={}",
                actions::FILTER.replace(' ', "%20").replace('\'', "%27")
            ),
            None,
        ),
        "getitem" => (format!("{items}/1"), Some(rows)),
        other => panic!(
            "unknown scenario {other} (getitems, filter, getitem, each optionally -uncached)"
        ),
    };
    let prefix = format!("/instances/{inst}/entities/People/items/");
    let script = ctx.out.join("wrk.lua");
    std::fs::write(&script, wrk::SCRIPT).expect("write wrk.lua");
    let warm = Load {
        url: &url,
        connections: 64,
        seconds: 2,
        api_key: API_KEY,
        random_items: random.map(|n| (prefix.as_str(), n)),
    };
    wrk::run(&script, &warm);
    let data = ctx.out.join(format!("perf-{scenario}.data"));
    let perf = Perf::record(&data, service.pid(), 499, 32768);
    let r = wrk::run(&script, &Load { seconds, ..warm });
    perf.stop();
    service.stop();
    let report = Command::new("perf")
        .args([
            "report",
            "--stdio",
            "--no-children",
            "--percent-limit",
            "1",
            "-i",
        ])
        .arg(&data)
        .output()
        .expect("perf report");
    let txt = ctx.out.join(format!("perf-{scenario}.txt"));
    std::fs::write(&txt, &report.stdout).expect("write report");
    format!(
        "{scenario}: {:.0} req/s at 64 connections under perf; report {}\n",
        r.rps(),
        txt.display()
    )
}
