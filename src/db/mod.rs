//! PostgreSQL access: the pool, migrations, the read-replica router (`replicas`: [`replicas::Db`]) and
//! one store module per table (`users`, `tokens`, `sync`).
//! Store functions return [`StoreError`]; database errors are classified here, in one place.

pub mod migrate;
mod pipeline;
pub mod replicas;
pub mod sync;
pub mod tokens;
pub mod users;

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use deadpool_postgres::{
    ClientWrapper, HookError, Manager, ManagerConfig, Object, PoolError, RecyclingMethod, Runtime,
    tokio_postgres::{self, Row, error::SqlState, types::ToSql},
};
pub use pipeline::Reader;

/// Queries slower than this are logged with their name: well above an indexed lookup here
/// (under 1 ms), well below what a client notices.
pub const SLOW_QUERY: Duration = Duration::from_millis(100);

/// Connections are replaced once this old, at their next recycle: server-side memory held by a
/// long-lived backend is returned and settings changes are picked up.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(5 * 60);

/// The connections to one database: a pool of exclusive ones (transactions, writes, anything
/// longer than a lookup) and, when turned on, a few shared pipelined ones for single-statement
/// reads ([`reader`]). Clones share both. It derefs to the deadpool pool for its status.
#[derive(Clone)]
pub struct Pool {
    pool: deadpool_postgres::Pool,
    pipe: Arc<pipeline::Pipelined>,
}

impl std::ops::Deref for Pool {
    type Target = deadpool_postgres::Pool;

    fn deref(&self) -> &deadpool_postgres::Pool {
        &self.pool
    }
}

impl Pool {
    /// Shared pipelined connections open now (for `/metrics`).
    pub fn pipelined_open(&self) -> usize {
        self.pipe.open()
    }
}

/// A pool of lazily opened connections: nothing connects until the first `get`; no pipelined
/// connections (see [`pool_pipelined`]).
pub fn pool(
    url: &str,
    max_size: usize,
    acquire_timeout: Duration,
    statement_timeout: Duration,
) -> anyhow::Result<Pool> {
    pool_pipelined(url, max_size, acquire_timeout, statement_timeout, 0)
}

/// [`pool`], with `pipelined` shared connections (opened lazily too) for [`reader`].
///
/// `acquire_timeout` bounds both waiting for a free connection and opening a new one, so a
/// dead or hanging server turns into [`StoreError::Unavailable`] instead of a stuck request.
/// `statement_timeout` is set on every connection at start-up, so no query holds a pooled
/// connection forever, nor delays a pipelined one for longer than that.
pub fn pool_pipelined(
    url: &str,
    max_size: usize,
    acquire_timeout: Duration,
    statement_timeout: Duration,
    pipelined: usize,
) -> anyhow::Result<Pool> {
    let mut config: tokio_postgres::Config = url.parse().context("parsing the PostgreSQL URL")?;
    let timeout_option = format!("-c statement_timeout={}", statement_timeout.as_millis());
    let options = match config.get_options() {
        Some(given) => format!("{given} {timeout_option}"),
        None => timeout_option,
    };
    config.options(options);
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(acquire_timeout);
    }
    let pipe = Arc::new(pipeline::Pipelined::new(config.clone(), pipelined, acquire_timeout));
    let manager = Manager::from_config(
        config,
        tokio_postgres::NoTls,
        // Fast: no test query on checkout; a broken connection surfaces as an error on use,
        // is classified `Unavailable`, and deadpool drops it because it is closed.
        ManagerConfig { recycling_method: RecyclingMethod::Fast },
    );
    let pool = deadpool_postgres::Pool::builder(manager)
        .max_size(max_size)
        .wait_timeout(Some(acquire_timeout))
        .create_timeout(Some(acquire_timeout))
        .recycle_timeout(Some(acquire_timeout))
        .runtime(Runtime::Tokio1)
        .pre_recycle(deadpool_postgres::Hook::sync_fn(|_, metrics| {
            if metrics.age() > MAX_CONNECTION_AGE {
                Err(HookError::message("connection reached its maximum age"))
            } else {
                Ok(())
            }
        }))
        .build()
        .context("building the PostgreSQL pool")?;
    Ok(Pool { pool, pipe })
}

/// One round trip to PostgreSQL on a connection of `pool` (for `/health`).
pub async fn ping(pool: &Pool) -> Result<(), StoreError> {
    let client = pool.get().await?;
    client.simple_query("SELECT 1").await?;
    Ok(())
}

/// What a [`StoreError::NotFound`] did not find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    User,
}

/// What a store function can fail with; the HTTP layer maps each variant to one status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No such row, or it is soft-deleted (404).
    #[error("{resource:?} not found")]
    NotFound { resource: Resource },
    /// A unique index rejected the row; `field` names the API field at fault and `message`
    /// says so to the client (409).
    #[error("{field} is already taken")]
    Conflict { field: &'static str, message: &'static str },
    /// The row exists but its version is none of those the request named (its `If-Match`):
    /// another request changed it since the client read it, and nothing was written (412).
    #[error("{resource:?} changed since it was read")]
    Stale { resource: Resource },
    /// The database could not be reached or did not answer in time (answered 500, code
    /// 5000: the contract documents no 503 for these operations). The text is for logs, never
    /// for clients.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bug or a schema mismatch (500). The source carries the details.
    #[error("internal database error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync + 'static>),
}

impl StoreError {
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into().into())
    }
}

