//! Backup sources on paused time: the switch at once when the primary fails, the
//! switch back after `switch_back_after`, never to a flapping primary, the startup
//! wait, a source that gives up, and the events and metrics of every switch.

#![allow(clippy::unwrap_used)]

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{Protocol, Target};
use mirror_reconnect::driver::EventType;
use mirror_reconnect::error::ConnectErrorKind;
use mirror_reconnect::failover::{Failover, FailoverConfig, SwitchReason};
use mirror_reconnect::ReconnectionConfig;
use support::{payload_number, End, Recorder, Scripted, Step};
use tokio::time::Instant;

const GAP: Duration = Duration::from_millis(10);

fn config(max_retries: u32) -> ReconnectionConfig {
    ReconnectionConfig {
        max_retries,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(300),
        use_jitter: false,
        ..ReconnectionConfig::default()
    }
}

fn serve(packets: std::ops::Range<u32>, end: End) -> Step {
    Step::Serve {
        packets,
        gap: GAP,
        end,
    }
}

/// A primary and a backup, each its own stack on `script`s.
fn failover(primary: &Scripted, backup: &Scripted, retries: u32) -> (Failover, Recorder) {
    let target = Target::new("cam1", Protocol::InProcess);
    let stream = Failover::new("cam1")
        .source(
            "primary",
            config(retries)
                .builder()
                .build(primary.clone(), target.clone()),
        )
        .source(
            "backup",
            config(retries).builder().build(backup.clone(), target),
        );
    let recorder = Recorder::default();
    recorder.attach(stream.event_bus());
    (stream, recorder)
}

/// Read until `until` says stop, noting each packet's number and arrival time.
async fn read(stream: &mut Failover, until: impl Fn(u32, Instant) -> bool) -> Vec<(u32, Instant)> {
    let mut got = Vec::new();
    while let Some(item) = stream.next().await {
        let packet = item.unwrap();
        let n = payload_number(&packet);
        let now = Instant::now();
        got.push((n, now));
        if until(n, now) {
            break;
        }
    }
    got
}

/// The longest wait between two packets of `got`.
fn longest_gap(got: &[(u32, Instant)]) -> Duration {
    got.windows(2)
        .map(|w| w[1].1.duration_since(w[0].1))
        .max()
        .unwrap_or_default()
}

