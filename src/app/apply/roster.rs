//! The roster: `apply`'s file read as desired states. Which fields a row manages (its
//! column present; an empty cell keeps the field unless `--clear-empty`), and the row made
//! whole with what AWS shows for every field it leaves alone, so that the one set of agent
//! rules (`agent::validate`, `preflight::resolve`) judges it, as in `batch`.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::agent::reader::{Reader, Row};
use crate::agent::{AgentInput, PhoneType, Secret};
use crate::aws::ConnectUserDetail;

use super::super::Error;

/// The fields `apply` manages, as the reader names them.
pub(crate) const MANAGED: [&str; 12] = [
    "first_name",
    "last_name",
    "routing_profile",
    "security_profiles",
    "hierarchy_group",
    "phone_type",
    "desk_phone_number",
    "auto_accept",
    "acw_timeout",
    "secondary_email",
    "mobile",
    "tags",
];

/// Fields an empty cell can clear (`--clear-empty`): the ones AWS lets be empty.
const CLEARABLE: [&str; 4] = [
    "hierarchy_group",
    "secondary_email",
    "mobile",
    "desk_phone_number",
];

/// Fields that can never be emptied.
const REQUIRED: [&str; 4] = [
    "first_name",
    "last_name",
    "routing_profile",
    "security_profiles",
];

/// What a row says of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Says {
    /// Column absent, or an empty cell without `--clear-empty`: left as it is.
    Keep,
    /// A value.
    Set,
    /// An empty cell with `--clear-empty`: none.
    Clear,
}

/// `sync`: a desired agent's names as the identity provider holds them, kept exactly (case
/// included: SAML compares the RoleSessionName with the Connect username case-sensitively),
/// where a roster's email is normalised.
#[derive(Debug, Clone)]
pub(crate) struct Exact {
    /// The primary email, case kept: the agent's key and its Identity Center email.
    pub email: String,
    /// The Connect username (per `identity_center.role_session_name`), case kept.
    pub username: String,
    /// The Identity Center UserName.
    pub identity_user_name: String,
    /// Why the row says what it says (the mapped groups, in precedence), for the plan.
    pub detail: Option<String>,
}

/// One row of the roster.
#[derive(Debug, Clone)]
pub(crate) struct RosterRow {
    /// Where it is (`file:line`).
    pub at: String,
    /// The email as written, trimmed (the row's key once normalised).
    pub email: String,
    /// The row, as read.
    pub input: AgentInput,
    /// Per managed field, what the row says of it.
    pub says: BTreeMap<&'static str, Says>,
    /// CONNECT_MANAGED: the password, in memory only.
    pub password: Option<Secret>,
    /// What is wrong with the row as written (the fields in question are kept): it is
    /// still planned, so that every problem of the file is reported at once, never run.
    pub problems: Vec<String>,
    /// `sync`: the names kept exactly (a roster's row: none, its email is normalised).
    pub exact: Option<Exact>,
}

impl RosterRow {
    /// From a row of the reader.
    pub fn of(file: &str, row: Row, clear_empty: bool) -> RosterRow {
        let at = format!("{file}:{}", row.line);
        let mut problems = Vec::new();
        let mut says = BTreeMap::new();
        for field in MANAGED {
            let Some(column) = row.column_for(field) else {
                says.insert(field, Says::Keep);
                continue;
            };
            let empty = is_empty(&row.input, field);
            let said = match (empty, clear_empty) {
                (false, _) => Says::Set,
                (true, false) => Says::Keep,
                (true, true) if CLEARABLE.contains(&field) => Says::Clear,
                (true, true) if REQUIRED.contains(&field) => {
                    problems.push(format!(
                        "{at}: column {column:?}: empty: {field} is required and can never be emptied (--clear-empty clears only hierarchy_group, secondary_email, mobile and desk_phone_number); leave the cell with a value, or drop the column to keep every agent's {field}"
                    ));
                    Says::Keep
                }
                // Phone type, auto-accept, after-contact work, tags: nothing to clear to.
                (true, true) => Says::Keep,
            };
            says.insert(field, said);
        }
        RosterRow {
            at,
            email: row.input.email.trim().to_string(),
            password: row.input.password.clone(),
            input: row.input,
            says,
            problems,
            exact: None,
        }
    }

