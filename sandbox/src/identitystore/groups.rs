//! Identity Store groups and memberships.

use super::*;

// -- groups ----------------------------------------------------------------------------

pub(super) fn group_json(store_id: &str, g: &IdsGroup) -> Value {
    let mut o = Map::new();
    o.insert("IdentityStoreId".into(), json!(store_id));
    o.insert("GroupId".into(), json!(g.group_id));
    o.insert("GroupArn".into(), json!(group_arn(&g.group_id)));
    o.insert("Revision".into(), json!("1"));
    o.insert("DisplayName".into(), json!(g.display_name));
    if let Some(d) = &g.description {
        o.insert("Description".into(), json!(d));
    }
    o.insert("CreatedAt".into(), json!(g.created_at));
    o.insert("UpdatedAt".into(), json!(g.created_at));
    Value::Object(o)
}

pub(super) fn create_group(world: &mut World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store = store_mut(world, req)?;
    let display_name = req
        .opt_str("DisplayName")?
        .ok_or_else(|| invalid("displayName is a required attribute"))?;
    validate::ids_text("displayName", display_name).map_err(invalid)?;
    validate::reserved(display_name).map_err(invalid)?;
    let description = req.opt_str("Description")?;
    if let Some(d) = description {
        validate::ids_text("description", d).map_err(invalid)?;
    }
    let lower = display_name.to_lowercase();
    if store
        .groups
        .values()
        .any(|g| g.display_name.to_lowercase() == lower)
    {
        return Err(conflict(format!(
            "Duplicate GroupDisplayName: a group named {display_name} already exists"
        )));
    }
    let prefix = store
        .id
        .strip_prefix("d-")
        .filter(|h| h.len() == 10)
        .map(String::from)
        .unwrap_or_else(|| crate::world::new_uuid().replace('-', "")[..10].to_string());
    let id = format!("{prefix}-{}", crate::world::new_uuid());
    store.groups.insert(
        id.clone(),
        IdsGroup {
            group_id: id.clone(),
            display_name: display_name.into(),
            description: description.map(String::from),
            created_at: ctx.epoch,
        },
    );
    Ok(
        json!({ "IdentityStoreId": store.id, "GroupId": id, "GroupArn": group_arn(&id), "Revision": "1" }),
    )
}

pub(super) fn describe_group(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let id = resource_id(req, "GroupId")?;
    let g = store
        .groups
        .get(id)
        .ok_or_else(|| not_found("GROUP", Some(id), format!("GROUP with id {id} not found")))?;
    Ok(group_json(&store.id, g))
}

pub(super) fn get_group_id(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let (path, value) = unique_attribute(req, "GROUP")?;
    if path != "displayname" {
        return Err(invalid(format!(
            "{path} is not a valid unique attribute path; use displayName"
        )));
    }
    let lower = value.to_lowercase();
    store
        .groups
        .values()
        .find(|g| g.display_name.to_lowercase() == lower)
        .map(|g| json!({ "IdentityStoreId": store.id, "GroupId": g.group_id, "GroupArn": group_arn(&g.group_id) }))
        .ok_or_else(|| not_found("GROUP", None, "GROUP not found"))
}

pub(super) fn list_groups(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = store
        .groups
        .values()
        .map(|g| (g.group_id.clone(), group_json(&store.id, g)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "Groups": page }), next))
}

pub(super) fn delete_group(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let id = resource_id(req, "GroupId")?.to_string();
    let store = store_mut(world, req)?;
    if store.groups.remove(&id).is_none() {
        return Err(not_found(
            "GROUP",
            Some(&id),
            format!("GROUP with id {id} not found"),
        ));
    }
    store.retain_memberships(|m| m.group_id != id);
    world
        .assignments
        .retain(|a| !(a.principal_type == "GROUP" && a.principal_id == id));
    Ok(json!({}))
}

// -- memberships -------------------------------------------------------------------------

pub(super) fn membership_json(store_id: &str, m: &Membership) -> Value {
    json!({
        "IdentityStoreId": store_id, "MembershipId": m.membership_id, "MembershipArn": membership_arn(&m.membership_id),
        "GroupId": m.group_id, "MemberId": { "UserId": m.user_id },
        "CreatedAt": m.created_at, "UpdatedAt": m.created_at,
    })
}

