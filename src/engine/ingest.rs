//! Streaming ingestion of data-source files (CSV or JSON Lines) into entity items.
//!
//! [`parse`] reads from any [`std::io::Read`], turns every record into a [`Row`] (its line number,
//! its primary key and its fields as a JSON object) and hands the rows to a sink in batches, so a
//! file is never held in memory as a whole. It stops at the first problem and reports it with the
//! physical line number where the offending record starts.
//!
//! Choices worth knowing:
//! * **Empty CSV cells are omitted** from the item (no `null`): a missing value and an empty cell
//!   look the same to every consumer (filters, measures, unification's "skip empty").
//! * CSV cells are typed one by one with [`infer_cell`]; the key column is the exception and is
//!   always kept as its raw text (an identifier such as `00123` must not become a number).
//!   JSON Lines values are kept exactly as written.
//! * A file with a CSV header and no data rows is valid and yields 0 rows; a file with no content
//!   at all (or only blank lines / a byte-order mark) is [`IngestError::Empty`].
//! * A UTF-8 byte-order mark at the start of the file is skipped.
//! * Duplicate keys are detected with [`KeySet`], which keeps every key once in a single string
//!   arena plus a 64-bit keyed hash table (about 40–50 bytes per key plus the key's text, i.e. well
//!   under 100 MB for 1,000,000 keys); a hash collision is resolved by comparing the stored texts,
//!   so detection is exact.
//! * A JSON Lines line or a CSV record is limited to [`MAX_LINE_BYTES`] so a file without line
//!   breaks (or with an unterminated quote) cannot exhaust memory.
//!   cannot exhaust memory.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader, Read};

use serde_json::{Map, Number, Value};

/// Format of a data-source file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Csv,
    Jsonl,
}

/// Why a file could not be ingested. Line numbers are 1-based physical lines of the file.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IngestError {
    #[error("line {line}: {message}")]
    Malformed { line: u64, message: String },
    #[error("line {line}: key field '{key_field}' is missing or empty")]
    MissingKey { line: u64, key_field: String },
    #[error("line {line}: duplicate key '{key}' (first seen on line {first_line})")]
    DuplicateKey {
        line: u64,
        key: String,
        first_line: u64,
    },
    #[error("header has no column '{0}' for the key field")]
    KeyColumnMissing(String),
    #[error("the file is empty")]
    Empty,
    #[error("read error: {0}")]
    Io(String),
}

/// Why a record with U+0000 is refused: PostgreSQL cannot store it in a document, and both
/// backends take the same files.
pub(crate) const NUL_REFUSED: &str = "text must not contain the NUL character (U+0000)";

/// Whether any name or text value of an item holds U+0000.
pub(crate) fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(fields) => has_nul_in_object(fields),
        _ => false,
    }
}

pub(crate) fn has_nul_in_object(fields: &Map<String, Value>) -> bool {
    fields
        .iter()
        .any(|(name, v)| name.contains('\0') || has_nul(v))
}

/// One ingested record.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// Physical line where the record starts (1-based; the CSV header is line 1).
    pub line: u64,
    /// The primary key as text (CSV: the raw cell; JSONL: the string, or a number's text).
    pub key: String,
    /// The item's fields, including the key field.
    pub data: Map<String, Value>,
}

/// Failure of [`parse`]: either the file is bad, or the sink refused a batch.
#[derive(Debug, PartialEq)]
pub enum ParseFailure<E> {
    Ingest(IngestError),
    Sink(E),
}

impl<E> From<IngestError> for ParseFailure<E> {
    fn from(e: IngestError) -> Self {
        ParseFailure::Ingest(e)
    }
}

impl<E: std::fmt::Display> std::fmt::Display for ParseFailure<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ParseFailure::Ingest(e) => e.fmt(f),
            ParseFailure::Sink(e) => e.fmt(f),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for ParseFailure<E> {}

/// Longest JSON Lines line or CSV record accepted (64 MiB).
pub const MAX_LINE_BYTES: usize = 64 * 1024 * 1024;

/// Read-ahead buffer of the CSV and JSON Lines readers.
const BUFFER_BYTES: usize = 256 * 1024;

const BOM: [u8; 3] = [0xEF, 0xBB, 0xBF];

/// Streams rows in batches of `batch_size` (0 is treated as 1), calling `sink` for each batch;
/// never holds the whole file. Stops at the first error (batches already handed to the sink stay
/// handed; callers that need all-or-nothing should apply the batches in one transaction).
/// Returns the number of rows.
pub fn parse<R: Read, E>(
    reader: R,
    format: Format,
    key_field: &str,
    batch_size: usize,
    sink: impl FnMut(Vec<Row>) -> Result<(), E>,
) -> Result<u64, ParseFailure<E>> {
    parse_limited(reader, format, key_field, batch_size, MAX_LINE_BYTES, sink)
}

