//! The one shape of a layer that wraps connections: a connector whose every
//! connection goes through a [`Wrap`] on its way out. A layer supplies only its wrap
//! (and the wrapped connection type); the service, its readiness and its future are
//! written once, here, as tower writes one `MapResponse` for every mapping.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use pin_project_lite::pin_project;
use tower_service::Service;

use super::Connection;
use crate::error::BoxError;

/// What a layer does to each connection `C` its connector opens.
///
/// ```
/// use mirror_reconnect::connection::{channel, ChannelConnection, ConnectionState, Protocol, Target, Wrap, WrapService};
/// use tower::ServiceExt;
///
/// /// Leaves connections as they are (a real wrap returns its own connection type).
/// #[derive(Debug, Clone)]
/// struct AsIs;
///
/// impl Wrap<ChannelConnection> for AsIs {
///     type Wrapped = ChannelConnection;
///     fn wrap(&self, conn: ChannelConnection) -> ChannelConnection {
///         conn
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let connector = tower::service_fn(|t: Target| async move {
///     Ok::<_, std::io::Error>(channel(ConnectionState::new(t.stream_id, Protocol::InProcess), 1).1)
/// });
/// let conn = WrapService::new(connector, AsIs)
///     .oneshot(Target::new("cam1", Protocol::InProcess))
///     .await
///     .unwrap();
/// # drop(conn); }
/// ```
pub trait Wrap<C>: Clone {
    /// The connection it makes of `C`.
    type Wrapped: Connection;

    /// Wrap one new connection.
    fn wrap(&self, conn: C) -> Self::Wrapped;
}

/// A connector whose connections are wrapped by `W` (the service of every layer that
/// wraps connections: health, failure detection).
#[derive(Clone)]
pub struct WrapService<S, W> {
    inner: S,
    wrap: W,
}

impl<S, W: fmt::Debug> fmt::Debug for WrapService<S, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapService")
            .field("wrap", &self.wrap)
            .finish_non_exhaustive()
    }
}

impl<S, W> WrapService<S, W> {
    /// Wrap the connections of `inner` with `wrap`.
    pub fn new(inner: S, wrap: W) -> Self {
        Self { inner, wrap }
    }

    /// The wrap applied to each connection.
    pub fn wrapper(&self) -> &W {
        &self.wrap
    }

    crate::macros::inner_service_accessors!();
}

impl<S, W, T> Service<T> for WrapService<S, W>
where
    S: Service<T>,
    S::Error: Into<BoxError>,
    W: Wrap<S::Response>,
{
    type Response = W::Wrapped;
    type Error = BoxError;
    type Future = WrapFuture<S::Future, W>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: T) -> Self::Future {
        WrapFuture {
            inner: self.inner.call(target),
            wrap: Some(self.wrap.clone()),
        }
    }
}

pin_project! {
    /// The future of [`WrapService`]: the inner connect, then the wrap.
    pub struct WrapFuture<F, W> {
        #[pin]
        inner: F,
        wrap: Option<W>,
    }
}

impl<F, W: fmt::Debug> fmt::Debug for WrapFuture<F, W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WrapFuture")
            .field("wrap", &self.wrap)
            .finish_non_exhaustive()
    }
}

impl<F, C, E, W> Future for WrapFuture<F, W>
where
    F: Future<Output = Result<C, E>>,
    E: Into<BoxError>,
    W: Wrap<C>,
{
    type Output = Result<W::Wrapped, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let conn = ready!(this.inner.poll(cx)).map_err(Into::into)?;
        let wrap = this
            .wrap
            .take()
            .expect("WrapFuture polled after completion");
        Poll::Ready(Ok(wrap.wrap(conn)))
    }
}
