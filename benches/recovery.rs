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
//! to the first packet each receiver delivers downstream, and, for our stack, how long
//! after the cut the failure was detected.
//!
//! Run with `cargo bench --all-features --bench recovery`. About 2 minutes.

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

use net_figures::{have, median, ms, Section};

const PAYLOAD: usize = 1316;
const PACKET_EVERY: Duration = Duration::from_millis(5);
/// libsrt's default: the far side gives up on a caller it has not heard for this long.
const FAR_PEER_IDLE: Duration = Duration::from_secs(5);
const LATENCY_MS: u64 = 120;
const OUTAGES: [u64; 7] = [1, 1, 1, 5, 5, 5, 30];
const RECOVERY_LIMIT: Duration = Duration::from_secs(20);

/// When each receiver delivered packets, and what our stack reported.
#[derive(Default)]
struct Log {
    delivered: Vec<Instant>,
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
}

/// The far side: an srt-tokio listener that sends a numbered packet every 5 ms to every
/// caller it still hears from.
async fn far_side() -> std::io::Result<SocketAddr> {
    let udp = UdpSocket::bind("127.0.0.1:0").await?;
    let address = udp.local_addr()?;
    let (binding, mut incoming) = SrtListener::builder()
        .latency(Duration::from_millis(LATENCY_MS))
        .set(|o| o.session.statistics_interval = Duration::from_millis(200))
        .socket(udp)
        .bind(address)
        .await?;
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
                        at.elapsed() < FAR_PEER_IDLE
                    });
                    payload[..4].copy_from_slice(&n.to_be_bytes());
                    let now = Instant::now();
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
    Ok(address)
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

/// Our stack as an SRT caller through the simulator, its packets and events logged.
fn ours(label: &str, config: &ReconnectionConfig, via: SocketAddr, id: usize) -> Receiver {
    let target = Target::new(format!("ours{id}"), Protocol::Srt)
        .address(via)
        .parameter("latency", LATENCY_MS.to_string());
    let mut packets = config.reconnecting(SrtConnector::new(), target);
    let log = SharedLog::default();
    record_events(packets.event_bus(), &log);
    let sink = Arc::clone(&log);
    tokio::spawn(async move {
        while let Some(item) = packets.next().await {
            match item {
                Ok(_) => lock(&sink).delivered.push(Instant::now()),
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
        while output.recv(&mut buf).await.is_ok() {
            lock(&sink).delivered.push(Instant::now());
        }
    });
    Ok(Receiver {
        label: label.to_owned(),
        ours: false,
        log,
    })
}

/// Whether `receiver` delivered a packet at or after `since`.
fn delivered_since(receiver: &Receiver, since: Instant) -> Option<Instant> {
    let log = lock(&receiver.log);
    let i = log.delivered.partition_point(|at| *at < since);
    log.delivered.get(i).copied()
}

/// What one receiver showed in one outage.
#[derive(Clone, Copy)]
struct Outcome {
    detected: Option<Duration>,
    recovered: Option<Duration>,
    attempts: usize,
}

fn outcome(receiver: &Receiver, down: Instant, up: Instant) -> Outcome {
    let recovered_at = delivered_since(receiver, up);
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
        "Recovery: from the path coming back to the first packet delivered",
    );
    let far = match far_side().await {
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

    let settings = [
        (
            "ours: exponential 250 ms ×2 to 8 s, no jitter",
            config(BackoffType::Exponential, Jitter::None),
        ),
        (
            "ours: exponential 250 ms ×2 to 8 s, full jitter",
            config(BackoffType::Exponential, Jitter::Full),
        ),
        (
            "ours: exponential 250 ms ×2 to 8 s, decorrelated jitter",
            config(BackoffType::Exponential, Jitter::Decorrelated),
        ),
        (
            "ours: fixed 1 s, no jitter",
            config(BackoffType::Fixed, Jitter::None),
        ),
    ];
    let mut receivers: Vec<Receiver> = settings
        .iter()
        .enumerate()
        .map(|(i, (label, config))| ours(label, config, via, i))
        .collect();
    let mut children = Vec::new();
    let libsrt = have("srt-live-transmit");
    if libsrt {
        for (label, extra) in [
            ("srt-live-transmit (libsrt 1.5 defaults)", ""),
            (
                "srt-live-transmit, peeridletimeo=1000",
                "&peeridletimeo=1000",
            ),
        ] {
            match live_transmit(label, via, extra, &mut children).await {
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
    let mut results: Vec<(u64, Vec<Outcome>)> = Vec::new();
    for &seconds in &OUTAGES {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let down = Instant::now();
        sim.set_blackhole(true);
        tokio::time::sleep(Duration::from_secs(seconds)).await;
        sim.set_blackhole(false);
        let up = Instant::now();
        eprintln!("path cut for {seconds} s and restored");
        while up.elapsed() < RECOVERY_LIMIT
            && !receivers.iter().all(|r| delivered_since(r, up).is_some())
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Let everyone settle (and a receiver whose old connection limps on, find out).
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let outcomes: Vec<Outcome> = receivers.iter().map(|r| outcome(r, down, up)).collect();
        for (r, o) in receivers.iter().zip(&outcomes) {
            eprintln!(
                "  {:<58} detected {:>8} ms, first packet {:>8} ms after the path came back, {} attempts",
                r.label,
                ms(o.detected),
                ms(o.recovered),
                o.attempts
            );
        }
        results.push((seconds, outcomes));
    }
    drop(children);

    section.para(&format!(
        "Measured in real time; the network trouble is simulated: the `NetworkSimulator` \
         blackholes the loopback path (both ways). Every receiver is an SRT caller of the same \
         srt-tokio listener through the same simulator, so each cut hits all of them at once. \
         The listener sends a numbered {PAYLOAD}-byte packet every {} ms to every caller it \
         still hears from (it drops a silent caller after {} s, as libsrt does); SRT latency \
         {LATENCY_MS} ms everywhere. Ours: `ReconnectionConfig` defaults (3 s connect timeout, \
         adaptive silence detection) with the backoff shown and no retry limit. libsrt: \
         `srt-live-transmit` as a caller with auto-reconnect, relaying to a UDP port counted \
         here; at its defaults it notices a dead peer only after its 5 s peer-idle timeout, and \
         a connection that was never declared dead simply resumes. Cuts: {} s (in that order). \
         \"recovered\" is the time from the path coming back to the first packet delivered \
         downstream (medians over the cuts of that length); \"detected\" is how long after the \
         cut our stack declared the connection failed.",
        PACKET_EVERY.as_millis(),
        FAR_PEER_IDLE.as_secs(),
        OUTAGES.map(|s| s.to_string()).join(", "),
    ));
    if !libsrt {
        section.para(
            "srt-live-transmit is not installed (Debian: `apt-get install srt-tools`), so \
             libsrt's side is missing below.",
        );
    }

    let lengths: Vec<u64> = {
        let mut l = OUTAGES.to_vec();
        l.dedup();
        l
    };
    let baseline_index = receivers.iter().position(|r| !r.ours);
    let mut header = vec!["receiver".to_owned()];
    for l in &lengths {
        let runs = OUTAGES.iter().filter(|s| *s == l).count();
        header.push(format!("{l} s cut: recovered ms ({runs} runs)"));
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
    section.para(
        "\"—\" in a recovered column: that receiver delivered nothing within 20 s of the path \
         coming back in at least one of those runs.",
    );
    section.finish();
}
