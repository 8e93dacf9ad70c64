use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::layer::Rules;
use super::{Backoff, ResponseFuture};
use crate::error::BoxError;

/// The service [`BackoffRetryLayer`](super::BackoffRetryLayer) makes.
///
/// It remembers, across connects, where its backoff stands and when its last connect
/// succeeded, for [`stable_after`](super::BackoffRetryLayer::stable_after); clones share
/// that memory, and each service the layer makes has its own.
#[derive(Debug)]
pub struct BackoffRetry<S, B> {
    inner: S,
    policy: Rules<B>,
    ladder: Arc<Mutex<Ladder<B>>>,
}

/// Where a stream's backoff stands between connects.
#[derive(Debug)]
pub(crate) struct Ladder<B> {
    /// The backoff as the last successful connect left it; `None` while it stands
    /// where a fresh one starts (most streams connect at the first attempt: they
    /// keep no copy of their own, only this pointer).
    pub(crate) backoff: Option<Box<B>>,
    /// When the last connect succeeded.
    pub(crate) connected_at: Option<Instant>,
}

impl<S: Clone, B> Clone for BackoffRetry<S, B> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            policy: self.policy.clone(),
            ladder: Arc::clone(&self.ladder),
        }
    }
}

impl<S, B: Backoff + Clone> BackoffRetry<S, B> {
    pub(crate) fn new(inner: S, policy: Rules<B>) -> Self {
        Self {
            inner,
            policy,
            ladder: Arc::new(Mutex::new(Ladder {
                backoff: None,
                connected_at: None,
            })),
        }
    }
}

impl<S, B> BackoffRetry<S, B> {
    crate::macros::inner_service_accessors!();

    /// Whether this service reads the same policy as `layer` (not a copy).
    #[cfg(test)]
    pub(crate) fn policy_shared_with(&self, layer: &super::BackoffRetryLayer<B>) -> bool
    where
        B: Backoff + Clone,
    {
        layer.shares_policy(&self.policy)
    }

    /// The backoff this connect's delays come from: afresh, or where the last connect
    /// left it when the connection it made was short-lived; and whether it is a fresh
    /// one.
    fn start(&self, now: Instant) -> (B, bool)
    where
        B: Backoff + Clone,
    {
        let mut ladder = self.ladder.lock().unwrap_or_else(|p| p.into_inner());
        let up_for = ladder
            .connected_at
            .take()
            .map(|at| now.saturating_duration_since(at));
        match (up_for, self.policy.stable_after) {
            (Some(up_for), Some(stable_after)) if up_for < stable_after => {
                // A flapping link: the delays carry on up the ladder.
                tracing::debug!(
                    ?up_for,
                    ?stable_after,
                    "the connection before was short-lived; the backoff carries on"
                );
                match &ladder.backoff {
                    Some(backoff) => (B::clone(backoff), false),
                    None => (self.fresh(), true),
                }
            }
            (up_for, stable_after) => {
                if let (Some(up_for), Some(_)) = (up_for, stable_after) {
                    tracing::debug!(
                        ?up_for,
                        "the connection before was stable; the backoff starts afresh"
                    );
                    self.policy.backoff_reset(up_for);
                }
                (self.fresh(), true)
            }
        }
    }

    /// A backoff where the policy's starts.
    fn fresh(&self) -> B
    where
        B: Backoff + Clone,
    {
        let mut backoff = self.policy.backoff.clone();
        backoff.reset();
        backoff
    }
}

impl<S, B, T> Service<T> for BackoffRetry<S, B>
where
    S: Service<T> + Clone,
    S::Error: Into<BoxError>,
    B: Backoff + Clone,
    T: Clone + 'static,
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
        let ready = std::mem::replace(&mut self.inner, clone);
        let now = Instant::now();
        let (backoff, fresh) = self.start(now);
        ResponseFuture::new(
            ready,
            target,
            (backoff, fresh),
            self.policy.clone(),
            Arc::clone(&self.ladder),
            now,
        )
    }
}
