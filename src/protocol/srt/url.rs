use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use super::params::{Defaults, SrtParams};
use crate::connection::{is_secret_name, redact_url, Protocol, Secret, Target};
use crate::error::{ConnectError, ConnectErrorKind};

fn invalid(message: impl Into<String>) -> ConnectError {
    ConnectError::new(ConnectErrorKind::InvalidTarget, message)
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding of a query value; `None` when it is malformed.
fn decode(value: &str) -> Option<String> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hi = hex(*bytes.get(i + 1)?)?;
                let lo = hex(*bytes.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

fn parse_host_port(authority: &str) -> Result<SocketAddr, ConnectError> {
    let bad = || {
        invalid(format!(
            "SRT URL address {:?} is not host:port (an IP address, or empty to listen on all)",
            redact_url(authority)
        ))
    };
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, rest) = rest.split_once(']').ok_or_else(bad)?;
        (host, rest.strip_prefix(':').ok_or_else(bad)?)
    } else {
        authority.rsplit_once(':').ok_or_else(bad)?
    };
    let port: u16 = port.parse().map_err(|_| bad())?;
    let ip: IpAddr = if host.is_empty() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        host.parse().map_err(|_| bad())?
    };
    Ok(SocketAddr::new(ip, port))
}

/// An option's name as an error shows it: as written, unless it looks like it holds a
/// passphrase (`Passphrase`, `passphrase:hunter2`, which are not `passphrase=`).
fn shown_name(name: &str) -> String {
    if name != "passphrase" && is_secret_name(name) {
        "that looks like a passphrase (not shown; the option is `passphrase=VALUE`)".to_owned()
    } else {
        format!("{name:?}")
    }
}

/// A [`Target`] from an `srt://` URL, in libsrt's style:
/// `srt://HOST:PORT?mode=caller&streamid=cam1&latency=120&passphrase=...&pbkeylen=16`.
///
/// An empty host (`srt://:9000`) means listening on all addresses, and makes
/// `listener` the default mode. Query keys: `mode`, `streamid`, `latency`,
/// `passphrase`, `pbkeylen`, `connect_timeout` (or `conntimeo`), `peer_idle_timeout`
/// (or `peeridletimeo`), `local_port` (or `port`). Values are percent-decoded; the
/// passphrase goes into [`Target::passphrase`], never into the parameters. The target
/// is checked as the connector would check it.
///
/// ```
/// use mirror_reconnect::protocol::srt::srt_target;
///
/// let target = srt_target("srt://127.0.0.1:9000?streamid=cam1&latency=200").unwrap();
/// assert_eq!(target.stream_id, "cam1");
/// assert_eq!(target.parameters["latency"], "200");
///
/// let listener = srt_target("srt://:9000").unwrap();
/// assert_eq!(listener.parameters["mode"], "listener");
///
/// let typo = srt_target("srt://127.0.0.1:9000?latncy=200").unwrap_err();
/// assert!(typo.to_string().contains("latncy"));
/// ```
pub fn srt_target(url: &str) -> Result<Target, ConnectError> {
    let rest = url
        .strip_prefix("srt://")
        .ok_or_else(|| invalid("SRT URL must start with srt://"))?;
    let (authority, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = authority.trim_end_matches('/');
    let address = parse_host_port(authority)?;
    let mut target = Target::new("", Protocol::Srt).address(address);
    let mut after_passphrase = false;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if after_passphrase && !pair.contains('=') {
            // Most likely the rest of a passphrase with an unencoded `&`: not shown.
            return Err(invalid(
                "SRT URL passphrase is followed by a part without `=` (an `&` in a \
                 passphrase must be written %26)",
            ));
        }
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        after_passphrase = key == "passphrase";
        let value = decode(raw).ok_or_else(|| {
            invalid(format!(
                "SRT URL value of {} is not valid percent-encoding",
                shown_name(key)
            ))
        })?;
        let name = match key {
            "mode" | "latency" | "pbkeylen" => key,
            "streamid" | "stream_id" => {
                target.stream_id = value;
                continue;
            }
            "passphrase" => {
                target.passphrase = Some(Secret::new(value));
                continue;
            }
            "connect_timeout" | "conntimeo" => "connect_timeout",
            "peer_idle_timeout" | "peeridletimeo" => "peer_idle_timeout",
            "local_port" | "port" => "local_port",
            "packetfilter" => "packetfilter",
            other => {
                return Err(invalid(format!(
                    "unknown SRT URL option {}",
                    shown_name(other)
                )));
            }
        };
        target.parameters.insert(name.to_owned(), value);
    }
    if address.ip().is_unspecified() && !target.parameters.contains_key("mode") {
        target
            .parameters
            .insert("mode".to_owned(), "listener".to_owned());
    }
    SrtParams::from_target(&target, &Defaults::default())?;
    Ok(target)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_full_url() {
        let t = srt_target(
            "srt://[::1]:7000?mode=rendezvous&streamid=live%2Fcam1&passphrase=sec%20ret%20phrase&pbkeylen=24&port=7001",
        )
        .unwrap();
        assert_eq!(t.address, Some("[::1]:7000".parse().unwrap()));
        assert_eq!(t.stream_id, "live/cam1");
        assert_eq!(t.passphrase.as_ref().unwrap().expose(), "sec ret phrase");
        assert_eq!(t.parameters["pbkeylen"], "24");
        assert_eq!(t.parameters["local_port"], "7001");
        assert!(!t.parameters.values().any(|v| v.contains("phrase")));
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        for (url, needle) in [
            ("udp://1.2.3.4:5", "srt://"),
            ("srt://host-name:5", "not host:port"),
            ("srt://1.2.3.4", "not host:port"),
            ("srt://1.2.3.4:5?mode=pull", "pull"),
            ("srt://1.2.3.4:5?streamid=%zz", "percent"),
            ("srt://1.2.3.4:5?passphrase=short", "10 to 79"),
        ] {
            let e = srt_target(url).unwrap_err();
            assert!(e.to_string().contains(needle), "{url}: {e}");
            assert!(!e.is_retryable());
        }
    }

    #[test]
    fn errors_never_show_a_passphrase_or_password() {
        const MARKER: &str = "s3cr3t-MARKER";
        for (url, needle) in [
            ("srt://u:s3cr3t-MARKER@1.2.3.4:5", "u:***@1.2.3.4:5"),
            (
                "srt://1.2.3.4:5?passphrase:s3cr3t-MARKER",
                "passphrase=VALUE",
            ),
            (
                "srt://1.2.3.4:5?Passphrase=s3cr3t-MARKER",
                "passphrase=VALUE",
            ),
            ("srt://1.2.3.4:5?password=s3cr3t-MARKER", "passphrase=VALUE"),
            ("srt://1.2.3.4:5?passphrase:s3cr3t-MARKER=%zz", "percent"),
            ("srt://1.2.3.4:5?passphrase=0123456789&s3cr3t-MARKER", "%26"),
            ("srt://1.2.3.4:5?mode=pull&passphrase=s3cr3t-MARKER", "pull"),
        ] {
            let e = srt_target(url).unwrap_err().to_string();
            assert!(!e.contains(MARKER), "{url}: {e}");
            assert!(e.contains(needle), "{url}: {e}");
        }
    }

    #[test]
    fn an_unknown_option_is_still_named() {
        let e = srt_target("srt://1.2.3.4:5?latncy=20").unwrap_err();
        assert!(e.to_string().contains("\"latncy\""), "{e}");
    }
}
