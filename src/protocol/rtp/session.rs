//! The receive-side RTP session math, without sockets: sequence tracking (RFC 3550
//! A.1), interarrival jitter (RFC 3550 6.4.1 / A.8), SSRC and payload type locking,
//! sender restart detection and sequence/timestamp rewriting.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

use super::error::RtpPacketError;
use super::stats::{keys, RtpStatistics};
use crate::connection::{SeqEvent, SeqTotals, Sequence};

/// How far `seq` is ahead of `from` (negative when behind), the short way round.
pub(crate) fn seq_distance(seq: u16, from: u16) -> i64 {
    Sequence::rtp(seq).distance_from(Sequence::rtp(from))
}

/// What the fixed RTP header says about a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) ssrc: u32,
    pub(crate) payload_type: u8,
    pub(crate) sequence: u16,
    pub(crate) timestamp: u32,
}

/// RFC 3550 interarrival jitter, in timestamp units.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct JitterEstimator {
    last_transit: Option<u32>,
    jitter: f64,
}

impl JitterEstimator {
    /// Account one packet: `arrival` and `timestamp` in the same clock units (both wrap).
    pub(crate) fn update(&mut self, arrival: u32, timestamp: u32) {
        let transit = arrival.wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = f64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter += (d - self.jitter) / 16.0;
        }
        self.last_transit = Some(transit);
    }

    /// A new sender's timestamps have another origin: forget the last transit time.
    pub(crate) fn rebase(&mut self) {
        self.last_transit = None;
    }

    /// The estimate, in timestamp units.
    pub(crate) fn get(&self) -> f64 {
        self.jitter
    }
}

/// Continuity state saved across reconnects when rewriting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Continuity {
    pub(crate) ssrc: u32,
    pub(crate) last_seq_in: u16,
    pub(crate) seq_offset: u16,
    pub(crate) ts_offset: u32,
    pub(crate) last_seq_out: u16,
    pub(crate) last_ts_out: u32,
    /// Wall clock of the last packet out, in Unix milliseconds.
    pub(crate) wall_ms: u64,
}

impl Continuity {
    pub(crate) fn write(&self, params: &mut BTreeMap<String, String>) {
        let mut put = |k: &str, v: String| {
            params.insert(k.to_owned(), v);
        };
        put(keys::REWRITE_SSRC, self.ssrc.to_string());
        put(keys::REWRITE_LAST_SEQ_IN, self.last_seq_in.to_string());
        put(keys::REWRITE_SEQ_OFFSET, self.seq_offset.to_string());
        put(keys::REWRITE_TS_OFFSET, self.ts_offset.to_string());
        put(keys::REWRITE_LAST_SEQ_OUT, self.last_seq_out.to_string());
        put(keys::REWRITE_LAST_TS_OUT, self.last_ts_out.to_string());
        put(keys::REWRITE_WALL_MS, self.wall_ms.to_string());
    }

