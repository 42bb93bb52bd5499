//! Tests of the Identity Store emulation: users, groups, memberships, UpdateUser.

use super::*;
use crate::world::{Seed, DEFAULT_IDENTITY_STORE_ID};

fn ctx() -> Ctx {
    Ctx {
        now_ms: 0,
        window_ms: 0,
        epoch: 1.0,
    }
}

fn call(w: &mut World, op: &str, body: Value) -> Result<Value, ApiError> {
    let obj = body.as_object().cloned().unwrap_or_default();
    dispatch(w, &ctx(), op, &obj)
}

fn user_body(name: &str, email: &str) -> Value {
    json!({
        "IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserName": name, "DisplayName": "Alice Smith",
        "Name": {"GivenName": "Alice", "FamilyName": "Smith"},
        "Emails": [{"Value": email, "Type": "work", "Primary": true}],
    })
}

#[test]
fn update_user_replaces_names_and_checks_each_operation() {
    let mut w = World::from_seed(&Seed::default()).expect("world");
    let out = call(
        &mut w,
        "CreateUser",
        user_body("ana@example.com", "ana@example.com"),
    )
    .expect("create");
    let id = out["UserId"].as_str().unwrap_or_default().to_string();
    let update = |w: &mut World, ops: Value| {
        call(
            w,
            "UpdateUser",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": id, "Operations": ops}),
        )
    };
    let set = |path: &str, v: &str| json!({"AttributePath": path, "AttributeValue": v});
    let code = |r: Result<Value, ApiError>| r.map_err(|e| e.code);
    assert_eq!(
        update(
            &mut w,
            json!([
                set("name.givenName", "Ana"),
                set("name.familyName", "Silva"),
                set("displayName", "Ana Silva"),
                set("nickName", "A")
            ])
        ),
        Ok(json!({}))
    );
    let described = call(
        &mut w,
        "DescribeUser",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": id}),
    )
    .expect("described");
    assert_eq!(described["Name"]["GivenName"], "Ana");
    assert_eq!(described["Name"]["FamilyName"], "Silva");
    assert_eq!(described["DisplayName"], "Ana Silva");
    assert_eq!(described["NickName"], "A");
    let invalid = Err("ValidationException".to_string());
    // Empty, too long, unsupported path, a required name removed, no operations, 101.
    assert_eq!(
        code(update(&mut w, json!([set("name.givenName", "")]))),
        invalid
    );
    let long = "x".repeat(1025);
    assert_eq!(
        code(update(&mut w, json!([set("displayName", &long)]))),
        invalid
    );
    assert_eq!(
        code(update(&mut w, json!([set("userName", "b@example.com")]))),
        invalid
    );
    assert_eq!(
        code(update(
            &mut w,
            json!([{"AttributePath": "name.familyName"}])
        )),
        invalid
    );
    assert_eq!(code(update(&mut w, json!([]))), invalid);
    let many: Vec<Value> = (0..101).map(|_| set("nickName", "n")).collect();
    assert_eq!(code(update(&mut w, json!(many))), invalid);
    // A refused request changes nothing, even its valid operations.
    assert_eq!(
        code(update(
            &mut w,
            json!([set("displayName", "Changed"), set("name.givenName", "")])
        )),
        invalid
    );
    let described = call(
        &mut w,
        "DescribeUser",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": id}),
    )
    .expect("described");
    assert_eq!(described["DisplayName"], "Ana Silva");
    // An optional attribute can be removed.
    assert!(update(&mut w, json!([{"AttributePath": "nickName"}])).is_ok());
    // Unknown user.
    let unknown = call(
        &mut w,
        "UpdateUser",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
               "UserId": "1234567890-00000000-0000-4000-8000-000000000000",
               "Operations": [set("displayName", "X")]}),
    );
    assert_eq!(code(unknown), Err("ResourceNotFoundException".to_string()));
}

