use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use futures_core::Stream;
use tokio::time::Instant;

use crate::connection::{
    Connection, ConnectionError, ConnectionState, HealthHandle, Packet, SeqTracker, Wrap,
    WrapFuture, WrapService,
};

/// The service [`HealthLayer`](super::HealthLayer) makes: connects through the inner
/// connector and wraps each connection in [`Monitored`].
pub type Health<S> = WrapService<S, CountHealth>;

/// The future of [`Health`]: the inner connect, then the wrap.
pub type HealthFuture<F> = WrapFuture<F, CountHealth>;

/// The wrap of [`HealthLayer`](super::HealthLayer): counts each connection into the
/// stream's checker.
#[derive(Debug, Clone)]
pub struct CountHealth {
    checker: HealthHandle,
}

impl<C: Connection> Wrap<C> for CountHealth {
    type Wrapped = Monitored<C>;

    fn wrap(&self, conn: C) -> Monitored<C> {
        Monitored::new(conn, Arc::clone(&self.checker))
    }
}

impl<S> Health<S> {
    /// Wrap `inner`, counting into `checker`.
    pub fn counting(inner: S, checker: HealthHandle) -> Self {
        WrapService::new(inner, CountHealth { checker })
    }

    /// The stream's health handle.
    pub fn handle(&self) -> HealthHandle {
        Arc::clone(&self.wrapper().checker)
    }
}

/// A connection whose packets and errors are counted into a [`HealthChecker`](super::HealthChecker).
#[derive(Debug)]
pub struct Monitored<C> {
    inner: C,
    checker: HealthHandle,
    sequence: SeqTracker,
    started: Instant,
    started_wall: SystemTime,
    ended: bool,
}

impl<C: Connection> Monitored<C> {
    /// Start counting `conn` into `checker` (which restarts its counters).
    pub fn new(conn: C, checker: HealthHandle) -> Self {
        let started = Instant::now();
        checker.connection_started(started);
        if let Some(rtt) = conn.rtt() {
            checker.record_latency(rtt);
        }
        Self {
            inner: conn,
            checker,
            sequence: SeqTracker::default(),
            started,
            started_wall: SystemTime::now(),
            ended: false,
        }
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    fn end(&mut self) {
        if !self.ended {
            self.ended = true;
            self.checker.connection_ended();
        }
    }

    #[inline]
    fn count(&mut self, packet: &Packet) {
        self.checker
            .record_packet(packet.payload.len(), packet.arrival);
        if let Some(seq) = packet.sequence {
            self.checker.record_sequence(self.sequence.update(seq));
        }
        if let Some(rtt) = self.inner.rtt() {
            self.checker.record_latency(rtt);
        }
    }
}

impl<C> Drop for Monitored<C> {
    fn drop(&mut self) {
        if !self.ended {
            self.checker.connection_ended();
        }
    }
}

impl<C: Connection> Stream for Monitored<C> {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.ended {
            return Poll::Ready(None);
        }
        let item = ready!(Pin::new(&mut this.inner).poll_next(cx));
        match &item {
            Some(Ok(packet)) => this.count(packet),
            Some(Err(error)) => {
                this.checker.record_error();
                if error.is_fatal() {
                    this.end();
                }
            }
            None => this.end(),
        }
        Poll::Ready(item)
    }
}

impl<C: Connection> Connection for Monitored<C> {
    fn state(&self) -> ConnectionState {
        let mut state = self.inner.state();
        let counters = self.checker.counters();
        state.statistics.packets_received = counters.packets;
        state.statistics.bytes_received = counters.bytes;
        state.statistics.packet_errors = counters.errors;
        state.statistics.uptime = Instant::now().saturating_duration_since(self.started);
        if let Some(seen) = self.checker.last_seen() {
            let since_start = seen.saturating_duration_since(self.started);
            state.last_activity = self.started_wall + since_start;
        }
        state
    }

    fn restore(&mut self, state: &ConnectionState) {
        self.inner.restore(state);
    }

    fn rtt(&self) -> Option<Duration> {
        self.inner.rtt()
    }

    fn health(&self) -> Option<HealthHandle> {
        Some(Arc::clone(&self.checker))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_close(cx)
    }
}
