use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use srt_tokio::options::{KeySize, Passphrase, StreamId};

use crate::connection::{Protocol, Secret, Target};
use crate::error::{ConnectError, ConnectErrorKind};

/// How an SRT connection is set up: the target's `mode` parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum SrtMode {
    /// Call the peer at the target's address (the default).
    #[default]
    Caller,
    /// Wait on the target's address for a peer to call; a reconnect accepts the next
    /// caller for the same stream id on the same port.
    Listener,
    /// Both sides call each other at once, from a known local port.
    Rendezvous,
}

impl SrtMode {
    /// The name used in the `mode` parameter and in `srt://` URLs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Listener => "listener",
            Self::Rendezvous => "rendezvous",
        }
    }
}

impl fmt::Display for SrtMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `mode` that is none of `caller`, `listener`, `rendezvous`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseModeError(String);

impl fmt::Display for ParseModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown SRT mode {:?} (expected caller, listener or rendezvous)",
            self.0
        )
    }
}

impl std::error::Error for ParseModeError {}

impl FromStr for SrtMode {
    type Err = ParseModeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "caller" | "client" => Ok(Self::Caller),
            "listener" | "server" => Ok(Self::Listener),
            "rendezvous" => Ok(Self::Rendezvous),
            _ => Err(ParseModeError(s.to_owned())),
        }
    }
}

/// The target parameters the connector reads. Names with a dot (`srt.rtt_ms`) are
/// statistics carried in saved state and are ignored.
pub(crate) const KNOWN_PARAMETERS: &[&str] = match Protocol::Srt.parameter_names() {
    Some(names) => names,
    None => &[],
};

/// How long a probe waits for the listener's answer by default: far more than a
/// handshake's round trip on any ingest path, far less than a connect attempt.
pub(crate) const DEFAULT_PROBE_TIMEOUT: Duration = Duration::from_millis(500);

/// Connector-wide defaults that a target's parameters override.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub(crate) mode: SrtMode,
    pub(crate) latency: Option<Duration>,
    pub(crate) connect_timeout: Duration,
    pub(crate) listen_timeout: Option<Duration>,
    pub(crate) peer_idle_timeout: Duration,
    /// How long a probe waits for the listener's answer.
    pub(crate) probe_timeout: Duration,
    /// Whether a caller probes before its handshake (so that an attempt on a dead
    /// server costs one datagram, not a handshake resent every 100 ms).
    pub(crate) probe_before_connect: bool,
    /// How many callers a listener holds per stream while no connect waits for it.
    pub(crate) held_callers: usize,
    /// SRT's own receive and send buffers, each, in bytes (`None`: the connector's
    /// default).
    pub(crate) srt_buffer: Option<u64>,
}

/// Callers a listener holds per stream by default: a newer one replaces the oldest
/// (the newest caller is the one still trying), so a flood cannot pile up.
pub const DEFAULT_HELD_CALLERS: usize = 4;
/// The most callers a listener may be told to hold per stream.
pub const MAX_HELD_CALLERS: usize = 1024;

/// What libsrt counts its buffers in: a 1 500-byte MSS less the IP and UDP headers.
const SRT_BUFFER_UNIT: u64 = 1_472;
/// SRT's own receive and send buffers (`SRTO_RCVBUF`, `SRTO_SNDBUF`), each, unless told
/// (`srt_buffer` on either connector): 8 192 packets, 12 058 624 bytes, libsrt's own
/// default. At 10 Mbit/s that is about 9 s of media, far more than a latency window.
pub const DEFAULT_SRT_BUFFER: u64 = 8_192 * SRT_BUFFER_UNIT;
/// The smallest SRT buffer either connector asks for: 32 packets (47 104 bytes), SRT's
/// minimum.
pub const MIN_SRT_BUFFER: u64 = 32 * SRT_BUFFER_UNIT;
/// The largest SRT buffer either connector asks for: 25 600 packets (37 683 200
/// bytes), SRT's default flow-control window, which a receive buffer may not exceed.
pub const MAX_SRT_BUFFER: u64 = 25_600 * SRT_BUFFER_UNIT;

impl Default for Defaults {
    fn default() -> Self {
        Self {
            mode: SrtMode::Caller,
            latency: None,
            connect_timeout: Duration::from_secs(3),
            listen_timeout: None,
            peer_idle_timeout: Duration::from_secs(5),
            probe_timeout: DEFAULT_PROBE_TIMEOUT,
            probe_before_connect: false,
            held_callers: DEFAULT_HELD_CALLERS,
            srt_buffer: None,
        }
    }
}

