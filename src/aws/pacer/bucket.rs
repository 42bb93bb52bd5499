//! One token bucket: its adaptive rate (the CUBIC-style decrease and recovery, and the test
//! that tells throttles that follow our rate from background ones), its two FIFO queues
//! (first attempts before retries) and its counters.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::*;

/// Tolerance for float rounding when checking for a whole token.
pub(super) const TOKEN_EPSILON: f64 = 1e-9;
/// Tokio timers tick in milliseconds; never ask for a shorter sleep.
pub(super) const MIN_SLEEP: Duration = Duration::from_millis(1);

pub(super) struct Bucket {
    pub(super) name: String,
    pub(super) state: Mutex<BucketState>,
}

pub(super) struct BucketState {
    pub(super) max_rate: f64,
    pub(super) burst: f64,
    /// Current (adaptive) refill rate, tokens per second.
    pub(super) rate: f64,
    pub(super) tokens: f64,
    pub(super) last_refill: Instant,
    /// CUBIC: rate at the last decrease and when it happened (`None` = at max).
    pub(super) w_max: f64,
    pub(super) last_throttle: Option<Instant>,
    /// Bumped on each decrease; permits carry the value they were granted at.
    pub(super) generation: u64,
    /// Outcomes (success or throttle) of this generation's permits, and how many were
    /// throttled, since the last decrease (halved every [`WINDOW_OUTCOMES`]).
    pub(super) seen: f64,
    pub(super) throttled: f64,
    /// The share of calls throttled whatever our rate (learned by [`Probe`]s).
    pub(super) background: f64,
    /// The last decrease, while its effect is being measured.
    pub(super) probe: Option<Probe>,
    pub(super) first: VecDeque<Waiter>,
    pub(super) retry: VecDeque<Waiter>,
    pub(super) next_id: u64,
    /// First attempts served in a row while a retry was waiting.
    pub(super) firsts_over_retry: u32,
}

/// A decrease on trial: the state it replaced and the throttle share that caused it. After
/// [`PROBE_OUTCOMES`] outcomes at the lower rate, the share tells whether the throttles
/// followed our rate (it fell: keep the decrease) or not (it stayed: undo it, and learn the
/// share as background).
#[derive(Clone, Copy)]
pub(super) struct Probe {
    rate: f64,
    w_max: f64,
    last_throttle: Option<Instant>,
    share: f64,
    /// The cut: new rate ÷ old.
    factor: f64,
    /// Whether `share` was measured on enough answers to judge by.
    measured: bool,
    /// When the cut was made.
    at: Instant,
    seen: f64,
    throttled: f64,
}

pub(super) struct Waiter {
    pub(super) id: u64,
    pub(super) notify: Arc<Notify>,
}

impl Bucket {
    /// The configured rate (with headroom) and burst: what a shared budget refills at.
    pub(super) fn configured(&self) -> (f64, f64) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        (st.max_rate, st.burst)
    }

    pub(super) fn new(name: String, limit: RateLimit) -> Self {
        let burst = f64::from(limit.burst);
        Self {
            name,
            state: Mutex::new(BucketState {
                max_rate: limit.rate,
                burst,
                rate: limit.rate,
                tokens: burst,
                last_refill: Instant::now(),
                w_max: limit.rate,
                last_throttle: None,
                generation: 0,
                seen: 0.0,
                throttled: 0.0,
                background: 0.0,
                probe: None,
                first: VecDeque::new(),
                retry: VecDeque::new(),
                next_id: 0,
                firsts_over_retry: 0,
            }),
        }
    }

    /// Waits for a token; returns the bucket generation at grant time.
    pub(super) async fn acquire(&self, class: Attempt) -> u64 {
        let (id, notify) = {
            let mut st = lock(&self.state);
            let now = Instant::now();
            st.refill(now);
            if st.first.is_empty() && st.retry.is_empty() && st.ready_at(now).is_none() {
                st.tokens -= 1.0;
                return st.generation;
            }
            let id = st.next_id;
            st.next_id += 1;
            let notify = Arc::new(Notify::new());
            let waiter = Waiter {
                id,
                notify: notify.clone(),
            };
            match class {
                Attempt::First => st.first.push_back(waiter),
                Attempt::Retry => st.retry.push_back(waiter),
            }
            (id, notify)
        };
        let mut guard = QueueGuard {
            bucket: self,
            id,
            armed: true,
        };
        loop {
            let deadline = {
                let mut st = lock(&self.state);
                let now = Instant::now();
                st.refill(now);
                if st.head() == Some(id) {
                    match st.ready_at(now) {
                        None => {
                            guard.armed = false;
                            return st.grant_head();
                        }
                        Some(at) => Some(at),
                    }
                } else {
                    None
                }
            };
            match deadline {
                Some(at) => {
                    tokio::select! {
                        _ = tokio::time::sleep_until(at) => {}
                        _ = notify.notified() => {}
                    }
                }
                None => notify.notified().await,
            }
        }
    }

    /// A call granted at `permit_generation` was answered (`throttled` or not).
    pub(super) fn on_answer(&self, permit_generation: u64, throttled: bool) {
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.refill(now);
        if permit_generation == st.generation {
            st.count(throttled, now);
        }
        if throttled {
            // One decrease per generation: a call granted before the last decrease was sent
            // at the old rate, and its throttle says nothing about the new one.
            if permit_generation == st.generation && (st.excess() || st.rising()) {
                st.decrease(now);
            }
        } else {
            st.climb(now);
        }
        st.wake_head();
    }
}

