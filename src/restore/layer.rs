use std::sync::Arc;
use std::time::Duration;

use tower_layer::Layer;

use super::throttle::StoreErrors;
use super::{StateRestore, StateStorage};

/// Loads saved state before connecting, restores it on the connection, saves it as it
/// changes. See the [module docs](super).
#[derive(Clone)]
#[must_use]
pub struct StateRestoreLayer {
    pub(crate) storage: Option<Arc<dyn StateStorage>>,
    pub(crate) save_interval: Duration,
    pub(crate) errors: Arc<StoreErrors>,
}

impl std::fmt::Debug for StateRestoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRestoreLayer")
            .field("enabled", &self.storage.is_some())
            .field("save_interval", &self.save_interval)
            .field("errors", &self.errors.count())
            .finish()
    }
}

impl StateRestoreLayer {
    /// Keep state in `storage`, saving at most once a second while packets flow.
    pub fn new(storage: Arc<dyn StateStorage>) -> Self {
        Self {
            storage: Some(storage),
            save_interval: Duration::from_secs(1),
            errors: Arc::default(),
        }
    }

    /// A layer that neither loads nor saves (for `persist_state: false`), so a stack's
    /// type does not change with the setting.
    pub fn disabled() -> Self {
        Self {
            storage: None,
            save_interval: Duration::from_secs(1),
            errors: Arc::default(),
        }
    }

    /// Save at most this often while packets flow.
    pub fn save_interval(mut self, interval: Duration) -> Self {
        self.save_interval = interval;
        self
    }

    /// How many load and save errors the store has given so far.
    pub fn error_count(&self) -> u64 {
        self.errors.count()
    }
}

impl<S> Layer<S> for StateRestoreLayer {
    type Service = StateRestore<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StateRestore::new(inner, self.clone())
    }
}
