//! `--demo`: a local SRT sender, the network simulator between it and the relay, a
//! scripted sequence of troubles, and a report of how each was detected and recovered.
//!
//! Three encoders (processes of their own) number their packets by one clock:
//!
//! ```text
//! primary encoder ──► simulator (every trouble) ──► primary source ─┐
//! backup encoder (from 40 s) ───────────────────► backup source  ──┴► failover ─► report
//! reference encoder ─► simulator (the latency spike only) ─► the same stack with
//!                                                             detection off ─► trouble 3's
//!                                                                              yardstick
//! ```
//!
//! The backup encoder starts only after trouble 5, so that troubles 1 to 5 show the
//! primary's own detection and recovery rather than a switch to the backup.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mirror_reconnect::backoff::Jitter;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::detect::FailureThresholds;
use mirror_reconnect::driver::{EventType, Events, ReconnectionEvent};
use mirror_reconnect::failover::{Failover, Source, SwitchReason};
use mirror_reconnect::protocol::srt::{srt_target, SrtConnection, SrtConnector};
use mirror_reconnect::sim::NetworkSimulator;
use mirror_reconnect::ReconnectionConfig;
use tokio::sync::{broadcast, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{cli, Failure};

/// Packets per second the demo sender sends (1316-byte payloads: about 2.6 Mb/s).
const RATE: u64 = 250;
/// How long the whole scenario runs.
const RUN: Duration = Duration::from_secs(58);
/// When the backup encoder starts (after trouble 5).
const BACKUP_ON: Duration = Duration::from_secs(40);
/// How long a returning primary must deliver before the stream switches back to it.
const SWITCH_BACK_AFTER: Duration = Duration::from_secs(3);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blackhole,
    BurstLoss,
    LatencySpike,
    SilentSender,
    SenderRestart,
    PrimaryDies,
    PrimaryBack,
}

#[derive(Debug, Clone, Copy)]
struct Trouble {
    kind: Kind,
    at: Duration,
    lasts: Duration,
}

impl Trouble {
    fn describe(&self) -> String {
        let secs = self.lasts.as_secs_f64();
        match self.kind {
            Kind::Blackhole => format!("path blackholed for {secs:.0} s"),
            Kind::BurstLoss => format!("20 % burst loss for {secs:.0} s"),
            Kind::LatencySpike => format!("+400 ms latency each way for {secs:.0} s"),
            Kind::SilentSender => format!("sender connected but silent for {secs:.0} s"),
            Kind::SenderRestart => format!("sender restarts (down {secs:.0} s)"),
            Kind::PrimaryDies => {
                "primary encoder killed for good; the backup takes over".to_owned()
            }
            Kind::PrimaryBack => format!(
                "a new primary encoder starts; back to it after {} s",
                SWITCH_BACK_AFTER.as_secs()
            ),
        }
    }
}

const SCRIPT: [Trouble; 7] = [
    Trouble {
        kind: Kind::Blackhole,
        at: Duration::from_secs(6),
        lasts: Duration::from_secs(2),
    },
    Trouble {
        kind: Kind::BurstLoss,
        at: Duration::from_secs(13),
        lasts: Duration::from_secs(3),
    },
    Trouble {
        kind: Kind::LatencySpike,
        at: Duration::from_secs(20),
        lasts: Duration::from_secs(3),
    },
    Trouble {
        kind: Kind::SilentSender,
        at: Duration::from_secs(28),
        lasts: Duration::from_secs(3),
    },
    Trouble {
        kind: Kind::SenderRestart,
        at: Duration::from_secs(36),
        lasts: Duration::from_secs(1),
    },
    Trouble {
        kind: Kind::PrimaryDies,
        at: Duration::from_secs(44),
        lasts: Duration::from_secs(6),
    },
    Trouble {
        kind: Kind::PrimaryBack,
        at: Duration::from_secs(50),
        lasts: Duration::ZERO,
    },
];

/// What the sender is told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SenderMode {
    Sending,
    Silent,
}

