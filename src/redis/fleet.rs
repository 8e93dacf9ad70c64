use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use ::redis::Script;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use super::lease::{LeaseManager, StreamLease};
use crate::restore::throttle::{Throttle, WARN_EVERY};

/// Say this member is alive for ARGV[2] ms more, forget members whose time is up, and
/// count the live ones. The time is the Redis server's, so members' clocks do not
/// matter. KEYS: members. ARGV: owner, alive-for in ms.
static HEARTBEAT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return redis.call('ZCARD', KEYS[1])
",
    )
});

/// Processes that share one set of streams through one Redis, each owning its share.
///
/// Every member says it is alive in the sorted set `{prefix}:members` (scored with
/// the Redis server's clock) once per lease retry interval, and counts the live
/// members. A member that stops saying so (killed, cut off) is forgotten after half
/// the lease TTL, before its leases expire, so that the others' shares have grown by
/// the time its streams are free.
///
/// With `streams` streams and `members` live members, a member's **share** is
/// `ceil(streams / members)`. [`Fleet::acquire`] takes a stream's lease only while
/// this member owns fewer streams than its share (a slot is reserved before each try,
/// so several streams trying at once cannot overshoot). When members join, the
/// others own more than their shares: each stream asks
/// [`FleetSlot::hand_over`] from time to time, and those over the share stop and
/// release their leases for the newcomers to take. Streams are moved between
/// members only then: a member never gives a stream up to take another.
///
/// ```no_run
/// use mirror_reconnect::redis::{Fleet, LeaseManager};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let leases = LeaseManager::builder("redis://127.0.0.1:6379", "relay-a").build()?;
/// let fleet = Fleet::join(&leases, 12);
/// let (lease, mut slot) = fleet.acquire("cam1").await;
/// let watch = lease.keep_alive();
/// // … produce cam1 while `watch.is_held()`, asking once a second:
/// if slot.hand_over() {
///     // Over this member's share: stop cam1 cleanly and release its lease.
///     watch.release().await?;
/// }
/// fleet.leave().await;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Fleet {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    leases: LeaseManager,
    key: String,
    streams: AtomicUsize,
    /// Streams owned, or being tried, by this member.
    owned: AtomicUsize,
    /// Live members as last counted; 0 until the first count.
    members: watch::Sender<usize>,
    /// Woken when a reserved slot is given back: a stream that found every slot
    /// taken by other streams' tries gets its turn at once, not a retry later.
    freed: Notify,
    stop: CancellationToken,
}

impl Inner {
    fn share(&self) -> usize {
        let members = (*self.members.borrow()).max(1);
        self.streams.load(Ordering::Relaxed).div_ceil(members)
    }

