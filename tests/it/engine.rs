//! The audience-insights engine over HTTP: ingestion, items and OData, unification, segments,
//! measures, full refresh, jobs and events.

use crate::common;

use std::collections::BTreeSet;

use crate::common::{spawn_app, spawn_app_in, TestApp};
use serde_json::{json, Value};
use sqlx::Row;

const CONTACTS_CSV: &str = "Id,Email,First,Last,Phone,City,Age,Vip\n\
1,ann@example.com,Ann,Smith,+49 30 1111,Berlin,34,true\n\
2,bob@example.com,Bob,Jones,030 2222,Hamburg,41,false\n\
3,ANN@example.com ,Anne,Smith,,Berlin,35,false\n\
4,carl@example.com,Carl,Meyer,0301234,Munich,,false\n\
5,dora@example.com,Dora,Klein,0305555,Berlin,58,true\n";

const SHOP_JSONL: &str = r#"{"CustomerNo":"S1","Mail":"bob@example.com","Given":"Robert","Family":"Jones","Tel":"0302222","Town":"Hamburg","Spend":120.5}
{"CustomerNo":"S2","Mail":"eve@example.com","Given":"Eve","Family":"Adams","Tel":"0306666","Town":"Cologne","Spend":80}

{"CustomerNo":"S3","Mail":"carl.m@example.com","Given":"Carl","Family":"Meyer","Tel":"030-1234","Town":"Munich","Spend":15.25}
"#;

async fn instance_with_sources(app: &TestApp) -> (String, String, String) {
    let inst = app.create_instance("Contoso").await;
    let crm = app
        .create_source(
            &inst,
            json!({"name":"CRM contacts","entityName":"CrmContacts","format":"csv","keyField":"Id","content":CONTACTS_CSV}),
        )
        .await;
    let shop = app
        .create_source(
            &inst,
            json!({"name":"Shop customers","entityName":"ShopCustomers","format":"jsonl","keyField":"CustomerNo","content":SHOP_JSONL}),
        )
        .await;
    (inst, crm, shop)
}

fn unification_config() -> Value {
    json!({
        "sources": [
            {"entityName":"CrmContacts","fields":{"email":"Email","firstName":"First","lastName":"Last","phone":"Phone","city":"City","age":"Age"},"priority":1},
            {"entityName":"ShopCustomers","fields":{"email":"Mail","firstName":"Given","lastName":"Family","phone":"Tel","city":"Town","spend":"Spend"},"priority":2}
        ],
        "rules": [
            {"name":"same email","conditions":[{"field":"email","normalization":"email","precision":"exact"}]},
            {"name":"same phone and last name","conditions":[{"field":"phone","normalization":"phone","precision":"exact"},{"field":"lastName","normalization":"case-insensitive","precision":"fuzzy","threshold":0.9}]}
        ],
        "merge": {"policy":"sourcePriority"}
    })
}

async fn all_items(app: &TestApp, inst: &str, entity: &str, query: &str) -> Vec<Value> {
    let mut url = format!("/instances/{inst}/entities/{entity}/items?{query}");
    let mut items = Vec::new();
    loop {
        let r = app.get_pages_of(2, &url).await;
        assert_eq!(r.status, 200, "{url}: {}", r.text);
        let body = r.json();
        items.extend(body["value"].as_array().unwrap().iter().cloned());
        match body["nextLink"].as_str() {
            Some(next) => {
                assert!(
                    next.starts_with("http://127.0.0.1:"),
                    "absolute nextLink {next}"
                );
                url = next.to_string();
            }
            None => return items,
        }
    }
}

