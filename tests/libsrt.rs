//! `LibSrtConnector` (feature `libsrt`) through the whole stack, against libsrt's own
//! `srt-live-transmit` on loopback: a caller and a listener, a FEC caller, stream ids
//! refused with a reason, a wrong passphrase not retried, and SRT's live round-trip
//! time following a delay the network simulator adds.

#![cfg(feature = "libsrt")]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{Connection, Protocol, Secret, Target};
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::protocol::srt::{srt_target, LibSrtConnector, SrtConnector};
use mirror_reconnect::sim::NetworkSimulator;
use support::srt::{connect_error_in, fast_config, free_udp_port, ChildGuard};
use tower::{Service, ServiceExt};

const WAIT: Duration = Duration::from_secs(20);

/// `srt-live-transmit udp://:INPUT OUTPUT`, fed a numbered 1316-byte datagram every
/// 5 ms for as long as the guard lives.
struct Fed {
    _child: ChildGuard,
    feeder: std::thread::JoinHandle<()>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Fed {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = &self.feeder;
    }
}

fn live_transmit(output: &str) -> Fed {
    let input = free_udp_port();
    let child = Command::new("srt-live-transmit")
        .args(["-q", "-ll", "fatal", "-chunk", "1316"])
        .arg(format!("udp://127.0.0.1:{input}"))
        .arg(output)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("srt-live-transmit runs (scripts/test.sh installs srt-tools)");
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    let feeder = std::thread::spawn(move || {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        let mut payload = [0x47u8; 1316];
        let mut n = 0u32;
        while !flag.load(std::sync::atomic::Ordering::SeqCst) {
            payload[..4].copy_from_slice(&n.to_be_bytes());
            let _ = socket.send_to(&payload, ("127.0.0.1", input));
            n = n.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    Fed {
        _child: ChildGuard::new("srt-live-transmit", child),
        feeder,
        stop,
    }
}

fn caller(port: u16, stream_id: &str) -> Target {
    srt_target(&format!(
        "srt://127.0.0.1:{port}?mode=caller&streamid={stream_id}&latency=80"
    ))
    .unwrap()
}

/// Connect once, retrying while the peer is still starting.
async fn connect_when_up(
    connector: &mut LibSrtConnector,
    target: &Target,
) -> mirror_reconnect::protocol::srt::LibSrtConnection {
    let mut last = None;
    for _ in 0..50 {
        match connector.ready().await.unwrap().call(target.clone()).await {
            Ok(c) => return c,
            Err(e) => last = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("no connection: {:?}", last);
}

#[tokio::test]
async fn the_stack_streams_from_a_libsrt_listener_with_live_rtt_and_sequences() {
    let port = free_udp_port();
    let _server = live_transmit(&format!("srt://:{port}?mode=listener"));
    let connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut packets = fast_config()
        .builder()
        .probe(connector.probe())
        .build(connector, caller(port, "cam1"));
    let health = packets
        .health_handle()
        .expect("the builder hands out the health handle");
    let mut last_seq = None;
    for _ in 0..200 {
        let packet = tokio::time::timeout(WAIT, packets.next())
            .await
            .expect("a packet in time")
            .expect("the stream goes on")
            .unwrap();
        assert_eq!(packet.payload.len(), 1316);
        let seq = packet.sequence.expect("SRT's sequence number");
        if let Some(last) = last_seq {
            assert_ne!(seq, last);
        }
        last_seq = Some(seq);
    }
    let h = health.check_health();
    assert!(h.is_connected);
    let rtt = h.latency.expect("libsrt measures a live round-trip time");
    assert!(rtt < Duration::from_millis(100), "{rtt:?} on loopback");
    assert!(h.packet_loss < 0.01, "{h:?}");
}

#[tokio::test]
async fn a_libsrt_fec_caller_streams_into_the_libsrt_listener() {
    let port = free_udp_port();
    let target = srt_target(&format!("srt://:{port}?mode=listener&streamid=cam7")).unwrap();
    let mut connector = LibSrtConnector::new();
    let accepting = tokio::spawn(async move {
        connector
            .ready()
            .await
            .unwrap()
            .call(target)
            .await
            .map_err(|e| e.to_string())
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _caller = live_transmit(&format!(
        "srt://127.0.0.1:{port}?mode=caller&streamid=cam7&packetfilter=fec,cols:10,rows:5"
    ));
    let mut connection = tokio::time::timeout(WAIT, accepting)
        .await
        .expect("a caller in time")
        .unwrap()
        .unwrap();
    let filter = connection.packet_filter().unwrap_or_default().to_owned();
    assert!(filter.starts_with("fec"), "{filter:?}");
    assert_eq!(
        connection.state().parameters.get("srt.packetfilter"),
        Some(&filter)
    );
    for _ in 0..100 {
        let packet = tokio::time::timeout(WAIT, connection.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(packet.payload.len(), 1316);
    }
}

#[tokio::test]
async fn an_unknown_stream_id_is_refused_with_a_reason_and_not_retried() {
    let port = free_udp_port();
    let listener_target = srt_target(&format!(
        "srt://127.0.0.1:{port}?mode=listener&streamid=cam1"
    ))
    .unwrap();
    let mut listening = LibSrtConnector::new();
    let accepting =
        tokio::spawn(async move { listening.ready().await.unwrap().call(listener_target).await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut calling = LibSrtConnector::new().connect_timeout(Duration::from_secs(2));
    let error = calling
        .ready()
        .await
        .unwrap()
        .call(caller(port, "cam2"))
        .await
        .unwrap_err();
    let connect = connect_error_in(error.as_ref()).expect("a ConnectError");
    assert_eq!(connect.kind(), ConnectErrorKind::Rejected, "{connect}");
    assert!(!connect.kind().is_retryable());
    assert!(connect.to_string().contains("cam2"), "{connect}");
    // The listener still waits for its own caller.
    assert!(!accepting.is_finished());
    let mut right = LibSrtConnector::new();
    let _connected = right
        .ready()
        .await
        .unwrap()
        .call(caller(port, "cam1"))
        .await
        .unwrap();
    tokio::time::timeout(WAIT, accepting)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn a_wrong_passphrase_is_unauthorized_and_never_printed() {
    let port = free_udp_port();
    let _server = live_transmit(&format!(
        "srt://:{port}?mode=listener&passphrase=the-right-passphrase"
    ));
    let mut target = caller(port, "cam1");
    target.passphrase = Some(Secret::new("a-wrong-passphrase"));
    let mut connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut last = None;
    for _ in 0..50 {
        let error = connector
            .ready()
            .await
            .unwrap()
            .call(target.clone())
            .await
            .unwrap_err();
        let connect = connect_error_in(error.as_ref()).unwrap();
        if connect.kind() != ConnectErrorKind::TimedOut {
            last = Some((connect.kind(), connect.to_string()));
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (kind, text) = last.expect("the listener answered");
    assert_eq!(kind, ConnectErrorKind::Unauthorized, "{text}");
    assert!(!text.contains("a-wrong-passphrase"), "{text}");
}

#[tokio::test]
async fn srt_tokio_refuses_a_packet_filter_naming_libsrt() {
    let target = srt_target("srt://127.0.0.1:9?packetfilter=fec,cols:10,rows:5").unwrap();
    let error = SrtConnector::new().oneshot(target).await.unwrap_err();
    let connect = connect_error_in(error.as_ref()).unwrap();
    assert_eq!(connect.kind(), ConnectErrorKind::InvalidTarget);
    assert!(connect.to_string().contains("libsrt"), "{connect}");
}

#[tokio::test]
async fn health_latency_follows_a_delay_the_simulator_adds() {
    let port = free_udp_port();
    let _server = live_transmit(&format!("srt://:{port}?mode=listener&latency=1000"));
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let sim = NetworkSimulator::builder().start(server).await.unwrap();
    let via = sim.local_addr();
    let target = Target::new("cam1", Protocol::Srt)
        .address(via)
        .parameter("latency", "1000");
    let mut connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut connection = connect_when_up(&mut connector, &target).await;
    let rtt_of = |c: &mirror_reconnect::protocol::srt::LibSrtConnection| c.rtt();
    // Read for a second on the clean path.
    read_for(&mut connection, Duration::from_secs(1)).await;
    let before = rtt_of(&connection).expect("an rtt");
    assert!(before < Duration::from_millis(50), "{before:?}");
    // +100 ms each way: the round trip grows by 200 ms.
    sim.set_latency(Duration::from_millis(100));
    let mut after = before;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while tokio::time::Instant::now() < deadline {
        read_for(&mut connection, Duration::from_millis(250)).await;
        after = rtt_of(&connection).unwrap_or(after);
        if after >= Duration::from_millis(180) {
            break;
        }
    }
    assert!(
        after >= Duration::from_millis(180) && after < Duration::from_millis(400),
        "rtt {before:?} before, {after:?} 10 s after adding 200 ms"
    );
}

/// Read (and drop) what `connection` delivers for `time`.
async fn read_for(
    connection: &mut mirror_reconnect::protocol::srt::LibSrtConnection,
    time: Duration,
) {
    let deadline = tokio::time::Instant::now() + time;
    while tokio::time::Instant::now() < deadline {
        let _ = tokio::time::timeout(Duration::from_millis(200), connection.next()).await;
    }
}

/// A stack listening for `stream_id` on `port` through `connector`, counting what it
/// delivers; `passphrase` when given.
fn listening(
    connector: &LibSrtConnector,
    port: u16,
    stream_id: &str,
    passphrase: Option<&str>,
) -> (
    tokio::task::JoinHandle<()>,
    std::sync::Arc<std::sync::Mutex<Vec<tokio::time::Instant>>>,
) {
    let mut target = srt_target(&format!(
        "srt://127.0.0.1:{port}?mode=listener&streamid={stream_id}&latency=80"
    ))
    .unwrap();
    target.passphrase = passphrase.map(Secret::new);
    let mut config = fast_config();
    config.max_retries = 1000;
    let mut packets = config.builder().passive().build(connector.clone(), target);
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = std::sync::Arc::clone(&seen);
    let task = tokio::spawn(async move {
        while let Some(item) = packets.next().await {
            if item.is_ok() {
                log.lock().unwrap().push(tokio::time::Instant::now());
            }
        }
    });
    (task, seen)
}

fn since(seen: &std::sync::Mutex<Vec<tokio::time::Instant>>, at: tokio::time::Instant) -> usize {
    seen.lock().unwrap().iter().filter(|t| **t >= at).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_share_one_port_and_one_restarts_while_the_others_flow() {
    let port = free_udp_port();
    let connector = LibSrtConnector::new();
    let (a_task, a) = listening(&connector, port, "cam1", None);
    let (b_task, b) = listening(&connector, port, "cam2", Some("cam2-secret-phrase"));
    let (c_task, c) = listening(&connector, port, "cam3", None);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let caller = |id: &str, extra: &str| {
        live_transmit(&format!(
            "srt://127.0.0.1:{port}?mode=caller&streamid={id}&latency=80{extra}"
        ))
    };
    let _cam1 = caller("cam1", "");
    let cam2 = caller("cam2", "&passphrase=cam2-secret-phrase");
    let _cam3 = caller("cam3", "");
    let start = tokio::time::Instant::now();
    while [&a, &b, &c].iter().any(|s| since(s, start) < 100) {
        assert!(start.elapsed() < WAIT, "not all three streams flow");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // cam2's encoder crashes and comes back; the others never stall.
    drop(cam2);
    let killed = tokio::time::Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let _cam2 = caller("cam2", "&passphrase=cam2-secret-phrase");
    let back = tokio::time::Instant::now();
    while since(&b, back) < 100 {
        assert!(back.elapsed() < WAIT, "cam2 did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (name, seen) in [("cam1", &a), ("cam3", &c)] {
        let times: Vec<_> = seen
            .lock()
            .unwrap()
            .iter()
            .copied()
            .filter(|t| *t >= killed)
            .collect();
        let longest = times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or_default();
        assert!(
            longest < Duration::from_millis(500),
            "{name} stalled {longest:?} while cam2 restarted"
        );
    }
    for task in [a_task, b_task, c_task] {
        task.abort();
    }
}

#[tokio::test]
async fn health_loss_is_what_srt_could_not_recover_of_the_simulators_drops() {
    let port = free_udp_port();
    // A latency too short to retransmit everything the simulator drops.
    let _server = live_transmit(&format!("srt://:{port}?mode=listener&latency=20"));
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let sim = NetworkSimulator::builder()
        .seed(7)
        .start(server)
        .await
        .unwrap();
    let target = Target::new("cam1", Protocol::Srt)
        .address(sim.local_addr())
        .parameter("latency", "20");
    let mut config = fast_config();
    // Loss is what is measured here, not a reason to reconnect.
    config.health_thresholds.max_packet_loss = 1.0;
    let connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut packets = config.builder().build(connector, target);
    let health = packets.health_handle().unwrap();
    // Connected and flowing on a clean path first.
    for _ in 0..50 {
        tokio::time::timeout(WAIT, packets.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    }
    sim.set_loss(0.15).unwrap();
    for _ in 0..1500 {
        tokio::time::timeout(WAIT, packets.next())
            .await
            .expect("packets keep coming")
            .expect("the stream goes on")
            .unwrap();
    }
    sim.set_loss(0.0).unwrap();
    // Let SRT's counters catch up with the last packets read.
    for _ in 0..40 {
        let _ = tokio::time::timeout(WAIT, packets.next()).await;
    }
    let counted = health.totals();
    let state = packets.connection_state().expect("still connected");
    let srt_lost: u64 = state.parameters["srt.lost"].parse().unwrap();
    let reported: u64 = state.parameters["srt.loss_reported"].parse().unwrap();
    let dropped = sim.stats().to_client.dropped_loss;
    eprintln!(
        "simulator dropped {dropped} towards us; SRT reported {reported} lost and gave up on \
         {srt_lost}; health counted {} lost of {} expected",
        counted.lost, counted.expected
    );
    assert!(dropped > 100, "the simulator dropped {dropped}");
    assert!(
        reported > 0 && reported <= dropped + 10,
        "{reported} vs {dropped}"
    );
    assert!(srt_lost > 0, "SRT recovered everything at 20 ms latency?");
    assert!(
        srt_lost < dropped,
        "SRT recovered some: {srt_lost} of {dropped}"
    );
    let diff = counted.lost.abs_diff(srt_lost);
    assert!(
        diff <= 3.max(srt_lost / 10),
        "health counted {} lost, SRT gave up on {srt_lost}",
        counted.lost
    );
}

/// Read `n` packets from `packets` within [`WAIT`] each.
async fn take<S, E>(packets: &mut S, n: usize) -> Vec<mirror_reconnect::connection::Packet>
where
    S: futures_util::Stream<Item = Result<mirror_reconnect::connection::Packet, E>> + Unpin,
    E: std::fmt::Debug,
{
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        let packet = tokio::time::timeout(WAIT, packets.next())
            .await
            .expect("a packet in time")
            .expect("the stream goes on")
            .unwrap();
        got.push(packet);
    }
    got
}

#[tokio::test]
async fn a_libsrt_caller_is_back_after_its_listener_is_killed_and_restarted() {
    let port = free_udp_port();
    let server = live_transmit(&format!("srt://:{port}?mode=listener"));
    let connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut config = fast_config();
    config.max_retries = 1000;
    let mut packets = config
        .builder()
        .probe(connector.probe())
        .build(connector, caller(port, "cam1"));
    take(&mut packets, 50).await;
    // SIGKILL, as a crashed server; back 2 s later on the same port.
    drop(server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _server = live_transmit(&format!("srt://:{port}?mode=listener"));
    let back = tokio::time::Instant::now();
    take(&mut packets, 50).await;
    eprintln!("streaming again {:?} after the restart", back.elapsed());
}

#[tokio::test]
async fn an_srt_tokio_caller_streams_into_the_libsrt_listener() {
    let port = free_udp_port();
    let connector = LibSrtConnector::new();
    let address = connector
        .listen(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    let target = srt_target(&format!(
        "srt://127.0.0.1:{port}?mode=listener&streamid=cam1"
    ))
    .unwrap();
    let mut packets = fast_config().builder().passive().build(connector, target);
    let sender = tokio::spawn(async move {
        let mut socket = srt_tokio::SrtSocket::builder()
            .latency(Duration::from_millis(80))
            .call(address, Some("cam1"))
            .await
            .unwrap();
        for n in 0u32..300 {
            let mut payload = vec![0u8; 1316];
            payload[..4].copy_from_slice(&n.to_be_bytes());
            futures_util::SinkExt::send(
                &mut socket,
                (std::time::Instant::now(), bytes::Bytes::from(payload)),
            )
            .await
            .unwrap();
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        socket
    });
    let got = take(&mut packets, 200).await;
    let numbers: Vec<u32> = got
        .iter()
        .map(|p| u32::from_be_bytes(p.payload[..4].try_into().unwrap()))
        .collect();
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    drop(sender);
}

#[tokio::test]
async fn ffmpegs_native_srt_output_streams_into_the_libsrt_listener() {
    let port = free_udp_port();
    let connector = LibSrtConnector::new();
    let target = srt_target(&format!(
        "srt://127.0.0.1:{port}?mode=listener&streamid=cam1&latency=120"
    ))
    .unwrap();
    let mut packets = fast_config().builder().passive().build(connector, target);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ffmpeg = support::srt::ffmpeg_test_pattern(&format!(
        "srt://127.0.0.1:{port}?mode=caller&streamid=cam1&latency=120000&pkt_size=1316"
    ));
    let got = take(&mut packets, 100).await;
    // MPEG-TS: whole 188-byte packets, each starting with the sync byte.
    for packet in &got {
        assert_eq!(packet.payload.len() % 188, 0, "{}", packet.payload.len());
        assert!(packet.payload.chunks(188).all(|ts| ts[0] == 0x47));
    }
}

#[tokio::test]
async fn a_libsrt_caller_recovers_from_a_blackholed_path() {
    let port = free_udp_port();
    let _server = live_transmit(&format!("srt://:{port}?mode=listener"));
    let server: SocketAddr = ([127, 0, 0, 1], port).into();
    let sim = NetworkSimulator::builder().start(server).await.unwrap();
    let target = Target::new("cam1", Protocol::Srt)
        .address(sim.local_addr())
        .parameter("latency", "80");
    let connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut config = fast_config();
    config.max_retries = 1000;
    let mut packets = config
        .builder()
        .probe(connector.probe())
        .build(connector, target);
    let events = support::srt::Recorder::attach(packets.event_bus());
    take(&mut packets, 50).await;
    sim.set_blackhole(true);
    tokio::time::sleep(Duration::from_secs(2)).await;
    sim.set_blackhole(false);
    let up = tokio::time::Instant::now();
    // Packets sent after the path came back arrive: the stream is live again, on a
    // new connection or (make-before-break) on the old one, kept.
    loop {
        take(&mut packets, 1).await;
        let (ok, cleared) = (
            events.count(mirror_reconnect::driver::EventType::ReconnectionSucceeded),
            events.count(mirror_reconnect::driver::EventType::FailureCleared),
        );
        if ok + cleared >= 1 {
            break;
        }
        let seen: Vec<_> = events.all().iter().map(|e| e.event_type.as_str()).collect();
        assert!(up.elapsed() < WAIT, "not reconnected: {seen:?}");
    }
    take(&mut packets, 50).await;
    assert!(events.count(mirror_reconnect::driver::EventType::FailureDetected) >= 1);
}

#[tokio::test]
async fn a_sending_connection_hears_its_receiver_through_acks() {
    let port = free_udp_port();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let child = Command::new("srt-live-transmit")
        .args(["-q", "-ll", "fatal"])
        .arg(format!("srt://:{port}?mode=listener&latency=80"))
        .arg(format!("udp://{}", sink.local_addr().unwrap()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let _receiver = ChildGuard::new("srt-live-transmit", child);
    let mut connector = LibSrtConnector::new().connect_timeout(Duration::from_millis(500));
    let mut connection = connect_when_up(&mut connector, &caller(port, "out")).await;
    for _ in 0..200 {
        futures_util::SinkExt::send(&mut connection, bytes::Bytes::from(vec![0x47u8; 1316]))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // Reading (nothing comes) keeps the statistics fresh.
    read_for(&mut connection, Duration::from_millis(300)).await;
    let heard = connection.statistics().received_packets;
    assert!(heard > 0, "a sender hears nothing of its receiver: {heard}");
}

#[tokio::test]
async fn a_libsrt_rendezvous_with_srt_live_transmit_streams_both_ways_up() {
    let ours = free_udp_port();
    let theirs = free_udp_port();
    // srt-live-transmit dials our port from its own (`port=`), as we dial its.
    let _peer = live_transmit(&format!(
        "srt://127.0.0.1:{ours}?mode=rendezvous&port={theirs}&latency=80"
    ));
    let target = srt_target(&format!(
        "srt://127.0.0.1:{theirs}?mode=rendezvous&local_port={ours}&latency=80"
    ))
    .unwrap();
    let mut connector = LibSrtConnector::new().connect_timeout(Duration::from_secs(2));
    let mut connection = connect_when_up(&mut connector, &target).await;
    assert_eq!(
        connection.mode(),
        mirror_reconnect::protocol::srt::SrtMode::Rendezvous
    );
    let mut numbers = Vec::new();
    for _ in 0..100 {
        let packet = tokio::time::timeout(WAIT, connection.next())
            .await
            .expect("a packet in time")
            .expect("the rendezvous goes on")
            .unwrap();
        numbers.push(u32::from_be_bytes(packet.payload[..4].try_into().unwrap()));
    }
    assert!(numbers.windows(2).all(|w| w[1] == w[0] + 1), "{numbers:?}");
    assert!(connection.rtt().is_some(), "live RTT on a rendezvous too");
}
