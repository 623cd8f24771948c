//! The contract scenario, shared by `cargo xtask contract` and the root
//! package's `tests/contract.rs`: every operation driven to every documented
//! status against a base URL and token, every response through the checker,
//! and a coverage report. It creates only its own data and deletes it.
//!
//! Size: one scenario, in the order a client meets the operations; split by
//! tag, the data each step creates for the next would be scattered.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use spec_api_client::{Client, Credentials, Error as ClientError, ResponseValue, types};

mod admin;

use super::{
    checker::{Class, Contract, FieldFormat, Operation},
    coverage::Sent,
    negative::{Case, Generator, Request, TokenUse, VALIDATION_FAILED},
    recorder::{Exchange, Recorder},
    report::{Check, Outcome, Report},
};

/// How often state is polled while waiting for it to change (a dependency
/// going down or back up, a token expiring, a task completing).
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Longest wait for such a change.
const POLL_TIMEOUT: Duration = Duration::from_secs(20);

/// What a run may do beyond HTTP. Only a caller that owns the deployment
/// (the integration test) has one; methods block, so the scenario calls them
/// through `block_in_place` and needs a multi-threaded runtime.
pub trait Harness {
    /// A token of this deployment living `ttl` (used to obtain an expired one).
    fn issue_token(&mut self, ttl: Duration) -> Result<String>;
    /// A token of this deployment limited to `scopes` (used to obtain the 403s).
    fn issue_scoped_token(&mut self, scopes: &[&str]) -> Result<String>;
    fn stop_postgres(&mut self) -> Result<()>;
    fn start_postgres(&mut self) -> Result<()>;
    fn stop_redis(&mut self) -> Result<()>;
    fn start_redis(&mut self) -> Result<()>;
    /// Whether a worker runs, so that submitted tasks must reach `completed`.
    fn worker_running(&self) -> bool {
        false
    }
    /// Stops (`true`) or resumes the worker, so that a task stays pending
    /// while a check needs it to (a reused `Idempotency-Key`).
    fn hold_worker(&mut self, _held: bool) -> Result<()> {
        Ok(())
    }
    /// Whether `stop_postgres`/`stop_redis` and their restarts can be called: a harness over
    /// a deployment whose dependencies it cannot take down (a replicated one, where one
    /// stopped node is not an outage) answers `false`, and the 5xx checks are reported as
    /// not exercised, as without a harness.
    fn controls_dependencies(&self) -> bool {
        true
    }
}

#[derive(Debug, Clone, Default)]
pub struct Options {
    /// The API's base URL, e.g. `http://127.0.0.1:8080/api/v1`.
    pub base_url: String,
    /// A valid token; without one only the open operations and the 401s run.
    pub token: Option<String>,
    /// An expired token, for runs without a harness to issue one.
    pub expired_token: Option<String>,
    /// How failing fields are named, for a spec that declares no
    /// `x-error-field-format` (which wins otherwise); with neither, the
    /// naming of fields is not checked.
    pub field_format: Option<FieldFormat>,
}

/// Runs everything against `opts.base_url`; `Err` only when the run could
/// not start at all. Needs a multi-threaded Tokio runtime when a harness is given.
pub async fn run(contract: &Contract, opts: &Options, mut harness: Option<&mut dyn Harness>) -> Result<Report> {
    let rec = Recorder::start(&opts.base_url).await?;
    let unique = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let token = opts.token.clone().unwrap_or_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build()?;
    let api = Client::new_with_client(rec.base_url(), http.clone(), Credentials::default()).with_token(token.clone());
    let mut run = Run {
        contract,
        base: rec.base_url().to_owned(),
        rec,
        http,
        api,
        token,
        unique,
        report: Report::new(contract),
        field_format: contract.field_format().or(opts.field_format),
        created: Vec::new(),
        gone_user: None,
        email_task: None,
        answered: false,
        last_headers: Vec::new(),
        last_rejected: None,
    };
    if !run.health_up("all dependencies up").await {
        let why = match run.report.failed_checks().next().map(|c| &c.outcome) {
            Some(Outcome::Fail(reasons)) => reasons.join("; "),
            _ => "no response".to_owned(),
        };
        anyhow::bail!("{} does not answer: {why}", opts.base_url);
    }
    if opts.token.is_none() {
        for op in contract.operations().iter().filter(|o| o.auth_header.is_some()) {
            for (status, _) in &op.responses {
                if let Ok(s) = status.parse::<u16>()
                    && s != 401
                {
                    run.report.not_exercised(&op.id, s, "no token given (--token)");
                }
            }
        }
        run.negative(None, false).await;
        if !harness.as_deref().is_some_and(|h| h.controls_dependencies()) {
            run.dependencies_not_controlled();
        }
        return Ok(run.report);
    }
    run.users().await;
    run.tasks(harness.as_deref().is_some_and(|h| h.worker_running())).await;
    run.admin().await;
    // With a harness the worker is held meanwhile, so the first task of a
    // reused key is still pending; without one, a fast worker may finish it
    // first, and the check tries a few keys.
    let held = harness.as_deref_mut().map(|h| blocking(|| h.hold_worker(true)));
    if let Some(Err(e)) = &held {
        run.harness_failed("submitEmailTask", "holds the worker", e);
    }
    run.idempotency_key_reused().await;
    if let (Some(h), Some(Ok(()))) = (harness.as_deref_mut(), held)
        && let Err(e) = blocking(|| h.hold_worker(false))
    {
        run.harness_failed("submitEmailTask", "resumes the worker", &e);
    }
    run.oversized_heads().await;
    match harness.as_deref_mut() {
        Some(h) => run.insufficient_scopes(h).await,
        None => run.scopes_not_controlled(),
    }
    let expired = match (&opts.expired_token, harness.as_deref_mut()) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(h)) => run.expire_token(h).await,
        (None, None) => None,
    };
    run.negative(expired, true).await;
    match harness {
        Some(h) if h.controls_dependencies() => {
            run.postgres_down(h).await;
            run.redis_down(h).await;
        }
        _ => run.dependencies_not_controlled(),
    }
    run.cleanup().await;
    Ok(run.report)
}

/// A check of a response body beyond the contract (`Err` says what differs).
type BodyCheck = Box<dyn Fn(&Value) -> Result<(), String>>;

/// What a step expects: the operation, status, registry code and more.
struct Want {
    op: String,
    status: u16,
    /// An `x-error-codes` name; its number is looked up in the contract.
    /// A convention: checked only when the registry has the name.
    code: Option<&'static str>,
    body: Vec<BodyCheck>,
    /// Expectations the spec does not make (registry codes inside a body,
    /// the naming of a failing field): convention findings, not failures.
    conventions: Vec<BodyCheck>,
}

impl Want {
    fn new(op: &str, status: u16) -> Want {
        Want { op: op.to_owned(), status, code: None, body: Vec::new(), conventions: Vec::new() }
    }

    /// [`Want::field`] for what only the registry's prose promises
    /// (`data.required` of an `InsufficientScope`).
    fn convention_field(self, pointer: &'static str, expected: Value) -> Want {
        self.convention(move |b| expect_at(b, pointer, &expected))
    }

    fn convention(mut self, f: impl Fn(&Value) -> Result<(), String> + 'static) -> Want {
        self.conventions.push(Box::new(f));
        self
    }

    /// The value at `pointer` is the code `x-error-codes` registers as
    /// `name`; without such an entry the spec declares no such convention.
    fn registered(self, contract: &Contract, pointer: &'static str, name: &str) -> Want {
        match contract.error_code(name) {
            Some(c) => {
                let code = c.code;
                self.convention(move |b| expect_at(b, pointer, &json!(code)))
            }
            None => self,
        }
    }

    /// The string at `pointer` names the failing field `name` (json-name
    /// form) as `format` writes it; without a declared format, unchecked.
    fn names_field(self, format: Option<FieldFormat>, pointer: &'static str, name: &str) -> Want {
        match format {
            Some(f) => {
                let expected = json!(f.render(name));
                self.convention(move |b| expect_at(b, pointer, &expected))
            }
            None => self,
        }
    }

    fn code(mut self, name: &'static str) -> Want {
        self.code = Some(name);
        self
    }

    /// The value at `pointer` in the body must be `expected`.
    fn field(mut self, pointer: &'static str, expected: Value) -> Want {
        self.body.push(Box::new(move |b: &Value| expect_at(b, pointer, &expected)));
        self
    }

