//! Task submission: build the task's typed payload (its own checks beyond
//! the contract's), enqueue with the requested priority (one token's
//! Idempotency-Key names one request), and word the queue's wait estimate.

use std::time::Duration;

use api_server::{
    EmailTaskBatchRequest, EmailTaskBatchResponse, EmailTaskRequest, ErrorCode, GetTaskParams, GetTaskResponse,
    Priority as ApiPriority, SubmitEmailTaskBatchResponse, SubmitEmailTaskParams, SubmitEmailTaskResponse,
    SubmitSyncTaskParams, SubmitSyncTaskResponse, SyncTaskRequest, TaskAttemptError, TaskResponse,
    TaskState as ApiTaskState, TaskStatusResponse, TaskType, TasksApi, rt::Problem,
};
use serde_json::json;

use super::{App, internal, success};
use crate::{
    auth::Principal,
    queue::{
        NewTask, Priority, TaskRecord, TaskState,
        eta::{self, Wait},
    },
    tasks::{EMAIL, SYNC, email::EmailPayload, sync::SyncPayload},
};

pub(super) fn api_priority(p: Priority) -> ApiPriority {
    match p {
        Priority::Critical => ApiPriority::Critical,
        Priority::Default => ApiPriority::Default,
        Priority::Low => ApiPriority::Low,
    }
}

/// The unique key of a submission: the client's `Idempotency-Key`, scoped
/// to the token that sent it (one client cannot see or block another's
/// tasks) and to the task kind.
fn unique_key(kind: &str, who: &Principal, key: &str) -> String {
    format!("{kind}:{}:{key}", who.token_id)
}

pub(super) fn priority(p: ApiPriority) -> Priority {
    match p {
        ApiPriority::Critical => Priority::Critical,
        ApiPriority::Default => Priority::Default,
        ApiPriority::Low => Priority::Low,
    }
}

/// The contract's `estimated_time` wording ("within 3 seconds").
fn describe(w: Wait) -> String {
    match w {
        Wait::Now => "immediately".to_owned(),
        Wait::Behind { ahead } => format!("after {ahead} queued tasks (no recent throughput measured)"),
        Wait::About(d) if d < Duration::from_secs(60) => format!("within {} seconds", d.as_secs()),
        Wait::About(d) => format!("within {} minutes", d.as_secs().div_ceil(60)),
    }
}

impl App {
    /// Enqueues `task`; with an `Idempotency-Key`, a pending or running task
    /// of the same token and key is answered instead when it is the same
    /// request (same payload and priority, hence the same queue), and a
    /// different request under that key is refused.
    async fn submit(
        &self,
        op: &str,
        who: &Principal,
        mut task: NewTask,
        idempotency_key: Option<String>,
    ) -> Result<TaskResponse, Problem> {
        if let Some(key) = idempotency_key {
            task.unique_key = Some(unique_key(&task.kind, who, &key));
        }
        let priority = task.priority;
        let enqueued = self.queue.enqueue(task).await.map_err(|e| internal(op, &e))?;
        // The queue compares the requests atomically with finding the key held.
        if enqueued.duplicate_differs {
            return Err(ErrorCode::IdempotencyKeyReused.problem());
        }
        // The enqueue call itself read the backlog: no second round trip.
        let backlog = &enqueued.backlog;
        let rate = self.throughput.observe(backlog.total_completed);
        let estimated_time = Some(describe(eta::wait(backlog, priority, rate)));
        Ok(TaskResponse {
            task_id: enqueued.duplicate_of.unwrap_or(enqueued.id),
            queue: api_priority(priority),
            estimated_time,
        })
    }
}

/// A task of `kind` carrying the typed payload the worker's handler reads.
fn task_of(kind: &'static str, payload: &impl serde::Serialize) -> Result<NewTask, Problem> {
    serde_json::to_value(payload).map(|v| NewTask::new(kind, v)).map_err(|e| internal("submitting a task", &e))
}

impl TasksApi for App {
    async fn submit_email_task(
        &self,
        who: Principal,
        params: SubmitEmailTaskParams,
        body: EmailTaskRequest,
    ) -> Result<SubmitEmailTaskResponse, Problem> {
        let payload =
            EmailPayload { to: body.to, cc: body.cc.unwrap_or_default(), subject: body.subject, body: body.body };
        let task = task_of(EMAIL, &payload)?.priority(priority(body.priority));
        let t = self.submit("submitEmailTask", &who, task, params.idempotency_key).await?;
        Ok(SubmitEmailTaskResponse::Ok(success!(SubmitEmailTask200Response, t)))
    }

