//! One long-lived SRT listener per local address, shared by every connect of every
//! stream that listens there.
//!
//! Rebinding the port on each reconnect would race the old socket, which srt-tokio
//! keeps open until the old connection has drained. Instead a dispatcher task owns an
//! [`SrtListener`] and hands each caller's request to the connect that waits for its
//! stream id. A caller that comes while nobody waits for its stream (the old connection
//! is not yet judged dead) is held for a while; a caller for a stream nobody listens
//! for is refused at once (SRT_REJX_NOTFOUND).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use srt_protocol::packet::{CoreRejectReason, RejectReason, ServerRejectReason};
use srt_protocol::settings::KeySettings;
use srt_tokio::options::{KeySize, ListenerOptions, SocketOptions, Validation};
use srt_tokio::{ConnectionRequest, SrtListener, SrtSocket};
use tokio::sync::{mpsc, oneshot, Mutex};
use tokio::time::Instant;

use super::params::SrtParams;
use crate::error::{ConnectError, ConnectErrorKind};

/// How long a caller is held when nobody waits for its stream yet. libsrt callers
/// repeat their handshake for 3 s by default, so holding longer helps nobody.
const HOLD: Duration = Duration::from_secs(3);

enum Command {
    Wait {
        stream_id: Option<String>,
        reply: oneshot::Sender<ConnectionRequest>,
    },
}

/// A running dispatcher.
pub(crate) struct SharedListener {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
}

impl fmt::Debug for SharedListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedListener")
            .field("local_addr", &self.local_addr)
            .field("running", &!self.commands.is_closed())
            .finish()
    }
}

impl SharedListener {
    pub(crate) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    fn is_running(&self) -> bool {
        !self.commands.is_closed()
    }

    /// Wait for the next caller of `params.stream_id` and complete its handshake.
    pub(crate) async fn accept(&self, params: &SrtParams) -> Result<SrtSocket, ConnectError> {
        let passphrase = params.srt_passphrase()?;
        loop {
            let (reply, request) = oneshot::channel();
            self.commands
                .send(Command::Wait {
                    stream_id: params.stream_id.clone(),
                    reply,
                })
                .map_err(|_| self.stopped())?;
            let request = request.await.map_err(|_| self.stopped())?;
            let remote = request.remote();
            // srt-tokio panics when the two sides' key lengths differ, or when an
            // encrypted caller meets an unencrypted listener: refuse those here.
            let key_settings = match (&passphrase, request.key_size()) {
                (None, KeySize::Unspecified) => None,
                (None, _) => {
                    tracing::warn!(%remote, "refusing an encrypted SRT caller: no passphrase set here");
                    let _ = request
                        .reject(RejectReason::Core(CoreRejectReason::Unsecure))
                        .await;
                    continue;
                }
                (Some(_), key_size)
                    if params.key_size != KeySize::Unspecified
                        && key_size != KeySize::Unspecified
                        && key_size != params.key_size =>
                {
                    // The operator asked for this key length (pbkeylen): a caller with
                    // another one is refused, as a weaker key must not get in.
                    tracing::warn!(
                        %remote,
                        caller = ?key_size,
                        required = ?params.key_size,
                        "refusing an SRT caller whose key length is not the configured pbkeylen"
                    );
                    let _ = request
                        .reject(RejectReason::Core(CoreRejectReason::BadSecret))
                        .await;
                    continue;
                }
                (Some(passphrase), key_size) => Some(KeySettings {
                    // The key length the caller announced (equal to pbkeylen when one is
                    // set); SRT carries the key material in the handshake, so
                    // decryption needs only the passphrase.
                    key_size,
                    passphrase: passphrase.clone(),
                }),
            };
            match request.accept(key_settings).await {
                Ok(socket) => return Ok(socket),
                Err(error) => {
                    // A wrong passphrase, an unencrypted caller or a caller gone
                    // mid-handshake: the caller's problem. Wait for the next one.
                    tracing::warn!(%remote, %error, "SRT caller failed its handshake; waiting for the next");
                }
            }
        }
    }

    fn stopped(&self) -> ConnectError {
        ConnectError::new(
            ConnectErrorKind::Unreachable,
            format!("SRT listener on {} stopped", self.local_addr),
        )
    }
}

/// The listeners of one connector (and its clones), by the address they were asked
/// to bind.
#[derive(Default)]
pub(crate) struct Listeners {
    by_address: Mutex<HashMap<SocketAddr, Arc<SharedListener>>>,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.by_address.try_lock().map(|m| m.len()).ok();
        f.debug_struct("Listeners").field("count", &count).finish()
    }
}

