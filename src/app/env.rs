//! Every environment knob connect-onboard reads, in one place (the AWS SDK's own variables,
//! `AWS_*`, are read by `aws-config`).
//!
//! - `CONNECT_ONBOARD_PASSWORD`: the password for CONNECT_MANAGED instances.
//! - `CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS`: per-attempt timeout of every AWS call (30000).
//! - `CONNECT_ONBOARD_RETRY_BUDGET_S`: how long one AWS call keeps retrying throttling (and
//!   a read its 5xx/timeouts) before the agent stops resumable (300).
//! - Test hooks: `CONNECT_ONBOARD_CRASH_AT=<point>:<step>` aborts the process at that point
//!   (the crash/resume tests); `CONNECT_ONBOARD_LEASE_TTL_MS` shortens the lease.

use std::time::Duration;

use crate::engine::CrashPoint;

/// Environment variable holding a password for CONNECT_MANAGED instances.
pub const PASSWORD_ENV: &str = "CONNECT_ONBOARD_PASSWORD";

/// The password from the environment, if set and not empty.
pub fn password() -> Option<String> {
    std::env::var(PASSWORD_ENV).ok().filter(|p| !p.is_empty())
}

/// Per-attempt timeout of every AWS call: 30 s, or `CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS`.
pub fn attempt_timeout() -> Duration {
    let ms = std::env::var("CONNECT_ONBOARD_ATTEMPT_TIMEOUT_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30_000);
    Duration::from_millis(ms)
}

/// How long one AWS call keeps retrying the errors that heal: 300 s, or
/// `CONNECT_ONBOARD_RETRY_BUDGET_S`.
pub fn retry_budget() -> Result<Option<u64>, String> {
    match std::env::var("CONNECT_ONBOARD_RETRY_BUDGET_S") {
        Err(_) => Ok(None),
        Ok(v) => v.trim().parse().map(Some).map_err(|_| {
            format!("CONNECT_ONBOARD_RETRY_BUDGET_S={v:?}: expected a whole number of seconds")
        }),
    }
}

/// The crash hook, if set: `CONNECT_ONBOARD_CRASH_AT=<point>:<step>`.
pub fn crash_at() -> Result<Option<(CrashPoint, String)>, String> {
    let Ok(v) = std::env::var("CONNECT_ONBOARD_CRASH_AT") else {
        return Ok(None);
    };
    let (point, step) = v
        .split_once(':')
        .ok_or_else(|| format!("CONNECT_ONBOARD_CRASH_AT={v:?}: expected POINT:STEP"))?;
    Ok(Some((point.parse()?, step.to_string())))
}

/// The lease time-to-live override, if set: `CONNECT_ONBOARD_LEASE_TTL_MS`.
pub fn lease_ttl_ms() -> Result<Option<i64>, String> {
    match std::env::var("CONNECT_ONBOARD_LEASE_TTL_MS") {
        Err(_) => Ok(None),
        Ok(v) => v
            .parse()
            .map(Some)
            .map_err(|_| format!("CONNECT_ONBOARD_LEASE_TTL_MS={v:?}: not a number")),
    }
}

/// How long a message received from `sync --watch --queue` stays invisible to other
/// consumers before it comes back (extended every third of it while its reconcile runs):
/// 60 s, or `CONNECT_ONBOARD_QUEUE_VISIBILITY_S` (tests shorten it to see a redelivery).
pub fn queue_visibility() -> Duration {
    let s = std::env::var("CONNECT_ONBOARD_QUEUE_VISIBILITY_S")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|s: &u64| *s > 0)
        .unwrap_or(60);
    Duration::from_secs(s)
}
