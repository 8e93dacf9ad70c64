use std::collections::BTreeMap;
use std::time::Duration;

/// Names of the state parameters an [`RtpConnection`](super::RtpConnection) reports.
pub mod keys {
    /// The locked SSRC.
    pub const SSRC: &str = "rtp.ssrc";
    /// The locked payload type.
    pub const PAYLOAD_TYPE: &str = "rtp.payload_type";
    /// The clock rate jitter is measured in.
    pub const CLOCK_RATE: &str = "rtp.clock_rate";
    /// Distinct packets received.
    pub const RECEIVED: &str = "rtp.received";
    /// Packets the sequence numbers say were sent.
    pub const EXPECTED: &str = "rtp.expected";
    /// Packets lost (expected − received).
    pub const LOST: &str = "rtp.lost";
    /// Packets received more than once.
    pub const DUPLICATES: &str = "rtp.duplicates";
    /// Packets that arrived after a later-numbered one.
    pub const REORDERED: &str = "rtp.reordered";
    /// Interarrival jitter in milliseconds (RFC 3550 6.4.1).
    pub const JITTER_MS: &str = "rtp.jitter_ms";
    /// Interarrival jitter in timestamp units, as an RTCP receiver report carries it.
    pub const JITTER: &str = "rtp.jitter";
    /// Sender restarts seen (new SSRC, or sequence numbers starting over).
    pub const RESTARTS: &str = "rtp.restarts";
    /// Packets dropped because they came from another SSRC.
    pub const FOREIGN_SSRC: &str = "rtp.foreign_ssrc";
    /// Packets dropped because they carried another payload type.
    pub const WRONG_PAYLOAD_TYPE: &str = "rtp.wrong_payload_type";
    /// Packets dropped because their number jumped too far.
    pub const SEQUENCE_JUMPS: &str = "rtp.sequence_jumps";
    /// Datagrams dropped because they were not RTP.
    pub const INVALID: &str = "rtp.invalid";
    /// RTCP packets skipped (RTCP multiplexed on the RTP port).
    pub const RTCP: &str = "rtp.rtcp";

    /// Rewriting: the SSRC the saved numbering belongs to.
    pub const REWRITE_SSRC: &str = "rtp.rewrite.ssrc";
    /// Rewriting: the last sequence number received (before rewriting).
    pub const REWRITE_LAST_SEQ_IN: &str = "rtp.rewrite.last_seq_in";
    /// Rewriting: what is added to sequence numbers.
    pub const REWRITE_SEQ_OFFSET: &str = "rtp.rewrite.seq_offset";
    /// Rewriting: what is added to timestamps.
    pub const REWRITE_TS_OFFSET: &str = "rtp.rewrite.ts_offset";
    /// Rewriting: the last sequence number handed downstream.
    pub const REWRITE_LAST_SEQ_OUT: &str = "rtp.rewrite.last_seq_out";
    /// Rewriting: the last timestamp handed downstream.
    pub const REWRITE_LAST_TS_OUT: &str = "rtp.rewrite.last_ts_out";
    /// Rewriting: when the last packet went downstream, Unix milliseconds.
    pub const REWRITE_WALL_MS: &str = "rtp.rewrite.wall_ms";
}

/// What an RTP session measured, since its connection started.
///
/// Read it from the connection ([`RtpConnection::statistics`](super::RtpConnection::statistics))
/// or, through any stack, from the connection state's parameters with
/// [`from_parameters`](Self::from_parameters).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct RtpStatistics {
    /// The SSRC packets are accepted from.
    pub ssrc: Option<u32>,
    /// The payload type packets are accepted with.
    pub payload_type: Option<u8>,
    /// The RTP clock rate, in Hz.
    pub clock_rate: u32,
    /// Distinct packets received (duplicates once).
    pub received: u64,
    /// Packets the sequence numbers say were sent.
    pub expected: u64,
    /// Packets lost: `expected - received`.
    pub lost: u64,
    /// Packets received more than once.
    pub duplicates: u64,
    /// Packets that arrived after a later-numbered one.
    pub reordered: u64,
    /// Interarrival jitter (RFC 3550 6.4.1).
    pub jitter: Duration,
    /// The same, in timestamp units.
    pub jitter_units: u32,
    /// Sender restarts seen.
    pub restarts: u64,
    /// Packets dropped because they came from another SSRC.
    pub foreign_ssrc: u64,
    /// Packets dropped because they carried another payload type.
    pub wrong_payload_type: u64,
    /// Packets dropped because their number jumped too far (at most one per restart).
    pub sequence_jumps: u64,
    /// Datagrams dropped because they were not RTP.
    pub invalid: u64,
    /// RTCP packets skipped.
    pub rtcp: u64,
}

