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
    use serde_json::Value;
    let mut errors = Vec::new();
    let mut input = AgentInput::default();
    let required: &[&str] = if emails_only {
        &["email"]
    } else {
        &["email", "first_name", "last_name"]
    };
    for &required in required {
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

// ---------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------
