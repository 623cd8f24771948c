//! The scenario's queue administration phase (tag Admin): every admin operation against tasks
//! this run submitted, with its 200, 404 and 409 answers. A priority is paused only for the
//! moment a task of this run must stay pending, and resumed whatever happened meanwhile.

use serde_json::{Value, json};

use super::{Request, Run, Want};

/// Why the successful retry and cancel are left to `tests/it/admin.rs`.
const NEEDS_TASK_STATES: &str = "needs a dead task, or one a worker is running for the length of a request; \
     which tasks die or stall is the deployment's, not the contract's (tests/it/admin.rs drives both)";

impl Run<'_> {
    /// `METHOD /admin…` with this run's token, through the recorder.
    fn admin_req(&self, method: &str, path: &str, query: &[(&str, &str)], op: &str) -> reqwest::RequestBuilder {
        let req = Request {
            method: method.into(),
            path: path.into(),
            query: query.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
            headers: vec![],
            body: None,
        };
        self.request(&req, Some(&self.token), self.secured(op).as_deref())
    }

    pub(super) async fn admin(&mut self) {
        if self.contract.operation("getQueueStats").is_none() {
            return;
        }
        let want =
            Want::new("getQueueStats", 200).check(|b| match b.pointer("/data/queues").and_then(Value::as_array) {
                Some(q) if q.len() == 3 => Ok(()),
                other => Err(format!("three priorities expected, got {other:?}")),
            });
        self.raw("queue stats", want, self.admin_req("GET", "/admin/queue/stats", &[], "getQueueStats")).await;

        // Pages: one, then the next through its cursor when there is one; a forged cursor is a 400.
        let want = Want::new("listAdminTasks", 200);
        let b = self.admin_req("GET", "/admin/tasks", &[("state", "completed"), ("limit", "1")], "listAdminTasks");
        let page = self.raw("a page of completed tasks", want, b).await;
        if let Some(cursor) = page.as_ref().and_then(|p| p.pointer("/data/next_cursor")).and_then(Value::as_str) {
            let cursor = cursor.to_owned();
            let q = [("state", "completed"), ("limit", "1"), ("cursor", cursor.as_str())];
            let b = self.admin_req("GET", "/admin/tasks", &q, "listAdminTasks");
            self.raw("the next page through next_cursor", Want::new("listAdminTasks", 200), b).await;
        }
        // Every state once, each with one of the priority filters.
        let states = ["pending", "scheduled", "active", "retry", "completed", "dead"];
        for (state, priority) in states.into_iter().zip(["critical", "default", "low"].into_iter().cycle()) {
            let q = [("state", state), ("priority", priority)];
            let b = self.admin_req("GET", "/admin/tasks", &q, "listAdminTasks");
            self.raw(&format!("{state} tasks of {priority}"), Want::new("listAdminTasks", 200), b).await;
        }
        let b = self.admin_req("GET", "/admin/tasks", &[("state", "dead"), ("cursor", "forged")], "listAdminTasks");
        self.raw("a forged cursor", Want::new("listAdminTasks", 400).code("InvalidPageToken"), b).await;

        // A pending task of this run: low paused, one email submitted, read (its body
        // redacted), refused by retry and cancel, deleted; then low resumed.
        let want = Want::new("pauseQueue", 200).field("/data/paused", json!(true));
        self.raw("pauses low", want, self.admin_req("POST", "/admin/queues/low/pause", &[], "pauseQueue")).await;
        let r = self.api.submit_email_task().body(self.email_task()).send().await;
        let submitted =
            self.typed("submits an email task to the paused priority", Want::new("submitEmailTask", 200), r);
        if let Some(id) = submitted.and_then(|t| t.data).map(|t| t.task_id) {
            let path = format!("/admin/tasks/{id}");
            let want = Want::new("getAdminTask", 200)
                .field("/data/task/state", json!("pending"))
                .field("/data/payload/body", json!("[redacted]"))
                .field("/data/redacted", json!(["/body"]));
            self.raw(
                "reads the pending task, its body redacted",
                want,
                self.admin_req("GET", &path, &[], "getAdminTask"),
            )
            .await;
            let conflict =
                |op: &str| Want::new(op, 409).code("TaskStateConflict").field("/data/state", json!("pending"));
            let b = self.admin_req("POST", &format!("{path}/retry"), &[], "retryAdminTask");
            self.raw("retry of a pending task", conflict("retryAdminTask"), b).await;
            let b = self.admin_req("POST", &format!("{path}/cancel"), &[], "cancelAdminTask");
            self.raw("cancel of a pending task", conflict("cancelAdminTask"), b).await;
            let b = self.admin_req("DELETE", &path, &[], "deleteAdminTask");
            self.raw("deletes the pending task", Want::new("deleteAdminTask", 200), b).await;
            let b = self.admin_req("DELETE", &path, &[], "deleteAdminTask");
            self.raw("deletes it again", Want::new("deleteAdminTask", 404).code("TaskNotFound"), b).await;
            let b = self.admin_req("GET", &path, &[], "getAdminTask");
            self.raw("the deleted task", Want::new("getAdminTask", 404).code("TaskNotFound"), b).await;
        }
        let want = Want::new("resumeQueue", 200).field("/data/paused", json!(false));
        self.raw("resumes low", want, self.admin_req("POST", "/admin/queues/low/resume", &[], "resumeQueue")).await;

        // The completed email task of `tasks`: nothing applies to it.
        if let Some(id) = self.email_task {
            let path = format!("/admin/tasks/{id}");
            let conflict =
                |op: &str| Want::new(op, 409).code("TaskStateConflict").field("/data/state", json!("completed"));
            let b = self.admin_req("DELETE", &path, &[], "deleteAdminTask");
            self.raw("delete of a completed task", conflict("deleteAdminTask"), b).await;
        }
        let unknown = format!("/admin/tasks/{}", uuid::Uuid::new_v4());
        for (op, suffix) in [("retryAdminTask", "/retry"), ("cancelAdminTask", "/cancel")] {
            let b = self.admin_req("POST", &format!("{unknown}{suffix}"), &[], op);
            self.raw("unknown task id", Want::new(op, 404).code("TaskNotFound"), b).await;
        }
        for op in ["retryAdminTask", "cancelAdminTask"] {
            self.report.unreachable(op, 200, NEEDS_TASK_STATES);
        }
    }

    /// Redis stopped: every admin operation answers 500.
    pub(super) async fn admin_redis_down(&mut self) {
        if self.contract.operation("getQueueStats").is_none() {
            return;
        }
        let task = format!("/admin/tasks/{}", uuid::Uuid::new_v4());
        let calls = [
            ("getQueueStats", "GET", "/admin/queue/stats".to_owned(), vec![]),
            ("listAdminTasks", "GET", "/admin/tasks".to_owned(), vec![("state", "dead")]),
            ("getAdminTask", "GET", task.clone(), vec![]),
            ("deleteAdminTask", "DELETE", task.clone(), vec![]),
            ("retryAdminTask", "POST", format!("{task}/retry"), vec![]),
            ("cancelAdminTask", "POST", format!("{task}/cancel"), vec![]),
            ("pauseQueue", "POST", "/admin/queues/low/pause".to_owned(), vec![]),
            ("resumeQueue", "POST", "/admin/queues/low/resume".to_owned(), vec![]),
        ];
        for (op, method, path, query) in calls {
            let b = self.admin_req(method, &path, &query, op);
            self.raw("Redis stopped", Want::new(op, 500).code("Internal"), b).await;
        }
    }
}