pub(super) fn check_group_and_user(
    store: &IdentityStore,
    group_id: &str,
    user_id: &str,
) -> Result<(), ApiError> {
    if !store.groups.contains_key(group_id) {
        return Err(not_found(
            "GROUP",
            Some(group_id),
            format!("GROUP with id {group_id} not found"),
        ));
    }
    if !store.users.contains_key(user_id) {
        return Err(not_found(
            "USER",
            Some(user_id),
            format!("USER with id {user_id} not found"),
        ));
    }
    Ok(())
}

pub(super) fn create_membership(
    world: &mut World,
    ctx: &Ctx,
    req: &Req,
) -> Result<Value, ApiError> {
    let group_id = resource_id(req, "GroupId")?;
    let user_id = member_user_id(req)?;
    let store = store_mut(world, req)?;
    check_group_and_user(store, group_id, user_id)?;
    if store.membership(group_id, user_id).is_some() {
        return Err(conflict(format!(
            "Member {user_id} is already in group {group_id}"
        )));
    }
    let id = crate::world::new_uuid();
    store.insert_membership(Membership {
        membership_id: id.clone(),
        group_id: group_id.into(),
        user_id: user_id.into(),
        created_at: ctx.epoch,
    });
    Ok(
        json!({ "IdentityStoreId": store.id, "MembershipId": id, "MembershipArn": membership_arn(&id) }),
    )
}

pub(super) fn get_membership_id(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let group_id = resource_id(req, "GroupId")?;
    let user_id = member_user_id(req)?;
    check_group_and_user(store, group_id, user_id)?;
    store
        .membership(group_id, user_id)
        .map(|m| json!({ "IdentityStoreId": store.id, "MembershipId": m.membership_id, "MembershipArn": membership_arn(&m.membership_id) }))
        .ok_or_else(|| not_found("GROUP_MEMBERSHIP", None, "GROUP_MEMBERSHIP not found"))
}

pub(super) fn delete_membership(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let id = resource_id(req, "MembershipId")?.to_string();
    let store = store_mut(world, req)?;
    store
        .remove_membership(&id)
        .map(|_| json!({}))
        .ok_or_else(|| {
            not_found(
                "GROUP_MEMBERSHIP",
                Some(&id),
                format!("GROUP_MEMBERSHIP with id {id} not found"),
            )
        })
}

pub(super) fn list_memberships(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let group_id = resource_id(req, "GroupId")?;
    if !store.groups.contains_key(group_id) {
        return Err(not_found(
            "GROUP",
            Some(group_id),
            format!("GROUP with id {group_id} not found"),
        ));
    }
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = store
        .memberships
        .values()
        .filter(|m| m.group_id == group_id)
        .map(|m| (m.membership_id.clone(), membership_json(&store.id, m)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "GroupMemberships": page }), next))
}

pub(super) fn list_memberships_for_member(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let user_id = member_user_id(req)?;
    if !store.users.contains_key(user_id) {
        return Err(not_found(
            "USER",
            Some(user_id),
            format!("USER with id {user_id} not found"),
        ));
    }
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = store
        .memberships
        .values()
        .filter(|m| m.user_id == user_id)
        .map(|m| (m.membership_id.clone(), membership_json(&store.id, m)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "GroupMemberships": page }), next))
}

pub(super) fn is_member_in_groups(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let user_id = member_user_id(req)?;
    let groups = req.str_list("GroupIds")?;
    if !(1..=100).contains(&groups.len()) {
        return Err(invalid("GroupIds must contain between 1 and 100 ids"));
    }
    if !store.users.contains_key(user_id) {
        return Err(not_found(
            "USER",
            Some(user_id),
            format!("USER with id {user_id} not found"),
        ));
    }
    let results: Vec<Value> = groups
        .iter()
        .map(|g| {
            let exists = store.membership(g, user_id).is_some();
            json!({ "GroupId": g, "MemberId": { "UserId": user_id }, "MembershipExists": exists })
        })
        .collect();
    Ok(json!({ "Results": results }))
}
