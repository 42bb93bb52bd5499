//! Streaming reader of agent rows for `batch`: owns the *file format* of agent
//! lists (encoding, header detection and mapping, cell syntax → [`AgentInput`])
//! and the error reports that point at a file, physical line and column.
//! Field values are NOT validated here (email syntax, E.164, lengths… are
//! `agent::validate`'s job); only syntax that the format itself defines is
//! (yes/no, integers, `|` lists, tag pairs, phone-type words).
//!
//! # Accepted formats
//!
//! The format is decided from the content (and the file extension for JSON Lines):
//!
//! * **JSON Lines** — extension `.jsonl` / `.ndjson`, or the first non-blank
//!   byte is `{`. One object per line, keys = the native field names below;
//!   `security_profiles` is an array of strings, `tags` an object of strings,
//!   `auto_accept` a boolean, `acw_timeout` an integer, other fields strings
//!   (`null` = absent). `email`, `first_name`, `last_name` are required keys.
//!   Unknown keys are errors. Blank lines are skipped.
//! * **Console CSV** — the Amazon Connect console bulk-upload template, as
//!   downloaded (both generations: CONNECT_MANAGED with `email address` and
//!   `password`, and SAML with neither). Chosen when a header cell is
//!   `first name` (with a space). Columns (case-insensitive, extra spaces ignored):
//!   `first name`, `last name`, `email address`, `secondary email address` (or
//!   `secondary email`), `mobile`, `password`, `user login` (→ `username`),
//!   `agent hierarchy` (or `UserHierarchy`; levels separated by `/`),
//!   `routing profile name`, `security_profile_name_1|security_profile_name_2`
//!   (names separated by `|`), `user_hierarchy_1|user_hierarchy_2` (levels
//!   separated by `|`, joined with `/`), `phone type (soft/desk)`
//!   (`soft`/`desk`/`SOFT_PHONE`/`DESK_PHONE`), `phone number` (→
//!   `desk_phone_number`), `soft phone auto accept (yes/no)`, `ACW timeout
//!   (seconds)`, `tags` (`key1|value1||key2|value2`). Required columns:
//!   `first name`, `last name`, and `email address` or `user login`. When the
//!   `email address` column is missing or its cell is empty and `user login`
//!   contains `@`, the email is the user login. If both hierarchy columns are
//!   present, a row may fill either (or both, if they agree).
//! * **Native CSV** — chosen when a header cell is `first_name`. Headers are
//!   the `AgentInput` field names: `email, first_name, last_name, username,
//!   routing_profile, security_profiles, hierarchy_group, phone_type,
//!   desk_phone_number, auto_accept, acw_timeout, secondary_email, mobile,
//!   directory_user_id, tags, password` (any subset in any order; `email`,
//!   `first_name`, `last_name` required). Lists are `|`-separated
//!   (`Agent|Supervisor`), tags are `key=value|key=value`, `auto_accept` is
//!   `yes`/`no`/`true`/`false`, `acw_timeout` an integer, `hierarchy_group` is
//!   passed through (name, id or `L1/L2/L3` path).
//!
//! In both CSV dialects: comma-separated only; UTF-8 with or without BOM;
//! CRLF or LF; quoted cells may hold commas and line breaks; empty cells are
//! absent values (`None` / empty list); cells are trimmed, except `password`;
//! rows whose cells are all blank are skipped; columns with a blank header
//! are ignored (their cells must be blank); missing trailing cells are blank.
//!
//! # Errors
//!
//! Every [`InputError`] names the file, the physical 1-based line where the
//! record starts, the column as written in the header, the value (quoted,
//! truncated to [`QUOTE_MAX_CHARS`] characters; a password is always
//! `<redacted>`) and the rule. File-level problems (unreadable, empty,
//! unknown / duplicate / missing columns…) come from [`Reader::open`]; row
//! problems come from the iterator, all errors of one row at once, and reading
//! goes on with the next row so the caller can report a whole file in one go.
//! A file with a header and no rows yields zero rows (not an error). A row
//! with more non-blank cells than the header (an unquoted comma) gets that
//! single error, since its cells are shifted. An unclosed double quote, a
//! record above [`MAX_RECORD_BYTES`] or an I/O error is yielded once as an
//! error and ends the iteration. [`Row::column_for`] maps a field back to the
//! column it came from, for reporting later validation errors.
//!
//! Memory is bounded: rows are read one at a time; a cell above
//! [`MAX_CELL_BYTES`] is an error, a CSV record above [`MAX_RECORD_BYTES`]
//! (typically an unclosed quote) stops reading, and a JSON line above
//! [`MAX_JSON_LINE_BYTES`] is an error without being held in memory.
//!
//! [`neutralize_csv_cell`] is for the other direction: cells of CSV reports.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use crate::agent::{AgentInput, PhoneType, Secret};

mod columns;
use columns::Kind;

/// Largest accepted cell (or JSON string), in bytes.
pub const MAX_CELL_BYTES: usize = 64 * 1024;
/// Largest CSV record; past it reading stops (an unclosed quote swallows the file).
pub const MAX_RECORD_BYTES: u64 = 16 * 1024 * 1024;
/// Largest JSON Lines line; a longer line is an error and is skipped unread.
pub const MAX_JSON_LINE_BYTES: usize = 2 * 1024 * 1024;
/// Values quoted in errors are cut to this many characters (then `…`).
pub const QUOTE_MAX_CHARS: usize = 60;

/// The `AgentInput` field names, in declaration order (also the native headers).
pub const FIELDS: [&str; 16] = [
    "email",
    "first_name",
    "last_name",
    "username",
    "routing_profile",
    "security_profiles",
    "hierarchy_group",
    "phone_type",
    "desk_phone_number",
    "auto_accept",
    "acw_timeout",
    "secondary_email",
    "mobile",
    "directory_user_id",
    "tags",
    "password",
];

fn field_index(field: &str) -> Option<usize> {
    FIELDS.iter().position(|f| *f == field)
}

/// The file's format, decided by [`Reader::open`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// The Amazon Connect console bulk-upload CSV template.
    Console,
    /// CSV with the snake_case `AgentInput` field names as headers.
    Native,
    /// One JSON object per line.
    JsonLines,
}

/// One problem in an input file. `line` is the 1-based physical line where the
/// record starts (0 when the problem has no line, e.g. the file cannot be opened).
/// `column` is the header as written (the key for JSON Lines).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {message}", at_line(.line))]
pub struct InputError {
    pub file: String,
    pub line: u64,
    pub column: Option<String>,
    pub message: String,
}

fn at_line(line: &u64) -> String {
    if *line == 0 {
        String::new()
    } else {
        format!(":{line}")
    }
}

/// A header column of a CSV file, as mapped by [`Reader::open`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Column {
    /// 0-based position in the header.
    pub index: usize,
    /// The header as written (trimmed).
    pub header: String,
    /// The `AgentInput` field it fills (one of [`FIELDS`]).
    pub field: &'static str,
}

/// One agent read from the file.
#[derive(Clone, Debug)]
pub struct Row {
    /// Physical line where the record starts (1-based).
    pub line: u64,
    pub input: AgentInput,
    sources: Sources,
}

impl Row {
    /// The column (header as written; the key for JSON Lines) that gave
    /// `field` its value in this row, for reporting later validation errors.
    /// Per row because `email` may come from `user login` and
    /// `hierarchy_group` from either console hierarchy column.
    pub fn column_for(&self, field: &str) -> Option<&str> {
        self.sources.get(field)
    }
}

/// Field → column, shared headers so a row costs one `Arc` clone.
#[derive(Clone, Debug)]
struct Sources {
    headers: Arc<[String]>,
    by_field: [Option<u16>; FIELDS.len()],
}

impl Sources {
    fn get(&self, field: &str) -> Option<&str> {
        let idx = self.by_field[field_index(field)?]?;
        Some(self.headers[usize::from(idx)].as_str())
    }
    fn set(&mut self, field: &str, column: usize) {
        if let (Some(f), Ok(c)) = (field_index(field), u16::try_from(column)) {
            self.by_field[f] = Some(c);
        }
    }
}

/// Streaming reader of agent rows; see the module doc.
pub struct Reader {
    file: String,
    format: Format,
    columns: Vec<Column>,
    sources: Sources,
    inner: Inner,
}

enum Inner {
    Csv(Box<CsvState>),
    Json(Box<JsonState>),
    Done,
}

impl std::fmt::Debug for Reader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reader")
            .field("file", &self.file)
            .field("format", &self.format)
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl Reader {
    /// Opens `path`, detects its format and reads (only) its header.
    /// Errors: cannot open, empty file, encoding, header problems (all at once).
    pub fn open(path: impl AsRef<Path>) -> Result<Reader, Vec<InputError>> {
        let path = path.as_ref();
        let name = path.display().to_string();
        let file = File::open(path).map_err(|e| {
            vec![InputError {
                file: name.clone(),
                line: 0,
                column: None,
                message: format!("cannot open the file: {e}"),
            }]
        })?;
        let json_ext = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("ndjson"));
        Self::build(name, Box::new(file), json_ext)
    }

    /// Like [`Reader::open`] on any byte source; `name` is used in errors.
    /// The format is detected from the content only.
    pub fn from_reader(
        name: impl Into<String>,
        source: impl Read + Send + 'static,
    ) -> Result<Reader, Vec<InputError>> {
        Self::build(name.into(), Box::new(source), false)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The file name used in errors.
    pub fn file_name(&self) -> &str {
        &self.file
    }

    /// The line of the CSV header row (`None` for JSON Lines).
    pub fn header_line(&self) -> Option<u64> {
        match &self.inner {
            Inner::Csv(state) => Some(state.header.line),
            _ => None,
        }
    }

    /// The mapped CSV columns in header order (empty for JSON Lines).
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// The header as written (the key for JSON Lines) that fills `field`, or
    /// `None`. For a console file without `email address`, `email` maps to
    /// `user login`. Prefer [`Row::column_for`], which is exact per row.
    pub fn column_for(&self, field: &str) -> Option<&str> {
        self.sources.get(field)
    }

    fn build(
        file: String,
        mut source: Box<dyn Read + Send>,
        json_by_name: bool,
    ) -> Result<Reader, Vec<InputError>> {
        let file_err = |line: u64, message: String| InputError {
            file: file.clone(),
            line,
            column: None,
            message,
        };
        let sniffed =
            sniff(&mut source).map_err(|e| vec![file_err(0, format!("read error: {e}"))])?;
        let (prefix, first) = match sniffed {
            Sniffed::Utf16 => {
                return Err(vec![file_err(
                    1,
                    "the file is UTF-16 encoded; save it as \"CSV UTF-8 (Comma delimited)\"".into(),
                )])
            }
            Sniffed::Empty => return Err(vec![file_err(0, "the file is empty".into())]),
            Sniffed::Data { prefix, first } => (prefix, first),
        };
        let stream: Box<dyn Read + Send> = Box::new(Cursor::new(prefix).chain(source));
        if json_by_name || first == b'{' {
            let headers: Arc<[String]> = FIELDS.iter().map(|f| f.to_string()).collect();
            let mut by_field = [None; FIELDS.len()];
            for (i, slot) in by_field.iter_mut().enumerate() {
                *slot = u16::try_from(i).ok();
            }
            return Ok(Reader {
                file,
                format: Format::JsonLines,
                columns: Vec::new(),
                sources: Sources { headers, by_field },
                inner: Inner::Json(Box::new(JsonState {
                    src: BufReader::new(stream),
                    line: 0,
                    buf: Vec::new(),
                })),
            });
        }
        let state = CsvState::open(&file, stream)?;
        let format = state.header.format;
        let columns = state.header.columns();
        let sources = state.header.sources.clone();
        Ok(Reader {
            file,
            format,
            columns,
            sources,
            inner: Inner::Csv(Box::new(state)),
        })
    }
}

