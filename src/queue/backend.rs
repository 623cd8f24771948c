//! The Redis connection the queue runs over: a bb8 pool for a single server,
//! or an async cluster connection. Blocking waits (BLPOP on the wake list)
//! get a dedicated connection of their own, never a pooled one.

use std::fmt;
use std::time::Duration;

use bb8_redis::RedisConnectionManager;
use redis::aio::MultiplexedConnection;
use redis::cluster::{ClusterClient, ClusterConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, ScriptInvocation};

use super::error::Result;

/// Connection source for a `Queue`: `Backend::from(pool)` (or pass the pool
/// to `Queue::new` directly) or `Backend::cluster(client)`.
#[derive(Clone)]
pub struct Backend(Conn);

#[derive(Clone)]
enum Conn {
    /// A single Redis server through a bb8 pool. Broken connections are
    /// replaced by the pool when it tests them on checkout (bb8's default),
    /// which is how the queue survives a Redis restart.
    Pool(bb8::Pool<RedisConnectionManager>),
    /// Redis Cluster: the connection is multiplexed and reconnects itself;
    /// the client is kept to open blocking connections.
    Cluster(Box<(ClusterClient, ClusterConnection)>),
}

impl fmt::Debug for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Conn::Pool(p) => f.debug_tuple("Pool").field(&p.state()).finish(),
            Conn::Cluster(_) => f.write_str("Cluster"),
        }
    }
}

impl From<bb8::Pool<RedisConnectionManager>> for Backend {
    fn from(p: bb8::Pool<RedisConnectionManager>) -> Self {
        Backend(Conn::Pool(p))
    }
}

impl Backend {
    /// Connects to a Redis Cluster through the given client.
    pub async fn cluster(client: ClusterClient) -> Result<Self> {
        let conn = client.get_async_connection().await?;
        Ok(Backend(Conn::Cluster(Box::new((client, conn)))))
    }

    /// EVALSHA, loading the script on NOSCRIPT (handled by `redis::Script`).
    pub(crate) async fn invoke<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T> {
        match &self.0 {
            Conn::Pool(pool) => {
                let mut conn = pool.get().await?;
                Ok(inv.invoke_async(&mut *conn).await?)
            }
            Conn::Cluster(c) => Ok(inv.invoke_async(&mut c.1.clone()).await?),
        }
    }

    pub(crate) async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        match &self.0 {
            Conn::Pool(pool) => {
                let mut conn = pool.get().await?;
                Ok(cmd.query_async(&mut *conn).await?)
            }
            Conn::Cluster(c) => Ok(cmd.query_async(&mut c.1.clone()).await?),
        }
    }

    /// Opens a connection for blocking commands that wait up to `wait`; its
    /// response timeout is longer than that so the server always answers first.
    pub(crate) async fn blocking(&self, wait: Duration) -> Result<BlockingConn> {
        let timeout = wait + Duration::from_secs(2);
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
    Single(MultiplexedConnection),
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
