//! Read replicas: [`Db`] is the handle the HTTP layer holds instead of a bare pool. Writes,
//! conditional reads and everything that must see the latest row go to [`Db::primary`];
//! reads that may be slightly stale go through [`Db::reading`], on the pool [`Db::read`]
//! picks (a fresh replica unless the token wrote recently: read-your-writes), run again on
//! the primary when the replica fails.
//!
//! Freshness is measured, not assumed. Every check interval a background task samples the
//! primary's `pg_current_wal_flush_lsn()` and keeps a short ring of (time the query was sent,
//! LSN). A replica whose `pg_last_wal_replay_lsn()` has passed a sample holds everything the
//! primary had flushed when that sample was taken, so its staleness *now* is at most
//! `now − sample time` for the newest such sample: that sample's time is kept
//! (`Observed::CaughtUpTo`) and judged at each request, so a stuck checker makes replicas stale instead
//! of trusted forever. Nothing here runs on the request path but reading that state.
//! (The flush LSN bounds what a client was told is committed because commits are synchronous,
//! PostgreSQL's default: a commit returns only once its WAL is flushed.)
//!
//! Size: about 550 lines; the rest is its unit tests (routing, the marker map, the
//! lag arithmetic), which need its private state.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use bb8_redis::redis;
use deadpool_postgres::tokio_postgres::{self, types::PgLsn};

use super::{Pool, StoreError};
use crate::{config::ReplicaSettings, redis_pool::RedisPool};

/// Tokens remembered as having written recently, across all of them. Past it the oldest
/// marker is dropped (that token's reads may then see a replica up to the lag limit behind).
/// A marker lives for the read-your-writes window (about 1.5 s by default), so this is only
/// reached past ~65,000 writing tokens a second.
pub const RECENT_WRITERS_MAX: usize = 100_000;

/// The shortest time a lag check may take (connect included) before it counts as failed:
/// a check interval of a few ms would otherwise fail every check on a busy machine.
const CHECK_TIMEOUT_FLOOR: Duration = Duration::from_millis(250);

/// Added to the pool's acquire and statement timeouts for a replica read's own deadline, so
/// the server's `statement_timeout` (an error naming the cause) fires first when it can.
const READ_TIMEOUT_MARGIN: Duration = Duration::from_millis(250);

/// How long a `PUBLISH` of a write marker may delay a write's answer before it is given up
/// (logged). Short: Redis being slow must not make writes slow.
const PUBLISH_TIMEOUT: Duration = Duration::from_millis(200);

/// The database: the primary, and the replicas with what the last check found.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    primary: Pool,
    replicas: Vec<Replica>,
    /// Round-robin position among fresh replicas.
    next: AtomicUsize,
    max_lag: Duration,
    /// Longest a replica read may take (a connection, then the statement) before it counts as
    /// failed. PostgreSQL's `statement_timeout` cannot fire on a server that hangs (frozen,
    /// or its network gone), so without this a read would wait for TCP to give up.
    read_timeout: Duration,
    /// How long after a write a token's reads stay on the primary.
    window: Duration,
    writes: Mutex<RecentWrites>,
    broadcast: Option<Broadcast>,
    /// Whether the write-marker subscription is up. While it is down another instance's
    /// writes cannot be honoured here, so reads go to the primary.
    listening: AtomicBool,
}

struct Broadcast {
    redis: RedisPool,
    channel: String,
}

struct Replica {
    name: String,
    pool: Pool,
    /// One connection of its own for the lag checks, so a saturated request pool does not
    /// read as a replica that is down.
    check: Pool,
    observed: Mutex<Observed>,
}

#[derive(Debug, Clone)]
enum Observed {
    /// Holds everything the primary had flushed at this instant.
    CaughtUpTo(Instant),
    /// Reachable, in recovery, but behind every primary sample still kept (the oldest one's
    /// age is a lower bound of its lag).
    Behind {
        oldest_sample: Instant,
    },
    Down(String),
}

/// What `/health` says about one replica.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaReport {
    /// `host:port`, never the URL's credentials.
    pub name: String,
    pub status: ReplicaStatus,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// Serves reads; at most this far behind.
    Up {
        lag: Duration,
    },
    /// Reachable but further behind than `REPLICA_MAX_LAG_MS` (at least this far).
    Lagging {
        lag: Duration,
    },
    Down {
        error: String,
    },
}

