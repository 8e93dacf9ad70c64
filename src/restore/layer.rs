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
    /// Shared by the layer's clones, its services and their connections: one pointer
    /// each rather than a copy of every setting.
    pub(crate) shared: Arc<Settings>,
}

/// What a [`StateRestoreLayer`] keeps.
pub(crate) struct Settings {
    pub(crate) storage: Option<Arc<dyn StateStorage>>,
    pub(crate) save_interval: Duration,
    pub(crate) errors: Arc<StoreErrors>,
}

impl std::fmt::Debug for StateRestoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRestoreLayer")
            .field("enabled", &self.shared.storage.is_some())
            .field("save_interval", &self.shared.save_interval)
            .field("errors", &self.shared.errors.count())
            .finish()
    }
}

impl StateRestoreLayer {
    /// Keep state in `storage`, saving at most once a second while packets flow.
    pub fn new(storage: Arc<dyn StateStorage>) -> Self {
        Self::with(Some(storage), Duration::from_secs(1), Arc::default())
    }

    /// A layer that neither loads nor saves (for `persist_state: false`), so a stack's
    /// type does not change with the setting.
    pub fn disabled() -> Self {
        Self::with(None, Duration::from_secs(1), Arc::default())
    }

    /// Save at most this often while packets flow.
    pub fn save_interval(self, interval: Duration) -> Self {
        let shared = &self.shared;
        Self::with(shared.storage.clone(), interval, Arc::clone(&shared.errors))
    }

    /// How many load and save errors the store has given so far.
    pub fn error_count(&self) -> u64 {
        self.shared.errors.count()
    }

    fn with(
        storage: Option<Arc<dyn StateStorage>>,
        save_interval: Duration,
        errors: Arc<StoreErrors>,
    ) -> Self {
        Self {
            shared: Arc::new(Settings {
                storage,
                save_interval,
                errors,
            }),
        }
    }
}

impl<S> Layer<S> for StateRestoreLayer {
    type Service = StateRestore<S>;

    fn layer(&self, inner: S) -> Self::Service {
        StateRestore::new(inner, self.clone())
    }
}
