//! The one configuration struct, read from the environment (and flags).
//! Every variable is listed, with its default, in the README.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use crate::{listener, queue::QueueConfig};

/// The soft open-file limit, raised to the hard one first (the default soft
/// limit is often 1024, far below what a server needs).
fn open_file_limit() -> Option<usize> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    let soft = if soft < hard && setrlimit(Resource::RLIMIT_NOFILE, hard, hard).is_ok() { hard } else { soft };
    usize::try_from(soft).ok()
}

/// How log lines are written (`LOG_FORMAT`); any other value is refused at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: a private PostgreSQL is started from the local
    /// binaries for the life of the process (dev and tests).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL: `redis://host:port` for one server, or
    /// `redis+cluster://host1:port1,host2:port2` (seed nodes) for a Redis Cluster, which
    /// every Redis user of the binary then goes through. Unset: a private redis-server is
    /// started likewise.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Address of the Prometheus `/metrics` listener, apart from `LISTEN_ADDR` so metrics stay
    /// off the public port and out of the contract. Unset: no metrics listener.
    #[arg(long, env = "METRICS_ADDR")]
    pub metrics_addr: Option<SocketAddr>,

    /// OTLP/HTTP (protobuf) collector base URL, e.g. `http://127.0.0.1:4318` (Jaeger's or the
    /// OpenTelemetry Collector's OTLP HTTP port); spans go to `<url>/v1/traces`
    /// (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`, read by the exporter, names the full URL instead).
    /// Unset: no spans are made at all, so tracing costs the request path nothing.
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otel_exporter_otlp_endpoint: Option<String>,

    /// `service.name` of the exported spans. Unset: `spec-server`, or `spec-server-worker`
    /// for the `worker` subcommand.
    #[arg(long, env = "OTEL_SERVICE_NAME")]
    pub otel_service_name: Option<String>,

    /// `text` (one human-readable line per event) or `json` (one JSON object per line). With
    /// tracing on, both carry the trace and span ids of the span the event belongs to.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: LogFormat,

    /// PostgreSQL read replicas, comma-separated URLs (streaming standbys of
    /// `DATABASE_URL`). Reads that may be slightly stale go to a fresh one;
    /// see the README's "Read replicas". Unset: every query goes to the primary.
    #[arg(long, env = "DATABASE_REPLICA_URLS", value_delimiter = ',', hide_env_values = true)]
    pub database_replica_urls: Vec<String>,

    /// A replica further behind the primary than this, in ms, serves no reads
    /// until it catches up.
    #[arg(long, env = "REPLICA_MAX_LAG_MS", default_value_t = 1000)]
    pub replica_max_lag_ms: u64,

    /// How often each replica's lag is checked, in ms; at most half of
    /// `REPLICA_MAX_LAG_MS`, so a replica falling behind is noticed before
    /// its lag can pass the limit unseen.
    #[arg(long, env = "REPLICA_CHECK_INTERVAL_MS", default_value_t = 250)]
    pub replica_check_interval_ms: u64,

    /// Most PostgreSQL connections in the pool.
    #[arg(long, env = "PG_POOL_MAX", default_value_t = 25)]
    pub pg_pool_max: usize,

    /// Shared PostgreSQL connections (per database: the primary, each replica) that carry
    /// many single-row reads at once (`getUserById`), beside the pool; 0 = reads take a pooled
    /// connection each.
    #[arg(long, env = "PG_PIPELINE_CONNECTIONS", default_value_t = 2)]
    pub pg_pipeline_connections: usize,

    /// Longest wait for a pooled PostgreSQL connection (or a new one), in ms.
    #[arg(long, env = "PG_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub pg_acquire_timeout_ms: u64,

    /// Server-side `statement_timeout` for every query, in ms.
    #[arg(long, env = "PG_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub pg_statement_timeout_ms: u64,

    /// Most Redis connections in the pool (blocking worker connections are extra). On a
    /// cluster, most concurrent checkouts of the one shared cluster connection.
    #[arg(long, env = "REDIS_POOL_MAX", default_value_t = 32)]
    pub redis_pool_max: u32,

    /// Start even when Redis may lose accepted tasks (an eviction policy
    /// other than `noeviction`, or no AOF and no snapshots). For
    /// development only; `serve` and `worker` refuse such a Redis otherwise.
    #[arg(long, env = "REDIS_ALLOW_VOLATILE", default_value_t = false, action = clap::ArgAction::Set)]
    pub redis_allow_volatile: bool,

    /// Check every response a handler returns against the contract (types,
    /// required fields, formats, lengths, ranges); a violation is logged
    /// with the operation and the JSON path and answered as a 500. Unset:
    /// on in debug builds (tests), off in release builds.
    #[arg(long, env = "RESPONSE_CHECKS", action = clap::ArgAction::Set)]
    pub response_checks: Option<bool>,

    /// How long a task-queue call waits for Redis's reply, in ms, before it
    /// counts as failed in transit and is repeated (queue calls are safe to
    /// repeat). Applied to the pooled connections the queue uses and, on top
    /// of the wait, to the workers' blocking ones. redis-rs would use 500 ms,
    /// which an fsync stall or a long script can exceed on a healthy server.
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_response_timeout_ms: u64,

    /// Replicas that must acknowledge each task submission before it is answered: after the
    /// enqueue script, `WAIT n REDIS_WAIT_TIMEOUT_MS` on the same connection (on a cluster, on
    /// the master holding the queue). 0 = answer once the master has it; a failover can then
    /// lose the last writes (see the README's "Redis Cluster").
    #[arg(long, env = "REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,

    /// Longest `WAIT` for `REDIS_WAIT_REPLICAS`, in ms; fewer acknowledgements in time fail
    /// the submission (an error answer, though the task may still run).
    #[arg(long, env = "REDIS_WAIT_TIMEOUT_MS", default_value_t = 500)]
    pub redis_wait_timeout_ms: u64,

    /// Prefix of every Redis key this service writes (queue and token cache).
    #[arg(long, env = "REDIS_PREFIX", default_value = "spec-server")]
    pub redis_prefix: String,

    /// How long a verified token stays cached in Redis, in seconds.
    #[arg(long, env = "TOKEN_CACHE_TTL_SECS", default_value_t = 60)]
    pub token_cache_ttl_secs: u64,

    /// How long this process trusts a token it verified, without asking Redis, in ms (0 = off).
    /// Revocations reach every process at once over Redis pub/sub; this bounds a lost message.
    #[arg(long, env = "TOKEN_LOCAL_CACHE_MS", default_value_t = 5000)]
    pub token_local_cache_ms: u64,

    /// Per-dependency timeout of `/health`, in ms (both run concurrently, so
    /// the answer comes within about this long even when one hangs).
    #[arg(long, env = "HEALTH_TIMEOUT_MS", default_value_t = 500)]
    pub health_timeout_ms: u64,

    /// Largest request body accepted, in bytes; larger ones get a 400 envelope (code 1010).
    #[arg(long, env = "BODY_LIMIT_BYTES", default_value_t = 1024 * 1024)]
    pub body_limit_bytes: usize,

    /// Most request-body bytes all requests together may buffer at once;
    /// a request waits for room (within its body read timeout). Bounds
    /// memory however many connections upload at once.
    #[arg(long, env = "BODY_BUFFER_TOTAL_BYTES", default_value_t = 256 * 1024 * 1024)]
    pub body_buffer_total_bytes: usize,

    /// Longest time a request body may take to arrive, in ms; a slower one
    /// gets a 400 envelope (code 1008).
    #[arg(long, env = "BODY_READ_TIMEOUT_MS", default_value_t = 30_000)]
    pub body_read_timeout_ms: u64,

    /// Longest request line plus headers, in bytes; larger ones get a 431
    /// envelope (code 1015). Heads over four times this are refused by the
    /// HTTP layer itself (an empty 431) before any buffer grows further.
    #[arg(long, env = "HEADER_LIMIT_BYTES", default_value_t = 16 * 1024)]
    pub header_limit_bytes: usize,

    /// Longest time a client may take to send a request's line and headers,
    /// in ms, once it started; then the connection is closed.
    #[arg(long, env = "HEADER_READ_TIMEOUT_MS", default_value_t = 10_000)]
    pub header_read_timeout_ms: u64,

    /// A connection with no request running and no byte moving for this
    /// long is closed, in ms (idle keep-alive, or a client not reading its
    /// response).
    #[arg(long, env = "IDLE_TIMEOUT_MS", default_value_t = 60_000)]
    pub idle_timeout_ms: u64,

    /// Most client connections served at once. Past it the server stops
    /// accepting and new connections wait in the kernel's backlog. Lowered
    /// at start if the process may not open that many files.
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = 4096)]
    pub max_connections: usize,

    /// How long in-flight requests may finish after SIGTERM/SIGINT, in seconds.
    #[arg(long, env = "SHUTDOWN_GRACE_SECS", default_value_t = 10)]
    pub shutdown_grace_secs: u64,

    /// SMTP server for email tasks: `smtp://host:port` (plain),
    /// `smtp://host:587?tls=required` (STARTTLS), `smtps://host:465` (TLS);
    /// `user:pass@` for authentication. Unset: messages are written to `MAIL_DIR`.
    #[arg(long, env = "SMTP_URL")]
    pub smtp_url: Option<String>,

    /// Sender address of email tasks (`From`, and the domain of each `Message-ID`).
    #[arg(long, env = "MAIL_FROM", default_value = "spec-server@localhost")]
    pub mail_from: String,

    /// Without `SMTP_URL`, each email task is written here as `<task id>.eml`
    /// (a retry overwrites its own file), so no message is silently dropped.
    #[arg(long, env = "MAIL_DIR", default_value = "./var/mail")]
    pub mail_dir: PathBuf,

    /// Base URL of the upstream that sync tasks page through (see the README's
    /// sync protocol). Unset: sync tasks fail permanently, saying so.
    #[arg(long, env = "SYNC_SOURCE_URL")]
    pub sync_source_url: Option<String>,

    /// Timeout of each request to `SYNC_SOURCE_URL`, in ms; a timeout is retried.
    #[arg(long, env = "SYNC_HTTP_TIMEOUT_MS", default_value_t = 30_000)]
    pub sync_http_timeout_ms: u64,

    /// Tasks one worker process runs at once.
    #[arg(long, env = "WORKER_CONCURRENCY", default_value_t = 10)]
    pub worker_concurrency: usize,

    /// How long running tasks may finish after SIGTERM/SIGINT, in seconds;
    /// the rest are requeued at the head of their priority.
    #[arg(long, env = "WORKER_GRACE_SECS", default_value_t = 10)]
    pub worker_grace_secs: u64,

    /// How long a worker holds a task without renewing its lease, in seconds.
    /// Running tasks renew it every third of this; a crashed worker's tasks
    /// run again about this long after the crash.
    #[arg(long, env = "QUEUE_LEASE_SECS", default_value_t = 30)]
    pub queue_lease_secs: u64,

    /// The key that signs `listUsers` page tokens (HMAC-SHA256), at least 32
    /// characters; every instance behind one address needs the same one.
    /// Unset: a random key per process, so tokens stop working at a restart
    /// and on other instances (a warning says so).
    #[arg(long, env = "PAGE_TOKEN_KEY", hide_env_values = true)]
    pub page_token_key: Option<String>,
}

