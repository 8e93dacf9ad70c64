//! Error types shared by the layers and the driver.

use std::fmt;

/// The boxed error every layer of the stack returns, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a connect attempt failed, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConnectErrorKind {
    /// The peer could not be reached or refused the connection: worth retrying.
    Unreachable,
    /// The attempt took too long: worth retrying.
    TimedOut,
    /// The peer rejected our credentials (for example a wrong SRT passphrase).
    /// Retrying cannot help.
    Unauthorized,
    /// The peer rejected the stream (for example an unknown SRT stream id).
    /// Retrying cannot help.
    Rejected,
    /// The target itself is invalid (bad address, bad parameter). Retrying cannot help.
    InvalidTarget,
    /// Any other failure: worth retrying.
    Other,
}

impl ConnectErrorKind {
    /// Whether a new attempt can succeed where this one failed.
    pub const fn is_retryable(self) -> bool {
        !matches!(
            self,
            Self::Unauthorized | Self::Rejected | Self::InvalidTarget
        )
    }

    const fn as_str(self) -> &'static str {
        match self {
            Self::Unreachable => "peer unreachable",
            Self::TimedOut => "connect timed out",
            Self::Unauthorized => "unauthorized",
            Self::Rejected => "rejected by peer",
            Self::InvalidTarget => "invalid target",
            Self::Other => "connect failed",
        }
    }
}

/// An error a connector returns when it cannot establish a connection.
///
/// Connectors should return this (boxed) so that [`BackoffRetryLayer`] can tell a
/// retryable failure from one that no retry can fix. Errors of other types are
/// treated as retryable.
///
/// [`BackoffRetryLayer`]: crate::backoff::BackoffRetryLayer
#[derive(Debug)]
pub struct ConnectError {
    kind: ConnectErrorKind,
    message: String,
    source: Option<BoxError>,
}

impl ConnectError {
    /// A new error of `kind` with a human-readable `message`.
    pub fn new(kind: ConnectErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause.
    #[must_use]
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// What kind of failure this is.
    pub const fn kind(&self) -> ConnectErrorKind {
        self.kind
    }

    /// Whether retrying can help.
    pub const fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

impl std::error::Error for ConnectError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

/// Whether `error` (or anything in its source chain) says retrying cannot help.
///
/// This is the default classification used by [`BackoffRetryLayer`].
///
/// [`BackoffRetryLayer`]: crate::backoff::BackoffRetryLayer
pub fn is_retryable(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(connect) = e.downcast_ref::<ConnectError>() {
            return connect.is_retryable();
        }
        current = e.source();
    }
    true
}
