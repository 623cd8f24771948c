//! `/metrics` on `METRICS_ADDR`: the `serve` and `worker` binaries over private PostgreSQL and
//! Redis, a few requests and one email task, then each scrape checked family by family.

#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    time::{Duration, Instant},
};

use spec_server::devsvc::{PrivatePostgres, PrivateRedis, Ready};

use crate::support::spec_server;

const START_TIMEOUT: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
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

/// The scrape's samples: `name{labels} value` lines (comments dropped), possibly chunked
/// (poem streams bodies), so chunk-size lines that are not samples are ignored too.
fn scrape(port: u16) -> Vec<(String, f64)> {
    let (status, body) = exchange(port, "GET", "/metrics", &[], "").expect("metrics answers");
    assert_eq!(status, 200, "{body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && l.contains(' '))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect()
}

fn value(samples: &[(String, f64)], series: &str) -> Option<f64> {
    samples.iter().find(|(s, _)| s == series).map(|(_, v)| *v)
}

fn has_family(samples: &[(String, f64)], prefix: &str) -> bool {
    samples.iter().any(|(s, _)| s.starts_with(prefix))
}

#[test]
fn serve_and_worker_expose_metrics() {
    let logs = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start().unwrap();
    let redis = PrivateRedis::start().unwrap();
    let env = [
        ("DATABASE_URL".to_owned(), pg.url()),
        ("REDIS_URL".to_owned(), redis.url()),
        ("REDIS_PREFIX".to_owned(), format!("metrics-{}", std::process::id())),
        ("REDIS_ALLOW_VOLATILE".to_owned(), "true".to_owned()),
        ("LOG".to_owned(), "warn,spec_server::worker=info".to_owned()),
        ("MAIL_DIR".to_owned(), logs.path().join("mail").display().to_string()),
    ];
    let envs = || env.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    spec_server(&["migrate"]).envs(envs()).output().unwrap();
    let token = spec_server(&["token", "issue", "--name", "metrics"]).envs(envs()).output().unwrap();
    let token = token.trim();

    let (port, metrics_port) = (free_port(), free_port());
    let mut server = spec_server(&["serve"])
        .envs(envs())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("METRICS_ADDR", format!("127.0.0.1:{metrics_port}"))
        .log_to(logs.path().join("server.log"))
        .spawn()
        .unwrap();
    let mut up = || exchange(port, "GET", "/api/v1/health", &[], "").is_some_and(|(s, _)| s == 200);
    server.wait_ready(Ready::Probe(&mut up), START_TIMEOUT).unwrap();

    // Not on the public port.
    assert_eq!(exchange(port, "GET", "/metrics", &[], "").map(|(s, _)| s), Some(404));
    assert_eq!(exchange(port, "GET", "/api/v1/users", &[], "").map(|(s, _)| s), Some(401));
    assert_eq!(exchange(port, "GET", "/api/v1/no-such-route", &[], "").map(|(s, _)| s), Some(404));
    let email = r#"{"to":"a@example.com","subject":"hi","body":"metrics test"}"#;
    let (status, body) = exchange(port, "POST", "/api/v1/tasks/email", &[("token", token)], email).unwrap();
    assert_eq!(status, 200, "{body}");
    // A read on the shared pipelined connections (no user was created: a 404 all the same).
    let (status, body) = exchange(port, "GET", "/api/v1/users/1", &[("token", token)], "").unwrap();
    assert_eq!(status, 404, "{body}");

    let s = scrape(metrics_port);
    assert_eq!(
        value(&s, r#"spec_server_http_requests_total{operation="healthCheck",status="200"}"#),
        Some(1.0),
        "{s:?}"
    );
    assert_eq!(value(&s, r#"spec_server_http_requests_total{operation="listUsers",status="401"}"#), Some(1.0));
    assert_eq!(value(&s, r#"spec_server_http_requests_total{operation="unknown",status="404"}"#), Some(2.0));
    assert_eq!(value(&s, r#"spec_server_http_requests_total{operation="submitEmailTask",status="200"}"#), Some(1.0));
    assert_eq!(value(&s, r#"spec_server_http_request_duration_seconds_count{operation="healthCheck"}"#), Some(1.0));
    assert_eq!(
        value(&s, r#"spec_server_http_request_duration_seconds_bucket{le="+Inf",operation="listUsers"}"#),
        Some(1.0)
    );
    // A series for every operation from the start, so rates need no first request.
    assert_eq!(value(&s, r#"spec_server_http_requests_total{operation="deleteUser",status="200"}"#), Some(0.0));
    for pool in [r#"pool="primary",backend="postgres""#, r#"pool="main",backend="redis""#] {
        for family in ["connections", "idle_connections", "max_connections"] {
            let series = format!("spec_server_pool_{family}{{{pool}}}");
            assert!(value(&s, &series).is_some(), "{series} missing: {s:?}");
        }
    }
    assert!(value(&s, r#"spec_server_pool_waiting{pool="primary",backend="postgres"}"#).is_some());
    assert_eq!(value(&s, r#"spec_server_http_requests_total{operation="getUserById",status="404"}"#), Some(1.0));
    assert_eq!(value(&s, r#"spec_server_pool_pipelined_connections{pool="primary",backend="postgres"}"#), Some(1.0));
    assert!(value(&s, r#"spec_server_pool_checkout_wait_seconds{pool="main",backend="redis"}"#).is_some());
    assert_eq!(value(&s, "spec_server_queue_stats_up"), Some(1.0));
    // No worker yet: the task waits.
    assert_eq!(value(&s, r#"spec_server_queue_pending{priority="default"}"#), Some(1.0), "{s:?}");
    assert!(value(&s, r#"spec_server_queue_pending{priority="critical"}"#).is_some());
    for state in ["active", "scheduled", "retry", "dead", "completed"] {
        assert!(value(&s, &format!("spec_server_queue_tasks{{state=\"{state}\"}}")).is_some(), "{state}");
    }
    for state in ["completed", "failed", "dead", "reaped_unstarted"] {
        assert!(value(&s, &format!("spec_server_queue_outcomes{{state=\"{state}\"}}")).is_some(), "{state}");
    }
    assert!(value(&s, "spec_server_queue_oldest_pending_age_seconds").is_some_and(|age| age >= 0.0));
    assert_eq!(value(&s, "spec_server_queue_enqueued_total"), Some(1.0));
    // The token's verification read PostgreSQL through the store.
    assert!(value(&s, "spec_server_pg_checkout_wait_seconds_count").is_some_and(|n| n >= 1.0), "{s:?}");

    let worker_metrics = free_port();
    let mut worker = spec_server(&["worker"])
        .envs(envs())
        .env("METRICS_ADDR", format!("127.0.0.1:{worker_metrics}"))
        .log_to(logs.path().join("worker.log"))
        .spawn()
        .unwrap();
    worker.wait_ready(Ready::LogLine("worker started"), START_TIMEOUT).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let w = scrape(worker_metrics);
        let ran = value(&w, r#"spec_server_task_handler_duration_seconds_count{kind="email"}"#);
        if ran == Some(1.0) {
            assert!(has_family(&w, "spec_server_task_handler_duration_seconds_bucket{"));
            assert!(value(&w, r#"spec_server_pool_connections{pool="primary",backend="postgres"}"#).is_some());
            // Counted by whichever process reaps; none expired here.
            assert_eq!(value(&w, "spec_server_queue_lease_reaps_total"), Some(0.0));
            break;
        }
        assert!(Instant::now() < deadline, "the email task did not run: {w:?}\n{}", worker.log_tail());
        std::thread::sleep(Duration::from_millis(100));
    }
    // The server's cached stats expire within a second; then the task shows as processed.
    std::thread::sleep(Duration::from_millis(1100));
    let s = scrape(metrics_port);
    assert_eq!(value(&s, r#"spec_server_queue_outcomes{state="completed"}"#), Some(1.0), "{s:?}");
    assert_eq!(value(&s, r#"spec_server_queue_pending{priority="default"}"#), Some(0.0));
    assert_eq!(value(&s, "spec_server_queue_oldest_pending_age_seconds"), Some(0.0));
    server.ensure_running().unwrap();
    worker.ensure_running().unwrap();
}
