//! OData query options of `GetItems` (`$filter`, `$select`, `$orderby`), parsed into the typed
//! item query ([`crate::item_query`]) with positioned errors.
//!
//! The `odata-params` crate (0.4.0) was evaluated and not used: every parse error is a bare
//! `ParseError::Parsing` with no position, and its grammar gives `and` and `or` the same
//! precedence (right-associative), rejects one-letter field names, negative numbers and the `''`
//! string escape, while pulling in `peg`, `bigdecimal` and `chrono-tz`. So this is a small
//! hand-written recursive-descent parser.
//!
//! # `$filter` grammar
//!
//! ```text
//! filter     = or
//! or         = and *( "or" and )
//! and        = unary *( "and" unary )
//! unary      = "not" unary / primary
//! primary    = "(" or ")" / function / field op literal
//! function   = ("contains" / "startswith" / "endswith") "(" field "," string ")"
//! op         = "eq" / "ne" / "gt" / "ge" / "lt" / "le"
//! literal    = string / number / "true" / "false" / "null"
//! field      = [A-Za-z_][A-Za-z0-9_]*     (not one of: and or not true false null)
//! string     = "'" *( any char except "'" / "''" ) "'"
//! number     = ["-"] 1*DIGIT ["." 1*DIGIT]
//! ```
//!
//! Keywords, operators and function names are lower-case, as in OData. Precedence is
//! `not` > comparison > `and` > `or`; `and`/`or` are left-associative. `not` applies to the
//! comparison, function call or parenthesised group that follows it. `null` may only be compared
//! with `eq`/`ne`. Each option text is limited to [`MAX_OPTION_LENGTH`] characters and nesting
//! of `(` and `not` to [`MAX_NESTING_DEPTH`]. Error positions are 0-based char offsets.
//!
//! The parsed query is the store-independent [`crate::item_query`], which states its semantics.

use std::fmt;

use serde::Serialize;

use crate::item_query::{CompareOp, Expr, Literal, OrderKey, SortDirection, StringFunction};

/// Maximum length, in characters, of one option text (`$filter`, `$select`, `$orderby`).
pub const MAX_OPTION_LENGTH: usize = 4096;

/// Maximum nesting depth of parentheses and `not` in a `$filter`.
pub const MAX_NESTING_DEPTH: usize = 32;

/// Words that cannot be used as field names in a `$filter`.
const RESERVED: [&str; 6] = ["and", "or", "not", "true", "false", "null"];

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
// ---------------------------------------------------------------------------------------------
// Lexer

fn compare_op(word: &str) -> Option<CompareOp> {
    word.parse().ok()
}

