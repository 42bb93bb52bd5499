//! Time, injected: the wall clock that settle windows are measured on, and the sleeps of
//! backoff. Production uses [`SystemClock`]; engine unit tests use [`VirtualClock`], whose
//! sleeps advance its time at once, so retry and settle-window tests run without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A source of time for the engine.
#[async_trait::async_trait]
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (these times are checkpointed and outlive the process).
    fn now_ms(&self) -> i64;
    /// Waits `d`.
    async fn sleep(&self, d: Duration);
}

/// Milliseconds since the Unix epoch on the system clock.
pub fn system_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The system clock and tokio's timer.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

#[async_trait::async_trait]
impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        system_now_ms()
    }
    async fn sleep(&self, d: Duration) {
        tokio::time::sleep(d).await
    }
}

/// A clock that only moves when slept on (or advanced): deterministic engine tests.
#[derive(Debug)]
pub struct VirtualClock {
    now: AtomicI64,
}

impl VirtualClock {
    /// Starts at the current system time (so stored times still look like times).
    pub fn new() -> Self {
        VirtualClock {
            now: AtomicI64::new(system_now_ms()),
        }
    }
    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.now.fetch_add(d.as_millis() as i64, Ordering::SeqCst);
    }
}

impl Default for VirtualClock {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait::async_trait]
impl Clock for VirtualClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
    async fn sleep(&self, d: Duration) {
        self.advance(d);
        tokio::task::yield_now().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn virtual_sleep_advances_time_without_waiting() {
        let c = VirtualClock::new();
        let t0 = c.now_ms();
        let wall = std::time::Instant::now();
        c.sleep(Duration::from_secs(3600)).await;
        assert_eq!(c.now_ms() - t0, 3_600_000);
        assert!(wall.elapsed() < Duration::from_secs(5));
    }
}