#[test]
fn user_rules() {
    let mut w = World::from_seed(&Seed::default()).expect("world");
    let out = call(
        &mut w,
        "CreateUser",
        user_body("alice@example.com", "alice@example.com"),
    )
    .expect("create");
    assert!(out["UserId"]
        .as_str()
        .is_some_and(|id| id.starts_with("1234567890-")));
    let dup = call(
        &mut w,
        "CreateUser",
        user_body("ALICE@example.com", "other@example.com"),
    )
    .expect_err("dup name");
    assert_eq!(
        (dup.status, dup.extra.get("Reason")),
        (409, Some(&json!("UNIQUENESS_CONSTRAINT_VIOLATION")))
    );
    let dup = call(
        &mut w,
        "CreateUser",
        user_body("alice2", "Alice@Example.com"),
    )
    .expect_err("dup email");
    assert_eq!(dup.code, "ConflictException");
    assert_eq!(
        call(
            &mut w,
            "CreateUser",
            user_body("Administrator", "x@example.com")
        )
        .map_err(|e| e.code),
        Err("ValidationException".into())
    );
    assert!(call(
        &mut w,
        "CreateUser",
        user_body("has space", "y@example.com")
    )
    .is_err());
    let mut no_name = user_body("bob", "bob@example.com");
    no_name.as_object_mut().map(|o| o.remove("Name"));
    assert!(call(&mut w, "CreateUser", no_name).is_err());
    let mut two = user_body("carol", "carol@example.com");
    two["Emails"] = json!([{"Value": "a@x.com"}, {"Value": "b@x.com"}]);
    assert!(call(&mut w, "CreateUser", two).is_err());
    let mut bad_store = user_body("dave", "dave@example.com");
    bad_store["IdentityStoreId"] = json!("d-0000000000");
    let e = call(&mut w, "CreateUser", bad_store).expect_err("store");
    assert_eq!(
        (e.status, e.extra.get("ResourceType")),
        (404, Some(&json!("IDENTITY_STORE")))
    );
}

#[test]
fn memberships_and_delete() {
    let mut w = World::from_seed(&Seed::default()).expect("world");
    let uid = call(&mut w, "CreateUser", user_body("eve", "eve@example.com")).expect("user")
        ["UserId"]
        .clone();
    let gid = call(&mut w, "GetGroupId", json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
        "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": "ConnectAgents"}}}))
        .expect("group")["GroupId"].clone();
    let body = json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "GroupId": gid, "MemberId": {"UserId": uid}});
    call(&mut w, "CreateGroupMembership", body.clone()).expect("membership");
    assert_eq!(
        call(&mut w, "CreateGroupMembership", body).map_err(|e| e.status),
        Err(409)
    );
    call(
        &mut w,
        "DeleteUser",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": uid}),
    )
    .expect("delete");
    assert!(w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
        .memberships
        .is_empty());
    let e = call(
        &mut w,
        "DeleteUser",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": uid}),
    )
    .expect_err("gone");
    assert_eq!(e.code, "ResourceNotFoundException");
}

fn group_id(w: &mut World, name: &str) -> Value {
    call(w, "GetGroupId", json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
        "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": "displayName", "AttributeValue": name}}}))
        .expect("group")["GroupId"].clone()
}

fn user_id_by(w: &mut World, ctx: &Ctx, path: &str, value: &str) -> Result<Value, ApiError> {
    let body = json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
        "AlternateIdentifier": {"UniqueAttribute": {"AttributePath": path, "AttributeValue": value}}});
    dispatch(w, ctx, "GetUserId", body.as_object().expect("object")).map(|o| o["UserId"].clone())
}

#[test]
fn user_names_and_emails_are_freed_by_delete() {
    let mut w = World::from_seed(&Seed::default()).expect("world");
    let first = call(&mut w, "CreateUser", user_body("fay", "fay@example.com")).expect("user")
        ["UserId"]
        .clone();
    assert_eq!(
        user_id_by(&mut w, &ctx(), "userName", "FAY").ok(),
        Some(first.clone())
    );
    assert_eq!(
        user_id_by(&mut w, &ctx(), "emails.value", "Fay@Example.com").ok(),
        Some(first.clone())
    );
    assert_eq!(
        user_id_by(&mut w, &ctx(), "displayName", "fay").map_err(|e| e.code),
        Err("ValidationException".into())
    );
    call(
        &mut w,
        "DeleteUser",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "UserId": first}),
    )
    .expect("delete");
    assert_eq!(
        user_id_by(&mut w, &ctx(), "userName", "fay").map_err(|e| e.code),
        Err("ResourceNotFoundException".into())
    );
    let second = call(&mut w, "CreateUser", user_body("Fay", "FAY@example.com"))
        .expect("name and email are free again")["UserId"]
        .clone();
    assert_ne!(first, second);
    assert_eq!(
        user_id_by(&mut w, &ctx(), "userName", "fay").ok(),
        Some(second)
    );
    assert_eq!(
        call(&mut w, "CreateUser", user_body("fay", "other@example.com")).map_err(|e| e.code),
        Err("ConflictException".into())
    );
    // Inside the consistency window GetUserId does not see the new user, the
    // uniqueness check does.
    let soon = Ctx {
        now_ms: 0,
        window_ms: 1_000,
        epoch: 1.0,
    };
    assert_eq!(
        user_id_by(&mut w, &soon, "userName", "fay").map_err(|e| e.code),
        Err("ResourceNotFoundException".into())
    );
    // A seeded user is in the index from the start.
    let seeded = w
        .add_identity_user("gil", "gil@example.com", "Gil", "G")
        .expect("seeded");
    assert_eq!(
        user_id_by(&mut w, &soon, "userName", "GIL").ok(),
        Some(json!(seeded))
    );
    assert!(call(&mut w, "CreateUser", user_body("x", "gil@example.com")).is_err());
}

