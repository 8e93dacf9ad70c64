//! SRT on the system libsrt (feature `libsrt`): [`LibSrtConnector`] and
//! [`LibSrtConnection`], behind the same [`Target`] and `srt://` URL convention as
//! [`SrtConnector`](super::SrtConnector).
//!
//! What libsrt gives that srt-tokio does not: a live round-trip time and the
//! receiver's loss and drop counters (so health's latency and loss are SRT's own), SRT's
//! real packet sequence numbers on every message (a gap is a packet SRT gave up on),
//! packet filters (`packetfilter=fec,cols:10,rows:5`), and the reject reasons of every
//! libsrt peer.
//!
//! The `unsafe` code is in the `mirror-libsrt` crate of this workspace; this module is
//! safe code on top of it.
//!
//! # Listener
//!
//! Listener targets on one address share one libsrt listening socket, kept alive as
//! long as the connector (or a clone of it) is: a reconnect accepts the next caller of
//! the same stream id on the same port, and several streams listen on one port. In
//! the handshake, libsrt's listen callback refuses a caller whose stream id no target
//! listens for with SRT_REJX_NOTFOUND (1404), so it sees why, and sets the stream's
//! own passphrase on its caller's connection. A caller that comes while nobody waits
//! for its stream (the old connection is not yet judged dead) is held for 3 s. The
//! first target to bind an address decides its latency and peer-idle timeout.

use std::fmt;
use std::future::{poll_fn, Future};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use mirror_libsrt::{RejectReason, Socket, Stats, MAX_PAYLOAD};

/// libsrt's live-mode payload size when none is set: seven MPEG-TS packets.
const DEFAULT_PAYLOAD_SIZE: usize = 1316;
use srt_tokio::options::KeySize;
use tokio::time::Instant;
use tower_service::Service;

use super::error::{end_of_connection, reject_kind, undecryptable};
use super::libsrt_listener::{Listeners, Shared};
use super::params::{Defaults, SrtParams};
use super::probe::SrtProbe;
use super::{SrtMode, SrtStatistics};
use crate::connection::{
    Connection, ConnectionError, ConnectionState, Packet, Protocol, Sequence, Target,
};
use crate::error::{BoxError, ConnectError, ConnectErrorKind};

/// Packets between two reads of libsrt's statistics while packets keep coming.
const STATS_EVERY: u32 = 64;

/// The statistics are also read when the socket has nothing to deliver, at most this
/// often (reading them takes libsrt's locks: not once per packet).
const STATS_INTERVAL: Duration = Duration::from_millis(100);

/// How often a connection looks again at a libsrt buffer it waits on: what a broken
/// connection still holds (readable at its play time), and what a closing one still
/// has to send. libsrt signals neither on the socket.
const RETRY_EVERY: Duration = Duration::from_millis(5);

/// How long closing waits at most for libsrt to deliver what it still has to send.
const CLOSE_LINGER: Duration = Duration::from_secs(1);

/// How long past the receive latency a broken connection's buffer is read for.
const DRAIN_GRACE: Duration = Duration::from_millis(100);

/// A connection that broke with packets still in libsrt's receive buffer: they are
/// read as their play time comes, then the stream ends with `end`.
struct Drain {
    until: Instant,
    end: Option<ConnectionError>,
}

/// The SRT connector on libsrt: a [`Service`] that turns a [`Target`] into a live
/// [`LibSrtConnection`].
///
/// Target parameters override the connector's defaults, with the names of
/// [`SrtConnector`](super::SrtConnector) (see the [module docs](super)), and
/// `packetfilter` besides.
///
/// ```no_run
/// use std::time::Duration;
/// use mirror_reconnect::prelude::*;
/// use mirror_reconnect::protocol::srt::{srt_target, LibSrtConnector};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let connector = LibSrtConnector::new().latency(Duration::from_millis(120));
/// let target = srt_target("srt://:9000?mode=listener&streamid=cam1&packetfilter=fec,cols:10,rows:5")?;
/// let packets = ReconnectionConfig::default()
///     .builder()
///     .probe(connector.probe())
///     .build(connector, target);
/// # drop(packets); Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct LibSrtConnector {
    defaults: Defaults,
    /// The UDP buffers to ask for, or libsrt's own.
    udp_buffer: Option<u64>,
    listeners: Arc<Listeners>,
}

