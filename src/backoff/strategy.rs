use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A source of delays between connect attempts.
///
/// Each call to [`next_delay`](Backoff::next_delay) gives the wait before the next
/// attempt; [`reset`](Backoff::reset) starts the sequence over after a success.
/// Implement it to plug in a policy of your own.
///
/// ```
/// use std::time::Duration;
/// use mirror_reconnect::backoff::{Backoff, ExponentialBackoff, Jitter};
///
/// let mut backoff = ExponentialBackoff::new(Duration::from_secs(1), Duration::from_secs(30), 2.0)
///     .jitter(Jitter::None);
/// let delays: Vec<_> = (0..6).map(|_| backoff.next_delay().as_secs()).collect();
/// assert_eq!(delays, [1, 2, 4, 8, 16, 30]);
/// backoff.reset();
/// assert_eq!(backoff.next_delay(), Duration::from_secs(1));
/// ```
pub trait Backoff: Send + Sync + 'static {
    /// The delay before the next attempt.
    fn next_delay(&mut self) -> Duration;

    /// Start over, as after a success.
    fn reset(&mut self);
}

// The driver keeps a `Box<dyn Backoff>`: this stops compiling if the trait stops being
// usable as a trait object.
#[allow(dead_code)]
fn _obj_safe(_: Box<dyn Backoff>) {}

/// How randomness is added to a delay so that many streams that failed together do not
/// retry together (see AWS's "Exponential Backoff and Jitter").
///
/// With `base` the delay the policy computed and `rand` uniform in `[0, 1)`:
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// `base`, exactly.
    None,
    /// `base + rand · base / 10`: up to 10 % more (too little to spread many
    /// streams that failed together).
    Proportional,
    /// `rand · base`: anywhere from zero to `base`.
    Full,
    /// `base / 2 + rand · base / 2`. The default: it spreads a fleet's retries over
    /// half of each delay while keeping at least half of the backoff's growth, so
    /// `max_retries` still covers about as long an outage as without jitter.
    #[default]
    Equal,
    /// `min(max, initial + rand · (3 · previous − initial))`: each delay drawn
    /// from the one before, not from the attempt count.
    Decorrelated,
}

impl fmt::Display for Jitter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::None => "none",
            Self::Proportional => "proportional",
            Self::Full => "full",
            Self::Equal => "equal",
            Self::Decorrelated => "decorrelated",
        })
    }
}

/// The randomness and memory jitter needs, shared by the three policies.
struct Jittered {
    jitter: Jitter,
    rng: fastrand::Rng,
    /// Seeded by the user for reproducible sequences: clones then repeat them.
    seeded: bool,
    previous: Option<Duration>,
}

impl Clone for Jittered {
    /// A clone draws its own random numbers (unless seeded): the retry layer clones
    /// its backoff for every stream and every reconnection, and copies of one generator
    /// would make them all wait the same "random" delays, which is what jitter is there
    /// to prevent.
    fn clone(&self) -> Self {
        Self {
            jitter: self.jitter,
            rng: if self.seeded {
                self.rng.clone()
            } else {
                fastrand::Rng::new()
            },
            seeded: self.seeded,
            previous: self.previous,
        }
    }
}

impl fmt::Debug for Jittered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jittered")
            .field("jitter", &self.jitter)
            .field("previous", &self.previous)
            .finish_non_exhaustive()
    }
}

impl Jittered {
    fn new(jitter: Jitter) -> Self {
        Self {
            jitter,
            rng: fastrand::Rng::new(),
            seeded: false,
            previous: None,
        }
    }

    fn apply(&mut self, base: Duration, initial: Duration, max: Duration) -> Duration {
        let r = self.rng.f64();
        let delay = match self.jitter {
            Jitter::None => base,
            Jitter::Proportional => base.mul_f64(1.0 + r / 10.0),
            Jitter::Full => base.mul_f64(r),
            Jitter::Equal => base / 2 + (base / 2).mul_f64(r),
            Jitter::Decorrelated => {
                let previous = self.previous.unwrap_or(initial);
                let upper = previous.saturating_mul(3).max(initial);
                (initial + (upper - initial).mul_f64(r)).min(max)
            }
        };
        self.previous = Some(delay);
        delay
    }

    fn reset(&mut self) {
        self.previous = None;
    }
}

/// Delays that grow by a factor: `initial · multiplier^n`, capped at `max`.
#[derive(Debug, Clone)]
#[must_use]
pub struct ExponentialBackoff {
    initial: Duration,
    max: Duration,
    multiplier: f64,
    attempt: u32,
    jitter: Jittered,
}

