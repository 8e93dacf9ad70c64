//! RedisStorage against a real redis-server: keys and TTL, corrupt values, a Redis
//! that is down or killed mid-stream (the media keeps flowing, saves come back),
//! authentication, and no secret in any stored value.
#![cfg(feature = "redis")]

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mirror_reconnect::connection::{ConnectionState, Protocol, Secret, Target};
use mirror_reconnect::redis::RedisStorage;
use mirror_reconnect::restore::{StateStorage, StorageErrorKind};
use mirror_reconnect::ReconnectionConfig;

use support::feed::Feed;
use support::redis_server::{free_port, RedisServer};

fn state(stream_id: &str) -> ConnectionState {
    let mut state = ConnectionState::new(stream_id, Protocol::Srt);
    state.codec = Some("h264".into());
    state.parameters.insert("latency".into(), "120".into());
    state
}

fn config() -> ReconnectionConfig {
    ReconnectionConfig::from_yaml_str(
        "initial_delay: 10ms\nmax_delay: 50ms\nsave_interval: 20ms\nfirst_packet_timeout: 5s\n",
    )
    .expect("config")
}

/// Wait (real time, generous bound) until `check` holds; how long it took.
async fn eventually(what: &str, bound: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !check() {
        assert!(start.elapsed() < bound, "timed out after {bound:?}: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    start.elapsed()
}

#[tokio::test]
async fn saves_under_prefix_and_stream_id_with_the_state_ttl() {
    let server = RedisServer::start();
    let storage = RedisStorage::builder(server.url())
        .prefix("relay:state")
        .ttl(Duration::from_secs(60))
        .build()
        .expect("open");
    assert_eq!(storage.key("live/cam 1"), "relay:state:live/cam 1");
    let saved = state("live/cam 1");
    storage.save(&saved).await.expect("save");

    let dump = server.dump();
    assert_eq!(dump.len(), 1, "{dump:?}");
    assert_eq!(dump[0].0, "relay:state:live/cam 1");
    let stored: ConnectionState = serde_json::from_str(&dump[0].1).expect("plain JSON state");
    assert_eq!(stored, saved);
    let pttl: i64 = redis::cmd("PTTL")
        .arg("relay:state:live/cam 1")
        .query(&mut server.connection())
        .expect("PTTL");
    assert!(pttl > 50_000 && pttl <= 60_000, "PTTL {pttl}");

    // Another store (a restarted process) reads it back.
    let again = RedisStorage::open(&server.url()).expect("open");
    assert!(
        again.load("live/cam 1").await.expect("load").is_none(),
        "other prefix"
    );
    let same = RedisStorage::builder(server.url())
        .prefix("relay:state")
        .build()
        .expect("open");
    assert_eq!(same.load("live/cam 1").await.expect("load"), Some(saved));
    same.delete("live/cam 1").await.expect("delete");
    assert!(storage.load("live/cam 1").await.expect("load").is_none());
    assert!(server.dump().is_empty());
}

#[tokio::test]
async fn redis_forgets_states_after_the_ttl() {
    let server = RedisServer::start();
    let storage = RedisStorage::builder(server.url())
        .ttl(Duration::from_millis(200))
        .build()
        .expect("open");
    storage.save(&state("cam1")).await.expect("save");
    assert!(storage.load("cam1").await.expect("load").is_some());
    let gone = eventually("the state expires", Duration::from_secs(10), || {
        server.dump().is_empty()
    })
    .await;
    println!("state with a 200 ms TTL gone after {gone:?}");
    assert!(storage.load("cam1").await.expect("load").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_value_is_named_and_the_stream_starts_from_its_target() {
    let server = RedisServer::start();
    let storage = RedisStorage::open(&server.url()).expect("open");
    let key = storage.key("cam1");
    redis::cmd("SET")
        .arg(&key)
        .arg("{ not a state")
        .query::<()>(&mut server.connection())
        .expect("SET");
    let error = storage.load("cam1").await.expect_err("corrupt");
    assert_eq!(error.kind(), StorageErrorKind::Corrupt);
    assert!(error.to_string().contains(&key), "{error}");
    println!("{error}");

    let feed = Feed::new(Duration::from_millis(5));
    let target = Target::new("cam1", Protocol::InProcess)
        .codec("av1")
        .parameter("latency", "200");
    let shared: Arc<dyn StateStorage> = Arc::new(storage.clone());
    let mut packets = config().reconnecting_with(feed.clone(), target.clone(), shared);
    for _ in 0..20 {
        packets.next().await.expect("packet").expect("no error");
    }
    assert_eq!(feed.targets(), vec![target]);
    eventually(
        "a valid state replaces the bad value",
        Duration::from_secs(10),
        || {
            server
                .dump()
                .iter()
                .any(|(_, v)| serde_json::from_str::<ConnectionState>(v).is_ok())
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_is_down_fails_fast_and_gets_the_saves_when_it_is_back() {
    let port = free_port();
    let storage = RedisStorage::builder(format!("redis://127.0.0.1:{port}"))
        .op_timeout(Duration::from_millis(300))
        .retry_interval(Duration::from_millis(100))
        .build()
        .expect("opening does not need Redis up");

    let saved = state("cam1");
    let started = Instant::now();
    let error = storage.save(&saved).await.expect_err("Redis is down");
    let save_took = started.elapsed();
    assert_eq!(error.kind(), StorageErrorKind::Unavailable, "{error}");
    assert!(
        error.to_string().contains(&format!("127.0.0.1:{port}")),
        "{error}"
    );
    println!("save with Redis down failed after {save_took:?}: {error}");
    assert!(save_took < Duration::from_secs(3), "{save_took:?}");

    let started = Instant::now();
    let error = storage.load("other").await.expect_err("Redis is down");
    println!("load with Redis down failed after {:?}", started.elapsed());
    assert_eq!(error.kind(), StorageErrorKind::Unavailable);
    assert!(started.elapsed() < Duration::from_secs(3));
    // The unsaved state is kept, and is what a load of that stream gives meanwhile.
    assert_eq!(storage.pending_count(), 1);
    assert_eq!(
        storage.load("cam1").await.expect("pending"),
        Some(saved.clone())
    );

    let server = RedisServer::start_on(port, &[]);
    let flushed = eventually(
        "the pending save reaches Redis",
        Duration::from_secs(15),
        || !server.dump().is_empty(),
    )
    .await;
    println!("pending save flushed {flushed:?} after Redis came up");
    // The retry task forgets the save just after Redis took it: wait for that too.
    eventually(
        "the flushed save is no longer pending",
        Duration::from_secs(5),
        || storage.pending_count() == 0,
    )
    .await;
    assert_eq!(storage.pending_count(), 0);
    let fresh = RedisStorage::open(&server.url()).expect("open");
    assert_eq!(fresh.load("cam1").await.expect("load"), Some(saved));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn media_keeps_flowing_while_redis_is_killed_and_saves_resume_after_restart() {
    let mut server = RedisServer::start();
    let storage = RedisStorage::builder(server.url())
        .op_timeout(Duration::from_millis(200))
        .retry_interval(Duration::from_millis(100))
        .build()
        .expect("open");
    let feed = Feed::new(Duration::from_millis(2));
    let shared: Arc<dyn StateStorage> = Arc::new(storage.clone());
    let packets = config().reconnecting_with(
        feed.clone(),
        Target::new("cam1", Protocol::InProcess).codec("h264"),
        shared,
    );
    let received = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let consumer = {
        let received = Arc::clone(&received);
        let failed = Arc::clone(&failed);
        tokio::spawn(async move {
            let mut packets = packets;
            while let Some(item) = packets.next().await {
                if item.is_err() {
                    failed.store(true, Ordering::Relaxed);
                    return;
                }
                received.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    eventually("the first save", Duration::from_secs(10), || {
        !server.dump().is_empty()
    })
    .await;

    server.kill();
    let at_kill = received.load(Ordering::Relaxed);
    let outage = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let during = received.load(Ordering::Relaxed) - at_kill;
    println!(
        "packets during 1 s without Redis: {during} (one every 2 ms sent), pending saves: {}",
        storage.pending_count()
    );
    assert!(during > 100, "the media kept flowing: {during} packets");
    assert_eq!(storage.pending_count(), 1, "the failed save is kept");

    server.restart();
    let back = eventually(
        "saves reach the restarted Redis",
        Duration::from_secs(15),
        || !server.dump().is_empty(),
    )
    .await;
    println!(
        "state back in the restarted Redis {back:?} after restart ({:?} after the kill)",
        outage.elapsed()
    );
    let after = received.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received.load(Ordering::Relaxed) > after, "still flowing");
    assert!(!failed.load(Ordering::Relaxed), "the stream never failed");
    assert_eq!(feed.targets().len(), 1, "no reconnect was needed");
    consumer.abort();
}

#[tokio::test]
async fn the_password_in_the_url_authenticates_and_is_never_shown() {
    const PASSWORD: &str = "pw-9d1c-redis-auth";
    let server = RedisServer::start_with(&["--requirepass", PASSWORD]);
    let url = format!("redis://:{PASSWORD}@127.0.0.1:{}", server.port());
    let storage = RedisStorage::open(&url).expect("open");
    storage
        .save(&state("cam1"))
        .await
        .expect("authenticated save");
    assert!(storage.load("cam1").await.expect("load").is_some());
    assert!(!format!("{storage:?}").contains(PASSWORD));

    let anonymous = RedisStorage::open(&server.url()).expect("open");
    let error = anonymous
        .save(&state("cam1"))
        .await
        .expect_err("not authenticated");
    println!("without the password: {error}");
    assert_eq!(error.kind(), StorageErrorKind::Unavailable);

    let wrong = format!("redis://:wrong@127.0.0.1:{}", server.port());
    let error = RedisStorage::open(&wrong)
        .expect("open")
        .load("cam1")
        .await
        .expect_err("wrong password");
    println!("with a wrong password: {error}");
    assert!(!error.to_string().contains("wrong@"), "{error}");
}

#[tokio::test]
async fn bad_urls_are_refused_with_a_reason() {
    let error = RedisStorage::open("http://127.0.0.1:1").expect_err("not redis");
    println!("{error}");
    assert!(error.to_string().contains("invalid Redis URL"), "{error}");
    let tls = RedisStorage::open("rediss://127.0.0.1:1");
    if cfg!(feature = "redis-tls") {
        assert!(tls.is_ok(), "rediss:// opens with the redis-tls feature");
    } else {
        let error = tls.expect_err("no TLS without the feature");
        assert!(error.to_string().contains("redis-tls"), "{error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passphrase_never_reaches_redis() {
    const PASSPHRASE: &str = "correct-horse-battery-staple-51e2";
    let server = RedisServer::start();
    let storage: Arc<dyn StateStorage> = Arc::new(RedisStorage::open(&server.url()).expect("open"));
    let feed = Feed::new(Duration::from_millis(2));
    let target = Target::new("secret-cam", Protocol::InProcess)
        .codec("h264")
        .parameter("latency", "120")
        .passphrase(Secret::new(PASSPHRASE));
    let mut packets = config().reconnecting_with(feed.clone(), target, storage);
    for _ in 0..100 {
        packets.next().await.expect("packet").expect("no error");
    }
    assert_eq!(
        feed.targets()[0].passphrase.as_ref().map(Secret::expose),
        Some(PASSPHRASE)
    );
    drop(packets);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let dump = server.dump();
    assert!(!dump.is_empty(), "something was saved to scan");
    assert!(dump.iter().any(|(_, v)| v.contains("secret-cam")));
    for (key, value) in &dump {
        assert!(
            !key.contains(PASSPHRASE) && !value.contains(PASSPHRASE),
            "{key}: {value}"
        );
        assert!(
            !value.contains("51e2"),
            "{key} holds part of the passphrase"
        );
    }
    println!("scanned {} keys: no passphrase", dump.len());
}
