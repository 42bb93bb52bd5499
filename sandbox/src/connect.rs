//! Amazon Connect (rest-json): routes and handlers for instances, users and the
//! profile/hierarchy listings, with the CreateUser rules of the Amazon Connect API
//! Reference ("CreateUser") and the identity-management rules of the Administrator Guide.
//!
//! Requests arrive as (operation, URI labels, query, JSON body); handlers work on
//! the locked [`World`] and return the output document or an [`ApiError`].

use std::collections::{BTreeMap, HashMap};

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Service};
use crate::input::{check_max_results, paginate, Req};
use crate::ops::{Ctx, OpSpec};
use crate::validate;
use crate::world::{
    ConnectInstance, ConnectResource, ConnectUser, IdentityInfo, PhoneConfig, World,
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

// -- instances -----------------------------------------------------------------

fn instance_summary(inst: &ConnectInstance, account_id: &str) -> Value {
    json!({
        "Id": inst.id,
        "Arn": inst.arn,
        "IdentityManagementType": inst.identity_management_type,
        "InstanceAlias": inst.alias,
        "CreatedTime": inst.created_time,
        "ServiceRole": format!("arn:aws:iam::{account_id}:role/aws-service-role/connect.amazonaws.com/AWSServiceRoleForAmazonConnect_sandbox"),
        "InstanceStatus": "ACTIVE",
        "InboundCallsEnabled": true,
        "OutboundCallsEnabled": true,
        "InstanceAccessUrl": format!("https://{}.my.connect.aws", inst.alias),
    })
}

fn describe_instance(world: &World, raw: &str) -> Result<Value, ApiError> {
    let inst = instance(world, raw)?;
    Ok(json!({ "Instance": instance_summary(inst, &world.account_id) }))
}

fn list_instances(world: &World, query: &HashMap<String, String>) -> Result<Value, ApiError> {
    let max = page_size(query, 10)
        .map_err(|e| ApiError::new(SVC, "InvalidRequestException", e.message))?;
    let items = world
        .connect_instances
        .values()
        .map(|i| (i.id.clone(), instance_summary(i, &world.account_id)))
        .collect();
    let (page, next) = paginate(SVC, items, query.get("nextToken").map(String::as_str), max)
        .map_err(|e| ApiError::new(SVC, "InvalidRequestException", e.message))?;
    Ok(with_token(json!({ "InstanceSummaryList": page }), next))
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let (Some(t), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(t));
    }
    out
}

// -- validation of user fields --------------------------------------------------

fn parse_identity_info(
    req: &Req,
    imt: &str,
    info: Option<&Map<String, Value>>,
    mut base: IdentityInfo,
    creating: bool,
) -> Result<IdentityInfo, ApiError> {
    let empty = Map::new();
    let r = req.sub(info.unwrap_or(&empty));
    let first = r.opt_str("FirstName")?;
    let last = r.opt_str("LastName")?;
    let email = r.opt_str("Email")?;
    let secondary = r.opt_str("SecondaryEmail")?;
    let mobile = r.opt_str("Mobile")?;
    let (first_max, last_max) = if imt == "CONNECT_MANAGED" {
        (255, 256)
    } else {
        (255, 300)
    };
    let names_required = imt != "EXISTING_DIRECTORY";
    if imt == "EXISTING_DIRECTORY"
        && !creating
        && (first.is_some() || last.is_some() || email.is_some())
    {
        return Err(ApiError::new(
            SVC,
            "InvalidRequestException",
            "FirstName, LastName and Email are managed by the directory and cannot be updated in Amazon Connect",
        ));
    }
    for (field, value, max) in [
        ("FirstName", first, first_max),
        ("LastName", last, last_max),
    ] {
        match value {
            Some(v) => validate::connect_name(field, v, usize::from(names_required), max)
                .map_err(invalid)?,
            None if creating && names_required => {
                return Err(invalid(format!(
                    "IdentityInfo.{field} is required for {imt} instances"
                )))
            }
            None => {}
        }
    }
    if email.is_some() && imt == "SAML" {
        return Err(invalid("Email cannot be set on a user of an instance that uses SAML for identity management; use SecondaryEmail"));
    }
    if email.is_none() && creating && imt == "CONNECT_MANAGED" {
        return Err(invalid(
            "IdentityInfo.Email is required for CONNECT_MANAGED instances",
        ));
    }
    if let Some(s) = secondary {
        validate::secondary_email(s).map_err(invalid)?;
    }
    if let Some(m) = mobile {
        validate::e164("Mobile", m).map_err(invalid)?;
    }
    let set = |slot: &mut Option<String>, v: Option<&str>| {
        if let Some(v) = v {
            *slot = Some(v.to_string());
        }
    };
    set(&mut base.first_name, first);
    set(&mut base.last_name, last);
    set(&mut base.email, email);
    set(&mut base.secondary_email, secondary);
    set(&mut base.mobile, mobile);
    Ok(base)
}

