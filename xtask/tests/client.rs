//! The generated client (`generated/client`) against a real HTTP server
//! implemented here over the generated server traits: every documented
//! status of every operation must decode into the right Rust type — the 200
//! of `listUsers` and the 503 of `healthCheck` included (progenitor alone
//! gets both wrong on this contract) — and the token must be sent on
//! secured operations only (`Client::with_token` stays the alias of
//! the contract's one scheme, `TokenAuth`).

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc, Mutex,
    atomic::{AtomicBool, Ordering},
};

use api_server::{rt::Problem, *};
use poem::{
    Endpoint,
    listener::{Acceptor, Listener},
};
use spec_api_client::{Client, Credentials, Error, types};

/// A server whose answers are chosen by magic inputs: id 404/409/500,
/// username or subject "conflict"/"fail", health toggled by a flag.
#[derive(Default)]
struct Scripted {
    health_down: AtomicBool,
    /// `token` header values seen on every request (None = absent).
    seen_tokens: Mutex<Vec<(String, Option<String>)>>,
}

fn err(code: ErrorCode) -> ErrorResponse {
    server_envelope(&code.problem())
}

fn user(id: i64) -> UserResponse {
    let now = chrono::Utc::now();
    UserResponse {
        id,
        username: "alice".into(),
        email: "a@example.com".into(),
        status: Status::Suspended,
        created_at: now,
        updated_at: now,
        last_login_at: Some(None),
    }
}

/// The contract's envelope for any problem (what the service's own policy
/// writes).
fn server_envelope(p: &Problem) -> ErrorResponse {
    let data = match &p.data {
        Some(serde_json::Value::Object(m)) => Some(Some(m.clone())),
        _ => None,
    };
    ErrorResponse { code: p.code.unwrap_or(5000), msg: p.message().to_owned(), data, timestamp: chrono::Utc::now() }
}

impl ErrorPolicy for Scripted {
    fn error_response(problem: &Problem) -> ErrorResponse {
        server_envelope(problem)
    }

    fn health_check503_response(problem: &Problem) -> HealthCheck503Response {
        HealthCheck503Response {
            status: Some(HealthDegraded::Unavailable),
            postgres: None,
            redis: None,
            replicas: None,
            error: Some(problem.message().to_owned()),
        }
    }
}

impl Auth for Scripted {
    type Principal = ();
    async fn authenticate_token_auth(&self, token: &str, _ctx: &rt::AuthContext) -> Result<(), Problem> {
        if token == "good" { Ok(()) } else { Err(ErrorCode::InvalidToken.problem()) }
    }
}

impl HealthApi for Scripted {
    async fn health_check(&self) -> Result<HealthCheckResponse, Problem> {
        if self.health_down.load(Ordering::SeqCst) {
            Ok(HealthCheckResponse::ServiceUnavailable(HealthCheck503Response {
                status: Some(HealthDegraded::Degraded),
                postgres: Some(DependencyState::Down),
                redis: Some(DependencyState::Up),
                replicas: None,
                error: Some("数据库连接失败".into()),
            }))
        } else {
            Ok(HealthCheckResponse::Ok(HealthCheck200Response {
                status: Some(HealthOk::Ok),
                postgres: Some(DependencyState::Up),
                redis: Some(DependencyState::Up),
                replicas: None,
            }))
        }
    }
}

macro_rules! ok {
    ($ty:ident, $data:expr) => {
        $ty { code: 0, msg: "success".into(), data: Some($data), timestamp: chrono::Utc::now() }
    };
}

