//! Raw UDP input over loopback, through the full stack: datagrams in order, silence
//! detected, the port rebound, datagrams again.
#![cfg(feature = "udp")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::driver::EventType;
use mirror_reconnect::prelude::*;
use mirror_reconnect::protocol::udp::UdpConnector;
use tokio::net::UdpSocket;

fn free_port() -> std::net::SocketAddr {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.local_addr().unwrap()
}

#[tokio::test]
async fn datagrams_flow_and_silence_rebinds_the_port() {
    let addr = free_port();
    let config = ReconnectionConfig {
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(200),
        ..ReconnectionConfig::default()
    };
    let packets = config.reconnecting(
        UdpConnector::new(),
        Target::new("ts", Protocol::Udp).address(addr),
    );
    let seen: Arc<Mutex<Vec<EventType>>> = Arc::default();
    let log = Arc::clone(&seen);
    packets
        .event_bus()
        .on_event(move |e| log.lock().unwrap().push(e.event_type));
    let mut packets = Box::pin(packets);

    let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let send_burst = |from: u32| {
        let sender = &sender;
        async move {
            for n in from..from + 40 {
                sender.send_to(&n.to_be_bytes(), addr).await.unwrap();
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    // The socket is bound on the first poll: poll while sending.
    let (_, got) = tokio::join!(send_burst(0), async {
        let mut got = Vec::new();
        while got.len() < 40 {
            let p = tokio::time::timeout(Duration::from_secs(5), packets.next())
                .await
                .expect("packets")
                .unwrap()
                .unwrap();
            got.push(u32::from_be_bytes(p.payload[..4].try_into().unwrap()));
        }
        got
    });
    // The first datagrams may go out before the first poll binds the port.
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order: {got:?}");
    assert_eq!(*got.last().unwrap(), 39);

    // Silence: the detector ends the connection; the driver rebinds the same port.
    let (_, got) = tokio::join!(
        async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            send_burst(1_000).await;
        },
        async {
            let p = tokio::time::timeout(Duration::from_secs(5), packets.next())
                .await
                .expect("packets after the rebind")
                .unwrap()
                .unwrap();
            u32::from_be_bytes(p.payload[..4].try_into().unwrap())
        }
    );
    assert!(got >= 1_000, "{got}");
    let events = seen.lock().unwrap().clone();
    assert!(events.contains(&EventType::FailureDetected), "{events:?}");
    assert!(
        events.contains(&EventType::ReconnectionSucceeded),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_port_in_use_by_another_program_is_an_error_not_a_panic() {
    let taken = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let config = ReconnectionConfig {
        max_retries: 1,
        initial_delay: Duration::from_millis(10),
        ..ReconnectionConfig::default()
    };
    let mut packets = Box::pin(config.reconnecting(
        UdpConnector::new(),
        Target::new("ts", Protocol::Udp).address(addr),
    ));
    let error = packets.next().await.unwrap().unwrap_err().to_string();
    assert!(
        error.contains(&format!("cannot bind UDP {addr}")),
        "{error}"
    );
    drop(taken);
}
