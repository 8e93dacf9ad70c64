//! The network simulator on real loopback sockets.
#![cfg(feature = "network-simulation")]

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use mirror_reconnect::sim::{
    Direction, GilbertElliott, Impairments, NetworkSimulator, Outage, SimulatorStats,
};
use tokio::net::UdpSocket;
use tokio::time::{sleep, timeout, Instant};

const QUIET: Duration = Duration::from_millis(300);

async fn socket() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.expect("bind loopback")
}

/// Sends `count` numbered datagrams, pausing now and then so no socket buffer overflows.
async fn send_numbered(client: &UdpSocket, to: SocketAddr, count: u32) {
    for seq in 0..count {
        let mut datagram = [0u8; 64];
        datagram[..4].copy_from_slice(&seq.to_be_bytes());
        client.send_to(&datagram, to).await.expect("send");
        if seq % 50 == 49 {
            sleep(Duration::from_millis(2)).await;
        }
    }
}

/// Receives numbered datagrams until none came for a while.
async fn receive_numbered(sink: &UdpSocket) -> Vec<u32> {
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while let Ok(Ok(n)) = timeout(QUIET, sink.recv(&mut buf)).await {
        assert!(n >= 4, "short datagram");
        got.push(u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]));
    }
    got
}

/// Waits until the simulator has handled `count` packets towards upstream.
async fn settle(sim: &NetworkSimulator, count: u64) -> SimulatorStats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = sim.stats();
        let up = stats.to_upstream;
        if up.packets_in >= count && up.forwarded + up.send_errors + up.dropped() >= count {
            return stats;
        }
        assert!(Instant::now() < deadline, "simulator stuck: {stats:?}");
        sleep(Duration::from_millis(10)).await;
    }
}

/// Sends `count` datagrams through a simulator built by `builder` and returns what
/// arrived upstream, in order, with the simulator's statistics.
async fn run_through(
    builder: mirror_reconnect::sim::Builder,
    count: u32,
) -> (Vec<u32>, SimulatorStats) {
    let sink = socket().await;
    let sim = builder
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start simulator");
    let client = socket().await;
    let ((), got) = tokio::join!(
        send_numbered(&client, sim.local_addr(), count),
        receive_numbered(&sink)
    );
    let stats = settle(&sim, u64::from(count)).await;
    (got, stats)
}

#[tokio::test]
async fn loss_rate_is_within_statistical_bounds_and_accounted_for() {
    let n = 4000;
    let (got, stats) = run_through(NetworkSimulator::builder().seed(11).loss(0.1), n).await;
    let up = stats.to_upstream;
    println!("sent {n}, received {}, stats {up:?}", got.len());
    assert_eq!(up.packets_in, u64::from(n));
    assert_eq!(
        got.len() as u64,
        up.forwarded,
        "every forwarded packet arrives"
    );
    assert_eq!(up.forwarded + up.dropped_loss, u64::from(n));
    let rate = up.dropped_loss as f64 / f64::from(n);
    // Standard deviation is about 0.0047: six of them either way.
    assert!((0.072..0.128).contains(&rate), "loss rate {rate}");
    let mut sorted = got.clone();
    sorted.dedup();
    assert_eq!(sorted.len(), got.len(), "no duplicates without duplication");
    assert!(got.windows(2).all(|w| w[0] < w[1]), "order is kept");
}

#[tokio::test]
async fn same_seed_gives_same_fate() {
    let builder = || {
        NetworkSimulator::builder()
            .seed(2024)
            .loss(0.05)
            .burst_loss(GilbertElliott::from_mean(0.05, 4.0))
            .duplicate(0.05)
    };
    let (a, sa) = run_through(builder(), 1500).await;
    let (b, sb) = run_through(builder(), 1500).await;
    let (c, _) = run_through(builder().seed(2025), 1500).await;
    println!(
        "seed 2024: {} received, again {}; seed 2025: {}",
        a.len(),
        b.len(),
        c.len()
    );
    assert_eq!(a, b, "same seed, same packets through");
    assert_eq!(sa.to_upstream, sb.to_upstream);
    assert_ne!(a, c, "another seed loses other packets");
    assert!(sa.to_upstream.dropped_burst > 0 && sa.to_upstream.duplicated > 0);
}

