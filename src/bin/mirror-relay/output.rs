//! Where relayed packets go.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{FutureExt, SinkExt, StreamExt};
use mirror_reconnect::backoff::{Backoff, ExponentialBackoff, Jitter};
use mirror_reconnect::connection::{ConnectionError, Packet};
use mirror_reconnect::protocol::srt::{srt_target, SrtConnection, SrtConnector};
use mirror_reconnect::BoxError;
use tokio::io::AsyncWriteExt;
use tokio::net::UdpSocket;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::cli;

/// Packets an SRT output keeps while its receiver is away; the oldest go first.
#[cfg(test)]
const SRT_BUFFER_PACKETS: usize = crate::cli::DEFAULT_OUTPUT_BUFFER;
/// How long a receiver may send nothing at all (SRT ACKs at least every 10 ms, and
/// keep-alives every second) before it counts as gone.
const RECEIVER_SILENCE: Duration = Duration::from_secs(2);
/// Packets of a backlog sent back to back before a millisecond's pause.
const BACKLOG_BURST: usize = 8;
/// How long one send may wait for room before the receiver counts as gone.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

pub(crate) enum Output {
    Udp { socket: UdpSocket, to: SocketAddr },
    File(tokio::io::BufWriter<tokio::fs::File>),
    Stdout(tokio::io::Stdout),
    Srt(SrtOutput),
}

impl Output {
    pub(crate) async fn open(
        spec: &cli::Output,
        backend: cli::SrtBackend,
        buffer: usize,
        cancel: &CancellationToken,
    ) -> Result<Self, BoxError> {
        Ok(match spec {
            cli::Output::Udp(to) => {
                let bind: SocketAddr = if to.is_ipv4() {
                    "0.0.0.0:0".parse()?
                } else {
                    "[::]:0".parse()?
                };
                Self::Udp {
                    socket: UdpSocket::bind(bind).await?,
                    to: *to,
                }
            }
            cli::Output::File(path) => {
                let file = tokio::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .await
                    .map_err(|e| format!("cannot open output {}: {e}", path.display()))?;
                Self::File(tokio::io::BufWriter::new(file))
            }
            cli::Output::Stdout => Self::Stdout(tokio::io::stdout()),
            cli::Output::Srt(url) => {
                Self::Srt(SrtOutput::start(url, backend, buffer, cancel.clone())?)
            }
        })
    }

    pub(crate) async fn send(&mut self, payload: &Bytes) -> Result<(), BoxError> {
        match self {
            Self::Udp { socket, to } => {
                // A receiver that is not there yet is not our failure: UDP forgets.
                if let Err(e) = socket.send_to(payload, *to).await {
                    tracing::debug!(%e, "udp output send failed");
                }
            }
            Self::File(file) => file.write_all(payload).await?,
            Self::Stdout(out) => out.write_all(payload).await?,
            Self::Srt(srt) => srt.push(payload.clone()),
        }
        Ok(())
    }

    /// Packets dropped because the output could not keep them.
    pub(crate) fn dropped(&self) -> u64 {
        match self {
            Self::Srt(srt) => srt.shared.dropped.load(Ordering::Relaxed),
            _ => 0,
        }
    }

    pub(crate) fn describe(&self) -> String {
        match self {
            Self::Srt(srt) => {
                let up = srt.shared.connected.load(Ordering::Relaxed);
                format!(
                    "out {} dropped {}",
                    if up { "up" } else { "down" },
                    self.dropped()
                )
            }
            _ => String::new(),
        }
    }

    pub(crate) async fn close(self) -> Result<(), BoxError> {
        match self {
            Self::File(mut file) => file.flush().await?,
            Self::Stdout(mut out) => out.flush().await?,
            Self::Srt(srt) => srt.close().await,
            Self::Udp { .. } => {}
        }
        Ok(())
    }
}

