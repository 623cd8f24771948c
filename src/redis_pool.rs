//! The Redis connection pool every part of the service uses: bb8 over multiplexed connections,
//! tested with a `PING` on checkout only after some call saw a connection fail, instead of on
//! every checkout (bb8-redis's manager pays a round trip per checkout and never reports a
//! connection broken, so its `PING` is the only thing that replaces connections after a Redis
//! restart).
//!
//! With `REDIS_URL=redis+cluster://…` ([`RedisTarget::Cluster`]) the pool lends clones of one
//! shared async cluster connection instead: it routes each command to the master owning its
//! key's slot, follows MOVED/ASK and reconnects to nodes itself, so there is nothing for the pool
//! to test or replace, and a clone costs no socket.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::{Client, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};

/// What `REDIS_URL` names: one server, or a Redis Cluster given by seed nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedisTarget {
    Single(String),
    /// `redis://[user:pass@]host:port` of each seed node; the others are discovered.
    Cluster(Vec<String>),
}

impl RedisTarget {
    /// `redis://…` (one server) or `redis+cluster://[user:pass@]h1:p1,h2:p2[/]` (a cluster: the
    /// credentials apply to every node, which is how Redis Cluster ACLs are set up).
    pub fn parse(url: &str) -> anyhow::Result<RedisTarget> {
        let Some(rest) = url.strip_prefix("redis+cluster://") else {
            if url.starts_with("rediss+cluster://") {
                anyhow::bail!("rediss+cluster:// (TLS) is not supported by this build; use redis+cluster://");
            }
            return Ok(RedisTarget::Single(url.to_owned()));
        };
        let rest = rest.trim_end_matches('/');
        let (auth, hosts) = match rest.rsplit_once('@') {
            Some((auth, hosts)) => (format!("{auth}@"), hosts),
            None => (String::new(), rest),
        };
        let seeds: Vec<String> =
            hosts.split(',').map(str::trim).filter(|h| !h.is_empty()).map(|h| format!("redis://{auth}{h}/")).collect();
        if seeds.is_empty() {
            anyhow::bail!(
                "REDIS_URL redis+cluster:// names no node (expected redis+cluster://host1:port1,host2:port2)"
            );
        }
        for seed in &seeds {
            seed.as_str().into_connection_info().map_err(|e| anyhow::anyhow!("REDIS_URL seed node: {e}"))?;
        }
        Ok(RedisTarget::Cluster(seeds))
    }

    /// A cluster client over the seeds: responses wait up to `response_timeout`, and with
    /// `push` (RESP3) pub/sub messages and disconnections arrive on it.
    pub fn cluster_client(
        seeds: &[String],
        response_timeout: Duration,
        push: Option<tokio::sync::mpsc::UnboundedSender<redis::PushInfo>>,
    ) -> RedisResult<ClusterClient> {
        let mut b = ClusterClientBuilder::new(seeds.to_vec()).response_timeout(response_timeout);
        if let Some(tx) = push {
            b = b.use_protocol(redis::ProtocolVersion::RESP3).push_sender(tx);
        }
        b.build()
    }
}

/// The pool type: `bb8::Pool::builder()…build(RedisManager::new(url)?)`.
pub type RedisPool = bb8::Pool<RedisManager>;

/// Opens multiplexed connections and decides when one must be tested or dropped.
///
/// Every connection remembers the pool's failure epoch as of its last successful test. A
/// call failing in transit (I/O, a dropped connection, a response timeout, a garbled reply)
/// marks its connection broken, so bb8 drops it when it is returned, and advances the epoch,
/// so every other connection is `PING`ed at its next checkout: after a Redis restart all of
/// them are stale at once, and they are replaced as the per-checkout `PING` used to replace
/// them. While nothing fails, a checkout costs no round trip.
#[derive(Clone)]
pub struct RedisManager {
    source: Source,
    epoch: Arc<AtomicU64>,
}