impl BucketState {
    /// Counts one answer of this generation; settles a probe once it has seen enough.
    fn count(&mut self, throttled: bool, now: Instant) {
        self.seen += 1.0;
        if throttled {
            self.throttled += 1.0;
        }
        if let Some(p) = self.probe {
            if self.seen >= PROBE_OUTCOMES {
                self.settle(p, now);
            }
        } else if self.seen >= 2.0 * WINDOW_OUTCOMES {
            // A sliding window: halve the counts; a share below the background estimate
            // pulls it down (the background may have gone; a probe raises it again).
            let share = self.throttled / self.seen;
            if share < self.background {
                self.background += (share - self.background) / 4.0;
            }
            self.seen /= 2.0;
            self.throttled /= 2.0;
        }
    }

    /// Whether this generation's throttles exceed what the background share explains: more
    /// than `bg·n + 3σ` of `n` answers (binomial). With no background, any throttle does.
    fn excess(&self) -> bool {
        let (n, k, bg) = (self.seen, self.throttled, self.background);
        // Over a known background, a few throttles in a row are chance: judge a measured
        // share only.
        let enough = bg == 0.0 || n >= MEASURED_OUTCOMES;
        self.probe.is_none() && enough && k > bg * n + 3.0 * (n * bg * (1.0 - bg)).sqrt()
    }

    /// While a probe runs: whether the share since the cut is well above the share that
    /// caused it (`+ 3σ`, on at least [`MEASURED_OUTCOMES`] answers). Background throttles
    /// keep their share; a server bucket we still overrun (or one still draining) raises it:
    /// cut again at once rather than overrun it for the rest of the probe.
    fn rising(&self) -> bool {
        let Some(p) = &self.probe else {
            return false;
        };
        let (n, k, f) = (self.seen, self.throttled, p.share.min(1.0));
        n >= MEASURED_OUTCOMES && k > f * n + 3.0 * (n * f * (1.0 - f)).sqrt()
    }

    /// Cuts the rate (CUBIC), empties the bucket (the server's is empty), and starts a
    /// probe of the cut.
    fn decrease(&mut self, now: Instant) {
        let share = if self.seen > 0.0 {
            self.throttled / self.seen
        } else {
            1.0
        };
        // In proportion to the excess share once it is measured on enough answers (a server
        // bucket at 70 % of our rate throttles 30 % of our calls: one cut of 30 % lands on
        // it, and the probe then sees ~0), at least 1 − β, at most 1 − MAX_CUT.
        let measured = self.seen >= MEASURED_OUTCOMES;
        let mut factor = if measured {
            (1.0 - (share - self.background).max(0.0)).clamp(MAX_CUT, BETA)
        } else {
            BETA
        };
        if self.background > 0.0 {
            // Over a background share, a shallow cut would be too weak a test to tell.
            factor = factor.min(PROBE_CUT);
        }
        self.probe = Some(Probe {
            rate: self.rate,
            w_max: self.w_max,
            last_throttle: self.last_throttle,
            share,
            factor,
            measured,
            at: now,
            seen: self.seen,
            throttled: self.throttled,
        });
        // CUBIC fast convergence: throttled again below the last ceiling means the
        // ceiling moved down; aim a bit lower this time.
        self.w_max = if self.last_throttle.is_some() && self.rate < self.w_max {
            self.rate * (1.0 + BETA) / 2.0
        } else {
            self.rate
        };
        self.rate = (self.rate * factor).max(self.max_rate * MIN_RATE_FRACTION);
        if factor < BETA {
            // Landed on the server's rate as measured: climb from here, flat around it.
            self.w_max = self.rate;
        }
        self.last_throttle = Some(now);
        self.generation += 1;
        self.seen = 0.0;
        self.throttled = 0.0;
        self.tokens = self.tokens.min(0.0);
        self.clamp_tokens();
    }

