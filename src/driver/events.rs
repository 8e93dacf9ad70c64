use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::backoff::{Attempt, Probed, RetryReport};
use crate::connection::metric_names as names;
use crate::connection::FailureReason;
use crate::connection::ProbeOutcome;

/// What happened to a stream.
///
/// More kinds may come in later versions: match with a `_` arm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// The connection was judged failed (the event carries the reason).
    FailureDetected,
    /// A reconnection began.
    ReconnectionStarted,
    /// A connect attempt is about to be made (every attempt, the first connection's too).
    ReconnectionAttempt,
    /// A new connection delivered its first packet.
    ReconnectionSucceeded,
    /// The stack gave up; the stream ends with the error.
    ReconnectionFailed,
    /// Cancelled while reconnecting; the stream ends.
    ReconnectionAborted,
    /// Waiting out a backoff delay, the stack probes the server (the first probe of the
    /// wait is done; `attempt` is the attempts made so far).
    Probing,
    /// A probe was answered: the next attempt starts at once.
    ProbeAnswered,
    /// The connection before stayed up at least `stable_after`, so this reconnection's
    /// backoff starts afresh (`duration` is how long it stayed up).
    BackoffReset,
    /// Make-before-break: a connection suspected of media silence delivered again
    /// before its replacement did, or no replacement could be had for a degrading
    /// one. It is kept, the replacement dropped, and the reconnection that the
    /// suspicion started is over.
    FailureCleared,
    /// A [`Failover`](crate::failover::Failover) switched source (the event carries the
    /// [`SourceSwitch`](crate::failover::SourceSwitch)).
    SourceSwitched,
}

impl EventType {
    /// The snake_case name used in JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::FailureDetected => "failure_detected",
            Self::ReconnectionStarted => "reconnection_started",
            Self::ReconnectionAttempt => "reconnection_attempt",
            Self::ReconnectionSucceeded => "reconnection_succeeded",
            Self::ReconnectionFailed => "reconnection_failed",
            Self::ReconnectionAborted => "reconnection_aborted",
            Self::Probing => "probing",
            Self::ProbeAnswered => "probe_answered",
            Self::BackoffReset => "backoff_reset",
            Self::FailureCleared => "failure_cleared",
            Self::SourceSwitched => "source_switched",
        }
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why the stream switched source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SwitchReason {
    /// The active source stopped delivering (a failure was detected, or its connection
    /// ended), or did not deliver within the startup wait.
    Failed,
    /// The active source's stack gave up (its stream ended).
    GaveUp,
    /// A source higher in the list delivered without a failure for
    /// `switch_back_after`.
    SwitchBack,
}

impl SwitchReason {
    /// The snake_case name used in JSON and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Failed => "failed",
            Self::GaveUp => "gave_up",
            Self::SwitchBack => "switch_back",
        }
    }
}

impl fmt::Display for SwitchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A switch between sources, as carried by a `source_switched` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSwitch {
    /// The source that was active.
    pub from: String,
    /// The source that is active now.
    pub to: String,
    /// Why.
    pub reason: SwitchReason,
}

/// One event of a stream's life, as delivered on the broadcast channel and to callbacks.
///
/// Serializes to one JSON object: `type`, `stream_id`, `timestamp` (RFC 3339),
/// `attempt`, `error`, `duration` (seconds), and when known `reason` and `delay`
/// (seconds waited before an attempt), and `switch` (`from`, `to`, `reason`) for
/// `source_switched`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconnectionEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub event_type: EventType,
    /// The stream it happened to.
    pub stream_id: String,
    /// When.
    #[serde(with = "humantime_serde")]
    pub timestamp: SystemTime,
    /// The attempt number within the current reconnection (0 before the first attempt).
    pub attempt: u32,
    /// The error, for failures.
    pub error: Option<String>,
    /// How long the reconnection took, for `reconnection_succeeded`, `_failed`, `_aborted`;
    /// how long the connection before stayed up, for `backoff_reset`.
    #[serde(with = "crate::serde_secs::option")]
    pub duration: Option<Duration>,
    /// Why the connection failed, for `failure_detected` and the reconnection it starts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<FailureReason>,
    /// How long was waited before this attempt, for `reconnection_attempt`.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "crate::serde_secs::option"
    )]
    pub delay: Option<Duration>,
    /// Which source was switched to which and why, for `source_switched`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SourceSwitch>,
}

