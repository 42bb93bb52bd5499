//! Connect users: CreateUser, DescribeUser, DeleteUser, ListUsers and the UpdateUser*
//! family, and the user documents they (and SearchUsers) return.

use std::collections::HashMap;

use serde_json::{json, Map, Value};

use super::fields::{
    check_exists, check_security_profiles, check_sign_in, parse_identity_info, parse_phone_config,
    parse_tags,
};
use super::{
    instance, instance_mut, invalid, not_found, page_size, put_opt, user_mut, with_token, SVC,
};
use crate::error::ApiError;
use crate::input::{paginate, Req};
use crate::ops::Ctx;
use crate::validate;
use crate::world::{ConnectInstance, ConnectUser, IdentityInfo, PhoneConfig, World};

pub(super) fn create_user(
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
    check_sign_in(imt, password, directory_user_id)?;
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

pub(super) fn user_search_json(u: &ConnectUser) -> Value {
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

pub(super) fn describe_user(
    world: &World,
    raw_instance: &str,
    user_id: &str,
) -> Result<Value, ApiError> {
    let inst = instance(world, raw_instance)?;
    let user = inst
        .users
        .get(user_id)
        .ok_or_else(|| not_found(format!("User not found for UserId: {user_id}")))?;
    Ok(json!({ "User": user_json(user, &world.region) }))
}

pub(super) fn delete_user(
    world: &mut World,
    raw_instance: &str,
    user_id: &str,
) -> Result<Value, ApiError> {
    let inst = instance_mut(world, raw_instance)?;
    inst.remove_user(user_id)
        .map(|_| json!({}))
        .ok_or_else(|| not_found(format!("User not found for UserId: {user_id}")))
}

pub(super) fn list_users(
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

pub(super) fn update_identity_info(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let info = req.obj("IdentityInfo")?;
    update_user(world, ctx, i, u, |inst, user| {
        let mut next = user.clone();
        // The request's IdentityInfo is the user's new one: the optional contact fields it
        // leaves out (SecondaryEmail, Mobile) are cleared; names and Email it leaves out
        // are kept (they cannot be blank).
        let base = IdentityInfo {
            secondary_email: None,
            mobile: None,
            ..user.identity_info.clone()
        };
        next.identity_info =
            parse_identity_info(req, &inst.identity_management_type, Some(info), base, false)?;
        Ok(next)
    })
}

pub(super) fn update_security_profiles(
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

pub(super) fn update_routing_profile(
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

pub(super) fn update_phone_config(
    world: &mut World,
    ctx: &Ctx,
    i: &str,
    u: &str,
    req: &Req,
) -> Result<Value, ApiError> {
    let pc = req.obj("PhoneConfig")?;
    update_user(world, ctx, i, u, |_, user| {
        let mut next = user.clone();
        // The request's PhoneConfig is the user's new one: AutoAccept and
        // AfterContactWorkTimeLimit have model defaults (false, 0), which the SDKs do not
        // serialise, so an omitted one means its default, not "unchanged".
        next.phone_config = parse_phone_config(req, pc, PhoneConfig::default())?;
        Ok(next)
    })
}

pub(super) fn update_hierarchy(
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
