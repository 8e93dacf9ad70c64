//! The relay program, run as a user runs it.
#![cfg(feature = "cli")]

mod support;

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::process::ChildGuard;

/// The `mirror-relay` program, which cargo builds for this test.
fn relay_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mirror-relay"))
}

fn relay(args: &[&str]) -> ChildGuard {
    ChildGuard::new(
        "relay",
        Command::new(relay_bin())
            .args(args)
            // As an operator runs it: no log filter of the test's own.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the relay"),
    )
}

fn free_udp() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::ports::free_udp_port()))
}

fn need(tool: &str) -> PathBuf {
    let found = std::env::var_os("PATH").map(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(tool))
            .find(|p| p.exists())
    });
    found
        .flatten()
        .unwrap_or_else(|| panic!("{tool} is not installed: scripts/test.sh installs it"))
}

/// Receive numbered datagrams until `count` arrived or `limit` passed.
fn receive(sink: &UdpSocket, count: usize, limit: Duration) -> Vec<u32> {
    sink.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while got.len() < count && start.elapsed() < limit {
        if let Ok(n) = sink.recv(&mut buf) {
            if n >= 4 {
                got.push(u32::from_be_bytes(buf[..4].try_into().unwrap()));
            }
        }
    }
    got
}

fn numbered(n: u32, size: usize) -> Vec<u8> {
    let mut payload = vec![0x47u8; size];
    payload[..4].copy_from_slice(&n.to_be_bytes());
    payload
}

#[test]
fn bad_command_lines_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &[],
        &["udp://127.0.0.1:5000"],
        &["http://x", "-"],
        &["udp://127.0.0.1:5000", "tcp://127.0.0.1:1"],
        &["udp://nohost", "-"],
        &["--state", "sqlite:x", "udp://127.0.0.1:5000", "-"],
        &["--duration", "-3", "udp://127.0.0.1:5000", "-"],
        &["--events", "xml", "udp://127.0.0.1:5000", "-"],
        &["--bogus", "udp://127.0.0.1:5000", "-"],
        &[
            "--config",
            "/nonexistent/reconnect.yaml",
            "udp://127.0.0.1:5000",
            "-",
        ],
        &["srt://127.0.0.1:9000?mode=sideways", "-"],
        &["srt://127.0.0.1:9000?passphrase=short", "-"],
        &["--srt-backend", "gstreamer", "udp://127.0.0.1:5000", "-"],
        &["srt://127.0.0.1:9000?packetfilter=fec", "-"],
    ];
    for args in cases {
        let mut child = relay(args);
        let status = child.wait_exit(Duration::from_secs(20));
        let stderr = child.stderr();
        assert_eq!(status.code(), Some(2), "{args:?}: {stderr}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?}: one line, got {stderr:?}"
        );
        assert!(stderr.starts_with("mirror-relay: "), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
}

#[test]
fn a_bad_config_file_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("reconnect.yaml");
    std::fs::write(&config, "max_retires: 3\n").unwrap();
    let mut child = relay(&[
        "--config",
        config.to_str().unwrap(),
        "udp://127.0.0.1:5000",
        "-",
    ]);
    assert_eq!(child.wait_exit(Duration::from_secs(20)).code(), Some(2));
    let stderr = child.stderr();
    assert!(stderr.contains("max_retires"), "{stderr}");
}

#[test]
fn help_exits_0() {
    let mut child = relay(&["--help"]);
    assert!(child.wait_exit(Duration::from_secs(20)).success());
}

/// Relay UDP to UDP keeping state in `state_arg`, feed it until 200 datagrams came
/// through, stop it with SIGTERM, and return how many it relayed and what it said.
fn relay_udp_then_sigterm(state_arg: &str) -> (usize, String) {
    let input = free_udp();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut child = relay(&[
        "--state",
        state_arg,
        "--events",
        "json",
        &format!("udp://{input}"),
        &format!("udp://{}", sink.local_addr().unwrap()),
    ]);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    let mut n = 0u32;
    while got.len() < 200 && start.elapsed() < Duration::from_secs(20) {
        sender.send_to(&numbered(n, 188), input).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(2));
        got.extend(receive(&sink, 1, Duration::from_millis(1)));
    }
    assert!(got.len() >= 200, "relayed {} of {n}", got.len());
    assert!(got.windows(2).all(|w| w[0] < w[1]), "in order");

    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "SIGTERM: {status:?}\n{stderr}");
    for line in stderr.lines().filter(|l| l.starts_with('{')) {
        let event: serde_json::Value = serde_json::from_str(line).unwrap();
        assert!(
            event["type"].is_string() && event["timestamp"].is_string(),
            "{line}"
        );
    }
    (got.len(), stderr)
}

/// The saved state counts at least `relayed` packets, and its last activity is later
/// than its start; `said` is the relay's stderr, shown if not.
fn assert_final_state(state: &serde_json::Value, (relayed, said): (usize, String)) {
    let state: mirror_reconnect::connection::ConnectionState =
        serde_json::from_value(state.clone()).unwrap();
    let received = state.statistics.packets_received;
    assert!(
        received >= relayed as u64,
        "saved {received} packets received, relayed {relayed}: {state:?}\nthe relay said:\n{said}"
    );
    assert!(
        state.last_activity > state.start_time,
        "last_activity follows the stream: {state:?}\nthe relay said:\n{said}"
    );
}

#[test]
fn udp_in_udp_out_and_sigterm_stops_cleanly_with_state_saved() {
    let dir = tempfile::tempdir().unwrap();
    let relayed = relay_udp_then_sigterm(&format!("file:{}", dir.path().display()));
    let saved: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    assert_eq!(saved.len(), 1, "one state file for the stream: {saved:?}");
    let document: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&saved[0]).unwrap()).unwrap();
    assert_final_state(&document["state"], relayed);
}

#[test]
fn sigterm_with_redis_saves_the_final_state_then_releases_the_lease() {
    let server = support::redis_server::RedisServer::start();
    let relayed = relay_udp_then_sigterm(&server.url());
    let mut redis = server.connection();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut redis).unwrap();
    let state_keys: Vec<_> = keys.iter().filter(|k| k.contains(":state:")).collect();
    assert_eq!(state_keys.len(), 1, "one state key: {keys:?}");
    let value: String = redis::cmd("GET")
        .arg(state_keys[0])
        .query(&mut redis)
        .unwrap();
    assert_final_state(&serde_json::from_str(&value).unwrap(), relayed);
    assert!(
        !keys.iter().any(|k| k.contains(":lease:")),
        "the lease is released: {keys:?}"
    );
}

