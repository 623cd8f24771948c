//! Queue administration: tasks of one state a page at a time, and the
//! operator's actions (retry a dead task, delete a pending one, cancel a
//! running one). Each is one script of `scripts/admin_*.lua` over the queue's
//! keys, so lease fencing and the dead set's bounds hold as for the workers.

use std::sync::LazyLock;

use redis::Value;
use uuid::Uuid;

use super::client::{Queue, bad, field, policy_args};
use super::error::{QueueError, Result};
use super::scripts::{Named, named, with_prelude};
use super::task::{Meta, Priority, TaskRecord, TaskState};

/// Most tasks one page holds: bounds the entries a list script reads and
/// the records it returns.
pub const MAX_PAGE: usize = 100;

struct AdminScripts {
    list: Named,
    retry: Named,
    delete: Named,
    cancel: Named,
}

static SCRIPTS: LazyLock<AdminScripts> = LazyLock::new(|| AdminScripts {
    list: named("admin_list", with_prelude(include_str!("scripts/admin_list.lua"))),
    retry: named("admin_retry", with_prelude(include_str!("scripts/admin_retry.lua"))),
    delete: named("admin_delete", with_prelude(include_str!("scripts/admin_delete.lua"))),
    cancel: named("admin_cancel", with_prelude(include_str!("scripts/admin_cancel.lua"))),
});

/// Where the next page of a listing starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageCursor {
    /// `pending`: a position in one priority's list.
    Pending { priority: Priority, offset: u64 },
    /// Every other state: the score and id of the last entry returned
    /// (its state's zset sorts by score, then id).
    Ranked { score: i64, id: Uuid },
}

/// One page of `list`.
#[derive(Debug, Clone)]
pub struct TaskPage {
    pub tasks: Vec<TaskRecord>,
    /// Set when more entries may follow.
    pub next: Option<PageCursor>,
    /// Tasks in the state now (of the priority, for `pending` with one).
    pub total: u64,
}

/// What an admin action found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminOutcome {
    Done,
    NotFound,
    /// The task is in a state the action does not apply to.
    WrongState(TaskState),
    /// A retried task's unique key is held by another task.
    UniqueHeld,
}

fn state_name(s: TaskState) -> &'static str {
    match s {
        TaskState::Pending => "pending",
        TaskState::Scheduled => "scheduled",
        TaskState::Active => "active",
        TaskState::Retry => "retry",
        TaskState::Completed => "completed",
        TaskState::Dead => "dead",
    }
}

fn parse_state(s: &str) -> Option<TaskState> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).ok()
}

/// The `{code, state}` reply of an action script.
fn outcome(script: &'static str, v: (i64, String)) -> Result<AdminOutcome> {
    let state = || parse_state(&v.1).ok_or_else(|| bad(script, format!("state {:?}", v.1)));
    Ok(match v.0 {
        1 => AdminOutcome::Done,
        0 => AdminOutcome::NotFound,
        -1 => AdminOutcome::WrongState(state()?),
        -2 => AdminOutcome::UniqueHeld,
        n => return Err(bad(script, format!("code {n}"))),
    })
}

