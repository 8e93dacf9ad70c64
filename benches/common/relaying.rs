//! Shared by the benches that run relaying programs (`srt_relay`, `relay_scale`): where
//! the relay program is, whether the programs needed are there, and a process's CPU
//! time.
//!
//! Include with `#[path = "common/relaying.rs"] mod relaying;`.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::time::Duration;

/// The release build of `mirror-relay` (honours `CARGO_TARGET_DIR`).
pub fn relay_binary() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release").join("mirror-relay")
}

/// Why the bench cannot measure (`srt-live-transmit` or the relay's build is
/// missing), as the paragraph its section says instead; `None` when it can.
pub fn not_measurable(have: impl Fn(&str) -> bool) -> Option<String> {
    if !have("srt-live-transmit") {
        return Some("Not measured: srt-live-transmit is missing (Debian: srt-tools).".to_owned());
    }
    if !relay_binary().exists() {
        return Some(format!(
            "Not measured: {} is missing (cargo build --release --all-features --bin mirror-relay).",
            relay_binary().display()
        ));
    }
    None
}

/// CPU time of every thread of `pid`, now; `None` when the process is gone. A thread
/// that ended since the listing counts nothing.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let mut total = 0u64;
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))
        .ok()?
        .flatten()
    {
        let Ok(text) = std::fs::read_to_string(entry.path().join("schedstat")) else {
            continue;
        };
        total += text.split_whitespace().next()?.parse::<u64>().ok()?;
    }
    Some(Duration::from_nanos(total))
}
