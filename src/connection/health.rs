use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

use super::sequence::{SeqEvent, SeqTracker};
use super::{ConnectionState, Packet};

const NEVER: u64 = u64::MAX;

/// A shared handle on a stream's [`HealthChecker`].
pub type HealthHandle = Arc<HealthChecker>;

/// The health of a stream's current connection, as [`HealthChecker::check_health`]
/// reports it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ConnectionHealth {
    /// Whether a connection is up.
    pub is_connected: bool,
    /// When the last packet arrived on it, if any did.
    pub last_seen: Option<Instant>,
    /// Packets received on this connection.
    pub packet_count: u64,
    /// Bad packets and errors on this connection.
    pub error_count: u64,
    /// The round-trip time the protocol reports (read as packets arrive, at most
    /// every 500 ms); `None` when it reports none.
    pub latency: Option<Duration>,
    /// Fraction of packets lost on this connection, from 0.0 to 1.0: measured from
    /// sequence gaps when packets are numbered, else against the expected packet rate
    /// when one is set; 0.0 when neither is known.
    pub packet_loss: f64,
    /// How long this connection has been up (zero when none is).
    pub connection_age: Duration,
}

/// Raw counters of the current connection, for callers that compute rates over
/// their own windows (the failure detector does).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HealthCounters {
    /// Packets received.
    pub packets: u64,
    /// Payload bytes received.
    pub bytes: u64,
    /// Bad packets and errors.
    pub errors: u64,
    /// Packets the sequence numbers say were sent (received + lost).
    pub expected: u64,
    /// Packets the sequence numbers say were lost (gaps not filled later).
    pub lost: u64,
    /// Packets received twice.
    pub duplicates: u64,
}

/// Lock-free health accounting for one stream.
///
/// Written by the connection wrapper ([`Monitored`](crate::health::Monitored)) as packets pass;
/// read by anyone holding a [`HealthHandle`]. Every counter is a relaxed atomic: readers
/// see a consistent-enough picture without ever slowing the media down.
#[derive(Debug)]
pub struct HealthChecker {
    epoch: Instant,
    expected_rate: Option<f64>,
    /// Connections counting into this checker now (two while a suspected one races
    /// its replacement).
    live: AtomicU32,
    connected_at: AtomicU64,
    last_seen: AtomicU64,
    packets: AtomicU64,
    bytes: AtomicU64,
    errors: AtomicU64,
    expected: AtomicU64,
    lost: AtomicU64,
    duplicates: AtomicU64,
    latency: AtomicU64,
    /// What the connections before the current one counted.
    earlier_packets: AtomicU64,
    earlier_bytes: AtomicU64,
    earlier_errors: AtomicU64,
}

impl HealthChecker {
    /// A checker with no connection yet. `expected_rate` (packets per second), when
    /// given, measures loss for packets that carry no sequence number.
    pub(crate) fn new(expected_rate: Option<f64>) -> Self {
        Self {
            epoch: Instant::now(),
            expected_rate: expected_rate.filter(|r| r.is_finite() && *r > 0.0),
            live: AtomicU32::new(0),
            connected_at: AtomicU64::new(0),
            last_seen: AtomicU64::new(NEVER),
            packets: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            expected: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
            latency: AtomicU64::new(NEVER),
            earlier_packets: AtomicU64::new(0),
            earlier_bytes: AtomicU64::new(0),
            earlier_errors: AtomicU64::new(0),
        }
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        // u64 arithmetic rather than `as_nanos` (u128): this runs for every packet, and
        // 2^64 ns is 584 years of uptime.
        let d = at.saturating_duration_since(self.epoch);
        d.as_secs()
            .wrapping_mul(1_000_000_000)
            .wrapping_add(u64::from(d.subsec_nanos()))
            .min(NEVER - 1)
    }

    fn instant(&self, nanos: u64) -> Instant {
        self.epoch + Duration::from_nanos(nanos)
    }

    /// Start counting a new connection, up since `now`: every counter restarts at zero
    /// (what the last connection counted moves into the stream's [`totals`](Self::totals)).
    pub(crate) fn connection_started(&self, now: Instant) {
        // Reset first, then carry over: a reader in between sees a total briefly too
        // low, never one counted twice, so totals read over time never go backwards
        // for good.
        let before = self.counters();
        for counter in [
            &self.packets,
            &self.bytes,
            &self.errors,
            &self.expected,
            &self.lost,
            &self.duplicates,
        ] {
            counter.store(0, Relaxed);
        }
        bump(&self.earlier_packets, before.packets);
        bump(&self.earlier_bytes, before.bytes);
        bump(&self.earlier_errors, before.errors);
        self.last_seen.store(NEVER, Relaxed);
        self.latency.store(NEVER, Relaxed);
        self.connected_at.store(self.nanos(now), Relaxed);
        self.live.fetch_add(1, Relaxed);
    }

