//! Reading an RTP target: address and parameters, each checked with an error that
//! names it.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use crate::connection::{Protocol, Target};
use crate::error::{ConnectError, ConnectErrorKind};

use super::session::SessionConfig;

/// Parameters an RTP target may carry.
pub(crate) const KNOWN: &[&str] = match Protocol::Rtp.parameter_names() {
    Some(names) => names,
    None => &[],
};

pub(crate) const DEFAULT_CLOCK_RATE: u32 = 90_000;
pub(crate) const DEFAULT_SSRC_TIMEOUT: Duration = Duration::from_secs(1);

/// Everything a connect needs, read from the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RtpSettings {
    pub(crate) address: SocketAddr,
    pub(crate) session: SessionConfig,
    pub(crate) session_timeout: Option<Duration>,
    pub(crate) multicast_interface: Option<IpAddr>,
}

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(ConnectErrorKind::InvalidTarget, message)
}

fn parse_u32(name: &str, value: &str) -> Result<u32, ConnectError> {
    let v = value.trim();
    let parsed = match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16),
        None => v.parse(),
    };
    parsed.map_err(|_| {
        invalid(format!(
            "RTP parameter {name}={value:?} is not a 32-bit number"
        ))
    })
}

fn parse_ms(name: &str, value: &str) -> Result<Duration, ConnectError> {
    match value.trim().parse::<u64>() {
        Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
        _ => Err(invalid(format!(
            "RTP parameter {name}={value:?} must be a number of milliseconds above 0"
        ))),
    }
}

fn parse_bool(name: &str, value: &str) -> Result<bool, ConnectError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!(
            "RTP parameter {name}={value:?} must be true or false"
        ))),
    }
}

impl RtpSettings {
    pub(crate) fn from_target(target: &Target) -> Result<Self, ConnectError> {
        if target.protocol != Protocol::Rtp {
            return Err(invalid(format!(
                "stream {:?}: the RTP connector needs protocol rtp, not {}",
                target.stream_id, target.protocol
            )));
        }
        let address = target.address.ok_or_else(|| {
            invalid(format!(
                "stream {:?}: an RTP target needs an address to bind",
                target.stream_id
            ))
        })?;
        let mut session = SessionConfig {
            ssrc: None,
            payload_type: None,
            clock_rate: DEFAULT_CLOCK_RATE,
            rewrite: false,
            ssrc_timeout: DEFAULT_SSRC_TIMEOUT,
        };
        let mut session_timeout = None;
        let mut multicast_interface = None;
        for (name, value) in &target.parameters {
            match name.as_str() {
                "ssrc" => session.ssrc = Some(parse_u32(name, value)?),
                "payload_type" => {
                    let pt = parse_u32(name, value)?;
                    if pt > 127 {
                        return Err(invalid(format!(
                            "RTP parameter payload_type={value:?} must be 0 to 127"
                        )));
                    }
                    session.payload_type = Some(pt as u8);
                }
                "clock_rate" => {
                    let rate = parse_u32(name, value)?;
                    if rate == 0 {
                        return Err(invalid("RTP parameter clock_rate must be above 0 Hz"));
                    }
                    session.clock_rate = rate;
                }
                "rewrite" => session.rewrite = parse_bool(name, value)?,
                "session_timeout_ms" => session_timeout = Some(parse_ms(name, value)?),
                "ssrc_timeout_ms" => session.ssrc_timeout = parse_ms(name, value)?,
                "multicast_interface" => {
                    let ip: IpAddr = value.trim().parse().map_err(|_| {
                        invalid(format!(
                            "RTP parameter multicast_interface={value:?} is not an IP address"
                        ))
                    })?;
                    multicast_interface = Some(ip);
                }
                // Dotted names are saved statistics and continuity (`rtp.…`) or
                // another protocol's; they are not settings.
                other if other.contains('.') => {}
                other => {
                    return Err(invalid(format!(
                        "unknown RTP parameter {other:?} (known: {})",
                        KNOWN.join(", ")
                    )))
                }
            }
        }
        if let Some(ip) = multicast_interface {
            if !address.ip().is_multicast() {
                return Err(invalid(format!(
                    "RTP parameter multicast_interface={ip} is set but {address} is not a multicast address"
                )));
            }
            if address.is_ipv4() != ip.is_ipv4() {
                return Err(invalid(format!(
                    "RTP parameter multicast_interface={ip} is not of the family of {address}"
                )));
            }
        }
        Ok(Self {
            address,
            session,
            session_timeout,
            multicast_interface,
        })
    }

    /// The interface to join an IPv4 group on.
    pub(crate) fn interface_v4(&self) -> Ipv4Addr {
        match self.multicast_interface {
            Some(IpAddr::V4(ip)) => ip,
            _ => Ipv4Addr::UNSPECIFIED,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target::new("cam", Protocol::Rtp).address("127.0.0.1:5004".parse().expect("addr"))
    }

    #[test]
    fn defaults() {
        let s = RtpSettings::from_target(&target()).expect("valid");
        assert_eq!(s.session.clock_rate, 90_000);
        assert!(!s.session.rewrite);
        assert_eq!((s.session.ssrc, s.session.payload_type), (None, None));
        assert_eq!(s.session_timeout, None);
    }

    #[test]
    fn every_parameter_is_read() {
        let t = target()
            .parameter("ssrc", "0xdeadbeef")
            .parameter("payload_type", "96")
            .parameter("clock_rate", "48000")
            .parameter("rewrite", "true")
            .parameter("session_timeout_ms", "2500")
            .parameter("ssrc_timeout_ms", "300")
            .parameter("rtp.lost", "12");
        let s = RtpSettings::from_target(&t).expect("valid");
        assert_eq!(s.session.ssrc, Some(0xdead_beef));
        assert_eq!(s.session.payload_type, Some(96));
        assert_eq!(s.session.clock_rate, 48_000);
        assert!(s.session.rewrite);
        assert_eq!(s.session_timeout, Some(Duration::from_millis(2500)));
        assert_eq!(s.session.ssrc_timeout, Duration::from_millis(300));
    }

    #[test]
    fn bad_values_name_the_parameter() {
        for (name, value) in [
            ("ssrc", "abc"),
            ("payload_type", "200"),
            ("clock_rate", "0"),
            ("rewrite", "maybe"),
            ("session_timeout_ms", "0"),
            ("ssrc_timeout_ms", "-5"),
            ("multicast_interface", "127.0.0.1"),
            ("latency", "120"),
        ] {
            let err =
                RtpSettings::from_target(&target().parameter(name, value)).expect_err("refused");
            assert_eq!(err.kind(), ConnectErrorKind::InvalidTarget);
            assert!(!err.is_retryable());
            assert!(err.to_string().contains(name), "{name}: {err}");
        }
        let err =
            RtpSettings::from_target(&Target::new("cam", Protocol::Rtp)).expect_err("no address");
        assert!(err.to_string().contains("address"), "{err}");
        let err = RtpSettings::from_target(&Target::new("cam", Protocol::Srt))
            .expect_err("wrong protocol");
        assert!(err.to_string().contains("protocol"), "{err}");
    }
}
