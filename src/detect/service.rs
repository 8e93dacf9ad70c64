use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};

use super::{FailureDetector, FailureEvent, FailureReason, Severity, SilenceDetector, Window};
use crate::connection::{
    Connection, ConnectionError, ConnectionState, Packet, Wrap, WrapFuture, WrapService,
};
use crate::connection::{Counting, HealthChecker, HealthCounters, HealthHandle};

/// The service [`FailureDetectLayer`](super::FailureDetectLayer) makes: connects
/// through the inner connector and wraps each connection in [`Detected`].
pub type FailureDetect<S> = WrapService<S, Judge>;

/// The future of [`FailureDetect`]: the inner connect, then the wrap.
pub type FailureDetectFuture<F> = WrapFuture<F, Judge>;

/// The wrap of [`FailureDetectLayer`](super::FailureDetectLayer): watches each
/// connection with the layer's detector.
#[derive(Debug, Clone)]
pub struct Judge {
    detector: Arc<FailureDetector>,
}

impl<C: Connection> Wrap<C> for Judge {
    type Wrapped = Detected<C>;

    fn wrap(&self, conn: C) -> Detected<C> {
        Detected::new(conn, Arc::clone(&self.detector))
    }
}

impl<S> FailureDetect<S> {
    /// Wrap `inner`, judging with `detector`.
    pub(crate) fn judging(inner: S, detector: Arc<FailureDetector>) -> Self {
        WrapService::new(inner, Judge { detector })
    }
}

/// Whether a check interval's verdict ends the connection: too few packets to judge
/// is a failure; loss, latency and errors on a connection that delivers are a
/// suspicion.
fn ends_the_connection(event: &FailureEvent) -> bool {
    event.reason == FailureReason::LowPacketRate
}

/// A verdict waiting to be yielded.
#[derive(Debug)]
enum Pending {
    /// A degradation (boxed: rare, and it would make every connection larger).
    Suspect(Box<FailureEvent>),
    /// A good check interval after a degradation.
    Clear,
}

/// A connection watched by a [`FailureDetector`]: its stream yields
/// `Err(ConnectionError::Suspected(event))` when the connection falls silent or
/// degrades (loss, latency, errors over a check interval) but is still open, and ends
/// with `Err(ConnectionError::Failed(event))` when it is judged dead (a silence that
/// lasts on, no packets over a check interval, the hard timeout, a network error).
#[derive(Debug)]
pub struct Detected<C> {
    inner: C,
    detector: Arc<FailureDetector>,
    /// The health below, or our own when nothing below counts.
    health: HealthHandle,
    /// Our own count, when nothing below counts (boxed: rare, and it would make every
    /// stream's connection larger).
    own: Option<Box<Counting>>,
    silence: SilenceDetector,
    connected_at: Instant,
    next_check: Instant,
    last_check: Instant,
    last_counters: HealthCounters,
    timer: Pin<Box<Sleep>>,
    /// The timer's deadline, kept beside the other fields: read from the timer it
    /// cost every poll a trip to the timer's own memory.
    timer_at: Instant,
    /// The waker the timer was last polled with, at its current deadline: while the
    /// task's waker and the deadline stay the same, a poll that finds no packet need
    /// not poll the timer again.
    armed: Option<Waker>,
    /// Silence was reported as a suspicion; until the next packet only a silence
    /// lasting on (to the hard timeout, or twice the limit) ends the connection.
    suspected: bool,
    /// A verdict found at a packet's arrival or a check, yielded at the next poll
    /// (the packet is passed on first).
    pending: Option<Pending>,
    /// Suspected of degrading, and not cleared by a good check interval since.
    degrading: bool,
    done: bool,
}

