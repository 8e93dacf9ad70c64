//! Make-before-break on paused time: a connection suspected of silence is kept while
//! its replacement is dialled, and whichever delivers first is kept. A stall shorter
//! than the replacement's way in loses nothing; a dead connection is replaced as
//! fast as without it; with it off, a stall costs the rest of the connection; inputs
//! bound to a port never race.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::EventType;
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::ReconnectionConfig;
use support::{payload_number, serve, stalled, End, Recorder, Scripted, Step};
use tokio::time::Instant;

fn config(make_before_break: bool) -> ReconnectionConfig {
    ReconnectionConfig {
        max_retries: 50,
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_millis(400),
        use_jitter: false,
        probe_interval: None,
        make_before_break,
        ..ReconnectionConfig::default()
    }
}

/// Read until packet `last` (or the stream ends): the numbers, and the events.
async fn run(
    script: &Scripted,
    config: ReconnectionConfig,
    target: Target,
    last: u32,
) -> (Vec<u32>, Recorder) {
    let mut packets = config.builder().build(script.clone(), target);
    let recorder = Recorder::default();
    recorder.attach(packets.event_bus());
    let mut got = Vec::new();
    while let Some(item) = packets.next().await {
        let n = payload_number(&item.unwrap());
        got.push(n);
        if n == last {
            break;
        }
    }
    (got, recorder)
}

fn in_process() -> Target {
    Target::new("cam1", Protocol::InProcess)
}

fn count(recorder: &Recorder, kind: EventType) -> usize {
    recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.event_type == kind)
        .count()
}

/// The replacement needs 3 refusals (100 + 200 + 400 ms of backoff) before it
/// connects: longer than the 400 ms stall.
fn a_stall_and_a_slow_replacement() -> Scripted {
    Scripted::new([
        stalled(0..1_000, 300, Duration::from_millis(400), End::Close),
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        serve(10_000..20_000, End::Close),
    ])
}

#[tokio::test(start_paused = true)]
async fn a_stalled_connection_that_comes_back_loses_nothing() {
    let script = a_stall_and_a_slow_replacement();
    let (got, recorder) = run(&script, config(true), in_process(), 999).await;
    assert_eq!(
        got,
        (0..1_000).collect::<Vec<_>>(),
        "every packet, in order"
    );
    println!("{:?}", recorder.summary());
    assert_eq!(count(&recorder, EventType::FailureDetected), 1);
    assert_eq!(count(&recorder, EventType::FailureCleared), 1);
    assert_eq!(count(&recorder, EventType::ReconnectionSucceeded), 0);
    assert!(
        script.calls() >= 2,
        "the replacement was dialled: {} calls",
        script.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn without_make_before_break_the_same_stall_costs_the_rest_of_the_connection() {
    let script = a_stall_and_a_slow_replacement();
    let (got, recorder) = run(&script, config(false), in_process(), 10_100).await;
    let lost = (0..1_000).filter(|n| !got.contains(n)).count();
    println!("lost {lost} of the first connection's 1000 packets");
    assert_eq!(
        lost, 700,
        "packets 300..1000 went with the torn-down connection"
    );
    assert_eq!(count(&recorder, EventType::FailureCleared), 0);
    assert_eq!(count(&recorder, EventType::ReconnectionSucceeded), 1);
}

#[tokio::test(start_paused = true)]
async fn a_dead_connection_is_replaced_by_the_first_replacement_that_delivers() {
    // Silent for good; the replacement connects at once.
    let script = Scripted::new([
        serve(0..300, End::Silent),
        serve(10_000..20_000, End::Close),
    ]);
    let mut packets = config(true).builder().build(script.clone(), in_process());
    let health = packets.health_handle().unwrap();
    let recorder = Recorder::default();
    recorder.attach(packets.event_bus());
    let mut got = Vec::new();
    let mut last_old = None;
    let mut first_new = None;
    while let Some(item) = packets.next().await {
        let n = payload_number(&item.unwrap());
        if n < 10_000 {
            last_old = Some(Instant::now());
        } else if first_new.is_none() {
            first_new = Some(Instant::now());
        }
        got.push(n);
        if n == 10_100 {
            break;
        }
    }
    assert!(got.starts_with(&(0..300).collect::<Vec<_>>()));
    let dark = first_new.unwrap() - last_old.unwrap();
    println!("dark {dark:?}: detection, then the replacement's first packet");
    assert!(dark < Duration::from_millis(200), "{dark:?}");
    assert_eq!(count(&recorder, EventType::ReconnectionSucceeded), 1);
    assert_eq!(count(&recorder, EventType::FailureCleared), 0);
    // The old connection was dropped after the new one came up: still connected.
    assert!(
        health.check_health().is_connected,
        "health counts the new connection"
    );
}

#[tokio::test(start_paused = true)]
async fn an_input_bound_to_a_port_never_races() {
    // A UDP target binds: no replacement can be dialled beside it.
    let script = a_stall_and_a_slow_replacement();
    let target = Target::new("udp://127.0.0.1:5000", Protocol::Udp);
    let (got, recorder) = run(&script, config(true), target, 10_100).await;
    assert!(!got.contains(&300), "the stalled connection was torn down");
    assert_eq!(count(&recorder, EventType::FailureCleared), 0);
}
