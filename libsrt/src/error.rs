//! What a libsrt call that failed said.

use std::ffi::CStr;
use std::fmt;
use std::io;

use crate::sys;

/// Why libsrt refused or broke a connection (`SRT_REJECT_REASON`, or a code a
/// listener chose).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectReason {
    /// No reason known (yet).
    Unknown,
    /// A system call failed.
    System,
    /// The peer rejected the connection.
    Peer,
    /// libsrt ran out of a resource.
    Resource,
    /// The handshake carried data that makes no sense.
    Rogue,
    /// The listener's backlog was full.
    Backlog,
    /// An internal error of libsrt.
    Internal,
    /// The socket is closing.
    Close,
    /// The peer's version is older than the minimum this side accepts.
    Version,
    /// A rendezvous cookie collision.
    RendezvousCookie,
    /// Wrong passphrase.
    BadSecret,
    /// One side wants encryption, the other has none.
    Unsecure,
    /// Message API and stream API do not match.
    MessageApi,
    /// The congestion controllers do not match.
    Congestion,
    /// The packet filters (FEC) do not match.
    Filter,
    /// The socket groups do not match.
    Group,
    /// The handshake timed out.
    Timeout,
    /// A code a listener set: 1000–1999 are predefined (HTTP-like: 1000 + 403 is
    /// forbidden, 1000 + 404 not found), 2000 and up are an application's own.
    Code(i32),
}

impl RejectReason {
    /// The reason for libsrt's numeric code.
    pub fn from_code(code: i32) -> Self {
        match code {
            sys::SRT_REJ_UNKNOWN => Self::Unknown,
            sys::SRT_REJ_SYSTEM => Self::System,
            sys::SRT_REJ_PEER => Self::Peer,
            sys::SRT_REJ_RESOURCE => Self::Resource,
            sys::SRT_REJ_ROGUE => Self::Rogue,
            sys::SRT_REJ_BACKLOG => Self::Backlog,
            sys::SRT_REJ_IPE => Self::Internal,
            sys::SRT_REJ_CLOSE => Self::Close,
            sys::SRT_REJ_VERSION => Self::Version,
            sys::SRT_REJ_RDVCOOKIE => Self::RendezvousCookie,
            sys::SRT_REJ_BADSECRET => Self::BadSecret,
            sys::SRT_REJ_UNSECURE => Self::Unsecure,
            sys::SRT_REJ_MESSAGEAPI => Self::MessageApi,
            sys::SRT_REJ_CONGESTION => Self::Congestion,
            sys::SRT_REJ_FILTER => Self::Filter,
            sys::SRT_REJ_GROUP => Self::Group,
            sys::SRT_REJ_TIMEOUT => Self::Timeout,
            other => Self::Code(other),
        }
    }

    /// The numeric code, as libsrt has it.
    pub fn code(self) -> i32 {
        match self {
            Self::Unknown => sys::SRT_REJ_UNKNOWN,
            Self::System => sys::SRT_REJ_SYSTEM,
            Self::Peer => sys::SRT_REJ_PEER,
            Self::Resource => sys::SRT_REJ_RESOURCE,
            Self::Rogue => sys::SRT_REJ_ROGUE,
            Self::Backlog => sys::SRT_REJ_BACKLOG,
            Self::Internal => sys::SRT_REJ_IPE,
            Self::Close => sys::SRT_REJ_CLOSE,
            Self::Version => sys::SRT_REJ_VERSION,
            Self::RendezvousCookie => sys::SRT_REJ_RDVCOOKIE,
            Self::BadSecret => sys::SRT_REJ_BADSECRET,
            Self::Unsecure => sys::SRT_REJ_UNSECURE,
            Self::MessageApi => sys::SRT_REJ_MESSAGEAPI,
            Self::Congestion => sys::SRT_REJ_CONGESTION,
            Self::Filter => sys::SRT_REJ_FILTER,
            Self::Group => sys::SRT_REJ_GROUP,
            Self::Timeout => sys::SRT_REJ_TIMEOUT,
            Self::Code(code) => code,
        }
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // SAFETY: srt_rejectreason_str takes any int and returns a pointer to a static,
        // NUL-terminated string (a generic one for codes it does not know), or null.
        let text = unsafe { sys::srt_rejectreason_str(self.code()) };
        if text.is_null() {
            return write!(f, "reject code {}", self.code());
        }
        // SAFETY: non-null, NUL-terminated and static, as above.
        let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
        match self {
            Self::Code(code) => write!(f, "{text} (code {code})"),
            _ => f.write_str(&text),
        }
    }
}

