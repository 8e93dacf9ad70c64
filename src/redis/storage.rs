//! States in Redis, shared by every process that points at it, and the same store
//! with saves fenced by a stream's lease.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex, MutexGuard, Weak};
use std::time::Duration;

use ::redis::Script;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::client::{CommandError, Redis, RedisOpenError};
use super::lease::{Fence, LeaseWatch};
use crate::connection::{redact_url, ConnectionState};
use crate::restore::{StateStorage, StorageError, StorageErrorKind, StorageFuture};

/// Save a state only if the stream's lease still holds the saving owner's value.
/// KEYS: lease, state. ARGV: owner value, state JSON, expiry in ms (0: none).
static FENCED_SET: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[3] == '0' then
  redis.call('SET', KEYS[2], ARGV[2])
else
  redis.call('SET', KEYS[2], ARGV[2], 'PX', ARGV[3])
end
return 1
",
    )
});

/// Delete a state only if the stream's lease still holds the deleting owner's value.
/// KEYS: lease, state. ARGV: owner value.
static FENCED_DEL: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[2])
return 1
",
    )
});

/// A save that has not reached Redis yet.
#[derive(Debug)]
struct Pending {
    generation: u64,
    state: ConnectionState,
    since: Instant,
    /// The lease the save must still find when it is written, retries included.
    fence: Option<Arc<Fence>>,
}

/// Why a pending save did not reach Redis.
enum WriteError {
    /// Redis did not take it: it stays pending and is tried again.
    Retry(StorageError),
    /// The stream's lease is not the saver's any more: the save is dropped for good.
    FencedOut(StorageError),
}

struct Inner {
    redis: Redis,
    prefix: String,
    ttl: Option<Duration>,
    retry_interval: Duration,
    /// The latest unsaved state of each stream whose last save failed.
    pending: Mutex<HashMap<String, Pending>>,
    /// One writer per stream at a time, so that a retried old state never lands after
    /// a newer one.
    writers: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    generation: AtomicU64,
    retrying: AtomicBool,
    wake_retry: Arc<Notify>,
}

/// States kept in Redis: survives restarts, and is shared by every process (and
/// machine) that points at the same Redis.
///
/// Each stream's [`ConnectionState`] is one JSON string at `{prefix}:{stream_id}`,
/// written with `SET … PX <ttl>` so Redis itself forgets states older than the TTL.
/// The URL is the redis crate's: `redis://[user][:password@]host[:port][/db]`, or
/// `rediss://` for TLS with the `redis-tls` feature.
///
/// A Redis that is down or slow never holds the media up:
///
/// - the client connects lazily and reconnects by itself; every command is bounded
///   by a short [operation timeout](RedisStorageBuilder::op_timeout) (500 ms by
///   default) and fails as [`StorageErrorKind::Unavailable`] past it;
/// - a save that failed is kept (the latest per stream) and written again by a
///   background task every [retry interval](RedisStorageBuilder::retry_interval), and
///   at once after any command succeeds, so the state is in Redis again soon after
///   Redis is back;
/// - a load while a stream's save is still pending returns that pending state, the
///   newest there is; a load that fails or finds something unreadable is an error
///   ([`Unavailable`](StorageErrorKind::Unavailable) or
///   [`Corrupt`](StorageErrorKind::Corrupt), naming the key), and
///   [`StateRestoreLayer`](crate::restore::StateRestoreLayer) then starts the stream from its
///   configured target.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use mirror_reconnect::prelude::*;
/// use mirror_reconnect::redis::RedisStorage;
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let config = ReconnectionConfig::default();
/// let storage = RedisStorage::builder("redis://:s3cret@127.0.0.1:6379/0")
///     .prefix("mirror:state")
///     .ttl(config.state_ttl)
///     .op_timeout(Duration::from_millis(300))
///     .build()?;
/// let storage: Arc<dyn StateStorage> = Arc::new(storage);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisStorage {
    inner: Arc<Inner>,
}

