//! Stream leases against a real redis-server: one owner at a time, fencing tokens
//! that grow, take-over after an owner dies (SIGKILL) or freezes (SIGSTOP), and the
//! new owner resuming from the saved state.
#![cfg(feature = "redis")]

mod support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::redis::{LeaseManager, RedisStorage};
use mirror_reconnect::restore::StateStorage;
use mirror_reconnect::ReconnectionConfig;
use serde_json::{json, Value};
use tower::Service;

use support::feed::Feed;
use support::process::ChildGuard;
use support::redis_server::RedisServer;

fn manager(server: &RedisServer, owner: &str, ttl: Duration) -> LeaseManager {
    LeaseManager::builder(server.url(), owner)
        .ttl(ttl)
        .build()
        .expect("lease manager")
}

#[tokio::test]
async fn one_owner_at_a_time_and_tokens_grow() {
    let server = RedisServer::start();
    let a = manager(&server, "relay-a", Duration::from_secs(5));
    let b = manager(&server, "relay-b", Duration::from_secs(5));

    let mut lease = a.try_acquire("cam1").await.expect("redis").expect("free");
    assert_eq!(lease.token(), 1);
    assert!(lease.is_valid());
    assert!(b.try_acquire("cam1").await.expect("redis").is_none());
    assert!(
        a.try_acquire("cam1").await.expect("redis").is_none(),
        "not twice either"
    );
    assert_eq!(
        b.holder("cam1").await.expect("redis"),
        Some(("relay-a".to_owned(), 1))
    );
    // Another stream is independent.
    assert_eq!(
        b.try_acquire("cam2")
            .await
            .expect("redis")
            .expect("free")
            .token(),
        1
    );

    lease.renew().await.expect("still ours");
    assert!(lease.release().await.expect("redis"), "released");
    assert_eq!(b.holder("cam1").await.expect("redis"), None);
    let next = b.try_acquire("cam1").await.expect("redis").expect("free");
    assert_eq!(next.token(), 2);
    let value: String = redis::cmd("GET")
        .arg(a.lease_key("cam1"))
        .query(&mut server.connection())
        .expect("GET");
    assert_eq!(value, "relay-b#2", "the lease value carries the token");
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_and_its_old_owner_learns_it_is_lost() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(300);
    let a = manager(&server, "relay-a", ttl);
    let b = manager(&server, "relay-b", ttl);
    let mut old = a.try_acquire("cam1").await.expect("redis").expect("free");
    tokio::time::sleep(ttl * 2).await;
    assert!(!old.is_valid(), "past its validity");

    let new = b
        .try_acquire("cam1")
        .await
        .expect("redis")
        .expect("expired");
    assert!(new.token() > old.token());
    let error = old.renew().await.expect_err("lost");
    assert!(error.is_lost(), "{error}");
    println!("{error}");
    assert!(!old.is_valid());
    // The old owner's release must not delete the new owner's lease.
    let renewed = b.try_acquire("cam1").await.expect("redis");
    assert!(renewed.is_none());
    assert_eq!(
        a.holder("cam1").await.expect("redis"),
        Some(("relay-b".to_owned(), new.token()))
    );
}

#[tokio::test]
async fn keep_alive_holds_the_lease_past_its_ttl_until_released() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(400);
    let a = manager(&server, "relay-a", ttl);
    let b = manager(&server, "relay-b", ttl);
    let watch = a
        .try_acquire("cam1")
        .await
        .expect("redis")
        .expect("free")
        .keep_alive();
    for _ in 0..6 {
        tokio::time::sleep(ttl / 2).await;
        assert!(watch.is_held());
        assert!(b.try_acquire("cam1").await.expect("redis").is_none());
    }
    assert!(watch.release().await.expect("redis"));
    let taken = b
        .try_acquire("cam1")
        .await
        .expect("redis")
        .expect("released");
    assert_eq!(taken.token(), 2);
}

