//! `cargo xtask bench http`: throughput and latency of getUserById,
//! listUsers and createUser at 64 and 256 concurrent connections, against
//! `pgbench -S -M prepared` on the same private PostgreSQL in the same run.
//! One JSON object per measurement on stdout; progress on stderr.

use std::{
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use clap::Parser;
use poem::listener::{Acceptor, Listener};
use serde_json::json;
use spec_server::{
    config::Config,
    db::{tokens, users},
    devsvc::{self, PrivatePostgres, PrivateRedis},
    server::{self, Backends, Pools},
};

/// The request path allocates a lot of small, short-lived objects (parsing, JSON, futures);
/// mimalloc handles that pattern with less time in the allocator than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long each measurement runs (after a short warm-up).
const RUN: Duration = Duration::from_secs(5);
const WARMUP: Duration = Duration::from_millis(500);
const SEED_USERS: i64 = 2000;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: Config,
}

fn emit(name: &str, value: f64, unit: &str, baseline: Option<f64>) {
    let ratio = baseline.filter(|b| *b > 0.0).map(|b| value / b);
    println!(
        "{}",
        json!({ "name": name, "value": round(value), "unit": unit, "baseline": baseline.map(round), "ratio": ratio.map(round) })
    );
}

fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// `pgbench -S -M prepared` TPS at `clients` on the same server.
fn pgbench(pg: &PrivatePostgres, clients: usize) -> Result<(f64, f64)> {
    let bin = devsvc::pg_bindir()?.join("pgbench");
    let url = devsvc::url_with_database(&pg.url(), "pgbench")?;
    let out = Command::new(&bin)
        .args(["-S", "-M", "prepared", "-n", "-j", "2", "-T", "5"])
        .arg("-c")
        .arg(clients.to_string())
        .arg(&url)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!("pgbench failed: {}{}", text, String::from_utf8_lossy(&out.stderr));
    }
    let field = |prefix: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(prefix))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let tps = field("tps = ").context("pgbench printed no tps")?;
    let latency = field("latency average = ").unwrap_or(0.0);
    Ok((tps, latency))
}

struct Sample {
    ok: u64,
    errors: u64,
    latencies_us: Vec<u64>,
    /// What the failures were (status or error), for the report.
    kinds: std::collections::BTreeMap<String, u64>,
}

/// One request on a raw HTTP/1.1 keep-alive connection: a hand-rolled client
/// so that the load generator, sharing the machine's two cores with the
/// server, costs as little CPU as possible (a full client stack would be
/// measured as much as the server).
async fn roundtrip(stream: &mut tokio::net::TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream.write_all(request).await?;
    buf.clear();
    let mut chunk = [0u8; 16384];
    // Read the head, then exactly Content-Length bytes of body.
    let (head_end, status, len) = loop {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..i])?;
            let status: u16 = head.get(9..12).context("no status")?.parse()?;
            let len = head
                .lines()
                .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
                .map(|(_, v)| v.trim().parse::<usize>())
                .transpose()?
                .unwrap_or(0);
            break (i + 4, status, len);
        }
    };
    while buf.len() < head_end + len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed mid-body");
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(status)
}

/// Runs the load on its own runtime threads, as pgbench runs as its own process: sharing the
/// server's runtime would make the two compete inside one scheduler instead of in the OS's.
async fn load<F>(addr: std::net::SocketAddr, conns: usize, make: F) -> Result<Sample>
where
    F: Fn(u64) -> Vec<u8> + Send + Sync + 'static,
{
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        anyhow::Ok(rt.block_on(load_on(addr, conns, make)))
    })
    .await
    .context("the load generator thread failed")?
}

/// Runs requests made by `make` on `conns` keep-alive connections for `RUN`.
async fn load_on<F>(addr: std::net::SocketAddr, conns: usize, make: F) -> Sample
where
    F: Fn(u64) -> Vec<u8> + Send + Sync + 'static,
{
    let make = Arc::new(make);
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let until = measure_from + RUN;
    let mut tasks = Vec::new();
    for c in 0..conns {
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample { ok: 0, errors: 0, latencies_us: Vec::new(), kinds: Default::default() };
            let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                s.errors += 1;
                return s;
            };
            let _ = stream.set_nodelay(true);
            let mut buf = Vec::with_capacity(32 * 1024);
            let mut i = c as u64;
            loop {
                let t0 = Instant::now();
                if t0 >= until {
                    break;
                }
                let request = make(i);
                let result = roundtrip(&mut stream, &request, &mut buf).await;
                let ok = matches!(result, Ok(200));
                if t0 >= measure_from {
                    if ok {
                        s.ok += 1;
                        s.latencies_us.push(t0.elapsed().as_micros() as u64);
                    } else {
                        s.errors += 1;
                        let kind = match &result {
                            Ok(status) => format!(
                                "status {status}: {}",
                                String::from_utf8_lossy(&buf[buf.len().saturating_sub(120)..])
                            ),
                            Err(e) => e.to_string(),
                        };
                        *s.kinds.entry(kind).or_default() += 1;
                    }
                }
                if !ok {
                    // Start over on a fresh connection after any failure.
                    match tokio::net::TcpStream::connect(addr).await {
                        Ok(fresh) => stream = fresh,
                        Err(_) => break,
                    }
                }
                i += conns as u64;
            }
            s
        }));
    }
    let mut all = Sample { ok: 0, errors: 0, latencies_us: Vec::new(), kinds: Default::default() };
    for t in tasks {
        if let Ok(s) = t.await {
            all.ok += s.ok;
            all.errors += s.errors;
            all.latencies_us.extend(s.latencies_us);
            for (k, n) in s.kinds {
                *all.kinds.entry(k).or_default() += n;
            }
        }
    }
    all.latencies_us.sort_unstable();
    all
}

