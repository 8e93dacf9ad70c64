use std::fmt;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use ::redis::Script;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::client::{CommandError, Redis, RedisOpenError};
use crate::connection::redact_url;
use crate::restore::throttle::{Throttle, WARN_EVERY};

/// Take the lease if nobody holds it; the new owner's fencing token (at least 1) is
/// one more than the last owner's. When someone holds it: minus the milliseconds it
/// has left (0 if it never expires). KEYS: lease, fence. ARGV: owner, ttl in ms.
static ACQUIRE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
local left = redis.call('PTTL', KEYS[1])
if left ~= -2 then return -math.max(left, 0) end
local token = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '#' .. token, 'NX', 'PX', ARGV[2])
return token
",
    )
});

/// Extend the lease if it is still ours. KEYS: lease. ARGV: value, ttl in ms.
static RENEW: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
",
    )
});

/// Delete the lease if it is still ours. KEYS: lease. ARGV: value.
static RELEASE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
",
    )
});

/// Why a lease operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum LeaseError {
    /// Redis could not be reached or did not answer in time. Whether the lease is
    /// still held is unknown: trust it only until its
    /// [`valid_until`](StreamLease::valid_until).
    Unavailable {
        /// The stream.
        stream_id: String,
        /// What was being done, and where.
        message: String,
        /// The Redis error or the timeout.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The lease is no longer ours: it expired, or another process holds it now.
    /// Stop producing the stream.
    Lost {
        /// The stream.
        stream_id: String,
        /// The fencing token of the lease that was lost.
        token: u64,
    },
}

impl LeaseError {
    /// Whether the lease is certainly gone (as opposed to Redis being unreachable).
    pub fn is_lost(&self) -> bool {
        matches!(self, Self::Lost { .. })
    }
}

impl fmt::Display for LeaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unavailable {
                stream_id, message, ..
            } => write!(f, "lease of stream {stream_id:?}: {message}"),
            Self::Lost { stream_id, token } => write!(
                f,
                "lease of stream {stream_id:?} (fencing token {token}) is lost"
            ),
        }
    }
}

impl std::error::Error for LeaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Unavailable { source, .. } => Some(source.as_ref()),
            Self::Lost { .. } => None,
        }
    }
}

/// Ownership of streams shared by several relay processes through one Redis.
///
/// A stream is produced by one process at a time: the one holding its lease, a key
/// `{prefix}:lease:{stream_id}` set with `SET NX PX ttl` (inside a Lua script, with
/// the fencing token). The owner renews it while it is healthy (a Lua script that
/// extends it only if it still holds the owner's value) and releases it on a clean
/// stop (a Lua compare-and-delete). If the owner dies the key expires, and another
/// process acquires the stream within the lease time and resumes it from the state
/// saved in a [`RedisStorage`](super::RedisStorage).
///
/// Each new owner gets a **fencing token** from `INCR {prefix}:fence:{stream_id}`,
/// strictly greater than every earlier owner's; it is part of the lease's value and
/// is returned by [`StreamLease::token`], so downstream systems can refuse writes from
/// an owner that has been replaced. The stream's saved state is guarded that way by
/// [`RedisStorage::fenced`](super::RedisStorage::fenced): its saves land only while
/// the lease still holds the saver's owner name and token.
///
/// **Never two owners.** An owner counts its lease valid only until the time it
/// *sent* its last successful acquire or renew plus the TTL (less a 1 % + 2 ms margin
/// for clock rates): Redis keeps the key at least that long, so no one else can hold
/// it before then. A process that was paused (a long GC pause, `SIGSTOP`, a frozen VM)
/// finds [`StreamLease::is_valid`] false the moment it runs again, and its next
/// renewal reports [`LeaseError::Lost`].
///
/// ```no_run
/// use std::time::Duration;
/// use mirror_reconnect::redis::LeaseManager;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let leases = LeaseManager::builder("redis://127.0.0.1:6379", "relay-a")
///     .ttl(Duration::from_secs(5))
///     .build()?;
/// // Wait until this process owns the stream, then keep the lease alive.
/// let lease = leases.acquire("cam1").await;
/// println!("owner of cam1 with fencing token {}", lease.token());
/// let watch = lease.keep_alive();
/// // … produce the stream while `watch.is_held()`; stop when `watch.lost()` fires:
/// // give `watch.lost_token()` to `Reconnecting::cancel_token`.
/// watch.release().await?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct LeaseManager {
    redis: Redis,
    prefix: Arc<str>,
    owner: Arc<str>,
    ttl: Duration,
    retry_interval: Duration,
}

