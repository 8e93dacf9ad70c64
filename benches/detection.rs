//! How fast the failure detector notices a silent source, how often it cries wolf, and
//! how that compares with SRT's own peer-idle timeout.
//!
//! - **Detection latency** (simulated, tokio paused time): a `FailureDetectLayer` over
//!   a `HealthLayer` over an in-process connection, fed at 30, 300 and 3 000 packets/s
//!   with ±20 % jitter on each packet's time and 5 % random loss (seeded). Each of
//!   [`RUNS`] runs per rate streams for a random warm-up of 3 to 10 s and then stops;
//!   the figure is the time from the last packet delivered to the failure. It is also
//!   given in typical inter-packet gaps: the median gap between delivered packets,
//!   measured in the same runs.
//! - **False alarms** (simulated): one simulated hour per rate of the same streams,
//!   and an hour of bursty VBR video (30 fps, frames of 3–12 packets arriving
//!   together, a 40-packet keyframe every 2 s, 5 % loss). Every failure raised while
//!   the source is still sending is a false alarm.
//! - **Against SRT's peer-idle timeout** (real time): an srt-tokio caller sends 300
//!   packets/s through the `NetworkSimulator` on loopback to an `SrtConnector` listener
//!   wrapped in the detector; the path is blackholed and both clocks are read on the
//!   same connection: when our detector fails it, and when SRT itself ends it.
//!
//! `max_packet_loss` is raised to 100 % everywhere so that only the silence detector
//! (and the default fixed thresholds it sits beside) is on trial: 5 % loss would
//! otherwise trip the default 5 % loss limit.
//!
//! Run with `cargo bench --all-features --bench detection`; the results are written to
//! `target/bench-results/detection.md`. `BENCH_QUICK=1` makes 10 silences per rate,
//! simulated minutes instead of hours and one SRT cut, to check that it works.

#[path = "common/figures.rs"]
mod figures;
#[path = "common/quick.rs"]
mod quick;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use figures::{dur, median, progress, quantile, ratio, secs, sig3, Section};
use futures_util::{SinkExt, StreamExt};
use mirror_reconnect::connection::{
    channel, ChannelConnection, ChannelSender, ConnectionError, ConnectionState, Packet, Protocol,
    Sequence, Target,
};
use mirror_reconnect::detect::{
    Detected, FailureDetectLayer, FailureThresholds, SilenceConfig, SilenceDetector,
};
use mirror_reconnect::health::{HealthLayer, Monitored};
use mirror_reconnect::protocol::srt::SrtConnector;
use mirror_reconnect::sim::NetworkSimulator;
use mirror_reconnect::BoxError;
use srt_tokio::SrtSocket;
use tokio::time::{sleep_until, timeout, timeout_at, Instant};
use tower::{ServiceBuilder, ServiceExt};

/// Silences per rate.
fn runs() -> usize {
    quick::pick(200, 10)
}
/// Packet rates of the smooth streams.
const RATES: [f64; 3] = [30.0, 300.0, 3_000.0];
/// The rate (the last of [`RATES`]) at which lower floors are tried.
const SWEEP_RATE: f64 = RATES[2];
/// Loss of every stream.
const LOSS: f64 = 0.05;
/// Each smooth packet's time moves by up to this share of a gap, either way.
const JITTER: f64 = 0.2;
/// The warm-up before each silence is drawn from this range, in seconds.
const WARMUP_SECS: (f64, f64) = (3.0, 10.0);
/// The target: the median detection within this many typical gaps.
const TARGET_GAPS: f64 = 10.0;
/// Simulated length of each false-alarm run.
fn long_run_length() -> Duration {
    quick::pick(Duration::from_secs(3_600), Duration::from_secs(60))
}
/// Repeats of the real-time SRT comparison.
fn srt_repeats() -> usize {
    quick::pick(5, 1)
}
/// Floors tried at [`SWEEP_RATE`] besides the default.
const FLOORS_MS: [u64; 4] = [1, 2, 3, 5];
/// Packets per second of the SRT stream.
const SRT_RATE: f64 = 300.0;
/// How often the detector checks its thresholds.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);
/// How long the SRT stream runs before the cut.
const SRT_WARM: Duration = Duration::from_secs(3);
/// How long after the cut each side is given to end the connection.
const SRT_LIMIT: Duration = Duration::from_secs(20);
/// The bursty VBR source: frames per second, packets per frame, a keyframe's packets
/// and how many frames apart keyframes are, and how late a frame may be.
const VBR_FPS: u32 = 30;
const VBR_FRAME_PACKETS: std::ops::RangeInclusive<u32> = 3..=12;
const VBR_KEYFRAME_PACKETS: u32 = 40;
const VBR_KEYFRAME_EVERY: u32 = 60;
const VBR_LATE: Duration = Duration::from_millis(6);