/// The replica pools, built (lazily: nothing connects) with the other pools, and started as a
/// [`Db`] with the application, inside the runtime.
#[derive(Clone)]
pub struct ReplicaPools {
    settings: ReplicaSettings,
    read_timeout: Duration,
    primary_check: Pool,
    replicas: Vec<(String, Pool, Pool)>,
}

impl ReplicaPools {
    /// One request pool per replica sized like the primary's (`pool_max`, with `pipelined`
    /// shared connections), one check connection per replica and one for sampling the primary.
    pub fn new(
        primary_url: &str,
        settings: ReplicaSettings,
        pool_max: usize,
        pipelined: usize,
        acquire_timeout: Duration,
        statement_timeout: Duration,
    ) -> anyhow::Result<ReplicaPools> {
        let check_timeout = settings.check_interval.max(CHECK_TIMEOUT_FLOOR);
        let primary_check = super::pool(primary_url, 1, check_timeout, check_timeout)
            .context("building the primary's lag-check pool")?;
        let replicas = settings
            .urls
            .iter()
            .enumerate()
            .map(|(i, url)| {
                let what = || format!("replica {} of DATABASE_REPLICA_URLS", i + 1);
                let name = replica_name(url).with_context(what)?;
                let pool = super::pool_pipelined(url, pool_max, acquire_timeout, statement_timeout, pipelined)
                    .with_context(what)?;
                let check = super::pool(url, 1, check_timeout, check_timeout).with_context(what)?;
                Ok((name, pool, check))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let read_timeout = acquire_timeout + statement_timeout + READ_TIMEOUT_MARGIN;
        Ok(ReplicaPools { settings, read_timeout, primary_check, replicas })
    }

    /// The handle, with (when there are replicas) the lag checker and the write-marker
    /// subscription running until the last clone of it is dropped. `prefix` is
    /// `REDIS_PREFIX`; the channel is `<prefix>:db:wrote`. Must be called inside a Tokio runtime.
    pub fn start(&self, primary: Pool, redis: RedisPool, redis_url: &str, prefix: &str) -> anyhow::Result<Db> {
        if self.replicas.is_empty() {
            return Ok(Db::primary_only(primary));
        }
        let channel = format!("{prefix}:db:wrote");
        let source = crate::pubsub::Source::open(redis_url).context("parsing the Redis URL for write markers")?;
        let s = &self.settings;
        let inner = Arc::new(Inner {
            primary,
            replicas: self
                .replicas
                .iter()
                .map(|(name, pool, check)| Replica {
                    name: name.clone(),
                    pool: pool.clone(),
                    check: check.clone(),
                    observed: Mutex::new(Observed::Down("not checked yet".to_owned())),
                })
                .collect(),
            next: AtomicUsize::new(0),
            max_lag: s.max_lag,
            read_timeout: self.read_timeout,
            window: s.max_lag + 2 * s.check_interval,
            writes: Mutex::new(RecentWrites::new(RECENT_WRITERS_MAX)),
            broadcast: Some(Broadcast { redis, channel: channel.clone() }),
            listening: AtomicBool::new(false),
        });
        tokio::spawn(check_lag(
            Arc::downgrade(&inner),
            self.primary_check.clone(),
            s.check_interval,
            s.check_interval.max(CHECK_TIMEOUT_FLOOR),
        ));
        tokio::spawn(crate::pubsub::follow(source, channel, "write markers", Arc::downgrade(&inner)));
        Ok(Db { inner })
    }
}

/// `host:port` of a PostgreSQL URL, for logs and `/health` (the URL may hold a password).
fn replica_name(url: &str) -> anyhow::Result<String> {
    let config: tokio_postgres::Config = url.parse().context("parsing the PostgreSQL URL")?;
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}"))
}

impl Db {
    /// Every query on `pool`: no replicas, nothing running in the background.
    pub fn primary_only(pool: Pool) -> Db {
        Db {
            inner: Arc::new(Inner {
                primary: pool,
                replicas: Vec::new(),
                next: AtomicUsize::new(0),
                max_lag: Duration::ZERO,
                read_timeout: Duration::ZERO,
                window: Duration::ZERO,
                writes: Mutex::new(RecentWrites::new(0)),
                broadcast: None,
                listening: AtomicBool::new(false),
            }),
        }
    }

