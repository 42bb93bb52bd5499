//! Header → field mapping for the two CSV dialects read by [`super::Reader`]:
//! the Amazon Connect console bulk-upload template (every generation and
//! spelling we know of) and this tool's native snake_case header.
//!
//! Matching is done on [`normalize`]d text (lower-case, runs of whitespace
//! collapsed, no spaces next to `|`, `/`, `(` or `)`), so `  First   Name`,
//! `ACW timeout ( seconds )` and `FIRST NAME` all match. Nothing is guessed:
//! a header that is not listed here is an unknown column.

/// What a column holds, and so how its cells are parsed. Several kinds can
/// feed one [`AgentInput`](crate::agent::AgentInput) field (see [`Kind::field`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Kind {
    Email,
    FirstName,
    LastName,
    Username,
    RoutingProfile,
    SecurityProfiles,
    /// Console `agent hierarchy` / `UserHierarchy`: levels separated by `/`.
    HierarchyPath,
    /// Console `user_hierarchy_1|user_hierarchy_2`: levels separated by `|`.
    HierarchyLevels,
    /// Native `hierarchy_group`: name, id or `/` path, passed through.
    HierarchyGroup,
    PhoneType,
    DeskPhoneNumber,
    AutoAccept,
    AcwTimeout,
    SecondaryEmail,
    Mobile,
    DirectoryUserId,
    /// Console `tags`: `key1|value1||key2|value2`.
    ConsoleTags,
    /// Native `tags`: `key1=value1|key2=value2`.
    NativeTags,
    Password,
}

impl Kind {
    /// The `AgentInput` field (snake_case name) this column fills.
    pub(super) fn field(self) -> &'static str {
        match self {
            Kind::Email => "email",
            Kind::FirstName => "first_name",
            Kind::LastName => "last_name",
            Kind::Username => "username",
            Kind::RoutingProfile => "routing_profile",
            Kind::SecurityProfiles => "security_profiles",
            Kind::HierarchyPath | Kind::HierarchyLevels | Kind::HierarchyGroup => "hierarchy_group",
            Kind::PhoneType => "phone_type",
            Kind::DeskPhoneNumber => "desk_phone_number",
            Kind::AutoAccept => "auto_accept",
            Kind::AcwTimeout => "acw_timeout",
            Kind::SecondaryEmail => "secondary_email",
            Kind::Mobile => "mobile",
            Kind::DirectoryUserId => "directory_user_id",
            Kind::ConsoleTags | Kind::NativeTags => "tags",
            Kind::Password => "password",
        }
    }
}

/// Console template headers, in the documented column order, with the
/// alternative spellings seen in the wild. Two spellings of one kind in one
/// file are a duplicate column.
pub(super) const CONSOLE_COLUMNS: &[(&str, Kind)] = &[
    ("first name", Kind::FirstName),
    ("last name", Kind::LastName),
    ("email address", Kind::Email),
    ("secondary email address", Kind::SecondaryEmail),
    ("secondary email", Kind::SecondaryEmail),
    ("mobile", Kind::Mobile),
    ("password", Kind::Password),
    ("user login", Kind::Username),
    ("agent hierarchy", Kind::HierarchyPath),
    ("UserHierarchy", Kind::HierarchyPath),
    ("routing profile name", Kind::RoutingProfile),
    (
        "security_profile_name_1|security_profile_name_2",
        Kind::SecurityProfiles,
    ),
    ("user_hierarchy_1|user_hierarchy_2", Kind::HierarchyLevels),
    ("phone type (soft/desk)", Kind::PhoneType),
    ("phone number", Kind::DeskPhoneNumber),
    ("soft phone auto accept (yes/no)", Kind::AutoAccept),
    ("ACW timeout (seconds)", Kind::AcwTimeout),
    ("tags", Kind::ConsoleTags),
];

