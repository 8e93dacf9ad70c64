//! The live status line, and what it counts.

use std::io::Write;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

use mirror_reconnect::driver::{EventType, Events};
use mirror_reconnect::health::{ConnectionHealth, HealthHandle};

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

/// A stream's state in words.
fn state(tally: &Tally, h: &ConnectionHealth) -> &'static str {
    match tally.state.load(Ordering::Relaxed) {
        0 => "connecting",
        1 if h.is_connected => "streaming",
        3 => "failed",
        4 => "probing",
        _ => "reconnecting",
    }
}

/// One stream, as `GET /streams` shows it.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) state: &'static str,
    pub(crate) active_source: String,
    pub(crate) bitrate_bps: f64,
    pub(crate) packets: u64,
    pub(crate) loss: f64,
    pub(crate) uptime_secs: f64,
    pub(crate) reconnects: u32,
}

impl Row {
    pub(crate) fn of(
        id: &str,
        source: &str,
        tally: &Tally,
        health: &HealthHandle,
        bits_per_second: f64,
    ) -> Self {
        let h = health.check_health();
        Self {
            id: id.to_owned(),
            state: state(tally, &h),
            active_source: source.to_owned(),
            bitrate_bps: bits_per_second,
            packets: h.packet_count,
            loss: h.packet_loss,
            uptime_secs: h.connection_age.as_secs_f64(),
            reconnects: tally.reconnects(),
        }
    }
}

/// Every stream's latest row, by id: what each stream's loop writes once a second
/// and `GET /streams` reads.
#[derive(Debug, Clone, Default)]
pub(crate) struct Board(Arc<std::sync::Mutex<std::collections::BTreeMap<String, Row>>>);

impl Board {
    pub(crate) fn set(&self, row: Row) {
        let mut rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rows.insert(row.id.clone(), row);
    }

    /// A stream that is waiting (for its lease) or has ended.
    pub(crate) fn mark(&self, id: &str, state: &'static str) {
        let mut rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let row = rows.entry(id.to_owned()).or_insert_with(|| Row {
            id: id.to_owned(),
            ..Row::default()
        });
        row.state = state;
        row.bitrate_bps = 0.0;
    }

    /// A stream no longer in the streams file.
    pub(crate) fn forget(&self, id: &str) {
        let mut rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rows.remove(id);
    }

    /// Every row, as a JSON array ordered by id.
    pub(crate) fn json(&self) -> String {
        let rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let rows: Vec<&Row> = rows.values().collect();
        serde_json::to_string(&rows).unwrap_or_else(|_| "[]".to_owned())
    }
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
    let state = state(tally, &h);
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
