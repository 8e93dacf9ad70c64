//! Packets per second through the whole layer stack against a bare receive loop on
//! the same socket type, on loopback, 1316-byte payloads (seven MPEG-TS packets).
//!
//! Each run has a sender and a receiver, one per core of a 2-core machine. The sender
//! is a child process (this binary again, with `THROUGHPUT_SENDER` set), so that its
//! CPU time is not in the receiving process's: it sends as fast as it can (SRT: at a
//! fixed rate, see [`SRT_RATE`], on its own single-threaded runtime) until its stdin
//! closes. The receiver, on a single-threaded tokio runtime in this process, consumes
//! packets as fast as it can. After a warm-up ([`WARMUP`]) the receiver counts packets
//! for [`MEASURE`] of real time and reads its own thread's CPU time
//! (`/proc/thread-self/schedstat`) and the whole process's (`/proc/self/stat`: every
//! thread the stack may use), so each run gives packets delivered per second and, per
//! delivered packet, receiver-thread and process CPU time. The CPU figures are the
//! ones that show the stack's cost when the receiver is not the bottleneck (SRT).
//!
//! Variants, interleaved run by run, [`RUNS`] runs each, medians reported:
//!
//! - SRT (srt-tokio caller → listener): a raw srt-tokio `SrtSocket`; our
//!   `SrtConnection` from `SrtConnector` without layers; the whole stack,
//!   `ReconnectionConfig::default().reconnecting(SrtConnector, target)`.
//! - RTP over UDP: a bare tokio `UdpSocket::recv` loop; `RtpConnection` without
//!   layers; the whole stack around `RtpConnector`.
//! - Raw UDP: `UdpConnection` without layers; the whole stack around `UdpConnector`
//!   (the bare `UdpSocket` loop above is the baseline too).
//!
//! Run with `cargo bench --all-features --bench throughput`. Everything here is
//! measured in real time. `BENCH_QUICK=1` makes one short run of each variant, to
//! check that it works.

use std::future::Future;
use std::io::Read;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use mirror_reconnect::config::ReconnectionConfig;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::{EventType, Events};
use mirror_reconnect::protocol::rtp::RtpConnector;
use mirror_reconnect::protocol::srt::SrtConnector;
use mirror_reconnect::protocol::udp::UdpConnector;
use srt_tokio::options::ByteCount;
use srt_tokio::SrtSocket;
use tower::ServiceExt;

#[path = "common/net_figures.rs"]
mod net_figures;
#[path = "common/quick.rs"]
mod quick;

use net_figures::{
    clock_tick, factor, free_udp_port, median, percent, spread, thousands, thread_cpu, ProcessCpu,
    Section,
};

const PAYLOAD: usize = 1316;
/// Counting starts this long after the receiver starts.
static WARMUP: std::sync::LazyLock<Duration> = std::sync::LazyLock::new(|| {
    quick::pick(Duration::from_millis(500), Duration::from_millis(200))
});
/// Packets are counted for this long.
static MEASURE: std::sync::LazyLock<Duration> =
    std::sync::LazyLock::new(|| quick::pick(Duration::from_secs(2), Duration::from_millis(500)));
/// Runs per variant.
static RUNS: std::sync::LazyLock<usize> = std::sync::LazyLock::new(|| quick::pick(5, 1));
/// Packets per second the SRT sender sends, evenly spaced. srt-tokio delivers next to
/// nothing when its sender is flooded, so SRT runs at a fixed rate the receiver
/// sustains with room to spare: every variant should deliver it (the section says
/// whether each did), and CPU time per packet is what tells them apart.
const SRT_RATE: u32 = 50_000;
/// The environment variable that makes this binary a sender: `<kind> <address>`.
const SENDER_VAR: &str = "THROUGHPUT_SENDER";
/// SRT latency of every SRT variant.
const SRT_LATENCY: Duration = Duration::from_millis(120);
/// What SrtConnector asks of the kernel; the raw srt-tokio baseline asks the same.
const SRT_UDP_BUFFER: u64 = 4 * 1024 * 1024;

