//! `Queue`: the client half of the queue (enqueue, dequeue, lease, ack, fail,
//! maintenance, inspection). Every state change is one Lua script call,
//! named by an id the client chose (task id, call token, lease token), so the
//! backend can repeat a call whose reply was lost.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use redis::Value;
use uuid::Uuid;

use super::backend::{Backend, BlockingConn};
use super::batch::Batcher;
use super::config::{FakeClock, PriorityMode, QueueConfig, RetryPolicy};
use super::error::{QueueError, Result};
use super::scripts::{Keys, SCRIPTS};
use super::task::{
    Backlog, Data, Enqueued, FailOutcome, Leased, Meta, NewTask, Priority, Stats, TaskRecord, ms_to_time,
    parse_priority_name,
};

/// Most delayed/retry tasks promoted per dequeue call, and most records a
/// reap or janitor call handles; bounds the time one script blocks Redis.
const STEP_LIMIT: usize = 1000;

/// Most tasks one `dequeue` call leases (keeps script arguments and Lua's
/// `unpack` within limits).
pub const MAX_DEQUEUE: usize = 1000;

/// A handle to one logical queue. Cheap to clone; all clones share the
/// batchers. Must be created inside a tokio runtime.
#[derive(Clone, Debug)]
pub struct Queue {
    inner: Arc<Inner>,
}

struct Inner {
    backend: Backend,
    cfg: QueueConfig,
    keys: Keys,
    enqueue: Batcher<EnqueueItem, (Option<String>, Backlog)>,
    ack: Batcher<AckItem, bool>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queue").field("prefix", &self.cfg.prefix).field("backend", &self.backend).finish()
    }
}

/// One task, encoded for the enqueue script.
struct EnqueueItem {
    id: String,
    kind: String,
    data: String,
    priority: usize,
    max_retries: u32,
    timeout_ms: u64,
    unique: String,
    run_at: i64,
    delay_ms: u64,
    /// '' = none.
    traceparent: String,
}

struct AckItem {
    id: String,
    token: String,
    result: Option<String>,
    /// Released by the ack if this task still holds it.
    unique: Option<String>,
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

pub(super) fn bad(script: &'static str, e: impl std::fmt::Display) -> QueueError {
    QueueError::protocol(script, e.to_string())
}

impl Queue {
    /// Creates the queue handle and spawns its enqueue and ack batchers.
    pub fn new(backend: impl Into<Backend>, cfg: QueueConfig) -> Queue {
        let backend = backend.into().tuned(cfg.response_timeout, cfg.retry_window, cfg.wait_replicas, cfg.wait_timeout);
        let keys = Keys::new(&cfg.prefix);
        let enqueue = {
            let (backend, keys, clock) = (backend.clone(), keys.clone(), cfg.fake_clock.clone());
            let (uttl, wake_cap) = (ms(cfg.unique_ttl), cfg.wake_cap.max(1));
            Batcher::spawn(cfg.max_batch, cfg.max_inflight_batches, move |items| {
                let (backend, keys, clock) = (backend.clone(), keys.clone(), clock.clone());
                async move { run_enqueue(&backend, &keys, clock.as_ref(), uttl, wake_cap, items).await }
            })
        };
        let ack = {
            let (backend, keys, clock) = (backend.clone(), keys.clone(), cfg.fake_clock.clone());
            let retention = ms(cfg.completed_retention);
            Batcher::spawn(cfg.max_batch, cfg.max_inflight_acks, move |items| {
                let (backend, keys, clock) = (backend.clone(), keys.clone(), clock.clone());
                async move { run_ack(&backend, &keys, clock.as_ref(), retention, items).await }
            })
        };
        Queue { inner: Arc::new(Inner { backend, cfg, keys, enqueue, ack }) }
    }

    pub fn config(&self) -> &QueueConfig {
        &self.inner.cfg
    }

    /// The `now` argument of a timed script: empty (the script reads Redis
    /// `TIME`) unless a test set a fake clock.
    pub(super) fn now(&self) -> String {
        now_arg(self.inner.cfg.fake_clock.as_ref())
    }

    /// For the admin operations (`admin.rs`), which run their own scripts.
    pub(super) fn backend(&self) -> &Backend {
        &self.inner.backend
    }

    pub(super) fn keys(&self) -> &Keys {
        &self.inner.keys
    }

