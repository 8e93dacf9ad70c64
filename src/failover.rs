//! Backup sources: one packet stream from an ordered list of sources (a primary, then
//! backups, of any protocol), each its own reconnecting stack.
//!
//! Every source runs all the time (hot standby): each keeps its own connection up
//! through its own layers, and the backups' packets are read and dropped while they are
//! not the active one. So a switch waits for nothing: when the active source fails (its
//! failure detector judges it, its connection ends, or its retries give up), the next
//! source that is delivering becomes active at once, on a packet boundary. The failed
//! source goes on reconnecting (or probing) in the background through its own stack.
//! Once a source higher in the list has been delivering, without a failure, for
//! [`switch_back_after`](Failover::switch_back_after) (10 s by default), the stream
//! switches back to it; a source that fails within that time starts its count again,
//! so a flapping primary is never switched back to.
//!
//! Every switch is an event [`EventType::SourceSwitched`] on the failover's own
//! [`Events`] with its [`SourceSwitch`] (from, to, reason), and the metrics
//! `mirror_reconnect_source_switches_total{stream_id, reason}` and
//! `mirror_reconnect_active_source{stream_id, source}` follow.
//!
//! ```
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use mirror_reconnect::connection::{channel, ChannelConnection, ConnectionState, Packet, Protocol, Target};
//! use mirror_reconnect::failover::Failover;
//! use mirror_reconnect::ReconnectionConfig;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // A source whose connections send `first`, `first + 1`, … every 10 ms.
//! let source = |first: u32| {
//!     service_fn(move |target: Target| async move {
//!         let (tx, conn) = channel(ConnectionState::new(target.stream_id, Protocol::InProcess), 8);
//!         tokio::spawn(async move {
//!             for n in first.. {
//!                 tokio::time::sleep(Duration::from_millis(10)).await;
//!                 if tx.send(Packet::new(n.to_be_bytes().to_vec(), tokio::time::Instant::now())).await.is_err() {
//!                     return;
//!                 }
//!             }
//!         });
//!         Ok::<ChannelConnection, std::io::Error>(conn)
//!     })
//! };
//! let config = ReconnectionConfig::default();
//! let target = Target::new("cam1", Protocol::InProcess);
//! let mut stream = Failover::new("cam1")
//!     .source("primary", config.builder().build(source(0), target.clone()))
//!     .source("backup", config.builder().build(source(1_000_000), target));
//! let first = stream.next().await.unwrap().unwrap();
//! assert_eq!(stream.active(), "primary");
//! assert_eq!(u32::from_be_bytes(first.payload[..4].try_into().unwrap()), 0);
//! # }
//! ```

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use crate::connection::metric_names as names;
use crate::connection::{Connection, Packet, StreamTarget};
use crate::driver::{EventType, Events, ReconnectError, Reconnecting};
pub use crate::driver::{SourceSwitch, SwitchReason};
use crate::error::BoxError;

/// How long a higher source must deliver without a failure before the stream switches
/// back to it, unless set.
pub const DEFAULT_SWITCH_BACK_AFTER: Duration = Duration::from_secs(10);

/// The shortest `switch_back_after`: a shorter one would switch back to a source
/// before its failure detector could judge it.
pub const MIN_SWITCH_BACK_AFTER: Duration = Duration::from_millis(100);

/// How long the first source has at the start to deliver before a backup that already
/// delivers is switched to, unless set.
pub const DEFAULT_STARTUP_WAIT: Duration = Duration::from_secs(1);

/// How many packets of a source that is not active are read (and dropped) per poll
/// before the others get their turn.
const STANDBY_BUDGET: usize = 256;

/// The failover settings of a stream (the YAML config's `failover:` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailoverConfig {
    /// How long a source higher in the list must deliver without a failure before the
    /// stream switches back to it (default 10 s; at least 100 ms).
    #[serde(with = "humantime_serde")]
    pub switch_back_after: Duration,
    /// How long the first source has at the start to deliver before a backup already
    /// delivering is used (default 1 s).
    #[serde(with = "humantime_serde")]
    pub startup_wait: Duration,
}

impl Default for FailoverConfig {
    fn default() -> Self {
        Self {
            switch_back_after: DEFAULT_SWITCH_BACK_AFTER,
            startup_wait: DEFAULT_STARTUP_WAIT,
        }
    }
}

impl FailoverConfig {
    /// Check the values: `switch_back_after` of at least 100 ms (a shorter one would
    /// switch back to a source before its failure detector could judge it).
    pub fn validate(&self) -> Result<(), String> {
        if self.switch_back_after < MIN_SWITCH_BACK_AFTER {
            return Err(format!(
                "failover.switch_back_after must be at least {MIN_SWITCH_BACK_AFTER:?}, not {:?}",
                self.switch_back_after
            ));
        }
        Ok(())
    }
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn is_streaming(&self) -> bool {
        (**self).is_streaming()
    }
}

