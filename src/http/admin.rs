//! Queue administration (tag Admin, scope `admin`): thin handlers over `queue::Queue`'s
//! stats, listing and actions, the payload redacted by `tasks::redact`. Listing cursors are
//! `<state>.<priority|all>.<a>.<b>`: bound to the listing they were issued for, so one of
//! another state or filter is refused (400, code 1016) instead of paging something else.

use api_server::{
    AdminApi, AdminQueue, AdminQueueStats, AdminQueueTotals, AdminTask, AdminTaskPage, AdminTaskSummary,
    CancelAdminTaskParams, CancelAdminTaskResponse, DeleteAdminTaskParams, DeleteAdminTaskResponse, ErrorCode,
    GetAdminTaskParams, GetAdminTaskResponse, GetQueueStatsResponse, ListAdminTasksParams, ListAdminTasksResponse,
    PauseQueueParams, PauseQueueResponse, ResumeQueueParams, ResumeQueueResponse, RetryAdminTaskParams,
    RetryAdminTaskResponse, TaskState as ApiTaskState, rt::Problem,
};
use serde_json::json;
use uuid::Uuid;

use super::{
    App, internal, success,
    tasks::{api_priority, api_state, priority, task_status},
};
use crate::{
    auth::Principal,
    queue::{AdminOutcome, PageCursor, Priority, Stats, TaskRecord, TaskState},
    tasks::redact::redact,
};

fn state_of(s: ApiTaskState) -> TaskState {
    match s {
        ApiTaskState::Pending => TaskState::Pending,
        ApiTaskState::Scheduled => TaskState::Scheduled,
        ApiTaskState::Active => TaskState::Active,
        ApiTaskState::Retry => TaskState::Retry,
        ApiTaskState::Completed => TaskState::Completed,
        ApiTaskState::Dead => TaskState::Dead,
    }
}

fn state_word(s: TaskState) -> &'static str {
    match s {
        TaskState::Pending => "pending",
        TaskState::Scheduled => "scheduled",
        TaskState::Active => "active",
        TaskState::Retry => "retry",
        TaskState::Completed => "completed",
        TaskState::Dead => "dead",
    }
}

/// The listing a cursor belongs to: `<state>.<priority|all>`.
fn listing(state: TaskState, filter: Option<Priority>) -> String {
    format!("{}.{}", state_word(state), filter.map_or("all", Priority::as_str))
}

fn encode_cursor(state: TaskState, filter: Option<Priority>, c: PageCursor) -> String {
    match c {
        PageCursor::Pending { priority, offset } => format!("{}.{}.{offset}", listing(state, filter), priority.index()),
        PageCursor::Ranked { score, id } => format!("{}.{score}.{}", listing(state, filter), id.simple()),
    }
}

/// The cursor, if it was issued for this listing; anything else is `None`.
fn decode_cursor(state: TaskState, filter: Option<Priority>, s: &str) -> Option<PageCursor> {
    let rest = s.strip_prefix(&listing(state, filter))?.strip_prefix('.')?;
    let (a, b) = rest.split_once('.')?;
    if state == TaskState::Pending {
        let p = Priority::from_index(a.parse().ok()?)?;
        // Without a filter the lists follow each other; with one, only its list is paged.
        if filter.is_some_and(|f| f != p) {
            return None;
        }
        Some(PageCursor::Pending { priority: p, offset: b.parse().ok()? })
    } else {
        Some(PageCursor::Ranked { score: a.parse().ok()?, id: Uuid::try_parse(b).ok()? })
    }
}

