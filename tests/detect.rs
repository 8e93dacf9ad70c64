//! Failure detection: every reason trips at its threshold and not below it; silence
//! is caught within a few packet gaps and never raised on a bursty, lossy stream.

use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{
    channel, ChannelConnection, ChannelSender, ConnectionError, ConnectionState, Packet, Protocol,
    Sequence,
};
use mirror_reconnect::detect::{
    Detected, FailureDetectLayer, FailureEvent, FailureReason, FailureThresholds, SilenceConfig,
};
use mirror_reconnect::health::{HealthLayer, Monitored};
use tokio::time::Instant;
use tower::{service_fn, ServiceBuilder, ServiceExt};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Thresholds that judge only what a test looks at.
fn quiet() -> FailureThresholds {
    FailureThresholds {
        max_packet_loss: 1.0,
        max_latency: Duration::from_secs(3_600),
        max_error_rate: 1.0,
        timeout_duration: Duration::from_secs(3_600),
        min_packet_rate: 0.0,
        min_samples: 20,
    }
}

fn no_silence() -> SilenceConfig {
    SilenceConfig {
        enabled: false,
        ..SilenceConfig::default()
    }
}

async fn watched(
    thresholds: FailureThresholds,
    silence: SilenceConfig,
) -> (ChannelSender, Detected<Monitored<ChannelConnection>>) {
    let (tx, conn) = channel(ConnectionState::new("cam1", Protocol::InProcess), 100_000);
    let mut conn = Some(conn);
    let stack = ServiceBuilder::new()
        .layer(
            FailureDetectLayer::new(thresholds)
                .check_interval(Duration::from_secs(1))
                .silence(silence),
        )
        .layer(HealthLayer::new())
        .service(service_fn(move |_: ()| {
            let conn = conn.take().expect("one connection");
            async move { Ok::<_, std::io::Error>(conn) }
        }));
    (tx, stack.oneshot(()).await.unwrap())
}

/// Drive `conn` until it fails or `until` passes; the failure and when it came.
async fn watch(
    conn: &mut Detected<Monitored<ChannelConnection>>,
    until: Instant,
) -> Option<(Instant, FailureEvent)> {
    loop {
        tokio::select! {
            item = conn.next() => match item {
                Some(Ok(_)) | Some(Err(ConnectionError::Packet(_))) => {}
                // Silence is reported as a suspicion first: that is its detection.
                Some(Err(ConnectionError::Failed(event) | ConnectionError::Suspected(event))) => {
                    return Some((Instant::now(), event))
                }
                other => panic!("unexpected item {other:?}"),
            },
            _ = tokio::time::sleep_until(until) => return None,
        }
    }
}

fn packet(seq: u16) -> Packet {
    Packet::new(vec![0u8; 188], Instant::now()).with_sequence(Sequence::rtp(seq))
}

/// Send `seqs` one every `gap`, starting now.
fn send_seqs(
    tx: ChannelSender,
    seqs: Vec<u16>,
    gap: Duration,
) -> tokio::task::JoinHandle<ChannelSender> {
    tokio::spawn(async move {
        for (i, seq) in seqs.into_iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(gap).await;
            }
            if tx.send(packet(seq)).await.is_err() {
                break; // the connection failed and was dropped
            }
        }
        tx
    })
}

async fn loss_case(missing: usize) -> Option<FailureEvent> {
    let t = FailureThresholds {
        max_packet_loss: 0.05,
        ..quiet()
    };
    let (tx, mut conn) = watched(t, no_silence()).await;
    // 100 numbered packets in the first second, `missing` of them never sent.
    let seqs: Vec<u16> = (0..100u16)
        .filter(|s| !(1..=missing as u16).map(|k| k * 10).any(|m| m == *s))
        .collect();
    let start = Instant::now();
    let _tx = send_seqs(tx, seqs, ms(9));
    watch(&mut conn, start + ms(1_500)).await.map(|(_, e)| e)
}

#[tokio::test(start_paused = true)]
async fn packet_loss_trips_at_its_threshold_and_not_below() {
    let event = loss_case(5).await.expect("5 % loss trips");
    assert_eq!(event.reason, FailureReason::PacketLoss);
    assert_eq!(event.value, Some(0.05));
    assert_eq!(event.threshold, Some(0.05));
    assert!(loss_case(4).await.is_none(), "4 % loss does not trip");
}

