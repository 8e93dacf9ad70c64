//! Idle fill (`--idle-fill null|FILE.ts`): what the relay sends while no source
//! delivers, so that the decoders and SRT receivers downstream never time out. Either
//! MPEG-TS null packets (PID 0x1FFF) at a low rate, or a TS slate looped at its own
//! rate (read from its PCRs). Fill goes out in whole datagrams of whole TS packets, and
//! stops at the first real packet, so real media resumes on a packet boundary.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

/// How long without a real packet before the fill starts.
pub(crate) const IDLE_AFTER: Duration = Duration::from_millis(500);

/// How often a datagram of null packets goes out: 10 a second, 105 kbit/s.
const NULL_EVERY: Duration = Duration::from_millis(100);

/// TS packets per datagram, as every MPEG-TS-over-UDP sender packs them (1316 bytes).
const PER_DATAGRAM: usize = 7;

const TS: usize = 188;

/// The biggest slate read into memory.
const MAX_SLATE: u64 = 64 * 1024 * 1024;

/// What to send while idle, datagram by datagram.
#[derive(Debug, Clone)]
pub(crate) struct IdleFill {
    datagrams: Vec<Bytes>,
    every: Duration,
    next: usize,
    /// Datagrams sent, over the relay's life.
    pub(crate) sent: u64,
}

impl IdleFill {
    /// Null packets: 7 per datagram, 10 datagrams a second.
    pub(crate) fn null() -> Self {
        let mut datagram = Vec::with_capacity(PER_DATAGRAM * TS);
        for _ in 0..PER_DATAGRAM {
            // Sync, PID 0x1FFF, payload only; the payload is stuffing.
            datagram.extend_from_slice(&[0x47, 0x1F, 0xFF, 0x10]);
            datagram.resize(datagram.len() + TS - 4, 0xFF);
        }
        Self {
            datagrams: vec![Bytes::from(datagram)],
            every: NULL_EVERY,
            next: 0,
            sent: 0,
        }
    }

    /// A TS slate from `path`, looped at the rate its PCRs give: whole TS packets
    /// (188 bytes, each starting 0x47), at least two PCRs on one PID, at most 64 MiB.
    pub(crate) fn slate(path: &Path) -> Result<Self, String> {
        let shown = path.display();
        let bytes =
            crate::cli::read_at_most(path, MAX_SLATE).map_err(|e| format!("{shown}: {e}"))?;
        Self::from_ts(&bytes).map_err(|e| format!("{shown}: {e}"))
    }

    pub(crate) fn from_ts(bytes: &[u8]) -> Result<Self, String> {
        if bytes.is_empty() || bytes.len() % TS != 0 {
            return Err(format!(
                "{} bytes is not a whole number of 188-byte TS packets",
                bytes.len()
            ));
        }
        if let Some(bad) = bytes.chunks(TS).position(|p| p[0] != 0x47) {
            return Err(format!(
                "TS packet {bad} (byte {}) has no sync byte 0x47",
                bad * TS
            ));
        }
        let packets = bytes.len() / TS;
        let (first, last) = pcr_span(bytes).ok_or(
            "no PID carries two PCRs with time between them: the slate's rate cannot be known",
        )?;
        // Seconds per packet between the first and the last PCR, on the whole loop.
        let span = (last.1 - first.1) as f64 / 27_000_000.0;
        let per_packet = span / (last.0 - first.0) as f64;
        let every = Duration::from_secs_f64(per_packet * PER_DATAGRAM as f64)
            .max(Duration::from_micros(100));
        let datagrams = bytes
            .chunks(PER_DATAGRAM * TS)
            .map(Bytes::copy_from_slice)
            .collect();
        tracing::debug!(packets, ?every, "slate loaded");
        Ok(Self {
            datagrams,
            every,
            next: 0,
            sent: 0,
        })
    }

    /// How often a datagram goes out.
    pub(crate) fn every(&self) -> Duration {
        self.every
    }

    /// The next datagram, looping.
    pub(crate) fn next_datagram(&mut self) -> Bytes {
        let datagram = self.datagrams[self.next].clone();
        self.next = (self.next + 1) % self.datagrams.len();
        self.sent += 1;
        datagram
    }
}

/// A PCR where it was seen: packet index, 27 MHz ticks.
type PcrAt = (usize, u64);

