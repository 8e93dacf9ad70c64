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
