use std::any::Any;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::{Attempt, Backoff, BackoffRetry, Probed};
use crate::connection::{Probe, ProbeFuture};
use crate::error::BoxError;

pub(crate) type Classifier = Arc<dyn Fn(&BoxError) -> bool + Send + Sync>;
pub(crate) type AttemptCallback = Arc<dyn Fn(&Attempt) + Send + Sync>;
pub(crate) type ProbeCallback = Arc<dyn Fn(&Probed) + Send + Sync>;
pub(crate) type ResetCallback = Arc<dyn Fn(Duration) + Send + Sync>;
/// A probe of one target type, behind one type for every layer: a target of another
/// type has nothing to probe.
pub(crate) type AnyProbe = Arc<dyn Fn(&dyn Any) -> Option<ProbeFuture> + Send + Sync>;

/// `probe` as one type for every target type: a target of another type than `T` has
/// nothing to probe.
pub(crate) fn any_probe<T: 'static, P: Probe<T>>(probe: P) -> AnyProbe {
    Arc::new(move |target: &dyn Any| target.downcast_ref::<T>().and_then(|t| probe.probe(t)))
}

/// The default cadence of probes while waiting out a delay.
pub(crate) const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// By default, a connect that has been failing this long attempts only when a probe
/// is answered.
pub(crate) const DEFAULT_PROBE_FIRST_AFTER: Duration = Duration::from_secs(5);

/// What every [`BackoffRetry`] made by one layer shares.
pub(crate) struct Policy<B> {
    pub(crate) backoff: B,
    pub(crate) max_retries: u32,
    pub(crate) max_elapsed: Option<Duration>,
    /// `None`: [`is_retryable`](crate::error::is_retryable), with nothing to allocate.
    pub(crate) retryable: Option<Classifier>,
    pub(crate) on_attempt: Vec<AttemptCallback>,
    pub(crate) probe: Option<AnyProbe>,
    pub(crate) probe_interval: Duration,
    pub(crate) on_probe: Vec<ProbeCallback>,
    pub(crate) probe_first_after: Option<Duration>,
    pub(crate) stable_after: Option<Duration>,
    pub(crate) on_reset: Vec<ResetCallback>,
}

/// Something told of every attempt, probe and backoff reset of a retry: the
/// crate's own event bus, given to a layer with [`BackoffRetryLayer::report_to`].
pub(crate) trait RetryReport: Send + Sync {
    /// An attempt is about to start.
    fn attempted(&self, attempt: &Attempt);
    /// A probe has an outcome.
    fn probed(&self, probed: &Probed);
    /// A connect starts the backoff afresh, after the connection before it stayed up
    /// for `up_for`.
    fn backoff_reset(&self, up_for: Duration);
}

impl<B> Policy<B> {
    /// Whether `error` is worth another attempt.
    pub(crate) fn retryable(&self, error: &BoxError) -> bool {
        match &self.retryable {
            Some(retryable) => retryable(error),
            None => crate::error::is_retryable(error.as_ref()),
        }
    }
}

/// A retry's policy, shared by every stream its layer serves, and the stream's own
/// reporter: what a retry service and its futures read.
pub(crate) struct Rules<B> {
    pub(crate) policy: Arc<Policy<B>>,
    /// Told of attempts, probes and resets as well as the callbacks: one reporter (a
    /// stream's event bus) rather than a callback each to allocate.
    pub(crate) report: Option<Arc<dyn RetryReport>>,
}

impl<B> Clone for Rules<B> {
    fn clone(&self) -> Self {
        Self {
            policy: Arc::clone(&self.policy),
            report: self.report.clone(),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for Rules<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Rules")
            .field("policy", &self.policy)
            .field("report", &self.report.is_some())
            .finish()
    }
}

impl<B> std::ops::Deref for Rules<B> {
    type Target = Policy<B>;

    fn deref(&self) -> &Policy<B> {
        &self.policy
    }
}

impl<B> Rules<B> {
    /// Tell everyone of an attempt about to start.
    pub(crate) fn attempted(&self, attempt: &Attempt) {
        if let Some(report) = &self.report {
            report.attempted(attempt);
        }
        for callback in &self.on_attempt {
            callback(attempt);
        }
    }

    /// Tell everyone of a probe's outcome.
    pub(crate) fn probed(&self, probed: &Probed) {
        if let Some(report) = &self.report {
            report.probed(probed);
        }
        for callback in &self.on_probe {
            callback(probed);
        }
    }