    fn check(mut self, f: impl Fn(&Value) -> Result<(), String> + 'static) -> Want {
        self.body.push(Box::new(f));
        self
    }
}

/// `Err` unless the value at `pointer` in `body` is `expected`.
fn expect_at(body: &Value, pointer: &str, expected: &Value) -> Result<(), String> {
    match body.pointer(pointer) {
        Some(v) if v == expected => Ok(()),
        got => Err(format!("{pointer}: expected {expected}, got {}", got.map_or("nothing".into(), Value::to_string))),
    }
}

/// What one exchange showed.
struct Verdict {
    status: Option<u16>,
    /// Contract mismatches: never tolerated, not even while polling.
    contract: Vec<String>,
    /// Departures from a convention the spec declares (see [`Class`]).
    convention: Vec<String>,
    /// The step's own expectations (status, code, values).
    expectation: Vec<String>,
    body: Option<Value>,
}

struct Run<'a> {
    contract: &'a Contract,
    /// The recorder's base URL (every request goes through it).
    base: String,
    rec: Recorder,
    http: reqwest::Client,
    api: Client,
    token: String,
    unique: String,
    report: Report,
    /// How validation errors name failing fields, when declared.
    field_format: Option<FieldFormat>,
    /// Users this run created and has not deleted yet.
    created: Vec<i64>,
    /// A user this run deleted: known not to exist.
    gone_user: Option<i64>,
    email_task: Option<uuid::Uuid>,
    /// Whether the last request got a response.
    answered: bool,
    /// The headers of the last response.
    last_headers: Vec<(String, String)>,
    /// What the last request answered with a 400 carried, and its
    /// operation: recorded as a documented rejection, it exercises what it violates.
    last_rejected: Option<(String, Sent)>,
}

fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

/// One line for a typed-client error, without its (unprintable) payload types.
fn client_error<E>(e: &ClientError<E>) -> String {
    match e {
        ClientError::InvalidRequest(s) => format!("the typed client refused the request: {s}"),
        ClientError::CommunicationError(e) | ClientError::InvalidUpgrade(e) | ClientError::ResponseBodyError(e) => {
            format!("the typed client could not talk to the server: {e}")
        }
        ClientError::ErrorResponse(v) => format!("the typed client got an error status {}", v.status()),
        ClientError::InvalidResponsePayload(_, e) => format!("the typed client could not decode the body: {e}"),
        ClientError::UnexpectedResponse(r) => format!("the typed client got an undocumented status {}", r.status()),
        ClientError::Custom(s) => format!("the typed client failed: {s}"),
    }
}

/// Judges one answered exchange against the spec and the step's
/// expectations, each finding in its class; returns the body, if JSON.
fn judge(contract: &Contract, want: &Want, ex: &Exchange, v: &mut Verdict) -> Option<Value> {
    v.status = Some(ex.status);
    if let Err(mismatches) = contract.check_request(&ex.method, &ex.path, ex.response()) {
        for m in &mismatches {
            match m.class {
                Class::Spec => v.contract.push(m.to_string()),
                Class::Convention => v.convention.push(m.to_string()),
            }
        }
    }
    match contract.find(&ex.method, &ex.path) {
        Some(op) if op.id == want.op => {}
        other => v.expectation.push(format!(
            "{} {}: expected operation {}, got {}",
            ex.method,
            ex.path,
            want.op,
            other.map_or("none", |o| o.id.as_str())
        )),
    }
    if ex.status != want.status {
        v.expectation.push(format!("expected status {}, got {}: {}", want.status, ex.status, body_text(ex)));
    }
    let body: Option<Value> = serde_json::from_slice(&ex.body).ok();
    // Which registry code a situation gets is this project's choice: the
    // spec only pairs codes with statuses (the checker's convention).
    if let Some(name) = want.code
        && let Some(c) = contract.error_code(name)
    {
        let got = body.as_ref().and_then(|b| b.get("code"));
        if got.and_then(Value::as_i64) != Some(c.code) {
            let got = got.map_or("nothing".into(), Value::to_string);
            v.convention.push(format!("/code: expected {} ({name}), got {got}", c.code));
        }
    }
    if ex.status == want.status {
        for check in &want.body {
            if let Err(e) = body.as_ref().map_or_else(|| Err("the body is not JSON".to_owned()), check) {
                v.expectation.push(e);
            }
        }
        for check in &want.conventions {
            if let Err(e) = body.as_ref().map_or_else(|| Err("the body is not JSON".to_owned()), check) {
                v.convention.push(e);
            }
        }
    }
    body
}

