//! The typed query over an entity's items that the engine builds (from OData options, segment
//! and measure definitions) and the store runs: filter expressions, sort keys, a page, an
//! aggregate. It states the query semantics once: [`Expr::evaluate`] evaluates a filter in
//! memory, and the part of the language the store compiles to SQL ([`Predicate`]) gives the
//! same answers (the store's tests compare the two).
//!
//! A leaf of the crate: it uses nothing of it.
//!
//! # Semantics (OData 4.01 over one flat entity)
//!
//! * A field is a top-level key of the item object, read by its column's type ([`Type`], from
//!   the entity schema). It is *null* when the key is missing, its value is JSON `null`, or the
//!   value does not have the column's type (a date column holding `"soon"`).
//! * `eq`: two nulls are equal, null and a value are not; `ne` is exactly `not eq`, never null.
//!   `gt`/`lt` with a null side are false; `ge`/`le` are true for two nulls, false for one.
//! * Logic is three-valued (Kleene): `not null` is null, `false and null` false, `true and
//!   null` null, `true or null` true, `false or null` null. An item is kept only when the
//!   filter is `true`.
//! * Every function of a null argument, and arithmetic with a null operand, is null.
//! * Numbers compare exactly (an integer with a real as SQLite does); NaN equals nothing.
//!   Strings compare by code point, case-sensitively; `false < true`; date-times as instants
//!   (a date compared with a date-time is its midnight UTC).
//! * Integer `add`/`sub`/`mul` stay integers (a real on overflow); `div` of integers truncates,
//!   `divby` is real division; division or `mod` by zero is null.
//! * Sorting: ascending puts nulls first, then values in the order above; descending reverses
//!   it; ties go to the item key (bytes).

use std::cmp::Ordering;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveTime, TimeDelta, Timelike, Utc};
use serde::Serialize;
use serde_json::Value;

// ---------------------------------------------------------------------------------------------
// Types and values

/// The type of an expression; a field's type is its column's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Type {
    /// The type of the `null` literal: compatible with every type.
    Null,
    Boolean,
    Integer,
    Number,
    String,
    Date,
    DateTime,
    TimeOfDay,
    Duration,
    Guid,
    /// Nested JSON (objects, arrays): stored and returned, not queried.
    Json,
}

impl Type {
    /// The name used in messages (the schema's names where there is one).
    pub fn name(self) -> &'static str {
        match self {
            Type::Null => "null",
            Type::Boolean => "boolean",
            Type::Integer => "integer",
            Type::Number => "number",
            Type::String => "string",
            Type::Date => "date",
            Type::DateTime => "date-time",
            Type::TimeOfDay => "time of day",
            Type::Duration => "duration",
            Type::Guid => "guid",
            Type::Json => "object or array",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(self, Type::Integer | Type::Number)
    }

    /// Whether values of the two types can be compared (`eq`, `lt`, ...).
    pub fn comparable(self, other: Type) -> bool {
        use Type::*;
        match (self, other) {
            (Null, t) | (t, Null) => t != Json,
            (a, b) if a.is_numeric() && b.is_numeric() => true,
            (Date, DateTime) | (DateTime, Date) => true,
            (Guid, String) | (String, Guid) => true,
            (a, b) => a == b && a != Json,
        }
    }
}

/// A value during evaluation.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Val {
    Null,
    Bool(bool),
    Int(i64),
    Real(f64),
    Str(String),
    Date(NaiveDate),
    DateTime(DateTime<FixedOffset>),
    Time(NaiveTime),
    Duration(#[serde(serialize_with = "duration_nanos")] TimeDelta),
    Guid(uuid::Uuid),
}

fn duration_nanos<S: serde::Serializer>(d: &TimeDelta, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_i64(d.num_nanoseconds().unwrap_or(i64::MAX))
}

/// Exactly `YYYY-MM-DD`, a valid calendar date.
pub fn is_date(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
        && chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
}

/// RFC 3339 with `T`, seconds, an optional fraction of 1 to 9 digits and `Z` or `±hh:mm`.
pub fn is_date_time(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() < 20 || b[10] != b'T' || !text.get(..10).is_some_and(is_date) {
        return false;
    }
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(11..13) && b[13] == b':' && digits(14..16) && b[16] == b':' && digits(17..19)) {
        return false;
    }
    let mut rest = &b[19..];
    if let Some(frac) = rest.strip_prefix(b".") {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return false;
        }
        rest = &frac[n..];
    }
    let offset_ok = rest == b"Z"
        || (rest.len() == 6
            && (rest[0] == b'+' || rest[0] == b'-')
            && rest[1..3].iter().all(u8::is_ascii_digit)
            && rest[3] == b':'
            && rest[4..6].iter().all(u8::is_ascii_digit));
    offset_ok && chrono::DateTime::parse_from_rfc3339(text).is_ok()
}

