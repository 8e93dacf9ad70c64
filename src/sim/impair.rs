//! What the simulator does to one packet: the impairment settings and the seeded
//! decision engine that applies them. No sockets here, so it is tested exactly.

use std::fmt;
use std::time::Duration;

/// Two-state burst loss (the Gilbert–Elliott model).
///
/// The channel is either *good* or *bad*. Before each packet it moves from good to
/// bad with probability `p` and from bad to good with probability `r`; a packet is
/// then lost with probability `loss_in_good` or `loss_in_bad` depending on the
/// state. With the defaults (`0` in good, `1` in bad) losses come in bursts of mean
/// length `1 / r`, and the long-run loss rate is `p / (p + r)`.
///
/// ```
/// use mirror_reconnect::sim::GilbertElliott;
///
/// // 5 % loss in bursts of 4 packets on average.
/// let burst = GilbertElliott::from_mean(0.05, 4.0);
/// assert!((burst.mean_loss() - 0.05).abs() < 1e-9);
/// assert!((burst.r - 0.25).abs() < 1e-9);
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GilbertElliott {
    /// Probability of moving from the good to the bad state, per packet.
    pub p: f64,
    /// Probability of moving from the bad to the good state, per packet.
    pub r: f64,
    /// Probability that a packet is lost in the good state. Default 0.
    pub loss_in_good: f64,
    /// Probability that a packet is lost in the bad state. Default 1.
    pub loss_in_bad: f64,
}

impl GilbertElliott {
    /// A model with transition probabilities `p` (good → bad) and `r` (bad → good),
    /// no loss in the good state and total loss in the bad one.
    pub const fn new(p: f64, r: f64) -> Self {
        Self {
            p,
            r,
            loss_in_good: 0.0,
            loss_in_bad: 1.0,
        }
    }

    /// The model that loses `loss` of all packets (0 to below 1) in bursts of
    /// `mean_burst` packets on average (at least 1).
    ///
    /// Out-of-range values are clamped into range.
    pub fn from_mean(loss: f64, mean_burst: f64) -> Self {
        let loss = if loss.is_finite() {
            loss.clamp(0.0, 0.999)
        } else {
            0.0
        };
        let mean_burst = if mean_burst.is_finite() {
            mean_burst.max(1.0)
        } else {
            1.0
        };
        let r = 1.0 / mean_burst;
        Self::new(loss * r / (1.0 - loss), r)
    }

    /// The long-run fraction of packets this model loses.
    pub fn mean_loss(&self) -> f64 {
        let sum = self.p + self.r;
        if sum <= 0.0 {
            return self.loss_in_good;
        }
        let bad = self.p / sum;
        bad * self.loss_in_bad + (1.0 - bad) * self.loss_in_good
    }

    fn validate(&self) -> Result<(), InvalidImpairment> {
        probability("burst_loss.p", self.p)?;
        probability("burst_loss.r", self.r)?;
        probability("burst_loss.loss_in_good", self.loss_in_good)?;
        probability("burst_loss.loss_in_bad", self.loss_in_bad)
    }
}

/// A window in which every packet is dropped, counted from the simulator's start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outage {
    /// When the outage begins, after the simulator started.
    pub start: Duration,
    /// How long it lasts.
    pub duration: Duration,
}

impl Outage {
    /// An outage of `duration` beginning `start` after the simulator started.
    pub const fn new(start: Duration, duration: Duration) -> Self {
        Self { start, duration }
    }

    /// Whether `elapsed` (time since start) falls inside the outage.
    pub fn contains(&self, elapsed: Duration) -> bool {
        elapsed >= self.start && elapsed - self.start < self.duration
    }
}

/// The impairments of one direction of the simulator.
///
/// Probabilities are per packet, from 0 to 1. Latency and jitter never reorder
/// packets by themselves (a packet is never sent before one that came in earlier, as
/// on a real link); reordering is its own setting.
///
/// ```
/// use std::time::Duration;
/// use mirror_reconnect::sim::Impairments;
///
/// let lossy = Impairments {
///     loss: 0.02,
///     latency: Duration::from_millis(40),
///     jitter: Duration::from_millis(5),
///     ..Impairments::default()
/// };
/// assert!(lossy.validate().is_ok());
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Impairments {
    /// Probability that a packet is lost, independently of the others. Default 0.
    pub loss: f64,
    /// Burst loss on top of the random loss. Default none.
    pub burst_loss: Option<GilbertElliott>,
    /// Delay added to every packet. Default none.
    pub latency: Duration,
    /// Each packet's delay varies uniformly by up to this much either way around
    /// `latency` (never below zero). Default none.
    pub jitter: Duration,
    /// Probability that a packet is sent twice. Default 0.
    pub duplicate: f64,
    /// Probability that a packet is held back so that later ones overtake it. Default 0.
    pub reorder: f64,
    /// How many later packets overtake a held-back packet. Default 2.
    pub reorder_distance: u32,
    /// A held-back packet is sent after this long even when too few packets came
    /// to overtake it. Default 100 ms.
    pub reorder_timeout: Duration,
    /// Windows, counted from the simulator's start, in which everything is dropped.
    pub outages: Vec<Outage>,
    /// The most packets waiting to go out (delayed or held back); one more is
    /// dropped, as a router's full queue drops it, and counted in
    /// [`DirectionStats::dropped_queue_full`](super::DirectionStats::dropped_queue_full).
    /// Keeps a flood through a slow link from growing memory without bound. At least
    /// 1; default 10 000 (13 MB of 1316-byte datagrams).
    pub queue_limit: usize,
}

