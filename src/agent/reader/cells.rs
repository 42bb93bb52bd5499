//! Cell syntax that only the file format defines: yes/no, lists, hierarchy levels, tag pairs, and where each cell goes in the agent's input.

use crate::agent::{AgentInput, PhoneType, Secret};

use super::*;

/// Context of one cell, for building its errors.
pub(super) struct Cell<'a> {
    pub(super) file: &'a str,
    pub(super) line: u64,
    pub(super) header: &'a str,
    pub(super) redact: bool,
}

impl Cell<'_> {
    pub(super) fn error_shown(&self, shown: &str, rule: &str) -> InputError {
        InputError {
            file: self.file.to_string(),
            line: self.line,
            column: Some(self.header.to_string()),
            message: format!("column {:?}: value {shown} {rule}", self.header),
        }
    }

    pub(super) fn error(&self, value: &str, rule: &str) -> InputError {
        let shown = if self.redact {
            REDACTED.to_string()
        } else {
            quote(value)
        };
        self.error_shown(&shown, rule)
    }
}

pub(super) fn opt(text: &str) -> Option<String> {
    let t = text.trim();
    (!t.is_empty()).then(|| t.to_string())
}

pub(super) fn apply_cell(
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

pub(super) fn parse_yes_no(t: &str) -> Option<bool> {
    if t.eq_ignore_ascii_case("yes") || t.eq_ignore_ascii_case("true") {
        Some(true)
    } else if t.eq_ignore_ascii_case("no") || t.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

/// `1.21456E+10`: what Excel shows (and saves) for a long number in a General cell.
pub(super) fn looks_like_excel_number(t: &str) -> bool {
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
pub(super) fn hierarchy(text: &str, sep: char) -> Result<Option<String>, String> {
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

pub(super) fn push_tag(
    tags: &mut Vec<(String, String)>,
    key: &str,
    value: &str,
) -> Result<(), String> {
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
pub(super) fn parse_console_tags(t: &str) -> Result<Vec<(String, String)>, String> {
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
pub(super) fn parse_native_tags(t: &str) -> Result<Vec<(String, String)>, String> {
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