/// Parses a stored date (see [`is_date`]).
pub fn parse_date(text: &str) -> Option<NaiveDate> {
    is_date(text)
        .then(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok())
        .flatten()
}

/// Parses a stored date-time (see [`is_date_time`]).
pub fn parse_date_time(text: &str) -> Option<DateTime<FixedOffset>> {
    is_date_time(text)
        .then(|| DateTime::parse_from_rfc3339(text).ok())
        .flatten()
}

impl Val {
    /// A stored JSON value read as a column of type `ty` (null when it does not have that type).
    pub fn from_json(value: Option<&Value>, ty: Type) -> Val {
        match (ty, value) {
            (Type::Integer | Type::Number, Some(Value::Number(n))) => match json_num(n) {
                Num::Int(i) => Val::Int(i),
                Num::Real(r) => Val::Real(r),
            },
            (Type::Boolean, Some(Value::Bool(b))) => Val::Bool(*b),
            (Type::String, Some(Value::String(s))) => Val::Str(s.clone()),
            (Type::Date, Some(Value::String(s))) => parse_date(s).map_or(Val::Null, Val::Date),
            (Type::DateTime, Some(Value::String(s))) => {
                parse_date_time(s).map_or(Val::Null, Val::DateTime)
            }
            (Type::Guid, Some(Value::String(s))) => {
                uuid::Uuid::parse_str(s).map_or(Val::Null, Val::Guid)
            }
            _ => Val::Null,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Val::Null)
    }

    fn as_str(&self) -> Option<&str> {
        match self {
            Val::Str(s) => Some(s),
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            Val::Real(r) if r.fract() == 0.0 && r.abs() < TWO_POW_63 => Some(*r as i64),
            _ => None,
        }
    }

    fn as_num(&self) -> Option<Num> {
        match self {
            Val::Int(i) => Some(Num::Int(*i)),
            Val::Real(r) => Some(Num::Real(*r)),
            _ => None,
        }
    }

    fn as_real(&self) -> Option<f64> {
        match self.as_num()? {
            Num::Int(i) => Some(i as f64),
            Num::Real(r) => Some(r),
        }
    }

    fn as_instant(&self) -> Option<DateTime<FixedOffset>> {
        match self {
            Val::DateTime(d) => Some(*d),
            Val::Date(d) => Some(d.and_time(NaiveTime::MIN).and_utc().fixed_offset()),
            _ => None,
        }
    }

    fn as_guid(&self) -> Option<uuid::Uuid> {
        match self {
            Val::Guid(g) => Some(*g),
            Val::Str(s) => uuid::Uuid::parse_str(s).ok(),
            _ => None,
        }
    }
}

/// The order of two non-null values of comparable types (`None`: not comparable, or NaN).
pub fn compare_values(a: &Val, b: &Val) -> Option<Ordering> {
    match (a, b) {
        (Val::Str(x), Val::Str(y)) => Some(x.as_bytes().cmp(y.as_bytes())),
        (Val::Bool(x), Val::Bool(y)) => Some(x.cmp(y)),
        (Val::Date(x), Val::Date(y)) => Some(x.cmp(y)),
        (Val::Time(x), Val::Time(y)) => Some(x.cmp(y)),
        (Val::Duration(x), Val::Duration(y)) => Some(x.cmp(y)),
        (Val::Guid(_) | Val::Str(_), Val::Guid(_) | Val::Str(_)) => {
            Some(a.as_guid()?.cmp(&b.as_guid()?))
        }
        (Val::DateTime(_) | Val::Date(_), Val::DateTime(_) | Val::Date(_)) => {
            Some(a.as_instant()?.cmp(&b.as_instant()?))
        }
        _ => cmp_num(a.as_num()?, b.as_num()?),
    }
}

// ---------------------------------------------------------------------------------------------
// Expressions

/// A binary operator; its string form is the OData keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum BinaryOp {
    And,
    Or,
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Add,
    Sub,
    Mul,
    Div,
    DivBy,
    Mod,
}

impl BinaryOp {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn comparison(self) -> Option<CompareOp> {
        Some(match self {
            BinaryOp::Eq => CompareOp::Eq,
            BinaryOp::Ne => CompareOp::Ne,
            BinaryOp::Gt => CompareOp::Gt,
            BinaryOp::Ge => CompareOp::Ge,
            BinaryOp::Lt => CompareOp::Lt,
            BinaryOp::Le => CompareOp::Le,
            _ => return None,
        })
    }
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

