//! Bounds: a consumer that reads the packet stream slower than the source sends, or a
//! flood through the network simulator, cannot grow this process's memory without
//! bound. The process's peak resident memory while flooded is compared with what was
//! sent; the tests run one at a time.
//!
//! Real sockets and real time (the flood is a thread sending as fast as the pace
//! allows); only memory is asserted, never a duration.

#![cfg(all(
    feature = "udp",
    feature = "rtp",
    feature = "srt",
    feature = "network-simulation"
))]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_core::Stream;
use futures_util::StreamExt;
use mirror_reconnect::connection::{Packet, Protocol, Target};
use mirror_reconnect::driver::ReconnectError;
use mirror_reconnect::protocol::rtp::RtpConnector;
use mirror_reconnect::protocol::srt::SrtConnector;
use mirror_reconnect::protocol::udp::UdpConnector;
use mirror_reconnect::sim::NetworkSimulator;
use mirror_reconnect::ReconnectionConfig;
use support::srt::{fast_config, free_udp_port, live_transmit};

/// This process's resident memory now, and its peak since the last [`reset_peak`],
/// in bytes (Linux: `VmRSS` and `VmHWM` of `/proc/self/status`).
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |name: &str| {
        let line = status.lines().find(|l| l.starts_with(name)).unwrap();
        let kib: u64 = line[name.len()..]
            .trim()
            .trim_end_matches(" kB")
            .parse()
            .unwrap();
        kib * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Start the peak again from what is resident now (Linux 4.0 and later).
fn reset_peak() -> u64 {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
    rss().0
}

/// One test at a time: they measure the whole process.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One datagram of the flood: 1316 bytes, as MPEG-TS over UDP is sent.
const DATAGRAM: usize = 1316;
/// The flood's pace: 20 000 datagrams a second, 26 MB/s, twenty times what the
/// consumer takes.
const FLOOD_EVERY: Duration = Duration::from_micros(50);
/// How long the flood lasts.
const FLOOD_FOR: Duration = Duration::from_secs(3);
/// The consumer: one packet, then this pause.
const CONSUME_EVERY: Duration = Duration::from_millis(1);
/// The most the process may grow while flooded: a fraction of what is sent.
const MAX_GROWTH: u64 = 8 * 1024 * 1024;

/// A thread sending `make(n)` to `to` at the flood's pace until stopped; the bytes
/// sent are counted.
struct Flood {
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(to: SocketAddr, make: fn(u32) -> Vec<u8>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let sent = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
            std::thread::spawn(move || {
                let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
                let mut n = 0u32;
                let start = std::time::Instant::now();
                while !stop.load(Ordering::Relaxed) {
                    // Sends after an ICMP refusal (nobody bound yet) may fail: go on.
                    if let Ok(len) = socket.send_to(&make(n), to) {
                        sent.fetch_add(len as u64, Ordering::Relaxed);
                    }
                    n = n.wrapping_add(1);
                    let due = start + FLOOD_EVERY * n;
                    if let Some(wait) = due.checked_duration_since(std::time::Instant::now()) {
                        std::thread::sleep(wait);
                    }
                }
            })
        };
        Self {
            stop,
            sent,
            thread: Some(thread),
        }
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn raw(n: u32) -> Vec<u8> {
    let mut datagram = vec![0x47; DATAGRAM];
    datagram[..4].copy_from_slice(&n.to_be_bytes());
    datagram
}

fn rtp(n: u32) -> Vec<u8> {
    let mut datagram = vec![0u8; DATAGRAM];
    datagram[0] = 0x80;
    datagram[1] = 33;
    datagram[2..4].copy_from_slice(&(n as u16).to_be_bytes());
    datagram[4..8].copy_from_slice(&(n.wrapping_mul(90)).to_be_bytes());
    datagram[8..12].copy_from_slice(&0x5eed_u32.to_be_bytes());
    datagram
}

type Packets = Pin<Box<dyn Stream<Item = Result<Packet, ReconnectError>> + Send>>;

/// Read `packets` slowly while `flood` runs: the first packet first, then the count
/// is taken and the flood lasts [`FLOOD_FOR`]. Returns the peak growth over that
/// count, and the packets read.
async fn consume_slowly(mut packets: Packets, flood: &Flood) -> (u64, u64) {
    let first = tokio::time::timeout(Duration::from_secs(20), packets.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(_)))),
        "the first packet: {first:?}"
    );
    let base = reset_peak();
    let sent_before = flood.sent();
    let mut read = 0;
    let end = tokio::time::Instant::now() + FLOOD_FOR;
    while tokio::time::Instant::now() < end {
        if let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(100), packets.next()).await
        {
            read += 1;
        }
        tokio::time::sleep(CONSUME_EVERY).await;
    }
    let growth = rss().1.saturating_sub(base);
    let sent = flood.sent() - sent_before;
    println!(
        "sent {sent} bytes, read {read} packets, peak growth {growth} bytes ({:.1} % of what was sent)",
        growth as f64 * 100.0 / sent.max(1) as f64
    );
    assert!(
        sent > 4 * MAX_GROWTH,
        "the flood sent only {sent} bytes: too little to tell"
    );
    assert!(
        growth < MAX_GROWTH,
        "memory grew by {growth} bytes while {sent} were sent and {read} packets read"
    );
    (growth, read)
}