    /// Count one more stream if that stays within the share.
    fn reserve(&self) -> bool {
        let share = self.share();
        self.owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owned| {
                (owned < share).then_some(owned + 1)
            })
            .is_ok()
    }

    fn unreserve(&self) {
        self.owned.fetch_sub(1, Ordering::AcqRel);
        self.freed.notify_waiters();
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl Fleet {
    /// Join the fleet of processes using `leases`' Redis and key prefix, sharing
    /// `streams` streams, under `leases`' owner name (unique to this process).
    ///
    /// Starts the heartbeat at once; [`acquire`](Self::acquire) waits for its first
    /// count. Must be called inside a Tokio runtime. The heartbeat stops when the last
    /// clone is dropped (the member is then forgotten after half the lease TTL) or at
    /// [`leave`](Self::leave).
    pub fn join(leases: &LeaseManager, streams: usize) -> Self {
        let inner = Arc::new(Inner {
            leases: leases.clone(),
            key: format!("{}:members", leases.prefix()),
            streams: AtomicUsize::new(streams),
            owned: AtomicUsize::new(0),
            members: watch::channel(0).0,
            freed: Notify::new(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&inner), inner.stop.clone()));
        Self { inner }
    }

    /// Live members, this one included, as last counted (0 before the first count).
    pub fn members(&self) -> usize {
        *self.inner.members.borrow()
    }

    /// How many streams this member may own: `ceil(streams / members)`.
    pub fn share(&self) -> usize {
        self.inner.share()
    }

    /// Streams this member owns (or is trying to take) now.
    pub fn owned(&self) -> usize {
        self.inner.owned.load(Ordering::Acquire)
    }

    /// How many streams the fleet shares: after the streams file changed, say.
    pub fn set_streams(&self, streams: usize) {
        self.inner.streams.store(streams, Ordering::Relaxed);
    }

    /// Wait until this member owns `stream_id`: while it owns fewer streams than its
    /// share, try the lease as [`LeaseManager::acquire`] does; otherwise wait for the
    /// share to grow or a slot to free. Cancel by dropping the future.
    pub async fn acquire(&self, stream_id: &str) -> (StreamLease, FleetSlot) {
        let inner = &self.inner;
        let mut members = inner.members.subscribe();
        // No share is known before the first count: a member starting alone would
        // otherwise take every stream at once.
        let _ = members.wait_for(|n| *n > 0).await;
        let unreachable = Throttle::new(WARN_EVERY);
        loop {
            let mut wait = inner.leases.retry_interval();
            // Made before the reservation, so that a slot freed in between is seen.
            let freed = inner.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            let reserved = inner.reserve();
            if reserved {
                match inner.leases.acquire_step(stream_id, &unreachable).await {
                    Ok(lease) => {
                        let slot = FleetSlot {
                            inner: Arc::clone(inner),
                            counted: true,
                        };
                        return (lease, slot);
                    }
                    Err(next) => {
                        inner.unreserve();
                        wait = next;
                    }
                }
            }
            // A grown share (a member gone) is acted on at once, and so is a slot
            // freed by another stream's try (the leases of streams held by other
            // members are tried too, and briefly take slots).
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                _ = members.changed() => {}
                () = &mut freed, if !reserved => {}
            }
        }
    }

    /// Leave the fleet now, so that the other members' shares grow without waiting
    /// for this member to be forgotten. Streams still owned keep their leases until
    /// released.
    pub async fn leave(&self) {
        self.inner.stop.cancel();
        let inner = &self.inner;
        let mut zrem = ::redis::cmd("ZREM");
        zrem.arg(&inner.key).arg(inner.leases.owner());
        if let Err(error) = inner.leases.redis().query::<i64>(&zrem).await {
            tracing::warn!(%error, "cannot leave the fleet; it forgets this member by itself");
        }
    }
}

/// One stream's place in this member's share, from [`Fleet::acquire`]. Dropping it
/// frees the place.
#[derive(Debug)]
pub struct FleetSlot {
    inner: Arc<Inner>,
    counted: bool,
}

impl FleetSlot {
    /// Whether this member owns more streams than its share and this stream is one
    /// to give up: then it is counted no more, and the caller should stop the stream
    /// cleanly and release its lease for another member to take.
    pub fn hand_over(&mut self) -> bool {
        if !self.counted {
            return false;
        }
        let share = self.inner.share();
        let over = self
            .inner
            .owned
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |owned| {
                (owned > share).then(|| owned - 1)
            })
            .is_ok();
        if over {
            self.counted = false;
        }
        over
    }
}

impl Drop for FleetSlot {
    fn drop(&mut self) {
        if self.counted {
            self.inner.unreserve();
        }
    }
}

async fn heartbeat(inner: std::sync::Weak<Inner>, stop: CancellationToken) {
    let unreachable = Throttle::new(WARN_EVERY);
    loop {
        let Some(fleet) = inner.upgrade() else { return };
        let leases = &fleet.leases;
        let alive_ms = u64::try_from((leases.ttl() / 2).as_millis()).unwrap_or(u64::MAX);
        let mut invocation = HEARTBEAT.prepare_invoke();
        invocation
            .key(&fleet.key)
            .arg(leases.owner())
            .arg(alive_ms.max(1));
        let redis = leases.redis().clone();
        let every = leases.retry_interval();
        // The fleet is not kept alive by its own heartbeat.
        drop(fleet);
        let answer = tokio::select! {
            () = stop.cancelled() => return,
            answer = redis.script::<usize>(&invocation, redis.op_timeout()) => answer,
        };
        match answer {
            Ok(count) => {
                if unreachable.reset() {
                    tracing::warn!("fleet store answers again");
                }
                let Some(fleet) = inner.upgrade() else { return };
                let before = fleet.members.send_replace(count);
                if before != count {
                    tracing::info!(members = count, "fleet membership changed");
                }
            }
            Err(error) => {
                if let Some(left_out) = unreachable.check() {
                    tracing::warn!(left_out, "cannot reach the fleet store, retrying: {error}");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
