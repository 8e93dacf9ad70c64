//! A UDP impairment proxy for tests and demos: loss, burst loss, latency, jitter,
//! duplication, reordering, blackholes and scheduled outages, on loopback.
//!
//! A [`NetworkSimulator`] listens on a local address and relays to an upstream
//! address, both ways, so that protocols with a return path (SRT's handshake and
//! ACKs, RTCP) work through it. Each client that sends to the simulator gets its own
//! socket towards upstream; what upstream sends to that socket goes back to the
//! client. Point a sender at [`local_addr`](NetworkSimulator::local_addr) instead of
//! at the receiver.
//!
//! Impairments are set per [`Direction`], before the start or at run time, and the
//! simulator counts what it did ([`stats`](NetworkSimulator::stats)) so tests can
//! compare what a receiver measured with what really happened. Every random choice
//! comes from a generator seeded with [`Builder::seed`]: the same seed and the same
//! packets give the same fate. Timers are tokio's.
//!
//! The simulator stops when it is dropped.
//!
//! ```
//! use std::time::Duration;
//! use mirror_reconnect::sim::NetworkSimulator;
//! use tokio::net::UdpSocket;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
//! // Something to talk to: a UDP echo server.
//! let echo = UdpSocket::bind("127.0.0.1:0").await?;
//! let upstream = echo.local_addr()?;
//! tokio::spawn(async move {
//!     let mut buf = [0; 1500];
//!     while let Ok((n, from)) = echo.recv_from(&mut buf).await {
//!         let _ = echo.send_to(&buf[..n], from).await;
//!     }
//! });
//!
//! let sim = NetworkSimulator::builder()
//!     .seed(7)
//!     .latency(Duration::from_millis(20))
//!     .start(upstream)
//!     .await?;
//!
//! let client = UdpSocket::bind("127.0.0.1:0").await?;
//! client.connect(sim.local_addr()).await?;
//! let sent = tokio::time::Instant::now();
//! client.send(b"ping").await?;
//! let mut buf = [0; 16];
//! let n = client.recv(&mut buf).await?;
//! assert_eq!(&buf[..n], b"ping");
//! assert!(sent.elapsed() >= Duration::from_millis(40)); // 20 ms each way
//!
//! // Scripted trouble: cut the link, then bring it back.
//! sim.set_blackhole(true);
//! client.send(b"lost").await?;
//! tokio::time::sleep(Duration::from_millis(50)).await;
//! sim.set_blackhole(false);
//! let stats = sim.stats();
//! assert_eq!(stats.to_upstream.packets_in, 2);
//! assert_eq!(stats.to_upstream.dropped_blackhole, 1);
//! assert_eq!(stats.to_client.forwarded, 1);
//! # Ok(()) }
//! ```

mod impair;
mod relay;
mod stats;

pub use impair::{GilbertElliott, Impairments, InvalidImpairment, Outage};
pub use stats::{Direction, DirectionStats, SimulatorStats};

use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use impair::Engine;
use relay::{Shared, TO_CLIENT, TO_UPSTREAM};

/// Seeds of the two directions differ, so that they do not lose the same packets.
const CLIENT_SEED_SALT: u64 = 0x9e37_79b9_7f4a_7c15;

/// Builds a [`NetworkSimulator`]. Settings without a direction apply to both.
#[must_use]
#[derive(Debug, Clone)]
pub struct Builder {
    impairments: [Impairments; 2],
    seed: Option<u64>,
    bind: Option<SocketAddr>,
    client_idle_timeout: Duration,
    blackhole: bool,
}

impl Default for Builder {
    fn default() -> Self {
        Self {
            impairments: [Impairments::default(), Impairments::default()],
            seed: None,
            bind: None,
            client_idle_timeout: Duration::from_secs(60),
            blackhole: false,
        }
    }
}

impl Builder {
    fn each(mut self, direction: Direction, mut f: impl FnMut(&mut Impairments)) -> Self {
        for &i in direction.indices() {
            f(&mut self.impairments[i]);
        }
        self
    }

