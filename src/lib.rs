#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(clippy::unwrap_used)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

pub mod backoff;
pub mod config;
pub mod connection;
pub mod detect;
pub mod driver;
pub mod error;
pub mod failover;
pub mod health;
mod macros;
pub mod metrics;
#[cfg(any(feature = "srt", feature = "rtp", feature = "udp"))]
pub mod protocol;
#[cfg(feature = "redis")]
pub mod redis;
pub mod restore;
mod serde_secs;
#[cfg(feature = "network-simulation")]
pub mod sim;
pub mod stack;

pub use config::ReconnectionConfig;
pub use driver::{Events, Reconnecting, ReconnectionEvent};
pub use error::BoxError;

/// The names most programs need, in one import.
pub mod prelude {
    pub use crate::backoff::{
        Backoff, BackoffRetryLayer, ExponentialBackoff, FixedBackoff, Jitter, LinearBackoff,
    };
    pub use crate::config::ReconnectionConfig;
    pub use crate::connection::{Connection, Packet, Protocol, StreamTarget, Target};
    pub use crate::detect::{FailureDetectLayer, FailureReason, FailureThresholds};
    pub use crate::driver::{EventType, Events, Reconnecting, ReconnectionEvent};
    pub use crate::health::HealthLayer;
    pub use crate::restore::{MemoryStorage, StateRestoreLayer, StateStorage};
    pub use crate::stack::ReconnectingBuilder;
}