impl UsersApi for Scripted {
    async fn list_users(&self, _: (), p: ListUsersParams) -> Result<ListUsersResponse, Problem> {
        if p.page == 500 {
            return Ok(ListUsersResponse::InternalServerError(err(ErrorCode::Internal)));
        }
        Ok(ListUsersResponse::Ok(ok!(
            ListUsers200Response,
            ListUsersResponseBody {
                users: vec![user(1)],
                page: p.page,
                page_size: p.page_size,
                total: 41,
                total_pages: 3,
                next_page_token: p.page_token.map(|t| format!("{t}+1"))
            }
        )))
    }
    async fn batch_get_users(&self, _: (), b: BatchGetUsersRequest) -> Result<BatchGetUsersResponse, Problem> {
        // Even ids exist, odd ones are missing.
        let results = b
            .ids
            .iter()
            .map(|&id| match id % 2 {
                0 => BatchGetUserResult { id, user: Some(user(id)), error: None },
                _ => BatchGetUserResult {
                    id,
                    user: None,
                    error: Some(BatchItemError { code: 1003, msg: "用户不存在".into(), data: None }),
                },
            })
            .collect();
        Ok(BatchGetUsersResponse::Ok(ok!(BatchGetUsers200Response, BatchGetUsersResponseBody { results })))
    }
    async fn batch_create_users(
        &self,
        _: (),
        _b: BatchCreateUsersRequest,
    ) -> Result<BatchCreateUsersResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
    async fn create_user(&self, _: (), b: CreateUserRequest) -> Result<CreateUserResponse, Problem> {
        match b.username.as_str() {
            "conflict" => Err(ErrorCode::Conflict.problem().with_detail("用户名已存在")),
            "fail" => Err(ErrorCode::Internal.problem()),
            _ => Ok(CreateUserResponse::Ok(ok!(CreateUser200Response, user(7)))),
        }
    }
    async fn get_user_by_id(&self, _: (), p: GetUserByIdParams) -> Result<GetUserByIdResponse, Problem> {
        match p.id {
            404 => Err(ErrorCode::UserNotFound.problem()),
            500 => Err(ErrorCode::Internal.problem()),
            id => {
                Ok(GetUserByIdResponse::Ok { body: ok!(GetUserById200Response, user(id)), etag: format!("\"v{id}\"") })
            }
        }
    }
    async fn update_user(
        &self,
        _: (),
        p: UpdateUserParams,
        _b: UpdateUserRequest,
    ) -> Result<UpdateUserResponse, Problem> {
        match p.id {
            404 => Err(ErrorCode::UserNotFound.problem()),
            409 => Err(ErrorCode::Conflict.problem().with_detail("邮箱已存在")),
            500 => Err(ErrorCode::Internal.problem()),
            // User `id` is at version `id`.
            id if p.if_match.is_some_and(|m| !m.matches(&format!("\"v{id}\""))) => {
                Err(ErrorCode::PreconditionFailed.problem())
            }
            id => Ok(UpdateUserResponse::Ok { body: ok!(UpdateUser200Response, user(id)), etag: format!("\"v{id}\"") }),
        }
    }

    /// Echoes the status the merge patch set, to show the client's body
    /// arrived as `application/merge-patch+json` (anything else is a 400).
    async fn patch_user(&self, _: (), p: PatchUserParams, b: UserMergePatch) -> Result<PatchUserResponse, Problem> {
        let mut u = user(p.id);
        if let Some(s) = b.status {
            u.status = s;
        }
        Ok(PatchUserResponse::Ok { body: ok!(PatchUser200Response, u), etag: format!("\"v{}\"", p.id) })
    }
    async fn delete_user(&self, _: (), p: DeleteUserParams) -> Result<DeleteUserResponse, Problem> {
        match p.id {
            404 => Err(ErrorCode::UserNotFound.problem()),
            500 => Err(ErrorCode::Internal.problem()),
            _ => Ok(DeleteUserResponse::Ok(SuccessResponse {
                code: 0,
                msg: "success".into(),
                data: None,
                timestamp: chrono::Utc::now(),
            })),
        }
    }
}

