//! Probes while waiting out a backoff delay, and the ladder that does not reset on a
//! flapping link: the retry layer's logic on paused time, and the SRT caller's probe
//! against real listeners on loopback.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_reconnect::backoff::{
    Attempt, BackoffRetryLayer, ExponentialBackoff, FixedBackoff, Jitter, Probed,
};
use mirror_reconnect::connection::{Probe, ProbeFuture, ProbeOutcome, Protocol, Target};
use mirror_reconnect::error::{ConnectError, ConnectErrorKind};
use mirror_reconnect::protocol::srt::{srt_target, SrtConnector};
use mirror_reconnect::BoxError;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_test::mock;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn refused() -> BoxError {
    ConnectError::new(ConnectErrorKind::Unreachable, "refused").into()
}

type Log<T> = Arc<Mutex<Vec<(Instant, T)>>>;

/// When each entry of `log` was logged, from `start`.
fn times<T>(log: &Log<T>, start: Instant) -> Vec<Duration> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(t, _)| t.duration_since(start))
        .collect()
}

/// A probe of `&str` targets that answers once `up` is set.
fn probe_answering_when(up: &Arc<AtomicBool>) -> impl Probe<&'static str> {
    let up = Arc::clone(up);
    move |_: &&'static str| -> Option<ProbeFuture> {
        let up = up.load(Ordering::SeqCst);
        Some(Box::pin(async move {
            if up {
                ProbeOutcome::Answered
            } else {
                ProbeOutcome::NoAnswer
            }
        }))
    }
}

/// A 30 s fixed backoff (no jitter) that logs attempts and probes.
fn layer_30s() -> (BackoffRetryLayer<FixedBackoff>, Log<Attempt>, Log<Probed>) {
    let attempts: Log<Attempt> = Arc::default();
    let probes: Log<Probed> = Arc::default();
    let (a, p) = (Arc::clone(&attempts), Arc::clone(&probes));
    let layer = BackoffRetryLayer::new(FixedBackoff::new(Duration::from_secs(30)))
        .max_retries(10)
        .on_attempt(move |x| a.lock().unwrap().push((Instant::now(), x.clone())))
        .on_probe(move |x| p.lock().unwrap().push((Instant::now(), x.clone())));
    (layer, attempts, probes)
}

/// Start a connect through `layer` whose first attempt fails: the handle for the
/// attempts to come, the connect's outcome, and when it started.
async fn first_attempt_refused<L>(
    layer: L,
) -> (
    mock::Handle<&'static str, u32>,
    tokio::task::JoinHandle<Result<u32, BoxError>>,
    Instant,
)
where
    L: tower::Layer<mock::Mock<&'static str, u32>>,
    L::Service: tower::Service<&'static str, Response = u32, Error = BoxError> + Send + 'static,
    <L::Service as tower::Service<&'static str>>::Future: Send + 'static,
{
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, u32, _>(layer);
    let start = Instant::now();
    tokio_test::assert_ready_ok!(service.poll_ready());
    let response = tokio::spawn(service.call("cam1"));
    handle.next_request().await.unwrap().1.send_error(refused());
    (handle, response, start)
}

