//! Receive SRT through the reconnecting stack and print packets per second.
//! Listens or calls as the `srt://` URL says (an empty host listens).
//!
//! ```text
//! cargo run --example srt_receiver --features srt -- 'srt://:9000?streamid=cam1' --duration 10
//! srt-live-transmit udp://:5000 'srt://127.0.0.1:9000?streamid=cam1'
//! ffmpeg -re -f lavfi -i testsrc -c:v mpeg2video -f mpegts 'udp://127.0.0.1:5000?pkt_size=1316'
//! ```

use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::prelude::*;
use mirror_reconnect::protocol::srt::{srt_target, SrtConnector};
use mirror_reconnect::BoxError;
use tokio::time::{interval, Instant};

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let mut url = None;
    let mut duration = None;
    while let Some(arg) = args.next() {
        if arg == "--duration" {
            let secs: f64 = args.next().ok_or("--duration needs seconds")?.parse()?;
            duration = Some(Duration::try_from_secs_f64(secs)?);
        } else {
            url = Some(arg);
        }
    }
    let url = url.ok_or("usage: srt_receiver srt://HOST:PORT?streamid=... [--duration SECS]")?;
    let target = srt_target(&url)?;

    // The whole stack from the default config: retry, attempt timeout, state,
    // failure detection, health. An empty host listens: a listener waits for its
    // caller, with no attempt timeout.
    let config = ReconnectionConfig::default();
    let connector = SrtConnector::new();
    // A caller probes its listener while waiting out a backoff delay, and is back
    // about one probe interval after the listener is.
    let mut builder = config.builder().probe(connector.probe());
    if target.parameters.get("mode").map(String::as_str) == Some("listener") {
        builder = builder.passive();
    }
    let mut packets = builder.build(connector, target);
    packets.event_bus().on_event(|e| match &e.error {
        Some(error) => eprintln!("{}: {error}", e.event_type),
        None => eprintln!("{}", e.event_type),
    });

    let end = duration.map(|d| Instant::now() + d);
    let mut tick = interval(Duration::from_secs(1));
    tick.tick().await;
    let (mut count, mut bytes) = (0u64, 0u64);
    loop {
        tokio::select! {
            item = packets.next() => match item {
                Some(Ok(packet)) => {
                    count += 1;
                    bytes += packet.payload.len() as u64;
                }
                Some(Err(error)) => return Err(error.into()),
                None => break,
            },
            _ = tick.tick() => {
                println!("{count} packets/s, {:.2} Mbit/s", bytes as f64 * 8.0 / 1e6);
                (count, bytes) = (0, 0);
                if end.is_some_and(|end| Instant::now() >= end) {
                    break;
                }
            }
        }
    }
    Ok(())
}
