//! State saved before a failure is the state the next connection starts with; a
//! failing store never stops the media.

mod support;

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{Stream, StreamExt};
use mirror_reconnect::connection::{
    ChannelConnection, Connection, ConnectionError, ConnectionState, Packet, Protocol, Secret,
    Target,
};
use mirror_reconnect::restore::{
    MemoryStorage, StateStorage, StorageError, StorageErrorKind, StorageFuture,
};
use mirror_reconnect::stack::Stack;
use mirror_reconnect::{BoxError, Reconnecting, ReconnectionConfig};
use support::{payload_number, serve, End, Scripted};
use tower::Service;

/// A connection that keeps, as protocols do, a parameter worth resuming from: the
/// last packet number it delivered. It remembers what it was restored with.
struct Resumable {
    inner: ChannelConnection,
    last: Option<u32>,
    restored_from: Arc<Mutex<Vec<Option<String>>>>,
}

impl Stream for Resumable {
    type Item = Result<Packet, ConnectionError>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let item = std::task::ready!(Pin::new(&mut self.inner).poll_next(cx));
        if let Some(Ok(packet)) = &item {
            self.last = Some(payload_number(packet));
        }
        Poll::Ready(item)
    }
}

impl Connection for Resumable {
    fn state(&self) -> ConnectionState {
        let mut state = self.inner.state();
        if let Some(last) = self.last {
            state
                .parameters
                .insert("last_packet".into(), last.to_string());
        }
        state
    }
    fn restore(&mut self, state: &ConnectionState) {
        self.restored_from
            .lock()
            .unwrap()
            .push(state.parameters.get("last_packet").cloned());
    }
}

#[derive(Clone)]
struct ResumableConnector {
    scripted: Scripted,
    restored_from: Arc<Mutex<Vec<Option<String>>>>,
}

impl Service<Target> for ResumableConnector {
    type Response = Resumable;
    type Error = BoxError;
    type Future = Pin<Box<dyn std::future::Future<Output = Result<Resumable, BoxError>> + Send>>;
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.scripted.poll_ready(cx)
    }
    fn call(&mut self, target: Target) -> Self::Future {
        let connect = self.scripted.call(target);
        let restored_from = Arc::clone(&self.restored_from);
        Box::pin(async move {
            Ok(Resumable {
                inner: connect.await?,
                last: None,
                restored_from,
            })
        })
    }
}

fn target() -> Target {
    Target::new("cam1", Protocol::InProcess)
        .parameter("latency", "120")
        .passphrase(Secret::new("correct horse battery"))
}

/// A stream over two connections (the first closes after packet 49, the second goes
/// silent after 59), its state in `storage`, read to its 60th packet: the connector,
/// which noted each target and restore, and the stream, not yet dropped.
async fn over_one_reconnect(
    storage: Arc<dyn StateStorage>,
) -> (
    ResumableConnector,
    Pin<Box<Reconnecting<Stack<ResumableConnector>, Target>>>,
) {
    let connector = ResumableConnector {
        scripted: Scripted::new([serve(0..50, End::Close), serve(50..60, End::Silent)]),
        restored_from: Arc::default(),
    };
    let config = ReconnectionConfig::default();
    let mut packets = Box::pin(config.reconnecting_with(connector.clone(), target(), storage));
    for n in 0..60 {
        assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), n);
    }
    (connector, packets)
}

#[tokio::test(start_paused = true)]
async fn the_next_connection_starts_from_the_state_saved_before_the_failure() {
    let storage = Arc::new(MemoryStorage::new());
    // What an earlier run left: its codec, its latency, and a parameter of its own.
    let mut earlier = ConnectionState::new("cam1", Protocol::InProcess);
    earlier.codec = Some("h264".into());
    earlier.parameters.insert("latency".into(), "999".into());
    earlier.parameters.insert("profile".into(), "high".into());
    storage.save(&earlier).await.unwrap();

    let (connector, _packets) = over_one_reconnect(storage.clone()).await;

    let targets = connector.scripted.targets.lock().unwrap().clone();
    assert_eq!(targets.len(), 2);
    // The first connect: configured values win, saved ones fill the gaps.
    assert_eq!(targets[0].codec.as_deref(), Some("h264"));
    assert_eq!(targets[0].parameters["latency"], "120");
    assert_eq!(targets[0].parameters["profile"], "high");
    // The second connect starts where the first connection ended.
    assert_eq!(targets[1].parameters["last_packet"], "49");
    assert_eq!(targets[1].codec.as_deref(), Some("h264"));
    assert_eq!(
        *connector.restored_from.lock().unwrap(),
        [None, Some("49".to_owned())]
    );

    // And the saved state never holds the passphrase.
    let saved = storage.load("cam1").await.unwrap().unwrap();
    let json = serde_json::to_string(&saved).unwrap();
    assert!(!json.contains("correct horse"), "{json}");
    assert!(!format!("{saved:?}").contains("correct horse"));
    assert!(!format!("{:?}", target()).contains("correct horse"));
}

