//! Shared helpers: a scripted in-process connector.

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use mirror_reconnect::connection::{
    channel, ChannelConnection, ConnectionError, ConnectionState, Packet, Protocol, Sequence,
    Target,
};
use mirror_reconnect::error::{ConnectError, ConnectErrorKind};
use mirror_reconnect::{BoxError, ReconnectionEvent};
use tokio::time::Instant;

/// How a scripted connection ends after its packets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The peer closes: the stream ends.
    Close,
    /// A fatal network error.
    Error,
    /// The socket stays open but nothing more arrives.
    Silent,
}

/// One connect of the script.
#[derive(Debug, Clone)]
pub enum Step {
    /// The connect fails.
    Fail(ConnectErrorKind),
    /// The connect succeeds; the connection sends `packets` (payload = the number, big
    /// endian; RTP-like sequence = the number), one every `gap`, then ends as `end`.
    Serve {
        packets: std::ops::Range<u32>,
        gap: Duration,
        end: End,
    },
    /// As `Serve` with a 10 ms gap, and a stall of `stall` before packet `at`.
    Stalled {
        packets: std::ops::Range<u32>,
        at: u32,
        stall: Duration,
        end: End,
    },
    /// As `Serve` with a 10 ms gap, but of the packets numbered in `lossy` every
    /// one whose number is a multiple of `lose_every` is lost on the way (a sequence
    /// gap).
    Lossy {
        packets: std::ops::Range<u32>,
        lossy: std::ops::Range<u32>,
        lose_every: u32,
        end: End,
    },
}

/// Like [`serve`], but of the packets numbered in `lossy` one in `lose_every` is lost
/// (a degrading path: the connection still delivers).
pub fn lossy(
    packets: std::ops::Range<u32>,
    lossy: std::ops::Range<u32>,
    lose_every: u32,
    end: End,
) -> Step {
    Step::Lossy {
        packets,
        lossy,
        lose_every,
        end,
    }
}

/// Like [`serve`], but the packets stop for `stall` before packet `at` (a latency
/// spike, an encoder that hangs a moment): the connection stays open meanwhile.
pub fn stalled(packets: std::ops::Range<u32>, at: u32, stall: Duration, end: End) -> Step {
    Step::Stalled {
        packets,
        at,
        stall,
        end,
    }
}

pub fn serve(packets: std::ops::Range<u32>, end: End) -> Step {
    Step::Serve {
        packets,
        gap: Duration::from_millis(10),
        end,
    }
}

/// A connector that follows a script, one step per connect, and records the targets
/// it was called with. Past the end of the script every connect fails (retryable).
#[derive(Clone, Default)]
pub struct Scripted {
    steps: Arc<Mutex<VecDeque<Step>>>,
    pub targets: Arc<Mutex<Vec<Target>>>,
    pub restored: Arc<Mutex<Vec<ConnectionState>>>,
}

impl Scripted {
    pub fn new(steps: impl IntoIterator<Item = Step>) -> Self {
        Self {
            steps: Arc::new(Mutex::new(steps.into_iter().collect())),
            ..Self::default()
        }
    }

    pub fn calls(&self) -> usize {
        self.targets.lock().unwrap().len()
    }
}

pub fn payload_number(packet: &Packet) -> u32 {
    u32::from_be_bytes(packet.payload[..4].try_into().unwrap())
}

impl tower::Service<Target> for Scripted {
    type Response = ChannelConnection;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<ChannelConnection, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        self.targets.lock().unwrap().push(target.clone());
        let step = self.steps.lock().unwrap().pop_front();
        Box::pin(async move {
            match step {
                None => Err(ConnectError::new(ConnectErrorKind::Unreachable, "script over").into()),
                Some(Step::Fail(kind)) => Err(ConnectError::new(kind, "scripted failure").into()),
                Some(step @ (Step::Serve { .. } | Step::Stalled { .. } | Step::Lossy { .. })) => {
                    let ten = Duration::from_millis(10);
                    let (packets, gap, end, stall, loss) = match step {
                        Step::Serve { packets, gap, end } => (packets, gap, end, None, None),
                        Step::Stalled {
                            packets,
                            at,
                            stall,
                            end,
                        } => (packets, ten, end, Some((at, stall)), None),
                        Step::Lossy {
                            packets,
                            lossy,
                            lose_every,
                            end,
                        } => (packets, ten, end, None, Some((lossy, lose_every.max(1)))),
                        Step::Fail(_) => unreachable!(),
                    };
                    let mut state =
                        ConnectionState::new(target.stream_id.clone(), Protocol::InProcess);
                    state.codec = target.codec.clone();
                    state.parameters = target.parameters.clone();
                    let (tx, conn) = channel(state, 1024);
                    tokio::spawn(async move {
                        for n in packets {
                            if let Some((_, stall)) = stall.filter(|(at, _)| *at == n) {
                                tokio::time::sleep(stall).await;
                            }
                            tokio::time::sleep(gap).await;
                            if loss
                                .as_ref()
                                .is_some_and(|(lossy, every)| lossy.contains(&n) && n % every == 0)
                            {
                                continue;
                            }
                            let packet = Packet::new(n.to_be_bytes().to_vec(), Instant::now())
                                .with_sequence(Sequence::rtp(n as u16));
                            if tx.send(packet).await.is_err() {
                                return;
                            }
                        }
                        match end {
                            End::Close => {}
                            End::Error => {
                                let error = std::io::Error::new(
                                    std::io::ErrorKind::ConnectionReset,
                                    "reset",
                                );
                                let _ = tx.send_error(ConnectionError::Network(error.into())).await;
                            }
                            End::Silent => tx.closed().await,
                        }
                    });
                    Ok(conn)
                }
            }
        })
    }
}

/// Collects every event, with the (tokio) time it was seen.
#[derive(Clone, Default)]
pub struct Recorder {
    pub events: Arc<Mutex<Vec<(Instant, ReconnectionEvent)>>>,
}

impl Recorder {
    pub fn attach(&self, events: &mirror_reconnect::Events) {
        let log = Arc::clone(&self.events);
        events.on_event(move |e| log.lock().unwrap().push((Instant::now(), e.clone())));
    }

    /// The events as `type[:attempt][:reason]` strings.
    pub fn summary(&self) -> Vec<String> {
        self.events
            .lock()
            .unwrap()
            .iter()
            .map(|(_, e)| {
                let mut s = e.event_type.to_string();
                if matches!(
                    e.event_type,
                    mirror_reconnect::driver::EventType::ReconnectionAttempt
                        | mirror_reconnect::driver::EventType::ReconnectionSucceeded
                        | mirror_reconnect::driver::EventType::ReconnectionFailed
                ) {
                    s.push_str(&format!(":{}", e.attempt));
                }
                if e.event_type == mirror_reconnect::driver::EventType::FailureDetected {
                    s.push_str(&format!(":{}", e.reason.map(|r| r.as_str()).unwrap_or("?")));
                }
                s
            })
            .collect()
    }
}