/// Settings of a [`LeaseManager`], from [`LeaseManager::builder`].
#[must_use]
pub struct LeaseManagerBuilder {
    url: String,
    owner: String,
    prefix: String,
    ttl: Duration,
    op_timeout: Duration,
    retry_interval: Option<Duration>,
}

impl fmt::Debug for LeaseManagerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: redacted.
        f.debug_struct("LeaseManagerBuilder")
            .field("url", &redact_url(&self.url))
            .field("owner", &self.owner)
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

impl LeaseManagerBuilder {
    /// Keys are `{prefix}:lease:{stream_id}` and `{prefix}:fence:{stream_id}`.
    /// Default `mirror_reconnect`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long a lease lasts without renewal: the longest a stream stays without a
    /// producer after its owner dies. Default 10 s.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The longest one Redis command may take. Default 500 ms (and never more than a
    /// quarter of the TTL).
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How often [`LeaseManager::acquire`] tries while another process owns the
    /// stream. Default a tenth of the TTL.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = Some(interval);
        self
    }

    /// The manager. Nothing connects yet. Must be called inside a Tokio runtime.
    pub fn build(self) -> Result<LeaseManager, RedisOpenError> {
        if self.ttl < Duration::from_millis(100) {
            return Err(RedisOpenError::new(format!(
                "the lease TTL must be at least 100 ms, not {:?}",
                self.ttl
            )));
        }
        if self.op_timeout.is_zero() {
            return Err(RedisOpenError::new(
                "the Redis operation timeout must be greater than zero",
            ));
        }
        let op_timeout = self.op_timeout.min(self.ttl / 4);
        let redis = Redis::open(&self.url, op_timeout)?;
        Ok(LeaseManager {
            redis,
            prefix: self.prefix.into(),
            owner: self.owner.into(),
            retry_interval: self
                .retry_interval
                .unwrap_or(self.ttl / 10)
                .max(Duration::from_millis(10)),
            ttl: self.ttl,
        })
    }
}

impl LeaseManager {
    /// Settings for leases held as `owner` (a name unique to this process, such as
    /// host and pid) in the Redis at `url`.
    pub fn builder(url: impl Into<String>, owner: impl Into<String>) -> LeaseManagerBuilder {
        LeaseManagerBuilder {
            url: url.into(),
            owner: owner.into(),
            prefix: "mirror_reconnect".into(),
            ttl: Duration::from_secs(10),
            op_timeout: Duration::from_millis(500),
            retry_interval: None,
        }
    }

    /// This process's owner name.
    pub fn owner(&self) -> &str {
        &self.owner
    }

    /// How long a lease lasts without renewal.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// The key of `stream_id`'s lease.
    pub fn lease_key(&self, stream_id: &str) -> String {
        format!("{}:lease:{stream_id}", self.prefix)
    }

    /// The key of `stream_id`'s fencing counter.
    pub fn fence_key(&self, stream_id: &str) -> String {
        format!("{}:fence:{stream_id}", self.prefix)
    }

    fn unavailable(&self, stream_id: &str, what: &str, e: CommandError) -> LeaseError {
        LeaseError::Unavailable {
            stream_id: stream_id.to_owned(),
            message: format!("Redis at {}: cannot {what}", self.redis.endpoint()),
            source: Box::new(e),
        }
    }

    /// The time a lease stays ours when the command that set it was sent at `sent`.
    fn valid_until(&self, sent: Instant) -> Instant {
        let margin = self.ttl / 100 + Duration::from_millis(2);
        sent + self.ttl.saturating_sub(margin)
    }

    /// Take the lease of `stream_id` if nobody holds it.
    ///
    /// `Ok(None)` when another process (or another lease of this one) holds it.
    pub async fn try_acquire(&self, stream_id: &str) -> Result<Option<StreamLease>, LeaseError> {
        Ok(self.attempt(stream_id).await?.ok())
    }

