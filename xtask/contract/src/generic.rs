//! The generic scenario: `cargo xtask contract` on a spec this crate has no
//! hand-written scenario for. It needs nothing but the spec, a base URL and
//! optionally a token: CRUD sequences found by path pattern, one
//! synthesized request for every other operation, the spec-generated
//! negative cases and the missing-credential cases, every response judged
//! by the checker. A status it has no way to provoke is reported as not
//! reached, never as a failure of the deployment.

use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use serde_json::{Map, Value};

use super::{
    checker::{Class, Contract, FieldFormat, Operation, Parameter, Response, escape, response_for, short},
    coverage::Sent,
    negative::{Case, Expect, Generator, Request},
    report::{Check, Outcome, Report},
    scenario::Options,
};

/// Response bodies are read up to this size; a larger one is a failure
/// of that check rather than unbounded memory in the checker.
const MAX_BODY: usize = 8 << 20;

/// Per-request timeout: a server that hangs fails that check and the run goes on.
const TIMEOUT: Duration = Duration::from_secs(30);

/// The operationIds the project scenario (`scenario.rs`) drives: it runs
/// only for a spec that has every one of them.
pub const PROJECT_OPERATIONS: &[&str] = &[
    "healthCheck",
    "createUser",
    "getUserById",
    "listUsers",
    "updateUser",
    "patchUser",
    "deleteUser",
    "batchCreateUsers",
    "batchGetUsers",
    "submitEmailTask",
    "submitEmailTaskBatch",
    "submitSyncTask",
    "getTask",
];

/// Which scenario a run uses (`--scenario`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Scenario {
    /// `project` for a spec with every operation of [`PROJECT_OPERATIONS`], else `generic`.
    #[default]
    Auto,
    /// This repository's hand-written scenario (users and tasks).
    Project,
    /// This module: any spec.
    Generic,
}

impl Scenario {
    pub fn parse(s: &str) -> Result<Scenario, String> {
        match s {
            "auto" => Ok(Scenario::Auto),
            "project" => Ok(Scenario::Project),
            "generic" => Ok(Scenario::Generic),
            other => Err(format!("expected auto, project or generic, got {other:?}")),
        }
    }

    /// `Auto` decided for `contract`.
    pub fn resolve(self, contract: &Contract) -> Scenario {
        match self {
            Scenario::Auto if PROJECT_OPERATIONS.iter().all(|id| contract.operation(id).is_some()) => Scenario::Project,
            Scenario::Auto => Scenario::Generic,
            other => other,
        }
    }
}

/// Runs the generic scenario against `opts.base_url`; `Err` only when the
/// server does not answer at all.
pub async fn run(contract: &Contract, opts: &Options) -> Result<Report> {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .build()
        .context("building the HTTP client")?;
    let base = opts.base_url.trim_end_matches('/').to_owned();
    if let Err(e) = http.get(&base).send().await {
        bail!("{base} does not answer: {e}");
    }
    let nonce = uuid::Uuid::new_v4().simple().to_string()[..10].to_owned();
    let mut g = Generic {
        contract,
        http,
        base,
        token: opts.token.clone().filter(|t| !t.is_empty()),
        nonce,
        report: Report::new(contract),
        field_format: contract.field_format().or(opts.field_format),
        created: Vec::new(),
        done: vec![false; contract.operations().len()],
        posted: Vec::new(),
    };
    let groups = g.groups();
    for group in &groups {
        g.crud_build(group).await;
    }
    g.singles().await;
    for group in groups.iter().rev() {
        g.crud_delete(group).await;
    }
    g.negatives().await;
    g.credentials().await;
    g.report.unreached_not_failing("the generic scenario knows no request that provokes it");
    Ok(g.report)
}

/// One CRUD group found by path pattern: `POST /things` with some of
/// `GET|PUT|PATCH|DELETE /things/{param}` and `GET /things`. Indexes into
/// the contract's operations.
#[derive(Debug)]
struct Group {
    collection: String,
    param: String,
    create: usize,
    read: Option<usize>,
    updates: Vec<usize>,
    delete: Option<usize>,
    list: Option<usize>,
}

/// What one request left to the next: the create response of a group.
struct Created {
    collection: String,
    param: String,
    id: String,
    /// The item as sent and what was sent last (create, then update).
    sent: Option<Value>,
}

/// Which credential a request carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cred {
    Valid,
    Absent,
    Wrong,
}

/// What a step expects besides a response valid against the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// Any documented status: a synthesized request outside a CRUD group,
    /// whose data the scenario cannot know to exist.
    Any,
    /// A 2xx: a valid request on data this run created.
    Success,
    /// A 4xx: invalid input, a missing credential, an item deleted. A 2xx
    /// is a behaviour finding (the spec does not oblige a server to check),
    /// anything else a failure.
    Rejection,
}

/// Which values path parameters get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ids {
    /// Ids this run created; else generated (a read may guess).
    Known,
    /// Ids this run created; else one unlikely to exist (a write must not guess).
    KnownOrAbsent,
    /// One unlikely to exist (an invalid request, one without credential,
    /// a read of what does not exist: if wrongly accepted, nothing happens).
    Absent,
}

/// A request built for an operation, or why none could be.
type Built = Result<(Request, Payload), String>;

/// A request body other than JSON, read from the document.
#[derive(Debug, Clone)]
enum Payload {
    None,
    Form(Vec<(String, String)>),
    Raw { media: String, bytes: Vec<u8> },
}

