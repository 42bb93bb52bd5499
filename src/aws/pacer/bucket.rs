//! One token bucket: its adaptive rate (the CUBIC-style decrease and recovery), its two FIFO
//! queues (first attempts before retries) and its counters.

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
    /// No token is handed out before this (server's retry-after).
    pub(super) blocked_until: Option<Instant>,
    /// CUBIC: rate at the last decrease and when it happened (`None` = at max).
    pub(super) w_max: f64,
    pub(super) last_throttle: Option<Instant>,
    /// Bumped on each decrease; permits carry the value they were granted at.
    pub(super) generation: u64,
    pub(super) first: VecDeque<Waiter>,
    pub(super) retry: VecDeque<Waiter>,
    pub(super) next_id: u64,
    /// First attempts served in a row while a retry was waiting.
    pub(super) firsts_over_retry: u32,
}

pub(super) struct Waiter {
    pub(super) id: u64,
    pub(super) notify: Arc<Notify>,
}

impl Bucket {
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
                blocked_until: None,
                w_max: limit.rate,
                last_throttle: None,
                generation: 0,
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

    pub(super) fn on_throttle(&self, permit_generation: u64, retry_after: Option<Duration>) {
        let mut st = lock(&self.state);
        let now = Instant::now();
        st.refill(now);
        // The server's bucket is empty: so is ours.
        st.tokens = st.tokens.min(0.0);
        if let Some(ra) = retry_after {
            let until = now + ra;
            st.blocked_until = Some(st.blocked_until.map_or(until, |b| b.max(until)));
        }
        if permit_generation == st.generation {
            // CUBIC fast convergence: throttled again below the last ceiling
            // means the ceiling moved down; aim a bit lower this time.
            st.w_max = if st.last_throttle.is_some() && st.rate < st.w_max {
                st.rate * (1.0 + BETA) / 2.0
            } else {
                st.rate
            };
            st.rate = (st.rate * BETA).max(st.max_rate * MIN_RATE_FRACTION);
            st.last_throttle = Some(now);
            st.generation += 1;
            st.clamp_tokens();
        }
        st.wake_head();
    }

    pub(super) fn on_success(&self) {
        let mut st = lock(&self.state);
        let Some(t0) = st.last_throttle else {
            return;
        };
        let now = Instant::now();
        st.refill(now);
        let x = 1.0 - (now - t0).as_secs_f64() / RECOVERY.as_secs_f64();
        // Back up to W along β's curve; past W, probe upwards at a fixed pace, so that a
        // gentle β does not also make the climb to a freed quota slow.
        let depth = if x > 0.0 { 1.0 - BETA } else { PROBE };
        let cubic = st.w_max * (1.0 - depth * x.powi(3));
        let new_rate = cubic.max(st.rate).min(st.max_rate);
        if new_rate >= st.max_rate {
            st.last_throttle = None;
        }
        if new_rate > st.rate {
            st.rate = new_rate;
            st.wake_head();
        }
    }
}

impl BucketState {
    /// Burst shrinks in proportion while the rate is reduced.
    pub(super) fn capacity(&self) -> f64 {
        (self.burst * self.rate / self.max_rate).max(1.0)
    }

    pub(super) fn clamp_tokens(&mut self) {
        self.tokens = self.tokens.min(self.capacity());
    }

    /// Adds the tokens earned since the last refill (none while blocked).
    pub(super) fn refill(&mut self, now: Instant) {
        let from = match self.blocked_until {
            Some(b) if b > self.last_refill => b,
            _ => self.last_refill,
        };
        if now > from {
            self.tokens += (now - from).as_secs_f64() * self.rate;
            self.clamp_tokens();
        }
        if now > self.last_refill {
            self.last_refill = now;
        }
    }

    /// `None` if a token can be taken now, else when to look again.
    pub(super) fn ready_at(&mut self, now: Instant) -> Option<Instant> {
        if let Some(b) = self.blocked_until {
            if b > now {
                return Some(b);
            }
            self.blocked_until = None;
        }
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