/// The read-replica settings, validated ([`Config::replicas`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaSettings {
    pub urls: Vec<String>,
    pub max_lag: Duration,
    pub check_interval: Duration,
}

/// `Config` on its own, for [`Config::from_flags`].
#[derive(clap::Parser)]
struct Standalone {
    #[command(flatten)]
    config: Config,
}

impl Config {
    /// The settings the binary would read, with `flags` (`["--redis-prefix",
    /// "x"]`) on top: how tests, benches and drills build a `Config` without
    /// declaring a CLI of their own.
    pub fn from_flags(flags: &[&str]) -> Result<Config, clap::Error> {
        use clap::Parser;
        let argv = std::iter::once("spec-server").chain(flags.iter().copied());
        Standalone::try_parse_from(argv).map(|s| s.config)
    }

    pub fn pg_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.pg_acquire_timeout_ms)
    }

    /// The replica settings, checked: the configured URLs without blanks
    /// (a trailing comma is not a replica), the lag limit and check interval.
    pub fn replicas(&self) -> anyhow::Result<ReplicaSettings> {
        let urls: Vec<String> =
            self.database_replica_urls.iter().map(|u| u.trim()).filter(|u| !u.is_empty()).map(str::to_owned).collect();
        if self.replica_max_lag_ms == 0 {
            anyhow::bail!("REPLICA_MAX_LAG_MS must be more than 0");
        }
        if self.replica_check_interval_ms == 0 {
            anyhow::bail!("REPLICA_CHECK_INTERVAL_MS must be more than 0");
        }
        if self.replica_check_interval_ms.saturating_mul(2) > self.replica_max_lag_ms {
            anyhow::bail!(
                "REPLICA_CHECK_INTERVAL_MS ({}) must be at most half of REPLICA_MAX_LAG_MS ({}): a replica is \
                 judged only at each check, so a longer interval would let its lag pass the limit unseen",
                self.replica_check_interval_ms,
                self.replica_max_lag_ms
            );
        }
        Ok(ReplicaSettings {
            urls,
            max_lag: Duration::from_millis(self.replica_max_lag_ms),
            check_interval: Duration::from_millis(self.replica_check_interval_ms),
        })
    }

    pub fn pg_statement_timeout(&self) -> Duration {
        Duration::from_millis(self.pg_statement_timeout_ms)
    }

    pub fn token_local_cache(&self) -> Duration {
        Duration::from_millis(self.token_local_cache_ms)
    }

    pub fn health_timeout(&self) -> Duration {
        Duration::from_millis(self.health_timeout_ms)
    }

    pub fn token_cache_ttl(&self) -> Duration {
        Duration::from_secs(self.token_cache_ttl_secs)
    }

    pub fn body_read_timeout(&self) -> Duration {
        Duration::from_millis(self.body_read_timeout_ms)
    }

    /// The listener's limits. `max_connections` is capped so that the
    /// connections, the pools and a margin fit in the open-file limit: past
    /// it `accept` would fail with EMFILE instead of connections waiting.
    pub fn listener_limits(&self) -> listener::Limits {
        // Each replica has a request pool as large as the primary's, its pipelined
        // connections and a check connection.
        let per_db = self.pg_pool_max + self.pg_pipeline_connections;
        let replica_files = self.database_replica_urls.len() * (per_db + 1);
        let reserved = per_db + replica_files + self.redis_pool_max as usize + 64;
        let files = open_file_limit();
        let max_connections = match files {
            Some(n) if self.max_connections + reserved > n => {
                let capped = n.saturating_sub(reserved).max(1);
                tracing::warn!(
                    configured = self.max_connections,
                    capped,
                    open_file_limit = n,
                    "MAX_CONNECTIONS lowered to fit the open-file limit (raise `ulimit -n` for more)"
                );
                capped
            }
            _ => self.max_connections.max(1),
        };
        listener::Limits {
            max_connections,
            header_read_timeout: Duration::from_millis(self.header_read_timeout_ms.max(1)),
            idle_timeout: Duration::from_millis(self.idle_timeout_ms.max(1)),
            max_head_bytes: self.header_limit_bytes.saturating_mul(4),
        }
    }

    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_secs(self.shutdown_grace_secs)
    }

    pub fn sync_http_timeout(&self) -> Duration {
        Duration::from_millis(self.sync_http_timeout_ms)
    }

    pub fn worker_grace(&self) -> Duration {
        Duration::from_secs(self.worker_grace_secs)
    }

    /// The task queue's settings: the key prefix every process must share
    /// (`<REDIS_PREFIX>:queue`), the lease and the Redis response timeout. At
    /// least one second of lease, since running tasks renew it every third
    /// of its length.
    pub fn queue_config(&self) -> QueueConfig {
        let mut q = QueueConfig::new(format!("{}:queue", self.redis_prefix));
        q.lease = Duration::from_secs(self.queue_lease_secs.max(1));
        q.response_timeout = Duration::from_millis(self.redis_response_timeout_ms.max(1));
        q.wait_replicas = self.redis_wait_replicas;
        q.wait_timeout = Duration::from_millis(self.redis_wait_timeout_ms.max(1));
        q
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_response_timeout_reaches_the_queue() {
        let cfg = Config::from_flags(&["--redis-response-timeout-ms", "750"]).expect("flags parse");
        assert_eq!(cfg.queue_config().response_timeout, Duration::from_millis(750));
        let default = Config::from_flags(&[]).expect("flags parse");
        assert_eq!(default.queue_config().response_timeout, Duration::from_secs(2));
    }

    #[test]
    fn replica_settings_are_validated() {
        let none = Config::from_flags(&[]).expect("flags parse").replicas().expect("defaults are valid");
        assert!(none.urls.is_empty());
        assert_eq!((none.max_lag, none.check_interval), (Duration::from_secs(1), Duration::from_millis(250)));
        let two = Config::from_flags(&["--database-replica-urls", "postgres://a/x, postgres://b/x,"])
            .expect("flags parse")
            .replicas()
            .expect("valid");
        assert_eq!(two.urls, ["postgres://a/x", "postgres://b/x"]);
        let slow = Config::from_flags(&["--replica-max-lag-ms", "1000", "--replica-check-interval-ms", "501"])
            .expect("flags parse")
            .replicas()
            .expect_err("an interval over half the lag is refused");
        assert!(slow.to_string().contains("at most half of REPLICA_MAX_LAG_MS"), "{slow}");
        let half = Config::from_flags(&["--replica-max-lag-ms", "1000", "--replica-check-interval-ms", "500"])
            .expect("flags parse");
        assert!(half.replicas().is_ok());
    }
}