impl fmt::Debug for LibSrtConnector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibSrtConnector")
            .field("mode", &self.defaults.mode)
            .field("latency", &self.defaults.latency)
            .field("connect_timeout", &self.defaults.connect_timeout)
            .field("listen_timeout", &self.defaults.listen_timeout)
            .field("peer_idle_timeout", &self.defaults.peer_idle_timeout)
            .field("held_callers", &self.defaults.held_callers)
            .field("srt_buffer", &self.defaults.srt_buffer)
            .field("udp_buffer", &self.udp_buffer)
            .field("listeners", &self.listeners)
            .finish()
    }
}

impl LibSrtConnector {
    /// A connector with SRT's defaults: caller, libsrt's 120 ms latency unless set, 3 s
    /// connect timeout, 5 s peer-idle timeout, listeners wait for their caller without
    /// limit.
    pub fn new() -> Self {
        Self::default()
    }

    super::params::default_setters!();

    /// The UDP socket buffers to ask for, receive and send, in bytes (default: libsrt's
    /// own, 8 192 packets of 1 500 bytes, about 12 MB, in and 64 KiB out; values are read within
    /// [`MIN_UDP_BUFFER`](super::MIN_UDP_BUFFER) and
    /// [`MAX_UDP_BUFFER`](super::MAX_UDP_BUFFER)). What a burst can be before the
    /// kernel drops packets, and what a connection may cost in kernel memory; the
    /// kernel grants at most its `net.core.rmem_max` / `wmem_max`. A listener's socket
    /// takes the value of the connector that binds its port first.
    ///
    /// ```
    /// use mirror_reconnect::protocol::srt::LibSrtConnector;
    ///
    /// let connector = LibSrtConnector::new().udp_buffer(4 * 1024 * 1024);
    /// # drop(connector);
    /// ```
    #[must_use]
    pub fn udp_buffer(mut self, bytes: u64) -> Self {
        self.udp_buffer = Some(bytes.clamp(super::MIN_UDP_BUFFER, super::MAX_UDP_BUFFER));
        self
    }

    /// A probe of this connector's caller targets: one SRT induction handshake, which
    /// every SRT listener answers (see [`SrtProbe`]).
    pub fn probe(&self) -> SrtProbe {
        SrtProbe::new(self.defaults)
    }

    /// Bind the listener for `address` now, with the connector's defaults, and return
    /// the address it is bound to (useful with port 0). Listener targets for either
    /// address then accept on it. Binding does not wait; the method is `async` so that
    /// it is called as [`SrtConnector::listen`](super::SrtConnector::listen) is.
    pub async fn listen(&self, address: SocketAddr) -> Result<SocketAddr, ConnectError> {
        let target = Target::new("", Protocol::Srt)
            .address(address)
            .parameter("mode", "listener");
        let params = SrtParams::from_target(&target, &self.defaults)?;
        let what = Described::new(&params);
        let shared = self.shared_listener(&params).map_err(|e| what.error(&e))?;
        Ok(shared.local_addr())
    }

    fn shared_listener(&self, params: &SrtParams) -> mirror_libsrt::Result<Arc<Shared>> {
        let held_callers = self.defaults.held_callers;
        self.listeners
            .get_or_bind(params.address, held_callers, || {
                let socket = self.new_socket(params, false)?;
                socket.bind(params.address)?;
                Ok(socket)
            })
    }

