//! Wiring: backends (configured or private), pools, migrations, the HTTP
//! server with its access log and graceful shutdown. `main` stays thin.

use std::{future::Future, sync::Arc, time::Instant};

use anyhow::{Context, Result};
use api_server::{ErrorCode, rt};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response, http::HeaderValue};
use tokio::net::TcpListener;
use tracing::Instrument;

use crate::{
    auth::TokenVerifier,
    config::Config,
    db,
    devsvc::{PrivatePostgres, PrivateRedis},
    http::{App, PageTokenKey},
    listener,
    queue::Backend,
    queue::Queue,
    redis_pool::{RedisManager, RedisPool, RedisTarget},
};

/// The URLs in use, and the private instances behind them when none were
/// configured (stopped when this is dropped).
pub struct Backends {
    pub database_url: String,
    pub redis_url: String,
    pub private_postgres: Option<PrivatePostgres>,
    pub private_redis: Option<PrivateRedis>,
}

impl Backends {
    /// Uses `DATABASE_URL`/`REDIS_URL`. With `private` (only `dev`), an
    /// unset one gets a private instance; otherwise unset is an error:
    /// `serve` and `worker` are separate processes, and private instances
    /// of their own could not see each other's users or tasks.
    pub async fn resolve(cfg: &Config, private: bool) -> Result<Backends> {
        if !private {
            let missing: Vec<&str> =
                [("DATABASE_URL", cfg.database_url.is_none()), ("REDIS_URL", cfg.redis_url.is_none())]
                    .into_iter()
                    .filter_map(|(name, unset)| unset.then_some(name))
                    .collect();
            if !missing.is_empty() {
                anyhow::bail!(
                    "{} not set. Separate `serve` and `worker` processes must share one PostgreSQL and one Redis, \
                     so they do not start private ones; set the URL(s), or run `spec-server dev` \
                     (server and worker in one process over private instances)",
                    missing.join(" and ")
                );
            }
        }
        let (database_url, private_postgres) = match &cfg.database_url {
            Some(url) => (url.clone(), None),
            None => {
                tracing::warn!("DATABASE_URL is not set: starting a private PostgreSQL (its data is temporary)");
                let pg = tokio::task::spawn_blocking(PrivatePostgres::start).await??;
                (pg.url(), Some(pg))
            }
        };
        let (redis_url, private_redis) = match &cfg.redis_url {
            Some(url) => (url.clone(), None),
            None => {
                tracing::warn!("REDIS_URL is not set: starting a private redis-server (its data is temporary)");
                let r = tokio::task::spawn_blocking(PrivateRedis::start).await??;
                (r.url(), Some(r))
            }
        };
        Ok(Backends { database_url, redis_url, private_postgres, private_redis })
    }
}

/// One pool per backend, plus two tiny ones that only `/health` uses, so a
/// saturated request pool is not reported as a dependency that is down.
pub struct Pools {
    pub pg: db::Pool,
    pub redis: RedisPool,
    health_pg: db::Pool,
    health_redis: RedisPool,
    /// The read replicas' pools (`DATABASE_REPLICA_URLS`); started with the application.
    replicas: db::replicas::ReplicaPools,
    /// For the connections a pool cannot lend: the token revocation subscription.
    redis_url: String,
    /// `REDIS_URL`, parsed: the queue's backend depends on it.
    redis_target: RedisTarget,
}

impl Pools {
    /// Builds both pools lazily: nothing connects until first use, so the
    /// server starts (and `/health` reports) even with a dependency down.
    pub fn new(cfg: &Config, b: &Backends) -> Result<Pools> {
        let pg = db::pool_pipelined(
            &b.database_url,
            cfg.pg_pool_max,
            cfg.pg_acquire_timeout(),
            cfg.pg_statement_timeout(),
            cfg.pg_pipeline_connections,
        )?;
        let redis_target = RedisTarget::parse(&b.redis_url)?;
        let manager = RedisManager::for_target(&redis_target, cfg.queue_config().response_timeout)
            .context("parsing REDIS_URL")?;
        let redis = bb8::Pool::builder()
            .max_size(cfg.redis_pool_max)
            .connection_timeout(cfg.pg_acquire_timeout())
            .build_unchecked(manager.clone());
        let health_pg = db::pool(&b.database_url, HEALTH_POOL_MAX, cfg.health_timeout(), cfg.health_timeout())?;
        let health_redis = bb8::Pool::builder()
            .max_size(HEALTH_POOL_MAX as u32)
            .connection_timeout(cfg.health_timeout())
            .build_unchecked(manager);
        let replicas = db::replicas::ReplicaPools::new(
            &b.database_url,
            cfg.replicas()?,
            cfg.pg_pool_max,
            cfg.pg_pipeline_connections,
            cfg.pg_acquire_timeout(),
            cfg.pg_statement_timeout(),
        )?;
        Ok(Pools { pg, redis, health_pg, health_redis, replicas, redis_url: b.redis_url.clone(), redis_target })
    }

