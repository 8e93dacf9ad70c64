use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::sync::mpsc;

use super::{Connection, ConnectionError, ConnectionState, Packet};

const NO_RTT: u64 = u64::MAX;

/// An in-process connection and the sender that feeds it, with room for `capacity`
/// items in between.
///
/// Useful as the connection of a test or demo connector: the connection ends when
/// every [`ChannelSender`] is dropped, as a real one ends when the peer goes away.
///
/// ```
/// use mirror_reconnect::connection::{channel, ConnectionState, Packet, Protocol};
/// use futures_util::StreamExt;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let (tx, mut conn) = channel(ConnectionState::new("cam1", Protocol::InProcess), 8);
/// tx.send(Packet::new(&b"ts"[..], tokio::time::Instant::now())).await.unwrap();
/// drop(tx);
/// assert!(conn.next().await.unwrap().is_ok());
/// assert!(conn.next().await.is_none());
/// # }
/// ```
pub fn channel(state: ConnectionState, capacity: usize) -> (ChannelSender, ChannelConnection) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let rtt = Arc::new(AtomicU64::new(NO_RTT));
    (
        ChannelSender {
            tx,
            rtt: Arc::clone(&rtt),
        },
        ChannelConnection { rx, state, rtt },
    )
}

/// The sending half of [`channel`].
#[derive(Debug, Clone)]
pub struct ChannelSender {
    tx: mpsc::Sender<Result<Packet, ConnectionError>>,
    rtt: Arc<AtomicU64>,
}

/// The connection was dropped: nobody receives any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Closed;

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection closed")
    }
}

impl std::error::Error for Closed {}

impl ChannelSender {
    /// Send a packet, waiting for room.
    pub async fn send(&self, packet: Packet) -> Result<(), Closed> {
        self.tx.send(Ok(packet)).await.map_err(|_| Closed)
    }

    /// Send an error item (a bad packet, or a fatal error that ends the stream).
    pub async fn send_error(&self, error: ConnectionError) -> Result<(), Closed> {
        self.tx.send(Err(error)).await.map_err(|_| Closed)
    }

    /// Set the round-trip time the connection reports.
    pub fn set_rtt(&self, rtt: Duration) {
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(NO_RTT - 1);
        self.rtt.store(nanos, Ordering::Relaxed);
    }

    /// Wait until the connection has been dropped.
    pub async fn closed(&self) {
        self.tx.closed().await;
    }

    /// Whether the connection has been dropped.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

/// The receiving half of [`channel`]: a [`Connection`].
#[derive(Debug)]
pub struct ChannelConnection {
    rx: mpsc::Receiver<Result<Packet, ConnectionError>>,
    state: ConnectionState,
    rtt: Arc<AtomicU64>,
}

impl Stream for ChannelConnection {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}

impl Connection for ChannelConnection {
    fn state(&self) -> ConnectionState {
        self.state.clone()
    }

    fn restore(&mut self, state: &ConnectionState) {
        if self.state.codec.is_none() {
            self.state.codec.clone_from(&state.codec);
        }
        for (k, v) in &state.parameters {
            self.state
                .parameters
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }

    fn rtt(&self) -> Option<Duration> {
        match self.rtt.load(Ordering::Relaxed) {
            NO_RTT => None,
            nanos => Some(Duration::from_nanos(nanos)),
        }
    }
}