/// The first and the last PCR of the first PID that has two with time between them.
fn pcr_span(bytes: &[u8]) -> Option<(PcrAt, PcrAt)> {
    let mut by_pid: Vec<(u16, PcrAt, PcrAt)> = Vec::new();
    for (i, p) in bytes.chunks(TS).enumerate() {
        let Some(pcr) = pcr_of(p) else { continue };
        let pid = u16::from_be_bytes([p[1] & 0x1F, p[2]]);
        match by_pid.iter_mut().find(|(q, _, _)| *q == pid) {
            Some((_, _, last)) => *last = (i, pcr),
            None => by_pid.push((pid, (i, pcr), (i, pcr))),
        }
    }
    by_pid
        .into_iter()
        .find(|(_, first, last)| last.0 > first.0 && last.1 > first.1)
        .map(|(_, first, last)| (first, last))
}

/// The PCR of one TS packet, when its adaptation field carries one.
fn pcr_of(p: &[u8]) -> Option<u64> {
    let has_adaptation = p[3] & 0x20 != 0;
    if !has_adaptation || p[4] < 7 || p[5] & 0x10 == 0 {
        return None;
    }
    let b = &p[6..12];
    let base = (u64::from(b[0]) << 25)
        | (u64::from(b[1]) << 17)
        | (u64::from(b[2]) << 9)
        | (u64::from(b[3]) << 1)
        | (u64::from(b[4]) >> 7);
    let extension = (u64::from(b[4] & 0x01) << 8) | u64::from(b[5]);
    Some(base * 300 + extension)
}

/// A TS packet of `pid`, with a PCR of `pcr` 27 MHz ticks when given.
#[cfg(test)]
pub(crate) fn ts_packet(pid: u16, pcr: Option<u64>) -> Vec<u8> {
    let mut p = vec![0xFFu8; TS];
    p[0] = 0x47;
    p[1] = (pid >> 8) as u8 & 0x1F;
    p[2] = pid as u8;
    match pcr {
        Some(pcr) => {
            let (base, ext) = (pcr / 300, pcr % 300);
            p[3] = 0x30;
            p[4] = 7;
            p[5] = 0x10;
            p[6] = (base >> 25) as u8;
            p[7] = (base >> 17) as u8;
            p[8] = (base >> 9) as u8;
            p[9] = (base >> 1) as u8;
            p[10] = ((base as u8 & 1) << 7) | 0x7E | (ext >> 8) as u8;
            p[11] = ext as u8;
        }
        None => p[3] = 0x10,
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn null_fill_is_whole_null_packets_ten_times_a_second() {
        let mut fill = IdleFill::null();
        let d = fill.next_datagram();
        assert_eq!(d.len(), 1316);
        for p in d.chunks(TS) {
            assert_eq!(p[0], 0x47);
            assert_eq!(u16::from_be_bytes([p[1] & 0x1F, p[2]]), 0x1FFF);
        }
        assert_eq!(fill.every(), Duration::from_millis(100));
    }

    #[test]
    fn a_slate_is_paced_by_its_pcrs_and_loops() {
        // 71 packets, PCRs on PID 0x100 at packets 0 and 70, 100 ms apart: 7 packets
        // (one datagram) every 10 ms.
        let mut ts = Vec::new();
        for i in 0..71u64 {
            let pcr = (i == 0 || i == 70).then_some(i / 70 * 2_700_000 + 27_000_000);
            ts.extend(ts_packet(0x100, pcr));
        }
        let mut fill = IdleFill::from_ts(&ts).unwrap();
        assert_eq!(fill.every(), Duration::from_millis(10));
        let first = fill.next_datagram();
        for _ in 1..11 {
            fill.next_datagram();
        }
        assert_eq!(fill.next_datagram(), first, "11 datagrams, then the loop");
        let pcr = pcr_of(&ts_packet(0x100, Some(123_456_789))).unwrap();
        assert_eq!(pcr, 123_456_789);
    }

    #[test]
    fn bad_slates_are_named() {
        let err = IdleFill::from_ts(&[0x47; 100]).unwrap_err();
        assert!(err.contains("188-byte"), "{err}");
        let mut ts = ts_packet(0x100, None);
        ts.extend(vec![0u8; TS]);
        let err = IdleFill::from_ts(&ts).unwrap_err();
        assert!(err.contains("TS packet 1"), "{err}");
        let err = IdleFill::from_ts(&ts_packet(0x100, Some(1))).unwrap_err();
        assert!(err.contains("PCR"), "{err}");
        assert!(IdleFill::slate(Path::new("/nonexistent/slate.ts")).is_err());
    }

    #[test]
    fn a_slate_without_an_end_is_read_no_further_than_its_limit() {
        // A device says it is 0 bytes long and never ends.
        let err = IdleFill::slate(Path::new("/dev/zero")).unwrap_err();
        assert!(
            err.contains("/dev/zero: longer than 67108864 bytes"),
            "{err}"
        );
    }
}