    /// Read it back; `None` when a key is missing or malformed (stored state is
    /// untrusted: a bad one only costs continuity).
    pub(crate) fn read(params: &BTreeMap<String, String>) -> Option<Self> {
        fn get<T: std::str::FromStr>(p: &BTreeMap<String, String>, k: &str) -> Option<T> {
            p.get(k)?.trim().parse().ok()
        }
        Some(Self {
            ssrc: get(params, keys::REWRITE_SSRC)?,
            last_seq_in: get(params, keys::REWRITE_LAST_SEQ_IN)?,
            seq_offset: get(params, keys::REWRITE_SEQ_OFFSET)?,
            ts_offset: get(params, keys::REWRITE_TS_OFFSET)?,
            last_seq_out: get(params, keys::REWRITE_LAST_SEQ_OUT)?,
            last_ts_out: get(params, keys::REWRITE_LAST_TS_OUT)?,
            wall_ms: get(params, keys::REWRITE_WALL_MS)?,
        })
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Rewrites sequence numbers and timestamps so the output stays continuous across
/// sender restarts and reconnects.
#[derive(Debug, Clone, Default)]
pub(crate) struct Rewriter {
    seq_offset: u16,
    ts_offset: u32,
    /// The last packet out: sequence, timestamp, when (tokio clock and wall clock).
    last_out: Option<(u16, u32, Instant, u64)>,
    last_seq_in: u16,
    /// Saved state from an earlier connection, applied at the first packet.
    restored: Option<Continuity>,
}

/// Largest timestamp step a gap may produce: beyond half the space, order is ambiguous.
const MAX_TS_GAP: u64 = 1 << 30;

impl Rewriter {
    pub(crate) fn restore(&mut self, saved: Continuity) {
        if self.last_out.is_none() {
            self.restored = Some(saved);
        }
    }

    /// Choose offsets for a new sender (or the session's first packet), so that its
    /// packets follow what went out before.
    pub(crate) fn rebase(&mut self, h: &Header, now: Instant, wall_ms: u64, clock_rate: u32) {
        let gap_ticks = |elapsed_ms: u64| -> u32 {
            let ticks = elapsed_ms.saturating_mul(u64::from(clock_rate)) / 1000;
            ticks.clamp(1, MAX_TS_GAP) as u32
        };
        if let Some(saved) = self.restored.take() {
            // The same sender carrying on after our own reconnect: keep its numbering,
            // so what was lost in between shows as loss.
            if saved.ssrc == h.ssrc && seq_distance(h.sequence, saved.last_seq_in) > 0 {
                self.seq_offset = saved.seq_offset;
                self.ts_offset = saved.ts_offset;
                return;
            }
            let gap = gap_ticks(wall_ms.saturating_sub(saved.wall_ms));
            self.seq_offset = saved.last_seq_out.wrapping_add(1).wrapping_sub(h.sequence);
            self.ts_offset = saved
                .last_ts_out
                .wrapping_add(gap)
                .wrapping_sub(h.timestamp);
            return;
        }
        if let Some((seq, ts, at, _)) = self.last_out {
            let elapsed = now.saturating_duration_since(at);
            let gap = gap_ticks(u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX));
            self.seq_offset = seq.wrapping_add(1).wrapping_sub(h.sequence);
            self.ts_offset = ts.wrapping_add(gap).wrapping_sub(h.timestamp);
        }
        // The very first packet ever goes out as it came.
    }

    /// The sequence number and timestamp this packet goes out with.
    pub(crate) fn rewrite(&mut self, h: &Header, now: Instant, wall_ms: u64) -> (u16, u32) {
        let seq = h.sequence.wrapping_add(self.seq_offset);
        let ts = h.timestamp.wrapping_add(self.ts_offset);
        let newer = self
            .last_out
            .is_none_or(|(last, ..)| seq_distance(seq, last) > 0);
        if newer {
            self.last_out = Some((seq, ts, now, wall_ms));
            self.last_seq_in = h.sequence;
        }
        (seq, ts)
    }

    pub(crate) fn continuity(&self, ssrc: Option<u32>) -> Option<Continuity> {
        let (seq, ts, _, wall_ms) = self.last_out?;
        Some(Continuity {
            ssrc: ssrc?,
            last_seq_in: self.last_seq_in,
            seq_offset: self.seq_offset,
            ts_offset: self.ts_offset,
            last_seq_out: seq,
            last_ts_out: ts,
            wall_ms,
        })
    }

    /// What was restored and not used yet (no packet came), to save again.
    pub(crate) fn pending(&self) -> Option<Continuity> {
        self.restored
    }
}

/// Session settings, from the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionConfig {
    pub(crate) ssrc: Option<u32>,
    pub(crate) payload_type: Option<u8>,
    pub(crate) clock_rate: u32,
    pub(crate) rewrite: bool,
    /// How long the locked SSRC must be silent before another one replaces it.
    pub(crate) ssrc_timeout: Duration,
}

/// A packet the session accepted, and the numbers it goes out with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Accepted {
    pub(crate) sequence: u16,
    pub(crate) timestamp: u32,
    /// Whether the header must be rewritten.
    pub(crate) rewritten: bool,
    pub(crate) event: SeqEvent,
}

