//! Shared by the HTTP benchmarks: a minimal HTTP/1.1 load generator on its
//! own runtime (so it competes with the server in the OS's scheduler, as a
//! separate process would), wrk runs against a `spec-server serve` child,
//! seeding a private PostgreSQL, and the one-JSON-object-per-line output.

// Each benchmark target compiles this module and uses a different part of it.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};
use serde_json::json;
use spec_server::{
    config::Config,
    db::{tokens, users},
    devsvc::{Launch, PrivatePostgres, PrivateRedis},
    server::{self, Backends, Pools},
};

/// The service on the real listener over its own private PostgreSQL and
/// Redis, with `seed_users` users and a token.
pub struct BenchServer {
    pub addr: std::net::SocketAddr,
    pub token: String,
    pub pools: Pools,
    pub pg: PrivatePostgres,
    pub redis: PrivateRedis,
}

impl BenchServer {
    pub async fn start(seed_users: i64) -> Result<BenchServer> {
        eprintln!("starting private PostgreSQL and Redis…");
        let pg = tokio::task::spawn_blocking(PrivatePostgres::start).await??;
        let redis = tokio::task::spawn_blocking(PrivateRedis::start).await??;
        let (cfg, pools, token) = seeded(&pg, &redis, seed_users).await?;
        // The real listener, with its limits, as `spec-server serve` runs it.
        let listener = server::bind(&cfg).await?;
        let addr = listener.local_addr()?;
        let app = Arc::new(pools.app(&cfg)?);
        tokio::spawn(async move { server::serve(listener, app, &cfg, std::future::pending()).await });
        eprintln!("server on http://{addr}/api/v1; {seed_users} users seeded");
        Ok(BenchServer { addr, token, pools, pg, redis })
    }
}

/// How long each measurement runs (after a short warm-up).
pub const RUN: Duration = Duration::from_secs(5);
const WARMUP: Duration = Duration::from_millis(500);

pub fn emit(name: &str, value: f64, unit: &str, baseline: Option<f64>) {
    let ratio = baseline.filter(|b| *b > 0.0).map(|b| value / b);
    println!(
        "{}",
        json!({ "name": name, "value": round(value), "unit": unit, "baseline": baseline.map(round), "ratio": ratio.map(round) })
    );
}

pub fn round(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

pub struct Sample {
    pub ok: u64,
    pub errors: u64,
    pub latencies_us: Vec<u64>,
    /// What the failures were (status or error), for the report.
    pub kinds: std::collections::BTreeMap<String, u64>,
}

/// One request on a raw HTTP/1.1 keep-alive connection: a hand-rolled client
/// so that the load generator, sharing the machine's two cores with the
/// server, costs as little CPU as possible (a full client stack would be
/// measured as much as the server).
pub async fn roundtrip(stream: &mut tokio::net::TcpStream, request: &[u8], buf: &mut Vec<u8>) -> Result<u16> {
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
pub async fn load<F>(addr: std::net::SocketAddr, conns: usize, expect: u16, make: F) -> Result<Sample>
where
    F: Fn(u64) -> Vec<u8> + Send + Sync + 'static,
{
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
        anyhow::Ok(rt.block_on(load_on(addr, conns, expect, make)))
    })
    .await
    .context("the load generator thread failed")?
}

/// Runs requests made by `make` on `conns` keep-alive connections for `RUN`;
/// a response with status `expect` counts as a success.
async fn load_on<F>(addr: std::net::SocketAddr, conns: usize, expect: u16, make: F) -> Sample
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
                let ok = matches!(result, Ok(s) if s == expect);
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

pub fn get(path: &str, token: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: bench\r\ntoken: {token}\r\n\r\n").into_bytes()
}

pub fn post(path: &str, token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nhost: bench\r\ntoken: {token}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

pub fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// What wrk reported.
pub struct WrkResult {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub errors: u64,
}

pub fn wrk_path() -> Result<PathBuf> {
    which("wrk").context("wrk is not installed: `apt-get update && apt-get install -y wrk`")
}

pub fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(program)).find(|p| p.is_file())
}

/// `12.34us`, `1.20ms`, `2.00s` → ms.
fn wrk_ms(v: &str) -> Option<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.parse::<f64>().ok().map(|x| x * scale)
}

pub fn run_wrk(port: u16, conns: usize, duration: &str, script: &Path) -> Result<WrkResult> {
    let text = Launch::new(wrk_path()?)
        .args(["-t2", "--latency", "-d", duration, "-s"])
        .arg(script)
        .arg(format!("-c{conns}"))
        .arg(format!("http://127.0.0.1:{port}"))
        .output()
        .context("running wrk")?;
    let line = |prefix: &str| text.lines().map(str::trim).find_map(|l| l.strip_prefix(prefix).map(str::trim));
    let rps = line("Requests/sec:").and_then(|v| v.parse().ok()).with_context(|| format!("wrk printed:\n{text}"))?;
    let p50 = line("50%").and_then(wrk_ms).context("wrk printed no p50")?;
    let p99 = line("99%").and_then(wrk_ms).context("wrk printed no p99")?;
    let non_2xx = line("Non-2xx or 3xx responses:").and_then(|v| v.parse().ok()).unwrap_or(0);
    let socket_errors: u64 = line("Socket errors:")
        .map(|v| v.split(',').filter_map(|kv| kv.split_whitespace().last()?.parse::<u64>().ok()).sum())
        .unwrap_or(0);
    Ok(WrkResult { rps, p50_ms: p50, p99_ms: p99, errors: non_2xx + socket_errors })
}

/// Migrations, seeded users and a token, through the library (as `spec-server` would).
pub async fn prepare(pg: &PrivatePostgres, redis: &PrivateRedis, seed_users: i64) -> Result<String> {
    Ok(seeded(pg, redis, seed_users).await?.2)
}

/// What [`prepare`] does, keeping the config and pools for a server in this process.
async fn seeded(pg: &PrivatePostgres, redis: &PrivateRedis, seed_users: i64) -> Result<(Config, Pools, String)> {
    let mut cfg = Config::from_flags(&["--listen-addr", "127.0.0.1:0"])?;
    cfg.database_url = Some(pg.url());
    cfg.redis_url = Some(redis.url());
    let backends =
        Backends { database_url: pg.url(), redis_url: redis.url(), private_postgres: None, private_redis: None };
    let pools = Pools::new(&cfg, &backends)?;
    pools.migrate().await?;
    for i in 0..seed_users {
        let new = users::NewUser {
            username: format!("seed{i}"),
            email: format!("seed{i}@example.com"),
            password_hash: "x".into(),
        };
        users::user_create(&pools.pg, new).await?;
    }
    let (_, token) = tokens::token_issue(&pools.pg, "bench", None, None).await?;
    Ok((cfg, pools, token))
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
