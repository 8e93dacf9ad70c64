//! One libsrt listening socket per local address, shared by every connect of every
//! stream that listens there, routing callers by stream id.
//!
//! libsrt's listen callback runs on each caller's handshake: a caller whose stream id
//! no target listens for is refused there with SRT_REJX_NOTFOUND (so it sees why), and
//! a stream's own passphrase is set on its caller's socket, so streams on one port can
//! have different passphrases. An accepted caller goes to the connect waiting for its
//! stream; one that comes while nobody waits (the stream's old connection is not yet
//! judged dead), or whose connect is given up before it takes it, is held for a
//! while, then dropped.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use mirror_libsrt::{RejectReason, Socket, SocketState};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::connection::Secret;

/// How long an accepted caller is held when nobody waits for its stream yet.
const HOLD: Duration = Duration::from_secs(3);

/// SRT_REJX_NOTFOUND, libsrt's code for "no such stream here".
pub(super) const REJECT_NOT_FOUND: i32 = 1404;

/// A caller accepted for a stream: its socket and address.
pub(super) type Accepted = (Socket, SocketAddr);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The listeners of one connector and its clones.
#[derive(Default)]
pub(super) struct Listeners {
    by_address: Mutex<HashMap<SocketAddr, Arc<Shared>>>,
}

impl fmt::Debug for Listeners {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(lock(&self.by_address).keys())
            .finish()
    }
}

impl Listeners {
    /// The listener on `address`, bound (by `bind`) if there is none, or if the one
    /// there stopped. A listener bound to the wildcard address serves every address
    /// of its port, and one bound to a specific address serves the wildcard of its
    /// port. Port 0 binds a new one, known from then on by the port it got. A new
    /// listener holds at most `held_callers` accepted callers per stream.
    pub(super) fn get_or_bind(
        &self,
        address: SocketAddr,
        held_callers: usize,
        bind: impl FnOnce() -> mirror_libsrt::Result<Socket>,
    ) -> mirror_libsrt::Result<Arc<Shared>> {
        let mut all = lock(&self.by_address);
        all.retain(|_, shared| !shared.task.is_finished());
        if address.port() != 0 {
            let serves = |bound: &SocketAddr| {
                *bound == address
                    || (bound.port() == address.port()
                        && bound.is_ipv4() == address.is_ipv4()
                        && (bound.ip().is_unspecified() || address.ip().is_unspecified()))
            };
            if let Some((_, shared)) = all.iter().find(|(bound, _)| serves(bound)) {
                return Ok(Arc::clone(shared));
            }
        }
        let shared = Shared::start(bind()?, held_callers)?;
        all.insert(shared.local_addr(), Arc::clone(&shared));
        Ok(shared)
    }
}

/// A listening socket, its routes and the task that accepts on it.
pub(super) struct Shared {
    routes: Arc<Mutex<Routes>>,
    local_addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("local_addr", &self.local_addr)
            .field("streams", &lock(&self.routes).streams.len())
            .finish()
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // The task owns the listening socket: aborting it closes the socket.
        self.task.abort();
    }
}

/// An accepted caller on its way to the connect that waits for it. A connect can
/// be given up at any await (a tower timeout, a failover): if it is before it takes
/// the caller, the caller goes back to its route (the next connect, or held)
/// instead of being closed.
pub(super) struct Handed {
    accepted: Option<(Option<String>, Accepted)>,
    routes: Weak<Mutex<Routes>>,
}

impl Handed {
    /// The caller, now the taker's.
    fn take(&mut self) -> Option<Accepted> {
        self.accepted.take().map(|(_, accepted)| accepted)
    }
}

impl Drop for Handed {
    fn drop(&mut self) {
        if let (Some((route, accepted)), Some(routes)) =
            (self.accepted.take(), self.routes.upgrade())
        {
            lock(&routes).deliver(route, accepted);
        }
    }
}

