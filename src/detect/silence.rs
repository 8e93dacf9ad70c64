use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Settings of the adaptive media-silence detector.
///
/// The detector learns the stream's own packet rhythm from the gaps between packet
/// arrivals, phi-accrual style: it keeps a moving mean and deviation of the gaps and a
/// slowly decaying maximum gap, and suspects silence once the time since the last packet
/// is both improbable under the learned distribution (phi ≥ `phi_threshold`) and
/// `max_gap_margin` times longer than the longest recent gap. The second rule is what
/// keeps a bursty VBR stream (long gaps between frames) or a lossy one (gaps of several
/// lost packets) free of false alarms; the first keeps a smooth stream's detection at a
/// few gaps. The result is clamped between `floor` and `ceiling`.
///
/// The bounds given for each field are those
/// [`ReconnectionConfig::validate`](crate::ReconnectionConfig::validate) checks.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SilenceConfig {
    /// Whether the adaptive detector runs (the fixed `timeout_duration` always does).
    pub enabled: bool,
    /// Suspicion level that trips: phi = -log10(probability that a gap is this long).
    /// Default 8 (one false suspicion in 10⁸ gaps under the learned distribution);
    /// above 0, at most 100.
    pub phi_threshold: f64,
    /// How many times the longest recent gap the silence must last. Default 2; from 1
    /// to 100.
    pub max_gap_margin: f64,
    /// Half-life of the remembered longest gap. Default 30 s; from 1 ms to 24 h.
    #[serde(with = "humantime_serde")]
    pub max_gap_half_life: Duration,
    /// Never suspect silence sooner than this. Default 10 ms; at most `ceiling`.
    #[serde(with = "humantime_serde")]
    pub floor: Duration,
    /// Always suspect silence by this time (also the limit while the rhythm is still
    /// being learned). Default 3 s, under SRT's 5 s peer-idle timeout; from 1 ms to
    /// 24 h.
    #[serde(with = "humantime_serde")]
    pub ceiling: Duration,
    /// Gaps to learn from before the adaptive limit applies; they must also span at
    /// least `min_samples` × `floor` of time (160 ms by default), so that a burst of
    /// back-to-back packets (a keyframe) is not taken for the stream's rhythm. Until
    /// then the limit is the `ceiling`. Default 16; from 1 (0 is taken as 1: with no
    /// gap learned the limit would be the floor) to 10 000.
    pub min_samples: u32,
}

impl Default for SilenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            phi_threshold: 8.0,
            max_gap_margin: 2.0,
            max_gap_half_life: Duration::from_secs(30),
            floor: Duration::from_millis(10),
            ceiling: Duration::from_secs(3),
            min_samples: 16,
        }
    }
}

/// Weight of a new gap in the moving mean and variance.
const ALPHA: f64 = 1.0 / 32.0;
/// The learning period, in multiples of `min_samples` gaps.
const LEARNING: u32 = 8;
/// The least limit during the learning period, in mean gaps: five lost packets in a
/// row (at 5 % random loss, one chance in 3 million per packet) do not trip it.
const LEARNING_GAPS: f64 = 6.0;

/// The tail probability of the standard normal beyond `y`, by the logistic
/// approximation the phi accrual detectors of Akka and Cassandra use.
fn phi_of(y: f64) -> f64 {
    let e = (-y * (1.5976 + 0.070566 * y * y)).exp();
    if y > 0.0 {
        -(e / (1.0 + e)).log10()
    } else {
        -(1.0 - 1.0 / (1.0 + e)).log10()
    }
}

