//! RTP over UDP ingest, parsed with [rtp-types](https://docs.rs/rtp-types).
//!
//! [`RtpConnector`] is the connector at the bottom of the stack: a
//! `tower::Service<Target>` that binds a UDP socket on the target's address (and
//! joins the group when the address is multicast) and returns an [`RtpConnection`],
//! a stream of the RTP packets that arrive. Each [`Packet`](crate::connection::Packet)
//! carries the whole RTP packet, header included, and its sequence number as
//! [`Sequence::rtp`](crate::connection::Sequence::rtp), so
//! [`HealthLayer`](crate::health::HealthLayer) measures real loss.
//!
//! # Target
//!
//! | field / parameter     | meaning                                                         |
//! |-----------------------|-----------------------------------------------------------------|
//! | `protocol`            | must be [`Protocol::Rtp`](crate::connection::Protocol::Rtp)     |
//! | `address`             | the address to bind (unicast), or the group to join (multicast) |
//! | `ssrc`                | accept only this SSRC (decimal or `0x…`); default: the first one seen |
//! | `payload_type`        | accept only this payload type (0–127); default: the first one seen |
//! | `clock_rate`          | the payload's RTP clock in Hz, for jitter; default 90000        |
//! | `rewrite`             | `true`: rewrite sequence numbers and timestamps for continuity; default false |
//! | `session_timeout_ms`  | end the session after this long without a packet; default the connector's (10 s) |
//! | `ssrc_timeout_ms`     | how long the locked SSRC must be silent before another replaces it; default 1000 |
//! | `multicast_interface` | the IPv4 interface address to join the group on                 |
//!
//! An unknown parameter is an [`InvalidTarget`](crate::error::ConnectErrorKind::InvalidTarget)
//! error, so a typo cannot pass silently; names with a dot are skipped (they are the
//! saved state below, or another protocol's).
//!
//! # What the connection checks
//!
//! - A datagram that is not RTP version 2 is dropped and reported as a
//!   [`ConnectionError::Packet`](crate::connection::ConnectionError::Packet)
//!   ([`RtpPacketError::NotRtp`]); RTCP multiplexed on the port (RFC 5761) is skipped
//!   and counted.
//! - The SSRC and payload type are locked on the first packet (or set by the target).
//!   A packet from another SSRC or with another payload type is an error item. When
//!   the locked SSRC has been silent for `ssrc_timeout_ms` and another one sends, the
//!   sender restarted: the session re-locks on the new one (unless `ssrc` is set), logs
//!   it and counts a restart.
//! - Sequence numbers (RFC 3550 A.1, with wrap-around) give loss, duplicates and
//!   reordering. Duplicates and late packets are passed on (health counts them too). A
//!   jump of more than 3000 ahead or 100 behind drops that packet; if the next packet
//!   carries on from it, the sender restarted its numbering and the session follows.
//! - Interarrival jitter follows RFC 3550 6.4.1 in the payload's clock.
//! - No packet for the session timeout ends the connection with
//!   [`ConnectionError::Network`](crate::connection::ConnectionError::Network) carrying
//!   [`SessionTimedOut`] ("RTP session timed out"), so the stack reconnects.
//!
//! # State and continuity
//!
//! The connection's [`ConnectionState`](crate::connection::ConnectionState) carries its
//! figures as parameters under `rtp.` ([`keys`]); read them back through any stack
//! with [`RtpStatistics::from_parameters`].
//!
//! With `rewrite=true` the connection renumbers what it hands downstream so that it
//! stays continuous when the sender restarts (new SSRC, new numbering) or the stack
//! reconnects: sequence numbers follow on from the last one out, timestamps advance
//! by the real time that passed. The SSRC is left as sent. What it needs (offsets, last
//! numbers out) is saved under `rtp.rewrite.`; [`Connection::restore`](crate::connection::Connection::restore)
//! takes it back, so [`StateRestoreLayer`](crate::restore::StateRestoreLayer) carries
//! continuity across reconnects. When the same sender carries on after a reconnect,
//! its numbering is kept, and what was lost in between shows as loss.
//!
//! # Example
//!
//! ```
//! use futures_util::StreamExt;
//! use mirror_reconnect::connection::{Connection, Protocol, Target};
//! use mirror_reconnect::protocol::rtp::RtpConnector;
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mirror_reconnect::BoxError> {
//! let target = Target::new("cam1", Protocol::Rtp).address("127.0.0.1:0".parse()?);
//! let mut rtp = RtpConnector::new().oneshot(target).await?;
//!
//! // A sender: version 2, payload type 96, sequence 7, timestamp 0, SSRC 0x1234.
//! let sender = tokio::net::UdpSocket::bind("127.0.0.1:0").await?;
//! let header = [0x80, 96, 0, 7, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
//! sender.send_to(&[&header[..], b"media"].concat(), rtp.local_addr().ok_or("unbound")?).await?;
//!
//! let packet = rtp.next().await.unwrap()?;
//! assert_eq!(packet.sequence.map(|s| s.value()), Some(7));
//! assert_eq!(&packet.payload[12..], b"media");
//! assert_eq!(rtp.statistics().ssrc, Some(0x1234));
//! assert_eq!(rtp.state().parameters["rtp.received"], "1");
//! # Ok(()) }
//! ```

mod connection;
mod connector;
pub mod error;
mod params;
mod receiver;
mod session;
mod stats;

pub use connection::RtpConnection;
pub use connector::{RtpConnecting, RtpConnector};
pub use error::{RtpPacketError, SessionTimedOut};
pub use receiver::RtpReceiver;
pub use stats::{keys, RtpStatistics};