impl fmt::Debug for RedisStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStorage")
            .field("endpoint", &self.inner.redis.endpoint())
            .field("prefix", &self.inner.prefix)
            .field("ttl", &self.inner.ttl)
            .field("pending", &self.pending_count())
            .finish_non_exhaustive()
    }
}

/// Settings of a [`RedisStorage`], from [`RedisStorage::builder`].
#[must_use]
pub struct RedisStorageBuilder {
    url: String,
    prefix: String,
    ttl: Option<Duration>,
    op_timeout: Duration,
    retry_interval: Duration,
}

impl fmt::Debug for RedisStorageBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: redacted.
        f.debug_struct("RedisStorageBuilder")
            .field("url", &redact_url(&self.url))
            .field("prefix", &self.prefix)
            .field("ttl", &self.ttl)
            .field("op_timeout", &self.op_timeout)
            .field("retry_interval", &self.retry_interval)
            .finish_non_exhaustive()
    }
}

impl RedisStorageBuilder {
    /// Keys are `{prefix}:{stream_id}`. Default `mirror_reconnect:state`.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// States expire this long after they were saved (usually the config's
    /// `state_ttl`). Default: never.
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The longest any one command (connecting included) may take before it fails.
    /// Default 500 ms.
    pub fn op_timeout(mut self, timeout: Duration) -> Self {
        self.op_timeout = timeout;
        self
    }

    /// How often failed saves are tried again while Redis is unreachable. Default 1 s.
    pub fn retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// The store. Nothing connects yet: the first command does, so a Redis that is
    /// down at start-up does not keep the streams from starting.
    ///
    /// Must be called inside a Tokio runtime. Fails when the URL is invalid, or is
    /// `rediss://` without the `redis-tls` feature.
    pub fn build(self) -> Result<RedisStorage, RedisOpenError> {
        if self.op_timeout.is_zero() {
            return Err(RedisOpenError::new(
                "the Redis operation timeout must be greater than zero",
            ));
        }
        if self.ttl.is_some_and(|ttl| ttl < Duration::from_millis(1)) {
            return Err(RedisOpenError::new(
                "the Redis state TTL must be at least 1 ms",
            ));
        }
        let redis = Redis::open(&self.url, self.op_timeout)?;
        Ok(RedisStorage {
            inner: Arc::new(Inner {
                redis,
                prefix: self.prefix,
                ttl: self.ttl,
                retry_interval: self.retry_interval.max(Duration::from_millis(10)),
                pending: Mutex::default(),
                writers: Mutex::default(),
                generation: AtomicU64::new(0),
                retrying: AtomicBool::new(false),
                wake_retry: Arc::default(),
            }),
        })
    }
}

impl RedisStorage {
    /// A store at `url` with the default settings (see [`builder`](Self::builder)).
    pub fn open(url: &str) -> Result<Self, RedisOpenError> {
        Self::builder(url).build()
    }

    /// Settings for a store at `url`.
    pub fn builder(url: impl Into<String>) -> RedisStorageBuilder {
        RedisStorageBuilder {
            url: url.into(),
            prefix: "mirror_reconnect:state".into(),
            ttl: None,
            op_timeout: Duration::from_millis(500),
            retry_interval: Duration::from_secs(1),
        }
    }

    /// The key `stream_id`'s state is saved under.
    pub fn key(&self, stream_id: &str) -> String {
        format!("{}:{stream_id}", self.inner.prefix)
    }

    /// How many streams have a save that has not reached Redis yet.
    pub fn pending_count(&self) -> usize {
        self.inner.pending().len()
    }

    /// Try to write every pending save now. Returns how many are still pending.
    pub async fn flush(&self) -> usize {
        Inner::flush(&self.inner).await
    }

