//! Operator metrics: what the crate records, a per-stream reporter, and a Prometheus
//! endpoint.
//!
//! Everything is recorded through the [`metrics`](https://docs.rs/metrics) facade, so any recorder
//! works; with the `prometheus` feature, [`install_prometheus`] serves them on
//! `/metrics`. The full list of names, types, labels and units is in the repository's
//! `docs/metrics.md`, and in [`names`] and [`describe`].
//!
//! Two kinds of metrics:
//!
//! - **Event counters** (attempts, successes, failures, failure detections by
//!   reason, reconnection durations, state-store errors) are recorded by the crate
//!   itself as they happen.
//! - **Per-stream gauges and traffic counters** (state, uptime, packets, bytes,
//!   loss, latency) are read from the stream's
//!   [`HealthHandle`] by a [`StreamMetrics`] reporter
//!   that runs beside the stream on an interval, so the hot path pays nothing for
//!   them.
//!
//! ```
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use mirror_reconnect::prelude::*;
//! use mirror_reconnect::connection::{channel, ConnectionState, Packet, ChannelConnection};
//! use mirror_reconnect::metrics::StreamMetrics;
//! use tower::service_fn;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! let connector = service_fn(|target: Target| async move {
//!     let (tx, conn) = channel(ConnectionState::new(target.stream_id, Protocol::InProcess), 8);
//!     tokio::spawn(async move {
//!         while tx.send(Packet::new(&b"ts"[..], tokio::time::Instant::now())).await.is_ok() {
//!             tokio::time::sleep(Duration::from_millis(20)).await;
//!         }
//!     });
//!     Ok::<ChannelConnection, std::io::Error>(conn)
//! });
//! let config = ReconnectionConfig::default();
//! let mut packets = config.reconnecting(connector, Target::new("cam1", Protocol::InProcess));
//! packets.next().await; // connected: the stream's health can be read from now on
//! let health = packets.health().expect("the stack has a health layer");
//! let reporter = StreamMetrics::new("cam1", health)
//!     .events(packets.event_bus())
//!     .interval(Duration::from_secs(1));
//! tokio::spawn(reporter.run());
//! # }
//! ```

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ::metrics::{describe_counter, describe_gauge, describe_histogram, Unit};

use crate::connection::{HealthCounters, HealthHandle};
use crate::driver::{EventType, Events};

/// Names of every metric the crate records.
pub use crate::connection::metric_names as names;

/// Register the description and unit of every metric the crate records with the
/// installed recorder. Call it once after installing a recorder
/// ([`install_prometheus`] does).
pub fn describe() {
    use names::*;
    describe_counter!(
        FAILURE_DETECTIONS,
        Unit::Count,
        "Connections judged failed, by reason (timeout, packet_loss, high_latency, high_error_rate, low_packet_rate, network_error)"
    );
    describe_counter!(
        RECONNECTION_ATTEMPTS,
        Unit::Count,
        "Connect attempts, the first connection's included, by the failure reason that caused them (none for the first)"
    );
    describe_counter!(
        RECONNECTION_SUCCESSES,
        Unit::Count,
        "Reconnections whose new connection delivered its first packet"
    );
    describe_counter!(
        RECONNECTION_FAILURES,
        Unit::Count,
        "Reconnections given up (retries or time exhausted, or an error no retry can fix)"
    );
    describe_histogram!(
        RECONNECTION_DURATION,
        Unit::Seconds,
        "Time from a connection's failure to the first packet of its replacement"
    );
    describe_counter!(
        STATE_STORE_ERRORS,
        Unit::Count,
        "State-store loads and saves that failed (the media went on), by op"
    );
    describe_gauge!(
        STREAM_STATE,
        Unit::Count,
        "1 for the stream's current state (connecting, streaming, reconnecting, failed, stopped), 0 for the others"
    );
    describe_gauge!(
        CONNECTION_UPTIME,
        Unit::Seconds,
        "How long the stream's current connection has been up (0 when none is)"
    );
    describe_counter!(
        PACKETS_RECEIVED,
        Unit::Count,
        "Packets received on the stream, over all its connections"
    );
    describe_counter!(
        BYTES_RECEIVED,
        Unit::Bytes,
        "Payload bytes received on the stream, over all its connections"
    );
    describe_counter!(
        PACKET_ERRORS,
        Unit::Count,
        "Bad packets and errors on the stream, over all its connections"
    );
    describe_gauge!(
        PACKET_LOSS,
        Unit::Count,
        "Fraction (0 to 1) of packets lost on the current connection"
    );
    describe_gauge!(
        LATENCY,
        Unit::Seconds,
        "Round-trip time the protocol reports for the current connection"
    );
    describe_gauge!(
        LAST_PACKET_AGE,
        Unit::Seconds,
        "Time since the stream's last packet arrived"
    );
}