fn failure(e: impl std::fmt::Display) -> Failure {
    Failure::Runtime(format!("demo: {e}"))
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The demo's encoder, run as a process of its own (`--demo-sender ADDR,EPOCH,ID`) so
/// that a restart is a real one: killed, its socket closed by the system, started
/// again. It listens for SRT callers of stream `ID` and sends numbered packets to
/// each; packet
/// numbers follow the clock from `epoch`, so numbers a restart skipped count as lost.
/// Lines on stdin switch it between `send` and `silent`; it exits when stdin closes.
pub(crate) async fn sender_main(
    addr: SocketAddr,
    epoch_ms: u64,
    stream_id: &str,
) -> Result<(), Failure> {
    let (mode_tx, mode) = watch::channel(SenderMode::Sending);
    tokio::spawn(async move {
        use tokio::io::AsyncBufReadExt;
        let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let _ = mode_tx.send(if line.trim() == "silent" {
                SenderMode::Silent
            } else {
                SenderMode::Sending
            });
        }
        std::process::exit(0);
    });
    let connector = SrtConnector::new();
    connector.listen(addr).await.map_err(failure)?;
    // Every caller gets every packet, as a server with several readers sends them:
    // a replacement dialled beside a suspected connection (make-before-break) does
    // not take the stream from it.
    let (packets, _) = broadcast::channel::<Bytes>(64);
    let stream_id = stream_id.to_owned();
    {
        let packets = packets.clone();
        tokio::spawn(async move {
            let target = Target::new(stream_id, Protocol::Srt)
                .address(addr)
                .parameter("mode", "listener")
                .parameter("latency", "120");
            loop {
                match connector.clone().oneshot(target.clone()).await {
                    Ok(conn) => {
                        tokio::spawn(feed(conn, packets.subscribe()));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
    }
    // Numbers start from the clock (so that those a restart skipped count as lost)
    // and then follow the ticks, so that a tick a little late or early neither
    // repeats a number nor skips one.
    let started = Instant::now();
    let base = unix_ms().saturating_sub(epoch_ms) * RATE / 1000;
    let period = Duration::from_micros(1_000_000 / RATE);
    let mut ticker = tokio::time::interval_at(started, period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let at = ticker.tick().await;
        if *mode.borrow() != SenderMode::Sending {
            continue;
        }
        let ticks = (at - started).as_micros() / period.as_micros();
        let counter = base + ticks as u64;
        let mut payload = vec![0x47u8; 1316];
        payload[..8].copy_from_slice(&counter.to_be_bytes());
        // No caller yet is no error.
        let _ = packets.send(Bytes::from(payload));
    }
}

/// Send one caller every packet until it is gone: a send that fails, or one that
/// waits longer than SRT's peer-idle timeout (a caller that vanished). A caller that
/// falls behind skips what it missed, as a live source does.
async fn feed(mut conn: SrtConnection, mut packets: broadcast::Receiver<Bytes>) {
    loop {
        let payload = match packets.recv().await {
            Ok(payload) => payload,
            Err(broadcast::error::RecvError::Lagged(_)) => continue,
            Err(broadcast::error::RecvError::Closed) => return,
        };
        let send = conn.send(payload);
        if !matches!(
            tokio::time::timeout(Duration::from_secs(5), send).await,
            Ok(Ok(()))
        ) {
            return;
        }
    }
}

/// The sender process, and how to talk to it.
struct Sender {
    addr: SocketAddr,
    epoch_ms: u64,
    stream_id: &'static str,
    child: Option<tokio::process::Child>,
}

impl Sender {
    fn start(addr: SocketAddr, epoch_ms: u64, stream_id: &'static str) -> Result<Self, Failure> {
        let mut sender = Self::idle(addr, epoch_ms, stream_id);
        sender.spawn()?;
        Ok(sender)
    }

    /// One that is started later.
    fn idle(addr: SocketAddr, epoch_ms: u64, stream_id: &'static str) -> Self {
        Self {
            addr,
            epoch_ms,
            stream_id,
            child: None,
        }
    }

    fn spawn(&mut self) -> Result<(), Failure> {
        let exe = std::env::current_exe().map_err(failure)?;
        let child = tokio::process::Command::new(exe)
            .arg("--demo-sender")
            .arg(format!(
                "{},{},{}",
                self.addr, self.epoch_ms, self.stream_id
            ))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .map_err(failure)?;
        self.child = Some(child);
        Ok(())
    }

    async fn tell(&mut self, line: &str) {
        use tokio::io::AsyncWriteExt;
        if let Some(stdin) = self.child.as_mut().and_then(|c| c.stdin.as_mut()) {
            let _ = stdin.write_all(format!("{line}\n").as_bytes()).await;
        }
    }

    /// Kill it as a crash would (SIGKILL).
    async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }
}

/// The encoders of the demo.
struct Encoders {
    primary: Sender,
    backup: Sender,
    /// Feeds the detection-off stack (kept until the run ends).
    _reference: Sender,
}

fn spawn_or_say(sender: &mut Sender) {
    if let Err(Failure::Runtime(e) | Failure::Usage(e)) = sender.spawn() {
        eprintln!("{e}");
    }
}

/// Drive the simulators and the encoders through the script. The reference
/// simulator gets the latency spike only, at the same moments.
async fn conductor(
    sim: mirror_reconnect::sim::SimulatorHandle,
    reference: mirror_reconnect::sim::SimulatorHandle,
    mut encoders: Encoders,
    start: Instant,
) {
    let sender = &mut encoders.primary;
    for trouble in SCRIPT {
        if trouble.kind == Kind::PrimaryDies {
            tokio::time::sleep_until(start + BACKUP_ON).await;
            spawn_or_say(&mut encoders.backup);
        }
        tokio::time::sleep_until(start + trouble.at).await;
        match trouble.kind {
            Kind::Blackhole => sim.set_blackhole(true),
            Kind::BurstLoss => {
                let _ = sim.set_loss(0.2);
            }
            Kind::LatencySpike => {
                sim.set_latency(Duration::from_millis(400));
                reference.set_latency(Duration::from_millis(400));
            }
            Kind::SilentSender => sender.tell("silent").await,
            Kind::SenderRestart | Kind::PrimaryDies => sender.kill().await,
            Kind::PrimaryBack => spawn_or_say(sender),
        }
        tokio::time::sleep_until(start + trouble.at + trouble.lasts).await;
        match trouble.kind {
            Kind::Blackhole => sim.set_blackhole(false),
            Kind::BurstLoss => {
                let _ = sim.set_loss(0.0);
            }
            Kind::LatencySpike => {
                sim.set_latency(Duration::ZERO);
                reference.set_latency(Duration::ZERO);
            }
            Kind::SilentSender => sender.tell("send").await,
            Kind::SenderRestart => spawn_or_say(sender),
            Kind::PrimaryDies | Kind::PrimaryBack => {}
        }
    }
    // Keep the sender until the run ends.
    std::future::pending::<()>().await;
}

struct Row {
    trouble: Trouble,
    detected: Option<(Duration, String)>,
    recovery: Option<Duration>,
    /// Make-before-break kept the suspected connection: nothing was reconnected.
    kept: bool,
    attempts: usize,
    lost: u64,
}

/// A free loopback UDP address.
fn free_addr() -> Result<SocketAddr, Failure> {
    let free = std::net::UdpSocket::bind("127.0.0.1:0").map_err(failure)?;
    free.local_addr().map_err(failure)
}

fn demo_config() -> ReconnectionConfig {
    ReconnectionConfig {
        max_retries: 30,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        jitter: Some(Jitter::Equal),
        check_interval: Duration::from_millis(500),
        first_packet_timeout: Duration::from_secs(2),
        attempt_timeout: Some(Duration::from_secs(2)),
        ..ReconnectionConfig::default()
    }
}

/// The same stack with failure detection off: no silence detection and no
/// threshold that can trip, so only a connection that ends (SRT's own peer-idle
/// timeout) is replaced.
fn detection_off(config: &ReconnectionConfig) -> ReconnectionConfig {
    let mut config = config.clone();
    config.silence.enabled = false;
    config.health_thresholds = FailureThresholds {
        max_packet_loss: 1.0,
        max_latency: Duration::from_secs(86_400),
        max_error_rate: 1.0,
        timeout_duration: Duration::from_secs(86_400),
        min_packet_rate: 0.0,
        ..config.health_thresholds
    };
    config
}

/// One SRT caller stack to an encoder at `via`, and its event bus.
fn caller(
    config: &ReconnectionConfig,
    via: SocketAddr,
    stream_id: &str,
    stop: &CancellationToken,
) -> Result<(impl Source + 'static, Events), Failure> {
    let url = format!("srt://{via}?mode=caller&streamid={stream_id}&latency=120");
    let target = srt_target(&url).map_err(failure)?;
    let connector = SrtConnector::new();
    let packets = config
        .builder()
        .cancel_token(stop.clone())
        .probe(connector.probe())
        .build(connector, target);
    let events = packets.event_bus().clone();
    Ok((packets, events))
}

type Log = Arc<Mutex<Vec<(Instant, ReconnectionEvent)>>>;

fn record(events: &Events, log: &Log) {
    let log = Arc::clone(log);
    events.on_event(move |e| {
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((Instant::now(), e.clone()))
    });
}

/// The packet number a payload carries.
fn number(payload: &[u8]) -> Option<u64> {
    let n: [u8; 8] = payload.get(..8)?.try_into().ok()?;
    Some(u64::from_be_bytes(n))
}

pub(crate) async fn run(args: &cli::Args) -> Result<(), Failure> {
    let (primary_addr, backup_addr, reference_addr) = (free_addr()?, free_addr()?, free_addr()?);

    let stop = CancellationToken::new();
    let epoch_ms = unix_ms();
    let encoders = Encoders {
        primary: Sender::start(primary_addr, epoch_ms, "demo")?,
        backup: Sender::idle(backup_addr, epoch_ms, "demo-backup"),
        _reference: Sender::start(reference_addr, epoch_ms, "demo-reference")?,
    };

    let sim = NetworkSimulator::builder()
        .seed(2026)
        .start(primary_addr)
        .await
        .map_err(failure)?;
    let reference_sim = NetworkSimulator::builder()
        .seed(2027)
        .start(reference_addr)
        .await
        .map_err(failure)?;

    let config = demo_config();
    let (primary, primary_events) = caller(&config, sim.local_addr(), "demo", &stop)?;
    // The backup is dialled (and fails) until its encoder starts at 40 s: it is
    // retried for as long as the demo runs.
    let backup_config = ReconnectionConfig {
        max_retries: 1_000,
        ..config.clone()
    };
    let (backup, backup_events) = caller(&backup_config, backup_addr, "demo-backup", &stop)?;
    let (reference, reference_events) = caller(
        &detection_off(&config),
        reference_sim.local_addr(),
        "demo-reference",
        &stop,
    )?;
    let packets = Failover::new("demo")
        .source("primary", primary)
        .source("backup", backup)
        .switch_back_after(SWITCH_BACK_AFTER);

    let log: Log = Arc::default();
    record(&primary_events, &log);
    record(packets.event_bus(), &log);
    if args.events_json {
        for events in [
            &primary_events,
            &backup_events,
            &reference_events,
            packets.event_bus(),
        ] {
            events.on_event(|e| {
                if let Ok(line) = serde_json::to_string(e) {
                    eprintln!("{line}");
                }
            });
        }
    }

    println!(
        "demo: SRT encoder on {primary_addr}, network simulator on {}, relay calling through it",
        sim.local_addr()
    );
    println!(
        "demo: backup encoder on {backup_addr} from {} s; a second stack with detection off through a simulator on {} (latency spike only)",
        BACKUP_ON.as_secs(),
        reference_sim.local_addr()
    );
    println!(
        "demo: {} troubles over {} s; the report follows\n",
        SCRIPT.len(),
        RUN.as_secs()
    );
    let start = Instant::now();
    let first_number = unix_ms().saturating_sub(epoch_ms) * RATE / 1000;
    let conductor = tokio::spawn(conductor(
        sim.handle(),
        reference_sim.handle(),
        encoders,
        start,
    ));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RUN).await;
            stop.cancel();
        });
    }

    let capacity = (RATE * RUN.as_secs()) as usize;
    let mut received: Vec<(Instant, u64)> = Vec::with_capacity(capacity);
    let mut reference_received: Vec<(Instant, u64)> = Vec::with_capacity(capacity);
    let mut packets = std::pin::pin!(packets);
    let mut reference = std::pin::pin!(reference);
    let mut reference_done = false;
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            item = packets.next() => match item {
                Some(Ok(packet)) => {
                    if let Some(n) = number(&packet.payload) {
                        received.push((Instant::now(), n));
                    }
                }
                Some(Err(e)) => return Err(failure(format!("the stream gave up: {e}"))),
                None => break,
            },
            item = reference.next(), if !reference_done => match item {
                Some(Ok(packet)) => {
                    if let Some(n) = number(&packet.payload) {
                        reference_received.push((Instant::now(), n));
                    }
                }
                Some(Err(_)) | None => reference_done = true,
            },
            _ = progress.tick() => {
                if !args.events_json {
                    eprintln!("demo: {:>4.1} s, {} packets relayed", start.elapsed().as_secs_f64(), received.len());
                }
            }
        }
    }
    let stats = sim.stats();
    drop(sim);
    drop(reference_sim);
    // Ends the encoder processes with it.
    conductor.abort();
    let _ = conductor.await;

    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let rows = analyse(start, first_number, &received, &log);
    let spike = SCRIPT
        .iter()
        .position(|t| t.kind == Kind::LatencySpike)
        .map(|i| lost_in_window(start, first_number, i, &reference_received));
    let switch_back = switch_back_gap(&received, &log);
    let report = render(&rows, &received, &stats, spike, switch_back);
    println!("{report}");

    std::fs::create_dir_all(&args.report_dir).map_err(failure)?;
    let report_path = args.report_dir.join("report.md");
    std::fs::write(&report_path, &report).map_err(failure)?;
    let svg = args.report_dir.join("timeline.svg");
    timeline(&svg, start, &received, &log).map_err(failure)?;
    println!(
        "report: {}\ntimeline: {}",
        report_path.display(),
        svg.display()
    );
    Ok(())
}