    /// Seed the random choices, for a reproducible run. Default: a random seed (see
    /// [`NetworkSimulator::seed`]).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Listen on `addr`. Default: port 0 on the loopback address of the upstream's
    /// family.
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = Some(addr);
        self
    }

    /// Forget a client (and close its socket towards upstream) after this long
    /// without traffic either way. Default 60 s.
    pub fn client_idle_timeout(mut self, timeout: Duration) -> Self {
        self.client_idle_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Set all the impairments of `direction` at once.
    pub fn impairments(self, direction: Direction, impairments: Impairments) -> Self {
        self.each(direction, |i| *i = impairments.clone())
    }

    /// Random loss, a probability from 0 to 1 (checked at start).
    pub fn loss(self, loss: f64) -> Self {
        self.each(Direction::Both, |i| i.loss = loss)
    }

    /// Burst loss.
    pub fn burst_loss(self, model: GilbertElliott) -> Self {
        self.each(Direction::Both, |i| i.burst_loss = Some(model))
    }

    /// At most `packets` waiting to go out in each direction; more are dropped (see
    /// [`Impairments::queue_limit`]).
    pub fn queue_limit(self, packets: usize) -> Self {
        self.each(Direction::Both, |i| i.queue_limit = packets)
    }

    /// Added delay.
    pub fn latency(self, latency: Duration) -> Self {
        self.each(Direction::Both, |i| i.latency = latency)
    }

    /// Delay variation around the latency (uniform, either way).
    pub fn jitter(self, jitter: Duration) -> Self {
        self.each(Direction::Both, |i| i.jitter = jitter)
    }

    /// Probability that a packet is sent twice.
    pub fn duplicate(self, probability: f64) -> Self {
        self.each(Direction::Both, |i| i.duplicate = probability)
    }

    /// Probability that a packet is held back until `distance` later packets have
    /// overtaken it.
    pub fn reorder(self, probability: f64, distance: u32) -> Self {
        self.each(Direction::Both, |i| {
            i.reorder = probability;
            i.reorder_distance = distance;
        })
    }

    /// Drop everything from `start` (after the simulator started) for `duration`.
    pub fn outage(self, start: Duration, duration: Duration) -> Self {
        self.each(Direction::Both, |i| {
            i.outages.push(Outage::new(start, duration));
        })
    }

    /// Start with the blackhole on.
    pub fn blackhole(mut self, on: bool) -> Self {
        self.blackhole = on;
        self
    }

    /// Bind and start relaying to `upstream`.
    ///
    /// Fails with [`io::ErrorKind::InvalidInput`] when a setting is out of range
    /// (the message names it), or when binding fails. Must be called inside a tokio
    /// runtime.
    pub async fn start(self, upstream: SocketAddr) -> io::Result<NetworkSimulator> {
        for imp in &self.impairments {
            imp.validate()?;
        }
        let bind = self.bind.unwrap_or_else(|| {
            let ip = match upstream {
                SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            };
            SocketAddr::new(ip, 0)
        });
        let listener = Arc::new(UdpSocket::bind(bind).await?);
        let local_addr = listener.local_addr()?;

        let seed = self.seed.unwrap_or_else(|| fastrand::u64(..));
        let [up, down] = self.impairments;
        let mut engines = [
            Engine::new(up, seed),
            Engine::new(down, seed ^ CLIENT_SEED_SALT),
        ];
        for engine in &mut engines {
            engine.blackhole = self.blackhole;
        }
        let (shared, [up_rx, down_rx]) = Shared::new(engines, seed);
        let tasks = vec![
            tokio::spawn(relay::schedule(Arc::clone(&shared), TO_UPSTREAM, up_rx)),
            tokio::spawn(relay::schedule(Arc::clone(&shared), TO_CLIENT, down_rx)),
            tokio::spawn(relay::listen(
                Arc::clone(&shared),
                listener,
                upstream,
                self.client_idle_timeout,
            )),
        ];
        tracing::debug!(%local_addr, %upstream, seed, "network simulator started");
        Ok(NetworkSimulator {
            handle: SimulatorHandle { shared },
            local_addr,
            upstream,
            tasks,
        })
    }
}

/// A running UDP impairment proxy. See the [module docs](self).
///
/// Dropping it stops it: its tasks are aborted and its sockets closed.
pub struct NetworkSimulator {
    handle: SimulatorHandle,
    local_addr: SocketAddr,
    upstream: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl fmt::Debug for NetworkSimulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetworkSimulator")
            .field("local_addr", &self.local_addr)
            .field("upstream", &self.upstream)
            .field("seed", &self.handle.seed())
            .finish_non_exhaustive()
    }
}

impl Drop for NetworkSimulator {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl NetworkSimulator {
    /// A builder with no impairment set.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// The address clients send to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The address packets are relayed to.
    pub fn upstream_addr(&self) -> SocketAddr {
        self.upstream
    }

