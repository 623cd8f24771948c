//! Queue configuration, and the test clock the scripts can be told to use.

use std::time::Duration;

/// The test clock (`crate::clock`), re-exported where the queue's users look for it.
/// Production passes no clock: every script reads Redis `TIME`, the one clock every worker
/// shares, so a host whose clock is off can neither reap the fleet's leases early nor block
/// maintenance. With a `FakeClock` in [`QueueConfig::fake_clock`] the scripts use its time
/// instead.
pub use crate::clock::FakeClock;

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
    /// Fraction in `[0, 1]`; 0 gives the exact schedule. Default 0.25.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_retries: 5,
            base: Duration::from_secs(1),
            factor: 2.0,
            cap: Duration::from_secs(3600),
            // Spreads the retries of tasks that failed together (an outage
            // fails a whole batch at once) so they do not return together.
            jitter: 0.25,
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
    /// How long dead tasks are kept, how many at most, and at most how many
    /// bytes of records and payloads: beyond either bound the oldest go first,
    /// trimmed as tasks die, so the dead set stays bounded at any failure rate.
    pub dead_retention: Duration,
    pub dead_max: usize,
    pub dead_max_bytes: u64,
    /// Upper bound on how long a unique key can block re-enqueueing, counted
    /// from the task's run time, in case its release is somehow missed.
    pub unique_ttl: Duration,
    /// `reap` and `janitor` do their work at most once per interval across
    /// all workers (a guard in Redis, in Redis time).
    pub maintenance_interval: Duration,
    /// Most tasks coalesced into one enqueue or ack script call.
    pub max_batch: usize,
    /// Concurrent enqueue script calls in flight (a submission's latency).
    pub max_inflight_batches: usize,
    /// Concurrent ack script calls in flight: one, so the tasks that finish
    /// while it runs share the next call. An ack call costs Redis, the
    /// queue's one shared core, about 30 µs of its own besides a few per
    /// task: with 4 in flight the bench's acks averaged 8.5 tasks a call,
    /// with one 25, and Redis spent a quarter less per processed task.
    pub max_inflight_acks: usize,
    /// Cap on queued wake tokens (about the most idle workers expected).
    pub wake_cap: usize,
    /// How long one Redis call may wait for its reply before it counts as
    /// failed (redis-rs would otherwise use 500 ms). Blocking waits get this on
    /// top of their wait.
    pub response_timeout: Duration,
    /// How long a call that failed in transit (timeout, dropped connection,
    /// Redis loading) is retried. Every script is safe to repeat: a retry
    /// after a lost reply has the effect of one call.
    pub retry_window: Duration,
    /// Replicas that must acknowledge each enqueue (`WAIT`) before it is answered;
    /// 0 = none (the enqueue is answered once the master has it).
    pub wait_replicas: u32,
    /// Longest `WAIT` for them; fewer in time fail the enqueue (`QueueError::NotReplicated`).
    pub wait_timeout: Duration,
    /// Tests only: the time every script uses instead of Redis `TIME`.
    pub fake_clock: Option<FakeClock>,
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
            dead_max_bytes: 64 * 1024 * 1024,
            unique_ttl: Duration::from_secs(24 * 3600),
            maintenance_interval: Duration::from_secs(1),
            max_batch: 512,
            max_inflight_batches: 4,
            max_inflight_acks: 1,
            wake_cap: 256,
            response_timeout: Duration::from_secs(2),
            retry_window: Duration::from_secs(5),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(500),
            fake_clock: None,
        }
    }
}
