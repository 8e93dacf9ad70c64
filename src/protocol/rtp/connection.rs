use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use bytes::BytesMut;
use futures_core::Stream;
use rtp_types::RtpPacket;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::time::{Instant, Sleep};

use crate::connection::{
    Connection, ConnectionError, ConnectionState, ConnectionStatistics, Packet, Protocol, Sequence,
    Target,
};

use super::error::{RtpPacketError, SessionTimedOut};
use super::session::{Header, Session, SessionConfig};
use super::stats::RtpStatistics;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;
/// Packets are copied into shared blocks of this size: one allocation per few
/// hundred packets instead of one per packet.
const BLOCK: usize = 256 * 1024;

/// A live RTP session on a bound UDP socket: a [`Connection`] whose packets are whole
/// RTP packets (header included), numbered with their RTP sequence number.
///
/// Made by [`RtpConnector`](super::RtpConnector); see the [module docs](super) for
/// what it checks and reports.
pub struct RtpConnection {
    socket: UdpSocket,
    buf: Box<[u8]>,
    block: BytesMut,
    session: Session,
    base: ConnectionState,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
    started: Instant,
    started_wall: SystemTime,
    packets: u64,
    bytes: u64,
    errors: u64,
    timeout: Duration,
    retry_on_timeout: bool,
    timer: Pin<Box<Sleep>>,
    ended: bool,
}

impl fmt::Debug for RtpConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpConnection")
            .field("stream_id", &self.base.stream_id)
            .field("local_addr", &self.local)
            .field("remote_addr", &self.remote)
            .field("statistics", &self.session.statistics())
            .finish_non_exhaustive()
    }
}

impl RtpConnection {
    pub(crate) fn new(
        socket: UdpSocket,
        target: &Target,
        config: SessionConfig,
        timeout: Duration,
        retry_on_timeout: bool,
    ) -> Self {
        let started = Instant::now();
        let local = socket.local_addr().ok();
        let mut base = ConnectionState::new(target.stream_id.clone(), Protocol::Rtp);
        base.codec.clone_from(&target.codec);
        base.local_addr = local;
        let mut session = Session::new(config, started);
        // Saved continuity comes in the target's parameters (StateRestoreLayer puts it
        // there) and again through `restore`; either is enough.
        session.restore(&target.parameters);
        Self {
            socket,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            block: BytesMut::with_capacity(BLOCK),
            session,
            started_wall: base.start_time,
            base,
            remote: None,
            local,
            started,
            packets: 0,
            bytes: 0,
            errors: 0,
            timeout,
            retry_on_timeout,
            timer: Box::pin(tokio::time::sleep_until(started + timeout)),
            ended: false,
        }
    }

    /// The address the session's socket is bound to.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local
    }

    /// Where the last accepted packet came from.
    pub fn remote_addr(&self) -> Option<SocketAddr> {
        self.remote
    }

    /// What the session measured so far.
    pub fn statistics(&self) -> RtpStatistics {
        self.session.statistics()
    }

    /// The wall-clock time of `at`, from the connection's start (no clock read).
    fn wall(&self, at: Instant) -> SystemTime {
        self.started_wall + at.saturating_duration_since(self.started)
    }

    fn error(&mut self, error: RtpPacketError) -> Option<Result<Packet, ConnectionError>> {
        self.errors += 1;
        Some(Err(ConnectionError::Packet(Box::new(error))))
    }

    /// Judge one datagram of `len` bytes in `buf`: a packet, an error item, or
    /// nothing (RTCP, skipped).
    fn on_datagram(
        &mut self,
        len: usize,
        from: SocketAddr,
    ) -> Option<Result<Packet, ConnectionError>> {
        let now = Instant::now();
        let data = &self.buf[..len];
        // RFC 5761: payload types 64–95 are RTCP (SR, RR, SDES, BYE, APP) sharing the port.
        if len >= 2 && data[0] >> 6 == 2 && (64..=95).contains(&(data[1] & 0x7f)) {
            self.session.rtcp += 1;
            return None;
        }
        let header = match RtpPacket::parse(data) {
            Ok(p) => Header {
                ssrc: p.ssrc(),
                payload_type: p.payload_type(),
                sequence: p.sequence_number(),
                timestamp: p.timestamp(),
            },
            Err(e) => {
                self.session.invalid += 1;
                return self.error(RtpPacketError::NotRtp {
                    reason: e.to_string(),
                    len,
                });
            }
        };
        let wall = self.wall(now);
        let accepted = match self.session.on_packet(&header, now, wall) {
            Ok(a) => a,
            Err(e) => return self.error(e),
        };
        self.remote = Some(from);
        self.packets += 1;
        self.bytes += len as u64;
        if self.block.capacity() < len {
            self.block = BytesMut::with_capacity(BLOCK.max(len));
        }
        self.block.extend_from_slice(&self.buf[..len]);
        if accepted.rewritten {
            // Fixed header: sequence number at bytes 2–3, timestamp at 4–7.
            self.block[2..4].copy_from_slice(&accepted.sequence.to_be_bytes());
            self.block[4..8].copy_from_slice(&accepted.timestamp.to_be_bytes());
        }
        let packet = Packet::new(self.block.split().freeze(), now)
            .with_sequence(Sequence::rtp(accepted.sequence));
        Some(Ok(packet))
    }

    fn poll_timeout(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Packet, ConnectionError>>> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            // The timer is only moved when it fires, not on every packet.
            let last = self.session.last_accepted().unwrap_or(self.started);
            let deadline = last + self.timeout;
            if deadline > Instant::now() {
                self.timer.as_mut().reset(deadline);
                continue;
            }
            self.ended = true;
            tracing::warn!(
                stream_id = %self.base.stream_id,
                timeout = ?self.timeout,
                "RTP session timed out"
            );
            return Poll::Ready(if self.retry_on_timeout {
                Some(Err(ConnectionError::Network(Box::new(SessionTimedOut {
                    after: self.timeout,
                }))))
            } else {
                None
            });
        }
    }
}

fn is_transient(error: &io::Error) -> bool {
    // ICMP errors from earlier sends and interrupted calls say nothing about the socket.
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

impl Stream for RtpConnection {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        loop {
            let mut read = ReadBuf::new(&mut this.buf);
            match this.socket.poll_recv_from(cx, &mut read) {
                Poll::Ready(Ok(from)) => {
                    let len = read.filled().len();
                    if let Some(item) = this.on_datagram(len, from) {
                        return Poll::Ready(Some(item));
                    }
                }
                Poll::Ready(Err(error)) if is_transient(&error) => {}
                Poll::Ready(Err(error)) => {
                    this.ended = true;
                    return Poll::Ready(Some(Err(ConnectionError::Network(Box::new(error)))));
                }
                Poll::Pending => break,
            }
        }
        this.poll_timeout(cx)
    }
}

impl Connection for RtpConnection {
    fn state(&self) -> ConnectionState {
        let mut state = self.base.clone();
        state.remote_addr = self.remote;
        state.statistics = ConnectionStatistics {
            packets_received: self.packets,
            bytes_received: self.bytes,
            packet_errors: self.errors,
            uptime: self.started.elapsed(),
        };
        state.last_activity = self.wall(self.session.last_accepted().unwrap_or(self.started));
        self.session.write_parameters(&mut state.parameters);
        state
    }

    fn restore(&mut self, state: &ConnectionState) {
        if self.base.codec.is_none() {
            self.base.codec.clone_from(&state.codec);
        }
        self.session.restore(&state.parameters);
    }
}
