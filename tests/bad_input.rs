//! Bad input at the SRT edge that no other test covers: garbage sent to a listening
//! port while a stream flows on it, and a stream id longer than SRT carries.
//! docs/bad-input.md lists every bad input and the test that shows it.

#![cfg(feature = "srt")]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::EventType;
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::protocol::srt::srt_target;
use support::srt::{
    connect_error_in, fast_config, free_udp_port, live_transmit, on_both_connectors, Recorder,
};
use tower::ServiceExt;

/// A thread sending 1316-byte datagrams to `to` every 4 ms until dropped.
struct Feed(Arc<AtomicBool>, Option<std::thread::JoinHandle<()>>);

impl Feed {
    fn start(to: SocketAddr) -> Self {
        let running = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&running);
        let thread = std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            while flag.load(Ordering::Relaxed) {
                let _ = socket.send_to(&[0x47; 1316], to);
                std::thread::sleep(Duration::from_millis(4));
            }
        });
        Self(running, Some(thread))
    }
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
        if let Some(thread) = self.1.take() {
            let _ = thread.join();
        }
    }
}

/// Datagrams a stranger might send to an SRT port: random bytes, and SRT-shaped
/// control packets (handshakes, keep-alives, shutdowns) for random socket ids.
fn garbage(n: u32) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(u64::from(n));
    let len = rng.usize(0..1500);
    let mut datagram: Vec<u8> = (0..len).map(|_| rng.u8(..)).collect();
    if n % 2 == 0 && datagram.len() >= 16 {
        // Control bit, a control type (handshake 0, keep-alive 1, shutdown 5, …).
        datagram[0] = 0x80;
        datagram[1] = [0, 1, 2, 5, 6][rng.usize(..5)];
    }
    datagram
}

/// The next packet, within 20 s.
async fn next<S, E>(packets: &mut S)
where
    S: futures_core::Stream<Item = Result<mirror_reconnect::connection::Packet, E>> + Unpin,
    E: std::fmt::Debug,
{
    let next = tokio::time::timeout(Duration::from_secs(20), packets.next()).await;
    next.expect("a packet within 20 s")
        .expect("the stream goes on")
        .unwrap();
}

on_both_connectors! {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn garbage_on_the_srt_port_never_breaks_the_stream() {
        let (feed_port, srt_port) = (free_udp_port(), free_udp_port());
        let srt_addr = SocketAddr::from(([127, 0, 0, 1], srt_port));
        let _caller = live_transmit(
            "srt-live-transmit caller",
            &format!("udp://127.0.0.1:{feed_port}"),
            &format!("srt://{srt_addr}?mode=caller&streamid=cam1&latency=40"),
        );
        let _feed = Feed::start(SocketAddr::from(([127, 0, 0, 1], feed_port)));
        let target = Target::new("cam1", Protocol::Srt)
            .address(srt_addr)
            .parameter("mode", "listener")
            .parameter("latency", "40");
        // Judged by the connection, not by the silence detector: on a loaded machine a
        // scheduling stall of 30 ms reads as silence on a 4 ms feed.
        let mut config = fast_config();
        config.silence.enabled = false;
        let mut packets = Box::pin(config.reconnecting(Under::new(), target));
        let events = Recorder::attach(packets.event_bus());
        for _ in 0..50 {
            next(&mut packets).await;
        }
        let attempts = events.count(EventType::ReconnectionAttempt);

        // 20 000 strangers' datagrams while the stream flows.
        let blast = std::thread::spawn(move || {
            let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            for n in 0..20_000 {
                let _ = socket.send_to(&garbage(n), srt_addr);
                if n % 100 == 0 {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        });
        let mut during = 0;
        while !blast.is_finished() {
            next(&mut packets).await;
            during += 1;
        }
        blast.join().unwrap();
        for _ in 0..50 {
            next(&mut packets).await;
        }
        println!("{during} packets while the garbage came");
        assert_eq!(
            events.count(EventType::ReconnectionAttempt),
            attempts,
            "the stream was broken: {:?}",
            events.all()
        );
    }

    #[tokio::test]
    async fn an_over_long_stream_id_is_refused_naming_it_and_not_retried() {
        let long = "x".repeat(600);
        // In a URL, the parser says so.
        let url = format!("srt://127.0.0.1:9?mode=caller&streamid={long}");
        let error = srt_target(&url).unwrap_err();
        assert_eq!(error.kind(), ConnectErrorKind::InvalidTarget, "{error}");
        assert!(error.to_string().contains("limit of 512 bytes"), "{error}");
        // In a target made in code, the connector does, before any packet is sent.
        let target = Target::new(long, Protocol::Srt)
            .address(SocketAddr::from(([127, 0, 0, 1], 9)))
            .parameter("mode", "caller");
        let error = Under::new().oneshot(target).await.unwrap_err();
        let connect = connect_error_in(error.as_ref()).expect("a connect error");
        assert_eq!(connect.kind(), ConnectErrorKind::InvalidTarget, "{connect}");
        assert!(!connect.is_retryable(), "{connect}");
        assert!(connect.to_string().contains("limit of 512 bytes"), "{connect}");
    }
}
