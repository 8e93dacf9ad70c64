//! The future of [`BackoffRetry`](super::BackoffRetry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::error::{RetryError, RetryErrorKind};
use super::layer::Policy;
use super::service::Ladder;
use super::{Attempt, Backoff, Probed};
use crate::connection::{ProbeFuture, ProbeOutcome};
use crate::error::BoxError;

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is under way.
        Calling { #[pin] future: F },
        // Waiting out a delay (probing meanwhile, when there is a probe).
        Waiting { #[pin] sleep: Sleep },
        // The delay is over (or a probe was answered): readying the service for the
        // next attempt.
        Readying,
    }
}

pin_project! {
    /// Tries, waits, and tries again until an attempt succeeds or the policy gives up;
    /// probes the target while it waits, when the layer has a probe.
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
        ladder: Arc<Mutex<Ladder<B>>>,
        started: Instant,
        attempts: u32,
        last_delay: Duration,
        last_error: Option<String>,
        probing: Probing,
    }
}

impl<S: Service<T>, B, T> fmt::Debug for ResponseFuture<S, B, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("attempts", &self.attempts)
            .field("last_delay", &self.last_delay)
            .field("probes", &self.probing.number)
            .finish_non_exhaustive()
    }
}

impl<S, B, T> ResponseFuture<S, B, T>
where
    S: Service<T>,
    T: Clone + 'static,
{
    /// Start a connect with the readied `service`: its first attempt now.
    pub(crate) fn new(
        mut service: S,
        target: T,
        backoff: B,
        policy: Arc<Policy<B>>,
        ladder: Arc<Mutex<Ladder<B>>>,
        started: Instant,
    ) -> Self {
        let attempt = Attempt {
            number: 1,
            delay: Duration::ZERO,
            last_error: None,
        };
        for callback in &policy.on_attempt {
            callback(&attempt);
        }
        let future = service.call(target.clone());
        Self {
            state: State::Calling { future },
            service,
            target,
            backoff,
            policy,
            ladder,
            started,
            attempts: 1,
            last_delay: Duration::ZERO,
            last_error: None,
            probing: Probing::default(),
        }
    }
}

impl<S, B, T> Future for ResponseFuture<S, B, T>
where
    S: Service<T>,
    S::Error: Into<BoxError>,
    B: Backoff + Clone,
    T: Clone + 'static,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        loop {
            match this.state.as_mut().project() {
                StateProj::Calling { future } => {
                    let error: BoxError = match ready!(future.poll(cx)) {
                        Ok(response) => {
                            // Remember where the ladder stands, for the next connect.
                            let mut ladder = this.ladder.lock().unwrap_or_else(|p| p.into_inner());
                            ladder.backoff = this.backoff.clone();
                            ladder.connected_at = Some(Instant::now());
                            return Poll::Ready(Ok(response));
                        }
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
                    let deadline = Instant::now() + delay;
                    this.probing.start(this.policy, deadline);
                    this.state.set(State::Waiting {
                        sleep: tokio::time::sleep_until(deadline),
                    });
                }
                StateProj::Waiting { sleep } => {
                    let deadline = sleep.deadline();
                    let answered =
                        this.probing
                            .poll(cx, this.policy, &*this.target, deadline, *this.attempts);
                    if !answered {
                        ready!(sleep.poll(cx));
                    }
                    this.probing.stop();
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

/// The probes of one wait.
#[derive(Default)]
struct Probing {
    /// When the next probe starts; none when no more are due in this wait.
    timer: Option<Pin<Box<Sleep>>>,
    in_flight: Option<ProbeFuture>,
    /// Probes finished in this wait.
    number: u32,
}

impl Probing {
    /// A new wait, until `deadline`: the first probe one (jittered) interval in.
    fn start<B>(&mut self, policy: &Policy<B>, deadline: Instant) {
        self.stop();
        self.number = 0;
        if policy.probe.is_some() {
            self.schedule(policy.probe_interval, deadline);
        }
    }

    /// The wait is over: no more probes, and the one in flight is dropped.
    fn stop(&mut self) {
        self.timer = None;
        self.in_flight = None;
    }

    /// Set the next probe one interval from now, jittered to between half and one and a
    /// half of it (so probes of many streams spread out), unless the wait ends first:
    /// an attempt is due then anyway.
    fn schedule(&mut self, interval: Duration, deadline: Instant) {
        let at = Instant::now() + interval.mul_f64(0.5 + fastrand::f64());
        self.timer = (at < deadline).then(|| Box::pin(tokio::time::sleep_until(at)));
    }

    /// Run the probes due; whether one was answered (the wait is over).
    fn poll<B, T: 'static>(
        &mut self,
        cx: &mut Context<'_>,
        policy: &Policy<B>,
        target: &T,
        deadline: Instant,
        attempts: u32,
    ) -> bool {
        let Some(probe) = &policy.probe else {
            return false;
        };
        loop {
            if let Some(future) = &mut self.in_flight {
                let Poll::Ready(outcome) = future.as_mut().poll(cx) else {
                    return false;
                };
                self.in_flight = None;
                self.number += 1;
                let probed = Probed {
                    outcome,
                    number: self.number,
                    attempts,
                };
                for callback in &policy.on_probe {
                    callback(&probed);
                }
                if outcome == ProbeOutcome::Answered {
                    tracing::debug!(probes = self.number, "probe answered; attempting now");
                    return true;
                }
                self.schedule(policy.probe_interval, deadline);
                continue;
            }
            let Some(timer) = &mut self.timer else {
                return false;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            self.timer = None;
            // Nothing to probe for this target: wait as without a probe.
            self.in_flight = probe(target as &dyn std::any::Any);
            if self.in_flight.is_none() {
                return false;
            }
        }
    }
}
