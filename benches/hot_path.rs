#![allow(missing_docs)]
//! Per-packet cost of the stack's hot path.
//!
//! - `accounting`: one packet polled through the health layer's connection while a
//!   concurrent reader on another thread reads the figures in a tight loop
//!   (`check_health()`), against a wrapper doing the same accounting under a mutex
//!   (the straightforward design it replaces) read by taking the lock: the case of a
//!   metrics reporter, at its most aggressive (uncontended, the same pair is in
//!   `stream`);
//! - `stream`: polling packets through `Monitored` (health) and
//!   `Detected<Monitored>` (health + failure detection), against polling the bare
//!   connection, and against a wrapper doing the same per-packet accounting as
//!   `Monitored` (packets, bytes, last arrival, sequence loss) under a mutex. Each
//!   packet arrives [`GAP`] after the one before it (stamped from the connection's own
//!   advancing value, not from a clock read), so the failure detector learns the gaps
//!   and runs its threshold check every `check_interval` of arrival time inside the
//!   measured loop, as it does on a live stream;
//! - `experiment`: where `record_packet`'s time goes, from a copy of its work in this
//!   file (counters alone, the `Instant` subtraction alone).
//!
//! Run with `cargo bench --bench hot_path`; criterion prints each figure, and the ratio
//! between the figures of one run is what to read on a shared, noisy machine.
//! `BENCH_QUICK=1` cuts criterion's warm-up and measurement times, to check that it runs.

use std::hint::black_box;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::Stream;
use mirror_reconnect::connection::Target;
use mirror_reconnect::connection::{
    Connection, ConnectionError, ConnectionState, Packet, Protocol, Sequence,
};
use mirror_reconnect::detect::{FailureDetectLayer, FailureThresholds};
use mirror_reconnect::health::{HealthLayer, Monitored};
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt};

#[path = "common/quick.rs"]
mod quick;

/// Time between two packets' arrivals in the `stream` group: a 1 000-packet/s stream.
const GAP: Duration = Duration::from_millis(1);
/// How often the detector of the `stream` group checks its thresholds.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The design the health layer replaces: every packet takes a lock.
#[derive(Default)]
struct LockedStats {
    packets: u64,
    bytes: u64,
    last_seen: Option<Instant>,
    highest_seq: Option<u16>,
    lost: u64,
}

/// A connection that hands out packets forever, as fast as it is polled: the same
/// payload, the next sequence number, and an arrival [`GAP`] after the last one.
///
/// The arrival is the connection's own value advanced on every poll, not a clock read:
/// a socket stamps each packet with one clock read, and that cost belongs to the
/// socket, not to the stack measured here. Arrivals therefore run ahead of real time,
/// which nothing on the per-packet path compares them with.
struct Endless {
    packet: Packet,
    seq: u16,
    arrival: Instant,
    polled: u64,
    state: ConnectionState,
}

impl Endless {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            packet: Packet::new(Bytes::from(vec![0x47u8; 1316]), now),
            seq: 0,
            arrival: now,
            polled: 0,
            state: ConnectionState::new("bench", Protocol::InProcess),
        }
    }
}

impl Stream for Endless {
    type Item = Result<Packet, ConnectionError>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        this.seq = this.seq.wrapping_add(1);
        this.arrival += GAP;
        this.polled += 1;
        let mut packet = this.packet.clone();
        packet.sequence = Some(Sequence::rtp(this.seq));
        packet.arrival = this.arrival;
        Poll::Ready(Some(Ok(packet)))
    }
}

impl Connection for Endless {
    fn state(&self) -> ConnectionState {
        self.state.clone()
    }
}

