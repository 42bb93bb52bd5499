//! What differs between an agent's desired state (its row made whole, resolved to ids) and
//! what AWS shows: the engine's [`Changes`] (ids, one per AWS call) and the plan's
//! [`FieldChange`]s (one per field, values as an admin reads them: names where the instance
//! has names).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::aws::{
    ConnectUserDetail, IdentityInfo, IdentityNames, IdentityUser, Named, PhoneConfig,
};
use crate::preflight::Catalog;
use crate::steps::{Change, Changes, Subject};

use super::roster::{RosterRow, Says};

/// One field's change, as the plan shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    /// The field (`routing_profile`, `tags.team`, `identity_center.given_name`, ...).
    pub field: String,
    /// What AWS shows (`null`: none).
    pub before: Value,
    /// What the row asks for.
    pub after: Value,
}

fn name_of(items: &[Named], id: &str) -> Value {
    let name = items
        .iter()
        .find(|n| n.id == id)
        .map_or(id, |n| n.name.as_str());
    json!(name)
}

fn names_of(items: &[Named], ids: &[String]) -> Value {
    let mut names: Vec<Value> = ids.iter().map(|id| name_of(items, id)).collect();
    names.sort_by_key(|v| v.as_str().unwrap_or_default().to_string());
    Value::Array(names)
}

fn opt(v: &Option<String>) -> Value {
    v.as_ref().map_or(Value::Null, |s| json!(s))
}

/// The changes that bring `world` (the Connect user, and its Identity Center user when it
/// exists) to `desired`.
pub(super) fn diff(
    row: &RosterRow,
    desired: &Subject,
    world: &ConnectUserDetail,
    identity: Option<&IdentityUser>,
    catalog: &Catalog,
) -> (Changes, Vec<FieldChange>) {
    let mut d = Diff {
        changes: Changes::default(),
        shown: Vec::new(),
        catalog,
    };
    d.profiles(desired, world);
    d.phone(desired, world);
    d.identity_info(desired, world);
    if row.says("tags") == Says::Set {
        d.tags(row, world);
    }
    // The Identity Center user's names follow the row's, when the row names the agent.
    let names_given = row.says("first_name") == Says::Set || row.says("last_name") == Says::Set;
    if let (Some(u), true) = (identity, names_given) {
        d.identity_names(desired, u);
    }
    (d.changes, d.shown)
}

/// The changes found so far.
struct Diff<'a> {
    changes: Changes,
    shown: Vec<FieldChange>,
    catalog: &'a Catalog,
}

