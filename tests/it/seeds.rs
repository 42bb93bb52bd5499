//! Sandbox seeds built from an agent's parts, for tests that start from a world someone else
//! made: a Connect user in the default instance, an Identity Center user in the default
//! store, a membership of the agents' group, an assignment to the Amazon Connect application.
//! Each adds to a [`Seed`]; the user adders return what they added, for the fields a test
//! changes.

use connect_onboard_sandbox::world::{
    SeedAssignment, SeedConnectUser, SeedIdentityUser, SeedMembership,
};
use connect_onboard_sandbox::Seed;

/// The agents' group of the default config.
pub const GROUP: &str = "ConnectAgents";

/// A Connect user `username` (the instance's first security and routing profiles unless set).
pub fn connect_user<'a>(
    seed: &'a mut Seed,
    username: &str,
    first: &str,
    last: &str,
) -> &'a mut SeedConnectUser {
    let users = &mut seed.connect_instances[0].users;
    users.push(SeedConnectUser {
        username: username.into(),
        first_name: Some(first.into()),
        last_name: Some(last.into()),
        ..Default::default()
    });
    users.last_mut().unwrap()
}

/// An Identity Center user `user_name` with `email`, if any, as its primary work email.
pub fn identity_user<'a>(
    seed: &'a mut Seed,
    user_name: &str,
    given: &str,
    family: &str,
    email: Option<&str>,
) -> &'a mut SeedIdentityUser {
    seed.identity_users.push(SeedIdentityUser {
        user_name: user_name.into(),
        given_name: given.into(),
        family_name: family.into(),
        email: email.map(str::to_string),
        ..Default::default()
    });
    seed.identity_users.last_mut().unwrap()
}

/// Identity Center user `user_name` is a member of the agents' group.
pub fn member(seed: &mut Seed, user_name: &str) {
    seed.memberships.push(SeedMembership {
        group: GROUP.into(),
        user: user_name.into(),
        ..Default::default()
    });
}

/// Identity Center user `user_name` is assigned to the application (user mode).
pub fn user_assigned(seed: &mut Seed, user_name: &str) {
    assigned(seed, "USER", user_name);
}

/// The agents' group is assigned to the application (group mode).
pub fn group_assigned(seed: &mut Seed) {
    assigned(seed, "GROUP", GROUP);
}

fn assigned(seed: &mut Seed, principal_type: &str, principal: &str) {
    seed.assignments.push(SeedAssignment {
        application: "Amazon Connect".into(),
        principal_type: principal_type.into(),
        principal: principal.into(),
    });
}

/// A Connect user `username` on the "Agent" security profile and the "Basic Routing
/// Profile", as `onboard` would make it.
pub fn connect_agent(seed: &mut Seed, username: &str, first: &str, last: &str) {
    let u = connect_user(seed, username, first, last);
    u.security_profiles = vec!["Agent".into()];
    u.routing_profile = Some("Basic Routing Profile".into());
}

/// An agent onboarded by hand, correctly for group mode but for the group's assignment:
/// [`connect_agent`] `email`, Identity Center user `email` with `email` as its one primary
/// email, member of the group.
pub fn onboarded_by_hand(seed: &mut Seed, email: &str, first: &str, last: &str) {
    connect_agent(seed, email, first, last);
    identity_user(seed, email, first, last, Some(email));
    member(seed, email);
}
