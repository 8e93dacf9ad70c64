//! `--demo`: a local SRT sender, the network simulator between it and the relay, a
//! scripted sequence of troubles, and a report of how each was detected and recovered.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mirror_reconnect::backoff::Jitter;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::{EventType, ReconnectionEvent};
use mirror_reconnect::protocol::srt::{srt_target, SrtConnection, SrtConnector};
use mirror_reconnect::sim::NetworkSimulator;
use mirror_reconnect::ReconnectionConfig;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::{cli, Failure};

/// Packets per second the demo sender sends (1316-byte payloads: about 2.6 Mb/s).
const RATE: u64 = 250;
/// How long the whole scenario runs.
const RUN: Duration = Duration::from_secs(44);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Blackhole,
    BurstLoss,
    LatencySpike,
    SilentSender,
    SenderRestart,
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
        }
    }
}

const SCRIPT: [Trouble; 5] = [
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

/// The demo's encoder, run as a process of its own (`--demo-sender ADDR,EPOCH`) so that
/// a restart is a real one: killed, its socket closed by the system, started again.
/// It listens for SRT callers and sends numbered packets to the newest one; packet
/// numbers follow the clock from `epoch`, so numbers a restart skipped count as lost.
/// Lines on stdin switch it between `send` and `silent`; it exits when stdin closes.
pub(crate) async fn sender_main(addr: SocketAddr, epoch_ms: u64) -> Result<(), Failure> {
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
    let (conns_tx, mut conns) = mpsc::channel::<SrtConnection>(4);
    tokio::spawn(async move {
        let target = Target::new("demo", Protocol::Srt)
            .address(addr)
            .parameter("mode", "listener")
            .parameter("latency", "120");
        loop {
            match connector.clone().oneshot(target.clone()).await {
                Ok(conn) => {
                    if conns_tx.send(conn).await.is_err() {
                        return;
                    }
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    });
    let mut ticker = tokio::time::interval(Duration::from_micros(1_000_000 / RATE));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut current: Option<SrtConnection> = None;
    loop {
        tokio::select! {
            Some(conn) = conns.recv() => current = Some(conn),
            _ = ticker.tick() => {
                if *mode.borrow() != SenderMode::Sending {
                    continue;
                }
                let counter = unix_ms().saturating_sub(epoch_ms) * RATE / 1000;
                let mut payload = vec![0x47u8; 1316];
                payload[..8].copy_from_slice(&counter.to_be_bytes());
                if let Some(conn) = &mut current {
                    // A caller the relay gave up on: wait for its next call.
                    let send = conn.send(Bytes::from(payload));
                    if tokio::time::timeout(Duration::from_millis(200), send).await.map_or(true, |r| r.is_err()) {
                        current = None;
                    }
                }
            }
        }
    }
}

/// The sender process, and how to talk to it.
struct Sender {
    addr: SocketAddr,
    epoch_ms: u64,
    child: Option<tokio::process::Child>,
}

impl Sender {
    fn start(addr: SocketAddr, epoch_ms: u64) -> Result<Self, Failure> {
        let mut sender = Self {
            addr,
            epoch_ms,
            child: None,
        };
        sender.spawn()?;
        Ok(sender)
    }

    fn spawn(&mut self) -> Result<(), Failure> {
        let exe = std::env::current_exe().map_err(failure)?;
        let child = tokio::process::Command::new(exe)
            .arg("--demo-sender")
            .arg(format!("{},{}", self.addr, self.epoch_ms))
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

/// Drive the simulator and the sender through the script.
async fn conductor(
    sim: mirror_reconnect::sim::SimulatorHandle,
    mut sender: Sender,
    start: Instant,
) {
    for trouble in SCRIPT {
        tokio::time::sleep_until(start + trouble.at).await;
        match trouble.kind {
            Kind::Blackhole => sim.set_blackhole(true),
            Kind::BurstLoss => {
                let _ = sim.set_loss(0.2);
            }
            Kind::LatencySpike => sim.set_latency(Duration::from_millis(400)),
            Kind::SilentSender => sender.tell("silent").await,
            Kind::SenderRestart => sender.kill().await,
        }
        tokio::time::sleep_until(start + trouble.at + trouble.lasts).await;
        match trouble.kind {
            Kind::Blackhole => sim.set_blackhole(false),
            Kind::BurstLoss => {
                let _ = sim.set_loss(0.0);
            }
            Kind::LatencySpike => sim.set_latency(Duration::ZERO),
            Kind::SilentSender => sender.tell("send").await,
            Kind::SenderRestart => {
                if let Err(Failure::Runtime(e) | Failure::Usage(e)) = sender.spawn() {
                    eprintln!("{e}");
                }
            }
        }
    }
    // Keep the sender until the run ends.
    std::future::pending::<()>().await;
}

struct Row {
    trouble: Trouble,
    detected: Option<(Duration, String)>,
    recovery: Option<Duration>,
    attempts: usize,
    lost: u64,
}

pub(crate) async fn run(args: &cli::Args) -> Result<(), Failure> {
    let free = std::net::UdpSocket::bind("127.0.0.1:0").map_err(failure)?;
    let sender_addr = free.local_addr().map_err(failure)?;
    drop(free);

    let stop = CancellationToken::new();
    let epoch_ms = unix_ms();
    let sender = Sender::start(sender_addr, epoch_ms)?;

    let sim = NetworkSimulator::builder()
        .seed(2026)
        .start(sender_addr)
        .await
        .map_err(failure)?;

    let config = ReconnectionConfig {
        max_retries: 30,
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        jitter: Some(Jitter::Equal),
        check_interval: Duration::from_millis(500),
        first_packet_timeout: Duration::from_secs(2),
        attempt_timeout: Some(Duration::from_secs(2)),
        ..ReconnectionConfig::default()
    };

    let url = format!(
        "srt://{}?mode=caller&streamid=demo&latency=120",
        sim.local_addr()
    );
    let target = srt_target(&url).map_err(failure)?;
    let connector = SrtConnector::new();
    let packets = config
        .builder()
        .cancel_token(stop.clone())
        .probe(connector.probe())
        .build(connector, target);
    let events = packets.event_bus().clone();
    let log: Arc<Mutex<Vec<(Instant, ReconnectionEvent)>>> = Arc::default();
    {
        let log = Arc::clone(&log);
        events.on_event(move |e| {
            log.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((Instant::now(), e.clone()))
        });
    }
    if args.events_json {
        events.on_event(|e| {
            if let Ok(line) = serde_json::to_string(e) {
                eprintln!("{line}");
            }
        });
    }

    println!(
        "demo: SRT sender on {sender_addr}, network simulator on {}, relay calling through it",
        sim.local_addr()
    );
    println!(
        "demo: {} troubles over {} s; the report follows\n",
        SCRIPT.len(),
        RUN.as_secs()
    );
    let start = Instant::now();
    let first_number = unix_ms().saturating_sub(epoch_ms) * RATE / 1000;
    let conductor = tokio::spawn(conductor(sim.handle(), sender, start));
    {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RUN).await;
            stop.cancel();
        });
    }

    let mut received: Vec<(Instant, u64)> = Vec::with_capacity((RATE * RUN.as_secs()) as usize);
    let mut packets = std::pin::pin!(packets);
    let mut progress = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            item = packets.next() => match item {
                Some(Ok(packet)) => {
                    if packet.payload.len() >= 8 {
                        let mut n = [0u8; 8];
                        n.copy_from_slice(&packet.payload[..8]);
                        received.push((Instant::now(), u64::from_be_bytes(n)));
                    }
                }
                Some(Err(e)) => return Err(failure(format!("the stream gave up: {e}"))),
                None => break,
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
    // Ends the sender process with it.
    conductor.abort();
    let _ = conductor.await;

    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let rows = analyse(start, first_number, &received, &log);
    let report = render(&rows, &received, &stats);
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

/// Packet numbers follow the sender's clock: `first_number` is the number due at
/// `start`. Numbers due while the sender was silent or down on purpose were never sent,
/// and do not count as lost.
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
            let from = start + trouble.at;
            let healed = from + trouble.lasts;
            let until = SCRIPT
                .get(i + 1)
                .map_or(start + RUN, |next| start + next.at);
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
            // Recovery: from the trouble's end to the first packet after the last gap
            // the trouble caused.
            let recovery = if detected.is_some() {
                log.iter()
                    .filter(|(t, e)| {
                        in_window(*t) && e.event_type == EventType::ReconnectionSucceeded
                    })
                    .map(|(t, _)| *t)
                    .next_back()
                    .and_then(|ok| {
                        received
                            .iter()
                            .find(|(t, _)| *t >= ok)
                            .map(|(t, _)| t.saturating_duration_since(healed))
                    })
            } else {
                None
            };
            // Packets numbered between the last one before the trouble and the first
            // one after the window that never arrived.
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
            let lost = match (before, after) {
                (Some(b), Some(a)) if a > b => missing(b + 1..a),
                (Some(b), None) => numbers.last().map_or(0, |last| missing(b + 1..*last)),
                _ => 0,
            };
            Row {
                trouble: *trouble,
                detected,
                recovery,
                attempts,
                lost,
            }
        })
        .collect()
}

fn render(
    rows: &[Row],
    received: &[(Instant, u64)],
    stats: &mirror_reconnect::sim::SimulatorStats,
) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "| # | trouble injected | at | detected after | as | recovered in | attempts | packets lost |");
    let _ = writeln!(out, "|---|---|---|---|---|---|---|---|");
    for (i, row) in rows.iter().enumerate() {
        let (after, reason) = match &row.detected {
            Some((after, reason)) => (format!("{} ms", after.as_millis()), reason.clone()),
            None => ("not detected".to_owned(), "—".to_owned()),
        };
        let recovery = match (row.detected.is_some(), row.recovery) {
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
        "\n{} packets relayed. \"detected after\" runs from the start of the trouble; \"recovered in\" from its end (path back, sender back) to the first packet delivered after the reconnection; \"packets lost\" counts packets sent and never delivered (not those a silent or restarting sender never sent). A trouble SRT absorbs on its own (retransmission) is not a failure and is not reconnected.",
        received.len()
    );
    // The relay calls the sender through the simulator: the sender's media flows from
    // the simulator's upstream side to its client (the relay).
    for (what, d) in [
        ("sender → relay", &stats.to_client),
        ("relay → sender", &stats.to_upstream),
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
