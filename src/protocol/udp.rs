//! Raw UDP datagrams (for example MPEG-TS over UDP) as a connection.
//!
//! [`UdpConnector`] binds the target's address and hands out each datagram as a
//! [`Packet`] without a sequence number (UDP has none). "Reconnecting" rebinds the
//! port. Since a bound UDP socket never fails on its own, silence is the only sign of
//! trouble: the failure detector's silence check is what ends a connection here.
//!
//! ```no_run
//! use mirror_reconnect::prelude::*;
//! use mirror_reconnect::protocol::udp::UdpConnector;
//!
//! # async fn run() -> Result<(), mirror_reconnect::BoxError> {
//! let target = Target::new("ts-feed", Protocol::Udp).address("127.0.0.1:5000".parse()?);
//! let packets = ReconnectionConfig::default().reconnecting(UdpConnector::new(), target);
//! # drop(packets); Ok(()) }
//! ```

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::BytesMut;
use futures_core::Stream;
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tower_service::Service;

use crate::connection::{Connection, ConnectionError, ConnectionState, Packet, Protocol, Target};
use crate::error::{BoxError, ConnectError, ConnectErrorKind};

/// The largest datagram accepted (the UDP maximum).
const MAX_DATAGRAM: usize = 65_535;
/// Bytes allocated at a time for received datagrams.
const RECEIVE_BUFFER: usize = 4 * MAX_DATAGRAM;

/// Binds the target's address and receives raw datagrams.
#[derive(Debug, Clone, Default)]
pub struct UdpConnector {
    _private: (),
}

impl UdpConnector {
    /// A connector.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Service<Target> for UdpConnector {
    type Response = UdpConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<UdpConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        Box::pin(async move {
            let address = target.address.ok_or_else(|| {
                ConnectError::new(
                    ConnectErrorKind::InvalidTarget,
                    format!("UDP stream {:?} has no address to bind", target.stream_id),
                )
            })?;
            let socket = UdpSocket::bind(address).await.map_err(|e| {
                let kind = if e.kind() == io::ErrorKind::AddrNotAvailable {
                    ConnectErrorKind::InvalidTarget
                } else {
                    ConnectErrorKind::Unreachable
                };
                ConnectError::new(kind, format!("cannot bind UDP {address}")).with_source(e)
            })?;
            let mut state = ConnectionState::new(target.stream_id.clone(), Protocol::Udp);
            state.local_addr = socket.local_addr().ok();
            state.codec.clone_from(&target.codec);
            state.parameters.clone_from(&target.parameters);
            Ok(UdpConnection {
                socket,
                buffer: BytesMut::with_capacity(MAX_DATAGRAM),
                state,
                last_peer: None,
            })
        })
    }
}

/// A bound UDP socket as a [`Connection`].
#[derive(Debug)]
pub struct UdpConnection {
    socket: UdpSocket,
    buffer: BytesMut,
    state: ConnectionState,
    last_peer: Option<SocketAddr>,
}

impl UdpConnection {
    /// The address the socket is bound to.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.socket.local_addr()
    }
}

impl Stream for UdpConnection {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        loop {
            if this.buffer.capacity() < MAX_DATAGRAM {
                // One allocation serves many datagrams: each packet's payload is a
                // frozen slice of it, handed downstream without a copy.
                this.buffer.reserve(RECEIVE_BUFFER);
            }
            if let Err(e) = std::task::ready!(this.socket.poll_recv_ready(cx)) {
                return Poll::Ready(Some(Err(ConnectionError::Network(e.into()))));
            }
            match this.socket.try_recv_buf_from(&mut this.buffer) {
                Ok((len, peer)) => {
                    this.last_peer = Some(peer);
                    let payload = this.buffer.split_to(len).freeze();
                    return Poll::Ready(Some(Ok(Packet::new(payload, Instant::now()))));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                // An ICMP error from an earlier send, say: one bad packet, not the end
                // of the socket.
                Err(e) => return Poll::Ready(Some(Err(ConnectionError::Packet(e.into())))),
            }
        }
    }
}

impl Connection for UdpConnection {
    fn state(&self) -> ConnectionState {
        let mut state = self.state.clone();
        state.remote_addr = self.last_peer;
        state
    }
}
