//! Operator-token authentication: `sk_…` tokens verified through a short-lived Redis cache in
//! front of PostgreSQL (`db::tokens`), each with its [`Grant`] (the scopes it was issued with;
//! whether they cover an operation is `http`'s question). Revocation is immediate; when neither
//! store can answer, verification fails closed with [`AuthError::Unavailable`].
//!
//! Floods of bad tokens stay cheap: a string without a valid checksum is refused before any
//! store is asked; what PostgreSQL refused is remembered in process for a short while; and at
//! most a few PostgreSQL lookups run at once, so no flood can take the pool from requests.
//!
//! Size: about 530 lines; the rest is its tests against real PostgreSQL and
//! Redis.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, anyhow};
use bb8_redis::redis;
use chrono::{DateTime, Utc};

use crate::clock::FakeClock;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use crate::db::{
    Pool,
    tokens::{self, Grant},
};
use crate::redis_pool::RedisPool;

/// Who a verified token belongs to, and what it may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub token_id: i64,
    pub name: String,
    pub grant: Grant,
}

/// Why a token was not accepted. Only `Unavailable` is the server's fault (500, code 5001:
/// requests fail closed); the others are the caller's (401). Details of an `Unavailable` are logged where it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("invalid token")]
    Invalid,
    #[error("token expired")]
    Expired,
    #[error("token revoked")]
    Revoked,
    #[error("token store unavailable")]
    Unavailable,
}

/// `revoke` is an operator action, not the hot path: it may wait for a Redis that is just
/// coming back (bb8 reconnects with backoff) rather than fail and need a re-run.
const REVOKE_REDIS_TIMEOUT: Duration = Duration::from_secs(5);

/// What the cache holds under `<prefix>auth:token:<sha256 hex>`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "lowercase")]
enum CacheEntry {
    /// Checked against PostgreSQL less than a cache TTL ago. The expiry is re-checked on every
    /// hit, since the key's TTL is rounded and a clock may have moved.
    Valid {
        id: i64,
        name: String,
        hash: String,
        expires_at: Option<DateTime<Utc>>,
        /// Absent in an entry written by a binary from before scopes: such an entry says nothing
        /// of what the token may do, so it is a miss (PostgreSQL says), never full access.
        #[serde(default)]
        grant: Option<Grant>,
    },
    /// Written by `revoke` in place of the positive entry; see there.
    Revoked,
}

/// Verifies operator tokens. Cheap to clone; every clone shares both pools.
///
/// For the hot path, give it a Redis pool built with `test_on_check_out(false)`: otherwise every
/// checkout costs a PING, doubling the round trips of a cache hit.
#[derive(Clone)]
pub struct TokenVerifier {
    pg: Pool,
    redis: RedisPool,
    /// Put before every key, so that several deployments (or tests) can share one Redis.
    prefix: String,
    /// How long a positive result is trusted without asking PostgreSQL. Also the longest a
    /// revocation made through `db::tokens::token_revoke` (not through `revoke`) can go unseen.
    cache_ttl: Duration,
    /// Redis answers in well under a millisecond when healthy; past this we go to PostgreSQL
    /// rather than make every request wait for a dead cache.
    redis_timeout: Duration,
    /// Tokens this process verified recently, so the hot path needs no round trip at all.
    local: Arc<LocalCache>,
    /// How long a local entry is trusted; zero (the default) turns the local cache off.
    local_ttl: Duration,
    /// What PostgreSQL refused lately; always on (see [`Refusals`]).
    refusals: Arc<Refusals>,
    /// Slots for PostgreSQL lookups, shared by every clone.
    lookups: Arc<tokio::sync::Semaphore>,
    lookup_wait: Duration,
    /// What "now" is for token expiry; `None` (the default) is the system clock.
    clock: Option<FakeClock>,
}

/// The process-local layer in front of Redis. Its entries are trusted only while a listener is
/// subscribed to the revocation channel, so a `revoke` anywhere reaches them; when the listener
/// is not connected the layer is bypassed and emptied.
#[derive(Default)]
struct LocalCache {
    entries: Mutex<HashMap<String, LocalEntry>>,
    /// Bumped by every revocation message and every (re)subscription. A verification that began
    /// before a bump does not fill the cache: it may have read a token that was just revoked.
    epoch: AtomicU64,
    live: AtomicBool,
}

struct LocalEntry {
    principal: Principal,
    expires_at: Option<DateTime<Utc>>,
    cached_at: Instant,
}

/// Most tokens kept locally; past this the map is simply cleared (operator tokens are few).
const LOCAL_MAX_ENTRIES: usize = 10_000;

/// How long a refusal from PostgreSQL (unknown, revoked, expired) is remembered.
const REFUSAL_TTL: Duration = Duration::from_secs(30);