/// One receive session: locks, trackers, counters.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    config: SessionConfig,
    ssrc: Option<u32>,
    payload_type: Option<u8>,
    last_accepted: Option<Instant>,
    epoch: Instant,
    pub(crate) seq: SeqTotals,
    jitter: JitterEstimator,
    rewriter: Option<Rewriter>,
    restarts: u64,
    foreign_ssrc: u64,
    wrong_payload_type: u64,
    pub(crate) invalid: u64,
    pub(crate) rtcp: u64,
}

impl Session {
    pub(crate) fn new(config: SessionConfig, epoch: Instant) -> Self {
        Self {
            config,
            ssrc: config.ssrc,
            payload_type: config.payload_type,
            last_accepted: None,
            epoch,
            seq: SeqTotals::default(),
            jitter: JitterEstimator::default(),
            rewriter: config.rewrite.then(Rewriter::default),
            restarts: 0,
            foreign_ssrc: 0,
            wrong_payload_type: 0,
            invalid: 0,
            rtcp: 0,
        }
    }

    /// Take saved continuity (rewriting only; ignored once packets flowed).
    pub(crate) fn restore(&mut self, params: &BTreeMap<String, String>) {
        if let (Some(rewriter), Some(saved)) = (&mut self.rewriter, Continuity::read(params)) {
            rewriter.restore(saved);
        }
    }

    /// `arrival` in timestamp units since the session's epoch (wrapping, as RTP does).
    fn arrival_units(&self, arrival: Instant) -> u32 {
        let nanos = arrival.saturating_duration_since(self.epoch).as_nanos();
        (nanos * u128::from(self.config.clock_rate) / 1_000_000_000) as u32
    }

    fn lock(&mut self, h: &Header) {
        self.ssrc = Some(h.ssrc);
        if self.config.payload_type.is_none() {
            self.payload_type = Some(h.payload_type);
        }
    }

    /// Judge one packet that parsed as RTP.
    pub(crate) fn on_packet(
        &mut self,
        h: &Header,
        arrival: Instant,
        wall: SystemTime,
    ) -> Result<Accepted, RtpPacketError> {
        match self.ssrc {
            None => self.lock(h),
            Some(locked) if locked != h.ssrc => {
                let silent = self.last_accepted.is_none_or(|t| {
                    arrival.saturating_duration_since(t) >= self.config.ssrc_timeout
                });
                if self.config.ssrc.is_none() && silent {
                    tracing::info!(
                        old_ssrc = locked,
                        new_ssrc = h.ssrc,
                        "RTP sender restarted with a new SSRC"
                    );
                    if self.last_accepted.is_some() {
                        self.restarts += 1;
                    }
                    self.lock(h);
                    self.seq.reset();
                } else {
                    self.foreign_ssrc += 1;
                    return Err(RtpPacketError::ForeignSsrc {
                        expected: locked,
                        got: h.ssrc,
                    });
                }
            }
            Some(_) => {}
        }
        // With a configured SSRC the first packet locks only the payload type.
        let pt = *self.payload_type.get_or_insert(h.payload_type);
        if pt != h.payload_type {
            self.wrong_payload_type += 1;
            return Err(RtpPacketError::PayloadType {
                expected: pt,
                got: h.payload_type,
            });
        }
        let highest = self.seq.highest().map(|s| s.value() as u16);
        let event = self.seq.update(Sequence::rtp(h.sequence));
        match event {
            SeqEvent::Jump => {
                return Err(RtpPacketError::SequenceJump {
                    from: highest.unwrap_or(h.sequence),
                    to: h.sequence,
                });
            }
            SeqEvent::Restart => {
                tracing::info!(
                    ssrc = h.ssrc,
                    from = highest,
                    to = h.sequence,
                    "RTP sender restarted its sequence numbers"
                );
                self.restarts += 1;
            }
            _ => {}
        }
        // The first packet of a sender's run: its numbers have a new origin.
        let new_sender = matches!(event, SeqEvent::First | SeqEvent::Restart);
        if new_sender {
            self.jitter.rebase();
        }
        self.last_accepted = Some(arrival);
        if event != SeqEvent::Duplicate {
            let units = self.arrival_units(arrival);
            self.jitter.update(units, h.timestamp);
        }
        let Some(rewriter) = &mut self.rewriter else {
            return Ok(Accepted {
                sequence: h.sequence,
                timestamp: h.timestamp,
                rewritten: false,
                event,
            });
        };
        let wall_ms = unix_ms(wall);
        if new_sender {
            rewriter.rebase(h, arrival, wall_ms, self.config.clock_rate);
        }
        let (sequence, timestamp) = rewriter.rewrite(h, arrival, wall_ms);
        Ok(Accepted {
            sequence,
            timestamp,
            rewritten: true,
            event,
        })
    }

