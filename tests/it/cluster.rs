//! The real binary on a private Redis Cluster (3 masters with a replica each, started from
//! the local redis-server): two `serve` processes and a `worker` with
//! `REDIS_URL=redis+cluster://…`. Email and sync tasks submitted over HTTP complete; a token
//! revoked through the CLI is refused at once by a server that had it in its process-local
//! cache (the revocation travels over sharded pub/sub); `/health` reports Redis up; and after
//! the master holding the queue is killed and its replica promoted, every task acknowledged
//! before (under `WAIT 1`) completes, a submission no replica can acknowledge is refused, and
//! once the old master is back as a replica submissions work again.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{
    collections::HashMap,
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    time::{Duration, Instant},
};

use poem::{Response, Route, Server, handler, listener::Acceptor, listener::Listener, web::Query};
use serde_json::{Value, json};
use spec_server::{
    db::tokens,
    devsvc::{Launched, PrivateRedisCluster, Ready, test_database},
};

use crate::support::spec_server;

pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap().local_addr().unwrap().port()
}

/// One HTTP/1.1 request over a bare connection: (status, JSON body or Null).
pub(crate) fn http(
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let auth = token.map(|t| format!("token: {t}\r\n")).unwrap_or_default();
    write!(
        s,
        "{method} /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let status = text.get(9..12)?.parse().ok()?;
    let json = text.split_once("\r\n\r\n").and_then(|(_, b)| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
    Some((status, json))
}

/// `spec-server serve` on a free port, ready once `/health` answers.
pub(crate) fn start_server(env: &[(String, String)], dir: &Path, name: &str) -> (Launched, u16) {
    let port = free_port();
    let mut server = spec_server(&["serve"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .log_to(dir.join(format!("{name}.log")))
        .spawn()
        .unwrap();
    let mut answers = || http(port, "GET", "/health", None, None).is_some();
    server.wait_ready(Ready::Probe(&mut answers), START_TIMEOUT).unwrap();
    (server, port)
}

/// `spec-server worker` with `env`, its log in `dir/<name>.log`.
pub(crate) fn start_worker(env: &[(String, String)], dir: &Path, name: &str) -> Launched {
    spec_server(&["worker"])
        .env_remove("SMTP_URL")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .log_to(dir.join(format!("{name}.log")))
        .spawn()
        .unwrap()
}

/// The deployment's settings: the database, the cluster, a fresh prefix, mail to `dir/mail`.
pub(crate) fn deployment_env(
    db_url: &str,
    cluster: &PrivateRedisCluster,
    dir: &Path,
    more: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = [
        ("DATABASE_URL", db_url.to_owned()),
        ("REDIS_URL", cluster.url()),
        ("REDIS_PREFIX", format!("cl{}", uuid::Uuid::new_v4().simple())),
        ("MAIL_DIR", dir.join("mail").display().to_string()),
        ("QUEUE_LEASE_SECS", "2".to_owned()),
        // Each submission waits for the queue master's replica (WAIT routed by the hash tag).
        ("REDIS_WAIT_REPLICAS", "1".to_owned()),
        ("REDIS_WAIT_TIMEOUT_MS", "1000".to_owned()),
        ("LOG", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    env.extend(more.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    env
}

/// Starts the cluster, or `None` (after saying why) where redis-server cannot run one.
pub(crate) async fn start_cluster() -> Option<PrivateRedisCluster> {
    match tokio::task::spawn_blocking(|| PrivateRedisCluster::start(3, 1)).await.unwrap() {
        Ok(c) => Some(c),
        // Only a missing redis-cli or a redis-server without cluster mode (it refuses the
        // cluster directives) skips; any other failure to build the cluster fails the test.
        Err(e) if format!("{e:#}").contains("could not be run") || format!("{e:#}").contains("Bad directive") => {
            println!("skipping the Redis Cluster test: redis-server/redis-cli cannot run a cluster here: {e:#}");
            None
        }
        Err(e) => panic!("starting the Redis Cluster: {e:#}"),
    }
}

/// The index of the master node owning `key`'s slot: the one node that answers a plain
/// (non-cluster) `TYPE key` instead of redirecting.
pub(crate) fn owner_of(cluster: &PrivateRedisCluster, key: &str) -> Option<usize> {
    cluster.nodes.iter().position(|n| {
        n.pid().is_some()
            && redis::Client::open(n.url())
                .and_then(|c| c.get_connection_with_timeout(Duration::from_millis(300)))
                .and_then(|mut conn| redis::cmd("TYPE").arg(key).query::<String>(&mut conn))
                .is_ok()
    })
}

pub(crate) fn wait_for(what: &str, timeout: Duration, logs: &[&Launched], mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            let logs: Vec<String> = logs.iter().map(|l| format!("{}:\n{}", l.name(), l.log_tail())).collect();
            panic!("timed out after {timeout:?} waiting until {what}\n{}", logs.join("\n---\n"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A sync upstream with one page of three records.
#[handler]
pub(crate) fn records(Query(_q): Query<HashMap<String, String>>) -> Response {
    let records: Vec<_> = (0..3)
        .map(|i| json!({ "id": format!("r{i}"), "updated_at": "2025-11-01T00:00:00Z", "data": { "i": i } }))
        .collect();
    Response::builder()
        .content_type("application/json")
        .body(json!({ "records": records, "next_cursor": null }).to_string())
}

fn submit(server: (&Launched, u16), token: &str, path: &str, body: Value) -> String {
    let (status, resp) = http(server.1, "POST", path, Some(token), Some(&body)).unwrap();
    assert_eq!(status, 200, "{path}: {resp}\n{}", server.0.log_tail());
    resp["data"]["task_id"].as_str().unwrap().to_owned()
}

pub(crate) fn task_state(port: u16, token: &str, id: &str) -> Option<String> {
    let (_, resp) = http(port, "GET", &format!("/tasks/{id}"), Some(token), None)?;
    resp["data"]["state"].as_str().map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_worker_run_on_a_redis_cluster() {
    let started = Instant::now();
    let Some(cluster) = start_cluster().await else { return };
    println!("cluster up in {:?}", started.elapsed());
    let db = test_database().await.unwrap();
    let (_, token) = tokens::token_issue(db.pool(), "cluster", None, None).await.unwrap();
    let (_, doomed) = tokens::token_issue(db.pool(), "cluster-doomed", None, None).await.unwrap();

    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let upstream = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    let upstream_task = tokio::spawn(async move {
        let _ = Server::new_with_acceptor(acceptor).run(Route::new().at("/records", records)).await;
    });

    let dir = tempfile::tempdir().unwrap();
    let mail = dir.path().join("mail");
    let source = format!("http://{upstream}");
    // A local cache long enough that only the revocation message can explain a prompt refusal.
    let env = deployment_env(
        db.url(),
        &cluster,
        dir.path(),
        &[("SYNC_SOURCE_URL", &source), ("TOKEN_LOCAL_CACHE_MS", "600000")],
    );
    let env_clone = env.clone();
    let dir_path = dir.path().to_owned();
    let (a, b, worker) = tokio::task::spawn_blocking(move || {
        let (a, pa) = start_server(&env_clone, &dir_path, "serve-a");
        let (b, pb) = start_server(&env_clone, &dir_path, "serve-b");
        let worker = start_worker(&env_clone, &dir_path, "worker");
        ((a, pa), (b, pb), worker)
    })
    .await
    .unwrap();
    let ((a, pa), (b, pb)) = (a, b);
    let logs = [&a, &b, &worker];
    println!("servers and worker up at {:?}", started.elapsed());

    tokio::task::block_in_place(|| {
        let (status, health) = http(pa, "GET", "/health", None, None).unwrap();
        assert_eq!((status, health["redis"].as_str()), (200, Some("up")), "{health}");

        // Tasks submitted to either server complete.
        let email =
            submit((&a, pa), &token, "/tasks/email", json!({"to": "a@example.com", "subject": "s", "body": "b"}));
        let sync = submit(
            (&b, pb),
            &token,
            "/tasks/sync",
            json!({"sync_type": "sim_status", "start_date": "2025-11-01", "end_date": "2025-11-02", "priority": "critical"}),
        );
        for id in [&email, &sync] {
            wait_for(&format!("task {id} completed"), Duration::from_secs(20), &logs, || {
                task_state(pb, &token, id).as_deref() == Some("completed")
            });
        }
        assert!(mail.join(format!("{email}.eml")).is_file(), "the email was written to MAIL_DIR");
        println!("email and sync tasks completed at {:?}", started.elapsed());

        // Revocation over cluster pub/sub: B trusts `doomed` from its local cache (600 s)
        // once subscribed; only the message can make it refuse at once.
        wait_for("B subscribed to token revocations (sharded: Redis 7)", START_TIMEOUT, &logs, || {
            b.log().contains("subscribed to token revocations") && b.log().contains("sharded=true")
        });
        assert_eq!(http(pb, "GET", "/users", Some(&doomed), None).unwrap().0, 200);
        let out =
            spec_server(&["token", "revoke", "cluster-doomed"]).envs(env.iter().map(|(k, v)| (k, v))).output().unwrap();
        assert!(out.contains("revoked"), "{out}");
        let revoked_at = Instant::now();
        wait_for("B refuses the revoked token", Duration::from_secs(2), &logs, || {
            http(pb, "GET", "/users", Some(&doomed), None).is_some_and(|(s, _)| s == 401)
        });
        println!("revocation reached B after {:?}", revoked_at.elapsed());
        assert_eq!(http(pa, "GET", "/users", Some(&token), None).unwrap().0, 200, "other tokens still work");
    });

    // The settings check asks every master: one without persistence is named.
    let master = cluster.nodes.first().unwrap();
    let mut conn = redis::Client::open(master.url()).unwrap().get_connection().unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("appendonly").arg("no").query(&mut conn).unwrap();
    let _: () = redis::cmd("CONFIG").arg("SET").arg("save").arg("").query(&mut conn).unwrap();
    let mut refused = spec_server(&["worker"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .log_to(dir.path().join("refused.log"))
        .spawn()
        .unwrap();
    let status = refused.wait_exit(Duration::from_secs(20));
    let log = refused.log();
    assert!(status.is_some_and(|s| !s.success()), "a volatile master is refused: {log}");
    assert!(log.contains(&format!("on 127.0.0.1:{}: neither appendonly", master.port())), "{log}");

    println!("total {:?}", started.elapsed());
    drop((a, b, worker));
    upstream_task.abort();
    drop(cluster);
}

/// A master killed (SIGKILL) with acknowledged tasks on it: its replica takes over and every
/// task submitted before the kill (each acknowledged after `WAIT 1`) completes; with no
/// replica left a submission is refused; the old master, restarted, rejoins as a replica,
/// and submissions acknowledged by it work again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_acknowledged_task_is_lost_when_the_queue_master_fails_over() {
    let started = Instant::now();
    let Some(mut cluster) = start_cluster().await else { return };
    let db = test_database().await.unwrap();
    let (_, token) = tokens::token_issue(db.pool(), "failover", None, None).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let env = deployment_env(db.url(), &cluster, dir.path(), &[]);
    let prefix = env.iter().find(|(k, _)| k == "REDIS_PREFIX").unwrap().1.clone();
    let queue_key = format!("{{{prefix}:queue}}");
    tokio::task::block_in_place(|| {
        let (a, pa) = start_server(&env, dir.path(), "serve");
        let email = |n: usize| json!({"to": "a@example.com", "subject": format!("s{n}"), "body": "b"});
        // No worker yet: the tasks wait in the queue, on its master.
        let ids: Vec<String> = (0..20).map(|n| submit((&a, pa), &token, "/tasks/email", email(n))).collect();
        let master = owner_of(&cluster, &queue_key).expect("a master owns the queue's slot");
        let pid = cluster.nodes[master].pid().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()), nix::sys::signal::SIGKILL)
            .unwrap();
        let killed_at = Instant::now();
        wait_for("a replica owns the queue's slot", Duration::from_secs(20), &[&a], || {
            owner_of(&cluster, &queue_key).is_some_and(|m| m != master)
        });
        println!("replica promoted {:?} after the kill", killed_at.elapsed());

        let worker = start_worker(&env, dir.path(), "worker");
        for id in &ids {
            wait_for(
                &format!("task {id} completed after the failover"),
                Duration::from_secs(20),
                &[&a, &worker],
                || task_state(pa, &token, id).as_deref() == Some("completed"),
            );
        }
        println!("all 20 tasks acknowledged before the kill completed at {:?}", started.elapsed());

        // The promoted master has no replica now, so WAIT 1 cannot succeed: the submission
        // is refused rather than acknowledged unsafely.
        let (status, resp) = http(pa, "POST", "/tasks/email", Some(&token), Some(&email(98))).unwrap();
        assert_eq!((status, resp["code"].as_i64()), (500, Some(5000)), "{resp}");
        wait_for("the refusal is logged", Duration::from_secs(5), &[&a], || {
            a.log().contains("within the WAIT timeout")
        });
        // The old master, restarted from its AOF and nodes.conf, rejoins as its replica.
        cluster.nodes[master].restart().unwrap();
        cluster.wait_until_ok(Duration::from_secs(20)).unwrap();
        let after = submit((&a, pa), &token, "/tasks/email", email(99));
        wait_for("the task submitted after the failover completed", Duration::from_secs(20), &[&a, &worker], || {
            task_state(pa, &token, &after).as_deref() == Some("completed")
        });
        let t = Instant::now();
        wait_for("/health reports Redis up again", Duration::from_secs(20), &[&a], || {
            http(pa, "GET", "/health", None, None).is_some_and(|(s, h)| s == 200 && h["redis"] == "up")
        });
        println!("health up after {:?}", t.elapsed());
    });
    println!("total {:?}", started.elapsed());
}