/// A callback told of every event of a stream.
pub type EventCallback = Arc<dyn Fn(&ReconnectionEvent) + Send + Sync>;

struct Inner {
    stream_id: String,
    /// Made on the first `subscribe`: its slots are allocated up front, and most
    /// streams of a large process never have a subscriber.
    tx: OnceLock<broadcast::Sender<ReconnectionEvent>>,
    callbacks: Mutex<Vec<EventCallback>>,
    attempt: AtomicU32,
    reason: Mutex<Option<FailureReason>>,
}

/// A stream's event bus: a broadcast channel plus callbacks, and the metrics that
/// follow from the events.
///
/// Clones share the bus. Give one to [`BackoffRetryLayer::on_attempt`] (through
/// [`attempt_hook`](Self::attempt_hook)) and to the driver, and every attempt is an
/// event too.
///
/// [`BackoffRetryLayer::on_attempt`]: crate::backoff::BackoffRetryLayer::on_attempt
#[derive(Clone)]
pub struct Events {
    inner: Arc<Inner>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("stream_id", &self.inner.stream_id)
            .field(
                "subscribers",
                &self
                    .inner
                    .tx
                    .get()
                    .map_or(0, broadcast::Sender::receiver_count),
            )
            .finish_non_exhaustive()
    }
}

/// Events kept for a slow subscriber before it starts missing the oldest, unless the
/// first subscription says otherwise ([`Events::subscribe_with_capacity`]).
pub const DEFAULT_EVENT_CAPACITY: usize = 256;

impl Events {
    /// A bus for `stream_id`.
    pub fn new(stream_id: impl Into<String>) -> Self {
        Self {
            inner: Arc::new(Inner {
                stream_id: stream_id.into(),
                tx: OnceLock::new(),
                callbacks: Mutex::default(),
                attempt: AtomicU32::new(0),
                reason: Mutex::default(),
            }),
        }
    }

    /// The stream this bus is for.
    pub fn stream_id(&self) -> &str {
        &self.inner.stream_id
    }

    /// Receive every event from now on. A subscriber that falls more than
    /// [`DEFAULT_EVENT_CAPACITY`] events behind misses the oldest
    /// ([`RecvError::Lagged`](tokio::sync::broadcast::error::RecvError::Lagged) says
    /// how many): a slow subscriber never holds the stream up nor grows its memory.
    pub fn subscribe(&self) -> broadcast::Receiver<ReconnectionEvent> {
        self.subscribe_with_capacity(DEFAULT_EVENT_CAPACITY)
    }

    /// [`subscribe`](Self::subscribe), keeping up to `capacity` events (at least 1)
    /// for a slow subscriber. The bus's first subscription sets the capacity that
    /// every subscriber shares; later ones take it as it is.
    ///
    /// ```
    /// use mirror_reconnect::driver::Events;
    ///
    /// let events = Events::new("cam1");
    /// let mut rx = events.subscribe_with_capacity(16);
    /// assert!(rx.try_recv().is_err(), "nothing yet");
    /// ```
    pub fn subscribe_with_capacity(
        &self,
        capacity: usize,
    ) -> broadcast::Receiver<ReconnectionEvent> {
        self.inner
            .tx
            .get_or_init(|| broadcast::channel(capacity.max(1)).0)
            .subscribe()
    }

    /// Call `callback` for every event from now on. Callbacks run inline on the
    /// stream's task: keep them short.
    pub fn on_event<F>(&self, callback: F)
    where
        F: Fn(&ReconnectionEvent) + Send + Sync + 'static,
    {
        self.callbacks().push(Arc::new(callback));
    }

