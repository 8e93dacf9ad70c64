//! The driver: one uninterrupted packet stream across reconnects.
//!
//! [`Reconnecting`] owns a stream's layer stack and target. It calls the stack to
//! connect, checks the new connection by waiting for its first packet, forwards packets,
//! and when the connection fails (the detector's verdict, a network error, a close) it
//! reports the failure and calls the stack again. Policy lives in the layers; the driver
//! only sequences, reports and stops.
//!
//! Events, for a connection that failed and came back at the second attempt:
//! `failure_detected` → `reconnection_started` → `reconnection_attempt` (1) →
//! `reconnection_attempt` (2) → `reconnection_succeeded`. Attempt events come from the
//! [`BackoffRetryLayer`](crate::backoff::BackoffRetryLayer) through
//! [`Events::attempt_hook`]; they are reported for the first connection too.

mod events;

pub use events::{
    EventCallback, EventType, Events, ReconnectionEvent, SourceSwitch, SwitchReason,
    DEFAULT_EVENT_CAPACITY,
};

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll, Waker};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower_service::Service;

use crate::backoff::{error::RetryError, Backoff, ExponentialBackoff};
use crate::connection::{Connection, ConnectionError, ConnectionState, Packet, StreamTarget};
use crate::connection::{FailureEvent, FailureReason, HealthHandle, Severity};
use crate::error::BoxError;

/// The error that ends a [`Reconnecting`] stream: the stack gave up.
#[derive(Debug)]
pub struct ReconnectError {
    stream_id: String,
    source: BoxError,
}

impl ReconnectError {
    /// The stream that gave up.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The error the stack gave up with (often a [`RetryError`]).
    pub fn error(&self) -> &BoxError {
        &self.source
    }
}

impl fmt::Display for ReconnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "stream {:?}: reconnection failed: {}",
            self.stream_id, self.source
        )
    }
}

impl std::error::Error for ReconnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Makes a fresh backoff: a template shared by many streams.
pub(crate) type BackoffFactory = Arc<dyn Fn() -> Box<dyn Backoff> + Send + Sync>;

enum State<F, C> {
    /// About to ask the stack for a connection (polling its readiness).
    Ready,
    /// Polling the stack's connect future.
    Connecting(Pin<Box<F>>),
    /// Connected; polling for the first packet against the first-packet deadline.
    Verifying { conn: C, deadline: Pin<Box<Sleep>> },
    /// Forwarding the connection's packets.
    Streaming(C),
    /// Make-before-break: the connection is suspected (silent, or degrading) but
    /// kept while its replacement is dialled.
    Racing(Box<Race<F, C>>),
    /// Waiting out a pause after a connection failed before its first packet.
    Pausing(Pin<Box<Sleep>>),
    /// Cancelled: polling the connection's close (its last state save) before ending.
    Closing(C),
    /// The stream has ended.
    Done,
}

impl<F, C> State<F, C> {
    fn name(&self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Connecting(_) => "connecting",
            Self::Verifying { .. } => "verifying",
            Self::Streaming(_) => "streaming",
            Self::Racing(_) => "racing",
            Self::Pausing(_) => "pausing",
            Self::Closing(_) => "closing",
            Self::Done => "done",
        }
    }
}

/// A suspected connection and its replacement, as far as it got.
struct Race<F, C> {
    old: C,
    next: Replacement<F, C>,
    /// Suspected of degrading (loss, latency, errors) rather than of silence: the old
    /// connection's packets are passed on but do not end the race; only the
    /// replacement's first packet does, or the old connection's end.
    degraded: bool,
}

/// How a race's replacement is going.
enum Replacement<F, C> {
    /// Not dialled yet (the stack is not ready).
    Ready,
    /// Being dialled (through the stack's retries).
    Connecting(Pin<Box<F>>),
    /// Connected; its first packet wins the race, unless the old connection's does.
    Verifying { conn: C, deadline: Pin<Box<Sleep>> },
    /// An earlier replacement failed before its first packet: waiting out the
    /// unverified backoff before the next dial.
    Pausing(Pin<Box<Sleep>>),
}

