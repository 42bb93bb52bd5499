//! Client-side pacing of AWS API calls: one adaptive token bucket per quota.
//!
//! This module owns *when* a call may be sent. It knows nothing about AWS
//! SDKs: an API is a plain string `"service:Operation"` (`"connect:CreateUser"`,
//! `"identitystore:CreateUser"`, `"sso:CreateApplicationAssignment"`).
//!
//! # Configuration ([`RateLimits`])
//! A set of rules `key = { rate, burst }` (`rate` tokens/s, `burst` bucket size):
//! * `service:Operation` — exact rule, the API gets its own bucket;
//! * `service:*` — every API of the service gets its **own** bucket at this rate
//!   (Amazon Connect throttles each API separately);
//! * `identity_center` — **one** bucket shared by every `identitystore:*` and
//!   `sso:*` API (IAM Identity Center's collective ~20 TPS).
//!
//! Precedence: exact > `service:*` > `identity_center`; an API matching no rule
//! is not paced. [`RateLimits::default`] holds AWS's default quotas.
//!
//! # Pacing ([`Pacer::acquire`])
//! A bucket refills continuously at its *current* rate up to its burst. Waiters
//! queue in two FIFO classes, [`Attempt::First`] and [`Attempt::Retry`]; only the
//! head of the queue may take a token. The head is the oldest first attempt,
//! unless no first attempt waits, or [`RETRY_STARVATION_LIMIT`] first attempts in
//! a row were served while a retry waited (then the oldest retry goes once).
//! So retries never crowd out new work, yet are never stranded by it.
//!
//! # Adapting ([`Permit::done`])
//! Every permit must report an [`Outcome`]. A throttle is only worth slowing down for when
//! it *follows our rate*: a server bucket smaller than ours throttles more the faster we
//! send, and less once we send slower. A throttle that does not (other clients of the
//! account, a noisy neighbour, a partial outage: the same share of calls whatever our rate)
//! is the cost of a call, not a signal; slowing down for it only loses throughput (a 30 %
//! background share used to hold the rate near its 10 % floor: 22 × the clean bound).
//! So the bucket counts the answers to the calls granted since its last decrease, and:
//! * decrease only on a throttle in **excess** of the learned background share `b`: more
//!   than `b·n + 3σ` of those `n` answers (with `b = 0`, the first throttle, as before;
//!   with `b > 0`, on at least [`MEASURED_OUTCOMES`] answers: a few in a row are chance),
//!   and at most once per generation (calls granted before the last decrease were sent at
//!   the old rate: their throttles only count), like TCP's one cut per window;
//! * the decrease is CUBIC's (`W = rate`, fast convergence when below the last `W`),
//!   by the excess share once measured on [`MEASURED_OUTCOMES`] answers (a server bucket
//!   at 70 % of our rate throttles 30 % of our calls: one cut of 30 % lands on it, and
//!   `W` is then that rate), at least `1 − β` ([`BETA`]), at most to [`MAX_CUT`], never
//!   below 10 % of the configured rate; our bucket is emptied (the server's is);
//! * each decrease is a **probe**: the rate is held for [`PROBE_OUTCOMES`] answers. A
//!   server bucket we overran throttles a share `f` at rate `r`, so `1 − (1 − f)/c` after a
//!   cut by `c` (to ~0 once below its rate); a background share stays `f`. If the share
//!   after is nearer `f` (and 2σ above the other), the throttles did not follow our rate:
//!   the decrease is undone and the share (before and after) becomes `b`. Once `b > 0`, a
//!   cut is at least to [`PROBE_CUT`] (a shallow cut would be too weak a test). While a
//!   probe runs, no other decrease unless the share *rises* well past the one that caused
//!   it (a server bucket still overrun, or still draining). A sliding window whose share is
//!   below `b` pulls `b` down (the background may have gone); a probe raises it again.
//! * success: `rate = W·(1 − (1−β)·(1 − t/T)³)`, `t` = time since that throttle,
//!   `T` = [`RECOVERY`] (20 s): back at `W` after `T` (flat around it), then
//!   probing above it; never above the configured rate, and never downward.
//! * other errors, and permits dropped without a report, leave the rate alone.
//! * a throttle's `retry_after` (Identity Store's `RetryAfterSeconds`) delays the retry of
//!   *that* call (`aws::retry`), never the bucket: under a storm one call's hint stalled
//!   every Identity Center call for a second.
//!
//! The SDKs use an absolute CUBIC constant (C = 0.4), which at 2 req/s brings the
//! rate back within ~1 s and throttles again at once; a fixed `T` makes the curve
//! scale-free. Simulated against a server with 70 % of the quota left, this
//! finishes in ~N/server-rate with a few % of calls throttled; against 30 % of calls
//! throttled at random, it keeps sending at ~the configured rate (see the tests).
//!
//! # Sharing (`shared`)
//! With a shared store, [`Pacer::share`] makes every granted call also take a token of the
//! account's budget that all processes draw from, so that together they stay at the rate.
//!
//! Time comes from [`tokio::time`], so tests run on paused (virtual) time.

