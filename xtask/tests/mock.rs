//! `cargo xtask mock`: mocks generated and built for this repository's spec
//! and the public specs, started as processes on a free port, driven over
//! HTTP (CRUD sequences where the spec has them, every parameterless `GET`
//! elsewhere) with every response checked against the spec by the contract
//! checker, and two runs of one seed compared.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::{Value, json};
use spec_contract::checker::{Class, Contract, Response};
use xtask::codegen::workspace_root;

const TOKEN: &str = "mock-test-token";

/// A mock process, killed when dropped.
struct Running {
    child: Child,
    /// `http://127.0.0.1:PORT{BASE_PATH}`.
    base: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `binary` on a free port and waits for the line naming its URL
/// (printed only once it listens).
fn start(binary: &Path, seed: u64) -> Running {
    let mut child = Command::new(binary)
        .args(["--port", "0", "--seed", &seed.to_string(), "--token", TOKEN])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("starting {}: {e}", binary.display()));
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        match lines.next() {
            Some(Ok(l)) => {
                if let Some(url) = l.strip_prefix("mock: listening on ") {
                    break url.to_owned();
                }
            }
            _ => panic!("{} exited before listening", binary.display()),
        }
    };
    // Drain the rest so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, base }
}

/// One request and its response, checked against the spec.
struct Client<'a> {
    http: reqwest::Client,
    contract: &'a Contract,
    base: String,
    /// Credential header to send (`Authorization: Bearer …` or a key).
    auth: Option<(String, String)>,
    checked: usize,
    conventions: usize,
}

impl Client<'_> {
    async fn send(&mut self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        self.send_as(method, path, body, "application/json").await
    }

    async fn send_with(&mut self, path: &str, headers: &[(String, String)]) -> (u16, Value) {
        self.request("GET", path, None, "application/json", headers).await
    }

    async fn send_as(&mut self, method: &str, path: &str, body: Option<&Value>, media: &str) -> (u16, Value) {
        self.request(method, path, body, media, &[]).await
    }

    async fn request(
        &mut self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        media: &str,
        headers: &[(String, String)],
    ) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.http.request(m, &url);
        if let Some((k, v)) = &self.auth {
            req = req.header(k, v);
        }
        for (k, v) in headers {
            req = req.header(k, v);
        }
        if let Some(b) = body {
            req = req.header("content-type", media).body(b.to_string());
        }
        let resp = req.send().await.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or_default().to_owned()))
            .collect();
        let content_type = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
        let bytes = resp.bytes().await.expect("body");
        let query = path.split_once('?').map_or("", |(_, q)| q);
        let checked = self.contract.check_request(
            method,
            path,
            Response { status, content_type: content_type.as_deref(), body: &bytes, headers: &headers, query },
        );
        // Spec findings fail; convention findings (registry codes, field
        // naming) are what a deployment adds on top, counted apart.
        if let Err(mismatches) = checked {
            let (spec, conventions): (Vec<_>, Vec<_>) = mismatches.iter().partition(|m| m.class == Class::Spec);
            if !spec.is_empty() {
                let list: Vec<String> = spec.iter().map(ToString::to_string).collect();
                panic!("{method} {path} → {status}: {}\n{}", list.join("\n"), String::from_utf8_lossy(&bytes));
            }
            for c in conventions {
                eprintln!("convention: {method} {path} → {status}: {c}");
                self.conventions += 1;
            }
        }
        self.checked += 1;
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }
}

fn fixture(name: &str) -> PathBuf {
    workspace_root().join("xtask/tests/fixtures/public").join(name)
}

fn built(spec: &Path, raw: &[&str]) -> xtask::mock::Generated {
    let raw: Vec<String> = raw.iter().map(|r| r.to_string()).collect();
    let m = xtask::mock::generate(spec, &raw).expect("generate");
    xtask::mock::build(std::slice::from_ref(&m)).expect("build");
    m
}

/// POST → GET returns what was created, PUT/PATCH → GET shows the change,
/// the list has it, DELETE → GET is the documented 404.
#[allow(clippy::too_many_arguments)]
async fn crud(
    c: &mut Client<'_>,
    collection: &str,
    resource_at: &str,
    id_key: &str,
    create: Value,
    update: (&str, &str, Value),
    changed: (&str, Value),
) {
    let (status, created) = c.send("POST", collection, Some(&create)).await;
    assert!((200..300).contains(&status), "create: {status} {created}");
    let resource = created.pointer(resource_at).cloned().expect("the created resource");
    for (k, v) in create.as_object().expect("an object body") {
        if k != "password" {
            // A `number` member comes back as serde writes an f64 (25.0).
            let kept =
                resource.get(k).is_some_and(|got| got == v || got.as_f64().is_some_and(|g| Some(g) == v.as_f64()));
            assert!(kept, "create kept {k}: sent {v}, got {:?}", resource.get(k));
        }
    }
    let id = resource[id_key].clone();
    let id_text = id.as_str().map_or_else(|| id.to_string(), str::to_owned);
    let item = format!("{collection}/{id_text}");
    let (status, read) = c.send("GET", &item, None).await;
    assert_eq!(status, 200, "read: {read}");
    assert_eq!(read.pointer(resource_at), Some(&resource), "GET returns what POST created");

    let (method, media, body) = update;
    let (status, updated) = c.send_as(method, &item, Some(&body), media).await;
    assert!((200..300).contains(&status), "update: {status} {updated}");
    let (_, read) = c.send("GET", &item, None).await;
    let (field, value) = changed;
    assert_eq!(read.pointer(resource_at).and_then(|r| r.get(field)), Some(&value), "{method} changed {field}");

    let (status, list) = c.send("GET", collection, None).await;
    assert_eq!(status, 200, "list: {list}");
    assert!(list.to_string().contains(&id.to_string()), "the list shows the created resource: {list}");

    let (status, _) = c.send("DELETE", &item, None).await;
    assert!((200..300).contains(&status), "delete: {status}");
    let (status, _) = c.send("GET", &item, None).await;
    assert_eq!(status, 404, "GET after DELETE");
}

