//! Queue operations driven directly (no worker), mostly with a fake clock.
//!
//! Size: every test here starts from the same `setup` (a private Redis,
//! a queue on a fake clock); split by concern, each file would repeat it.

use std::collections::HashMap;
use std::time::Duration;

use uuid::Uuid;

use super::server::RedisServer;
use crate::queue::*;

const T0: i64 = 1_700_000_000_000;

fn unique_prefix(name: &str) -> String {
    format!("t-{name}-{}", Uuid::new_v4().simple())
}

/// A queue over a private server with a fake clock and a 1 s lease.
async fn setup(name: &str, tune: impl FnOnce(&mut QueueConfig)) -> (RedisServer, Queue, FakeClock) {
    let server = RedisServer::start();
    let clock = FakeClock::new(T0);
    let mut cfg = QueueConfig::new(unique_prefix(name));
    cfg.fake_clock = Some(clock.clone());
    cfg.lease = Duration::from_secs(1);
    tune(&mut cfg);
    let queue = Queue::new(server.pool().await, cfg);
    (server, queue, clock)
}

fn task(kind: &str, n: u64) -> NewTask {
    NewTask::new(kind, serde_json::json!({ "n": n }))
}

fn n_of(t: &Leased) -> u64 {
    t.payload["n"].as_u64().expect("payload n")
}

async fn state(q: &Queue, id: Uuid) -> Option<TaskState> {
    q.get(id).await.expect("get").map(|r| r.state)
}

#[tokio::test]
async fn enqueue_dequeue_ack_round_trip() {
    let (_s, q, clock) = setup("roundtrip", |_| {}).await;
    let e = q.enqueue(task("email", 7).priority(Priority::Critical).timeout(Duration::from_secs(3))).await.unwrap();
    assert_eq!(e.duplicate_of, None);
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Pending);
    assert_eq!(rec.kind, "email");
    assert_eq!(rec.priority, Priority::Critical);
    assert_eq!(rec.max_retries, 5);
    assert_eq!(rec.attempts, 0);
    assert_eq!(rec.created_at.timestamp_millis(), T0);

    let leased = q.dequeue(10).await.unwrap();
    assert_eq!(leased.len(), 1);
    let t = &leased[0];
    assert_eq!((t.id, t.attempt, t.kind.as_str(), n_of(t)), (e.id, 1, "email", 7));
    assert_eq!(t.timeout, Duration::from_secs(3));
    assert_eq!(state(&q, e.id).await, Some(TaskState::Active));
    assert_eq!(q.stats().await.unwrap().active, 1);

    clock.advance(Duration::from_millis(250));
    assert!(q.ack(t, Some("ok!".into())).await.unwrap());
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Completed);
    assert_eq!(rec.result.as_deref(), Some("ok!"));
    assert_eq!(rec.started_at.map(|t| t.timestamp_millis()), Some(T0));
    assert_eq!(rec.completed_at.map(|t| t.timestamp_millis()), Some(T0 + 250));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.active, stats.completed, stats.total_completed), (0, 1, 1));
    assert!(q.dequeue(10).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_traceparent_travels_in_the_record_without_changing_the_unique_check() {
    let (_s, q, _) = setup("traceparent", |_| {}).await;
    let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut traced = task("email", 1).unique_key("mail:1");
    traced.traceparent = Some(tp.to_owned());
    let first = q.enqueue(traced).await.unwrap();
    // The same request again, from another trace: still a repeat of the first, not a conflict.
    let mut again = task("email", 1).unique_key("mail:1");
    again.traceparent = Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned());
    let dup = q.enqueue(again).await.unwrap();
    assert_eq!((dup.duplicate_of, dup.duplicate_differs), (Some(first.id), false));
    // Without one (as every record from before traceparents): none comes back.
    let plain = q.enqueue(task("email", 2)).await.unwrap();
    let leased = q.dequeue(10).await.unwrap();
    let by_id: HashMap<Uuid, Option<&str>> = leased.iter().map(|t| (t.id, t.traceparent.as_deref())).collect();
    assert_eq!(by_id.get(&first.id), Some(&Some(tp)));
    assert_eq!(by_id.get(&plain.id), Some(&None));
}

