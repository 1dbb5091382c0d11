//! The column rule: a column has one type across all its items, decided after every value has
//! been seen. Text columns (CSV cells, merged profile values) use [`TextColumn`]; typed JSON
//! columns (JSON Lines) use [`JsonColumn`]. Both take one value at a time, so callers can stream.

use serde_json::{Number, Value};

/// The type decided for a text column. Dates and date-times stay JSON strings; the schema
/// gives them a `format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ColumnType {
    Boolean,
    Integer,
    Number,
    Date,
    DateTime,
    String,
}

impl ColumnType {
    /// The JSON value of a non-empty cell of a column of this type.
    pub fn convert(self, cell: &str) -> Value {
        let typed = match self {
            ColumnType::Boolean => match cell {
                "true" => Some(Value::Bool(true)),
                "false" => Some(Value::Bool(false)),
                _ => None,
            },
            ColumnType::Integer | ColumnType::Number => parse_number(cell).map(Value::Number),
            ColumnType::Date | ColumnType::DateTime | ColumnType::String => None,
        };
        // Only reachable with a cell the column did not see (the input changed between passes):
        // text is the one type every cell fits.
        typed.unwrap_or_else(|| Value::String(cell.to_owned()))
    }
}

/// Accumulates the text cells of one column; empty cells do not count.
#[derive(Clone, Copy, Debug)]
pub struct TextColumn {
    seen: bool,
    boolean: bool,
    integer: bool,
    number: bool,
    date: bool,
    date_time: bool,
}

impl Default for TextColumn {
    fn default() -> Self {
        TextColumn {
            seen: false,
            boolean: true,
            integer: true,
            number: true,
            date: true,
            date_time: true,
        }
    }
}

impl TextColumn {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, cell: &str) {
        if cell.is_empty() {
            return;
        }
        self.seen = true;
        if self.boolean {
            self.boolean = cell == "true" || cell == "false";
        }
        if self.number {
            match parse_number(cell) {
                Some(n) => self.integer &= n.is_i64(),
                None => {
                    self.number = false;
                    self.integer = false;
                }
            }
        }
        if self.date {
            self.date = is_date(cell);
        }
        if self.date_time {
            self.date_time = is_date_time(cell);
        }
    }

    /// `None` when the column has no non-empty cell.
    pub fn decide(&self) -> Option<ColumnType> {
        if !self.seen {
            return None;
        }
        Some(if self.boolean {
            ColumnType::Boolean
        } else if self.integer {
            ColumnType::Integer
        } else if self.number {
            ColumnType::Number
        } else if self.date {
            ColumnType::Date
        } else if self.date_time {
            ColumnType::DateTime
        } else {
            ColumnType::String
        })
    }
}

/// Canonical integer (`-?(0|[1-9][0-9]*)` within `i64`, not `-0`) or decimal
/// (`-?(0|[1-9][0-9]*)\.[0-9]+` with at most 15 significant digits, which an `f64` gives back
/// exactly). Integers come back as integer numbers. No `+`, no exponent, no `.5`, no spaces.
pub fn parse_number(cell: &str) -> Option<Number> {
    let bytes = cell.as_bytes();
    let unsigned = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let negative = unsigned.len() != bytes.len();
    let int_len = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    let int_part = &unsigned[..int_len];
    if !(int_len == 1 || (int_len > 1 && int_part[0] != b'0')) {
        return None;
    }
    if int_len == unsigned.len() {
        if negative && int_part == b"0" {
            return None;
        }
        return cell.parse::<i64>().ok().map(Number::from);
    }
    if unsigned[int_len] != b'.' {
        return None;
    }
    let frac = &unsigned[int_len + 1..];
    if frac.is_empty() || !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // Significant digits: from the first to the last non-zero digit.
    let digits = || int_part.iter().chain(frac.iter());
    let total = int_part.len() + frac.len();
    let leading = digits().take_while(|&&d| d == b'0').count();
    let trailing = digits().rev().take_while(|&&d| d == b'0').count();
    if total.saturating_sub(leading + trailing) > 15 {
        return None;
    }
    cell.parse::<f64>().ok().and_then(Number::from_f64)
}

/// Dates and date-times as stored are what the query language reads as such.
pub use crate::item_query::{is_date, is_date_time};

