//! Read replicas against a real private primary and a streaming replica of it
//! (`PrivatePostgres::start_replica`). Which server answered is proved by pausing the
//! replica's WAL replay (`pg_wal_replay_pause()`): it then serves an older snapshot, so a read
//! that sees the new row came from the primary and one that sees the old row from the replica.
//! Also: a lagging, a stopped and a frozen replica, and the real binary's settings.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use poem::{
    endpoint::BoxEndpoint,
    http::StatusCode,
    test::{TestClient, TestRequestBuilder},
};
use serde_json::{Value, json};
use spec_server::{
    config::Config,
    db::{self, tokens, users},
    devsvc::{self, PrivatePostgres},
    http::App,
    server::{self, Backends, Pools},
};

type Client = TestClient<BoxEndpoint<'static, poem::Response>>;

/// A primary (migrated) and a replica copied from it after the migration.
struct Cluster {
    primary: PrivatePostgres,
    replica: PrivatePostgres,
    redis: devsvc::TestRedis,
}

async fn cluster() -> Cluster {
    let primary = tokio::task::spawn_blocking(PrivatePostgres::start).await.unwrap().unwrap();
    let pool = db::pool(&primary.url(), 1, Duration::from_secs(10), Duration::from_secs(60)).unwrap();
    db::migrate::migrate(&mut pool.get().await.unwrap()).await.unwrap();
    drop(pool);
    let replica = start_replica(&primary).await;
    let redis = devsvc::test_redis().await.unwrap();
    Cluster { primary, replica, redis }
}

async fn start_replica(primary: &PrivatePostgres) -> PrivatePostgres {
    // Blocking (pg_basebackup, then a start-up wait), but the runtime has other threads.
    tokio::task::block_in_place(|| PrivatePostgres::start_replica(primary)).unwrap()
}

/// One server instance (an `App` with its own pools and background tasks) over the cluster.
struct Instance {
    app: Arc<App>,
    cli: Client,
    pools: Pools,
}

fn config(c: &Cluster, max_lag_ms: u64, interval_ms: u64) -> Config {
    config_with(c, max_lag_ms, interval_ms, &[])
}

fn config_with(c: &Cluster, max_lag_ms: u64, interval_ms: u64, more: &[&str]) -> Config {
    let (lag, interval, replica) = (max_lag_ms.to_string(), interval_ms.to_string(), c.replica.url());
    let mut cfg = Config::from_flags(
        &[
            "--database-url",
            &c.primary.url(),
            "--redis-url",
            c.redis.url(),
            "--database-replica-urls",
            &replica,
            "--replica-max-lag-ms",
            &lag,
            "--replica-check-interval-ms",
            &interval,
        ]
        .into_iter()
        .chain(more.iter().copied())
        .collect::<Vec<_>>(),
    )
    .unwrap();
    cfg.redis_prefix = c.redis.prefix().trim_end_matches(':').to_owned();
    cfg
}

async fn instance(cfg: &Config) -> Instance {
    let backends = Backends {
        database_url: cfg.database_url.clone().unwrap(),
        redis_url: cfg.redis_url.clone().unwrap(),
        private_postgres: None,
        private_redis: None,
    };
    let pools = Pools::new(cfg, &backends).unwrap();
    let app = Arc::new(pools.app(cfg).unwrap());
    let cli = TestClient::new(poem::EndpointExt::boxed(server::endpoint(app.clone(), cfg)));
    let inst = Instance { app, cli, pools };
    inst.wait_until("the replica is up and write markers are received", async |i| {
        i.app.db.listening() && i.replica_state().await == "up"
    })
    .await;
    inst
}

async fn token(inst: &Instance, name: &str) -> String {
    let name = format!("{name}-{}", uuid::Uuid::new_v4().simple());
    tokens::token_issue(&inst.pools.pg, &name, None, None).await.unwrap().1
}

