//! The future of [`BackoffRetry`](super::BackoffRetry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::{RetryError, RetryErrorKind};
use super::layer::Policy;
use super::{Attempt, Backoff};
use crate::error::BoxError;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Calling { #[pin] future: F },
        Waiting { #[pin] sleep: Sleep },
        Readying,
    }
}

pin_project! {
    /// Tries, waits, and tries again until an attempt succeeds or the policy gives up.
    pub struct ResponseFuture<S, B, T>
    where
        S: Service<T>,
    {
        #[pin]
        state: State<S::Future>,
        service: S,
        target: T,
        backoff: B,
        policy: Arc<Policy<B>>,
        started: Instant,
        attempts: u32,
        last_delay: Duration,
        last_error: Option<String>,
    }
}

impl<S: Service<T>, B, T> fmt::Debug for ResponseFuture<S, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .field("last_delay", &self.last_delay)
            .finish_non_exhaustive()
    }
}

impl<S: Service<T>, B, T> ResponseFuture<S, B, T> {
    pub(crate) fn new(
        future: S::Future,
        service: S,
        target: T,
        backoff: B,
        policy: Arc<Policy<B>>,
        started: Instant,
    ) -> Self {
        Self {
            state: State::Calling { future },
            service,
            target,
            backoff,
            policy,
            started,
            attempts: 1,
            last_delay: Duration::ZERO,
            last_error: None,
        }
    }
}

impl<S, B, T> Future for ResponseFuture<S, B, T>
where
    S: Service<T>,
    S::Error: Into<BoxError>,
    B: Backoff,
    T: Clone,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let error: BoxError = match ready!(future.poll(cx)) {
                        Ok(response) => return Poll::Ready(Ok(response)),
                        Err(e) => e.into(),
                    };
                    let attempts = *this.attempts;
                    if !(this.policy.retryable)(&error) {
                        return Poll::Ready(Err(RetryError::new(
                            RetryErrorKind::NotRetryable,
                            attempts,
                            error,
                        )
                        .into()));
                    }
                    if attempts > this.policy.max_retries {
                        return Poll::Ready(Err(RetryError::new(
                            RetryErrorKind::Exhausted,
                            attempts,
                            error,
                        )
                        .into()));
                    }
                    let delay = this.backoff.next_delay();
                    if let Some(max) = this.policy.max_elapsed {
                        let elapsed = Instant::now().saturating_duration_since(*this.started);
                        if elapsed.saturating_add(delay) > max {
                            return Poll::Ready(Err(RetryError::new(
                                RetryErrorKind::ElapsedLimit,
                                attempts,
                                error,
                            )
                            .into()));
                        }
                    }
                    tracing::debug!(attempt = attempts, ?delay, %error, "connect attempt failed; backing off");
                    *this.last_delay = delay;
                    *this.last_error = Some(error.to_string());
                    this.state.set(State::Waiting {
                        sleep: tokio::time::sleep(delay),
                    });
                }
                StateProj::Waiting { sleep } => {
                    ready!(sleep.poll(cx));
                    this.state.set(State::Readying);
                }
                StateProj::Readying => {
                    if let Err(e) = ready!(this.service.poll_ready(cx)) {
                        return Poll::Ready(Err(e.into()));
                    }
                    *this.attempts += 1;
                    let attempt = Attempt {
                        number: *this.attempts,
                        delay: *this.last_delay,
                        last_error: this.last_error.take(),
                    };
                    for callback in &this.policy.on_attempt {
                        callback(&attempt);
                    }
                    let future = this.service.call(this.target.clone());
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}
