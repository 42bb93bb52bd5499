//! Amazon Connect (rest-json): routes and handlers for instances, users and the
//! profile/hierarchy listings, with the CreateUser rules of the Amazon Connect API
//! Reference ("CreateUser") and the identity-management rules of the Administrator Guide.
//!
//! Requests arrive as (operation, URI labels, query, JSON body); handlers work on
//! the locked [`World`] and return the output document or an [`ApiError`].
//!
//! This module holds the route table, the dispatch and what every handler shares
//! (instance lookup, paging, error shapes); the handlers are in `listings` (instances,
//! routing/security profiles, hierarchy groups), `users` (CreateUser, DescribeUser,
//! DeleteUser, ListUsers, the UpdateUser* family), `fields` (validating user fields),
//! `search` (SearchUsers) and `tags` (TagResource, UntagResource on users).

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::error::{ApiError, Service};
use crate::input::{check_max_results, Req};
use crate::ops::{Ctx, OpSpec};
use crate::world::{ConnectInstance, ConnectUser, World};

mod fields;
mod listings;
mod search;
mod tags;
mod users;

use listings::{describe_instance, list_instances, list_resources, Kind};
use search::search_users;
use tags::{tag_resource, untag_resource};
use users::{
    create_user, delete_user, describe_user, list_users, update_hierarchy, update_identity_info,
    update_phone_config, update_routing_profile, update_security_profiles,
};
const SVC: Service = Service::Connect;

const READ_ERRORS: &[&str] = &[
    "InvalidRequestException",
    "InvalidParameterException",
    "ResourceNotFoundException",
    "ThrottlingException",
    "InternalServiceException",
];

/// The Connect route table.
pub(crate) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "DescribeInstance",
        method: "GET",
        uri: "/instance/{InstanceId}",
        errors: &["ResourceNotFoundException", "InternalServiceException"],
    },
    OpSpec {
        name: "ListInstances",
        method: "GET",
        uri: "/instance",
        errors: &["InvalidRequestException", "InternalServiceException"],
    },
    OpSpec {
        name: "CreateUser",
        method: "PUT",
        uri: "/users/{InstanceId}",
        errors: &[
            "InvalidParameterException",
            "LimitExceededException",
            "DuplicateResourceException",
            "ResourceNotFoundException",
            "ThrottlingException",
            "InternalServiceException",
        ],
    },
    OpSpec {
        name: "DescribeUser",
        method: "GET",
        uri: "/users/{InstanceId}/{UserId}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "DeleteUser",
        method: "DELETE",
        uri: "/users/{InstanceId}/{UserId}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "ListUsers",
        method: "GET",
        uri: "/users-summary/{InstanceId}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "SearchUsers",
        method: "POST",
        uri: "/search-users",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "ListRoutingProfiles",
        method: "GET",
        uri: "/routing-profiles-summary/{InstanceId}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "ListSecurityProfiles",
        method: "GET",
        uri: "/security-profiles-summary/{InstanceId}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "ListUserHierarchyGroups",
        method: "GET",
        uri: "/user-hierarchy-groups-summary/{InstanceId}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "UpdateUserIdentityInfo",
        method: "POST",
        uri: "/users/{InstanceId}/{UserId}/identity-info",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "UpdateUserSecurityProfiles",
        method: "POST",
        uri: "/users/{InstanceId}/{UserId}/security-profiles",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "UpdateUserRoutingProfile",
        method: "POST",
        uri: "/users/{InstanceId}/{UserId}/routing-profile",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "UpdateUserPhoneConfig",
        method: "POST",
        uri: "/users/{InstanceId}/{UserId}/phone-config",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "UpdateUserHierarchy",
        method: "POST",
        uri: "/users/{InstanceId}/{UserId}/hierarchy",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "TagResource",
        method: "POST",
        uri: "/tags/{resourceArn}",
        errors: READ_ERRORS,
    },
    OpSpec {
        name: "UntagResource",
        method: "DELETE",
        uri: "/tags/{resourceArn}",
        errors: READ_ERRORS,
    },
];

