use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

/// Which way packets travel through the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// From a client (the sender that talks to the simulator) to the upstream address.
    ToUpstream,
    /// From the upstream address back to the client.
    ToClient,
    /// Both ways. Only for settings: statistics are kept per direction.
    Both,
}

impl Direction {
    pub(crate) fn indices(self) -> &'static [usize] {
        match self {
            Self::ToUpstream => &[0],
            Self::ToClient => &[1],
            Self::Both => &[0, 1],
        }
    }
}

/// What the simulator did to the packets of one direction.
///
/// Once every packet has gone out,
/// `forwarded + send_errors == packets_in - dropped() + duplicated`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DirectionStats {
    /// Packets that came in.
    pub packets_in: u64,
    /// Packets sent on, copies included.
    pub forwarded: u64,
    /// Packets dropped by random loss.
    pub dropped_loss: u64,
    /// Packets dropped by burst loss.
    pub dropped_burst: u64,
    /// Packets dropped because the blackhole was on.
    pub dropped_blackhole: u64,
    /// Packets dropped in a scheduled outage.
    pub dropped_outage: u64,
    /// Packets dropped because [`queue_limit`](super::Impairments::queue_limit)
    /// packets were already waiting to go out.
    pub dropped_queue_full: u64,
    /// Packets given a delay.
    pub delayed: u64,
    /// Extra copies made.
    pub duplicated: u64,
    /// Packets sent after a packet that came in later.
    pub reordered: u64,
    /// Packets that could not be sent on (for example nobody listens upstream).
    pub send_errors: u64,
}

impl DirectionStats {
    /// Every packet dropped, whatever the reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_loss
            + self.dropped_burst
            + self.dropped_blackhole
            + self.dropped_outage
            + self.dropped_queue_full
    }
}

/// What the simulator did, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimulatorStats {
    /// Client → upstream.
    pub to_upstream: DirectionStats,
    /// Upstream → client.
    pub to_client: DirectionStats,
    /// Clients currently relayed (each has its own socket towards upstream).
    pub clients: usize,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) packets_in: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) dropped_loss: AtomicU64,
    pub(crate) dropped_burst: AtomicU64,
    pub(crate) dropped_blackhole: AtomicU64,
    pub(crate) dropped_outage: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    /// Packets waiting in the scheduler (not a statistic: what the queue limit checks).
    pub(crate) queued: AtomicUsize,
    pub(crate) delayed: AtomicU64,
    pub(crate) duplicated: AtomicU64,
    pub(crate) reordered: AtomicU64,
    pub(crate) send_errors: AtomicU64,
}

pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> DirectionStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        DirectionStats {
            packets_in: get(&self.packets_in),
            forwarded: get(&self.forwarded),
            dropped_loss: get(&self.dropped_loss),
            dropped_burst: get(&self.dropped_burst),
            dropped_blackhole: get(&self.dropped_blackhole),
            dropped_outage: get(&self.dropped_outage),
            dropped_queue_full: get(&self.dropped_queue_full),
            delayed: get(&self.delayed),
            duplicated: get(&self.duplicated),
            reordered: get(&self.reordered),
            send_errors: get(&self.send_errors),
        }
    }
}
