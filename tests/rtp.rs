//! The RTP connector against real senders on loopback: hand-built packets, garbage,
//! the network simulator, and ffmpeg.
#![cfg(feature = "rtp")]

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{Connection, ConnectionError, Packet, Protocol, Target};
use mirror_reconnect::protocol::rtp::{
    keys, RtpConnection, RtpConnector, RtpPacketError, RtpStatistics, SessionTimedOut,
};
use mirror_reconnect::ReconnectionConfig;
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout, Instant};
use tower::ServiceExt;

/// An RTP packet: version 2, no padding, extension or CSRC.
fn rtp(ssrc: u32, pt: u8, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, pt & 0x7f];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

fn header_of(packet: &Packet) -> (u16, u32, u32) {
    let b = &packet.payload;
    (
        u16::from_be_bytes([b[2], b[3]]),
        u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
    )
}

fn target() -> Target {
    Target::new("cam", Protocol::Rtp).address("127.0.0.1:0".parse().expect("addr"))
}

async fn connect(target: Target) -> (RtpConnection, SocketAddr, UdpSocket) {
    let conn = RtpConnector::new()
        .oneshot(target)
        .await
        .expect("RTP connect");
    let addr = conn.local_addr().expect("bound");
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind sender");
    (conn, addr, sender)
}

async fn next_item(conn: &mut RtpConnection) -> Result<Packet, ConnectionError> {
    timeout(Duration::from_secs(5), conn.next())
        .await
        .expect("an item within 5 s")
        .expect("the stream goes on")
}

/// A free UDP port on loopback (bound, then released).
fn free_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

#[tokio::test]
async fn loss_duplicates_reordering_and_wrap_from_a_real_sender() {
    let (mut conn, addr, sender) = connect(target()).await;
    // Across the wrap: 65534 lost, 1 duplicated, 3 and 4 swapped, 7 lost.
    let order: [u16; 10] = [65_532, 65_533, 65_535, 0, 1, 1, 2, 4, 3, 5];
    let order = order.iter().chain(&[6u16, 8, 9]);
    let mut sent = 0;
    for &seq in order {
        sender
            .send_to(&rtp(0xabcd, 96, seq, u32::from(seq) * 3000, b"x"), addr)
            .await
            .expect("send");
        sent += 1;
    }
    let mut got = Vec::new();
    for _ in 0..sent {
        let packet = next_item(&mut conn).await.expect("a packet");
        got.push(packet.sequence.expect("numbered").value());
    }
    assert_eq!(
        got,
        [65_532u32, 65_533, 65_535, 0, 1, 1, 2, 4, 3, 5, 6, 8, 9]
    );
    let stats = conn.statistics();
    println!("{stats:?}");
    assert_eq!(stats.expected, 14, "65532 ..= 9 across the wrap");
    assert_eq!(stats.received, 12);
    assert_eq!(stats.lost, 2);
    assert_eq!(stats.duplicates, 1);
    assert_eq!(stats.reordered, 1);
    assert_eq!(stats.ssrc, Some(0xabcd));
    assert_eq!(stats.payload_type, Some(96));
    let state = conn.state();
    assert_eq!(state.parameters[keys::LOST], "2");
    assert_eq!(state.statistics.packets_received, 13);
    assert_eq!(RtpStatistics::from_parameters(&state.parameters).lost, 2);
}