#[tokio::test(start_paused = true)]
async fn an_answered_probe_ends_the_wait_at_once() {
    let up = Arc::new(AtomicBool::new(false));
    let (layer, attempts, probes) = layer_30s();
    let layer = layer.probe(probe_answering_when(&up));
    let (mut handle, response, start) = first_attempt_refused(layer).await;

    // The server comes back 10 s into the 30 s wait.
    tokio::time::sleep(Duration::from_secs(10)).await;
    up.store(true, Ordering::SeqCst);
    let (_, send) = handle.next_request().await.unwrap();
    let back = start.elapsed();
    send.send_response(7);
    assert_eq!(response.await.unwrap().unwrap(), 7);

    // Probes come every 0.5 to 1 s: the first after the return is answered.
    assert!(
        back > Duration::from_secs(10) && back <= ms(11_000),
        "attempted {back:?} after the start, not within a probe interval of 10 s"
    );
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts.len(), 2, "probes are not attempts");
    assert_eq!(attempts[1].1.number, 2);
    let probes = probes.lock().unwrap();
    let (last_at, last) = probes.last().unwrap();
    assert_eq!(last.outcome, ProbeOutcome::Answered);
    assert_eq!(last_at.duration_since(start), back);
    assert!(probes[..probes.len() - 1]
        .iter()
        .all(|(_, p)| p.outcome == ProbeOutcome::NoAnswer));
    assert_eq!(probes[0].1.number, 1);
    assert_eq!(last.attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn unanswered_probes_keep_to_their_cadence_and_to_the_wait() {
    let up = Arc::new(AtomicBool::new(false));
    let (layer, attempts, probes) = layer_30s();
    let layer = layer
        .probe(probe_answering_when(&up))
        .probe_first_after(None);
    let (mut handle, response, start) = first_attempt_refused(layer).await;
    // The wait is waited out in full: the attempt is due at 30 s, not before.
    let (_, send) = handle.next_request().await.unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    send.send_response(1);
    response.await.unwrap().unwrap();

    let probes = probes.lock().unwrap();
    let at: Vec<Duration> = probes
        .iter()
        .map(|(t, _)| t.duration_since(start))
        .collect();
    // One probe every 0.5 to 1 s, none at or past the attempt that ends the wait.
    assert!(
        (29..=60).contains(&at.len()),
        "{} probes in 30 s: {at:?}",
        at.len()
    );
    assert!(at[0] >= ms(500) && at[0] <= ms(1_000), "{at:?}");
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap >= ms(500) && gap <= ms(1_000), "gap {gap:?} in {at:?}");
    }
    assert!(*at.last().unwrap() < Duration::from_secs(30));
    let numbers: Vec<u32> = probes.iter().map(|(_, p)| p.number).collect();
    assert_eq!(numbers, (1..=probes.len() as u32).collect::<Vec<_>>());
    assert_eq!(attempts.lock().unwrap().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_target_with_nothing_to_probe_waits_as_without_a_probe() {
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&asked);
    let nothing = move |_: &&'static str| -> Option<ProbeFuture> {
        counter.fetch_add(1, Ordering::SeqCst);
        None
    };
    let (layer, attempts, probes) = layer_30s();
    let layer = layer.probe(nothing);
    let (mut handle, response, start) = first_attempt_refused(layer).await;
    handle.next_request().await.unwrap().1.send_response(1);
    response.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(attempts.lock().unwrap().len(), 2);
    assert!(probes.lock().unwrap().is_empty());
    // Asked once for the wait, then left alone.
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn a_probe_of_another_target_type_is_never_asked() {
    let up = Arc::new(AtomicBool::new(true));
    let (layer, _, probes) = layer_30s();
    // A probe of `Target`s on a service of `&str` targets.
    let flag = Arc::clone(&up);
    let layer = layer.probe(move |_: &Target| -> Option<ProbeFuture> {
        flag.store(false, Ordering::SeqCst);
        None
    });
    let (mut handle, response, start) = first_attempt_refused(layer).await;
    handle.next_request().await.unwrap().1.send_response(1);
    response.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert!(probes.lock().unwrap().is_empty());
    assert!(up.load(Ordering::SeqCst), "the probe was called");
}

#[tokio::test(start_paused = true)]
async fn past_probe_first_after_only_an_answered_probe_starts_an_attempt() {
    let up = Arc::new(AtomicBool::new(false));
    let (layer, attempts, probes) = layer_30s();
    // The default: attempts only on an answered probe once failing for 5 s.
    let layer = layer.probe(probe_answering_when(&up));
    let (mut handle, response, start) = first_attempt_refused(layer).await;

    // The 30 s delay ends with nothing answering: no attempt, probes go on.
    tokio::time::sleep(Duration::from_secs(45)).await;
    assert_eq!(attempts.lock().unwrap().len(), 1, "attempted a dead server");
    up.store(true, Ordering::SeqCst);
    let (_, send) = handle.next_request().await.unwrap();
    let back = start.elapsed();
    send.send_response(3);
    assert_eq!(response.await.unwrap().unwrap(), 3);
    assert!(
        back > Duration::from_secs(45) && back <= Duration::from_secs(46),
        "attempted {back:?} after the start, not within a probe interval of 45 s"
    );
    let attempts = attempts.lock().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[1].1.delay, Duration::from_secs(30));
    // Past the delay the probes keep their cadence: every 0.5 to 1 s, through its end.
    let at = times(&probes, start);
    assert!(
        at.iter()
            .any(|t| *t >= Duration::from_secs(30) && *t <= Duration::from_secs(31)),
        "{at:?}"
    );
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(gap <= ms(1_000), "gap {gap:?} in {at:?}");
    }
    assert!(at.iter().filter(|t| **t > Duration::from_secs(30)).count() >= 15);
}