    /// A handle that changes impairments and reads statistics from another task. It
    /// does not keep the simulator running.
    pub fn handle(&self) -> SimulatorHandle {
        self.handle.clone()
    }

    /// The seed of the random choices, to reproduce a run.
    pub fn seed(&self) -> u64 {
        self.handle.seed()
    }

    /// What the simulator did so far.
    pub fn stats(&self) -> SimulatorStats {
        self.handle.stats()
    }

    /// Drop everything both ways while `on`.
    pub fn set_blackhole(&self, on: bool) {
        self.handle.set_blackhole(on);
    }

    /// Set the random loss of both directions.
    pub fn set_loss(&self, loss: f64) -> Result<(), InvalidImpairment> {
        self.handle.set_loss(loss)
    }

    /// Set the added delay of both directions.
    pub fn set_latency(&self, latency: Duration) {
        self.handle.set_latency(latency);
    }

    /// Set the jitter of both directions.
    pub fn set_jitter(&self, jitter: Duration) {
        self.handle.set_jitter(jitter);
    }

    /// Replace all the impairments of `direction`.
    pub fn set_impairments(
        &self,
        direction: Direction,
        impairments: Impairments,
    ) -> Result<(), InvalidImpairment> {
        self.handle.set_impairments(direction, impairments)
    }
}

/// Changes a running [`NetworkSimulator`]'s impairments and reads its statistics.
///
/// Cheap to clone and to send to another task; changes apply to the next packet.
#[derive(Clone)]
pub struct SimulatorHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for SimulatorHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimulatorHandle")
            .field("seed", &self.shared.seed)
            .finish_non_exhaustive()
    }
}

impl SimulatorHandle {
    /// The seed of the random choices.
    pub fn seed(&self) -> u64 {
        self.shared.seed
    }

    /// What the simulator did so far.
    pub fn stats(&self) -> SimulatorStats {
        SimulatorStats {
            to_upstream: self.shared.dirs[TO_UPSTREAM].counters.snapshot(),
            to_client: self.shared.dirs[TO_CLIENT].counters.snapshot(),
            clients: self.shared.client_count(),
        }
    }

    /// The current impairments of one direction (`Both` reads the client → upstream one).
    pub fn impairments(&self, direction: Direction) -> Impairments {
        let i = direction.indices()[0];
        relay_lock(&self.shared, i, |s| s.engine.impairments.clone())
    }

    /// Change the impairments of `direction` with `f`. Nothing changes when the
    /// result is out of range; the error names the setting.
    pub fn update(
        &self,
        direction: Direction,
        mut f: impl FnMut(&mut Impairments),
    ) -> Result<(), InvalidImpairment> {
        let mut changed = Vec::with_capacity(2);
        for &i in direction.indices() {
            let mut imp = relay_lock(&self.shared, i, |s| s.engine.impairments.clone());
            f(&mut imp);
            imp.validate()?;
            changed.push((i, imp));
        }
        for (i, imp) in changed {
            relay_lock(&self.shared, i, |s| s.engine.impairments = imp);
        }
        Ok(())
    }

    /// Replace all the impairments of `direction`.
    pub fn set_impairments(
        &self,
        direction: Direction,
        impairments: Impairments,
    ) -> Result<(), InvalidImpairment> {
        self.update(direction, |i| *i = impairments.clone())
    }

    /// Set the random loss of both directions.
    pub fn set_loss(&self, loss: f64) -> Result<(), InvalidImpairment> {
        self.update(Direction::Both, |i| i.loss = loss)
    }

    /// Set the added delay of both directions.
    pub fn set_latency(&self, latency: Duration) {
        let _ = self.update(Direction::Both, |i| i.latency = latency);
    }

    /// Set the jitter of both directions.
    pub fn set_jitter(&self, jitter: Duration) {
        let _ = self.update(Direction::Both, |i| i.jitter = jitter);
    }

    /// Drop everything both ways while `on`.
    pub fn set_blackhole(&self, on: bool) {
        self.set_blackhole_in(Direction::Both, on);
    }

    /// Drop everything going `direction` while `on`.
    pub fn set_blackhole_in(&self, direction: Direction, on: bool) {
        for &i in direction.indices() {
            relay_lock(&self.shared, i, |s| s.engine.blackhole = on);
        }
    }
}

fn relay_lock<R>(shared: &Shared, dir: usize, f: impl FnOnce(&mut relay::DirState) -> R) -> R {
    let mut state = shared.dirs[dir]
        .state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    f(&mut state)
}
