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

    /// Every row, ordered by id.
    pub(crate) fn rows(&self) -> Vec<Row> {
        let rows = self.0.lock().unwrap_or_else(|p| p.into_inner());
        rows.values().cloned().collect()
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

/// The most streams the live table shows; the rest are counted on its last line
/// (`GET /streams` has them all).
pub(crate) const TABLE_ROWS: usize = 40;

/// The live table of a streams file's streams: a header, a line per stream (the
/// first [`TABLE_ROWS`] by id), and how many more there are.
pub(crate) fn table(rows: &[Row]) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<20} {:<12} {:<24} {:>9} {:>7} {:>8} {:>10}",
        "STREAM", "STATE", "SOURCE", "Mb/s", "LOSS", "UP", "RECONNECTS"
    )];
    for row in rows.iter().take(TABLE_ROWS) {
        lines.push(format!(
            "{:<20} {:<12} {:<24} {:>9.2} {:>6.2}% {:>8} {:>10}",
            clip(&row.id, 20),
            row.state,
            clip_start(&row.active_source, 24),
            row.bitrate_bps / 1e6,
            row.loss * 100.0,
            clock(Duration::try_from_secs_f64(row.uptime_secs).unwrap_or_default()),
            row.reconnects,
        ));
    }
    if rows.len() > TABLE_ROWS {
        lines.push(format!(
            "… and {} more (GET /streams lists every stream)",
            rows.len() - TABLE_ROWS
        ));
    }
    lines
}

/// `text` cut to its last `width` characters, the cut marked: a source's URL differs
/// from the others at its end (the port, the stream id).
fn clip_start(text: &str, width: usize) -> String {
    let count = text.chars().count();
    if count <= width {
        return text.to_owned();
    }
    let mut cut = String::from("…");
    cut.extend(text.chars().skip(count - width.saturating_sub(1)));
    cut
}

/// `text` cut to `width` characters, the cut marked.
fn clip(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// The terminal's live table and the lines printed around it: whatever else writes
/// to stderr (log lines, a stream's end) first erases the table, then the table is
/// drawn again below it, so neither overwrites the other.
pub(crate) mod screen {
    use std::io::Write;
    use std::sync::{Mutex, MutexGuard};

    /// How many lines of table are on the terminal now, at its bottom.
    static DRAWN: Mutex<usize> = Mutex::new(0);

    fn drawn() -> MutexGuard<'static, usize> {
        DRAWN.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Move up over the `drawn` lines of table and clear them.
    pub(super) fn erase_to(out: &mut impl Write, drawn: &mut usize) {
        if *drawn > 0 {
            let _ = write!(out, "\x1b[{}A\x1b[J", *drawn);
            *drawn = 0;
        }
    }

    /// Replace the table drawn before (if still there) with `lines`.
    pub(super) fn draw_to(out: &mut impl Write, drawn: &mut usize, lines: &[String]) {
        erase_to(out, drawn);
        for line in lines {
            let _ = writeln!(out, "\x1b[2K{line}");
        }
        *drawn = lines.len();
        let _ = out.flush();
    }

    /// Draw the table on stderr.
    pub(crate) fn draw(lines: &[String]) {
        let mut drawn = drawn();
        draw_to(&mut std::io::stderr().lock(), &mut drawn, lines);
    }

    /// Print `line` on stderr above the table (the table is drawn again at its next
    /// tick).
    pub(crate) fn say(line: &str) {
        let mut drawn = drawn();
        let mut err = std::io::stderr().lock();
        erase_to(&mut err, &mut drawn);
        let _ = writeln!(err, "{line}");
    }

    /// Stderr for the log: each log line first erases the table, and holds the
    /// screen while it is written so the table is not drawn in its middle.
    pub(crate) struct LogWriter;

    /// One log line being written.
    pub(crate) struct LogLine {
        _drawn: MutexGuard<'static, usize>,
        err: std::io::StderrLock<'static>,
    }

    impl Write for LogLine {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.err.write(buf)
        }

        fn flush(&mut self) -> std::io::Result<()> {
            self.err.flush()
        }
    }

    impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
        type Writer = LogLine;

        fn make_writer(&'a self) -> LogLine {
            let mut drawn = drawn();
            let mut err = std::io::stderr().lock();
            erase_to(&mut err, &mut drawn);
            LogLine { _drawn: drawn, err }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str) -> Row {
        Row {
            id: id.to_owned(),
            state: "streaming",
            active_source: "primary".to_owned(),
            bitrate_bps: 4_500_000.0,
            packets: 10,
            loss: 0.012,
            uptime_secs: 3725.0,
            reconnects: 2,
        }
    }

    #[test]
    fn the_table_shows_each_stream_and_counts_those_past_its_rows() {
        let lines = table(&[row("cam1"), row("a-very-long-stream-identifier")]);
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("STREAM"));
        assert!(lines[1].starts_with("cam1 "), "{}", lines[1]);
        for field in ["streaming", "primary", "4.50", "1.20%", "01:02:05", " 2"] {
            assert!(lines[1].contains(field), "{field} in {}", lines[1]);
        }
        assert!(lines[2].starts_with("a-very-long-stream-…"), "{}", lines[2]);
        let mut long = row("cam3");
        long.active_source = "srt://10.0.0.5:9000?mode=caller&streamid=cam3".to_owned();
        let line = &table(&[long])[1];
        assert!(line.contains(" …de=caller&streamid=cam3 "), "{line}");
        let many: Vec<Row> = (0..TABLE_ROWS + 5)
            .map(|i| row(&format!("cam{i}")))
            .collect();
        let lines = table(&many);
        assert_eq!(lines.len(), 1 + TABLE_ROWS + 1);
        assert!(lines.last().is_some_and(|l| l.starts_with("… and 5 more")));
    }

    #[test]
    fn a_line_said_erases_the_table_and_the_next_draw_starts_below_it() {
        let mut out = Vec::new();
        let mut drawn = 0;
        screen::draw_to(&mut out, &mut drawn, &["h".to_owned(), "r1".to_owned()]);
        assert_eq!(drawn, 2);
        // Redrawn in place: up over the two lines, cleared, drawn again.
        screen::draw_to(&mut out, &mut drawn, &["h".to_owned(), "r2".to_owned()]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\x1b[2Kh\n\x1b[2Kr1\n\x1b[2A\x1b[J\x1b[2Kh\n\x1b[2Kr2\n"
        );
        // A log line: the table goes first, and the next draw does not move up.
        out.clear();
        screen::erase_to(&mut out, &mut drawn);
        out.extend_from_slice(b"log\n");
        screen::draw_to(&mut out, &mut drawn, &["h".to_owned()]);
        assert_eq!(
            String::from_utf8_lossy(&out),
            "\x1b[2A\x1b[Jlog\n\x1b[2Kh\n"
        );
    }
}
