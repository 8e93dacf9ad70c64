//! The driver over a scripted connector: packets, order, events, give-up, cancel.

mod support;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::backoff::{BackoffRetryLayer, FixedBackoff};
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::detect::{FailureDetectLayer, FailureThresholds};
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::health::HealthLayer;
use mirror_reconnect::{Events, Reconnecting};
use support::{payload_number, serve, End, Recorder, Scripted, Step};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;

type Stack = mirror_reconnect::backoff::BackoffRetry<
    mirror_reconnect::detect::FailureDetect<mirror_reconnect::health::Health<Scripted>>,
    FixedBackoff,
>;

fn driver(script: &Scripted, max_retries: u32) -> (Reconnecting<Stack, Target>, Recorder) {
    let events = Events::new("cam1");
    let recorder = Recorder::default();
    recorder.attach(&events);
    let stack = ServiceBuilder::new()
        .layer(
            BackoffRetryLayer::new(FixedBackoff::new(Duration::from_millis(100)))
                .max_retries(max_retries)
                .on_attempt(events.attempt_hook()),
        )
        .layer(FailureDetectLayer::new(FailureThresholds::default()))
        .layer(HealthLayer::new())
        .service(script.clone());
    let driver = Reconnecting::new(stack, Target::new("cam1", Protocol::InProcess))
        .events(events)
        .unverified_backoff(FixedBackoff::new(Duration::from_millis(100)));
    (driver, recorder)
}

#[tokio::test(start_paused = true)]
async fn every_packet_in_order_across_failures_with_the_exact_events() {
    let script = Scripted::new([
        serve(0..50, End::Close),
        Step::Fail(ConnectErrorKind::Unreachable),
        serve(50..120, End::Error),
        Step::Fail(ConnectErrorKind::TimedOut),
        Step::Fail(ConnectErrorKind::Unreachable),
        serve(120..200, End::Silent),
        Step::Fail(ConnectErrorKind::Rejected),
    ]);
    let (driver, recorder) = driver(&script, 5);

    let mut numbers = Vec::new();
    let mut driver = Box::pin(driver);
    let error = loop {
        match driver.next().await {
            Some(Ok(packet)) => numbers.push(payload_number(&packet)),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without the give-up error"),
        }
    };
    assert!(
        driver.next().await.is_none(),
        "the stream ends after its error"
    );

    assert_eq!(numbers, (0..200).collect::<Vec<_>>());
    assert!(error.to_string().contains("rejected"), "{error}");
    assert_eq!(
        recorder.summary(),
        [
            "reconnection_attempt:1",
            // closed by the peer
            "failure_detected:network_error",
            "reconnection_started",
            "reconnection_attempt:1",
            "reconnection_attempt:2",
            "reconnection_succeeded:2",
            // fatal network error
            "failure_detected:network_error",
            "reconnection_started",
            "reconnection_attempt:1",
            "reconnection_attempt:2",
            "reconnection_attempt:3",
            "reconnection_succeeded:3",
            // silent socket: the detector's timeout
            "failure_detected:timeout",
            "reconnection_started",
            "reconnection_attempt:1",
            "reconnection_failed:1",
        ]
    );
    assert_eq!(script.calls(), 7);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries_with_reconnection_failed() {
    let script = Scripted::new([serve(0..10, End::Close)]);
    let (driver, recorder) = driver(&script, 3);
    let results: Vec<_> = driver.collect().await;

    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
    let error = results.last().unwrap().as_ref().unwrap_err();
    assert!(
        error.to_string().contains("gave up after 4 attempts"),
        "{error}"
    );
    let summary = recorder.summary();
    assert_eq!(summary.last().unwrap(), "reconnection_failed:4");
    assert_eq!(
        summary
            .iter()
            .filter(|s| s.starts_with("reconnection_attempt"))
            .count(),
        1 + 4
    );
    // 1 + max_retries connects for the reconnection, after the first connection.
    assert_eq!(script.calls(), 1 + 4);

    let failed = recorder.events.lock().unwrap().last().unwrap().1.clone();
    assert_eq!(failed.duration, Some(Duration::from_millis(300)));
}

#[tokio::test(start_paused = true)]
async fn cancel_while_reconnecting_aborts() {
    let script = Scripted::new([serve(0..5, End::Close)]);
    let (driver, recorder) = driver(&script, 1_000);
    let token = CancellationToken::new();
    let mut driver = Box::pin(driver.cancel_token(token.clone()));

    for _ in 0..5 {
        driver.next().await.unwrap().unwrap();
    }
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        token.cancel();
    });
    assert!(driver.next().await.is_none());
    canceller.await.unwrap();

    let summary = recorder.summary();
    assert_eq!(summary.last().unwrap(), "reconnection_aborted");
    let events = recorder.events.lock().unwrap();
    let aborted = &events.last().unwrap().1;
    // Packets every 10 ms from t=0: the close came at 50 ms, the cancel at 1 s + 50 ms.
    assert_eq!(aborted.duration, Some(Duration::from_secs(1)));
}

