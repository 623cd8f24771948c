//! In-process tests of the generated server crate (`generated/server`): a
//! small implementation of its traits behind poem's test client, checking
//! what a client of any generated service would notice — validation naming
//! every bad field, every framework error as the JSON envelope, auth before
//! the handler, panics as 500 — and that the emitted OpenAPI document is
//! the contract.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use api_server::{rt::Problem, *};
use futures_util::StreamExt;
use poem::{
    Endpoint,
    http::{HeaderMap, StatusCode},
    test::{TestClient, TestRequestBuilder},
};
use serde_json::{Value, json};

/// Counts handler calls, so tests can prove a request never reached one.
#[derive(Default)]
struct Stub {
    calls: AtomicUsize,
}

/// The contract's envelope for any problem (what the service's own policy
/// writes).
fn envelope(p: &Problem) -> ErrorResponse {
    let data = match &p.data {
        Some(serde_json::Value::Object(m)) => Some(Some(m.clone())),
        _ => None,
    };
    ErrorResponse { code: p.code.unwrap_or(5000), msg: p.message().to_owned(), data, timestamp: chrono::Utc::now() }
}

impl ErrorPolicy for Stub {
    fn error_response(problem: &Problem) -> ErrorResponse {
        envelope(problem)
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

impl Auth for Stub {
    type Principal = String;

    async fn authenticate_token_auth(&self, token: &str, _ctx: &rt::AuthContext) -> Result<String, Problem> {
        match token {
            "good" => Ok("operator".into()),
            "expired" => Err(ErrorCode::ExpiredToken.problem()),
            "store-down" => Err(ErrorCode::AuthUnavailable.problem()),
            _ => Err(ErrorCode::InvalidToken.problem()),
        }
    }
}

fn user(id: i64, username: &str, email: &str) -> UserResponse {
    let now = chrono::Utc::now();
    UserResponse {
        id,
        username: username.into(),
        email: email.into(),
        status: Status::Active,
        created_at: now,
        updated_at: now,
        last_login_at: Some(None),
    }
}

impl HealthApi for Stub {
    async fn health_check(&self) -> Result<HealthCheckResponse, Problem> {
        Ok(HealthCheckResponse::Ok(HealthCheck200Response {
            status: Some(HealthOk::Ok),
            postgres: Some(DependencyState::Up),
            redis: Some(DependencyState::Up),
            replicas: None,
        }))
    }
}

impl UsersApi for Stub {
    async fn list_users(&self, _who: String, params: ListUsersParams) -> Result<ListUsersResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(ListUsersResponse::Ok(ListUsers200Response {
            code: 0,
            msg: format!("status={:?}", params.status),
            data: Some(ListUsersResponseBody {
                users: vec![],
                page: params.page,
                page_size: params.page_size,
                total: 0,
                total_pages: 0,
                next_page_token: None,
            }),
            timestamp: chrono::Utc::now(),
        }))
    }

    async fn create_user(&self, who: String, body: CreateUserRequest) -> Result<CreateUserResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if body.username == "panic_now" {
            panic!("secret internal detail");
        }
        Ok(CreateUserResponse::Ok(CreateUser200Response {
            code: 0,
            msg: who,
            data: Some(user(1, &body.username, &body.email)),
            timestamp: chrono::Utc::now(),
        }))
    }