impl TasksApi for Scripted {
    async fn submit_email_task_batch(
        &self,
        _: (),
        _b: EmailTaskBatchRequest,
    ) -> Result<SubmitEmailTaskBatchResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
    async fn submit_email_task(
        &self,
        _: (),
        p: SubmitEmailTaskParams,
        b: EmailTaskRequest,
    ) -> Result<SubmitEmailTaskResponse, Problem> {
        if b.subject == "fail" {
            return Ok(SubmitEmailTaskResponse::InternalServerError(err(ErrorCode::Internal)));
        }
        // A repeated Idempotency-Key gets the same id back.
        let task_id = match p.idempotency_key.as_deref() {
            Some(k) => {
                uuid::Uuid::from_u128(k.bytes().fold(7u128, |h, b| h.wrapping_mul(31).wrapping_add(u128::from(b))))
            }
            None => uuid::Uuid::new_v4(),
        };
        let t = TaskResponse { task_id, queue: b.priority, estimated_time: Some("immediately".into()) };
        Ok(SubmitEmailTaskResponse::Ok(ok!(SubmitEmailTask200Response, t)))
    }
    async fn submit_sync_task(
        &self,
        _: (),
        _p: SubmitSyncTaskParams,
        b: SyncTaskRequest,
    ) -> Result<SubmitSyncTaskResponse, Problem> {
        if b.batch_size == 999 {
            return Ok(SubmitSyncTaskResponse::InternalServerError(err(ErrorCode::Internal)));
        }
        let t = TaskResponse { task_id: uuid::Uuid::new_v4(), queue: b.priority, estimated_time: None };
        Ok(SubmitSyncTaskResponse::Ok(ok!(SubmitSyncTask200Response, t)))
    }
    async fn get_task(&self, _: (), p: GetTaskParams) -> Result<GetTaskResponse, Problem> {
        if p.task_id.is_nil() {
            return Ok(GetTaskResponse::NotFound(err(ErrorCode::TaskNotFound)));
        }
        if p.task_id.as_u128() == 500 {
            return Ok(GetTaskResponse::InternalServerError(err(ErrorCode::Internal)));
        }
        let now = chrono::Utc::now();
        Ok(GetTaskResponse::Ok(ok!(
            GetTask200Response,
            TaskStatusResponse {
                task_id: p.task_id,
                type_: TaskType::Email,
                state: TaskState::Dead,
                queue: Priority::Low,
                attempts: 6,
                max_retries: 5,
                last_error: Some(Some("550 mailbox unavailable".into())),
                errors: vec![TaskAttemptError { attempt: 1, error: "timeout".into(), at: now }],
                result: Some(None),
                created_at: now,
                updated_at: now,
                started_at: Some(Some(now)),
                completed_at: Some(Some(now)),
                run_at: Some(None),
            }
        )))
    }
}

/// The queue administration is not what these tests are about: every admin operation answers
/// a documented problem, which keeps the generated `Api` bound satisfied honestly.
impl AdminApi for Scripted {
    async fn get_queue_stats(&self, _: ()) -> Result<GetQueueStatsResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
    async fn list_admin_tasks(&self, _: (), _p: ListAdminTasksParams) -> Result<ListAdminTasksResponse, Problem> {
        Err(ErrorCode::InvalidPageToken.problem())
    }
    async fn get_admin_task(&self, _: (), _p: GetAdminTaskParams) -> Result<GetAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskNotFound.problem())
    }
    async fn delete_admin_task(&self, _: (), _p: DeleteAdminTaskParams) -> Result<DeleteAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskNotFound.problem())
    }
    async fn retry_admin_task(&self, _: (), _p: RetryAdminTaskParams) -> Result<RetryAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskStateConflict.problem())
    }
    async fn cancel_admin_task(&self, _: (), _p: CancelAdminTaskParams) -> Result<CancelAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskStateConflict.problem())
    }
    async fn pause_queue(&self, _: (), _p: PauseQueueParams) -> Result<PauseQueueResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
    async fn resume_queue(&self, _: (), _p: ResumeQueueParams) -> Result<ResumeQueueResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
}

