//! The retry policy (a step's budget, as data) and the one retry decision every engine loop
//! asks: retry after a delay, or stop.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::action::ErrorKind;

/// Retry budget of a step, as data.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in one engine pass, including the first (≥ 1).
    pub max_attempts: u32,
    /// First backoff.
    pub initial_backoff_ms: u64,
    /// Cap of a backoff.
    pub max_backoff_ms: u64,
    /// Growth factor (≥ 1).
    pub multiplier: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            initial_backoff_ms: 500,
            max_backoff_ms: 20_000,
            multiplier: 2.0,
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based), with full jitter: uniform in
    /// `[0, min(max, initial * multiplier^(retry-1))]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = (self.initial_backoff_ms as f64
            * self.multiplier.powi(retry.saturating_sub(1) as i32))
        .min(self.max_backoff_ms as f64);
        let ms = if cap <= 0.0 {
            0.0
        } else {
            rand::random::<f64>() * cap
        };
        Duration::from_millis(ms as u64)
    }
}

/// Which engine loop is asking: each treats "not found" and the settle window its own way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Loop {
    /// The plan's lookups before the first write. Not-found errors are passing; the settle
    /// window does not extend the budget (nothing was written yet in this pass).
    Lookup,
    /// A step's lookup-then-create loop. Not-found errors are passing; "exists but not
    /// visible yet" waits out the step's settle window even past the budget, and "an input
    /// is not visible yet" the settle window of the write that made it.
    Write,
    /// Compensation. A not-found error here is final (the caller has already turned a
    /// delete's not-found into "done", or into a transient error inside the settle window);
    /// any passing error waits out the settle window even past the budget.
    Undo,
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Sleep this long, then try again.
    Retry(Duration),
    /// A passing error outlived the budget: stop here, resumable later.
    Exhausted,
    /// Not a passing error: do not retry.
    Permanent,
}

/// The one retry decision of the engine: pure, given the policy, the loop, the error's class,
/// whether the step is inside its settle window (for [`ErrorKind::InputNotVisibleYet`]: the
/// window of the earlier write it refers to) and the attempt number (1-based).
pub fn decide(
    policy: &RetryPolicy,
    lp: Loop,
    kind: ErrorKind,
    within_settle: bool,
    attempt: u32,
) -> Decision {
    let passing = match kind {
        ErrorKind::Transient
        | ErrorKind::Ambiguous
        | ErrorKind::NotVisibleYet
        | ErrorKind::InputNotVisibleYet
        | ErrorKind::Spent => true,
        ErrorKind::NotFound => lp != Loop::Undo,
        ErrorKind::Permanent | ErrorKind::Conflict | ErrorKind::AlreadyExists => false,
    };
    if !passing {
        return Decision::Permanent;
    }
    if kind == ErrorKind::Spent {
        return Decision::Exhausted;
    }
    let not_visible = matches!(
        kind,
        ErrorKind::NotVisibleYet | ErrorKind::InputNotVisibleYet
    );
    let settling = match lp {
        Loop::Lookup => false,
        Loop::Write => not_visible && within_settle,
        Loop::Undo => not_visible || within_settle,
    };
    if attempt >= policy.max_attempts && !settling {
        return Decision::Exhausted;
    }
    Decision::Retry(policy.backoff(attempt.min(policy.max_attempts)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        initial_backoff_ms: 100,
        max_backoff_ms: 1_000,
        multiplier: 2.0,
    };

    fn retries(d: Decision) -> bool {
        matches!(d, Decision::Retry(_))
    }

    #[test]
    fn passing_errors_retry_within_the_budget_then_stop_resumable() {
        for lp in [Loop::Lookup, Loop::Write, Loop::Undo] {
            for kind in [ErrorKind::Transient, ErrorKind::Ambiguous] {
                assert!(retries(decide(&P, lp, kind, false, 1)), "{lp:?} {kind:?}");
                assert!(retries(decide(&P, lp, kind, false, 2)));
                assert_eq!(decide(&P, lp, kind, false, 3), Decision::Exhausted);
            }
        }
    }

    #[test]
    fn a_budget_spent_below_stops_resumable_at_once() {
        for lp in [Loop::Lookup, Loop::Write, Loop::Undo] {
            for settle in [false, true] {
                assert_eq!(
                    decide(&P, lp, ErrorKind::Spent, settle, 1),
                    Decision::Exhausted,
                    "{lp:?}"
                );
            }
        }
    }

    #[test]
    fn permanent_classes_never_retry() {
        for lp in [Loop::Lookup, Loop::Write, Loop::Undo] {
            for kind in [
                ErrorKind::Permanent,
                ErrorKind::Conflict,
                ErrorKind::AlreadyExists,
            ] {
                assert_eq!(decide(&P, lp, kind, true, 1), Decision::Permanent);
            }
        }
    }

    #[test]
    fn not_found_is_passing_going_forward_and_final_in_compensation() {
        assert!(retries(decide(
            &P,
            Loop::Lookup,
            ErrorKind::NotFound,
            false,
            1
        )));
        assert!(retries(decide(
            &P,
            Loop::Write,
            ErrorKind::NotFound,
            false,
            1
        )));
        assert_eq!(
            decide(&P, Loop::Undo, ErrorKind::NotFound, true, 1),
            Decision::Permanent
        );
    }

    #[test]
    fn an_input_not_visible_yet_retries_past_the_budget_only_within_the_window() {
        let k = ErrorKind::InputNotVisibleYet;
        assert!(retries(decide(&P, Loop::Write, k, true, 9)));
        assert_eq!(decide(&P, Loop::Write, k, false, 3), Decision::Exhausted);
        assert!(retries(decide(&P, Loop::Write, k, false, 2)));
        assert_eq!(decide(&P, Loop::Lookup, k, true, 3), Decision::Exhausted);
    }

    #[test]
    fn the_settle_window_extends_the_budget_where_each_loop_says() {
        // Write: only "not visible yet", and only inside the window.
        assert!(retries(decide(
            &P,
            Loop::Write,
            ErrorKind::NotVisibleYet,
            true,
            9
        )));
        assert_eq!(
            decide(&P, Loop::Write, ErrorKind::NotVisibleYet, false, 9),
            Decision::Exhausted
        );
        assert_eq!(
            decide(&P, Loop::Write, ErrorKind::Transient, true, 9),
            Decision::Exhausted
        );
        // Undo: any passing error inside the window; "not visible yet" always.
        assert!(retries(decide(
            &P,
            Loop::Undo,
            ErrorKind::Transient,
            true,
            9
        )));
        assert!(retries(decide(
            &P,
            Loop::Undo,
            ErrorKind::NotVisibleYet,
            false,
            9
        )));
        // Lookup: never.
        assert_eq!(
            decide(&P, Loop::Lookup, ErrorKind::NotVisibleYet, true, 9),
            Decision::Exhausted
        );
    }

    #[test]
    fn backoff_is_capped_full_jitter() {
        for attempt in 1..20 {
            let Decision::Retry(d) =
                decide(&P, Loop::Undo, ErrorKind::NotVisibleYet, true, attempt)
            else {
                panic!("must retry");
            };
            let cap = (100.0 * 2f64.powi(attempt.min(3) as i32 - 1)).min(1_000.0);
            assert!(
                d.as_millis() as f64 <= cap,
                "attempt {attempt}: {d:?} > {cap}"
            );
        }
    }
}
