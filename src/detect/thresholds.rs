use std::time::Duration;

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