#[tokio::test]
async fn burst_loss_loses_its_mean_in_bursts() {
    let n = 6000;
    let (got, stats) = run_through(
        NetworkSimulator::builder()
            .seed(5)
            .burst_loss(GilbertElliott::from_mean(0.1, 6.0)),
        n,
    )
    .await;
    let up = stats.to_upstream;
    let rate = up.dropped_burst as f64 / f64::from(n);
    // Count the gaps in what arrived: bursts of consecutive lost packets.
    let gaps = got.windows(2).filter(|w| w[1] > w[0] + 1).count().max(1);
    let mean_burst = up.dropped_burst as f64 / gaps as f64;
    println!("burst loss rate {rate:.4}, {gaps} bursts, mean length {mean_burst:.2}");
    assert_eq!(got.len() as u64, up.forwarded);
    assert!((0.05..0.15).contains(&rate), "burst loss rate {rate}");
    assert!((3.5..9.0).contains(&mean_burst), "mean burst {mean_burst}");
}

#[tokio::test]
async fn blackhole_drops_everything_until_lifted() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .seed(1)
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let client = socket().await;

    sim.set_blackhole(true);
    send_numbered(&client, sim.local_addr(), 200).await;
    assert!(receive_numbered(&sink).await.is_empty());
    assert_eq!(sim.stats().to_upstream.dropped_blackhole, 200);

    sim.set_blackhole(false);
    send_numbered(&client, sim.local_addr(), 100).await;
    assert_eq!(receive_numbered(&sink).await.len(), 100);
    let up = sim.stats().to_upstream;
    assert_eq!((up.packets_in, up.forwarded), (300, 100));
}

#[tokio::test]
async fn blackhole_one_way_cuts_only_that_way() {
    let (echo, upstream) = echo_server().await;
    let sim = NetworkSimulator::builder()
        .seed(1)
        .start(upstream)
        .await
        .expect("start");
    let client = socket().await;
    client.connect(sim.local_addr()).await.expect("connect");
    sim.handle().set_blackhole_in(Direction::ToClient, true);
    for _ in 0..10 {
        client.send(b"ping").await.expect("send");
    }
    let mut buf = [0u8; 16];
    assert!(timeout(QUIET, client.recv(&mut buf)).await.is_err());
    let stats = sim.stats();
    assert_eq!(stats.to_upstream.forwarded, 10, "the way up is open");
    assert_eq!(stats.to_client.dropped_blackhole, 10, "the way back is cut");
    drop(echo);
}

#[tokio::test]
async fn scheduled_outage_drops_its_window() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .seed(3)
        .outage(Duration::from_millis(400), Duration::from_millis(400))
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let start = Instant::now();
    let client = socket().await;
    // One packet every 10 ms for 1.2 s, each carrying its send time.
    let sender = async {
        let mut seq = 0u32;
        while start.elapsed() < Duration::from_millis(1200) {
            let ms = u32::try_from(start.elapsed().as_millis()).unwrap_or(u32::MAX);
            let mut datagram = [0u8; 8];
            datagram[..4].copy_from_slice(&seq.to_be_bytes());
            datagram[4..].copy_from_slice(&ms.to_be_bytes());
            client
                .send_to(&datagram, sim.local_addr())
                .await
                .expect("send");
            seq += 1;
            sleep(Duration::from_millis(10)).await;
        }
        seq
    };
    let receiver = async {
        let mut sent_at = Vec::new();
        let mut buf = [0u8; 16];
        while let Ok(Ok(_)) = timeout(Duration::from_millis(1000), sink.recv(&mut buf)).await {
            sent_at.push(u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]));
        }
        sent_at
    };
    let (sent, arrived) = tokio::join!(sender, receiver);
    let up = sim.stats().to_upstream;
    println!(
        "sent {sent}, arrived {}, dropped in outage {}",
        arrived.len(),
        up.dropped_outage
    );
    // Nothing sent well inside the window arrives; things well outside it do.
    assert!(
        !arrived.iter().any(|ms| (450..750).contains(ms)),
        "arrived during outage: {arrived:?}"
    );
    assert!(arrived.iter().any(|ms| *ms < 350));
    assert!(arrived.iter().any(|ms| *ms > 850));
    assert_eq!(arrived.len() as u64 + up.dropped_outage, u64::from(sent));
    // 400 ms at one packet per 10 ms, or slower on a busy machine.
    assert!(
        (8..=45).contains(&up.dropped_outage),
        "{}",
        up.dropped_outage
    );
}

#[tokio::test]
async fn duplicates_arrive_and_are_counted() {
    let (got, stats) = run_through(NetworkSimulator::builder().seed(8).duplicate(0.2), 2000).await;
    let up = stats.to_upstream;
    let extra = got.len() - 2000;
    println!(
        "duplicated {}, extra copies received {extra}",
        up.duplicated
    );
    assert_eq!(extra as u64, up.duplicated);
    assert!((300..500).contains(&up.duplicated), "{}", up.duplicated);
    let mut unique = got.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 2000, "nothing lost");
}

