//! The service over real PostgreSQL and Redis (private instances from
//! `devsvc`): every users operation with every documented status, the
//! concurrent-create race, soft delete, pagination arithmetic, tokens and their scopes, and
//! health with a dependency stopped or hung, then recovered.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::{sync::Arc, time::Duration};

use bb8_redis::redis;
use poem::{
    Endpoint,
    endpoint::BoxEndpoint,
    http::StatusCode,
    test::{TestClient, TestRequestBuilder},
};
use serde_json::{Value, json};
use spec_server::{
    config::Config,
    db::{tokens, users},
    devsvc::{self, PrivatePostgres, PrivateRedis},
    server::{self, Backends, Pools},
};

fn config(db: &str, redis: &str, prefix: &str) -> Config {
    let mut cfg = Config::from_flags(&["--database-url", db, "--redis-url", redis]).unwrap();
    cfg.redis_prefix = prefix.trim_end_matches(':').to_owned();
    cfg
}

/// The real application over the given backends.
struct Harness {
    cli: TestClient<BoxEndpoint<'static, poem::Response>>,
    pools: Pools,
    cfg: Config,
    token: String,
}

async fn harness_for(cfg: &Config) -> Harness {
    let backends = Backends {
        database_url: cfg.database_url.clone().unwrap(),
        redis_url: cfg.redis_url.clone().unwrap(),
        private_postgres: None,
        private_redis: None,
    };
    let pools = Pools::new(cfg, &backends).unwrap();
    pools.migrate().await.unwrap();
    let (_, token) =
        tokens::token_issue(&pools.pg, &format!("t{}", uuid::Uuid::new_v4().simple()), None, None).await.unwrap();
    let ep = poem::EndpointExt::boxed(server::endpoint(Arc::new(pools.app(cfg).unwrap()), cfg));
    Harness { cli: TestClient::new(ep), pools, cfg: cfg.clone(), token }
}

/// A harness on a fresh database (cloned from the migrated template) and
/// its own Redis prefix, so tests run in parallel.
async fn harness() -> (Harness, devsvc::TestDb) {
    let db = devsvc::test_database().await.unwrap();
    let redis = devsvc::test_redis().await.unwrap();
    let h = harness_for(&config(db.url(), redis.url(), redis.prefix())).await;
    (h, db)
}

async fn send<E: Endpoint>(req: TestRequestBuilder<'_, E>) -> (StatusCode, Value) {
    let resp = req.send().await.0;
    let status = resp.status();
    assert_eq!(resp.headers().get("content-type").and_then(|v| v.to_str().ok()), Some("application/json"));
    let bytes = resp.into_body().into_bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

fn new_user(name: &str) -> Value {
    json!({"username": name, "email": format!("{name}@example.com"), "password": "password123"})
}

impl Harness {
    async fn create(&self, body: &Value) -> (StatusCode, Value) {
        send(self.cli.post("/api/v1/users").header("token", &self.token).body_json(body)).await
    }
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.get_as(&self.token, path).await
    }
    async fn get_as(&self, token: &str, path: &str) -> (StatusCode, Value) {
        send(self.cli.get(path).header("token", token)).await
    }
}

