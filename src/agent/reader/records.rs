//! The two CSV dialects: record reading with physical line numbers and a size bound, the header's analysis, and each row's cells.

use std::collections::HashMap;
use std::io::{self, Cursor, Read};
use std::sync::Arc;

use crate::agent::AgentInput;

use super::*;

// ---------------------------------------------------------------------------
// CSV
// ---------------------------------------------------------------------------

/// Raised by [`Limited`] when one record grows past [`MAX_RECORD_BYTES`].
#[derive(Debug)]
pub(super) struct RecordTooLarge;
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
pub(super) struct Limited {
    pub(super) inner: Box<dyn Read + Send>,
    pub(super) read: u64,
    pub(super) record_start: u64,
    pub(super) eof: bool,
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

pub(super) struct Header {
    pub(super) format: Format,
    pub(super) line: u64,
    /// Trimmed header text per column, shared with every row's [`Sources`].
    pub(super) written: Arc<[String]>,
    pub(super) normalized: Vec<String>,
    pub(super) kinds: Vec<Option<Kind>>,
    /// Default field → column mapping (the first column of each field).
    pub(super) sources: Sources,
}

impl Header {
    pub(super) fn columns(&self) -> Vec<Column> {
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

pub(super) struct CsvState {
    pub(super) rdr: csv::Reader<Limited>,
    pub(super) record: csv::ByteRecord,
    pub(super) header: Header,
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
pub(super) fn read_record(
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
pub(super) fn cell_bytes(record: &csv::ByteRecord, i: usize) -> &[u8] {
    let raw = record.get(i).unwrap_or(b"");
    if i + 1 == record.len() {
        raw.strip_suffix(b"\r").unwrap_or(raw)
    } else {
        raw
    }
}

pub(super) fn is_blank(b: &[u8]) -> bool {
    b.iter().all(u8::is_ascii_whitespace)
}

pub(super) fn record_is_blank(r: &csv::ByteRecord) -> bool {
    r.iter().all(is_blank)
}

/// Number of cells up to and including the last non-blank one.
pub(super) fn used_width(
    cells: impl DoubleEndedIterator<Item = bool> + ExactSizeIterator,
) -> usize {
    let n = cells.len();
    n - cells.rev().take_while(|blank| *blank).count()
}

impl CsvState {
    pub(super) fn open(
        file: &str,
        stream: Box<dyn Read + Send>,
        emails_only: bool,
    ) -> Result<CsvState, Vec<InputError>> {
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
        let header = analyze_header(file, line, &record, emails_only)?;
        Ok(CsvState {
            rdr,
            record,
            header,
        })
    }

    pub(super) fn next_row(&mut self, file: &str) -> Step {
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
            return self.parse_row(file, line);
        }
    }

    pub(super) fn is_header_repeat(&self) -> bool {
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

    /// One row: every cell applied; a cell that fails is an error and is left unset, so
    /// the rest of the row can still be validated ([`Step::Partial`]).
    pub(super) fn parse_row(&self, file: &str, line: u64) -> Step {
        if let Some(e) = self.shifted_cells(file, line) {
            return Step::Row(Err(vec![e]));
        }
        let header = &self.header;
        let mut errors = Vec::new();
        let mut input = AgentInput::default();
        let mut sources = header.sources.clone();
        let (path, levels) = self.apply_cells(file, line, &mut input, &mut errors);
        match header.one_hierarchy(file, line, path, levels) {
            Ok(Some((v, i))) => {
                input.hierarchy_group = Some(v);
                sources.set("hierarchy_group", i);
            }
            Ok(None) => {}
            Err(e) => errors.push(e),
        }
        header.console_email_from_login(&mut input, &mut sources);

        let row = Row {
            line,
            input,
            sources,
        };
        if errors.is_empty() {
            Step::Row(Ok(row))
        } else {
            Step::Partial(errors, row)
        }
    }

    /// More cells than the header has columns: cells are shifted (an unquoted comma), their
    /// values are meaningless, and the password may now sit under another header.
    fn shifted_cells(&self, file: &str, line: u64) -> Option<InputError> {
        let width = self.header.kinds.len();
        let used = used_width(self.record.iter().map(is_blank));
        (used > width).then(|| InputError {
            file: file.to_string(),
            line,
            column: None,
            message: format!(
                "the row has {used} cells but the header has {width} columns \
                 (a value containing a comma must be in double quotes)"
            ),
        })
    }

    /// Applies every cell to `input` (a cell that fails is an error in `errors`, and left
    /// unset); returns the hierarchy group as its two column kinds spell it, with their
    /// column indexes, for [`Header::one_hierarchy`].
    fn apply_cells(
        &self,
        file: &str,
        line: u64,
        input: &mut AgentInput,
        errors: &mut Vec<InputError>,
    ) -> (Option<Placed>, Option<Placed>) {
        let header = &self.header;
        let mut path_hierarchy: Option<Placed> = None;
        let mut level_hierarchy: Option<Placed> = None;
        for (index, kind) in header.kinds.iter().enumerate() {
            let raw = cell_bytes(&self.record, index);
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
                header: &header.written[index],
                redact: kind == Kind::Password,
            };
            let text = match cell_text(raw, &cell) {
                Ok(t) => t,
                Err(e) => {
                    errors.push(e);
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
                    if let Err(e) = apply_cell(kind, text, input, &cell) {
                        errors.push(e);
                    }
                }
            }
        }
        (path_hierarchy, level_hierarchy)
    }
}

/// A value and the index of the column it came from.
type Placed = (String, usize);

/// A cell's text: at most [`MAX_CELL_BYTES`], valid UTF-8.
fn cell_text<'r>(raw: &'r [u8], cell: &Cell) -> Result<&'r str, InputError> {
    let shown = || {
        if cell.redact {
            REDACTED.to_string()
        } else {
            quote_bytes(raw)
        }
    };
    if raw.len() > MAX_CELL_BYTES {
        return Err(cell.error_shown(
            &shown(),
            &format!("is larger than {} KiB", MAX_CELL_BYTES / 1024),
        ));
    }
    std::str::from_utf8(raw).map_err(|e| {
        cell.error_shown(
            &shown(),
            &format!(
                "is not valid UTF-8 (bad byte at offset {}); save the file as \
                 \"CSV UTF-8 (Comma delimited)\"",
                e.valid_up_to()
            ),
        )
    })
}

impl Header {
    /// The hierarchy group of a row from its path column and its level columns (either may
    /// be empty), with the column it came from; an error when both are filled and differ.
    fn one_hierarchy(
        &self,
        file: &str,
        line: u64,
        path: Option<Placed>,
        levels: Option<Placed>,
    ) -> Result<Option<Placed>, InputError> {
        match (path, levels) {
            (Some((a, ai)), Some((b, bi))) if a != b => Err(InputError {
                file: file.to_string(),
                line,
                column: Some(self.written[ai].clone()),
                message: format!(
                    "columns {:?} and {:?} disagree: {} vs {} (fill one of them)",
                    self.written[ai],
                    self.written[bi],
                    quote(&a),
                    quote(&b)
                ),
            }),
            (Some(found), _) | (None, Some(found)) => Ok(Some(found)),
            (None, None) => Ok(None),
        }
    }