    /// For writes and for reads that must see the latest committed row.
    pub fn primary(&self) -> &Pool {
        &self.inner.primary
    }

    /// The pool a read by `token_id` may use: a fresh replica (round robin), or the primary
    /// when the token wrote within the window, no replica is fresh, or write markers from
    /// other instances cannot be received.
    pub fn read(&self, token_id: i64) -> &Pool {
        match self.pick(token_id) {
            Some(i) => &self.inner.replicas[i].pool,
            None => &self.inner.primary,
        }
    }

    /// Runs a read on the pool [`Db::read`] picks; when a replica fails with
    /// [`StoreError::Unavailable`] (stopped, restarting, query cancelled by a replay
    /// conflict) or hangs past `PG_ACQUIRE_TIMEOUT_MS` + `PG_STATEMENT_TIMEOUT_MS`, it is
    /// skipped until its next good check and the read runs on the primary, so a replica
    /// going away costs a retry, never an error.
    ///
    /// `read` is handed a clone of the pool (an `Arc`), not a reference: its future then has
    /// one nameable type, which keeps the handlers' futures `Send`.
    pub async fn reading<T, F, Fut>(&self, token_id: i64, read: F) -> Result<T, StoreError>
    where
        F: Fn(Pool) -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let Some(i) = self.pick(token_id) else {
            return read(self.inner.primary.clone()).await;
        };
        let replica = &self.inner.replicas[i];
        let on_replica = tokio::time::timeout(self.inner.read_timeout, read(replica.pool.clone()));
        let answer = on_replica.await.unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!("no answer within {:?}", self.inner.read_timeout)))
        });
        match answer {
            Err(StoreError::Unavailable(why)) => {
                tracing::warn!(replica = %replica.name, error = %why, "replica read failed; skipping it until its next good check and reading from the primary");
                replica.set(Observed::Down(why));
                read(self.inner.primary.clone()).await
            }
            other => other,
        }
    }

    /// Records that `token_id` wrote (or tried to: a write whose answer was lost may have
    /// committed), here and, over Redis pub/sub, on every other instance. Awaited before the
    /// write is answered, so the marker is on its way to the other instances before the client
    /// can send them its next read; bounded by [`PUBLISH_TIMEOUT`], and a failure is only
    /// logged: the write has happened, and a lost marker only lets another instance serve this
    /// token a replica's bounded-stale view.
    pub async fn wrote(&self, token_id: i64) {
        let inner = &self.inner;
        if inner.replicas.is_empty() {
            return;
        }
        inner.mark(token_id);
        let Some(b) = &inner.broadcast else { return };
        let publish = async {
            let mut conn = b.redis.get().await.context("getting a Redis connection")?;
            let _: i64 = conn.publish(&b.channel, &token_id.to_string()).await.context("PUBLISH")?;
            anyhow::Ok(())
        };
        match tokio::time::timeout(PUBLISH_TIMEOUT, publish).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %format!("{e:#}"), "cannot broadcast a write marker"),
            Err(_) => {
                tracing::warn!("cannot broadcast a write marker: no answer from Redis within {PUBLISH_TIMEOUT:?}")
            }
        }
    }

    /// Every request pool by name: `primary`, then each replica as its URL's host names it
    /// (the names `replica_health` reports), for the metrics' pool gauges.
    pub fn pools(&self) -> Vec<(String, Pool)> {
        let replicas = self.inner.replicas.iter().map(|r| (r.name.clone(), r.pool.clone()));
        std::iter::once(("primary".to_owned(), self.inner.primary.clone())).chain(replicas).collect()
    }

    /// Each replica as the last check (or a failed read since) found it; empty without replicas.
    pub fn replica_health(&self) -> Vec<ReplicaReport> {
        let now = Instant::now();
        self.inner
            .replicas
            .iter()
            .map(|r| {
                let status = match r.observed() {
                    Observed::CaughtUpTo(t) => {
                        let lag = now.saturating_duration_since(t);
                        if lag <= self.inner.max_lag {
                            ReplicaStatus::Up { lag }
                        } else {
                            ReplicaStatus::Lagging { lag }
                        }
                    }
                    Observed::Behind { oldest_sample } => {
                        ReplicaStatus::Lagging { lag: now.saturating_duration_since(oldest_sample) }
                    }
                    Observed::Down(error) => ReplicaStatus::Down { error },
                };
                ReplicaReport { name: r.name.clone(), status }
            })
            .collect()
    }

    /// Whether write markers of other instances are being received (tests wait for it).
    pub fn listening(&self) -> bool {
        self.inner.listening.load(Ordering::Acquire)
    }

    fn pick(&self, token_id: i64) -> Option<usize> {
        let inner = &self.inner;
        let n = inner.replicas.len();
        if n == 0 || !inner.listening.load(Ordering::Acquire) {
            return None;
        }
        let now = Instant::now();
        if inner.writes.lock().map_or(true, |w| w.recent(token_id, now)) {
            return None;
        }
        let start = inner.next.fetch_add(1, Ordering::Relaxed);
        (0..n).map(|k| (start + k) % n).find(|&i| match inner.replicas[i].observed() {
            Observed::CaughtUpTo(t) => now.saturating_duration_since(t) <= inner.max_lag,
            _ => false,
        })
    }
}