    /// Tell everyone that a connect starts the backoff afresh.
    pub(crate) fn backoff_reset(&self, up_for: Duration) {
        if let Some(report) = &self.report {
            report.backoff_reset(up_for);
        }
        for callback in &self.on_reset {
            callback(up_for);
        }
    }
}

impl<B: Clone> Clone for Policy<B> {
    fn clone(&self) -> Self {
        Self {
            backoff: self.backoff.clone(),
            max_retries: self.max_retries,
            max_elapsed: self.max_elapsed,
            retryable: self.retryable.clone(),
            on_attempt: self.on_attempt.clone(),
            probe: self.probe.clone(),
            probe_interval: self.probe_interval,
            on_probe: self.on_probe.clone(),
            probe_first_after: self.probe_first_after,
            stable_after: self.stable_after,
            on_reset: self.on_reset.clone(),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for Policy<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Policy")
            .field("backoff", &self.backoff)
            .field("max_retries", &self.max_retries)
            .field("max_elapsed", &self.max_elapsed)
            .field("on_attempt", &self.on_attempt.len())
            .field("probe", &self.probe.is_some())
            .field("probe_interval", &self.probe_interval)
            .field("probe_first_after", &self.probe_first_after)
            .field("stable_after", &self.stable_after)
            .finish_non_exhaustive()
    }
}

/// Retries a failed connect after a [`Backoff`] delay.
///
/// Each call starts the backoff afresh (a success resets it), makes the first attempt
/// at once, and after each retryable failure waits the next delay and tries again: at
/// most `max_retries` retries (so `max_retries + 1` attempts), and never past
/// `max_elapsed`. An error that says retrying cannot help (see
/// [`is_retryable`](crate::error::is_retryable)) stops at once. When it gives up it
/// returns a [`RetryError`](super::error::RetryError) holding the last error.
///
/// The inner service is cloned for each call, as tower's `Retry` does: put a
/// `TimeoutLayer` inside it to bound each attempt, and a shared limiter
/// (`GlobalConcurrencyLimitLayer`, or a `RateLimitLayer` behind a `BufferLayer`)
/// inside it to cap attempts across streams.
#[derive(Debug)]
#[must_use]
pub struct BackoffRetryLayer<B> {
    /// The policy is shared with every service the layer makes (and with the layer's
    /// clones): a stream's retry carries no copy of it.
    rules: Rules<B>,
}

impl<B: Clone> Clone for BackoffRetryLayer<B> {
    fn clone(&self) -> Self {
        Self {
            rules: self.rules.clone(),
        }
    }
}

impl<B: Backoff + Clone> BackoffRetryLayer<B> {
    /// Retry with `backoff`, at most 5 times, with no time limit.
    pub fn new(backoff: B) -> Self {
        Self {
            rules: Rules {
                policy: Arc::new(Policy {
                    backoff,
                    max_retries: 5,
                    max_elapsed: None,
                    retryable: None,
                    on_attempt: Vec::new(),
                    probe: None,
                    probe_interval: DEFAULT_PROBE_INTERVAL,
                    on_probe: Vec::new(),
                    probe_first_after: Some(DEFAULT_PROBE_FIRST_AFTER),
                    stable_after: None,
                    on_reset: Vec::new(),
                }),
                report: None,
            },
        }
    }

    /// The policy, to change before the layer makes a service (copied first if a
    /// service already shares it).
    fn policy_mut(&mut self) -> &mut Policy<B> {
        Arc::make_mut(&mut self.rules.policy)
    }

    /// Whether `rules` reads this layer's policy (not a copy of it).
    #[cfg(test)]
    pub(crate) fn shares_policy(&self, rules: &Rules<B>) -> bool {
        Arc::ptr_eq(&self.rules.policy, &rules.policy)
    }

    /// Tell `report` of every attempt, probe and backoff reset, besides the
    /// callbacks. The policy stays shared: a layer per stream, each cloned from one
    /// made for all and told of its own stream's reporter, costs no copy of it.
    pub(crate) fn report_to(mut self, report: Arc<dyn RetryReport>) -> Self {
        self.rules.report = Some(report);
        self
    }

    /// At most this many retries after the first attempt.
    pub fn max_retries(mut self, max_retries: u32) -> Self {
        self.policy_mut().max_retries = max_retries;
        self
    }

    /// Give up rather than wait past this much time since the first attempt.
    pub fn max_elapsed(mut self, max_elapsed: Duration) -> Self {
        self.policy_mut().max_elapsed = Some(max_elapsed);
        self
    }

    /// Decide which errors are worth retrying (the default reads
    /// [`ConnectError`](crate::error::ConnectError) kinds and retries everything else).
    pub fn retry_if<F>(mut self, retryable: F) -> Self
    where
        F: Fn(&BoxError) -> bool + Send + Sync + 'static,
    {
        self.policy_mut().retryable = Some(Arc::new(retryable));
        self
    }

    /// Call `callback` before every attempt, the first included.
    pub fn on_attempt<F>(mut self, callback: F) -> Self
    where
        F: Fn(&Attempt) + Send + Sync + 'static,
    {
        self.policy_mut().on_attempt.push(Arc::new(callback));
        self
    }