    /// Judges the probe. Throttles from a server bucket that we overran fall after a cut
    /// by `c` from share `f` to `1 − (1 − f)/c` (to 0 once below its rate); background
    /// ones stay at `f`. Background if the share after is nearer `f` than that (and did
    /// not rise well past it: a share that rises is a server bucket still draining).
    fn settle(&mut self, p: Probe, now: Instant) {
        self.probe = None;
        let after = self.throttled / self.seen;
        let if_ours = (1.0 - (1.0 - p.share) / p.factor).max(0.0);
        let half_gap = (p.share - if_ours) / 2.0;
        let sigma = (after * (1.0 - after) / self.seen).sqrt();
        if p.measured
            && p.share >= MIN_BACKGROUND_SHARE
            && after >= p.share - half_gap
            && after <= p.share + half_gap + 2.0 * sigma
            && after >= if_ours + 2.0 * sigma
        {
            // Not ours: undo the cut and learn the share as background.
            self.background = (p.throttled + self.throttled) / (p.seen + self.seen);
            self.rate = p.rate;
            self.w_max = p.w_max;
            // The recovery curve goes on as if the probe had not been.
            self.last_throttle = p.last_throttle.map(|t| t + (now - p.at));
            self.seen = 0.0;
            self.throttled = 0.0;
        } else {
            // Ours: the recovery curve starts now, from the rate the probe held.
            self.last_throttle = Some(now);
        }
    }

    /// CUBIC recovery after a success.
    fn climb(&mut self, now: Instant) {
        let Some(t0) = self.last_throttle else {
            return;
        };
        if self.probe.is_some() {
            // The cut is measured at the rate it set.
            return;
        }
        let x = 1.0 - (now - t0).as_secs_f64() / RECOVERY.as_secs_f64();
        // Back up to W along β's curve; past W, probe upwards at a fixed pace, so that a
        // gentle β does not also make the climb to a freed quota slow.
        let depth = if x > 0.0 { 1.0 - BETA } else { PROBE };
        let cubic = self.w_max * (1.0 - depth * x.powi(3));
        let new_rate = cubic.max(self.rate).min(self.max_rate);
        if new_rate >= self.max_rate {
            self.last_throttle = None;
        }
        if new_rate > self.rate {
            self.rate = new_rate;
        }
    }

    /// Burst shrinks in proportion while the rate is reduced.
    pub(super) fn capacity(&self) -> f64 {
        (self.burst * self.rate / self.max_rate).max(1.0)
    }

    pub(super) fn clamp_tokens(&mut self) {
        self.tokens = self.tokens.min(self.capacity());
    }

    /// Adds the tokens earned since the last refill.
    pub(super) fn refill(&mut self, now: Instant) {
        if now > self.last_refill {
            self.tokens += (now - self.last_refill).as_secs_f64() * self.rate;
            self.clamp_tokens();
            self.last_refill = now;
        }
    }

    /// `None` if a token can be taken now, else when to look again.
    pub(super) fn ready_at(&self, now: Instant) -> Option<Instant> {
        if self.tokens >= 1.0 - TOKEN_EPSILON {
            return None;
        }
        let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.rate).max(MIN_SLEEP);
        Some(now + wait)
    }

    pub(super) fn retry_is_head(&self) -> bool {
        !self.retry.is_empty()
            && (self.first.is_empty() || self.firsts_over_retry >= RETRY_STARVATION_LIMIT)
    }

    pub(super) fn head_waiter(&self) -> Option<&Waiter> {
        if self.retry_is_head() {
            self.retry.front()
        } else {
            self.first.front()
        }
    }

    pub(super) fn head(&self) -> Option<u64> {
        self.head_waiter().map(|w| w.id)
    }

    /// Gives a token to the head (caller checked it is ready) and wakes the next.
    pub(super) fn grant_head(&mut self) -> u64 {
        if self.retry_is_head() {
            self.retry.pop_front();
            self.firsts_over_retry = 0;
        } else {
            self.first.pop_front();
            if self.retry.is_empty() {
                self.firsts_over_retry = 0;
            } else {
                self.firsts_over_retry += 1;
            }
        }
        self.tokens -= 1.0;
        self.wake_head();
        self.generation
    }

    pub(super) fn wake_head(&self) {
        if let Some(w) = self.head_waiter() {
            w.notify.notify_one();
        }
    }

    pub(super) fn remove(&mut self, id: u64) {
        self.first.retain(|w| w.id != id);
        self.retry.retain(|w| w.id != id);
        if self.retry.is_empty() {
            self.firsts_over_retry = 0;
        }
        self.wake_head();
    }
}

/// Removes a cancelled waiter from the queue and hands the head role on.
pub(super) struct QueueGuard<'a> {
    pub(super) bucket: &'a Bucket,
    pub(super) id: u64,
    pub(super) armed: bool,
}

impl Drop for QueueGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            lock(&self.bucket.state).remove(self.id);
        }
    }
}

/// Locks, ignoring poisoning (state stays consistent: no panics mid-update).
pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// Tests (virtual time)
// ---------------------------------------------------------------------------
