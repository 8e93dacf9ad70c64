//! SRT through the network simulator with scripted blackholes: every outage is
//! detected, every recovery made, and every packet sent while the path was up is
//! delivered, in order. Measures the time from the path coming back to the first
//! packet delivered.
//!
//! Real time (srt-tokio keeps its own clock); bounds are generous, figures printed.

#![cfg(all(feature = "srt", feature = "network-simulation"))]
#![allow(clippy::unwrap_used)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{FutureExt, SinkExt, StreamExt};
use mirror_reconnect::config::ReconnectionConfig;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::detect::FailureReason;
use mirror_reconnect::driver::EventType;
use mirror_reconnect::protocol::srt::SrtConnector;
use mirror_reconnect::sim::NetworkSimulator;
use srt_tokio::{SrtListener, SrtSocket};
use support::srt::{fast_config, number_of, numbered, Recorder};
use tokio::time::timeout;

const OUTAGES: usize = 3;
const OUTAGE: Duration = Duration::from_millis(2500);
const UP: Duration = Duration::from_millis(2000);
/// Packets sent this close to a change of the path are not judged: they may have
/// been on the wire when it changed.
const MARGIN: Duration = Duration::from_millis(30);
/// The far side gives up on a dead connection after this, well inside an outage, so
/// that what it sends after the path comes back goes on a new connection.
const PEER_IDLE: Duration = Duration::from_millis(1000);

/// When the path was cut and restored.
#[derive(Default)]
struct Script {
    outages: Vec<(Instant, Option<Instant>)>,
    end: Option<Instant>,
}

