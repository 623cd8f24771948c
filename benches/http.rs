//! `cargo xtask bench http [-- --baseline-bin PATH] [--baseline-env K=V …] [--only OP] [--soak]
//! [--no-callgrind]`: the two hot
//! paths, getUserById (one indexed SELECT) and submitEmailTask (one queue script), through the
//! real `spec-server serve` binary with its default logging, measured with `wrk -t2` at 64 and
//! 256 connections beside `pgbench -S -M prepared` and a raw Redis `EVALSHA` (redis-benchmark),
//! all in one run on one private PostgreSQL and Redis. The machine is shared, so only figures
//! of one run compare; instructions per request (callgrind) compare across runs too.
//!
//! Printed, one JSON object per line (`name`, `value`, `unit`, `baseline`, `ratio`):
//! - `pgbench.select_only.c64`, `redis.evalsha.c64|c256`: the baselines;
//! - `<server>.<op>.c64|c256.throughput|p50|p99`: req/s (ratio vs pgbench for getUserById and
//!   vs EVALSHA for submitEmailTask) and latency in ms; `<server>` is `new`, or `old` for the
//!   `--baseline-bin` binary (by default this one: with `--baseline-env` alone, the same binary
//!   under other settings, e.g. `PG_PIPELINE_CONNECTIONS=0`), whose figures are also printed as
//!   the baseline of `new.*.vs_old`; `--only get_user_by_id|submit_email_task` measures one;
//! - `<server>.<op>.instructions`: instructions per request under callgrind (the difference of
//!   two runs of different lengths, so start-up cancels out);
//! - `<server>.<op>.c64|c256.cpu_us.server|postgres`: CPU time (user + system, from `/proc`)
//!   per request of the server process and of all PostgreSQL processes during the wrk run:
//!   on a shared machine throughput follows what the neighbours leave, CPU per request much
//!   less so (a server with fewer PostgreSQL backends gets a smaller share of a contended
//!   machine, so its req/s can fall while its cost falls too);
//! - `<server>.rss.idle|load_c256`: the server's resident memory in MB, before any load and the
//!   most seen while 256 connections run getUserById; with `--soak`, `new.rss.soak.t<N>s` every
//!   10 s of a 60 s 256-connection run and `new.rss.soak.growth_from_10s|20s` (the last sample
//!   minus the one at 10 s or 20 s, once the first connections' buffers are allocated).

mod common;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use common::{emit, free_port, get, post, prepare, roundtrip, run_wrk, wrk_path};
use nix::sys::signal::Signal;
use spec_server::devsvc::{self, Launch, Launched, PrivatePostgres, PrivateRedis, Ready};

const SEED_USERS: i64 = 2000;
/// Each wrk measurement, after a warm-up of its own.
const WRK_RUN: &str = "5s";
const WRK_RUN_SECS: f64 = 5.0;
const WRK_WARMUP: &str = "1s";
const SOAK: Duration = Duration::from_secs(60);
/// Requests of the short and the long callgrind run; their difference is what is divided.
const CALLGRIND_RUNS: (usize, usize) = (400, 2400);
const CALLGRIND_CONNS: usize = 16;
const EMAIL_BODY: &str =
    r#"{"to":"someone@example.com","subject":"Hello","body":"A short message.","priority":"default"}"#;

struct Options {
    baseline_bin: Option<PathBuf>,
    /// Settings of the baseline server only (after the shared ones, so they win).
    baseline_env: Vec<(String, String)>,
    only: Option<String>,
    soak: bool,
    callgrind: bool,
}

fn options() -> Result<Options> {
    let mut o = Options { baseline_bin: None, baseline_env: Vec::new(), only: None, soak: false, callgrind: true };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            // `cargo bench` passes `--bench`.
            "--bench" => {}
            "--soak" => o.soak = true,
            "--no-callgrind" => o.callgrind = false,
            "--baseline-bin" => o.baseline_bin = Some(args.next().context("--baseline-bin needs a path")?.into()),
            "--baseline-env" => {
                let kv = args.next().context("--baseline-env needs K=V")?;
                let (k, v) = kv.split_once('=').with_context(|| format!("--baseline-env {kv:?}: expected K=V"))?;
                o.baseline_env.push((k.to_owned(), v.to_owned()));
            }
            "--only" => {
                let op = args.next().context("--only needs an operation")?;
                if !["get_user_by_id", "submit_email_task"].contains(&op.as_str()) {
                    bail!("--only {op:?}: expected get_user_by_id or submit_email_task");
                }
                o.only = Some(op);
            }
            other => bail!(
                "unknown argument {other:?} (expected --baseline-bin PATH, --baseline-env K=V, --only OP, --soak, \
                 --no-callgrind)"
            ),
        }
    }
    Ok(o)
}