struct Shared {
    buffer: Mutex<VecDeque<Bytes>>,
    /// The most packets `buffer` holds.
    capacity: usize,
    ready: Notify,
    dropped: AtomicU64,
    connected: AtomicBool,
}

impl Shared {
    fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            // Grown as packets wait, not allocated up front.
            buffer: Mutex::new(VecDeque::new()),
            capacity,
            ready: Notify::new(),
            dropped: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        }
    }

    fn buffer(&self) -> std::sync::MutexGuard<'_, VecDeque<Bytes>> {
        self.buffer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new packet, at the back; when the buffer is full the oldest is dropped.
    fn push(&self, payload: Bytes) {
        let mut buffer = self.buffer();
        if buffer.len() >= self.capacity {
            buffer.pop_front();
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
        buffer.push_back(payload);
        drop(buffer);
        self.ready.notify_one();
    }

    /// The next packet to send.
    fn pop(&self) -> Option<Bytes> {
        self.buffer().pop_front()
    }

    /// A packet taken with [`pop`](Self::pop) but not delivered goes back to the
    /// front, unless new packets filled the buffer meanwhile: then it is the oldest,
    /// and the one dropped.
    fn requeue(&self, payload: Bytes) {
        let mut buffer = self.buffer();
        if buffer.len() >= self.capacity {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        } else {
            buffer.push_front(payload);
        }
    }
}

/// An SRT output that keeps itself connected: a receiver that goes away is re-dialled
/// (or, in listener mode, waited for) with backoff, and packets that arrive meanwhile
/// wait in a bounded buffer, oldest dropped first.
pub(crate) struct SrtOutput {
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
    stop: CancellationToken,
}

impl SrtOutput {
    fn start(
        url: &str,
        backend: cli::SrtBackend,
        buffer: usize,
        cancel: CancellationToken,
    ) -> Result<Self, BoxError> {
        let target = srt_target(url)?;
        let shared = Arc::new(Shared::new(buffer));
        let stop = cancel.child_token();
        let (link, stopping) = (Arc::clone(&shared), stop.clone());
        let task = match backend {
            cli::SrtBackend::SrtTokio => {
                tokio::spawn(run_srt_output(SrtConnector::new(), target, link, stopping))
            }
            #[cfg(feature = "libsrt")]
            cli::SrtBackend::Libsrt => tokio::spawn(run_srt_output(
                mirror_reconnect::protocol::srt::LibSrtConnector::new(),
                target,
                link,
                stopping,
            )),
            #[cfg(not(feature = "libsrt"))]
            cli::SrtBackend::Libsrt => {
                return Err("--srt-backend libsrt needs a build with the libsrt feature".into())
            }
        };
        Ok(Self { shared, task, stop })
    }

    fn push(&self, payload: Bytes) {
        self.shared.push(payload);
    }

