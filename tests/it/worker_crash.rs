//! The `spec-server worker` process under failure: SIGKILLed in the middle of a sync task (a
//! second worker finishes it, resuming after the committed page, each record stored once), and
//! Redis restarting under it (it reconnects and keeps processing), then a graceful SIGTERM.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::Path,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use poem::{
    EndpointExt, Response, Route, Server, handler,
    listener::{Acceptor, Listener, TcpListener},
    web::{Data, Query},
};
use serde_json::json;
use spec_server::{
    config::Config,
    db::sync::{RunState, sync_records_count, sync_run_get},
    devsvc::{Launched, PrivateRedis, test_database, test_redis},
    queue::{NewTask, Queue, TaskRecord, TaskState},
    tasks::{EMAIL, SYNC},
};
use tokio::{sync::mpsc, task::JoinHandle};
use uuid::Uuid;

use crate::support::spec_server;

/// The worker's queue, as the worker derives it from `REDIS_PREFIX` (and so would the server).
fn queue_for(redis: spec_server::redis_pool::RedisPool, prefix: &str) -> Queue {
    let cfg = Config::from_flags(&["--redis-prefix", prefix]).unwrap();
    Queue::new(redis, cfg.queue_config())
}

/// A `spec-server worker` child process (SIGKILLed when dropped); its output goes to
/// `<dir>/<name>.log`.
fn spawn_worker(dir: &Path, name: &str, env: &[(&str, &str)]) -> Launched {
    spec_server(&["worker"])
        // Nothing from the developer's shell leaks in: these decide what a task does.
        .env_remove("SMTP_URL")
        .env_remove("SYNC_SOURCE_URL")
        .env("MAIL_DIR", dir.join("mail"))
        .env("QUEUE_LEASE_SECS", "2")
        .env("WORKER_CONCURRENCY", "4")
        .env("WORKER_GRACE_SECS", "5")
        .env("LOG", "info")
        .envs(env.iter().copied())
        .log_to(dir.join(format!("{name}.log")))
        .spawn()
        .unwrap()
}