/// One source of a [`Failover`]: a packet stream across reconnects that says whether
/// it is delivering now. [`Reconnecting`] is one (so is any stack the builder makes).
pub trait Source: Stream<Item = Result<Packet, ReconnectError>> + Send + Unpin {
    /// Whether a connection is up and has delivered a packet.
    fn is_streaming(&self) -> bool;
}

impl<S, T> Source for Reconnecting<S, T>
where
    S: Service<T> + Unpin + Send,
    S::Response: Connection,
    S::Error: Into<BoxError>,
    S::Future: Send,
    T: StreamTarget + Unpin + Send,
{
    fn is_streaming(&self) -> bool {
        Reconnecting::is_streaming(self)
    }
}

struct Entry {
    name: String,
    source: Box<dyn Source>,
    /// Delivering since (the first packet after its last failure).
    up_since: Option<Instant>,
    /// Has delivered at least once.
    ever_up: bool,
    /// Its stream ended (its stack gave up or was stopped).
    ended: bool,
}

/// One packet stream from an ordered list of sources: see the [module docs](self).
///
/// A [`Stream`] of `Result<Packet, ReconnectError>` that ends only when every source's
/// stream has ended: with the last error if every one gave up, cleanly if any ended
/// cleanly (cancelled, or closed by its peer for good). A backup that gave up earlier
/// does not turn a clean stop into an error.
#[must_use = "streams do nothing unless polled"]
pub struct Failover {
    sources: Vec<Entry>,
    active: usize,
    config: FailoverConfig,
    events: Events,
    started: Instant,
    recheck: Option<Pin<Box<Sleep>>>,
    last_error: Option<ReconnectError>,
    /// A source's stream ended without an error.
    ended_cleanly: bool,
    switches: u64,
    done: bool,
}

impl fmt::Debug for Failover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Failover")
            .field("stream_id", &self.events.stream_id())
            .field(
                "sources",
                &self.sources.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .field("active", &self.active())
            .field("switches", &self.switches)
            .finish_non_exhaustive()
    }
}

impl Failover {
    /// A failover for `stream_id` with no source yet; add them in order of preference
    /// with [`source`](Self::source).
    pub fn new(stream_id: impl Into<String>) -> Self {
        Self {
            sources: Vec::new(),
            active: 0,
            config: FailoverConfig::default(),
            events: Events::new(stream_id),
            started: Instant::now(),
            recheck: None,
            last_error: None,
            ended_cleanly: false,
            switches: 0,
            done: false,
        }
    }

    /// Add a source, after those added before (the first is the primary). `name` names
    /// it in events, metrics and logs: never put a secret in it.
    pub fn source(mut self, name: impl Into<String>, source: impl Source + 'static) -> Self {
        let name = name.into();
        let active = if self.sources.is_empty() { 1.0 } else { 0.0 };
        set_active_gauge(self.events.stream_id(), &name, active);
        self.sources.push(Entry {
            name,
            source: Box::new(source),
            up_since: None,
            ever_up: false,
            ended: false,
        });
        self
    }

    /// Take the settings of `config` (switch-back time, startup wait).
    pub fn config(mut self, config: FailoverConfig) -> Self {
        self.config = config;
        self
    }

    /// How long a source higher in the list must deliver without a failure before the
    /// stream switches back to it (default 10 s).
    pub fn switch_back_after(mut self, after: Duration) -> Self {
        self.config.switch_back_after = after;
        self
    }

    /// How long the first source has at the start before a backup already delivering
    /// is used (default 1 s).
    pub fn startup_wait(mut self, wait: Duration) -> Self {
        self.config.startup_wait = wait;
        self
    }

    /// Use `events` for the `source_switched` events (by default a bus of its own for
    /// the stream id given to [`new`](Self::new)).
    pub fn events(mut self, events: Events) -> Self {
        self.events = events;
        self
    }

    /// The bus the `source_switched` events go to.
    pub fn event_bus(&self) -> &Events {
        &self.events
    }

    /// The name of the active source (empty with no source).
    pub fn active(&self) -> &str {
        self.sources
            .get(self.active)
            .map_or("", |e| e.name.as_str())
    }

    /// The position of the active source in the list (0 is the primary).
    pub fn active_index(&self) -> usize {
        self.active
    }

    /// How many switches there have been.
    pub fn switches(&self) -> u64 {
        self.switches
    }

    fn switch_to(&mut self, to: usize, reason: SwitchReason) {
        let stream_id = self.events.stream_id().to_owned();
        let switch = SourceSwitch {
            from: self.sources[self.active].name.clone(),
            to: self.sources[to].name.clone(),
            reason,
        };
        tracing::warn!(
            stream_id = %stream_id,
            from = %switch.from,
            to = %switch.to,
            reason = %reason,
            "source switched"
        );
        set_active_gauge(&stream_id, &switch.from, 0.0);
        set_active_gauge(&stream_id, &switch.to, 1.0);
        metrics::counter!(names::SOURCE_SWITCHES, "stream_id" => stream_id, "reason" => reason.as_str())
            .increment(1);
        let mut event = self.events.event(EventType::SourceSwitched, 0);
        event.reason = None;
        event.switch = Some(switch);
        self.events.emit(event);
        self.active = to;
        self.switches += 1;
    }

