//! The credentials generated clients send, checked on the wire: the
//! security fixture's client (`fixtures/security/client`: every scheme
//! kind, OR, AND, optional, open and the global default) against a
//! catch-all server that records every request, and the generator's
//! refusals of what it cannot send right.

// Helpers outside #[test] fns unwrap too: a panic is a failure with a location.
#![allow(clippy::unwrap_used)]

use std::sync::{Arc, Mutex};

use fixture_security_client::{Client, Credentials, types};
use poem::{
    Request, Response, Route,
    listener::{Acceptor, Listener},
};

/// One request as the server saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: String,
    path: String,
    /// Decoded query pairs.
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
}

impl Seen {
    /// Every credential-carrying part of the request, in a fixed order:
    /// `Authorization`, the API key header, `Cookie`, the API key query pair.
    fn credentials(&self) -> Vec<String> {
        let mut out = Vec::new();
        for name in ["authorization", "x-api-key", "cookie"] {
            for (n, v) in &self.headers {
                if n == name {
                    out.push(format!("{n}: {v}"));
                }
            }
        }
        for (k, v) in &self.query {
            if k == "api_key" {
                out.push(format!("?{k}={v}"));
            }
        }
        out
    }
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A catch-all server on a free loopback port recording every request;
/// returns the client's base URL (with the fixture's base path `/v2`).
async fn start() -> (String, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let record = poem::endpoint::make_sync(move |req: Request| {
        let query = req.uri().query().unwrap_or("");
        let url = reqwest::Url::parse(&format!("http://x/?{query}")).unwrap();
        seen.lock().unwrap().push(Seen {
            method: req.method().to_string(),
            path: req.uri().path().to_owned(),
            query: url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect(),
            headers: req
                .headers()
                .iter()
                .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("<binary>").to_owned()))
                .collect(),
        });
        let status = if req.method() == poem::http::Method::POST { 201 } else { 200 };
        Response::builder()
            .status(poem::http::StatusCode::from_u16(status).unwrap())
            .content_type("application/json")
            .body(r#"{"principal": null}"#)
    });
    let app = Route::new().at("/*path", record);
    let acceptor = poem::listener::TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    tokio::spawn(async move { poem::Server::new_with_acceptor(acceptor).run(app).await });
    (format!("http://{addr}/v2"), log)
}

/// Calls every operation of the fixture once, in document order; returns
/// what the server saw of each, keyed by path.
async fn call_all(base: &str, log: &Log, credentials: Credentials) -> Vec<(String, Vec<String>)> {
    let c = Client::new(base, credentials);
    log.lock().unwrap().clear();
    c.open().send().await.unwrap();
    c.global_default().send().await.unwrap();
    c.api_key_header().send().await.unwrap();
    c.api_key_query().send().await.unwrap();
    c.api_key_cookie().send().await.unwrap();
    c.bearer_only().send().await.unwrap();
    c.basic_only().send().await.unwrap();
    c.list_items().limit(5u64).send().await.unwrap();
    let body = types::CreateItemBody { name: "widget".parse().unwrap() };
    c.create_item().body(body).send().await.unwrap();
    c.either().send().await.unwrap();
    c.both().send().await.unwrap();
    c.optional().send().await.unwrap();
    c.oidc().send().await.unwrap();
    let seen = log.lock().unwrap().clone();
    assert_eq!(seen.len(), 13, "one request per operation");
    seen.into_iter().map(|s| (format!("{} {}", s.method, s.path), s.credentials())).collect()
}

/// `(request, credentials)` rows for [`call_all`]'s expectations.
fn rows(rows: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
    rows.iter().map(|(r, c)| ((*r).to_owned(), c.iter().map(|s| (*s).to_owned()).collect())).collect()
}

/// `user:pw` in base64, written out so the test does not share the
/// client's encoder.
const BASIC_USER_PW: &str = "authorization: Basic dXNlcjpwdw==";

#[tokio::test]
async fn every_scheme_sends_exactly_its_credential() {
    let (base, log) = start().await;
    let all = Credentials::default()
        .key_header("kh")
        .key_query("k q&=")
        .key_cookie("c00kie")
        .bearer("jwt")
        .basic("user", "pw")
        .oauth("access-token")
        .oidc("id-token");
    let seen = call_all(&base, &log, all).await;
    let expected = rows(&[
        // Open: nothing, though every credential is configured.
        ("GET /v2/open", &[]),
        // No `security` of its own: the document's (bearer).
        ("GET /v2/default", &["authorization: Bearer jwt"]),
        ("GET /v2/header", &["x-api-key: kh"]),
        // Percent-encoded in the URL, decoded by the server.
        ("GET /v2/query", &["?api_key=k q&="]),
        ("GET /v2/cookie", &["cookie: session=c00kie"]),
        ("GET /v2/bearer", &["authorization: Bearer jwt"]),
        ("GET /v2/basic", &[BASIC_USER_PW]),
        ("GET /v2/items", &["authorization: Bearer access-token"]),
        ("POST /v2/items", &["authorization: Bearer access-token"]),
        // OR: the first alternative (bearer), not both.
        ("GET /v2/either", &["authorization: Bearer jwt"]),
        // AND: both at once.
        ("GET /v2/both", &["x-api-key: kh", "?api_key=k q&="]),
        // Optional: bearer when configured.
        ("GET /v2/optional", &["authorization: Bearer jwt"]),
        ("GET /v2/oidc", &["authorization: Bearer id-token"]),
    ]);
    assert_eq!(seen, expected);
    // The query key joins the operation's own parameters.
    let items = log.lock().unwrap().iter().find(|s| s.path == "/v2/items").cloned().unwrap();
    assert_eq!(items.query, vec![("limit".to_owned(), "5".to_owned())], "no API key where none is declared");
}

