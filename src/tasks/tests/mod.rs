//! Task handler tests through the real path: a queue on the test Redis, `Worker::run` with
//! [`Tasks`], a test database, and in-process SMTP and upstream servers. Waits poll with a
//! bounded deadline; nothing asserts on wall-clock durations.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

mod email;
mod smtp;
mod sync;
mod upstream;

use std::{sync::Arc, time::Duration};

use tokio::task::JoinHandle;
use uuid::Uuid;

use super::{Tasks, email::Mailer, sync::Syncer};
use crate::{
    devsvc::{TestDb, test_database, test_redis},
    queue::{NewTask, Queue, QueueConfig, TaskRecord, TaskState, Worker, WorkerConfig},
};

/// A worker running `Tasks` over a fresh queue; stopped (aborted) on drop.
pub struct Harness {
    pub queue: Queue,
    pub db: TestDb,
    worker: JoinHandle<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.worker.abort();
    }
}

/// How the handlers are configured for one test.
pub struct Setup<'a> {
    pub smtp_url: Option<&'a str>,
    pub mail_dir: &'a std::path::Path,
    pub sync_url: Option<&'a str>,
}

impl Harness {
    pub async fn start(setup: Setup<'_>) -> Harness {
        let db = test_database().await.unwrap();
        let redis = test_redis().await.unwrap();
        let mut cfg = QueueConfig::new(redis.key("queue"));
        cfg.lease = Duration::from_secs(2);
        cfg.maintenance_interval = Duration::from_millis(50);
        // Fast retries, so a retried task finishes within the test.
        cfg.retry.base = Duration::from_millis(20);
        cfg.retry.cap = Duration::from_millis(100);
        let queue = Queue::new(redis.pool().await.unwrap(), cfg);
        let tasks = Tasks {
            mailer: Mailer::new(setup.smtp_url, "sender@example.com", setup.mail_dir).unwrap(),
            syncer: Syncer::new(db.pool().clone(), setup.sync_url, Duration::from_secs(5)).unwrap(),
        };
        let wc = WorkerConfig {
            concurrency: 4,
            poll: Duration::from_millis(200),
            maintenance: Duration::from_millis(50),
            grace: Duration::from_secs(5),
            ..WorkerConfig::default()
        };
        let worker = tokio::spawn(Worker::run(queue.clone(), Arc::new(tasks), wc, std::future::pending()));
        Harness { queue, db, worker }
    }

    pub async fn enqueue(&self, task: NewTask) -> Uuid {
        self.queue.enqueue(task).await.unwrap().id
    }

    /// The task's record once it is completed or dead (30 s at most).
    pub async fn finished(&self, id: Uuid) -> TaskRecord {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            let record = self.queue.get(id).await.unwrap().unwrap();
            if matches!(record.state, TaskState::Completed | TaskState::Dead) {
                return record;
            }
            assert!(tokio::time::Instant::now() < deadline, "task {id} still {:?}: {record:?}", record.state);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test]
async fn unknown_kinds_and_bad_payloads_go_to_dead_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(Setup { smtp_url: None, mail_dir: dir.path(), sync_url: None }).await;
    let unknown = h.enqueue(NewTask::new("fax", serde_json::json!({}))).await;
    let bad = h.enqueue(NewTask::new(super::EMAIL, serde_json::json!({ "to": 42 }))).await;
    for (id, needle) in [(unknown, "unknown task kind \"fax\""), (bad, "invalid email task payload")] {
        let r = h.finished(id).await;
        assert_eq!((r.state, r.attempts), (TaskState::Dead, 1), "{r:?}");
        assert!(r.last_error.as_deref().unwrap().contains(needle), "{r:?}");
    }
}