impl Run<'_> {
    /// Judges the one exchange the last request made (without recording it).
    fn verdict(&mut self, want: &Want, send_error: Option<String>) -> Verdict {
        let exchanges = self.rec.take();
        self.answered = exchanges.last().is_some_and(|ex| ex.error.is_none());
        self.last_rejected = None;
        let mut v =
            Verdict { status: None, contract: Vec::new(), convention: Vec::new(), expectation: Vec::new(), body: None };
        let Some(ex) = exchanges.last() else {
            let why = send_error.unwrap_or_else(|| "the client sent nothing".into());
            v.expectation.push(format!("no request reached the server: {why}"));
            return v;
        };
        if exchanges.len() > 1 {
            v.expectation.push(format!("expected one request, the client sent {}", exchanges.len()));
        }
        if let Some(e) = &ex.error {
            v.expectation.push(format!("no response from the server: {e}"));
            return v;
        }
        self.last_headers.clone_from(&ex.headers);
        self.observe(ex);
        let body = judge(self.contract, want, ex, &mut v);
        // Whatever created a user (a wrongly accepted negative case
        // included) is deleted at the end.
        if ex.status == 200 {
            let ids: Vec<i64> = match (want.op.as_str(), body.as_ref()) {
                ("createUser", Some(b)) => b.pointer("/data/id").and_then(Value::as_i64).into_iter().collect(),
                ("batchCreateUsers", Some(b)) => b
                    .pointer("/data/results")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(|r| r.pointer("/user/id").and_then(Value::as_i64))
                    .collect(),
                _ => Vec::new(),
            };
            for id in ids {
                if !self.created.contains(&id) {
                    self.created.push(id);
                }
            }
        }
        v.body = body;
        v
    }

    /// Keyword coverage of one checked exchange: what its response shows
    /// and, when it was accepted, which enum values its request used.
    fn observe(&mut self, ex: &Exchange) {
        let contract = self.contract;
        let Some(op) = contract.find(&ex.method, &ex.path) else { return };
        self.report.coverage.response(contract, op, ex.response());
        if (200..300).contains(&ex.status) {
            self.report.coverage.accepted(contract, op, &Sent::from_exchange(contract, op, ex));
        } else if ex.status == 400 {
            self.last_rejected = Some((op.id.clone(), Sent::from_exchange(contract, op, ex)));
        }
    }

    fn record(&mut self, what: &str, want: &Want, v: Verdict) -> Option<Value> {
        let mut reasons = v.contract;
        reasons.extend(v.expectation);
        let outcome = if reasons.is_empty() { Outcome::Pass } else { Outcome::Fail(reasons) };
        // A generated negative case or a scenario step alike: only a
        // validation failure answered as documented exercises what it violates.
        if let Some((op_id, sent)) = self.last_rejected.take()
            && outcome == Outcome::Pass
            && want.status == 400
            && want.code == Some(VALIDATION_FAILED)
            && op_id == want.op
        {
            let contract = self.contract;
            if let Some(op) = contract.operation(&op_id) {
                self.report.coverage.rejected(contract, op, &sent);
            }
        }
        self.report.push(Check {
            name: format!("{} {} {what}", want.op, want.status),
            operation: want.op.clone(),
            status: Some(want.status),
            outcome,
            conventions: v.convention,
        });
        v.body
    }

    /// Records a typed call; returns its decoded value on success.
    fn typed<T, E>(&mut self, what: &str, want: Want, r: Result<ResponseValue<T>, ClientError<E>>) -> Option<T> {
        let send_error = r.as_ref().err().map(client_error);
        let mut v = self.verdict(&want, send_error);
        let value = match r {
            Ok(value) => Some(value.into_inner()),
            Err(ClientError::ErrorResponse(_)) if want.status >= 400 => None,
            // The checker has a word on the response itself; this is the
            // typed client's (e.g. a body it cannot decode).
            Err(e) => {
                if v.status.is_some() {
                    v.expectation.push(client_error(&e));
                }
                None
            }
        };
        self.record(what, &want, v);
        value
    }

    /// A raw request relative to the base URL, through the recorder.
    fn request(&self, req: &Request, token: Option<&str>, auth_header: Option<&str>) -> reqwest::RequestBuilder {
        let method = reqwest::Method::from_bytes(req.method.as_bytes()).unwrap_or(reqwest::Method::GET);
        let mut b = self.http.request(method, format!("{}{}", self.base, req.path));
        if !req.query.is_empty() {
            b = b.query(&req.query);
        }
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        if let (Some(h), Some(t)) = (auth_header, token) {
            b = b.header(h, t);
        }
        if let Some(body) = &req.body {
            b = b.json(body);
        }
        b
    }

    async fn raw(&mut self, what: &str, want: Want, b: reqwest::RequestBuilder) -> Option<Value> {
        let send_error = b.send().await.err().map(|e| e.to_string());
        let v = self.verdict(&want, send_error);
        self.record(what, &want, v)
    }

    /// Repeats a request until it meets `want` or `POLL_TIMEOUT` passes; a
    /// contract mismatch on the way ends it at once.
    async fn poll(&mut self, what: &str, want: Want, make: impl Fn(&Self) -> reqwest::RequestBuilder) -> Option<Value> {
        let deadline = Instant::now() + POLL_TIMEOUT;
        loop {
            let send_error = make(self).send().await.err().map(|e| e.to_string());
            let mut v = self.verdict(&want, send_error);
            let done = v.contract.is_empty() && v.expectation.is_empty();
            if done || !v.contract.is_empty() || Instant::now() >= deadline {
                if !done && v.contract.is_empty() {
                    v.expectation.push(format!("still not so after {POLL_TIMEOUT:?}"));
                }
                return self.record(what, &want, v);
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    fn secured(&self, op: &str) -> Option<String> {
        self.contract.operation(op).and_then(|o| o.auth_header.clone())
    }

    fn get(&self, path: &str, token: Option<&str>, op: &str) -> reqwest::RequestBuilder {
        let req = Request { method: "GET".into(), path: path.into(), query: vec![], headers: vec![], body: None };
        self.request(&req, token, self.secured(op).as_deref())
    }

    /// Whether the server answered at all.
    async fn health_up(&mut self, what: &str) -> bool {
        let want = Want::new("healthCheck", 200).field("/status", json!("ok"));
        let r = self.api.health_check().send().await;
        self.typed(what, want, r);
        self.answered
    }

    async fn create_user(&mut self, what: &str, want: Want, name: &str, email: &str) -> Option<types::UserResponse> {
        let body = types::CreateUserRequest::builder().username(name).email(email).password("password123");
        let r = self.api.create_user().body(body).send().await;
        self.typed(what, want, r).and_then(|b| b.data)
    }

    async fn users(&mut self) {
        let u = self.unique.clone();
        let (a_name, a_email) = (format!("ct_{u}_a"), format!("ct_{u}_a@example.com"));
        let (b_name, b_email) = (format!("ct_{u}_b"), format!("ct_{u}_b@example.com"));
        let want = Want::new("createUser", 200).field("/data/status", json!("active"));
        let a = self.create_user("creates user A", want, &a_name, &a_email).await;
        let b = self.create_user("creates user B", Want::new("createUser", 200), &b_name, &b_email).await;
        let (Some(a), Some(b)) = (a, b) else {
            self.report.skip("createUser", "users: the rest of the CRUD steps".into(), "creating the users failed");
            return;
        };
        let (a_id, b_id) = (id_param(a.id), id_param(b.id));

        // User A is read through createUser's `GetUserById` link, as a
        // stateful contract tool would find it.
        let body = json!({ "data": &a });
        let linked = self.linked("createUser", "GetUserById", "getUserById", "id", &body).and_then(|v| v.as_u64());
        let linked = linked.unwrap_or(a_id);
        let want = Want::new("getUserById", 200).field("/data/username", json!(a_name));
        let r = self.api.get_user_by_id().id(linked).send().await;
        self.typed("reads user A (createUser's GetUserById link)", want, r);

        let want = Want::new("listUsers", 200).field("/data/page", json!(1)).field("/data/page_size", json!(100));
        let r = self.api.list_users().page(1u64).page_size(100u64).status(types::ListUsersStatus::Active).send().await;
        self.typed("lists active users", want, r);
        self.cursor_pages().await;
        self.field_masks(a_id).await;

        let want = Want::new("updateUser", 200).field("/data/status", json!("inactive"));
        let body = types::UpdateUserRequest::builder().status(Some(types::UpdateUserRequestStatus::Inactive));
        let r = self.api.update_user().id(a_id).body(body).send().await;
        self.typed("deactivates user A", want, r);

        self.merge_patch(a_id, &b_email).await;
        self.conditional_requests(a_id, b_id).await;

        let conflict = || Want::new("createUser", 409).code("Conflict");
        self.create_user("duplicate username", conflict(), &a_name, &format!("ct_{u}_c@example.com")).await;
        self.create_user("duplicate email", conflict(), &format!("ct_{u}_c"), &a_email).await;
        let taken = types::UpdateUserRequestEmail::try_from(a_email.as_str()).ok();
        let body = types::UpdateUserRequest::builder().email(taken);
        let r = self.api.update_user().id(b_id).body(body).send().await;
        self.typed("email taken by another user", Want::new("updateUser", 409).code("Conflict"), r);

        self.batches(&a, &a_name).await;

        let r = self.api.delete_user().id(b_id).send().await;
        if self.typed("deletes user B", Want::new("deleteUser", 200), r).is_some() {
            self.created.retain(|id| *id != b.id);
            self.gone_user = Some(b.id);
        }
        let not_found = |op: &str| Want::new(op, 404).code("UserNotFound");
        let r = self.api.get_user_by_id().id(b_id).send().await;
        self.typed("deleted user", not_found("getUserById"), r);
        let body = types::UpdateUserRequest::builder().status(Some(types::UpdateUserRequestStatus::Active));
        let r = self.api.update_user().id(b_id).body(body).send().await;
        self.typed("deleted user", not_found("updateUser"), r);
        let body = types::UserMergePatch::builder().status(Some(types::UserMergePatchStatus::Active));
        let r = self.api.patch_user().id(b_id).body(body).send().await;
        self.typed("deleted user", not_found("patchUser"), r);
        let r = self.api.delete_user().id(b_id).send().await;
        self.typed("deleted user", not_found("deleteUser"), r);
        // Far beyond any id a real deployment hands out.
        let unknown = i64::MAX.unsigned_abs();
        let r = self.api.get_user_by_id().id(unknown).send().await;
        self.typed("unknown id", not_found("getUserById"), r);
        let r = self.api.delete_user().id(unknown).send().await;
        self.typed("unknown id", not_found("deleteUser"), r);
    }

    /// patchUser (JSON Merge Patch) on user A, left inactive as it found it:
    /// what a patch names changes, `null`, an unknown member and another
    /// media type are 400, an email taken is 409.
    async fn merge_patch(&mut self, a_id: u64, taken_email: &str) {
        let want = Want::new("patchUser", 200).field("/data/status", json!("active"));
        let body = types::UserMergePatch::builder().status(Some(types::UserMergePatchStatus::Active));
        let r = self.api.patch_user().id(a_id).body(body).send().await;
        self.typed("merge patch sets status only", want, r);
        let want = Want::new("patchUser", 200).field("/data/status", json!("inactive"));
        let body = types::UserMergePatch::builder().status(Some(types::UserMergePatchStatus::Inactive));
        let r = self.api.patch_user().id(a_id).body(body).send().await;
        self.typed("merge patch sets it back", want, r);
        let op = self.contract.operation("patchUser").cloned();
        let Some(op) = op else { return };
        let path = op.path.replace("{id}", &a_id.to_string());
        let patch = |body: Value, ct: &str| Request {
            method: "PATCH".into(),
            path: path.clone(),
            query: vec![],
            headers: vec![("content-type".into(), ct.to_owned())],
            body: Some(body),
        };
        let mp = "application/merge-patch+json";
        for (what, req, code) in [
            ("merge patch null on a non-nullable member", patch(json!({"email": null}), mp), "ValidationFailed"),
            ("merge patch with an unknown member", patch(json!({"nickname": "x"}), mp), "ValidationFailed"),
            (
                "merge patch sent as application/json",
                patch(json!({"status": "active"}), "application/json"),
                "UnsupportedMediaType",
            ),
        ] {
            let b = self.request(&req, Some(&self.token), op.auth_header.as_deref());
            self.raw(what, Want::new("patchUser", 400).code(code), b).await;
        }
        let b = self.request(&patch(json!({"email": taken_email}), mp), Some(&self.token), op.auth_header.as_deref());
        self.raw("merge patch to an email taken", Want::new("patchUser", 409).code("Conflict"), b).await;
        self.deprecation_headers("updateUser", &path).await;
    }

    /// The last response's header `name`.
    fn last_header(&self, name: &str) -> Option<String> {
        self.last_headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.clone())
    }

    /// ETag and conditional requests on user A: `If-None-Match` naming the
    /// current ETag is a bodiless 304, a stale `If-Match` is a 412 that
    /// changes nothing, and of two concurrent PUTs carrying one ETag
    /// exactly one wins. A stale `If-Match` on DELETE leaves user B alone.
    async fn conditional_requests(&mut self, a_id: u64, b_id: u64) {
        let (Some(get), Some(put), Some(del)) = (
            self.contract.operation("getUserById").cloned(),
            self.contract.operation("updateUser").cloned(),
            self.contract.operation("deleteUser").cloned(),
        ) else {
            return;
        };
        let req = |op: &Operation, id: u64, headers: Vec<(&str, String)>, body: Option<Value>| Request {
            method: op.method.clone(),
            path: op.path.replace("{id}", &id.to_string()),
            query: vec![],
            headers: headers.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            body,
        };
        let auth = |op: &Operation| op.auth_header.clone();
        let b = self.request(&req(&get, a_id, vec![], None), Some(&self.token), auth(&get).as_deref());
        self.raw("reads user A with its ETag", Want::new("getUserById", 200), b).await;
        let Some(etag) = self.last_header("etag") else {
            self.report.skip("getUserById", "conditional requests".into(), "user A came without an ETag");
            return;
        };
        let b = self.request(
            &req(&get, a_id, vec![("if-none-match", etag.clone())], None),
            Some(&self.token),
            auth(&get).as_deref(),
        );
        let want = Want::new("getUserById", 304);
        self.raw("If-None-Match naming the current ETag", want, b).await;
        let b = self.request(
            &req(&get, a_id, vec![("if-none-match", "\"v0\", W/\"x\"".into())], None),
            Some(&self.token),
            auth(&get).as_deref(),
        );
        self.raw("If-None-Match naming other ETags", Want::new("getUserById", 200), b).await;

        let body = || Some(json!({"status": "inactive"}));
        let b = self.request(
            &req(&put, a_id, vec![("if-match", "\"v0\"".into())], body()),
            Some(&self.token),
            auth(&put).as_deref(),
        );
        self.raw("a stale If-Match", Want::new("updateUser", 412).code("PreconditionFailed"), b).await;
        if let Some(patch) = self.contract.operation("patchUser").cloned() {
            let mut r = req(&patch, a_id, vec![("if-match", "W/\"v1\"".into())], body());
            r.headers.extend(patch.request_media.clone().map(|m| ("content-type".to_owned(), m)));
            let b = self.request(&r, Some(&self.token), auth(&patch).as_deref());
            let want = Want::new("patchUser", 412).code("PreconditionFailed");
            self.raw("a weak If-Match never matches", want, b).await;
        }

        // Two writers that read the same version: one wins, the other is told.
        let put_a = || {
            self.request(
                &req(&put, a_id, vec![("if-match", etag.clone())], body()),
                Some(&self.token),
                auth(&put).as_deref(),
            )
        };
        let (r1, r2) = tokio::join!(put_a().send(), put_a().send());
        let exchanges = self.rec.take();
        let mut reasons = Vec::new();
        for r in [&r1, &r2] {
            if let Err(e) = r {
                reasons.push(format!("no response: {e}"));
            }
        }
        let mut statuses: Vec<u16> = exchanges.iter().map(|ex| ex.status).collect();
        statuses.sort_unstable();
        if statuses != [200, 412] {
            reasons.push(format!("expected one 200 and one 412, got {statuses:?}"));
        }
        for ex in &exchanges {
            if let Err(m) = self.contract.check_request(&ex.method, &ex.path, ex.response()) {
                reasons.extend(m.iter().map(ToString::to_string));
            }
            self.observe(ex);
        }
        let winner = exchanges.iter().find(|ex| ex.status == 200);
        let new_etag = winner.and_then(|ex| ex.headers.iter().find(|(n, _)| n == "etag")).map(|(_, v)| v.clone());
        if winner.is_some() && new_etag.as_deref().is_none_or(|e| e == etag) {
            reasons.push(format!("the winner's ETag {new_etag:?} should differ from the one it replaced ({etag})"));
        }
        self.report.push(Check {
            name: "updateUser two concurrent PUTs with one If-Match: exactly one wins".into(),
            operation: "updateUser".into(),
            status: None,
            outcome: if reasons.is_empty() { Outcome::Pass } else { Outcome::Fail(reasons) },
            conventions: Vec::new(),
        });

        if let Some(current) = new_etag {
            let b = self.request(
                &req(&put, a_id, vec![("if-match", format!("\"v0\", {current}"))], body()),
                Some(&self.token),
                auth(&put).as_deref(),
            );
            self.raw("If-Match listing the current ETag", Want::new("updateUser", 200), b).await;
        }
        let b = self.request(
            &req(&del, b_id, vec![("if-match", "\"v0\"".into())], None),
            Some(&self.token),
            auth(&del).as_deref(),
        );
        self.raw("a stale If-Match keeps user B", Want::new("deleteUser", 412).code("PreconditionFailed"), b).await;
    }

    /// A deprecated operation with `x-deprecated-at` / `x-sunset` answers
    /// with `Deprecation` / `Sunset` headers (as the generator derives them:
    /// the check only sees that both are there and well-formed).
    async fn deprecation_headers(&mut self, op_id: &str, path: &str) {
        let Some(op) = self.contract.operation(op_id).cloned() else { return };
        let req = Request {
            method: op.method.clone(),
            path: path.to_owned(),
            query: vec![],
            headers: vec![],
            body: Some(json!({"status": "inactive"})),
        };
        let sent = self.request(&req, Some(&self.token), op.auth_header.as_deref()).send().await;
        let (problem, send_error) = match &sent {
            Err(e) => (None, Some(e.to_string())),
            Ok(resp) => {
                let h = |n: &str| resp.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
                let dep = h("deprecation");
                let sunset = h("sunset");
                let dep_ok = dep.as_deref().and_then(|d| d.strip_prefix('@')).is_some_and(|n| n.parse::<i64>().is_ok());
                let sunset_ok = sunset.as_deref().is_some_and(|s| chrono::DateTime::parse_from_rfc2822(s).is_ok());
                let problem = (!(dep_ok && sunset_ok)).then(|| {
                    format!("expected `Deprecation: @<seconds>` and an HTTP-date `Sunset`, got {dep:?} and {sunset:?}")
                });
                (problem, None)
            }
        };
        // The body is judged against the contract as every answer is; the
        // headers are declared only in prose and by `x-sunset`, not as
        // documented response headers: a convention.
        let want = Want::new(op_id, 200);
        let mut v = self.verdict(&want, send_error);
        v.convention.extend(problem);
        self.record("deprecated: Deprecation and Sunset headers", &want, v);
    }

    /// Parameter `param` of link `link` of `op`'s 200 response, evaluated
    /// on `body` and checked to lead to `target`; a broken link is a failed
    /// check.
    fn linked(&mut self, op: &str, link: &str, target: &str, param: &str, body: &Value) -> Option<Value> {
        let name = format!("{op} 200 link {link} leads to {target}");
        let found = self.contract.link(op, "200", link, body).and_then(|(to, params)| {
            anyhow::ensure!(to == target, "it leads to {to}");
            params
                .into_iter()
                .find(|(p, _)| p == param)
                .map(|(_, v)| v)
                .with_context(|| format!("no `{param}` parameter"))
        });
        let outcome = match &found {
            Ok(_) => crate::report::Outcome::Pass,
            Err(e) => crate::report::Outcome::Fail(vec![format!("{e:#}")]),
        };
        self.report.push(crate::report::Check {
            name,
            operation: op.to_owned(),
            status: None,
            outcome,
            conventions: Vec::new(),
        });
        found.ok()
    }

    /// Cursor paging: a page of one leads to the next by its `next_page_token` (users A and B
    /// exist, so there is one), and an altered token or one of another filter is a 400.
    async fn cursor_pages(&mut self) {
        let want = Want::new("listUsers", 200).check(|b| match b.pointer("/data/next_page_token") {
            Some(Value::String(_)) => Ok(()),
            other => Err(format!("a page of one of several users has no next_page_token: {other:?}")),
        });
        let r = self.api.list_users().page_size(1u64).send().await;
        let Some(first) = self.typed("first page of one user", want, r).and_then(|b| b.data) else {
            return;
        };
        let (Some(token), Some(first_id)) = (first.next_page_token, first.users.first().map(|u| u.id)) else {
            return;
        };
        let want = Want::new("listUsers", 200)
            .field("/data/page", json!(2))
            .field("/data/total", json!(first.total))
            .check(move |b| match b.pointer("/data/users/0/id").and_then(Value::as_i64) {
                Some(id) if id != first_id => Ok(()),
                other => Err(format!("the cursor page starts with {other:?}, after user {first_id}")),
            });
        let r = self.api.list_users().page_size(1u64).page_token(token.as_str()).send().await;
        self.typed("follows next_page_token", want, r);

        // One character changed in the middle: the signature no longer matches.
        let mut altered: Vec<char> = token.chars().collect();
        let mid = altered.len() / 2;
        altered[mid] = if altered[mid] == 'A' { 'B' } else { 'A' };
        let altered: String = altered.into_iter().collect();
        let bad = || Want::new("listUsers", 400).code("InvalidPageToken");
        let r = self.api.list_users().page_token(altered.as_str()).send().await;
        self.typed("altered page_token", bad(), r);
        let r = self.api.list_users().page_token("bm90IGEgdG9rZW4").send().await;
        self.typed("page_token the server never issued", bad(), r);
        let r = self.api.list_users().page_token(token.as_str()).status(types::ListUsersStatus::Suspended).send().await;
        self.typed("page_token of another status filter", bad(), r);
    }

    /// Partial responses (`x-field-mask`): `fields=` keeps only the named
    /// members of the user on a get and of each user on a list page (the
    /// checker reports any other member); an unknown name is a 400 naming it.
    async fn field_masks(&mut self, a_id: u64) {
        let (Some(get), Some(list)) =
            (self.contract.operation("getUserById").cloned(), self.contract.operation("listUsers").cloned())
        else {
            return;
        };
        let (Some((get_param, _)), Some((list_param, _))) = (get.field_mask.clone(), list.field_mask.clone()) else {
            self.report.skip("getUserById", "field masks".into(), "the contract declares no x-field-mask");
            return;
        };
        let req = |op: &Operation, path: String, query: Vec<(String, String)>| Request {
            method: op.method.clone(),
            path,
            query,
            headers: vec![],
            body: None,
        };
        let keys = |v: Option<&Value>| -> Vec<String> {
            let mut k: Vec<String> = v.and_then(Value::as_object).into_iter().flat_map(|m| m.keys().cloned()).collect();
            k.sort();
            k
        };
        let path = get.path.replace("{id}", &a_id.to_string());
        let q = vec![(get_param.clone(), "email,id".to_owned())];
        // What a mask keeps is `x-field-mask`'s promise, not the schema's.
        let want = Want::new("getUserById", 200).convention(move |b| match keys(b.pointer("/data")).as_slice() {
            [e, i] if e == "email" && i == "id" => Ok(()),
            other => Err(format!("fields=email,id sent the members {other:?}")),
        });
        let b = self.request(&req(&get, path.clone(), q), Some(&self.token), get.auth_header.as_deref());
        self.raw("fields=email,id on a user", want, b).await;

        let q = vec![(list_param, "id,username".to_owned()), ("page_size".to_owned(), "3".to_owned())];
        let want = Want::new("listUsers", 200).field("/data/page_size", json!(3)).convention(move |b| {
            let users = b.pointer("/data/users").and_then(Value::as_array).cloned().unwrap_or_default();
            match users.iter().map(|u| keys(Some(u))).find(|k| k.as_slice() != ["id", "username"]) {
                None if !users.is_empty() => Ok(()),
                None => Err("an empty page".into()),
                Some(k) => Err(format!("fields=id,username sent a user with {k:?}")),
            }
        });
        let b = self.request(&req(&list, list.path.clone(), q), Some(&self.token), list.auth_header.as_deref());
        self.raw("fields=id,username on a list page", want, b).await;

        let q = vec![(get_param, "id,password_hash".to_owned())];
        let want = Want::new("getUserById", 400).code("ValidationFailed").convention(|b| {
            if b.to_string().contains("password_hash") {
                Ok(())
            } else {
                Err("the 400 does not name the unknown field password_hash".into())
            }
        });
        let b = self.request(&req(&get, path, q), Some(&self.token), get.auth_header.as_deref());
        self.raw("fields= naming an unknown member", want, b).await;
    }

    /// Batch read in request order with a missing id reported in place, and a batch create
    /// whose middle items conflict (with user A, and with an earlier item of the same batch)
    /// while the others are created.
    async fn batches(&mut self, a: &types::UserResponse, a_name: &str) {
        let a_id = a.id;
        let nz = |id: i64| std::num::NonZeroU64::new(id.unsigned_abs()).unwrap_or(std::num::NonZeroU64::MIN);
        let unknown = i64::MAX;
        let ids = vec![nz(a_id), nz(unknown), nz(a_id)];
        let want = Want::new("batchGetUsers", 200)
            .field("/data/results/0/user/id", json!(a_id))
            .field("/data/results/1/id", json!(unknown))
            .field("/data/results/2/user/id", json!(a_id))
            .registered(self.contract, "/data/results/1/error/code", "UserNotFound");
        let r = self.api.batch_get_users().body(types::BatchGetUsersRequest::builder().ids(ids)).send().await;
        self.typed("reads users in request order, a missing one in place", want, r);

        let u = self.unique.clone();
        let item = |name: &str, email: &str| {
            types::CreateUserRequest::builder().username(name).email(email).password("password123")
        };
        let mut items = Vec::new();
        for (name, email) in [
            (format!("ct_{u}_e"), format!("ct_{u}_e@example.com")),
            (a_name.to_owned(), format!("ct_{u}_f@example.com")),
            (format!("ct_{u}_g"), format!("ct_{u}_e@example.com")),
            (format!("ct_{u}_h"), format!("ct_{u}_h@example.com")),
        ] {
            match types::CreateUserRequest::try_from(item(&name, &email)) {
                Ok(i) => items.push(i),
                Err(e) => {
                    self.report.skip("batchCreateUsers", "partial failure".into(), format!("bad item: {e}"));
                    return;
                }
            }
        }
        let want = Want::new("batchCreateUsers", 200)
            .field("/data/results/0/index", json!(0))
            .field("/data/results/0/user/username", json!(format!("ct_{u}_e")))
            .field("/data/results/3/user/username", json!(format!("ct_{u}_h")))
            .registered(self.contract, "/data/results/1/error/code", "Conflict")
            .registered(self.contract, "/data/results/2/error/code", "Conflict")
            .names_field(self.field_format, "/data/results/1/error/data/field", "username")
            .names_field(self.field_format, "/data/results/2/error/data/field", "email");
        let r = self.api.batch_create_users().body(types::BatchCreateUsersRequest::builder().users(items)).send().await;
        self.typed("creates items 0 and 3; 1 and 2 conflict (with A, with item 0)", want, r);

        let tasks = vec![self.email_task(), self.email_task().priority(types::EmailTaskRequestPriority::Critical)];
        let mut built = Vec::new();
        for t in tasks {
            match types::EmailTaskRequest::try_from(t) {
                Ok(t) => built.push(t),
                Err(e) => {
                    self.report.skip("submitEmailTaskBatch", "two tasks".into(), format!("bad task: {e}"));
                    return;
                }
            }
        }
        let want = Want::new("submitEmailTaskBatch", 200)
            .field("/data/tasks/0/queue", json!("low"))
            .field("/data/tasks/1/queue", json!("critical"));
        let r =
            self.api.submit_email_task_batch().body(types::EmailTaskBatchRequest::builder().tasks(built)).send().await;
        self.typed("enqueues two tasks in order", want, r);
    }

    fn email_task(&self) -> types::builder::EmailTaskRequest {
        types::EmailTaskRequest::builder()
            .to(format!("ct{}@example.com", self.unique))
            .subject("contract check")
            .body("sent by the contract suite; nobody reads it")
            .cc(Vec::<String>::new())
            .priority(types::EmailTaskRequestPriority::Low)
    }

    /// One day far in the future, in one page: against a real deployment the
    /// worker finds nothing to pull.
    fn sync_task(&self) -> types::builder::SyncTaskRequest {
        let day = chrono::NaiveDate::from_ymd_opt(2099, 1, 1).unwrap_or_default();
        types::SyncTaskRequest::builder()
            .sync_type(types::SyncTaskRequestSyncType::SimStatus)
            .start_date(day)
            .end_date(day)
            .batch_size(std::num::NonZeroU64::new(1000).unwrap_or(std::num::NonZeroU64::MIN))
            .priority(types::SyncTaskRequestPriority::Low)
    }

    async fn tasks(&mut self, worker: bool) {
        let key = format!("ct-{}-email", self.unique);
        let want = || Want::new("submitEmailTask", 200).field("/data/queue", json!("low"));
        let r = self.api.submit_email_task().idempotency_key(key.as_str()).body(self.email_task()).send().await;
        let data = self.typed("submits an email task", want(), r).and_then(|t| t.data);
        let first = data.as_ref().map(|t| t.task_id);
        if let Some(id) = first {
            // getTask through the submission's `GetTask` link.
            let body = json!({ "data": data });
            if let Some(linked) = self.linked("submitEmailTask", "GetTask", "getTask", "task_id", &body) {
                let want = Want::new("getTask", 200).field("/data/task_id", linked.clone());
                let linked = linked.as_str().and_then(|s| s.parse::<uuid::Uuid>().ok()).unwrap_or(id);
                let r = self.api.get_task().task_id(linked).send().await;
                self.typed("reads the task (submitEmailTask's GetTask link)", want, r);
            }
        }
        if let Some(id) = first {
            let r = self.api.submit_email_task().idempotency_key(key.as_str()).body(self.email_task()).send().await;
            let again = self.typed("same Idempotency-Key again", want(), r).and_then(|t| t.data).map(|t| t.task_id);
            // The same task while it is pending or running; the key is released
            // when it finishes, which a fast worker may manage in between.
            if again.is_some_and(|again| again != id) {
                let want =
                    Want::new("getTask", 200).check(|b| match b.pointer("/data/state").and_then(Value::as_str) {
                        Some("completed" | "dead") => Ok(()),
                        other => Err(format!("a repeated Idempotency-Key got a new task while the first is {other:?}")),
                    });
                let r = self.api.get_task().task_id(id).send().await;
                self.typed("a new task for a repeated key only once the first finished", want, r);
            }
        }
        let want = Want::new("submitSyncTask", 200).field("/data/queue", json!("low"));
        let r = self.api.submit_sync_task().body(self.sync_task()).send().await;
        self.typed("submits a sync task", want, r);

        if let Some(id) = first {
            self.email_task = Some(id);
            let want = Want::new("getTask", 200).field("/data/task_id", json!(id)).field("/data/type", json!("email"));
            let r = self.api.get_task().task_id(id).send().await;
            self.typed("reads the email task", want, r);
            if worker {
                let want = Want::new("getTask", 200).field("/data/state", json!("completed"));
                let path = format!("/tasks/{id}");
                let token = self.token.clone();
                self.poll("the worker completes the email task", want, |run| run.get(&path, Some(&token), "getTask"))
                    .await;
            }
        }
        let r = self.api.get_task().task_id(uuid::Uuid::new_v4()).send().await;
        self.typed("unknown task id", Want::new("getTask", 404).code("TaskNotFound"), r);

        // A rule the schema cannot state: the handler checks date order.
        let body = json!({"sync_type": "sim_status", "start_date": "2025-11-12", "end_date": "2025-11-01"});
        let req = Request {
            method: "POST".into(),
            path: "/tasks/sync".into(),
            query: vec![],
            headers: vec![],
            body: Some(body),
        };
        let b = self.request(&req, Some(&self.token), self.secured("submitSyncTask").as_deref());
        let want = Want::new("submitSyncTask", 400).code(VALIDATION_FAILED).names_field(
            self.field_format,
            "/data/errors/0/field",
            "end_date",
        );
        self.raw("end_date before start_date", want, b).await;
    }

    /// The same `Idempotency-Key` with a different body is refused while
    /// the first task is pending or running. A fast worker may finish it
    /// before the second request (releasing the key), so up to 20 keys are
    /// tried (3 idle workers won the race 5 times in a row in one CI run);
    /// a 200 is accepted only when the first task had finished.
    async fn idempotency_key_reused(&mut self) {
        let day = "2099-01-01";
        let cases = [
            (
                "submitEmailTask",
                "/tasks/email",
                json!({"to": format!("ct{}@example.com", self.unique), "subject": "contract check", "body": "first", "priority": "low"}),
                json!({"to": format!("ct{}@example.com", self.unique), "subject": "contract check", "body": "second", "priority": "low"}),
            ),
            (
                "submitSyncTask",
                "/tasks/sync",
                json!({"sync_type": "sim_status", "start_date": day, "end_date": day, "batch_size": 1000, "priority": "low"}),
                json!({"sync_type": "sim_status", "start_date": day, "end_date": day, "batch_size": 999, "priority": "low"}),
            ),
        ];
        for (op, path, first, second) in cases {
            for attempt in 0..20 {
                let key = format!("ct-{}-reuse-{attempt}", self.unique);
                let submit = |run: &Self, body: &Value| {
                    let req = Request {
                        method: "POST".into(),
                        path: path.into(),
                        query: vec![],
                        headers: vec![("Idempotency-Key".into(), key.clone())],
                        body: Some(body.clone()),
                    };
                    run.request(&req, Some(&run.token), run.secured(op).as_deref())
                };
                let what = "submits a task whose Idempotency-Key is then reused";
                let Some(id) = self.raw(what, Want::new(op, 200), submit(self, &first)).await.and_then(|b| {
                    b.pointer("/data/task_id").and_then(Value::as_str).and_then(|s| uuid::Uuid::parse_str(s).ok())
                }) else {
                    break;
                };
                let sent = submit(self, &second).send().await;
                let status = sent.as_ref().map(|r| r.status().as_u16()).ok();
                let send_error = sent.err().map(|e| e.to_string());
                if status != Some(200) {
                    let want = Want::new(op, 422).code("IdempotencyKeyReused");
                    let v = self.verdict(&want, send_error);
                    self.record("same Idempotency-Key, different body", &want, v);
                    break;
                }
                let want = Want::new(op, 200);
                let v = self.verdict(&want, send_error);
                self.record("same Idempotency-Key, different body, after the first task finished", &want, v);
                let want =
                    Want::new("getTask", 200).check(|b| match b.pointer("/data/state").and_then(Value::as_str) {
                        Some("completed" | "dead") => Ok(()),
                        other => Err(format!(
                            "a reused Idempotency-Key with another body was accepted while the first task is {other:?}"
                        )),
                    });
                let r = self.api.get_task().task_id(id).send().await;
                if self.typed("the first task had finished", want, r).is_none() {
                    break;
                }
            }
        }
    }

    /// Every secured operation documenting `403` gets a valid token short of
    /// the scopes its requirement lists (one granting another scope of the
    /// contract): a 403 naming them, before the parameters or the body are
    /// looked at, so nothing is created or changed.
    async fn insufficient_scopes(&mut self, h: &mut dyn Harness) {
        let ops: Vec<Operation> = self
            .contract
            .operations()
            .iter()
            .filter(|o| o.auth_header.is_some() && o.responses.iter().any(|(s, _)| s == "403"))
            .cloned()
            .collect();
        let mut all: Vec<String> = ops.iter().flat_map(|o| o.scopes.iter().cloned()).collect();
        all.sort();
        all.dedup();
        let mut tokens: Vec<(String, String)> = Vec::new();
        for op in ops {
            // `admin` grants everything, so it is never the other scope.
            let Some(other) = all.iter().find(|s| *s != "admin" && !op.scopes.contains(s)).cloned() else {
                self.report.not_exercised(&op.id, 403, "the contract has no other scope to issue a token with");
                continue;
            };
            let token = match tokens.iter().find(|(s, _)| *s == other) {
                Some((_, t)) => t.clone(),
                None => match blocking(|| h.issue_scoped_token(&[other.as_str()])) {
                    Ok(t) => {
                        tokens.push((other.clone(), t.clone()));
                        t
                    }
                    Err(e) => {
                        self.harness_failed(&op.id, &format!("issue a token with scope {other}"), &e);
                        continue;
                    }
                },
            };
            let req = Request {
                method: op.method.clone(),
                path: sample_path(&op),
                query: vec![],
                headers: vec![],
                body: None,
            };
            let b = self.request(&req, Some(&token), op.auth_header.as_deref());
            let want =
                Want::new(&op.id, 403).code("InsufficientScope").convention_field("/data/required", json!(op.scopes));
            self.raw(&format!("a token with only {other}"), want, b).await;
        }
    }

    /// Without a harness no token short of a scope can be issued.
    fn scopes_not_controlled(&mut self) {
        let reason = "needs a token short of the operation's scope; this run cannot issue one";
        let ops: Vec<String> = self
            .contract
            .operations()
            .iter()
            .filter(|o| o.auth_header.is_some() && o.responses.iter().any(|(s, _)| s == "403"))
            .map(|o| o.id.clone())
            .collect();
        for op in ops {
            self.report.unreachable(&op, 403, reason);
            self.report.skip(&op, format!("{op} 403 insufficient scope"), reason);
        }
    }

    /// Every operation documenting `431` gets a request whose headers are
    /// far over any sensible limit (32 KiB of padding), with a valid token.
    async fn oversized_heads(&mut self) {
        let padding = "a".repeat(32 * 1024);
        let ops: Vec<_> = self
            .contract
            .operations()
            .iter()
            .filter(|o| o.responses.iter().any(|(s, _)| s == "431"))
            .cloned()
            .collect();
        for op in ops {
            let req = Request {
                method: op.method.clone(),
                path: sample_path(&op),
                query: vec![],
                headers: vec![("x-padding".into(), padding.clone())],
                body: None,
            };
            let b = self.request(&req, Some(&self.token), op.auth_header.as_deref());
            let want = Want::new(&op.id, 431).code("HeadersTooLarge");
            self.raw("request headers over the limit", want, b).await;
        }
    }

    /// Issues a token living 1 s and waits until the server calls it expired.
    async fn expire_token(&mut self, h: &mut dyn Harness) -> Option<String> {
        let token = match blocking(|| h.issue_token(Duration::from_secs(1))) {
            Ok(t) => t,
            Err(e) => {
                self.harness_failed("listUsers", "issue a 1 s token", &e);
                return None;
            }
        };
        let want = Want::new("listUsers", 401).code("ExpiredToken");
        let req = Request {
            method: "GET".into(),
            path: "/users".into(),
            query: vec![("page_size".into(), "1".into())],
            headers: vec![],
            body: None,
        };
        let header = self.secured("listUsers");
        let t = token.clone();
        self.poll("a 1 s token expires", want, |run| run.request(&req, Some(&t), header.as_deref())).await;
        Some(token)
    }

    /// The generated negative cases; `with_token` runs the 400s too.
    async fn negative(&mut self, expired: Option<String>, with_token: bool) {
        // An id known not to exist, so even a wrongly accepted request changes nothing.
        let id = self.gone_user.unwrap_or(i64::MAX);
        let generator = Generator::new(self.contract, &self.unique, vec![("id".into(), json!(id))]);
        let built = generator.cases(expired.is_some());
        for (op, why) in built.problems {
            self.report.push(Check {
                name: format!("{op} negative cases"),
                operation: op,
                status: None,
                outcome: Outcome::Fail(vec![why]),
                conventions: Vec::new(),
            });
        }
        if expired.is_none() {
            for op in self.contract.operations().iter().filter(|o| o.auth_header.is_some()) {
                let reason = "no expired token: no harness to issue one and no --expired-token";
                self.report.skip(&op.id, format!("{} 401 expired token", op.id), reason);
            }
        }
        for case in built.cases {
            if case.token == TokenUse::Valid && !with_token {
                continue;
            }
            self.negative_case(&case, expired.as_deref()).await;
        }
    }

    async fn negative_case(&mut self, case: &Case, expired: Option<&str>) {
        let Some(op) = self.contract.operation(&case.operation) else { return };
        let header = op.auth_header.clone();
        let wrong = wrong_token(&self.token);
        let token = match case.token {
            TokenUse::Valid => Some(self.token.as_str()),
            TokenUse::Absent => None,
            TokenUse::Empty => Some(""),
            TokenUse::Wrong => Some(wrong.as_str()),
            TokenUse::Expired => expired,
        };
        let want = negative_want(case, self.field_format);
        let b = self.request(&case.request, token, header.as_deref());
        let what = case.name.splitn(3, ' ').nth(2).unwrap_or(&case.name).to_owned();
        self.raw(&what, want, b).await;
    }

    fn harness_failed(&mut self, op: &str, what: &str, e: &anyhow::Error) {
        self.report.push(Check {
            name: format!("harness: {what}"),
            operation: op.to_owned(),
            status: None,
            outcome: Outcome::Fail(vec![format!("{e:#}")]),
            conventions: Vec::new(),
        });
    }

    async fn health_poll(&mut self, what: &str, status: u16, postgres: &str, redis: &str) {
        let mut want =
            Want::new("healthCheck", status).field("/postgres", json!(postgres)).field("/redis", json!(redis));
        if status == 503 {
            want = want.field("/status", json!("degraded"));
        }
        self.poll(what, want, |run| run.get("/health", None, "healthCheck")).await;
    }

    /// PostgreSQL stopped: health degrades, users operations answer 500
    /// (the token still passes from the Redis cache); started again, health
    /// recovers without restarting the server.
    async fn postgres_down(&mut self, h: &mut dyn Harness) {
        if let Err(e) = blocking(|| h.stop_postgres()) {
            self.harness_failed("healthCheck", "stop PostgreSQL", &e);
            return;
        }
        self.health_poll("PostgreSQL stopped", 503, "down", "up").await;
        let internal = |op: &str| Want::new(op, 500).code("Internal");
        let id = id_param(self.created.first().copied().unwrap_or(1));
        let r = self.api.list_users().send().await;
        self.typed("PostgreSQL stopped", internal("listUsers"), r);
        let name = format!("ct_{}_d", self.unique);
        self.create_user("PostgreSQL stopped", internal("createUser"), &name, &format!("{name}@example.com")).await;
        let r = self.api.get_user_by_id().id(id).send().await;
        self.typed("PostgreSQL stopped", internal("getUserById"), r);
        let body = types::UpdateUserRequest::builder().status(Some(types::UpdateUserRequestStatus::Active));
        let r = self.api.update_user().id(id).body(body).send().await;
        self.typed("PostgreSQL stopped", internal("updateUser"), r);
        let body = types::UserMergePatch::builder().status(Some(types::UserMergePatchStatus::Inactive));
        let r = self.api.patch_user().id(id).body(body).send().await;
        self.typed("PostgreSQL stopped", internal("patchUser"), r);
        let r = self.api.delete_user().id(id).send().await;
        self.typed("PostgreSQL stopped", internal("deleteUser"), r);
        let r = self
            .api
            .batch_get_users()
            .body(types::BatchGetUsersRequest::builder().ids(vec![std::num::NonZeroU64::MIN]))
            .send()
            .await;
        self.typed("PostgreSQL stopped", internal("batchGetUsers"), r);
        let items: Vec<_> = types::CreateUserRequest::try_from(
            types::CreateUserRequest::builder()
                .username(name.clone() + "b")
                .email(format!("{name}b@example.com"))
                .password("password123"),
        )
        .into_iter()
        .collect();
        let r = self.api.batch_create_users().body(types::BatchCreateUsersRequest::builder().users(items)).send().await;
        self.typed("PostgreSQL stopped", internal("batchCreateUsers"), r);
        if let Err(e) = blocking(|| h.start_postgres()) {
            self.harness_failed("healthCheck", "start PostgreSQL again", &e);
            return;
        }
        self.health_poll("PostgreSQL started again", 200, "up", "up").await;
    }

    /// Redis stopped: health degrades and the task operations answer 500
    /// (authentication falls back to PostgreSQL).
    async fn redis_down(&mut self, h: &mut dyn Harness) {
        if let Err(e) = blocking(|| h.stop_redis()) {
            self.harness_failed("healthCheck", "stop Redis", &e);
            return;
        }
        self.health_poll("Redis stopped", 503, "up", "down").await;
        let internal = |op: &str| Want::new(op, 500).code("Internal");
        let r = self.api.submit_email_task().body(self.email_task()).send().await;
        self.typed("Redis stopped", internal("submitEmailTask"), r);
        let r = self.api.submit_sync_task().body(self.sync_task()).send().await;
        self.typed("Redis stopped", internal("submitSyncTask"), r);
        let tasks: Vec<_> = types::EmailTaskRequest::try_from(self.email_task()).into_iter().collect();
        let r =
            self.api.submit_email_task_batch().body(types::EmailTaskBatchRequest::builder().tasks(tasks)).send().await;
        self.typed("Redis stopped", internal("submitEmailTaskBatch"), r);
        let r = self.api.get_task().task_id(self.email_task.unwrap_or_else(uuid::Uuid::new_v4)).send().await;
        self.typed("Redis stopped", internal("getTask"), r);
        self.admin_redis_down().await;
        if let Err(e) = blocking(|| h.start_redis()) {
            self.harness_failed("healthCheck", "start Redis again", &e);
            return;
        }
        self.health_poll("Redis started again", 200, "up", "up").await;
    }

    /// Without a harness no 5xx can be provoked: every one needs a
    /// dependency stopped.
    fn dependencies_not_controlled(&mut self) {
        let reason = "needs PostgreSQL/Redis stopped; this run does not control the deployment's dependencies";
        for op in self.contract.operations() {
            for (status, _) in &op.responses {
                if let Ok(s) = status.parse::<u16>()
                    && s >= 500
                {
                    self.report.unreachable(&op.id, s, reason);
                    self.report.skip(&op.id, format!("{} {s} dependency down", op.id), reason);
                }
            }
        }
    }

    /// Deletes what this run created.
    async fn cleanup(&mut self) {
        for id in std::mem::take(&mut self.created) {
            let r = self.api.delete_user().id(id_param(id)).send().await;
            self.typed(&format!("cleanup: deletes user {id}"), Want::new("deleteUser", 200), r);
        }
    }
}

/// `op`'s path with a value of the right type in each path parameter.
/// A generated case's expectations: its documented status (spec), its
/// registry code and the naming of its field (conventions).
fn negative_want(case: &Case, format: Option<FieldFormat>) -> Want {
    let code = match &case.expect {
        super::negative::Expect::Invalid { .. } => VALIDATION_FAILED,
        super::negative::Expect::Unauthorized { code } => code,
    };
    let want = Want::new(&case.operation, case.status()).code(code);
    match format {
        Some(format) => {
            let check = case.clone();
            want.convention(move |b| check.check_body(b, format))
        }
        None => want,
    }
}

fn sample_path(op: &Operation) -> String {
    let mut path = op.path.clone();
    for p in op.parameters.iter().filter(|p| p.location == "path") {
        let sample =
            match (p.schema.get("type").and_then(Value::as_str), p.schema.get("format").and_then(Value::as_str)) {
                (_, Some("uuid")) => uuid::Uuid::new_v4().to_string(),
                (Some("integer"), _) => "1".to_owned(),
                _ => "x".to_owned(),
            };
        path = path.replace(&format!("{{{}}}", p.name), &sample);
    }
    path
}

/// User ids travel as `u64` in the typed client (`minimum: 1`).
fn id_param(id: i64) -> u64 {
    id.unsigned_abs()
}

/// A token of the same shape that was never issued.
fn wrong_token(token: &str) -> String {
    match token.char_indices().last() {
        Some((i, c)) => format!("{}{}", &token[..i], if c == 'A' { 'B' } else { 'A' }),
        None => format!("sk_{}", "A".repeat(43)),
    }
}

fn body_text(ex: &Exchange) -> String {
    let text = String::from_utf8_lossy(&ex.body);
    if text.chars().count() > 200 {
        format!("{}…", text.chars().take(200).collect::<String>())
    } else {
        text.into_owned()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SPEC: &str = include_str!("../../../spec/openapi.yaml");

    fn exchange(method: &str, path: &str, status: u16, body: &Value) -> Exchange {
        Exchange {
            method: method.into(),
            path: path.into(),
            status,
            content_type: Some("application/json".into()),
            body: serde_json::to_vec(body).unwrap(),
            headers: vec![],
            error: None,
            request_headers: vec![],
            request_body: vec![],
        }
    }

    fn verdict(contract: &Contract, want: &Want, ex: &Exchange) -> Verdict {
        let mut v =
            Verdict { status: None, contract: Vec::new(), convention: Vec::new(), expectation: Vec::new(), body: None };
        v.body = judge(contract, want, ex, &mut v);
        v
    }

    /// An independent implementation answering a generated 400 with its
    /// own conventions: `field` as a JSON pointer, a code of its own.
    #[test]
    fn a_deployment_differing_only_in_conventions_has_no_spec_failures() {
        let contract = Contract::from_yaml(SPEC).unwrap();
        let cases = Generator::new(&contract, "u", vec![("id".into(), json!(7))]).cases(false).cases;
        let case = cases.iter().find(|c| c.name == "createUser 400 email format").unwrap();
        let body = json!({
            "code": 4000,
            "msg": "invalid request",
            "data": {"errors": [{"field": "/email", "message": "must be an email address"}]},
            "timestamp": "2025-11-12T16:00:00Z"
        });
        let ex = exchange("POST", "/api/v1/users", 400, &body);
        for format in [Some(FieldFormat::JsonName), None] {
            let v = verdict(&contract, &negative_want(case, format), &ex);
            assert_eq!((v.contract.clone(), v.expectation.clone()), (vec![], vec![]), "{format:?}");
            // The registry pairing and the code asked for, and the naming when declared.
            let want = if format.is_some() { 3 } else { 2 };
            assert_eq!(v.convention.len(), want, "{format:?}: {:#?}", v.convention);
        }
        // Declared as pointers, `/email` is what the convention asks for.
        let v = verdict(&contract, &negative_want(case, Some(FieldFormat::JsonPointer)), &ex);
        assert!(v.convention.iter().all(|c| !c.contains("data.errors")), "{:#?}", v.convention);

        // The same answer checked against a spec with neither registry nor
        // declared field format: nothing at all to report.
        let bare: serde_json::Value = serde_yaml::from_str(SPEC).unwrap();
        let mut bare = bare;
        bare.as_object_mut().unwrap().remove("x-error-codes");
        bare.as_object_mut().unwrap().remove("x-error-field-format");
        let bare = Contract::from_yaml(&serde_json::to_string(&bare).unwrap()).unwrap();
        let v = verdict(&bare, &negative_want(case, bare.field_format()), &ex);
        assert_eq!((v.contract, v.expectation, v.convention), (vec![], vec![], vec![]));
    }

    #[test]
    fn an_undocumented_answer_for_an_unknown_id_is_a_spec_failure() {
        let contract = Contract::from_yaml(SPEC).unwrap();
        let want = Want::new("getUserById", 404).code("UserNotFound");
        let body = json!({"code": 1000, "msg": "boom", "timestamp": "2025-11-12T16:00:00Z"});
        let v = verdict(&contract, &want, &exchange("GET", "/api/v1/users/99", 500, &body));
        assert!(v.expectation.iter().any(|e| e.starts_with("expected status 404, got 500")), "{:#?}", v.expectation);
        // A plain-text 500 breaks the documented media type and schema too.
        let mut text = exchange("GET", "/api/v1/users/99", 500, &json!(null));
        text.content_type = Some("text/plain".into());
        text.body = b"Internal Server Error".to_vec();
        let v = verdict(&contract, &want, &text);
        assert_eq!(v.contract.len(), 2, "{:#?}", v.contract);
    }
}