/// The two operations measured, as wrk scripts and as raw requests.
#[derive(Clone, Copy)]
enum Op {
    GetUser,
    SubmitEmail,
}

impl Op {
    fn name(self) -> &'static str {
        match self {
            Op::GetUser => "get_user_by_id",
            Op::SubmitEmail => "submit_email_task",
        }
    }

    /// A wrk script: getUserById walks the seeded ids; submitEmailTask sends one body.
    fn wrk_script(self, token: &str) -> String {
        match self {
            Op::GetUser => format!(
                "wrk.headers[\"token\"] = \"{token}\"\nlocal n = 0\nrequest = function()\n  n = n + 1\n  \
                 return wrk.format(\"GET\", \"/api/v1/users/\" .. (1 + n % {SEED_USERS}))\nend\n"
            ),
            Op::SubmitEmail => format!(
                "wrk.method = \"POST\"\nwrk.headers[\"token\"] = \"{token}\"\n\
                 wrk.headers[\"content-type\"] = \"application/json\"\nwrk.body = [[{EMAIL_BODY}]]\n\
                 wrk.path = \"/api/v1/tasks/email\"\n"
            ),
        }
    }

    fn request(self, i: usize, token: &str) -> Vec<u8> {
        match self {
            Op::GetUser => get(&format!("/api/v1/users/{}", 1 + i % SEED_USERS as usize), token),
            Op::SubmitEmail => post("/api/v1/tasks/email", token, EMAIL_BODY),
        }
    }
}

/// `pgbench -S -M prepared` TPS at `clients`, on its own database of the same server.
fn pgbench(pg: &PrivatePostgres, clients: usize) -> Result<f64> {
    let bin = devsvc::pg_bindir()?.join("pgbench");
    let url = devsvc::url_with_database(&pg.url(), "pgbench")?;
    let text = Launch::new(&bin)
        .args(["-S", "-M", "prepared", "-n", "-j", "2", "-T", "5"])
        .arg("-c")
        .arg(clients.to_string())
        .arg(&url)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    text.lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .context("pgbench printed no tps")
}

/// A raw `EVALSHA` of a script shaped like one enqueue (HSET a record, RPUSH its id) through
/// redis-benchmark at `clients`: what one Redis script call per request costs here.
fn evalsha(redis: &PrivateRedis, clients: usize) -> Result<f64> {
    let cli = |args: &[&str]| {
        Launch::new("redis-cli")
            .args(["-p", &redis.port().to_string()])
            .args(args)
            .output()
            .context("running redis-cli")
    };
    let sha = cli(&[
        "SCRIPT",
        "LOAD",
        "redis.call('HSET', KEYS[1], ARGV[1], ARGV[2]) return redis.call('RPUSH', KEYS[2], ARGV[1])",
    ])?;
    let n = (clients * 1000).max(100_000).to_string();
    let text = Launch::new("redis-benchmark")
        .hint("redis-benchmark comes with redis-server: `apt-get install -y redis-server`")
        .args(["-p", &redis.port().to_string(), "-c", &clients.to_string(), "-n", &n, "-r", "1000000", "--csv"])
        .args(["EVALSHA", sha.trim(), "2", "{b}:data", "{b}:list", "__rand_int__", "payload"])
        .output()
        .context("running redis-benchmark")?;
    cli(&["DEL", "{b}:data", "{b}:list"])?;
    // `"EVALSHA …","12345.67",…` (newer versions add latency columns).
    text.lines()
        .filter(|l| l.starts_with("\"EVALSHA"))
        .find_map(|l| l.split("\",\"").nth(1).and_then(|v| v.trim_matches('"').parse::<f64>().ok()))
        .with_context(|| format!("redis-benchmark printed:\n{text}"))
}

/// One `spec-server serve` (optionally under callgrind) on the shared databases.
struct Server {
    proc: Launched,
    port: u16,
}

