use std::fmt;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::io::ReadBuf;
use tokio::net::UdpSocket;
use tokio::time::{Instant, Sleep};

use crate::connection::{
    Connection, ConnectionError, ConnectionState, ConnectionStatistics, Packet, Protocol, Target,
};

use super::error::SessionTimedOut;
use super::receiver::RtpReceiver;
use super::session::SessionConfig;
use super::stats::RtpStatistics;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_536;

/// A live RTP session on a bound UDP socket: a [`Connection`] whose packets are whole
/// RTP packets (header included), numbered with their RTP sequence number.
///
/// Made by [`RtpConnector`](super::RtpConnector); see the [module docs](super) for
/// what it checks and reports. [`RtpReceiver`] is the same session without the socket.
pub struct RtpConnection {
    socket: UdpSocket,
    buf: Box<[u8]>,
    receiver: RtpReceiver,
    base: ConnectionState,
    remote: Option<SocketAddr>,
    local: Option<SocketAddr>,
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
            .field("statistics", &self.receiver.statistics())
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
        let receiver = RtpReceiver::with_config(target, config, started, base.start_time);
        Self {
            socket,
            buf: vec![0u8; MAX_DATAGRAM].into_boxed_slice(),
            receiver,
            base,
            remote: None,
            local,
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
        self.receiver.statistics()
    }

    /// Judge one datagram of `len` bytes in `buf`: a packet, an error item, or
    /// nothing (RTCP, skipped).
    fn on_datagram(
        &mut self,
        len: usize,
        from: SocketAddr,
    ) -> Option<Result<Packet, ConnectionError>> {
        let item = self.receiver.receive(&self.buf[..len], Instant::now());
        if let Some(Ok(_)) = item {
            self.remote = Some(from);
        }
        item
    }

    fn poll_timeout(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Packet, ConnectionError>>> {
        loop {
            ready!(self.timer.as_mut().poll(cx));
            // The timer is only moved when it fires, not on every packet.
            let last = self
                .receiver
                .session
                .last_accepted()
                .unwrap_or(self.receiver.started);
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
        let receiver = &self.receiver;
        state.statistics = ConnectionStatistics {
            packets_received: receiver.packets,
            bytes_received: receiver.bytes,
            packet_errors: receiver.errors,
            uptime: receiver.started.elapsed(),
        };
        state.last_activity =
            receiver.wall(receiver.session.last_accepted().unwrap_or(receiver.started));
        receiver.session.write_parameters(&mut state.parameters);
        state
    }

    fn restore(&mut self, state: &ConnectionState) {
        if self.base.codec.is_none() {
            self.base.codec.clone_from(&state.codec);
        }
        self.receiver.session.restore(&state.parameters);
    }
}