/// Run the relay against a Redis nobody listens on for a few seconds, then stop it.
fn relay_with_unreachable_redis(extra: &[&str]) -> String {
    let port = support::redis_server::free_port();
    let state = format!("redis://:pass-MARKER@127.0.0.1:{port}");
    let mut args = vec!["--state", &state];
    args.extend_from_slice(extra);
    let input = format!("udp://{}", free_udp());
    let output = format!("udp://{}", free_udp());
    args.extend([input.as_str(), output.as_str()]);
    let mut child = relay(&args);
    std::thread::sleep(Duration::from_secs(4));
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(
        status.success(),
        "SIGTERM while waiting: {status:?}\n{stderr}"
    );
    assert!(
        !stderr.contains("pass-MARKER"),
        "the password shows: {stderr}"
    );
    stderr
}

#[test]
fn an_unreachable_store_is_said_at_once_and_not_again_for_30_s() {
    let stderr = relay_with_unreachable_redis(&[]);
    let said: Vec<_> = stderr
        .lines()
        .filter(|l| l.contains("cannot acquire the lease"))
        .collect();
    // Four seconds of retries: said once (the next in 30 s), one line.
    assert_eq!(said.len(), 1, "{stderr}");
    assert!(said[0].contains("WARN"), "{stderr}");
}

#[test]
fn quiet_says_nothing() {
    let stderr = relay_with_unreachable_redis(&["--quiet"]);
    assert_eq!(stderr.trim(), "", "--quiet");
}

#[test]
fn rtp_in_survives_a_sender_restart() {
    let input = free_udp();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut child = relay(&[
        "--duration",
        "30",
        &format!("rtp://{input}"),
        &format!("udp://{}", sink.local_addr().unwrap()),
    ]);
    let rtp = |seq: u16, ssrc: u32| {
        let mut p = vec![0u8; 12 + 160];
        p[0] = 0x80;
        p[1] = 96;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 3000).to_be_bytes());
        p[8..12].copy_from_slice(&ssrc.to_be_bytes());
        p
    };
    for (round, ssrc) in [(0u16, 0x1111_1111u32), (1, 0x2222_2222)] {
        // A new sender (new socket, new SSRC, new sequence base) each round.
        let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
        let base = round * 20_000;
        let mut relayed = 0;
        let start = Instant::now();
        let mut seq = base;
        while relayed < 100 && start.elapsed() < Duration::from_secs(15) {
            sender.send_to(&rtp(seq, ssrc), input).unwrap();
            seq = seq.wrapping_add(1);
            std::thread::sleep(Duration::from_millis(5));
            relayed += receive(&sink, 1, Duration::from_millis(1)).len();
        }
        assert!(
            relayed >= 100,
            "round {round}: {relayed} RTP packets relayed"
        );
        drop(sender);
        std::thread::sleep(Duration::from_millis(800));
    }
    child.signal("TERM");
    assert!(child.wait_exit(Duration::from_secs(10)).success());
}

/// srt-live-transmit, libsrt's own tool, as the peer.
fn srt_live_transmit(from: &str, to: &str) -> ChildGuard {
    ChildGuard::new(
        "srt-live-transmit",
        Command::new(need("srt-live-transmit"))
            .args(["-q", from, to])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit"),
    )
}

#[test]
fn srt_in_udp_out_with_the_sender_killed_and_restarted() {
    srt_sender_killed_and_restarted(&[], "");
}

/// The libsrt backend, fed by a libsrt caller with FEC (a common encoder setting that
/// srt-tokio cannot take).
#[cfg(feature = "libsrt")]
#[test]
fn srt_in_on_libsrt_takes_a_fec_caller_killed_and_restarted() {
    srt_sender_killed_and_restarted(
        &["--srt-backend", "libsrt"],
        "&packetfilter=fec,cols:10,rows:5",
    );
}

/// An SRT listener input (with `options`) relaying to UDP; its caller, srt-live-transmit
/// with `caller_extra` in its URL, SIGKILLed and restarted three times.
fn srt_sender_killed_and_restarted(options: &[&str], caller_extra: &str) {
    let srt_port = free_udp().port();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let input = format!("srt://127.0.0.1:{srt_port}?mode=listener&streamid=cam1&latency=80");
    let output = format!("udp://{}", sink.local_addr().unwrap());
    let mut args = vec!["--events", "json"];
    args.extend_from_slice(options);
    args.extend([input.as_str(), output.as_str()]);
    let mut child = relay(&args);
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut n = 0u32;
    for round in 0..3 {
        let feed_port = free_udp().port();
        let sender = srt_live_transmit(
            &format!("udp://127.0.0.1:{feed_port}"),
            &format!(
                "srt://127.0.0.1:{srt_port}?mode=caller&streamid=cam1&latency=80{caller_extra}"
            ),
        );
        let start = Instant::now();
        let mut relayed = Vec::new();
        while relayed.len() < 100 && start.elapsed() < Duration::from_secs(20) {
            feed.send_to(&numbered(n, 1316), ("127.0.0.1", feed_port))
                .unwrap();
            n += 1;
            std::thread::sleep(Duration::from_millis(4));
            relayed.extend(receive(&sink, 10, Duration::from_millis(1)));
        }
        assert!(
            relayed.len() >= 100,
            "round {round}: {} relayed",
            relayed.len()
        );
        assert!(
            relayed.windows(2).all(|w| w[0] < w[1]),
            "round {round}: in order"
        );
        // An encoder crash: SIGKILL, no goodbye.
        sender.signal("KILL");
        drop(sender);
    }
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
    let succeeded = stderr
        .lines()
        .filter(|l| l.contains(r#""type":"reconnection_succeeded""#))
        .count();
    assert!(succeeded >= 2, "a reconnection for each restart:\n{stderr}");
}

#[test]
fn srt_out_to_a_restarted_receiver_buffers_and_drops_the_oldest() {
    srt_out_to_a_restarted_receiver(&[]);
}

/// The same SRT output on libsrt.
#[cfg(feature = "libsrt")]
#[test]
fn srt_out_on_libsrt_to_a_restarted_receiver_buffers_and_drops_the_oldest() {
    srt_out_to_a_restarted_receiver(&["--srt-backend", "libsrt"]);
}

/// A datagram longer than an SRT message may be (1316 bytes in libsrt's live mode)
/// is dropped and counted; the output stays connected and what follows flows on.
/// Before, the output re-dialled and sent it again, for ever.
#[cfg(feature = "libsrt")]
#[test]
fn srt_out_on_libsrt_drops_a_packet_too_long_for_srt_and_flows_on() {
    let input = free_udp();
    let srt_port = free_udp().port();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let _rx = srt_live_transmit(
        &format!("srt://127.0.0.1:{srt_port}?mode=listener&latency=80"),
        &format!("udp://{sink_addr}"),
    );
    let (from, to) = (
        format!("udp://{input}"),
        format!("srt://127.0.0.1:{srt_port}?mode=caller&latency=80"),
    );
    let mut child = relay(&["--srt-backend", "libsrt", &from, &to]);
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut n = 0u32;
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 20 && start.elapsed() < Duration::from_secs(20) {
        feed.send_to(&numbered(n, 1316), input).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(4));
        got.extend(receive(&sink, 10, Duration::from_millis(1)));
    }
    assert!(
        got.len() >= 20,
        "{} relayed before the long packet",
        got.len()
    );
    let long = n;
    feed.send_to(&numbered(long, 1400), input).unwrap();
    n += 1;
    let mut after = Vec::new();
    let start = Instant::now();
    while after.len() < 20 && start.elapsed() < Duration::from_secs(20) {
        feed.send_to(&numbered(n, 1316), input).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(4));
        after.extend(
            receive(&sink, 10, Duration::from_millis(1))
                .into_iter()
                .filter(|&x| x > long),
        );
    }
    assert!(
        after.len() >= 20,
        "{} relayed after the long packet",
        after.len()
    );
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("the output dropped 1 "), "{stderr}");
    assert!(!stderr.contains("re-dialling"), "{stderr}");
}