/// One measured window of one run.
#[derive(Debug, Clone, Copy)]
struct Window {
    /// Packets delivered to the consumer.
    packets: u64,
    elapsed: Duration,
    /// CPU time of the receiving thread.
    cpu: Option<Duration>,
    /// CPU time of the whole receiving process.
    process_cpu: Option<Duration>,
}

/// µs of `cpu` per packet of `packets`; NaN when either is missing.
fn us_per_packet(cpu: Option<Duration>, packets: u64) -> f64 {
    match cpu {
        Some(cpu) if packets > 0 => cpu.as_secs_f64() * 1e6 / packets as f64,
        _ => f64::NAN,
    }
}

impl Window {
    fn pps(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }

    fn thread_us_per_packet(&self) -> f64 {
        us_per_packet(self.cpu, self.packets)
    }

    fn process_us_per_packet(&self) -> f64 {
        us_per_packet(self.process_cpu, self.packets)
    }
}

/// Where a window starts: packets seen, when, and the CPU times then.
type Mark = (u64, Instant, Option<Duration>, Option<ProcessCpu>);

/// Counts packets while they come: a warm-up, then one measured window.
struct Counter {
    started: Instant,
    seen: u64,
    mark: Option<Mark>,
    /// Error items seen, and the last one.
    errors: u64,
    last_error: Option<String>,
    done: bool,
}

impl Counter {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            seen: 0,
            mark: None,
            errors: 0,
            last_error: None,
            done: false,
        }
    }

    fn error(&mut self, error: &dyn std::fmt::Display) {
        self.errors += 1;
        self.last_error = Some(error.to_string());
    }

    /// Count one packet; the finished window once it is over.
    #[inline]
    fn packet(&mut self) -> Option<Window> {
        self.seen += 1;
        // Reading the clock on every packet would cost as much as some of what is
        // measured.
        if self.seen % 64 != 0 {
            return None;
        }
        let now = Instant::now();
        match &self.mark {
            None => {
                if now.duration_since(self.started) >= *WARMUP {
                    self.mark = Some((self.seen, now, thread_cpu(), ProcessCpu::now()));
                }
                None
            }
            Some((seen, at, cpu, process)) => {
                let elapsed = now.duration_since(*at);
                self.done = elapsed >= *MEASURE;
                self.done.then(|| Window {
                    packets: self.seen - seen,
                    elapsed,
                    cpu: thread_cpu().zip(*cpu).map(|(end, start)| end - start),
                    process_cpu: ProcessCpu::now()
                        .zip(process.as_ref())
                        .map(|(end, start)| end.since(start)),
                })
            }
        }
    }
}

impl Drop for Counter {
    /// A run without figures says what it saw (it ends here when it times out).
    fn drop(&mut self) {
        if !self.done {
            eprintln!(
                "no measured window: {} packets and {} errors in {:?}{}",
                self.seen,
                self.errors,
                self.started.elapsed(),
                self.last_error
                    .as_ref()
                    .map_or_else(String::new, |e| format!(", the last error: {e}"))
            );
        }
    }
}

/// Consume a stream of results until the window is measured; errors are skipped.
async fn consume<S, T, E>(mut stream: S) -> Option<Window>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut counter = Counter::new();
    while let Some(item) = stream.next().await {
        match item {
            Ok(_) => {
                if let Some(window) = counter.packet() {
                    return Some(window);
                }
            }
            Err(e) => counter.error(&e),
        }
    }
    eprintln!(
        "the stream ended after {} packets, {:?}",
        counter.seen,
        counter.started.elapsed()
    );
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    SrtRaw,
    SrtConnection,
    SrtStack,
    UdpSocketLoop,
    RtpConnection,
    RtpStack,
    UdpConnection,
    UdpStack,
}