static PAYLOAD: [u8; 1316] = [0x47; 1316];

/// A duration in words: "1 h", "1 min", "30 s".
fn span(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3_600 && s % 3_600 == 0 {
        format!("{} h", s / 3_600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{} min", s / 60)
    } else {
        secs(d.as_secs_f64())
    }
}

/// "±20 % jitter, 5 % loss".
fn smooth_traits() -> String {
    format!(
        "±{:.0} % jitter, {:.0} % loss",
        JITTER * 100.0,
        LOSS * 100.0
    )
}

type Watched = Detected<Monitored<ChannelConnection>>;

/// The default thresholds, with the loss limit out of the way.
fn thresholds() -> FailureThresholds {
    FailureThresholds {
        max_packet_loss: 1.0,
        ..FailureThresholds::default()
    }
}

/// A fresh connection watched by the stack under test, and its feeding end.
async fn watched(silence: SilenceConfig) -> (ChannelSender, Watched) {
    let (tx, conn) = channel(ConnectionState::new("bench", Protocol::InProcess), 1024);
    let mut conn = Some(conn);
    let stack = ServiceBuilder::new()
        .layer(
            FailureDetectLayer::new(thresholds())
                .check_interval(CHECK_INTERVAL)
                .silence(silence),
        )
        .layer(HealthLayer::new())
        .service(tower::service_fn(move |_: ()| {
            let conn = conn.take().expect("one connection per stack");
            async move { Ok::<_, std::io::Error>(conn) }
        }));
    let conn = stack
        .oneshot(())
        .await
        .expect("the in-process connect succeeds");
    (tx, conn)
}

/// One packet the source schedules: when, its number, and whether it survives the loss.
#[derive(Debug, Clone, Copy)]
struct Planned {
    at: Instant,
    seq: u16,
    delivered: bool,
}

/// What a source sends, packet by packet, in time order.
trait Source {
    fn next(&mut self) -> Planned;
}

/// A constant-rate stream: packet k is due at `start + k · gap`, moved by up to
/// ±[`JITTER`] of a gap, and lost with probability `loss`.
struct Smooth {
    rng: fastrand::Rng,
    start: Instant,
    gap: Duration,
    k: u32,
    loss: f64,
}

impl Smooth {
    fn new(rate: f64, loss: f64, seed: u64) -> Self {
        let gap = Duration::from_secs_f64(1.0 / rate);
        Self {
            rng: fastrand::Rng::with_seed(seed),
            // One gap in, so the earliest jittered packet is not in the past.
            start: Instant::now() + gap,
            gap,
            k: 0,
            loss,
        }
    }
}

impl Source for Smooth {
    fn next(&mut self) -> Planned {
        let at = self.start + self.gap * self.k + self.gap.mul_f64(2.0 * JITTER * self.rng.f64())
            - self.gap.mul_f64(JITTER);
        let planned = Planned {
            at,
            seq: self.k as u16,
            delivered: self.rng.f64() >= self.loss,
        };
        self.k += 1;
        planned
    }
}

/// Bursty VBR video ([`VBR_FPS`] frames/s), each frame's packets arriving together,
/// a keyframe every [`VBR_KEYFRAME_EVERY`] frames, frame times late by up to
/// [`VBR_LATE`], packets lost at random.
struct Vbr {
    rng: fastrand::Rng,
    start: Instant,
    frame: u32,
    left_in_frame: u32,
    frame_at: Instant,
    seq: u16,
    loss: f64,
}

impl Vbr {
    fn new(loss: f64, seed: u64) -> Self {
        let start = Instant::now();
        Self {
            rng: fastrand::Rng::with_seed(seed),
            start,
            frame: 0,
            left_in_frame: 0,
            frame_at: start,
            seq: 0,
            loss,
        }
    }
}

impl Source for Vbr {
    fn next(&mut self) -> Planned {
        if self.left_in_frame == 0 {
            self.frame += 1;
            let nominal =
                self.start + Duration::from_secs_f64(f64::from(self.frame) / f64::from(VBR_FPS));
            self.frame_at =
                nominal + Duration::from_micros(self.rng.u64(0..VBR_LATE.as_micros() as u64));
            self.left_in_frame = if self.frame % VBR_KEYFRAME_EVERY == 0 {
                VBR_KEYFRAME_PACKETS
            } else {
                self.rng.u32(VBR_FRAME_PACKETS)
            };
        }
        self.left_in_frame -= 1;
        self.seq = self.seq.wrapping_add(1);
        Planned {
            at: self.frame_at,
            seq: self.seq,
            delivered: self.rng.f64() >= self.loss,
        }
    }
}

/// A packet stamped as arriving at `at`.
///
/// tokio's timers (paused or not) wake on whole milliseconds, so a 3 000 packets/s
/// source wakes once a millisecond and hands over the packets that came due since:
/// each carries the time it was due, as a socket read in batches would, and the
/// detector learns the stream's true rhythm from those stamps.
fn packet(seq: u16, at: Instant) -> Packet {
    Packet::new(Bytes::from_static(&PAYLOAD), at).with_sequence(Sequence::rtp(seq))
}

/// What happened on a watched stream.
#[derive(Debug, Default)]
struct Outcome {
    /// Failures raised while the source was still sending: when (since that
    /// connection started), after how many packets on it, and what the detector said.
    false_alarms: Vec<(Duration, u64, String)>,
    /// From the last packet delivered to the failure, once the source stopped.
    detected_after: Option<Duration>,
    /// What the detector said then.
    detected_details: String,
    /// The adaptive limit it had learned when the source stopped.
    learned_limit: Option<Duration>,
    /// The limit learned from the rhythm alone (no floor) by then.
    rhythm_limit: Option<Duration>,
    /// Packets delivered.
    packets: u64,
}

/// Feed a watched connection from `source` until `stop_at`, then go silent and wait
/// (at most a minute) for the failure. Gaps between delivered packets are pushed to
/// `gaps` (in seconds) when given.
async fn feed_and_watch(
    source: &mut impl Source,
    silence: SilenceConfig,
    stop_at: Instant,
    mut gaps: Option<&mut Vec<f32>>,
) -> Outcome {
    let mut connected_at = Instant::now();
    let mut on_this = 0u64;
    let (mut tx, mut conn) = watched(silence).await;
    let unfloored = SilenceConfig {
        floor: Duration::ZERO,
        ..silence
    };
    let mut shadow = SilenceDetector::new(unfloored);
    let mut out = Outcome::default();
    let mut last: Option<Instant> = None;
    let mut planned = source.next();
    let mut sending = planned.at < stop_at;
    let mut wake = Box::pin(sleep_until(planned.at));
    loop {
        // Packets due by now are handed over before the connection is polled, as
        // packets that reached a socket are read before its detector's timer is judged.
        tokio::select! {
            biased;
            () = &mut wake => {
                if !sending {
                    break; // no failure within the minute
                }
                let now = Instant::now();
                while planned.at <= now {
                    if planned.delivered {
                        tx.send(packet(planned.seq, planned.at)).await.expect("the connection is up");
                    }
                    planned = source.next();
                }
                if planned.at < stop_at {
                    wake.as_mut().reset(planned.at);
                } else {
                    sending = false;
                    out.learned_limit = Some(conn.silence_detector().limit());
                    out.rhythm_limit = Some(shadow.limit());
                    wake.as_mut().reset(now + Duration::from_secs(60));
                }
            }
            item = conn.next() => match item {
                Some(Ok(p)) => {
                    if let (Some(gaps), Some(last)) = (gaps.as_deref_mut(), last) {
                        gaps.push((p.arrival - last).as_secs_f32());
                    }
                    last = Some(p.arrival);
                    shadow.observe(p.arrival);
                    out.packets += 1;
                    on_this += 1;
                }
                // A verdict: silence is a suspicion (the driver replaces the connection
                // unless make-before-break keeps it while a replacement is dialled).
                Some(Err(ConnectionError::Failed(event) | ConnectionError::Suspected(event))) => {
                    let now = Instant::now();
                    if sending {
                        out.false_alarms.push((now - connected_at, on_this, event.details));
                        (tx, conn) = watched(silence).await;
                        (connected_at, on_this, last) = (now, 0, None);
                        shadow = SilenceDetector::new(unfloored);
                    } else {
                        out.detected_after = last.map(|l| now - l);
                        out.detected_details = event.details;
                        break;
                    }
                }
                // A cleared suspicion or a bad packet: the stream goes on.
                Some(Err(other)) if !other.is_fatal() => {}
                Some(Err(other)) => panic!("unexpected error item: {other}"),
                None => panic!("the connection ended while its sender lives"),
            },
        }
    }
    drop(tx);
    out
}

fn paused_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused runtime")
}