    /// What the row says of `field`.
    pub fn says(&self, field: &str) -> Says {
        self.says.get(field).copied().unwrap_or(Says::Keep)
    }

    /// The row made whole for an agent that exists: every field it keeps takes what AWS
    /// shows (`world`, ids where AWS gives ids: resolution accepts an id), every field it
    /// clears is none. Tags: only the row's own (the others are never touched).
    pub fn merged(&self, world: &ConnectUserDetail) -> AgentInput {
        let mut m = self.input.clone();
        let keep = |f: &str| self.says(f) == Says::Keep;
        if keep("first_name") {
            m.first_name.clone_from(&world.first_name);
        }
        if keep("last_name") {
            m.last_name.clone_from(&world.last_name);
        }
        if keep("routing_profile") {
            m.routing_profile = Some(world.routing_profile_id.clone());
        }
        if keep("security_profiles") {
            m.security_profiles.clone_from(&world.security_profile_ids);
        }
        match self.says("hierarchy_group") {
            Says::Keep => m.hierarchy_group.clone_from(&world.hierarchy_group_id),
            Says::Clear => m.hierarchy_group = None,
            Says::Set => {}
        }
        if keep("phone_type") {
            m.phone_type = PhoneType::from_str(&world.phone.phone_type).ok();
        }
        if keep("auto_accept") {
            m.auto_accept = Some(world.phone.auto_accept);
        }
        if keep("acw_timeout") {
            m.acw_timeout = Some(i64::from(world.phone.acw_timeout));
        }
        match self.says("desk_phone_number") {
            Says::Keep => m
                .desk_phone_number
                .clone_from(&world.phone.desk_phone_number),
            Says::Clear => m.desk_phone_number = None,
            Says::Set => {}
        }
        // A soft phone keeps no desk number it does not need: one left from a desk phone is
        // not the row's business unless it names the number.
        if m.phone_type == Some(PhoneType::Soft) && self.says("desk_phone_number") == Says::Keep {
            m.desk_phone_number = None;
        }
        match self.says("secondary_email") {
            Says::Keep => m.secondary_email.clone_from(&world.secondary_email),
            Says::Clear => m.secondary_email = None,
            Says::Set => {}
        }
        match self.says("mobile") {
            Says::Keep => m.mobile.clone_from(&world.mobile),
            Says::Clear => m.mobile = None,
            Says::Set => {}
        }
        m
    }
}

/// Whether the row's cell for `field` is empty (the reader maps empty cells to none).
fn is_empty(a: &AgentInput, field: &str) -> bool {
    match field {
        "first_name" => a.first_name.trim().is_empty(),
        "last_name" => a.last_name.trim().is_empty(),
        "routing_profile" => a.routing_profile.is_none(),
        "security_profiles" => a.security_profiles.is_empty(),
        "hierarchy_group" => a.hierarchy_group.is_none(),
        "phone_type" => a.phone_type.is_none(),
        "desk_phone_number" => a.desk_phone_number.is_none(),
        "auto_accept" => a.auto_accept.is_none(),
        "acw_timeout" => a.acw_timeout.is_none(),
        "secondary_email" => a.secondary_email.is_none(),
        "mobile" => a.mobile.is_none(),
        "tags" => a.tags.is_empty(),
        _ => true,
    }
}

/// A row that could not be read: who it names (when known) and its problems.
pub(super) type Unread = (Option<String>, Vec<String>);

/// Reads every row of the roster (all problems at once, each `file:line`).
pub(super) fn read(
    path: &std::path::Path,
    clear_empty: bool,
) -> Result<(Vec<RosterRow>, Vec<Unread>), Error> {
    let mut reader = Reader::open_emails(path).map_err(|errs| Error::unreadable(&errs))?;
    let file = reader.file_name().to_string();
    let (mut rows, mut rejected) = (Vec::new(), Vec::new());
    while let Some(next) = reader.next() {
        match next {
            Ok(row) => rows.push(RosterRow::of(&file, row, clear_empty)),
            Err(errs) => {
                let who = (reader.take_partial())
                    .map(|r| r.input.email.trim().to_string())
                    .filter(|e| !e.is_empty());
                rejected.push((who, errs.iter().map(ToString::to_string).collect()));
            }
        }
    }
    Ok((rows, rejected))
}