    /// A new socket set as `params` and this connector ask; with the passphrase when
    /// `secret`.
    fn new_socket(&self, params: &SrtParams, secret: bool) -> mirror_libsrt::Result<Socket> {
        let socket = Socket::new()?;
        if let Some(bytes) = self.udp_buffer {
            // Within MAX_UDP_BUFFER, which is below i32::MAX.
            socket.set_udp_buffers(i32::try_from(bytes).unwrap_or(i32::MAX))?;
        }
        if let Some(bytes) = self.defaults.srt_buffer {
            // Within MAX_SRT_BUFFER, which is below i32::MAX.
            socket.set_buffers(i32::try_from(bytes).unwrap_or(i32::MAX))?;
        }
        configure(&socket, params, secret)?;
        Ok(socket)
    }

    async fn connect(self, target: Target) -> Result<LibSrtConnection, ConnectError> {
        let params = SrtParams::from_target(&target, &self.defaults)?;
        let what = Described::new(&params);
        if params.mode == SrtMode::Listener {
            let shared = self.shared_listener(&params).map_err(|e| what.error(&e))?;
            let accept = accept_caller(&shared, &params);
            let accepted = match params.connect_timeout {
                Some(limit) => tokio::time::timeout(limit, accept).await.map_err(|_| {
                    ConnectError::new(
                        ConnectErrorKind::TimedOut,
                        format!("{what}: no caller within {limit:?}"),
                    )
                })?,
                None => accept.await,
            };
            let (socket, peer) = accepted.map_err(|_| {
                ConnectError::new(
                    ConnectErrorKind::Unreachable,
                    format!("{what}: the listening socket stopped"),
                )
            })?;
            let mut connection = LibSrtConnection::new(socket, &target, params.mode, peer, &params);
            // An accepted socket reports the wildcard address; the listener knows which.
            let listening = shared.local_addr();
            if connection
                .state
                .local_addr
                .is_none_or(|a| a.ip().is_unspecified())
            {
                connection.state.local_addr = Some(listening);
            }
            return Ok(connection);
        }
        let socket = self.new_socket(&params, true).map_err(|e| what.error(&e))?;
        if params.mode == SrtMode::Rendezvous {
            socket.set_rendezvous(true).map_err(|e| what.error(&e))?;
            let local = SocketAddr::new(
                unspecified(params.address),
                params.local_port.unwrap_or(params.address.port()),
            );
            socket
                .start_rendezvous(local, params.address)
                .map_err(|e| what.error(&e))?;
        } else {
            if let Some(id) = &params.stream_id {
                socket.set_stream_id(id).map_err(|e| what.error(&e))?;
            }
            if let Some(port) = params.local_port {
                socket
                    .bind(SocketAddr::new(unspecified(params.address), port))
                    .map_err(|e| what.error(&e))?;
            }
            socket
                .start_connect(params.address)
                .map_err(|e| what.error(&e))?;
        }
        poll_fn(|cx| socket.poll_connected(cx, params.address))
            .await
            .map_err(|e| what.error(&e))?;
        Ok(LibSrtConnection::new(
            socket,
            &target,
            params.mode,
            params.address,
            &params,
        ))
    }
}

/// The key length `params` require of callers, in bytes, when they set one with a
/// passphrase.
fn required_key_length(params: &SrtParams) -> Option<i32> {
    params.passphrase.as_ref()?;
    match params.key_size {
        KeySize::AES128 => Some(16),
        KeySize::AES192 => Some(24),
        KeySize::AES256 => Some(32),
        KeySize::Unspecified => None,
    }
}