impl Iterator for Reader {
    type Item = Result<Row, Vec<InputError>>;

    fn next(&mut self) -> Option<Self::Item> {
        let step = match &mut self.inner {
            Inner::Csv(state) => state.next_row(&self.file),
            Inner::Json(state) => state.next_row(&self.file, &self.sources),
            Inner::Done => return None,
        };
        match step {
            Step::Row(r) => Some(r),
            Step::Fatal(e) => {
                self.inner = Inner::Done;
                Some(Err(vec![e]))
            }
            Step::End => {
                self.inner = Inner::Done;
                None
            }
        }
    }
}

impl std::iter::FusedIterator for Reader {}

// Moved once per row, never stored: boxing the row would only add an allocation.
#[allow(clippy::large_enum_variant)]
enum Step {
    Row(Result<Row, Vec<InputError>>),
    Fatal(InputError),
    End,
}

// ---------------------------------------------------------------------------
// Sniffing: BOM, UTF-16, empty, first non-blank byte
// ---------------------------------------------------------------------------

enum Sniffed {
    Empty,
    Utf16,
    /// `prefix` = bytes read so far (BOM removed); `first` = first non-blank byte.
    Data {
        prefix: Vec<u8>,
        first: u8,
    },
}

/// Reads until the first non-whitespace byte (at most 64 KiB of leading blanks).
fn sniff(source: &mut dyn Read) -> io::Result<Sniffed> {
    let mut prefix = Vec::new();
    let mut chunk = [0u8; 4096];
    let mut bom_checked = false;
    loop {
        let n = match source.read(&mut chunk) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        prefix.extend_from_slice(&chunk[..n]);
        if !bom_checked && (prefix.len() >= 3 || n == 0) {
            bom_checked = true;
            if prefix.starts_with(&[0xEF, 0xBB, 0xBF]) {
                prefix.drain(..3);
            } else if prefix.starts_with(&[0xFF, 0xFE]) || prefix.starts_with(&[0xFE, 0xFF]) {
                return Ok(Sniffed::Utf16);
            }
        }
        if bom_checked {
            if let Some(&first) = prefix.iter().find(|b| !b.is_ascii_whitespace()) {
                return Ok(Sniffed::Data { prefix, first });
            }
            if prefix.len() > 64 * 1024 {
                return Ok(Sniffed::Data {
                    prefix,
                    first: b' ',
                });
            }
        }
        if n == 0 {
            return Ok(Sniffed::Empty);
        }
    }
}

// ---------------------------------------------------------------------------
// Quoting values in errors
// ---------------------------------------------------------------------------

/// `{:?}` of `s`, cut to [`QUOTE_MAX_CHARS`] characters plus `…` and the size.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_MAX_CHARS) {
        None => format!("{s:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &s[..cut], s.len()),
    }
}

/// Like [`quote`] for bytes that may be huge or not UTF-8: only a prefix is decoded.
fn quote_bytes(b: &[u8]) -> String {
    let head = &b[..b.len().min(QUOTE_MAX_CHARS * 4)];
    let text = String::from_utf8_lossy(head);
    match text.char_indices().nth(QUOTE_MAX_CHARS) {
        None if head.len() == b.len() => format!("{text:?}"),
        None => format!("{text:?}… ({} bytes)", b.len()),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &text[..cut], b.len()),
    }
}

const REDACTED: &str = "<redacted>";

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

/// Raised by [`Limited`] when one record grows past [`MAX_RECORD_BYTES`].
#[derive(Debug)]
struct RecordTooLarge;
impl std::fmt::Display for RecordTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "record larger than {MAX_RECORD_BYTES} bytes")
    }
}
impl std::error::Error for RecordTooLarge {}

/// Counts bytes handed to the csv parser and fails once the current record
/// (which starts at `record_start`) exceeds [`MAX_RECORD_BYTES`], so an
/// unclosed quote cannot pull a whole multi-GB file into one record.
/// It also notes when the input is exhausted (see [`read_record`]).
struct Limited {
    inner: Box<dyn Read + Send>,
    read: u64,
    record_start: u64,
    eof: bool,
}

impl Read for Limited {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.read.saturating_sub(self.record_start) > MAX_RECORD_BYTES {
            return Err(io::Error::other(RecordTooLarge));
        }
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.eof |= n == 0 && !buf.is_empty();
        Ok(n)
    }
}

struct Header {
    format: Format,
    line: u64,
    /// Trimmed header text per column, shared with every row's [`Sources`].
    written: Arc<[String]>,
    normalized: Vec<String>,
    kinds: Vec<Option<Kind>>,
    /// Default field → column mapping (the first column of each field).
    sources: Sources,
}

impl Header {
    fn columns(&self) -> Vec<Column> {
        self.kinds
            .iter()
            .enumerate()
            .filter_map(|(index, k)| {
                k.map(|k| Column {
                    index,
                    header: self.written[index].clone(),
                    field: k.field(),
                })
            })
            .collect()
    }
}

struct CsvState {
    rdr: csv::Reader<Limited>,
    record: csv::ByteRecord,
    header: Header,
}

/// Reads the next record and returns the physical line where it starts;
/// `Ok(None)` at the end. An error stops reading.
///
/// `csv::Position` of a record is where the previous one ended (before skipped
/// blank lines and, with CRLF, before the LF), so the start line is counted
/// back from the end: '\n' is the only terminator and one is appended to the
/// data, so every record ends by consuming exactly one '\n' and its other
/// '\n's are inside quoted cells. A record that instead ends at end of input
/// swallowed that final '\n' in a quoted cell: a double quote is not closed.
fn read_record(
    rdr: &mut csv::Reader<Limited>,
    record: &mut csv::ByteRecord,
    file: &str,
) -> Result<Option<u64>, InputError> {
    let before = rdr.position().line();
    match rdr.read_byte_record(record) {
        Ok(false) => return Ok(None),
        Ok(true) => {}
        Err(e) => return Err(csv_fatal(file, before, e)),
    }
    let (end_line, end_byte) = (rdr.position().line(), rdr.position().byte());
    let limited = rdr.get_mut();
    limited.record_start = end_byte;
    let inner = record
        .iter()
        .map(|cell| cell.iter().filter(|&&b| b == b'\n').count() as u64)
        .sum::<u64>();
    if limited.eof {
        return Err(InputError {
            file: file.to_string(),
            line: end_line.saturating_sub(inner).max(1),
            column: None,
            message: "a double quote opened in this record is never closed (the rest of the \
                      file was read as one cell); reading stopped"
                .into(),
        });
    }
    Ok(Some(end_line.saturating_sub(1 + inner).max(1)))
}

/// Cell `i` (blank when the row is short), without the CR of a CRLF ending.
fn cell_bytes(record: &csv::ByteRecord, i: usize) -> &[u8] {
    let raw = record.get(i).unwrap_or(b"");
    if i + 1 == record.len() {
        raw.strip_suffix(b"\r").unwrap_or(raw)
    } else {
        raw
    }
}

fn is_blank(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_whitespace)
}

fn record_is_blank(r: &csv::ByteRecord) -> bool {
    r.iter().all(is_blank)
}

/// Number of cells up to and including the last non-blank one.
fn used_width(cells: impl DoubleEndedIterator<Item = bool> + ExactSizeIterator) -> usize {
    let n = cells.len();
    n - cells.rev().take_while(|blank| *blank).count()
}

impl CsvState {
    fn open(file: &str, stream: Box<dyn Read + Send>) -> Result<CsvState, Vec<InputError>> {
        // A final '\n' so that every record ends with one (see `read_record`).
        let limited = Limited {
            inner: Box::new(stream.chain(Cursor::new(b"\n"))),
            read: 0,
            record_start: 0,
            eof: false,
        };
        let mut rdr = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            // '\n' only, so that a record always consumes its terminator and
            // its start line can be computed; a CR before it is stripped.
            .terminator(csv::Terminator::Any(b'\n'))
            .from_reader(limited);
        let mut record = csv::ByteRecord::new();
        let line = loop {
            match read_record(&mut rdr, &mut record, file) {
                Ok(Some(line)) => {
                    if !record_is_blank(&record) {
                        break line;
                    }
                }
                Ok(None) => {
                    return Err(vec![InputError {
                        file: file.to_string(),
                        line: 0,
                        column: None,
                        message: "the file is empty".into(),
                    }])
                }
                Err(e) => return Err(vec![e]),
            }
        };
        let header = analyze_header(file, line, &record)?;
        Ok(CsvState {
            rdr,
            record,
            header,
        })
    }

    fn next_row(&mut self, file: &str) -> Step {
        loop {
            let line = match read_record(&mut self.rdr, &mut self.record, file) {
                Ok(None) => return Step::End,
                Ok(Some(line)) => line,
                Err(e) => return Step::Fatal(e),
            };
            if record_is_blank(&self.record) {
                continue;
            }
            if self.is_header_repeat() {
                return Step::Row(Err(vec![InputError {
                    file: file.to_string(),
                    line,
                    column: None,
                    message: "the header is repeated (files pasted together?)".into(),
                }]));
            }
            return Step::Row(self.parse_row(file, line));
        }
    }

    fn is_header_repeat(&self) -> bool {
        let h = &self.header.normalized;
        let rw = used_width(self.record.iter().map(is_blank));
        let hw = used_width(h.iter().map(|s| s.is_empty()));
        if rw != hw {
            return false;
        }
        self.record
            .iter()
            .zip(h)
            .all(|(cell, norm)| columns::normalize(&String::from_utf8_lossy(cell)) == *norm)
    }

    fn parse_row(&self, file: &str, line: u64) -> Result<Row, Vec<InputError>> {
        let header = &self.header;
        let width = header.kinds.len();
        let mut errors = Vec::new();
        let mut input = AgentInput::default();
        let mut sources = header.sources.clone();
        let mut path_hierarchy: Option<(String, usize)> = None;
        let mut level_hierarchy: Option<(String, usize)> = None;

        let used = used_width(self.record.iter().map(is_blank));
        if used > width {
            // Cells are shifted (an unquoted comma): their values are
            // meaningless, and the password may now sit under another header.
            return Err(vec![InputError {
                file: file.to_string(),
                line,
                column: None,
                message: format!(
                    "the row has {used} cells but the header has {width} columns \
                     (a value containing a comma must be in double quotes)"
                ),
            }]);
        }

        for (index, kind) in header.kinds.iter().enumerate() {
            let raw = cell_bytes(&self.record, index);
            let written = &header.written[index];
            let Some(kind) = *kind else {
                if !is_blank(raw) {
                    errors.push(InputError {
                        file: file.to_string(),
                        line,
                        column: None,
                        message: format!(
                            "column {} has no header but this row has a value in it",
                            index + 1
                        ),
                    });
                }
                continue;
            };
            let cell = Cell {
                file,
                line,
                header: written,
                redact: kind == Kind::Password,
            };
            if raw.len() > MAX_CELL_BYTES {
                let shown = if cell.redact {
                    REDACTED.to_string()
                } else {
                    quote_bytes(raw)
                };
                errors.push(cell.error_shown(
                    &shown,
                    &format!("is larger than {} KiB", MAX_CELL_BYTES / 1024),
                ));
                continue;
            }
            let text = match std::str::from_utf8(raw) {
                Ok(t) => t,
                Err(e) => {
                    let shown = if cell.redact {
                        REDACTED.to_string()
                    } else {
                        quote_bytes(raw)
                    };
                    errors.push(cell.error_shown(
                        &shown,
                        &format!(
                            "is not valid UTF-8 (bad byte at offset {}); save the file as \
                             \"CSV UTF-8 (Comma delimited)\"",
                            e.valid_up_to()
                        ),
                    ));
                    continue;
                }
            };
            match kind {
                Kind::HierarchyPath => match hierarchy(text, '/') {
                    Ok(v) => path_hierarchy = v.map(|v| (v, index)),
                    Err(rule) => errors.push(cell.error(text, &rule)),
                },
                Kind::HierarchyLevels => match hierarchy(text, '|') {
                    Ok(v) => level_hierarchy = v.map(|v| (v, index)),
                    Err(rule) => errors.push(cell.error(text, &rule)),
                },
                _ => {
                    if let Err(e) = apply_cell(kind, text, &mut input, &cell) {
                        errors.push(e);
                    }
                }
            }
        }

        match (path_hierarchy, level_hierarchy) {
            (Some((a, ai)), Some((b, bi))) if a != b => errors.push(InputError {
                file: file.to_string(),
                line,
                column: Some(header.written[ai].clone()),
                message: format!(
                    "columns {:?} and {:?} disagree: {} vs {} (fill one of them)",
                    header.written[ai],
                    header.written[bi],
                    quote(&a),
                    quote(&b)
                ),
            }),
            (Some((v, i)), _) | (None, Some((v, i))) => {
                input.hierarchy_group = Some(v);
                sources.set("hierarchy_group", i);
            }
            (None, None) => {}
        }

        if header.format == Format::Console && input.email.is_empty() {
            if let Some(login) = input.username.as_deref().filter(|u| u.contains('@')) {
                input.email = login.to_string();
                if let Some(i) = header.kinds.iter().position(|k| *k == Some(Kind::Username)) {
                    sources.set("email", i);
                }
            }
        }

        if errors.is_empty() {
            Ok(Row {
                line,
                input,
                sources,
            })
        } else {
            Err(errors)
        }
    }
}