#[tokio::test]
async fn strict_priority_order_and_fifo() {
    let (_s, q, _) = setup("strict", |c| c.mode = PriorityMode::Strict).await;
    let mut n = 0;
    for p in [Priority::Low, Priority::Default, Priority::Critical] {
        for _ in 0..5 {
            n += 1;
            q.enqueue(task("k", n).priority(p)).await.unwrap();
        }
    }
    let got: Vec<u64> = q.dequeue(100).await.unwrap().iter().map(n_of).collect();
    // Critical (11..=15) first, then default (6..=10), then low (1..=5), each FIFO.
    let want: Vec<u64> = (11..=15).chain(6..=10).chain(1..=5).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn fifo_within_priority_across_batches() {
    let (_s, q, _) = setup("fifo", |_| {}).await;
    let futs: Vec<_> = (0..200).map(|i| q.enqueue(task("k", i))).collect();
    // Sequential awaits keep submission order through the batcher.
    for f in futs {
        f.await.unwrap();
    }
    let mut got = Vec::new();
    while got.len() < 200 {
        let batch = q.dequeue(7).await.unwrap();
        assert!(!batch.is_empty());
        got.extend(batch.iter().map(n_of));
    }
    assert_eq!(got, (0..200).collect::<Vec<_>>());
}

#[tokio::test]
async fn weighted_shares_and_no_starvation() {
    let (_s, q, _) = setup("weighted", |_| {}).await;
    for p in Priority::ALL {
        let futs: Vec<_> = (0..2500).map(|i| q.enqueue(task("k", i).priority(p))).collect();
        for r in futures_util::future::join_all(futs).await {
            r.unwrap();
        }
    }
    let mut counts: HashMap<Priority, usize> = HashMap::new();
    let mut total = 0;
    while total < 2000 {
        for t in q.dequeue(10).await.unwrap() {
            *counts.entry(t.priority).or_default() += 1;
            total += 1;
        }
    }
    let share = |p| counts.get(&p).copied().unwrap_or(0) as f64 / total as f64;
    // Expected 0.6 / 0.3 / 0.1; tolerances are > 4 standard deviations.
    assert!((share(Priority::Critical) - 0.6).abs() < 0.05, "{counts:?}");
    assert!((share(Priority::Default) - 0.3).abs() < 0.05, "{counts:?}");
    assert!((share(Priority::Low) - 0.1).abs() < 0.04, "{counts:?}");
}

#[tokio::test]
async fn delayed_task_hidden_until_due() {
    let (_s, q, clock) = setup("delayed", |_| {}).await;
    let later = q.enqueue(task("k", 1).run_after(Duration::from_secs(10))).await.unwrap();
    let at = chrono::DateTime::from_timestamp_millis(T0 + 20_000).unwrap();
    let much_later = q.enqueue(task("k", 2).run_at(at)).await.unwrap();
    assert_eq!(state(&q, later.id).await, Some(TaskState::Scheduled));
    assert_eq!(q.stats().await.unwrap().scheduled, 2);
    assert!(q.dequeue(10).await.unwrap().is_empty());

    clock.advance(Duration::from_millis(9_999));
    assert!(q.dequeue(10).await.unwrap().is_empty());
    clock.advance(Duration::from_millis(1));
    let got = q.dequeue(10).await.unwrap();
    assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), vec![later.id]);

    clock.advance(Duration::from_secs(10));
    let got = q.dequeue(10).await.unwrap();
    assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), vec![much_later.id]);
}

#[tokio::test]
async fn exact_retry_schedule_then_dead_with_history() {
    let (_s, q, clock) = setup("retry", |c| c.retry.jitter = 0.0).await;
    let e = q.enqueue(task("k", 1).priority(Priority::Low)).await.unwrap();
    let mut delays = Vec::new();
    for attempt in 1..=6u32 {
        let leased = q.dequeue(1).await.unwrap();
        assert_eq!(leased.len(), 1, "attempt {attempt}");
        let t = &leased[0];
        assert_eq!(t.attempt, attempt);
        assert_eq!(t.priority, Priority::Low, "a retry keeps its priority");
        match q.fail(t, &format!("boom {attempt}"), false).await.unwrap() {
            FailOutcome::Retrying { at } => {
                let delay = at.timestamp_millis() - clock.now_ms();
                delays.push(delay);
                let rec = q.get(e.id).await.unwrap().unwrap();
                assert_eq!(rec.state, TaskState::Retry);
                // Not visible a millisecond early.
                clock.advance(Duration::from_millis(delay as u64 - 1));
                assert!(q.dequeue(1).await.unwrap().is_empty());
                clock.advance(Duration::from_millis(1));
            }
            FailOutcome::Dead => assert_eq!(attempt, 6),
            FailOutcome::Stale => panic!("stale"),
        }
    }
    assert_eq!(delays, vec![1000, 2000, 4000, 8000, 16000]);
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Dead);
    assert_eq!(rec.attempts, 6);
    assert_eq!(rec.last_error.as_deref(), Some("boom 6"));
    let hist: Vec<(u32, String)> = rec.history.iter().map(|h| (h.attempt, h.error.clone())).collect();
    let want: Vec<(u32, String)> = (1..=6).map(|a| (a, format!("boom {a}"))).collect();
    assert_eq!(hist, want);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.dead, stats.total_dead, stats.total_failed), (1, 1, 6));
}

#[tokio::test]
async fn stats_report_the_oldest_pending_age() {
    let (_s, q, clock) = setup("oldest", |c| c.mode = PriorityMode::Strict).await;
    assert_eq!(q.stats().await.unwrap().oldest_pending_age, Duration::ZERO);
    q.enqueue(task("email", 1).priority(Priority::Low)).await.unwrap();
    clock.advance(Duration::from_millis(300));
    q.enqueue(task("email", 2).priority(Priority::Critical)).await.unwrap();
    clock.advance(Duration::from_millis(200));
    // The oldest head of any priority, not the one that runs next.
    assert_eq!(q.stats().await.unwrap().oldest_pending_age, Duration::from_millis(500));
    let leased = q.dequeue(1).await.unwrap();
    assert_eq!(n_of(&leased[0]), 2);
    assert_eq!(q.stats().await.unwrap().oldest_pending_age, Duration::from_millis(500));
    q.dequeue(1).await.unwrap();
    assert_eq!(q.stats().await.unwrap().oldest_pending_age, Duration::ZERO);
}

#[tokio::test]
async fn backoff_cap_and_jitter_bounds() {
    let (_s, q, clock) = setup("jitter", |c| {
        c.retry = RetryPolicy {
            max_retries: 10,
            base: Duration::from_millis(100),
            factor: 3.0,
            cap: Duration::from_millis(1000),
            jitter: 0.5,
        }
    })
    .await;
    q.enqueue(task("k", 1)).await.unwrap();
    for attempt in 1..=5u32 {
        let t = q.dequeue(1).await.unwrap().pop().unwrap();
        let FailOutcome::Retrying { at } = q.fail(&t, "x", false).await.unwrap() else {
            panic!("expected a retry");
        };
        let delay = (at.timestamp_millis() - clock.now_ms()) as f64;
        let nominal = (100.0 * 3f64.powi(attempt as i32 - 1)).min(1000.0);
        assert!(delay >= nominal * 0.5 - 1.0 && delay <= nominal * 1.5, "{delay} vs {nominal}");
        clock.advance(Duration::from_millis(delay as u64 + 1));
    }
}