use super::retry::{CallRetry, Wait, WaitFn};
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

/// The share of each configured rate the tool uses (see [`RateLimits::with_headroom`]).
pub const HEADROOM: f64 = 0.99;

/// Multiplicative decrease on a throttle (CUBIC's β). The AWS SDKs use 0.7 against
/// congestion of unknown cause; here a throttle means a shared token bucket whose rate is
/// steady, so a gentler cut keeps more of it: while the curve climbs back, the mean rate
/// is `W·(1 − (1−β)/4)`, 96 % of `W` at 0.85 against 92.5 % at 0.7 (measured: 1.09 × the
/// contended bound at 0.7; BENCHMARKS.md).
pub const BETA: f64 = 0.85;
/// How fast the rate probes above `W` once back at it: `W·(1 + PROBE·(t/T − 1)³)`.
pub const PROBE: f64 = 0.3;
/// Time for the rate to climb back from `β·W` to `W` after a throttle.
pub const RECOVERY: Duration = Duration::from_secs(20);
/// The deepest single cut (new rate ÷ old), however large the excess share.
pub const MAX_CUT: f64 = 0.3;
/// The shallowest cut once a background share is known (new rate ÷ old): a probe over a
/// background must move the share enough to be read.
pub const PROBE_CUT: f64 = 0.7;
/// Answers at the lower rate after which a decrease is judged (kept or undone).
pub const PROBE_OUTCOMES: f64 = 40.0;
/// A throttled share measured on fewer answers is not used to size a cut or judge one.
pub const MEASURED_OUTCOMES: f64 = 10.0;
/// The throttle counts of a generation are halved every this many answers (a sliding
/// window of ~this size).
pub const WINDOW_OUTCOMES: f64 = 40.0;
/// A throttled share below this is never learned as background: too few throttles to tell
/// (and too few to matter).
pub const MIN_BACKGROUND_SHARE: f64 = 0.1;
/// Floor of the adaptive rate, as a fraction of the configured rate.
pub const MIN_RATE_FRACTION: f64 = 0.1;
/// While a retry waits, at most this many first attempts in a row are served
/// before the oldest retry gets one token.
pub const RETRY_STARVATION_LIMIT: u32 = 16;

/// Group key for IAM Identity Center: one bucket for `identitystore:*` and `sso:*`.
pub const IDENTITY_CENTER: &str = "identity_center";
const IDENTITY_CENTER_SERVICES: [&str; 2] = ["identitystore", "sso"];

mod bucket;
mod limits;
mod shared;
#[cfg(test)]
mod tests;

use bucket::*;
pub use limits::{ConfigError, RateLimit, RateLimits, Resolved};
pub use shared::{slice, Draw, DrawFn, SLICE_SECS};

/// Whether a call is new work or a retry of a failed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Attempt {
    First,
    Retry,
}

impl Attempt {
    /// `1` → `First`, anything else → `Retry` (attempt numbers start at 1).
    pub fn from_number(attempt: u32) -> Self {
        if attempt <= 1 {
            Attempt::First
        } else {
            Attempt::Retry
        }
    }
}

tokio::task_local! {
    static ATTEMPT: Attempt;
}

/// Runs `f` with its calls classed as `attempt` (1 = first, higher = retry): the caller
/// knows which try this is, the call site does not.
pub async fn with_attempt<F: std::future::Future>(attempt: u32, f: F) -> F::Output {
    ATTEMPT.scope(Attempt::from_number(attempt), f).await
}

/// The class of the calls made now: set by [`with_attempt`], else a first attempt.
pub fn current_attempt() -> Attempt {
    ATTEMPT.try_with(|a| *a).unwrap_or(Attempt::First)
}