/// UDP in, SRT out (with `options`) to an srt-live-transmit receiver that is killed,
/// kept away while packets come, and restarted.
fn srt_out_to_a_restarted_receiver(options: &[&str]) {
    let input = free_udp();
    let srt_port = free_udp().port();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sink_addr = sink.local_addr().unwrap();
    let receiver = |port: u16| {
        srt_live_transmit(
            &format!("srt://127.0.0.1:{port}?mode=listener&latency=80"),
            &format!("udp://{sink_addr}"),
        )
    };
    let mut rx = receiver(srt_port);
    let (from, to) = (
        format!("udp://{input}"),
        format!("srt://127.0.0.1:{srt_port}?mode=caller&latency=80"),
    );
    let mut args: Vec<&str> = options.to_vec();
    args.extend([from.as_str(), to.as_str()]);
    let mut child = relay(&args);
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();

    // Flowing.
    let mut n = 0u32;
    let start = Instant::now();
    let mut got = Vec::new();
    while got.len() < 50 && start.elapsed() < Duration::from_secs(20) {
        feed.send_to(&numbered(n, 1316), input).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(4));
        got.extend(receive(&sink, 10, Duration::from_millis(1)));
    }
    assert!(
        got.len() >= 50,
        "{} relayed before the receiver restart",
        got.len()
    );

    // The receiver dies; the relay notices (SRT's peer-idle timeout is 5 s) and
    // buffers what arrives meanwhile: 5 000 packets, of which the last 4 096 are kept.
    rx.signal("KILL");
    drop(rx);
    std::thread::sleep(Duration::from_secs(8));
    let first_buffered = n;
    for _ in 0..5_000 {
        feed.send_to(&numbered(n, 1316), input).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_micros(300));
    }
    rx = receiver(srt_port);
    // The backlog goes out when the receiver is back; SRT's live mode delivers what of
    // it still fits its latency window. New packets flow again.
    let mut after = Vec::new();
    let start = Instant::now();
    let first_new = n;
    while !after.iter().any(|&x| x >= first_new) && start.elapsed() < Duration::from_secs(30) {
        feed.send_to(&numbered(n, 1316), input).unwrap();
        n += 1;
        std::thread::sleep(Duration::from_millis(4));
        after.extend(receive(&sink, 100, Duration::from_millis(1)));
    }
    after.extend(receive(&sink, 10_000, Duration::from_secs(1)));
    assert!(
        after.iter().any(|&x| x >= first_new),
        "no new packet arrived after the receiver came back"
    );
    let oldest_kept = first_buffered + 5_000 - 4_096;
    assert!(
        after.iter().all(|&x| x >= oldest_kept),
        "a dropped (oldest) packet arrived: min {:?}",
        after.iter().min()
    );
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
    // 5 000 packets into a 4 096-packet buffer drop the 904 oldest; packets fed after
    // the receiver came back may drop a few more until the output has re-dialled.
    let dropped: u64 = stderr
        .split("the output dropped ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no drop count reported: {stderr}"));
    let fed_after = u64::from(n - first_new);
    assert!(
        (904..=904 + fed_after).contains(&dropped),
        "dropped {dropped}, fed after {fed_after}"
    );
    drop(rx);
}

