//! A fleet of mirror-relay processes sharing one streams file through a real
//! redis-server: they divide the streams, keep them divided, and take a killed
//! relay's streams over, never with two owners of one stream at once.
#![cfg(all(feature = "cli", feature = "redis", feature = "srt"))]

mod support;

use std::collections::BTreeMap;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::SinkExt;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::protocol::srt::SrtConnector;
use tokio::sync::broadcast;
use tower::ServiceExt;

use support::process::ChildGuard;
use support::redis_server::RedisServer;

const STREAMS: usize = 12;
const LEASE_TTL: Duration = Duration::from_secs(2);

fn relay(streams: &std::path::Path, redis: &str) -> ChildGuard {
    ChildGuard::new(
        "relay",
        Command::new(env!("CARGO_BIN_EXE_mirror-relay"))
            .args(["--streams".as_ref(), streams.as_os_str()])
            .args(["--state", redis, "--lease-ttl"])
            .arg(LEASE_TTL.as_secs_f64().to_string())
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the relay"),
    )
}

/// An SRT listener that serves every stream id `cam0`…: each caller gets the
/// stream's packets (100 a second), however many callers there are.
fn start_sender(addr: SocketAddr) {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let connector = SrtConnector::new();
            connector.listen(addr).await.expect("listen");
            let (packets, _) = broadcast::channel::<Bytes>(64);
            for i in 0..STREAMS {
                let (connector, packets) = (connector.clone(), packets.clone());
                tokio::spawn(async move {
                    let target = Target::new(format!("cam{i}"), Protocol::Srt)
                        .address(addr)
                        .parameter("mode", "listener")
                        .parameter("latency", "80");
                    loop {
                        match connector.clone().oneshot(target.clone()).await {
                            Ok(mut conn) => {
                                let mut packets = packets.subscribe();
                                tokio::spawn(async move {
                                    while let Ok(payload) = packets.recv().await {
                                        let sent = tokio::time::timeout(
                                            Duration::from_secs(1),
                                            conn.send(payload),
                                        );
                                        if !matches!(sent.await, Ok(Ok(()))) {
                                            return;
                                        }
                                    }
                                });
                            }
                            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
                        }
                    }
                });
            }
            let mut ticker = tokio::time::interval(Duration::from_millis(10));
            for n in 0u64.. {
                ticker.tick().await;
                let mut payload = vec![0x47u8; 1316];
                payload[..8].copy_from_slice(&n.to_be_bytes());
                let _ = packets.send(Bytes::from(payload));
            }
        });
    });
}

/// Each stream's lease values as seen, in order: (fencing token, relay pid).
type Tokens = BTreeMap<usize, Vec<(u64, u32)>>;

/// Every datagram's arrival, by the address it came from.
type Arrivals = Arc<Mutex<Vec<(Instant, SocketAddr)>>>;

fn start_sink(done: Arc<AtomicBool>) -> (SocketAddr, Arrivals) {
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let arrivals: Arrivals = Arc::default();
    let log = Arc::clone(&arrivals);
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while !done.load(Ordering::Relaxed) {
            if let Ok((_, from)) = sink.recv_from(&mut buf) {
                log.lock().unwrap().push((Instant::now(), from));
            }
        }
    });
    (addr, arrivals)
}

/// The pid and fencing token of each stream's lease holder now.
fn holders(redis: &mut redis::Connection) -> BTreeMap<usize, (u32, u64)> {
    let mut held = BTreeMap::new();
    for i in 0..STREAMS {
        let value: Option<String> = redis::cmd("GET")
            .arg(format!("mirror_reconnect:lease:cam{i}"))
            .query(redis)
            .unwrap();
        let Some(value) = value else { continue };
        // mirror-relay@HOST:PID#TOKEN
        let (owner, token) = value.rsplit_once('#').unwrap();
        let pid = owner.rsplit_once(':').unwrap().1.parse().unwrap();
        held.insert(i, (pid, token.parse().unwrap()));
    }
    held
}

fn per_relay(held: &BTreeMap<usize, (u32, u64)>) -> BTreeMap<u32, usize> {
    let mut counts = BTreeMap::new();
    for (pid, _) in held.values() {
        *counts.entry(*pid).or_insert(0) += 1;
    }
    counts
}

/// Whether every sink had a datagram within the last `within`.
fn all_flowing(sinks: &[Arrivals], within: Duration) -> bool {
    sinks.iter().all(|log| {
        log.lock()
            .unwrap()
            .last()
            .is_some_and(|(at, _)| at.elapsed() < within)
    })
}

