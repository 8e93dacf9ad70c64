//! Saving a stream's state and restoring it across reconnects and restarts.
//!
//! [`StateRestoreLayer`] loads the stream's saved [`ConnectionState`] before each connect
//! and applies it to the target ([`StreamTarget::apply_state`]), restores it onto the
//! new connection ([`Connection::restore`]), and saves the connection's state as packets
//! flow (every save interval) and when it ends. A failing store is logged and counted,
//! never fatal: the media goes on, starting from the configured target when nothing can
//! be loaded.
//!
//! When relays share a Redis and own each stream through a `LeaseManager` lease, give
//! the stack `RedisStorage::fenced` (feature `redis`) so that only the lease holder's
//! saves land.
//!
//! [`ConnectionState`]: crate::connection::ConnectionState
//! [`StreamTarget::apply_state`]: crate::connection::StreamTarget::apply_state
//! [`Connection::restore`]: crate::connection::Connection::restore

mod file;
mod layer;
#[cfg(feature = "redis")]
mod lease;
#[cfg(feature = "redis")]
mod redis;
mod service;
mod storage;
mod throttle;

#[cfg(feature = "redis")]
pub use self::redis::{FencedStorage, RedisOpenError, RedisStorage, RedisStorageBuilder};
pub use file::FileStorage;
pub use layer::StateRestoreLayer;
#[cfg(feature = "redis")]
pub use lease::{LeaseError, LeaseManager, LeaseManagerBuilder, LeaseWatch, StreamLease};
pub use service::{Restored, StateRestore};
pub use storage::{MemoryStorage, StateStorage, StorageError, StorageErrorKind, StorageFuture};