    /// The operator with its operands exchanged (`5 lt a` is `a gt 5`).
    pub fn mirrored(self) -> CompareOp {
        match self {
            CompareOp::Gt => CompareOp::Lt,
            CompareOp::Lt => CompareOp::Gt,
            CompareOp::Ge => CompareOp::Le,
            CompareOp::Le => CompareOp::Ge,
            other => other,
        }
    }

    /// The comparison of two values under the null rules of the module documentation.
    pub fn apply(self, a: &Val, b: &Val) -> bool {
        match (a.is_null(), b.is_null()) {
            (true, true) => matches!(self, CompareOp::Eq | CompareOp::Ge | CompareOp::Le),
            (true, false) | (false, true) => self == CompareOp::Ne,
            (false, false) => {
                let ordering = compare_values(a, b);
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
    }
}

/// A canonical function; its string form is the OData name (matched case-insensitively).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::EnumString, strum::IntoStaticStr)]
#[strum(serialize_all = "lowercase", ascii_case_insensitive)]
pub enum Function {
    Contains,
    StartsWith,
    EndsWith,
    Length,
    IndexOf,
    Substring,
    ToLower,
    ToUpper,
    Trim,
    Concat,
    MatchesPattern,
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    FractionalSeconds,
    Date,
    Time,
    TotalOffsetMinutes,
    Now,
    MaxDateTime,
    MinDateTime,
    Round,
    Floor,
    Ceiling,
}

impl Function {
    pub fn as_str(self) -> &'static str {
        match self {
            Function::StartsWith => "startswith",
            Function::EndsWith => "endswith",
            Function::IndexOf => "indexof",
            Function::MatchesPattern => "matchesPattern",
            Function::FractionalSeconds => "fractionalseconds",
            Function::TotalOffsetMinutes => "totaloffsetminutes",
            Function::MaxDateTime => "maxdatetime",
            Function::MinDateTime => "mindatetime",
            other => other.into(),
        }
    }
}

/// A compiled `matchesPattern` regular expression, compared by its source.
#[derive(Debug, Clone)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Serialize for Pattern {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

/// A typed filter or sort expression (checked by the parser: every operand has a type its
/// operator accepts).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Expr {
    Literal(Val),
    Field {
        name: String,
        ty: Type,
    },
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    In(Box<Expr>, Vec<Expr>),
    Call(Function, Vec<Expr>),
    /// `matchesPattern` with a literal pattern, compiled once.
    Matches(Box<Expr>, Pattern),
}

impl Expr {
    pub fn field(name: &str, ty: Type) -> Expr {
        Expr::Field {
            name: name.to_string(),
            ty,
        }
    }

    pub fn binary(op: BinaryOp, a: Expr, b: Expr) -> Expr {
        Expr::Binary(op, Box::new(a), Box::new(b))
    }