    /// This store as seen by the owner of `lease`: saves (and deletes) of the leased
    /// stream's state land only while the lease is still this owner's. See
    /// [`FencedStorage`].
    ///
    /// The lease must live in the same Redis (and database) as the states; if it
    /// does not, every save of the stream is refused.
    ///
    /// ```no_run
    /// use std::sync::Arc;
    /// use mirror_reconnect::restore::{StateStorage};
    /// use mirror_reconnect::redis::{LeaseManager, RedisStorage};
    ///
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// let url = "redis://127.0.0.1:6379";
    /// let storage = RedisStorage::open(url)?;
    /// let leases = LeaseManager::builder(url, "relay-a").build()?;
    /// let lease = leases.acquire("cam1").await.keep_alive();
    /// // Give this one to the layer stack of cam1.
    /// let storage: Arc<dyn StateStorage> = Arc::new(storage.fenced(&lease));
    /// # Ok(()) }
    /// ```
    pub fn fenced(&self, lease: &LeaseWatch) -> FencedStorage {
        FencedStorage {
            storage: self.clone(),
            fence: Arc::new(lease.fence()),
        }
    }
}

/// A [`RedisStorage`] whose saves of one stream are fenced by that stream's lease,
/// from [`RedisStorage::fenced`].
///
/// Each save of the leased stream's state is one Lua script in Redis that reads the
/// lease key and writes the state (with its expiry) only if the lease still holds this
/// owner's value, `{owner}#{fencing token}`. An owner that lost its lease (it was
/// paused past the TTL, or cut off from Redis while another process took the stream
/// over) can then never write over the state of the new owner: its periodic saves,
/// its final save, and any save still pending from before are all refused. Deletes of
/// the stream's state are fenced the same way.
///
/// A refused save is a [`StorageError`] of kind [`StorageErrorKind::FencedOut`]
/// whose [`source`](std::error::Error::source) is
/// [`LeaseError::Lost`](super::LeaseError::Lost) with the stream and the fencing
/// token. [`StateRestoreLayer`](crate::restore::StateRestoreLayer) counts it like any store
/// error; it is never retried, and a pending save that a retry finds fenced out is
/// dropped. A save while Redis is unreachable fails fast and is kept pending as with
/// [`RedisStorage`], and is checked against the lease again when it is retried.
///
/// Loads, and saves of other streams, are those of the plain store. Saves made
/// through the plain [`RedisStorage`] are not fenced.
///
/// ```no_run
/// use std::error::Error as _;
/// use mirror_reconnect::connection::{ConnectionState, Protocol};
/// use mirror_reconnect::restore::{StateStorage};
/// use mirror_reconnect::redis::{LeaseError, LeaseManager, RedisStorage};
///
/// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let url = "redis://127.0.0.1:6379";
/// let leases = LeaseManager::builder(url, "relay-a").build()?;
/// let lease = leases.acquire("cam1").await.keep_alive();
/// let storage = RedisStorage::open(url)?.fenced(&lease);
/// match storage.save(&ConnectionState::new("cam1", Protocol::Srt)).await {
///     Ok(()) => {}
///     Err(error)
///         if error
///             .source()
///             .and_then(|e| e.downcast_ref::<LeaseError>())
///             .is_some_and(LeaseError::is_lost) =>
///     {
///         // Another process owns cam1 now: stop producing it.
///     }
///     Err(error) => eprintln!("not saved yet, retried in the background: {error}"),
/// }
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct FencedStorage {
    storage: RedisStorage,
    fence: Arc<Fence>,
}

impl fmt::Debug for FencedStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FencedStorage")
            .field("storage", &self.storage)
            .field("stream_id", &self.fence.stream_id)
            .field("token", &self.fence.token)
            .finish()
    }
}

impl FencedStorage {
    /// The stream whose saves are fenced.
    ///
    /// ```no_run
    /// # use mirror_reconnect::redis::{LeaseManager, RedisStorage};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let url = "redis://127.0.0.1:6379";
    /// let lease = LeaseManager::builder(url, "relay-a").build()?.acquire("cam1").await.keep_alive();
    /// let storage = RedisStorage::open(url)?.fenced(&lease);
    /// assert_eq!(storage.stream_id(), "cam1");
    /// # Ok(()) }
    /// ```
    pub fn stream_id(&self) -> &str {
        &self.fence.stream_id
    }

