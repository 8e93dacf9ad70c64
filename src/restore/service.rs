use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_core::Stream;
use tokio::time::Instant;
use tower::ServiceExt;
use tower_service::Service;

use super::layer::Settings;
use super::throttle::StoreErrors;
use super::{StateRestoreLayer, StorageError, StorageErrorKind};
use crate::connection::metric_names as names;
use crate::connection::{
    Connection, ConnectionError, ConnectionState, HealthHandle, Packet, StreamTarget,
};
use crate::error::{BoxError, ConnectError, ConnectErrorKind};

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The service [`StateRestoreLayer`] makes.
#[derive(Debug, Clone)]
pub struct StateRestore<S> {
    inner: S,
    config: StateRestoreLayer,
}

impl<S> StateRestore<S> {
    pub(crate) fn new(inner: S, config: StateRestoreLayer) -> Self {
        Self { inner, config }
    }

    crate::macros::inner_service_accessors!();
}

fn storage_error(errors: &StoreErrors, op: &'static str, error: &StorageError) {
    errors.count.fetch_add(1, Ordering::Relaxed);
    // Every error is counted; a store that stays down is said at once, then every
    // 30 s, not once per save.
    if let Some(left_out) = errors.warnings.check() {
        tracing::warn!(
            stream_id = error.stream_id(),
            op,
            kind = error.kind().as_str(),
            left_out,
            "state store failed; media goes on: {error}"
        );
    }
    metrics::counter!(
        names::STATE_STORE_ERRORS,
        "stream_id" => error.stream_id().to_owned(),
        "op" => op,
        "kind" => error.kind().as_str()
    )
    .increment(1);
}

/// The store answered: a trouble that was warned of is over, and the next one is
/// warned of at once.
fn storage_answered(errors: &StoreErrors, stream_id: &str) {
    if errors.warnings.reset() {
        tracing::warn!(stream_id, "state store answers again");
    }
}

impl<S, T> Service<T> for StateRestore<S>
where
    S: Service<T> + Clone + Send + 'static,
    S::Response: Connection,
    S::Error: Into<BoxError>,
    S::Future: Send + 'static,
    T: StreamTarget,
{
    type Response = Restored<S::Response>;
    type Error = BoxError;
    type Future = BoxFuture<Result<Self::Response, BoxError>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, target: T) -> Self::Future {
        // The readied service connects once the load is done; a clone of it connects
        // again if the saved state turns out to make the target invalid.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone.clone());
        let config = self.config.clone();
        Box::pin(async move {
            let saved = match &config.shared.storage {
                Some(storage) => match storage.load(target.stream_id()).await {
                    Ok(saved) => {
                        storage_answered(&config.shared.errors, target.stream_id());
                        saved
                    }
                    Err(error) => {
                        storage_error(&config.shared.errors, "load", &error);
                        None
                    }
                },
                None => None,
            };
            // A save the store has not finished (a slow or unreachable store) must not
            // take the stream back to an older state.
            let saved = match &config.shared.storage {
                Some(_) => config.shared.newest(target.stream_id(), saved),
                None => saved,
            };
            let Some(saved) = saved else {
                let conn = inner.call(target).await.map_err(Into::into)?;
                return Ok(Restored::new(conn, config));
            };
            tracing::debug!(stream_id = target.stream_id(), "restoring saved state");
            let mut restored = target.clone();
            restored.apply_state(&saved);
            match inner.call(restored).await.map_err(Into::into) {
                Ok(mut conn) => {
                    conn.restore(&saved);
                    Ok(Restored::new(conn, config))
                }
                Err(error) if is_invalid_target(&error) => {
                    // Stored state must never end a stream for good: what the saved
                    // document added is dropped, and the configured target is used.
                    let mut again = clone;
                    let configured: Result<S::Response, BoxError> = async {
                        let ready = again.ready().await.map_err(Into::into)?;
                        ready.call(target.clone()).await.map_err(Into::into)
                    }
                    .await;
                    if configured.as_ref().is_err_and(is_invalid_target) {
                        // Invalid as configured, too: that is what to report.
                        return configured.map(|conn| Restored::new(conn, config));
                    }
                    let ignored = StorageError::new(
                        StorageErrorKind::Invalid,
                        target.stream_id(),
                        "the saved state makes the target invalid; ignored it and used the configured target",
                    )
                    .with_source(error);
                    storage_error(&config.shared.errors, "load", &ignored);
                    Ok(Restored::new(configured?, config))
                }
                Err(error) => Err(error),
            }
        })
    }
}

/// Whether a connect failed because its target is invalid.
fn is_invalid_target(error: &BoxError) -> bool {
    error
        .downcast_ref::<ConnectError>()
        .is_some_and(|e| e.kind() == ConnectErrorKind::InvalidTarget)
}

/// The last save, and the item to pass on once it is done.
type FinalSave<I> = (BoxFuture<()>, Option<I>);

/// A connection whose state is saved as it changes.
pub struct Restored<C: Connection> {
    inner: C,
    settings: Arc<Settings>,
    next_save: Instant,
    saving: Option<BoxFuture<()>>,
    /// The last save, which the end of the stream waits for (boxed: it is needed once,
    /// at the end, and would make every connection larger).
    final_save: Option<Box<FinalSave<<Self as Stream>::Item>>>,
    ended: bool,
}

impl<C: Connection> std::fmt::Debug for Restored<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("save_interval", &self.settings.save_interval)
            .field("saving", &self.saving.is_some())
            .finish_non_exhaustive()
    }
}

