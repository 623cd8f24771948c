//! Sync tasks against an in-process upstream and a test database.

use std::time::Duration;

use serde_json::json;
use uuid::Uuid;

use super::{Harness, Setup, upstream::Upstream};
use crate::{
    db::sync::{RunState, sync_record_get, sync_records_count, sync_run_get},
    devsvc::LogCapture,
    queue::{NewTask, TaskState},
    tasks::{
        SYNC,
        sync::{SyncPayload, Syncer},
    },
};

fn sync_task(sync_type: &str, batch_size: i64) -> NewTask {
    NewTask::new(
        SYNC,
        json!({ "sync_type": sync_type, "start_date": "2025-11-01", "end_date": "2025-11-12", "batch_size": batch_size }),
    )
}

async fn harness(upstream: Option<&Upstream>) -> (Harness, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = upstream.map(Upstream::url);
    let h = Harness::start(Setup { smtp_url: None, mail_dir: dir.path(), sync_url: url.as_deref() }).await;
    (h, dir)
}

#[tokio::test]
async fn pages_are_upserted_and_the_run_recorded_once() {
    let upstream = Upstream::start(25, &[]).await;
    let (h, _dir) = harness(Some(&upstream)).await;
    let id = h.enqueue(sync_task("sim_status", 10)).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Completed, 1), "{r:?}");
    assert_eq!(r.result.as_deref(), Some(r#"{"pages":3,"rows":25}"#));

    let pool = h.db.pool();
    assert_eq!(sync_records_count(pool, "sim_status").await.unwrap(), 25);
    let run = sync_run_get(pool, id).await.unwrap().unwrap();
    assert_eq!((run.state, run.pages, run.rows, run.attempts), (RunState::Completed, 3, 25, 1));
    let rec = sync_record_get(pool, "sim_status", "r7").await.unwrap().unwrap();
    assert_eq!((rec.data["i"].as_i64(), rec.task_id), (Some(7), id));

    // The protocol as documented: first page without a cursor, then the cursors handed out.
    let log = upstream.log();
    let cursors: Vec<Option<&str>> = log.iter().map(|q| q.get("cursor").map(String::as_str)).collect();
    assert_eq!(cursors, [None, Some("10"), Some("20")]);
    assert_eq!(
        (log[0]["type"].as_str(), log[0]["start"].as_str(), log[0]["end"].as_str(), log[0]["limit"].as_str()),
        ("sim_status", "2025-11-01", "2025-11-12", "10")
    );

    // Redelivering the completed task answers from its run without fetching again.
    let syncer = Syncer::new(pool.clone(), Some(&upstream.url()), Duration::from_secs(5)).unwrap();
    let payload: SyncPayload = serde_json::from_value(sync_task("sim_status", 10).payload).unwrap();
    assert_eq!(syncer.run(id, payload).await.unwrap(), r.result);
    assert_eq!(upstream.log().len(), 3);

    // Another task over the same records overwrites them: still 25.
    let again = h.enqueue(sync_task("sim_status", 100)).await;
    assert_eq!(h.finished(again).await.state, TaskState::Completed);
    assert_eq!(sync_records_count(pool, "sim_status").await.unwrap(), 25);
    assert_eq!(sync_record_get(pool, "sim_status", "r7").await.unwrap().unwrap().task_id, again);
}

#[tokio::test]
async fn an_upstream_5xx_is_retried_and_resumes_at_the_failed_page() {
    // Page 1 succeeds, the request for page 2 gets a 503, then all is well.
    let upstream = Upstream::start(25, &[None, Some(503)]).await;
    let (h, _dir) = harness(Some(&upstream)).await;
    let id = h.enqueue(sync_task("flow_usage", 10)).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Completed, 2), "{r:?}");
    assert_eq!(r.history[0].error, "the upstream sync source answered 503 (temporary)");
    assert_eq!(r.result.as_deref(), Some(r#"{"pages":3,"rows":25}"#));

    let cursors: Vec<Option<String>> = upstream.log().iter().map(|q| q.get("cursor").cloned()).collect();
    let first_page_requests = cursors.iter().filter(|c| c.is_none()).count();
    assert_eq!(first_page_requests, 1, "page 1 was not fetched again: {cursors:?}");
    let run = sync_run_get(h.db.pool(), id).await.unwrap().unwrap();
    assert_eq!((run.state, run.pages, run.rows, run.attempts), (RunState::Completed, 3, 25, 2));
    assert_eq!(sync_records_count(h.db.pool(), "flow_usage").await.unwrap(), 25);
}

#[tokio::test]
async fn an_upstream_4xx_fails_permanently() {
    let upstream = Upstream::start(25, &[Some(404)]).await;
    // The test's runtime runs every task on this thread, the worker's included.
    let logs = LogCapture::default();
    let _logging = tracing::subscriber::set_default(logs.subscriber());
    let (h, _dir) = harness(Some(&upstream)).await;
    let id = h.enqueue(sync_task("real_name", 10)).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Dead, 1), "{r:?}");
    let error = r.last_error.unwrap();
    assert_eq!(error, "the upstream sync source answered 404 (permanent)");
    // Neither where the upstream is nor what it said: those are in the log only.
    for secret in ["127.0.0.1", &upstream.addr.port().to_string(), "/api", "scripted failure"] {
        assert!(!error.contains(secret), "{secret:?} in {error}");
    }
    let run = sync_run_get(h.db.pool(), id).await.unwrap().unwrap();
    assert_eq!((run.state, run.error.as_deref()), (RunState::Failed, Some(&*error)));
    // The operator's log has all of it, on the line of this task.
    let log = logs.text();
    let tagged = format!("task={id}");
    let line = log
        .lines()
        .find(|l| l.contains("task failed") && l.contains(&tagged))
        .unwrap_or_else(|| panic!("no failure logged: {log}"));
    for needle in [&*format!("task={id}"), &*format!("{}/api/records", upstream.addr), "scripted failure"] {
        assert!(line.contains(needle), "{needle:?} missing from {line}");
    }
}