    /// The fencing token of the lease the saves must still find.
    ///
    /// ```no_run
    /// # use mirror_reconnect::redis::{LeaseManager, RedisStorage};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let url = "redis://127.0.0.1:6379";
    /// let lease = LeaseManager::builder(url, "relay-a").build()?.acquire("cam1").await.keep_alive();
    /// let storage = RedisStorage::open(url)?.fenced(&lease);
    /// assert_eq!(storage.token(), lease.token());
    /// # Ok(()) }
    /// ```
    pub fn token(&self) -> u64 {
        self.fence.token
    }

    /// The plain store underneath (whose saves are not fenced).
    ///
    /// ```no_run
    /// # use mirror_reconnect::redis::{LeaseManager, RedisStorage};
    /// # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let url = "redis://127.0.0.1:6379";
    /// let lease = LeaseManager::builder(url, "relay-a").build()?.acquire("cam1").await.keep_alive();
    /// let storage = RedisStorage::open(url)?.fenced(&lease);
    /// println!("{} saves waiting for Redis", storage.get_ref().pending_count());
    /// # Ok(()) }
    /// ```
    pub fn get_ref(&self) -> &RedisStorage {
        &self.storage
    }

    /// The fence for `stream_id`, if its saves are fenced.
    fn fence_for(&self, stream_id: &str) -> Option<&Arc<Fence>> {
        (stream_id == self.fence.stream_id).then_some(&self.fence)
    }
}

fn unavailable(stream_id: &str, endpoint: &str, what: &str, e: CommandError) -> StorageError {
    StorageError::new(
        StorageErrorKind::Unavailable,
        stream_id,
        format!("Redis at {endpoint}: {what}"),
    )
    .with_source(e)
}

fn fenced_out(fence: &Fence, what: &str) -> StorageError {
    StorageError::new(
        StorageErrorKind::FencedOut,
        &fence.stream_id,
        format!("fenced out (lease lost), {what}"),
    )
    .with_source(fence.lost())
}

impl Inner {
    fn pending(&self) -> MutexGuard<'_, HashMap<String, Pending>> {
        self.pending
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn writer(&self, stream_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut writers = self
            .writers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Arc::clone(writers.entry(stream_id.to_owned()).or_default())
    }

    fn key(&self, stream_id: &str) -> String {
        format!("{}:{stream_id}", self.prefix)
    }

    /// A pending state that is older than the TTL would have expired in Redis too.
    fn expired(&self, pending: &Pending) -> bool {
        self.ttl.is_some_and(|ttl| pending.since.elapsed() >= ttl)
    }

    /// Forget the pending save `generation` of `stream_id`, unless a newer one replaced it.
    fn settle(&self, stream_id: &str, generation: u64) {
        let mut pending = self.pending();
        if pending
            .get(stream_id)
            .is_some_and(|p| p.generation == generation)
        {
            pending.remove(stream_id);
        }
    }

