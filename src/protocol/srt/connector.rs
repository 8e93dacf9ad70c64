use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use srt_tokio::options::{ByteCount, SocketOptions};
use srt_tokio::SrtSocket;
use tower_service::Service;

use super::connection::SrtConnection;
use super::error::connect_error;
use super::farewell::{with_farewell, FarewellSocket};
use super::listener::Listeners;
use super::params::{Defaults, SrtParams};
use super::probe::{inductions, SrtProbe};
use super::SrtMode;
use crate::connection::{ProbeOutcome, Target};
use crate::error::{BoxError, ConnectError, ConnectErrorKind};

/// How often srt-tokio publishes a connection's statistics. Fine enough to tell a
/// vanished peer from a closed one, cheap enough to ignore.
const STATISTICS_INTERVAL: Duration = Duration::from_millis(250);

/// The UDP socket buffers (receive and send, each) an [`SrtConnector`] asks for unless
/// told ([`SrtConnector::udp_buffer`]): 4 MiB. srt-tokio's own 64 KiB overflow on a
/// burst of fifty packets (an I-frame); libsrt asks for 12 MB. The kernel caps what it
/// grants at `net.core.rmem_max` and `net.core.wmem_max`.
pub const DEFAULT_UDP_BUFFER: u64 = 4 * 1024 * 1024;
/// The smallest UDP socket buffer an [`SrtConnector`] asks for: 64 KiB.
pub const MIN_UDP_BUFFER: u64 = 64 * 1024;
/// The largest UDP socket buffer an [`SrtConnector`] asks for: 32 MiB. srt-tokio
/// refuses to connect with a UDP buffer larger than its flow-control window (25 600
/// packets of 1 500 bytes).
pub const MAX_UDP_BUFFER: u64 = 32 * 1024 * 1024;

/// Inductions a caller sends before its handshake, the second halfway through the
/// probe timeout: one lost datagram, or a listener a moment late to bind, does not fail
/// the attempt, and an attempt on a server that is down costs two datagrams.
const PROBES_BEFORE_CONNECT: u32 = 2;

/// Slack over the handshake's own timeout before the connector gives up itself.
const TIMEOUT_SLACK: Duration = Duration::from_millis(500);

/// The SRT connector: a [`Service`] that turns a [`Target`] into a live
/// [`SrtConnection`].
///
/// Target parameters override the connector's defaults; see the
/// [module docs](super) for the parameter names. Clones share their listeners, so every
/// stream listening on one port shares one socket.
///
/// ```
/// use std::time::Duration;
/// use mirror_reconnect::protocol::srt::{SrtConnector, SrtMode};
///
/// let connector = SrtConnector::new()
///     .mode(SrtMode::Listener)
///     .latency(Duration::from_millis(120))
///     .peer_idle_timeout(Duration::from_secs(4));
/// # drop(connector);
/// ```
#[derive(Clone)]
pub struct SrtConnector {
    defaults: Defaults,
    udp_buffer: u64,
    listeners: Arc<Listeners>,
}

impl Default for SrtConnector {
    fn default() -> Self {
        Self {
            defaults: Defaults::default(),
            udp_buffer: DEFAULT_UDP_BUFFER,
            listeners: Arc::default(),
        }
    }
}

impl fmt::Debug for SrtConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtConnector")
            .field("mode", &self.defaults.mode)
            .field("latency", &self.defaults.latency)
            .field("connect_timeout", &self.defaults.connect_timeout)
            .field("listen_timeout", &self.defaults.listen_timeout)
            .field("peer_idle_timeout", &self.defaults.peer_idle_timeout)
            .field("probe_timeout", &self.defaults.probe_timeout)
            .field("probe_before_connect", &self.defaults.probe_before_connect)
            .field("held_callers", &self.defaults.held_callers)
            .field("srt_buffer", &self.srt_buffer_bytes())
            .field("udp_buffer", &self.udp_buffer)
            .field("listeners", &self.listeners)
            .finish()
    }
}

impl SrtConnector {
    /// A connector with SRT's defaults: caller, 120 ms latency (srt-tokio's default
    /// unless set), 3 s connect timeout, 5 s peer-idle timeout, listeners wait for
    /// their caller without limit.
    pub fn new() -> Self {
        Self::default()
    }

    super::params::default_setters!();

