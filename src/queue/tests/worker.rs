//! Worker behaviour against a private server in real time. Waits poll for a
//! condition with a bounded deadline; nothing asserts on wall-clock duration.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use uuid::Uuid;

use super::server::{RedisServer, raw_command};
use crate::queue::*;

/// Polls `cond` every 10 ms until it holds; panics after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while !cond().await {
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn config(name: &str) -> QueueConfig {
    let mut cfg = QueueConfig::new(format!("w-{name}-{}", Uuid::new_v4().simple()));
    cfg.lease = Duration::from_secs(2);
    cfg.maintenance_interval = Duration::from_millis(50);
    cfg.retry.base = Duration::from_millis(20);
    cfg.retry.cap = Duration::from_millis(100);
    cfg
}

fn fast_worker() -> WorkerConfig {
    WorkerConfig {
        concurrency: 4,
        poll: Duration::from_millis(200),
        maintenance: Duration::from_millis(50),
        grace: Duration::from_secs(5),
        ..Default::default()
    }
}

struct Running {
    stop: Option<oneshot::Sender<()>>,
    handle: JoinHandle<()>,
}

impl Running {
    async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), self.handle).await.expect("worker stopped").expect("worker task");
    }
}

fn spawn_worker(q: &Queue, handler: Arc<dyn Handler>, cfg: WorkerConfig) -> Running {
    let (tx, rx) = oneshot::channel();
    let handle = tokio::spawn(Worker::run(q.clone(), handler, cfg, async {
        let _ = rx.await;
    }));
    Running { stop: Some(tx), handle }
}

type Seen = Arc<Mutex<Vec<(Uuid, u32)>>>;

/// Records (id, attempt) of every run, then behaves as `f` says.
fn recording<F>(seen: Seen, f: F) -> Arc<dyn Handler>
where
    F: Fn(&Leased) -> Result<Option<String>, TaskError> + Send + Sync + 'static,
{
    let f = Arc::new(f);
    Arc::new(FnHandler(move |t: Leased| {
        let (seen, f) = (seen.clone(), f.clone());
        async move {
            seen.lock().expect("lock").push((t.id, t.attempt));
            f(&t)
        }
    }))
}

async fn state(q: &Queue, id: Uuid) -> Option<TaskState> {
    q.get(id).await.expect("get").map(|r| r.state)
}