    /// Every field name referenced, once each, in order of first appearance.
    pub fn fields(&self) -> Vec<&str> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out
    }

    fn collect_fields<'a>(&'a self, out: &mut Vec<&'a str>) {
        match self {
            Expr::Field { name, .. } => {
                if !out.contains(&name.as_str()) {
                    out.push(name);
                }
            }
            Expr::Literal(_) => {}
            Expr::Not(e) | Expr::Negate(e) | Expr::Matches(e, _) => e.collect_fields(out),
            Expr::Binary(_, a, b) => {
                a.collect_fields(out);
                b.collect_fields(out);
            }
            Expr::In(e, list) => {
                e.collect_fields(out);
                list.iter().for_each(|x| x.collect_fields(out));
            }
            Expr::Call(_, args) => args.iter().for_each(|x| x.collect_fields(out)),
        }
    }

    /// Whether the item is kept: the filter evaluates to `true` (not false, not null).
    pub fn matches(&self, item: &Value) -> bool {
        self.evaluate(item) == Val::Bool(true)
    }

    /// Evaluates the expression against one item (see the module documentation).
    pub fn evaluate(&self, item: &Value) -> Val {
        match self {
            Expr::Literal(v) => v.clone(),
            Expr::Field { name, ty } => Val::from_json(item.get(name), *ty),
            Expr::Not(e) => match e.evaluate(item) {
                Val::Bool(b) => Val::Bool(!b),
                _ => Val::Null,
            },
            Expr::Negate(e) => match e.evaluate(item) {
                Val::Int(i) => i.checked_neg().map_or(Val::Real(-(i as f64)), Val::Int),
                Val::Real(r) => Val::Real(-r),
                Val::Duration(d) => Val::Duration(-d),
                _ => Val::Null,
            },
            Expr::Binary(BinaryOp::And, a, b) => match (a.evaluate(item), b.evaluate(item)) {
                (Val::Bool(false), _) | (_, Val::Bool(false)) => Val::Bool(false),
                (Val::Bool(true), Val::Bool(true)) => Val::Bool(true),
                _ => Val::Null,
            },
            Expr::Binary(BinaryOp::Or, a, b) => match (a.evaluate(item), b.evaluate(item)) {
                (Val::Bool(true), _) | (_, Val::Bool(true)) => Val::Bool(true),
                (Val::Bool(false), Val::Bool(false)) => Val::Bool(false),
                _ => Val::Null,
            },
            Expr::Binary(op, a, b) => {
                let (a, b) = (a.evaluate(item), b.evaluate(item));
                match op.comparison() {
                    Some(cmp) => Val::Bool(cmp.apply(&a, &b)),
                    None => arithmetic(*op, &a, &b),
                }
            }
            Expr::In(e, list) => {
                let v = e.evaluate(item);
                Val::Bool(
                    list.iter()
                        .any(|x| CompareOp::Eq.apply(&v, &x.evaluate(item))),
                )
            }
            Expr::Call(f, args) => {
                let args: Vec<Val> = args.iter().map(|a| a.evaluate(item)).collect();
                call(*f, &args)
            }
            Expr::Matches(e, pattern) => match e.evaluate(item) {
                Val::Str(s) => Val::Bool(pattern.0.is_match(&s)),
                _ => Val::Null,
            },
        }
    }

    /// The part of the filter the store runs as SQL, when all of it is in that part.
    pub fn predicate(&self) -> Option<Predicate> {
        Some(match self {
            Expr::Literal(Val::Bool(b)) => Predicate::Const(Some(*b)),
            Expr::Literal(Val::Null) => Predicate::Const(None),
            Expr::Field {
                name,
                ty: Type::Boolean,
            } => Predicate::IsTrue {
                field: name.clone(),
            },
            Expr::Not(e) => Predicate::Not(Box::new(e.predicate()?)),
            Expr::Binary(BinaryOp::And, a, b) => {
                Predicate::And(Box::new(a.predicate()?), Box::new(b.predicate()?))
            }
            Expr::Binary(BinaryOp::Or, a, b) => {
                Predicate::Or(Box::new(a.predicate()?), Box::new(b.predicate()?))
            }
            Expr::Binary(op, a, b) => {
                let op = op.comparison()?;
                if let (Some(value), Some(p)) = (boolean_literal(b), a.boolean_predicate()) {
                    return is_predicate(p, op, value);
                }
                if let (Some(value), Some(p)) = (boolean_literal(a), b.boolean_predicate()) {
                    return is_predicate(p, op, value);
                }
                match (a.as_ref(), b.as_ref()) {
                    (Expr::Field { name, ty }, Expr::Literal(v)) => {
                        compare_predicate(name, *ty, op, v)?
                    }
                    (Expr::Literal(v), Expr::Field { name, ty }) => {
                        compare_predicate(name, *ty, op.mirrored(), v)?
                    }
                    _ => return None,
                }
            }
            Expr::In(e, list) => {
                let Expr::Field { name, ty } = e.as_ref() else {
                    return None;
                };
                let mut terms = list.iter().map(|x| match x {
                    Expr::Literal(v) => compare_predicate(name, *ty, CompareOp::Eq, v),
                    _ => None,
                });
                let first = terms.next()??;
                terms.try_fold(first, |acc, t| {
                    Some(Predicate::Or(Box::new(acc), Box::new(t?)))
                })?
            }
            Expr::Call(
                func @ (Function::Contains | Function::StartsWith | Function::EndsWith),
                args,
            ) => match args.as_slice() {
                [Expr::Field {
                    name,
                    ty: Type::String,
                }, Expr::Literal(Val::Str(value))] => Predicate::Function {
                    func: match func {
                        Function::Contains => StringFunction::Contains,
                        Function::StartsWith => StringFunction::StartsWith,
                        _ => StringFunction::EndsWith,
                    },
                    field: name.clone(),
                    value: value.clone(),
                },
                _ => return None,
            },
            _ => return None,
        })
    }

    /// The predicate of a boolean expression other than a field (a field compares as a field).
    fn boolean_predicate(&self) -> Option<Predicate> {
        match self {
            Expr::Not(_) | Expr::Binary(..) | Expr::In(..) | Expr::Call(..) => self.predicate(),
            _ => None,
        }
    }

    /// Whether the expression reads the clock (its answers change without the data changing).
    pub fn uses_now(&self) -> bool {
        match self {
            Expr::Call(Function::Now, _) => true,
            Expr::Literal(_) | Expr::Field { .. } => false,
            Expr::Not(e) | Expr::Negate(e) | Expr::Matches(e, _) => e.uses_now(),
            Expr::Binary(_, a, b) => a.uses_now() || b.uses_now(),
            Expr::In(e, list) => e.uses_now() || list.iter().any(Expr::uses_now),
            Expr::Call(_, args) => args.iter().any(Expr::uses_now),
        }
    }
}

