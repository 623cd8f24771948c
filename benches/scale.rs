//! `cargo xtask bench scale`: what more processes give, in one run on one private PostgreSQL
//! primary with one streaming replica and one private Redis, through the real `spec-server`
//! binary. The machine is shared (two cores), so the extra processes compete with each other,
//! with Redis and PostgreSQL for the same cores: the figures show that contention, not what
//! more machines would give, and only figures of one run compare.
//!
//! Printed, one JSON object per line (`name`, `value`, `unit`, `baseline`, `ratio`):
//! - `scale.workers.1|2|3`: tasks/s that 1, 2 and 3 `spec-server worker` processes (default
//!   `WORKER_CONCURRENCY`) on the same Redis take to drain a backlog of `TASKS` email tasks,
//!   from the moment the backlog is released (it is enqueued paused, and the workers are
//!   started and ready first, so neither the enqueue nor process start-up is timed) until the
//!   queue's own `total_completed` counter has counted them all. Without `SMTP_URL` the email
//!   handler writes one `.eml` file, the cheapest real handler (sync tasks need an upstream).
//!   Baseline: the 1-worker figure, so the ratio is the speed-up.
//! - `scale.get_user_by_id.primary|replica`: req/s of getUserById (without If-None-Match) under
//!   `wrk -t2 -c64` against one `spec-server serve`, first without `DATABASE_REPLICA_URLS`
//!   (every read on the primary), then with the replica in it (default `REPLICA_MAX_LAG_MS`,
//!   so the reads go to the replica once its lag check passes). Baseline of both: the primary
//!   figure of the same run. How many transactions the replica ran during each run goes to
//!   stderr, to show where the reads went.

mod common;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use common::{emit, free_port, prepare, run_wrk, wrk_path};
use nix::sys::signal::Signal;
use serde_json::json;
use spec_server::{
    config::Config,
    devsvc::{self, Launch, Launched, PrivatePostgres, PrivateRedis, Ready},
    queue::{NewTask, Priority, Queue},
    redis_pool::RedisManager,
    tasks::EMAIL,
};

const SEED_USERS: i64 = 2000;
/// Tasks each worker run drains: long enough (seconds) that the last lease's tail is noise.
const TASKS: usize = 20_000;
/// `enqueue_many` per call, as a batch submission is capped by the contract.
const ENQUEUE_BATCH: usize = 100;
const DRAIN_LIMIT: Duration = Duration::from_secs(300);
const WRK_RUN: &str = "5s";
const WRK_WARMUP: &str = "1s";

#[tokio::main]
async fn main() -> Result<()> {
    // `cargo bench` passes `--bench`; there is nothing to choose.
    let wrk = wrk_path()?;
    eprintln!("wrk: {}", wrk.display());
    let dir = tempfile::tempdir()?;
    eprintln!("starting private PostgreSQL and Redis… (logs in {})", dir.path().display());
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start).await??;
    let redis = tokio::task::spawn_blocking(PrivateRedis::start).await??;
    let token = prepare(&pg, &redis, SEED_USERS).await?;
    // After seeding, so the base backup already holds the users.
    eprintln!("starting a streaming replica…");
    let replica = tokio::task::block_in_place(|| PrivatePostgres::start_replica(&pg))?;

    workers(&pg, &redis, dir.path()).await?;
    reads(&pg, &replica, &redis, &token, dir.path())?;

    drop((replica, pg, redis));
    // `BENCH_KEEP=1` keeps the processes' logs.
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    Ok(())
}

/// The queue the `worker` subcommand uses: the same configuration, from the same environment.
async fn worker_queue(redis: &PrivateRedis) -> Result<Queue> {
    let cfg = Config::from_flags(&[])?;
    let pool = bb8::Pool::builder().max_size(4).build(RedisManager::new(redis.url())?).await?;
    Ok(Queue::new(pool, cfg.queue_config()))
}

