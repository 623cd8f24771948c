//! The queue admin API (tag Admin) against the real `spec-server serve` and `worker` binaries
//! over private PostgreSQL and Redis: cancelling a task a worker is running (the worker's lease
//! is fenced off and its handler cancelled), retrying the dead task, pausing and resuming a
//! priority, deleting a pending task, paging every state, and the 401/403/404/409 answers.
//! `Deployment` is shared with the browser test (`admin_browser.rs`).

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    net::{Ipv4Addr, TcpListener, TcpStream},
    time::Duration,
};

use serde_json::{Value, json};
use spec_server::devsvc::{self, Launched, Ready};
use tempfile::TempDir;

use crate::support::spec_server;

/// Generous: two shared cores may be busy compiling next door.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// How long a state change by the worker may take to show.
const POLL_TIMEOUT: Duration = Duration::from_secs(30);

/// A sync upstream that accepts connections and never answers: a sync task stays `active`
/// (its worker extending the lease) until it is cancelled.
pub struct Hanging {
    pub port: u16,
    _thread: std::thread::JoinHandle<()>,
}

impl Hanging {
    pub fn start() -> Hanging {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let thread = std::thread::spawn(move || {
            // Held open so that the client waits instead of seeing a reset; a test submits a
            // handful of tasks, so this stays small.
            let mut held: Vec<TcpStream> = Vec::new();
            for s in listener.incoming().flatten() {
                held.push(s);
            }
        });
        Hanging { port, _thread: thread }
    }
}

/// `serve` and `worker` over a fresh database and a Redis prefix of their own, with an admin
/// token and a token of another scope.
pub struct Deployment {
    // Processes first: they die before what they use.
    pub worker: Launched,
    pub server: Launched,
    pub base: String,
    pub admin_token: String,
    pub reader_token: String,
    pub http: reqwest::Client,
    _upstream: Hanging,
    _db: devsvc::TestDb,
    _logs: TempDir,
}

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

fn http_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = TcpStream::connect((Ipv4Addr::LOCALHOST, port)) else { return false };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if write!(s, "GET /api/v1/health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && &head[9..12] == b"200"
}