fn parse_phone_config(
    req: &Req,
    obj: &Map<String, Value>,
    mut base: PhoneConfig,
) -> Result<PhoneConfig, ApiError> {
    let r = req.sub(obj);
    if let Some(t) = r.opt_str("PhoneType")? {
        if t != "SOFT_PHONE" && t != "DESK_PHONE" {
            return Err(invalid(format!(
                "PhoneType {t:?} must be SOFT_PHONE or DESK_PHONE"
            )));
        }
        base.phone_type = t.to_string();
    }
    if let Some(a) = r.opt_bool("AutoAccept")? {
        base.auto_accept = a;
    }
    if let Some(acw) = r.opt_i64("AfterContactWorkTimeLimit")? {
        if !(0..=2_000_000).contains(&acw) {
            return Err(invalid(
                "AfterContactWorkTimeLimit must be between 0 and 2000000 seconds",
            ));
        }
        base.after_contact_work_time_limit = acw;
    }
    if let Some(d) = r.opt_str("DeskPhoneNumber")? {
        validate::e164("DeskPhoneNumber", d).map_err(invalid)?;
        base.desk_phone_number = Some(d.to_string());
    }
    if let Some(p) = r.opt_bool("PersistentConnection")? {
        base.persistent_connection = Some(p);
    }
    if base.phone_type == "DESK_PHONE" && base.desk_phone_number.is_none() {
        return Err(invalid(
            "DeskPhoneNumber is required when PhoneType is DESK_PHONE",
        ));
    }
    Ok(base)
}

fn check_security_profiles(inst: &ConnectInstance, ids: &[&str]) -> Result<Vec<String>, ApiError> {
    if !(1..=10).contains(&ids.len()) {
        return Err(invalid(
            "SecurityProfileIds must contain between 1 and 10 ids",
        ));
    }
    let mut out: Vec<String> = Vec::new();
    for id in ids {
        if !inst.security_profiles.contains_key(*id) {
            return Err(not_found(format!("SecurityProfile not found: {id}")));
        }
        if !out.iter().any(|x| x == id) {
            out.push(id.to_string());
        }
    }
    Ok(out)
}

fn check_exists(
    map: &BTreeMap<String, ConnectResource>,
    id: &str,
    what: &str,
) -> Result<(), ApiError> {
    if map.contains_key(id) {
        Ok(())
    } else {
        Err(not_found(format!("{what} not found: {id}")))
    }
}

fn parse_tags(req: &Req) -> Result<BTreeMap<String, String>, ApiError> {
    let Some(tags) = req.opt_obj("Tags")? else {
        return Ok(BTreeMap::new());
    };
    if !(1..=50).contains(&tags.len()) {
        return Err(invalid("Tags must contain between 1 and 50 entries"));
    }
    let mut out = BTreeMap::new();
    for (k, v) in tags {
        let v = v
            .as_str()
            .ok_or_else(|| SVC.serialization("Tag values must be strings"))?;
        validate::tag(k, v).map_err(invalid)?;
        out.insert(k.clone(), v.to_string());
    }
    Ok(out)
}