/// The window of trouble `i`: from its start to the next one's (or the run's end).
fn window(start: Instant, i: usize) -> (Instant, Instant) {
    let from = start + SCRIPT[i].at;
    let until = SCRIPT
        .get(i + 1)
        .map_or(start + RUN, |next| start + next.at);
    (from, until)
}

/// Packets numbered between the last one delivered before trouble `i` and the first
/// one delivered after its window that never arrived. Packet numbers follow the
/// encoders' clock: `first_number` is the number due at `start`. Numbers due while
/// the only encoder was silent or down on purpose were never sent, and do not count.
fn lost_in_window(start: Instant, first_number: u64, i: usize, received: &[(Instant, u64)]) -> u64 {
    let trouble = SCRIPT[i];
    let (from, until) = window(start, i);
    let numbers: BTreeSet<u64> = received
        .iter()
        .filter(|(t, _)| *t >= from && *t < until)
        .map(|(_, n)| *n)
        .collect();
    let before = received
        .iter()
        .filter(|(t, _)| *t < from)
        .map(|(_, n)| *n)
        .max();
    let after = received
        .iter()
        .filter(|(t, _)| *t >= until)
        .map(|(_, n)| *n)
        .min();
    let unsent = match trouble.kind {
        Kind::SilentSender | Kind::SenderRestart => {
            let due = |d: Duration| first_number + d.as_millis() as u64 * RATE / 1000;
            due(trouble.at)..due(trouble.at + trouble.lasts)
        }
        _ => 0..0,
    };
    let missing = |range: std::ops::Range<u64>| {
        range
            .filter(|n| !numbers.contains(n) && !unsent.contains(n))
            .count() as u64
    };
    match (before, after) {
        (Some(b), Some(a)) if a > b => missing(b + 1..a),
        (Some(b), None) => numbers.last().map_or(0, |last| missing(b + 1..*last)),
        _ => 0,
    }
}

