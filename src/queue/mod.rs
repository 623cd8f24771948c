//! A Redis priority queue with leases, retries and unique keys (independent of HTTP).
//! Every state change is one Lua script over keys sharing a single hash tag,
//! so the same code runs on a single server (bb8 pool) and on Redis Cluster.
//!
//! # API
//! - [`Queue::new`]`(backend, QueueConfig)`: a cloneable handle. `backend` is a
//!   `bb8::Pool<RedisConnectionManager>` or [`Backend::cluster`]`(client)`.
//! - [`Queue::enqueue`]`(NewTask) -> Enqueued { id, duplicate_of }`: concurrent
//!   calls are coalesced into one script call by a background batcher.
//! - [`Queue::dequeue`]`(n) -> Vec<Leased>`: leases up to `n` tasks, each with a
//!   random token; [`Queue::extend`] / [`Queue::ack`] / [`Queue::fail`] /
//!   [`Queue::requeue_front`] are refused for a stale token (fencing). Acks
//!   are batched like enqueues.
//! - [`Queue::reap`] (expired leases → retry/dead), [`Queue::janitor`]
//!   (retention of completed/dead tasks, lapsed unique locks): called
//!   periodically by every worker, guarded to run once per interval.
//! - [`Queue::get`]`(id) -> Option<TaskRecord>`, [`Queue::stats`],
//!   [`Queue::pause`] / [`Queue::resume`] per priority.
//! - [`Worker::run`]`(queue, Arc<dyn Handler>, WorkerConfig, shutdown)`.
//!
//! # Semantics
//! - Priorities `Critical`, `Default`, `Low`, FIFO within one. Weighted mode
//!   (default 6:3:1) picks each dequeued slot's preferred priority at random
//!   by weight, so low keeps progressing under constant critical load; strict
//!   mode always takes the highest non-empty priority.
//! - Delivery is at-least-once: a task whose lease expires (worker crash,
//!   lost heartbeat) counts as a failed attempt and runs again, so handlers
//!   must be idempotent.
//! - Retries: `max_retries` (default 5) after the first attempt, backoff
//!   `min(cap, base * factor^(n-1))` ± jitter (1, 2, 4, 8, 16 s by default);
//!   a retry keeps its priority. Then the task is `dead`, with its history.
//! - A unique key rejects duplicates while its holder is pending, scheduled,
//!   active or retrying; it is released on completion and on death, and
//!   lapses after `unique_ttl` past the task's run time regardless.
//! - All time comes from `QueueConfig::clock` (system time in production,
//!   see [`SystemClock`]), passed to scripts as `now_ms`.
//!
//! # Redis layout and settings
//! Keys `{<prefix>}:p:critical|p:default|p:low` (lists of ids), `sched` and
//! `retry` (zsets by run time), `lease` (zset by deadline: the index of
//! running tasks), `meta` (hash id → MessagePack record), `data` (hash id → kind and
//! payload), `done` (zset by expiry), `dead` (zset by death time), `uniq` /
//! `uniqexp` (unique locks and their expiry), `paused`, `wake` (list idle
//! workers BLPOP), `guards`, `counters`. Run Redis with
//! `maxmemory-policy noeviction` and AOF (`appendfsync everysec` or `always`).
//! Keep bb8's default `test_on_check_out(true)` on the pool: bb8-redis never
//! reports a connection broken, so the checkout PING is what replaces
//! connections after a Redis restart.
//!
//! # Files
//! `client.rs` (Queue), `worker.rs` (Worker, Handler), `task.rs` (API
//! values), `config.rs` (config, clocks), `backend.rs` (pool or cluster
//! connections), `batch.rs` (call coalescing), `scripts.rs` + `scripts/*.lua`,
//! `error.rs`, `tests/` (against private redis-server instances).

mod backend;
mod batch;
mod client;
mod config;
mod error;
mod scripts;
mod task;
mod worker;

#[cfg(test)]
mod tests;

pub use backend::Backend;
pub use client::{JanitorReport, MAX_DEQUEUE, Queue};
pub use config::{Clock, FakeClock, PriorityMode, QueueConfig, RetryPolicy, SystemClock};
pub use error::{QueueError, Result};
pub use task::{AttemptError, Enqueued, FailOutcome, Leased, NewTask, Priority, Stats, TaskRecord, TaskState};
pub use worker::{FnHandler, Handler, HandlerFuture, TaskError, Worker, WorkerConfig};