    /// While waiting out a delay, probe the target every `probe_interval` (each wait
    /// jittered between half and all of it); an answered probe ends the wait and the
    /// next attempt starts at once. A probe is far cheaper than an attempt (the SRT
    /// caller's is one datagram), so a stream whose server comes back is back within
    /// one probe interval instead of waiting out a backoff delay that may be tens of
    /// seconds.
    ///
    /// Once a connect has been failing for
    /// [`probe_first_after`](Self::probe_first_after) (5 s by default), the end of a
    /// delay no longer starts an attempt by itself: the layer probes, and attempts only
    /// when a probe is answered, so a dead server is sent one small datagram per
    /// interval instead of full connect attempts. When an attempt that an answered probe
    /// started fails all the same (the server answers probes but refuses the connect),
    /// the next delay is waited out in full, so such a server is retried on the backoff
    /// ladder, not at the probes' cadence.
    ///
    /// Targets of another type than `T`, and targets the probe returns `None` for,
    /// wait as they would without a probe. Probes never count as attempts: the attempt
    /// callbacks and `max_retries` see only real attempts; `max_elapsed` still ends a
    /// connect whose probes go unanswered (within one probe interval of the limit).
    ///
    /// ```
    /// use std::time::Duration;
    /// use mirror_reconnect::backoff::{BackoffRetryLayer, FixedBackoff};
    /// use mirror_reconnect::protocol::srt::SrtConnector;
    ///
    /// let connector = SrtConnector::new();
    /// let retry = BackoffRetryLayer::new(FixedBackoff::new(Duration::from_secs(30)))
    ///     .probe(connector.probe())
    ///     .probe_interval(Duration::from_millis(500));
    /// # drop(retry);
    /// ```
    pub fn probe<T, P>(mut self, probe: P) -> Self
    where
        T: 'static,
        P: Probe<T>,
    {
        self.policy_mut().probe = Some(any_probe(probe));
        self
    }

    /// The same, with a probe already made into the layer's own type.
    pub(crate) fn with_any_probe(mut self, probe: AnyProbe) -> Self {
        self.policy_mut().probe = Some(probe);
        self
    }

    /// How often to probe while waiting (default 1 s; each wait jittered between half
    /// and all of it, so a fleet's probes spread out and a stream is back within one
    /// interval of its server). Zero is taken as 1 ms.
    pub fn probe_interval(mut self, interval: Duration) -> Self {
        self.policy_mut().probe_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// After a connect has been failing this long (5 s by default; measured from its
    /// first attempt), attempt only when a probe is answered; `None` never does, and
    /// every delay ends in an attempt. Zero probes before every retry.
    ///
    /// The attempts before it cover the end of a short cut the way a long handshake
    /// does (an SRT attempt resends its handshake every 100 ms until it times out), so
    /// a 5 s cut is found as soon as it ends; after it, a dead server is sent probes
    /// only. Without a probe for the target it has no effect.
    pub fn probe_first_after(mut self, after: Option<Duration>) -> Self {
        self.policy_mut().probe_first_after = after;
        self
    }

    /// Call `callback` after every probe.
    pub fn on_probe<F>(mut self, callback: F) -> Self
    where
        F: Fn(&Probed) + Send + Sync + 'static,
    {
        self.policy_mut().on_probe.push(Arc::new(callback));
        self
    }

    /// Start the backoff afresh only after a connection that stayed up at least this
    /// long. The first attempt of a connect is always at once; when the connection
    /// before it died sooner than `stable_after` (a flapping link), the delays after a
    /// failed attempt carry on up the ladder from where the last connect left them,
    /// instead of starting at the initial delay every time. Without it (the default),
    /// every connect starts the backoff afresh.
    ///
    /// How long a connection stayed up is measured from the connect that made it to
    /// the connect that replaces it.
    pub fn stable_after(mut self, stable_after: Duration) -> Self {
        self.policy_mut().stable_after = Some(stable_after);
        self
    }

    /// Call `callback` when a connect starts the backoff afresh because the connection
    /// before it stayed up at least [`stable_after`](Self::stable_after); it is told how
    /// long that connection stayed up.
    pub fn on_backoff_reset<F>(mut self, callback: F) -> Self
    where
        F: Fn(Duration) + Send + Sync + 'static,
    {
        self.policy_mut().on_reset.push(Arc::new(callback));
        self
    }
}

impl<S, B: Backoff + Clone> Layer<S> for BackoffRetryLayer<B> {
    type Service = BackoffRetry<S, B>;

    fn layer(&self, inner: S) -> Self::Service {
        BackoffRetry::new(inner, self.rules.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::ExponentialBackoff;

    struct Silent;

    impl RetryReport for Silent {
        fn attempted(&self, _: &Attempt) {}
        fn probed(&self, _: &Probed) {}
        fn backoff_reset(&self, _: Duration) {}
    }

    #[test]
    fn a_stream_told_of_its_reporter_keeps_sharing_the_policy() {
        let shared = BackoffRetryLayer::new(ExponentialBackoff::default()).max_retries(7);
        let stream = shared.clone().report_to(Arc::new(Silent));
        assert!(Arc::ptr_eq(&shared.rules.policy, &stream.rules.policy));
        let service = stream.layer(());
        assert!(service.policy_shared_with(&shared));
        // Changing a clone's policy copies it; the others keep theirs.
        let other = stream.max_retries(1);
        assert!(!Arc::ptr_eq(&shared.rules.policy, &other.rules.policy));
        assert_eq!(shared.rules.max_retries, 7);
    }
}
