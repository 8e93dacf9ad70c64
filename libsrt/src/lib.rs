//! Safe bindings to the system libsrt (1.5 or later), made for async code.
//!
//! - [`Socket`]: one SRT socket in live mode, non-blocking, with the options a live
//!   ingest sets (latency, stream id, passphrase and key length, peer idle timeout,
//!   packet filter such as FEC, rendezvous, group connect), connect, listen and
//!   accept, messages with SRT's own sequence numbers, and SRT's live statistics
//!   ([`Stats`]: round-trip time, loss, retransmissions, drops, rates).
//! - Every operation that would wait has a `poll_*` form. One thread per process waits
//!   on libsrt's epoll (`srt_epoll_uwait`, edge-triggered) and wakes the tasks whose
//!   sockets became ready: no busy polling, and no runtime assumed (any executor's
//!   wakers do).
//! - libsrt is started with the first socket and cleaned up (`srt_cleanup`, once)
//!   when the last one is dropped; [`wait_cleaned_up`] waits for that before a
//!   process exits.
//!
//! All `unsafe` code of the project is in this crate; each block says why it is sound.
//! It links `libsrt` (pkg-config name `srt`; Debian: `libsrt-openssl-dev`).
//!
//! ```no_run
//! use std::future::poll_fn;
//! use std::time::Duration;
//! use mirror_libsrt::Socket;
//!
//! # async fn run() -> Result<(), mirror_libsrt::Error> {
//! let socket = Socket::new()?;
//! socket.set_latency(Duration::from_millis(120))?;
//! socket.set_stream_id("cam1")?;
//! let server = "127.0.0.1:9000".parse().unwrap();
//! socket.start_connect(server)?;
//! poll_fn(|cx| socket.poll_connected(cx, server)).await?;
//! let mut buf = [0u8; mirror_libsrt::MAX_PAYLOAD];
//! let message = poll_fn(|cx| socket.poll_recv(cx, &mut buf)).await?;
//! println!("{} bytes, packet {:?}, rtt {:?}", message.len, message.sequence, socket.stats()?.rtt);
//! # Ok(()) }
//! ```

pub mod sys;

mod error;
mod runtime;
mod socket;

pub use error::{Error, RejectReason, Result};
pub use socket::{
    is_running, version, wait_cleaned_up, Caller, ListenFilter, Message, Socket, SocketState,
    Stats, MAX_PAYLOAD, MAX_STREAM_ID,
};