#[tokio::test]
async fn garbage_is_counted_and_never_fatal() {
    let (mut conn, addr, sender) = connect(target()).await;
    let garbage: Vec<Vec<u8>> = vec![
        vec![],
        vec![0x80],
        vec![0x80; 11],
        vec![0x40; 20], // version 1
        {
            // Padding bit set, padding length beyond the packet.
            let mut p = rtp(1, 96, 1, 0, b"abc");
            p[0] |= 0x20;
            p.push(200);
            p
        },
        {
            // Extension bit set, extension cut short.
            let mut p = rtp(1, 96, 1, 0, b"");
            p[0] |= 0x10;
            p.extend_from_slice(&[0, 0, 0, 9]);
            p
        },
        {
            // Four CSRCs announced, none there.
            let mut p = rtp(1, 96, 1, 0, b"");
            p[0] |= 0x04;
            p
        },
    ];
    for g in &garbage {
        sender.send_to(g, addr).await.expect("send");
    }
    // RTCP receiver report on the same port: skipped, not an error.
    sender
        .send_to(&[0x80, 201, 0, 1, 0, 0, 0, 1], addr)
        .await
        .expect("send");
    sender
        .send_to(&rtp(7, 96, 100, 0, b"real"), addr)
        .await
        .expect("send");

    for _ in &garbage {
        match next_item(&mut conn).await {
            Err(ConnectionError::Packet(e)) => {
                let e = e
                    .downcast_ref::<RtpPacketError>()
                    .expect("an RTP packet error");
                assert!(matches!(e, RtpPacketError::NotRtp { .. }), "{e}");
                assert!(e.to_string().contains("not an RTP packet"), "{e}");
            }
            other => panic!("expected a packet error, got {other:?}"),
        }
    }
    let packet = next_item(&mut conn).await.expect("the real packet");
    assert_eq!(&packet.payload[12..], b"real");
    let stats = conn.statistics();
    assert_eq!((stats.invalid, stats.rtcp, stats.received), (7, 1, 1));
    assert_eq!(conn.state().statistics.packet_errors, 7);

    // Random datagrams, a fifth of them made to look like RTP v2: every datagram
    // gives a packet or an error (RTCP-looking ones are skipped), and nothing panics.
    let mut rng = fastrand::Rng::with_seed(99);
    let count = 2000;
    let datagrams: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let len = rng.usize(0..64);
            let mut d: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
            if i % 5 == 0 && len > 0 {
                d[0] = 0x80 | (d[0] & 0x3f);
            }
            d
        })
        .collect();
    let sent_rtcp = datagrams
        .iter()
        .filter(|d| d.len() >= 2 && d[0] >> 6 == 2 && (64..=95).contains(&(d[1] & 0x7f)))
        .count();
    let send = async {
        for (i, d) in datagrams.iter().enumerate() {
            sender.send_to(d, addr).await.expect("send");
            if i % 50 == 49 {
                sleep(Duration::from_millis(2)).await;
            }
        }
    };
    let receive = async {
        for _ in 0..count - sent_rtcp {
            let _ = next_item(&mut conn).await;
        }
    };
    tokio::join!(send, receive);
    // Still alive: the locked sender's next packet comes through, after whatever
    // skipped RTCP was left in the queue.
    sender
        .send_to(&rtp(7, 96, 101, 0, b"again"), addr)
        .await
        .expect("send");
    let packet = next_item(&mut conn)
        .await
        .expect("the sender's next packet");
    assert_eq!(&packet.payload[12..], b"again");
    let stats = conn.statistics();
    println!("after {count} random datagrams: {stats:?}");
    assert_eq!(stats.rtcp, 1 + sent_rtcp as u64);
    assert!(stats.invalid > 1000, "{}", stats.invalid);
}

#[tokio::test]
async fn another_ssrc_is_refused_until_the_first_falls_silent() {
    let (mut conn, addr, sender) = connect(target().parameter("ssrc_timeout_ms", "200")).await;
    let send = |p: Vec<u8>| {
        let sender = &sender;
        async move { sender.send_to(&p, addr).await.expect("send") }
    };
    send(rtp(1, 96, 10, 0, b"a")).await;
    assert!(next_item(&mut conn).await.is_ok());
    send(rtp(2, 96, 500, 0, b"b")).await;
    match next_item(&mut conn).await {
        Err(ConnectionError::Packet(e)) => assert!(
            matches!(
                e.downcast_ref::<RtpPacketError>(),
                Some(RtpPacketError::ForeignSsrc {
                    expected: 1,
                    got: 2
                })
            ),
            "{e}"
        ),
        other => panic!("expected a foreign SSRC error, got {other:?}"),
    }
    send(rtp(1, 97, 11, 0, b"c")).await;
    assert!(
        next_item(&mut conn).await.is_err(),
        "payload type is locked"
    );

    sleep(Duration::from_millis(400)).await;
    send(rtp(2, 97, 501, 0, b"d")).await;
    let packet = next_item(&mut conn)
        .await
        .expect("new sender locked after silence");
    assert_eq!(header_of(&packet).2, 2);
    let stats = conn.statistics();
    assert_eq!(
        (
            stats.ssrc,
            stats.payload_type,
            stats.restarts,
            stats.foreign_ssrc
        ),
        (Some(2), Some(97), 1, 1)
    );
}