/// One stream's packets, across every reconnect: a [`Stream`] of
/// `Result<Packet, ReconnectError>` that ends with an error only when the stack gives
/// up, and ends cleanly when cancelled (or, with `retry_on_close(false)`, when the peer
/// closes).
///
/// ```
/// use std::time::Duration;
/// use futures_util::StreamExt;
/// use mirror_reconnect::prelude::*;
/// use mirror_reconnect::connection::{channel, ConnectionState, Packet, ChannelConnection};
/// use tower::{service_fn, ServiceBuilder};
///
/// # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
/// // A connector whose every connection sends three packets and hangs up.
/// let connector = service_fn(|target: Target| async move {
///     let (tx, conn) = channel(ConnectionState::new(target.stream_id, Protocol::InProcess), 8);
///     tokio::spawn(async move {
///         for i in 0..3u8 {
///             let _ = tx.send(Packet::new(vec![i], tokio::time::Instant::now())).await;
///         }
///     });
///     Ok::<ChannelConnection, std::io::Error>(conn)
/// });
/// let events = Events::new("cam1");
/// let stack = ServiceBuilder::new()
///     .layer(BackoffRetryLayer::new(ExponentialBackoff::default()).on_attempt(events.attempt_hook()))
///     .layer(FailureDetectLayer::default())
///     .layer(HealthLayer::new())
///     .service(connector);
/// let packets = Reconnecting::new(stack, Target::new("cam1", Protocol::InProcess)).events(events);
/// // Two connections' worth of packets, one stream.
/// let got: Vec<_> = packets.take(6).map(|p| p.unwrap().payload[0]).collect().await;
/// assert_eq!(got, [0, 1, 2, 0, 1, 2]);
/// # }
/// ```
#[must_use = "streams do nothing unless polled"]
pub struct Reconnecting<S, T>
where
    S: Service<T>,
{
    stack: S,
    target: T,
    events: Events,
    first_packet_timeout: Duration,
    retry_on_close: bool,
    max_unverified: u32,
    /// Made at the first connection that fails before its first packet (most
    /// streams never have one), from `unverified_template` (or the default).
    unverified_backoff: Option<Box<dyn Backoff>>,
    unverified_template: Option<BackoffFactory>,
    make_before_break: bool,
    /// Made on the first `cancel_token` or `stop_handle`: a stream nobody can stop
    /// carries no token.
    cancel: OnceLock<Cancel>,
    state: State<S::Future, S::Response>,
    /// Boxed: kept once, at the stop, and large.
    final_state: Option<Box<ConnectionState>>,
    /// Shared with the stop handles, made with the first.
    stopped: OnceLock<Arc<Mutex<Option<ConnectionState>>>>,
    health: Option<HealthHandle>,
    span: tracing::Span,
    reconnect_started: Option<Instant>,
    unverified: u32,
}

impl<S, T> fmt::Debug for Reconnecting<S, T>
where
    S: Service<T>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("stream_id", &self.events.stream_id())
            .field("state", &self.state.name())
            .field("first_packet_timeout", &self.first_packet_timeout)
            .field("retry_on_close", &self.retry_on_close)
            .finish_non_exhaustive()
    }
}

