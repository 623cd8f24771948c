//! `cargo xtask chaos`: email tasks submitted and processed by `spec-server worker` processes
//! while workers are SIGKILLed, Redis pauses writes for longer than the response timeout and
//! Redis restarts (SIGTERM, then up again on its append-only file), all on loopback. Deliveries are counted per task id by an
//! SMTP sink in this process. Prints accepted / completed / lost / duplicate deliveries /
//! dead-without-running and fails unless nothing was lost and nothing died without running.
//! `#[ignore]`d: it runs for about a minute (`CHAOS_SECS` of submission, default 40).

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

#[allow(clippy::unwrap_used, dead_code)]
#[path = "../../src/tasks/tests/smtp.rs"]
mod smtp;

use std::{
    collections::HashMap,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::json;
use spec_server::{
    config::Config,
    devsvc::{Launched, PrivateRedis, test_database},
    queue::{NewTask, Queue, TaskState},
    tasks::EMAIL,
};
use uuid::Uuid;

use crate::support::spec_server;

const PREFIX: &str = "chaos";
const WORKERS: usize = 3;
/// Shorter than the 1.5 s write pauses below, so those replies are late.
const RESPONSE_TIMEOUT_MS: &str = "300";
const LEASE_SECS: &str = "2";

/// A `spec-server worker` (SIGKILLed when dropped); output appended to `<dir>/<name>.log`.
fn spawn_worker(dir: &Path, name: &str, env: &[(&str, String)]) -> Launched {
    spec_server(&["worker"])
        .env_remove("SYNC_SOURCE_URL")
        .env("REDIS_PREFIX", PREFIX)
        .env("QUEUE_LEASE_SECS", LEASE_SECS)
        .env("REDIS_RESPONSE_TIMEOUT_MS", RESPONSE_TIMEOUT_MS)
        .env("WORKER_CONCURRENCY", "8")
        .env("LOG", "warn")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .log_to(dir.join(format!("{name}.log")))
        .spawn()
        .unwrap()
}

#[derive(Default, Debug)]
struct Events {
    worker_kills: usize,
    write_pauses: usize,
    redis_restarts: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute of chaos: run it with `cargo xtask chaos`"]
async fn chaos() {
    let secs: u64 = std::env::var("CHAOS_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(40);
    let db = test_database().await.unwrap();
    let mut redis = tokio::task::spawn_blocking(PrivateRedis::with_persistence).await.unwrap().unwrap();
    let sink = smtp::SmtpServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let env = [("DATABASE_URL", db.url().to_owned()), ("REDIS_URL", redis.url()), ("SMTP_URL", sink.url())];

    // The submitting side is configured exactly like the workers (and the server).
    let cfg = Config::from_flags(&[
        "--redis-prefix",
        PREFIX,
        "--queue-lease-secs",
        LEASE_SECS,
        "--redis-response-timeout-ms",
        RESPONSE_TIMEOUT_MS,
    ])
    .unwrap();
    let manager = spec_server::redis_pool::RedisManager::new(redis.url()).unwrap();
    let pool = bb8::Pool::builder().max_size(8).connection_timeout(Duration::from_secs(2)).build_unchecked(manager);
    let queue = Queue::new(pool, cfg.queue_config());

    let mut workers: Vec<Launched> =
        (0..WORKERS).map(|i| spawn_worker(dir.path(), &format!("worker{i}"), &env)).collect();

    // Producer: a steady stream of tasks; an enqueue that fails is not accepted (the caller
    // would have been told so).
    let submitting = Arc::new(AtomicBool::new(true));
    let producer = {
        let (queue, submitting) = (queue.clone(), submitting.clone());
        tokio::spawn(async move {
            let (mut accepted, mut refused) = (Vec::new(), 0usize);
            let mut n = 0u64;
            while submitting.load(Ordering::SeqCst) {
                n += 1;
                let payload = json!({ "to": "user@example.com", "subject": format!("chaos {n}"), "body": "hello" });
                match queue.enqueue(NewTask::new(EMAIL, payload)).await {
                    Ok(e) => accepted.push(e.id),
                    Err(e) => {
                        refused += 1;
                        eprintln!("enqueue refused: {e}");
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (accepted, refused)
        })
    };

    // Chaos: one event every 3 s, in turn: kill, pause, kill, pause, restart, pause.
    let mut events = Events::default();
    let start = Instant::now();
    let mut round = 0usize;
    while start.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(3)).await;
        match round % 6 {
            0 | 2 => {
                let i = (round / 3 + round % 6 / 2) % WORKERS;
                drop(workers.remove(i)); // SIGKILL
                workers.insert(i, spawn_worker(dir.path(), &format!("worker{i}"), &env));
                events.worker_kills += 1;
            }
            1 | 3 | 5 => {
                let mut c = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
                let _: () = redis::cmd("CLIENT").arg("PAUSE").arg(1500).arg("WRITE").query_async(&mut c).await.unwrap();
                events.write_pauses += 1;
            }
            _ => {
                tokio::task::block_in_place(|| redis.restart()).unwrap();
                events.redis_restarts += 1;
            }
        }
        round += 1;
    }
    submitting.store(false, Ordering::SeqCst);
    let (accepted, refused) = producer.await.unwrap();

    // Settle: every accepted task completed or dead, or 90 s passed.
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut states: HashMap<Uuid, Option<(TaskState, u32)>> = HashMap::new();
    loop {
        let mut open = 0;
        for id in &accepted {
            if matches!(states.get(id), Some(Some((TaskState::Completed | TaskState::Dead, _)))) {
                continue;
            }
            let r = queue.get(*id).await.ok().flatten().map(|r| (r.state, r.attempts));
            if !matches!(r, Some((TaskState::Completed | TaskState::Dead, _))) {
                open += 1;
            }
            states.insert(*id, r);
        }
        if open == 0 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    drop(workers);

    let mut deliveries: HashMap<Uuid, usize> = HashMap::new();
    for m in sink.accepted() {
        if let Some(id) = m.header("X-Correlation-ID").and_then(|v| Uuid::parse_str(&v).ok()) {
            *deliveries.entry(id).or_default() += 1;
        }
    }
    let delivered = |id: &Uuid| deliveries.get(id).copied().unwrap_or(0);
    let count = |want: TaskState| states.values().filter(|s| matches!(s, Some((st, _)) if *st == want)).count();
    let lost = accepted.iter().filter(|id| !matches!(states.get(id), Some(Some(_))) || delivered(id) == 0).count();
    let unfinished = states
        .values()
        .filter(|s| matches!(s, Some((st, _)) if !matches!(st, TaskState::Completed | TaskState::Dead)))
        .count();
    let duplicates: usize = accepted.iter().map(|id| delivered(id).saturating_sub(1)).sum();
    let dead_unrun = accepted
        .iter()
        .filter(|id| matches!(states.get(id), Some(Some((TaskState::Dead, _)))) && delivered(id) == 0)
        .count();
    let stats = queue.stats().await.unwrap();

    println!(
        "chaos: {secs} s of submission; {} worker SIGKILLs, {} write pauses of 1.5 s (response timeout {RESPONSE_TIMEOUT_MS} ms), {} Redis restarts (AOF)",
        events.worker_kills, events.write_pauses, events.redis_restarts
    );
    println!("accepted:               {}", accepted.len());
    println!("refused (caller told):  {refused}");
    println!("completed:              {}", count(TaskState::Completed));
    println!("dead:                   {}", count(TaskState::Dead));
    println!("unfinished after 90 s:  {unfinished}");
    println!("lost:                   {lost}");
    println!("duplicate deliveries:   {duplicates}");
    println!("dead without running:   {dead_unrun}");
    println!(
        "attempts charged:       {} (each a lease lost with a SIGKILLed worker, or a failure)",
        stats.total_failed
    );
    println!("unstarted leases returned uncharged: {}", stats.total_unstarted);

    assert_eq!(lost, 0, "accepted tasks never delivered; logs in {}", dir.path().display());
    assert_eq!(dead_unrun, 0, "tasks dead without running");
    assert_eq!(unfinished, 0, "tasks stranded");
}
