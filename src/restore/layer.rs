use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use tower_layer::Layer;

use super::throttle::StoreErrors;
use super::{StateRestore, StateStorage};
use crate::connection::ConnectionState;

/// How long a state kept in memory may be restored unless told
/// ([`StateRestoreLayer::state_ttl`]).
const DEFAULT_STATE_TTL: Duration = Duration::from_secs(3600);

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
    /// How long a kept state may be restored after its last activity.
    ttl: Duration,
    pub(crate) errors: Arc<StoreErrors>,
    /// The newest state this layer's connections saved or began to save: the next
    /// connect of that stream starts from it when the store has nothing newer, so a
    /// store that is slow or down loses nothing across a reconnect. One state, of the
    /// stream saved last (a layer shared by streams falls back to the store for the
    /// others).
    latest: Mutex<Option<ConnectionState>>,
}

impl Settings {
    /// Keep `state` as the newest this layer knows.
    pub(crate) fn remember(&self, state: &ConnectionState) {
        let mut latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        match latest.as_mut() {
            Some(kept) => kept.clone_from(state),
            None => *latest = Some(state.clone()),
        }
    }

    /// Of `loaded` (from the store) and the newest state this layer kept for
    /// `stream_id`, the one with the later activity (the kept one on a tie: it is this
    /// process's own). A kept state older than the layer's `state_ttl` is not used.
    pub(crate) fn newest(
        &self,
        stream_id: &str,
        loaded: Option<ConnectionState>,
    ) -> Option<ConnectionState> {
        let latest = self.latest.lock().unwrap_or_else(PoisonError::into_inner);
        let now = SystemTime::now();
        let kept = latest.as_ref().filter(|s| {
            s.stream_id == stream_id
                && now
                    .duration_since(s.last_activity)
                    .map_or(true, |age| age <= self.ttl)
        });
        match (loaded, kept) {
            (Some(loaded), Some(kept)) if loaded.last_activity > kept.last_activity => Some(loaded),
            (_, Some(kept)) => Some(kept.clone()),
            (loaded, None) => loaded,
        }
    }
}

impl std::fmt::Debug for StateRestoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateRestoreLayer")
            .field("enabled", &self.shared.storage.is_some())
            .field("save_interval", &self.shared.save_interval)
            .field("state_ttl", &self.shared.ttl)
            .field("errors", &self.shared.errors.count())
            .finish()
    }
}

impl StateRestoreLayer {
    /// Keep state in `storage`, saving at most once a second while packets flow.
    pub fn new(storage: Arc<dyn StateStorage>) -> Self {
        Self::with(
            Some(storage),
            Duration::from_secs(1),
            DEFAULT_STATE_TTL,
            Arc::default(),
        )
    }

    /// A layer that neither loads nor saves (for `persist_state: false`), so a stack's
    /// type does not change with the setting.
    pub fn disabled() -> Self {
        Self::with(
            None,
            Duration::from_secs(1),
            DEFAULT_STATE_TTL,
            Arc::default(),
        )
    }

    /// Save at most this often while packets flow.
    pub fn save_interval(self, interval: Duration) -> Self {
        let shared = &self.shared;
        Self::with(
            shared.storage.clone(),
            interval,
            shared.ttl,
            Arc::clone(&shared.errors),
        )
    }

    /// How long after its last activity a state this layer kept in memory may still be
    /// restored (default 1 h, as `ReconnectionConfig::state_ttl`). The layer keeps the
    /// newest state its connections saved, so that a reconnect starts from it while the
    /// store is slow or down; give the store's own time to live here, so that the two
    /// agree.
    pub fn state_ttl(self, ttl: Duration) -> Self {
        let shared = &self.shared;
        Self::with(
            shared.storage.clone(),
            shared.save_interval,
            ttl,
            Arc::clone(&shared.errors),
        )
    }

    /// How many load and save errors the store has given so far.
    pub fn error_count(&self) -> u64 {
        self.shared.errors.count()
    }

    fn with(
        storage: Option<Arc<dyn StateStorage>>,
        save_interval: Duration,
        ttl: Duration,
        errors: Arc<StoreErrors>,
    ) -> Self {
        Self {
            shared: Arc::new(Settings {
                storage,
                save_interval,
                ttl,
                errors,
                latest: Mutex::new(None),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::Protocol;
    use crate::restore::MemoryStorage;

    /// A state of `stream_id` last active `ago`, with `mark` as a parameter.
    fn state(stream_id: &str, ago: Duration, mark: &str) -> ConnectionState {
        let mut state = ConnectionState::new(stream_id, Protocol::Udp);
        state.last_activity = SystemTime::now() - ago;
        state.parameters.insert("mark".into(), mark.into());
        state
    }

    fn mark(state: Option<ConnectionState>) -> Option<String> {
        state.and_then(|s| s.parameters.get("mark").cloned())
    }

    #[test]
    fn the_newer_of_the_kept_and_the_stored_state_is_restored() {
        let layer = StateRestoreLayer::new(Arc::new(MemoryStorage::new()))
            .state_ttl(Duration::from_secs(60));
        let settings = &layer.shared;
        let secs = |s| Duration::from_secs(s);
        // Nothing kept: the store's.
        let stored = || Some(state("cam1", secs(10), "stored"));
        assert_eq!(
            mark(settings.newest("cam1", stored())),
            Some("stored".into())
        );
        // Kept, newer than the store's (a save not landed yet): the kept one.
        settings.remember(&state("cam1", secs(5), "kept"));
        assert_eq!(mark(settings.newest("cam1", stored())), Some("kept".into()));
        assert_eq!(mark(settings.newest("cam1", None)), Some("kept".into()));
        // The store's newer (another process owned the stream since): the store's.
        let newer = Some(state("cam1", secs(1), "stored"));
        assert_eq!(mark(settings.newest("cam1", newer)), Some("stored".into()));
        // Another stream's kept state is never used.
        assert_eq!(mark(settings.newest("cam2", None)), None);
        // Older than the time to live: not restored.
        settings.remember(&state("cam1", secs(61), "kept"));
        assert_eq!(mark(settings.newest("cam1", None)), None);
        assert_eq!(
            mark(settings.newest("cam1", stored())),
            Some("stored".into())
        );
    }
}
