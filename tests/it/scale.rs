//! The whole deployment from local binaries, under load and failures: a 3-master Redis
//! Cluster with a replica each, a PostgreSQL primary with a streaming replica, two `serve`
//! (reads on the replica, `REDIS_URL=redis+cluster://…`, `WAIT 1` per submission) and three
//! `worker` processes. The contract scenario passes against each server (one after the
//! other: its `listUsers` paging checks compare totals between pages, which another run's
//! users would change), with a harness that issues tokens and holds the workers while a task
//! must stay pending (a reused `Idempotency-Key`: three idle workers used to finish the first
//! task before the second request arrived). Then, while two clients submit email tasks to both
//! servers, the master owning the queue's hash tag and one worker are SIGKILLed: every submission answered
//! 2xx completes. Concurrent clients each read back only their own user, through the other
//! server; a page token signed by one server is accepted by the other (`PAGE_TOKEN_KEY`); and
//! a token revoked through the CLI against the primary is refused at once by both servers.

#![allow(clippy::unwrap_used)]

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{Result, bail};
use serde_json::json;
use spec_contract::{Contract, Harness, Options, scenario};
use spec_server::devsvc::{Launched, PrivatePostgres};

use crate::{
    cluster::{START_TIMEOUT, deployment_env, http, owner_of, start_cluster, start_server, start_worker, wait_for},
    support::spec_server,
};

/// Submissions per load client; two clients, each alternating between the servers.
const SUBMISSIONS: usize = 60;

/// `spec-server ARGS…` to completion: its stdout.
fn cli(env: &[(String, String)], args: &[&str]) -> String {
    spec_server(args).envs(env.iter().map(|(k, v)| (k, v))).env("LOG", "warn").output().unwrap()
}

/// A new token named `name`: the one `sk_` line of `token issue`'s stdout, which the log
/// shares (CLIs started together wait for each other's migration lock, and say so).
fn issue(env: &[(String, String)], name: &str, more: &[&str]) -> String {
    let mut args = vec!["token", "issue", "--name", name];
    args.extend_from_slice(more);
    let out = cli(env, &args);
    let token = out.lines().map(str::trim).find(|l| l.starts_with("sk_"));
    token.unwrap_or_else(|| panic!("no token in {out:?}")).to_owned()
}

/// The states of `ids` read through `port`, one `getTask` each.
fn pending(port: u16, token: &str, ids: &[String]) -> Vec<String> {
    ids.iter()
        .filter(|id| {
            http(port, "GET", &format!("/tasks/{id}"), Some(token), None)
                .is_none_or(|(_, r)| r["data"]["state"].as_str() != Some("completed"))
        })
        .cloned()
        .collect()
}

/// What the contract scenario may do to this deployment beyond HTTP: issue tokens through the
/// CLI and hold the workers (SIGSTOP) while a task must stay pending. Its dependencies are
/// replicated, so stopping one node is no outage to provoke the 5xx checks with.
struct Scale<'a> {
    env: &'a [(String, String)],
    workers: &'a [Launched],
    issued: u32,
}

