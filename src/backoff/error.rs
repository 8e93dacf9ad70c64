//! Errors of [`BackoffRetry`](super::BackoffRetry).

use std::fmt;

use crate::error::BoxError;

/// Why [`BackoffRetry`](super::BackoffRetry) stopped trying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum RetryErrorKind {
    /// Every allowed attempt failed.
    Exhausted,
    /// The last error said retrying cannot help (bad passphrase, rejected stream).
    NotRetryable,
    /// The next wait would have passed the maximum elapsed time.
    ElapsedLimit,
}

/// The error [`BackoffRetry`](super::BackoffRetry) returns when it gives up; the
/// last attempt's error is its [`source`](std::error::Error::source).
#[derive(Debug)]
pub struct RetryError {
    kind: RetryErrorKind,
    attempts: u32,
    last: BoxError,
}

impl RetryError {
    pub(crate) fn new(kind: RetryErrorKind, attempts: u32, last: BoxError) -> Self {
        Self {
            kind,
            attempts,
            last,
        }
    }

    /// Why it stopped.
    pub fn kind(&self) -> RetryErrorKind {
        self.kind
    }

    /// How many attempts were made.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The last attempt's error.
    pub fn last_error(&self) -> &BoxError {
        &self.last
    }

    /// Take the last attempt's error.
    pub fn into_last_error(self) -> BoxError {
        self.last
    }
}

impl fmt::Display for RetryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.attempts;
        let s = if n == 1 { "" } else { "s" };
        match self.kind {
            RetryErrorKind::Exhausted => {
                write!(f, "gave up after {n} attempt{s}: {}", self.last)
            }
            RetryErrorKind::NotRetryable => {
                write!(f, "not retrying after {n} attempt{s}: {}", self.last)
            }
            RetryErrorKind::ElapsedLimit => write!(
                f,
                "gave up after {n} attempt{s}: maximum elapsed time reached: {}",
                self.last
            ),
        }
    }
}

impl std::error::Error for RetryError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.last.as_ref())
    }
}