/// The JSON kind of a typed column; integer and number share [`JsonKind::Number`] once mixed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonKind {
    Boolean,
    Integer,
    Number,
    String,
    Object,
    Array,
}

impl JsonKind {
    /// `None` for `null`.
    pub fn of(value: &Value) -> Option<JsonKind> {
        Some(match value {
            Value::Null => return None,
            Value::Bool(_) => JsonKind::Boolean,
            Value::Number(n) if n.is_i64() || n.is_u64() => JsonKind::Integer,
            Value::Number(_) => JsonKind::Number,
            Value::String(_) => JsonKind::String,
            Value::Array(_) => JsonKind::Array,
            Value::Object(_) => JsonKind::Object,
        })
    }
}

/// Accumulates the non-null values of one typed JSON column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum JsonColumn {
    /// Nothing but `null` so far.
    #[default]
    Unseen,
    Kind(JsonKind),
    Mixed,
}

impl JsonColumn {
    pub fn observe(&mut self, value: &Value) {
        let Some(kind) = JsonKind::of(value) else {
            return;
        };
        *self = match *self {
            JsonColumn::Unseen => JsonColumn::Kind(kind),
            JsonColumn::Kind(k) if k == kind => JsonColumn::Kind(k),
            JsonColumn::Kind(JsonKind::Integer | JsonKind::Number)
                if matches!(kind, JsonKind::Integer | JsonKind::Number) =>
            {
                JsonColumn::Kind(JsonKind::Number)
            }
            _ => JsonColumn::Mixed,
        };
    }

    /// Whether values must be turned into text (the column has more than one kind).
    pub fn is_mixed(&self) -> bool {
        *self == JsonColumn::Mixed
    }

