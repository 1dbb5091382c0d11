//! Architecture checks over the source text of `src/` (no build of the code needed):
//!
//! - no file-level import cycle: a graph of which file uses which (from `use crate::…`,
//!   `use super::…`, `use self::…` and inline `crate::…`, `super::…`, `self::…` paths, each
//!   resolved to the longest prefix that is a module file) has no strongly connected component
//!   of more than one file;
//! - SQL stays in `src/store`;
//! - comments cite nothing outside the repository.
//!
//! Code under `#[cfg(test)]` is left out of the first two, and comments, strings and doc
//! comments never count as paths. The scanner is a small Rust lexer plus a recursive descent
//! over `use` trees; its own tests are at the end of this file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn src_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src")
}

// ---------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ident,
    /// One punctuation character, or `::`.
    Punct,
    /// A string, byte string, character or number literal (its text is not kept).
    Literal,
    Lifetime,
}

#[derive(Debug, Clone)]
struct Token {
    kind: Kind,
    text: String,
    line: usize,
    start: usize,
}

impl Token {
    fn is(&self, kind: Kind, text: &str) -> bool {
        self.kind == kind && self.text == text
    }
    fn punct(&self, text: &str) -> bool {
        self.is(Kind::Punct, text)
    }
    fn ident(&self, text: &str) -> bool {
        self.is(Kind::Ident, text)
    }
}

/// A comment (line, block or doc comment), one entry per line of it.
#[derive(Debug, Clone)]
struct CommentLine {
    line: usize,
    text: String,
}