/// The next caller of `params`' stream on `shared`. libsrt lets a caller's key length
/// win over the listener's; a listener that sets `pbkeylen` means it, so a caller
/// that chose a different one is closed (it sees its connection end at once) and the
/// next one awaited.
async fn accept_caller(
    shared: &Shared,
    params: &SrtParams,
) -> Result<super::libsrt_listener::Accepted, super::libsrt_listener::ListenerStopped> {
    let required = required_key_length(params);
    loop {
        let accepted = shared
            .accept(params.stream_id.clone(), params.passphrase.clone())
            .await?;
        let Some(bytes) = required else {
            return Ok(accepted);
        };
        match accepted.0.key_length() {
            Ok(agreed) if agreed == bytes => return Ok(accepted),
            agreed => tracing::warn!(
                stream_id = params.stream_id.as_deref().unwrap_or(""),
                peer = %accepted.1,
                key_length = ?agreed.ok(),
                required = bytes,
                "SRT caller closed: its key length is not the pbkeylen this listener requires"
            ),
        }
    }
}

fn unspecified(peer: SocketAddr) -> IpAddr {
    if peer.is_ipv6() {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    }
}

/// Set what the target asks for on a new socket; the passphrase too when `secret`
/// (a shared listener sets each stream's on its callers instead).
fn configure(socket: &Socket, params: &SrtParams, secret: bool) -> mirror_libsrt::Result<()> {
    socket.set_live()?;
    if let Some(latency) = params.latency {
        socket.set_latency(latency)?;
    }
    socket.set_peer_idle_timeout(params.peer_idle_timeout)?;
    if let Some(timeout) = params.connect_timeout {
        if params.mode != SrtMode::Listener {
            socket.set_connect_timeout(timeout)?;
        }
    }
    if let Some(passphrase) = params.passphrase.as_ref().filter(|_| secret) {
        socket.set_passphrase(passphrase.expose())?;
        let bytes = match params.key_size {
            KeySize::AES128 => 16,
            KeySize::AES192 => 24,
            KeySize::AES256 => 32,
            KeySize::Unspecified => 0,
        };
        if bytes != 0 {
            socket.set_key_length(bytes)?;
        }
    }
    if let Some(filter) = &params.packet_filter {
        socket.set_packet_filter(filter)?;
    }
    Ok(())
}

/// "SRT caller 127.0.0.1:9000 (stream cam1)", for errors.
struct Described {
    text: String,
}

impl Described {
    fn new(params: &SrtParams) -> Self {
        let mut text = format!("SRT {} {} (libsrt)", params.mode, params.address);
        if let Some(id) = &params.stream_id {
            text.push_str(&format!(" for stream {id:?}"));
        }
        Self { text }
    }

    /// A libsrt error as a connect error of the right kind: a wrong passphrase is
    /// `Unauthorized`, a refused stream or settings `Rejected` (neither retried), a
    /// peer that does not answer `TimedOut`, a busy one retryable.
    fn error(&self, e: &mirror_libsrt::Error) -> ConnectError {
        let kind = match e.reject_reason() {
            Some(RejectReason::Timeout) => ConnectErrorKind::TimedOut,
            // libsrt's reject codes are those of the handshake less 1000.
            Some(reason) => reject_kind(reason.code().saturating_add(1000)),
            None => match e.io_kind() {
                std::io::ErrorKind::TimedOut => ConnectErrorKind::TimedOut,
                std::io::ErrorKind::InvalidInput => ConnectErrorKind::InvalidTarget,
                _ => ConnectErrorKind::Unreachable,
            },
        };
        ConnectError::new(kind, format!("{}: {e}", self.text))
    }
}

impl fmt::Display for Described {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The future of [`LibSrtConnector`]: the handshake (or the wait for a caller).
#[must_use = "futures do nothing unless polled"]
pub struct LibSrtConnecting {
    inner: Pin<Box<dyn Future<Output = Result<LibSrtConnection, BoxError>> + Send>>,
}

impl fmt::Debug for LibSrtConnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibSrtConnecting").finish_non_exhaustive()
    }
}

impl Future for LibSrtConnecting {
    type Output = Result<LibSrtConnection, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl Service<Target> for LibSrtConnector {
    type Response = LibSrtConnection;
    type Error = BoxError;
    type Future = LibSrtConnecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let this = self.clone();
        LibSrtConnecting {
            inner: Box::pin(async move { this.connect(target).await.map_err(BoxError::from) }),
        }
    }
}

