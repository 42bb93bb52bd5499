//! What an event from the queue asks of `sync`: a [`Hint`], never the new state. An
//! EventBridge event (directly, or wrapped in an SNS notification) of a CloudTrail-recorded
//! Identity Store call — the Identity Store API (`identitystore.amazonaws.com`) or SCIM
//! provisioning from the identity provider (`identitystore-scim.amazonaws.com`) — names a
//! user or a group; sync then re-reads that user's or group's current state and reconciles
//! its agents only. The rules:
//! - a call that failed (`errorCode`), a read (`List…`, `Get…`, `Describe…`, `IsMemberIn…`),
//!   another identity store, or another service's event changes nothing: [`Hint::Nothing`];
//! - anything that cannot be read as such an event, or a write that names no user or group
//!   it can find (`DeleteGroupMembership` names only the membership), asks for a full
//!   reconcile: [`Hint::Everything`], with why.
//!
//! Shapes differ by source and over time, so ids are looked for where each source puts
//! them, then by name (`userId`, `groupId`) anywhere in the request and response.

use serde_json::Value;

/// What an event asks of sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hint {
    /// Re-read this Identity Store user (by id) and reconcile its agent.
    User(String),
    /// Re-read this Identity Store group (by id) and reconcile its members' agents.
    Group(String),
    /// Nothing to do (why).
    Nothing(String),
    /// Reconcile everything (why).
    Everything(String),
}

impl std::fmt::Display for Hint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Hint::User(id) => write!(f, "user {id}"),
            Hint::Group(id) => write!(f, "group {id}"),
            Hint::Nothing(why) => write!(f, "nothing to do: {why}"),
            Hint::Everything(why) => write!(f, "full reconcile: {why}"),
        }
    }
}

/// The event sources whose events are about the identity store's users and groups.
const SOURCES: &[&str] = &[
    "identitystore.amazonaws.com",
    "identitystore-scim.amazonaws.com",
    "sso-directory.amazonaws.com",
];

/// Reads a queue message's body; `store` is the identity store sync reads (unknown before
/// the first reconcile: then no event is told apart by its store).
pub fn hints(body: &str, store: Option<&str>) -> Vec<Hint> {
    let v: Value = match serde_json::from_str(body) {
        Ok(v) => v,
        Err(e) => return vec![Hint::Everything(format!("the message is not JSON ({e})"))],
    };
    // An SNS notification carries the event as a string.
    if v["Type"] == "Notification" {
        if let Some(inner) = v["Message"].as_str() {
            return hints(inner, store);
        }
    }
    let detail = &v["detail"];
    if !detail.is_object() {
        return vec![Hint::Everything(
            "the message is not an EventBridge event (no \"detail\")".into(),
        )];
    }
    let (Some(source), Some(name)) = (detail["eventSource"].as_str(), detail["eventName"].as_str())
    else {
        return vec![Hint::Everything(format!(
            "an event of {} ({}) that is not a recorded API call (no eventSource/eventName)",
            v["source"].as_str().unwrap_or("an unknown source"),
            v["detail-type"].as_str().unwrap_or("no detail-type")
        ))];
    };
    if !SOURCES
        .iter()
        .any(|s| source.starts_with(s.trim_end_matches(".amazonaws.com")))
    {
        return vec![Hint::Nothing(format!(
            "{source} {name}: not an identity store event"
        ))];
    }
    if let Some(code) = detail["errorCode"].as_str() {
        return vec![Hint::Nothing(format!(
            "{name} failed ({code}): nothing changed"
        ))];
    }
    if ["List", "Get", "Describe", "IsMemberIn", "Search"]
        .iter()
        .any(|p| name.starts_with(p))
    {
        return vec![Hint::Nothing(format!("{name} is a read"))];
    }
    let (req, resp) = (&detail["requestParameters"], &detail["responseElements"]);
    if let (Some(other), Some(store)) = (req["identityStoreId"].as_str(), store) {
        if other != store {
            return vec![Hint::Nothing(format!(
                "{name} in identity store {other}, not {store}"
            ))];
        }
    }
    let scim = source.starts_with("identitystore-scim");
    let mut out = Vec::new();
    match name {
        // SCIM answers a create with the new resource's `id`.
        "CreateUser" if scim => out.extend(text(&resp["id"]).map(Hint::User)),
        "CreateGroup" if scim => out.extend(text(&resp["id"]).map(Hint::Group)),
        "DeleteGroupMembership" => {
            return vec![Hint::Everything(
                "DeleteGroupMembership names only the membership id, not its user or group".into(),
            )]
        }
        _ => {}
    }
    if out.is_empty() {
        let mut users = Vec::new();
        let mut groups = Vec::new();
        for v in [req, resp] {
            find(v, "userId", &mut users);
            find(v, "groupId", &mut groups);
        }
        out.extend(users.into_iter().map(Hint::User));
        out.extend(groups.into_iter().map(Hint::Group));
    }
    // A membership event names both: re-reading the user covers its membership.
    if out.iter().any(|h| matches!(h, Hint::User(_))) && name.contains("Membership") {
        out.retain(|h| matches!(h, Hint::User(_)));
    }
    if out.is_empty() {
        out.push(Hint::Everything(format!(
            "{source} {name} names no user or group that could be found"
        )));
    }
    out.dedup();
    out
}

