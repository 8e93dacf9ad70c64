//! How fast a stream comes back after the path is cut: our stack, with several
//! backoff settings, side by side with libsrt's own reconnection in
//! `srt-live-transmit`, all under the same scripted blackholes.
//!
//! The setup, on loopback, in real time:
//!
//! ```text
//!                                         ┌─► our stack (caller), exponential, no jitter
//!  srt-tokio listener  ◄──►  Network  ◄──┼─► our stack (caller), exponential, full jitter
//!  sending a numbered       Simulator     ├─► our stack (caller), exponential, decorrelated
//!  1316-byte packet                       ├─► our stack (caller), fixed 1 s
//!  every 5 ms to each                     ├─► srt-live-transmit (caller, defaults) ─► UDP, counted
//!  caller                                 └─► srt-live-transmit (caller, peeridletimeo=1000) ─► UDP
//! ```
//!
//! Every receiver is an SRT caller that dials the same listener through the same
//! simulator, so each blackhole hits them all at once and they are compared under
//! exactly the same conditions. `srt-live-transmit` is libsrt's own relay: as a caller
//! it re-dials whenever its connection breaks (auto-reconnect, on by default); its
//! output is a UDP socket this bench counts. The far side behaves like a libsrt sender:
//! it keeps sending to a caller until it has heard nothing from it for 5 s (libsrt's
//! default peer-idle timeout), and accepts every new caller.
//!
//! The script cuts the path (blackhole, both ways) for 1 s three times, 5 s three times
//! and 30 s once; after each it waits until every receiver delivers again (at most 20 s)
//! and then lets them stream for a while. Figures: the time from the path coming back
//! to the first packet *sent after it came back* that each receiver delivers downstream,
//! and, for our stack, how long after the cut the failure was detected. The sender
//! numbers its packets (the first 4 bytes of the payload) and notes when it sent each
//! number, so that a packet sent before or during the cut (held in a buffer,
//! retransmitted) does not count as the stream having recovered.
//!
//! Run with `cargo bench --all-features --bench recovery`. About 2 minutes;
//! `BENCH_QUICK=1` cuts the path once for 1 s and once for 5 s, to check that it runs.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use mirror_reconnect::backoff::Jitter;
use mirror_reconnect::config::{BackoffType, ReconnectionConfig};
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::{EventType, Events};
use mirror_reconnect::protocol::srt::SrtConnector;
use mirror_reconnect::sim::NetworkSimulator;
use srt_tokio::{SrtListener, SrtSocket};
use tokio::net::UdpSocket;

#[path = "common/net_figures.rs"]
mod net_figures;
#[path = "common/quick.rs"]
mod quick;

use net_figures::{have, median, ms, Section};

const PAYLOAD: usize = 1316;
const PACKET_EVERY: Duration = Duration::from_millis(5);
const LATENCY_MS: u64 = 120;
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);
/// The option of the second `srt-live-transmit` (the first runs at its defaults).
const LIBSRT_OPTION: &str = "peeridletimeo=1000";

/// The far side gives up on a caller it has not heard for this long: SRT's default
/// peer-idle timeout (SRTO_PEERIDLETIMEO), as srt-tokio's options have it.
fn far_peer_idle() -> Duration {
    srt_tokio::options::Session::default().peer_idle_timeout
}

/// The cuts, in seconds, in order.
fn outages() -> Vec<u64> {
    quick::pick(vec![1, 1, 1, 5, 5, 5, 30], vec![1, 5])
}

/// The version of libsrt that `srt-live-transmit` runs on: what it says with
/// `-version`, else the version of the installed libsrt package; `None` when neither
/// can be read.
fn libsrt_version() -> Option<String> {
    let said = Command::new("srt-live-transmit")
        .arg("-version")
        .stdin(Stdio::null())
        .output()
        .ok()
        .and_then(|out| {
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            // "SRT Library version: 1.5.1, clock type: …" is the library it runs on
            // ("Built with SRT Library version: …" the one it was compiled against).
            text.lines()
                .filter(|l| !l.trim_start().starts_with("Built with"))
                .find_map(|l| l.split_once("SRT Library version:"))
                .map(|(_, rest)| rest.split(',').next().unwrap_or(rest).trim().to_owned())
        });
    said.filter(|v| !v.is_empty()).or_else(|| {
        // Debian names the package after the library's soname and TLS backend
        // (libsrt1.5-openssl, libsrt1.5-gnutls); take the installed one.
        let out = Command::new("dpkg-query")
            .args([
                "-W",
                "-f=${Package} ${Version} ${db:Status-Abbrev}\n",
                "libsrt*",
            ])
            .stderr(Stdio::null())
            .output()
            .ok()?;
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let mut f = l.split_whitespace();
            let (package, version, status) = (f.next()?, f.next()?, f.next()?);
            (status.starts_with("ii") && !version.is_empty())
                .then(|| format!("{version} ({package})"))
        })
    })
}

