/// A protocol sequence number with its width, so distances wrap correctly.
///
/// RTP numbers packets with 16 bits, SRT with 31; both wrap around.
///
/// ```
/// use mirror_reconnect::connection::Sequence;
///
/// let before = Sequence::rtp(65_534);
/// let after = Sequence::rtp(1); // wrapped: 65535, 0 and 1 came after 65534
/// assert_eq!(after.distance_from(before), 3);
/// assert_eq!(before.distance_from(after), -3);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sequence {
    value: u32,
    bits: u8,
    restarts: bool,
}

impl Sequence {
    /// A sequence number `value` in a space of `bits` bits (1 to 32), from a sender
    /// that may restart its numbering mid-stream (see [`restarts`](Self::restarts));
    /// [`without_restarts`](Self::without_restarts) says it cannot.
    ///
    /// Returns `None` when `bits` is out of range or `value` does not fit.
    pub const fn new(value: u32, bits: u8) -> Option<Self> {
        if bits == 0 || bits > 32 {
            return None;
        }
        if bits < 32 && value >> bits != 0 {
            return None;
        }
        Some(Self {
            value,
            bits,
            restarts: true,
        })
    }

    /// An RTP sequence number (16 bits). RTP senders restart their numbering (a new
    /// SSRC, a restarted encoder), so a large jump is a restart, not loss.
    pub const fn rtp(value: u16) -> Self {
        Self {
            value: value as u32,
            bits: 16,
            restarts: true,
        }
    }

    /// An SRT packet sequence number (31 bits; the top bit is masked off). SRT numbers
    /// a connection's packets from its handshake on and never restarts within it, so
    /// every jump, however large, is loss.
    pub const fn srt(value: u32) -> Self {
        Self {
            value: value & 0x7fff_ffff,
            bits: 31,
            restarts: false,
        }
    }

    /// The same number, from a sender that never restarts its numbering within a
    /// connection: every jump ahead counts as loss.
    #[must_use]
    pub const fn without_restarts(mut self) -> Self {
        self.restarts = false;
        self
    }

    /// Whether the sender may restart its numbering within a connection. Health then
    /// follows RFC 3550: a jump of more than 3 000 ahead, or a packet more than 100
    /// behind, starts the count afresh instead of counting loss.
    pub const fn restarts(self) -> bool {
        self.restarts
    }

    /// The number itself.
    pub const fn value(self) -> u32 {
        self.value
    }

    /// The width of the sequence space in bits.
    pub const fn bits(self) -> u8 {
        self.bits
    }

    /// How many steps `self` is after `earlier`, taking the shorter way round the
    /// wrap: positive when `self` is newer, negative when older, zero when equal.
    ///
    /// Both numbers must be of the same width; when they are not, `self` is
    /// compared in its own width.
    pub const fn distance_from(self, earlier: Self) -> i64 {
        let modulus: i64 = 1i64 << self.bits;
        let mask: i64 = modulus - 1;
        let diff = (self.value as i64 - earlier.value as i64) & mask;
        if diff >= modulus / 2 {
            diff - modulus
        } else {
            diff
        }
    }
}

/// A jump this far ahead is a sender restart, not loss (RFC 3550's MAX_DROPOUT), for
/// numbering that can restart.
pub(crate) const MAX_DROPOUT: i64 = 3000;
/// A packet this far behind is from before a restart (RFC 3550's MAX_MISORDER), for
/// numbering that can restart; for numbering that cannot, a packet this far behind is
/// too late to say anything.
pub(crate) const MAX_MISORDER: i64 = 100;
/// How many numbers behind the highest the window remembers: every packet that is not
/// from before a restart must fit, or a late one would count as a duplicate.
const WINDOW: i64 = 128;
const _: () = assert!(MAX_MISORDER < WINDOW);

