//! Prometheus metrics on their own listener (`METRICS_ADDR`), apart from the public port and
//! the contract. Requests and task handlers record into process-wide series registered once
//! (`install`); pool and queue gauges are read when scraped.
//!
//! Request path cost: one table lookup of the operation (no allocation), one atomic increment
//! and one histogram observation on series created at start-up. Nothing is recorded until
//! `install` ran, so a process without `METRICS_ADDR` pays one atomic load per request.

use std::{
    net::SocketAddr,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use poem::{EndpointExt, Route, get, handler, http::StatusCode, web::Data};
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::sync::Mutex;

use crate::{db, queue::Queue, redis_pool::RedisPool};

/// Request latencies are milliseconds to a few seconds (the body read timeout is 30 s).
const LATENCY_BUCKETS: [f64; 14] =
    [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// Task handlers send mail and page through upstreams: tens of ms to minutes.
const HANDLER_BUCKETS: [f64; 12] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0];

/// A checkout from a pool with idle connections takes microseconds; waits end at
/// `PG_ACQUIRE_TIMEOUT_MS` (2 s by default).
const CHECKOUT_BUCKETS: [f64; 12] = [0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.0];

/// Statuses given a series of their own at start-up, so counting one needs no label lookup;
/// any other status (rare) goes through the family's map.
const COMMON_STATUSES: [u16; 19] =
    [200, 201, 202, 204, 304, 400, 401, 403, 404, 405, 409, 412, 413, 415, 422, 429, 431, 500, 503];

/// How long a scrape reuses the queue's stats, so scrapers cannot hammer Redis.
const QUEUE_STATS_TTL: Duration = Duration::from_secs(1);
/// A scrape does not wait longer than this for Redis; the last stats are served instead.
const QUEUE_STATS_TIMEOUT: Duration = Duration::from_millis(500);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PoolLabels {
    pool: String,
    backend: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PriorityLabels {
    priority: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabels {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    kind: String,
}

/// One operation's series, looked up by its index in `api_server::OPERATIONS`.
struct OperationSeries {
    latency: Histogram,
    statuses: [(u16, Counter); COMMON_STATUSES.len()],
}

/// Every family, registered once per process.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    /// `api_server::OPERATIONS` in order, then `unknown`.
    operations: Vec<OperationSeries>,
    handler_latency: Family<KindLabels, Histogram>,
    pool_size: Family<PoolLabels, Gauge>,
    pool_available: Family<PoolLabels, Gauge>,
    pool_waiting: Family<PoolLabels, Gauge>,
    pool_max: Family<PoolLabels, Gauge>,
    pool_pipelined: Family<PoolLabels, Gauge>,
    pool_waited: Family<PoolLabels, Gauge>,
    pool_wait_seconds: Family<PoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pool_timed_out: Family<PoolLabels, Gauge>,
    queue_pending: Family<PriorityLabels, Gauge>,
    queue_tasks: Family<StateLabels, Gauge>,
    queue_oldest_age: Gauge<f64, std::sync::atomic::AtomicU64>,
    queue_totals: Family<StateLabels, Gauge>,
    queue_up: Gauge,
    enqueued: Counter,
    reaped: Counter,
    pg_checkout: Histogram,
}

static METRICS: OnceLock<Metrics> = OnceLock::new();

/// The label of requests no operation matched.
pub const UNKNOWN_OPERATION: &str = "unknown";

fn latency_histogram() -> Histogram {
    Histogram::new(LATENCY_BUCKETS)
}

fn handler_histogram() -> Histogram {
    Histogram::new(HANDLER_BUCKETS)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("spec_server");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency =
            Family::<OperationLabels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let names = api_server::OPERATIONS.iter().map(|(_, _, id)| *id).chain([UNKNOWN_OPERATION]);
        let operations = names
            .map(|operation| OperationSeries {
                latency: latency.get_or_create(&OperationLabels { operation }).clone(),
                statuses: COMMON_STATUSES
                    .map(|status| (status, requests.get_or_create(&RequestLabels { operation, status }).clone())),
            })
            .collect();
        registry.register("http_requests", "Requests answered, by operationId and status code", requests.clone());
        registry.register("http_request_duration_seconds", "Time to answer a request, by operationId", latency);
        let handler_latency =
            Family::<KindLabels, Histogram>::new_with_constructor(handler_histogram as fn() -> Histogram);
        registry.register(
            "task_handler_duration_seconds",
            "Time a task handler ran, by task kind (worker processes)",
            handler_latency.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<PoolLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let pool_size = gauge("pool_connections", "Connections open in the pool");
        let pool_available = gauge("pool_idle_connections", "Open connections not lent out");
        let pool_waiting = gauge("pool_waiting", "Requests waiting for a connection (PostgreSQL pools)");
        let pool_max = gauge("pool_max_connections", "Most connections the pool may open");
        let pool_pipelined = gauge(
            "pool_pipelined_connections",
            "Shared pipelined connections open beside the pool (PostgreSQL: PG_PIPELINE_CONNECTIONS)",
        );
        let pool_waited = gauge("pool_checkouts_waited", "Checkouts that had to wait for a connection (Redis pool)");
        let pool_timed_out =
            gauge("pool_checkouts_timed_out", "Checkouts that gave up waiting for a connection (Redis pool)");
        let pool_wait_seconds = Family::<PoolLabels, Gauge<f64, std::sync::atomic::AtomicU64>>::default();
        registry.register(
            "pool_checkout_wait_seconds",
            "Total time checkouts waited for a connection (Redis pool)",
            pool_wait_seconds.clone(),
        );
        let queue_pending = Family::<PriorityLabels, Gauge>::default();
        registry.register("queue_pending", "Tasks ready to run, by priority", queue_pending.clone());
        let queue_tasks = Family::<StateLabels, Gauge>::default();
        registry.register(
            "queue_tasks",
            "Tasks by state: active (leased), scheduled, retry (waiting to retry), dead and completed (retained)",
            queue_tasks.clone(),
        );
        let queue_oldest_age = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register(
            "queue_oldest_pending_age_seconds",
            "How long the oldest ready task has waited since it was enqueued",
            queue_oldest_age.clone(),
        );
        let queue_totals = Family::<StateLabels, Gauge>::default();
        registry.register(
            "queue_outcomes",
            "Totals Redis keeps since the queue was created: completed (processed), failed (attempts that will be \
             retried or died, expired leases included), dead, reaped_unstarted (expired leases whose handler never started)",
            queue_totals.clone(),
        );
        let queue_up = Gauge::default();
        registry.register(
            "queue_stats_up",
            "1 if the last read of the queue's stats from Redis succeeded",
            queue_up.clone(),
        );
        let enqueued = Counter::default();
        registry.register(
            "queue_enqueued",
            "Tasks this process stored in the queue (duplicates of a held unique key not included)",
            enqueued.clone(),
        );
        let reaped = Counter::default();
        registry.register(
            "queue_lease_reaps",
            "Expired leases this process's reaper returned to the queue",
            reaped.clone(),
        );
        let pg_checkout = Histogram::new(CHECKOUT_BUCKETS);
        registry.register(
            "pg_checkout_wait_seconds",
            "Time store calls waited for a PostgreSQL connection (any request pool), failed waits included",
            pg_checkout.clone(),
        );
        Metrics {
            registry,
            pg_checkout,
            enqueued,
            reaped,
            requests,
            operations,
            handler_latency,
            pool_size,
            pool_available,
            pool_waiting,
            pool_max,
            pool_pipelined,
            pool_waited,
            pool_wait_seconds,
            pool_timed_out,
            queue_pending,
            queue_tasks,
            queue_oldest_age,
            queue_totals,
            queue_up,
        }
    }

    fn record_request(&self, method: &str, path: &str, status: u16, latency: Duration) {
        let at = rt_operation(method, path).unwrap_or(api_server::OPERATIONS.len());
        let Some(series) = self.operations.get(at) else { return };
        series.latency.observe(latency.as_secs_f64());
        match series.statuses.iter().find(|(s, _)| *s == status) {
            Some((_, c)) => {
                c.inc();
            }
            None => {
                let operation = operation_name(at);
                self.requests.get_or_create(&RequestLabels { operation, status }).inc();
            }
        }
    }
}

fn rt_operation(method: &str, path: &str) -> Option<usize> {
    api_server::rt::operation_for(api_server::OPERATIONS, api_server::BASE_PATH, method, path)
}

fn operation_name(at: usize) -> &'static str {
    api_server::OPERATIONS.get(at).map_or(UNKNOWN_OPERATION, |(_, _, id)| *id)
}

/// Registers every family (once per process); from then on requests and task handlers record.
pub fn install() -> &'static Metrics {
    METRICS.get_or_init(Metrics::new)
}

