#![allow(missing_docs)]
//! Save and load latency of the state stores: `MemoryStorage`, `FileStorage` (with
//! its fsyncs, on the temporary directory's file system) and, with the `redis`
//! feature, `RedisStorage` against a `redis-server` this bench starts on a free
//! loopback port (skipped, with a message, when `redis-server` is not installed).
//!
//! Run with `cargo bench --bench state_store --features redis`. `BENCH_QUICK=1` cuts
//! criterion's sample count and times, to check that it runs.

use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mirror_reconnect::connection::{ConnectionState, Protocol};
use mirror_reconnect::restore::{FileStorage, MemoryStorage, StateStorage};
use tokio::runtime::Runtime;

#[cfg(feature = "redis")]
#[path = "../tests/support/ports.rs"]
#[allow(dead_code, unreachable_pub)]
mod ports;

#[cfg(feature = "redis")]
#[path = "../tests/support/redis_server.rs"]
#[allow(dead_code, unreachable_pub)]
mod redis_server;

#[path = "common/quick.rs"]
mod quick;

/// A state of the size a live stream saves: codec, a few parameters, counters.
fn state() -> ConnectionState {
    let mut state = ConnectionState::new("studio/cam 1", Protocol::Srt);
    state.codec = Some("h264".into());
    for (k, v) in [
        ("latency", "120"),
        ("mode", "caller"),
        ("rtp_ssrc", "3735928559"),
        ("rtp_sequence_offset", "41234"),
    ] {
        state.parameters.insert(k.into(), v.into());
    }
    state.statistics.packets_received = 1_234_567;
    state.statistics.bytes_received = 1_624_000_000;
    state.remote_addr = Some(([127, 0, 0, 1], 9000).into());
    state
}

fn bench_store(c: &mut Criterion, rt: &Runtime, name: &str, store: Arc<dyn StateStorage>) {
    let state = state();
    rt.block_on(store.save(&state)).expect("first save");
    let mut group = c.benchmark_group(format!("state_store/{name}"));
    group.bench_function("save", |b| {
        b.iter(|| rt.block_on(store.save(&state)).expect("save"));
    });
    group.bench_function("load", |b| {
        b.iter(|| {
            rt.block_on(store.load(&state.stream_id))
                .expect("load")
                .expect("saved")
        });
    });
    group.finish();
}

fn stores(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    bench_store(c, &rt, "memory", Arc::new(MemoryStorage::new()));

    let dir = tempfile::tempdir().expect("temporary directory");
    bench_store(c, &rt, "file", Arc::new(FileStorage::new(dir.path())));

    redis(c, &rt);
}

#[cfg(feature = "redis")]
fn redis(c: &mut Criterion, rt: &Runtime) {
    if redis_server::which("redis-server").is_none() {
        eprintln!("state_store/redis skipped: redis-server is not installed");
        return;
    }
    let server = redis_server::RedisServer::start();
    let store = {
        let _entered = rt.enter();
        mirror_reconnect::redis::RedisStorage::builder(server.url())
            .ttl(Duration::from_secs(3600))
            .build()
            .expect("redis storage")
    };
    bench_store(c, rt, "redis", Arc::new(store));
    drop(server);
}

#[cfg(not(feature = "redis"))]
fn redis(_c: &mut Criterion, _rt: &Runtime) {
    eprintln!("state_store/redis skipped: build with --features redis");
}

/// Criterion's settings: 50 samples over a few seconds per benchmark, or a fraction of
/// a second with `BENCH_QUICK=1`.
fn config() -> Criterion {
    quick::criterion(
        Criterion::default()
            .sample_size(50)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3)),
    )
}

criterion_group! {
    name = benches;
    config = config();
    targets = stores
}
criterion_main!(benches);