/// A value for a required parameter: its example, its first enum member,
/// else a plain one of its type (URL-safe, so it needs no encoding).
fn param_value(contract: &Contract, schema: &Value) -> String {
    let s = contract.resolve(schema);
    if let Some(v) = s.get("example").or_else(|| s.get("enum").and_then(|e| e.get(0))) {
        return v.as_str().map_or_else(|| v.to_string(), str::to_owned);
    }
    match (s.get("type").and_then(Value::as_str), s.get("format").and_then(Value::as_str)) {
        (Some("boolean"), _) => "true".into(),
        (Some("integer" | "number"), _) => s.get("minimum").map_or("1".into(), ToString::to_string),
        (_, Some("uuid")) => "7b0c0f0e-4d5a-4b6c-8d7e-0f1a2b3c4d5e".into(),
        (_, Some("date")) => "2026-01-01".into(),
        _ => "mock".into(),
    }
}

/// Every `GET` without a body, its required parameters filled: answered
/// below 500 and checked (a `GET` of an item nothing created is its
/// documented 404, or a synthesized success where the spec documents no
/// failure for it).
async fn every_get(c: &mut Client<'_>, contract: &Contract) {
    // An operation documenting no response at all (buildomat's
    // `task_output_download`) has no answer that conforms: skipped.
    let gets: Vec<_> = contract
        .operations()
        .iter()
        .filter(|o| o.method.eq_ignore_ascii_case("get") && !o.responses.is_empty())
        .cloned()
        .collect();
    for op in gets {
        let mut path = op.path.clone();
        let mut query = Vec::new();
        let mut headers = Vec::new();
        for p in op.parameters.iter().filter(|p| p.required || p.location == "path") {
            let v = param_value(contract, &p.schema);
            match p.location.as_str() {
                "path" => path = path.replace(&format!("{{{}}}", p.name), &v),
                "query" => query.push(format!("{}={v}", p.name)),
                "header" => headers.push((p.name.clone(), v)),
                _ => {}
            }
        }
        if !query.is_empty() {
            path = format!("{path}?{}", query.join("&"));
        }
        let (status, body) = c.send_with(&path, &headers).await;
        assert!(status < 500, "GET {path}: {status} {body}");
    }
}

fn client<'a>(contract: &'a Contract, base: &str, auth: Option<(&str, String)>) -> Client<'a> {
    Client {
        http: reqwest::Client::new(),
        contract,
        base: base.to_owned(),
        auth: auth.map(|(k, v)| (k.to_owned(), v)),
        checked: 0,
        conventions: 0,
    }
}

