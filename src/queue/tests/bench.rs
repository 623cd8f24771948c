//! Throughput smoke test (ignored by default; run with `-- --ignored
//! --nocapture`, ideally in release). Prints rates beside a plain-LPUSH
//! baseline taken in the same run, since the machine is shared.

use std::sync::Arc;
use std::time::{Duration, Instant};

use uuid::Uuid;

use super::server::RedisServer;
use super::worker::eventually;
use crate::queue::*;

const PRODUCERS: usize = 50;
const PER_PRODUCER: usize = 2000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "throughput measurement, not a correctness test"]
async fn throughput() {
    let server = RedisServer::start();
    let pool = server.pool().await;
    let total = PRODUCERS * PER_PRODUCER;

    // Baseline: plain LPUSH from 50 concurrent clients over the same pool.
    let t = Instant::now();
    let mut js = tokio::task::JoinSet::new();
    for _ in 0..PRODUCERS {
        let pool = pool.clone();
        js.spawn(async move {
            for i in 0..PER_PRODUCER {
                let mut c = pool.get().await.expect("conn");
                let _: i64 = redis::cmd("LPUSH").arg("baseline").arg(i).query_async(&mut *c).await.expect("lpush");
            }
        });
    }
    js.join_all().await;
    let lpush = total as f64 / t.elapsed().as_secs_f64();

    let mut cfg = QueueConfig::new(format!("bench-{}", Uuid::new_v4().simple()));
    cfg.completed_retention = Duration::from_secs(60);
    let q = Queue::new(pool.clone(), cfg);
    let t = Instant::now();
    let mut js = tokio::task::JoinSet::new();
    for p in 0..PRODUCERS {
        let q = q.clone();
        js.spawn(async move {
            for i in 0..PER_PRODUCER {
                q.enqueue(NewTask::new("noop", serde_json::json!({ "p": p, "i": i }))).await.expect("enqueue");
            }
        });
    }
    js.join_all().await;
    let enq = total as f64 / t.elapsed().as_secs_f64();

    let handler: Arc<dyn Handler> = Arc::new(FnHandler(|_t: Leased| async { Ok(None) }));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let wc = WorkerConfig { concurrency: 50, ..Default::default() };
    let t = Instant::now();
    let w = tokio::spawn(Worker::run(q.clone(), handler, wc, async {
        let _ = rx.await;
    }));
    eventually(300, "all processed", || async {
        matches!(q.stats().await, Ok(s) if s.total_completed as usize >= total)
    })
    .await;
    let processed = total as f64 / t.elapsed().as_secs_f64();
    let _ = tx.send(());
    w.await.expect("worker");
    if let Some(info) = super::server::raw_command(server.port, "INFO commandstats") {
        println!("{info}");
    }
    println!("tasks={total} lpush/s={lpush:.0} enqueue/s={enq:.0} processed/s={processed:.0}");
}