/// Everything one connect needs, read from a [`Target`] and checked.
#[derive(Debug, Clone)]
pub(crate) struct SrtParams {
    pub(crate) mode: SrtMode,
    pub(crate) address: SocketAddr,
    pub(crate) stream_id: Option<String>,
    pub(crate) latency: Option<Duration>,
    pub(crate) passphrase: Option<Secret>,
    pub(crate) key_size: KeySize,
    /// How long a caller or rendezvous handshake may take; for a listener, how long
    /// to wait for a caller (`None`: until one comes).
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) peer_idle_timeout: Duration,
    pub(crate) local_port: Option<u16>,
    /// A packet filter (SRTO_PACKETFILTER, such as `fec,cols:10,rows:5`).
    pub(crate) packet_filter: Option<String>,
}

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(ConnectErrorKind::InvalidTarget, message)
}

fn millis(name: &str, value: &str, max: u64) -> Result<Duration, ConnectError> {
    let ms: u64 = value.trim().parse().map_err(|_| {
        invalid(format!(
            "SRT parameter {name} must be a whole number of milliseconds, not {value:?}"
        ))
    })?;
    if ms > max {
        return Err(invalid(format!(
            "SRT parameter {name} must be at most {max} ms, not {ms}"
        )));
    }
    Ok(Duration::from_millis(ms))
}

fn positive_millis(name: &str, value: &str, max: u64) -> Result<Duration, ConnectError> {
    let d = millis(name, value, max)?;
    if d.is_zero() {
        return Err(invalid(format!(
            "SRT parameter {name} must be greater than zero"
        )));
    }
    Ok(d)
}

/// The setters of the defaults both SRT connectors take (`self.defaults: Defaults`).
macro_rules! default_setters {
    () => {
        /// The mode of targets that set none.
        #[must_use]
        pub fn mode(mut self, mode: SrtMode) -> Self {
            self.defaults.mode = mode;
            self
        }

        /// The latency of targets that set none (SRTO_LATENCY, both directions).
        #[must_use]
        pub fn latency(mut self, latency: Duration) -> Self {
            self.defaults.latency = Some(latency);
            self
        }

        /// How long a caller or rendezvous handshake may take (SRTO_CONNTIMEO).
        #[must_use]
        pub fn connect_timeout(mut self, timeout: Duration) -> Self {
            self.defaults.connect_timeout = timeout;
            self
        }

        /// How long a listener waits for its caller before the connect fails with
        /// [`TimedOut`](crate::error::ConnectErrorKind::TimedOut). Default: no limit
        /// (the stack's `TimeoutLayer`, when there is one, still bounds it).
        #[must_use]
        pub fn listen_timeout(mut self, timeout: Duration) -> Self {
            self.defaults.listen_timeout = Some(timeout);
            self
        }

        /// How long a connection may go without a packet from the peer before SRT
        /// ends it (SRTO_PEERIDLETIMEO).
        #[must_use]
        pub fn peer_idle_timeout(mut self, timeout: Duration) -> Self {
            self.defaults.peer_idle_timeout = timeout;
            self
        }

        /// How many callers a listener holds for one stream while no connect waits
        /// for it (default
        /// [`DEFAULT_HELD_CALLERS`](crate::protocol::srt::DEFAULT_HELD_CALLERS), 4; at most
        /// [`MAX_HELD_CALLERS`](crate::protocol::srt::MAX_HELD_CALLERS), larger values
        /// are read as that). A caller comes before its connect when the stream's old
        /// connection is not yet judged dead; it is held for 3 s (a libsrt caller
        /// repeats its handshake for that long), and when one more comes the oldest
        /// is refused, as the newest is the one still trying. 0 holds none: such a
        /// caller is refused at once and must call again.
        ///
        /// The value belongs to the listening socket: the connector (or clone) that
        /// binds a port first sets it for every stream on that port.
        #[must_use]
        pub fn held_callers(mut self, callers: usize) -> Self {
            self.defaults.held_callers = callers.min(crate::protocol::srt::MAX_HELD_CALLERS);
            self
        }

        /// SRT's own receive and send buffers, each, in bytes (`SRTO_RCVBUF` and
        /// `SRTO_SNDBUF`; default
        /// [`DEFAULT_SRT_BUFFER`](crate::protocol::srt::DEFAULT_SRT_BUFFER), 8 192
        /// packets; values are read within
        /// [`MIN_SRT_BUFFER`](crate::protocol::srt::MIN_SRT_BUFFER) and
        /// [`MAX_SRT_BUFFER`](crate::protocol::srt::MAX_SRT_BUFFER)). The send buffer
        /// keeps what was sent until the peer acknowledges it, so that a lost packet
        /// can be sent again: it must hold a round trip's worth of packets and more.
        /// The receive buffer holds what waits for its time to play and for the
        /// packets lost before it. Each fills only as packets wait in it, up to this
        /// bound; past it, the sender lets go of its oldest packet and the receiver
        /// drops what arrives, as a loss. A listener's connections take the value of
        /// the connector that binds its port first.
        ///
        /// ```
        /// use mirror_reconnect::protocol::srt::SrtConnector;
        ///
        /// // 16 384 packets, for a long, lossy path at a high bitrate.
        /// let connector = SrtConnector::new().srt_buffer(16_384 * 1_472);
        /// # drop(connector);
        /// ```
        #[must_use]
        pub fn srt_buffer(mut self, bytes: u64) -> Self {
            self.defaults.srt_buffer = Some(bytes.clamp(
                crate::protocol::srt::MIN_SRT_BUFFER,
                crate::protocol::srt::MAX_SRT_BUFFER,
            ));
            self
        }
    };
}
pub(crate) use default_setters;