/// A non-empty string value.
fn text(v: &Value) -> Option<String> {
    v.as_str()
        .filter(|s| !s.trim().is_empty())
        .map(str::to_string)
}

/// Every non-empty string under `key`, at any depth, in order, once each.
fn find(v: &Value, key: &str, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (k, inner) in map {
                if k == key {
                    if let Some(s) = text(inner).filter(|s| !out.contains(s)) {
                        out.push(s);
                    }
                } else {
                    find(inner, key, out);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| find(i, key, out)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STORE: Option<&str> = Some("d-1234567890");
    const STORE_ID: &str = "d-1234567890";

    /// An EventBridge "AWS API Call via CloudTrail" event.
    fn event(source: &str, name: &str, req: Value, resp: Value) -> String {
        serde_json::json!({
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": "AWS API Call via CloudTrail",
            "source": "aws.identitystore",
            "account": "123456789012",
            "time": "2026-12-07T10:00:00Z",
            "region": "eu-west-1",
            "resources": [],
            "detail": {
                "eventVersion": "1.10",
                "eventSource": source,
                "eventName": name,
                "awsRegion": "eu-west-1",
                "requestParameters": req,
                "responseElements": resp,
            }
        })
        .to_string()
    }

    const API: &str = "identitystore.amazonaws.com";
    const SCIM: &str = "identitystore-scim.amazonaws.com";

    #[test]
    fn an_added_membership_names_its_user() {
        let e = event(
            API,
            "CreateGroupMembership",
            serde_json::json!({"identityStoreId": STORE_ID, "groupId": "g-1", "memberId": {"userId": "u-1"}}),
            serde_json::json!({"identityStoreId": STORE_ID, "membershipId": "m-1"}),
        );
        assert_eq!(hints(&e, STORE), vec![Hint::User("u-1".into())]);
    }

    #[test]
    fn user_and_group_changes_of_the_api_and_of_scim_name_them() {
        let cases = [
            (
                API,
                "CreateUser",
                serde_json::json!({"identityStoreId": STORE_ID, "userName": "HIDDEN_DUE_TO_SECURITY_REASONS"}),
                serde_json::json!({"identityStoreId": STORE_ID, "userId": "u-2"}),
                Hint::User("u-2".into()),
            ),
            (
                API,
                "UpdateUser",
                serde_json::json!({"identityStoreId": STORE_ID, "userId": "u-3", "operations": "HIDDEN_DUE_TO_SECURITY_REASONS"}),
                Value::Null,
                Hint::User("u-3".into()),
            ),
            (
                API,
                "DeleteUser",
                serde_json::json!({"identityStoreId": STORE_ID, "userId": "u-4"}),
                Value::Null,
                Hint::User("u-4".into()),
            ),
            (
                API,
                "UpdateGroup",
                serde_json::json!({"identityStoreId": STORE_ID, "groupId": "g-2"}),
                Value::Null,
                Hint::Group("g-2".into()),
            ),
            (
                SCIM,
                "CreateUser",
                serde_json::json!({"httpBody": {"userName": "HIDDEN_DUE_TO_SECURITY_REASONS"}, "tenantId": "t"}),
                serde_json::json!({"id": "u-5", "meta": {"resourceType": "User"}}),
                Hint::User("u-5".into()),
            ),
            (
                SCIM,
                "PatchUser",
                serde_json::json!({"userId": "u-6", "httpBody": {}, "tenantId": "t"}),
                Value::Null,
                Hint::User("u-6".into()),
            ),
            (
                SCIM,
                "PatchGroup",
                serde_json::json!({"groupId": "g-3", "httpBody": {}, "tenantId": "t"}),
                Value::Null,
                Hint::Group("g-3".into()),
            ),
            (
                SCIM,
                "CreateGroup",
                Value::Null,
                serde_json::json!({"id": "g-4", "meta": {"resourceType": "Group"}}),
                Hint::Group("g-4".into()),
            ),
        ];
        for (source, name, req, resp, want) in cases {
            assert_eq!(
                hints(&event(source, name, req, resp), STORE),
                vec![want],
                "{source} {name}"
            );
        }
    }

    #[test]
    fn reads_failures_other_stores_and_other_services_change_nothing() {
        let nothing = |e: String| {
            let h = hints(&e, STORE);
            assert!(matches!(h.as_slice(), [Hint::Nothing(_)]), "{e}: {h:?}");
        };
        nothing(event(
            API,
            "ListUsers",
            serde_json::json!({"identityStoreId": STORE_ID}),
            Value::Null,
        ));
        nothing(event(
            API,
            "DescribeUser",
            serde_json::json!({"identityStoreId": STORE_ID, "userId": "u"}),
            Value::Null,
        ));
        nothing(event(
            API,
            "CreateGroupMembership",
            serde_json::json!({"identityStoreId": "d-9999999999", "groupId": "g", "memberId": {"userId": "u"}}),
            Value::Null,
        ));
        nothing(event(
            "s3.amazonaws.com",
            "PutObject",
            Value::Null,
            Value::Null,
        ));
        let mut failed: Value = serde_json::from_str(&event(
            API,
            "DeleteUser",
            serde_json::json!({"identityStoreId": STORE_ID, "userId": "u"}),
            Value::Null,
        ))
        .unwrap();
        failed["detail"]["errorCode"] = "AccessDenied".into();
        nothing(failed.to_string());
    }

    #[test]
    fn what_cannot_be_read_asks_for_a_full_reconcile() {
        let everything = |body: &str| {
            let h = hints(body, STORE);
            assert!(
                matches!(h.as_slice(), [Hint::Everything(_)]),
                "{body}: {h:?}"
            );
        };
        everything("not json at all");
        everything("{\"hello\": 1}");
        everything(
            r#"{"source": "aws.identitystore", "detail-type": "Scheduled Event", "detail": {}}"#,
        );
        everything(&event(
            API,
            "DeleteGroupMembership",
            serde_json::json!({"identityStoreId": STORE_ID, "membershipId": "m-1"}),
            Value::Null,
        ));
        everything(&event(
            SCIM,
            "PatchGroup",
            serde_json::json!({"tenantId": "t"}),
            Value::Null,
        ));
    }

    #[test]
    fn an_sns_notification_is_unwrapped() {
        let inner = event(
            API,
            "DeleteUser",
            serde_json::json!({"identityStoreId": STORE_ID, "userId": "u-7"}),
            Value::Null,
        );
        let sns = serde_json::json!({"Type": "Notification", "MessageId": "x", "Message": inner})
            .to_string();
        assert_eq!(hints(&sns, STORE), vec![Hint::User("u-7".into())]);
    }
}

#[cfg(test)]
mod before_the_first_reconcile {
    use super::*;

    /// Before any reconcile has said which identity store sync reads, an event is never
    /// dismissed as another store's.
    #[test]
    fn an_unknown_store_dismisses_no_event() {
        let e = serde_json::json!({"detail": {"eventSource": "identitystore.amazonaws.com", "eventName": "CreateGroupMembership",
            "requestParameters": {"identityStoreId": "d-1234567890", "groupId": "g", "memberId": {"userId": "u"}}}})
        .to_string();
        assert_eq!(hints(&e, None), vec![Hint::User("u".into())]);
        assert!(matches!(
            hints(&e, Some("d-9999999999")).as_slice(),
            [Hint::Nothing(_)]
        ));
    }
}