fn start_server(
    bin: &Path,
    label: &str,
    pg: &PrivatePostgres,
    redis: &PrivateRedis,
    dir: &Path,
    callgrind_out: Option<&Path>,
    env: &[(String, String)],
) -> Result<Server> {
    let port = free_port()?;
    let launch = match callgrind_out {
        Some(out) => Launch::new("valgrind")
            .hint("valgrind is not installed: `apt-get install -y valgrind`, or pass --no-callgrind")
            .arg("--tool=callgrind")
            .arg(format!("--callgrind-out-file={}", out.display()))
            .arg(bin),
        None => Launch::new(bin),
    };
    let mut launch = launch
        .named(format!("{label} spec-server serve"))
        .arg("serve")
        .env("DATABASE_URL", pg.url())
        .env("REDIS_URL", redis.url())
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .env("REDIS_ALLOW_VOLATILE", "true")
        .env("LOG", "info");
    for (k, v) in env {
        launch = launch.env(k, v);
    }
    let mut proc = launch.log_to(dir.join(format!("{label}.log"))).spawn()?;
    let wait = if callgrind_out.is_some() { Duration::from_secs(180) } else { Duration::from_secs(60) };
    proc.wait_ready(Ready::Port(port), wait)?;
    Ok(Server { proc, port })
}

impl Server {
    fn stop(mut self) -> Result<()> {
        self.proc.stop(Signal::SIGTERM, Duration::from_secs(60))?;
        Ok(())
    }

    /// Resident memory (VmRSS) in MB.
    fn rss_mb(&self) -> Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.proc.pid()))?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .context("no VmRSS")?;
        Ok(kb / 1024.0)
    }
}

/// A server measured: its label, binary and settings of its own.
type Measured<'a> = (&'a str, PathBuf, &'a [(String, String)]);

/// User + system CPU ticks of these processes (those gone since are not counted).
fn cpu_ticks(pids: &[u32]) -> u64 {
    pids.iter()
        .filter_map(|pid| std::fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the command, which is in parentheses and may hold spaces.
            let rest = stat.rsplit_once(')')?.1;
            let f: Vec<&str> = rest.split_whitespace().collect();
            Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
        })
        .sum()
}

/// Microseconds per clock tick of `/proc/PID/stat`: `USER_HZ`, which Linux fixes at 100 for
/// user space whatever the kernel's own tick rate.
fn tick_us() -> f64 {
    10_000.0
}

/// The private PostgreSQL's postmaster and its children (the backends).
fn postgres_pids(pg: &PrivatePostgres) -> Vec<u32> {
    let Some(postmaster) = pg.pid() else { return Vec::new() };
    let children =
        std::fs::read_to_string(format!("/proc/{postmaster}/task/{postmaster}/children")).unwrap_or_default();
    std::iter::once(postmaster).chain(children.split_whitespace().filter_map(|p| p.parse().ok())).collect()
}

/// `total` requests of `op` over `CALLGRIND_CONNS` keep-alive connections; fails on any non-200.
async fn drive(port: u16, op: Op, token: &str, total: usize) -> Result<()> {
    let mut tasks = tokio::task::JoinSet::new();
    for c in 0..CALLGRIND_CONNS {
        let token = token.to_owned();
        tasks.spawn(async move {
            let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            stream.set_nodelay(true)?;
            let mut buf = Vec::with_capacity(16 * 1024);
            for i in (c..total).step_by(CALLGRIND_CONNS) {
                let status = roundtrip(&mut stream, &op.request(i, &token), &mut buf).await?;
                if status != 200 {
                    bail!("{} answered {status}", op.name());
                }
            }
            anyhow::Ok(())
        });
    }
    for r in tasks.join_all().await {
        r?;
    }
    Ok(())
}

/// Total instructions (`summary:` or `totals:`) of a callgrind output file.
fn callgrind_total(path: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .find_map(|l| l.strip_prefix("summary:").or_else(|| l.strip_prefix("totals:")))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("{} has no summary line", path.display()))
}

/// Instructions per request of `op`: two callgrind runs of the server, the long one minus the
/// short one over the difference in requests, so start-up and shutdown cancel out.
async fn instructions(
    (bin, env): (&Path, &[(String, String)]),
    label: &str,
    op: Op,
    token: &str,
    (pg, redis): (&PrivatePostgres, &PrivateRedis),
    dir: &Path,
) -> Result<f64> {
    let mut totals = Vec::new();
    for n in [CALLGRIND_RUNS.0, CALLGRIND_RUNS.1] {
        let out = dir.join(format!("callgrind.{label}.{}.{n}", op.name()));
        let server = start_server(bin, &format!("{label}-callgrind"), pg, redis, dir, Some(&out), env)?;
        // The first requests load the token cache and prepare statements: counted in both runs.
        drive(server.port, op, token, CALLGRIND_CONNS).await?;
        drive(server.port, op, token, n).await?;
        server.stop()?;
        totals.push(callgrind_total(&out)?);
    }
    Ok((totals[1] - totals[0]) / (CALLGRIND_RUNS.1 - CALLGRIND_RUNS.0) as f64)
}