impl Variant {
    fn label(self) -> &'static str {
        match self {
            Self::SrtRaw => "srt-tokio `SrtSocket` (raw)",
            Self::SrtConnection => "`SrtConnection`, no layers",
            Self::SrtStack => "whole stack around `SrtConnector`",
            Self::UdpSocketLoop => "tokio `UdpSocket::recv` loop (bare)",
            Self::RtpConnection => "`RtpConnection`, no layers",
            Self::RtpStack => "whole stack around `RtpConnector`",
            Self::UdpConnection => "`UdpConnection`, no layers",
            Self::UdpStack => "whole stack around `UdpConnector`",
        }
    }

    fn is_srt(self) -> bool {
        matches!(self, Self::SrtRaw | Self::SrtConnection | Self::SrtStack)
    }

    /// Whether the sender sends RTP packets (else raw payloads).
    fn sends_rtp(self) -> bool {
        matches!(
            self,
            Self::UdpSocketLoop | Self::RtpConnection | Self::RtpStack
        )
    }

    /// What the sender process sends: `srt`, `rtp` or `udp`.
    fn sender_kind(self) -> &'static str {
        if self.is_srt() {
            "srt"
        } else if self.sends_rtp() {
            "rtp"
        } else {
            "udp"
        }
    }
}

fn srt_target(address: SocketAddr) -> Target {
    Target::new("bench", Protocol::Srt)
        .address(address)
        .parameter("mode", "listener")
        .parameter("latency", SRT_LATENCY.as_millis().to_string())
}

/// Tell the stack's failures and reconnections on stderr: a run in which the stack
/// reconnected measured the reconnection too, and says so.
fn report_events(events: &Events) {
    events.on_event(|e| {
        if matches!(
            e.event_type,
            EventType::FailureDetected
                | EventType::ReconnectionStarted
                | EventType::ReconnectionFailed
        ) {
            eprintln!(
                "  the stack: {}{}{}",
                e.event_type.as_str(),
                e.reason.map_or_else(String::new, |r| format!(" ({r})")),
                e.error
                    .as_ref()
                    .map_or_else(String::new, |err| format!(": {err}"))
            );
        }
    });
}

/// The receiving side: binds, tells where, then consumes one window.
async fn receive(variant: Variant, bound: mpsc::Sender<SocketAddr>) -> Option<Window> {
    let localhost = |port| SocketAddr::from(([127, 0, 0, 1], port));
    match variant {
        Variant::SrtRaw => {
            let address = localhost(free_udp_port());
            bound.send(address).ok()?;
            let socket = SrtSocket::builder()
                .latency(SRT_LATENCY)
                .set(|o| {
                    o.connect.udp_recv_buffer_size = ByteCount(SRT_UDP_BUFFER);
                    o.connect.udp_send_buffer_size = ByteCount(SRT_UDP_BUFFER);
                    o.session.statistics_interval = Duration::from_millis(250);
                })
                .listen_on(address)
                .await
                .map_err(|e| eprintln!("raw SRT listener: {e}"))
                .ok()?;
            consume(socket).await
        }
        Variant::SrtConnection | Variant::SrtStack => {
            let connector = SrtConnector::new();
            let address = connector.listen(localhost(0)).await.ok()?;
            bound.send(address).ok()?;
            let target = srt_target(address);
            if variant == Variant::SrtStack {
                let packets = ReconnectionConfig::default().reconnecting(connector, target);
                report_events(packets.event_bus());
                consume(packets).await
            } else {
                let conn = connector
                    .oneshot(target)
                    .await
                    .map_err(|e| eprintln!("SRT connector: {e}"))
                    .ok()?;
                consume(conn).await
            }
        }
        Variant::UdpSocketLoop => {
            let socket = tokio::net::UdpSocket::bind(localhost(0)).await.ok()?;
            bound.send(socket.local_addr().ok()?).ok()?;
            let mut buf = vec![0u8; 65_536];
            let mut counter = Counter::new();
            loop {
                if socket.recv(&mut buf).await.is_ok() {
                    if let Some(window) = counter.packet() {
                        return Some(window);
                    }
                }
            }
        }
        Variant::RtpConnection | Variant::RtpStack => {
            let address = localhost(free_udp_port());
            let target = Target::new("bench", Protocol::Rtp).address(address);
            if variant == Variant::RtpStack {
                bound.send(address).ok()?;
                let packets =
                    ReconnectionConfig::default().reconnecting(RtpConnector::new(), target);
                report_events(packets.event_bus());
                consume(packets).await
            } else {
                let conn = RtpConnector::new().oneshot(target).await.ok()?;
                bound.send(address).ok()?;
                consume(conn).await
            }
        }
        Variant::UdpConnection | Variant::UdpStack => {
            let address = localhost(free_udp_port());
            let target = Target::new("bench", Protocol::Udp).address(address);
            if variant == Variant::UdpStack {
                bound.send(address).ok()?;
                let packets =
                    ReconnectionConfig::default().reconnecting(UdpConnector::new(), target);
                report_events(packets.event_bus());
                consume(packets).await
            } else {
                let conn = UdpConnector::new().oneshot(target).await.ok()?;
                bound.send(address).ok()?;
                consume(conn).await
            }
        }
    }
}

