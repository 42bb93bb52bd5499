//! Progress while agents run: wait lines (single-agent commands) or a count of waits, and
//! the batch meter (a bar on a terminal, a line every few seconds otherwise).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::app;

/// Single-agent commands: one progress line per wait between two tries of an AWS call.
pub(crate) fn wait_printer(json: bool) -> Option<app::WaitFn> {
    if json {
        return None;
    }
    Some(app::WaitFn(Arc::new(|w: &app::Wait| {
        eprintln!(
            "[{}] {}: {}, retrying in {:.2} s (try {}; gives up in {} s)",
            w.who.as_deref().unwrap_or("start-up read"),
            w.api,
            w.code,
            w.wait.as_secs_f64(),
            w.tries + 1,
            w.left.as_secs()
        );
    })))
}

/// Batches: waits between tries are counted, and the meter shows the count.
pub(crate) fn wait_counter(waits: &Arc<AtomicU64>) -> app::WaitFn {
    let waits = waits.clone();
    app::WaitFn(Arc::new(move |_: &app::Wait| {
        waits.fetch_add(1, Ordering::Relaxed);
    }))
}

/// Progress of a batch on stderr: a bar on a terminal (finished well / not / remaining,
/// rate, ETA), a line every few seconds otherwise, nothing with `--json`. A dry run counts
/// agents `planned`. The rate and the ETA are shown only once [`Pace::meaningful`]: the
/// first agents finish on the buckets' bursts, faster than the quota lets the rest go.
pub(crate) enum Meter {
    /// `--json`: stdout carries the JSON only, stderr stays quiet.
    Off,
    /// Waiting for the number of agents.
    Ready { dry_run: bool },
    /// A terminal.
    Bar {
        bar: indicatif::ProgressBar,
        pace: Pace,
        waits: Arc<AtomicU64>,
    },
    /// A pipe or a log file.
    Lines {
        pace: Pace,
        last: std::time::Instant,
        waits: Arc<AtomicU64>,
    },
}

/// How often a non-terminal progress line is printed.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Counts and timing of a batch's finished agents.
pub(crate) struct Pace {
    total: usize,
    ok: usize,
    not_ok: usize,
    /// What a good outcome is called (`done`, or `planned` in a dry run).
    good: &'static str,
    started: std::time::Instant,
}

/// Finished agents before a rate is shown.
const RATE_AFTER_AGENTS: usize = 10;
/// Seconds of running before a rate is shown.
const RATE_AFTER: std::time::Duration = std::time::Duration::from_secs(10);

impl Pace {
    fn new(total: usize, dry_run: bool) -> Pace {
        Pace {
            total,
            ok: 0,
            not_ok: 0,
            good: if dry_run { "planned" } else { "done" },
            started: std::time::Instant::now(),
        }
    }

    fn add(&mut self, a: &app::AgentResult) {
        if a.outcome.finished_well() {
            self.ok += 1
        } else {
            self.not_ok += 1
        }
    }

    fn finished(&self) -> usize {
        self.ok + self.not_ok
    }

    /// Enough agents have finished, over long enough, for a rate to mean something.
    fn meaningful(finished: usize, elapsed: std::time::Duration) -> bool {
        finished >= RATE_AFTER_AGENTS && elapsed >= RATE_AFTER
    }

    /// `N done, M not done`, then the rate and ETA once they mean something.
    fn summary(&self, waits: u64) -> String {
        let n = self.finished();
        let elapsed = self.started.elapsed();
        let mut s = format!(
            "{} {}, {} not {}",
            self.ok, self.good, self.not_ok, self.good
        );
        if Pace::meaningful(n, elapsed) && n < self.total {
            let rate = n as f64 / elapsed.as_secs_f64();
            let eta = (self.total - n) as f64 / rate;
            s.push_str(&format!(", {rate:.2} agents/s, ETA {eta:.0} s"));
        }
        s.push_str(&format!(", {waits} calls waited to retry"));
        s
    }
}

impl Meter {
    pub(crate) fn new(json: bool, dry_run: bool) -> Meter {
        if json {
            Meter::Off
        } else {
            Meter::Ready { dry_run }
        }
    }

    /// Starts showing `total` agents; `waits` counts the calls retried after throttling.
    pub(crate) fn start(&mut self, total: usize, waits: Arc<AtomicU64>) {
        use std::io::IsTerminal;
        let Meter::Ready { dry_run } = *self else {
            return;
        };
        let pace = Pace::new(total, dry_run);
        *self = if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(total as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} agents · {msg}")
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            Meter::Bar { bar, pace, waits }
        } else {
            Meter::Lines {
                pace,
                last: std::time::Instant::now(),
                waits,
            }
        };
    }

    pub(crate) fn tick(&mut self, a: &app::AgentResult) {
        match self {
            Meter::Off | Meter::Ready { .. } => {}
            Meter::Bar { bar, pace, waits } => {
                pace.add(a);
                bar.inc(1);
                bar.set_message(pace.summary(waits.load(Ordering::Relaxed)));
            }
            Meter::Lines { pace, last, waits } => {
                pace.add(a);
                let n = pace.finished();
                if last.elapsed() >= PROGRESS_EVERY || n == pace.total {
                    *last = std::time::Instant::now();
                    eprintln!(
                        "progress: {n}/{} agents ({})",
                        pace.total,
                        pace.summary(waits.load(Ordering::Relaxed))
                    );
                }
            }
        }
    }

    pub(crate) fn finish(&self) {
        if let Meter::Bar { bar, .. } = self {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::Pace;

    #[test]
    fn a_rate_is_shown_only_after_enough_agents_and_time() {
        assert!(
            !Pace::meaningful(3, Duration::from_secs(60)),
            "too few agents"
        );
        assert!(
            !Pace::meaningful(50, Duration::from_secs(2)),
            "too early: the burst"
        );
        assert!(Pace::meaningful(10, Duration::from_secs(10)));
    }
}