// -- users -------------------------------------------------------------------------

fn create_user(
    world: &mut World,
    ctx: &Ctx,
    raw_instance: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let imt = inst.identity_management_type.as_str();
    let username = req.str("Username")?;
    validate::connect_username(username, imt).map_err(invalid)?;
    let password = req.opt_str("Password")?;
    let directory_user_id = req.opt_str("DirectoryUserId")?;
    match imt {
        "CONNECT_MANAGED" => {
            let p = password
                .ok_or_else(|| invalid("Password is required for CONNECT_MANAGED instances"))?;
            validate::connect_password(p).map_err(invalid)?;
        }
        _ if password.is_some() => {
            return Err(invalid(format!(
                "Password cannot be set on {imt} instances"
            )));
        }
        _ => {}
    }
    if directory_user_id.is_some() && imt != "EXISTING_DIRECTORY" {
        return Err(invalid(format!(
            "DirectoryUserId cannot be set on {imt} instances"
        )));
    }
    let identity_info = parse_identity_info(
        req,
        imt,
        req.opt_obj("IdentityInfo")?,
        IdentityInfo::default(),
        true,
    )?;
    let phone_config = match req.opt_obj("PhoneConfig")? {
        Some(pc) => parse_phone_config(req, pc, PhoneConfig::default())?,
        None => PhoneConfig::default(),
    };
    let security_profile_ids = check_security_profiles(inst, &req.str_list("SecurityProfileIds")?)?;
    let routing_profile_id = req.str("RoutingProfileId")?;
    check_exists(&inst.routing_profiles, routing_profile_id, "RoutingProfile")?;
    let hierarchy_group_id = req.opt_str("HierarchyGroupId")?;
    if let Some(h) = hierarchy_group_id {
        check_exists(&inst.hierarchy_groups, h, "HierarchyGroup")?;
    }
    let tags = parse_tags(req)?;
    if inst.user_named(username).is_some() {
        return Err(ApiError::new(
            SVC,
            "DuplicateResourceException",
            format!(
                "The user {username} is already associated with the Amazon Connect instance {}",
                inst.id
            ),
        ));
    }
    if inst.users.len() >= inst.max_users {
        return Err(ApiError::new(
            SVC,
            "LimitExceededException",
            "The allowed limit for the resource has been exceeded.",
        ));
    }
    let id = crate::world::new_uuid();
    let arn = format!("{}/agent/{id}", inst.arn);
    let user = ConnectUser {
        id: id.clone(),
        arn: arn.clone(),
        username: username.to_string(),
        identity_info,
        phone_config,
        directory_user_id: directory_user_id.map(String::from),
        security_profile_ids,
        routing_profile_id: routing_profile_id.to_string(),
        hierarchy_group_id: hierarchy_group_id.map(String::from),
        tags,
        last_modified_time: ctx.epoch,
        created_ms: Some(ctx.now_ms),
    };
    instance_mut(world, raw_instance)?.insert_user(user);
    Ok(json!({ "UserId": id, "UserArn": arn }))
}

fn identity_info_json(info: &IdentityInfo) -> Value {
    let mut o = Map::new();
    put_opt(&mut o, "FirstName", &info.first_name);
    put_opt(&mut o, "LastName", &info.last_name);
    put_opt(&mut o, "Email", &info.email);
    put_opt(&mut o, "SecondaryEmail", &info.secondary_email);
    put_opt(&mut o, "Mobile", &info.mobile);
    Value::Object(o)
}