/// An RTP packet: version 2, payload type 96, the given sequence number, a 90 kHz
/// timestamp advancing with it, a fixed SSRC, and a 1316-byte payload.
fn rtp_packet(buf: &mut [u8], seq: u16) {
    buf[0] = 0x80;
    buf[1] = 96;
    buf[2..4].copy_from_slice(&seq.to_be_bytes());
    buf[4..8].copy_from_slice(&(u32::from(seq) * 30).to_be_bytes());
    buf[8..12].copy_from_slice(&0x5eed_cafe_u32.to_be_bytes());
}

/// Send UDP datagrams to `to` as fast as the thread can, until `stop`.
fn udp_sender(to: SocketAddr, rtp: bool, stop: &AtomicBool) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").expect("sender socket");
    socket.connect(to).expect("sender connect");
    let mut buf = vec![0x47u8; if rtp { 12 + PAYLOAD } else { PAYLOAD }];
    let mut seq = 0u16;
    while !stop.load(Ordering::Relaxed) {
        if rtp {
            rtp_packet(&mut buf, seq);
            seq = seq.wrapping_add(1);
        }
        // Nobody bound yet, or the receiver gone: ICMP errors come back as send errors.
        let _ = socket.send(&buf);
    }
}

/// Call `to` over SRT and send as fast as srt-tokio takes packets, until `stop`.
fn srt_sender(to: SocketAddr, stop: &AtomicBool) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("sender runtime");
    rt.block_on(async {
        let call = SrtSocket::builder()
            .latency(SRT_LATENCY)
            .set(|o| {
                o.connect.udp_recv_buffer_size = ByteCount(SRT_UDP_BUFFER);
                o.connect.udp_send_buffer_size = ByteCount(SRT_UDP_BUFFER);
                // srt-tokio's default send buffer is 46 592 bytes, 35 packets: less than
                // one latency's worth at these rates, and it drops the rest. libsrt's
                // default is 8192 packets.
                o.sender.buffer_size = ByteCount(8192 * 1500);
            })
            .call(to, Some("bench"));
        let Ok(Ok(mut socket)) = tokio::time::timeout(Duration::from_secs(5), call).await else {
            eprintln!("SRT sender: no connection to {to}");
            return;
        };
        let payload = Bytes::from(vec![0x47u8; PAYLOAD]);
        let period = Duration::from_secs(1) / SRT_RATE;
        let mut next = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            // Evenly spaced, as a live encoder's mux sends; tokio's timers are too
            // coarse for 20 µs, so spin, letting srt-tokio's own task run meanwhile.
            while Instant::now() < next {
                tokio::task::yield_now().await;
            }
            next += period;
            let send = socket.send((Instant::now(), payload.clone()));
            match tokio::time::timeout(Duration::from_millis(100), send).await {
                Ok(Ok(())) | Err(_) => {}
                Ok(Err(_)) => break,
            }
        }
    });
}

fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("receiver runtime")
        .block_on(future)
}