impl Script {
    fn path_was_up(&self, at: Instant) -> bool {
        self.outages.iter().all(|(down, up)| {
            let up = up.unwrap_or(far_future());
            at + MARGIN < *down || at > up + MARGIN
        })
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

/// Whether the peer still answers (ACKs, keep-alives), from srt-tokio's statistics.
struct Liveness {
    last_rx: u64,
    last_change: Instant,
}

impl Default for Liveness {
    fn default() -> Self {
        Self {
            last_rx: 0,
            last_change: Instant::now(),
        }
    }
}

impl Liveness {
    fn check(&mut self, socket: &mut SrtSocket) -> bool {
        while let Some(Some(stats)) = socket.statistics().next().now_or_never() {
            if stats.rx_all_packets > self.last_rx {
                self.last_rx = stats.rx_all_packets;
                self.last_change = Instant::now();
            }
        }
        self.last_change.elapsed() < PEER_IDLE
    }
}

/// The tests' stack: fast retries, and detection that a stall of this machine cannot
/// trip. Sender, simulator and receiver share the process: on a loaded CI host they
/// are descheduled together for tens of milliseconds, which on a 5 ms feed reads as
/// a silence against the default 10 ms floor (a 15 ms adaptive limit here), or as no
/// packet in a 100 ms check. A false detection is a reconnect the script did not cause,
/// and with make-before-break a few packets delivered twice. The outages last 2.5 s:
/// a 200 ms floor and 250 ms checks detect each of them all the same. A stall also
/// reads as loss to SRT (its timers fire before the queued packets are read); the
/// simulated path loses nothing but in the blackholes, so the loss limit is raised out
/// of the way of the outages' own detection.
fn sim_config() -> ReconnectionConfig {
    let mut config = fast_config();
    config.check_interval = Duration::from_millis(250);
    config.health_thresholds.max_packet_loss = 0.5;
    config.silence.floor = Duration::from_millis(200);
    // Eight gaps spanning 8 floors (1.6 s) learn the rhythm within the first 2 s up.
    config.silence.min_samples = 8;
    config
}

/// What was sent: sequence number and when.
type Sent = Arc<Mutex<Vec<(u32, Instant)>>>;

/// Delivered packets: sequence number and when.
type Delivered = Vec<(u32, Instant)>;

fn check(label: &str, sent: &Sent, delivered: &Delivered, script: &Script, events: &Recorder) {
    let sent = sent.lock().unwrap().clone();
    if std::env::var_os("SRT_SIM_DEBUG").is_some() {
        let t0 = sent.first().map(|(_, at)| *at).unwrap();
        for (at, e) in events.timed() {
            println!(
                "{:>8.3?} {} {:?} {:?}",
                at.saturating_duration_since(t0),
                e.event_type,
                e.attempt,
                e.error
            );
        }
        for (down, up) in &script.outages {
            println!(
                "outage {:?} .. {:?}",
                down.saturating_duration_since(t0),
                up.map(|u| u.saturating_duration_since(t0))
            );
        }
        let mut prev: Option<(u32, Instant)> = None;
        for (n, at) in delivered {
            if let Some((p, pat)) = prev {
                if *n != p + 1 {
                    println!(
                        "gap after {p} ({:?}) to {n} ({:?})",
                        pat.saturating_duration_since(t0),
                        at.saturating_duration_since(t0)
                    );
                }
            }
            prev = Some((*n, *at));
        }
        for (n, at) in &sent {
            if [905, 906, 1294, 1295].contains(n) {
                println!("sent {n} at {:?}", at.saturating_duration_since(t0));
            }
        }
    }
    let got: Vec<u32> = delivered.iter().map(|(n, _)| *n).collect();
    assert!(
        got.windows(2).all(|w| w[0] < w[1]),
        "{label}: delivered out of order or twice"
    );
    let mut must = 0;
    let mut missing = Vec::new();
    for (n, at) in &sent {
        if script.path_was_up(*at) {
            must += 1;
            if got.binary_search(n).is_err() {
                missing.push(*n);
            }
        }
    }
    println!(
        "{label}: {} sent, {must} while the path was up, {} delivered, {} missing",
        sent.len(),
        got.len(),
        missing.len()
    );
    assert!(
        missing.is_empty(),
        "{label}: sent while up but lost: {missing:?}"
    );

    // Every outage detected, every recovery made (until the script ended and the far
    // side stopped).
    let end = script.end.unwrap();
    let failures: Vec<_> = events
        .timed()
        .into_iter()
        .filter(|(at, e)| e.event_type == EventType::FailureDetected && *at < end)
        .map(|(_, e)| e)
        .collect();
    for f in &failures {
        println!(
            "{label}: failure: {:?}: {}",
            f.reason,
            f.error.clone().unwrap_or_default()
        );
    }
    assert_eq!(failures.len(), OUTAGES, "{label}: one detection per outage");
    assert!(failures.iter().all(|f| matches!(
        f.reason,
        Some(FailureReason::Timeout | FailureReason::NetworkError | FailureReason::LowPacketRate)
    )));
    let recoveries = events
        .timed()
        .into_iter()
        .filter(|(at, e)| e.event_type == EventType::ReconnectionSucceeded && *at < end)
        .count();
    assert_eq!(recoveries, OUTAGES, "{label}: one recovery per outage");
    assert_eq!(events.count(EventType::ReconnectionFailed), 0);

    // Detection, and the time from the path coming back to the first packet.
    let timed = events.timed();
    for (i, (down, up)) in script.outages.iter().enumerate() {
        let up = up.unwrap();
        let detected = timed
            .iter()
            .find(|(at, e)| e.event_type == EventType::FailureDetected && *at >= *down)
            .map(|(at, _)| at.saturating_duration_since(*down));
        let first = delivered
            .iter()
            .find(|(_, at)| *at >= up)
            .map(|(_, at)| at.saturating_duration_since(up));
        println!("{label}: outage {i}: detected after {detected:?}; first packet {first:?} after the path came back");
        let detected = detected.expect("outage detected");
        assert!(detected < OUTAGE, "{label}: detected within the outage");
        assert!(first.expect("packets after the outage") < Duration::from_secs(5));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_tokio_caller_through_blackholes_into_our_listener() {
    let connector = SrtConnector::new();
    let ours = connector
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let sim = NetworkSimulator::builder()
        .seed(7)
        .start(ours)
        .await
        .unwrap();
    let via = sim.local_addr();

    let target = Target::new("simcam", Protocol::Srt)
        .address(ours)
        .parameter("mode", "listener")
        .parameter("latency", "40");
    let mut packets = sim_config().reconnecting(connector.clone(), target);
    let events = Recorder::attach(packets.event_bus());

    // The sender calls through the simulator, sends a numbered packet every 5 ms, and
    // calls again whenever its connection dies.
    let sent: Sent = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
        async move {
            let mut n = 0u32;
            while !stop.load(Ordering::Relaxed) {
                let call = SrtSocket::builder()
                    .latency(Duration::from_millis(40))
                    .set(|o| {
                        o.session.peer_idle_timeout = PEER_IDLE;
                        o.session.statistics_interval = Duration::from_millis(200);
                        o.connect.timeout = Duration::from_millis(500);
                    })
                    .call(via, Some("simcam"))
                    .await;
                let Ok(mut socket) = call else { continue };
                let mut tick = tokio::time::interval(Duration::from_millis(5));
                let mut alive = Liveness::default();
                while !stop.load(Ordering::Relaxed) {
                    tick.tick().await;
                    if !alive.check(&mut socket) {
                        // srt-tokio's own idle timeout takes many seconds to fire
                        // on a sender: give up on a silent receiver sooner, like
                        // libsrt's 5 s, scaled to the test.
                        break;
                    }
                    let at = Instant::now();
                    if socket.send((at, numbered(0, n, 1000))).await.is_err() {
                        break;
                    }
                    sent.lock().unwrap().push((n, at));
                    n += 1;
                }
            }
        }
    });

    let script = Arc::new(Mutex::new(Script::default()));
    let scripted = tokio::spawn({
        let script = Arc::clone(&script);
        let handle = sim.handle();
        async move {
            // The handle changes the simulator from this task.
            let sim = ScriptSim(handle);
            sim.run(&script).await;
        }
    });

    let mut delivered = Delivered::new();
    while !scripted.is_finished() {
        if let Ok(item) = timeout(Duration::from_millis(50), packets.next()).await {
            let packet = item.expect("stream ended").unwrap();
            delivered.push((number_of(&packet.payload).unwrap().1, Instant::now()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    // What was sent last is still in SRT's latency buffer.
    while let Ok(Some(Ok(packet))) = timeout(Duration::from_millis(300), packets.next()).await {
        delivered.push((number_of(&packet.payload).unwrap().1, Instant::now()));
    }
    let _ = timeout(Duration::from_secs(2), sender).await;
    let stats = sim.stats();
    println!(
        "simulator: {} dropped in blackholes towards us, {} towards the sender",
        stats.to_upstream.dropped_blackhole, stats.to_client.dropped_blackhole
    );
    assert!(
        stats.to_upstream.dropped_blackhole > 0,
        "the outages cut the path"
    );
    let script = script.lock().unwrap();
    check(
        "srt-tokio caller -> our listener",
        &sent,
        &delivered,
        &script,
        &events,
    );
}

/// The script, run from a handle in another task.
struct ScriptSim(mirror_reconnect::sim::SimulatorHandle);

impl ScriptSim {
    async fn run(&self, script: &Mutex<Script>) {
        tokio::time::sleep(UP).await;
        for _ in 0..OUTAGES {
            self.0.set_blackhole(true);
            script.lock().unwrap().outages.push((Instant::now(), None));
            tokio::time::sleep(OUTAGE).await;
            self.0.set_blackhole(false);
            script.lock().unwrap().outages.last_mut().unwrap().1 = Some(Instant::now());
            tokio::time::sleep(UP).await;
        }
        script.lock().unwrap().end = Some(Instant::now());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn our_caller_through_blackholes_into_an_srt_tokio_listener() {
    // The far side: a multiplexed srt-tokio listener that sends a numbered packet every
    // 5 ms to its newest caller.
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let far = udp.local_addr().unwrap();
    let (_binding, mut incoming) = SrtListener::builder()
        .latency(Duration::from_millis(40))
        .set(|o| {
            o.session.peer_idle_timeout = PEER_IDLE;
            o.session.statistics_interval = Duration::from_millis(200);
        })
        .socket(udp)
        .bind(far)
        .await
        .unwrap();
    let sim = NetworkSimulator::builder()
        .seed(11)
        .start(far)
        .await
        .unwrap();

    let sent: Sent = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = tokio::spawn({
        let (sent, stop) = (Arc::clone(&sent), Arc::clone(&stop));
        async move {
            let mut n = 0u32;
            // Every caller that still answers gets every packet: a caller that gave up
            // mid-handshake may have been accepted too, and looks alive for a while.
            let mut callers: Vec<(SrtSocket, Liveness)> = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(5));
            while !stop.load(Ordering::Relaxed) {
                tokio::select! {
                    request = incoming.incoming().next() => {
                        let Some(request) = request else { break };
                        if let Ok(socket) = request.accept(None).await {
                            callers.push((socket, Liveness::default()));
                        }
                    }
                    _ = tick.tick() => {
                        callers.retain_mut(|(socket, alive)| alive.check(socket));
                        if callers.is_empty() {
                            continue;
                        }
                        let at = Instant::now();
                        let mut delivered_to = 0;
                        for (socket, _) in &mut callers {
                            // Never wait on one caller: a stale one must not delay
                            // the others past their latency.
                            if socket.try_send(at, numbered(0, n, 1000)).is_ok() {
                                delivered_to += 1;
                            }
                        }
                        if delivered_to > 0 {
                            sent.lock().unwrap().push((n, at));
                            n += 1;
                        }
                    }
                }
            }
        }
    });

    let target = Target::new("simcam2", Protocol::Srt)
        .address(sim.local_addr())
        .parameter("latency", "40")
        .parameter("connect_timeout", "500");
    let mut packets = sim_config().reconnecting(SrtConnector::new(), target);
    let events = Recorder::attach(packets.event_bus());

    let script = Arc::new(Mutex::new(Script::default()));
    let scripted = tokio::spawn({
        let script = Arc::clone(&script);
        let sim = ScriptSim(sim.handle());
        async move { sim.run(&script).await }
    });
    let mut delivered = Delivered::new();
    while !scripted.is_finished() {
        if let Ok(item) = timeout(Duration::from_millis(50), packets.next()).await {
            let packet = item.expect("stream ended").unwrap();
            delivered.push((number_of(&packet.payload).unwrap().1, Instant::now()));
        }
    }
    stop.store(true, Ordering::Relaxed);
    while let Ok(Some(Ok(packet))) = timeout(Duration::from_millis(300), packets.next()).await {
        delivered.push((number_of(&packet.payload).unwrap().1, Instant::now()));
    }
    let _ = timeout(Duration::from_secs(2), sender).await;
    let script = script.lock().unwrap();
    check(
        "our caller -> srt-tokio listener",
        &sent,
        &delivered,
        &script,
        &events,
    );
}

/// A listener connection dropped while its shutdown is lost (the path back to the
/// caller down for a moment) and the caller goes on sending: the caller still learns
/// it is gone, calls again, and the next connect gets it. srt-tokio says the shutdown
/// once, and its dropped connection, never empty while packets keep coming, went on
/// acknowledging them: the caller never called again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_connection_dropped_while_its_shutdown_is_lost_lets_its_caller_go() {
    use mirror_reconnect::sim::Direction;
    use tower::ServiceExt;

    let connector = SrtConnector::new();
    let addr = connector
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let sim = NetworkSimulator::builder().start(addr).await.unwrap();
    let path = sim.handle();
    let target = Target::new("cam1", Protocol::Srt)
        .address(addr)
        .parameter("mode", "listener")
        .parameter("latency", "60");
    // A caller that keeps sending, and calls again whenever its connection ends.
    let to = sim.local_addr();
    let calls = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let caller = {
        let (calls, stop) = (Arc::clone(&calls), Arc::clone(&stop));
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let call = SrtSocket::builder()
                    .latency(Duration::from_millis(60))
                    .call(to, Some("cam1"));
                let Ok(Ok(mut socket)) = timeout(Duration::from_secs(3), call).await else {
                    continue;
                };
                calls.fetch_add(1, Ordering::Relaxed);
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    let sent = timeout(
                        Duration::from_secs(1),
                        socket.send((Instant::now(), numbered(0, 0, 1316))),
                    )
                    .await;
                    if !matches!(sent, Ok(Ok(()))) {
                        break;
                    }
                }
            }
        })
    };
    let mut first = timeout(
        Duration::from_secs(20),
        connector.clone().oneshot(target.clone()),
    )
    .await
    .unwrap()
    .unwrap();
    timeout(Duration::from_secs(20), first.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    // The path back down: what the listener side says now is lost, while the caller's
    // packets still arrive.
    path.set_blackhole_in(Direction::ToClient, true);
    drop(first);
    tokio::time::sleep(Duration::from_millis(150)).await;
    path.set_blackhole_in(Direction::ToClient, false);
    let mut second = timeout(Duration::from_secs(20), connector.oneshot(target))
        .await
        .expect("the caller never called again: the dropped connection still held it")
        .unwrap();
    timeout(Duration::from_secs(20), second.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(calls.load(Ordering::Relaxed), 2);
    stop.store(true, Ordering::Relaxed);
    drop(second);
    caller.await.unwrap();
}

/// An SRT sender over a path with a 120 ms round trip and 5 % loss each way: every
/// lost packet is sent again in time, as SRT promises within its latency. Before the
/// connector set SRT's own buffers, srt-tokio's 32-packet send buffer had let go of a
/// packet before its loss report came back (at 1 000 packets a second, 120 are in
/// flight), and every loss stayed lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sender_on_a_long_lossy_path_has_every_loss_sent_again() {
    use tower::ServiceExt;

    const PACKETS: u32 = 3_000;
    const LATENCY: Duration = Duration::from_millis(1_000);
    let port = support::ports::free_udp_port();
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let receiver = tokio::spawn(async move {
        let mut socket = SrtSocket::builder()
            .latency(LATENCY)
            .listen_on(listen)
            .await
            .unwrap();
        let mut got = std::collections::BTreeSet::new();
        while let Ok(Some(Ok((_, payload)))) = timeout(Duration::from_secs(3), socket.next()).await
        {
            got.insert(number_of(&payload).unwrap().1);
        }
        got
    });
    let sim = NetworkSimulator::builder()
        .seed(11)
        .latency(Duration::from_millis(60))
        .loss(0.05)
        .start(listen)
        .await
        .unwrap();
    let target = Target::new("out", Protocol::Srt)
        .address(sim.local_addr())
        .parameter("mode", "caller");
    let mut conn = timeout(
        Duration::from_secs(10),
        SrtConnector::new().latency(LATENCY).oneshot(target),
    )
    .await
    .unwrap()
    .unwrap();
    // 1 000 packets a second of 1 316 bytes (10.5 Mbit/s), ten every 10 ms.
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for batch in 0..PACKETS / 10 {
        tick.tick().await;
        for index in batch * 10..batch * 10 + 10 {
            conn.feed(numbered(0, index, 1316)).await.unwrap();
        }
        conn.flush().await.unwrap();
    }
    let got = timeout(Duration::from_secs(30), receiver)
        .await
        .unwrap()
        .unwrap();
    let stats = sim.stats();
    let missing = (0..PACKETS).filter(|n| !got.contains(n)).count();
    println!(
        "{} of {PACKETS} delivered, {missing} missing; the simulator lost {} of {} towards the receiver",
        got.len(),
        stats.to_upstream.dropped_loss,
        stats.to_upstream.packets_in,
    );
    drop(conn);
    // SRT may give up on a packet lost again and again; one in two hundred is far more
    // than 5 % loss leaves after the retries a second of latency allows.
    assert!(
        missing <= PACKETS as usize / 200,
        "{missing} of {PACKETS} packets never arrived"
    );
}