/// The first packet delivered at or after `at`.
fn first_delivered(received: &[(Instant, u64)], at: Instant) -> Option<Instant> {
    received.iter().map(|(t, _)| *t).find(|t| *t >= at)
}

/// The first switch of source in `from..until` for `reason`.
fn switch_in(
    log: &[(Instant, ReconnectionEvent)],
    from: Instant,
    until: Instant,
    reason: SwitchReason,
) -> Option<Instant> {
    log.iter()
        .find(|(t, e)| {
            *t >= from && *t < until && e.switch.as_ref().is_some_and(|s| s.reason == reason)
        })
        .map(|(t, _)| *t)
}

/// When the stream switched back to the primary, and the longest time without a
/// packet in the second either side of it.
fn switch_back_gap(
    received: &[(Instant, u64)],
    log: &[(Instant, ReconnectionEvent)],
) -> Option<(Instant, Duration)> {
    let (at, _) = log.iter().find(|(_, e)| {
        e.switch
            .as_ref()
            .is_some_and(|s| s.reason == SwitchReason::SwitchBack)
    })?;
    let around = Duration::from_secs(1);
    let times: Vec<Instant> = received
        .iter()
        .map(|(t, _)| *t)
        .filter(|t| *t + around >= *at && *t <= *at + around)
        .collect();
    let gap = times.windows(2).map(|w| w[1] - w[0]).max()?;
    Some((*at, gap))
}

