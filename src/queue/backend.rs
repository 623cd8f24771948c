//! The Redis connection the queue runs over: a bb8 pool for a single server,
//! or an async cluster connection. Blocking waits (BLPOP on the wake list)
//! get a dedicated connection of their own, never a pooled one. Every call
//! has a deliberate response timeout and is retried while it fails in
//! transit: the scripts are written so that a repeat has the effect of one
//! call, and a late reply must never be read as "it did not run".

use std::fmt;
use std::time::Duration;

use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, ScriptInvocation};
use tokio::time::Instant;

use super::error::{QueueError, Result};
use super::scripts::Invocation;
use crate::redis_pool::{RedisConn, RedisPool};

/// Runs one script call (with its repeats) in a `queue.<script>` span when tracing is on.
fn traced<'a, T>(
    script: &'static str,
    call: impl std::future::Future<Output = Result<T>> + 'a,
) -> impl std::future::Future<Output = Result<T>> + 'a {
    crate::telemetry::in_span(crate::telemetry::script_span(script), call)
}

/// Connection source for a `Queue`: `Backend::from(pool)` (or pass the pool
/// to `Queue::new` directly) or `Backend::cluster(client)`.
#[derive(Clone)]
pub struct Backend(Conn, Tuning);

/// Set by `Queue::new` from its `QueueConfig`.
#[derive(Clone, Copy)]
struct Tuning {
    response_timeout: Duration,
    retry_window: Duration,
    /// `WAIT replicas timeout` after each enqueue; 0 replicas = no WAIT.
    wait_replicas: u32,
    wait_timeout: Duration,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            response_timeout: Duration::from_secs(2),
            retry_window: Duration::from_secs(5),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
        }
    }
}

#[derive(Clone)]
enum Conn {
    /// A single Redis server through a bb8 pool. Broken connections are
    /// replaced by the pool (`redis_pool`: a connection whose call failed in
    /// transit is dropped, and the others are tested at their next checkout),
    /// which is how the queue survives a Redis restart.
    Pool(RedisPool),
    /// Redis Cluster: the connection is multiplexed and reconnects itself;
    /// the client is kept to open blocking connections. Opened at the first
    /// call ([`Backend::cluster_lazy`]) or at once ([`Backend::cluster`]).
    Cluster(std::sync::Arc<(ClusterClient, tokio::sync::OnceCell<ClusterConnection>)>),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Conn::Pool(p) => f.debug_tuple("Pool").field(&p.state()).finish(),
            Conn::Cluster(_) => f.write_str("Cluster"),
        }
    }
}

impl From<RedisPool> for Backend {
    fn from(p: RedisPool) -> Self {
        Backend(Conn::Pool(p), Tuning::default())
    }
}

impl Backend {
    /// Connects to a Redis Cluster through the given client.
    pub async fn cluster(client: ClusterClient) -> Result<Self> {
        let conn = client.get_async_connection().await?;
        let cell = tokio::sync::OnceCell::new_with(Some(conn));
        Ok(Backend(Conn::Cluster(std::sync::Arc::new((client, cell))), Tuning::default()))
    }

    /// A cluster backend that connects at its first call, so a server starts (and reports on
    /// `/health`) while the cluster is unreachable; a failed connect is tried again by the
    /// next call.
    pub fn cluster_lazy(client: ClusterClient) -> Self {
        Backend(Conn::Cluster(std::sync::Arc::new((client, tokio::sync::OnceCell::new()))), Tuning::default())
    }

    /// The shared cluster connection, connecting it first if no call has yet.
    async fn cluster_conn(c: &(ClusterClient, tokio::sync::OnceCell<ClusterConnection>)) -> Result<ClusterConnection> {
        Ok(c.1.get_or_try_init(|| c.0.get_async_connection()).await?.clone())
    }

    /// The response timeout of every call (on a cluster, the cluster
    /// client's own setting governs the shared connection) and how long a
    /// call failing in transit is retried.
    pub(crate) fn tuned(
        mut self,
        response_timeout: Duration,
        retry_window: Duration,
        wait_replicas: u32,
        wait_timeout: Duration,
    ) -> Self {
        self.1 = Tuning {
            response_timeout: response_timeout.max(Duration::from_millis(1)),
            retry_window,
            wait_replicas,
            wait_timeout,
        };
        self
    }

    /// Like [`Backend::invoke`], then (with `wait_replicas` set) `WAIT n timeout` on the same
    /// connection as the script, so the reply comes only once that many replicas hold the
    /// write: a master failing now cannot take it with it. On a cluster the WAIT goes to the
    /// master owning `tag_key`'s slot, where the script ran (redis-rs would send a keyless
    /// WAIT to every master). Fewer acknowledgements in time are an error: the write may
    /// survive, but it was not made safe.
    pub(crate) async fn invoke_replicated<T: FromRedisValue>(&self, inv: &Invocation<'_>, tag_key: &str) -> Result<T> {
        let (wanted, timeout) = (self.1.wait_replicas, self.1.wait_timeout);
        if wanted == 0 {
            return self.invoke(inv).await;
        }
        traced(inv.name, self.invoke_waited(inv, tag_key, wanted, timeout)).await
    }