/// Most refusals remembered; past this the map is simply cleared. A flood of distinct strings
/// gains nothing from the map anyway; it is for the same strings sent again and again.
const REFUSAL_MAX_ENTRIES: usize = 10_000;

/// Most PostgreSQL token lookups one process runs at once. Tokens in use are served from the
/// caches, so lookups are rare unless someone sends tokens that were never issued; this keeps
/// such a flood to a few of the pool's connections.
const MAX_LOOKUPS: usize = 4;

/// How long a verification waits for a lookup slot before failing closed (`Unavailable`).
const LOOKUP_WAIT: Duration = Duration::from_secs(1);

/// Refusals PostgreSQL gave recently, by token hash, so that the same strings sent again cost no
/// lookup. They need no invalidation, because each answer is final: a revoked or expired token
/// never becomes valid again, and an unknown one becomes valid only by being issued, which
/// draws its 256 random bits at that moment: nobody can have sent that token before (and its
/// plaintext exists only once its row is committed, so no lookup can race the issue).
#[derive(Default)]
struct Refusals {
    entries: Mutex<HashMap<String, (AuthError, Instant)>>,
}

impl Refusals {
    fn get(&self, hash: &str, now: Instant) -> Option<AuthError> {
        let entries = self.entries.lock().ok()?;
        let &(refusal, at) = entries.get(hash)?;
        (now.saturating_duration_since(at) < REFUSAL_TTL).then_some(refusal)
    }

    fn put(&self, hash: &str, refusal: AuthError, now: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            if entries.len() >= REFUSAL_MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(hash.to_owned(), (refusal, now));
        }
    }
}

impl LocalCache {
    fn get(&self, hash: &str, ttl: Duration) -> Option<(Principal, Option<DateTime<Utc>>)> {
        if !self.live.load(Ordering::Acquire) {
            return None;
        }
        let entries = self.entries.lock().ok()?;
        let e = entries.get(hash)?;
        (e.cached_at.elapsed() < ttl).then(|| (e.principal.clone(), e.expires_at))
    }

    fn put(&self, hash: &str, principal: &Principal, expires_at: Option<DateTime<Utc>>, epoch: u64) {
        if !self.live.load(Ordering::Acquire) {
            return;
        }
        if let Ok(mut entries) = self.entries.lock() {
            // Checked under the lock that invalidation also takes: no revoke slips in between.
            if self.epoch.load(Ordering::Acquire) != epoch {
                return;
            }
            if entries.len() >= LOCAL_MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                hash.to_owned(),
                LocalEntry { principal: principal.clone(), expires_at, cached_at: Instant::now() },
            );
        }
    }

    fn invalidate(&self, hash: Option<&str>) {
        if let Ok(mut entries) = self.entries.lock() {
            self.epoch.fetch_add(1, Ordering::AcqRel);
            match hash {
                Some(h) => {
                    entries.remove(h);
                }
                None => entries.clear(),
            }
        }
    }
}

/// The revocation channel's events: while subscribed, each message drops one token (or, if
/// unreadable, all); a (re)subscription or a lost one empties the layer, since revocations may
/// have been missed, and only a live subscription lets it be trusted.
impl crate::pubsub::Subscriber for LocalCache {
    fn subscribed(&self) {
        self.invalidate(None);
        self.live.store(true, Ordering::Release);
    }

    fn message(&self, msg: &redis::Msg) {
        match msg.get_payload::<String>() {
            Ok(hash) => self.invalidate(Some(&hash)),
            Err(_) => self.invalidate(None),
        }
    }

    fn unsubscribed(&self) {
        self.live.store(false, Ordering::Release);
        self.invalidate(None);
    }
}

impl TokenVerifier {
    /// With a 60 s cache TTL and a 300 ms Redis timeout.
    pub fn new(pg: Pool, redis: RedisPool, prefix: impl Into<String>) -> Self {
        Self {
            pg,
            redis,
            prefix: prefix.into(),
            cache_ttl: Duration::from_secs(60),
            redis_timeout: Duration::from_millis(300),
            local: Arc::new(LocalCache::default()),
            local_ttl: Duration::ZERO,
            refusals: Arc::new(Refusals::default()),
            lookups: Arc::new(tokio::sync::Semaphore::new(MAX_LOOKUPS)),
            lookup_wait: LOOKUP_WAIT,
            clock: None,
        }
    }

    /// Token expiry judged by `clock` instead of the system clock, so that tests advance time
    /// instead of sleeping until a token expires. (The caches' own lifetimes stay real time.)
    pub fn with_fake_clock(mut self, clock: FakeClock) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now(&self) -> DateTime<Utc> {
        self.clock.as_ref().map_or_else(Utc::now, FakeClock::now_utc)
    }