fn get(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: bench\r\ntoken: {token}\r\n\r\n").into_bytes()
}

fn post(path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: bench\r\ntoken: {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

fn report(
    name: &str,
    conns: usize,
    s: &Sample,
    baseline_tps: Option<f64>,
    baseline_latency_ms: Option<f64>,
) -> Result<()> {
    if s.ok == 0 {
        bail!("{name} at {conns} connections: no request succeeded ({} errors)", s.errors);
    }
    let rps = s.ok as f64 / RUN.as_secs_f64();
    emit(&format!("{name}.c{conns}.throughput"), rps, "req/s", baseline_tps);
    emit(&format!("{name}.c{conns}.p50"), pct(&s.latencies_us, 0.50), "ms", baseline_latency_ms);
    emit(&format!("{name}.c{conns}.p99"), pct(&s.latencies_us, 0.99), "ms", None);
    for (kind, n) in &s.kinds {
        eprintln!("  {n} × {kind}");
    }
    if s.errors > 0 {
        emit(&format!("{name}.c{conns}.errors"), s.errors as f64, "count", None);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    eprintln!("starting private PostgreSQL and Redis…");
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start).await??;
    let redis = tokio::task::spawn_blocking(PrivateRedis::start).await??;

    // pgbench's own database, initialised at scale 10.
    let bindir = devsvc::pg_bindir()?;
    let admin = devsvc::url_with_database(&pg.url(), "postgres")?;
    let status = Command::new(bindir.join("psql")).arg(&admin).args(["-qc", "CREATE DATABASE pgbench"]).status()?;
    if !status.success() {
        bail!("creating the pgbench database failed");
    }
    let init = Command::new(bindir.join("pgbench"))
        .args(["-i", "-q", "-s", "10"])
        .arg(devsvc::url_with_database(&pg.url(), "pgbench")?)
        .output()?;
    if !init.status.success() {
        bail!("pgbench -i failed: {}", String::from_utf8_lossy(&init.stderr));
    }

    let mut cfg = Cli::try_parse_from(["bench", "--listen-addr", "127.0.0.1:0"])?.config;
    cfg.database_url = Some(pg.url());
    cfg.redis_url = Some(redis.url());
    let backends =
        Backends { database_url: pg.url(), redis_url: redis.url(), private_postgres: None, private_redis: None };
    let pools = Pools::new(&cfg, &backends)?;
    pools.migrate().await?;
    for i in 0..SEED_USERS {
        let new = users::NewUser {
            username: format!("seed{i}"),
            email: format!("seed{i}@example.com"),
            password_hash: "x".into(),
        };
        users::user_create(&pools.pg, new).await?;
    }
    let (_, token) = tokens::token_issue(&pools.pg, "bench", None).await?;

    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await?;
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().context("no local address")?;
    let app = Arc::new(pools.app(&cfg)?);
    let ep = server::endpoint(app, &cfg);
    tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(ep).await });
    eprintln!("server on http://{addr}/api/v1; {SEED_USERS} users seeded");

    let quick = std::env::var_os("BENCH_QUICK").is_some();
    for conns in if quick { vec![64usize] } else { vec![64usize, 256] } {
        eprintln!("pgbench -S -M prepared -c {conns}…");
        let (tps, pg_latency) = pgbench(&pg, conns)?;
        emit(&format!("pgbench.select_only.c{conns}"), tps, "tps", None);

        eprintln!("getUserById at {conns} connections…");
        let t = token.clone();
        let s = load(addr, conns, move |i| get(&format!("/api/v1/users/{}", 1 + (i as i64 % SEED_USERS)), &t)).await?;
        report("http.get_user_by_id", conns, &s, Some(tps), Some(pg_latency))?;

        if quick {
            continue;
        }
        eprintln!("listUsers at {conns} connections…");
        let t = token.clone();
        let s = load(addr, conns, move |i| get(&format!("/api/v1/users?page={}&page_size=20", 1 + i % 50), &t)).await?;
        report("http.list_users", conns, &s, Some(tps), Some(pg_latency))?;

        eprintln!("createUser at {conns} connections (argon2id-bound)…");
        let t = token.clone();
        let s = load(addr, conns, move |i| {
            let body = json!({
                "username": format!("new{conns}_{i}"), "email": format!("new{conns}_{i}@example.com"), "password": "password123"
            });
            post("/api/v1/users", &t, &body.to_string())
        })
        .await?;
        report("http.create_user", conns, &s, Some(tps), Some(pg_latency))?;
    }
    drop(pools);
    drop((pg, redis));
    Ok(())
}