    async fn close(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// An SRT connection the output can send on, from either backend.
trait SrtLink:
    futures_util::Sink<Bytes, Error = std::io::Error>
    + futures_util::Stream<Item = Result<Packet, ConnectionError>>
    + Unpin
    + Send
{
    /// Every SRT packet heard from the receiver so far (ACKs and keep-alives count).
    fn heard(&self) -> u64;
}

impl SrtLink for SrtConnection {
    fn heard(&self) -> u64 {
        self.statistics().received_packets
    }
}

#[cfg(feature = "libsrt")]
impl SrtLink for mirror_reconnect::protocol::srt::LibSrtConnection {
    fn heard(&self) -> u64 {
        self.statistics().received_packets
    }
}

async fn run_srt_output<C>(
    connector: C,
    target: mirror_reconnect::connection::Target,
    shared: Arc<Shared>,
    stop: CancellationToken,
) where
    C: tower::Service<mirror_reconnect::connection::Target> + Clone + Send + 'static,
    C::Response: SrtLink,
    C::Error: std::fmt::Display,
    C::Future: Send,
{
    let mut backoff =
        ExponentialBackoff::new(Duration::from_millis(250), Duration::from_secs(5), 2.0)
            .jitter(Jitter::Full);
    loop {
        let connect = connector.clone().oneshot(target.clone());
        let mut conn = tokio::select! {
            _ = stop.cancelled() => return,
            result = connect => match result {
                Ok(conn) => conn,
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(%e, ?delay, "srt output: connect failed; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(delay) => continue,
                    }
                }
            }
        };
        backoff.reset();
        shared.connected.store(true, Ordering::Relaxed);
        tracing::info!("srt output: connected");
        // A receiver that died sends nothing more, not even SRT's ACKs and keep-alives,
        // long before SRT's own idle timeout ends the connection on the sending side:
        // that silence is what tells us to re-dial.
        let mut heard = conn.heard();
        let mut last_heard = tokio::time::Instant::now();
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        let mut burst = 0usize;
        let mut warned_too_long = false;
        loop {
            let now_heard = conn.heard();
            if now_heard != heard {
                heard = now_heard;
                last_heard = tokio::time::Instant::now();
            } else if last_heard.elapsed() > RECEIVER_SILENCE {
                tracing::warn!("srt output: receiver silent; re-dialling");
                break;
            }
            if let Some(payload) = shared.pop() {
                let sent = tokio::time::timeout(SEND_TIMEOUT, conn.send(payload.clone())).await;
                match sent {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::InvalidInput => {
                        // Too long for any SRT message of this connection: no receiver
                        // takes it, so it is dropped, and the connection kept.
                        let before = shared.dropped.fetch_add(1, Ordering::Relaxed);
                        if !warned_too_long {
                            warned_too_long = true;
                            tracing::warn!(%e, dropped_before = before, "srt output: packet dropped");
                        }
                        continue;
                    }
                    _ => {
                        tracing::warn!("srt output: receiver gone; re-dialling");
                        // Not delivered: keep it for the next receiver.
                        shared.requeue(payload);
                        break;
                    }
                }
                // A backlog goes out paced, a few packets a millisecond: SRT has no
                // use for a burst of thousands, and srt-tokio loses packets sent in one.
                burst += 1;
                if burst >= BACKLOG_BURST {
                    burst = 0;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                // Keep the receive side (and SRT's statistics) moving while sending.
                match conn.next().now_or_never() {
                    None | Some(Some(Ok(_))) => continue,
                    Some(_) => {
                        tracing::warn!("srt output: receiver gone; re-dialling");
                        break;
                    }
                }
            }
            burst = 0;
            tokio::select! {
                _ = stop.cancelled() => {
                    let _ = conn.close().await;
                    return;
                }
                _ = shared.ready.notified() => {}
                _ = tick.tick() => {}
                item = conn.next() => match item {
                    Some(Ok(_)) => {}
                    _ => {
                        tracing::warn!("srt output: receiver gone; re-dialling");
                        break;
                    }
                },
            }
        }
        shared.connected.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_srt_buffer_never_holds_more_than_its_size() {
        let shared = Shared::new(SRT_BUFFER_PACKETS);
        for n in 0..SRT_BUFFER_PACKETS {
            shared.push(Bytes::from(n.to_be_bytes().to_vec()));
        }
        // One taken to send, a new one arrives meanwhile, the send fails.
        let sending = shared.pop().unwrap();
        shared.push(Bytes::from_static(b"new"));
        shared.requeue(sending);
        assert_eq!(shared.buffer().len(), SRT_BUFFER_PACKETS);
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
        assert_eq!(shared.buffer().back().unwrap(), &Bytes::from_static(b"new"));

        // With room, an undelivered packet goes back to the front.
        let sending = shared.pop().unwrap();
        shared.requeue(sending.clone());
        assert_eq!(shared.buffer().front(), Some(&sending));
        assert_eq!(shared.dropped.load(Ordering::Relaxed), 1);
    }
}
