//! Make-before-break on paused time: a connection suspected of silence is kept while
//! its replacement is dialled, and whichever delivers first is kept. A stall shorter
//! than the replacement's way in loses nothing; a dead connection is replaced as
//! fast as without it; with it off, a stall costs the rest of the connection; inputs
//! bound to a port never race. A degrading connection (loss over the limit) delivers
//! until its replacement does, and is kept when no replacement can be had or when it
//! recovers first; a replacement that hangs up at once is not redialled in a tight
//! loop.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::backoff::FixedBackoff;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::EventType;
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::ReconnectionConfig;
use support::{lossy, payload_number, serve, stalled, End, Recorder, Scripted, Step};
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

/// Loss of one packet in three from packet 300 (3 s) on; the replacement needs 3
/// refusals (700 ms of backoff) before it connects.
fn a_degrading_path_and_a_slow_replacement() -> Scripted {
    Scripted::new([
        lossy(0..2_000, 300..2_000, 3, End::Close),
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        serve(10_000..20_000, End::Close),
    ])
}

/// Read to packet 10 100 of the replacement: when each packet came.
async fn timed(script: &Scripted, config: ReconnectionConfig) -> (Vec<(Instant, u32)>, Recorder) {
    let mut packets = config.builder().build(script.clone(), in_process());
    let recorder = Recorder::default();
    recorder.attach(packets.event_bus());
    let mut got = Vec::new();
    while let Some(item) = packets.next().await {
        let n = payload_number(&item.unwrap());
        got.push((Instant::now(), n));
        if n == 10_100 {
            break;
        }
    }
    (got, recorder)
}

/// The longest time without a packet, and the old connection's packets after the
/// failure was detected.
fn dark_and_kept(got: &[(Instant, u32)], recorder: &Recorder) -> (Duration, usize) {
    let detected = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .find(|(_, e)| e.event_type == EventType::FailureDetected)
        .map(|(t, _)| *t)
        .unwrap();
    let dark = got.windows(2).map(|w| w[1].0 - w[0].0).max().unwrap();
    let kept = got
        .iter()
        .filter(|(t, n)| *t > detected && *n < 10_000)
        .count();
    (dark, kept)
}

#[tokio::test(start_paused = true)]
async fn a_degrading_connection_delivers_until_its_replacement_does() {
    let script = a_degrading_path_and_a_slow_replacement();
    let (got, recorder) = timed(&script, config(true)).await;
    let (dark, kept) = dark_and_kept(&got, &recorder);
    println!(
        "{:?}\ndark {dark:?}, {kept} packets of the degrading connection after the detection",
        recorder.summary()
    );
    assert_eq!(count(&recorder, EventType::FailureDetected), 1);
    assert_eq!(count(&recorder, EventType::ReconnectionSucceeded), 1);
    assert_eq!(count(&recorder, EventType::FailureCleared), 0);
    // 700 ms of backoff, two packets delivered in three: about 46.
    assert!(
        kept >= 40,
        "{kept} packets kept while the replacement was dialled"
    );
    assert!(dark <= Duration::from_millis(30), "dark {dark:?}");
    // Once the replacement delivers, nothing more of the old connection.
    let first_new = got.iter().position(|(_, n)| *n >= 10_000).unwrap();
    assert!(got[first_new..].iter().all(|(_, n)| *n >= 10_000));
}

#[tokio::test(start_paused = true)]
async fn without_make_before_break_a_degrading_connection_goes_dark_until_the_replacement() {
    let script = a_degrading_path_and_a_slow_replacement();
    let (got, recorder) = timed(&script, config(false)).await;
    let (dark, kept) = dark_and_kept(&got, &recorder);
    println!("dark {dark:?}, {kept} kept");
    assert_eq!(kept, 0);
    assert!(dark >= Duration::from_millis(700), "dark {dark:?}");
}

#[tokio::test(start_paused = true)]
async fn a_degrading_connection_is_kept_when_no_replacement_can_be_had() {
    // Nothing answers after the first connection: every replacement's retries fail.
    let script = Scripted::new([lossy(0..2_000, 300..2_000, 3, End::Close)]);
    let config = ReconnectionConfig {
        max_retries: 2,
        ..config(true)
    };
    let (got, recorder) = run(&script, config, in_process(), 1_999).await;
    println!("{:?}", recorder.summary());
    assert_eq!(got.last(), Some(&1_999), "the stream went on to the end");
    assert_eq!(
        got.len(),
        2_000 - 1_700 / 3 - 1,
        "every packet that came through"
    );
    assert!(count(&recorder, EventType::FailureCleared) >= 1);
    assert_eq!(count(&recorder, EventType::ReconnectionFailed), 0);
}

#[tokio::test(start_paused = true)]
async fn a_replacement_that_hangs_up_at_once_is_not_redialled_at_once() {
    // Silent for good; every replacement connects and closes before a packet.
    let mut steps = vec![serve(0..300, End::Silent)];
    steps.extend((0..50).map(|_| serve(0..0, End::Close)));
    let script = Scripted::new(steps);
    let mut packets = config(true)
        .builder()
        .build(script.clone(), in_process())
        .unverified_backoff(FixedBackoff::new(Duration::from_millis(500)));
    let recorder = Recorder::default();
    recorder.attach(packets.event_bus());
    let read = async {
        while let Some(item) = packets.next().await {
            item.unwrap();
        }
    };
    // 3 s of packets, then 2 s of racing.
    let _ = tokio::time::timeout(Duration::from_secs(5), read).await;
    println!("{} connects: {:?}", script.calls(), recorder.summary());
    assert_eq!(count(&recorder, EventType::FailureDetected), 1);
    // One every 500 ms over the 2 s race, and the first.
    assert!(
        (4..=6).contains(&script.calls()),
        "{} connects in 2 s of racing",
        script.calls()
    );
}

#[tokio::test(start_paused = true)]
async fn a_degrading_connection_that_recovers_first_is_kept_and_no_more_dialled() {
    // Lossy from 3 s to 6 s; no replacement ever answers (retried without end).
    let script = Scripted::new([lossy(0..2_000, 300..600, 3, End::Close)]);
    let config = ReconnectionConfig {
        max_retries: 1_000,
        ..config(true)
    };
    let (got, recorder) = run(&script, config, in_process(), 1_999).await;
    println!("{} connects: {:?}", script.calls(), recorder.summary());
    assert!(
        (600..2_000).all(|n| got.contains(&n)),
        "the recovered connection delivered to its end"
    );
    assert!(count(&recorder, EventType::FailureCleared) >= 1);
    let events = recorder.events.lock().unwrap();
    let last = |kind: EventType| {
        events
            .iter()
            .filter(|(_, e)| e.event_type == kind)
            .map(|(t, _)| *t)
            .next_back()
            .unwrap()
    };
    assert!(last(EventType::FailureCleared) > last(EventType::FailureDetected));
    // Dialled while degrading (about 4 s at up to 400 ms apart), not for the 14 s
    // after it recovered.
    assert!(script.calls() <= 16, "{} connects", script.calls());
}