/// `true`, `false` or `null` as a literal.
fn boolean_literal(expr: &Expr) -> Option<Option<bool>> {
    match expr {
        Expr::Literal(Val::Bool(b)) => Some(Some(*b)),
        Expr::Literal(Val::Null) => Some(None),
        _ => None,
    }
}

/// A boolean expression compared with `true`, `false` or `null` (only `eq`/`ne` in SQL).
fn is_predicate(p: Predicate, op: CompareOp, value: Option<bool>) -> Option<Predicate> {
    let is = Predicate::Is(Box::new(p), value);
    match op {
        CompareOp::Eq => Some(is),
        CompareOp::Ne => Some(Predicate::Not(Box::new(is))),
        _ => None,
    }
}

/// `field op literal` as a predicate, for the column types SQL compares (not dates, whose text
/// is not their order, nor literals SQL cannot hold exactly).
fn compare_predicate(field: &str, ty: Type, op: CompareOp, value: &Val) -> Option<Predicate> {
    let column = match ty {
        Type::String => JsonKind::Text,
        Type::Integer | Type::Number => JsonKind::Number,
        Type::Boolean => JsonKind::Boolean,
        _ => return None,
    };
    let field = field.to_string();
    let literal = match value {
        Val::Null => {
            let is_null = Predicate::IsNull { field, column };
            return Some(match op {
                CompareOp::Eq | CompareOp::Ge | CompareOp::Le => is_null,
                CompareOp::Ne => Predicate::Not(Box::new(is_null)),
                CompareOp::Gt | CompareOp::Lt => Predicate::Const(Some(false)),
            });
        }
        Val::Str(s) if column == JsonKind::Text => Literal::String(s.clone()),
        Val::Bool(b) if column == JsonKind::Boolean => Literal::Bool(*b),
        // f64 holds every integer up to 2^53 exactly; beyond, memory compares exactly.
        Val::Int(i) if column == JsonKind::Number && i.unsigned_abs() <= 1 << 53 => {
            Literal::Number(*i as f64)
        }
        Val::Real(r) if column == JsonKind::Number && r.is_finite() => Literal::Number(*r),
        _ => return None,
    };
    Some(Predicate::Compare {
        field,
        op,
        value: literal,
    })
}

fn arithmetic(op: BinaryOp, a: &Val, b: &Val) -> Val {
    use BinaryOp::*;
    match (op, a, b) {
        (_, Val::Null, _) | (_, _, Val::Null) => Val::Null,
        (Add, Val::DateTime(d), Val::Duration(x)) => {
            d.checked_add_signed(*x).map_or(Val::Null, Val::DateTime)
        }
        (Sub, Val::DateTime(d), Val::Duration(x)) => {
            d.checked_sub_signed(*x).map_or(Val::Null, Val::DateTime)
        }
        (Sub, Val::DateTime(x), Val::DateTime(y)) => Val::Duration(x.signed_duration_since(*y)),
        (Sub, Val::Date(x), Val::Date(y)) => Val::Duration(x.signed_duration_since(*y)),
        (Add, Val::Duration(x), Val::Duration(y)) => {
            x.checked_add(y).map_or(Val::Null, Val::Duration)
        }
        (Sub, Val::Duration(x), Val::Duration(y)) => {
            x.checked_sub(y).map_or(Val::Null, Val::Duration)
        }
        (_, Val::Int(x), Val::Int(y)) => {
            let (x, y) = (*x, *y);
            let exact = match op {
                Add => x.checked_add(y),
                Sub => x.checked_sub(y),
                Mul => x.checked_mul(y),
                Div if y == 0 => return Val::Null,
                Div => x.checked_div(y),
                Mod if y == 0 => return Val::Null,
                Mod => Some(x.checked_rem(y).unwrap_or(0)),
                DivBy if y == 0 => return Val::Null,
                DivBy => return Val::Real(x as f64 / y as f64),
                _ => return Val::Null,
            };
            exact.map_or_else(|| real_arithmetic(op, x as f64, y as f64), Val::Int)
        }
        _ => match (a.as_real(), b.as_real()) {
            (Some(x), Some(y)) => real_arithmetic(op, x, y),
            _ => Val::Null,
        },
    }
}

