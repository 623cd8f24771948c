//! The contract suite against the real `spec-server` binary: private PostgreSQL and Redis,
//! migrations and tokens (scoped ones too) through the CLI, then the whole scenario of
//! `spec_contract`, including PostgreSQL and Redis stopped and started again under the running
//! server; then the generic scenario (`spec_contract::generic`), which reads nothing but the spec.
//! `CONTRACT_JUNIT=<file>` also writes the report as JUnit XML. The keyword coverage must
//! reach [`MIN_COVERAGE`]; its table (and every item not exercised) goes to
//! `$CONTRACT_COVERAGE`, else `target/tmp/contract-coverage.txt`, which `cargo xtask ci`
//! prints (cargo shows a passing test's output to nobody).

// A panic is a test failure with a location; helpers unwrap too.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::Path,
    time::Duration,
};

use anyhow::{Context, Result};
use spec_contract::{Contract, Harness, Options, scenario};
use spec_server::devsvc::{Launched, PrivatePostgres, PrivateRedis, Ready};

use crate::support::spec_server;

/// Generous: two shared cores may be busy compiling next door.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The keyword coverage this suite must keep, a few points below what it reached when set
/// (README, "Keyword coverage"): a change that stops exercising part of the contract fails here.
const MIN_COVERAGE: &str = "statuses=97,headers=95,constraints=88,enums=40,responses=68";

/// What the worker logs once it runs (at `info`, from `spec_server::worker`).
const WORKER_STARTED: &str = "worker started";

/// The deployment this test owns: its dependencies, and the CLI environment.
struct Local {
    /// The worker process, once started. First, so that it is killed before the dependencies.
    worker: Option<Launched>,
    pg: PrivatePostgres,
    redis: PrivateRedis,
    env: Vec<(String, String)>,
    issued: u32,
}

impl Local {
    /// `spec-server ARGS` to completion; its stdout.
    fn cli(&self, args: &[&str]) -> Result<String> {
        Ok(spec_server(args).envs(self.env.iter().map(|(k, v)| (k, v))).output()?)
    }

    /// `spec-server worker`, waited for until it logs that it runs: a worker that cannot
    /// start fails the test here, with its log, rather than leaving the task checks to guess.
    fn start_worker(&mut self, dir: &Path) -> Result<()> {
        let mut worker = spec_server(&["worker"])
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .env("LOG", "warn,spec_server::worker=info")
            .log_to(dir.join("worker.log"))
            .spawn()?;
        worker.wait_ready(Ready::LogLine(WORKER_STARTED), START_TIMEOUT)?;
        self.worker = Some(worker);
        Ok(())
    }
}

impl Harness for Local {
    fn issue_token(&mut self, ttl: Duration) -> Result<String> {
        self.issued += 1;
        let name = format!("contract-short-lived-{}", self.issued);
        self.cli(&["token", "issue", "--name", &name, "--ttl", &format!("{}s", ttl.as_secs().max(1))])
    }
    fn issue_scoped_token(&mut self, scopes: &[&str]) -> Result<String> {
        self.issued += 1;
        let name = format!("contract-scoped-{}", self.issued);
        let mut args = vec!["token", "issue", "--name", &name];
        for s in scopes {
            args.extend(["--scope", s]);
        }
        self.cli(&args)
    }
    fn stop_postgres(&mut self) -> Result<()> {
        self.pg.stop()
    }
    fn start_postgres(&mut self) -> Result<()> {
        self.pg.start_again()
    }
    fn stop_redis(&mut self) -> Result<()> {
        self.redis.stop()
    }
    fn start_redis(&mut self) -> Result<()> {
        self.redis.restart()
    }
    fn worker_running(&self) -> bool {
        self.worker.is_some()
    }

    fn hold_worker(&mut self, held: bool) -> Result<()> {
        let worker = self.worker.as_mut().context("no worker was started")?;
        worker.ensure_running()?;
        if held {
            worker.pause()
        } else {
            worker.resume()
        }
        Ok(())
    }
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?.local_addr()?.port())
}

/// The status of `GET path`, over a bare HTTP/1.1 connection.
fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head[9..12]).ok()?.parse().ok()
}

