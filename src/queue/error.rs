//! The queue's error type. It is `Clone` because one failed batched script
//! call is reported to every producer whose item was in the batch.

use std::sync::Arc;

/// Everything a queue operation can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// Redis refused or failed a command (also: connection lost mid-call).
    #[error("redis command failed")]
    Redis(#[source] Arc<redis::RedisError>),
    /// No pooled connection could be obtained within the pool's timeout.
    #[error("timed out waiting for a redis connection from the pool")]
    PoolTimeout,
    /// A script replied with something the client does not understand; this
    /// means the scripts and this code disagree (a bug), not a user error.
    #[error("unexpected reply from queue script `{script}`: {detail}")]
    Protocol { script: &'static str, detail: String },
    /// The task could not be serialized for storage.
    #[error("could not encode the task")]
    Encode(#[source] Arc<serde_json::Error>),
    /// The task is not valid (e.g. an empty kind).
    #[error("invalid task: {0}")]
    Invalid(&'static str),
    /// `WAIT` (`QueueConfig::wait_replicas`) saw fewer replicas acknowledge the write in time.
    #[error("the write reached {acked} of the {wanted} replicas required within the WAIT timeout")]
    NotReplicated { wanted: u32, acked: i64 },
    /// The queue's background batcher has stopped (runtime shutting down).
    #[error("the queue's background batcher has stopped")]
    Closed,
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        QueueError::Redis(Arc::new(e))
    }
}

impl From<bb8::RunError<redis::RedisError>> for QueueError {
    fn from(e: bb8::RunError<redis::RedisError>) -> Self {
        match e {
            bb8::RunError::User(e) => e.into(),
            bb8::RunError::TimedOut => QueueError::PoolTimeout,
        }
    }
}

impl QueueError {
    /// The call may not have reached Redis, or its reply may have been lost:
    /// repeating it is right (every queue call is safe to repeat).
    pub fn is_transient(&self) -> bool {
        match self {
            QueueError::PoolTimeout => true,
            QueueError::Redis(e) => {
                e.is_timeout()
                    || e.is_io_error()
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || matches!(
                        e.retry_method(),
                        redis::RetryMethod::WaitAndRetry
                            | redis::RetryMethod::Reconnect
                            | redis::RetryMethod::ReconnectFromInitialConnections
                            | redis::RetryMethod::RetryImmediately
                    )
            }
            _ => false,
        }
    }

    pub(crate) fn protocol(script: &'static str, detail: impl Into<String>) -> Self {
        QueueError::Protocol { script, detail: detail.into() }
    }
}

/// Shorthand used throughout the queue.
pub type Result<T, E = QueueError> = std::result::Result<T, E>;
