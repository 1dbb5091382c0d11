//! OData 4.01 query options of `GetItems` (`$filter`, `$orderby`, `$select`, `$search`),
//! parsed and type-checked against the entity's columns into the typed item query
//! ([`crate::item_query`]) with positioned errors.
//!
//! The `odata-params` crate (0.4.0) was evaluated and not used: every parse error is a bare
//! `ParseError::Parsing` with no position, and its grammar gives `and` and `or` the same
//! precedence, rejects one-letter field names, negative numbers and the `''` string escape,
//! while pulling in `peg`, `bigdecimal` and `chrono-tz`. So this is a small hand-written
//! recursive-descent parser.
//!
//! # `$filter` grammar (precedence of OData 4.01, highest first)
//!
//! ```text
//! primary    = "(" expr ")" / literal / function "(" [expr *("," expr)] ")" / field
//!              [ "in" "(" expr *("," expr) ")" ]
//! unary      = ("-" / "not") unary / primary
//! mul        = unary *(("mul" / "div" / "divby" / "mod") unary)
//! add        = mul *(("add" / "sub") mul)
//! relational = add *(("gt" / "ge" / "lt" / "le") add)
//! equality   = relational *(("eq" / "ne") relational)
//! and        = equality *("and" equality)
//! or         = and *("or" and)
//! ```
//!
//! Keywords, operators and function names are case-insensitive (4.01); binary operators are
//! left-associative. Literals: `null`, `true`, `false`, integers, decimals, `1e2`, `+5`, `INF`,
//! `NaN`, strings (`'it''s'`), dates (`2024-01-31`), date-times (`2024-01-31T10:00:00Z`, with an
//! offset, up to 12 fractional digits), times of day (`13:20:00`), `duration'P1DT2H'` and
//! GUIDs. Every operand is type-checked: an ill-typed comparison is an error naming both
//! sides. Valid OData outside what one flat entity supports (paths, lambdas, `has`, aliases,
//! `$it`, casts, enum and geo literals) is refused as "not supported". Each option text is
//! limited to [`MAX_OPTION_LENGTH`] characters and nesting to [`MAX_NESTING_DEPTH`]. Error
//! positions are 0-based char offsets.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use chrono::{NaiveTime, TimeDelta};
use regex::Regex;
use serde::Serialize;

use crate::item_query::{
    BinaryOp, Expr, Function, OrderKey, Pattern, Search, SortDirection, Type, Val,
};

/// Maximum length, in characters, of one option text (`$filter`, `$select`, `$orderby`).
pub const MAX_OPTION_LENGTH: usize = 4096;

/// Maximum nesting depth of parentheses, `not`, negation and function calls in a `$filter`.
pub const MAX_NESTING_DEPTH: usize = 32;

/// At most this many `$orderby` keys and `$select` fields: bounds the work of one request.
pub const MAX_ORDER_KEYS: usize = 16;
pub const MAX_SELECT_FIELDS: usize = 500;

/// Maximum compiled size of a `matchesPattern` regular expression.
const MAX_PATTERN_BYTES: usize = 1 << 20;

/// An invalid OData option. `position` is a 0-based char offset into the option text, or `None`
/// when the error concerns the option as a whole (empty, too long).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ODataError {
    pub message: String,
    pub position: Option<usize>,
}

impl ODataError {
    fn at(message: impl Into<String>, position: usize) -> Self {
        Self {
            message: message.into(),
            position: Some(position),
        }
    }

    fn whole(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            position: None,
        }
    }
}

impl fmt::Display for ODataError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.position {
            Some(position) => write!(f, "{} at position {position}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for ODataError {}

/// The queryable fields of an entity with their types.
#[derive(Debug, Clone, Default)]
pub struct Columns {
    pub fields: BTreeMap<String, Type>,
    /// Accept any field name, untyped (to check the syntax of a filter before its entity
    /// exists).
    pub any_field: bool,
}

impl Columns {
    fn list(&self) -> String {
        self.fields.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Literal(Val),
    LParen,
    RParen,
    Comma,
    Other(char),
    End,
}

#[derive(Debug, Clone)]
struct Token {
    tok: Tok,
    pos: usize,
}

impl Token {
    fn word(&self) -> Option<String> {
        match &self.tok {
            Tok::Ident(s) => Some(s.to_ascii_lowercase()),
            _ => None,
        }
    }

    fn is_word(&self, word: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word))
    }

    fn describe(&self) -> String {
        match &self.tok {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Literal(v) => describe_value(v),
            Tok::LParen => "'('".to_string(),
            Tok::RParen => "')'".to_string(),
            Tok::Comma => "','".to_string(),
            Tok::Other(c) => format!("'{c}'"),
            Tok::End => "end of input".to_string(),
        }
    }
}

fn describe_value(v: &Val) -> String {
    match v {
        Val::Null => "null".into(),
        Val::Bool(b) => b.to_string(),
        Val::Int(i) => format!("the number {i}"),
        Val::Real(r) => format!("the number {r}"),
        Val::Str(s) => format!("the string '{}'", s.replace('\'', "''")),
        Val::Date(d) => format!("the date {d}"),
        Val::DateTime(d) => format!("the date-time {}", d.to_rfc3339()),
        Val::Time(t) => format!("the time {t}"),
        Val::Duration(d) => format!("the duration {d}"),
        Val::Guid(g) => format!("the guid {g}"),
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

static GUID: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
        .expect("valid")
});
static DATE_TIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^-?(?:[0-9]{4}|[1-9][0-9]{4,5})-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,12})?)?([Zz]|[+-][0-9]{2}:[0-9]{2})",
    )
    .expect("valid")
});
static DATE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^-?(?:[0-9]{4}|[1-9][0-9]{4,5})-[0-9]{2}-[0-9]{2}").expect("valid")
});
static TIME: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,12})?)?").expect("valid"));
static NUMBER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"^[+-]?[0-9]+(\.[0-9]+)?([eE][+-]?[0-9]+)?").expect("valid"));
static DURATION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"^(-)?P(?:([0-9]+)D)?(?:T(?:([0-9]+)H)?(?:([0-9]+)M)?(?:([0-9]+)(?:\.([0-9]{1,12}))?S)?)?$",
    )
    .expect("valid")
});

/// A date literal: a year of four or more digits (or negative), month and day.
fn date_literal(text: &str) -> Option<chrono::NaiveDate> {
    let (negative, unsigned) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let mut parts = unsigned.splitn(3, '-');
    let year: i32 = parts.next()?.parse().ok()?;
    let (month, day) = (parts.next()?.parse().ok()?, parts.next()?.parse().ok()?);
    chrono::NaiveDate::from_ymd_opt(if negative { -year } else { year }, month, day)
}

/// A date-time literal: seconds and fractions optional, up to 12 fractional digits (chrono
/// keeps nanoseconds).
fn date_time_literal(text: &str) -> Option<Val> {
    let (main, offset) = match text.find(['Z', 'z']) {
        Some(i) => (&text[..i], "+00:00"),
        None => text.split_at(text.len() - 6),
    };
    let (date, time) = main.split_once(['T', 't'])?;
    let Val::Time(time) = time_literal(time)? else {
        return None;
    };
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let (hours, minutes) = offset[1..].split_once(':')?;
    let seconds = sign * (hours.parse::<i32>().ok()? * 3600 + minutes.parse::<i32>().ok()? * 60);
    let offset = chrono::FixedOffset::east_opt(seconds)?;
    date_literal(date)?
        .and_time(time)
        .and_local_timezone(offset)
        .single()
        .map(Val::DateTime)
}

fn time_literal(text: &str) -> Option<Val> {
    let mut parts = text.splitn(3, ':');
    let (h, m, s) = (parts.next()?, parts.next()?, parts.next().unwrap_or("00"));
    let (s, frac) = s.split_once('.').unwrap_or((s, ""));
    let mut nanos: u32 = if frac.is_empty() {
        0
    } else {
        format!("{:0<9}", &frac[..frac.len().min(9)]).parse().ok()?
    };
    let mut second: u32 = s.parse().ok()?;
    // A leap second (`23:59:60Z`) is the 59th second's overflow, as chrono holds it.
    if second == 60 {
        second = 59;
        nanos += 1_000_000_000;
    }
    NaiveTime::from_hms_nano_opt(h.parse().ok()?, m.parse().ok()?, second, nanos).map(Val::Time)
}