#[tokio::test]
async fn without_credentials_nothing_is_sent() {
    let (base, log) = start().await;
    let seen = call_all(&base, &log, Credentials::default()).await;
    for (request, credentials) in seen {
        assert!(credentials.is_empty(), "{request} got {credentials:?}");
    }
}

#[tokio::test]
async fn alternatives_and_combinations_need_every_credential() {
    let (base, log) = start().await;
    // Only the API key header: `either` falls back to its second
    // alternative; `both` lacks its query key and sends nothing at all
    // (the server will answer 401); bearer operations get nothing.
    let seen = call_all(&base, &log, Credentials::default().key_header("kh")).await;
    let expected = rows(&[
        ("GET /v2/open", &[]),
        ("GET /v2/default", &[]),
        ("GET /v2/header", &["x-api-key: kh"]),
        ("GET /v2/query", &[]),
        ("GET /v2/cookie", &[]),
        ("GET /v2/bearer", &[]),
        ("GET /v2/basic", &[]),
        ("GET /v2/items", &[]),
        ("POST /v2/items", &[]),
        ("GET /v2/either", &["x-api-key: kh"]),
        ("GET /v2/both", &[]),
        ("GET /v2/optional", &[]),
        ("GET /v2/oidc", &[]),
    ]);
    assert_eq!(seen, expected);

    // Only the query key: `both` still sends nothing.
    let seen = call_all(&base, &log, Credentials::default().key_query("q")).await;
    let both = seen.iter().find(|(r, _)| r == "GET /v2/both").unwrap();
    assert!(both.1.is_empty(), "half an AND is not sent: {both:?}");
    let query = seen.iter().find(|(r, _)| r == "GET /v2/query").unwrap();
    assert_eq!(query.1, vec!["?api_key=q".to_owned()]);

    // Bearer only: `either` picks bearer, `optional` sends it.
    let seen = call_all(&base, &log, Credentials::default().bearer("b")).await;
    for path in ["/v2/default", "/v2/bearer", "/v2/either", "/v2/optional"] {
        let row = seen.iter().find(|(r, _)| r.ends_with(path)).unwrap();
        assert_eq!(row.1, vec!["authorization: Bearer b".to_owned()], "{path}");
    }
    let sent: usize = seen.iter().map(|(_, c)| c.len()).sum();
    assert_eq!(sent, 4, "bearer nowhere else: {seen:?}");
}

#[tokio::test]
async fn client_helpers_match_the_setters() {
    let (base, log) = start().await;
    let c = Client::new(&base, Credentials::default()).with_basic("user", "pw").with_oauth("t").with_key_cookie("s");
    log.lock().unwrap().clear();
    c.basic_only().send().await.unwrap();
    c.list_items().send().await.unwrap();
    c.api_key_cookie().send().await.unwrap();
    let seen: Vec<_> = log.lock().unwrap().iter().map(Seen::credentials).collect();
    assert_eq!(
        seen,
        vec![
            vec![BASIC_USER_PW.to_owned()],
            vec!["authorization: Bearer t".to_owned()],
            vec!["cookie: session=s".to_owned()],
        ]
    );
}

