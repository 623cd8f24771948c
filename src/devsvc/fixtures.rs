//! Test fixtures: one shared private PostgreSQL (databases cloned from a migrated template)
//! and one shared Redis (a key prefix per test) per test process, and `LogCapture`.

use std::sync::{
    OnceLock,
    atomic::{AtomicU64, Ordering},
};

use anyhow::anyhow;

use super::*;

/// Cloned for every `test_database()`; migrated once per test process.
pub const TEMPLATE_DATABASE: &str = "app_template";

/// Distinguishes databases and key prefixes created by this process.
pub(super) static NEXT_ID: AtomicU64 = AtomicU64::new(0);

pub(super) fn unique_suffix() -> String {
    format!("{}_{}_{:08x}", std::process::id(), NEXT_ID.fetch_add(1, Ordering::Relaxed), rand::random::<u32>())
}

/// Replaces the database name (the URL path) of a `postgres://` URL, keeping any query string.
pub fn url_with_database(url: &str, database: &str) -> anyhow::Result<String> {
    let scheme_end =
        url.find("://").with_context(|| "expected a postgres://… URL (key=value strings are not supported)")? + 3;
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let after_authority = &rest[authority_end..];
    let query = after_authority.find('?').map_or("", |q| &after_authority[q..]);
    Ok(format!("{}/{database}{query}", &url[..scheme_end + authority_end]))
}

/// Only plain data and processes live here: each `#[tokio::test]` has its own runtime, so
/// clients and pools are made per test, in the test's runtime.
pub(super) struct SharedPostgres {
    admin_url: String,
    _server: Option<PrivatePostgres>,
}

pub(super) static SHARED_POSTGRES: OnceLock<Result<SharedPostgres, String>> = OnceLock::new();

pub(super) fn init_shared_postgres() -> Result<SharedPostgres, String> {
    let (admin_url, server) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => (url, None),
        Err(_) => {
            let server = PrivatePostgres::start().map_err(|e| format!("{e:#}"))?;
            (server.url(), Some(server))
        }
    };
    // The template is made on a runtime of its own, on a plain thread: we may be called from a
    // test runtime's blocking pool, where starting another runtime is not allowed.
    let url = admin_url.clone();
    std::thread::spawn(move || -> anyhow::Result<()> {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building a runtime for the template database")?
            .block_on(prepare_template(&url))
    })
    .join()
    .map_err(|_| "preparing the template database panicked".to_string())?
    .map_err(|e| format!("{e:#}"))?;
    Ok(SharedPostgres { admin_url, _server: server })
}

pub(super) async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.with_context(|| format!("connecting to {url}"))?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(error = %e, "test connection ended");
        }
    });
    Ok(client)
}

/// Creates and migrates `app_template` if needed. Under an advisory lock, because with
/// `TEST_DATABASE_URL` several test processes may share one server.
pub(super) async fn prepare_template(admin_url: &str) -> anyhow::Result<()> {
    const TEMPLATE_LOCK: i64 = 0x5350_4543_5445_4d50; // "SPECTEMP"
    let admin = connect(admin_url).await?;
    admin.execute("SELECT pg_advisory_lock($1)", &[&TEMPLATE_LOCK]).await.context("locking the template database")?;
    let exists = admin
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&TEMPLATE_DATABASE])
        .await
        .context("looking for the template database")?
        .is_some();
    if !exists {
        admin
            .batch_execute(&format!("CREATE DATABASE {TEMPLATE_DATABASE}"))
            .await
            .context("creating the template database")?;
    }
    let mut template = connect(&url_with_database(admin_url, TEMPLATE_DATABASE)?).await?;
    crate::db::migrate::migrate(&mut template).await.context("migrating the template database")?;
    // Clones fail while anyone is connected to the template.
    drop(template);
    admin
        .execute("SELECT pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await
        .context("unlocking the template database")?;
    Ok(())
}

pub(super) async fn shared_postgres() -> anyhow::Result<&'static SharedPostgres> {
    tokio::task::spawn_blocking(|| {
        SHARED_POSTGRES
            .get_or_init(init_shared_postgres)
            .as_ref()
            .map_err(|e| anyhow!("the test PostgreSQL could not be set up: {e}"))
    })
    .await
    .context("the test PostgreSQL set-up task failed")?
}

/// A fresh database cloned from the migrated template; dropped again when this is dropped.
pub struct TestDb {
    url: String,
    name: String,
    pool: crate::db::Pool,
    admin_url: String,
}

impl TestDb {
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A small pool (8 connections, 5 s acquire, 30 s statement timeout) made in this test's runtime.
    pub fn pool(&self) -> &crate::db::Pool {
        &self.pool
    }

    /// A plain client whose connection task runs on the current runtime.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Dropped synchronously on a plain thread (we may be inside a runtime, and the test's
        // runtime may be shutting down); FORCE ends the pool's connections.
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let dropped = std::thread::spawn(move || -> anyhow::Result<()> {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(async { Ok(connect(&admin_url).await?.batch_execute(&sql).await?) })
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            tracing::warn!(database = %self.name, "could not drop a test database");
        }
    }
}