impl Harness for Scale<'_> {
    fn issue_token(&mut self, ttl: Duration) -> Result<String> {
        self.issued += 1;
        let name = format!("scale-contract-short-lived-{}", self.issued);
        Ok(issue(self.env, &name, &["--ttl", &format!("{}s", ttl.as_secs().max(1))]))
    }
    fn issue_scoped_token(&mut self, scopes: &[&str]) -> Result<String> {
        self.issued += 1;
        let name = format!("scale-contract-scoped-{}", self.issued);
        let args: Vec<&str> = scopes.iter().flat_map(|s| ["--scope", s]).collect();
        Ok(issue(self.env, &name, &args))
    }
    fn stop_postgres(&mut self) -> Result<()> {
        bail!("this deployment's dependencies are not controlled")
    }
    fn start_postgres(&mut self) -> Result<()> {
        bail!("this deployment's dependencies are not controlled")
    }
    fn stop_redis(&mut self) -> Result<()> {
        bail!("this deployment's dependencies are not controlled")
    }
    fn start_redis(&mut self) -> Result<()> {
        bail!("this deployment's dependencies are not controlled")
    }
    fn worker_running(&self) -> bool {
        true
    }
    fn hold_worker(&mut self, held: bool) -> Result<()> {
        for w in self.workers {
            if held { w.pause() } else { w.resume() }
        }
        Ok(())
    }
    fn controls_dependencies(&self) -> bool {
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scaled_deployment_survives_a_master_and_a_worker_dying_under_load() {
    let started = Instant::now();
    let Some(mut cluster) = start_cluster().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let primary = tokio::task::spawn_blocking(PrivatePostgres::start).await.unwrap().unwrap();
    let page_key = format!("scale-page-token-key-{}", uuid::Uuid::new_v4().simple());
    let base_env = deployment_env(&primary.url(), &cluster, dir.path(), &[]);
    cli(&base_env, &["migrate"]);
    let replica = tokio::task::block_in_place(|| PrivatePostgres::start_replica(&primary)).unwrap();
    let replica_url = replica.url();
    let env = deployment_env(
        &primary.url(),
        &cluster,
        dir.path(),
        &[
            ("DATABASE_REPLICA_URLS", &replica_url),
            ("PAGE_TOKEN_KEY", &page_key),
            // Only the revocation message can explain a prompt refusal by a server that
            // trusts the token from its own cache this long.
            ("TOKEN_LOCAL_CACHE_MS", "600000"),
            // The contract's sync checks need no upstream that answers.
            ("SYNC_SOURCE_URL", "http://127.0.0.1:9"),
        ],
    );
    println!("cluster, primary and replica up in {:?}", started.elapsed());

    tokio::task::block_in_place(|| {
        let (a, pa) = start_server(&env, dir.path(), "serve-a");
        let (b, pb) = start_server(&env, dir.path(), "serve-b");
        let workers: Vec<Launched> = (0..3).map(|i| start_worker(&env, dir.path(), &format!("worker-{i}"))).collect();
        println!("2 servers and 3 workers up at {:?}", started.elapsed());
        let token = issue(&env, "scale", &[]);

        // The contract against each server in turn.
        let contract = Contract::workspace().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let mut harness = Scale { env: &env, workers: &workers, issued: 0 };
        for (server, port) in [(&a, pa), (&b, pb)] {
            let opts = Options {
                base_url: format!("http://127.0.0.1:{port}/api/v1"),
                token: Some(token.clone()),
                expired_token: None,
                field_format: None,
            };
            let mut report = runtime.block_on(scenario::run(&contract, &opts, Some(&mut harness))).unwrap();
            // Held to this project's conventions too, as in `contract.rs`.
            report.strict_conventions = true;
            if !report.passed() {
                spec_contract::print(&report, false);
            }
            assert!(report.passed(), "{}: {}\n{}", server.name(), report.summary(), server.log_tail());
        }
        drop(runtime);
        println!("contract passed against both servers at {:?}", started.elapsed());

        // Load: two clients submit to both servers while a master and a worker die.
        let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
        let refused = Arc::new(Mutex::new(0usize));
        let clients: Vec<_> = (0..2)
            .map(|c| {
                let (accepted, refused, token) = (accepted.clone(), refused.clone(), token.clone());
                std::thread::spawn(move || {
                    for n in 0..SUBMISSIONS {
                        let port = if n % 2 == 0 { pa } else { pb };
                        let body = json!({"to": "load@example.com", "subject": format!("c{c} n{n}"), "body": "b"});
                        match http(port, "POST", "/tasks/email", Some(&token), Some(&body)) {
                            Some((s, r)) if (200..300).contains(&s) => {
                                accepted.lock().unwrap().push(r["data"]["task_id"].as_str().unwrap().to_owned());
                            }
                            // Refused (no replica to acknowledge after the failover) or cut
                            // off: not accepted, so not promised.
                            _ => *refused.lock().unwrap() += 1,
                        }
                        std::thread::sleep(Duration::from_millis(20));
                    }
                })
            })
            .collect();
        let prefix = env.iter().find(|(k, _)| k == "REDIS_PREFIX").unwrap().1.clone();
        let queue_key = format!("{{{prefix}:queue}}");
        wait_for("a third of the load was accepted", Duration::from_secs(20), &[&a, &b], || {
            accepted.lock().unwrap().len() >= SUBMISSIONS * 2 / 3
        });
        let master = owner_of(&cluster, &queue_key).expect("a master owns the queue's slot");
        let pid = cluster.nodes[master].pid().unwrap();
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap()), nix::sys::signal::SIGKILL)
            .unwrap();
        workers[0].signal(nix::sys::signal::SIGKILL);
        let killed_at = Instant::now();
        let before_kill = accepted.lock().unwrap().len();
        println!("killed the queue master and worker-0 at {:?}", started.elapsed());
        wait_for("a replica owns the queue's slot", Duration::from_secs(20), &[&a, &b], || {
            owner_of(&cluster, &queue_key).is_some_and(|m| m != master)
        });
        println!("replica promoted {:?} after the kill", killed_at.elapsed());
        // Back as the new master's replica, so submissions can be acknowledged again.
        cluster.nodes[master].restart().unwrap();
        cluster.wait_until_ok(Duration::from_secs(20)).unwrap();
        for c in clients {
            c.join().unwrap();
        }
        let accepted = accepted.lock().unwrap().clone();
        let refused = *refused.lock().unwrap();
        println!("load done at {:?}: {} accepted, {refused} refused", started.elapsed(), accepted.len());
        assert!(accepted.len() > SUBMISSIONS, "most of the load was accepted: {}", accepted.len());
        // The failures happened mid-run: submissions went on being accepted after them.
        assert!(accepted.len() > before_kill, "nothing was accepted after the kill ({before_kill} before)");
        println!("{before_kill} accepted before the kills, {} after", accepted.len() - before_kill);

        let logs: Vec<&Launched> = [&a, &b].into_iter().chain(workers.iter().skip(1)).collect();
        let mut left = accepted.clone();
        let deadline = Instant::now() + Duration::from_secs(30);
        while !left.is_empty() {
            assert!(
                Instant::now() < deadline,
                "{} accepted tasks never completed, e.g. {:?}\n{}",
                left.len(),
                left.first(),
                logs.iter().map(|l| format!("{}:\n{}", l.name(), l.log_tail())).collect::<Vec<_>>().join("\n---\n")
            );
            std::thread::sleep(Duration::from_millis(200));
            left = pending(pb, &token, &left);
        }
        println!("all {} accepted tasks completed at {:?}", accepted.len(), started.elapsed());

        // Isolation: concurrent clients, each with a token of its own, create a user on one
        // server and read it back through the other: at once (its own write window, so from
        // the primary, the window having crossed over as a write marker) and once the window
        // is over (from the replica, which both servers report fresh). Each sees only its row.
        for (server, port) in [(&a, pa), (&b, pb)] {
            wait_for(&format!("{} sees the replica up", server.name()), START_TIMEOUT, &[server], || {
                http(port, "GET", "/health", None, None).is_some_and(|(_, h)| h["replicas"][0]["state"] == "up")
            });
        }
        let readers: Vec<_> = (0..6)
            .map(|i| {
                let env = env.clone();
                std::thread::spawn(move || {
                    let token = issue(&env, &format!("scale-client-{i}"), &[]);
                    let (write, read) = if i % 2 == 0 { (pa, pb) } else { (pb, pa) };
                    let name = format!("scale_{}_{i}", uuid::Uuid::new_v4().simple());
                    let body =
                        json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
                    let (s, r) = http(write, "POST", "/users", Some(&token), Some(&body)).unwrap();
                    assert!((200..300).contains(&s), "createUser with {token:?}: {s} {r}");
                    let id = r["data"]["id"].clone();
                    let path = format!("/users/{}", id.as_str().map_or_else(|| id.to_string(), str::to_owned));
                    let read_back = || {
                        let (s, r) = http(read, "GET", &path, Some(&token), None).unwrap();
                        assert_eq!(s, 200, "{r}");
                        assert_eq!((&r["data"]["id"], &r["data"]["username"]), (&id, &json!(name)), "{r}");
                    };
                    read_back();
                    // REPLICA_MAX_LAG_MS (1000) + 2 × REPLICA_CHECK_INTERVAL_MS (250), and a margin.
                    std::thread::sleep(Duration::from_millis(1700));
                    read_back();
                })
            })
            .collect();
        for r in readers {
            r.join().unwrap();
        }

        // A page token signed by A verifies on B.
        let (s, first) = http(pa, "GET", "/users?page_size=1", Some(&token), None).unwrap();
        assert_eq!(s, 200, "{first}");
        let next = first["data"]["next_page_token"].as_str().expect("more than one user: a next page").to_owned();
        let (s, second) =
            http(pb, "GET", &format!("/users?page_size=1&page_token={next}"), Some(&token), None).unwrap();
        assert_eq!(s, 200, "B accepts A's page token: {second}");

        // Revocation through the CLI against the primary reaches both servers.
        let doomed = issue(&env, "scale-doomed", &[]);
        for (server, port) in [(&a, pa), (&b, pb)] {
            wait_for(&format!("{} subscribed to token revocations", server.name()), START_TIMEOUT, &[server], || {
                server.log().contains("subscribed to token revocations")
            });
            assert_eq!(http(port, "GET", "/users", Some(&doomed), None).unwrap().0, 200);
        }
        let out = cli(&env, &["token", "revoke", "scale-doomed"]);
        assert!(out.contains("revoked"), "{out}");
        let revoked_at = Instant::now();
        for (server, port) in [(&a, pa), (&b, pb)] {
            wait_for(
                &format!("{} refuses the revoked token", server.name()),
                Duration::from_secs(2),
                &[server],
                || http(port, "GET", "/users", Some(&doomed), None).is_some_and(|(s, _)| s == 401),
            );
        }
        println!("revocation reached both servers after {:?}", revoked_at.elapsed());
        assert_eq!(http(pa, "GET", "/users", Some(&token), None).unwrap().0, 200, "other tokens still work");
        drop(workers);
        drop((a, b));
    });
    println!("total {:?}", started.elapsed());
    drop(replica);
    drop(primary);
}