/// When the far side sent each packet: entry `n` is the time of packet `n`.
type SentLog = Arc<Mutex<Vec<Instant>>>;

/// The number of the first packet the far side sent at or after `at` (a packet not
/// sent yet gets a number at least this).
fn first_sent_after(sent: &SentLog, at: Instant) -> u32 {
    let sent = lock_sent(sent);
    u32::try_from(sent.partition_point(|t| *t < at)).unwrap_or(u32::MAX)
}

/// The number the far side put in a packet's first 4 bytes.
fn packet_number(payload: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(payload.get(..4)?.try_into().ok()?))
}

/// When each receiver delivered packets (and their numbers), and what our stack
/// reported.
#[derive(Default)]
struct Log {
    delivered: Vec<(Instant, Option<u32>)>,
    failures: Vec<Instant>,
    attempts: Vec<Instant>,
}

type SharedLog = Arc<Mutex<Log>>;

fn lock(log: &SharedLog) -> std::sync::MutexGuard<'_, Log> {
    log.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

struct Receiver {
    label: String,
    ours: bool,
    log: SharedLog,
    /// Stops our stack when the receiver is dropped (libsrt's stops with its process).
    stop: Option<mirror_reconnect::driver::StopHandle>,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        if let Some(stop) = &self.stop {
            stop.stop();
        }
    }
}