/// The number of deviations past the mean at which phi reaches `threshold`.
fn z_for(threshold: f64) -> f64 {
    let (mut lo, mut hi) = (0.0_f64, 40.0_f64);
    for _ in 0..60 {
        let mid = (lo + hi) / 2.0;
        if phi_of(mid) < threshold {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    hi
}

/// The learned rhythm of one connection's packets.
#[derive(Debug, Clone)]
pub struct SilenceDetector {
    /// Shared with the layer's other connections: one copy per layer, not per
    /// connection.
    config: Arc<SilenceConfig>,
    z: f64,
    first_arrival: Option<Instant>,
    last_arrival: Option<Instant>,
    samples: u32,
    mean: f64,
    var: f64,
    max_gap: f64,
}

impl SilenceDetector {
    /// A detector that has seen nothing yet.
    pub fn new(config: SilenceConfig) -> Self {
        Self::shared(Arc::new(config))
    }

    /// A detector that has seen nothing yet, with settings shared with others.
    pub(crate) fn shared(config: Arc<SilenceConfig>) -> Self {
        Self {
            z: z_for(config.phi_threshold.max(0.1)),
            config,
            first_arrival: None,
            last_arrival: None,
            samples: 0,
            mean: 0.0,
            var: 0.0,
            max_gap: 0.0,
        }
    }

    /// Learn from a packet that arrived at `arrival`.
    #[inline]
    pub fn observe(&mut self, arrival: Instant) {
        if let Some(last) = self.last_arrival {
            if arrival > last {
                self.learn(arrival.duration_since(last).as_secs_f64());
            }
        }
        if self.last_arrival.is_none_or(|last| arrival > last) {
            self.last_arrival = Some(arrival);
        }
        if self.first_arrival.is_none() {
            self.first_arrival = Some(arrival);
        }
    }

    fn learn(&mut self, gap: f64) {
        if self.samples == 0 {
            self.mean = gap;
            self.var = 0.0;
        } else {
            let diff = gap - self.mean;
            self.mean += ALPHA * diff;
            self.var = (1.0 - ALPHA) * (self.var + ALPHA * diff * diff);
        }
        self.samples = self.samples.saturating_add(1);
        let half_life = self.config.max_gap_half_life.as_secs_f64().max(1e-3);
        let ratio = gap / half_life;
        // 2^-r, to first order for the tiny ratios of a live stream (a gap is
        // milliseconds, the half-life tens of seconds): this runs for every packet.
        let decay = if ratio < 1e-3 {
            1.0 - ratio * std::f64::consts::LN_2
        } else {
            0.5_f64.powf(ratio)
        };
        self.max_gap = (self.max_gap * decay).max(gap);
    }

    /// Whether the gaps learned cover at least `min_samples` floors of time. No
    /// silence shorter than the floor is ever suspected, so a rhythm learned only
    /// from shorter gaps (the back-to-back packets of one burst, such as a keyframe's
    /// at the start of a stream) says nothing about silence yet: judged on it, the
    /// next frame's gap would look like one.
    fn spans_enough(&self, min_samples: u32) -> bool {
        let (Some(first), Some(last)) = (self.first_arrival, self.last_arrival) else {
            return false;
        };
        last.duration_since(first) >= self.config.floor.saturating_mul(min_samples)
    }

    fn compute_limit(&self) -> Duration {
        // At least one gap: with none, the mean is zero and the limit the floor.
        let min_samples = self.config.min_samples.max(1);
        if !self.config.enabled || self.samples < min_samples || !self.spans_enough(min_samples) {
            return self.config.ceiling;
        }
        // A floor on the deviation, as in Akka, so a perfectly regular stream does
        // not make any late packet infinitely suspicious.
        let std = self.var.sqrt().max(self.mean / 4.0);
        let by_phi = self.mean + self.z * std;
        let mut by_max = self.config.max_gap_margin * self.max_gap;
        if self.samples < LEARNING.saturating_mul(min_samples) {
            // Early on, the longest gap seen is short and the deviation small, so two or
            // three lost packets in a row would look like silence: until the rhythm is
            // well known, wait at least this many mean gaps.
            by_max = by_max.max(LEARNING_GAPS * self.mean);
        }
        let secs = by_phi.max(by_max);
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.config.ceiling)
            .clamp(
                self.config.floor,
                self.config.ceiling.max(self.config.floor),
            )
    }

    /// How long a silence may last before it is suspected, as learned so far.
    pub fn limit(&self) -> Duration {
        self.compute_limit()
    }

    /// When the last packet arrived.
    pub fn last_arrival(&self) -> Option<Instant> {
        self.last_arrival
    }

    /// The learned mean gap between packets.
    pub fn mean_gap(&self) -> Duration {
        Duration::try_from_secs_f64(self.mean).unwrap_or_default()
    }

    /// The suspicion level after `silence` without a packet (phi: 1 means a
    /// one-in-ten chance that the stream is merely slow, 8 one in 10⁸).
    pub fn phi(&self, silence: Duration) -> f64 {
        if self.samples == 0 {
            return 0.0;
        }
        let std = self.var.sqrt().max(self.mean / 4.0).max(1e-9);
        phi_of((silence.as_secs_f64() - self.mean) / std)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_matches_the_threshold() {
        let z = z_for(8.0);
        assert!((phi_of(z) - 8.0).abs() < 1e-6);
        assert!(z > 5.0 && z < 6.5, "{z}");
    }

    #[test]
    fn limit_is_the_ceiling_until_learned() {
        let mut d = SilenceDetector::new(SilenceConfig::default());
        let t0 = Instant::now();
        for i in 0..10 {
            d.observe(t0 + Duration::from_millis(10 * i));
        }
        assert_eq!(d.limit(), Duration::from_secs(3));
    }

    #[test]
    fn min_samples_0_waits_for_a_gap_as_1_does() {
        let config = SilenceConfig {
            min_samples: 0,
            ..SilenceConfig::default()
        };
        let mut d = SilenceDetector::new(config);
        let t0 = Instant::now();
        d.observe(t0);
        assert_eq!(d.limit(), config.ceiling, "no gap learned yet");
        d.observe(t0 + Duration::from_millis(10));
        assert_eq!(
            d.limit(),
            Duration::from_millis(60),
            "six gaps while learning"
        );
    }

    #[test]
    fn regular_stream_limit_is_a_few_gaps() {
        let mut d = SilenceDetector::new(SilenceConfig::default());
        let t0 = Instant::now();
        for i in 0..1000 {
            d.observe(t0 + Duration::from_millis(10 * i));
        }
        let limit = d.limit();
        assert!(
            limit >= Duration::from_millis(20) && limit <= Duration::from_millis(40),
            "{limit:?}"
        );
    }
}