#[tokio::test]
async fn users_operations_answer_every_documented_status() {
    let (h, _db) = harness().await;
    let t = h.token.as_str();

    // createUser: 200, 400, 401, 409 (username, and email case-insensitively).
    let (s, b) = h.create(&new_user("alice")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["id"].as_i64().unwrap();
    assert_eq!(b["data"]["status"], "active");
    assert_eq!(b["data"]["last_login_at"], Value::Null);
    assert!(b["data"].get("password").is_none() && !b.to_string().contains("argon2"), "{b}");
    let (s, b) = h.create(&json!({"username": "x", "email": "nope", "password": "1"})).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::BAD_REQUEST, json!(1001)));
    let (s, b) = send(h.cli.post("/api/v1/users").body_json(&new_user("bob"))).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::UNAUTHORIZED, json!(1002)));
    let (s, b) = h.create(&json!({"username": "alice", "email": "other@example.com", "password": "password123"})).await;
    assert_eq!((s, b["code"].clone(), b["msg"].clone()), (StatusCode::CONFLICT, json!(1004), json!("用户名已存在")));
    let (s, b) =
        h.create(&json!({"username": "alice2", "email": "ALICE@example.com", "password": "password123"})).await;
    assert_eq!((s, b["msg"].clone()), (StatusCode::CONFLICT, json!("邮箱已存在")));

    // getUserById: 200, 400, 401, 404.
    let (s, b) = h.get(&format!("/api/v1/users/{id}")).await;
    assert_eq!((s, b["data"]["username"].clone()), (StatusCode::OK, json!("alice")));
    assert_eq!(h.get("/api/v1/users/0").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(h.cli.get(format!("/api/v1/users/{id}"))).await.0, StatusCode::UNAUTHORIZED);
    let (s, b) = h.get("/api/v1/users/999999").await;
    assert_eq!((s, b["code"].clone()), (StatusCode::NOT_FOUND, json!(1003)));

    // updateUser: 200 (only given fields, updated_at bumped), 400, 401, 404, 409.
    let (_, before) = h.get(&format!("/api/v1/users/{id}")).await;
    let (s, b) =
        send(h.cli.put(format!("/api/v1/users/{id}")).header("token", t).body_json(&json!({"status": "suspended"})))
            .await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_eq!(
        (b["data"]["status"].clone(), b["data"]["email"].clone()),
        (json!("suspended"), json!("alice@example.com"))
    );
    assert!(b["data"]["updated_at"].as_str() > before["data"]["updated_at"].as_str());
    let upd = |body: Value| h.cli.put(format!("/api/v1/users/{id}")).header("token", t).body_json(&body);
    assert_eq!(send(upd(json!({"email": "bad"}))).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(h.cli.put(format!("/api/v1/users/{id}")).body_json(&json!({}))).await.0, StatusCode::UNAUTHORIZED);
    let (s, _) =
        send(h.cli.put("/api/v1/users/999999").header("token", t).body_json(&json!({"status": "active"}))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    h.create(&new_user("carol")).await;
    let (s, b) = send(upd(json!({"email": "Carol@Example.com"}))).await;
    assert_eq!((s, b["msg"].clone()), (StatusCode::CONFLICT, json!("邮箱已存在")));

    // listUsers: 200, 400, 401.
    let (s, b) = h.get("/api/v1/users?status=suspended").await;
    assert_eq!((s, b["data"]["total"].clone()), (StatusCode::OK, json!(1)));
    assert_eq!(h.get("/api/v1/users?page_size=101").await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(h.cli.get("/api/v1/users")).await.0, StatusCode::UNAUTHORIZED);

    // deleteUser: 200 (no `data: null`), 400, 401, 404 (also when already deleted).
    let del = |id: i64| h.cli.delete(format!("/api/v1/users/{id}")).header("token", t);
    let (s, b) = send(del(id)).await;
    assert_eq!(s, StatusCode::OK);
    assert!(b.get("data").is_none(), "{b}");
    assert_eq!(send(del(0)).await.0, StatusCode::BAD_REQUEST);
    assert_eq!(send(h.cli.delete(format!("/api/v1/users/{id}"))).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(send(del(id)).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn soft_deleted_users_disappear_and_free_their_names() {
    let (h, _db) = harness().await;
    let (_, b) = h.create(&new_user("dave")).await;
    let id = b["data"]["id"].as_i64().unwrap();
    send(h.cli.delete(format!("/api/v1/users/{id}")).header("token", &h.token)).await;
    assert_eq!(h.get(&format!("/api/v1/users/{id}")).await.0, StatusCode::NOT_FOUND);
    let (s, _) = send(
        h.cli.put(format!("/api/v1/users/{id}")).header("token", &h.token).body_json(&json!({"status": "active"})),
    )
    .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (_, b) = h.get("/api/v1/users").await;
    assert_eq!((b["data"]["total"].clone(), b["data"]["users"].clone()), (json!(0), json!([])));
    // Documented choice: a deleted user's username and email are free again.
    let (s, b) = h.create(&new_user("dave")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    assert_ne!(b["data"]["id"].as_i64(), Some(id));
}

/// Optimistic concurrency end to end: four writers that read one ETag race (PUT and PATCH
/// mixed); exactly one wins and the rest get 412 without changing anything, five rounds over.
#[tokio::test]
async fn concurrent_writes_with_one_etag_give_one_winner() {
    let (h, _db) = harness().await;
    let (_, b) = h.create(&new_user("etag")).await;
    let id = b["data"]["id"].as_i64().unwrap();
    let path = format!("/api/v1/users/{id}");
    for round in 0..5 {
        let resp = h.cli.get(&path).header("token", &h.token).send().await.0;
        let etag = resp.headers().get("etag").and_then(|v| v.to_str().ok()).unwrap().to_owned();
        // The ETag is the validator of the 304.
        let resp = h.cli.get(&path).header("token", &h.token).header("if-none-match", &etag).send().await.0;
        assert_eq!(resp.status(), StatusCode::NOT_MODIFIED);
        assert_eq!(resp.headers().get("etag").and_then(|v| v.to_str().ok()), Some(etag.as_str()));
        assert!(resp.into_body().into_bytes().await.unwrap().is_empty(), "a 304 has no body");
        let email = |i: usize| json!({"email": format!("etag-{round}-{i}@example.com")});
        let writes = (0..4).map(|i| {
            let req = if i % 2 == 0 {
                h.cli.put(&path).body_json(&email(i))
            } else {
                h.cli.patch(&path).content_type("application/merge-patch+json").body(email(i).to_string())
            };
            send(req.header("token", &h.token).header("if-match", &etag))
        });
        let results = futures_util::future::join_all(writes).await;
        let winners: Vec<&Value> = results.iter().filter(|(s, _)| *s == StatusCode::OK).map(|(_, b)| b).collect();
        let stale = results.iter().filter(|(s, b)| *s == StatusCode::PRECONDITION_FAILED && b["code"] == 1017).count();
        assert_eq!((winners.len(), stale), (1, 3), "round {round}: {results:?}");
        let (_, now) = h.get(&path).await;
        assert_eq!(now["data"]["email"], winners[0]["data"]["email"], "only the winner's write is there");
    }
    // A stale delete changes nothing; a current one deletes.
    let del = |m: &str| send(h.cli.delete(&path).header("token", &h.token).header("if-match", m));
    assert_eq!(del("\"v1\"").await.0, StatusCode::PRECONDITION_FAILED);
    assert_eq!(h.get(&path).await.0, StatusCode::OK);
    assert_eq!(del("\"v6\"").await.0, StatusCode::OK, "five winning writes made version 6");
    assert_eq!(del("\"v6\"").await.0, StatusCode::NOT_FOUND, "a missing user is 404 whatever If-Match says");
}

#[tokio::test]
async fn concurrent_creates_of_one_username_give_one_winner() {
    let (h, _db) = harness().await;
    for round in 0..3 {
        let name = format!("race{round}");
        let bodies: Vec<Value> = (0..4)
            .map(|i| json!({"username": name, "email": format!("{name}-{i}@example.com"), "password": "password123"}))
            .collect();
        let results = futures_util::future::join_all(bodies.iter().map(|b| h.create(b))).await;
        let ok = results.iter().filter(|(s, _)| *s == StatusCode::OK).count();
        let conflicts = results.iter().filter(|(s, b)| *s == StatusCode::CONFLICT && b["code"] == 1004).count();
        assert_eq!((ok, conflicts), (1, 3), "{results:?}");
    }
}

#[tokio::test]
async fn pagination_arithmetic() {
    let (h, _db) = harness().await;
    let h = &h;
    let page = |q: &str| {
        let path = format!("/api/v1/users?{q}");
        async move { h.get(&path).await }
    };
    let totals = |b: &Value| {
        (b["data"]["total"].as_i64(), b["data"]["total_pages"].as_i64(), b["data"]["users"].as_array().map(Vec::len))
    };

    let (_, b) = page("").await;
    assert_eq!(totals(&b), (Some(0), Some(0), Some(0)), "no users");
    h.create(&new_user("u000")).await;
    let (_, b) = page("").await;
    assert_eq!(totals(&b), (Some(1), Some(1), Some(1)), "one user");

    // Bulk-insert through the store (hashing each via HTTP would only be slow).
    for i in 1..20 {
        let new = users::NewUser {
            username: format!("u{i:03}"),
            email: format!("u{i:03}@example.com"),
            password_hash: "x".into(),
        };
        users::user_create(&h.pools.pg, new).await.unwrap();
    }
    let (_, b) = page("").await;
    assert_eq!(totals(&b), (Some(20), Some(1), Some(20)), "exactly one page");
    for i in 20..45 {
        let new = users::NewUser {
            username: format!("u{i:03}"),
            email: format!("u{i:03}@example.com"),
            password_hash: "x".into(),
        };
        users::user_create(&h.pools.pg, new).await.unwrap();
    }
    let (_, b) = page("page=3").await;
    assert_eq!(totals(&b), (Some(45), Some(3), Some(5)), "last, partial page");
    let (_, b) = page("page=4").await;
    assert_eq!(totals(&b), (Some(45), Some(3), Some(0)), "past the end");
    // Newest first, ties by id: the first page starts with the last insert.
    let (_, b) = page("page_size=2").await;
    assert_eq!(b["data"]["users"][0]["username"], "u044");
    assert_eq!(b["data"]["users"][1]["username"], "u043");
    // With a filter, totals count only matching users.
    let (_, b) = h.get("/api/v1/users?page_size=100").await;
    let some_id = b["data"]["users"][7]["id"].as_i64().unwrap();
    send(
        h.cli
            .put(format!("/api/v1/users/{some_id}"))
            .header("token", &h.token)
            .body_json(&json!({"status": "inactive"})),
    )
    .await;
    let (_, b) = page("status=inactive&page_size=1").await;
    assert_eq!(totals(&b), (Some(1), Some(1), Some(1)), "filtered");
    let (_, b) = page("status=active&page_size=10&page=5").await;
    assert_eq!(totals(&b), (Some(44), Some(5), Some(4)), "filtered, last page");
    assert_eq!(page("page=0").await.0, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn tokens_verify_expire_and_revoke() {
    let (h, _db) = harness().await;
    let users = |t: &str| send(h.cli.get("/api/v1/users").header("token", t));
    assert_eq!(users(&h.token).await.0, StatusCode::OK);
    assert_eq!(users("sk_not-a-real-token").await.1["code"], 1005);
    assert_eq!(users("").await.1["code"], 1002);

    let (_, expired) = tokens::token_issue(&h.pools.pg, "expired", Some(Duration::ZERO), None).await.unwrap();
    let (s, b) = users(&expired).await;
    assert_eq!(
        (s, b["code"].clone(), b["msg"].clone()),
        (StatusCode::UNAUTHORIZED, json!(1006), json!("认证令牌已过期"))
    );

    // Revocation from another process (a separate verifier, as `spec-server token revoke`
    // is) reaches the server's in-process and Redis caches: the next requests are refused.
    let (_, t) = tokens::token_issue(&h.pools.pg, "to-revoke", None, None).await.unwrap();
    assert_eq!(users(&t).await.0, StatusCode::OK);
    assert_eq!(users(&t).await.0, StatusCode::OK, "served from the local cache");
    assert!(h.pools.tokens(&h.cfg).revoke("to-revoke").await.unwrap());
    let start = std::time::Instant::now();
    loop {
        let (s, b) = users(&t).await;
        if s == StatusCode::UNAUTHORIZED {
            assert_eq!(b["code"], 1007);
            break;
        }
        // Bounded by the local cache TTL (5 s), which only a lost pub/sub message reaches.
        assert!(start.elapsed() < Duration::from_secs(5), "revocation never reached the server");
        tokio::task::yield_now().await;
    }
    println!("revocation reached the server in {:?}", start.elapsed());
}

/// Scopes: a token limited to `users:read` reads users and is refused everything else with a
/// 403 (code 1018) naming the scope that would do, before its body is looked at, from the
/// caches as from PostgreSQL; `admin` and a token issued without scopes (as every token from
/// before scopes) may do everything; authentication still comes first.
#[tokio::test]
async fn token_scopes_limit_operations_and_unscoped_tokens_keep_full_access() {
    use tokens::Scope;
    let (h, _db) = harness().await;
    let (s, b) = h.create(&new_user("scoped")).await;
    assert_eq!(s, StatusCode::OK, "{b}");
    let id = b["data"]["id"].as_i64().unwrap();
    let (_, reader) = tokens::token_issue(&h.pools.pg, "reader", None, Some(&[Scope::UsersRead])).await.unwrap();
    let (_, admin) = tokens::token_issue(&h.pools.pg, "admin", None, Some(&[Scope::Admin])).await.unwrap();
    let email = json!({"to": "scopes@example.com", "subject": "s", "body": "b"});
    let create = |t: &str, name: &str| h.cli.post("/api/v1/users").header("token", t).body_json(&new_user(name));
    let task = |t: &str, body: &Value| h.cli.post("/api/v1/tasks/email").header("token", t).body_json(body);

    // The first request verifies through PostgreSQL, the repeats through the caches.
    for round in ["from PostgreSQL", "from the caches"] {
        let (s, b) = h.get_as(&reader, &format!("/api/v1/users/{id}")).await;
        assert_eq!((s, b["data"]["username"].clone()), (StatusCode::OK, json!("scoped")), "{round}");
        let (s, b) = send(create(&reader, "nope")).await;
        assert_eq!(
            (s, b["code"].clone(), b["msg"].clone(), b["data"].clone()),
            (StatusCode::FORBIDDEN, json!(1018), json!("令牌权限不足"), json!({"required": ["users:write"]})),
            "{round}"
        );
        // Refused before the body: an invalid one is a 403, not a 400.
        let (s, b) = send(task(&reader, &json!({}))).await;
        assert_eq!((s, b["data"].clone()), (StatusCode::FORBIDDEN, json!({"required": ["tasks:write"]})), "{round}");
    }
    assert_eq!(h.get_as(&reader, "/api/v1/tasks/00000000-0000-0000-0000-000000000000").await.0, StatusCode::FORBIDDEN);

    for (who, t) in [("admin", admin.as_str()), ("unscoped", h.token.as_str())] {
        for (i, round) in ["from PostgreSQL", "from the caches"].into_iter().enumerate() {
            let (s, b) = send(create(t, &format!("{who}_{i}"))).await;
            assert_eq!(s, StatusCode::OK, "{who} {round}: {b}");
            let (s, b) = send(task(t, &email)).await;
            assert_eq!(s, StatusCode::OK, "{who} {round}: {b}");
        }
    }
    let listed = tokens::tokens_list(&h.pools.pg).await.unwrap();
    let grant = |name: &str| listed.iter().find(|t| t.name == name).map(|t| t.grant.clone());
    assert_eq!(grant("reader"), Some(tokens::Grant::Scopes(vec![Scope::UsersRead])));
    assert_eq!(grant(&listed[0].name), Some(tokens::Grant::Full));

    // Authentication first: an expired narrow token is a 401, whatever it lacks.
    let (_, expired) =
        tokens::token_issue(&h.pools.pg, "expired-reader", Some(Duration::ZERO), Some(&[Scope::UsersRead]))
            .await
            .unwrap();
    let (s, b) = send(create(&expired, "late")).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::UNAUTHORIZED, json!(1006)));
}

#[tokio::test]
async fn request_ids_are_echoed() {
    let (h, _db) = harness().await;
    let resp = h.cli.get("/api/v1/health").header("x-request-id", "abc-123").send().await;
    resp.assert_header("x-request-id", "abc-123");
    let resp = h.cli.get("/api/v1/health").send().await;
    resp.assert_header_exist("x-request-id");
}

/// Health with its own PostgreSQL and Redis, which the test stops, hangs
/// and restarts. The client gives up after 3 s: an answer at all proves the
/// per-dependency timeouts work; the measured time is printed.
#[tokio::test]
async fn health_reports_stopped_and_hung_dependencies_and_recovers() {
    let mut pg = tokio::task::spawn_blocking(PrivatePostgres::start).await.unwrap().unwrap();
    let mut redis = tokio::task::spawn_blocking(PrivateRedis::start).await.unwrap().unwrap();
    let cfg = config(&pg.url(), &redis.url(), "health");
    let h = harness_for(&cfg).await;
    let health = || async {
        let start = std::time::Instant::now();
        let r = tokio::time::timeout(Duration::from_secs(3), send(h.cli.get("/api/v1/health")))
            .await
            .expect("health must answer even when a dependency hangs");
        println!("health answered {} in {:?}", r.0, start.elapsed());
        r
    };
    let state = |b: &Value| (b["status"].clone(), b["postgres"].clone(), b["redis"].clone());

    let (s, b) = health().await;
    assert_eq!((s, state(&b)), (StatusCode::OK, (json!("ok"), json!("up"), json!("up"))));
    // A users request caches the token, so auth survives PostgreSQL going away.
    assert_eq!(h.get("/api/v1/users").await.0, StatusCode::OK);

    pg.stop().unwrap();
    let (s, b) = health().await;
    assert_eq!((s, state(&b)), (StatusCode::SERVICE_UNAVAILABLE, (json!("degraded"), json!("down"), json!("up"))));
    assert!(b["error"].as_str().unwrap().contains("PostgreSQL"));
    // The store is gone: a documented 500 envelope, not a hang or a 503.
    let (s, b) = h.get("/api/v1/users").await;
    assert_eq!((s, b["code"].clone()), (StatusCode::INTERNAL_SERVER_ERROR, json!(5000)));

    pg.start_again().unwrap();
    wait_for_ok(&h).await;

    pg.pause();
    let (s, b) = health().await;
    assert_eq!((s, state(&b)), (StatusCode::SERVICE_UNAVAILABLE, (json!("degraded"), json!("down"), json!("up"))));
    pg.resume();
    wait_for_ok(&h).await;

    redis.stop().unwrap();
    let (s, b) = health().await;
    assert_eq!((s, state(&b)), (StatusCode::SERVICE_UNAVAILABLE, (json!("degraded"), json!("up"), json!("down"))));
    pg.stop().unwrap();
    let (s, b) = health().await;
    assert_eq!((s, state(&b)), (StatusCode::SERVICE_UNAVAILABLE, (json!("unavailable"), json!("down"), json!("down"))));
    // Neither token store answers: authentication fails closed (an unknown token of the
    // pre-checksum shape, which only a lookup can judge).
    let well_formed_unknown = format!("sk_{}", "A".repeat(43));
    let (s, b) = send(h.cli.get("/api/v1/users").header("token", well_formed_unknown)).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::INTERNAL_SERVER_ERROR, json!(5001)));
    // A mistyped token fails its checksum: refused (1005) without any store, so even now.
    let mut mistyped = h.token.clone().into_bytes();
    mistyped[10] = if mistyped[10] == b'Q' { b'R' } else { b'Q' };
    let (s, b) = send(h.cli.get("/api/v1/users").header("token", String::from_utf8(mistyped).unwrap())).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::UNAUTHORIZED, json!(1005)));

    redis.restart().unwrap();
    pg.start_again().unwrap();
    wait_for_ok(&h).await;
}

