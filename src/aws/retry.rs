//! Per-call retries of the errors that heal, so that one command rides out a throttling
//! storm as other AWS tools do: a throttled call (never applied, whatever the operation)
//! and a read answered 5xx, timed out or cut off (safe to repeat) are sent again, with
//! capped exponential backoff and full jitter, until the call's time budget is spent
//! ([`CallRetry::budget`], five minutes unless `CONNECT_ONBOARD_RETRY_BUDGET_S` says
//! otherwise). A *write* answered 5xx or cut off may have been applied: it goes back to the
//! engine at once, which looks up before writing again. A refused connection (the request
//! never left) may be a blip or a wrong endpoint: it is tried [`CallRetry::refused_tries`]
//! times, a few seconds at most, whatever the operation. A call whose budget is spent comes
//! back with [`AwsError::budget_spent`] set: the engine stops the agent resumable instead of
//! multiplying the budget by its own attempts.
//!
//! Every try goes through the pacer (a retry queues behind first attempts), and every wait
//! is told to the pacer's observer (the progress line).

use std::future::Future;
use std::time::{Duration, Instant};

use super::error::{pacing_outcome, AwsError};
use super::pacer::{current_attempt, Attempt, Pacer};

/// How long and how fast one call retries the errors that heal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CallRetry {
    /// How long a call keeps retrying, from its first try.
    pub budget: Duration,
    /// The first backoff's cap (full jitter: the wait is uniform in `0..=cap`).
    pub base: Duration,
    /// The largest backoff cap.
    pub cap: Duration,
    /// How many tries a call whose connection is refused gets (an endpoint that is down
    /// or wrong rarely comes back within a budget of minutes; resume is there for that).
    pub refused_tries: u32,
}

impl Default for CallRetry {
    fn default() -> Self {
        CallRetry {
            budget: Duration::from_secs(300),
            base: Duration::from_millis(200),
            cap: Duration::from_secs(20),
            refused_tries: 3,
        }
    }
}

/// Whether an operation changes anything (`Create*`, `Delete*`, `Update*`...), from its
/// `service:Operation` name.
pub fn is_write(api: &str) -> bool {
    let op = api.rsplit(':').next().unwrap_or(api);
    [
        "Create",
        "Delete",
        "Update",
        "Put",
        "Associate",
        "Disassociate",
        "Tag",
        "Untag",
    ]
    .iter()
    .any(|p| op.starts_with(p))
}

/// Whether `e` heals by itself for this kind of call: throttling and a refused connection
/// (neither was applied) always; a server or transport failure only for a read.
pub fn heals(e: &AwsError, write: bool) -> bool {
    e.is_throttling() || refused(e) || (!write && e.is_server_or_transport())
}

/// The connection was refused: the request never left this machine.
fn refused(e: &AwsError) -> bool {
    e.code == "DispatchFailure" && !e.maybe_applied
}

impl CallRetry {
    /// The budget from the environment knob's value in seconds, else the default.
    pub fn with_budget_secs(secs: Option<u64>) -> CallRetry {
        let mut r = CallRetry::default();
        if let Some(s) = secs {
            r.budget = Duration::from_secs(s);
        }
        r
    }

    /// The wait before try `tries + 1` of a call that failed with `e` after `elapsed`, or
    /// `None` when `e` is returned as it is (it does not heal, or the budget is spent).
    /// `RetryAfterSeconds` is honoured as a floor.
    pub fn next_wait(
        &self,
        e: &AwsError,
        write: bool,
        tries: u32,
        elapsed: Duration,
    ) -> Option<Duration> {
        if !heals(e, write) || (refused(e) && tries >= self.refused_tries) {
            return None;
        }
        let exp = self
            .base
            .saturating_mul(1u32 << tries.saturating_sub(1).min(16))
            .min(self.cap);
        let wait = exp
            .mul_f64(rand::random::<f64>())
            .max(e.retry_after.unwrap_or_default());
        (elapsed + wait <= self.budget).then_some(wait)
    }
}

impl Pacer {
    /// Sends `api` through `send` until it succeeds, fails with an error that does not heal,
    /// or the call's budget is spent (the error then carries `budget_spent`). Each try waits
    /// for the API's bucket (a retry behind first attempts) and reports its outcome.
    pub(crate) async fn call<T, Fut>(
        &self,
        api: &str,
        mut send: impl FnMut() -> Fut,
    ) -> Result<T, AwsError>
    where
        Fut: Future<Output = Result<T, AwsError>>,
    {
        let started = Instant::now();
        let write = is_write(api);
        let mut tries = 0u32;
        loop {
            tries += 1;
            let class = if tries == 1 {
                current_attempt()
            } else {
                Attempt::Retry
            };
            let permit = self.acquire(api, class).await;
            let res = send().await;
            permit.done(pacing_outcome(&res));
            let mut e = match res {
                Ok(v) => return Ok(v),
                Err(e) => e,
            };
            let elapsed = started.elapsed();
            let retry = *self.call_retry();
            match retry.next_wait(&e, write, tries, elapsed) {
                Some(wait) => {
                    tracing::debug!(api, code = %e.code, tries, ?wait, "waiting to retry the call");
                    self.observe(&Wait {
                        who: current_caller(),
                        api: api.to_string(),
                        code: e.code.clone(),
                        tries,
                        wait,
                        left: retry.budget.saturating_sub(elapsed),
                    });
                    tokio::time::sleep(wait).await;
                }
                None => {
                    e.budget_spent = heals(&e, write);
                    return Err(e);
                }
            }
        }
    }
}