#[test]
fn a_membership_is_unique_per_group_and_member() {
    let mut w = World::from_seed(&Seed::default()).expect("world");
    let agents = group_id(&mut w, "ConnectAgents");
    let leads = call(
        &mut w,
        "CreateGroup",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "DisplayName": "Leads"}),
    )
    .expect("group")["GroupId"]
        .clone();
    let hal = call(&mut w, "CreateUser", user_body("hal", "hal@example.com")).expect("user")
        ["UserId"]
        .clone();
    let ivy = call(&mut w, "CreateUser", user_body("ivy", "ivy@example.com")).expect("user")
        ["UserId"]
        .clone();
    let body = |g: &Value, u: &Value| json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "GroupId": g, "MemberId": {"UserId": u}});
    let m = call(&mut w, "CreateGroupMembership", body(&agents, &hal)).expect("hal in agents")
        ["MembershipId"]
        .clone();
    call(&mut w, "CreateGroupMembership", body(&agents, &ivy)).expect("ivy in agents");
    call(&mut w, "CreateGroupMembership", body(&leads, &hal)).expect("hal in leads");
    let dup = call(&mut w, "CreateGroupMembership", body(&agents, &hal)).expect_err("dup");
    assert_eq!((dup.code.as_str(), dup.status), ("ConflictException", 409));
    assert_eq!(
        call(&mut w, "GetGroupMembershipId", body(&agents, &hal)).expect("found")["MembershipId"],
        m
    );
    let is_member = |w: &mut World, u: &Value| {
        let out = call(
            w,
            "IsMemberInGroups",
            json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID,
            "MemberId": {"UserId": u}, "GroupIds": [agents, leads]}),
        )
        .expect("is member");
        out["Results"]
            .as_array()
            .expect("results")
            .iter()
            .map(|r| r["MembershipExists"] == json!(true))
            .collect::<Vec<_>>()
    };
    assert_eq!(is_member(&mut w, &hal), [true, true]);
    assert_eq!(is_member(&mut w, &ivy), [true, false]);
    // Deleting the membership frees the pair.
    call(
        &mut w,
        "DeleteGroupMembership",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "MembershipId": m}),
    )
    .expect("delete");
    assert_eq!(
        call(&mut w, "GetGroupMembershipId", body(&agents, &hal)).map_err(|e| e.code),
        Err("ResourceNotFoundException".into())
    );
    assert_eq!(is_member(&mut w, &hal), [false, true]);
    let again = call(&mut w, "CreateGroupMembership", body(&agents, &hal)).expect("again")
        ["MembershipId"]
        .clone();
    assert_ne!(again, m);
    // Deleting a group drops its memberships from the index.
    call(
        &mut w,
        "DeleteGroup",
        json!({"IdentityStoreId": DEFAULT_IDENTITY_STORE_ID, "GroupId": leads}),
    )
    .expect("delete group");
    assert_eq!(
        w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
            .memberships
            .len(),
        2
    );
    assert!(w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
        .membership(
            leads.as_str().unwrap_or_default(),
            hal.as_str().unwrap_or_default()
        )
        .is_none());
    // A seeded membership is in the index from the start.
    let gid = w.add_group("Seeded").expect("group");
    let uid = w
        .add_identity_user("jo", "jo@example.com", "Jo", "J")
        .expect("user");
    w.add_membership(&gid, &uid).expect("membership");
    assert!(w.add_membership(&gid, &uid).is_err());
    assert_eq!(
        call(
            &mut w,
            "CreateGroupMembership",
            body(&json!(gid), &json!(uid))
        )
        .map_err(|e| e.code),
        Err("ConflictException".into())
    );
}
