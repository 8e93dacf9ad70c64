//! A stream that survives scripted failures, over an in-process connector.
//!
//! The connector's "sender" misbehaves on a script: it hangs up, refuses connects, goes
//! silent on a live connection, and sends with heavy loss. The full layer stack
//! (built from the default `ReconnectionConfig`, with shorter delays) keeps one
//! uninterrupted packet stream; every event is printed as a JSON line.
//!
//! ```sh
//! cargo run --example scripted_failures
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use mirror_reconnect::connection::{channel, ChannelConnection, ConnectionState, Packet, Sequence};
use mirror_reconnect::error::{ConnectError, ConnectErrorKind};
use mirror_reconnect::prelude::*;
use mirror_reconnect::BoxError;
use tokio::time::Instant;

/// What the sender does on one connection.
#[derive(Clone, Copy, Debug)]
enum Trouble {
    /// Refuse the connect.
    Refuse,
    /// Send this many packets, then hang up.
    HangUpAfter(u32),
    /// Send this many packets, then stay connected but send nothing.
    SilentAfter(u32),
    /// Send this many packets losing one in five, then hang up.
    LossyFor(u32),
    /// Send this many packets, then close for good.
    Finish(u32),
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let script = Arc::new(Mutex::new(VecDeque::from([
        Trouble::HangUpAfter(100),
        Trouble::Refuse,
        Trouble::Refuse,
        Trouble::SilentAfter(100),
        Trouble::LossyFor(200),
        Trouble::Finish(100),
    ])));
    let sequence = Arc::new(Mutex::new(0u16));

    let connector = tower::service_fn(move |target: Target| {
        let trouble = script.lock().unwrap().pop_front();
        let sequence = Arc::clone(&sequence);
        async move {
            let trouble = trouble.ok_or_else(|| {
                ConnectError::new(ConnectErrorKind::Rejected, "the sender has gone for good")
            })?;
            if let Trouble::Refuse = trouble {
                return Err(
                    ConnectError::new(ConnectErrorKind::Unreachable, "connection refused").into(),
                );
            }
            let (tx, conn) = channel(
                ConnectionState::new(target.stream_id, Protocol::InProcess),
                64,
            );
            tokio::spawn(async move {
                let (count, lossy) = match trouble {
                    Trouble::HangUpAfter(n) | Trouble::SilentAfter(n) | Trouble::Finish(n) => {
                        (n, false)
                    }
                    Trouble::LossyFor(n) => (n, true),
                    Trouble::Refuse => unreachable!(),
                };
                for i in 0..count {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    let seq = {
                        let mut s = sequence.lock().unwrap();
                        *s = s.wrapping_add(1);
                        *s
                    };
                    if lossy && i % 5 == 0 {
                        continue;
                    }
                    let packet = Packet::new(vec![0u8; 1316], Instant::now())
                        .with_sequence(Sequence::rtp(seq));
                    if tx.send(packet).await.is_err() {
                        return;
                    }
                }
                if let Trouble::SilentAfter(_) = trouble {
                    tx.closed().await;
                }
            });
            Ok::<ChannelConnection, BoxError>(conn)
        }
    });

    let config = ReconnectionConfig {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(2),
        max_retries: 3,
        ..ReconnectionConfig::default()
    };
    config.validate()?;
    let packets = config.reconnecting(connector, Target::new("demo-cam", Protocol::InProcess));
    packets.event_bus().on_event(|event| {
        println!(
            "{}",
            serde_json::to_string(event).expect("events serialize")
        );
    });

    let started = Instant::now();
    let mut received = 0u64;
    let mut packets = std::pin::pin!(packets);
    while let Some(item) = packets.next().await {
        match item {
            Ok(_) => received += 1,
            Err(error) => {
                println!("stream ended: {error}");
                break;
            }
        }
    }
    println!(
        "{received} packets delivered as one stream in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
