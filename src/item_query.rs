//! The typed query over an entity's items that the engine builds (from OData options, segment
//! and measure definitions) and the store runs: filter expressions, sort keys, a page, an
//! aggregate. It states the query semantics once: [`Expr::matches`] evaluates a filter in
//! memory, and the store's SQL gives the same answers (its tests compare the two).
//!
//! A leaf of the crate: it uses nothing of it.
//!
//! # Filter semantics
//!
//! * A field is a top-level key of the item object. It is *null* when the key is missing, its
//!   value is JSON `null`, or the item is not an object.
//! * `field eq null` is true exactly when the field is null, `field ne null` is its negation;
//!   `gt`/`ge`/`lt`/`le` with `null` (only constructible by hand) are always false.
//! * With a non-null literal, the field is compared only when its JSON type matches the literal:
//!   number with number (integers and reals compared numerically and exactly, like SQLite),
//!   string with string (case-sensitive, byte/code-point order = SQLite `BINARY` collation),
//!   boolean with boolean (`false < true`). When the field is null or of another type (including
//!   arrays and objects), `eq`/`gt`/`ge`/`lt`/`le` are false and `ne` is true: `ne` is always
//!   exactly `not eq`, so `missing ne 5` is true as in OData.
//! * `contains`/`startswith`/`endswith` are case-sensitive and true only for JSON string
//!   values; an empty needle matches every string.
//! * `and`/`or`/`not` are plain two-valued logic.

use std::cmp::Ordering;

use serde::Serialize;
use serde_json::Value;

/// A literal value on the right-hand side of a comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Literal {
    Null,
    Bool(bool),
    Number(f64),
    String(String),
}

/// A comparison operator; its string form is the OData keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum CompareOp {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl CompareOp {
    /// The OData keyword of the operator.
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether an ordering between a field value and a literal satisfies the operator
    /// (`None`: the two are not comparable).
    fn holds(self, ordering: Option<Ordering>) -> bool {
        match self {
            CompareOp::Eq => ordering == Some(Ordering::Equal),
            CompareOp::Ne => ordering != Some(Ordering::Equal),
            CompareOp::Gt => ordering == Some(Ordering::Greater),
            CompareOp::Ge => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
            CompareOp::Lt => ordering == Some(Ordering::Less),
            CompareOp::Le => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        }
    }
}

/// A string function usable as a boolean expression; its string form is the OData name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase")]
pub enum StringFunction {
    Contains,
    StartsWith,
    EndsWith,
}

impl StringFunction {
    /// The OData name of the function.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Expr {
    Compare {
        field: String,
        op: CompareOp,
        value: Literal,
    },
    Function {
        func: StringFunction,
        field: String,
        value: String,
    },
    And(Box<Expr>, Box<Expr>),
    Or(Box<Expr>, Box<Expr>),
    Not(Box<Expr>),
}

/// Sort direction of an `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// One `$orderby` key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderKey {
    pub field: String,
    pub direction: SortDirection,
}

impl Expr {
    /// Every field name referenced, once each, in order of first appearance.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Compare { field, .. } | Expr::Function { field, .. } => {
                if !out.contains(&field.as_str()) {
                    out.push(field);
                }
            }
            Expr::And(a, b) | Expr::Or(a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Expr::Not(e) => e.collect_fields(out),
        }
    }

    /// Evaluates the expression against one item, with the same results as the store's SQL
    /// (see the module documentation for the semantics).
    pub fn matches(&self, item: &Value) -> bool {
        match self {
            Expr::Compare { field, op, value } => compare_matches(item.get(field), *op, value),
            Expr::Function { func, field, value } => match item.get(field) {
                Some(Value::String(s)) => match func {
                    StringFunction::Contains => s.contains(value.as_str()),
                    StringFunction::StartsWith => s.starts_with(value.as_str()),
                    StringFunction::EndsWith => s.ends_with(value.as_str()),
                },
                _ => false,
            },
            Expr::And(a, b) => a.matches(item) && b.matches(item),
            Expr::Or(a, b) => a.matches(item) || b.matches(item),
            Expr::Not(e) => !e.matches(item),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// In-memory comparison

/// A number as SQLite holds it: an INTEGER or a REAL.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    Int(i64),
    Real(f64),
}

/// `2^63` as f64: the first value above `i64::MAX`.
pub const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// A literal is bound as INTEGER when it is integral and fits, otherwise as REAL.
pub fn literal_num(x: f64) -> Num {
    if x.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&x) {
        Num::Int(x as i64)
    } else {
        Num::Real(x)
    }
}