impl Inner {
    fn mark(&self, token_id: i64) {
        if let Ok(mut w) = self.writes.lock() {
            let now = Instant::now();
            w.mark(token_id, now + self.window, now);
        }
    }
}

impl Replica {
    fn observed(&self) -> Observed {
        match self.observed.lock() {
            Ok(o) => o.clone(),
            Err(_) => Observed::Down("state lock poisoned".to_owned()),
        }
    }

    fn set(&self, o: Observed) {
        if let Ok(mut cur) = self.observed.lock() {
            *cur = o;
        }
    }
}

/// Tokens with a write marker, bounded: markers in a map, their order in a queue (a token
/// writing again is queued again; only its newest entry removes it from the map).
struct RecentWrites {
    until: HashMap<i64, Instant>,
    order: VecDeque<(i64, Instant)>,
    max: usize,
}

impl RecentWrites {
    fn new(max: usize) -> Self {
        RecentWrites { until: HashMap::new(), order: VecDeque::new(), max }
    }

    fn mark(&mut self, token_id: i64, until: Instant, now: Instant) {
        if self.max == 0 {
            return;
        }
        // Expired markers first, so the bound only ever drops live ones under real pressure.
        while let Some(&(_, t)) = self.order.front()
            && (t <= now || self.order.len() >= self.max)
        {
            self.pop_front();
        }
        self.until.insert(token_id, until);
        self.order.push_back((token_id, until));
    }

    fn pop_front(&mut self) {
        if let Some((id, t)) = self.order.pop_front()
            && self.until.get(&id) == Some(&t)
        {
            self.until.remove(&id);
        }
    }

    fn recent(&self, token_id: i64, now: Instant) -> bool {
        self.until.get(&token_id).is_some_and(|&t| t > now)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.until.len()
    }
}

/// (time the query was sent, the primary's flush LSN) samples, newest last, no older than
/// `keep`: a replica that has passed none of them is lagging whatever the exact figure.
struct Samples {
    ring: VecDeque<(Instant, PgLsn)>,
    keep: Duration,
}

impl Samples {
    fn push(&mut self, at: Instant, lsn: PgLsn) {
        self.ring.push_back((at, lsn));
        while self.ring.len() > 1
            && self.ring.front().is_some_and(|&(t, _)| at.saturating_duration_since(t) > self.keep)
        {
            self.ring.pop_front();
        }
    }

    /// What a replica that has replayed up to `replay` holds.
    fn judge(&self, replay: PgLsn) -> Option<Observed> {
        let oldest = self.ring.front()?.0;
        Some(match self.ring.iter().rev().find(|&&(_, lsn)| lsn <= replay) {
            Some(&(t, _)) => Observed::CaughtUpTo(t),
            None => Observed::Behind { oldest_sample: oldest },
        })
    }
}

