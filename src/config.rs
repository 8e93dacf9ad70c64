//! Configuration: one serde struct, from YAML, validated, that builds the layer stack.
//!
//! Every key is optional and takes its default; an unknown key is an error, so a typo
//! cannot pass silently. Durations are written as `"1s"`, `"250ms"`, `"1m 30s"`.
//!
//! ```
//! use mirror_reconnect::ReconnectionConfig;
//!
//! let config = ReconnectionConfig::from_yaml_str(r#"
//! max_retries: 8
//! backoff_type: exponential
//! initial_delay: 250ms
//! max_delay: 10s
//! jitter: full
//! health_thresholds:
//!   max_packet_loss: 0.02
//! srt:
//!   connect_timeout: 2s
//! "#).unwrap();
//! assert_eq!(config.max_retries, 8);
//!
//! let typo = ReconnectionConfig::from_yaml_str("max_retires: 8");
//! assert!(typo.unwrap_err().to_string().contains("max_retires"));
//! ```

use crate::failover::{FailoverConfig, MIN_SWITCH_BACK_AFTER};
use std::fmt;
use std::path::Path;

/// The longest config file [`ReconnectionConfig::from_yaml_file`] reads: 1 MiB,
/// thousands of times what every key takes.
pub const MAX_CONFIG_FILE: u64 = 1024 * 1024;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::backoff::{
    AnyBackoff, BackoffRetryLayer, ExponentialBackoff, FixedBackoff, Jitter, LinearBackoff,
};
use crate::connection::redact_url;
use crate::detect::{FailureDetectLayer, FailureThresholds, SilenceConfig};
use crate::driver::Events;
use crate::restore::{StateRestoreLayer, StateStorage};

/// Which backoff policy to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackoffType {
    /// `initial_delay · multiplier^n`, up to `max_delay`.
    #[default]
    Exponential,
    /// `initial_delay + increment · n`, up to `max_delay`.
    Linear,
    /// `initial_delay` every time.
    Fixed,
}

/// SRT settings.
///
/// Its two keys are older names of settings that apply to every protocol: prefer the
/// top-level `attempt_timeout` and `retry_on_close`, which win when both are set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SrtConfig {
    /// Alias of the top-level `attempt_timeout`, read when that is not set. Default
    /// 3 s; from 1 ms to 24 h.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Alias of the top-level `retry_on_close`, read when that is not set. Default
    /// true.
    pub retry_on_close: bool,
}

impl Default for SrtConfig {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(3),
            retry_on_close: true,
        }
    }
}

/// RTP settings, read by the RTP connector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RtpConfig {
    /// How long an RTP session may go without packets before the connector ends it.
    /// Default 10 s; from 1 ms to 24 h.
    #[serde(with = "humantime_serde")]
    pub session_timeout: Duration,
    /// Whether a session that timed out is reconnected. Default true.
    pub retry_on_timeout: bool,
}

impl RtpConfig {
    /// The RTP connector these settings describe.
    #[cfg(feature = "rtp")]
    pub fn connector(&self) -> crate::protocol::rtp::RtpConnector {
        crate::protocol::rtp::RtpConnector::new()
            .session_timeout(self.session_timeout)
            .retry_on_timeout(self.retry_on_timeout)
    }
}

impl Default for RtpConfig {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            retry_on_timeout: true,
        }
    }
}