impl RtpStatistics {
    /// The fraction of expected packets that were lost, 0 to 1.
    pub fn loss_fraction(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            self.lost as f64 / self.expected as f64
        }
    }

    /// Write these figures as state parameters (keys in [`keys`]).
    pub fn write_parameters(&self, params: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: String| {
            params.insert(k.to_owned(), v);
        };
        if let Some(ssrc) = self.ssrc {
            put(keys::SSRC, ssrc.to_string());
        }
        if let Some(pt) = self.payload_type {
            put(keys::PAYLOAD_TYPE, pt.to_string());
        }
        put(keys::CLOCK_RATE, self.clock_rate.to_string());
        put(keys::RECEIVED, self.received.to_string());
        put(keys::EXPECTED, self.expected.to_string());
        put(keys::LOST, self.lost.to_string());
        put(keys::DUPLICATES, self.duplicates.to_string());
        put(keys::REORDERED, self.reordered.to_string());
        put(
            keys::JITTER_MS,
            format!("{:.3}", self.jitter.as_secs_f64() * 1000.0),
        );
        put(keys::JITTER, self.jitter_units.to_string());
        put(keys::RESTARTS, self.restarts.to_string());
        put(keys::FOREIGN_SSRC, self.foreign_ssrc.to_string());
        put(
            keys::WRONG_PAYLOAD_TYPE,
            self.wrong_payload_type.to_string(),
        );
        put(keys::SEQUENCE_JUMPS, self.sequence_jumps.to_string());
        put(keys::INVALID, self.invalid.to_string());
        put(keys::RTCP, self.rtcp.to_string());
    }

    /// Read the figures back from state parameters. Missing or malformed values
    /// read as zero (or `None`).
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use mirror_reconnect::protocol::rtp::RtpStatistics;
    ///
    /// let mut params = BTreeMap::new();
    /// params.insert("rtp.lost".to_string(), "3".to_string());
    /// params.insert("rtp.expected".to_string(), "300".to_string());
    /// params.insert("rtp.jitter_ms".to_string(), "1.500".to_string());
    /// let stats = RtpStatistics::from_parameters(&params);
    /// assert_eq!(stats.loss_fraction(), 0.01);
    /// assert!((stats.jitter.as_secs_f64() - 0.0015).abs() < 1e-9);
    /// ```
    pub fn from_parameters(params: &BTreeMap<String, String>) -> Self {
        fn get<T: std::str::FromStr>(p: &BTreeMap<String, String>, k: &str) -> Option<T> {
            p.get(k)?.trim().parse().ok()
        }
        let n = |k| get::<u64>(params, k).unwrap_or(0);
        let jitter_ms = get::<f64>(params, keys::JITTER_MS)
            .filter(|j| j.is_finite() && *j >= 0.0 && *j < 1e9)
            .unwrap_or(0.0);
        Self {
            ssrc: get(params, keys::SSRC),
            payload_type: get(params, keys::PAYLOAD_TYPE),
            clock_rate: get(params, keys::CLOCK_RATE).unwrap_or(0),
            received: n(keys::RECEIVED),
            expected: n(keys::EXPECTED),
            lost: n(keys::LOST),
            duplicates: n(keys::DUPLICATES),
            reordered: n(keys::REORDERED),
            jitter: Duration::from_secs_f64(jitter_ms / 1000.0),
            jitter_units: get(params, keys::JITTER).unwrap_or(0),
            restarts: n(keys::RESTARTS),
            foreign_ssrc: n(keys::FOREIGN_SSRC),
            wrong_payload_type: n(keys::WRONG_PAYLOAD_TYPE),
            sequence_jumps: n(keys::SEQUENCE_JUMPS),
            invalid: n(keys::INVALID),
            rtcp: n(keys::RTCP),
        }
    }
}
