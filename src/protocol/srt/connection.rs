use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use futures_sink::Sink;
use srt_tokio::{SocketStatistics, SrtSocket};
use tokio::time::Instant;

use super::error::{end_of_connection, undecryptable};
use super::farewell::{Farewell, FarewellSocket};
use super::listener::SharedListener;
use super::SrtMode;
use crate::connection::{
    Connection, ConnectionError, ConnectionState, Packet, Protocol, Sequence, Target,
};

/// Packets between two looks at SRT's statistics while packets keep coming (they are
/// also read whenever the socket has nothing to deliver).
const STATS_EVERY: u32 = 64;

/// What SRT itself counted on a connection, as last published by srt-tokio (every
/// statistics interval, 250 ms here).
///
/// srt-tokio 0.4 publishes no live round-trip time: [`rtt`](Self::rtt) is the one
/// measured during the handshake.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SrtStatistics {
    /// The round-trip time measured during the handshake.
    pub rtt: Duration,
    /// Every SRT packet received, data and control.
    pub received_packets: u64,
    /// Unique data packets received.
    pub received_data: u64,
    /// Data packets received as retransmissions (recovered losses).
    pub retransmitted: u64,
    /// Data packets SRT gave up on: too late to deliver, dropped at the sender's
    /// request, or no room. Lost for good.
    pub dropped: u64,
    /// Data packets that could not be decrypted.
    pub decrypt_errors: u64,
    /// Data packets sent, retransmissions included.
    pub sent_data: u64,
    /// Data packets sent again after a loss report.
    pub sent_retransmitted: u64,
    /// Data packets the sender learned were lost.
    pub sender_lost: u64,
}

impl SrtStatistics {
    fn from_socket(rtt: Duration, s: &SocketStatistics) -> Self {
        Self {
            rtt,
            received_packets: s.rx_all_packets,
            received_data: s.rx_unique_data,
            retransmitted: s.rx_retransmit_data,
            dropped: s.rx_dropped_data,
            decrypt_errors: s.rx_decrypt_errors,
            sent_data: s.tx_data,
            sent_retransmitted: s.tx_retransmit_data,
            sender_lost: s.tx_loss_data,
        }
    }
}

/// A live SRT connection: a [`Connection`] whose stream yields the messages the peer
/// sends, and a [`Sink`] of [`Bytes`] to send to the peer.
///
/// - Each message becomes a [`Packet`] stamped with its delivery time (after SRT's
///   latency buffer).
/// - SRT's own packet sequence numbers are not visible once srt-tokio has reassembled
///   and reordered the stream, so packets carry a *delivery* sequence: one step per
///   message delivered, plus one for every packet SRT reports it gave up on (dropped
///   too late). The health layer thus counts as lost exactly what SRT could not
///   recover. SRT publishes its counters every 250 ms, so a gap shows on a packet up to
///   that much after the loss.
/// - Packets SRT could not decrypt come out as
///   [`ConnectionError::Packet`] items, one for each.
/// - When SRT's peer-idle timeout ends the connection (the peer vanished), the stream
///   ends with [`ConnectionError::Network`] carrying [`PeerVanished`](super::PeerVanished); when the peer
///   closed it (SRT shutdown), the stream simply ends. See the module docs for how the
///   two are told apart.
pub struct SrtConnection {
    socket: SrtSocket,
    /// Keeps the shared listener (and so this connection's UDP socket) alive.
    _listener: Option<Arc<SharedListener>>,
    /// The shutdown said again once this is dropped.
    farewell: Option<Farewell>,
    state: ConnectionState,
    mode: SrtMode,
    rtt: Duration,
    peer_idle_timeout: Duration,
    stats: SrtStatistics,
    stats_seen: bool,
    polls_since_stats: u32,
    /// When the peer last showed it was alive (a packet of any kind, as far as we can see).
    last_life: Instant,
    sequence: u32,
    dropped_counted: u64,
    decrypt_errors_counted: u64,
    undecryptable_pending: u64,
    packets: u64,
    bytes: u64,
    errors: u64,
    connected_at: Instant,
    last_packet: Option<Instant>,
    ended: bool,
}

impl fmt::Debug for SrtConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SrtConnection")
            .field("stream_id", &self.state.stream_id)
            .field("mode", &self.mode)
            .field("remote_addr", &self.state.remote_addr)
            .field("rtt", &self.rtt)
            .field("packets", &self.packets)
            .field("ended", &self.ended)
            .finish_non_exhaustive()
    }
}