#[tokio::test]
async fn fail_permanent_goes_straight_to_dead() {
    let (_s, q, _) = setup("permanent", |_| {}).await;
    let e = q.enqueue(task("k", 1)).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!(q.fail(&t, "bad input", true).await.unwrap(), FailOutcome::Dead);
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (TaskState::Dead, 1));
    assert_eq!(rec.last_error.as_deref(), Some("bad input"));
}

#[tokio::test]
async fn stale_token_is_refused_everywhere() {
    let (_s, q, clock) = setup("stale", |c| {
        c.retry.base = Duration::from_millis(10);
        c.retry.jitter = 0.0;
    })
    .await;
    let e = q.enqueue(task("k", 1)).await.unwrap();
    let old = q.dequeue(1).await.unwrap().pop().unwrap();
    assert!(q.extend(&old).await.unwrap());

    // Lease expires and is reaped; the task runs again under a new token.
    clock.advance(Duration::from_millis(1001));
    assert_eq!(q.reap().await.unwrap(), Some(1));
    assert!(!q.extend(&old).await.unwrap());
    assert!(!q.ack(&old, None).await.unwrap());
    clock.advance(Duration::from_millis(10));
    let new = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!((new.id, new.attempt), (e.id, 2));
    assert_ne!(new.token, old.token);

    assert!(!q.extend(&old).await.unwrap());
    assert!(!q.ack(&old, None).await.unwrap());
    assert_eq!(q.fail(&old, "late", false).await.unwrap(), FailOutcome::Stale);
    assert!(!q.requeue_front(&old).await.unwrap());
    assert_eq!(state(&q, e.id).await, Some(TaskState::Active));

    assert!(q.ack(&new, None).await.unwrap());
    assert!(q.ack(&new, None).await.unwrap(), "a repeated ack is answered like the first");
    assert_eq!(q.stats().await.unwrap().total_completed, 1, "and counts once");
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!(rec.history.len(), 1);
    assert_eq!(rec.history[0].error, "lease expired");
}

#[tokio::test]
async fn extend_keeps_task_from_being_reaped() {
    let (_s, q, clock) = setup("extend", |c| c.maintenance_interval = Duration::from_millis(1)).await;
    q.enqueue(task("k", 1)).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    for _ in 0..5 {
        clock.advance(Duration::from_millis(800));
        assert!(q.extend(&t).await.unwrap());
        assert_eq!(q.reap().await.unwrap(), Some(0));
    }
    clock.advance(Duration::from_millis(1001));
    assert_eq!(q.reap().await.unwrap(), Some(1));
}

#[tokio::test]
async fn reaper_is_guarded_per_interval() {
    let (_s, q, clock) = setup("guard", |_| {}).await;
    assert_eq!(q.reap().await.unwrap(), Some(0));
    assert_eq!(q.reap().await.unwrap(), None);
    assert!(q.janitor().await.unwrap().is_some());
    assert!(q.janitor().await.unwrap().is_none());
    clock.advance(Duration::from_secs(1));
    assert_eq!(q.reap().await.unwrap(), Some(0));
}

#[tokio::test]
async fn crashed_worker_task_is_reaped_and_runs_again() {
    let (_s, q, clock) = setup("reap", |c| {
        c.retry.base = Duration::from_millis(500);
        c.retry.jitter = 0.0;
    })
    .await;
    let e = q.enqueue(task("k", 1).priority(Priority::Critical)).await.unwrap();
    let crashed = q.dequeue(1).await.unwrap();
    assert_eq!(q.started(&crashed).await.unwrap(), vec![true]);
    clock.advance(Duration::from_millis(999));
    assert_eq!(q.reap().await.unwrap(), Some(0));
    assert!(q.dequeue(1).await.unwrap().is_empty());
    clock.advance(Duration::from_millis(1001));
    assert_eq!(q.reap().await.unwrap(), Some(1));
    assert_eq!(state(&q, e.id).await, Some(TaskState::Retry));
    clock.advance(Duration::from_millis(500));
    let again = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!((again.id, again.attempt, again.priority), (e.id, 2, Priority::Critical));
    assert!(q.ack(&again, None).await.unwrap());
}

#[tokio::test]
async fn unique_key_dedup_and_release_on_success() {
    let (_s, q, _) = setup("unique-ok", |_| {}).await;
    let first = q.enqueue(task("k", 1).unique_key("user:1")).await.unwrap();
    let dup = q.enqueue(task("k", 2).unique_key("user:1")).await.unwrap();
    assert_eq!((dup.duplicate_of, dup.duplicate_differs), (Some(first.id), true), "another payload");
    assert_eq!(q.get(dup.id).await.unwrap(), None, "a duplicate is not stored");
    let same = q.enqueue(task("k", 1).unique_key("user:1")).await.unwrap();
    assert_eq!((same.duplicate_of, same.duplicate_differs), (Some(first.id), false), "the same request");
    let urgent = q.enqueue(task("k", 1).unique_key("user:1").priority(Priority::Critical)).await.unwrap();
    assert_eq!((urgent.duplicate_of, urgent.duplicate_differs), (Some(first.id), true), "another priority");
    let other = q.enqueue(task("k", 3).unique_key("user:2")).await.unwrap();
    assert_eq!(other.duplicate_of, None);

    // Still held while active.
    let leased = q.dequeue(10).await.unwrap();
    assert_eq!(leased.len(), 2);
    let t = leased.iter().find(|t| t.id == first.id).unwrap();
    let dup = q.enqueue(task("k", 4).unique_key("user:1")).await.unwrap();
    assert_eq!(dup.duplicate_of, Some(first.id));

    assert!(q.ack(t, None).await.unwrap());
    let again = q.enqueue(task("k", 5).unique_key("user:1")).await.unwrap();
    assert_eq!(again.duplicate_of, None);
}