/// What one sequence number means for the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqEvent {
    /// The first packet (of the tracker, or after [`SeqTracker::reset`]).
    First,
    /// The next packet, `gap` numbers after the previous highest.
    InOrder { gap: u64 },
    /// A packet behind the highest that had not arrived yet: it fills its gap.
    Late,
    /// A packet that already arrived.
    Duplicate,
    /// A packet so far behind that nothing can be said of it (numbering that never
    /// restarts: it is older than the window).
    TooLate,
    /// A jump too large to be loss (numbering that can restart); the next packet says
    /// whether it was a restart.
    Jump,
    /// The packet after a jump continued it, or the numbering changed width: the sender
    /// restarted its numbering, and counting starts afresh from here.
    Restart,
}

/// The one sequence tracker (RFC 3550 A.1), for every protocol's numbering: what each
/// number means (in order after a gap, late, duplicate, a jump, a restart) over
/// extended (wrap-counted) numbers, with a 128-number window of which numbers behind
/// the highest arrived. It counts only what a run's loss needs; totals over runs are
/// [`SeqTotals`]'.
///
/// Loss is `expected - received`, where `expected` spans the lowest to the highest
/// number seen and `received` counts each number once, so duplicates never hide loss
/// and a late packet fills its gap. For numbering that can restart (RTP), a jump of
/// more than [`MAX_DROPOUT`] ahead or [`MAX_MISORDER`] behind is a [`SeqEvent::Jump`]
/// until the next packet confirms it as a [`SeqEvent::Restart`]; for numbering that
/// cannot (SRT), every jump ahead is loss.
///
/// Owned by one writer (a connection or its wrapper), so it needs no atomics.
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqTracker {
    /// The highest number seen, and its extended value; `None` before the first packet.
    max: Option<(Sequence, u64)>,
    /// The lowest extended number of the current run.
    base: u64,
    /// Bit `k` set: `max - k` arrived.
    window: u128,
    /// After a jump, the number that would confirm a restart.
    probation: Option<u32>,
    /// Distinct numbers received in the current run.
    received: u64,
}

impl SeqTracker {
    fn start(&mut self, seq: Sequence) {
        // Start one cycle in, so packets from before the first stay positive.
        let ext = (1u64 << 32) + u64::from(seq.value());
        self.max = Some((seq, ext));
        self.base = ext;
        self.window = 1;
        self.probation = None;
        self.received = 1;
    }

    /// Packets the numbers of the current run say were sent (a restart or a
    /// [`reset`](Self::reset) starts a new run).
    #[cfg(any(feature = "rtp", test))] // for RTP's receiver statistics alone
    pub(crate) fn expected(&self) -> u64 {
        self.max.map_or(0, |(_, max)| max - self.base + 1)
    }

    /// Distinct packets received in the current run.
    #[cfg(any(feature = "rtp", test))] // for RTP's receiver statistics alone
    pub(crate) fn received(&self) -> u64 {
        self.received
    }

    /// The highest number seen.
    #[cfg(any(feature = "rtp", test))] // for RTP's receiver statistics alone
    pub(crate) fn highest(&self) -> Option<Sequence> {
        self.max.map(|(seq, _)| seq)
    }

    /// Forget the current run: the next packet starts a new one (a new sender).
    #[cfg(any(feature = "rtp", test))] // for RTP's receiver statistics alone
    pub(crate) fn reset(&mut self) {
        self.max = None;
        self.received = 0;
        self.probation = None;
    }

    /// Take one packet's number.
    #[inline]
    pub(crate) fn update(&mut self, seq: Sequence) -> SeqEvent {
        // The next number, as almost every packet is: the per-packet path.
        if let Some((highest, max)) = &mut self.max {
            if seq.bits() == highest.bits() && seq.distance_from(*highest) == 1 {
                self.window = (self.window << 1) | 1;
                *highest = seq;
                *max += 1;
                self.received += 1;
                self.probation = None;
                return SeqEvent::InOrder { gap: 0 };
            }
        }
        self.update_other(seq)
    }