/// A response as read off the wire.
struct Got {
    status: u16,
    content_type: Option<String>,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Where a security scheme puts the token.
#[derive(Debug, Clone)]
enum Carrier {
    Header(String),
    Query(String),
    Cookie(String),
    Bearer,
    Basic,
}

/// An operation's security requirement, as far as a token can meet it.
struct Security {
    /// Whether a request may carry no credential at all (no requirement, or an empty alternative).
    anonymous: bool,
    /// The first alternative whose every scheme a token can fill.
    carriers: Option<Vec<Carrier>>,
    /// Why none can, when none can.
    unusable: Option<String>,
}

struct Generic<'a> {
    contract: &'a Contract,
    http: reqwest::Client,
    /// The base URL without a trailing `/`; operation paths are appended.
    base: String,
    token: Option<String>,
    /// Mixed into generated strings so that reruns against a stateful
    /// server do not collide on unique fields; all else is deterministic.
    nonce: String,
    report: Report,
    field_format: Option<FieldFormat>,
    created: Vec<Created>,
    /// Operations a CRUD step already drove.
    done: Vec<bool>,
    /// The bodies of 2xx answers to POSTs outside CRUD groups (at most one
    /// per operation): a path parameter no group names may be a member of
    /// one (`{task_id}` from a `POST /tasks/email` answer).
    posted: Vec<Value>,
}