    /// Turns on the process-local cache (entries trusted for `ttl`), with a task subscribed to
    /// the revocation channel on `redis_url`. A revocation reaches it as one pub/sub message,
    /// within milliseconds; while the subscription is down the local cache is off, and `ttl`
    /// bounds how long an entry can outlive a lost message. Must be called inside a Tokio runtime.
    pub fn with_local_cache(mut self, redis_url: &str, ttl: Duration) -> anyhow::Result<Self> {
        let source = crate::pubsub::Source::open(redis_url).context("parsing the Redis URL for revocations")?;
        tokio::spawn(crate::pubsub::follow(
            source,
            self.revocation_channel(),
            "token revocations",
            Arc::downgrade(&self.local),
        ));
        self.local_ttl = ttl;
        Ok(self)
    }

    fn revocation_channel(&self) -> String {
        format!("{}auth:revoked", self.prefix)
    }

    pub fn with_cache_ttl(mut self, cache_ttl: Duration) -> Self {
        self.cache_ttl = cache_ttl;
        self
    }

    pub fn with_redis_timeout(mut self, redis_timeout: Duration) -> Self {
        self.redis_timeout = redis_timeout;
        self
    }

    fn cache_key(&self, hash: &str) -> String {
        format!("{}auth:token:{hash}", self.prefix)
    }

    /// Checks a token: the Redis cache first, PostgreSQL on a miss (or when Redis is down),
    /// caching what PostgreSQL confirms. With PostgreSQL down, tokens cached in the last
    /// `cache_ttl` still pass and refusals of the last [`REFUSAL_TTL`] still hold; everything
    /// else is `Unavailable`.
    pub async fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        // Random and mistyped strings end here: a wrong checksum (or shape) needs no store.
        // Pre-checksum tokens have nothing to check locally and go on to the lookups.
        if tokens::token_shape(token).is_none() {
            return Err(AuthError::Invalid);
        }
        let hash = tokens::token_hash(token);
        if !self.local_ttl.is_zero()
            && let Some((principal, expires_at)) = self.local.get(&hash, self.local_ttl)
        {
            if expires_at.is_some_and(|at| at <= self.now()) {
                return Err(AuthError::Expired);
            }
            return Ok(principal);
        }
        if let Some(refusal) = self.refusals.get(&hash, Instant::now()) {
            return Err(refusal);
        }
        let epoch = self.local.epoch.load(Ordering::Acquire);
        let key = self.cache_key(&hash);

        match self.cache_get(&key).await {
            Ok(Some(raw)) => match serde_json::from_str::<CacheEntry>(&raw) {
                Ok(entry) => match check_cached(entry, &hash, self.now())? {
                    Some((principal, expires_at)) => {
                        self.remember(&hash, &principal, expires_at, epoch);
                        return Ok(principal);
                    }
                    // Its `SET NX` below leaves the old entry be (replacing it could overwrite a
                    // revocation's tombstone), so until it expires such a token is looked up
                    // here; the process-local cache, when on, still spares most of those.
                    None => tracing::debug!("token cache entry without a grant (older binary); asking PostgreSQL"),
                },
                Err(e) => tracing::warn!(error = %e, "unreadable token cache entry; asking PostgreSQL"),
            },
            Ok(None) => {}
            Err(e) => tracing::warn!(error = crate::error_chain(&*e), "token cache unavailable; asking PostgreSQL"),
        }

        let Some(record) = self.lookup(&hash).await? else {
            return Err(self.refuse(&hash, AuthError::Invalid));
        };
        // The row was found by this very hash, so this only fails if the lookup matched more
        // loosely than byte equality; it is constant-time so that it leaks nothing either way.
        if !bool::from(record.token_hash.as_bytes().ct_eq(hash.as_bytes())) {
            return Err(AuthError::Invalid);
        }
        if record.revoked_at.is_some() {
            return Err(self.refuse(&hash, AuthError::Revoked));
        }
        let now = self.now();
        if record.expires_at.is_some_and(|at| at <= now) {
            return Err(self.refuse(&hash, AuthError::Expired));
        }

