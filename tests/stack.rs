//! The stack builder: what it wires, what it hands back, and its options.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::EventType;
use mirror_reconnect::restore::{MemoryStorage, StateStorage};
use mirror_reconnect::stack::ReconnectingBuilder;
use mirror_reconnect::ReconnectionConfig;
use support::{payload_number, serve, End, Scripted};
use tower::ServiceExt;

fn target() -> Target {
    Target::new("cam1", Protocol::InProcess)
}

#[tokio::test(start_paused = true)]
async fn the_builder_hands_back_health_events_and_a_stop_that_keeps_the_final_state() {
    let storage = Arc::new(MemoryStorage::new());
    let config = ReconnectionConfig::default();
    let packets = ReconnectingBuilder::new(&config)
        .storage(storage.clone())
        .build(Scripted::new([serve(0..1_000, End::Silent)]), target());
    // Before the first packet: the health handle and the event bus are there.
    let health = packets
        .health_handle()
        .expect("a health handle before any packet");
    let mut events = packets.event_bus().subscribe();
    let stop = packets.stop_handle();
    let mut packets = Box::pin(packets);
    for n in 0..100 {
        assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), n);
    }
    assert_eq!(health.totals().packets, 100);
    // The attempt was reported on the same bus the driver reports on.
    assert_eq!(
        events.recv().await.unwrap().event_type,
        EventType::ReconnectionAttempt
    );

    assert_eq!(stop.final_state(), None, "still running");
    stop.stop();
    assert!(packets.next().await.is_none());
    let last = stop.final_state().expect("the state it stopped with");
    assert_eq!(last.statistics.packets_received, 100);
    let saved = storage.load("cam1").await.unwrap().unwrap();
    assert_eq!(saved.statistics.packets_received, 100);
}

/// A connector whose connects take `delay`, then connect through `inner`.
fn slow(
    delay: Duration,
    inner: Scripted,
) -> impl tower::Service<
    Target,
    Response = mirror_reconnect::connection::ChannelConnection,
    Error = mirror_reconnect::BoxError,
    Future = impl Send,
> + Clone
       + Send
       + Unpin
       + 'static {
    tower::service_fn(move |t: Target| {
        let inner = inner.clone();
        async move {
            tokio::time::sleep(delay).await;
            inner.oneshot(t).await
        }
    })
}

#[tokio::test(start_paused = true)]
async fn attempts_are_bounded_by_attempt_timeout_and_passive_inputs_wait() {
    let config = ReconnectionConfig {
        attempt_timeout: Some(Duration::from_millis(500)),
        max_retries: 1,
        ..ReconnectionConfig::default()
    };
    // Every attempt takes 2 s: bounded at 500 ms, the stream gives up.
    let script = Scripted::new([serve(0..10, End::Silent), serve(0..10, End::Silent)]);
    let mut packets = Box::pin(
        config
            .builder()
            .build(slow(Duration::from_secs(2), script), target()),
    );
    let error = packets
        .next()
        .await
        .unwrap()
        .expect_err("every attempt timed out");
    assert!(
        error.to_string().contains("timed out") || format!("{error:?}").contains("Elapsed"),
        "{error}"
    );

    // A passive input waits as long as its connect takes.
    let script = Scripted::new([serve(0..10, End::Silent)]);
    let mut packets = Box::pin(
        config
            .builder()
            .passive()
            .build(slow(Duration::from_secs(2), script), target()),
    );
    assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), 0);
}

#[tokio::test(start_paused = true)]
async fn tower_layers_go_around_each_attempt() {
    use std::sync::atomic::{AtomicU32, Ordering};
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = Arc::clone(&attempts);
    let counting = tower::layer::layer_fn(move |inner| {
        let seen = Arc::clone(&seen);
        tower::util::MapRequest::new(inner, move |t: Target| {
            seen.fetch_add(1, Ordering::SeqCst);
            t
        })
    });
    let config = ReconnectionConfig {
        initial_delay: Duration::from_millis(10),
        ..ReconnectionConfig::default()
    };
    let script = Scripted::new([serve(0..5, End::Close), serve(5..10, End::Silent)]);
    let mut packets = Box::pin(
        config
            .builder()
            .attempt_layer(counting)
            .build(script, target()),
    );
    for n in 0..10 {
        assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), n);
    }
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "one per connect attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn connections_that_end_before_a_packet_are_redialled_on_the_configs_backoff() {
    use mirror_reconnect::config::BackoffType;
    use std::sync::Mutex;
    use tokio::time::Instant;

    let config = ReconnectionConfig {
        backoff_type: BackoffType::Fixed,
        initial_delay: Duration::from_millis(700),
        use_jitter: false,
        ..ReconnectionConfig::default()
    };
    let script = Scripted::new([
        serve(0..0, End::Close),
        serve(0..0, End::Close),
        serve(0..5, End::Silent),
    ]);
    let connects = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&connects);
    let connector = tower::service_fn(move |target: Target| {
        seen.lock().unwrap().push(Instant::now());
        script.clone().oneshot(target)
    });
    // Built from a clone of a builder, as each of many streams is.
    let builder = ReconnectingBuilder::new(&config);
    let packets = builder.clone().build(connector, target());
    let mut packets = Box::pin(packets);
    assert_eq!(payload_number(&packets.next().await.unwrap().unwrap()), 0);
    let connects = connects.lock().unwrap().clone();
    assert_eq!(
        connects.len(),
        3,
        "two that ended at once, then the one that delivers"
    );
    assert_eq!(connects[1] - connects[0], Duration::from_millis(700));
    assert_eq!(connects[2] - connects[1], Duration::from_millis(700));
}