/// A libsrt call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    code: i32,
    reject: Option<RejectReason>,
    message: String,
}

impl Error {
    /// The last error of this thread's libsrt calls, for the call named `call`.
    pub(crate) fn last(call: &str) -> Self {
        let mut errno = 0;
        // SAFETY: srt_getlasterror writes the system errno through the valid pointer
        // and returns the thread's last SRT error code; it keeps no reference.
        let code = unsafe { sys::srt_getlasterror(&mut errno) };
        // SAFETY: srt_getlasterror_str returns a pointer to the thread's error text,
        // valid until the next libsrt call on this thread (copied below), or null.
        let text = unsafe { sys::srt_getlasterror_str() };
        let text = if text.is_null() {
            String::new()
        } else {
            // SAFETY: non-null and NUL-terminated, valid until the next call here.
            unsafe { CStr::from_ptr(text) }
                .to_string_lossy()
                .into_owned()
        };
        Self {
            code,
            reject: None,
            message: format!("{call}: {text}"),
        }
    }

    /// An error of this crate's own, with libsrt's code for it.
    pub(crate) fn new(code: i32, message: impl Into<String>) -> Self {
        Self {
            code,
            reject: None,
            message: message.into(),
        }
    }

    /// The same, with the reason the connection was rejected.
    pub(crate) fn with_reject(mut self, reason: RejectReason) -> Self {
        self.reject = Some(reason);
        self
    }

    /// libsrt's error code (`SRT_ERRNO`: 1001 no server, 1002 rejected, 2001
    /// connection lost, 6002 nothing to read yet, …).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// Why the connection was rejected, when it was.
    pub fn reject_reason(&self) -> Option<RejectReason> {
        self.reject
    }

    /// Whether the call would have blocked (nothing to read, no room to send).
    pub fn is_would_block(&self) -> bool {
        matches!(
            self.code,
            sys::SRT_EASYNCFAIL | sys::SRT_EASYNCRCV | sys::SRT_EASYNCSND
        )
    }

    /// The closest `std::io::ErrorKind`.
    pub fn io_kind(&self) -> io::ErrorKind {
        match self.code {
            sys::SRT_EASYNCFAIL | sys::SRT_EASYNCRCV | sys::SRT_EASYNCSND => {
                io::ErrorKind::WouldBlock
            }
            sys::SRT_ENOSERVER | sys::SRT_ETIMEOUT => io::ErrorKind::TimedOut,
            sys::SRT_ECONNREJ | sys::SRT_ESECFAIL => io::ErrorKind::ConnectionRefused,
            sys::SRT_ECONNLOST | sys::SRT_ECONNFAIL => io::ErrorKind::ConnectionReset,
            sys::SRT_ENOCONN | sys::SRT_ESCLOSED => io::ErrorKind::NotConnected,
            sys::SRT_EBINDCONFLICT | sys::SRT_EDUPLISTEN => io::ErrorKind::AddrInUse,
            sys::SRT_EINVPARAM | sys::SRT_EINVOP | sys::SRT_ELARGEMSG => {
                io::ErrorKind::InvalidInput
            }
            _ => io::ErrorKind::Other,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(reason) = self.reject {
            write!(f, " (rejected: {reason})")?;
        }
        Ok(())
    }
}

impl std::error::Error for Error {}

impl From<Error> for io::Error {
    fn from(e: Error) -> Self {
        io::Error::new(e.io_kind(), e)
    }
}

/// The result of this crate's calls.
pub type Result<T> = std::result::Result<T, Error>;