    /// Refuses (unless `REDIS_ALLOW_VOLATILE`) a Redis that may lose
    /// accepted tasks: an eviction policy other than `noeviction` drops
    /// queue keys under memory pressure, and without AOF or RDB snapshots a
    /// restart empties the queue. Where `CONFIG GET` is not allowed (some
    /// managed services), a warning instead.
    pub async fn check_redis_durability(&self, cfg: &Config) -> Result<()> {
        let mut conn = self.redis.get().await.context("connecting to Redis to check its settings")?;
        // On a cluster every master is asked (the queue lives on one of them); replicas are
        // not, as the cluster connection holds connections to masters only.
        let mut nodes: std::collections::BTreeMap<String, [String; 3]> = Default::default();
        for (i, name) in ["maxmemory-policy", "appendonly", "save"].into_iter().enumerate() {
            match conn.config_get_everywhere(name).await {
                Ok(values) => {
                    for (node, value) in values {
                        nodes.entry(node).or_default()[i] = value;
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read the Redis configuration (CONFIG GET refused?): make sure it runs with maxmemory-policy noeviction and AOF or snapshots, or accepted tasks can be lost");
                    return Ok(());
                }
            }
        }
        let mut problems = Vec::new();
        for (node, [policy, aof, save]) in &nodes {
            let on = if node.is_empty() { String::new() } else { format!("on {node}: ") };
            if policy != "noeviction" {
                problems.push(format!(
                    "{on}maxmemory-policy is {policy:?} (it must be \"noeviction\": any other policy may delete queued tasks)"
                ));
            }
            if aof != "yes" && save.trim().is_empty() {
                problems.push(format!(
                    "{on}neither appendonly (AOF) nor save (RDB snapshots) is on, so a restart loses every task"
                ));
            }
        }
        if problems.is_empty() {
            return Ok(());
        }
        let problems = problems.join("; ");
        if cfg.redis_allow_volatile {
            tracing::warn!(%problems, "Redis may lose accepted tasks; allowed by REDIS_ALLOW_VOLATILE");
            return Ok(());
        }
        anyhow::bail!(
            "Redis may lose accepted tasks: {problems}. Fix the Redis configuration \
             (`CONFIG SET maxmemory-policy noeviction`, `CONFIG SET appendonly yes`), \
             or set REDIS_ALLOW_VOLATILE=true for development"
        )
    }

    /// Applies pending migrations from `sql/`.
    pub async fn migrate(&self) -> Result<Vec<&'static str>> {
        let mut client = self.pg.get().await.context("connecting to PostgreSQL to migrate")?;
        db::migrate::migrate(&mut client).await
    }

    /// The task queue: over the pool for one server; on a cluster over a cluster connection
    /// of its own (`Backend::cluster_lazy`), whose client also opens the workers' blocking
    /// connections with a response timeout longer than their wait.
    pub fn queue(&self, cfg: &Config) -> Result<Queue> {
        let q = cfg.queue_config();
        let backend = match &self.redis_target {
            RedisTarget::Single(_) => Backend::from(self.redis.clone()),
            // The shared connection's timeout also covers each enqueue's WAIT.
            RedisTarget::Cluster(seeds) => {
                let wait = if q.wait_replicas > 0 { q.wait_timeout } else { std::time::Duration::ZERO };
                Backend::cluster_lazy(
                    RedisTarget::cluster_client(seeds, q.response_timeout + wait, None)
                        .context("REDIS_URL cluster client")?,
                )
            }
        };
        Ok(Queue::new(backend, q))
    }

    pub fn tokens(&self, cfg: &Config) -> TokenVerifier {
        TokenVerifier::new(self.pg.clone(), self.redis.clone(), format!("{}:", cfg.redis_prefix))
            .with_cache_ttl(cfg.token_cache_ttl())
    }