fn analyse(
    start: Instant,
    first_number: u64,
    received: &[(Instant, u64)],
    log: &[(Instant, ReconnectionEvent)],
) -> Vec<Row> {
    SCRIPT
        .iter()
        .enumerate()
        .map(|(i, trouble)| {
            let (from, until) = window(start, i);
            let healed = from + trouble.lasts;
            let in_window = |t: Instant| t >= from && t < until;
            let detected = log
                .iter()
                .find(|(t, e)| in_window(*t) && e.event_type == EventType::FailureDetected)
                .map(|(t, e)| {
                    let reason = e.reason.map_or("?", |r| r.as_str()).to_owned();
                    (*t - from, reason)
                });
            let attempts = log
                .iter()
                .filter(|(t, e)| in_window(*t) && e.event_type == EventType::ReconnectionAttempt)
                .count();
            let recovery = match trouble.kind {
                // From the kill to the backup's first packet in the output.
                Kind::PrimaryDies => switch_in(log, from, until, SwitchReason::Failed)
                    .and_then(|at| first_delivered(received, at))
                    .map(|t| t - from),
                // From the new encoder's start to its first packet in the output.
                Kind::PrimaryBack => switch_in(log, from, until, SwitchReason::SwitchBack)
                    .and_then(|at| first_delivered(received, at))
                    .map(|t| t - from),
                // From the trouble's end to the first packet after the last gap it
                // caused.
                _ if detected.is_some() => log
                    .iter()
                    .filter(|(t, e)| {
                        in_window(*t) && e.event_type == EventType::ReconnectionSucceeded
                    })
                    .map(|(t, _)| *t)
                    .next_back()
                    .and_then(|ok| first_delivered(received, ok))
                    .map(|t| t.saturating_duration_since(healed)),
                _ => None,
            };
            // The suspicion ended with the connection kept, and not replaced after.
            let kept = !matches!(trouble.kind, Kind::PrimaryDies | Kind::PrimaryBack)
                && log
                    .iter()
                    .rfind(|(t, e)| {
                        in_window(*t)
                            && matches!(
                                e.event_type,
                                EventType::ReconnectionSucceeded | EventType::FailureCleared
                            )
                    })
                    .is_some_and(|(_, e)| e.event_type == EventType::FailureCleared);
            Row {
                trouble: *trouble,
                detected,
                recovery: recovery.filter(|_| !kept),
                kept,
                attempts,
                lost: lost_in_window(start, first_number, i, received),
            }
        })
        .collect()
}