/// Finds the operation for a method and (raw) path; returns it with the
/// percent-decoded URI labels in template order.
pub(crate) fn route(method: &str, path: &str) -> Option<(&'static str, Vec<String>)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    OPS.iter().find_map(|op| {
        if op.method != method {
            return None;
        }
        let template: Vec<&str> = op.uri.split('/').collect();
        if template.len() != segments.len() {
            return None;
        }
        let mut labels = Vec::new();
        for (t, s) in template.iter().zip(&segments) {
            if t.starts_with('{') {
                if s.is_empty() {
                    return None;
                }
                labels.push(
                    percent_encoding::percent_decode_str(s)
                        .decode_utf8_lossy()
                        .into_owned(),
                );
            } else if t != s {
                return None;
            }
        }
        Some((op.name, labels))
    })
}

/// One Connect call.
pub(crate) struct ConnectCall<'a> {
    pub op: &'a str,
    pub labels: &'a [String],
    pub query: &'a HashMap<String, String>,
    /// Every query pair, repeated keys included (UntagResource's `tagKeys`).
    pub pairs: &'a [(String, String)],
    pub body: &'a Map<String, Value>,
}

/// Runs a Connect operation.
pub(crate) fn dispatch(
    world: &mut World,
    ctx: &Ctx,
    call: &ConnectCall,
) -> Result<Value, ApiError> {
    let req = Req::new(SVC, call.body);
    let label = |i: usize| call.labels.get(i).map(String::as_str).unwrap_or_default();
    match call.op {
        "DescribeInstance" => describe_instance(world, label(0)),
        "ListInstances" => list_instances(world, call.query),
        "CreateUser" => create_user(world, ctx, label(0), &req),
        "DescribeUser" => describe_user(world, label(0), label(1)),
        "DeleteUser" => delete_user(world, label(0), label(1)),
        "ListUsers" => list_users(world, ctx, label(0), call.query),
        "SearchUsers" => search_users(world, ctx, &req),
        "ListRoutingProfiles" => list_resources(world, label(0), call.query, Kind::Routing),
        "ListSecurityProfiles" => list_resources(world, label(0), call.query, Kind::Security),
        "ListUserHierarchyGroups" => list_resources(world, label(0), call.query, Kind::Hierarchy),
        "UpdateUserIdentityInfo" => update_identity_info(world, ctx, label(0), label(1), &req),
        "UpdateUserSecurityProfiles" => {
            update_security_profiles(world, ctx, label(0), label(1), &req)
        }
        "UpdateUserRoutingProfile" => update_routing_profile(world, ctx, label(0), label(1), &req),
        "UpdateUserPhoneConfig" => update_phone_config(world, ctx, label(0), label(1), &req),
        "UpdateUserHierarchy" => update_hierarchy(world, ctx, label(0), label(1), &req),
        "TagResource" => tag_resource(world, ctx, label(0), &req),
        "UntagResource" => untag_resource(world, ctx, label(0), call.pairs),
        other => Err(ApiError::new(
            SVC,
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

fn invalid(msg: impl Into<String>) -> ApiError {
    ApiError::new(SVC, "InvalidParameterException", msg)
}

fn not_found(msg: impl Into<String>) -> ApiError {
    ApiError::new(SVC, "ResourceNotFoundException", msg)
}

/// Accepts an instance id or ARN.
fn instance_key(raw: &str) -> &str {
    match raw.split_once(":instance/") {
        Some((_, rest)) => rest.split('/').next().unwrap_or(rest),
        None => raw,
    }
}

fn instance<'w>(world: &'w World, raw: &str) -> Result<&'w ConnectInstance, ApiError> {
    world
        .connect_instances
        .get(instance_key(raw))
        .ok_or_else(|| not_found(format!("Instance not found: {raw}")))
}

fn instance_mut<'w>(world: &'w mut World, raw: &str) -> Result<&'w mut ConnectInstance, ApiError> {
    world
        .connect_instances
        .get_mut(instance_key(raw))
        .ok_or_else(|| not_found(format!("Instance not found: {raw}")))
}