    /// The application state. Its token verifier also keeps recently verified tokens in
    /// process, invalidated by Redis pub/sub, so the hot path needs no round trip to verify.
    pub fn app(&self, cfg: &Config) -> Result<App> {
        let tokens = self.tokens(cfg).with_local_cache(&self.redis_url, cfg.token_local_cache())?;
        match cfg.page_token_key.as_deref() {
            Some(k) if k.len() < MIN_PAGE_TOKEN_KEY => {
                anyhow::bail!("PAGE_TOKEN_KEY must be at least {MIN_PAGE_TOKEN_KEY} characters (it has {})", k.len())
            }
            Some(_) => {}
            None => tracing::warn!(
                "PAGE_TOKEN_KEY is not set: page tokens are signed with a random key of this process and stop working at a restart or on another instance"
            ),
        }
        let db = self.replicas.start(self.pg.clone(), self.redis.clone(), &self.redis_url, &cfg.redis_prefix)?;
        Ok(App {
            db,
            redis: self.redis.clone(),
            health_pg: self.health_pg.clone(),
            health_redis: self.health_redis.clone(),
            tokens,
            queue: self.queue(cfg)?,
            health_timeout: cfg.health_timeout(),
            throughput: Arc::new(crate::queue::eta::Throughput::default()),
            page_tokens: PageTokenKey::new(cfg.page_token_key.as_deref()),
        })
    }
}

/// 256 bits, if the key is random characters; a shorter key is refused at start.
const MIN_PAGE_TOKEN_KEY: usize = 32;

/// Connections of each `/health` pool: concurrent health checks share them
/// (each waits at most `HEALTH_TIMEOUT_MS`).
const HEALTH_POOL_MAX: usize = 2;

/// The whole HTTP endpoint: the generated application plus the body
/// limits, the dashboard's static files (`/admin`), the header limit and one
/// access-log line per request, tagged with a request id.
pub fn endpoint(app: Arc<App>, cfg: &Config) -> impl Endpoint<Output = Response> + use<> {
    if let Some(on) = cfg.response_checks {
        rt::set_response_checks(on);
    }
    let limits = rt::BodyLimits::new(cfg.body_limit_bytes, cfg.body_read_timeout(), cfg.body_buffer_total_bytes);
    let header_limit = cfg.header_limit_bytes;
    api_server::app(app)
        .data(limits)
        .around(move |next, req| header_limit_check(next, req, header_limit))
        .around(access_log)
}

/// Answers `431` in the contract's envelope when the request line and
/// headers exceed `HEADER_LIMIT_BYTES`. `/health` documents no `431` and reads
/// no header, so it is left to hyper's hard cap (`listener::Limits`). Then the
/// dashboard's static files at `/admin`, outside the API base path, and
/// everything else to the API.
async fn header_limit_check<E: Endpoint<Output = Response>>(
    next: Arc<E>,
    req: Request,
    limit: usize,
) -> poem::Result<Response> {
    let size = req.uri().path().len()
        + req.uri().query().map_or(0, str::len)
        + req.headers().iter().map(|(k, v)| k.as_str().len() + v.len() + 4).sum::<usize>();
    if size > limit && req.uri().path() != HEALTH_PATH.as_str() {
        let problem = ErrorCode::HeadersTooLarge
            .problem()
            .with_detail(format!("request line and headers take {size} bytes; at most {limit} are accepted"));
        return Ok(rt::json_response(problem.status, &crate::http::envelope(&problem)));
    }
    if let Some(asset) = crate::http::dashboard::answer(&req) {
        return Ok(asset);
    }
    next.call(req).await
}

static HEALTH_PATH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{}/health", api_server::BASE_PATH));

