//! The values that cross the queue's API: tasks to enqueue, leased tasks,
//! stored task records and queue statistics.

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Task priority; FIFO within one priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    Critical,
    #[default]
    Default,
    Low,
}

impl Priority {
    pub const ALL: [Priority; 3] = [Priority::Critical, Priority::Default, Priority::Low];

    /// Position in `ALL`, which is also the number stored in Redis.
    pub fn index(self) -> usize {
        match self {
            Priority::Critical => 0,
            Priority::Default => 1,
            Priority::Low => 2,
        }
    }

    pub fn from_index(i: i64) -> Option<Priority> {
        match i {
            0 => Some(Priority::Critical),
            1 => Some(Priority::Default),
            2 => Some(Priority::Low),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Critical => "critical",
            Priority::Default => "default",
            Priority::Low => "low",
        }
    }

    fn from_name(s: &str) -> Option<Priority> {
        Priority::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

/// Where a task is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskState {
    /// Ready, waiting in its priority list.
    Pending,
    /// Delayed until its `run_at`.
    Scheduled,
    /// Leased by a worker.
    Active,
    /// Failed, waiting for its next attempt.
    Retry,
    Completed,
    /// Retries exhausted or failed permanently.
    Dead,
}

/// A task to enqueue. Build with `NewTask::new(kind, payload)` and the
/// chained setters.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    /// Overrides `RetryPolicy::max_retries`.
    pub max_retries: Option<u32>,
    /// Handler timeout; `QueueConfig::default_timeout` when unset.
    pub timeout: Option<Duration>,
    /// While a task with this key is pending, scheduled, active or waiting
    /// to retry, enqueueing another is rejected with the first one's id.
    pub unique_key: Option<String>,
    pub run_at: Option<DateTime<Utc>>,
    /// Delay from enqueue time (in Redis time); the later of
    /// `run_at` and `now + run_after` wins when both are set.
    pub run_after: Option<Duration>,
    /// The W3C `traceparent` the task's run continues. Unset, `Queue::enqueue` fills in its
    /// own span's when tracing is on.
    pub traceparent: Option<String>,
}

impl NewTask {
    pub fn new(kind: impl Into<String>, payload: serde_json::Value) -> Self {
        NewTask {
            kind: kind.into(),
            payload,
            priority: Priority::Default,
            max_retries: None,
            timeout: None,
            unique_key: None,
            run_at: None,
            run_after: None,
            traceparent: None,
        }
    }
    pub fn priority(mut self, p: Priority) -> Self {
        self.priority = p;
        self
    }
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = Some(n);
        self
    }
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
    pub fn unique_key(mut self, k: impl Into<String>) -> Self {
        self.unique_key = Some(k.into());
        self
    }
    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }
    pub fn run_after(mut self, d: Duration) -> Self {
        self.run_after = Some(d);
        self
    }
}

/// Outcome of `enqueue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    /// The new task's id (not stored when `duplicate_of` is set).
    pub id: Uuid,
    /// Set when the unique key is held: the id of the task holding it.
    pub duplicate_of: Option<Uuid>,
    /// With `duplicate_of`: the holder was enqueued with other data (kind
    /// and payload) or another priority, so this is not a repeat of it.
    pub duplicate_differs: bool,
    /// The queue right after the script call that stored this task (with the
    /// tasks coalesced into the same call), read in that call: what a wait
    /// estimate needs, without a `stats` round trip per enqueue.
    pub backlog: Backlog,
}

/// Queue depth as one enqueue call saw it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Ready tasks per priority, indexed by `Priority::index`.
    pub pending: [u64; 3],
    /// Leased (running) tasks.
    pub active: u64,
    /// Tasks completed since the queue was created.
    pub total_completed: u64,
}

/// A dequeued task, leased to the caller until acked, failed, requeued or
/// its lease expires. The token fences every later call about this lease.
#[derive(Debug, Clone)]
pub struct Leased {
    pub id: Uuid,
    pub token: String,
    pub kind: String,
    pub payload: serde_json::Value,
    pub priority: Priority,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub max_retries: u32,
    pub timeout: Duration,
    /// The trace the enqueuing request was part of (W3C `traceparent`); `None` for tasks
    /// enqueued without tracing or before records carried one.
    pub traceparent: Option<String>,
    /// The task's unique key (`NewTask::unique_key`), if it has one.
    pub unique_key: Option<String>,
}

/// Outcome of `fail`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Scheduled for another attempt at this time.
    Retrying {
        at: DateTime<Utc>,
    },
    Dead,
    /// The lease was no longer ours; nothing changed.
    Stale,
}

/// One failed attempt in a task's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptError {
    pub attempt: u32,
    pub error: String,
    pub at: DateTime<Utc>,
}