    /// The connection is gone.
    pub(crate) fn connection_ended(&self) {
        let _ = self
            .live
            .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
    }

    /// Count one packet of `len` bytes that arrived at `arrival`.
    ///
    /// The `record_*` methods expect one writer at a time (the connection's wrapper,
    /// which owns the connection): they add with a plain load and store rather than a
    /// locked read-modify-write, which is what makes them cheaper than a mutex. Readers
    /// may read from anywhere at any time.
    #[inline]
    pub(crate) fn record_packet(&self, len: usize, arrival: Instant) {
        bump(&self.packets, 1);
        bump(&self.bytes, len as u64);
        self.last_seen.store(self.nanos(arrival), Relaxed);
    }

    /// Count one bad packet or error (one writer at a time, as for
    /// [`record_packet`](Self::record_packet)).
    #[inline]
    pub(crate) fn record_error(&self) {
        bump(&self.errors, 1);
    }

    /// Publish what the sequence tracker made of one numbered packet.
    #[inline]
    pub(crate) fn record_sequence(&self, event: SeqEvent) {
        match event {
            SeqEvent::First | SeqEvent::Jump | SeqEvent::Restart => bump(&self.expected, 1),
            SeqEvent::InOrder { gap } => {
                bump(&self.expected, gap + 1);
                if gap > 0 {
                    bump(&self.lost, gap);
                }
            }
            SeqEvent::Late => {
                // A late packet fills a gap counted as lost: never below zero.
                let lost = self.lost.load(Relaxed);
                self.lost.store(lost.saturating_sub(1), Relaxed);
            }
            SeqEvent::Duplicate | SeqEvent::TooLate => bump(&self.duplicates, 1),
        }
    }

    /// Set the latency (round-trip time) the protocol reports.
    #[inline]
    pub(crate) fn record_latency(&self, rtt: Duration) {
        let nanos = u64::try_from(rtt.as_nanos()).unwrap_or(NEVER - 1);
        self.latency.store(nanos, Relaxed);
    }

    /// The raw counters of the current connection.
    pub fn counters(&self) -> HealthCounters {
        HealthCounters {
            packets: self.packets.load(Relaxed),
            bytes: self.bytes.load(Relaxed),
            errors: self.errors.load(Relaxed),
            expected: self.expected.load(Relaxed),
            lost: self.lost.load(Relaxed),
            duplicates: self.duplicates.load(Relaxed),
        }
    }

    /// Packets, bytes and errors over every connection of the stream so far, the
    /// current one included (the other fields are the current connection's).
    pub fn totals(&self) -> HealthCounters {
        let mut totals = self.counters();
        totals.packets += self.earlier_packets.load(Relaxed);
        totals.bytes += self.earlier_bytes.load(Relaxed);
        totals.errors += self.earlier_errors.load(Relaxed);
        totals
    }

    /// When the current connection came up, if one is up.
    pub fn connected_since(&self) -> Option<Instant> {
        (self.live.load(Relaxed) > 0).then(|| self.instant(self.connected_at.load(Relaxed)))
    }

    /// When the last packet arrived on the current connection.
    pub fn last_seen(&self) -> Option<Instant> {
        match self.last_seen.load(Relaxed) {
            NEVER => None,
            n => Some(self.instant(n)),
        }
    }