/// The latency figures of one configuration.
struct LatencyRow {
    label: String,
    nominal_gap: f64,
    typical_gap: f64,
    latencies: Vec<f64>,
    limits: Vec<f64>,
    rhythm_limits: Vec<f64>,
    false_alarms: Vec<(Duration, u64, String)>,
    undetected: usize,
}

fn latency_runs(label: &str, rate: f64, silence: SilenceConfig, salt: u64) -> LatencyRow {
    let rt = paused_runtime();
    let mut gaps: Vec<f32> = Vec::new();
    let mut row = LatencyRow {
        label: label.to_owned(),
        nominal_gap: 1.0 / rate,
        typical_gap: f64::NAN,
        latencies: Vec::with_capacity(runs()),
        limits: Vec::with_capacity(runs()),
        rhythm_limits: Vec::with_capacity(runs()),
        false_alarms: Vec::new(),
        undetected: 0,
    };
    rt.block_on(async {
        let mut warmups = fastrand::Rng::with_seed(salt);
        for run in 0..runs() {
            let (lo, hi) = WARMUP_SECS;
            let warmup = Duration::from_secs_f64(lo + (hi - lo) * warmups.f64());
            let mut source = Smooth::new(rate, LOSS, salt * 1_000 + run as u64);
            let stop_at = Instant::now() + warmup;
            let out = feed_and_watch(&mut source, silence, stop_at, Some(&mut gaps)).await;
            row.false_alarms.extend(out.false_alarms);
            match out.detected_after {
                Some(d) => row.latencies.push(d.as_secs_f64()),
                None => row.undetected += 1,
            }
            if let Some(limit) = out.rhythm_limit {
                row.rhythm_limits.push(limit.as_secs_f64());
            }
            if let Some(limit) = out.learned_limit {
                row.limits.push(limit.as_secs_f64());
            }
        }
    });
    let gaps: Vec<f64> = gaps.into_iter().map(f64::from).collect();
    row.typical_gap = median(&gaps);
    row
}