#[tokio::test(start_paused = true)]
async fn cancel_while_streaming_ends_quietly() {
    let script = Scripted::new([serve(0..1_000, End::Silent)]);
    let (driver, recorder) = driver(&script, 5);
    let token = CancellationToken::new();
    let mut driver = Box::pin(driver.cancel_token(token.clone()));
    driver.next().await.unwrap().unwrap();
    token.cancel();
    assert!(driver.next().await.is_none());
    assert_eq!(recorder.summary(), ["reconnection_attempt:1"]);
}

#[tokio::test(start_paused = true)]
async fn a_connection_without_a_first_packet_is_not_a_success() {
    // Connects that deliver nothing, then a good one.
    let script = Scripted::new([
        serve(0..0, End::Silent),
        serve(0..0, End::Close),
        serve(0..3, End::Silent),
    ]);
    let (driver, recorder) = driver(&script, 5);
    let mut driver = Box::pin(driver.first_packet_timeout(Duration::from_secs(2)));
    let start = tokio::time::Instant::now();
    assert_eq!(payload_number(&driver.next().await.unwrap().unwrap()), 0);
    // The silent connect: the detector does not judge before a first packet, so the
    // 2 s first-packet deadline trips; 100 ms pause; the closing connect; 100 ms pause;
    // the good connect's first packet 10 ms in.
    assert_eq!(
        start.elapsed(),
        Duration::from_millis(2_000 + 100 + 100 + 10)
    );
    for n in 1..3 {
        assert_eq!(payload_number(&driver.next().await.unwrap().unwrap()), n);
    }
    assert_eq!(
        recorder.summary(),
        [
            "reconnection_attempt:1",
            "failure_detected:timeout",
            "reconnection_started",
            "reconnection_attempt:1",
            "failure_detected:network_error",
            "reconnection_attempt:1",
            "reconnection_succeeded:1",
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_too_many_unverified_connections() {
    let script = Scripted::new((0..10).map(|_| serve(0..0, End::Close)));
    let (driver, recorder) = driver(&script, 5);
    let results: Vec<_> = driver.max_unverified(2).collect().await;
    assert_eq!(results.len(), 1);
    let error = results[0].as_ref().unwrap_err().to_string();
    assert!(error.contains("3 connections in a row"), "{error}");
    assert_eq!(script.calls(), 3);
    assert_eq!(recorder.summary().last().unwrap(), "reconnection_failed:1");
}

#[tokio::test(start_paused = true)]
async fn a_close_ends_the_stream_when_retry_on_close_is_off() {
    let script = Scripted::new([serve(0..4, End::Close), serve(0..4, End::Close)]);
    let (driver, recorder) = driver(&script, 5);
    let results: Vec<_> = driver.retry_on_close(false).collect().await;
    assert_eq!(results.len(), 4);
    assert!(results.iter().all(Result::is_ok));
    assert_eq!(script.calls(), 1);
    assert_eq!(recorder.summary(), ["reconnection_attempt:1"]);
}

#[tokio::test(start_paused = true)]
async fn events_reach_subscribers_and_serialize_to_json() {
    let script = Scripted::new([serve(0..2, End::Close), serve(2..4, End::Silent)]);
    let (driver, _recorder) = driver(&script, 5);
    let mut rx = driver.event_bus().subscribe();
    let mut driver = Box::pin(driver);
    for _ in 0..4 {
        driver.next().await.unwrap().unwrap();
    }
    let mut json = Vec::new();
    while let Ok(event) = rx.try_recv() {
        json.push(serde_json::to_value(&event).unwrap());
    }
    let types: Vec<_> = json
        .iter()
        .map(|v| v["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        [
            "reconnection_attempt",
            "failure_detected",
            "reconnection_started",
            "reconnection_attempt",
            "reconnection_succeeded"
        ]
    );
    let failure = &json[1];
    assert_eq!(failure["stream_id"], "cam1");
    assert_eq!(failure["reason"], "network_error");
    assert!(failure["timestamp"].as_str().unwrap().ends_with('Z'));
    let succeeded = &json[4];
    assert_eq!(succeeded["attempt"], 1);
    assert_eq!(succeeded["duration"].as_f64(), Some(0.01));
    assert!(succeeded["error"].is_null());
    let back: mirror_reconnect::ReconnectionEvent =
        serde_json::from_value(succeeded.clone()).unwrap();
    assert_eq!(back.duration, Some(Duration::from_millis(10)));
}

#[tokio::test(start_paused = true)]
async fn health_is_readable_through_the_driver() {
    let script = Scripted::new([serve(0..20, End::Silent)]);
    let (driver, _) = driver(&script, 5);
    let mut driver = Box::pin(driver);
    for _ in 0..20 {
        driver.next().await.unwrap().unwrap();
    }
    let health = driver
        .health()
        .expect("a health layer counts")
        .check_health();
    assert!(health.is_connected);
    assert_eq!(health.packet_count, 20);
    assert_eq!(health.packet_loss, 0.0);
    let state = driver.connection_state().unwrap();
    assert_eq!(state.statistics.packets_received, 20);
    assert_eq!(state.statistics.bytes_received, 80);
    let _ = Arc::new(());
}

/// A waker that remembers it was woken.
#[derive(Default)]
struct Flag(std::sync::atomic::AtomicBool);

impl std::task::Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Flag {
    fn woken(&self) -> bool {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[tokio::test(start_paused = true)]
async fn a_cancel_wakes_the_task_that_polled_last() {
    use futures_util::Stream;
    use std::task::{Context, Poll, Waker};

    // Idle after its first packet: every poll is Pending until the cancel.
    let script = Scripted::new([serve(0..1, End::Silent)]);
    let (driver, _) = driver(&script, 5);
    let token = CancellationToken::new();
    let mut driver = Box::pin(driver.cancel_token(token.clone()));
    assert_eq!(payload_number(&driver.next().await.unwrap().unwrap()), 0);

    let (a, b) = (Arc::new(Flag::default()), Arc::new(Flag::default()));
    let (waker_a, waker_b) = (Waker::from(Arc::clone(&a)), Waker::from(Arc::clone(&b)));
    for waker in [&waker_a, &waker_a, &waker_b, &waker_b] {
        let mut cx = Context::from_waker(waker);
        assert!(driver.as_mut().poll_next(&mut cx).is_pending());
    }
    token.cancel();
    assert!(b.woken(), "the cancel wakes the waker of the last poll");
    let mut cx = Context::from_waker(&waker_b);
    assert!(matches!(
        driver.as_mut().poll_next(&mut cx),
        Poll::Ready(None)
    ));
}