#[derive(Clone)]
enum Source {
    Single(Client),
    /// The shared connection is opened at the first checkout (the pool is built lazily) and
    /// kept: a failed first connect leaves the cell empty, so the next checkout tries again.
    Cluster(Arc<(ClusterClient, tokio::sync::OnceCell<ClusterConnection>)>),
}

impl std::fmt::Debug for RedisManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.source {
            Source::Single(_) => "RedisManager(single)",
            Source::Cluster(_) => "RedisManager(cluster)",
        })
    }
}

impl RedisManager {
    /// See `redis::Client::open` for the accepted forms of `info`.
    pub fn new<T: IntoConnectionInfo>(info: T) -> RedisResult<Self> {
        Ok(RedisManager {
            source: Source::Single(Client::open(info.into_connection_info()?)?),
            epoch: Arc::new(AtomicU64::new(0)),
        })
    }

    /// For either kind of target. A cluster's calls wait `response_timeout` for a reply (its
    /// connection is shared, so [`RedisConn::set_response_timeout`] cannot change it per call).
    pub fn for_target(target: &RedisTarget, response_timeout: Duration) -> RedisResult<Self> {
        match target {
            RedisTarget::Single(url) => Self::new(url.as_str()),
            RedisTarget::Cluster(seeds) => Ok(RedisManager {
                source: Source::Cluster(Arc::new((
                    RedisTarget::cluster_client(seeds, response_timeout, None)?,
                    tokio::sync::OnceCell::new(),
                ))),
                epoch: Arc::new(AtomicU64::new(0)),
            }),
        }
    }
}

enum Inner {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// A pooled connection: the multiplexed connection, and what the pool knows about its health.
pub struct RedisConn {
    inner: Inner,
    /// The pool's failure epoch when this connection was opened or last answered a `PING`.
    checked: u64,
    /// A call on this connection failed in transit: bb8 drops it instead of lending it again.
    broken: bool,
    epoch: Arc<AtomicU64>,
}

impl RedisConn {
    /// How long a call waits for its reply before it fails (kept for the connection's life).
    /// On a cluster the shared connection's timeout (`REDIS_RESPONSE_TIMEOUT_MS`) stays.
    pub fn set_response_timeout(&mut self, timeout: Duration) {
        if let Inner::Single(c) = &mut self.inner {
            c.set_response_timeout(timeout);
        }
    }

    /// `CONFIG GET name` on every node: `[("", value)]` for one server, `(address, value)` for
    /// each master of a cluster (redis-rs fans out only to nodes it holds connections to,
    /// which without `read_from_replicas` are the masters).
    pub async fn config_get_everywhere(&mut self, name: &str) -> RedisResult<Vec<(String, String)>> {
        let mut cmd = redis::cmd("CONFIG");
        cmd.arg("GET").arg(name);
        let value_of = |pair: Vec<String>| pair.get(1).cloned().unwrap_or_default();
        match &mut self.inner {
            Inner::Single(c) => Ok(vec![(String::new(), value_of(cmd.query_async(c).await?))]),
            Inner::Cluster(c) => {
                use redis::cluster_routing::{MultipleNodeRoutingInfo, RoutingInfo};
                let reply =
                    c.route_command(cmd, RoutingInfo::MultiNode((MultipleNodeRoutingInfo::AllMasters, None))).await?;
                let per_node: Vec<(String, Vec<String>)> = redis::from_redis_value(reply)?;
                Ok(per_node.into_iter().map(|(node, pair)| (node, value_of(pair))).collect())
            }
        }
    }

