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

use super::farewell::{with_farewell, FarewellSocket};
use super::params::SrtParams;
use crate::error::{ConnectError, ConnectErrorKind};

/// How long a caller is held when nobody waits for its stream yet. libsrt callers
/// repeat their handshake for 3 s by default, so holding longer helps nobody.
const HOLD: Duration = Duration::from_secs(3);

enum Command {
    Wait {
        stream_id: Option<String>,
        reply: oneshot::Sender<Handed>,
    },
    /// A caller handed to a connect that was given up before it answered.
    Returned(ConnectionRequest),
}

/// A caller's request on its way to the connect that waits for it.
///
/// srt-tokio keeps one handshake session per peer address, and a request dropped
/// without an answer leaves that session waiting for good: every later call from
/// the address (a restarted encoder behind the same NAT mapping, a relay's one
/// socket) went unanswered. A connect can be given up at any await (a tower
/// timeout, a failover), so a request not yet taken goes back to the dispatcher
/// when this is dropped, to be handed to the next connect or refused.
struct Handed {
    request: Option<ConnectionRequest>,
    dispatcher: Option<mpsc::UnboundedSender<Command>>,
}

impl Handed {
    fn new(request: ConnectionRequest, dispatcher: &mpsc::WeakUnboundedSender<Command>) -> Self {
        Self {
            request: Some(request),
            dispatcher: dispatcher.upgrade(),
        }
    }

    /// The request, now the taker's to answer.
    fn take(&mut self) -> Option<ConnectionRequest> {
        self.request.take()
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        let Some(request) = self.request.take() else {
            return;
        };
        let request = match &self.dispatcher {
            Some(dispatcher) => match dispatcher.send(Command::Returned(request)) {
                Ok(()) => return,
                Err(mpsc::error::SendError(Command::Returned(request))) => request,
                Err(_) => return,
            },
            None => request,
        };
        // The listener is going: refuse the caller rather than leave it waiting.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(reject(request, RejectReason::Core(CoreRejectReason::Close)));
        }
    }
}

/// Answer `request` in a task of its own: a connect given up while the answer is on
/// its way must not leave the caller's session unanswered.
fn refuse(request: ConnectionRequest, reason: RejectReason) {
    tokio::spawn(reject(request, reason));
}

/// A running dispatcher.
pub(crate) struct SharedListener {
    commands: mpsc::UnboundedSender<Command>,
    local_addr: SocketAddr,
    /// The listening UDP socket, for the shutdowns its connections say again when
    /// they are dropped (see `FarewellSocket`).
    farewell: Arc<std::net::UdpSocket>,
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

