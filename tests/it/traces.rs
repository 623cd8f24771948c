//! Traces end to end: the `serve` and `worker` binaries over private PostgreSQL and Redis,
//! exporting to an OTLP/HTTP collector in this test (protobuf, decoded with
//! opentelemetry-proto). One `POST /tasks/email` sent with a `traceparent` must come back as one
//! trace — the operation's span, its enqueue and the worker's run of the task — and a
//! `getUserById` as its operation span over the store's `users.get` statement; the trace id is
//! in the access line (text logs) and in the worker's JSON log lines.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use opentelemetry_proto::tonic::{
    collector::trace::v1::ExportTraceServiceRequest,
    common::v1::{AnyValue, KeyValue, any_value},
};
use prost::Message;
use spec_server::devsvc::{PrivatePostgres, PrivateRedis, Ready};

use crate::support::spec_server;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest export the collector reads (the server's batches are far smaller).
const MAX_EXPORT_BYTES: usize = 16 * 1024 * 1024;

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// One exported span, flattened out of its resource and scope.
#[derive(Debug, Clone)]
struct Span {
    service: String,
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    kind: i32,
    attributes: BTreeMap<String, String>,
}

fn text(v: &Option<AnyValue>) -> String {
    match v.as_ref().and_then(|v| v.value.as_ref()) {
        Some(any_value::Value::StringValue(s)) => s.clone(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        other => format!("{other:?}"),
    }
}

fn attributes(kvs: &[KeyValue]) -> BTreeMap<String, String> {
    kvs.iter().map(|kv| (kv.key.clone(), text(&kv.value))).collect()
}

/// An OTLP/HTTP collector: `POST /v1/traces` with a protobuf `ExportTraceServiceRequest`,
/// answered 200 with an empty (all-accepted) response; one request per connection.
struct Collector {
    port: u16,
    spans: Arc<Mutex<Vec<Span>>>,
}

impl Collector {
    fn start() -> Collector {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let sink = spans.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let sink = sink.clone();
                std::thread::spawn(move || {
                    if let Err(e) = serve_export(conn, &sink) {
                        eprintln!("collector: {e}");
                    }
                });
            }
        });
        Collector { port, spans }
    }

    fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// Polls until `done` holds for the collected spans.
    fn wait_for(&self, what: &str, mut done: impl FnMut(&[Span]) -> bool) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let spans = self.spans();
            if done(&spans) {
                return spans;
            }
            assert!(Instant::now() < deadline, "no {what} within 30 s; collected: {spans:#?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn serve_export(conn: TcpStream, sink: &Mutex<Vec<Span>>) -> Result<(), String> {
    conn.set_read_timeout(Some(Duration::from_secs(10))).map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(conn.try_clone().map_err(|e| e.to_string())?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).map_err(|e| e.to_string())?;
    let mut length = 0usize;
    let mut content_type = String::new();
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).map_err(|e| e.to_string())?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            match k.trim().to_ascii_lowercase().as_str() {
                "content-length" => length = v.trim().parse().map_err(|_| format!("bad length {v:?}"))?,
                "content-type" => content_type = v.trim().to_owned(),
                _ => {}
            }
        }
    }
    if length > MAX_EXPORT_BYTES {
        return Err(format!("export of {length} bytes"));
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body).map_err(|e| e.to_string())?;
    let mut conn = conn;
    if !request_line.starts_with("POST /v1/traces ") || content_type != "application/x-protobuf" {
        let _ = conn.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        return Err(format!("unexpected {request_line:?} ({content_type})"));
    }
    let export = ExportTraceServiceRequest::decode(body.as_slice()).map_err(|e| e.to_string())?;
    let mut got = Vec::new();
    for rs in export.resource_spans {
        let resource = rs.resource.map(|r| attributes(&r.attributes)).unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for ss in rs.scope_spans {
            for s in ss.spans {
                got.push(Span {
                    service: service.clone(),
                    trace_id: hex::encode(&s.trace_id),
                    span_id: hex::encode(&s.span_id),
                    parent: hex::encode(&s.parent_span_id),
                    name: s.name,
                    kind: s.kind,
                    attributes: attributes(&s.attributes),
                });
            }
        }
    }
    sink.lock().unwrap().extend(got);
    conn.write_all(
        b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
    )
    .map_err(|e| e.to_string())
}