async fn latency_case(rtt: Duration) -> Option<(Instant, FailureEvent)> {
    let t = FailureThresholds {
        max_latency: Duration::from_secs(1),
        ..quiet()
    };
    let (tx, mut conn) = watched(t, no_silence()).await;
    tx.set_rtt(rtt);
    let start = Instant::now();
    let _tx = send_seqs(tx, (0..200).collect(), ms(10));
    watch(&mut conn, start + ms(1_500)).await
}

#[tokio::test(start_paused = true)]
async fn high_latency_trips_at_its_threshold_and_not_below() {
    let start = Instant::now();
    let (at, event) = latency_case(Duration::from_secs(1))
        .await
        .expect("1 s RTT trips");
    assert_eq!(event.reason, FailureReason::HighLatency);
    assert_eq!(
        at - start,
        Duration::from_secs(1),
        "judged at the first check"
    );
    assert!(latency_case(ms(999)).await.is_none());
}

async fn error_case(errors: u32) -> Option<FailureEvent> {
    let t = FailureThresholds {
        max_error_rate: 0.1,
        ..quiet()
    };
    let (tx, mut conn) = watched(t, no_silence()).await;
    let start = Instant::now();
    let _tx = tokio::spawn(async move {
        for i in 0..100u32 {
            if i > 0 {
                tokio::time::sleep(ms(9)).await;
            }
            if i % 10 == 5 && i / 10 < errors {
                let bad = std::io::Error::other("not RTP");
                let _ = tx.send_error(ConnectionError::Packet(bad.into())).await;
            } else if tx.send(packet(i as u16)).await.is_err() {
                break;
            }
        }
        tx
    });
    watch(&mut conn, start + ms(1_500)).await.map(|(_, e)| e)
}

#[tokio::test(start_paused = true)]
async fn error_rate_trips_at_its_threshold_and_not_below() {
    let event = error_case(10).await.expect("10 % bad packets trips");
    assert_eq!(event.reason, FailureReason::HighErrorRate);
    assert_eq!(event.value, Some(0.1));
    assert!(error_case(9).await.is_none());
}

async fn rate_case(packets: u16) -> Option<FailureEvent> {
    let t = FailureThresholds {
        min_packet_rate: 10.0,
        ..quiet()
    };
    let (tx, mut conn) = watched(t, no_silence()).await;
    let start = Instant::now();
    let _tx = send_seqs(tx, (0..packets).collect(), ms(90));
    watch(&mut conn, start + ms(1_500)).await.map(|(_, e)| e)
}

#[tokio::test(start_paused = true)]
async fn low_packet_rate_trips_at_its_threshold_and_not_above() {
    let event = rate_case(10)
        .await
        .expect("10 packets/s trips a 10 packets/s minimum");
    assert_eq!(event.reason, FailureReason::LowPacketRate);
    assert_eq!(event.value, Some(10.0));
    assert!(rate_case(11).await.is_none());
}

#[tokio::test(start_paused = true)]
async fn low_packet_rate_is_checked_by_default() {
    let (tx, mut conn) = watched(FailureThresholds::default(), no_silence()).await;
    let start = Instant::now();
    let tx = send_seqs(tx, vec![0], ms(0)).await.unwrap();
    let (at, event) = watch(&mut conn, start + ms(5_000))
        .await
        .expect("one packet then nothing");
    assert_eq!(event.reason, FailureReason::LowPacketRate);
    // The first window holds the packet (1/s); the second holds none.
    assert_eq!(at - start, Duration::from_secs(2));
    drop(tx);
}

#[tokio::test(start_paused = true)]
async fn timeout_trips_exactly_at_timeout_duration() {
    let t = FailureThresholds {
        timeout_duration: ms(2_000),
        ..quiet()
    };
    let (tx, mut conn) = watched(t, no_silence()).await;
    let start = Instant::now();
    let _tx = send_seqs(tx, (0..50).collect(), ms(10));
    let (at, event) = watch(&mut conn, start + ms(10_000)).await.expect("timeout");
    assert_eq!(event.reason, FailureReason::Timeout);
    // Last packet at 490 ms.
    assert_eq!(at - start, ms(490 + 2_000));
}

#[tokio::test(start_paused = true)]
async fn a_fatal_error_is_a_network_error_failure() {
    let (tx, mut conn) = watched(quiet(), no_silence()).await;
    tx.send(packet(0)).await.unwrap();
    let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
    tx.send_error(ConnectionError::Network(reset.into()))
        .await
        .unwrap();
    let (_, event) = watch(&mut conn, Instant::now() + ms(100)).await.unwrap();
    assert_eq!(event.reason, FailureReason::NetworkError);
    assert!(event.details.contains("reset by peer"));
    assert!(
        conn.next().await.is_none(),
        "the stream ends after the failure"
    );
}

