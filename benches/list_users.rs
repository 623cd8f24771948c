//! `cargo xtask bench list_users`: listUsers over 1,000,000 users — a page of 20 by cursor
//! (`page_token`), by offset at page 1 and at page 10,000 — each reported as req/s beside
//! `pgbench -S -M prepared` on the same private PostgreSQL in the same run, as a ratio.
//! One JSON object per measurement on stdout; progress on stderr.

mod common;

use anyhow::{Context, Result, bail};
use common::{BenchServer, RUN, emit, get, load, pct};
use spec_server::devsvc::{self, Launch, PrivatePostgres};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `BENCH_USERS` overrides it (a smaller table for a quick look).
const USERS: i64 = 1_000_000;
const PAGE_SIZE: u32 = 20;
const DEEP_PAGE: u32 = 10_000;
/// Fewer connections than the other benches: an offset page over 1M rows takes tens of
/// milliseconds of a core, and 64 of them at once only measure the queue in front of the pool.
const CONNS: usize = 16;

/// The request path of the `i`th request of a case.
type PathOf = Box<dyn Fn(u64) -> String + Send + Sync>;

fn psql(pg: &PrivatePostgres, db: &str, sql: &str) -> Result<String> {
    let url = devsvc::url_with_database(&pg.url(), db)?;
    Launch::new(devsvc::pg_bindir()?.join("psql"))
        .named("psql")
        .arg(&url)
        .args(["-qAtc", sql])
        .output()
        .with_context(|| format!("psql: {sql}"))
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

/// `page_token`s to cycle through: chains of cursor pages from the start and from page
/// 10,000, so that the cursor figure covers shallow and deep positions alike.
async fn cursor_tokens(base: &str, token: &str) -> Result<Vec<String>> {
    let http = reqwest::Client::new();
    let mut tokens = Vec::new();
    for start in [1, DEEP_PAGE] {
        let mut url = format!("{base}/users?page={start}&page_size={PAGE_SIZE}");
        for _ in 0..50 {
            let body: serde_json::Value = http.get(&url).header("token", token).send().await?.json().await?;
            let Some(next) = body.pointer("/data/next_page_token").and_then(|v| v.as_str()) else {
                bail!("no next_page_token from {url}: {body}");
            };
            tokens.push(next.to_owned());
            url = format!("{base}/users?page_size={PAGE_SIZE}&page_token={next}");
        }
    }
    Ok(tokens)
}

#[tokio::main]
async fn main() -> Result<()> {
    let users: i64 = std::env::var("BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(USERS);
    let BenchServer { addr, token, pools, pg, redis } = BenchServer::start(0).await?;

    // One statement, no round trip per row: seconds for a million users. Distinct created_at
    // values a second apart, as real sign-ups have; VACUUM sets the visibility map so that the
    // offset pages' count is the index-only scan a live table would get.
    eprintln!("seeding {users} users…");
    let t0 = std::time::Instant::now();
    psql(
        &pg,
        "postgres",
        &format!(
            "INSERT INTO users (username, email, password_hash, created_at, updated_at)
             SELECT 'seed' || g, 'seed' || g || '@example.com', 'x',
                    now() - g * interval '1 second', now() - g * interval '1 second'
             FROM generate_series(1, {users}) g"
        ),
    )?;
    psql(&pg, "postgres", "VACUUM ANALYZE users")?;
    eprintln!("seeded in {:.1} s", t0.elapsed().as_secs_f64());

    psql(&pg, "postgres", "CREATE DATABASE pgbench")?;
    Launch::new(devsvc::pg_bindir()?.join("pgbench"))
        .named("pgbench -i")
        .args(["-i", "-q", "-s", "10"])
        .arg(devsvc::url_with_database(&pg.url(), "pgbench")?)
        .output()
        .context("initialising the pgbench database")?;

    eprintln!("pgbench -S -M prepared -c {CONNS}…");
    let tps = pgbench(&pg, CONNS)?;
    emit(&format!("pgbench.select_only.c{CONNS}"), tps, "tps", None);

    let base = format!("http://{addr}/api/v1");
    let tokens = cursor_tokens(&base, &token).await?;
    let cases: Vec<(&str, PathOf)> = vec![
        (
            "cursor",
            Box::new(move |i| {
                format!("/api/v1/users?page_size={PAGE_SIZE}&page_token={}", tokens[i as usize % tokens.len()])
            }),
        ),
        ("offset_page_1", Box::new(|_| format!("/api/v1/users?page=1&page_size={PAGE_SIZE}"))),
        ("offset_page_10000", Box::new(|_| format!("/api/v1/users?page={DEEP_PAGE}&page_size={PAGE_SIZE}"))),
    ];
    for (name, path) in cases {
        eprintln!("listUsers {name} at {CONNS} connections…");
        let t = token.clone();
        let s = load(addr, CONNS, 200, move |i| get(&path(i), &t)).await?;
        if s.ok == 0 {
            bail!("listUsers {name}: no request succeeded ({} errors: {:?})", s.errors, s.kinds);
        }
        let rps = s.ok as f64 / RUN.as_secs_f64();
        emit(&format!("http.list_users.{name}.c{CONNS}.throughput"), rps, "req/s", Some(tps));
        emit(&format!("http.list_users.{name}.c{CONNS}.p50"), pct(&s.latencies_us, 0.50), "ms", None);
        if s.errors > 0 {
            emit(&format!("http.list_users.{name}.c{CONNS}.errors"), s.errors as f64, "count", None);
        }
    }
    drop(pools);
    drop((pg, redis));
    Ok(())
}
