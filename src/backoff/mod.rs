//! Retrying a failed connect with exponential, linear or fixed backoff and jitter.
//!
//! [`BackoffRetryLayer`] wraps the connector; a [`Backoff`] decides the waits.
//! Composes with tower's own layers:
//!
//! ```
//! use std::time::Duration;
//! use mirror_reconnect::backoff::{BackoffRetryLayer, ExponentialBackoff, Jitter};
//! use tower::{ServiceBuilder, ServiceExt};
//! use tower::timeout::TimeoutLayer;
//! use tower::limit::GlobalConcurrencyLimitLayer;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! // One limit for every stream of the process: at most 8 connects at once.
//! let limit = GlobalConcurrencyLimitLayer::new(8);
//! let connector = ServiceBuilder::new()
//!     .layer(
//!         BackoffRetryLayer::new(
//!             ExponentialBackoff::new(Duration::from_millis(250), Duration::from_secs(10), 2.0)
//!                 .jitter(Jitter::Full),
//!         )
//!         .max_retries(5),
//!     )
//!     .layer(limit)
//!     .layer(TimeoutLayer::new(Duration::from_secs(3))) // bounds each attempt
//!     .service_fn(|addr: &'static str| async move { Ok::<_, std::io::Error>(addr.len()) });
//! assert_eq!(connector.oneshot("127.0.0.1:9000").await.unwrap(), 14);
//! # }
//! ```

pub mod error;
mod future;
mod layer;
mod service;
mod strategy;

use std::time::Duration;

use crate::connection::ProbeOutcome;

pub use future::ResponseFuture;
pub use layer::BackoffRetryLayer;
pub(crate) use layer::{any_probe, RetryReport};
pub use service::BackoffRetry;
pub use strategy::{Backoff, ExponentialBackoff, FixedBackoff, Jitter, LinearBackoff};

/// What an attempt callback is told, right before the attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// 1 for the first attempt, 2 for the first retry, and so on.
    pub number: u32,
    /// How long was waited before this attempt (zero for the first).
    pub delay: Duration,
    /// Why the attempt before failed (none for the first).
    pub last_error: Option<String>,
}

/// What a probe callback is told, after each probe made while waiting out a delay
/// (see [`BackoffRetryLayer::probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Probed {
    /// What the probe found. `Answered` ends the wait: the next attempt starts at once.
    pub outcome: ProbeOutcome,
    /// 1 for the first probe of this wait, 2 for the next, and so on.
    pub number: u32,
    /// The attempts made so far in this connect.
    pub attempts: u32,
}

/// Any of the three policies, chosen at run time (from a config file, say).
#[derive(Debug, Clone)]
pub enum AnyBackoff {
    /// Exponential.
    Exponential(ExponentialBackoff),
    /// Linear.
    Linear(LinearBackoff),
    /// Fixed.
    Fixed(FixedBackoff),
}

impl Backoff for AnyBackoff {
    fn next_delay(&mut self) -> Duration {
        match self {
            Self::Exponential(b) => b.next_delay(),
            Self::Linear(b) => b.next_delay(),
            Self::Fixed(b) => b.next_delay(),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Exponential(b) => b.reset(),
            Self::Linear(b) => b.reset(),
            Self::Fixed(b) => b.reset(),
        }
    }
}
