//! An in-process connector that feeds packets forever and records what it was asked.

use std::future::Ready;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mirror_reconnect::connection::{
    channel, ChannelConnection, ConnectionState, Packet, Protocol, Target,
};

/// The targets a [`Feed`] was called with, in order.
pub type Targets = Arc<Mutex<Vec<Target>>>;

/// A connector whose connections report the target's codec and parameters in their
/// state (as a real protocol connector does) and send a packet every `gap` until the
/// connection is dropped.
#[derive(Clone)]
pub struct Feed {
    pub targets: Targets,
    pub gap: Duration,
}

impl Feed {
    pub fn new(gap: Duration) -> Self {
        Self {
            targets: Targets::default(),
            gap,
        }
    }

    pub fn targets(&self) -> Vec<Target> {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// The state a connection to `target` reports.
pub fn state_of(target: &Target) -> ConnectionState {
    let mut state = ConnectionState::new(target.stream_id.clone(), Protocol::InProcess);
    state.codec.clone_from(&target.codec);
    state.parameters.clone_from(&target.parameters);
    state
}

impl tower::Service<Target> for Feed {
    type Response = ChannelConnection;
    type Error = std::io::Error;
    type Future = Ready<Result<ChannelConnection, std::io::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        self.targets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(target.clone());
        let (tx, conn) = channel(state_of(&target), 64);
        let gap = self.gap;
        tokio::spawn(async move {
            let mut n: u32 = 0;
            loop {
                let packet = Packet::new(n.to_be_bytes().to_vec(), tokio::time::Instant::now());
                if tx.send(packet).await.is_err() {
                    return;
                }
                n = n.wrapping_add(1);
                tokio::time::sleep(gap).await;
            }
        });
        std::future::ready(Ok(conn))
    }
}