    /// When the last packet was accepted.
    pub(crate) fn last_accepted(&self) -> Option<Instant> {
        self.last_accepted
    }

    /// The jitter estimate as a duration.
    pub(crate) fn jitter(&self) -> Duration {
        Duration::from_secs_f64(self.jitter.get() / f64::from(self.config.clock_rate))
    }

    pub(crate) fn statistics(&self) -> RtpStatistics {
        RtpStatistics {
            ssrc: self.ssrc,
            payload_type: self.payload_type,
            clock_rate: self.config.clock_rate,
            received: self.seq.received(),
            expected: self.seq.expected(),
            lost: self.seq.lost(),
            duplicates: self.seq.duplicates,
            reordered: self.seq.reordered,
            jitter: self.jitter(),
            jitter_units: self.jitter.get() as u32,
            restarts: self.restarts,
            foreign_ssrc: self.foreign_ssrc,
            wrong_payload_type: self.wrong_payload_type,
            sequence_jumps: self.seq.jumps,
            invalid: self.invalid,
            rtcp: self.rtcp,
        }
    }

    /// Statistics and continuity, as state parameters (keys `rtp.…`).
    pub(crate) fn write_parameters(&self, params: &mut BTreeMap<String, String>) {
        self.statistics().write_parameters(params);
        if let Some(rewriter) = &self.rewriter {
            if let Some(c) = rewriter.continuity(self.ssrc).or(rewriter.pending()) {
                c.write(params);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_is_zero_for_a_perfect_clock() {
        let mut j = JitterEstimator::default();
        for i in 0..100u32 {
            j.update(1000 + i * 3600, i * 3600);
        }
        assert_eq!(j.get(), 0.0);
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        // Transit alternates by 160 units: D = 160 each time after the first, so
        // J(n) = J(n-1) + (160 - J(n-1)) / 16, which converges on 160.
        let mut j = JitterEstimator::default();
        let mut expected = 0.0;
        for i in 0..200u32 {
            let wobble = if i % 2 == 0 { 0 } else { 160 };
            j.update(i * 960 + wobble, i * 960);
            if i > 0 {
                expected += (160.0 - expected) / 16.0;
            }
            assert!((j.get() - expected).abs() < 1e-9, "step {i}");
        }
        assert!((j.get() - 160.0).abs() < 0.01);
    }

    #[test]
    fn jitter_handles_timestamp_wrap() {
        let mut j = JitterEstimator::default();
        j.update(10, u32::MAX - 5);
        j.update(20, 4); // both advanced by 10 across the wrap
        assert_eq!(j.get(), 0.0);
    }

    fn header(ssrc: u32, seq: u16, ts: u32) -> Header {
        Header {
            ssrc,
            payload_type: 96,
            sequence: seq,
            timestamp: ts,
        }
    }

    fn config(rewrite: bool) -> SessionConfig {
        SessionConfig {
            ssrc: None,
            payload_type: None,
            clock_rate: 90_000,
            rewrite,
            ssrc_timeout: Duration::from_secs(1),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn another_ssrc_is_an_error_until_the_first_falls_silent() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut s = Session::new(config(false), t0);
        assert!(s.on_packet(&header(1, 10, 0), t0, wall).is_ok());
        let err = s
            .on_packet(&header(2, 500, 0), t0 + Duration::from_millis(500), wall)
            .expect_err("old sender still live");
        assert!(matches!(
            err,
            RtpPacketError::ForeignSsrc {
                expected: 1,
                got: 2
            }
        ));
        let ok = s
            .on_packet(&header(2, 501, 0), t0 + Duration::from_millis(1000), wall)
            .expect("old sender silent for 1 s: new one locked");
        assert_eq!(ok.event, SeqEvent::First);
        let st = s.statistics();
        assert_eq!(
            (st.ssrc, st.restarts, st.foreign_ssrc, st.lost),
            (Some(2), 1, 1, 0)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_fixed_ssrc_never_changes_and_payload_type_is_locked() {
        let t0 = Instant::now();
        let wall = SystemTime::now();
        let mut s = Session::new(
            SessionConfig {
                ssrc: Some(7),
                ..config(false)
            },
            t0,
        );
        let late = t0 + Duration::from_secs(60);
        assert!(s.on_packet(&header(8, 1, 0), late, wall).is_err());
        assert!(s.on_packet(&header(7, 1, 0), late, wall).is_ok());
        let mut other_pt = header(7, 2, 0);
        other_pt.payload_type = 97;
        assert!(matches!(
            s.on_packet(&other_pt, late, wall),
            Err(RtpPacketError::PayloadType {
                expected: 96,
                got: 97
            })
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn rewriting_keeps_numbers_continuous_across_a_restart() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut s = Session::new(config(true), t0);
        let mut out = Vec::new();
        for i in 0..3u16 {
            let at = t0 + Duration::from_millis(40 * u64::from(i));
            let a = s
                .on_packet(
                    &header(1, 65_534u16.wrapping_add(i), 3600 * u32::from(i)),
                    at,
                    wall,
                )
                .expect("accepted");
            out.push((a.sequence, a.timestamp));
        }
        assert_eq!(out, [(65_534, 0), (65_535, 3600), (0, 7200)]);
        // New sender 2 s later, numbering from somewhere else.
        let at = t0 + Duration::from_millis(80 + 2000);
        let a = s
            .on_packet(&header(9, 1234, 777_777), at, wall)
            .expect("new sender locked");
        assert_eq!(a.sequence, 1);
        assert_eq!(a.timestamp, 7200 + 2 * 90_000);
        let a = s
            .on_packet(
                &header(9, 1235, 777_777 + 3600),
                at + Duration::from_millis(40),
                wall,
            )
            .expect("next");
        assert_eq!((a.sequence, a.timestamp), (2, 7200 + 180_000 + 3600));
    }

    #[tokio::test(start_paused = true)]
    async fn rewriting_carries_over_a_reconnect() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let mut first = Session::new(config(true), t0);
        first
            .on_packet(&header(1, 100, 5000), t0, wall)
            .expect("ok");
        let mut params = BTreeMap::new();
        first.write_parameters(&mut params);

        // The same sender carries on: its numbering is kept, the gap is loss.
        let mut same = Session::new(config(true), t0);
        same.restore(&params);
        let a = same
            .on_packet(&header(1, 150, 5000 + 50 * 3600), t0, wall)
            .expect("ok");
        assert_eq!((a.sequence, a.timestamp), (150, 5000 + 50 * 3600));

        // A new sender 3 s later follows on from where the first left off.
        let mut other = Session::new(config(true), t0);
        other.restore(&params);
        let later = wall + Duration::from_secs(3);
        let a = other
            .on_packet(&header(2, 40_000, 12), t0, later)
            .expect("ok");
        assert_eq!((a.sequence, a.timestamp), (101, 5000 + 3 * 90_000));

        // Garbage saved state is ignored, never a panic.
        let mut bad = params.clone();
        bad.insert(keys::REWRITE_SEQ_OFFSET.into(), "minus one".into());
        let mut fresh = Session::new(config(true), t0);
        fresh.restore(&bad);
        let a = fresh.on_packet(&header(2, 7, 8), t0, wall).expect("ok");
        assert_eq!((a.sequence, a.timestamp), (7, 8));
    }
}
