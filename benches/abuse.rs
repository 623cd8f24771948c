//! `cargo xtask bench abuse`: what an attacker's requests cost, each figure
//! beside a baseline measured in the same run on the same private
//! PostgreSQL/Redis and the real listener (one JSON object per line):
//! - `abuse.huge_cc.answer_ms`: time to answer a `submitEmailTask` whose
//!   `cc` holds 200,000 empty strings (an 800 KB body) — vs the same request
//!   with 3 bad entries;
//! - `abuse.health_during_huge.p50/p99`: `/health` latency while two
//!   clients send that request back to back — vs `/health` alone;
//! - `abuse.token_flood.*.p99`: getUserById p99 at 16 connections while 48
//!   more send tokens — valid ones (the cost of any flood on two shared
//!   cores), random strings, random tokens of the pre-checksum shape (which
//!   must be looked up) — vs no flood, and each attack vs the valid flood;
//! - `abuse.redis_memory.*`: Redis `used_memory` while producers and a
//!   no-op worker run flat out for 60 s with 10 s retention — the value at
//!   the end vs the value at three retention windows (30 s), with the
//!   backlog still pending at the end (producers may outrun the worker).

mod common;

use std::{sync::Arc, time::Duration};

use anyhow::{Context, Result};
use bb8_redis::redis;
use common::{BenchServer, RUN, emit, get, load, pct, post};
use serde_json::json;
use spec_server::queue::{FnHandler, Handler, Leased, NewTask, Queue, QueueConfig, TaskError, Worker, WorkerConfig};
use spec_server::redis_pool::RedisManager;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USERS: i64 = 200;
const MEMORY_RUN: Duration = Duration::from_secs(60);
const RETENTION: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> Result<()> {
    let BenchServer { addr, token, pools, pg, redis } = BenchServer::start(USERS).await?;

    huge_request(addr, &token).await?;
    token_flood(addr, &token).await?;
    redis_memory(&redis.url()).await?;
    drop(pools);
    drop((pg, redis));
    Ok(())
}

fn email_body(cc: usize) -> String {
    json!({ "to": "a@example.com", "subject": "s", "body": "b", "cc": vec![""; cc] }).to_string()
}

/// The median of three timed answers, in ms.
async fn answer_ms(addr: std::net::SocketAddr, request: &[u8]) -> Result<f64> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut times = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(addr).await?;
        let t0 = std::time::Instant::now();
        s.write_all(request).await?;
        let mut out = Vec::new();
        s.read_to_end(&mut out).await?;
        times.push(t0.elapsed().as_secs_f64() * 1000.0);
        let head = String::from_utf8_lossy(&out[..out.len().min(12)]).into_owned();
        anyhow::ensure!(head.ends_with("400"), "expected a 400, got {head:?}");
    }
    times.sort_by(f64::total_cmp);
    Ok(times[1])
}

async fn huge_request(addr: std::net::SocketAddr, token: &str) -> Result<()> {
    let close = |mut req: Vec<u8>| {
        // One request per connection, so the timing ends when the answer is in.
        let at = req.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or(0);
        req.splice(at..at, b"\r\nconnection: close".iter().copied());
        req
    };
    let huge = close(post("/api/v1/tasks/email", token, &email_body(200_000)));
    let small = close(post("/api/v1/tasks/email", token, &email_body(3)));
    eprintln!("the 200,000-entry cc request ({} bytes)…", huge.len());
    let base = answer_ms(addr, &small).await?;
    emit("abuse.huge_cc.answer_ms", answer_ms(addr, &huge).await?, "ms", Some(base));

    eprintln!("/health alone, then while two clients send that request back to back…");
    let alone = load(addr, 1, 200, |_| get("/api/v1/health", "")).await?;
    let t = token.to_owned();
    let body = email_body(200_000);
    let attack = tokio::spawn(load(addr, 2, 400, move |_| post("/api/v1/tasks/email", &t, &body)));
    let during = load(addr, 1, 200, |_| get("/api/v1/health", "")).await?;
    let attack = attack.await??;
    emit("abuse.health_during_huge.p50", pct(&during.latencies_us, 0.5), "ms", Some(pct(&alone.latencies_us, 0.5)));
    emit("abuse.health_during_huge.p99", pct(&during.latencies_us, 0.99), "ms", Some(pct(&alone.latencies_us, 0.99)));
    emit("abuse.health_during_huge.health_errors", during.errors as f64, "count", None);
    emit("abuse.health_during_huge.huge_answered", attack.ok as f64 / RUN.as_secs_f64(), "req/s", None);
    Ok(())
}

