//! IAM Identity Center admin API (awsJson1_1, `SWBExternalService.<Op>`):
//! instances, applications and application assignments.
//!
//! Principals are checked against the identity store of the application's
//! instance. Undocumented choices (see README): a duplicate assignment is a
//! ConflictException; an unknown-but-well-formed InstanceArn on ListApplications
//! is a ValidationException (that op models no ResourceNotFoundException);
//! ListApplicationAssignmentsForPrincipal also reports a USER's access through
//! its groups' assignments.

use serde_json::{json, Map, Value};

use crate::error::{ApiError, Service};
use crate::input::{paginate, Req};
use crate::ops::{Ctx, OpSpec};
use crate::validate;
use crate::world::{Application, Assignment, World};

const SVC: Service = Service::SsoAdmin;

const READ: &[&str] = &["ResourceNotFoundException", "ValidationException"];

/// The SSO Admin operations.
pub(crate) const OPS: &[OpSpec] = &[
    OpSpec {
        name: "ListInstances",
        method: "POST",
        uri: "/",
        errors: &["ValidationException"],
    },
    OpSpec {
        name: "ListApplications",
        method: "POST",
        uri: "/",
        errors: &["ValidationException"],
    },
    OpSpec {
        name: "DescribeApplication",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "CreateApplicationAssignment",
        method: "POST",
        uri: "/",
        errors: &[
            "ResourceNotFoundException",
            "ValidationException",
            "ConflictException",
        ],
    },
    OpSpec {
        name: "DeleteApplicationAssignment",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "DescribeApplicationAssignment",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "ListApplicationAssignments",
        method: "POST",
        uri: "/",
        errors: READ,
    },
    OpSpec {
        name: "ListApplicationAssignmentsForPrincipal",
        method: "POST",
        uri: "/",
        errors: READ,
    },
];

/// Runs an SSO Admin operation.
pub(crate) fn dispatch(
    world: &mut World,
    _ctx: &Ctx,
    op: &str,
    body: &Map<String, Value>,
) -> Result<Value, ApiError> {
    let req = Req::new(SVC, body);
    match op {
        "ListInstances" => list_instances(world, &req),
        "ListApplications" => list_applications(world, &req),
        "DescribeApplication" => describe_application(world, &req),
        "CreateApplicationAssignment" => create_assignment(world, &req),
        "DeleteApplicationAssignment" => delete_assignment(world, &req),
        "DescribeApplicationAssignment" => describe_assignment(world, &req),
        "ListApplicationAssignments" => list_assignments(world, &req),
        "ListApplicationAssignmentsForPrincipal" => list_assignments_for_principal(world, &req),
        other => Err(ApiError::new(
            SVC,
            "UnknownOperationException",
            format!("Unknown operation {other}"),
        )),
    }
}

fn not_found(message: impl Into<String>) -> ApiError {
    ApiError::new(SVC, "ResourceNotFoundException", message)
}

fn invalid(message: impl Into<String>) -> ApiError {
    SVC.validation(message)
}

fn with_token(mut out: Value, next: Option<String>) -> Value {
    if let (Some(t), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("NextToken".into(), Value::String(t));
    }
    out
}

fn instance_arn<'a>(world: &World, req: &Req<'a>) -> Result<&'a str, ApiError> {
    let arn = req.str("InstanceArn")?;
    validate::sso_instance_arn(arn).map_err(invalid)?;
    let _ = world;
    Ok(arn)
}

fn application<'w>(world: &'w World, req: &Req) -> Result<&'w Application, ApiError> {
    let arn = req.str("ApplicationArn")?;
    validate::sso_application_arn(arn).map_err(invalid)?;
    world
        .applications
        .get(arn)
        .ok_or_else(|| not_found(format!("Application {arn} does not exist")))
}

fn application_json(world: &World, app: &Application) -> Value {
    let store = world
        .sso_instances
        .get(&app.instance_arn)
        .map(|i| i.identity_store_id.clone())
        .unwrap_or_default();
    let mut o = json!({
        "ApplicationArn": app.arn,
        "ApplicationProviderArn": app.provider_arn,
        "Name": app.name,
        "ApplicationAccount": world.account_id,
        "InstanceArn": app.instance_arn,
        "IdentityStoreArn": format!("arn:aws:identitystore::{}:identitystore/{store}", world.account_id),
        "Status": app.status,
        "PortalOptions": { "Visibility": "ENABLED" },
        "CreatedDate": app.created_date,
        "CreatedFrom": world.region,
    });
    if let (Some(d), Some(obj)) = (&app.description, o.as_object_mut()) {
        obj.insert("Description".into(), json!(d));
    }
    o
}