    /// The socket a connection accepted here says its farewell from.
    pub(crate) fn farewell(&self) -> FarewellSocket {
        FarewellSocket::Listener(Arc::downgrade(&self.farewell))
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
            let mut handed = request.await.map_err(|_| self.stopped())?;
            let Some(request) = handed.take() else {
                continue;
            };
            let remote = request.remote();
            // srt-tokio panics when the two sides' key lengths differ, or when an
            // encrypted caller meets an unencrypted listener: refuse those here.
            let key_settings = match (&passphrase, request.key_size()) {
                (None, KeySize::Unspecified) => None,
                (None, _) => {
                    tracing::warn!(%remote, "refusing an encrypted SRT caller: no passphrase set here");
                    refuse(request, RejectReason::Core(CoreRejectReason::Unsecure));
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
                    refuse(request, RejectReason::Core(CoreRejectReason::BadSecret));
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
            // In a task of its own: given up halfway, the handshake still completes
            // (and the unwanted connection closes) instead of hanging the session.
            let accepted = tokio::spawn(request.accept(key_settings));
            match accepted.await {
                Ok(Ok(socket)) => return Ok(socket),
                Ok(Err(error)) => {
                    // A wrong passphrase, an unencrypted caller or a caller gone
                    // mid-handshake: the caller's problem. Wait for the next one.
                    tracing::warn!(%remote, %error, "SRT caller failed its handshake; waiting for the next");
                }
                Err(error) => {
                    // srt-tokio gave up on it (it panicked in that task): the next one.
                    tracing::warn!(%remote, %error, "SRT caller's handshake failed in srt-tokio; waiting for the next");
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
    /// A new listener holds at most `held_callers` callers per stream.
    pub(crate) async fn get_or_bind(
        &self,
        address: SocketAddr,
        options: SocketOptions,
        held_callers: usize,
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
        let (udp, farewell) = with_farewell(srt_tokio::bind_socket(&options).await?)?;
        let local_addr = udp.local_addr()?;
        options.connect.local = local_addr;
        let options = ListenerOptions { socket: options }
            .try_validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let (listener, incoming) = SrtListener::bind_with_socket(options, udp).await?;
        let (commands, rx) = mpsc::unbounded_channel();
        let dispatcher = commands.downgrade();
        tokio::spawn(dispatch(
            listener,
            incoming,
            rx,
            dispatcher,
            local_addr,
            held_callers,
        ));
        let shared = Arc::new(SharedListener {
            commands,
            local_addr,
            farewell: Arc::new(farewell),
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

/// Hold `request` until a connect waits for its stream, `limit` callers per stream
/// at most; the oldest held caller of that stream, when it makes one too many, is
/// given back to be refused (with a limit of 0, `request` itself).
fn hold(
    held: &mut Vec<Held>,
    request: ConnectionRequest,
    limit: usize,
) -> Option<ConnectionRequest> {
    let Some(last) = limit.checked_sub(1) else {
        return Some(request);
    };
    let stream_id = stream_of(&request);
    let mut same = held.iter().filter(|h| stream_of(&h.request) == stream_id);
    let evicted = match same.nth(last) {
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

/// What the dispatcher knows: the connects waiting, the callers held, the streams
/// asked for.
struct Routes {
    waiters: Vec<(Option<String>, oneshot::Sender<Handed>)>,
    held: Vec<Held>,
    known: HashSet<Option<String>>,
    held_callers: usize,
    /// For the requests handed out, to come back if their connect is given up. Weak,
    /// so that the dispatcher ends once every `SharedListener` is gone.
    dispatcher: mpsc::WeakUnboundedSender<Command>,
}

impl Routes {
    /// A connect waits for `stream_id`: the newest held caller of that stream gets
    /// it (older ones gave up), or it waits.
    fn wait(&mut self, stream_id: Option<String>, reply: oneshot::Sender<Handed>) {
        self.known.insert(stream_id.clone());
        let position = self
            .held
            .iter()
            .rposition(|h| stream_id.is_none() || stream_of(&h.request) == stream_id);
        match position {
            Some(i) => {
                let h = self.held.remove(i);
                if let Err(mut handed) = reply.send(Handed::new(h.request, &self.dispatcher)) {
                    if let Some(request) = handed.take() {
                        self.held.insert(
                            i,
                            Held {
                                since: h.since,
                                request,
                            },
                        );
                    }
                }
            }
            None => self.waiters.push((stream_id, reply)),
        }
    }

    /// A caller: to a waiter for exactly its stream first, then to one that takes
    /// any; held if its stream is asked for; refused if nobody listens for it.
    async fn route(&mut self, request: ConnectionRequest) {
        let stream_id = stream_of(&request);
        self.waiters.retain(|(_, reply)| !reply.is_closed());
        let position = self
            .waiters
            .iter()
            .position(|(id, _)| id.is_some() && *id == stream_id)
            .or_else(|| self.waiters.iter().position(|(id, _)| id.is_none()));
        let request = match position {
            Some(i) => {
                let (_, reply) = self.waiters.remove(i);
                match reply.send(Handed::new(request, &self.dispatcher)) {
                    Ok(()) => return,
                    Err(mut handed) => match handed.take() {
                        Some(request) => request,
                        None => return,
                    },
                }
            }
            None => request,
        };
        if self.known.contains(&stream_id) || self.known.contains(&None) {
            if let Some(old) = hold(&mut self.held, request, self.held_callers) {
                reject(old, RejectReason::Server(ServerRejectReason::Conflict)).await;
            }
        } else {
            reject(request, RejectReason::Server(ServerRejectReason::Notfound)).await;
        }
    }
}

async fn dispatch(
    listener: SrtListener,
    mut incoming: srt_tokio::SrtIncoming,
    mut commands: mpsc::UnboundedReceiver<Command>,
    dispatcher: mpsc::WeakUnboundedSender<Command>,
    local_addr: SocketAddr,
    held_callers: usize,
) {
    let mut routes = Routes {
        waiters: Vec::new(),
        held: Vec::new(),
        known: HashSet::new(),
        held_callers,
        dispatcher,
    };
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(Command::Wait { stream_id, reply }) => routes.wait(stream_id, reply),
                Some(Command::Returned(request)) => routes.route(request).await,
                None => break,
            },
            request = incoming.incoming().next() => {
                let Some(request) = request else {
                    tracing::warn!(%local_addr, "SRT listener stopped");
                    break;
                };
                routes.route(request).await;
            }
            _ = tick.tick() => {
                routes.waiters.retain(|(_, reply)| !reply.is_closed());
                let now = Instant::now();
                let (stale, fresh): (Vec<_>, Vec<_>) =
                    routes.held.drain(..).partition(|h| now.duration_since(h.since) >= HOLD);
                routes.held = fresh;
                for h in stale {
                    // The stream is still held by a connection not yet judged dead.
                    reject(h.request, RejectReason::Server(ServerRejectReason::Conflict)).await;
                }
            }
        }
    }
    for h in routes.held.drain(..) {
        reject(h.request, RejectReason::Core(CoreRejectReason::Close)).await;
    }
    // Dropping the listener tells its task to close (`SrtListener::close` would panic
    // here if that task had died).
    drop(incoming);
    drop(listener);
}
