use std::sync::Arc;

use tower_layer::Layer;

use super::{Health, HealthChecker, HealthHandle};

/// Counts packets, errors, loss and latency of every connection of one stream.
///
/// Clones share the same [`HealthChecker`], so the layer and its
/// [`handle`](Self::handle) always see the stream's current connection.
#[derive(Debug, Clone)]
pub struct HealthLayer {
    checker: HealthHandle,
}

impl HealthLayer {
    /// A layer with no expected packet rate: loss is measured from sequence numbers only.
    pub fn new() -> Self {
        Self {
            checker: Arc::new(HealthChecker::new(None)),
        }
    }

    /// A layer that also measures loss for unnumbered packets against an expected
    /// rate, in packets per second.
    pub fn with_expected_rate(packets_per_second: f64) -> Self {
        Self {
            checker: Arc::new(HealthChecker::new(Some(packets_per_second))),
        }
    }

    /// A handle to read the stream's health at any time.
    pub fn handle(&self) -> HealthHandle {
        Arc::clone(&self.checker)
    }
}

impl Default for HealthLayer {
    fn default() -> Self {
        Self::new()
    }
}

impl<S> Layer<S> for HealthLayer {
    type Service = Health<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Health::counting(inner, self.handle())
    }
}
