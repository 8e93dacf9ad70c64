//! The RTP session without a socket: datagrams in, packets out.

use std::fmt;
use std::time::SystemTime;

use bytes::BytesMut;
use rtp_types::RtpPacket;
use tokio::time::Instant;

use crate::connection::{ConnectionError, Packet, Sequence, Target};
use crate::error::ConnectError;

use super::error::RtpPacketError;
use super::params::RtpSettings;
use super::session::{Header, Session, SessionConfig};
use super::stats::RtpStatistics;

/// Packets are copied into shared blocks of this size: one allocation per few
/// hundred packets instead of one per packet.
const BLOCK: usize = 256 * 1024;

/// What an [`RtpConnection`](super::RtpConnection) does with each datagram, without
/// the socket: for datagrams received some other way (a socket of your own, a
/// capture being replayed).
///
/// It takes the same target parameters as [`RtpConnector`](super::RtpConnector)
/// (see the [module docs](super)) and checks, numbers and counts the same way; the
/// session timeout, which needs a timer, stays with the connection.
///
/// ```
/// use mirror_reconnect::connection::{Protocol, Target};
/// use mirror_reconnect::protocol::rtp::RtpReceiver;
/// use tokio::time::Instant;
///
/// let target = Target::new("cam1", Protocol::Rtp).address("127.0.0.1:5004".parse().unwrap());
/// let mut rtp = RtpReceiver::new(&target).unwrap();
///
/// // Version 2, payload type 96, sequence 7, timestamp 0, SSRC 0x1234, then media.
/// let datagram = [0x80, 96, 0, 7, 0, 0, 0, 0, 0, 0, 0x12, 0x34, b'm'];
/// let packet = rtp.receive(&datagram, Instant::now()).unwrap().unwrap();
/// assert_eq!(packet.sequence.map(|s| s.value()), Some(7));
///
/// // Not RTP: an error item, and the session carries on.
/// assert!(rtp.receive(b"hello", Instant::now()).unwrap().is_err());
/// assert_eq!(rtp.statistics().invalid, 1);
/// ```
pub struct RtpReceiver {
    pub(super) session: Session,
    block: BytesMut,
    pub(super) started: Instant,
    pub(super) started_wall: SystemTime,
    pub(super) packets: u64,
    pub(super) bytes: u64,
    pub(super) errors: u64,
}

impl fmt::Debug for RtpReceiver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpReceiver")
            .field("statistics", &self.session.statistics())
            .finish_non_exhaustive()
    }
}

impl RtpReceiver {
    /// A session for `target`, started now: its parameters checked as the connector
    /// checks them, and its saved continuity (`rtp.rewrite.…`) taken. The target's
    /// address is required, as by the connector, but nothing is bound to it.
    ///
    /// # Errors
    ///
    /// An [`InvalidTarget`](crate::error::ConnectErrorKind::InvalidTarget) error naming
    /// what is wrong, when the target is not RTP, has no address, or has a parameter
    /// that is unknown or out of range.
    pub fn new(target: &Target) -> Result<Self, ConnectError> {
        let settings = RtpSettings::from_target(target)?;
        Ok(Self::with_config(
            target,
            settings.session,
            Instant::now(),
            SystemTime::now(),
        ))
    }

    pub(super) fn with_config(
        target: &Target,
        config: SessionConfig,
        started: Instant,
        started_wall: SystemTime,
    ) -> Self {
        let mut session = Session::new(config, started);
        // Saved continuity comes in the target's parameters (StateRestoreLayer puts it
        // there) and again through `Connection::restore`; either is enough.
        session.restore(&target.parameters);
        Self {
            session,
            block: BytesMut::with_capacity(BLOCK),
            started,
            started_wall,
            packets: 0,
            bytes: 0,
            errors: 0,
        }
    }

    /// What the session measured so far.
    pub fn statistics(&self) -> RtpStatistics {
        self.session.statistics()
    }

    /// The wall-clock time of `at`, from the session's start (no clock read).
    pub(super) fn wall(&self, at: Instant) -> SystemTime {
        self.started_wall + at.saturating_duration_since(self.started)
    }

    fn error(&mut self, error: RtpPacketError) -> Option<Result<Packet, ConnectionError>> {
        self.errors += 1;
        Some(Err(ConnectionError::Packet(Box::new(error))))
    }

    /// Judge one datagram that arrived at `at`: the packet to pass on, an error item
    /// ([`ConnectionError::Packet`] with an [`RtpPacketError`]: not RTP, another SSRC
    /// or payload type, a sequence jump), or `None` for RTCP sharing the port, which
    /// is counted and skipped.
    ///
    /// With `rewrite=true` the packet's sequence number and timestamp are the
    /// renumbered ones; every other byte is the datagram's.
    pub fn receive(
        &mut self,
        datagram: &[u8],
        at: Instant,
    ) -> Option<Result<Packet, ConnectionError>> {
        let len = datagram.len();
        // RFC 5761: payload types 64–95 are RTCP (SR, RR, SDES, BYE, APP) sharing the port.
        if len >= 2 && datagram[0] >> 6 == 2 && (64..=95).contains(&(datagram[1] & 0x7f)) {
            self.session.rtcp += 1;
            return None;
        }
        let header = match RtpPacket::parse(datagram) {
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
        let wall = self.wall(at);
        let accepted = match self.session.on_packet(&header, at, wall) {
            Ok(a) => a,
            Err(e) => return self.error(e),
        };
        self.packets += 1;
        self.bytes += len as u64;
        if self.block.capacity() < len {
            self.block = BytesMut::with_capacity(BLOCK.max(len));
        }
        self.block.extend_from_slice(datagram);
        if accepted.rewritten {
            // Fixed header: sequence number at bytes 2–3, timestamp at 4–7.
            self.block[2..4].copy_from_slice(&accepted.sequence.to_be_bytes());
            self.block[4..8].copy_from_slice(&accepted.timestamp.to_be_bytes());
        }
        let packet = Packet::new(self.block.split().freeze(), at)
            .with_sequence(Sequence::rtp(accepted.sequence));
        Some(Ok(packet))
    }
}