/// PhoneConfig; `acw_scale` is 1 for seconds, 1000 for SearchUsers' milliseconds.
fn phone_config_json(pc: &PhoneConfig, acw_scale: i64) -> Value {
    let mut o = Map::new();
    o.insert("PhoneType".into(), json!(pc.phone_type));
    o.insert("AutoAccept".into(), json!(pc.auto_accept));
    o.insert(
        "AfterContactWorkTimeLimit".into(),
        json!(pc.after_contact_work_time_limit * acw_scale),
    );
    put_opt(&mut o, "DeskPhoneNumber", &pc.desk_phone_number);
    if let Some(p) = pc.persistent_connection {
        o.insert("PersistentConnection".into(), json!(p));
    }
    Value::Object(o)
}

fn user_common(u: &ConnectUser, o: &mut Map<String, Value>) {
    o.insert("Id".into(), json!(u.id));
    o.insert("Arn".into(), json!(u.arn));
    o.insert("Username".into(), json!(u.username));
    o.insert("SecurityProfileIds".into(), json!(u.security_profile_ids));
    o.insert("RoutingProfileId".into(), json!(u.routing_profile_id));
    put_opt(o, "HierarchyGroupId", &u.hierarchy_group_id);
    put_opt(o, "DirectoryUserId", &u.directory_user_id);
    if !u.tags.is_empty() {
        o.insert("Tags".into(), json!(u.tags));
    }
}

fn user_json(u: &ConnectUser, region: &str) -> Value {
    let mut o = Map::new();
    user_common(u, &mut o);
    o.insert("IdentityInfo".into(), identity_info_json(&u.identity_info));
    o.insert("PhoneConfig".into(), phone_config_json(&u.phone_config, 1));
    o.insert("LastModifiedTime".into(), json!(u.last_modified_time));
    o.insert("LastModifiedRegion".into(), json!(region));
    Value::Object(o)
}

fn user_search_json(u: &ConnectUser) -> Value {
    let mut o = Map::new();
    user_common(u, &mut o);
    let mut lite = Map::new();
    put_opt(&mut lite, "FirstName", &u.identity_info.first_name);
    put_opt(&mut lite, "LastName", &u.identity_info.last_name);
    o.insert("IdentityInfo".into(), Value::Object(lite));
    o.insert(
        "PhoneConfig".into(),
        phone_config_json(&u.phone_config, 1000),
    );
    Value::Object(o)
}

fn describe_user(world: &World, raw_instance: &str, user_id: &str) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let user = inst
        .users
        .get(user_id)
        .ok_or_else(|| not_found(format!("User not found for UserId: {user_id}")))?;
    Ok(json!({ "User": user_json(user, &world.region) }))
}

fn delete_user(world: &mut World, raw_instance: &str, user_id: &str) -> Result<Value, ApiError> {
    let inst = instance_mut(world, raw_instance)?;
    inst.remove_user(user_id)
        .map(|_| json!({}))
        .ok_or_else(|| not_found(format!("User not found for UserId: {user_id}")))
}

fn list_users(
    world: &World,
    ctx: &Ctx,
    raw_instance: &str,
    query: &HashMap<String, String>,
) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let max = page_size(query, 1000)?;
    let items = inst
        .users
        .values()
        .filter(|u| ctx.visible(u.created_ms))
        .map(|u| {
            let summary = json!({
                "Id": u.id, "Arn": u.arn, "Username": u.username,
                "LastModifiedTime": u.last_modified_time, "LastModifiedRegion": world.region,
            });
            (u.username.clone(), summary)
        })
        .collect();
    let (page, next) = paginate(SVC, items, query.get("nextToken").map(String::as_str), max)
        .map_err(|e| invalid(e.message))?;
    Ok(with_token(json!({ "UserSummaryList": page }), next))
}

// -- SearchUsers ---------------------------------------------------------------------