    /// A value of a mixed column: strings and `null` as they are, others as their compact
    /// JSON text.
    pub fn to_text(value: Value) -> Value {
        match value {
            Value::Null | Value::String(_) => value,
            other => Value::String(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn column(cells: &[&str]) -> Option<ColumnType> {
        let mut c = TextColumn::new();
        for cell in cells {
            c.observe(cell);
        }
        c.decide()
    }

    /// A one-cell column: the type and the converted value.
    fn one(cell: &str) -> Option<Value> {
        column(&[cell]).map(|t| t.convert(cell))
    }

    #[test]
    fn single_cell_columns() {
        assert_eq!(one(""), None);
        assert_eq!(one("true"), Some(json!(true)));
        assert_eq!(one("false"), Some(json!(false)));
        assert_eq!(one("True"), Some(json!("True")));
        assert_eq!(one("0"), Some(json!(0)));
        assert_eq!(one("42"), Some(json!(42)));
        assert_eq!(one("-17"), Some(json!(-17)));
        assert_eq!(one("-0"), Some(json!("-0")));
        assert_eq!(one("00123"), Some(json!("00123")));
        assert_eq!(one("+4930123456"), Some(json!("+4930123456")));
        assert_eq!(one("9223372036854775807"), Some(json!(i64::MAX)));
        assert_eq!(
            one("9223372036854775808"),
            Some(json!("9223372036854775808"))
        );
        assert_eq!(one("1.5"), Some(json!(1.5)));
        assert_eq!(one("-0.25"), Some(json!(-0.25)));
        assert_eq!(one("19.90"), Some(json!(19.9)));
        assert_eq!(one("0.000123"), Some(json!(0.000123)));
        assert_eq!(one("123456789.123456"), Some(json!(123456789.123456)));
        assert_eq!(one("1234567890.1234567"), Some(json!("1234567890.1234567")));
        assert_eq!(one("01.5"), Some(json!("01.5")));
        assert_eq!(one(".5"), Some(json!(".5")));
        assert_eq!(one("5."), Some(json!("5.")));
        assert_eq!(one("1e5"), Some(json!("1e5")));
        assert_eq!(one("1.2.3"), Some(json!("1.2.3")));
        assert_eq!(one("-"), Some(json!("-")));
        assert_eq!(one(" 42"), Some(json!(" 42")));
        assert_eq!(one("NaN"), Some(json!("NaN")));
        assert_eq!(one("héllo"), Some(json!("héllo")));
    }

    #[test]
    fn a_column_has_one_type() {
        use ColumnType::*;
        // Postcodes: one with a leading zero makes the whole column text.
        assert_eq!(column(&["4129", "0812"]), Some(String));
        assert_eq!(String.convert("4129"), json!("4129"));
        assert_eq!(column(&["1", "", "-7", "42"]), Some(Integer));
        assert_eq!(column(&["1", "2.5"]), Some(Number));
        assert_eq!(Number.convert("1"), json!(1));
        assert_eq!(Number.convert("2.5"), json!(2.5));
        assert_eq!(column(&["1", "9223372036854775808"]), Some(String));
        assert_eq!(column(&["1.5", "+2"]), Some(String));
        assert_eq!(column(&["true", "false", ""]), Some(Boolean));
        assert_eq!(column(&["true", "1"]), Some(String));
        assert_eq!(column(&["2024-01-31", "1999-12-01"]), Some(Date));
        assert_eq!(Date.convert("2024-01-31"), json!("2024-01-31"));
        assert_eq!(column(&["2024-01-31", "soon"]), Some(String));
        assert_eq!(
            column(&["2024-01-31", "2024-01-31T10:00:00Z"]),
            Some(String)
        );
        assert_eq!(
            column(&[
                "2024-01-31T10:00:00Z",
                "2024-02-01T23:59:59+02:00",
                "2024-03-01T08:30:00.1234567-05:30",
            ]),
            Some(DateTime)
        );
        assert_eq!(column(&["", ""]), None);
        assert_eq!(column(&[]), None);
    }

    #[test]
    fn dates_and_date_times() {
        assert!(is_date("2024-02-29"));
        assert!(!is_date("2023-02-29"));
        assert!(!is_date("2024-13-01"));
        assert!(!is_date("2024-1-01"));
        assert!(!is_date("24-01-01"));
        assert!(!is_date("+2024-01-01"));
        assert!(!is_date("2024-01-01 "));
        assert!(!is_date("2024/01/01"));
        assert!(!is_date("20240101"));
        assert!(is_date_time("2024-01-31T10:00:00Z"));
        assert!(is_date_time("2024-01-31T10:00:00.5+02:00"));
        assert!(is_date_time("2024-01-31T10:00:00.123456789-11:30"));
        assert!(!is_date_time("2024-01-31T10:00:00.1234567890Z"));
        assert!(!is_date_time("2024-01-31T10:00:00.Z"));
        assert!(!is_date_time("2024-01-31 10:00:00Z"));
        assert!(!is_date_time("2024-01-31t10:00:00Z"));
        assert!(!is_date_time("2024-01-31T10:00:00z"));
        assert!(!is_date_time("2024-01-31T10:00Z"));
        assert!(!is_date_time("2024-01-31T10:00:00"));
        assert!(!is_date_time("2024-01-31T10:00:00+0200"));
        assert!(!is_date_time("2024-01-31T25:00:00Z"));
        assert!(!is_date_time("2024-02-30T10:00:00Z"));
        assert!(!is_date_time("2024-01-31"));
        assert!(!is_date_time("2024-01-31Té0:00:00Z"));
    }

    #[test]
    fn json_columns() {
        let kind = |values: &[Value]| {
            let mut c = JsonColumn::default();
            for v in values {
                c.observe(v);
            }
            c
        };
        assert_eq!(kind(&[json!(null)]), JsonColumn::Unseen);
        assert_eq!(
            kind(&[json!(1), json!(null), json!(2)]),
            JsonColumn::Kind(JsonKind::Integer)
        );
        assert_eq!(
            kind(&[json!(1), json!(2.5), json!(3)]),
            JsonColumn::Kind(JsonKind::Number)
        );
        assert_eq!(
            kind(&[json!({"a":1}), json!({})]),
            JsonColumn::Kind(JsonKind::Object)
        );
        assert!(kind(&[json!(1), json!("x")]).is_mixed());
        assert!(kind(&[json!(1.5), json!(true)]).is_mixed());
        assert!(kind(&[json!([1]), json!({})]).is_mixed());
        assert_eq!(JsonColumn::to_text(json!(12)), json!("12"));
        assert_eq!(JsonColumn::to_text(json!(true)), json!("true"));
        assert_eq!(JsonColumn::to_text(json!("x")), json!("x"));
        assert_eq!(JsonColumn::to_text(json!(null)), json!(null));
        assert_eq!(
            JsonColumn::to_text(json!({"a": [1, "b"]})),
            json!(r#"{"a":[1,"b"]}"#)
        );
    }
}
