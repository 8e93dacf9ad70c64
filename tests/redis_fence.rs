//! Fenced saves against a real redis-server: the owner of a stream's lease saves its
//! state; once another owner has taken the lease over, the old owner's saves (periodic,
//! final, or pending from an outage) are refused and never land over the new owner's.
#![cfg(feature = "redis")]

mod support;

use std::error::Error as _;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mirror_reconnect::connection::{ConnectionState, Protocol, Target};
use mirror_reconnect::redis::{FencedStorage, LeaseError, LeaseManager, LeaseWatch, RedisStorage};
use mirror_reconnect::restore::{StateStorage, StorageError, StorageErrorKind};
use mirror_reconnect::ReconnectionConfig;
use serde_json::{json, Value};

use support::feed::Feed;
use support::process::ChildGuard;
use support::redis_server::RedisServer;
use support::tcp_proxy::TcpProxy;

const STREAM: &str = "cam1";

fn manager(url: &str, owner: &str, ttl: Duration) -> LeaseManager {
    LeaseManager::builder(url, owner)
        .ttl(ttl)
        .retry_interval(Duration::from_millis(20))
        .build()
        .expect("lease manager")
}

fn storage(url: &str) -> RedisStorage {
    RedisStorage::builder(url)
        .ttl(Duration::from_secs(60))
        .op_timeout(Duration::from_millis(200))
        .retry_interval(Duration::from_millis(50))
        .build()
        .expect("storage")
}

/// A state of [`STREAM`] that says who saved it.
fn state_by(origin: &str) -> ConnectionState {
    let mut state = ConnectionState::new(STREAM, Protocol::Srt);
    state.codec = Some("h264".into());
    state.parameters.insert("origin".into(), origin.into());
    state
}

/// Who saved the state stored for [`STREAM`], read straight from Redis.
fn stored_origin(server: &RedisServer) -> Option<String> {
    let json: Option<String> = redis::cmd("GET")
        .arg(format!("mirror_reconnect:state:{STREAM}"))
        .query(&mut server.connection())
        .expect("GET");
    let state: ConnectionState = serde_json::from_str(&json?).expect("a stored state");
    state.parameters.get("origin").cloned()
}

/// Acquire [`STREAM`] as soon as it is free (real time, generous bound), and keep it.
async fn take_over(leases: &LeaseManager, bound: Duration) -> LeaseWatch {
    let start = Instant::now();
    loop {
        if let Some(lease) = leases.try_acquire(STREAM).await.expect("redis") {
            println!(
                "{} took {STREAM} over after {:?}",
                leases.owner(),
                start.elapsed()
            );
            return lease.keep_alive();
        }
        assert!(start.elapsed() < bound, "no take-over within {bound:?}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Wait (real time, generous bound) until `check` holds.
async fn eventually(what: &str, bound: Duration, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < bound, "timed out after {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Whether `error` is a save refused because the lease holding `token` is lost.
fn fenced_out(error: &StorageError, token: u64) -> bool {
    let lost = error
        .source()
        .and_then(|e| e.downcast_ref::<LeaseError>())
        .is_some_and(|e| matches!(e, LeaseError::Lost { stream_id, token: t } if stream_id == STREAM && *t == token));
    lost && error.kind() == StorageErrorKind::FencedOut
}

fn addr(server: &RedisServer) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], server.port()))
}

#[tokio::test]
async fn an_owners_fenced_saves_land_and_other_streams_are_not_fenced() {
    let server = RedisServer::start();
    let a = manager(&server.url(), "relay-a", Duration::from_secs(5));
    let watch = a.acquire(STREAM).await.keep_alive();
    let store = storage(&server.url()).fenced(&watch);
    assert_eq!(store.stream_id(), STREAM);
    assert_eq!(store.token(), watch.token());
    println!("{store:?}");

    store.save(&state_by("a")).await.expect("the owner saves");
    assert_eq!(stored_origin(&server).as_deref(), Some("a"));
    let pttl: i64 = redis::cmd("PTTL")
        .arg(store.get_ref().key(STREAM))
        .query(&mut server.connection())
        .expect("PTTL");
    assert!(
        pttl > 50_000 && pttl <= 60_000,
        "the state TTL is kept: {pttl}"
    );
    let saved = store.load(STREAM).await.expect("load").expect("saved");
    assert_eq!(saved.parameters["origin"], "a");

    // The owner may delete its state, and save again.
    store.delete(STREAM).await.expect("the owner deletes");
    assert_eq!(stored_origin(&server), None);
    store.save(&state_by("a")).await.expect("the owner saves");

    // Another stream, with no lease at all, is saved as by the plain store.
    let other = ConnectionState::new("cam2", Protocol::Srt);
    store.save(&other).await.expect("not fenced");
    assert_eq!(store.load("cam2").await.expect("load"), Some(other));
    assert_eq!(store.get_ref().pending_count(), 0);
    assert!(watch.release().await.expect("redis"));
}