/// Who listens for what on one socket.
#[derive(Default)]
struct Routes {
    /// The streams listened for (`None`: any caller), with their passphrases.
    streams: HashMap<Option<String>, Option<Secret>>,
    /// Connects waiting for a caller, by stream.
    waiting: HashMap<Option<String>, VecDeque<oneshot::Sender<Handed>>>,
    /// These routes, for the callers handed out to come back to.
    me: Weak<Mutex<Routes>>,
    /// Callers accepted while nobody waited, until when they are kept.
    held: Vec<(Option<String>, Accepted, Instant)>,
    /// Accepted callers held for one stream at most: a newer one replaces the oldest
    /// (the newest caller is the one still trying), so a flood cannot pile up.
    held_limit: usize,
}

impl Routes {
    /// The route a caller with `stream_id` belongs to: its own, else the any-caller one.
    fn route_of(&self, stream_id: &str) -> Option<Option<String>> {
        let own = (!stream_id.is_empty()).then(|| stream_id.to_owned());
        if own.is_some() && self.streams.contains_key(&own) {
            return Some(own);
        }
        self.streams.contains_key(&None).then_some(None)
    }

    /// Hand `accepted` to a connect waiting for `route`, or hold it.
    fn deliver(&mut self, route: Option<String>, mut accepted: Accepted) {
        let now = Instant::now();
        self.held.retain(|(_, _, until)| *until > now);
        if let Some(queue) = self.waiting.get_mut(&route) {
            while let Some(reply) = queue.pop_front() {
                let handed = Handed {
                    accepted: Some((route.clone(), accepted)),
                    routes: Weak::clone(&self.me),
                };
                match reply.send(handed) {
                    Ok(()) => return,
                    // That connect gave up (timed out, cancelled): the next one.
                    Err(mut back) => match back.take() {
                        Some(back) => accepted = back,
                        None => return,
                    },
                }
            }
        }
        if self.held_limit == 0 {
            // Holding none: dropping it closes that caller's socket.
            return;
        }
        let same = self.held.iter().filter(|(r, _, _)| *r == route).count();
        if same >= self.held_limit {
            if let Some(oldest) = self.held.iter().position(|(r, _, _)| *r == route) {
                // Dropping it closes that caller's socket.
                self.held.remove(oldest);
            }
        }
        self.held.push((route, accepted, now + HOLD));
    }

    /// Listen for `stream_id` with `passphrase` from now on, and take a caller held
    /// for it, or queue a wait for the next one. Waits whose connect gave up are let
    /// go here, so a stream that keeps retrying without a caller keeps one.
    fn take_or_wait(
        &mut self,
        stream_id: Option<String>,
        passphrase: Option<Secret>,
    ) -> Result<Accepted, oneshot::Receiver<Handed>> {
        self.streams.insert(stream_id.clone(), passphrase);
        let now = Instant::now();
        self.held.retain(|(_, _, until)| *until > now);
        if let Some(i) = self.held.iter().position(|(r, _, _)| *r == stream_id) {
            let (_, accepted, _) = self.held.remove(i);
            return Ok(accepted);
        }
        let (reply, waiting) = oneshot::channel();
        let queue = self.waiting.entry(stream_id).or_default();
        queue.retain(|r| !r.is_closed());
        queue.push_back(reply);
        Err(waiting)
    }
}