async fn workers(pg: &PrivatePostgres, redis: &PrivateRedis, dir: &Path) -> Result<()> {
    let queue = worker_queue(redis).await?;
    let bin = env!("CARGO_BIN_EXE_spec-server");
    let mut one = None;
    for n in 1..=3usize {
        // Paused while it is filled and while the workers start, so only the drain is timed.
        queue.pause(Priority::Default).await?;
        for b in 0..TASKS / ENQUEUE_BATCH {
            let batch = (0..ENQUEUE_BATCH)
                .map(|i| {
                    let body = json!({ "to": "someone@example.com", "cc": [], "subject": "Hello",
                                       "body": format!("message {b}.{i}") });
                    NewTask::new(EMAIL, body).priority(Priority::Default)
                })
                .collect();
            queue.enqueue_many(batch).await?;
        }
        let mut procs = Vec::new();
        for w in 0..n {
            let name = format!("worker-{n}.{w}");
            let mut p = Launch::new(bin)
                .named(format!("spec-server worker ({name})"))
                .arg("worker")
                // Nothing from the developer's shell decides what a task does.
                .env_remove("SMTP_URL")
                .env_remove("SYNC_SOURCE_URL")
                .env("MAIL_DIR", dir.join(format!("mail-{n}")))
                .env("DATABASE_URL", pg.url())
                .env("REDIS_URL", redis.url())
                .env("REDIS_ALLOW_VOLATILE", "true")
                .env("LOG", "info")
                .log_to(dir.join(format!("{name}.log")))
                .spawn()?;
            p.wait_ready(Ready::LogLine("worker started"), Duration::from_secs(60))?;
            procs.push(p);
        }
        let before = queue.stats().await?.total_completed;
        let t = Instant::now();
        queue.resume(Priority::Default).await?;
        let target = before + TASKS as u64;
        loop {
            let stats = queue.stats().await?;
            if stats.total_completed >= target {
                break;
            }
            if stats.total_dead > 0 {
                bail!("{} email tasks died: see the worker logs in {}", stats.total_dead, dir.display());
            }
            if t.elapsed() > DRAIN_LIMIT {
                bail!("{n} workers did not drain {TASKS} tasks within {} s", DRAIN_LIMIT.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let rate = TASKS as f64 / t.elapsed().as_secs_f64();
        for mut p in procs {
            p.stop(Signal::SIGTERM, Duration::from_secs(30))?;
        }
        // Twenty thousand files per run: the next run should not write into a fuller directory.
        let _ = std::fs::remove_dir_all(dir.join(format!("mail-{n}")));
        let base = *one.get_or_insert(rate);
        emit(&format!("scale.workers.{n}"), rate, "tasks/s", Some(base));
    }
    Ok(())
}

/// Transactions committed on `pg` so far, all databases (a hot standby counts its reads too).
fn xacts(pg: &PrivatePostgres) -> Result<u64> {
    let out = Launch::new(devsvc::pg_bindir()?.join("psql"))
        .arg(pg.url())
        .args(["-Atc", "SELECT sum(xact_commit + xact_rollback) FROM pg_stat_database"])
        .output()?;
    out.trim().parse().with_context(|| format!("psql printed {out:?}"))
}

fn serve(
    pg: &PrivatePostgres,
    replica: Option<&PrivatePostgres>,
    redis: &PrivateRedis,
    dir: &Path,
) -> Result<(Launched, u16)> {
    let port = free_port()?;
    let label = if replica.is_some() { "serve-replica" } else { "serve-primary" };
    let mut launch = Launch::new(env!("CARGO_BIN_EXE_spec-server"))
        .named(format!("spec-server serve ({label})"))
        .arg("serve")
        .env("DATABASE_URL", pg.url())
        .env("REDIS_URL", redis.url())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_ALLOW_VOLATILE", "true")
        .env("LOG", "info")
        .env_remove("DATABASE_REPLICA_URLS")
        .env_remove("REPLICA_MAX_LAG_MS")
        .log_to(dir.join(format!("{label}.log")));
    if let Some(r) = replica {
        launch = launch.env("DATABASE_REPLICA_URLS", r.url());
    }
    let mut proc = launch.spawn()?;
    proc.wait_ready(Ready::Port(port), Duration::from_secs(60))?;
    Ok((proc, port))
}

fn reads(pg: &PrivatePostgres, replica: &PrivatePostgres, redis: &PrivateRedis, token: &str, dir: &Path) -> Result<()> {
    let script = dir.join("get_user_by_id.lua");
    std::fs::write(
        &script,
        format!(
            "wrk.headers[\"token\"] = \"{token}\"\nlocal n = 0\nrequest = function()\n  n = n + 1\n  \
             return wrk.format(\"GET\", \"/api/v1/users/\" .. (1 + n % {SEED_USERS}))\nend\n"
        ),
    )?;
    let mut primary_rps = None;
    for (label, with_replica) in [("primary", None), ("replica", Some(replica))] {
        let (mut proc, port) = serve(pg, with_replica, redis, dir)?;
        // Also lets the lag checker find the replica fresh before the measured run.
        run_wrk(port, 64, WRK_WARMUP, &script)?;
        let before = xacts(replica)?;
        let r = run_wrk(port, 64, WRK_RUN, &script)?;
        let on_replica = xacts(replica)? - before;
        proc.stop(Signal::SIGTERM, Duration::from_secs(60))?;
        eprintln!(
            "{label}: {:.0} req/s, p50 {:.2} ms, p99 {:.2} ms, {} errors; the replica ran {on_replica} transactions",
            r.rps, r.p50_ms, r.p99_ms, r.errors
        );
        if r.errors > 0 {
            bail!("getUserById ({label}) had {} errors: see {}", r.errors, dir.display());
        }
        let base = *primary_rps.get_or_insert(r.rps);
        emit(&format!("scale.get_user_by_id.{label}"), r.rps, "req/s", Some(base));
    }
    Ok(())
}