/// The spans of one trace as an indented tree (children under their parent, by name).
fn tree(spans: &[Span], trace_id: &str) -> String {
    let of_trace: Vec<&Span> = spans.iter().filter(|s| s.trace_id == trace_id).collect();
    let ids: Vec<&str> = of_trace.iter().map(|s| s.span_id.as_str()).collect();
    let mut out = format!("trace {trace_id}\n");
    fn walk(out: &mut String, all: &[&Span], parent: &str, depth: usize) {
        let mut children: Vec<&&Span> = all.iter().filter(|s| s.parent == parent).collect();
        children.sort_by(|a, b| a.name.cmp(&b.name));
        for s in children {
            out.push_str(&format!(
                "{}{} [{}] span {} ({})\n",
                "  ".repeat(depth),
                s.name,
                s.service,
                s.span_id,
                kind(s.kind)
            ));
            walk(out, all, &s.span_id, depth + 1);
        }
    }
    // Roots: no parent, or a parent outside this export (the caller's span).
    let mut roots: Vec<&str> =
        of_trace.iter().filter(|s| !ids.contains(&s.parent.as_str())).map(|s| s.parent.as_str()).collect();
    roots.sort();
    roots.dedup();
    for root in roots {
        if !root.is_empty() {
            out.push_str(&format!("(remote parent {root})\n"));
        }
        walk(&mut out, &of_trace, root, 1);
    }
    out
}

fn kind(k: i32) -> &'static str {
    ["unspecified", "internal", "server", "client", "producer", "consumer"].get(k as usize).copied().unwrap_or("?")
}

/// One HTTP/1.1 exchange over a bare connection: the status and the body.
fn exchange(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        req.push_str(&format!("content-type: application/json\r\ncontent-length: {}\r\n", body.len()));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).ok()?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).ok()?;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text.get(9..12)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned());
    Some((status, body))
}

fn find<'a>(spans: &'a [Span], trace_id: &str, name: &str) -> Option<&'a Span> {
    spans.iter().find(|s| s.trace_id == trace_id && s.name == name)
}