/// Everything that decides how a stream reconnects.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ReconnectionConfig {
    /// Retries after the first attempt before a reconnection gives up. Default 5; at
    /// most 1 000 000.
    pub max_retries: u32,
    /// How often health thresholds are checked. Default 1 s; from 1 ms to 24 h.
    #[serde(with = "humantime_serde")]
    pub check_interval: Duration,
    /// exponential (default), linear or fixed.
    pub backoff_type: BackoffType,
    /// First delay. Default 1 s; above zero, at most 24 h.
    #[serde(with = "humantime_serde")]
    pub initial_delay: Duration,
    /// Largest delay. Default 30 s; at least `initial_delay`, at most 24 h.
    #[serde(with = "humantime_serde")]
    pub max_delay: Duration,
    /// Growth factor of exponential backoff. Default 2; from 1 to 10.
    pub multiplier: f64,
    /// Step of linear backoff. Default: `initial_delay`; at most 24 h (zero keeps the
    /// delay at `initial_delay`).
    #[serde(with = "humantime_serde")]
    pub increment: Option<Duration>,
    /// Whether delays get jitter. Default true.
    pub use_jitter: bool,
    /// The jitter mode when `use_jitter` is on: none, proportional, full, equal
    /// (default) or decorrelated.
    pub jitter: Option<Jitter>,
    /// Give up a reconnection that has lasted this long. Default: no limit; when set,
    /// above zero and at most 24 h.
    #[serde(with = "humantime_serde")]
    pub max_elapsed: Option<Duration>,
    /// How long a new connection has to deliver its first packet. Default 10 s; from
    /// 1 ms to 24 h.
    #[serde(with = "humantime_serde")]
    pub first_packet_timeout: Duration,
    /// Bounds each connect attempt, for every protocol (through tower's
    /// `TimeoutLayer`). Default 3 s; from 1 ms to 24 h. The older key
    /// `srt.connect_timeout` is read as an alias when this one is not set; see
    /// [`attempt_timeout()`](Self::attempt_timeout) for the value in force. Passive
    /// inputs (listeners) have none: see
    /// [`ReconnectingBuilder::passive`](crate::stack::ReconnectingBuilder::passive).
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// Whether a connection the peer closed cleanly is reconnected (true) or ends the
    /// stream, for every protocol. Default true. The older key `srt.retry_on_close` is
    /// read as an alias when this one is not set; see
    /// [`retry_on_close()`](Self::retry_on_close) for the value in force.
    pub retry_on_close: Option<bool>,
    /// Make-before-break, for inputs the stack dials (callers, rendezvous; never
    /// passive ones): on media silence, keep the connection while its replacement is
    /// dialled, and keep whichever delivers first, so a connection that comes back (a
    /// latency spike, a stall) loses nothing; on loss, latency or errors over a limit,
    /// pass on what the connection still delivers until its replacement does. Default
    /// true.
    pub make_before_break: bool,
    /// While waiting out a backoff delay, probe the server this often (each wait
    /// jittered between half and all of it), and attempt at once when a probe is
    /// answered: a stream is back within one interval of its server. Default 1 s; from
    /// 10 ms to 1 h; `null` turns probing off. Applies to inputs whose connector offers
    /// a probe (the SRT caller: one handshake datagram per probe); others wait out the
    /// delay. See
    /// [`ReconnectingBuilder::probe`](crate::stack::ReconnectingBuilder::probe).
    #[serde(with = "humantime_serde")]
    pub probe_interval: Option<Duration>,
    /// Once a reconnection has been failing this long, attempt only when a probe is
    /// answered, so that a dead server is sent probes only, not full connect attempts.
    /// Default 5 s (the attempts before it cover the end of a short path cut as fast
    /// as before); `0s` probes before every retry (the fewest datagrams, and short
    /// cuts found one probe interval late); `null` never. At most 24 h. See
    /// [`BackoffRetryLayer::probe_first_after`](crate::backoff::BackoffRetryLayer::probe_first_after).
    #[serde(with = "humantime_serde")]
    pub probe_first_after: Option<Duration>,
    /// The backoff starts afresh only after a connection that stayed up this long; a
    /// connection that dies sooner (a flapping link) makes the next reconnection's
    /// delays carry on up the ladder. The first attempt of a reconnection is always at
    /// once. Default 0 s (off: the backoff starts afresh every time); at most 24 h.
    /// Off by default because, with probes, the recovery bench's flapping link (up 2 s,
    /// down 1 s) made as many attempts with it at 10 s as without (20 a minute) and
    /// delivered for no more of the time (70 % either way): answered probes start the
    /// attempts either way, and the longer waits only delay the ones probes miss.
    #[serde(with = "humantime_serde")]
    pub stable_after: Duration,
    /// Failure thresholds (their bounds are on [`FailureThresholds`]' fields).
    pub health_thresholds: FailureThresholds,
    /// Adaptive media-silence detection (its bounds are on [`SilenceConfig`]'s fields).
    pub silence: SilenceConfig,
    /// Whether state is saved and restored. Default true.
    pub persist_state: bool,
    /// How long saved state stays valid. Default 1 h; from 1 ms to 30 days.
    #[serde(with = "humantime_serde")]
    pub state_ttl: Duration,
    /// How often state is saved while packets flow. Default 1 s; from 1 ms to 24 h.
    #[serde(with = "humantime_serde")]
    pub save_interval: Duration,
    /// SRT settings.
    pub srt: SrtConfig,
    /// RTP settings.
    pub rtp: RtpConfig,
    /// Backup sources: when to switch back to a higher one (used by a
    /// [`Failover`](crate::failover::Failover) built from this config, and the relay's
    /// `--backup`). `switch_back_after` from 100 ms to 24 h, `startup_wait` at most 24 h.
    pub failover: FailoverConfig,
}