fn string_condition(
    req: &Req,
    cond: &Map<String, Value>,
    u: &ConnectUser,
) -> Result<bool, ApiError> {
    let r = req.sub(cond);
    let field = r.str("FieldName")?;
    let value = r.str("Value")?;
    let cmp = r.str("ComparisonType")?;
    let candidates: Vec<&str> = match field {
        "Username" => vec![u.username.as_str()],
        "FirstName" => u
            .identity_info
            .first_name
            .iter()
            .map(String::as_str)
            .collect(),
        "LastName" => u
            .identity_info
            .last_name
            .iter()
            .map(String::as_str)
            .collect(),
        "RoutingProfileId" => vec![u.routing_profile_id.as_str()],
        "SecurityProfileId" => u.security_profile_ids.iter().map(String::as_str).collect(),
        "resourceId" => vec![u.id.as_str()],
        other => {
            return Err(invalid(format!(
                "FieldName {other:?} is not supported for SearchUsers"
            )))
        }
    };
    let lower = value.to_lowercase();
    let hit = |c: &str| match cmp {
        "EXACT" => Ok(c == value),
        "CONTAINS" => Ok(c.to_lowercase().contains(&lower)),
        "STARTS_WITH" => Ok(c.to_lowercase().starts_with(&lower)),
        other => Err(invalid(format!(
            "ComparisonType {other:?} must be EXACT, CONTAINS or STARTS_WITH"
        ))),
    };
    for c in candidates {
        if hit(c)? {
            return Ok(true);
        }
    }
    // Surface an invalid ComparisonType even when there was nothing to compare.
    hit("")?;
    Ok(false)
}