impl<C: Connection> Detected<C> {
    /// Start watching `conn`.
    pub(crate) fn new(conn: C, detector: Arc<FailureDetector>) -> Self {
        let now = Instant::now();
        let (health, own) = match conn.health() {
            Some(health) => (health, None),
            None => {
                let own = Counting::start(Arc::new(HealthChecker::new(None)), conn.rtt());
                (Arc::clone(own.checker()), Some(Box::new(own)))
            }
        };
        let last_counters = health.counters();
        let silence = SilenceDetector::shared(Arc::clone(&detector.silence));
        let next_check = now + detector.check_interval;
        Self {
            inner: conn,
            health,
            own,
            silence,
            connected_at: now,
            next_check,
            last_check: now,
            last_counters,
            timer: Box::pin(tokio::time::sleep_until(next_check)),
            timer_at: next_check,
            armed: None,
            detector,
            suspected: false,
            pending: None,
            degrading: false,
            done: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    /// The stream's id, for a verdict (not kept: verdicts are rare).
    fn stream_id(&self) -> String {
        self.inner.state().stream_id
    }

    /// The learned packet rhythm.
    pub fn silence_detector(&self) -> &SilenceDetector {
        &self.silence
    }

    /// Media silence on a connection still open: reported once as a suspicion; the
    /// stream goes on. A silence that lasts on past the suspicion is a failure.
    fn silent(&mut self, event: FailureEvent) -> Poll<Option<<Self as Stream>::Item>> {
        if self.suspected {
            return self.fail(event);
        }
        self.suspected = true;
        self.detector.report(&event);
        Poll::Ready(Some(Err(ConnectionError::Suspected(event))))
    }

    /// A threshold crossed by a connection that still delivers (loss, latency,
    /// errors): a suspicion, so that a driver racing a replacement keeps the stream
    /// meanwhile. A packet rate too low to judge is a failure.
    fn judged(&mut self, event: FailureEvent) -> Poll<Option<<Self as Stream>::Item>> {
        if ends_the_connection(&event) {
            return self.fail(event);
        }
        self.degrading = true;
        self.detector.report(&event);
        Poll::Ready(Some(Err(ConnectionError::Suspected(event))))
    }

    /// Yield what a check found and could not yield at once.
    fn take_pending(&mut self) -> Option<Poll<Option<<Self as Stream>::Item>>> {
        match self.pending.take()? {
            Pending::Suspect(event) => Some(self.judged(*event)),
            Pending::Clear => Some(Poll::Ready(Some(Err(ConnectionError::Cleared)))),
        }
    }

    fn fail(&mut self, event: FailureEvent) -> Poll<Option<<Self as Stream>::Item>> {
        self.done = true;
        if let Some(own) = &mut self.own {
            own.end();
        }
        self.detector.report(&event);
        Poll::Ready(Some(Err(ConnectionError::Failed(event))))
    }

    /// Run the periodic threshold checks due by `now`.
    fn check_thresholds(&mut self, now: Instant) -> Option<FailureEvent> {
        if now < self.next_check {
            return None;
        }
        let counters = self.health.counters();
        let window = Window::between(
            &self.last_counters,
            &counters,
            now.saturating_duration_since(self.last_check),
            // The protocol's RTT now: the health's copy may be a little old.
            self.inner.rtt().or_else(|| self.health.latency()),
            self.health.expected_rate(),
        );
        self.last_counters = counters;
        self.last_check = now;
        let interval = self.detector.check_interval;
        while self.next_check <= now {
            self.next_check += interval;
        }
        let verdict = self.detector.evaluate(&window).map(|mut event| {
            event.stream_id = self.stream_id();
            event
        });
        if verdict.is_none() && self.degrading {
            self.degrading = false;
            self.pending = Some(Pending::Clear);
        }
        verdict
    }

    /// When silence becomes a failure, and the event if it already is.
    fn check_silence(&self, now: Instant) -> (Instant, Option<FailureEvent>) {
        let last = self.silence.last_arrival().unwrap_or(self.connected_at);
        let hard = self.detector.thresholds.timeout_duration;
        let adaptive = if self.detector.silence.enabled {
            self.silence.limit()
        } else {
            hard
        };
        let mut limit = adaptive.min(hard);
        if self.suspected {
            limit = hard.max(limit.saturating_mul(2));
        }
        let deadline = last + limit;
        if now < deadline {
            return (deadline, None);
        }
        let silent = now.saturating_duration_since(last);
        let details = if limit < hard {
            format!(
                "no packet for {silent:?}: media silence (adaptive limit {limit:?}, mean gap {:?}, phi {:.1})",
                self.silence.mean_gap(),
                self.silence.phi(silent)
            )
        } else {
            format!("no packet for {silent:?} (timeout {hard:?})")
        };
        let event = FailureEvent::new(
            FailureReason::Timeout,
            Severity::Critical,
            self.stream_id(),
            details,
        )
        .measured(silent.as_secs_f64(), limit.as_secs_f64());
        (deadline, Some(event))
    }

    /// Check every timer; arm the one wake-up for the earliest deadline. A failure
    /// found comes with whether it is silence.
    fn poll_timers(&mut self, cx: &mut Context<'_>) -> Option<(FailureEvent, bool)> {
        // Nothing to judge before the first packet; its arrival wakes us.
        self.silence.last_arrival()?;
        loop {
            let now = Instant::now();
            // A silence already suspected says all the windows would (no packets).
            if !self.suspected {
                if let Some(event) = self.check_thresholds(now) {
                    return Some((event, false));
                }
            }
            let (silence_deadline, event) = self.check_silence(now);
            if let Some(event) = event {
                return Some((event, true));
            }
            // While suspected the periodic checks wait (see above): only the silence's
            // own deadline wakes us.
            let wake = if self.suspected {
                silence_deadline
            } else {
                silence_deadline.min(self.next_check)
            };
            // Deadlines only move later as packets arrive, so a timer set earlier than
            // needed is left alone: it fires, and is re-armed then. That keeps timer
            // work off the per-packet path.
            if self.timer_at > wake {
                self.timer.as_mut().reset(wake);
                self.timer_at = wake;
                self.armed = None;
            }
            // Polled already at this deadline with this waker: it wakes the task when
            // the deadline passes (and `now` is before it, or the checks above would
            // have found it due), so polling again would only register it again.
            if self.timer_at > now
                && self
                    .armed
                    .as_ref()
                    .is_some_and(|waker| waker.will_wake(cx.waker()))
            {
                return None;
            }
            if self.timer.as_mut().poll(cx).is_pending() {
                self.armed = Some(cx.waker().clone());
                return None;
            }
            self.armed = None;
            if self.timer_at < wake {
                self.timer.as_mut().reset(wake);
                self.timer_at = wake;
            }
        }
    }
}

impl<C: Connection> Stream for Detected<C> {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Some(verdict) = this.take_pending() {
            return verdict;
        }
        match Pin::new(&mut this.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(packet))) => {
                if let Some(own) = &mut this.own {
                    own.packet(&packet, || this.inner.rtt());
                }
                if this.silence.last_arrival().is_none() {
                    // Judging starts with the first packet: until then the connection is
                    // the driver's to verify (its first-packet timeout).
                    this.last_check = packet.arrival;
                    this.next_check = packet.arrival + this.detector.check_interval;
                    // Everything counted so far (this packet, errors before it) is in
                    // the first window.
                    this.last_counters = HealthCounters::default();
                }
                this.silence.observe(packet.arrival);
                this.suspected = false;
                if packet.arrival >= this.next_check {
                    if let Some(event) = this.check_thresholds(packet.arrival) {
                        if ends_the_connection(&event) {
                            return this.fail(event);
                        }
                        this.pending = Some(Pending::Suspect(Box::new(event)));
                    }
                }
                Poll::Ready(Some(Ok(packet)))
            }
            Poll::Ready(Some(Err(error))) => {
                if !error.is_fatal() {
                    if let Some(own) = &mut this.own {
                        own.error();
                    }
                    return Poll::Ready(Some(Err(error)));
                }
                if let ConnectionError::Failed(event) = error {
                    // Judged below already: passed on as it is, not reported twice.
                    this.done = true;
                    return Poll::Ready(Some(Err(ConnectionError::Failed(event))));
                }
                let failure = error.into_failure(&this.stream_id());
                this.fail(failure)
            }
            Poll::Ready(None) => {
                this.done = true;
                if let Some(own) = &mut this.own {
                    own.end();
                }
                Poll::Ready(None)
            }
            Poll::Pending => match this.poll_timers(cx) {
                Some((event, true)) => this.silent(event),
                Some((event, false)) => this.judged(event),
                None => this.take_pending().unwrap_or(Poll::Pending),
            },
        }
    }
}

impl<C: Connection> Connection for Detected<C> {
    fn state(&self) -> ConnectionState {
        let mut state = self.inner.state();
        if let Some(own) = &self.own {
            own.fill(&mut state);
        }
        state
    }

    fn restore(&mut self, state: &ConnectionState) {
        self.inner.restore(state);
    }

    fn rtt(&self) -> Option<Duration> {
        self.inner.rtt()
    }

    fn health(&self) -> Option<HealthHandle> {
        Some(Arc::clone(&self.health))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_close(cx)
    }
}
