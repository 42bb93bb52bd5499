//! One rate budget per account across processes: AWS's quotas are per account and Region,
//! so processes that share a state store share each bucket's rate too. With a shared
//! budget ([`Pacer::share`](super::Pacer::share)), a call that its local bucket granted
//! also takes a token from the budget; tokens are drawn from it in small slices (a tenth
//! of a second of the rate, at least one), so the store is not written per call and no
//! process holds more than a slice: tokens drawn early and spent later are what can make
//! the processes together exceed the quota for a moment (a quarter second's slices let 3 %
//! of the calls of two machines be throttled; a tenth's, none). The shared bucket keeps one
//! more token of its burst in reserve than a process's own (`RateLimits::with_headroom`):
//! calls granted in order by the budget reach AWS from several processes, each with its own
//! scheduling delay, so they can arrive closer together than they were granted (two loaded
//! processes at the quota without it: 2–3 of 102 CreateUser throttled). Where the budget
//! lives (a table item per bucket) is the caller's: this module sees a [`DrawFn`].
//!
//! Adaptive pacing stays each process's own: a throttle lowers the local rate of the
//! process that saw it, and the shared budget caps the sum of them all at the configured
//! rate. A budget that cannot be reached leaves the call to its local pacing (each process
//! then at most the configured rate; the server's throttles, answered by the adaptive
//! decrease, are the backstop).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

/// One draw from the shared budget of `bucket`: up to `want` tokens of a bucket refilled at
/// `rate` tokens/s up to `burst`.
#[derive(Debug, Clone, PartialEq)]
pub struct Draw {
    /// The bucket (`connect:CreateUser`, `identity_center`, ...).
    pub bucket: String,
    /// Tokens wanted.
    pub want: u32,
    /// Refill rate, tokens per second.
    pub rate: f64,
    /// Capacity.
    pub burst: f64,
}

/// Draws from the shared budget: the tokens granted (0 when it is empty for now).
pub type DrawFn = Arc<dyn Fn(Draw) -> BoxFuture<'static, Result<u32, String>> + Send + Sync>;

/// How much of a second's rate one draw asks for.
pub const SLICE_SECS: f64 = 0.1;

/// The tokens one draw asks for at `rate` with `burst` (rounded: the rate with its 1 %
/// headroom, 19.8/s, still draws 2, not 1, so each round trip to the store brings a tenth
/// of a second's worth).
pub fn slice(rate: f64, burst: f64) -> u32 {
    let want = (rate * SLICE_SECS).round().clamp(1.0, burst.max(1.0));
    want as u32
}

/// The process's side of the shared budget: per bucket, the tokens drawn and not used yet.
pub(super) struct Shared {
    draw: DrawFn,
    pools: Mutex<HashMap<String, Arc<tokio::sync::Mutex<u32>>>>,
}

impl Shared {
    pub(super) fn new(draw: DrawFn) -> Shared {
        Shared {
            draw,
            pools: Mutex::new(HashMap::new()),
        }
    }

    fn pool(&self, bucket: &str) -> Arc<tokio::sync::Mutex<u32>> {
        let mut pools = self.pools.lock().unwrap_or_else(|p| p.into_inner());
        pools.entry(bucket.to_string()).or_default().clone()
    }

    /// Takes one token of `bucket` from the shared budget, drawing a slice when the
    /// process has none left and waiting while the budget is empty. Callers queue in
    /// order (one drawer per bucket at a time).
    pub(super) async fn take(&self, bucket: &str, rate: f64, burst: f64) {
        let pool = self.pool(bucket);
        let mut tokens = pool.lock().await;
        let burst = (burst - 1.0).max(1.0);
        loop {
            if *tokens > 0 {
                *tokens -= 1;
                return;
            }
            let want = slice(rate, burst);
            let draw = Draw {
                bucket: bucket.to_string(),
                want,
                rate,
                burst,
            };
            match (self.draw)(draw).await {
                Ok(0) => tokio::time::sleep(Duration::from_secs_f64(1.0 / rate.max(0.01))).await,
                Ok(granted) => *tokens += granted,
                Err(why) => {
                    tracing::warn!(bucket, %why, "shared rate budget unreachable: this call is paced locally only");
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A budget in memory: `left` tokens, refilled by the test.
    fn budget(left: Arc<AtomicU32>, draws: Arc<AtomicU32>) -> DrawFn {
        Arc::new(move |d: Draw| {
            let (left, draws) = (left.clone(), draws.clone());
            Box::pin(async move {
                draws.fetch_add(1, Ordering::SeqCst);
                let have = left.load(Ordering::SeqCst);
                let granted = have.min(d.want);
                left.fetch_sub(granted, Ordering::SeqCst);
                Ok(granted)
            })
        })
    }

    #[test]
    fn a_draw_asks_for_a_tenth_of_a_second_of_the_rate_at_least_one_at_most_the_burst() {
        assert_eq!(slice(2.0, 5.0), 1);
        assert_eq!(slice(20.0, 5.0), 2);
        assert_eq!(slice(19.8, 4.0), 2, "the rate with its headroom");
        assert_eq!(slice(1.98, 4.0), 1);
        assert_eq!(slice(200.0, 200.0), 20);
        assert_eq!(slice(200.0, 10.0), 10);
        assert_eq!(slice(0.5, 1.0), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn tokens_are_drawn_a_slice_at_a_time_and_an_empty_budget_is_waited_for() {
        let left = Arc::new(AtomicU32::new(6));
        let draws = Arc::new(AtomicU32::new(0));
        let shared = Shared::new(budget(left.clone(), draws.clone()));
        for _ in 0..6 {
            shared.take("connect:CreateUser", 20.0, 5.0).await;
        }
        assert_eq!(
            draws.load(Ordering::SeqCst),
            3,
            "slices of 2: three draws for six calls"
        );
        assert_eq!(left.load(Ordering::SeqCst), 0);
        // Empty: the seventh call waits until the budget has a token again.
        let waiting = {
            let shared = Arc::new(shared);
            let s = shared.clone();
            let task = tokio::spawn(async move { s.take("connect:CreateUser", 20.0, 5.0).await });
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!task.is_finished(), "no token: the call waits");
            left.store(1, Ordering::SeqCst);
            task
        };
        tokio::time::timeout(Duration::from_secs(1), waiting)
            .await
            .expect("served once the budget refills")
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_shared_bucket_keeps_one_more_token_of_the_burst_in_reserve() {
        let asked = Arc::new(Mutex::new(Vec::new()));
        let seen = asked.clone();
        let draw: DrawFn = Arc::new(move |d: Draw| {
            seen.lock().unwrap().push(d.clone());
            Box::pin(async move { Ok(d.want) })
        });
        Shared::new(draw)
            .take("connect:CreateUser", 19.8, 4.0)
            .await;
        let asked = asked.lock().unwrap();
        assert_eq!(
            (asked[0].burst, asked[0].want, asked[0].rate),
            (3.0, 2, 19.8),
            "{asked:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_unreachable_budget_leaves_the_call_to_local_pacing() {
        let draw: DrawFn = Arc::new(|_| Box::pin(async { Err("no table".to_string()) }));
        let shared = Shared::new(draw);
        tokio::time::timeout(
            Duration::from_millis(10),
            shared.take("identity_center", 20.0, 20.0),
        )
        .await
        .expect("not stuck");
    }
}
