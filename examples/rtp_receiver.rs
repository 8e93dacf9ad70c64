//! Receive RTP on an address, across sender restarts and reconnects, and print
//! packets, loss and jitter every second.
//!
//! ```text
//! cargo run --example rtp_receiver --features rtp -- 127.0.0.1:5004 --duration 10
//! ffmpeg -re -f lavfi -i testsrc=size=320x240:rate=25 -c:v mpeg2video -f rtp rtp://127.0.0.1:5004
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::prelude::*;
use mirror_reconnect::protocol::rtp::{RtpConnector, RtpStatistics};
use mirror_reconnect::BoxError;
use tokio::time::{interval, Instant};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut address = None;
    let mut duration = None;
    while let Some(arg) = args.next() {
        if arg == "--duration" {
            let secs: f64 = args.next().ok_or("--duration needs seconds")?.parse()?;
            duration = Some(Duration::try_from_secs_f64(secs)?);
        } else {
            address = Some(arg.parse::<SocketAddr>()?);
        }
    }
    let address = address.ok_or("usage: rtp_receiver ADDRESS [--duration SECS]")?;
    receive(address, duration).await
}

/// The receiver: a stack around the RTP connector, and one line per second.
async fn receive(address: SocketAddr, duration: Option<Duration>) -> Result<(), BoxError> {
    let target = Target::new("rtp", Protocol::Rtp)
        .address(address)
        .parameter("rewrite", "true");
    // The whole stack from the default config; an RTP input waits for its sender.
    let mut packets = ReconnectionConfig::default()
        .builder()
        .passive()
        .build(RtpConnector::new(), target);
    let handle = packets.health_handle().ok_or("the stack counts health")?;

    let stop = duration.map(|d| Instant::now() + d);
    let mut second = interval(Duration::from_secs(1));
    let mut count = 0u64;
    loop {
        tokio::select! {
            packet = packets.next() => match packet {
                Some(Ok(_)) => count += 1,
                Some(Err(gave_up)) => return Err(gave_up.into()),
                None => return Ok(()),
            },
            _ = second.tick() => {
                let health = handle.check_health();
                let rtp = packets
                    .connection_state()
                    .map(|s| RtpStatistics::from_parameters(&s.parameters))
                    .unwrap_or_default();
                println!(
                    "{count} packets/s, loss {:.2} %, jitter {:.2} ms, ssrc {:08x?}",
                    health.packet_loss * 100.0,
                    rtp.jitter.as_secs_f64() * 1000.0,
                    rtp.ssrc
                );
                count = 0;
                if stop.is_some_and(|t| Instant::now() >= t) {
                    return Ok(());
                }
            }
        }
    }
}