    /// Take the lease of `stream_id`, or say how long its holder's lease has left
    /// (zero when unknown).
    pub(crate) async fn attempt(
        &self,
        stream_id: &str,
    ) -> Result<Result<StreamLease, Duration>, LeaseError> {
        let sent = Instant::now();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = ACQUIRE.prepare_invoke();
        invocation
            .key(self.lease_key(stream_id))
            .key(self.fence_key(stream_id))
            .arg(&*self.owner)
            .arg(ttl_ms);
        let answer: i64 = self
            .redis
            .script(&invocation, self.redis.op_timeout())
            .await
            .map_err(|e| self.unavailable(stream_id, "acquire the lease", e))?;
        let Ok(token) = u64::try_from(answer) else {
            return Ok(Err(Duration::from_millis(answer.unsigned_abs())));
        };
        if token == 0 {
            // A lease that never expires (set by hand): held.
            return Ok(Err(Duration::ZERO));
        }
        tracing::info!(stream_id, owner = %self.owner, token, "lease acquired");
        Ok(Ok(StreamLease {
            manager: self.clone(),
            stream_id: stream_id.to_owned(),
            value: format!("{}#{token}", self.owner),
            token,
            valid_until: self.valid_until(sent),
        }))
    }

    /// How long to wait before trying a lease again that has `left` to run: the
    /// retry interval, or less when the lease expires sooner.
    pub(crate) fn wait_for(&self, left: Duration) -> Duration {
        if left.is_zero() {
            self.retry_interval
        } else {
            self.retry_interval.min(left + Duration::from_millis(2))
        }
    }

    /// The key prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The Redis client.
    pub(crate) fn redis(&self) -> &Redis {
        &self.redis
    }

    /// How often to try a lease that someone else holds.
    pub(crate) fn retry_interval(&self) -> Duration {
        self.retry_interval
    }