/// Serves `Scripted` on a free loopback port; returns its base URL.
async fn start() -> (String, Arc<Scripted>) {
    let app = Arc::new(Scripted::default());
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let seen = app.clone();
    let ep = poem::EndpointExt::around(api_server::app(app.clone()), move |next, req: poem::Request| {
        let seen = seen.clone();
        async move {
            let token = req.header("token").map(str::to_owned);
            seen.seen_tokens.lock().unwrap().push((req.uri().path().to_owned(), token));
            next.call(req).await
        }
    });
    tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(ep).await });
    (format!("http://{addr}{}", api_server::BASE_PATH), app)
}

/// The envelope of an error response, or a panic naming what came instead.
fn envelope<T: std::fmt::Debug>(r: Result<T, Error<types::ErrorResponse>>, status: u16) -> types::ErrorResponse {
    match r {
        Err(Error::ErrorResponse(v)) => {
            assert_eq!(v.status().as_u16(), status);
            v.into_inner()
        }
        other => panic!("expected a {status} envelope, got {other:?}"),
    }
}

#[tokio::test]
async fn every_documented_status_decodes() {
    let (base, app) = start().await;
    let c = Client::new(&base, Credentials::default()).with_token("good");
    let anon = Client::new(&base, Credentials::default());
    let bad = Client::new(&base, Credentials::default().token_auth("bad"));

    // healthCheck: 200 and 503, two distinct types.
    let h = c.health_check().send().await.unwrap();
    assert_eq!(h.status.map(|s| s.to_string()), Some("ok".into()));
    app.health_down.store(true, Ordering::SeqCst);
    match c.health_check().send().await {
        Err(Error::ErrorResponse(v)) => {
            assert_eq!(v.status().as_u16(), 503);
            assert_eq!(v.status.map(|s| s.to_string()), Some("degraded".into()));
            assert_eq!(v.postgres.map(|s| s.to_string()), Some("down".into()));
        }
        other => panic!("503 should decode as HealthCheck503Body: {other:?}"),
    }

    // listUsers: 200 (the envelope, not ListUsersResponse), 400, 401, 500.
    let l = c.list_users().page(2u64).page_size(20u64).status(types::ListUsersStatus::Active).send().await.unwrap();
    let data = l.into_inner().data.unwrap();
    assert_eq!((data.page, data.total, data.users.len()), (2, 41, 1));
    assert_eq!(envelope(anon.list_users().send().await, 401).code, 1002);
    assert_eq!(envelope(bad.list_users().send().await, 401).code, 1005);
    assert_eq!(envelope(c.list_users().page(500u64).send().await, 500).code, 5000);
    assert_eq!(envelope(c.list_users().page_size(1000u64).send().await, 400).code, 1001);

    // createUser: 200, 400, 401, 409, 500.
    let new = |name: &str, email: &str| types::CreateUserRequest {
        username: name.parse().unwrap(),
        email: email.parse().unwrap(),
        password: "password123".parse().unwrap(),
    };
    let u = c.create_user().body(new("alice", "a@example.com")).send().await.unwrap().into_inner();
    assert_eq!(u.data.unwrap().status, types::UserResponseStatus::Suspended);
    let e = envelope(c.create_user().body(new("alice", "not-an-email")).send().await, 400);
    assert_eq!(e.code, 1001);
    assert!(e.data.unwrap()["errors"][0]["field"] == "email");
    assert_eq!(envelope(anon.create_user().body(new("alice", "a@example.com")).send().await, 401).code, 1002);
    let e = envelope(c.create_user().body(new("conflict", "a@example.com")).send().await, 409);
    assert_eq!((e.code, e.msg.as_str()), (1004, "用户名已存在"));
    assert_eq!(envelope(c.create_user().body(new("fail", "a@example.com")).send().await, 500).code, 5000);

    // getUserById: 200, 400, 401, 404, 500.
    assert_eq!(c.get_user_by_id().id(5u64).send().await.unwrap().into_inner().data.unwrap().id, 5);
    assert_eq!(envelope(anon.get_user_by_id().id(5u64).send().await, 401).code, 1002);
    assert_eq!(envelope(c.get_user_by_id().id(404u64).send().await, 404).code, 1003);
    assert_eq!(envelope(c.get_user_by_id().id(500u64).send().await, 500).code, 5000);
    assert_eq!(envelope(c.get_user_by_id().id(u64::MAX).send().await, 400).code, 1001);

    let r = c.get_user_by_id().id(5u64).send().await.unwrap();
    assert_eq!(r.headers().get("etag").and_then(|v| v.to_str().ok()), Some("\"v5\""));

    // updateUser: 200, 400, 401, 404, 409, 412, 500.
    let upd = || types::UpdateUserRequest { email: None, status: Some(types::UpdateUserRequestStatus::Inactive) };
    assert!(c.update_user().id(3u64).body(upd()).send().await.is_ok());
    let r = c.update_user().id(3u64).if_match("\"v1\", \"v3\"").body(upd()).send().await.unwrap();
    assert_eq!(r.headers().get("etag").and_then(|v| v.to_str().ok()), Some("\"v3\""));
    assert_eq!(envelope(c.update_user().id(3u64).if_match("\"v2\"").body(upd()).send().await, 412).code, 1017);
    let bad_email = types::UpdateUserRequest { email: Some("nope".parse().unwrap()), status: None };
    assert_eq!(envelope(c.update_user().id(3u64).body(bad_email).send().await, 400).code, 1001);
    assert_eq!(envelope(anon.update_user().id(3u64).body(upd()).send().await, 401).code, 1002);
    assert_eq!(envelope(c.update_user().id(404u64).body(upd()).send().await, 404).code, 1003);
    assert_eq!(envelope(c.update_user().id(409u64).body(upd()).send().await, 409).code, 1004);
    assert_eq!(envelope(c.update_user().id(500u64).body(upd()).send().await, 500).code, 5000);

    // deleteUser: 200, 400, 401, 404, 500.
    let d = c.delete_user().id(3u64).send().await.unwrap().into_inner();
    assert_eq!(*d.code, 0);
    assert!(d.data.is_empty(), "no data on delete");
    assert_eq!(envelope(c.delete_user().id(u64::MAX).send().await, 400).code, 1001);
    assert_eq!(envelope(anon.delete_user().id(3u64).send().await, 401).code, 1002);
    assert_eq!(envelope(c.delete_user().id(404u64).send().await, 404).code, 1003);
    assert_eq!(envelope(c.delete_user().id(500u64).send().await, 500).code, 5000);

    // submitEmailTask: 200, 400, 401, 500.
    let email = |subject: &str, to: &str| types::EmailTaskRequest {
        to: to.into(),
        subject: subject.parse().unwrap(),
        body: "b".parse().expect("a short body is valid"),
        cc: vec!["cc@example.com".into()],
        priority: types::EmailTaskRequestPriority::Critical,
    };
    let t = c.submit_email_task().body(email("hi", "to@example.com")).send().await.unwrap().into_inner();
    assert_eq!(t.data.unwrap().queue, types::TaskResponseQueue::Critical);
    assert_eq!(envelope(c.submit_email_task().body(email("hi", "nope")).send().await, 400).code, 1001);
    assert_eq!(envelope(anon.submit_email_task().body(email("hi", "to@example.com")).send().await, 401).code, 1002);
    assert_eq!(envelope(c.submit_email_task().body(email("fail", "to@example.com")).send().await, 500).code, 5000);

    // submitSyncTask: 200, 400, 401, 500.
    let sync = |start: &str, batch: u64| types::SyncTaskRequest {
        sync_type: types::SyncTaskRequestSyncType::FlowUsage,
        start_date: start.parse().unwrap(),
        end_date: "2025-11-12".parse().unwrap(),
        batch_size: std::num::NonZeroU64::new(batch).unwrap(),
        priority: types::SyncTaskRequestPriority::Low,
    };
    let t = c.submit_sync_task().body(sync("2025-11-01", 10)).send().await.unwrap().into_inner();
    assert_eq!(t.data.unwrap().queue, types::TaskResponseQueue::Low);
    assert_eq!(envelope(c.submit_sync_task().body(sync("2025-11-01", 5000)).send().await, 400).code, 1001);
    assert_eq!(envelope(anon.submit_sync_task().body(sync("2025-11-01", 10)).send().await, 401).code, 1002);
    assert_eq!(envelope(c.submit_sync_task().body(sync("2025-11-01", 999)).send().await, 500).code, 5000);

    // getTask: 200, 400, 401, 404, 500.
    let id = uuid::Uuid::new_v4();
    let t = c.get_task().task_id(id).send().await.unwrap().into_inner().data.unwrap();
    assert_eq!((t.task_id, t.state, t.attempts, t.errors.len()), (id, types::TaskState::Dead, 6, 1));
    assert_eq!(t.last_error.as_deref(), Some("550 mailbox unavailable"));
    assert_eq!(envelope(anon.get_task().task_id(id).send().await, 401).code, 1002);
    assert_eq!(envelope(c.get_task().task_id(uuid::Uuid::nil()).send().await, 404).code, 1013);
    assert_eq!(envelope(c.get_task().task_id(uuid::Uuid::from_u128(500)).send().await, 500).code, 5000);
    let raw =
        reqwest::Client::new().get(format!("{base}/tasks/not-a-uuid")).header("token", "good").send().await.unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    assert_eq!(raw.json::<serde_json::Value>().await.unwrap()["data"]["errors"][0]["field"], "task_id");

    // Idempotency-Key: the same key gives the same task id.
    let first = c.submit_email_task().idempotency_key("k-1").body(email("hi", "to@example.com")).send().await.unwrap();
    let again = c.submit_email_task().idempotency_key("k-1").body(email("hi", "to@example.com")).send().await.unwrap();
    assert_eq!(first.into_inner().data.unwrap().task_id, again.into_inner().data.unwrap().task_id);
}