    /// Write the pending state of `stream_id`, if it has one. The caller holds its writer.
    ///
    /// A fenced save is one script that checks the lease and sets the state, so that no
    /// other owner can take the lease between the check and the write.
    async fn write_pending(&self, stream_id: &str) -> Result<(), WriteError> {
        let (generation, json, ttl_left, fence) = {
            let mut pending = self.pending();
            let Some(entry) = pending.get(stream_id) else {
                return Ok(());
            };
            if self.expired(entry) {
                pending.remove(stream_id);
                return Ok(());
            }
            let json = serde_json::to_string(&entry.state).map_err(|e| {
                WriteError::Retry(
                    StorageError::new(
                        StorageErrorKind::Other,
                        stream_id,
                        "cannot encode the state as JSON",
                    )
                    .with_source(e),
                )
            })?;
            let ttl_left = self
                .ttl
                .map(|ttl| ttl.saturating_sub(entry.since.elapsed()));
            (entry.generation, json, ttl_left, entry.fence.clone())
        };
        let key = self.key(stream_id);
        let millis = ttl_left.map(|ttl| u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
        let written = match &fence {
            None => {
                let mut cmd = ::redis::cmd("SET");
                cmd.arg(&key).arg(json);
                if let Some(millis) = millis {
                    cmd.arg("PX").arg(millis);
                }
                self.redis.query::<()>(&cmd).await.map(|()| true)
            }
            Some(fence) => {
                let mut invocation = FENCED_SET.prepare_invoke();
                invocation
                    .key(&fence.lease_key)
                    .key(&key)
                    .arg(&fence.value)
                    .arg(json)
                    .arg(millis.unwrap_or(0));
                self.redis
                    .script::<i64>(&invocation, self.redis.op_timeout())
                    .await
                    .map(|set| set == 1)
            }
        };
        match (written, fence) {
            (Ok(true), _) | (Ok(false), None) => {
                self.settle(stream_id, generation);
                Ok(())
            }
            (Ok(false), Some(fence)) => {
                // Retrying cannot help: the lease never comes back to this token.
                self.settle(stream_id, generation);
                Err(WriteError::FencedOut(fenced_out(
                    &fence,
                    &format!("{key} not saved"),
                )))
            }
            (Err(e), _) => Err(WriteError::Retry(unavailable(
                stream_id,
                self.redis.endpoint(),
                &format!("cannot save {key}"),
                e,
            ))),
        }
    }

    /// Write every pending state; stop at the first failure (Redis is still away).
    /// Saves found fenced out are dropped. Returns how many are still pending.
    async fn flush(self: &Arc<Self>) -> usize {
        let streams: Vec<String> = self.pending().keys().cloned().collect();
        for stream_id in streams {
            let writer = self.writer(&stream_id);
            let _writing = writer.lock().await;
            match self.write_pending(&stream_id).await {
                Ok(()) => tracing::debug!(stream_id, "pending state saved"),
                Err(WriteError::FencedOut(error)) => {
                    tracing::warn!(%error, "pending state dropped: another process owns the stream now");
                }
                Err(WriteError::Retry(error)) => {
                    tracing::debug!(%error, "pending state still not saved");
                    break;
                }
            }
        }
        self.pending().len()
    }

    /// A command succeeded: Redis is reachable, so pending saves can go now.
    fn succeeded(&self) {
        if !self.pending().is_empty() {
            self.wake_retry.notify_one();
        }
    }

    /// Make sure a task retries the pending saves until there are none.
    fn ensure_retrying(self: &Arc<Self>) {
        if self.retrying.swap(true, Ordering::AcqRel) {
            return;
        }
        tokio::spawn(retry_pending(
            Arc::downgrade(self),
            Arc::clone(&self.wake_retry),
            self.retry_interval,
        ));
    }
}

/// The background retry of pending saves. Ends when nothing is pending, or when the
/// store is dropped (it holds the store only while flushing).
async fn retry_pending(store: Weak<Inner>, wake: Arc<Notify>, interval: Duration) {
    loop {
        tokio::select! {
            () = tokio::time::sleep(interval) => {}
            () = wake.notified() => {}
        }
        let Some(inner) = store.upgrade() else {
            return;
        };
        if inner.flush().await == 0 {
            inner.retrying.store(false, Ordering::Release);
            // A save that failed between the flush and the flag is ours to retry,
            // unless its own call already started another task.
            if inner.pending().is_empty() || inner.retrying.swap(true, Ordering::AcqRel) {
                return;
            }
        }
    }
}

impl Inner {
    async fn save(
        self: &Arc<Self>,
        state: &ConnectionState,
        fence: Option<&Arc<Fence>>,
    ) -> Result<(), StorageError> {
        let stream_id = state.stream_id.as_str();
        let writer = self.writer(stream_id);
        let _writing = writer.lock().await;
        // The newest state replaces any older one still pending, and is what a
        // failed save leaves to be retried.
        self.pending().insert(
            stream_id.to_owned(),
            Pending {
                generation: self.generation.fetch_add(1, Ordering::Relaxed),
                state: state.clone(),
                since: Instant::now(),
                fence: fence.cloned(),
            },
        );
        match self.write_pending(stream_id).await {
            Ok(()) => {
                self.succeeded();
                Ok(())
            }
            Err(WriteError::FencedOut(error)) => {
                // Redis answered: other pending saves can go.
                self.succeeded();
                Err(error)
            }
            Err(WriteError::Retry(error)) => {
                self.ensure_retrying();
                Err(error)
            }
        }
    }