#[tokio::test]
async fn a_sequence_restart_is_followed() {
    let (mut conn, addr, sender) = connect(target()).await;
    for seq in [1u16, 2, 3, 30_000, 30_001, 30_002] {
        sender
            .send_to(&rtp(5, 96, seq, 0, b""), addr)
            .await
            .expect("send");
    }
    let mut seqs = Vec::new();
    let mut jumps = 0;
    for _ in 0..6 {
        match next_item(&mut conn).await {
            Ok(p) => seqs.push(p.sequence.expect("numbered").value()),
            Err(ConnectionError::Packet(e)) => {
                assert!(e.to_string().contains("jumped from 3 to 30000"), "{e}");
                jumps += 1;
            }
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(seqs, [1, 2, 3, 30_001, 30_002]);
    assert_eq!(jumps, 1);
    let stats = conn.statistics();
    assert_eq!(
        (stats.restarts, stats.lost, stats.sequence_jumps),
        (1, 0, 1)
    );
}

#[tokio::test]
async fn rewriting_hands_on_continuous_numbers_across_a_sender_restart() {
    let (mut conn, addr, sender) = connect(
        target()
            .parameter("rewrite", "true")
            .parameter("ssrc_timeout_ms", "100"),
    )
    .await;
    for i in 0..5u16 {
        sender
            .send_to(
                &rtp(1, 96, 65_533u16.wrapping_add(i), u32::from(i) * 3600, b"a"),
                addr,
            )
            .await
            .expect("send");
    }
    let mut out = Vec::new();
    for _ in 0..5 {
        out.push(header_of(&next_item(&mut conn).await.expect("packet")));
    }
    sleep(Duration::from_millis(300)).await;
    for i in 0..5u16 {
        sender
            .send_to(
                &rtp(2, 96, 9000 + i, 1_000_000 + u32::from(i) * 3600, b"b"),
                addr,
            )
            .await
            .expect("send");
    }
    for _ in 0..5 {
        out.push(header_of(&next_item(&mut conn).await.expect("packet")));
    }
    let seqs: Vec<u16> = out.iter().map(|h| h.0).collect();
    assert_eq!(seqs, [65_533, 65_534, 65_535, 0, 1, 2, 3, 4, 5, 6]);
    // Timestamps move on by at least the 300 ms that passed (27000 at 90 kHz).
    let step = out[5].1.wrapping_sub(out[4].1);
    println!("timestamp step across the restart: {step}");
    assert!((27_000..200_000).contains(&step), "{step}");
    assert_eq!(out[6].1.wrapping_sub(out[5].1), 3600);
    // The SSRC is left as sent.
    assert_eq!(out[9].2, 2);
    let state = conn.state();
    assert_eq!(state.parameters[keys::REWRITE_LAST_SEQ_OUT], "6");
}

#[tokio::test(start_paused = true)]
async fn a_silent_session_times_out() {
    let (mut conn, addr, sender) = connect(target().parameter("session_timeout_ms", "300")).await;
    sender
        .send_to(&rtp(1, 96, 1, 0, b""), addr)
        .await
        .expect("send");
    assert!(conn.next().await.expect("item").is_ok());
    let since = Instant::now();
    match conn.next().await {
        Some(Err(ConnectionError::Network(e))) => {
            assert!(e.to_string().contains("RTP session timed out"), "{e}");
            let t = e.downcast_ref::<SessionTimedOut>().expect("typed");
            assert_eq!(t.after, Duration::from_millis(300));
        }
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert_eq!(since.elapsed(), Duration::from_millis(300));
    assert!(conn.next().await.is_none(), "the stream ends after it");

    // Without retry_on_timeout the session just ends.
    let mut quiet = RtpConnector::new()
        .session_timeout(Duration::from_secs(2))
        .retry_on_timeout(false)
        .oneshot(target())
        .await
        .expect("connect");
    let since = Instant::now();
    assert!(quiet.next().await.is_none());
    assert_eq!(since.elapsed(), Duration::from_secs(2));
}

#[tokio::test]
async fn bad_targets_are_not_retryable() {
    for target in [
        Target::new("cam", Protocol::Rtp),
        target().parameter("clock_rate", "fast"),
        target().parameter("latncy", "120"),
    ] {
        let err = RtpConnector::new()
            .oneshot(target)
            .await
            .expect_err("refused");
        assert!(
            !mirror_reconnect::error::is_retryable(err.as_ref()),
            "{err}"
        );
    }
    // A port in use is worth retrying.
    let taken = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let err = RtpConnector::new()
        .oneshot(Target::new("cam", Protocol::Rtp).address(taken.local_addr().expect("addr")))
        .await
        .expect_err("in use");
    assert!(mirror_reconnect::error::is_retryable(err.as_ref()), "{err}");
    assert!(err.to_string().contains("cannot bind"), "{err}");
}

/// Health's loss, from the sequence numbers, matches what the simulator dropped.
#[cfg(feature = "network-simulation")]
#[tokio::test]
async fn loss_through_the_simulator_matches_what_it_dropped() {
    use mirror_reconnect::health::HealthLayer;
    use mirror_reconnect::sim::NetworkSimulator;
    use tower::ServiceBuilder;

    let health = HealthLayer::new();
    let handle = health.handle();
    let mut conn = ServiceBuilder::new()
        .layer(health)
        .service(RtpConnector::new())
        .oneshot(target())
        .await
        .expect("connect");
    let addr = conn.get_ref().local_addr().expect("bound");
    let sim = NetworkSimulator::builder()
        .seed(31)
        .loss(0.05)
        .jitter(Duration::from_millis(2))
        .latency(Duration::from_millis(5))
        .start(addr)
        .await
        .expect("simulator");
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");

    let n: u16 = 3000;
    let send = async {
        for seq in 0..n {
            if seq == n - 20 {
                // The last packets get through, so every loss is followed by a
                // packet that reveals it.
                sim.set_loss(0.0).expect("valid");
            }
            let ts = u32::from(seq) * 90; // one packet per ms at 90 kHz
            sender
                .send_to(&rtp(0x5eed, 33, seq, ts, &[0u8; 188]), sim.local_addr())
                .await
                .expect("send");
            if seq % 10 == 9 {
                sleep(Duration::from_millis(10)).await;
            }
        }
    };
    let receive = async {
        let mut packets = 0u32;
        let mut last = 0;
        while last != u32::from(n - 1) {
            match timeout(Duration::from_secs(5), conn.next()).await {
                Ok(Some(Ok(p))) => {
                    packets += 1;
                    last = p.sequence.expect("numbered").value();
                }
                other => panic!("stream stopped: {other:?}"),
            }
        }
        packets
    };
    let ((), packets) = tokio::join!(send, receive);
    let dropped = sim.stats().to_upstream.dropped_loss;
    let health = handle.check_health();
    let counters = handle.counters();
    let rtp = RtpStatistics::from_parameters(&conn.state().parameters);
    println!(
        "simulator dropped {dropped} of {n}; health: lost {} of {} ({:.2} %); \
         RTP: lost {}, jitter {:?}; received {packets}",
        counters.lost,
        counters.expected,
        health.packet_loss * 100.0,
        rtp.lost,
        rtp.jitter
    );
    assert_eq!(counters.expected, u64::from(n));
    assert_eq!(
        counters.lost, dropped,
        "health sees exactly what was dropped"
    );
    assert_eq!(rtp.lost, dropped);
    assert_eq!(u64::from(packets) + dropped, u64::from(n));
    assert!(
        (0.03..0.07).contains(&health.packet_loss),
        "{}",
        health.packet_loss
    );
    // ±2 ms of added jitter, on packets sent in bursts: a few ms at most.
    assert!(rtp.jitter < Duration::from_millis(20), "{:?}", rtp.jitter);
}

/// A sender replaced while the stack reconnects: with rewriting and state restore,
/// the numbers handed on stay continuous.
#[tokio::test]
async fn continuity_survives_a_reconnect_through_the_full_stack() {
    let port = free_port();
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let config = ReconnectionConfig {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(500),
        ..ReconnectionConfig::default()
    };
    let target = Target::new("cam", Protocol::Rtp)
        .address(addr)
        .parameter("rewrite", "true")
        .parameter("session_timeout_ms", "400");
    let mut packets = config.reconnecting(RtpConnector::new(), target);

    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let send = async {
        // Sender A for 0.5 s, silence for 1.5 s (the session times out and the stack
        // reconnects), then sender B, numbered from elsewhere, for 2 s.
        for i in 0..50u16 {
            let _ = sender
                .send_to(&rtp(0xa, 96, 60_000 + i, u32::from(i) * 900, b"A"), addr)
                .await;
            sleep(Duration::from_millis(10)).await;
        }
        sleep(Duration::from_millis(1500)).await;
        for i in 0..200u16 {
            let _ = sender
                .send_to(
                    &rtp(0xb, 96, 7 + i, 5_000_000 + u32::from(i) * 900, b"B"),
                    addr,
                )
                .await;
            sleep(Duration::from_millis(10)).await;
        }
    };
    let receive = async {
        let mut got = Vec::new();
        while let Ok(Some(item)) = timeout(Duration::from_secs(3), packets.next()).await {
            let packet = item.expect("the stack does not give up");
            got.push(header_of(&packet));
        }
        got
    };
    let ((), got) = tokio::join!(send, receive);
    let from_a = got.iter().filter(|h| h.2 == 0xa).count();
    let from_b = got.iter().filter(|h| h.2 == 0xb).count();
    println!("received {from_a} from A, {from_b} from B");
    assert_eq!(from_a, 50);
    assert!(from_b > 100, "B resumed: {from_b}");
    let first_b = got.iter().position(|h| h.2 == 0xb).expect("B");
    assert_eq!(
        got[first_b].0,
        got[first_b - 1].0.wrapping_add(1),
        "B follows on from A"
    );
    assert!(
        got.windows(2).all(|w| w[1].0 == w[0].0.wrapping_add(1)),
        "continuous numbering"
    );
    let ts_step = got[first_b].1.wrapping_sub(got[first_b - 1].1);
    println!("timestamp step across the reconnect: {ts_step} (90 kHz)");
    assert!((90_000..2_000_000).contains(&ts_step), "{ts_step}");
}

/// Kills its ffmpeg, whatever happens to the test.
struct Ffmpeg(std::process::Child);

impl Drop for Ffmpeg {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn ffmpeg_to(port: u16) -> Ffmpeg {
    let child = std::process::Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-nostdin", "-re"])
        .args(["-f", "lavfi", "-i", "testsrc=size=320x240:rate=25"])
        .args(["-c:v", "mpeg2video", "-b:v", "800k", "-f", "rtp"])
        .arg(format!("rtp://127.0.0.1:{port}?pkt_size=1200"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg is needed for this test (scripts/test.sh installs it)");
    Ffmpeg(child)
}

/// One sender's packets as they came out of the stack.
#[derive(Debug, Default)]
struct Run {
    ssrc: u32,
    packets: usize,
    first: Option<Instant>,
    last: Option<Instant>,
}

/// ffmpeg sends RTP, is killed with SIGKILL and started again: the session times out,
/// the stack reconnects, and the stream resumes with sane loss and jitter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_killed_and_restarted_resumes_through_the_stack() {
    use mirror_reconnect::driver::EventType;

    let port = free_port();
    let config = ReconnectionConfig {
        initial_delay: Duration::from_millis(200),
        max_delay: Duration::from_secs(1),
        ..ReconnectionConfig::default()
    };
    let target = Target::new("ffmpeg", Protocol::Rtp)
        .address(([127, 0, 0, 1], port).into())
        .parameter("session_timeout_ms", "500");
    let mut packets = config.reconnecting(RtpConnector::new(), target);
    let mut events = packets.event_bus().subscribe();

    // 3 s of a first ffmpeg, killed hard; 1.5 s of nothing; 4 s of a second one.
    // The task owns both processes: if the test fails, they go with it.
    let mut control = tokio::spawn(async move {
        let first = ffmpeg_to(port);
        sleep(Duration::from_secs(3)).await;
        drop(first);
        sleep(Duration::from_millis(1500)).await;
        let second = ffmpeg_to(port);
        sleep(Duration::from_secs(4)).await;
        drop(second);
    });

    let mut runs: Vec<Run> = Vec::new();
    let mut worst_jitter = Duration::ZERO;
    let mut last_stats = RtpStatistics::default();
    loop {
        let item = tokio::select! {
            done = &mut control => {
                done.expect("ffmpeg control");
                break;
            }
            item = timeout(Duration::from_secs(5), packets.next()) => match item {
                Ok(Some(item)) => item.expect("the stack does not give up"),
                other => panic!("no packet for 5 s: {other:?}"),
            },
        };
        let (_, _, ssrc) = header_of(&item);
        if runs.last().is_none_or(|r| r.ssrc != ssrc) {
            runs.push(Run {
                ssrc,
                ..Run::default()
            });
        }
        if let Some(run) = runs.last_mut() {
            run.packets += 1;
            run.first.get_or_insert(item.arrival);
            run.last = Some(item.arrival);
        }
        if let Some(state) = packets.connection_state() {
            last_stats = RtpStatistics::from_parameters(&state.parameters);
            if last_stats.received > 25 {
                worst_jitter = worst_jitter.max(last_stats.jitter);
            }
        }
    }
    let mut reconnected = 0;
    while let Ok(event) = events.try_recv() {
        if event.event_type == EventType::ReconnectionSucceeded {
            reconnected += 1;
        }
    }
    for run in &runs {
        let span = run
            .last
            .zip(run.first)
            .map(|(l, f)| l - f)
            .unwrap_or_default();
        println!(
            "ffmpeg SSRC {:#010x}: {} packets over {span:?}",
            run.ssrc, run.packets
        );
    }
    println!(
        "second run's connection: lost {} of {} ({:.2} %), jitter now {:?}, worst {worst_jitter:?}; \
         reconnections {reconnected}",
        last_stats.lost,
        last_stats.expected,
        last_stats.loss_fraction() * 100.0,
        last_stats.jitter
    );
    assert_eq!(runs.len(), 2, "packets from two ffmpeg runs: {runs:?}");
    assert_ne!(runs[0].ssrc, runs[1].ssrc, "each ffmpeg picks its own SSRC");
    assert!(runs[0].packets > 50, "{runs:?}");
    assert!(runs[1].packets > 50, "the stream resumed: {runs:?}");
    assert!(
        reconnected >= 1,
        "the session timed out and the stack reconnected"
    );
    assert_eq!(last_stats.ssrc, Some(runs[1].ssrc));
    assert!(
        last_stats.loss_fraction() < 0.02,
        "loopback loses (almost) nothing: {last_stats:?}"
    );
    // Jitter is a frame's worth at most in steady state; a loaded machine can make
    // ffmpeg stall and catch up, so the worst moment only gets a generous bound.
    assert!(
        last_stats.jitter < Duration::from_millis(100),
        "{last_stats:?}"
    );
    assert!(
        worst_jitter < Duration::from_millis(400),
        "{worst_jitter:?}"
    );
}

/// A multicast target joins its group; the sender's packets stay on the host
/// (loopback interface, TTL 0).
#[tokio::test]
async fn a_multicast_target_joins_its_group() {
    use std::net::{Ipv4Addr, SocketAddrV4};

    let group = Ipv4Addr::new(239, 255, 77, 31);
    let port = free_port();
    let mut conn = RtpConnector::new()
        .oneshot(
            Target::new("mcast", Protocol::Rtp)
                .address(SocketAddrV4::new(group, port).into())
                .parameter("multicast_interface", "127.0.0.1"),
        )
        .await
        .expect("bind and join");

    let sender =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).expect("socket");
    sender
        .set_multicast_if_v4(&Ipv4Addr::LOCALHOST)
        .expect("loopback interface");
    sender.set_multicast_ttl_v4(0).expect("ttl 0");
    sender.set_multicast_loop_v4(true).expect("loop");
    let to = socket2::SockAddr::from(SocketAddrV4::new(group, port));
    for seq in 0..3u16 {
        sender
            .send_to(&rtp(0x77, 96, seq, 0, b"group"), &to)
            .expect("send to group");
    }
    for seq in 0..3u32 {
        let packet = next_item(&mut conn).await.expect("a group packet");
        assert_eq!(packet.sequence.map(|s| s.value()), Some(seq));
    }
}
