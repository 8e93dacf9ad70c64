//! The SRT connector against srt-tokio peers on loopback, through the whole stack:
//! both directions of caller and listener, rendezvous, sending, refusals, the vanished
//! and the closed peer, and secrets kept out of every printout.
//!
//! These run on real time (srt-tokio keeps its own clock); the bounds are generous.

#![cfg(feature = "srt")]
#![allow(clippy::unwrap_used)]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use mirror_reconnect::connection::{Connection, ConnectionError, Protocol, Secret, Target};
use mirror_reconnect::driver::EventType;
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::protocol::srt::{PeerVanished, SrtConnector, SrtMode};
use mirror_reconnect::restore::{MemoryStorage, StateStorage};
use srt_tokio::SrtSocket;
use support::srt::{
    connect_error_in, fast_config, free_addr, number_of, numbered, on_both_connectors, Recorder,
};
use tokio::time::timeout;
use tower::ServiceExt;

const WAIT: Duration = Duration::from_secs(20);

fn srt_target(stream_id: &str, address: SocketAddr, mode: SrtMode) -> Target {
    Target::new(stream_id, Protocol::Srt)
        .address(address)
        .parameter("mode", mode.as_str())
        .parameter("latency", "40")
}

/// A caller of `target`, dialled by `connector`, connects, and the listener `waiting`
/// for it accepts it and receives what it sends.
async fn hello_reaches_the_listener<C>(
    connector: C,
    target: Target,
    waiting: tokio::task::JoinHandle<Result<C::Response, mirror_reconnect::BoxError>>,
) where
    C: tower::Service<Target, Error = mirror_reconnect::BoxError>,
    C::Response: Connection + futures_util::Sink<Bytes, Error = std::io::Error>,
{
    let mut caller = timeout(WAIT, connector.oneshot(target))
        .await
        .unwrap()
        .unwrap();
    let mut accepted = timeout(WAIT, waiting).await.unwrap().unwrap().unwrap();
    caller.send(Bytes::from_static(b"hello")).await.unwrap();
    let got = timeout(WAIT, accepted.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(&got.payload[..], b"hello");
}

/// srt-tokio sending `count` numbered packets of `round`, 2 ms apart.
async fn send_round(socket: &mut SrtSocket, round: u32, count: u32) {
    for i in 0..count {
        socket
            .send((std::time::Instant::now(), numbered(round, i, 188 * 7)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// srt-tokio only: the libsrt connector's rendezvous with srt-tokio completes its
/// handshake but breaks before the first packet in about one run of three (libsrt's
/// rendezvous with libsrt is in tests/libsrt.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendezvous_with_srt_tokio() {
    let ours = free_addr();
    let theirs = free_addr();
    let peer = tokio::spawn(async move {
        let mut socket = SrtSocket::builder()
            .local_port(theirs.port())
            .latency(Duration::from_millis(40))
            .rendezvous(ours)
            .await
            .unwrap();
        send_round(&mut socket, 0, 50).await;
        socket.close_and_finish().await.unwrap();
    });
    let target = srt_target("rdv", theirs, SrtMode::Rendezvous)
        .parameter("local_port", ours.port().to_string());
    let mut conn = timeout(WAIT, SrtConnector::new().oneshot(target))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(conn.mode(), SrtMode::Rendezvous);
    let mut indexes = Vec::new();
    while let Some(item) = timeout(WAIT, conn.next()).await.unwrap() {
        indexes.push(number_of(&item.unwrap().payload).unwrap().1);
    }
    peer.await.unwrap();
    assert_eq!(indexes, (0..50).collect::<Vec<_>>());
}

on_both_connectors! {
    /// A connect given up (a tower timeout, a failover) just as its caller arrives
    /// loses no caller: the next connect gets it, or its next call. srt-tokio keeps one
    /// handshake session per peer address, and the caller's request, dropped
    /// unanswered, left every later call from that address unanswered for good.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connect_given_up_as_its_caller_arrives_loses_no_caller() {
        let connector = Under::new();
        let addr = connector
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let target = srt_target("cam1", addr, SrtMode::Listener);
        // The first connect waits for its caller, then is polled no more.
        let mut first = Box::pin(connector.clone().oneshot(target.clone()));
        assert!(timeout(Duration::from_millis(200), &mut first)
            .await
            .is_err());
        // A caller from one address (as through a NAT), calling again until it is in.
        let port = support::ports::free_udp_port();
        let caller = tokio::spawn(async move {
            loop {
                let call = SrtSocket::builder()
                    .local_port(port)
                    .latency(Duration::from_millis(40))
                    .call(addr, Some("cam1"));
                if let Ok(Ok(socket)) = timeout(Duration::from_secs(3), call).await {
                    return socket;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
        // Its request reaches the first connect, which is given up before it looks.
        // (Time for a loopback handshake, not a bound checked: were the request
        // later, the next connect would get it from the held callers.)
        tokio::time::sleep(Duration::from_millis(500)).await;
        drop(first);
        let mut accepted = timeout(WAIT, connector.oneshot(target))
            .await
            .expect("the caller was lost: no later connect got it")
            .unwrap();
        let mut socket = timeout(WAIT, caller).await.unwrap().unwrap();
        socket
            .send((std::time::Instant::now(), Bytes::from_static(b"hello")))
            .await
            .unwrap();
        let got = timeout(WAIT, accepted.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(&got.payload[..], b"hello");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn srt_tokio_callers_into_our_listener_through_the_stack() {
        let connector = Under::new();
        let addr = connector
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let target = srt_target("cam1", addr, SrtMode::Listener);
        let mut packets = fast_config().reconnecting(connector.clone(), target);
        let events = Recorder::attach(packets.event_bus());

        const ROUNDS: u32 = 3;
        const COUNT: u32 = 200;
        let peer = tokio::spawn(async move {
            for round in 0..ROUNDS {
                let mut socket = SrtSocket::builder()
                    .latency(Duration::from_millis(40))
                    .call(addr, Some("cam1"))
                    .await
                    .unwrap();
                send_round(&mut socket, round, COUNT).await;
                // A clean SRT shutdown once everything is delivered.
                socket.close_and_finish().await.unwrap();
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });

        let mut got = vec![Vec::new(); ROUNDS as usize];
        let started = Instant::now();
        while got.iter().map(Vec::len).sum::<usize>() < (ROUNDS * COUNT) as usize {
            let packet = timeout(WAIT, packets.next())
                .await
                .expect("packets stopped coming")
                .expect("stream ended")
                .unwrap();
            let (round, index) = number_of(&packet.payload).unwrap();
            assert!(
                packet.sequence.is_some(),
                "SRT packets carry a delivery sequence"
            );
            got[round as usize].push(index);
        }
        peer.await.unwrap();
        for (round, indexes) in got.iter().enumerate() {
            let expected: Vec<u32> = (0..COUNT).collect();
            assert_eq!(indexes, &expected, "round {round} complete and in order");
        }
        println!(
            "{} packets in {ROUNDS} connections in {:?}",
            ROUNDS * COUNT,
            started.elapsed()
        );
        // Each caller's end is seen (as media silence or as the close), and each new
        // caller is a reconnection.
        assert_eq!(events.count(EventType::ReconnectionSucceeded), 2);
        for failure in events.of(EventType::FailureDetected) {
            let error = failure.error.unwrap_or_default();
            println!("failure: {error}");
            assert!(
                error.contains("closed by peer") || error.contains("silence"),
                "{error}"
            );
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_caller_into_srt_tokio_listeners_through_the_stack() {
        let addr = free_addr();
        const ROUNDS: u32 = 3;
        const COUNT: u32 = 150;
        let peer = tokio::spawn(async move {
            for round in 0..ROUNDS {
                // The port is free again once the last connection has finished.
                let mut socket = SrtSocket::builder()
                    .latency(Duration::from_millis(40))
                    .listen_on(addr)
                    .await
                    .unwrap();
                send_round(&mut socket, round, COUNT).await;
                socket.close_and_finish().await.unwrap();
            }
        });
        let target = srt_target("cam2", addr, SrtMode::Caller).parameter("connect_timeout", "500");
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());

        let mut got = vec![Vec::new(); ROUNDS as usize];
        while got.iter().map(Vec::len).sum::<usize>() < (ROUNDS * COUNT) as usize {
            let packet = timeout(WAIT, packets.next())
                .await
                .expect("packets stopped coming")
                .expect("stream ended")
                .unwrap();
            let (round, index) = number_of(&packet.payload).unwrap();
            got[round as usize].push(index);
        }
        peer.await.unwrap();
        for (round, indexes) in got.iter().enumerate() {
            let expected: Vec<u32> = (0..COUNT).collect();
            assert_eq!(indexes, &expected, "round {round} complete and in order");
        }
        assert_eq!(events.count(EventType::ReconnectionSucceeded), 2);
        let state = packets.connection_state().unwrap();
        assert_eq!(state.protocol, Protocol::Srt);
        assert_eq!(state.remote_addr, Some(addr));
        assert!(state.parameters.contains_key("srt.rtt_ms"), "{state:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn our_connection_sends_to_an_srt_tokio_listener() {
        let addr = free_addr();
        let receiver = tokio::spawn(async move {
            let mut socket = SrtSocket::builder().listen_on(addr).await.unwrap();
            let mut got = Vec::new();
            while let Some(Ok((_, payload))) = socket.next().await {
                got.push(number_of(&payload).unwrap().1);
            }
            got
        });
        let target = srt_target("out", addr, SrtMode::Caller);
        let mut conn = timeout(WAIT, Under::new().oneshot(target))
            .await
            .unwrap()
            .unwrap();
        // Paced like a live stream: srt-tokio 0.4 receivers lose everything from a burst
        // of 64 packets or more sent back to back.
        for i in 0..100 {
            conn.send(numbered(0, i, 1316)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // srt-tokio receivers drop what they have not yet released (latency 40 ms) when the
        // shutdown comes: give them that time, then close; the receiver's stream ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        conn.close().await.unwrap();
        let got = timeout(WAIT, receiver).await.unwrap().unwrap();
        assert_eq!(got, (0..100).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_clean_close_ends_the_stream_and_a_vanished_peer_is_a_network_error() {
        // Closed: srt-tokio shuts down after its packets.
        let connector = Under::new();
        let addr = connector
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let peer = tokio::spawn(async move {
            let mut socket = SrtSocket::builder()
                .call(addr, Some("closing"))
                .await
                .unwrap();
            send_round(&mut socket, 0, 20).await;
            socket.close_and_finish().await.unwrap();
        });
        let mut conn = timeout(
            WAIT,
            connector.oneshot(srt_target("closing", addr, SrtMode::Listener)),
        )
        .await
        .unwrap()
        .unwrap();
        let mut n = 0;
        while let Some(item) = timeout(WAIT, conn.next()).await.unwrap() {
            item.expect("a clean close is no error");
            n += 1;
        }
        peer.await.unwrap();
        assert_eq!(n, 20);

        // Vanished: the peer's runtime is torn down, so nothing (not even a shutdown) is
        // sent again. Its socket lives in another thread's runtime.
        let addr = free_addr();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<()>();
        let (kill_tx, kill_rx) = std::sync::mpsc::channel::<()>();
        let peer_thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap();
            runtime.spawn(async move {
                let mut socket = SrtSocket::builder().listen_on(addr).await.unwrap();
                send_round(&mut socket, 0, 20).await;
                let _ = ready_tx.send(());
                // Keep the socket open (keep-alives flowing) until the runtime dies.
                std::future::pending::<()>().await;
                drop(socket);
            });
            kill_rx.recv().unwrap();
            runtime.shutdown_background();
        });
        let target =
            srt_target("vanishing", addr, SrtMode::Caller).parameter("peer_idle_timeout", "2000");
        let mut conn = timeout(WAIT, Under::new().oneshot(target))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(conn.peer_idle_timeout(), Duration::from_secs(2));
        for _ in 0..20 {
            timeout(WAIT, conn.next()).await.unwrap().unwrap().unwrap();
        }
        tokio::task::spawn_blocking(move || ready_rx.recv().unwrap())
            .await
            .unwrap();
        // Stay quiet-but-alive for longer than the vanish threshold: keep-alives only.
        let quiet = tokio::time::timeout(Duration::from_millis(2500), conn.next()).await;
        assert!(
            quiet.is_err(),
            "a quiet peer that sends keep-alives stays connected"
        );
        let killed = Instant::now();
        kill_tx.send(()).unwrap();
        let last = timeout(WAIT, conn.next()).await.unwrap();
        let took = killed.elapsed();
        peer_thread.join().unwrap();
        match last {
            Some(Err(ConnectionError::Network(e))) => {
                let vanished = e.downcast_ref::<PeerVanished>().expect("PeerVanished");
                assert!(e.to_string().contains("peer vanished"), "{e}");
                println!("vanished peer reported after {took:?}: {vanished}");
                assert!(took >= Duration::from_millis(1500), "{took:?}");
            }
            other => panic!("expected a network error, got {other:?}"),
        }
        assert!(conn.next().await.is_none());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_passphrase_fails_once_without_retry() {
        let addr = free_addr();
        let listener = tokio::spawn(async move {
            // Keeps refusing; a correct caller would be served.
            let _ = SrtSocket::builder()
                .encryption(0, "correct horse battery staple")
                .listen_on(addr)
                .await;
        });
        let target = srt_target("locked", addr, SrtMode::Caller)
            .passphrase(Secret::new("wrong horse battery staple"));
        let mut packets = fast_config().reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());
        let started = Instant::now();
        let item = timeout(WAIT, packets.next()).await.unwrap().unwrap();
        let error = item.expect_err("a wrong passphrase is an error");
        println!("refused after {:?}: {error}", started.elapsed());
        let connect = connect_error_in(&error).expect("a ConnectError in the chain");
        assert_eq!(connect.kind(), ConnectErrorKind::Unauthorized);
        assert!(error.to_string().contains("passphrase"), "{error}");
        assert!(!error.to_string().contains("horse"), "{error}");
        assert!(packets.next().await.is_none());
        assert_eq!(
            events.count(EventType::ReconnectionAttempt),
            1,
            "no retry storm"
        );
        let failed = events.of(EventType::ReconnectionFailed);
        assert_eq!(failed.len(), 1);
        assert_eq!(failed[0].attempt, 1);
        listener.abort();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_refused_stream_id_is_rejected_and_the_right_one_accepted() {
        let listening = Under::new();
        let addr = listening
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let waiting = tokio::spawn(listening.clone().oneshot(srt_target(
            "cam1",
            addr,
            SrtMode::Listener,
        )));

        let wrong = srt_target("cam9", addr, SrtMode::Caller);
        let mut packets = fast_config().reconnecting(Under::new(), wrong);
        let events = Recorder::attach(packets.event_bus());
        let error = timeout(WAIT, packets.next())
            .await
            .unwrap()
            .unwrap()
            .expect_err("cam9 is refused");
        let connect = connect_error_in(&error).unwrap();
        assert_eq!(connect.kind(), ConnectErrorKind::Rejected, "{error}");
        assert!(error.to_string().contains("cam9"), "{error}");
        assert_eq!(events.count(EventType::ReconnectionAttempt), 1);

        // The listener still takes its own stream.
        hello_reaches_the_listener(Under::new(), srt_target("cam1", addr, SrtMode::Caller), waiting).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreachable_peer_is_retried_then_given_up() {
        let addr = free_addr(); // nothing listens there
        let mut config = fast_config();
        config.max_retries = 2;
        let target = srt_target("nobody", addr, SrtMode::Caller).parameter("connect_timeout", "300");
        let mut packets = config.reconnecting(Under::new(), target);
        let events = Recorder::attach(packets.event_bus());
        let started = Instant::now();
        let error = timeout(WAIT, packets.next())
            .await
            .unwrap()
            .unwrap()
            .expect_err("nobody answers");
        println!("gave up after {:?}: {error}", started.elapsed());
        let connect = connect_error_in(&error).unwrap();
        assert!(connect.is_retryable());
        assert_eq!(connect.kind(), ConnectErrorKind::TimedOut);
        assert_eq!(events.count(EventType::ReconnectionAttempt), 3);
        assert_eq!(events.of(EventType::ReconnectionFailed)[0].attempt, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_passphrase_never_shows() {
        const SECRET: &str = "sUp3r-s3cret-phrase";
        let addr = free_addr();
        let peer = tokio::spawn(async move {
            let mut socket = SrtSocket::builder()
                .encryption(0, SECRET)
                .listen_on(addr)
                .await
                .unwrap();
            send_round(&mut socket, 0, 30).await;
            socket.close_and_finish().await.unwrap();
        });
        let connector = Under::new();
        let target = srt_target("enc", addr, SrtMode::Caller).passphrase(Secret::new(SECRET));
        let storage = Arc::new(MemoryStorage::new());
        let mut config = fast_config();
        config.save_interval = Duration::from_millis(50);
        config.srt.retry_on_close = false;
        let mut packets = config.reconnecting_with(connector.clone(), target.clone(), storage.clone());
        let events = Recorder::attach(packets.event_bus());
        let mut state = None;
        for n in 0..30 {
            let packet = timeout(WAIT, packets.next())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            assert_eq!(
                number_of(&packet.payload),
                Some((0, n)),
                "the encrypted stream decrypts"
            );
            if n == 20 {
                state = packets.connection_state();
            }
        }
        peer.await.unwrap();
        let state = state.unwrap();
        let saved = storage.load("enc").await.unwrap().expect("state was saved");

        let printed = [
            format!("{connector:?}"),
            format!("{target:?}"),
            format!("{packets:?}"),
            format!("{state:?}"),
            serde_json::to_string(&state).unwrap(),
            format!("{saved:?}"),
            serde_json::to_string(&saved).unwrap(),
            format!("{:?}", events.all()),
            serde_json::to_string(&events.all()).unwrap(),
        ];
        for text in printed {
            assert!(!text.contains(SECRET), "passphrase leaked in: {text}");
            assert!(!text.contains("s3cret"), "passphrase leaked in: {text}");
        }
        assert!(state.parameters.contains_key("srt.lost"), "{state:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_serves_two_streams_on_one_port() {
        let connector = Under::new();
        let addr = connector
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let a = tokio::spawn(
            connector
                .clone()
                .oneshot(srt_target("a", addr, SrtMode::Listener)),
        );
        let b = tokio::spawn(
            connector
                .clone()
                .oneshot(srt_target("b", addr, SrtMode::Listener)),
        );
        // Call b first: it must not be given to a.
        let mut call_b = SrtSocket::builder().call(addr, Some("b")).await.unwrap();
        let mut call_a = SrtSocket::builder().call(addr, Some("a")).await.unwrap();
        call_a
            .send((std::time::Instant::now(), Bytes::from_static(b"for a")))
            .await
            .unwrap();
        call_b
            .send((std::time::Instant::now(), Bytes::from_static(b"for b")))
            .await
            .unwrap();
        let mut a = timeout(WAIT, a).await.unwrap().unwrap().unwrap();
        let mut b = timeout(WAIT, b).await.unwrap().unwrap().unwrap();
        let got_a = timeout(WAIT, a.next()).await.unwrap().unwrap().unwrap();
        let got_b = timeout(WAIT, b.next()).await.unwrap().unwrap().unwrap();
        assert_eq!(&got_a.payload[..], b"for a");
        assert_eq!(&got_b.payload[..], b"for b");
        assert_eq!(a.state().local_addr, Some(addr));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_listener_refuses_callers_of_another_key_length_than_its_pbkeylen() {
        let secret = || Secret::new("correct horse battery");
        let listening = Under::new();
        let addr = listening
            .listen("127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let listener = srt_target("cam1", addr, SrtMode::Listener)
            .parameter("pbkeylen", "32")
            .passphrase(secret());
        let waiting = tokio::spawn(listening.clone().oneshot(listener));

        // An AES-128 caller is refused by a listener that asks for AES-256.
        let weak = srt_target("cam1", addr, SrtMode::Caller)
            .parameter("pbkeylen", "16")
            .parameter("connect_timeout", "2000")
            .passphrase(secret());
        // srt-tokio refuses it in the handshake; libsrt lets the caller's key length win
        // there, so the listener closes it at once instead: either way nothing flows.
        match timeout(WAIT, Under::new().oneshot(weak)).await.unwrap() {
            Err(refused) => {
                let connect = connect_error_in(refused.as_ref()).expect("a connect error");
                assert_ne!(connect.kind(), ConnectErrorKind::TimedOut, "{refused}");
            }
            Ok(mut closed) => {
                let ended = timeout(WAIT, closed.next()).await.unwrap();
                assert!(
                    !matches!(ended, Some(Ok(_))),
                    "a refused caller is given nothing: {ended:?}"
                );
            }
        }
        assert!(!waiting.is_finished(), "the listener still waits");

        // An AES-256 caller is accepted.
        let strong = srt_target("cam1", addr, SrtMode::Caller)
            .parameter("pbkeylen", "32")
            .passphrase(secret());
        hello_reaches_the_listener(Under::new(), strong, waiting).await;
    }
}