/// A live SRT connection on libsrt: a [`Connection`] whose stream yields the messages
/// the peer sends, and a [`Sink`] of [`Bytes`] to send it.
///
/// - Each message becomes a [`Packet`] stamped with its delivery time and SRT's own
///   sequence number: a gap is a packet SRT could not recover in time (dropped), so
///   health counts as lost exactly what SRT lost.
/// - [`rtt`](Connection::rtt) is libsrt's live, smoothed round-trip time.
/// - Packets libsrt could not decrypt come out as [`ConnectionError::Packet`] items.
/// - When the connection breaks after a silence of at least half the peer-idle
///   timeout, the peer vanished: the stream ends with [`ConnectionError::Network`]
///   carrying [`PeerVanished`](super::PeerVanished); when it breaks while packets were flowing, the peer
///   closed it, and the stream just ends.
pub struct LibSrtConnection {
    socket: Socket,
    state: ConnectionState,
    mode: SrtMode,
    peer_idle_timeout: Duration,
    stats: Stats,
    stats_read_at: Instant,
    polls_since_stats: u32,
    stats_seen: bool,
    decrypt_errors_counted: u64,
    undecryptable_pending: u64,
    buf: Box<[u8; MAX_PAYLOAD]>,
    /// The longest message the socket sends (`SRTO_PAYLOADSIZE`).
    max_message: usize,
    last_life: Instant,
    pending_send: Option<Bytes>,
    drain: Option<Drain>,
    linger_until: Option<Instant>,
    retry: Option<Pin<Box<tokio::time::Sleep>>>,
    ended: bool,
}

