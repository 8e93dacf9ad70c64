//! Backoff policies and the retry layer: exact sequences, jitter bounds, reset, limits.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_reconnect::backoff::error::{RetryError, RetryErrorKind};
use mirror_reconnect::backoff::{
    Attempt, Backoff, BackoffRetryLayer, ExponentialBackoff, FixedBackoff, Jitter, LinearBackoff,
};
use mirror_reconnect::error::{ConnectError, ConnectErrorKind};
use mirror_reconnect::BoxError;
use proptest::prelude::*;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn take(backoff: &mut impl Backoff, n: usize) -> Vec<Duration> {
    (0..n).map(|_| backoff.next_delay()).collect()
}

#[test]
fn exponential_sequence_is_exact() {
    let mut b = ExponentialBackoff::new(ms(100), ms(2_000), 2.0).jitter(Jitter::None);
    assert_eq!(
        take(&mut b, 7),
        [
            ms(100),
            ms(200),
            ms(400),
            ms(800),
            ms(1_600),
            ms(2_000),
            ms(2_000)
        ]
    );
    let mut b = ExponentialBackoff::new(ms(100), ms(1_000), 1.5).jitter(Jitter::None);
    assert_eq!(
        take(&mut b, 4),
        [ms(100), ms(150), ms(225), Duration::from_micros(337_500)]
    );
}

#[test]
fn linear_sequence_is_exact() {
    let mut b = LinearBackoff::new(ms(500), ms(250), ms(1_200));
    assert_eq!(
        take(&mut b, 5),
        [ms(500), ms(750), ms(1_000), ms(1_200), ms(1_200)]
    );
}

#[test]
fn fixed_sequence_is_exact() {
    let mut b = FixedBackoff::new(ms(300));
    assert_eq!(take(&mut b, 3), [ms(300); 3]);
}

#[test]
fn reset_starts_over() {
    let mut b = ExponentialBackoff::new(ms(100), ms(10_000), 3.0).jitter(Jitter::None);
    take(&mut b, 4);
    b.reset();
    assert_eq!(take(&mut b, 2), [ms(100), ms(300)]);
    let mut l = LinearBackoff::new(ms(100), ms(100), ms(1_000));
    take(&mut l, 4);
    l.reset();
    assert_eq!(l.next_delay(), ms(100));
}

#[test]
fn seeded_jitter_is_reproducible() {
    let a = take(
        &mut ExponentialBackoff::default().jitter(Jitter::Full).seed(7),
        10,
    );
    let b = take(
        &mut ExponentialBackoff::default().jitter(Jitter::Full).seed(7),
        10,
    );
    assert_eq!(a, b);
}

#[test]
fn full_jitter_spreads_retries() {
    // The point of jitter: 1 000 streams failing together do not retry together.
    let firsts: Vec<_> = (0..1_000)
        .map(|seed| {
            ExponentialBackoff::new(ms(1_000), ms(30_000), 2.0)
                .jitter(Jitter::Full)
                .seed(seed)
                .next_delay()
        })
        .collect();
    let in_first_tenth = firsts.iter().filter(|d| **d < ms(100)).count();
    assert!((50..=150).contains(&in_first_tenth), "{in_first_tenth}");
}

proptest! {
    #[test]
    fn jitter_stays_in_its_bounds(
        seed in any::<u64>(),
        initial_ms in 1u64..5_000,
        extra_ms in 0u64..60_000,
        multiplier in 1.0f64..4.0,
        steps in 1usize..40,
    ) {
        let initial = ms(initial_ms);
        let max = ms(initial_ms + extra_ms);
        let mut plain = ExponentialBackoff::new(initial, max, multiplier).jitter(Jitter::None);
        let bases = take(&mut plain, steps);
        for jitter in [Jitter::Proportional, Jitter::Full, Jitter::Equal] {
            let mut b = ExponentialBackoff::new(initial, max, multiplier).jitter(jitter).seed(seed);
            for (base, d) in bases.iter().zip(take(&mut b, steps)) {
                let (lo, hi) = match jitter {
                    Jitter::Proportional => (*base, base.mul_f64(1.1)),
                    Jitter::Full => (Duration::ZERO, *base),
                    Jitter::Equal => (*base / 2, *base),
                    _ => unreachable!(),
                };
                prop_assert!(d >= lo && d <= hi, "{jitter}: {d:?} not in [{lo:?}, {hi:?}]");
            }
        }
        let mut b = ExponentialBackoff::new(initial, max, multiplier).jitter(Jitter::Decorrelated).seed(seed);
        let mut previous = initial;
        for d in take(&mut b, steps) {
            prop_assert!(d >= initial && d <= max, "{d:?}");
            prop_assert!(d <= (previous * 3).max(initial), "{d:?} > 3 × {previous:?}");
            previous = d;
        }
    }

    #[test]
    fn linear_and_fixed_never_pass_max(seed in any::<u64>(), steps in 1usize..100) {
        let mut l = LinearBackoff::new(ms(100), ms(70), ms(1_000)).jitter(Jitter::Decorrelated).seed(seed);
        for d in take(&mut l, steps) {
            prop_assert!(d >= ms(100) && d <= ms(1_000));
        }
        let mut f = FixedBackoff::new(ms(500)).jitter(Jitter::Equal).seed(seed);
        for d in take(&mut f, steps) {
            prop_assert!(d >= ms(250) && d <= ms(500));
        }
    }
}