impl<S, T> Reconnecting<S, T>
where
    S: Service<T>,
    S::Response: Connection,
    S::Error: Into<BoxError>,
    T: StreamTarget,
{
    /// Drive `stack` to keep `target` connected. Nothing happens until it is polled.
    pub fn new(stack: S, target: T) -> Self {
        let stream_id = target.stream_id().to_owned();
        Self {
            span: tracing::info_span!("stream", stream_id = %stream_id),
            events: Events::new(stream_id),
            stack,
            target,
            first_packet_timeout: Duration::from_secs(10),
            retry_on_close: true,
            max_unverified: 5,
            unverified_backoff: None,
            unverified_template: None,
            make_before_break: false,
            cancel: OnceLock::new(),
            state: State::Ready,
            final_state: None,
            stopped: OnceLock::new(),
            health: None,
            reconnect_started: None,
            unverified: 0,
        }
    }

    /// Report on `events` (share it with the stack's
    /// [`BackoffRetryLayer::on_attempt`](crate::backoff::BackoffRetryLayer::on_attempt)).
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// Stop when `token` is cancelled: the stream ends, with `reconnection_aborted` if a
    /// reconnection was under way. A connection that is up is closed first
    /// ([`Connection::poll_close`]: with a [`StateRestoreLayer`] in the stack, its last
    /// state is saved), so when the stream has ended the program may release the
    /// stream or exit without losing its state; [`final_state`](Self::final_state)
    /// then says what that state was.
    ///
    /// [`StateRestoreLayer`]: crate::restore::StateRestoreLayer
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = OnceLock::from(Cancel::new(token));
        self
    }

    /// Count health into `handle`: the handle of the stack's
    /// [`HealthLayer`](crate::health::HealthLayer), so that
    /// [`health_handle`](Self::health_handle) reads it before the first connection
    /// is up and between connections. The [stack builder](crate::stack) sets it.
    pub fn with_health_handle(mut self, handle: HealthHandle) -> Self {
        self.health = Some(handle);
        self
    }

    /// A handle that stops this stream from anywhere (cancelling its token) and, once
    /// it has stopped, says what state it stopped with.
    pub fn stop_handle(&self) -> StopHandle {
        StopHandle {
            token: self
                .cancel
                .get_or_init(|| Cancel::new(CancellationToken::new()))
                .token
                .clone(),
            stopped: Arc::clone(self.stopped.get_or_init(Arc::default)),
        }
    }

    /// How long a new connection has to deliver its first packet before it counts as
    /// failed. Default 10 s.
    pub fn first_packet_timeout(mut self, timeout: Duration) -> Self {
        self.first_packet_timeout = timeout;
        self
    }

    /// Whether a connection the peer closed is reconnected (default) or ends the stream.
    pub fn retry_on_close(mut self, retry: bool) -> Self {
        self.retry_on_close = retry;
        self
    }

    /// Make-before-break (default off; the [stack builder](crate::stack) turns it on
    /// for inputs it dials): when the failure detector only suspects the connection
    /// ([`ConnectionError::Suspected`]: media silence, or loss, latency or errors over
    /// a limit, on a connection still open), keep it while the replacement is dialled.
    /// After a silence, whichever delivers first is kept: a connection that comes back
    /// (a latency spike, a stall) then loses nothing; one that does not is replaced as
    /// fast as before. A degrading connection's packets are passed on until the
    /// replacement delivers; if the stack gives up on the replacement, the degrading
    /// connection is kept (event `failure_cleared`).
    /// Only for targets whose replacement can be dialled while the old connection is
    /// open (callers, rendezvous); not for inputs bound to a port (listeners, RTP,
    /// UDP).
    pub fn make_before_break(mut self, on: bool) -> Self {
        self.make_before_break = on;
        self
    }

    /// Connections in a row that may fail before their first packet before the stream
    /// gives up (default 5). Between them the driver waits by
    /// [`unverified_backoff`](Self::unverified_backoff), so a peer that accepts and
    /// hangs up at once is not hammered.
    pub fn max_unverified(mut self, max: u32) -> Self {
        self.max_unverified = max;
        self
    }

    /// The waits between connections that failed before their first packet
    /// (default: 1 s doubling to 30 s, with jitter).
    pub fn unverified_backoff(mut self, backoff: impl Backoff) -> Self {
        self.unverified_backoff = Some(Box::new(backoff));
        self.unverified_template = None;
        self
    }

    /// The same, made by `make` only when first needed: one template for the
    /// streams of a builder, and nothing allocated for a stream that never needs it.
    pub(crate) fn unverified_backoff_from(mut self, make: BackoffFactory) -> Self {
        self.unverified_backoff = None;
        self.unverified_template = Some(make);
        self
    }

    /// The stream's event bus.
    pub fn event_bus(&self) -> &Events {
        &self.events
    }

    /// The target as configured.
    pub fn target(&self) -> &T {
        &self.target
    }

    /// The current connection, if one is up.
    fn connection(&self) -> Option<&S::Response> {
        match &self.state {
            State::Verifying { conn, .. } | State::Streaming(conn) => Some(conn),
            State::Racing(race) => Some(&race.old),
            _ => None,
        }
    }

    /// The current connection's health, when a health layer counts it.
    pub fn health(&self) -> Option<HealthHandle> {
        self.connection().and_then(Connection::health)
    }

    /// The stream's health handle, for a program to read at any time (before the
    /// first packet too): the one set with
    /// [`with_health_handle`](Self::with_health_handle),
    /// else the current connection's.
    pub fn health_handle(&self) -> Option<HealthHandle> {
        self.health.clone().or_else(|| self.health())
    }

    /// The current connection's state, if one is up.
    pub fn connection_state(&self) -> Option<ConnectionState> {
        self.connection().map(Connection::state)
    }

    /// The state the last connection ended with, once the stream has stopped
    /// (cancelled, or closed by the peer under `retry_on_close(false)`): what a
    /// [`StateRestoreLayer`](crate::restore::StateRestoreLayer) saved last, for a
    /// program that keeps it elsewhere too. `None` while the stream runs, and when no
    /// connection was up at the stop.
    pub fn final_state(&self) -> Option<&ConnectionState> {
        self.final_state.as_deref()
    }

    /// Whether a connection is up and has delivered a packet.
    pub fn is_streaming(&self) -> bool {
        matches!(self.state, State::Streaming(_))
    }

    fn emit(&self, event_type: EventType, attempt: u32) {
        self.events.emit(self.events.event(event_type, attempt));
    }

    fn reconnection_elapsed(&self) -> Option<Duration> {
        self.reconnect_started.map(|t| t.elapsed())
    }

    /// A connection ended or failed; `verified` when it had delivered packets.
    fn connection_failed(
        &mut self,
        failure: FailureEvent,
        verified: bool,
    ) -> Option<ReconnectError> {
        tracing::debug!(reason = %failure.reason, details = %failure.details, verified, "connection failed");
        self.enter(State::Done);
        self.report_failure(&failure);
        if verified {
            self.unverified = 0;
            self.reset_unverified_backoff();
            self.enter(State::Ready);
            return None;
        }
        self.unverified += 1;
        if self.unverified > self.max_unverified {
            let error = format!(
                "{} connections in a row failed before their first packet; last: {}: {}",
                self.unverified, failure.reason, failure.details
            );
            return Some(self.give_up(error.into()));
        }
        let delay = self.next_unverified_delay();
        tracing::debug!(?delay, "connection failed before its first packet; pausing");
        self.enter(State::Pausing(Box::pin(tokio::time::sleep(delay))));
        None
    }

    /// Say that the connection failed (or is suspected), and that a reconnection
    /// begins unless one is under way.
    fn report_failure(&mut self, failure: &FailureEvent) {
        self.events.set_reason(Some(failure.reason));
        let mut event = self.events.event(EventType::FailureDetected, 0);
        event.error = Some(failure.details.clone());
        self.events.emit(event);
        if self.reconnect_started.is_none() {
            self.reconnect_started = Some(Instant::now());
            self.events.reset_attempts();
            self.emit(EventType::ReconnectionStarted, 0);
        }
    }

    fn give_up(&mut self, error: BoxError) -> ReconnectError {
        tracing::debug!(%error, "giving up");
        self.enter(State::Done);
        let attempts = error
            .downcast_ref::<RetryError>()
            .map_or_else(|| self.events.last_attempt(), RetryError::attempts);
        let mut event = self.events.event(EventType::ReconnectionFailed, attempts);
        event.error = Some(error.to_string());
        event.duration = self.reconnection_elapsed();
        self.events.emit(event);
        ReconnectError {
            stream_id: self.events.stream_id().to_owned(),
            source: error,
        }
    }

    /// The wait after another connection failed before its first packet (the
    /// backoff made now if this is the stream's first).
    fn next_unverified_delay(&mut self) -> Duration {
        let template = &self.unverified_template;
        self.unverified_backoff
            .get_or_insert_with(|| match template {
                Some(make) => make(),
                None => Box::new(ExponentialBackoff::default()),
            })
            .next_delay()
    }

    /// A connection delivered: the next failure before a first packet waits from the
    /// start of the backoff.
    fn reset_unverified_backoff(&mut self) {
        if let Some(backoff) = &mut self.unverified_backoff {
            backoff.reset();
        }
    }

    fn verified(&mut self) {
        self.unverified = 0;
        self.reset_unverified_backoff();
        if let Some(started) = self.reconnect_started.take() {
            let mut event = self.events.event(
                EventType::ReconnectionSucceeded,
                self.events.last_attempt().max(1),
            );
            event.duration = Some(started.elapsed());
            self.events.emit(event);
        }
        self.events.set_reason(None);
    }

    fn failure_of(&self, error: ConnectionError) -> FailureEvent {
        error.into_failure(self.events.stream_id())
    }

    fn closed(&self) -> FailureEvent {
        FailureEvent::new(
            FailureReason::NetworkError,
            Severity::Critical,
            self.events.stream_id(),
            "connection closed by peer",
        )
    }

    /// Whether the stream was cancelled. With `register`, also arrange to be woken
    /// when it is. Registering takes the token's lock, so it is done only when the
    /// stream goes idle with a waker it has not registered yet: a stream that goes
    /// idle after every packet, always woken by the same task, pays one atomic load.
    fn cancelled(&mut self, cx: &mut Context<'_>, register: bool) -> bool {
        let Some(cancel) = self.cancel.get_mut() else {
            return false;
        };
        if cancel.token.is_cancelled() {
            return true;
        }
        if !register
            || cancel
                .registered
                .as_ref()
                .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            return false;
        }
        cancel.registered = Some(cx.waker().clone());
        cancel.wait.as_mut().poll(cx).is_ready()
    }

    /// Move to `next`, saying so in the trace.
    fn enter(&mut self, next: State<S::Future, S::Response>) {
        tracing::trace!(from = self.state.name(), to = next.name(), "driver state");
        self.state = next;
    }

    /// Cancelled: report an abort if a reconnection was under way, and close the
    /// connection if one is up.
    fn stop(&mut self) {
        let reconnecting = !matches!(self.state, State::Streaming(_) | State::Done)
            && self.reconnect_started.is_some();
        if reconnecting {
            let mut event = self
                .events
                .event(EventType::ReconnectionAborted, self.events.last_attempt());
            event.duration = self.reconnection_elapsed();
            self.events.emit(event);
        }
        let state = std::mem::replace(&mut self.state, State::Done);
        tracing::debug!(from = state.name(), "cancelled; stopping");
        let conn = match state {
            State::Verifying { conn, .. } | State::Streaming(conn) => Some(conn),
            State::Racing(race) => Some(race.old),
            _ => None,
        };
        if let Some(conn) = conn {
            self.keep_final_state(conn.state());
            self.enter(State::Closing(conn));
        }
    }

    fn keep_final_state(&mut self, state: ConnectionState) {
        if let Some(stopped) = self.stopped.get() {
            *stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(state.clone());
        }
        self.final_state = Some(Box::new(state));
    }

    /// The peer closed `conn` and closes are not retried: the stream ends with it.
    fn closed_for_good(&mut self) {
        tracing::trace!(
            from = self.state.name(),
            to = "done",
            "driver state: closed for good"
        );
        let state = std::mem::replace(&mut self.state, State::Done);
        match state {
            State::Verifying { conn, .. } | State::Streaming(conn) => {
                self.keep_final_state(conn.state());
            }
            State::Racing(race) => self.keep_final_state(race.old.state()),
            _ => {}
        }
    }
}