fn user_mut<'w>(
    inst: &'w mut ConnectInstance,
    user_id: &str,
) -> Result<&'w mut ConnectUser, ApiError> {
    inst.users
        .get_mut(user_id)
        .ok_or_else(|| not_found(format!("User not found for UserId: {user_id}")))
}

fn page_size(query: &HashMap<String, String>, max: i64) -> Result<usize, ApiError> {
    match query.get("maxResults") {
        None => Ok(100.min(max as usize)),
        Some(raw) => {
            let n: i64 = raw
                .parse()
                .map_err(|_| invalid(format!("maxResults {raw:?} is not an integer")))?;
            check_max_results(SVC, "maxResults", n, max)
        }
    }
}

fn put_opt(obj: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        obj.insert(key.into(), Value::String(v.clone()));
    }
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let (Some(t), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Seed, DEFAULT_CONNECT_INSTANCE_ID};
    use serde_json::json;

    fn ctx() -> Ctx {
        Ctx {
            now_ms: 0,
            window_ms: 0,
            epoch: 1.0,
        }
    }

    fn world() -> World {
        World::from_seed(&Seed::default()).expect("default world")
    }

    fn create(w: &mut World, body: Value) -> Result<Value, ApiError> {
        let obj = body.as_object().cloned().unwrap_or_default();
        let labels = vec![DEFAULT_CONNECT_INSTANCE_ID.to_string()];
        let call = ConnectCall {
            op: "CreateUser",
            labels: &labels,
            query: &HashMap::new(),
            pairs: &[],
            body: &obj,
        };
        dispatch(w, &ctx(), &call)
    }

    fn ids(w: &World) -> (String, String) {
        let inst = &w.connect_instances[DEFAULT_CONNECT_INSTANCE_ID];
        let sp = inst
            .security_profiles
            .values()
            .next()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        let rp = inst
            .routing_profiles
            .values()
            .next()
            .map(|r| r.id.clone())
            .unwrap_or_default();
        (sp, rp)
    }

    fn saml_body(w: &World, username: &str) -> Value {
        let (sp, rp) = ids(w);
        json!({
            "Username": username, "SecurityProfileIds": [sp], "RoutingProfileId": rp,
            "IdentityInfo": {"FirstName": "Alice", "LastName": "Smith", "SecondaryEmail": username},
        })
    }

    #[test]
    fn routes() {
        assert_eq!(
            route("PUT", "/users/abc"),
            Some(("CreateUser", vec!["abc".to_string()]))
        );
        assert_eq!(
            route("GET", "/users/a/b").map(|r| r.0),
            Some("DescribeUser")
        );
        assert_eq!(
            route("POST", "/users/a/b/phone-config").map(|r| r.0),
            Some("UpdateUserPhoneConfig")
        );
        let (_, labels) = route(
            "GET",
            "/instance/arn%3Aaws%3Aconnect%3Aus-east-1%3A1%3Ainstance%2Fx",
        )
        .expect("route");
        assert_eq!(instance_key(&labels[0]), "x");
        assert_eq!(route("GET", "/nope"), None);
        let arn = "arn%3Aaws%3Aconnect%3Aus-east-1%3A1%3Ainstance%2Fx%2Fagent%2Fy";
        assert_eq!(
            route("POST", &format!("/tags/{arn}")),
            Some((
                "TagResource",
                vec!["arn:aws:connect:us-east-1:1:instance/x/agent/y".to_string()]
            ))
        );
        assert_eq!(
            route("DELETE", &format!("/tags/{arn}")).map(|r| r.0),
            Some("UntagResource")
        );
    }

    #[test]
    fn saml_create_and_duplicate() {
        let mut w = world();
        let body = saml_body(&w, "alice@example.com");
        let out = create(&mut w, body.clone()).expect("created");
        assert!(out["UserId"].is_string());
        let dup = create(&mut w, body).expect_err("duplicate");
        assert_eq!(
            (dup.code.as_str(), dup.status),
            ("DuplicateResourceException", 409)
        );
        // Usernames are case sensitive.
        assert!({
            let b = saml_body(&w, "Alice@example.com");
            create(&mut w, b)
        }
        .is_ok());
    }

    #[test]
    fn saml_rejects_email_password_and_bad_names() {
        let mut w = world();
        let mut body = saml_body(&w, "bob@example.com");
        body["IdentityInfo"]["Email"] = json!("bob@example.com");
        assert_eq!(
            create(&mut w, body).map_err(|e| e.code),
            Err("InvalidParameterException".into())
        );
        let mut body = saml_body(&w, "bob@example.com");
        body["Password"] = json!("Passw0rd!");
        assert!(create(&mut w, body).is_err());
        let mut body = saml_body(&w, "bob@example.com");
        body["IdentityInfo"]["FirstName"] = json!("Jose\u{301}");
        assert!(create(&mut w, body).is_err());
        let mut body = saml_body(&w, "bob@example.com");
        body["IdentityInfo"]
            .as_object_mut()
            .map(|o| o.remove("LastName"));
        assert!(create(&mut w, body).is_err());
        assert!({
            let b = saml_body(&w, "bob@example");
            create(&mut w, b)
        }
        .is_err());
    }

    #[test]
    fn profiles_phone_and_tags() {
        let mut w = world();
        let mut body = saml_body(&w, "c@example.com");
        body["SecurityProfileIds"] = json!(["00000000-0000-4000-8000-000000000000"]);
        assert_eq!(create(&mut w, body).map_err(|e| e.status), Err(404));
        let mut body = saml_body(&w, "c@example.com");
        body["SecurityProfileIds"] = json!([]);
        assert_eq!(create(&mut w, body).map_err(|e| e.status), Err(400));
        let mut body = saml_body(&w, "c@example.com");
        body["PhoneConfig"] = json!({"PhoneType": "DESK_PHONE"});
        assert!(create(&mut w, body).is_err());
        let mut body = saml_body(&w, "c@example.com");
        body["PhoneConfig"] =
            json!({"PhoneType": "SOFT_PHONE", "AfterContactWorkTimeLimit": 2_000_001});
        assert!(create(&mut w, body).is_err());
        let mut body = saml_body(&w, "c@example.com");
        body["Tags"] = json!({"aws:x": "y"});
        assert!(create(&mut w, body).is_err());
        let mut body = saml_body(&w, "c@example.com");
        body["PhoneConfig"] = json!({"PhoneType": "DESK_PHONE", "DeskPhoneNumber": "+12145550198", "AfterContactWorkTimeLimit": 30});
        body["Tags"] = json!({"team": "blue"});
        assert!(create(&mut w, body).is_ok());
    }

    fn call_with(
        w: &mut World,
        ctx: &Ctx,
        op: &str,
        labels: &[&str],
        body: Value,
    ) -> Result<Value, ApiError> {
        let obj = body.as_object().cloned().unwrap_or_default();
        let labels: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        let call = ConnectCall {
            op,
            labels: &labels,
            query: &HashMap::new(),
            pairs: &[],
            body: &obj,
        };
        dispatch(w, ctx, &call)
    }

    fn search(w: &mut World, ctx: &Ctx, criteria: Value) -> Vec<String> {
        let body = json!({"InstanceId": DEFAULT_CONNECT_INSTANCE_ID, "SearchCriteria": criteria});
        let out = call_with(w, ctx, "SearchUsers", &[], body).expect("search");
        let users = out["Users"].as_array().cloned().unwrap_or_default();
        assert_eq!(out["ApproximateTotalCount"], json!(users.len()));
        users
            .iter()
            .map(|u| u["Username"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn exact(name: &str) -> Value {
        json!({"StringCondition": {"FieldName": "Username", "Value": name, "ComparisonType": "EXACT"}})
    }

    #[test]
    fn username_uniqueness_survives_deletes() {
        let mut w = world();
        let body = saml_body(&w, "dana@example.com");
        let first = create(&mut w, body.clone()).expect("created")["UserId"].clone();
        assert_eq!(
            create(&mut w, body.clone()).map_err(|e| e.code),
            Err("DuplicateResourceException".into())
        );
        let user = first.as_str().unwrap_or_default();
        call_with(
            &mut w,
            &ctx(),
            "DeleteUser",
            &[DEFAULT_CONNECT_INSTANCE_ID, user],
            json!({}),
        )
        .expect("deleted");
        assert!(search(&mut w, &ctx(), exact("dana@example.com")).is_empty());
        let second =
            create(&mut w, body.clone()).expect("the name is free again")["UserId"].clone();
        assert_ne!(first, second);
        assert_eq!(
            create(&mut w, body).map_err(|e| e.code),
            Err("DuplicateResourceException".into())
        );
        // The helpers for tests keep the index too.
        let inst = DEFAULT_CONNECT_INSTANCE_ID;
        let id = w
            .add_connect_user(inst, "erin@example.com", "Erin", "E")
            .expect("added");
        assert!(w
            .add_connect_user(inst, "erin@example.com", "Erin", "E")
            .is_err());
        assert!(w.remove_connect_user(inst, &id));
        assert!({
            let b = saml_body(&w, "erin@example.com");
            create(&mut w, b)
        }
        .is_ok());
    }

    #[test]
    fn seeded_users_are_indexed() {
        let seed = Seed::from_toml_str(
            "[[connect_instances]]\nid = \"aaaaaaaa-bbbb-4ccc-8ddd-eeeeeeeeeeee\"\n[[connect_instances.users]]\nusername = \"seeded@example.com\"\nfirst_name = \"S\"\nlast_name = \"D\"\n",
        )
        .expect("seed");
        let mut w = World::from_seed(&seed).expect("world");
        let body = saml_body(&w, "seeded@example.com");
        assert_eq!(
            create(&mut w, body).map_err(|e| e.code),
            Err("DuplicateResourceException".into())
        );
        assert_eq!(
            search(&mut w, &ctx(), exact("seeded@example.com")),
            ["seeded@example.com"]
        );
    }

    #[test]
    fn exact_username_search_matches_the_scan() {
        let mut w = world();
        for name in ["ann@example.com", "Ann@example.com", "annie@example.com"] {
            let b = saml_body(&w, name);
            create(&mut w, b).expect("created");
        }
        // Indexed (one exact condition) and scanned (the same inside AndConditions) agree:
        // case-sensitive, whole names only.
        for name in [
            "ann@example.com",
            "Ann@example.com",
            "ANN@example.com",
            "ann",
        ] {
            let scanned = search(&mut w, &ctx(), json!({"AndConditions": [exact(name)]}));
            assert_eq!(search(&mut w, &ctx(), exact(name)), scanned, "{name}");
        }
        assert_eq!(
            search(&mut w, &ctx(), exact("Ann@example.com")),
            ["Ann@example.com"]
        );
        // A user inside the consistency window is found by neither.
        let later = Ctx {
            now_ms: 0,
            window_ms: 1_000,
            epoch: 1.0,
        };
        assert!(search(&mut w, &later, exact("ann@example.com")).is_empty());
    }

    fn user_id(out: &Value) -> String {
        out["UserId"].as_str().unwrap_or_default().to_string()
    }

    #[test]
    fn search_without_criteria_pages_every_user_with_search_details() {
        let mut w = world();
        let tier = {
            let inst = &w.connect_instances[DEFAULT_CONNECT_INSTANCE_ID];
            inst.hierarchy_groups
                .keys()
                .next()
                .cloned()
                .unwrap_or_default()
        };
        for (i, name) in ["a@example.com", "b@example.com", "c@example.com"]
            .iter()
            .enumerate()
        {
            let mut body = saml_body(&w, name);
            body["PhoneConfig"] = json!({"PhoneType": "SOFT_PHONE", "AutoAccept": true, "AfterContactWorkTimeLimit": 30 + i});
            body["IdentityInfo"]["Mobile"] = json!("+12145550100");
            if i == 0 {
                body["Tags"] = json!({"team": "blue"});
                body["HierarchyGroupId"] = json!(tier);
            }
            create(&mut w, body).expect("created");
        }
        let mut users = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut body = json!({"InstanceId": DEFAULT_CONNECT_INSTANCE_ID, "MaxResults": 2});
            if let Some(t) = token.take() {
                body["NextToken"] = json!(t);
            }
            let out = call_with(&mut w, &ctx(), "SearchUsers", &[], body).expect("search");
            assert_eq!(out["ApproximateTotalCount"], json!(3));
            users.extend(out["Users"].as_array().cloned().unwrap_or_default());
            match out["NextToken"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(users.len(), 3);
        let a = &users[0];
        assert_eq!(a["Username"], "a@example.com");
        assert_eq!(a["PhoneConfig"]["AfterContactWorkTimeLimit"], json!(30_000));
        assert_eq!(a["PhoneConfig"]["AutoAccept"], json!(true));
        assert_eq!(a["Tags"], json!({"team": "blue"}));
        assert_eq!(a["HierarchyGroupId"], json!(tier));
        assert!(a["RoutingProfileId"].is_string() && a["SecurityProfileIds"].is_array());
        // UserIdentityInfoLite: the names only.
        assert_eq!(
            a["IdentityInfo"],
            json!({"FirstName": "Alice", "LastName": "Smith"})
        );
        assert!(users[1].get("HierarchyGroupId").is_none());
        assert_eq!(
            users[2]["PhoneConfig"]["AfterContactWorkTimeLimit"],
            json!(32_000)
        );
        // DescribeUser: seconds, the whole IdentityInfo, the tags.
        let id = a["Id"].as_str().unwrap_or_default();
        let d = call_with(
            &mut w,
            &ctx(),
            "DescribeUser",
            &[DEFAULT_CONNECT_INSTANCE_ID, id],
            json!({}),
        )
        .expect("described");
        assert_eq!(
            d["User"]["PhoneConfig"]["AfterContactWorkTimeLimit"],
            json!(30)
        );
        assert_eq!(d["User"]["IdentityInfo"]["Mobile"], "+12145550100");
        assert_eq!(d["User"]["IdentityInfo"]["SecondaryEmail"], "a@example.com");
        assert_eq!(d["User"]["Tags"], json!({"team": "blue"}));
    }

    #[test]
    fn update_hierarchy_without_a_group_clears_it_and_updates_check_ids() {
        let mut w = world();
        let (inst, tier) = {
            let i = &w.connect_instances[DEFAULT_CONNECT_INSTANCE_ID];
            (
                i.id.clone(),
                i.hierarchy_groups
                    .keys()
                    .next()
                    .cloned()
                    .unwrap_or_default(),
            )
        };
        let mut body = saml_body(&w, "h@example.com");
        body["HierarchyGroupId"] = json!(tier);
        let id = user_id(&create(&mut w, body).expect("created"));
        let labels = [inst.as_str(), id.as_str()];
        let hierarchy = |w: &World| {
            w.connect_instances[DEFAULT_CONNECT_INSTANCE_ID].users[&id]
                .hierarchy_group_id
                .clone()
        };
        assert_eq!(hierarchy(&w), Some(tier.clone()));
        call_with(&mut w, &ctx(), "UpdateUserHierarchy", &labels, json!({})).expect("cleared");
        assert_eq!(hierarchy(&w), None);
        let unknown = "00000000-0000-4000-8000-000000000000";
        let code = |r: Result<Value, ApiError>| r.map_err(|e| e.code);
        let nf = Err("ResourceNotFoundException".to_string());
        assert_eq!(
            code(call_with(
                &mut w,
                &ctx(),
                "UpdateUserHierarchy",
                &labels,
                json!({"HierarchyGroupId": unknown})
            )),
            nf
        );
        assert_eq!(
            code(call_with(
                &mut w,
                &ctx(),
                "UpdateUserRoutingProfile",
                &labels,
                json!({"RoutingProfileId": unknown})
            )),
            nf
        );
        assert_eq!(
            code(call_with(
                &mut w,
                &ctx(),
                "UpdateUserSecurityProfiles",
                &labels,
                json!({"SecurityProfileIds": [unknown]})
            )),
            nf
        );
        let eleven: Vec<String> = (0..11).map(|_| unknown.to_string()).collect();
        for ids in [json!([]), json!(eleven)] {
            assert_eq!(
                code(call_with(
                    &mut w,
                    &ctx(),
                    "UpdateUserSecurityProfiles",
                    &labels,
                    json!({"SecurityProfileIds": ids})
                )),
                Err("InvalidParameterException".to_string())
            );
        }
        assert_eq!(
            code(call_with(
                &mut w,
                &ctx(),
                "UpdateUserHierarchy",
                &[inst.as_str(), unknown],
                json!({})
            )),
            nf
        );
    }

    fn tags_call(
        w: &mut World,
        op: &str,
        arn: &str,
        body: Value,
        keys: &[&str],
    ) -> Result<Value, ApiError> {
        let obj = body.as_object().cloned().unwrap_or_default();
        let labels = vec![arn.to_string()];
        let pairs: Vec<(String, String)> = keys
            .iter()
            .map(|k| ("tagKeys".to_string(), k.to_string()))
            .collect();
        let call = ConnectCall {
            op,
            labels: &labels,
            query: &HashMap::new(),
            pairs: &pairs,
            body: &obj,
        };
        dispatch(w, &ctx(), &call)
    }

    #[test]
    fn tag_and_untag_a_user_by_arn() {
        let mut w = world();
        let mut body = saml_body(&w, "t@example.com");
        body["Tags"] = json!({"keep": "1"});
        let out = create(&mut w, body).expect("created");
        let (id, arn) = (
            user_id(&out),
            out["UserArn"].as_str().unwrap_or_default().to_string(),
        );
        let tags = |w: &World| {
            w.connect_instances[DEFAULT_CONNECT_INSTANCE_ID].users[&id]
                .tags
                .clone()
        };
        tags_call(
            &mut w,
            "TagResource",
            &arn,
            json!({"tags": {"team": "blue", "site": "lis"}}),
            &[],
        )
        .expect("tagged");
        assert_eq!(tags(&w).len(), 3);
        tags_call(
            &mut w,
            "TagResource",
            &arn,
            json!({"tags": {"team": "red"}}),
            &[],
        )
        .expect("changed");
        assert_eq!(tags(&w).get("team").map(String::as_str), Some("red"));
        tags_call(
            &mut w,
            "UntagResource",
            &arn,
            json!({}),
            &["site", "absent"],
        )
        .expect("untagged");
        assert_eq!(
            tags(&w).into_iter().collect::<Vec<_>>(),
            [
                ("keep".to_string(), "1".to_string()),
                ("team".to_string(), "red".to_string())
            ]
        );
        let code = |r: Result<Value, ApiError>| r.map_err(|e| (e.code, e.status));
        let invalid = Err(("InvalidParameterException".to_string(), 400));
        let too_many: Map<String, Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
        let long_value = "v".repeat(257);
        for bad in [
            json!({"tags": {}}),
            json!({"tags": too_many}),
            json!({"tags": {"aws:x": "y"}}),
            json!({"tags": {"a#b": "y"}}),
            json!({"tags": {"k": long_value}}),
            json!({}),
        ] {
            assert_eq!(
                code(tags_call(&mut w, "TagResource", &arn, bad.clone(), &[])),
                invalid,
                "{bad}"
            );
        }
        // At most 50 tags on the user, counting those it has.
        let fill: Map<String, Value> = (0..49).map(|i| (format!("k{i}"), json!("v"))).collect();
        assert_eq!(
            code(tags_call(
                &mut w,
                "TagResource",
                &arn,
                json!({"tags": fill}),
                &[]
            )),
            invalid
        );
        assert_eq!(
            code(tags_call(&mut w, "UntagResource", &arn, json!({}), &[])),
            invalid
        );
        assert_eq!(
            code(tags_call(
                &mut w,
                "UntagResource",
                &arn,
                json!({}),
                &["aws:x"]
            )),
            invalid
        );
        let unknown = format!(
            "{}/agent/00000000-0000-4000-8000-000000000000",
            w.connect_instances[DEFAULT_CONNECT_INSTANCE_ID].arn
        );
        let nf = Err(("ResourceNotFoundException".to_string(), 404));
        assert_eq!(
            code(tags_call(
                &mut w,
                "TagResource",
                &unknown,
                json!({"tags": {"a": "b"}}),
                &[]
            )),
            nf
        );
        assert_eq!(
            code(tags_call(
                &mut w,
                "UntagResource",
                &unknown,
                json!({}),
                &["a"]
            )),
            nf
        );
        assert_eq!(
            code(tags_call(
                &mut w,
                "TagResource",
                "not-an-arn",
                json!({"tags": {"a": "b"}}),
                &[]
            )),
            nf
        );
    }

    #[test]
    fn quota_is_enforced() {
        let mut w = world();
        if let Some(i) = w.connect_instances.get_mut(DEFAULT_CONNECT_INSTANCE_ID) {
            i.max_users = 1;
        }
        assert!({
            let b = saml_body(&w, "a@example.com");
            create(&mut w, b)
        }
        .is_ok());
        let e = {
            let b = saml_body(&w, "b@example.com");
            create(&mut w, b)
        }
        .expect_err("quota");
        assert_eq!((e.code.as_str(), e.status), ("LimitExceededException", 429));
    }

    #[test]
    fn connect_managed_rules() {
        let seed = Seed::from_toml_str(
            "[[connect_instances]]\nid = \"11111111-2222-4333-8444-555555555555\"\nidentity_management_type = \"CONNECT_MANAGED\"\n",
        )
        .expect("seed");
        let mut w = World::from_seed(&seed).expect("world");
        let inst = &w.connect_instances["11111111-2222-4333-8444-555555555555"];
        let sp = inst
            .security_profiles
            .keys()
            .next()
            .cloned()
            .unwrap_or_default();
        let rp = inst
            .routing_profiles
            .keys()
            .next()
            .cloned()
            .unwrap_or_default();
        let labels = vec!["11111111-2222-4333-8444-555555555555".to_string()];
        let mut run = |body: Value| {
            let obj = body.as_object().cloned().unwrap_or_default();
            let call = ConnectCall {
                op: "CreateUser",
                labels: &labels,
                query: &HashMap::new(),
                pairs: &[],
                body: &obj,
            };
            dispatch(&mut w, &ctx(), &call)
        };
        let base = json!({"Username": "agent1", "SecurityProfileIds": [sp], "RoutingProfileId": rp,
            "IdentityInfo": {"FirstName": "A", "LastName": "B", "Email": "a@example.com"}});
        let mut no_pw = base.clone();
        no_pw.as_object_mut().map(|o| o.remove("Password"));
        assert!(run(no_pw).is_err());
        let mut weak = base.clone();
        weak["Password"] = json!("password");
        assert!(run(weak).is_err());
        let mut no_email = base.clone();
        no_email["Password"] = json!("Passw0rd");
        no_email["IdentityInfo"]
            .as_object_mut()
            .map(|o| o.remove("Email"));
        assert!(run(no_email).is_err());
        let mut ok = base;
        ok["Password"] = json!("Passw0rd");
        assert!(run(ok).is_ok());
    }
}