/// Native headers: exactly the `AgentInput` field names.
pub(super) const NATIVE_COLUMNS: &[(&str, Kind)] = &[
    ("email", Kind::Email),
    ("first_name", Kind::FirstName),
    ("last_name", Kind::LastName),
    ("username", Kind::Username),
    ("routing_profile", Kind::RoutingProfile),
    ("security_profiles", Kind::SecurityProfiles),
    ("hierarchy_group", Kind::HierarchyGroup),
    ("phone_type", Kind::PhoneType),
    ("desk_phone_number", Kind::DeskPhoneNumber),
    ("auto_accept", Kind::AutoAccept),
    ("acw_timeout", Kind::AcwTimeout),
    ("secondary_email", Kind::SecondaryEmail),
    ("mobile", Kind::Mobile),
    ("directory_user_id", Kind::DirectoryUserId),
    ("tags", Kind::NativeTags),
    ("password", Kind::Password),
];

/// Lower-cases, collapses whitespace runs (Unicode whitespace, so Excel's
/// non-breaking spaces count) and drops spaces next to `|`, `/`, `(`, `)`.
pub(super) fn normalize(header: &str) -> String {
    let lower = header.to_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let mut out = String::with_capacity(lower.len());
    for (i, w) in words.iter().enumerate() {
        if i > 0 {
            let prev = out.chars().next_back();
            let next = w.chars().next();
            let sticky = |c: Option<char>| matches!(c, Some('|' | '/' | '(' | ')'));
            if !sticky(prev) && !sticky(next) {
                out.push(' ');
            }
        }
        out.push_str(w);
    }
    out
}

fn lookup(table: &[(&str, Kind)], normalized: &str) -> Option<Kind> {
    table
        .iter()
        .find(|(name, _)| normalize(name) == normalized)
        .map(|&(_, kind)| kind)
}

/// The kind of a console-template column, from its normalized header.
pub(super) fn console_kind(normalized: &str) -> Option<Kind> {
    lookup(CONSOLE_COLUMNS, normalized)
}

/// The kind of a native column, from its normalized header.
pub(super) fn native_kind(normalized: &str) -> Option<Kind> {
    lookup(NATIVE_COLUMNS, normalized)
}

/// `"a", "b" (or "c"), …` for error messages listing the accepted columns.
pub(super) fn accepted(table: &[(&str, Kind)]) -> String {
    let mut out = String::new();
    let mut prev: Option<Kind> = None;
    for &(name, kind) in table {
        if prev == Some(kind) {
            out.push_str(&format!(" (or {name:?})"));
        } else {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push_str(&format!("{name:?}"));
        }
        prev = Some(kind);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalize_tolerates_case_and_spaces() {
        assert_eq!(normalize("  First   Name "), "first name");
        assert_eq!(
            normalize("ACW timeout ( seconds )"),
            normalize("ACW timeout (seconds)")
        );
        assert_eq!(
            normalize("phone type (soft / desk)"),
            normalize("phone type (soft/desk)")
        );
        assert_eq!(
            normalize("security_profile_name_1 | security_profile_name_2"),
            normalize("security_profile_name_1|security_profile_name_2")
        );
        assert_eq!(normalize("first\u{a0}name"), "first name");
        assert_ne!(normalize("firstname"), normalize("first name"));
    }

    #[test]
    fn every_console_spelling_maps() {
        for &(name, kind) in CONSOLE_COLUMNS {
            assert_eq!(console_kind(&normalize(name)), Some(kind), "{name}");
            assert_eq!(
                console_kind(&normalize(&name.to_uppercase())),
                Some(kind),
                "{name}"
            );
        }
        assert_eq!(
            console_kind(&normalize("userhierarchy")),
            Some(Kind::HierarchyPath)
        );
        assert_eq!(console_kind("first_name"), None);
        assert_eq!(console_kind("email"), None);
    }

    #[test]
    fn every_native_name_maps_to_its_field() {
        for &(name, kind) in NATIVE_COLUMNS {
            assert_eq!(native_kind(name), Some(kind));
            assert_eq!(kind.field(), name);
        }
        assert_eq!(native_kind("first name"), None);
    }

    #[test]
    fn accepted_lists_alternatives() {
        let s = accepted(CONSOLE_COLUMNS);
        assert!(s.starts_with("\"first name\", \"last name\""), "{s}");
        assert!(
            s.contains("\"agent hierarchy\" (or \"UserHierarchy\")"),
            "{s}"
        );
        assert!(
            s.contains("\"secondary email address\" (or \"secondary email\")"),
            "{s}"
        );
    }
}