impl<C: Connection> Restored<C> {
    fn new(conn: C, config: StateRestoreLayer) -> Self {
        let mut this = Self {
            inner: conn,
            settings: config.shared,
            next_save: Instant::now(),
            saving: None,
            final_save: None,
            ended: false,
        };
        // The first save records the connection as it started.
        this.start_save();
        this
    }

    /// The wrapped connection.
    pub fn get_ref(&self) -> &C {
        &self.inner
    }

    /// The wrapped connection, mutably.
    pub fn get_mut(&mut self) -> &mut C {
        &mut self.inner
    }

    fn save_future(&self) -> Option<BoxFuture<()>> {
        let storage = Arc::clone(self.settings.storage.as_ref()?);
        let errors = Arc::clone(&self.settings.errors);
        let state = self.inner.state();
        self.settings.remember(&state);
        Some(Box::pin(async move {
            match storage.save(&state).await {
                Ok(()) => storage_answered(&errors, &state.stream_id),
                Err(error) => storage_error(&errors, "save", &error),
            }
        }))
    }

    fn start_save(&mut self) {
        self.next_save = Instant::now() + self.settings.save_interval;
        self.saving = self.save_future();
    }

    /// Save one last time, detached, so that the state survives this wrapper.
    fn final_save(&mut self) {
        if self.ended {
            return;
        }
        self.ended = true;
        if let (Some(save), Ok(handle)) =
            (self.save_future(), tokio::runtime::Handle::try_current())
        {
            handle.spawn(save);
        }
    }

    /// Save the state before handing on `item`, so that the next connection starts
    /// from it: the stream ends with it (`end`), or the connection is suspected and may
    /// be replaced at once. The wait is bounded; a store that does not answer in time
    /// is logged like any store error.
    fn save_then(&mut self, item: Option<<Self as Stream>::Item>, end: bool) {
        self.ended = end;
        let Some(save) = self.save_future() else {
            self.final_save = Some(Box::new((Box::pin(std::future::ready(())), item)));
            return;
        };
        let earlier = self.saving.take();
        let stream_id = self.inner.state().stream_id;
        let errors = Arc::clone(&self.settings.errors);
        let last: BoxFuture<()> = Box::pin(async move {
            if let Some(earlier) = earlier {
                earlier.await;
            }
            save.await;
        });
        // On a runtime the save is a task of its own: one not done within the wait
        // goes on and still reaches the store; the next connect starts from the state
        // it carries all the same (`Settings::newest`).
        let (last, detached): (BoxFuture<()>, bool) = match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                let task = handle.spawn(last);
                (
                    Box::pin(async move {
                        let _ = task.await;
                    }),
                    true,
                )
            }
            Err(_) => (last, false),
        };
        let bounded = async move {
            if tokio::time::timeout(FINAL_SAVE_TIMEOUT, last)
                .await
                .is_err()
            {
                let going_on = if detached {
                    "; it goes on in the background"
                } else {
                    ""
                };
                let error = StorageError::new(
                    StorageErrorKind::Unavailable,
                    stream_id,
                    format!("final save took longer than {FINAL_SAVE_TIMEOUT:?}{going_on}"),
                );
                storage_error(&errors, "save", &error);
            }
        };
        self.final_save = Some(Box::new((Box::pin(bounded), item)));
    }
}

/// How long the end of a stream waits for its last save.
const FINAL_SAVE_TIMEOUT: Duration = Duration::from_secs(1);

impl<C: Connection> Drop for Restored<C> {
    fn drop(&mut self) {
        // Dropped mid-stream (cancelled, replaced): keep what it knew.
        self.final_save();
    }
}

impl<C: Connection> Stream for Restored<C> {
    type Item = Result<Packet, ConnectionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if let Some(pending) = &mut this.final_save {
            std::task::ready!(pending.0.as_mut().poll(cx));
            let (_, item) = *this.final_save.take().expect("checked above");
            return Poll::Ready(item);
        }
        if this.ended {
            return Poll::Ready(None);
        }
        if let Some(saving) = &mut this.saving {
            if saving.as_mut().poll(cx).is_ready() {
                this.saving = None;
            }
        }
        let item = std::task::ready!(Pin::new(&mut this.inner).poll_next(cx));
        match &item {
            Some(Ok(packet)) => {
                if this.saving.is_none() && packet.arrival >= this.next_save {
                    this.start_save();
                    if let Some(saving) = &mut this.saving {
                        if saving.as_mut().poll(cx).is_ready() {
                            this.saving = None;
                        }
                    }
                }
                Poll::Ready(item)
            }
            Some(Err(ConnectionError::Suspected(_))) => {
                // The driver may drop this connection for its replacement next.
                this.save_then(item, false);
                self.poll_next(cx)
            }
            Some(Err(e)) if !e.is_fatal() => Poll::Ready(item),
            _ => {
                this.save_then(item, true);
                self.poll_next(cx)
            }
        }
    }
}

impl<C: Connection> Connection for Restored<C> {
    fn state(&self) -> ConnectionState {
        self.inner.state()
    }

    fn restore(&mut self, state: &ConnectionState) {
        self.inner.restore(state);
    }

    fn rtt(&self) -> Option<Duration> {
        self.inner.rtt()
    }

    fn health(&self) -> Option<HealthHandle> {
        self.inner.health()
    }

    /// Save the state the connection stops with, and wait (at most 1 s) for that save, so
    /// that a program stopping cleanly knows its stream's state is stored before it
    /// releases the stream or exits.
    fn poll_close(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.ended {
            self.save_then(None, true);
        }
        if let Some(pending) = &mut self.final_save {
            std::task::ready!(pending.0.as_mut().poll(cx));
            self.final_save = None;
        }
        self.inner.poll_close(cx)
    }
}