/// The outcome of a long run, and how many packets it delivered.
fn long_run(source: &mut dyn FnMut() -> Box<dyn Source>) -> Outcome {
    let rt = paused_runtime();
    rt.block_on(async {
        let mut source = source();
        let stop_at = Instant::now() + long_run_length();
        feed_and_watch(&mut source, SilenceConfig::default(), stop_at, None).await
    })
}

impl Source for Box<dyn Source> {
    fn next(&mut self) -> Planned {
        (**self).next()
    }
}

/// One blackhole on a real SRT connection: how long after the cut our detector failed
/// the connection and SRT itself ended it (`None`: not within [`SRT_LIMIT`]), with what
/// each said, and the connection's SRT settings.
struct SrtCut {
    latency: Duration,
    peer_idle_timeout: Duration,
    ours: Duration,
    /// From the last packet delivered to our failure.
    ours_silence: Duration,
    ours_details: String,
    srt: Option<Duration>,
    srt_details: String,
    packets: u64,
}

async fn srt_cut(seed: u64) -> Result<SrtCut, BoxError> {
    let connector = SrtConnector::new();
    let addr = connector.listen("127.0.0.1:0".parse()?).await?;
    let sim = NetworkSimulator::builder().seed(seed).start(addr).await?;
    let via = sim.local_addr();
    let stream_id = format!("idle{seed}");

    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let (stop, stream_id) = (Arc::clone(&stop), stream_id.clone());
        async move {
            let mut socket = SrtSocket::builder().call(via, Some(&stream_id)).await?;
            let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / SRT_RATE));
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let item = (std::time::Instant::now(), Bytes::from_static(&PAYLOAD));
                if socket.send(item).await.is_err() {
                    break;
                }
            }
            Ok::<_, std::io::Error>(())
        }
    });

    let stack = ServiceBuilder::new()
        .layer(FailureDetectLayer::new(thresholds()).check_interval(CHECK_INTERVAL))
        .layer(HealthLayer::new())
        .service(connector.clone());
    let target = Target::new(stream_id, Protocol::Srt)
        .address(addr)
        .parameter("mode", "listener");
    let mut conn = timeout(Duration::from_secs(10), stack.oneshot(target)).await??;

    // Let the detector learn the stream's rhythm.
    let mut packets = 0u64;
    let warm_end = Instant::now() + SRT_WARM;
    while let Ok(item) = timeout_at(warm_end, conn.next()).await {
        match item {
            Some(Ok(_)) => packets += 1,
            other => return Err(format!("the stream broke while warming up: {other:?}").into()),
        }
    }

    sim.set_blackhole(true);
    let cut = Instant::now();
    let mut last = cut;
    let (ours, ours_silence, ours_details) = loop {
        match timeout(SRT_LIMIT, conn.next()).await {
            Ok(Some(Ok(p))) => {
                packets += 1;
                last = last.max(p.arrival);
            }
            Ok(Some(Err(ConnectionError::Failed(event) | ConnectionError::Suspected(event)))) => {
                break (cut.elapsed(), last.elapsed(), event.details)
            }
            other => return Err(format!("no failure from our detector: {other:?}").into()),
        }
    };
    // The same SRT connection, read directly, until srt-tokio ends it.
    let srt_conn = conn.get_mut().get_mut();
    let (latency, peer_idle_timeout) = (srt_conn.latency(), srt_conn.peer_idle_timeout());
    let (srt, srt_details) = loop {
        match timeout_at(cut + SRT_LIMIT, srt_conn.next()).await {
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(e))) => break (Some(cut.elapsed()), e.to_string()),
            Ok(None) => break (Some(cut.elapsed()), "closed".to_owned()),
            Err(_) => break (None, format!("still open after {SRT_LIMIT:?}")),
        }
    };
    stop.store(true, Ordering::Relaxed);
    sender.abort();
    Ok(SrtCut {
        latency,
        peer_idle_timeout,
        ours,
        ours_silence,
        ours_details,
        srt,
        srt_details,
        packets,
    })
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument (as criterion takes) is ignored.
    let mut section = Section::new("Detection: time to notice a silent source, false alarms");
    if let Some(notice) = quick::notice() {
        section.para(&notice);
    }
    let silence = SilenceConfig::default();
    let runs = runs();
    let long = span(long_run_length());
    section.para(&format!(
        "Stack under test: `FailureDetectLayer` (default `SilenceConfig`: phi threshold {}, \
         max-gap margin {}, floor {}, ceiling {}, `min_samples` {}; default thresholds with \
         {} checks) over `HealthLayer` over an in-process `connection::channel`. \
         `max_packet_loss` is raised to {:.0} % so that only the silence detector is on trial \
         (the {:.0} % loss of the streams would otherwise {} the default {:.0} % limit).",
        sig3(silence.phi_threshold),
        sig3(silence.max_gap_margin),
        dur(silence.floor),
        dur(silence.ceiling),
        silence.min_samples,
        dur(CHECK_INTERVAL),
        thresholds().max_packet_loss * 100.0,
        LOSS * 100.0,
        if LOSS >= FailureThresholds::default().max_packet_loss {
            "trip"
        } else {
            "come close to"
        },
        FailureThresholds::default().max_packet_loss * 100.0,
    ));

    // Detection latency.
    let mut rows = Vec::new();
    for (i, rate) in RATES.into_iter().enumerate() {
        progress(&format!("latency: {rate} packets/s, {runs} silences"));
        rows.push(latency_runs(
            &format!("{rate} packets/s"),
            rate,
            SilenceConfig::default(),
            i as u64 + 1,
        ));
    }
    let sweep_seed = RATES.len() as u64;
    for floor_ms in FLOORS_MS {
        progress(&format!(
            "latency: {SWEEP_RATE} packets/s with a {floor_ms} ms floor"
        ));
        let silence = SilenceConfig {
            floor: Duration::from_millis(floor_ms),
            ..SilenceConfig::default()
        };
        rows.push(latency_runs(
            &format!("{SWEEP_RATE} packets/s, floor {floor_ms} ms"),
            SWEEP_RATE,
            silence,
            sweep_seed,
        ));
    }

    section
        .heading("Time from the source going silent to the failure (simulated, tokio paused time)");
    section.para(&format!(
        "{runs} silences per rate, each after a random warm-up of {}–{} of a stream with \
         ±{:.0} % jitter on each packet's time and {:.0} % random loss (seeded). Measured from \
         the last packet delivered to the failure. \"Typical gap\" is the median gap between \
         delivered packets in the same runs; the latency divided by it is the figure in gaps \
         (target: median under {TARGET_GAPS} gaps). \"Limit\" is the median limit the \
         detector had reached when the source stopped; \"rhythm-only limit\" the same without \
         the floor (a second `SilenceDetector` with `floor: 0` fed the same packets). The last \
         rows lower `SilenceConfig::floor` at {SWEEP_RATE} packets/s; the same seeds as the \
         default row.",
        secs(WARMUP_SECS.0),
        secs(WARMUP_SECS.1),
        JITTER * 100.0,
        LOSS * 100.0,
    ));
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let med = median(&r.latencies);
            let p99 = quantile(&r.latencies, 0.99);
            vec![
                r.label.clone(),
                format!("{} ({})", secs(r.typical_gap), secs(r.nominal_gap)),
                secs(med),
                secs(p99),
                secs(quantile(&r.latencies, 1.0)),
                sig3(med / r.typical_gap),
                sig3(p99 / r.typical_gap),
                secs(median(&r.limits)),
                secs(median(&r.rhythm_limits)),
                format!("{}", r.false_alarms.len()),
                if med / r.typical_gap < TARGET_GAPS {
                    "met".to_owned()
                } else {
                    "missed".to_owned()
                },
            ]
        })
        .collect();
    let target_header = format!("< {TARGET_GAPS} gaps");
    section.table(
        &[
            "stream",
            "typical gap (nominal)",
            "median",
            "p99",
            "max",
            "median in gaps",
            "p99 in gaps",
            "limit",
            "rhythm-only limit",
            "false alarms in warm-ups",
            &target_header,
        ],
        &table,
    );
    if rows.iter().any(|r| r.undetected > 0) {
        let missing: Vec<String> = rows
            .iter()
            .filter(|r| r.undetected > 0)
            .map(|r| format!("{}: {}", r.label, r.undetected))
            .collect();
        section.para(&format!(
            "Silences not detected within a minute: {}.",
            missing.join(", ")
        ));
    }
    let alarmed: Vec<&LatencyRow> = rows.iter().filter(|r| !r.false_alarms.is_empty()).collect();
    if !alarmed.is_empty() {
        let mut lines = Vec::new();
        let mut latest_all = Duration::ZERO;
        for r in &alarmed {
            let latest = r.false_alarms.iter().map(|a| a.0).max().unwrap_or_default();
            let most = r.false_alarms.iter().map(|a| a.1).max().unwrap_or_default();
            latest_all = latest_all.max(latest);
            let (at, n, details) = &r.false_alarms[0];
            lines.push(format!(
                "{}: {} in {runs} warm-ups, the latest {} after connecting, at most {most} \
                 packets in (the first: after {} and {n} packets, \"{details}\")",
                r.label,
                r.false_alarms.len(),
                dur(latest),
                dur(*at),
            ));
        }
        section.para(&format!(
            "False alarms in the warm-ups (each a fresh connection): {}. All came within {} of \
             connecting. The adaptive limit applies once `min_samples` ({}) gaps are seen, and \
             every reconnect starts learning afresh.",
            lines.join("; "),
            dur(latest_all),
            silence.min_samples,
        ));
    }
    let r_sweep = &rows[RATES.len() - 1];
    let sweep_prefix = format!("{SWEEP_RATE} packets/s, ");
    let sweep: Vec<String> = rows[RATES.len()..]
        .iter()
        .map(|r| {
            format!(
                "{}: median {} ({} gaps), false alarms {}",
                r.label.trim_start_matches(&sweep_prefix),
                secs(median(&r.latencies)),
                sig3(median(&r.latencies) / r.typical_gap),
                r.false_alarms.len()
            )
        })
        .collect();
    let rhythm = median(&r_sweep.rhythm_limits);
    let floor = silence.floor.as_secs_f64();
    let sweep_median = median(&r_sweep.latencies);
    let sweep_gaps = sweep_median / r_sweep.typical_gap;
    section.para(&format!(
        "At {SWEEP_RATE} packets/s the limit learned from the rhythm alone is about {} ({} \
         gaps of {}), {} the default `SilenceConfig::floor` of {}{}: {} at the median ({} \
         gaps), and the {TARGET_GAPS}-gap target is {}. Lower floors: {}. Paused time is an \
         idealised host: tokio's timers fire on whole milliseconds (the sources here hand over \
         their packets in millisecond batches, stamped with their true times) but nothing else \
         is ever late, so a reader descheduled for a few milliseconds, as on a real host, is \
         not simulated here; the floor is what keeps such a pause from being taken for a \
         silence.",
        secs(rhythm),
        sig3(rhythm / r_sweep.typical_gap),
        secs(r_sweep.typical_gap),
        if rhythm < floor { "below" } else { "not below" },
        dur(silence.floor),
        if rhythm < floor {
            ", so with the default config the floor decides"
        } else {
            ", so the rhythm, not the floor, decides"
        },
        secs(sweep_median),
        sig3(sweep_gaps),
        if sweep_gaps < TARGET_GAPS {
            "met"
        } else {
            "missed"
        },
        sweep.join("; "),
    ));

    // False alarms over an hour.
    let mut alarm_rows = Vec::new();
    for (i, rate) in RATES.into_iter().enumerate() {
        progress(&format!(
            "false alarms: {rate} packets/s for a simulated {long}"
        ));
        let started = std::time::Instant::now();
        let out = long_run(&mut || Box::new(Smooth::new(rate, LOSS, 100 + i as u64)));
        alarm_rows.push((
            format!("{rate} packets/s, {}", smooth_traits()),
            out,
            rate.recip(),
            started.elapsed(),
        ));
    }
    progress(&format!("false alarms: bursty VBR for a simulated {long}"));
    let started = std::time::Instant::now();
    let out = long_run(&mut || Box::new(Vbr::new(LOSS, 42)));
    alarm_rows.push((
        format!(
            "VBR {VBR_FPS} fps, {}–{}-packet frames, {VBR_KEYFRAME_PACKETS}-packet keyframe \
             every {}, {:.0} % loss",
            VBR_FRAME_PACKETS.start(),
            VBR_FRAME_PACKETS.end(),
            secs(f64::from(VBR_KEYFRAME_EVERY) / f64::from(VBR_FPS)),
            LOSS * 100.0
        ),
        out,
        1.0 / f64::from(VBR_FPS),
        started.elapsed(),
    ));
    section.heading(&format!(
        "False alarms over a simulated {long} (simulated, tokio paused time)"
    ));
    section.para(&format!(
        "One connection per stream, {long} simulated each (target: zero false alarms). A false \
         alarm is any failure raised while the source is still sending; the connection is then \
         replaced and the run goes on. The last column is the detection of the silence at the \
         end of the run, in the stream's nominal packet (or frame) gaps."
    ));
    let table: Vec<Vec<String>> = alarm_rows
        .iter()
        .map(|(label, out, gap, wall)| {
            let first = out
                .false_alarms
                .first()
                .map_or_else(String::new, |(at, n, d)| {
                    format!(
                        " (first {} after connecting, {n} packets in: {d})",
                        dur(*at)
                    )
                });
            vec![
                label.clone(),
                long.clone(),
                format!("{}", out.packets),
                format!("{}{first}", out.false_alarms.len()),
                if out.false_alarms.is_empty() {
                    "met".to_owned()
                } else {
                    "missed".to_owned()
                },
                out.detected_after.map_or_else(
                    || "—".to_owned(),
                    |d| format!("{} ({} gaps)", dur(d), sig3(d.as_secs_f64() / gap)),
                ),
                secs(wall.as_secs_f64()),
            ]
        })
        .collect();
    section.table(
        &[
            "stream",
            "simulated",
            "packets delivered",
            "false alarms",
            "zero",
            "final silence detected after",
            "real time taken",
        ],
        &table,
    );

    // Against SRT's own idle timeout, in real time.
    progress("SRT: real connections through the simulator");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let mut cuts = Vec::new();
    for i in 0..srt_repeats() {
        match rt.block_on(srt_cut(1 + i as u64)) {
            Ok(cut) => {
                progress(&format!(
                    "SRT repeat {i}: ours {:?}, SRT {:?}",
                    cut.ours, cut.srt
                ));
                cuts.push(cut);
            }
            Err(e) => progress(&format!("SRT repeat {i} failed: {e}")),
        }
    }
    drop(rt);
    section.heading("Against SRT's own peer-idle timeout (real time)");
    let settings = |f: fn(&SrtCut) -> Duration| {
        let mut v: Vec<String> = cuts.iter().map(|c| dur(f(c))).collect();
        v.dedup();
        if v.is_empty() {
            "not read".to_owned()
        } else {
            v.join(" or ")
        }
    };
    let (latency, peer_idle) = (settings(|c| c.latency), settings(|c| c.peer_idle_timeout));
    section.para(&format!(
        "An srt-tokio caller sends {SRT_RATE} packets/s of {} bytes over loopback through the \
         `NetworkSimulator` to an `SrtConnector` listener at its defaults (as the connection \
         reported them: {latency} latency, {peer_idle} peer-idle timeout) wrapped in \
         `FailureDetectLayer` over `HealthLayer`. After {} the path is blackholed both ways. \
         Both times are read on the same connection, from the blackhole: when our detector \
         failed it, and when srt-tokio ended the `SrtConnection` (read directly after our \
         failure). Measured in real time; {} repeats, median. Our time includes the packets \
         still in SRT's {latency} latency buffer, delivered after the cut.",
        PAYLOAD.len(),
        dur(SRT_WARM),
        cuts.len()
    ));
    let ours: Vec<f64> = cuts.iter().map(|c| c.ours.as_secs_f64()).collect();
    let srt: Vec<f64> = cuts
        .iter()
        .filter_map(|c| c.srt.map(|d| d.as_secs_f64()))
        .collect();
    let per_run: Vec<Vec<String>> = cuts
        .iter()
        .enumerate()
        .map(|(i, c)| {
            vec![
                format!("{}", i + 1),
                dur(c.ours),
                dur(c.ours_silence),
                c.srt.map_or_else(|| "—".to_owned(), dur),
                c.srt.map_or_else(
                    || "—".to_owned(),
                    |s| ratio(c.ours.as_secs_f64() / s.as_secs_f64()),
                ),
                format!("{}", c.packets),
            ]
        })
        .collect();
    section.table(
        &[
            "repeat",
            "our detector",
            "of which silence after the last packet",
            "SRT ends the connection",
            "ours / SRT",
            "packets before the failure",
        ],
        &per_run,
    );
    let (ours_med, srt_med) = (median(&ours), median(&srt));
    section.para(&format!(
        "Median: our detector {} after the cut, SRT {} ({} of SRT's time{}). {} of {} SRT \
         connections ended by themselves within {}.",
        secs(ours_med),
        secs(srt_med),
        ratio(ours_med / srt_med),
        if ours_med < srt_med {
            format!(", {} times sooner", sig3(srt_med / ours_med))
        } else {
            String::new()
        },
        srt.len(),
        cuts.len(),
        dur(SRT_LIMIT),
    ));
    if let Some(c) = cuts.first() {
        section.para(&format!(
            "What each said (first repeat): ours: \"{}\"; SRT: \"{}\".",
            c.ours_details, c.srt_details
        ));
    }
    section.publish("detection");
}