async fn send(req: TestRequestBuilder<'_, BoxEndpoint<'static, poem::Response>>) -> (StatusCode, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    let bytes = resp.into_body().into_bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

impl Instance {
    async fn health(&self) -> Value {
        send(self.cli.get("/api/v1/health")).await.1
    }

    async fn replica_state(&self) -> String {
        self.health().await["replicas"][0]["state"].as_str().unwrap_or("absent").to_owned()
    }

    async fn wait_until(&self, what: &str, mut done: impl AsyncFnMut(&Instance) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !done(self).await {
            assert!(Instant::now() < deadline, "timed out waiting until {what}; health: {}", self.health().await);
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    async fn create(&self, token: &str, name: &str) -> i64 {
        let body = json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"});
        let (status, b) = send(self.cli.post("/api/v1/users").header("token", token).body_json(&body)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        b["data"]["id"].as_i64().unwrap()
    }

    /// The email `token` reads for user `id` (status asserted 200).
    async fn email(&self, token: &str, id: i64) -> String {
        let (status, b) = send(self.cli.get(format!("/api/v1/users/{id}")).header("token", token)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        b["data"]["email"].as_str().unwrap().to_owned()
    }

    async fn listed_email(&self, token: &str, id: i64) -> String {
        let (status, b) = send(self.cli.get("/api/v1/users?page_size=100").header("token", token)).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        let users = b["data"]["users"].as_array().unwrap();
        let u = users.iter().find(|u| u["id"] == id).unwrap();
        u["email"].as_str().unwrap().to_owned()
    }

    async fn batch_email(&self, token: &str, id: i64) -> String {
        let req = self.cli.post("/api/v1/users/batch-get").header("token", token).body_json(&json!({"ids": [id]}));
        let (status, b) = send(req).await;
        assert_eq!(status, StatusCode::OK, "{b}");
        b["data"]["results"][0]["user"]["email"].as_str().unwrap().to_owned()
    }
}

async fn pg(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Until the replica has replayed everything the primary has flushed now.
async fn wait_replayed(c: &Cluster) {
    let (primary, replica) = (pg(&c.primary.url()).await, pg(&c.replica.url()).await);
    let target: String = primary.query_one("SELECT pg_current_wal_flush_lsn()::text", &[]).await.unwrap().get(0);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let caught_up: bool =
            replica.query_one("SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn", &[&target]).await.unwrap().get(0);
        if caught_up {
            return;
        }
        assert!(Instant::now() < deadline, "the replica never replayed up to {target}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn replay(c: &Cluster, pause: bool) {
    let sql = if pause { "SELECT pg_wal_replay_pause()" } else { "SELECT pg_wal_replay_resume()" };
    pg(&c.replica.url()).await.simple_query(sql).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_a_fresh_replica_and_writers_read_their_writes() {
    let c = cluster().await;
    // A lag limit far above the test's length: the paused replica stays "fresh", so only the
    // write markers keep a writer's reads off it.
    let cfg = config(&c, 60_000, 250);
    let one = instance(&cfg).await;
    let other = instance(&cfg).await;
    let (a, b) = (token(&one, "writer").await, token(&one, "reader").await);
    let id = one.create(&a, "ryw").await;
    wait_replayed(&c).await;
    let (_, first) = send(one.cli.get(format!("/api/v1/users/{id}")).header("token", &b)).await;
    assert_eq!(first["data"]["email"], "ryw@example.com");

    replay(&c, true).await;
    let (status, put) = send(
        one.cli.put(format!("/api/v1/users/{id}")).header("token", &a).body_json(&json!({"email": "new@example.com"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{put}");

    // The writer reads its write, on this instance at once...
    assert_eq!(one.email(&a, id).await, "new@example.com");
    assert_eq!(one.listed_email(&a, id).await, "new@example.com");
    assert_eq!(one.batch_email(&a, id).await, "new@example.com");
    // ...and on the other instance once the marker's pub/sub message is in (milliseconds;
    // without it the paused replica would serve the old row for the whole test).
    other
        .wait_until("the other instance honours the writer's marker", async |i| {
            i.email(&a, id).await == "new@example.com"
        })
        .await;

    // Another token's reads are served by the replica's older snapshot.
    assert_eq!(one.email(&b, id).await, "ryw@example.com");
    assert_eq!(one.listed_email(&b, id).await, "ryw@example.com");
    assert_eq!(one.batch_email(&b, id).await, "ryw@example.com");
    assert_eq!(other.email(&b, id).await, "ryw@example.com");

    // A conditional read goes to the primary: the old ETag is not current, so no 304.
    let resp =
        one.cli.get(format!("/api/v1/users/{id}")).header("token", &b).header("if-none-match", "\"v1\"").send().await.0;
    assert_eq!(resp.status(), StatusCode::OK);
    let body: Value = serde_json::from_slice(&resp.into_body().into_bytes().await.unwrap()).unwrap();
    assert_eq!(body["data"]["email"], "new@example.com");

    replay(&c, false).await;
    one.wait_until("the replica replays the write", async |i| i.email(&b, id).await == "new@example.com").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_past_max_lag_is_skipped_until_it_catches_up() {
    let c = cluster().await;
    let one = instance(&config(&c, 600, 150)).await;
    let (a, b) = (token(&one, "writer").await, token(&one, "reader").await);
    let id = one.create(&a, "lag").await;
    wait_replayed(&c).await;
    replay(&c, true).await;
    // Written behind the server's back: no token carries a marker for it.
    users::user_update(&one.pools.pg, id, Some("moved@example.com".into()), None, users::IfVersion::Any).await.unwrap();
    one.wait_until("the paused replica is reported lagging", async |i| i.replica_state().await == "lagging").await;
    let h = one.health().await;
    assert_eq!(h["status"], "ok", "a lagging replica does not make the service unhealthy: {h}");
    assert!(h["replicas"][0]["lag_ms"].as_i64().unwrap() > 600, "{h}");
    assert_eq!(one.email(&b, id).await, "moved@example.com", "read from the primary");
    assert_eq!(one.listed_email(&b, id).await, "moved@example.com");

    replay(&c, false).await;
    one.wait_until("the replica is fresh again", async |i| i.replica_state().await == "up").await;
    assert_eq!(one.email(&b, id).await, "moved@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_replica_is_skipped_without_errors() {
    let mut c = cluster().await;
    let one = instance(&config(&c, 1000, 250)).await;
    let b = token(&one, "reader").await;
    let id = one.create(&b, "stop").await;
    wait_replayed(&c).await;
    tokio::task::block_in_place(|| c.replica.stop()).unwrap();
    // At once, before any check noticed: a failed replica read is retried on the primary.
    let until = Instant::now() + Duration::from_millis(1500);
    let mut reads = 0;
    while Instant::now() < until {
        assert_eq!(one.email(&b, id).await, "stop@example.com");
        assert_eq!(one.listed_email(&b, id).await, "stop@example.com");
        assert_eq!(one.batch_email(&b, id).await, "stop@example.com");
        reads += 3;
    }
    assert!(reads > 3);
    one.wait_until("the stopped replica is reported down", async |i| i.replica_state().await == "down").await;
    let (status, h) = send(one.cli.get("/api/v1/health")).await;
    assert_eq!(status, StatusCode::OK, "{h}");
    assert!(h["replicas"][0].get("lag_ms").is_none(), "{h}");

    tokio::task::block_in_place(|| c.replica.start_again()).unwrap();
    one.wait_until("the restarted replica is up again", async |i| i.replica_state().await == "up").await;
    assert_eq!(one.email(&b, id).await, "stop@example.com");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_replica_costs_a_bounded_wait_not_an_error() {
    let c = cluster().await;
    // Short pool timeouts, so a read stuck on the frozen replica gives up within ~1.2 s.
    let cfg = config_with(&c, 1000, 250, &["--pg-acquire-timeout-ms", "500", "--pg-statement-timeout-ms", "500"]);
    let one = instance(&cfg).await;
    let b = token(&one, "reader").await;
    let id = one.create(&b, "hang").await;
    wait_replayed(&c).await;
    // Warm the replica pool, so the frozen server holds established connections too.
    for _ in 0..4 {
        assert_eq!(one.email(&b, id).await, "hang@example.com");
    }
    c.replica.pause();
    let started = Instant::now();
    for _ in 0..4 {
        assert_eq!(one.email(&b, id).await, "hang@example.com");
    }
    assert!(started.elapsed() < Duration::from_secs(10), "reads waited {:?}", started.elapsed());
    one.wait_until("the frozen replica is reported down", async |i| i.replica_state().await == "down").await;
    let started = Instant::now();
    assert_eq!(one.email(&b, id).await, "hang@example.com");
    assert!(started.elapsed() < Duration::from_millis(500), "skipped once down: {:?}", started.elapsed());
    c.replica.resume();
    one.wait_until("the resumed replica is up again", async |i| i.replica_state().await == "up").await;
}

/// The body of `GET path` over a bare HTTP/1.1 connection (`Connection: close`), if any.
fn http_get(port: u16, path: &str) -> Option<Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").ok()?;
    let mut raw = String::new();
    s.read_to_string(&mut raw).ok()?;
    serde_json::from_str(raw.split_once("\r\n\r\n")?.1).ok()
}

/// The real binary takes `DATABASE_REPLICA_URLS` from the environment as a comma-separated
/// list, refuses a check interval over half the lag limit, and lists each replica on `/health`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_reads_replica_settings_from_the_environment() {
    use spec_server::devsvc::Ready;
    let c = cluster().await;
    let env = [
        ("DATABASE_URL", c.primary.url()),
        ("REDIS_URL", c.redis.url().to_owned()),
        ("REDIS_PREFIX", c.redis.prefix().trim_end_matches(':').to_owned()),
        ("REDIS_ALLOW_VOLATILE", "true".to_owned()),
        ("DATABASE_REPLICA_URLS", format!("{0}, {0},", c.replica.url())),
        ("LOG", "warn".to_owned()),
    ];
    let refused = crate::support::spec_server(&["migrate"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("REPLICA_CHECK_INTERVAL_MS", "600")
        .output()
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("REPLICA_CHECK_INTERVAL_MS (600) must be at most half of REPLICA_MAX_LAG_MS (1000)"),
        "{refused}"
    );

    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let logs = tempfile::tempdir().unwrap();
    let mut server = crate::support::spec_server(&["serve"])
        .envs(env.iter().map(|(k, v)| (k, v)))
        .env("LISTEN_ADDR", format!("127.0.0.1:{port}"))
        .log_to(logs.path().join("server.log"))
        .spawn()
        .unwrap();
    let mut both_up = || {
        http_get(port, "/api/v1/health").is_some_and(|h| {
            let states: Vec<_> = h["replicas"].as_array().into_iter().flatten().map(|r| r["state"].clone()).collect();
            states == [json!("up"), json!("up")]
        })
    };
    tokio::task::block_in_place(|| server.wait_ready(Ready::Probe(&mut both_up), Duration::from_secs(30))).unwrap();
    let h = http_get(port, "/api/v1/health").unwrap();
    assert_eq!(h["replicas"][0]["name"], format!("127.0.0.1:{}", c.replica.port()), "{h}");
}