/// The cancellation token, its wait, and the waker that wait last registered.
struct Cancel {
    token: CancellationToken,
    wait: Pin<Box<WaitForCancellationFutureOwned>>,
    registered: Option<Waker>,
}

impl Cancel {
    fn new(token: CancellationToken) -> Self {
        Self {
            wait: Box::pin(token.clone().cancelled_owned()),
            token,
            registered: None,
        }
    }
}

/// Stops a [`Reconnecting`] stream from anywhere, from
/// [`Reconnecting::stop_handle`]: the stream closes its connection (the restore
/// layer's last save included) and ends, and the handle then says what state it
/// stopped with.
#[derive(Debug, Clone)]
pub struct StopHandle {
    token: CancellationToken,
    stopped: Arc<Mutex<Option<ConnectionState>>>,
}

impl StopHandle {
    /// Ask the stream to stop. It stops when next polled.
    pub fn stop(&self) {
        self.token.cancel();
    }

    /// Whether a stop was asked for.
    pub fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }

    /// The state the stream stopped with, once it has ended with a connection up
    /// (see [`Reconnecting::final_state`]).
    pub fn final_state(&self) -> Option<ConnectionState> {
        self.stopped
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<S, T> Stream for Reconnecting<S, T>
where
    S: Service<T> + Unpin,
    S::Response: Connection,
    S::Error: Into<BoxError>,
    T: StreamTarget + Unpin,
{
    type Item = Result<Packet, ReconnectError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        let span = this.span.clone();
        let _entered = span.enter();
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Closing(conn) => {
                    ready!(conn.poll_close(cx));
                    tracing::debug!("closed");
                    this.enter(State::Done);
                    return Poll::Ready(None);
                }
                _ => {}
            }
            if this.cancelled(cx, false) {
                this.stop();
                continue;
            }
            match this.poll_stream(cx) {
                Poll::Pending if this.cancelled(cx, true) => this.stop(),
                other => return other,
            }
        }
    }
}

