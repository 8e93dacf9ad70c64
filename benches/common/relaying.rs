//! Shared by the benches that run relaying programs (`srt_relay`, `relay_scale`): where
//! the relay program is, whether the programs needed are there, and a process's CPU
//! time.
//!
//! Include with `#[path = "common/relaying.rs"] mod relaying;`, beside `net_figures`
//! and `quick` (it opens the bench's section with them).
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

/// The bench's section, opened with the quick-run notice; `None` when the bench
/// cannot measure (`srt-live-transmit` or the relay's build is missing), once the
/// section is written saying so.
pub fn open_section(bench: &'static str, title: &str) -> Option<crate::net_figures::Section> {
    let mut section = crate::net_figures::Section::new(bench, title);
    if let Some(notice) = crate::quick::notice() {
        section.para(&notice);
    }
    let missing = if !crate::net_figures::have("srt-live-transmit") {
        Some("Not measured: srt-live-transmit is missing (Debian: srt-tools).".to_owned())
    } else if !relay_binary().exists() {
        Some(format!(
            "Not measured: {} is missing (cargo build --release --all-features --bin mirror-relay).",
            relay_binary().display()
        ))
    } else {
        None
    };
    match missing {
        Some(why) => {
            section.para(&why);
            section.finish();
            None
        }
        None => Some(section),
    }
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