#[tokio::test(start_paused = true)]
async fn state_is_saved_as_packets_flow() {
    let storage = Arc::new(MemoryStorage::new());
    let connector = ResumableConnector {
        scripted: Scripted::new([serve(0..1_000, End::Silent)]),
        restored_from: Arc::default(),
    };
    let config = ReconnectionConfig {
        save_interval: Duration::from_millis(500),
        ..ReconnectionConfig::default()
    };
    let mut packets = Box::pin(config.reconnecting_with(connector, target(), storage.clone()));
    // Packets every 10 ms: packet 149 arrives at 1.5 s, when the third save is due.
    for _ in 0..150 {
        packets.next().await.unwrap().unwrap();
    }
    let saved = storage.load("cam1").await.unwrap().unwrap();
    assert_eq!(saved.parameters["last_packet"], "149");
    assert_eq!(saved.statistics.packets_received, 150);
    assert_eq!(saved.statistics.bytes_received, 600);
}

/// A store that is always down, and counts how often it was asked.
#[derive(Default)]
struct Down {
    calls: AtomicUsize,
}

impl StateStorage for Down {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let e = StorageError::new(
            StorageErrorKind::Unavailable,
            &state.stream_id,
            "store down",
        );
        Box::pin(async move { Err(e) })
    }
    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        Box::pin(async move {
            Err(StorageError::new(
                StorageErrorKind::Unavailable,
                stream_id,
                "store down",
            ))
        })
    }
    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            Err(StorageError::new(
                StorageErrorKind::Unavailable,
                stream_id,
                "store down",
            ))
        })
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_store_never_stops_the_media() {
    let storage = Arc::new(Down::default());
    let connector = Scripted::new([serve(0..100, End::Close), serve(100..200, End::Silent)]);
    let restore = mirror_reconnect::restore::StateRestoreLayer::new(storage.clone())
        .save_interval(Duration::from_millis(100));
    let stack = tower::ServiceBuilder::new()
        .layer(restore.clone())
        .layer(mirror_reconnect::health::HealthLayer::new())
        .service(connector.clone());
    let mut packets = Box::pin(mirror_reconnect::Reconnecting::new(stack, target()));
    for n in 0..200 {
        assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), n);
    }
    // Two loads, and saves at connect, every 100 ms and at the end: all failed, all counted.
    let calls = storage.calls.load(Ordering::Relaxed) as u64;
    assert!(calls >= 2 + 20, "{calls}");
    assert_eq!(restore.error_count(), calls);
    // With nothing loaded, the connects used the configured target as it was.
    let targets = connector.targets.lock().unwrap();
    assert!(targets
        .iter()
        .all(|t| t.codec.is_none() && t.parameters.len() == 1));
}

#[tokio::test(start_paused = true)]
async fn memory_storage_honours_its_ttl() {
    let storage = MemoryStorage::with_ttl(Duration::from_secs(60));
    storage
        .save(&ConnectionState::new("cam1", Protocol::Srt))
        .await
        .unwrap();
    tokio::time::advance(Duration::from_secs(59)).await;
    assert!(storage.load("cam1").await.unwrap().is_some());
    tokio::time::advance(Duration::from_secs(1)).await;
    assert!(storage.load("cam1").await.unwrap().is_none());
}

#[tokio::test]
async fn memory_storage_gives_back_each_state_whole() {
    let storage = MemoryStorage::new();
    for id in ["cam1", "cam2"] {
        let mut state = ConnectionState::new(id, Protocol::Srt);
        state.codec = Some(format!("{id}-codec"));
        state.parameters.insert("latency".into(), "120".into());
        storage.save(&state).await.unwrap();
        // Saved again, in place.
        storage.save(&state).await.unwrap();
    }
    for id in ["cam1", "cam2"] {
        let loaded = storage.load(id).await.unwrap().expect("saved");
        assert_eq!(loaded.stream_id, id);
        assert_eq!(
            loaded.codec.as_deref(),
            Some(format!("{id}-codec").as_str())
        );
        assert_eq!(loaded.parameters["latency"], "120");
    }
    assert_eq!(storage.len(), 2);
}