    async fn batch_get_users(
        &self,
        _who: String,
        body: BatchGetUsersRequest,
    ) -> Result<BatchGetUsersResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let results = body.ids.iter().map(|&id| BatchGetUserResult { id, user: None, error: None }).collect();
        Ok(BatchGetUsersResponse::Ok(BatchGetUsers200Response {
            code: 0,
            msg: "ok".into(),
            data: Some(BatchGetUsersResponseBody { results }),
            timestamp: chrono::Utc::now(),
        }))
    }

    async fn batch_create_users(
        &self,
        _who: String,
        _body: BatchCreateUsersRequest,
    ) -> Result<BatchCreateUsersResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(ErrorCode::Internal.problem())
    }

    async fn get_user_by_id(&self, _who: String, params: GetUserByIdParams) -> Result<GetUserByIdResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(ErrorCode::UserNotFound.problem().with_detail(format!("no user {}", params.id)))
    }

    async fn update_user(
        &self,
        _who: String,
        params: UpdateUserParams,
        body: UpdateUserRequest,
    ) -> Result<UpdateUserResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut u = user(params.id, "x", body.email.as_deref().unwrap_or("x@example.com"));
        if let Some(s) = body.status {
            u.status = s;
        }
        Ok(UpdateUserResponse::Ok {
            body: UpdateUser200Response { code: 0, msg: "ok".into(), data: Some(u), timestamp: chrono::Utc::now() },
            etag: "\"v1\"".into(),
        })
    }

    async fn patch_user(
        &self,
        _who: String,
        params: PatchUserParams,
        body: UserMergePatch,
    ) -> Result<PatchUserResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let mut u = user(params.id, "x", body.email.as_deref().unwrap_or("x@example.com"));
        if let Some(s) = body.status {
            u.status = s;
        }
        Ok(PatchUserResponse::Ok {
            body: PatchUser200Response { code: 0, msg: "ok".into(), data: Some(u), timestamp: chrono::Utc::now() },
            etag: "\"v1\"".into(),
        })
    }

    async fn delete_user(&self, _who: String, params: DeleteUserParams) -> Result<DeleteUserResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        // Every user here is at version 1.
        if params.if_match.is_some_and(|m| !m.matches("\"v1\"")) {
            return Err(ErrorCode::PreconditionFailed.problem());
        }
        Ok(DeleteUserResponse::Ok(SuccessResponse {
            code: 0,
            msg: "deleted".into(),
            data: None,
            timestamp: chrono::Utc::now(),
        }))
    }
}

impl TasksApi for Stub {
    async fn submit_email_task(
        &self,
        _who: String,
        _p: SubmitEmailTaskParams,
        body: EmailTaskRequest,
    ) -> Result<SubmitEmailTaskResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(SubmitEmailTaskResponse::Ok(SubmitEmailTask200Response {
            code: 0,
            msg: body.priority.to_string(),
            data: Some(TaskResponse { task_id: uuid::Uuid::nil(), queue: body.priority, estimated_time: None }),
            timestamp: chrono::Utc::now(),
        }))
    }

    async fn submit_sync_task(
        &self,
        _who: String,
        _p: SubmitSyncTaskParams,
        body: SyncTaskRequest,
    ) -> Result<SubmitSyncTaskResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Ok(SubmitSyncTaskResponse::Ok(SubmitSyncTask200Response {
            code: 0,
            msg: format!("{} {} {}", body.start_date, body.end_date, body.batch_size),
            data: Some(TaskResponse { task_id: uuid::Uuid::nil(), queue: body.priority, estimated_time: None }),
            timestamp: chrono::Utc::now(),
        }))
    }

    async fn submit_email_task_batch(
        &self,
        _who: String,
        _body: EmailTaskBatchRequest,
    ) -> Result<SubmitEmailTaskBatchResponse, Problem> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Err(ErrorCode::Internal.problem())
    }

    async fn get_task(&self, _who: String, params: GetTaskParams) -> Result<GetTaskResponse, Problem> {
        Err(ErrorCode::TaskNotFound.problem().with_detail(format!("no task {}", params.task_id)))
    }
}

/// The queue administration is not what these tests are about: every admin operation answers
/// a documented problem, which keeps the generated `Api` bound satisfied honestly.
impl AdminApi for Stub {
    async fn get_queue_stats(&self, _: String) -> Result<GetQueueStatsResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
    async fn list_admin_tasks(&self, _: String, _p: ListAdminTasksParams) -> Result<ListAdminTasksResponse, Problem> {
        Err(ErrorCode::InvalidPageToken.problem())
    }
    async fn get_admin_task(&self, _: String, _p: GetAdminTaskParams) -> Result<GetAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskNotFound.problem())
    }
    async fn delete_admin_task(
        &self,
        _: String,
        _p: DeleteAdminTaskParams,
    ) -> Result<DeleteAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskNotFound.problem())
    }
    async fn retry_admin_task(&self, _: String, _p: RetryAdminTaskParams) -> Result<RetryAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskStateConflict.problem())
    }
    async fn cancel_admin_task(
        &self,
        _: String,
        _p: CancelAdminTaskParams,
    ) -> Result<CancelAdminTaskResponse, Problem> {
        Err(ErrorCode::TaskStateConflict.problem())
    }
    async fn pause_queue(&self, _: String, _p: PauseQueueParams) -> Result<PauseQueueResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
    async fn resume_queue(&self, _: String, _p: ResumeQueueParams) -> Result<ResumeQueueResponse, Problem> {
        Err(ErrorCode::Internal.problem())
    }
}