/// Empties Redis between runs: the tasks one run queued (no worker runs here) would otherwise
/// make every later run's Redis bigger than the first's.
fn flush_redis(redis: &PrivateRedis) -> Result<()> {
    Launch::new("redis-cli").args(["-p", &redis.port().to_string(), "FLUSHALL"]).output()?;
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let opts = options()?;
    let wrk = wrk_path()?;
    eprintln!("wrk: {}", wrk.display());
    let dir = tempfile::tempdir()?;
    eprintln!("starting private PostgreSQL and Redis… (logs and scripts in {})", dir.path().display());
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start).await??;
    let redis = tokio::task::spawn_blocking(PrivateRedis::start).await??;
    let token = prepare(&pg, &redis, SEED_USERS).await?;

    // pgbench's own database, initialised at scale 10.
    let bindir = devsvc::pg_bindir()?;
    let admin = devsvc::url_with_database(&pg.url(), "postgres")?;
    Launch::new(bindir.join("psql")).arg(&admin).args(["-qc", "CREATE DATABASE pgbench"]).output()?;
    Launch::new(bindir.join("pgbench"))
        .named("pgbench -i")
        .args(["-i", "-q", "-s", "10"])
        .arg(devsvc::url_with_database(&pg.url(), "pgbench")?)
        .output()?;

    let new_bin = PathBuf::from(env!("CARGO_BIN_EXE_spec-server"));
    let mut servers: Vec<Measured> = vec![("new", new_bin.clone(), &[])];
    if opts.baseline_bin.is_some() || !opts.baseline_env.is_empty() {
        let old = opts.baseline_bin.clone().unwrap_or_else(|| new_bin.clone());
        servers.push(("old", old, &opts.baseline_env));
    }
    let ops: Vec<Op> = [Op::GetUser, Op::SubmitEmail]
        .into_iter()
        .filter(|op| opts.only.as_deref().is_none_or(|only| only == op.name()))
        .collect();
    let scripts: Vec<(Op, PathBuf)> = ops
        .iter()
        .copied()
        .map(|op| {
            let path = dir.path().join(format!("{}.lua", op.name()));
            std::fs::write(&path, op.wrk_script(&token)).map(|()| (op, path))
        })
        .collect::<Result<_, _>>()?;

    let started = Instant::now();
    for conns in [64usize, 256] {
        eprintln!("baselines at {conns} connections…");
        let pg_tps = if conns == 64 { Some(pgbench(&pg, conns)?) } else { None };
        if let Some(tps) = pg_tps {
            emit(&format!("pgbench.select_only.c{conns}"), tps, "tps", None);
        }
        let eval = evalsha(&redis, conns)?;
        emit(&format!("redis.evalsha.c{conns}"), eval, "calls/s", None);

        for (op, script) in &scripts {
            let baseline = match op {
                Op::GetUser => pg_tps,
                Op::SubmitEmail => Some(eval),
            };
            let mut rates = Vec::new();
            // Back to back within one connection count, so drift in the machine's load hits
            // both, and in the other order at 256 connections, so neither always goes first.
            let order: Vec<&Measured> =
                if conns == 256 { servers.iter().rev().collect() } else { servers.iter().collect() };
            for (label, bin, env) in order {
                flush_redis(&redis)?;
                let server = start_server(bin, label, &pg, &redis, dir.path(), None, env)?;
                let idle = server.rss_mb()?;
                run_wrk(server.port, conns, WRK_WARMUP, script)?;
                let cpu_before = (cpu_ticks(&[server.proc.pid()]), cpu_ticks(&postgres_pids(&pg)));
                let (result, peak) = std::thread::scope(|s| {
                    let sampler = s.spawn(|| peak_rss_while(&server, Duration::from_secs(6)));
                    let r = run_wrk(server.port, conns, WRK_RUN, script);
                    (r, sampler.join().ok().and_then(Result::ok))
                });
                let cpu_after = (cpu_ticks(&[server.proc.pid()]), cpu_ticks(&postgres_pids(&pg)));
                let r = result?;
                server.stop()?;
                let name = format!("{label}.{}.c{conns}", op.name());
                emit(&format!("{name}.throughput"), r.rps, "req/s", baseline);
                emit(&format!("{name}.p50"), r.p50_ms, "ms", None);
                emit(&format!("{name}.p99"), r.p99_ms, "ms", None);
                if r.errors > 0 {
                    emit(&format!("{name}.errors"), r.errors as f64, "count", None);
                }
                let requests = r.rps * WRK_RUN_SECS;
                if requests > 0.0 {
                    let per_req = |before: u64, after: u64| after.saturating_sub(before) as f64 * tick_us() / requests;
                    emit(&format!("{name}.cpu_us.server"), per_req(cpu_before.0, cpu_after.0), "µs/req", None);
                    emit(&format!("{name}.cpu_us.postgres"), per_req(cpu_before.1, cpu_after.1), "µs/req", None);
                }
                if matches!(op, Op::GetUser) {
                    if conns == 64 {
                        emit(&format!("{label}.rss.idle"), idle, "MB", None);
                    } else if let Some(peak) = peak {
                        emit(&format!("{label}.rss.load_c256"), peak, "MB", Some(idle));
                    }
                }
                rates.push((*label, r.rps));
            }
            let rate = |which: &str| rates.iter().find(|(l, _)| *l == which).map(|(_, r)| *r);
            if let (Some(new), Some(old)) = (rate("new"), rate("old")) {
                emit(&format!("new.{}.c{conns}.vs_old", op.name()), new, "req/s", Some(old));
            }
        }
    }
    eprintln!("load runs took {:.0} s", started.elapsed().as_secs_f64());

    if opts.soak {
        eprintln!("soak: getUserById at 256 connections for {} s, sampling RSS…", SOAK.as_secs());
        let server = start_server(&new_bin, "soak", &pg, &redis, dir.path(), None, &[])?;
        let script = &scripts
            .iter()
            .find(|(op, _)| matches!(op, Op::GetUser))
            .context("--soak runs getUserById: do not leave it out with --only")?
            .1;
        let (wrk_result, samples) = std::thread::scope(|s| {
            let wrk = s.spawn(|| run_wrk(server.port, 256, &format!("{}s", SOAK.as_secs()), script));
            let mut samples = Vec::new();
            let t = Instant::now();
            for k in 1..=SOAK.as_secs() / 10 {
                std::thread::sleep((Duration::from_secs(10 * k)).saturating_sub(t.elapsed()));
                samples.push((10 * k, server.rss_mb()));
            }
            (wrk.join(), samples)
        });
        let r = wrk_result.map_err(|_| anyhow::anyhow!("the wrk thread panicked"))??;
        let mut at = Vec::new();
        for (t, rss) in samples {
            let rss = rss?;
            emit(&format!("new.rss.soak.t{t}s"), rss, "MB", None);
            at.push((t, rss));
        }
        // The first seconds fill the allocator's pools and 256 connections' buffers; what
        // matters is whether it keeps growing after that.
        let rss_at = |t: u64| at.iter().find(|(s, _)| *s == t).map(|(_, r)| *r);
        if let (Some(t10), Some(t20), Some((_, last))) = (rss_at(10), rss_at(20), at.last().copied()) {
            emit("new.rss.soak.growth_from_10s", last - t10, "MB", None);
            emit("new.rss.soak.growth_from_20s", last - t20, "MB", None);
        }
        emit("new.get_user_by_id.soak.throughput", r.rps, "req/s", None);
        server.stop()?;
    }

    if opts.callgrind {
        for (label, bin, env) in &servers {
            for &op in &ops {
                eprintln!("{label}: {} under callgrind…", op.name());
                flush_redis(&redis)?;
                let n = instructions((bin, env), label, op, &token, (&pg, &redis), dir.path()).await?;
                emit(&format!("{label}.{}.instructions", op.name()), n, "instr/req", None);
            }
        }
    }
    drop((pg, redis));
    // `BENCH_KEEP=1` keeps the server logs and callgrind files (for `callgrind_annotate`).
    if std::env::var_os("BENCH_KEEP").is_some() {
        eprintln!("kept {}", dir.keep().display());
    }
    Ok(())
}

/// The most RSS seen over `window`, sampled every 200 ms.
fn peak_rss_while(server: &Server, window: Duration) -> Result<f64> {
    let until = Instant::now() + window;
    let mut peak = 0.0f64;
    while Instant::now() < until {
        match server.rss_mb() {
            Ok(v) => peak = peak.max(v),
            Err(_) => break,
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(peak)
}