/// The sender process's side: send `kind` packets to `to` until stdin closes.
fn sender_main(spec: &str) {
    let (kind, to) = spec
        .split_once(' ')
        .expect("THROUGHPUT_SENDER: <kind> <address>");
    let to: SocketAddr = to.parse().expect("THROUGHPUT_SENDER: an address");
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            // The parent closes our stdin (or goes away) when the window is measured.
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Relaxed);
        });
    }
    match kind {
        "srt" => srt_sender(to, &stop),
        "rtp" => udp_sender(to, true, &stop),
        _ => udp_sender(to, false, &stop),
    }
}

/// The sender process of one run; stopped (stdin closed, then killed if need be) when
/// dropped.
struct SenderProcess(Child);

impl SenderProcess {
    fn start(variant: Variant, to: SocketAddr) -> std::io::Result<Self> {
        let exe = std::env::current_exe()?;
        Command::new(exe)
            .env(SENDER_VAR, format!("{} {to}", variant.sender_kind()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map(Self)
    }
}

impl Drop for SenderProcess {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One run of one variant: the receiver on a thread of this process with its own
/// runtime, the sender in a child process.
fn run(variant: Variant) -> Option<Window> {
    let (bound_tx, bound_rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        block_on(async move {
            let limit = *WARMUP + *MEASURE + Duration::from_secs(10);
            tokio::time::timeout(limit, receive(variant, bound_tx))
                .await
                .ok()
                .flatten()
        })
    });
    let sender = bound_rx
        .recv_timeout(Duration::from_secs(10))
        .ok()
        .and_then(|to| {
            SenderProcess::start(variant, to)
                .map_err(|e| eprintln!("the sender process does not start: {e}"))
                .ok()
        });
    let window = receiver.join().ok().flatten();
    drop(sender);
    window
}

/// Medians of the runs of one variant.
struct Figures {
    variant: Variant,
    pps: Vec<f64>,
    /// Receiving thread's CPU µs per delivered packet, per run.
    thread_cpu: Vec<f64>,
    /// Receiving process's CPU µs per delivered packet, per run.
    process_cpu: Vec<f64>,
}

impl Figures {
    fn pps(&self) -> f64 {
        median(&self.pps)
    }
    fn thread_cpu(&self) -> f64 {
        median(&self.thread_cpu)
    }
    fn process_cpu(&self) -> f64 {
        median(&self.process_cpu)
    }
}

/// A µs figure with two decimals, `—` when it cannot be computed.
fn us(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.2}")
    } else {
        "—".to_owned()
    }
}

fn table(section: &mut Section, figures: &[&Figures], baseline: &Figures) {
    let rows: Vec<Vec<String>> = figures
        .iter()
        .map(|f| {
            let (lo, hi) = spread(&f.pps);
            vec![
                f.variant.label().to_owned(),
                thousands(f.pps()),
                format!("{}–{}", thousands(lo), thousands(hi)),
                format!("{:.0}", f.pps() * PAYLOAD as f64 * 8.0 / 1e6),
                percent(f.pps(), baseline.pps()),
                us(f.thread_cpu()),
                us(f.process_cpu()),
                factor(f.process_cpu(), baseline.process_cpu()),
            ]
        })
        .collect();
    section.table(
        &[
            "receiver",
            "packets/s (median)",
            "range",
            "Mbit/s payload",
            "vs bare",
            "receiver thread CPU µs / delivered packet",
            "process CPU µs / delivered packet",
            "process CPU vs bare",
        ],
        &rows,
    );
}

/// The sentence comparing the stack's process CPU per delivered packet with the
/// baseline's and with the connection's alone.
fn cpu_sentence(stack: &Figures, bare: &Figures, bare_label: &str, alone: &Figures) -> String {
    format!(
        "Process CPU per delivered packet: whole stack {} µs, {bare_label} {} µs ({}); \
         `{}` alone {} µs ({} for the stack over it).",
        us(stack.process_cpu()),
        us(bare.process_cpu()),
        factor(stack.process_cpu(), bare.process_cpu()),
        alone
            .variant
            .label()
            .split('`')
            .nth(1)
            .unwrap_or("the connection"),
        us(alone.process_cpu()),
        factor(stack.process_cpu(), alone.process_cpu()),
    )
}