#[tokio::test]
async fn reordering_is_what_the_receiver_sees() {
    let (got, stats) =
        run_through(NetworkSimulator::builder().seed(9).reorder(0.05, 3), 2000).await;
    let up = stats.to_upstream;
    let mut newest = None;
    let mut late = 0u64;
    for &seq in &got {
        if newest.is_some_and(|n| seq < n) {
            late += 1;
        }
        newest = Some(newest.map_or(seq, |n: u32| n.max(seq)));
    }
    println!("reordered {}, late at the receiver {late}", up.reordered);
    assert_eq!(got.len(), 2000, "nothing lost");
    assert_eq!(late, up.reordered);
    assert!((50..150).contains(&up.reordered), "{}", up.reordered);
}

async fn echo_server() -> (tokio::task::JoinHandle<()>, SocketAddr) {
    let echo = socket().await;
    let addr = echo.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = echo.recv_from(&mut buf).await {
            let _ = echo.send_to(&buf[..n], from).await;
        }
    });
    (task, addr)
}

async fn round_trips(sim: &NetworkSimulator, count: usize) -> Vec<Duration> {
    let client = socket().await;
    client.connect(sim.local_addr()).await.expect("connect");
    let mut rtts = Vec::new();
    let mut buf = [0u8; 16];
    for _ in 0..count {
        let sent = Instant::now();
        client.send(b"ping").await.expect("send");
        timeout(Duration::from_secs(5), client.recv(&mut buf))
            .await
            .expect("reply within 5 s")
            .expect("recv");
        rtts.push(sent.elapsed());
    }
    rtts
}

#[tokio::test]
async fn latency_is_added_both_ways() {
    let (echo, upstream) = echo_server().await;
    let sim = NetworkSimulator::builder()
        .seed(4)
        .latency(Duration::from_millis(50))
        .start(upstream)
        .await
        .expect("start");
    let rtts = round_trips(&sim, 10).await;
    let min = rtts.iter().min().copied().unwrap_or_default();
    let max = rtts.iter().max().copied().unwrap_or_default();
    println!("50 ms each way: round trips {min:?} .. {max:?}");
    assert!(min >= Duration::from_millis(100), "{min:?}");
    assert!(max < Duration::from_millis(600), "{max:?}");
    let stats = sim.stats();
    assert_eq!(stats.to_upstream.delayed, 10);
    assert_eq!(stats.to_client.delayed, 10);

    // Changed at run time.
    sim.set_latency(Duration::ZERO);
    sim.set_jitter(Duration::ZERO);
    let rtts = round_trips(&sim, 10).await;
    let max = rtts.iter().max().copied().unwrap_or_default();
    println!("no latency: slowest round trip {max:?}");
    assert!(max < Duration::from_millis(100), "{max:?}");
    drop(echo);
}

#[tokio::test]
async fn jitter_varies_delay_without_reordering() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .seed(6)
        .latency(Duration::from_millis(30))
        .jitter(Duration::from_millis(20))
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let client = socket().await;
    let start = Instant::now();
    let mut delays = Vec::new();
    let mut buf = [0u8; 16];
    let mut last = None;
    for seq in 0..100u32 {
        let sent = Instant::now();
        client
            .send_to(&seq.to_be_bytes(), sim.local_addr())
            .await
            .expect("send");
        let n = timeout(Duration::from_secs(5), sink.recv(&mut buf))
            .await
            .expect("arrives")
            .expect("recv");
        assert_eq!(&buf[..n], &seq.to_be_bytes());
        delays.push(sent.elapsed());
        last = Some(seq);
        sleep(Duration::from_millis(2)).await;
    }
    let min = delays.iter().min().copied().unwrap_or_default();
    let max = delays.iter().max().copied().unwrap_or_default();
    println!(
        "30 ± 20 ms: delays {min:?} .. {max:?} over {:?}",
        start.elapsed()
    );
    assert_eq!(last, Some(99));
    assert!(min >= Duration::from_millis(10), "{min:?}");
    assert!(max >= Duration::from_millis(35), "jitter shows: {max:?}");
    assert!(max < Duration::from_millis(500), "{max:?}");
}

