//! `Worker::run`: a task processor over a `Queue`. It blocks on the wake list
//! when idle, leases tasks in batches up to its free slots, confirms their
//! start, runs each under a timeout with a lease-extending heartbeat, cancels
//! a handler whose lease is lost (or, with Redis unreachable, has run out by
//! this worker's own monotonic estimate), and shuts down gracefully.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::time::Duration;

use futures_util::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::backend::BlockingConn;
use super::client::Queue;
use super::error::Result;
use super::task::Leased;

/// Why a handler did not complete its task.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub message: String,
    /// Skip remaining retries and move the task straight to dead.
    pub permanent: bool,
}

impl TaskError {
    /// A failure worth retrying (with backoff, up to `max_retries`).
    pub fn retry(message: impl Into<String>) -> Self {
        TaskError { message: message.into(), permanent: false }
    }

    /// A failure no retry can fix.
    pub fn permanent(message: impl Into<String>) -> Self {
        TaskError { message: message.into(), permanent: true }
    }
}

/// Boxed so `Handler` stays dyn-compatible (`Arc<dyn Handler>`).
pub type HandlerFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<String>, TaskError>> + Send + 'a>>;

/// Runs tasks. Delivery is at-least-once: a task can run again after a lost
/// lease or a crash, so handlers key their side effects by `task.id`.
pub trait Handler: Send + Sync + 'static {
    /// `Ok(result)` completes the task, storing `result` in its record.
    fn handle<'a>(&'a self, task: &'a Leased) -> HandlerFuture<'a>;
}

/// A `Handler` from an async closure taking an owned `Leased`.
pub struct FnHandler<F>(pub F);

impl<F, Fut> Handler for FnHandler<F>
where
    F: Fn(Leased) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Option<String>, TaskError>> + Send + 'static,
{
    fn handle<'a>(&'a self, task: &'a Leased) -> HandlerFuture<'a> {
        Box::pin((self.0)(task.clone()))
    }
}

/// Worker tuning. The lease length itself is `QueueConfig::lease`.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Tasks run at once.
    pub concurrency: usize,
    /// How often a running task's lease is extended; `lease / 3` if unset.
    pub heartbeat: Option<Duration>,
    /// On shutdown, how long running tasks may finish before they are
    /// interrupted and requeued at the head of their priority.
    pub grace: Duration,
    /// Longest BLPOP on the wake list; also how late an idle worker notices
    /// a delayed task or retry coming due.
    pub poll: Duration,
    /// How often this worker calls `reap` and `janitor` (the queue's guard
    /// makes them run once per `maintenance_interval` across all workers).
    pub maintenance: Duration,
    /// Independent dequeue loops sharing `concurrency` between them; unset, one per
    /// `SLOTS_PER_LANE` slots, at most `MAX_LANES`. Each loop dequeues for its own free
    /// slots and waits for the `dequeue` and `started` replies before running them, so
    /// several loops keep Redis busy while the others wait (short tasks are bound by those
    /// round trips, not by the handlers); each idle loop holds a wake connection.
    pub lanes: Option<usize>,
}

/// Slots per dequeue loop when `WorkerConfig::lanes` is unset.
const SLOTS_PER_LANE: usize = 25;
/// Most dequeue loops when `WorkerConfig::lanes` is unset.
const MAX_LANES: usize = 4;

impl Default for WorkerConfig {
    fn default() -> Self {
        WorkerConfig {
            concurrency: 10,
            heartbeat: None,
            grace: Duration::from_secs(8),
            poll: Duration::from_secs(1),
            maintenance: Duration::from_secs(1),
            lanes: None,
        }
    }
}

/// Most tasks leased by one dequeue call.
const WORKER_BATCH: usize = 256;

/// Longest a free slot waits for the lane's other slots to free up before the lane dequeues
/// for the free ones: tasks finishing together (one batched ack reply wakes many) then share
/// one dequeue and one `started` call instead of paying two round trips each (a script call
/// costs Redis several times what one more task in it does). A slot idles at most this long.
const GATHER: Duration = Duration::from_millis(1);

/// Exponential backoff for reconnecting after Redis errors.
struct Backoff {
    next: Duration,
}

impl Backoff {
    const MIN: Duration = Duration::from_millis(50);
    const MAX: Duration = Duration::from_secs(2);