fn client() -> (TestClient<impl Endpoint>, Arc<Stub>) {
    let stub = Arc::new(Stub::default());
    (TestClient::new(app(stub.clone())), stub)
}

/// Sends and returns status, headers and the body parsed as JSON (panics,
/// failing the test, when the body is not JSON).
async fn send<E: Endpoint>(req: TestRequestBuilder<'_, E>) -> (StatusCode, HeaderMap, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    let headers = resp.headers().clone();
    let bytes = resp.into_body().into_bytes().await.expect("body");
    let body: Value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|e| panic!("{status}: body is not JSON ({e}): {:?}", String::from_utf8_lossy(&bytes)));
    (status, headers, body)
}

/// Asserts the error envelope and returns the names of the failing fields.
fn assert_envelope(status: StatusCode, headers: &HeaderMap, body: &Value, want: StatusCode, code: i64) -> Vec<String> {
    assert_eq!(status, want, "body: {body}");
    assert_eq!(headers.get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"), "{body}");
    assert_eq!(body["code"], code, "{body}");
    assert!(body["msg"].as_str().is_some_and(|m| !m.is_empty()), "{body}");
    let ts = body["timestamp"].as_str().expect("timestamp");
    chrono::DateTime::parse_from_rfc3339(ts).expect("RFC 3339 timestamp");
    body["data"]["errors"]
        .as_array()
        .map(|errs| errs.iter().map(|e| e["field"].as_str().unwrap_or_default().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn validation_names_every_failing_body_field() {
    let (cli, stub) = client();
    let (s, h, b) = send(
        cli.post("/api/v1/users")
            .header("token", "good")
            .body_json(&json!({"username": "a!", "email": "not-an-email", "password": "short"})),
    )
    .await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    assert_eq!(b["msg"], "参数验证失败");
    for f in ["username", "email", "password"] {
        assert!(fields.contains(&f.to_owned()), "{f} missing from {b}");
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn missing_fields_and_wrong_types_are_named_with_constraint_failures() {
    let (cli, _) = client();
    let (s, h, b) =
        send(cli.post("/api/v1/users").header("token", "good").body_json(&json!({"username": 42, "password": "x"})))
            .await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    assert_eq!(fields, vec!["username", "email", "password"], "{b}");
    let messages: Vec<&str> =
        b["data"]["errors"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert_eq!(messages[0], "must be a string");
    assert_eq!(messages[1], "is required");
}

#[tokio::test]
async fn array_items_are_named_by_index() {
    let (cli, _) = client();
    let (s, h, b) = send(cli.post("/api/v1/tasks/email").header("token", "good").body_json(&json!({
        "to": "a@example.com", "subject": "s".repeat(201), "body": "b", "cc": ["ok@example.com", "nope", 7], "priority": "urgent"
    })))
    .await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    for f in ["subject", "cc[1]", "cc[2]", "priority"] {
        assert!(fields.contains(&f.to_owned()), "{f} missing from {b}");
    }
}

#[tokio::test]
async fn defaults_apply_and_dates_must_be_real() {
    let (cli, _) = client();
    let (s, _, b) = send(
        cli.post("/api/v1/tasks/email")
            .header("token", "good")
            .body_json(&json!({"to": "a@example.com", "subject": "s", "body": "b"})),
    )
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["msg"], "default");

    let (s, h, b) = send(cli.post("/api/v1/tasks/sync").header("token", "good").body_json(&json!({
        "sync_type": "sim_status", "start_date": "2025-02-30", "end_date": "2025-3-01", "batch_size": 0
    })))
    .await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    assert_eq!(fields, vec!["start_date", "end_date", "batch_size"], "{b}");

    let (s, _, b) = send(cli.post("/api/v1/tasks/sync").header("token", "good").body_json(&json!({
        "sync_type": "flow_usage", "start_date": "2024-02-29", "end_date": "2024-03-01"
    })))
    .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["msg"], "2024-02-29 2024-03-01 100");
}

#[tokio::test]
async fn query_and_path_parameters_are_validated_together() {
    let (cli, stub) = client();
    let (s, h, b) = send(
        cli.get("/api/v1/users")
            .query("page", &0)
            .query("page_size", &"abc")
            .query("status", &"gone")
            .header("token", "good"),
    )
    .await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    assert_eq!(fields, vec!["page_size", "status", "page"], "{b}");

    let (s, _, b) = send(cli.get("/api/v1/users").query("page_size", &101).header("token", "good")).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{b}");

    let (s, _, b) = send(cli.get("/api/v1/users").header("token", "good")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!((b["data"]["page"].clone(), b["data"]["page_size"].clone()), (json!(1), json!(20)));

    let (s, h, b) = send(cli.get("/api/v1/users/abc").header("token", "good")).await;
    assert_eq!(assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001), vec!["id"]);
    let (s, h, b) = send(cli.delete("/api/v1/users/0").header("token", "good")).await;
    assert_eq!(assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001), vec!["id"]);
    assert_eq!(stub.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn if_match_is_parsed_by_the_glue_and_compared_by_the_handler() {
    let (cli, stub) = client();
    for bad in ["v1", "\"v1", "W/v1", "\"a b\"", "*, \"v1\""] {
        let (s, h, b) = send(cli.delete("/api/v1/users/7").header("token", "good").header("If-Match", bad)).await;
        assert_eq!(assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001), vec!["If-Match"], "{bad:?}");
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0, "a malformed If-Match never reaches the handler");
    let (s, h, b) =
        send(cli.delete("/api/v1/users/7").header("token", "good").header("If-Match", "\"v2\", W/\"v1\"")).await;
    assert_envelope(s, &h, &b, StatusCode::PRECONDITION_FAILED, 1017);
    for ok in ["\"v2\", \"v1\"", "*"] {
        let (s, _, b) = send(cli.delete("/api/v1/users/7").header("token", "good").header("If-Match", ok)).await;
        assert_eq!(s, StatusCode::OK, "{ok:?}: {b}");
    }
    let (s, h, b) =
        send(cli.put("/api/v1/users/7").header("token", "good").body_json(&json!({"status": "inactive"}))).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(h.get("etag").and_then(|v| v.to_str().ok()), Some("\"v1\""), "the 200 carries its ETag");
}

#[tokio::test]
async fn body_errors_are_envelopes() {
    let (cli, _) = client();
    let (s, h, b) = send(
        cli.post("/api/v1/users").header("token", "good").content_type("application/json").body("{\"username\": "),
    )
    .await;
    assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1008);

    let (s, h, b) =
        send(cli.post("/api/v1/users").header("token", "good").content_type("text/plain").body("hello")).await;
    assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1009);

    let (s, h, b) =
        send(cli.post("/api/v1/users").header("token", "good").content_type("application/json").body("[1,2]")).await;
    assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);

    let (s, h, b) = send(cli.post("/api/v1/users").header("token", "good")).await;
    assert_eq!(assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001), vec!["body"]);

    let big = format!("{{\"username\": \"{}\"}}", "x".repeat(2 * 1024 * 1024));
    let (s, h, b) =
        send(cli.post("/api/v1/users").header("token", "good").content_type("application/json").body(big)).await;
    assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1010);
}

