//! Command line: options and the input/output URLs.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use mirror_reconnect::connection::redact_url;

pub(crate) const USAGE: &str = "\
Usage: relay [OPTIONS] <INPUT> <OUTPUT>
       relay --demo

Receive a live stream, keep it connected through failures, and pass it on.

INPUT   srt://HOST:PORT?mode=caller|listener|rendezvous&streamid=ID&latency=MS&passphrase=P&pbkeylen=16
        rtp://HOST:PORT    receive RTP over UDP on that address
        udp://HOST:PORT    receive raw UDP datagrams (e.g. MPEG-TS) on that address
OUTPUT  udp://HOST:PORT | rtp://HOST:PORT | srt://... (any mode) | file:PATH | - (stdout)

Options:
  --config FILE         YAML reconnection config (defaults otherwise)
  --state SPEC          where stream state is kept: memory (default), file:DIR, redis://HOST:PORT[/DB]
  --metrics-addr ADDR   serve Prometheus metrics at http://ADDR/metrics
  --events json         print each reconnection event as one JSON line on stderr
  --duration SECS       stop cleanly after that long
  --demo                run the self-contained demo (no INPUT/OUTPUT)
  --report-dir DIR      where --demo writes its report and timeline (default target/relay-demo)
  -h, --help            print this help
";

/// Where packets come from.
#[derive(Debug, Clone)]
pub(crate) enum Input {
    Srt(String),
    Rtp(SocketAddr),
    Udp(SocketAddr),
}

/// Where packets go.
#[derive(Debug, Clone)]
pub(crate) enum Output {
    Udp(SocketAddr),
    Srt(String),
    File(PathBuf),
    Stdout,
}