    fn new() -> Self {
        Backoff { next: Self::MIN }
    }
    fn reset(&mut self) {
        self.next = Self::MIN;
    }
    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(Self::MAX);
        d
    }
}

pub struct Worker;

impl Worker {
    /// Processes tasks until `shutdown` resolves, then stops taking work,
    /// lets running tasks finish for up to `grace`, requeues the rest at the
    /// head of their priority and returns. Redis errors are logged and
    /// retried with backoff; they never end the loop.
    pub async fn run<S>(queue: Queue, handler: Arc<dyn Handler>, cfg: WorkerConfig, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        let concurrency = cfg.concurrency.max(1);
        let lanes = cfg.lanes.unwrap_or(concurrency.div_ceil(SLOTS_PER_LANE).min(MAX_LANES)).clamp(1, concurrency);
        // `quit`: stop taking work; `stop`: interrupt running handlers (grace is over).
        let (quit_tx, quit_rx) = watch::channel(false);
        let (stop_tx, stop_rx) = watch::channel(false);
        let stop_tx = Arc::new(stop_tx);
        let all = futures_util::future::join_all((0..lanes).map(|i| {
            let lane = Lane {
                queue: queue.clone(),
                handler: handler.clone(),
                cfg: cfg.clone(),
                // The slots split as evenly as they go.
                concurrency: concurrency / lanes + usize::from(i < concurrency % lanes),
                // One loop is enough to call the (guarded) maintenance steps.
                maintains: i == 0,
                stop_tx: stop_tx.clone(),
                stop_rx: stop_rx.clone(),
            };
            let mut quit = quit_rx.clone();
            lane.run(async move {
                if quit.wait_for(|q| *q).await.is_err() {
                    std::future::pending::<()>().await;
                }
            })
        }));
        let mut all = pin!(all);
        tokio::select! {
            () = shutdown => {}
            _ = &mut all => return,
        }
        let _ = quit_tx.send(true);
        all.await;
    }
}

/// One dequeue loop with its share of the worker's slots.
struct Lane {
    queue: Queue,
    handler: Arc<dyn Handler>,
    cfg: WorkerConfig,
    concurrency: usize,
    maintains: bool,
    stop_tx: Arc<watch::Sender<bool>>,
    stop_rx: watch::Receiver<bool>,
}