#[tokio::test]
async fn after_a_take_over_the_old_owners_saves_are_refused_and_never_retried() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(300);
    let a = manager(&server.url(), "relay-a", ttl);
    let b = manager(&server.url(), "relay-b", ttl);
    let watch_a = a.acquire(STREAM).await.keep_alive();
    let token_a = watch_a.token();
    let store_a = storage(&server.url()).fenced(&watch_a);
    store_a
        .save(&state_by("a"))
        .await
        .expect("a owns the stream");

    // A stops renewing (frozen, say) without knowing; B takes over once it expired.
    drop(watch_a);
    let watch_b = take_over(&b, Duration::from_secs(10)).await;
    assert!(watch_b.token() > token_a);
    let store_b = storage(&server.url()).fenced(&watch_b);
    store_b
        .save(&state_by("b"))
        .await
        .expect("b owns the stream");

    let error = store_a
        .save(&state_by("a"))
        .await
        .expect_err("a is fenced out");
    println!("{error}");
    assert!(fenced_out(&error, token_a), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("fenced out") && text.contains("lease"),
        "{text}"
    );
    assert!(text.contains(STREAM), "{text}");
    assert!(text.contains(&format!("fencing token {token_a}")), "{text}");
    assert_eq!(store_a.get_ref().pending_count(), 0, "never retried");

    let error = store_a.delete(STREAM).await.expect_err("a is fenced out");
    assert!(fenced_out(&error, token_a), "{error:?}");

    assert_eq!(store_a.get_ref().flush().await, 0);
    assert_eq!(stored_origin(&server).as_deref(), Some("b"));
    store_b.save(&state_by("b2")).await.expect("b still saves");
    assert_eq!(stored_origin(&server).as_deref(), Some("b2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_that_lost_its_lease_keeps_streaming_but_its_periodic_saves_never_land() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(300);
    let a = manager(&server.url(), "relay-a", ttl);
    let b = manager(&server.url(), "relay-b", ttl);
    let watch_a = a.acquire(STREAM).await.keep_alive();
    let store_a: Arc<dyn StateStorage> = Arc::new(storage(&server.url()).fenced(&watch_a));
    let config = ReconnectionConfig::from_yaml_str(
        "initial_delay: 10ms\nmax_delay: 50ms\nsave_interval: 20ms\n",
    )
    .expect("config");
    let target = Target::new(STREAM, Protocol::InProcess)
        .codec("h264")
        .parameter("origin", "a");
    let packets = config.reconnecting_with(Feed::new(Duration::from_millis(2)), target, store_a);
    let received = Arc::new(AtomicU64::new(0));
    let consumer = {
        let received = Arc::clone(&received);
        tokio::spawn(async move {
            let mut packets = packets;
            while let Some(Ok(_)) = packets.next().await {
                received.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    eventually("a saves its state", Duration::from_secs(10), || {
        stored_origin(&server).as_deref() == Some("a")
    })
    .await;

    // A goes on producing, unaware that its lease expired and B took the stream.
    drop(watch_a);
    let watch_b = take_over(&b, Duration::from_secs(10)).await;
    let store_b = storage(&server.url()).fenced(&watch_b);
    store_b
        .save(&state_by("b"))
        .await
        .expect("b owns the stream");
    // A's saves go on every 20 ms; none of them may replace B's state.
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(stored_origin(&server).as_deref(), Some("b"));
    }
    let before = received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        received.load(Ordering::Relaxed) > before && !consumer.is_finished(),
        "a's media was never held up"
    );
    consumer.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_save_is_dropped_when_the_lease_moved_during_a_partition() {
    let server = RedisServer::start();
    let proxy = TcpProxy::start(addr(&server)).await;
    let cut_off = format!("redis://127.0.0.1:{}", proxy.port());
    let ttl = Duration::from_millis(500);
    // A reaches Redis through the proxy; B directly.
    let a = manager(&cut_off, "relay-a", ttl);
    let b = manager(&server.url(), "relay-b", ttl);
    let watch_a = a.acquire(STREAM).await.keep_alive();
    let token_a = watch_a.token();
    let store_a = storage(&cut_off).fenced(&watch_a);
    store_a
        .save(&state_by("a1"))
        .await
        .expect("a owns the stream");

    proxy.cut();
    let started = Instant::now();
    let error = store_a
        .save(&state_by("a2"))
        .await
        .expect_err("cut off from Redis");
    println!(
        "save while cut off failed after {:?}: {error}",
        started.elapsed()
    );
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    assert_eq!(store_a.get_ref().pending_count(), 1, "kept to be retried");

    let watch_b = take_over(&b, Duration::from_secs(10)).await;
    assert!(watch_b.token() > token_a);
    storage(&server.url())
        .fenced(&watch_b)
        .save(&state_by("b"))
        .await
        .expect("b owns the stream");

    // A's retries reach Redis again, find the lease moved, and give the save up.
    proxy.heal();
    eventually(
        "the fenced-out pending save is dropped",
        Duration::from_secs(15),
        || store_a.get_ref().pending_count() == 0,
    )
    .await;
    assert_eq!(stored_origin(&server).as_deref(), Some("b"));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        stored_origin(&server).as_deref(),
        Some("b"),
        "and never lands"
    );
    assert_eq!(store_a.get_ref().pending_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_save_lands_when_the_lease_is_still_ours_after_a_partition() {
    let server = RedisServer::start();
    let proxy = TcpProxy::start(addr(&server)).await;
    let cut_off = format!("redis://127.0.0.1:{}", proxy.port());
    // A lease long enough to outlast the partition.
    let a = manager(&cut_off, "relay-a", Duration::from_secs(30));
    let watch = a.acquire(STREAM).await.keep_alive();
    let store = storage(&cut_off).fenced(&watch);
    store
        .save(&state_by("a1"))
        .await
        .expect("a owns the stream");

    proxy.cut();
    let error = store
        .save(&state_by("a2"))
        .await
        .expect_err("cut off from Redis");
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    let pending = store.load(STREAM).await.expect("pending").expect("a2");
    assert_eq!(
        pending.parameters["origin"], "a2",
        "the pending state is loaded"
    );
    proxy.heal();
    eventually("the pending save lands", Duration::from_secs(15), || {
        stored_origin(&server).as_deref() == Some("a2")
    })
    .await;
    // The retry task forgets the save just after Redis took it: wait for that too.
    eventually(
        "the landed save is no longer pending",
        Duration::from_secs(5),
        || store.get_ref().pending_count() == 0,
    )
    .await;
    assert_eq!(store.get_ref().pending_count(), 0);
    assert!(watch.is_held());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fenced_save_while_redis_is_down_fails_fast_and_is_dropped_if_the_lease_is_gone() {
    let mut server = RedisServer::start();
    let a = manager(&server.url(), "relay-a", Duration::from_secs(5));
    let watch = a.acquire(STREAM).await.keep_alive();
    let store = storage(&server.url()).fenced(&watch);

    server.kill();
    let started = Instant::now();
    let error = store.save(&state_by("a")).await.expect_err("Redis is down");
    let took = started.elapsed();
    println!("fenced save with Redis down failed after {took:?}: {error}");
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    assert!(
        error
            .to_string()
            .contains(&format!("127.0.0.1:{}", server.port())),
        "{error}"
    );
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(store.get_ref().pending_count(), 1);

    // Redis comes back empty: the lease is gone with everything else, so the pending
    // save is not this owner's to make any more.
    server.restart();
    eventually(
        "the pending save is given up",
        Duration::from_secs(15),
        || store.get_ref().pending_count() == 0,
    )
    .await;
    assert_eq!(stored_origin(&server), None);
    assert!(server.dump().is_empty(), "{:?}", server.dump());
}

// ---------------------------------------------------------------------------------
// A relay process frozen with SIGSTOP past its lease.

const CHILD_ENV: &str = "MIRROR_FENCE_CHILD";

fn emit(line: Value) {
    println!("{line}");
}

/// A relay that owns [`STREAM`], saving its state every 20 ms through a fenced store,
/// until it learns its lease is lost; then it tries a final save and reports it. Run
/// by [`a_frozen_owner_never_writes_over_the_new_owners_state`].
#[test]
#[ignore = "run as a child process by a_frozen_owner_never_writes_over_the_new_owners_state"]
fn fenced_relay_child() {
    let Ok(url) = std::env::var(CHILD_ENV) else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let leases = manager(&url, "relay-child", Duration::from_millis(500));
        let watch = leases.acquire(STREAM).await.keep_alive();
        let store = storage(&url).fenced(&watch);
        let token = store.token();
        let config = ReconnectionConfig::from_yaml_str(
            "initial_delay: 10ms\nmax_delay: 50ms\nsave_interval: 20ms\n",
        )
        .expect("config");
        let target = Target::new(STREAM, Protocol::InProcess)
            .codec("h264")
            .parameter("origin", "child");
        let shared: Arc<dyn StateStorage> = Arc::new(store.clone());
        let mut packets = config
            .reconnecting_with(Feed::new(Duration::from_millis(2)), target, shared)
            .cancel_token(watch.lost_token());
        emit(json!({"event": "owning", "token": token}));
        while let Some(Ok(_)) = packets.next().await {}
        let state = packets
            .connection_state()
            .unwrap_or_else(|| state_by("child"));
        let result = store.save(&state).await;
        emit(json!({"event": "final save", "token": token,
                    "refused": result.as_ref().err().is_some_and(|e| fenced_out(e, token)),
                    "error": result.err().map(|e| e.to_string())}));
    });
}

fn spawn_child(url: &str, log: &Arc<Mutex<Vec<Value>>>) -> ChildGuard {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "fenced_relay_child", "--nocapture", "--ignored"])
        .env(CHILD_ENV, url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn relay");
    let stdout = child.stdout.take().expect("stdout");
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                log.lock().unwrap_or_else(|p| p.into_inner()).push(value);
            }
        }
    });
    ChildGuard::new("fenced relay", child)
}