impl Default for ReconnectionConfig {
    fn default() -> Self {
        Self {
            max_retries: 5,
            check_interval: Duration::from_secs(1),
            backoff_type: BackoffType::Exponential,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
            multiplier: 2.0,
            increment: None,
            use_jitter: true,
            jitter: None,
            max_elapsed: None,
            first_packet_timeout: Duration::from_secs(10),
            health_thresholds: FailureThresholds::default(),
            silence: SilenceConfig::default(),
            persist_state: true,
            state_ttl: Duration::from_secs(3600),
            save_interval: Duration::from_secs(1),
            attempt_timeout: None,
            retry_on_close: None,
            make_before_break: true,
            probe_interval: Some(Duration::from_secs(1)),
            probe_first_after: Some(Duration::from_secs(5)),
            stable_after: Duration::ZERO,
            srt: SrtConfig::default(),
            rtp: RtpConfig::default(),
            failover: FailoverConfig::default(),
        }
    }
}

/// A config that could not be read or is not valid.
#[derive(Debug)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The YAML is malformed, has an unknown key, or a value of the wrong type.
    Parse(String),
    /// A value breaks a rule.
    Invalid {
        /// The key, dotted (`health_thresholds.max_packet_loss`).
        field: &'static str,
        /// The rule it breaks.
        rule: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Io { path, source } => write!(f, "cannot read config {path}: {source}"),
            Self::Parse(message) => write!(f, "invalid config: {message}"),
            Self::Invalid { field, rule } => write!(f, "invalid config: {field}: {rule}"),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn invalid(field: &'static str, rule: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field,
        rule: rule.into(),
    }
}

/// The longest interval, timeout or delay, and how a message says it.
const DAY: (Duration, &str) = (Duration::from_secs(24 * 3600), "24h");
/// The longest time saved state may stay valid, and how a message says it.
const MONTH: (Duration, &str) = (Duration::from_secs(30 * 24 * 3600), "30 days");
/// The shortest interval or timeout something is checked or waited on over and over:
/// shorter ones only burn CPU, and nothing live happens that fast.
const MIN_PERIOD: Duration = Duration::from_millis(1);
/// The shortest probe interval: a probe is a datagram to a server that may be down,
/// and a fleet's probes add up.
const MIN_PROBE_INTERVAL: Duration = Duration::from_millis(10);
/// The longest probe interval.
const MAX_PROBE_INTERVAL: Duration = Duration::from_secs(3600);
/// The most retries: a reconnection that has failed this often will not succeed.
const MAX_RETRIES: u32 = 1_000_000;
/// The steepest exponential backoff.
const MAX_MULTIPLIER: f64 = 10.0;
/// The highest packet rate a limit can ask for (a 10 Gbit/s stream of 1 316-byte
/// packets is under a million per second).
const MAX_PACKET_RATE: f64 = 1_000_000.0;
/// The most packets an interval may need before its rates are judged.
const MAX_RATE_SAMPLES: u64 = 1_000_000;
/// The most gaps the silence detector may wait for before it trusts its rhythm.
const MAX_SILENCE_SAMPLES: u32 = 10_000;
/// The highest suspicion level (one false alarm in 10¹⁰⁰ gaps).
const MAX_PHI: f64 = 100.0;
/// The largest margin over the longest recent gap.
const MAX_GAP_MARGIN: f64 = 100.0;