fn render(
    rows: &[Row],
    received: &[(Instant, u64)],
    stats: &mirror_reconnect::sim::SimulatorStats,
    spike_detection_off: Option<u64>,
    switch_back: Option<(Instant, Duration)>,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| # | trouble injected | at | detected after | as | recovered in | attempts | packets lost |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let (after, reason) = match (&row.detected, row.trouble.kind) {
            (_, Kind::PrimaryBack) => ("—".to_owned(), "switch back".to_owned()),
            (Some((after, reason)), _) => (format!("{} ms", after.as_millis()), reason.clone()),
            (None, _) => ("not detected".to_owned(), "—".to_owned()),
        };
        let recovery = match (
            row.detected.is_some() || row.trouble.kind == Kind::PrimaryBack,
            row.recovery,
        ) {
            (true, _) if row.kept => "connection kept".to_owned(),
            (true, Some(r)) => format!("{} ms", r.as_millis()),
            (true, None) => "not recovered".to_owned(),
            (false, _) => "—".to_owned(),
        };
        let _ = writeln!(
            out,
            "| {} | {} | {:.0} s | {after} | {reason} | {recovery} | {} | {} |",
            i + 1,
            row.trouble.describe(),
            row.trouble.at.as_secs_f64(),
            row.attempts,
            row.lost
        );
    }
    let _ = writeln!(
        out,
        "\n{} packets relayed. \"detected after\" runs from the start of the trouble; \"recovered in\" from its end (path back, sender back) to the first packet delivered after the reconnection (\"connection kept\": make-before-break kept the suspected connection, which delivered again before its replacement), for trouble 6 from the kill to the backup's first packet, for trouble 7 from the new encoder's start to its first packet after the switch back; \"packets lost\" counts packets sent and never delivered (not those a silent or restarting sender never sent). A trouble SRT absorbs on its own (retransmission) is not a failure and is not reconnected.",
        received.len()
    );
    let find = |kind: Kind| rows.iter().find(|r| r.trouble.kind == kind);
    if let (Some(spike), Some(off)) = (find(Kind::LatencySpike), spike_detection_off) {
        let _ = writeln!(
            out,
            "\nTrouble 3, make-before-break: the suspected connection is kept while its replacement is dialled. The same stack with detection off, through a simulator of its own with the same spike at the same moments, lost {off} packets; this one lost {} ({}).",
            spike.lost,
            if spike.lost <= off { "no more" } else { "more" }
        );
    }
    if let Some(dies) = find(Kind::PrimaryDies) {
        let detection = dies.detected.as_ref().map(|(d, _)| *d);
        let _ = writeln!(
            out,
            "Trouble 6, backup source: the backup's first packet came {} after the kill (the failure detected after {}; target: at most 300 ms).",
            dies.recovery.map_or("never".to_owned(), |r| format!("{} ms", r.as_millis())),
            detection.map_or("—".to_owned(), |d| format!("{} ms", d.as_millis())),
        );
        if let Some((_, gap)) = switch_back {
            let _ = writeln!(
                out,
                "Trouble 7, switch back: the longest gap in the output within 1 s of the switch was {} ms (target: at most one detection time, {}).",
                gap.as_millis(),
                detection.map_or("—".to_owned(), |d| format!("{} ms", d.as_millis())),
            );
        }
    }
    // The relay calls the sender through the simulator: the sender's media flows from
    // the simulator's upstream side to its client (the relay).
    for (what, d) in [
        ("primary encoder → relay", &stats.to_client),
        ("relay → primary encoder", &stats.to_upstream),
    ] {
        let _ = writeln!(
            out,
            "Network simulator, {what}: {} packets in, {} forwarded, {} dropped by loss, {} by blackhole, {} delayed.",
            d.packets_in,
            d.forwarded,
            d.dropped_loss + d.dropped_burst,
            d.dropped_blackhole + d.dropped_outage,
            d.delayed
        );
    }
    out
}