impl Deployment {
    pub async fn start() -> Deployment {
        let logs = tempfile::tempdir().unwrap();
        let db = devsvc::test_database().await.unwrap();
        let redis = devsvc::test_redis().await.unwrap();
        let upstream = Hanging::start();
        let env: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), db.url().to_owned()),
            ("REDIS_URL".into(), redis.url().to_owned()),
            ("REDIS_PREFIX".into(), redis.prefix().trim_end_matches(':').to_owned()),
            ("REDIS_ALLOW_VOLATILE".into(), "true".into()),
            ("SYNC_SOURCE_URL".into(), format!("http://127.0.0.1:{}", upstream.port)),
            ("SYNC_HTTP_TIMEOUT_MS".into(), "120000".into()),
            // A 3 s lease: the worker's heartbeat (a third of it) notices a cancel within 1 s.
            ("QUEUE_LEASE_SECS".into(), "3".into()),
            ("MAIL_DIR".into(), logs.path().join("mail").display().to_string()),
            // The CLI prints its token on stdout, with the log: keep the log quiet there.
            ("LOG".into(), "warn".into()),
        ];
        let cli = |args: &[&str]| {
            spec_server(args).env_remove("SMTP_URL").envs(env.iter().map(|(k, v)| (k, v))).output().unwrap()
        };
        cli(&["migrate"]);
        let admin_token = cli(&["token", "issue", "--name", "admin", "--scope", "admin"]);
        let reader_token = cli(&["token", "issue", "--name", "reader", "--scope", "tasks:read"]);
        for t in [&admin_token, &reader_token] {
            assert!(t.starts_with("sk_") && !t.contains(char::is_whitespace), "not a token: {t:?}");
        }
        let port = free_port();
        let mut server = spec_server(&["serve"])
            .env_remove("SMTP_URL")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .log_to(logs.path().join("server.log"))
            .spawn()
            .unwrap();
        server.wait_ready(Ready::Probe(&mut || http_ok(port)), START_TIMEOUT).unwrap();
        let mut worker = spec_server(&["worker"])
            .env_remove("SMTP_URL")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LOG", "warn,spec_server::worker=info")
            .log_to(logs.path().join("worker.log"))
            .spawn()
            .unwrap();
        worker.wait_ready(Ready::LogLine("worker started"), START_TIMEOUT).unwrap();
        Deployment {
            worker,
            server,
            base: format!("http://127.0.0.1:{port}"),
            admin_token: admin_token.trim().to_owned(),
            reader_token: reader_token.trim().to_owned(),
            http: reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap(),
            _upstream: upstream,
            _db: db,
            _logs: logs,
        }
    }

    /// `METHOD /api/v1<path>` with `token` (none when empty): status and JSON body.
    pub async fn call_as(&self, token: &str, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self.http.request(method, format!("{}/api/v1{path}", self.base));
        if !token.is_empty() {
            req = req.header("token", token);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{path}: not JSON: {text}")))
    }

    pub async fn call(&self, method: &str, path: &str) -> (u16, Value) {
        self.call_as(&self.admin_token, method, path, None).await
    }

    /// Submits a task (`/tasks/email` or `/tasks/sync`) as the admin (who may do anything).
    pub async fn submit(&self, kind: &str, priority: &str) -> String {
        let body = match kind {
            "email" => {
                json!({"to": "ops@example.com", "subject": "hi", "body": "your code is 424242", "priority": priority})
            }
            _ => {
                json!({"sync_type": "sim_status", "start_date": "2025-01-01", "end_date": "2025-01-02", "priority": priority})
            }
        };
        let (s, b) = self.call_as(&self.admin_token, "POST", &format!("/tasks/{kind}"), Some(&body)).await;
        assert_eq!(s, 200, "{b}");
        b["data"]["task_id"].as_str().unwrap().to_owned()
    }

    /// `getAdminTask`'s `data`: the task in `task`, its redacted `payload`, `redacted`.
    pub async fn admin_task(&self, id: &str) -> Value {
        let (s, b) = self.call("GET", &format!("/admin/tasks/{id}")).await;
        assert_eq!(s, 200, "{b}");
        b["data"].clone()
    }

    pub async fn task(&self, id: &str) -> Value {
        self.admin_task(id).await["task"].clone()
    }

    /// Polls the task until `pred` holds of it.
    pub async fn wait_task(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + POLL_TIMEOUT;
        loop {
            let t = self.task(id).await;
            if pred(&t) {
                return t;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "task {id} never {what}: {t}\nworker log:\n{}\nserver log:\n{}",
                self.worker.log_tail(),
                self.server.log_tail()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A dead task: a sync task the worker runs (its upstream hangs), cancelled.
    pub async fn dead_task(&self, priority: &str) -> String {
        let id = self.submit("sync", priority).await;
        self.wait_task(&id, "became active", |t| t["state"] == "active").await;
        let (s, b) = self.call("POST", &format!("/admin/tasks/{id}/cancel")).await;
        assert_eq!(s, 200, "{b}");
        id
    }

    /// Every id of `state` (and `priority`, if not empty), page by page of `limit`.
    pub async fn all_pages(&self, state: &str, priority: &str, limit: u32) -> (Vec<String>, u64, usize) {
        let mut ids = Vec::new();
        let mut cursor: Option<String> = None;
        let mut pages = 0;
        loop {
            let mut q = format!("/admin/tasks?state={state}&limit={limit}");
            if !priority.is_empty() {
                q.push_str(&format!("&priority={priority}"));
            }
            if let Some(c) = &cursor {
                // Cursors are made of `[a-z0-9.-]`: nothing to escape.
                q.push_str(&format!("&cursor={c}"));
            }
            let (s, b) = self.call("GET", &q).await;
            assert_eq!(s, 200, "{q}: {b}");
            pages += 1;
            let total = b["data"]["total"].as_u64().unwrap();
            let tasks = b["data"]["tasks"].as_array().unwrap();
            assert!(tasks.len() <= limit as usize);
            ids.extend(tasks.iter().map(|t| t["task_id"].as_str().unwrap().to_owned()));
            match b["data"]["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => return (ids, total, pages),
            }
            assert!(pages < 1000, "paging does not end");
        }
    }
}

/// Polls the log of `p` until a line contains `needle`.
async fn wait_log(p: &Launched, needle: &str) {
    let deadline = tokio::time::Instant::now() + POLL_TIMEOUT;
    while !p.log().contains(needle) {
        assert!(tokio::time::Instant::now() < deadline, "no {needle:?} in the log of {}:\n{}", p.name(), p.log_tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_actions_over_the_real_binaries() {
    let d = Deployment::start().await;

    // Authentication before scope: no token is a 401, a token without `admin` a 403.
    let (s, b) = d.call_as("", "GET", "/admin/queue/stats", None).await;
    assert_eq!((s, b["code"].clone()), (401, json!(1002)));
    let (s, b) = d.call_as(&d.reader_token, "GET", "/admin/queue/stats", None).await;
    assert_eq!((s, b["code"].clone(), b["data"]["required"].clone()), (403, json!(1018), json!(["admin"])));
    let (s, b) = d.call_as(&d.reader_token, "POST", "/admin/queues/low/pause", None).await;
    assert_eq!(s, 403, "{b}");

    let (s, b) = d.call("GET", "/admin/queue/stats").await;
    assert_eq!(s, 200, "{b}");
    let prios: Vec<_> = b["data"]["queues"].as_array().unwrap().iter().map(|q| q["priority"].clone()).collect();
    assert_eq!(prios, vec![json!("critical"), json!("default"), json!("low")]);

    // Cancel a task the worker is running: dead at once; the worker's heartbeat finds its
    // lease token stale and cancels the handler, whose report then changes nothing.
    let id = d.submit("sync", "critical").await;
    let running = d.wait_task(&id, "became active", |t| t["state"] == "active").await;
    assert_eq!(running["attempts"], 1);
    let (ids, total, _) = d.all_pages("active", "", 10).await;
    assert_eq!((ids.clone(), total), (vec![id.clone()], 1), "the active index lists it");
    let (s, b) = d.call("POST", &format!("/admin/tasks/{id}/cancel")).await;
    assert_eq!((s, b["data"]["state"].clone()), (200, json!("dead")), "{b}");
    wait_log(&d.worker, "lease lost while running: cancelling the handler").await;
    let t = d.task(&id).await;
    assert_eq!((t["state"].clone(), t["last_error"].clone()), (json!("dead"), json!("cancelled by an administrator")));
    assert_eq!(t["attempts"], 1);
    let (s, b) = d.call("POST", &format!("/admin/tasks/{id}/cancel")).await;
    assert_eq!((s, b["code"].clone(), b["data"]["state"].clone()), (409, json!(1019), json!("dead")));
    let (s, b) = d.call("DELETE", &format!("/admin/tasks/{id}")).await;
    assert_eq!((s, b["code"].clone()), (409, json!(1019)));
    let (dead, total, _) = d.all_pages("dead", "critical", 5).await;
    assert_eq!((dead, total), (vec![id.clone()], 1));

    // Pause critical, then retry the dead task: pending again, attempts reset, history kept,
    // and no worker takes it while the priority is paused.
    let (s, b) = d.call("POST", "/admin/queues/critical/pause").await;
    assert_eq!((s, b["data"].clone()), (200, json!({"priority": "critical", "pending": 0, "paused": true})));
    let (s, b) = d.call("POST", &format!("/admin/tasks/{id}/retry")).await;
    assert_eq!(
        (s, b["data"]["state"].clone(), b["data"]["attempts"].clone()),
        (200, json!("pending"), json!(0)),
        "{b}"
    );
    let (s, b) = d.call("POST", &format!("/admin/tasks/{id}/retry")).await;
    assert_eq!((s, b["data"]["state"].clone()), (409, json!("pending")));
    assert!(d.all_pages("dead", "", 5).await.0.is_empty(), "it left the dead list");
    let t = d.task(&id).await;
    assert_eq!(t["errors"].as_array().unwrap().len(), 1, "{t}");
    // Absence over time: three heartbeats' worth of chances for a worker to take it.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(d.task(&id).await["state"], "pending", "a paused priority is not dequeued");

    // Delete it while pending: gone, and a second delete is a 404.
    let (s, b) = d.call("DELETE", &format!("/admin/tasks/{id}")).await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = d.call("DELETE", &format!("/admin/tasks/{id}")).await;
    assert_eq!((s, b["code"].clone()), (404, json!(1013)));
    let (s, _) = d.call("GET", &format!("/admin/tasks/{id}")).await;
    assert_eq!(s, 404);

    // Paging the pending list of the paused priority: every task once, in FIFO order.
    let mut submitted = Vec::new();
    for _ in 0..7 {
        submitted.push(d.submit("email", "critical").await);
    }
    let (pages_ids, total, pages) = d.all_pages("pending", "critical", 3).await;
    assert_eq!((pages_ids, total, pages), (submitted.clone(), 7, 3));
    let (all, _, _) = d.all_pages("pending", "", 100).await;
    assert_eq!(all, submitted, "without a priority filter too");
    // The payload as the handler reads it, its body redacted.
    let t = d.admin_task(&submitted[0]).await;
    assert_eq!(
        (t["payload"]["body"].clone(), t["payload"]["to"].clone()),
        (json!("[redacted]"), json!("ops@example.com"))
    );
    assert_eq!(t["redacted"], json!(["/body"]));
    // A cursor that was not issued for this listing is a 400 (code 1016).
    for q in [
        "state=pending&cursor=garbage",
        "state=dead&cursor=pending.critical.0.3",
        "state=pending&priority=low&cursor=pending.critical.0.3",
    ] {
        let (s, b) = d.call("GET", &format!("/admin/tasks?{q}")).await;
        assert_eq!((s, b["code"].clone()), (400, json!(1016)), "{q}: {b}");
    }
    let (s, b) = d.call("GET", "/admin/tasks?state=pending&limit=101").await;
    assert_eq!((s, b["code"].clone()), (400, json!(1001)));

    // Resume: the worker takes them all; the completed index pages them once each.
    let (s, b) = d.call("POST", "/admin/queues/critical/resume").await;
    assert_eq!((s, b["data"]["paused"].clone()), (200, json!(false)));
    for id in &submitted {
        d.wait_task(id, "completed", |t| t["state"] == "completed").await;
    }
    let (done, total, pages) = d.all_pages("completed", "", 2).await;
    let unique: HashSet<_> = done.iter().collect();
    assert_eq!((done.len(), unique.len(), total, pages), (7, 7, 7, 4), "{done:?}");
    let (s, b) = d.call("DELETE", &format!("/admin/tasks/{}", submitted[0])).await;
    assert_eq!((s, b["data"]["state"].clone()), (409, json!("completed")));

    // Unknown ids.
    let unknown = uuid::Uuid::new_v4();
    for (m, suffix) in [("GET", ""), ("DELETE", ""), ("POST", "/retry"), ("POST", "/cancel")] {
        let (s, b) = d.call(m, &format!("/admin/tasks/{unknown}{suffix}")).await;
        assert_eq!((s, b["code"].clone()), (404, json!(1013)), "{m} {suffix}");
    }
    let (s, _) = d.call("POST", "/admin/queues/urgent/pause").await;
    assert_eq!(s, 400);
}

/// The dashboard's files are served by the binary (no network needed) at `/admin`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_is_served_by_the_binary() {
    let d = Deployment::start().await;
    for (path, kind) in
        [("/admin", "text/html"), ("/admin/admin.js", "text/javascript"), ("/admin/admin.css", "text/css")]
    {
        let r = d.http.get(format!("{}{path}", d.base)).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(kind), "{path}: {ct}");
        assert!(r.headers().contains_key("content-security-policy"));
    }
    // Not a page: the API's fallback answers in the contract's envelope.
    let r = d.http.get(format!("{}/admin/nothing", d.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
}