    /// The latency the protocol reports, if any.
    pub fn latency(&self) -> Option<Duration> {
        match self.latency.load(Relaxed) {
            NEVER => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// The health of the current connection, now.
    pub fn check_health(&self) -> ConnectionHealth {
        let now = Instant::now();
        let counters = self.counters();
        let is_connected = self.live.load(Relaxed) > 0;
        let connection_age = if is_connected {
            now.saturating_duration_since(self.instant(self.connected_at.load(Relaxed)))
        } else {
            Duration::ZERO
        };
        let packet_loss = if counters.expected > 0 {
            counters.lost as f64 / counters.expected as f64
        } else if let Some(rate) = self.expected_rate {
            let expected = rate * connection_age.as_secs_f64();
            if expected >= 1.0 {
                (1.0 - counters.packets as f64 / expected).clamp(0.0, 1.0)
            } else {
                0.0
            }
        } else {
            0.0
        };
        ConnectionHealth {
            is_connected,
            last_seen: self.last_seen(),
            packet_count: counters.packets,
            error_count: counters.errors,
            latency: self.latency(),
            packet_loss,
            connection_age,
        }
    }

    /// The expected packet rate given at creation.
    pub fn expected_rate(&self) -> Option<f64> {
        self.expected_rate
    }
}

/// The one place a connection's packets, errors, loss and latency are counted into a
/// stream's checker: the health wrapper's, and the failure detector's when no health
/// layer sits below it. It owns the connection's sequence tracker and is the checker's
/// one writer while the connection lives (which is what the checker's plain load-and-
/// store counting relies on).
#[derive(Debug)]
pub(crate) struct Counting {
    checker: HealthHandle,
    sequence: SeqTracker,
    started: Instant,
    started_wall: SystemTime,
    /// When the protocol's RTT is next read: it moves slowly, and reading it for
    /// every packet cost each packet a trip to memory the protocol shares.
    rtt_due: Instant,
    ended: bool,
}

/// How often a connection's RTT is read into its health, at most (packet arrival
/// time): the latency a health handle reports is at most this old. Failure
/// detection reads the protocol's RTT itself at each check.
pub(crate) const RTT_EVERY: Duration = Duration::from_millis(500);

impl Counting {
    /// Start counting a new connection into `checker` (which restarts its counters).
    pub(crate) fn start(checker: HealthHandle, rtt: Option<Duration>) -> Self {
        let started = Instant::now();
        checker.connection_started(started);
        if let Some(rtt) = rtt {
            checker.record_latency(rtt);
        }
        Self {
            checker,
            sequence: SeqTracker::default(),
            started,
            started_wall: SystemTime::now(),
            rtt_due: started,
            ended: false,
        }
    }

    /// The checker counted into.
    pub(crate) fn checker(&self) -> &HealthHandle {
        &self.checker
    }

    /// Count one packet; `rtt` asks the protocol for its RTT now, which is done at
    /// most every [`RTT_EVERY`] of arrival time (the first packet's included).
    #[inline]
    pub(crate) fn packet(&mut self, packet: &Packet, rtt: impl FnOnce() -> Option<Duration>) {
        self.checker
            .record_packet(packet.payload.len(), packet.arrival);
        if let Some(seq) = packet.sequence {
            self.checker.record_sequence(self.sequence.update(seq));
        }
        if packet.arrival >= self.rtt_due {
            self.rtt_due = packet.arrival + RTT_EVERY;
            if let Some(rtt) = rtt() {
                self.checker.record_latency(rtt);
            }
        }
    }

    /// Count one bad packet or error.
    #[inline]
    pub(crate) fn error(&mut self) {
        self.checker.record_error();
    }

    /// The connection is gone (said once).
    pub(crate) fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.checker.connection_ended();
        }
    }

    /// Whether [`end`](Self::end) was said.
    pub(crate) fn ended(&self) -> bool {
        self.ended
    }

    /// Put what was counted into the connection's state: its statistics, uptime and
    /// last activity.
    pub(crate) fn fill(&self, state: &mut ConnectionState) {
        let counters = self.checker.counters();
        state.statistics.packets_received = counters.packets;
        state.statistics.bytes_received = counters.bytes;
        state.statistics.packet_errors = counters.errors;
        state.statistics.uptime = Instant::now().saturating_duration_since(self.started);
        if let Some(seen) = self.checker.last_seen() {
            let since_start = seen.saturating_duration_since(self.started);
            state.last_activity = self.started_wall + since_start;
        }
    }
}

impl Drop for Counting {
    fn drop(&mut self) {
        self.end();
    }
}