/// The lag checker: every `interval`, one primary sample then every replica at once, each
/// under `timeout`. Ends when the [`Db`] is dropped.
async fn check_lag(inner: Weak<Inner>, primary_check: Pool, interval: Duration, timeout: Duration) {
    let keep = inner.upgrade().map_or(Duration::ZERO, |i| i.max_lag) + 2 * interval;
    let mut samples = Samples { ring: VecDeque::new(), keep };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut primary_failing = false;
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        let sent = Instant::now();
        match within(timeout, primary_flush_lsn(&primary_check)).await {
            Ok(lsn) => {
                samples.push(sent, lsn);
                primary_failing = false;
            }
            // No new sample: replicas keep their last bound and age into `lagging`, which is
            // right, since nothing says how far the primary has moved since.
            Err(e) if !primary_failing => {
                tracing::warn!(error = %e, "replica lag check: cannot sample the primary's WAL position");
                primary_failing = true;
            }
            Err(_) => {}
        }
        let checks = inner.replicas.iter().map(|r| async {
            let found = match within(timeout, replica_replay_lsn(&r.check)).await {
                Ok(Some(replay)) => samples.judge(replay).unwrap_or(Observed::Down("no primary sample yet".to_owned())),
                Ok(None) => Observed::Down("not in recovery: not a replica (promoted?)".to_owned()),
                Err(e) => Observed::Down(e),
            };
            match (&found, r.observed()) {
                (Observed::Down(why), before) if !matches!(before, Observed::Down(_)) => {
                    tracing::warn!(replica = %r.name, error = %why, "replica down: its reads go to the primary");
                }
                (Observed::CaughtUpTo(_), Observed::Down(why)) => {
                    tracing::info!(replica = %r.name, was = %why, "replica reachable again");
                }
                _ => {}
            }
            r.set(found);
        });
        futures_util::future::join_all(checks).await;
    }
}

async fn within<T>(
    timeout: Duration,
    check: impl std::future::Future<Output = Result<T, StoreError>>,
) -> Result<T, String> {
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(crate::error_chain(&e)),
        Err(_) => Err(format!("no answer within {timeout:?}")),
    }
}

async fn primary_flush_lsn(pool: &Pool) -> Result<PgLsn, StoreError> {
    let client = super::conn(pool).await?;
    let row = super::query_opt(&client, "replicas.primary_lsn", "SELECT pg_current_wal_flush_lsn()", &[])
        .await?
        .ok_or_else(|| StoreError::internal("pg_current_wal_flush_lsn() returned no row"))?;
    row.try_get(0).map_err(|e| StoreError::Internal(Box::new(e)))
}

/// The replay position, `None` when the server is not in recovery (not a replica).
async fn replica_replay_lsn(pool: &Pool) -> Result<Option<PgLsn>, StoreError> {
    let client = super::conn(pool).await?;
    let row =
        super::query_opt(&client, "replicas.replay_lsn", "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()", &[])
            .await?
            .ok_or_else(|| StoreError::internal("pg_last_wal_replay_lsn() returned no row"))?;
    let in_recovery: bool = row.try_get(0).map_err(|e| StoreError::Internal(Box::new(e)))?;
    let replay: Option<PgLsn> = row.try_get(1).map_err(|e| StoreError::Internal(Box::new(e)))?;
    Ok(if in_recovery { replay } else { None })
}

/// Write markers from every instance (this one's too, which only renews its own marker).
/// Markers published while unsubscribed are lost, so reads stay on the primary until the
/// subscription is back ([`Db::read`]).
impl crate::pubsub::Subscriber for Inner {
    fn subscribed(&self) {
        self.listening.store(true, Ordering::Release);
    }

    fn message(&self, msg: &redis::Msg) {
        match msg.get_payload::<i64>() {
            Ok(token_id) => self.mark(token_id),
            Err(e) => tracing::debug!(error = %e, "ignoring a malformed write marker"),
        }
    }