impl<'a> Generic<'a> {
    fn ops(&self) -> &'a [Operation] {
        self.contract.operations()
    }

    /// The CRUD groups, parents before children (`/a` before `/a/{id}/b`),
    /// so a child's path finds its parent's id.
    fn groups(&self) -> Vec<Group> {
        let ops = self.ops();
        let mut out = Vec::new();
        for (i, create) in ops.iter().enumerate() {
            if create.method != "POST" || create.path.ends_with('}') {
                continue;
            }
            let item = |o: &Operation| {
                let rest = o.path.strip_prefix(create.path.trim_end_matches('/'))?.strip_prefix("/{")?;
                let name = rest.strip_suffix('}')?;
                (!name.contains(['/', '{', '}'])).then(|| name.to_owned())
            };
            let find = |m: &str| ops.iter().position(|o| o.method == m && item(o).is_some());
            let items = ops.iter().filter(|o| o.method != "POST");
            let Some(param) = items.filter_map(item).next() else { continue };
            let group = Group {
                collection: create.path.trim_end_matches('/').to_owned(),
                param,
                create: i,
                read: find("GET"),
                updates: ["PUT", "PATCH"].iter().filter_map(|m| find(m)).collect(),
                delete: find("DELETE"),
                list: ops.iter().position(|o| o.method == "GET" && o.path == create.path),
            };
            if group.read.is_some() || group.delete.is_some() {
                out.push(group);
            }
        }
        out.sort_by_key(|g| g.collection.matches('/').count());
        out
    }

    /// The id this run created for the collection a path parameter names
    /// (`/things` for `{id}` in `/things/{id}/parts`).
    fn known_id(&self, op: &Operation, p: &Parameter) -> Option<String> {
        let prefix = op.path.split(&format!("/{{{}}}", p.name)).next()?;
        let created = self.created.iter().rev().find(|c| c.collection == prefix && c.param == p.name);
        // Only a member named exactly like the parameter: `id` alone says
        // nothing about which resource it names.
        created.map(|c| c.id.clone()).or_else(|| self.posted.iter().rev().find_map(|b| find_named(b, &p.name)))
    }

    /// A path value unlikely to name anything that exists, so that a
    /// mutating request on data this run did not create, or a wrongly
    /// accepted invalid one, harms nothing.
    fn absent_value(&self, p: &Parameter) -> Option<String> {
        let s = self.contract.resolve(&p.schema);
        match s.get("type").and_then(Value::as_str) {
            Some("integer") => Some(match (s.get("maximum").and_then(Value::as_i64), s.get("format")) {
                (Some(max), _) => max.to_string(),
                (None, Some(f)) if f == "int32" => i32::MAX.to_string(),
                (None, Some(f)) if f == "uint64" => u64::MAX.to_string(),
                _ => i64::MAX.to_string(),
            }),
            Some("string") | None if s.get("format").and_then(Value::as_str) == Some("uuid") => {
                Some("00000000-0000-4000-8000-00c0ffee0000".to_owned())
            }
            Some("string") | None if s.get("enum").is_none() => Some(format!("ct-absent-{}", self.nonce)),
            _ => None,
        }
    }

    /// The generator for one request: the spec's examples first; path
    /// parameters as `ids` says; optional parameters only with `optional`.
    fn generator(&self, examples: bool, unique: &str, ids: Ids, optional: bool) -> Generator<'a> {
        let mut known: Vec<(String, String, Option<String>)> = Vec::new();
        for op in self.ops() {
            for p in op.parameters.iter().filter(|p| p.location == "path") {
                let v = match ids {
                    Ids::Known => self.known_id(op, p),
                    Ids::KnownOrAbsent => self.known_id(op, p).or_else(|| self.absent_value(p)),
                    Ids::Absent => self.absent_value(p),
                };
                known.push((op.id.clone(), p.name.clone(), v));
            }
        }
        let g = Generator::new(self.contract, unique, Vec::new()).with_path_values(move |op, p| {
            known.iter().find(|(o, n, _)| *o == op.id && *n == p.name).and_then(|(_, _, v)| v.clone())
        });
        let g = if optional { g } else { g.with_required_params_only() };
        if examples { g.with_examples_first() } else { g }
    }

    /// A valid request for operation `i`, its non-JSON body, or why none.
    fn build(&self, i: usize, g: &Generator<'_>) -> Built {
        let op = &self.ops()[i];
        let base = g.base_request(op)?;
        let payload = self.payload(op, g)?;
        Ok((base.request(op), payload))
    }

    /// The request body of an operation without a JSON one: a form from
    /// its schema, text, or a few bytes for any other media type.
    fn payload(&self, op: &Operation, g: &Generator<'_>) -> Result<Payload, String> {
        if op.request_body.is_some() {
            return Ok(Payload::None);
        }
        let Some(def) = self.contract.doc().pointer(&format!("{}/requestBody", &op.at[1..])) else {
            return Ok(Payload::None);
        };
        let def = self.contract.resolve(def);
        let required = def.get("required").and_then(Value::as_bool) == Some(true);
        let Some((media, m)) = def
            .get("content")
            .and_then(Value::as_object)
            .and_then(|c| c.iter().find(|(mt, _)| !mt.starts_with("multipart/")).or_else(|| c.iter().next()))
        else {
            return Ok(Payload::None);
        };
        let schema = m.get("schema").cloned().unwrap_or(Value::Object(Map::new()));
        let mt = super::checker::media_type(media);
        if mt == "application/x-www-form-urlencoded" {
            let Some(Value::Object(fields)) = g.valid(&schema, "") else {
                return if required { Err("no valid form body".into()) } else { Ok(Payload::None) };
            };
            let mut pairs = Vec::new();
            for (k, v) in fields {
                match v {
                    Value::Array(items) => pairs.extend(items.iter().map(|i| (k.clone(), text(i)))),
                    v => pairs.push((k, text(&v))),
                }
            }
            return Ok(Payload::Form(pairs));
        }
        if mt.starts_with("multipart/") {
            return if required {
                Err(format!("{media} bodies are not synthesized by the generic scenario"))
            } else {
                Ok(Payload::None)
            };
        }
        let bytes = if mt.starts_with("text/") {
            g.valid(&schema, "")
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| format!("ct{}", self.nonce))
        } else {
            format!("ct-contract-{}", self.nonce)
        };
        let media = if media.contains('*') { "application/octet-stream".to_owned() } else { media.clone() };
        Ok(Payload::Raw { media, bytes: bytes.into_bytes() })
    }

    /// The operation's security requirement against what a token can fill.
    fn security(&self, op: &Operation) -> Security {
        let doc = self.contract.doc();
        let def = doc.pointer(&op.at[1..]).map(|o| self.contract.resolve(o));
        let reqs = def.and_then(|o| o.get("security")).or_else(|| doc.get("security"));
        let Some(reqs) = reqs.and_then(Value::as_array).filter(|r| !r.is_empty()) else {
            return Security { anonymous: true, carriers: None, unusable: None };
        };
        let mut anonymous = false;
        let mut why = Vec::new();
        let mut usable = None;
        for alt in reqs.iter().filter_map(Value::as_object) {
            if alt.is_empty() {
                anonymous = true;
                continue;
            }
            let mut carriers = Vec::new();
            for name in alt.keys() {
                let s = self.contract.resolve(&doc["components"]["securitySchemes"][name]);
                let kind = s.get("type").and_then(Value::as_str).unwrap_or("");
                let field = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("").to_owned();
                let c = match (kind, field("in").as_str(), field("scheme").to_ascii_lowercase().as_str()) {
                    ("apiKey", "header", _) => Some(Carrier::Header(field("name"))),
                    ("apiKey", "query", _) => Some(Carrier::Query(field("name"))),
                    ("apiKey", "cookie", _) => Some(Carrier::Cookie(field("name"))),
                    ("http", _, "bearer") | ("oauth2" | "openIdConnect", _, _) => Some(Carrier::Bearer),
                    ("http", _, "basic") => Some(Carrier::Basic),
                    _ => None,
                };
                match c {
                    Some(c) => carriers.push(c),
                    None => why.push(format!("scheme {name} ({kind}) cannot carry a token")),
                }
            }
            if usable.is_none() && carriers.len() == alt.len() {
                usable = Some(carriers);
            }
        }
        let unusable = usable.is_none().then(|| why.join("; "));
        Security { anonymous, carriers: usable, unusable }
    }

    /// Sends one request; `Err` when no response came back.
    async fn send(
        &self,
        op: &Operation,
        req: &Request,
        payload: &Payload,
        cred: Cred,
    ) -> Result<(Got, String), String> {
        let sec = self.security(op);
        let mut query = req.query.clone();
        let mut headers = req.headers.clone();
        let mut cookies = Vec::new();
        let token = match cred {
            Cred::Valid => self.token.clone(),
            Cred::Wrong => self.token.as_deref().map(wrong),
            Cred::Absent => None,
        };
        if let (Some(token), Some(carriers)) = (&token, &sec.carriers) {
            for c in carriers {
                match c {
                    Carrier::Header(n) => headers.push((n.clone(), token.clone())),
                    Carrier::Query(n) => query.push((n.clone(), token.clone())),
                    Carrier::Cookie(n) => cookies.push(format!("{n}={token}")),
                    Carrier::Bearer => headers.push(("authorization".into(), format!("Bearer {token}"))),
                    Carrier::Basic => {
                        // `user:password`; a token without a colon is the
                        // password of a user named `contract` (how a mock
                        // taking one token for every scheme reads basic).
                        let pair = if token.contains(':') { token.clone() } else { format!("contract:{token}") };
                        let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
                        headers.push(("authorization".into(), format!("Basic {b64}")));
                    }
                }
            }
        }
        if !cookies.is_empty() {
            match headers.iter_mut().find(|(k, _)| k.eq_ignore_ascii_case("cookie")) {
                Some((_, v)) => *v = format!("{v}; {}", cookies.join("; ")),
                None => headers.push(("cookie".into(), cookies.join("; "))),
            }
        }
        let qs = form_urlencoded::Serializer::new(String::new()).extend_pairs(&query).finish();
        let url = if qs.is_empty() {
            format!("{}{}", self.base, req.path)
        } else {
            format!("{}{}?{qs}", self.base, req.path)
        };
        let method =
            reqwest::Method::from_bytes(req.method.as_bytes()).map_err(|e| format!("method {}: {e}", req.method))?;
        let mut b = self.http.request(method, &url);
        let has_type = headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-type"));
        for (k, v) in &headers {
            b = b.header(k, v);
        }
        if let Some(body) = &req.body {
            let bytes = serde_json::to_vec(body).map_err(|e| format!("encoding the body: {e}"))?;
            if !has_type {
                b = b.header("content-type", "application/json");
            }
            b = b.body(bytes);
        }
        match payload {
            Payload::None => {}
            Payload::Form(pairs) => {
                let form = form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
                b = b.header("content-type", "application/x-www-form-urlencoded").body(form);
            }
            Payload::Raw { media, bytes } => b = b.header("content-type", media).body(bytes.clone()),
        }
        let mut resp = b.send().await.map_err(|e| format!("{} {url}: {e}", req.method))?;
        let status = resp.status().as_u16();
        let headers: Vec<(String, String)> = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect();
        let content_type = headers.iter().find(|(k, _)| k == "content-type").map(|(_, v)| v.clone());
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("reading the response to {url}: {e}"))? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(format!("the response to {url} is larger than {MAX_BODY} bytes; not checked"));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((Got { status, content_type, headers, body }, qs))
    }

    /// Sends and judges one request: spec mismatches fail the check,
    /// convention and behaviour findings are reported apart; keyword
    /// coverage is marked. Returns the status and JSON body (`null` when
    /// not JSON) of an answer.
    #[allow(clippy::too_many_arguments)]
    async fn step(
        &mut self,
        i: usize,
        what: &str,
        req: &Request,
        payload: &Payload,
        cred: Cred,
        aim: Aim,
        case: Option<&Case>,
    ) -> Option<(u16, Value)> {
        let op = &self.ops()[i];
        let sent = Sent::from_request(self.contract, op, req);
        let (got, qs) = match self.send(op, req, payload, cred).await {
            Ok(g) => g,
            Err(e) => {
                self.push(op, what, None, Outcome::Fail(vec![format!("no response: {e}")]), Vec::new());
                return None;
            }
        };
        let resp = Response {
            status: got.status,
            content_type: got.content_type.as_deref(),
            body: &got.body,
            headers: &got.headers,
            query: &qs,
        };
        let (mut reasons, mut findings) = (Vec::new(), Vec::new());
        if let Err(mismatches) = self.contract.check(op, resp) {
            for m in mismatches {
                match m.class {
                    Class::Spec => reasons.push(m.to_string()),
                    Class::Convention => findings.push(m.to_string()),
                }
            }
        }
        self.report.coverage.response(self.contract, op, resp);
        let body: Option<Value> = serde_json::from_slice(&got.body).ok();
        let shown = || body.as_ref().map_or_else(|| format!("{} bytes", got.body.len()), short);
        let s = got.status;
        match aim {
            Aim::Any => {}
            Aim::Success if (200..300).contains(&s) => {}
            Aim::Success => {
                reasons.push(format!("expected a 2xx (the request is valid and its data exists), got {s}: {}", shown()))
            }
            Aim::Rejection if (400..500).contains(&s) => {}
            Aim::Rejection if (200..300).contains(&s) => {
                findings.push(format!("behaviour: accepted with {s} what should be refused: {}", shown()));
            }
            Aim::Rejection => reasons.push(format!("expected a documented 4xx, got {s}: {}", shown())),
        }
        if aim != Aim::Rejection && s >= 500 {
            findings.push(format!("behaviour: a valid request answered {s}: {}", shown()));
        }
        if let (Some(case), Some(format), Some(b)) = (case, self.field_format, &body)
            && (400..500).contains(&s)
            && let Err(e) = case.check_body(b, format)
        {
            findings.push(e);
        }
        let pass = reasons.is_empty();
        if pass && (200..300).contains(&s) && aim != Aim::Rejection {
            self.report.coverage.accepted(self.contract, op, &sent);
        }
        if pass && (400..500).contains(&s) && aim == Aim::Rejection {
            self.report.coverage.rejected(self.contract, op, &sent);
        }
        let outcome = if pass { Outcome::Pass } else { Outcome::Fail(reasons) };
        self.push(op, what, Some(s), outcome, findings);
        Some((s, body.unwrap_or(Value::Null)))
    }

    fn push(&mut self, op: &Operation, what: &str, status: Option<u16>, outcome: Outcome, conventions: Vec<String>) {
        let name = match status {
            Some(s) => format!("{} {s} {what}", op.id),
            None => format!("{} {what}", op.id),
        };
        self.report.push(Check { name, operation: op.id.clone(), status, outcome, conventions });
    }

    /// Adds behaviour findings to the last check.
    fn behaviour(&mut self, findings: Vec<String>) {
        if let Some(c) = self.report.checks.last_mut() {
            c.conventions.extend(findings.into_iter().map(|f| format!("behaviour: {f}")));
        }
    }

    /// Whether operation `i` can be sent with a valid credential; if not, says why in a skipped check.
    fn can_send(&mut self, i: usize, what: &str) -> bool {
        let op = &self.ops()[i];
        let sec = self.security(op);
        if sec.anonymous || (sec.carriers.is_some() && self.token.is_some()) {
            return true;
        }
        let why = match (&sec.carriers, &self.token) {
            (Some(_), None) => "no token given (--token)".to_owned(),
            _ => sec.unusable.unwrap_or_default(),
        };
        self.report.skip(&op.id, format!("{} {what}", op.id), why);
        false
    }

    /// Create, read back, list and update one group's item.
    async fn crud_build(&mut self, group: &Group) {
        let ops = self.ops();
        let create = &ops[group.create];
        if !self.can_send(group.create, "creates an item") {
            return;
        }
        let g = self.generator(true, &self.nonce, Ids::Known, false);
        let (req, payload) = match self.build(group.create, &g) {
            Ok(r) => r,
            Err(e) => return self.report.skip(&create.id, format!("{} creates an item", create.id), e),
        };
        self.done[group.create] = true;
        let Some((_, body)) =
            self.step(group.create, "creates an item", &req, &payload, Cred::Valid, Aim::Success, None).await
        else {
            return;
        };
        let Some(id) = find_id(&body, &group.param) else {
            let why = format!("the create response has no {:?} or \"id\" to read the item back by", group.param);
            self.behaviour(vec![why.clone()]);
            self.report.skip(&create.id, format!("{} reads the item back", create.id), why);
            return;
        };
        let sent = req.body.clone();
        self.created.push(Created {
            collection: group.collection.clone(),
            param: group.param.clone(),
            id: id.clone(),
            sent: sent.clone(),
        });
        if let Some(r) = group.read {
            self.read_back(r, "reads the created item", sent.as_ref(), create.request_body.as_ref(), &group.param)
                .await;
        }
        if let Some(l) = group.list.filter(|l| self.can_send(*l, "lists the items")) {
            self.done[l] = true;
            let g = self.generator(true, &self.nonce, Ids::Known, false);
            match self.build(l, &g) {
                Ok((req, payload)) => {
                    if let Some((s, body)) =
                        self.step(l, "lists the items", &req, &payload, Cred::Valid, Aim::Success, None).await
                        && (200..300).contains(&s)
                        && req.query.is_empty()
                        && !contains_id(&body, &group.param, &id)
                    {
                        self.behaviour(vec![format!("the created item ({} {id}) is not in the list", group.param)]);
                    }
                }
                Err(e) => self.report.skip(&ops[l].id, format!("{} lists the items", ops[l].id), e),
            }
        }
        for &u in &group.updates {
            if !self.can_send(u, "updates the item") {
                continue;
            }
            self.done[u] = true;
            // Generated values first, so the update differs from the create's examples.
            let g = self.generator(false, &format!("{}u", self.nonce), Ids::Known, false);
            let (mut req, payload) = match self.build(u, &g) {
                Ok(r) => r,
                Err(e) => {
                    self.report.skip(&ops[u].id, format!("{} updates the item", ops[u].id), e);
                    continue;
                }
            };
            // The body names the item as the path does.
            if let Some(Value::Object(o)) = req.body.as_mut()
                && let Some(v) = o.get_mut(&group.param)
            {
                *v = body.get(&group.param).cloned().unwrap_or_else(|| v.clone());
            }
            let what = format!("updates the item ({})", ops[u].method);
            let r = self.step(u, &what, &req, &payload, Cred::Valid, Aim::Success, None).await;
            if let (Some((s, _)), Some(read)) = (r, group.read)
                && (200..300).contains(&s)
            {
                if let Some(c) = self.created.last_mut() {
                    c.sent.clone_from(&req.body);
                }
                let what = format!("reads the item after {}", ops[u].method);
                self.read_back(read, &what, req.body.as_ref(), ops[u].request_body.as_ref(), &group.param).await;
            }
        }
    }

    /// GETs the group's item and compares it with what was sent: each
    /// property both the request and the response schema define must come
    /// back as sent (a behaviour finding otherwise).
    async fn read_back(
        &mut self,
        r: usize,
        what: &str,
        sent: Option<&Value>,
        sent_schema: Option<&Value>,
        param: &str,
    ) {
        if !self.can_send(r, what) {
            return;
        }
        self.done[r] = true;
        let g = self.generator(true, &self.nonce, Ids::Known, false);
        let (req, payload) = match self.build(r, &g) {
            Ok(x) => x,
            Err(e) => return self.report.skip(&self.ops()[r].id, format!("{} {what}", self.ops()[r].id), e),
        };
        let Some((s, body)) = self.step(r, what, &req, &payload, Cred::Valid, Aim::Success, None).await else { return };
        let (Some(sent), Some(sent_schema)) = (sent, sent_schema) else { return };
        let op = &self.ops()[r];
        let Some(got_schema) = response_for(op, s)
            .and_then(|d| d.content.iter().find_map(|(mt, sc)| sc.as_ref().filter(|_| super::checker::is_json(mt))))
        else {
            return;
        };
        let findings = read_back_mismatches(self.contract, sent, sent_schema, &body, got_schema, param);
        self.behaviour(findings);
    }

    /// Deletes one group's item, then reads, updates and deletes it again:
    /// each operation documenting a 4xx for it is due one (404 or 410 when
    /// documented, else its `4XX` or `default`).
    async fn crud_delete(&mut self, group: &Group) {
        let Some(d) = group.delete else { return };
        let Some(pos) = self.created.iter().position(|c| c.collection == group.collection && c.param == group.param)
        else {
            return;
        };
        if !self.can_send(d, "deletes the item") {
            return;
        }
        self.done[d] = true;
        // Every request is built while the id is still known.
        let g = self.generator(true, &self.nonce, Ids::Known, false);
        let delete = self.build(d, &g);
        let after: Vec<(usize, Built)> =
            group.read.iter().chain(&group.updates).chain([d].iter()).map(|&i| (i, self.build(i, &g))).collect();
        self.created.remove(pos);
        let (req, payload) = match delete {
            Ok(x) => x,
            Err(e) => return self.report.skip(&self.ops()[d].id, format!("{} deletes the item", self.ops()[d].id), e),
        };
        let r = self.step(d, "deletes the item", &req, &payload, Cred::Valid, Aim::Success, None).await;
        if !r.is_some_and(|(s, _)| (200..300).contains(&s)) {
            return;
        }
        for (i, built) in after {
            let op = &self.ops()[i];
            let what = match op.method.as_str() {
                "GET" => "reads the deleted item".to_owned(),
                "DELETE" => "deletes the deleted item again".to_owned(),
                m => format!("updates the deleted item ({m})"),
            };
            if !self.can_send(i, &what) {
                continue;
            }
            if !documents_rejection(op, &[404, 410]) {
                self.report.skip(&op.id, format!("{} {what}", op.id), "the spec documents no 404, 410, 4XX or default");
                continue;
            }
            match built {
                Ok((req, payload)) => {
                    self.step(i, &what, &req, &payload, Cred::Valid, Aim::Rejection, None).await;
                }
                Err(e) => self.report.skip(&op.id, format!("{} {what}", op.id), e),
            }
        }
    }

    /// One synthesized request for every operation no CRUD step drove:
    /// POSTs on collections first, so later paths find their ids.
    async fn singles(&mut self) {
        let mut order: Vec<usize> = (0..self.ops().len()).filter(|i| !self.done[*i]).collect();
        order.sort_by_key(|i| {
            let o = &self.ops()[*i];
            o.method != "POST" || o.path.ends_with('}')
        });
        // DELETEs of groups come after the singles: leave them to crud_delete.
        let deletes: Vec<usize> = self.groups().iter().filter_map(|g| g.delete).collect();
        for i in order.into_iter().filter(|i| !deletes.contains(i)) {
            let what = "a request synthesized from the spec";
            let op = &self.ops()[i];
            // Every answer would be undocumented: nothing to hold a server to.
            if op.responses.is_empty() {
                self.report.skip(&op.id, format!("{} {what}", op.id), "the spec documents no response for it");
                continue;
            }
            if !self.can_send(i, what) {
                continue;
            }
            // Only reads may guess at ids; writes use ids this run created or none that exist.
            let reads = op.method == "GET" || op.method == "HEAD";
            let g = self.generator(true, &self.nonce, if reads { Ids::Known } else { Ids::KnownOrAbsent }, true);
            let (req, payload) = match self.build(i, &g) {
                Ok(x) => x,
                Err(e) => {
                    self.report.skip(&op.id, format!("{} {what}", op.id), e);
                    continue;
                }
            };
            self.done[i] = true;
            // A read that found its id among this run's answers is also sent
            // an id that does not exist, when it documents a status for that.
            let known = op.parameters.iter().any(|p| p.location == "path" && self.known_id(op, p).is_some());
            let unknown = (known && op.method == "GET" && documents_rejection(op, &[404, 410]))
                .then(|| self.build(i, &self.generator(true, &self.nonce, Ids::Absent, false)).ok())
                .flatten();
            let answer = self.step(i, what, &req, &payload, Cred::Valid, Aim::Any, None).await;
            if let Some((req, payload)) = unknown {
                self.step(i, "an id that does not exist", &req, &payload, Cred::Valid, Aim::Rejection, None).await;
            }
            if let Some((s, body)) = answer
                && op.method == "POST"
                && !op.path.ends_with('}')
                && (200..300).contains(&s)
            {
                self.posted.push(body.clone());
                // Ids a later path may need (`/things/{thing}/parts`).
                for p in self.ops().iter().flat_map(|o| o.parameters.iter()).filter(|p| p.location == "path") {
                    let nested = self.ops().iter().any(|o| o.path.starts_with(&format!("{}/{{{}}}", op.path, p.name)));
                    if let Some(id) = find_id(&body, &p.name).filter(|_| nested) {
                        self.created.push(Created {
                            collection: op.path.clone(),
                            param: p.name.clone(),
                            id,
                            sent: None,
                        });
                    }
                }
            }
        }
    }

    /// The spec-generated negative cases (invalid parameters and bodies),
    /// each expecting a documented 4xx; only for operations documenting one.
    async fn negatives(&mut self) {
        let g = self.generator(true, &self.nonce, Ids::Absent, true);
        let built = g.cases(false);
        for (op, why) in built.problems {
            let name = format!("{op} negative cases");
            self.report.skip(&op, name, format!("not generated: {why}"));
        }
        let mut skipped: Vec<(usize, &'static str, usize)> = Vec::new();
        for case in built.cases.iter().filter(|c| matches!(c.expect, Expect::Invalid { .. })) {
            let Some(i) = self.ops().iter().position(|o| o.id == case.operation) else { continue };
            let op = &self.ops()[i];
            let sec = self.security(op);
            let why = if !documents_rejection(op, &[400, 422]) {
                Some("the spec documents no 4xx for it")
            } else if !sec.anonymous && (sec.carriers.is_none() || self.token.is_none()) {
                Some("they need a credential and none can be sent")
            } else {
                None
            };
            if let Some(why) = why {
                match skipped.iter_mut().find(|(j, _, _)| *j == i) {
                    Some((_, _, n)) => *n += 1,
                    None => skipped.push((i, why, 1)),
                }
                continue;
            }
            let payload = self.payload(op, &g).unwrap_or(Payload::None);
            let what = case.name.splitn(3, ' ').nth(2).unwrap_or(&case.name).to_owned();
            let what = what.strip_prefix("400 ").unwrap_or(&what).to_owned();
            self.step(i, &format!("invalid: {what}"), &case.request, &payload, Cred::Valid, Aim::Rejection, Some(case))
                .await;
        }
        for (i, why, n) in skipped {
            let op = &self.ops()[i];
            self.report.skip(&op.id, format!("{} negative cases", op.id), format!("{n} not sent: {why}"));
        }
    }

    /// A request without the credential its operation requires (and, with
    /// a token, with a wrong one): a documented 4xx is due.
    async fn credentials(&mut self) {
        for i in 0..self.ops().len() {
            let op = &self.ops()[i];
            let sec = self.security(op);
            if sec.anonymous {
                continue;
            }
            if !documents_rejection(op, &[401, 403]) {
                let name = format!("{} missing credential", op.id);
                self.report.skip(&op.id, name, "the spec documents no 401, 403, 4XX or default for it");
                continue;
            }
            let g = self.generator(true, &self.nonce, Ids::Absent, false);
            let (req, payload) = match self.build(i, &g) {
                Ok(x) => x,
                Err(e) => {
                    self.report.skip(&op.id, format!("{} missing credential", op.id), e);
                    continue;
                }
            };
            self.step(i, "no credential", &req, &payload, Cred::Absent, Aim::Rejection, None).await;
            if self.token.is_some() && sec.carriers.is_some() {
                self.step(i, "wrong credential", &req, &payload, Cred::Wrong, Aim::Rejection, None).await;
            }
        }
    }
}

