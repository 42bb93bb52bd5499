//! Identity Store users: Create, Describe, Delete, Update (names and text attributes),
//! GetUserId, ListUsers.

use super::*;

pub(super) fn create_user(world: &mut World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store_id = store_id(world, req)?;
    let new = NewUser::from_request(req)?;
    let store = world
        .identity_stores
        .get_mut(&store_id)
        .ok_or_else(|| not_found("IDENTITY_STORE", None, "Identity store does not exist"))?;
    new.check_room(store)?;
    let mut attributes = Map::new();
    for key in USER_ATTRIBUTES {
        if let Some(v) = req.body.get(*key) {
            attributes.insert((*key).to_string(), v.clone());
        }
    }
    let prefix = store_id
        .strip_prefix("d-")
        .filter(|h| h.len() == 10)
        .map(String::from)
        .unwrap_or_else(|| crate::world::new_uuid().replace('-', "")[..10].to_string());
    let user_id = format!("{prefix}-{}", crate::world::new_uuid());
    let user = IdsUser {
        user_id: user_id.clone(),
        user_name: new.user_name.to_string(),
        display_name: new.display_name.to_string(),
        name: Value::Object(new.name.clone()),
        emails: new.emails,
        attributes,
        created_at: ctx.epoch,
        created_ms: Some(ctx.now_ms),
    };
    let store = store_mut(world, req)?;
    store.insert_user(user);
    Ok(json!({
        "IdentityStoreId": store_id, "UserId": user_id, "UserArn": user_arn(&user_id), "Revision": "1",
    }))
}

/// A CreateUser request's fields, validated as the service does.
pub(super) struct NewUser<'r> {
    user_name: &'r str,
    display_name: &'r str,
    name: &'r Map<String, Value>,
    emails: Vec<Value>,
    /// The emails' values, lower-cased (uniqueness ignores case).
    lower_emails: Vec<String>,
}