    fn unsubscribed(&self) {
        self.listening.store(false, Ordering::Release);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn recent_writes_expire_and_stay_bounded() {
        let t0 = Instant::now();
        let w = Duration::from_secs(1);
        let mut r = RecentWrites::new(3);
        r.mark(1, t0 + w, t0);
        assert!(r.recent(1, t0));
        assert!(!r.recent(1, t0 + w), "expired at the end of the window");
        assert!(!r.recent(2, t0));
        // A token writing again keeps its newest marker when its older entry leaves the queue.
        r.mark(1, t0 + w * 2, t0);
        r.mark(2, t0 + w * 2, t0);
        r.mark(3, t0 + w * 2, t0);
        assert!(r.recent(1, t0 + w), "the first entry of 1 was evicted, its second still counts");
        r.mark(4, t0 + w * 2, t0);
        assert!(r.len() <= 3, "bounded: {}", r.len());
        assert!(!r.recent(1, t0 + w), "the oldest marker went first");
        assert!(r.recent(4, t0 + w));
        // Expired entries are dropped as new ones arrive.
        r.mark(5, t0 + w * 4, t0 + w * 3);
        assert_eq!(r.len(), 1);
    }

    #[test]
    fn a_replica_is_as_fresh_as_the_newest_primary_sample_it_passed() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut s = Samples { ring: VecDeque::new(), keep: ms(1000) };
        assert!(s.judge(PgLsn::from(5)).is_none(), "no sample, no judgement");
        s.push(t0, PgLsn::from(100));
        s.push(t0 + ms(250), PgLsn::from(200));
        s.push(t0 + ms(500), PgLsn::from(200));
        s.push(t0 + ms(750), PgLsn::from(300));
        // Passed 200 but not 300: holds what the primary had at t0 + 500 ms.
        assert!(matches!(s.judge(PgLsn::from(250)), Some(Observed::CaughtUpTo(t)) if t == t0 + ms(500)));
        assert!(matches!(s.judge(PgLsn::from(300)), Some(Observed::CaughtUpTo(t)) if t == t0 + ms(750)));
        assert!(matches!(s.judge(PgLsn::from(99)), Some(Observed::Behind { oldest_sample }) if oldest_sample == t0));
        // Old samples go; the newest always stays.
        s.push(t0 + ms(1600), PgLsn::from(400));
        assert_eq!(s.ring.front().map(|&(t, _)| t), Some(t0 + ms(750)));
    }

    /// Two replicas over pools that never connect (routing only reads the observed state).
    fn db_with_two_replicas() -> Db {
        let pool = || {
            super::super::pool("postgres://u@127.0.0.1:1/x", 1, Duration::from_secs(1), Duration::from_secs(1)).unwrap()
        };
        let replica = |name: &str| Replica {
            name: name.to_owned(),
            pool: pool(),
            check: pool(),
            observed: Mutex::new(Observed::Down("not checked yet".to_owned())),
        };
        Db {
            inner: Arc::new(Inner {
                primary: pool(),
                replicas: vec![replica("r0"), replica("r1")],
                next: AtomicUsize::new(0),
                max_lag: Duration::from_secs(1),
                read_timeout: Duration::from_secs(1),
                window: Duration::from_millis(1500),
                writes: Mutex::new(RecentWrites::new(RECENT_WRITERS_MAX)),
                broadcast: None,
                listening: AtomicBool::new(true),
            }),
        }
    }

    #[test]
    fn reads_pick_fresh_replicas_unless_the_token_wrote_or_markers_are_not_received() {
        let db = db_with_two_replicas();
        let r = &db.inner.replicas;
        assert_eq!(db.pick(1), None, "unchecked replicas serve nothing");
        r[0].set(Observed::CaughtUpTo(Instant::now()));
        assert_eq!((db.pick(1), db.pick(1)), (Some(0), Some(0)), "the only fresh one");
        r[1].set(Observed::CaughtUpTo(Instant::now()));
        let picks: Vec<_> = (0..4).filter_map(|_| db.pick(1)).collect();
        assert!(picks.contains(&0) && picks.contains(&1), "round robin: {picks:?}");
        // Fresh at its check but too long ago: the bound has grown past the limit.
        r[0].set(Observed::CaughtUpTo(Instant::now() - Duration::from_millis(1100)));
        r[1].set(Observed::Behind { oldest_sample: Instant::now() });
        assert_eq!(db.pick(1), None);
        r[1].set(Observed::CaughtUpTo(Instant::now()));
        db.inner.mark(7);
        assert_eq!(db.pick(7), None, "a token that wrote reads from the primary");
        assert_eq!(db.pick(8), Some(1), "others do not");
        db.inner.listening.store(false, Ordering::Release);
        assert_eq!(db.pick(8), None, "without other instances' markers, only the primary");
        let health = db.replica_health();
        assert!(matches!(health[0].status, ReplicaStatus::Lagging { lag } if lag > Duration::from_secs(1)));
        assert!(matches!(health[1].status, ReplicaStatus::Up { .. }));
        assert_eq!(health[1].name, "r1");
    }

    #[test]
    fn replica_names_carry_no_credentials() {
        assert_eq!(replica_name("postgres://u:secret@db-2.internal:6543/app").unwrap(), "db-2.internal:6543");
        assert_eq!(replica_name("postgres://u@10.0.0.7/app").unwrap(), "10.0.0.7:5432");
    }
}