fn list_instances(world: &World, req: &Req) -> Result<Value, ApiError> {
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = world
        .sso_instances
        .values()
        .map(|i| {
            let mut v = json!({
                "InstanceArn": i.instance_arn, "IdentityStoreId": i.identity_store_id,
                "OwnerAccountId": world.account_id, "CreatedDate": i.created_date, "Status": "ACTIVE",
            });
            if let (Some(n), Some(o)) = (&i.name, v.as_object_mut()) {
                o.insert("Name".into(), json!(n));
            }
            (i.instance_arn.clone(), v)
        })
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "Instances": page }), next))
}

fn list_applications(world: &World, req: &Req) -> Result<Value, ApiError> {
    let arn = instance_arn(world, req)?;
    if !world.sso_instances.contains_key(arn) {
        return Err(invalid(format!("The instance {arn} does not exist")));
    }
    let max = req.max_results("MaxResults", 100, 100)?;
    let filter = req.opt_obj("Filter")?;
    let (account, provider) = match filter {
        Some(f) => (
            req.sub(f).opt_str("ApplicationAccount")?,
            req.sub(f).opt_str("ApplicationProvider")?,
        ),
        None => (None, None),
    };
    let items = world
        .applications
        .values()
        .filter(|a| a.instance_arn == arn)
        .filter(|_| account.is_none_or(|acct| acct == world.account_id))
        .filter(|a| provider.is_none_or(|p| p == a.provider_arn))
        .map(|a| (a.arn.clone(), application_json(world, a)))
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "Applications": page }), next))
}

fn describe_application(world: &World, req: &Req) -> Result<Value, ApiError> {
    let app = application(world, req)?;
    Ok(application_json(world, app))
}

/// Parses and checks (PrincipalType, PrincipalId) against the store behind `store_id`.
fn principal<'a>(
    world: &World,
    store_id: &str,
    req: &Req<'a>,
) -> Result<(&'a str, &'a str), ApiError> {
    let ptype = req.str("PrincipalType")?;
    let pid = req.str("PrincipalId")?;
    if ptype != "USER" && ptype != "GROUP" {
        return Err(invalid(format!(
            "PrincipalType {ptype:?} must be USER or GROUP"
        )));
    }
    validate::resource_id("principalId", pid).map_err(invalid)?;
    let store = world.identity_stores.get(store_id);
    let exists = store.is_some_and(|s| match ptype {
        "USER" => s.users.contains_key(pid),
        _ => s.groups.contains_key(pid),
    });
    if exists {
        Ok((ptype, pid))
    } else {
        Err(not_found(format!(
            "{ptype} {pid} does not exist in identity store {store_id}"
        )))
    }
}

fn assignment_for(world: &World, req: &Req) -> Result<Assignment, ApiError> {
    let app = application(world, req)?;
    let store_id = world
        .store_of_application(&app.arn)
        .map_err(|e| not_found(e.to_string()))?;
    let (ptype, pid) = principal(world, &store_id, req)?;
    Ok(Assignment {
        application_arn: app.arn.clone(),
        principal_type: ptype.into(),
        principal_id: pid.into(),
    })
}

fn assignment_json(a: &Assignment) -> Value {
    json!({ "ApplicationArn": a.application_arn, "PrincipalType": a.principal_type, "PrincipalId": a.principal_id })
}

fn create_assignment(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let a = assignment_for(world, req)?;
    if world.assignments.contains(&a) {
        return Err(ApiError::new(
            SVC,
            "ConflictException",
            format!(
                "{} {} is already assigned to the application",
                a.principal_type, a.principal_id
            ),
        ));
    }
    world.assignments.insert(a);
    Ok(json!({}))
}

fn delete_assignment(world: &mut World, req: &Req) -> Result<Value, ApiError> {
    let a = assignment_for(world, req)?;
    if !world.assignments.remove(&a) {
        return Err(not_found(format!(
            "{} {} is not assigned to the application",
            a.principal_type, a.principal_id
        )));
    }
    Ok(json!({}))
}

fn describe_assignment(world: &World, req: &Req) -> Result<Value, ApiError> {
    let a = assignment_for(world, req)?;
    if world.assignments.contains(&a) {
        Ok(assignment_json(&a))
    } else {
        Err(not_found(format!(
            "{} {} is not assigned to the application",
            a.principal_type, a.principal_id
        )))
    }
}

fn list_assignments(world: &World, req: &Req) -> Result<Value, ApiError> {
    let app = application(world, req)?;
    let max = req.max_results("MaxResults", 100, 100)?;
    let items = world
        .assignments
        .iter()
        .filter(|a| a.application_arn == app.arn)
        .map(|a| {
            (
                format!("{}/{}", a.principal_type, a.principal_id),
                assignment_json(a),
            )
        })
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "ApplicationAssignments": page }), next))
}