async fn all_in(q: &Queue, ids: &[Uuid], want: TaskState) -> bool {
    for id in ids {
        if state(q, *id).await != Some(want) {
            return false;
        }
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_runs_tasks_and_stores_results() {
    let server = RedisServer::start();
    let q = Queue::new(server.pool().await, config("basic"));
    let seen = Seen::default();
    let handler = recording(seen.clone(), |t| Ok(Some(format!("done {}", t.payload["n"]))));
    let w = spawn_worker(&q, handler, fast_worker());
    let mut ids = Vec::new();
    for n in 0..50 {
        ids.push(q.enqueue(NewTask::new("k", serde_json::json!({ "n": n }))).await.unwrap().id);
    }
    eventually(20, "all completed", || all_in(&q, &ids, TaskState::Completed)).await;
    let rec = q.get(ids[3]).await.unwrap().unwrap();
    assert_eq!(rec.result.as_deref(), Some("done 3"));
    assert_eq!(rec.attempts, 1);
    w.shutdown().await;
    let runs = seen.lock().unwrap().len();
    assert_eq!(runs, 50);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_worker_is_woken_by_enqueue() {
    let server = RedisServer::start();
    let q = Queue::new(server.pool().await, config("wake"));
    let seen = Seen::default();
    // A poll far longer than the test's deadline: only the wake token can
    // get the task picked up in time.
    let cfg = WorkerConfig { poll: Duration::from_secs(120), maintenance: Duration::from_secs(600), ..fast_worker() };
    let w = spawn_worker(&q, recording(seen.clone(), |_| Ok(None)), cfg);
    eventually(10, "worker blocked in BLPOP", || async {
        raw_command(server.port, "CLIENT LIST").is_some_and(|l| l.contains("cmd=blpop"))
    })
    .await;
    for round in 0..3 {
        let id = q.enqueue(NewTask::new("k", serde_json::json!(round))).await.unwrap().id;
        eventually(10, "woken worker ran the task", || async { state(&q, id).await == Some(TaskState::Completed) })
            .await;
        eventually(10, "worker blocked again", || async {
            raw_command(server.port, "CLIENT LIST").is_some_and(|l| l.contains("cmd=blpop"))
        })
        .await;
    }
    w.shutdown().await;
    assert_eq!(seen.lock().unwrap().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_retries_then_dead_and_permanent_errors() {
    let server = RedisServer::start();
    let mut cfg = config("retry");
    cfg.retry.max_retries = 2;
    let q = Queue::new(server.pool().await, cfg);
    let seen = Seen::default();
    let handler = recording(seen.clone(), |t| match t.kind.as_str() {
        "flaky" if t.attempt < 3 => Err(TaskError::retry(format!("try {}", t.attempt))),
        "flaky" => Ok(None),
        "broken" => Err(TaskError::retry("always")),
        _ => Err(TaskError::permanent("no such thing")),
    });
    let w = spawn_worker(&q, handler, fast_worker());
    let flaky = q.enqueue(NewTask::new("flaky", serde_json::json!(1))).await.unwrap().id;
    let broken = q.enqueue(NewTask::new("broken", serde_json::json!(2))).await.unwrap().id;
    let bad = q.enqueue(NewTask::new("bad", serde_json::json!(3))).await.unwrap().id;
    eventually(20, "final states", || async {
        state(&q, flaky).await == Some(TaskState::Completed)
            && state(&q, broken).await == Some(TaskState::Dead)
            && state(&q, bad).await == Some(TaskState::Dead)
    })
    .await;
    w.shutdown().await;
    let f = q.get(flaky).await.unwrap().unwrap();
    assert_eq!((f.attempts, f.history.len()), (3, 2));
    let b = q.get(broken).await.unwrap().unwrap();
    assert_eq!(b.attempts, 3);
    assert_eq!(b.history.iter().map(|h| h.attempt).collect::<Vec<_>>(), vec![1, 2, 3]);
    let p = q.get(bad).await.unwrap().unwrap();
    assert_eq!((p.attempts, p.last_error.as_deref()), (1, Some("no such thing")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_timeout_and_panic_count_as_failures() {
    let server = RedisServer::start();
    let mut cfg = config("timeout");
    cfg.retry.max_retries = 0;
    let q = Queue::new(server.pool().await, cfg);
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(|t: Leased| async move {
        if t.kind == "slow" {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        } else {
            panic!("handler bug");
        }
        Ok(None)
    }));
    let w = spawn_worker(&q, handler, fast_worker());
    let slow =
        q.enqueue(NewTask::new("slow", serde_json::json!(0)).timeout(Duration::from_millis(50))).await.unwrap().id;
    let panics = q.enqueue(NewTask::new("panics", serde_json::json!(0))).await.unwrap().id;
    let both = [slow, panics];
    eventually(20, "both dead", || all_in(&q, &both, TaskState::Dead)).await;
    w.shutdown().await;
    let s = q.get(slow).await.unwrap().unwrap();
    assert!(s.last_error.unwrap().starts_with("timed out"));
    let p = q.get(panics).await.unwrap().unwrap();
    assert_eq!(p.last_error.as_deref(), Some("handler panicked"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crashed_lease_is_reaped_and_rerun_by_worker() {
    let server = RedisServer::start();
    let mut cfg = config("crash");
    cfg.lease = Duration::from_millis(300);
    let q = Queue::new(server.pool().await, cfg);
    let id = q.enqueue(NewTask::new("k", serde_json::json!(0))).await.unwrap().id;
    // A "worker" leases the task and dies without acking.
    let lost = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!(lost.id, id);
    assert_eq!(q.started(std::slice::from_ref(&lost)).await.unwrap(), vec![true]);
    let seen = Seen::default();
    let w = spawn_worker(&q, recording(seen.clone(), |_| Ok(None)), fast_worker());
    eventually(20, "completed after reap", || async { state(&q, id).await == Some(TaskState::Completed) }).await;
    w.shutdown().await;
    assert_eq!(seen.lock().unwrap().as_slice(), &[(id, 2)]);
    assert!(!q.ack(&lost, None).await.unwrap(), "the crashed lease stays fenced off");
    let rec = q.get(id).await.unwrap().unwrap();
    assert_eq!(rec.history[0].error, "lease expired");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeat_keeps_long_task_leased() {
    let server = RedisServer::start();
    let mut cfg = config("heartbeat");
    cfg.lease = Duration::from_millis(200);
    let q = Queue::new(server.pool().await, cfg);
    let seen = Seen::default();
    let s2 = seen.clone();
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(move |t: Leased| {
        let seen = s2.clone();
        async move {
            seen.lock().unwrap().push((t.id, t.attempt));
            // Several lease lengths: only the heartbeat keeps it ours.
            tokio::time::sleep(Duration::from_millis(1000)).await;
            Ok(None)
        }
    }));
    let wc = WorkerConfig { heartbeat: Some(Duration::from_millis(40)), ..fast_worker() };
    let w = spawn_worker(&q, handler, wc);
    let id = q.enqueue(NewTask::new("k", serde_json::json!(0))).await.unwrap().id;
    eventually(20, "completed", || async { state(&q, id).await == Some(TaskState::Completed) }).await;
    w.shutdown().await;
    assert_eq!(seen.lock().unwrap().as_slice(), &[(id, 1)]);
    let rec = q.get(id).await.unwrap().unwrap();
    assert!(rec.history.is_empty());
}

/// A handler that never finishes until released.
fn stuck(seen: Seen) -> Arc<dyn Handler> {
    Arc::new(FnHandler(move |t: Leased| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push((t.id, t.attempt));
            std::future::pending::<()>().await;
            Ok(None)
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_requeues_unfinished_at_head() {
    let server = RedisServer::start();
    let mut cfg = config("shutdown");
    cfg.mode = PriorityMode::Strict;
    let q = Queue::new(server.pool().await, cfg);
    let mut ids = Vec::new();
    for n in 0..4 {
        ids.push(q.enqueue(NewTask::new("k", serde_json::json!(n))).await.unwrap().id);
    }
    let seen = Seen::default();
    let wc = WorkerConfig { concurrency: 2, grace: Duration::from_millis(100), ..fast_worker() };
    let w = spawn_worker(&q, stuck(seen.clone()), wc);
    eventually(10, "two running", || async { seen.lock().unwrap().len() == 2 }).await;
    w.shutdown().await;

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.active, stats.pending_total()), (0, 4));
    let order: Vec<Uuid> = q.dequeue(4).await.unwrap().iter().map(|t| t.id).collect();
    let head: HashSet<Uuid> = order[..2].iter().copied().collect();
    assert_eq!(head, ids[..2].iter().copied().collect::<HashSet<_>>());
    assert_eq!(&order[2..], &ids[2..]);
    for id in &ids[..2] {
        assert_eq!(q.get(*id).await.unwrap().unwrap().attempts, 1, "requeue not counted");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_running_tasks_finish() {
    let server = RedisServer::start();
    let q = Queue::new(server.pool().await, config("grace"));
    let (release_tx, release_rx) = tokio::sync::watch::channel(false);
    let started = Seen::default();
    let s2 = started.clone();
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(move |t: Leased| {
        let (started, mut release) = (s2.clone(), release_rx.clone());
        async move {
            started.lock().unwrap().push((t.id, t.attempt));
            let _ = release.wait_for(|r| *r).await;
            Ok(Some("finished".into()))
        }
    }));
    let w = spawn_worker(&q, handler, fast_worker());
    let id = q.enqueue(NewTask::new("k", serde_json::json!(0))).await.unwrap().id;
    eventually(10, "running", || async { !started.lock().unwrap().is_empty() }).await;
    let mut w = w;
    // Signalled before the next task exists, so the worker is draining
    // when it arrives: it must not start it. (A dequeue already under way
    // when the signal lands may still lease it, unstarted, for its lease to
    // give back: so the check is that it never ran, not its state.)
    if let Some(tx) = w.stop.take() {
        let _ = tx.send(());
    }
    let later = q.enqueue(NewTask::new("k", serde_json::json!(1))).await.unwrap().id;
    let stopping = tokio::spawn(w.shutdown());
    release_tx.send(true).unwrap();
    stopping.await.unwrap();
    assert_eq!(state(&q, id).await, Some(TaskState::Completed));
    assert!(started.lock().unwrap().iter().all(|(t, _)| *t != later), "the draining worker started a new task");
    assert_ne!(state(&q, later).await, Some(TaskState::Completed));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_loses_nothing() {
    let mut server = RedisServer::start_persistent();
    let mut cfg = config("restart");
    cfg.lease = Duration::from_millis(500);
    let q = Queue::new(server.pool().await, cfg);
    let mut ids = Vec::new();
    for n in 0..300 {
        ids.push(q.enqueue(NewTask::new("k", serde_json::json!(n))).await.unwrap().id);
    }
    let seen = Seen::default();
    let s2 = seen.clone();
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(move |t: Leased| {
        let seen = s2.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            seen.lock().unwrap().push((t.id, t.attempt));
            Ok(None)
        }
    }));
    let w = spawn_worker(&q, handler, fast_worker());
    eventually(20, "some progress", || async { seen.lock().unwrap().len() >= 50 }).await;
    server.restart();
    let before = seen.lock().unwrap().len();
    eventually(60, "all completed after restart", || async {
        matches!(q.stats().await, Ok(s) if s.total_completed as usize >= ids.len())
    })
    .await;
    assert!(seen.lock().unwrap().len() > before, "the same worker kept going");
    w.shutdown().await;
    assert!(all_in(&q, &ids, TaskState::Completed).await);
    // At-least-once: every task ran; some may have run twice around the crash.
    let ran: HashSet<Uuid> = seen.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(ran.len(), ids.len());
}

/// Sets its flag when dropped: a handler cancelled mid-run drops its future.
struct OnDrop(Arc<std::sync::atomic::AtomicBool>);

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Attempt 1 hands its lease to the test and never finishes on its own (it
/// would send the email after the lease is gone); later attempts succeed.
fn hangs_first_time(
    leases: tokio::sync::mpsc::UnboundedSender<Leased>,
    cancelled: Arc<std::sync::atomic::AtomicBool>,
) -> Arc<dyn Handler> {
    Arc::new(FnHandler(move |t: Leased| {
        let (leases, cancelled) = (leases.clone(), cancelled.clone());
        async move {
            if t.attempt > 1 {
                return Ok(Some("second".into()));
            }
            let _guard = OnDrop(cancelled);
            let _ = leases.send(t);
            std::future::pending::<()>().await;
            Ok(Some("first".into()))
        }
    }))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_lease_cancels_the_handler() {
    let server = RedisServer::start();
    let mut cfg = config("lost-lease");
    cfg.lease = Duration::from_millis(600);
    let q = Queue::new(server.pool().await, cfg);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wc = WorkerConfig { heartbeat: Some(Duration::from_millis(50)), ..fast_worker() };
    let w = spawn_worker(&q, hangs_first_time(tx, cancelled.clone()), wc);
    let id = q.enqueue(NewTask::new("k", serde_json::json!(0))).await.unwrap().id;
    let leased = tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    // Someone else ends the lease (as a reaper on the far side of a partition would).
    assert_eq!(q.fail(&leased, "taken away", true).await.unwrap(), FailOutcome::Dead);
    eventually(20, "the handler cancelled", || async { cancelled.load(std::sync::atomic::Ordering::SeqCst) }).await;
    w.shutdown().await;
    let rec = q.get(id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.result), (TaskState::Dead, None), "no ack after the lease was lost");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_unreachable_past_the_lease_cancels_the_handler() {
    let server = RedisServer::start();
    let mut cfg = config("unreachable");
    cfg.lease = Duration::from_millis(400);
    cfg.response_timeout = Duration::from_millis(50);
    cfg.retry_window = Duration::from_millis(100);
    // The test's own calls wait the pause out.
    let observer =
        Queue::new(server.pool().await, QueueConfig { retry_window: Duration::from_secs(20), ..cfg.clone() });
    let q = Queue::new(server.pool().await, cfg);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let cancelled = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let wc = WorkerConfig { heartbeat: Some(Duration::from_millis(50)), ..fast_worker() };
    let w = spawn_worker(&q, hangs_first_time(tx, cancelled.clone()), wc);
    let id = q.enqueue(NewTask::new("k", serde_json::json!(0))).await.unwrap().id;
    tokio::time::timeout(Duration::from_secs(20), rx.recv()).await.unwrap().unwrap();
    // Every extend now goes unanswered for several lease lengths.
    assert!(raw_command(server.port, "CLIENT PAUSE 3000 WRITE").is_some_and(|r| r.starts_with("+OK")));
    eventually(20, "the handler cancelled", || async { cancelled.load(std::sync::atomic::Ordering::SeqCst) }).await;
    eventually(30, "completed by the next attempt", || async {
        state(&observer, id).await == Some(TaskState::Completed)
    })
    .await;
    w.shutdown().await;
    let rec = observer.get(id).await.unwrap().unwrap();
    assert_eq!((rec.attempts, rec.result.as_deref()), (2, Some("second")));
}

/// Write pauses longer than the response timeout while tasks stream in and
/// run: every enqueue succeeds, every task completes once per lease, none is
/// stranded active or charged for a lease no handler started.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_pauses_longer_than_the_response_timeout_strand_nothing() {
    let server = RedisServer::start();
    let mut cfg = config("pause");
    cfg.lease = Duration::from_secs(30);
    cfg.response_timeout = Duration::from_millis(200);
    cfg.retry_window = Duration::from_secs(10);
    let q = Queue::new(server.pool().await, cfg);
    let seen = Seen::default();
    let s2 = seen.clone();
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(move |t: Leased| {
        let seen = s2.clone();
        async move {
            tokio::time::sleep(Duration::from_millis(2)).await;
            seen.lock().unwrap().push((t.id, t.attempt));
            Ok(None)
        }
    }));
    let w = spawn_worker(&q, handler, WorkerConfig { concurrency: 16, ..fast_worker() });
    let q2 = q.clone();
    let producer = tokio::spawn(async move {
        let mut ids = Vec::new();
        for n in 0..2000 {
            ids.push(q2.enqueue(NewTask::new("k", serde_json::json!(n))).await.expect("enqueue").id);
            if n % 10 == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        ids
    });
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(raw_command(server.port, "CLIENT PAUSE 1000 WRITE").is_some_and(|r| r.starts_with("+OK")));
        tokio::time::sleep(Duration::from_millis(1100)).await;
    }
    let ids = producer.await.unwrap();
    // Far less than the 30 s lease: nothing may wait for a lease to expire.
    eventually(20, "every task completed", || async {
        matches!(q.stats().await, Ok(s) if s.total_completed as usize >= ids.len())
    })
    .await;
    w.shutdown().await;
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.active, stats.total_failed, stats.total_completed as usize), (0, 0, ids.len()));
    let ran: HashSet<Uuid> = seen.lock().unwrap().iter().map(|(id, _)| *id).collect();
    assert_eq!(ran.len(), ids.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_batch_loses_nothing() {
    let server = RedisServer::start();
    let q = Queue::new(server.pool().await, config("killed-mid-batch"));
    let mut ids = Vec::new();
    for n in 0..40 {
        ids.push(q.enqueue(NewTask::new("k", serde_json::json!({ "n": n }))).await.unwrap().id);
    }
    // The first worker takes batches and never finishes a task: it is killed with all of
    // them running (its future dropped: no ack, no requeue, as after SIGKILL).
    let first_runs = Seen::default();
    let stuck: Arc<dyn Handler> = {
        let seen = first_runs.clone();
        Arc::new(FnHandler(move |t: Leased| {
            let seen = seen.clone();
            async move {
                seen.lock().expect("lock").push((t.id, t.attempt));
                std::future::pending::<()>().await;
                Ok(None)
            }
        }))
    };
    let killed = spawn_worker(&q, stuck, WorkerConfig { concurrency: 16, ..fast_worker() });
    eventually(20, "a full batch running", || async { first_runs.lock().expect("lock").len() == 16 }).await;
    killed.handle.abort();
    let _ = killed.handle.await;

    let seen = Seen::default();
    let w = spawn_worker(&q, recording(seen.clone(), |_| Ok(None)), WorkerConfig { concurrency: 8, ..fast_worker() });
    eventually(30, "every task completed", || all_in(&q, &ids, TaskState::Completed)).await;
    w.shutdown().await;
    let seen = seen.lock().unwrap().clone();
    let killed_ids: HashSet<Uuid> = first_runs.lock().unwrap().iter().map(|(id, _)| *id).collect();
    for id in &ids {
        let runs: Vec<u32> = seen.iter().filter(|(s, _)| s == id).map(|(_, a)| *a).collect();
        // Started leases count their attempt: the killed ones run again as attempt 2.
        let want = if killed_ids.contains(id) { vec![2] } else { vec![1] };
        assert_eq!(runs, want, "task {id}");
    }
}