    async fn delete(
        &self,
        stream_id: &str,
        fence: Option<&Arc<Fence>>,
    ) -> Result<(), StorageError> {
        let writer = self.writer(stream_id);
        let _writing = writer.lock().await;
        self.pending().remove(stream_id);
        let key = self.key(stream_id);
        let deleted = match fence {
            None => self
                .redis
                .query::<()>(::redis::cmd("DEL").arg(&key))
                .await
                .map(|()| true),
            Some(fence) => {
                let mut invocation = FENCED_DEL.prepare_invoke();
                invocation.key(&fence.lease_key).key(&key).arg(&fence.value);
                self.redis
                    .script::<i64>(&invocation, self.redis.op_timeout())
                    .await
                    .map(|done| done == 1)
            }
        };
        let deleted = deleted.map_err(|e| {
            unavailable(
                stream_id,
                self.redis.endpoint(),
                &format!("cannot delete {key}"),
                e,
            )
        })?;
        self.succeeded();
        match fence {
            Some(fence) if !deleted => Err(fenced_out(fence, &format!("{key} not deleted"))),
            _ => Ok(()),
        }
    }
}

impl StateStorage for RedisStorage {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        Box::pin(self.inner.save(state, None))
    }

    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        Box::pin(async move {
            let inner = &self.inner;
            {
                let mut pending = inner.pending();
                match pending.get(stream_id) {
                    Some(entry) if inner.expired(entry) => {
                        pending.remove(stream_id);
                    }
                    Some(entry) => return Ok(Some(entry.state.clone())),
                    None => {}
                }
            }
            let key = inner.key(stream_id);
            let value: Option<String> = inner
                .redis
                .query(::redis::cmd("GET").arg(&key))
                .await
                .map_err(|e| {
                    unavailable(
                        stream_id,
                        inner.redis.endpoint(),
                        &format!("cannot load {key}"),
                        e,
                    )
                })?;
            inner.succeeded();
            let Some(json) = value else {
                return Ok(None);
            };
            let state: ConnectionState = serde_json::from_str(&json).map_err(|e| {
                StorageError::new(
                    StorageErrorKind::Corrupt,
                    stream_id,
                    format!(
                        "Redis key {key} at {}: not a saved stream state: {e}",
                        inner.redis.endpoint()
                    ),
                )
            })?;
            if state.stream_id != stream_id {
                return Err(StorageError::new(
                    StorageErrorKind::Corrupt,
                    stream_id,
                    format!(
                        "Redis key {key} holds the state of stream {:?}",
                        state.stream_id
                    ),
                ));
            }
            Ok(Some(state))
        })
    }

    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(self.inner.delete(stream_id, None))
    }
}

impl StateStorage for FencedStorage {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        Box::pin(
            self.storage
                .inner
                .save(state, self.fence_for(&state.stream_id)),
        )
    }

    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        self.storage.load(stream_id)
    }

    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()> {
        Box::pin(
            self.storage
                .inner
                .delete(stream_id, self.fence_for(stream_id)),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builder_shows_its_url_without_the_password() {
        let shown = format!(
            "{:?}",
            RedisStorage::builder("redis://user:s3cr3t-MARKER@cache.example:6379/1")
        );
        assert!(!shown.contains("s3cr3t-MARKER"), "{shown}");
        assert!(
            shown.contains("redis://user:***@cache.example:6379/1"),
            "{shown}"
        );
    }
}