    /// Wait until the lease of `stream_id` is ours: try now, then every retry
    /// interval while another process holds it (or just after its lease expires, if
    /// that is sooner) or Redis is unreachable (logged). Cancel by dropping the future.
    pub async fn acquire(&self, stream_id: &str) -> StreamLease {
        // A store that cannot be reached is said at once, then every 30 s while it lasts.
        let unreachable = Throttle::new(WARN_EVERY);
        loop {
            match self.acquire_step(stream_id, &unreachable).await {
                Ok(lease) => return lease,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
    }

    /// One try of an acquiring loop: the lease, or how long to wait before the next
    /// try. Redis not answering is logged through `unreachable` (at once, then at its
    /// pace), and its answering again once it had been.
    pub(crate) async fn acquire_step(
        &self,
        stream_id: &str,
        unreachable: &Throttle,
    ) -> Result<StreamLease, Duration> {
        match self.attempt(stream_id).await {
            Ok(Ok(lease)) => {
                if unreachable.reset() {
                    tracing::warn!(stream_id, "lease store answers again; lease acquired");
                }
                Ok(lease)
            }
            Ok(Err(left)) => {
                if unreachable.reset() {
                    tracing::warn!(
                        stream_id,
                        "lease store answers again; the stream is owned elsewhere, waiting"
                    );
                }
                Err(self.wait_for(left))
            }
            Err(error) => {
                if let Some(left_out) = unreachable.check() {
                    tracing::warn!(
                        stream_id,
                        left_out,
                        "cannot acquire the lease, retrying: {error}"
                    );
                }
                Err(self.retry_interval)
            }
        }
    }

    /// The owner and fencing token of whoever holds `stream_id`'s lease now, if anyone.
    pub async fn holder(&self, stream_id: &str) -> Result<Option<(String, u64)>, LeaseError> {
        let value: Option<String> = self
            .redis
            .query(::redis::cmd("GET").arg(self.lease_key(stream_id)))
            .await
            .map_err(|e| self.unavailable(stream_id, "read the lease", e))?;
        Ok(value.and_then(|v| {
            let (owner, token) = v.rsplit_once('#')?;
            Some((owner.to_owned(), token.parse().ok()?))
        }))
    }
}

/// The ownership of one stream by this process, from [`LeaseManager`].
///
/// Renew it ([`renew`](Self::renew)) well within the TTL, or let
/// [`keep_alive`](Self::keep_alive) do it; [`release`](Self::release) it on a clean
/// stop so another process can take over at once. Dropping it without releasing lets
/// it expire after the TTL.
#[derive(Debug)]
pub struct StreamLease {
    manager: LeaseManager,
    stream_id: String,
    value: String,
    token: u64,
    valid_until: Instant,
}

impl StreamLease {
    /// The stream owned.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }

    /// The fencing token: greater than that of every earlier owner of the stream.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Until when this process may act as the owner, unless renewed.
    pub fn valid_until(&self) -> Instant {
        self.valid_until
    }

    /// Whether this process may act as the owner now.
    pub fn is_valid(&self) -> bool {
        Instant::now() < self.valid_until
    }

    /// Extend the lease by the TTL if it is still ours.
    ///
    /// [`LeaseError::Lost`] when it is not (stop producing);
    /// [`LeaseError::Unavailable`] when Redis did not answer: the lease may still be
    /// ours until [`valid_until`](Self::valid_until).
    pub async fn renew(&mut self) -> Result<(), LeaseError> {
        let manager = &self.manager;
        let sent = Instant::now();
        let ttl_ms = u64::try_from(manager.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut invocation = RENEW.prepare_invoke();
        invocation
            .key(manager.lease_key(&self.stream_id))
            .arg(&self.value)
            .arg(ttl_ms);
        let renewed: i64 = manager
            .redis
            .script(&invocation, manager.redis.op_timeout())
            .await
            .map_err(|e| manager.unavailable(&self.stream_id, "renew the lease", e))?;
        if renewed == 1 {
            self.valid_until = manager.valid_until(sent);
            Ok(())
        } else {
            // Never valid again, whatever comes later.
            self.valid_until = sent.min(self.valid_until);
            Err(LeaseError::Lost {
                stream_id: self.stream_id.clone(),
                token: self.token,
            })
        }
    }

    /// Give the lease up, if it is still ours. `Ok(false)` when it was not any more.
    pub async fn release(self) -> Result<bool, LeaseError> {
        let manager = &self.manager;
        let mut invocation = RELEASE.prepare_invoke();
        invocation
            .key(manager.lease_key(&self.stream_id))
            .arg(&self.value);
        let deleted: i64 = manager
            .redis
            .script(&invocation, manager.redis.op_timeout())
            .await
            .map_err(|e| manager.unavailable(&self.stream_id, "release the lease", e))?;
        tracing::info!(stream_id = %self.stream_id, token = self.token, released = deleted == 1, "lease released");
        Ok(deleted == 1)
    }

    /// Renew the lease in the background (three times per TTL, sooner after a failed
    /// try) until it is lost, released, or the returned watch is dropped.
    ///
    /// Must be called inside a Tokio runtime.
    pub fn keep_alive(self) -> LeaseWatch {
        self.watch(None)
    }

    /// As [`keep_alive`](Self::keep_alive), but renew only while `healthy()` says
    /// so: the first renewal that finds the stream unhealthy releases the lease
    /// instead, so that another process can take the stream over at once, and the
    /// watch reports it lost.
    ///
    /// `healthy` runs on the renewing task before each renewal; keep it cheap (read a
    /// [`HealthHandle`](crate::health::HealthHandle), a flag).
    pub fn keep_alive_while<F>(self, healthy: F) -> LeaseWatch
    where
        F: Fn() -> bool + Send + 'static,
    {
        self.watch(Some(Box::new(healthy)))
    }

    fn watch(self, healthy: Option<Healthy>) -> LeaseWatch {
        let shared = Arc::new(Shared {
            token: self.token,
            stream_id: self.stream_id.clone(),
            lease_key: self.manager.lease_key(&self.stream_id),
            value: self.value.clone(),
            valid_until: Mutex::new(self.valid_until),
            lost: CancellationToken::new(),
            error: Mutex::new(None),
        });
        let stop = CancellationToken::new();
        let task = tokio::spawn(keep_alive(self, Arc::clone(&shared), stop.clone(), healthy));
        LeaseWatch {
            shared,
            stop,
            task: Some(task),
        }
    }
}

/// Whether the owner is fit to keep its stream.
type Healthy = Box<dyn Fn() -> bool + Send>;

#[derive(Debug)]
struct Shared {
    token: u64,
    stream_id: String,
    /// Where the lease lives, and the value it holds while it is ours: what a fenced
    /// save compares.
    lease_key: String,
    value: String,
    valid_until: Mutex<Instant>,
    lost: CancellationToken,
    error: Mutex<Option<String>>,
}

impl Shared {
    fn valid_until(&self) -> Instant {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn set_valid_until(&self, at: Instant) {
        *self
            .valid_until
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = at;
    }

    fn lose(&self, why: String) {
        tracing::warn!(stream_id = %self.stream_id, token = self.token, %why, "lease lost; stop producing");
        *self
            .error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(why);
        self.lost.cancel();
    }
}

async fn keep_alive(
    mut lease: StreamLease,
    shared: Arc<Shared>,
    stop: CancellationToken,
    healthy: Option<Healthy>,
) -> Option<StreamLease> {
    let ttl = lease.manager.ttl;
    let mut next = Instant::now() + ttl / 3;
    loop {
        tokio::select! {
            () = stop.cancelled() => return Some(lease),
            () = tokio::time::sleep_until(lease.valid_until) => {
                shared.lose(format!("not renewed within {ttl:?}"));
                return None;
            }
            () = tokio::time::sleep_until(next) => {}
        }
        if healthy.as_ref().is_some_and(|healthy| !healthy()) {
            // Stop claiming the stream first, then hand it over.
            shared.set_valid_until(Instant::now());
            shared.lose("released: the stream is not healthy".into());
            if let Err(error) = lease.release().await {
                tracing::warn!(%error, "cannot release the lease; it expires by itself");
            }
            return None;
        }
        match lease.renew().await {
            Ok(()) => {
                shared.set_valid_until(lease.valid_until);
                next = Instant::now() + ttl / 3;
            }
            Err(error) if error.is_lost() => {
                shared.set_valid_until(lease.valid_until);
                shared.lose(error.to_string());
                return None;
            }
            Err(error) => {
                // Still ours until valid_until: try again soon.
                tracing::warn!(%error, "lease renewal failed; retrying");
                next = Instant::now() + ttl / 10;
            }
        }
    }
}

/// The lease a write of a stream's state must still find in Redis: the lease key
/// holding this owner's value `{owner}#{token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fence {
    pub(crate) stream_id: String,
    pub(crate) lease_key: String,
    pub(crate) value: String,
    pub(crate) token: u64,
}

impl Fence {
    /// The error of a write this fence refused.
    pub(crate) fn lost(&self) -> LeaseError {
        LeaseError::Lost {
            stream_id: self.stream_id.clone(),
            token: self.token,
        }
    }
}

/// A lease kept alive in the background, from [`StreamLease::keep_alive`].
///
/// Produce the stream only while [`is_held`](Self::is_held); stop when
/// [`lost`](Self::lost) completes (or give [`lost_token`](Self::lost_token) to
/// [`Reconnecting::cancel_token`](crate::Reconnecting::cancel_token)). Dropping the
/// watch stops renewing; the lease then expires after the TTL.
#[derive(Debug)]
pub struct LeaseWatch {
    shared: Arc<Shared>,
    stop: CancellationToken,
    task: Option<tokio::task::JoinHandle<Option<StreamLease>>>,
}

impl LeaseWatch {
    /// The fencing token of the lease.
    pub fn token(&self) -> u64 {
        self.shared.token
    }

    /// The stream owned.
    pub fn stream_id(&self) -> &str {
        &self.shared.stream_id
    }

    /// What a save must find in Redis to be made by this owner.
    pub(crate) fn fence(&self) -> Fence {
        Fence {
            stream_id: self.shared.stream_id.clone(),
            lease_key: self.shared.lease_key.clone(),
            value: self.shared.value.clone(),
            token: self.shared.token,
        }
    }

    /// Until when this process may act as the owner, unless renewed in between.
    pub fn valid_until(&self) -> Instant {
        self.shared.valid_until()
    }

    /// Whether this process may act as the owner now: not lost, and within its
    /// validity even if the renewing task has not run (after a pause, say).
    pub fn is_held(&self) -> bool {
        !self.shared.lost.is_cancelled() && Instant::now() < self.shared.valid_until()
    }

    /// Completes when the lease is lost (not on release).
    pub async fn lost(&self) {
        self.shared.lost.cancelled().await;
    }

    /// A token cancelled when the lease is lost.
    pub fn lost_token(&self) -> CancellationToken {
        self.shared.lost.clone()
    }

    /// Why the lease was lost, once it was.
    pub fn lost_reason(&self) -> Option<String> {
        self.shared
            .error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Stop renewing and give the lease up. `Ok(false)` when it was already lost.
    pub async fn release(mut self) -> Result<bool, LeaseError> {
        self.stop.cancel();
        let lease = match self.task.take() {
            Some(task) => task.await.ok().flatten(),
            None => None,
        };
        match lease {
            Some(lease) => lease.release().await,
            None => Ok(false),
        }
    }
}

impl Drop for LeaseWatch {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_shows_its_url_without_the_password() {
        let shown = format!(
            "{:?}",
            LeaseManager::builder("redis://:s3cr3t-MARKER@cache.example:6379", "relay-a")
        );
        assert!(!shown.contains("s3cr3t-MARKER"), "{shown}");
        assert!(shown.contains("redis://:***@cache.example:6379"), "{shown}");
    }
}
