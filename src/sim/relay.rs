//! The sockets and tasks: one listener, one socket per client towards upstream, and
//! one scheduler per direction that sends packets out when their time comes.

use std::cmp::Ordering as CmpOrdering;
use std::collections::{BinaryHeap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio::time::{sleep_until, timeout, Instant};

use super::impair::{DropReason, Engine, Verdict};
use super::stats::{bump, Counters};

pub(crate) const TO_UPSTREAM: usize = 0;
pub(crate) const TO_CLIENT: usize = 1;

const MAX_DATAGRAM: usize = 65_536;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not stop the relay: the data is plain counters and settings.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Where a packet goes out.
#[derive(Debug, Clone)]
pub(crate) enum Route {
    /// On a client's socket, connected to upstream.
    Upstream(Arc<UdpSocket>),
    /// On the listener, to a client.
    Client(Arc<UdpSocket>, SocketAddr),
}

impl Route {
    async fn send(&self, data: &[u8]) -> io::Result<usize> {
        match self {
            Self::Upstream(socket) => socket.send(data).await,
            Self::Client(socket, to) => socket.send_to(data, to).await,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Outgoing {
    at: Instant,
    index: u64,
    copy: u8,
    data: Bytes,
    route: Route,
    hold: Option<(u32, Duration)>,
}

impl Outgoing {
    fn key(&self) -> (Instant, u64, u8) {
        (self.at, self.index, self.copy)
    }
}

impl PartialEq for Outgoing {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}

impl Eq for Outgoing {}

impl PartialOrd for Outgoing {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

impl Ord for Outgoing {
    // Reversed, so that the standard max-heap pops the earliest packet first.
    fn cmp(&self, other: &Self) -> CmpOrdering {
        other.key().cmp(&self.key())
    }
}

/// One direction's decision state, under one lock so decisions stay in arrival order.
#[derive(Debug)]
pub(crate) struct DirState {
    pub(crate) engine: Engine,
    /// When the last packet is due out: later packets never go before it.
    last_due: Option<Instant>,
    next_index: u64,
}

#[derive(Debug)]
pub(crate) struct Dir {
    pub(crate) state: Mutex<DirState>,
    pub(crate) counters: Counters,
    tx: mpsc::UnboundedSender<Outgoing>,
}

#[derive(Debug)]
struct Client {
    socket: Arc<UdpSocket>,
    /// Milliseconds since the simulator started, when the client last saw traffic.
    last_active: AtomicU64,
}

#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) start: Instant,
    pub(crate) seed: u64,
    pub(crate) dirs: [Dir; 2],
    clients: Mutex<HashMap<SocketAddr, Arc<Client>>>,
}

impl Shared {
    /// The shared state and the receiving ends of the two schedulers.
    pub(crate) fn new(
        engines: [Engine; 2],
        seed: u64,
    ) -> (Arc<Self>, [mpsc::UnboundedReceiver<Outgoing>; 2]) {
        let [up, down] = engines;
        let (up_tx, up_rx) = mpsc::unbounded_channel();
        let (down_tx, down_rx) = mpsc::unbounded_channel();
        let dir = |engine, tx| Dir {
            state: Mutex::new(DirState {
                engine,
                last_due: None,
                next_index: 0,
            }),
            counters: Counters::default(),
            tx,
        };
        let shared = Arc::new(Self {
            start: Instant::now(),
            seed,
            dirs: [dir(up, up_tx), dir(down, down_tx)],
            clients: Mutex::new(HashMap::new()),
        });
        (shared, [up_rx, down_rx])
    }

    pub(crate) fn client_count(&self) -> usize {
        lock(&self.clients).len()
    }

    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Decide a packet's fate and queue it for its scheduler.
    fn admit(&self, dir: usize, data: Bytes, route: Route) {
        let d = &self.dirs[dir];
        bump(&d.counters.packets_in);
        let now = Instant::now();
        let mut st = lock(&d.state);
        let (delay, duplicate, hold) =
            match st.engine.decide(now.saturating_duration_since(self.start)) {
                Verdict::Drop(reason) => {
                    bump(match reason {
                        DropReason::Blackhole => &d.counters.dropped_blackhole,
                        DropReason::Outage => &d.counters.dropped_outage,
                        DropReason::Loss => &d.counters.dropped_loss,
                        DropReason::Burst => &d.counters.dropped_burst,
                    });
                    return;
                }
                Verdict::Forward {
                    delay,
                    duplicate,
                    hold,
                } => (delay, duplicate, hold),
            };
        // A full queue drops what comes (the copy too); the scheduler takes each
        // packet off the count when it goes out.
        let copies = 1 + usize::from(duplicate);
        let limit = st.engine.impairments.queue_limit;
        let queued = &d.counters.queued;
        if queued
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n + copies <= limit).then_some(n + copies)
            })
            .is_err()
        {
            drop(st);
            bump(&d.counters.dropped_queue_full);
            return;
        }
        if !delay.is_zero() {
            bump(&d.counters.delayed);
        }
        let at = st
            .last_due
            .map_or(now + delay, |last| (now + delay).max(last));
        st.last_due = Some(at);
        let index = st.next_index;
        st.next_index += 1;
        let reorder_timeout = st.engine.impairments.reorder_timeout;
        drop(st);

        if duplicate {
            bump(&d.counters.duplicated);
            let copy = Outgoing {
                at,
                index,
                copy: 1,
                data: data.clone(),
                route: route.clone(),
                hold: None,
            };
            // The scheduler only goes away with the simulator.
            let _ = d.tx.send(copy);
        }
        let _ = d.tx.send(Outgoing {
            at,
            index,
            copy: 0,
            data,
            route,
            hold: hold.map(|n| (n, reorder_timeout)),
        });
    }
}

struct Held {
    packet: Outgoing,
    remaining: u32,
    deadline: Instant,
}

/// Sends one direction's packets when they are due, and counts what went out of order.
pub(crate) async fn schedule(
    shared: Arc<Shared>,
    dir: usize,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
) {
    let counters = &shared.dirs[dir].counters;
    let mut queue: BinaryHeap<Outgoing> = BinaryHeap::new();
    let mut held: Vec<Held> = Vec::new();
    let mut newest_sent: Option<u64> = None;

    loop {
        let wake = queue
            .peek()
            .map(|p| p.at)
            .into_iter()
            .chain(held.iter().map(|h| h.deadline))
            .min();
        tokio::select! {
            item = rx.recv() => match item {
                Some(packet) => queue.push(packet),
                None => return,
            },
            () = sleep_until(wake.unwrap_or_else(Instant::now)), if wake.is_some() => {}
        }
        while let Ok(packet) = rx.try_recv() {
            queue.push(packet);
        }

        let now = Instant::now();
        while queue.peek().is_some_and(|p| p.at <= now) {
            let Some(mut packet) = queue.pop() else { break };
            if let Some((distance, wait)) = packet.hold.take() {
                held.push(Held {
                    packet,
                    remaining: distance,
                    deadline: now + wait,
                });
                continue;
            }
            send(counters, &mut newest_sent, &packet).await;
            if packet.copy == 0 {
                let mut i = 0;
                while i < held.len() {
                    held[i].remaining = held[i].remaining.saturating_sub(1);
                    if held[i].remaining == 0 {
                        let h = held.swap_remove(i);
                        send(counters, &mut newest_sent, &h.packet).await;
                    } else {
                        i += 1;
                    }
                }
            }
        }
        let mut i = 0;
        while i < held.len() {
            if held[i].deadline <= now {
                let h = held.swap_remove(i);
                send(counters, &mut newest_sent, &h.packet).await;
            } else {
                i += 1;
            }
        }
    }
}

async fn send(counters: &Counters, newest_sent: &mut Option<u64>, packet: &Outgoing) {
    counters.queued.fetch_sub(1, Ordering::AcqRel);
    if newest_sent.is_some_and(|newest| packet.index < newest) {
        bump(&counters.reordered);
    }
    *newest_sent = Some(newest_sent.map_or(packet.index, |n| n.max(packet.index)));
    match packet.route.send(&packet.data).await {
        Ok(_) => bump(&counters.forwarded),
        Err(error) => {
            bump(&counters.send_errors);
            tracing::trace!(%error, "network simulator: send failed");
        }
    }
}

/// Errors that say something about one datagram or peer, not about the socket.
fn is_transient(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::WouldBlock
            | io::ErrorKind::Interrupted
    )
}