fn parse_limited<R: Read, E>(
    reader: R,
    format: Format,
    key_field: &str,
    batch_size: usize,
    max_record: usize,
    sink: impl FnMut(Vec<Row>) -> Result<(), E>,
) -> Result<u64, ParseFailure<E>> {
    let reader = skip_bom(reader)?;
    let mut batcher = Batcher::new(batch_size, sink);
    match format {
        Format::Csv => parse_csv(reader, key_field, max_record, &mut batcher)?,
        Format::Jsonl => parse_jsonl(reader, key_field, max_record, &mut batcher)?,
    }
    batcher.finish()
}

/// Returns a reader positioned after a UTF-8 byte-order mark, if the input starts with one.
fn skip_bom<R: Read>(
    mut reader: R,
) -> Result<std::io::Chain<std::io::Cursor<Vec<u8>>, R>, IngestError> {
    let mut head = [0u8; 3];
    let mut filled = 0;
    while filled < head.len() {
        match reader.read(&mut head[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(IngestError::Io(e.to_string())),
        }
    }
    let prefix = if filled == 3 && head == BOM {
        Vec::new()
    } else {
        head[..filled].to_vec()
    };
    Ok(std::io::Cursor::new(prefix).chain(reader))
}

struct Batcher<F> {
    batch_size: usize,
    batch: Vec<Row>,
    sink: F,
    count: u64,
    keys: KeySet,
}

impl<E, F: FnMut(Vec<Row>) -> Result<(), E>> Batcher<F> {
    fn new(batch_size: usize, sink: F) -> Self {
        let batch_size = batch_size.max(1);
        Batcher {
            batch_size,
            batch: Vec::with_capacity(batch_size.min(65_536)),
            sink,
            count: 0,
            keys: KeySet::new(),
        }
    }

    fn push(&mut self, row: Row) -> Result<(), ParseFailure<E>> {
        if let Some(first_line) = self.keys.insert(&row.key, row.line) {
            return Err(ParseFailure::Ingest(IngestError::DuplicateKey {
                line: row.line,
                key: row.key,
                first_line,
            }));
        }
        self.batch.push(row);
        self.count += 1;
        if self.batch.len() >= self.batch_size {
            let full = std::mem::replace(
                &mut self.batch,
                Vec::with_capacity(self.batch_size.min(65_536)),
            );
            (self.sink)(full).map_err(ParseFailure::Sink)?;
        }
        Ok(())
    }

    fn finish(mut self) -> Result<u64, ParseFailure<E>> {
        if !self.batch.is_empty() {
            let rest = std::mem::take(&mut self.batch);
            (self.sink)(rest).map_err(ParseFailure::Sink)?;
        }
        Ok(self.count)
    }
}

fn parse_csv<R: Read, E, F: FnMut(Vec<Row>) -> Result<(), E>>(
    reader: R,
    key_field: &str,
    max_record: usize,
    batcher: &mut Batcher<F>,
) -> Result<(), ParseFailure<E>> {
    let mut rdr = csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(BUFFER_BYTES)
        .from_reader(LineTracker::new(reader, max_record));
    let (headers, header_pos): (Vec<String>, u64) = match rdr.headers() {
        Ok(h) => (
            h.iter().map(str::to_owned).collect(),
            h.position().map_or(0, csv::Position::byte),
        ),
        Err(e) => return Err(csv_error(e, &mut rdr).into()),
    };
    if headers.is_empty() {
        return Err(IngestError::Empty.into());
    }
    let header_line = rdr.get_mut().line_at(header_pos);
    for (i, name) in headers.iter().enumerate() {
        if name.is_empty() {
            return Err(
                malformed(header_line, format!("header column {} has no name", i + 1)).into(),
            );
        }
        if headers[..i].contains(name) {
            return Err(
                malformed(header_line, format!("header column '{name}' appears twice")).into(),
            );
        }
        if name.contains('\0') {
            return Err(malformed(header_line, NUL_REFUSED.to_owned()).into());
        }
    }
    let key_index = headers
        .iter()
        .position(|h| h == key_field)
        .ok_or_else(|| IngestError::KeyColumnMissing(key_field.to_owned()))?;

    let mut record = csv::StringRecord::new();
    loop {
        match rdr.read_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => return Err(csv_error(e, &mut rdr).into()),
        }
        let byte = record.position().map_or(u64::MAX, csv::Position::byte);
        let line = rdr.get_mut().line_at(byte);
        if record.as_slice().contains('\0') {
            return Err(malformed(line, NUL_REFUSED.to_owned()).into());
        }
        let key = &record[key_index];
        if key.trim().is_empty() {
            return Err(IngestError::MissingKey {
                line,
                key_field: key_field.to_owned(),
            }
            .into());
        }
        let data: Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .enumerate()
            .filter_map(|(i, (name, cell))| {
                let value = if i == key_index {
                    Some(Value::String(cell.to_owned()))
                } else {
                    infer_cell(cell)
                };
                value.map(|v| (name.clone(), v))
            })
            .collect();
        batcher.push(Row {
            line,
            key: key.to_owned(),
            data,
        })?;
    }
    Ok(())
}