    /// Every case but the next number.
    #[inline(never)]
    fn update_other(&mut self, seq: Sequence) -> SeqEvent {
        let Some((highest, max)) = self.max else {
            self.start(seq);
            return SeqEvent::First;
        };
        if seq.bits() != highest.bits() {
            self.start(seq);
            return SeqEvent::Restart;
        }
        let d = seq.distance_from(highest);
        if d > 0 && (d <= MAX_DROPOUT || !seq.restarts()) {
            self.window = if d >= WINDOW {
                1
            } else {
                (self.window << d) | 1
            };
            self.max = Some((seq, max + d as u64));
            self.received += 1;
            self.probation = None;
            return SeqEvent::InOrder { gap: d as u64 - 1 };
        }
        if d <= 0 && -d <= MAX_MISORDER {
            let back = -d;
            let bit = 1u128 << back;
            if self.window & bit != 0 {
                return SeqEvent::Duplicate;
            }
            self.window |= bit;
            self.base = self.base.min(max - back as u64);
            self.received += 1;
            self.probation = None;
            return SeqEvent::Late;
        }
        if !seq.restarts() {
            return SeqEvent::TooLate;
        }
        // Too far either way: a restart if the next packet carries on from here.
        if self.probation == Some(seq.value()) {
            self.start(seq);
            return SeqEvent::Restart;
        }
        self.probation = Some(seq.value().wrapping_add(1) & mask(seq.bits()));
        SeqEvent::Jump
    }
}

/// Totals over every run of a [`SeqTracker`] (an RTP session's receiver statistics):
/// it reads each event, and what a run counted before it restarts.
#[cfg(any(feature = "rtp", test))] // RTP's receiver statistics alone
#[derive(Debug, Clone, Default)]
pub(crate) struct SeqTotals {
    /// The tracker whose events are counted.
    pub(crate) tracker: SeqTracker,
    /// Expected and received over the earlier runs (before restarts).
    expected_before: u64,
    received_before: u64,
    /// Packets that arrived twice (or too late to tell).
    pub(crate) duplicates: u64,
    /// Packets that arrived behind a later one and filled their gap.
    pub(crate) reordered: u64,
    /// Jumps too large to be loss.
    pub(crate) jumps: u64,
}

#[cfg(any(feature = "rtp", test))]
impl SeqTotals {
    /// Take one packet's number.
    pub(crate) fn update(&mut self, seq: Sequence) -> SeqEvent {
        let run = (self.tracker.expected(), self.tracker.received());
        let event = self.tracker.update(seq);
        match event {
            SeqEvent::Restart => {
                self.expected_before += run.0;
                self.received_before += run.1;
            }
            SeqEvent::Duplicate | SeqEvent::TooLate => self.duplicates += 1,
            SeqEvent::Late => self.reordered += 1,
            SeqEvent::Jump => self.jumps += 1,
            SeqEvent::First | SeqEvent::InOrder { .. } => {}
        }
        event
    }

    /// Forget the current run (see [`SeqTracker::reset`]).
    pub(crate) fn reset(&mut self) {
        self.expected_before += self.tracker.expected();
        self.received_before += self.tracker.received();
        self.tracker.reset();
    }

    /// Packets the numbers say were sent, over every run.
    pub(crate) fn expected(&self) -> u64 {
        self.expected_before + self.tracker.expected()
    }

    /// Distinct packets received, over every run.
    pub(crate) fn received(&self) -> u64 {
        self.received_before + self.tracker.received()
    }

    /// Packets missing (never below zero).
    pub(crate) fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received())
    }

    /// The highest number seen.
    pub(crate) fn highest(&self) -> Option<Sequence> {
        self.tracker.highest()
    }
}