/// What a stream is doing, as the `state` label of `mirror_reconnect_stream_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StreamState {
    /// Connecting for the first time, or connected and waiting for the first packet.
    Connecting,
    /// Connected, packets flowing.
    Streaming,
    /// The connection failed; a new one is being made.
    Reconnecting,
    /// Reconnecting, and probing the server between attempts: the last attempt failed
    /// and no probe has been answered since (the server is likely down).
    Probing,
    /// The stack gave up; the stream ended with an error.
    Failed,
    /// Cancelled; the stream ended.
    Stopped,
}

impl StreamState {
    /// Every state, in label order.
    pub const ALL: [Self; 6] = [
        Self::Connecting,
        Self::Streaming,
        Self::Reconnecting,
        Self::Probing,
        Self::Failed,
        Self::Stopped,
    ];

    /// The snake_case label value.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Connecting => "connecting",
            Self::Streaming => "streaming",
            Self::Reconnecting => "reconnecting",
            Self::Probing => "probing",
            Self::Failed => "failed",
            Self::Stopped => "stopped",
        }
    }

    /// Whether the stream has ended.
    pub const fn is_final(self) -> bool {
        matches!(self, Self::Failed | Self::Stopped)
    }
}

impl std::fmt::Display for StreamState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the events have said about the stream, kept for the reporter.
const FROM_EVENTS_NONE: u8 = 0;
const FROM_EVENTS_RECONNECTING: u8 = 1;
const FROM_EVENTS_FAILED: u8 = 2;
const FROM_EVENTS_STOPPED: u8 = 3;
const FROM_EVENTS_PROBING: u8 = 4;

/// Reports one stream's gauges and traffic counters every interval, from its
/// [`HealthHandle`] (and, when given, its [`Events`]).
///
/// Run it beside the stream: `tokio::spawn(StreamMetrics::new(..).run())`. It ends
/// when the events say the stream ended (failed or stopped); without events it runs
/// until dropped. See the [module docs](self) for an example.
///
/// Traffic counters follow the health handle's totals over every connection of the
/// stream, so they count each packet once, whenever its connection was replaced.
#[derive(Debug)]
#[must_use = "a reporter does nothing until run"]
pub struct StreamMetrics {
    stream_id: String,
    health: HealthHandle,
    events: Option<Events>,
    interval: Duration,
}

impl StreamMetrics {
    /// A reporter of `stream_id`'s metrics from `health`, every second.
    pub fn new(stream_id: impl Into<String>, health: HealthHandle) -> Self {
        Self {
            stream_id: stream_id.into(),
            health,
            events: None,
            interval: Duration::from_secs(1),
        }
    }

    /// Also follow the stream's events, to tell reconnecting, failed and stopped
    /// apart (without them the state comes from the health alone).
    pub fn events(mut self, events: &Events) -> Self {
        self.events = Some(events.clone());
        self
    }

    /// Report this often. Default 1 s.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Report until the stream ends (or forever, without events).
    pub async fn run(self) {
        let from_events = Arc::new(AtomicU8::new(FROM_EVENTS_NONE));
        if let Some(events) = &self.events {
            let seen = Arc::clone(&from_events);
            events.on_event(move |event| {
                let state = match event.event_type {
                    EventType::FailureDetected
                    | EventType::ReconnectionStarted
                    | EventType::ReconnectionAttempt
                    | EventType::ProbeAnswered => FROM_EVENTS_RECONNECTING,
                    EventType::Probing => FROM_EVENTS_PROBING,
                    EventType::ReconnectionSucceeded | EventType::FailureCleared => {
                        FROM_EVENTS_NONE
                    }
                    EventType::ReconnectionFailed => FROM_EVENTS_FAILED,
                    EventType::ReconnectionAborted => FROM_EVENTS_STOPPED,
                    EventType::BackoffReset | EventType::SourceSwitched => return,
                };
                seen.store(state, Ordering::Relaxed);
            });
        }
        let mut reporter = Reporter::new(self.stream_id, self.health);
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            let state = reporter.report(from_events.load(Ordering::Relaxed));
            if state.is_final() {
                return;
            }
        }
    }
}