/// Tracks physical line breaks (`\n`, `\r\n`, lone `\r`) of the bytes the CSV reader pulls, so a
/// record's byte offset can be turned into the physical line where its first character is.
/// (`csv::Position::line()` miscounts blank lines and CRLF endings; its byte offset points at the
/// terminator that precedes the record.) Only breaks inside the CSV reader's look-ahead are kept.
/// It also refuses to read further than about `max_record` bytes past the last record's start,
/// which bounds the CSV reader's record buffer.
struct LineTracker<R> {
    inner: R,
    offset: u64,
    /// Line breaks not yet passed: (start offset, length in bytes).
    breaks: std::collections::VecDeque<(u64, u8)>,
    passed: u64,
    prev_cr: bool,
    record_start: u64,
    max_record: usize,
}

/// The I/O error [`LineTracker`] raises when a record gets too long.
#[derive(Debug)]
struct RecordTooLong;

impl std::fmt::Display for RecordTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("record too long")
    }
}

impl std::error::Error for RecordTooLong {}

impl<R: Read> LineTracker<R> {
    fn new(inner: R, max_record: usize) -> Self {
        LineTracker {
            inner,
            offset: 0,
            breaks: std::collections::VecDeque::new(),
            passed: 0,
            prev_cr: false,
            record_start: 0,
            max_record,
        }
    }

    /// Physical line (1-based) of the first non-line-break byte at or after `byte`. Calls must
    /// come with non-decreasing offsets.
    fn line_at(&mut self, byte: u64) -> u64 {
        self.record_start = self.record_start.max(byte);
        let mut at = byte;
        while let Some(&(start, len)) = self.breaks.front() {
            let end = start + u64::from(len);
            if end <= at {
                self.passed += 1;
                self.breaks.pop_front();
            } else if start <= at {
                // `at` is on a line break (blank lines / the terminator before the record).
                at = end;
                self.passed += 1;
                self.breaks.pop_front();
            } else {
                break;
            }
        }
        self.passed + 1
    }
}

impl<R: Read> Read for LineTracker<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let limit = (self.max_record + BUFFER_BYTES) as u64;
        if self.offset.saturating_sub(self.record_start) > limit {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                RecordTooLong,
            ));
        }
        let n = self.inner.read(buf)?;
        for (i, &b) in buf[..n].iter().enumerate() {
            match b {
                b'\n' if self.prev_cr => {
                    if let Some(last) = self.breaks.back_mut() {
                        last.1 = 2;
                    }
                    self.prev_cr = false;
                }
                b'\n' => self.breaks.push_back((self.offset + i as u64, 1)),
                b'\r' => {
                    self.breaks.push_back((self.offset + i as u64, 1));
                    self.prev_cr = true;
                    continue;
                }
                _ => {}
            }
            self.prev_cr = false;
        }
        self.offset += n as u64;
        Ok(n)
    }
}

fn csv_error<R: Read>(e: csv::Error, rdr: &mut csv::Reader<LineTracker<R>>) -> IngestError {
    let max = rdr.get_ref().max_record;
    let mut line_of = |pos: Option<&csv::Position>| {
        let byte = pos.map_or_else(|| rdr.position().byte(), csv::Position::byte);
        rdr.get_mut().line_at(byte)
    };
    match e.into_kind() {
        csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|e| e.is::<RecordTooLong>()) => {
            malformed(line_of(None), format!("record is longer than {max} bytes"))
        }
        csv::ErrorKind::Io(io) => IngestError::Io(io.to_string()),
        csv::ErrorKind::Utf8 { pos, err } => malformed(
            line_of(pos.as_ref()),
            format!("field {} is not valid UTF-8", err.field() + 1),
        ),
        csv::ErrorKind::UnequalLengths {
            pos,
            expected_len,
            len,
        } => malformed(
            line_of(pos.as_ref()),
            format!("expected {expected_len} fields, found {len}"),
        ),
        other => malformed(line_of(None), format!("{other:?}")),
    }
}

fn malformed(line: u64, message: impl Into<String>) -> IngestError {
    IngestError::Malformed {
        line,
        message: message.into(),
    }
}