/// The API field behind each unique constraint and what the client is told: the one place
/// that knows this mapping. A unique violation of a constraint not listed here is a bug, hence
/// `Internal`.
fn conflict(constraint: &str) -> Option<StoreError> {
    let (field, message) = match constraint {
        "users_username_key" => ("username", "用户名已存在"),
        "users_email_key" => ("email", "邮箱已存在"),
        "api_tokens_name_key" => ("name", "a token with this name exists"),
        "api_tokens_token_hash_key" => ("token", "a token with this value exists"),
        _ => return None,
    };
    Some(StoreError::Conflict { field, message })
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        if let Some(db) = e.as_db_error() {
            let code = db.code();
            if *code == SqlState::UNIQUE_VIOLATION
                && let Some(conflict) = db.constraint().and_then(conflict)
            {
                return conflict;
            }
            // Class 08 is "connection exception"; the others mean the server is going away,
            // overloaded, or our statement_timeout fired: all worth a retry later, not a 500.
            let unavailable = code.code().starts_with("08")
                || [
                    SqlState::ADMIN_SHUTDOWN,
                    SqlState::CRASH_SHUTDOWN,
                    SqlState::CANNOT_CONNECT_NOW,
                    SqlState::TOO_MANY_CONNECTIONS,
                    SqlState::QUERY_CANCELED,
                ]
                .contains(code);
            if unavailable {
                return Self::Unavailable(format!("{} ({})", db.message(), code.code()));
            }
            return Self::Internal(Box::new(e));
        }
        let io_error =
            std::error::Error::source(&e).is_some_and(|source| source.downcast_ref::<std::io::Error>().is_some());
        if e.is_closed() || io_error {
            return Self::Unavailable(format!("{e}"));
        }
        Self::Internal(Box::new(e))
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Timeout(kind) => Self::Unavailable(format!("timed out getting a connection ({kind:?})")),
            PoolError::Backend(e) => e.into(),
            PoolError::Closed => Self::Unavailable("the pool is closed".into()),
            other => Self::Internal(Box::new(other)),
        }
    }
}

/// A pooled connection, with pool errors classified.
pub(crate) async fn conn(pool: &Pool) -> Result<Object, StoreError> {
    checkout(&pool.pool).await
}

async fn checkout(pool: &deadpool_postgres::Pool) -> Result<Object, StoreError> {
    let started = std::time::Instant::now();
    let got = pool.get().await;
    crate::metrics::record_pg_checkout(started.elapsed());
    Ok(got?)
}

/// A connection for one short statement outside a transaction: a shared pipelined one when
/// the pool has them, else an exclusive one from the pool.
pub(crate) async fn reader(pool: &Pool) -> Result<Reader, StoreError> {
    pipeline::reader(&pool.pipe, &pool.pool).await
}

/// Runs one query future, logging it when slower than [`SLOW_QUERY`], in a span of its own
/// when tracing is on. `name` identifies the statement in logs and traces (`users.get`), so no
/// SQL or parameters end up there.
async fn timed<T>(
    name: &'static str,
    query: impl Future<Output = Result<T, tokio_postgres::Error>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = crate::telemetry::in_span(crate::telemetry::sql_span(name), query).await;
    let elapsed = started.elapsed();
    if elapsed >= SLOW_QUERY {
        tracing::warn!(
            query = name,
            elapsed_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            ok = result.is_ok(),
            "slow query"
        );
    }
    Ok(result?)
}

/// All rows of a statement, prepared through the connection's statement cache.
pub(crate) async fn query(
    client: &ClientWrapper,
    name: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    timed(name, async {
        let statement = client.prepare_cached(sql).await?;
        client.query(&statement, params).await
    })
    .await
}

/// At most one row (an error if the statement returns more).
pub(crate) async fn query_opt(
    client: &ClientWrapper,
    name: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    timed(name, async {
        let statement = client.prepare_cached(sql).await?;
        client.query_opt(&statement, params).await
    })
    .await
}

/// The number of rows a statement changed.
pub(crate) async fn execute(
    client: &ClientWrapper,
    name: &'static str,
    sql: &str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<u64, StoreError> {
    timed(name, async {
        let statement = client.prepare_cached(sql).await?;
        client.execute(&statement, params).await
    })
    .await
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::devsvc::test_database;

    #[tokio::test]
    async fn statement_timeout_is_set_and_reported_as_unavailable() {
        let db = test_database().await.unwrap();
        let pool = pool(db.url(), 2, Duration::from_secs(5), Duration::from_millis(50)).unwrap();
        let client = conn(&pool).await.unwrap();
        let err = query(&client, "test.sleep", "SELECT pg_sleep(1)", &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn unreachable_server_is_unavailable() {
        // Nothing listens on a port we just bound and released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        let pool = pool(&url, 2, Duration::from_millis(500), Duration::from_secs(1)).unwrap();
        let err = conn(&pool).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)), "{err:?}");
    }

    #[test]
    fn every_unique_constraint_in_the_schema_has_a_field() {
        // A unique index added without a mapping would turn a 409 into a 500.
        for migration in migrate::MIGRATIONS {
            for line in migration.sql.lines() {
                let line = line.trim();
                let Some(rest) = line.strip_prefix("CREATE UNIQUE INDEX ") else {
                    continue;
                };
                let name = rest.split_whitespace().next().unwrap();
                assert!(conflict(name).is_some(), "{name} has no conflict field");
            }
        }
        assert!(conflict("users_pkey").is_none());
    }
}