impl fmt::Debug for LibSrtConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LibSrtConnection")
            .field("stream_id", &self.state.stream_id)
            .field("mode", &self.mode)
            .field("remote_addr", &self.state.remote_addr)
            .field("rtt", &self.stats.rtt)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl LibSrtConnection {
    fn new(
        socket: Socket,
        target: &Target,
        mode: SrtMode,
        peer: SocketAddr,
        params: &SrtParams,
    ) -> Self {
        let mut state = ConnectionState::new(target.stream_id.clone(), Protocol::Srt);
        state.codec.clone_from(&target.codec);
        state.remote_addr = Some(socket.peer_addr().unwrap_or(peer));
        state.local_addr = socket.local_addr().ok();
        let p = &mut state.parameters;
        p.insert("srt.mode".to_owned(), mode.as_str().to_owned());
        p.insert("srt.backend".to_owned(), "libsrt".to_owned());
        if let Ok(latency) = socket.receive_latency() {
            p.insert("srt.latency_ms".to_owned(), latency.as_millis().to_string());
        }
        if let Some(filter) = socket.packet_filter().ok().filter(|f| !f.is_empty()) {
            p.insert("srt.packetfilter".to_owned(), filter);
        } else if let Some(filter) = &params.packet_filter {
            p.insert("srt.packetfilter".to_owned(), filter.clone());
        }
        let socket_payload_size = socket.payload_size().unwrap_or(DEFAULT_PAYLOAD_SIZE);
        let mut connection = Self {
            socket,
            state,
            mode,
            peer_idle_timeout: params.peer_idle_timeout,
            stats: Stats::default(),
            stats_read_at: Instant::now(),
            polls_since_stats: 0,
            stats_seen: false,
            decrypt_errors_counted: 0,
            undecryptable_pending: 0,
            buf: Box::new([0; MAX_PAYLOAD]),
            max_message: socket_payload_size,
            last_life: Instant::now(),
            pending_send: None,
            drain: None,
            linger_until: None,
            retry: None,
            ended: false,
        };
        connection.refresh_statistics();
        connection
    }

    /// How the connection was set up.
    pub fn mode(&self) -> SrtMode {
        self.mode
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.state.remote_addr
    }

    /// The peer-idle timeout in force: libsrt ends the connection after this long
    /// without a packet from the peer.
    pub fn peer_idle_timeout(&self) -> Duration {
        self.peer_idle_timeout
    }

    /// The latency libsrt agreed with the peer for delivery to us (libsrt's
    /// `SRTO_RCVLATENCY`); zero when libsrt cannot say.
    pub fn latency(&self) -> Duration {
        self.socket.receive_latency().unwrap_or_default()
    }

    /// The packet filter in force (`fec,…`), when there is one.
    pub fn packet_filter(&self) -> Option<&str> {
        self.state
            .parameters
            .get("srt.packetfilter")
            .map(String::as_str)
    }

    /// libsrt's counters, as last read.
    pub fn libsrt_statistics(&self) -> Stats {
        self.stats
    }

    /// The same counters in the form [`SrtConnection`](super::SrtConnection) gives
    /// them, with libsrt's live round-trip time.
    pub fn statistics(&self) -> SrtStatistics {
        let s = &self.stats;
        SrtStatistics {
            rtt: s.rtt,
            received_packets: s.received + s.received_control,
            received_data: s.received_unique,
            retransmitted: s.received_retransmitted,
            dropped: s.receive_dropped,
            decrypt_errors: s.undecrypted,
            sent_data: s.sent,
            sent_retransmitted: s.retransmitted,
            sender_lost: s.send_lost,
        }
    }

    fn refresh_statistics(&mut self) {
        self.polls_since_stats = 0;
        self.stats_read_at = Instant::now();
        let Ok(stats) = self.socket.stats() else {
            return;
        };
        if stats.received + stats.received_control
            > self.stats.received + self.stats.received_control
        {
            self.last_life = Instant::now();
        }
        if stats.undecrypted > self.decrypt_errors_counted {
            self.undecryptable_pending += stats.undecrypted - self.decrypt_errors_counted;
            self.decrypt_errors_counted = stats.undecrypted;
        }
        self.stats = stats;
        self.stats_seen = true;
        let p = &mut self.state.parameters;
        p.insert(
            "srt.rtt_ms".to_owned(),
            format!("{:.3}", stats.rtt.as_secs_f64() * 1000.0),
        );
        p.insert("srt.lost".to_owned(), stats.receive_dropped.to_string());
        p.insert(
            "srt.loss_reported".to_owned(),
            stats.receive_lost.to_string(),
        );
        p.insert(
            "srt.retransmitted".to_owned(),
            stats.received_retransmitted.to_string(),
        );
        p.insert(
            "srt.decrypt_errors".to_owned(),
            stats.undecrypted.to_string(),
        );
        p.insert("srt.sent".to_owned(), stats.sent.to_string());
        p.insert("srt.sender_lost".to_owned(), stats.send_lost.to_string());
        if stats.filter_rebuilt > 0 || stats.filter_lost > 0 {
            p.insert(
                "srt.fec_rebuilt".to_owned(),
                stats.filter_rebuilt.to_string(),
            );
            p.insert("srt.fec_lost".to_owned(), stats.filter_lost.to_string());
        }
    }

    fn undecryptable(&mut self) -> Option<Result<Packet, ConnectionError>> {
        if self.undecryptable_pending == 0 {
            return None;
        }
        self.undecryptable_pending -= 1;
        Some(Err(undecryptable()))
    }

    /// How the stream ends when the connection broke now: a vanished peer is an
    /// error, a closed one a plain end.
    fn end_for(&mut self, error: &mirror_libsrt::Error) -> Option<ConnectionError> {
        self.refresh_statistics();
        let silent = Instant::now().saturating_duration_since(self.last_life);
        tracing::debug!(stream_id = %self.state.stream_id, %error, "libsrt connection broke");
        end_of_connection(&self.state.stream_id, silent, self.peer_idle_timeout)
    }

    fn packet(&mut self, message: &mirror_libsrt::Message) -> Packet {
        let now = Instant::now();
        self.last_life = now;
        let len = message.len.min(self.buf.len());
        let packet = Packet::new(Bytes::copy_from_slice(&self.buf[..len]), now);
        match message.sequence {
            Some(sequence) => packet.with_sequence(Sequence::srt(sequence)),
            None => packet,
        }
    }

    /// The connection broke. libsrt keeps what it received but has not yet played
    /// (a peer that closes right after its last packet leaves up to one latency of
    /// them): read them at their play time before ending.
    fn broke(
        &mut self,
        cx: &mut Context<'_>,
        error: &mirror_libsrt::Error,
    ) -> Poll<Option<Result<Packet, ConnectionError>>> {
        let end = self.end_for(error);
        if self.socket.receive_buffered().unwrap_or(0) == 0 {
            self.ended = true;
            return Poll::Ready(end.map(Err));
        }
        let latency = self
            .socket
            .receive_latency()
            .unwrap_or(Duration::from_millis(120));
        self.drain = Some(Drain {
            until: Instant::now() + latency + DRAIN_GRACE,
            end,
        });
        self.poll_drain(cx)
    }

    /// Wait [`RETRY_EVERY`] before looking at a libsrt buffer again.
    fn poll_retry(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let at = Instant::now() + RETRY_EVERY;
        let retry = self
            .retry
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
        retry.as_mut().reset(at);
        retry.as_mut().poll(cx)
    }

    fn poll_drain(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Packet, ConnectionError>>> {
        loop {
            if let Ok(message) = self.socket.try_recv(&mut self.buf[..]) {
                return Poll::Ready(Some(Ok(self.packet(&message))));
            }
            let empty = self.socket.receive_buffered().unwrap_or(0) == 0;
            let over = self
                .drain
                .as_ref()
                .is_none_or(|drain| Instant::now() >= drain.until);
            if empty || over {
                self.ended = true;
                return Poll::Ready(self.drain.take().and_then(|d| d.end).map(Err));
            }
            std::task::ready!(self.poll_retry(cx));
        }
    }
}

impl Stream for LibSrtConnection {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(item) = this.undecryptable() {
            return Poll::Ready(Some(item));
        }
        this.polls_since_stats += 1;
        if !this.stats_seen || this.polls_since_stats >= STATS_EVERY {
            this.refresh_statistics();
        }
        if this.drain.is_some() {
            return this.poll_drain(cx);
        }
        match this.socket.poll_recv(cx, &mut this.buf[..]) {
            Poll::Ready(Ok(message)) => Poll::Ready(Some(Ok(this.packet(&message)))),
            Poll::Ready(Err(error)) => this.broke(cx, &error),
            Poll::Pending => {
                if this.stats_read_at.elapsed() >= STATS_INTERVAL {
                    this.refresh_statistics();
                }
                match this.undecryptable() {
                    Some(item) => Poll::Ready(Some(item)),
                    None => Poll::Pending,
                }
            }
        }
    }
}