fn parse_jsonl<R: Read, E, F: FnMut(Vec<Row>) -> Result<(), E>>(
    reader: R,
    key_field: &str,
    max_line: usize,
    batcher: &mut Batcher<F>,
) -> Result<(), ParseFailure<E>> {
    let mut reader = BufReader::with_capacity(BUFFER_BYTES, reader);
    let mut buf = Vec::new();
    let mut line: u64 = 0;
    let mut saw_content = false;
    loop {
        buf.clear();
        let read = read_line_capped(&mut reader, &mut buf, max_line)
            .map_err(|e| IngestError::Io(e.to_string()))?;
        line += 1;
        match read {
            LineRead::Eof => break,
            LineRead::TooLong => {
                return Err(malformed(line, format!("line is longer than {max_line} bytes")).into())
            }
            LineRead::Line => {}
        }
        let text =
            std::str::from_utf8(&buf).map_err(|_| malformed(line, "line is not valid UTF-8"))?;
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        saw_content = true;
        let value: Value = serde_json::from_str(text)
            .map_err(|e| malformed(line, format!("invalid JSON: {e}")))?;
        let Value::Object(data) = value else {
            return Err(malformed(
                line,
                format!("expected a JSON object, found {}", json_kind(&value)),
            )
            .into());
        };
        if text.contains("u0000") && has_nul_in_object(&data) {
            return Err(malformed(line, NUL_REFUSED.to_owned()).into());
        }
        let key = match data.get(key_field) {
            Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(IngestError::MissingKey {
                    line,
                    key_field: key_field.to_owned(),
                }
                .into())
            }
            Some(other) => {
                return Err(malformed(
                    line,
                    format!(
                        "key field '{key_field}' must be a string or a number, found {}",
                        json_kind(other)
                    ),
                )
                .into())
            }
        };
        batcher.push(Row { line, key, data })?;
    }
    if !saw_content {
        return Err(IngestError::Empty.into());
    }
    Ok(())
}

enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Reads one line (without its `\n`) into `buf`, refusing lines longer than `cap` bytes.
fn read_line_capped<R: BufRead>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    cap: usize,
) -> std::io::Result<LineRead> {
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(if any { LineRead::Line } else { LineRead::Eof });
        }
        any = true;
        let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
            Some(i) => (&available[..i], Some(i + 1)),
            None => (available, None),
        };
        if buf.len() + chunk.len() > cap {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(chunk);
        match done {
            Some(consumed) => {
                reader.consume(consumed);
                return Ok(LineRead::Line);
            }
            None => {
                let n = chunk.len();
                reader.consume(n);
            }
        }
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Types one CSV cell. `None` for an empty cell (the field is then omitted).
///
/// * `true` / `false` (exactly, lower case) → boolean;
/// * `-?(0|[1-9][0-9]*)` within `i64` → integer (so `00123`, `+4930…`, `-0` and huge ids stay text);
/// * `-?(0|[1-9][0-9]*)\.[0-9]+` with at most 15 significant digits → number (an `f64` holds any
///   such decimal exactly enough to give it back; longer ones stay text). No exponents, no `.5`;
/// * anything else → string, unchanged (no trimming).
pub fn infer_cell(cell: &str) -> Option<Value> {
    if cell.is_empty() {
        return None;
    }
    match cell {
        "true" => return Some(Value::Bool(true)),
        "false" => return Some(Value::Bool(false)),
        _ => {}
    }
    let bytes = cell.as_bytes();
    let unsigned = bytes.strip_prefix(b"-").unwrap_or(bytes);
    let negative = unsigned.len() != bytes.len();
    let int_len = unsigned.iter().take_while(|b| b.is_ascii_digit()).count();
    let int_part = &unsigned[..int_len];
    let valid_int_part = int_len == 1 || (int_len > 1 && int_part[0] != b'0');
    if valid_int_part {
        if int_len == unsigned.len() {
            if negative && int_part == b"0" {
                return Some(Value::String(cell.to_owned()));
            }
            if let Ok(i) = cell.parse::<i64>() {
                return Some(Value::Number(i.into()));
            }
        } else if unsigned[int_len] == b'.' {
            let frac = &unsigned[int_len + 1..];
            if !frac.is_empty() && frac.iter().all(u8::is_ascii_digit) {
                // Significant digits: from the first to the last non-zero digit.
                let digits = || int_part.iter().chain(frac.iter());
                let total = int_part.len() + frac.len();
                let leading = digits().take_while(|&&d| d == b'0').count();
                let trailing = digits().rev().take_while(|&&d| d == b'0').count();
                if total.saturating_sub(leading + trailing) <= 15 {
                    if let Some(n) = cell.parse::<f64>().ok().and_then(Number::from_f64) {
                        return Some(Value::Number(n));
                    }
                }
            }
        }
    }
    Some(Value::String(cell.to_owned()))
}

/// Exact set of keys with their first line, compact enough for millions of keys.
///
/// Keys live once in one `String` arena; a `HashMap<u64, u32>` maps a keyed (randomly seeded,
/// so not attacker-predictable) 64-bit hash of the key to its entry. On a hash hit the stored
/// text is compared; the rare true collision goes to a small overflow map, so the set is exact.
pub struct KeySet {
    hasher: RandomState,
    index: HashMap<u64, u32, BuildHasherDefault<IdentityHasher>>,
    arena: String,
    /// Per entry: end offset of the key in `arena` (start is the previous entry's end) and first line.
    entries: Vec<(usize, u64)>,
    overflow: HashMap<Box<str>, u64>,
}

impl Default for KeySet {
    fn default() -> Self {
        Self::new()
    }
}

impl KeySet {
    pub fn new() -> Self {
        KeySet {
            hasher: RandomState::new(),
            index: HashMap::default(),
            arena: String::new(),
            entries: Vec::new(),
            overflow: HashMap::new(),
        }
    }

    /// Number of distinct keys.
    pub fn len(&self) -> usize {
        self.entries.len() + self.overflow.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn entry_key(&self, i: usize) -> &str {
        let start = if i == 0 { 0 } else { self.entries[i - 1].0 };
        &self.arena[start..self.entries[i].0]
    }

    /// Inserts `key` first seen on `line`. If the key is already present, returns the line where
    /// it was first seen and leaves the set unchanged.
    pub fn insert(&mut self, key: &str, line: u64) -> Option<u64> {
        let hash = self.hasher.hash_one(key);
        match self.index.get(&hash) {
            Some(&i) => {
                let i = i as usize;
                if self.entry_key(i) == key {
                    return Some(self.entries[i].1);
                }
                if let Some(&first) = self.overflow.get(key) {
                    return Some(first);
                }
                self.overflow.insert(key.into(), line);
                None
            }
            None => {
                if self.entries.len() >= u32::MAX as usize {
                    // Beyond 4 billion keys: keep exactness with the plain map.
                    if let Some(&first) = self.overflow.get(key) {
                        return Some(first);
                    }
                    self.overflow.insert(key.into(), line);
                    return None;
                }
                self.arena.push_str(key);
                self.entries.push((self.arena.len(), line));
                self.index.insert(hash, (self.entries.len() - 1) as u32);
                None
            }
        }
    }
}

/// Passes an already well-mixed `u64` through unchanged.
#[derive(Default)]
pub struct IdentityHasher(u64);

impl Hasher for IdentityHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn collect(
        input: &[u8],
        format: Format,
        key: &str,
        batch: usize,
    ) -> Result<(u64, Vec<Vec<Row>>), IngestError> {
        let mut batches = Vec::new();
        let n = parse::<_, ()>(input, format, key, batch, |b| {
            batches.push(b);
            Ok(())
        })
        .map_err(|e| match e {
            ParseFailure::Ingest(e) => e,
            ParseFailure::Sink(()) => unreachable!(),
        })?;
        Ok((n, batches))
    }

    fn rows(input: &str, format: Format, key: &str) -> Result<Vec<Row>, IngestError> {
        collect(input.as_bytes(), format, key, 1000).map(|(_, b)| b.into_iter().flatten().collect())
    }

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn cell_typing() {
        assert_eq!(infer_cell(""), None);
        assert_eq!(infer_cell("true"), Some(json!(true)));
        assert_eq!(infer_cell("false"), Some(json!(false)));
        assert_eq!(infer_cell("True"), Some(json!("True")));
        assert_eq!(infer_cell("0"), Some(json!(0)));
        assert_eq!(infer_cell("42"), Some(json!(42)));
        assert_eq!(infer_cell("-17"), Some(json!(-17)));
        assert_eq!(infer_cell("-0"), Some(json!("-0")));
        assert_eq!(infer_cell("00123"), Some(json!("00123")));
        assert_eq!(infer_cell("+4930123456"), Some(json!("+4930123456")));
        assert_eq!(infer_cell("9223372036854775807"), Some(json!(i64::MAX)));
        assert_eq!(
            infer_cell("9223372036854775808"),
            Some(json!("9223372036854775808"))
        );
        assert_eq!(infer_cell("1.5"), Some(json!(1.5)));
        assert_eq!(infer_cell("-0.25"), Some(json!(-0.25)));
        assert_eq!(infer_cell("19.90"), Some(json!(19.9)));
        assert_eq!(infer_cell("0.000123"), Some(json!(0.000123)));
        assert_eq!(
            infer_cell("123456789.123456"),
            Some(json!(123456789.123456))
        );
        assert_eq!(
            infer_cell("1234567890.1234567"),
            Some(json!("1234567890.1234567"))
        );
        assert_eq!(infer_cell("01.5"), Some(json!("01.5")));
        assert_eq!(infer_cell(".5"), Some(json!(".5")));
        assert_eq!(infer_cell("5."), Some(json!("5.")));
        assert_eq!(infer_cell("1e5"), Some(json!("1e5")));
        assert_eq!(infer_cell("1.2.3"), Some(json!("1.2.3")));
        assert_eq!(infer_cell("-"), Some(json!("-")));
        assert_eq!(infer_cell(" 42"), Some(json!(" 42")));
        assert_eq!(infer_cell("NaN"), Some(json!("NaN")));
        assert_eq!(infer_cell("héllo"), Some(json!("héllo")));
    }

    #[test]
    fn csv_basic_with_typing_and_omitted_empty_cells() {
        let input = "Id,Name,Age,Score,Active,Zip\n00123,Ann,34,1.5,true,\n2,\"Smith, Bob\",,2,false,01099\n";
        let rows = rows(input, Format::Csv, "Id").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].line, 2);
        assert_eq!(rows[0].key, "00123");
        assert_eq!(
            rows[0].data,
            obj(json!({"Id":"00123","Name":"Ann","Age":34,"Score":1.5,"Active":true}))
        );
        assert_eq!(rows[1].key, "2");
        assert_eq!(
            rows[1].data,
            obj(json!({"Id":"2","Name":"Smith, Bob","Score":2,"Active":false,"Zip":"01099"}))
        );
    }

    #[test]
    fn csv_quoted_multiline_field_keeps_physical_line_numbers() {
        let input = "id,note\n1,\"two\nlines\"\n2,x\n3,y,z\n";
        let err = rows(input, Format::Csv, "id").unwrap_err();
        assert_eq!(
            err,
            IngestError::Malformed {
                line: 5,
                message: "expected 2 fields, found 3".into()
            }
        );
        let ok = rows(
            "id,note\n1,\"two\nlines\"\n2,\"a \"\"q\"\"\"\n",
            Format::Csv,
            "id",
        )
        .unwrap();
        assert_eq!(ok[0].line, 2);
        assert_eq!(ok[0].data["note"], json!("two\nlines"));
        assert_eq!(ok[1].line, 4);
        assert_eq!(ok[1].data["note"], json!("a \"q\""));
    }

    #[test]
    fn csv_line_numbers_are_physical_lines() {
        let lines = |input: &str| -> Vec<u64> {
            rows(input, Format::Csv, "id")
                .unwrap()
                .iter()
                .map(|r| r.line)
                .collect()
        };
        assert_eq!(lines("id,n\n1,a\n\n2,b\n\n\n3,c"), vec![2, 4, 7]);
        assert_eq!(lines("id,n\r\n1,a\r\n\r\n2,b\r\n3,c\r\n"), vec![2, 4, 5]);
        assert_eq!(lines("id,n\r1,a\r2,b\r"), vec![2, 3]);
        assert_eq!(lines("\n\nid,n\n1,\"x\r\ny\"\n2,b\n"), vec![4, 6]);
        let err = rows("\r\nid,n\r\n\r\n1,a\r\n2\r\n", Format::Csv, "id").unwrap_err();
        assert_eq!(
            err,
            IngestError::Malformed {
                line: 5,
                message: "expected 2 fields, found 1".into()
            }
        );
        let err = rows("\n\nid,id\n", Format::Csv, "id").unwrap_err();
        assert!(
            matches!(err, IngestError::Malformed { line: 3, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn text_with_nul_is_malformed_in_either_format() {
        let nul = |line| IngestError::Malformed {
            line,
            message: NUL_REFUSED.into(),
        };
        assert_eq!(
            rows("id,name\n1,a\n2,b\0c\n", Format::Csv, "id").unwrap_err(),
            nul(3)
        );
        assert_eq!(
            rows("id,na\0me\n1,a\n", Format::Csv, "id").unwrap_err(),
            nul(1)
        );
        let jsonl = "{\"id\":1}\n{\"id\":2,\"tags\":[{\"x\":\"a\\u0000\"}]}\n";
        assert_eq!(rows(jsonl, Format::Jsonl, "id").unwrap_err(), nul(2));
        // An escaped backslash before `u0000` is ordinary text.
        let fine = rows("{\"id\":1,\"p\":\"C:\\\\u0000\"}\n", Format::Jsonl, "id").unwrap();
        assert_eq!(fine[0].data["p"], "C:\\u0000");
    }

    #[test]
    fn csv_short_row_is_malformed() {
        let err = rows("a,b,c\n1,2,3\n4,5\n", Format::Csv, "a").unwrap_err();
        assert_eq!(
            err,
            IngestError::Malformed {
                line: 3,
                message: "expected 3 fields, found 2".into()
            }
        );
    }

    #[test]
    fn csv_invalid_utf8_is_malformed() {
        let input = b"id,name\n1,ok\n2,\xff\xfe\n";
        let err = collect(input, Format::Csv, "id", 10).unwrap_err();
        assert_eq!(
            err,
            IngestError::Malformed {
                line: 3,
                message: "field 2 is not valid UTF-8".into()
            }
        );
        let err = collect(b"id,n\xffame\n1,2\n", Format::Csv, "id", 10).unwrap_err();
        assert!(
            matches!(err, IngestError::Malformed { line: 1, .. }),
            "{err:?}"
        );
    }

    #[test]
    fn csv_crlf_bom_and_blank_lines() {
        let input = b"\xEF\xBB\xBFid,name\r\n1,a\r\n\r\n2,b\r\n";
        let (n, batches) = collect(input, Format::Csv, "id", 10).unwrap();
        assert_eq!(n, 2);
        let rows: Vec<Row> = batches.into_iter().flatten().collect();
        assert_eq!(rows[0].data, obj(json!({"id":"1","name":"a"})));
        assert_eq!(rows[1].line, 4);
    }

    #[test]
    fn csv_key_errors() {
        assert_eq!(
            rows("id,name\n1,a\n", Format::Csv, "Id").unwrap_err(),
            IngestError::KeyColumnMissing("Id".into())
        );
        assert_eq!(
            rows("id,name\n1,a\n,b\n", Format::Csv, "id").unwrap_err(),
            IngestError::MissingKey {
                line: 3,
                key_field: "id".into()
            }
        );
        assert_eq!(
            rows("id,name\n1,a\n2,b\n1,c\n", Format::Csv, "id").unwrap_err(),
            IngestError::DuplicateKey {
                line: 4,
                key: "1".into(),
                first_line: 2
            }
        );
    }

    #[test]
    fn csv_bad_headers() {
        assert!(matches!(
            rows("id,name,id\n1,a,b\n", Format::Csv, "id").unwrap_err(),
            IngestError::Malformed { line: 1, .. }
        ));
        assert!(matches!(
            rows("id,,x\n1,a,b\n", Format::Csv, "id").unwrap_err(),
            IngestError::Malformed { line: 1, .. }
        ));
    }

    #[test]
    fn empty_files() {
        assert_eq!(rows("", Format::Csv, "id").unwrap_err(), IngestError::Empty);
        assert_eq!(
            rows("\n\n", Format::Csv, "id").unwrap_err(),
            IngestError::Empty
        );
        assert_eq!(
            collect(b"\xEF\xBB\xBF", Format::Csv, "id", 1).unwrap_err(),
            IngestError::Empty
        );
        assert_eq!(
            rows("", Format::Jsonl, "id").unwrap_err(),
            IngestError::Empty
        );
        assert_eq!(
            rows(" \n\n  \n", Format::Jsonl, "id").unwrap_err(),
            IngestError::Empty
        );
        // A header without data rows is a valid, empty entity.
        assert_eq!(collect(b"id,name\n", Format::Csv, "id", 1).unwrap().0, 0);
    }

    #[test]
    fn batching_and_sink_errors() {
        let mut input = String::from("id\n");
        for i in 0..10 {
            input.push_str(&format!("{i}\n"));
        }
        let (n, batches) = collect(input.as_bytes(), Format::Csv, "id", 4).unwrap();
        assert_eq!(n, 10);
        assert_eq!(
            batches.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let (n, batches) = collect(input.as_bytes(), Format::Csv, "id", 0).unwrap();
        assert_eq!((n, batches.len()), (10, 10));

        let mut calls = 0;
        let res = parse(input.as_bytes(), Format::Csv, "id", 3, |_| {
            calls += 1;
            if calls == 2 {
                Err("store full")
            } else {
                Ok(())
            }
        });
        assert_eq!(res, Err(ParseFailure::Sink("store full")));
        assert_eq!(calls, 2);
    }

    #[test]
    fn parse_stops_at_first_error_after_sending_earlier_batches() {
        let input = "id\n1\n2\n3\n2\n4\n";
        let mut seen = Vec::new();
        let res = parse::<_, ()>(input.as_bytes(), Format::Csv, "id", 2, |b| {
            seen.extend(b.into_iter().map(|r| r.key));
            Ok(())
        });
        assert_eq!(
            res,
            Err(ParseFailure::Ingest(IngestError::DuplicateKey {
                line: 5,
                key: "2".into(),
                first_line: 3
            }))
        );
        assert_eq!(seen, vec!["1", "2"]);
        assert_eq!(
            ParseFailure::<String>::Ingest(IngestError::Empty).to_string(),
            "the file is empty"
        );
    }

    #[test]
    fn jsonl_basic() {
        let input = "{\"id\":\"a\",\"n\":1,\"nested\":{\"x\":[1,2]}}\n\n{\"id\":7,\"n\":2.5}\r\n  {\"id\":1.5}  \n{\"id\":\"b\"}";
        let rows = rows(input, Format::Jsonl, "id").unwrap();
        assert_eq!(
            rows.iter().map(|r| r.key.as_str()).collect::<Vec<_>>(),
            vec!["a", "7", "1.5", "b"]
        );
        assert_eq!(
            rows.iter().map(|r| r.line).collect::<Vec<_>>(),
            vec![1, 3, 4, 5]
        );
        assert_eq!(
            rows[0].data,
            obj(json!({"id":"a","n":1,"nested":{"x":[1,2]}}))
        );
        assert_eq!(rows[1].data, obj(json!({"id":7,"n":2.5})));
    }

    #[test]
    fn jsonl_errors() {
        let err = rows("{\"id\":1}\n{\"id\":2,}\n", Format::Jsonl, "id").unwrap_err();
        assert!(
            matches!(&err, IngestError::Malformed { line: 2, message } if message.starts_with("invalid JSON")),
            "{err:?}"
        );
        assert_eq!(
            rows("{\"id\":1}\n\n[1,2]\n", Format::Jsonl, "id").unwrap_err(),
            IngestError::Malformed {
                line: 3,
                message: "expected a JSON object, found an array".into()
            }
        );
        assert_eq!(
            rows("{\"id\":1}\n{\"x\":1}\n", Format::Jsonl, "id").unwrap_err(),
            IngestError::MissingKey {
                line: 2,
                key_field: "id".into()
            }
        );
        for bad_key in ["null", "\"\"", "\"  \""] {
            let input = format!("{{\"id\":{bad_key}}}\n");
            assert!(matches!(
                rows(&input, Format::Jsonl, "id").unwrap_err(),
                IngestError::MissingKey { line: 1, .. }
            ));
        }
        assert!(matches!(
            rows("{\"id\":true}\n", Format::Jsonl, "id").unwrap_err(),
            IngestError::Malformed { line: 1, .. }
        ));
        assert_eq!(
            rows("{\"id\":1}\n{\"id\":\"1\"}\n", Format::Jsonl, "id").unwrap_err(),
            IngestError::DuplicateKey {
                line: 2,
                key: "1".into(),
                first_line: 1
            }
        );
        assert_eq!(
            collect(b"{\"id\":1}\n{\"id\":\"\xff\"}\n", Format::Jsonl, "id", 1).unwrap_err(),
            IngestError::Malformed {
                line: 2,
                message: "line is not valid UTF-8".into()
            }
        );
    }

    #[test]
    fn jsonl_line_cap() {
        let mut reader = BufReader::with_capacity(4, &b"abcdefgh\nxy\n"[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line_capped(&mut reader, &mut buf, 5).unwrap(),
            LineRead::TooLong
        ));
        let mut reader = BufReader::with_capacity(4, &b"abcdefgh\nxy"[..]);
        buf.clear();
        assert!(matches!(
            read_line_capped(&mut reader, &mut buf, 8).unwrap(),
            LineRead::Line
        ));
        assert_eq!(buf, b"abcdefgh");
        buf.clear();
        assert!(matches!(
            read_line_capped(&mut reader, &mut buf, 8).unwrap(),
            LineRead::Line
        ));
        assert_eq!(buf, b"xy");
        buf.clear();
        assert!(matches!(
            read_line_capped(&mut reader, &mut buf, 8).unwrap(),
            LineRead::Eof
        ));
    }

    #[test]
    fn overlong_records_are_refused() {
        let max = 1024;
        let run = |input: Vec<u8>, format: Format| {
            parse_limited::<_, ()>(&input[..], format, "id", 10, max, |_| Ok(()))
        };
        // An unterminated quote would otherwise swallow the whole file into one record.
        let mut csv = b"id,note\n1,a\n2,\"".to_vec();
        csv.extend(std::iter::repeat_n(b'x', 2_000_000));
        assert_eq!(
            run(csv, Format::Csv),
            Err(ParseFailure::Ingest(IngestError::Malformed {
                line: 3,
                message: format!("record is longer than {max} bytes")
            }))
        );
        // Big files with normal records are fine.
        let mut csv = b"id,note\n".to_vec();
        for i in 0..20_000 {
            csv.extend(format!("{i},{}\n", "y".repeat(100)).bytes());
        }
        assert_eq!(run(csv, Format::Csv), Ok(20_000));
        let mut jsonl = b"{\"id\":1}\n{\"id\":\"".to_vec();
        jsonl.extend(std::iter::repeat_n(b'x', 5000));
        assert_eq!(
            run(jsonl, Format::Jsonl),
            Err(ParseFailure::Ingest(IngestError::Malformed {
                line: 2,
                message: format!("line is longer than {max} bytes")
            }))
        );
    }

    #[test]
    fn io_errors_are_reported() {
        /// Yields `data`, then fails.
        struct Failing(&'static [u8]);
        impl Read for Failing {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                if self.0.is_empty() {
                    return Err(std::io::Error::other("disk on fire"));
                }
                let n = self.0.len().min(buf.len());
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        for (format, data) in [
            (Format::Csv, &b"id\n1\n2\n"[..]),
            (Format::Jsonl, &b"{\"id\":1}\n{\"id\":2}\n"[..]),
            (Format::Csv, &b""[..]),
        ] {
            let res = parse::<_, ()>(Failing(data), format, "id", 10, |_| Ok(()));
            assert_eq!(
                res,
                Err(ParseFailure::Ingest(IngestError::Io("disk on fire".into())))
            );
        }
    }

    #[test]
    fn key_set_is_exact() {
        let mut set = KeySet::new();
        assert!(set.is_empty());
        assert_eq!(set.insert("a", 1), None);
        assert_eq!(set.insert("b", 2), None);
        assert_eq!(set.insert("", 3), None);
        assert_eq!(set.insert("a", 4), Some(1));
        assert_eq!(set.insert("", 5), Some(3));
        assert_eq!(set.len(), 3);
        // Force the collision path: a second key whose hash is already indexed.
        let h = set.hasher.hash_one("zzz");
        set.index.insert(h, 0);
        assert_eq!(set.insert("zzz", 6), None);
        assert_eq!(set.insert("zzz", 7), Some(6));
        assert_eq!(set.insert("a", 8), Some(1));
        assert_eq!(set.len(), 4);
    }

    #[test]
    fn format_serde() {
        assert_eq!(serde_json::to_string(&Format::Csv).unwrap(), "\"csv\"");
        assert_eq!(
            serde_json::from_str::<Format>("\"jsonl\"").unwrap(),
            Format::Jsonl
        );
    }
}