fn main() {
    if let Ok(spec) = std::env::var(SENDER_VAR) {
        return sender_main(&spec);
    }
    // Asked now, not in the first measured window.
    let tick = clock_tick();
    // THROUGHPUT_ONLY=srt (or rtp, udp) runs only those variants, when working on one.
    let only = std::env::var("THROUGHPUT_ONLY").unwrap_or_default();
    let variants = [
        Variant::SrtRaw,
        Variant::SrtConnection,
        Variant::SrtStack,
        Variant::UdpSocketLoop,
        Variant::RtpConnection,
        Variant::RtpStack,
        Variant::UdpConnection,
        Variant::UdpStack,
    ];
    let mut figures: Vec<Figures> = variants
        .iter()
        .filter(|v| only.is_empty() || format!("{v:?}").to_lowercase().starts_with(&only))
        .map(|&variant| Figures {
            variant,
            pps: Vec::new(),
            thread_cpu: Vec::new(),
            process_cpu: Vec::new(),
        })
        .collect();
    for round in 0..*RUNS {
        for f in &mut figures {
            let window = run(f.variant);
            match window {
                Some(w) => {
                    eprintln!(
                        "run {round}: {:<40} {:>9.0} packets/s, CPU per delivered packet: \
                         receiver thread {:>5.2} µs, process {:>5.2} µs",
                        f.variant.label(),
                        w.pps(),
                        w.thread_us_per_packet(),
                        w.process_us_per_packet(),
                    );
                    f.pps.push(w.pps());
                    f.thread_cpu.push(w.thread_us_per_packet());
                    f.process_cpu.push(w.process_us_per_packet());
                }
                None => eprintln!("run {round}: {}: no figures", f.variant.label()),
            }
        }
    }
    if !only.is_empty() {
        return;
    }
    let get = |v: Variant| figures.iter().find(|f| f.variant == v).expect("measured");

    let mut section = Section::new(
        "throughput",
        "Throughput: the whole stack against a bare receive loop",
    );
    if let Some(notice) = quick::notice() {
        section.para(&notice);
    }
    section.para(&format!(
        "Measured in real time on loopback: a sender in a child process sending \
         {PAYLOAD}-byte payloads (UDP and RTP as fast as it can, SRT at a fixed rate), a \
         receiver on a single-threaded tokio runtime in the measuring process consuming as \
         fast as it can. {} runs per variant, interleaved; each run counts the packets \
         delivered to the consumer for {:?} after a {:?} warm-up. Figures are medians; \
         \"range\" is the lowest and highest run. CPU is per delivered packet, in µs: the \
         receiving thread's own CPU time (scheduler accounting, `/proc/thread-self/schedstat`) \
         and the whole receiving process's, which counts work the stack does on any thread \
         (the sum over its threads of `/proc/self/task/*/schedstat`; `utime + stime` of \
         `/proc/self/stat`, in ticks of {:?}, where threads that ended in the window used \
         more than two ticks; the sender's process is not in it). They show the stack's cost even when the sender is the bottleneck; \
         \"process CPU vs bare\" is the ratio of the process figures, stack (or connection) \
         over the baseline of the same table, from the same run.",
        *RUNS, *MEASURE, *WARMUP, tick,
    ));

    let srt_raw = get(Variant::SrtRaw);
    let srt_conn = get(Variant::SrtConnection);
    let srt_stack = get(Variant::SrtStack);
    let srt_all = [srt_raw, srt_conn, srt_stack];
    let behind: Vec<String> = srt_all
        .iter()
        .filter(|f| f.pps().is_nan() || f.pps() < 0.99 * f64::from(SRT_RATE))
        .map(|f| {
            format!(
                "{} ({})",
                f.variant.label(),
                percent(f.pps(), f64::from(SRT_RATE))
            )
        })
        .collect();
    let kept_up = if behind.is_empty() {
        "every variant delivered at least 99 % of that rate, so packets/s only shows that \
         they kept up and CPU per packet is the figure"
            .to_owned()
    } else {
        format!(
            "delivering less than 99 % of that rate: {}",
            behind.join(", ")
        )
    };
    section.para(&format!(
        "**SRT**, srt-tokio caller → listener, latency {} ms, the sender paced at a fixed \
         {SRT_RATE} packets/s; {kept_up}. \"vs bare\" is against the raw srt-tokio socket \
         (with the {} MiB UDP buffers the bench gives it, as `SrtConnector` asks); the stack \
         against `SrtConnection` alone is {} in packets/s. {}",
        SRT_LATENCY.as_millis(),
        SRT_UDP_BUFFER as f64 / (1024.0 * 1024.0),
        percent(srt_stack.pps(), srt_conn.pps()),
        cpu_sentence(srt_stack, srt_raw, "raw srt-tokio", srt_conn),
    ));
    table(&mut section, &srt_all, srt_raw);

    let udp_loop = get(Variant::UdpSocketLoop);
    let rtp_conn = get(Variant::RtpConnection);
    let rtp_stack = get(Variant::RtpStack);
    section.para(&format!(
        "**RTP over UDP**, 12-byte RTP header + {PAYLOAD}-byte payload. \"vs bare\" is against a \
         bare tokio `UdpSocket::recv` loop into a reused buffer (no packet made, nothing \
         parsed); the stack against `RtpConnection` alone is {} in packets/s. {}",
        percent(rtp_stack.pps(), rtp_conn.pps()),
        cpu_sentence(rtp_stack, udp_loop, "bare loop", rtp_conn),
    ));
    table(&mut section, &[udp_loop, rtp_conn, rtp_stack], udp_loop);

    let udp_conn = get(Variant::UdpConnection);
    let udp_stack = get(Variant::UdpStack);
    section.para(&format!(
        "**Raw UDP** ({PAYLOAD}-byte datagrams). \"vs bare\" is against the same bare \
         `UdpSocket` loop; the stack against `UdpConnection` alone is {} in packets/s. {}",
        percent(udp_stack.pps(), udp_conn.pps()),
        cpu_sentence(udp_stack, udp_loop, "bare loop", udp_conn),
    ));
    table(&mut section, &[udp_loop, udp_conn, udp_stack], udp_loop);

    for (name, stack, bare) in [
        ("SRT stack / raw srt-tokio, packets/s", srt_stack, srt_raw),
        (
            "RTP stack / bare UdpSocket loop, packets/s",
            rtp_stack,
            udp_loop,
        ),
        (
            "UDP stack / bare UdpSocket loop, packets/s",
            udp_stack,
            udp_loop,
        ),
        (
            "RTP stack / RtpConnection alone, packets/s",
            rtp_stack,
            rtp_conn,
        ),
        (
            "UDP stack / UdpConnection alone, packets/s",
            udp_stack,
            udp_conn,
        ),
    ] {
        let ratio = stack.pps() / bare.pps();
        section.target(
            name,
            "≥ 97 %",
            &percent(stack.pps(), bare.pps()),
            ratio >= 0.97,
        );
    }
    // With the sender in its own process the receivers mostly keep up, so packets/s
    // shows little; what the stack costs is its CPU per delivered packet.
    for (name, stack, bare) in [
        (
            "SRT stack / raw srt-tokio, process CPU per packet",
            srt_stack,
            srt_raw,
        ),
        (
            "RTP stack / bare UdpSocket loop, process CPU per packet",
            rtp_stack,
            udp_loop,
        ),
        (
            "UDP stack / bare UdpSocket loop, process CPU per packet",
            udp_stack,
            udp_loop,
        ),
    ] {
        let ratio = stack.process_cpu() / bare.process_cpu();
        section.target(name, "≤ ×1.05", &format!("×{ratio:.2}"), ratio <= 1.05);
    }
    section.finish();
}