impl Diff<'_> {
    /// A field the plan shows, when it differs.
    fn show(&mut self, field: &str, before: Value, after: Value) {
        if before != after {
            self.shown.push(FieldChange {
                field: field.to_string(),
                before,
                after,
            });
        }
    }

    /// Routing profile, security profiles (a set), hierarchy group.
    fn profiles(&mut self, desired: &Subject, world: &ConnectUserDetail) {
        let catalog = self.catalog;
        if desired.routing_profile_id != world.routing_profile_id {
            self.show(
                "routing_profile",
                name_of(&catalog.routing_profiles, &world.routing_profile_id),
                name_of(&catalog.routing_profiles, &desired.routing_profile_id),
            );
            self.changes.routing_profile = Some(Change {
                before: world.routing_profile_id.clone(),
                after: desired.routing_profile_id.clone(),
            });
        }
        let mut want = desired.security_profile_ids.clone();
        let mut have = world.security_profile_ids.clone();
        want.sort();
        have.sort();
        have.dedup();
        if want != have {
            self.show(
                "security_profiles",
                names_of(&catalog.security_profiles, &have),
                names_of(&catalog.security_profiles, &want),
            );
            self.changes.security_profiles = Some(Change {
                before: have,
                after: want,
            });
        }
        if desired.hierarchy_group_id != world.hierarchy_group_id {
            let group = |g: &Option<String>| {
                g.as_deref()
                    .map_or(Value::Null, |g| name_of(&catalog.hierarchy_groups, g))
            };
            self.show(
                "hierarchy_group",
                group(&world.hierarchy_group_id),
                group(&desired.hierarchy_group_id),
            );
            self.changes.hierarchy_group = Some(Change {
                before: world.hierarchy_group_id.clone(),
                after: desired.hierarchy_group_id.clone(),
            });
        }
    }

    /// The phone config, whole (a soft phone's desk number is not compared).
    fn phone(&mut self, desired: &Subject, world: &ConnectUserDetail) {
        let a = &desired.agent;
        let phone = PhoneConfig {
            phone_type: a.phone_type.as_aws().to_string(),
            auto_accept: a.auto_accept,
            acw_timeout: a.acw_timeout,
            desk_phone_number: a.desk_phone_number.clone(),
        };
        if crate::steps::update::same_phone(&phone, &world.phone) {
            return;
        }
        let kind = |t: &str| json!(if t == "DESK_PHONE" { "desk" } else { "soft" });
        let was = &world.phone;
        self.show("phone_type", kind(&was.phone_type), kind(&phone.phone_type));
        self.show(
            "auto_accept",
            json!(was.auto_accept),
            json!(phone.auto_accept),
        );
        self.show(
            "acw_timeout",
            json!(was.acw_timeout),
            json!(phone.acw_timeout),
        );
        self.show(
            "desk_phone_number",
            opt(&was.desk_phone_number),
            opt(&phone.desk_phone_number),
        );
        self.changes.phone = Some(Change {
            before: was.clone(),
            after: phone,
        });
    }

    /// Names, secondary email and mobile (UpdateUserIdentityInfo sets them all).
    fn identity_info(&mut self, desired: &Subject, world: &ConnectUserDetail) {
        let a = &desired.agent;
        let before = IdentityInfo {
            first_name: world.first_name.clone(),
            last_name: world.last_name.clone(),
            email: None,
            secondary_email: world.secondary_email.clone(),
            mobile: world.mobile.clone(),
        };
        let after = IdentityInfo {
            first_name: a.first_name.clone(),
            last_name: a.last_name.clone(),
            email: None,
            secondary_email: a.secondary_email.clone(),
            mobile: a.mobile.clone(),
        };
        if after == before {
            return;
        }
        self.show(
            "first_name",
            json!(before.first_name),
            json!(after.first_name),
        );
        self.show("last_name", json!(before.last_name), json!(after.last_name));
        self.show(
            "secondary_email",
            opt(&before.secondary_email),
            opt(&after.secondary_email),
        );
        self.show("mobile", opt(&before.mobile), opt(&after.mobile));
        self.changes.identity_info = Some(Change { before, after });
    }

    /// The row's tags that differ (others are never touched).
    fn tags(&mut self, row: &RosterRow, world: &ConnectUserDetail) {
        let mut before = BTreeMap::new();
        let mut after = BTreeMap::new();
        for (k, v) in &row.input.tags {
            let now = world.tags.get(k).cloned();
            if now.as_deref() != Some(v.as_str()) {
                self.show(&format!("tags.{k}"), opt(&now), json!(v));
                before.insert(k.clone(), now);
                after.insert(k.clone(), Some(v.clone()));
            }
        }
        if !after.is_empty() {
            self.changes.tags = Some(Change { before, after });
        }
    }

    /// The Identity Center user's given, family and display name.
    fn identity_names(&mut self, desired: &Subject, u: &IdentityUser) {
        let a = &desired.agent;
        if u.given_name == a.first_name && u.family_name == a.last_name {
            return;
        }
        let before = IdentityNames {
            given_name: u.given_name.clone(),
            family_name: u.family_name.clone(),
            display_name: u.display_name.clone(),
        };
        let after = IdentityNames {
            given_name: a.first_name.clone(),
            family_name: a.last_name.clone(),
            display_name: a.display_name.clone(),
        };
        for (field, b, n) in [
            ("given_name", &before.given_name, &after.given_name),
            ("family_name", &before.family_name, &after.family_name),
            ("display_name", &before.display_name, &after.display_name),
        ] {
            self.show(&format!("identity_center.{field}"), json!(b), json!(n));
        }
        self.changes.identity_names = Some(Change { before, after });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::reader::Reader;

    fn catalog() -> Catalog {
        let n = |id: &str, name: &str| Named {
            id: id.into(),
            name: name.into(),
        };
        Catalog {
            routing_profiles: vec![n("rp-1", "Basic"), n("rp-2", "Sales")],
            security_profiles: vec![n("sp-1", "Agent"), n("sp-2", "Supervisor")],
            hierarchy_groups: vec![n("hg-1", "Tier 1")],
        }
    }

    fn row(csv: &str, clear_empty: bool) -> RosterRow {
        let mut r =
            Reader::from_reader("roster.csv", std::io::Cursor::new(csv.to_string())).unwrap();
        let row = r.next().unwrap().unwrap();
        let r = RosterRow::of("roster.csv", row, clear_empty);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        r
    }

    fn world() -> ConnectUserDetail {
        ConnectUserDetail {
            first_name: "Ana".into(),
            last_name: "Silva".into(),
            routing_profile_id: "rp-1".into(),
            security_profile_ids: vec!["sp-1".into()],
            hierarchy_group_id: Some("hg-1".into()),
            phone: PhoneConfig {
                phone_type: "SOFT_PHONE".into(),
                auto_accept: false,
                acw_timeout: 0,
                desk_phone_number: None,
            },
            tags: [("team".to_string(), "a".to_string())].into(),
            ..Default::default()
        }
    }

    fn planned(r: &RosterRow) -> (Changes, Vec<FieldChange>) {
        let w = world();
        let input = r.merged(&w);
        let spec = crate::agent::validate(
            &input,
            &crate::agent::Defaults::default(),
            crate::agent::IdentityMode::Saml,
        )
        .unwrap();
        let subject = crate::preflight::resolve(spec, &catalog()).unwrap();
        diff(r, &subject, &w, None, &catalog())
    }

    #[test]
    fn a_file_with_only_email_and_routing_profile_changes_only_the_routing_profile() {
        let r = row(
            "email,first_name,last_name,routing_profile\nana@example.com,,,Sales\n",
            false,
        );
        let (c, shown) = planned(&r);
        assert_eq!(
            shown,
            vec![FieldChange {
                field: "routing_profile".into(),
                before: json!("Basic"),
                after: json!("Sales")
            }]
        );
        assert!(
            c.routing_profile.is_some() && c.hierarchy_group.is_none() && c.identity_info.is_none()
        );
    }

    #[test]
    fn an_empty_cell_keeps_the_field_unless_clear_empty_and_names_compare_by_id() {
        let csv = "email,first_name,last_name,routing_profile,hierarchy_group\nana@example.com,Ana,Silva,rp-1,\n";
        let (c, shown) = planned(&row(csv, false));
        assert!(
            c.is_empty(),
            "the routing profile named by id is the same one: {shown:?}"
        );
        let (c, shown) = planned(&row(csv, true));
        assert_eq!(shown.len(), 1, "{shown:?}");
        assert_eq!(shown[0].field, "hierarchy_group");
        assert_eq!(shown[0].after, Value::Null);
        assert_eq!(c.hierarchy_group.unwrap().after, None);
    }

    #[test]
    fn tags_in_the_row_are_set_and_others_kept() {
        let r = row(
            "email,first_name,last_name,tags\nana@example.com,,,team=a|site=lis\n",
            false,
        );
        let (c, shown) = planned(&r);
        assert_eq!(shown.len(), 1, "team=a is already there: {shown:?}");
        assert_eq!(shown[0].field, "tags.site");
        let t = c.tags.unwrap();
        assert_eq!(t.before, [("site".to_string(), None)].into());
        assert_eq!(
            t.after,
            [("site".to_string(), Some("lis".to_string()))].into()
        );
    }

    #[test]
    fn a_required_field_can_never_be_emptied() {
        let mut r = Reader::from_reader(
            "roster.csv",
            std::io::Cursor::new(
                "email,first_name,last_name,routing_profile\nana@example.com,Ana,Silva,\n",
            ),
        )
        .unwrap();
        let row = r.next().unwrap().unwrap();
        let problems = RosterRow::of("roster.csv", row, true).problems;
        assert!(
            problems[0].starts_with("roster.csv:2: column \"routing_profile\""),
            "{problems:?}"
        );
        assert!(problems[0].contains("can never be emptied"), "{problems:?}");
    }
}
