//! Private PostgreSQL and Redis servers started from local binaries, for `dev`, tests and
//! benches. Every server gets a free loopback port, its own temp dir and a watchdog that stops
//! it when we die. One file per job: `launcher` (the one way any process is started, for
//! `dev` and every test), `process` (supervision: watchdog, ports, signals to children),
//! `postgres`, `redis_server`, `redis_cluster`, and `fixtures` (the shared test instances behind `test_database()` and
//! `test_redis()`, compiled only for tests and the `test-fixtures` feature, so the release
//! binary carries no test code).

use std::{
    ffi::OsStr,
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{
    sys::signal::{Signal, kill},
    unistd::{Pid, User, geteuid},
};
use tempfile::TempDir;

/// The one sentence every "binary missing" error carries.
pub(super) const INSTALL_HINT: &str = "install with `apt-get install postgresql redis-server`";

/// Generous, because two shared cores under load can make `postgres` slow to come up.
pub(super) const START_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a graceful stop may take before the server is killed.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(10);

#[cfg(any(test, feature = "test-fixtures"))]
mod fixtures;
mod launcher;
mod postgres;
mod process;
mod redis_cluster;
mod redis_server;

#[cfg(any(test, feature = "test-fixtures"))]
pub use fixtures::*;
pub use launcher::*;
pub use postgres::*;
use process::*;
pub use redis_cluster::*;
pub use redis_server::*;

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use std::sync::OnceLock;

    use super::*;

    /// Gone, or a zombie waiting for a reaper we do not control (our pid 1 may not reap).
    fn is_dead(pid: u32) -> bool {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => true,
            Ok(stat) => {
                stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next().map(|s| s == "Z")).unwrap_or(true)
            }
        }
    }

    fn poll_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
        let deadline = Instant::now() + timeout;
        while !done() {
            assert!(Instant::now() < deadline, "timed out waiting until {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// A client, or an error if none within `limit`. tokio-postgres' connect_timeout covers only
    /// the TCP connect, and a paused server still completes that (the kernel accepts into the
    /// backlog), so the whole handshake is bounded here.
    async fn pg_client_within(url: &str, limit: Duration) -> anyhow::Result<tokio_postgres::Client> {
        let connect = tokio_postgres::connect(url, tokio_postgres::NoTls);
        let (client, connection) = tokio::time::timeout(limit, connect).await??;
        tokio::spawn(connection);
        Ok(client)
    }

    async fn pg_client(url: &str) -> anyhow::Result<tokio_postgres::Client> {
        pg_client_within(url, Duration::from_secs(5)).await
    }

    #[tokio::test]
    async fn postgres_keeps_data_across_stop_and_kill_hard() {
        let mut pg = PrivatePostgres::start().unwrap();
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        let client = pg_client(&pg.url()).await.unwrap();
        client.batch_execute("CREATE TABLE t (v int); INSERT INTO t VALUES (1)").await.unwrap();
        drop(client);

        let first_pid = pg.pid().unwrap();
        pg.stop().unwrap();
        assert_eq!(pg.pid(), None);
        assert!(is_dead(first_pid));
        assert!(pg_client(&pg.url()).await.is_err(), "stopped means refused");

        pg.start_again().unwrap();
        let client = pg_client(&pg.url()).await.unwrap();
        client.batch_execute("INSERT INTO t VALUES (2)").await.unwrap();
        pg.kill_hard();
        assert!(client.simple_query("SELECT 1").await.is_err(), "connection died with the server");

        pg.start_again().unwrap();
        let client = pg_client(&pg.url()).await.unwrap();
        let count: i64 = client.query_one("SELECT count(*) FROM t", &[]).await.unwrap().get(0);
        assert_eq!(count, 2, "committed rows survive a hard kill");
    }

    #[tokio::test]
    async fn paused_postgres_hangs_until_resumed() {
        let pg = PrivatePostgres::start().unwrap();
        let established = pg_client(&pg.url()).await.unwrap();
        pg.pause();
        let attempt = pg_client_within(&pg.url(), Duration::from_millis(300)).await;
        assert!(attempt.is_err(), "new connections hang");
        let query = tokio::time::timeout(Duration::from_millis(300), established.simple_query("SELECT 1"));
        assert!(query.await.is_err(), "established connections hang too");
        pg.resume();
        assert!(pg_client(&pg.url()).await.is_ok());
        assert!(established.simple_query("SELECT 1").await.is_ok());
    }

    #[test]
    fn dropping_postgres_removes_process_and_dir() {
        let pg = PrivatePostgres::start().unwrap();
        let (pid, dir) = (pg.pid().unwrap(), pg.dir().to_path_buf());
        assert!(dir.join("data").join("PG_VERSION").is_file());
        pg.pause(); // even a paused server
        drop(pg);
        assert!(is_dead(pid));
        assert!(!dir.exists());
    }

    #[test]
    fn redis_restart_keeps_data_only_with_persistence() {
        use redis::Commands;
        let mut plain = PrivateRedis::start().unwrap();
        let mut durable = PrivateRedis::with_persistence().unwrap();
        for server in [&plain, &durable] {
            let mut conn = redis::Client::open(server.url()).unwrap().get_connection().unwrap();
            let _: () = conn.set("k", "v").unwrap();
        }
        let durable_port = durable.port();
        plain.restart().unwrap();
        durable.restart().unwrap();
        assert_eq!(durable.port(), durable_port);
        let mut conn = redis::Client::open(plain.url()).unwrap().get_connection().unwrap();
        assert_eq!(conn.get::<_, Option<String>>("k").unwrap(), None);
        let mut conn = redis::Client::open(durable.url()).unwrap().get_connection().unwrap();
        assert_eq!(conn.get::<_, Option<String>>("k").unwrap().as_deref(), Some("v"));

        let (pid, dir) = (durable.pid().unwrap(), durable.dir().to_path_buf());
        durable.stop().unwrap();
        assert!(!redis_answers_ping(durable_port));
        assert!(is_dead(pid));
        drop(durable);
        assert!(!dir.exists());
    }

    #[test]
    fn missing_binaries_say_how_to_install() {
        let err = PrivateRedis::start_with(OsStr::new("/nonexistent/redis-server"), false).err().unwrap();
        assert!(format!("{err:#}").contains("install with `apt-get install postgresql redis-server`"), "{err:#}");
    }

    #[test]
    fn database_urls() {
        let cases = [
            ("postgres://u@h:5/postgres", "postgres://u@h:5/x"),
            ("postgres://u:p@h:5", "postgres://u:p@h:5/x"),
            ("postgresql://h/db?sslmode=disable", "postgresql://h/x?sslmode=disable"),
            ("postgres://h?x=1", "postgres://h/x?x=1"),
        ];
        for (url, expected) in cases {
            assert_eq!(url_with_database(url, "x").unwrap(), expected);
        }
        assert!(url_with_database("host=h dbname=d", "x").is_err());
    }

    #[tokio::test]
    async fn test_databases_are_migrated_and_isolated() {
        let (a, b) = tokio::join!(test_database(), test_database());
        let (a, b) = (a.unwrap(), b.unwrap());
        assert_ne!(a.name(), b.name());
        let a_client = a.pool().get().await.unwrap();
        a_client
            .batch_execute("INSERT INTO users (username, email, password_hash) VALUES ('x', 'x@x', 'h')")
            .await
            .unwrap();
        let count: i64 =
            b.pool().get().await.unwrap().query_one("SELECT count(*) FROM users", &[]).await.unwrap().get(0);
        assert_eq!(count, 0);

        let name = a.name().to_string();
        let admin = connect(&url_with_database(a.url(), "postgres").unwrap()).await.unwrap();
        drop(a_client);
        drop(a);
        let left = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap();
        assert!(left.is_none(), "dropped with its TestDb");
    }

    #[tokio::test]
    async fn test_redis_prefixes_are_unique() {
        let a = test_redis().await.unwrap();
        let b = test_redis().await.unwrap();
        assert_eq!(a.url(), b.url(), "one shared server");
        assert_ne!(a.prefix(), b.prefix());
        assert!(a.key("q").starts_with(a.prefix()));
        let pool = a.pool().await.unwrap();
        let mut conn = pool.get().await.unwrap();
        let pong: String = redis::cmd("PING").query_async(&mut *conn).await.unwrap();
        assert_eq!(pong, "PONG");
    }

    const ORPHAN_CHILD_ENV: &str = "SPEC_DEVSVC_ORPHAN_CHILD";

    /// Runs only inside `no_orphans_when_the_owner_is_killed`, as the process that gets killed.
    #[test]
    #[ignore = "helper process for no_orphans_when_the_owner_is_killed"]
    fn orphan_child() {
        if std::env::var_os(ORPHAN_CHILD_ENV).is_none() {
            return;
        }
        // In statics, like the shared test servers: never dropped.
        static PG: OnceLock<PrivatePostgres> = OnceLock::new();
        static REDIS: OnceLock<PrivateRedis> = OnceLock::new();
        let pg = PG.get_or_init(|| PrivatePostgres::start().unwrap());
        let redis = REDIS.get_or_init(|| PrivateRedis::start().unwrap());
        pg.pause(); // the hardest case: a stopped server ignores everything but SIGKILL
        println!(
            "READY {} {} {} {}",
            pg.pid().unwrap(),
            pg.dir().display(),
            redis.pid().unwrap(),
            redis.dir().display()
        );
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::park();
        }
    }

    #[test]
    fn no_orphans_when_the_owner_is_killed() {
        let logs = tempfile::tempdir().unwrap();
        let log = logs.path().join("owner.log");
        let mut child = Launch::new(std::env::current_exe().unwrap())
            .named("the orphan_child test process")
            .args(["--exact", "devsvc::tests::orphan_child", "--ignored", "--nocapture"])
            .env(ORPHAN_CHILD_ENV, "1")
            .log_to(&log)
            .spawn()
            .unwrap();
        child.wait_ready(Ready::LogLine("READY "), START_TIMEOUT * 2).unwrap();
        let text = std::fs::read_to_string(&log).unwrap();
        let ready = text.lines().find(|line| line.starts_with("READY ")).expect("the child printed READY");
        let fields: Vec<&str> = ready.split_whitespace().collect();
        let (pg_pid, pg_dir) = (fields[1].parse::<u32>().unwrap(), PathBuf::from(fields[2]));
        let (redis_pid, redis_dir) = (fields[3].parse::<u32>().unwrap(), PathBuf::from(fields[4]));
        assert!(!is_dead(pg_pid) && !is_dead(redis_pid));

        child.kill(); // SIGKILL: no destructor, no atexit, nothing runs in the child

        poll_until("both servers are gone", Duration::from_secs(15), || is_dead(pg_pid) && is_dead(redis_pid));
        poll_until("both temp dirs are removed", Duration::from_secs(15), || !pg_dir.exists() && !redis_dir.exists());
    }
}
