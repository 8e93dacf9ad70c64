use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, SystemTime};

use futures_core::Stream;
use pin_project_lite::pin_project;
use tokio::time::Instant;
use tower_service::Service;

use crate::connection::{
    Connection, ConnectionError, ConnectionState, HealthHandle, Packet, SeqTracker,
};
use crate::error::BoxError;

/// The service [`HealthLayer`](super::HealthLayer) makes: connects through the inner
/// connector and wraps each connection in [`Monitored`].
#[derive(Debug, Clone)]
pub struct Health<S> {
    inner: S,
    checker: HealthHandle,
}

impl<S> Health<S> {
    /// Wrap `inner`, counting into `checker`.
    pub fn new(inner: S, checker: HealthHandle) -> Self {
        Self { inner, checker }
    }

    /// The stream's health handle.
    pub fn handle(&self) -> HealthHandle {
        Arc::clone(&self.checker)
    }

    /// The inner connector.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner connector, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Take the inner connector back.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, T> Service<T> for Health<S>
where
    S: Service<T>,
    S::Response: Connection,
    S::Error: Into<BoxError>,
{
    type Response = Monitored<S::Response>;
    type Error = BoxError;
    type Future = HealthFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: T) -> Self::Future {
        HealthFuture {
            inner: self.inner.call(target),
            checker: Some(self.handle()),
        }
    }
}

pin_project! {
    /// The future of [`Health`]: the inner connect, then the wrap.
    #[derive(Debug)]
    pub struct HealthFuture<F> {
        #[pin]
        inner: F,
        checker: Option<HealthHandle>,
    }
}

impl<F, C, E> Future for HealthFuture<F>
where
    F: Future<Output = Result<C, E>>,
    C: Connection,
    E: Into<BoxError>,
{
    type Output = Result<Monitored<C>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let conn = ready!(this.inner.poll(cx)).map_err(Into::into)?;
        let checker = this
            .checker
            .take()
            .expect("HealthFuture polled after completion");
        Poll::Ready(Ok(Monitored::new(conn, checker)))
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
            self.sequence.observe(seq, &self.checker);
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