/// This repository's contract: users CRUD over the mock, every response
/// valid, 401 without the token, and the same seed giving the same bodies.
#[tokio::test(flavor = "multi_thread")]
async fn this_spec_crud_and_determinism() {
    let spec = workspace_root().join("spec/openapi.yaml");
    let contract = Contract::load(&spec).expect("contract");
    let m = built(&spec, &[]);
    let bearer = Some(("token", TOKEN.to_owned()));
    let run = start(&m.binary, 42);
    let mut c = client(&contract, &run.base, bearer.clone());
    crud(
        &mut c,
        "/users",
        "/data",
        "id",
        json!({"username": "mock_user", "email": "mock@example.com", "password": "password123"}),
        ("PATCH", "application/merge-patch+json", json!({"email": "changed@example.com"})),
        ("email", json!("changed@example.com")),
    )
    .await;
    // PUT replaces what PATCH merges: the same store.
    let (_, created) = c
        .send(
            "POST",
            "/users",
            Some(&json!({"username": "put_user", "email": "p@example.com", "password": "password123"})),
        )
        .await;
    let item = format!("/users/{}", created["data"]["id"]);
    let (status, _) = c.send("PUT", &item, Some(&json!({"status": "suspended"}))).await;
    assert_eq!(status, 200);
    let (_, read) = c.send("GET", &item, None).await;
    assert_eq!(read["data"]["status"], "suspended", "PUT changed it: {read}");
    assert_eq!(read["data"]["username"], "put_user");
    every_get(&mut c, &contract).await;
    let mut anon = client(&contract, &run.base, None);
    let (status, _) = anon.send("GET", "/users", None).await;
    assert_eq!(status, 401, "no credential");
    let mut wrong = client(&contract, &run.base, Some(("token", "nope".into())));
    let (status, _) = wrong.send("GET", "/users", None).await;
    assert_eq!(status, 401, "a wrong credential");
    let (status, body) = c.send("POST", "/users", Some(&json!({"username": "x"}))).await;
    assert_eq!(status, 400, "the glue validates: {body}");
    eprintln!("this spec: {} responses checked", c.checked + anon.checked + wrong.checked);
    generic_scenario_conforms("spec/openapi.yaml", &contract, &run.base).await;
    drop(run);

    // The same seed and the same requests: the same bodies, timestamps too.
    let mut bodies = Vec::new();
    for _ in 0..2 {
        let run = start(&m.binary, 7);
        let mut c = client(&contract, &run.base, bearer.clone());
        let (_, created) = c
            .send(
                "POST",
                "/users",
                Some(&json!({"username": "same_seed", "email": "s@example.com", "password": "password123"})),
            )
            .await;
        let (_, health) = c.send("GET", "/health", None).await;
        bodies.push((created, health));
    }
    assert_eq!(bodies[0], bodies[1], "one seed, one answer");
    let run = start(&m.binary, 8);
    let mut c = client(&contract, &run.base, bearer);
    let (_, health) = c.send("GET", "/health", None).await;
    assert_ne!(bodies[0].1, health, "another seed, another answer");
}

/// The five public specs: each mock builds (one target directory for all)
/// and starts; museum's special events are CRUD; every parameterless GET of
/// each is answered and checked.
#[tokio::test(flavor = "multi_thread")]
async fn public_specs() {
    let specs: [(&str, &[&str]); 5] = [
        ("museum.yaml", &[]),
        ("keeper.json", &[]),
        ("param-collision.json", &[]),
        ("propolis-server.json", &["instance_serial"]),
        ("buildomat.json", &[]),
    ];
    let start_all = std::time::Instant::now();
    let mocks: Vec<_> = specs
        .iter()
        .map(|(f, raw)| {
            let raw: Vec<String> = raw.iter().map(|r| r.to_string()).collect();
            xtask::mock::generate(&fixture(f), &raw).expect("generate")
        })
        .collect();
    xtask::mock::build(&mocks).expect("build");
    eprintln!("public mocks generated and built in {:.1} s", start_all.elapsed().as_secs_f64());
    for ((file, _), m) in specs.iter().zip(&mocks) {
        let contract = Contract::load(&fixture(file)).expect("contract");
        let run = start(&m.binary, 1);
        // museum's scheme is HTTP basic: the token is the password. The
        // others declare no scheme (keeper's `Authorization` is a plain
        // header parameter, filled like any other).
        let auth = (*file == "museum.yaml").then(|| ("authorization", format!("Basic {}", basic("user", TOKEN))));
        let mut c = client(&contract, &run.base, auth);
        if *file == "museum.yaml" {
            crud(
                &mut c,
                "/special-events",
                "",
                "eventId",
                json!({
                    "name": "Mock Night",
                    "location": "Hall 1",
                    "eventDescription": "A night of mocks.",
                    "dates": ["2026-10-01"],
                    "price": 25
                }),
                ("PATCH", "application/json", json!({"location": "Hall 2"})),
                ("location", json!("Hall 2")),
            )
            .await;
        }
        every_get(&mut c, &contract).await;
        eprintln!("{file}: {} responses checked", c.checked);
        generic_scenario_conforms(file, &contract, &run.base).await;
    }
}

/// The contract command's generic scenario (what `cargo xtask contract --base-url <mock>
/// --scenario generic` runs) against a running mock: every response it gets must conform to
/// the spec (behaviour and convention findings are reported, not failed: the mock knows no
/// business rule the spec does not state).
async fn generic_scenario_conforms(name: &str, contract: &Contract, base: &str) {
    let opts =
        spec_contract::Options { base_url: base.to_owned(), token: Some(TOKEN.to_owned()), ..Default::default() };
    let report = spec_contract::generic::run(contract, &opts).await.expect("the generic scenario runs");
    let failed: Vec<String> = report
        .failed_checks()
        .map(|c| match &c.outcome {
            spec_contract::report::Outcome::Fail(why) => format!("{}: {}", c.name, why.join("; ")),
            _ => c.name.clone(),
        })
        .collect();
    assert!(failed.is_empty(), "{name}: the mock's answers break the spec:\n{}", failed.join("\n"));
    assert!(report.passed(), "{name}: {}", report.summary());
    eprintln!("{name}: generic scenario {}", report.summary());
}

/// `user:password` in base64 (RFC 7617), small enough to spell out here.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}").into_bytes();
    let mut out = String::new();
    for chunk in input.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn basic_credentials_encode() {
    assert_eq!(basic("Aladdin", "open sesame"), "QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
}
