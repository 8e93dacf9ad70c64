//! The one Redis client the state store and the leases share: lazy, reconnecting,
//! every command bounded in time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Client, FromRedisValue};

/// A Redis URL that cannot be used, or no Tokio runtime to use it from.
///
/// The message never repeats the URL, which may hold a password; to name the URL
/// beside it, show it through [`redact_url`](crate::connection::redact_url).
#[derive(Debug)]
pub struct RedisOpenError {
    message: String,
}

impl RedisOpenError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
        }
    }
}

impl fmt::Display for RedisOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for RedisOpenError {}

/// What [`RedisStorage`] and [`LeaseManager`](super::LeaseManager) share: a client that
/// connects lazily and reconnects by itself, each command bounded in time.
#[derive(Clone)]
pub(crate) struct Redis {
    manager: ConnectionManager,
    endpoint: Arc<str>,
    op_timeout: Duration,
}

impl fmt::Debug for Redis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may hold a password: only the endpoint is shown.
        f.debug_struct("Redis")
            .field("endpoint", &self.endpoint)
            .field("op_timeout", &self.op_timeout)
            .finish_non_exhaustive()
    }
}

/// Why one Redis command did not succeed.
#[derive(Debug)]
pub(crate) enum CommandError {
    /// No answer within the operation timeout.
    TimedOut(Duration),
    /// Redis (or the way to it) answered with an error.
    Failed(::redis::RedisError),
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TimedOut(after) => write!(f, "no answer within {after:?}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for CommandError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::TimedOut(_) => None,
            Self::Failed(e) => Some(e),
        }
    }
}

impl Redis {
    /// A client for `url` that has not connected yet. Must run inside a Tokio runtime.
    pub(crate) fn open(url: &str, op_timeout: Duration) -> Result<Self, RedisOpenError> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(RedisOpenError::new(
                "a Redis store must be opened inside a Tokio runtime",
            ));
        }
        if url.starts_with("rediss://") && !cfg!(feature = "redis-tls") {
            return Err(RedisOpenError::new(
                "rediss:// (Redis over TLS) needs the `redis-tls` feature of mirror-reconnect",
            ));
        }
        let client = Client::open(url)
            .map_err(|e| RedisOpenError::new(format!("invalid Redis URL: {e}")))?;
        let endpoint: Arc<str> = client.get_connection_info().addr().to_string().into();
        // Each connect and each answer is bounded by the operation timeout too, so that
        // a dead Redis fails commands quickly instead of queueing them.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(op_timeout))
            .set_response_timeout(Some(op_timeout))
            .set_number_of_retries(1)
            .set_min_delay(Duration::from_millis(20))
            .set_max_delay(Duration::from_millis(200));
        let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(|e| {
            RedisOpenError::new(format!(
                "cannot set up the Redis client for {endpoint}: {e}"
            ))
        })?;
        Ok(Self {
            manager,
            endpoint,
            op_timeout,
        })
    }

    pub(crate) fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub(crate) fn op_timeout(&self) -> Duration {
        self.op_timeout
    }

    /// Run `cmd`, giving up after the operation timeout.
    pub(crate) async fn query<T: FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
    ) -> Result<T, CommandError> {
        self.query_within(cmd, self.op_timeout).await
    }

    /// Run `cmd`, giving up after `timeout`.
    pub(crate) async fn query_within<T: FromRedisValue>(
        &self,
        cmd: &::redis::Cmd,
        timeout: Duration,
    ) -> Result<T, CommandError> {
        let mut conn = self.manager.clone();
        match tokio::time::timeout(timeout, cmd.query_async::<T>(&mut conn)).await {
            Ok(result) => result.map_err(CommandError::Failed),
            Err(_) => Err(CommandError::TimedOut(timeout)),
        }
    }

    /// Run a Lua script, giving up after `timeout`.
    pub(crate) async fn script<T: FromRedisValue>(
        &self,
        invocation: &::redis::ScriptInvocation<'_>,
        timeout: Duration,
    ) -> Result<T, CommandError> {
        let mut conn = self.manager.clone();
        match tokio::time::timeout(timeout, invocation.invoke_async::<T>(&mut conn)).await {
            Ok(result) => result.map_err(CommandError::Failed),
            Err(_) => Err(CommandError::TimedOut(timeout)),
        }
    }
}
