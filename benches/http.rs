//! `cargo xtask bench http`: throughput and latency of getUserById,
//! listUsers and createUser at 64 and 256 concurrent connections, against
//! `pgbench -S -M prepared` on the same private PostgreSQL in the same run.
//! One JSON object per measurement on stdout; progress on stderr.

mod common;

use anyhow::{Context, Result, bail};
use common::{BenchServer, RUN, Sample, emit, get, load, pct, post};
use serde_json::json;
use spec_server::devsvc::{self, Launch, PrivatePostgres};

/// The request path allocates a lot of small, short-lived objects (parsing, JSON, futures);
/// mimalloc handles that pattern with less time in the allocator than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SEED_USERS: i64 = 2000;

/// `pgbench -S -M prepared` TPS at `clients` on the same server.
fn pgbench(pg: &PrivatePostgres, clients: usize) -> Result<(f64, f64)> {
    let bin = devsvc::pg_bindir()?.join("pgbench");
    let url = devsvc::url_with_database(&pg.url(), "pgbench")?;
    let text = Launch::new(&bin)
        .args(["-S", "-M", "prepared", "-n", "-j", "2", "-T", "5"])
        .arg("-c")
        .arg(clients.to_string())
        .arg(&url)
        .output()
        .with_context(|| format!("running {}", bin.display()))?;
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
    let BenchServer { addr, token, pools, pg, redis } = BenchServer::start(SEED_USERS).await?;

    // pgbench's own database, initialised at scale 10.
    let bindir = devsvc::pg_bindir()?;
    let admin = devsvc::url_with_database(&pg.url(), "postgres")?;
    Launch::new(bindir.join("psql"))
        .arg(&admin)
        .args(["-qc", "CREATE DATABASE pgbench"])
        .output()
        .context("creating the pgbench database")?;
    Launch::new(bindir.join("pgbench"))
        .named("pgbench -i")
        .args(["-i", "-q", "-s", "10"])
        .arg(devsvc::url_with_database(&pg.url(), "pgbench")?)
        .output()
        .context("initialising the pgbench database")?;

    let quick = std::env::var_os("BENCH_QUICK").is_some();
    for conns in if quick { vec![64usize] } else { vec![64usize, 256] } {
        eprintln!("pgbench -S -M prepared -c {conns}…");
        let (tps, pg_latency) = pgbench(&pg, conns)?;
        emit(&format!("pgbench.select_only.c{conns}"), tps, "tps", None);

        eprintln!("getUserById at {conns} connections…");
        let t = token.clone();
        let s =
            load(addr, conns, 200, move |i| get(&format!("/api/v1/users/{}", 1 + (i as i64 % SEED_USERS)), &t)).await?;
        report("http.get_user_by_id", conns, &s, Some(tps), Some(pg_latency))?;

        if quick {
            continue;
        }
        eprintln!("listUsers at {conns} connections…");
        let t = token.clone();
        let s = load(addr, conns, 200, move |i| get(&format!("/api/v1/users?page={}&page_size=20", 1 + i % 50), &t))
            .await?;
        report("http.list_users", conns, &s, Some(tps), Some(pg_latency))?;

        eprintln!("createUser at {conns} connections (argon2id-bound)…");
        let t = token.clone();
        let s = load(addr, conns, 200, move |i| {
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