/// Called by the access log for every response.
pub fn record_request(method: &poem::http::Method, path: &str, status: u16, latency: Duration) {
    if let Some(m) = METRICS.get() {
        m.record_request(method.as_str(), path, status, latency);
    }
}

/// Called by the worker when a handler returns (or panics, or times out).
pub fn record_handler(kind: &str, took: Duration) {
    if let Some(m) = METRICS.get() {
        // Task kinds are few and a task takes far longer than this lookup; no need to pre-register.
        m.handler_latency.get_or_create(&KindLabels { kind: kind.to_owned() }).observe(took.as_secs_f64());
    }
}

/// Called where store calls take a PostgreSQL connection (`db::conn`).
pub fn record_pg_checkout(waited: Duration) {
    if let Some(m) = METRICS.get() {
        m.pg_checkout.observe(waited.as_secs_f64());
    }
}

/// Called by the queue for the tasks an enqueue stored.
pub fn record_enqueued(n: usize) {
    if let Some(m) = METRICS.get() {
        m.enqueued.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// Called by the worker's maintenance with how many expired leases a reap returned.
pub fn record_reaped(n: usize) {
    if let Some(m) = METRICS.get() {
        m.reaped.inc_by(u64::try_from(n).unwrap_or(u64::MAX));
    }
}

/// What a scrape reads besides the recorded series: the pools and the queue.
pub struct Sources {
    pub pg: Vec<(String, db::Pool)>,
    pub redis: RedisPool,
    pub queue: Queue,
    /// `REDIS_POOL_MAX`: bb8 does not report its own limit.
    pub redis_max: u32,
    cached: Mutex<Option<(Instant, crate::queue::Stats)>>,
}

impl Sources {
    pub fn new(pg: Vec<(String, db::Pool)>, redis: RedisPool, redis_max: u32, queue: Queue) -> Sources {
        Sources { pg, redis, queue, redis_max, cached: Mutex::new(None) }
    }

    /// The queue's stats, at most [`QUEUE_STATS_TTL`] old; `None` if Redis did not answer in
    /// time and nothing was cached. One lock, so concurrent scrapes share one read.
    async fn queue_stats(&self) -> Option<crate::queue::Stats> {
        let mut cached = self.cached.lock().await;
        if let Some((at, s)) = cached.as_ref()
            && at.elapsed() < QUEUE_STATS_TTL
        {
            return Some(s.clone());
        }
        match tokio::time::timeout(QUEUE_STATS_TIMEOUT, self.queue.stats()).await {
            Ok(Ok(s)) => {
                *cached = Some((Instant::now(), s.clone()));
                Some(s)
            }
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "metrics: reading the queue stats failed");
                None
            }
            Err(_) => {
                tracing::debug!("metrics: reading the queue stats timed out");
                None
            }
        }
    }
}