#[tokio::test]
async fn without_a_source_the_task_fails_permanently_saying_why() {
    let (h, _dir) = harness(None).await;
    let id = h.enqueue(sync_task("sim_status", 10)).await;
    let r = h.finished(id).await;
    assert_eq!((r.state, r.attempts), (TaskState::Dead, 1), "{r:?}");
    assert!(r.last_error.unwrap().contains("SYNC_SOURCE_URL is not configured"));
}

#[tokio::test]
async fn timeouts_and_refused_connections_are_retryable() {
    let db = crate::devsvc::test_database().await.unwrap();
    // A listener that accepts but never answers: the request times out.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let refused_url = format!("http://127.0.0.1:{port}");
    let payload: SyncPayload = serde_json::from_value(sync_task("sim_status", 10).payload).unwrap();
    for url in [silent_url, refused_url] {
        let syncer = Syncer::new(db.pool().clone(), Some(&url), Duration::from_millis(300)).unwrap();
        let id = Uuid::new_v4();
        let e = syncer.run(id, payload.clone()).await.unwrap_err();
        assert!(!e.permanent, "{url}: {e:?}");
        assert_eq!(e.message, "could not reach the upstream sync source (temporary)");
        assert!(e.detail.contains(&url[7..]), "the log gets the details: {e:?}");
        let run = sync_run_get(db.pool(), id).await.unwrap().unwrap();
        assert_eq!((run.state, run.pages), (RunState::Failed, 0));
    }
    drop(silent);
}

#[tokio::test]
async fn invalid_payloads_and_pages_fail_permanently() {
    let db = crate::devsvc::test_database().await.unwrap();
    let upstream = Upstream::start(5, &[]).await;
    let syncer = Syncer::new(db.pool().clone(), Some(&upstream.url()), Duration::from_secs(5)).unwrap();
    let good: SyncPayload = serde_json::from_value(sync_task("sim_status", 10).payload).unwrap();
    let backwards = SyncPayload { end_date: good.start_date - chrono::Days::new(1), ..good.clone() };
    let huge = SyncPayload { batch_size: 1001, ..good.clone() };
    for p in [backwards, huge] {
        let e = syncer.run(Uuid::new_v4(), p).await.unwrap_err();
        assert!(e.permanent, "{e:?}");
    }
    assert!(upstream.log().is_empty());

    // A 200 whose body is not a page (a scripted answer's body is plain text).
    let garbled = Upstream::start(5, &[Some(200)]).await;
    let syncer = Syncer::new(db.pool().clone(), Some(&garbled.url()), Duration::from_secs(5)).unwrap();
    let e = syncer.run(Uuid::new_v4(), good).await.unwrap_err();
    assert!(e.permanent && e.message.contains("not a records page"), "{e:?}");
    assert!(!e.message.contains("scripted failure") && !e.message.contains("127.0.0.1"), "{e:?}");

    let e = Syncer::new(db.pool().clone(), Some("ftp://example.com"), Duration::from_secs(1)).err().unwrap();
    assert!(format!("{e:#}").contains("SYNC_SOURCE_URL"), "{e:#}");
}

#[tokio::test]
async fn a_database_failure_is_recorded_without_the_sql_error() {
    let upstream = Upstream::start(5, &[]).await;
    let (h, _dir) = harness(Some(&upstream)).await;
    // As if the schema were missing: the run cannot be started.
    let client = h.db.connect().await.unwrap();
    client.batch_execute("ALTER TABLE sync_runs RENAME TO sync_runs_gone").await.unwrap();
    let id = h.enqueue(sync_task("sim_status", 10).max_retries(0)).await;
    let r = h.finished(id).await;
    assert_eq!(r.state, TaskState::Dead, "{r:?}");
    assert_eq!(r.last_error.as_deref(), Some("could not start the sync run (temporary)"));
}