/// Polls `/health` until 200, without restarting anything.
async fn wait_for_ok(h: &Harness) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (s, b) = send(h.cli.get("/api/v1/health")).await;
        if s == StatusCode::OK {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "health did not recover: {b}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_a_431_envelope() {
    let (h, _db) = harness().await;
    let big = "a".repeat(h.cfg.header_limit_bytes);
    let (s, b) = send(h.cli.get("/api/v1/users").header("token", &h.token).header("x-padding", &big)).await;
    assert_eq!((s, b["code"].clone()), (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, json!(1015)), "{b}");
    assert!(b["msg"].as_str().unwrap().contains(&h.cfg.header_limit_bytes.to_string()), "{b}");
    // Just under the limit is served.
    let fits = "a".repeat(h.cfg.header_limit_bytes / 2);
    let (s, _) = send(h.cli.get("/api/v1/users").header("token", &h.token).header("x-padding", &fits)).await;
    assert_eq!(s, StatusCode::OK);
    // /health documents no 431 and reads no header.
    let (s, _) = send(h.cli.get("/api/v1/health").header("x-padding", &big)).await;
    assert_eq!(s, StatusCode::OK);
}

#[tokio::test]
async fn idempotency_keys_are_per_token_and_refuse_a_different_body() {
    let (h, _db) = harness().await;
    let (_, other) =
        tokens::token_issue(&h.pools.pg, &format!("o{}", uuid::Uuid::new_v4().simple()), None, None).await.unwrap();
    let email = |subject: &str, priority: &str| json!({"to": "a@example.com", "subject": subject, "body": "b", "priority": priority});
    let submit = |token: &str, body: Value| {
        let req =
            h.cli.post("/api/v1/tasks/email").header("token", token).header("Idempotency-Key", "k1").body_json(&body);
        send(req)
    };
    let (s, first) = submit(&h.token, email("hello", "low")).await;
    assert_eq!(s, StatusCode::OK, "{first}");
    let id = first["data"]["task_id"].clone();
    // The same request again: the same task, described as it is.
    let (s, again) = submit(&h.token, email("hello", "low")).await;
    assert_eq!(
        (s, again["data"]["task_id"].clone(), again["data"]["queue"].clone()),
        (StatusCode::OK, id.clone(), json!("low"))
    );
    // Another body (or priority) under the same key: refused, nothing added.
    for body in [email("other", "low"), email("hello", "critical")] {
        let (s, b) = submit(&h.token, body).await;
        assert_eq!((s, b["code"].clone()), (StatusCode::UNPROCESSABLE_ENTITY, json!(1014)), "{b}");
    }
    // Another token's key of the same name is its own.
    let (s, theirs) = submit(&other, email("other", "critical")).await;
    assert_eq!(s, StatusCode::OK, "{theirs}");
    assert_ne!(theirs["data"]["task_id"], id);
    assert_eq!(theirs["data"]["queue"], "critical");
    let stats = h.pools.queue(&h.cfg).unwrap().stats().await.unwrap();
    assert_eq!(stats.pending.values().sum::<u64>(), 2);
}