/// Polls the task until it is completed or dead (60 s at most).
async fn finished(queue: &Queue, id: Uuid, workers: &[&Launched]) -> TaskRecord {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(r)) = queue.get(id).await
            && matches!(r.state, TaskState::Completed | TaskState::Dead)
        {
            return r;
        }
        if tokio::time::Instant::now() > deadline {
            let logs: Vec<String> = workers.iter().map(|w| w.log()).collect();
            panic!("task {id} did not finish: {:?}\nworker logs:\n{}", queue.get(id).await, logs.join("\n---\n"));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A sync upstream (cursor = offset, see `tasks::sync`) that holds the first request for the
/// second page forever, reporting it, so the test knows the worker is mid-task.
struct Upstream {
    addr: SocketAddr,
    log: Arc<Mutex<Vec<HashMap<String, String>>>>,
    task: JoinHandle<()>,
}

struct UpstreamState {
    total: usize,
    held: AtomicBool,
    holding: mpsc::UnboundedSender<()>,
    log: Arc<Mutex<Vec<HashMap<String, String>>>>,
}

#[handler]
async fn records(Query(q): Query<HashMap<String, String>>, Data(st): Data<&Arc<UpstreamState>>) -> Response {
    st.log.lock().unwrap().push(q.clone());
    let offset: usize = q.get("cursor").map_or(0, |c| c.parse().unwrap());
    let limit: usize = q["limit"].parse().unwrap();
    if offset > 0 && !st.held.swap(true, Ordering::SeqCst) {
        let _ = st.holding.send(());
        std::future::pending::<()>().await;
    }
    let end = (offset + limit).min(st.total);
    let records: Vec<_> = (offset..end)
        .map(|i| json!({ "id": format!("r{i}"), "updated_at": "2025-11-01T00:00:00Z", "data": { "i": i } }))
        .collect();
    let next = (end < st.total).then(|| end.to_string());
    Response::builder()
        .content_type("application/json")
        .body(json!({ "records": records, "next_cursor": next }).to_string())
}

impl Upstream {
    async fn start(total: usize) -> (Upstream, mpsc::UnboundedReceiver<()>) {
        let (holding, held_rx) = mpsc::unbounded_channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let state = Arc::new(UpstreamState { total, held: AtomicBool::new(false), holding, log: log.clone() });
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
        let app = Route::new().at("/records", records).data(state);
        let task = tokio::spawn(async move {
            let _ = Server::new_with_acceptor(acceptor).run(app).await;
        });
        (Upstream { addr, log, task }, held_rx)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkilled_workers_sync_task_is_finished_by_another_worker_once() {
    let db = test_database().await.unwrap();
    let redis = test_redis().await.unwrap();
    let prefix = redis.prefix().trim_end_matches(':').to_owned();
    let dir = tempfile::tempdir().unwrap();
    let (upstream, mut holding) = Upstream::start(30).await;
    let source = format!("http://{}", upstream.addr);
    let env = [
        ("DATABASE_URL", db.url()),
        ("REDIS_URL", redis.url()),
        ("REDIS_PREFIX", prefix.as_str()),
        ("REDIS_ALLOW_VOLATILE", "true"),
        ("SYNC_SOURCE_URL", source.as_str()),
    ];
    let queue = queue_for(redis.pool().await.unwrap(), &prefix);

    let mut first = spawn_worker(dir.path(), "first", &env);
    let payload =
        json!({ "sync_type": "sim_status", "start_date": "2025-11-01", "end_date": "2025-11-12", "batch_size": 10 });
    let id = queue.enqueue(NewTask::new(SYNC, payload)).await.unwrap().id;

    // The first worker committed page 1 and is waiting for page 2: kill it there.
    let held = tokio::time::timeout(Duration::from_secs(60), holding.recv()).await;
    assert!(matches!(held, Ok(Some(()))), "the worker never asked for page 2:\n{}", first.log());
    let run = sync_run_get(db.pool(), id).await.unwrap().unwrap();
    assert_eq!((run.state, run.pages, run.rows), (RunState::Running, 1, 10));
    first.kill();
    assert_eq!(queue.get(id).await.unwrap().unwrap().state, TaskState::Active, "the dead worker's lease is held");

    let second = spawn_worker(dir.path(), "second", &env);
    let r = finished(&queue, id, &[&first, &second]).await;
    assert_eq!(r.state, TaskState::Completed, "{r:?}\n{}", second.log());
    assert_eq!(r.attempts, 2, "the killed attempt counts as one failed attempt: {r:?}");
    assert_eq!(r.result.as_deref(), Some(r#"{"pages":3,"rows":30}"#));

    // Every record once; the run resumed after page 1 instead of starting over.
    assert_eq!(sync_records_count(db.pool(), "sim_status").await.unwrap(), 30);
    let run = sync_run_get(db.pool(), id).await.unwrap().unwrap();
    assert_eq!((run.state, run.pages, run.rows, run.attempts), (RunState::Completed, 3, 30, 2));
    let first_page_requests = upstream.log.lock().unwrap().iter().filter(|q| !q.contains_key("cursor")).count();
    assert_eq!(first_page_requests, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_survives_a_redis_restart_and_stops_gracefully_on_sigterm() {
    let db = test_database().await.unwrap();
    let mut redis = tokio::task::spawn_blocking(PrivateRedis::with_persistence).await.unwrap().unwrap();
    let redis_url = redis.url();
    let dir = tempfile::tempdir().unwrap();
    // With AOF on, the worker's start-up check of Redis passes unaided.
    let env = [("DATABASE_URL", db.url()), ("REDIS_URL", redis_url.as_str()), ("REDIS_PREFIX", "crash")];
    let manager = spec_server::redis_pool::RedisManager::new(redis_url.as_str()).unwrap();
    let pool = bb8::Pool::builder().max_size(4).connection_timeout(Duration::from_secs(2)).build_unchecked(manager);
    let queue = queue_for(pool, "crash");
    let mut worker = spawn_worker(dir.path(), "worker", &env);
    let email = |n: u32| {
        NewTask::new(EMAIL, json!({ "to": "user@example.com", "subject": format!("message {n}"), "body": "hello" }))
    };

    let before = queue.enqueue(email(1)).await.unwrap().id;
    assert_eq!(finished(&queue, before, &[&worker]).await.state, TaskState::Completed);

    tokio::task::block_in_place(|| redis.restart()).unwrap();
    worker.ensure_running().unwrap();
    let after = queue.enqueue(email(2)).await.unwrap().id;
    let r = finished(&queue, after, &[&worker]).await;
    assert_eq!(r.state, TaskState::Completed, "{r:?}");
    for id in [before, after] {
        let eml = std::fs::read_to_string(dir.path().join("mail").join(format!("{id}.eml"))).unwrap();
        assert!(eml.contains(&format!("X-Correlation-ID: {id}")), "{eml}");
    }

    // SIGTERM: the worker stops taking work and exits cleanly.
    let status =
        tokio::task::block_in_place(|| worker.stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(30)))
            .unwrap();
    assert!(status.success(), "{status:?}\n{}", worker.log());
    assert!(worker.log().contains("worker stopped"), "{}", worker.log());
}
