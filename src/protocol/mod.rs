//! Protocol connectors: the services at the bottom of the stack that open live
//! connections. Each sits behind its own cargo feature.

#[cfg(feature = "rtp")]
pub mod rtp;
#[cfg(feature = "srt")]
pub mod srt;

#[cfg(feature = "udp")]
pub mod udp;