impl Lane {
    /// The worker loop of `Worker::run`, over this lane's slots, until `shutdown`; then the
    /// lane's running tasks get the grace period.
    async fn run<S>(self, shutdown: S)
    where
        S: Future<Output = ()>,
    {
        let Lane { queue, handler, cfg, concurrency, maintains, stop_tx, stop_rx } = self;
        let heartbeat = cfg.heartbeat.unwrap_or(queue.config().lease / 3).max(Duration::from_millis(10));
        let slots = Arc::new(Semaphore::new(concurrency));
        let mut running: JoinSet<()> = JoinSet::new();
        let mut shutdown = pin!(shutdown);
        let mut waiter: Option<BlockingConn> = None;
        let mut backoff = Backoff::new();
        // Far in the future for the lanes that do not maintain: the timer never fires.
        let never = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
        let mut next_maintenance = if maintains { Instant::now() } else { never };

        loop {
            while let Some(done) = running.try_join_next() {
                if let Err(e) = done {
                    tracing::error!(error = %e, "task runner ended abnormally");
                }
            }
            if maintains && Instant::now() >= next_maintenance {
                maintenance(&queue).await;
                next_maintenance = Instant::now() + cfg.maintenance;
            }

            // Wait for a free slot, still running maintenance while full.
            let first = tokio::select! {
                biased;
                () = &mut shutdown => break,
                p = slots.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
                () = tokio::time::sleep_until(next_maintenance) => continue,
            };
            // Gather the slots of tasks finishing at about the same moment, so
            // they share one dequeue: until all of the lane's slots are free, or `GATHER`.
            let mut permits = vec![first];
            let max = WORKER_BATCH.min(concurrency);
            let gather_until = Instant::now() + GATHER;
            let mut stopping = false;
            loop {
                while permits.len() < max {
                    match slots.clone().try_acquire_owned() {
                        Ok(p) => permits.push(p),
                        Err(_) => break,
                    }
                }
                if permits.len() >= max {
                    break;
                }
                tokio::select! {
                    biased;
                    // Not polled again: a finished future may not be.
                    () = &mut shutdown => {
                        stopping = true;
                        break;
                    }
                    p = slots.clone().acquire_owned() => match p {
                        Ok(p) => permits.push(p),
                        Err(_) => break,
                    },
                    () = tokio::time::sleep_until(gather_until) => break,
                }
            }
            if stopping {
                break;
            }

            // Before the call: the leases it grants end no earlier than this
            // plus the lease length, whichever try of the call ran.
            let asked = Instant::now();
            let batch = tokio::select! {
                biased;
                () = &mut shutdown => break,
                r = queue.dequeue(permits.len()) => r,
            };
            let batch = match batch {
                Ok(tasks) if !tasks.is_empty() => match queue.started(&tasks).await {
                    Ok(ours) => Ok(tasks.into_iter().zip(ours).filter(|(_, ours)| *ours).map(|(t, _)| t).collect()),
                    // Not run: unconfirmed, these leases come back uncharged
                    // when they expire.
                    Err(e) => Err(e),
                },
                other => other,
            };
            match batch {
                Ok(tasks) if !tasks.is_empty() => {
                    backoff.reset();
                    // Unused permits go back to the semaphore when dropped.
                    for (task, permit) in tasks.into_iter().zip(permits) {
                        let span = crate::telemetry::task_span(
                            &task.id,
                            &task.kind,
                            task.attempt,
                            task.traceparent.as_deref(),
                        );
                        let lease = Lease { task, valid_until: asked + queue.config().lease, heartbeat };
                        let run = run_task(queue.clone(), handler.clone(), lease, permit, stop_rx.clone());
                        match span {
                            None => running.spawn(run),
                            Some(span) => running.spawn(tracing::Instrument::instrument(run, span)),
                        };
                    }
                }
                Ok(_) => {
                    drop(permits);
                    let conn = match waiter.as_mut() {
                        Some(c) => c,
                        None => match queue.waiter(cfg.poll).await {
                            Ok(c) => waiter.insert(c),
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot open wake connection");
                                if pause(&mut shutdown, backoff.step()).await {
                                    break;
                                }
                                continue;
                            }
                        },
                    };
                    let woke = tokio::select! {
                        biased;
                        () = &mut shutdown => break,
                        r = queue.wait_for_work(conn, cfg.poll) => r,
                    };
                    if let Err(e) = woke {
                        // Re-established on the next idle turn, after a pause.
                        tracing::warn!(error = %e, "wake connection failed");
                        waiter = None;
                        if pause(&mut shutdown, backoff.step()).await {
                            break;
                        }
                    } else {
                        backoff.reset();
                    }
                }
                Err(e) => {
                    drop(permits);
                    tracing::warn!(error = %e, "dequeue failed");
                    if pause(&mut shutdown, backoff.step()).await {
                        break;
                    }
                }
            }
        }

        drop(waiter);
        let drained = tokio::time::timeout(cfg.grace, async { while running.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            let _ = stop_tx.send(true);
            while running.join_next().await.is_some() {}
        }
    }
}

/// Sleeps for `d`; true if shutdown fired meanwhile.
async fn pause<S: Future<Output = ()>>(shutdown: &mut Pin<&mut S>, d: Duration) -> bool {
    tokio::select! {
        biased;
        () = shutdown.as_mut() => true,
        () = tokio::time::sleep(d) => false,
    }
}

async fn maintenance(queue: &Queue) {
    match queue.reap().await {
        Ok(reaped) => crate::metrics::record_reaped(reaped.unwrap_or(0)),
        Err(e) => tracing::warn!(error = %e, "reap failed"),
    }
    if let Err(e) = queue.janitor().await {
        tracing::warn!(error = %e, "janitor failed");
    }
}

enum Outcome {
    Done(Result<Option<String>, TaskError>),
    TimedOut,
    Interrupted,
    /// The lease is gone: the handler was cancelled, and nothing is reported
    /// (the task belongs to the reaper, or another worker, now).
    LeaseEnded,
}

/// A leased task and this worker's estimate of how long the lease holds.
struct Lease {
    task: Leased,
    /// No later than the lease's deadline in Redis: measured from before the
    /// call that set it, on this process's monotonic clock.
    valid_until: Instant,
    heartbeat: Duration,
}

