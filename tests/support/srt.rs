//! Helpers shared by the SRT tests: a fast config, free ports, numbered payloads,
//! event recording, and a guard that kills child processes.

#![allow(clippy::unwrap_used)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use mirror_reconnect::config::ReconnectionConfig;
use mirror_reconnect::driver::{EventType, Events, ReconnectionEvent};
use mirror_reconnect::error::ConnectError;

/// The default config, tuned so that tests reconnect in tens of milliseconds.
pub fn fast_config() -> ReconnectionConfig {
    let mut config = ReconnectionConfig {
        max_retries: 40,
        initial_delay: Duration::from_millis(50),
        max_delay: Duration::from_millis(300),
        use_jitter: false,
        check_interval: Duration::from_millis(100),
        first_packet_timeout: Duration::from_secs(5),
        ..ReconnectionConfig::default()
    };
    config.srt.connect_timeout = Duration::from_secs(3);
    config
}

pub use super::ports::free_udp_port;

/// A loopback address with a free UDP port.
pub fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_udp_port()))
}

/// A payload carrying `round` and `index`, padded to `len` bytes.
pub fn numbered(round: u32, index: u32, len: usize) -> Bytes {
    let mut b = BytesMut::with_capacity(len.max(8));
    b.put_u32(round);
    b.put_u32(index);
    b.resize(len.max(8), 0xab);
    b.freeze()
}

/// The `(round, index)` of a numbered payload.
pub fn number_of(payload: &[u8]) -> Option<(u32, u32)> {
    if payload.len() < 8 {
        return None;
    }
    let round = u32::from_be_bytes(payload[0..4].try_into().ok()?);
    let index = u32::from_be_bytes(payload[4..8].try_into().ok()?);
    Some((round, index))
}

/// Every event of `events`, as they happen.
#[derive(Clone, Default)]
pub struct Recorder(Arc<Mutex<Vec<(std::time::Instant, ReconnectionEvent)>>>);

impl Recorder {
    pub fn attach(events: &Events) -> Self {
        let recorder = Self::default();
        let inner = Arc::clone(&recorder.0);
        events.on_event(move |e| {
            inner
                .lock()
                .unwrap()
                .push((std::time::Instant::now(), e.clone()));
        });
        recorder
    }

    pub fn all(&self) -> Vec<ReconnectionEvent> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| e.clone())
            .collect()
    }

    pub fn timed(&self) -> Vec<(std::time::Instant, ReconnectionEvent)> {
        self.0.lock().unwrap().clone()
    }

    pub fn count(&self, kind: EventType) -> usize {
        self.all().iter().filter(|e| e.event_type == kind).count()
    }

    pub fn of(&self, kind: EventType) -> Vec<ReconnectionEvent> {
        self.all()
            .into_iter()
            .filter(|e| e.event_type == kind)
            .collect()
    }
}

/// The [`ConnectError`] somewhere in `error`'s source chain.
pub fn connect_error_in<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a ConnectError> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(c) = e.downcast_ref::<ConnectError>() {
            return Some(c);
        }
        current = e.source();
    }
    None
}

pub use super::process::ChildGuard;

/// Whether a program is on the PATH (tests that need it say so and fail without it).
pub fn have(program: &str) -> bool {
    std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {program}"))
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// libsrt's `srt-live-transmit INPUT OUTPUT`, quiet, 1316-byte chunks, killed with its
/// guard. Panics, saying how to install it, when it is missing.
pub fn live_transmit(name: &str, input: &str, output: &str) -> ChildGuard {
    assert!(
        have("srt-live-transmit"),
        "srt-live-transmit is missing: apt-get install srt-tools (scripts/test.sh does)"
    );
    let child = std::process::Command::new("srt-live-transmit")
        .args(["-q", "-ll", "fatal", "-chunk", "1316", input, output])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("cannot start srt-live-transmit");
    ChildGuard::new(name, child)
}

/// ffmpeg making a 25 fps MPEG-2 test pattern as MPEG-TS, sent to `output` (any URL
/// ffmpeg takes: `udp://…?pkt_size=1316`, its native `srt://…`).
pub fn ffmpeg_test_pattern(output: &str) -> ChildGuard {
    let child = std::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-nostdin",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-c:v",
            "mpeg2video",
            "-b:v",
            "800k",
            "-f",
            "mpegts",
            output,
        ])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("ffmpeg runs (scripts/test.sh installs it)");
    ChildGuard::new("ffmpeg", child)
}

/// Each test written once, run on both SRT connectors: in `mod on_srt_tokio` with
/// `Under` = `SrtConnector` and `UnderConnection` = `SrtConnection`, and (feature
/// `libsrt`) in `mod on_libsrt` with `LibSrtConnector` / `LibSrtConnection`. The bodies see
/// the test file's items through `use super::*`.
#[allow(unused_macros)]
macro_rules! on_both_connectors {
    ($($(#[$attr:meta])* async fn $name:ident() $body:block)*) => {
        mod on_srt_tokio {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use mirror_reconnect::protocol::srt::{
                SrtConnection as UnderConnection, SrtConnector as Under,
            };
            $($(#[$attr])* async fn $name() $body)*
        }
        #[cfg(feature = "libsrt")]
        mod on_libsrt {
            #[allow(unused_imports)]
            use super::*;
            #[allow(unused_imports)]
            use mirror_reconnect::protocol::srt::{
                LibSrtConnection as UnderConnection, LibSrtConnector as Under,
            };
            $($(#[$attr])* async fn $name() $body)*
        }
    };
}
pub(crate) use on_both_connectors;