        if let Err(e) = self.cache_put(&key, &record, now).await {
            tracing::warn!(error = crate::error_chain(&*e), "could not cache a verified token");
        }
        if let Err(e) = tokens::token_touch(&self.pg, record.id).await {
            tracing::warn!(error = crate::error_chain(&e), "could not record a token's use");
        }
        let principal = Principal { token_id: record.id, name: record.name, grant: record.grant };
        self.remember(&hash, &principal, record.expires_at, epoch);
        Ok(principal)
    }

    /// The token's row, through one of the few lookup slots.
    async fn lookup(&self, hash: &str) -> Result<Option<tokens::TokenRecord>, AuthError> {
        static REFUSED: AtomicU64 = AtomicU64::new(0);
        let Ok(Ok(_slot)) = tokio::time::timeout(self.lookup_wait, self.lookups.acquire()).await else {
            // Under a flood this happens for every request: say so once in a while, not each time.
            let refused = REFUSED.fetch_add(1, Ordering::Relaxed);
            if refused.is_multiple_of(1000) {
                tracing::warn!(
                    refused_total = refused + 1,
                    "token lookups in PostgreSQL are all busy (a flood of unknown tokens?); failing closed"
                );
            }
            return Err(AuthError::Unavailable);
        };
        tokens::token_find_by_hash(&self.pg, hash).await.map_err(|e| {
            tracing::error!(error = crate::error_chain(&e), "cannot verify a token: PostgreSQL failed");
            AuthError::Unavailable
        })
    }

    fn refuse(&self, hash: &str, refusal: AuthError) -> AuthError {
        self.refusals.put(hash, refusal, Instant::now());
        refusal
    }

    fn remember(&self, hash: &str, principal: &Principal, expires_at: Option<DateTime<Utc>>, epoch: u64) {
        if !self.local_ttl.is_zero() {
            self.local.put(hash, principal, expires_at, epoch);
        }
    }

    /// Revokes a token by id or name, effective at once for every verifier sharing this Redis
    /// and prefix. `Ok(true)` when this call revoked it, `Ok(false)` when there is no such token
    /// or it was revoked before. An error after the database step says so: run it again.
    pub async fn revoke(&self, id_or_name: &str) -> anyhow::Result<bool> {
        let Some((hash, newly_revoked)) = tokens::token_revoke_returning_hash(&self.pg, id_or_name)
            .await
            .with_context(|| format!("revoking token {id_or_name:?} in PostgreSQL"))?
        else {
            return Ok(false);
        };
        // A tombstone rather than a DEL: a `verify` that read the row just before the revoke
        // could otherwise cache it as valid just after. Its `SET NX` cannot replace this, and
        // the tombstone outlives any such in-flight verification.
        let entry = serde_json::to_string(&CacheEntry::Revoked).context("encoding a tombstone")?;
        self.cache_set(&self.cache_key(&hash), &entry, self.cache_ttl * 2, false, REVOKE_REDIS_TIMEOUT)
            .await
            .with_context(|| {
                format!(
                    "token {id_or_name:?} is revoked in PostgreSQL, but its cache entry could not \
                     be replaced; it may pass for up to {:?} more",
                    self.cache_ttl
                )
            })?;
        // Every process's local cache drops the token on this message.
        self.local.invalidate(Some(&hash));
        self.publish_revocation(&hash).await.with_context(|| {
            format!("token {id_or_name:?} is revoked, but other processes may accept it for a few more seconds")
        })?;
        Ok(newly_revoked)
    }

    async fn publish_revocation(&self, hash: &str) -> anyhow::Result<()> {
        let publish = async {
            let mut conn = self.redis.get().await.context("getting a Redis connection")?;
            let _: i64 = conn.publish(&self.revocation_channel(), hash).await.context("PUBLISH")?;
            Ok(())
        };
        tokio::time::timeout(REVOKE_REDIS_TIMEOUT, publish)
            .await
            .map_err(|_| anyhow!("no answer from Redis within {REVOKE_REDIS_TIMEOUT:?}"))?
    }

    async fn cache_get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let get = async {
            let mut conn = self.redis.get().await.context("getting a Redis connection")?;
            let value: Option<String> = redis::cmd("GET").arg(key).query_async(&mut *conn).await.context("GET")?;
            Ok(value)
        };
        tokio::time::timeout(self.redis_timeout, get)
            .await
            .map_err(|_| anyhow!("no answer from Redis within {:?}", self.redis_timeout))?
    }

    /// Caches a confirmed token, never for longer than it has left to live.
    async fn cache_put(&self, key: &str, record: &tokens::TokenRecord, now: DateTime<Utc>) -> anyhow::Result<()> {
        let mut ttl = self.cache_ttl;
        if let Some(expires_at) = record.expires_at {
            let left = (expires_at - now).to_std().unwrap_or(Duration::ZERO);
            ttl = ttl.min(left);
        }
        if ttl < Duration::from_millis(1) {
            return Ok(());
        }
        let entry = serde_json::to_string(&CacheEntry::Valid {
            id: record.id,
            name: record.name.clone(),
            hash: record.token_hash.clone(),
            expires_at: record.expires_at,
            grant: Some(record.grant.clone()),
        })
        .context("encoding a cache entry")?;
        self.cache_set(key, &entry, ttl, true, self.redis_timeout).await
    }

    async fn cache_set(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
        only_if_absent: bool,
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let set = async {
            let mut conn = self.redis.get().await.context("getting a Redis connection")?;
            let mut cmd = redis::cmd("SET");
            cmd.arg(key).arg(value).arg("PX").arg(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1));
            if only_if_absent {
                cmd.arg("NX");
            }
            // `SET … NX` answers nil when the key exists: not an error.
            let _: Option<String> = cmd.query_async(&mut *conn).await.context("SET")?;
            Ok(())
        };
        tokio::time::timeout(timeout, set).await.map_err(|_| anyhow!("no answer from Redis within {timeout:?}"))?
    }
}