fn to_i64(n: impl TryInto<i64>) -> i64 {
    n.try_into().unwrap_or(i64::MAX)
}

impl Metrics {
    async fn refresh(&self, src: &Sources) {
        for (name, pool) in &src.pg {
            let s = pool.status();
            let l = PoolLabels { pool: name.clone(), backend: "postgres" };
            self.pool_size.get_or_create(&l).set(to_i64(s.size));
            self.pool_available.get_or_create(&l).set(to_i64(s.available));
            self.pool_waiting.get_or_create(&l).set(to_i64(s.waiting));
            self.pool_max.get_or_create(&l).set(to_i64(s.max_size));
            self.pool_pipelined.get_or_create(&l).set(to_i64(pool.pipelined_open()));
        }
        let s = src.redis.state();
        let l = PoolLabels { pool: "main".to_owned(), backend: "redis" };
        self.pool_size.get_or_create(&l).set(i64::from(s.connections));
        self.pool_available.get_or_create(&l).set(i64::from(s.idle_connections));
        self.pool_max.get_or_create(&l).set(i64::from(src.redis_max));
        self.pool_waited.get_or_create(&l).set(to_i64(s.statistics.get_waited));
        self.pool_timed_out.get_or_create(&l).set(to_i64(s.statistics.get_timed_out));
        self.pool_wait_seconds.get_or_create(&l).set(s.statistics.get_wait_time.as_secs_f64());
        match src.queue_stats().await {
            Some(q) => {
                self.queue_up.set(1);
                for (p, n) in &q.pending {
                    self.queue_pending.get_or_create(&PriorityLabels { priority: p.as_str() }).set(to_i64(*n));
                }
                for (state, n) in [
                    ("active", q.active),
                    ("scheduled", q.scheduled),
                    ("retry", q.retry),
                    ("dead", q.dead),
                    ("completed", q.completed),
                ] {
                    self.queue_tasks.get_or_create(&StateLabels { state }).set(to_i64(n));
                }
                for (state, n) in [
                    ("completed", q.total_completed),
                    ("failed", q.total_failed),
                    ("dead", q.total_dead),
                    ("reaped_unstarted", q.total_unstarted),
                ] {
                    self.queue_totals.get_or_create(&StateLabels { state }).set(to_i64(n));
                }
                self.queue_oldest_age.set(q.oldest_pending_age.as_secs_f64());
            }
            None => {
                self.queue_up.set(0);
            }
        }
    }

    fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

#[handler]
async fn scrape(Data(src): Data<&Arc<Sources>>) -> poem::Response {
    let m = install();
    m.refresh(src).await;
    match m.encode() {
        Ok(body) => poem::Response::builder()
            .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "metrics: encoding failed");
            StatusCode::INTERNAL_SERVER_ERROR.into()
        }
    }
}

/// Binds `addr` and serves `/metrics` there until the process exits. Binding is done before
/// returning, so a taken port fails the start.
pub async fn spawn(addr: SocketAddr, sources: Sources) -> Result<SocketAddr> {
    install();
    let listener = tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding METRICS_ADDR {addr}"))?;
    let local = listener.local_addr().context("reading the metrics listener's address")?;
    let app = Route::new().at("/metrics", get(scrape)).data(Arc::new(sources));
    let acceptor = poem::listener::TcpAcceptor::from_tokio(listener).context("metrics listener")?;
    tokio::spawn(async move {
        if let Err(e) = poem::Server::new_with_acceptor(acceptor).run(app).await {
            tracing::error!(error = %e, "metrics listener stopped");
        }
    });
    tracing::info!(addr = %local, "metrics at /metrics");
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_counted_under_their_operation() {
        let m = Metrics::new();
        let base = api_server::BASE_PATH;
        m.record_request("GET", &format!("{base}/users/42"), 200, Duration::from_millis(3));
        m.record_request("GET", &format!("{base}/users/42"), 599, Duration::from_millis(3));
        m.record_request("GET", "/nowhere", 404, Duration::from_millis(1));
        let text = m.encode().expect("encodes");
        assert!(text.contains("spec_server_http_requests_total{operation=\"getUserById\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("spec_server_http_requests_total{operation=\"getUserById\",status=\"599\"} 1"), "{text}");
        assert!(text.contains("spec_server_http_requests_total{operation=\"unknown\",status=\"404\"} 1"), "{text}");
        assert!(
            text.contains("spec_server_http_request_duration_seconds_count{operation=\"getUserById\"} 2"),
            "{text}"
        );
        assert!(
            text.contains("spec_server_http_request_duration_seconds_bucket{le=\"0.005\",operation=\"getUserById\"} 2"),
            "{text}"
        );
    }
}