#[tokio::test]
async fn secured_operations_authenticate_before_the_handler() {
    let (cli, stub) = client();
    let body = json!({"username": "alice", "email": "a@example.com", "password": "password123"});
    let (s, h, b) = send(cli.post("/api/v1/users").body_json(&body)).await;
    assert_envelope(s, &h, &b, StatusCode::UNAUTHORIZED, 1002);
    assert_eq!(b["msg"], "缺失认证令牌");
    // Auth comes before validation: a bad body without a token is still 401.
    let (s, h, b) = send(cli.post("/api/v1/users").body_json(&json!({}))).await;
    assert_envelope(s, &h, &b, StatusCode::UNAUTHORIZED, 1002);
    // An empty header is a missing token, not a wrong one.
    let (s, h, b) = send(cli.post("/api/v1/users").header("token", "").body_json(&body)).await;
    assert_envelope(s, &h, &b, StatusCode::UNAUTHORIZED, 1002);
    let (s, h, b) = send(cli.post("/api/v1/users").header("token", "nope").body_json(&body)).await;
    assert_envelope(s, &h, &b, StatusCode::UNAUTHORIZED, 1005);
    let (s, h, b) = send(cli.get("/api/v1/users").header("token", "expired")).await;
    assert_envelope(s, &h, &b, StatusCode::UNAUTHORIZED, 1006);
    let (s, h, b) = send(cli.get("/api/v1/users").header("token", "store-down")).await;
    assert_envelope(s, &h, &b, StatusCode::INTERNAL_SERVER_ERROR, 5001);
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0);

    let (s, _, b) = send(cli.post("/api/v1/users").header("token", "good").body_json(&body)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(b["data"]["username"], "alice");
    assert_eq!(b["data"]["last_login_at"], Value::Null);
    assert_eq!(b["msg"], "operator");
    // Health is not secured.
    let (s, _, b) = send(cli.get("/api/v1/health")).await;
    assert_eq!((s, b["status"].clone()), (StatusCode::OK, json!("ok")));
}

