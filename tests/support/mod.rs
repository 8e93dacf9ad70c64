//! What the tests share, in one module: `mod support;` at the top of a test file, then
//! `support::…`. The scripted in-process connector is at the top (`support::Scripted`);
//! the rest by what it stands in for. Each test uses some of it.
#![allow(dead_code, unreachable_pub, unused_imports)]

pub mod feed;
pub mod ports;
pub mod process;
#[cfg(feature = "redis")]
pub mod redis_server;
mod scripted;
#[cfg(feature = "srt")]
pub mod srt;
pub mod tcp_proxy;

pub use scripted::*;