/// What happened to the call a [`Permit`] allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The service answered (not throttled): probe the rate back up.
    Success,
    /// ThrottlingException / 429; `retry_after` from `RetryAfterSeconds` or
    /// `Retry-After`, if the service sent one (it delays that call's retry only).
    Throttled { retry_after: Option<Duration> },
    /// Any other failure (network, 5xx, validation…): no effect on the rate.
    OtherError,
}

/// Per-API counters, from [`Pacer::snapshot`].
#[derive(Debug, Clone, PartialEq)]
pub struct ApiStats {
    pub api: String,
    /// Bucket drawn from (`None` = unlimited).
    pub bucket: Option<String>,
    pub first_attempts: u64,
    pub retries: u64,
    pub succeeded: u64,
    pub throttled: u64,
    pub other_errors: u64,
    /// Permits dropped without [`Permit::done`] (e.g. cancelled calls).
    pub unreported: u64,
    /// Total time spent waiting in [`Pacer::acquire`].
    pub waited: Duration,
    /// Current adaptive rate of the bucket (`None` = unlimited).
    pub current_rate: Option<f64>,
    pub configured_rate: Option<f64>,
}

impl fmt::Display for ApiStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: {} first + {} retries, {} ok, {} throttled, {} other, waited {:.1}s",
            self.api,
            self.first_attempts,
            self.retries,
            self.succeeded,
            self.throttled,
            self.other_errors,
            self.waited.as_secs_f64()
        )?;
        match (self.current_rate, self.configured_rate, &self.bucket) {
            (Some(cur), Some(cfg), Some(b)) => {
                write!(f, ", rate {cur:.2}/{cfg:.2} per s (bucket {b})")
            }
            _ => write!(f, ", unlimited"),
        }
    }
}

/// Paces calls per API according to [`RateLimits`]. Cheap to clone; clones
/// share buckets and statistics.
#[derive(Clone)]
pub struct Pacer {
    inner: Arc<PacerInner>,
}

struct PacerInner {
    limits: RateLimits,
    /// Per-call retries of the errors that heal (`crate::aws::retry`).
    retry: CallRetry,
    /// Told of every wait between two tries of a call.
    observer: Option<WaitFn>,
    /// Per-API entry (stats + bucket), created on first use.
    apis: Mutex<HashMap<String, Arc<ApiEntry>>>,
    /// Buckets by name; `identity_center` is shared by many APIs.
    buckets: Mutex<HashMap<String, Arc<Bucket>>>,
    /// The account's budget shared with other processes, once a shared store gives one.
    shared: std::sync::OnceLock<shared::Shared>,
}

struct ApiEntry {
    api: String,
    bucket: Option<Arc<Bucket>>,
    counters: Mutex<Counters>,
}

#[derive(Default)]
struct Counters {
    first_attempts: u64,
    retries: u64,
    succeeded: u64,
    throttled: u64,
    other_errors: u64,
    unreported: u64,
    waited: Duration,
}

impl fmt::Debug for Pacer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pacer")
            .field("limits", &self.inner.limits)
            .finish_non_exhaustive()
    }
}

impl Pacer {
    pub fn new(limits: RateLimits) -> Self {
        Self::with_retry(limits, CallRetry::default(), None)
    }

    /// A pacer whose calls retry the errors that heal per `retry`, telling `observer` of
    /// every wait.
    pub fn with_retry(limits: RateLimits, retry: CallRetry, observer: Option<WaitFn>) -> Self {
        Self {
            inner: Arc::new(PacerInner {
                limits,
                retry,
                observer,
                apis: Mutex::new(HashMap::new()),
                buckets: Mutex::new(HashMap::new()),
                shared: std::sync::OnceLock::new(),
            }),
        }
    }

    /// Draws every bucket's tokens from a budget shared with other processes too (see
    /// `shared`), from now on; false when one was given already.
    pub fn share(&self, draw: DrawFn) -> bool {
        self.inner.shared.set(shared::Shared::new(draw)).is_ok()
    }

    pub fn limits(&self) -> &RateLimits {
        &self.inner.limits
    }

    /// The per-call retry policy.
    pub fn call_retry(&self) -> &CallRetry {
        &self.inner.retry
    }

    /// Tells the observer, if any, of a wait.
    pub(crate) fn observe(&self, w: &Wait) {
        if let Some(f) = &self.inner.observer {
            (f.0)(w);
        }
    }

