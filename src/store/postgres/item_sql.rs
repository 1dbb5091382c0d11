//! The SQL of the typed item query ([`crate::item_query`]) for PostgreSQL over `data jsonb`,
//! with the answers of the SQLite backend (`sqlite/item_sql.rs`). No user text ever enters the
//! SQL: field names and literals are all `$n` parameters ([`Bind`]); a placeholder is numbered
//! by its position in the one bind list of the statement, so a field used twice is bound once.
//!
//! Comparisons yield true or false; functions of a non-string and a non-boolean field as a
//! filter yield NULL, so SQL's three-valued `AND`/`OR`/`NOT` are OData's. Every comparison is guarded by `jsonb_typeof` inside a `CASE` (PostgreSQL does not promise
//! to evaluate `AND` left to right, and a cast of a string to `numeric` fails). Numbers compare
//! as `numeric` (JSON numbers are exact decimals in `jsonb`), strings as text `COLLATE "C"`
//! (bytes of UTF-8 = code points, SQLite's `BINARY`), booleans as `boolean`.
//!
//! Sort keys reproduce SQLite's order of `json_extract` values: NULL (missing or JSON null) <
//! numbers and booleans (SQLite reads `true`/`false` as 1/0) by value < text (strings, and
//! arrays and objects as their JSON text) by bytes.

use crate::item_query::{
    literal_num, Aggregate, CompareOp, JsonKind, Literal, Num, Predicate, StringFunction,
};

/// A value bound to a `$n` placeholder of dynamically built (never user-spliced) SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Integer(i64),
    Real(f64),
    Text(String),
}

pub type PgQuery<'q> = sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>;