    /// PUBLISH `payload` on `channel`, or SPUBLISH on a cluster: a sharded channel lives on
    /// the one shard owning its slot instead of being broadcast over the cluster bus to every
    /// node, and subscribers ([`crate::pubsub::follow`]) SSUBSCRIBE there. A cluster older
    /// than Redis 7 has no SPUBLISH; then plain PUBLISH, which its subscribers fall back to
    /// likewise.
    pub async fn publish(&mut self, channel: &str, payload: &str) -> RedisResult<i64> {
        if matches!(self.inner, Inner::Cluster(_)) {
            match redis::cmd("SPUBLISH").arg(channel).arg(payload).query_async(self).await {
                Err(e) if crate::pubsub::is_unknown_command(&e) => {}
                r => return r,
            }
        }
        redis::cmd("PUBLISH").arg(channel).arg(payload).query_async(self).await
    }

    /// Records a failed call: one that failed in transit makes the connection broken and every
    /// other one suspect. An error reply from the server (NOSCRIPT, WRONGTYPE…) says nothing
    /// about the connection.
    fn saw(&mut self, e: &RedisError) {
        if matches!(e.kind(), ErrorKind::Io | ErrorKind::Client | ErrorKind::Parse) {
            self.broken = true;
            self.epoch.fetch_add(1, Ordering::AcqRel);
        }
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let r = match &mut self.inner {
                Inner::Single(c) => c.req_packed_command(cmd).await,
                Inner::Cluster(c) => c.req_packed_command(cmd).await,
            };
            if let Err(e) = &r {
                self.saw(e);
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let r = match &mut self.inner {
                Inner::Single(c) => c.req_packed_commands(pipeline, offset, count).await,
                Inner::Cluster(c) => c.req_packed_commands(pipeline, offset, count).await,
            };
            if let Err(e) = &r {
                self.saw(e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Inner::Single(c) => c.get_db(),
            Inner::Cluster(c) => c.get_db(),
        }
    }
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<RedisConn, RedisError> {
        // Read before connecting: a failure reported meanwhile leaves this one suspect too.
        let checked = self.epoch.load(Ordering::Acquire);
        let inner = match &self.source {
            Source::Single(client) => Inner::Single(client.get_multiplexed_async_connection().await?),
            Source::Cluster(c) => Inner::Cluster(c.1.get_or_try_init(|| c.0.get_async_connection()).await?.clone()),
        };
        Ok(RedisConn { inner, checked, broken: false, epoch: self.epoch.clone() })
    }

    async fn is_valid(&self, conn: &mut RedisConn) -> Result<(), RedisError> {
        if matches!(conn.inner, Inner::Cluster(_)) {
            return Ok(());
        }
        let now = self.epoch.load(Ordering::Acquire);
        if conn.checked == now {
            return Ok(());
        }
        let pong: String = redis::cmd("PING").query_async(conn).await?;
        if pong != "PONG" {
            return Err((ErrorKind::UnexpectedReturnType, "PING answered", pong).into());
        }
        conn.checked = now;
        Ok(())
    }

    fn has_broken(&self, conn: &mut RedisConn) -> bool {
        // A cluster connection repairs itself; dropping a clone would repair nothing.
        conn.broken && matches!(conn.inner, Inner::Single(_))
    }
}

#[cfg(test)]
mod tests {
    use super::RedisTarget;

    #[test]
    fn redis_url_names_one_server_or_cluster_seeds() {
        assert_eq!(RedisTarget::parse("redis://h:1/0").unwrap(), RedisTarget::Single("redis://h:1/0".into()));
        assert_eq!(
            RedisTarget::parse("redis+cluster://a:1, b:2,/").unwrap(),
            RedisTarget::Cluster(vec!["redis://a:1/".into(), "redis://b:2/".into()])
        );
        assert_eq!(
            RedisTarget::parse("redis+cluster://u:p@a:1,b:2").unwrap(),
            RedisTarget::Cluster(vec!["redis://u:p@a:1/".into(), "redis://u:p@b:2/".into()])
        );
        assert!(RedisTarget::parse("redis+cluster://").is_err());
        assert!(RedisTarget::parse("rediss+cluster://a:1").is_err());
    }
}