#[tokio::test]
async fn the_pre_hook_on_hand_built_requests() {
    let creds = Credentials::default().key_cookie("s").key_header("kh");
    // A cookie joins the request's own `Cookie` header.
    let mut req = reqwest::Request::new(reqwest::Method::GET, "http://h/v2/cookie".parse().unwrap());
    req.headers_mut().insert(reqwest::header::COOKIE, "theme=dark".parse().unwrap());
    fixture_security_client::auth::apply(&creds, &mut req).await.unwrap();
    assert_eq!(req.headers()[reqwest::header::COOKIE], "theme=dark; session=s");
    assert!(req.headers()[reqwest::header::COOKIE].is_sensitive());

    // Any base path, or none, before the template; a method the operation
    // does not have matches nothing.
    for (method, url, header) in [
        (reqwest::Method::GET, "http://h/header", true),
        (reqwest::Method::GET, "http://h/a/b/c/header?x=1", true),
        (reqwest::Method::POST, "http://h/v2/header", false),
        (reqwest::Method::GET, "http://h/v2/header/more", false),
    ] {
        let mut req = reqwest::Request::new(method.clone(), url.parse().unwrap());
        fixture_security_client::auth::apply(&creds, &mut req).await.unwrap();
        assert_eq!(req.headers().contains_key("x-api-key"), header, "{method} {url}");
    }

    // A value a cookie or header cannot carry is an error naming the
    // scheme, never the secret, and nothing is sent.
    let bad = Credentials::default().key_cookie("a; admin=1");
    let mut req = reqwest::Request::new(reqwest::Method::GET, "http://h/cookie".parse().unwrap());
    let err = fixture_security_client::auth::apply(&bad, &mut req).await.unwrap_err().to_string();
    assert!(err.contains("keyCookie") && !err.contains("admin"), "{err}");
    assert!(!req.headers().contains_key(reqwest::header::COOKIE));
    let (base, _log) = start().await;
    let bad = Client::new(&base, Credentials::default().bearer("line\nbreak"));
    let err = bad.bearer_only().send().await.unwrap_err().to_string();
    assert!(err.contains("`bearer`") && !err.contains("break"), "{err}");

    // Debug shows which schemes are configured, never their credentials.
    let debug = format!("{:?}", Credentials::default().basic("user", "hunter2").oauth("tok-123"));
    assert!(!debug.contains("hunter2") && !debug.contains("tok-123") && debug.contains("***"), "{debug}");
}

#[tokio::test]
async fn path_parameters_and_base_paths_on_this_contract() {
    // This repository's client: `/users/{id}` under `/api/v1`, with an id
    // whose `/` the client percent-encodes into one segment.
    let creds = spec_api_client::Credentials::default().token_auth("t");
    for (method, url, sent) in [
        (reqwest::Method::GET, "http://h/api/v1/users/a%2Fb", true),
        (reqwest::Method::DELETE, "http://h/users/5", true),
        (reqwest::Method::GET, "http://h/api/v1/health", false),
        (reqwest::Method::GET, "http://h/api/v1/tasks/1/extra", false),
        (reqwest::Method::GET, "http://h/api/v1/tasks/3fa85f64-5717-4562-b3fc-2c963f66afa6", true),
    ] {
        let mut req = reqwest::Request::new(method.clone(), url.parse().unwrap());
        spec_api_client::auth::apply(&creds, &mut req).await.unwrap();
        assert_eq!(req.headers().get("token").map(|v| v.to_str().unwrap()), sent.then_some("t"), "{method} {url}");
    }
}

/// Renders the client of `yaml`; the error's text when it fails.
fn render(yaml: &str) -> Result<String, String> {
    let doc = xtask::codegen::parse_spec(yaml).unwrap();
    xtask::codegen::render_client(&doc, "spec.yaml".as_ref(), "c", &xtask::codegen::Deps::Workspace)
        .map(|files| files.into_iter().find(|(p, _)| p.ends_with("auth.rs")).unwrap().1)
        .map_err(|e| format!("{e:#}"))
}

fn spec(schemes: &str, security: &str) -> String {
    format!(
        "openapi: 3.0.3\ninfo: {{title: t, version: '1'}}\npaths:\n  /x:\n    get:\n      operationId: x\n      \
         security: {security}\n      responses:\n        '200': {{description: ok}}\n\
         components:\n  securitySchemes:\n{schemes}"
    )
}

#[test]
fn unsupported_security_is_refused_with_its_pointer() {
    let err = render(&spec("    foo: {type: http, scheme: digest}\n", "[{foo: []}]")).unwrap_err();
    assert!(err.contains(r#"#/components/securitySchemes/foo: http scheme "digest" is not supported"#), "{err}");

    let err = render(&spec("    a: {type: http, scheme: bearer}\n", "[{nope: []}]")).unwrap_err();
    assert!(err.contains(r##"#/paths/~1x/get/security/0: unknown security scheme "nope""##), "{err}");

    let both = "    a: {type: http, scheme: bearer}\n    b: {type: http, scheme: basic}\n";
    let err = render(&spec(both, "[{a: []}, {a: [], b: []}]")).unwrap_err();
    assert!(err.contains("#/paths/~1x/get/security/1:") && err.contains("Authorization"), "{err}");

    let err = render(&spec("    k: {type: apiKey, in: header, name: 'bad name'}\n", "[{k: []}]")).unwrap_err();
    assert!(err.contains("#/components/securitySchemes/k/name:"), "{err}");
}

#[test]
fn with_token_only_for_a_single_key_or_bearer_scheme() {
    for (schemes, alias) in [
        ("    k: {type: apiKey, in: query, name: key}\n", true),
        ("    b: {type: http, scheme: Bearer}\n", true),
        ("    b: {type: http, scheme: basic}\n", false),
        ("    o: {type: openIdConnect, openIdConnectUrl: 'https://x'}\n", false),
        ("    k: {type: apiKey, in: header, name: k}\n    b: {type: http, scheme: bearer}\n", false),
    ] {
        let auth = render(&spec(schemes, "[]")).unwrap();
        assert_eq!(auth.contains("pub fn with_token("), alias, "{schemes}");
    }
}
