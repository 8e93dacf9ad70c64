//! What a dropped srt-tokio connection says to its peer: SRT's shutdown, again.

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::BytesMut;
use srt_protocol::packet::{ControlPacket, ControlTypes, Packet, SocketId, TimeStamp};

/// When, after a connection is dropped, its shutdown is said again.
const FAREWELL_REPEATS: [Duration; 4] = [
    Duration::from_millis(100),
    Duration::from_millis(200),
    Duration::from_millis(400),
    Duration::from_millis(800),
];

/// The UDP socket a connection's packets leave from, for its farewell: the shared
/// listener's, or a caller's own.
#[derive(Debug, Clone)]
pub(crate) enum FarewellSocket {
    /// Held by the shared listener: the repeats stop once it is gone, so its port is
    /// never kept bound by them.
    Listener(Weak<std::net::UdpSocket>),
    /// A caller's own socket on a port of the kernel's choosing, kept for the repeats.
    Own(Arc<std::net::UdpSocket>),
}

impl FarewellSocket {
    fn get(&self) -> Option<Arc<std::net::UdpSocket>> {
        match self {
            Self::Listener(socket) => socket.upgrade(),
            Self::Own(socket) => Some(Arc::clone(socket)),
        }
    }
}

/// SRT's shutdown to the peer, said once at once and again over 1.5 s.
///
/// srt-tokio says it once, when the socket is dropped. Lost (a loss burst) while
/// the peer goes on sending, srt-tokio's connection never ends, since its receive
/// buffer never empties, and goes on acknowledging: the peer never learns the
/// connection is gone and never calls again. For a listener that was a stream stuck
/// until its sender restarted. Said five times, one loss is harmless; a datagram
/// to a connection that has already ended is ignored by its socket id.
#[derive(Debug)]
pub(crate) struct Farewell {
    socket: FarewellSocket,
    remote: SocketAddr,
    remote_sockid: SocketId,
    start: std::time::Instant,
}

impl Farewell {
    /// The farewell of a connection to `remote_sockid` at `remote`, started at `start`.
    pub(crate) fn new(
        socket: FarewellSocket,
        remote: SocketAddr,
        remote_sockid: SocketId,
        start: std::time::Instant,
    ) -> Self {
        Self {
            socket,
            remote,
            remote_sockid,
            start,
        }
    }

    /// Say it now, and again over 1.5 s (when on a runtime).
    pub(crate) fn send(self) {
        let micros = u32::try_from(self.start.elapsed().as_micros() % (1 << 32)).unwrap_or(0);
        let packet = Packet::Control(ControlPacket {
            timestamp: TimeStamp::from_micros(micros),
            dest_sockid: self.remote_sockid,
            control_type: ControlTypes::Shutdown,
        });
        let mut datagram = BytesMut::new();
        packet.serialize(&mut datagram);
        let datagram = datagram.freeze();
        let remote = self.remote;
        if let Some(socket) = self.socket.get() {
            let _ = socket.send_to(&datagram, remote);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let socket = self.socket;
        runtime.spawn(async move {
            for wait in FAREWELL_REPEATS {
                tokio::time::sleep(wait).await;
                let Some(socket) = socket.get() else { return };
                let _ = socket.send_to(&datagram, remote);
            }
        });
    }
}

/// `udp`, and a second handle on the same socket that sends only: what a dropped
/// connection says its farewell from (a peer takes packets from its connection's
/// address alone).
pub(crate) fn with_farewell(
    udp: tokio::net::UdpSocket,
) -> io::Result<(tokio::net::UdpSocket, std::net::UdpSocket)> {
    let udp = udp.into_std()?;
    let farewell = udp.try_clone()?;
    Ok((tokio::net::UdpSocket::from_std(udp)?, farewell))
}
