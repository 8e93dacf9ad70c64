//! Command line: options and the input/output URLs.

use std::ffi::OsString;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use mirror_reconnect::connection::redact_url;

pub(crate) const USAGE: &str = "\
Usage: mirror-relay [OPTIONS] <INPUT> <OUTPUT>
       mirror-relay [OPTIONS] --streams FILE
       mirror-relay --demo

Receive a live stream, keep it connected through failures, and pass it on.

INPUT   srt://HOST:PORT?mode=caller|listener|rendezvous&streamid=ID&latency=MS&passphrase=P&pbkeylen=16
        rtp://HOST:PORT    receive RTP over UDP on that address
        udp://HOST:PORT    receive raw UDP datagrams (e.g. MPEG-TS) on that address
OUTPUT  udp://HOST:PORT | rtp://HOST:PORT | srt://... (any mode) | file:PATH | - (stdout)
        (udp:// and rtp:// take no path or query)

Options:
  --backup URL          a backup INPUT, used at once when the input (or the backup
                        before it) fails; repeatable, tried in order; switched back
                        from after the config's failover.switch_back_after (10 s)
  --idle-fill WHAT      while no source delivers (after 0.5 s), keep the output alive:
                        null (MPEG-TS null packets, 105 kbit/s) or FILE.ts (a slate,
                        looped at the rate of its PCRs)
  --config FILE         YAML reconnection config (defaults otherwise)
  --streams FILE        many streams in one process, from a YAML file: `reconnect:`
                        defaults (any config key) and `streams:`, each with `id`,
                        `input`, `backups`, `output` and its own `reconnect:` overrides
  --state SPEC          where stream state is kept: memory (default), file:DIR, redis://HOST:PORT[/DB]
  --lease-ttl SECS      with --state redis://: how long a stream's lease outlives a
                        relay that died (default 10, from 0.1 to 600); relays sharing
                        a streams file take a dead one's streams once it ran out
  --metrics-addr ADDR   serve Prometheus metrics at http://ADDR/metrics, and every
                        stream's state as JSON at http://ADDR/streams
  --metrics-clients N   clients --metrics-addr answers at once; more wait their turn
                        (default 64, from 1 to 1024)
  --srt-backend NAME    the library of srt:// inputs and outputs: srt-tokio (default)
                        or libsrt (the system libsrt: live RTT and loss, FEC packet
                        filters; needs a build with the `libsrt` feature)
  --output-buffer N     packets an srt:// output keeps while its receiver is away,
                        oldest dropped first (default 4096, from 1 to 1000000)
  --events json         print each reconnection event as one JSON line on stderr
  --duration SECS       stop cleanly after that long (at most 31536000, a year)
  --log-level LEVEL     error, warn (default), info, debug or trace; RUST_LOG, when set,
                        takes a full filter instead (this option wins over it)
  --quiet               no log lines and no status line (errors that stop the relay
                        are still said)
  --demo                run the self-contained demo (no INPUT/OUTPUT)
  --report-dir DIR      where --demo writes its report and timeline (default target/relay-demo)
  -h, --help            print this help
";

/// Packets an SRT output keeps while its receiver is away, unless `--output-buffer`
/// says: 4 096, 5.4 MB of 1316-byte packets, several seconds of a live stream.
pub(crate) const DEFAULT_OUTPUT_BUFFER: usize = 4096;
/// The most `--output-buffer` may be: 1.3 GB of 1316-byte packets.
const MAX_OUTPUT_BUFFER: usize = 1_000_000;

/// Clients the metrics listener answers at once, unless `--metrics-clients` says.
pub(crate) const DEFAULT_METRICS_CLIENTS: usize = 64;
/// The most `--metrics-clients` may be.
const MAX_METRICS_CLIENTS: usize = 1024;

/// Where packets come from.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    Srt(String),
    Rtp(SocketAddr),
    Udp(SocketAddr),
}

/// Where packets go.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Output {
    Udp(SocketAddr),
    Srt(String),
    File(PathBuf),
    Stdout,
}