/// A stored task, as returned by `get`.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskRecord {
    pub id: Uuid,
    pub kind: String,
    /// `Null` once the task completed: payloads are dropped at completion
    /// (the record stays for the retention time), so memory does not grow
    /// with throughput.
    pub payload: serde_json::Value,
    pub state: TaskState,
    pub priority: Priority,
    /// Attempts started so far.
    pub attempts: u32,
    pub max_retries: u32,
    pub timeout: Option<Duration>,
    pub unique_key: Option<String>,
    pub last_error: Option<String>,
    pub history: Vec<AttemptError>,
    pub result: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Start of the latest attempt.
    pub started_at: Option<DateTime<Utc>>,
    /// When it completed or died.
    pub completed_at: Option<DateTime<Utc>>,
    /// Next run time while scheduled or waiting to retry.
    pub run_at: Option<DateTime<Utc>>,
}

/// Queue depth and state counts, from `stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Pending tasks per priority (ready, including paused priorities).
    pub pending: BTreeMap<Priority, u64>,
    pub scheduled: u64,
    pub retry: u64,
    pub active: u64,
    /// Completed tasks still retained.
    pub completed: u64,
    /// Dead tasks still retained.
    pub dead: u64,
    pub paused: Vec<Priority>,
    /// Totals since the queue was created: tasks completed, failed
    /// attempts (including expired leases), tasks moved to dead, expired
    /// leases whose handler never started (returned uncharged).
    pub total_completed: u64,
    pub total_failed: u64,
    pub total_dead: u64,
    pub total_unstarted: u64,
    /// How long the oldest pending task (the head of any priority) has
    /// waited since it was enqueued; zero when none is pending.
    pub oldest_pending_age: std::time::Duration,
}

impl Stats {
    pub fn pending_total(&self) -> u64 {
        self.pending.values().sum()
    }

    /// The part of the stats an enqueue also reports.
    pub fn backlog(&self) -> Backlog {
        let mut pending = [0; 3];
        for (p, n) in &self.pending {
            pending[p.index()] = *n;
        }
        Backlog { pending, active: self.active, total_completed: self.total_completed }
    }
}

/// The mutable record the scripts keep in the `meta` hash (MessagePack,
/// converted to JSON by `get.lua`).
/// Numbers are read as f64 because cjson may print large ones in exponent form.
#[derive(Debug, Deserialize)]
pub(crate) struct Meta {
    pub state: TaskState,
    /// Absent in records written before payloads were dropped on completion.
    #[serde(default)]
    pub kind: Option<String>,
    pub priority: f64,
    pub attempt: f64,
    pub max_retries: f64,
    pub timeout: f64,
    pub created: f64,
    pub updated: f64,
    #[serde(default)]
    pub started: Option<f64>,
    #[serde(default)]
    pub finished: Option<f64>,
    #[serde(default)]
    pub run_at: Option<f64>,
    #[serde(default)]
    pub unique: Option<String>,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub result: Option<String>,
    /// cjson encodes an empty table as `{}`, so this accepts an object too.
    #[serde(default, deserialize_with = "history_list")]
    pub history: Vec<MetaAttempt>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct MetaAttempt {
    pub attempt: f64,
    pub error: String,
    pub at: f64,
}

fn history_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<MetaAttempt>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum ListOrMap {
        List(Vec<MetaAttempt>),
        Map(BTreeMap<String, MetaAttempt>),
    }
    Ok(match ListOrMap::deserialize(d)? {
        ListOrMap::List(v) => v,
        ListOrMap::Map(m) => m.into_values().collect(),
    })
}

/// The immutable part of a task, serialized by Rust into the `data` hash and
/// handed back verbatim on dequeue (the scripts never parse it).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Data {
    pub kind: String,
    pub payload: serde_json::Value,
}

pub(crate) fn ms_to_time(ms: f64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms as i64).unwrap_or_default()
}

impl TaskRecord {
    pub(crate) fn from_parts(id: Uuid, meta: Meta, data: Option<Data>) -> Self {
        let (data_kind, payload) = data.map_or((None, serde_json::Value::Null), |d| (Some(d.kind), d.payload));
        TaskRecord {
            id,
            kind: meta.kind.or(data_kind).unwrap_or_default(),
            payload,
            state: meta.state,
            priority: Priority::from_index(meta.priority as i64).unwrap_or_default(),
            attempts: meta.attempt as u32,
            max_retries: meta.max_retries as u32,
            timeout: (meta.timeout > 0.0).then(|| Duration::from_millis(meta.timeout as u64)),
            unique_key: meta.unique,
            last_error: meta.last_error,
            history: meta
                .history
                .into_iter()
                .map(|h| AttemptError { attempt: h.attempt as u32, error: h.error, at: ms_to_time(h.at) })
                .collect(),
            result: meta.result,
            created_at: ms_to_time(meta.created),
            updated_at: ms_to_time(meta.updated),
            started_at: meta.started.map(ms_to_time),
            completed_at: meta.finished.map(ms_to_time),
            run_at: meta.run_at.map(ms_to_time),
        }
    }
}

pub(crate) fn parse_priority_name(s: &str) -> Option<Priority> {
    Priority::from_name(s)
}