#[tokio::test]
async fn an_unhealthy_owner_hands_the_stream_over_at_once() {
    let server = RedisServer::start();
    let ttl = Duration::from_secs(3);
    let a = manager(&server, "relay-a", ttl);
    let b = manager(&server, "relay-b", ttl);
    let healthy = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let watch = {
        let healthy = Arc::clone(&healthy);
        a.try_acquire("cam1")
            .await
            .expect("redis")
            .expect("free")
            .keep_alive_while(move || healthy.load(std::sync::atomic::Ordering::Relaxed))
    };
    tokio::time::sleep(ttl / 2).await;
    assert!(watch.is_held(), "renewed while healthy");
    healthy.store(false, std::sync::atomic::Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::timeout(ttl, watch.lost())
        .await
        .expect("gives the lease up at the next renewal");
    assert!(!watch.is_held());
    println!(
        "unhealthy owner let go after {:?}: {:?}",
        started.elapsed(),
        watch.lost_reason()
    );
    // Released, not left to expire: the other relay gets it well within the TTL.
    let taken = loop {
        if let Some(lease) = b.try_acquire("cam1").await.expect("redis") {
            break lease;
        }
        assert!(started.elapsed() < ttl, "the lease was left to expire");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    println!(
        "taken over {:?} after the owner turned unhealthy",
        started.elapsed()
    );
    assert_eq!(taken.token(), 2);
}

#[tokio::test]
async fn an_owner_that_cannot_reach_redis_stops_within_the_lease_time() {
    let mut server = RedisServer::start();
    let ttl = Duration::from_millis(600);
    let a = manager(&server, "relay-a", ttl);
    let watch = a
        .try_acquire("cam1")
        .await
        .expect("redis")
        .expect("free")
        .keep_alive();
    server.kill();
    let started = Instant::now();
    tokio::time::timeout(ttl * 5, watch.lost())
        .await
        .expect("lost within the lease time");
    let took = started.elapsed();
    println!(
        "lease lost {took:?} after Redis died (ttl {ttl:?}): {:?}",
        watch.lost_reason()
    );
    assert!(!watch.is_held());
    assert!(took <= ttl + Duration::from_millis(500), "{took:?}");
    assert!(!watch.release().await.expect("nothing to release"));
}

// ---------------------------------------------------------------------------------
// Relay processes sharing one Redis.

const CHILD_ENV: &str = "MIRROR_LEASE_CHILD";
const STREAM: &str = "cam-leased";

fn wall_nanos(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos()
}

/// The wall-clock time of a tokio instant, for comparing across processes.
fn wall_of(at: tokio::time::Instant) -> u128 {
    let now = tokio::time::Instant::now();
    let wall = SystemTime::now();
    let wall = if at >= now {
        wall + (at - now)
    } else {
        wall - (now - at)
    };
    wall_nanos(wall)
}

fn emit(line: Value) {
    println!("{line}");
}

/// A relay: waits for the lease, produces the stream while it holds it, goes back to
/// waiting when it loses it. Run by [`leases_never_overlap_when_owners_are_killed_or_frozen`].
#[test]
#[ignore = "run as a child process by leases_never_overlap_when_owners_are_killed_or_frozen"]
fn lease_relay_child() {
    let Ok(owner) = std::env::var(CHILD_ENV) else {
        return;
    };
    let url = std::env::var("MIRROR_REDIS_URL").expect("MIRROR_REDIS_URL");
    let ttl = Duration::from_millis(
        std::env::var("MIRROR_LEASE_TTL_MS")
            .expect("MIRROR_LEASE_TTL_MS")
            .parse()
            .expect("ms"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(relay(owner, url, ttl));
}

async fn relay(owner: String, url: String, ttl: Duration) {
    let leases = LeaseManager::builder(&url, &owner)
        .ttl(ttl)
        .retry_interval(ttl / 20)
        .build()
        .expect("leases");
    let storage: Arc<dyn StateStorage> = Arc::new(
        RedisStorage::builder(&url)
            .ttl(Duration::from_secs(60))
            .build()
            .expect("storage"),
    );
    let config = ReconnectionConfig::from_yaml_str(
        "initial_delay: 10ms\nmax_delay: 50ms\nsave_interval: 20ms\n",
    )
    .expect("config");
    emit(json!({"event": "ready", "owner": owner}));
    loop {
        let lease = leases.acquire(STREAM).await;
        let token = lease.token();
        let acquired_at = wall_nanos(SystemTime::now());
        emit(json!({"event": "acquired", "owner": owner, "token": token,
                    "at": acquired_at.to_string(), "valid_until": wall_of(lease.valid_until()).to_string()}));
        let watch = lease.keep_alive();

        // The first owner decides the codec and marks where the stream came from;
        // later owners must get both back from the saved state.
        let feed = Feed::new(Duration::from_millis(2));
        let origin = format!("{owner}#{token}");
        let connector = tower::service_fn(move |mut target: Target| {
            emit(
                json!({"event": "connect", "token": token, "codec": target.codec,
                        "parameters": target.parameters}),
            );
            if target.codec.is_none() {
                target.codec = Some("h264".into());
                target.parameters.insert("origin".into(), origin.clone());
            }
            feed.clone().call(target)
        });
        let mut packets = config
            .reconnecting_with(
                connector,
                Target::new(STREAM, Protocol::InProcess),
                Arc::clone(&storage),
            )
            .cancel_token(watch.lost_token());
        let mut last_report = Instant::now();
        let mut reported_until = watch.valid_until();
        let mut produced = 0u64;
        while let Some(item) = packets.next().await {
            // The time of the would-be write is taken before the check, so that a
            // pause between the two cannot make a stale write look fresh.
            let at = wall_nanos(SystemTime::now());
            if !watch.is_held() {
                break;
            }
            if item.is_ok() {
                produced += 1;
            }
            // Report every renewal, and every 25 ms.
            let valid_until = watch.valid_until();
            if valid_until != reported_until || last_report.elapsed() >= Duration::from_millis(25) {
                last_report = Instant::now();
                reported_until = valid_until;
                emit(json!({"event": "owning", "owner": owner, "token": token,
                            "at": at.to_string(), "produced": produced,
                            "valid_until": wall_of(valid_until).to_string()}));
            }
        }
        drop(packets);
        emit(json!({"event": "lost", "owner": owner, "token": token,
                    "at": wall_nanos(SystemTime::now()).to_string(),
                    "reason": watch.lost_reason()}));
        drop(watch);
    }
}

/// Lines a child printed, with the child's name.
type Log = Arc<Mutex<Vec<(String, Value)>>>;

fn spawn_relay(name: &str, url: &str, ttl: Duration, log: &Log) -> ChildGuard {
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "lease_relay_child", "--nocapture", "--ignored"])
        .env(CHILD_ENV, name)
        .env("MIRROR_REDIS_URL", url)
        .env("MIRROR_LEASE_TTL_MS", ttl.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn relay");
    let stdout = child.stdout.take().expect("stdout");
    let log = Arc::clone(log);
    let name_owned = name.to_owned();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Ok(value) = serde_json::from_str::<Value>(&line) {
                log.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((name_owned.clone(), value));
            }
        }
    });
    ChildGuard::new(name, child)
}