#[test]
fn connection_state_json_uses_snake_case_and_round_trips() {
    let mut state = ConnectionState::new("cam1", Protocol::Srt);
    state.codec = Some("h264".into());
    state.remote_addr = Some("127.0.0.1:9000".parse().unwrap());
    state.statistics.uptime = Duration::from_millis(1_500);
    let json = serde_json::to_value(&state).unwrap();
    for key in [
        "stream_id",
        "protocol",
        "codec",
        "remote_addr",
        "local_addr",
        "parameters",
        "statistics",
        "start_time",
        "last_activity",
    ] {
        assert!(json.get(key).is_some(), "{key} missing in {json}");
    }
    for key in [
        "packets_received",
        "bytes_received",
        "packet_errors",
        "uptime",
    ] {
        assert!(json["statistics"].get(key).is_some(), "{key}");
    }
    assert_eq!(json["protocol"], "srt");
    assert_eq!(json["statistics"]["uptime"], 1.5);
    let back: ConnectionState = serde_json::from_value(json).unwrap();
    // Times round-trip at the second precision RFC 3339 text keeps.
    assert_eq!(back.stream_id, state.stream_id);
    assert_eq!(back.statistics, state.statistics);
    assert_eq!(back.remote_addr, state.remote_addr);
    let bad = serde_json::from_str::<ConnectionState>(r#"{"stream_id": 5}"#);
    assert!(bad.is_err());
}

/// A store whose saves take a while, as a remote one does. It notes the
/// `last_packet` of each save that lands, in order.
struct SlowStore {
    inner: MemoryStorage,
    delay: Duration,
    landed: Mutex<Vec<Option<String>>>,
}

impl SlowStore {
    fn new(delay: Duration) -> Self {
        Self {
            inner: MemoryStorage::new(),
            delay,
            landed: Mutex::default(),
        }
    }
}

impl StateStorage for SlowStore {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        Box::pin(async move {
            tokio::time::sleep(self.delay).await;
            self.inner.save(state).await?;
            let last = state.parameters.get("last_packet").cloned();
            self.landed.lock().unwrap().push(last);
            Ok(())
        })
    }
    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        self.inner.load(stream_id)
    }
    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()> {
        self.inner.delete(stream_id)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancelled_stream_ends_only_after_its_final_state_is_saved() {
    let storage = Arc::new(SlowStore::new(Duration::from_millis(200)));
    let connector = Scripted::new([serve(0..1_000, End::Silent)]);
    let stop = tokio_util::sync::CancellationToken::new();
    let mut packets = Box::pin(
        ReconnectionConfig::default()
            .reconnecting_with(
                connector,
                Target::new("cam1", Protocol::InProcess),
                storage.clone(),
            )
            .cancel_token(stop.clone()),
    );
    for n in 0..300 {
        assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), n);
    }
    stop.cancel();
    assert!(packets.next().await.is_none(), "a cancelled stream ends");

    // Nothing else ran in between: the save the stream ended with is already stored.
    let saved = storage
        .inner
        .load("cam1")
        .await
        .unwrap()
        .expect("a saved state");
    assert_eq!(saved.statistics.packets_received, 300);
    assert!(
        saved.last_activity > saved.start_time,
        "last_activity follows the stream: {saved:?}"
    );
    let last = packets.final_state().expect("the state it stopped with");
    assert_eq!(last.statistics.packets_received, 300);
    assert_eq!(last.last_activity, saved.last_activity);
}

/// A store slower than the 1 s the end of a connection waits for its last save (a
/// remote store under load): the next connection still starts where the last one
/// ended, and the save that was not waited for still reaches the store.
#[tokio::test(start_paused = true)]
async fn a_store_slower_than_the_final_save_wait_loses_no_state() {
    let storage = Arc::new(SlowStore::new(Duration::from_secs(3)));
    let (connector, packets) = over_one_reconnect(storage.clone()).await;
    let targets = connector.scripted.targets.lock().unwrap().clone();
    assert_eq!(targets.len(), 2);
    assert_eq!(
        targets[1].parameters.get("last_packet").map(String::as_str),
        Some("49"),
        "the second connection starts where the first ended"
    );
    // Nothing stored before: only the second connection is restored.
    assert_eq!(
        *connector.restored_from.lock().unwrap(),
        [Some("49".to_owned())]
    );

    // The first connection's last save, given up on after 1 s, goes on and lands.
    drop(packets);
    tokio::time::sleep(Duration::from_secs(10)).await;
    let landed = storage.landed.lock().unwrap().clone();
    assert!(landed.contains(&Some("49".to_owned())), "{landed:?}");
}