fn string_function(name: &str) -> Option<StringFunction> {
    name.parse().ok()
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
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
    fn is_word(&self, word: &str) -> bool {
        matches!(&self.tok, Tok::Ident(s) if s == word)
    }

    fn describe(&self) -> String {
        match &self.tok {
            Tok::Ident(s) => format!("'{s}'"),
            Tok::Str(s) => format!("string '{}'", s.replace('\'', "''")),
            Tok::Num(n) => format!("number {n}"),
            Tok::LParen => "'('".to_string(),
            Tok::RParen => "')'".to_string(),
            Tok::Comma => "','".to_string(),
            Tok::Other(c) => format!("'{c}'"),
            Tok::End => "end of input".to_string(),
        }
    }
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

struct Lexer {
    chars: Vec<char>,
    pos: usize,
}

impl Lexer {
    fn peek_char(&self, offset: usize) -> Option<char> {
        self.chars.get(self.pos + offset).copied()
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
            '\'' => self.string(start)?,
            _ if c.is_ascii_digit()
                || (c == '-' && self.peek_char(1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                self.number(start)?
            }
            _ if is_ident_start(c) => {
                while self.peek_char(0).is_some_and(is_ident_char) {
                    self.pos += 1;
                }
                Tok::Ident(self.chars[start..self.pos].iter().collect())
            }
            _ => {
                self.pos += 1;
                Tok::Other(c)
            }
        };
        Ok(Token { tok, pos: start })
    }

    fn string(&mut self, start: usize) -> Result<Tok, ODataError> {
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
                    return Ok(Tok::Str(s));
                }
                Some(c) => {
                    s.push(c);
                    self.pos += 1;
                }
            }
        }
    }

    fn number(&mut self, start: usize) -> Result<Tok, ODataError> {
        if self.peek_char(0) == Some('-') {
            self.pos += 1;
        }
        let digits = |lexer: &mut Lexer| {
            while lexer.peek_char(0).is_some_and(|c| c.is_ascii_digit()) {
                lexer.pos += 1;
            }
        };
        digits(self);
        if self.peek_char(0) == Some('.') && self.peek_char(1).is_some_and(|c| c.is_ascii_digit()) {
            self.pos += 1;
            digits(self);
        }
        if self
            .peek_char(0)
            .is_some_and(|c| is_ident_char(c) || c == '.')
        {
            let mut end = self.pos;
            while self
                .chars
                .get(end)
                .is_some_and(|&c| is_ident_char(c) || c == '.')
            {
                end += 1;
            }
            let text: String = self.chars[start..end].iter().collect();
            return Err(ODataError::at(
                format!(
                    "invalid number literal '{text}' (expected digits with an optional '-' and \
                     decimal part, e.g. -12.5)"
                ),
                start,
            ));
        }
        let text: String = self.chars[start..self.pos].iter().collect();
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => Ok(Tok::Num(n)),
            _ => Err(ODataError::at(
                format!("number literal '{text}' is out of range"),
                start,
            )),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parser

struct Parser {
    lexer: Lexer,
    peeked: Option<Token>,
    depth: usize,
}

const PRIMARY_EXPECTED: &str = "expected a field name, a function call, 'not' or '('";

impl Parser {
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
                    "expression is nested too deeply (maximum nesting depth of '(' and 'not' is \
                     {MAX_NESTING_DEPTH})"
                ),
                pos,
            ));
        }
        Ok(())
    }

    fn or_expr(&mut self) -> Result<Expr, ODataError> {
        let mut left = self.and_expr()?;
        while self.peek()?.is_word("or") {
            self.bump()?;
            let right = self.and_expr()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Expr, ODataError> {
        let mut left = self.unary()?;
        while self.peek()?.is_word("and") {
            self.bump()?;
            let right = self.unary()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ODataError> {
        let token = self.peek()?;
        if token.is_word("not") {
            self.bump()?;
            self.enter(token.pos)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, ODataError> {
        let token = self.bump()?;
        match &token.tok {
            Tok::LParen => {
                self.enter(token.pos)?;
                let inner = self.or_expr()?;
                let close = self.bump()?;
                if close.tok != Tok::RParen {
                    return Err(ODataError::at(
                        format!(
                            "expected 'and', 'or' or ')' to close the '(' at position {}, found {}",
                            token.pos,
                            close.describe()
                        ),
                        close.pos,
                    ));
                }
                self.depth -= 1;
                Ok(inner)
            }
            Tok::Ident(name) if !RESERVED.contains(&name.as_str()) => {
                if self.peek()?.tok == Tok::LParen {
                    self.function(name, token.pos)
                } else {
                    self.comparison(name.clone())
                }
            }
            Tok::Str(_) | Tok::Num(_) => Err(ODataError::at(
                format!(
                    "{PRIMARY_EXPECTED}, found {} (comparisons are written 'field op value')",
                    token.describe()
                ),
                token.pos,
            )),
            Tok::Ident(word) if matches!(word.as_str(), "true" | "false" | "null") => {
                Err(ODataError::at(
                    format!(
                        "{PRIMARY_EXPECTED}, found {} (comparisons are written 'field op value')",
                        token.describe()
                    ),
                    token.pos,
                ))
            }
            _ => Err(ODataError::at(
                format!("{PRIMARY_EXPECTED}, found {}", token.describe()),
                token.pos,
            )),
        }
    }

    fn comparison(&mut self, field: String) -> Result<Expr, ODataError> {
        let op_token = self.bump()?;
        let op = match &op_token.tok {
            Tok::Ident(word) => compare_op(word),
            _ => None,
        };
        let Some(op) = op else {
            let hint = match &op_token.tok {
                Tok::Ident(word) if compare_op(&word.to_lowercase()).is_some() => {
                    " (operators are lower-case)"
                }
                _ => "",
            };
            return Err(ODataError::at(
                format!(
                    "expected a comparison operator (eq, ne, gt, ge, lt, le) after field \
                     '{field}', found {}{hint}",
                    op_token.describe()
                ),
                op_token.pos,
            ));
        };
        let value_token = self.bump()?;
        let value = match &value_token.tok {
            Tok::Str(s) => Literal::String(s.clone()),
            Tok::Num(n) => Literal::Number(*n),
            Tok::Ident(w) if w == "true" => Literal::Bool(true),
            Tok::Ident(w) if w == "false" => Literal::Bool(false),
            Tok::Ident(w) if w == "null" => Literal::Null,
            _ => {
                let hint = match &value_token.tok {
                    Tok::Ident(w)
                        if matches!(w.to_lowercase().as_str(), "true" | "false" | "null") =>
                    {
                        " (true, false and null are lower-case)"
                    }
                    Tok::Ident(_) => " (comparing two fields is not supported)",
                    _ => "",
                };
                return Err(ODataError::at(
                    format!(
                        "expected a literal value (a string in single quotes, a number, true, \
                         false or null) after '{}', found {}{hint}",
                        op.as_str(),
                        value_token.describe()
                    ),
                    value_token.pos,
                ));
            }
        };
        if value == Literal::Null && !matches!(op, CompareOp::Eq | CompareOp::Ne) {
            return Err(ODataError::at(
                format!(
                    "null can only be compared with eq or ne, not {}",
                    op.as_str()
                ),
                value_token.pos,
            ));
        }
        Ok(Expr::Compare { field, op, value })
    }

    fn function(&mut self, name: &str, name_pos: usize) -> Result<Expr, ODataError> {
        let Some(func) = string_function(name) else {
            let hint = if string_function(&name.to_lowercase()).is_some() {
                " (function names are lower-case)"
            } else {
                ""
            };
            return Err(ODataError::at(
                format!(
                    "unknown function '{name}' (supported: contains, startswith, endswith){hint}"
                ),
                name_pos,
            ));
        };
        self.bump()?; // '('
        let field_token = self.bump()?;
        let field = match &field_token.tok {
            Tok::Ident(f) if !RESERVED.contains(&f.as_str()) => f.clone(),
            _ => {
                return Err(ODataError::at(
                    format!(
                        "expected a field name as the first argument of {name}, found {}",
                        field_token.describe()
                    ),
                    field_token.pos,
                ))
            }
        };
        let comma = self.bump()?;
        if comma.tok != Tok::Comma {
            return Err(ODataError::at(
                format!(
                    "expected ',' after the first argument of {name}, found {}",
                    comma.describe()
                ),
                comma.pos,
            ));
        }
        let value_token = self.bump()?;
        let Tok::Str(value) = value_token.tok else {
            return Err(ODataError::at(
                format!(
                    "expected a string literal in single quotes as the second argument of \
                     {name}, found {}",
                    value_token.describe()
                ),
                value_token.pos,
            ));
        };
        let close = self.bump()?;
        if close.tok != Tok::RParen {
            return Err(ODataError::at(
                format!(
                    "expected ')' after the second argument of {name}, found {}",
                    close.describe()
                ),
                close.pos,
            ));
        }
        Ok(Expr::Function { func, field, value })
    }
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

/// Parses a `$filter` expression.
pub fn parse_filter(text: &str) -> Result<Expr, ODataError> {
    check_length("$filter", text)?;
    let mut parser = Parser {
        lexer: Lexer {
            chars: text.chars().collect(),
            pos: 0,
        },
        peeked: None,
        depth: 0,
    };
    let expr = parser.or_expr()?;
    let token = parser.bump()?;
    match &token.tok {
        Tok::End => Ok(expr),
        Tok::RParen => Err(ODataError::at("unmatched ')'", token.pos)),
        _ => {
            let rest: String = parser.lexer.chars[token.pos..].iter().collect();
            let rest = rest.trim_end();
            let shown: String = if rest.chars().count() > 30 {
                format!("{}...", rest.chars().take(30).collect::<String>())
            } else {
                rest.to_string()
            };
            let hint = match &token.tok {
                Tok::Ident(w) if matches!(w.to_lowercase().as_str(), "and" | "or") => {
                    " (operators are lower-case)"
                }
                _ => "",
            };
            Err(ODataError::at(
                format!("unexpected trailing input '{shown}'{hint}"),
                token.pos,
            ))
        }
    }
}

/// Comma-separated entries of an option: (char offset of the entry, entry text).
fn entries(text: &str) -> Vec<(usize, String)> {
    let mut out = vec![(0, String::new())];
    for (i, c) in text.chars().enumerate() {
        if c == ',' {
            out.push((i + 1, String::new()));
        } else if let Some((_, entry)) = out.last_mut() {
            entry.push(c);
        }
    }
    out
}

/// Whitespace-separated words of an entry: (char offset within the entry, word).
fn words(entry: &str) -> Vec<(usize, String)> {
    let mut out: Vec<(usize, String)> = Vec::new();
    let mut in_word = false;
    for (i, c) in entry.chars().enumerate() {
        if c.is_whitespace() {
            in_word = false;
        } else if in_word {
            if let Some((_, word)) = out.last_mut() {
                word.push(c);
            }
        } else {
            in_word = true;
            out.push((i, c.to_string()));
        }
    }
    out
}

fn check_field_name(option: &str, name: &str, pos: usize) -> Result<(), ODataError> {
    let bad = name.chars().enumerate().find(|&(i, c)| {
        if i == 0 {
            !is_ident_start(c)
        } else {
            !is_ident_char(c)
        }
    });
    match bad {
        None => Ok(()),
        Some((i, c)) => Err(ODataError::at(
            format!(
                "invalid character '{c}' in field name '{name}' in {option} (field names are \
                 letters, digits and '_', not starting with a digit)"
            ),
            pos + i,
        )),
    }
}

/// Parses a `$select` list: comma-separated field names.
pub fn parse_select(text: &str) -> Result<Vec<String>, ODataError> {
    check_length("$select", text)?;
    let mut fields = Vec::new();
    for (start, entry) in entries(text) {
        let ws = words(&entry);
        match ws.as_slice() {
            [] => {
                return Err(ODataError::at(
                    "empty field name in $select",
                    start + entry.chars().count(),
                ))
            }
            [(offset, name)] => {
                check_field_name("$select", name, start + offset)?;
                fields.push(name.clone());
            }
            [(_, name), (offset, extra), ..] => {
                return Err(ODataError::at(
                    format!("unexpected '{extra}' after field name '{name}' in $select (separate fields with ',')"),
                    start + offset,
                ))
            }
        }
    }
    Ok(fields)
}

/// Parses an `$orderby` list: comma-separated `field [asc|desc]`.
pub fn parse_orderby(text: &str) -> Result<Vec<OrderKey>, ODataError> {
    check_length("$orderby", text)?;
    let mut keys = Vec::new();
    for (start, entry) in entries(text) {
        let ws = words(&entry);
        let Some((offset, field)) = ws.first() else {
            return Err(ODataError::at(
                "empty sort key in $orderby",
                start + entry.chars().count(),
            ));
        };
        check_field_name("$orderby", field, start + offset)?;
        let direction = match ws.get(1) {
            None => SortDirection::Asc,
            Some((_, d)) if d == "asc" => SortDirection::Asc,
            Some((_, d)) if d == "desc" => SortDirection::Desc,
            Some((offset, d)) => {
                let hint = if matches!(d.to_lowercase().as_str(), "asc" | "desc") {
                    " (directions are lower-case)"
                } else {
                    ""
                };
                return Err(ODataError::at(
                    format!(
                        "expected 'asc' or 'desc' after '{field}' in $orderby, found '{d}'{hint}"
                    ),
                    start + offset,
                ));
            }
        };
        if let Some((offset, extra)) = ws.get(2) {
            return Err(ODataError::at(
                format!(
                    "unexpected '{extra}' after the sort direction in $orderby (separate sort \
                     keys with ',')"
                ),
                start + offset,
            ));
        }
        keys.push(OrderKey {
            field: field.clone(),
            direction,
        });
    }
    Ok(keys)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item_query::{cmp_int_real, TWO_POW_63};
    use serde_json::json;
    use std::cmp::Ordering;

    fn cmp(field: &str, op: CompareOp, value: Literal) -> Expr {
        Expr::Compare {
            field: field.to_string(),
            op,
            value,
        }
    }

    fn num(field: &str, op: CompareOp, n: f64) -> Expr {
        cmp(field, op, Literal::Number(n))
    }

    fn and(a: Expr, b: Expr) -> Expr {
        Expr::And(Box::new(a), Box::new(b))
    }

    fn or(a: Expr, b: Expr) -> Expr {
        Expr::Or(Box::new(a), Box::new(b))
    }

    fn not(a: Expr) -> Expr {
        Expr::Not(Box::new(a))
    }

    fn filter_err(text: &str) -> ODataError {
        parse_filter(text).expect_err(text)
    }

    /// Asserts that parsing fails at `position` with a message containing `fragment`.
    fn assert_filter_err(text: &str, position: usize, fragment: &str) {
        let e = filter_err(text);
        assert_eq!(e.position, Some(position), "{text:?}: {e}");
        assert!(e.message.contains(fragment), "{text:?}: {e}");
    }

    #[test]
    fn every_comparison_operator() {
        for (word, op) in [
            ("eq", CompareOp::Eq),
            ("ne", CompareOp::Ne),
            ("gt", CompareOp::Gt),
            ("ge", CompareOp::Ge),
            ("lt", CompareOp::Lt),
            ("le", CompareOp::Le),
        ] {
            let text = format!("age {word} 30");
            assert_eq!(parse_filter(&text).unwrap(), num("age", op, 30.0));
            assert_eq!(op.as_str(), word);
        }
    }

    #[test]
    fn literals() {
        let lit = |text: &str| match parse_filter(&format!("f eq {text}")).unwrap() {
            Expr::Compare { value, .. } => value,
            other => panic!("{other:?}"),
        };
        assert_eq!(lit("null"), Literal::Null);
        assert_eq!(lit("true"), Literal::Bool(true));
        assert_eq!(lit("false"), Literal::Bool(false));
        assert_eq!(lit("42"), Literal::Number(42.0));
        assert_eq!(lit("-7"), Literal::Number(-7.0));
        assert_eq!(lit("3.25"), Literal::Number(3.25));
        assert_eq!(lit("-0.5"), Literal::Number(-0.5));
        assert_eq!(lit("007"), Literal::Number(7.0));
        assert_eq!(lit("'abc'"), Literal::String("abc".into()));
        assert_eq!(lit("''"), Literal::String(String::new()));
        assert_eq!(lit("'it''s'"), Literal::String("it's".into()));
        assert_eq!(lit("''''"), Literal::String("'".into()));
        assert_eq!(
            lit("'a b  (c) and ''d'''"),
            Literal::String("a b  (c) and 'd'".into())
        );
        assert_eq!(lit("'ünï ✓'"), Literal::String("ünï ✓".into()));
    }

    #[test]
    fn string_functions() {
        for (name, func) in [
            ("contains", StringFunction::Contains),
            ("startswith", StringFunction::StartsWith),
            ("endswith", StringFunction::EndsWith),
        ] {
            let expected = Expr::Function {
                func,
                field: "name".into(),
                value: "O'Neil".into(),
            };
            assert_eq!(
                parse_filter(&format!("{name}(name,'O''Neil')")).unwrap(),
                expected
            );
            assert_eq!(
                parse_filter(&format!("{name} ( name , 'O''Neil' ) ")).unwrap(),
                expected
            );
            assert_eq!(func.as_str(), name);
        }
    }

    #[test]
    fn precedence_and_associativity() {
        let a = || num("a", CompareOp::Eq, 1.0);
        let b = || num("b", CompareOp::Eq, 2.0);
        let c = || num("c", CompareOp::Eq, 3.0);
        assert_eq!(
            parse_filter("a eq 1 or b eq 2 and c eq 3").unwrap(),
            or(a(), and(b(), c()))
        );
        assert_eq!(
            parse_filter("a eq 1 and b eq 2 or c eq 3").unwrap(),
            or(and(a(), b()), c())
        );
        assert_eq!(
            parse_filter("a eq 1 and b eq 2 and c eq 3").unwrap(),
            and(and(a(), b()), c())
        );
        assert_eq!(
            parse_filter("a eq 1 or b eq 2 or c eq 3").unwrap(),
            or(or(a(), b()), c())
        );
        assert_eq!(
            parse_filter("not a eq 1 and b eq 2").unwrap(),
            and(not(a()), b())
        );
        assert_eq!(
            parse_filter("not not a eq 1 or b eq 2").unwrap(),
            or(not(not(a())), b())
        );
    }

    #[test]
    fn parentheses() {
        let a = || num("a", CompareOp::Eq, 1.0);
        let b = || num("b", CompareOp::Eq, 2.0);
        let c = || num("c", CompareOp::Eq, 3.0);
        assert_eq!(
            parse_filter("(a eq 1 or b eq 2) and c eq 3").unwrap(),
            and(or(a(), b()), c())
        );
        assert_eq!(
            parse_filter("a eq 1 and (b eq 2 or c eq 3)").unwrap(),
            and(a(), or(b(), c()))
        );
        assert_eq!(
            parse_filter("not (a eq 1 or b eq 2)").unwrap(),
            not(or(a(), b()))
        );
        assert_eq!(parse_filter("((((a eq 1))))").unwrap(), a());
        assert_eq!(
            parse_filter("\t(a eq 1)and(b eq 2)\n").unwrap(),
            and(a(), b())
        );
        assert_eq!(
            parse_filter("not(contains(s,'x'))").unwrap(),
            not(Expr::Function {
                func: StringFunction::Contains,
                field: "s".into(),
                value: "x".into()
            })
        );
    }

    #[test]
    fn field_names() {
        assert_eq!(
            parse_filter("_x1 eq 1").unwrap(),
            num("_x1", CompareOp::Eq, 1.0)
        );
        // Function names and operators are not reserved as field names.
        assert_eq!(
            parse_filter("contains eq 'x'").unwrap(),
            cmp("contains", CompareOp::Eq, Literal::String("x".into()))
        );
        assert_eq!(
            parse_filter("eq eq 1").unwrap(),
            num("eq", CompareOp::Eq, 1.0)
        );
        assert_eq!(
            parse_filter("Eq eq 1").unwrap(),
            num("Eq", CompareOp::Eq, 1.0)
        );
    }

    #[test]
    fn fields_are_listed_once_in_order() {
        let e =
            parse_filter("b eq 1 or (a eq 2 and not contains(b,'x')) or endswith(c,'y')").unwrap();
        assert_eq!(e.fields(), vec!["b", "a", "c"]);
    }

    #[test]
    fn empty_and_too_long() {
        for text in ["", "   ", "\t\n"] {
            let e = filter_err(text);
            assert_eq!(e.position, None);
            assert_eq!(e.message, "$filter must not be empty");
        }
        let long = format!("a eq '{}'", "x".repeat(MAX_OPTION_LENGTH));
        let e = filter_err(&long);
        assert_eq!(e.position, None);
        assert!(e.message.contains("too long"), "{e}");
        assert!(e.message.contains("maximum 4096"), "{e}");
        // Exactly at the limit is fine (the limit counts chars, not bytes).
        let at_limit = format!("a eq '{}'", "é".repeat(MAX_OPTION_LENGTH - 7));
        assert_eq!(at_limit.chars().count(), MAX_OPTION_LENGTH);
        assert!(parse_filter(&at_limit).is_ok());
        assert!(parse_select(&"a".repeat(MAX_OPTION_LENGTH + 1)).is_err());
        assert!(parse_orderby(&"a".repeat(MAX_OPTION_LENGTH + 1)).is_err());
    }

    #[test]
    fn display_has_position() {
        let e = filter_err("name xx 'a'");
        assert_eq!(
            e.to_string(),
            "expected a comparison operator (eq, ne, gt, ge, lt, le) after field 'name', \
             found 'xx' at position 5"
        );
        assert_eq!(
            filter_err("a eq 'b' and c eq 'abc").to_string(),
            "unterminated string literal starting at position 18"
        );
        assert_eq!(
            filter_err("a eq 'b' and c eq 'd' foo").to_string(),
            "unexpected trailing input 'foo' at position 22"
        );
        assert_eq!(filter_err("").to_string(), "$filter must not be empty");
        let boxed: Box<dyn std::error::Error> = Box::new(filter_err("x"));
        assert!(boxed.to_string().ends_with("at position 1"));
    }

    #[test]
    fn operator_errors() {
        assert_filter_err("name xx 'a'", 5, "expected a comparison operator");
        assert_filter_err("name EQ 'a'", 5, "operators are lower-case");
        assert_filter_err("name", 4, "found end of input");
        assert_filter_err("a @ 1", 2, "found '@'");
        assert_filter_err("a = 1", 2, "expected a comparison operator");
        assert_filter_err("a eq 1 AND b eq 2", 7, "operators are lower-case");
        assert_filter_err(
            "a eq 1 Or b eq 2",
            7,
            "unexpected trailing input 'Or b eq 2'",
        );
    }

    #[test]
    fn literal_errors() {
        assert_filter_err("name eq", 7, "expected a literal value");
        assert_filter_err("name eq other", 8, "comparing two fields is not supported");
        assert_filter_err("name eq TRUE", 8, "lower-case");
        assert_filter_err("name eq (1)", 8, "found '('");
        assert_filter_err("a eq -", 5, "found '-'");
        assert_filter_err(
            "a gt null",
            5,
            "null can only be compared with eq or ne, not gt",
        );
        assert_filter_err("a le null", 5, "not le");
        assert_filter_err("a eq 'abc", 5, "unterminated string literal starting");
        assert_filter_err("a eq 'it''s", 5, "unterminated string literal");
        assert_filter_err("a eq 'x''", 5, "unterminated string literal");
    }

    #[test]
    fn number_errors() {
        assert_filter_err("a eq 1.2.3", 5, "invalid number literal '1.2.3'");
        assert_filter_err("a eq 1.", 5, "invalid number literal '1.'");
        assert_filter_err("a eq 12abc", 5, "invalid number literal '12abc'");
        assert_filter_err("a eq 1e5", 5, "invalid number literal '1e5'");
        assert_filter_err("a eq .5", 5, "found '.'");
        assert_filter_err(&format!("a eq {}", "9".repeat(400)), 5, "out of range");
    }

    #[test]
    fn structure_errors() {
        assert_filter_err(
            "a eq 1 and",
            10,
            "expected a field name, a function call, 'not' or '('",
        );
        assert_filter_err("a eq 1 or or b eq 1", 10, "found 'or'");
        assert_filter_err("a eq 1 and and eq 1", 11, "found 'and'");
        assert_filter_err("not", 3, "found end of input");
        assert_filter_err("'a' eq name", 0, "comparisons are written 'field op value'");
        assert_filter_err("5 eq a", 0, "comparisons are written");
        assert_filter_err("null eq a", 0, "comparisons are written");
        assert_filter_err(
            "(a eq 1",
            7,
            "to close the '(' at position 0, found end of input",
        );
        assert_filter_err("(a eq 1 b", 8, "expected 'and', 'or' or ')'");
        assert_filter_err("a eq 1)", 6, "unmatched ')'");
        assert_filter_err("()", 1, "found ')'");
        assert_filter_err("a eq 1 , b eq 2", 7, "unexpected trailing input ', b eq 2'");
        assert_filter_err("a eq 'b' foo", 9, "unexpected trailing input 'foo'");
        let long_tail = format!("a eq 1 {}", "x".repeat(50));
        let e = filter_err(&long_tail);
        assert!(e.message.ends_with("xxx...'"), "{e}");
    }

    #[test]
    fn positions_are_char_offsets() {
        // 'ééé' is 5 chars but 8 bytes.
        assert_filter_err("a eq 'ééé' foo", 11, "trailing input 'foo'");
        assert_filter_err("név eq 1", 1, "found 'é'");
        let e = parse_select("ä,b-c").unwrap_err();
        assert_eq!(e.position, Some(0));
        let e = parse_select("b,ä").unwrap_err();
        assert_eq!(e.position, Some(2));
        let e = parse_orderby("a desc, ñ").unwrap_err();
        assert_eq!(e.position, Some(8));
    }

    #[test]
    fn function_errors() {
        assert_filter_err("tolower(a) eq 'x'", 0, "unknown function 'tolower'");
        assert_filter_err("Contains(a,'x')", 0, "function names are lower-case");
        assert_filter_err("contains(a 'x')", 11, "expected ','");
        assert_filter_err(
            "contains('x', a)",
            9,
            "expected a field name as the first argument",
        );
        assert_filter_err("contains(null, 'x')", 9, "expected a field name");
        assert_filter_err("contains(a, 5)", 12, "expected a string literal");
        assert_filter_err("contains(a, b)", 12, "expected a string literal");
        assert_filter_err("contains(a, 'x'", 15, "expected ')'");
        assert_filter_err("contains(a, 'x', 'y')", 15, "expected ')'");
        assert_filter_err("contains(a, 'x') eq true", 17, "unexpected trailing input");
    }

    #[test]
    fn nesting_limit() {
        let ok = format!("{}a eq 1{}", "(".repeat(32), ")".repeat(32));
        assert!(parse_filter(&ok).is_ok());
        let too_deep = format!("{}a eq 1{}", "(".repeat(33), ")".repeat(33));
        assert_filter_err(&too_deep, 32, "nested too deeply");
        assert!(parse_filter(&format!("{}a eq 1", "not ".repeat(32))).is_ok());
        assert_filter_err(
            &format!("{}a eq 1", "not ".repeat(33)),
            128,
            "maximum nesting depth",
        );
        // Mixed: 16 x "not (" is depth 32.
        assert!(parse_filter(&format!("{}a eq 1{}", "not (".repeat(16), ")".repeat(16))).is_ok());
        assert_filter_err(
            &format!("{}a eq 1{}", "not (".repeat(16), ")".repeat(16))
                .replacen("a eq 1", "(a eq 1)", 1),
            80,
            "nested too deeply",
        );
        // Depth is released after a group closes: many sibling groups are fine.
        let siblings = vec![format!("{}a eq 1{}", "(".repeat(30), ")".repeat(30)); 5].join(" and ");
        assert!(parse_filter(&siblings).is_ok());
        // Long flat chains are limited only by the length limit.
        let chain = vec!["a eq 1"; 300].join(" and ");
        assert!(parse_filter(&chain).is_ok());
    }

    #[test]
    fn select() {
        assert_eq!(parse_select("a").unwrap(), vec!["a"]);
        assert_eq!(parse_select(" a , b_2,C ").unwrap(), vec!["a", "b_2", "C"]);
        assert_eq!(parse_select("a,a").unwrap(), vec!["a", "a"]);
        let err = |t: &str| parse_select(t).unwrap_err();
        assert_eq!(err("").position, None);
        assert_eq!(err("  ").message, "$select must not be empty");
        assert_eq!(err("a,,b").position, Some(2));
        assert_eq!(err("a,,b").message, "empty field name in $select");
        assert_eq!(err("a, ,b").position, Some(3));
        assert_eq!(err("a,").position, Some(2));
        assert_eq!(err(",a").position, Some(0));
        let e = err("a,b-c");
        assert_eq!(e.position, Some(3));
        assert!(
            e.message
                .contains("invalid character '-' in field name 'b-c'"),
            "{e}"
        );
        assert_eq!(err("1a").position, Some(0));
        assert_eq!(err("*").position, Some(0));
        let e = err("first name");
        assert_eq!(e.position, Some(6));
        assert!(e.message.contains("unexpected 'name'"), "{e}");
    }

    #[test]
    fn orderby() {
        let key = |f: &str, d| OrderKey {
            field: f.into(),
            direction: d,
        };
        assert_eq!(
            parse_orderby("a").unwrap(),
            vec![key("a", SortDirection::Asc)]
        );
        assert_eq!(
            parse_orderby("a asc").unwrap(),
            vec![key("a", SortDirection::Asc)]
        );
        assert_eq!(
            parse_orderby("a desc, b").unwrap(),
            vec![key("a", SortDirection::Desc), key("b", SortDirection::Asc)]
        );
        assert_eq!(
            parse_orderby(" a\tdesc ,b  asc ").unwrap(),
            vec![key("a", SortDirection::Desc), key("b", SortDirection::Asc)]
        );
        let err = |t: &str| parse_orderby(t).unwrap_err();
        assert_eq!(err("").position, None);
        assert_eq!(err("").message, "$orderby must not be empty");
        let e = err("a DESC");
        assert_eq!(e.position, Some(2));
        assert!(e.message.contains("directions are lower-case"), "{e}");
        let e = err("a up");
        assert_eq!(e.position, Some(2));
        assert!(
            e.message.contains("expected 'asc' or 'desc' after 'a'"),
            "{e}"
        );
        let e = err("a desc x");
        assert_eq!(e.position, Some(7));
        assert!(e.message.contains("unexpected 'x'"), "{e}");
        assert_eq!(err(", a").position, Some(0));
        assert_eq!(err("a desc,").position, Some(7));
        assert_eq!(err("a-b desc").position, Some(1));
    }

    #[test]
    fn matches_null_and_missing() {
        let f = |t: &str| parse_filter(t).unwrap();
        let missing = json!({});
        let null = json!({"a": null});
        let five = json!({"a": 5});
        assert!(f("a eq null").matches(&missing));
        assert!(f("a eq null").matches(&null));
        assert!(!f("a eq null").matches(&five));
        assert!(!f("a ne null").matches(&missing));
        assert!(f("a ne null").matches(&five));
        for op in ["eq", "gt", "ge", "lt", "le"] {
            assert!(!f(&format!("a {op} 5")).matches(&missing), "{op}");
            assert!(!f(&format!("a {op} 5")).matches(&null), "{op}");
        }
        assert!(f("a ne 5").matches(&missing));
        assert!(f("a ne 5").matches(&null));
        assert!(!f("a ne 5").matches(&five));
        // Not an object: every field is missing.
        assert!(f("a eq null").matches(&json!([1, 2])));
        assert!(f("a ne 'x'").matches(&json!("a")));
        // Ordering against null, constructible only by hand, is false.
        assert!(!cmp("a", CompareOp::Ge, Literal::Null).matches(&missing));
    }

    #[test]
    fn matches_mixed_types() {
        let f = |t: &str| parse_filter(t).unwrap();
        let s = json!({"a": "5"});
        assert!(!f("a eq 5").matches(&s));
        assert!(!f("a lt 5").matches(&s));
        assert!(!f("a gt 5").matches(&s));
        assert!(f("a ne 5").matches(&s));
        assert!(f("a eq '5'").matches(&s));
        let b = json!({"a": true});
        assert!(!f("a eq 1").matches(&b));
        assert!(f("a eq true").matches(&b));
        assert!(f("a gt false").matches(&b));
        assert!(!f("a lt false").matches(&b));
        let arr = json!({"a": [1], "o": {"x": 1}});
        assert!(!f("a eq 1").matches(&arr));
        assert!(f("a ne 1").matches(&arr));
        assert!(!f("o gt ''").matches(&arr));
        assert!(!f("contains(a,'1')").matches(&arr));
        assert!(!f("contains(n,'')").matches(&json!({"n": 1})));
        assert!(f("contains(n,'')").matches(&json!({"n": ""})));
    }

    #[test]
    fn matches_numbers() {
        let f = |t: &str| parse_filter(t).unwrap();
        assert!(f("a eq 1").matches(&json!({"a": 1.0})));
        assert!(f("a eq 1.0").matches(&json!({"a": 1})));
        assert!(f("a gt 1").matches(&json!({"a": 1.5})));
        assert!(f("a lt 2").matches(&json!({"a": 1.5})));
        assert!(f("a lt 1.5").matches(&json!({"a": 1})));
        assert!(f("a ge -1").matches(&json!({"a": -1})));
        assert!(f("a gt -1.5").matches(&json!({"a": -1})));
        // Literals are f64: 9223372036854775807 becomes 2^63, just above i64::MAX.
        assert!(f("a lt 9223372036854775807").matches(&json!({"a": i64::MAX})));
        assert!(f("a gt 9223372036854774000").matches(&json!({"a": i64::MAX})));
        assert!(f("a gt 1").matches(&json!({"a": u64::MAX})));
        // 2^53 + 1 is not representable as f64; exact comparison sees it as larger.
        assert!(f("a gt 9007199254740992").matches(&json!({"a": 9_007_199_254_740_993_i64})));
        assert_eq!(cmp_int_real(i64::MAX, TWO_POW_63), Some(Ordering::Less));
        assert_eq!(cmp_int_real(i64::MIN, -TWO_POW_63), Some(Ordering::Equal));
        assert_eq!(cmp_int_real(3, f64::NAN), None);
    }

    #[test]
    fn matches_strings_and_logic() {
        let f = |t: &str| parse_filter(t).unwrap();
        let item = json!({"name": "Ann-Marie", "city": "Oslo"});
        assert!(f("name eq 'Ann-Marie'").matches(&item));
        assert!(!f("name eq 'ann-marie'").matches(&item));
        assert!(f("name gt 'Ann'").matches(&item));
        assert!(f("name lt 'B'").matches(&item));
        assert!(f("name lt 'a'").matches(&item)); // upper case sorts first
        assert!(f("contains(name,'-M')").matches(&item));
        assert!(!f("contains(name,'-m')").matches(&item));
        assert!(f("startswith(name,'Ann')").matches(&item));
        assert!(!f("startswith(name,'Marie')").matches(&item));
        assert!(f("endswith(name,'Marie')").matches(&item));
        assert!(f("endswith(name,'')").matches(&item));
        assert!(f("startswith(name,'Ann') and city eq 'Oslo'").matches(&item));
        assert!(!f("startswith(name,'Ann') and city eq 'Rome'").matches(&item));
        assert!(f("city eq 'Rome' or name ne 'x'").matches(&item));
        assert!(f("not city eq 'Rome'").matches(&item));
        assert!(!f("not (city eq 'Rome' or name ne 'x')").matches(&item));
    }
}
