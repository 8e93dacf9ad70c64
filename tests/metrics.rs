//! The Prometheus endpoint, scraped over real HTTP after a scripted outage: every
//! counter moved by exactly what happened.
//!
//! The metrics recorder is global to the process, so this binary holds one test.
#![cfg(feature = "prometheus")]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{
    channel, ChannelConnection, ConnectionError, ConnectionState, Packet, Protocol, Target,
};
use mirror_reconnect::metrics::{install_prometheus, StreamMetrics};
use mirror_reconnect::restore::{StateStorage, StorageError, StorageErrorKind, StorageFuture};
use mirror_reconnect::ReconnectionConfig;
use tokio_util::sync::CancellationToken;

const STREAM: &str = "metrics-cam";

/// A store that is always down.
struct DownStore;

impl StateStorage for DownStore {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        let e = StorageError::new(StorageErrorKind::Unavailable, &state.stream_id, "down");
        Box::pin(std::future::ready(Err(e)))
    }
    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        let e = StorageError::new(StorageErrorKind::Unavailable, stream_id, "down");
        Box::pin(std::future::ready(Err(e)))
    }
    fn delete<'a>(&'a self, _stream_id: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(std::future::ready(Ok(())))
    }
}

/// Connection 1: 20 packets, then (100 ms later) a network error. Connection 2: 20 packets, then
/// silence (the detector's timeout). Connection 3: 30 packets, then quiet but open.
fn scripted_connector() -> impl tower::Service<
    Target,
    Response = ChannelConnection,
    Error = std::io::Error,
    Future = std::future::Ready<Result<ChannelConnection, std::io::Error>>,
