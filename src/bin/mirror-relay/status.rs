//! The live status line, and what it counts.

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mirror_reconnect::driver::{EventType, Events};
use mirror_reconnect::health::HealthHandle;

/// What the events tell about a stream, for the status line.
#[derive(Default)]
pub(crate) struct Tally {
    reconnects: AtomicU32,
    /// The backoff waited before the latest attempt, in milliseconds.
    backoff_ms: AtomicU64,
    /// 0 connecting, 1 streaming, 2 reconnecting, 3 failed, 4 probing.
    state: AtomicU8,
}

impl Tally {
    pub(crate) fn watch(events: &Events) -> Arc<Self> {
        let tally = Arc::new(Self::default());
        let t = Arc::clone(&tally);
        events.on_event(move |event| match event.event_type {
            EventType::FailureDetected | EventType::ReconnectionStarted => {
                t.state.store(2, Ordering::Relaxed);
            }
            EventType::Probing => {
                t.state.store(4, Ordering::Relaxed);
            }
            EventType::ReconnectionAttempt => {
                let _ = t
                    .state
                    .compare_exchange(4, 2, Ordering::Relaxed, Ordering::Relaxed);
                let delay = event.delay.unwrap_or_default();
                t.backoff_ms
                    .store(delay.as_millis() as u64, Ordering::Relaxed);
            }
            EventType::ReconnectionSucceeded => {
                t.reconnects.fetch_add(1, Ordering::Relaxed);
                t.state.store(1, Ordering::Relaxed);
            }
            EventType::ReconnectionFailed | EventType::ReconnectionAborted => {
                t.state.store(3, Ordering::Relaxed);
            }
            // Probes answered, backoff resets, source switches (and what a later
            // version adds) leave the state as it is.
            _ => {}
        });
        tally
    }

    pub(crate) fn streaming(&self) {
        let _ = self
            .state
            .compare_exchange(0, 1, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub(crate) fn reconnects(&self) -> u32 {
        self.reconnects.load(Ordering::Relaxed)
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// One status line: state, bitrate, packets, loss, uptime, reconnects, backoff.
pub(crate) fn line(
    stream_id: &str,
    tally: &Tally,
    health: &HealthHandle,
    bits_per_second: f64,
    extra: &str,
) -> String {
    let h = health.check_health();
    let state = match tally.state.load(Ordering::Relaxed) {
        0 => "connecting",
        1 if h.is_connected => "streaming",
        3 => "failed",
        4 => "probing",
        _ => "reconnecting",
    };
    format!(
        "{stream_id} {state:<12} {:>7.2} Mb/s {:>9} pkts loss {:>5.2}% up {} reconnects {} backoff {:.1}s {extra}",
        bits_per_second / 1e6,
        h.packet_count,
        h.packet_loss * 100.0,
        clock(h.connection_age),
        tally.reconnects(),
        tally.backoff_ms.load(Ordering::Relaxed) as f64 / 1000.0,
    )
}

/// Rewrite the terminal's current line.
pub(crate) fn show(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = write!(err, "\r\x1b[2K{text}");
    let _ = err.flush();
}

/// End the status line so what follows starts on its own line.
pub(crate) fn finish() {
    let _ = writeln!(std::io::stderr());
}
