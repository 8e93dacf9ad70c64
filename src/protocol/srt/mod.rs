//! SRT ingest and output, on [srt-tokio](https://docs.rs/srt-tokio).
//!
//! [`SrtConnector`] is the connector at the bottom of the stack: a
//! `tower::Service<Target>` whose connections ([`SrtConnection`]) are streams of the
//! messages the peer sends and sinks of the [`Bytes`](bytes::Bytes) to send it.
//!
//! # Target
//!
//! | field / parameter      | meaning                                                      |
//! |------------------------|--------------------------------------------------------------|
//! | `address`              | the peer to call, or the address to listen on               |
//! | `stream_id`            | the SRT stream id (SRTO_STREAMID); empty for none — a listener then takes any caller |
//! | `passphrase`           | enables AES encryption (SRTO_PASSPHRASE, 10 to 79 characters) |
//! | `mode`                 | `caller` (default), `listener` or `rendezvous`               |
//! | `latency`              | milliseconds (SRTO_LATENCY), both directions                |
//! | `pbkeylen`             | 0 (default), 16, 24 or 32 (SRTO_PBKEYLEN)                    |
//! | `connect_timeout`      | milliseconds: the handshake (caller, rendezvous) or the wait for a caller (listener) |
//! | `peer_idle_timeout`    | milliseconds (SRTO_PEERIDLETIMEO), default 5000             |
//! | `local_port`           | the local port (rendezvous: defaults to the peer's port)    |
//! | `packetfilter`         | a packet filter such as `fec,cols:10,rows:5` (SRTO_PACKETFILTER); `LibSrtConnector` only (feature `libsrt`): `SrtConnector` refuses it as `InvalidTarget` |
//!
//! An unknown parameter is an [`InvalidTarget`](crate::error::ConnectErrorKind::InvalidTarget)
//! error (so a typo cannot pass silently), except names with a dot: those are the
//! statistics a saved [`ConnectionState`](crate::connection::ConnectionState) carries
//! (`srt.rtt_ms`, `srt.lost`, `srt.retransmitted`, `srt.decrypt_errors`, `srt.sent`,
//! `srt.sender_lost`, `srt.latency_ms`, `srt.mode`). [`srt_target`] reads all of this
//! from an `srt://` URL.
//!
//! # Errors
//!
//! A connect fails with a boxed [`ConnectError`](crate::error::ConnectError):
//! a wrong passphrase, or an encrypted peer meeting an unencrypted one, is
//! [`Unauthorized`](crate::error::ConnectErrorKind::Unauthorized); a peer that refuses
//! the stream id (or our settings) is [`Rejected`](crate::error::ConnectErrorKind::Rejected);
//! neither is retried by [`BackoffRetryLayer`](crate::backoff::BackoffRetryLayer). A
//! peer that does not answer is [`TimedOut`](crate::error::ConnectErrorKind::TimedOut),
//! a busy one (SRT_REJX_OVERLOAD, SRT_REJX_CONFLICT…) is retryable.
//!
//! # A vanished peer and a closed one
//!
//! srt-tokio ends a connection's stream with `None` both when the peer sends SRT's
//! shutdown and when the peer-idle timeout fires, and exposes neither the shutdown
//! packet nor the timeout. What it does publish is a running count of every packet
//! received (data, ACK, keep-alive), every 250 ms here. A live SRT peer sends at least a
//! keep-alive every second, so:
//!
//! - if something was heard from the peer within the last half of the peer-idle
//!   timeout when the stream ends, the peer shut the connection down: the stream just
//!   ends, and the driver's `retry_on_close` (`srt.retry_on_close` in the config)
//!   decides whether to reconnect;
//! - otherwise the peer vanished: the stream ends with
//!   [`ConnectionError::Network`](crate::connection::ConnectionError::Network)
//!   carrying [`PeerVanished`], and the stack reconnects.
//!
//! What cannot be told apart: a peer whose last keep-alive came just before it sent
//! shutdown after a long silence is judged closed (correctly); with a peer-idle timeout
//! under about 2.5 s, a peer that vanished right after a packet may be judged closed;
//! and a connection whose srt-tokio task failed (srt-tokio 0.4 panics on a few
//! unimplemented control packets) ends like a clean close.
//!
//! # Listener
//!
//! Listener targets on one address share one UDP socket and one srt-tokio listener,
//! kept alive as long as the connector (or a clone of it) is: a reconnect accepts the
//! next caller for the same stream id on the same port. Callers for a stream id no
//! target listens for are refused (SRT_REJX_NOTFOUND); a caller that comes while its
//! stream's old connection is still up is held for 3 s, then refused as
//! SRT_REJX_CONFLICT (retryable). The first target to bind an address decides its
//! latency and peer-idle timeout; passphrases are per target. As a listener, the
//! caller's key length is used.
//!
//! # Statistics
//!
//! srt-tokio 0.4 measures no live round-trip time: [`Connection::rtt`](crate::connection::Connection::rtt)
//! reports the one measured during the handshake. Loss reaches the health layer
//! through the delivery sequence numbers (see [`SrtConnection`]); retransmissions,
//! decrypt errors and sender-side loss are in [`SrtStatistics`] and the state's
//! parameters. srt-tokio 0.4 does not count receiver-side loss reports
//! (`rx_loss_data`): `srt.lost` is the packets SRT dropped for good.
//!
//! # Example
//!
//! ```no_run
//! use futures_util::StreamExt;
//! use mirror_reconnect::prelude::*;
//! use mirror_reconnect::protocol::srt::{srt_target, SrtConnector};
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let target = srt_target("srt://:9000?mode=listener&streamid=cam1&latency=120")?;
//! let mut packets = ReconnectionConfig::default().reconnecting(SrtConnector::new(), target);
//! while let Some(packet) = packets.next().await {
//!     println!("{} bytes", packet?.payload.len());
//! }
//! # Ok(()) }
//! ```

mod connection;
mod connector;
mod error;
mod farewell;
#[cfg(feature = "libsrt")]
mod libsrt;
#[cfg(feature = "libsrt")]
mod libsrt_listener;
mod listener;
mod params;
mod probe;
mod url;

pub use connection::{SrtConnection, SrtStatistics};
pub use connector::{
    SrtConnecting, SrtConnector, DEFAULT_UDP_BUFFER, MAX_UDP_BUFFER, MIN_UDP_BUFFER,
};
pub use error::PeerVanished;
#[cfg(feature = "libsrt")]
pub use libsrt::{LibSrtConnecting, LibSrtConnection, LibSrtConnector};
pub use params::{
    ParseModeError, SrtMode, DEFAULT_HELD_CALLERS, DEFAULT_SRT_BUFFER, MAX_HELD_CALLERS,
    MAX_SRT_BUFFER, MIN_SRT_BUFFER,
};
pub use probe::SrtProbe;
pub use url::srt_target;