fn timeline(
    path: &std::path::Path,
    start: Instant,
    received: &[(Instant, u64)],
    log: &[(Instant, ReconnectionEvent)],
) -> Result<(), Box<dyn std::error::Error>> {
    use plotters::prelude::*;

    let bin = 0.2;
    let bins = (RUN.as_secs_f64() / bin).ceil() as usize;
    let mut rate = vec![0u32; bins];
    for (t, _) in received {
        let i = ((*t - start).as_secs_f64() / bin) as usize;
        if i < bins {
            rate[i] += 1;
        }
    }
    let top = (RATE as f64 * 1.6).max(rate.iter().copied().max().unwrap_or(0) as f64 / bin * 1.1);

    let root = SVGBackend::new(path, (1200, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "relay demo: packets delivered per second",
            ("sans-serif", 20),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..RUN.as_secs_f64(), 0f64..top)?;
    chart
        .configure_mesh()
        .x_desc("seconds")
        .y_desc("packets/s")
        .draw()?;

    for trouble in SCRIPT {
        let (a, b) = (
            trouble.at.as_secs_f64(),
            (trouble.at + trouble.lasts).as_secs_f64(),
        );
        chart.draw_series(std::iter::once(Rectangle::new(
            [(a, 0.0), (b, top)],
            RGBColor(255, 200, 120).mix(0.35).filled(),
        )))?;
        chart.draw_series(std::iter::once(Text::new(
            trouble.describe(),
            (a, top * 0.97),
            ("sans-serif", 11),
        )))?;
    }
    chart
        .draw_series(LineSeries::new(
            rate.iter()
                .enumerate()
                .map(|(i, n)| (i as f64 * bin, *n as f64 / bin)),
            &BLUE,
        ))?
        .label("packets/s")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
    for (kind, color, label) in [
        (EventType::FailureDetected, RED, "failure_detected"),
        (
            EventType::ReconnectionSucceeded,
            GREEN,
            "reconnection_succeeded",
        ),
        (EventType::SourceSwitched, MAGENTA, "source_switched"),
    ] {
        let marks: Vec<f64> = log
            .iter()
            .filter(|(_, e)| e.event_type == kind)
            .map(|(t, _)| (*t - start).as_secs_f64())
            .collect();
        chart
            .draw_series(marks.iter().map(|x| {
                PathElement::new(vec![(*x, 0.0), (*x, top * 0.9)], color.stroke_width(2))
            }))?
            .label(label)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.8))
        .position(SeriesLabelPosition::LowerRight)
        .draw()?;
    root.present()?;
    Ok(())
}