/// A source at `rate` packets/s with ±20 % jitter and `loss` random loss, for `run`,
/// then silent. Returns when the last packet was sent.
fn smooth_source(
    tx: ChannelSender,
    rate: f64,
    loss: f64,
    run: Duration,
    seed: u64,
) -> tokio::task::JoinHandle<(Instant, ChannelSender)> {
    tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(seed);
        let gap = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        let mut next = start;
        let mut last = start;
        let mut seq = 0u16;
        while next - start < run {
            // ±20 % of a gap around the nominal time.
            tokio::time::sleep_until(next + gap.mul_f64(0.4 * rng.f64()) - gap.mul_f64(0.2)).await;
            if rng.f64() >= loss {
                tx.send(packet(seq)).await.unwrap();
                last = Instant::now();
            }
            seq = seq.wrapping_add(1);
            next += gap;
        }
        (last, tx)
    })
}

#[tokio::test(start_paused = true)]
async fn silence_is_detected_within_ten_gaps() {
    for (rate, seed) in [(30.0, 1), (100.0, 2), (300.0, 3)] {
        let t = FailureThresholds {
            max_packet_loss: 1.0,
            ..FailureThresholds::default()
        };
        let (tx, mut conn) = watched(t, SilenceConfig::default()).await;
        let source = smooth_source(tx, rate, 0.05, Duration::from_secs(60), seed);
        let (at, event) = watch(&mut conn, Instant::now() + Duration::from_secs(120))
            .await
            .expect("silence");
        let (last, _tx) = source.await.unwrap();
        let gap = Duration::from_secs_f64(1.0 / rate);
        // Judged against when the alarm came, not when the source finished: an alarm
        // before the last packet is a false alarm, never a fast detection.
        let latency = at.checked_duration_since(last).unwrap_or_else(|| {
            panic!(
                "{rate}/s: false alarm {:?} before the last packet: {}",
                last - at,
                event.details
            )
        });
        println!(
            "{rate} packets/s: silence detected after {latency:?} = {:.1} gaps",
            latency.as_secs_f64() / gap.as_secs_f64()
        );
        assert_eq!(event.reason, FailureReason::Timeout, "{}", event.details);
        assert!(event.details.contains("silence"), "{}", event.details);
        assert!(latency <= gap * 10, "{rate}/s: {latency:?} > 10 gaps");
    }
}

#[tokio::test(start_paused = true)]
async fn no_false_alarm_on_an_hour_of_bursty_lossy_vbr() {
    // 30 frames/s, frames of 3–12 packets and a 40-packet keyframe every 2 s, frame
    // times jittered by ±3 ms, 5 % of packets lost at random; a packet-loss limit above
    // that, so only the silence detector is on trial.
    let t = FailureThresholds {
        max_packet_loss: 0.5,
        ..FailureThresholds::default()
    };
    let (tx, mut conn) = watched(t, SilenceConfig::default()).await;
    let hour = Duration::from_secs(3_600);
    let source = tokio::spawn(async move {
        let mut rng = fastrand::Rng::with_seed(42);
        let start = Instant::now();
        let frame = Duration::from_secs_f64(1.0 / 30.0);
        let (mut seq, mut n, mut last) = (0u16, 0u32, start);
        while frame * n < hour {
            let jitter = Duration::from_micros(rng.u64(0..6_000));
            tokio::time::sleep_until(start + frame * n + jitter).await;
            let size = if n % 60 == 0 { 40 } else { rng.u32(3..=12) };
            for _ in 0..size {
                if rng.f64() >= 0.05 {
                    tx.send(packet(seq)).await.unwrap();
                    last = Instant::now();
                }
                seq = seq.wrapping_add(1);
            }
            n += 1;
        }
        (last, tx)
    });
    let (at, event) = watch(&mut conn, Instant::now() + hour * 2)
        .await
        .expect("the end of the stream is detected");
    let (last, _tx) = source.await.unwrap();
    assert!(
        at > last,
        "false alarm at {:?}: {}",
        at.elapsed(),
        event.details
    );
    let latency = at - last;
    println!(
        "bursty VBR: silence detected {latency:?} after the last packet ({})",
        event.details
    );
    assert_eq!(event.reason, FailureReason::Timeout);
    assert!(latency <= ms(500), "{latency:?}");
}

