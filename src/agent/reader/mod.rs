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

use std::fs::File;
use std::io::{self, BufReader, Cursor, Read};
use std::path::Path;
use std::sync::Arc;

use crate::agent::AgentInput;

mod cells;
mod columns;
mod json;
mod records;
#[cfg(test)]
mod tests;

use cells::*;
use columns::Kind;
use json::*;
use records::*;

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
    /// The row whose cell errors were returned last (see [`Reader::take_partial`]).
    partial: Option<Row>,
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
        Self::build(name, Box::new(file), json_ext, false)
    }

    /// Like [`Reader::open`] for a file of which only the email (or the console's user
    /// login) is read (`offboard`): no other column or key is required.
    pub fn open_emails(path: impl AsRef<Path>) -> Result<Reader, Vec<InputError>> {
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
        Self::build(name, Box::new(file), json_ext, true)
    }

    /// Like [`Reader::open`] on any byte source; `name` is used in errors.
    /// The format is detected from the content only.
    pub fn from_reader(
        name: impl Into<String>,
        source: impl Read + Send + 'static,
    ) -> Result<Reader, Vec<InputError>> {
        Self::build(name.into(), Box::new(source), false, false)
    }

    pub fn format(&self) -> Format {
        self.format
    }

    /// The row whose cell errors the iterator just returned, with those cells left unset:
    /// the caller validates the rest of it too, so that every problem of a row is
    /// reported at once. `None` when the row could not be read as cells at all (shifted
    /// cells, invalid JSON, a repeated header) or after any other item.
    pub fn take_partial(&mut self) -> Option<Row> {
        self.partial.take()
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
        emails_only: bool,
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
                partial: None,
                inner: Inner::Json(Box::new(JsonState {
                    src: BufReader::new(stream),
                    line: 0,
                    buf: Vec::new(),
                    emails_only,
                })),
            });
        }
        let state = CsvState::open(&file, stream, emails_only)?;
        let format = state.header.format;
        let columns = state.header.columns();
        let sources = state.header.sources.clone();
        Ok(Reader {
            file,
            format,
            columns,
            sources,
            partial: None,
            inner: Inner::Csv(Box::new(state)),
        })
    }
}

impl Iterator for Reader {
    type Item = Result<Row, Vec<InputError>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.partial = None;
        let step = match &mut self.inner {
            Inner::Csv(state) => state.next_row(&self.file),
            Inner::Json(state) => state.next_row(&self.file, &self.sources),
            Inner::Done => return None,
        };
        match step {
            Step::Row(r) => Some(r),
            Step::Partial(errors, row) => {
                self.partial = Some(row);
                Some(Err(errors))
            }
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
    /// A row some of whose cells are errors; the row holds the others.
    Partial(Vec<InputError>, Row),
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