fn duration_literal(text: &str) -> Option<Val> {
    let caps = DURATION.captures(text)?;
    if text.ends_with('T') || text == "P" || text == "-P" {
        return None;
    }
    let part =
        |i: usize| -> Option<i64> { caps.get(i).map_or(Some(0), |m| m.as_str().parse().ok()) };
    let nanos = caps.get(6).map_or(Some(0), |m| {
        format!("{:0<9}", &m.as_str()[..m.as_str().len().min(9)])
            .parse::<i64>()
            .ok()
    })?;
    let d = TimeDelta::try_days(part(2)?)?
        .checked_add(&TimeDelta::try_hours(part(3)?)?)?
        .checked_add(&TimeDelta::try_minutes(part(4)?)?)?
        .checked_add(&TimeDelta::try_seconds(part(5)?)?)?
        .checked_add(&TimeDelta::nanoseconds(nanos))?;
    Some(Val::Duration(if caps.get(1).is_some() { -d } else { d }))
}

fn number_literal(text: &str) -> Option<Val> {
    let unsigned = text.trim_start_matches('+');
    if !text.contains(['.', 'e', 'E']) {
        if let Ok(i) = unsigned.parse::<i64>() {
            return Some(Val::Int(i));
        }
    }
    unsigned
        .parse::<f64>()
        .ok()
        .filter(|r| r.is_finite())
        .map(Val::Real)
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn peek_char(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
    }

    fn rest(&self) -> String {
        self.chars[self.pos..].iter().take(48).collect()
    }

    fn next_token(&mut self) -> Result<Token, ODataError> {
        while self.peek_char(0).is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
        let start = self.pos;
        let Some(c) = self.peek_char(0) else {
            return Ok(Token {
                tok: Tok::End,
                pos: start,
            });
        };
        let tok = match c {
            '(' | ')' | ',' => {
                self.pos += 1;
                match c {
                    '(' => Tok::LParen,
                    ')' => Tok::RParen,
                    _ => Tok::Comma,
                }
            }
            '\'' => Tok::Literal(Val::Str(self.string(start)?)),
            _ if c.is_ascii_hexdigit() && self.matched(&GUID).is_some() => {
                let text = self.take_match(&GUID);
                self.literal_end(start, &text)?;
                Tok::Literal(Val::Guid(uuid::Uuid::parse_str(&text).map_err(|_| {
                    ODataError::at(format!("invalid guid literal '{text}'"), start)
                })?))
            }
            _ if c.is_ascii_digit()
                || (matches!(c, '-' | '+')
                    && self.peek_char(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.number_like(start)?
            }
            _ if is_ident_start(c) => {
                while self.peek_char(0).is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                let word: String = self.chars[start..self.pos].iter().collect();
                if self.peek_char(0) == Some('\'') {
                    return self.prefixed_literal(word, start);
                }
                match word.as_str() {
                    "INF" => Tok::Literal(Val::Real(f64::INFINITY)),
                    "NaN" => Tok::Literal(Val::Real(f64::NAN)),
                    _ => Tok::Ident(word),
                }
            }
            _ => {
                self.pos += 1;
                Tok::Other(c)
            }
        };
        Ok(Token { tok, pos: start })
    }

    fn matched(&self, re: &Regex) -> Option<usize> {
        let rest: String = self.chars[self.pos..].iter().take(64).collect();
        re.find(&rest).map(|m| rest[..m.end()].chars().count())
    }

    fn take_match(&mut self, re: &Regex) -> String {
        let n = self.matched(re).unwrap_or(0);
        let text = self.chars[self.pos..self.pos + n].iter().collect();
        self.pos += n;
        text
    }

    /// A literal must not run into a name (`12abc`, `2024-01-01x`).
    fn literal_end(&mut self, start: usize, text: &str) -> Result<(), ODataError> {
        if self
            .peek_char(0)
            .is_some_and(|c| is_ident_char(c) || c == '.' || c == ':')
        {
            let mut end = self.pos;
            while self
                .chars
                .get(end)
                .is_some_and(|&c| is_ident_char(c) || matches!(c, '.' | ':' | '-' | '+'))
            {
                end += 1;
            }
            let whole: String = self.chars[start..end].iter().collect();
            return Err(ODataError::at(
                format!("invalid literal '{whole}' (after '{text}')"),
                start,
            ));
        }
        Ok(())
    }

    fn number_like(&mut self, start: usize) -> Result<Tok, ODataError> {
        if self.matched(&DATE_TIME).is_some() {
            let text = self.take_match(&DATE_TIME);
            self.literal_end(start, &text)?;
            return date_time_literal(&text).map(Tok::Literal).ok_or_else(|| {
                ODataError::at(format!("invalid date-time literal '{text}'"), start)
            });
        }
        if self.matched(&DATE).is_some() {
            let text = self.take_match(&DATE);
            self.literal_end(start, &text)?;
            return date_literal(&text)
                .map(|d| Tok::Literal(Val::Date(d)))
                .ok_or_else(|| ODataError::at(format!("invalid date literal '{text}'"), start));
        }
        if self.matched(&TIME).is_some() {
            let text = self.take_match(&TIME);
            self.literal_end(start, &text)?;
            return time_literal(&text)
                .map(Tok::Literal)
                .ok_or_else(|| ODataError::at(format!("invalid time literal '{text}'"), start));
        }
        let text = self.take_match(&NUMBER);
        if self.peek_char(0) == Some('.') || self.peek_char(0).is_some_and(is_ident_char) {
            let mut end = self.pos;
            while self
                .chars
                .get(end)
                .is_some_and(|&c| is_ident_char(c) || c == '.')
            {
                end += 1;
            }
            let whole: String = self.chars[start..end].iter().collect();
            return Err(ODataError::at(
                format!(
                    "invalid number literal '{whole}' (expected digits with an optional sign, \
                     decimal part and exponent, e.g. -12.5 or 1e3)"
                ),
                start,
            ));
        }
        number_literal(&text).map(Tok::Literal).ok_or_else(|| {
            ODataError::at(format!("number literal '{text}' is out of range"), start)
        })
    }

    /// `duration'…'`, and the prefixed literals this service does not support.
    fn prefixed_literal(&mut self, prefix: String, start: usize) -> Result<Token, ODataError> {
        let quote = self.pos;
        let body = self.string(quote)?;
        if prefix.eq_ignore_ascii_case("duration") {
            return duration_literal(&body)
                .map(|v| Token {
                    tok: Tok::Literal(v),
                    pos: start,
                })
                .ok_or_else(|| {
                    ODataError::at(
                        format!("invalid duration literal '{body}' (e.g. P1DT2H30M)"),
                        start,
                    )
                });
        }
        Err(ODataError::at(
            format!("{prefix}'…' literals are not supported"),
            start,
        ))
    }

    fn string(&mut self, start: usize) -> Result<String, ODataError> {
        self.pos += 1;
        let mut s = String::new();
        loop {
            match self.peek_char(0) {
                None => {
                    return Err(ODataError::at(
                        "unterminated string literal starting",
                        start,
                    ))
                }
                Some('\'') if self.peek_char(1) == Some('\'') => {
                    s.push('\'');
                    self.pos += 2;
                }
                Some('\'') => {
                    self.pos += 1;
                    return Ok(s);
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser<'c> {
    lexer: Lexer,
    peeked: Option<Token>,
    depth: usize,
    columns: &'c Columns,
}

/// A parsed operand: its expression, type and where it starts.
struct Typed {
    expr: Expr,
    ty: Type,
    pos: usize,
}

const PRIMARY_EXPECTED: &str = "expected a field name, a literal, a function call, 'not' or '('";

/// Function names of OData this service does not implement (refused as unsupported).
const UNSUPPORTED_FUNCTIONS: [&str; 8] = [
    "cast",
    "isof",
    "totalseconds",
    "hassubset",
    "hassubsequence",
    "case",
    "any",
    "all",
];

/// Words that cannot stand where an operand is expected (unless a field has that name).
const OPERATOR_WORDS: [&str; 17] = [
    "and", "or", "eq", "ne", "gt", "ge", "lt", "le", "add", "sub", "mul", "div", "divby", "mod",
    "in", "has", "not",
];

fn describe(expr: &Expr) -> String {
    match expr {
        Expr::Field { name, .. } => format!("field '{name}'"),
        Expr::Literal(v) => describe_value(v),
        Expr::Call(f, _) => format!("{}(…)", f.as_str()),
        Expr::Matches(..) => "matchesPattern(…)".into(),
        Expr::Binary(op, ..) => format!("the '{}' expression", op.as_str()),
        Expr::Not(_) => "the 'not' expression".into(),
        Expr::Negate(_) => "the negation".into(),
        Expr::In(..) => "the 'in' expression".into(),
    }
}

fn typed_name(t: &Typed) -> String {
    format!("{} ({})", describe(&t.expr), t.ty.name())
}

impl Parser<'_> {
    fn peek(&mut self) -> Result<Token, ODataError> {
        if self.peeked.is_none() {
            self.peeked = Some(self.lexer.next_token()?);
        }
        Ok(self.peeked.clone().expect("just filled"))
    }

    fn bump(&mut self) -> Result<Token, ODataError> {
        match self.peeked.take() {
            Some(token) => Ok(token),
            None => self.lexer.next_token(),
        }
    }

    fn enter(&mut self, pos: usize) -> Result<(), ODataError> {
        self.depth += 1;
        if self.depth > MAX_NESTING_DEPTH {
            return Err(ODataError::at(
                format!(
                    "expression is nested too deeply (maximum nesting depth of '(', 'not', \
                     negation and function calls is {MAX_NESTING_DEPTH})"
                ),
                pos,
            ));
        }
        Ok(())
    }

    fn expect_boolean(&self, t: &Typed, context: &str) -> Result<(), ODataError> {
        if matches!(t.ty, Type::Boolean | Type::Null) {
            Ok(())
        } else {
            Err(ODataError::at(
                format!(
                    "{context} needs a boolean, but {} is not one",
                    typed_name(t)
                ),
                t.pos,
            ))
        }
    }

    fn or_expr(&mut self) -> Result<Typed, ODataError> {
        let mut left = self.and_expr()?;
        while self.peek()?.is_word("or") {
            self.bump()?;
            let right = self.and_expr()?;
            self.expect_boolean(&left, "'or'")?;
            self.expect_boolean(&right, "'or'")?;
            left = Typed {
                pos: left.pos,
                expr: Expr::binary(BinaryOp::Or, left.expr, right.expr),
                ty: Type::Boolean,
            };
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Typed, ODataError> {
        let mut left = self.binary_level(0)?;
        while self.peek()?.is_word("and") {
            self.bump()?;
            let right = self.binary_level(0)?;
            self.expect_boolean(&left, "'and'")?;
            self.expect_boolean(&right, "'and'")?;
            left = Typed {
                pos: left.pos,
                expr: Expr::binary(BinaryOp::And, left.expr, right.expr),
                ty: Type::Boolean,
            };
        }
        Ok(left)
    }

    /// Levels below `and`: equality, relational, additive, multiplicative.
    fn binary_level(&mut self, level: usize) -> Result<Typed, ODataError> {
        const LEVELS: [&[BinaryOp]; 4] = [
            &[BinaryOp::Eq, BinaryOp::Ne],
            &[BinaryOp::Gt, BinaryOp::Ge, BinaryOp::Lt, BinaryOp::Le],
            &[BinaryOp::Add, BinaryOp::Sub],
            &[BinaryOp::Mul, BinaryOp::Div, BinaryOp::DivBy, BinaryOp::Mod],
        ];
        let next = |p: &mut Self| {
            if level + 1 < LEVELS.len() {
                p.binary_level(level + 1)
            } else {
                p.unary()
            }
        };
        let mut left = next(self)?;
        loop {
            let token = self.peek()?;
            let op = token
                .word()
                .and_then(|w| w.parse::<BinaryOp>().ok())
                .filter(|op| LEVELS[level].contains(op));
            let Some(op) = op else {
                break;
            };
            self.bump()?;
            let right = next(self)?;
            left = self.combine(op, left, right, token.pos)?;
        }
        Ok(left)
    }

    fn combine(
        &self,
        op: BinaryOp,
        left: Typed,
        right: Typed,
        op_pos: usize,
    ) -> Result<Typed, ODataError> {
        let ty = if op.comparison().is_some() {
            if !left.ty.comparable(right.ty) {
                return Err(ODataError::at(
                    format!(
                        "cannot compare {} with {}",
                        typed_name(&left),
                        typed_name(&right)
                    ),
                    op_pos,
                ));
            }
            Type::Boolean
        } else {
            arithmetic_type(op, left.ty, right.ty).ok_or_else(|| {
                ODataError::at(
                    format!(
                        "'{}' cannot be applied to {} and {}",
                        op.as_str(),
                        typed_name(&left),
                        typed_name(&right)
                    ),
                    op_pos,
                )
            })?
        };
        Ok(Typed {
            pos: left.pos,
            expr: Expr::binary(op, left.expr, right.expr),
            ty,
        })
    }

    fn unary(&mut self) -> Result<Typed, ODataError> {
        let token = self.peek()?;
        if token.is_word("not") {
            self.bump()?;
            self.enter(token.pos)?;
            let inner = self.unary()?;
            self.depth -= 1;
            self.expect_boolean(&inner, "'not'")?;
            return Ok(Typed {
                expr: Expr::Not(Box::new(inner.expr)),
                ty: Type::Boolean,
                pos: token.pos,
            });
        }
        if token.tok == Tok::Other('-') {
            self.bump()?;
            self.enter(token.pos)?;
            let inner = self.unary()?;
            self.depth -= 1;
            let expr = match inner.expr {
                Expr::Literal(Val::Int(i)) if i != i64::MIN => Expr::Literal(Val::Int(-i)),
                Expr::Literal(Val::Real(r)) => Expr::Literal(Val::Real(-r)),
                Expr::Literal(Val::Duration(d)) => Expr::Literal(Val::Duration(-d)),
                ref e
                    if matches!(
                        inner.ty,
                        Type::Integer | Type::Number | Type::Duration | Type::Null
                    ) =>
                {
                    Expr::Negate(Box::new(e.clone()))
                }
                _ => {
                    return Err(ODataError::at(
                        format!("'-' cannot negate {}", typed_name(&inner)),
                        token.pos,
                    ))
                }
            };
            return Ok(Typed {
                expr,
                ty: inner.ty,
                pos: token.pos,
            });
        }
        let primary = self.primary()?;
        if self.peek()?.is_word("in") {
            self.bump()?;
            return self.in_list(primary);
        }
        if self.peek()?.is_word("has") {
            return Err(ODataError::at(
                "the 'has' operator is not supported (there are no enumeration fields)",
                self.peek()?.pos,
            ));
        }
        Ok(primary)
    }

    fn in_list(&mut self, left: Typed) -> Result<Typed, ODataError> {
        let open = self.bump()?;
        if open.tok == Tok::Other('[') {
            return Err(ODataError::at(
                "JSON arrays after 'in' are not supported: write the list in parentheses, \
                 e.g. Name in ('Milk', 'Cheese')",
                open.pos,
            ));
        }
        if open.tok != Tok::LParen {
            return Err(ODataError::at(
                format!("expected '(' after 'in', found {}", open.describe()),
                open.pos,
            ));
        }
        let mut list = Vec::new();
        loop {
            let item = self.or_expr()?;
            if !left.ty.comparable(item.ty) {
                return Err(ODataError::at(
                    format!(
                        "cannot compare {} with {}",
                        typed_name(&left),
                        typed_name(&item)
                    ),
                    item.pos,
                ));
            }
            list.push(item.expr);
            let sep = self.bump()?;
            match sep.tok {
                Tok::Comma => continue,
                Tok::RParen => break,
                _ => {
                    return Err(ODataError::at(
                        format!(
                            "expected ',' or ')' in the 'in' list, found {}",
                            sep.describe()
                        ),
                        sep.pos,
                    ))
                }
            }
        }
        Ok(Typed {
            pos: left.pos,
            expr: Expr::In(Box::new(left.expr), list),
            ty: Type::Boolean,
        })
    }

    fn primary(&mut self) -> Result<Typed, ODataError> {
        let token = self.bump()?;
        let typed = match &token.tok {
            Tok::LParen => {
                self.enter(token.pos)?;
                let inner = self.or_expr()?;
                let close = self.bump()?;
                if close.tok == Tok::Comma {
                    return Err(ODataError::at(
                        "a list in parentheses is only allowed after 'in'",
                        close.pos,
                    ));
                }
                if close.tok != Tok::RParen {
                    return Err(ODataError::at(
                        format!(
                            "expected an operator or ')' to close the '(' at position {}, found {}",
                            token.pos,
                            close.describe()
                        ),
                        close.pos,
                    ));
                }
                self.depth -= 1;
                Typed {
                    pos: token.pos,
                    ..inner
                }
            }
            Tok::Literal(v) => Typed {
                ty: literal_type(v),
                expr: Expr::Literal(v.clone()),
                pos: token.pos,
            },
            Tok::Ident(word) => match word.to_ascii_lowercase().as_str() {
                "null" => Typed {
                    expr: Expr::Literal(Val::Null),
                    ty: Type::Null,
                    pos: token.pos,
                },
                "true" | "false" => Typed {
                    expr: Expr::Literal(Val::Bool(word.eq_ignore_ascii_case("true"))),
                    ty: Type::Boolean,
                    pos: token.pos,
                },
                _ if self.peek()?.tok == Tok::LParen => self.function(word, token.pos)?,
                lower
                    if OPERATOR_WORDS.contains(&lower)
                        && !self.columns.fields.contains_key(word.as_str()) =>
                {
                    return Err(ODataError::at(
                        format!("{PRIMARY_EXPECTED}, found {}", token.describe()),
                        token.pos,
                    ))
                }
                _ => self.field(word, token.pos)?,
            },
            Tok::Other('$') => {
                let name = self.peek()?;
                return Err(ODataError::at(
                    format!(
                        "${} is not supported (filters name the entity's fields directly)",
                        name.word().unwrap_or_default()
                    ),
                    token.pos,
                ));
            }
            Tok::Other('@') => {
                return Err(ODataError::at(
                    "parameter aliases (@name) and annotations are not supported",
                    token.pos,
                ))
            }
            Tok::Other('{' | '[') => {
                return Err(ODataError::at(
                    "JSON literals (objects and arrays) are not supported",
                    token.pos,
                ))
            }
            _ => {
                return Err(ODataError::at(
                    format!("{PRIMARY_EXPECTED}, found {}", token.describe()),
                    token.pos,
                ))
            }
        };
        Ok(typed)
    }

    fn field(&mut self, name: &str, pos: usize) -> Result<Typed, ODataError> {
        match self.peek()?.tok {
            Tok::Other('/') => {
                return Err(ODataError::at(
                    format!(
                        "property paths ('{name}/…'), navigation and lambda operators (any, all) \
                         are not supported: the items are flat"
                    ),
                    pos,
                ))
            }
            Tok::Other('.') => {
                return Err(ODataError::at(
                    format!(
                        "qualified names ('{name}.…': namespaces, enumeration literals, type \
                         casts) are not supported"
                    ),
                    pos,
                ))
            }
            _ => {}
        }
        let known = self.columns.fields.get(name).copied();
        let Some(ty) = known.or(self.columns.any_field.then_some(Type::Null)) else {
            return Err(ODataError::at(
                format!("unknown field '{name}' (fields: {})", self.columns.list()),
                pos,
            ));
        };
        if ty == Type::Json {
            return Err(ODataError::at(
                format!("field '{name}' holds objects or arrays; querying them is not supported"),
                pos,
            ));
        }
        Ok(Typed {
            expr: Expr::field(name, ty),
            ty,
            pos,
        })
    }

    fn function(&mut self, name: &str, pos: usize) -> Result<Typed, ODataError> {
        let Ok(func) = name.parse::<Function>() else {
            let lower = name.to_ascii_lowercase();
            let unsupported =
                UNSUPPORTED_FUNCTIONS.contains(&lower.as_str()) || lower.starts_with("geo");
            return Err(ODataError::at(
                if unsupported {
                    format!("the function '{name}' is not supported")
                } else {
                    format!(
                        "unknown function '{name}' (supported: contains, startswith, endswith, \
                         length, indexof, substring, tolower, toupper, trim, concat, \
                         matchesPattern, year, month, day, hour, minute, second, \
                         fractionalseconds, date, time, totaloffsetminutes, now, maxdatetime, \
                         mindatetime, round, floor, ceiling)"
                    )
                },
                pos,
            ));
        };
        self.bump()?; // '('
        self.enter(pos)?;
        let mut args = Vec::new();
        if self.peek()?.tok == Tok::RParen {
            self.bump()?;
        } else {
            loop {
                args.push(self.or_expr()?);
                let sep = self.bump()?;
                match sep.tok {
                    Tok::Comma => continue,
                    Tok::RParen => break,
                    _ => {
                        return Err(ODataError::at(
                            format!(
                                "expected ',' or ')' in the arguments of {}, found {}",
                                func.as_str(),
                                sep.describe()
                            ),
                            sep.pos,
                        ))
                    }
                }
            }
        }
        self.depth -= 1;
        check_call(func, args, pos)
    }
}

fn literal_type(v: &Val) -> Type {
    match v {
        Val::Null => Type::Null,
        Val::Bool(_) => Type::Boolean,
        Val::Int(_) => Type::Integer,
        Val::Real(_) => Type::Number,
        Val::Str(_) => Type::String,
        Val::Date(_) => Type::Date,
        Val::DateTime(_) => Type::DateTime,
        Val::Time(_) => Type::TimeOfDay,
        Val::Duration(_) => Type::Duration,
        Val::Guid(_) => Type::Guid,
    }
}

fn arithmetic_type(op: BinaryOp, a: Type, b: Type) -> Option<Type> {
    use Type::*;
    let numeric = |t: Type| t.is_numeric() || t == Null;
    if numeric(a) && numeric(b) {
        let both_integer = matches!(a, Integer | Null) && matches!(b, Integer | Null);
        return Some(if both_integer && op != BinaryOp::DivBy {
            Integer
        } else {
            Number
        });
    }
    match (op, a, b) {
        (BinaryOp::Add | BinaryOp::Sub, DateTime, Duration | Null) => Some(DateTime),
        (BinaryOp::Add | BinaryOp::Sub, Null, Duration) => Some(Null),
        (BinaryOp::Sub, DateTime, DateTime) | (BinaryOp::Sub, Date, Date) => Some(Duration),
        (BinaryOp::Add | BinaryOp::Sub, Duration, Duration | Null) => Some(Duration),
        _ => None,
    }
}

/// Checks a call's arguments against the function's signature.
fn check_call(func: Function, args: Vec<Typed>, pos: usize) -> Result<Typed, ODataError> {
    use Function::*;
    use Type::*;
    let name = func.as_str();
    let (params, result): (&[&[Type]], Type) = match func {
        Contains | StartsWith | EndsWith => (&[&[String], &[String]], Boolean),
        Length => (&[&[String]], Integer),
        IndexOf => (&[&[String], &[String]], Integer),
        Substring if args.len() == 3 => (&[&[String], &[Integer], &[Integer]], String),
        Substring => (&[&[String], &[Integer]], String),
        ToLower | ToUpper | Trim => (&[&[String]], String),
        Concat => (&[&[String], &[String]], String),
        MatchesPattern => (&[&[String], &[String]], Boolean),
        Year | Month | Day => (&[&[Type::Date, DateTime]], Integer),
        Hour | Minute | Second => (&[&[DateTime, TimeOfDay]], Integer),
        FractionalSeconds => (&[&[DateTime, TimeOfDay]], Number),
        Function::Date => (&[&[DateTime]], Type::Date),
        Time => (&[&[DateTime]], TimeOfDay),
        TotalOffsetMinutes => (&[&[DateTime]], Integer),
        Now | MaxDateTime | MinDateTime => (&[], DateTime),
        Round | Floor | Ceiling => {
            let ty = args.first().map_or(Number, |a| a.ty);
            (
                &[&[Integer, Number]],
                if ty == Integer { Integer } else { Number },
            )
        }
    };
    if args.len() != params.len() {
        return Err(ODataError::at(
            format!(
                "{name} takes {} argument{}, not {}",
                params.len(),
                if params.len() == 1 { "" } else { "s" },
                args.len()
            ),
            pos,
        ));
    }
    for (i, (arg, allowed)) in args.iter().zip(params).enumerate() {
        let fits = arg.ty == Null
            || allowed.contains(&arg.ty)
            || (allowed.contains(&Number) && arg.ty == Integer)
            || (allowed.contains(&Integer)
                && arg.ty == Number
                && matches!(func, Round | Floor | Ceiling));
        if !fits {
            let wanted: Vec<&str> = allowed.iter().map(|t| t.name()).collect();
            return Err(ODataError::at(
                format!(
                    "argument {} of {name} must be {}, not {}",
                    i + 1,
                    wanted.join(" or "),
                    typed_name(arg)
                ),
                arg.pos,
            ));
        }
    }
    let mut exprs: Vec<Expr> = args.into_iter().map(|a| a.expr).collect();
    if func == MatchesPattern {
        let Some(Expr::Literal(Val::Str(pattern))) = exprs.get(1) else {
            return Err(ODataError::at(
                "matchesPattern needs its pattern as a string literal",
                pos,
            ));
        };
        let compiled = regex::RegexBuilder::new(pattern)
            .size_limit(MAX_PATTERN_BYTES)
            .build()
            .map_err(|e| {
                ODataError::at(
                    format!(
                        "invalid pattern in matchesPattern: {}",
                        e.to_string().lines().last().unwrap_or("")
                    ),
                    pos,
                )
            })?;
        let subject = exprs.swap_remove(0);
        return Ok(Typed {
            expr: Expr::Matches(Box::new(subject), Pattern(compiled)),
            ty: Boolean,
            pos,
        });
    }
    Ok(Typed {
        expr: Expr::Call(func, exprs),
        ty: result,
        pos,
    })
}

fn check_length(option: &str, text: &str) -> Result<(), ODataError> {
    let length = text.chars().count();
    if length > MAX_OPTION_LENGTH {
        return Err(ODataError::whole(format!(
            "{option} is too long ({length} characters, maximum {MAX_OPTION_LENGTH})"
        )));
    }
    if text.trim().is_empty() {
        return Err(ODataError::whole(format!("{option} must not be empty")));
    }
    Ok(())
}

/// The grammar has no whitespace between `=` and the expression.
fn check_start(option: &str, text: &str) -> Result<(), ODataError> {
    if text.starts_with(char::is_whitespace) {
        return Err(ODataError::at(
            format!("{option} must not start with whitespace"),
            0,
        ));
    }
    Ok(())
}

fn parser<'c>(text: &str, columns: &'c Columns) -> Parser<'c> {
    Parser {
        lexer: Lexer {
            chars: text.chars().collect(),
            pos: 0,
        },
        peeked: None,
        depth: 0,
        columns,
    }
}

fn trailing(parser: &mut Parser<'_>, token: &Token, expected: &str) -> ODataError {
    if token.tok == Tok::RParen {
        return ODataError::at("unmatched ')'", token.pos);
    }
    parser.lexer.pos = token.pos;
    let shown = parser.lexer.rest();
    let shown = shown.trim_end();
    let shown = if shown.chars().count() > 30 {
        format!("{}...", shown.chars().take(30).collect::<String>())
    } else {
        shown.to_string()
    };
    ODataError::at(
        format!("unexpected '{shown}' (expected {expected})"),
        token.pos,
    )
}

/// Checks the syntax of a filter for an entity that does not exist yet (fields untyped).
pub fn check_filter_syntax(text: &str) -> Result<(), ODataError> {
    let columns = Columns {
        any_field: true,
        ..Columns::default()
    };
    parse_filter(text, &columns).map(|_| ())
}

/// Parses and type-checks a `$filter` expression over the entity's columns.
pub fn parse_filter(text: &str, columns: &Columns) -> Result<Expr, ODataError> {
    check_length("$filter", text)?;
    check_start("$filter", text)?;
    let mut parser = parser(text, columns);
    let expr = parser.or_expr()?;
    let token = parser.bump()?;
    if token.tok != Tok::End {
        return Err(trailing(&mut parser, &token, "an operator or the end"));
    }
    if !matches!(expr.ty, Type::Boolean | Type::Null) {
        return Err(ODataError::at(
            format!(
                "$filter must be a boolean expression, but {} is not one",
                typed_name(&expr)
            ),
            0,
        ));
    }
    Ok(expr.expr)
}

/// Parses an `$orderby` list: comma-separated expressions, each optionally `asc` or `desc`.
pub fn parse_orderby(text: &str, columns: &Columns) -> Result<Vec<OrderKey>, ODataError> {
    check_length("$orderby", text)?;
    check_start("$orderby", text)?;
    let mut parser = parser(text, columns);
    let mut keys = Vec::new();
    loop {
        let key = parser.or_expr()?;
        let mut token = parser.bump()?;
        let direction = match token.word().as_deref() {
            Some("asc") => Some(SortDirection::Asc),
            Some("desc") => Some(SortDirection::Desc),
            _ => None,
        };
        if direction.is_some() {
            token = parser.bump()?;
        }
        keys.push(OrderKey {
            expr: key.expr,
            direction: direction.unwrap_or(SortDirection::Asc),
        });
        if keys.len() > MAX_ORDER_KEYS {
            return Err(ODataError::at(
                format!("$orderby takes at most {MAX_ORDER_KEYS} keys"),
                key.pos,
            ));
        }
        match token.tok {
            Tok::End => return Ok(keys),
            Tok::Comma => continue,
            _ => {
                return Err(trailing(
                    &mut parser,
                    &token,
                    "'asc', 'desc', ',' or the end",
                ))
            }
        }
    }
}

/// Parses a `$select` list: `*` or comma-separated field names of the entity.
pub fn parse_select(text: &str, columns: &Columns) -> Result<Option<Vec<String>>, ODataError> {
    check_length("$select", text)?;
    if text.trim() == "*" {
        return Ok(None);
    }
    let mut fields = Vec::new();
    let mut offset = 0;
    for entry in text.split(',') {
        let start = offset + entry.chars().take_while(|c| c.is_whitespace()).count();
        offset += entry.chars().count() + 1;
        let name = entry.trim();
        if name.is_empty() {
            return Err(ODataError::at("empty field name in $select", start));
        }
        if let Some((i, c)) = name.chars().enumerate().find(|&(i, c)| {
            if i == 0 {
                !is_ident_start(c)
            } else {
                !is_ident_char(c)
            }
        }) {
            let message = match c {
                '(' | '/' | '.' | '@' => format!(
                    "paths, qualified names, annotations and nested options in $select \
                     ('{name}') are not supported"
                ),
                '*' if i == 0 => "'*' must be the whole of $select".to_string(),
                _ if c.is_whitespace() => format!(
                    "unexpected '{}' after field name '{}' in $select (separate fields with ',')",
                    name[name.find(char::is_whitespace).unwrap_or(0)..].trim(),
                    &name[..name.find(char::is_whitespace).unwrap_or(0)]
                ),
                _ => format!(
                    "invalid character '{c}' in field name '{name}' in $select (field names are \
                     letters, digits and '_', not starting with a digit)"
                ),
            };
            return Err(ODataError::at(message, start + i));
        }
        if !columns.fields.contains_key(name) {
            return Err(ODataError::at(
                format!("unknown field '{name}' (fields: {})", columns.list()),
                start,
            ));
        }
        if !fields.iter().any(|f| f == name) {
            fields.push(name.to_string());
        }
        if fields.len() > MAX_SELECT_FIELDS {
            return Err(ODataError::at(
                format!("$select takes at most {MAX_SELECT_FIELDS} fields"),
                start,
            ));
        }
    }
    Ok(Some(fields))
}

/// A token of `$search`.
#[derive(Debug, Clone, PartialEq)]
enum SearchToken {
    Open,
    Close,
    /// A word (`AND`, `OR`, `NOT` are operators only where an operator fits).
    Word(String),
    Phrase(String),
}

/// Parses a `$search` expression: words and `"phrases"`, `AND` (also implied by a space),
/// `OR`, `NOT` and parentheses; terms are lower-cased (the search ignores case). A word in
/// single quotes keeps its spaces and quotes.
pub fn parse_search(text: &str) -> Result<Search, ODataError> {
    check_length("$search", text)?;
    let tokens = search_tokens(text)?;
    let mut at = 0;
    let search = search_or(&tokens, &mut at, 0)?;
    if let Some((pos, _)) = tokens.get(at) {
        return Err(ODataError::at("unmatched ')' in $search", *pos));
    }
    Ok(search)
}

fn search_tokens(text: &str) -> Result<Vec<(usize, SearchToken)>, ODataError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let start = i;
        if c.is_whitespace() {
            i += 1;
        } else if c == '(' {
            tokens.push((i, SearchToken::Open));
            i += 1;
        } else if c == ')' {
            tokens.push((i, SearchToken::Close));
            i += 1;
        } else if c == '"' {
            let mut phrase = String::new();
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                if chars[i] == '\\' && i + 1 < chars.len() {
                    i += 1;
                }
                phrase.push(chars[i]);
                i += 1;
            }
            if i >= chars.len() {
                return Err(ODataError::at("unterminated phrase in $search", start));
            }
            i += 1;
            if chars
                .get(i)
                .is_some_and(|c| !c.is_whitespace() && *c != ')')
            {
                return Err(ODataError::at(
                    "a phrase in $search must be followed by a space, ')' or the end",
                    i,
                ));
            }
            tokens.push((start, SearchToken::Phrase(phrase)));
        } else if c == '\'' {
            let end = chars[i + 1..]
                .iter()
                .position(|&c| c == '\'')
                .map_or(chars.len(), |n| i + n + 2);
            tokens.push((start, SearchToken::Word(chars[i..end].iter().collect())));
            i = end;
        } else {
            while i < chars.len() && !chars[i].is_whitespace() && !"()".contains(chars[i]) {
                i += 1;
            }
            tokens.push((start, SearchToken::Word(chars[start..i].iter().collect())));
        }
    }
    if tokens.is_empty() {
        return Err(ODataError::whole("$search must not be empty"));
    }
    Ok(tokens)
}

type SearchTokens = [(usize, SearchToken)];

fn is_operator(t: &SearchTokens, at: usize, word: &str) -> bool {
    matches!(t.get(at), Some((_, SearchToken::Word(w))) if w == word)
        && matches!(
            t.get(at + 1),
            Some((
                _,
                SearchToken::Word(_) | SearchToken::Phrase(_) | SearchToken::Open
            ))
        )
}

fn search_or(t: &SearchTokens, at: &mut usize, depth: usize) -> Result<Search, ODataError> {
    let mut left = search_and(t, at, depth)?;
    while is_operator(t, *at, "OR") {
        *at += 1;
        let right = search_and(t, at, depth)?;
        left = Search::Or(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn search_and(t: &SearchTokens, at: &mut usize, depth: usize) -> Result<Search, ODataError> {
    let mut left = search_unary(t, at, depth)?;
    loop {
        match t.get(*at) {
            None | Some((_, SearchToken::Close)) => break,
            _ if is_operator(t, *at, "OR") => break,
            _ if is_operator(t, *at, "AND") => *at += 1,
            _ => {}
        }
        let right = search_unary(t, at, depth)?;
        left = Search::And(Box::new(left), Box::new(right));
    }
    Ok(left)
}

fn search_unary(t: &SearchTokens, at: &mut usize, depth: usize) -> Result<Search, ODataError> {
    if depth > MAX_NESTING_DEPTH {
        return Err(ODataError::whole("$search is nested too deeply"));
    }
    if is_operator(t, *at, "NOT") {
        *at += 1;
        return Ok(Search::Not(Box::new(search_unary(t, at, depth + 1)?)));
    }
    let Some((pos, token)) = t.get(*at) else {
        return Err(ODataError::whole("$search ends where a term was expected"));
    };
    *at += 1;
    match token {
        SearchToken::Open => {
            let inner = search_or(t, at, depth + 1)?;
            match t.get(*at) {
                Some((_, SearchToken::Close)) => {
                    *at += 1;
                    Ok(inner)
                }
                _ => Err(ODataError::at("unclosed '(' in $search", *pos)),
            }
        }
        SearchToken::Close => Err(ODataError::at("unexpected ')' in $search", *pos)),
        SearchToken::Word(text) | SearchToken::Phrase(text) => {
            Ok(Search::Term(text.to_lowercase()))
        }
    }
}

/// Parsing for the store's tests: field types follow the field's name (`s…`/`City`/`c…` string,
/// `b…`/`B` boolean, `d…` date, `t…` date-time, anything else number).
#[cfg(test)]
pub mod tests_support {
    use super::*;
    use crate::item_query::{Filter, Predicate};

    pub fn type_of(name: &str) -> Type {
        match name.chars().next() {
            _ if name == "City" || name == "Name" => Type::String,
            Some('s' | 'c') => Type::String,
            Some('b' | 'B') => Type::Boolean,
            Some('d') => Type::Date,
            Some('t') => Type::DateTime,
            _ => Type::Number,
        }
    }

    /// The filter, with every identifier of the text a field typed by [`type_of`].
    pub fn filter(text: &str) -> Filter {
        Filter::new(parse_filter(text, &columns_of(text)).unwrap_or_else(|e| panic!("{text}: {e}")))
    }

    /// The sort keys, typed as [`filter`] types fields.
    pub fn orderby(text: &str) -> Vec<OrderKey> {
        parse_orderby(text, &columns_of(text)).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn columns_of(text: &str) -> Columns {
        let mut columns = Columns::default();
        let mut word = String::new();
        for c in text.chars().chain(std::iter::once(' ')) {
            if is_ident_char(c) {
                word.push(c);
            } else if !word.is_empty() {
                let lower = word.to_ascii_lowercase();
                let keyword = OPERATOR_WORDS.contains(&lower.as_str())
                    || ["true", "false", "null", "asc", "desc", "inf", "nan"]
                        .contains(&lower.as_str());
                if word.starts_with(is_ident_start) && !keyword {
                    columns.fields.insert(word.clone(), type_of(&word));
                }
                word.clear();
            }
        }
        columns
    }

    pub fn predicate(text: &str) -> Predicate {
        filter(text)
            .predicate
            .unwrap_or_else(|| panic!("{text} has no SQL form"))
    }

    /// Seeded random filters over a number field `a`, a string field `s` and a boolean `b`, of
    /// the part of the language the store compiles to SQL (every one has a SQL form).
    pub fn generated_filters(seed: u64, count: usize) -> Vec<String> {
        use rand::SeedableRng;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        (0..count).map(|_| generated(&mut rng, 3)).collect()
    }

    fn generated(rng: &mut rand::rngs::StdRng, depth: u32) -> String {
        use rand::Rng;
        const OPS: [&str; 6] = ["eq", "ne", "gt", "ge", "lt", "le"];
        const NUMBERS: [&str; 8] = [
            "1",
            "1.5",
            "-3",
            "0",
            "null",
            "9007199254740992",
            "2e0",
            "-0.5",
        ];
        const STRINGS: [&str; 7] = ["'Ann'", "'ann'", "''", "'a'", "null", "'Bob-Ann'", "'é'"];
        const NEEDLES: [&str; 5] = ["'Ann'", "''", "'nn'", "'B'", "'é'"];
        let pick = |rng: &mut rand::rngs::StdRng, xs: &[&str]| {
            xs[rng.random_range(0..xs.len())].to_string()
        };
        if depth > 0 && rng.random_bool(0.45) {
            let a = generated(rng, depth - 1);
            return match rng.random_range(0..3) {
                0 => format!("({a} and {})", generated(rng, depth - 1)),
                1 => format!("({a} or {})", generated(rng, depth - 1)),
                _ => format!("not ({a})"),
            };
        }
        match rng.random_range(0..9) {
            0 => format!("a {} {}", pick(rng, &OPS), pick(rng, &NUMBERS)),
            1 => format!("{} {} a", pick(rng, &NUMBERS), pick(rng, &OPS)),
            2 => format!("s {} {}", pick(rng, &OPS), pick(rng, &STRINGS)),
            3 => format!(
                "b {} {}",
                pick(rng, &OPS),
                pick(rng, &["true", "false", "null"])
            ),
            4 => format!(
                "{}(s,{})",
                pick(rng, &["contains", "startswith", "endswith"]),
                pick(rng, &NEEDLES)
            ),
            5 => "b".to_string(),
            6 => format!("a in ({}, {})", pick(rng, &NUMBERS), pick(rng, &NUMBERS)),
            7 => pick(rng, &["true", "false", "null"]),
            _ => format!("s in ({}, {})", pick(rng, &STRINGS), pick(rng, &STRINGS)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn columns() -> Columns {
        Columns {
            any_field: false,
            fields: [
                ("Name", Type::String),
                ("Rating", Type::Integer),
                ("Price", Type::Number),
                ("Completed", Type::Boolean),
                ("ReleaseDate", Type::Date),
                ("CreatedAt", Type::DateTime),
                ("Eq", Type::Integer),
                ("a", Type::Integer),
                ("b", Type::Integer),
                ("c", Type::String),
                ("Tags", Type::Json),
            ]
            .into_iter()
            .map(|(n, t)| (n.to_string(), t))
            .collect(),
        }
    }

    fn f(text: &str) -> Expr {
        parse_filter(text, &columns()).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn err(text: &str) -> ODataError {
        parse_filter(text, &columns()).expect_err(text)
    }

    fn assert_err(text: &str, position: usize, needle: &str) {
        let e = err(text);
        assert_eq!(e.position, Some(position), "{text}: {e}");
        assert!(e.message.contains(needle), "{text}: {e}");
    }

    fn keeps(text: &str, item: serde_json::Value) -> bool {
        f(text).matches(&item)
    }

    #[test]
    fn a_string_function_of_null_is_null_so_not_does_not_keep_it() {
        // Cause 1: `not contains(Name,'x')` leaves out items without a Name.
        assert!(!keeps("not contains(Name,'x')", json!({})));
        assert!(!keeps("not contains(Name,'x')", json!({"Name": null})));
        assert!(keeps("not contains(Name,'x')", json!({"Name": "abc"})));
        assert!(!keeps("not contains(Name,'a')", json!({"Name": "abc"})));
        // Comparisons with null are two-valued: `not (Name eq 'x')` keeps them.
        assert!(keeps("not (Name eq 'x')", json!({})));
        assert!(keeps("Name ne 'x'", json!({})));
        // Kleene logic.
        assert!(keeps(
            "contains(Name,'x') or Rating eq 1",
            json!({"Rating": 1})
        ));
        assert!(!keeps(
            "contains(Name,'x') or Rating eq 2",
            json!({"Rating": 1})
        ));
        assert!(!keeps(
            "not (contains(Name,'x') and Rating eq 1)",
            json!({"Rating": 1})
        ));
        assert!(keeps(
            "not (contains(Name,'x') and Rating eq 2)",
            json!({"Rating": 1})
        ));
    }

    #[test]
    fn not_binds_tighter_than_comparisons() {
        // Cause 2.
        assert_eq!(
            f("not Completed eq true"),
            Expr::binary(
                BinaryOp::Eq,
                Expr::Not(Box::new(Expr::field("Completed", Type::Boolean))),
                Expr::Literal(Val::Bool(true))
            )
        );
        assert!(keeps("not Completed eq true", json!({"Completed": false})));
        assert_err("not Rating eq 5", 4, "'not' needs a boolean");
        // `in` binds tighter than `not`.
        assert!(keeps("not Name in ('a','b')", json!({"Name": "c"})));
        assert!(!keeps("not Name in ('a','b')", json!({"Name": "a"})));
    }

    #[test]
    fn ill_typed_comparisons_are_refused_naming_both_sides() {
        // Cause 5.
        let e = err("Rating ne 'x'");
        assert_eq!(e.position, Some(7));
        assert_eq!(
            e.message,
            "cannot compare field 'Rating' (integer) with the string 'x' (string)"
        );
        assert_err("Name gt 5", 5, "field 'Name' (string) with the number 5");
        assert_err("Completed eq 1", 10, "boolean");
        assert_err("ReleaseDate eq 'x'", 12, "date");
        assert_err("Rating add 'x' eq 1", 7, "'add' cannot be applied");
        assert_err("Rating", 0, "must be a boolean expression");
        assert_err("Rating and Completed", 0, "'and' needs a boolean");
        assert_err(
            "contains(Rating,'1')",
            9,
            "argument 1 of contains must be string",
        );
        assert_err("Tags eq null", 0, "objects or arrays");
        // Numbers of either kind compare; a date compares with a date-time.
        f("Rating lt 2.5 and Price eq 3");
        f("CreatedAt ge 2024-01-01 and ReleaseDate lt 2024-01-01T00:00:00Z");
        f("null eq Name and Name eq null and null eq null");
    }

    #[test]
    fn keywords_operators_and_functions_ignore_case() {
        assert!(keeps(
            "Name EQ 'a' AND NOT Completed",
            json!({"Name": "a", "Completed": false})
        ));
        assert!(keeps(
            "Contains(Name,'b') Or TRUE eq false",
            json!({"Name": "abc"})
        ));
        assert!(keeps("Rating Eq Null", json!({})));
        assert!(keeps("TOLOWER(Name) eq 'abc'", json!({"Name": "ABC"})));
        // A field named like an operator is still a field where an operand is expected.
        assert!(keeps("Eq eq 1", json!({"Eq": 1})));
    }

    #[test]
    fn literals() {
        let lit = |text: &str| match f(&format!("Rating eq {text} or true")) {
            Expr::Binary(_, a, _) => match *a {
                Expr::Binary(_, _, v) => *v,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("5"), Expr::Literal(Val::Int(5)));
        assert_eq!(lit("+5"), Expr::Literal(Val::Int(5)));
        assert_eq!(lit("-5"), Expr::Literal(Val::Int(-5)));
        assert_eq!(lit("1e2"), Expr::Literal(Val::Real(100.0)));
        assert_eq!(lit("1.5E-1"), Expr::Literal(Val::Real(0.15)));
        assert_eq!(lit("INF"), Expr::Literal(Val::Real(f64::INFINITY)));
        assert_eq!(lit("-INF"), Expr::Literal(Val::Real(f64::NEG_INFINITY)));
        assert!(matches!(lit("NaN"), Expr::Literal(Val::Real(r)) if r.is_nan()));
        assert_eq!(
            lit("9223372036854775808"),
            Expr::Literal(Val::Real(9_223_372_036_854_775_808.0))
        );
        let created = |t: &str| f(&format!("CreatedAt lt {t}"));
        // `utcNow()` in Power Automate writes 7 fractional digits.
        assert!(created("2024-01-01T00:00:00.1234567Z")
            .matches(&json!({"CreatedAt": "2023-12-31T23:59:59Z"})));
        assert!(created("2024-01-01T10:00:00+02:00")
            .matches(&json!({"CreatedAt": "2024-01-01T07:59:00Z"})));
        assert!(!created("2024-01-01T10:00:00+02:00")
            .matches(&json!({"CreatedAt": "2024-01-01T08:00:00Z"})));
        assert!(created("2024-01-01T10:00Z").matches(&json!({"CreatedAt": "2024-01-01T09:59:59Z"})));
        assert!(keeps(
            "ReleaseDate ge 2024-01-01",
            json!({"ReleaseDate": "2024-01-01"})
        ));
        assert!(!keeps(
            "ReleaseDate ge 2024-01-01",
            json!({"ReleaseDate": "2023-12-31"})
        ));
        assert!(keeps(
            "hour(CreatedAt) eq 10 and time(CreatedAt) eq 10:30:00",
            json!({"CreatedAt": "2024-01-01T10:30:00+05:00"})
        ));
        assert!(keeps(
            "CreatedAt sub 2024-01-01T00:00:00Z eq duration'P1DT1H'",
            json!({"CreatedAt": "2024-01-02T01:00:00Z"})
        ));
        assert!(keeps(
            "CreatedAt add duration'-PT30M' lt 2024-01-01T00:00:00Z",
            json!({"CreatedAt": "2024-01-01T00:29:00Z"})
        ));
        assert_err("Rating eq 12abc", 10, "invalid number literal '12abc'");
        assert_err("Rating eq 1.2.3", 10, "invalid number literal");
        assert_err("ReleaseDate eq 2024-13-01", 15, "invalid date literal");
        assert_err("Name eq 'abc", 8, "unterminated string literal");
        assert_err("Name eq binary'AA'", 8, "not supported");
        assert_err("CreatedAt lt duration'P'", 13, "invalid duration literal");
        assert!(keeps(
            "Name eq 01234567-89ab-cdef-0123-456789ABCDEF",
            json!({"Name": "01234567-89ab-cdef-0123-456789abcdef"})
        ));
    }

    #[test]
    fn arithmetic_and_functions() {
        let item = json!({"Name": "  Ann-Marie ", "Rating": 7, "Price": 2.5, "CreatedAt": "2024-02-29T13:45:30.25-05:30"});
        for text in [
            "Rating add 1 eq 8",
            "Rating sub 10 eq -3",
            "Rating mul 2 eq 14",
            "Rating div 2 eq 3",
            "-Rating div 2 eq -3",
            "Rating divby 2 eq 3.5",
            "Rating mod 4 eq 3",
            "-Rating mod 4 eq -3",
            "Price mul 2 eq 5",
            "Price mod 1 eq 0.5",
            "Rating add Price gt 9",
            "5 lt Rating",
            "Rating gt Price",
            "length(Name) eq 12",
            "length(trim(Name)) eq 9",
            "indexof(Name,'M') eq 6",
            "indexof(Name,'x') eq -1",
            "substring(Name,2) eq 'Ann-Marie '",
            "substring(Name,2,3) eq 'Ann'",
            "substring(Name,-4,1) eq ' '",
            "substring(Name,99) eq ''",
            "tolower(Name) eq '  ann-marie '",
            "toupper(trim(Name)) eq 'ANN-MARIE'",
            "concat(trim(Name),'!') eq 'Ann-Marie!'",
            "matchesPattern(Name,'^ +A[a-z]+-')",
            "startswith(trim(Name),'Ann') and endswith(Name,' ')",
            "year(CreatedAt) eq 2024 and month(CreatedAt) eq 2 and day(CreatedAt) eq 29",
            "hour(CreatedAt) eq 13 and minute(CreatedAt) eq 45 and second(CreatedAt) eq 30",
            "fractionalseconds(CreatedAt) eq 0.25",
            "totaloffsetminutes(CreatedAt) eq -330",
            "date(CreatedAt) eq 2024-02-29",
            "CreatedAt lt now() and CreatedAt lt maxdatetime() and CreatedAt gt mindatetime()",
            "round(Price) eq 3 and floor(Price) eq 2 and ceiling(Price) eq 3 and round(Rating) eq 7",
            "round(-2.5) eq -3",
            "Rating in (1, 7, 9)",
            "Rating div 0 eq null",
            "Rating mod 0 eq null",
            "Price divby 0 eq null",
            "Rating add 9223372036854775807 gt 9223372036854775807",
        ] {
            assert!(keeps(text, item.clone()), "{text}");
        }
        for text in ["Rating in (1, 2)", "Rating add null eq 8", "length(c) eq 0"] {
            assert!(!keeps(text, item.clone()), "{text}");
        }
        assert_err("length(Name,1) eq 1", 0, "length takes 1 argument, not 2");
        assert_err("matchesPattern(Name,c)", 0, "string literal");
        assert_err("matchesPattern(Name,'(')", 0, "invalid pattern");
        assert_err(
            "tolower(Name) eq 1",
            14,
            "cannot compare tolower(…) (string)",
        );
        assert_err("frobnicate(Name)", 0, "unknown function 'frobnicate'");
        assert_err("isof(Name,Edm.String)", 0, "not supported");
        assert_err("geo.distance(a,b) lt 1", 0, "not supported");
    }

    #[test]
    fn null_comparisons_follow_the_spec() {
        let missing = json!({});
        assert!(keeps("Rating eq null", missing.clone()));
        assert!(keeps("Rating ge null and Rating le null", missing.clone()));
        assert!(!keeps("Rating gt null or Rating lt null", missing.clone()));
        assert!(!keeps(
            "Rating ge 1 or Rating le 1 or Rating eq 1",
            missing.clone()
        ));
        assert!(keeps("Rating ne 1", missing.clone()));
        assert!(!keeps("Rating ge null", json!({"Rating": 1})));
        assert!(keeps("Rating ne null", json!({"Rating": 1})));
        // A value of another type than its column reads as null.
        assert!(keeps("Rating eq null", json!({"Rating": "7"})));
        assert!(keeps("ReleaseDate eq null", json!({"ReleaseDate": "soon"})));
        // NaN equals nothing.
        assert!(!keeps("Price eq NaN", json!({"Price": 1.0})));
        assert!(keeps("Price ne NaN", json!({"Price": 1.0})));
        // Bare booleans.
        assert!(keeps("Completed", json!({"Completed": true})));
        assert!(!keeps("Completed", json!({})));
        assert!(!keeps("not Completed", json!({})));
        assert!(keeps("not Completed", json!({"Completed": false})));
        assert!(keeps("true", json!({})));
        assert!(!keeps("null", json!({})));
    }

    #[test]
    fn unsupported_features_say_so() {
        for text in [
            "Address/City eq 'x'",
            "Tags/any(t:t eq 'a')",
            "$it eq 'a'",
            "Name eq @name",
            "Name has Namespace.Color'Red'",
            "Namespace.Fn(Name)",
            "Name eq {\"a\":1}",
        ] {
            let e = err(text);
            assert!(e.message.contains("not supported"), "{text}: {e}");
        }
    }

    #[test]
    fn structure_errors() {
        assert_err("a eq 1 and", 10, "expected a field name");
        assert_err("a eq 1 or or b eq 1", 10, "found 'or'");
        assert_err(
            "(a eq 1",
            7,
            "to close the '(' at position 0, found end of input",
        );
        assert_err("a eq 1)", 6, "unmatched ')'");
        assert_err("()", 1, "found ')'");
        assert_err("a eq 1 , b eq 2", 7, "unexpected ', b eq 2'");
        assert_err("(a, b) eq 1", 2, "only allowed after 'in'");
        assert_err("c eq 'b' foo", 9, "unexpected 'foo'");
        assert_err("név eq 1", 0, "unknown field 'n'");
        assert_err(
            "x eq 1",
            0,
            "unknown field 'x' (fields: Completed, CreatedAt,",
        );
        let empty = err("  ");
        assert_eq!(empty.position, None);
        assert_eq!(empty.message, "$filter must not be empty");
        let long = format!("c eq '{}'", "x".repeat(MAX_OPTION_LENGTH));
        assert!(err(&long).message.contains("maximum 4096"));
        let ok = format!("{}a eq 1{}", "(".repeat(32), ")".repeat(32));
        f(&ok);
        let too_deep = format!("{}a eq 1{}", "(".repeat(33), ")".repeat(33));
        assert_err(&too_deep, 32, "nested too deeply");
        let chain = vec!["a eq 1"; 300].join(" and ");
        f(&chain);
    }

    #[test]
    fn fields_are_listed_once_in_order() {
        let e = f("b eq 1 or (a eq 2 and not contains(c,'x')) or endswith(c,'y')");
        assert_eq!(e.fields(), vec!["b", "a", "c"]);
    }

    #[test]
    fn orderby_takes_expressions_and_directions_in_any_case() {
        let keys = parse_orderby("tolower(Name) DESC, Rating, Price Asc", &columns()).unwrap();
        assert_eq!(keys.len(), 3);
        assert_eq!(keys[0].direction, SortDirection::Desc);
        assert_eq!(keys[0].sql_field(), None);
        assert_eq!(keys[1].sql_field(), Some("Rating"));
        assert_eq!(keys[2].direction, SortDirection::Asc);
        let e = parse_orderby("Rating up", &columns()).unwrap_err();
        assert!(e.message.contains("expected 'asc', 'desc'"), "{e}");
        assert!(parse_orderby("Rating desc,", &columns()).is_err());
        // Bounded work per request: at most 16 keys.
        let many = vec!["Rating"; MAX_ORDER_KEYS].join(",");
        assert!(parse_orderby(&many, &columns()).is_ok());
        let e = parse_orderby(&format!("{many},Price"), &columns()).unwrap_err();
        assert!(e.message.contains("at most 16 keys"), "{e}");
        assert!(parse_orderby("nope", &columns()).is_err());
    }

    #[test]
    fn select_lists_fields_or_everything() {
        let c = columns();
        assert_eq!(parse_select("*", &c).unwrap(), None);
        assert_eq!(
            parse_select(" Name , Rating,Name", &c).unwrap(),
            Some(vec!["Name".into(), "Rating".into()])
        );
        assert_eq!(
            parse_select("Name,,Rating", &c).unwrap_err().position,
            Some(5)
        );
        assert!(parse_select("first name", &c)
            .unwrap_err()
            .message
            .contains("unexpected 'name'"));
        assert!(parse_select("Nope", &c)
            .unwrap_err()
            .message
            .contains("unknown field"));
        assert!(parse_select("Tags($select=a)", &c)
            .unwrap_err()
            .message
            .contains("not supported"));
    }

    #[test]
    fn search_terms_phrases_and_operators() {
        let s = |t: &str| parse_search(t).unwrap();
        let fields = vec!["Name".to_string(), "c".to_string()];
        let item = json!({"Name": "Blue Mountain Coffee", "c": "Arabica"});
        assert!(s("blue").matches(&item, &fields));
        assert!(s("BLUE arabica").matches(&item, &fields));
        assert!(!s("blue tea").matches(&item, &fields));
        assert!(s("blue OR tea").matches(&item, &fields));
        assert!(s("\"mountain coffee\"").matches(&item, &fields));
        assert!(!s("\"coffee mountain\"").matches(&item, &fields));
        assert!(s("NOT tea AND (coffee OR tea)").matches(&item, &fields));
        assert!(!s("NOT coffee").matches(&item, &fields));
        assert!(parse_search("\"open").is_err());
        assert!(parse_search("\"blue\"green").is_err());
        assert!(parse_search("(a").is_err());
        assert!(parse_search("a)").is_err());
        // Operator words where no operator fits are words.
        assert_eq!(
            s("a OR"),
            Search::And(
                Box::new(Search::Term("a".into())),
                Box::new(Search::Term("or".into()))
            )
        );
        assert_eq!(s("NOT"), Search::Term("not".into()));
        assert_eq!(s("'\"blue p'"), Search::Term("'\"blue p'".into()));
    }
}
