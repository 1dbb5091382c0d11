//! Streaming ingestion of data-source files (CSV or JSON Lines) into entity items.
//!
//! [`parse`] reads from any re-openable [`std::io::Read`], turns every record into a [`Row`] (its line number,
//! its primary key and its fields as a JSON object) and hands the rows to a sink in batches, so a
//! file is never held in memory as a whole. It stops at the first problem and reports it with the
//! physical line number where the offending record starts.
//!
//! Choices worth knowing:
//! * **Empty CSV cells are omitted** from the item (no `null`): a missing value and an empty cell
//!   look the same to every consumer (filters, measures, unification's "skip empty").
//! * A column has one type across all its items: the input is read twice, the first pass decides
//!   each column's type with [`super::column_types`], the second converts the values (so a
//!   postcode column with `4129` and `0812` is text in every item). The CSV key column is always
//!   kept as its raw text (an identifier such as `00123` must not become a number). JSON Lines
//!   values are kept as written, except in a field with more than one JSON kind, whose values
//!   become their JSON text.
//! * A file with a CSV header and no data rows is valid and yields 0 rows; a file with no content
//!   at all (or only blank lines / a byte-order mark) is [`IngestError::Empty`].
//! * A UTF-8 byte-order mark at the start of the file is skipped.
//! * Duplicate keys are detected with [`KeySet`], which keeps every key once in a single string
//!   arena plus a 64-bit keyed hash table (about 40–50 bytes per key plus the key's text, i.e. well
//!   under 100 MB for 1,000,000 keys); a hash collision is resolved by comparing the stored texts,
//!   so detection is exact.
//! * A JSON Lines line or a CSV record is limited to [`MAX_LINE_BYTES`] so a file without line
//!   breaks (or with an unterminated quote) cannot exhaust memory.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::{BufRead, BufReader, Read};

use serde_json::{Map, Value};

use super::column_types::{ColumnType, JsonColumn, TextColumn};

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
    #[error(
        "line {line}: the key '{key}' cannot be addressed in a URL ('.' and '..' are path steps)"
    )]
    UnaddressableKey { line: u64, key: String },
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

/// A key that a URL path cannot carry: `.` and `..` are path steps (even encoded, clients and
/// proxies resolve them).
pub fn is_path_step(key: &str) -> bool {
    matches!(key.trim(), "." | "..")
}

/// At most this many CSV columns or fields of a JSON-lines object, and fields of an item or an
/// entity (the README documents it): the schema, rewritten on every write, stays bounded.
pub const MAX_COLUMNS: usize = 10_000;

/// Reads the input twice: the first pass decides every column's type (see
/// [`super::column_types`]), the second converts the values and streams rows in batches of
/// `batch_size` (0 is treated as 1), calling `sink` for each batch; never holds the whole input.
/// `open` is called once per pass and must give the same bytes each time. Stops at the first
/// error (batches already handed to the sink stay handed; callers that need all-or-nothing
/// should apply the batches in one transaction). Returns the number of rows.
pub fn parse<R: Read, E>(
    open: impl FnMut() -> std::io::Result<R>,
    format: Format,
    key_field: &str,
    batch_size: usize,
    sink: impl FnMut(Vec<Row>) -> Result<(), E>,
) -> Result<u64, ParseFailure<E>> {
    parse_limited(open, format, key_field, batch_size, MAX_LINE_BYTES, sink)
}