impl Drop for SrtConnection {
    fn drop(&mut self) {
        if let Some(farewell) = self.farewell.take() {
            farewell.send();
        }
    }
}

impl SrtConnection {
    pub(crate) fn new(
        socket: SrtSocket,
        target: &Target,
        mode: SrtMode,
        local_addr: Option<SocketAddr>,
        listener: Option<Arc<SharedListener>>,
        farewell: Option<FarewellSocket>,
    ) -> Self {
        let settings = socket.settings();
        let farewell = farewell.map(|socket| {
            Farewell::new(
                socket,
                settings.remote,
                settings.remote_sockid,
                settings.socket_start_time,
            )
        });
        let rtt = settings.rtt;
        let peer_idle_timeout = settings.peer_idle_timeout;
        let mut state = ConnectionState::new(target.stream_id.clone(), Protocol::Srt);
        state.codec.clone_from(&target.codec);
        state.remote_addr = Some(settings.remote);
        state.local_addr = local_addr;
        state
            .parameters
            .insert("srt.mode".to_owned(), mode.as_str().to_owned());
        state.parameters.insert(
            "srt.latency_ms".to_owned(),
            settings.recv_tsbpd_latency.as_millis().to_string(),
        );
        // Start the delivery sequence where SRT's own starts, so numbers look familiar
        // in logs; only differences matter.
        let sequence = settings.init_seq_num.as_raw() & 0x7fff_ffff;
        let now = Instant::now();
        let mut conn = Self {
            socket,
            _listener: listener,
            farewell,
            state,
            mode,
            rtt,
            peer_idle_timeout,
            stats: SrtStatistics {
                rtt,
                ..SrtStatistics::default()
            },
            stats_seen: false,
            polls_since_stats: 0,
            last_life: now,
            sequence,
            dropped_counted: 0,
            decrypt_errors_counted: 0,
            undecryptable_pending: 0,
            packets: 0,
            bytes: 0,
            errors: 0,
            connected_at: now,
            last_packet: None,
            ended: false,
        };
        conn.write_parameters();
        conn
    }

    /// How the connection was set up.
    pub fn mode(&self) -> SrtMode {
        self.mode
    }

    /// The peer's address.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.state.remote_addr
    }

    /// What SRT counted, as of its last report.
    pub fn statistics(&self) -> SrtStatistics {
        self.stats
    }

    /// The peer-idle timeout in force: SRT ends the connection after this long without
    /// a packet from the peer.
    pub fn peer_idle_timeout(&self) -> Duration {
        self.peer_idle_timeout
    }

    /// The latency SRT agreed with the peer for delivery to us.
    pub fn latency(&self) -> Duration {
        self.socket.settings().recv_tsbpd_latency
    }

    fn write_parameters(&mut self) {
        let s = self.stats;
        let p = &mut self.state.parameters;
        p.insert(
            "srt.rtt_ms".to_owned(),
            format!("{:.3}", s.rtt.as_secs_f64() * 1000.0),
        );
        p.insert("srt.lost".to_owned(), s.dropped.to_string());
        p.insert("srt.retransmitted".to_owned(), s.retransmitted.to_string());
        p.insert(
            "srt.decrypt_errors".to_owned(),
            s.decrypt_errors.to_string(),
        );
        p.insert("srt.sent".to_owned(), s.sent_data.to_string());
        p.insert("srt.sender_lost".to_owned(), s.sender_lost.to_string());
    }

    /// Take in every statistics report srt-tokio has published since the last look.
    fn poll_statistics(&mut self, cx: &mut Context<'_>) {
        self.polls_since_stats = 0;
        let mut latest = None;
        while let Poll::Ready(Some(stats)) = Pin::new(self.socket.statistics()).poll_next(cx) {
            latest = Some(stats);
        }
        let Some(stats) = latest else { return };
        let now = Instant::now();
        let new = SrtStatistics::from_socket(self.rtt, &stats);
        if new.received_packets > self.stats.received_packets {
            self.last_life = self.last_life.max(now);
        }
        if new.decrypt_errors > self.decrypt_errors_counted {
            self.undecryptable_pending += new.decrypt_errors - self.decrypt_errors_counted;
            self.decrypt_errors_counted = new.decrypt_errors;
        }
        self.stats = new;
        self.stats_seen = true;
        self.write_parameters();
    }

    /// The next delivery sequence number, counting what SRT dropped since the last one
    /// as a gap.
    #[inline]
    fn next_sequence(&mut self) -> Sequence {
        let dropped = self.stats.dropped.saturating_sub(self.dropped_counted);
        self.dropped_counted = self.stats.dropped;
        // Wrapping in 31 bits, as SRT's own numbers do; a gap larger than the space is
        // not meaningful anyway.
        let gap = u32::try_from(dropped.min(0x3fff_ffff)).unwrap_or(0x3fff_ffff);
        self.sequence = self.sequence.wrapping_add(gap) & 0x7fff_ffff;
        let seq = Sequence::srt(self.sequence);
        self.sequence = self.sequence.wrapping_add(1) & 0x7fff_ffff;
        seq
    }

    /// The stream ended: a vanished peer is an error, a closed one a plain end.
    fn ended_item(&mut self) -> Option<Result<Packet, ConnectionError>> {
        self.ended = true;
        let silent = Instant::now().saturating_duration_since(self.last_life);
        end_of_connection(&self.state.stream_id, silent, self.peer_idle_timeout).map(Err)
    }
}

