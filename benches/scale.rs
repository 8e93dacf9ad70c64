//! How far one process scales: [`streams()`] monitored streams, each a full stack
//! (built by clones of one `ReconnectingBuilder`: retry, timeout, state restore,
//! failure detection, health) and its `Reconnecting` driver over an in-process
//! `connection::channel`, on a multi-threaded runtime with one worker per core.
//!
//! - **Memory per stream** (measured): resident set size (`VmRSS` of
//!   `/proc/self/status`, the resident pages of `/proc/self/statm` in kB) before and after
//!   creating and connecting every stream, against the same number of bare channels,
//!   each read by a task of its own. Each variant runs in a fresh child process so that
//!   one variant's freed memory does not hide the next one's.
//! - **CPU while healthy** (measured, real time): every stream receives
//!   [`RATE`] packets/s for [`cpu_window()`]; process CPU time (`utime + stime` of
//!   `/proc/self/stat`) per second of wall time and per packet delivered to the
//!   streams' readers, against the bare channels fed the same way by the same feeder.
//! - **Mass outage** (simulated, tokio paused time): every connection drops at once
//!   and the server refuses connections for [`OUTAGE`]; the server records each
//!   attempt. Peak attempts per 100 ms and per 1 s, and the time until every stream is
//!   back, for each jitter mode with the default exponential backoff's delays.
//!
//! Run with `cargo bench --all-features --bench scale`; the results are written to
//! `target/bench-results/scale.md`. `BENCH_QUICK=1` runs a few hundred streams for
//! a second, once per variant, to check that it works.

#[path = "common/figures.rs"]
mod figures;
#[path = "common/quick.rs"]
mod quick;

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use figures::{bytes, median, progress, ratio, secs, sig3, Section};
use futures_util::{Stream, StreamExt};
use mirror_reconnect::backoff::{BackoffRetryLayer, ExponentialBackoff, Jitter};
use mirror_reconnect::connection::{
    channel, ChannelConnection, ChannelSender, ConnectionState, Packet, Protocol, Sequence, Target,
};
use mirror_reconnect::connection::{ProbeFuture, ProbeOutcome};
use mirror_reconnect::detect::SilenceConfig;
use mirror_reconnect::driver::{EventType, Events, Reconnecting};
use mirror_reconnect::error::{ConnectError, ConnectErrorKind};
use mirror_reconnect::health::HealthLayer;
use mirror_reconnect::restore::{MemoryStorage, StateStorage};
use mirror_reconnect::ReconnectionConfig;
use tokio::time::Instant;
use tower::timeout::TimeoutLayer;
use tower::ServiceBuilder;

/// Streams in the process.
fn streams() -> usize {
    quick::pick(10_000, 500)
}
/// Packets per second each stream receives while healthy.
const RATE: u32 = 20;
/// The feeder's tick: each tick it sends to a share of the streams.
const FEED_TICK: Duration = Duration::from_millis(10);
/// How long CPU time is measured.
fn cpu_window() -> Duration {
    quick::pick(Duration::from_secs(8), Duration::from_secs(1))
}
/// Feeding before the CPU window opens, so that detectors have learned the rhythm.
fn settle() -> Duration {
    quick::pick(Duration::from_secs(2), Duration::from_millis(500))
}
/// Child processes per variant (bare, stack) for memory and CPU; medians are reported.
fn repeats() -> usize {
    quick::pick(3, 1)
}
/// Worker threads of the measuring children's runtime.
const WORKERS: usize = 2;
/// How long the server refuses connections in the mass outage.
const OUTAGE: Duration = Duration::from_secs(10);
/// How long every stream streams, healthy, before the outage.
const BEFORE_OUTAGE: Duration = Duration::from_secs(10);
/// Packets per second each stream receives in the (simulated) outage runs: enough to
/// keep a connection healthy, few enough to simulate quickly.
const OUTAGE_RATE: u32 = 2;
/// Channel capacity of every connection.
const CAPACITY: usize = 64;
/// CPU (in cores) other processes may use during a measuring window before it is redone.
const BUSY: f64 = 0.2;
/// Measuring windows redone at most, in the whole bench.
fn max_reruns() -> usize {
    quick::pick(3, 0)
}
/// The environment variable that makes the binary a measuring child.
const PHASE_VAR: &str = "MIRROR_SCALE_PHASE";

static PAYLOAD: [u8; 188] = [0x47; 188];

fn packet(seq: u16) -> Packet {
    Packet::new(Bytes::from_static(&PAYLOAD), Instant::now()).with_sequence(Sequence::rtp(seq))
}

/// Resident set size in bytes.
fn rss() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024.0
}

/// CPU time (user + system) of the whole process, in seconds.
fn cpu_time() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    // The command name may hold spaces; the fields after it do not.
    let after = &stat[stat.rfind(')').expect("a command name") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    ticks / clock_ticks()
}

/// Busy CPU time of the whole machine (every process), in seconds, from `/proc/stat`.
fn machine_busy() -> f64 {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    let line = stat.lines().next().expect("the cpu line");
    // user nice system idle iowait irq softirq steal ...
    let v: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    let busy: f64 = [0, 1, 2, 5, 6, 7].iter().filter_map(|&i| v.get(i)).sum();
    busy / clock_ticks()
}

/// Clock ticks per second (`getconf CLK_TCK`, 100 on Linux when it cannot be asked).
fn clock_ticks() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    })
}

/// Where each stream's current connection is fed from.
type Slot = Arc<Mutex<Option<ChannelSender>>>;