/// Which library carries an `srt://` input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SrtBackend {
    SrtTokio,
    Libsrt,
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
    /// `--backup` inputs, in order.
    pub(crate) backups: Vec<Input>,
    /// `--idle-fill`, loaded.
    pub(crate) idle_fill: Option<crate::fill::IdleFill>,
    pub(crate) output: Option<Output>,
    pub(crate) config: Option<PathBuf>,
    /// `--streams FILE`: many streams in one process, instead of INPUT and OUTPUT.
    pub(crate) streams: Option<PathBuf>,
    pub(crate) state: StateSpec,
    pub(crate) metrics_addr: Option<SocketAddr>,
    /// `--metrics-clients`: clients the metrics listener answers at once.
    pub(crate) metrics_clients: usize,
    /// `--lease-ttl`: only with a Redis store.
    pub(crate) lease_ttl: Option<Duration>,
    pub(crate) srt_backend: SrtBackend,
    /// `--output-buffer`: packets an SRT output keeps while its receiver is away.
    pub(crate) output_buffer: usize,
    pub(crate) events_json: bool,
    pub(crate) duration: Option<Duration>,
    pub(crate) demo: bool,
    pub(crate) report_dir: PathBuf,
    pub(crate) help: bool,
    /// `--log-level`, checked.
    pub(crate) log_level: Option<String>,
    pub(crate) quiet: bool,
    /// Internal to `--demo`: run as the demo's SRT sender on this address, numbering
    /// packets from this epoch (Unix milliseconds), for callers of this stream id.
    pub(crate) demo_sender: Option<(SocketAddr, u64, String)>,
}

/// The longest `--duration`: a year. A relay meant to run longer runs without one and
/// is stopped with a signal.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

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

/// The file at `path`, when it has at most `limit` bytes; a longer file (or a device
/// without an end, such as `/dev/zero`) is an error after `limit + 1` bytes.
pub(crate) fn read_at_most(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;

    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(limit + 1).read_to_end(&mut bytes))
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(format!("longer than {limit} bytes, the most it may be"));
    }
    Ok(bytes)
}