/// A body that sends its first bytes and then nothing, ever.
fn stalled_body() -> poem::Body {
    let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(b"{\"to\": ".to_vec())])
        .chain(futures_util::stream::pending());
    poem::Body::from_bytes_stream(chunks)
}

#[tokio::test]
async fn credentials_are_checked_before_the_body_is_read() {
    let (cli, stub) = client();
    // Reading this body never ends: only an operation that refuses the
    // credential first can answer at all (the timeout only keeps a broken
    // build from hanging the suite).
    for token in [None, Some("nope")] {
        let mut req = cli.post("/api/v1/tasks/email").content_type("application/json").body(stalled_body());
        if let Some(t) = token {
            req = req.header("token", t);
        }
        let (s, h, b) = tokio::time::timeout(std::time::Duration::from_secs(30), send(req))
            .await
            .expect("answered without reading the body");
        assert_envelope(s, &h, &b, StatusCode::UNAUTHORIZED, if token.is_some() { 1005 } else { 1002 });
    }
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_body_that_stops_arriving_is_a_400_after_the_read_timeout() {
    let stub = Arc::new(Stub::default());
    let limits = rt::BodyLimits::new(1024, std::time::Duration::from_millis(50), 1024 * 1024);
    let cli = TestClient::new(poem::EndpointExt::data(app(stub.clone()), limits));
    let req =
        cli.post("/api/v1/tasks/email").header("token", "good").content_type("application/json").body(stalled_body());
    let (s, h, b) = tokio::time::timeout(std::time::Duration::from_secs(30), send(req)).await.expect("answered");
    assert_eq!(assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1008), vec!["body"]);
    assert!(b["data"]["errors"][0]["message"].as_str().unwrap().contains("did not arrive"), "{b}");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn bodies_wait_for_room_in_the_shared_buffer() {
    let stub = Arc::new(Stub::default());
    // Room for one 1 KiB body at a time, shared by two sets of limits.
    let quick = rt::BodyLimits::new(1024, std::time::Duration::from_millis(300), 1024);
    let mut patient = quick.clone();
    patient.read_timeout = std::time::Duration::from_secs(60);
    let slow_ep = poem::EndpointExt::data(app(stub.clone()), patient);
    let stalled = tokio::spawn(async move {
        let req = poem::Request::builder()
            .method(poem::http::Method::POST)
            .uri(poem::http::Uri::from_static("/api/v1/tasks/email"))
            .header("token", "good")
            .content_type("application/json")
            .header("content-length", "1000")
            .body(stalled_body());
        poem::Endpoint::get_response(&slow_ep, req).await
    });
    tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while quick.room_available_kib() > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    })
    .await
    .expect("the stalled body reserved its room");
    // A small, complete body finds no room while the stalled one holds it.
    let cli = TestClient::new(poem::EndpointExt::data(app(stub.clone()), quick.clone()));
    let body = json!({"to": "a@example.com", "subject": "s", "body": "b"});
    let (s, h, b) = send(cli.post("/api/v1/tasks/email").header("token", "good").body_json(&body)).await;
    assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1008);
    // The stalled client goes away: its room is free, the same request passes.
    stalled.abort();
    let _ = stalled.await;
    assert_eq!(quick.room_available_kib(), 1);
    let (s, _, b) = send(cli.post("/api/v1/tasks/email").header("token", "good").body_json(&body)).await;
    assert_eq!(s, StatusCode::OK, "{b}");
}

#[tokio::test]
async fn a_huge_invalid_body_lists_the_first_hundred_errors_and_counts_the_rest() {
    let (cli, stub) = client();
    // The request that once took minutes: 200,000 empty cc entries, each
    // an invalid email, plus the list's own maxItems.
    let n = 200_000;
    let body = json!({ "to": "a@example.com", "subject": "s", "body": "b", "cc": vec![""; n] });
    let (s, h, b) = send(cli.post("/api/v1/tasks/email").header("token", "good").body_json(&body)).await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    assert_eq!(fields.len(), rt::MAX_LISTED_ERRORS, "{}", &b.to_string()[..500]);
    assert_eq!(b["data"]["omitted"], n + 1 - rt::MAX_LISTED_ERRORS);
    assert_eq!(fields[0], "cc[0]");
    assert_eq!(stub.calls.load(Ordering::SeqCst), 0);

    // Type errors are replaced and reported once each, never again by garde.
    let body = json!({ "to": "a@example.com", "subject": "s", "body": "b", "cc": vec![7; 30] });
    let (s, h, b) = send(cli.post("/api/v1/tasks/email").header("token", "good").body_json(&body)).await;
    let fields = assert_envelope(s, &h, &b, StatusCode::BAD_REQUEST, 1001);
    assert_eq!(fields, (0..30).map(|i| format!("cc[{i}]")).collect::<Vec<_>>());
    assert_eq!(b["data"].get("omitted"), None);
}

