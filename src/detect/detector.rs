use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{FailureEvent, FailureReason, FailureThresholds, Severity, SilenceConfig};
use crate::connection::HealthCounters;

/// A callback told of every failure a detector finds.
pub type FailureCallback = Arc<dyn Fn(&FailureEvent) + Send + Sync>;

/// What happened on a connection over one check interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Window {
    /// How long the interval was.
    pub elapsed: Duration,
    /// Packets received in it.
    pub packets: u64,
    /// Bad packets and errors in it.
    pub errors: u64,
    /// Packets the sequence numbers say were sent in it.
    pub expected: u64,
    /// Packets the sequence numbers say were lost in it.
    pub lost: u64,
    /// The latency the protocol reports now.
    pub latency: Option<Duration>,
    /// The expected packet rate, for loss of unnumbered packets.
    pub expected_rate: Option<f64>,
}

impl Window {
    /// The window between two snapshots of the counters.
    pub(crate) fn between(
        before: &HealthCounters,
        after: &HealthCounters,
        elapsed: Duration,
        latency: Option<Duration>,
        expected_rate: Option<f64>,
    ) -> Self {
        Self {
            elapsed,
            packets: after.packets.saturating_sub(before.packets),
            errors: after.errors.saturating_sub(before.errors),
            expected: after.expected.saturating_sub(before.expected),
            lost: after.lost.saturating_sub(before.lost),
            latency,
            expected_rate,
        }
    }
}

/// The judge: thresholds, silence settings, check interval and callbacks, shared by
/// every connection a [`FailureDetectLayer`](super::FailureDetectLayer) wraps.
#[derive(Clone)]
pub struct FailureDetector {
    pub(crate) thresholds: FailureThresholds,
    /// Shared with every connection's [`SilenceDetector`].
    pub(crate) silence: Arc<SilenceConfig>,
    pub(crate) check_interval: Duration,
    pub(crate) callbacks: Vec<FailureCallback>,
}

impl fmt::Debug for FailureDetector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FailureDetector")
            .field("thresholds", &self.thresholds)
            .field("silence", &self.silence)
            .field("check_interval", &self.check_interval)
            .field("callbacks", &self.callbacks.len())
            .finish()
    }
}

impl FailureDetector {
    /// A detector with these thresholds, default silence settings and a 1 s check interval.
    pub(crate) fn new(thresholds: FailureThresholds) -> Self {
        Self {
            thresholds,
            silence: Arc::new(SilenceConfig::default()),
            check_interval: Duration::from_secs(1),
            callbacks: Vec::new(),
        }
    }

    /// The thresholds.
    pub fn thresholds(&self) -> &FailureThresholds {
        &self.thresholds
    }

    /// The silence settings.
    pub fn silence(&self) -> &SilenceConfig {
        &self.silence
    }

    /// How often thresholds are checked.
    pub fn check_interval(&self) -> Duration {
        self.check_interval
    }

    /// Judge one check interval: the first limit crossed, in the order loss, latency,
    /// error rate, packet rate. Silence is judged continuously, not here. The event's
    /// stream id is left empty, for the caller to fill in: most windows cross nothing,
    /// and the id is not kept by every connection.
    pub(crate) fn evaluate(&self, window: &Window) -> Option<FailureEvent> {
        let t = &self.thresholds;
        let secs = window.elapsed.as_secs_f64();

        let loss = if window.expected > 0 {
            (window.expected >= t.min_samples).then(|| window.lost as f64 / window.expected as f64)
        } else {
            window.expected_rate.and_then(|rate| {
                let expected = rate * secs;
                (expected >= t.min_samples as f64)
                    .then(|| (1.0 - window.packets as f64 / expected).max(0.0))
            })
        };
        if let Some(loss) = loss {
            if loss >= t.max_packet_loss {
                return Some(self.event(
                    FailureReason::PacketLoss,
                    format!(
                        "{:.1} % of packets lost over {:?} (limit {:.1} %)",
                        loss * 100.0,
                        window.elapsed,
                        t.max_packet_loss * 100.0
                    ),
                    loss,
                    t.max_packet_loss,
                ));
            }
        }

        if let Some(latency) = window.latency {
            if latency >= t.max_latency {
                return Some(self.event(
                    FailureReason::HighLatency,
                    format!("round-trip time {latency:?} (limit {:?})", t.max_latency),
                    latency.as_secs_f64(),
                    t.max_latency.as_secs_f64(),
                ));
            }
        }

        let seen = window.packets + window.errors;
        if seen >= t.min_samples.max(1) {
            let rate = window.errors as f64 / seen as f64;
            if rate >= t.max_error_rate {
                return Some(self.event(
                    FailureReason::HighErrorRate,
                    format!(
                        "{} of {} packets bad over {:?} (limit {:.1} %)",
                        window.errors,
                        seen,
                        window.elapsed,
                        t.max_error_rate * 100.0
                    ),
                    rate,
                    t.max_error_rate,
                ));
            }
        }

        if t.min_packet_rate > 0.0 && secs > 0.0 {
            let rate = window.packets as f64 / secs;
            if rate <= t.min_packet_rate {
                let event = FailureEvent::new(
                    FailureReason::LowPacketRate,
                    if window.packets == 0 {
                        Severity::Critical
                    } else {
                        Severity::of_excess(t.min_packet_rate, rate)
                    },
                    String::new(),
                    format!(
                        "{rate:.2} packets/s over {:?} (minimum {:.2})",
                        window.elapsed, t.min_packet_rate
                    ),
                )
                .measured(rate, t.min_packet_rate);
                return Some(event);
            }
        }
        None
    }

    fn event(
        &self,
        reason: FailureReason,
        details: String,
        value: f64,
        limit: f64,
    ) -> FailureEvent {
        FailureEvent::new(
            reason,
            Severity::of_excess(value, limit),
            String::new(),
            details,
        )
        .measured(value, limit)
    }

    /// Tell every callback, and the log, of `event`.
    pub(crate) fn report(&self, event: &FailureEvent) {
        tracing::warn!(
            stream_id = %event.stream_id,
            reason = %event.reason,
            severity = ?event.severity,
            details = %event.details,
            "connection failure detected"
        );
        for callback in &self.callbacks {
            callback(event);
        }
    }
}