/// `HOST:PORT` to one socket address; an empty host is every local address.
pub(crate) fn socket_addr(what: &str, authority: &str) -> Result<SocketAddr, UsageError> {
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

/// The `HOST:PORT` of a `udp://` or `rtp://` URL (`what` is input or output). They take
/// nothing else but a trailing `/`: a path, query or fragment would be ignored, so it
/// is an error that names it.
fn udp_address(what: &str, url: &str) -> Result<SocketAddr, UsageError> {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if !tail.is_empty() && tail != "/" {
        let (before, fragment) = match tail.split_once('#') {
            Some((before, fragment)) => (before, Some(fragment)),
            None => (tail, None),
        };
        let (path, query) = match before.split_once('?') {
            Some((path, query)) => (path, Some(query)),
            None => (before, None),
        };
        let mut unused = Vec::new();
        if !path.is_empty() && path != "/" {
            unused.push(format!("the path {}", shown(path)));
        }
        if let Some(query) = query {
            unused.push(format!("the query {}", shown(query)));
        }
        if let Some(fragment) = fragment {
            unused.push(format!("the fragment {}", shown(fragment)));
        }
        return Err(usage(format!(
            "{what} {}: {scheme}:// takes only HOST:PORT, not {}",
            shown(url),
            unused.join(" nor ")
        )));
    }
    socket_addr(&format!("{what} address"), authority)
}

/// An input URL; `what` names it in errors (`input`, `--backup`).
pub(crate) fn parse_input(what: &str, url: &str) -> Result<Input, UsageError> {
    if url.starts_with("srt://") {
        Ok(Input::Srt(url.to_owned()))
    } else if url.starts_with("rtp://") {
        Ok(Input::Rtp(udp_address(what, url)?))
    } else if url.starts_with("udp://") {
        Ok(Input::Udp(udp_address(what, url)?))
    } else {
        Err(usage(format!(
            "{what} {} is not an srt://, rtp:// or udp:// URL",
            shown(url)
        )))
    }
}

/// Whether an `srt://` URL asks for a packet filter (a URL that does not parse is
/// said elsewhere).
fn has_packet_filter(url: &str) -> bool {
    url.starts_with("srt://")
        && mirror_reconnect::protocol::srt::srt_target(url)
            .is_ok_and(|t| t.parameters.contains_key("packetfilter"))
}

pub(crate) fn parse_output(url: &str) -> Result<Output, UsageError> {
    if url == "-" {
        Ok(Output::Stdout)
    } else if url.starts_with("srt://") {
        Ok(Output::Srt(url.to_owned()))
    } else if url.starts_with("udp://") || url.starts_with("rtp://") {
        Ok(Output::Udp(udp_address("output", url)?))
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

/// The `--config` file, if it can be opened and is not a directory; reading and
/// checking it comes later.
fn config_file(path: PathBuf) -> Result<PathBuf, UsageError> {
    let opened = std::fs::File::open(&path).and_then(|file| file.metadata());
    let shown_path = shown(&path.to_string_lossy());
    match opened {
        Err(e) => Err(usage(format!("--config {shown_path}: {e}"))),
        Ok(meta) if meta.is_dir() => Err(usage(format!(
            "--config {shown_path} is a directory, not a YAML file"
        ))),
        Ok(_) => Ok(path),
    }
}

/// `option`'s value as a number of `what` from 1 to `most`.
fn count(value: OsString, option: &str, what: &str, most: usize) -> Result<usize, UsageError> {
    let value = text(value, option)?;
    value
        .parse()
        .ok()
        .filter(|n| (1..=most).contains(n))
        .ok_or_else(|| {
            usage(format!(
                "{option} {} is not a number of {what} from 1 to {most}",
                shown(&value)
            ))
        })
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
        backups: Vec::new(),
        idle_fill: None,
        config: None,
        streams: None,
        state: StateSpec::Memory,
        metrics_addr: None,
        metrics_clients: DEFAULT_METRICS_CLIENTS,
        lease_ttl: None,
        srt_backend: SrtBackend::SrtTokio,
        output_buffer: DEFAULT_OUTPUT_BUFFER,
        events_json: false,
        duration: None,
        demo: false,
        report_dir: PathBuf::from("target/relay-demo"),
        help: false,
        log_level: None,
        quiet: false,
        demo_sender: None,
    };
    let mut positional = Vec::new();
    let mut backup_urls = Vec::new();
    while let Some(arg) = parser.next().map_err(bad)? {
        match arg {
            Long("config") => {
                args.config = Some(config_file(parser.value().map_err(bad)?.into())?);
            }
            Long("streams") => {
                args.streams = Some(parser.value().map_err(bad)?.into());
            }
            Long("state") => {
                args.state = parse_state(&text(parser.value().map_err(bad)?, "--state")?)?;
            }
            Long("metrics-addr") => {
                let value = text(parser.value().map_err(bad)?, "--metrics-addr")?;
                args.metrics_addr = Some(socket_addr("--metrics-addr", &value)?);
            }
            Long("idle-fill") => {
                let value = text(parser.value().map_err(bad)?, "--idle-fill")?;
                args.idle_fill = Some(if value == "null" {
                    crate::fill::IdleFill::null()
                } else {
                    crate::fill::IdleFill::slate(std::path::Path::new(&value))
                        .map_err(|e| usage(format!("--idle-fill {}", redact_url(&e))))?
                });
            }
            Long("backup") => {
                backup_urls.push(text(parser.value().map_err(bad)?, "--backup")?);
            }
            Long("srt-backend") => {
                let value = text(parser.value().map_err(bad)?, "--srt-backend")?;
                args.srt_backend = match value.as_str() {
                    "srt-tokio" => SrtBackend::SrtTokio,
                    "libsrt" if cfg!(feature = "libsrt") => SrtBackend::Libsrt,
                    "libsrt" => {
                        return Err(usage(
                            "--srt-backend libsrt: this relay was built without the libsrt \
                             feature (build with --features libsrt; Debian: libsrt-openssl-dev)",
                        ))
                    }
                    _ => {
                        return Err(usage(format!(
                            "--srt-backend {} is not srt-tokio or libsrt",
                            shown(&value)
                        )))
                    }
                };
            }
            Long("metrics-clients") => {
                let value = parser.value().map_err(bad)?;
                args.metrics_clients =
                    count(value, "--metrics-clients", "clients", MAX_METRICS_CLIENTS)?;
            }
            Long("output-buffer") => {
                let value = parser.value().map_err(bad)?;
                args.output_buffer = count(value, "--output-buffer", "packets", MAX_OUTPUT_BUFFER)?;
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
                let duration = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| s.is_finite() && *s > 0.0)
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .filter(|d| *d <= MAX_DURATION)
                    .ok_or_else(|| {
                        usage(format!(
                            "--duration {} is not a positive number of seconds up to {} (a year)",
                            shown(&value),
                            MAX_DURATION.as_secs()
                        ))
                    })?;
                args.duration = Some(duration);
            }
            Long("lease-ttl") => {
                let value = text(parser.value().map_err(bad)?, "--lease-ttl")?;
                let ttl = value
                    .parse()
                    .ok()
                    .filter(|s: &f64| (0.1..=600.0).contains(s))
                    .and_then(|s| Duration::try_from_secs_f64(s).ok())
                    .ok_or_else(|| {
                        usage(format!(
                            "--lease-ttl {} is not a number of seconds from 0.1 to 600",
                            shown(&value)
                        ))
                    })?;
                args.lease_ttl = Some(ttl);
            }
            Long("log-level") => {
                let value = text(parser.value().map_err(bad)?, "--log-level")?;
                let level = value.to_ascii_lowercase();
                if !["error", "warn", "info", "debug", "trace"].contains(&level.as_str()) {
                    return Err(usage(format!(
                        "--log-level {value:?} is not error, warn, info, debug or trace"
                    )));
                }
                args.log_level = Some(level);
            }
            Long("quiet") => args.quiet = true,
            Long("demo") => args.demo = true,
            Long("report-dir") => args.report_dir = parser.value().map_err(bad)?.into(),
            Short('h') | Long("help") => args.help = true,
            Long("demo-sender") => {
                let value = text(parser.value().map_err(bad)?, "--demo-sender")?;
                let mut fields = value.splitn(3, ',');
                let (Some(addr), Some(epoch), Some(stream_id)) =
                    (fields.next(), fields.next(), fields.next())
                else {
                    return Err(usage("--demo-sender takes ADDR,EPOCH_MS,STREAM_ID"));
                };
                let epoch = epoch.parse().map_err(|_| {
                    usage(format!(
                        "--demo-sender epoch {} is not a number",
                        shown(epoch)
                    ))
                })?;
                args.demo_sender = Some((
                    socket_addr("--demo-sender", addr)?,
                    epoch,
                    stream_id.to_owned(),
                ));
                return Ok(args);
            }
            Value(value) => {
                let what = match positional.len() {
                    0 => "input",
                    1 => "output",
                    _ => "argument",
                };
                positional.push(text(value, what)?);
            }
            _ => return Err(bad(arg.unexpected())),
        }
    }
    if args.help {
        return Ok(args);
    }
    if args.lease_ttl.is_some() && !matches!(args.state, StateSpec::Redis(_)) {
        return Err(usage(
            "--lease-ttl needs --state redis://… (leases are kept in Redis)",
        ));
    }
    if args.streams.is_some() {
        let conflict = if args.demo {
            Some("--demo")
        } else if !positional.is_empty() {
            Some("INPUT and OUTPUT")
        } else if !backup_urls.is_empty() {
            Some("--backup (give a stream its `backups:`)")
        } else if args.config.is_some() {
            Some("--config (the file's `reconnect:` is every stream's config)")
        } else {
            None
        };
        return match conflict {
            Some(what) => Err(usage(format!("--streams takes no {what}"))),
            None => Ok(args),
        };
    }
    match (args.demo, positional.as_slice()) {
        (true, []) if !backup_urls.is_empty() => return Err(usage("--demo takes no --backup")),
        (true, []) => {}
        (true, _) => return Err(usage("--demo takes no INPUT or OUTPUT")),
        (false, [input, output]) => {
            args.input = Some(parse_input("input", input)?);
            args.output = Some(parse_output(output)?);
            for url in &backup_urls {
                args.backups.push(parse_input("--backup", url)?);
            }
            if args.srt_backend == SrtBackend::SrtTokio {
                let backups = backup_urls.iter().map(|url| ("--backup", url));
                for (what, url) in [("input", input), ("output", output)]
                    .into_iter()
                    .chain(backups)
                {
                    if has_packet_filter(url) {
                        return Err(usage(format!(
                            "{what}: packetfilter (FEC) needs --srt-backend libsrt; srt-tokio \
                             has no packet filters"
                        )));
                    }
                }
            }
        }
        (false, []) => return Err(usage("missing INPUT and OUTPUT (or --demo)")),
        (false, [_]) => return Err(usage("missing OUTPUT")),
        (false, [_, _, extra, ..]) => {
            return Err(usage(format!("unexpected argument {}", shown(extra))))
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use std::os::unix::ffi::OsStringExt;

    use proptest::prelude::*;

    use super::*;

    const INPUT: &str = "udp://127.0.0.1:5000";

    fn parse_strs(args: &[&str]) -> Result<Args, UsageError> {
        parse(args.iter().map(OsString::from))
    }

    /// `result` is a parse, or one line of error that names `option`.
    fn ok_or_names(
        result: Result<Args, UsageError>,
        option: &str,
    ) -> Result<Option<Args>, TestCaseError> {
        match result {
            Ok(args) => Ok(Some(args)),
            Err(e) => {
                prop_assert!(e.0.contains(option), "does not name {}: {}", option, e);
                prop_assert!(!e.0.contains('\n'), "more than one line: {:?}", e.0);
                Ok(None)
            }
        }
    }

    /// Anything: numbers, numbers written oddly, URL-ish noise, any text.
    fn anything() -> impl Strategy<Value = String> {
        prop_oneof![
            any::<f64>().prop_map(|f| f.to_string()),
            any::<f64>().prop_map(|f| format!("{f:e}")),
            any::<i64>().prop_map(|n| n.to_string()),
            "[-+0-9.eEinfaNIFx_]{0,24}",
            "[a-z]{0,6}(://|:)[a-z0-9.:@\\[\\]/?&=%#-]{0,24}",
            any::<String>(),
        ]
    }

    #[test]
    fn metrics_clients_is_a_count_of_clients() {
        assert_eq!(parse_strs(&[INPUT, "-"]).unwrap().metrics_clients, 64);
        let args = parse_strs(&["--metrics-clients", "1024", INPUT, "-"]).unwrap();
        assert_eq!(args.metrics_clients, 1024);
        for bad in ["0", "1025", "-1", "x", ""] {
            let e = parse_strs(&["--metrics-clients", bad, INPUT, "-"]).unwrap_err();
            assert!(e.0.contains("--metrics-clients"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn output_buffer_is_a_count_of_packets() {
        assert_eq!(parse_strs(&[INPUT, "-"]).unwrap().output_buffer, 4096);
        let args = parse_strs(&["--output-buffer", "20000", INPUT, "-"]).unwrap();
        assert_eq!(args.output_buffer, 20_000);
        assert!(parse_strs(&["--output-buffer", "0", INPUT, "-"]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn duration(value in anything()) {
            let args = ok_or_names(parse_strs(&["--duration", &value, INPUT, "-"]), "--duration")?;
            if let Some(d) = args.and_then(|a| a.duration) {
                prop_assert!(d <= MAX_DURATION, "{:?}", d);
            }
        }

        #[test]
        fn metrics_addr(value in anything()) {
            ok_or_names(parse_strs(&["--metrics-addr", &value, INPUT, "-"]), "--metrics-addr")?;
        }

        #[test]
        fn state(value in anything()) {
            ok_or_names(parse_strs(&["--state", &value, INPUT, "-"]), "--state")?;
        }

        #[test]
        fn events(value in anything()) {
            let args = ok_or_names(parse_strs(&["--events", &value, INPUT, "-"]), "--events")?;
            prop_assert!(args.is_none() || value == "json");
        }

        #[test]
        fn config(value in anything()) {
            ok_or_names(parse_strs(&["--config", &value, INPUT, "-"]), "--config")?;
        }

        #[test]
        fn a_config_that_is_not_there(name in "[a-zA-Z0-9 ._-]{1,16}") {
            let path = format!("/nonexistent/{name}.yaml");
            let result = parse_strs(&["--config", &path, INPUT, "-"]);
            prop_assert!(result.is_err(), "{} accepted", path);
            ok_or_names(result, "--config")?;
        }

        #[test]
        fn input(value in anything()) {
            prop_assume!(value == "-" || !value.starts_with('-'));
            ok_or_names(parse_strs(&[&value, "-"]), "input")?;
        }

        #[test]
        fn output(value in anything()) {
            prop_assume!(value == "-" || !value.starts_with('-'));
            ok_or_names(parse_strs(&[INPUT, &value]), "output")?;
        }

        #[test]
        fn udp_and_rtp_take_no_path_nor_query(
            scheme in "(udp|rtp)",
            tail in "(/[a-z0-9/]{1,8}|/?\\?[a-z=0-9&]{0,8}|#[a-z]{0,4})",
            output in any::<bool>(),
        ) {
            let url = format!("{scheme}://127.0.0.1:5000{tail}");
            let (args, option) = if output {
                ([INPUT, url.as_str()], "output")
            } else {
                ([url.as_str(), "-"], "input")
            };
            let result = parse_strs(&args);
            prop_assert!(result.is_err(), "{} accepted", url);
            ok_or_names(result, option)?;
        }

        #[test]
        fn values_that_are_not_utf8(
            bytes in proptest::collection::vec(any::<u8>(), 0..16),
            at in 0usize..8,
        ) {
            prop_assume!(String::from_utf8(bytes.clone()).is_err());
            // A positional argument that starts with `-` is an option.
            prop_assume!(at < 6 || bytes.first() != Some(&b'-'));
            let bad = OsString::from_vec(bytes);
            let options = ["--duration", "--metrics-addr", "--state", "--events", "--config", "--report-dir"];
            let (args, name): (Vec<OsString>, &str) = match at {
                6 => (vec![bad, "-".into()], "input"),
                7 => (vec![INPUT.into(), bad], "output"),
                i => (vec![options[i].into(), bad, INPUT.into(), "-".into()], options[i]),
            };
            // --config and --report-dir take paths, which need not be UTF-8.
            let result = parse(args);
            if name == "--report-dir" {
                prop_assert!(result.is_ok());
            } else {
                ok_or_names(result, name)?;
            }
        }
    }

    #[test]
    fn lease_ttl_is_checked_and_needs_redis() {
        let redis = ["--state", "redis://127.0.0.1:6379", INPUT, "-"];
        let args = parse_strs(&[&["--lease-ttl", "2.5"][..], &redis].concat()).unwrap();
        assert_eq!(args.lease_ttl, Some(Duration::from_millis(2500)));
        for bad in ["0", "0.05", "601", "nan", "x"] {
            let e = parse_strs(&[&["--lease-ttl", bad][..], &redis].concat()).unwrap_err();
            assert!(e.0.contains("--lease-ttl"), "{e}");
        }
        let e = parse_strs(&["--lease-ttl", "2", INPUT, "-"]).unwrap_err();
        assert!(e.0.contains("needs --state redis://"), "{e}");
    }

    #[test]
    fn valid_values_parse_as_before() {
        let args = parse_strs(&[
            "--duration",
            "2.5",
            "--metrics-addr",
            "127.0.0.1:9184",
            "--events",
            "json",
            "--state",
            "memory",
            "udp://127.0.0.1:5000/",
            "rtp://127.0.0.1:5002",
        ])
        .unwrap();
        assert_eq!(args.duration, Some(Duration::from_millis(2500)));
        assert_eq!(args.metrics_addr, Some("127.0.0.1:9184".parse().unwrap()));
        assert!(matches!(args.input, Some(Input::Udp(a)) if a.port() == 5000));
        assert!(matches!(args.output, Some(Output::Udp(a)) if a.port() == 5002));
        let args = parse_strs(&["rtp://:5004", "file:out.ts"]).unwrap();
        assert!(matches!(args.input, Some(Input::Rtp(a)) if a.port() == 5004));
    }

    #[test]
    fn backups_parse_in_order_and_a_bad_one_is_named() {
        let args = parse_strs(&[
            "srt://:9000?mode=listener",
            "--backup",
            "rtp://:5004",
            "--backup",
            "udp://:5006",
            "udp://127.0.0.1:5000",
        ])
        .unwrap();
        assert!(
            matches!(args.backups.as_slice(), [Input::Rtp(a), Input::Udp(b)] if a.port() == 5004 && b.port() == 5006)
        );
        let error = parse_strs(&["udp://:5000", "--backup", "ftp://x", "-"]).unwrap_err();
        assert!(error.0.starts_with("--backup "), "{error}");
        let error =
            parse_strs(&["udp://:5000", "--backup", "srt://:1?packetfilter=fec", "-"]).unwrap_err();
        assert!(
            error.0.contains("--backup") && error.0.contains("libsrt"),
            "{error}"
        );
        assert!(parse_strs(&["--demo", "--backup", "udp://:1"]).is_err());
    }
}