/// A verified principal and when its token expires.
type Verified = (Principal, Option<DateTime<Utc>>);

/// A cache hit's answer; `Ok(None)` when the entry cannot say it (no grant: see `CacheEntry`).
fn check_cached(entry: CacheEntry, hash: &str, now: DateTime<Utc>) -> Result<Option<Verified>, AuthError> {
    match entry {
        CacheEntry::Revoked => Err(AuthError::Revoked),
        CacheEntry::Valid { id, name, hash: cached_hash, expires_at, grant } => {
            if !bool::from(cached_hash.as_bytes().ct_eq(hash.as_bytes())) {
                return Err(AuthError::Invalid);
            }
            if expires_at.is_some_and(|at| at <= now) {
                return Err(AuthError::Expired);
            }
            Ok(grant.map(|grant| (Principal { token_id: id, name, grant }, expires_at)))
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use crate::db::tokens::token_issue;
    use crate::devsvc::{PrivatePostgres, PrivateRedis, TestDb, TestRedis, test_database, test_redis};

    async fn redis_pool(url: &str) -> RedisPool {
        bb8::Pool::builder()
            .max_size(4)
            .connection_timeout(Duration::from_secs(2))
            .build(crate::redis_pool::RedisManager::new(url).unwrap())
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn local_cache_serves_verified_tokens_and_hears_revocations() {
        let (db, redis, plain) = setup().await;
        let cached = plain.clone().with_local_cache(redis.url(), Duration::from_secs(30)).unwrap();
        let (_, token) = token_issue(db.pool(), "local", None, None).await.unwrap();
        // Wait (bounded) until the listener is subscribed; before that the layer is off.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !cached.local.live.load(Ordering::Acquire) {
            assert!(std::time::Instant::now() < deadline, "listener never subscribed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(cached.verify(&token).await.is_ok());
        // Served locally: even with the Redis entry gone it still passes without a lookup.
        let key = cached.cache_key(&tokens::token_hash(&token));
        let mut conn = redis.pool().await.unwrap().get_owned().await.unwrap();
        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut *conn).await.unwrap();
        assert!(cached.local.get(&tokens::token_hash(&token), cached.local_ttl).is_some());
        // Another process revokes: the message empties this process's entry.
        assert!(plain.revoke("local").await.unwrap());
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match cached.verify(&token).await {
                Err(AuthError::Revoked) => break,
                other => assert!(std::time::Instant::now() < deadline, "still {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn setup() -> (TestDb, TestRedis, TokenVerifier) {
        let db = test_database().await.unwrap();
        let redis = test_redis().await.unwrap();
        let verifier = TokenVerifier::new(db.pool().clone(), redis.pool().await.unwrap(), redis.prefix());
        (db, redis, verifier)
    }

    async fn pttl(verifier: &TokenVerifier, token: &str) -> i64 {
        let mut conn = verifier.redis.get().await.unwrap();
        redis::cmd("PTTL").arg(verifier.cache_key(&tokens::token_hash(token))).query_async(&mut *conn).await.unwrap()
    }

    #[tokio::test]
    async fn issued_tokens_verify_and_get_cached() {
        let (db, _redis, verifier) = setup().await;
        let (id, token) = token_issue(db.pool(), "deploy-bot", None, None).await.unwrap();
        let expected = Principal { token_id: id, name: "deploy-bot".into(), grant: Grant::Full };
        assert_eq!(verifier.verify(&token).await, Ok(expected.clone()));
        let ttl = pttl(&verifier, &token).await;
        assert!(ttl > 0 && ttl <= 60_000, "cached for at most the cache TTL: {ttl}");
        // A hit answers the same.
        assert_eq!(verifier.verify(&token).await, Ok(expected));
        let listed = tokens::tokens_list(db.pool()).await.unwrap();
        assert!(listed[0].last_used_at.is_some());
    }

    #[tokio::test]
    async fn wrong_tokens_are_invalid() {
        let (db, _redis, verifier) = setup().await;
        let (_, token) = token_issue(db.pool(), "real", None, None).await.unwrap();
        let mut altered = token.clone();
        let last = if altered.ends_with('A') { "B" } else { "A" };
        altered.replace_range(altered.len() - 1.., last);
        assert_eq!(verifier.verify(&altered).await, Err(AuthError::Invalid));
        assert_eq!(verifier.verify("").await, Err(AuthError::Invalid));
        assert_eq!(verifier.verify("not-a-token").await, Err(AuthError::Invalid));
        assert_eq!(verifier.verify(&format!("{token} ")).await, Err(AuthError::Invalid));
        assert_eq!(pttl(&verifier, &altered).await, -2, "failures are not cached");
    }

    #[tokio::test]
    async fn expired_tokens_are_rejected_and_never_cached_beyond_expiry() {
        let (db, _redis, verifier) = setup().await;
        let ttl = Duration::from_millis(800);
        let (_, token) = token_issue(db.pool(), "short", Some(ttl), None).await.unwrap();
        // Started after the issue, so the token has at most `ttl` left on this clock too.
        let clock = FakeClock::starting_now();
        let timed = verifier.clone().with_fake_clock(clock.clone());
        assert!(timed.verify(&token).await.is_ok());
        let cached = pttl(&timed, &token).await;
        assert!(cached > 0 && cached <= 800, "cache TTL capped by the token's life: {cached}");
        // Past its expiry on this clock: refused, although its cache entry (on Redis's real
        // clock) is most likely still there, so the cache hit rechecks the expiry.
        clock.advance(ttl + Duration::from_millis(100));
        assert_eq!(timed.verify(&token).await, Err(AuthError::Expired));

        // On the real clock.
        let (_, gone) = token_issue(db.pool(), "born-expired", Some(Duration::ZERO), None).await.unwrap();
        assert_eq!(verifier.verify(&gone).await, Err(AuthError::Expired));
    }

    #[test]
    fn a_cache_hit_rechecks_expiry_and_hash() {
        let now = Utc::now();
        let entry = |expires_at| CacheEntry::Valid {
            id: 1,
            name: "x".into(),
            hash: "ab".into(),
            expires_at,
            grant: Some(Grant::Full),
        };
        assert_eq!(check_cached(entry(Some(now - chrono::Duration::seconds(1))), "ab", now), Err(AuthError::Expired));
        assert!(check_cached(entry(Some(now + chrono::Duration::seconds(1))), "ab", now).unwrap().is_some());
        assert!(check_cached(entry(None), "ab", now).unwrap().is_some());
        assert_eq!(check_cached(entry(None), "cd", now), Err(AuthError::Invalid));
        assert_eq!(check_cached(CacheEntry::Revoked, "ab", now), Err(AuthError::Revoked));
    }

    #[tokio::test]
    async fn scopes_come_from_postgres_and_from_the_cache_alike() {
        use crate::db::tokens::Scope;
        let (db, _redis, verifier) = setup().await;
        let scopes = [Scope::UsersRead, Scope::TasksWrite];
        let (id, token) = token_issue(db.pool(), "narrow", None, Some(&scopes)).await.unwrap();
        let expected = Principal { token_id: id, name: "narrow".into(), grant: Grant::Scopes(scopes.to_vec()) };
        assert_eq!(verifier.verify(&token).await, Ok(expected.clone()), "from PostgreSQL");
        assert!(pttl(&verifier, &token).await > 0);
        assert_eq!(verifier.verify(&token).await, Ok(expected), "from Redis");
        let (_, full) = token_issue(db.pool(), "wide", None, None).await.unwrap();
        assert_eq!(verifier.verify(&full).await.map(|p| p.grant), Ok(Grant::Full));
        assert_eq!(verifier.verify(&full).await.map(|p| p.grant), Ok(Grant::Full), "from Redis");
    }

    /// An entry written by a binary from before scopes has no grant. It must not pass as full
    /// access: the token is looked up, and PostgreSQL's scopes apply.
    #[tokio::test]
    async fn a_cache_entry_without_a_grant_is_a_miss() {
        use crate::db::tokens::Scope;
        let (db, redis, verifier) = setup().await;
        let (id, token) = token_issue(db.pool(), "upgraded", None, Some(&[Scope::TasksRead])).await.unwrap();
        let hash = tokens::token_hash(&token);
        let old = serde_json::json!({"state": "valid", "id": id, "name": "upgraded", "hash": hash, "expires_at": null});
        let mut conn = redis.pool().await.unwrap().get_owned().await.unwrap();
        let _: () = redis::cmd("SET")
            .arg(verifier.cache_key(&hash))
            .arg(old.to_string())
            .arg("PX")
            .arg(60_000)
            .query_async(&mut *conn)
            .await
            .unwrap();
        let grant = Grant::Scopes(vec![Scope::TasksRead]);
        assert_eq!(verifier.verify(&token).await.map(|p| p.grant), Ok(grant.clone()));
        assert!(tokens::tokens_list(db.pool()).await.unwrap()[0].last_used_at.is_some(), "PostgreSQL was asked");
        // A revoked token stays revoked whatever the old entry said.
        assert!(tokens::token_revoke(db.pool(), "upgraded").await.unwrap());
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    }

    #[tokio::test]
    async fn revocation_takes_effect_at_once_even_when_cached() {
        let (db, redis, verifier) = setup().await;
        let (id, token) = token_issue(db.pool(), "leaky", None, None).await.unwrap();
        let (_, other) = token_issue(db.pool(), "fine", None, None).await.unwrap();
        assert!(verifier.verify(&token).await.is_ok());
        assert!(verifier.verify(&other).await.is_ok());
        assert!(pttl(&verifier, &token).await > 0, "cached before the revoke");

        // A second verifier (another instance) sharing the cache sees it too.
        let peer = TokenVerifier::new(db.pool().clone(), redis.pool().await.unwrap(), redis.prefix());
        assert!(verifier.revoke(&id.to_string()).await.unwrap());
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
        assert_eq!(peer.verify(&token).await, Err(AuthError::Revoked));
        assert!(verifier.verify(&other).await.is_ok(), "other tokens unaffected");

        assert!(!verifier.revoke("leaky").await.unwrap(), "already revoked");
        assert!(!verifier.revoke("no-such-token").await.unwrap());
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Revoked));
    }

    #[tokio::test]
    async fn redis_down_falls_back_to_postgres() {
        let db = test_database().await.unwrap();
        let mut redis = PrivateRedis::start().unwrap();
        let verifier = TokenVerifier::new(db.pool().clone(), redis_pool(&redis.url()).await, "t:");
        let (_, token) = token_issue(db.pool(), "a", None, None).await.unwrap();
        let (_, revoked) = token_issue(db.pool(), "b", None, None).await.unwrap();
        assert!(verifier.verify(&token).await.is_ok());
        assert!(verifier.verify(&revoked).await.is_ok());

        redis.stop().unwrap();
        assert!(verifier.verify(&token).await.is_ok(), "verified through PostgreSQL");
        assert_eq!(verifier.verify("sk_nope").await, Err(AuthError::Invalid));
        // The revoke lands in PostgreSQL but reports that the cache was not reached...
        let err = verifier.revoke("b").await.unwrap_err();
        assert!(format!("{err:#}").contains("cache entry could not"), "{err:#}");
        assert_eq!(verifier.verify(&revoked).await, Err(AuthError::Revoked));
        // ...and running it again once Redis is back finishes the job.
        redis.restart().unwrap();
        assert!(!verifier.revoke("b").await.unwrap());
        assert_eq!(verifier.verify(&revoked).await, Err(AuthError::Revoked));
        assert!(verifier.verify(&token).await.is_ok());
    }

    #[tokio::test]
    async fn both_stores_down_fails_closed() {
        // Private servers: these get stopped, the shared ones must not be.
        let mut pg = PrivatePostgres::start().unwrap();
        let mut redis = PrivateRedis::start().unwrap();
        let pool = crate::db::pool(&pg.url(), 2, Duration::from_secs(1), Duration::from_secs(5)).unwrap();
        crate::db::migrate::migrate(&mut pool.get().await.unwrap()).await.unwrap();
        let verifier = TokenVerifier::new(pool.clone(), redis_pool(&redis.url()).await, "t:");
        let (_, cached) = token_issue(&pool, "cached", None, None).await.unwrap();
        let (_, uncached) = token_issue(&pool, "uncached", None, None).await.unwrap();
        assert!(verifier.verify(&cached).await.is_ok());

        pg.stop().unwrap();
        assert!(verifier.verify(&cached).await.is_ok(), "a cache hit needs no PostgreSQL");
        assert_eq!(verifier.verify(&uncached).await, Err(AuthError::Unavailable));

        redis.stop().unwrap();
        assert_eq!(verifier.verify(&cached).await, Err(AuthError::Unavailable));
        assert_eq!(verifier.verify(&uncached).await, Err(AuthError::Unavailable));
        assert!(verifier.revoke("cached").await.is_err());
    }

    /// A PostgreSQL pool and a Redis pool whose servers are not there: any lookup fails.
    fn unreachable_stores() -> (Pool, RedisPool) {
        // Nothing listens on a port we just bound and released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = crate::db::pool(
            &format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            2,
            Duration::from_millis(500),
            Duration::from_secs(1),
        )
        .unwrap();
        let redis = bb8::Pool::builder()
            .connection_timeout(Duration::from_millis(500))
            .build_unchecked(crate::redis_pool::RedisManager::new(format!("redis://127.0.0.1:{port}")).unwrap());
        (pg, redis)
    }

    /// `token` with its character at `i` replaced.
    fn typo(token: &str, i: usize) -> String {
        let mut bytes = token.as_bytes().to_vec();
        bytes[i] = if bytes[i] == b'Q' { b'R' } else { b'Q' };
        String::from_utf8(bytes).unwrap()
    }

    #[tokio::test]
    async fn random_and_mistyped_tokens_are_refused_without_asking_any_store() {
        let (pg, redis) = unreachable_stores();
        let verifier = TokenVerifier::new(pg, redis, "t:");
        let issued = tokens::token_generate();
        for i in [3, 20, issued.len() - 1] {
            assert_eq!(verifier.verify(&typo(&issued, i)).await, Err(AuthError::Invalid), "typo at {i}");
        }
        // Random strings of the right length and alphabet: the checksum refuses them.
        for _ in 0..20 {
            let random = typo(&tokens::token_generate(), 10);
            assert_eq!(verifier.verify(&random).await, Err(AuthError::Invalid), "{random}");
        }
        // The stores really are down: a well-formed token needs them, and fails closed.
        assert_eq!(verifier.verify(&issued).await, Err(AuthError::Unavailable));
    }

    #[tokio::test]
    async fn refusals_from_postgres_are_remembered_and_issued_tokens_are_not_shadowed() {
        let (db, _redis, verifier) = setup().await;
        let unknown = tokens::token_generate();
        let unknown_legacy = tokens::tests::legacy_token();
        assert_eq!(verifier.verify(&unknown).await, Err(AuthError::Invalid));
        assert_eq!(verifier.verify(&unknown_legacy).await, Err(AuthError::Invalid));
        let (_, revoked) = token_issue(db.pool(), "gone", None, None).await.unwrap();
        assert!(tokens::token_revoke(db.pool(), "gone").await.unwrap(), "in PostgreSQL only");
        assert_eq!(verifier.verify(&revoked).await, Err(AuthError::Revoked));

        // The same verifier cut off from both stores still answers those, from memory...
        let (pg, redis) = unreachable_stores();
        let cut_off = TokenVerifier { pg, redis, ..verifier.clone() };
        assert_eq!(cut_off.verify(&unknown).await, Err(AuthError::Invalid));
        assert_eq!(cut_off.verify(&unknown_legacy).await, Err(AuthError::Invalid));
        assert_eq!(cut_off.verify(&revoked).await, Err(AuthError::Revoked));
        // ...but only those: anything else still needs a store.
        assert_eq!(cut_off.verify(&tokens::token_generate()).await, Err(AuthError::Unavailable));

        // A token issued after refusals works at once: it cannot have been refused before.
        let (id, fresh) = token_issue(db.pool(), "fresh", None, None).await.unwrap();
        assert_eq!(
            verifier.verify(&fresh).await,
            Ok(Principal { token_id: id, name: "fresh".into(), grant: Grant::Full })
        );
    }

    #[test]
    fn refusals_expire_and_the_map_stays_bounded() {
        let refusals = Refusals::default();
        let t0 = Instant::now();
        refusals.put("a", AuthError::Invalid, t0);
        assert_eq!(refusals.get("a", t0 + REFUSAL_TTL - Duration::from_millis(1)), Some(AuthError::Invalid));
        assert_eq!(refusals.get("a", t0 + REFUSAL_TTL), None);
        assert_eq!(refusals.get("b", t0), None);
        for i in 0..REFUSAL_MAX_ENTRIES + 10 {
            refusals.put(&i.to_string(), AuthError::Invalid, t0);
            assert!(refusals.entries.lock().unwrap().len() <= REFUSAL_MAX_ENTRIES);
        }
    }

    #[tokio::test]
    async fn tokens_issued_in_the_old_format_still_verify_and_revoke() {
        let (db, _redis, verifier) = setup().await;
        let legacy = tokens::tests::legacy_token();
        assert_eq!(tokens::token_shape(&legacy), Some(tokens::TokenShape::Legacy));
        let id = tokens::tests::insert_token(db.pool(), "old-ci", &legacy).await;
        let expected = Principal { token_id: id, name: "old-ci".into(), grant: Grant::Full };
        assert_eq!(verifier.verify(&legacy).await, Ok(expected.clone()));
        assert_eq!(verifier.verify(&legacy).await, Ok(expected), "from the cache too");
        assert_eq!(verifier.verify(&typo(&legacy, 10)).await, Err(AuthError::Invalid));
        assert!(verifier.revoke("old-ci").await.unwrap());
        assert_eq!(verifier.verify(&legacy).await, Err(AuthError::Revoked));
    }

    #[tokio::test]
    async fn postgres_lookups_are_bounded_and_fail_closed_when_all_are_busy() {
        let (db, _redis, verifier) = setup().await;
        let verifier = TokenVerifier { lookup_wait: Duration::from_millis(50), ..verifier };
        let (_, token) = token_issue(db.pool(), "busy", None, None).await.unwrap();
        // As if a flood of unknown tokens held every slot.
        let flood = verifier.lookups.clone().acquire_many_owned(u32::try_from(MAX_LOOKUPS).unwrap()).await.unwrap();
        assert_eq!(verifier.verify(&token).await, Err(AuthError::Unavailable));
        drop(flood);
        assert!(verifier.verify(&token).await.is_ok());
    }
}