impl Queue {
    /// One page (at most [`MAX_PAGE`] tasks) of `state`, read from the
    /// state's own index: cost linear in `limit`, whatever the depth. With
    /// `priority` on a state other than pending the entries read are
    /// filtered, so a page may hold fewer than `limit` tasks.
    pub async fn list(
        &self,
        state: TaskState,
        priority: Option<Priority>,
        cursor: Option<PageCursor>,
        limit: usize,
    ) -> Result<TaskPage> {
        let limit = limit.clamp(1, MAX_PAGE);
        let (ca, cb) = match (state, cursor) {
            (_, None) => (String::new(), String::new()),
            (TaskState::Pending, Some(PageCursor::Pending { priority: p, offset })) => {
                (p.index().to_string(), offset.to_string())
            }
            (s, Some(PageCursor::Ranked { score, id })) if s != TaskState::Pending => {
                (score.to_string(), id.to_string())
            }
            _ => return Err(QueueError::Invalid("cursor of another state")),
        };
        let mut inv = SCRIPTS.list.prepare_invoke();
        inv.key(&self.keys().all)
            .arg(state_name(state))
            .arg(priority.map(|p| p.index().to_string()).unwrap_or_default())
            .arg(ca)
            .arg(cb)
            .arg(limit);
        let v: Vec<Value> = self.backend().invoke(&inv).await?;
        if v.len() < 3 || !(v.len() - 3).is_multiple_of(2) {
            return Err(bad("admin_list", format!("{} fields", v.len())));
        }
        let (na, nb): (String, String) = (field(&v[0], "admin_list")?, field(&v[1], "admin_list")?);
        let next = if na.is_empty() {
            None
        } else if state == TaskState::Pending {
            let p = na.parse::<i64>().ok().and_then(Priority::from_index);
            let offset = nb.parse::<u64>().ok();
            match (p, offset) {
                (Some(priority), Some(offset)) => Some(PageCursor::Pending { priority, offset }),
                _ => return Err(bad("admin_list", format!("cursor {na:?} {nb:?}"))),
            }
        } else {
            // Scores are whole milliseconds, though Redis may print them as floats.
            let score = na.parse::<f64>().map_err(|e| bad("admin_list", e))? as i64;
            Some(PageCursor::Ranked { score, id: Uuid::parse_str(&nb).map_err(|e| bad("admin_list", e))? })
        };
        let total: u64 = field(&v[2], "admin_list")?;
        let mut tasks = Vec::with_capacity((v.len() - 3) / 2);
        for pair in v[3..].chunks_exact(2) {
            let id: String = field(&pair[0], "admin_list")?;
            let meta: String = field(&pair[1], "admin_list")?;
            let meta: Meta = serde_json::from_str(&meta).map_err(|e| bad("admin_list", e))?;
            let id = Uuid::parse_str(&id).map_err(|e| bad("admin_list", e))?;
            tasks.push(TaskRecord::from_parts(id, meta, None));
        }
        Ok(TaskPage { tasks, next, total })
    }

    /// Moves a dead task back to pending (tail of its priority), attempts
    /// reset, history kept, its unique key taken again.
    pub async fn retry_dead(&self, id: Uuid) -> Result<AdminOutcome> {
        let cfg = self.config();
        let mut inv = SCRIPTS.retry.prepare_invoke();
        inv.key(&self.keys().all)
            .arg(self.now())
            .arg(id.to_string())
            .arg(u64::try_from(cfg.unique_ttl.as_millis()).unwrap_or(u64::MAX))
            .arg(cfg.wake_cap.max(1))
            .arg(crate::new_uuid().simple().to_string());
        outcome("admin_retry", self.backend().invoke(&inv).await?)
    }

    /// Removes a pending task so that no worker runs it. One `LREM`: a scan
    /// of its priority's list inside Redis. A repeat after a lost reply
    /// finds nothing and answers `NotFound`.
    pub async fn delete_pending(&self, id: Uuid) -> Result<AdminOutcome> {
        let mut inv = SCRIPTS.delete.prepare_invoke();
        inv.key(&self.keys().all).arg(id.to_string());
        outcome("admin_delete", self.backend().invoke(&inv).await?)
    }

    /// Ends a running task's lease and moves it to dead. The worker's later
    /// extend, ack or fail is refused as stale, so its heartbeat cancels the
    /// handler and nothing it reports changes the task.
    pub async fn cancel_active(&self, id: Uuid) -> Result<AdminOutcome> {
        let cfg = self.config();
        let mut inv = SCRIPTS.cancel.prepare_invoke();
        inv.key(&self.keys().all).arg(self.now()).arg(id.to_string()).arg(crate::new_uuid().simple().to_string());
        policy_args(&mut inv, &cfg.retry, cfg);
        outcome("admin_cancel", self.backend().invoke(&inv).await?)
    }
}