fn lock(slot: &Slot) -> std::sync::MutexGuard<'_, Option<ChannelSender>> {
    slot.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One stream's count of delivered packets, on a cache line of its own so that the
/// readers of neighbouring streams, on other workers, do not contend for it.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Delivered(AtomicU64);

/// Every stream's count of delivered packets.
type DeliveredCounts = Arc<Vec<Delivered>>;

fn delivered_counts() -> DeliveredCounts {
    Arc::new((0..streams()).map(|_| Delivered::default()).collect())
}

fn total_delivered(counts: &[Delivered]) -> u64 {
    counts.iter().map(|c| c.0.load(Ordering::Relaxed)).sum()
}

/// Read `packets` to the end, counting each one in `delivered[i]`; count the stream
/// as connected at its first packet.
///
/// A plain function returning an `async move` block rather than an `async fn`: an
/// `async fn` keeps its argument and the local it is moved into side by side in the
/// task, so every stream's task would hold two copies of its packet stream (for the
/// stack, two drivers' worth of bytes), which is the reader's cost, not the stream's.
#[allow(clippy::manual_async_fn)]
fn consume<S, E>(
    mut packets: S,
    delivered: DeliveredCounts,
    i: usize,
    connected: Arc<AtomicUsize>,
    gave_up: Arc<AtomicUsize>,
) -> impl std::future::Future<Output = ()>
where
    S: Stream<Item = Result<Packet, E>> + Unpin,
{
    async move {
        let mut first = true;
        while let Some(item) = packets.next().await {
            match item {
                Ok(packet) => {
                    std::hint::black_box(&packet);
                    // One reader per counter: a plain store, no locked read-modify-write.
                    let count = &delivered[i].0;
                    count.store(count.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
                    if first {
                        first = false;
                        connected.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Err(_) => {
                    gave_up.fetch_add(1, Ordering::Relaxed);
                    break;
                }
            }
        }
    }
}

/// Feeder ticks per round: each tick feeds `1 / ticks_per_round` of the streams.
fn ticks_per_round(rate: u32) -> usize {
    ((Duration::from_secs(1) / rate).as_nanos() / FEED_TICK.as_nanos()).max(1) as usize
}

/// Send one packet to each stream every `1 / rate` s, spread over [`FEED_TICK`]
/// ticks, until the process ends. Returns the count of packets sent so far, shared.
fn spawn_feeder(slots: Arc<Vec<Slot>>, rate: u32) -> Arc<AtomicU64> {
    let sent = Arc::new(AtomicU64::new(0));
    let counter = Arc::clone(&sent);
    tokio::spawn(async move {
        let ticks_per_round = ticks_per_round(rate);
        let n = slots.len();
        let mut cache: Vec<Option<ChannelSender>> = vec![None; n];
        let mut seqs = vec![0u16; n];
        let mut interval = tokio::time::interval(FEED_TICK);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut tick = 0usize;
        loop {
            interval.tick().await;
            let part = tick % ticks_per_round;
            let (from, to) = (n * part / ticks_per_round, n * (part + 1) / ticks_per_round);
            let mut sent_now = 0;
            for i in from..to {
                for _ in 0..2 {
                    if cache[i].is_none() {
                        cache[i] = lock(&slots[i]).clone();
                    }
                    let Some(tx) = &cache[i] else { break };
                    seqs[i] = seqs[i].wrapping_add(1);
                    if tx.send(packet(seqs[i])).await.is_ok() {
                        sent_now += 1;
                        break;
                    }
                    // That connection is gone; the slot may hold its successor.
                    cache[i] = None;
                }
            }
            counter.fetch_add(sent_now, Ordering::Relaxed);
            tick += 1;
        }
    });
    sent
}

/// What a measuring child reports.
#[derive(Debug, Default, Clone)]
struct ChildResult {
    rss_before: f64,
    rss_after: f64,
    connect_secs: f64,
    cpu_secs: f64,
    /// CPU time other processes used in the same window: a busy machine skews ours.
    other_secs: f64,
    wall_secs: f64,
    /// Packets the feeder sent in the window.
    packets: f64,
    /// Packets the streams' readers received in the window.
    delivered: f64,
    connects: f64,
    gave_up: f64,
}

impl ChildResult {
    fn to_line(&self) -> String {
        format!(
            "RESULT rss_before={} rss_after={} connect_secs={} cpu_secs={} other_secs={} wall_secs={} packets={} delivered={} connects={} gave_up={}",
            self.rss_before,
            self.rss_after,
            self.connect_secs,
            self.cpu_secs,
            self.other_secs,
            self.wall_secs,
            self.packets,
            self.delivered,
            self.connects,
            self.gave_up
        )
    }

    fn from_output(out: &str) -> Option<Self> {
        let line = out.lines().find_map(|l| l.strip_prefix("RESULT "))?;
        let map: HashMap<&str, f64> = line
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
            .collect();
        Some(Self {
            rss_before: *map.get("rss_before")?,
            rss_after: *map.get("rss_after")?,
            connect_secs: *map.get("connect_secs")?,
            cpu_secs: *map.get("cpu_secs")?,
            other_secs: *map.get("other_secs")?,
            wall_secs: *map.get("wall_secs")?,
            packets: *map.get("packets")?,
            delivered: *map.get("delivered")?,
            connects: *map.get("connects")?,
            gave_up: *map.get("gave_up")?,
        })
    }

    fn per_stream_memory(&self) -> f64 {
        (self.rss_after - self.rss_before) / streams() as f64
    }

    fn cores(&self) -> f64 {
        self.cpu_secs / self.wall_secs
    }

    fn delivered_per_sec(&self) -> f64 {
        self.delivered / self.wall_secs
    }

    /// Process CPU time per packet delivered to the readers, in seconds.
    fn cpu_per_delivered(&self) -> f64 {
        self.cpu_secs / self.delivered
    }

    fn other_cores(&self) -> f64 {
        self.other_secs / self.wall_secs
    }
}

/// What a measuring child builds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Variant {
    /// Bare channels, each read by a task.
    Bare,
    /// The full default stack and driver over each channel.
    Stack,
    /// The same with `persist_state: false`: no state saves.
    StackNoSave,
    /// The full stack with the adaptive silence detector off (fixed thresholds only).
    StackNoSilence,
    /// Only an `Events` bus per stream (every driver has one): memory, no CPU phase.
    EventBuses,
}

impl Variant {
    const ALL: [Self; 5] = [
        Self::Bare,
        Self::Stack,
        Self::StackNoSave,
        Self::StackNoSilence,
        Self::EventBuses,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Bare => "bare",
            Self::Stack => "stack",
            Self::StackNoSave => "stack-nosave",
            Self::StackNoSilence => "stack-nosilence",
            Self::EventBuses => "events",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Self::Bare => "bare channels (baseline)",
            Self::Stack => "full stack + driver",
            Self::StackNoSave => "full stack + driver, `persist_state: false`",
            Self::StackNoSilence => "full stack + driver, `silence.enabled: false`",
            Self::EventBuses => "an `Events` bus alone (part of every driver)",
        }
    }
}

/// The measuring child: memory, then CPU.
fn child(variant: Variant) {
    let streams = streams();
    if variant == Variant::EventBuses {
        let rss_before = rss();
        let buses: Vec<Events> = (0..streams)
            .map(|i| Events::new(format!("cam{i}")))
            .collect();
        let rss_after = rss();
        std::hint::black_box(&buses);
        let result = ChildResult {
            rss_before,
            rss_after,
            wall_secs: 1.0,
            ..ChildResult::default()
        };
        println!("{}", result.to_line());
        return;
    }
    let with_stack = variant != Variant::Bare;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .enable_all()
        .build()
        .expect("a runtime");
    let result = rt.block_on(async move {
        let slots: Arc<Vec<Slot>> = Arc::new((0..streams).map(|_| Slot::default()).collect());
        let delivered = delivered_counts();
        let connected = Arc::new(AtomicUsize::new(0));
        let gave_up = Arc::new(AtomicUsize::new(0));
        let connects = Arc::new(AtomicU64::new(0));
        let storage: Arc<dyn StateStorage> = Arc::new(MemoryStorage::new());
        let config = ReconnectionConfig {
            persist_state: variant != Variant::StackNoSave,
            silence: SilenceConfig {
                enabled: variant != Variant::StackNoSilence,
                ..SilenceConfig::default()
            },
            ..ReconnectionConfig::default()
        };
        // One builder for every stream, as a program serving many streams with the same
        // settings builds them: they share its retry policy and failure detector.
        let builder = config.builder().storage(Arc::clone(&storage));
        tokio::time::sleep(Duration::from_millis(200)).await;

        let rss_before = rss();
        let started = std::time::Instant::now();
        for (i, slot) in slots.iter().enumerate() {
            let stream_id = format!("cam{i}");
            let (connected, gave_up) = (Arc::clone(&connected), Arc::clone(&gave_up));
            if with_stack {
                let slot = Arc::clone(slot);
                let connects = Arc::clone(&connects);
                let connector = tower::service_fn(move |target: Target| {
                    let slot = Arc::clone(&slot);
                    connects.fetch_add(1, Ordering::Relaxed);
                    async move {
                        let state = ConnectionState::new(target.stream_id, Protocol::InProcess);
                        let (tx, conn) = channel(state, CAPACITY);
                        let _ = tx.send(packet(0)).await;
                        *lock(&slot) = Some(tx);
                        Ok::<ChannelConnection, ConnectError>(conn)
                    }
                });
                let target = Target::new(stream_id, Protocol::InProcess);
                let packets = builder.clone().build(connector, target);
                tokio::spawn(consume(
                    packets,
                    Arc::clone(&delivered),
                    i,
                    connected,
                    gave_up,
                ));
            } else {
                let state = ConnectionState::new(stream_id, Protocol::InProcess);
                let (tx, conn) = channel(state, CAPACITY);
                let _ = tx.send(packet(0)).await;
                *lock(slot) = Some(tx);
                connects.fetch_add(1, Ordering::Relaxed);
                tokio::spawn(consume(conn, Arc::clone(&delivered), i, connected, gave_up));
            }
        }
        while connected.load(Ordering::Relaxed) < streams {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let connect_secs = started.elapsed().as_secs_f64();
        // Let the runtime and the allocator settle before reading.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rss_after = rss();

        let sent = spawn_feeder(Arc::clone(&slots), RATE);
        tokio::time::sleep(settle()).await;
        let busy0 = machine_busy();
        let (cpu0, wall0, sent0, got0) = (
            cpu_time(),
            std::time::Instant::now(),
            sent.load(Ordering::Relaxed),
            total_delivered(&delivered),
        );
        tokio::time::sleep(cpu_window()).await;
        let (cpu1, wall1, sent1, got1) = (
            cpu_time(),
            std::time::Instant::now(),
            sent.load(Ordering::Relaxed),
            total_delivered(&delivered),
        );
        let busy1 = machine_busy();
        ChildResult {
            rss_before,
            rss_after,
            connect_secs,
            cpu_secs: cpu1 - cpu0,
            other_secs: ((busy1 - busy0) - (cpu1 - cpu0)).max(0.0),
            wall_secs: (wall1 - wall0).as_secs_f64(),
            packets: (sent1 - sent0) as f64,
            delivered: (got1 - got0) as f64,
            connects: connects.load(Ordering::Relaxed) as f64,
            gave_up: gave_up.load(Ordering::Relaxed) as f64,
        }
    });
    println!("{}", result.to_line());
    // The runtime's tasks run forever; leave without waiting for them.
    std::process::exit(0);
}

fn run_child(variant: Variant) -> Option<ChildResult> {
    let exe = std::env::current_exe().expect("the bench's own path");
    let out = Command::new(exe)
        .env(PHASE_VAR, variant.name())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .output()
        .expect("the child runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let result = ChildResult::from_output(&text);
    if result.is_none() {
        eprintln!("child ({}) gave no result: {text}", variant.name());
    }
    result
}

/// How one jitter mode fared in the mass outage.
#[derive(Debug)]
struct OutageResult {
    label: String,
    /// Attempts after the outage began, in seconds since then, and whether each was
    /// a stream's first attempt.
    attempts: Vec<(f64, bool)>,
    /// When each stream was back (its reconnection succeeded), since the outage began.
    back: Vec<f64>,
    /// Attempts each stream made in the reconnection.
    per_stream: Vec<u32>,
    gave_up: usize,
    /// Probes the server answered or not, in all.
    probes: usize,
}

impl OutageResult {
    /// The most attempts in one window of `width` seconds (aligned on the outage's
    /// start); `retries_only` leaves out each stream's first, immediate attempt.
    fn peak(&self, width: f64, retries_only: bool) -> usize {
        let mut buckets: HashMap<i64, usize> = HashMap::new();
        for &(t, first) in &self.attempts {
            if retries_only && first {
                continue;
            }
            *buckets.entry((t / width).floor() as i64).or_default() += 1;
        }
        buckets.values().copied().max().unwrap_or(0)
    }

    /// The most accepted attempts (new connections) in one window of `width` seconds.
    fn peak_accepted(&self, width: f64) -> usize {
        let mut buckets: HashMap<i64, usize> = HashMap::new();
        for &(t, _) in &self.attempts {
            if t >= OUTAGE.as_secs_f64() {
                *buckets.entry((t / width).floor() as i64).or_default() += 1;
            }
        }
        buckets.values().copied().max().unwrap_or(0)
    }

    fn all_back(&self) -> f64 {
        if self.back.len() < streams() {
            return f64::INFINITY;
        }
        self.back.iter().copied().fold(0.0, f64::max)
    }
}

/// The server of the outage runs: records every attempt, refuses while down, and
/// feeds the connections it accepted.
struct Server {
    down_until: Mutex<Option<Instant>>,
    outage_start: Mutex<Option<Instant>>,
    attempts: Mutex<Vec<(f64, bool)>>,
    per_stream: Vec<AtomicU32>,
    slots: Vec<Slot>,
    probes: AtomicUsize,
}

impl Server {
    fn new() -> Self {
        Self {
            down_until: Mutex::new(None),
            outage_start: Mutex::new(None),
            attempts: Mutex::new(Vec::new()),
            per_stream: (0..streams()).map(|_| AtomicU32::new(0)).collect(),
            slots: (0..streams()).map(|_| Slot::default()).collect(),
            probes: AtomicUsize::new(0),
        }
    }

    /// A probe: answered unless the server is down.
    fn probe(&self) -> ProbeOutcome {
        self.probes.fetch_add(1, Ordering::Relaxed);
        let down = self
            .down_until
            .lock()
            .expect("not poisoned")
            .is_some_and(|until| Instant::now() < until);
        if down {
            ProbeOutcome::NoAnswer
        } else {
            ProbeOutcome::Answered
        }
    }

    async fn connect(&self, i: usize, target: Target) -> Result<ChannelConnection, ConnectError> {
        let now = Instant::now();
        if let Some(start) = *self.outage_start.lock().expect("not poisoned") {
            let n = self.per_stream[i].fetch_add(1, Ordering::Relaxed);
            self.attempts
                .lock()
                .expect("not poisoned")
                .push(((now - start).as_secs_f64(), n == 0));
        }
        if self
            .down_until
            .lock()
            .expect("not poisoned")
            .is_some_and(|until| now < until)
        {
            return Err(ConnectError::new(
                ConnectErrorKind::Unreachable,
                "server down",
            ));
        }
        let (tx, conn) = channel(
            ConnectionState::new(target.stream_id, Protocol::InProcess),
            CAPACITY,
        );
        let _ = tx.send(packet(0)).await;
        *lock(&self.slots[i]) = Some(tx);
        Ok(conn)
    }
}

/// The labels of the outage runs with probes.
const PROBED_EQUAL: &str = "equal, probes every 1 s";
const PROBED_FULL: &str = "full, probes every 1 s";

/// The backoff layers of the outage runs.
enum Retry {
    /// Each stream its own layer, its jitter seeded by its index.
    PerStream(Jitter),
    /// One layer for every stream, cloned, as one `ServiceBuilder` reused would give.
    Shared(Box<BackoffRetryLayer<ExponentialBackoff>>),
}

/// Exponential backoff with `ReconnectionConfig`'s default delays (the caller sets
/// the jitter).
fn default_exponential() -> ExponentialBackoff {
    let d = ReconnectionConfig::default();
    ExponentialBackoff::new(d.initial_delay, d.max_delay, d.multiplier)
}

fn outage_run(label: &str, retry: &Retry, probes: bool) -> OutageResult {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a paused runtime");
    rt.block_on(async {
        let server = Arc::new(Server::new());
        let storage: Arc<dyn StateStorage> = Arc::new(MemoryStorage::new());
        let config = ReconnectionConfig::default();
        let back: Arc<Mutex<Vec<f64>>> = Arc::default();
        let connected = Arc::new(AtomicUsize::new(0));
        let gave_up = Arc::new(AtomicUsize::new(0));
        let delivered = delivered_counts();
        let streams = streams();
        for i in 0..streams {
            let events = Events::new(format!("cam{i}"));
            {
                let (server, back) = (Arc::clone(&server), Arc::clone(&back));
                events.on_event(move |e| {
                    if e.event_type == EventType::ReconnectionSucceeded {
                        if let Some(start) = *server.outage_start.lock().expect("not poisoned") {
                            back.lock()
                                .expect("not poisoned")
                                .push(start.elapsed().as_secs_f64());
                        }
                    }
                });
            }
            // Many retries, so that every stream comes back; how many would have given
            // up under the default limit is counted from the attempts.
            let layer = match retry {
                Retry::PerStream(jitter) => {
                    BackoffRetryLayer::new(default_exponential().jitter(*jitter).seed(i as u64 + 1))
                }
                Retry::Shared(layer) => (**layer).clone(),
            }
            .max_retries(100)
            .on_attempt(events.attempt_hook());
            let layer = if probes {
                let server = Arc::clone(&server);
                layer.probe(move |_: &Target| -> Option<ProbeFuture> {
                    let outcome = server.probe();
                    Some(Box::pin(async move { outcome }))
                })
            } else {
                layer
            };
            let connector = {
                let server = Arc::clone(&server);
                tower::service_fn(move |target: Target| {
                    let server = Arc::clone(&server);
                    async move { server.connect(i, target).await }
                })
            };
            let stack = ServiceBuilder::new()
                .layer(layer)
                .layer(TimeoutLayer::new(config.srt.connect_timeout))
                .layer(config.restore_layer(Arc::clone(&storage)))
                .layer(config.detect_layer())
                .layer(HealthLayer::new())
                .service(connector);
            let packets =
                Reconnecting::new(stack, Target::new(format!("cam{i}"), Protocol::InProcess))
                    .events(events)
                    .first_packet_timeout(config.first_packet_timeout)
                    .unverified_backoff(config.backoff());
            tokio::spawn(consume(
                packets,
                Arc::clone(&delivered),
                i,
                Arc::clone(&connected),
                Arc::clone(&gave_up),
            ));
        }
        // The server feeds every connection it holds.
        let feeder = {
            let server = Arc::clone(&server);
            tokio::spawn(async move {
                let mut seq = 0u16;
                let mut interval = tokio::time::interval(Duration::from_secs(1) / OUTAGE_RATE);
                loop {
                    interval.tick().await;
                    seq = seq.wrapping_add(1);
                    for slot in &server.slots {
                        let tx = lock(slot).clone();
                        if let Some(tx) = tx {
                            let _ = tx.send(packet(seq)).await;
                        }
                    }
                }
            })
        };
        // Everyone up and settled.
        while connected.load(Ordering::Relaxed) < streams {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(BEFORE_OUTAGE).await;

        // The outage: every connection drops, and the server refuses for a while.
        let start = Instant::now();
        *server.down_until.lock().expect("not poisoned") = Some(start + OUTAGE);
        *server.outage_start.lock().expect("not poisoned") = Some(start);
        for slot in &server.slots {
            lock(slot).take();
        }
        let limit = start + Duration::from_secs(600);
        while back.lock().expect("not poisoned").len() + gave_up.load(Ordering::Relaxed) < streams
            && Instant::now() < limit
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        feeder.abort();
        let attempts = std::mem::take(&mut *server.attempts.lock().expect("not poisoned"));
        let back = std::mem::take(&mut *back.lock().expect("not poisoned"));
        OutageResult {
            label: label.to_owned(),
            attempts,
            back,
            per_stream: server
                .per_stream
                .iter()
                .map(|n| n.load(Ordering::Relaxed))
                .collect(),
            gave_up: gave_up.load(Ordering::Relaxed),
            probes: server.probes.load(Ordering::Relaxed),
        }
    })
}

/// "1 process", "3 processes".
fn processes(n: usize) -> String {
    format!("{n} process{}", if n == 1 { "" } else { "es" })
}

fn main() {
    if let Ok(name) = std::env::var(PHASE_VAR) {
        if let Some(variant) = Variant::ALL.into_iter().find(|v| v.name() == name) {
            return child(variant);
        }
    }
    let streams = streams();
    let repeats = repeats();
    let cores_here = std::thread::available_parallelism().map_or(0, usize::from);
    let mut section = Section::new(&format!(
        "Scale: {streams} monitored streams in one process"
    ));
    if let Some(notice) = quick::notice() {
        section.para(&notice);
    }
    section.para(&format!(
        "Each stream is the full stack built by a clone of one `ReconnectionConfig::builder()` \
         (retry with backoff, per-attempt timeout, state restore into one shared \
         `MemoryStorage`, failure detection, health) and its `Reconnecting` driver over an \
         in-process `connection::channel` (capacity {CAPACITY}), read by a task of its own. \
         The baseline is the same {streams} channels, each read directly by a task of its own. \
         Runtime: tokio multi-threaded, {WORKERS} workers, on a {cores_here}-core machine."
    ));

    // Memory and CPU, measured in child processes, the variants in turn.
    let mut measured: Vec<(Variant, Vec<ChildResult>)> =
        Variant::ALL.iter().map(|&v| (v, Vec::new())).collect();
    let mut reruns = 0;
    for rep in 0..repeats {
        for (variant, results) in &mut measured {
            progress(&format!(
                "memory and CPU, repeat {}: {}",
                rep + 1,
                variant.name()
            ));
            let mut result = run_child(*variant);
            // Another process busy on this 2-core machine skews the CPU figures: run
            // again, a few times at most in the whole bench.
            while reruns < max_reruns()
                && *variant != Variant::EventBuses
                && result.as_ref().is_some_and(|r| r.other_cores() > BUSY)
            {
                reruns += 1;
                progress(&format!(
                    "  other processes used {:.2} cores meanwhile; again",
                    result.as_ref().map_or(0.0, ChildResult::other_cores)
                ));
                result = run_child(*variant);
            }
            if let Some(r) = &result {
                if *variant != Variant::EventBuses {
                    progress(&format!(
                        "  {:.0} packets/s delivered, {:.3} cores, {} of process CPU per \
                         delivered packet",
                        r.delivered_per_sec(),
                        r.cores(),
                        secs(r.cpu_per_delivered())
                    ));
                }
            }
            results.extend(result);
        }
    }
    let med = |v: &[ChildResult], f: fn(&ChildResult) -> f64| {
        median(&v.iter().map(f).collect::<Vec<_>>())
    };
    let bare = &measured[0].1;
    let stack = &measured[1].1;
    let bare_mem = med(bare, ChildResult::per_stream_memory);
    let stack_mem = med(stack, ChildResult::per_stream_memory);
    let bus_mem = med(&measured[4].1, ChildResult::per_stream_memory);
    section.heading("Memory per stream (measured)");
    section.para(&format!(
        "Resident set size (`VmRSS` of `/proc/self/status`) of a fresh process before creating \
         the streams and after every one has delivered its first packet, divided by {streams}. \
         Median of {} per variant. The system allocator; no custom allocator. \
         The last row creates only the {streams} `Events` buses (one in every `Reconnecting`), \
         to show where the stack's memory goes.",
        processes(repeats),
    ));
    let rows: Vec<Vec<String>> = measured
        .iter()
        .map(|(variant, results)| {
            let per = med(results, ChildResult::per_stream_memory);
            vec![
                variant.label().to_owned(),
                bytes(med(results, |r| r.rss_before)),
                bytes(med(results, |r| r.rss_after)),
                bytes(per),
                ratio(per / bare_mem),
                if *variant == Variant::EventBuses {
                    "—".to_owned()
                } else {
                    secs(med(results, |r| r.connect_secs))
                },
            ]
        })
        .collect();
    section.table(
        &[
            "variant",
            "RSS before",
            "RSS after",
            "per stream",
            "ratio to bare",
            "time to connect all",
        ],
        &rows,
    );
    section.para(&format!(
        "The stack costs {} per stream over a bare channel ({} for {streams} streams); an \
         `Events` bus alone, made as every driver makes one, costs {} per stream ({:.0} % of \
         the stack's excess).",
        bytes(stack_mem - bare_mem),
        bytes((stack_mem - bare_mem) * streams as f64),
        bytes(bus_mem),
        100.0 * bus_mem / (stack_mem - bare_mem),
    ));
    let excess = stack_mem - bare_mem;
    section.target(
        "stack memory per stream over a bare channel",
        "≤ 1.5 KiB",
        &bytes(excess),
        excess <= 1.5 * 1024.0,
    );

    let bare_cores = med(bare, ChildResult::cores);
    let bare_per_packet = med(bare, ChildResult::cpu_per_delivered);
    let share = ticks_per_round(RATE);
    section.heading("CPU while every stream is healthy (measured, real time)");
    section.para(&format!(
        "Each stream receives {RATE} packets/s (one feeder task sends to 1/{share} of the \
         streams every {}), {} packets/s in all. After {} of feeding, process CPU time \
         (`utime + stime` from `/proc/self/stat`, in ticks of {}: the whole process, feeder \
         included) is read over {} of wall time, with the packets the streams' readers \
         received in the same window. Median of {} per variant. \"Cores\" is CPU seconds \
         per wall second ({cores_here} is the whole machine). \"Process CPU per delivered packet\" is \
         the process CPU time of the window divided by the packets delivered to the readers in \
         it, the figure to compare before and after a change to the driver or the layers. \
         \"Connects\" above {streams} would be reconnections after false alarms under load. \
         The last column is the CPU that other processes used during the window (from \
         `/proc/stat`): a window in which they used more than {BUSY} cores is redone ({} \
         times at most in the bench), since a busy machine skews these figures.",
        secs(FEED_TICK.as_secs_f64()),
        RATE as usize * streams,
        secs(settle().as_secs_f64()),
        secs(1.0 / clock_ticks()),
        secs(cpu_window().as_secs_f64()),
        processes(repeats),
        max_reruns(),
    ));
    let rows: Vec<Vec<String>> = measured
        .iter()
        .filter(|(v, _)| *v != Variant::EventBuses)
        .map(|(variant, results)| {
            let cores = med(results, ChildResult::cores);
            let per_packet = med(results, ChildResult::cpu_per_delivered);
            vec![
                variant.label().to_owned(),
                format!("{:.0}", med(results, ChildResult::delivered_per_sec)),
                sig3(cores),
                ratio(cores / bare_cores),
                format!("{} µs", sig3(per_packet * 1e6)),
                ratio(per_packet / bare_per_packet),
                format!("{} µs", sig3((per_packet - bare_per_packet) * 1e6)),
                format!("{:.0}", med(results, |r| r.connects)),
                format!("{:.0}", med(results, |r| r.gave_up)),
                format!("{:.2}", med(results, ChildResult::other_cores)),
            ]
        })
        .collect();
    section.table(
        &[
            "variant",
            "packets/s delivered",
            "cores",
            "cores, ratio to bare",
            "process CPU per delivered packet",
            "per packet, ratio to bare",
            "per packet, over bare",
            "connects",
            "gave up",
            "other processes (cores)",
        ],
        &rows,
    );
    let per_packet = |v: Variant| {
        measured
            .iter()
            .find(|(m, _)| *m == v)
            .map_or(f64::NAN, |(_, r)| med(r, ChildResult::cpu_per_delivered))
    };
    let full = per_packet(Variant::Stack);
    section.para(&format!(
        "Process CPU per delivered packet: full stack {} µs, bare channels {} µs, a ratio of \
         {}; the stack adds {} µs per packet. With `persist_state: false` it adds {} µs, with \
         the adaptive silence detector off {} µs. The hot-path bench measures the per-packet \
         accounting alone, on a busy stream.",
        sig3(full * 1e6),
        sig3(bare_per_packet * 1e6),
        ratio(full / bare_per_packet),
        sig3((full - bare_per_packet) * 1e6),
        sig3((per_packet(Variant::StackNoSave) - bare_per_packet) * 1e6),
        sig3((per_packet(Variant::StackNoSilence) - bare_per_packet) * 1e6),
    ));
    section.target(
        "stack / bare channels, process CPU per delivered packet",
        "≤ ×1.5",
        &ratio(full / bare_per_packet),
        full / bare_per_packet <= 1.5,
    );

    // The mass outage, simulated.
    // Unseeded, as an application would build it: its clones draw their own numbers.
    let shared = BackoffRetryLayer::new(default_exponential().jitter(Jitter::Full));
    let runs: Vec<(String, Retry, bool)> = vec![
        ("none".to_owned(), Retry::PerStream(Jitter::None), false),
        (
            "proportional".to_owned(),
            Retry::PerStream(Jitter::Proportional),
            false,
        ),
        ("full".to_owned(), Retry::PerStream(Jitter::Full), false),
        ("equal".to_owned(), Retry::PerStream(Jitter::Equal), false),
        (
            "decorrelated".to_owned(),
            Retry::PerStream(Jitter::Decorrelated),
            false,
        ),
        (
            "full, one layer cloned for all".to_owned(),
            Retry::Shared(Box::new(shared)),
            false,
        ),
        (
            PROBED_EQUAL.to_owned(),
            Retry::PerStream(Jitter::Equal),
            true,
        ),
        (PROBED_FULL.to_owned(), Retry::PerStream(Jitter::Full), true),
    ];
    let mut results = Vec::new();
    for (label, retry, probes) in &runs {
        progress(&format!("mass outage: jitter {label}"));
        let wall = std::time::Instant::now();
        let r = outage_run(label, retry, *probes);
        progress(&format!("  done in {:?}", wall.elapsed()));
        results.push(r);
    }
    let defaults = ReconnectionConfig::default();
    let max_retries = defaults.max_retries;
    // Attempts a stream makes before giving up under the default limit.
    let attempts_allowed = max_retries + 1;
    section.heading(&format!(
        "Mass outage of all {streams} streams (simulated, tokio paused time)"
    ));
    section.para(&format!(
        "Every stream connected and healthy ({OUTAGE_RATE} packets/s each) for {}; then every \
         connection drops at once and the server refuses every attempt for {} before \
         accepting again. The server records the time of every attempt. Backoff: exponential \
         with `ReconnectionConfig`'s default delays ({} ×{} up to {}), in each jitter mode, \
         each stream's jitter seeded by its index; retries are not limited here so that every \
         stream comes back, and the last column counts the streams that needed more than \
         {attempts_allowed} attempts, which would have given up under the default \
         `max_retries: {max_retries}`. A stream is back when its reconnection succeeds (its new \
         connection delivered a packet). Each stream's first attempt is made at once when its \
         connection drops, whatever the jitter: in every run at least {} of the {streams} \
         first attempts landed in the first 100 ms; \"retries\" peaks leave them out. Peaks count the attempts in the \
         busiest window of 100 ms or 1 s (windows aligned on the start of the outage): \
         {streams} in 100 ms is a rate of {} attempts/s. Ratios are against no jitter. The \
         last row builds one `BackoffRetryLayer` with full jitter and clones it into every \
         stream's stack.",
        secs(BEFORE_OUTAGE.as_secs_f64()),
        secs(OUTAGE.as_secs_f64()),
        secs(defaults.initial_delay.as_secs_f64()),
        sig3(defaults.multiplier),
        secs(defaults.max_delay.as_secs_f64()),
        results
            .iter()
            .map(|r| r.attempts.iter().filter(|&&(t, first)| first && t < 0.1).count())
            .min()
            .unwrap_or(0),
        streams * 10,
    ));
    let none_100 = results[0].peak(0.1, true) as f64;
    let none_1s = results[0].peak(1.0, true) as f64;
    let none_back = results[0].all_back();
    let none_accept = results[0].peak_accepted(0.1) as f64;
    let over_limit = |r: &OutageResult| {
        r.per_stream
            .iter()
            .filter(|&&n| n > attempts_allowed)
            .count()
    };
    let table: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let p100 = r.peak(0.1, true) as f64;
            let p1 = r.peak(1.0, true) as f64;
            let back = r.all_back();
            let attempts: Vec<f64> = r.per_stream.iter().map(|&n| f64::from(n)).collect();
            vec![
                r.label.clone(),
                format!("{}", r.peak(0.1, false)),
                format!("{p100:.0} ({})", ratio(p100 / none_100)),
                format!("{p1:.0} ({})", ratio(p1 / none_1s)),
                format!(
                    "{} ({})",
                    r.peak_accepted(0.1),
                    ratio(r.peak_accepted(0.1) as f64 / none_accept)
                ),
                format!("{}", r.attempts.len()),
                format!("{}", sig3(median(&attempts))),
                secs(median(&r.back)),
                format!(
                    "{} ({} of the outage, {} of none)",
                    secs(back),
                    ratio(back / OUTAGE.as_secs_f64()),
                    ratio(back / none_back)
                ),
                format!("{}", over_limit(r)),
            ]
        })
        .collect();
    let over_header = format!("> {attempts_allowed} attempts");
    section.table(
        &[
            "jitter",
            "peak attempts / 100 ms, all",
            "peak retries / 100 ms (vs none)",
            "peak retries / 1 s (vs none)",
            "peak accepted / 100 ms (vs none)",
            "attempts in all",
            "attempts per stream, median",
            "back, median",
            "all back",
            &over_header,
        ],
        &table,
    );
    if results
        .iter()
        .any(|r| r.gave_up > 0 || r.back.len() < streams)
    {
        let lost: Vec<String> = results
            .iter()
            .filter(|r| r.gave_up > 0 || r.back.len() < streams)
            .map(|r| format!("{}: {} back, {} gave up", r.label, r.back.len(), r.gave_up))
            .collect();
        section.para(&format!("Not all streams came back: {}.", lost.join("; ")));
    }
    let by = |label: &str| results.iter().find(|r| r.label == label);
    if let (Some(prop), Some(full), Some(equal), Some(decor), Some(shared)) = (
        by("proportional"),
        by("full"),
        by("equal"),
        by("decorrelated"),
        by("full, one layer cloned for all"),
    ) {
        let peak = |r: &OutageResult| r.peak(0.1, true) as f64;
        // Whether the clones of one unseeded layer spread their retries as well as
        // layers of their own do (within half again of the per-stream full-jitter peak).
        let clones_spread = peak(shared) <= 1.5 * peak(full);
        section.para(&format!(
            "Proportional jitter: {} of the no-jitter 100 ms peak. Full, equal and \
             decorrelated jitter: {}, {} and {} of it, with {}, {} and {} of the {streams} \
             streams needing more than {attempts_allowed} attempts to outlast a {} outage \
             (they would have given up under the default `max_retries: {max_retries}`). The \
             default jitter is {}. One unseeded `BackoffRetryLayer` with full jitter cloned \
             into every stack: {} retries in its busiest 100 ms window, {} of the no-jitter \
             peak and {} of the per-stream full-jitter layers' peak: {}.",
            ratio(peak(prop) / none_100),
            ratio(peak(full) / none_100),
            ratio(peak(equal) / none_100),
            ratio(peak(decor) / none_100),
            over_limit(full),
            over_limit(equal),
            over_limit(decor),
            secs(OUTAGE.as_secs_f64()),
            defaults.jitter_mode(),
            shared.peak(0.1, true),
            ratio(peak(shared) / none_100),
            ratio(peak(shared) / peak(full)),
            if clones_spread {
                "its clones spread their retries as layers of their own do"
            } else {
                "its clones do not spread their retries as layers of their own do"
            },
        ));
    }
    if let (Some(equal), Some(probed), Some(full), Some(probed_full)) =
        (by("equal"), by(PROBED_EQUAL), by("full"), by(PROBED_FULL))
    {
        let per_stream = |r: &OutageResult| r.probes as f64 / streams as f64;
        section.para(&format!(
            "With probes (the last two rows: every stream probes the server every 1 s, \
             jittered between 0.5 and 1 s, while it waits out a delay, attempts at once \
             when a probe is answered, and once failing for 5 s attempts only then): all back {} after the outage began with equal jitter \
             ({} without probes), {} with full jitter ({} without); peak accepted connects in \
             100 ms {} and {} ({} and {} without), the burst probes bring, spread over one \
             probe interval by its jitter; {} and {} probes per stream in all. A shared \
             `GlobalConcurrencyLimitLayer` around each attempt caps that burst (README).",
            secs(probed.all_back()),
            secs(equal.all_back()),
            secs(probed_full.all_back()),
            secs(full.all_back()),
            probed.peak_accepted(0.1),
            probed_full.peak_accepted(0.1),
            equal.peak_accepted(0.1),
            full.peak_accepted(0.1),
            sig3(per_stream(probed)),
            sig3(per_stream(probed_full)),
        ));
    }
    section.publish("scale");
}