fn parse_limited<R: Read, E>(
    mut open: impl FnMut() -> std::io::Result<R>,
    format: Format,
    key_field: &str,
    batch_size: usize,
    max_record: usize,
    sink: impl FnMut(Vec<Row>) -> Result<(), E>,
) -> Result<u64, ParseFailure<E>> {
    let mut reopen = || {
        let reader = open().map_err(|e| IngestError::Io(e.to_string()))?;
        skip_bom(reader)
    };
    let first = reopen()?;
    let mut batcher = Batcher::new(batch_size, sink);
    match format {
        Format::Csv => {
            let (headers, types) = csv_column_types(first, key_field, max_record)?;
            parse_csv(
                reopen()?,
                key_field,
                max_record,
                &headers,
                &types,
                &mut batcher,
            )?;
        }
        Format::Jsonl => {
            let mixed = jsonl_mixed_fields(first, key_field, max_record)?;
            parse_jsonl(reopen()?, key_field, max_record, &mixed, &mut batcher)?;
        }
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

/// A CSV reader that checks the header and every record (NUL, key) and knows physical lines.
struct CsvRecords<R> {
    rdr: csv::Reader<LineTracker<R>>,
    headers: Vec<String>,
    key_index: usize,
    key_field: String,
}

impl<R: Read> CsvRecords<R> {
    fn new(reader: R, key_field: &str, max_record: usize) -> Result<Self, IngestError> {
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
            Err(e) => return Err(csv_error(e, &mut rdr)),
        };
        if headers.is_empty() {
            return Err(IngestError::Empty);
        }
        let header_line = rdr.get_mut().line_at(header_pos);
        if headers.len() > MAX_COLUMNS {
            return Err(malformed(
                header_line,
                format!(
                    "the header has {} columns; at most {MAX_COLUMNS} are supported",
                    headers.len()
                ),
            ));
        }
        let mut seen = std::collections::HashSet::with_capacity(headers.len());
        for (i, name) in headers.iter().enumerate() {
            if name.is_empty() {
                return Err(malformed(
                    header_line,
                    format!("header column {} has no name", i + 1),
                ));
            }
            if !seen.insert(name.as_str()) {
                return Err(malformed(
                    header_line,
                    format!("header column '{name}' appears twice"),
                ));
            }
            if name.contains('\0') {
                return Err(malformed(header_line, NUL_REFUSED.to_owned()));
            }
        }
        let key_index = headers
            .iter()
            .position(|h| h == key_field)
            .ok_or_else(|| IngestError::KeyColumnMissing(key_field.to_owned()))?;
        Ok(CsvRecords {
            rdr,
            headers,
            key_index,
            key_field: key_field.to_owned(),
        })
    }

    /// Reads the next record into `record`; its physical line, or `None` at the end.
    fn next(&mut self, record: &mut csv::StringRecord) -> Result<Option<u64>, IngestError> {
        match self.rdr.read_record(record) {
            Ok(false) => return Ok(None),
            Ok(true) => {}
            Err(e) => return Err(csv_error(e, &mut self.rdr)),
        }
        let byte = record.position().map_or(u64::MAX, csv::Position::byte);
        let line = self.rdr.get_mut().line_at(byte);
        if record.as_slice().contains('\0') {
            return Err(malformed(line, NUL_REFUSED.to_owned()));
        }
        let key = &record[self.key_index];
        if key.trim().is_empty() {
            return Err(IngestError::MissingKey {
                line,
                key_field: self.key_field.clone(),
            });
        }
        if is_path_step(key) {
            return Err(IngestError::UnaddressableKey {
                line,
                key: key.to_owned(),
            });
        }
        Ok(Some(line))
    }
}

/// Pass 1 over a CSV input: the header and each column's type (`None`: no non-empty cell).
/// The key column is always text.
fn csv_column_types<R: Read>(
    reader: R,
    key_field: &str,
    max_record: usize,
) -> Result<(Vec<String>, Vec<Option<ColumnType>>), IngestError> {
    let mut records = CsvRecords::new(reader, key_field, max_record)?;
    let key_index = records.key_index;
    let mut columns = vec![TextColumn::new(); records.headers.len()];
    let mut record = csv::StringRecord::new();
    while records.next(&mut record)?.is_some() {
        for (i, (column, cell)) in columns.iter_mut().zip(record.iter()).enumerate() {
            if i != key_index {
                column.observe(cell);
            }
        }
    }
    let mut types: Vec<Option<ColumnType>> = columns.iter().map(TextColumn::decide).collect();
    types[key_index] = Some(ColumnType::String);
    Ok((std::mem::take(&mut records.headers), types))
}

/// Pass 2 over a CSV input: rows with each cell converted by its column's type.
fn parse_csv<R: Read, E, F: FnMut(Vec<Row>) -> Result<(), E>>(
    reader: R,
    key_field: &str,
    max_record: usize,
    headers: &[String],
    types: &[Option<ColumnType>],
    batcher: &mut Batcher<F>,
) -> Result<(), ParseFailure<E>> {
    let mut records = CsvRecords::new(reader, key_field, max_record)?;
    if records.headers != headers {
        return Err(IngestError::Io(INPUT_CHANGED.into()).into());
    }
    let key_index = records.key_index;
    let mut record = csv::StringRecord::new();
    while let Some(line) = records.next(&mut record)? {
        let data: Map<String, Value> = headers
            .iter()
            .zip(record.iter())
            .zip(types)
            .filter(|((_, cell), _)| !cell.is_empty())
            .map(|((name, cell), t)| {
                let t = t.unwrap_or(ColumnType::String);
                (name.clone(), t.convert(cell))
            })
            .collect();
        batcher.push(Row {
            line,
            key: record[key_index].to_owned(),
            data,
        })?;
    }
    Ok(())
}

/// Why the second pass stopped: it did not read what the first one read.
const INPUT_CHANGED: &str = "the input changed while it was read";

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

/// A JSON Lines reader that checks every line (JSON object, NUL, key) and counts lines.
struct JsonlRecords<R> {
    reader: BufReader<R>,
    buf: Vec<u8>,
    line: u64,
    saw_content: bool,
    key_field: String,
    max_line: usize,
}

impl<R: Read> JsonlRecords<R> {
    fn new(reader: R, key_field: &str, max_line: usize) -> Self {
        JsonlRecords {
            reader: BufReader::with_capacity(BUFFER_BYTES, reader),
            buf: Vec::new(),
            line: 0,
            saw_content: false,
            key_field: key_field.to_owned(),
            max_line,
        }
    }

    /// The next record; `None` at the end ([`IngestError::Empty`] if the input had no record
    /// at all).
    fn next(&mut self) -> Result<Option<Row>, IngestError> {
        let max_line = self.max_line;
        loop {
            self.buf.clear();
            let read = read_line_capped(&mut self.reader, &mut self.buf, max_line)
                .map_err(|e| IngestError::Io(e.to_string()))?;
            self.line += 1;
            let line = self.line;
            match read {
                LineRead::Eof if self.saw_content => return Ok(None),
                LineRead::Eof => return Err(IngestError::Empty),
                LineRead::TooLong => {
                    return Err(malformed(
                        line,
                        format!("line is longer than {max_line} bytes"),
                    ))
                }
                LineRead::Line => {}
            }
            let text = std::str::from_utf8(&self.buf)
                .map_err(|_| malformed(line, "line is not valid UTF-8"))?;
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            self.saw_content = true;
            let value: Value = serde_json::from_str(text)
                .map_err(|e| malformed(line, format!("invalid JSON: {e}")))?;
            let Value::Object(data) = value else {
                return Err(malformed(
                    line,
                    format!("expected a JSON object, found {}", json_kind(&value)),
                ));
            };
            if text.contains("u0000") && has_nul_in_object(&data) {
                return Err(malformed(line, NUL_REFUSED.to_owned()));
            }
            if data.len() > MAX_COLUMNS {
                return Err(malformed(
                    line,
                    format!(
                        "the object has {} fields; at most {MAX_COLUMNS} are supported",
                        data.len()
                    ),
                ));
            }
            let key_field = &self.key_field;
            let key = match data.get(key_field) {
                Some(Value::String(s)) if is_path_step(s) => {
                    return Err(IngestError::UnaddressableKey {
                        line,
                        key: s.clone(),
                    })
                }
                Some(Value::String(s)) if !s.trim().is_empty() => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                None | Some(Value::Null) | Some(Value::String(_)) => {
                    return Err(IngestError::MissingKey {
                        line,
                        key_field: key_field.clone(),
                    })
                }
                Some(other) => {
                    return Err(malformed(
                        line,
                        format!(
                            "key field '{key_field}' must be a string or a number, found {}",
                            json_kind(other)
                        ),
                    ))
                }
            };
            return Ok(Some(Row { line, key, data }));
        }
    }
}

/// Pass 1 over a JSON Lines input: the fields whose values have more than one JSON kind.
fn jsonl_mixed_fields<R: Read>(
    reader: R,
    key_field: &str,
    max_line: usize,
) -> Result<Vec<String>, IngestError> {
    let mut records = JsonlRecords::new(reader, key_field, max_line);
    let mut columns: HashMap<String, JsonColumn> = HashMap::new();
    while let Some(row) = records.next()? {
        for (name, value) in &row.data {
            match columns.get_mut(name) {
                Some(column) => column.observe(value),
                None => {
                    let mut column = JsonColumn::default();
                    column.observe(value);
                    columns.insert(name.clone(), column);
                }
            }
        }
    }
    let mut mixed: Vec<String> = columns
        .into_iter()
        .filter(|(_, c)| c.is_mixed())
        .map(|(name, _)| name)
        .collect();
    mixed.sort();
    Ok(mixed)
}

/// Pass 2 over a JSON Lines input: rows with the values of `mixed` fields turned into text.
fn parse_jsonl<R: Read, E, F: FnMut(Vec<Row>) -> Result<(), E>>(
    reader: R,
    key_field: &str,
    max_line: usize,
    mixed: &[String],
    batcher: &mut Batcher<F>,
) -> Result<(), ParseFailure<E>> {
    let mut records = JsonlRecords::new(reader, key_field, max_line);
    while let Some(mut row) = records.next()? {
        for name in mixed {
            if let Some(value) = row.data.get_mut(name) {
                *value = JsonColumn::to_text(std::mem::take(value));
            }
        }
        batcher.push(row)?;
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
        let n = parse::<_, ()>(
            || Ok(input),
            format,
            key,
            batch,
            |b| {
                batches.push(b);
                Ok(())
            },
        )
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

    /// The rows of `input` and the schema the refresh states for them.
    fn typed(input: &str, format: Format, key: &str) -> (Vec<Row>, Value) {
        let rows = rows(input, format, key).unwrap();
        let mut schema = crate::engine::schema_inference::SchemaBuilder::with_key(key);
        for row in &rows {
            schema.observe(&row.data);
        }
        (rows, schema.finish())
    }

    fn column<'a>(rows: &'a [Row], field: &str) -> Vec<&'a Value> {
        rows.iter().filter_map(|r| r.data.get(field)).collect()
    }

    #[test]
    fn csv_postcodes_are_one_string_column() {
        let (rows, schema) = typed("id,postcode\n1,4129\n2,0812\n3,\n", Format::Csv, "id");
        assert_eq!(column(&rows, "postcode"), [&json!("4129"), &json!("0812")]);
        assert!(!rows[2].data.contains_key("postcode"));
        assert_eq!(
            schema["properties"]["postcode"],
            json!({"type":"string","x-ms-summary":"postcode","description":"The postcode field."})
        );
    }

    #[test]
    fn csv_columns_are_typed_as_a_whole() {
        let input = "id,n,x,b,d,t,w,e\n\
                     1,4129,1,true,2024-01-31,2024-01-31T10:00:00Z,2024-01-31,\n\
                     2,-812,2.25,false,2023-12-01,2024-06-01T08:30:00.1234567+02:00,soon,\n\
                     3,0,,,2024-02-29,,2024-03-01,\n";
        let (rows, schema) = typed(input, Format::Csv, "id");
        let t = |f: &str| schema["properties"][f].clone();
        assert_eq!(column(&rows, "n"), [&json!(4129), &json!(-812), &json!(0)]);
        assert_eq!(t("n")["type"], "integer");
        assert_eq!(column(&rows, "x"), [&json!(1), &json!(2.25)]);
        assert_eq!(t("x")["type"], "number");
        assert_eq!(column(&rows, "b"), [&json!(true), &json!(false)]);
        assert_eq!(t("b")["type"], "boolean");
        assert_eq!(
            column(&rows, "d"),
            [
                &json!("2024-01-31"),
                &json!("2023-12-01"),
                &json!("2024-02-29")
            ]
        );
        assert_eq!(
            t("d"),
            json!({"type":"string","format":"date","x-ms-summary":"d","description":"The d field."})
        );
        assert_eq!(
            column(&rows, "t"),
            [
                &json!("2024-01-31T10:00:00Z"),
                &json!("2024-06-01T08:30:00.1234567+02:00")
            ]
        );
        assert_eq!(t("t")["type"], "string");
        assert_eq!(t("t")["format"], "date-time");
        assert_eq!(
            column(&rows, "w"),
            [&json!("2024-01-31"), &json!("soon"), &json!("2024-03-01")]
        );
        assert_eq!(t("w")["type"], "string");
        assert!(t("w").get("format").is_none());
        // No non-empty cell: the field is omitted and gets no property.
        assert!(rows.iter().all(|r| !r.data.contains_key("e")));
        assert!(t("e").is_null());
    }

    #[test]
    fn csv_key_column_stays_text() {
        let (rows, schema) = typed("d,n\n2024-01-31,1\n7,2\n", Format::Csv, "d");
        assert_eq!(column(&rows, "d"), [&json!("2024-01-31"), &json!("7")]);
        assert_eq!(schema["properties"]["d"]["type"], "string");
        let (rows, schema) = typed("d,n\n2024-01-31,1\n", Format::Csv, "d");
        assert_eq!(rows[0].data["d"], "2024-01-31");
        assert!(schema["properties"]["d"].get("format").is_none());
    }

    #[test]
    fn jsonl_mixed_kinds_become_text() {
        let input = concat!(
            r#"{"id":"a","m":12,"k":1,"s":"2024-01-31","o":{"x":1},"z":null}"#,
            "\n",
            r#"{"id":"b","m":"x","k":2.5,"s":"2024-02-01","o":[1,"y"],"z":1}"#,
            "\n",
            r#"{"id":"c","m":true,"k":null,"o":"t","z":null}"#,
            "\n",
            r#"{"id":"d","m":null}"#,
        );
        let (rows, schema) = typed(input, Format::Jsonl, "id");
        let t = |f: &str| schema["properties"][f].clone();
        assert_eq!(
            column(&rows, "m"),
            [&json!("12"), &json!("x"), &json!("true"), &json!(null)]
        );
        assert_eq!(t("m")["type"], "string");
        assert_eq!(t("m")["x-nullable"], true);
        assert_eq!(column(&rows, "k"), [&json!(1), &json!(2.5), &json!(null)]);
        assert_eq!(t("k")["type"], "number");
        assert_eq!(
            column(&rows, "o"),
            [&json!(r#"{"x":1}"#), &json!(r#"[1,"y"]"#), &json!("t")]
        );
        assert_eq!(t("o")["type"], "string");
        assert_eq!(column(&rows, "z"), [&json!(null), &json!(1), &json!(null)]);
        assert_eq!(t("z")["type"], "integer");
        assert_eq!(t("s")["format"], "date");
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
    fn keys_that_are_path_steps_are_refused() {
        for (input, format) in [
            ("id,x\n1,a\n..,b\n", Format::Csv),
            ("{\"id\":\"1\"}\n{\"id\":\".\"}\n", Format::Jsonl),
        ] {
            let e = rows(input, format, "id").unwrap_err();
            assert!(matches!(e, IngestError::UnaddressableKey { .. }), "{e}");
            assert!(e.to_string().contains("cannot be addressed"), "{e}");
        }
    }

    /// The header check is linear and bounded: 10,000 columns are read, one more is refused
    /// with the limit, and a duplicate among many columns is still found.
    #[test]
    fn csv_column_limit() {
        let header = |n: usize| {
            let mut h: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
            h[0] = "id".into();
            h.join(",")
        };
        let at_limit = format!(
            "{}\n1{}\n",
            header(MAX_COLUMNS),
            ",x".repeat(MAX_COLUMNS - 1)
        );
        assert_eq!(rows(&at_limit, Format::Csv, "id").unwrap().len(), 1);
        let over = format!("{}\n", header(MAX_COLUMNS + 1));
        let e = rows(&over, Format::Csv, "id").unwrap_err();
        assert!(
            e.to_string().contains("10001 columns; at most 10000"),
            "{e}"
        );
        let duplicate = format!("{},c5\n", header(MAX_COLUMNS - 1));
        let e = rows(&duplicate, Format::Csv, "id").unwrap_err();
        assert!(e.to_string().contains("'c5' appears twice"), "{e}");
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
        let res = parse(
            || Ok(input.as_bytes()),
            Format::Csv,
            "id",
            3,
            |_| {
                calls += 1;
                if calls == 2 {
                    Err("store full")
                } else {
                    Ok(())
                }
            },
        );
        assert_eq!(res, Err(ParseFailure::Sink("store full")));
        assert_eq!(calls, 2);
    }

    #[test]
    fn parse_stops_at_first_error_after_sending_earlier_batches() {
        let input = "id\n1\n2\n3\n2\n4\n";
        let mut seen = Vec::new();
        let res = parse::<_, ()>(
            || Ok(input.as_bytes()),
            Format::Csv,
            "id",
            2,
            |b| {
                seen.extend(b.into_iter().map(|r| r.key));
                Ok(())
            },
        );
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
        // The key field has strings and numbers, so its numbers become text.
        assert_eq!(rows[1].data, obj(json!({"id":"7","n":2.5})));
        assert_eq!(rows[2].data, obj(json!({"id":"1.5"})));
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
            parse_limited::<_, ()>(|| Ok(&input[..]), format, "id", 10, max, |_| Ok(()))
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
            let res = parse::<_, ()>(|| Ok(Failing(data)), format, "id", 10, |_| Ok(()));
            assert_eq!(
                res,
                Err(ParseFailure::Ingest(IngestError::Io("disk on fire".into())))
            );
        }
    }

    #[test]
    fn the_input_is_opened_once_per_pass() {
        let reads = std::cell::Cell::new(0);
        let inputs: [&[u8]; 2] = [b"id,n\n1,5\n2,6\n", b"id,n\n1,5\n2,x\n"];
        let mut rows = Vec::new();
        let n = parse::<_, ()>(
            || {
                reads.set(reads.get() + 1);
                Ok(inputs[reads.get() - 1])
            },
            Format::Csv,
            "id",
            10,
            |b| {
                rows.extend(b);
                Ok(())
            },
        );
        assert_eq!((n, reads.get()), (Ok(2), 2));
        // A cell the first pass did not see cannot break the column: it is kept as text.
        assert_eq!(column(&rows, "n"), [&json!(5), &json!("x")]);

        let changed: [&[u8]; 2] = [b"id,n\n1,5\n", b"id,m\n1,5\n"];
        let mut call = 0;
        let res = parse::<_, ()>(
            || {
                call += 1;
                Ok(changed[call - 1])
            },
            Format::Csv,
            "id",
            10,
            |_| Ok(()),
        );
        assert_eq!(
            res,
            Err(ParseFailure::Ingest(IngestError::Io(INPUT_CHANGED.into())))
        );
        let res = parse::<&[u8], ()>(
            || Err(std::io::Error::other("gone")),
            Format::Jsonl,
            "id",
            10,
            |_| Ok(()),
        );
        assert_eq!(
            res,
            Err(ParseFailure::Ingest(IngestError::Io("gone".into())))
        );
    }

    #[test]
    fn the_first_pass_reports_errors_before_any_batch() {
        let mut batches = 0;
        let res = parse::<_, ()>(
            || Ok(&b"id,n\n1,a\n2,b\n3\n"[..]),
            Format::Csv,
            "id",
            1,
            |_| {
                batches += 1;
                Ok(())
            },
        );
        assert!(matches!(
            res,
            Err(ParseFailure::Ingest(IngestError::Malformed { line: 4, .. }))
        ));
        assert_eq!(batches, 0);
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