    /// Stores a task (pending, or scheduled if it runs later). Concurrent
    /// calls are coalesced into one script call.
    pub async fn enqueue(&self, task: NewTask) -> Result<Enqueued> {
        let Some(span) = crate::telemetry::enqueue_span(&task.kind, 1) else {
            return self.enqueue_one(task).await;
        };
        tracing::Instrument::instrument(self.enqueue_one(traced_task(task, &span)), span).await
    }

    async fn enqueue_one(&self, task: NewTask) -> Result<Enqueued> {
        let (id, item) = self.enqueue_item(task)?;
        let (dup, backlog) = self.inner.enqueue.submit(item).await?;
        let e = enqueued(id, dup, backlog)?;
        if e.duplicate_of.is_none() {
            crate::metrics::record_enqueued(1);
        }
        Ok(e)
    }

    /// Stores every task in one script call, hence one Redis round trip (repeated as a whole
    /// when its reply is lost, which the task ids make safe), bypassing the coalescer so that
    /// the tasks are not split between calls. Results in the order of `tasks`. Bounded by the
    /// caller (the HTTP layer accepts at most 100 tasks a request).
    pub async fn enqueue_many(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>> {
        let kind = tasks.first().map_or("", |t| t.kind.as_str());
        let Some(span) = crate::telemetry::enqueue_span(kind, tasks.len()) else {
            return self.enqueue_all(tasks).await;
        };
        let tasks = tasks.into_iter().map(|t| traced_task(t, &span)).collect();
        tracing::Instrument::instrument(self.enqueue_all(tasks), span).await
    }

    async fn enqueue_all(&self, tasks: Vec<NewTask>) -> Result<Vec<Enqueued>> {
        let mut ids = Vec::with_capacity(tasks.len());
        let mut items = Vec::with_capacity(tasks.len());
        for task in tasks {
            let (id, item) = self.enqueue_item(task)?;
            ids.push(id);
            items.push(item);
        }
        if items.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = &self.inner.cfg;
        let n = items.len();
        let dups = run_enqueue(
            &self.inner.backend,
            &self.inner.keys,
            cfg.fake_clock.as_ref(),
            ms(cfg.unique_ttl),
            cfg.wake_cap.max(1),
            items,
        )
        .await?;
        if dups.len() != n {
            return Err(bad("enqueue", format!("{} replies for {n} items", dups.len())));
        }
        let out: Vec<Enqueued> =
            ids.into_iter().zip(dups).map(|(id, (dup, backlog))| enqueued(id, dup, backlog)).collect::<Result<_>>()?;
        crate::metrics::record_enqueued(out.iter().filter(|e| e.duplicate_of.is_none()).count());
        Ok(out)
    }

    /// A task's id and its arguments to the enqueue script.
    fn enqueue_item(&self, task: NewTask) -> Result<(Uuid, EnqueueItem)> {
        if task.kind.is_empty() {
            return Err(QueueError::Invalid("task kind is empty"));
        }
        let cfg = &self.inner.cfg;
        let id = crate::new_uuid();
        let data = serde_json::to_string(&Data { kind: task.kind.clone(), payload: task.payload })
            .map_err(|e| QueueError::Encode(Arc::new(e)))?;
        let item = EnqueueItem {
            id: id.to_string(),
            kind: task.kind.clone(),
            data,
            priority: task.priority.index(),
            max_retries: task.max_retries.unwrap_or(cfg.retry.max_retries),
            timeout_ms: task.timeout.map(ms).unwrap_or(0),
            unique: task.unique_key.unwrap_or_default(),
            run_at: task.run_at.map(|t| t.timestamp_millis()).unwrap_or(0),
            delay_ms: task.run_after.map(ms).unwrap_or(0),
            traceparent: task.traceparent.unwrap_or_default(),
        };
        Ok((id, item))
    }

    /// Leases up to `n` (at most `MAX_DEQUEUE`) ready tasks, after
    /// promoting due delayed and retry tasks, choosing priorities by the
    /// configured mode. Confirm with [`Queue::started`] before running them:
    /// an expired lease that was never confirmed returns to the queue without
    /// counting an attempt.
    pub async fn dequeue(&self, n: usize) -> Result<Vec<Leased>> {
        let n = n.min(MAX_DEQUEUE);
        if n == 0 {
            return Ok(Vec::new());
        }
        let cfg = &self.inner.cfg;
        let orders = priority_orders(cfg.mode, n);
        let token_base = crate::new_uuid().simple().to_string();
        let mut inv = SCRIPTS.dequeue.prepare_invoke();
        // The token base names the call: repeated after a lost reply, the
        // script returns what the first try leased.
        inv.key(&self.inner.keys.all)
            .key(self.inner.keys.call(&token_base))
            .arg(self.now())
            .arg(n)
            .arg(ms(cfg.lease))
            .arg(&token_base)
            .arg(orders)
            .arg(STEP_LIMIT);
        let reply: Vec<Value> = self.inner.backend.invoke(&inv).await?;
        if !reply.len().is_multiple_of(4) {
            return Err(bad("dequeue", format!("{} fields", reply.len())));
        }
        let mut out = Vec::with_capacity(reply.len() / 4);
        let mut unreadable = Vec::new();
        for f in reply.chunks_exact(4) {
            let id: String = field(&f[0], "dequeue")?;
            let token: String = field(&f[1], "dequeue")?;
            match lease(&id, &token, &f[2], &f[3], cfg.default_timeout) {
                Ok(t) => out.push(t),
                Err(e) => unreadable.push((id, token, e)),
            }
        }
        // One task this version cannot read must not hold back the ones leased with it (they
        // would all return at the lease's end and be leased together again): it goes to dead,
        // where an operator sees why.
        for (id, token, e) in unreadable {
            tracing::error!(task = %id, error = %e, "a leased task is unreadable; moved to dead");
            let why = format!("its stored record could not be read ({e})");
            if let Err(fe) = self.fail_token(&id, &token, &why, true).await {
                // Its lease runs out unstarted and it is leased again (and failed again) later.
                tracing::warn!(task = %id, error = %fe, "could not move an unreadable task to dead");
            }
        }
        Ok(out)
    }

    /// Confirms that handlers are about to run these leases (from one or more
    /// `dequeue` calls): their expiry will now count as a failed attempt.
    /// Returns, per task, whether the lease is still ours; run only those.
    pub async fn started(&self, tasks: &[Leased]) -> Result<Vec<bool>> {
        let mut out = vec![false; tasks.len()];
        let mut by_call: BTreeMap<&str, Vec<(usize, usize)>> = BTreeMap::new();
        for (i, t) in tasks.iter().enumerate() {
            let (base, pos) = t.token.rsplit_once(':').ok_or_else(|| bad("started", format!("token {:?}", t.token)))?;
            let pos: usize = pos.parse().map_err(|e| bad("started", e))?;
            by_call.entry(base).or_default().push((i, pos));
        }
        for (base, members) in by_call {
            let mut inv = SCRIPTS.started.prepare_invoke();
            inv.key(&self.inner.keys.all).key(self.inner.keys.call(base)).arg(base);
            let flags: Vec<i64> = self.inner.backend.invoke(&inv).await?;
            for (i, pos) in members {
                out[i] = pos >= 1 && flags.get(pos - 1) == Some(&1);
            }
        }
        Ok(out)
    }

    /// Pushes the lease deadline to now + `QueueConfig::lease`. Returns
    /// false if the lease was lost (the token is stale).
    pub async fn extend(&self, task: &Leased) -> Result<bool> {
        let mut inv = SCRIPTS.extend.prepare_invoke();
        inv.key(&self.inner.keys.all)
            .arg(self.now())
            .arg(task.id.to_string())
            .arg(&task.token)
            .arg(ms(self.inner.cfg.lease));
        let r: i64 = self.inner.backend.invoke(&inv).await?;
        Ok(r == 1)
    }

    /// Marks the task completed (its record kept for `completed_retention`,
    /// its payload dropped) and releases its unique key. Returns false if the
    /// token is stale; true again for a repeat with the same token. Batched.
    pub async fn ack(&self, task: &Leased, result: Option<String>) -> Result<bool> {
        self.inner
            .ack
            .submit(AckItem {
                id: task.id.to_string(),
                token: task.token.clone(),
                result,
                unique: task.unique_key.clone(),
            })
            .await
    }

    /// Records a failed attempt: retry after the backoff, or move to dead
    /// when retries are exhausted or `permanent` is set.
    pub async fn fail(&self, task: &Leased, error: &str, permanent: bool) -> Result<FailOutcome> {
        self.fail_token(&task.id.to_string(), &task.token, error, permanent).await
    }

    async fn fail_token(&self, id: &str, token: &str, error: &str, permanent: bool) -> Result<FailOutcome> {
        let r = &self.inner.cfg.retry;
        let mut inv = SCRIPTS.fail.prepare_invoke();
        inv.key(&self.inner.keys.all).arg(self.now()).arg(id).arg(token).arg(error).arg(if permanent {
            "1"
        } else {
            "0"
        });
        policy_args(&mut inv, r, &self.inner.cfg);
        let at: i64 = self.inner.backend.invoke(&inv).await?;
        Ok(match at {
            -2 => FailOutcome::Stale,
            -1 => FailOutcome::Dead,
            at => FailOutcome::Retrying { at: ms_to_time(at as f64) },
        })
    }

    /// Puts a leased task back at the head of its priority without counting
    /// the attempt (graceful shutdown). Returns false if the token is stale.
    pub async fn requeue_front(&self, task: &Leased) -> Result<bool> {
        let mut inv = SCRIPTS.requeue.prepare_invoke();
        inv.key(&self.inner.keys.all).arg(self.now()).arg(task.id.to_string()).arg(&task.token);
        let r: i64 = self.inner.backend.invoke(&inv).await?;
        Ok(r == 1)
    }

    /// Moves tasks whose lease expired to retry (or dead), counting the
    /// attempt, or back to pending uncharged if their start was never
    /// confirmed. Returns `None` if another caller reaped within
    /// `maintenance_interval`, else how many were reaped.
    pub async fn reap(&self) -> Result<Option<usize>> {
        let mut inv = SCRIPTS.reap.prepare_invoke();
        inv.key(&self.inner.keys.all).arg(self.now()).arg(ms(self.inner.cfg.maintenance_interval)).arg(STEP_LIMIT);
        policy_args(&mut inv, &self.inner.cfg.retry, &self.inner.cfg);
        let n: i64 = self.inner.backend.invoke(&inv).await?;
        Ok(usize::try_from(n).ok())
    }

    /// Removes completed and dead tasks past retention, dead tasks beyond
    /// `dead_max`, and lapsed unique locks. Returns `None` if another caller
    /// ran it within `maintenance_interval`, else the number removed.
    pub async fn janitor(&self) -> Result<Option<JanitorReport>> {
        let cfg = &self.inner.cfg;
        let mut inv = SCRIPTS.janitor.prepare_invoke();
        inv.key(&self.inner.keys.all)
            .arg(self.now())
            .arg(ms(cfg.maintenance_interval))
            .arg(ms(cfg.dead_retention))
            .arg(cfg.dead_max)
            .arg(STEP_LIMIT)
            .arg(cfg.dead_max_bytes);
        let v: Value = self.inner.backend.invoke(&inv).await?;
        if let Value::Int(-1) = v {
            return Ok(None);
        }
        let (completed, dead, unique_locks): (u64, u64, u64) =
            redis::from_redis_value(v).map_err(|e| bad("janitor", e))?;
        Ok(Some(JanitorReport { completed, dead, unique_locks }))
    }

    /// The stored record of a task, if it exists (completed and dead tasks
    /// disappear after their retention).
    pub async fn get(&self, id: Uuid) -> Result<Option<TaskRecord>> {
        let mut inv = SCRIPTS.get.prepare_invoke();
        inv.key(&self.inner.keys.all).arg(id.to_string());
        let (meta, data): (Option<String>, Option<String>) = self.inner.backend.invoke(&inv).await?;
        let Some(meta) = meta else {
            return Ok(None);
        };
        let meta: Meta = serde_json::from_str(&meta).map_err(|e| bad("get", e))?;
        let data: Option<Data> = data.map(|d| serde_json::from_str(&d)).transpose().map_err(|e| bad("get", e))?;
        Ok(Some(TaskRecord::from_parts(id, meta, data)))
    }

    /// Stops dequeueing from one priority (tasks keep accumulating).
    pub async fn pause(&self, p: Priority) -> Result<()> {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(self.inner.keys.paused()).arg(p.as_str());
        self.inner.backend.query::<i64>(&cmd).await.map(drop)
    }

    pub async fn resume(&self, p: Priority) -> Result<()> {
        let mut cmd = redis::cmd("SREM");
        cmd.arg(self.inner.keys.paused()).arg(p.as_str());
        self.inner.backend.query::<i64>(&cmd).await?;
        // Idle workers may be blocked with work now visible: wake one.
        let mut wake = redis::cmd("LPUSH");
        wake.arg(self.inner.keys.wake()).arg("1");
        self.inner.backend.query::<i64>(&wake).await.map(drop)
    }

    /// Queue depth per priority and counts per state.
    pub async fn stats(&self) -> Result<Stats> {
        let mut inv = SCRIPTS.stats.prepare_invoke();
        inv.key(&self.inner.keys.all).arg(self.now());
        let v: Vec<Value> = self.inner.backend.invoke(&inv).await?;
        if v.len() != 11 {
            return Err(bad("stats", format!("{} fields", v.len())));
        }
        let n = |i: usize| -> Result<u64> { field(&v[i], "stats") };
        let mut pending = BTreeMap::new();
        for p in Priority::ALL {
            pending.insert(p, n(p.index())?);
        }
        let paused_names: Vec<String> = field(&v[8], "stats")?;
        let counters: BTreeMap<String, u64> = field(&v[9], "stats")?;
        let counter = |k: &str| counters.get(k).copied().unwrap_or(0);
        Ok(Stats {
            pending,
            scheduled: n(3)?,
            retry: n(4)?,
            active: n(5)?,
            completed: n(6)?,
            dead: n(7)?,
            paused: paused_names.iter().filter_map(|s| parse_priority_name(s)).collect(),
            total_completed: counter("completed"),
            total_failed: counter("failed"),
            total_dead: counter("dead"),
            total_unstarted: counter("unstarted"),
            oldest_pending_age: Duration::from_millis(n(10)?),
        })
    }

    /// Opens a dedicated connection for `wait_for_work` (workers hold one).
    pub(crate) async fn waiter(&self, wait: Duration) -> Result<BlockingConn> {
        self.inner.backend.blocking(wait).await
    }

    /// Blocks up to `wait` for an enqueue's wake token. True if woken.
    pub(crate) async fn wait_for_work(&self, conn: &mut BlockingConn, wait: Duration) -> Result<bool> {
        conn.blpop(self.inner.keys.wake(), wait).await
    }
}

/// What one `janitor` run removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JanitorReport {
    pub completed: u64,
    pub dead: u64,
    pub unique_locks: u64,
}

/// A lease from one task of a dequeue reply: its stored record (MessagePack) and data.
fn lease(id: &str, token: &str, meta: &Value, data: &Value, default_timeout: Duration) -> Result<Leased> {
    let meta: Vec<u8> = field(meta, "dequeue")?;
    let rec = super::record::lease_fields(&meta).map_err(|e| bad("dequeue", format!("task {id}: {e}")))?;
    let data: String = field(data, "dequeue")?;
    let data: Data = serde_json::from_str(&data).map_err(|e| bad("dequeue", e))?;
    Ok(Leased {
        id: Uuid::parse_str(id).map_err(|e| bad("dequeue", e))?,
        token: token.to_owned(),
        kind: data.kind,
        payload: data.payload,
        priority: Priority::from_index(rec.priority).ok_or_else(|| bad("dequeue", "priority out of range"))?,
        attempt: rec.attempt.saturating_add(1),
        max_retries: rec.max_retries,
        timeout: match u64::try_from(rec.timeout_ms) {
            Ok(ms) if ms > 0 => Duration::from_millis(ms),
            _ => default_timeout,
        },
        traceparent: rec.traceparent.filter(|t| !t.is_empty()),
        unique_key: rec.unique,
    })
}

pub(super) fn field<T: redis::FromRedisValue>(v: &Value, script: &'static str) -> Result<T> {
    redis::from_redis_value_ref(v).map_err(|e| bad(script, e))
}

/// The arguments `policy` in common.lua reads.
pub(super) fn policy_args(inv: &mut redis::ScriptInvocation<'_>, r: &RetryPolicy, cfg: &QueueConfig) {
    inv.arg(ms(r.base))
        .arg(r.factor)
        .arg(ms(r.cap))
        .arg(r.jitter.clamp(0.0, 1.0))
        .arg(fastrand::f64())
        .arg(cfg.dead_max)
        .arg(cfg.dead_max_bytes);
}

fn now_arg(clock: Option<&FakeClock>) -> String {
    clock.map(|c| c.now_ms().to_string()).unwrap_or_default()
}

/// Priority preference per slot, as digits: one triple for strict mode,
/// one weighted-random triple per slot otherwise.
fn priority_orders(mode: PriorityMode, n: usize) -> String {
    let PriorityMode::Weighted { critical, default, low } = mode else {
        return "012".to_owned();
    };
    if critical + default + low == 0 {
        return "012".to_owned();
    }
    let mut s = String::with_capacity(n * 3);
    for _ in 0..n {
        // Weighted sampling without replacement: the first pick decides the
        // share; the rest only matter when the preferred list is empty.
        let mut left = [(0u8, critical), (1, default), (2, low)];
        let mut len = 3;
        while len > 0 {
            let total: u32 = left[..len].iter().map(|x| x.1).sum();
            let j = if total == 0 {
                0
            } else {
                let mut r = fastrand::u32(0..total);
                let mut j = 0;
                while r >= left[j].1 {
                    r -= left[j].1;
                    j += 1;
                }
                j
            };
            s.push(char::from(b'0' + left[j].0));
            left[j..len].rotate_left(1);
            len -= 1;
        }
    }
    s
}

/// The task, carrying `span`'s context unless the caller gave it one.
fn traced_task(mut task: NewTask, span: &tracing::Span) -> NewTask {
    if task.traceparent.is_none() {
        task.traceparent = crate::telemetry::traceparent(span);
    }
    task
}

/// What the enqueue script said of one task: nothing (stored), or the holder of its unique
/// key (`!` first when the holder's request differs).
fn enqueued(id: Uuid, dup: Option<String>, backlog: Backlog) -> Result<Enqueued> {
    let (duplicate_of, duplicate_differs) = match dup {
        None => (None, false),
        Some(s) => {
            let (differs, holder) = match s.strip_prefix('!') {
                Some(rest) => (true, rest),
                None => (false, s.as_str()),
            };
            (Some(Uuid::parse_str(holder).map_err(|e| bad("enqueue", e))?), differs)
        }
    };
    Ok(Enqueued { id, duplicate_of, duplicate_differs, backlog })
}

async fn run_enqueue(
    backend: &Backend,
    keys: &Keys,
    clock: Option<&FakeClock>,
    unique_ttl_ms: u64,
    wake_cap: usize,
    items: Vec<EnqueueItem>,
) -> Result<Vec<(Option<String>, Backlog)>> {
    let mut inv = SCRIPTS.enqueue.prepare_invoke();
    inv.key(&keys.all).arg(now_arg(clock)).arg(items.len()).arg(unique_ttl_ms).arg(wake_cap);
    for it in &items {
        inv.arg(&it.id)
            .arg(&it.data)
            .arg(it.priority)
            .arg(it.max_retries)
            .arg(it.timeout_ms)
            .arg(&it.unique)
            .arg(it.run_at)
            .arg(it.delay_ms)
            .arg(&it.kind)
            .arg(&it.traceparent);
    }
    // Every key shares the queue's hash tag, so any of them names the master that ran it.
    let tag_key = keys.all.first().map_or("", String::as_str);
    let out: Vec<Value> = backend.invoke_replicated(&inv, tag_key).await?;
    let n = items.len();
    if out.len() != n + 5 {
        return Err(bad("enqueue", format!("{} fields for {n} tasks", out.len())));
    }
    let count = |i: usize| -> Result<u64> { field(&out[n + i], "enqueue") };
    let backlog = Backlog { pending: [count(0)?, count(1)?, count(2)?], active: count(3)?, total_completed: count(4)? };
    out[..n]
        .iter()
        .map(|v| {
            let s: String = field(v, "enqueue")?;
            Ok((if s.is_empty() { None } else { Some(s) }, backlog))
        })
        .collect()
}

async fn run_ack(
    backend: &Backend,
    keys: &Keys,
    clock: Option<&FakeClock>,
    retention_ms: u64,
    items: Vec<AckItem>,
) -> Result<Vec<bool>> {
    let mut inv = SCRIPTS.ack.prepare_invoke();
    inv.key(&keys.all).arg(now_arg(clock)).arg(retention_ms).arg(items.len());
    for it in &items {
        // '=' marks a present result so an empty string stays distinguishable.
        let result = it.result.as_ref().map(|r| format!("={r}")).unwrap_or_default();
        inv.arg(&it.id).arg(&it.token).arg(result).arg(it.unique.as_deref().unwrap_or_default());
    }
    let out: Vec<i64> = backend.invoke(&inv).await?;
    Ok(out.into_iter().map(|x| x == 1).collect())
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn strict_order_is_one_triple() {
        assert_eq!(priority_orders(PriorityMode::Strict, 5), "012");
    }

    #[test]
    fn weighted_orders_are_permutations() {
        let s = priority_orders(PriorityMode::default(), 200);
        assert_eq!(s.len(), 600);
        for t in s.as_bytes().chunks(3) {
            let mut t = t.to_vec();
            t.sort();
            assert_eq!(t, b"012");
        }
    }

    #[test]
    fn zero_weight_is_never_first() {
        let mode = PriorityMode::Weighted { critical: 1, default: 0, low: 1 };
        let s = priority_orders(mode, 500);
        assert!(s.as_bytes().chunks(3).all(|t| t[0] != b'1'));
    }
}