/// Extends the lease every `heartbeat`; returns only when the lease is over:
/// refused by Redis (lost for certain), or Redis unreachable until the lease
/// ran out by our own estimate (so another worker may take it from then on).
async fn keep_lease(queue: &Queue, lease: &Lease) {
    let task = &lease.task;
    let mut valid_until = lease.valid_until;
    let mut next = Instant::now() + lease.heartbeat;
    loop {
        tokio::select! {
            () = tokio::time::sleep_until(valid_until) => break,
            () = tokio::time::sleep_until(next) => {}
        }
        let sent = Instant::now();
        let r = tokio::select! {
            () = tokio::time::sleep_until(valid_until) => break,
            r = queue.extend(task) => r,
        };
        match r {
            Ok(true) => {
                valid_until = sent + queue.config().lease;
                next = sent + lease.heartbeat;
            }
            Ok(false) => {
                tracing::warn!(task = %task.id, "lease lost while running: cancelling the handler");
                return;
            }
            Err(e) => {
                tracing::warn!(task = %task.id, error = %e, "lease extend failed; trying again");
                next = Instant::now() + (lease.heartbeat / 4).max(Duration::from_millis(10));
            }
        }
    }
    tracing::warn!(task = %task.id, "lease ran out with Redis unreachable: cancelling the handler");
}

async fn run_task(
    queue: Queue,
    handler: Arc<dyn Handler>,
    lease: Lease,
    slot: OwnedSemaphorePermit,
    mut stop: watch::Receiver<bool>,
) {
    let task = &lease.task;
    // Inside an async block so a panic while creating the future is caught too.
    let handled = AssertUnwindSafe(async {
        let started = Instant::now();
        let r = handler.handle(task).await;
        crate::metrics::record_handler(&task.kind, started.elapsed());
        r
    })
    .catch_unwind();
    let work = tokio::time::timeout(task.timeout, handled);
    let beat = keep_lease(&queue, &lease);
    let interrupted = async {
        if stop.wait_for(|s| *s).await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let outcome = tokio::select! {
        r = work => match r {
            Ok(Ok(r)) => Outcome::Done(r),
            Ok(Err(_)) => Outcome::Done(Err(TaskError::retry("handler panicked"))),
            Err(_) => Outcome::TimedOut,
        },
        () = beat => Outcome::LeaseEnded,
        () = interrupted => Outcome::Interrupted,
    };

    // The slot bounds running handlers; the (batched) ack need not hold it.
    drop(slot);
    if matches!(outcome, Outcome::Done(Err(_)) | Outcome::TimedOut) && crate::telemetry::enabled() {
        // The task's span (`telemetry::task_span`) is the current one here.
        crate::telemetry::record_error(&tracing::Span::current());
    }

    // Finishing calls are safe to repeat, so they are retried (on top of the
    // backend's own retries) for half a lease; if they still fail the lease
    // expires and the reaper hands the task out again.
    let deadline = Instant::now() + queue.config().lease / 2;
    match outcome {
        Outcome::LeaseEnded => {}
        Outcome::Done(Ok(result)) => {
            let r = retrying(deadline, || queue.ack(task, result.clone())).await;
            match r {
                Ok(true) => {}
                Ok(false) => tracing::warn!(task = %task.id, "ack refused: lease was lost"),
                Err(e) => tracing::warn!(task = %task.id, error = %e, "ack failed"),
            }
        }
        Outcome::Done(Err(e)) => {
            let r = retrying(deadline, || queue.fail(task, &e.message, e.permanent)).await;
            if let Err(e) = r {
                tracing::warn!(task = %task.id, error = %e, "fail failed");
            }
        }
        Outcome::TimedOut => {
            let msg = format!("timed out after {:?}", task.timeout);
            let r = retrying(deadline, || queue.fail(task, &msg, false)).await;
            if let Err(e) = r {
                tracing::warn!(task = %task.id, error = %e, "fail failed");
            }
        }
        Outcome::Interrupted => {
            let r = retrying(deadline, || queue.requeue_front(task)).await;
            if let Err(e) = r {
                tracing::warn!(task = %task.id, error = %e, "requeue failed");
            }
        }
    }
}

async fn retrying<T, F, Fut>(deadline: Instant, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let mut backoff = Backoff::new();
    loop {
        match call().await {
            Ok(v) => return Ok(v),
            Err(e) => {
                let wait = backoff.step();
                if Instant::now() + wait > deadline {
                    return Err(e);
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}
