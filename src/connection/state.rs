use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// The transport protocol of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Protocol {
    /// Secure Reliable Transport.
    #[default]
    Srt,
    /// RTP over UDP.
    Rtp,
    /// Raw UDP datagrams (for example MPEG-TS).
    Udp,
    /// A connection inside this process (tests, demos).
    InProcess,
}

impl Protocol {
    /// The target parameters this protocol's connector reads, or `None` when any name
    /// may be used ([`InProcess`](Self::InProcess) connections are the user's own).
    ///
    /// Saved state fills in only these (see
    /// [`Target::apply_state`](crate::connection::StreamTarget::apply_state)): a
    /// stored name the connector does not know could only make the target invalid.
    ///
    /// ```
    /// use mirror_reconnect::connection::Protocol;
    ///
    /// assert!(Protocol::Srt.parameter_names().unwrap().contains(&"latency"));
    /// assert_eq!(Protocol::Udp.parameter_names(), Some(&[][..]));
    /// assert_eq!(Protocol::InProcess.parameter_names(), None);
    /// ```
    pub const fn parameter_names(self) -> Option<&'static [&'static str]> {
        match self {
            Self::Srt => Some(&[
                "mode",
                "latency",
                "pbkeylen",
                "connect_timeout",
                "peer_idle_timeout",
                "local_port",
                "packetfilter",
            ]),
            Self::Rtp => Some(&[
                "ssrc",
                "payload_type",
                "clock_rate",
                "rewrite",
                "session_timeout_ms",
                "ssrc_timeout_ms",
                "multicast_interface",
            ]),
            Self::Udp => Some(&[]),
            Self::InProcess => None,
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Srt => "srt",
            Self::Rtp => "rtp",
            Self::Udp => "udp",
            Self::InProcess => "in_process",
        })
    }
}

/// Counters of a connection, as saved with its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionStatistics {
    /// Packets received on this connection.
    pub packets_received: u64,
    /// Payload bytes received on this connection.
    pub bytes_received: u64,
    /// Packets that could not be used.
    pub packet_errors: u64,
    /// How long the connection has been up, in seconds on the wire.
    #[serde(with = "crate::serde_secs")]
    pub uptime: Duration,
}

/// What is known about a connection, and what is saved so that a new connection can
/// resume where the old one was.
///
/// Serializes to JSON with snake_case field names; times are RFC 3339, the uptime is
/// in seconds. It never holds a secret: a passphrase lives only in
/// [`Target`](super::Target).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionState {
    /// The stream's identity, and the key its state is saved under.
    pub stream_id: String,
    /// The transport protocol.
    pub protocol: Protocol,
    /// The media codec, when known (for example `"h264"`).
    #[serde(default)]
    pub codec: Option<String>,
    /// The peer's address, when there is one.
    #[serde(default)]
    pub remote_addr: Option<SocketAddr>,
    /// Our own address, when bound.
    #[serde(default)]
    pub local_addr: Option<SocketAddr>,
    /// Protocol parameters worth carrying across reconnects (latency, RTP offsets…).
    #[serde(default)]
    pub parameters: BTreeMap<String, String>,
    /// Counters of the connection.
    #[serde(default)]
    pub statistics: ConnectionStatistics,
    /// When the connection was established.
    #[serde(with = "humantime_serde")]
    pub start_time: SystemTime,
    /// When the last packet arrived (the start time before any did).
    #[serde(with = "humantime_serde")]
    pub last_activity: SystemTime,
}

impl ConnectionState {
    /// A fresh state for `stream_id` over `protocol`, started now.
    pub fn new(stream_id: impl Into<String>, protocol: Protocol) -> Self {
        let now = SystemTime::now();
        Self {
            stream_id: stream_id.into(),
            protocol,
            codec: None,
            remote_addr: None,
            local_addr: None,
            parameters: BTreeMap::new(),
            statistics: ConnectionStatistics::default(),
            start_time: now,
            last_activity: now,
        }
    }
}
