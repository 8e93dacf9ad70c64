//! The one place a stream's layers are put together.
//!
//! [`ReconnectingBuilder`] turns a [`ReconnectionConfig`] into the driver over the
//! whole stack: retry with the config's backoff, an optional per-attempt timeout,
//! state restore, failure detection and health, in that order around the connector.
//! It wires the stream's [`Events`] once (the retry layer reports its attempts on the
//! same bus the driver reports on) and hands back, on the driver, what a program needs
//! before the first packet: the health handle, the event bus and a
//! [`StopHandle`](crate::driver::StopHandle).
//!
//! One builder serves many streams with the same settings: clone it for each (see
//! [`ReconnectingBuilder::build`]), and the streams share its retry policy and failure
//! detector instead of each carrying a copy.
//!
//! ```
//! use std::time::Duration;
//! use futures_util::StreamExt;
//! use mirror_reconnect::prelude::*;
//! use mirror_reconnect::connection::{channel, ChannelConnection, ConnectionState};
//! use mirror_reconnect::stack::ReconnectingBuilder;
//! use tower::limit::ConcurrencyLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)] async fn main() {
//! // Stands in for SrtConnector / RtpConnector: each connection sends 3 packets.
//! let connector = tower::service_fn(|target: Target| async move {
//!     let (tx, conn) = channel(ConnectionState::new(target.stream_id, Protocol::InProcess), 8);
//!     tokio::spawn(async move {
//!         for i in 0..3u8 {
//!             let _ = tx.send(Packet::new(vec![i], tokio::time::Instant::now())).await;
//!         }
//!     });
//!     Ok::<ChannelConnection, std::io::Error>(conn)
//! });
//! let config = ReconnectionConfig::default();
//! let packets = ReconnectingBuilder::new(&config)
//!     .attempt_timeout(Some(Duration::from_secs(2)))
//!     // tower's own layers, around each connect attempt:
//!     .attempt_layer(ConcurrencyLimitLayer::new(1))
//!     .build(connector, Target::new("cam1", Protocol::InProcess));
//! let health = packets.health_handle().expect("the builder counts health");
//! let stop = packets.stop_handle();
//! let got: Vec<_> = packets.take(6).map(|p| p.unwrap().payload[0]).collect().await;
//! assert_eq!(got, [0, 1, 2, 0, 1, 2]);
//! assert_eq!(health.totals().packets, 6);
//! stop.stop();
//! # }
//! ```

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tower::layer::util::{Identity, Stack as Nest};
use tower::timeout::{Timeout, TimeoutLayer};
use tower::util::Either;
use tower::ServiceBuilder;
use tower_layer::Layer;
use tower_service::Service;

use crate::backoff::{any_probe, AnyBackoff, BackoffRetry, BackoffRetryLayer};
use crate::config::ReconnectionConfig;
use crate::connection::{Connection, Probe, StreamTarget};
use crate::detect::{FailureDetect, FailureDetectLayer};
use crate::driver::{BackoffFactory, Events, Reconnecting};
use crate::error::BoxError;
use crate::health::{Health, HealthLayer};
use crate::restore::{MemoryStorage, StateRestore, StateRestoreLayer, StateStorage};

/// What one connect attempt goes through, below the retry layer: an optional timeout,
/// then state restore, failure detection and health around the connector `C`.
pub type Attempt<C> =
    Either<Timeout<StateRestore<FailureDetect<Health<C>>>>, StateRestore<FailureDetect<Health<C>>>>;

/// The whole stack [`ReconnectingBuilder`] composes around a connector `C`, with the
/// user's attempt layers `L` (none by default) between the retry and each attempt.
pub type Stack<C, L = Identity> = BackoffRetry<<L as Layer<Attempt<C>>>::Service, AnyBackoff>;

/// Composes a stream's stack from a [`ReconnectionConfig`], and the driver over it.
/// See the [module docs](self).
///
/// Clones share the retry policy, the failure detector and the state layer (with
/// its store-error count and warnings): build each of many streams from a clone of
/// one builder, and they carry no copy of any.
#[must_use]
#[derive(Clone)]
pub struct ReconnectingBuilder<L = Identity> {
    config: ReconnectionConfig,
    /// The state layer over the store given to [`storage`](Self::storage), shared by
    /// every stream built from this builder or its clones (with its store-error
    /// count and warnings); without one, each stream keeps its state in its own
    /// memory store.
    restore: Option<StateRestoreLayer>,
    attempt_timeout: Option<Duration>,
    passive: bool,
    cancel: Option<CancellationToken>,
    /// The retry layer with the config's policy (and the probe), shared by every
    /// stream built from this builder or its clones; each stream's gets its own
    /// event bus at build.
    retry: BackoffRetryLayer<AnyBackoff>,
    detect: FailureDetectLayer,
    /// The config's backoff, for the waits between connections that fail before
    /// their first packet: one template, each stream's made only if needed.
    unverified_backoff: BackoffFactory,
    attempt_layers: L,
}