    fn callbacks(&self) -> std::sync::MutexGuard<'_, Vec<EventCallback>> {
        self.inner.callbacks()
    }

    pub(crate) fn set_reason(&self, reason: Option<FailureReason>) {
        *self
            .inner
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = reason;
    }

    /// The number of the last attempt reported through [`attempt_hook`](Self::attempt_hook).
    pub fn last_attempt(&self) -> u32 {
        self.inner.attempt.load(Ordering::Relaxed)
    }

    pub(crate) fn reset_attempts(&self) {
        self.inner.attempt.store(0, Ordering::Relaxed);
    }

    /// A callback for [`BackoffRetryLayer::on_attempt`] that turns each attempt into a
    /// `reconnection_attempt` event.
    ///
    /// [`BackoffRetryLayer::on_attempt`]: crate::backoff::BackoffRetryLayer::on_attempt
    pub fn attempt_hook(&self) -> impl Fn(&Attempt) + Send + Sync + 'static {
        let events = self.clone();
        move |attempt: &Attempt| events.attempted(attempt)
    }

    /// A callback for [`BackoffRetryLayer::on_probe`] that counts every probe
    /// (`mirror_reconnect_probes_total`) and makes the first probe of each wait a
    /// `probing` event and an answered probe a `probe_answered` event.
    ///
    /// [`BackoffRetryLayer::on_probe`]: crate::backoff::BackoffRetryLayer::on_probe
    pub fn probe_hook(&self) -> impl Fn(&Probed) + Send + Sync + 'static {
        let events = self.clone();
        move |probed: &Probed| events.probed(probed)
    }

    /// A callback for [`BackoffRetryLayer::on_backoff_reset`] that makes each reset a
    /// `backoff_reset` event.
    ///
    /// [`BackoffRetryLayer::on_backoff_reset`]: crate::backoff::BackoffRetryLayer::on_backoff_reset
    pub fn backoff_reset_hook(&self) -> impl Fn(Duration) + Send + Sync + 'static {
        let events = self.clone();
        move |up_for: Duration| events.backoff_reset(up_for)
    }

    /// A new event of `event_type` for this stream, stamped now, carrying the current
    /// failure reason.
    pub(crate) fn event(&self, event_type: EventType, attempt: u32) -> ReconnectionEvent {
        self.inner.event(event_type, attempt)
    }

    /// Deliver `event`: metrics, log, callbacks, then subscribers.
    pub(crate) fn emit(&self, event: ReconnectionEvent) {
        self.inner.emit(event);
    }

    /// This bus as the retry layer's report: no allocation of its own.
    pub(crate) fn reporter(&self) -> Arc<dyn RetryReport> {
        Arc::clone(&self.inner) as Arc<dyn RetryReport>
    }
}