/// Whether `op` documents a status for a rejection of this kind: one of
/// `preferred` (`400`, `422` for invalid input), `4XX` or `default`. Another
/// documented 4xx does not count: the spec then says nothing about this kind.
fn documents_rejection(op: &Operation, preferred: &[u16]) -> bool {
    op.responses.iter().any(|(k, _)| {
        k.eq_ignore_ascii_case("4XX") || k == "default" || preferred.iter().any(|s| *s.to_string() == **k)
    })
}

/// The item's id in a create response: the member named like the path
/// parameter, else `id`, at the top level or one object down (an envelope).
fn find_id(body: &Value, param: &str) -> Option<String> {
    let at = |o: &Value| [param, "id"].iter().find_map(|k| o.get(*k).and_then(id_text));
    at(body).or_else(|| body.as_object()?.values().filter(|v| v.is_object()).find_map(at))
}

/// The member named `name`, at the top level or one object down.
fn find_named(body: &Value, name: &str) -> Option<String> {
    let at = |o: &Value| o.get(name).and_then(id_text);
    at(body).or_else(|| body.as_object()?.values().filter(|v| v.is_object()).find_map(at))
}

fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Whether a list response holds an object whose id is `id` (searched to a
/// bounded depth: lists are arrays, possibly inside an envelope).
fn contains_id(body: &Value, param: &str, id: &str) -> bool {
    fn walk(v: &Value, param: &str, id: &str, depth: usize) -> bool {
        if depth > 4 {
            return false;
        }
        match v {
            Value::Array(items) => items.iter().any(|i| walk(i, param, id, depth + 1)),
            Value::Object(o) => {
                [param, "id"].iter().any(|k| o.get(*k).and_then(id_text).as_deref() == Some(id))
                    || o.values().any(|v| walk(v, param, id, depth + 1))
            }
            _ => false,
        }
    }
    walk(body, param, id, 0)
}

/// The properties a schema defines (following `$ref` and `allOf`).
fn properties<'c>(c: &'c Contract, schema: &'c Value, depth: usize, out: &mut Vec<(&'c str, &'c Value)>) {
    if depth > 16 {
        return;
    }
    let s = c.resolve(schema);
    for (k, v) in s.get("properties").and_then(Value::as_object).into_iter().flatten() {
        out.push((k.as_str(), v));
    }
    for m in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
        properties(c, m, depth + 1, out);
    }
}