impl<L> std::fmt::Debug for ReconnectingBuilder<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReconnectingBuilder")
            .field("attempt_timeout", &self.attempt_timeout)
            .field("passive", &self.passive)
            .field("storage", &self.restore.is_some())
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl ReconnectingBuilder {
    /// A builder with `config`'s settings: state in memory (for the config's
    /// `state_ttl`), each attempt bounded by the config's
    /// [`attempt_timeout`](ReconnectionConfig::attempt_timeout).
    pub fn new(config: &ReconnectionConfig) -> Self {
        Self {
            config: config.clone(),
            restore: None,
            attempt_timeout: Some(config.attempt_timeout()),
            passive: false,
            cancel: None,
            retry: config.shared_retry_layer(),
            detect: config.detect_layer(),
            unverified_backoff: {
                let backoff = config.backoff();
                Arc::new(move || Box::new(backoff.clone()))
            },
            attempt_layers: Identity::new(),
        }
    }
}

impl<L> ReconnectingBuilder<L> {
    /// Keep the stream's state in `storage` (default: in memory).
    pub fn storage(mut self, storage: Arc<dyn StateStorage>) -> Self {
        self.restore = Some(self.config.restore_layer(storage));
        self
    }

    /// Bound each connect attempt (`None`: no bound at all).
    pub fn attempt_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.attempt_timeout = timeout;
        self
    }

    /// The input waits for its sender (an SRT listener, an RTP or UDP port): no
    /// attempt timeout, and connections that end before their first packet never
    /// make the stream give up.
    pub fn passive(mut self) -> Self {
        self.passive = true;
        self.attempt_timeout = None;
        self
    }

    /// Stop when `token` is cancelled (see [`Reconnecting::cancel_token`]). Without
    /// one, the driver makes its own, which [`Reconnecting::stop_handle`] cancels.
    pub fn cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }

    /// Probe the server with `probe` while waiting out a backoff delay, every
    /// [`probe_interval`](ReconnectionConfig::probe_interval) of the config (no probes
    /// when that is `null`): an answered probe starts the next attempt at once. For an
    /// SRT caller, `SrtConnector::probe()`; inputs with nothing to probe need none.
    ///
    /// ```
    /// use mirror_reconnect::prelude::*;
    /// use mirror_reconnect::protocol::srt::SrtConnector;
    /// use mirror_reconnect::stack::ReconnectingBuilder;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let connector = SrtConnector::new();
    /// let target = mirror_reconnect::protocol::srt::srt_target("srt://127.0.0.1:9000?mode=caller").unwrap();
    /// let packets = ReconnectingBuilder::new(&ReconnectionConfig::default())
    ///     .probe(connector.probe())
    ///     .build(connector, target);
    /// # drop(packets); }
    /// ```
    pub fn probe<T, P>(mut self, probe: P) -> Self
    where
        T: 'static,
        P: Probe<T>,
    {
        if self.config.probe_interval.is_some() {
            self.retry = self.retry.with_any_probe(any_probe(probe));
        }
        self
    }

    /// Put `layer` around each connect attempt, inside the retry: tower's
    /// `RateLimitLayer` or `GlobalConcurrencyLimitLayer` there pace or cap connects
    /// across streams, a `TimeoutLayer` bounds an attempt (its timeout included).
    /// Layers added later wrap those added earlier.
    pub fn attempt_layer<N>(self, layer: N) -> ReconnectingBuilder<Nest<N, L>> {
        ReconnectingBuilder {
            config: self.config,
            restore: self.restore,
            attempt_timeout: self.attempt_timeout,
            passive: self.passive,
            cancel: self.cancel,
            retry: self.retry,
            detect: self.detect,
            unverified_backoff: self.unverified_backoff,
            attempt_layers: Nest::new(layer, self.attempt_layers),
        }
    }

    /// The driver over the whole stack around `connector`, keeping `target`
    /// connected.
    ///
    /// For many streams with the same settings, build each from a clone:
    ///
    /// ```
    /// use std::sync::Arc;
    /// use mirror_reconnect::prelude::*;
    /// use mirror_reconnect::connection::{channel, ChannelConnection, ConnectionState};
    /// use mirror_reconnect::restore::MemoryStorage;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let connector = tower::service_fn(|target: Target| async move {
    ///     let (_tx, conn) = channel(ConnectionState::new(target.stream_id, Protocol::InProcess), 8);
    ///     Ok::<ChannelConnection, std::io::Error>(conn)
    /// });
    /// let builder = ReconnectionConfig::default()
    ///     .builder()
    ///     .storage(Arc::new(MemoryStorage::new()));
    /// let streams: Vec<_> = (0..100)
    ///     .map(|i| {
    ///         let target = Target::new(format!("cam{i}"), Protocol::InProcess);
    ///         builder.clone().build(connector.clone(), target)
    ///     })
    ///     .collect();
    /// // Settings shared; each stream its own event bus and health.
    /// assert_eq!(streams[7].event_bus().stream_id(), "cam7");
    /// let (one, two) = (streams[1].health_handle().unwrap(), streams[2].health_handle().unwrap());
    /// assert!(!Arc::ptr_eq(&one, &two));
    /// # }
    /// ```
    pub fn build<C, T>(self, connector: C, target: T) -> Reconnecting<Stack<C, L>, T>
    where
        C: Service<T> + Clone + Send + 'static,
        C::Response: Connection,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
        T: StreamTarget,
        L: Layer<Attempt<C>>,
        L::Service: Service<T> + Clone,
        <L::Service as Service<T>>::Response: Connection,
        <L::Service as Service<T>>::Error: Into<BoxError>,
    {
        let config = &self.config;
        let events = Events::new(target.stream_id());
        let health_layer = HealthLayer::new();
        let health = health_layer.handle();
        let restore = self.restore.unwrap_or_else(|| {
            config.restore_layer(Arc::new(MemoryStorage::with_ttl(config.state_ttl)))
        });
        let retry = self.retry.report_to(events.reporter());
        let stack = ServiceBuilder::new()
            .layer(retry)
            .layer(self.attempt_layers)
            .option_layer(self.attempt_timeout.map(TimeoutLayer::new))
            .layer(restore)
            .layer(self.detect)
            .layer(health_layer)
            .service(connector);
        let dials = target.dials();
        let mut packets = Reconnecting::new(stack, target)
            .events(events)
            .with_health_handle(health)
            .first_packet_timeout(config.first_packet_timeout)
            .retry_on_close(config.retry_on_close())
            .unverified_backoff_from(self.unverified_backoff);
        if self.passive {
            packets = packets.max_unverified(u32::MAX);
        } else if dials {
            // A dialled input's replacement can be dialled while it is kept.
            packets = packets.make_before_break(config.make_before_break);
        }
        match self.cancel {
            Some(token) => packets.cancel_token(token),
            None => packets,
        }
    }
}