fn csv_fatal(file: &str, line: u64, e: csv::Error) -> InputError {
    let message = match e.kind() {
        csv::ErrorKind::Io(io) if io.get_ref().is_some_and(|r| r.is::<RecordTooLarge>()) => {
            format!(
                "the record starting here is larger than {} MiB (a double quote is probably \
                 not closed); reading stopped",
                MAX_RECORD_BYTES / (1024 * 1024)
            )
        }
        csv::ErrorKind::Io(io) => format!("read error: {io}; reading stopped"),
        _ => format!("{e}; reading stopped"),
    };
    InputError {
        file: file.to_string(),
        line,
        column: None,
        message,
    }
}

fn analyze_header(
    file: &str,
    line: u64,
    record: &csv::ByteRecord,
) -> Result<Header, Vec<InputError>> {
    let err = |column: Option<String>, message: String| InputError {
        file: file.to_string(),
        line,
        column,
        message,
    };
    if record.iter().any(|c| c.contains(&0)) {
        return Err(vec![err(
            None,
            "the header contains NUL bytes: the file is probably UTF-16; save it as \
             \"CSV UTF-8 (Comma delimited)\""
                .into(),
        )]);
    }
    let mut written = Vec::with_capacity(record.len());
    for i in 0..record.len() {
        match std::str::from_utf8(cell_bytes(record, i)) {
            Ok(t) if t.trim().contains('\r') => {
                return Err(vec![err(
                    None,
                    "the file has old Mac line endings (CR only); save it as \"CSV UTF-8 (Comma \
                     delimited)\""
                        .into(),
                )])
            }
            Ok(t) => written.push(t.trim().to_string()),
            Err(_) => {
                return Err(vec![err(
                None,
                "the header is not valid UTF-8; save the file as \"CSV UTF-8 (Comma delimited)\""
                    .into(),
            )])
            }
        }
    }
    let non_blank: Vec<&String> = written.iter().filter(|w| !w.is_empty()).collect();
    if let [only] = non_blank.as_slice() {
        let sep = if only.contains(';') {
            Some("';'")
        } else if only.contains('\t') {
            Some("a tab")
        } else {
            None
        };
        if let Some(sep) = sep {
            return Err(vec![err(
                None,
                format!(
                    "the file is not comma-separated: the header has one column containing {sep}"
                ),
            )]);
        }
    }
    let normalized: Vec<String> = written.iter().map(|w| columns::normalize(w)).collect();

    let console_hits = normalized
        .iter()
        .filter(|n| columns::console_kind(n).is_some())
        .count();
    let native_hits = normalized
        .iter()
        .filter(|n| columns::native_kind(n).is_some())
        .count();
    let format = if normalized.iter().any(|n| n == "first name") {
        Format::Console
    } else if normalized.iter().any(|n| n == "first_name") {
        Format::Native
    } else if console_hits == 0 && native_hits == 0 {
        return Err(vec![err(
            None,
            "the first row is not a header: no column name is recognized; expected the Connect \
             console template header (\"first name,last name,email address,…\") or the native \
             header (\"email,first_name,last_name,…\")"
                .into(),
        )]);
    } else if console_hits >= native_hits {
        Format::Console
    } else {
        Format::Native
    };
    let console = format == Format::Console;
    let table = if console {
        columns::CONSOLE_COLUMNS
    } else {
        columns::NATIVE_COLUMNS
    };
    let lookup = |n: &str| {
        if console {
            columns::console_kind(n)
        } else {
            columns::native_kind(n)
        }
    };

    let mut errors = Vec::new();
    let mut kinds = Vec::with_capacity(written.len());
    let mut seen: HashMap<Kind, usize> = HashMap::new();
    for (i, norm) in normalized.iter().enumerate() {
        if norm.is_empty() {
            kinds.push(None);
            continue;
        }
        let kind = lookup(norm);
        match kind {
            None => errors.push(err(
                Some(written[i].clone()),
                format!(
                    "unknown column {} (column {}); accepted columns: {}",
                    quote(&written[i]),
                    i + 1,
                    columns::accepted(table)
                ),
            )),
            Some(k) => {
                if let Some(&first) = seen.get(&k) {
                    let what = if normalized[first] == *norm {
                        format!("column {:?} appears twice", written[i])
                    } else {
                        format!(
                            "column {:?} duplicates column {:?}",
                            written[i], written[first]
                        )
                    };
                    errors.push(err(
                        Some(written[i].clone()),
                        format!("{what} (columns {} and {})", first + 1, i + 1),
                    ));
                } else {
                    seen.insert(k, i);
                }
            }
        }
        kinds.push(kind);
    }

    let has = |k: Kind| seen.contains_key(&k);
    let missing = |name: &str| format!("the required column {name:?} is missing");
    match format {
        Format::Console => {
            for (k, name) in [
                (Kind::FirstName, "first name"),
                (Kind::LastName, "last name"),
            ] {
                if !has(k) {
                    errors.push(err(None, missing(name)));
                }
            }
            if !has(Kind::Email) && !has(Kind::Username) {
                errors.push(err(
                    None,
                    "the header needs an \"email address\" or a \"user login\" column".into(),
                ));
            }
        }
        _ => {
            for (k, name) in [
                (Kind::Email, "email"),
                (Kind::FirstName, "first_name"),
                (Kind::LastName, "last_name"),
            ] {
                if !has(k) {
                    errors.push(err(None, missing(name)));
                }
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let written: Arc<[String]> = written.into();
    let mut sources = Sources {
        headers: Arc::clone(&written),
        by_field: [None; FIELDS.len()],
    };
    // First column of each field; iterate backwards so the first one wins.
    for (i, k) in kinds.iter().enumerate().rev() {
        if let Some(k) = k {
            sources.set(k.field(), i);
        }
    }
    if sources.get("email").is_none() {
        if let Some(&i) = seen.get(&Kind::Username) {
            sources.set("email", i);
        }
    }
    Ok(Header {
        format,
        line,
        written,
        normalized,
        kinds,
        sources,
    })
}

// ---------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------

/// Context of one cell, for building its errors.
struct Cell<'a> {
    file: &'a str,
    line: u64,
    header: &'a str,
    redact: bool,
}

impl Cell<'_> {
    fn error_shown(&self, shown: &str, rule: &str) -> InputError {
        InputError {
            file: self.file.to_string(),
            line: self.line,
            column: Some(self.header.to_string()),
            message: format!("column {:?}: value {shown} {rule}", self.header),
        }
    }

    fn error(&self, value: &str, rule: &str) -> InputError {
        let shown = if self.redact {
            REDACTED.to_string()
        } else {
            quote(value)
        };
        self.error_shown(&shown, rule)
    }
}

fn opt(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

fn apply_cell(
    kind: Kind,
    text: &str,
    input: &mut AgentInput,
    cell: &Cell,
) -> Result<(), InputError> {
    let t = text.trim();
    let fail = |rule: &str| cell.error(text, rule);
    match kind {
        Kind::Email => input.email = t.to_string(),
        Kind::FirstName => input.first_name = t.to_string(),
        Kind::LastName => input.last_name = t.to_string(),
        Kind::Username => input.username = opt(t),
        Kind::RoutingProfile => input.routing_profile = opt(t),
        Kind::SecondaryEmail => input.secondary_email = opt(t),
        Kind::Mobile => input.mobile = opt(t),
        Kind::DirectoryUserId => input.directory_user_id = opt(t),
        Kind::HierarchyGroup => input.hierarchy_group = opt(t),
        Kind::SecurityProfiles => {
            input.security_profiles = t
                .split('|')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect();
        }
        Kind::PhoneType => {
            if !t.is_empty() {
                input.phone_type = Some(
                    t.parse::<PhoneType>()
                        .map_err(|_| fail("is not soft or desk (or SOFT_PHONE / DESK_PHONE)"))?,
                );
            }
        }
        Kind::DeskPhoneNumber => {
            if looks_like_excel_number(t) {
                return Err(fail(
                    "looks like a number Excel reformatted (scientific notation); format the \
                     column as Text and type the number as +<country><number>",
                ));
            }
            input.desk_phone_number = opt(t);
        }
        Kind::AutoAccept => {
            if !t.is_empty() {
                input.auto_accept = Some(parse_yes_no(t).ok_or_else(|| fail("is not yes or no"))?);
            }
        }
        Kind::AcwTimeout => {
            if !t.is_empty() {
                input.acw_timeout = Some(
                    t.parse::<i64>()
                        .map_err(|_| fail("is not a whole number of seconds"))?,
                );
            }
        }
        Kind::ConsoleTags => input.tags = parse_console_tags(t).map_err(|r| fail(&r))?,
        Kind::NativeTags => input.tags = parse_native_tags(t).map_err(|r| fail(&r))?,
        Kind::Password => {
            // Not trimmed: a password is taken exactly as written.
            if !text.trim().is_empty() {
                input.password = Some(Secret::new(text.to_string()));
            }
        }
        Kind::HierarchyPath | Kind::HierarchyLevels => unreachable!("handled by the caller"),
    }
    Ok(())
}

fn parse_yes_no(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("yes") || t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("no") || t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `1.21456E+10`: what Excel shows (and saves) for a long number in a General cell.
fn looks_like_excel_number(t: &str) -> bool {
    let Some((mantissa, exp)) = t.split_once(['E', 'e']) else {
        return false;
    };
    let exp = exp.strip_prefix('+').unwrap_or(exp);
    !mantissa.is_empty()
        && mantissa.chars().all(|c| c.is_ascii_digit() || c == '.')
        && mantissa.starts_with(|c: char| c.is_ascii_digit())
        && !exp.is_empty()
        && exp.chars().all(|c| c.is_ascii_digit())
}

/// Hierarchy levels split by `sep`, trimmed, joined by `/`; `None` when blank.
fn hierarchy(text: &str, sep: char) -> Result<Option<String>, String> {
    let t = text.trim();
    if t.is_empty() {
        return Ok(None);
    }
    let mut levels = Vec::new();
    for level in t.split(sep) {
        let level = level.trim();
        if level.is_empty() {
            return Err(format!(
                "has an empty hierarchy level (levels are separated by '{sep}')"
            ));
        }
        if sep != '/' && level.contains('/') {
            return Err(format!(
                "has a level containing '/' ({}), which cannot be expressed as a level path",
                quote(level)
            ));
        }
        levels.push(level);
    }
    Ok(Some(levels.join("/")))
}

fn push_tag(tags: &mut Vec<(String, String)>, key: &str, value: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("has a tag with an empty key".into());
    }
    if tags.iter().any(|(k, _)| k == key) {
        return Err(format!("has the tag key {} twice", quote(key)));
    }
    tags.push((key.to_string(), value.to_string()));
    Ok(())
}

/// Console: `key1|value1||key2|value2`.
fn parse_console_tags(t: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    for pair in t.split("||").map(str::trim).filter(|p| !p.is_empty()) {
        let mut parts = pair.split('|');
        let key = parts.next().unwrap_or("").trim();
        let Some(value) = parts.next() else {
            return Err(format!(
                "has a tag {} without a value (write key|value pairs separated by ||)",
                quote(pair)
            ));
        };
        if parts.next().is_some() {
            return Err(format!(
                "has a tag {} with more than one '|' (write key|value pairs separated by ||)",
                quote(pair)
            ));
        }
        push_tag(&mut tags, key, value.trim())?;
    }
    Ok(tags)
}

/// Native: `key1=value1|key2=value2`.
fn parse_native_tags(t: &str) -> Result<Vec<(String, String)>, String> {
    let mut tags = Vec::new();
    for pair in t.split('|').map(str::trim).filter(|p| !p.is_empty()) {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(format!(
                "has a tag {} without '=' (write key=value pairs separated by |)",
                quote(pair)
            ));
        };
        push_tag(&mut tags, key.trim(), value.trim())?;
    }
    Ok(tags)
}

// ---------------------------------------------------------------------------
// JSON Lines
// ---------------------------------------------------------------------------

struct JsonState {
    src: BufReader<Box<dyn Read + Send>>,
    line: u64,
    buf: Vec<u8>,
}

/// Reads one line (without `\n`) into `buf`, keeping at most `max` bytes and
/// discarding the rest. `Ok(None)` at end of input; `Ok(Some(true))` if cut.
fn read_line_bounded(
    src: &mut impl BufRead,
    buf: &mut Vec<u8>,
    max: usize,
) -> io::Result<Option<bool>> {
    buf.clear();
    let mut any = false;
    let mut cut = false;
    loop {
        let chunk = match src.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            return Ok(any.then_some(cut));
        }
        any = true;
        let (part, used, done) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        let room = max.saturating_sub(buf.len());
        if part.len() > room {
            cut = true;
        }
        buf.extend_from_slice(&part[..part.len().min(room)]);
        src.consume(used);
        if done {
            return Ok(Some(cut));
        }
    }
}