/// Report `stream_id`'s metrics from `health` every `interval`, forever (drop the
/// future to stop). Shorthand for [`StreamMetrics`] without events.
pub async fn report_stream_metrics(
    stream_id: impl Into<String>,
    health: HealthHandle,
    interval: Duration,
) {
    StreamMetrics::new(stream_id, health)
        .interval(interval)
        .run()
        .await;
}

/// The per-stream bookkeeping between two reports.
struct Reporter {
    stream_id: String,
    health: HealthHandle,
    /// The stream's totals as last reported.
    last: HealthCounters,
    streamed: bool,
    state: Option<StreamState>,
}

impl Reporter {
    fn new(stream_id: String, health: HealthHandle) -> Self {
        Self {
            stream_id,
            health,
            last: HealthCounters::default(),
            streamed: false,
            state: None,
        }
    }

    /// Publish everything once; returns the state reported.
    fn report(&mut self, from_events: u8) -> StreamState {
        let id = self.stream_id.clone();
        let health = self.health.check_health();
        // Totals over every connection: nothing a replaced connection counted after
        // the last report is lost.
        let totals = self.health.totals();
        let delta = |now: u64, before: u64| now.saturating_sub(before);
        ::metrics::counter!(names::PACKETS_RECEIVED, "stream_id" => id.clone())
            .increment(delta(totals.packets, self.last.packets));
        ::metrics::counter!(names::BYTES_RECEIVED, "stream_id" => id.clone())
            .increment(delta(totals.bytes, self.last.bytes));
        ::metrics::counter!(names::PACKET_ERRORS, "stream_id" => id.clone())
            .increment(delta(totals.errors, self.last.errors));
        self.last.packets = self.last.packets.max(totals.packets);
        self.last.bytes = self.last.bytes.max(totals.bytes);
        self.last.errors = self.last.errors.max(totals.errors);

        ::metrics::gauge!(names::CONNECTION_UPTIME, "stream_id" => id.clone())
            .set(health.connection_age.as_secs_f64());
        ::metrics::gauge!(names::PACKET_LOSS, "stream_id" => id.clone()).set(health.packet_loss);
        if let Some(latency) = health.latency {
            ::metrics::gauge!(names::LATENCY, "stream_id" => id.clone()).set(latency.as_secs_f64());
        }
        if let Some(last_seen) = health.last_seen {
            ::metrics::gauge!(names::LAST_PACKET_AGE, "stream_id" => id.clone())
                .set(last_seen.elapsed().as_secs_f64());
        }

        let streaming = health.is_connected && health.packet_count > 0;
        let state = match from_events {
            FROM_EVENTS_FAILED => StreamState::Failed,
            FROM_EVENTS_STOPPED => StreamState::Stopped,
            // Until the next connection has delivered a packet.
            FROM_EVENTS_RECONNECTING => StreamState::Reconnecting,
            FROM_EVENTS_PROBING => StreamState::Probing,
            _ if streaming => StreamState::Streaming,
            _ if self.streamed => StreamState::Reconnecting,
            _ => StreamState::Connecting,
        };
        self.streamed |= streaming;
        if self.state != Some(state) {
            for s in StreamState::ALL {
                ::metrics::gauge!(names::STREAM_STATE, "stream_id" => id.clone(), "state" => s.as_str())
                    .set(if s == state { 1.0 } else { 0.0 });
            }
            self.state = Some(state);
        }
        state
    }
}

/// The handle that renders the Prometheus text (re-exported from
/// `metrics-exporter-prometheus`).
#[cfg(feature = "prometheus")]
pub use metrics_exporter_prometheus::PrometheusHandle;
#[cfg(feature = "prometheus")]
pub use prometheus::{install_prometheus, install_prometheus_recorder, MetricsError};