#[tokio::test]
async fn token_goes_to_secured_operations_only() {
    let (base, app) = start().await;
    let c = Client::new(&base, Credentials::default()).with_token("good");
    c.health_check().send().await.unwrap();
    c.get_user_by_id().id(9u64).send().await.unwrap();
    let seen = app.seen_tokens.lock().unwrap().clone();
    assert_eq!(seen[0], ("/api/v1/health".to_owned(), None), "no token on /health");
    assert_eq!(seen[1], ("/api/v1/users/9".to_owned(), Some("good".to_owned())));
    assert!(!format!("{:?}", Credentials::default().token_auth("secret-value")).contains("secret-value"));
}

/// What progenitor cannot send stops client generation with the pointer
/// and the way out, instead of progenitor's pointer-less error or panic; a
/// body offered as JSON and as a form is sent as JSON.
#[test]
fn client_generation_names_what_the_client_cannot_send() {
    let root = xtask::codegen::workspace_root();
    let doc = xtask::codegen::load_spec(&root.join("xtask/tests/fixtures/rich/openapi.yaml")).unwrap();
    let deps = xtask::codegen::Deps::Workspace;
    let e = xtask::codegen::render_client(&doc, std::path::Path::new("r"), "c", &deps).unwrap_err();
    let e = format!("{e:#}");
    assert!(e.contains("#/paths/~1pets/get/parameters/2/style") && e.contains("--server"), "{e}");
    // Without the query styles, the cookie and the multipart upload it generates, the
    // JSON-or-form body as JSON.
    let mut doc = doc;
    if let Some(openapiv3::ReferenceOr::Item(pets)) = doc.paths.paths.get_mut("/pets")
        && let Some(get) = &mut pets.get
    {
        get.parameters.retain(|p| {
            !matches!(p, openapiv3::ReferenceOr::Item(openapiv3::Parameter::Query { style, .. }) if *style != openapiv3::QueryStyle::Form)
                && !matches!(p, openapiv3::ReferenceOr::Item(openapiv3::Parameter::Cookie { .. }))
        });
    }
    doc.paths.paths.shift_remove("/documents");
    if let Some(openapiv3::ReferenceOr::Item(pet)) = doc.paths.paths.get_mut("/pets/{name}")
        && let Some(delete) = &mut pet.delete
    {
        // Named like the path parameter: progenitor keys parameters by name.
        delete.parameters.clear();
    }
    // progenitor types parameters by `schema` only: `content` is refused,
    // never sent in some other encoding.
    let e = format!("{:#}", xtask::codegen::render_client(&doc, std::path::Path::new("r"), "c", &deps).unwrap_err());
    assert!(e.contains("#/paths/~1pets~1search/get/parameters/0/content") && e.contains("--server"), "{e}");
    // Its response header with JSON `content` is no obstacle: the client
    // does not type response headers.
    if let Some(openapiv3::ReferenceOr::Item(search)) = doc.paths.paths.get_mut("/pets/search")
        && let Some(get) = &mut search.get
    {
        get.parameters.clear();
    }
    // progenitor sends path values in `simple` style only: a label or
    // matrix parameter is refused, never sent in the wrong encoding.
    let e = format!("{:#}", xtask::codegen::render_client(&doc, std::path::Path::new("r"), "c", &deps).unwrap_err());
    assert!(e.contains("#/paths/~1tickets~1{id}/get/parameters/0/style") && e.contains("--server"), "{e}");
    doc.paths.paths.shift_remove("/tickets/{id}");
    let e = format!("{:#}", xtask::codegen::render_client(&doc, std::path::Path::new("r"), "c", &deps).unwrap_err());
    assert!(e.contains("#/paths/~1tickets~1by-ids~1{ids}/get/parameters/0/style") && e.contains("Matrix"), "{e}");
    doc.paths.paths.retain(|path, _| !path.starts_with("/tickets/"));
    let files = xtask::codegen::render_client(&doc, std::path::Path::new("r"), "c", &deps).unwrap();
    let lib = &files.iter().find(|(p, _)| p.ends_with("lib.rs")).unwrap().1;
    assert!(lib.contains("fn send_feedback") && lib.contains("fn search_pets"), "{lib}");
    // progenitor sends JSON as `application/json`; the hook names the
    // declared `+json` type of the merge-patch operation instead.
    let auth = &files.iter().find(|(p, _)| p.ends_with("auth.rs")).unwrap().1;
    assert!(auth.contains("content_type: ::std::option::Option::Some(\"application/merge-patch+json\")"), "{auth}");
}

