//! Queue configuration and the clock every script receives its time from.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Source of "now" (ms since the Unix epoch) passed to every script as an
/// argument. Scripts never read the server clock, so tests can drive time.
pub trait Clock: Send + Sync + fmt::Debug {
    fn now_ms(&self) -> i64;
}

/// Production clock: this process's system time.
///
/// Chosen over Redis `TIME` because it costs no extra round trip. Leases,
/// backoffs and retention are seconds long, so the milliseconds of skew NTP
/// leaves between hosts do not matter; hosts with badly skewed clocks would
/// reap each other's leases early or late (still at-least-once, never lost).
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
    }
}

/// A clock that only moves when told to (tests).
#[derive(Debug, Clone)]
pub struct FakeClock(Arc<AtomicI64>);

impl FakeClock {
    pub fn new(start_ms: i64) -> Self {
        FakeClock(Arc::new(AtomicI64::new(start_ms)))
    }
    pub fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_millis() as i64, Ordering::SeqCst);
    }
    pub fn set(&self, ms: i64) {
        self.0.store(ms, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ms(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// How `dequeue` chooses between priorities.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PriorityMode {
    /// Always the highest non-empty priority first (low can starve).
    Strict,
    /// Each dequeued slot prefers a priority with probability proportional to
    /// its weight, so every non-zero weight keeps making progress.
    Weighted { critical: u32, default: u32, low: u32 },
}

impl Default for PriorityMode {
    fn default() -> Self {
        PriorityMode::Weighted { critical: 6, default: 3, low: 1 }
    }
}

/// Retry limits and exponential backoff: the delay before retry `n`
/// (1-based) is `min(cap, base * factor^(n-1))`, then moved by up to
/// `±jitter` of itself.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// Retries after the first attempt (so `max_retries + 1` attempts).
    pub max_retries: u32,
    pub base: Duration,
    pub factor: f64,
    pub cap: Duration,
    /// Fraction in `[0, 1]`; 0 gives the exact schedule.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(3600),
            jitter: 0.0,
        }
    }
}

/// Everything tunable about one logical queue.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// Key prefix; every key is `{<prefix>}:<name>`, one hash tag so the
    /// scripts work on Redis Cluster. Distinct prefixes are distinct queues.
    pub prefix: String,
    pub mode: PriorityMode,
    /// How long a dequeued task stays leased without an `extend`.
    pub lease: Duration,
    pub retry: RetryPolicy,
    /// Handler timeout for tasks that do not set one.
    pub default_timeout: Duration,
    /// How long completed tasks stay visible to `get` (0 = deleted on ack).
    pub completed_retention: Duration,
    /// How long dead tasks are kept, and how many at most.
    pub dead_retention: Duration,
    pub dead_max: usize,
    /// Upper bound on how long a unique key can block re-enqueueing, counted
    /// from the task's run time, in case its release is somehow missed.
    pub unique_ttl: Duration,
    /// `reap` and `janitor` do their work at most once per interval across
    /// all workers (a guard key in Redis, in clock time).
    pub maintenance_interval: Duration,
    /// Most tasks coalesced into one enqueue or ack script call.
    pub max_batch: usize,
    /// Concurrent batched script calls in flight per batcher.
    pub max_inflight_batches: usize,
    /// Cap on queued wake tokens (about the most idle workers expected).
    pub wake_cap: usize,
    pub clock: Arc<dyn Clock>,
}

impl QueueConfig {
    pub fn new(prefix: impl Into<String>) -> Self {
        QueueConfig { prefix: prefix.into(), ..Default::default() }
    }
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            prefix: "tq".to_owned(),
            mode: PriorityMode::default(),
            lease: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            default_timeout: Duration::from_secs(600),
            completed_retention: Duration::from_secs(3600),
            dead_retention: Duration::from_secs(7 * 24 * 3600),
            dead_max: 10_000,
            unique_ttl: Duration::from_secs(24 * 3600),
            maintenance_interval: Duration::from_secs(1),
            max_batch: 512,
            max_inflight_batches: 4,
            wake_cap: 256,
            clock: Arc::new(SystemClock),
        }
    }
}
