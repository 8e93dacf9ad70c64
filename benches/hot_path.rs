#![allow(missing_docs)]
//! Per-packet cost of the stack's hot path.
//!
//! - `accounting`: the health layer's lock-free per-packet accounting, against a
//!   mutex-guarded statistics struct (the straightforward design it replaces);
//! - `stream`: polling packets through `Monitored` (health) and
//!   `Detected<Monitored>` (health + failure detection), against polling the bare
//!   connection.
//!
//! Run with `cargo bench --bench hot_path`; criterion prints each figure, and the ratio
//! between the figures of one run is what to read on a shared, noisy machine.

use std::hint::black_box;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use futures_util::Stream;
use mirror_reconnect::connection::{
    Connection, ConnectionError, ConnectionState, Packet, Protocol, Sequence,
};
use mirror_reconnect::detect::{FailureDetectLayer, FailureThresholds};
use mirror_reconnect::health::{HealthChecker, Monitored};
use tokio::time::Instant;

/// The design the health layer replaces: every packet takes a lock.
#[derive(Default)]
struct LockedStats {
    packets: u64,
    bytes: u64,
    last_seen: Option<Instant>,
    highest_seq: Option<u16>,
    lost: u64,
}

/// A connection that hands out the same packet forever, as fast as it is polled.
struct Endless {
    packet: Packet,
    seq: u16,
    state: ConnectionState,
}

impl Endless {
    fn new() -> Self {
        Self {
            packet: Packet::new(Bytes::from(vec![0x47u8; 1316]), Instant::now()),
            seq: 0,
            state: ConnectionState::new("bench", Protocol::InProcess),
        }
    }
}

impl Stream for Endless {
    type Item = Result<Packet, ConnectionError>;
    fn poll_next(mut self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.seq = self.seq.wrapping_add(1);
        let mut packet = self.packet.clone();
        packet.sequence = Some(Sequence::rtp(self.seq));
        Poll::Ready(Some(Ok(packet)))
    }
}

impl Connection for Endless {
    fn state(&self) -> ConnectionState {
        self.state.clone()
    }
}

fn accounting(c: &mut Criterion) {
    let mut group = c.benchmark_group("accounting");
    group.throughput(Throughput::Elements(1));
    let now = Instant::now();

    let checker = HealthChecker::new(None);
    checker.connection_started(now);
    group.bench_function("lock_free", |b| {
        b.iter(|| checker.record_packet(black_box(1316), black_box(now)))
    });

    let locked = Mutex::new(LockedStats::default());
    let mut seq = 0u16;
    group.bench_function("mutex_baseline", |b| {
        b.iter(|| {
            seq = seq.wrapping_add(1);
            let mut s = locked.lock().expect("not poisoned");
            s.packets += 1;
            s.bytes += black_box(1316);
            s.last_seen = Some(black_box(now));
            if let Some(h) = s.highest_seq {
                s.lost += u64::from(seq.wrapping_sub(h).saturating_sub(1));
            }
            s.highest_seq = Some(seq);
        })
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
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a runtime");
    let _guard = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("stream");
    group.throughput(Throughput::Elements(1));

    let mut bare = Endless::new();
    group.bench_function("bare", |b| b.iter(|| poll_one(&mut bare, &mut cx)));

    let mut monitored = Monitored::new(Endless::new(), Arc::new(HealthChecker::new(None)));
    group.bench_function("health", |b| b.iter(|| poll_one(&mut monitored, &mut cx)));

    let detect = FailureDetectLayer::new(FailureThresholds::default())
        .check_interval(Duration::from_secs(1));
    let mut detected = mirror_reconnect::detect::Detected::new(
        Monitored::new(Endless::new(), Arc::new(HealthChecker::new(None))),
        Arc::new(detect.detector().clone()),
    );
    group.bench_function("health_and_detection", |b| {
        b.iter(|| poll_one(&mut detected, &mut cx))
    });
    group.finish();
}

criterion_group!(benches, accounting, stream);
criterion_main!(benches);