async fn token_flood(addr: std::net::SocketAddr, token: &str) -> Result<()> {
    let good = |t: String| move |i: u64| get(&format!("/api/v1/users/{}", 1 + (i as i64 % USERS)), &t);
    eprintln!("getUserById at 16 connections, no flood…");
    let quiet = load(addr, 16, 200, good(token.to_owned())).await?;
    let base = pct(&quiet.latencies_us, 0.99);
    emit("abuse.token_flood.none.p99", base, "ms", None);
    emit("abuse.token_flood.none.throughput", quiet.ok as f64 / RUN.as_secs_f64(), "req/s", None);
    // The same number of connections sending a valid token is the cost of
    // any flood on two shared cores; random strings fail the checksum, and
    // pre-checksum-shaped ones (`sk_` and 43 base64url characters) can only
    // be refused by a lookup.
    let valid = token.to_owned();
    let floods: [(&str, u16, TokenMaker); 3] = [
        ("valid", 200, Arc::new(move |_| valid.clone())),
        ("random", 401, Arc::new(|i| format!("sk_{:049x}", fastrand_u128(i)))),
        (
            "old_shape",
            401,
            Arc::new(|i| {
                let hex = format!("{:032x}{:032x}", fastrand_u128(i), fastrand_u128(i ^ 0x5555));
                format!("sk_{}", &hex[..43])
            }),
        ),
    ];
    let mut valid_flood_p99 = None;
    for (name, status, make_token) in floods {
        eprintln!("getUserById at 16 connections while 48 send {name} tokens…");
        let flood = tokio::spawn(load(addr, 48, status, move |i| get("/api/v1/users/1", &make_token(i))));
        let s = load(addr, 16, 200, good(token.to_owned())).await?;
        let flood = flood.await??;
        let p99 = pct(&s.latencies_us, 0.99);
        emit(&format!("abuse.token_flood.{name}.p99"), p99, "ms", Some(base));
        if let Some(v) = valid_flood_p99 {
            emit(&format!("abuse.token_flood.{name}.p99_vs_valid_flood"), p99, "ms", Some(v));
        } else {
            valid_flood_p99 = Some(p99);
        }
        emit(&format!("abuse.token_flood.{name}.errors"), s.errors as f64, "count", None);
        emit(&format!("abuse.token_flood.{name}.flood_answered"), flood.ok as f64 / RUN.as_secs_f64(), "req/s", None);
        for (kind, n) in s.kinds.iter().take(3) {
            eprintln!("  legitimate: {n} × {kind}");
        }
    }
    Ok(())
}

/// Makes the `i`-th token of a flood.
type TokenMaker = Arc<dyn Fn(u64) -> String + Send + Sync>;

/// A cheap, well-spread pseudo-random value for token `i` (splitmix).
fn fastrand_u128(i: u64) -> u128 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let hi = z ^ (z >> 31);
    (u128::from(hi) << 64) | u128::from(hi.rotate_left(17) ^ i)
}

async fn used_memory(conn: &mut redis::aio::MultiplexedConnection) -> Result<f64> {
    let info: String = redis::cmd("INFO").arg("memory").query_async(conn).await?;
    info.lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .context("INFO memory has no used_memory")
}

async fn redis_memory(url: &str) -> Result<()> {
    eprintln!("queue flat out for {MEMORY_RUN:?} with {RETENTION:?} retention, sampling Redis memory…");
    let manager = RedisManager::new(url)?;
    let pool = bb8::Pool::builder().max_size(64).build(manager).await?;
    let mut cfg = QueueConfig::new("abuse");
    cfg.completed_retention = RETENTION;
    let queue = Queue::new(pool, cfg);
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(|_t: Leased| async { Ok::<_, TaskError>(None) }));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let wc = WorkerConfig { concurrency: 50, ..WorkerConfig::default() };
    let worker = tokio::spawn(Worker::run(queue.clone(), handler, wc, stopped(stop_rx.clone())));
    let mut producers = Vec::new();
    for p in 0..32u64 {
        let (queue, mut rx) = (queue.clone(), stop_rx.clone());
        producers.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !*rx.borrow_and_update() {
                let payload = json!({ "producer": p, "n": n, "pad": "x".repeat(200) });
                if queue.enqueue(NewTask::new("noop", payload)).await.is_ok() {
                    n += 1;
                }
            }
            n
        }));
    }
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let start = std::time::Instant::now();
    let mut at_retention = None;
    let mut last = 0.0;
    while start.elapsed() < MEMORY_RUN {
        tokio::time::sleep(Duration::from_secs(5)).await;
        last = used_memory(&mut conn).await?;
        let t = start.elapsed().as_secs();
        emit(&format!("abuse.redis_memory.t{t}s"), last / 1e6, "MB", None);
        // Cleanup rides on the acks, so the level settles a few retention
        // windows in; from then on it should stay flat.
        if at_retention.is_none() && start.elapsed() >= 3 * RETENTION {
            at_retention = Some(last);
        }
    }
    let _ = stop_tx.send(true);
    let mut enqueued = 0;
    for p in producers {
        enqueued += p.await.unwrap_or(0);
    }
    let _ = worker.await;
    let stats = queue.stats().await?;
    emit("abuse.redis_memory.enqueued_per_s", enqueued as f64 / MEMORY_RUN.as_secs_f64(), "tasks/s", None);
    emit(
        "abuse.redis_memory.completed_per_s",
        stats.total_completed as f64 / MEMORY_RUN.as_secs_f64(),
        "tasks/s",
        None,
    );
    emit("abuse.redis_memory.pending_at_end", stats.pending.values().sum::<u64>() as f64, "tasks", None);
    emit("abuse.redis_memory.end_vs_3x_retention", last / 1e6, "MB", at_retention.map(|m| m / 1e6));
    Ok(())
}
