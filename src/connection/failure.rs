//! What a failed connection is reported as: the reason, how bad, and what was measured.
//! Made by the failure detector, carried by the connection's stream and the driver's
//! events, so it lives on the ground floor.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

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
    pub(crate) fn of_excess(value: f64, limit: f64) -> Self {
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