fn ids(items: &[Value], field: &str) -> BTreeSet<String> {
    items
        .iter()
        .map(|i| match &i[field] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[tokio::test]
async fn ingests_csv_and_jsonl_with_inferred_types() {
    let app = spawn_app().await;
    let (inst, crm, shop) = instance_with_sources(&app).await;
    for ds in [&crm, &shop] {
        let job = app
            .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
            .await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["kind"], "dataSourceRefresh");
        assert!(job["startedAt"].is_string() && job["completedAt"].is_string());
    }
    let entities = app.get(&format!("/instances/{inst}/entities")).await.json();
    assert_eq!(
        entities,
        json!({"value":[
            {"name":"CrmContacts","kind":"source","keyField":"Id","itemCount":5},
            {"name":"ShopCustomers","kind":"source","keyField":"CustomerNo","itemCount":3}
        ]})
    );
    let ann = app
        .get(&format!("/instances/{inst}/entities/CrmContacts/items/1"))
        .await
        .json();
    assert_eq!(ann["Age"], 34);
    assert_eq!(ann["Vip"], true);
    assert_eq!(ann["Phone"], "+49 30 1111");
    assert_eq!(ann["Id"], "1");
    let carl = app
        .get(&format!("/instances/{inst}/entities/CrmContacts/items/4"))
        .await
        .json();
    assert!(carl.get("Age").is_none(), "empty cells are omitted: {carl}");
    let s1 = app
        .get(&format!(
            "/instances/{inst}/entities/ShopCustomers/items/S1"
        ))
        .await
        .json();
    assert_eq!(s1["Spend"], 120.5);
    let schema = app
        .get(&format!("/instances/{inst}/entities/CrmContacts/schema"))
        .await
        .json();
    assert_eq!(schema["properties"]["Age"]["type"], "integer");
    assert_eq!(schema["properties"]["Vip"]["type"], "boolean");
    assert_eq!(schema["properties"]["Email"]["type"], "string");
    let source = app
        .get(&format!("/instances/{inst}/datasources/{crm}"))
        .await
        .json();
    assert_eq!(source["lastRefresh"]["status"], "succeeded");
    assert_eq!(source["lastRefresh"]["rowsIngested"], 5);
}

#[tokio::test]
async fn a_bad_file_fails_with_its_line_number_and_keeps_the_old_items() {
    let app = spawn_app().await;
    let inst = app.create_instance("Files").await;
    let folder = app.dir.path().join("files").join("alpha");
    std::fs::create_dir_all(&folder).unwrap();
    let file = folder.join("contacts.csv");
    std::fs::write(&file, "Id,Name\n1,Ann\n2,Bob\n").unwrap();
    let ds = app
        .create_source(
            &inst,
            json!({"name":"file","entityName":"People","format":"csv","keyField":"Id","path":"contacts.csv"}),
        )
        .await;
    let refresh = format!("/instances/{inst}/datasources/{ds}/refresh");
    assert_eq!(app.run_job(&refresh).await["status"], "succeeded");

    let cases = [
        ("Id,Name\n1,Ann\n2,Bob,extra\n", "line 3"),
        ("Id,Name\n1,Ann\n1,Again\n", "duplicate key '1'"),
        ("Id,Name\n1,Ann\n,NoKey\n", "line 3"),
        ("Name\nAnn\n", "'Id'"),
    ];
    for (content, expected) in cases {
        std::fs::write(&file, content).unwrap();
        let job = app.run_job(&refresh).await;
        assert_eq!(job["status"], "failed", "{content}: {job}");
        let error = job["error"].as_str().unwrap();
        assert!(error.contains(expected), "{content}: error {error}");
        let items = all_items(&app, &inst, "People", "").await;
        assert_eq!(
            ids(&items, "Name"),
            BTreeSet::from(["Ann".into(), "Bob".into()])
        );
        let source = app
            .get(&format!("/instances/{inst}/datasources/{ds}"))
            .await
            .json();
        assert_eq!(source["lastRefresh"]["status"], "failed");
        assert!(source["lastRefresh"]["error"]
            .as_str()
            .unwrap()
            .contains(expected));
    }
    std::fs::remove_file(&file).unwrap();
    let job = app.run_job(&refresh).await;
    assert_eq!(job["status"], "failed");
    assert!(
        job["error"].as_str().unwrap().contains("contacts.csv"),
        "{job}"
    );
    assert_eq!(all_items(&app, &inst, "People", "").await.len(), 2);

    // JSON Lines: a malformed line is reported with its number.
    let bad = app
        .create_source(
            &inst,
            json!({"name":"bad","entityName":"Bad","format":"jsonl","keyField":"id","content":"{\"id\":1}\n{\"id\":2\n"}),
        )
        .await;
    let job = app
        .run_job(&format!("/instances/{inst}/datasources/{bad}/refresh"))
        .await;
    assert!(job["error"].as_str().unwrap().contains("line 2"), "{job}");
}

#[tokio::test]
async fn data_source_input_is_validated() {
    let app = spawn_app().await;
    let inst = app.create_instance("Validation").await;
    let path = format!("/instances/{inst}/datasources");
    for body in [
        json!({"name":"x","entityName":"E","format":"csv","keyField":"id","path":"../outside.csv"}),
        json!({"name":"x","entityName":"E","format":"csv","keyField":"id","path":"/etc/passwd"}),
        json!({"name":"x","entityName":"E","format":"csv","keyField":"id","content":"a","path":"a.csv"}),
        json!({"name":"x","entityName":"E","format":"csv","keyField":"id"}),
        json!({"name":"x","entityName":"Customer","format":"csv","keyField":"id","content":"id\n1\n"}),
        json!({"name":"x","entityName":"bad name","format":"csv","keyField":"id","content":"id\n1\n"}),
        json!({"name":"x","entityName":"E","format":"xml","keyField":"id","content":"id\n1\n"}),
    ] {
        app.post(&path, body.clone()).await.assert_problem(400);
    }
    app.create_source(
        &inst,
        json!({"name":"x","entityName":"E","format":"csv","keyField":"id","content":"id\n1\n"}),
    )
    .await;
    app.post(
        &path,
        json!({"name":"y","entityName":"E","format":"csv","keyField":"id","content":"id\n1\n"}),
    )
    .await
    .assert_problem(409);
    // Files are read from the tenant's folder, `files/<tenant>/`. The service's own database
    // files (by SQLite's suffixes, or by the database header whatever the name), a symlink out
    // of the folder, another tenant's file and a missing one all get the same answer.
    let alpha = app.dir.path().join("files").join("alpha");
    let beta = app.dir.path().join("files").join("beta");
    std::fs::create_dir_all(&alpha).unwrap();
    std::fs::create_dir_all(&beta).unwrap();
    std::fs::write(alpha.join("people.db-wal"), "id\n1\n").unwrap();
    let mut disguised = b"SQLite format 3\0".to_vec();
    disguised.extend_from_slice(b"id\n1\n");
    std::fs::write(alpha.join("copy.csv"), disguised).unwrap();
    std::fs::write(beta.join("crm.csv"), "id\n1\n").unwrap();
    std::fs::write(app.dir.path().join("root.csv"), "id\n1\n").unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink("/etc/hostname", alpha.join("link.csv")).unwrap();
    for (entity, file) in [
        ("Wal", "people.db-wal"),
        ("Copy", "copy.csv"),
        ("Link", "link.csv"),
        ("Other", "crm.csv"),
        ("Root", "root.csv"),
        ("Missing", "missing.csv"),
    ] {
        let ds = app
            .create_source(
                &inst,
                json!({"name":file,"entityName":entity,"format":"csv","keyField":"id","path":file}),
            )
            .await;
        let job = app
            .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
            .await;
        assert_eq!(job["status"], "failed", "{file}: {job}");
        let error = job["error"].as_str().unwrap();
        assert!(
            error.starts_with(&format!("the file '{file}' is not in this tenant's folder")),
            "{file}: {job}"
        );
    }
    // Tenant beta reads its own file.
    let beta_inst = app
        .send(
            reqwest::Method::POST,
            "/instances",
            Some(crate::common::KEY_B),
            Some(&json!({"name":"Beta"})),
        )
        .await
        .json()["instanceId"]
        .as_str()
        .unwrap()
        .to_string();
    let ds = app
        .send(
            reqwest::Method::POST,
            &format!("/instances/{beta_inst}/datasources"),
            Some(crate::common::KEY_B),
            Some(&json!({"name":"crm","entityName":"Crm","format":"csv","keyField":"id","path":"crm.csv"})),
        )
        .await
        .json()["dataSourceId"]
        .as_str()
        .unwrap()
        .to_string();
    let started = app
        .send(
            reqwest::Method::POST,
            &format!("/instances/{beta_inst}/datasources/{ds}/refresh"),
            Some(crate::common::KEY_B),
            None,
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
}

#[tokio::test]
async fn odata_queries_filter_select_order_and_page() {
    let app = spawn_app().await;
    let (inst, crm, _) = instance_with_sources(&app).await;
    app.run_job(&format!("/instances/{inst}/datasources/{crm}/refresh"))
        .await;
    let q = |filter: &str| format!("&$filter={}", urlencode(filter));
    let cases: Vec<(&str, Vec<&str>)> = vec![
        ("City eq 'Berlin'", vec!["1", "3", "5"]),
        ("City ne 'Berlin'", vec!["2", "4"]),
        ("Age gt 35", vec!["2", "5"]),
        ("Age ge 35", vec!["2", "3", "5"]),
        ("Age lt 35", vec!["1"]),
        ("Age le 35", vec!["1", "3"]),
        ("Age eq null", vec!["4"]),
        ("Age ne null and Vip eq true", vec!["1", "5"]),
        (
            "City eq 'Berlin' and (Age gt 50 or First eq 'Ann')",
            vec!["1", "5"],
        ),
        (
            "not (City eq 'Berlin') or Vip eq true",
            vec!["1", "2", "4", "5"],
        ),
        ("contains(Email,'example')", vec!["1", "2", "3", "4", "5"]),
        ("startswith(First,'An')", vec!["1", "3"]),
        ("endswith(Last,'es')", vec!["2"]),
    ];
    for (filter, expected) in cases {
        let items = all_items(&app, &inst, "CrmContacts", &q(filter)).await;
        let expected: BTreeSet<String> = expected.into_iter().map(String::from).collect();
        assert_eq!(ids(&items, "Id"), expected, "$filter={filter}");
    }
    let ordered = app
        .get(&format!(
            "/instances/{inst}/entities/CrmContacts/items?$orderby=City%20desc,Age%20asc&$select=Id,City"
        ))
        .await
        .json();
    let order: Vec<&str> = ordered["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Id"].as_str().unwrap())
        .collect();
    assert_eq!(order, ["4", "2", "1", "3", "5"]);
    assert_eq!(ordered["value"][0], json!({"Id":"4","City":"Munich"}));
    assert!(ordered.get("nextLink").is_none());
    let skipped = app
        .get(&format!(
            "/instances/{inst}/entities/CrmContacts/items?$skip=4"
        ))
        .await
        .json();
    assert_eq!(skipped["value"].as_array().unwrap().len(), 1);

    for (query, needle) in [
        ("$filter=Age%20gt", "position"),
        ("$filter=Age%20gtt%205", "position"),
        ("$filter=Nope%20eq%201", "unknown field 'Nope'"),
        ("$filter=contains(Email", "position"),
        ("$filter=City%20eq%20'Berlin", "position"),
        ("$orderby=Nope", "unknown field"),
        ("$select=Id,,City", "position"),
        ("$top=-1", "$top"),
        ("$top=100001", "$top"),
        ("$skip=-1", "$skip"),
        ("$top=abc", "$top"),
    ] {
        let r = app
            .get(&format!(
                "/instances/{inst}/entities/CrmContacts/items?{query}"
            ))
            .await;
        let body = r.assert_problem(400);
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{query}: {}",
            body["detail"]
        );
    }
    // An injection attempt is just a string literal.
    let items = all_items(&app, &inst, "CrmContacts", &q("City eq 'x'' OR 1=1 --'")).await;
    assert!(items.is_empty());
    app.get(&format!("/instances/{inst}/entities/Nope/items"))
        .await
        .assert_problem(404);
}

