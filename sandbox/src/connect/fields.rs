//! Validation of a Connect user's fields (IdentityInfo, PhoneConfig, profiles,
//! hierarchy group, tags) as CreateUser and the UpdateUser* operations share them,
//! with the identity-management rules of each instance type.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::{invalid, not_found, SVC};
use crate::error::ApiError;
use crate::input::Req;
use crate::validate;
use crate::world::{ConnectInstance, ConnectResource, IdentityInfo, PhoneConfig};

pub(super) fn parse_identity_info(
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

/// CreateUser's sign-in fields: a Password exactly on CONNECT_MANAGED instances (and a
/// valid one), a DirectoryUserId only on EXISTING_DIRECTORY ones.
pub(super) fn check_sign_in(
    imt: &str,
    password: Option<&str>,
    directory_user_id: Option<&str>,
) -> Result<(), ApiError> {
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
    Ok(())
}

pub(super) fn parse_phone_config(
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

pub(super) fn check_security_profiles(
    inst: &ConnectInstance,
    ids: &[&str],
) -> Result<Vec<String>, ApiError> {
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

pub(super) fn check_exists(
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

pub(super) fn parse_tags(req: &Req) -> Result<BTreeMap<String, String>, ApiError> {
    match req.opt_obj("Tags")? {
        Some(tags) => tag_map(tags),
        None => Ok(BTreeMap::new()),
    }
}

/// A `TagMap` (CreateUser's `Tags`, TagResource's `tags`): 1..50 pairs, each key and value
/// by the model's rules.
pub(super) fn tag_map(tags: &Map<String, Value>) -> Result<BTreeMap<String, String>, ApiError> {
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