> + Clone
       + Send
       + 'static {
    let calls = Arc::new(AtomicU32::new(0));
    tower::service_fn(move |target: Target| {
        let call = calls.fetch_add(1, Ordering::SeqCst) + 1;
        let (tx, conn) = channel(
            ConnectionState::new(target.stream_id, Protocol::InProcess),
            64,
        );
        tokio::spawn(async move {
            let count = if call == 3 { 30 } else { 20 };
            for i in 0..count {
                let packet = Packet::new(u32::to_be_bytes(i).to_vec(), tokio::time::Instant::now());
                if tx.send(packet).await.is_err() {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            if call == 1 {
                // Long enough for the reporter to read the connection's last counts:
                // its counters restart with the next connection.
                tokio::time::sleep(Duration::from_millis(100)).await;
                let error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
                let _ = tx.send_error(ConnectionError::Network(error.into())).await;
                return;
            }
            // Stay open and silent until the connection is dropped.
            while !tx.is_closed() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        });
        std::future::ready(Ok(conn))
    })
}

fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the sample of `name` whose labels include all of `labels`.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let (metric, rest) = series.split_once('{').unwrap_or((series, ""));
            (metric == name).then_some((rest, value))
        })
        .find(|(rest, _)| {
            labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_endpoint_counts_a_scripted_outage_exactly() {
    let addr = {
        let probe = TcpListener::bind("127.0.0.1:0").expect("free port");
        probe.local_addr().expect("addr")
    };
    let handle = install_prometheus(addr).expect("install the exporter");
    assert!(
        install_prometheus(addr).is_err(),
        "a second install is refused"
    );

    let config = ReconnectionConfig::from_yaml_str(
        "backoff_type: fixed\ninitial_delay: 100ms\nmax_delay: 100ms\nuse_jitter: false\n\
         check_interval: 50ms\nhealth_thresholds:\n  timeout_duration: 1s\n  min_packet_rate: 0\n\
         silence:\n  enabled: false\n",
    )
    .expect("config");
    let cancel = CancellationToken::new();
    let storage: Arc<dyn StateStorage> = Arc::new(DownStore);
    let mut packets = config
        .reconnecting_with(
            scripted_connector(),
            Target::new(STREAM, Protocol::InProcess),
            storage,
        )
        .cancel_token(cancel.clone());
    packets.next().await.expect("first packet").expect("ok");
    let reporter = StreamMetrics::new(STREAM, packets.health().expect("health"))
        .events(packets.event_bus())
        .interval(Duration::from_millis(20));
    let reporter = tokio::spawn(reporter.run());

    let mut received = 1;
    while received < 70 {
        tokio::time::timeout(Duration::from_secs(10), packets.next())
            .await
            .expect("packets keep coming")
            .expect("stream goes on")
            .expect("no give-up");
        received += 1;
    }
    // Connection 3 is quiet now; let the reporter catch up.
    tokio::time::sleep(Duration::from_millis(300)).await;

    let text = tokio::task::spawn_blocking(move || scrape(addr))
        .await
        .expect("scrape");
    println!("{text}");
    let id = ("stream_id", STREAM);
    let get = |name: &str, labels: &[(&str, &str)]| {
        let mut all = vec![id];
        all.extend_from_slice(labels);
        sample(&text, name, &all)
    };
    let attempts = "mirror_reconnect_reconnection_attempts_total";
    let detections = "mirror_reconnect_failure_detections_total";
    assert_eq!(get(attempts, &[("reason", "none")]), Some(1.0));
    assert_eq!(get(attempts, &[("reason", "network_error")]), Some(1.0));
    assert_eq!(get(attempts, &[("reason", "timeout")]), Some(1.0));
    assert_eq!(get(detections, &[("reason", "network_error")]), Some(1.0));
    assert_eq!(get(detections, &[("reason", "timeout")]), Some(1.0));
    assert_eq!(get(detections, &[("reason", "packet_loss")]), None);
    assert_eq!(
        get("mirror_reconnect_reconnection_successes_total", &[]),
        Some(2.0)
    );
    assert_eq!(
        get("mirror_reconnect_reconnection_failures_total", &[]),
        None
    );
    assert_eq!(
        get("mirror_reconnect_reconnection_duration_seconds_count", &[]),
        Some(2.0)
    );
    // One failed load per connect; saves failed too, at least one per connection.
    assert_eq!(
        get(
            "mirror_reconnect_state_store_errors_total",
            &[("op", "load")]
        ),
        Some(3.0)
    );
    assert_eq!(
        get(
            "mirror_reconnect_state_store_errors_total",
            &[("op", "load"), ("kind", "unavailable")]
        ),
        Some(3.0),
        "errors carry their kind"
    );
    assert!(
        get(
            "mirror_reconnect_state_store_errors_total",
            &[("op", "save")]
        ) >= Some(3.0)
    );

    // The reporter's figures: every packet of the three connections, 4 bytes each.
    assert_eq!(
        get("mirror_reconnect_packets_received_total", &[]),
        Some(70.0)
    );
    assert_eq!(
        get("mirror_reconnect_bytes_received_total", &[]),
        Some(280.0)
    );
    assert_eq!(
        get("mirror_reconnect_stream_state", &[("state", "streaming")]),
        Some(1.0)
    );
    for state in ["connecting", "reconnecting", "failed", "stopped"] {
        assert_eq!(
            get("mirror_reconnect_stream_state", &[("state", state)]),
            Some(0.0),
            "{state}"
        );
    }
    let uptime = get("mirror_reconnect_connection_uptime_seconds", &[]).expect("uptime");
    assert!(uptime > 0.1 && uptime < 60.0, "uptime {uptime}");
    assert_eq!(get("mirror_reconnect_packet_loss_ratio", &[]), Some(0.0));

    // Descriptions and types are served.
    for (name, kind) in [
        (attempts, "counter"),
        (detections, "counter"),
        ("mirror_reconnect_packets_received_total", "counter"),
        ("mirror_reconnect_stream_state", "gauge"),
        ("mirror_reconnect_connection_uptime_seconds", "gauge"),
    ] {
        assert!(
            text.contains(&format!("# HELP {name} ")),
            "{name} described"
        );
        assert!(
            text.contains(&format!("# TYPE {name} {kind}")),
            "{name} is a {kind}"
        );
    }
    // The handle renders what the endpoint serves.
    assert!(handle.render().contains(attempts));

    cancel.cancel();
    assert!(packets.next().await.is_none(), "cancelled");
    reporter.abort();
}