fn logged(log: &Arc<Mutex<Vec<Value>>>, event: &str) -> Option<Value> {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .find(|v| v["event"] == event)
        .cloned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_owner_never_writes_over_the_new_owners_state() {
    let server = RedisServer::start();
    let log = Arc::new(Mutex::new(Vec::new()));
    let child = spawn_child(&server.url(), &log);
    eventually("the child saves as owner", Duration::from_secs(30), || {
        logged(&log, "owning").is_some() && stored_origin(&server).as_deref() == Some("child")
    })
    .await;
    let child_token = logged(&log, "owning")
        .and_then(|v| v["token"].as_u64())
        .expect("the child's token");

    // Frozen past its lease: another owner takes over and saves.
    child.signal("STOP");
    let b = manager(&server.url(), "relay-b", Duration::from_secs(30));
    let watch_b = take_over(&b, Duration::from_secs(10)).await;
    assert!(watch_b.token() > child_token);
    let store_b: FencedStorage = storage(&server.url()).fenced(&watch_b);
    store_b
        .save(&state_by("b"))
        .await
        .expect("b owns the stream");

    // Thawed, the child saves what it had (pending, periodic, final): all refused.
    child.signal("CONT");
    let start = Instant::now();
    let final_save = loop {
        assert_eq!(stored_origin(&server).as_deref(), Some("b"));
        if let Some(found) = logged(&log, "final save") {
            break found;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "the child never stopped"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    println!("thawed owner's final save: {final_save}");
    assert_eq!(final_save["refused"], true, "{final_save}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(stored_origin(&server).as_deref(), Some("b"));
    drop(child);
}