#[test]
fn one_trace_from_the_request_through_the_queue_to_the_worker() {
    let logs = tempfile::tempdir().unwrap();
    let collector = Collector::start();
    let pg = PrivatePostgres::start().unwrap();
    let redis = PrivateRedis::start().unwrap();
    let env = [
        ("DATABASE_URL".to_owned(), pg.url()),
        ("REDIS_URL".to_owned(), redis.url()),
        ("REDIS_PREFIX".to_owned(), format!("traces-{}", std::process::id())),
        ("REDIS_ALLOW_VOLATILE".to_owned(), "true".to_owned()),
        ("LOG".to_owned(), "info,tokio_postgres=warn".to_owned()),
        ("MAIL_DIR".to_owned(), logs.path().join("mail").display().to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(), format!("http://127.0.0.1:{}", collector.port)),
        // Batches leave every 100 ms instead of every 5 s, so the test waits less.
        ("OTEL_BSP_SCHEDULE_DELAY".to_owned(), "100".to_owned()),
    ];
    let envs = || env.iter().map(|(k, v)| (k.as_str(), v.as_str()));

    // An unknown LOG_FORMAT is a start-up error naming the setting.
    let refused = spec_server(&["migrate"]).envs(envs()).env("LOG_FORMAT", "xml").output().unwrap_err().to_string();
    assert!(refused.contains("LOG_FORMAT") || refused.contains("log-format"), "{refused}");
    assert!(refused.contains("xml"), "{refused}");

    spec_server(&["migrate"]).envs(envs()).output().unwrap();
    let token = spec_server(&["token", "issue", "--name", "traces"]).envs(envs()).output().unwrap();
    let token = token.trim();

    let port = free_port();
    let mut server = spec_server(&["serve"])
        .envs(envs())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .log_to(logs.path().join("server.log"))
        .spawn()
        .unwrap();
    let mut up = || exchange(port, "GET", "/api/v1/health", &[], "").is_some_and(|(s, _)| s == 200);
    server.wait_ready(Ready::Probe(&mut up), START_TIMEOUT).unwrap();
    let mut worker = spec_server(&["worker"])
        .envs(envs())
        .env("LOG_FORMAT", "json")
        .log_to(logs.path().join("worker.log"))
        .spawn()
        .unwrap();
    worker.wait_ready(Ready::LogLine("worker started"), START_TIMEOUT).unwrap();

    // The caller's trace: the server's span must continue it.
    let caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let traceparent = format!("00-{caller_trace}-{caller_span}-01");
    let email = r#"{"to":"a@example.com","subject":"hi","body":"traces test"}"#;
    let (status, body) =
        exchange(port, "POST", "/api/v1/tasks/email", &[("token", token), ("traceparent", &traceparent)], email)
            .unwrap();
    assert_eq!(status, 200, "{body}");

    let spans = collector.wait_for("worker span of the email task", |spans| {
        spans.iter().any(|s| s.trace_id == caller_trace && s.name == "task.handle email")
    });
    let op = find(&spans, caller_trace, "submitEmailTask").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!((op.parent.as_str(), op.kind, op.service.as_str()), (caller_span, 2, "spec-server"), "{op:?}");
    assert_eq!(op.attributes.get("http.response.status_code").map(String::as_str), Some("200"), "{op:?}");
    assert_eq!(op.attributes.get("http.route").map(String::as_str), Some("/tasks/email"), "{op:?}");
    let enqueue = find(&spans, caller_trace, "task.enqueue").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!((enqueue.parent.as_str(), enqueue.kind), (op.span_id.as_str(), 4), "{enqueue:?}");
    let script = find(&spans, caller_trace, "queue.enqueue").unwrap_or_else(|| panic!("{spans:#?}"));
    assert_eq!(script.parent, enqueue.span_id, "{script:?}");
    let handled = find(&spans, caller_trace, "task.handle email").unwrap();
    assert_eq!((handled.parent.as_str(), handled.kind), (enqueue.span_id.as_str(), 5), "{handled:?}");
    assert_eq!(handled.service, "spec-server-worker");
    // The task's own ack, batched, is part of the worker's span.
    let acked = collector.wait_for("the task's ack", |spans| {
        spans.iter().any(|s| s.trace_id == caller_trace && s.name == "queue.ack" && s.parent == handled.span_id)
    });
    println!("POST /tasks/email, one trace across server and worker:\n{}", tree(&acked, caller_trace));

    // A users call: the operation's span over the store's statement.
    let user = r#"{"username":"traced","email":"traced@example.com","password":"password123"}"#;
    let (status, body) = exchange(port, "POST", "/api/v1/users", &[("token", token)], user).unwrap();
    assert_eq!(status, 200, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["data"]["id"].as_i64().unwrap();
    // An invalid traceparent is ignored: a trace of its own, never an error.
    let path = format!("/api/v1/users/{id}");
    let bad = [("token", token), ("traceparent", "00-not-a-trace-01")];
    let (status, body) = exchange(port, "GET", &path, &bad, "").unwrap();
    assert_eq!(status, 200, "{body}");
    let spans = collector.wait_for("getUserById and its SQL", |spans| {
        spans.iter().any(|g| {
            g.name == "getUserById"
                && spans.iter().any(|s| s.name == "users.get" && s.parent == g.span_id && s.trace_id == g.trace_id)
        })
    });
    let get = spans.iter().find(|s| s.name == "getUserById").unwrap();
    assert!(get.parent.is_empty(), "{get:?}");
    assert_ne!(get.trace_id, caller_trace);
    let sql = find(&spans, &get.trace_id, "users.get").unwrap();
    assert_eq!((sql.kind, sql.attributes.get("db.system.name").map(String::as_str)), (3, Some("postgresql")));
    println!("GET /users/{{id}}:\n{}", tree(&spans, &get.trace_id));

    // The trace id in the access line (text) and in the worker's lines (JSON).
    let server_log = server.log();
    let access = server_log
        .lines()
        .find(|l| l.contains("access method=POST path=/api/v1/tasks/email"))
        .unwrap_or_else(|| panic!("{server_log}"));
    assert!(access.contains(&format!("trace_id={caller_trace}")), "{access}");
    println!("the server's access line:\n{access}");
    let worker_log = worker.log();
    let line = worker_log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|l| l["trace_id"] == caller_trace)
        .unwrap_or_else(|| panic!("no JSON line with the trace id:\n{worker_log}"));
    assert_eq!(line["span_id"], handled.span_id.as_str(), "{line}");
    println!("a worker line (LOG_FORMAT=json):\n{line}");
    assert!(line["timestamp"].is_string() && line["level"] == "INFO", "{line}");
    assert!(
        worker_log.lines().all(|l| l.trim().is_empty() || serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "every worker line is JSON:\n{worker_log}"
    );
    server.ensure_running().unwrap();
    worker.ensure_running().unwrap();
}