impl Listeners {
    /// The running listener for `address`, bound now with `options` if there is none
    /// (or the last one stopped).
    pub(crate) async fn get_or_bind(
        &self,
        address: SocketAddr,
        options: SocketOptions,
    ) -> io::Result<Arc<SharedListener>> {
        let mut map = self.by_address.lock().await;
        if let Some(listener) = map.get(&address) {
            if listener.is_running() {
                return Ok(Arc::clone(listener));
            }
        }
        map.retain(|_, l| l.is_running());
        let mut options = options;
        options.connect.local = address;
        // Bound before validating, so that port 0 (srt-tokio refuses it) becomes a
        // real port first.
        let udp = srt_tokio::bind_socket(&options).await?;
        let local_addr = udp.local_addr()?;
        options.connect.local = local_addr;
        let options = ListenerOptions { socket: options }
            .try_validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (listener, incoming) = SrtListener::bind_with_socket(options, udp).await?;
        let (commands, rx) = mpsc::unbounded_channel();
        tokio::spawn(dispatch(listener, incoming, rx, local_addr));
        let shared = Arc::new(SharedListener {
            commands,
            local_addr,
        });
        tracing::debug!(%local_addr, "SRT listener bound");
        map.insert(address, Arc::clone(&shared));
        if local_addr != address {
            map.insert(local_addr, Arc::clone(&shared));
        }
        Ok(shared)
    }
}

struct Held {
    since: Instant,
    request: ConnectionRequest,
}

/// Callers held for one stream at most: a newer one replaces the oldest (the newest
/// caller is the one still trying), so a flood of callers cannot pile up.
const MAX_HELD_PER_STREAM: usize = 4;

/// Hold `request` until a connect waits for its stream; the oldest held caller of
/// that stream, when it makes one too many, is given back to be refused.
fn hold(held: &mut Vec<Held>, request: ConnectionRequest) -> Option<ConnectionRequest> {
    let stream_id = stream_of(&request);
    let mut same = held.iter().filter(|h| stream_of(&h.request) == stream_id);
    let evicted = match same.nth(MAX_HELD_PER_STREAM - 1) {
        Some(_) => held
            .iter()
            .position(|h| stream_of(&h.request) == stream_id)
            .map(|oldest| held.remove(oldest).request),
        None => None,
    };
    held.push(Held {
        since: Instant::now(),
        request,
    });
    evicted
}

fn stream_of(request: &ConnectionRequest) -> Option<String> {
    request.stream_id().map(|id| id.to_string())
}

async fn reject(request: ConnectionRequest, reason: RejectReason) {
    let remote = request.remote();
    let stream_id = stream_of(&request);
    tracing::info!(%remote, ?stream_id, %reason, "refusing SRT caller");
    let _ = request.reject(reason).await;
}

async fn dispatch(
    listener: SrtListener,
    mut incoming: srt_tokio::SrtIncoming,
    mut commands: mpsc::UnboundedReceiver<Command>,
    local_addr: SocketAddr,
) {
    let mut waiters: Vec<(Option<String>, oneshot::Sender<ConnectionRequest>)> = Vec::new();
    let mut held: Vec<Held> = Vec::new();
    let mut known: HashSet<Option<String>> = HashSet::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => {
                let Some(Command::Wait { stream_id, reply }) = command else { break };
                known.insert(stream_id.clone());
                // The newest held caller of that stream gets it; older ones gave up.
                let position = held
                    .iter()
                    .rposition(|h| stream_id.is_none() || stream_of(&h.request) == stream_id);
                match position {
                    Some(i) => {
                        let h = held.remove(i);
                        if let Err(request) = reply.send(h.request) {
                            held.insert(i, Held { since: h.since, request });
                        }
                    }
                    None => waiters.push((stream_id, reply)),
                }
            }
            request = incoming.incoming().next() => {
                let Some(request) = request else {
                    tracing::warn!(%local_addr, "SRT listener stopped");
                    break;
                };
                let stream_id = stream_of(&request);
                waiters.retain(|(_, reply)| !reply.is_closed());
                // A waiter for exactly this stream first, then one that takes any.
                let position = waiters
                    .iter()
                    .position(|(id, _)| id.is_some() && *id == stream_id)
                    .or_else(|| waiters.iter().position(|(id, _)| id.is_none()));
                match position {
                    Some(i) => {
                        let (_, reply) = waiters.remove(i);
                        if let Err(request) = reply.send(request) {
                            if let Some(old) = hold(&mut held, request) {
                                reject(old, RejectReason::Server(ServerRejectReason::Conflict)).await;
                            }
                        }
                    }
                    None if known.contains(&stream_id) || known.contains(&None) => {
                        if let Some(old) = hold(&mut held, request) {
                            reject(old, RejectReason::Server(ServerRejectReason::Conflict)).await;
                        }
                    }
                    None => {
                        reject(request, RejectReason::Server(ServerRejectReason::Notfound)).await;
                    }
                }
            }
            _ = tick.tick() => {
                waiters.retain(|(_, reply)| !reply.is_closed());
                let now = Instant::now();
                let (stale, fresh): (Vec<_>, Vec<_>) =
                    held.drain(..).partition(|h| now.duration_since(h.since) >= HOLD);
                held = fresh;
                for h in stale {
                    // The stream is still held by a connection not yet judged dead.
                    reject(h.request, RejectReason::Server(ServerRejectReason::Conflict)).await;
                }
            }
        }
    }
    for h in held {
        reject(h.request, RejectReason::Core(CoreRejectReason::Close)).await;
    }
    // Dropping the listener tells its task to close (`SrtListener::close` would panic
    // here if that task had died).
    drop(incoming);
    drop(listener);
}