    async fn submit_email_task_batch(
        &self,
        _who: Principal,
        body: EmailTaskBatchRequest,
    ) -> Result<SubmitEmailTaskBatchResponse, Problem> {
        let mut tasks = Vec::with_capacity(body.tasks.len());
        let mut priorities = Vec::with_capacity(body.tasks.len());
        for t in body.tasks {
            let payload = EmailPayload { to: t.to, cc: t.cc.unwrap_or_default(), subject: t.subject, body: t.body };
            priorities.push(priority(t.priority));
            tasks.push(task_of(EMAIL, &payload)?.priority(priority(t.priority)));
        }
        // One script call for all (the contract caps a batch at 100): stored together or not at all.
        let enqueued = self.queue.enqueue_many(tasks).await.map_err(|e| internal("submitEmailTaskBatch", &e))?;
        // One estimate for the batch, from the backlog the enqueue call read
        // (the same for every task of it): no second round trip.
        let estimate = enqueued.last().map(|e| (self.throughput.observe(e.backlog.total_completed), e.backlog));
        let tasks = enqueued
            .into_iter()
            .zip(priorities)
            .map(|(e, p)| TaskResponse {
                task_id: e.id,
                queue: api_priority(p),
                estimated_time: estimate.as_ref().map(|(rate, backlog)| describe(eta::wait(backlog, p, *rate))),
            })
            .collect();
        Ok(SubmitEmailTaskBatchResponse::Ok(success!(
            SubmitEmailTaskBatch200Response,
            EmailTaskBatchResponse { tasks }
        )))
    }

    async fn submit_sync_task(
        &self,
        who: Principal,
        params: SubmitSyncTaskParams,
        body: SyncTaskRequest,
    ) -> Result<SubmitSyncTaskResponse, Problem> {
        let payload = SyncPayload {
            sync_type: body.sync_type.as_str().to_owned(),
            start_date: body.start_date,
            end_date: body.end_date,
            batch_size: body.batch_size,
        };
        let problems = payload.problems();
        if !problems.is_empty() {
            let errors: Vec<_> = problems.iter().map(|(f, m)| json!({ "field": f, "message": m })).collect();
            let data = json!({ "errors": errors });
            return Err(ErrorCode::ValidationFailed.problem().with_data(data));
        }
        let task = task_of(SYNC, &payload)?.priority(priority(body.priority));
        let t = self.submit("submitSyncTask", &who, task, params.idempotency_key).await?;
        Ok(SubmitSyncTaskResponse::Ok(success!(SubmitSyncTask200Response, t)))
    }

    async fn get_task(&self, _who: Principal, params: GetTaskParams) -> Result<GetTaskResponse, Problem> {
        let record = self.queue.get(params.task_id).await.map_err(|e| internal("getTask", &e))?;
        // A kind the contract does not know is never written by this service.
        let t = record.and_then(task_status).ok_or_else(|| ErrorCode::TaskNotFound.problem())?;
        Ok(GetTaskResponse::Ok(success!(GetTask200Response, t)))
    }
}

pub(super) fn api_state(s: TaskState) -> ApiTaskState {
    match s {
        TaskState::Pending => ApiTaskState::Pending,
        TaskState::Scheduled => ApiTaskState::Scheduled,
        TaskState::Active => ApiTaskState::Active,
        TaskState::Retry => ApiTaskState::Retry,
        TaskState::Completed => ApiTaskState::Completed,
        TaskState::Dead => ApiTaskState::Dead,
    }
}

/// The API view of a queue record; `None` for a kind the contract does not
/// know (never written by this service).
pub(super) fn task_status(r: TaskRecord) -> Option<TaskStatusResponse> {
    let kind = match r.kind.as_str() {
        EMAIL => TaskType::Email,
        SYNC => TaskType::Sync,
        _ => return None,
    };
    let state = api_state(r.state);
    Some(TaskStatusResponse {
        task_id: r.id,
        type_: kind,
        state,
        queue: api_priority(r.priority),
        attempts: i64::from(r.attempts),
        max_retries: i64::from(r.max_retries),
        last_error: Some(r.last_error),
        errors: r
            .history
            .into_iter()
            .map(|e| TaskAttemptError { attempt: i64::from(e.attempt), error: e.error, at: e.at })
            .collect(),
        result: Some(r.result),
        created_at: r.created_at,
        updated_at: r.updated_at,
        started_at: Some(r.started_at),
        completed_at: Some(r.completed_at),
        run_at: Some(r.run_at),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::Stats;

    #[test]
    fn waits_read_like_the_contract_example() {
        let stats = |pending: u64, active: u64| Stats {
            pending: [(Priority::Default, pending)].into_iter().collect(),
            active,
            ..Stats::default()
        };
        let d = |s: Stats, rate| describe(eta::wait(&s.backlog(), Priority::Default, rate));
        assert_eq!(d(stats(1, 0), 0.0), "immediately");
        assert_eq!(d(stats(31, 0), 10.0), "within 3 seconds");
        assert_eq!(d(stats(3000, 1), 10.0), "within 5 minutes");
        assert!(d(stats(5, 1), 0.0).contains("5 queued tasks"));
        // Only the same and higher priorities are ahead.
        assert_eq!(describe(eta::wait(&stats(100, 0).backlog(), Priority::Critical, 10.0)), "immediately");
    }
}
