//! Probes: a cheap check, without connecting, of whether a target's server is there.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

/// What a probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeOutcome {
    /// Something answered as the target's server would: a connect is worth making now.
    Answered,
    /// Nothing answered in time (or the network said the port is closed).
    NoAnswer,
}

impl ProbeOutcome {
    /// The snake_case name used in metric labels: `answered` or `no_answer`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Answered => "answered",
            Self::NoAnswer => "no_answer",
        }
    }
}

impl fmt::Display for ProbeOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The future of one probe. It must end by itself (a probe bounds its own wait for an
/// answer).
pub type ProbeFuture = Pin<Box<dyn Future<Output = ProbeOutcome> + Send>>;

/// A cheap liveness check of a connector's targets, which the retry layer runs while it
/// waits out a backoff delay (see
/// [`BackoffRetryLayer::probe`](crate::backoff::BackoffRetryLayer::probe)): an answered
/// probe ends the wait at once, so a stream comes back as soon as its server does,
/// without sending a full connect attempt to a server that is not there.
///
/// A probe must cost far less than a connect: the SRT caller's
/// ([`SrtProbe`](crate::protocol::srt::SrtProbe)) is one induction handshake datagram,
/// which any SRT listener answers at once and without keeping state. It returns `None`
/// for a target it has nothing to probe on (an SRT listener waits for its peer); the
/// retry layer then waits as it would without a probe.
///
/// Closures are probes too:
///
/// ```
/// use mirror_reconnect::connection::{Probe, ProbeFuture, ProbeOutcome, Target};
///
/// fn answers_always(_: &Target) -> Option<ProbeFuture> {
///     Some(Box::pin(async { ProbeOutcome::Answered }))
/// }
/// fn takes<P: Probe<Target>>(_: P) {}
/// takes(answers_always);
/// ```
pub trait Probe<T>: Send + Sync + 'static {
    /// Start one probe of `target`, or `None` when there is nothing to probe for it.
    fn probe(&self, target: &T) -> Option<ProbeFuture>;
}

impl<T, F> Probe<T> for F
where
    F: Fn(&T) -> Option<ProbeFuture> + Send + Sync + 'static,
{
    fn probe(&self, target: &T) -> Option<ProbeFuture> {
        self(target)
    }
}

// Probes are held as trait objects by the retry layer.
const _: fn(&dyn Probe<super::Target>) = |_| {};