impl Inner {
    fn callbacks(&self) -> std::sync::MutexGuard<'_, Vec<EventCallback>> {
        self.callbacks
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reason(&self) -> Option<FailureReason> {
        *self
            .reason
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new event of `event_type` for this stream, stamped now, carrying the current
    /// failure reason.
    pub(crate) fn event(&self, event_type: EventType, attempt: u32) -> ReconnectionEvent {
        ReconnectionEvent {
            event_type,
            stream_id: self.stream_id.clone(),
            timestamp: SystemTime::now(),
            attempt,
            error: None,
            duration: None,
            reason: self.reason(),
            delay: None,
            switch: None,
        }
    }

    /// Deliver `event`: metrics, log, callbacks, then subscribers.
    pub(crate) fn emit(&self, event: ReconnectionEvent) {
        record_metrics(&event);
        tracing::info!(
            stream_id = %event.stream_id,
            event = %event.event_type,
            attempt = event.attempt,
            reason = event.reason.map(FailureReason::as_str),
            error = event.error.as_deref(),
            "stream event"
        );
        let callbacks = self.callbacks().clone();
        for callback in &callbacks {
            callback(&event);
        }
        // No subscriber is not an error.
        if let Some(tx) = self.tx.get() {
            let _ = tx.send(event);
        }
    }
}

fn record_metrics(event: &ReconnectionEvent) {
    let stream_id = event.stream_id.clone();
    let reason = event.reason.map_or("none", FailureReason::as_str);
    match event.event_type {
        EventType::FailureDetected => {
            metrics::counter!(names::FAILURE_DETECTIONS, "stream_id" => stream_id, "reason" => reason)
                .increment(1);
        }
        EventType::ReconnectionAttempt => {
            metrics::counter!(names::RECONNECTION_ATTEMPTS, "stream_id" => stream_id, "reason" => reason)
                .increment(1);
        }
        EventType::ReconnectionSucceeded => {
            metrics::counter!(names::RECONNECTION_SUCCESSES, "stream_id" => stream_id.clone())
                .increment(1);
            if let Some(duration) = event.duration {
                metrics::histogram!(names::RECONNECTION_DURATION, "stream_id" => stream_id)
                    .record(duration.as_secs_f64());
            }
        }
        EventType::ReconnectionFailed => {
            metrics::counter!(names::RECONNECTION_FAILURES, "stream_id" => stream_id).increment(1);
        }
        EventType::BackoffReset => {
            metrics::counter!(names::BACKOFF_RESETS, "stream_id" => stream_id).increment(1);
        }
        EventType::ReconnectionStarted
        | EventType::ReconnectionAborted
        | EventType::Probing
        | EventType::ProbeAnswered
        | EventType::FailureCleared
        | EventType::SourceSwitched => {}
    }
}

/// What [`Events::attempt_hook`], [`Events::probe_hook`] and
/// [`Events::backoff_reset_hook`] do, for a retry layer made by the crate to call
/// without three callbacks to allocate per stream: the bus's own shared part is the
/// report, so that a stream's retry layer holds no allocation of its own.
impl RetryReport for Inner {
    /// What [`Events::attempt_hook`] does.
    fn attempted(&self, attempt: &Attempt) {
        self.attempt.store(attempt.number, Ordering::Relaxed);
        let mut event = self.event(EventType::ReconnectionAttempt, attempt.number);
        event.error.clone_from(&attempt.last_error);
        event.delay = Some(attempt.delay);
        self.emit(event);
    }

    /// What [`Events::probe_hook`] does.
    fn probed(&self, probed: &Probed) {
        metrics::counter!(
            names::PROBES,
            "stream_id" => self.stream_id.clone(),
            "outcome" => probed.outcome.as_str()
        )
        .increment(1);
        if probed.number == 1 {
            self.emit(self.event(EventType::Probing, probed.attempts));
        }
        if probed.outcome == ProbeOutcome::Answered {
            self.emit(self.event(EventType::ProbeAnswered, probed.attempts));
        }
    }

    /// What [`Events::backoff_reset_hook`] does.
    fn backoff_reset(&self, up_for: Duration) {
        let mut event = self.event(EventType::BackoffReset, 0);
        event.duration = Some(up_for);
        self.emit(event);
    }
}

/// The hooks' way in: the shared part does the work.
impl RetryReport for Events {
    fn attempted(&self, attempt: &Attempt) {
        self.inner.attempted(attempt);
    }

    fn probed(&self, probed: &Probed) {
        self.inner.probed(probed);
    }

    fn backoff_reset(&self, up_for: Duration) {
        self.inner.backoff_reset(up_for);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::broadcast::error::TryRecvError;

    #[test]
    fn a_slow_subscriber_keeps_only_its_capacity_and_is_told_what_it_missed() {
        let events = Events::new("cam1");
        let mut rx = events.subscribe_with_capacity(2);
        let reset = events.backoff_reset_hook();
        for _ in 0..5 {
            reset(Duration::from_secs(1));
        }
        assert_eq!(rx.try_recv().err(), Some(TryRecvError::Lagged(3)));
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_ok());
        assert_eq!(rx.try_recv().err(), Some(TryRecvError::Empty));
        // Later subscribers share the capacity the first one set.
        let mut late = events.subscribe();
        for _ in 0..5 {
            reset(Duration::from_secs(1));
        }
        assert_eq!(late.try_recv().err(), Some(TryRecvError::Lagged(3)));
    }
}
