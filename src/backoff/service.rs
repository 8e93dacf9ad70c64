use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::layer::Policy;
use super::{Attempt, Backoff, ResponseFuture};
use crate::error::BoxError;

/// The service [`BackoffRetryLayer`](super::BackoffRetryLayer) makes.
#[derive(Debug)]
pub struct BackoffRetry<S, B> {
    inner: S,
    policy: Arc<Policy<B>>,
}

impl<S: Clone, B> Clone for BackoffRetry<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S, B> BackoffRetry<S, B> {
    pub(crate) fn new(inner: S, policy: Arc<Policy<B>>) -> Self {
        Self { inner, policy }
    }

    crate::macros::inner_service_accessors!();
}

impl<S, B, T> Service<T> for BackoffRetry<S, B>
where
    S: Service<T> + Clone,
    S::Error: Into<BoxError>,
    B: Backoff + Clone,
    T: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, B, T>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: T) -> Self::Future {
        // The readied service makes the first attempt; the clone, readied again before
        // each retry, stays with the future.
        let clone = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, clone);
        let attempt = Attempt {
            number: 1,
            delay: Duration::ZERO,
            last_error: None,
        };
        for callback in &self.policy.on_attempt {
            callback(&attempt);
        }
        let future = ready.call(target.clone());
        let mut backoff = self.policy.backoff.clone();
        backoff.reset();
        ResponseFuture::new(
            future,
            ready,
            target,
            backoff,
            Arc::clone(&self.policy),
            Instant::now(),
        )
    }
}