    /// Poll one source for what it has; the active one's first packet is returned.
    fn poll_source(&mut self, i: usize, cx: &mut Context<'_>) -> Option<Packet> {
        let active = i == self.active;
        let entry = &mut self.sources[i];
        let mut read = 0;
        let got = loop {
            if entry.ended {
                break None;
            }
            match Pin::new(&mut entry.source).poll_next(cx) {
                Poll::Ready(Some(Ok(packet))) => {
                    if entry.up_since.is_none() {
                        entry.up_since = Some(Instant::now());
                    }
                    entry.ever_up = true;
                    if active {
                        break Some(packet);
                    }
                    read += 1;
                    if read >= STANDBY_BUDGET {
                        cx.waker().wake_by_ref();
                        break None;
                    }
                }
                Poll::Ready(Some(Err(error))) => {
                    tracing::warn!(source = %entry.name, %error, "source gave up");
                    entry.ended = true;
                    self.last_error = Some(error);
                    break None;
                }
                Poll::Ready(None) => {
                    entry.ended = true;
                    self.ended_cleanly = true;
                    break None;
                }
                Poll::Pending => break None,
            }
        };
        if entry.ended || !entry.source.is_streaming() {
            entry.up_since = None;
        }
        got
    }

    /// Whether source `i` delivers now.
    fn delivering(&self, i: usize) -> bool {
        let e = &self.sources[i];
        !e.ended && e.up_since.is_some()
    }

    /// Switch if the active source is down and another delivers, or a higher one has
    /// delivered long enough; returns whether it switched.
    fn decide(&mut self, now: Instant) -> bool {
        let active = &self.sources[self.active];
        let active_down = active.ended || active.up_since.is_none();
        if active_down {
            // A primary that never came up gets the startup wait first.
            let waiting = !active.ended
                && !active.ever_up
                && now.saturating_duration_since(self.started) < self.config.startup_wait;
            let reason = if active.ended {
                SwitchReason::GaveUp
            } else {
                SwitchReason::Failed
            };
            if !waiting {
                if let Some(to) = (0..self.sources.len()).find(|&i| self.delivering(i)) {
                    self.switch_to(to, reason);
                    return true;
                }
            }
            return false;
        }
        let after = self.config.switch_back_after;
        let back = (0..self.active).find(|&i| {
            self.delivering(i)
                && self.sources[i]
                    .up_since
                    .is_some_and(|since| now.saturating_duration_since(since) >= after)
        });
        if let Some(to) = back {
            self.switch_to(to, SwitchReason::SwitchBack);
            return true;
        }
        false
    }

    /// When `decide` could next change its mind without a packet or a failure: the
    /// earliest switch-back of a higher source, or the end of the startup wait.
    fn next_deadline(&self) -> Option<Instant> {
        let after = self.config.switch_back_after;
        let back = self.sources[..self.active]
            .iter()
            .filter(|e| !e.ended)
            .filter_map(|e| e.up_since.map(|since| since + after))
            .min();
        let active = &self.sources[self.active];
        let startup = Some(self.started + self.config.startup_wait)
            .filter(|end| !active.ever_up && !active.ended && *end > Instant::now());
        match (back, startup) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

fn set_active_gauge(stream_id: &str, source: &str, value: f64) {
    metrics::gauge!(names::ACTIVE_SOURCE, "stream_id" => stream_id.to_owned(), "source" => source.to_owned())
        .set(value);
}

impl Stream for Failover {
    type Item = Result<Packet, ReconnectError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.done || this.sources.is_empty() {
            return Poll::Ready(None);
        }
        loop {
            // The active source first, so that nothing it has is dropped.
            let got = this.poll_source(this.active, cx);
            for i in 0..this.sources.len() {
                if i != this.active {
                    this.poll_source(i, cx);
                }
            }
            if this.sources.iter().all(|e| e.ended) {
                this.done = true;
                let error = this.last_error.take().filter(|_| !this.ended_cleanly);
                return Poll::Ready(error.map(Err));
            }
            let switched = this.decide(Instant::now());
            if let Some(packet) = got {
                return Poll::Ready(Some(Ok(packet)));
            }
            if switched {
                // The new active source may have packets waiting: read them now.
                continue;
            }
            match this.next_deadline() {
                Some(at) => {
                    let timer = this
                        .recheck
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    timer.as_mut().reset(at);
                    if timer.as_mut().poll(cx).is_ready() {
                        continue;
                    }
                }
                None => this.recheck = None,
            }
            return Poll::Pending;
        }
    }
}