#[tokio::test]
async fn unique_key_held_through_retry_released_on_dead() {
    let (_s, q, clock) = setup("unique-dead", |c| {
        c.retry.max_retries = 1;
        c.retry.base = Duration::from_millis(10);
        c.retry.jitter = 0.0;
    })
    .await;
    let first = q.enqueue(task("k", 1).unique_key("job")).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert!(matches!(q.fail(&t, "e1", false).await.unwrap(), FailOutcome::Retrying { .. }));
    let dup = q.enqueue(task("k", 2).unique_key("job")).await.unwrap();
    assert_eq!(dup.duplicate_of, Some(first.id), "held while waiting to retry");

    clock.advance(Duration::from_millis(10));
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!(q.fail(&t, "e2", false).await.unwrap(), FailOutcome::Dead);
    let again = q.enqueue(task("k", 3).unique_key("job")).await.unwrap();
    assert_eq!(again.duplicate_of, None, "released when dead");
}

#[tokio::test]
async fn unique_key_lapses_after_ttl() {
    let (_s, q, clock) = setup("unique-ttl", |c| c.unique_ttl = Duration::from_secs(60)).await;
    let first = q.enqueue(task("k", 1).unique_key("u")).await.unwrap();
    clock.advance(Duration::from_secs(59));
    let dup = q.enqueue(task("k", 2).unique_key("u")).await.unwrap();
    assert_eq!(dup.duplicate_of, Some(first.id));
    clock.advance(Duration::from_secs(1));
    let again = q.enqueue(task("k", 3).unique_key("u")).await.unwrap();
    assert_eq!(again.duplicate_of, None);
}

#[tokio::test]
async fn duplicates_within_one_batch() {
    let (_s, q, _) = setup("unique-batch", |_| {}).await;
    let futs: Vec<_> = (0..20).map(|i| q.enqueue(task("k", i).unique_key("same"))).collect();
    let results = futures_util::future::join_all(futs).await;
    let stored: Vec<_> = results.iter().map(|r| r.as_ref().unwrap()).filter(|e| e.duplicate_of.is_none()).collect();
    assert_eq!(stored.len(), 1);
    for r in &results {
        let e = r.as_ref().unwrap();
        if let Some(d) = e.duplicate_of {
            assert_eq!(d, stored[0].id);
        }
    }
    assert_eq!(q.stats().await.unwrap().pending_total(), 1);
}

#[tokio::test]
async fn janitor_applies_retention() {
    let (_s, q, clock) = setup("janitor", |c| {
        c.completed_retention = Duration::from_secs(60);
        c.dead_retention = Duration::from_secs(600);
        c.dead_max = 2;
    })
    .await;
    let done = q.enqueue(task("k", 0)).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert!(q.ack(&t, None).await.unwrap());
    let mut dead = Vec::new();
    for i in 1..=3 {
        dead.push(q.enqueue(task("k", i)).await.unwrap().id);
        let t = q.dequeue(1).await.unwrap().pop().unwrap();
        assert_eq!(q.fail(&t, "x", true).await.unwrap(), FailOutcome::Dead);
        clock.advance(Duration::from_millis(1));
    }
    // Dead is capped by count as tasks die: the oldest of three went first.
    assert_eq!(q.stats().await.unwrap().dead, 2);
    assert_eq!(q.get(dead[0]).await.unwrap(), None);
    let r = q.janitor().await.unwrap().unwrap();
    assert_eq!((r.completed, r.dead), (0, 0));
    assert!(q.get(done.id).await.unwrap().is_some());

    clock.advance(Duration::from_secs(60));
    let r = q.janitor().await.unwrap().unwrap();
    assert_eq!((r.completed, r.dead), (1, 0));
    assert_eq!(q.get(done.id).await.unwrap(), None);
    assert!(q.get(dead[1]).await.unwrap().is_some());

    clock.advance(Duration::from_secs(600));
    let r = q.janitor().await.unwrap().unwrap();
    assert_eq!(r.dead, 2);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.completed, stats.dead), (0, 0));
    assert_eq!(stats.total_completed, 1);
}

#[tokio::test]
async fn zero_retention_deletes_on_ack() {
    let (_s, q, _) = setup("noretain", |c| c.completed_retention = Duration::ZERO).await;
    let e = q.enqueue(task("k", 0)).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert!(q.ack(&t, None).await.unwrap());
    assert_eq!(q.get(e.id).await.unwrap(), None);
}

#[tokio::test]
async fn pause_and_resume_per_priority() {
    let (_s, q, _) = setup("pause", |c| c.mode = PriorityMode::Strict).await;
    q.pause(Priority::Critical).await.unwrap();
    let c = q.enqueue(task("k", 1).priority(Priority::Critical)).await.unwrap();
    let d = q.enqueue(task("k", 2)).await.unwrap();
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.paused, vec![Priority::Critical]);
    assert_eq!(stats.pending[&Priority::Critical], 1);
    assert_eq!(stats.pending[&Priority::Default], 1);

    let got = q.dequeue(10).await.unwrap();
    assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), vec![d.id]);
    assert!(q.dequeue(10).await.unwrap().is_empty());
    q.resume(Priority::Critical).await.unwrap();
    let got = q.dequeue(10).await.unwrap();
    assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), vec![c.id]);
    assert!(q.stats().await.unwrap().paused.is_empty());
}