impl<S, T> Reconnecting<S, T>
where
    S: Service<T> + Unpin,
    S::Response: Connection,
    S::Error: Into<BoxError>,
    T: StreamTarget + Unpin,
{
    /// Drive the state machine until it has an item for the caller or must wait.
    fn poll_stream(&mut self, cx: &mut Context<'_>) -> Poll<Option<Item>> {
        loop {
            let step = match self.state {
                State::Done | State::Closing(_) => return Poll::Ready(None),
                State::Ready => ready!(self.poll_ready_state(cx)),
                State::Connecting(_) => ready!(self.poll_connecting(cx)),
                State::Pausing(_) => ready!(self.poll_pausing(cx)),
                State::Verifying { .. } => ready!(self.poll_verifying(cx)),
                State::Streaming(_) => ready!(self.poll_streaming(cx)),
                State::Racing(_) => ready!(self.poll_racing(cx)),
            };
            if let Step::Yield(item) = step {
                return Poll::Ready(item);
            }
        }
    }

    /// Ready: wait for the stack to take a connect, then start it.
    fn poll_ready_state(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        if let Err(error) = ready!(self.stack.poll_ready(cx)) {
            return Poll::Ready(Step::Yield(Some(Err(self.give_up(error.into())))));
        }
        let future = self.stack.call(self.target.clone());
        self.enter(State::Connecting(Box::pin(future)));
        Poll::Ready(Step::Next)
    }

    /// Connecting: the stack's connect (its retries included); its error is the end.
    fn poll_connecting(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let State::Connecting(future) = &mut self.state else {
            return Poll::Ready(Step::Next);
        };
        match ready!(future.as_mut().poll(cx)) {
            Ok(conn) => {
                let deadline = Box::pin(tokio::time::sleep(self.first_packet_timeout));
                self.enter(State::Verifying { conn, deadline });
                Poll::Ready(Step::Next)
            }
            Err(error) => Poll::Ready(Step::Yield(Some(Err(self.give_up(error.into()))))),
        }
    }

    /// Pausing: the wait after a connection that failed before its first packet.
    fn poll_pausing(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let State::Pausing(sleep) = &mut self.state else {
            return Poll::Ready(Step::Next);
        };
        ready!(sleep.as_mut().poll(cx));
        self.enter(State::Ready);
        Poll::Ready(Step::Next)
    }

    /// Verifying: the new connection's first packet, before its deadline.
    fn poll_verifying(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let State::Verifying { conn, deadline } = &mut self.state else {
            return Poll::Ready(Step::Next);
        };
        match Pin::new(conn).poll_next(cx) {
            Poll::Ready(item) => Poll::Ready(self.on_item(item, false)),
            Poll::Pending => {
                ready!(deadline.as_mut().poll(cx));
                let failure = FailureEvent::new(
                    FailureReason::Timeout,
                    Severity::Critical,
                    self.events.stream_id(),
                    format!(
                        "no packet within {:?} of connecting",
                        self.first_packet_timeout
                    ),
                );
                Poll::Ready(self.failed(failure, false))
            }
        }
    }

    /// Streaming: the connection's packets, until it fails or ends.
    fn poll_streaming(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let State::Streaming(conn) = &mut self.state else {
            return Poll::Ready(Step::Next);
        };
        let item = ready!(Pin::new(conn).poll_next(cx));
        Poll::Ready(self.on_item(item, true))
    }

    /// What the current connection's stream gave; `verified` once it has delivered
    /// a packet.
    fn on_item(&mut self, item: Option<Result<Packet, ConnectionError>>, verified: bool) -> Step {
        match item {
            Some(Ok(packet)) => {
                if !verified {
                    if let State::Verifying { conn, .. } =
                        std::mem::replace(&mut self.state, State::Done)
                    {
                        self.enter(State::Streaming(conn));
                    }
                    self.verified();
                }
                Step::Yield(Some(Ok(packet)))
            }
            Some(Err(ConnectionError::Suspected(failure))) => {
                if verified && self.make_before_break {
                    self.suspected(failure);
                    return Step::Next;
                }
                self.failed(failure, verified)
            }
            // A bad packet, counted below: the stream goes on.
            Some(Err(error)) if !error.is_fatal() => Step::Next,
            Some(Err(error)) => {
                let failure = self.failure_of(error);
                self.failed(failure, verified)
            }
            None if !self.retry_on_close => {
                self.closed_for_good();
                Step::Yield(None)
            }
            None => {
                let failure = self.closed();
                self.failed(failure, verified)
            }
        }
    }

    /// The streaming connection is suspected: report it as a failure, start a
    /// reconnection, and race the old connection against its replacement.
    fn suspected(&mut self, failure: FailureEvent) {
        let degraded = failure.reason != FailureReason::Timeout;
        tracing::debug!(reason = %failure.reason, details = %failure.details, degraded, "connection suspected; dialling its replacement");
        self.report_failure(&failure);
        if let State::Streaming(old) = std::mem::replace(&mut self.state, State::Done) {
            self.enter(State::Racing(Box::new(Race {
                old,
                next: Replacement::Ready,
                degraded,
            })));
        }
    }

    /// The race is over and the old connection stays: the replacement goes.
    fn keep_old(&mut self) {
        if let State::Racing(race) = std::mem::replace(&mut self.state, State::Done) {
            self.enter(State::Streaming(race.old));
        }
        self.reconnect_started = None;
        self.events.set_reason(None);
        self.emit(EventType::FailureCleared, self.events.last_attempt());
    }

    /// Racing: the old connection first (what it still delivers is not lost, and
    /// after a silence its first packet ends the race), then the replacement.
    fn poll_racing(&mut self, cx: &mut Context<'_>) -> Poll<Step> {
        let State::Racing(race) = &mut self.state else {
            return Poll::Ready(Step::Next);
        };
        match Pin::new(&mut race.old).poll_next(cx) {
            Poll::Ready(Some(Ok(packet))) => {
                // Back from a silence: the old connection stays. Degrading: its
                // packets are passed on while the replacement is dialled.
                if !race.degraded {
                    self.keep_old();
                }
                return Poll::Ready(Step::Yield(Some(Ok(packet))));
            }
            Poll::Ready(Some(Err(ConnectionError::Cleared))) if race.degraded => {
                // A good check interval: no longer degrading, so it stays.
                self.keep_old();
                return Poll::Ready(Step::Next);
            }
            Poll::Ready(Some(Err(error))) if !error.is_fatal() => {
                // Still suspected, or a bad packet: the race goes on.
                return Poll::Ready(Step::Next);
            }
            Poll::Ready(_) => {
                // The old connection is gone: the replacement carries on alone.
                tracing::debug!("suspected connection ended during the race");
                if let State::Racing(race) = std::mem::replace(&mut self.state, State::Done) {
                    let next = match race.next {
                        Replacement::Ready => State::Ready,
                        Replacement::Connecting(future) => State::Connecting(future),
                        Replacement::Verifying { conn, deadline } => {
                            State::Verifying { conn, deadline }
                        }
                        Replacement::Pausing(sleep) => State::Pausing(sleep),
                    };
                    self.enter(next);
                }
                return Poll::Ready(Step::Next);
            }
            Poll::Pending => {}
        }
        let degraded = race.degraded;
        match &mut race.next {
            Replacement::Ready => {
                if let Err(error) = ready!(self.stack.poll_ready(cx)) {
                    return Poll::Ready(self.replacement_gave_up(error.into(), degraded));
                }
                let future = Box::pin(self.stack.call(self.target.clone()));
                race.next = Replacement::Connecting(future);
                Poll::Ready(Step::Next)
            }
            Replacement::Pausing(sleep) => {
                ready!(sleep.as_mut().poll(cx));
                race.next = Replacement::Ready;
                Poll::Ready(Step::Next)
            }
            Replacement::Connecting(future) => match ready!(future.as_mut().poll(cx)) {
                Ok(conn) => {
                    let deadline = Box::pin(tokio::time::sleep(self.first_packet_timeout));
                    race.next = Replacement::Verifying { conn, deadline };
                    Poll::Ready(Step::Next)
                }
                Err(error) => Poll::Ready(self.replacement_gave_up(error.into(), degraded)),
            },
            Replacement::Verifying { conn, deadline } => {
                let item = match Pin::new(conn).poll_next(cx) {
                    Poll::Ready(item) => item,
                    Poll::Pending => {
                        ready!(deadline.as_mut().poll(cx));
                        tracing::debug!("replacement delivered nothing in time");
                        return Poll::Ready(self.replacement_unverified(degraded));
                    }
                };
                match item {
                    Some(Ok(packet)) => {
                        // The replacement wins: the old connection goes.
                        if let State::Racing(race) = std::mem::replace(&mut self.state, State::Done)
                        {
                            if let Replacement::Verifying { conn, .. } = race.next {
                                self.enter(State::Streaming(conn));
                            }
                        }
                        self.verified();
                        Poll::Ready(Step::Yield(Some(Ok(packet))))
                    }
                    Some(Err(error)) if !error.is_fatal() => Poll::Ready(Step::Next),
                    _ => {
                        tracing::debug!("replacement ended before its first packet");
                        Poll::Ready(self.replacement_unverified(degraded))
                    }
                }
            }
        }
    }

    /// A race's replacement failed before its first packet: the next one waits out
    /// the unverified backoff, as outside a race, so a peer that accepts and hangs up
    /// at once is not dialled in a tight loop. After `max_unverified` of them a
    /// silent connection's stream gives up; a degrading one is kept.
    fn replacement_unverified(&mut self, degraded: bool) -> Step {
        self.unverified += 1;
        if self.unverified > self.max_unverified {
            let error = format!(
                "{} replacements in a row failed before their first packet",
                self.unverified
            );
            return self.replacement_gave_up(error.into(), degraded);
        }
        let delay = self.next_unverified_delay();
        tracing::debug!(
            ?delay,
            degraded,
            "pausing before dialling the replacement again"
        );
        if let State::Racing(race) = &mut self.state {
            race.next = Replacement::Pausing(Box::pin(tokio::time::sleep(delay)));
        }
        Step::Next
    }

    /// The stack gave up on a race's replacement. A silent connection's stream gives
    /// up with it; a degrading one still delivers, so it is kept (and judged again by
    /// its next check).
    fn replacement_gave_up(&mut self, error: BoxError, degraded: bool) -> Step {
        if degraded {
            tracing::warn!(%error, "no replacement for the degrading connection; keeping it");
            self.unverified = 0;
            self.reset_unverified_backoff();
            self.keep_old();
            return Step::Next;
        }
        Step::Yield(Some(Err(self.give_up(error))))
    }

    fn failed(&mut self, failure: FailureEvent, verified: bool) -> Step {
        match self.connection_failed(failure, verified) {
            Some(gave_up) => Step::Yield(Some(Err(gave_up))),
            None => Step::Next,
        }
    }
}

/// An item of the driver's stream.
type Item = Result<Packet, ReconnectError>;

/// What one step of the state machine says.
enum Step {
    /// The state changed (or stays, after a bad packet): poll again.
    Next,
    /// Hand this to the caller.
    Yield(Option<Item>),
}