impl JsonState {
    fn next_row(&mut self, file: &str, sources: &Sources) -> Step {
        loop {
            let line_start = self.line + 1;
            let read = read_line_bounded(&mut self.src, &mut self.buf, MAX_JSON_LINE_BYTES);
            self.line = line_start;
            let err = |message: String| InputError {
                file: file.to_string(),
                line: line_start,
                column: None,
                message,
            };
            match read {
                Err(e) => return Step::Fatal(err(format!("read error: {e}; reading stopped"))),
                Ok(None) => return Step::End,
                Ok(Some(true)) => {
                    return Step::Row(Err(vec![err(format!(
                        "the line is longer than {} MiB",
                        MAX_JSON_LINE_BYTES / (1024 * 1024)
                    ))]))
                }
                Ok(Some(false)) => {}
            }
            if is_blank(&self.buf) {
                continue;
            }
            let text = match std::str::from_utf8(&self.buf) {
                Ok(t) => t,
                Err(e) => {
                    return Step::Row(Err(vec![err(format!(
                        "the line is not valid UTF-8 (bad byte at offset {})",
                        e.valid_up_to()
                    ))]))
                }
            };
            let value: serde_json::Value = match serde_json::from_str(text) {
                Ok(v) => v,
                Err(e) => {
                    // serde_json's syntax errors never echo input text.
                    let msg = e.to_string();
                    let suffix = format!(" at line {} column {}", e.line(), e.column());
                    let msg = msg.strip_suffix(&suffix).unwrap_or(&msg);
                    return Step::Row(Err(vec![err(format!(
                        "invalid JSON at character {}: {msg}",
                        e.column()
                    ))]));
                }
            };
            let serde_json::Value::Object(map) = value else {
                return Step::Row(Err(vec![err("the line is not a JSON object".into())]));
            };
            return Step::Row(json_row(file, line_start, map, sources));
        }
    }
}