/// The state a foreign or tampered document would restore: a key RTP does not know and
/// one of its own keys with a value it cannot use.
fn tampered(stream_id: &str) -> ConnectionState {
    let mut saved = ConnectionState::new(stream_id, Protocol::Rtp);
    saved.codec = Some("h264".into());
    saved.parameters.insert("bogus".into(), "1".into());
    saved
        .parameters
        .insert("ssrc_timeout_ms".into(), "250".into());
    saved
}

/// Connect `target` through a restore layer on `storage` over the real RTP
/// connector; the targets the connector was called with, and the layer's store errors.
#[cfg(feature = "rtp")]
async fn connect_rtp(
    storage: Arc<MemoryStorage>,
    target: Target,
) -> (Result<(), BoxError>, Vec<Target>, u64) {
    use mirror_reconnect::protocol::rtp::RtpConnector;
    use mirror_reconnect::restore::StateRestoreLayer;
    use tower::ServiceExt;

    let seen = Arc::new(Mutex::new(Vec::new()));
    let layer = StateRestoreLayer::new(storage);
    let record = Arc::clone(&seen);
    let mut stack = tower::ServiceBuilder::new()
        .layer(layer.clone())
        .map_request(move |t: Target| {
            record.lock().unwrap().push(t.clone());
            t
        })
        .service(RtpConnector::new());
    let result = match stack.ready().await {
        Ok(ready) => ready.call(target).await.map(drop),
        Err(e) => Err(e),
    };
    let seen = seen.lock().unwrap().clone();
    (result, seen, layer.error_count())
}

#[cfg(feature = "rtp")]
#[tokio::test]
async fn saved_state_fills_only_the_protocols_own_keys() {
    let storage = Arc::new(MemoryStorage::new());
    storage.save(&tampered("cam1")).await.unwrap();
    let target = Target::new("cam1", Protocol::Rtp).address("127.0.0.1:0".parse().unwrap());
    let (result, seen, errors) = connect_rtp(storage, target).await;
    result.expect("an unknown saved key does not make the target invalid");
    assert_eq!(seen.len(), 1, "one connect: {seen:?}");
    assert_eq!(seen[0].codec.as_deref(), Some("h264"));
    assert_eq!(
        seen[0]
            .parameters
            .get("ssrc_timeout_ms")
            .map(String::as_str),
        Some("250")
    );
    assert!(!seen[0].parameters.contains_key("bogus"), "{seen:?}");
    assert_eq!(errors, 0);
}

#[cfg(feature = "rtp")]
#[tokio::test]
async fn a_saved_state_that_makes_the_target_invalid_is_ignored() {
    let storage = Arc::new(MemoryStorage::new());
    let mut saved = tampered("cam1");
    saved.parameters.insert("clock_rate".into(), "fast".into());
    storage.save(&saved).await.unwrap();
    let target = Target::new("cam1", Protocol::Rtp)
        .address("127.0.0.1:0".parse().unwrap())
        .parameter("payload_type", "96");
    let (result, seen, errors) = connect_rtp(storage, target.clone()).await;
    result.expect("the configured target is used when the saved state would make it invalid");
    assert_eq!(
        seen.last(),
        Some(&target),
        "the last connect is as configured"
    );
    assert_eq!(errors, 1, "counted as a store error");
}

#[cfg(feature = "rtp")]
#[tokio::test]
async fn an_invalid_configured_target_is_not_blamed_on_the_saved_state() {
    let storage = Arc::new(MemoryStorage::new());
    storage.save(&tampered("cam1")).await.unwrap();
    let target = Target::new("cam1", Protocol::Rtp)
        .address("127.0.0.1:0".parse().unwrap())
        .parameter("clock_rate", "0");
    let (result, _, errors) = connect_rtp(storage, target).await;
    let error = result.expect_err("invalid as configured");
    assert!(error.to_string().contains("clock_rate"), "{error}");
    assert_eq!(errors, 0, "not a store error");
}