/// `d` is above zero and at most `max`.
fn positive(field: &'static str, d: Duration, max: (Duration, &str)) -> Result<(), ConfigError> {
    if d.is_zero() {
        Err(invalid(field, "must be greater than zero"))
    } else {
        at_most(field, d, max)
    }
}

/// `d` is at most `max`.
fn at_most(field: &'static str, d: Duration, max: (Duration, &str)) -> Result<(), ConfigError> {
    if d > max.0 {
        Err(invalid(
            field,
            format!("must be at most {}, not {d:?}", max.1),
        ))
    } else {
        Ok(())
    }
}

/// `d` is from [`MIN_PERIOD`] to `max`.
fn period(field: &'static str, d: Duration, max: (Duration, &str)) -> Result<(), ConfigError> {
    positive(field, d, max)?;
    if d < MIN_PERIOD {
        Err(invalid(
            field,
            format!("must be at least {MIN_PERIOD:?}, not {d:?}"),
        ))
    } else {
        Ok(())
    }
}

/// `n` is at most `max`.
fn count_at_most<N: PartialOrd + fmt::Display>(
    field: &'static str,
    n: N,
    max: N,
) -> Result<(), ConfigError> {
    if n > max {
        Err(invalid(field, format!("must be at most {max}, not {n}")))
    } else {
        Ok(())
    }
}

fn fraction(field: &'static str, v: f64) -> Result<(), ConfigError> {
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("must be above 0 and at most 1, not {v}"),
        ))
    }
}

impl ReconnectionConfig {
    /// Parse YAML and validate it.
    pub fn from_yaml_str(yaml: &str) -> Result<Self, ConfigError> {
        // An empty document is an all-defaults config, not an error.
        let config: Self = if yaml.trim().is_empty() {
            Self::default()
        } else {
            // The parser's message may quote a value, and a value may hold a secret.
            serde_yaml_ng::from_str(yaml)
                .map_err(|e| ConfigError::Parse(redact_url(&e.to_string())))?
        };
        config.validate()?;
        Ok(config)
    }