/// What a read-back shows differently from what was sent, for the
/// properties both schemas define (the id itself and write-only members excepted).
fn read_back_mismatches(
    c: &Contract,
    sent: &Value,
    sent_schema: &Value,
    got: &Value,
    got_schema: &Value,
    param: &str,
) -> Vec<String> {
    let (mut req, mut resp) = (Vec::new(), Vec::new());
    properties(c, sent_schema, 0, &mut req);
    properties(c, got_schema, 0, &mut resp);
    let mut out = Vec::new();
    for (name, ps) in req {
        if name == param || name == "id" || c.resolve(ps).get("writeOnly") == Some(&Value::Bool(true)) {
            continue;
        }
        if !resp.iter().any(|(n, _)| *n == name) {
            continue;
        }
        let Some(want) = sent.get(name) else { continue };
        match got.get(name) {
            None => out.push(format!("/{}: sent {}, the read-back lacks it", escape(name), short(want))),
            Some(v) if !same(v, want) => {
                out.push(format!("/{}: sent {}, read back {}", escape(name), short(want), short(v)));
            }
            Some(_) => {}
        }
    }
    out
}

/// Equal as JSON values, numbers by value and instants by time (`1` and
/// `1.0`, `…T00:00:00Z` and `…T00:00:00+00:00` are the same).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::String(x), Value::String(y)) => {
            x == y
                || matches!(
                    (chrono::DateTime::parse_from_rfc3339(x), chrono::DateTime::parse_from_rfc3339(y)),
                    (Ok(p), Ok(q)) if p == q
                )
        }
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same(a, b)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// A scalar as form text.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The token with its last character changed: well formed, never issued.
fn wrong(token: &str) -> String {
    let mut t: Vec<char> = token.chars().collect();
    if let Some(last) = t.last_mut() {
        *last = if *last == 'x' { 'y' } else { 'x' };
    }
    t.into_iter().collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    use crate::checker::Direction;

    fn generic(contract: &Contract) -> Generic<'_> {
        Generic {
            contract,
            http: reqwest::Client::new(),
            base: "http://127.0.0.1:9".into(),
            token: Some("t".into()),
            nonce: "n1".into(),
            report: Report::new(contract),
            field_format: None,
            created: Vec::new(),
            done: vec![false; contract.operations().len()],
            posted: Vec::new(),
        }
    }

    fn public(name: &str) -> Contract {
        Contract::load(&crate::workspace_root().join("xtask/tests/fixtures/public").join(name)).unwrap()
    }

    /// Every operation of every public spec and of this project's gets a
    /// request valid against its schemas, whatever its body's media type.
    #[test]
    fn every_operation_of_the_public_specs_gets_a_request() {
        for name in ["keeper.json", "param-collision.json", "museum.yaml", "propolis-server.json", "buildomat.json"] {
            let c = public(name);
            let g = generic(&c);
            let gen_ = g.generator(true, "n1", Ids::KnownOrAbsent, true);
            for (i, op) in c.operations().iter().enumerate() {
                let (req, payload) = g.build(i, &gen_).unwrap_or_else(|e| panic!("{name} {}: {e}", op.id));
                if let (Some(schema), Some(body)) = (&op.request_body, &req.body) {
                    assert_eq!(c.validate(schema, body, Direction::Request), vec![], "{name} {}", op.id);
                }
                assert!(!req.path.contains('{'), "{name} {}: {}", op.id, req.path);
                if op.id == "whoami_put_name" {
                    assert!(matches!(&payload, Payload::Raw { media, .. } if media == "text/plain"), "{payload:?}");
                }
                if op.id == "worker_task_upload_chunk" {
                    let Payload::Raw { media, .. } = &payload else { panic!("{payload:?}") };
                    assert_eq!(media, "application/octet-stream");
                }
            }
        }
    }

    #[test]
    fn examples_come_first_and_writes_get_absent_ids() {
        let c = public("museum.yaml");
        let g = generic(&c);
        let i = c.operations().iter().position(|o| o.id == "createSpecialEvent").unwrap();
        let (req, _) = g.build(i, &g.generator(true, "n1", Ids::KnownOrAbsent, true)).unwrap();
        let body = req.body.unwrap();
        // Free text is generated (unique per run), other scalars are the spec's examples.
        assert_eq!(
            (&body["name"], &body["price"], &body["dates"]),
            (&json!("ctn1"), &json!(25), &json!(["2023-10-29"]))
        );
        let d = c.operations().iter().position(|o| o.id == "deleteSpecialEvent").unwrap();
        let (req, _) = g.build(d, &g.generator(true, "n1", Ids::KnownOrAbsent, false)).unwrap();
        assert_eq!(req.path, "/special-events/00000000-0000-4000-8000-00c0ffee0000");
    }

    #[test]
    fn crud_groups_by_path_pattern() {
        let c = public("museum.yaml");
        let groups = generic(&c).groups();
        assert_eq!(groups.len(), 1, "{groups:?}");
        let id = |i: Option<usize>| i.map(|i| c.operations()[i].id.as_str());
        let g = &groups[0];
        assert_eq!((g.collection.as_str(), g.param.as_str()), ("/special-events", "eventId"));
        assert_eq!(id(Some(g.create)), Some("createSpecialEvent"));
        assert_eq!(id(g.read), Some("getSpecialEvent"));
        assert_eq!(id(g.delete), Some("deleteSpecialEvent"));
        assert_eq!(id(g.list), Some("listSpecialEvents"));
        assert_eq!(
            g.updates.iter().map(|u| c.operations()[*u].id.as_str()).collect::<Vec<_>>(),
            ["updateSpecialEvent"]
        );
        // This project's users are a group too (batch paths are not items).
        let c = Contract::workspace().unwrap();
        let groups = generic(&c).groups();
        assert!(groups.iter().any(|g| g.collection == "/users" && g.param == "id"), "{groups:?}");
    }

    #[test]
    fn read_back_compares_what_both_schemas_define() {
        let c = public("museum.yaml");
        let sent = serde_json::json!({"name": "a", "price": 25, "dates": ["2025-01-01"], "eventId": "x"});
        let req = serde_json::json!({"$ref": "#/components/schemas/SpecialEvent"});
        let got = serde_json::json!({"name": "b", "price": 25.0, "eventId": "y"});
        let m = read_back_mismatches(&c, &sent, &req, &got, &req, "eventId");
        assert_eq!(m, ["/dates: sent [\"2025-01-01\"], the read-back lacks it", "/name: sent \"a\", read back \"b\""]);
        assert!(same(&serde_json::json!("2025-01-01T00:00:00Z"), &serde_json::json!("2025-01-01T00:00:00+00:00")));
    }
}
