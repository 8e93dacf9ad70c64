use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::{Attempt, Backoff, BackoffRetry};
use crate::error::BoxError;

pub(crate) type Classifier = Arc<dyn Fn(&BoxError) -> bool + Send + Sync>;
pub(crate) type AttemptCallback = Arc<dyn Fn(&Attempt) + Send + Sync>;

/// What every [`BackoffRetry`] made by one layer shares.
pub(crate) struct Policy<B> {
    pub(crate) backoff: B,
    pub(crate) max_retries: u32,
    pub(crate) max_elapsed: Option<Duration>,
    pub(crate) retryable: Classifier,
    pub(crate) on_attempt: Vec<AttemptCallback>,
}

impl<B: fmt::Debug> fmt::Debug for Policy<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("backoff", &self.backoff)
            .field("max_retries", &self.max_retries)
            .field("max_elapsed", &self.max_elapsed)
            .field("on_attempt", &self.on_attempt.len())
            .finish_non_exhaustive()
    }
}

/// Retries a failed connect after a [`Backoff`] delay.
///
/// Each call starts the backoff afresh (a success resets it), makes the first attempt
/// at once, and after each retryable failure waits the next delay and tries again: at
/// most `max_retries` retries (so `max_retries + 1` attempts), and never past
/// `max_elapsed`. An error that says retrying cannot help (see
/// [`is_retryable`](crate::error::is_retryable)) stops at once. When it gives up it
/// returns a [`RetryError`](super::error::RetryError) holding the last error.
///
/// The inner service is cloned for each call, as tower's `Retry` does: put a
/// `TimeoutLayer` inside it to bound each attempt, and a shared limiter
/// (`GlobalConcurrencyLimitLayer`, or a `RateLimitLayer` behind a `BufferLayer`)
/// inside it to cap attempts across streams.
#[derive(Debug)]
#[must_use]
pub struct BackoffRetryLayer<B> {
    policy: Policy<B>,
}

impl<B: Clone> Clone for BackoffRetryLayer<B> {
    fn clone(&self) -> Self {
        Self {
            policy: Policy {
                backoff: self.policy.backoff.clone(),
                max_retries: self.policy.max_retries,
                max_elapsed: self.policy.max_elapsed,
                retryable: Arc::clone(&self.policy.retryable),
                on_attempt: self.policy.on_attempt.clone(),
            },
        }
    }
}

impl<B: Backoff + Clone> BackoffRetryLayer<B> {
    /// Retry with `backoff`, at most 5 times, with no time limit.
    pub fn new(backoff: B) -> Self {
        Self {
            policy: Policy {
                backoff,
                max_retries: 5,
                max_elapsed: None,
                retryable: Arc::new(|e: &BoxError| crate::error::is_retryable(e.as_ref())),
                on_attempt: Vec::new(),
            },
        }
    }

    /// At most this many retries after the first attempt.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.policy.max_retries = max_retries;
        self
    }

    /// Give up rather than wait past this much time since the first attempt.
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.policy.max_elapsed = Some(max_elapsed);
        self
    }

    /// Decide which errors are worth retrying (the default reads
    /// [`ConnectError`](crate::error::ConnectError) kinds and retries everything else).
    pub fn retry_if<F>(mut self, retryable: F) -> Self
    where
        F: Fn(&BoxError) -> bool + Send + Sync + 'static,
    {
        self.policy.retryable = Arc::new(retryable);
        self
    }

    /// Call `callback` before every attempt, the first included.
    pub fn on_attempt<F>(mut self, callback: F) -> Self
    where
        F: Fn(&Attempt) + Send + Sync + 'static,
    {
        self.policy.on_attempt.push(Arc::new(callback));
        self
    }
}

impl<S, B: Backoff + Clone> Layer<S> for BackoffRetryLayer<B> {
    type Service = BackoffRetry<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        BackoffRetry::new(inner, Arc::new(self.clone().policy))
    }
}