#[tokio::test]
async fn routing_errors_are_envelopes() {
    let (cli, _) = client();
    let (s, h, b) = send(cli.get("/api/v1/nope")).await;
    assert_envelope(s, &h, &b, StatusCode::NOT_FOUND, 1011);
    let (s, h, b) = send(cli.get("/elsewhere")).await;
    assert_envelope(s, &h, &b, StatusCode::NOT_FOUND, 1011);
    let (s, h, b) = send(cli.delete("/api/v1/users").header("token", "good")).await;
    assert_envelope(s, &h, &b, StatusCode::METHOD_NOT_ALLOWED, 1012);
    assert_eq!(h.get("allow").and_then(|v| v.to_str().ok()), Some("GET, POST"));
    let (s, h, b) = send(cli.post("/api/v1/users/7").header("token", "good")).await;
    assert_envelope(s, &h, &b, StatusCode::METHOD_NOT_ALLOWED, 1012);
    assert_eq!(h.get("allow").and_then(|v| v.to_str().ok()), Some("GET, PUT, DELETE, PATCH"));
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_envelope_without_internals() {
    let (cli, _) = client();
    let (s, h, b) = send(
        cli.post("/api/v1/users")
            .header("token", "good")
            .body_json(&json!({"username": "panic_now", "email": "a@example.com", "password": "password123"})),
    )
    .await;
    assert_envelope(s, &h, &b, StatusCode::INTERNAL_SERVER_ERROR, 5000);
    assert!(!b.to_string().contains("secret"), "{b}");
}

#[tokio::test]
async fn typed_error_variants_serialize_as_documented() {
    let (cli, _) = client();
    let (s, h, b) = send(cli.get("/api/v1/users/7").header("token", "good")).await;
    assert_envelope(s, &h, &b, StatusCode::NOT_FOUND, 1003);
    assert_eq!(b["msg"], "no user 7");
    let (s, _, b) = send(cli.delete("/api/v1/users/7").header("token", "good")).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.get("data").is_none(), "success body must not carry data: null: {b}");
}

#[test]
fn passwords_never_show_in_debug() {
    let req = CreateUserRequest {
        username: "u".into(),
        email: "e@x.io".into(),
        password: rt::Password::new("hunter2hunter2"),
    };
    assert!(!format!("{req:?}").contains("hunter2"));
}

#[tokio::test]
async fn spec_and_docs_are_served() {
    let (cli, _) = client();
    let (s, _, b) = send(cli.get("/api/v1/openapi.json")).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(b["info"]["title"], TITLE);
    let resp = cli.get("/api/v1/openapi.yaml").send().await;
    resp.assert_status_is_ok();
    let resp = cli.get("/docs").send().await;
    resp.assert_status_is_ok();
    let html = resp.0.into_body().into_string().await.unwrap();
    assert!(html.contains("swagger"), "Swagger UI page expected");
    for external in ["src=\"http", "href=\"http", "src='http", "href='http"] {
        assert!(!html.contains(external), "Swagger UI must work offline (found {external})");
    }
}

/// The document the generated service emits is the contract (after the
/// normalization documented in `xtask::spec_norm`).
#[test]
fn emitted_document_round_trips_to_the_spec() {
    let root = xtask::codegen::workspace_root();
    let spec_text = std::fs::read_to_string(root.join("spec/openapi.yaml")).unwrap();
    let spec: Value = serde_yaml::from_str(&spec_text).unwrap();
    // What `/openapi.json` serves: poem-openapi's document with the patches.
    let emitted: Value = document(Arc::new(Stub::default()));
    let diffs = xtask::spec_norm::diff(&xtask::spec_norm::normalize(&spec), &xtask::spec_norm::normalize(&emitted));
    assert!(diffs.is_empty(), "the emitted document differs from spec/openapi.yaml:\n{}", diffs.join("\n"));
}