fn count(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn queue_view(stats: &Stats, p: Priority) -> AdminQueue {
    AdminQueue {
        priority: api_priority(p),
        pending: count(stats.pending.get(&p).copied().unwrap_or(0)),
        paused: stats.paused.contains(&p),
    }
}

fn summary(r: &TaskRecord) -> AdminTaskSummary {
    AdminTaskSummary {
        task_id: r.id,
        type_: r.kind.clone(),
        state: api_state(r.state),
        queue: api_priority(r.priority),
        attempts: i64::from(r.attempts),
        last_error: Some(r.last_error.clone()),
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// The problem for an action that did not apply.
fn refused(outcome: AdminOutcome) -> Option<Problem> {
    match outcome {
        AdminOutcome::Done => None,
        AdminOutcome::NotFound => Some(ErrorCode::TaskNotFound.problem()),
        AdminOutcome::WrongState(s) => {
            Some(ErrorCode::TaskStateConflict.problem().with_data(json!({ "state": state_word(s) })))
        }
        AdminOutcome::UniqueHeld => Some(
            ErrorCode::TaskStateConflict
                .problem()
                .with_detail("another task holds this task's Idempotency-Key now")
                .with_data(json!({ "state": "dead" })),
        ),
    }
}

impl App {
    /// The task after an action, as the action's answer.
    async fn after(&self, op: &str, id: Uuid) -> Result<AdminTaskSummary, Problem> {
        let r = self.queue.get(id).await.map_err(|e| internal(op, &e))?;
        r.as_ref().map(summary).ok_or_else(|| ErrorCode::TaskNotFound.problem())
    }

    async fn queue_state(&self, op: &str, p: Priority) -> Result<AdminQueue, Problem> {
        let stats = self.queue.stats().await.map_err(|e| internal(op, &e))?;
        Ok(queue_view(&stats, p))
    }
}

impl AdminApi for App {
    async fn get_queue_stats(&self, _who: Principal) -> Result<GetQueueStatsResponse, Problem> {
        let s = self.queue.stats().await.map_err(|e| internal("getQueueStats", &e))?;
        let data = AdminQueueStats {
            queues: Priority::ALL.into_iter().map(|p| queue_view(&s, p)).collect(),
            scheduled: count(s.scheduled),
            retry: count(s.retry),
            active: count(s.active),
            completed: count(s.completed),
            dead: count(s.dead),
            totals: AdminQueueTotals {
                completed: count(s.total_completed),
                failed: count(s.total_failed),
                dead: count(s.total_dead),
                unstarted: count(s.total_unstarted),
            },
            oldest_pending_age_ms: i64::try_from(s.oldest_pending_age.as_millis()).unwrap_or(i64::MAX),
            sampled_at: chrono::Utc::now(),
        };
        Ok(GetQueueStatsResponse::Ok(success!(GetQueueStats200Response, data)))
    }

    async fn list_admin_tasks(
        &self,
        _who: Principal,
        params: ListAdminTasksParams,
    ) -> Result<ListAdminTasksResponse, Problem> {
        let state = state_of(params.state);
        let filter = params.priority.map(priority);
        let cursor = match params.cursor.as_deref() {
            None => None,
            Some(c) => Some(decode_cursor(state, filter, c).ok_or_else(|| ErrorCode::InvalidPageToken.problem())?),
        };
        let limit = usize::try_from(params.limit).unwrap_or(crate::queue::MAX_PAGE);
        let page = self.queue.list(state, filter, cursor, limit).await.map_err(|e| internal("listAdminTasks", &e))?;
        let data = AdminTaskPage {
            tasks: page.tasks.iter().map(summary).collect(),
            total: count(page.total),
            next_cursor: page.next.map(|c| encode_cursor(state, filter, c)),
        };
        Ok(ListAdminTasksResponse::Ok(success!(ListAdminTasks200Response, data)))
    }

    async fn get_admin_task(
        &self,
        _who: Principal,
        params: GetAdminTaskParams,
    ) -> Result<GetAdminTaskResponse, Problem> {
        let record = self.queue.get(params.task_id).await.map_err(|e| internal("getAdminTask", &e))?;
        let record = record.ok_or_else(|| ErrorCode::TaskNotFound.problem())?;
        let kind = record.kind.clone();
        let payload = record.payload.clone();
        // A kind the contract does not know is never written by this service.
        let status = task_status(record).ok_or_else(|| ErrorCode::TaskNotFound.problem())?;
        let (payload, redacted) = match payload {
            serde_json::Value::Object(_) => {
                let (v, r) = redact(&kind, payload);
                (v.as_object().cloned(), r)
            }
            _ => (None, Vec::new()),
        };
        let data = AdminTask { task: status, payload: Some(payload), redacted };
        Ok(GetAdminTaskResponse::Ok(success!(GetAdminTask200Response, data)))
    }

    async fn delete_admin_task(
        &self,
        _who: Principal,
        params: DeleteAdminTaskParams,
    ) -> Result<DeleteAdminTaskResponse, Problem> {
        let outcome = self.queue.delete_pending(params.task_id).await.map_err(|e| internal("deleteAdminTask", &e))?;
        if let Some(p) = refused(outcome) {
            return Err(p);
        }
        Ok(DeleteAdminTaskResponse::Ok(api_server::SuccessResponse {
            code: 0,
            msg: "success".to_owned(),
            data: None,
            timestamp: chrono::Utc::now(),
        }))
    }

    async fn retry_admin_task(
        &self,
        _who: Principal,
        params: RetryAdminTaskParams,
    ) -> Result<RetryAdminTaskResponse, Problem> {
        let outcome = self.queue.retry_dead(params.task_id).await.map_err(|e| internal("retryAdminTask", &e))?;
        if let Some(p) = refused(outcome) {
            return Err(p);
        }
        let t = self.after("retryAdminTask", params.task_id).await?;
        Ok(RetryAdminTaskResponse::Ok(success!(RetryAdminTask200Response, t)))
    }

    async fn cancel_admin_task(
        &self,
        _who: Principal,
        params: CancelAdminTaskParams,
    ) -> Result<CancelAdminTaskResponse, Problem> {
        let outcome = self.queue.cancel_active(params.task_id).await.map_err(|e| internal("cancelAdminTask", &e))?;
        if let Some(p) = refused(outcome) {
            return Err(p);
        }
        let t = self.after("cancelAdminTask", params.task_id).await?;
        Ok(CancelAdminTaskResponse::Ok(success!(CancelAdminTask200Response, t)))
    }

    async fn pause_queue(&self, _who: Principal, params: PauseQueueParams) -> Result<PauseQueueResponse, Problem> {
        let p = priority(params.priority);
        self.queue.pause(p).await.map_err(|e| internal("pauseQueue", &e))?;
        let q = self.queue_state("pauseQueue", p).await?;
        Ok(PauseQueueResponse::Ok(success!(PauseQueue200Response, q)))
    }

    async fn resume_queue(&self, _who: Principal, params: ResumeQueueParams) -> Result<ResumeQueueResponse, Problem> {
        let p = priority(params.priority);
        self.queue.resume(p).await.map_err(|e| internal("resumeQueue", &e))?;
        let q = self.queue_state("resumeQueue", p).await?;
        Ok(ResumeQueueResponse::Ok(success!(ResumeQueue200Response, q)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_stay_in_their_listing() {
        let id = Uuid::new_v4();
        let cases = [
            (TaskState::Pending, None, PageCursor::Pending { priority: Priority::Low, offset: 40 }),
            (TaskState::Pending, Some(Priority::Low), PageCursor::Pending { priority: Priority::Low, offset: 3 }),
            (TaskState::Dead, Some(Priority::Critical), PageCursor::Ranked { score: 1_733_000_000_000, id }),
        ];
        for (state, filter, c) in cases {
            let s = encode_cursor(state, filter, c);
            assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.'), "{s}");
            assert_eq!(decode_cursor(state, filter, &s), Some(c), "{s}");
            assert_eq!(decode_cursor(TaskState::Retry, filter, &s), None, "another state: {s}");
            assert_eq!(decode_cursor(state, Some(Priority::Default), &s), None, "another filter: {s}");
        }
        assert_eq!(decode_cursor(TaskState::Pending, Some(Priority::Low), "pending.low.0.3"), None);
        assert_eq!(decode_cursor(TaskState::Dead, None, "dead.all.x.y"), None);
    }
}