/// A JSON number as `json_extract` returns it: integers beyond `i64` become REAL.
fn json_num(n: &serde_json::Number) -> Num {
    if let Some(i) = n.as_i64() {
        Num::Int(i)
    } else if let Some(u) = n.as_u64() {
        Num::Real(u as f64)
    } else {
        Num::Real(n.as_f64().unwrap_or(f64::NAN))
    }
}

/// Exact comparison of an integer with a float, as SQLite does it (`None` for NaN).
pub fn cmp_int_real(i: i64, r: f64) -> Option<Ordering> {
    if r.is_nan() {
        None
    } else if r >= TWO_POW_63 {
        Some(Ordering::Less)
    } else if r < -TWO_POW_63 {
        Some(Ordering::Greater)
    } else {
        let t = r.trunc();
        match i.cmp(&(t as i64)) {
            Ordering::Equal => 0.0.partial_cmp(&(r - t)),
            other => Some(other),
        }
    }
}

fn cmp_num(a: Num, b: Num) -> Option<Ordering> {
    match (a, b) {
        (Num::Int(x), Num::Int(y)) => Some(x.cmp(&y)),
        (Num::Real(x), Num::Real(y)) => x.partial_cmp(&y),
        (Num::Int(x), Num::Real(y)) => cmp_int_real(x, y),
        (Num::Real(x), Num::Int(y)) => cmp_int_real(y, x).map(Ordering::reverse),
    }
}

fn compare_matches(value: Option<&Value>, op: CompareOp, literal: &Literal) -> bool {
    if *literal == Literal::Null {
        let is_null = matches!(value, None | Some(Value::Null));
        return match op {
            CompareOp::Eq => is_null,
            CompareOp::Ne => !is_null,
            _ => false,
        };
    }
    let ordering = match (value, literal) {
        (Some(Value::Number(n)), Literal::Number(x)) => cmp_num(json_num(n), literal_num(*x)),
        (Some(Value::String(s)), Literal::String(l)) => Some(s.as_bytes().cmp(l.as_bytes())),
        (Some(Value::Bool(b)), Literal::Bool(l)) => Some(b.cmp(l)),
        _ => None,
    };
    op.holds(ordering)
}

// ---------------------------------------------------------------------------------------------
// Queries

/// A filtered, ordered page of an entity's current items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemQuery {
    pub filter: Option<Expr>,
    /// Sort keys, most significant first; the item key breaks ties.
    pub order_by: Vec<OrderKey>,
    pub limit: i64,
    pub offset: i64,
    /// Keyset continuation: only items whose key sorts after this one (used without sort keys,
    /// where the page is in key order), so a deep page costs what the first one does.
    pub after_key: Option<String>,
}

// An aggregate over an entity's items; numeric aggregates consider only JSON numbers. (No doc
// comment: it would become the description of the `Aggregate` schema of the public document.)
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
    strum::EnumString,
    strum::IntoStaticStr,
)]
#[serde(rename_all = "camelCase")]
pub enum Aggregate {
    #[strum(serialize = "count")]
    Count,
    #[strum(serialize = "sum")]
    Sum,
    #[strum(serialize = "avg")]
    Avg,
    #[strum(serialize = "min")]
    Min,
    #[strum(serialize = "max")]
    Max,
    #[strum(serialize = "distinctCount")]
    DistinctCount,
}

impl Aggregate {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}
