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
use super::layer::{Policy, Rules};
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
        // Whether `backoff` still stands where a fresh one starts (no delay drawn).
        fresh: bool,
        policy: Rules<B>,
        ladder: Arc<Mutex<Ladder<B>>>,
        started: Instant,
        attempts: u32,
        last_delay: Duration,
        last_error: Option<BoxError>,
        // Whether the attempt under way was started by an answered probe.
        by_probe: bool,
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
        (backoff, fresh): (B, bool),
        policy: Rules<B>,
        ladder: Arc<Mutex<Ladder<B>>>,
        started: Instant,
    ) -> Self {
        let attempt = Attempt {
            number: 1,
            delay: Duration::ZERO,
            last_error: None,
        };
        policy.attempted(&attempt);
        let future = service.call(target.clone());
        Self {
            state: State::Calling { future },
            service,
            target,
            backoff,
            fresh,
            policy,
            ladder,
            started,
            attempts: 1,
            last_delay: Duration::ZERO,
            last_error: None,
            by_probe: false,
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
                            ladder.backoff = (!*this.fresh).then(|| Box::new(this.backoff.clone()));
                            ladder.connected_at = Some(Instant::now());
                            return Poll::Ready(Ok(response));
                        }
                        Err(e) => e.into(),
                    };
                    let attempts = *this.attempts;
                    if !this.policy.retryable(&error) {
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
                    *this.fresh = false;
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
                    *this.last_error = Some(error);
                    let deadline = Instant::now() + delay;
                    // The server answered a probe and refused the attempt all the
                    // same: its probes say nothing, so this delay is waited out.
                    let early = !*this.by_probe;
                    this.probing.start(this.policy, deadline, early);
                    this.state.set(State::Waiting {
                        sleep: tokio::time::sleep_until(deadline),
                    });
                }
                StateProj::Waiting { mut sleep } => {
                    let deadline = sleep.deadline();
                    match this.probing.poll(
                        cx,
                        this.policy,
                        &*this.target,
                        deadline,
                        *this.attempts,
                    ) {
                        Probes::Answered => *this.by_probe = true,
                        Probes::Nothing if this.probing.gated => *this.by_probe = false,
                        Probes::Waiting if this.probing.gated => {
                            if let Some(max) = this.policy.max_elapsed {
                                if this.started.elapsed() >= max {
                                    let error = this
                                        .last_error
                                        .take()
                                        .unwrap_or_else(|| "no probe was answered".into());
                                    return Poll::Ready(Err(RetryError::new(
                                        RetryErrorKind::ElapsedLimit,
                                        *this.attempts,
                                        error,
                                    )
                                    .into()));
                                }
                            }
                            return Poll::Pending;
                        }
                        Probes::Waiting | Probes::Nothing => {
                            ready!(sleep.as_mut().poll(cx));
                            let failing = Instant::now().saturating_duration_since(*this.started);
                            let gate = this
                                .policy
                                .probe_first_after
                                .is_some_and(|after| failing >= after);
                            if gate && this.probing.gate(this.policy) {
                                tracing::debug!(
                                    ?failing,
                                    "attempting only once a probe is answered"
                                );
                                continue;
                            }
                            *this.by_probe = false;
                        }
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
                        last_error: this.last_error.take().map(|e| e.to_string()),
                    };
                    this.policy.attempted(&attempt);
                    let future = this.service.call(this.target.clone());
                    this.state.set(State::Calling { future });
                }
            }
        }
    }
}

/// What the probes of a wait found so far.
enum Probes {
    /// One was answered: the next attempt is due now.
    Answered,
    /// None answered yet (or none is due).
    Waiting,
    /// The probe has nothing for this target.
    Nothing,
}

