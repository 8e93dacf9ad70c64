//! Ports for listeners a test binds later (or starts a program to bind).
//!
//! Not ports the kernel gives a socket bound to port 0: those come from its
//! ephemeral range, so between the pick and the listener's bind any sender,
//! simulator, connection or client socket could be given the same port, and the
//! listener would fail to bind for as long as that socket lived. These come from
//! just below the ephemeral range instead, each at most once per process, and only
//! one that binds now.

use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

/// A UDP port nobody uses right now on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    pick(|port| UdpSocket::bind(("127.0.0.1", port)).is_ok())
}

/// A TCP port nobody uses right now on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    pick(|port| TcpListener::bind(("127.0.0.1", port)).is_ok())
}

/// The next port below the ephemeral range for which `binds` holds.
fn pick(binds: impl Fn(u16) -> bool) -> u16 {
    // The ports [base, base + span), and where this process starts in them.
    static RANGE: OnceLock<(u32, u32, u32)> = OnceLock::new();
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let &(base, span, start) = RANGE.get_or_init(|| {
        let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|r| r.split_whitespace().next()?.parse::<u32>().ok())
            .unwrap_or(32768);
        let span = low.saturating_sub(1024).clamp(1, 16384);
        // A random start, so that two test processes at once rarely try the same ports.
        (low - span, span, fastrand::u32(..span))
    });
    for _ in 0..span {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = u16::try_from(base + (start + n) % span).expect("a port number");
        if binds(port) {
            return port;
        }
    }
    panic!(
        "no free port in {base}..{}, below the ephemeral range",
        base + span
    );
}
