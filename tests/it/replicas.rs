//! Several replicas of the real binary on one PostgreSQL database, as behind a load balancer:
//! any request may reach any replica, and a replica may die (`kill -9`) at any moment.
//! PostgreSQL only (one SQLite file serves one process).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sqlx::Connection;

use crate::common::process::{free_port, Server};
use crate::common::{database_for, on_postgres, KEY_A};
use crate::receiver::Receiver;
use insights_connector::store::DatabaseUrl;
use insights_connector::triggers::Trigger;

/// Replicas on one fresh database, each on its own 127.0.0.1 port.
struct Cluster {
    dir: tempfile::TempDir,
    url: String,
    replicas: Vec<Option<Server>>,
}

impl Cluster {
    /// `None` on SQLite (the test is skipped).
    async fn start(n: usize, extra: &[&str]) -> Option<Self> {
        if !on_postgres() {
            eprintln!("replicas: PostgreSQL only (CONNECTOR_TEST_POSTGRES_URL is not set)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let DatabaseUrl::Postgres(url) = database_for(dir.path()).await else {
            unreachable!("on PostgreSQL");
        };
        let mut cluster = Self {
            dir,
            url,
            replicas: Vec::new(),
        };
        for _ in 0..n {
            cluster.add(extra).await;
        }
        Some(cluster)
    }

    /// Starts one more replica; returns its index.
    async fn add(&mut self, extra: &[&str]) -> usize {
        let i = self.replicas.len();
        let mut args: Vec<&OsStr> = vec![OsStr::new("--database-url"), OsStr::new(&self.url)];
        args.extend(extra.iter().map(OsStr::new));
        let server =
            Server::start_with(self.dir.path(), free_port(), &format!("r{i}.log"), &args).await;
        self.replicas.push(Some(server));
        i
    }

    fn replica(&self, i: usize) -> &Server {
        self.replicas[i].as_ref().expect("replica is running")
    }

    fn kill_9(&mut self, i: usize) {
        self.replicas[i]
            .take()
            .expect("replica is running")
            .kill_9();
    }

    async fn sql_count(&self, sql: &str, bind: &str) -> i64 {
        let mut db = sqlx::PgConnection::connect(&self.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(bind)
            .fetch_one(&mut db)
            .await
            .unwrap()
    }
}

async fn send(
    server: &Server,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, format!("{}{path}", server.base))
        .header("X-API-Key", KEY_A);
    if let Some(body) = body {
        req = req.json(&body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// An instance with a refreshed two-row data source `People` (key `Id`), made through replica 0.
async fn instance_with_people(cluster: &Cluster) -> (String, String) {
    let r0 = cluster.replica(0);
    let (s, inst, _) = r0.post("/instances", json!({"name": "Replicated"})).await;
    assert_eq!(s, 201, "{inst}");
    let inst = inst["instanceId"].as_str().unwrap().to_string();
    let (s, ds, _) = r0
        .post(
            &format!("/instances/{inst}/datasources"),
            json!({"name": "people", "entityName": "People", "format": "csv", "keyField": "Id",
                   "content": "Id,Name\n1,Ann\n2,Bob\n"}),
        )
        .await;
    assert_eq!(s, 201, "{ds}");
    let ds = ds["dataSourceId"].as_str().unwrap().to_string();
    r0.refresh(&inst, &ds).await;
    (inst, ds)
}

/// A write answered by one replica is seen by the next read on any other.
#[tokio::test]
async fn a_write_on_one_replica_is_read_on_every_other() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let (inst, _) = instance_with_people(&cluster).await;
    let items = format!("/instances/{inst}/entities/People/items");
    for round in 0..20 {
        let writer = cluster.replica(round % 3);
        let key = format!("k{round}");
        let (s, created) = send(
            writer,
            reqwest::Method::POST,
            &items,
            Some(json!({"Id": key, "Name": format!("v{round}")})),
        )
        .await;
        assert_eq!(s, 201, "{created}");
        let (s, _) = send(
            writer,
            reqwest::Method::PATCH,
            &format!("{items}/{key}"),
            Some(json!({"Name": format!("w{round}")})),
        )
        .await;
        assert_eq!(s, 200);
        for reader in [(round + 1) % 3, (round + 2) % 3] {
            let replica = cluster.replica(reader);
            let (s, item) = send(
                replica,
                reqwest::Method::GET,
                &format!("{items}/{key}"),
                None,
            )
            .await;
            assert_eq!(s, 200, "replica {reader} misses {key}: {item}");
            assert_eq!(item["Name"], format!("w{round}"), "replica {reader}");
            let (s, page) = send(
                replica,
                reqwest::Method::GET,
                &format!("{items}?$filter=Id eq '{key}'"),
                None,
            )
            .await;
            assert_eq!(s, 200);
            assert_eq!(page["value"][0]["Name"], format!("w{round}"), "{page}");
        }
    }
}

/// One event fanned out to 500 subscriptions by three replicas, one of them killed mid-way:
/// every subscription gets the event; the only duplicates are attempts the killed replica had
/// in flight (it cannot have had more than its delivery concurrency).
#[tokio::test]
async fn a_fan_out_survives_a_replica_killed_mid_way() {
    const SUBSCRIPTIONS: usize = 500;
    const CONCURRENCY: usize = 16;
    let concurrency = CONCURRENCY.to_string();
    let Some(mut cluster) =
        Cluster::start(3, &["--delivery-concurrency", concurrency.as_str()]).await
    else {
        return;
    };
    let (inst, ds) = instance_with_people(&cluster).await;
    let rx = Receiver::start().await;
    // Slow enough that each replica has attempts in flight at any moment.
    rx.set_delay(Duration::from_millis(100));
    let path = Trigger::OnDataSourceRefreshSucceeded
        .definition()
        .path
        .replace("{instanceId}", &inst);
    for i in 0..SUBSCRIPTIONS {
        let (s, sub, _) = cluster
            .replica(i % 3)
            .post(
                &path,
                json!({"notificationUrl": rx.url(&format!("/hook/{i}"))}),
            )
            .await;
        assert_eq!(s, 201, "{sub}");
    }
    cluster.replica(0).refresh(&inst, &ds).await;

    // Kill replica 1 once a fifth has arrived.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rx.received().len() < SUBSCRIPTIONS / 5 {
        assert!(Instant::now() < deadline, "the fan-out did not start");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let at_kill = rx.received().len();
    cluster.kill_9(1);

    let counts = loop {
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for r in rx.received() {
            *counts.entry((r.path.clone(), r.event_id())).or_default() += 1;
        }
        if counts.len() >= SUBSCRIPTIONS {
            break counts;
        }
        assert!(
            Instant::now() < deadline,
            "{} of {SUBSCRIPTIONS} subscriptions got the event",
            counts.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // The killed replica's attempts in flight reached the receiver but were never recorded:
    // once their lease runs out another replica sends them again. Wait until every delivery
    // is recorded as delivered, then count.
    loop {
        let undelivered = cluster
            .sql_count(
                "SELECT count(*) FROM deliveries WHERE status <> $1",
                "delivered",
            )
            .await;
        if undelivered == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{undelivered} deliveries are not recorded as delivered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let requests = rx.received().len();
    let delivered = counts.len();
    let duplicated = requests - delivered;
    eprintln!(
        "fan-out of {SUBSCRIPTIONS} over 3 replicas, one killed after {at_kill} arrived: \
         {delivered} delivered, {duplicated} duplicated, {} lost ({requests} requests)",
        SUBSCRIPTIONS - delivered
    );
    assert_eq!(delivered, SUBSCRIPTIONS, "a notification was lost");
    assert!(
        duplicated <= CONCURRENCY,
        "{duplicated} duplicates: more than the killed replica could have had in flight"
    );
}

/// A 10-second schedule over 40 s with three replicas ticking: each occurrence queues one full
/// refresh (4 ± 1 at the window's edges), not one per replica.
#[tokio::test]
async fn each_cron_occurrence_queues_one_refresh_across_replicas() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let (s, inst, _) = cluster
        .replica(1)
        .post(
            "/instances",
            json!({"name": "Cron", "refreshSchedule": "*/10 * * * * *"}),
        )
        .await;
    assert_eq!(s, 201, "{inst}");
    let inst = inst["instanceId"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_secs(40)).await;
    let queued = cluster
        .sql_count(
            "SELECT count(*) FROM jobs WHERE instance_id = $1::uuid AND kind = 'fullRefresh'",
            &inst,
        )
        .await;
    eprintln!("a */10 s schedule over 40 s on 3 replicas queued {queued} full refreshes");
    assert!(
        (3..=5).contains(&queued),
        "{queued} full refreshes queued in 40 s by a 10-second schedule"
    );
}

/// A delivery committed on a replica that does not deliver reaches the dispatcher of another
/// at once: the NOTIFY hint, not its poll (a minute here), wakes it.
#[tokio::test]
async fn an_event_committed_on_one_replica_wakes_the_dispatcher_of_another() {
    if !on_postgres() {
        eprintln!("replicas: PostgreSQL only (CONNECTOR_TEST_POSTGRES_URL is not set)");
        return;
    }
    let poll = Duration::from_secs(60);
    // Replica A answers requests and runs jobs (so it commits the event); B only delivers.
    let a = crate::common::spawn_app_with(|s| {
        s.deliver_webhooks = false;
        s.dispatcher_poll_interval = poll;
    })
    .await;
    let b = crate::common::spawn_app_in(a.dir.clone(), |s| {
        s.job_workers = 0;
        s.dispatcher_poll_interval = poll;
    })
    .await;
    // B's dispatcher has made its first pass over the empty outbox and now sleeps.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let inst = a.create_instance("Hints").await;
    let ds = a
        .create_source(
            &inst,
            json!({"name": "people", "entityName": "People", "format": "csv", "keyField": "Id",
                   "content": "Id,Name\n1,Ann\n"}),
        )
        .await;
    let rx = Receiver::start().await;
    let path = Trigger::OnDataSourceRefreshSucceeded
        .definition()
        .path
        .replace("{instanceId}", &inst);
    let sub = a
        .post(&path, json!({"notificationUrl": rx.url("/hook")}))
        .await;
    assert_eq!(sub.status, 201, "{}", sub.text);
    let job = a
        .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let committed = Instant::now();
    // Without the hint B would not look before its next poll, a minute away.
    rx.wait_for(Some("/hook"), 1, Duration::from_secs(10)).await;
    eprintln!(
        "B delivered A's event {:?} after A's job was seen finished (B's poll: {poll:?})",
        committed.elapsed()
    );
    drop(b);
}

/// Runs `insights-connector keys ARGS` against the cluster's database.
fn keys_cli(cluster: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_insights-connector"))
        .arg("keys")
        .args(args)
        .args(["--database-url", &cluster.url])
        .env("RUST_LOG", "error")
        .output()
        .expect("the binary runs")
}

/// A key created with the CLI works on every replica; revoked with the CLI, every replica
/// refuses it within 5 s.
#[tokio::test]
async fn a_key_revoked_once_is_refused_by_every_replica_within_five_seconds() {
    let Some(cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let created = keys_cli(&cluster, &["create", "--tenant", "alpha"]);
    assert!(created.status.success(), "{created:?}");
    let key = String::from_utf8(created.stdout)
        .unwrap()
        .trim()
        .to_string();
    let listed = keys_cli(&cluster, &["list", "--tenant", "alpha", "--json"]);
    let listed: Value = serde_json::from_slice(&listed.stdout).unwrap();
    let id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|k| key.starts_with(k["prefix"].as_str().unwrap()))
        .map(|k| k["id"].as_str().unwrap().to_string())
        .expect("the new key is listed");
    let status = |i: usize| {
        let base = cluster.replica(i).base.clone();
        let key = key.clone();
        async move {
            reqwest::Client::new()
                .get(format!("{base}/instances"))
                .header("X-API-Key", key)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for i in 0..3 {
        assert_eq!(status(i).await, 200, "replica {i} accepts the new key");
    }
    let revoked = keys_cli(&cluster, &["revoke", &id]);
    assert!(revoked.status.success(), "{revoked:?}");
    let since = Instant::now();
    let mut refused = [false; 3];
    while refused.iter().any(|r| !r) {
        for (i, done) in refused.iter_mut().enumerate() {
            if !*done {
                *done = status(i).await == 401;
            }
        }
        assert!(
            since.elapsed() < Duration::from_secs(5),
            "after 5 s, replicas {:?} still accept the revoked key",
            refused
                .iter()
                .enumerate()
                .filter(|(_, r)| !**r)
                .map(|(i, _)| i)
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "a revoked key was refused by all 3 replicas {:?} after the revoke",
        since.elapsed()
    );
}

/// A replica started while another runs a long refresh does not fail that job (start-up no
/// longer fails every running job: only one whose owner stopped heartbeating).
#[tokio::test]
async fn a_replica_starting_during_a_long_refresh_does_not_fail_it() {
    let Some(mut cluster) = Cluster::start(3, &[]).await else {
        return;
    };
    let r0 = cluster.replica(0);
    let (s, inst, _) = r0.post("/instances", json!({"name": "Long"})).await;
    assert_eq!(s, 201, "{inst}");
    let inst = inst["instanceId"].as_str().unwrap().to_string();
    let rows = crate::common::big_csv(100_000);
    let (s, ds, _) = r0
        .post(
            &format!("/instances/{inst}/datasources"),
            json!({"name": "big", "entityName": "Big", "format": "csv", "keyField": "id",
                   "content": rows}),
        )
        .await;
    assert_eq!(s, 201, "{ds}");
    let ds = ds["dataSourceId"].as_str().unwrap().to_string();
    let (s, job, location) = r0
        .post(
            &format!("/instances/{inst}/datasources/{ds}/refresh"),
            json!({}),
        )
        .await;
    assert_eq!(s, 202, "{job}");
    // The job's path, asked of any replica (its Location names the replica that answered).
    let location = reqwest::Url::parse(&location.unwrap())
        .unwrap()
        .path()
        .to_string();
    // Wait until some replica runs it, then start a fourth.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, job) = send(cluster.replica(1), reqwest::Method::GET, &location, None).await;
        if job["status"] == "running" {
            break;
        }
        assert_eq!(job["status"], "queued", "{job}");
        assert!(Instant::now() < deadline, "the job never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fourth = cluster.add(&[]).await;
    let job = crate::common::process::wait_job(
        &reqwest::Client::new(),
        &cluster.replica(fourth).base,
        &location,
    )
    .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let (_, entity) = send(
        cluster.replica(fourth),
        reqwest::Method::GET,
        &format!("/instances/{inst}/entities/Big/items?$top=1&$count=true"),
        None,
    )
    .await;
    assert!(entity["value"].is_array(), "{entity}");
}
