//! Failure detection: fixed thresholds and adaptive media-silence detection.
//!
//! [`FailureDetectLayer`] wraps every connection and ends its stream with a
//! [`ConnectionError::Failed`](crate::connection::ConnectionError::Failed) carrying a
//! [`FailureEvent`] as soon as the connection is judged dead. What a connection that
//! is still open may recover from (media silence, a check interval over the loss,
//! latency or error-rate limit) is first a
//! [`ConnectionError::Suspected`](crate::connection::ConnectionError::Suspected): the
//! driver treats it as a failure, or with make-before-break keeps the connection while
//! it dials the replacement.
//!
//! - **silence**: no packet for longer than the stream's own rhythm allows
//!   ([`SilenceConfig`]), which catches a sender that stopped sending media on a socket
//!   that is still alive, in a few packet gaps rather than SRT's 5 s idle timeout;
//! - **thresholds**, checked every check interval ([`FailureThresholds`]): packet loss,
//!   latency, error rate, packet rate, and a hard no-packet timeout;
//! - **network errors**: a fatal error from the connection itself.
//!
//! The counts come from a [`HealthLayer`](crate::health::HealthLayer) below when there
//! is one, else the detector counts for itself.
//!
//! ```
//! use std::time::Duration;
//! use mirror_reconnect::detect::{FailureDetectLayer, FailureThresholds};
//! use mirror_reconnect::health::HealthLayer;
//! use tower::ServiceBuilder;
//! # use tower::service_fn;
//! # use mirror_reconnect::connection::{channel, ConnectionState, Protocol, ChannelConnection};
//!
//! let thresholds = FailureThresholds { max_packet_loss: 0.02, ..Default::default() };
//! let stack = ServiceBuilder::new()
//!     .layer(
//!         FailureDetectLayer::new(thresholds)
//!             .check_interval(Duration::from_millis(500))
//!             .on_failure(|event| eprintln!("{}: {}", event.reason, event.details)),
//!     )
//!     .layer(HealthLayer::new())
//!     .service(service_fn(|_: ()| async {
//!         let (_tx, conn) = channel(ConnectionState::new("cam1", Protocol::InProcess), 8);
//!         Ok::<ChannelConnection, std::io::Error>(conn)
//!     }));
//! # drop(stack);
//! ```

mod detector;
mod layer;
mod service;
mod silence;
mod thresholds;

pub use crate::connection::{FailureEvent, FailureReason, Severity};
pub(crate) use detector::Window;
pub use detector::{FailureCallback, FailureDetector};
pub use layer::FailureDetectLayer;
pub use service::{Detected, FailureDetect, FailureDetectFuture, Judge};
pub use silence::{SilenceConfig, SilenceDetector};
pub use thresholds::FailureThresholds;