tokio::task_local! {
    static CALLER: std::sync::Arc<str>;
}

/// Runs `f` with its calls made for `who` (an agent's key, or the name of a start-up
/// read): every [`Wait`] of those calls names it.
pub async fn for_caller<F: Future>(who: std::sync::Arc<str>, f: F) -> F::Output {
    CALLER.scope(who, f).await
}

/// Who the calls made now are for, if a caller said ([`for_caller`]).
fn current_caller() -> Option<String> {
    CALLER.try_with(|w| w.to_string()).ok()
}

/// A wait between two tries of one call, as told to the pacer's observer.
#[derive(Debug, Clone)]
pub struct Wait {
    /// Who the call is for: an agent's key, or a start-up read's name; `None` when no
    /// caller said.
    pub who: Option<String>,
    /// `service:Operation`.
    pub api: String,
    /// The error code that caused it.
    pub code: String,
    /// Tries made so far.
    pub tries: u32,
    /// How long until the next try.
    pub wait: Duration,
    /// Time left in the call's budget.
    pub left: Duration,
}

/// Receives every [`Wait`] (the CLI shows it on the progress line).
#[derive(Clone)]
pub struct WaitFn(pub std::sync::Arc<dyn Fn(&Wait) + Send + Sync>);

impl std::fmt::Debug for WaitFn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WaitFn")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(code: &str, status: Option<u16>, maybe_applied: bool) -> AwsError {
        AwsError {
            code: code.into(),
            message: String::new(),
            status,
            maybe_applied,
            reason: None,
            retry_after: None,
            budget_spent: false,
        }
    }

    const R: CallRetry = CallRetry {
        budget: Duration::from_secs(60),
        base: Duration::from_millis(100),
        cap: Duration::from_secs(5),
        refused_tries: 3,
    };

    #[test]
    fn throttling_heals_for_every_call_a_5xx_only_for_reads() {
        let throttled = err("ThrottlingException", Some(400), false);
        let internal = err("InternalServerException", Some(500), true);
        let dropped = err("DispatchFailure", None, true);
        assert!(heals(&throttled, true) && heals(&throttled, false));
        assert!(heals(&internal, false) && !heals(&internal, true));
        assert!(heals(&dropped, false) && !heals(&dropped, true));
        for code in [
            "ValidationException",
            "ConflictException",
            "AccessDeniedException",
        ] {
            assert!(!heals(&err(code, Some(400), false), false), "{code}");
        }
    }

    #[test]
    fn operations_are_told_apart_by_name() {
        for w in [
            "connect:CreateUser",
            "identitystore:DeleteGroupMembership",
            "sso:CreateApplicationAssignment",
            "connect:UpdateUserHierarchy",
            "connect:TagResource",
            "connect:UntagResource",
            "identitystore:UpdateUser",
        ] {
            assert!(is_write(w), "{w}");
        }
        for r in [
            "connect:ListUsers",
            "connect:DescribeUser",
            "identitystore:GetUserId",
            "sso:ListApplicationAssignments",
            "identitystore:IsMemberInGroups",
            "connect:SearchUsers",
        ] {
            assert!(!is_write(r), "{r}");
        }
    }

    #[test]
    fn waits_are_jittered_capped_and_end_with_the_budget() {
        let e = err("ThrottlingException", Some(400), false);
        for tries in 1..40 {
            let w = R.next_wait(&e, true, tries, Duration::ZERO).unwrap();
            assert!(w <= R.cap, "try {tries}: {w:?}");
        }
        let first: Vec<_> = (0..50)
            .map(|_| R.next_wait(&e, true, 1, Duration::ZERO).unwrap())
            .collect();
        assert!(first.iter().all(|w| *w <= R.base));
        assert!(first.iter().any(|w| *w != first[0]), "jittered");
        assert_eq!(R.next_wait(&e, true, 3, Duration::from_secs(61)), None);
        assert_eq!(
            R.next_wait(
                &err("ValidationException", Some(400), false),
                false,
                1,
                Duration::ZERO
            ),
            None
        );
    }

    #[test]
    fn a_refused_connection_gets_a_few_tries_whatever_the_operation() {
        let refused = err("DispatchFailure", None, false);
        assert!(heals(&refused, true) && heals(&refused, false));
        assert!(R.next_wait(&refused, true, 1, Duration::ZERO).is_some());
        assert!(R.next_wait(&refused, false, 2, Duration::ZERO).is_some());
        assert_eq!(R.next_wait(&refused, false, 3, Duration::ZERO), None);
    }

    #[test]
    fn retry_after_is_a_floor_and_counts_against_the_budget() {
        let mut e = err("ThrottlingException", Some(400), false);
        e.retry_after = Some(Duration::from_secs(3));
        assert!(R.next_wait(&e, false, 1, Duration::ZERO).unwrap() >= Duration::from_secs(3));
        assert_eq!(R.next_wait(&e, false, 1, Duration::from_secs(58)), None);
    }
}
