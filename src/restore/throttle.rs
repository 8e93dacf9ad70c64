//! Warnings about a trouble that lasts (an unreachable store): said at once, then at
//! most every so often, so an operator hears of it without a line per retry.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// How often a lasting store trouble is repeated in the log.
pub(crate) const WARN_EVERY: Duration = Duration::from_secs(30);

/// Says when a repeated warning is worth logging again.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    /// When one was last logged, and how many were left out since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub(crate) const fn new(every: Duration) -> Self {
        Self {
            every,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(left_out)` when this occurrence should be logged (`left_out` of them were
    /// not since the last one logged), `None` when it should not.
    pub(crate) fn check(&self) -> Option<u64> {
        let now = Instant::now();
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, left_out) = &mut *state;
        if last.is_some_and(|at| now.saturating_duration_since(at) < self.every) {
            *left_out += 1;
            return None;
        }
        *last = Some(now);
        Some(std::mem::take(left_out))
    }

    /// The trouble is over: whether it had been logged. The next one is logged at once.
    pub(crate) fn reset(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *state).0.is_some()
    }
}

/// A restore layer's store errors: how many, and when to warn of them.
#[derive(Debug)]
pub(crate) struct StoreErrors {
    pub(crate) count: AtomicU64,
    pub(crate) warnings: Throttle,
}

impl Default for StoreErrors {
    fn default() -> Self {
        Self {
            count: AtomicU64::new(0),
            warnings: Throttle::new(WARN_EVERY),
        }
    }
}

impl StoreErrors {
    pub(crate) fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn the_first_at_once_then_at_most_once_per_period() {
        let throttle = Throttle::new(WARN_EVERY);
        let mut logged = Vec::new();
        // One occurrence a second for 95 s.
        for second in 0..95u64 {
            if let Some(left_out) = throttle.check() {
                logged.push((second, left_out));
            }
            tokio::time::advance(Duration::from_secs(1)).await;
        }
        assert_eq!(logged, [(0, 0), (30, 29), (60, 29), (90, 29)]);
        assert!(throttle.reset(), "it had been logged");
        assert_eq!(throttle.check(), Some(0), "after a reset, at once");
    }
}
