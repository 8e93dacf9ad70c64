use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::net::UdpSocket;
use tower_service::Service;

use crate::connection::Target;
use crate::error::{BoxError, ConnectError, ConnectErrorKind};

use super::connection::RtpConnection;
use super::params::RtpSettings;

/// The future of [`RtpConnector`]'s `call`.
pub type RtpConnecting = Pin<Box<dyn Future<Output = Result<RtpConnection, BoxError>> + Send>>;

/// The RTP connector: a `tower::Service<Target>` that binds a UDP socket on the
/// target's address and returns the [`RtpConnection`] receiving on it.
///
/// Connect errors are boxed [`ConnectError`]s: a bad target is
/// [`InvalidTarget`](ConnectErrorKind::InvalidTarget) (not retried), an address in
/// use is retryable.
#[derive(Debug, Clone)]
pub struct RtpConnector {
    session_timeout: Duration,
    retry_on_timeout: bool,
}

impl Default for RtpConnector {
    fn default() -> Self {
        Self {
            session_timeout: Duration::from_secs(10),
            retry_on_timeout: true,
        }
    }
}

impl RtpConnector {
    /// A connector with the defaults: a session that goes 10 s without a packet ends,
    /// and is reconnected. `ReconnectionConfig`'s `rtp` settings make one with
    /// [`RtpConfig::connector`](crate::config::RtpConfig::connector).
    pub fn new() -> Self {
        Self::default()
    }

    /// End a session after this long without an RTP packet (at least 1 ms). A
    /// target's `session_timeout_ms` parameter wins over it.
    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// Whether a timed-out session ends with a
    /// [`ConnectionError::Network`](crate::connection::ConnectionError::Network) (true,
    /// the default: the stack reconnects) or just ends, like a connection the peer
    /// closed (false: the driver's `retry_on_close` decides).
    #[must_use]
    pub fn retry_on_timeout(mut self, retry: bool) -> Self {
        self.retry_on_timeout = retry;
        self
    }
}

fn bind_error(address: SocketAddr, error: io::Error) -> ConnectError {
    let kind = match error.kind() {
        io::ErrorKind::AddrNotAvailable | io::ErrorKind::PermissionDenied => {
            ConnectErrorKind::InvalidTarget
        }
        _ => ConnectErrorKind::Other,
    };
    ConnectError::new(
        kind,
        format!("cannot bind RTP socket on {address}: {error}"),
    )
    .with_source(error)
}

async fn bind(settings: &RtpSettings) -> Result<UdpSocket, ConnectError> {
    let address = settings.address;
    if !address.ip().is_multicast() {
        return UdpSocket::bind(address)
            .await
            .map_err(|e| bind_error(address, e));
    }
    // A group is received on a socket bound to the port on every address, then joined.
    let any = match address {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let socket = UdpSocket::bind(SocketAddr::new(any, address.port()))
        .await
        .map_err(|e| bind_error(address, e))?;
    let joined = match address.ip() {
        IpAddr::V4(group) => socket.join_multicast_v4(group, settings.interface_v4()),
        IpAddr::V6(group) => socket.join_multicast_v6(&group, 0),
    };
    joined.map_err(|e| {
        ConnectError::new(
            ConnectErrorKind::Other,
            format!("cannot join multicast group {}: {e}", address.ip()),
        )
        .with_source(e)
    })?;
    Ok(socket)
}

impl Service<Target> for RtpConnector {
    type Response = RtpConnection;
    type Error = BoxError;
    type Future = RtpConnecting;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, target: Target) -> Self::Future {
        let timeout = self.session_timeout;
        let retry_on_timeout = self.retry_on_timeout;
        Box::pin(async move {
            let settings = RtpSettings::from_target(&target)?;
            let socket = bind(&settings).await?;
            tracing::debug!(
                stream_id = %target.stream_id,
                address = %settings.address,
                "RTP session bound"
            );
            Ok(RtpConnection::new(
                socket,
                &target,
                settings.session,
                settings.session_timeout.unwrap_or(timeout),
                retry_on_timeout,
            ))
        })
    }
}