#[test]
fn the_demo_runs_to_its_report() {
    let dir = tempfile::tempdir().unwrap();
    let child = ChildGuard::new(
        "relay --demo",
        Command::new(relay_bin())
            .args(["--demo", "--report-dir", dir.path().to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let output = child.finish(Duration::from_secs(120));
    let (status, stdout) = (output.status, String::from_utf8_lossy(&output.stdout));
    assert!(status.success(), "{stdout}");
    assert!(stdout.contains("| # | trouble injected |"), "{stdout}");
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    let rows: Vec<Vec<&str>> = report
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| #"))
        .map(|l| l.trim_matches('|').split('|').map(str::trim).collect())
        .collect();
    assert_eq!(rows.len(), 7, "{report}");
    let millis = |cell: &str| {
        cell.strip_suffix(" ms")
            .and_then(|n| n.parse::<u64>().ok())
            .is_some()
    };
    for row in &rows {
        let [number, trouble, _at, detected, reason, recovered, attempts, _lost] = row[..] else {
            panic!("a row of 8 cells: {row:?}\n{report}");
        };
        let attempts: u32 = attempts.parse().unwrap();
        if number == "7" {
            // A new primary: switched back to after it delivered for 3 s.
            assert_eq!(reason, "switch back", "{report}");
            let back = recovered
                .strip_suffix(" ms")
                .and_then(|n| n.parse::<u64>().ok());
            assert!(
                back.is_some_and(|ms| ms >= 3_000),
                "{trouble}: back after {recovered:?}\n{report}"
            );
        } else if number == "6" {
            // The primary killed: the backup took over, in well under the 2 s a
            // reconnection to a dead encoder would take even to give up an attempt.
            assert!(
                millis(detected),
                "{trouble}: detected {detected:?}\n{report}"
            );
            let switched = recovered
                .strip_suffix(" ms")
                .and_then(|n| n.parse::<u64>().ok());
            assert!(
                switched.is_some_and(|ms| ms < 2_000),
                "{trouble}: backup after {recovered:?}\n{report}"
            );
        } else if number == "2" {
            // Burst loss SRT absorbs by retransmission: no failure, no reconnect. On
            // a loaded machine a retransmission can come late enough to look like a
            // silence (seen once in five debug runs here); then it is recovered from
            // like any other trouble.
            if detected == "not detected" {
                assert_eq!(attempts, 0, "{trouble}\n{report}");
            } else {
                assert!(
                    millis(recovered) || recovered == "connection kept",
                    "{trouble}: recovered {recovered:?}\n{report}"
                );
            }
        } else {
            // A path cut, a delay jump, a silent sender, a restart: each is media
            // silence to the detector, which sees it before any threshold check does.
            assert!(
                millis(detected),
                "{trouble}: detected {detected:?}\n{report}"
            );
            assert_eq!(reason, "timeout", "{trouble}: detected as\n{report}");
            // Recovered by a reconnection, or (make-before-break) the suspected
            // connection delivered again first and was kept.
            assert!(
                millis(recovered) || recovered == "connection kept",
                "{trouble}: recovered {recovered:?}\n{report}"
            );
            assert!(attempts >= 1, "{trouble}: {attempts} attempts\n{report}");
        }
    }
    let svg = std::fs::read_to_string(dir.path().join("timeline.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "timeline");
}

/// Run the relay to its exit with extra environment, reading both pipes as it goes so
/// that a chatty run cannot block on a full pipe. No status when it still ran after
/// `limit` (it is killed then).
fn run_to_exit(
    args: &[&str],
    env: &[(&str, &str)],
    limit: Duration,
) -> (Option<std::process::ExitStatus>, String, String) {
    use std::io::Read;
    let mut child = ChildGuard::new(
        "relay",
        Command::new(relay_bin())
            .args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the relay"),
    );
    let pipes = child.child.as_mut().expect("running");
    let (mut out, mut err) = (pipes.stdout.take().unwrap(), pipes.stderr.take().unwrap());
    let out = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = out.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let err = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = err.read_to_end(&mut text);
        String::from_utf8_lossy(&text).into_owned()
    });
    let start = Instant::now();
    let status = loop {
        let running = child.child.as_mut().expect("running");
        if let Some(status) = running.try_wait().expect("wait") {
            break Some(status);
        }
        if start.elapsed() > limit {
            child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    (status, out.join().unwrap(), err.join().unwrap())
}

/// A passphrase or password no output of the relay may ever show.
const MARKER: &str = "s3cr3t-MARKER";

#[test]
fn bad_urls_never_show_a_passphrase_or_password() {
    let pass = format!("passphrase={MARKER}-0123");
    let cases: Vec<Vec<String>> = vec![
        // Input: a mistyped scheme, bad SRT parameters, userinfo where SRT has none.
        vec![
            format!("srtt://127.0.0.1:9000?mode=caller&{pass}"),
            "-".into(),
        ],
        vec![
            format!("srt://127.0.0.1:9000?mode=sideways&{pass}"),
            "-".into(),
        ],
        vec![format!("srt://127.0.0.1:9000?{pass}&latncy=20"), "-".into()],
        vec![
            format!("srt://u:{MARKER}@127.0.0.1:9000?mode=caller"),
            "-".into(),
        ],
        vec![
            format!("srt://127.0.0.1:9000?passphrase:{MARKER}"),
            "-".into(),
        ],
        vec![format!("srt://127.0.0.1:9000?{pass}&{MARKER}"), "-".into()],
        vec![format!("srt://127.0.0.1:nine?{pass}"), "-".into()],
        vec![format!("udp://u:{MARKER}@127.0.0.1:9000"), "-".into()],
        vec![format!("rtp://127.0.0.1:x?password={MARKER}"), "-".into()],
        // Output: the same mistakes.
        vec![
            "udp://127.0.0.1:5000".into(),
            format!("srtt://127.0.0.1:9000?{pass}"),
        ],
        vec![
            "udp://127.0.0.1:5000".into(),
            format!("srt://127.0.0.1:9000?mode=sideways&{pass}"),
        ],
        vec![
            "udp://127.0.0.1:5000".into(),
            format!("srt://u:{MARKER}@127.0.0.1:9000"),
        ],
        vec![
            "udp://127.0.0.1:5000".into(),
            format!("udp://u:{MARKER}@127.0.0.1:9000"),
        ],
        // State: an invalid Redis URL, a mistyped one.
        vec![
            "--state".into(),
            format!("redis://:{MARKER}@bad host:6379"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
        vec![
            "--state".into(),
            format!("redis://user:{MARKER}@127.0.0.1:6379/notadb"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
        vec![
            "--state".into(),
            format!("redis:/user:{MARKER}@127.0.0.1:6379"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
        // A URL where none belongs.
        vec![
            "udp://127.0.0.1:5000".into(),
            "-".into(),
            format!("srt://127.0.0.1:9000?{pass}"),
        ],
        vec![
            format!("--demo=srt://127.0.0.1:9000?{pass}"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
        vec![
            "--events".into(),
            format!("srt://127.0.0.1:9000?{pass}"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
        vec![
            "--metrics-addr".into(),
            format!("u:{MARKER}@127.0.0.1:9184"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
        vec![
            "--duration".into(),
            format!("?{pass}"),
            "udp://127.0.0.1:5000".into(),
            "-".into(),
        ],
    ];
    let mut problems = Vec::new();
    for args in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (status, stdout, stderr) =
            run_to_exit(&args, &[("RUST_LOG", "trace")], Duration::from_secs(20));
        if stderr.contains(MARKER) || stdout.contains(MARKER) {
            problems.push(format!("{args:?} shows the secret: {stderr}{stdout}"));
        }
        if status.and_then(|s| s.code()) != Some(2)
            || stderr.trim_end().lines().count() != 1
            || !stderr.starts_with("mirror-relay: ")
        {
            problems.push(format!("{args:?}: {status:?}, not one line: {stderr:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn an_unreachable_redis_never_shows_its_password() {
    let state = format!("redis://u:{MARKER}@127.0.0.1:1");
    let input = format!("udp://{}", free_udp());
    let (_, stdout, stderr) = run_to_exit(
        &["--state", &state, "--duration", "2", &input, "-"],
        &[("RUST_LOG", "trace")],
        Duration::from_secs(20),
    );
    assert!(
        !stderr.contains(MARKER) && !stdout.contains(MARKER),
        "shows the password: {stderr}{stdout}"
    );
}

#[test]
fn a_running_srt_input_never_shows_its_passphrase() {
    // Valid URLs, traced at the finest level, with events and metrics on.
    let input = format!(
        "srt://127.0.0.1:{}?mode=listener&streamid=cam1&passphrase={MARKER}-0123",
        free_udp().port()
    );
    let output = format!(
        "srt://127.0.0.1:{}?mode=caller&passphrase={MARKER}-4567",
        free_udp().port()
    );
    let metrics = format!("127.0.0.1:{}", free_udp().port());
    let (status, stdout, stderr) = run_to_exit(
        &[
            "--duration",
            "2",
            "--events",
            "json",
            "--metrics-addr",
            &metrics,
            &input,
            &output,
        ],
        &[("RUST_LOG", "trace")],
        Duration::from_secs(20),
    );
    assert!(status.is_some_and(|s| s.success()), "{stderr}");
    assert!(
        !stderr.contains(MARKER) && !stdout.contains(MARKER),
        "shows the passphrase: {stderr}{stdout}"
    );
}

#[test]
fn out_of_range_values_exit_2_naming_the_option_and_the_rule() {
    let dir = tempfile::tempdir().unwrap();
    let config = |name: &str, yaml: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, yaml).unwrap();
        path.to_str().unwrap().to_owned()
    };
    let ages = config("ages.yaml", "check_interval: 300000000000y\n");
    let flapping = config("flapping.yaml", "silence:\n  min_samples: 0\n");
    let steep = config("steep.yaml", "multiplier: 1e300\n");
    let a_dir = dir.path().to_str().unwrap().to_owned();
    let input = format!("udp://{}", free_udp());
    let input = input.as_str();
    let mut cases: Vec<(Vec<&str>, Vec<&str>)> = Vec::new();
    for duration in [
        "1e20", "NaN", "nan", "inf", "-inf", "-1", "1e400", "0", "-0",
    ] {
        cases.push((vec!["--duration", duration, input, "-"], vec!["--duration"]));
    }
    for clients in ["0", "1025", "-1", "many"] {
        cases.push((
            vec!["--metrics-clients", clients, input, "-"],
            vec!["--metrics-clients", "from 1 to 1024"],
        ));
    }
    for packets in ["0", "-1", "1000001", "1e3", "many"] {
        cases.push((
            vec!["--output-buffer", packets, input, "-"],
            vec!["--output-buffer", "from 1 to 1000000"],
        ));
    }
    cases.extend([
        (
            vec!["--config", &ages, input, "-"],
            vec!["check_interval", "at most 24h"],
        ),
        (
            vec!["--config", &flapping, input, "-"],
            vec!["silence.min_samples", "at least 1"],
        ),
        (
            vec!["--config", &steep, input, "-"],
            vec!["multiplier", "at most"],
        ),
        (vec!["--config", &a_dir, input, "-"], vec!["--config"]),
        (
            vec!["udp://127.0.0.1:7000/some/path?ttl=3", "-"],
            vec!["input", "/some/path", "ttl=3"],
        ),
        (vec!["rtp://127.0.0.1:7000/x", "-"], vec!["input", "/x"]),
        (
            vec!["rtp://127.0.0.1:7000?pkt_size=1316", "-"],
            vec!["input", "pkt_size=1316"],
        ),
        (
            vec![input, "udp://127.0.0.1:5000?pkt_size=1316"],
            vec!["output", "pkt_size=1316"],
        ),
        (
            vec![input, "rtp://127.0.0.1:5000/live"],
            vec!["output", "/live"],
        ),
        (
            vec!["--metrics-addr", "127.0.0.1:0/metrics", input, "-"],
            vec!["--metrics-addr"],
        ),
    ]);
    let mut problems = Vec::new();
    for (args, needles) in &cases {
        let (status, _, stderr) = run_to_exit(args, &[], Duration::from_secs(10));
        let code = status.and_then(|s| s.code());
        if code != Some(2)
            || stderr.trim_end().lines().count() != 1
            || !stderr.starts_with("mirror-relay: ")
            || needles.iter().any(|n| !stderr.contains(n))
        {
            problems.push(format!("{args:?}: exit {code:?}, {stderr:?}"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// A primary SRT input and a backup, each fed by its own srt-live-transmit caller: the
/// primary SIGKILLed, the backup's packets out at once; the primary restarted, switched
/// back to after `failover.switch_back_after` (2 s here).
#[test]
fn a_killed_primary_is_replaced_by_the_backup_and_switched_back_to_once_it_is_back() {
    const BACKUP: u32 = 1_000_000;
    let dir = std::env::temp_dir().join(format!("relay-failover-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join("failover.yaml");
    // A silence floor of 200 ms: the machine's own stalls (this feeder, the callers or
    // the relay descheduled for tens of milliseconds on a loaded CI host) would read as
    // failures on a 4 ms feed with the default 10 ms floor, and the extra switches they
    // cause are not the ones under test. Eight gaps, spanning 8 floors (1.6 s), learn
    // the rhythm within the first phase's 3 s.
    std::fs::write(
        &config,
        "failover:\n  switch_back_after: 2s\nsilence:\n  floor: 200ms\n  min_samples: 8\n",
    )
    .unwrap();
    let (primary_port, backup_port) = (free_udp().port(), free_udp().port());
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let input = |port: u16, id: &str| {
        format!("srt://127.0.0.1:{port}?mode=listener&streamid={id}&latency=80")
    };
    let (primary_in, backup_in) = (input(primary_port, "cam1"), input(backup_port, "cam1b"));
    let output = format!("udp://{}", sink.local_addr().unwrap());
    let mut child = relay(&[
        "--events",
        "json",
        "--config",
        config.to_str().unwrap(),
        &primary_in,
        "--backup",
        &backup_in,
        &output,
    ]);
    let caller = |port: u16, id: &str| {
        let feed = free_udp().port();
        let sender = srt_live_transmit(
            &format!("udp://127.0.0.1:{feed}"),
            &format!("srt://127.0.0.1:{port}?mode=caller&streamid={id}&latency=80"),
        );
        (feed, sender)
    };
    let (mut primary_feed, mut primary) = caller(primary_port, "cam1");
    let (backup_feed, _backup) = caller(backup_port, "cam1b");
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    sink.set_nonblocking(true).unwrap();
    let mut n = 0u32;
    // Feed both for `how_long`, every 4 ms; what the relay sent on, with arrival times.
    let mut run = |how_long: Duration, primary_feed: u16| {
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        let mut got = Vec::new();
        while start.elapsed() < how_long {
            let _ = feed.send_to(&numbered(n, 1316), ("127.0.0.1", primary_feed));
            let _ = feed.send_to(&numbered(n + BACKUP, 1316), ("127.0.0.1", backup_feed));
            n += 1;
            std::thread::sleep(Duration::from_millis(4));
            while let Ok(len) = sink.recv(&mut buf) {
                if len >= 4 {
                    let x = u32::from_be_bytes(buf[..4].try_into().unwrap());
                    got.push((x, start.elapsed()));
                }
            }
        }
        got
    };
    let up = run(Duration::from_secs(3), primary_feed);
    let tail: Vec<u32> = up.iter().rev().take(100).map(|g| g.0).collect();
    assert!(
        tail.len() == 100 && tail.iter().all(|x| *x < BACKUP),
        "the primary first: {tail:?}"
    );

    // The primary's encoder crashes.
    primary.signal("KILL");
    drop(primary);
    let down = run(Duration::from_secs(4), primary_feed);
    let first_backup = down
        .iter()
        .find(|g| g.0 >= BACKUP)
        .expect("the backup's packets go out");
    let last_primary = down
        .iter()
        .rev()
        .find(|g| g.0 < BACKUP)
        .map_or(Duration::ZERO, |g| g.1);
    println!(
        "primary killed: its last packet out at {last_primary:?}, the backup's first at {:?}",
        first_backup.1
    );
    assert!(
        first_backup.1 < Duration::from_secs(2),
        "switched after {:?}",
        first_backup.1
    );
    assert!(down.iter().rev().take(100).all(|g| g.0 >= BACKUP));

    // The encoder is back: the primary again, 2 s after it delivers.
    (primary_feed, primary) = caller(primary_port, "cam1");
    let back = run(Duration::from_secs(6), primary_feed);
    let again = back
        .iter()
        .skip_while(|g| g.0 < BACKUP)
        .find(|g| g.0 < BACKUP)
        .expect("switched back to the primary");
    println!("primary restarted: its packets out again at {:?}", again.1);
    assert!(
        again.1 >= Duration::from_secs(2),
        "switched back after only {:?}",
        again.1
    );
    assert!(back.iter().rev().take(100).all(|g| g.0 < BACKUP));
    drop(primary);

    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
    let switches: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(r#""type":"source_switched""#))
        .collect();
    assert_eq!(switches.len(), 2, "{stderr}");
    assert!(
        switches[0].contains(r#""reason":"failed""#),
        "{}",
        switches[0]
    );
    assert!(
        switches[1].contains(r#""reason":"switch_back""#),
        "{}",
        switches[1]
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Datagrams the sink gets within `limit`, whole.
fn datagrams(sink: &UdpSocket, limit: Duration) -> Vec<Vec<u8>> {
    sink.set_read_timeout(Some(Duration::from_millis(20)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 2048];
    while start.elapsed() < limit {
        if let Ok(n) = sink.recv(&mut buf) {
            got.push(buf[..n].to_vec());
        }
    }
    got
}

fn is_null_fill(datagram: &[u8]) -> bool {
    datagram.len() == 1316
        && datagram
            .chunks(188)
            .all(|p| p[0] == 0x47 && u16::from_be_bytes([p[1] & 0x1F, p[2]]) == 0x1FFF)
}

#[test]
fn idle_fill_keeps_the_output_alive_while_no_source_delivers() {
    let input = free_udp();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let output = format!("udp://{}", sink.local_addr().unwrap());
    let mut child = relay(&["--idle-fill", "null", &format!("udp://{input}"), &output]);
    // Nobody sends: null packets, about 10 datagrams a second once 0.5 s passed.
    let idle = datagrams(&sink, Duration::from_secs(2));
    assert!(
        idle.iter().all(|d| is_null_fill(d)),
        "only null packets while idle"
    );
    assert!(
        (8..=20).contains(&idle.len()),
        "{} fill datagrams in 2 s",
        idle.len()
    );
    // Media: it alone goes out, whole.
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut media = Vec::new();
    for n in 0..100 {
        feed.send_to(&numbered(n, 1316), input).unwrap();
        std::thread::sleep(Duration::from_millis(4));
        media.extend(datagrams(&sink, Duration::from_millis(1)));
    }
    media.extend(datagrams(&sink, Duration::from_millis(200)));
    // A fill datagram may have been in flight as the first packet came.
    let real: Vec<&Vec<u8>> = media.iter().skip_while(|d| is_null_fill(d)).collect();
    assert!(real.len() >= 95, "{} of 100 relayed", real.len());
    assert!(
        real.iter().all(|d| !is_null_fill(d)),
        "no fill while media flows"
    );
    // The sender stops: fill again.
    let after = datagrams(&sink, Duration::from_secs(2));
    assert!(
        after.iter().filter(|d| is_null_fill(d)).count() >= 8,
        "fill back"
    );
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
    assert!(stderr.contains("idle fill sent"), "{stderr}");
}

#[test]
fn idle_fill_loops_a_slate_and_a_bad_slate_exits_2() {
    // 70 packets of 188 bytes on PID 0x100, PCRs 100 ms apart on the first and last.
    let dir = tempfile::tempdir().unwrap();
    let slate = dir.path().join("slate.ts");
    let mut ts = Vec::new();
    for i in 0..71u32 {
        let mut p = vec![0xFFu8; 188];
        p[..3].copy_from_slice(&[0x47, 0x01, 0x00]);
        p[3] = 0x10;
        if i == 0 || i == 70 {
            let base: u64 = if i == 0 { 90_000 } else { 99_000 };
            p[3] = 0x30;
            p[4] = 7;
            p[5] = 0x10;
            p[6] = (base >> 25) as u8;
            p[7] = (base >> 17) as u8;
            p[8] = (base >> 9) as u8;
            p[9] = (base >> 1) as u8;
            p[10] = ((base as u8 & 1) << 7) | 0x7E;
            p[11] = 0;
        }
        p[12] = i as u8;
        ts.extend(p);
    }
    std::fs::write(&slate, &ts).unwrap();
    let input = free_udp();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let output = format!("udp://{}", sink.local_addr().unwrap());
    let mut child = relay(&[
        "--idle-fill",
        slate.to_str().unwrap(),
        &format!("udp://{input}"),
        &output,
    ]);
    // One datagram every 10 ms once idle: 11 datagrams make the loop.
    let got = datagrams(&sink, Duration::from_secs(2));
    println!("{} slate datagrams in 2 s", got.len());
    assert!(got.len() >= 100, "{} slate datagrams in 2 s", got.len());
    let joined: Vec<u8> = got.concat();
    let start = joined
        .chunks(188)
        .position(|p| p[12] == 0 && p[3] == 0x30)
        .unwrap();
    let one_loop = &joined[start * 188..(start + 71) * 188];
    assert_eq!(one_loop, &ts[..], "the slate, whole and in order");
    child.signal("TERM");
    assert!(child.wait_exit(Duration::from_secs(10)).success());

    // Not TS: exit 2, naming the file.
    let bad = dir.path().join("bad.ts");
    std::fs::write(&bad, b"not a transport stream").unwrap();
    let mut child = relay(&["--idle-fill", bad.to_str().unwrap(), "udp://:1", "-"]);
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bad.ts") && stderr.contains("188"),
        "{stderr}"
    );
}

/// A streams file as the relay reads it.
fn streams_file(dir: &std::path::Path, text: &str) -> PathBuf {
    let path = dir.join("relay.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn a_bad_streams_file_exits_2_naming_the_stream_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let good = "streams:\n  - id: cam1\n    input: \"udp://127.0.0.1:0\"\n    output: \"-\"\n  - id: cam2\n    input: \"udp://127.0.0.1:0\"\n    output: \"-\"\n    reconnect: { max_retries: 3 }\n";
    let cases = [
        (
            good.replace("max_retries", "max_retires"),
            vec!["stream cam2", "max_retires"],
        ),
        (
            good.replace("id: cam2", "id: cam1"),
            vec!["stream cam1", "twice"],
        ),
        (
            good.replace(
                "output: \"-\"\n  - id: cam2",
                "output: \"tcp://x:1\"\n  - id: cam2",
            ),
            vec!["stream cam1", "output"],
        ),
        (
            format!("reconnect: {{ check_interval: 0s }}\n{good}"),
            vec!["reconnect", "check_interval"],
        ),
        ("streams: []\n".to_owned(), vec!["no streams"]),
        ("streams: nope\n".to_owned(), vec!["streams"]),
    ];
    let mut problems = Vec::new();
    for (text, needles) in cases {
        let path = streams_file(dir.path(), &text);
        let mut child = relay(&["--streams", path.to_str().unwrap()]);
        let status = child.wait_exit(Duration::from_secs(20));
        let stderr = child.stderr();
        if status.code() != Some(2)
            || stderr.trim_end().lines().count() != 1
            || !stderr.contains("relay.yaml")
            || needles.iter().any(|n| !stderr.contains(n))
        {
            problems.push(format!("{text:?}: exit {:?}, {stderr:?}", status.code()));
        }
    }
    let mut child = relay(&["--streams", "/nonexistent/relay.yaml"]);
    assert_eq!(child.wait_exit(Duration::from_secs(20)).code(), Some(2));
    let mut child = relay(&["--streams", "x.yaml", "udp://127.0.0.1:5000", "-"]);
    assert_eq!(child.wait_exit(Duration::from_secs(20)).code(), Some(2));
    assert!(child
        .stderr()
        .contains("--streams takes no INPUT and OUTPUT"));
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Three listener streams on one SRT port, each fed by its own srt-live-transmit
/// caller: one caller killed and restarted while the other two never stall, and a
/// caller of a stream id nobody serves refused.
#[test]
fn three_streams_on_one_listener_port_survive_one_caller_restarting() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_udp().port();
    let sinks: Vec<UdpSocket> = (0..3)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let mut text = String::from("reconnect: { silence: { floor: 50ms } }\nstreams:\n");
    for (i, sink) in sinks.iter().enumerate() {
        text.push_str(&format!(
            "  - id: cam{i}\n    input: \"srt://127.0.0.1:{port}?mode=listener&streamid=cam{i}&latency=80\"\n    output: \"udp://{}\"\n",
            sink.local_addr().unwrap()
        ));
    }
    let path = streams_file(dir.path(), &text);
    let metrics = free_tcp();
    let metrics_addr = metrics.to_string();
    let mut child = relay(&[
        "--events",
        "json",
        "--metrics-addr",
        &metrics_addr,
        "--streams",
        path.to_str().unwrap(),
    ]);
    let caller = |i: usize| {
        let feed = free_udp().port();
        let sender = srt_live_transmit(
            &format!("udp://127.0.0.1:{feed}"),
            &format!("srt://127.0.0.1:{port}?mode=caller&streamid=cam{i}&latency=80"),
        );
        (feed, sender)
    };
    let mut callers: Vec<(u16, ChildGuard)> = (0..3).map(caller).collect();
    for sink in &sinks {
        sink.set_nonblocking(true).unwrap();
    }
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut n = 0u32;
    // Feed every stream for `how_long`, every 4 ms; per stream, when packets came out.
    let mut run = |how_long: Duration, feeds: &[u16]| {
        let to: Vec<SocketAddr> = feeds
            .iter()
            .map(|port| SocketAddr::from(([127, 0, 0, 1], *port)))
            .collect();
        feed_all(&feed, &to, &sinks, 1316, how_long, &mut n)
    };
    let feeds = |callers: &[(u16, ChildGuard)]| callers.iter().map(|c| c.0).collect::<Vec<_>>();
    let up = run(Duration::from_secs(3), &feeds(&callers));
    for (i, times) in up.iter().enumerate() {
        assert!(times.len() > 300, "stream cam{i}: {} packets", times.len());
    }
    // One endpoint for all: every stream's row, and every stream's metrics.
    let rows: serde_json::Value = serde_json::from_str(&http_get(metrics, "/streams")).unwrap();
    let rows = rows.as_array().expect("a JSON array");
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row["id"], format!("cam{i}"), "{row}");
        assert_eq!(row["state"], "streaming", "{row}");
        assert!(row["bitrate_bps"].as_f64().unwrap() > 1e6, "{row}");
    }
    let text = http_get(metrics, "/metrics");
    for i in 0..3 {
        assert!(
            text.contains(&format!("stream_id=\"cam{i}\"")),
            "cam{i} in /metrics:\n{text}"
        );
    }

    // cam1's encoder crashes, and comes back 1 s later.
    callers[1].1.signal("KILL");
    let longest_gap = |times: &[Duration]| {
        times
            .windows(2)
            .map(|w| w[1] - w[0])
            .max()
            .unwrap_or(Duration::MAX)
    };
    let mut during = run(Duration::from_secs(1), &feeds(&callers));
    callers[1] = caller(1);
    let after = run(Duration::from_secs(4), &feeds(&callers));
    for i in [0, 2] {
        let mut times = std::mem::take(&mut during[i]);
        times.extend(after[i].iter().map(|t| *t + Duration::from_secs(1)));
        let gap = longest_gap(&times);
        println!("cam{i}: longest gap {gap:?} while cam1 restarted");
        assert!(gap < Duration::from_millis(500), "cam{i} stalled {gap:?}");
    }
    let back = after[1].len();
    assert!(back > 300, "cam1 after its restart: {back} packets");

    // A caller of a stream nobody serves is refused with a reject reason, and the
    // others go on.
    let refused = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            use tower::ServiceExt;
            let target = mirror_reconnect::protocol::srt::srt_target(&format!(
                "srt://127.0.0.1:{port}?mode=caller&streamid=nobody&latency=80"
            ))
            .unwrap();
            mirror_reconnect::protocol::srt::SrtConnector::new()
                .oneshot(target)
                .await
                .map(|_| ())
        })
        .expect_err("an unknown stream id is refused");
    println!("stream id nobody: {refused}");
    let kind = support::srt::connect_error_in(refused.as_ref()).map(|e| e.kind());
    assert_eq!(
        kind,
        Some(mirror_reconnect::error::ConnectErrorKind::Rejected),
        "{refused}"
    );
    let last = run(Duration::from_secs(1), &feeds(&callers));
    assert!(last.iter().all(|t| t.len() > 100), "all three still flow");

    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
}

/// A stream that gives up is reported and ends alone: the other goes on, and the
/// process says so at its end (exit 1).
#[test]
fn a_stream_that_gives_up_leaves_the_others_running() {
    let dir = tempfile::tempdir().unwrap();
    let input = free_udp();
    let sink = UdpSocket::bind("127.0.0.1:0").unwrap();
    let dead = free_udp();
    let text = format!(
        "streams:\n  - id: alive\n    input: \"udp://{input}\"\n    output: \"udp://{}\"\n  - id: doomed\n    input: \"srt://{dead}?mode=caller&streamid=doomed\"\n    output: \"-\"\n    reconnect: {{ max_retries: 0, attempt_timeout: 300ms }}\n",
        sink.local_addr().unwrap()
    );
    let path = streams_file(dir.path(), &text);
    let mut child = relay(&["--quiet", "--streams", path.to_str().unwrap()]);
    sink.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut buf = [0u8; 2048];
    let mut got = 0;
    let start = Instant::now();
    // Long after the doomed stream gave up (one 300 ms attempt), the other flows.
    while start.elapsed() < Duration::from_secs(4) {
        let _ = feed.send_to(&numbered(got, 188), input);
        if sink.recv(&mut buf).is_ok() && start.elapsed() > Duration::from_secs(3) {
            got += 1;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(got > 20, "the other stream flows: {got} late packets");
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("mirror-relay: stream doomed: "), "{stderr}");
    assert!(stderr.contains("1 stream ended in failure"), "{stderr}");
    assert!(!stderr.contains("stream alive:"), "{stderr}");
}

fn free_tcp() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], support::ports::free_tcp_port()))
}

/// The metrics endpoint answers `--metrics-clients` clients at once: connections that
/// send no request (a flood, or stuck scrapers) cannot make it take more, and the next
/// scrape is answered once one of them is gone.
#[test]
fn the_metrics_endpoint_answers_at_most_metrics_clients_at_once() {
    use std::io::{ErrorKind, Read, Write};
    use std::net::TcpStream;
    let metrics = free_tcp();
    let input = format!("udp://{}", free_udp());
    let mut child = relay(&[
        "--metrics-addr",
        &metrics.to_string(),
        "--metrics-clients",
        "2",
        &input,
        "-",
    ]);
    let start = Instant::now();
    while TcpStream::connect(metrics).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no metrics endpoint"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The probe above may still hold a turn until its empty request is answered.
    http_get(metrics, "/metrics");
    // Two clients that say nothing take both turns (accepted first: they came first).
    let mut idle: Vec<TcpStream> = (0..2)
        .map(|_| TcpStream::connect(metrics).unwrap())
        .collect();
    let mut third = TcpStream::connect(metrics).unwrap();
    write!(third, "GET /metrics HTTP/1.1\r\nHost: {metrics}\r\n\r\n").unwrap();
    third
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let mut byte = [0u8; 1];
    match third.read(&mut byte) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("a third client answered while two hold their turn: {other:?}"),
    }
    // One goes: the third's turn.
    drop(idle.remove(0));
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut reply = String::new();
    third.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.1 200 "), "{reply}");
    drop(idle);

    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "{}", child.stderr());
}

/// The body of `GET path` on `addr`, after a 200.
fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut reply = String::new();
    stream.read_to_string(&mut reply).unwrap();
    let (head, body) = reply.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 200 "), "{head}");
    body.to_owned()
}

/// SIGHUP re-reads the streams file: a removed stream stops (its input port freed),
/// an added one starts, a changed one restarts with its new output, and an unchanged
/// one never stalls; a file that does not load is reported and changes nothing.
#[test]
fn sighup_adds_removes_and_changes_streams_and_leaves_the_others_alone() {
    let dir = tempfile::tempdir().unwrap();
    let inputs: Vec<SocketAddr> = (0..4).map(|_| free_udp()).collect();
    let [keep_in, gone_in, change_in, new_in] = inputs[..] else {
        unreachable!()
    };
    let sinks: Vec<UdpSocket> = (0..5)
        .map(|_| UdpSocket::bind("127.0.0.1:0").unwrap())
        .collect();
    let sink_addr = |i: usize| sinks[i].local_addr().unwrap();
    let stream = |id: &str, input: SocketAddr, sink: SocketAddr| {
        format!("  - id: {id}\n    input: \"udp://{input}\"\n    output: \"udp://{sink}\"\n")
    };
    let before = format!(
        "streams:\n{}{}{}",
        stream("keep", keep_in, sink_addr(0)),
        stream("gone", gone_in, sink_addr(1)),
        stream("change", change_in, sink_addr(2)),
    );
    let after = format!(
        "streams:\n{}{}{}",
        stream("keep", keep_in, sink_addr(0)),
        stream("change", change_in, sink_addr(3)),
        stream("new", new_in, sink_addr(4)),
    );
    let path = streams_file(dir.path(), &before);
    let metrics = free_tcp();
    let metrics_addr = metrics.to_string();
    let mut child = relay(&[
        "--metrics-addr",
        &metrics_addr,
        "--streams",
        path.to_str().unwrap(),
    ]);
    for sink in &sinks {
        sink.set_nonblocking(true).unwrap();
    }
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Feed every input for `how_long`; per sink, when datagrams came out.
    let mut n = 0u32;
    let mut run = |how_long: Duration| feed_all(&feed, &inputs, &sinks, 188, how_long, &mut n);
    let first = run(Duration::from_millis(1500));
    for (i, times) in first.iter().enumerate().take(3) {
        assert!(times.len() > 100, "sink {i}: {}", times.len());
    }

    std::fs::write(&path, &after).unwrap();
    child.signal("HUP");
    let reload = run(Duration::from_secs(3));
    // From the re-read's start to keep's first packet, then between its packets.
    let longest = reload[0]
        .windows(2)
        .map(|w| w[1] - w[0])
        .chain(reload[0].first().copied())
        .max()
        .unwrap();
    println!("keep: longest gap {longest:?} across the re-read");
    assert!(
        longest < Duration::from_millis(300),
        "keep stalled {longest:?}"
    );
    let late = |times: &[Duration]| {
        times
            .iter()
            .filter(|t| **t > Duration::from_secs(2))
            .count()
    };
    assert_eq!(late(&reload[1]), 0, "the removed stream still relays");
    assert_eq!(
        late(&reload[2]),
        0,
        "the changed stream still uses its old output"
    );
    assert!(late(&reload[3]) > 100, "the changed stream's new output");
    assert!(late(&reload[4]) > 100, "the added stream");
    // The removed stream let go of its input.
    UdpSocket::bind(gone_in).expect("the removed stream's port is free");
    let rows: serde_json::Value = serde_json::from_str(&http_get(metrics, "/streams")).unwrap();
    let ids: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["change", "keep", "new"]);

    // A file that does not load: said, and nothing changes.
    std::fs::write(&path, "streams: [\n").unwrap();
    child.signal("HUP");
    let bad = run(Duration::from_secs(1));
    for i in [0, 3, 4] {
        assert!(bad[i].len() > 100, "sink {i} after a bad file");
    }
    child.signal("TERM");
    let status = child.wait_exit(Duration::from_secs(10));
    let stderr = child.stderr();
    assert!(status.success(), "{stderr}");
    assert!(
        stderr.contains("the running streams go on"),
        "the bad file is reported: {stderr}"
    );
}

/// Send numbered datagrams of `size` bytes to every address of `to` every 4 ms for
/// `how_long` (numbers from `n` on); per sink, when datagrams came out.
fn feed_all(
    feed: &UdpSocket,
    to: &[SocketAddr],
    sinks: &[UdpSocket],
    size: usize,
    how_long: Duration,
    n: &mut u32,
) -> Vec<Vec<Duration>> {
    let mut buf = [0u8; 2048];
    let start = Instant::now();
    let mut got: Vec<Vec<Duration>> = vec![Vec::new(); sinks.len()];
    while start.elapsed() < how_long {
        for addr in to {
            let _ = feed.send_to(&numbered(*n, size), addr);
        }
        *n += 1;
        std::thread::sleep(Duration::from_millis(4));
        for (i, sink) in sinks.iter().enumerate() {
            while sink.recv(&mut buf).is_ok() {
                got[i].push(start.elapsed());
            }
        }
    }
    got
}