/// `spec-server serve` on a free port, polled until `/health` answers at all
/// (200, or 503 if a dependency is slow); retried if the port was taken meanwhile.
fn start_server(env: &[(String, String)], dir: &Path) -> Result<(Launched, String)> {
    let mut attempt = 0;
    loop {
        let port = free_port()?;
        let mut server = spec_server(&["serve"])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
            .log_to(dir.join(format!("server-{attempt}.log")))
            .spawn()?;
        let mut answers = || matches!(http_status(port, "/api/v1/health"), Some(200 | 503));
        match server.wait_ready(Ready::Probe(&mut answers), START_TIMEOUT) {
            Ok(()) => return Ok((server, format!("http://127.0.0.1:{port}/api/v1"))),
            Err(e) if e.port_taken() && attempt < 3 => attempt += 1,
            Err(e) => return Err(e.into()),
        }
    }
}

#[test]
fn the_server_conforms_to_the_contract() {
    let logs = tempfile::tempdir().unwrap();
    let pg = PrivatePostgres::start().unwrap();
    let redis = PrivateRedis::start().unwrap();
    let env = vec![
        ("DATABASE_URL".to_owned(), pg.url()),
        ("REDIS_URL".to_owned(), redis.url()),
        ("REDIS_PREFIX".to_owned(), format!("contract-{}", std::process::id())),
        // The private test Redis keeps nothing on disk.
        ("REDIS_ALLOW_VOLATILE".to_owned(), "true".to_owned()),
        // Nothing listens there: sync tasks wait for retries instead of dying
        // at once, so a reused Idempotency-Key meets its first task still held.
        ("SYNC_SOURCE_URL".to_owned(), "http://127.0.0.1:9".to_owned()),
        // The PostgreSQL-down phase relies on the token staying cached in
        // Redis; a slow machine must not outlive the default 60 s cache.
        ("TOKEN_CACHE_TTL_SECS".to_owned(), "600".to_owned()),
        // A stopped dependency must fail requests quickly, not after 2 s each.
        ("PG_ACQUIRE_TIMEOUT_MS".to_owned(), "1000".to_owned()),
        ("LOG".to_owned(), "warn".to_owned()),
        // Without SMTP_URL the worker writes each email here, not under the working directory.
        ("MAIL_DIR".to_owned(), logs.path().join("mail").display().to_string()),
    ];
    let mut local = Local { worker: None, pg, redis, env, issued: 0 };
    local.cli(&["migrate"]).unwrap();
    let token = local.cli(&["token", "issue", "--name", "contract"]).unwrap();
    // Declared after `local`: the server dies before its dependencies.
    let (mut server, base_url) = start_server(&local.env, logs.path()).unwrap();
    // The scenario checks that submitted tasks complete, so it needs a worker: one that
    // cannot start fails the test here, loudly, instead of the task checks being skipped.
    local.start_worker(logs.path()).unwrap();

    let contract = Contract::workspace().unwrap();
    // This project's server follows its own conventions: held to them, strictly.
    // The field naming comes from the spec's `x-error-field-format`.
    let opts = Options { base_url, token: Some(token), expired_token: None, field_format: None };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let mut report = runtime.block_on(scenario::run(&contract, &opts, Some(&mut local))).unwrap();
    report.coverage.thresholds = MIN_COVERAGE.parse().unwrap();
    report.strict_conventions = true;
    spec_contract::print(&report, false);
    let table = std::env::var_os("CONTRACT_COVERAGE")
        .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).join("contract-coverage.txt"), Into::into);
    std::fs::write(&table, format!("{}{}", report.coverage.table(), report.coverage.details())).unwrap();
    if let Some(path) = std::env::var_os("CONTRACT_JUNIT") {
        std::fs::write(&path, report.junit()).unwrap();
    }
    assert!(report.passed(), "{}\nserver log (tail):\n{}", report.summary(), server.log_tail());
    // The generic scenario, which knows nothing of this project, against the
    // same server: what it synthesizes from the spec alone must be answered
    // as the spec documents too.
    let generic = runtime.block_on(spec_contract::generic::run(&contract, &opts)).unwrap();
    spec_contract::print(&generic, false);
    assert!(generic.passed(), "generic scenario: {}\nserver log (tail):\n{}", generic.summary(), server.log_tail());
    let passed = generic.checks.iter().filter(|c| c.outcome == spec_contract::report::Outcome::Pass).count();
    assert!(passed >= 100, "generic scenario: only {passed} checks passed: {}", generic.summary());
    // Both ran to the end: a crash midway would otherwise only show as failed checks.
    server.ensure_running().unwrap();
    if let Some(worker) = local.worker.as_mut() {
        worker.ensure_running().unwrap();
    }
}
