//! `cargo xtask bench queue`: the Redis queue through its full path beside plain Redis commands,
//! measured in one run on one private redis-server (the machine is shared, so only side-by-side
//! figures compare). Prints one JSON object per line: `name`, `value`, `unit`, `baseline`, `ratio`.
//!
//! `enqueue`, `processed` and `processed.redis_cpu_us` are measured in 3 rounds, each with its
//! own baselines on keys of its own; each value and baseline is the median over the rounds and
//! the ratio the median of the rounds' ratios (every round goes to stderr), so one burst of a
//! neighbour on the shared machine moves one round, not the result.
//!
//! Measurements and their baselines (plain commands, 50 connections, one command per round trip):
//! - `enqueue`: tasks/s from 50 concurrent producers calling `Queue::enqueue` — vs `LPUSH`/s.
//! - `processed`: tasks/s of `Worker::run` (concurrency 50, no-op handler: lease, ack, retention)
//!   draining that backlog — vs `RPOP`/s draining the LPUSH list.
//! - `processed.redis_cpu_us`: Redis CPU (user + system, from `INFO cpu`) per processed task —
//!   vs per `RPOP`; the queue's ceiling on one Redis core. The scripts' own share (`INFO
//!   commandstats`, microseconds per call and calls) goes to stderr.
//! - `critical_pickup_p50`/`_p99`: ms from `enqueue` of a critical task to its handler starting,
//!   while the worker churns through 100k pending low tasks — vs `LPUSH` → `BRPOP` hand-off on a
//!   separate list while 50 connections `RPOP` a 100k list (a two-list priority queue).

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use spec_server::redis_pool::RedisConn;
use spec_server::redis_pool::{RedisManager, RedisPool};
use spec_server::{
    devsvc::PrivateRedis,
    queue::{FnHandler, Handler, Leased, NewTask, Priority, Queue, QueueConfig, TaskError, Worker, WorkerConfig},
};
use tokio::{sync::oneshot, task::JoinSet};

/// The allocator of the `spec-server` binary (see `src/main.rs`), so the worker here allocates
/// as `spec-server worker` does: glibc's malloc took a seventh of this process's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CLIENTS: usize = 50;
const TASKS: usize = 50_000;
/// Rounds of the throughput measurements, each with its baselines; the medians are reported.
const ROUNDS: usize = 3;
const LOW_BACKLOG: usize = 100_000;
const CRITICAL: usize = 500;
/// Between two critical submissions: spread over a second, well within the backlog's drain.
const CRITICAL_EVERY: Duration = Duration::from_millis(2);

type Pool = RedisPool;

fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to choose.
    let redis = PrivateRedis::start().context("starting a private redis-server")?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(&redis.url()))
}

fn emit(name: &str, value: f64, unit: &str, baseline: f64) {
    let ratio = if baseline > 0.0 { value / baseline } else { f64::NAN };
    emit_ratio(name, value, unit, baseline, ratio);
}

/// As `emit`, with the ratio given (a median of per-round ratios is not the ratio of medians).
fn emit_ratio(name: &str, value: f64, unit: &str, baseline: f64, ratio: f64) {
    let num = |x: f64| json!((x * 1000.0).round() / 1000.0);
    // Built by hand to keep the documented key order (serde_json sorts keys).
    println!(
        r#"{{"name":{},"value":{},"unit":{},"baseline":{},"ratio":{}}}"#,
        json!(name),
        num(value),
        json!(unit),
        num(baseline),
        num(ratio)
    );
}

/// One round of the throughput measurements and their baselines, each on keys of its own.
struct Round {
    lpush: f64,
    rpop: f64,
    rpop_cpu_us: f64,
    enqueue: f64,
    processed: f64,
    processed_cpu_us: f64,
}

