//! Saving a stream's state and restoring it across reconnects and restarts.
//!
//! [`StateRestoreLayer`] loads the stream's saved [`ConnectionState`] before each connect
//! and applies it to the target ([`StreamTarget::apply_state`]), restores it onto the
//! new connection ([`Connection::restore`]), and saves the connection's state as packets
//! flow (every save interval) and when it ends. A failing store is logged and counted,
//! never fatal: the media goes on, starting from the configured target when nothing can
//! be loaded. The layer also keeps, in memory, the newest state its connections saved:
//! a reconnect starts from whichever of it and the stored state is newer, so a store that
//! is slow or down loses nothing across reconnects, and a last save not finished within
//! the 1 s the end of a connection waits for it goes on in the background.
//!
//! The stores here are in memory ([`MemoryStorage`]) and in files ([`FileStorage`], the
//! embedded default); Redis, for state shared by many processes, and the leases that
//! decide which process owns a stream, are in `crate::redis` (feature `redis`).
//!
//! [`ConnectionState`]: crate::connection::ConnectionState
//! [`StreamTarget::apply_state`]: crate::connection::StreamTarget::apply_state
//! [`Connection::restore`]: crate::connection::Connection::restore

mod file;
mod layer;
mod service;
mod storage;
pub(crate) mod throttle;

pub use file::{FileStorage, MAX_STATE_FILE};
pub use layer::StateRestoreLayer;
pub use service::{Restored, StateRestore};
pub use storage::{MemoryStorage, StateStorage, StorageError, StorageErrorKind, StorageFuture};