    /// The probe of this connector's caller targets, for
    /// [`ReconnectingBuilder::probe`](crate::stack::ReconnectingBuilder::probe) or
    /// [`BackoffRetryLayer::probe`](crate::backoff::BackoffRetryLayer::probe): one
    /// induction handshake datagram, answered by any SRT listener at once.
    pub fn probe(&self) -> SrtProbe {
        SrtProbe::new(self.defaults)
    }

    /// The UDP socket buffers to ask for, receive and send, in bytes (default
    /// [`DEFAULT_UDP_BUFFER`], 4 MiB; values are read within [`MIN_UDP_BUFFER`] and
    /// [`MAX_UDP_BUFFER`]). What a burst can be before the kernel drops packets, and
    /// what a connection may cost in kernel memory; the kernel grants at most its
    /// `net.core.rmem_max` / `wmem_max`. A listener's socket takes the value of the
    /// connector that binds its port first.
    ///
    /// ```
    /// use mirror_reconnect::protocol::srt::SrtConnector;
    ///
    /// let connector = SrtConnector::new().udp_buffer(16 * 1024 * 1024);
    /// # drop(connector);
    /// ```
    #[must_use]
    pub fn udp_buffer(mut self, bytes: u64) -> Self {
        self.udp_buffer = bytes.clamp(MIN_UDP_BUFFER, MAX_UDP_BUFFER);
        self
    }

    /// How long a probe waits for the listener's answer (default 500 ms), the probe
    /// before a caller's handshake included.
    #[must_use]
    pub fn probe_timeout(mut self, timeout: Duration) -> Self {
        self.defaults.probe_timeout = timeout;
        self
    }

    /// Whether a caller probes before its handshake (two inductions, the second halfway
    /// through the probe timeout) and fails the attempt as
    /// [`TimedOut`](ConnectErrorKind::TimedOut) (retryable) when nothing answers
    /// within the probe timeout (or the connect timeout, if shorter). An attempt on a
    /// server that is down then costs two datagrams and 500 ms instead of the handshake
    /// srt-tokio resends every 100 ms until the connect timeout (11 datagrams for a 1 s
    /// connect timeout, measured in tests/probe.rs; about 31 for the default 3 s), and a
    /// connect to a live server costs one round trip more.
    ///
    /// Default false: a short attempt no longer covers the end of a short cut the way
    /// a 3 s handshake resent every 100 ms does, and the recovery bench measured
    /// recovery after 1 s and 5 s path cuts going from 145–210 ms to 263–1225 ms with
    /// it on. Turn it on where the traffic to a dead server matters more.
    #[must_use]
    pub fn probe_before_connect(mut self, probe: bool) -> Self {
        self.defaults.probe_before_connect = probe;
        self
    }

    /// Bind the listener for `address` now, with the connector's defaults, and return
    /// the address it is bound to (useful with port 0). Listener targets for either
    /// address then accept on it.
    pub async fn listen(&self, address: SocketAddr) -> Result<SocketAddr, ConnectError> {
        let options = self.base_options(self.defaults.latency, self.defaults.peer_idle_timeout);
        let listener = self
            .listeners
            .get_or_bind(address, options, self.defaults.held_callers)
            .await
            .map_err(|e| connect_error(SrtMode::Listener, address, None, e))?;
        Ok(listener.local_addr())
    }

    fn base_options(&self, latency: Option<Duration>, peer_idle: Duration) -> SocketOptions {
        let mut options = SocketOptions::default();
        if let Some(latency) = latency {
            options.sender.peer_latency = latency;
            options.receiver.latency = latency;
        }
        options.session.peer_idle_timeout = peer_idle;
        options.session.statistics_interval = STATISTICS_INTERVAL;
        options.connect.udp_recv_buffer_size = ByteCount(self.udp_buffer);
        options.connect.udp_send_buffer_size = ByteCount(self.udp_buffer);
        // srt-tokio's own send buffer is 32 packets: fewer than a round trip holds at
        // a few Mbit/s, so a lost packet would be gone before its NAK came back.
        options.receiver.buffer_size = ByteCount(self.srt_buffer_bytes());
        options.sender.buffer_size = ByteCount(self.srt_buffer_bytes());
        options
    }