fn config() -> ReconnectionConfig {
    fast_config()
}

fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_udp_port()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_of_udp_cannot_grow_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let addr = free_addr();
    let flood = Flood::start(addr, raw);
    let packets = config().reconnecting(
        UdpConnector::new(),
        Target::new("flooded", Protocol::Udp).address(addr),
    );
    consume_slowly(Box::pin(packets), &flood).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_of_rtp_cannot_grow_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let addr = free_addr();
    let flood = Flood::start(addr, rtp);
    let packets = config().reconnecting(
        RtpConnector::new(),
        Target::new("flooded", Protocol::Rtp).address(addr),
    );
    consume_slowly(Box::pin(packets), &flood).await;
}

/// SRT from libsrt's `srt-live-transmit`, which takes the flood on UDP and calls our
/// listener: the sender's buffers are in its process, ours are counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_consumer_of_srt_cannot_grow_memory() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let (feed, srt_port) = (free_udp_port(), free_udp_port());
    let _caller = live_transmit(
        "srt-live-transmit caller",
        &format!("udp://127.0.0.1:{feed}"),
        &format!("srt://127.0.0.1:{srt_port}?mode=caller&streamid=flooded&latency=40"),
    );
    let flood = Flood::start(SocketAddr::from(([127, 0, 0, 1], feed)), raw);
    let target = Target::new("flooded", Protocol::Srt)
        .address(SocketAddr::from(([127, 0, 0, 1], srt_port)))
        .parameter("mode", "listener")
        .parameter("latency", "40");
    let packets = config().reconnecting(SrtConnector::new(), target);
    consume_slowly(Box::pin(packets), &flood).await;
}

/// A flood into the simulator with a second of latency: at most its queue limit
/// waits, the rest is dropped and counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_through_the_simulator_is_held_to_its_queue_limit() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let sink = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let sim = NetworkSimulator::builder()
        .latency(Duration::from_secs(1))
        .queue_limit(1_000)
        .start(sink.local_addr().unwrap())
        .await
        .unwrap();
    let base = reset_peak();
    let flood = Flood::start(sim.local_addr(), raw);
    tokio::time::sleep(FLOOD_FOR).await;
    drop(flood);
    let growth = rss().1.saturating_sub(base);
    let up = sim.stats().to_upstream;
    println!("{up:?}; peak growth {growth} bytes");
    assert!(up.dropped_queue_full > 0, "{up:?}");
    assert!(
        up.packets_in * DATAGRAM as u64 > 4 * MAX_GROWTH,
        "too little sent to tell: {up:?}"
    );
    assert!(growth < MAX_GROWTH, "memory grew by {growth} bytes: {up:?}");
    drop(sink);
}