#[tokio::test]
async fn requeue_front_goes_to_head_without_attempt() {
    let (_s, q, _) = setup("requeue", |_| {}).await;
    let a = q.enqueue(task("k", 1)).await.unwrap();
    let b = q.enqueue(task("k", 2)).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!(t.id, a.id);
    assert!(q.requeue_front(&t).await.unwrap());
    assert!(!q.ack(&t, None).await.unwrap());
    let got = q.dequeue(2).await.unwrap();
    assert_eq!(got.iter().map(|t| t.id).collect::<Vec<_>>(), vec![a.id, b.id]);
    assert_eq!(got[0].attempt, 1, "the interrupted run is not counted");
}

#[tokio::test]
async fn scripts_reload_after_script_flush() {
    let (s, q, _) = setup("flush", |_| {}).await;
    q.enqueue(task("k", 1)).await.unwrap();
    assert!(super::server::raw_command(s.port, "SCRIPT FLUSH").is_some_and(|r| r.starts_with("+OK")));
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    assert!(super::server::raw_command(s.port, "SCRIPT FLUSH").is_some_and(|r| r.starts_with("+OK")));
    assert!(q.ack(&t, None).await.unwrap());
}

#[tokio::test]
async fn every_key_shares_one_hash_tag() {
    let (s, q, _) = setup("keys", |_| {}).await;
    q.enqueue(task("k", 1).unique_key("u").priority(Priority::Low)).await.unwrap();
    q.enqueue(task("k", 2).run_after(Duration::from_secs(5))).await.unwrap();
    let t = q.dequeue(1).await.unwrap().pop().unwrap();
    q.fail(&t, "x", true).await.unwrap();
    q.pause(Priority::Low).await.unwrap();
    q.reap().await.unwrap();
    let keys = super::server::raw_command(s.port, "KEYS *").unwrap();
    let prefix = format!("{{{}}}:", q.config().prefix);
    let names: Vec<&str> = keys.lines().filter(|l| !l.starts_with(['*', '$'])).collect();
    assert!(names.len() >= 6, "{keys}");
    for n in names {
        assert!(n.starts_with(&prefix), "{n} outside the hash tag");
    }
}

/// Holds every write on the server for `ms` (the reply of a call sent now
/// comes after that), like a Redis stalled on fsync or a failover.
fn pause_writes(s: &RedisServer, ms: u64) {
    let r = super::server::raw_command(s.port, &format!("CLIENT PAUSE {ms} WRITE"));
    assert!(r.as_deref().is_some_and(|r| r.starts_with("+OK")), "{r:?}");
}

/// Keeps the server busy for `ms` in a script of its own: calls sent
/// meanwhile wait in their sockets and run afterwards, however long ago their
/// callers gave up on the reply (and even if they closed the connection).
fn stall_server(s: &RedisServer, ms: u64) {
    const BUSY: &str = "local function us() local t = redis.call('TIME') return t[1] * 1000000 + t[2] end \
        local t0 = us() while us() - t0 < tonumber(ARGV[1]) * 1000 do end return 1";
    let port = s.port;
    std::thread::spawn(move || {
        let _ = super::server::raw_command(port, &format!("EVAL \"{BUSY}\" 0 {ms}"));
    });
    // Let the script start before the call under test is sent.
    std::thread::sleep(Duration::from_millis(50));
}

/// The same queue over a pool that sends calls without a PING first, so a
/// call goes out on a connection even while the server is stalled.
async fn eager_twin(s: &RedisServer, q: &Queue) -> Queue {
    let manager = crate::redis_pool::RedisManager::new(s.url()).expect("redis url");
    let pool = bb8::Pool::builder().max_size(1).test_on_check_out(false).build(manager).await.expect("pool");
    let twin = Queue::new(pool, q.config().clone());
    twin.stats().await.expect("connection open, scripts loaded");
    twin
}

/// Replies later than the response timeout: every call below times out at
/// least once and is repeated, while its first try still runs on the server.
fn late_replies(c: &mut QueueConfig) {
    c.response_timeout = Duration::from_millis(100);
    c.retry_window = Duration::from_secs(20);
}

#[tokio::test]
async fn enqueue_with_a_late_reply_stores_one_task_and_succeeds() {
    let (s, q, _) = setup("late-enqueue", late_replies).await;
    let eager = eager_twin(&s, &q).await;
    q.enqueue(task("k", 0)).await.unwrap(); // loads the script
    stall_server(&s, 800);
    let e = eager.enqueue(task("k", 1)).await.expect("a late reply is not a failure");
    let stats = q.stats().await.unwrap();
    assert_eq!(stats.pending_total(), 2, "the repeat did not store a second task");
    assert_eq!(state(&q, e.id).await, Some(TaskState::Pending));
}

#[tokio::test]
async fn dequeue_with_a_late_reply_returns_the_leases_it_made() {
    let (s, q, _) = setup("late-dequeue", late_replies).await;
    assert!(q.dequeue(1).await.unwrap().is_empty()); // loads the script
    for i in 0..3 {
        q.enqueue(task("k", i)).await.unwrap();
    }
    let eager = eager_twin(&s, &q).await;
    stall_server(&s, 800);
    let got = eager.dequeue(10).await.expect("a late reply is not a failure");
    assert_eq!(got.iter().map(n_of).collect::<Vec<_>>(), vec![0, 1, 2], "the first try's leases");
    assert_eq!(q.started(&got).await.unwrap(), vec![true; 3]);
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.active, stats.pending_total()), (3, 0), "nothing leased to a token nobody holds");
    for t in &got {
        assert!(q.ack(t, None).await.unwrap());
    }
}