#[cfg(feature = "prometheus")]
mod prometheus {
    use std::net::SocketAddr;

    use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

    /// The Prometheus endpoint could not be set up.
    #[derive(Debug)]
    pub struct MetricsError {
        message: String,
    }

    impl std::fmt::Display for MetricsError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl std::error::Error for MetricsError {}

    /// Install a Prometheus recorder as the process's global recorder, serve
    /// `/metrics` over HTTP on `addr`, and [`describe`](super::describe) every metric.
    ///
    /// Must be called inside a Tokio runtime; the HTTP listener runs on it. Fails
    /// when the address cannot be bound or a global recorder is already installed.
    /// The returned handle renders the same text the endpoint serves.
    ///
    /// ```no_run
    /// # #[tokio::main] async fn main() -> Result<(), mirror_reconnect::metrics::MetricsError> {
    /// let handle = mirror_reconnect::metrics::install_prometheus("127.0.0.1:9184".parse().unwrap())?;
    /// println!("{}", handle.render());
    /// # Ok(()) }
    /// ```
    pub fn install_prometheus(addr: SocketAddr) -> Result<PrometheusHandle, MetricsError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|_| MetricsError {
            message: "the Prometheus endpoint must be installed inside a Tokio runtime".into(),
        })?;
        let (recorder, exporter) = {
            let _entered = runtime.enter();
            PrometheusBuilder::new()
                .with_http_listener(addr)
                .build()
                .map_err(|e| MetricsError {
                    message: format!("cannot serve Prometheus metrics on {addr}: {e}"),
                })?
        };
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError {
            message: "cannot install the Prometheus recorder: a metrics recorder is already installed in this process".into(),
        })?;
        runtime.spawn(async move {
            if let Err(error) = exporter.await {
                tracing::error!(?error, "the Prometheus endpoint stopped");
            }
        });
        super::describe();
        Ok(handle)
    }

    /// Install a Prometheus recorder as the process's global recorder, and
    /// [`describe`](super::describe) every metric, without serving it: for a program
    /// that serves [`render`](PrometheusHandle::render)'s text from its own HTTP
    /// server. Fails when a global recorder is already installed.
    pub fn install_prometheus_recorder() -> Result<PrometheusHandle, MetricsError> {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        ::metrics::set_global_recorder(recorder).map_err(|_| MetricsError {
            message: "cannot install the Prometheus recorder: a metrics recorder is already installed in this process".into(),
        })?;
        super::describe();
        Ok(handle)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use ::metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder,
        SharedString, Unit,
    };

    use super::*;
    use crate::health::HealthChecker;

    type Values = Arc<Mutex<HashMap<String, f64>>>;

    /// A recorder that keeps the last value of every counter and gauge.
    #[derive(Default)]
    struct Capture {
        values: Values,
    }

    struct Cell {
        key: String,
        values: Values,
    }

    impl Cell {
        fn update(&self, f: impl FnOnce(&mut f64)) {
            let mut values = self.values.lock().unwrap_or_else(|p| p.into_inner());
            f(values.entry(self.key.clone()).or_default());
        }
    }

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.update(|v| *v += value as f64);
        }
        fn absolute(&self, value: u64) {
            self.update(|v| *v = value as f64);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, value: f64) {
            self.update(|v| *v += value);
        }
        fn decrement(&self, value: f64) {
            self.update(|v| *v -= value);
        }
        fn set(&self, value: f64) {
            self.update(|v| *v = value);
        }
    }

    /// `name{label=value,…}`, labels in the order given.
    fn render(key: &Key) -> String {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        format!("{}{{{}}}", key.name(), labels.join(","))
    }

    impl Recorder for Capture {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Cell {
                key: render(key),
                values: Arc::clone(&self.values),
            }))
        }

        fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Cell {
                key: render(key),
                values: Arc::clone(&self.values),
            }))
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::noop()
        }
    }

    impl Capture {
        fn get(&self, key: &str) -> Option<f64> {
            self.values
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
                .copied()
        }

        fn state(&self) -> Vec<&'static str> {
            StreamState::ALL
                .into_iter()
                .filter(|s| {
                    self.get(&format!(
                        "mirror_reconnect_stream_state{{stream_id=cam,state={s}}}"
                    )) == Some(1.0)
                })
                .map(StreamState::as_str)
                .collect()
        }
    }

    use tokio::time::Instant;

    const PACKETS: &str = "mirror_reconnect_packets_received_total{stream_id=cam}";
    const BYTES: &str = "mirror_reconnect_bytes_received_total{stream_id=cam}";

    #[tokio::test(start_paused = true)]
    async fn counters_add_up_over_connections_and_state_follows() {
        let capture = Capture::default();
        let checker = Arc::new(HealthChecker::new(None));
        let mut reporter = Reporter::new("cam".into(), Arc::clone(&checker));
        let mut report =
            |from_events| ::metrics::with_local_recorder(&capture, || reporter.report(from_events));

        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Connecting);
        checker.connection_started(Instant::now());
        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Connecting);
        for _ in 0..5 {
            checker.record_packet(10, Instant::now());
        }
        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Streaming);
        for _ in 0..3 {
            checker.record_packet(10, Instant::now());
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Streaming);
        assert_eq!(capture.get(PACKETS), Some(8.0));
        assert_eq!(
            capture.get("mirror_reconnect_connection_uptime_seconds{stream_id=cam}"),
            Some(2.0)
        );

        // The connection fails after two more packets; the counts freeze until the
        // next one starts, which restarts them at zero.
        checker.record_packet(10, Instant::now());
        checker.record_packet(10, Instant::now());
        checker.connection_ended();
        assert_eq!(report(FROM_EVENTS_RECONNECTING), StreamState::Reconnecting);
        assert_eq!(report(FROM_EVENTS_PROBING), StreamState::Probing);
        assert_eq!(capture.state(), ["probing"]);
        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Reconnecting);
        assert_eq!(capture.get(PACKETS), Some(10.0));
        tokio::time::advance(Duration::from_millis(300)).await;
        checker.connection_started(Instant::now());
        checker.record_packet(100, Instant::now());
        assert_eq!(report(FROM_EVENTS_RECONNECTING), StreamState::Reconnecting);
        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Streaming);
        assert_eq!(capture.get(PACKETS), Some(11.0));
        assert_eq!(capture.get(BYTES), Some(200.0));
        assert_eq!(capture.state(), ["streaming"]);

        // Packets of a connection replaced between two reports still count.
        checker.record_packet(10, Instant::now());
        checker.record_packet(10, Instant::now());
        checker.connection_ended();
        checker.connection_started(Instant::now());
        checker.record_packet(10, Instant::now());
        assert_eq!(report(FROM_EVENTS_NONE), StreamState::Streaming);
        assert_eq!(capture.get(PACKETS), Some(14.0));

        checker.connection_ended();
        assert_eq!(report(FROM_EVENTS_FAILED), StreamState::Failed);
        assert_eq!(capture.state(), ["failed"]);
        assert_eq!(capture.get(PACKETS), Some(14.0), "nothing counted twice");
    }

    #[tokio::test(start_paused = true)]
    async fn the_reporter_ends_with_the_stream() {
        let capture = Capture::default();
        // The test runs on one thread: the reporter and the checks share the recorder.
        let _recorder = ::metrics::set_default_local_recorder(&capture);
        let events = Events::new("cam");
        let checker = Arc::new(HealthChecker::new(None));
        let reporter = StreamMetrics::new("cam", checker)
            .events(&events)
            .interval(Duration::from_millis(100));
        let script = async {
            tokio::time::sleep(Duration::from_millis(250)).await;
            assert_eq!(capture.state(), ["connecting"]);
            // Probes unanswered between attempts, then an attempt.
            events.emit(events.event(EventType::Probing, 1));
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(capture.state(), ["probing"]);
            events.emit(events.event(EventType::ReconnectionAttempt, 2));
            tokio::time::sleep(Duration::from_millis(100)).await;
            assert_eq!(capture.state(), ["reconnecting"]);
            events.emit(events.event(EventType::ReconnectionAborted, 1));
        };
        let (ended, ()) = tokio::join!(
            tokio::time::timeout(Duration::from_secs(1), reporter.run()),
            script
        );
        ended.expect("the reporter ends");
        assert_eq!(capture.state(), ["stopped"]);
    }
}