    fn srt_buffer_bytes(&self) -> u64 {
        self.defaults
            .srt_buffer
            .unwrap_or(super::DEFAULT_SRT_BUFFER)
    }

    fn options(&self, params: &SrtParams) -> Result<SocketOptions, ConnectError> {
        let mut options = self.base_options(params.latency, params.peer_idle_timeout);
        if let Some(timeout) = params.connect_timeout {
            options.connect.timeout = timeout;
        }
        if let Some(passphrase) = params.srt_passphrase()? {
            options.encryption.passphrase = Some(passphrase);
            options.encryption.key_size = params.key_size;
        }
        let unspecified: IpAddr = if params.address.is_ipv6() {
            Ipv6Addr::UNSPECIFIED.into()
        } else {
            Ipv4Addr::UNSPECIFIED.into()
        };
        let local_port = match params.mode {
            SrtMode::Rendezvous => params.local_port.unwrap_or(params.address.port()),
            _ => params.local_port.unwrap_or(0),
        };
        options.connect.local = SocketAddr::new(unspecified, local_port);
        Ok(options)
    }

    async fn connect(self, target: Target) -> Result<SrtConnection, ConnectError> {
        let params = SrtParams::from_target(&target, &self.defaults)?;
        if params.packet_filter.is_some() {
            return Err(ConnectError::new(
                ConnectErrorKind::InvalidTarget,
                "SRT parameter packetfilter (FEC) needs the libsrt connector \
                 (LibSrtConnector, feature `libsrt`); srt-tokio has no packet filters",
            ));
        }
        let fail = |e: io::Error| {
            connect_error(params.mode, params.address, params.stream_id.as_deref(), e)
        };
        let timed_out = || {
            ConnectError::new(
                ConnectErrorKind::TimedOut,
                format!(
                    "SRT {} {}: no peer within {:?}",
                    params.mode,
                    params.address,
                    params.connect_timeout.unwrap_or_default()
                ),
            )
        };
        let options = self.options(&params)?;
        match params.mode {
            SrtMode::Listener => {
                let mut listener_options = options;
                // The passphrase is given per caller, when accepting.
                listener_options.encryption.passphrase = None;
                listener_options.encryption.key_size = Default::default();
                let listener = self
                    .listeners
                    .get_or_bind(params.address, listener_options, self.defaults.held_callers)
                    .await
                    .map_err(fail)?;
                let accept = listener.accept(&params);
                let socket = match params.connect_timeout {
                    Some(limit) => tokio::time::timeout(limit, accept)
                        .await
                        .map_err(|_| timed_out())??,
                    None => accept.await?,
                };
                let local_addr = Some(listener.local_addr());
                let farewell = Some(listener.farewell());
                Ok(SrtConnection::new(
                    socket,
                    &target,
                    params.mode,
                    local_addr,
                    Some(listener),
                    farewell,
                ))
            }
            SrtMode::Caller | SrtMode::Rendezvous => {
                let udp = srt_tokio::bind_socket(&options).await.map_err(fail)?;
                let (udp, farewell) = with_farewell(udp).map_err(fail)?;
                // A port of the kernel's choosing may stay bound for the repeats; a
                // port asked for is let go with the connection (it may be bound again).
                let farewell = (options.connect.local.port() == 0)
                    .then(|| FarewellSocket::Own(Arc::new(farewell)));
                let local_addr = udp.local_addr().ok();
                if params.mode == SrtMode::Caller && self.defaults.probe_before_connect {
                    // Never longer than the attempt itself may take.
                    let timeout = self.defaults.probe_timeout.min(options.connect.timeout);
                    let outcome =
                        inductions(&udp, params.address, timeout, PROBES_BEFORE_CONNECT).await;
                    if outcome == ProbeOutcome::NoAnswer {
                        return Err(ConnectError::new(
                            ConnectErrorKind::TimedOut,
                            format!(
                                "SRT caller {}: no answer to a handshake within {timeout:?}",
                                params.address
                            ),
                        ));
                    }
                }
                let limit = options.connect.timeout + TIMEOUT_SLACK;
                let builder = SrtSocket::builder().set(|o| *o = options).socket(udp);
                let handshake = async {
                    match params.mode {
                        SrtMode::Rendezvous => builder.rendezvous(params.address).await,
                        _ => {
                            builder
                                .call(params.address, params.stream_id.as_deref())
                                .await
                        }
                    }
                };
                let socket = tokio::time::timeout(limit, handshake)
                    .await
                    .map_err(|_| timed_out())?
                    .map_err(fail)?;
                Ok(SrtConnection::new(
                    socket,
                    &target,
                    params.mode,
                    local_addr,
                    None,
                    farewell,
                ))
            }
        }
    }
}

