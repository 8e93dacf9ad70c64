use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::connection::ConnectionState;
use crate::error::BoxError;

/// The future a [`StateStorage`] method returns.
pub type StorageFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StorageError>> + Send + 'a>>;

/// Where saved [`ConnectionState`]s live, keyed by stream id.
///
/// Methods return boxed futures so that a storage can sit behind `Arc<dyn StateStorage>`.
///
/// ```
/// use std::sync::Arc;
/// use mirror_reconnect::connection::{ConnectionState, Protocol};
/// use mirror_reconnect::restore::{MemoryStorage, StateStorage};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mirror_reconnect::restore::StorageError> {
/// let storage: Arc<dyn StateStorage> = Arc::new(MemoryStorage::new());
/// let mut state = ConnectionState::new("cam1", Protocol::Srt);
/// state.codec = Some("h264".into());
/// storage.save(&state).await?;
/// assert_eq!(storage.load("cam1").await?.unwrap().codec.as_deref(), Some("h264"));
/// storage.delete("cam1").await?;
/// assert!(storage.load("cam1").await?.is_none());
/// # Ok(()) }
/// ```
pub trait StateStorage: Send + Sync + 'static {
    /// Save `state` under its stream id, replacing what was there.
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()>;

    /// The state saved for `stream_id`, if any (and not expired).
    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>>;

    /// Forget the state of `stream_id`. Deleting what is not there is not an error.
    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()>;
}

// Stores are used as `Arc<dyn StateStorage>`: this stops compiling if the trait stops
// being usable as a trait object.
#[allow(dead_code)]
fn _obj_safe(_: Box<dyn StateStorage>) {}

/// What went wrong in a [`StateStorage`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The store could not be reached or did not answer.
    Unavailable,
    /// What was stored could not be read back as a state.
    Corrupt,
    /// The save was refused because this process no longer holds the stream's lease
    /// (see `RedisStorage::fenced`, feature `redis`). Retrying cannot help: stop
    /// producing the stream.
    FencedOut,
    /// What was stored was read back, but cannot be used: applied to the target, it
    /// makes the target invalid. The stream starts from its configured target.
    Invalid,
    /// Anything else.
    Other,
}

impl StorageErrorKind {
    /// The kind's name, as in the `kind` label of
    /// `mirror_reconnect_state_store_errors_total`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unavailable => "unavailable",
            Self::Corrupt => "corrupt",
            Self::FencedOut => "fenced_out",
            Self::Invalid => "invalid",
            Self::Other => "other",
        }
    }
}

impl fmt::Display for StorageErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error of a [`StateStorage`], naming the stream and what failed.
#[derive(Debug)]
pub struct StorageError {
    kind: StorageErrorKind,
    stream_id: String,
    message: String,
    source: Option<BoxError>,
}

impl StorageError {
    /// A new error about `stream_id`.
    pub fn new(
        kind: StorageErrorKind,
        stream_id: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            stream_id: stream_id.into(),
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure.
    pub fn kind(&self) -> StorageErrorKind {
        self.kind
    }

    /// The stream concerned.
    pub fn stream_id(&self) -> &str {
        &self.stream_id
    }
}

impl fmt::Display for StorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "state of stream {:?}: {}", self.stream_id, self.message)?;
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

impl std::error::Error for StorageError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// States kept in this process's memory: survives reconnects, not restarts.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    ttl: Option<Duration>,
    /// Boxed: the map keeps spare slots, and a slot that holds a whole state costs its
    /// size (some 250 bytes) even when empty.
    states: Mutex<HashMap<String, Box<Saved>>>,
}

/// A state and when it was saved. The state's `stream_id` is left empty: the map's
/// key holds it, and a second copy of every stream id would cost each stream one
/// more allocation.
type Saved = (ConnectionState, Instant);

impl MemoryStorage {
    /// An empty store whose states never expire.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty store whose states expire `ttl` after they were saved.
    pub fn with_ttl(ttl: Duration) -> Self {
        Self {
            ttl: Some(ttl),
            states: Mutex::default(),
        }
    }

    fn states(&self) -> std::sync::MutexGuard<'_, HashMap<String, Box<Saved>>> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.states
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// How many states are stored, expired ones included.
    pub fn len(&self) -> usize {
        self.states().len()
    }

    /// Whether nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StateStorage for MemoryStorage {
    fn save<'a>(&'a self, state: &'a ConnectionState) -> StorageFuture<'a, ()> {
        let mut copy = state.clone();
        copy.stream_id = String::new();
        let saved = (copy, Instant::now());
        let mut states = self.states();
        // A state saved again replaces the one before in place: no new key, no new box.
        match states.get_mut(&state.stream_id) {
            Some(slot) => **slot = saved,
            None => {
                states.insert(state.stream_id.clone(), Box::new(saved));
            }
        }
        drop(states);
        Box::pin(std::future::ready(Ok(())))
    }

    fn load<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, Option<ConnectionState>> {
        let mut states = self.states();
        let found = match states.get(stream_id).map(|saved| &**saved) {
            Some((_, saved)) if self.ttl.is_some_and(|ttl| saved.elapsed() >= ttl) => {
                states.remove(stream_id);
                None
            }
            Some((state, _)) => {
                let mut state = state.clone();
                state.stream_id = stream_id.to_owned();
                Some(state)
            }
            None => None,
        };
        Box::pin(std::future::ready(Ok(found)))
    }

    fn delete<'a>(&'a self, stream_id: &'a str) -> StorageFuture<'a, ()> {
        self.states().remove(stream_id);
        Box::pin(std::future::ready(Ok(())))
    }
}