/// The far side: an srt-tokio listener that sends a numbered packet every 5 ms to every
/// caller it still hears from, noting when it sent each number.
async fn far_side() -> std::io::Result<(SocketAddr, SentLog)> {
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let address = udp.local_addr()?;
    let (binding, mut incoming) = SrtListener::builder()
        .latency(Duration::from_millis(LATENCY_MS))
        .set(|o| o.session.statistics_interval = Duration::from_millis(200))
        .socket(udp)
        .bind(address)
        .await?;
    let sent = SentLog::default();
    let log = Arc::clone(&sent);
    let far_peer_idle = far_peer_idle();
    tokio::spawn(async move {
        let _binding = binding;
        let mut callers: Vec<(SrtSocket, u64, Instant)> = Vec::new();
        let mut tick = tokio::time::interval(PACKET_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        let mut n = 0u32;
        let mut payload = vec![0x47u8; PAYLOAD];
        loop {
            tokio::select! {
                request = incoming.incoming().next() => {
                    let Some(request) = request else { break };
                    if let Ok(socket) = request.accept(None).await {
                        callers.push((socket, 0, Instant::now()));
                    }
                }
                _ = tick.tick() => {
                    callers.retain_mut(|(socket, heard, at)| {
                        while let Some(Some(stats)) = socket.statistics().next().now_or_never() {
                            if stats.rx_all_packets > *heard {
                                *heard = stats.rx_all_packets;
                                *at = Instant::now();
                            }
                        }
                        at.elapsed() < far_peer_idle
                    });
                    payload[..4].copy_from_slice(&n.to_be_bytes());
                    // Noted before the sends: a packet noted at or after a time was sent
                    // after it.
                    let now = Instant::now();
                    lock_sent(&log).push(now);
                    let bytes = Bytes::copy_from_slice(&payload);
                    for (socket, _, _) in &mut callers {
                        // Never wait on one caller: a stale one must not hold up the rest.
                        let _ = socket.try_send(now, bytes.clone());
                    }
                    n = n.wrapping_add(1);
                }
            }
        }
    });
    Ok((address, sent))
}

fn lock_sent(sent: &SentLog) -> std::sync::MutexGuard<'_, Vec<Instant>> {
    sent.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn config(backoff: BackoffType, jitter: Jitter) -> ReconnectionConfig {
    let mut config = ReconnectionConfig {
        // Never give up within the script: what is measured is how fast it comes back.
        max_retries: 1000,
        backoff_type: backoff,
        use_jitter: jitter != Jitter::None,
        jitter: Some(jitter),
        ..ReconnectionConfig::default()
    };
    if backoff == BackoffType::Exponential {
        config.initial_delay = Duration::from_millis(250);
        config.max_delay = Duration::from_secs(8);
        config.multiplier = 2.0;
    } else {
        config.initial_delay = Duration::from_secs(1);
        config.max_delay = Duration::from_secs(1);
    }
    config.validate().expect("a valid config");
    config
}

/// "ours: exponential 250 ms ×2 to 8 s, full jitter", from the config itself.
fn label(config: &ReconnectionConfig) -> String {
    let ms = |d: Duration| {
        if d.subsec_millis() == 0 {
            format!("{} s", d.as_secs())
        } else {
            format!("{} ms", d.as_millis())
        }
    };
    let backoff = match config.backoff_type {
        BackoffType::Exponential => format!(
            "exponential {} ×{} to {}",
            ms(config.initial_delay),
            config.multiplier,
            ms(config.max_delay)
        ),
        BackoffType::Fixed => format!("fixed {}", ms(config.initial_delay)),
        other => format!("{other:?} from {}", ms(config.initial_delay)),
    };
    let jitter = match config.jitter_mode() {
        Jitter::None => "no".to_owned(),
        j => j.to_string(),
    };
    format!("ours: {backoff}, {jitter} jitter")
}

/// Our stack as an SRT caller through the simulator, its packets and events logged.
fn ours(label: &str, config: &ReconnectionConfig, via: SocketAddr, id: usize) -> Receiver {
    ours_with(label, config, SrtConnector::new(), via, id)
}

/// The same, with this connector.
fn ours_with(
    label: &str,
    config: &ReconnectionConfig,
    connector: SrtConnector,
    via: SocketAddr,
    id: usize,
) -> Receiver {
    let target = Target::new(format!("ours{id}"), Protocol::Srt)
        .address(via)
        .parameter("latency", LATENCY_MS.to_string());
    let mut packets = config
        .builder()
        .probe(connector.probe())
        .build(connector, target);
    let stop = packets.stop_handle();
    let log = SharedLog::default();
    record_events(packets.event_bus(), &log);
    let sink = Arc::clone(&log);
    tokio::spawn(async move {
        while let Some(item) = packets.next().await {
            match item {
                Ok(packet) => {
                    let at = Instant::now();
                    lock(&sink)
                        .delivered
                        .push((at, packet_number(&packet.payload)));
                }
                Err(e) => {
                    eprintln!("stream gave up: {e}");
                    break;
                }
            }
        }
    });
    Receiver {
        label: label.to_owned(),
        ours: true,
        log,
        stop: Some(stop),
    }
}

fn record_events(events: &Events, log: &SharedLog) {
    let log = Arc::clone(log);
    events.on_event(move |e| {
        let now = Instant::now();
        match e.event_type {
            EventType::FailureDetected => lock(&log).failures.push(now),
            EventType::ReconnectionAttempt => lock(&log).attempts.push(now),
            _ => {}
        }
    });
}

/// Kills its child when dropped.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `srt-live-transmit` calling through the simulator, relaying to a UDP port counted
/// here.
async fn live_transmit(
    label: &str,
    via: SocketAddr,
    extra: &str,
    children: &mut Vec<ChildGuard>,
) -> std::io::Result<Receiver> {
    let output = UdpSocket::bind("127.0.0.1:0").await?;
    let port = output.local_addr()?.port();
    let input = format!(
        "srt://{via}?mode=caller&latency={LATENCY_MS}&streamid=libsrt{}{extra}",
        children.len()
    );
    let child = Command::new("srt-live-transmit")
        .args(["-q", "-ll", "fatal", "-chunk", "1316", "-a", "yes", &input])
        .arg(format!("udp://127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    children.push(ChildGuard(child));
    let log = SharedLog::default();
    let sink = Arc::clone(&log);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        while let Ok(len) = output.recv(&mut buf).await {
            let at = Instant::now();
            lock(&sink).delivered.push((at, packet_number(&buf[..len])));
        }
    });
    Ok(Receiver {
        label: label.to_owned(),
        ours: false,
        log,
        stop: None,
    })
}

/// When `receiver` first delivered a packet at or after `since`.
fn delivered_since(receiver: &Receiver, since: Instant) -> Option<Instant> {
    let log = lock(&receiver.log);
    let i = log.delivered.partition_point(|(at, _)| *at < since);
    log.delivered.get(i).map(|(at, _)| *at)
}

/// When `receiver` first delivered, at or after `since`, a packet numbered `first`
/// or later: one the far side sent after `since`.
fn delivered_from(receiver: &Receiver, since: Instant, first: u32) -> Option<Instant> {
    let log = lock(&receiver.log);
    let i = log.delivered.partition_point(|(at, _)| *at < since);
    log.delivered[i..]
        .iter()
        .find(|(_, n)| n.is_some_and(|n| n >= first))
        .map(|(at, _)| *at)
}

/// What one receiver showed in one outage.
#[derive(Clone, Copy)]
struct Outcome {
    detected: Option<Duration>,
    /// From the path coming back to the first packet sent after that, delivered.
    recovered: Option<Duration>,
    /// From the path coming back to the first packet of any age delivered.
    any_packet: Option<Duration>,
    attempts: usize,
}

/// `first`: the number of the first packet sent after `up`.
fn outcome(receiver: &Receiver, down: Instant, up: Instant, first: u32) -> Outcome {
    let recovered_at = delivered_from(receiver, up, first);
    let any_packet = delivered_since(receiver, up).map(|at| at.duration_since(up));
    let log = lock(&receiver.log);
    let detected = log
        .failures
        .iter()
        .find(|at| **at >= down)
        .map(|at| at.duration_since(down));
    let end = recovered_at.unwrap_or(up + RECOVERY_LIMIT);
    let attempts = log
        .attempts
        .iter()
        .filter(|at| **at >= down && **at <= end)
        .count();
    Outcome {
        detected,
        recovered: recovered_at.map(|at| at.duration_since(up)),
        any_packet,
        attempts,
    }
}

async fn wait_all_streaming(receivers: &[Receiver], limit: Duration) {
    let start = Instant::now();
    while start.elapsed() < limit {
        let recent = Instant::now() - Duration::from_millis(200);
        if receivers
            .iter()
            .all(|r| delivered_since(r, recent).is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let mut section = Section::new(
        "recovery",
        "Recovery: from the path coming back to the first packet sent after it, delivered",
    );
    let (far, sent) = match far_side().await {
        Ok(far) => far,
        Err(e) => {
            section.para(&format!("Not measured: cannot start the SRT sender: {e}"));
            section.finish();
            return;
        }
    };
    let sim = NetworkSimulator::builder()
        .seed(3)
        .start(far)
        .await
        .expect("the network simulator starts on loopback");
    let via = sim.local_addr();

    let settings: Vec<(String, ReconnectionConfig)> = [
        (BackoffType::Exponential, Jitter::None),
        (BackoffType::Exponential, Jitter::Full),
        (BackoffType::Exponential, Jitter::Decorrelated),
        (BackoffType::Fixed, Jitter::None),
    ]
    .into_iter()
    .map(|(backoff, jitter)| {
        let config = config(backoff, jitter);
        (label(&config), config)
    })
    .collect();
    let mut receivers: Vec<Receiver> = settings
        .iter()
        .enumerate()
        .map(|(i, (label, config))| ours(label, config, via, i))
        .collect();
    // The config's own defaults, and the same probing before every retry and handshake.
    let defaults = ReconnectionConfig {
        max_retries: 1000,
        ..ReconnectionConfig::default()
    };
    receivers.push(ours(
        "ours: the config's defaults (probes; `probe_first_after: 5s`)",
        &defaults,
        via,
        receivers.len(),
    ));
    let quiet = ReconnectionConfig {
        probe_first_after: Some(Duration::ZERO),
        ..defaults.clone()
    };
    receivers.push(ours_with(
        "ours: defaults, `probe_first_after: 0s`, `probe_before_connect`",
        &quiet,
        SrtConnector::new().probe_before_connect(true),
        via,
        receivers.len(),
    ));
    let mut children = Vec::new();
    let libsrt = have("srt-live-transmit");
    let libsrt_version = libsrt_version().unwrap_or_else(|| "unknown".to_owned());
    if libsrt {
        for option in [None, Some(LIBSRT_OPTION)] {
            let (label, extra) = match option {
                None => (
                    format!("srt-live-transmit (libsrt {libsrt_version}, defaults)"),
                    String::new(),
                ),
                Some(o) => (format!("srt-live-transmit, {o}"), format!("&{o}")),
            };
            match live_transmit(&label, via, &extra, &mut children).await {
                Ok(r) => receivers.push(r),
                Err(e) => eprintln!("{label}: not started: {e}"),
            }
        }
    }

    wait_all_streaming(&receivers, Duration::from_secs(15)).await;
    for r in &receivers {
        if delivered_since(r, Instant::now() - Duration::from_millis(500)).is_none() {
            eprintln!("{}: not streaming before the first outage", r.label);
        }
    }

    // results[outage][receiver]
    let outages = outages();
    let mut results: Vec<(u64, Vec<Outcome>)> = Vec::new();
    for &seconds in &outages {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let down = Instant::now();
        sim.set_blackhole(true);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        sim.set_blackhole(false);
        let up = Instant::now();
        eprintln!("path cut for {seconds} s and restored");
        let recovered = |r: &Receiver| delivered_from(r, up, first_sent_after(&sent, up));
        while up.elapsed() < RECOVERY_LIMIT && !receivers.iter().all(|r| recovered(r).is_some()) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let everyone settle (and a receiver whose old connection limps on, find out).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let first = first_sent_after(&sent, up);
        let outcomes: Vec<Outcome> = receivers
            .iter()
            .map(|r| outcome(r, down, up, first))
            .collect();
        for (r, o) in receivers.iter().zip(&outcomes) {
            eprintln!(
                "  {:<58} detected {:>6} ms; after the path came back: first packet sent after it {:>6} ms, first packet of any age {:>6} ms; {} attempts",
                r.label,
                ms(o.detected),
                ms(o.recovered),
                ms(o.any_packet),
                o.attempts
            );
        }
        results.push((seconds, outcomes));
    }
    drop(children);

    let defaults = ReconnectionConfig::default();
    if let Some(notice) = quick::notice() {
        section.para(&notice);
    }
    section.para(&format!(
        "Measured in real time; the network trouble is simulated: the `NetworkSimulator` \
         blackholes the loopback path (both ways). Every receiver is an SRT caller of the same \
         srt-tokio listener through the same simulator, so each cut hits all of them at once. \
         The listener sends a {PAYLOAD}-byte packet every {} ms to every caller it still hears \
         from (it drops a caller it has not heard from for {:?}, SRT's default peer-idle \
         timeout as srt-tokio's options give it), numbered in its first 4 bytes, and notes \
         when it sent each number; SRT latency {LATENCY_MS} ms everywhere. Ours: \
         `ReconnectionConfig` defaults ({:?} connect timeout, adaptive silence detection {}) \
         with the backoff shown and up to {} retries. libsrt: `srt-live-transmit` (libsrt \
         {libsrt_version}, as it reports itself) as a caller with auto-reconnect (`-a yes`), \
         at its defaults and with `{LIBSRT_OPTION}`, relaying to a UDP port counted here. \
         Cuts: {} s (in that order). \"recovered\" is the time from the path coming back to \
         the first packet delivered downstream that the listener sent after the path came \
         back (packets sent before or during the cut, delivered late from a buffer, do not \
         count); medians over the cuts of that length. \"detected\" is how long after the \
         cut our stack declared the connection failed.",
        PACKET_EVERY.as_millis(),
        far_peer_idle(),
        defaults.srt.connect_timeout,
        if defaults.silence.enabled {
            "on"
        } else {
            "off"
        },
        settings[0].1.max_retries,
        outages
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    ));
    if !libsrt {
        section.para(
            "srt-live-transmit is not installed (Debian: `apt-get install srt-tools`), so \
             libsrt's side is missing below.",
        );
    }

    let lengths: Vec<u64> = {
        let mut l = outages.clone();
        l.sort_unstable();
        l.dedup();
        l
    };
    let baseline_index = receivers.iter().position(|r| !r.ours);
    let mut header = vec!["receiver".to_owned()];
    for l in &lengths {
        let runs = outages.iter().filter(|s| *s == l).count();
        let plural = if runs == 1 { "" } else { "s" };
        header.push(format!("{l} s cut: recovered ms ({runs} run{plural})"));
        header.push(format!("{l} s: detected ms"));
        header.push(format!("{l} s: vs libsrt"));
    }
    let median_of = |i: usize, l: u64, f: fn(&Outcome) -> Option<Duration>| -> Option<Duration> {
        let values: Vec<Option<Duration>> = results
            .iter()
            .filter(|(s, _)| *s == l)
            .map(|(_, o)| f(&o[i]))
            .collect();
        if values.iter().any(Option::is_none) {
            return None;
        }
        let secs: Vec<f64> = values.iter().flatten().map(Duration::as_secs_f64).collect();
        Some(Duration::from_secs_f64(median(&secs)))
    };
    let mut rows = Vec::new();
    for (i, r) in receivers.iter().enumerate() {
        let mut row = vec![r.label.clone()];
        for &l in &lengths {
            let all: Vec<String> = results
                .iter()
                .filter(|(s, _)| *s == l)
                .map(|(_, o)| ms(o[i].recovered))
                .collect();
            let med = median_of(i, l, |o| o.recovered);
            row.push(if all.len() > 1 {
                format!("**{}** ({})", ms(med), all.join(", "))
            } else {
                format!("**{}**", ms(med))
            });
            row.push(if r.ours {
                ms(median_of(i, l, |o| o.detected))
            } else {
                "—".to_owned()
            });
            let base = baseline_index.and_then(|b| median_of(b, l, |o| o.recovered));
            row.push(match (med, base) {
                (Some(m), Some(b)) if b > Duration::ZERO => {
                    format!("×{:.2}", m.as_secs_f64() / b.as_secs_f64())
                }
                _ => "—".to_owned(),
            });
        }
        rows.push(row);
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    section.table(&header, &rows);

    let mut attempt_rows = Vec::new();
    for (i, r) in receivers.iter().enumerate().filter(|(_, r)| r.ours) {
        let mut row = vec![r.label.clone()];
        for &l in &lengths {
            let counts: Vec<String> = results
                .iter()
                .filter(|(s, _)| *s == l)
                .map(|(_, o)| o[i].attempts.to_string())
                .collect();
            row.push(counts.join(", "));
        }
        attempt_rows.push(row);
    }
    let mut attempt_header = vec!["our stack: connect attempts per cut".to_owned()];
    attempt_header.extend(lengths.iter().map(|l| format!("{l} s cuts")));
    let attempt_header: Vec<&str> = attempt_header.iter().map(String::as_str).collect();
    section.table(&attempt_header, &attempt_rows);
    section.para(&format!(
        "\"—\" in a recovered column: that receiver delivered no packet sent after the path \
         came back within {RECOVERY_LIMIT:?} of it, in at least one of those runs.",
    ));
    flapping(&mut section, far).await;
    if libsrt {
        server_restarts(&mut section, &libsrt_version).await;
    }
    section.finish();
}

/// A flapping link: up 2 s, down 1 s, this many times.
fn flaps() -> u32 {
    quick::pick(20, 3)
}

/// Our stack through a link that flaps, with and without `stable_after`: connect
/// attempts per minute, and how much of the time packets flowed.
async fn flapping(section: &mut Section, far: SocketAddr) {
    let Ok(sim) = NetworkSimulator::builder().seed(5).start(far).await else {
        section.para("Flapping link: not measured (the simulator did not start).");
        return;
    };
    let via = sim.local_addr();
    let variants: Vec<(String, ReconnectionConfig)> = [Duration::from_secs(10), Duration::ZERO]
        .into_iter()
        .map(|stable_after| {
            let config = ReconnectionConfig {
                max_retries: 1000,
                stable_after,
                ..ReconnectionConfig::default()
            };
            let label = if stable_after.is_zero() {
                "ours, `stable_after: 0s` (default: afresh every time)".to_owned()
            } else {
                format!("ours, `stable_after: {}s`", stable_after.as_secs())
            };
            (label, config)
        })
        .collect();
    let receivers: Vec<Receiver> = variants
        .iter()
        .enumerate()
        .map(|(i, (label, config))| ours(label, config, via, 100 + i))
        .collect();
    wait_all_streaming(&receivers, Duration::from_secs(15)).await;
    let start = Instant::now();
    for _ in 0..flaps() {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sim.set_blackhole(true);
        tokio::time::sleep(Duration::from_secs(1)).await;
        sim.set_blackhole(false);
    }
    let end = Instant::now();
    let minutes = end.duration_since(start).as_secs_f64() / 60.0;
    let mut rows = Vec::new();
    for r in &receivers {
        let log = lock(&r.log);
        let attempts = log
            .attempts
            .iter()
            .filter(|at| **at >= start && **at <= end)
            .count();
        // Time with a packet within the last 100 ms, sampled every 100 ms.
        let mut flowing = 0usize;
        let mut samples = 0usize;
        let mut t = start;
        let mut i = log.delivered.partition_point(|(at, _)| *at < start);
        while t < end {
            let next = t + Duration::from_millis(100);
            let mut any = false;
            while i < log.delivered.len() && log.delivered[i].0 < next {
                any = true;
                i += 1;
            }
            flowing += usize::from(any);
            samples += 1;
            t = next;
        }
        eprintln!(
            "  {}: {attempts} attempts in {:.1} min, packets flowing {:.0} % of the time",
            r.label,
            minutes,
            100.0 * flowing as f64 / samples.max(1) as f64
        );
        rows.push(vec![
            r.label.clone(),
            format!("{:.1}", attempts as f64 / minutes),
            attempts.to_string(),
            format!("{:.0} %", 100.0 * flowing as f64 / samples.max(1) as f64),
        ]);
    }
    section.para("### A flapping link");
    section.para(&format!(
        "The simulator's path to the same listener is up 2 s and down 1 s (blackholed both \
         ways), {} times; two of our stacks call through it, the config's defaults \
         (probes on) with `max_retries: 1000`, one with `stable_after: 10s`, one with it \
         off (the default). \"flowing\": the share of 100 ms slots in which a packet was delivered \
         (the link itself is up two thirds of the time).",
        flaps()
    ));
    section.table(
        &[
            "stack",
            "connect attempts per minute",
            "attempts",
            "packets flowing",
        ],
        &rows,
    );
}

/// The server's outages, in seconds.
fn restart_outages() -> Vec<u64> {
    quick::pick(vec![5, 30, 120], vec![5])
}

/// `srt-live-transmit` as the SRT listener our stack (or libsrt's caller) calls,
/// relaying numbered datagrams that a task here sends to its UDP input.
struct Server {
    port: u16,
    input: u16,
    sent: SentLog,
    sender: tokio::task::JoinHandle<()>,
    child: Option<ChildGuard>,
}

impl Server {
    async fn start() -> std::io::Result<Self> {
        let port = net_figures::free_udp_port();
        let input = net_figures::free_udp_port();
        let sent = SentLog::default();
        let log = Arc::clone(&sent);
        let socket = UdpSocket::bind("127.0.0.1:0").await?;
        let sender = tokio::spawn(async move {
            let mut tick = tokio::time::interval(PACKET_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let mut payload = vec![0x47u8; PAYLOAD];
            for n in 0u32.. {
                tick.tick().await;
                payload[..4].copy_from_slice(&n.to_be_bytes());
                lock_sent(&log).push(Instant::now());
                // The server being down is the point: its input refuses, and that is fine.
                let _ = socket.send_to(&payload, ("127.0.0.1", input)).await;
            }
        });
        let mut server = Self {
            port,
            input,
            sent,
            sender,
            child: None,
        };
        server.up()?;
        Ok(server)
    }

    fn up(&mut self) -> std::io::Result<()> {
        let child = Command::new("srt-live-transmit")
            .args(["-q", "-ll", "fatal", "-chunk", "1316"])
            .arg(format!("udp://127.0.0.1:{}", self.input))
            .arg(format!(
                "srt://:{}?mode=listener&latency={LATENCY_MS}",
                self.port
            ))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?;
        self.child = Some(ChildGuard(child));
        Ok(())
    }

    /// SIGKILL, as a crashed or rebooted server.
    fn down(&mut self) {
        self.child = None;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.sender.abort();
    }
}

/// What one receiver did in one server outage.
struct RestartOutcome {
    /// Datagrams that reached the dead server's port while it was down.
    datagrams: usize,
    /// Of those, SRT handshakes (probes and connect attempts).
    handshakes: usize,
    /// From the server's restart to the first packet sent after it, delivered.
    back: Option<Duration>,
    attempts: usize,
}

/// Who calls the server in a restart run.
#[derive(Clone, Copy, PartialEq)]
enum Caller {
    /// Our stack, on the config's defaults.
    Ours,
    /// Our stack probing before every retry and every handshake: the fewest datagrams.
    Quiet,
    Libsrt,
}

/// Whether an SRT datagram is a handshake (a control packet of type 0).
fn is_handshake(datagram: &[u8]) -> bool {
    datagram.len() >= 2 && datagram[0] == 0x80 && datagram[1] == 0
}

/// One server outage of `seconds` with one caller: stream, kill the server and hold its
/// port with a socket that counts what arrives, restart it, time the way back.
async fn restart_run(caller: Caller, seconds: u64) -> std::io::Result<RestartOutcome> {
    let mut server = Server::start().await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let address: SocketAddr = ([127, 0, 0, 1], server.port).into();
    let mut children = Vec::new();
    let receiver = match caller {
        Caller::Ours => {
            let config = ReconnectionConfig {
                max_retries: 1000,
                ..ReconnectionConfig::default()
            };
            ours("ours", &config, address, 0)
        }
        Caller::Quiet => {
            let config = ReconnectionConfig {
                max_retries: 1000,
                probe_first_after: Some(Duration::ZERO),
                ..ReconnectionConfig::default()
            };
            let connector = SrtConnector::new().probe_before_connect(true);
            ours_with("quiet", &config, connector, address, 0)
        }
        Caller::Libsrt => live_transmit("libsrt", address, "", &mut children).await?,
    };
    wait_all_streaming(std::slice::from_ref(&receiver), Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    server.down();
    let down = Instant::now();
    let hold = std::net::UdpSocket::bind(("0.0.0.0", server.port))?;
    hold.set_read_timeout(Some(Duration::from_millis(50)))?;
    let counting = tokio::task::spawn_blocking(move || {
        let (mut datagrams, mut handshakes) = (0, 0);
        let mut buf = [0u8; 2048];
        while down.elapsed() < Duration::from_secs(seconds) {
            if let Ok((n, _)) = hold.recv_from(&mut buf) {
                datagrams += 1;
                handshakes += usize::from(is_handshake(&buf[..n]));
            }
        }
        (datagrams, handshakes)
    });
    let (datagrams, handshakes) = counting.await.unwrap_or((0, 0));
    server.up()?;
    let up = Instant::now();
    let first = first_sent_after(&server.sent, up);
    while up.elapsed() < RECOVERY_LIMIT && delivered_from(&receiver, up, first).is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let back = delivered_from(&receiver, up, first).map(|at| at.duration_since(up));
    let attempts = lock(&receiver.log)
        .attempts
        .iter()
        .filter(|at| **at >= down)
        .count();
    drop(receiver);
    drop(children);
    Ok(RestartOutcome {
        datagrams,
        handshakes,
        back,
        attempts,
    })
}

async fn server_restarts(section: &mut Section, libsrt_version: &str) {
    let outages = restart_outages();
    let mut rows = Vec::new();
    let mut thirty: Option<(Option<Duration>, usize)> = None;
    for &seconds in &outages {
        for caller in [Caller::Ours, Caller::Quiet, Caller::Libsrt] {
            let label = match caller {
                Caller::Ours => "ours (defaults, `max_retries: 1000`)".to_owned(),
                Caller::Quiet => "ours, `probe_first_after: 0s`, `probe_before_connect`".to_owned(),
                Caller::Libsrt => format!("srt-live-transmit caller (libsrt {libsrt_version})"),
            };
            eprintln!("server down {seconds} s, caller: {label}");
            match restart_run(caller, seconds).await {
                Ok(o) => {
                    eprintln!(
                        "  {} datagrams to the dead server ({} handshakes), back {} ms after it, {} attempts",
                        o.datagrams,
                        o.handshakes,
                        ms(o.back),
                        o.attempts
                    );
                    if caller == Caller::Ours && seconds == 30 {
                        thirty = Some((o.back, o.datagrams));
                    }
                    rows.push(vec![
                        format!("{seconds} s"),
                        label,
                        o.datagrams.to_string(),
                        o.handshakes.to_string(),
                        format!("**{}**", ms(o.back)),
                        if caller != Caller::Libsrt {
                            o.attempts.to_string()
                        } else {
                            "—".to_owned()
                        },
                    ]);
                }
                Err(e) => rows.push(vec![
                    format!("{seconds} s"),
                    label,
                    format!("not measured: {e}"),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
            }
        }
    }
    section.para("### The server restarts");
    section.para(
        "`srt-live-transmit` as the SRT listener (relaying numbered 1316-byte datagrams sent \
         every 5 ms to its UDP input), called by our stack (the config's defaults: probes \
         every 1 s while backing off, attempts only on an answered probe once failing for \
         5 s; `max_retries: 1000`), by our stack probing before every retry and every \
         handshake (`probe_first_after: 0s`, `SrtConnector::probe_before_connect`), \
         or by `srt-live-transmit` as a caller with auto-reconnect. The server is SIGKILLed, \
         a UDP socket holds its port and counts what arrives for the outage (and which of \
         it are SRT handshakes: probes and connect attempts; the rest is what the dying \
         connection still sent), then the server starts again. \"back\": from the restart \
         to the first packet the sender sent after it, delivered. One run per outage and \
         caller, in turn.",
    );
    section.table(
        &[
            "outage",
            "caller",
            "datagrams to the dead server",
            "of which handshakes",
            "back after the restart",
            "our connect attempts",
        ],
        &rows,
    );
    if let Some((back, datagrams)) = thirty {
        section.target(
            "server down 30 s: first packet after its return",
            "≤ 1.0 s",
            &format!("{} ms", ms(back)),
            back.is_some_and(|b| b <= Duration::from_secs(1)),
        );
        section.target(
            "server down 30 s: datagrams sent to it meanwhile",
            "≤ 40",
            &datagrams.to_string(),
            datagrams <= 40,
        );
    }
}