/// A fresh, migrated database on the per-process private PostgreSQL (or on the server at
/// `TEST_DATABASE_URL`). Safe to call from parallel tests, each with its own runtime.
pub async fn test_database() -> anyhow::Result<TestDb> {
    create_test_database(Some(TEMPLATE_DATABASE)).await
}

/// Like [`test_database`], but empty (cloned from `template0`), for migration tests.
pub async fn test_empty_database() -> anyhow::Result<TestDb> {
    create_test_database(None).await
}

pub(super) async fn create_test_database(template: Option<&str>) -> anyhow::Result<TestDb> {
    let shared = shared_postgres().await?;
    let name = format!("t_{}", unique_suffix());
    let admin = connect(&shared.admin_url).await?;
    let sql = format!("CREATE DATABASE {name} TEMPLATE {}", template.unwrap_or("template0"));
    // 55006 (object in use) means someone is connected to the template, e.g. another process
    // sharing TEST_DATABASE_URL that is migrating it; that passes within moments.
    let mut attempts = 0;
    loop {
        match admin.batch_execute(&sql).await {
            Ok(()) => break,
            Err(e) if attempts < 50 && e.code() == Some(&tokio_postgres::error::SqlState::OBJECT_IN_USE) => {
                attempts += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("creating test database {name}")),
        }
    }
    let url = url_with_database(&shared.admin_url, &name)?;
    let pool = crate::db::pool(&url, 8, Duration::from_secs(5), Duration::from_secs(30))?;
    Ok(TestDb { url, name, pool, admin_url: shared.admin_url.clone() })
}

pub(super) struct SharedRedis {
    url: String,
    _server: Option<PrivateRedis>,
}

pub(super) static SHARED_REDIS: OnceLock<Result<SharedRedis, String>> = OnceLock::new();

pub(super) fn init_shared_redis() -> Result<SharedRedis, String> {
    match std::env::var("TEST_REDIS_URL") {
        Ok(url) => Ok(SharedRedis { url, _server: None }),
        Err(_) => {
            let server = PrivateRedis::start().map_err(|e| format!("{e:#}"))?;
            Ok(SharedRedis { url: server.url(), _server: Some(server) })
        }
    }
}

/// A shared Redis plus a key prefix no other test uses: tests must put every key under it.
pub struct TestRedis {
    url: String,
    prefix: String,
}

impl TestRedis {
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Ends with `:`, e.g. `t1234_7_9f3a0c1e:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `prefix + suffix`
    pub fn key(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// A small bb8 pool (8 connections, 2 s connection timeout) made in this test's runtime.
    pub async fn pool(&self) -> anyhow::Result<crate::redis_pool::RedisPool> {
        let manager =
            crate::redis_pool::RedisManager::new(self.url.as_str()).with_context(|| format!("parsing {}", self.url))?;
        bb8::Pool::builder()
            .max_size(8)
            .connection_timeout(Duration::from_secs(2))
            .build(manager)
            .await
            .with_context(|| format!("connecting to {}", self.url))
    }
}

/// The per-process private Redis (or `TEST_REDIS_URL`) and a fresh key prefix.
/// Keys are not deleted afterwards: on the private server they vanish with it.
pub async fn test_redis() -> anyhow::Result<TestRedis> {
    let url = tokio::task::spawn_blocking(|| {
        SHARED_REDIS
            .get_or_init(init_shared_redis)
            .as_ref()
            .map(|shared| shared.url.clone())
            .map_err(|e| anyhow!("the test Redis could not be set up: {e}"))
    })
    .await
    .context("the test Redis set-up task failed")??;
    Ok(TestRedis { url, prefix: format!("t{}:", unique_suffix()) })
}

/// Captures what `tracing` logs, for tests that check a log line. There is one
/// capture per test process, also installed as the global default: a
/// subscriber set only for one thread or future misses events whose callsite
/// interest another test thread cached first, so tests find their own lines
/// by what they contain (a task id), not by being alone in the capture.
#[cfg(test)]
#[derive(Clone)]
pub(crate) struct LogCapture(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

#[cfg(test)]
impl Default for LogCapture {
    fn default() -> Self {
        static GLOBAL: std::sync::OnceLock<LogCapture> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| {
                let capture = LogCapture(std::sync::Arc::default());
                // Fails only if another global subscriber came first; then the
                // scoped `subscriber()` is all there is.
                let _ = tracing::subscriber::set_global_default(capture.subscriber());
                capture
            })
            .clone()
    }
}

#[cfg(test)]
impl Write for LogCapture {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("log capture poisoned"))?.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
impl LogCapture {
    /// Everything logged so far.
    pub(crate) fn text(&self) -> String {
        self.0.lock().map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    /// A subscriber writing every event, without colours, into this capture.
    pub(crate) fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + 'static {
        let logs = self.clone();
        tracing_subscriber::fmt().with_ansi(false).with_writer(move || logs.clone()).finish()
    }
}