impl Stream for SrtConnection {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        if this.undecryptable_pending > 0 {
            this.undecryptable_pending -= 1;
            this.errors += 1;
            return Poll::Ready(Some(Err(undecryptable())));
        }
        this.polls_since_stats += 1;
        if !this.stats_seen || this.polls_since_stats >= STATS_EVERY {
            this.poll_statistics(cx);
        }
        match Pin::new(&mut this.socket).poll_next(cx) {
            Poll::Ready(Some(Ok((_origin, payload)))) => {
                let now = Instant::now();
                this.last_life = now;
                this.last_packet = Some(now);
                this.packets += 1;
                this.bytes += payload.len() as u64;
                let sequence = this.next_sequence();
                Poll::Ready(Some(Ok(Packet::new(payload, now).with_sequence(sequence))))
            }
            Poll::Ready(Some(Err(error))) => {
                this.ended = true;
                Poll::Ready(Some(Err(ConnectionError::Network(Box::new(error)))))
            }
            Poll::Ready(None) => {
                // The last reports tell whether the peer was alive until the end.
                this.poll_statistics(cx);
                Poll::Ready(this.ended_item())
            }
            Poll::Pending => {
                this.poll_statistics(cx);
                if this.undecryptable_pending > 0 {
                    this.undecryptable_pending -= 1;
                    this.errors += 1;
                    return Poll::Ready(Some(Err(undecryptable())));
                }
                Poll::Pending
            }
        }
    }
}

impl Connection for SrtConnection {
    fn state(&self) -> ConnectionState {
        let mut state = self.state.clone();
        state.statistics.packets_received = self.packets;
        state.statistics.bytes_received = self.bytes;
        state.statistics.packet_errors = self.errors;
        let now = Instant::now();
        state.statistics.uptime = now.saturating_duration_since(self.connected_at);
        if let Some(last) = self.last_packet {
            state.last_activity =
                state.start_time + last.saturating_duration_since(self.connected_at);
        }
        state
    }

    fn restore(&mut self, saved: &ConnectionState) {
        if self.state.codec.is_none() {
            self.state.codec.clone_from(&saved.codec);
        }
    }

    fn rtt(&self) -> Option<Duration> {
        Some(self.rtt)
    }
}

fn closed(error: impl fmt::Debug) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotConnected,
        format!("SRT connection closed: {error:?}"),
    )
}

/// Sending to the peer: each item is one SRT message, stamped with the current time as
/// its origin. Keep items to at most 1316 bytes (seven MPEG-TS packets), SRT's live
/// payload size, so each travels as one SRT packet.
///
/// Closing sends SRT's shutdown once the peer has acknowledged what was sent. A
/// receiver may drop what it has received but not yet released (srt-tokio 0.4 does):
/// when the last packets matter, wait the latency before closing.
impl Sink<Bytes> for SrtConnection {
    type Error = io::Error;

    fn poll_ready(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.socket).poll_ready(cx).map_err(closed)
    }

    fn start_send(mut self: Pin<&mut Self>, item: Bytes) -> Result<(), Self::Error> {
        Pin::new(&mut self.socket)
            .start_send((std::time::Instant::now(), item))
            .map_err(closed)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.socket).poll_flush(cx).map_err(closed)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Pin::new(&mut self.socket).poll_close(cx).map_err(closed)
    }
}