impl Shared {
    fn start(listener: Socket, held_limit: usize) -> mirror_libsrt::Result<Arc<Self>> {
        let routes = Arc::new_cyclic(|me| {
            Mutex::new(Routes {
                held_limit,
                me: Weak::clone(me),
                ..Routes::default()
            })
        });
        let filter_routes = Arc::clone(&routes);
        listener.set_listen_filter(move |caller| {
            let routes = lock(&filter_routes);
            let Some(route) = routes.route_of(caller.stream_id()) else {
                return Err(RejectReason::Code(REJECT_NOT_FOUND));
            };
            if let Some(Some(passphrase)) = routes.streams.get(&route) {
                caller
                    .set_passphrase(passphrase.expose())
                    .map_err(|_| RejectReason::Internal)?;
            }
            Ok(())
        })?;
        listener.listen(64)?;
        let local_addr = listener.local_addr()?;
        let accept_routes = Arc::clone(&routes);
        let task = tokio::spawn(async move {
            loop {
                let accepted = match poll_fn(|cx| listener.poll_accept(cx)).await {
                    Ok(accepted) => accepted,
                    // A caller that failed on its way in (refused, gone): the next one.
                    Err(e) if listener.state() == SocketState::Listening => {
                        tracing::debug!(%local_addr, error = %e, "SRT caller not accepted");
                        // Never spin on an error that repeats.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                    Err(e) => {
                        tracing::warn!(%local_addr, error = %e, "SRT listener stopped");
                        return;
                    }
                };
                let stream_id = accepted.0.stream_id().unwrap_or_default();
                let mut routes = lock(&accept_routes);
                match routes.route_of(&stream_id) {
                    Some(route) => routes.deliver(route, accepted),
                    // The route went away between the handshake and here.
                    None => drop(accepted),
                }
            }
        });
        Ok(Arc::new(Self {
            routes,
            local_addr,
            task,
        }))
    }

    /// The address the socket is bound to.
    pub(super) fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Listen for `stream_id`'s callers (any caller for `None`), with `passphrase`,
    /// from now on, and wait for the next one.
    pub(super) async fn accept(
        &self,
        stream_id: Option<String>,
        passphrase: Option<Secret>,
    ) -> Result<Accepted, ListenerStopped> {
        let taken = lock(&self.routes).take_or_wait(stream_id, passphrase);
        match taken {
            Ok(accepted) => Ok(accepted),
            Err(waiting) => {
                let mut handed = waiting.await.map_err(|_| ListenerStopped)?;
                handed.take().ok_or(ListenerStopped)
            }
        }
    }
}

/// The listening socket stopped (its task ended) while a connect waited on it.
#[derive(Debug)]
pub(super) struct ListenerStopped;

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(port: u16) -> Accepted {
        (
            Socket::new().expect("a socket"),
            SocketAddr::from(([127, 0, 0, 1], port)),
        )
    }

    #[test]
    fn waits_given_up_are_let_go_and_held_callers_are_bounded_per_stream() {
        let mut routes = Routes {
            held_limit: crate::protocol::srt::DEFAULT_HELD_CALLERS,
            ..Routes::default()
        };
        let cam = Some("cam1".to_owned());
        // A stream retrying without a caller: each try gives up its wait.
        for _ in 0..1_000 {
            let waiting = routes
                .take_or_wait(cam.clone(), None)
                .expect_err("no caller held");
            drop(waiting);
        }
        assert_eq!(routes.waiting[&cam].len(), 1, "one wait, not a thousand");
        // A flood of callers nobody waits for.
        routes.waiting.clear();
        for port in 1..=20 {
            routes.deliver(cam.clone(), caller(port));
        }
        routes.deliver(None, caller(100));
        assert_eq!(routes.held.len(), 4 + 1);
        // The newest are kept: ports 17 to 20, handed out oldest first.
        let Ok((_, from)) = routes.take_or_wait(cam.clone(), None) else {
            panic!("no caller held");
        };
        assert_eq!(from.port(), 17);
        drop(routes);
        released();
    }

    /// Once a test's sockets are gone: libsrt's cleanup finished, so that a test
    /// process ending now cannot race it (the last test to end waits for all).
    fn released() {
        let _ = mirror_libsrt::wait_cleaned_up();
    }

    #[test]
    fn the_held_caller_limit_is_the_listeners() {
        let cam = Some("cam1".to_owned());
        for limit in [0, 1, 7] {
            let mut routes = Routes {
                held_limit: limit,
                ..Routes::default()
            };
            for port in 1..=20 {
                routes.deliver(cam.clone(), caller(port));
            }
            assert_eq!(routes.held.len(), limit, "limit {limit}");
            match routes.take_or_wait(cam.clone(), None) {
                Ok((_, from)) => assert_eq!(usize::from(from.port()), 21 - limit),
                Err(_) => assert_eq!(limit, 0, "limit {limit}: a caller should be held"),
            }
        }
        released();
    }
}