struct Lexed {
    tokens: Vec<Token>,
    comments: Vec<CommentLine>,
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_ident_continue(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

fn lex(text: &str) -> Lexed {
    let s = text.as_bytes();
    let line_starts: Vec<usize> = std::iter::once(0)
        .chain(
            s.iter()
                .enumerate()
                .filter(|(_, b)| **b == b'\n')
                .map(|(i, _)| i + 1),
        )
        .collect();
    let line_of = |pos: usize| line_starts.partition_point(|&start| start <= pos);
    let mut tokens = Vec::new();
    let mut comments = Vec::new();
    let mut push_comment = |start: usize, end: usize| {
        for (n, part) in text[start..end].split('\n').enumerate() {
            comments.push(CommentLine {
                line: line_of(start) + n,
                text: part.to_string(),
            });
        }
    };
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        let start = i;
        if b.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if s[i..].starts_with(b"//") {
            while i < s.len() && s[i] != b'\n' {
                i += 1;
            }
            push_comment(start, i);
            continue;
        }
        if s[i..].starts_with(b"/*") {
            let mut depth = 0;
            while i < s.len() {
                if s[i..].starts_with(b"/*") {
                    depth += 1;
                    i += 2;
                } else if s[i..].starts_with(b"*/") {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            push_comment(start, i);
            continue;
        }
        let kind;
        if is_ident_start(b) {
            while i < s.len() && is_ident_continue(s[i]) {
                i += 1;
            }
            let word = &text[start..i];
            let prefix = matches!(word, "r" | "b" | "br" | "c" | "cr");
            let raw = matches!(word, "r" | "br" | "cr");
            if prefix && i < s.len() && s[i] == b'"' {
                i = if raw {
                    skip_raw_string(s, i, 0)
                } else {
                    skip_string(s, i)
                };
                kind = Kind::Literal;
            } else if raw && i < s.len() && s[i] == b'#' {
                let hashes = s[i..].iter().take_while(|c| **c == b'#').count();
                if s.get(i + hashes) == Some(&b'"') {
                    i = skip_raw_string(s, i + hashes, hashes);
                    kind = Kind::Literal;
                } else if word == "r" && s.get(i + 1).is_some_and(|c| is_ident_start(*c)) {
                    // A raw identifier, r#name: the token is the name.
                    let name_start = i + 1;
                    i = name_start;
                    while i < s.len() && is_ident_continue(s[i]) {
                        i += 1;
                    }
                    tokens.push(Token {
                        kind: Kind::Ident,
                        text: text[name_start..i].to_string(),
                        line: line_of(start),
                        start,
                    });
                    continue;
                } else {
                    kind = Kind::Ident;
                }
            } else if word == "b" && i < s.len() && s[i] == b'\'' {
                i = skip_char(s, i);
                kind = Kind::Literal;
            } else {
                kind = Kind::Ident;
            }
        } else if b.is_ascii_digit() {
            while i < s.len()
                && (is_ident_continue(s[i])
                    || (s[i] == b'.' && s.get(i + 1).is_some_and(u8::is_ascii_digit)))
            {
                i += 1;
            }
            kind = Kind::Literal;
        } else if b == b'"' {
            i = skip_string(s, i);
            kind = Kind::Literal;
        } else if b == b'\'' {
            // A character literal ('a', '\n', '\u{1F600}', 'é') or a lifetime/label ('a, 'static).
            let next_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
            if s.get(i + 1) == Some(&b'\\') || s.get(i + 1 + next_len) == Some(&b'\'') {
                i = skip_char(s, i);
                kind = Kind::Literal;
            } else {
                i += 1;
                while i < s.len() && is_ident_continue(s[i]) {
                    i += 1;
                }
                kind = Kind::Lifetime;
            }
        } else if s[i..].starts_with(b"::") {
            i += 2;
            kind = Kind::Punct;
        } else {
            i += text[i..].chars().next().map_or(1, char::len_utf8);
            kind = Kind::Punct;
        }
        tokens.push(Token {
            kind,
            text: text[start..i].to_string(),
            line: line_of(start),
            start,
        });
    }
    Lexed { tokens, comments }
}

/// `s[i]` is the opening quote; returns the position after the closing one.
fn skip_string(s: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'"' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

/// `s[i]` is the opening quote of a raw string with `hashes` hashes before it.
fn skip_raw_string(s: &[u8], mut i: usize, hashes: usize) -> usize {
    i += 1;
    while i < s.len() {
        if s[i] == b'"'
            && s[i + 1..]
                .iter()
                .take(hashes)
                .filter(|c| **c == b'#')
                .count()
                == hashes
        {
            return i + 1 + hashes;
        }
        i += 1;
    }
    s.len()
}

/// `s[i]` is the opening quote of a character literal.
fn skip_char(s: &[u8], mut i: usize) -> usize {
    i += 1;
    while i < s.len() {
        match s[i] {
            b'\\' => i += 2,
            b'\'' => return i + 1,
            _ => i += 1,
        }
    }
    s.len()
}

// ---------------------------------------------------------------------------------------------
// Scanning one file: paths it uses, `#[cfg(test)]` regions, test-only child modules

/// A path of the file that starts with `crate`, `super` or `self` (the first segment is one of
/// those), as written, with the line of its last segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct UsedPath {
    /// The (inline) module the path is written in, relative to the file's module.
    inline_module: Vec<String>,
    segments: Vec<String>,
    line: usize,
}

#[derive(Debug, Default)]
struct Scan {
    paths: Vec<UsedPath>,
    /// Byte ranges of items under `#[cfg(test)]` (attribute included).
    test_regions: Vec<(usize, usize)>,
    /// `#[cfg(test)] mod name;`: child module files that are test code.
    test_child_modules: Vec<String>,
}

fn is_cfg_test(attribute: &[Token]) -> bool {
    attribute.first().is_some_and(|t| t.ident("cfg"))
        && attribute.iter().any(|t| t.ident("test"))
        && !attribute.iter().any(|t| t.ident("not"))
}

/// Index just past the group opened at `toks[i]` (`(`, `[` or `{`).
fn skip_group(toks: &[Token], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < toks.len() {
        let t = &toks[i];
        if t.punct("(") || t.punct("[") || t.punct("{") {
            depth += 1;
        } else if t.punct(")") || t.punct("]") || t.punct("}") {
            depth -= 1;
            if depth == 0 {
                return i + 1;
            }
        }
        i += 1;
    }
    toks.len()
}

/// `toks[i]` starts an item, statement, field, variant or match arm (after its attributes);
/// returns the index just past it: past the `;` ending it (or the `,` ending a field, variant
/// or arm), past its `{ … }` body, or at the closer of the enclosing group.
fn skip_item(toks: &[Token], mut i: usize) -> usize {
    const ITEM_KEYWORDS: [&str; 14] = [
        "fn",
        "impl",
        "struct",
        "enum",
        "union",
        "trait",
        "type",
        "const",
        "static",
        "mod",
        "use",
        "macro_rules",
        "extern",
        "let",
    ];
    // Commas inside an item's generics (`fn f<A, B>()`) do not end it.
    let commas_end_it = !toks[i..]
        .iter()
        .take_while(|t| t.kind == Kind::Ident || t.punct("(") || t.punct(")"))
        .any(|t| t.kind == Kind::Ident && ITEM_KEYWORDS.contains(&t.text.as_str()));
    while i < toks.len() {
        let t = &toks[i];
        if t.punct(";") || (commas_end_it && t.punct(",")) {
            return i + 1;
        }
        if t.punct(")") || t.punct("]") || t.punct("}") {
            return i;
        }
        if t.punct("{") {
            let end = skip_group(toks, i);
            // `x = S { … };`, `static X: T = T { … };`: the item ends at the `;` after it.
            return if toks.get(end).is_some_and(|t| t.punct(";")) {
                end + 1
            } else {
                end
            };
        }
        if t.punct("(") || t.punct("[") {
            i = skip_group(toks, i);
            continue;
        }
        i += 1;
    }
    toks.len()
}

/// If `toks[i]` starts an attribute (`#[…]` or `#![…]`), returns (inner, tokens inside the
/// brackets, index past it).
fn attribute_at(toks: &[Token], i: usize) -> Option<(bool, &[Token], usize)> {
    if !toks[i].punct("#") {
        return None;
    }
    let inner = toks.get(i + 1).is_some_and(|t| t.punct("!"));
    let open = if inner { i + 2 } else { i + 1 };
    if !toks.get(open).is_some_and(|t| t.punct("[")) {
        return None;
    }
    let end = skip_group(toks, open);
    Some((inner, &toks[open + 1..end - 1], end))
}

fn scan(text: &str) -> Scan {
    let lexed = lex(text);
    let toks = &lexed.tokens;
    let mut out = Scan::default();
    // Inline modules open at this point: (name, brace depth inside it).
    let mut modules: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let current = |modules: &Vec<(String, usize)>| -> Vec<String> {
        modules.iter().map(|(name, _)| name.clone()).collect()
    };
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        if let Some((inner, attribute, after)) = attribute_at(toks, i) {
            if !is_cfg_test(attribute) {
                // Other attributes are scanned as code (paths in `#[utoipa::path(…)]` count).
                i += if inner { 2 } else { 1 };
                continue;
            }
            let end = if inner {
                // `#![cfg(test)]`: the rest of the enclosing module.
                let mut j = after;
                let mut d = 0usize;
                while j < toks.len() {
                    if toks[j].punct("{") {
                        d += 1;
                    } else if toks[j].punct("}") {
                        if d == 0 {
                            break;
                        }
                        d -= 1;
                    }
                    j += 1;
                }
                j
            } else {
                let mut j = after;
                while let Some((_, _, next)) = attribute_at(toks, j) {
                    j = next;
                }
                let vis = usize::from(toks.get(j).is_some_and(|t| t.ident("pub")));
                if toks.get(j + vis).is_some_and(|t| t.ident("mod"))
                    && toks.get(j + vis + 2).is_some_and(|t| t.punct(";"))
                {
                    out.test_child_modules.push(toks[j + vis + 1].text.clone());
                }
                skip_item(toks, j)
            };
            let end_byte = if end < toks.len() {
                toks[end].start
            } else {
                text.len()
            };
            out.test_regions.push((t.start, end_byte));
            i = end;
            continue;
        }
        if t.punct("{") {
            depth += 1;
        } else if t.punct("}") {
            if modules.last().is_some_and(|(_, d)| *d == depth) {
                modules.pop();
            }
            depth = depth.saturating_sub(1);
        } else if t.ident("mod")
            && toks.get(i + 1).is_some_and(|t| t.kind == Kind::Ident)
            && toks.get(i + 2).is_some_and(|t| t.punct("{"))
        {
            modules.push((toks[i + 1].text.clone(), depth + 1));
            i += 2;
            continue;
        } else if t.ident("use") {
            let mut j = i + 1;
            let mut found = Vec::new();
            parse_use_tree(toks, &mut j, Vec::new(), &mut found);
            for segments in found {
                if let Some((last_line, segments)) = relative_path(segments) {
                    out.paths.push(UsedPath {
                        inline_module: current(&modules),
                        segments,
                        line: last_line,
                    });
                }
            }
            i = j;
            continue;
        } else if (t.ident("crate") || t.ident("super") || t.ident("self"))
            && toks.get(i + 1).is_some_and(|t| t.punct("::"))
            && !(i > 0
                && (toks[i - 1].punct("$") || toks[i - 1].punct("::") || toks[i - 1].ident("in")))
        {
            let mut j = i;
            let mut segments = Vec::new();
            while j < toks.len() && toks[j].kind == Kind::Ident {
                segments.push((toks[j].text.clone(), toks[j].line));
                if toks.get(j + 1).is_some_and(|t| t.punct("::"))
                    && toks.get(j + 2).is_some_and(|t| t.kind == Kind::Ident)
                {
                    j += 2;
                } else {
                    break;
                }
            }
            if let Some((last_line, segments)) = relative_path(segments) {
                out.paths.push(UsedPath {
                    inline_module: current(&modules),
                    segments,
                    line: last_line,
                });
            }
            i = j + 1;
            continue;
        }
        i += 1;
    }
    out
}

/// Keeps paths starting with `crate`, `super` or `self`; returns the line of the last segment.
fn relative_path(segments: Vec<(String, usize)>) -> Option<(usize, Vec<String>)> {
    let first = segments.first()?;
    if !matches!(first.0.as_str(), "crate" | "super" | "self") {
        return None;
    }
    let line = segments.last()?.1;
    Some((line, segments.into_iter().map(|(s, _)| s).collect()))
}

/// Recursive descent over a use tree from `toks[*i]`: `a::b::{c, d::{self, e as f}, *};`.
/// Pushes one path per leaf (a trailing `self` and globs end at their prefix) and leaves `*i`
/// after the tree.
fn parse_use_tree(
    toks: &[Token],
    i: &mut usize,
    mut prefix: Vec<(String, usize)>,
    out: &mut Vec<Vec<(String, usize)>>,
) {
    if toks.get(*i).is_some_and(|t| t.punct("::")) {
        *i += 1;
    }
    while let Some(t) = toks.get(*i) {
        if t.kind == Kind::Ident {
            if t.text != "self" || prefix.is_empty() {
                prefix.push((t.text.clone(), t.line));
            }
            *i += 1;
            if toks.get(*i).is_some_and(|t| t.punct("::")) {
                *i += 1;
                continue;
            }
            if toks.get(*i).is_some_and(|t| t.ident("as")) {
                *i += 2;
            }
            out.push(prefix);
            return;
        }
        if t.punct("*") {
            *i += 1;
            out.push(prefix);
            return;
        }
        if t.punct("{") {
            *i += 1;
            while let Some(t) = toks.get(*i) {
                if t.punct("}") {
                    *i += 1;
                    break;
                }
                if t.punct(",") {
                    *i += 1;
                    continue;
                }
                let before = *i;
                parse_use_tree(toks, i, prefix.clone(), out);
                if *i == before {
                    *i += 1;
                }
            }
            return;
        }
        return;
    }
}

// ---------------------------------------------------------------------------------------------
// The crate: module files, their scans, the dependency graph

struct SourceFile {
    /// Relative to `src/`, with `/` separators.
    name: String,
    text: String,
    /// Its module path in the library crate (`lib.rs` is the root, `a/mod.rs` is `a`).
    module: Vec<String>,
    scan: Scan,
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn module_of(name: &str) -> Vec<String> {
    let mut parts: Vec<String> = name
        .trim_end_matches(".rs")
        .split('/')
        .map(String::from)
        .collect();
    if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
        parts.pop();
    }
    parts
}

/// Every file of the library crate (`src/main.rs` is the binary crate: its `crate::` is itself),
/// without the module files that only `#[cfg(test)] mod x;` declares.
fn library_files() -> Vec<SourceFile> {
    let root = src_dir();
    let mut paths = Vec::new();
    rust_files(&root, &mut paths);
    let mut files: Vec<SourceFile> = paths
        .into_iter()
        .map(|path| {
            let name = path
                .strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            let text = std::fs::read_to_string(&path).unwrap();
            SourceFile {
                module: module_of(&name),
                scan: scan(&text),
                name,
                text,
            }
        })
        .filter(|f| f.name != "main.rs")
        .collect();
    let test_modules: BTreeSet<Vec<String>> = files
        .iter()
        .flat_map(|f| {
            f.scan.test_child_modules.iter().map(|child| {
                let mut m = f.module.clone();
                m.push(child.clone());
                m
            })
        })
        .collect();
    files.retain(|f| !test_modules.iter().any(|m| f.module.starts_with(m)));
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Edge {
    from: String,
    line: usize,
    to: String,
    path: String,
}

/// The file a path resolves to: the longest prefix of its absolute module path that is a file.
fn resolve(
    modules: &BTreeMap<Vec<String>, String>,
    file_module: &[String],
    used: &UsedPath,
) -> Option<String> {
    let mut base: Vec<String> = file_module.to_vec();
    base.extend(used.inline_module.iter().cloned());
    let mut segments = used.segments.iter().peekable();
    match segments.peek().map(|s| s.as_str()) {
        Some("crate") => {
            base.clear();
            segments.next();
        }
        Some("self") => {
            segments.next();
        }
        Some("super") => {
            while segments.peek().is_some_and(|s| *s == "super") {
                base.pop()?;
                segments.next();
            }
        }
        _ => return None,
    }
    base.extend(segments.filter(|s| *s != "self").cloned());
    (0..=base.len())
        .rev()
        .find_map(|n| modules.get(&base[..n]))
        .cloned()
}

fn dependency_edges(files: &[SourceFile]) -> Vec<Edge> {
    let modules: BTreeMap<Vec<String>, String> = files
        .iter()
        .map(|f| (f.module.clone(), f.name.clone()))
        .collect();
    let mut edges = BTreeSet::new();
    for file in files {
        for used in &file.scan.paths {
            if let Some(to) = resolve(&modules, &file.module, used) {
                if to != file.name {
                    edges.insert(Edge {
                        from: file.name.clone(),
                        line: used.line,
                        to,
                        path: used.segments.join("::"),
                    });
                }
            }
        }
    }
    edges.into_iter().collect()
}

/// Strongly connected components (Tarjan) with more than one node, each sorted.
fn cycles(nodes: &[String], edges: &[Edge]) -> Vec<Vec<String>> {
    struct Tarjan<'a> {
        adjacency: BTreeMap<&'a str, BTreeSet<&'a str>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        found: Vec<Vec<String>>,
    }
    impl<'a> Tarjan<'a> {
        fn visit(&mut self, v: &'a str) {
            self.index.insert(v, self.next);
            self.low.insert(v, self.next);
            self.next += 1;
            self.stack.push(v);
            self.on_stack.insert(v);
            let successors: Vec<&'a str> = self
                .adjacency
                .get(v)
                .map(|s| s.iter().copied().collect())
                .unwrap_or_default();
            for w in successors {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                loop {
                    let w = self.stack.pop().unwrap();
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.found.push(component);
                }
            }
        }
    }
    let mut tarjan = Tarjan {
        adjacency: BTreeMap::new(),
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        found: Vec::new(),
    };
    for e in edges {
        tarjan
            .adjacency
            .entry(e.from.as_str())
            .or_default()
            .insert(e.to.as_str());
    }
    for v in nodes {
        if !tarjan.index.contains_key(v.as_str()) {
            tarjan.visit(v.as_str());
        }
    }
    let mut found = tarjan.found;
    found.sort();
    found
}

fn cycle_report(files: &[SourceFile]) -> Vec<String> {
    let edges = dependency_edges(files);
    let nodes: Vec<String> = files.iter().map(|f| f.name.clone()).collect();
    cycles(&nodes, &edges)
        .into_iter()
        .map(|component| {
            let mut report = component.join(" <-> ");
            for e in edges
                .iter()
                .filter(|e| component.contains(&e.from) && component.contains(&e.to))
            {
                report.push_str(&format!(
                    "\n    src/{}:{} uses {} (src/{})",
                    e.from, e.line, e.path, e.to
                ));
            }
            report
        })
        .collect()
}

#[test]
fn no_file_level_import_cycles_in_src() {
    let files = library_files();
    assert!(files.len() > 10, "found only {} files in src/", files.len());
    let report = cycle_report(&files);
    assert!(
        report.is_empty(),
        "{} file-level import cycle(s) in src/ (files that depend on each other through \
         `use crate::/super::/self::` or inline `crate::…` paths, outside #[cfg(test)] code). \
         Break each one by moving what both sides need into one place that depends on neither \
         (or into the lower layer):\n\n{}\n",
        report.len(),
        report.join("\n\n")
    );
}

// ---------------------------------------------------------------------------------------------
// SQL only in src/store

/// The text with `#[cfg(test)]` items blanked (newlines kept, so lines still count).
fn without_test_code(text: &str, regions: &[(usize, usize)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(start, end) in regions {
        for b in &mut bytes[start..end] {
            if *b != b'\n' {
                *b = b' ';
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// The regex `SELECT |INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM`, by hand.
fn sql_in(line: &str) -> Option<&'static str> {
    for (needle, name) in [
        ("SELECT ", "SELECT "),
        ("INSERT INTO", "INSERT INTO"),
        ("DELETE FROM", "DELETE FROM"),
    ] {
        if line.contains(needle) {
            return Some(name);
        }
    }
    let mut rest = line;
    while let Some(at) = rest.find("UPDATE ") {
        let after = &rest[at + "UPDATE ".len()..];
        let table = after
            .bytes()
            .take_while(|b| b.is_ascii_lowercase() || *b == b'_')
            .count();
        if table > 0 && after[table..].starts_with(" SET") {
            return Some("UPDATE … SET");
        }
        rest = after;
    }
    None
}

#[test]
fn sql_appears_only_in_src_store() {
    let mut found = Vec::new();
    for file in library_files() {
        if !["engine/", "api/", "webhooks/", "spec/"]
            .iter()
            .any(|dir| file.name.starts_with(dir))
        {
            continue;
        }
        let code = without_test_code(&file.text, &file.scan.test_regions);
        for (n, line) in code.lines().enumerate() {
            if let Some(what) = sql_in(line) {
                found.push(format!(
                    "src/{}:{}: {what}: {}",
                    file.name,
                    n + 1,
                    line.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "SQL outside src/store (queries belong to the store layer; outside #[cfg(test)] code, \
         `SELECT |INSERT INTO|UPDATE [a-z_]+ SET|DELETE FROM` must match nothing in src/engine, \
         src/api, src/webhooks, src/spec):\n{}\n",
        found.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// Comments cite only what is in the repository

const EXTERNAL_CITATIONS: [&str; 6] = [
    "DESIGN §",
    "DESIGN.md",
    "connector-rules",
    "issue contract",
    "shared/",
    "§",
];

#[test]
fn comments_cite_nothing_outside_the_repository() {
    let mut paths = Vec::new();
    rust_files(&src_dir(), &mut paths);
    paths.sort();
    let mut found = Vec::new();
    for path in paths {
        let name = path
            .strip_prefix(src_dir())
            .unwrap()
            .to_string_lossy()
            .replace('\\', "/");
        let text = std::fs::read_to_string(&path).unwrap();
        for comment in lex(&text).comments {
            if let Some(pattern) = EXTERNAL_CITATIONS
                .iter()
                .find(|p| comment.text.contains(**p))
            {
                found.push(format!(
                    "src/{name}:{}: '{pattern}': {}",
                    comment.line,
                    comment.text.trim()
                ));
            }
        }
    }
    assert!(
        found.is_empty(),
        "comments citing documents outside the repository (say what the code does and why, \
         in the comment itself or in a file of this repository; patterns: {EXTERNAL_CITATIONS:?}):\n{}\n",
        found.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The scanner's own tests

fn paths_of(text: &str) -> Vec<(String, usize)> {
    scan(text)
        .paths
        .into_iter()
        .map(|p| {
            let mut path = p.inline_module.join("::");
            if !path.is_empty() {
                path.push_str(" / ");
            }
            path.push_str(&p.segments.join("::"));
            (path, p.line)
        })
        .collect()
}

#[test]
fn the_scanner_reads_use_trees_and_inline_paths() {
    let text = r##"
//! use crate::doc::comment;
/// crate::doc::item
use std::collections::BTreeMap;
pub use crate::a::{
    b::{self, C as D},
    e::*,
};
pub(crate) use super::f;
use self::g::H;
use ::std::fmt;
fn x() -> crate::types::T {
    let s = "crate::in::string";
    let r = r#"super::in::raw "string""#;
    let c = '"';
    let l: &'static str = "";
    /* crate::block /* nested */ comment */
    crate::calls::f::<u8>(super::super::up::g, 'x');
    $crate::macro_path::x;
    pub(in crate::vis) fn y() {}
    self.field; Self::assoc();
}
"##;
    assert_eq!(
        paths_of(text),
        vec![
            ("crate::a::b".into(), 6),
            ("crate::a::b::C".into(), 6),
            ("crate::a::e".into(), 7),
            ("super::f".into(), 9),
            ("self::g::H".into(), 10),
            ("crate::types::T".into(), 12),
            ("crate::calls::f".into(), 18),
            ("super::super::up::g".into(), 18),
        ]
    );
}

#[test]
fn the_scanner_skips_cfg_test_code_and_tracks_inline_modules() {
    let text = r#"
use crate::kept::A;
#[cfg(test)]
use crate::test_only::B;
#[cfg(test)]
mod tests {
    use crate::test_only::C;
    fn f() { crate::test_only::d(); }
}
#[cfg(test)]
mod more_tests;
#[cfg(not(test))]
use crate::not_test::E;
struct S {
    #[cfg(test)]
    field: crate::test_only::F,
    other: crate::kept::G,
}
mod inner {
    use super::sibling::H;
    mod deeper { use super::super::I; }
}
fn after() -> crate::kept::J {}
"#;
    let scanned = scan(text);
    assert_eq!(scanned.test_child_modules, vec!["more_tests".to_string()]);
    assert_eq!(
        paths_of(text),
        vec![
            ("crate::kept::A".into(), 2),
            ("crate::not_test::E".into(), 13),
            ("crate::kept::G".into(), 17),
            ("inner / super::sibling::H".into(), 20),
            ("inner::deeper / super::super::I".into(), 21),
            ("crate::kept::J".into(), 23),
        ]
    );
    let code = without_test_code(text, &scanned.test_regions);
    assert!(!code.contains("test_only"), "{code}");
    assert_eq!(code.lines().count(), text.lines().count());
}

#[test]
fn paths_resolve_to_the_longest_prefix_that_is_a_module_file() {
    let modules: BTreeMap<Vec<String>, String> = [
        ("", "lib.rs"),
        ("a", "a/mod.rs"),
        ("a::b", "a/b.rs"),
        ("c", "c.rs"),
    ]
    .into_iter()
    .map(|(m, f)| {
        let module = if m.is_empty() {
            vec![]
        } else {
            m.split("::").map(String::from).collect()
        };
        (module, f.to_string())
    })
    .collect();
    let resolve_in = |file_module: &[&str], inline: &[&str], path: &str| {
        let used = UsedPath {
            inline_module: inline.iter().map(|s| s.to_string()).collect(),
            segments: path.split("::").map(String::from).collect(),
            line: 1,
        };
        let file_module: Vec<String> = file_module.iter().map(|s| s.to_string()).collect();
        resolve(&modules, &file_module, &used)
    };
    assert_eq!(
        resolve_in(&["c"], &[], "crate::a::b::X::new").as_deref(),
        Some("a/b.rs")
    );
    assert_eq!(
        resolve_in(&["c"], &[], "crate::a::Y").as_deref(),
        Some("a/mod.rs")
    );
    assert_eq!(
        resolve_in(&["c"], &[], "crate::Z").as_deref(),
        Some("lib.rs")
    );
    assert_eq!(
        resolve_in(&["a", "b"], &[], "super::W").as_deref(),
        Some("a/mod.rs")
    );
    assert_eq!(
        resolve_in(&["a", "b"], &[], "super::super::c::V").as_deref(),
        Some("c.rs")
    );
    assert_eq!(
        resolve_in(&["a"], &[], "self::b::U").as_deref(),
        Some("a/b.rs")
    );
    assert_eq!(
        resolve_in(&["a"], &["tests"], "super::b::U").as_deref(),
        Some("a/b.rs")
    );
    assert_eq!(resolve_in(&[], &[], "super::X"), None);
}

#[test]
fn cycles_are_the_strongly_connected_components_of_more_than_one_file() {
    let edge = |from: &str, to: &str| Edge {
        from: from.into(),
        line: 1,
        to: to.into(),
        path: String::new(),
    };
    let nodes: Vec<String> = ["a", "b", "c", "d", "e"].map(String::from).to_vec();
    let edges = vec![
        edge("a", "b"),
        edge("b", "c"),
        edge("c", "a"),
        edge("c", "d"),
        edge("d", "e"),
        edge("e", "d"),
    ];
    assert_eq!(
        cycles(&nodes, &edges),
        vec![vec!["a", "b", "c"], vec!["d", "e"]]
    );
    assert!(cycles(&nodes, &[edge("a", "b"), edge("b", "c")]).is_empty());
}

#[test]
fn the_sql_pattern_matches_what_the_regex_matches() {
    assert!(sql_in(r#"sqlx::query("SELECT id FROM t")"#).is_some());
    assert!(sql_in("INSERT INTO t VALUES (1)").is_some());
    assert!(sql_in("UPDATE jobs SET status = ?").is_some());
    assert!(sql_in("DELETE FROM t").is_some());
    assert!(sql_in("UPDATE Jobs SET").is_none());
    assert!(sql_in("UPDATE  SET").is_none());
    assert!(sql_in("SELECTED items").is_none());
    assert!(sql_in("an UPDATE of the set").is_none());
}