#[tokio::test]
async fn each_client_gets_its_own_replies() {
    let (echo, upstream) = echo_server().await;
    let sim = NetworkSimulator::builder()
        .seed(2)
        .start(upstream)
        .await
        .expect("start");
    let a = socket().await;
    let b = socket().await;
    a.connect(sim.local_addr()).await.expect("connect");
    b.connect(sim.local_addr()).await.expect("connect");
    a.send(b"from a").await.expect("send");
    b.send(b"from b").await.expect("send");
    let mut buf = [0u8; 16];
    let n = timeout(Duration::from_secs(5), a.recv(&mut buf))
        .await
        .expect("reply")
        .expect("recv");
    assert_eq!(&buf[..n], b"from a");
    let n = timeout(Duration::from_secs(5), b.recv(&mut buf))
        .await
        .expect("reply")
        .expect("recv");
    assert_eq!(&buf[..n], b"from b");
    assert_eq!(sim.stats().clients, 2);
    drop(echo);
}

#[tokio::test]
async fn idle_clients_are_forgotten() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .client_idle_timeout(Duration::from_millis(100))
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let client = socket().await;
    client.send_to(b"x", sim.local_addr()).await.expect("send");
    settle(&sim, 1).await;
    assert_eq!(sim.stats().clients, 1);
    sleep(Duration::from_millis(500)).await;
    assert_eq!(sim.stats().clients, 0);
}

#[tokio::test]
async fn loss_changes_at_run_time() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .seed(10)
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let client = socket().await;
    sim.set_loss(1.0).expect("valid");
    send_numbered(&client, sim.local_addr(), 100).await;
    assert!(receive_numbered(&sink).await.is_empty());
    sim.set_loss(0.0).expect("valid");
    send_numbered(&client, sim.local_addr(), 100).await;
    assert_eq!(receive_numbered(&sink).await.len(), 100);

    let err = sim.set_loss(f64::NAN).expect_err("NaN is no probability");
    assert_eq!(err.field(), "loss");
    // A refused change leaves the settings alone.
    assert_eq!(sim.handle().impairments(Direction::ToUpstream).loss, 0.0);
    assert_eq!(sim.stats().to_upstream.dropped_loss, 100);
}

#[tokio::test]
async fn bad_settings_are_refused_at_start() {
    let err = NetworkSimulator::builder()
        .impairments(
            Direction::ToClient,
            Impairments {
                duplicate: 2.0,
                ..Impairments::default()
            },
        )
        .start("127.0.0.1:9".parse().expect("addr"))
        .await
        .expect_err("duplicate 2.0 is refused");
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("duplicate"), "{err}");
}

#[tokio::test]
async fn dropping_the_simulator_stops_it() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let addr = sim.local_addr();
    let client = socket().await;
    send_numbered(&client, addr, 5).await;
    assert_eq!(receive_numbered(&sink).await.len(), 5);
    drop(sim);
    sleep(Duration::from_millis(50)).await;
    // Sending may fail (port closed) or go nowhere; either way nothing arrives.
    for _ in 0..5 {
        let _ = client.send_to(b"after", addr).await;
    }
    assert!(receive_numbered(&sink).await.is_empty());
}

#[tokio::test]
async fn outages_can_be_set_per_direction_at_run_time() {
    let (echo, upstream) = echo_server().await;
    let sim = NetworkSimulator::builder()
        .seed(12)
        .start(upstream)
        .await
        .expect("start");
    let handle = sim.handle();
    handle
        .update(Direction::ToUpstream, |i| {
            i.outages
                .push(Outage::new(Duration::ZERO, Duration::from_secs(3600)));
        })
        .expect("valid");
    let client = socket().await;
    client.connect(sim.local_addr()).await.expect("connect");
    client.send(b"ping").await.expect("send");
    let mut buf = [0u8; 16];
    assert!(timeout(QUIET, client.recv(&mut buf)).await.is_err());
    assert_eq!(sim.stats().to_upstream.dropped_outage, 1);
    drop(echo);
}

/// On paused time the simulator's delays are exact: tokio's clock drives it.
#[tokio::test(start_paused = true)]
async fn latency_on_paused_time_is_exact() {
    let sink = socket().await;
    let sim = NetworkSimulator::builder()
        .latency(Duration::from_secs(2))
        .start(sink.local_addr().expect("addr"))
        .await
        .expect("start");
    let client = socket().await;
    let sent = Instant::now();
    client
        .send_to(b"slow", sim.local_addr())
        .await
        .expect("send");
    let mut buf = [0u8; 16];
    let n = sink.recv(&mut buf).await.expect("recv");
    assert_eq!(&buf[..n], b"slow");
    let took = sent.elapsed();
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_millis(2100),
        "{took:?}"
    );
}
