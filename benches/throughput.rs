//! Packets per second through the whole layer stack against a bare receive loop on
//! the same socket type, on loopback, 1316-byte payloads (seven MPEG-TS packets).
//!
//! Each run has two threads, one per core of a 2-core machine: a sender on its own
//! thread (and, for SRT, its own single-threaded runtime) sending as fast as it can
//! (SRT: at a fixed 50 000 packets/s, see `SRT_RATE`), and a receiver on a
//! single-threaded tokio runtime that consumes packets as fast as it can. After a 0.5 s warm-up the receiver counts packets for 2 s of real time and
//! reads its own thread's CPU time (`/proc/thread-self/schedstat`), so each run gives
//! two figures: packets delivered per second, and receiver CPU time per packet. The
//! second is the one that shows the stack's cost when the receiver is not the
//! bottleneck (SRT).
//!
//! Variants, interleaved run by run, five runs each, medians reported:
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
//! measured in real time.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};
use mirror_reconnect::config::ReconnectionConfig;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::protocol::rtp::RtpConnector;
use mirror_reconnect::protocol::srt::SrtConnector;
use mirror_reconnect::protocol::udp::UdpConnector;
use srt_tokio::options::ByteCount;
use srt_tokio::SrtSocket;
use tower::ServiceExt;

#[path = "common/net_figures.rs"]
mod net_figures;

use net_figures::{factor, free_udp_port, median, percent, spread, thousands, thread_cpu, Section};

const PAYLOAD: usize = 1316;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
const RUNS: usize = 5;
/// Packets per second the SRT sender sends, evenly spaced (526 Mbit/s of payload).
/// srt-tokio delivers next to nothing when its sender is flooded, so SRT runs at a
/// fixed rate the receiver sustains with room to spare (about 11 µs of CPU a packet,
/// 55 % of a core): all three variants deliver it, and the receiver's CPU time per
/// packet is what tells them apart.
const SRT_RATE: u32 = 50_000;
/// SRT latency of every SRT variant.
const SRT_LATENCY: Duration = Duration::from_millis(120);
/// What SrtConnector asks of the kernel; the raw srt-tokio baseline asks the same.
const SRT_UDP_BUFFER: u64 = 4 * 1024 * 1024;

/// One measured window of one run.
#[derive(Debug, Clone, Copy)]
struct Window {
    packets: u64,
    elapsed: Duration,
    cpu: Option<Duration>,
}

impl Window {
    fn pps(&self) -> f64 {
        self.packets as f64 / self.elapsed.as_secs_f64()
    }

    fn cpu_ns_per_packet(&self) -> f64 {
        match self.cpu {
            Some(cpu) if self.packets > 0 => cpu.as_nanos() as f64 / self.packets as f64,
            _ => f64::NAN,
        }
    }
}

/// Counts packets while they come: a warm-up, then one measured window.
struct Counter {
    started: Instant,
    seen: u64,
    mark: Option<(u64, Instant, Option<Duration>)>,
}

impl Counter {
    fn new() -> Self {
        Self {
            started: Instant::now(),
            seen: 0,
            mark: None,
        }
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
        match self.mark {
            None => {
                if now.duration_since(self.started) >= WARMUP {
                    self.mark = Some((self.seen, now, thread_cpu()));
                }
                None
            }
            Some((seen, at, cpu)) => {
                let elapsed = now.duration_since(at);
                (elapsed >= MEASURE).then(|| Window {
                    packets: self.seen - seen,
                    elapsed,
                    cpu: thread_cpu().zip(cpu).map(|(end, start)| end - start),
                })
            }
        }
    }
}