fn accounting(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("accounting");
    group.throughput(Throughput::Elements(1));

    // One packet polled through the health layer's connection while another thread
    // reads the same figures as fast as it can, and the same with the mutex wrapper.
    let mut monitored = open(&runtime, HealthLayer::new());
    let handle = monitored.health().expect("the health layer has a handle");
    let reader = Reader::start(move || {
        black_box(handle.check_health());
    });
    group.bench_function("lock_free_with_reader", |b| {
        b.iter(|| poll_one(&mut monitored, &mut cx))
    });
    reader.stop();

    let mut locked = LockedMonitored {
        inner: Endless::new(),
        stats: Arc::default(),
    };
    let reader = Reader::start({
        let locked = Arc::clone(&locked.stats);
        move || {
            let s = locked.lock().expect("not poisoned");
            black_box((s.packets, s.bytes, s.last_seen, s.lost));
        }
    });
    group.bench_function("mutex_with_reader", |b| {
        b.iter(|| poll_one(&mut locked, &mut cx))
    });
    reader.stop();
    group.finish();
}

/// A current-thread runtime with timers, for the failure detector's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime")
}

/// One connection of an endless connector, opened through `layer` as a program would.
fn open<L>(runtime: &tokio::runtime::Runtime, layer: L) -> <L::Service as Service<Target>>::Response
where
    L: Layer<Connector>,
    L::Service: Service<Target>,
    <L::Service as Service<Target>>::Error: std::fmt::Debug,
{
    let connector: Connector =
        tower::service_fn(|_: Target| std::future::ready(Ok(Endless::new())));
    runtime
        .block_on(
            layer
                .layer(connector)
                .oneshot(Target::new("bench", Protocol::InProcess)),
        )
        .expect("the endless connector connects")
}

/// The connector under every stack of this bench.
type Connector = tower::util::ServiceFn<
    fn(Target) -> std::future::Ready<Result<Endless, std::convert::Infallible>>,
>;

/// A thread calling `read` in a loop until stopped.
struct Reader {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<u64>,
}

impl Reader {
    fn start(read: impl Fn() + Send + 'static) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut reads = 0u64;
            while !flag.load(Ordering::Relaxed) {
                read();
                reads += 1;
            }
            reads
        });
        Self { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let reads = self.thread.join().expect("reader thread");
        eprintln!("(the reader read {reads} times)");
    }
}

/// A connection wrapper that counts each packet under a mutex: the stream-level
/// counterpart of `Monitored`, for a like-for-like comparison.
struct LockedMonitored<C> {
    inner: C,
    stats: Arc<Mutex<LockedStats>>,
}

impl<C: Stream<Item = Result<Packet, ConnectionError>> + Unpin> Stream for LockedMonitored<C> {
    type Item = Result<Packet, ConnectionError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let Some(Ok(packet)) = &item {
            let mut s = self.stats.lock().expect("not poisoned");
            s.packets += 1;
            s.bytes += packet.payload.len() as u64;
            s.last_seen = Some(packet.arrival);
            if let Some(seq) = packet.sequence {
                let seq = seq.value() as u16;
                if let Some(h) = s.highest_seq {
                    s.lost += u64::from(seq.wrapping_sub(h).saturating_sub(1));
                }
                s.highest_seq = Some(seq);
            }
        }
        Poll::Ready(item)
    }
}

/// Where `record_packet`'s time goes: a copy of its work, and the copy without each
/// part, so that the cost of each part shows.
fn experiment(c: &mut Criterion) {
    use std::sync::atomic::AtomicU64;
    use std::sync::atomic::Ordering::Relaxed;
    struct Copy {
        epoch: Instant,
        packets: AtomicU64,
        bytes: AtomicU64,
        last_seen: AtomicU64,
    }
    fn bump(counter: &AtomicU64, n: u64) {
        counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
    }
    let copy = Copy {
        epoch: Instant::now(),
        packets: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        last_seen: AtomicU64::new(0),
    };
    let std_epoch = std::time::Instant::now();
    let now = Instant::now();
    let std_now = now.into_std();
    let mut group = c.benchmark_group("experiment");
    group.throughput(Throughput::Elements(1));
    group.bench_function("record_packet_copy", |b| {
        b.iter(|| {
            let at = black_box(now);
            bump(&copy.packets, 1);
            bump(&copy.bytes, black_box(1316));
            let d = at.saturating_duration_since(copy.epoch);
            let n = d
                .as_secs()
                .wrapping_mul(1_000_000_000)
                .wrapping_add(u64::from(d.subsec_nanos()));
            copy.last_seen.store(n.min(u64::MAX - 1), Relaxed);
        })
    });
    group.bench_function("counters_only", |b| {
        b.iter(|| {
            bump(&copy.packets, 1);
            bump(&copy.bytes, black_box(1316));
        })
    });
    group.bench_function("tokio_saturating_duration_since", |b| {
        b.iter(|| black_box(black_box(now).saturating_duration_since(copy.epoch)))
    });
    group.bench_function("std_saturating_duration_since", |b| {
        b.iter(|| black_box(black_box(std_now).saturating_duration_since(std_epoch)))
    });
    group.finish();
}

