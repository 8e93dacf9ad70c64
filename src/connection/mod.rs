//! The connection model: what a connector returns and what the layers wrap.
//!
//! A *connector* is a [`tower::Service`] that takes a target (anything that is a
//! [`StreamTarget`], usually [`Target`]) and returns a live [`Connection`]: a
//! `Stream` of [`Packet`]s that also knows its
//! [`ConnectionState`].
//!
//! A connection's stream yields `Err(ConnectionError)` items of two kinds: a
//! [`ConnectionError::Packet`] is a packet that could not be used (it is counted by
//! the health layer and the stream goes on), every other kind is fatal and the
//! stream ends after it. A stream that simply ends (`None`) is a closed
//! connection.

mod channel;
mod failure;
mod health;
pub mod metric_names;
mod probe;
mod secret;
mod sequence;
mod state;
mod target;
mod wrap;

pub use channel::{channel, ChannelConnection, ChannelSender};
pub use failure::{FailureEvent, FailureReason, Severity};
pub(crate) use health::Counting;
pub use health::{ConnectionHealth, HealthChecker, HealthCounters, HealthHandle};
pub use probe::{Probe, ProbeFuture, ProbeOutcome};
#[cfg(feature = "srt")]
pub(crate) use secret::is_secret_name;
pub use secret::{redact_url, Secret};
pub use sequence::Sequence;
#[cfg(feature = "rtp")]
pub(crate) use sequence::{SeqEvent, SeqTotals};
pub use state::{ConnectionState, ConnectionStatistics, Protocol};
pub use target::{StreamTarget, Target};
pub use wrap::{Wrap, WrapFuture, WrapService};

use std::fmt;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_core::Stream;
use tokio::time::Instant;

use crate::error::BoxError;

/// One media packet as it came off the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// The payload, as delivered by the protocol (an SRT message, an RTP packet, a UDP datagram).
    pub payload: Bytes,
    /// When the packet arrived. Taken from tokio's clock, so tests on paused time see exact values.
    pub arrival: Instant,
    /// The protocol's sequence number, when it has one. Used to measure real loss.
    pub sequence: Option<Sequence>,
}

impl Packet {
    /// A packet without a sequence number.
    pub fn new(payload: impl Into<Bytes>, arrival: Instant) -> Self {
        Self {
            payload: payload.into(),
            arrival,
            sequence: None,
        }
    }

    /// Set the packet's sequence number.
    #[must_use]
    pub fn with_sequence(mut self, sequence: Sequence) -> Self {
        self.sequence = Some(sequence);
        self
    }
}

/// A non-packet item on a connection's stream.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConnectionError {
    /// A packet that could not be used (malformed, wrong source). It was dropped and
    /// counted as an error; the stream goes on.
    Packet(BoxError),
    /// The connection failed. The stream ends after this item.
    Network(BoxError),
    /// The failure detector judged the connection dead. The stream ends after this item.
    Failed(FailureEvent),
    /// The failure detector suspects the connection, which has not ended: no media
    /// for longer than its rhythm allows (media silence, reason `timeout`), or a check
    /// interval over the loss, latency or error-rate limit while packets still flow
    /// (a degradation). The stream goes on: packets that come later are delivered; a
    /// silence that lasts on ends it with [`Failed`](Self::Failed), a degradation that
    /// lasts is suspected again at each check. A consumer that cannot keep a
    /// suspected connection while it dials its replacement treats this as `Failed`
    /// (the driver does, unless make-before-break is on).
    Suspected(FailureEvent),
    /// The failure detector no longer suspects a connection it had suspected of
    /// degrading: a check interval since was within every limit. (A silence is
    /// cleared by the next packet itself.) The stream goes on.
    Cleared,
}

impl ConnectionError {
    /// Whether the stream ends after this item.
    pub fn is_fatal(&self) -> bool {
        !matches!(self, Self::Packet(_) | Self::Suspected(_) | Self::Cleared)
    }

    /// The failure this error is, for `stream_id`: the detector's own verdict as it
    /// is, anything else a critical [`NetworkError`](FailureReason::NetworkError)
    /// saying what happened. The one place an error becomes a failure.
    pub(crate) fn into_failure(self, stream_id: &str) -> FailureEvent {
        match self {
            Self::Failed(event) | Self::Suspected(event) => event,
            other => FailureEvent::new(
                FailureReason::NetworkError,
                Severity::Critical,
                stream_id,
                other.to_string(),
            ),
        }
    }
}

impl fmt::Display for ConnectionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Packet(e) => write!(f, "bad packet: {e}"),
            Self::Network(e) => write!(f, "network error: {e}"),
            Self::Failed(ev) => write!(f, "connection failed: {}: {}", ev.reason, ev.details),
            Self::Suspected(ev) => {
                write!(f, "connection suspected: {}: {}", ev.reason, ev.details)
            }
            Self::Cleared => f.write_str("connection no longer suspected"),
        }
    }
}

impl std::error::Error for ConnectionError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Packet(e) | Self::Network(e) => Some(e.as_ref()),
            Self::Failed(_) | Self::Suspected(_) | Self::Cleared => None,
        }
    }
}

/// A live connection: a stream of packets plus what is known about it.
///
/// Implemented by every protocol's connection type and by every layer's wrapper, so a
/// wrapper can pass the questions it does not answer itself down to the connection
/// it wraps.
pub trait Connection:
    Stream<Item = Result<Packet, ConnectionError>> + Unpin + Send + 'static
{
    /// A snapshot of the connection's state, as it would be saved.
    fn state(&self) -> ConnectionState;

    /// Restore saved state onto a fresh connection (for example RTP sequence offsets).
    ///
    /// Called by [`StateRestoreLayer`](crate::restore::StateRestoreLayer) right after
    /// connecting. The default ignores it.
    fn restore(&mut self, state: &ConnectionState) {
        let _ = state;
    }

    /// The round-trip time the protocol measured, if it measures one.
    ///
    /// Health reports this as latency; nothing is estimated when it is `None`.
    fn rtt(&self) -> Option<Duration> {
        None
    }

    /// The health of this connection, when a [`HealthLayer`](crate::health::HealthLayer)
    /// counts it.
    fn health(&self) -> Option<HealthHandle> {
        None
    }

    /// Finish the connection for a clean stop: the stream will not be polled again.
    ///
    /// The driver calls this when it is cancelled and waits for it before its stream
    /// ends, so that what a wrapper still has to do (the restore layer's last save of
    /// the state) is done before the program goes on to release the stream or exit.
    /// Wrappers finish their own work, then pass the call on to the connection they
    /// wrap. The default is done at once.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        let _ = cx;
        Poll::Ready(())
    }
}