#[tokio::test]
async fn a_redis_that_can_lose_tasks_is_refused_and_separate_processes_need_urls() {
    // An instance of its own: the test changes its configuration.
    let db = devsvc::test_database().await.unwrap();
    let own = tokio::task::spawn_blocking(PrivateRedis::start).await.unwrap().unwrap();
    let mut h = harness_for(&config(db.url(), &own.url(), "durability")).await;
    let mut conn = h.pools.redis.get().await.unwrap();
    let set = |name: &'static str, value: &'static str| redis::cmd("CONFIG").arg("SET").arg(name).arg(value).clone();
    // The test instance keeps nothing on disk.
    set("appendonly", "no").query_async::<()>(&mut *conn).await.unwrap();
    let e = h.pools.check_redis_durability(&h.cfg).await.unwrap_err().to_string();
    assert!(e.contains("appendonly") && e.contains("REDIS_ALLOW_VOLATILE"), "{e}");
    set("appendonly", "yes").query_async::<()>(&mut *conn).await.unwrap();
    h.pools.check_redis_durability(&h.cfg).await.unwrap();
    set("maxmemory-policy", "allkeys-lru").query_async::<()>(&mut *conn).await.unwrap();
    let e = h.pools.check_redis_durability(&h.cfg).await.unwrap_err().to_string();
    assert!(e.contains("maxmemory-policy is \"allkeys-lru\""), "{e}");
    h.cfg.redis_allow_volatile = true;
    h.pools.check_redis_durability(&h.cfg).await.unwrap();

    let mut unset = h.cfg.clone();
    unset.database_url = None;
    unset.redis_url = None;
    let e = Backends::resolve(&unset, false).await.err().unwrap().to_string();
    assert!(e.contains("DATABASE_URL and REDIS_URL not set") && e.contains("spec-server dev"), "{e}");
}

#[tokio::test]
async fn health_has_its_own_connections_so_a_saturated_pool_is_not_a_dependency_down() {
    let db = devsvc::test_database().await.unwrap();
    let redis = devsvc::test_redis().await.unwrap();
    let mut cfg = config(db.url(), redis.url(), redis.prefix());
    cfg.pg_pool_max = 2;
    cfg.redis_pool_max = 2;
    let h = harness_for(&cfg).await;
    // Every request connection is taken, as under a load.
    let held_pg = [h.pools.pg.get().await.unwrap(), h.pools.pg.get().await.unwrap()];
    let held_redis = [h.pools.redis.get().await.unwrap(), h.pools.redis.get().await.unwrap()];
    let (s, b) = send(h.cli.get("/api/v1/health")).await;
    assert_eq!((s, b["postgres"].clone(), b["redis"].clone()), (StatusCode::OK, json!("up"), json!("up")), "{b}");
    drop((held_pg, held_redis));
}