#[tokio::test(start_paused = true)]
async fn a_few_lost_packets_early_on_are_not_silence() {
    // A new connection has seen few gaps; three lost packets in a row at 30 packets/s
    // (a 133 ms gap) must not look like silence while the rhythm is being learned.
    let t = FailureThresholds {
        max_packet_loss: 1.0,
        ..FailureThresholds::default()
    };
    let (tx, mut conn) = watched(t, SilenceConfig::default()).await;
    let seqs: Vec<u16> = (0..60).filter(|s| !(20..23).contains(s)).collect();
    let start = Instant::now();
    let gap = Duration::from_micros(33_333);
    let _tx = tokio::spawn(async move {
        for seq in seqs {
            tokio::time::sleep_until(start + gap * u32::from(seq)).await;
            if tx.send(packet(seq)).await.is_err() {
                break;
            }
        }
        tx
    });
    let alarm = watch(&mut conn, start + gap * 59).await;
    assert!(alarm.is_none(), "false alarm: {alarm:?}");
}

#[tokio::test(start_paused = true)]
async fn frames_sent_as_bursts_from_a_keyframe_on_are_not_silence() {
    // What an encoder sends: 30 frames/s, each frame's packets back to back (50 µs
    // apart), the stream starting with a 40-packet keyframe and one every 2 s. Inside
    // a burst the gaps are tiny; the rhythm that matters is the frames'.
    let t = FailureThresholds {
        max_packet_loss: 1.0,
        ..FailureThresholds::default()
    };
    for seed in 0..20u64 {
        let (tx, mut conn) = watched(t, SilenceConfig::default()).await;
        let start = Instant::now();
        let run = Duration::from_secs(10);
        let _tx = tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(seed);
            let frame = Duration::from_secs_f64(1.0 / 30.0);
            let (mut seq, mut n) = (0u16, 0u32);
            while frame * n < run {
                let mut at = start + frame * n;
                let size = if n % 60 == 0 { 40 } else { rng.u32(3..=12) };
                // Timers tick in milliseconds: the burst is sent at the frame's time,
                // each packet stamped with its own arrival 50 µs after the last.
                tokio::time::sleep_until(at).await;
                for _ in 0..size {
                    let packet = Packet::new(vec![0u8; 188], at).with_sequence(Sequence::rtp(seq));
                    if tx.send(packet).await.is_err() {
                        return tx;
                    }
                    seq = seq.wrapping_add(1);
                    at += Duration::from_micros(50);
                }
                n += 1;
            }
            tx
        });
        let alarm = watch(&mut conn, start + run).await;
        assert!(alarm.is_none(), "seed {seed}: false alarm: {alarm:?}");
    }
}

#[tokio::test(start_paused = true)]
async fn silence_is_a_suspicion_that_a_packet_clears_and_a_lasting_silence_ends() {
    let t = FailureThresholds {
        timeout_duration: Duration::from_secs(5),
        ..quiet()
    };
    let (tx, mut conn) = watched(t, SilenceConfig::default()).await;
    // A steady 100 packets/s for 2 s, then a 1 s stall, then 1 s more, then silence.
    let sender = tokio::spawn(async move {
        for i in 0..200u16 {
            tx.send(packet(i)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        for i in 200..300u16 {
            tx.send(packet(i)).await.unwrap();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tx
    });
    let mut items = Vec::new();
    let ended_at = loop {
        let next = tokio::time::timeout(Duration::from_secs(60), conn.next()).await;
        let Ok(next) = next else {
            panic!("stuck after {items:?}")
        };
        match next {
            Some(Ok(p)) => items.push(format!("packet {}", p.sequence.unwrap().value())),
            Some(Err(ConnectionError::Suspected(e))) => {
                items.push(format!("suspected: {}", e.details));
            }
            Some(Err(ConnectionError::Failed(e))) => {
                items.push(format!("failed: {}", e.details));
                break Instant::now();
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    let _tx = sender.await.unwrap();
    let suspicions: Vec<usize> = items
        .iter()
        .enumerate()
        .filter(|(_, s)| s.starts_with("suspected"))
        .map(|(i, _)| i)
        .collect();
    // Once in the stall (the packets after it still delivered), once in the silence.
    assert_eq!(suspicions.len(), 2, "{items:?}");
    assert_eq!(
        items[suspicions[0] + 1],
        "packet 200",
        "delivered after the stall"
    );
    assert_eq!(
        items.iter().filter(|s| s.starts_with("packet")).count(),
        300
    );
    assert!(items.last().unwrap().starts_with("failed"), "{items:?}");
    // The lasting silence ends the connection at the hard timeout after the last packet.
    assert!(conn.next().await.is_none());
    println!("ended {:?} after the start", ended_at.elapsed());
}