type Log = Arc<Mutex<Vec<(Instant, Attempt)>>>;

fn retry_layer(max_retries: u32) -> (BackoffRetryLayer<ExponentialBackoff>, Log) {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let layer = BackoffRetryLayer::new(
        ExponentialBackoff::new(ms(100), ms(1_000), 2.0).jitter(Jitter::None),
    )
    .max_retries(max_retries)
    .on_attempt(move |a| sink.lock().unwrap().push((Instant::now(), a.clone())));
    (layer, log)
}

fn refused() -> BoxError {
    ConnectError::new(ConnectErrorKind::Unreachable, "refused").into()
}

#[tokio::test(start_paused = true)]
async fn retries_on_the_backoff_schedule_then_succeeds() {
    let (layer, log) = retry_layer(5);
    let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer);
    let start = Instant::now();
    tokio_test::assert_ready_ok!(service.poll_ready());
    let response = tokio::spawn(service.call("target"));

    for _ in 0..3 {
        let (target, send) = handle.next_request().await.unwrap();
        assert_eq!(target, "target");
        send.send_error(refused());
    }
    let (_, send) = handle.next_request().await.unwrap();
    send.send_response(42);
    assert_eq!(response.await.unwrap().unwrap(), 42);

    let log = log.lock().unwrap();
    let at: Vec<_> = log.iter().map(|(t, _)| t.duration_since(start)).collect();
    assert_eq!(at, [ms(0), ms(100), ms(300), ms(700)]);
    let delays: Vec<_> = log.iter().map(|(_, a)| a.delay).collect();
    assert_eq!(delays, [ms(0), ms(100), ms(200), ms(400)]);
    assert_eq!(
        log[1].1.last_error.as_deref(),
        Some("peer unreachable: refused")
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_resets_after_success() {
    let (layer, log) = retry_layer(5);
    let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer);
    for _ in 0..2 {
        tokio_test::assert_ready_ok!(service.poll_ready());
        let response = tokio::spawn(service.call("target"));
        for _ in 0..2 {
            handle.next_request().await.unwrap().1.send_error(refused());
        }
        handle.next_request().await.unwrap().1.send_response(1);
        response.await.unwrap().unwrap();
    }
    let delays: Vec<_> = log.lock().unwrap().iter().map(|(_, a)| a.delay).collect();
    assert_eq!(delays, [ms(0), ms(100), ms(200), ms(0), ms(100), ms(200)]);
}