fn switches(recorder: &Recorder) -> Vec<(String, String, SwitchReason)> {
    recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.event_type == EventType::SourceSwitched)
        .map(|(_, e)| {
            let s = e
                .switch
                .clone()
                .expect("a source_switched event says which");
            (s.from, s.to, s.reason)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_primary_that_breaks_is_replaced_by_the_backup_at_once() {
    // The primary's connection resets after 100 packets and it never comes back.
    let primary = Scripted::new([serve(0..100, End::Error)]);
    let backup = Scripted::new([serve(1_000..100_000, End::Close)]);
    let (mut stream, recorder) = failover(&primary, &backup, 20);
    let got = read(&mut stream, |n, _| n >= 1_050).await;
    let primary_part: Vec<u32> = got.iter().map(|g| g.0).take_while(|n| *n < 1_000).collect();
    assert_eq!(
        primary_part,
        (0..100).collect::<Vec<_>>(),
        "the primary first, all of it"
    );
    assert_eq!(stream.active(), "backup");
    // The backup was already up: the next of its packets follows within one gap.
    let gap = longest_gap(&got);
    assert!(gap <= GAP, "output gap at the switch: {gap:?}");
    assert_eq!(
        switches(&recorder),
        [("primary".into(), "backup".into(), SwitchReason::Failed)]
    );
    // The primary is still being retried in the background, by its own stack.
    assert!(primary.calls() > 1, "{} calls", primary.calls());
}

#[tokio::test(start_paused = true)]
async fn media_silence_on_the_primary_switches_within_its_detection_time() {
    // The primary's socket stays open but goes quiet: only its detector can tell.
    let primary = Scripted::new([serve(0..300, End::Silent)]);
    let backup = Scripted::new([serve(1_000..100_000, End::Close)]);
    let (mut stream, recorder) = failover(&primary, &backup, 20);
    let got = read(&mut stream, |n, _| n >= 1_100).await;
    let last_primary = got.iter().rev().find(|g| g.0 < 1_000).unwrap().1;
    let first_backup = got.iter().find(|g| g.0 >= 1_000).unwrap().1;
    let dark = first_backup.duration_since(last_primary);
    println!("dark for {dark:?} between the primary's last packet and the backup's first");
    // Detection of a 10 ms rhythm's silence, and nothing more (no connect, no backoff).
    assert!(dark < Duration::from_millis(500), "{dark:?}");
    assert!(
        dark > GAP,
        "{dark:?}: a switch before the silence was judged"
    );
    assert_eq!(switches(&recorder).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn the_primary_back_is_switched_back_to_after_switch_back_after_without_a_gap() {
    // Down after 50 packets, refused three times, then up for good.
    let primary = Scripted::new([
        serve(0..50, End::Error),
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        serve(10_000..1_000_000, End::Close),
    ]);
    let backup = Scripted::new([serve(1_000..1_000_000, End::Close)]);
    let (stream, recorder) = failover(&primary, &backup, 20);
    let mut stream = stream.switch_back_after(Duration::from_secs(10));
    let got = read(&mut stream, |n, _| n >= 12_000).await;
    let primary_back = got.iter().find(|g| g.0 >= 10_000).unwrap();
    let switched = switches(&recorder);
    assert_eq!(
        switched,
        [
            ("primary".into(), "backup".into(), SwitchReason::Failed),
            ("backup".into(), "primary".into(), SwitchReason::SwitchBack),
        ]
    );
    // The primary's first packet after the switch back came ~10 s after it was up
    // again: it was up since (first packet after reconnect) + 10 s.
    let back_at = recorder
        .events
        .lock()
        .unwrap()
        .iter()
        .filter(|(_, e)| e.event_type == EventType::SourceSwitched)
        .nth(1)
        .unwrap()
        .0;
    let primary_numbers: Vec<u32> = got.iter().map(|g| g.0).filter(|n| *n >= 10_000).collect();
    // Packets of the primary seen: from the switch back on. The primary's packet
    // 10_000 was read (and dropped) on standby 10 s before.
    let stable_for = (primary_numbers[0] - 10_000) as u64 * GAP.as_millis() as u64;
    assert!(
        (10_000..=10_020).contains(&stable_for),
        "switched back after the primary was up {stable_for} ms"
    );
    assert!(back_at >= primary_back.1 - GAP);
    let gap = longest_gap(&got);
    assert!(gap <= GAP, "an output gap of {gap:?}");
}

#[tokio::test(start_paused = true)]
async fn a_flapping_primary_is_never_switched_back_to() {
    // Up 5 s, then a reset, again and again: never up for the 10 s switch back needs.
    let flaps = (0..8u32).map(|i| serve(i * 10_000..i * 10_000 + 500, End::Error));
    let primary = Scripted::new(flaps);
    let backup = Scripted::new([serve(1_000_000..2_000_000, End::Close)]);
    let (stream, recorder) = failover(&primary, &backup, 100);
    let mut stream = stream.switch_back_after(Duration::from_secs(10));
    let started = Instant::now();
    let got = read(&mut stream, |_, now| {
        now.duration_since(started) > Duration::from_secs(45)
    })
    .await;
    assert!(
        primary.calls() >= 7,
        "the primary flapped: {} connects",
        primary.calls()
    );
    assert_eq!(
        switches(&recorder),
        [("primary".into(), "backup".into(), SwitchReason::Failed)],
        "one switch to the backup, none back"
    );
    assert!(got
        .iter()
        .skip_while(|g| g.0 < 1_000_000)
        .all(|g| g.0 >= 1_000_000));
}

#[tokio::test(start_paused = true)]
async fn at_the_start_the_primary_is_waited_for_then_the_backup_used() {
    // A primary that comes up 160 ms late (two refusals): no switch.
    let late = Scripted::new([
        Step::Fail(ConnectErrorKind::Unreachable),
        Step::Fail(ConnectErrorKind::Unreachable),
        serve(0..1_000, End::Close),
    ]);
    let backup = Scripted::new([serve(1_000_000..2_000_000, End::Close)]);
    let (mut stream, recorder) = failover(&late, &backup, 20);
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(
        payload_number(&first),
        0,
        "the primary's first packet first"
    );
    assert!(switches(&recorder).is_empty());

    // A primary that never comes up: the backup after the startup wait.
    let dead = Scripted::new([]);
    let backup = Scripted::new([serve(1_000_000..2_000_000, End::Close)]);
    let (stream, recorder) = failover(&dead, &backup, 100);
    let mut stream = stream.config(FailoverConfig {
        startup_wait: Duration::from_millis(500),
        ..FailoverConfig::default()
    });
    let started = Instant::now();
    let first = stream.next().await.unwrap().unwrap();
    assert_eq!(payload_number(&first) / 1_000_000, 1, "from the backup");
    let waited = started.elapsed();
    assert!(
        (Duration::from_millis(500)..Duration::from_millis(520)).contains(&waited),
        "{waited:?}"
    );
    assert_eq!(
        switches(&recorder),
        [("primary".into(), "backup".into(), SwitchReason::Failed)]
    );
}

#[tokio::test(start_paused = true)]
async fn a_primary_that_gives_up_leaves_the_backup_and_the_last_one_ends_the_stream() {
    // The primary's stack gives up after its connection ends (2 retries, all refused).
    let primary = Scripted::new([serve(0..20, End::Error)]);
    let backup = Scripted::new([serve(1_000..1_200, End::Error)]);
    let (mut stream, recorder) = failover(&primary, &backup, 2);
    let mut numbers = Vec::new();
    let mut ended_with = None;
    while let Some(item) = stream.next().await {
        match item {
            Ok(packet) => numbers.push(payload_number(&packet)),
            Err(e) => ended_with = Some(e),
        }
    }
    assert!(numbers.starts_with(&(0..20).collect::<Vec<_>>()));
    assert!(numbers.contains(&1_199), "the backup's packets to its end");
    let error = ended_with.expect("both gave up: the stream ends with an error");
    println!("ended: {error}");
    let reasons: Vec<SwitchReason> = switches(&recorder).into_iter().map(|s| s.2).collect();
    assert_eq!(reasons, [SwitchReason::Failed], "{reasons:?}");
    assert!(stream.next().await.is_none());
}

#[tokio::test(start_paused = true)]
async fn a_clean_stop_after_a_backup_gave_up_ends_the_stream_cleanly() {
    // The backup gives up at once (nothing answers); the primary is stopped cleanly.
    let primary = Scripted::new([serve(0..100_000, End::Close)]);
    let backup = Scripted::new([]);
    let stop = tokio_util::sync::CancellationToken::new();
    let target = Target::new("cam1", Protocol::InProcess);
    let mut stream = Failover::new("cam1")
        .source(
            "primary",
            config(2)
                .builder()
                .cancel_token(stop.clone())
                .build(primary.clone(), target.clone()),
        )
        .source("backup", config(2).builder().build(backup.clone(), target));
    let got = read(&mut stream, |n, _| n == 200).await;
    assert_eq!(got.len(), 201);
    stop.cancel();
    while let Some(item) = stream.next().await {
        assert!(
            item.is_ok(),
            "a clean stop, not the backup's error: {item:?}"
        );
    }
}

#[test]
fn the_failover_settings_are_checked() {
    assert!(FailoverConfig::default().validate().is_ok());
    let short = FailoverConfig {
        switch_back_after: Duration::from_millis(10),
        ..FailoverConfig::default()
    };
    let error = short.validate().unwrap_err();
    assert!(error.contains("failover.switch_back_after"), "{error}");
    let yaml: FailoverConfig = serde_yaml_ng::from_str("switch_back_after: 30s").unwrap();
    assert_eq!(yaml.switch_back_after, Duration::from_secs(30));
    assert!(serde_yaml_ng::from_str::<FailoverConfig>("switch_back: 30s").is_err());
}
