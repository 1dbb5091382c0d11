//! The SQL of the typed item query ([`crate::item_query`]) for SQLite's JSON functions: filters
//! compile to boolean expressions over an item's JSON text, sort keys and aggregates to fixed
//! expressions. No user text ever enters the SQL: field paths and literals are all `?`
//! parameters ([`Bind`]), in order of appearance.
//!
//! Comparisons yield 0 or 1; functions of a non-string and a non-boolean field as a filter
//! yield NULL, so SQL's three-valued `AND`/`OR`/`NOT` are OData's. Every comparison is guarded
//! by `json_type`, so SQLite's cross-type ordering (numbers < text) is never used. The SQL assumes a UTF-8 database (SQLite's default).

use crate::item_query::{
    literal_num, Aggregate, CompareOp, JsonKind, Literal, Num, Predicate, StringFunction,
};

/// A value bound to a `?` placeholder of dynamically built (never user-spliced) SQL.
#[derive(Debug, Clone, PartialEq)]
pub enum Bind {
    Integer(i64),
    Real(f64),
    Text(String),
}

impl rusqlite::ToSql for Bind {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        Ok(match self {
            Bind::Integer(i) => (*i).into(),
            Bind::Real(f) => (*f).into(),
            Bind::Text(s) => s.as_str().into(),
        })
    }
}

pub type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

pub fn bind_all<'q>(mut q: SqliteQuery<'q>, binds: &'q [Bind]) -> SqliteQuery<'q> {
    for b in binds {
        q = match b {
            Bind::Integer(i) => q.bind(*i),
            Bind::Real(f) => q.bind(*f),
            Bind::Text(s) => q.bind(s.as_str()),
        };
    }
    q
}

/// The SQLite JSON path of a top-level key, e.g. `$."firstName"`. The key is quoted so that
/// dots and brackets are taken literally; it must not contain `"` (parsed field names never do).
pub fn field_path(field: &str) -> String {
    format!("$.\"{field}\"")
}

/// The value `json_extract` gives for a JSON value equal to a literal (`true` is 1).
pub fn literal_bind(value: &Literal) -> Bind {
    match value {
        Literal::Bool(b) => Bind::Integer(i64::from(*b)),
        Literal::Number(x) => number_param(*x),
        Literal::String(s) => Bind::Text(s.clone()),
    }
}

/// A literal is bound as INTEGER when it is integral and fits, otherwise as REAL.
fn number_param(x: f64) -> Bind {
    match literal_num(x) {
        Num::Int(i) => Bind::Integer(i),
        Num::Real(r) => Bind::Real(r),
    }
}

/// Compiles the predicate to a SQLite boolean expression (0, 1 or NULL, with the semantics of
/// [`Predicate`]) over the JSON text in `json_column`, a trusted identifier. Every field path
/// and literal becomes a `?` placeholder whose value is pushed to `binds`, in order.
pub fn filter_sql(predicate: &Predicate, json_column: &str, binds: &mut Vec<Bind>) -> String {
    let mut sql = String::new();
    write_filter(predicate, json_column, binds, &mut sql);
    sql
}

/// The `json_type` names of a kind of JSON value.
fn json_types(kind: JsonKind) -> &'static str {
    match kind {
        JsonKind::Text => "'text'",
        JsonKind::Number => "'integer', 'real'",
        JsonKind::Boolean => "'true', 'false'",
    }
}

