//! The Redis connection pool every part of the service uses: bb8 over multiplexed connections,
//! tested with a `PING` on checkout only after some call saw a connection fail, instead of on
//! every checkout (bb8-redis's manager pays a round trip per checkout and never reports a
//! connection broken, so its `PING` is the only thing that replaces connections after a Redis
//! restart).

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};
use std::time::Duration;

use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{Client, Cmd, ErrorKind, IntoConnectionInfo, Pipeline, RedisError, RedisFuture, RedisResult, Value};

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
#[derive(Debug, Clone)]
pub struct RedisManager {
    client: Client,
    epoch: Arc<AtomicU64>,
}

impl RedisManager {
    /// See `redis::Client::open` for the accepted forms of `info`.
    pub fn new<T: IntoConnectionInfo>(info: T) -> RedisResult<Self> {
        Ok(RedisManager { client: Client::open(info.into_connection_info()?)?, epoch: Arc::new(AtomicU64::new(0)) })
    }
}

/// A pooled connection: the multiplexed connection, and what the pool knows about its health.
pub struct RedisConn {
    inner: MultiplexedConnection,
    /// The pool's failure epoch when this connection was opened or last answered a `PING`.
    checked: u64,
    /// A call on this connection failed in transit: bb8 drops it instead of lending it again.
    broken: bool,
    epoch: Arc<AtomicU64>,
}

impl RedisConn {
    /// How long a call waits for its reply before it fails (kept for the connection's life).
    pub fn set_response_timeout(&mut self, timeout: Duration) {
        self.inner.set_response_timeout(timeout);
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
            let r = self.inner.req_packed_command(cmd).await;
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
            let r = self.inner.req_packed_commands(pipeline, offset, count).await;
            if let Err(e) = &r {
                self.saw(e);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        self.inner.get_db()
    }
}

impl bb8::ManageConnection for RedisManager {
    type Connection = RedisConn;
    type Error = RedisError;

    async fn connect(&self) -> Result<RedisConn, RedisError> {
        // Read before connecting: a failure reported meanwhile leaves this one suspect too.
        let checked = self.epoch.load(Ordering::Acquire);
        let inner = self.client.get_multiplexed_async_connection().await?;
        Ok(RedisConn { inner, checked, broken: false, epoch: self.epoch.clone() })
    }

    async fn is_valid(&self, conn: &mut RedisConn) -> Result<(), RedisError> {
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
        conn.broken
    }
}