    /// The console's bulk-upload file may leave the email empty: the login, when it is an
    /// email, is the email then.
    fn console_email_from_login(&self, input: &mut AgentInput, sources: &mut Sources) {
        if self.format == Format::Console && input.email.is_empty() {
            if let Some(login) = input.username.as_deref().filter(|u| u.contains('@')) {
                input.email = login.to_string();
                if let Some(i) = self.kinds.iter().position(|k| *k == Some(Kind::Username)) {
                    sources.set("email", i);
                }
            }
        }
    }
}

pub(super) fn csv_fatal(file: &str, line: u64, e: csv::Error) -> InputError {
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

/// Reads the header row: its cells (UTF-8, no NUL, comma-separated), which dialect it is,
/// each column's kind (unknown and duplicate columns are errors, all at once), the required
/// columns, and where each field is read from.
pub(super) fn analyze_header(
    file: &str,
    line: u64,
    record: &csv::ByteRecord,
    emails_only: bool,
) -> Result<Header, Vec<InputError>> {
    let at = HeaderErr { file, line };
    let written = header_cells(&at, record).map_err(|e| vec![e])?;
    check_separator(&at, &written).map_err(|e| vec![e])?;
    let normalized: Vec<String> = written.iter().map(|w| columns::normalize(w)).collect();
    let format = detect_format(&at, &normalized).map_err(|e| vec![e])?;
    let (kinds, seen, mut errors) = map_columns(&at, &written, &normalized, format);
    errors.extend(missing_columns(&at, format, &seen, emails_only));
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

/// Where a header problem is: the file and the header's line.
struct HeaderErr<'a> {
    file: &'a str,
    line: u64,
}

impl HeaderErr<'_> {
    fn err(&self, column: Option<String>, message: impl Into<String>) -> InputError {
        InputError {
            file: self.file.to_string(),
            line: self.line,
            column,
            message: message.into(),
        }
    }
}

/// The header's cells, trimmed; a UTF-16, non-UTF-8 or CR-only file is refused.
fn header_cells(at: &HeaderErr, record: &csv::ByteRecord) -> Result<Vec<String>, InputError> {
    if record.iter().any(|c| c.contains(&0)) {
        return Err(at.err(
            None,
            "the header contains NUL bytes: the file is probably UTF-16; save it as \
             \"CSV UTF-8 (Comma delimited)\"",
        ));
    }
    let mut written = Vec::with_capacity(record.len());
    for i in 0..record.len() {
        match std::str::from_utf8(cell_bytes(record, i)) {
            Ok(t) if t.trim().contains('\r') => {
                return Err(at.err(
                    None,
                    "the file has old Mac line endings (CR only); save it as \"CSV UTF-8 (Comma \
                     delimited)\"",
                ))
            }
            Ok(t) => written.push(t.trim().to_string()),
            Err(_) => return Err(at.err(
                None,
                "the header is not valid UTF-8; save the file as \"CSV UTF-8 (Comma delimited)\"",
            )),
        }
    }
    Ok(written)
}

/// One non-blank column holding `;` or a tab: the file is not comma-separated.
fn check_separator(at: &HeaderErr, written: &[String]) -> Result<(), InputError> {
    let non_blank: Vec<&String> = written.iter().filter(|w| !w.is_empty()).collect();
    let [only] = non_blank.as_slice() else {
        return Ok(());
    };
    let sep = if only.contains(';') {
        "';'"
    } else if only.contains('\t') {
        "a tab"
    } else {
        return Ok(());
    };
    Err(at.err(
        None,
        format!("the file is not comma-separated: the header has one column containing {sep}"),
    ))
}

/// The console template or the native header, by the first-name column, else by which
/// dialect's names are more numerous; neither: not a header.
fn detect_format(at: &HeaderErr, normalized: &[String]) -> Result<Format, InputError> {
    let console_hits = (normalized.iter())
        .filter(|n| columns::console_kind(n).is_some())
        .count();
    let native_hits = (normalized.iter())
        .filter(|n| columns::native_kind(n).is_some())
        .count();
    if normalized.iter().any(|n| n == "first name") {
        Ok(Format::Console)
    } else if normalized.iter().any(|n| n == "first_name") {
        Ok(Format::Native)
    } else if console_hits == 0 && native_hits == 0 {
        Err(at.err(
            None,
            "the first row is not a header: no column name is recognized; expected the Connect \
             console template header (\"first name,last name,email address,…\") or the native \
             header (\"email,first_name,last_name,…\")",
        ))
    } else if console_hits >= native_hits {
        Ok(Format::Console)
    } else {
        Ok(Format::Native)
    }
}

/// Each column's kind in `format`, the first column of each kind, and the unknown and
/// duplicate columns as errors.
fn map_columns(
    at: &HeaderErr,
    written: &[String],
    normalized: &[String],
    format: Format,
) -> (Vec<Option<Kind>>, HashMap<Kind, usize>, Vec<InputError>) {
    let console = format == Format::Console;
    let table = if console {
        columns::CONSOLE_COLUMNS
    } else {
        columns::NATIVE_COLUMNS
    };
    let mut errors = Vec::new();
    let mut kinds = Vec::with_capacity(written.len());
    let mut seen: HashMap<Kind, usize> = HashMap::new();
    for (i, norm) in normalized.iter().enumerate() {
        if norm.is_empty() {
            kinds.push(None);
            continue;
        }
        let kind = if console {
            columns::console_kind(norm)
        } else {
            columns::native_kind(norm)
        };
        match kind {
            None => errors.push(at.err(
                Some(written[i].clone()),
                format!(
                    "unknown column {} (column {}); accepted columns: {}",
                    quote(&written[i]),
                    i + 1,
                    columns::accepted(table)
                ),
            )),
            Some(k) => match seen.get(&k) {
                Some(&first) => {
                    let what = if normalized[first] == *norm {
                        format!("column {:?} appears twice", written[i])
                    } else {
                        format!(
                            "column {:?} duplicates column {:?}",
                            written[i], written[first]
                        )
                    };
                    errors.push(at.err(
                        Some(written[i].clone()),
                        format!("{what} (columns {} and {})", first + 1, i + 1),
                    ));
                }
                None => {
                    seen.insert(k, i);
                }
            },
        }
        kinds.push(kind);
    }
    (kinds, seen, errors)
}

/// The required columns `format` lacks (only the email one when only emails are read).
fn missing_columns(
    at: &HeaderErr,
    format: Format,
    seen: &HashMap<Kind, usize>,
    emails_only: bool,
) -> Vec<InputError> {
    let has = |k: Kind| seen.contains_key(&k);
    let missing = |name: &str| at.err(None, format!("the required column {name:?} is missing"));
    let mut errors = Vec::new();
    match format {
        Format::Console => {
            for (k, name) in [
                (Kind::FirstName, "first name"),
                (Kind::LastName, "last name"),
            ] {
                if !has(k) && !emails_only {
                    errors.push(missing(name));
                }
            }
            if !has(Kind::Email) && !has(Kind::Username) {
                errors.push(at.err(
                    None,
                    "the header needs an \"email address\" or a \"user login\" column",
                ));
            }
        }
        _ => {
            for (k, name) in [
                (Kind::Email, "email"),
                (Kind::FirstName, "first_name"),
                (Kind::LastName, "last_name"),
            ] {
                let needed = k == Kind::Email || !emails_only;
                if needed && !has(k) {
                    errors.push(missing(name));
                }
            }
        }
    }
    errors
}

// ---------------------------------------------------------------------------
// Cells
// ---------------------------------------------------------------------------