    async fn invoke_waited<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
        tag_key: &str,
        wanted: u32,
        timeout: Duration,
    ) -> Result<T> {
        let mut wait = redis::cmd("WAIT");
        wait.arg(wanted).arg(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        self.retrying(|| async {
            let (out, acked): (T, i64) = match &self.0 {
                Conn::Pool(pool) => {
                    let mut conn = pool.get().await?;
                    conn.set_response_timeout(self.1.response_timeout + timeout);
                    let out = inv.invoke_async(&mut *conn).await?;
                    (out, wait.query_async(&mut *conn).await?)
                }
                Conn::Cluster(c) => {
                    use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
                    let mut conn = Self::cluster_conn(c).await?;
                    let out = inv.invoke_async(&mut conn).await?;
                    let route = Route::with_slot(Slot::for_key(tag_key), SlotAddr::Master);
                    let reply = conn
                        .route_command(
                            wait.clone(),
                            RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route)),
                        )
                        .await?;
                    (out, i64::from_redis_value(reply).map_err(redis::RedisError::from)?)
                }
            };
            if acked < i64::from(wanted) {
                return Err(QueueError::NotReplicated { wanted, acked });
            }
            Ok(out)
        })
        .await
    }

    /// EVALSHA, loading the script on NOSCRIPT (handled by `redis::Script`),
    /// retried while it fails in transit.
    pub(crate) async fn invoke<T: FromRedisValue>(&self, inv: &Invocation<'_>) -> Result<T> {
        let call = self.retrying(|| async {
            match &self.0 {
                Conn::Pool(pool) => {
                    let mut conn = pool.get().await?;
                    conn.set_response_timeout(self.1.response_timeout);
                    Ok(inv.invoke_async(&mut *conn).await?)
                }
                Conn::Cluster(c) => Ok(inv.invoke_async(&mut Self::cluster_conn(c).await?).await?),
            }
        });
        traced(inv.name, call).await
    }

    /// One command (all of them idempotent: SADD, SREM, LPUSH of a wake token).
    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.retrying(|| async {
            match &self.0 {
                Conn::Pool(pool) => {
                    let mut conn = pool.get().await?;
                    conn.set_response_timeout(self.1.response_timeout);
                    Ok(cmd.query_async(&mut *conn).await?)
                }
                Conn::Cluster(c) => Ok(cmd.query_async(&mut Self::cluster_conn(c).await?).await?),
            }
        })
        .await
    }

    async fn retrying<T, F, Fut>(&self, mut call: F) -> Result<T>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T>>,
    {
        let deadline = Instant::now() + self.1.retry_window;
        let mut wait = Duration::from_millis(20);
        loop {
            match call().await {
                Err(e) if e.is_transient() && Instant::now() + wait < deadline => {
                    tracing::debug!(error = %e, "redis call failed in transit; repeating it");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_millis(500));
                }
                r => return r,
            }
        }
    }

    /// Opens a connection for blocking commands that wait up to `wait`; its
    /// response timeout is longer than that so the server always answers first.
    pub(crate) async fn blocking(&self, wait: Duration) -> Result<BlockingConn> {
        let timeout = wait + self.1.response_timeout;
        match &self.0 {
            Conn::Pool(pool) => {
                let mut conn = pool.dedicated_connection().await?;
                conn.set_response_timeout(timeout);
                Ok(BlockingConn::Single(conn))
            }
            Conn::Cluster(c) => {
                let config = ClusterConfig::new().set_response_timeout(timeout);
                Ok(BlockingConn::Cluster(c.0.get_async_connection_with_config(config).await?))
            }
        }
    }
}

/// A connection reserved for one blocking waiter.
pub(crate) enum BlockingConn {
    // Not retried on failure: the worker reopens it, and a lost wake token
    // only costs one poll interval.
    Single(RedisConn),
    Cluster(ClusterConnection),
}

impl BlockingConn {
    /// BLPOP `key` for up to `wait`; true if a token was popped.
    pub(crate) async fn blpop(&mut self, key: &str, wait: Duration) -> Result<bool> {
        let mut cmd = redis::cmd("BLPOP");
        cmd.arg(key).arg(wait.as_secs_f64());
        let got: Option<(String, String)> = match self {
            BlockingConn::Single(c) => cmd.query_async(c).await?,
            BlockingConn::Cluster(c) => cmd.query_async(c).await?,
        };
        Ok(got.is_some())
    }
}

/// One `PING` on a connection of `pool`, not repeated: for `/health`, which bounds it with its
/// own timeout and passes a pool of its own, so that a queue pool exhausted by load does not
/// read as Redis being down.
pub async fn ping(pool: &RedisPool) -> Result<()> {
    let mut conn = pool.get().await?;
    let _: String = redis::cmd("PING").query_async(&mut *conn).await?;
    Ok(())
}