/// With tracing on, the span is the operation's (`telemetry::request_span`) and the line ends
/// with its trace id.
async fn access_log<E: Endpoint<Output = Response>>(next: Arc<E>, req: Request) -> poem::Result<Response> {
    // Kept as the header value it is echoed as: the client's is shared, not copied.
    let request_id = match req.headers().get("x-request-id") {
        Some(v) if v.len() <= 128 && v.to_str().is_ok() => v.clone(),
        _ => new_request_id(),
    };
    let span = if crate::telemetry::enabled() {
        let id = request_id.to_str().unwrap_or_default();
        crate::telemetry::request_span(id, req.method().as_str(), req.uri().path(), req.headers())
    } else {
        tracing::info_span!("request", request_id = %request_id.to_str().unwrap_or_default())
    };
    // Both are shared with the request (a method and a refcounted URI), not copied.
    let method = req.method().clone();
    let uri = req.uri().clone();
    let start = Instant::now();
    let mut resp = next.get_response(req).instrument(span.clone()).await.into_response();
    let latency = start.elapsed();
    let status = resp.status().as_u16();
    crate::metrics::record_request(&method, uri.path(), status, latency);
    if crate::telemetry::enabled() {
        crate::telemetry::record_status(&span, status);
    }
    if tracing::enabled!(tracing::Level::INFO) {
        let line = access_line(&method, uri.path(), status, latency);
        span.in_scope(|| tracing::info!("{line}"));
    }
    resp.headers_mut().insert("x-request-id", request_id);
    Ok(resp)
}

/// `access method=GET path=/api/v1/users/1 status=200 latency_ms=1.234`, the same text the
/// fmt layer wrote for these as event fields, built with plain appends: written field by
/// field, through `fmt` and the layer's (colourless) styling, it was a tenth of a
/// getUserById's instructions (callgrind). The latency is in whole microseconds, so no float
/// is formatted.
fn access_line(method: &poem::http::Method, path: &str, status: u16, latency: std::time::Duration) -> String {
    let mut line = String::with_capacity(64 + path.len());
    line.push_str("access method=");
    line.push_str(method.as_str());
    line.push_str(" path=");
    line.push_str(path);
    line.push_str(" status=");
    push_decimal(&mut line, u64::from(status));
    line.push_str(" latency_ms=");
    let us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    push_decimal(&mut line, us / 1000);
    line.push('.');
    let frac = us % 1000;
    if frac < 100 {
        line.push('0');
    }
    if frac < 10 {
        line.push('0');
    }
    push_decimal(&mut line, frac);
    line
}

fn push_decimal(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        // Below 10: a digit.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend(digits[at..].iter().map(|&d| char::from(d)));
}

/// A fresh request id, formatted on the stack.
fn new_request_id() -> HeaderValue {
    let mut buf = [0u8; uuid::fmt::Hyphenated::LENGTH];
    let id = crate::new_uuid().hyphenated().encode_lower(&mut buf);
    // Hex digits and hyphens are always a valid header value.
    HeaderValue::from_str(id).unwrap_or(HeaderValue::from_static("-"))
}

/// Starts the `/metrics` listener when `METRICS_ADDR` is set; `pg` names the PostgreSQL
/// request pools it reports (the server's primary and replicas, or the worker's primary).
pub async fn start_metrics(cfg: &Config, pools: &Pools, pg: Vec<(String, db::Pool)>) -> Result<()> {
    if let Some(addr) = cfg.metrics_addr {
        let sources = crate::metrics::Sources::new(pg, pools.redis.clone(), cfg.redis_pool_max, pools.queue(cfg)?);
        crate::metrics::spawn(addr, sources).await?;
    }
    Ok(())
}

/// A bound listener, so callers (and tests, with port 0) know the address
/// before serving.
pub async fn bind(cfg: &Config) -> Result<TcpListener> {
    TcpListener::bind(cfg.listen_addr).await.with_context(|| format!("binding {}", cfg.listen_addr))
}

/// Serves until `shutdown` resolves, then stops accepting and lets in-flight
/// requests finish for up to the configured grace period.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    cfg: &Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<()> {
    listener::serve(listener, endpoint(app, cfg), cfg.listener_limits(), shutdown, cfg.shutdown_grace())
        .await
        .context("HTTP server")
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; Ctrl-C only");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn access_lines_read_as_fields() {
        let line = access_line(&poem::http::Method::GET, "/api/v1/users/7", 200, Duration::from_micros(1_234));
        assert_eq!(line, "access method=GET path=/api/v1/users/7 status=200 latency_ms=1.234");
        let line = access_line(&poem::http::Method::POST, "/x", 404, Duration::from_micros(12_005_007));
        assert_eq!(line, "access method=POST path=/x status=404 latency_ms=12005.007");
        assert!(access_line(&poem::http::Method::PUT, "/", 500, Duration::ZERO).ends_with("latency_ms=0.000"));
        assert!(
            access_line(&poem::http::Method::PUT, "/", 500, Duration::from_micros(40)).ends_with("latency_ms=0.040")
        );
    }
}