/// The future of [`SrtConnector`]: the handshake (or the wait for a caller).
#[must_use = "futures do nothing unless polled"]
pub struct SrtConnecting {
    inner: Pin<Box<dyn Future<Output = Result<SrtConnection, BoxError>> + Send>>,
}

impl fmt::Debug for SrtConnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtConnecting").finish_non_exhaustive()
    }
}

impl Future for SrtConnecting {
    type Output = Result<SrtConnection, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl Service<Target> for SrtConnector {
    type Response = SrtConnection;
    type Error = BoxError;
    type Future = SrtConnecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let this = self.clone();
        SrtConnecting {
            inner: Box::pin(async move { this.connect(target).await.map_err(BoxError::from) }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The options `connector` gives a connection with no latency of its own.
    fn options_of(connector: &SrtConnector) -> SocketOptions {
        connector.base_options(None, Duration::from_secs(5))
    }

    #[test]
    fn the_udp_buffers_asked_for_are_the_connectors_within_bounds() {
        let asked = |connector: SrtConnector| {
            let options = options_of(&connector);
            (
                options.connect.udp_recv_buffer_size.0,
                options.connect.udp_send_buffer_size.0,
            )
        };
        let both = |n| (n, n);
        assert_eq!(asked(SrtConnector::new()), both(DEFAULT_UDP_BUFFER));
        assert_eq!(
            asked(SrtConnector::new().udp_buffer(1 << 20)),
            both(1 << 20)
        );
        assert_eq!(
            asked(SrtConnector::new().udp_buffer(0)),
            both(MIN_UDP_BUFFER)
        );
        assert_eq!(
            asked(SrtConnector::new().udp_buffer(u64::MAX)),
            both(MAX_UDP_BUFFER)
        );
    }

    /// What srt-tokio makes of the options before it connects: its own checks, as a
    /// caller's connect runs them.
    fn checked(connector: &SrtConnector) -> Result<(), srt_tokio::options::OptionsError> {
        srt_tokio::options::CallerOptions::with("127.0.0.1:9000", None, options_of(connector))
            .map(drop)
    }

    #[test]
    fn every_udp_buffer_the_connector_takes_is_one_srt_tokio_connects_with() {
        // 256 MiB used to be taken, and srt-tokio refused every connect with it.
        for bytes in [0, DEFAULT_UDP_BUFFER, 64 << 20, u64::MAX] {
            let connector = SrtConnector::new().udp_buffer(bytes);
            assert_eq!(checked(&connector), Ok(()), "udp_buffer({bytes})");
        }
    }

    #[test]
    fn the_srt_buffers_hold_thousands_of_packets_and_are_the_connectors_within_bounds() {
        use crate::protocol::srt::{DEFAULT_SRT_BUFFER, MAX_SRT_BUFFER, MIN_SRT_BUFFER};
        let asked = |connector: SrtConnector| {
            let options = options_of(&connector);
            (options.receiver.buffer_size.0, options.sender.buffer_size.0)
        };
        let both = |n| (n, n);
        // srt-tokio's own send buffer is 32 packets (46 592 bytes), too few to send a
        // packet again once its loss is reported across a round trip.
        assert_eq!(asked(SrtConnector::new()), both(DEFAULT_SRT_BUFFER));
        assert_eq!(
            asked(SrtConnector::new().srt_buffer(1 << 20)),
            both(1 << 20)
        );
        assert_eq!(
            asked(SrtConnector::new().srt_buffer(0)),
            both(MIN_SRT_BUFFER)
        );
        assert_eq!(
            asked(SrtConnector::new().srt_buffer(u64::MAX)),
            both(MAX_SRT_BUFFER)
        );
        for bytes in [0, DEFAULT_SRT_BUFFER, u64::MAX] {
            let connector = SrtConnector::new().srt_buffer(bytes);
            assert_eq!(checked(&connector), Ok(()), "srt_buffer({bytes})");
        }
    }
}
