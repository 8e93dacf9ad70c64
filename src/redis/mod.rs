//! Redis, for when one machine is not enough (feature `redis`): stream state shared by
//! every process that points at the same Redis, and leases that decide which process
//! owns each stream.
//!
//! - [`RedisStorage`]: a [`StateStorage`](crate::restore::StateStorage) in Redis, which
//!   a Redis that is down or slow never stops the media for.
//! - [`LeaseManager`] and [`StreamLease`]: one owner per stream, with fencing tokens;
//!   [`LeaseWatch`] keeps a lease renewed and says when it is lost.
//! - [`Fleet`]: processes sharing one set of streams, each taking its share of the
//!   leases, handing streams over when members join and taking them over when
//!   members die.
//! - [`FencedStorage`], from [`RedisStorage::fenced`]: saves that land only while this
//!   process still holds the stream's lease, so an owner that lost it can never write
//!   over the new owner's state.
//!
//! Both share one client (a lazy, reconnecting connection, each command
//! bounded in time). URLs are the redis crate's (`redis://[user][:password@]host[:port][/db]`,
//! `rediss://` with feature `redis-tls`); a password never shows in a message.

mod client;
mod fleet;
mod lease;
mod storage;

pub use client::RedisOpenError;
pub use fleet::{Fleet, FleetSlot};
pub use lease::{LeaseError, LeaseManager, LeaseManagerBuilder, LeaseWatch, StreamLease};
pub use storage::{FencedStorage, RedisStorage, RedisStorageBuilder};
