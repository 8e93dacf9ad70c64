//! Errors of the SRT connector and its connections.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use srt_protocol::packet::RejectReason;
use srt_protocol::protocol::pending_connection::ConnectionReject;

use super::SrtMode;
use crate::error::{ConnectError, ConnectErrorKind};

/// The peer stopped answering: SRT's peer-idle timeout ended the connection.
///
/// Carried by [`ConnectionError::Network`](crate::connection::ConnectionError::Network)
/// as the last item of an [`SrtConnection`](super::SrtConnection)'s stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerVanished {
    /// How long nothing had been heard from the peer when the connection ended.
    pub silent: Duration,
    /// The connection's peer-idle timeout.
    pub peer_idle_timeout: Duration,
}

impl fmt::Display for PeerVanished {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer vanished: nothing heard from it for {:.1?} (peer idle timeout {:?})",
            self.silent, self.peer_idle_timeout
        )
    }
}

impl std::error::Error for PeerVanished {}

/// How an SRT connection that broke ends its stream, after `silent` without a sign of
/// the peer: a peer silent for half its idle timeout or more vanished (an error, so
/// the stack reconnects); one heard from until the end closed it (a plain end).
pub(crate) fn end_of_connection(
    stream_id: &str,
    silent: Duration,
    peer_idle_timeout: Duration,
) -> Option<crate::connection::ConnectionError> {
    if silent >= peer_idle_timeout / 2 {
        let vanished = PeerVanished {
            silent,
            peer_idle_timeout,
        };
        tracing::debug!(%stream_id, %vanished, "SRT connection ended");
        Some(crate::connection::ConnectionError::Network(Box::new(
            vanished,
        )))
    } else {
        tracing::debug!(%stream_id, ?silent, "SRT connection closed by the peer");
        None
    }
}

/// A packet SRT could not decrypt, as the item a connection yields for it.
pub(crate) fn undecryptable() -> crate::connection::ConnectionError {
    crate::connection::ConnectionError::Packet(
        "SRT packet could not be decrypted (key mismatch or corruption)".into(),
    )
}

/// Why a peer refused our handshake, by SRT's rejection code.
///
/// Credentials (`BadSecret`, `Unsecure`, server codes 401/403) are
/// [`Unauthorized`](ConnectErrorKind::Unauthorized); a refusal of the stream or of
/// our settings is [`Rejected`](ConnectErrorKind::Rejected); a busy or failing peer
/// (overload, conflict, backlog, resource, timeout) is worth retrying.
pub(crate) fn reject_kind(code: i32) -> ConnectErrorKind {
    match code {
        // SRT_REJ_BADSECRET, SRT_REJ_UNSECURE, SRT_REJX_UNAUTHORIZED, SRT_REJX_FORBIDDEN
        1010 | 1011 | 2401 | 2403 => ConnectErrorKind::Unauthorized,
        // SRT_REJ_SYSTEM, RESOURCE, BACKLOG, IPE, CLOSE, RDVCOOKIE, TIMEOUT: the peer's
        // trouble, not ours; SRT_REJX_OVERLOAD, CONFLICT (the stream is still held by a
        // connection the server has not yet seen die), LOCKED, server errors, NOROOM.
        1001 | 1003 | 1005 | 1006 | 1007 | 1009 | 1016 | 2402 | 2409 | 2423 | 2500 | 2502
        | 2503 | 2507 => ConnectErrorKind::Unreachable,
        // Everything else refuses what we ask for (stream id, version, mode, settings).
        _ => ConnectErrorKind::Rejected,
    }
}

fn describe(reason: RejectReason) -> String {
    let code: i32 = reason.into();
    match code {
        1010 => "wrong passphrase (SRT_REJ_BADSECRET)".to_owned(),
        1011 => "encryption mismatch: one side has a passphrase and the other not \
                 (SRT_REJ_UNSECURE)"
            .to_owned(),
        _ => format!("{reason} (code {code})"),
    }
}

/// Turn srt-tokio's connect error into a [`ConnectError`] that says whether retrying
/// can help.
pub(crate) fn connect_error(
    mode: SrtMode,
    address: SocketAddr,
    stream_id: Option<&str>,
    error: io::Error,
) -> ConnectError {
    let what = match stream_id {
        Some(id) => format!("SRT {mode} {address} stream {id:?}"),
        None => format!("SRT {mode} {address}"),
    };
    let reject = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<ConnectionReject>());
    if let Some(reject) = reject {
        let reason = match reject {
            ConnectionReject::Rejected(r) | ConnectionReject::Rejecting(r) => *r,
        };
        let code: i32 = reason.into();
        let kind = reject_kind(code);
        return ConnectError::new(kind, format!("{what}: peer refused: {}", describe(reason)));
    }
    let (kind, message) = match error.kind() {
        io::ErrorKind::TimedOut => (
            ConnectErrorKind::TimedOut,
            "no handshake answer before the connect timeout".to_owned(),
        ),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionReset => (
            ConnectErrorKind::Unreachable,
            format!("peer unreachable: {error}"),
        ),
        io::ErrorKind::AddrInUse | io::ErrorKind::AddrNotAvailable => (
            ConnectErrorKind::Unreachable,
            format!("cannot bind the local socket: {error}"),
        ),
        io::ErrorKind::InvalidInput => (
            ConnectErrorKind::InvalidTarget,
            format!("invalid options: {error}"),
        ),
        _ => (ConnectErrorKind::Other, error.to_string()),
    };
    ConnectError::new(kind, format!("{what}: {message}")).with_source(error)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use srt_protocol::packet::{CoreRejectReason, ServerRejectReason};

    fn refused(reason: RejectReason) -> ConnectError {
        let error = io::Error::new(
            io::ErrorKind::ConnectionRefused,
            ConnectionReject::Rejected(reason),
        );
        connect_error(
            SrtMode::Caller,
            "127.0.0.1:9000".parse().unwrap(),
            Some("cam1"),
            error,
        )
    }

    #[test]
    fn a_wrong_passphrase_is_unauthorized() {
        let e = refused(RejectReason::Core(CoreRejectReason::BadSecret));
        assert_eq!(e.kind(), ConnectErrorKind::Unauthorized);
        assert!(!e.is_retryable());
        assert!(e.to_string().contains("wrong passphrase"), "{e}");
        assert!(e.to_string().contains("cam1"), "{e}");
    }

    #[test]
    fn a_refused_stream_is_rejected_and_a_busy_server_retried() {
        let e = refused(RejectReason::Server(ServerRejectReason::Notfound));
        assert_eq!(e.kind(), ConnectErrorKind::Rejected);
        let e = refused(RejectReason::User(3000));
        assert_eq!(e.kind(), ConnectErrorKind::Rejected);
        let e = refused(RejectReason::Server(ServerRejectReason::Conflict));
        assert!(e.is_retryable(), "{e}");
        let e = refused(RejectReason::Core(CoreRejectReason::Backlog));
        assert!(e.is_retryable(), "{e}");
    }

    #[test]
    fn a_timeout_is_retryable() {
        let e = connect_error(
            SrtMode::Caller,
            "127.0.0.1:9000".parse().unwrap(),
            None,
            io::Error::new(io::ErrorKind::TimedOut, ""),
        );
        assert_eq!(e.kind(), ConnectErrorKind::TimedOut);
        assert!(e.is_retryable());
    }
}
