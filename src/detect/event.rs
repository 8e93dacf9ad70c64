use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

/// Limits beyond which a connection is judged failed.
///
/// A limit is the first failing value: loss at `max_packet_loss` trips, loss below
/// it does not; a packet rate at or below `min_packet_rate` trips. Rates are measured
/// over each check interval, and only once the interval saw `min_samples` packets, so
/// one bad packet in a quiet second is not a 100 % error rate.
///
/// The bounds given for each field are those
/// [`ReconnectionConfig::validate`](crate::ReconnectionConfig::validate) checks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FailureThresholds {
    /// Fraction of packets lost in a check interval (above 0, at most 1). Default 0.05.
    pub max_packet_loss: f64,
    /// Round-trip time the protocol reports. Default 1 s; above zero, at most 24 h.
    #[serde(with = "humantime_serde")]
    pub max_latency: Duration,
    /// Fraction of bad packets among all received in a check interval (above 0, at
    /// most 1). Default 0.1.
    pub max_error_rate: f64,
    /// Time without any packet, whatever the stream's rhythm. Default 30 s; from 1 ms
    /// to 24 h.
    #[serde(with = "humantime_serde")]
    pub timeout_duration: Duration,
    /// Packets per second over a check interval; 0 turns the check off. Default 0.5, so
    /// a check interval without a single packet trips it; at most 1 000 000.
    pub min_packet_rate: f64,
    /// Packets (or expected packets) an interval needs before loss and error rates are
    /// judged. Default 20; at most 1 000 000.
    pub min_samples: u64,
}

impl Default for FailureThresholds {
    fn default() -> Self {
        Self {
            max_packet_loss: 0.05,
            max_latency: Duration::from_secs(1),
            max_error_rate: 0.1,
            timeout_duration: Duration::from_secs(30),
            min_packet_rate: 0.5,
            min_samples: 20,
        }
    }
}

/// Why a connection was judged failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureReason {
    /// No packet for too long: the adaptive silence detector or `timeout_duration`.
    Timeout,
    /// Too many packets lost.
    PacketLoss,
    /// Round-trip time too high.
    HighLatency,
    /// Too many bad packets.
    HighErrorRate,
    /// Too few packets per second.
    LowPacketRate,
    /// The connection failed or closed on its own.
    NetworkError,
}

impl FailureReason {
    /// The snake_case name used in JSON, YAML and metric labels.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::PacketLoss => "packet_loss",
            Self::HighLatency => "high_latency",
            Self::HighErrorRate => "high_error_rate",
            Self::LowPacketRate => "low_packet_rate",
            Self::NetworkError => "network_error",
        }
    }
}

impl fmt::Display for FailureReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How bad a failure is: how far past its limit the measured value was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Just past the limit (under 1.5×).
    Medium,
    /// Well past the limit (under 3×).
    High,
    /// Far past the limit, or the connection is gone (timeouts, network errors).
    Critical,
}

impl Severity {
    /// The severity of `value` against `limit`, where larger is worse.
    pub fn of_excess(value: f64, limit: f64) -> Self {
        if limit <= 0.0 || !value.is_finite() {
            return Self::Critical;
        }
        let ratio = value / limit;
        if ratio < 1.5 {
            Self::Medium
        } else if ratio < 3.0 {
            Self::High
        } else {
            Self::Critical
        }
    }
}

/// A failure the detector found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailureEvent {
    /// Why.
    pub reason: FailureReason,
    /// How bad.
    pub severity: Severity,
    /// What was measured, in words.
    pub details: String,
    /// The stream it happened to.
    pub stream_id: String,
    /// When it was detected.
    #[serde(with = "humantime_serde")]
    pub timestamp: SystemTime,
    /// The measured value (loss fraction, seconds, packets per second), when there is one.
    pub value: Option<f64>,
    /// The limit it crossed, when there is one.
    pub threshold: Option<f64>,
}

impl FailureEvent {
    /// A new event, stamped now.
    pub fn new(
        reason: FailureReason,
        severity: Severity,
        stream_id: impl Into<String>,
        details: impl Into<String>,
    ) -> Self {
        Self {
            reason,
            severity,
            details: details.into(),
            stream_id: stream_id.into(),
            timestamp: SystemTime::now(),
            value: None,
            threshold: None,
        }
    }

    /// Attach the measured value and the limit it crossed.
    #[must_use]
    pub fn measured(mut self, value: f64, threshold: f64) -> Self {
        self.value = Some(value);
        self.threshold = Some(threshold);
        self
    }
}