/// progenitor sends JSON bodies as `application/json`; the generated hook
/// names the merge patch as the spec declares it, so the server takes it.
#[tokio::test]
async fn merge_patch_through_the_client() {
    let (base, _app) = start().await;
    let c = Client::new(&base, Credentials::default()).with_token("good");
    let body = types::UserMergePatch::builder().status(Some(types::UserMergePatchStatus::Inactive));
    let r = c.patch_user().id(7u64).body(body).send().await.unwrap();
    let data = r.into_inner().data.unwrap();
    assert_eq!((data.id, data.status), (7, types::UserResponseStatus::Inactive));
}

#[tokio::test]
async fn batch_get_and_page_tokens_through_the_client() {
    let (base, _app) = start().await;
    let c = Client::new(&base, Credentials::default()).with_token("good");
    let ids: Vec<_> = [2u64, 3, 2].into_iter().filter_map(std::num::NonZeroU64::new).collect();
    let r = c
        .batch_get_users()
        .body(spec_api_client::types::BatchGetUsersRequest::builder().ids(ids))
        .send()
        .await
        .unwrap();
    let results = r.into_inner().data.unwrap().results;
    let got: Vec<_> = results.iter().map(|r| (r.id, r.user.is_some(), r.error.as_ref().map(|e| e.code))).collect();
    assert_eq!(got, vec![(2, true, None), (3, false, Some(1003)), (2, true, None)]);

    let page = c.list_users().page_token("abc").send().await.unwrap().into_inner().data.unwrap();
    assert_eq!(page.next_page_token.as_deref(), Some("abc+1"));
}
