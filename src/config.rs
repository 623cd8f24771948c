//! The one configuration struct, read from the environment (and flags).
//! Every variable is listed, with its default, in the README.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use clap::Args;

use crate::queue::QueueConfig;

/// Settings shared by every subcommand.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// PostgreSQL URL. Unset: a private PostgreSQL is started from the local
    /// binaries for the life of the process (dev and tests).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<String>,

    /// Redis URL. Unset: a private redis-server is started likewise.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<String>,

    /// Address the HTTP server listens on.
    #[arg(long, env = "LISTEN_ADDR", default_value = "127.0.0.1:8080")]
    pub listen_addr: SocketAddr,

    /// Most PostgreSQL connections in the pool.
    #[arg(long, env = "PG_POOL_MAX", default_value_t = 25)]
    pub pg_pool_max: usize,

    /// Longest wait for a pooled PostgreSQL connection (or a new one), in ms.
    #[arg(long, env = "PG_ACQUIRE_TIMEOUT_MS", default_value_t = 2000)]
    pub pg_acquire_timeout_ms: u64,

    /// Server-side `statement_timeout` for every query, in ms.
    #[arg(long, env = "PG_STATEMENT_TIMEOUT_MS", default_value_t = 5000)]
    pub pg_statement_timeout_ms: u64,

    /// Most Redis connections in the pool (blocking worker connections are extra).
    #[arg(long, env = "REDIS_POOL_MAX", default_value_t = 32)]
    pub redis_pool_max: u32,

    /// How long a task-queue call waits for Redis's reply, in ms, before it
    /// counts as failed in transit and is repeated (queue calls are safe to
    /// repeat). Applied to the pooled connections the queue uses and, on top
    /// of the wait, to the workers' blocking ones. redis-rs would use 500 ms,
    /// which an fsync stall or a long script can exceed on a healthy server.
    #[arg(long, env = "REDIS_RESPONSE_TIMEOUT_MS", default_value_t = 2000)]
    pub redis_response_timeout_ms: u64,

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
}

impl Config {
    pub fn pg_acquire_timeout(&self) -> Duration {
        Duration::from_millis(self.pg_acquire_timeout_ms)
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
        q
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    #[test]
    fn redis_response_timeout_reaches_the_queue() {
        let cfg = Cli::try_parse_from(["t", "--redis-response-timeout-ms", "750"]).expect("flags parse").config;
        assert_eq!(cfg.queue_config().response_timeout, Duration::from_millis(750));
        let default = Cli::try_parse_from(["t"]).expect("flags parse").config;
        assert_eq!(default.queue_config().response_timeout, Duration::from_secs(2));
    }
}