fn list_assignments_for_principal(world: &World, req: &Req) -> Result<Value, ApiError> {
    let arn = instance_arn(world, req)?;
    let inst = world
        .sso_instances
        .get(arn)
        .ok_or_else(|| not_found(format!("Instance {arn} does not exist")))?;
    let (ptype, pid) = principal(world, &inst.identity_store_id, req)?;
    let max = req.max_results("MaxResults", 100, 100)?;
    let app_filter = match req.opt_obj("Filter")? {
        Some(f) => req.sub(f).opt_str("ApplicationArn")?,
        None => None,
    };
    // The principal's own assignments plus, for a user, its groups'.
    let mut principals = vec![(ptype.to_string(), pid.to_string())];
    if ptype == "USER" {
        if let Some(store) = world.identity_stores.get(&inst.identity_store_id) {
            principals.extend(
                store
                    .memberships
                    .values()
                    .filter(|m| m.user_id == pid)
                    .map(|m| ("GROUP".to_string(), m.group_id.clone())),
            );
        }
    }
    let mut apps: Vec<String> = world
        .assignments
        .iter()
        .filter(|a| {
            principals
                .iter()
                .any(|(t, i)| *t == a.principal_type && *i == a.principal_id)
        })
        .filter(|a| {
            world
                .applications
                .get(&a.application_arn)
                .is_some_and(|x| x.instance_arn == arn)
        })
        .filter(|a| app_filter.is_none_or(|f| f == a.application_arn))
        .map(|a| a.application_arn.clone())
        .collect();
    apps.sort();
    apps.dedup();
    let items = apps
        .into_iter()
        .map(|app| {
            let v = json!({ "ApplicationArn": app, "PrincipalType": ptype, "PrincipalId": pid });
            (app, v)
        })
        .collect();
    let (page, next) = paginate(SVC, items, req.opt_str("NextToken")?, max)?;
    Ok(with_token(json!({ "ApplicationAssignments": page }), next))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::{
        Seed, DEFAULT_APPLICATION_ARN, DEFAULT_IDENTITY_STORE_ID, DEFAULT_SSO_INSTANCE_ARN,
    };

    fn call(w: &mut World, op: &str, body: Value) -> Result<Value, ApiError> {
        let obj = body.as_object().cloned().unwrap_or_default();
        dispatch(
            w,
            &Ctx {
                now_ms: 0,
                window_ms: 0,
                epoch: 1.0,
            },
            op,
            &obj,
        )
    }

    #[test]
    fn assignments_lifecycle() {
        let mut w = World::from_seed(&Seed::default()).expect("world");
        let gid = w.identity_stores[DEFAULT_IDENTITY_STORE_ID]
            .groups
            .keys()
            .next()
            .cloned()
            .expect("group");
        let uid = w
            .add_identity_user("zed@example.com", "zed@example.com", "Zed", "Z")
            .expect("user");
        w.add_membership(&gid, &uid).expect("membership");
        let body = json!({"ApplicationArn": DEFAULT_APPLICATION_ARN, "PrincipalType": "GROUP", "PrincipalId": gid});
        assert_eq!(
            call(&mut w, "DescribeApplicationAssignment", body.clone()).map_err(|e| e.code),
            Err("ResourceNotFoundException".into())
        );
        call(&mut w, "CreateApplicationAssignment", body.clone()).expect("create");
        let e = call(&mut w, "CreateApplicationAssignment", body.clone()).expect_err("dup");
        assert_eq!((e.code.as_str(), e.status), ("ConflictException", 400));
        let out = call(&mut w, "ListApplicationAssignmentsForPrincipal", json!({"InstanceArn": DEFAULT_SSO_INSTANCE_ARN, "PrincipalType": "USER", "PrincipalId": uid})).expect("for principal");
        assert_eq!(
            out["ApplicationAssignments"].as_array().map(Vec::len),
            Some(1)
        );
        call(&mut w, "DeleteApplicationAssignment", body.clone()).expect("delete");
        assert!(call(&mut w, "DeleteApplicationAssignment", body.clone()).is_err());
        assert_eq!(
            call(&mut w, "DescribeApplicationAssignment", body.clone()).map_err(|e| e.code),
            Err("ResourceNotFoundException".into())
        );
        call(&mut w, "CreateApplicationAssignment", body.clone()).expect("again after delete");
        assert!(call(&mut w, "DescribeApplicationAssignment", body).is_ok());
        assert!(w
            .add_assignment(DEFAULT_APPLICATION_ARN, "GROUP", &gid)
            .is_err());
        let unknown = json!({"ApplicationArn": DEFAULT_APPLICATION_ARN, "PrincipalType": "USER", "PrincipalId": "1234567890-00000000-0000-4000-8000-000000000000"});
        assert_eq!(
            call(&mut w, "CreateApplicationAssignment", unknown).map_err(|e| e.code),
            Err("ResourceNotFoundException".into())
        );
        let bad = json!({"ApplicationArn": DEFAULT_APPLICATION_ARN, "PrincipalType": "ROLE", "PrincipalId": uid});
        assert_eq!(
            call(&mut w, "CreateApplicationAssignment", bad).map_err(|e| e.code),
            Err("ValidationException".into())
        );
    }
}