/// Where state is kept.
#[derive(Debug, Clone)]
pub(crate) enum StateSpec {
    Memory,
    File(PathBuf),
    Redis(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Args {
    pub(crate) input: Option<Input>,
    pub(crate) output: Option<Output>,
    pub(crate) config: Option<PathBuf>,
    pub(crate) state: StateSpec,
    pub(crate) metrics_addr: Option<SocketAddr>,
    pub(crate) events_json: bool,
    pub(crate) duration: Option<Duration>,
    pub(crate) demo: bool,
    pub(crate) report_dir: PathBuf,
    pub(crate) help: bool,
    /// Internal to `--demo`: run as the demo's SRT sender on this address, numbering
    /// packets from this epoch (Unix milliseconds).
    pub(crate) demo_sender: Option<(SocketAddr, u64)>,
}

/// A command line that cannot run: said in one line.
#[derive(Debug)]
pub(crate) struct UsageError(pub String);

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn usage(message: impl Into<String>) -> UsageError {
    UsageError(message.into())
}

/// A value from the command line as a message shows it: quoted, and with any
/// passphrase or password in it redacted.
fn shown(value: &str) -> String {
    format!("{:?}", redact_url(value))
}

/// The parser's own errors, with any value they repeat redacted.
fn bad(e: lexopt::Error) -> UsageError {
    use lexopt::Error;
    usage(match e {
        Error::UnexpectedValue { option, value } => format!(
            "{option} takes no value, not {}",
            shown(&value.to_string_lossy())
        ),
        Error::UnexpectedArgument(value) => {
            format!("unexpected argument {}", shown(&value.to_string_lossy()))
        }
        Error::NonUnicodeValue(value) => format!(
            "argument {} is not valid UTF-8",
            shown(&value.to_string_lossy())
        ),
        Error::ParsingFailed { value, error } => {
            format!("cannot parse {}: {error}", shown(&value))
        }
        other => other.to_string(),
    })
}

/// `HOST:PORT` to one socket address; an empty host is every local address.
pub(crate) fn socket_addr(what: &str, authority: &str) -> Result<SocketAddr, UsageError> {
    let authority = authority.split(['?', '/']).next().unwrap_or_default();
    let with_host = if authority.starts_with(':') {
        format!("0.0.0.0{authority}")
    } else {
        authority.to_owned()
    };
    with_host
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .ok_or_else(|| usage(format!("{what} {} is not HOST:PORT", shown(authority))))
}

fn parse_input(url: &str) -> Result<Input, UsageError> {
    if url.starts_with("srt://") {
        Ok(Input::Srt(url.to_owned()))
    } else if let Some(rest) = url.strip_prefix("rtp://") {
        Ok(Input::Rtp(socket_addr("input address", rest)?))
    } else if let Some(rest) = url.strip_prefix("udp://") {
        Ok(Input::Udp(socket_addr("input address", rest)?))
    } else {
        Err(usage(format!(
            "input {} is not an srt://, rtp:// or udp:// URL",
            shown(url)
        )))
    }
}

fn parse_output(url: &str) -> Result<Output, UsageError> {
    if url == "-" {
        Ok(Output::Stdout)
    } else if url.starts_with("srt://") {
        Ok(Output::Srt(url.to_owned()))
    } else if let Some(rest) = url
        .strip_prefix("udp://")
        .or_else(|| url.strip_prefix("rtp://"))
    {
        Ok(Output::Udp(socket_addr("output address", rest)?))
    } else if let Some(path) = url.strip_prefix("file:") {
        if path.is_empty() {
            return Err(usage("output file: needs a path (file:PATH)"));
        }
        Ok(Output::File(PathBuf::from(path)))
    } else {
        Err(usage(format!(
            "output {} is not udp://, rtp://, srt://, file:PATH or -",
            shown(url)
        )))
    }
}

fn parse_state(spec: &str) -> Result<StateSpec, UsageError> {
    if spec == "memory" {
        Ok(StateSpec::Memory)
    } else if let Some(dir) = spec.strip_prefix("file:") {
        if dir.is_empty() {
            return Err(usage("--state file: needs a directory (file:DIR)"));
        }
        Ok(StateSpec::File(PathBuf::from(dir)))
    } else if spec.starts_with("redis://") || spec.starts_with("rediss://") {
        Ok(StateSpec::Redis(spec.to_owned()))
    } else {
        Err(usage(format!(
            "--state {} is not memory, file:DIR or redis://HOST:PORT[/DB]",
            shown(spec)
        )))
    }
}

fn text(value: OsString, option: &str) -> Result<String, UsageError> {
    value.into_string().map_err(|v| {
        usage(format!(
            "{option} {} is not valid UTF-8",
            shown(&v.to_string_lossy())
        ))
    })
}

pub(crate) fn parse(args: impl IntoIterator<Item = OsString>) -> Result<Args, UsageError> {
    use lexopt::prelude::*;

    let mut parser = lexopt::Parser::from_args(args);
    let mut args = Args {
        input: None,
        output: None,
        config: None,
        state: StateSpec::Memory,
        metrics_addr: None,
        events_json: false,
        duration: None,
        demo: false,
        report_dir: PathBuf::from("target/relay-demo"),
        help: false,
        demo_sender: None,
    };
    let mut positional = Vec::new();
    while let Some(arg) = parser.next().map_err(bad)? {
        match arg {
            Long("config") => args.config = Some(parser.value().map_err(bad)?.into()),
            Long("state") => {
                args.state = parse_state(&text(parser.value().map_err(bad)?, "--state")?)?;
            }
            Long("metrics-addr") => {
                let value = text(parser.value().map_err(bad)?, "--metrics-addr")?;
                args.metrics_addr = Some(socket_addr("--metrics-addr", &value)?);
            }
            Long("events") => {
                let value = text(parser.value().map_err(bad)?, "--events")?;
                if value != "json" {
                    return Err(usage(format!(
                        "--events {}: the only format is json",
                        shown(&value)
                    )));
                }
                args.events_json = true;
            }
            Long("duration") => {
                let value = text(parser.value().map_err(bad)?, "--duration")?;
                let secs: f64 = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .ok_or_else(|| {
                        usage(format!(
                            "--duration {} is not a positive number of seconds",
                            shown(&value)
                        ))
                    })?;
                args.duration = Some(Duration::from_secs_f64(secs));
            }
            Long("demo") => args.demo = true,
            Long("report-dir") => args.report_dir = parser.value().map_err(bad)?.into(),
            Short('h') | Long("help") => args.help = true,
            Long("demo-sender") => {
                let value = text(parser.value().map_err(bad)?, "--demo-sender")?;
                let (addr, epoch) = value
                    .split_once(',')
                    .ok_or_else(|| usage("--demo-sender takes ADDR,EPOCH_MS"))?;
                let epoch = epoch.parse().map_err(|_| {
                    usage(format!(
                        "--demo-sender epoch {} is not a number",
                        shown(epoch)
                    ))
                })?;
                args.demo_sender = Some((socket_addr("--demo-sender", addr)?, epoch));
                return Ok(args);
            }
            Value(value) => positional.push(text(value, "argument")?),
            _ => return Err(bad(arg.unexpected())),
        }
    }
    if args.help {
        return Ok(args);
    }
    match (args.demo, positional.as_slice()) {
        (true, []) => {}
        (true, _) => return Err(usage("--demo takes no INPUT or OUTPUT")),
        (false, [input, output]) => {
            args.input = Some(parse_input(input)?);
            args.output = Some(parse_output(output)?);
        }
        (false, []) => return Err(usage("missing INPUT and OUTPUT (or --demo)")),
        (false, [_]) => return Err(usage("missing OUTPUT")),
        (false, [_, _, extra, ..]) => {
            return Err(usage(format!("unexpected argument {}", shown(extra))))
        }
    }
    Ok(args)
}