#[tokio::test]
async fn finishing_calls_with_late_replies_take_effect_once() {
    let (s, q, _) = setup("late-finish", late_replies).await;
    let a = q.enqueue(task("k", 1)).await.unwrap();
    let b = q.enqueue(task("k", 2)).await.unwrap();
    let c = q.enqueue(task("k", 3)).await.unwrap();
    let got = q.dequeue(3).await.unwrap();
    q.started(&got).await.unwrap();
    let by_id = |id| got.iter().find(|t| t.id == id).unwrap();

    pause_writes(&s, 400);
    assert!(q.extend(by_id(a.id)).await.unwrap());
    assert!(q.ack(by_id(a.id), Some("r".into())).await.unwrap(), "the late ack's repeat answers true");
    pause_writes(&s, 400);
    let FailOutcome::Retrying { at } = q.fail(by_id(b.id), "boom", false).await.unwrap() else {
        panic!("a repeated fail must answer like the first");
    };
    assert_eq!(q.fail(by_id(b.id), "boom", false).await.unwrap(), FailOutcome::Retrying { at });
    pause_writes(&s, 400);
    assert!(q.requeue_front(by_id(c.id)).await.unwrap());
    assert!(q.requeue_front(by_id(c.id)).await.unwrap());

    let stats = q.stats().await.unwrap();
    assert_eq!((stats.total_completed, stats.total_failed), (1, 1));
    assert_eq!(q.get(b.id).await.unwrap().unwrap().history.len(), 1);
    assert_eq!(stats.pending_total(), 1, "requeued once, not pushed twice");
    let again = q.dequeue(10).await.unwrap();
    assert_eq!(again.iter().map(|t| t.id).collect::<Vec<_>>(), vec![c.id]);
}

#[tokio::test]
async fn a_lease_never_started_is_not_charged() {
    let (_s, q, clock) = setup("unstarted", |_| {}).await;
    let e = q.enqueue(task("k", 1)).await.unwrap();
    // Leased, but the reply never reached a worker: nobody confirmed a start.
    let lost = q.dequeue(1).await.unwrap();
    clock.advance(Duration::from_millis(1001));
    assert_eq!(q.reap().await.unwrap(), Some(1));
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts), (TaskState::Pending, 0));
    assert!(rec.history.is_empty());
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.total_failed, stats.total_unstarted), (0, 1));
    let t = q.dequeue(1).await.unwrap();
    assert_eq!(t[0].attempt, 1);
    // A late confirmation of the lost call finds nothing of its own.
    assert_eq!(q.started(&lost).await.unwrap(), vec![false]);
}

#[tokio::test]
async fn scripts_use_redis_time_not_the_callers() {
    let server = RedisServer::start();
    let mut cfg = QueueConfig::new(unique_prefix("time"));
    cfg.lease = Duration::from_secs(30);
    let q = Queue::new(server.pool().await, cfg);
    let e = q.enqueue(task("k", 1)).await.unwrap();
    let t = q.dequeue(1).await.unwrap();
    q.started(&t).await.unwrap();
    let time = super::server::raw_command(server.port, "TIME").unwrap();
    let secs: i64 = time.lines().nth(2).unwrap().trim().parse().unwrap();
    let rec = q.get(e.id).await.unwrap().unwrap();
    // Within a few seconds of the server's clock (the test just read it).
    assert!((rec.created_at.timestamp() - secs).abs() <= 5, "{} vs {secs}", rec.created_at);
    assert_eq!(q.reap().await.unwrap(), Some(0), "a fresh lease is not expired in Redis time");
}

#[tokio::test]
async fn completed_payloads_are_dropped_and_acks_trim_expired_records() {
    let (s, q, clock) = setup("trim", |c| c.completed_retention = Duration::from_secs(1)).await;
    let mut first = Vec::new();
    for i in 0..40 {
        first.push(q.enqueue(task("k", i)).await.unwrap().id);
    }
    for t in q.dequeue(40).await.unwrap() {
        assert!(q.ack(&t, Some("ok".into())).await.unwrap());
    }
    let rec = q.get(first[0]).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.kind.as_str(), rec.result.as_deref()), (TaskState::Completed, "k", Some("ok")));
    assert_eq!(rec.payload, serde_json::Value::Null, "the payload went with completion");
    let data_len = super::server::raw_command(s.port, &format!("HLEN {{{}}}:data", q.config().prefix)).unwrap();
    assert_eq!(data_len.trim(), ":0");

    // Past retention, 20 more completions remove 40 expired records: no janitor needed.
    clock.advance(Duration::from_secs(2));
    for i in 0..20 {
        q.enqueue(task("k", i)).await.unwrap();
    }
    for t in q.dequeue(20).await.unwrap() {
        assert!(q.ack(&t, None).await.unwrap());
    }
    assert_eq!(q.stats().await.unwrap().completed, 20);
    assert_eq!(q.get(first[0]).await.unwrap(), None);
}

#[tokio::test]
async fn dead_set_is_bounded_by_bytes() {
    let (_s, q, _) = setup("dead-bytes", |c| c.dead_max_bytes = 4000).await;
    let big = "x".repeat(1000);
    for i in 0..20 {
        q.enqueue(NewTask::new("k", serde_json::json!({ "n": i, "pad": big }))).await.unwrap();
        let t = q.dequeue(1).await.unwrap().pop().unwrap();
        assert_eq!(q.fail(&t, "no", true).await.unwrap(), FailOutcome::Dead);
    }
    let stats = q.stats().await.unwrap();
    assert!(stats.dead >= 1 && stats.dead <= 4, "{}", stats.dead);
    assert_eq!(stats.total_dead, 20);
}

#[test]
fn retries_are_jittered_by_default() {
    assert!(RetryPolicy::default().jitter > 0.0);
}

#[tokio::test]
async fn the_response_timeout_is_applied_to_pooled_connections() {
    let (s, q, _) = setup("timeout", |c| {
        c.response_timeout = Duration::from_millis(100);
        c.retry_window = Duration::ZERO;
    })
    .await;
    let eager = eager_twin(&s, &q).await;
    // Longer than this queue's timeout, shorter than redis-rs's 500 ms default.
    stall_server(&s, 300);
    let e = eager.stats().await.expect_err("a reply later than the response timeout");
    assert!(e.is_transient(), "{e:?}");
}