/// libsrt's limit on a packet filter's configuration string.
const MAX_PACKET_FILTER: usize = 512;

/// An hour: longer than any sane SRT latency or timeout.
const MAX_MS: u64 = 3_600_000;

impl SrtParams {
    /// Read and check `target`. Never echoes the passphrase, nor the value of a
    /// parameter it does not know (it might be a secret put in the wrong place).
    pub(crate) fn from_target(target: &Target, defaults: &Defaults) -> Result<Self, ConnectError> {
        if target.protocol != Protocol::Srt {
            return Err(invalid(format!(
                "target {:?} is for protocol {}, not srt",
                target.stream_id, target.protocol
            )));
        }
        for name in target.parameters.keys() {
            if name.contains('.') || KNOWN_PARAMETERS.contains(&name.as_str()) {
                continue;
            }
            if name.eq_ignore_ascii_case("passphrase") {
                return Err(invalid(
                    "the SRT passphrase belongs in Target::passphrase, not in the parameters \
                     (parameters are saved and logged)",
                ));
            }
            return Err(invalid(format!(
                "unknown SRT parameter {name:?} (known: {})",
                KNOWN_PARAMETERS.join(", ")
            )));
        }
        let param = |name: &str| target.parameters.get(name).map(String::as_str);

        let mode = match param("mode") {
            Some(m) => m.parse::<SrtMode>().map_err(|e| invalid(e.to_string()))?,
            None => defaults.mode,
        };
        let address = target.address.ok_or_else(|| {
            invalid(format!(
                "SRT target {:?} has no address ({})",
                target.stream_id,
                match mode {
                    SrtMode::Listener => "the address to listen on",
                    _ => "the peer to call",
                }
            ))
        })?;
        if mode != SrtMode::Listener && (address.port() == 0 || address.ip().is_unspecified()) {
            return Err(invalid(format!(
                "SRT {mode} target needs a peer address with a port, not {address}"
            )));
        }

        let stream_id = if target.stream_id.is_empty() {
            None
        } else {
            StreamId::try_from(target.stream_id.clone())
                .map_err(|e| invalid(format!("SRT stream id is not valid: {e}")))?;
            Some(target.stream_id.clone())
        };

        let latency = match param("latency") {
            Some(v) => Some(millis("latency", v, MAX_MS)?),
            None => defaults.latency,
        };

        let key_size = match param("pbkeylen") {
            None => KeySize::Unspecified,
            Some(v) => match v.trim() {
                "0" => KeySize::Unspecified,
                "16" => KeySize::AES128,
                "24" => KeySize::AES192,
                "32" => KeySize::AES256,
                other => {
                    return Err(invalid(format!(
                        "SRT parameter pbkeylen must be 0, 16, 24 or 32, not {other:?}"
                    )))
                }
            },
        };

        let passphrase = match &target.passphrase {
            Some(secret) if secret.expose().is_empty() => None,
            Some(secret) => {
                let len = secret.expose().chars().count();
                if !(10..=79).contains(&len) {
                    return Err(invalid(format!(
                        "SRT passphrase must be 10 to 79 characters long, it has {len}"
                    )));
                }
                Some(secret.clone())
            }
            None => None,
        };
        if passphrase.is_none() && key_size != KeySize::Unspecified {
            return Err(invalid(
                "SRT parameter pbkeylen is set but the target has no passphrase",
            ));
        }

        let connect_timeout = match param("connect_timeout") {
            Some(v) => Some(positive_millis("connect_timeout", v, MAX_MS)?),
            None if mode == SrtMode::Listener => defaults.listen_timeout,
            None => Some(defaults.connect_timeout),
        };
        let peer_idle_timeout = match param("peer_idle_timeout") {
            Some(v) => positive_millis("peer_idle_timeout", v, MAX_MS)?,
            None => defaults.peer_idle_timeout,
        };
        let local_port = match param("local_port") {
            Some(v) => Some(v.trim().parse::<u16>().map_err(|_| {
                invalid(format!(
                    "SRT parameter local_port must be a port number, not {v:?}"
                ))
            })?),
            None => None,
        };

        let packet_filter = match param("packetfilter").map(str::trim) {
            None | Some("") => None,
            Some(filter) if filter.len() > MAX_PACKET_FILTER || filter.contains('\0') => {
                return Err(invalid(format!(
                    "SRT parameter packetfilter must be at most {MAX_PACKET_FILTER} bytes of text"
                )))
            }
            Some(filter) => Some(filter.to_owned()),
        };

        Ok(Self {
            mode,
            address,
            stream_id,
            latency,
            passphrase,
            key_size,
            connect_timeout,
            peer_idle_timeout,
            local_port,
            packet_filter,
        })
    }