fn poll_one<S: Stream + Unpin>(stream: &mut S, cx: &mut Context<'_>) {
    match Pin::new(stream).poll_next(cx) {
        Poll::Ready(Some(item)) => {
            black_box(item);
        }
        _ => unreachable!("endless"),
    }
}

fn stream(c: &mut Criterion) {
    let runtime = runtime();
    let _guard = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(1));

    let mut bare = Endless::new();
    group.bench_function("bare", |b| b.iter(|| poll_one(&mut bare, &mut cx)));

    let mut monitored = open(&runtime, HealthLayer::new());
    group.bench_function("health", |b| b.iter(|| poll_one(&mut monitored, &mut cx)));

    let mut locked = LockedMonitored {
        inner: Endless::new(),
        stats: Arc::default(),
    };
    group.bench_function("mutex_baseline", |b| {
        b.iter(|| poll_one(&mut locked, &mut cx))
    });

    let detect =
        FailureDetectLayer::new(FailureThresholds::default()).check_interval(CHECK_INTERVAL);
    let mut detected = open(
        &runtime,
        ServiceBuilder::new()
            .layer(detect)
            .layer(HealthLayer::new()),
    );
    group.bench_function("health_and_detection", |b| {
        b.iter(|| poll_one(&mut detected, &mut cx))
    });
    group.finish();
    report_detection(&detected);
}

/// Check that the detector of the `stream` group did its per-packet work (learned the
/// packets' rhythm, ran its threshold checks) and say what it did, on stderr and in
/// `target/bench-results/hot_path.stream.md` for scripts/bench.sh.
fn report_detection(detected: &mirror_reconnect::detect::Detected<Monitored<Endless>>) {
    let endless = detected.get_ref().get_ref();
    let span = endless.polled as f64 * GAP.as_secs_f64();
    let silence = detected.silence_detector();
    let mean_gap = silence.mean_gap();
    // The first check is due one interval after the first packet, then every interval.
    let checks = (span / CHECK_INTERVAL.as_secs_f64()).floor() as u64;
    let text = format!(
        "In `stream/health_and_detection`, warm-up and measurement together, {} packets \
         were polled, each arriving {GAP:?} after the one before ({span:.0} s of arrival \
         time): the detector learned a mean gap of {mean_gap:?} and a silence limit of {:?}, \
         and ran its threshold check, due every {CHECK_INTERVAL:?} of arrival time, about \
         {checks} times, each within a measured poll.",
        endless.polled,
        silence.limit(),
    );
    eprintln!("{text}");
    // Learning ran on every packet: a mean gap other than GAP means it did not.
    let off = mean_gap.as_secs_f64() / GAP.as_secs_f64() - 1.0;
    assert!(
        off.abs() < 0.01 && checks > 0,
        "the detector did not run on the measured path: {text}"
    );
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench-results");
    if let Err(e) = std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(dir.join("hot_path.stream.md"), format!("{text}\n")))
    {
        eprintln!("could not write {}: {e}", dir.display());
    }
}

/// Criterion's settings: a few seconds per benchmark, or a fraction of a second with
/// `BENCH_QUICK=1`.
fn config() -> Criterion {
    quick::criterion(
        Criterion::default()
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(3)),
    )
}

criterion_group! {
    name = benches;
    config = config();
    targets = accounting, stream, experiment
}
criterion_main!(benches);