pub fn bind_all<'q>(mut q: PgQuery<'q>, binds: &'q [Bind]) -> PgQuery<'q> {
    for b in binds {
        q = match b {
            Bind::Integer(i) => q.bind(*i),
            Bind::Real(r) => q.bind(*r),
            Bind::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// Pushes a bind and returns its placeholder.
pub fn param(binds: &mut Vec<Bind>, bind: Bind) -> String {
    binds.push(bind);
    format!("${}", binds.len())
}

/// The literal of a number comparison twice, for the two kinds of number SQLite reads from
/// JSON: its exact value as `numeric` text, compared with integers that fit `i64` (SQLite
/// compares an INTEGER with an INTEGER or REAL exactly), and the f64 SQLite binds, compared
/// with every other number read as `float8` (SQLite's REAL). `None`: NaN, which SQLite binds
/// as NULL, so that no comparison holds.
fn number_binds(x: f64) -> Option<(String, f64)> {
    let exact = match literal_num(x) {
        Num::Int(i) => i.to_string(),
        Num::Real(r) if r.is_nan() => return None,
        Num::Real(r) if r.is_infinite() => if r > 0.0 { "Infinity" } else { "-Infinity" }.into(),
        // Every finite f64 has a finite decimal expansion; 1,100 places hold the longest.
        Num::Real(r) => {
            let text = format!("{r:.1100}");
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        }
    };
    Some((exact, x))
}

/// Whether the JSON number `v` (a `jsonb` expression) is one SQLite reads as an INTEGER: an
/// integer literal within `i64`. (`jsonb` keeps `1.0` but writes `1e2` as `100`, which SQLite
/// reads as REAL; the two agree on every such value up to 2^53.)
fn sqlite_integer(v: &str) -> String {
    format!(
        "({v}::text ~ '^-?[0-9]{{1,19}}$' \
         AND {v}::numeric BETWEEN -9223372036854775808 AND 9223372036854775807)"
    )
}

/// Compiles the predicate to a PostgreSQL boolean expression (true, false or NULL, with the
/// semantics of [`Predicate`]) over the `jsonb` column `json_column`, a trusted identifier.
/// Every field name and literal becomes a `$n` placeholder whose value is pushed to `binds`.
pub fn filter_sql(predicate: &Predicate, json_column: &str, binds: &mut Vec<Bind>) -> String {
    let mut sql = String::new();
    write_filter(predicate, json_column, binds, &mut sql);
    sql
}

/// The `jsonb_typeof` name of a kind of JSON value.
fn json_type(kind: JsonKind) -> &'static str {
    match kind {
        JsonKind::Text => "string",
        JsonKind::Number => "number",
        JsonKind::Boolean => "boolean",
    }
}

fn write_filter(predicate: &Predicate, col: &str, binds: &mut Vec<Bind>, sql: &mut String) {
    match predicate {
        Predicate::IsNull { field, column } => {
            let f = param(binds, Bind::Text(field.clone()));
            sql.push_str(&format!(
                "(jsonb_typeof({col} -> {f}) IS DISTINCT FROM '{}')",
                json_type(*column)
            ));
        }
        Predicate::Compare { field, op, value } => {
            let sql_op = match op {
                CompareOp::Eq | CompareOp::Ne => "=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
            };
            let f = param(binds, Bind::Text(field.clone()));
            let v = format!("({col} -> {f})");
            let (json_type, left, right) = match value {
                Literal::Number(x) => {
                    let Some((exact, real)) = number_binds(*x) else {
                        // NaN: nothing equals it, so `eq` and the orderings are false, `ne` true.
                        sql.push_str(if *op == CompareOp::Ne {
                            "(true)"
                        } else {
                            "(false)"
                        });
                        return;
                    };
                    let exact = param(binds, Bind::Text(exact));
                    let real = param(binds, Bind::Real(real));
                    let integer = sqlite_integer(&v);
                    let leaf = format!(
                        "(CASE WHEN jsonb_typeof({v}) IS DISTINCT FROM 'number' THEN false \
                         WHEN {integer} THEN {v}::numeric {sql_op} {exact}::numeric \
                         ELSE {v}::float8 {sql_op} {real}::float8 END)"
                    );
                    sql.push_str(&if *op == CompareOp::Ne {
                        format!("(NOT {leaf})")
                    } else {
                        leaf
                    });
                    return;
                }
                Literal::String(s) => (
                    "string",
                    format!("(({col} ->> {f}) COLLATE \"C\")"),
                    param(binds, Bind::Text(s.clone())),
                ),
                Literal::Bool(b) => (
                    "boolean",
                    format!("{v}::boolean"),
                    format!("{}::boolean", param(binds, Bind::Text(b.to_string()))),
                ),
            };
            let leaf = format!(
                "(CASE WHEN jsonb_typeof({v}) = '{json_type}' \
                 THEN {left} {sql_op} {right} ELSE false END)"
            );
            if *op == CompareOp::Ne {
                sql.push_str(&format!("(NOT {leaf})"));
            } else {
                sql.push_str(&leaf);
            }
        }
        Predicate::Function { func, field, value } => {
            let f = param(binds, Bind::Text(field.clone()));
            if value.is_empty() {
                sql.push_str(&format!(
                    "(CASE WHEN jsonb_typeof({col} -> {f}) = 'string' THEN true END)"
                ));
                return;
            }
            let s = format!("(({col} ->> {f}) COLLATE \"C\")");
            let v = param(binds, Bind::Text(value.clone()));
            // Text functions count characters and compare bytes: for UTF-8 the same answers as
            // SQLite's byte-wise `instr`/`substr` on BLOBs.
            let test = match func {
                StringFunction::Contains => format!("strpos({s}, {v}) > 0"),
                StringFunction::StartsWith => format!("strpos({s}, {v}) = 1"),
                StringFunction::EndsWith => {
                    let n = param(binds, Bind::Integer(value.chars().count() as i64));
                    format!("right({s}, {n}::int) = {v}")
                }
            };
            // NULL unless the field is a string: a function of null is null.
            sql.push_str(&format!(
                "(CASE WHEN jsonb_typeof({col} -> {f}) = 'string' THEN {test} END)"
            ));
        }
        Predicate::IsTrue { field } => {
            let f = param(binds, Bind::Text(field.clone()));
            sql.push_str(&format!(
                "(CASE WHEN jsonb_typeof({col} -> {f}) = 'boolean' THEN ({col} -> {f})::boolean END)"
            ));
        }
        Predicate::Const(value) => sql.push_str(match value {
            Some(true) => "(true)",
            Some(false) => "(false)",
            None => "(NULL::boolean)",
        }),
        Predicate::And(a, b) | Predicate::Or(a, b) => {
            let joiner = if matches!(predicate, Predicate::And(..)) {
                " AND "
            } else {
                " OR "
            };
            sql.push('(');
            write_filter(a, col, binds, sql);
            sql.push_str(joiner);
            write_filter(b, col, binds, sql);
            sql.push(')');
        }
        Predicate::Is(e, value) => {
            sql.push('(');
            write_filter(e, col, binds, sql);
            sql.push_str(match value {
                Some(true) => " IS TRUE)",
                Some(false) => " IS FALSE)",
                None => " IS NULL)",
            });
        }
        Predicate::Not(e) => {
            sql.push_str("(NOT ");
            write_filter(e, col, binds, sql);
            sql.push(')');
        }
    }
}

/// The JSON number `v` as `numeric`, valued as SQLite reads it: exact when an INTEGER,
/// otherwise the f64 it rounds to (its shortest text, which orders as the f64 does).
fn number_value(v: &str) -> String {
    let integer = sqlite_integer(v);
    format!("(CASE WHEN {integer} THEN {v}::numeric ELSE {v}::float8::text::numeric END)")
}

/// The `ORDER BY` terms of one sort key (ascending or descending as `direction` says): the
/// type rank of SQLite's order, then the value among numbers, then the text among texts. Within
/// one rank the other term is NULL for every row, so it never decides.
pub fn order_sql(field: &str, descending: bool, binds: &mut Vec<Bind>) -> String {
    let f = param(binds, Bind::Text(field.to_string()));
    let v = format!("(data -> {f})");
    let dir = if descending { "DESC" } else { "ASC" };
    let number = number_value(&v);
    format!(
        "(CASE jsonb_typeof({v}) WHEN 'number' THEN 1 WHEN 'boolean' THEN 1 \
           WHEN 'string' THEN 2 WHEN 'array' THEN 2 WHEN 'object' THEN 2 ELSE 0 END) {dir}, \
         (CASE jsonb_typeof({v}) \
           WHEN 'number' THEN {number} \
           WHEN 'boolean' THEN CASE WHEN {v}::boolean THEN 1 ELSE 0 END END) {dir}, \
         (CASE jsonb_typeof({v}) WHEN 'string' THEN data ->> {f} \
           WHEN 'array' THEN {v}::text WHEN 'object' THEN {v}::text END) COLLATE \"C\" {dir}"
    )
}

/// The SQL of an aggregate over `data` (a `double precision` or NULL), with its binds pushed.
/// As in SQLite: `count` of a field counts the items where it is not null, the numeric
/// aggregates consider JSON numbers only (and `sum` of none is 0), `distinctCount` counts
/// distinct non-null values, a number and a boolean equal when SQLite's 1/0 reading says so.
pub fn aggregate_sql(aggregate: Aggregate, field: Option<&str>, binds: &mut Vec<Bind>) -> String {
    let Some(field) = field else {
        return match aggregate {
            Aggregate::Count => "count(*)::float8".into(),
            // Without a field there is no value to aggregate (SQLite: the key `$.""`).
            _ => aggregate_sql(aggregate, Some(""), binds),
        };
    };
    let f = param(binds, Bind::Text(field.to_string()));
    let v = format!("(data -> {f})");
    let number = format!("CASE WHEN jsonb_typeof({v}) = 'number' THEN {v}::numeric END");
    let value = number_value(&v);
    match aggregate {
        Aggregate::Count => format!("count(NULLIF(jsonb_typeof({v}), 'null'))::float8"),
        Aggregate::Sum => format!("coalesce(sum({number}), 0)::float8"),
        Aggregate::Avg => format!("avg({number})::float8"),
        Aggregate::Min => format!("min({number})::float8"),
        Aggregate::Max => format!("max({number})::float8"),
        Aggregate::DistinctCount => format!(
            "count(DISTINCT CASE jsonb_typeof({v}) \
               WHEN 'number' THEN 'n' || trim_scale({value})::text \
               WHEN 'boolean' THEN CASE WHEN {v}::boolean THEN 'n1' ELSE 'n0' END \
               WHEN 'string' THEN 's' || (data ->> {f}) \
               WHEN 'array' THEN 's' || {v}::text WHEN 'object' THEN 's' || {v}::text END)::float8"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::odata::tests_support::{filter, generated_filters, orderby, predicate};
    use crate::item_query::ItemQuery;
    use crate::store::{DatabaseUrl, Store};
    use sqlx::Connection;

    #[test]
    fn sql_never_contains_user_text() {
        let text = "s_evil_field eq 'x''); DROP TABLE items; --' or contains(s_other, 'q?u''ote') \
                    or startswith(s_third, 'zz') or fourth ne -12.5 or fifth eq null";
        let mut binds = Vec::new();
        let sql = filter_sql(&predicate(text), "data", &mut binds);
        for needle in [
            "evil", "DROP", "s_other", "q?u", "third", "zz", "fourth", "12", "fifth",
        ] {
            assert!(!sql.contains(needle), "{needle} in {sql}");
        }
        assert!(sql.contains(&format!("${}", binds.len())));
        assert!(binds.contains(&Bind::Text("x'); DROP TABLE items; --".into())));
        assert!(binds.contains(&Bind::Real(-12.5)));
    }

    #[test]
    fn number_literals_bind_their_exact_value() {
        assert_eq!(number_binds(1.0).unwrap().0, "1");
        assert_eq!(number_binds(-0.0).unwrap().0, "0");
        assert_eq!(number_binds(1.5).unwrap().0, "1.5");
        assert_eq!(
            number_binds(0.1).unwrap().0,
            "0.1000000000000000055511151231257827021181583404541015625"
        );
        assert_eq!(number_binds(9.3e18).unwrap().0, "9300000000000000000");
        assert_eq!(number_binds(f64::NAN), None);
    }

    /// Items of every JSON type, big and fractional numbers, non-ASCII text.
    const ITEMS: &[&str] = &[
        r#"{"a": 1, "s": "Ann", "b": true, "n": 3}"#,
        r#"{"a": 1.5, "s": "ann", "b": false}"#,
        r#"{"a": -3, "s": "Bob-Ann", "b": null}"#,
        r#"{"a": "1", "s": 7}"#,
        r#"{"a": 9223372036854775807, "s": ""}"#,
        r#"{"a": [1], "s": {"x": 1}, "b": "true"}"#,
        r#"{}"#,
        r#"[1, 2]"#,
        r#"{"a": 1.0, "s": "é", "b": 1}"#,
        r#"{"a": 0.1, "s": "éa", "b": 0}"#,
        r#"{"a": 1e-7, "s": "Zoë", "n": "x"}"#,
        r#"{"a": 12345678901234567891, "s": "日本語"}"#,
        r#"{"a": 9223372036854775808, "s": "a\u00e9b"}"#,
        r#"{"a": 2, "s": "😀x", "n": [2]}"#,
        r#"{"a": 1e300, "s": "ab", "n": {"k": "v"}}"#,
        r#"{"a": 0.30000000000000004, "s": "B", "n": 3.0}"#,
        r#"{"a": -9223372036854775808, "s": "ﬀ", "n": false}"#,
        r#"{"a": 2.5, "s": "A"}"#,
        r#"{"a": 2.5, "s": "A\u007f"}"#,
    ];

    const FILTERS: &[&str] = &[
        "a eq 1",
        "a ne 1",
        "a gt 1",
        "a ge 1",
        "a lt 1.5",
        "a le -3",
        "a eq null",
        "a ne null",
        "a eq 0.1",
        "a gt 0.1",
        "a lt 0.30000000000000004",
        "a eq 0.30000000000000004",
        "a ge 100000000000000000000000",
        "a eq 12345678901234567891",
        "a gt 9223372036854775807",
        "a ge 9223372036854775807",
        "a lt -9223372036854775807",
        "a eq 9223372036854775808",
        "a eq -0",
        "a gt 2.4 and a lt 2.6",
        "s eq 'Ann'",
        "s lt 'a'",
        "s gt ''",
        "s eq 'é'",
        "s gt 'Z'",
        "s lt 'é'",
        "s ge '日'",
        "s lt 'A\u{7f}'",
        "b eq true",
        "b ne false",
        "b lt true",
        "b gt false",
        // `n` holds a number, a string, an array and an object: as a number column the others
        // read as null.
        "n eq 3",
        "n ne 3",
        "n eq null",
        "n ge null",
        "contains(s,'Ann')",
        "startswith(s,'B')",
        "endswith(s,'nn')",
        "contains(s,'')",
        "endswith(s,'é')",
        "startswith(s,'é')",
        "contains(s,'本')",
        "endswith(s,'x')",
        "endswith(s,'b')",
        "not contains(s,'a')",
        "not (a gt 0 or s eq 'x')",
        "a gt 1 and b eq false",
        "not b eq null",
        "a lt 9007199254740992",
    ];

    const ORDERS: &[&str] = &[
        "a",
        "a desc",
        "s",
        "s desc",
        "b",
        "b desc",
        "n",
        "n desc",
        "b, a desc",
        "n desc, s",
    ];

    /// A fresh database on the test server (`CONNECTOR_TEST_POSTGRES_URL`), or `None`.
    async fn fresh_postgres() -> Option<Store> {
        let server = std::env::var("CONNECTOR_TEST_POSTGRES_URL")
            .ok()
            .filter(|u| !u.is_empty())?;
        let name = format!("unit_{}", uuid::Uuid::new_v4().simple());
        let mut admin = sqlx::PgConnection::connect(&server).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut admin)
            .await
            .unwrap();
        let (base, query) = server.split_once('?').unwrap_or((&server, ""));
        let authority_end = base.find("://").map(|i| i + 3).unwrap_or(0);
        let root = match base[authority_end..].find('/') {
            Some(i) => &base[..authority_end + i],
            None => base,
        };
        let query = if query.is_empty() {
            String::new()
        } else {
            format!("?{query}")
        };
        let url = format!("{root}/{name}{query}");
        Some(Store::connect(&DatabaseUrl::Postgres(url)).await.unwrap())
    }

    /// The entity `E` of a new instance holding `ITEMS` (keys `k00`, `k01`, …).
    async fn load(store: &Store) -> crate::store::entities::EntityRecord {
        let instance = uuid::Uuid::new_v4();
        match &store.db {
            crate::store::Db::Postgres(db) => {
                sqlx::query(
                    "INSERT INTO instances (id, tenant, name, created_at) VALUES ($1, 't', 'i', now())",
                )
                .bind(instance)
                .execute(&db.pool)
                .await
                .unwrap();
            }
            crate::store::Db::Sqlite(_) => {
                sqlx::query(
                    "INSERT INTO instances (id, tenant, name, created_at)
                     VALUES (?, 't', 'i', '2024-01-01T00:00:00.000000Z')",
                )
                .bind(instance.to_string())
                .execute(store.pool())
                .await
                .unwrap();
            }
        }
        let entity = store
            .ensure_entity(&instance.to_string(), "E", "source", "id")
            .await
            .unwrap();
        let generation = store.begin_generation(&entity).await.unwrap();
        let rows: Vec<(String, String)> = ITEMS
            .iter()
            .enumerate()
            .map(|(n, item)| (format!("k{n:02}"), item.to_string()))
            .collect();
        store
            .stage_items(entity.id, generation, rows.clone())
            .await
            .unwrap();
        let mut tx = store.begin().await.unwrap();
        let schema = serde_json::json!({"type": "object", "properties": {}});
        Store::switch_generation(
            &mut tx,
            entity.id,
            generation,
            rows.len() as i64,
            "id",
            &schema,
        )
        .await
        .unwrap();
        store.commit(tx).await.unwrap();
        store.entity(&instance.to_string(), "E").await.unwrap()
    }

    async fn keys(
        store: &Store,
        entity: &crate::store::entities::EntityRecord,
        q: ItemQuery,
    ) -> Vec<String> {
        store
            .query_items(entity, &q)
            .await
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect()
    }

    /// Filters, sort orders and aggregates over the same items give SQLite's answers (and
    /// filters the in-memory evaluation's).
    #[tokio::test]
    async fn postgres_answers_equal_sqlite_answers() {
        let Some(pg) = fresh_postgres().await else {
            eprintln!("CONNECTOR_TEST_POSTGRES_URL is not set: skipped");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let lite = Store::open(dir.path()).await.unwrap();
        let (pg_entity, lite_entity) = (load(&pg).await, load(&lite).await);
        let page = |filter: Option<crate::item_query::Filter>, order_by| ItemQuery {
            filter,
            order_by,
            limit: 1000,
            offset: 0,
            ..ItemQuery::default()
        };
        let generated = generated_filters(11, 300);
        for text in FILTERS.iter().map(|t| t.to_string()).chain(generated) {
            let filter = filter(&text);
            let want = keys(&lite, &lite_entity, page(Some(filter.clone()), vec![])).await;
            let got = keys(&pg, &pg_entity, page(Some(filter.clone()), vec![])).await;
            assert_eq!(got, want, "$filter={text}");
            let in_memory: Vec<String> = ITEMS
                .iter()
                .enumerate()
                .filter(|(_, item)| filter.expr.matches(&serde_json::from_str(item).unwrap()))
                .map(|(n, _)| format!("k{n:02}"))
                .collect();
            assert_eq!(got, in_memory, "$filter={text} in memory");
        }
        for text in ORDERS {
            let order = orderby(text);
            let want = keys(&lite, &lite_entity, page(None, order.clone())).await;
            let got = keys(&pg, &pg_entity, page(None, order)).await;
            assert_eq!(got, want, "$orderby={text}");
        }
        let paged = ItemQuery {
            limit: 3,
            offset: 4,
            ..page(None, orderby("s desc"))
        };
        assert_eq!(
            keys(&pg, &pg_entity, paged.clone()).await,
            keys(&lite, &lite_entity, paged).await
        );
        use crate::item_query::Aggregate::*;
        let filters = [None, Some(predicate("s ne 'Ann'"))];
        for aggregate in [Count, Sum, Avg, Min, Max, DistinctCount] {
            for field in [None, Some("a"), Some("s"), Some("b"), Some("n"), Some("zz")] {
                for filter in &filters {
                    let want = lite
                        .aggregate(&lite_entity, aggregate, field, filter.as_ref())
                        .await
                        .unwrap();
                    let got = pg
                        .aggregate(&pg_entity, aggregate, field, filter.as_ref())
                        .await
                        .unwrap();
                    let close = match (got, want) {
                        (Some(g), Some(w)) => g == w || (g - w).abs() <= w.abs() * 1e-12,
                        (g, w) => g == w,
                    };
                    assert!(
                        close,
                        "{aggregate:?}({field:?}) {filter:?}: {got:?} vs {want:?}"
                    );
                }
            }
        }
        for key in ["k00", "k11", "k07"] {
            let text = pg.get_item(&pg_entity, key).await.unwrap();
            let lite_text = lite.get_item(&lite_entity, key).await.unwrap();
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(&text).unwrap(),
                serde_json::from_str::<serde_json::Value>(&lite_text).unwrap()
            );
        }
        assert!(matches!(
            pg.get_segment(&pg_entity.instance_id, "not-a-uuid").await,
            Err(crate::store::StoreError::NotFound)
        ));
        assert!(matches!(
            pg.entity("not-a-uuid", "E").await,
            Err(crate::store::StoreError::NotFound)
        ));
    }
}
