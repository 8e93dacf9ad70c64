//! The example programs, run as a user runs them, so they cannot rot.
#![cfg(all(feature = "srt", feature = "rtp"))]

mod support;

use std::net::UdpSocket;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::process::ChildGuard;

/// An example program built by `cargo build --examples` (scripts/test.sh does).
fn example(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let bin: PathBuf = dir.join("examples").join(name);
    assert!(
        bin.exists(),
        "{} is missing: build it with `cargo build --all-features --examples`",
        bin.display()
    );
    let mut command = Command::new(bin);
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn free_port() -> u16 {
    support::ports::free_udp_port()
}

/// The largest "N packets/s" figure the example printed.
fn best_rate(stdout: &str) -> u64 {
    stdout
        .lines()
        .filter_map(|l| l.split(" packets/s").next()?.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn scripted_failures_runs_to_its_end() {
    let out = ChildGuard::new(
        "scripted_failures",
        example("scripted_failures").spawn().unwrap(),
    )
    .finish(Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(r#""type":"reconnection_succeeded""#),
        "{stdout}"
    );
    assert!(
        stdout.contains("packets delivered as one stream"),
        "{stdout}"
    );
}

#[test]
fn rtp_receiver_counts_what_it_receives() {
    let port = free_port();
    let child = example("rtp_receiver")
        .args([format!("127.0.0.1:{port}"), "--duration".into(), "3".into()])
        .spawn()
        .unwrap();
    let guard = ChildGuard::new("example", child);
    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    let mut seq = 0u16;
    while start.elapsed() < Duration::from_millis(3_500) {
        let mut p = vec![0u8; 12 + 188];
        p[0] = 0x80;
        p[1] = 33;
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 900).to_be_bytes());
        p[8..12].copy_from_slice(&0xfeed_f00du32.to_be_bytes());
        let _ = sender.send_to(&p, ("127.0.0.1", port));
        seq = seq.wrapping_add(1);
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = guard.finish(Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        best_rate(&stdout) >= 50,
        "about 100 packets/s were sent: {stdout}"
    );
}

#[test]
fn srt_receiver_counts_what_libsrt_sends() {
    let port = free_port();
    let child = example("srt_receiver")
        .args([
            format!("srt://127.0.0.1:{port}?mode=listener&streamid=cam1"),
            "--duration".into(),
            "4".into(),
        ])
        .spawn()
        .unwrap();
    let guard = ChildGuard::new("example", child);
    let feed_port = free_port();
    let sender = ChildGuard::new(
        "srt-live-transmit",
        Command::new("srt-live-transmit")
            .args([
                "-q",
                &format!("udp://127.0.0.1:{feed_port}"),
                &format!("srt://127.0.0.1:{port}?streamid=cam1"),
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("srt-live-transmit (scripts/test.sh installs srt-tools)"),
    );
    let feed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(4_500) {
        let _ = feed.send_to(&[0x47u8; 1316], ("127.0.0.1", feed_port));
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = guard.finish(Duration::from_secs(30));
    drop(sender);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        best_rate(&stdout) >= 50,
        "about 200 packets/s were sent: {stdout}"
    );
}