fn real_arithmetic(op: BinaryOp, x: f64, y: f64) -> Val {
    use BinaryOp::*;
    match op {
        Add => Val::Real(x + y),
        Sub => Val::Real(x - y),
        Mul => Val::Real(x * y),
        Div | DivBy | Mod if y == 0.0 => Val::Null,
        Div | DivBy => Val::Real(x / y),
        Mod => Val::Real(x % y),
        _ => Val::Null,
    }
}

/// The largest date-time (`maxdatetime()`).
pub fn max_date_time() -> DateTime<FixedOffset> {
    NaiveDate::from_ymd_opt(9999, 12, 31)
        .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 999_999_999))
        .expect("a valid date-time")
        .and_utc()
        .fixed_offset()
}

/// The smallest date-time (`mindatetime()`).
pub fn min_date_time() -> DateTime<FixedOffset> {
    NaiveDate::from_ymd_opt(1, 1, 1)
        .expect("a valid date")
        .and_time(NaiveTime::MIN)
        .and_utc()
        .fixed_offset()
}

fn call(f: Function, args: &[Val]) -> Val {
    use Function::*;
    match f {
        Now => return Val::DateTime(Utc::now().fixed_offset()),
        MaxDateTime => return Val::DateTime(max_date_time()),
        MinDateTime => return Val::DateTime(min_date_time()),
        _ => {}
    }
    if args.iter().any(Val::is_null) {
        return Val::Null;
    }
    let text = |i: usize| args.get(i).and_then(Val::as_str);
    match f {
        Contains | StartsWith | EndsWith | IndexOf | Concat => {
            let (Some(s), Some(t)) = (text(0), text(1)) else {
                return Val::Null;
            };
            match f {
                Contains => Val::Bool(s.contains(t)),
                StartsWith => Val::Bool(s.starts_with(t)),
                EndsWith => Val::Bool(s.ends_with(t)),
                IndexOf => Val::Int(
                    s.find(t)
                        .map_or(-1, |byte| s[..byte].chars().count() as i64),
                ),
                _ => Val::Str(format!("{s}{t}")),
            }
        }
        Length => text(0).map_or(Val::Null, |s| Val::Int(s.chars().count() as i64)),
        ToLower => text(0).map_or(Val::Null, |s| Val::Str(s.to_lowercase())),
        ToUpper => text(0).map_or(Val::Null, |s| Val::Str(s.to_uppercase())),
        Trim => text(0).map_or(Val::Null, |s| Val::Str(s.trim().to_string())),
        Substring => {
            let (Some(s), Some(start)) = (text(0), args.get(1).and_then(Val::as_int)) else {
                return Val::Null;
            };
            let start = start.max(0) as usize;
            let rest = s.chars().skip(start);
            match args.get(2) {
                None => Val::Str(rest.collect()),
                Some(len) => match len.as_int() {
                    Some(len) => Val::Str(rest.take(len.max(0) as usize).collect()),
                    None => Val::Null,
                },
            }
        }
        Year | Month | Day => {
            let date = match &args[0] {
                Val::Date(d) => *d,
                Val::DateTime(d) => d.date_naive(),
                _ => return Val::Null,
            };
            Val::Int(match f {
                Year => i64::from(date.year()),
                Month => i64::from(date.month()),
                _ => i64::from(date.day()),
            })
        }
        Hour | Minute | Second | FractionalSeconds => {
            let time = match &args[0] {
                Val::Time(t) => *t,
                Val::DateTime(d) => d.time(),
                _ => return Val::Null,
            };
            match f {
                Hour => Val::Int(i64::from(time.hour())),
                Minute => Val::Int(i64::from(time.minute())),
                Second => Val::Int(i64::from(time.second())),
                _ => Val::Real(f64::from(time.nanosecond()) / 1e9),
            }
        }
        Date | Time | TotalOffsetMinutes => match &args[0] {
            Val::DateTime(d) => match f {
                Date => Val::Date(d.date_naive()),
                Time => Val::Time(d.time()),
                _ => Val::Int(i64::from(d.offset().local_minus_utc() / 60)),
            },
            _ => Val::Null,
        },
        Round | Floor | Ceiling => match &args[0] {
            Val::Int(i) => Val::Int(*i),
            Val::Real(r) => Val::Real(match f {
                Round => r.round(),
                Floor => r.floor(),
                _ => r.ceil(),
            }),
            _ => Val::Null,
        },
        // `matchesPattern` with a pattern known only per item is refused by the parser.
        MatchesPattern | Now | MaxDateTime | MinDateTime => Val::Null,
    }
}