/// [`Impairments::queue_limit`]'s default.
pub(crate) const DEFAULT_QUEUE_LIMIT: usize = 10_000;

impl Default for Impairments {
    fn default() -> Self {
        Self {
            loss: 0.0,
            burst_loss: None,
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_distance: 2,
            reorder_timeout: Duration::from_millis(100),
            outages: Vec::new(),
            queue_limit: DEFAULT_QUEUE_LIMIT,
        }
    }
}

impl Impairments {
    /// No impairment at all: every packet goes through at once.
    pub fn none() -> Self {
        Self::default()
    }

    /// Check every value; the error names the setting that is wrong.
    pub fn validate(&self) -> Result<(), InvalidImpairment> {
        probability("loss", self.loss)?;
        if let Some(burst) = &self.burst_loss {
            burst.validate()?;
        }
        if self.queue_limit == 0 {
            return Err(InvalidImpairment::new(
                "queue_limit",
                "0",
                "must be at least 1 packet",
            ));
        }
        probability("duplicate", self.duplicate)?;
        probability("reorder", self.reorder)?;
        if self.reorder > 0.0 && self.reorder_distance == 0 {
            return Err(InvalidImpairment::new(
                "reorder_distance",
                "0",
                "must be at least 1 when reorder is on",
            ));
        }
        Ok(())
    }
}

/// A setting of the simulator that is out of range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidImpairment {
    field: &'static str,
    value: String,
    rule: &'static str,
}

impl InvalidImpairment {
    fn new(field: &'static str, value: impl Into<String>, rule: &'static str) -> Self {
        Self {
            field,
            value: value.into(),
            rule,
        }
    }

    /// The setting that is wrong (`loss`, `burst_loss.p`, …).
    pub fn field(&self) -> &'static str {
        self.field
    }
}

impl fmt::Display for InvalidImpairment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid network simulation setting {}: {} {}",
            self.field, self.value, self.rule
        )
    }
}

impl std::error::Error for InvalidImpairment {}

impl From<InvalidImpairment> for std::io::Error {
    fn from(e: InvalidImpairment) -> Self {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, e)
    }
}

fn probability(field: &'static str, v: f64) -> Result<(), InvalidImpairment> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(InvalidImpairment::new(
            field,
            v.to_string(),
            "must be a probability from 0 to 1",
        ))
    }
}

/// Why a packet was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DropReason {
    Blackhole,
    Outage,
    Loss,
    Burst,
}

/// What happens to one packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Drop(DropReason),
    Forward {
        /// Added delay.
        delay: Duration,
        /// Whether a second copy goes too.
        duplicate: bool,
        /// Held back until this many later packets went out.
        hold: Option<u32>,
    },
}

/// The seeded state of one direction: settings, random source, burst state.
#[derive(Debug)]
pub(crate) struct Engine {
    pub(crate) impairments: Impairments,
    pub(crate) blackhole: bool,
    rng: fastrand::Rng,
    bad: bool,
}

impl Engine {
    pub(crate) fn new(impairments: Impairments, seed: u64) -> Self {
        Self {
            impairments,
            blackhole: false,
            rng: fastrand::Rng::with_seed(seed),
            bad: false,
        }
    }