    /// The passphrase in srt-tokio's form. Checked in `from_target`, so this cannot
    /// fail on params built there; still, a failure is an error, not a panic.
    pub(crate) fn srt_passphrase(&self) -> Result<Option<Passphrase>, ConnectError> {
        self.passphrase
            .as_ref()
            .map(|s| {
                Passphrase::try_from(s.expose().to_owned()).map_err(|_| {
                    invalid("SRT passphrase must be 10 to 79 characters long".to_owned())
                })
            })
            .transpose()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new("cam1", Protocol::Srt).address("127.0.0.1:9000".parse().unwrap())
    }

    fn parse(t: &Target) -> Result<SrtParams, ConnectError> {
        SrtParams::from_target(t, &Defaults::default())
    }

    #[test]
    fn defaults_are_a_caller() {
        let p = parse(&target()).unwrap();
        assert_eq!(p.mode, SrtMode::Caller);
        assert_eq!(p.stream_id.as_deref(), Some("cam1"));
        assert_eq!(p.connect_timeout, Some(Duration::from_secs(3)));
        assert_eq!(p.peer_idle_timeout, Duration::from_secs(5));
        assert_eq!(p.latency, None);
    }

    #[test]
    fn parameters_are_read() {
        let t = target()
            .parameter("mode", "listener")
            .parameter("latency", "120")
            .parameter("pbkeylen", "32")
            .parameter("peer_idle_timeout", "2000")
            .parameter("srt.rtt_ms", "3.1")
            .passphrase(Secret::new("0123456789abc"));
        let p = parse(&t).unwrap();
        assert_eq!(p.mode, SrtMode::Listener);
        assert_eq!(p.latency, Some(Duration::from_millis(120)));
        assert_eq!(p.key_size, KeySize::AES256);
        assert_eq!(p.peer_idle_timeout, Duration::from_secs(2));
        assert_eq!(p.connect_timeout, None, "a listener waits for its caller");
    }

    #[test]
    fn empty_stream_id_is_none() {
        let mut t = target();
        t.stream_id.clear();
        assert_eq!(parse(&t).unwrap().stream_id, None);
    }

    #[test]
    fn bad_input_names_what_is_wrong() {
        let cases = [
            (target().parameter("mode", "push"), "push"),
            (target().parameter("latency", "fast"), "latency"),
            (target().parameter("pbkeylen", "20"), "pbkeylen"),
            (target().parameter("latancy", "120"), "latancy"),
            (
                target().parameter("connect_timeout", "0"),
                "connect_timeout",
            ),
            (
                target().passphrase(Secret::new("short")),
                "10 to 79 characters",
            ),
            (target().parameter("pbkeylen", "16"), "no passphrase"),
            (Target::new("cam1", Protocol::Srt), "no address"),
            (
                Target::new("cam1", Protocol::Rtp).address("127.0.0.1:1".parse().unwrap()),
                "not srt",
            ),
            (
                Target::new("cam1", Protocol::Srt).address("127.0.0.1:0".parse().unwrap()),
                "with a port",
            ),
        ];
        for (t, needle) in cases {
            let e = parse(&t).unwrap_err();
            assert_eq!(e.kind(), ConnectErrorKind::InvalidTarget);
            assert!(!e.is_retryable());
            assert!(
                e.to_string().contains(needle),
                "{e} should mention {needle}"
            );
        }
    }

    #[test]
    fn a_passphrase_in_the_parameters_is_refused_without_echoing_it() {
        let t = target().parameter("passphrase", "hunter2hunter2");
        let e = parse(&t).unwrap_err().to_string();
        assert!(e.contains("Target::passphrase"), "{e}");
        assert!(!e.contains("hunter2"), "{e}");
        let t = target().parameter("secret_key", "hunter2hunter2");
        let e = parse(&t).unwrap_err().to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }

    #[test]
    fn modes_parse_and_print() {
        for m in [SrtMode::Caller, SrtMode::Listener, SrtMode::Rendezvous] {
            assert_eq!(m.as_str().parse::<SrtMode>().unwrap(), m);
        }
        assert!("pull".parse::<SrtMode>().is_err());
    }
}