impl ReconnectionConfig {
    /// A [`ReconnectingBuilder`] with these settings.
    pub fn builder(&self) -> ReconnectingBuilder {
        ReconnectingBuilder::new(self)
    }

    /// The stream of `target`'s packets through the whole stack around `connector`,
    /// with state kept in memory: `self.builder().build(connector, target)`.
    ///
    /// ```
    /// # use mirror_reconnect::prelude::*;
    /// # use mirror_reconnect::connection::{channel, ConnectionState, ChannelConnection};
    /// # fn connector() -> impl tower::Service<Target, Response = ChannelConnection, Error = std::io::Error, Future = std::future::Ready<Result<ChannelConnection, std::io::Error>>> + Clone + Send + Unpin + 'static {
    /// #     tower::service_fn(|t: Target| std::future::ready(Ok(channel(ConnectionState::new(t.stream_id, Protocol::InProcess), 1).1)))
    /// # }
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let dir = std::env::temp_dir().join("mirror-reconnect-doc.yaml");
    /// # std::fs::write(&dir, "max_retries: 3\n")?;
    /// let config = ReconnectionConfig::from_yaml_file(&dir)?;
    /// let packets = config.reconnecting(connector(), Target::new("cam1", Protocol::Srt));
    /// # drop(packets); Ok(()) }
    /// ```
    pub fn reconnecting<C, T>(&self, connector: C, target: T) -> Reconnecting<Stack<C>, T>
    where
        C: Service<T> + Clone + Send + 'static,
        C::Response: Connection,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
        T: StreamTarget,
    {
        self.builder().build(connector, target)
    }

    /// As [`reconnecting`](Self::reconnecting), with state kept in `storage`.
    pub fn reconnecting_with<C, T>(
        &self,
        connector: C,
        target: T,
        storage: Arc<dyn StateStorage>,
    ) -> Reconnecting<Stack<C>, T>
    where
        C: Service<T> + Clone + Send + 'static,
        C::Response: Connection,
        C::Error: Into<BoxError>,
        C::Future: Send + 'static,
        T: StreamTarget,
    {
        self.builder().storage(storage).build(connector, target)
    }
}