#[tokio::test(start_paused = true)]
async fn gives_up_after_max_retries() {
    let (layer, log) = retry_layer(3);
    let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer);
    tokio_test::assert_ready_ok!(service.poll_ready());
    let response = tokio::spawn(service.call("target"));
    for _ in 0..4 {
        handle.next_request().await.unwrap().1.send_error(refused());
    }
    let error = response.await.unwrap().unwrap_err();
    let retry = error.downcast_ref::<RetryError>().unwrap();
    assert_eq!(retry.kind(), RetryErrorKind::Exhausted);
    assert_eq!(retry.attempts(), 4);
    assert_eq!(log.lock().unwrap().len(), 4);
    // No fifth attempt is ever made.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert!(futures_util::FutureExt::now_or_never(handle.next_request()).is_none());
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_stops_at_once() {
    for kind in [
        ConnectErrorKind::Unauthorized,
        ConnectErrorKind::Rejected,
        ConnectErrorKind::InvalidTarget,
    ] {
        let (layer, log) = retry_layer(10);
        let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer);
        tokio_test::assert_ready_ok!(service.poll_ready());
        let response = tokio::spawn(service.call("target"));
        let (_, send) = handle.next_request().await.unwrap();
        send.send_error(ConnectError::new(kind, "bad passphrase"));
        let error = response.await.unwrap().unwrap_err();
        let retry = error.downcast_ref::<RetryError>().unwrap();
        assert_eq!(retry.kind(), RetryErrorKind::NotRetryable);
        assert_eq!(retry.attempts(), 1);
        assert!(error.to_string().contains("bad passphrase"), "{error}");
        assert_eq!(log.lock().unwrap().len(), 1);
    }
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_stops_before_a_wait_that_would_pass_it() {
    let layer = BackoffRetryLayer::new(FixedBackoff::new(ms(400)))
        .max_retries(100)
        .max_elapsed(ms(1_000));
    let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer);
    let start = Instant::now();
    tokio_test::assert_ready_ok!(service.poll_ready());
    let response = tokio::spawn(service.call("target"));
    // Attempts at 0, 400, 800 ms; a wait to 1 200 ms would pass the limit.
    for _ in 0..3 {
        handle.next_request().await.unwrap().1.send_error(refused());
    }
    let error = response.await.unwrap().unwrap_err();
    let retry = error.downcast_ref::<RetryError>().unwrap();
    assert_eq!(retry.kind(), RetryErrorKind::ElapsedLimit);
    assert_eq!(retry.attempts(), 3);
    assert_eq!(start.elapsed(), ms(800));
}

#[tokio::test(start_paused = true)]
async fn custom_classifier_decides_what_is_retried() {
    let layer = BackoffRetryLayer::new(FixedBackoff::new(ms(10)))
        .retry_if(|e: &BoxError| !e.to_string().contains("fatal"));
    let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer);
    tokio_test::assert_ready_ok!(service.poll_ready());
    let response = tokio::spawn(service.call("x"));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_error(std::io::Error::other("transient"));
    handle
        .next_request()
        .await
        .unwrap()
        .1
        .send_error(std::io::Error::other("fatal"));
    let error = response.await.unwrap().unwrap_err();
    assert_eq!(error.downcast_ref::<RetryError>().unwrap().attempts(), 2);
}

#[tokio::test(start_paused = true)]
async fn oneshot_through_service_builder() {
    let service = tower::ServiceBuilder::new()
        .layer(BackoffRetryLayer::new(FixedBackoff::new(ms(5))))
        .service_fn(|n: u32| async move { Ok::<_, BoxError>(n * 2) });
    assert_eq!(service.oneshot(21).await.unwrap(), 42);
}

#[test]
fn clones_draw_their_own_jitter_unless_seeded() {
    // The retry layer clones its backoff for every stream and reconnection: copies of
    // one generator would make a whole fleet wait the same "random" delays.
    let template = ExponentialBackoff::new(ms(1_000), ms(30_000), 2.0).jitter(Jitter::Full);
    let a = take(&mut template.clone(), 8);
    let b = take(&mut template.clone(), 8);
    assert_ne!(a, b);
    let seeded = template.seed(3);
    assert_eq!(take(&mut seeded.clone(), 8), take(&mut seeded.clone(), 8));
}

#[tokio::test(start_paused = true)]
async fn streams_sharing_a_layer_do_not_retry_in_step() {
    let log: Log = Arc::default();
    let sink = Arc::clone(&log);
    let layer = BackoffRetryLayer::new(
        ExponentialBackoff::new(ms(1_000), ms(30_000), 2.0).jitter(Jitter::Full),
    )
    .max_retries(1)
    .on_attempt(move |a| sink.lock().unwrap().push((Instant::now(), a.clone())));
    let mut delays = Vec::new();
    for _ in 0..2 {
        let (mut service, mut handle) = mock::spawn_layer::<&str, u32, _>(layer.clone());
        tokio_test::assert_ready_ok!(service.poll_ready());
        let response = tokio::spawn(service.call("target"));
        handle.next_request().await.unwrap().1.send_error(refused());
        handle.next_request().await.unwrap().1.send_response(1);
        response.await.unwrap().unwrap();
        delays.push(log.lock().unwrap().last().unwrap().1.delay);
    }
    assert_ne!(
        delays[0], delays[1],
        "two streams drew the same jittered delay"
    );
}