impl ExponentialBackoff {
    /// From `initial`, multiplied by `multiplier` each attempt, never above `max`.
    /// Equal jitter by default.
    ///
    /// A multiplier below 1 (or not a number) is taken as 1; a `max` below `initial` as
    /// `initial`. [`ReconnectionConfig::validate`](crate::ReconnectionConfig::validate)
    /// rejects such values with an error instead.
    pub fn new(initial: Duration, max: Duration, multiplier: f64) -> Self {
        Self {
            initial,
            max: max.max(initial),
            multiplier: if multiplier >= 1.0 { multiplier } else { 1.0 },
            attempt: 0,
            jitter: Jittered::new(Jitter::default()),
        }
    }

    /// Set the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter.jitter = jitter;
        self
    }

    /// Seed the jitter's randomness, for reproducible sequences.
    pub fn seed(mut self, seed: u64) -> Self {
        self.jitter.rng = fastrand::Rng::with_seed(seed);
        self.jitter.seeded = true;
        self
    }

    fn base(&self) -> Duration {
        let factor = self.multiplier.powi(self.attempt.min(1024) as i32);
        Duration::try_from_secs_f64(self.initial.as_secs_f64() * factor)
            .unwrap_or(self.max)
            .min(self.max)
    }
}

impl Default for ExponentialBackoff {
    /// 1 s doubling up to 30 s, with equal jitter.
    fn default() -> Self {
        Self::new(Duration::from_secs(1), Duration::from_secs(30), 2.0)
    }
}

impl Backoff for ExponentialBackoff {
    fn next_delay(&mut self) -> Duration {
        let base = self.base();
        self.attempt = self.attempt.saturating_add(1);
        self.jitter.apply(base, self.initial, self.max)
    }

    fn reset(&mut self) {
        self.attempt = 0;
        self.jitter.reset();
    }
}

/// Delays that grow by a step: `initial + increment · n`, capped at `max`.
#[derive(Debug, Clone)]
#[must_use]
pub struct LinearBackoff {
    initial: Duration,
    increment: Duration,
    max: Duration,
    attempt: u32,
    jitter: Jittered,
}

impl LinearBackoff {
    /// From `initial`, `increment` more each attempt, never above `max`.
    /// No jitter by default.
    pub fn new(initial: Duration, increment: Duration, max: Duration) -> Self {
        Self {
            initial,
            increment,
            max: max.max(initial),
            attempt: 0,
            jitter: Jittered::new(Jitter::None),
        }
    }

    /// Set the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter.jitter = jitter;
        self
    }

    /// Seed the jitter's randomness, for reproducible sequences.
    pub fn seed(mut self, seed: u64) -> Self {
        self.jitter.rng = fastrand::Rng::with_seed(seed);
        self.jitter.seeded = true;
        self
    }
}

impl Backoff for LinearBackoff {
    fn next_delay(&mut self) -> Duration {
        let base = self
            .initial
            .saturating_add(self.increment.saturating_mul(self.attempt))
            .min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        self.jitter.apply(base, self.initial, self.max)
    }

    fn reset(&mut self) {
        self.attempt = 0;
        self.jitter.reset();
    }
}

/// The same delay every time.
#[derive(Debug, Clone)]
#[must_use]
pub struct FixedBackoff {
    delay: Duration,
    jitter: Jittered,
}

impl FixedBackoff {
    /// Always `delay`. No jitter by default.
    pub fn new(delay: Duration) -> Self {
        Self {
            delay,
            jitter: Jittered::new(Jitter::None),
        }
    }

    /// Set the jitter.
    pub fn jitter(mut self, jitter: Jitter) -> Self {
        self.jitter.jitter = jitter;
        self
    }

    /// Seed the jitter's randomness, for reproducible sequences.
    pub fn seed(mut self, seed: u64) -> Self {
        self.jitter.rng = fastrand::Rng::with_seed(seed);
        self.jitter.seeded = true;
        self
    }
}

impl Backoff for FixedBackoff {
    fn next_delay(&mut self) -> Duration {
        self.jitter.apply(self.delay, self.delay, self.delay)
    }

    fn reset(&mut self) {
        self.jitter.reset();
    }
}

impl<B: Backoff + ?Sized> Backoff for Box<B> {
    fn next_delay(&mut self) -> Duration {
        (**self).next_delay()
    }

    fn reset(&mut self) {
        (**self).reset();
    }
}