// ---------------------------------------------------------------------------------------------
// The SQL part of the language

/// The JSON kinds a column's values have in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum JsonKind {
    Text,
    Number,
    Boolean,
}

/// A literal value on the right-hand side of a comparison the store compiles.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Literal {
    Bool(bool),
    Number(f64),
    String(String),
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

/// The filters the store compiles to SQL, with the semantics of [`Expr::evaluate`]: each leaf
/// is true, false or (for functions of a non-string, a non-boolean `IsTrue` and `Const(None)`)
/// SQL `NULL`, so SQL's own three-valued `AND`/`OR`/`NOT` are OData's.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Predicate {
    /// `field op value`, the field read as the literal's kind (another kind reads as null:
    /// `eq` and the orderings false, `ne` true).
    Compare {
        field: String,
        op: CompareOp,
        value: Literal,
    },
    /// The field is null: missing, JSON null or not of the column's kind.
    IsNull {
        field: String,
        column: JsonKind,
    },
    /// `contains`/`startswith`/`endswith` of a string field: null unless the field is a string.
    Function {
        func: StringFunction,
        field: String,
        value: String,
    },
    /// A boolean field as a filter: true, false, or null unless it is a JSON boolean.
    IsTrue {
        field: String,
    },
    Const(Option<bool>),
    /// A predicate's value is true, false or (`None`) null: never null itself.
    Is(Box<Predicate>, Option<bool>),
    And(Box<Predicate>, Box<Predicate>),
    Or(Box<Predicate>, Box<Predicate>),
    Not(Box<Predicate>),
}

/// A filter: the expression, and its SQL form when it has one.
#[derive(Debug, Clone, PartialEq)]
pub struct Filter {
    pub expr: Expr,
    pub predicate: Option<Predicate>,
}

impl Filter {
    pub fn new(expr: Expr) -> Self {
        let predicate = expr.predicate();
        Self { expr, predicate }
    }
}

// ---------------------------------------------------------------------------------------------
// Numbers

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

// ---------------------------------------------------------------------------------------------
// Queries

/// Sort direction of an `$orderby` key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum SortDirection {
    Asc,
    Desc,
}

/// One `$orderby` key.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderKey {
    pub expr: Expr,
    pub direction: SortDirection,
}

impl OrderKey {
    /// The field the key sorts by, when it is a field the store sorts in SQL (a date-time's
    /// text is not its order).
    pub fn sql_field(&self) -> Option<&str> {
        match &self.expr {
            Expr::Field { name, ty } if !matches!(ty, Type::DateTime | Type::Guid | Type::Json) => {
                Some(name)
            }
            _ => None,
        }
    }
}

/// A `$search` expression: terms (words or quoted phrases) with `AND`, `OR`, `NOT`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum Search {
    /// A term, lower-cased.
    Term(String),
    And(Box<Search>, Box<Search>),
    Or(Box<Search>, Box<Search>),
    Not(Box<Search>),
}

impl Search {
    /// Whether some string field (of `fields`) of the item contains the terms as the
    /// expression combines them, case-insensitively.
    pub fn matches(&self, item: &Value, fields: &[String]) -> bool {
        match self {
            Search::Term(term) => fields.iter().any(|f| {
                item.get(f)
                    .and_then(Value::as_str)
                    .is_some_and(|s| s.to_lowercase().contains(term.as_str()))
            }),
            Search::And(a, b) => a.matches(item, fields) && b.matches(item, fields),
            Search::Or(a, b) => a.matches(item, fields) || b.matches(item, fields),
            Search::Not(e) => !e.matches(item, fields),
        }
    }
}

/// A filtered, ordered page of an entity's current items.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemQuery {
    pub filter: Option<Filter>,
    /// `$search`, with the string fields it searches.
    pub search: Option<(Search, Vec<String>)>,
    /// Sort keys, most significant first; the item key breaks ties.
    pub order_by: Vec<OrderKey>,
    pub limit: i64,
    pub offset: i64,
    /// Keyset continuation: only items whose key sorts after this one (used without sort keys,
    /// where the page is in key order), so a deep page costs what the first one does.
    pub after_key: Option<String>,
}

