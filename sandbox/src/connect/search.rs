//! SearchUsers: the search criteria (string, hierarchy group, AND/OR conditions), and
//! the exact-username lookup answered from the username index.

use serde_json::{json, Map, Value};

use super::users::user_search_json;
use super::{instance, invalid, with_token, SVC};
use crate::error::ApiError;
use crate::input::{paginate, Req};
use crate::ops::Ctx;
use crate::world::{ConnectUser, World};

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

pub(super) fn search_users(world: &World, ctx: &Ctx, req: &Req) -> Result<Value, ApiError> {
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
