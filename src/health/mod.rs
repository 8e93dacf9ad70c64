//! Health monitoring on the hot path.
//!
//! [`HealthLayer`] wraps every connection the connector returns and counts, for each
//! packet and error that passes, what [`HealthChecker::check_health`] reports: packets,
//! errors, loss, latency, age. The counting is lock-free and allocation-free (relaxed
//! atomics, updated from the connection's own poll), so it costs nanoseconds per packet.
//!
//! One `HealthLayer` watches one stream: its [`HealthHandle`] reads the health of
//! whichever connection the stream currently has, at any time, from any task.
//!
//! ```
//! use mirror_reconnect::health::HealthLayer;
//! use mirror_reconnect::connection::{channel, ConnectionState, Packet, Protocol, Sequence};
//! use futures_util::StreamExt;
//! use tower::{service_fn, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), mirror_reconnect::BoxError> {
//! let health = HealthLayer::new();
//! let handle = health.handle();
//! let (tx, conn) = channel(ConnectionState::new("cam1", Protocol::InProcess), 16);
//! let mut conn = Some(conn);
//! let connector = ServiceBuilder::new().layer(health).service(service_fn(move |_: ()| {
//!     let conn = conn.take().ok_or("only one connection here");
//!     async move { conn }
//! }));
//! let mut connection = connector.oneshot(()).await?;
//!
//! let now = tokio::time::Instant::now();
//! tx.send(Packet::new(&b"a"[..], now).with_sequence(Sequence::rtp(1))).await?;
//! tx.send(Packet::new(&b"b"[..], now).with_sequence(Sequence::rtp(3))).await?; // 2 is lost
//! connection.next().await;
//! connection.next().await;
//!
//! let health = handle.check_health();
//! assert_eq!(health.packet_count, 2);
//! assert!((health.packet_loss - 1.0 / 3.0).abs() < 1e-9);
//! # Ok(()) }
//! ```

mod layer;
mod service;

pub use crate::connection::{ConnectionHealth, HealthChecker, HealthCounters, HealthHandle};
pub use layer::HealthLayer;
pub use service::{CountHealth, Health, HealthFuture, Monitored};