async fn round(pool: &Pool, n: usize) -> Result<Round> {
    let list = format!("base:list:{n}");
    let key = list.clone();
    let lpush = per_connection(pool, TASKS, move |mut c, count| {
        let key = key.clone();
        async move {
            for i in 0..count {
                redis::cmd("LPUSH").arg(&key).arg(i).query_async::<i64>(&mut c).await?;
            }
            Ok(())
        }
    })
    .await?;
    let cpu0 = redis_cpu(pool).await?;
    let key = list.clone();
    let rpop = per_connection(pool, TASKS, move |mut c, _| {
        let key = key.clone();
        async move {
            while redis::cmd("RPOP").arg(&key).query_async::<Option<String>>(&mut c).await?.is_some() {}
            Ok(())
        }
    })
    .await?;
    let rpop_cpu_us = (redis_cpu(pool).await? - cpu0) * 1e6 / TASKS as f64;

    let queue = Queue::new(pool.clone(), QueueConfig::new(format!("bench:full:{n}")));
    let enqueue = enqueue_all(&queue, TASKS, Priority::Default, "noop").await?;
    let noop: Arc<dyn Handler> = Arc::new(FnHandler(|_t: Leased| async { Ok::<_, TaskError>(None) }));
    reset_commandstats(pool).await?;
    let cpu0 = redis_cpu(pool).await?;
    let t = Instant::now();
    let (stop, worker) = start_worker(&queue, noop);
    wait_for(&queue, TASKS).await?;
    let processed = TASKS as f64 / t.elapsed().as_secs_f64();
    let processed_cpu_us = (redis_cpu(pool).await? - cpu0) * 1e6 / TASKS as f64;
    stop_worker(stop, worker).await?;
    eprintln!("round {n}: commands of the processed phase:");
    print_commandstats(pool, TASKS).await?;
    eprintln!(
        "round {n}: enqueue {enqueue:.0}/s (LPUSH {lpush:.0}/s), processed {processed:.0}/s (RPOP {rpop:.0}/s, \
         ratio {:.3}), Redis CPU {processed_cpu_us:.2} us/task (RPOP {rpop_cpu_us:.2})",
        processed / rpop
    );
    Ok(Round { lpush, rpop, rpop_cpu_us, enqueue, processed, processed_cpu_us })
}

/// The median of `xs` (the middle one of an odd count).
fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

async fn run(url: &str) -> Result<()> {
    let manager = RedisManager::new(url)?;
    let pool: Pool = bb8::Pool::builder().max_size(CLIENTS as u32).build(manager).await?;
    let started = Instant::now();

    let mut rounds = Vec::with_capacity(ROUNDS);
    for n in 0..ROUNDS {
        rounds.push(round(&pool, n).await?);
    }
    let med = |f: fn(&Round) -> f64| median(rounds.iter().map(f).collect());
    // Each round's figure beside its own baseline, the median over the rounds: a neighbour's
    // burst then moves one round, not the result.
    emit_ratio("enqueue", med(|r| r.enqueue), "tasks/s", med(|r| r.lpush), med(|r| r.enqueue / r.lpush));
    emit_ratio("processed", med(|r| r.processed), "tasks/s", med(|r| r.rpop), med(|r| r.processed / r.rpop));
    emit_ratio(
        "processed.redis_cpu_us",
        med(|r| r.processed_cpu_us),
        "us/task",
        med(|r| r.rpop_cpu_us),
        med(|r| r.processed_cpu_us / r.rpop_cpu_us),
    );

    let (base_p50, base_p99) = handoff_baseline(&pool).await?;
    let (p50, p99, low_left) = critical_pickup(&pool).await?;
    emit("critical_pickup_p50", p50, "ms", base_p50);
    emit("critical_pickup_p99", p99, "ms", base_p99);
    eprintln!(
        "tasks={TASKS} low_backlog={LOW_BACKLOG} (still pending after the critical phase: {low_left}) \
         critical={CRITICAL} total={:.1}s",
        started.elapsed().as_secs_f64()
    );
    if low_left == 0 {
        eprintln!("warning: the low backlog drained before the last critical task; pickup was not all under load");
    }
    Ok(())
}

/// Seconds of CPU (user + system) the Redis server has used.
async fn redis_cpu(pool: &Pool) -> Result<f64> {
    let mut c = pool.get().await?;
    let info: String = redis::cmd("INFO").arg("cpu").query_async(&mut *c).await?;
    let field = |name: &str| {
        info.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .with_context(|| format!("INFO cpu has no {name}"))
    };
    Ok(field("used_cpu_user")? + field("used_cpu_sys")?)
}