/// Consume a stream of results until the window is measured; errors are skipped.
async fn consume<S, T, E>(mut stream: S) -> Option<Window>
where
    S: Stream<Item = Result<T, E>> + Unpin,
{
    let mut counter = Counter::new();
    while let Some(item) = stream.next().await {
        if item.is_ok() {
            if let Some(window) = counter.packet() {
                return Some(window);
            }
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
}

fn srt_target(address: SocketAddr) -> Target {
    Target::new("bench", Protocol::Srt)
        .address(address)
        .parameter("mode", "listener")
        .parameter("latency", SRT_LATENCY.as_millis().to_string())
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
                consume(ReconnectionConfig::default().reconnecting(connector, target)).await
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
                consume(ReconnectionConfig::default().reconnecting(RtpConnector::new(), target))
                    .await
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
                consume(ReconnectionConfig::default().reconnecting(UdpConnector::new(), target))
                    .await
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

/// One run of one variant: the receiver on this thread's own runtime, the sender on
/// another thread.
fn run(variant: Variant) -> Option<Window> {
    let (bound_tx, bound_rx) = mpsc::channel();
    let receiver = std::thread::spawn(move || {
        block_on(async move {
            let limit = WARMUP + MEASURE + Duration::from_secs(10);
            tokio::time::timeout(limit, receive(variant, bound_tx))
                .await
                .ok()
                .flatten()
        })
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sender = bound_rx
        .recv_timeout(Duration::from_secs(10))
        .ok()
        .map(|to| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                if variant.is_srt() {
                    srt_sender(to, &stop);
                } else {
                    udp_sender(to, variant.sends_rtp(), &stop);
                }
            })
        });
    let window = receiver.join().ok().flatten();
    stop.store(true, Ordering::Relaxed);
    if let Some(sender) = sender {
        let _ = sender.join();
    }
    window
}

/// Medians of the runs of one variant.
struct Figures {
    variant: Variant,
    pps: Vec<f64>,
    cpu: Vec<f64>,
}

impl Figures {
    fn pps(&self) -> f64 {
        median(&self.pps)
    }
    fn cpu(&self) -> f64 {
        median(&self.cpu)
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
                format!("{:.0}", f.cpu()),
                factor(f.cpu(), baseline.cpu()),
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
            "receiver CPU ns/packet",
            "CPU vs bare",
        ],
        &rows,
    );
}

fn main() {
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
            cpu: Vec::new(),
        })
        .collect();
    for round in 0..RUNS {
        for f in &mut figures {
            let window = run(f.variant);
            match window {
                Some(w) => {
                    eprintln!(
                        "run {round}: {:<40} {:>9.0} packets/s, {:>6.0} ns CPU/packet",
                        f.variant.label(),
                        w.pps(),
                        w.cpu_ns_per_packet()
                    );
                    f.pps.push(w.pps());
                    f.cpu.push(w.cpu_ns_per_packet());
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
    section.para(&format!(
        "Measured in real time on loopback: a sender thread sending {PAYLOAD}-byte payloads as fast \
         as it can, a receiver on a single-threaded tokio runtime consuming as fast as it can. \
         {RUNS} runs per variant, interleaved; each run counts packets for {:?} after a {:?} \
         warm-up. Figures are medians; \"range\" is the lowest and highest run. Receiver CPU is \
         the receiving thread's own CPU time per packet (scheduler accounting), which shows \
         the stack's cost even when the sender is the bottleneck.",
        MEASURE, WARMUP
    ));

    let srt_raw = get(Variant::SrtRaw);
    let srt_conn = get(Variant::SrtConnection);
    let srt_stack = get(Variant::SrtStack);
    section.para(&format!(
        "**SRT**, srt-tokio caller → listener, latency {} ms, the sender paced at a fixed \
         {SRT_RATE} packets/s (srt-tokio delivers next to nothing when flooded), so packets/s \
         only shows that every variant keeps up; receiver CPU per packet is the figure. \
         \"vs bare\" is against the raw srt-tokio socket (same UDP buffers as `SrtConnector`); \
         the stack against `SrtConnection` alone is {} in packets/s and {} in receiver CPU.",
        SRT_LATENCY.as_millis(),
        percent(srt_stack.pps(), srt_conn.pps()),
        factor(srt_stack.cpu(), srt_conn.cpu()),
    ));
    table(&mut section, &[srt_raw, srt_conn, srt_stack], srt_raw);

    let udp_loop = get(Variant::UdpSocketLoop);
    let rtp_conn = get(Variant::RtpConnection);
    let rtp_stack = get(Variant::RtpStack);
    section.para(&format!(
        "**RTP over UDP**, 12-byte RTP header + {PAYLOAD}-byte payload. \"vs bare\" is against a \
         bare tokio `UdpSocket::recv` loop into a reused buffer (no packet made, nothing \
         parsed); the stack against `RtpConnection` alone is {} in packets/s and {} in \
         receiver CPU.",
        percent(rtp_stack.pps(), rtp_conn.pps()),
        factor(rtp_stack.cpu(), rtp_conn.cpu()),
    ));
    table(&mut section, &[udp_loop, rtp_conn, rtp_stack], udp_loop);

    let udp_conn = get(Variant::UdpConnection);
    let udp_stack = get(Variant::UdpStack);
    section.para(&format!(
        "**Raw UDP** ({PAYLOAD}-byte datagrams). \"vs bare\" is against the same bare \
         `UdpSocket` loop; the stack against `UdpConnection` alone is {} in packets/s and {} in \
         receiver CPU.",
        percent(udp_stack.pps(), udp_conn.pps()),
        factor(udp_stack.cpu(), udp_conn.cpu()),
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
            "≥ 95 %",
            &percent(stack.pps(), bare.pps()),
            ratio >= 0.95,
        );
    }
    section.finish();
}