fn events(log: &Log, event: &str) -> Vec<(String, Value)> {
    log.lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .filter(|(_, v)| v["event"] == event)
        .cloned()
        .collect()
}

fn wait_for<T>(what: &str, bound: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(start.elapsed() < bound, "timed out after {bound:?}: {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn nanos(v: &Value, field: &str) -> u128 {
    v[field]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{field} in {v}"))
}

/// The owner of the newest lease once one newer than `token` is acquired.
fn next_owner(log: &Log, after: u64, bound: Duration) -> (String, u64, u128) {
    wait_for("a new owner", bound, || {
        events(log, "acquired")
            .into_iter()
            .find(|(_, v)| v["token"].as_u64().is_some_and(|t| t > after))
            .map(|(name, v)| (name, v["token"].as_u64().unwrap_or(0), nanos(&v, "at")))
    })
}

#[test]
fn leases_never_overlap_when_owners_are_killed_or_frozen() {
    let server = RedisServer::start();
    let ttl = Duration::from_millis(1000);
    let log: Log = Arc::default();
    let mut relays: BTreeMap<String, ChildGuard> = BTreeMap::new();
    for name in ["relay-a", "relay-b", "relay-c"] {
        relays.insert(name.into(), spawn_relay(name, &server.url(), ttl, &log));
    }
    wait_for("three relays ready", Duration::from_secs(30), || {
        (events(&log, "ready").len() == 3).then_some(())
    });

    // The first owner produces for a while (renewing several times).
    let (first, first_token, _) = next_owner(&log, 0, Duration::from_secs(10));
    std::thread::sleep(ttl * 2);

    // 1. The owner dies: another takes over within the lease time.
    let killed_at = wall_nanos(SystemTime::now());
    relays.get_mut(&first).expect("first owner").kill();
    let (second, second_token, second_at) = next_owner(&log, first_token, ttl * 10);
    let takeover_ms = (second_at.saturating_sub(killed_at)) as f64 / 1e6;
    println!(
        "take-over after SIGKILL of {first}: {takeover_ms:.0} ms (lease ttl {} ms) by {second}",
        ttl.as_millis()
    );
    assert_ne!(second, first);
    assert!(
        takeover_ms < (ttl * 3).as_millis() as f64,
        "take-over within the lease time (plus slack): {takeover_ms} ms"
    );
    std::thread::sleep(ttl);

    // 2. The new owner freezes: the third relay takes over; when the frozen one runs
    // again it must find it has lost the lease and stop.
    let frozen = relays.get(&second).expect("second owner");
    frozen.signal("STOP");
    let stopped_at = wall_nanos(SystemTime::now());
    let (third, third_token, third_at) = next_owner(&log, second_token, ttl * 10);
    println!(
        "take-over after SIGSTOP of {second}: {:.0} ms by {third}",
        (third_at.saturating_sub(stopped_at)) as f64 / 1e6
    );
    assert_ne!(third, second);
    std::thread::sleep(ttl / 2);
    let continued_at = wall_nanos(SystemTime::now());
    relays.get(&second).expect("second owner").signal("CONT");
    let lost = wait_for(
        "the frozen owner notices it lost the lease",
        ttl * 10,
        || {
            events(&log, "lost")
                .into_iter()
                .find(|(n, v)| *n == second && v["token"].as_u64() == Some(second_token))
        },
    );
    println!(
        "{second} noticed the loss {:.0} ms after SIGCONT: {}",
        (nanos(&lost.1, "at").saturating_sub(continued_at)) as f64 / 1e6,
        lost.1["reason"]
    );
    std::thread::sleep(ttl);

    // 3. The third owner releases nothing and is killed too; the unfrozen relay (back
    // to waiting) or a new one takes over again.
    relays.insert(
        "relay-d".into(),
        spawn_relay("relay-d", &server.url(), ttl, &log),
    );
    relays.get_mut(&third).expect("third owner").kill();
    let (fourth, fourth_token, _) = next_owner(&log, third_token, ttl * 10);
    println!("after SIGKILL of {third}: {fourth} took over");
    std::thread::sleep(ttl);
    for relay in relays.values_mut() {
        relay.kill();
    }

    // Checks over everything the relays printed.
    let log = log.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut leases: BTreeMap<u64, (String, u128, u128)> = BTreeMap::new(); // token -> owner, from, until
    for (name, v) in &log {
        let Some(token) = v["token"].as_u64() else {
            continue;
        };
        match v["event"].as_str() {
            Some("acquired") => {
                let previous = leases.insert(
                    token,
                    (name.clone(), nanos(v, "at"), nanos(v, "valid_until")),
                );
                assert!(previous.is_none(), "token {token} given twice");
            }
            Some("owning") => {
                let at = nanos(v, "at");
                let until = nanos(v, "valid_until");
                assert!(at < until, "{name} produced outside its lease: {v}");
                let lease = leases.get_mut(&token).expect("owning after acquiring");
                assert_eq!(lease.0, *name, "token {token} used by two relays");
                lease.2 = lease.2.max(until);
            }
            _ => {}
        }
    }
    let tokens: Vec<u64> = leases.keys().copied().collect();
    println!("leases (token: owner, held ms):");
    for (token, (owner, from, until)) in &leases {
        println!(
            "  {token}: {owner}, {:.0} ms",
            (until.saturating_sub(*from)) as f64 / 1e6
        );
    }
    assert!(tokens.len() >= 4, "{tokens:?}");
    assert!(tokens.contains(&fourth_token));
    // Tokens strictly increase in the order the leases were acquired.
    let mut by_time: Vec<(u128, u64)> = leases.iter().map(|(t, l)| (l.1, *t)).collect();
    by_time.sort_unstable();
    assert!(
        by_time.windows(2).all(|w| w[0].1 < w[1].1),
        "tokens grow with each new owner: {by_time:?}"
    );
    // No two owners at once: each lease starts after the previous one's last validity.
    let intervals: Vec<_> = leases.values().collect();
    for pair in intervals.windows(2) {
        let (prev_owner, _, prev_until) = pair[0];
        let (next_owner, next_from, _) = pair[1];
        assert!(
            next_from > prev_until,
            "{next_owner} acquired {:.1} ms before {prev_owner}'s lease ran out",
            (prev_until - next_from) as f64 / 1e6
        );
    }
    // The frozen relay printed nothing as owner after it was frozen but still valid.
    for (name, v) in &log {
        if *name == second && v["event"] == "owning" && v["token"].as_u64() == Some(second_token) {
            assert!(
                nanos(v, "at") < third_at,
                "the frozen relay produced after it was replaced: {v}"
            );
        }
    }
    // Every owner after the first resumed from the saved state.
    let origin = format!("{first}#{first_token}");
    let connects: Vec<_> = log
        .iter()
        .filter(|(_, v)| v["event"] == "connect")
        .collect();
    assert!(connects.len() >= tokens.len(), "{connects:?}");
    let mut first_connect = true;
    for (name, v) in connects {
        if v["token"].as_u64() == Some(first_token) && first_connect {
            first_connect = false;
            assert!(v["codec"].is_null(), "the first owner starts fresh: {v}");
            continue;
        }
        assert_eq!(v["codec"], "h264", "{name} resumed the codec: {v}");
        assert_eq!(
            v["parameters"]["origin"], origin,
            "{name} resumed the parameters: {v}"
        );
    }
}