impl<'r> NewUser<'r> {
    fn from_request(req: &'r Req) -> Result<NewUser<'r>, ApiError> {
        let user_name = req
            .opt_str("UserName")?
            .ok_or_else(|| invalid("userName is a required attribute"))?;
        validate::ids_user_name(user_name).map_err(invalid)?;
        let display_name = req
            .opt_str("DisplayName")?
            .ok_or_else(|| invalid("displayName is a required attribute"))?;
        validate::ids_text("displayName", display_name).map_err(invalid)?;
        let name = req
            .opt_obj("Name")?
            .ok_or_else(|| invalid("name is a required attribute"))?;
        for (key, path) in [
            ("GivenName", "name.givenName"),
            ("FamilyName", "name.familyName"),
        ] {
            if req.sub(name).opt_str(key)?.is_none() {
                return Err(invalid(format!("{path} is a required attribute")));
            }
        }
        for key in [
            "Formatted",
            "GivenName",
            "FamilyName",
            "MiddleName",
            "HonorificPrefix",
            "HonorificSuffix",
        ] {
            check_text(req, name, key, &format!("name.{key}"))?;
        }
        check_list_len(req, "Emails", 1, 1)?;
        for key in ["PhoneNumbers", "Addresses", "Roles"] {
            check_list_len(req, key, 1, 1)?;
        }
        check_list_len(req, "Photos", 1, 3)?;
        let emails: Vec<Value> = req.opt_list("Emails")?.cloned().unwrap_or_default();
        let mut lower_emails = Vec::new();
        for e in &emails {
            let e = e
                .as_object()
                .ok_or_else(|| SVC.serialization("Emails entries must be objects"))?;
            let value = req.sub(e).opt_str("Value")?;
            check_text(req, e, "Value", "emails.value")?;
            check_text(req, e, "Type", "emails.type")?;
            if let Some(v) = value {
                lower_emails.push(v.to_lowercase());
            }
        }
        Ok(NewUser {
            user_name,
            display_name,
            name,
            emails,
            lower_emails,
        })
    }

    /// The store can take the user: its name and emails are free, and the quota not reached.
    fn check_room(&self, store: &IdentityStore) -> Result<(), ApiError> {
        let user_name = self.user_name;
        if store.holds('n', user_name) {
            return Err(conflict(format!(
                "Duplicate UserName: a user named {user_name} already exists"
            )));
        }
        if self.lower_emails.iter().any(|e| store.holds('e', e)) {
            return Err(conflict(
                "Duplicate Emails.Value: the email address is already used by another user",
            ));
        }
        if store.users.len() >= store.max_users {
            return Err(ApiError::new(
                SVC,
                "ServiceQuotaExceededException",
                "The number of users exceeds the maximum allowed",
            ));
        }
        Ok(())
    }
}

pub(super) fn user_json(store_id: &str, u: &IdsUser) -> Value {
    let mut o = Map::new();
    o.insert("IdentityStoreId".into(), json!(store_id));
    o.insert("UserId".into(), json!(u.user_id));
    o.insert("UserArn".into(), json!(user_arn(&u.user_id)));
    o.insert("Revision".into(), json!("1"));
    o.insert("UserName".into(), json!(u.user_name));
    o.insert("DisplayName".into(), json!(u.display_name));
    o.insert("Name".into(), u.name.clone());
    if !u.emails.is_empty() {
        o.insert("Emails".into(), json!(u.emails));
    }
    for (k, v) in &u.attributes {
        o.insert(k.clone(), v.clone());
    }
    o.insert("UserStatus".into(), json!("ENABLED"));
    o.insert("CreatedAt".into(), json!(u.created_at));
    o.insert("UpdatedAt".into(), json!(u.created_at));
    Value::Object(o)
}

pub(super) fn describe_user(world: &World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let id = resource_id(req, "UserId")?;
    let user = store
        .users
        .get(id)
        .ok_or_else(|| not_found("USER", Some(id), format!("USER with id {id} not found")))?;
    Ok(user_json(&store.id, user))
}

pub(super) fn delete_user(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let id = resource_id(req, "UserId")?.to_string();
    let store = store_mut(world, req)?;
    if store.remove_user(&id).is_none() {
        return Err(not_found(
            "USER",
            Some(&id),
            format!("USER with id {id} not found"),
        ));
    }
    store.retain_memberships(|m| m.user_id != id);
    let store_id = store.id.clone();
    let apps: Vec<String> = world
        .applications
        .keys()
        .filter(|arn| world.store_of_application(arn).is_ok_and(|s| s == store_id))
        .cloned()
        .collect();
    world.assignments.retain(|a| {
        !(a.principal_type == "USER" && a.principal_id == id && apps.contains(&a.application_arn))
    });
    Ok(json!({}))
}

/// Where an UpdateUser attribute path lands: a member of `Name`, a top-level member, or one
/// of the other attributes, and whether IAM Identity Center requires it (no removal).
pub(super) enum Slot {
    Name(&'static str, bool),
    DisplayName,
    Attribute(&'static str),
}

/// The attribute paths UpdateUser accepts here (compared without case, as GetUserId's):
/// the names, the display name and the plain text attributes. Others (userName, emails,
/// addresses, ...) are refused with a ValidationException.
pub(super) fn update_slot(path: &str) -> Option<Slot> {
    Some(match path.to_lowercase().as_str() {
        "name.givenname" => Slot::Name("GivenName", true),
        "name.familyname" => Slot::Name("FamilyName", true),
        "name.formatted" => Slot::Name("Formatted", false),
        "name.middlename" => Slot::Name("MiddleName", false),
        "name.honorificprefix" => Slot::Name("HonorificPrefix", false),
        "name.honorificsuffix" => Slot::Name("HonorificSuffix", false),
        "displayname" => Slot::DisplayName,
        "nickname" => Slot::Attribute("NickName"),
        "title" => Slot::Attribute("Title"),
        "usertype" => Slot::Attribute("UserType"),
        "preferredlanguage" => Slot::Attribute("PreferredLanguage"),
        "locale" => Slot::Attribute("Locale"),
        "timezone" => Slot::Attribute("Timezone"),
        _ => return None,
    })
}

/// UpdateUser: 1..100 operations, each replacing (a string `AttributeValue`) or removing
/// (no value) one attribute, all checked before any is applied; a value breaks the
/// CreateUser rules (empty, too long, not allowed characters) → ValidationException, and so
/// does removing a name Identity Center requires.
pub(super) fn update_user(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let id = resource_id(req, "UserId")?;
    let ops = req
        .opt_list("Operations")?
        .ok_or_else(|| SVC.missing("Operations"))?;
    check_list_len(req, "Operations", 1, 100)?;
    let mut user = store
        .users
        .get(id)
        .ok_or_else(|| not_found("USER", Some(id), format!("USER with id {id} not found")))?
        .clone();
    for op in ops {
        let op = op
            .as_object()
            .ok_or_else(|| SVC.serialization("Operations entries must be objects"))?;
        let path = req.sub(op).str("AttributePath")?;
        let slot = update_slot(path).ok_or_else(|| {
            invalid(format!(
                "AttributePath {path} is not supported by UpdateUser here"
            ))
        })?;
        let value = match op.get("AttributeValue") {
            None | Some(Value::Null) => None,
            Some(Value::String(v)) => {
                validate::ids_text(path, v).map_err(invalid)?;
                Some(v.clone())
            }
            Some(_) => {
                return Err(invalid(format!(
                    "AttributeValue for {path} must be a string"
                )))
            }
        };
        match (slot, value) {
            (Slot::Name(_, true) | Slot::DisplayName, None) => {
                return Err(invalid(format!(
                    "{path} is a required attribute and cannot be removed"
                )))
            }
            (Slot::DisplayName, Some(v)) => user.display_name = v,
            (Slot::Name(key, _), v) => {
                if !user.name.is_object() {
                    user.name = json!({});
                }
                if let Some(name) = user.name.as_object_mut() {
                    match v {
                        Some(v) => name.insert(key.to_string(), json!(v)),
                        None => name.remove(key),
                    };
                }
            }
            (Slot::Attribute(key), Some(v)) => {
                user.attributes.insert(key.to_string(), json!(v));
            }
            (Slot::Attribute(key), None) => {
                user.attributes.remove(key);
            }
        }
    }
    store_mut(world, req)?.insert_user(user);
    Ok(json!({}))
}

/// Parses `AlternateIdentifier.UniqueAttribute` into (lower-cased path, value).
pub(super) fn unique_attribute(
    req: &Req,
    resource_type: &str,
) -> Result<(String, String), ApiError> {
    let alt = req.obj("AlternateIdentifier")?;
    let alt_req = req.sub(alt);
    if alt_req.opt_obj("ExternalId")?.is_some() {
        return Err(not_found(
            resource_type,
            None,
            format!("{resource_type} not found for the given ExternalId"),
        ));
    }
    let ua = alt_req
        .opt_obj("UniqueAttribute")?
        .ok_or_else(|| invalid("AlternateIdentifier must have UniqueAttribute or ExternalId"))?;
    let ua_req = req.sub(ua);
    let path = ua_req.str("AttributePath")?;
    let value = match ua.get("AttributeValue") {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => return Err(SVC.missing("AttributeValue")),
        Some(_) => {
            return Err(invalid(
                "AttributeValue must be a string for this attribute path",
            ))
        }
    };
    Ok((path.to_lowercase(), value))
}

pub(super) fn get_user_id(world: &World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let (path, value) = unique_attribute(req, "USER")?;
    let kind = match path.as_str() {
        "username" => 'n',
        "emails.value" => 'e',
        _ => {
            return Err(invalid(format!(
                "{path} is not a valid unique attribute path; use userName or emails.value"
            )))
        }
    };
    // The first visible holder in id order, as a scan of the users would find it.
    (store.users_holding(kind, &value))
        .filter(|u| ctx.visible(u.created_ms))
        .min_by(|a, b| a.user_id.cmp(&b.user_id))
        .map(|u| json!({ "IdentityStoreId": store.id, "UserId": u.user_id, "UserArn": user_arn(&u.user_id) }))
        .ok_or_else(|| not_found("USER", None, "USER not found"))
}

pub(super) fn list_users(world: &World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
    let store = store(world, req)?;
    let max = req.max_results("MaxResults", 100, 100)?;
    let filter = match req.opt_list("Filters")? {
        Some(f) if f.len() > 1 => return Err(invalid("Filters may contain at most one filter")),
        Some(f) => f.first().and_then(Value::as_object),
        None => None,
    };
    let filter_value = match filter {
        Some(f) => {
            let r = req.sub(f);
            let path = r.str("AttributePath")?;
            if !path.eq_ignore_ascii_case("userName") {
                return Err(invalid("Only the UserName attribute path can be filtered"));
            }
            Some(r.str("AttributeValue")?.to_lowercase())
        }
        None => None,
    };
    let items = store
        .users
        .values()
        .filter(|u| ctx.visible(u.created_ms))
        .filter(|u| {
            filter_value
                .as_ref()
                .is_none_or(|v| &u.user_name.to_lowercase() == v)
        })
        .map(|u| (u.user_id.clone(), user_json(&store.id, u)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "Users": page }), next))
}