fn write_filter(predicate: &Predicate, col: &str, binds: &mut Vec<Bind>, sql: &mut String) {
    match predicate {
        Predicate::IsNull { field, column } => {
            sql.push_str(&format!(
                "(coalesce(json_type({col}, ?), 'null') NOT IN ({}))",
                json_types(*column)
            ));
            binds.push(Bind::Text(field_path(field)));
        }
        Predicate::Compare { field, op, value } => {
            let (kind, param) = match value {
                Literal::Bool(b) => (JsonKind::Boolean, Bind::Integer(i64::from(*b))),
                Literal::Number(x) => (JsonKind::Number, number_param(*x)),
                Literal::String(s) => (JsonKind::Text, Bind::Text(s.clone())),
            };
            let sql_op = match op {
                CompareOp::Eq | CompareOp::Ne => "=",
                CompareOp::Gt => ">",
                CompareOp::Ge => ">=",
                CompareOp::Lt => "<",
                CompareOp::Le => "<=",
            };
            let leaf = format!(
                "((json_type({col}, ?) IN ({}) AND json_extract({col}, ?) {sql_op} ?) IS 1)",
                json_types(kind)
            );
            if *op == CompareOp::Ne {
                sql.push_str(&format!("(NOT {leaf})"));
            } else {
                sql.push_str(&leaf);
            }
            binds.push(Bind::Text(field_path(field)));
            binds.push(Bind::Text(field_path(field)));
            binds.push(param);
        }
        Predicate::Function { func, field, value } => {
            binds.push(Bind::Text(field_path(field)));
            if value.is_empty() {
                sql.push_str(&format!(
                    "(CASE WHEN json_type({col}, ?) = 'text' THEN 1 END)"
                ));
                return;
            }
            binds.push(Bind::Text(field_path(field)));
            // `instr` on text compares bytes and copes with embedded NULs, unlike
            // `length`/`substr` on text, so `endswith` works on BLOBs (UTF-8 bytes).
            let test = match func {
                StringFunction::Contains => format!("instr(json_extract({col}, ?), ?) > 0"),
                StringFunction::StartsWith => format!("instr(json_extract({col}, ?), ?) = 1"),
                StringFunction::EndsWith => {
                    binds.push(Bind::Integer(-(value.len() as i64)));
                    format!("substr(CAST(json_extract({col}, ?) AS BLOB), ?) = CAST(? AS BLOB)")
                }
            };
            binds.push(Bind::Text(value.clone()));
            // NULL unless the field is a string: a function of null is null.
            sql.push_str(&format!(
                "(CASE WHEN json_type({col}, ?) = 'text' THEN ({test}) IS 1 END)"
            ));
        }
        Predicate::IsTrue { field } => {
            sql.push_str(&format!(
                "(CASE json_type({col}, ?) WHEN 'true' THEN 1 WHEN 'false' THEN 0 END)"
            ));
            binds.push(Bind::Text(field_path(field)));
        }
        Predicate::Const(value) => sql.push_str(match value {
            Some(true) => "(1)",
            Some(false) => "(0)",
            None => "(NULL)",
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

/// The SQL of an aggregate over `data`, with its binds (the field path).
pub fn aggregate_sql(aggregate: Aggregate, field: Option<&str>) -> (String, Vec<Bind>) {
    let path = || Bind::Text(field_path(field.unwrap_or_default()));
    const NUMBER: &str =
        "CASE WHEN json_type(data, ?) IN ('integer', 'real') THEN json_extract(data, ?) END";
    let numeric = |function: &str| (format!("{function}({NUMBER})"), vec![path(), path()]);
    match aggregate {
        Aggregate::Count => match field {
            None => ("COUNT(*)".into(), vec![]),
            Some(_) => ("COUNT(json_extract(data, ?))".into(), vec![path()]),
        },
        Aggregate::Sum => numeric("TOTAL"),
        Aggregate::Avg => numeric("AVG"),
        Aggregate::Min => numeric("MIN"),
        Aggregate::Max => numeric("MAX"),
        Aggregate::DistinctCount => ("COUNT(DISTINCT json_extract(data, ?))".into(), vec![path()]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::odata::tests_support::{filter, generated_filters, predicate};
    use crate::item_query::TWO_POW_63;

    #[test]
    fn numbers_bind_as_integer_when_integral_and_in_range() {
        assert_eq!(number_param(1.0), Bind::Integer(1));
        assert_eq!(number_param(-0.0), Bind::Integer(0));
        assert_eq!(number_param(1.5), Bind::Real(1.5));
        assert_eq!(number_param(1e19), Bind::Real(1e19));
        assert_eq!(number_param(-TWO_POW_63), Bind::Integer(i64::MIN));
    }

    #[test]
    fn sql_shape_and_binds() {
        let mut binds = Vec::new();
        let sql = filter_sql(&predicate("a eq 1"), "data", &mut binds);
        assert_eq!(
            sql,
            "((json_type(data, ?) IN ('integer', 'real') AND json_extract(data, ?) = ?) IS 1)"
        );
        assert_eq!(
            binds,
            vec![
                Bind::Text("$.\"a\"".into()),
                Bind::Text("$.\"a\"".into()),
                Bind::Integer(1)
            ]
        );

        let mut binds = Vec::new();
        let sql = filter_sql(
            &predicate("not (a ne null or b eq true)"),
            "t.data",
            &mut binds,
        );
        assert_eq!(
            sql,
            "(NOT ((NOT (coalesce(json_type(t.data, ?), 'null') NOT IN ('integer', 'real'))) OR \
             ((json_type(t.data, ?) IN ('true', 'false') AND json_extract(t.data, ?) = ?) IS 1)))"
        );
        assert_eq!(binds.len(), 4);
        assert_eq!(binds[3], Bind::Integer(1));

        let mut binds = Vec::new();
        let sql = filter_sql(&predicate("endswith(s,'é')"), "d", &mut binds);
        assert_eq!(sql.matches('?').count(), binds.len());
        assert_eq!(binds[2], Bind::Integer(-2)); // UTF-8 byte length
        assert_eq!(field_path("firstName"), "$.\"firstName\"");
    }

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
        assert_eq!(sql.matches('?').count(), binds.len());
        assert!(binds.contains(&Bind::Text("x'); DROP TABLE items; --".into())));
        assert!(binds.contains(&Bind::Real(-12.5)));
    }

    /// Items with every kind of value under the fields of the generated filters, including
    /// values of another kind than the field's (which read as null).
    pub(crate) const AGREEMENT_ITEMS: [&str; 10] = [
        r#"{"a": 1, "s": "Ann", "b": true}"#,
        r#"{"a": 1.5, "s": "ann", "b": false}"#,
        r#"{"a": -3, "s": "Bob-Ann", "b": null}"#,
        r#"{"a": "1", "s": 7}"#,
        r#"{"a": 9223372036854775807, "s": ""}"#,
        r#"{"a": [1], "s": {"x": 1}, "b": "true"}"#,
        r#"{"a": 0, "s": "é", "b": 1}"#,
        r#"{"a": -0.5, "s": "a"}"#,
        r#"{}"#,
        r#"[1, 2]"#,
    ];

    /// The SQL keeps exactly the items that the in-memory evaluation keeps, on hand-written and
    /// on several hundred generated filters.
    #[tokio::test]
    async fn sql_and_in_memory_evaluation_agree() {
        let pool = sqlx::sqlite::SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY, data TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        for (n, item) in AGREEMENT_ITEMS.iter().enumerate() {
            sqlx::query("INSERT INTO t (n, data) VALUES (?, ?)")
                .bind(n as i64)
                .bind(*item)
                .execute(&pool)
                .await
                .unwrap();
        }
        let written = [
            "a eq 1",
            "a ne 1",
            "a gt 1",
            "a ge null",
            "a lt 1.5",
            "a le -3",
            "a eq null",
            "a ne null",
            "s eq 'Ann'",
            "s lt 'a'",
            "s gt ''",
            "b eq true",
            "b ne false",
            "contains(s,'Ann')",
            "not contains(s,'Ann')",
            "startswith(s,'B')",
            "endswith(s,'nn')",
            "contains(s,'')",
            "not contains(s,'') or b",
            "not (a gt 0 or s eq 'x')",
            "a gt 1 and b eq false",
            "not b eq null",
            "not b",
            "a lt 9007199254740992",
        ];
        let generated = generated_filters(7, 400);
        let mut differing_answers = std::collections::HashSet::new();
        for text in written.iter().map(|t| t.to_string()).chain(generated) {
            let filter = filter(&text);
            let predicate = filter
                .predicate
                .as_ref()
                .unwrap_or_else(|| panic!("{text} has a SQL form"));
            let mut binds = Vec::new();
            let sql = format!(
                "SELECT n FROM t WHERE {} ORDER BY n",
                filter_sql(predicate, "data", &mut binds)
            );
            let kept: Vec<i64> = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
                .fetch_all(&pool)
                .await
                .unwrap()
                .iter()
                .map(|row| sqlx::Row::get(row, 0))
                .collect();
            let expected: Vec<i64> = AGREEMENT_ITEMS
                .iter()
                .enumerate()
                .filter(|(_, item)| filter.expr.matches(&serde_json::from_str(item).unwrap()))
                .map(|(n, _)| n as i64)
                .collect();
            assert_eq!(kept, expected, "{text}");
            differing_answers.insert(kept);
        }
        // The generated filters are not all alike: they select many different sets.
        assert!(differing_answers.len() > 40, "{}", differing_answers.len());

        // Aggregates evaluated over the items (for filters without a SQL form) equal SQL's.
        use crate::item_query::Aggregate::*;
        for aggregate in [Count, Sum, Avg, Min, Max, DistinctCount] {
            for field in [None, Some("a"), Some("s"), Some("b"), Some("zz")] {
                let (sql, binds) = aggregate_sql(aggregate, field);
                let sql = format!("SELECT CAST({sql} AS REAL) FROM t");
                let row = bind_all(sqlx::query(sqlx::AssertSqlSafe(sql)), &binds)
                    .fetch_one(&pool)
                    .await
                    .unwrap();
                let want: Option<f64> = sqlx::Row::get(&row, 0);
                let got = aggregate.over(field, AGREEMENT_ITEMS.iter().copied());
                let close = match (got, want) {
                    (Some(g), Some(w)) => g == w || (g - w).abs() <= w.abs() * 1e-12,
                    (g, w) => g == w,
                };
                assert!(close, "{aggregate:?}({field:?}): {got:?} vs SQL {want:?}");
            }
        }
    }
}