async fn reset_commandstats(pool: &Pool) -> Result<()> {
    let mut c = pool.get().await?;
    redis::cmd("CONFIG").arg("RESETSTAT").query_async::<()>(&mut *c).await?;
    Ok(())
}

/// Each command's calls and microseconds per call since the last reset, and its time per task.
async fn print_commandstats(pool: &Pool, tasks: usize) -> Result<()> {
    let mut c = pool.get().await?;
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut *c).await?;
    for line in info.lines().filter_map(|l| l.strip_prefix("cmdstat_")) {
        let Some((name, fields)) = line.split_once(':') else { continue };
        let get = |k: &str| {
            fields.split(',').find_map(|f| f.strip_prefix(k).and_then(|v| v.strip_prefix('='))).unwrap_or("0")
        };
        let usec: f64 = get("usec").parse().unwrap_or(0.0);
        eprintln!(
            "redis {name}: {} calls, {} us/call, {:.2} us/task",
            get("calls"),
            get("usec_per_call"),
            usec / tasks as f64
        );
    }
    Ok(())
}

/// Runs `f(connection, n / CLIENTS)` on `CLIENTS` dedicated connections at once; ops/s for `n`.
async fn per_connection<F, Fut>(pool: &Pool, n: usize, f: F) -> Result<f64>
where
    F: Fn(RedisConn, usize) -> Fut,
    Fut: Future<Output = redis::RedisResult<()>> + Send + 'static,
{
    let mut conns = Vec::with_capacity(CLIENTS);
    for _ in 0..CLIENTS {
        conns.push(pool.dedicated_connection().await?);
    }
    let t = Instant::now();
    let mut js = JoinSet::new();
    for c in conns {
        js.spawn(f(c, n / CLIENTS));
    }
    for r in js.join_all().await {
        r?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Enqueues `n` tasks from `CLIENTS` concurrent producers; tasks/s.
async fn enqueue_all(queue: &Queue, n: usize, priority: Priority, kind: &'static str) -> Result<f64> {
    let t = Instant::now();
    let mut js = JoinSet::new();
    for p in 0..CLIENTS {
        let q = queue.clone();
        js.spawn(async move {
            for i in 0..n / CLIENTS {
                q.enqueue(NewTask::new(kind, json!({ "p": p, "i": i })).priority(priority)).await?;
            }
            Ok::<_, spec_server::queue::QueueError>(())
        });
    }
    for r in js.join_all().await {
        r?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn start_worker(queue: &Queue, handler: Arc<dyn Handler>) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = oneshot::channel::<()>();
    // `BENCH_WORKER_LANES` overrides the worker's own choice of dequeue loops, to compare.
    let lanes = std::env::var("BENCH_WORKER_LANES").ok().and_then(|v| v.parse().ok());
    let wc = WorkerConfig { concurrency: 50, lanes, ..WorkerConfig::default() };
    let worker = tokio::spawn(Worker::run(queue.clone(), handler, wc, async {
        let _ = rx.await;
    }));
    (tx, worker)
}

async fn stop_worker(stop: oneshot::Sender<()>, worker: tokio::task::JoinHandle<()>) -> Result<()> {
    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(30), worker).await.context("the worker did not stop")??;
    Ok(())
}

/// Polls the queue's counters until `n` tasks completed (60 s at most).
async fn wait_for(queue: &Queue, n: usize) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while queue.stats().await?.total_completed < n as u64 {
        if Instant::now() > deadline {
            bail!("{n} tasks were not processed within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |p: f64| ms[((ms.len() - 1) as f64 * p).round() as usize];
    (at(0.50), at(0.99))
}

/// Critical tasks submitted every `CRITICAL_EVERY` while a worker drains 100k low tasks:
/// p50/p99 ms from `enqueue` to the handler starting, and the low tasks still pending at the end.
async fn critical_pickup(pool: &Pool) -> Result<(f64, f64, u64)> {
    let queue = Queue::new(pool.clone(), QueueConfig::new("bench:pickup"));
    enqueue_all(&queue, LOW_BACKLOG, Priority::Low, "low").await?;
    let origin = Instant::now();
    let latencies = Arc::new(Mutex::new(Vec::with_capacity(CRITICAL)));
    let seen = latencies.clone();
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(move |t: Leased| {
        let seen = seen.clone();
        async move {
            if t.kind == "critical" {
                let sent = Duration::from_nanos(t.payload["sent_ns"].as_u64().unwrap_or_default());
                let ms = origin.elapsed().saturating_sub(sent).as_secs_f64() * 1000.0;
                seen.lock().map_err(|_| TaskError::retry("poisoned"))?.push(ms);
            }
            Ok(None)
        }
    }));
    let (stop, worker) = start_worker(&queue, handler);
    let mut ticker = tokio::time::interval(CRITICAL_EVERY);
    for _ in 0..CRITICAL {
        ticker.tick().await;
        let sent_ns = u64::try_from(origin.elapsed().as_nanos())?;
        let q = queue.clone();
        // Spawned, so a slow enqueue does not delay the next submission.
        tokio::spawn(async move {
            q.enqueue(NewTask::new("critical", json!({ "sent_ns": sent_ns })).priority(Priority::Critical)).await
        });
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while latencies.lock().map(|l| l.len()).unwrap_or(0) < CRITICAL {
        if Instant::now() > deadline {
            bail!("not every critical task ran within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let low_left = queue.stats().await?.pending.get(&Priority::Low).copied().unwrap_or(0);
    stop_worker(stop, worker).await?;
    let ms = latencies.lock().map(|l| l.clone()).unwrap_or_default();
    let (p50, p99) = percentiles(ms);
    Ok((p50, p99, low_left))
}

/// The same shape with plain commands: `LPUSH` on one list, a `BRPOP` consumer timing each
/// hand-off, while `CLIENTS` connections `RPOP` a 100k list. p50/p99 ms.
async fn handoff_baseline(pool: &Pool) -> Result<(f64, f64)> {
    let mut fill = pool.dedicated_connection().await?;
    let mut pipe = redis::pipe();
    for i in 0..LOW_BACKLOG {
        pipe.cmd("LPUSH").arg("base:low").arg(i).ignore();
    }
    pipe.query_async::<()>(&mut fill).await?;

    let mut drainers = JoinSet::new();
    for _ in 0..CLIENTS {
        let mut c = pool.dedicated_connection().await?;
        drainers.spawn(async move {
            while redis::cmd("RPOP").arg("base:low").query_async::<Option<String>>(&mut c).await?.is_some() {}
            Ok::<_, redis::RedisError>(())
        });
    }
    let origin = Instant::now();
    let mut consumer = pool.dedicated_connection().await?;
    consumer.set_response_timeout(Duration::from_secs(10));
    let consume = tokio::spawn(async move {
        let mut ms = Vec::with_capacity(CRITICAL);
        while ms.len() < CRITICAL {
            let got: Option<(String, u64)> =
                redis::cmd("BRPOP").arg("base:critical").arg(5).query_async(&mut consumer).await?;
            let Some((_, sent_ns)) = got else { break };
            ms.push(origin.elapsed().saturating_sub(Duration::from_nanos(sent_ns)).as_secs_f64() * 1000.0);
        }
        Ok::<_, redis::RedisError>(ms)
    });
    let mut producer = pool.dedicated_connection().await?;
    let mut ticker = tokio::time::interval(CRITICAL_EVERY);
    for _ in 0..CRITICAL {
        ticker.tick().await;
        let sent_ns = u64::try_from(origin.elapsed().as_nanos())?;
        redis::cmd("LPUSH").arg("base:critical").arg(sent_ns).query_async::<i64>(&mut producer).await?;
    }
    let ms = consume.await??;
    for r in drainers.join_all().await {
        r?;
    }
    if ms.len() < CRITICAL {
        bail!("the baseline consumer saw {} of {CRITICAL} hand-offs", ms.len());
    }
    Ok(percentiles(ms))
}