/// The values of a `bits`-wide number.
const fn mask(bits: u8) -> u32 {
    if bits >= 32 {
        u32::MAX
    } else {
        (1u32 << bits) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DROPOUT: u16 = MAX_DROPOUT as u16;
    const MISORDER: u16 = MAX_MISORDER as u16;

    fn track(seqs: &[u16]) -> (SeqTotals, Vec<SeqEvent>) {
        let mut t = SeqTotals::default();
        let events = seqs.iter().map(|s| t.update(Sequence::rtp(*s))).collect();
        (t, events)
    }

    #[test]
    fn loss_is_expected_minus_distinct_received() {
        let (t, _) = track(&[10, 11, 13, 14, 17]);
        assert_eq!((t.expected(), t.received(), t.lost()), (8, 5, 3));
    }

    #[test]
    fn late_packets_fill_gaps_and_duplicates_do_not() {
        let (t, events) = track(&[1, 2, 4, 3, 3, 4, 5]);
        assert_eq!(events[3], SeqEvent::Late);
        assert_eq!(events[4], SeqEvent::Duplicate);
        assert_eq!(events[5], SeqEvent::Duplicate);
        assert_eq!((t.expected(), t.received(), t.lost()), (5, 5, 0));
        assert_eq!((t.duplicates, t.reordered), (2, 1));
    }

    #[test]
    fn wrap_around_is_continuous() {
        let (t, events) = track(&[65_533, 65_534, 0, 65_535, 1, 2]);
        assert_eq!(events[2], SeqEvent::InOrder { gap: 1 });
        assert_eq!(events[3], SeqEvent::Late);
        assert_eq!((t.expected(), t.lost(), t.reordered), (6, 0, 1));
        assert_eq!(t.highest(), Some(Sequence::rtp(2)));
    }

    #[test]
    fn a_packet_before_the_first_extends_the_range() {
        let (t, events) = track(&[100, 99, 101]);
        assert_eq!(events[1], SeqEvent::Late);
        assert_eq!((t.expected(), t.lost()), (3, 0));
    }

    #[test]
    fn a_big_jump_confirmed_by_the_next_packet_is_a_restart() {
        let (t, events) = track(&[1, 2, 3, 20_000, 20_001, 20_002]);
        assert_eq!(
            &events[3..],
            &[
                SeqEvent::Jump,
                SeqEvent::Restart,
                SeqEvent::InOrder { gap: 0 }
            ]
        );
        // The jump packet was dropped; the two runs count on their own.
        assert_eq!((t.expected(), t.received(), t.lost()), (5, 5, 0));
        assert_eq!(t.jumps, 1);
    }

    #[test]
    fn a_lone_stray_packet_is_only_a_jump() {
        let (t, events) = track(&[1, 2, 40_000, 3, 4]);
        assert_eq!(events[2], SeqEvent::Jump);
        assert_eq!(events[3], SeqEvent::InOrder { gap: 0 });
        assert_eq!((t.expected(), t.lost()), (4, 0));
    }

    #[test]
    fn gaps_up_to_max_dropout_are_loss() {
        let (t, events) = track(&[0, DROPOUT]);
        assert_eq!(
            events[1],
            SeqEvent::InOrder {
                gap: DROPOUT as u64 - 1
            }
        );
        assert_eq!(t.lost(), u64::from(DROPOUT) - 1);
        let (_, events) = track(&[0, DROPOUT + 1]);
        assert_eq!(events[1], SeqEvent::Jump);
        let (_, events) = track(&[1000, 1000 - MISORDER, 1000 - MISORDER - 1]);
        assert_eq!(events[1], SeqEvent::Late);
        assert_eq!(events[2], SeqEvent::Jump);
    }

    #[test]
    fn numbering_that_never_restarts_counts_every_jump_as_loss() {
        let mut t = SeqTotals::default();
        let events: Vec<_> = [10, 11, 5_011, 5_011 - 200]
            .iter()
            .map(|s| t.update(Sequence::srt(*s)))
            .collect();
        assert_eq!(events[2], SeqEvent::InOrder { gap: 4_999 });
        assert_eq!(events[3], SeqEvent::TooLate);
        assert_eq!((t.expected(), t.lost(), t.jumps), (5_002, 4_999, 0));
        assert_eq!(t.duplicates, 1);
    }
}