async fn pause_after(error: &io::Error, what: &str) {
    if !is_transient(error) {
        tracing::warn!(%error, "network simulator: {what} failed");
        // Do not spin on a socket that keeps failing.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The address a client's socket towards `upstream` binds to.
fn bind_for(upstream: SocketAddr) -> SocketAddr {
    let ip = match (upstream.ip().is_loopback(), upstream) {
        (true, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::LOCALHOST),
        (true, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        (false, SocketAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        (false, SocketAddr::V6(_)) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    SocketAddr::new(ip, 0)
}

/// Receives from clients, opens a socket towards upstream per client, and relays.
pub(crate) async fn listen(
    shared: Arc<Shared>,
    listener: Arc<UdpSocket>,
    upstream: SocketAddr,
    idle: Duration,
) {
    let mut replies = JoinSet::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (len, from) = tokio::select! {
            received = listener.recv_from(&mut buf) => match received {
                Ok(r) => r,
                Err(error) => {
                    pause_after(&error, "receive from clients").await;
                    continue;
                }
            },
            Some(_) = replies.join_next(), if !replies.is_empty() => continue,
        };
        let existing = lock(&shared.clients).get(&from).cloned();
        let client = match existing {
            Some(client) => client,
            None => match open_client(upstream).await {
                Ok(socket) => {
                    let client = Arc::new(Client {
                        socket: Arc::new(socket),
                        last_active: AtomicU64::new(shared.elapsed_ms()),
                    });
                    lock(&shared.clients).insert(from, Arc::clone(&client));
                    replies.spawn(relay_replies(
                        Arc::clone(&shared),
                        Arc::clone(&client),
                        from,
                        Arc::clone(&listener),
                        idle,
                    ));
                    tracing::debug!(client = %from, "network simulator: new client");
                    client
                }
                Err(error) => {
                    tracing::warn!(%error, client = %from, "network simulator: cannot open a socket towards upstream");
                    continue;
                }
            },
        };
        client
            .last_active
            .store(shared.elapsed_ms(), Ordering::Relaxed);
        shared.admit(
            TO_UPSTREAM,
            Bytes::copy_from_slice(&buf[..len]),
            Route::Upstream(Arc::clone(&client.socket)),
        );
    }
}

async fn open_client(upstream: SocketAddr) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind(bind_for(upstream)).await?;
    socket.connect(upstream).await?;
    Ok(socket)
}

/// Relays what upstream sends to one client, until the client has been idle too long.
async fn relay_replies(
    shared: Arc<Shared>,
    client: Arc<Client>,
    addr: SocketAddr,
    listener: Arc<UdpSocket>,
    idle: Duration,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        match timeout(idle, client.socket.recv(&mut buf)).await {
            Ok(Ok(len)) => {
                client
                    .last_active
                    .store(shared.elapsed_ms(), Ordering::Relaxed);
                shared.admit(
                    TO_CLIENT,
                    Bytes::copy_from_slice(&buf[..len]),
                    Route::Client(Arc::clone(&listener), addr),
                );
            }
            Ok(Err(error)) => pause_after(&error, "receive from upstream").await,
            Err(_) => {
                let last = client.last_active.load(Ordering::Relaxed);
                let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
                if shared.elapsed_ms().saturating_sub(last) >= idle_ms {
                    let mut clients = lock(&shared.clients);
                    if clients.get(&addr).is_some_and(|c| Arc::ptr_eq(c, &client)) {
                        clients.remove(&addr);
                    }
                    tracing::debug!(client = %addr, "network simulator: client idle, forgotten");
                    return;
                }
            }
        }
    }
}