/// The probes of one wait.
#[derive(Default)]
struct Probing {
    /// When the next probe starts; none when no more are due in this wait.
    timer: Option<Pin<Box<Sleep>>>,
    in_flight: Option<ProbeFuture>,
    /// When the last probe of this wait was sent: the next is due one (jittered)
    /// interval after it, however long it took to go unanswered.
    last_sent: Option<Instant>,
    /// Probes finished in this wait.
    number: u32,
    /// The delay is over, and only an answered probe starts the next attempt.
    gated: bool,
    /// The probe had nothing for this target.
    nothing: bool,
}

impl Probing {
    /// A new wait, until `deadline`: the first probe one (jittered) interval in, when
    /// `early` answers are to end it.
    fn start<B>(&mut self, policy: &Policy<B>, deadline: Instant, early: bool) {
        self.stop();
        self.number = 0;
        self.gated = false;
        self.nothing = false;
        self.last_sent = None;
        if policy.probe.is_some() && early {
            self.schedule(policy.probe_interval, deadline);
        }
    }

    /// The wait is over: no more probes, and the one in flight is dropped.
    fn stop(&mut self) {
        self.timer = None;
        self.in_flight = None;
    }

    /// The delay is over: from now on only an answered probe ends the wait, and one is
    /// sent at once unless one is under way. False when there is no probe.
    fn gate<B>(&mut self, policy: &Policy<B>) -> bool {
        if policy.probe.is_none() || self.nothing {
            return false;
        }
        self.gated = true;
        if self.in_flight.is_none() {
            // At once, unless a probe went out less than half an interval ago: then
            // at the cadence.
            let now = Instant::now();
            let recent = self
                .last_sent
                .is_some_and(|at| now.saturating_duration_since(at) < policy.probe_interval / 2);
            if recent {
                self.schedule(policy.probe_interval, now);
            } else {
                self.timer = Some(Box::pin(tokio::time::sleep_until(now)));
            }
        }
        true
    }

    /// Set the next probe one interval after the last one was sent (or from now, for
    /// the first), jittered to between half and all of it, so probes of many streams
    /// spread out and no two are further apart than the interval (or than a probe
    /// takes to go unanswered, when that is longer); unless the delay ends first: an
    /// attempt, or a gated probe, is due then anyway.
    fn schedule(&mut self, interval: Duration, deadline: Instant) {
        let now = Instant::now();
        let from = self.last_sent.unwrap_or(now);
        let at = (from + interval.mul_f64(0.5 + 0.5 * fastrand::f64())).max(now);
        self.timer = (self.gated || at < deadline).then(|| Box::pin(tokio::time::sleep_until(at)));
    }

    /// Run the probes due.
    fn poll<B, T: 'static>(
        &mut self,
        cx: &mut Context<'_>,
        policy: &Rules<B>,
        target: &T,
        deadline: Instant,
        attempts: u32,
    ) -> Probes {
        let Some(probe) = &policy.probe else {
            return Probes::Nothing;
        };
        loop {
            if let Some(future) = &mut self.in_flight {
                let Poll::Ready(outcome) = future.as_mut().poll(cx) else {
                    return Probes::Waiting;
                };
                self.in_flight = None;
                self.number += 1;
                let probed = Probed {
                    outcome,
                    number: self.number,
                    attempts,
                };
                policy.probed(&probed);
                if outcome == ProbeOutcome::Answered {
                    tracing::debug!(probes = self.number, "probe answered; attempting now");
                    return Probes::Answered;
                }
                self.schedule(policy.probe_interval, deadline);
                continue;
            }
            let Some(timer) = &mut self.timer else {
                return Probes::Waiting;
            };
            if timer.as_mut().poll(cx).is_pending() {
                return Probes::Waiting;
            }
            self.timer = None;
            self.last_sent = Some(Instant::now());
            self.in_flight = probe(target as &dyn std::any::Any);
            if self.in_flight.is_none() {
                // Nothing to probe for this target: wait as without a probe.
                self.nothing = true;
                return Probes::Nothing;
            }
        }
    }
}