/// Add to a counter that has one writer: a load and a store, no locked instruction.
#[inline]
fn bump(counter: &AtomicU64, n: u64) {
    counter.store(counter.load(Relaxed).wrapping_add(n), Relaxed);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::sequence::{SeqTracker, MAX_MISORDER};
    use crate::connection::Sequence;

    fn feed(seqs: &[u16]) -> HealthCounters {
        let checker = HealthChecker::new(None);
        checker.connection_started(Instant::now());
        let mut tracker = SeqTracker::default();
        for &s in seqs {
            checker.record_sequence(tracker.update(Sequence::rtp(s)));
        }
        checker.counters()
    }

    #[test]
    fn totals_span_connections() {
        let checker = HealthChecker::new(None);
        checker.connection_started(Instant::now());
        checker.record_packet(100, Instant::now());
        checker.record_error();
        checker.connection_started(Instant::now());
        checker.record_packet(50, Instant::now());
        let (now, all) = (checker.counters(), checker.totals());
        assert_eq!((now.packets, now.bytes, now.errors), (1, 50, 0));
        assert_eq!((all.packets, all.bytes, all.errors), (2, 150, 1));
    }

    #[test]
    fn gaps_are_loss() {
        let c = feed(&[1, 2, 5, 6]);
        assert_eq!((c.expected, c.lost), (6, 2));
    }

    #[test]
    fn wrap_around_is_not_loss() {
        let c = feed(&[65_534, 65_535, 0, 1]);
        assert_eq!((c.expected, c.lost), (4, 0));
        let c = feed(&[65_535, 1]);
        assert_eq!((c.expected, c.lost), (3, 1));
    }

    #[test]
    fn reordered_packet_fills_its_gap() {
        let c = feed(&[1, 3, 2, 4]);
        assert_eq!((c.expected, c.lost, c.duplicates), (4, 0, 0));
    }

    #[test]
    fn duplicates_are_counted_not_recovered() {
        let c = feed(&[1, 2, 2, 4, 2]);
        assert_eq!((c.expected, c.lost, c.duplicates), (4, 1, 2));
    }

    #[test]
    fn sender_restart_resyncs_without_loss() {
        let c = feed(&[100, 101, 40_000, 40_001]);
        assert_eq!((c.expected, c.lost), (4, 0));
    }

    fn feed_srt(seqs: &[u32]) -> HealthCounters {
        let checker = HealthChecker::new(None);
        checker.connection_started(Instant::now());
        let mut tracker = SeqTracker::default();
        for &s in seqs {
            checker.record_sequence(tracker.update(Sequence::srt(s)));
        }
        checker.counters()
    }

    #[test]
    fn srt_loss_beyond_the_rtp_dropout_limit_is_loss() {
        // SRT numbers never restart within a connection: a jump of 5 000 is 4 999 lost.
        let c = feed_srt(&[10, 11, 5_011, 5_012]);
        assert_eq!((c.expected, c.lost), (5_003, 4_999));
        // Across SRT's 31-bit wrap too.
        let c = feed_srt(&[0x7fff_fffe, 0x7fff_ffff, 9_999]);
        assert_eq!((c.expected, c.lost), (10_002, 9_999));
    }

    #[test]
    fn every_late_packet_within_the_misorder_limit_fills_its_gap() {
        // 1..=150 with 20 and 60 missing, then 60 arrives 90 numbers late: recovered.
        let mut seqs: Vec<u16> = (1..=150).filter(|&s| s != 20 && s != 60).collect();
        seqs.push(60);
        let c = feed(&seqs);
        assert_eq!((c.lost, c.duplicates), (1, 0), "{c:?}");
        for back in 1..=MAX_MISORDER as u16 {
            let mut seqs: Vec<u16> = (1..=200).filter(|&s| s != 200 - back).collect();
            seqs.push(200 - back);
            let c = feed(&seqs);
            assert_eq!((c.lost, c.duplicates), (0, 0), "{back} behind: {c:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn expected_rate_gives_loss_without_sequence_numbers() {
        let checker = HealthChecker::new(Some(100.0));
        checker.connection_started(Instant::now());
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..90 {
            checker.record_packet(10, Instant::now());
        }
        let h = checker.check_health();
        assert_eq!(h.connection_age, Duration::from_secs(1));
        assert!((h.packet_loss - 0.10).abs() < 1e-9, "{}", h.packet_loss);
    }

    #[tokio::test(start_paused = true)]
    async fn the_rtt_is_read_with_the_first_packet_then_at_most_every_rtt_every() {
        let checker: HealthHandle = Arc::new(HealthChecker::new(None));
        let mut counting = Counting::start(Arc::clone(&checker), None);
        let mut reads = Vec::new();
        // A packet every 10 ms for 1.2 s, the protocol's RTT growing by 1 ms a packet.
        for i in 0..120u64 {
            let packet = Packet::new(vec![0; 10], Instant::now());
            counting.packet(&packet, || {
                reads.push(i);
                Some(Duration::from_millis(i))
            });
            tokio::time::advance(Duration::from_millis(10)).await;
        }
        assert_eq!(reads, [0, 50, 100], "at 0, 500 and 1000 ms");
        assert_eq!(checker.latency(), Some(Duration::from_millis(100)));
        assert_eq!(checker.counters().packets, 120, "every packet counted");
    }
}
