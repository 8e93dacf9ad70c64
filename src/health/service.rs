use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use futures_core::Stream;

use crate::connection::{
    Connection, ConnectionError, ConnectionState, Counting, HealthHandle, Packet, Wrap, WrapFuture,
    WrapService,
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
    pub(crate) fn counting(inner: S, checker: HealthHandle) -> Self {
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
    counting: Counting,
}

impl<C: Connection> Monitored<C> {
    /// Start counting `conn` into `checker` (which restarts its counters).
    pub(crate) fn new(conn: C, checker: HealthHandle) -> Self {
        let counting = Counting::start(checker, conn.rtt());
        Self {
            inner: conn,
            counting,
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
}

impl<C: Connection> Stream for Monitored<C> {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.counting.ended() {
            return Poll::Ready(None);
        }
        let item = ready!(Pin::new(&mut this.inner).poll_next(cx));
        match &item {
            Some(Ok(packet)) => this.counting.packet(packet, || this.inner.rtt()),
            Some(Err(error)) => {
                this.counting.error();
                if error.is_fatal() {
                    this.counting.end();
                }
            }
            None => this.counting.end(),
        }
        Poll::Ready(item)
    }
}

impl<C: Connection> Connection for Monitored<C> {
    fn state(&self) -> ConnectionState {
        let mut state = self.inner.state();
        self.counting.fill(&mut state);
        state
    }

    fn restore(&mut self, state: &ConnectionState) {
        self.inner.restore(state);
    }

    fn rtt(&self) -> Option<Duration> {
        self.inner.rtt()
    }

    fn health(&self) -> Option<HealthHandle> {
        Some(Arc::clone(self.counting.checker()))
    }

    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.inner.poll_close(cx)
    }
}