    /// Decide the fate of the packet arriving `elapsed` after the start.
    pub(crate) fn decide(&mut self, elapsed: Duration) -> Verdict {
        let imp = &self.impairments;
        if self.blackhole {
            return Verdict::Drop(DropReason::Blackhole);
        }
        if imp.outages.iter().any(|o| o.contains(elapsed)) {
            return Verdict::Drop(DropReason::Outage);
        }
        if imp.loss > 0.0 && self.rng.f64() < imp.loss {
            return Verdict::Drop(DropReason::Loss);
        }
        if let Some(ge) = imp.burst_loss {
            let loss = if self.bad {
                ge.loss_in_bad
            } else {
                ge.loss_in_good
            };
            let lost = loss > 0.0 && self.rng.f64() < loss;
            let flip = if self.bad { ge.r } else { ge.p };
            if flip > 0.0 && self.rng.f64() < flip {
                self.bad = !self.bad;
            }
            if lost {
                return Verdict::Drop(DropReason::Burst);
            }
        }
        let delay = if imp.jitter.is_zero() {
            imp.latency
        } else {
            // Uniform in [latency - jitter, latency + jitter], floored at zero.
            let spread = imp.jitter.as_secs_f64() * (2.0 * self.rng.f64() - 1.0);
            Duration::from_secs_f64((imp.latency.as_secs_f64() + spread).max(0.0))
        };
        let duplicate = imp.duplicate > 0.0 && self.rng.f64() < imp.duplicate;
        let hold = (imp.reorder > 0.0 && self.rng.f64() < imp.reorder)
            .then_some(imp.reorder_distance.max(1));
        Verdict::Forward {
            delay,
            duplicate,
            hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(imp: Impairments, seed: u64, n: usize) -> Vec<Verdict> {
        let mut engine = Engine::new(imp, seed);
        (0..n).map(|_| engine.decide(Duration::ZERO)).collect()
    }

    fn dropped(v: &[Verdict], reason: DropReason) -> usize {
        v.iter().filter(|x| **x == Verdict::Drop(reason)).count()
    }

    #[test]
    fn random_loss_rate_is_within_bounds() {
        let n = 100_000;
        let v = run(
            Impairments {
                loss: 0.1,
                ..Impairments::default()
            },
            7,
            n,
        );
        let lost = dropped(&v, DropReason::Loss) as f64 / n as f64;
        // Standard deviation is about 0.001; allow five of them.
        assert!((lost - 0.1).abs() < 0.005, "loss {lost}");
    }

    #[test]
    fn same_seed_same_fate() {
        let imp = Impairments {
            loss: 0.2,
            burst_loss: Some(GilbertElliott::from_mean(0.05, 5.0)),
            jitter: Duration::from_millis(3),
            latency: Duration::from_millis(10),
            duplicate: 0.1,
            reorder: 0.1,
            ..Impairments::default()
        };
        assert_eq!(run(imp.clone(), 42, 5_000), run(imp.clone(), 42, 5_000));
        assert_ne!(run(imp.clone(), 42, 5_000), run(imp, 43, 5_000));
    }

    #[test]
    fn burst_loss_has_its_mean_and_comes_in_bursts() {
        let n = 200_000;
        let v = run(
            Impairments {
                burst_loss: Some(GilbertElliott::from_mean(0.05, 8.0)),
                ..Impairments::default()
            },
            1,
            n,
        );
        let lost: Vec<bool> = v
            .iter()
            .map(|x| *x == Verdict::Drop(DropReason::Burst))
            .collect();
        let total = lost.iter().filter(|l| **l).count();
        let rate = total as f64 / n as f64;
        assert!((rate - 0.05).abs() < 0.01, "burst loss rate {rate}");
        let bursts = lost.windows(2).filter(|w| !w[0] && w[1]).count().max(1);
        let mean_burst = total as f64 / bursts as f64;
        assert!(
            (6.0..10.0).contains(&mean_burst),
            "mean burst length {mean_burst}"
        );
    }

    #[test]
    fn blackhole_and_outages_drop_everything_in_their_window() {
        let mut engine = Engine::new(
            Impairments {
                outages: vec![Outage::new(
                    Duration::from_secs(1),
                    Duration::from_millis(500),
                )],
                ..Impairments::default()
            },
            0,
        );
        let at = |ms| Duration::from_millis(ms);
        assert!(matches!(engine.decide(at(999)), Verdict::Forward { .. }));
        assert_eq!(engine.decide(at(1000)), Verdict::Drop(DropReason::Outage));
        assert_eq!(engine.decide(at(1499)), Verdict::Drop(DropReason::Outage));
        assert!(matches!(engine.decide(at(1500)), Verdict::Forward { .. }));
        engine.blackhole = true;
        assert!((0..1000).all(|_| engine.decide(at(0)) == Verdict::Drop(DropReason::Blackhole)));
    }

    #[test]
    fn jitter_stays_around_latency() {
        let v = run(
            Impairments {
                latency: Duration::from_millis(20),
                jitter: Duration::from_millis(5),
                ..Impairments::default()
            },
            3,
            10_000,
        );
        let delays: Vec<Duration> = v
            .iter()
            .filter_map(|x| match x {
                Verdict::Forward { delay, .. } => Some(*delay),
                Verdict::Drop(_) => None,
            })
            .collect();
        assert_eq!(delays.len(), 10_000);
        assert!(delays
            .iter()
            .all(|d| (Duration::from_millis(15)..=Duration::from_millis(25)).contains(d)));
        let mean = delays.iter().sum::<Duration>() / 10_000;
        assert!(
            (mean.as_secs_f64() - 0.020).abs() < 0.0005,
            "mean delay {mean:?}"
        );
    }

    #[test]
    fn out_of_range_settings_name_the_field() {
        let bad = Impairments {
            loss: 1.5,
            ..Impairments::default()
        };
        let err = bad.validate().expect_err("loss 1.5 is refused");
        assert_eq!(err.field(), "loss");
        assert!(err.to_string().contains("1.5"), "{err}");
        let bad = Impairments {
            burst_loss: Some(GilbertElliott::new(f64::NAN, 0.1)),
            ..Impairments::default()
        };
        assert_eq!(
            bad.validate().expect_err("NaN is refused").field(),
            "burst_loss.p"
        );
    }
}
