//! Interop with libsrt: `srt-live-transmit` (Debian package srt-tools) as the caller
//! into our listener and as the listener for our caller, killed with SIGKILL and
//! restarted; MPEG-TS from ffmpeg flowing through; a caller that stays connected but
//! stops sending; a wrong passphrase.
//!
//! Real processes, real time: bounds are generous and measured figures are printed.
//! Every child is killed when its guard drops, even when a test fails.

#![cfg(feature = "srt")]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use mirror_reconnect::connection::{Packet, Protocol, Secret, Target};
use mirror_reconnect::detect::FailureReason;
use mirror_reconnect::driver::EventType;
use mirror_reconnect::error::ConnectErrorKind;
use support::srt::{
    connect_error_in, fast_config, free_udp_port, have, on_both_connectors, ChildGuard, Recorder,
};
use tokio::net::UdpSocket;
use tokio::time::timeout;

const WAIT: Duration = Duration::from_secs(30);
const TS: usize = 188;

fn require_tools() {
    assert!(
        have("srt-live-transmit"),
        "srt-live-transmit is missing: apt-get install srt-tools (scripts/test.sh does)"
    );
}

/// `srt-live-transmit INPUT OUTPUT`, quiet, killed with its guard.
fn live_transmit(name: &str, input: &str, output: &str) -> ChildGuard {
    let child = Command::new("srt-live-transmit")
        .args(["-q", "-ll", "fatal", "-chunk", "1316", input, output])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("cannot start srt-live-transmit");
    ChildGuard::new(name, child)
}

/// ffmpeg making a 25 fps MPEG-2 test pattern as MPEG-TS in 1316-byte datagrams.
fn ffmpeg_ts(udp_port: u16) -> ChildGuard {
    support::srt::ffmpeg_test_pattern(&format!("udp://127.0.0.1:{udp_port}?pkt_size=1316"))
}

/// Our own MPEG-TS-shaped feed: 7 TS packets per datagram, each with the sync byte
/// and a datagram counter, every 4 ms, while `running`.
struct Feed {
    running: Arc<AtomicBool>,
    sent: Arc<AtomicU32>,
    task: tokio::task::JoinHandle<()>,
}