#[tokio::test]
async fn a_late_fail_repeat_after_a_reap_is_stale() {
    let (_s, q, clock) = setup("fin-reap", |c| c.retry.jitter = 0.0).await;
    q.enqueue(task("k", 1)).await.unwrap();
    let a = q.dequeue(1).await.unwrap();
    q.started(&a).await.unwrap();
    assert!(matches!(q.fail(&a[0], "first", false).await.unwrap(), FailOutcome::Retrying { .. }));
    clock.advance(Duration::from_secs(1));
    let b = q.dequeue(1).await.unwrap();
    q.started(&b).await.unwrap();
    clock.advance(Duration::from_millis(1001));
    assert_eq!(q.reap().await.unwrap(), Some(1));
    // The reaper ended attempt 2; the first lease's repeat is not its owner.
    assert_eq!(q.fail(&a[0], "first", false).await.unwrap(), FailOutcome::Stale);
}

/// `EVALSHA` calls the server has answered so far (`INFO commandstats`).
async fn evalsha_calls(s: &RedisServer) -> u64 {
    let pool = s.pool().await;
    let mut conn = pool.get().await.expect("conn");
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(&mut *conn).await.expect("INFO");
    info.lines()
        .find_map(|l| l.strip_prefix("cmdstat_evalsha:calls="))
        .and_then(|rest| rest.split(',').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn enqueue_many_is_one_script_call_in_order() {
    let (s, q, _) = setup("many", |c| c.mode = PriorityMode::Strict).await;
    // Loads the script, so that the batch below is one EVALSHA and no SCRIPT LOAD retry.
    q.enqueue(task("warm", 0)).await.unwrap();
    q.dequeue(1).await.unwrap();
    assert!(q.enqueue_many(Vec::new()).await.unwrap().is_empty());

    let before = evalsha_calls(&s).await;
    let tasks =
        (1..=100).map(|n| task("email", n).priority(if n % 2 == 0 { Priority::Critical } else { Priority::Low }));
    let enqueued = q.enqueue_many(tasks.collect()).await.unwrap();
    assert_eq!(evalsha_calls(&s).await - before, 1, "100 tasks, one round trip");
    assert_eq!(enqueued.len(), 100);
    for (i, e) in enqueued.iter().enumerate() {
        assert_eq!(e.duplicate_of, None);
        let rec = q.get(e.id).await.unwrap().unwrap();
        let want = if (i + 1) % 2 == 0 { Priority::Critical } else { Priority::Low };
        assert_eq!((rec.state, rec.priority), (TaskState::Pending, want), "task {i}");
    }
    // Stored in request order within each priority.
    let got: Vec<u64> = q.dequeue(100).await.unwrap().iter().map(n_of).collect();
    let want: Vec<u64> = (2..=100).step_by(2).chain((1..=99).step_by(2)).collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn a_lease_lost_mid_batch_fails_only_its_own_ack() {
    let (_s, q, clock) = setup("lost-mid-batch", |c| {
        c.retry.base = Duration::from_millis(10);
        c.retry.jitter = 0.0;
    })
    .await;
    let mut ids = Vec::new();
    for n in 0..8 {
        ids.push(q.enqueue(task("k", n)).await.unwrap().id);
    }
    let batch = q.dequeue(8).await.unwrap();
    assert_eq!(batch.len(), 8);
    assert_eq!(q.started(&batch).await.unwrap(), vec![true; 8]);
    // Every lease but the fourth is renewed; that one expires and another worker takes it.
    clock.advance(Duration::from_millis(600));
    for t in batch.iter().filter(|t| t.id != batch[3].id) {
        assert!(q.extend(t).await.unwrap());
    }
    clock.advance(Duration::from_millis(500));
    assert_eq!(q.reap().await.unwrap(), Some(1));
    clock.advance(Duration::from_millis(10));
    let other = q.dequeue(1).await.unwrap().pop().unwrap();
    assert_eq!((other.id, other.attempt), (batch[3].id, 2));

    // The whole batch acked at once (coalesced into one script call): only the lost lease is
    // refused, and it does not disturb the task's new holder.
    let acks = futures_util::future::join_all(batch.iter().map(|t| q.ack(t, None))).await;
    let acks: Vec<bool> = acks.into_iter().map(Result::unwrap).collect();
    let mut want = vec![true; 8];
    want[3] = false;
    assert_eq!(acks, want);
    assert_eq!(state(&q, batch[3].id).await, Some(TaskState::Active));
    for t in batch.iter().filter(|t| t.id != batch[3].id) {
        assert_eq!(state(&q, t.id).await, Some(TaskState::Completed));
    }
    assert!(q.ack(&other, None).await.unwrap());
    assert_eq!(q.stats().await.unwrap().total_completed, 8);
}

#[tokio::test]
async fn enqueue_reports_the_backlog_it_left() {
    // Strict: the critical task is the one dequeued (weighted mode draws).
    let (_s, q, _clock) = setup("backlog", |c| c.mode = PriorityMode::Strict).await;
    let first = q.enqueue(task("k", 0)).await.unwrap();
    assert_eq!(first.backlog, Backlog { pending: [0, 1, 0], active: 0, total_completed: 0 });
    q.enqueue(task("k", 1).priority(Priority::Critical)).await.unwrap();
    let leased = q.dequeue(1).await.unwrap();
    assert!(q.ack(&leased[0], None).await.unwrap());
    let third = q.enqueue(task("k", 2).priority(Priority::Low)).await.unwrap();
    // The critical task ran; the default one is still ready; the low one was just added.
    assert_eq!(third.backlog, Backlog { pending: [0, 1, 1], active: 0, total_completed: 1 });
    assert_eq!(third.backlog, q.stats().await.unwrap().backlog());
}

#[tokio::test]
async fn one_priority_left_is_popped_in_one_go_in_fifo_order() {
    let (_s, q, _clock) = setup("pop-rest", |_| {}).await;
    for n in 0..20 {
        q.enqueue(task("k", n)).await.unwrap();
    }
    q.enqueue(task("k", 100).priority(Priority::Critical)).await.unwrap();
    let got: Vec<u64> = q.dequeue(15).await.unwrap().iter().map(n_of).collect();
    // Whatever the weighted order, the critical task and then the default ones in order.
    let mut default: Vec<u64> = got.iter().copied().filter(|n| *n != 100).collect();
    assert!(got.contains(&100), "{got:?}");
    assert_eq!(default, (0..14).collect::<Vec<_>>());
    let rest: Vec<u64> = q.dequeue(15).await.unwrap().iter().map(n_of).collect();
    default.extend(rest);
    assert_eq!(default, (0..20).collect::<Vec<_>>());
}

#[tokio::test]
async fn an_enqueue_not_acknowledged_by_enough_replicas_fails() {
    // No replica at all: WAIT 1 can only time out.
    let (_server, q, _clock) = setup("wait", |c| {
        c.wait_replicas = 1;
        c.wait_timeout = Duration::from_millis(50);
    })
    .await;
    let err = q.enqueue(task("k", 1)).await.expect_err("no replica acknowledged it");
    assert!(matches!(err, QueueError::NotReplicated { wanted: 1, acked: 0 }), "{err:?}");
    assert!(!err.is_transient(), "not repeated: the script ran, repeating it would not help");
}

/// A lease an earlier version took wrote `active` and the token into the
/// record itself (there was no lease overlay): this version still
/// acknowledges it, once, and shows the task completed.
#[tokio::test]
async fn a_lease_in_the_earlier_record_layout_is_still_acknowledged() {
    let (s, q, _clock) = setup("legacy-lease", |_| {}).await;
    let e = q.enqueue(task("email", 3).unique_key("legacy-k")).await.unwrap();
    let tag = format!("{{{}}}", q.config().prefix);
    let pool = s.pool().await;
    let mut c = pool.get().await.unwrap();
    // What the earlier dequeue did: pop the id, rewrite the record, add the lease.
    let _: i64 = redis::Script::new(
        "local id = redis.call('LPOP', KEYS[1]) \
         local m = cmsgpack.unpack(redis.call('HGET', KEYS[2], id)) \
         m.state = 'active' m.token = 'legacy:1' m.attempt = 1 m.started = 1 m.updated = 1 \
         redis.call('HSET', KEYS[2], id, cmsgpack.pack(m)) \
         redis.call('ZADD', KEYS[3], 4102444800000, id) \
         return 1",
    )
    .key(format!("{tag}:p:default"))
    .key(format!("{tag}:meta"))
    .key(format!("{tag}:lease"))
    .invoke_async(&mut *c)
    .await
    .unwrap();
    assert_eq!(state(&q, e.id).await, Some(TaskState::Active));
    let leased = Leased {
        id: e.id,
        token: "legacy:1".into(),
        kind: "email".into(),
        payload: serde_json::json!({ "n": 3 }),
        priority: Priority::Default,
        attempt: 1,
        max_retries: 5,
        timeout: Duration::from_secs(30),
        traceparent: None,
        unique_key: Some("legacy-k".into()),
    };
    assert!(!q.ack(&Leased { token: "legacy:2".into(), ..leased.clone() }, None).await.unwrap(), "a stale token");
    assert!(q.ack(&leased, Some("done".into())).await.unwrap());
    assert!(q.ack(&leased, Some("done".into())).await.unwrap(), "a repeat answers as the first");
    let rec = q.get(e.id).await.unwrap().unwrap();
    assert_eq!((rec.state, rec.attempts, rec.result.as_deref()), (TaskState::Completed, 1, Some("done")));
    let stats = q.stats().await.unwrap();
    assert_eq!((stats.active, stats.total_completed), (0, 1));
    // The unique key was released with the completion.
    assert_eq!(q.enqueue(task("email", 4).unique_key("legacy-k")).await.unwrap().duplicate_of, None);
}

/// A record the worker cannot read (here an attempt count no version writes)
/// goes to dead with the reason, and the tasks leased with it run.
#[tokio::test]
async fn an_unreadable_record_goes_to_dead_without_holding_back_its_batch() {
    let (s, q, _clock) = setup("unreadable", |_| {}).await;
    let bad = q.enqueue(task("email", 1)).await.unwrap().id;
    let good = q.enqueue(task("email", 2)).await.unwrap().id;
    let tag = format!("{{{}}}", q.config().prefix);
    let pool = s.pool().await;
    let mut c = pool.get().await.unwrap();
    let _: i64 = redis::Script::new(
        "local m = cmsgpack.unpack(redis.call('HGET', KEYS[1], ARGV[1])) m.attempt = -3 \
         redis.call('HSET', KEYS[1], ARGV[1], cmsgpack.pack(m)) return 1",
    )
    .key(format!("{tag}:meta"))
    .arg(bad.to_string())
    .invoke_async(&mut *c)
    .await
    .unwrap();
    let leased = q.dequeue(10).await.unwrap();
    assert_eq!(leased.iter().map(|t| t.id).collect::<Vec<_>>(), vec![good]);
    let rec = q.get(bad).await.unwrap().unwrap();
    assert_eq!(rec.state, TaskState::Dead);
    assert!(rec.last_error.as_deref().is_some_and(|e| e.contains("could not be read")), "{:?}", rec.last_error);
    assert!(q.ack(&leased[0], None).await.unwrap());
}