#[tokio::test(start_paused = true)]
async fn a_probe_slow_to_go_unanswered_does_not_stretch_the_cadence() {
    // Each probe takes 500 ms to give up (the SRT probe's own timeout).
    let sent: Log<()> = Arc::default();
    let log = Arc::clone(&sent);
    let slow = move |_: &&'static str| -> Option<ProbeFuture> {
        log.lock().unwrap().push((Instant::now(), ()));
        Some(Box::pin(async {
            tokio::time::sleep(ms(500)).await;
            ProbeOutcome::NoAnswer
        }))
    };
    let (layer, _, _) = layer_30s();
    let (_handle, _response, start) = first_attempt_refused(layer.probe(slow)).await;
    tokio::time::sleep(Duration::from_secs(60)).await;
    let at = times(&sent, start);
    assert!(at.len() >= 59, "{} probes sent in 60 s: {at:?}", at.len());
    for pair in at.windows(2) {
        let gap = pair[1] - pair[0];
        assert!(
            gap >= ms(500) && gap <= ms(1_000),
            "probes sent {gap:?} apart: {at:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn before_probe_first_after_every_delay_ends_in_an_attempt() {
    let attempts: Log<Attempt> = Arc::default();
    let a = Arc::clone(&attempts);
    let layer = BackoffRetryLayer::new(FixedBackoff::new(Duration::from_secs(1)))
        .max_retries(100)
        .probe(probe_answering_when(&Arc::new(AtomicBool::new(false))))
        .probe_first_after(Some(Duration::from_secs(3)))
        .on_attempt(move |x| a.lock().unwrap().push((Instant::now(), x.clone())));
    let (mut handle, _response, start) = first_attempt_refused(layer).await;
    // Attempts at 1 s and 2 s (their delays end before 3 s of failing); the delay
    // ending at 3 s waits for an answered probe, which never comes.
    for _ in 0..2 {
        handle.next_request().await.unwrap().1.send_error(refused());
    }
    tokio::time::sleep(Duration::from_secs(60)).await;
    let at = times(&attempts, start);
    assert_eq!(
        at,
        [ms(0), ms(1_000), ms(2_000)],
        "attempts while the probes go unanswered"
    );
}

#[tokio::test(start_paused = true)]
async fn a_server_that_answers_probes_but_refuses_is_retried_on_the_ladder() {
    let (layer, attempts, _) = layer_30s();
    let layer = layer
        .max_retries(3)
        .probe(probe_answering_when(&Arc::new(AtomicBool::new(true))));
    let (mut handle, response, start) = first_attempt_refused(layer).await;
    for _ in 0..3 {
        handle.next_request().await.unwrap().1.send_error(refused());
    }
    let error = response.await.unwrap().unwrap_err();
    let error = error
        .downcast_ref::<mirror_reconnect::backoff::error::RetryError>()
        .unwrap();
    assert_eq!(
        error.kind(),
        mirror_reconnect::backoff::error::RetryErrorKind::Exhausted
    );
    let at = times(&attempts, start);
    assert_eq!(at.len(), 4, "{at:?}");
    // The first probe (0.5 to 1 s in) starts attempt 2; it is refused all the same,
    // so the next delays are waited out in full (each then checked by one probe).
    assert!(at[1] >= ms(500) && at[1] <= ms(1_000), "{at:?}");
    assert_eq!(at[2] - at[1], Duration::from_secs(30), "{at:?}");
    assert_eq!(at[3] - at[2], Duration::from_secs(30), "{at:?}");
}

#[tokio::test(start_paused = true)]
async fn max_elapsed_ends_a_connect_whose_probes_go_unanswered() {
    let (layer, attempts, _) = layer_30s();
    let layer = layer
        .max_elapsed(Duration::from_secs(50))
        .probe(probe_answering_when(&Arc::new(AtomicBool::new(false))));
    let (_handle, response, start) = first_attempt_refused(layer).await;
    let error = response.await.unwrap().unwrap_err();
    let ended = start.elapsed();
    let error = error
        .downcast_ref::<mirror_reconnect::backoff::error::RetryError>()
        .unwrap();
    assert_eq!(
        error.kind(),
        mirror_reconnect::backoff::error::RetryErrorKind::ElapsedLimit
    );
    assert!(
        error.last_error().to_string().contains("refused"),
        "{error}"
    );
    assert!(
        ended >= Duration::from_secs(50) && ended <= Duration::from_secs(51),
        "gave up {ended:?} in"
    );
    assert_eq!(attempts.lock().unwrap().len(), 1);
}

/// An exponential ladder 100 ms, 200 ms, 400 ms … (no jitter), resetting only after a
/// connection that stayed up 10 s; logs attempts and resets.
fn ladder() -> (
    BackoffRetryLayer<ExponentialBackoff>,
    Log<Attempt>,
    Log<Duration>,
) {
    let attempts: Log<Attempt> = Arc::default();
    let resets: Log<Duration> = Arc::default();
    let (a, r) = (Arc::clone(&attempts), Arc::clone(&resets));
    let layer = BackoffRetryLayer::new(
        ExponentialBackoff::new(ms(100), Duration::from_secs(30), 2.0).jitter(Jitter::None),
    )
    .max_retries(20)
    .stable_after(Duration::from_secs(10))
    .on_attempt(move |x| a.lock().unwrap().push((Instant::now(), x.clone())))
    .on_backoff_reset(move |up_for| r.lock().unwrap().push((Instant::now(), up_for)));
    (layer, attempts, resets)
}

/// The delay before each attempt logged.
fn delays(attempts: &Log<Attempt>) -> Vec<Duration> {
    attempts
        .lock()
        .unwrap()
        .iter()
        .map(|(_, a)| a.delay)
        .collect()
}

/// One connect through `$service`: `$failures` failed attempts, then a success.
macro_rules! connect {
    ($service:expr, $handle:expr, $failures:expr) => {{
        tokio_test::assert_ready_ok!($service.poll_ready());
        let response = tokio::spawn($service.call("cam1"));
        let failures: usize = $failures;
        for _ in 0..failures {
            $handle
                .next_request()
                .await
                .unwrap()
                .1
                .send_error(refused());
        }
        $handle.next_request().await.unwrap().1.send_response(1);
        response.await.unwrap().unwrap();
    }};
}

#[tokio::test(start_paused = true)]
async fn a_short_lived_connection_does_not_reset_the_backoff() {
    let (layer, attempts, resets) = ladder();
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, u32, _>(layer);
    // First connect: two failures (100, 200 ms), then up.
    connect!(service, handle, 2);
    // Up for 2 s only: the next connect's delays carry on (400, 800 ms).
    tokio::time::sleep(Duration::from_secs(2)).await;
    connect!(service, handle, 2);
    // Up for 15 s: afresh (100 ms), and said once.
    tokio::time::sleep(Duration::from_secs(15)).await;
    connect!(service, handle, 1);

    let delays = delays(&attempts);
    assert_eq!(
        delays,
        [
            ms(0),
            ms(100),
            ms(200),
            ms(0),
            ms(400),
            ms(800),
            ms(0),
            ms(100)
        ],
        "the first attempt of each connect is at once; the delays climb on a short-lived link"
    );
    let resets = resets.lock().unwrap();
    assert_eq!(resets.len(), 1, "{resets:?}");
    assert!(resets[0].1 >= Duration::from_secs(15), "{resets:?}");
}

#[tokio::test(start_paused = true)]
async fn a_first_attempt_success_on_a_flapping_link_keeps_the_ladder_where_it_stood() {
    let (layer, attempts, _) = ladder();
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, u32, _>(layer);
    // Up at once (nothing drawn from the ladder), up for 2 s only.
    connect!(service, handle, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Two failures (100, 200 ms), up for 2 s only.
    connect!(service, handle, 2);
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Up at the first attempt: the ladder stays where the last connect left it.
    connect!(service, handle, 0);
    tokio::time::sleep(Duration::from_secs(2)).await;
    connect!(service, handle, 1);

    let delays = delays(&attempts);
    assert_eq!(
        delays,
        [ms(0), ms(0), ms(100), ms(200), ms(0), ms(0), ms(400)],
        "a connect that drew no delay neither resets the ladder nor forgets it"
    );
}

#[tokio::test(start_paused = true)]
async fn without_stable_after_every_connect_starts_afresh() {
    let attempts: Log<Attempt> = Arc::default();
    let a = Arc::clone(&attempts);
    let layer = BackoffRetryLayer::new(
        ExponentialBackoff::new(ms(100), Duration::from_secs(30), 2.0).jitter(Jitter::None),
    )
    .on_attempt(move |x| a.lock().unwrap().push((Instant::now(), x.clone())));
    let (mut service, mut handle) = mock::spawn_layer::<&'static str, u32, _>(layer);
    for _ in 0..2 {
        tokio_test::assert_ready_ok!(service.poll_ready());
        let response = tokio::spawn(service.call("cam1"));
        handle.next_request().await.unwrap().1.send_error(refused());
        handle.next_request().await.unwrap().1.send_response(1);
        response.await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let delays = delays(&attempts);
    assert_eq!(delays, [ms(0), ms(100), ms(0), ms(100)]);
}

// ---- The SRT caller's probe, on loopback ----

fn caller_target(port: u16) -> Target {
    srt_target(&format!("srt://127.0.0.1:{port}?mode=caller")).expect("a valid URL")
}

#[tokio::test]
async fn the_srt_probe_is_answered_by_a_listener() {
    let connector = SrtConnector::new();
    let bound = connector
        .listen("127.0.0.1:0".parse().unwrap())
        .await
        .expect("listen");
    let probe = connector.probe();
    let outcome = probe
        .probe(&caller_target(bound.port()))
        .expect("a caller target is probed")
        .await;
    assert_eq!(outcome, ProbeOutcome::Answered);
}

#[tokio::test]
async fn the_srt_probe_of_a_closed_port_is_not_answered_and_ends_early() {
    let port = support::ports::free_udp_port();
    let probe = SrtConnector::new()
        .probe_timeout(Duration::from_secs(5))
        .probe();
    let started = std::time::Instant::now();
    let outcome = probe.probe(&caller_target(port)).unwrap().await;
    assert_eq!(outcome, ProbeOutcome::NoAnswer);
    // The port's ICMP error ends the wait (a generous bound, far under the timeout).
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn listener_and_non_srt_targets_have_nothing_to_probe() {
    let probe = SrtConnector::new().probe();
    let listener = srt_target("srt://127.0.0.1:9000?mode=listener").unwrap();
    assert!(probe.probe(&listener).is_none());
    let rendezvous = srt_target("srt://127.0.0.1:9000?mode=rendezvous").unwrap();
    assert!(probe.probe(&rendezvous).is_none());
    assert!(probe.probe(&Target::new("cam1", Protocol::Rtp)).is_none());
}

/// A UDP socket holding a port and counting what arrives: a server that is down, as
/// the network sees it when nothing answers (no ICMP error either).
struct Sink {
    port: u16,
    count: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = socket.local_addr().unwrap().port();
        let count = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&count);
        let task = tokio::spawn(async move {
            let mut buf = [0u8; 2048];
            while socket.recv_from(&mut buf).await.is_ok() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        });
        Self { port, count, task }
    }

    fn count(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test]
async fn a_failed_caller_attempt_sends_two_datagrams_when_it_probes_first() {
    let sink = Sink::start().await;
    let connector = SrtConnector::new()
        .connect_timeout(Duration::from_secs(1))
        .probe_timeout(ms(300))
        .probe_before_connect(true);
    let error = connector
        .clone()
        .oneshot(caller_target(sink.port))
        .await
        .expect_err("nothing answers");
    let kind = error.downcast_ref::<ConnectError>().map(ConnectError::kind);
    assert_eq!(kind, Some(ConnectErrorKind::TimedOut), "{error}");
    assert!(error.to_string().contains("no answer"), "{error}");
    tokio::time::sleep(ms(100)).await;
    assert_eq!(sink.count(), 2, "two probes, no handshake");

    // Without the probe first, the handshake is resent every 100 ms until the connect
    // timeout: the figure the docs give.
    let sink = Sink::start().await;
    let _ = connector
        .probe_before_connect(false)
        .oneshot(caller_target(sink.port))
        .await
        .expect_err("nothing answers");
    tokio::time::sleep(ms(100)).await;
    let sent = sink.count();
    eprintln!("a 1 s handshake to a silent server sent {sent} datagrams");
    assert!(sent >= 8, "{sent}");
}

#[tokio::test]
async fn srt_live_transmit_answers_the_probe() {
    assert!(
        support::srt::have("srt-live-transmit"),
        "srt-live-transmit is missing: apt-get install srt-tools (scripts/test.sh does)"
    );
    let port = support::srt::free_udp_port();
    let out = support::srt::free_udp_port();
    let child = std::process::Command::new("srt-live-transmit")
        .arg(format!("srt://:{port}?mode=listener"))
        .arg(format!("udp://127.0.0.1:{out}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("srt-live-transmit starts");
    let _peer = support::process::ChildGuard::new("srt-live-transmit", child);
    let probe = SrtConnector::new().probe();
    let target = caller_target(port);
    // srt-live-transmit takes a moment to bind.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let outcome = probe.probe(&target).unwrap().await;
        if outcome == ProbeOutcome::Answered {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "srt-live-transmit never answered the probe"
        );
        tokio::time::sleep(ms(100)).await;
    }
}