impl Connection for LibSrtConnection {
    fn state(&self) -> ConnectionState {
        self.state.clone()
    }

    fn rtt(&self) -> Option<Duration> {
        (!self.stats.rtt.is_zero()).then_some(self.stats.rtt)
    }
}

fn closed(error: mirror_libsrt::Error) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::BrokenPipe,
        format!("SRT connection closed: {error}"),
    )
}

impl Sink<Bytes> for LibSrtConnection {
    type Error = std::io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.as_mut().poll_flush(cx)
    }

    /// A message longer than the socket's payload size (1316 bytes unless set) is
    /// an [`InvalidInput`](std::io::ErrorKind::InvalidInput) error and is not sent;
    /// the connection stays up.
    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), Self::Error> {
        if item.len() > self.max_message {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!(
                    "SRT message of {} bytes: this connection sends at most {}",
                    item.len(),
                    self.max_message
                ),
            ));
        }
        self.pending_send = Some(item);
        Ok(())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        let this = &mut *self;
        if let Some(item) = &this.pending_send {
            match this.socket.poll_send(cx, item) {
                Poll::Ready(Ok(_)) => this.pending_send = None,
                Poll::Ready(Err(e)) => {
                    this.pending_send = None;
                    return Poll::Ready(Err(closed(e)));
                }
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Flush, give libsrt up to 1 s to deliver what it still holds to
    /// send, then close: the peer gets SRT's shutdown and the stream ends.
    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        std::task::ready!(self.as_mut().poll_flush(cx))?;
        let this = &mut *self;
        let until = *this
            .linger_until
            .get_or_insert(Instant::now() + CLOSE_LINGER);
        while Instant::now() < until && this.socket.send_buffered().unwrap_or(0) > 0 {
            std::task::ready!(this.poll_retry(cx));
        }
        this.socket.close();
        this.ended = true;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new socket as `connector` makes it for a caller target.
    fn socket_of(connector: &LibSrtConnector) -> Result<Socket, BoxError> {
        let target =
            Target::new("cam", Protocol::Srt).address(SocketAddr::from(([127, 0, 0, 1], 9000)));
        let params = SrtParams::from_target(&target, &connector.defaults)?;
        Ok(connector.new_socket(&params, true)?)
    }

    /// The UDP buffers libsrt is asked for on a new socket, receive and send.
    fn asked(connector: &LibSrtConnector) -> Result<(i32, i32), BoxError> {
        Ok(socket_of(connector)?.udp_buffers()?)
    }

    #[test]
    fn the_udp_buffers_asked_for_are_the_connectors_within_bounds() -> Result<(), BoxError> {
        // libsrt's own unless set: 8 192 packets of 1 500 bytes in, 64 KiB out.
        assert_eq!(asked(&LibSrtConnector::new())?, (8192 * 1500, 65536));
        assert_eq!(
            asked(&LibSrtConnector::new().udp_buffer(1 << 20))?,
            (1 << 20, 1 << 20)
        );
        let least = i32::try_from(super::super::MIN_UDP_BUFFER)?;
        assert_eq!(
            asked(&LibSrtConnector::new().udp_buffer(0))?,
            (least, least)
        );
        let most = i32::try_from(super::super::MAX_UDP_BUFFER)?;
        assert_eq!(
            asked(&LibSrtConnector::new().udp_buffer(u64::MAX))?,
            (most, most)
        );
        // The sockets are gone: libsrt's cleanup finished before the process may end.
        let _ = mirror_libsrt::wait_cleaned_up();
        Ok(())
    }

    #[test]
    fn the_srt_buffers_asked_for_are_the_connectors_within_bounds() -> Result<(), BoxError> {
        use crate::protocol::srt::{DEFAULT_SRT_BUFFER, MAX_SRT_BUFFER, MIN_SRT_BUFFER};
        let asked = |connector: &LibSrtConnector| -> Result<(i32, i32), BoxError> {
            Ok(socket_of(connector)?.buffers()?)
        };
        let both = |bytes: u64| -> Result<(i32, i32), BoxError> {
            let bytes = i32::try_from(bytes)?;
            Ok((bytes, bytes))
        };
        // libsrt's own unless set, which is what the constant says.
        assert_eq!(asked(&LibSrtConnector::new())?, both(DEFAULT_SRT_BUFFER)?);
        assert_eq!(
            asked(&LibSrtConnector::new().srt_buffer(1_000 * 1_472))?,
            both(1_000 * 1_472)?
        );
        assert_eq!(
            asked(&LibSrtConnector::new().srt_buffer(0))?,
            both(MIN_SRT_BUFFER)?
        );
        assert_eq!(
            asked(&LibSrtConnector::new().srt_buffer(u64::MAX))?,
            both(MAX_SRT_BUFFER)?
        );
        let _ = mirror_libsrt::wait_cleaned_up();
        Ok(())
    }
}
