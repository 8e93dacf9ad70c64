//! The errors an RTP connection reports.

use std::fmt;
use std::time::Duration;

/// A datagram the connection could not use. It is dropped and reported as a
/// [`ConnectionError::Packet`](crate::connection::ConnectionError::Packet) (counted by
/// health); the stream goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RtpPacketError {
    /// Not an RTP packet (too short, not version 2, bad padding or extension).
    NotRtp {
        /// Why it does not parse.
        reason: String,
        /// Its length in bytes.
        len: usize,
    },
    /// From another SSRC than the one the session is locked on.
    ForeignSsrc {
        /// The locked SSRC.
        expected: u32,
        /// The packet's.
        got: u32,
    },
    /// Another payload type than the one the session is locked on.
    PayloadType {
        /// The locked payload type.
        expected: u8,
        /// The packet's.
        got: u8,
    },
    /// The sequence number jumped too far to be loss or reordering. Dropped; if the
    /// next packet carries on from it, the sender restarted and the session follows.
    SequenceJump {
        /// The highest number before.
        from: u16,
        /// The packet's.
        to: u16,
    },
}

impl fmt::Display for RtpPacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotRtp { reason, len } => write!(f, "not an RTP packet ({len} bytes): {reason}"),
            Self::ForeignSsrc { expected, got } => write!(
                f,
                "RTP packet from SSRC {got:#010x}, session is locked on {expected:#010x}"
            ),
            Self::PayloadType { expected, got } => write!(
                f,
                "RTP packet with payload type {got}, session is locked on {expected}"
            ),
            Self::SequenceJump { from, to } => write!(
                f,
                "RTP sequence number jumped from {from} to {to}; dropped until the next packet confirms a sender restart"
            ),
        }
    }
}

impl std::error::Error for RtpPacketError {}

/// No RTP packet arrived for the session timeout: the connection ends with this as a
/// [`ConnectionError::Network`](crate::connection::ConnectionError::Network).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionTimedOut {
    /// The session timeout.
    pub after: Duration,
}

impl fmt::Display for SessionTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RTP session timed out: no packet for {:?}", self.after)
    }
}

impl std::error::Error for SessionTimedOut {}