fn json_row(
    file: &str,
    line: u64,
    map: serde_json::Map<String, serde_json::Value>,
    sources: &Sources,
) -> Result<Row, Vec<InputError>> {
    use serde_json::Value;
    let mut errors = Vec::new();
    let mut input = AgentInput::default();
    for required in ["email", "first_name", "last_name"] {
        if !map.contains_key(required) {
            errors.push(InputError {
                file: file.to_string(),
                line,
                column: Some(required.to_string()),
                message: format!("the required key {required:?} is missing"),
            });
        }
    }
    for (key, value) in &map {
        let fail = |rule: &str| {
            let shown = if key == "password" {
                REDACTED.to_string()
            } else {
                match value {
                    Value::String(s) => quote(s),
                    other => quote(&other.to_string()),
                }
            };
            InputError {
                file: file.to_string(),
                line,
                column: Some(key.clone()),
                message: format!("key {key:?}: value {shown} {rule}"),
            }
        };
        let Some(field) = FIELDS.iter().copied().find(|f| f == key) else {
            errors.push(InputError {
                file: file.to_string(),
                line,
                column: Some(key.clone()),
                message: format!(
                    "unknown key {}; accepted keys: {}",
                    quote(key),
                    FIELDS.join(", ")
                ),
            });
            continue;
        };
        let too_long = |s: &str| s.len() > MAX_CELL_BYTES;
        let size_rule = format!("is larger than {} KiB", MAX_CELL_BYTES / 1024);
        // A string, or None for null (required keys reject null).
        let string = |required: bool| -> Result<Option<String>, InputError> {
            match value {
                Value::String(s) if too_long(s) => Err(fail(&size_rule)),
                Value::String(s) => Ok(Some(s.clone())),
                Value::Null if !required => Ok(None),
                _ => Err(fail("is not a string")),
            }
        };
        let result: Result<(), InputError> = (|| {
            match field {
                "email" => input.email = string(true)?.unwrap_or_default(),
                "first_name" => input.first_name = string(true)?.unwrap_or_default(),
                "last_name" => input.last_name = string(true)?.unwrap_or_default(),
                "username" => input.username = string(false)?,
                "routing_profile" => input.routing_profile = string(false)?,
                "hierarchy_group" => input.hierarchy_group = string(false)?,
                "desk_phone_number" => input.desk_phone_number = string(false)?,
                "secondary_email" => input.secondary_email = string(false)?,
                "mobile" => input.mobile = string(false)?,
                "directory_user_id" => input.directory_user_id = string(false)?,
                "password" => input.password = string(false)?.map(Secret::new),
                "phone_type" => {
                    input.phone_type = match string(false)? {
                        None => None,
                        Some(s) => Some(s.parse::<PhoneType>().map_err(|_| {
                            fail("is not soft or desk (or SOFT_PHONE / DESK_PHONE)")
                        })?),
                    }
                }
                "auto_accept" => {
                    input.auto_accept = match value {
                        Value::Null => None,
                        Value::Bool(b) => Some(*b),
                        _ => return Err(fail("is not true or false")),
                    }
                }
                "acw_timeout" => {
                    input.acw_timeout = match value {
                        Value::Null => None,
                        Value::Number(n) => Some(
                            n.as_i64()
                                .ok_or_else(|| fail("is not a whole number of seconds"))?,
                        ),
                        _ => return Err(fail("is not a whole number of seconds")),
                    }
                }
                "security_profiles" => {
                    input.security_profiles = match value {
                        Value::Null => Vec::new(),
                        Value::Array(items) => {
                            let mut out = Vec::with_capacity(items.len());
                            for item in items {
                                match item {
                                    Value::String(s) if too_long(s) => {
                                        return Err(fail(&size_rule))
                                    }
                                    Value::String(s) => out.push(s.clone()),
                                    _ => return Err(fail("is not an array of strings")),
                                }
                            }
                            out
                        }
                        _ => return Err(fail("is not an array of strings")),
                    }
                }
                "tags" => {
                    input.tags = match value {
                        Value::Null => Vec::new(),
                        Value::Object(m) => {
                            let mut out = Vec::with_capacity(m.len());
                            for (k, v) in m {
                                match v {
                                    Value::String(s) if too_long(s) || too_long(k) => {
                                        return Err(fail(&size_rule))
                                    }
                                    Value::String(s) => out.push((k.clone(), s.clone())),
                                    _ => {
                                        return Err(fail(
                                            "is not an object whose values are strings",
                                        ))
                                    }
                                }
                            }
                            out
                        }
                        _ => return Err(fail("is not an object whose values are strings")),
                    }
                }
                _ => unreachable!("every field is handled"),
            }
            Ok(())
        })();
        if let Err(e) = result {
            errors.push(e);
        }
    }
    if errors.is_empty() {
        Ok(Row {
            line,
            input,
            sources: sources.clone(),
        })
    } else {
        Err(errors)
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------

/// Makes a cell safe for a CSV report opened in a spreadsheet (OWASP CSV
/// injection): a cell starting with `=`, `+`, `-`, `@`, tab or CR gets a
/// leading `'`. Quoting of commas and quotes is the CSV writer's job.
pub fn neutralize_csv_cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    const PW: &str = "Sup3rS3cretPw!";

    fn open(text: &str) -> Result<Reader, Vec<InputError>> {
        open_bytes(text.as_bytes().to_vec())
    }

    fn open_bytes(bytes: Vec<u8>) -> Result<Reader, Vec<InputError>> {
        Reader::from_reader("agents.csv", Cursor::new(bytes))
    }

    /// All rows and all row errors of a file whose header is fine.
    fn read(text: &str) -> (Vec<Row>, Vec<InputError>) {
        read_bytes(text.as_bytes().to_vec())
    }

    fn read_bytes(bytes: Vec<u8>) -> (Vec<Row>, Vec<InputError>) {
        let reader = open_bytes(bytes).expect("header should be accepted");
        let mut rows = Vec::new();
        let mut errors = Vec::new();
        for r in reader {
            match r {
                Ok(row) => rows.push(row),
                Err(e) => errors.extend(e),
            }
        }
        (rows, errors)
    }

    fn one_row(text: &str) -> Row {
        let (rows, errors) = read(text);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(rows.len(), 1);
        rows.into_iter().next().unwrap()
    }

    fn header_errors(text: &str) -> Vec<String> {
        match open(text) {
            Ok(r) => panic!("header accepted: {:?}", r.columns()),
            Err(e) => e.iter().map(|e| e.to_string()).collect(),
        }
    }

    fn row_errors(text: &str) -> Vec<String> {
        read(text).1.iter().map(|e| e.to_string()).collect()
    }

    const FULL_CONSOLE_HEADER: &str = "first name,last name,email address,secondary email address,mobile,password,user login,agent hierarchy,routing profile name,security_profile_name_1|security_profile_name_2,user_hierarchy_1|user_hierarchy_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),tags";

    const VOICEFOUNDRY_HEADER: &str = "first name,last name,email address,password,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),UserHierarchy";

    const SAML_HEADER: &str = "first name,last name,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds)";

    const SAML_NEW_HEADER: &str = "first name,last name,secondary email,mobile,user login,routing profile name,security_profile_name_1|security_profile_name_2,user_hierarchy_1|user_hierarchy_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds),tags";

    const NATIVE_HEADER: &str = "email,first_name,last_name,username,routing_profile,security_profiles,hierarchy_group,phone_type,desk_phone_number,auto_accept,acw_timeout,secondary_email,mobile,directory_user_id,tags,password";

    // ---- console template --------------------------------------------------

    #[test]
    fn console_full_template_every_column() {
        let text = format!(
            "{FULL_CONSOLE_HEADER}\nRoe,Richard,rroe@example.com,r2@example.org,+12145550100,{PW},rroe,technical support/IT/Eastern,Basic Routing Profile,Admin|Agent,,desk,+12145550198,no,45,team|blue||site|dallas\n"
        );
        let reader = open(&text).unwrap();
        assert_eq!(reader.format(), Format::Console);
        assert_eq!(reader.header_line(), Some(1));
        assert_eq!(reader.columns().len(), 16);
        assert_eq!(reader.column_for("username"), Some("user login"));
        assert_eq!(reader.column_for("desk_phone_number"), Some("phone number"));
        assert_eq!(
            reader.column_for("hierarchy_group"),
            Some("agent hierarchy")
        );
        assert_eq!(reader.column_for("nonsense"), None);
        let row = one_row(&text);
        let a = &row.input;
        assert_eq!(row.line, 2);
        assert_eq!(a.first_name, "Roe");
        assert_eq!(a.last_name, "Richard");
        assert_eq!(a.email, "rroe@example.com");
        assert_eq!(a.secondary_email.as_deref(), Some("r2@example.org"));
        assert_eq!(a.mobile.as_deref(), Some("+12145550100"));
        assert_eq!(a.password.as_ref().map(Secret::expose), Some(PW));
        assert_eq!(a.username.as_deref(), Some("rroe"));
        assert_eq!(
            a.hierarchy_group.as_deref(),
            Some("technical support/IT/Eastern")
        );
        assert_eq!(a.routing_profile.as_deref(), Some("Basic Routing Profile"));
        assert_eq!(a.security_profiles, vec!["Admin", "Agent"]);
        assert_eq!(a.phone_type, Some(PhoneType::Desk));
        assert_eq!(a.desk_phone_number.as_deref(), Some("+12145550198"));
        assert_eq!(a.auto_accept, Some(false));
        assert_eq!(a.acw_timeout, Some(45));
        assert_eq!(
            a.tags,
            vec![
                ("team".to_string(), "blue".to_string()),
                ("site".into(), "dallas".into())
            ]
        );
        assert_eq!(a.directory_user_id, None);
        assert_eq!(row.column_for("email"), Some("email address"));
        assert_eq!(row.column_for("hierarchy_group"), Some("agent hierarchy"));
        assert_eq!(row.column_for("password"), Some("password"));
    }

    #[test]
    fn console_documented_sample_rows() {
        let text = format!(
            "{VOICEFOUNDRY_HEADER}\n\
             Roe,Richard,rroe@example.com,F@keP@ssw0rd,rroe,Basic Routing Profile,CallCenterManager,SOFT_PHONE,,yes,30,technical support/IT/Eastern\n\
             Doe,Jane,jdoe@example.com,F@keP@ssw0rd2,jdoe,Basic Routing Profile,Agent,DESK_PHONE,+12145550198,no,0,technical support/IT/Australia\n"
        );
        let (rows, errors) = read(&text);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(rows.len(), 2);
        let a = &rows[0].input;
        assert_eq!(
            (a.first_name.as_str(), a.last_name.as_str()),
            ("Roe", "Richard")
        );
        assert_eq!(a.email, "rroe@example.com");
        assert_eq!(a.password.as_ref().unwrap().expose(), "F@keP@ssw0rd");
        assert_eq!(a.username.as_deref(), Some("rroe"));
        assert_eq!(a.routing_profile.as_deref(), Some("Basic Routing Profile"));
        assert_eq!(a.security_profiles, vec!["CallCenterManager"]);
        assert_eq!(a.phone_type, Some(PhoneType::Soft));
        assert_eq!(a.desk_phone_number, None);
        assert_eq!(a.auto_accept, Some(true));
        assert_eq!(a.acw_timeout, Some(30));
        assert_eq!(
            a.hierarchy_group.as_deref(),
            Some("technical support/IT/Eastern")
        );
        assert_eq!(rows[0].column_for("hierarchy_group"), Some("UserHierarchy"));
        let b = &rows[1].input;
        assert_eq!(b.phone_type, Some(PhoneType::Desk));
        assert_eq!(b.desk_phone_number.as_deref(), Some("+12145550198"));
        assert_eq!(b.auto_accept, Some(false));
        assert_eq!(b.acw_timeout, Some(0));
        assert_eq!(
            b.hierarchy_group.as_deref(),
            Some("technical support/IT/Australia")
        );
        assert_eq!((rows[0].line, rows[1].line), (2, 3));
    }

    #[test]
    fn console_connect_managed_generation_without_hierarchy() {
        let text = "first name,last name,email address,password,user login,routing profile name,security_profile_name_1|security_profile_name_2,phone type (soft/desk),phone number,soft phone auto accept (yes/no),ACW timeout (seconds)\n\
                    Roe,Richard,rroe@example.com,F@keP@ssw0rd,rroe,Basic Routing Profile,CallCenterManager,soft,,YES,30\n";
        let row = one_row(text);
        assert_eq!(row.input.auto_accept, Some(true));
        assert_eq!(row.input.phone_type, Some(PhoneType::Soft));
        assert_eq!(row.input.hierarchy_group, None);
        assert_eq!(row.input.tags, vec![]);
    }

    #[test]
    fn console_saml_generation_email_is_user_login() {
        let text = format!(
            "{SAML_HEADER}\njdoe@example.com is not here,x,jdoe@example.com,Basic Routing Profile,Agent,soft,,True,10\n"
        );
        let reader = open(&text).unwrap();
        assert_eq!(reader.column_for("email"), Some("user login"));
        assert_eq!(reader.column_for("password"), None);
        let row = one_row(&text);
        assert_eq!(row.input.email, "jdoe@example.com");
        assert_eq!(row.input.username.as_deref(), Some("jdoe@example.com"));
        assert_eq!(row.input.auto_accept, Some(true));
        assert!(row.input.password.is_none());
        assert_eq!(row.column_for("email"), Some("user login"));
    }

    #[test]
    fn console_newer_saml_generation_levels_and_tags() {
        let text = format!(
            "{SAML_NEW_HEADER}\nDoe,Jane,jane@corp.example,+15555550100,jane@corp.example,Basic Routing Profile,Admin|Agent,Planet|Continent|Country|State|City,soft,,no,0,key1|value1||key2|value2\n"
        );
        let row = one_row(&text);
        let a = &row.input;
        assert_eq!(a.secondary_email.as_deref(), Some("jane@corp.example"));
        assert_eq!(a.mobile.as_deref(), Some("+15555550100"));
        assert_eq!(a.email, "jane@corp.example");
        assert_eq!(a.security_profiles, vec!["Admin", "Agent"]);
        assert_eq!(
            a.hierarchy_group.as_deref(),
            Some("Planet/Continent/Country/State/City")
        );
        assert_eq!(
            a.tags,
            vec![
                ("key1".to_string(), "value1".to_string()),
                ("key2".into(), "value2".into())
            ]
        );
        assert_eq!(
            row.column_for("hierarchy_group"),
            Some("user_hierarchy_1|user_hierarchy_2")
        );
    }

    #[test]
    fn console_email_fallback_rules() {
        let text = "first name,last name,email address,user login\n\
                    A,B,,a@example.com\n\
                    C,D,c@example.com,cuser\n\
                    E,F,,euser\n";
        let (rows, errors) = read(text);
        assert!(errors.is_empty());
        assert_eq!(rows[0].input.email, "a@example.com");
        assert_eq!(rows[0].column_for("email"), Some("user login"));
        assert_eq!(rows[1].input.email, "c@example.com");
        assert_eq!(rows[1].input.username.as_deref(), Some("cuser"));
        assert_eq!(rows[1].column_for("email"), Some("email address"));
        // Not an email: left empty for validate() to report.
        assert_eq!(rows[2].input.email, "");
        assert_eq!(rows[2].input.username.as_deref(), Some("euser"));
        assert_eq!(rows[2].column_for("email"), Some("email address"));
    }

    #[test]
    fn console_header_case_and_spaces_tolerated() {
        let text = "  FIRST   NAME ,Last Name,EMAIL\u{a0}ADDRESS, Phone Type ( Soft / Desk ) ,Secondary Email Address,acw TIMEOUT (seconds),userhierarchy\nA,B,a@x.example,DESK,,7,a / b\n";
        let reader = open(text).unwrap();
        assert_eq!(reader.format(), Format::Console);
        assert_eq!(reader.column_for("first_name"), Some("FIRST   NAME"));
        assert_eq!(
            reader.column_for("phone_type"),
            Some("Phone Type ( Soft / Desk )")
        );
        let row = one_row(text);
        assert_eq!(row.input.phone_type, Some(PhoneType::Desk));
        assert_eq!(row.input.acw_timeout, Some(7));
        assert_eq!(row.input.secondary_email, None);
        assert_eq!(row.input.hierarchy_group.as_deref(), Some("a/b"));
    }

    #[test]
    fn console_both_hierarchy_columns() {
        let text = "first name,last name,email address,agent hierarchy,user_hierarchy_1|user_hierarchy_2\n\
                    A,B,a@x.example,x/y,\n\
                    C,D,c@x.example,,x|y\n\
                    E,F,e@x.example,x/y,x|y\n\
                    G,H,g@x.example,x/y,x|z\n";
        let (rows, errors) = read(text);
        assert_eq!(rows.len(), 3);
        for r in &rows {
            assert_eq!(r.input.hierarchy_group.as_deref(), Some("x/y"));
        }
        assert_eq!(
            rows[0].column_for("hierarchy_group"),
            Some("agent hierarchy")
        );
        assert_eq!(
            rows[1].column_for("hierarchy_group"),
            Some("user_hierarchy_1|user_hierarchy_2")
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "agents.csv:5: columns \"agent hierarchy\" and \"user_hierarchy_1|user_hierarchy_2\" disagree: \"x/y\" vs \"x/z\" (fill one of them)"
        );
    }

    // ---- Excel -------------------------------------------------------------

    #[test]
    fn bom_crlf_quoted_newlines_and_line_numbers() {
        let text = "\u{feff}first name,last name,email address,tags\r\n\
                    \r\n\
                    \"Roe, Jr.\",\"Rich\r\nard\",rroe@example.com,\r\n\
                    ,,,\r\n\
                    Doe,Jane,jdoe@example.com,\"a|1||b|\"\"q\"\"\"\r\n\
                    Poe,\"E\nA\nP\",poe@example.com,\n\
                    Zed,Zee,zed@example.com,";
        let reader = open(text).unwrap();
        assert_eq!(reader.column_for("first_name"), Some("first name"));
        let (rows, errors) = read(text);
        assert!(errors.is_empty(), "{errors:#?}");
        let lines: Vec<u64> = rows.iter().map(|r| r.line).collect();
        assert_eq!(lines, vec![3, 6, 7, 10]);
        assert_eq!(rows[0].input.first_name, "Roe, Jr.");
        assert_eq!(rows[0].input.last_name, "Rich\r\nard");
        assert_eq!(rows[0].input.tags, vec![]);
        assert_eq!(
            rows[1].input.tags[1],
            ("b".to_string(), "\"q\"".to_string())
        );
        assert_eq!(rows[2].input.last_name, "E\nA\nP");
        assert_eq!(rows[3].input.email, "zed@example.com");
    }

    #[test]
    fn line_numbers_after_quoted_newline_in_errors() {
        let text = "first name,last name,email address,ACW timeout (seconds)\r\nA,\"x\r\ny\r\nz\",a@x.example,1\r\nB,C,b@x.example,ten\r\n";
        let errors = row_errors(text);
        assert_eq!(
            errors,
            vec!["agents.csv:5: column \"ACW timeout (seconds)\": value \"ten\" is not a whole number of seconds"]
        );
    }

    #[test]
    fn crlf_password_last_column_keeps_no_cr() {
        let text = format!("first name,last name,email address,password\r\nA,B,a@x.example,{PW}\r\nC,D,c@x.example,\"{PW}\"\r\n");
        let (rows, errors) = read(&text);
        assert!(errors.is_empty());
        for r in rows {
            assert_eq!(r.input.password.unwrap().expose(), PW);
        }
    }

    #[test]
    fn password_is_not_trimmed_but_blank_is_none() {
        let text = "first name,last name,email address,password\nA,B,a@x.example, pw \nC,D,c@x.example,   \n";
        let (rows, _) = read(text);
        assert_eq!(rows[0].input.password.as_ref().unwrap().expose(), " pw ");
        assert!(rows[1].input.password.is_none());
    }

    #[test]
    fn trailing_empty_rows_and_blank_columns_are_ignored() {
        let text = "first name,last name,email address,,\r\nA,B,a@x.example,,\r\nC,D,c@x.example\r\n,,,,\r\n,,,,\r\n  ,\t,,,\r\n\r\n\r\n";
        let (rows, errors) = read(text);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].input.email, "c@x.example");
        let reader = open(text).unwrap();
        assert_eq!(reader.columns().len(), 3);
    }

    #[test]
    fn value_under_blank_header_is_an_error() {
        let errors = row_errors("first name,last name,email address,\nA,B,a@x.example,oops\n");
        assert_eq!(
            errors,
            vec!["agents.csv:2: column 4 has no header but this row has a value in it"]
        );
    }

    #[test]
    fn header_only_yields_zero_rows() {
        for text in [
            "first name,last name,email address",
            "first name,last name,email address\r\n",
            "\u{feff}first name,last name,email address\r\n,,\r\n\r\n",
        ] {
            let (rows, errors) = read(text);
            assert!(rows.is_empty() && errors.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn excel_scientific_notation_phone_is_reported() {
        let errors = row_errors(
            "first name,last name,email address,phone number\nA,B,a@x.example,1.21456E+10\n",
        );
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("agents.csv:2: column \"phone number\": value \"1.21456E+10\" looks like a number Excel reformatted"), "{errors:?}");
        assert!(!looks_like_excel_number("+12145550198"));
        assert!(!looks_like_excel_number("E+10"));
        assert!(looks_like_excel_number("1E10"));
    }

    // ---- file-level errors ------------------------------------------------

    #[test]
    fn empty_file() {
        for bytes in [&b""[..], b"\r\n\n  \n", b"\xEF\xBB\xBF", b",,,\r\n,,\r\n"] {
            let err = open_bytes(bytes.to_vec()).unwrap_err();
            assert_eq!(err.len(), 1);
            assert_eq!(
                err[0].to_string(),
                "agents.csv: the file is empty",
                "{bytes:?}"
            );
            assert_eq!(err[0].line, 0);
        }
    }

    #[test]
    fn cannot_open_missing_file() {
        let err = Reader::open("/nonexistent/dir/agents.csv").unwrap_err();
        assert_eq!(err[0].line, 0);
        assert!(err[0]
            .to_string()
            .starts_with("/nonexistent/dir/agents.csv: cannot open the file: "));
    }

    #[test]
    fn unknown_column_is_named_with_the_accepted_list() {
        let errors =
            header_errors("first name,last name,email address,Routing Profile,department\n");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].starts_with("agents.csv:1: unknown column \"Routing Profile\" (column 4); accepted columns: \"first name\", \"last name\", \"email address\""), "{}", errors[0]);
        assert!(errors[0].contains("\"routing profile name\""));
        assert!(!errors[0].contains("did you mean"));
        assert!(errors[1].starts_with("agents.csv:1: unknown column \"department\" (column 5)"));
        let native = header_errors("email,first_name,last_name,department\n");
        assert_eq!(native.len(), 1);
        assert!(native[0].contains("unknown column \"department\" (column 4); accepted columns: \"email\", \"first_name\""), "{}", native[0]);
        let e = open("first name,last name,email address,x\n").unwrap_err();
        assert_eq!(e[0].column.as_deref(), Some("x"));
    }

    #[test]
    fn mixed_dialect_header_is_not_guessed() {
        let errors = header_errors("first name,last name,email\n");
        assert_eq!(errors.len(), 2, "{errors:#?}");
        assert!(errors[0].contains("unknown column \"email\""));
        assert_eq!(
            errors[1],
            "agents.csv:1: the header needs an \"email address\" or a \"user login\" column"
        );
    }

    #[test]
    fn duplicate_columns() {
        let errors = header_errors("first name,last name,email address,First Name\n");
        assert_eq!(
            errors,
            vec!["agents.csv:1: column \"First Name\" appears twice (columns 1 and 4)"]
        );
        let errors = header_errors("first name,last name,email address,agent hierarchy,UserHierarchy,secondary email,secondary email address\n");
        assert_eq!(
            errors,
            vec![
                "agents.csv:1: column \"UserHierarchy\" duplicates column \"agent hierarchy\" (columns 4 and 5)",
                "agents.csv:1: column \"secondary email address\" duplicates column \"secondary email\" (columns 6 and 7)",
            ]
        );
    }

    #[test]
    fn required_columns_missing() {
        assert_eq!(
            header_errors("first name,email address\n"),
            vec!["agents.csv:1: the required column \"last name\" is missing"]
        );
        assert_eq!(
            header_errors("last name,first name,password\n"),
            vec!["agents.csv:1: the header needs an \"email address\" or a \"user login\" column"]
        );
        assert_eq!(
            header_errors("first_name,last_name,username\n"),
            vec!["agents.csv:1: the required column \"email\" is missing"]
        );
        assert_eq!(
            header_errors("email address,user login\n"),
            vec![
                "agents.csv:1: the required column \"first name\" is missing",
                "agents.csv:1: the required column \"last name\" is missing",
            ]
        );
    }

    #[test]
    fn wrong_delimiter() {
        assert_eq!(
            header_errors("first name;last name;email address\nA;B;a@x.example\n"),
            vec!["agents.csv:1: the file is not comma-separated: the header has one column containing ';'"]
        );
        assert_eq!(
            header_errors("first name\tlast name\temail address\n"),
            vec!["agents.csv:1: the file is not comma-separated: the header has one column containing a tab"]
        );
    }

    #[test]
    fn first_row_not_a_header_echoes_nothing() {
        let text = format!("Roe,Richard,rroe@example.com,{PW},rroe\n");
        let errors = header_errors(&text);
        assert_eq!(errors.len(), 1);
        assert!(errors[0].starts_with("agents.csv:1: the first row is not a header"));
        assert!(!errors[0].contains(PW) && !errors[0].contains("rroe"));
    }

    #[test]
    fn header_line_after_leading_blank_lines() {
        let text = "\n\n,,\nfirst name,last name,email address\nA,B,\"Cx\"\n";
        let reader = open(text).unwrap();
        assert_eq!(reader.header_line(), Some(4));
        let errors = header_errors("\r\n\r\nfirst name,last name\r\n");
        assert_eq!(
            errors[0],
            "agents.csv:3: the header needs an \"email address\" or a \"user login\" column"
        );
    }

    #[test]
    fn encoding_problems() {
        // UTF-16 (Excel "Unicode Text").
        let mut utf16 = vec![0xFF, 0xFE];
        for u in "first name".encode_utf16() {
            utf16.extend_from_slice(&u.to_le_bytes());
        }
        let e = open_bytes(utf16).unwrap_err();
        assert_eq!(
            e[0].to_string(),
            "agents.csv:1: the file is UTF-16 encoded; save it as \"CSV UTF-8 (Comma delimited)\""
        );
        // Header not UTF-8 (Windows-1252 "é").
        let e = open_bytes(b"first name,last name,email address,r\xe9gion\n".to_vec()).unwrap_err();
        assert_eq!(e[0].to_string(), "agents.csv:1: the header is not valid UTF-8; save the file as \"CSV UTF-8 (Comma delimited)\"");
        // NUL bytes: UTF-16 without BOM.
        let e = open_bytes(b"f\0i\0r\0s\0t\0".to_vec()).unwrap_err();
        assert!(e[0].message.contains("NUL bytes"));
        // Old Mac line endings.
        let e = open("first name,last name,email address\rA,B,a@x.example\r").unwrap_err();
        assert!(e[0].message.contains("old Mac line endings"), "{e:?}");
    }

    #[test]
    fn invalid_utf8_cell_names_line_and_column() {
        let mut bytes =
            b"first name,last name,email address\nA,B,a@x.example\nJos\xe9,B,j@x.example\n"
                .to_vec();
        bytes.extend_from_slice(b"C,D,c@x.example\n");
        let (rows, errors) = read_bytes(bytes);
        assert_eq!(rows.len(), 2);
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "agents.csv:3: column \"first name\": value \"Jos\u{fffd}\" is not valid UTF-8 (bad byte at offset 3); save the file as \"CSV UTF-8 (Comma delimited)\""
        );
        assert_eq!(errors[0].column.as_deref(), Some("first name"));
    }

    #[test]
    fn repeated_header_mid_file() {
        let text = "first name,last name,email address\nA,B,a@x.example\nFirst Name , last name,EMAIL ADDRESS\nC,D,c@x.example\n";
        let (rows, errors) = read(text);
        assert_eq!(rows.len(), 2);
        assert_eq!(
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec!["agents.csv:3: the header is repeated (files pasted together?)"]
        );
    }

    #[test]
    fn row_with_more_cells_than_header() {
        let text = format!("first name,last name,email address,password\nRoe, Jr.,Richard,rroe@example.com,{PW}\nA,B,a@x.example,,,\n");
        let (rows, errors) = read(&text);
        assert_eq!(rows.len(), 1, "empty extra cells are fine");
        assert_eq!(
            errors.iter().map(|e| e.to_string()).collect::<Vec<_>>(),
            vec!["agents.csv:2: the row has 5 cells but the header has 4 columns (a value containing a comma must be in double quotes)"]
        );
    }

    #[test]
    fn huge_cell_is_reported_short_and_reading_goes_on() {
        let mut text = String::from("first name,last name,email address\n");
        text.push_str(&"x".repeat(10 * 1024 * 1024));
        text.push_str(",B,a@x.example\nC,D,c@x.example\n");
        let (rows, errors) = read(&text);
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].line, 3);
        assert_eq!(errors.len(), 1);
        let msg = errors[0].to_string();
        assert!(msg.len() < 200, "{msg}");
        assert_eq!(
            msg,
            format!(
                "agents.csv:2: column \"first name\": value \"{}\"… (10485760 bytes) is larger than 64 KiB",
                "x".repeat(60)
            )
        );
    }

    #[test]
    fn cell_of_exactly_64_kib_is_accepted() {
        let text = format!(
            "first name,last name,email address\n{},B,a@x.example\n",
            "y".repeat(MAX_CELL_BYTES)
        );
        assert_eq!(one_row(&text).input.first_name.len(), MAX_CELL_BYTES);
    }

    /// Endless bytes after an unclosed quote: one record would hold the whole file.
    struct Endless(u64);
    impl Read for Endless {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.0 as usize);
            buf[..n].fill(b'z');
            self.0 -= n as u64;
            Ok(n)
        }
    }

    #[test]
    fn unclosed_quote_stops_at_record_limit() {
        let head =
            Cursor::new(b"first name,last name,email address\nA,B,a@x.example\nC,\"D,".to_vec());
        let reader = Reader::from_reader(
            "agents.csv",
            head.chain(Endless(MAX_RECORD_BYTES + 1024 * 1024)),
        )
        .unwrap();
        let results: Vec<_> = reader.collect();
        assert_eq!(results.len(), 2);
        assert!(results[0].is_ok());
        let err = results[1].as_ref().unwrap_err();
        assert_eq!(
            err[0].to_string(),
            "agents.csv:3: the record starting here is larger than 16 MiB (a double quote is probably not closed); reading stopped"
        );
    }

    #[test]
    fn unclosed_quote_is_reported_at_its_record() {
        let text = "first name,last name,email address\r\nA,B,a@x.example\r\nC,\"D,c@x.example\r\nE,F,e@x.example\r\n";
        let results: Vec<_> = open(text).unwrap().collect();
        assert_eq!(results.len(), 2);
        assert_eq!(results[0].as_ref().unwrap().line, 2);
        assert_eq!(
            results[1].as_ref().unwrap_err()[0].to_string(),
            "agents.csv:3: a double quote opened in this record is never closed (the rest of the file was read as one cell); reading stopped"
        );
        // In the header, and a quoted cell that legitimately ends the file.
        let e = open("first name,\"last name,email address\n").unwrap_err();
        assert!(e[0]
            .to_string()
            .starts_with("agents.csv:1: a double quote opened"));
        let (rows, errors) = read("first name,last name,email address\nA,B,\"a@x.example\n\"");
        assert!(errors.is_empty());
        assert_eq!(rows[0].input.email, "a@x.example");
    }

    // ---- cell syntax errors -------------------------------------------------

    #[test]
    fn cell_rule_messages() {
        let head = "first name,last name,email address,soft phone auto accept (yes/no),ACW timeout (seconds),phone type (soft/desk)";
        let cases = [
            ("A,B,a@x.example,maybe,,", "column \"soft phone auto accept (yes/no)\": value \"maybe\" is not yes or no"),
            ("A,B,a@x.example,,30s,", "column \"ACW timeout (seconds)\": value \"30s\" is not a whole number of seconds"),
            ("A,B,a@x.example,,1.5,", "column \"ACW timeout (seconds)\": value \"1.5\" is not a whole number of seconds"),
            ("A,B,a@x.example,,,mobile", "column \"phone type (soft/desk)\": value \"mobile\" is not soft or desk (or SOFT_PHONE / DESK_PHONE)"),
        ];
        for (row, expected) in cases {
            let errors = row_errors(&format!("{head}\n{row}\n"));
            assert_eq!(errors, vec![format!("agents.csv:2: {expected}")]);
        }
        // The example of the brief, at line 7.
        let text = format!(
            "{head}\n{}A,B,a@x.example,maybe,,\n",
            "A,B,a@x.example,yes,,\n".repeat(5)
        );
        assert_eq!(
            row_errors(&text),
            vec!["agents.csv:7: column \"soft phone auto accept (yes/no)\": value \"maybe\" is not yes or no"]
        );
    }

    #[test]
    fn all_errors_of_a_row_at_once() {
        let text = "first name,last name,email address,soft phone auto accept (yes/no),ACW timeout (seconds),phone type (soft/desk),tags\nA,B,a@x.example,maybe,x,cell,k\n";
        let mut reader = open(text).unwrap();
        let errs = reader.next().unwrap().unwrap_err();
        let cols: Vec<_> = errs.iter().map(|e| e.column.as_deref().unwrap()).collect();
        assert_eq!(
            cols,
            vec![
                "soft phone auto accept (yes/no)",
                "ACW timeout (seconds)",
                "phone type (soft/desk)",
                "tags"
            ]
        );
        assert!(reader.next().is_none());
    }

    #[test]
    fn tag_and_hierarchy_syntax_errors() {
        let head = "first name,last name,email address,tags,agent hierarchy,user_hierarchy_1|user_hierarchy_2";
        let cases = [
            ("k1|v1||k2", "column \"tags\": value \"k1|v1||k2\" has a tag \"k2\" without a value (write key|value pairs separated by ||)"),
            ("k1|v1|x", "column \"tags\": value \"k1|v1|x\" has a tag \"k1|v1|x\" with more than one '|' (write key|value pairs separated by ||)"),
            ("k|1||k|2", "column \"tags\": value \"k|1||k|2\" has the tag key \"k\" twice"),
            ("|v", "column \"tags\": value \"|v\" has a tag with an empty key"),
        ];
        for (tags, expected) in cases {
            let errors = row_errors(&format!("{head}\nA,B,a@x.example,{tags},,\n"));
            assert_eq!(errors, vec![format!("agents.csv:2: {expected}")]);
        }
        assert_eq!(
            row_errors(&format!("{head}\nA,B,a@x.example,,a//b,\n")),
            vec!["agents.csv:2: column \"agent hierarchy\": value \"a//b\" has an empty hierarchy level (levels are separated by '/')"]
        );
        assert_eq!(
            row_errors(&format!("{head}\nA,B,a@x.example,,,a||b\n")),
            vec!["agents.csv:2: column \"user_hierarchy_1|user_hierarchy_2\": value \"a||b\" has an empty hierarchy level (levels are separated by '|')"]
        );
        assert_eq!(
            row_errors(&format!("{head}\nA,B,a@x.example,,,a|b/c\n")),
            vec!["agents.csv:2: column \"user_hierarchy_1|user_hierarchy_2\": value \"a|b/c\" has a level containing '/' (\"b/c\"), which cannot be expressed as a level path"]
        );
        // Empty tag value and surrounding blanks are fine.
        let row = one_row(&format!("{head}\nA,B,a@x.example, k | || j|v ||,,\n"));
        assert_eq!(
            row.input.tags,
            vec![("k".to_string(), String::new()), ("j".into(), "v".into())]
        );
    }

    #[test]
    fn thirty_bad_rows_are_all_reported() {
        let mut text = String::from("first name,last name,email address,soft phone auto accept (yes/no),ACW timeout (seconds)\n");
        for i in 0..30 {
            text.push_str(&format!("A{i},B,a{i}@x.example,maybe{i},{i}x\n"));
            text.push_str(&format!("G{i},B,g{i}@x.example,yes,{i}\n"));
        }
        let (rows, errors) = read(&text);
        assert_eq!(rows.len(), 30);
        assert_eq!(errors.len(), 60);
        for (i, pair) in errors.chunks(2).enumerate() {
            let line = 2 + 2 * i as u64;
            assert_eq!(pair[0].line, line);
            assert_eq!(pair[1].line, line);
            assert_eq!(
                pair[0].column.as_deref(),
                Some("soft phone auto accept (yes/no)")
            );
            assert_eq!(pair[1].column.as_deref(), Some("ACW timeout (seconds)"));
            assert!(pair[0].message.contains(&format!("\"maybe{i}\"")));
        }
    }

    #[test]
    fn long_values_are_truncated_in_errors() {
        let long = "m".repeat(1000);
        let errors = row_errors(&format!("first name,last name,email address,soft phone auto accept (yes/no)\nA,B,a@x.example,{long}\n"));
        assert_eq!(
            errors[0],
            format!("agents.csv:2: column \"soft phone auto accept (yes/no)\": value \"{}\"… (1000 bytes) is not yes or no", "m".repeat(60))
        );
        assert_eq!(quote("héllo"), "\"héllo\"");
        assert_eq!(
            quote(&"é".repeat(61)),
            format!("\"{}\"… (122 bytes)", "é".repeat(60))
        );
        assert_eq!(
            quote_bytes(&[0xFFu8; 1000]),
            format!("\"{}\"… (1000 bytes)", "\u{fffd}".repeat(60))
        );
    }

    // ---- passwords ---------------------------------------------------------

    #[test]
    fn password_never_in_error_text() {
        let mut all = Vec::new();
        let mut collect = |bytes: Vec<u8>| match open_bytes(bytes) {
            Err(e) => all.extend(e),
            Ok(r) => {
                for row in r {
                    match row {
                        Err(e) => all.extend(e),
                        Ok(row) => assert!(!format!("{row:?}").contains(PW)),
                    }
                }
            }
        };
        let head = "first name,last name,email address,password,soft phone auto accept (yes/no)";
        collect(format!("{head}\nA,B,a@x.example,{PW},maybe\n").into_bytes());
        // Invalid UTF-8 inside the password.
        collect(
            format!("{head}\nA,B,a@x.example,{PW}\u{0}\n")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 0 { 0xFF } else { b })
                .collect(),
        );
        // Oversized password cell.
        collect(
            format!(
                "{head}\nA,B,a@x.example,{PW}{},no\n",
                "p".repeat(MAX_CELL_BYTES)
            )
            .into_bytes(),
        );
        // Shifted by an unquoted comma.
        collect(format!("{head}\nRoe, Jr.,B,a@x.example,{PW},no\n").into_bytes());
        // Repeated header and a header-less file.
        collect(format!("{head}\n{head}\n").into_bytes());
        collect(format!("A,B,a@x.example,{PW},no\n").into_bytes());
        // JSON Lines: wrong type, oversized, neighbour errors, broken JSON.
        collect(format!("{{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\",\"password\":[\"{PW}\"]}}\n").into_bytes());
        collect(format!("{{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\",\"password\":\"{PW}{}\"}}\n", "p".repeat(MAX_CELL_BYTES)).into_bytes());
        collect(format!("{{\"email\":\"a@x.example\",\"first_name\":\"A\",\"password\":\"{PW}\",\"auto_accept\":\"maybe\",\"extra\":1}}\n").into_bytes());
        collect(
            format!("{{\"email\":\"a@x.example\",\"password\":\"{PW}\" \"x\"}}\n").into_bytes(),
        );
        assert!(all.len() >= 12, "{all:#?}");
        let redacted = all
            .iter()
            .filter(|e| e.message.contains("value <redacted>"))
            .count();
        assert_eq!(redacted, 4, "{all:#?}");
        for e in &all {
            assert!(!e.to_string().contains("S3cret"), "{e}");
            assert!(!format!("{e:?}").contains("S3cret"), "{e:?}");
        }
    }

    // ---- native CSV ----------------------------------------------------------

    #[test]
    fn native_csv_every_column() {
        let text = format!(
            "{NATIVE_HEADER}\njdoe@example.com,Jane,Doe,jdoe,Basic Routing Profile,Agent|Supervisor,Sales/EMEA,desk,+442071838750,TRUE,120,j2@example.com,+447700900123,d-123,team=blue|cost=cc=1,{PW}\nx@example.com,X,Y,,,,,,,,,,,,,\n"
        );
        let reader = open(&text).unwrap();
        assert_eq!(reader.format(), Format::Native);
        assert_eq!(
            reader.column_for("desk_phone_number"),
            Some("desk_phone_number")
        );
        let (rows, errors) = read(&text);
        assert!(errors.is_empty(), "{errors:#?}");
        let a = &rows[0].input;
        assert_eq!(a.email, "jdoe@example.com");
        assert_eq!(a.username.as_deref(), Some("jdoe"));
        assert_eq!(a.security_profiles, vec!["Agent", "Supervisor"]);
        assert_eq!(a.hierarchy_group.as_deref(), Some("Sales/EMEA"));
        assert_eq!(a.phone_type, Some(PhoneType::Desk));
        assert_eq!(a.desk_phone_number.as_deref(), Some("+442071838750"));
        assert_eq!(a.auto_accept, Some(true));
        assert_eq!(a.acw_timeout, Some(120));
        assert_eq!(a.secondary_email.as_deref(), Some("j2@example.com"));
        assert_eq!(a.mobile.as_deref(), Some("+447700900123"));
        assert_eq!(a.directory_user_id.as_deref(), Some("d-123"));
        assert_eq!(
            a.tags,
            vec![
                ("team".to_string(), "blue".to_string()),
                ("cost".into(), "cc=1".into())
            ]
        );
        assert_eq!(a.password.as_ref().unwrap().expose(), PW);
        let b = &rows[1].input;
        assert_eq!(b.username, None);
        assert!(b.security_profiles.is_empty() && b.tags.is_empty());
        assert_eq!(
            (b.auto_accept, b.acw_timeout, b.phone_type),
            (None, None, None)
        );
        assert!(b.password.is_none());
    }

    #[test]
    fn native_csv_errors() {
        let text = "first_name,last_name,email,tags,auto_accept\nA,B,a@x.example,team,maybe\n";
        assert_eq!(
            row_errors(text),
            vec![
                "agents.csv:2: column \"tags\": value \"team\" has a tag \"team\" without '=' (write key=value pairs separated by |)",
                "agents.csv:2: column \"auto_accept\": value \"maybe\" is not yes or no",
            ]
        );
        // Native hierarchy_group is passed through unchanged (a name may hold '|').
        let row = one_row("first_name,last_name,email,hierarchy_group\nA,B,a@x.example,hg-1234\n");
        assert_eq!(row.input.hierarchy_group.as_deref(), Some("hg-1234"));
    }

    // ---- JSON Lines ----------------------------------------------------------

    #[test]
    fn jsonl_rows() {
        let text = format!(
            "\u{feff}\n{{\"email\":\"jdoe@example.com\",\"first_name\":\"Jane\",\"last_name\":\"Doe\",\"username\":\"jdoe\",\"routing_profile\":\"Basic\",\"security_profiles\":[\"Agent\",\"Admin\"],\"hierarchy_group\":\"a/b\",\"phone_type\":\"SOFT_PHONE\",\"desk_phone_number\":null,\"auto_accept\":true,\"acw_timeout\":30,\"secondary_email\":\"j2@example.com\",\"mobile\":\"+15555550100\",\"directory_user_id\":\"d-1\",\"tags\":{{\"team\":\"blue\"}},\"password\":\"{PW}\"}}\r\n   \r\n{{\"email\":\"x@example.com\",\"first_name\":\"X\",\"last_name\":\"Y\"}}"
        );
        let reader = open(&text).unwrap();
        assert_eq!(reader.format(), Format::JsonLines);
        assert_eq!(reader.column_for("tags"), Some("tags"));
        assert_eq!(reader.header_line(), None);
        let (rows, errors) = read(&text);
        assert!(errors.is_empty(), "{errors:#?}");
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![2, 4]);
        let a = &rows[0].input;
        assert_eq!(a.email, "jdoe@example.com");
        assert_eq!(a.security_profiles, vec!["Agent", "Admin"]);
        assert_eq!(a.phone_type, Some(PhoneType::Soft));
        assert_eq!(a.desk_phone_number, None);
        assert_eq!(a.auto_accept, Some(true));
        assert_eq!(a.acw_timeout, Some(30));
        assert_eq!(a.tags, vec![("team".to_string(), "blue".to_string())]);
        assert_eq!(a.password.as_ref().unwrap().expose(), PW);
        assert_eq!(rows[0].column_for("acw_timeout"), Some("acw_timeout"));
        assert_eq!(rows[1].input.username, None);
    }

    #[test]
    fn jsonl_errors() {
        let ok = "\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\"";
        let text = format!(
            "{{{ok}}}\n\
             {{{ok},\"auto_accept\":\"yes\",\"acw_timeout\":1.5,\"phone_type\":\"x\",\"security_profiles\":\"Agent\",\"tags\":{{\"k\":1}},\"mobile\":5}}\n\
             {{\"first_name\":\"A\",\"last_name\":null,\"Email\":\"a@x.example\"}}\n\
             [1,2]\n\
             {{{ok},}}\n\
             {{{ok}}}\n"
        );
        let (rows, errors) = read(&text);
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 6]);
        let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(
            got,
            vec![
                "agents.csv:2: key \"acw_timeout\": value \"1.5\" is not a whole number of seconds",
                "agents.csv:2: key \"auto_accept\": value \"yes\" is not true or false",
                "agents.csv:2: key \"mobile\": value \"5\" is not a string",
                "agents.csv:2: key \"phone_type\": value \"x\" is not soft or desk (or SOFT_PHONE / DESK_PHONE)",
                "agents.csv:2: key \"security_profiles\": value \"Agent\" is not an array of strings",
                "agents.csv:2: key \"tags\": value \"{\\\"k\\\":1}\" is not an object whose values are strings",
                "agents.csv:3: the required key \"email\" is missing",
                "agents.csv:3: unknown key \"Email\"; accepted keys: email, first_name, last_name, username, routing_profile, security_profiles, hierarchy_group, phone_type, desk_phone_number, auto_accept, acw_timeout, secondary_email, mobile, directory_user_id, tags, password",
                "agents.csv:3: key \"last_name\": value \"null\" is not a string",
                "agents.csv:4: the line is not a JSON object",
                "agents.csv:5: invalid JSON at character 57: trailing comma",
            ]
        );
    }

    #[test]
    fn jsonl_long_line_and_bad_utf8_are_skipped() {
        let ok = "{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\"}";
        let mut bytes = format!(
            "{ok}\n{{\"email\":\"{}\"}}\n",
            "e".repeat(MAX_JSON_LINE_BYTES)
        )
        .into_bytes();
        bytes.extend_from_slice(b"{\"email\":\"\xff\"}\n");
        bytes.extend_from_slice(
            format!(
                "{{\"email\":\"a@x.example\",\"first_name\":\"{}\",\"last_name\":\"B\"}}\n",
                "n".repeat(MAX_CELL_BYTES + 1)
            )
            .as_bytes(),
        );
        bytes.extend_from_slice(ok.as_bytes());
        let (rows, errors) = read_bytes(bytes);
        assert_eq!(rows.iter().map(|r| r.line).collect::<Vec<_>>(), vec![1, 5]);
        let got: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
        assert_eq!(got[0], "agents.csv:2: the line is longer than 2 MiB");
        assert_eq!(
            got[1],
            "agents.csv:3: the line is not valid UTF-8 (bad byte at offset 10)"
        );
        assert!(
            got[2].starts_with("agents.csv:4: key \"first_name\": value \"nnnn"),
            "{}",
            got[2]
        );
        assert!(
            got[2].ends_with("… (65537 bytes) is larger than 64 KiB"),
            "{}",
            got[2]
        );
        assert_eq!(got.len(), 3);
    }

    #[test]
    fn jsonl_by_extension_and_csv_by_content() {
        let dir = std::env::temp_dir().join(format!("reader-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        // .ndjson whose first line is blank-then-object; .csv starting with '{' is still JSONL.
        let nd = dir.join("agents.NDJSON");
        std::fs::write(
            &nd,
            "\n{\"email\":\"a@x.example\",\"first_name\":\"A\",\"last_name\":\"B\"}\n",
        )
        .unwrap();
        let r = Reader::open(&nd).unwrap();
        assert_eq!(r.format(), Format::JsonLines);
        assert_eq!(r.file_name(), nd.display().to_string());
        let rows: Vec<_> = r.collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].as_ref().unwrap().line, 2);
        // A .jsonl file that is not JSON: reported as JSON errors, not CSV.
        let jl = dir.join("agents.jsonl");
        std::fs::write(&jl, "first name,last name\n").unwrap();
        let errs: Vec<_> = Reader::open(&jl).unwrap().collect();
        assert!(errs[0].as_ref().unwrap_err()[0]
            .message
            .starts_with("invalid JSON"));
        let csv = dir.join("agents.csv");
        std::fs::write(&csv, "first_name,last_name,email\nA,B,a@x.example\n").unwrap();
        let r = Reader::open(&csv).unwrap();
        assert_eq!(r.format(), Format::Native);
        assert_eq!(r.count(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    // ---- robustness ----------------------------------------------------------

    /// Generates a console file row by row, never holding it in memory.
    struct Generated {
        next: u64,
        total: u64,
        pending: Vec<u8>,
    }
    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.pending.is_empty() {
                if self.next > self.total {
                    return Ok(0);
                }
                self.pending = if self.next == 0 {
                    format!("{VOICEFOUNDRY_HEADER}\r\n").into_bytes()
                } else {
                    let i = self.next;
                    format!("Last{i},First{i},u{i}@example.com,Pw{i}Pw{i}Pw,u{i},Basic Routing Profile,Agent|Admin,soft,,yes,{},\"Sales/Region, {i}\"\r\n", i % 100).into_bytes()
                };
                self.next += 1;
            }
            let n = buf.len().min(self.pending.len());
            buf[..n].copy_from_slice(&self.pending[..n]);
            self.pending.drain(..n);
            Ok(n)
        }
    }

    #[test]
    fn streams_100k_rows() {
        let total = 100_000;
        let reader = Reader::from_reader(
            "big.csv",
            Generated {
                next: 0,
                total,
                pending: Vec::new(),
            },
        )
        .unwrap();
        let mut count = 0u64;
        let mut last_line = 0;
        for row in reader {
            let row = row.expect("every generated row is valid");
            count += 1;
            last_line = row.line;
        }
        assert_eq!(count, total);
        assert_eq!(last_line, total + 1);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048)) {
            drain(bytes);
        }

        #[test]
        fn arbitrary_rows_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048), which in 0usize..4) {
            let head: &[u8] = match which {
                0 => FULL_CONSOLE_HEADER.as_bytes(),
                1 => NATIVE_HEADER.as_bytes(),
                2 => b"{\"email\":\"a\",\"first_name\":\"b\",\"last_name\":\"c\"}",
                _ => b"\xEF\xBB\xBF{",
            };
            let mut all = head.to_vec();
            all.extend_from_slice(b"\r\n");
            all.extend_from_slice(&bytes);
            drain(all);
        }

        #[test]
        fn arbitrary_cells_never_panic(cells in proptest::collection::vec("[a-zA-Z0-9|=@/ ,\"\r\n.+-]{0,20}", 16)) {
            let row: Vec<String> = cells.iter().map(|c| format!("\"{}\"", c.replace('"', "\"\""))).collect();
            drain(format!("{FULL_CONSOLE_HEADER}\n{}\n", row.join(",")).into_bytes());
            drain(format!("{NATIVE_HEADER}\n{}\n", row.join(",")).into_bytes());
        }
    }

    fn drain(bytes: Vec<u8>) {
        if let Ok(reader) = open_bytes(bytes) {
            let _ = reader.column_for("email");
            // Errors are fine; only a panic (or an endless iterator) fails.
            for row in reader.take(10_000).flatten() {
                for f in FIELDS {
                    let _ = row.column_for(f);
                }
            }
        }
    }

    // ---- output ---------------------------------------------------------------

    #[test]
    fn neutralize_csv_cell_prefixes_formula_starts() {
        for s in [
            "=1+1",
            "+12145550198",
            "-2",
            "@SUM(A1)",
            "\tx",
            "\rx",
            "=HYPERLINK(\"http://x\")",
        ] {
            assert_eq!(neutralize_csv_cell(s), format!("'{s}"));
        }
        for s in ["", "Jane", "a=b", " =1", "'=1", "1-2", "jdoe@example.com"] {
            assert_eq!(neutralize_csv_cell(s), s);
        }
    }

    #[test]
    fn input_error_display() {
        let e = InputError {
            file: "a.csv".into(),
            line: 7,
            column: Some("x".into()),
            message: "m".into(),
        };
        assert_eq!(e.to_string(), "a.csv:7: m");
        let e = InputError { line: 0, ..e };
        assert_eq!(e.to_string(), "a.csv: m");
    }
}