impl Feed {
    fn start(to: SocketAddr) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let sent = Arc::new(AtomicU32::new(0));
        let (r, s) = (Arc::clone(&running), Arc::clone(&sent));
        let task = tokio::spawn(async move {
            let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let mut tick = tokio::time::interval(Duration::from_millis(4));
            let mut n: u32 = 0;
            loop {
                tick.tick().await;
                if !r.load(Ordering::Relaxed) {
                    continue;
                }
                let mut datagram = vec![0xffu8; 7 * TS];
                for (i, packet) in datagram.chunks_mut(TS).enumerate() {
                    packet[0] = 0x47;
                    packet[1] = 0x01;
                    packet[2] = 0x00;
                    packet[3] = 0x10 | (i as u8 & 0x0f);
                    packet[4..8].copy_from_slice(&n.to_be_bytes());
                }
                // Nobody reading (the process is down) is fine.
                let _ = socket.send_to(&datagram, to).await;
                n = n.wrapping_add(1);
                s.store(n, Ordering::Relaxed);
            }
        });
        Self {
            running,
            sent,
            task,
        }
    }

    fn pause(&self) {
        self.running.store(false, Ordering::Relaxed);
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn assert_ts(packet: &Packet) {
    let p = &packet.payload;
    assert!(
        !p.is_empty() && p.len() % TS == 0,
        "payload of {} bytes is not whole TS packets",
        p.len()
    );
    for (i, ts) in p.chunks(TS).enumerate() {
        assert_eq!(ts[0], 0x47, "TS packet {i} has no sync byte");
    }
}

fn listener_target(stream_id: &str, port: u16) -> Target {
    Target::new(stream_id, Protocol::Srt)
        .address(SocketAddr::from(([127, 0, 0, 1], port)))
        .parameter("mode", "listener")
        .parameter("latency", "40")
}

on_both_connectors! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn libsrt_caller_killed_and_restarted_into_our_listener_with_ffmpeg_ts() {
        require_tools();
        assert!(have("ffmpeg"), "ffmpeg is missing: apt-get install ffmpeg");
        let srt_port = free_udp_port();
        let udp_in = free_udp_port();
        let _ffmpeg = ffmpeg_ts(udp_in);

        let target = listener_target("cam1", srt_port);
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());
        let caller_uri = format!("srt://127.0.0.1:{srt_port}?streamid=cam1&latency=40");
        let input = format!("udp://:{udp_in}");

        const RESTARTS: usize = 3;
        let mut figures = Vec::new();
        let mut ts_packets = 0usize;
        for run in 0..=RESTARTS {
            let started = Instant::now();
            let mut caller = live_transmit("srt-live-transmit caller", &input, &caller_uri);
            // The stream flows again: MPEG-TS through SRT and the whole stack, from a new
            // connection (not what was still buffered from the old one).
            let mut checked = 0;
            while checked < 100 || events.count(EventType::ReconnectionSucceeded) < run {
                let packet = timeout(WAIT, packets.next())
                    .await
                    .expect("no packet after (re)starting the caller")
                    .expect("stream ended")
                    .unwrap();
                assert_ts(&packet);
                ts_packets += packet.payload.len() / TS;
                checked += 1;
            }
            let connected = if run == 0 {
                started.elapsed()
            } else {
                let (at, _) = events
                    .timed()
                    .into_iter()
                    .filter(|(_, e)| e.event_type == EventType::ReconnectionSucceeded)
                    .nth(run - 1)
                    .unwrap();
                at.saturating_duration_since(started)
            };
            assert!(caller.is_running(), "srt-live-transmit exited early");
            figures.push(connected);
            println!("run {run}: streaming {connected:?} after starting the caller");
            // SIGKILL: no SRT shutdown, the peer just vanishes.
            caller.kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{ts_packets} TS packets checked; start-to-first-packet: {figures:?}");
        // Every kill was noticed, every restart reconnected.
        let timeline = events.all();
        assert_eq!(
            events.count(EventType::ReconnectionSucceeded),
            RESTARTS,
            "{timeline:#?}"
        );
        assert!(events.count(EventType::FailureDetected) >= RESTARTS);
        assert_eq!(events.count(EventType::ReconnectionFailed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_caller_into_a_libsrt_listener_killed_and_restarted() {
        require_tools();
        let srt_port = free_udp_port();
        let udp_in = free_udp_port();
        let feed = Feed::start(SocketAddr::from(([127, 0, 0, 1], udp_in)));
        let listener_uri = format!("srt://:{srt_port}?mode=listener&latency=40");
        let input = format!("udp://:{udp_in}");

        let target = Target::new("cam2", Protocol::Srt)
            .address(SocketAddr::from(([127, 0, 0, 1], srt_port)))
            .parameter("latency", "40")
            .parameter("connect_timeout", "500");
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());

        const RESTARTS: usize = 3;
        for run in 0..=RESTARTS {
            let started = Instant::now();
            let mut listener = live_transmit("srt-live-transmit listener", &input, &listener_uri);
            let mut last = None;
            let mut checked = 0;
            while checked < 100 || events.count(EventType::ReconnectionSucceeded) < run {
                let packet = timeout(WAIT, packets.next())
                    .await
                    .expect("no packet after (re)starting the listener")
                    .expect("stream ended")
                    .unwrap();
                assert_ts(&packet);
                // Datagram numbers only go up within a connection; a new connection
                // starts from wherever the feed is.
                let n = u32::from_be_bytes(packet.payload[4..8].try_into().unwrap());
                if let Some(prev) = last {
                    assert!(n > prev, "out of order: {n} after {prev}");
                }
                last = Some(n);
                checked += 1;
            }
            println!(
                "run {run}: streaming {:?} after starting the listener",
                started.elapsed()
            );
            assert!(listener.is_running());
            listener.kill();
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        println!("{} datagrams fed", feed.sent.load(Ordering::Relaxed));
        assert_eq!(events.count(EventType::ReconnectionSucceeded), RESTARTS);
        assert_eq!(events.count(EventType::ReconnectionFailed), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connected_caller_that_stops_sending_is_caught_as_silence_before_srt_idle_timeout() {
        require_tools();
        let srt_port = free_udp_port();
        let udp_in = free_udp_port();
        let feed = Feed::start(SocketAddr::from(([127, 0, 0, 1], udp_in)));
        let target = listener_target("quiet", srt_port);
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());
        let mut caller = live_transmit(
            "srt-live-transmit caller",
            &format!("udp://:{udp_in}"),
            &format!("srt://127.0.0.1:{srt_port}?streamid=quiet&latency=40"),
        );
        // Long enough for the detector to learn the stream's rhythm.
        for _ in 0..500 {
            let packet = timeout(WAIT, packets.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_ts(&packet);
        }
        // The encoder stalls; srt-live-transmit stays connected (keep-alives flow).
        feed.pause();
        let stopped = Instant::now();
        let detected = loop {
            // Drain what was in flight; the stream itself stays quiet.
            let _ = timeout(Duration::from_millis(5), packets.next()).await;
            if let Some(found) = events
                .timed()
                .into_iter()
                .find(|(_, e)| e.event_type == EventType::FailureDetected)
            {
                break found;
            }
            assert!(
                stopped.elapsed() < Duration::from_secs(10),
                "silence never detected"
            );
        };
        let (at, event) = detected;
        let took = at.saturating_duration_since(stopped);
        let details = event.error.clone().unwrap_or_default();
        println!("silence detected {took:?} after the feed stopped: {details}");
        assert_eq!(event.reason, Some(FailureReason::Timeout));
        assert!(details.contains("silence"), "{details}");
        assert!(
            took < Duration::from_millis(2500),
            "detected after {took:?}: not well before SRT's 5 s idle timeout"
        );
        assert!(caller.is_running(), "the caller stayed connected");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_passphrase_against_libsrt_fails_once() {
        require_tools();
        let srt_port = free_udp_port();
        let udp_in = free_udp_port();
        let _feed = Feed::start(SocketAddr::from(([127, 0, 0, 1], udp_in)));
        let _listener = live_transmit(
            "srt-live-transmit listener",
            &format!("udp://:{udp_in}"),
            &format!("srt://:{srt_port}?mode=listener&passphrase=correct-horse-battery"),
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
        let target = Target::new("locked", Protocol::Srt)
            .address(SocketAddr::from(([127, 0, 0, 1], srt_port)))
            .passphrase(Secret::new("wrong-horse-battery"));
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());
        let started = Instant::now();
        let error = timeout(WAIT, packets.next())
            .await
            .unwrap()
            .unwrap()
            .expect_err("a wrong passphrase is refused");
        println!("refused after {:?}: {error}", started.elapsed());
        let connect = connect_error_in(&error).unwrap();
        assert_eq!(connect.kind(), ConnectErrorKind::Unauthorized, "{error}");
        assert!(!connect.is_retryable());
        assert!(packets.next().await.is_none());
        assert_eq!(
            events.count(EventType::ReconnectionAttempt),
            1,
            "no retry storm"
        );
        let failed = events.of(EventType::ReconnectionFailed);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].attempt, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn libsrt_caller_with_the_right_passphrase_into_our_encrypted_listener() {
        require_tools();
        let srt_port = free_udp_port();
        let udp_in = free_udp_port();
        let _feed = Feed::start(SocketAddr::from(([127, 0, 0, 1], udp_in)));
        let target = listener_target("enc", srt_port).passphrase(Secret::new("correct-horse-battery"));
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let _caller = live_transmit(
            "srt-live-transmit caller",
            &format!("udp://:{udp_in}"),
            &format!(
                "srt://127.0.0.1:{srt_port}?streamid=enc&latency=40&passphrase=correct-horse-battery&pbkeylen=16"
            ),
        );
        for _ in 0..200 {
            let packet = timeout(WAIT, packets.next())
                .await
                .expect("no decrypted packet")
                .unwrap()
                .unwrap();
            assert_ts(&packet);
        }
        let health = packets.health().unwrap().check_health();
        println!("encrypted interop: {health:?}");
        assert_eq!(health.error_count, 0, "every packet decrypted");
    }
}
