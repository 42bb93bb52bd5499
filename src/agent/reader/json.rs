//! JSON Lines: one object per line, each line bounded in size.

use std::io::{self, BufRead, BufReader, Read};

use crate::agent::{AgentInput, PhoneType, Secret};

use super::*;

pub(super) struct JsonState {
    pub(super) src: BufReader<Box<dyn Read + Send>>,
    pub(super) line: u64,
    pub(super) buf: Vec<u8>,
    /// Only the email is required (offboard).
    pub(super) emails_only: bool,
}

/// Reads one line (without `\n`) into `buf`, keeping at most `max` bytes and
/// discarding the rest. `Ok(None)` at end of input; `Ok(Some(true))` if cut.
pub(super) fn read_line_bounded(
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
    pub(super) fn next_row(&mut self, file: &str, sources: &Sources) -> Step {
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
            return json_row(file, line_start, map, sources, self.emails_only);
        }
    }
}

pub(super) fn json_row(
    file: &str,
    line: u64,
    map: serde_json::Map<String, serde_json::Value>,
    sources: &Sources,
    emails_only: bool,
) -> Step {
    let error = |column: &str, message: String| InputError {
        file: file.to_string(),
        line,
        column: Some(column.to_string()),
        message,
    };
    let mut errors = Vec::new();
    let mut input = AgentInput::default();
    let required: &[&str] = if emails_only {
        &["email"]
    } else {
        &["email", "first_name", "last_name"]
    };
    for &required in required {
        if !map.contains_key(required) {
            errors.push(error(
                required,
                format!("the required key {required:?} is missing"),
            ));
        }
    }
    for (key, value) in &map {
        let Some(field) = FIELDS.iter().copied().find(|f| f == key) else {
            errors.push(error(
                key,
                format!(
                    "unknown key {}; accepted keys: {}",
                    quote(key),
                    FIELDS.join(", ")
                ),
            ));
            continue;
        };
        if let Err(rule) = set_field(&mut input, field, value) {
            let shown = shown_value(key, value);
            errors.push(error(key, format!("key {key:?}: value {shown} {rule}")));
        }
    }
    let row = Row {
        line,
        input,
        sources: sources.clone(),
    };
    if errors.is_empty() {
        Step::Row(Ok(row))
    } else {
        Step::Partial(errors, row)
    }
}

/// A rejected value as an error shows it: quoted, and a password never.
fn shown_value(key: &str, value: &serde_json::Value) -> String {
    if key == "password" {
        return REDACTED.to_string();
    }
    match value {
        serde_json::Value::String(s) => quote(s),
        other => quote(&other.to_string()),
    }
}

/// Sets one field (a name from [`FIELDS`]) of `input` from its JSON value, or says which
/// rule the value breaks.
fn set_field(input: &mut AgentInput, field: &str, value: &serde_json::Value) -> Result<(), String> {
    use serde_json::Value;
    match field {
        "email" => input.email = json_string(value, true)?.unwrap_or_default(),
        "first_name" => input.first_name = json_string(value, true)?.unwrap_or_default(),
        "last_name" => input.last_name = json_string(value, true)?.unwrap_or_default(),
        "username" => input.username = json_string(value, false)?,
        "routing_profile" => input.routing_profile = json_string(value, false)?,
        "hierarchy_group" => input.hierarchy_group = json_string(value, false)?,
        "desk_phone_number" => input.desk_phone_number = json_string(value, false)?,
        "secondary_email" => input.secondary_email = json_string(value, false)?,
        "mobile" => input.mobile = json_string(value, false)?,
        "directory_user_id" => input.directory_user_id = json_string(value, false)?,
        "password" => input.password = json_string(value, false)?.map(Secret::new),
        "phone_type" => {
            input.phone_type =
                match json_string(value, false)? {
                    None => None,
                    Some(s) => Some(s.parse::<PhoneType>().map_err(|_| {
                        "is not soft or desk (or SOFT_PHONE / DESK_PHONE)".to_string()
                    })?),
                }
        }
        "auto_accept" => {
            input.auto_accept = match value {
                Value::Null => None,
                Value::Bool(b) => Some(*b),
                _ => return Err("is not true or false".into()),
            }
        }
        "acw_timeout" => {
            let rule = "is not a whole number of seconds";
            input.acw_timeout = match value {
                Value::Null => None,
                Value::Number(n) => Some(n.as_i64().ok_or(rule)?),
                _ => return Err(rule.into()),
            }
        }
        "security_profiles" => input.security_profiles = json_strings(value)?,
        "tags" => input.tags = json_tags(value)?,
        _ => unreachable!("every field is handled"),
    }
    Ok(())
}

fn too_long(s: &str) -> bool {
    s.len() > MAX_CELL_BYTES
}

fn size_rule() -> String {
    format!("is larger than {} KiB", MAX_CELL_BYTES / 1024)
}

/// A string, or None for null (required keys reject null).
fn json_string(value: &serde_json::Value, required: bool) -> Result<Option<String>, String> {
    use serde_json::Value;
    match value {
        Value::String(s) if too_long(s) => Err(size_rule()),
        Value::String(s) => Ok(Some(s.clone())),
        Value::Null if !required => Ok(None),
        _ => Err("is not a string".into()),
    }
}

/// An array of strings (null: none).
fn json_strings(value: &serde_json::Value) -> Result<Vec<String>, String> {
    use serde_json::Value;
    let rule = "is not an array of strings";
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .map(|item| match item {
                Value::String(s) if too_long(s) => Err(size_rule()),
                Value::String(s) => Ok(s.clone()),
                _ => Err(rule.to_string()),
            })
            .collect(),
        _ => Err(rule.into()),
    }
}

/// An object whose values are strings, as (key, value) pairs (null: none).
fn json_tags(value: &serde_json::Value) -> Result<Vec<(String, String)>, String> {
    use serde_json::Value;
    let rule = "is not an object whose values are strings";
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) if too_long(s) || too_long(k) => Err(size_rule()),
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(rule.to_string()),
            })
            .collect(),
        _ => Err(rule.into()),
    }
}

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------