    /// Waits until `api`'s bucket hands this caller a token (immediately for an
    /// unlimited API). Cancel-safe: dropping the future leaves the queue.
    /// Report the call's result with [`Permit::done`].
    pub async fn acquire(&self, api: &str, attempt: Attempt) -> Permit {
        let entry = self.entry(api);
        let started = Instant::now();
        let generation = match &entry.bucket {
            Some(bucket) => {
                let generation = bucket.acquire(attempt).await;
                if let Some(shared) = self.inner.shared.get() {
                    let (rate, burst) = bucket.configured();
                    shared.take(&bucket.name, rate, burst).await;
                }
                generation
            }
            None => 0,
        };
        {
            let mut c = lock(&entry.counters);
            match attempt {
                Attempt::First => c.first_attempts += 1,
                Attempt::Retry => c.retries += 1,
            }
            c.waited += started.elapsed();
        }
        Permit {
            entry,
            generation,
            attempt,
            reported: false,
        }
    }

    /// Counters of every API seen so far, sorted by API name.
    pub fn snapshot(&self) -> Vec<ApiStats> {
        let entries: Vec<Arc<ApiEntry>> = lock(&self.inner.apis).values().cloned().collect();
        let mut out: Vec<ApiStats> = entries
            .iter()
            .map(|e| {
                let c = lock(&e.counters);
                let (bucket, current_rate, configured_rate) = match &e.bucket {
                    Some(b) => {
                        let st = lock(&b.state);
                        (Some(b.name.clone()), Some(st.rate), Some(st.max_rate))
                    }
                    None => (None, None, None),
                };
                ApiStats {
                    api: e.api.clone(),
                    bucket,
                    first_attempts: c.first_attempts,
                    retries: c.retries,
                    succeeded: c.succeeded,
                    throttled: c.throttled,
                    other_errors: c.other_errors,
                    unreported: c.unreported,
                    waited: c.waited,
                    current_rate,
                    configured_rate,
                }
            })
            .collect();
        out.sort_by(|a, b| a.api.cmp(&b.api));
        out
    }

    /// Current adaptive rate of the bucket `api` draws from (`None` = unlimited).
    pub fn current_rate(&self, api: &str) -> Option<f64> {
        if let Some(e) = lock(&self.inner.apis).get(api) {
            return e.bucket.as_ref().map(|b| lock(&b.state).rate);
        }
        // Not used yet: don't create an entry just to look.
        let r = self.inner.limits.resolve(api)?;
        let bucket = lock(&self.inner.buckets).get(&r.bucket).cloned();
        Some(bucket.map_or(r.limit.rate, |b| lock(&b.state).rate))
    }

    fn entry(&self, api: &str) -> Arc<ApiEntry> {
        let mut apis = lock(&self.inner.apis);
        if let Some(e) = apis.get(api) {
            return e.clone();
        }
        let bucket = self.inner.limits.resolve(api).map(|r| {
            lock(&self.inner.buckets)
                .entry(r.bucket.clone())
                .or_insert_with(|| Arc::new(Bucket::new(r.bucket, r.limit)))
                .clone()
        });
        let entry = Arc::new(ApiEntry {
            api: api.to_owned(),
            bucket,
            counters: Mutex::new(Counters::default()),
        });
        apis.insert(api.to_owned(), entry.clone());
        entry
    }
}

/// Permission to send one call. Report how it went with [`Permit::done`];
/// a permit dropped unreported counts as `unreported` and changes no rate.
#[must_use = "send the call, then report its result with Permit::done"]
pub struct Permit {
    entry: Arc<ApiEntry>,
    /// Bucket generation when granted (see "one decrease per generation").
    generation: u64,
    attempt: Attempt,
    reported: bool,
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("api", &self.entry.api)
            .field("attempt", &self.attempt)
            .finish()
    }
}

impl Permit {
    pub fn api(&self) -> &str {
        &self.entry.api
    }

    pub fn attempt(&self) -> Attempt {
        self.attempt
    }

    /// Feeds the call's outcome back to the API's bucket and statistics.
    pub fn done(mut self, outcome: Outcome) {
        self.reported = true;
        {
            let mut c = lock(&self.entry.counters);
            match outcome {
                Outcome::Success => c.succeeded += 1,
                Outcome::Throttled { .. } => c.throttled += 1,
                Outcome::OtherError => c.other_errors += 1,
            }
        }
        if let Some(bucket) = &self.entry.bucket {
            match outcome {
                Outcome::Success => bucket.on_answer(self.generation, false),
                Outcome::Throttled { .. } => bucket.on_answer(self.generation, true),
                Outcome::OtherError => {}
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.reported {
            lock(&self.entry.counters).unreported += 1;
        }
    }
}