impl ItemQuery {
    /// Whether the store can run the whole query as SQL; otherwise it reads the entity's items,
    /// keeps those [`ItemQuery::keeps`] and orders them with [`ItemQuery::order_and_page`].
    pub fn runs_in_sql(&self) -> bool {
        self.search.is_none()
            && self.filter.as_ref().is_none_or(|f| f.predicate.is_some())
            && self.order_by.iter().all(|k| k.sql_field().is_some())
    }

    /// Whether an item (parsed) passes the filter and the search.
    pub fn keeps(&self, item: &Value) -> bool {
        self.filter.as_ref().is_none_or(|f| f.expr.matches(item))
            && self
                .search
                .as_ref()
                .is_none_or(|(search, fields)| search.matches(item, fields))
    }

    /// Orders rows that pass the filter (in key order) by the sort keys and takes the page.
    pub fn order_and_page(&self, kept: Vec<(String, String)>) -> Vec<(String, String)> {
        let mut kept: Vec<(Vec<Val>, (String, String))> = kept
            .into_iter()
            .map(|row| {
                let sort = if self.order_by.is_empty() {
                    Vec::new()
                } else {
                    let item: Value = serde_json::from_str(&row.1).unwrap_or(Value::Null);
                    self.order_by
                        .iter()
                        .map(|k| k.expr.evaluate(&item))
                        .collect()
                };
                (sort, row)
            })
            .collect();
        if !self.order_by.is_empty() {
            // Stable: equal sort values stay in key order.
            kept.sort_by(|(a, _), (b, _)| self.compare_sort_values(a, b));
        }
        kept.into_iter()
            .skip(self.offset.max(0) as usize)
            .take(self.limit.max(0) as usize)
            .map(|(_, row)| row)
            .collect()
    }

    fn compare_sort_values(&self, a: &[Val], b: &[Val]) -> Ordering {
        for ((x, y), key) in a.iter().zip(b).zip(&self.order_by) {
            let ordering = match (x.is_null(), y.is_null()) {
                (true, true) => Ordering::Equal,
                (true, false) => Ordering::Less,
                (false, true) => Ordering::Greater,
                (false, false) => compare_values(x, y).unwrap_or(Ordering::Equal),
            };
            let ordering = match key.direction {
                SortDirection::Asc => ordering,
                SortDirection::Desc => ordering.reverse(),
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    }
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

    /// The aggregate over items (JSON text), with the store's SQL answers: `count` of a field
    /// counts the items where it is present and not null, the numeric aggregates consider JSON
    /// numbers only (`sum` of none is 0, the others are `None`), `distinctCount` counts the
    /// distinct non-null values as SQLite reads them (a boolean is 1 or 0, an object or array
    /// its JSON text).
    pub fn over<'a>(
        self,
        field: Option<&str>,
        items: impl Iterator<Item = &'a str>,
    ) -> Option<f64> {
        let values: Vec<Value> = items
            .map(|text| {
                let item: Value = serde_json::from_str(text).unwrap_or(Value::Null);
                match field {
                    None if self == Aggregate::Count => Value::Bool(true),
                    // Without a field there is no value to aggregate (SQL: the key `""`).
                    _ => item
                        .get(field.unwrap_or(""))
                        .cloned()
                        .unwrap_or(Value::Null),
                }
            })
            .collect();
        let numbers = || values.iter().filter_map(Value::as_f64);
        match self {
            Aggregate::Count => Some(values.iter().filter(|v| !v.is_null()).count() as f64),
            Aggregate::Sum => Some(numbers().sum()),
            Aggregate::Avg => {
                let n = numbers().count();
                (n > 0).then(|| numbers().sum::<f64>() / n as f64)
            }
            Aggregate::Min => numbers().reduce(f64::min),
            Aggregate::Max => numbers().reduce(f64::max),
            Aggregate::DistinctCount => {
                #[derive(PartialEq, Eq, Hash)]
                enum Distinct {
                    Number(u64),
                    Text(String),
                }
                let distinct: std::collections::HashSet<Distinct> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::Null => None,
                        Value::Bool(b) => Some(Distinct::Number(f64::from(u8::from(*b)).to_bits())),
                        // +0.0 for -0.0: SQLite finds them equal.
                        Value::Number(n) => {
                            n.as_f64().map(|x| Distinct::Number((x + 0.0).to_bits()))
                        }
                        Value::String(s) => Some(Distinct::Text(s.clone())),
                        other => Some(Distinct::Text(other.to_string())),
                    })
                    .collect();
                Some(distinct.len() as f64)
            }
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        name.parse().ok()
    }
}