fn criteria_match(req: &Req, crit: &Map<String, Value>, u: &ConnectUser) -> Result<bool, ApiError> {
    let r = req.sub(crit);
    if let Some(sc) = r.opt_obj("StringCondition")? {
        if !string_condition(req, sc, u)? {
            return Ok(false);
        }
    }
    if let Some(hc) = r.opt_obj("HierarchyGroupCondition")? {
        let want = req.sub(hc).opt_str("Value")?;
        if want.is_some() && u.hierarchy_group_id.as_deref() != want {
            return Ok(false);
        }
    }
    if r.opt_obj("ListCondition")?.is_some() {
        return Err(invalid("ListCondition is not supported by the sandbox"));
    }
    if let Some(and) = r.opt_list("AndConditions")? {
        for c in and {
            let c = c
                .as_object()
                .ok_or_else(|| SVC.serialization("AndConditions entries must be objects"))?;
            if !criteria_match(req, c, u)? {
                return Ok(false);
            }
        }
    }
    if let Some(or) = r.opt_list("OrConditions")? {
        let mut any = or.is_empty();
        for c in or {
            let c = c
                .as_object()
                .ok_or_else(|| SVC.serialization("OrConditions entries must be objects"))?;
            any |= criteria_match(req, c, u)?;
        }
        if !any {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The username of a criteria that is one exact Username condition and nothing else (how
/// a user is looked up by name): such a search is answered from the username index, with
/// the result the scan would give.
fn exact_username(crit: &Map<String, Value>) -> Option<&str> {
    let cond = crit.get("StringCondition")?.as_object()?;
    let text = |key: &str| cond.get(key).and_then(Value::as_str);
    (crit.len() == 1
        && text("FieldName") == Some("Username")
        && text("ComparisonType") == Some("EXACT"))
    .then(|| text("Value"))
    .flatten()
}

fn search_users(world: &World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let inst = instance(world, req.str("InstanceId")?)?;
    let max = req.max_results("MaxResults", 500, 100)?;
    let token = req.opt_str("NextToken")?;
    let criteria = req.opt_obj("SearchCriteria")?;
    let mut items = Vec::new();
    if let Some(username) = criteria.and_then(exact_username) {
        let user = inst.user_named(username);
        if let Some(u) = user.filter(|u| ctx.visible(u.created_ms)) {
            items.push((u.username.clone(), user_search_json(u)));
        }
    } else {
        for u in inst.users.values().filter(|u| ctx.visible(u.created_ms)) {
            let hit = match criteria {
                Some(c) => criteria_match(req, c, u)?,
                None => true,
            };
            if hit {
                items.push((u.username.clone(), user_search_json(u)));
            }
        }
    }
    let total = items.len();
    let (page, next) = paginate(SVC, items, token, max).map_err(|e| invalid(e.message))?;
    Ok(with_token(
        json!({ "Users": page, "ApproximateTotalCount": total }),
        next,
    ))
}

// -- profiles ------------------------------------------------------------------------

#[derive(Clone, Copy)]
enum Kind {
    Routing,
    Security,
    Hierarchy,
}

fn list_resources(
    world: &World,
    raw_instance: &str,
    query: &HashMap<String, String>,
    kind: Kind,
) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let max = page_size(query, 1000)?;
    let (map, member) = match kind {
        Kind::Routing => (&inst.routing_profiles, "RoutingProfileSummaryList"),
        Kind::Security => (&inst.security_profiles, "SecurityProfileSummaryList"),
        Kind::Hierarchy => (&inst.hierarchy_groups, "UserHierarchyGroupSummaryList"),
    };
    let items = map
        .values()
        .map(|r| {
            let v = json!({
                "Id": r.id, "Arn": r.arn, "Name": r.name,
                "LastModifiedTime": inst.created_time, "LastModifiedRegion": world.region,
            });
            (format!("{}\u{0}{}", r.name, r.id), v)
        })
        .collect();
    let (page, next) = paginate(SVC, items, query.get("nextToken").map(String::as_str), max)
        .map_err(|e| invalid(e.message))?;
    Ok(with_token(json!({ member: page }), next))
}

// -- updates -------------------------------------------------------------------------

/// Applies `change` to a user after the instance-level checks it asked for.
fn update_user(
    world: &mut World,
    ctx: &Ctx,
    raw_instance: &str,
    user_id: &str,
    change: impl FnOnce(&ConnectInstance, &ConnectUser) -> Result<ConnectUser, ApiError>,
) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let user = inst
        .users
        .get(user_id)
        .ok_or_else(|| not_found(format!("User not found for UserId: {user_id}")))?;
    let mut updated = change(inst, user)?;
    updated.last_modified_time = ctx.epoch;
    *user_mut(instance_mut(world, raw_instance)?, user_id)? = updated;
    Ok(json!({}))
}

fn update_identity_info(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let info = req.obj("IdentityInfo")?;
    update_user(world, ctx, i, u, |inst, user| {
        let mut next = user.clone();
        next.identity_info = parse_identity_info(
            req,
            &inst.identity_management_type,
            Some(info),
            user.identity_info.clone(),
            false,
        )?;
        Ok(next)
    })
}

fn update_security_profiles(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let ids = req.str_list("SecurityProfileIds")?;
    update_user(world, ctx, i, u, |inst, user| {
        let mut next = user.clone();
        next.security_profile_ids = check_security_profiles(inst, &ids)?;
        Ok(next)
    })
}

fn update_routing_profile(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let rp = req.str("RoutingProfileId")?;
    update_user(world, ctx, i, u, |inst, user| {
        check_exists(&inst.routing_profiles, rp, "RoutingProfile")?;
        let mut next = user.clone();
        next.routing_profile_id = rp.to_string();
        Ok(next)
    })
}

fn update_phone_config(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let pc = req.obj("PhoneConfig")?;
    update_user(world, ctx, i, u, |_, user| {
        let mut next = user.clone();
        next.phone_config = parse_phone_config(req, pc, user.phone_config.clone())?;
        Ok(next)
    })
}

fn update_hierarchy(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let group = req.opt_str("HierarchyGroupId")?;
    update_user(world, ctx, i, u, |inst, user| {
        if let Some(g) = group {
            check_exists(&inst.hierarchy_groups, g, "HierarchyGroup")?;
        }
        let mut next = user.clone();
        next.hierarchy_group_id = group.map(String::from);
        Ok(next)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{Seed, DEFAULT_CONNECT_INSTANCE_ID};

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
