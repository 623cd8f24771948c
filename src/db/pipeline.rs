//! Pipelined connections for single-statement reads.
//!
//! A pooled connection carries one statement at a time: every read pays a checkout, a write
//! and a read syscall on each side, and a wake-up of the PostgreSQL backend, which sleeps
//! between statements. `tokio-postgres` can carry many statements on one connection at once
//! (each request is queued on the connection task, written in one batch and answered in
//! order), so a few shared connections serve a read-heavy load with a fraction of the
//! syscalls and context switches. `getUserById` (one primary-key lookup) is the hot read of
//! this service and the reason this exists.
//!
//! Only statements that are short and outside a transaction belong here: statements on one
//! connection run one after another, so a slow one delays those queued behind it (by at most
//! `statement_timeout`, set on these connections as on the pool's).
//!
//! A connection that breaks fails the statements in flight on it (a pooled one fails its
//! one) and is replaced by the first read after its connection task has seen it close.
//!
//! Limits: `connections` sockets per target (`PG_PIPELINE_CONNECTIONS`); the statements in
//! flight on them are bounded by the requests in flight, that is by `MAX_CONNECTIONS` (one
//! request at a time per HTTP connection).

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use deadpool_postgres::{ClientWrapper, Object, Pool as Deadpool, tokio_postgres};

use super::{MAX_CONNECTION_AGE, StoreError};

/// A connection to read on: one of the shared pipelined ones, or, with pipelining off, a
/// pooled connection of one's own. Either way a [`ClientWrapper`] with its statement cache.
pub enum Reader {
    Shared(Arc<ClientWrapper>),
    Pooled(Box<Object>),
}

impl std::ops::Deref for Reader {
    type Target = ClientWrapper;

    fn deref(&self) -> &ClientWrapper {
        match self {
            Reader::Shared(c) => c,
            Reader::Pooled(o) => o,
        }
    }
}

/// The shared connections of one database (the primary, or one replica).
pub struct Pipelined {
    config: tokio_postgres::Config,
    slots: Box<[Slot]>,
    next: AtomicUsize,
    connect_timeout: Duration,
}

#[derive(Default)]
struct Slot {
    /// The live connection, if any; held only to clone or replace it, never across an await.
    live: Mutex<Option<Live>>,
    /// Held while connecting, so that a slot whose connection broke is reopened once, not
    /// by every request that finds it broken.
    connecting: tokio::sync::Mutex<()>,
}

struct Live {
    client: Arc<ClientWrapper>,
    opened: Instant,
}

impl Pipelined {
    /// `connections` shared sockets opened lazily with `config` (the pool's, so
    /// `statement_timeout` included); zero turns pipelining off.
    pub fn new(config: tokio_postgres::Config, connections: usize, connect_timeout: Duration) -> Pipelined {
        Pipelined {
            config,
            slots: (0..connections).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            connect_timeout,
        }
    }

    pub fn enabled(&self) -> bool {
        !self.slots.is_empty()
    }

    /// A shared connection (round robin), opened or reopened here when it is missing, closed
    /// or past [`MAX_CONNECTION_AGE`] (a connection being replaced finishes what it carries:
    /// the statements in flight hold it).
    pub async fn get(&self) -> Result<Arc<ClientWrapper>, StoreError> {
        let slot = &self.slots[self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()];
        if let Some(client) = slot.current() {
            return Ok(client);
        }
        let _connecting = slot.connecting.lock().await;
        if let Some(client) = slot.current() {
            return Ok(client);
        }
        let (client, connection) =
            tokio::time::timeout(self.connect_timeout, self.config.connect(tokio_postgres::NoTls))
                .await
                .map_err(|_| StoreError::Unavailable(format!("no connection within {:?}", self.connect_timeout)))??;
        // The connection task ends when the socket does; the wrapper aborts it when the last
        // user of the client is gone.
        let task = tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "pipelined PostgreSQL connection closed");
            }
        });
        let client = Arc::new(ClientWrapper::new(client, task));
        *slot.lock() = Some(Live { client: client.clone(), opened: Instant::now() });
        Ok(client)
    }

    /// How many shared connections are open now (for `/metrics`).
    pub fn open(&self) -> usize {
        self.slots.iter().filter(|s| s.current().is_some()).count()
    }
}

impl Slot {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Live>> {
        // A panic while holding this lock cannot leave the Option half-written.
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn current(&self) -> Option<Arc<ClientWrapper>> {
        let live = self.lock();
        let l = live.as_ref()?;
        (!l.client.is_closed() && l.opened.elapsed() < MAX_CONNECTION_AGE).then(|| l.client.clone())
    }
}

/// What [`Pipelined::get`] needs from the pool to fall back on when pipelining is off.
pub(super) async fn reader(pipe: &Pipelined, pool: &Deadpool) -> Result<Reader, StoreError> {
    if pipe.enabled() {
        Ok(Reader::Shared(pipe.get().await?))
    } else {
        Ok(Reader::Pooled(Box::new(super::checkout(pool).await?)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::time::Duration;

    use crate::db::{self, StoreError};
    use crate::devsvc::test_database;

    async fn backend_pid(pool: &db::Pool) -> Result<i32, StoreError> {
        let client = db::reader(pool).await?;
        let row = db::query_opt(&client, "test.pid", "SELECT pg_backend_pid()", &[]).await?.unwrap();
        Ok(row.get(0))
    }

    #[tokio::test]
    async fn many_reads_share_one_connection() {
        let tdb = test_database().await.unwrap();
        let pool = db::pool_pipelined(tdb.url(), 2, Duration::from_secs(5), Duration::from_secs(30), 1).unwrap();
        let reads = (0..200).map(|_| backend_pid(&pool));
        let pids = futures_util::future::try_join_all(reads).await.unwrap();
        assert!(pids.iter().all(|p| *p == pids[0]), "every read on the one pipelined backend");
        assert_eq!(pool.pipelined_open(), 1);
        // The pool itself was never used.
        assert_eq!(pool.status().size, 0);
    }

    #[tokio::test]
    async fn a_broken_connection_is_reopened() {
        let tdb = test_database().await.unwrap();
        let pool = db::pool_pipelined(tdb.url(), 2, Duration::from_secs(5), Duration::from_secs(30), 1).unwrap();
        let first = backend_pid(&pool).await.unwrap();
        let admin = tdb.connect().await.unwrap();
        admin.execute("SELECT pg_terminate_backend($1)", &[&first]).await.unwrap();
        // Reads that meet the dying socket fail as Unavailable (as a pooled connection's one
        // read would); once its connection task has seen the socket close, the next read
        // opens a new one.
        let mut again = backend_pid(&pool).await;
        for _ in 0..200 {
            let Err(e) = &again else { break };
            assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            again = backend_pid(&pool).await;
        }
        assert_ne!(again.unwrap(), first);
    }

    #[tokio::test]
    async fn off_means_a_pooled_connection() {
        let tdb = test_database().await.unwrap();
        let pool = db::pool_pipelined(tdb.url(), 2, Duration::from_secs(5), Duration::from_secs(30), 0).unwrap();
        backend_pid(&pool).await.unwrap();
        assert_eq!(pool.pipelined_open(), 0);
        assert_eq!(pool.status().size, 1);
    }
}
