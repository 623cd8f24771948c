//! A Redis priority queue with leases, retries and unique keys (independent of HTTP).
//! Every state change is one Lua script over keys sharing a single hash tag,
//! so the same code runs on a single server (bb8 pool) and on Redis Cluster.
//!
//! # API
//! - [`Queue::new`]`(backend, QueueConfig)`: a cloneable handle. `backend` is a
//!   `redis_pool::RedisPool` or [`Backend::cluster`]`(client)`.
//! - [`Queue::enqueue`]`(NewTask) -> Enqueued { id, duplicate_of, duplicate_differs, backlog }`:
//!   concurrent calls are coalesced into one script call by a background batcher, which also
//!   reads the queue's depth (`Backlog`) for wait estimates.
//! - [`Queue::dequeue`]`(n) -> Vec<Leased>`: leases up to `n` tasks, each with a
//!   random token; [`Queue::started`] confirms a handler is about to run them;
//!   [`Queue::extend`] / [`Queue::ack`] / [`Queue::fail`] /
//!   [`Queue::requeue_front`] are refused for a stale token (fencing). Acks
//!   are batched like enqueues.
//! - [`Queue::reap`] (expired leases → retry/dead), [`Queue::janitor`]
//!   (retention of completed/dead tasks, lapsed unique locks): called
//!   periodically by every worker, guarded to run once per interval.
//! - [`Queue::get`]`(id) -> Option<TaskRecord>`, [`Queue::stats`],
//!   [`Queue::pause`] / [`Queue::resume`] per priority.
//! - Administration (`admin.rs`): [`Queue::list`] (one state, a page at a
//!   time, from the state's own index), [`Queue::retry_dead`],
//!   [`Queue::delete_pending`], [`Queue::cancel_active`].
//! - [`Worker::run`]`(queue, Arc<dyn Handler>, WorkerConfig, shutdown)`.
//! - [`ping`]`(pool)`: one `PING`, for `/health` (beside `db::ping`).
//!
//! # Semantics
//! - Priorities `Critical`, `Default`, `Low`, FIFO within one. Weighted mode
//!   (default 6:3:1) picks each dequeued slot's preferred priority at random
//!   by weight, so low keeps progressing under constant critical load; strict
//!   mode always takes the highest non-empty priority.
//! - Delivery is at-least-once: a task whose lease expires (worker crash,
//!   lost heartbeat) counts as a failed attempt and runs again, so handlers
//!   must be idempotent. A lease whose start was never confirmed (the
//!   dequeue reply was lost) returns to the head of its priority uncharged.
//! - Lost replies: every call is named by an id the client chose (the task
//!   id for enqueue, a call token for dequeue, the lease token for the rest)
//!   and is repeated while it fails in transit (`response_timeout`,
//!   `retry_window`); a repeat has the effect of one call (an ack repeated
//!   with the same token is one ack, still answered `true`). With
//!   `completed_retention` 0 a repeated enqueue of an already completed and
//!   deleted task would store it again.
//! - Retries: `max_retries` (default 5) after the first attempt, backoff
//!   `min(cap, base * factor^(n-1))` ± 25 % jitter (about 1, 2, 4, 8, 16 s by
//!   default); a retry keeps its priority. Then the task is `dead`, with its
//!   history. The dead set is bounded by count and bytes (oldest go first).
//! - Memory: a completed task's payload is dropped at once; its record stays
//!   for `completed_retention`, and every ack removes up to twice as many
//!   expired records as it completes, so cleanup keeps pace at any rate.
//! - A unique key rejects duplicates while its holder is pending, scheduled,
//!   active or retrying; it is released on completion and on death, and
//!   lapses after `unique_ttl` past the task's run time regardless.
//! - All time is Redis `TIME`, read inside the scripts: leases, reaping and
//!   the maintenance guards agree across hosts whatever their clocks say.
//!   Tests pass a [`FakeClock`] (`QueueConfig::fake_clock`) instead.
//!
//! # Redis layout and settings
//! Keys `{<prefix>}:p:critical|p:default|p:low` (lists of ids), `sched` and
//! `retry` (zsets by run time), `lease` (zset by deadline: the index of
//! running tasks), `meta` (hash id → MessagePack record), `data` (hash id → kind and
//! payload), `done` (zset by expiry), `dead` (zset by death time), `uniq` /
//! `uniqexp` (unique locks and their expiry), `paused`, `wake` (list idle
//! workers BLPOP), `guards`, `counters`, `unstarted` (leases not yet
//! confirmed started), `active` / `fin` (hash id → a lease's or a
//! completion's overlay on the record: the hot path writes these short
//! strings instead of rewriting the MessagePack record, and every other
//! script folds them in when it reads or saves a record), `call:<token>`
//! (what one dequeue call leased, kept a lease length). Run Redis with
//! `maxmemory-policy noeviction` and AOF (`appendfsync everysec` or `always`).
//! Build the pool over `redis_pool::RedisManager` and keep bb8's default
//! `test_on_check_out(true)`: the manager drops a connection whose call failed
//! in transit and `PING`s the others at their next checkout only after such a
//! failure, which is what replaces connections after a Redis restart without
//! a round trip per checkout.
//!
//! # Files
//! `client.rs` (Queue), `admin.rs` (listing and the operator's actions), `worker.rs` (Worker, Handler), `eta.rs` (the wait
//! of a new task from the backlog and completion rate), `task.rs` (API
//! values), `record.rs` (the MessagePack record's lease fields, read by the worker), `config.rs` (config; the test clock is `crate::clock`), `backend.rs`
//! (pool or cluster connections, `ping`), `batch.rs` (call coalescing), `scripts.rs` + `scripts/*.lua`,
//! `error.rs`, `tests/` (against private redis-server instances).

mod admin;
mod backend;
mod batch;
mod client;
mod config;
mod error;
pub mod eta;
mod record;
mod scripts;
mod task;
mod worker;

#[cfg(test)]
mod tests;

pub use admin::{AdminOutcome, MAX_PAGE, PageCursor, TaskPage};
pub use backend::{Backend, ping};
pub use client::{JanitorReport, MAX_DEQUEUE, Queue};
pub use config::{FakeClock, PriorityMode, QueueConfig, RetryPolicy};
pub use error::{QueueError, Result};
pub use task::{AttemptError, Backlog, Enqueued, FailOutcome, Leased, NewTask, Priority, Stats, TaskRecord, TaskState};
pub use worker::{FnHandler, Handler, HandlerFuture, TaskError, Worker, WorkerConfig};
