//! The stack composed with tower's own timeout, rate limit and concurrency limit.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_reconnect::backoff::error::{RetryError, RetryErrorKind};
use mirror_reconnect::backoff::{BackoffRetryLayer, FixedBackoff};
use mirror_reconnect::error::{ConnectError, ConnectErrorKind};
use mirror_reconnect::BoxError;
use tokio::time::Instant;
use tower::buffer::BufferLayer;
use tower::limit::{GlobalConcurrencyLimitLayer, RateLimitLayer};
use tower::timeout::{error::Elapsed, TimeoutLayer};
use tower::{service_fn, ServiceBuilder, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A connector that records when it is called and never answers.
fn hanging(
    calls: Arc<Mutex<Vec<Instant>>>,
) -> impl tower::Service<
    u32,
    Response = (),
    Error = BoxError,
    Future = std::future::Pending<Result<(), BoxError>>,
> + Clone {
    service_fn(move |_: u32| {
        calls.lock().unwrap().push(Instant::now());
        std::future::pending::<Result<(), BoxError>>()
    })
}

/// A connector that records when it is called and fails at once.
fn refusing(
    calls: Arc<Mutex<Vec<Instant>>>,
) -> impl tower::Service<
    u32,
    Response = (),
    Error = BoxError,
    Future = std::future::Ready<Result<(), BoxError>>,
> + Clone {
    service_fn(move |_: u32| {
        calls.lock().unwrap().push(Instant::now());
        std::future::ready(Err::<(), BoxError>(
            ConnectError::new(ConnectErrorKind::Unreachable, "refused").into(),
        ))
    })
}

fn offsets(calls: &Mutex<Vec<Instant>>, start: Instant) -> Vec<Duration> {
    calls
        .lock()
        .unwrap()
        .iter()
        .map(|t| t.duration_since(start))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn timeout_inside_retry_bounds_each_attempt() {
    let calls = Arc::default();
    let stack = ServiceBuilder::new()
        .layer(BackoffRetryLayer::new(FixedBackoff::new(ms(100))).max_retries(2))
        .layer(TimeoutLayer::new(ms(500)))
        .service(hanging(Arc::clone(&calls)));
    let start = Instant::now();
    let error = stack.oneshot(1).await.unwrap_err();

    // Three attempts, each cut at 500 ms, 100 ms apart.
    assert_eq!(offsets(&calls, start), [ms(0), ms(600), ms(1_200)]);
    assert_eq!(start.elapsed(), ms(1_700));
    let retry = error.downcast_ref::<RetryError>().unwrap();
    assert_eq!(retry.kind(), RetryErrorKind::Exhausted);
    assert!(
        retry.last_error().is::<Elapsed>(),
        "a timeout is retried, and is the last error"
    );
}

#[tokio::test(start_paused = true)]
async fn shared_rate_limit_caps_attempts_across_streams() {
    let calls = Arc::default();
    // One rate limit for every stream: 2 attempts per second, shared through a buffer.
    let shared = ServiceBuilder::new()
        .layer(BufferLayer::new(64))
        .layer(RateLimitLayer::new(2, Duration::from_secs(1)))
        .service(refusing(Arc::clone(&calls)));
    let start = Instant::now();
    let streams: Vec<_> = (0..3)
        .map(|i| {
            let stack = ServiceBuilder::new()
                .layer(BackoffRetryLayer::new(FixedBackoff::new(ms(10))).max_retries(1))
                .service(shared.clone());
            tokio::spawn(stack.oneshot(i))
        })
        .collect();
    for stream in streams {
        assert!(stream.await.unwrap().is_err());
    }
    // Six attempts (3 streams × 2), never more than 2 in any one-second window.
    let at = offsets(&calls, start);
    assert_eq!(at.len(), 6);
    for window in at.windows(3) {
        assert!(window[2] - window[0] >= Duration::from_secs(1), "{at:?}");
    }
    assert_eq!(at.last().copied(), Some(Duration::from_secs(2)));
}

#[tokio::test(start_paused = true)]
async fn global_concurrency_limit_serialises_connects_across_streams() {
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let limit = GlobalConcurrencyLimitLayer::new(1);
    let recorded = Arc::clone(&calls);
    let slow = service_fn(move |_: u32| {
        recorded.lock().unwrap().push(Instant::now());
        async {
            tokio::time::sleep(ms(300)).await;
            Ok::<_, BoxError>(())
        }
    });
    let start = Instant::now();
    let streams: Vec<_> = (0..3)
        .map(|i| {
            let stack = ServiceBuilder::new()
                .layer(BackoffRetryLayer::new(FixedBackoff::new(ms(10))))
                .layer(limit.clone())
                .service(slow.clone());
            tokio::spawn(stack.oneshot(i))
        })
        .collect();
    for stream in streams {
        stream.await.unwrap().unwrap();
    }
    assert_eq!(offsets(&calls, start), [ms(0), ms(300), ms(600)]);
}