    /// Read a YAML file of at most [`MAX_CONFIG_FILE`] bytes and validate it.
    ///
    /// A longer file (or a device that never ends, such as `/dev/zero`) is an
    /// [`Io`](ConfigError::Io) error after that many bytes, not read whole.
    pub fn from_yaml_file(path: impl AsRef<Path>) -> Result<Self, ConfigError> {
        use std::io::Read;

        let path = path.as_ref();
        let io = |source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        };
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(MAX_CONFIG_FILE + 1).read_to_end(&mut bytes))
            .map_err(io)?;
        if bytes.len() as u64 > MAX_CONFIG_FILE {
            return Err(io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("longer than {MAX_CONFIG_FILE} bytes, the most a config may be"),
            )));
        }
        let text = String::from_utf8(bytes)
            .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))?;
        Self::from_yaml_str(&text).map_err(|e| match e {
            ConfigError::Parse(m) => ConfigError::Parse(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Check every value against its rule; the error names the field and the rule.
    ///
    /// Every duration and number has bounds (on each field's documentation), so that
    /// a config that validates runs: no interval so long that a deadline overflows,
    /// none so short that it only burns CPU, no detector that trips before it learned
    /// anything.
    pub fn validate(&self) -> Result<(), ConfigError> {
        count_at_most("max_retries", self.max_retries, MAX_RETRIES)?;
        let back = self.failover.switch_back_after;
        if back < MIN_SWITCH_BACK_AFTER {
            return Err(invalid(
                "failover.switch_back_after",
                format!("must be at least {MIN_SWITCH_BACK_AFTER:?}, not {back:?}"),
            ));
        }
        at_most("failover.switch_back_after", back, DAY)?;
        at_most("failover.startup_wait", self.failover.startup_wait, DAY)?;
        period("check_interval", self.check_interval, DAY)?;
        positive("initial_delay", self.initial_delay, DAY)?;
        positive("max_delay", self.max_delay, DAY)?;
        if self.max_delay < self.initial_delay {
            return Err(invalid("max_delay", "must be at least initial_delay"));
        }
        if !(self.multiplier.is_finite()
            && self.multiplier >= 1.0
            && self.multiplier <= MAX_MULTIPLIER)
        {
            return Err(invalid(
                "multiplier",
                format!(
                    "must be at least 1 and at most {MAX_MULTIPLIER}, not {}",
                    self.multiplier
                ),
            ));
        }
        if let Some(increment) = self.increment {
            at_most("increment", increment, DAY)?;
        }
        if let Some(max) = self.max_elapsed {
            positive("max_elapsed", max, DAY)?;
        }
        if !self.use_jitter && self.jitter.is_some_and(|j| j != Jitter::None) {
            return Err(invalid("jitter", "is set but use_jitter is false"));
        }
        period("first_packet_timeout", self.first_packet_timeout, DAY)?;

        let t = &self.health_thresholds;
        fraction("health_thresholds.max_packet_loss", t.max_packet_loss)?;
        fraction("health_thresholds.max_error_rate", t.max_error_rate)?;
        positive("health_thresholds.max_latency", t.max_latency, DAY)?;
        period(
            "health_thresholds.timeout_duration",
            t.timeout_duration,
            DAY,
        )?;
        if !(t.min_packet_rate.is_finite()
            && t.min_packet_rate >= 0.0
            && t.min_packet_rate <= MAX_PACKET_RATE)
        {
            return Err(invalid(
                "health_thresholds.min_packet_rate",
                format!(
                    "must be zero (off) or more, at most {MAX_PACKET_RATE}, not {}",
                    t.min_packet_rate
                ),
            ));
        }
        count_at_most(
            "health_thresholds.min_samples",
            t.min_samples,
            MAX_RATE_SAMPLES,
        )?;

        let s = &self.silence;
        if !(s.phi_threshold.is_finite() && s.phi_threshold > 0.0 && s.phi_threshold <= MAX_PHI) {
            return Err(invalid(
                "silence.phi_threshold",
                format!(
                    "must be above 0 and at most {MAX_PHI}, not {}",
                    s.phi_threshold
                ),
            ));
        }
        if !(s.max_gap_margin.is_finite()
            && s.max_gap_margin >= 1.0
            && s.max_gap_margin <= MAX_GAP_MARGIN)
        {
            return Err(invalid(
                "silence.max_gap_margin",
                format!(
                    "must be at least 1 and at most {MAX_GAP_MARGIN}, not {}",
                    s.max_gap_margin
                ),
            ));
        }
        period("silence.max_gap_half_life", s.max_gap_half_life, DAY)?;
        period("silence.ceiling", s.ceiling, DAY)?;
        if s.floor > s.ceiling {
            return Err(invalid("silence.floor", "must not exceed silence.ceiling"));
        }
        if s.min_samples == 0 {
            return Err(invalid(
                "silence.min_samples",
                "must be at least 1, not 0 (with 0 the adaptive limit applies before a \
                 single gap is learned: it is the floor, and every stream trips it)",
            ));
        }
        count_at_most("silence.min_samples", s.min_samples, MAX_SILENCE_SAMPLES)?;

        period("state_ttl", self.state_ttl, MONTH)?;
        period("save_interval", self.save_interval, DAY)?;
        period("srt.connect_timeout", self.srt.connect_timeout, DAY)?;
        if let Some(timeout) = self.attempt_timeout {
            period("attempt_timeout", timeout, DAY)?;
        }
        if let Some(interval) = self.probe_interval {
            if interval < MIN_PROBE_INTERVAL || interval > MAX_PROBE_INTERVAL {
                return Err(invalid(
                    "probe_interval",
                    format!(
                        "must be from {MIN_PROBE_INTERVAL:?} to 1h (or null for no probes), not {interval:?}"
                    ),
                ));
            }
        }
        if let Some(after) = self.probe_first_after {
            at_most("probe_first_after", after, DAY)?;
        }
        at_most("stable_after", self.stable_after, DAY)?;
        period("rtp.session_timeout", self.rtp.session_timeout, DAY)?;
        Ok(())
    }

    /// The jitter the config asks for.
    pub fn jitter_mode(&self) -> Jitter {
        if self.use_jitter {
            self.jitter.unwrap_or_default()
        } else {
            Jitter::None
        }
    }

    /// The backoff policy the config asks for.
    pub fn backoff(&self) -> AnyBackoff {
        let jitter = self.jitter_mode();
        match self.backoff_type {
            BackoffType::Exponential => AnyBackoff::Exponential(
                ExponentialBackoff::new(self.initial_delay, self.max_delay, self.multiplier)
                    .jitter(jitter),
            ),
            BackoffType::Linear => AnyBackoff::Linear(
                LinearBackoff::new(
                    self.initial_delay,
                    self.increment.unwrap_or(self.initial_delay),
                    self.max_delay,
                )
                .jitter(jitter),
            ),
            BackoffType::Fixed => {
                AnyBackoff::Fixed(FixedBackoff::new(self.initial_delay).jitter(jitter))
            }
        }
    }

    /// The bound on each connect attempt in force: `attempt_timeout`, else its alias
    /// `srt.connect_timeout` (3 s by default).
    pub fn attempt_timeout(&self) -> Duration {
        self.attempt_timeout.unwrap_or(self.srt.connect_timeout)
    }

    /// Whether a closed connection is reconnected: `retry_on_close`, else its alias
    /// `srt.retry_on_close` (true by default).
    pub fn retry_on_close(&self) -> bool {
        self.retry_on_close.unwrap_or(self.srt.retry_on_close)
    }

    /// The retry layer, reporting attempts on `events`.
    pub fn retry_layer(&self, events: &Events) -> BackoffRetryLayer<AnyBackoff> {
        self.shared_retry_layer().report_to(events.reporter())
    }

    /// The retry layer with this config's policy and no event bus yet: made once for
    /// many streams, each told of its own bus with `report_to`.
    pub(crate) fn shared_retry_layer(&self) -> BackoffRetryLayer<AnyBackoff> {
        let mut layer = BackoffRetryLayer::new(self.backoff()).max_retries(self.max_retries);
        if let Some(interval) = self.probe_interval {
            layer = layer.probe_interval(interval);
        }
        layer = layer.probe_first_after(self.probe_first_after);
        if !self.stable_after.is_zero() {
            layer = layer.stable_after(self.stable_after);
        }
        match self.max_elapsed {
            Some(max) => layer.max_elapsed(max),
            None => layer,
        }
    }

    /// The failure detection layer.
    pub fn detect_layer(&self) -> FailureDetectLayer {
        FailureDetectLayer::new(self.health_thresholds)
            .check_interval(self.check_interval)
            .silence(self.silence)
    }

    /// The state layer over `storage` (a disabled one when `persist_state` is off).
    pub fn restore_layer(&self, storage: Arc<dyn StateStorage>) -> StateRestoreLayer {
        if self.persist_state {
            StateRestoreLayer::new(storage)
                .save_interval(self.save_interval)
                .state_ttl(self.state_ttl)
        } else {
            StateRestoreLayer::disabled()
        }
    }
}
