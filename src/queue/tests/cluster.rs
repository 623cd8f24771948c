//! The scripts on a real 3-master Redis Cluster built from the local binary:
//! every key is declared and shares one hash tag, so no CROSSSLOT errors.

use std::sync::Arc;
use std::time::Duration;

use redis::cluster::ClusterClient;
use uuid::Uuid;

use super::worker::eventually;
use crate::devsvc::PrivateRedisCluster;
use crate::queue::*;

/// Three masters without replicas (`devsvc::PrivateRedisCluster`); `Err` says why cluster
/// mode is unavailable here.
async fn start_cluster() -> Result<PrivateRedisCluster, String> {
    tokio::task::spawn_blocking(|| PrivateRedisCluster::start(3, 0))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("{e:#}"))
}

async fn cluster_queue(cluster: &PrivateRedisCluster, name: &str) -> Queue {
    let urls = cluster.node_urls();
    let client = ClusterClient::new(urls).expect("cluster client");
    let backend = Backend::cluster(client).await.expect("cluster connection");
    let mut cfg = QueueConfig::new(format!("c-{name}-{}", Uuid::new_v4().simple()));
    cfg.retry.base = Duration::from_millis(10);
    cfg.maintenance_interval = Duration::from_millis(10);
    Queue::new(backend, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_runs_on_redis_cluster() {
    let nodes = match start_cluster().await {
        Ok(n) => n,
        Err(why) => {
            println!("skipping the Redis Cluster test: {why}");
            return;
        }
    };
    // Several queues: their hash tags land in different slots (and nodes).
    for name in ["a", "b", "c"] {
        let q = cluster_queue(&nodes, name).await;
        let futs: Vec<_> =
            (0..50).map(|n| q.enqueue(NewTask::new("k", serde_json::json!(n)).priority(Priority::Low))).collect();
        for r in futures_util::future::join_all(futs).await {
            r.unwrap();
        }
        let u = q.enqueue(NewTask::new("u", serde_json::json!(0)).unique_key("x")).await.unwrap();
        let dup = q.enqueue(NewTask::new("u", serde_json::json!(1)).unique_key("x")).await.unwrap();
        assert_eq!(dup.duplicate_of, Some(u.id));
        q.enqueue(NewTask::new("later", serde_json::json!(0)).run_after(Duration::from_secs(3600))).await.unwrap();
        q.pause(Priority::Critical).await.unwrap();

        let leased = q.dequeue(100).await.unwrap();
        assert_eq!(leased.len(), 51);
        assert!(q.started(&leased).await.unwrap().iter().all(|ok| *ok));
        let (first, rest): (Vec<Leased>, Vec<Leased>) =
            leased.into_iter().partition(|t| t.kind == "k" && t.payload == 0);
        let first = &first[0];
        assert!(matches!(q.fail(first, "retry me", false).await.unwrap(), FailOutcome::Retrying { .. }));
        assert!(q.extend(&rest[0]).await.unwrap());
        for t in &rest {
            assert!(q.ack(t, None).await.unwrap());
        }
        q.reap().await.unwrap();
        q.janitor().await.unwrap();
        q.resume(Priority::Critical).await.unwrap();
        let stats = q.stats().await.unwrap();
        assert_eq!((stats.completed, stats.scheduled), (50, 1));
        assert_eq!(q.get(u.id).await.unwrap().map(|r| r.state), Some(TaskState::Completed));
    }

    // A worker blocking on the wake list through a cluster connection.
    let q = cluster_queue(&nodes, "worker").await;
    let handler: Arc<dyn Handler> = Arc::new(FnHandler(|_t: Leased| async { Ok(None) }));
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let cfg = WorkerConfig { poll: Duration::from_millis(300), ..Default::default() };
    let w = tokio::spawn(Worker::run(q.clone(), handler, cfg, async {
        let _ = rx.await;
    }));
    let mut ids = Vec::new();
    for n in 0..20 {
        ids.push(q.enqueue(NewTask::new("k", serde_json::json!(n))).await.unwrap().id);
    }
    eventually(20, "cluster worker completed all", || async {
        matches!(q.stats().await, Ok(s) if s.total_completed == 20)
    })
    .await;
    let _ = tx.send(());
    w.await.unwrap();
}
