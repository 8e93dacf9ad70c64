use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::{FailureDetect, FailureDetector, FailureEvent, FailureThresholds, SilenceConfig};

/// Ends a connection's stream with a typed failure when it is judged dead.
///
/// See the [module docs](super) for what it detects.
#[derive(Debug, Clone)]
#[must_use]
pub struct FailureDetectLayer {
    /// Shared with every service the layer makes (and with the layer's clones).
    detector: Arc<FailureDetector>,
}

impl FailureDetectLayer {
    /// A layer judging by `thresholds`, with default silence detection and a 1 s check
    /// interval.
    pub fn new(thresholds: FailureThresholds) -> Self {
        Self {
            detector: Arc::new(FailureDetector::new(thresholds)),
        }
    }

    /// How often the thresholds are checked. Silence is watched continuously.
    /// A zero interval is taken as 1 ms.
    pub fn check_interval(mut self, interval: Duration) -> Self {
        Arc::make_mut(&mut self.detector).check_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The adaptive silence detector's settings.
    pub fn silence(mut self, silence: SilenceConfig) -> Self {
        Arc::make_mut(&mut self.detector).silence = Arc::new(silence);
        self
    }

    /// Call `callback` for every failure detected.
    pub fn on_failure<F>(mut self, callback: F) -> Self
    where
        F: Fn(&FailureEvent) + Send + Sync + 'static,
    {
        Arc::make_mut(&mut self.detector)
            .callbacks
            .push(Arc::new(callback));
        self
    }

    /// The detector this layer configures.
    pub fn detector(&self) -> &FailureDetector {
        &self.detector
    }
}

impl Default for FailureDetectLayer {
    fn default() -> Self {
        Self::new(FailureThresholds::default())
    }
}

impl<S> Layer<S> for FailureDetectLayer {
    type Service = FailureDetect<S>;

    fn layer(&self, inner: S) -> Self::Service {
        FailureDetect::judging(inner, Arc::clone(&self.detector))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_one_detector_until_one_is_changed() {
        let layer = FailureDetectLayer::default().check_interval(Duration::from_millis(250));
        let clone = layer.clone();
        assert!(Arc::ptr_eq(&layer.detector, &clone.detector));
        // Changed after cloning: a copy of its own; the other keeps its settings.
        let changed = clone.check_interval(Duration::from_secs(2));
        assert!(!Arc::ptr_eq(&layer.detector, &changed.detector));
        assert_eq!(
            layer.detector().check_interval(),
            Duration::from_millis(250)
        );
        assert_eq!(changed.detector().check_interval(), Duration::from_secs(2));
    }
}