fn urlencode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// Pages in key order continue after their last key (`$skiptoken`), so a deep page is an index
/// seek rather than a count through everything before it: every item comes exactly once and
/// in key order, an item created behind the cursor does not shift the pages after it, and
/// ordered pages keep continuing with `$skip`.
#[tokio::test]
async fn pages_in_key_order_continue_after_their_last_key() {
    let app = spawn_app().await;
    let (inst, crm, _) = instance_with_sources(&app).await;
    let job = app
        .run_job(&format!("/instances/{inst}/datasources/{crm}/refresh"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let items = format!("/instances/{inst}/entities/CrmContacts/items");

    let first = app.get_pages_of(2, &items).await.json();
    let next = first["nextLink"].as_str().unwrap().to_string();
    assert!(
        next.contains("%24skiptoken=") && !next.contains("%24skip="),
        "{next}"
    );
    // Created behind the cursor (key "0" sorts before "2"): the following pages do not move.
    let created = app.post(&items, json!({"Id":"0","First":"Zed"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    let mut keys: Vec<String> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["Id"].as_str().unwrap().to_string())
        .collect();
    let mut url = next;
    loop {
        let page = app.get_pages_of(2, &url).await.json();
        keys.extend(
            page["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["Id"].as_str().unwrap().to_string()),
        );
        match page["nextLink"].as_str() {
            Some(next) => url = next.to_string(),
            None => break,
        }
    }
    assert_eq!(keys, ["1", "2", "3", "4", "5"]);

    let ordered = app
        .get_pages_of(2, &format!("{items}?$orderby=City"))
        .await
        .json();
    assert!(
        ordered["nextLink"].as_str().unwrap().contains("%24skip=2"),
        "{ordered}"
    );
    for query in [
        "$skiptoken=!!!",
        "$skiptoken=MQ&$orderby=City",
        "$skiptoken=_w",
    ] {
        let body = app
            .get(&format!("{items}?{query}"))
            .await
            .assert_problem(400);
        assert!(
            body["detail"].as_str().unwrap().contains("$skiptoken"),
            "{query}: {body}"
        );
    }
}

#[tokio::test]
async fn items_can_be_created_read_and_merged() {
    let app = spawn_app().await;
    let (inst, crm, _) = instance_with_sources(&app).await;
    app.run_job(&format!("/instances/{inst}/datasources/{crm}/refresh"))
        .await;
    let base = format!("/instances/{inst}/entities/CrmContacts/items");
    let created = app
        .post(
            &base,
            json!({"Id":"9","Email":"zed@example.com","Score":7.5}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let location = created.header("location").unwrap().to_string();
    assert!(location.ends_with("/items/9"));
    assert_eq!(app.get(&location).await.json()["Score"], 7.5);
    app.post(&base, json!({"Id":"9"})).await.assert_problem(409);
    let generated = app.post(&base, json!({"Email":"nokey@example.com"})).await;
    assert_eq!(generated.status, 201);
    assert!(generated.json()["Id"].as_str().unwrap().len() >= 32);
    // Keys a URL cannot address are refused; a key is stored as it is addressed (trimmed).
    for key in [".", "..", " .. "] {
        let body = app
            .post(&base, json!({"Id": key}))
            .await
            .assert_problem(400);
        assert!(
            body["detail"].as_str().unwrap().contains("path steps"),
            "{body}"
        );
    }
    // At most 10,000 fields per item and per entity.
    let wide: serde_json::Map<String, Value> =
        (0..10_001).map(|i| (format!("f{i}"), json!(1))).collect();
    let body = app
        .post(&base, Value::Object(wide))
        .await
        .assert_problem(400);
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("at most 10000 fields"),
        "{body}"
    );
    let padded = app.post(&base, json!({"Id":"  11 "})).await;
    assert_eq!(padded.status, 201, "{}", padded.text);
    assert_eq!(padded.json()["Id"], "11");
    assert_eq!(app.get(&format!("{base}/11")).await.json()["Id"], "11");

    let patched = app
        .patch(&format!("{base}/9"), json!({"City":"Bonn","Score":null}))
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(
        patched.json(),
        json!({"Id":"9","Email":"zed@example.com","City":"Bonn"})
    );
    app.patch(&format!("{base}/9"), json!({"Id":"10"}))
        .await
        .assert_problem(400);
    app.patch(&format!("{base}/404"), json!({"City":"x"}))
        .await
        .assert_problem(404);
    app.get(&format!("{base}/404")).await.assert_problem(404);
    // The new field is queryable.
    let bonn = all_items(&app, &inst, "CrmContacts", "&$filter=City%20eq%20'Bonn'").await;
    assert_eq!(ids(&bonn, "Id"), BTreeSet::from(["9".to_string()]));
    let count = app.get(&format!("/instances/{inst}/entities")).await.json();
    assert_eq!(count["value"][0]["itemCount"], 8);
}

async fn unify(app: &TestApp) -> (String, Value) {
    let (inst, crm, shop) = instance_with_sources(app).await;
    for ds in [&crm, &shop] {
        app.run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
            .await;
    }
    let set = app
        .put(
            &format!("/instances/{inst}/unification"),
            unification_config(),
        )
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    let job = app
        .run_job(&format!("/instances/{inst}/unification/run"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    (inst, job)
}

fn clusters(profiles: &[Value]) -> BTreeSet<BTreeSet<String>> {
    profiles
        .iter()
        .map(|p| {
            p["sources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| {
                    format!(
                        "{}:{}",
                        s["entityName"].as_str().unwrap(),
                        s["key"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .collect()
}

#[tokio::test]
async fn unification_finds_the_known_duplicates_with_stable_ids() {
    let app = spawn_app().await;
    let (inst, job) = unify(&app).await;
    assert_eq!(job["result"]["sourceRecords"], 8);
    assert_eq!(job["result"]["unifiedProfiles"], 5);
    assert_eq!(job["result"]["matchedRecords"], 6);
    // What each rule did: pairs compared and matched, records linked.
    assert_eq!(
        job["result"]["rules"],
        json!([
            {"rule":"same email","kind":"exact","candidatePairs":2,"pairsMatched":2,"recordsLinked":4},
            {"rule":"same phone and last name","kind":"exact","candidatePairs":2,"pairsMatched":2,"recordsLinked":4}
        ])
    );
    let profiles = all_items(&app, &inst, "Customer", "").await;
    let expected: BTreeSet<BTreeSet<String>> = [
        vec!["CrmContacts:1", "CrmContacts:3"], // same email, different case/space
        vec!["CrmContacts:2", "ShopCustomers:S1"], // same email
        vec!["CrmContacts:4", "ShopCustomers:S3"], // same phone digits + last name
        vec!["CrmContacts:5"],
        vec!["ShopCustomers:S2"],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(String::from).collect())
    .collect();
    assert_eq!(clusters(&profiles), expected);
    // Each profile says which rules linked its records.
    let ann = profiles
        .iter()
        .find(|p| p["email"] == "ann@example.com")
        .unwrap();
    assert_eq!(ann["matchedBy"], json!(["same email"]), "{ann}");
    let carl = profiles.iter().find(|p| p["firstName"] == "Carl").unwrap();
    assert_eq!(
        carl["matchedBy"],
        json!(["same phone and last name"]),
        "{carl}"
    );
    // Source priority: CRM wins the fields of the Bob cluster.
    let bob = profiles
        .iter()
        .find(|p| p["email"] == "bob@example.com")
        .unwrap();
    assert_eq!(bob["firstName"], "Bob");
    assert_eq!(bob["spend"], 120.5);

    let ids_first: BTreeSet<String> = ids(&profiles, "CustomerId");
    let again = app
        .run_job(&format!("/instances/{inst}/unification/run"))
        .await;
    assert_eq!(again["status"], "succeeded");
    let profiles_again = all_items(&app, &inst, "Customer", "").await;
    assert_eq!(ids(&profiles_again, "CustomerId"), ids_first, "stable ids");
    let entities = app.get(&format!("/instances/{inst}/entities")).await.json();
    assert!(entities["value"].as_array().unwrap().contains(
        &json!({"name":"Customer","kind":"unified","keyField":"CustomerId","itemCount":5})
    ));
    // Unified profiles are read-only.
    app.post(
        &format!("/instances/{inst}/entities/Customer/items"),
        json!({"email":"x"}),
    )
    .await
    .assert_problem(400);
    let config = app.get(&format!("/instances/{inst}/unification")).await;
    assert_eq!(config.json(), unification_config());
    let bad = app
        .put(
            &format!("/instances/{inst}/unification"),
            json!({"sources":[],"rules":[],"merge":{"policy":"sourcePriority"}}),
        )
        .await;
    bad.assert_problem(400);
}

#[tokio::test]
async fn segments_and_measures_equal_independent_answers_and_record_events() {
    let app = spawn_app().await;
    let (inst, _) = unify(&app).await;
    let seg = app
        .post(
            &format!("/instances/{inst}/segments"),
            json!({"name":"Berliners","filter":"city eq 'Berlin'"}),
        )
        .await;
    assert_eq!(seg.status, 201, "{}", seg.text);
    let seg_id = seg.json()["segmentId"].as_str().unwrap().to_string();
    let job = app
        .run_job(&format!("/instances/{inst}/segments/{seg_id}/refresh"))
        .await;
    let profiles = all_items(&app, &inst, "Customer", "").await;
    let berliners = profiles.iter().filter(|p| p["city"] == "Berlin").count() as i64;
    assert_eq!(job["result"]["memberCount"], berliners);
    assert_eq!(job["result"]["previousCount"], Value::Null);
    let members = app
        .get(&format!(
            "/instances/{inst}/segments/{seg_id}/members?$top=1"
        ))
        .await
        .json();
    assert_eq!(members["value"].as_array().unwrap().len(), 1);
    assert!(members["nextLink"].as_str().unwrap().contains("%24skip=1"));
    let segment = app
        .get(&format!("/instances/{inst}/segments/{seg_id}"))
        .await
        .json();
    assert_eq!(segment["memberCount"], berliners);
    assert!(segment["lastRefreshedAt"].is_string());

    let measures = [
        ("count", None, None),
        ("sum", Some("Spend"), None),
        ("avg", Some("Spend"), None),
        ("min", Some("Spend"), None),
        ("max", Some("Spend"), None),
        ("distinctCount", Some("Town"), None),
        ("sum", Some("Spend"), Some("Spend gt 50")),
    ];
    let shop = all_items(&app, &inst, "ShopCustomers", "").await;
    let spends: Vec<f64> = shop.iter().map(|i| i["Spend"].as_f64().unwrap()).collect();
    let expected = [
        3.0,
        spends.iter().sum::<f64>(),
        spends.iter().sum::<f64>() / 3.0,
        spends.iter().cloned().fold(f64::MAX, f64::min),
        spends.iter().cloned().fold(f64::MIN, f64::max),
        3.0,
        spends.iter().filter(|s| **s > 50.0).sum::<f64>(),
    ];
    for ((aggregate, field, filter), expected) in measures.into_iter().zip(expected) {
        let m = app
            .post(
                &format!("/instances/{inst}/measures"),
                json!({"name":format!("{aggregate} measure"),"entityName":"ShopCustomers","aggregate":aggregate,"field":field,"filter":filter}),
            )
            .await;
        assert_eq!(m.status, 201, "{}", m.text);
        let id = m.json()["measureId"].as_str().unwrap().to_string();
        let job = app
            .run_job(&format!("/instances/{inst}/measures/{id}/refresh"))
            .await;
        let value = job["result"]["value"].as_f64().unwrap();
        assert!(
            (value - expected).abs() < 1e-9,
            "{aggregate}: {value} vs {expected}"
        );
        let measure = app
            .get(&format!("/instances/{inst}/measures/{id}"))
            .await
            .json();
        assert_eq!(measure["value"].as_f64().unwrap(), value);
    }
    app.post(
        &format!("/instances/{inst}/measures"),
        json!({"name":"bad","entityName":"ShopCustomers","aggregate":"sum"}),
    )
    .await
    .assert_problem(400);
    app.post(
        &format!("/instances/{inst}/segments"),
        json!({"name":"bad","filter":"city eq"}),
    )
    .await
    .assert_problem(400);

    // A second refresh after a data change records previous and current counts.
    let shop_item = app
        .post(
            &format!("/instances/{inst}/entities/CrmContacts/items"),
            json!({"Id":"77","Email":"new@example.com","City":"Berlin"}),
        )
        .await;
    assert_eq!(shop_item.status, 201);
    app.run_job(&format!("/instances/{inst}/unification/run"))
        .await;
    let again = app
        .run_job(&format!("/instances/{inst}/segments/{seg_id}/refresh"))
        .await;
    assert_eq!(again["result"]["previousCount"], berliners);
    assert_eq!(again["result"]["memberCount"], berliners + 1);

    // The recorded events, read from the SQLite file (on PostgreSQL the answers above are
    // checked; the events' contents are the same code's).
    if !common::sqlite_only(
        "segments_and_measures_equal_independent_answers_and_record_events (events)",
    ) {
        return;
    }
    let events = sqlx::query(
        "SELECT event_type, payload FROM events WHERE instance_id = ? ORDER BY occurred_at",
    )
    .bind(&inst)
    .fetch_all(app.engine.store().pool())
    .await
    .unwrap();
    let segment_events: Vec<Value> = events
        .iter()
        .filter(|r| r.get::<String, _>("event_type") == "segmentRefreshed")
        .map(|r| serde_json::from_str(&r.get::<String, _>("payload")).unwrap())
        .collect();
    assert_eq!(segment_events.len(), 2);
    assert_eq!(segment_events[0]["previousCount"], Value::Null);
    assert_eq!(segment_events[0]["currentCount"], berliners);
    assert_eq!(segment_events[1]["previousCount"], berliners);
    assert_eq!(segment_events[1]["currentCount"], berliners + 1);
    let types: BTreeSet<String> = events.iter().map(|r| r.get("event_type")).collect();
    for t in [
        "dataSourceRefreshSucceeded",
        "unificationCompleted",
        "measureRefreshed",
        "segmentRefreshed",
    ] {
        assert!(types.contains(t), "missing {t} in {types:?}");
    }
}

#[tokio::test]
async fn full_refresh_continues_past_a_failing_source() {
    let app = spawn_app().await;
    let (inst, _) = unify(&app).await;
    let broken = app
        .create_source(
            &inst,
            json!({"name":"Broken","entityName":"Broken","format":"csv","keyField":"id","path":"missing.csv"}),
        )
        .await;
    let seg = app
        .post(
            &format!("/instances/{inst}/segments"),
            json!({"name":"All","filter":"email ne null"}),
        )
        .await
        .json();
    let job = app.run_job(&format!("/instances/{inst}/refresh")).await;
    assert_eq!(job["kind"], "fullRefresh");
    assert_eq!(job["status"], "failed", "{job}");
    let stages = job["result"]["stages"].as_array().unwrap();
    let summary: Vec<(String, String)> = stages
        .iter()
        .map(|s| {
            (
                s["stage"].as_str().unwrap().into(),
                s["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("dataSource".into(), "succeeded".into()),
            ("dataSource".into(), "succeeded".into()),
            ("dataSource".into(), "failed".into()),
            ("unification".into(), "succeeded".into()),
            ("segment".into(), "succeeded".into()),
        ]
    );
    assert!(job["error"].as_str().unwrap().contains("Broken"));
    let segment = app
        .get(&format!(
            "/instances/{inst}/segments/{}",
            seg["segmentId"].as_str().unwrap()
        ))
        .await
        .json();
    assert_eq!(segment["memberCount"], 5);
    let source = app
        .get(&format!("/instances/{inst}/datasources/{broken}"))
        .await
        .json();
    assert_eq!(source["lastRefresh"]["status"], "failed");
    let full_events = count_rows(
        &app,
        "SELECT COUNT(*) FROM events WHERE instance_id = $1 AND event_type = 'fullRefreshCompleted'",
        &inst,
    )
    .await;
    assert_eq!(full_events, 1);
}

#[tokio::test]
async fn jobs_poll_202_then_200_and_survive_a_restart() {
    let app = spawn_app().await;
    let inst = app.create_instance("Jobs").await;
    let big = common::big_csv(60_000);
    let ds = app
        .create_source(
            &inst,
            json!({"name":"big","entityName":"Big","format":"csv","keyField":"id","content":big}),
        )
        .await;
    let first = app
        .post(
            &format!("/instances/{inst}/datasources/{ds}/refresh"),
            Value::Null,
        )
        .await;
    let second = app
        .post(
            &format!("/instances/{inst}/datasources/{ds}/refresh"),
            Value::Null,
        )
        .await;
    assert_eq!(second.status, 202);
    // Jobs of one instance run one at a time: the second is still queued or running now.
    let polled = app.get(second.header("location").unwrap()).await;
    assert_eq!(polled.status, 202, "{}", polled.text);
    assert!(["queued", "running"].contains(&polled.json()["status"].as_str().unwrap()));
    assert_eq!(
        app.wait_job(first.header("location").unwrap()).await["status"],
        "succeeded"
    );
    let done = app.wait_job(second.header("location").unwrap()).await;
    assert_eq!(done["result"]["rowsIngested"], 60_000);
    app.get(&format!("/instances/{inst}/jobs/nope"))
        .await
        .assert_problem(404);

    // A job left running by a crash is failed with a reason at the next start (SQLite: one
    // process per file; on PostgreSQL the heartbeat sweep does it, tested on its own).
    if !common::sqlite_only("jobs_poll_202_then_200_and_survive_a_restart (restart part)") {
        return;
    }
    sqlx::query("INSERT INTO jobs (id, instance_id, kind, status, created_at, started_at) VALUES ('crashed', ?, 'unification', 'running', '2026-01-01T00:00:00.000000Z', '2026-01-01T00:00:00.000000Z')")
        .bind(&inst)
        .execute(app.engine.store().pool())
        .await
        .unwrap();
    let dir = app.stop().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let job = app.get(&format!("/instances/{inst}/jobs/crashed")).await;
    assert_eq!(job.status, 200);
    assert_eq!(job.json()["status"], "failed");
    assert!(job.json()["error"]
        .as_str()
        .unwrap()
        .contains("interrupted"));
    assert_eq!(
        app.get(&format!("/instances/{inst}/entities")).await.json()["value"][0]["itemCount"],
        60_000
    );
}

#[tokio::test]
async fn a_refresh_schedule_queues_full_refreshes() {
    let app = spawn_app().await;
    app.post(
        "/instances",
        json!({"name":"bad","refreshSchedule":"every day"}),
    )
    .await
    .assert_problem(400);
    let r = app
        .post(
            "/instances",
            json!({"name":"Scheduled","refreshSchedule":"* * * * * *"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let inst = r.json()["instanceId"].as_str().unwrap().to_string();
    let mut jobs = 0i64;
    for _ in 0..50 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        jobs = count_rows(
            &app,
            "SELECT COUNT(*) FROM jobs WHERE instance_id = $1 AND kind = 'fullRefresh'",
            &inst,
        )
        .await;
        if jobs >= 2 {
            break;
        }
    }
    assert!(
        jobs >= 2,
        "the every-second schedule queued {jobs} full refreshes"
    );
}

/// Reads are cached (`--read-cache-mib`); every committed change must show in the next read,
/// and a cached read never crosses tenants. The same script runs with the cache off.
#[tokio::test]
async fn cached_reads_follow_every_change() {
    for cache_bytes in [64 * 1024 * 1024, 0] {
        let app = common::spawn_app_with(|s| s.read_cache_bytes = cache_bytes).await;
        let inst = app.create_instance("Cache").await;
        let file = app.tenant_file("people.csv");
        std::fs::write(&file, "Id,Name\n1,Ann\n2,Bob\n").unwrap();
        let ds = app
            .create_source(
                &inst,
                json!({"name":"people","entityName":"People","format":"csv","keyField":"Id","path":"people.csv"}),
            )
            .await;
        let refresh = format!("/instances/{inst}/datasources/{ds}/refresh");
        assert_eq!(app.run_job(&refresh).await["status"], "succeeded");
        let page = format!("/instances/{inst}/entities/People/items?$orderby=Id");
        let item = format!("/instances/{inst}/entities/People/items/1");
        let names = |r: common::Reply| -> Vec<String> {
            r.json()["value"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["Name"].as_str().unwrap().to_string())
                .collect()
        };
        for _ in 0..2 {
            assert_eq!(names(app.get(&page).await), ["Ann", "Bob"]);
            assert_eq!(app.get(&item).await.json()["Name"], "Ann");
        }
        // Another tenant asking for the very same URLs gets 404, not the cached answer.
        app.send(reqwest::Method::GET, &page, Some(common::KEY_B), None)
            .await
            .assert_problem(404);
        app.send(reqwest::Method::GET, &item, Some(common::KEY_B), None)
            .await
            .assert_problem(404);

        // An update shows at once in the item and in the page.
        let patched = app.patch(&item, json!({"Name":"Anna"})).await;
        assert_eq!(patched.status, 200, "{}", patched.text);
        assert_eq!(app.get(&item).await.json()["Name"], "Anna");
        assert_eq!(names(app.get(&page).await), ["Anna", "Bob"]);
        // So does a created item.
        let created = app
            .post(
                &format!("/instances/{inst}/entities/People/items"),
                json!({"Id":"3","Name":"Cy"}),
            )
            .await;
        assert_eq!(created.status, 201, "{}", created.text);
        assert_eq!(names(app.get(&page).await), ["Anna", "Bob", "Cy"]);

        // A refresh replaces everything: old cached pages and items are gone.
        std::fs::write(&file, "Id,Name\n1,Zoe\n4,Dan\n").unwrap();
        assert_eq!(app.run_job(&refresh).await["status"], "succeeded");
        assert_eq!(app.get(&item).await.json()["Name"], "Zoe");
        assert_eq!(names(app.get(&page).await), ["Zoe", "Dan"]);
        app.get(&format!("/instances/{inst}/entities/People/items/2"))
            .await
            .assert_problem(404);
        let entities = app.get(&format!("/instances/{inst}/entities")).await.json();
        assert_eq!(entities["value"][0]["itemCount"], 2);

        // Deleting the instance makes every cached read of it a 404.
        assert_eq!(app.delete(&format!("/instances/{inst}")).await.status, 204);
        app.get(&page).await.assert_problem(404);
        app.get(&item).await.assert_problem(404);
        app.get(&format!("/instances/{inst}/entities/People/schema"))
            .await
            .assert_problem(404);
    }
}

/// A field that holds explicit nulls keeps its type and is marked `x-nullable` in the entity's
/// schema (the connector's dynamic schema), from ingestion and from item writes alike.
#[tokio::test]
async fn explicit_nulls_make_a_field_nullable_in_the_entity_schema() {
    let app = spawn_app().await;
    let inst = app.create_instance("Nulls").await;
    let ds = app
        .create_source(
            &inst,
            json!({"name":"members","entityName":"Members","format":"jsonl","keyField":"id",
                   "content":"{\"id\":1,\"age\":41,\"name\":\"Ann\"}\n{\"id\":2,\"age\":null,\"name\":\"Bob\"}\n"}),
        )
        .await;
    let job = app
        .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let schema_url = format!("/instances/{inst}/entities/Members/schema");
    let schema = app.get(&schema_url).await.json();
    assert_eq!(schema["properties"]["age"]["type"], "integer", "{schema}");
    assert_eq!(schema["properties"]["age"]["x-nullable"], true, "{schema}");
    assert!(schema["properties"]["name"].get("x-nullable").is_none());

    let created = app
        .post(
            &format!("/instances/{inst}/entities/Members/items"),
            json!({"id":3,"name":null}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let schema = app.get(&schema_url).await.json();
    assert_eq!(schema["properties"]["name"]["type"], "string", "{schema}");
    assert_eq!(schema["properties"]["name"]["x-nullable"], true, "{schema}");
}

/// Power Automate runs "apply to each" loops in parallel: concurrent writes to one entity and to
/// one item must not lose each other's fields, in the items or in the entity's schema.
#[tokio::test]
async fn concurrent_item_writes_lose_nothing() {
    let app = spawn_app().await;
    let inst = app.create_instance("Parallel").await;
    let ds = app
        .create_source(
            &inst,
            json!({"name":"people","entityName":"People","format":"csv","keyField":"Id","content":"Id,Name\n1,Ann\n"}),
        )
        .await;
    app.run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
        .await;
    let base = format!("/instances/{inst}/entities/People/items");
    const N: usize = 24;

    // N creates, each bringing a field of its own.
    let creates = (0..N).map(|i| {
        let (app, base) = (&app, &base);
        async move {
            app.post(base, json!({"Id": format!("c{i}"), format!("Field{i}"): i}))
                .await
                .status
        }
    });
    for status in futures_util::future::join_all(creates).await {
        assert_eq!(status, 201);
    }
    // N patches of one item, each setting a field of its own.
    let patches = (0..N).map(|i| {
        let (app, base) = (&app, &base);
        async move {
            app.patch(&format!("{base}/1"), json!({format!("Patch{i}"): i}))
                .await
                .status
        }
    });
    for status in futures_util::future::join_all(patches).await {
        assert_eq!(status, 200);
    }

    let item = app.get(&format!("{base}/1")).await.json();
    let schema = app
        .get(&format!("/instances/{inst}/entities/People/schema"))
        .await
        .json();
    for i in 0..N {
        assert_eq!(item[format!("Patch{i}")], i, "lost patch {i}: {item}");
        for field in [format!("Field{i}"), format!("Patch{i}")] {
            assert_eq!(
                schema["properties"][&field]["type"], "integer",
                "{field} missing from the schema: {schema}"
            );
        }
    }
    let entities = app.get(&format!("/instances/{inst}/entities")).await.json();
    assert_eq!(entities["value"][0]["itemCount"], N + 1);
}

/// A data-source refresh commits while many clients write items: the refresh must not wait for
/// a second database connection while it holds the write lock (the writers queued for that
/// lock hold every connection), so nobody stalls, nothing fails and readiness keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_refresh_under_write_load_neither_stalls_nor_fails() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::{Duration, Instant};

    let app = spawn_app().await;
    let inst = app.create_instance("Busy").await;
    let people = app
        .create_source(
            &inst,
            json!({"name":"people","entityName":"People","format":"csv","keyField":"Id","content":"Id,Name\n1,Ann\n"}),
        )
        .await;
    app.run_job(&format!("/instances/{inst}/datasources/{people}/refresh"))
        .await;
    let small = app
        .create_source(
            &inst,
            json!({"name":"small","entityName":"Small","format":"csv","keyField":"Id","content":"Id,Name\n1,Ann\n2,Bob\n"}),
        )
        .await;

    const WRITERS: usize = 48;
    let refreshed = AtomicBool::new(false);
    let base = format!("/instances/{inst}/entities/People/items");
    let writers = (0..WRITERS).map(|w| {
        let (app, base, refreshed) = (&app, &base, &refreshed);
        async move {
            let mut statuses = Vec::new();
            for i in 0..400 {
                if refreshed.load(Ordering::Acquire) && i > 0 {
                    break;
                }
                // The plain client (no contract check per reply) keeps the load high.
                let r = app
                    .client
                    .post(app.url(base))
                    .header("X-API-Key", common::KEY_A)
                    .json(&json!({"Id": format!("w{w}-{i}")}))
                    .send()
                    .await
                    .expect("request sent");
                let status = r.status().as_u16();
                statuses.push((status, r.text().await.unwrap_or_default()));
            }
            statuses
        }
    });
    let refresh = async {
        // Let the writers queue up first.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = Instant::now();
        let job = app
            .run_job(&format!("/instances/{inst}/datasources/{small}/refresh"))
            .await;
        let ready = app.get("/ready").await.status;
        refreshed.store(true, Ordering::Release);
        (job, started.elapsed(), ready)
    };
    let (results, (job, took, ready)) = tokio::time::timeout(
        Duration::from_secs(120),
        futures_util::future::join(futures_util::future::join_all(writers), refresh),
    )
    .await
    .expect("the writers and the refresh finish");

    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["rowsIngested"], 2, "{job}");
    assert_eq!(ready, 200);
    for (status, text) in results.iter().flatten() {
        assert_eq!(*status, 201, "a write under load failed: {text}");
    }
    // The store's busy timeout is 30 s: a refresh that waited for it stalled everybody.
    assert!(
        took < Duration::from_secs(25),
        "the refresh took {took:?} under write load"
    );
    let small_items = app
        .get(&format!("/instances/{inst}/entities/Small/items"))
        .await
        .json();
    assert_eq!(small_items["value"].as_array().unwrap().len(), 2);
}

/// A server-side file missing where the refresh runs (with replicas: a `--data-dir` that is not
/// shared) fails the refresh with an error that says where it looked and what to do.
#[tokio::test]
async fn a_refresh_of_a_file_missing_on_this_server_fails_with_a_clear_reason() {
    let app = spawn_app().await;
    let inst = app.create_instance("Files").await;
    std::fs::write(app.tenant_file("people.csv"), "Id,Name\n1,Ann\n").unwrap();
    let ds = app
        .create_source(
            &inst,
            json!({"name":"people","entityName":"People","format":"csv","keyField":"Id","path":"people.csv"}),
        )
        .await;
    std::fs::remove_file(app.tenant_file("people.csv")).unwrap();
    let job = app
        .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("'people.csv' is not in this tenant's folder")
            && error.contains("every replica"),
        "{error}"
    );
}

/// `SELECT COUNT(*)` over the app's database, whichever backend it is (`sql` uses `$1` for the
/// instance id; SQLite reads `$1` as a numbered parameter too).
async fn count_rows(app: &TestApp, sql: &str, instance: &str) -> i64 {
    use sqlx::Connection;
    if common::on_postgres() {
        let url = std::fs::read_to_string(app.dir.path().join("database-url")).unwrap();
        let mut conn = sqlx::postgres::PgConnection::connect(&url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.replace("$1", "$1::uuid")))
            .bind(instance)
            .fetch_one(&mut conn)
            .await
            .unwrap()
    } else {
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_string()))
            .bind(instance)
            .fetch_one(app.engine.store().pool())
            .await
            .unwrap()
    }
}

/// Two replicas on one database each run the scheduler; every occurrence of a `*/2` schedule
/// still queues one full refresh (on SQLite the second replica is a second engine over the
/// same store; on PostgreSQL a second app on the same database).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_cron_occurrence_queues_one_refresh_across_replicas() {
    let app = spawn_app().await;
    let second_app;
    let second_engine;
    if common::on_postgres() {
        second_app = Some(spawn_app_in(app.dir.clone(), |_| {}).await);
        second_engine = None;
    } else {
        let engine = insights_connector::engine::Engine::new(
            app.engine.store().clone(),
            app.dir.path().to_path_buf(),
            0,
        );
        engine.start_scheduler(std::time::Duration::from_secs(1));
        second_app = None;
        second_engine = Some(engine);
    }
    let r = app
        .post(
            "/instances",
            json!({"name":"Every two seconds","refreshSchedule":"*/2 * * * * *"}),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let inst = r.json()["instanceId"].as_str().unwrap().to_string();
    tokio::time::sleep(std::time::Duration::from_secs(10)).await;
    let jobs = count_rows(
        &app,
        "SELECT COUNT(*) FROM jobs WHERE instance_id = $1 AND kind = 'fullRefresh'",
        &inst,
    )
    .await;
    let occurrences = count_rows(
        &app,
        "SELECT COUNT(*) FROM schedule_occurrences WHERE instance_id = $1",
        &inst,
    )
    .await;
    // 10 s hold five occurrences (one more or less at the edges); both schedulers saw each.
    assert!(
        (4..=6).contains(&jobs),
        "{jobs} full refreshes for five occurrences"
    );
    assert!(
        (occurrences - jobs).abs() <= 1,
        "{jobs} jobs for {occurrences} occurrences"
    );
    if let Some(engine) = second_engine {
        engine.shut_down();
    }
    if let Some(second) = second_app {
        second.stop().await;
    }
    app.stop().await;
}

/// Rows enough for a refresh that outlasts a heartbeat timeout of 400 ms several times over.
const SLOW_ROWS: usize = 600_000;

/// A job outlives the heartbeat timeout while its replica runs it (the heartbeat keeps it
/// alive), and on PostgreSQL a second replica starting on the same database leaves it alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_survives_its_timeout_and_a_replica_starting() {
    let timeout = std::time::Duration::from_millis(400);
    let short = move |s: &mut insights_connector::configuration::Settings| {
        s.job_heartbeat_timeout = timeout
    };
    let app = common::spawn_app_with(short).await;
    let inst = app.create_instance("Slow").await;
    let big = common::big_csv(SLOW_ROWS);
    let ds = app
        .create_source(
            &inst,
            json!({"name":"slow","entityName":"Slow","format":"csv","keyField":"id","content":big}),
        )
        .await;
    let r = app
        .post(
            &format!("/instances/{inst}/datasources/{ds}/refresh"),
            Value::Null,
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let location = r.header("location").unwrap().to_string();
    for _ in 0..100 {
        if app.get(&location).await.json()["status"] != "queued" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let second = if common::on_postgres() {
        Some(spawn_app_in(app.dir.clone(), short).await)
    } else {
        eprintln!("a second replica on one SQLite file is not supported: that part runs on PostgreSQL only");
        None
    };
    let done = app.wait_job(&location).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["result"]["rowsIngested"], SLOW_ROWS);
    let ran =
        |field: &str| chrono::DateTime::parse_from_rfc3339(done[field].as_str().unwrap()).unwrap();
    let took = (ran("completedAt") - ran("startedAt")).to_std().unwrap();
    // Otherwise the test proved nothing: the job must have outlived its timeout.
    eprintln!("the job ran {took:?}");
    assert!(
        took > timeout * 2,
        "the job ran {took:?}, not long enough to outlive the {timeout:?} timeout"
    );
    if let Some(second) = second {
        second.stop().await;
    }
    app.stop().await;
}

/// A job whose owner stopped heartbeating (a replica that died) is failed by the sweep with
/// the reason; a job whose owner still heartbeats is not.
#[tokio::test]
async fn a_job_whose_replica_stopped_heartbeating_is_failed_with_the_reason() {
    use insights_connector::store::{jobs::JobRecord, InstanceRecord, Store};
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let store = Store::connect(&common::database_for(dir.path()).await)
        .await
        .unwrap();
    let mut jobs = Vec::new();
    for name in ["departed", "alive"] {
        let instance = InstanceRecord {
            id: uuid::Uuid::new_v4().to_string(),
            tenant: "alpha".into(),
            name: name.into(),
            refresh_schedule: None,
            created_at: insights_connector::engine::now(),
        };
        store.insert_instance(&instance).await.unwrap();
        let job = JobRecord {
            id: uuid::Uuid::new_v4().to_string(),
            instance_id: instance.id.clone(),
            kind: "unification".into(),
            target_id: None,
            status: "queued".into(),
            created_at: insights_connector::engine::now(),
            started_at: None,
            completed_at: None,
            result: None,
            error: None,
        };
        store.insert_job(&job).await.unwrap();
        let claimed = store.claim_next_job(name).await.unwrap().unwrap();
        assert_eq!(claimed.id, job.id);
        jobs.push((instance.id, job.id));
    }
    let engine =
        insights_connector::engine::Engine::new(store.clone(), dir.path().to_path_buf(), 0);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert_eq!(
        store
            .heartbeat_jobs("alive", std::slice::from_ref(&jobs[1].1))
            .await
            .unwrap(),
        1
    );
    let timeout = std::time::Duration::from_secs(1);
    assert_eq!(engine.fail_stale_jobs(timeout).await.unwrap(), 1);
    let departed = store.get_job(&jobs[0].0, &jobs[0].1).await.unwrap();
    assert_eq!(departed.status, "failed");
    let reason = departed.error.unwrap();
    assert!(
        reason.starts_with("interrupted: the replica running it stopped heartbeating"),
        "{reason}"
    );
    assert!(departed.completed_at.is_some());
    let alive = store.get_job(&jobs[1].0, &jobs[1].1).await.unwrap();
    assert_eq!(alive.status, "running");
    // A heartbeat for a job another owner runs changes nothing.
    assert_eq!(
        store
            .heartbeat_jobs("departed", std::slice::from_ref(&jobs[1].1))
            .await
            .unwrap(),
        0
    );
    // The API shows the failed job with its reason.
    store.close().await;
    let app = spawn_app_in(dir, |_| {}).await;
    let job = app
        .get(&format!("/instances/{}/jobs/{}", jobs[0].0, jobs[0].1))
        .await;
    assert_eq!(job.status, 200, "{}", job.text);
    assert_eq!(job.json()["status"], "failed");
    assert!(job.json()["error"]
        .as_str()
        .unwrap()
        .contains("stopped heartbeating"));
    app.stop().await;
}

/// Text with U+0000 in an item is refused with a 400 on both backends (PostgreSQL cannot store
/// it in a document; before, it answered 500 there).
#[tokio::test]
async fn an_item_with_a_nul_character_is_refused_on_every_backend() {
    let app = spawn_app().await;
    let (inst, crm, _) = instance_with_sources(&app).await;
    app.run_job(&format!("/instances/{inst}/datasources/{crm}/refresh"))
        .await;
    let base = format!("/instances/{inst}/entities/CrmContacts/items");
    app.post(&base, json!({"Id": "n1", "City": "Bo\u{0}nn"}))
        .await
        .assert_problem(400);
    app.post(&base, json!({"Id": "n2", "Tags": [{"x\u{0}": 1}]}))
        .await
        .assert_problem(400);
    let created = app.post(&base, json!({"Id": "n3", "City": "Bonn"})).await;
    assert_eq!(created.status, 201, "{}", created.text);
    app.patch(&format!("{base}/n3"), json!({"City": "\u{0}"}))
        .await
        .assert_problem(400);
    assert_eq!(app.get(&format!("{base}/n3")).await.json()["City"], "Bonn");
}

/// U+0000 in a data source is refused the same way on both backends: inline content at once
/// (400), a server-side file when its refresh runs (a failed job naming the line).
#[tokio::test]
async fn a_data_source_with_a_nul_character_is_refused_on_every_backend() {
    let app = spawn_app().await;
    let inst = app.create_instance("Nul").await;
    app.post(
        &format!("/instances/{inst}/datasources"),
        json!({"name":"inline","entityName":"Inline","format":"csv","keyField":"Id",
               "content":"Id,Name\n1,A\u{0}n\n"}),
    )
    .await
    .assert_problem(400);
    std::fs::write(
        app.tenant_file("nul.jsonl"),
        "{\"Id\":1}\n{\"Id\":2,\"Name\":\"A\\u0000n\"}\n",
    )
    .unwrap();
    let ds = app
        .create_source(
            &inst,
            json!({"name":"file","entityName":"File","format":"jsonl","keyField":"Id","path":"nul.jsonl"}),
        )
        .await;
    let job = app
        .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
        .await;
    assert_eq!(job["status"], "failed", "{job}");
    let error = job["error"].as_str().unwrap();
    assert!(
        error.contains("line 2") && error.contains("U+0000"),
        "{error}"
    );
}

/// OData 4.01 as makers use it from Power Automate: `$top` caps all pages together, option
/// names ignore case and the `$`, bad options are refused rather than ignored, every selected
/// field is present, dates compare as dates, and a CSV column has one type that its schema
/// states (a postcode column with leading zeros is text in every item).
#[tokio::test]
async fn odata_4_01_options_paging_and_typed_columns() {
    let app = spawn_app().await;
    let inst = app.create_instance("Typed").await;
    let csv = "Id,Name,Postcode,Rating,Since,SeenAt\n\
               a1,Ann,4129,5,2024-01-31,2024-01-31T10:00:00Z\n\
               a2,,0812,3,2023-06-01,2024-01-31T10:00:00+02:00\n\
               a3,Bob,4223,,2024-03-01,2024-02-01T00:00:00.1234567Z\n\
               a4,Cy,4223,1,,\n";
    let ds = app
        .create_source(
            &inst,
            json!({"name":"people","entityName":"People","format":"csv","keyField":"Id","content":csv}),
        )
        .await;
    let job = app
        .run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let items = format!("/instances/{inst}/entities/People/items");
    let keys = |body: &Value| -> Vec<String> {
        body["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["Id"].as_str().unwrap().to_string())
            .collect()
    };
    let get = |query: &str| {
        let url = format!("{items}?{query}");
        let app = &app;
        async move { app.get(&url).await }
    };

    // One type per column, stated by the schema: the postcodes are all strings.
    let schema = app
        .get(&format!("/instances/{inst}/entities/People/schema"))
        .await
        .json();
    assert_eq!(
        schema["properties"]["Postcode"]["type"], "string",
        "{schema}"
    );
    assert_eq!(
        schema["properties"]["Rating"]["type"], "integer",
        "{schema}"
    );
    assert_eq!(schema["properties"]["Since"]["format"], "date", "{schema}");
    assert_eq!(
        schema["properties"]["SeenAt"]["format"], "date-time",
        "{schema}"
    );
    let body = get("$filter=Postcode%20eq%20'4223'").await.json();
    assert_eq!(keys(&body), ["a3", "a4"]);
    get("$filter=Postcode%20eq%204223")
        .await
        .assert_problem(400);

    // `not` of a function of a missing value is null: the nameless item is not kept.
    let body = get("$filter=not%20contains(Name,'n')").await.json();
    assert_eq!(keys(&body), ["a3", "a4"]);
    // Dates and date-times compare as such, with offsets and 7 fractional digits.
    let body = get("$filter=Since%20ge%202024-01-01").await.json();
    assert_eq!(keys(&body), ["a1", "a3"]);
    let body = get("$filter=SeenAt%20lt%202024-01-31T09:00:00.0000000Z")
        .await
        .json();
    assert_eq!(keys(&body), ["a2"]);

    // `$top` is a limit over all pages: the next link carries what remains.
    let first = app.get_pages_of(1, &format!("{items}?$top=2")).await.json();
    assert_eq!(keys(&first), ["a1"]);
    let next = first["nextLink"].as_str().unwrap().to_string();
    assert!(next.contains("%24top=1"), "{next}");
    let second = app.get_pages_of(1, &next).await.json();
    assert_eq!(keys(&second), ["a2"]);
    assert!(second.get("nextLink").is_none(), "{second}");
    let none = get("$top=0").await.json();
    assert_eq!(none["value"], json!([]));

    // Option names ignore case and the `$`; unknown, repeated and empty options are refused.
    let body = get("$Filter=Rating%20gt%202&ORDERBY=Rating%20DESC&SELECT=Id,Rating")
        .await
        .json();
    assert_eq!(
        body["value"],
        json!([{"Id":"a1","Rating":5},{"Id":"a2","Rating":3}])
    );
    for (query, needle) in [
        ("$foo=1", "unknown system query option"),
        (
            "$filter=Rating%20eq%201&$FILTER=Rating%20eq%202",
            "more than once",
        ),
        ("$filter=", "must not be empty"),
        ("$expand=Orders", "not supported"),
        (
            "$filter=Rating%20ne%20'x'",
            "cannot compare field 'Rating' (integer)",
        ),
        ("$filter=not%20Rating%20eq%205", "'not' needs a boolean"),
    ] {
        let body = get(query).await.assert_problem(400);
        assert!(
            body["detail"].as_str().unwrap().contains(needle),
            "{query}: {body}"
        );
    }

    // Every selected field is present, null where the item has none; `$count` counts them all.
    let body = get("$select=Name,Rating&$filter=Id%20eq%20'a2'%20or%20Id%20eq%20'a3'&$count=true")
        .await
        .json();
    assert_eq!(
        body["value"],
        json!([{"Name":null,"Rating":3},{"Name":"Bob","Rating":null}])
    );
    assert_eq!(body["@odata.count"], 2);

    // A written item must fit its columns.
    let refused = app
        .post(&items, json!({"Id":"a5","Postcode":4129}))
        .await
        .assert_problem(400);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("'Postcode' is a string column"),
        "{refused}"
    );
    app.patch(&format!("{items}/a1"), json!({"Since":"soon"}))
        .await
        .assert_problem(400);
}

/// Segments and measures take the whole filter language of GetItems, with its answers: a filter
/// without a SQL form (functions, arithmetic) is evaluated over the profiles.
#[tokio::test]
async fn segments_and_measures_take_every_filter_getitems_takes() {
    let app = spawn_app().await;
    let (inst, _) = unify(&app).await;
    let filter = "tolower(city) eq 'berlin' and length(firstName) ge 3 or spend mul 2 gt 200";
    let matching = all_items(
        &app,
        &inst,
        "Customer",
        &format!("&$filter={}", urlencode(filter)),
    )
    .await;
    assert!(!matching.is_empty());
    let seg = app
        .post(
            &format!("/instances/{inst}/segments"),
            json!({"name":"Computed","filter":filter}),
        )
        .await;
    assert_eq!(seg.status, 201, "{}", seg.text);
    let seg_id = seg.json()["segmentId"].as_str().unwrap().to_string();
    let job = app
        .run_job(&format!("/instances/{inst}/segments/{seg_id}/refresh"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["result"]["memberCount"], matching.len());
    let members = app
        .get(&format!("/instances/{inst}/segments/{seg_id}/members"))
        .await
        .json();
    let member_ids: BTreeSet<String> = ids(members["value"].as_array().unwrap(), "CustomerId");
    assert_eq!(member_ids, ids(&matching, "CustomerId"));

    let measure = app
        .post(
            &format!("/instances/{inst}/measures"),
            json!({"name":"Big spenders' spend","entityName":"Customer","aggregate":"sum",
                   "field":"spend","filter":"round(spend) ge 80"}),
        )
        .await;
    assert_eq!(measure.status, 201, "{}", measure.text);
    let id = measure.json()["measureId"].as_str().unwrap().to_string();
    let job = app
        .run_job(&format!("/instances/{inst}/measures/{id}/refresh"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let profiles = all_items(&app, &inst, "Customer", "").await;
    let expected: f64 = profiles
        .iter()
        .filter_map(|p| p["spend"].as_f64())
        .filter(|s| s.round() >= 80.0)
        .sum();
    assert_eq!(job["result"]["value"].as_f64(), Some(expected), "{job}");
}

/// A scored rule estimates its parameters from the data, links what it should, explains its
/// links, and can be previewed without writing profiles.
#[tokio::test]
async fn scored_rules_link_explain_and_preview() {
    let app = spawn_app().await;
    let (inst, crm, shop) = instance_with_sources(&app).await;
    for ds in [&crm, &shop] {
        app.run_job(&format!("/instances/{inst}/datasources/{ds}/refresh"))
            .await;
    }
    let mut config = unification_config();
    config["rules"] = json!([]);
    config["scoredRules"] = json!([{
        "name": "scored",
        "blocking": [["city"], ["lastName"]],
        "comparisons": [
            {"field":"email","normalization":"email","comparator":"jaroWinkler","levels":[0.95]},
            {"field":"lastName","normalization":"case-insensitive","comparator":"jaroWinkler","levels":[0.9]},
            {"field":"firstName","normalization":"case-insensitive","comparator":"jaroWinkler","levels":[0.85],"alsoAgainst":["lastName"]},
            {"field":"phone","normalization":"phone","comparator":"damerauLevenshtein","levels":[1.0]}
        ],
        "threshold": {"matchWeight": 0.0}
    }]);
    let preview = app
        .post(
            &format!("/instances/{inst}/unification/preview"),
            config.clone(),
        )
        .await;
    assert_eq!(preview.status, 200, "{}", preview.text);
    let preview = preview.json();
    assert_eq!(preview["sourceRecords"], 8);
    let rule = &preview["rules"][0];
    assert_eq!(rule["kind"], "scored", "{preview}");
    assert!(rule["candidatePairs"].as_u64().unwrap() > 0, "{preview}");
    assert_eq!(rule["blocks"].as_array().unwrap().len(), 2, "{preview}");
    assert_eq!(
        rule["parameters"]["comparisons"].as_array().unwrap().len(),
        4
    );
    for sample in preview["samples"].as_array().unwrap() {
        assert_eq!(sample["records"].as_array().unwrap().len(), 2, "{sample}");
        assert_eq!(sample["matched"], sample["weight"].as_f64().unwrap() >= 0.0);
    }
    // Nothing was written.
    app.get(&format!("/instances/{inst}/entities/Customer/items"))
        .await
        .assert_problem(404);

    let set = app
        .put(&format!("/instances/{inst}/unification"), config.clone())
        .await;
    assert_eq!(set.status, 200, "{}", set.text);
    assert_eq!(set.json()["scoredRules"], config["scoredRules"]);
    let job = app
        .run_job(&format!("/instances/{inst}/unification/run"))
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["result"]["rules"][0]["pairsMatched"],
        rule["pairsMatched"]
    );
    let profiles = all_items(&app, &inst, "Customer", "").await;
    assert_eq!(job["result"]["unifiedProfiles"], preview["unifiedProfiles"]);
    assert_eq!(
        profiles.len() as u64,
        preview["unifiedProfiles"].as_u64().unwrap()
    );
    for p in &profiles {
        let linked = p["sources"].as_array().unwrap().len() > 1;
        assert_eq!(p["matchedBy"] == json!(["scored"]), linked, "{p}");
        // A linked profile carries its best match weight, at or above the threshold (0).
        assert_eq!(
            p["matchWeight"].as_f64().is_some_and(|w| w >= 0.0),
            linked,
            "{p}"
        );
    }
    // A bad scored rule is refused with the reason.
    config["scoredRules"][0]["blocking"] = json!([]);
    let bad = app
        .post(&format!("/instances/{inst}/unification/preview"), config)
        .await
        .assert_problem(400);
    assert!(
        bad["detail"].as_str().unwrap().contains("blocking"),
        "{bad}"
    );
}
