//! The contract suite against the real `spec-server` binary: private PostgreSQL and Redis,
//! migrations and a token through the CLI, then the whole scenario of `spec_contract`,
//! including PostgreSQL and Redis stopped and started again under the running server.
//! `CONTRACT_JUNIT=<file>` also writes the report as JUnit XML.

// A panic is a test failure with a location; helpers unwrap too.
#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::Pid,
};
use spec_contract::{Contract, Harness, Options, scenario};
use spec_server::devsvc::{PrivatePostgres, PrivateRedis};

const BIN: &str = env!("CARGO_BIN_EXE_spec-server");

/// Generous: two shared cores may be busy compiling next door.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A child process killed and reaped when dropped, panics included.
struct Proc {
    child: Child,
    log: PathBuf,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn spawn(args: &[&str], env: &[(String, String)], log: PathBuf) -> Result<Proc> {
        let out = std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(BIN)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .with_context(|| format!("spawning spec-server {}", args.join(" ")))?;
        Ok(Proc { child, log })
    }

    fn log_tail(&self) -> String {
        tail(&self.log)
    }
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// The deployment this test owns: its dependencies, and the CLI environment.
struct Local {
    pg: PrivatePostgres,
    redis: PrivateRedis,
    env: Vec<(String, String)>,
    issued: u32,
    /// The worker process, once started.
    worker: Option<u32>,
}

impl Local {
    /// `spec-server ARGS` to completion; its stdout.
    fn cli(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(BIN)
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running spec-server {}", args.join(" ")))?;
        if !out.status.success() {
            bail!("spec-server {} failed ({}): {}", args.join(" "), out.status, String::from_utf8_lossy(&out.stderr));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Harness for Local {
    fn issue_token(&mut self, ttl: Duration) -> Result<String> {
        self.issued += 1;
        let name = format!("contract-short-lived-{}", self.issued);
        self.cli(&["token", "issue", "--name", &name, "--ttl", &format!("{}s", ttl.as_secs().max(1))])
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
        let Some(pid) = self.worker else { return Ok(()) };
        let signal = if held { Signal::SIGSTOP } else { Signal::SIGCONT };
        let pid = Pid::from_raw(i32::try_from(pid).context("worker pid")?);
        kill(pid, signal).with_context(|| format!("sending {signal} to the worker"))
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
fn start_server(env: &[(String, String)], dir: &Path) -> Result<(Proc, String)> {
    for attempt in 0.. {
        let port = free_port()?;
        let mut env = env.to_vec();
        env.push(("LISTEN_ADDR".into(), format!("127.0.0.1:{port}")));
        let mut server = Proc::spawn(&["serve"], &env, dir.join(format!("server-{attempt}.log")))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = server.child.try_wait()? {
                let log = server.log_tail();
                if log.contains("Address already in use") && attempt < 3 {
                    break;
                }
                bail!("spec-server serve exited during start-up ({status}):\n{log}");
            }
            if matches!(http_status(port, "/api/v1/health"), Some(200 | 503)) {
                return Ok((server, format!("http://127.0.0.1:{port}/api/v1")));
            }
            if Instant::now() >= deadline {
                bail!("spec-server serve not ready after {START_TIMEOUT:?}:\n{}", server.log_tail());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    unreachable!("the loop returns or bails")
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
    let mut local = Local { pg, redis, env, issued: 0, worker: None };
    local.cli(&["migrate"]).unwrap();
    let token = local.cli(&["token", "issue", "--name", "contract"]).unwrap();
    // Declared after `local`: the server (and worker) die before their dependencies.
    let (server, base_url) = start_server(&local.env, logs.path()).unwrap();
    // The scenario checks that submitted tasks complete: a worker that cannot start fails it.
    let worker = Proc::spawn(&["worker"], &local.env, logs.path().join("worker.log")).unwrap();
    local.worker = Some(worker.child.id());

    let contract = Contract::workspace().unwrap();
    let opts = Options { base_url, token: Some(token), expired_token: None };
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let report = runtime.block_on(scenario::run(&contract, &opts, Some(&mut local))).unwrap();
    spec_contract::print(&report);
    if let Some(path) = std::env::var_os("CONTRACT_JUNIT") {
        std::fs::write(&path, report.junit()).unwrap();
    }
    assert!(report.passed(), "{}\nserver log (tail):\n{}", report.summary(), server.log_tail());
}