#[test]
fn a_fleet_of_three_divides_twelve_streams_and_takes_over_a_killed_relay() {
    let server = RedisServer::start();
    let mut redis = server.connection();
    let sender = support::srt::free_addr();
    start_sender(sender);
    let done = Arc::new(AtomicBool::new(false));
    let mut sinks = Vec::new();
    let mut file = String::from("reconnect: { initial_delay: 50ms, max_delay: 500ms }\nstreams:\n");
    for i in 0..STREAMS {
        let (addr, arrivals) = start_sink(Arc::clone(&done));
        sinks.push(arrivals);
        file.push_str(&format!(
            "  - id: cam{i}\n    input: \"srt://{sender}?mode=caller&streamid=cam{i}&latency=80\"\n    output: \"udp://{addr}\"\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.yaml");
    std::fs::write(&path, file).unwrap();

    // Never two owners: every fencing token a stream's lease ever showed belongs to
    // one relay, and tokens only grow.
    let seen: Arc<Mutex<Tokens>> = Arc::default();
    {
        let (seen, done) = (Arc::clone(&seen), Arc::clone(&done));
        let mut redis = server.connection();
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                for (stream, (pid, token)) in holders(&mut redis) {
                    let mut seen = seen.lock().unwrap();
                    let tokens = seen.entry(stream).or_default();
                    if tokens.last() != Some(&(token, pid)) {
                        tokens.push((token, pid));
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        });
    }

    let url = server.url();
    let mut relays: Vec<ChildGuard> = (0..3).map(|_| relay(&path, &url)).collect();

    // Settled: every stream owned and flowing, none of the three owning more than
    // ceil(12 / 3) + 1 = 5.
    let start = Instant::now();
    let mut counts = BTreeMap::new();
    while start.elapsed() < Duration::from_secs(30) {
        let held = holders(&mut redis);
        counts = per_relay(&held);
        if held.len() == STREAMS
            && counts.len() == 3
            && counts.values().all(|&n| n <= 5)
            && all_flowing(&sinks, Duration::from_millis(300))
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let settled = start.elapsed();
    assert!(
        counts.len() == 3 && counts.values().all(|&n| n <= 5),
        "never settled: {counts:?}"
    );
    assert!(all_flowing(&sinks, Duration::from_millis(300)));
    // And stays settled.
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(100));
        let now = per_relay(&holders(&mut redis));
        assert!(now.values().all(|&n| n <= 5), "{now:?}");
    }
    eprintln!("settled after {settled:?}: {counts:?}");

    // SIGKILL the relay with the most streams.
    let pids: Vec<u32> = relays.iter().map(ChildGuard::pid).collect();
    let victim = *counts.iter().max_by_key(|(_, n)| **n).unwrap().0;
    let orphaned: Vec<usize> = holders(&mut redis)
        .into_iter()
        .filter(|(_, (pid, _))| *pid == victim)
        .map(|(stream, _)| stream)
        .collect();
    let victim_at = pids.iter().position(|&p| p == victim).unwrap();
    let mut killed = relays.remove(victim_at);
    let last_from_victim: Vec<SocketAddr> = orphaned
        .iter()
        .map(|&i| sinks[i].lock().unwrap().last().unwrap().1)
        .collect();
    killed.signal("KILL");
    let killed_at = Instant::now();
    killed.wait_exit(Duration::from_secs(5));

    // Every orphaned stream flows again, from another relay, within the lease TTL
    // plus one connect (bounded here at the TTL plus 750 ms; 16–68 ms over the TTL
    // measured).
    let bound = LEASE_TTL + Duration::from_millis(750);
    let mut back = Vec::new();
    for (&i, old) in orphaned.iter().zip(&last_from_victim) {
        let first_new = loop {
            let found = sinks[i]
                .lock()
                .unwrap()
                .iter()
                .find(|(at, from)| *at > killed_at && from != old)
                .map(|(at, _)| *at - killed_at);
            if let Some(after) = found {
                break after;
            }
            assert!(
                killed_at.elapsed() < bound + Duration::from_secs(5),
                "cam{i} never came back"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        back.push(first_new);
    }
    let slowest = back.iter().max().copied().unwrap_or_default();
    eprintln!(
        "{} streams of the killed relay back after at most {slowest:?} (lease TTL {LEASE_TTL:?})",
        orphaned.len()
    );
    assert!(slowest <= bound, "{back:?}");

    // The two left own everything, neither more than ceil(12 / 2) + 1 = 7.
    let start = Instant::now();
    loop {
        let held = holders(&mut redis);
        let counts = per_relay(&held);
        if held.len() == STREAMS
            && !counts.contains_key(&victim)
            && all_flowing(&sinks, Duration::from_millis(300))
        {
            assert!(counts.values().all(|&n| n <= 7), "{counts:?}");
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{counts:?}");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Stop cleanly: every stream's lease released.
    for relay in &relays {
        relay.signal("TERM");
    }
    for relay in relays {
        let out = relay.finish(Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
    }
    assert_eq!(holders(&mut redis), BTreeMap::new());
    done.store(true, Ordering::Relaxed);

    // Never two owners: per stream, each fencing token had one relay, tokens grew,
    // and each output source address sent in one unbroken run.
    for (stream, tokens) in seen.lock().unwrap().iter() {
        for pair in tokens.windows(2) {
            assert!(pair[0].0 < pair[1].0, "cam{stream}: {tokens:?}");
        }
    }
    for (i, log) in sinks.iter().enumerate() {
        let log = log.lock().unwrap();
        let mut runs: Vec<SocketAddr> = Vec::new();
        for (_, from) in log.iter() {
            if runs.last() != Some(from) {
                assert!(
                    !runs.contains(from),
                    "cam{i}: {from} sent again after another source: {runs:?}"
                );
                runs.push(*from);
            }
        }
    }
}
