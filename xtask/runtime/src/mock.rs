//! The engine of the mock servers `cargo xtask mock` generates: a seeded
//! synthesizer of schema-valid JSON read from the spec itself, and a bounded
//! in-memory store that makes the CRUD resources it recognises by path
//! pattern (`POST /things`, `GET|PUT|PATCH|DELETE /things/{id}`, `GET
//! /things`) behave statefully. The generated mock implements every trait
//! of its server crate over [`Mock`]; the answers go through the same typed
//! response enums and checks as a real application's, and a synthesized
//! answer that fails them is synthesized again, never sent.
//!
//! Like the rest of the runtime it knows no contract: the spec arrives as a
//! JSON document at start-up.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;

use serde_json::{Map, Value};

use crate::Problem;

/// Most resources the store holds, over all collections; creating one more
/// evicts the oldest, so a long session costs bounded memory.
pub const MAX_RESOURCES: usize = 10_000;
/// Most stored resources one list answer carries (a schema's `maxItems`
/// may lower it).
pub const MAX_LIST_ITEMS: usize = 1_000;
/// Answers synthesized per request before giving up on the stateful one:
/// even attempts use the spec's examples and defaults, odd ones do not, and
/// each draws other values.
pub const ATTEMPTS: u32 = 8;
/// Below this depth optional properties are synthesized too; deeper, only
/// required ones (recursive schemas end there).
const FULL_DEPTH: usize = 3;
/// Deeper than this nothing optional is synthesized at all and arrays are
/// as short as allowed; `$ref` chains longer than it are cut.
const MAX_DEPTH: usize = 16;

/// What plain strings are made of (with a serial, so they differ).
const WORDS: &[&str] = &["alpha", "bravo", "delta", "echo", "golf", "kilo", "lima", "oscar", "tango", "zulu"];

/// splitmix64: small, fast and the same on every platform, which is all a
/// deterministic mock needs (nothing here is a secret).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A value in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

/// What the generated handler passes in: the operation (by method and path
/// template, as the spec writes them), its parameters and body as JSON (as
/// serde writes the generated models, so by their names in the spec), and
/// the media type the glue negotiated.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: &'a str,
    pub template: &'a str,
    pub params: Value,
    pub body: Option<Value>,
    pub media: Option<&'a str>,
}

/// A synthesized answer: a documented status (or one within a documented
/// range or `default`), its body (`Null` for none; a string for text and
/// binary bodies) and its headers by name.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    pub status: u16,
    pub media: Option<String>,
    pub body: Value,
    pub headers: Map<String, Value>,
}

impl Reply {
    /// The header `name` as the generated variant's field type wants it.
    pub fn header<T: serde::de::DeserializeOwned>(&self, name: &str) -> Result<T, String> {
        let v = self.headers.get(name).cloned().unwrap_or(Value::Null);
        serde_json::from_value(v).map_err(|e| format!("header {name}: {e}"))
    }

    /// The body as the generated variant's body type wants it.
    pub fn body<T: serde::de::DeserializeOwned>(&self) -> Result<T, String> {
        serde_json::from_value(self.body.clone()).map_err(|e| format!("body: {e}"))
    }

    /// A binary body's bytes (synthesized as text).
    pub fn bytes(&self) -> Vec<u8> {
        match &self.body {
            Value::String(s) => s.clone().into_bytes(),
            Value::Null => Vec::new(),
            other => other.to_string().into_bytes(),
        }
    }
}

/// The role a path pattern gives an operation.
#[derive(Debug, Clone, PartialEq)]
enum Role {
    /// `POST` on a collection whose items have their own path.
    Create {
        item: String,
    },
    /// `GET` on such a collection.
    List,
    Read,
    Replace,
    Update,
    Delete,
    Other,
}

#[derive(Debug, Clone)]
struct Op {
    method: String,
    template: String,
    role: Role,
    /// `/paths/…/{method}` in the document.
    pointer: String,
    /// Links of its success answers to a read of one item: what it
    /// creates there (`POST /tasks/email` → `GET /tasks/{task_id}`).
    creates: Vec<LinkCreate>,
}

/// A response link `{operationId: <a GET of /things/{id}>, parameters:
/// {id: "$response.body#/ptr"}}`: the answer's value at `ptr` names an item
/// the answer created.
#[derive(Debug, Clone)]
struct LinkCreate {
    /// Index of the target operation in `Mock::ops`.
    target: usize,
    /// The JSON pointer into the answer's body.
    pointer: String,
}

#[derive(Debug, Default)]
struct Store {
    /// (collection path as requested, id) → the resource.
    items: BTreeMap<(String, String), Value>,
    /// Creation order, for listing and eviction.
    order: VecDeque<(String, String)>,
    /// Ids handed out per collection path.
    next_id: BTreeMap<String, u64>,
    /// Each resource's version: 1 when created, one more per change; its
    /// `ETag` is `"v<version>"`.
    versions: BTreeMap<(String, String), u64>,
}

impl Store {
    fn insert(&mut self, key: (String, String), v: Value) {
        *self.versions.entry(key.clone()).or_insert(0) += 1;
        if self.items.insert(key.clone(), v).is_none() {
            self.order.push_back(key);
        }
        while self.items.len() > MAX_RESOURCES {
            let Some(old) = self.order.pop_front() else { break };
            self.items.remove(&old);
            self.versions.remove(&old);
        }
    }

    fn remove(&mut self, key: &(String, String)) -> Option<Value> {
        let v = self.items.remove(key)?;
        self.versions.remove(key);
        self.order.retain(|k| k != key);
        Some(v)
    }

    fn etag(&self, key: &(String, String)) -> String {
        format!("\"v{}\"", self.versions.get(key).copied().unwrap_or(1))
    }

    fn list(&self, collection: &str) -> Vec<&Value> {
        self.order.iter().filter(|(c, _)| c == collection).filter_map(|k| self.items.get(k)).collect()
    }
}

struct State {
    rng: Rng,
    store: Store,
    /// Counts values needing distinctness (emails, names).
    serial: u64,
}

/// One mock server's engine: the spec, its operations' roles, the store and
/// the seeded generator, behind one lock (every request holds it only while
/// synthesizing a body bounded by the spec and the body limits).
pub struct Mock {
    doc: Value,
    ops: Vec<Op>,
    state: Mutex<State>,
}

/// A failure of the mock itself (an answer it could not synthesize), as the
/// 500 the generated glue answers with.
fn internal(detail: String) -> Problem {
    Problem::from_fault(crate::Fault::Internal).with_detail(detail)
}

impl Mock {
    /// The engine for `doc` (the normalized OpenAPI 3.0 document as JSON),
    /// drawing every value from `seed`.
    pub fn new(doc: Value, seed: u64) -> Result<Mock, String> {
        let paths = doc.get("paths").and_then(Value::as_object).ok_or("the document has no paths")?;
        let templates: Vec<&String> = paths.keys().collect();
        let mut ops = Vec::new();
        for (template, item) in paths {
            let Some(item) = item.as_object() else { continue };
            for method in ["get", "put", "post", "delete", "patch"] {
                if !item.contains_key(method) {
                    continue;
                }
                let item_of = |collection: &str| {
                    templates.iter().find(|t| {
                        t.strip_prefix(collection)
                            .and_then(|rest| rest.strip_prefix('/'))
                            .is_some_and(|seg| seg.starts_with('{') && seg.ends_with('}') && !seg.contains('/'))
                    })
                };
                let is_item = parent(template).is_some_and(|p| paths.contains_key(p));
                let role = match (method, is_item, item_of(template)) {
                    ("post", _, Some(item)) => Role::Create { item: (*item).clone() },
                    ("get", _, Some(_)) => Role::List,
                    ("get", true, _) => Role::Read,
                    ("put", true, _) => Role::Replace,
                    ("patch", true, _) => Role::Update,
                    ("delete", true, _) => Role::Delete,
                    _ => Role::Other,
                };
                ops.push(Op {
                    method: method.to_owned(),
                    template: template.clone(),
                    role,
                    pointer: format!("/paths/{}/{method}", template.replace('~', "~0").replace('/', "~1")),
                    creates: Vec::new(),
                });
            }
        }
        link_creates(&doc, &mut ops);
        Ok(Mock { doc, ops, state: Mutex::new(State { rng: Rng::new(seed), store: Store::default(), serial: 0 }) })
    }

    /// Answers `call`: `build` turns a reply into the operation's typed
    /// response and runs its checks; a reply it refuses is synthesized
    /// again, and only an accepted one changes the store.
    pub fn answer<R>(&self, call: Call<'_>, build: impl Fn(&Reply) -> Result<R, String>) -> Result<R, Problem> {
        let op = self
            .ops
            .iter()
            .find(|o| o.method.eq_ignore_ascii_case(call.method) && o.template == call.template)
            .ok_or_else(|| internal(format!("no operation {} {} in the document", call.method, call.template)))?;
        let mut state = self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let st = &mut *state;
        let ctx = Ctx { doc: &self.doc, op, call: &call };
        let stateful = match &op.role {
            Role::Other => None,
            role => Some(role.clone()),
        };
        if let Some(role) = stateful {
            match ctx.stateful(&role, st, &build) {
                Stateful::Done(r) => return Ok(r),
                // Where the spec documents no failure to say it with,
                // the answer is a synthesized success instead: the mock
                // never answers a status the operation does not document.
                Stateful::Missing => {
                    if let Some(p) = ctx.not_found() {
                        return Err(p);
                    }
                }
                Stateful::Precondition => return Err(ctx.precondition_failed()),
                Stateful::BadCursor => {
                    let p = registry_problem(&self.doc, 400).unwrap_or_else(|| Problem::new(400));
                    return Err(p.with_detail("the page token is not one this mock issued"));
                }
                Stateful::NotApplicable => {}
                Stateful::Refused(why) => {
                    eprintln!(
                        "mock: {} {}: no stateful answer passed the checks, synthesized instead: {why}",
                        op.method, op.template
                    );
                }
            }
        }
        let mut last = String::new();
        for attempt in 0..ATTEMPTS {
            let reply = ctx.synthesized(st, attempt, None)?;
            match build(&reply) {
                Ok(r) => {
                    self.follow_links(op, &reply, st);
                    return Ok(r);
                }
                Err(e) => last = e,
            }
        }
        Err(internal(format!("no synthesized answer of {} {} passed its checks: {last}", op.method, op.template)))
    }

    /// Stores what `op`'s answer created through its links: a resource of
    /// the target's answer, with the linked id.
    fn follow_links(&self, op: &Op, reply: &Reply, st: &mut State) {
        for link in &op.creates {
            let Some(id) = reply.body.pointer(&link.pointer).and_then(scalar_text) else { continue };
            let target = &self.ops[link.target];
            let Some(collection) = parent(&target.template) else { continue };
            let call = Call {
                method: &target.method,
                template: &target.template,
                params: Value::Null,
                body: None,
                media: None,
            };
            let ctx = Ctx { doc: &self.doc, op: target, call: &call };
            let Some(schema) = ctx.success_schema().cloned() else { continue };
            let Some((at, id_prop)) = locate(&self.doc, &schema, &ctx.id_names()) else { continue };
            let Ok(mut answer) = ctx.synthesized(st, 0, None) else { continue };
            let Some(Value::Object(resource)) = get_at_mut(&mut answer.body, &at) else { continue };
            let id_value = reply.body.pointer(&link.pointer).cloned().unwrap_or(Value::Null);
            resource.insert(id_prop, id_value);
            let resource = Value::Object(resource.clone());
            st.store.insert((collection.to_owned(), id), resource);
        }
    }

    /// The problem for an application failure with `status`: the spec's
    /// registry entry for it when it has one (a credential that is not the
    /// mock's token: `401`), else HTTP's.
    pub fn problem(&self, status: u16) -> Problem {
        registry_problem(&self.doc, status).unwrap_or_else(|| Problem::new(status))
    }

    /// A value of the schema at `pointer` (`#/components/schemas/X`) for an
    /// error body, with `problem`'s message and status where the schema has
    /// plain properties for them, else as [`Mock::plain_error_body`];
    /// `accept` runs the type's checks.
    pub fn error_body<T: serde::de::DeserializeOwned>(
        &self,
        pointer: &str,
        problem: &Problem,
        accept: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let schema = self.doc.pointer(pointer.trim_start_matches('#'))?;
        let mut rng = Rng::new(u64::from(problem.status));
        for attempt in 0..ATTEMPTS / 2 {
            let mut serial = 0;
            let mut v = Synth { doc: &self.doc, rng: &mut rng, attempt, serial: &mut serial }.value(schema, 0);
            overlay_problem(&self.doc, schema, &mut v, problem);
            if let Ok(t) = serde_json::from_value::<T>(v)
                && accept(&t)
            {
                return Some(t);
            }
        }
        self.plain_error_body(pointer, problem.status, accept)
    }

    /// An error body for `status` that owes nothing to the problem: its
    /// own generator, seeded by the status, so the same status always gets
    /// the same body whatever came before, and a start-up check of every
    /// status proves the error policy always has one. `None` when no
    /// attempt passes `accept`.
    pub fn plain_error_body<T: serde::de::DeserializeOwned>(
        &self,
        pointer: &str,
        status: u16,
        accept: impl Fn(&T) -> bool,
    ) -> Option<T> {
        let schema = self.doc.pointer(pointer.trim_start_matches('#'))?;
        let mut rng = Rng::new(u64::from(status) ^ 0x5eed);
        for attempt in ATTEMPTS / 2..ATTEMPTS + ATTEMPTS / 2 {
            let mut serial = 0;
            let v = Synth { doc: &self.doc, rng: &mut rng, attempt, serial: &mut serial }.value(schema, 0);
            if let Ok(t) = serde_json::from_value::<T>(v)
                && accept(&t)
            {
                return Some(t);
            }
        }
        None
    }
}

enum Stateful<R> {
    Done(R),
    /// The request's `If-Match` names another version.
    Precondition,
    /// A list's cursor is not one this mock issued.
    BadCursor,
    /// The item the path names does not exist.
    Missing,
    /// The operation's shapes are not those of a resource (no id found):
    /// answered as any other.
    NotApplicable,
    /// Every stateful answer failed the response's checks (the last
    /// reason): answered as any other, and said on stderr, since the
    /// resource is then not what the client sent.
    Refused(String),
}

struct Ctx<'a> {
    doc: &'a Value,
    op: &'a Op,
    call: &'a Call<'a>,
}

impl Ctx<'_> {
    fn operation(&self) -> &Value {
        self.doc.pointer(&self.op.pointer).unwrap_or(&Value::Null)
    }

    fn responses(&self) -> Vec<(String, &Value)> {
        let mut out: Vec<(String, &Value)> = self
            .operation()
            .get("responses")
            .and_then(Value::as_object)
            .map(|m| m.iter().map(|(k, v)| (k.clone(), resolve(self.doc, v))).collect())
            .unwrap_or_default();
        out.sort_by_key(|(k, _)| status_order(k));
        out
    }

    /// The documented success: the lowest 2xx code, else `2XX`, else
    /// `default`, else the first documented response.
    fn success(&self) -> Option<(u16, &Value)> {
        let rs = self.responses();
        let pick = rs
            .iter()
            .find_map(|(k, v)| k.parse::<u16>().ok().filter(|c| (200..300).contains(c)).map(|c| (c, *v)))
            .or_else(|| rs.iter().find(|(k, _)| k.eq_ignore_ascii_case("2XX")).map(|(_, v)| (200, *v)))
            .or_else(|| rs.iter().find(|(k, _)| k == "default").map(|(_, v)| (200, *v)));
        pick.or_else(|| {
            rs.first().map(|(k, v)| (k.parse::<u16>().unwrap_or(if k.len() == 3 { status_order(k) } else { 500 }), *v))
        })
    }

    /// The problem for a missing item: 404 when documented (exactly, by
    /// `4XX` or by `default`), else the first documented 4xx code, else
    /// none; the glue answers it as the documented response through the
    /// error policy.
    fn not_found(&self) -> Option<Problem> {
        let rs = self.responses();
        let covered = rs.iter().any(|(k, _)| k == "404" || k.eq_ignore_ascii_case("4XX") || k == "default");
        let status = if covered {
            404
        } else {
            rs.iter().find_map(|(k, _)| k.parse::<u16>().ok().filter(|c| (400..500).contains(c)))?
        };
        Some(
            registry_problem(self.doc, status).unwrap_or_else(|| {
                Problem::new(status).with_detail(format!("no such resource at {}", self.call.template))
            }),
        )
    }

    /// 412 for a stale `If-Match` ([`Ctx::if_match`] reads one only where
    /// the operation documents it).
    fn precondition_failed(&self) -> Problem {
        registry_problem(self.doc, 412)
            .unwrap_or_else(|| Problem::new(412).with_detail("If-Match names another version"))
    }

    /// Whether the operation documents `status` (exactly, by range or by
    /// `default`).
    fn documents(&self, status: u16) -> bool {
        let range = format!("{}XX", status / 100);
        self.responses()
            .iter()
            .any(|(k, _)| k.parse::<u16>() == Ok(status) || k.eq_ignore_ascii_case(&range) || k == "default")
    }

    /// The request's `If-Match`, when the operation takes one and
    /// documents the 412 a stale one gets.
    fn if_match(&self) -> Option<crate::etag::IfMatch> {
        if !self.documents(412) {
            return None;
        }
        let params = self.call.params.as_object()?;
        let (_, v) = params.iter().find(|(k, _)| k.eq_ignore_ascii_case("If-Match"))?;
        crate::etag::IfMatch::parse(v.as_str()?)
    }

    /// A body schema of `response` and its media type: the negotiated one,
    /// else the first JSON one, else the first.
    fn content<'r>(&self, response: &'r Value) -> Option<(String, &'r Value)> {
        let content = response.get("content")?.as_object()?;
        let (mt, media) = self
            .call
            .media
            .and_then(|m| content.get_key_value(m))
            .or_else(|| content.iter().find(|(k, _)| is_json(k)))
            .or_else(|| content.iter().next())?;
        Some((mt.clone(), media.get("schema").unwrap_or(&Value::Null)))
    }

    /// The whole success answer synthesized, with `resource` (if any)
    /// placed where the body carries the resource.
    fn synthesized(&self, st: &mut State, attempt: u32, place: Option<(&[String], Value)>) -> Result<Reply, Problem> {
        let (status, response) =
            self.success().ok_or_else(|| internal(format!("{}: no documented response", self.op.pointer)))?;
        let mut synth = Synth { doc: self.doc, rng: &mut st.rng, attempt, serial: &mut st.serial };
        let (media, mut body) = match self.content(response) {
            Some((mt, schema)) => {
                let v = synth.value(schema, 0);
                let v = if is_json(&mt) || v.is_string() { v } else { Value::String(v.to_string()) };
                (Some(mt), v)
            }
            None => (None, Value::Null),
        };
        let mut headers = Map::new();
        if let Some(hs) = response.get("headers").and_then(Value::as_object) {
            for (name, h) in hs {
                let h = resolve(self.doc, h);
                let schema = h
                    .get("schema")
                    .or_else(|| {
                        h.get("content").and_then(Value::as_object).and_then(|c| c.values().next()?.get("schema"))
                    })
                    .unwrap_or(&Value::Null);
                headers.insert(name.clone(), synth.value(schema, 0));
            }
        }
        if let Some((at, resource)) = place {
            set_at(&mut body, at, resource);
        }
        Ok(Reply { status, media, body, headers })
    }

    fn success_schema(&self) -> Option<&Value> {
        let (_, response) = self.success()?;
        self.content(response).map(|(_, s)| s)
    }

    /// The collection path this request addresses, and the item's id.
    fn collection_and_id(&self) -> Option<(String, Option<String>)> {
        let (collection_template, id_param) = match &self.op.role {
            Role::Create { .. } | Role::List => (self.op.template.as_str(), None),
            _ => {
                let p = parent(&self.op.template)?;
                let last = self.op.template[p.len()..].trim_start_matches('/');
                (p, Some(last.trim_start_matches('{').trim_end_matches('}')))
            }
        };
        let collection = fill(collection_template, &self.call.params)?;
        let id = match id_param {
            Some(name) => Some(scalar_text(self.call.params.get(name)?)?),
            None => None,
        };
        Some((collection, id))
    }

    /// The names an id property may have: the item path's parameter,
    /// `id`, and the parameter without its resource prefix.
    fn id_names(&self) -> Vec<String> {
        let item = match &self.op.role {
            Role::Create { item } => item.clone(),
            Role::List => return vec!["id".into()],
            _ => self.op.template.clone(),
        };
        let last = item.rsplit('/').next().unwrap_or_default().trim_start_matches('{').trim_end_matches('}');
        let mut names = vec![last.to_owned(), "id".to_owned()];
        for suffix in ["Id", "_id", "ID"] {
            if let Some(stem) = last.strip_suffix(suffix)
                && !stem.is_empty()
            {
                names.push(format!("{stem}_id"));
                names.push(format!("{stem}Id"));
            }
        }
        names
    }

    fn stateful<R>(&self, role: &Role, st: &mut State, build: &impl Fn(&Reply) -> Result<R, String>) -> Stateful<R> {
        let Some((collection, id)) = self.collection_and_id() else { return Stateful::NotApplicable };
        let Some(schema) = self.success_schema() else {
            // No body to carry the resource: the change still happens.
            return self.bodiless(role, st, build, &collection, id);
        };
        let schema = schema.clone();
        let names = self.id_names();
        if *role == Role::List {
            return self.list(st, build, &schema, &collection);
        }
        let Some((at, id_prop)) = locate(self.doc, &schema, &names) else {
            // A `DELETE` answering a body without the resource (a status
            // envelope) still deletes.
            if *role == Role::Delete {
                return self.bodiless(role, st, build, &collection, id);
            }
            return Stateful::NotApplicable;
        };
        let key = |id: String| (collection.clone(), id);
        match role {
            Role::Create { .. } => {
                let n = st.store.next_id.get(&collection).copied().unwrap_or(0) + 1;
                let mut last = String::from("every id drawn was taken");
                for attempt in 0..ATTEMPTS {
                    let Ok(mut reply) = self.synthesized(st, attempt, None) else { return Stateful::NotApplicable };
                    let Some(resource) = get_at_mut(&mut reply.body, &at) else { return Stateful::NotApplicable };
                    if attempt < ATTEMPTS / 2
                        && let Some(Value::Object(sent)) = &self.call.body
                    {
                        merge(self.doc, &schema, &at, resource, sent, false);
                    }
                    let id_schema = property_schema(self.doc, &schema, &at, &id_prop);
                    let id = new_id(id_schema, n, &mut st.rng);
                    let id_text = scalar_text(&id).unwrap_or_default();
                    if st.store.items.contains_key(&key(id_text.clone())) {
                        continue;
                    }
                    if let Value::Object(m) = resource {
                        m.insert(id_prop.clone(), id);
                    }
                    let stored = resource.clone();
                    if attempt < ATTEMPTS / 2 {
                        set_etag(&mut reply, "\"v1\"");
                    }
                    match build(&reply) {
                        Ok(r) => {
                            st.store.next_id.insert(collection.clone(), n);
                            st.store.insert(key(id_text), stored);
                            return Stateful::Done(r);
                        }
                        Err(e) => last = e,
                    }
                }
                Stateful::Refused(last)
            }
            Role::Read | Role::Replace | Role::Update | Role::Delete => {
                let Some(id) = id else { return Stateful::NotApplicable };
                let Some(stored) = st.store.items.get(&key(id.clone())).cloned() else { return Stateful::Missing };
                let etag = st.store.etag(&key(id.clone()));
                if *role != Role::Read
                    && let Some(condition) = self.if_match()
                    && !condition.matches(&etag)
                {
                    return Stateful::Precondition;
                }
                // What the resource's ETag is once this request changed it.
                let next_etag = match role {
                    Role::Replace | Role::Update => {
                        format!("\"v{}\"", st.store.versions.get(&key(id.clone())).copied().unwrap_or(1) + 1)
                    }
                    _ => etag.clone(),
                };
                let mut changed = stored.clone();
                let mut last = String::new();
                if matches!(role, Role::Replace | Role::Update)
                    && let (Some(Value::Object(sent)), Value::Object(_)) = (&self.call.body, &changed)
                {
                    merge(self.doc, &schema, &at, &mut changed, sent, *role == Role::Update);
                }
                for attempt in 0..ATTEMPTS {
                    // Later attempts fall back to the stored resource unchanged.
                    let resource = if attempt < ATTEMPTS / 2 { changed.clone() } else { stored.clone() };
                    let Ok(mut reply) = self.synthesized(st, attempt, Some((&at, resource.clone()))) else {
                        return Stateful::NotApplicable;
                    };
                    if attempt < ATTEMPTS / 2 {
                        set_etag(&mut reply, &next_etag);
                    }
                    match build(&reply) {
                        Ok(r) => {
                            match role {
                                Role::Delete => {
                                    st.store.remove(&key(id));
                                }
                                Role::Replace | Role::Update => st.store.insert(key(id), resource),
                                _ => {}
                            }
                            return Stateful::Done(r);
                        }
                        Err(e) => last = e,
                    }
                }
                Stateful::Refused(last)
            }
            Role::List | Role::Other => Stateful::NotApplicable,
        }
    }

    /// A stateful operation whose success has no body (a 204 `DELETE`), or
    /// a `DELETE` whose body does not carry the resource.
    fn bodiless<R>(
        &self,
        role: &Role,
        st: &mut State,
        build: &impl Fn(&Reply) -> Result<R, String>,
        collection: &str,
        id: Option<String>,
    ) -> Stateful<R> {
        let key = match (role, id) {
            (Role::Read | Role::Replace | Role::Update | Role::Delete, Some(id)) => (collection.to_owned(), id),
            _ => return Stateful::NotApplicable,
        };
        if !st.store.items.contains_key(&key) {
            return Stateful::Missing;
        }
        if *role != Role::Read
            && let Some(condition) = self.if_match()
            && !condition.matches(&st.store.etag(&key))
        {
            return Stateful::Precondition;
        }
        for attempt in 0..ATTEMPTS {
            let Ok(reply) = self.synthesized(st, attempt, None) else { return Stateful::NotApplicable };
            if let Ok(r) = build(&reply) {
                if *role == Role::Delete {
                    st.store.remove(&key);
                }
                return Stateful::Done(r);
            }
        }
        Stateful::NotApplicable
    }

    /// `GET` on a collection: what exists under it, paged by the limit and
    /// offset parameters it recognises, in the body's first array of objects.
    fn list<R>(
        &self,
        st: &mut State,
        build: &impl Fn(&Reply) -> Result<R, String>,
        schema: &Value,
        collection: &str,
    ) -> Stateful<R> {
        let Some(at) = locate_array(self.doc, schema, 0) else { return Stateful::NotApplicable };
        let array_schema = schema_at(self.doc, schema, &at).unwrap_or(&Value::Null);
        let max_items = array_schema.get("maxItems").and_then(Value::as_u64).map_or(MAX_LIST_ITEMS, |m| m as usize);
        let int = |names: &[&str]| names.iter().find_map(|n| self.call.params.get(*n).and_then(Value::as_u64));
        let limit = int(&["limit", "page_size", "pageSize", "per_page", "perPage", "size", "max", "count"]);
        let mut offset = int(&["offset", "skip", "start"]).or_else(|| {
            let page = int(&["page"])?;
            Some(page.saturating_sub(1).saturating_mul(limit.unwrap_or(MAX_LIST_ITEMS as u64)))
        });
        // A cursor is one this mock issued (`mock-offset-N`), else refused
        // with the documented 400 (else ignored).
        if let Some(token) = CURSOR_PARAMS.iter().find_map(|n| self.call.params.get(*n).and_then(Value::as_str)) {
            match token.strip_prefix(CURSOR_PREFIX).and_then(|n| n.parse::<u64>().ok()) {
                Some(n) => offset = Some(n),
                None if self.documents(400) => return Stateful::BadCursor,
                None => {}
            }
        }
        let all = st.store.list(collection);
        let take = limit.map_or(usize::MAX, |l| l as usize).min(max_items).min(MAX_LIST_ITEMS);
        let start = offset.unwrap_or(0) as usize;
        let items: Vec<Value> = all.iter().skip(start).take(take).map(|v| (*v).clone()).collect();
        let total = all.len();
        let next = (start + items.len() < total).then(|| format!("{CURSOR_PREFIX}{}", start + items.len()));
        let mut last = String::new();
        for attempt in 0..ATTEMPTS / 2 {
            let Ok(mut reply) = self.synthesized(st, attempt, Some((&at, Value::Array(items.clone())))) else {
                return Stateful::NotApplicable;
            };
            if attempt < ATTEMPTS / 4
                && let Some((_, parent_at)) = at.split_last()
            {
                page_members(self.doc, schema, parent_at, &mut reply.body, total, &self.call.params, next.as_deref());
            }
            match build(&reply) {
                Ok(r) => return Stateful::Done(r),
                Err(e) => last = e,
            }
        }
        Stateful::Refused(last)
    }
}

/// The members beside a list's array: counts (`total`, `total_count`,
/// `totalCount`) become what exists, paging members (`page`, `page_size`,
/// `limit`, `offset` …) echo the request's, and cursors (a member named
/// like `next…` or `…cursor`) are `next` — a `mock-offset-N` the list reads
/// back — when more follow, else dropped (optional ones).
fn page_members(
    doc: &Value,
    schema: &Value,
    parent_at: &[String],
    body: &mut Value,
    total: usize,
    params: &Value,
    next: Option<&str>,
) {
    let Some(parent_schema) = schema_at(doc, schema, parent_at) else { return };
    let flat = flatten(doc, parent_schema);
    let required: Vec<&str> =
        flat.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Some(Value::Object(m)) = get_at_mut(body, parent_at) else { return };
    for name in ["total", "total_count", "totalCount"] {
        if m.get(name).is_some_and(Value::is_u64) {
            m.insert(name.to_owned(), Value::from(total));
        }
    }
    for name in ["page", "page_size", "pageSize", "per_page", "perPage", "limit", "offset"] {
        if let Some(sent) = params.get(name).filter(|v| v.is_u64())
            && m.get(name).is_some_and(Value::is_u64)
        {
            m.insert(name.to_owned(), sent.clone());
        }
    }
    let cursors: Vec<String> = m
        .keys()
        .filter(|k| {
            let lower = k.to_ascii_lowercase();
            (lower.starts_with("next") || lower.ends_with("cursor")) && !required.contains(&k.as_str())
        })
        .cloned()
        .collect();
    for k in cursors {
        match next {
            Some(n) if m.get(&k).is_some_and(Value::is_string) => {
                m.insert(k, Value::String(n.to_owned()));
            }
            _ => {
                m.remove(&k);
            }
        }
    }
}

/// What a cursor this mock issues looks like: the offset it continues at.
const CURSOR_PREFIX: &str = "mock-offset-";
/// Request parameters read as a cursor.
const CURSOR_PARAMS: &[&str] =
    &["page_token", "pageToken", "cursor", "next", "next_token", "nextToken", "continuation"];

/// Names of registry entries that stand for framework faults (the
/// registry's convention, see the generator's `ir/registry.rs`): never the
/// application's own failures.
const FAULT_NAMES: &[&str] = &[
    "ValidationFailed",
    "MalformedBody",
    "UnsupportedMediaType",
    "PayloadTooLarge",
    "MissingCredential",
    "RouteNotFound",
    "MethodNotAllowed",
    "NotAcceptable",
    "Internal",
];

/// The problem the spec's `x-error-codes` registry (if any) gives an
/// application failure with `status`: its first entry of that status that
/// is not a framework fault, with its code and message.
fn registry_problem(doc: &Value, status: u16) -> Option<Problem> {
    let entry = doc.get("x-error-codes")?.as_array()?.iter().find(|e| {
        e.get("status").and_then(Value::as_u64) == Some(u64::from(status))
            && e.get("fault").is_none()
            && e.get("name").and_then(Value::as_str).is_some_and(|n| !FAULT_NAMES.contains(&n))
    })?;
    let mut p = Problem::new(status).with_code(entry.get("code")?.as_i64()?);
    if let Some(m) = entry.get("message").and_then(Value::as_str) {
        p = p.with_title(m);
    }
    Some(p)
}

/// The reply's `ETag` header (if it documents one) as the resource's.
fn set_etag(reply: &mut Reply, etag: &str) {
    for (k, v) in reply.headers.iter_mut() {
        if k.eq_ignore_ascii_case("etag") {
            *v = Value::String(etag.to_owned());
        }
    }
}

/// Reads the success responses' links: a link to a `GET` of one item
/// (`/things/{id}`, no other parameter) whose parameter is
/// `$response.body#/ptr` makes that `GET` a read of what the linking
/// operation created.
fn link_creates(doc: &Value, ops: &mut [Op]) {
    let ids: Vec<Option<String>> =
        ops.iter().map(|o| doc.pointer(&o.pointer)?.get("operationId")?.as_str().map(str::to_owned)).collect();
    for i in 0..ops.len() {
        let Some(responses) = doc.pointer(&ops[i].pointer).and_then(|o| o.get("responses")).and_then(Value::as_object)
        else {
            continue;
        };
        let mut creates = Vec::new();
        for (status, r) in responses {
            if !status.starts_with('2') {
                continue;
            }
            let r = resolve(doc, r);
            for link in r.get("links").and_then(Value::as_object).into_iter().flat_map(|l| l.values()) {
                let link = resolve(doc, link);
                let Some(target_id) = link.get("operationId").and_then(Value::as_str) else { continue };
                let Some(target) = ids.iter().position(|id| id.as_deref() == Some(target_id)) else { continue };
                let t = &ops[target];
                let single = t.template.matches('{').count() == 1;
                let Some(param) = parent(&t.template).map(|p| t.template[p.len() + 1..].trim_matches(['{', '}']))
                else {
                    continue;
                };
                let expr = link.get("parameters").and_then(|p| p.get(param)).and_then(Value::as_str);
                if let (true, "get", Some(ptr)) =
                    (single, t.method.as_str(), expr.and_then(|e| e.strip_prefix("$response.body#")))
                {
                    creates.push(LinkCreate { target, pointer: ptr.to_owned() });
                }
            }
        }
        for c in &creates {
            // The target reads what the store holds.
            if ops[c.target].role == Role::Other {
                ops[c.target].role = Role::Read;
            }
        }
        ops[i].creates = creates;
    }
}

/// Where a body schema carries the resource: the path of the object with
/// one of the `names` among its properties (the body itself, or an object
/// property of it up to two levels down), and the id property's name.
fn locate(doc: &Value, schema: &Value, names: &[String]) -> Option<(Vec<String>, String)> {
    fn walk(doc: &Value, schema: &Value, names: &[String], depth: usize) -> Option<(Vec<String>, String)> {
        let s = flatten(doc, schema);
        let props = s.get("properties").and_then(Value::as_object)?;
        if let Some(n) = names.iter().find(|n| props.contains_key(n.as_str())) {
            return Some((Vec::new(), n.clone()));
        }
        if depth >= 2 {
            return None;
        }
        for (k, p) in props {
            if let Some((mut at, id)) = walk(doc, p, names, depth + 1) {
                at.insert(0, k.clone());
                return Some((at, id));
            }
        }
        None
    }
    walk(doc, schema, names, 0)
}

/// The path of the first array of objects in a body schema (the body
/// itself, or a property up to two levels down).
fn locate_array(doc: &Value, schema: &Value, depth: usize) -> Option<Vec<String>> {
    let s = flatten(doc, schema);
    if s.get("type").and_then(Value::as_str) == Some("array") || s.get("items").is_some() {
        let items = flatten(doc, s.get("items")?);
        return items.get("properties").is_some().then(Vec::new);
    }
    if depth >= 2 {
        return None;
    }
    for (k, p) in s.get("properties").and_then(Value::as_object)? {
        if let Some(mut at) = locate_array(doc, p, depth + 1) {
            at.insert(0, k.clone());
            return Some(at);
        }
    }
    None
}

/// The schema at property path `at` below `schema`.
fn schema_at<'a>(doc: &'a Value, schema: &'a Value, at: &[String]) -> Option<&'a Value> {
    let mut s = resolve(doc, schema);
    for k in at {
        s = resolve(doc, property(doc, s, k)?);
    }
    Some(s)
}

fn property_schema<'a>(doc: &'a Value, schema: &'a Value, at: &[String], name: &str) -> &'a Value {
    schema_at(doc, schema, at).and_then(|s| property(doc, s, name)).map_or(&Value::Null, |p| resolve(doc, p))
}

/// A property's schema, looking into `allOf` members: the schema's own
/// declaration, else the last member declaring it, as in [`flatten`] (an
/// envelope's generic `data` narrowed by a later member).
fn property<'a>(doc: &'a Value, schema: &'a Value, name: &str) -> Option<&'a Value> {
    let s = resolve(doc, schema);
    s.get("properties")
        .and_then(|p| p.get(name))
        .or_else(|| s.get("allOf")?.as_array()?.iter().rev().find_map(|m| property(doc, m, name)))
}

fn get_at_mut<'v>(v: &'v mut Value, at: &[String]) -> Option<&'v mut Value> {
    let mut cur = v;
    for k in at {
        cur = cur.as_object_mut()?.get_mut(k)?;
    }
    cur.is_object().then_some(cur)
}

fn set_at(v: &mut Value, at: &[String], new: Value) {
    let Some((last, init)) = at.split_last() else {
        *v = new;
        return;
    };
    let mut cur = v;
    for k in init {
        let Some(next) = cur.as_object_mut().and_then(|m| m.get_mut(k)) else { return };
        cur = next;
    }
    if let Some(m) = cur.as_object_mut() {
        m.insert(last.clone(), new);
    }
}

/// Copies what the client sent into the resource: only members the
/// resource's schema has and does not hide from responses (`writeOnly`);
/// with `patch`, a `null` member removes an optional one (RFC 7396).
fn merge(
    doc: &Value,
    body_schema: &Value,
    at: &[String],
    resource: &mut Value,
    sent: &Map<String, Value>,
    patch: bool,
) {
    let Some(schema) = schema_at(doc, body_schema, at) else { return };
    let flat = flatten(doc, schema);
    let required: Vec<&str> =
        flat.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
    let Value::Object(r) = resource else { return };
    for (k, v) in sent {
        let Some(p) = property(doc, &flat, k) else { continue };
        let p = resolve(doc, p);
        if p.get("writeOnly").and_then(Value::as_bool) == Some(true)
            || p.get("readOnly").and_then(Value::as_bool) == Some(true)
        {
            continue;
        }
        if v.is_null() && patch {
            if !required.contains(&k.as_str()) {
                r.remove(k);
            }
            continue;
        }
        r.insert(k.clone(), v.clone());
    }
}

/// A fresh id for the id property's schema: the collection's serial for
/// integers (from its `minimum`), a seeded UUID for `format: uuid`, else
/// the serial as text.
fn new_id(schema: &Value, n: u64, rng: &mut Rng) -> Value {
    let ty = schema.get("type").and_then(Value::as_str).unwrap_or("string");
    match ty {
        "integer" | "number" => {
            let min = schema.get("minimum").and_then(Value::as_i64).unwrap_or(1).max(1);
            Value::from(min.saturating_add(n as i64 - 1))
        }
        _ if schema.get("format").and_then(Value::as_str) == Some("uuid") => Value::String(uuid(rng)),
        _ => Value::String(n.to_string()),
    }
}

/// The path template with its parameters filled from `params`.
fn fill(template: &str, params: &Value) -> Option<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}')? + start;
        out.push_str(&scalar_text(params.get(&rest[start + 1..end])?)?);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    Some(out)
}

fn parent(template: &str) -> Option<&str> {
    let (p, last) = template.rsplit_once('/')?;
    (last.starts_with('{') && last.ends_with('}') && !p.is_empty()).then_some(p)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Sorts responses: codes ascending, then `1XX`…`5XX`, then `default`.
fn status_order(k: &str) -> u16 {
    match k.parse::<u16>() {
        Ok(c) => c,
        Err(_) if k == "default" => 999,
        Err(_) => k.chars().next().and_then(|c| c.to_digit(10)).map_or(998, |d| d as u16 * 100 + 600),
    }
}

/// Follows `$ref`s (local ones) to the schema they name.
fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
    for _ in 0..MAX_DEPTH {
        match v.get("$ref").and_then(Value::as_str) {
            Some(r) => match doc.pointer(r.trim_start_matches('#')) {
                Some(t) => v = t,
                None => return v,
            },
            None => return v,
        }
    }
    v
}

/// `schema` with `allOf` flattened into one object schema (properties and
/// required merged, the first member's other keywords kept).
fn flatten(doc: &Value, schema: &Value) -> Value {
    fn walk(doc: &Value, schema: &Value, out: &mut Map<String, Value>, depth: usize) {
        let s = resolve(doc, schema);
        let Some(m) = s.as_object() else { return };
        for (k, v) in m {
            match k.as_str() {
                "allOf" if depth < MAX_DEPTH => {
                    for member in v.as_array().into_iter().flatten() {
                        walk(doc, member, out, depth + 1);
                    }
                }
                "properties" => {
                    let props = out.entry("properties").or_insert_with(|| Value::Object(Map::new()));
                    if let (Value::Object(into), Some(from)) = (props, v.as_object()) {
                        for (pk, pv) in from {
                            into.insert(pk.clone(), pv.clone());
                        }
                    }
                }
                "required" => {
                    let req = out.entry("required").or_insert_with(|| Value::Array(Vec::new()));
                    if let (Value::Array(into), Some(from)) = (req, v.as_array()) {
                        for r in from {
                            if !into.contains(r) {
                                into.push(r.clone());
                            }
                        }
                    }
                }
                _ => {
                    out.entry(k.clone()).or_insert_with(|| v.clone());
                }
            }
        }
    }
    let mut out = Map::new();
    walk(doc, schema, &mut out, 0);
    Value::Object(out)
}

/// Puts the problem's message and status into an error body's plain
/// properties (`message`, `msg`, `detail`, `title`, `error`; `status`,
/// `code`),
/// where their schemas take any string or the number.
fn overlay_problem(doc: &Value, schema: &Value, v: &mut Value, problem: &Problem) {
    let flat = flatten(doc, schema);
    let Value::Object(m) = v else { return };
    let plain = |name: &str, ty: &str| {
        property(doc, &flat, name).map(|p| resolve(doc, p)).is_some_and(|p| {
            p.get("type").and_then(Value::as_str) == Some(ty)
                && ["enum", "pattern", "format", "maxLength", "minimum", "maximum", "const"]
                    .iter()
                    .all(|k| p.get(*k).is_none())
        })
    };
    for name in ["message", "msg", "detail", "title", "error"] {
        if m.contains_key(name) && plain(name, "string") {
            let text = if name == "title" { problem.title.clone() } else { problem.message().to_owned() };
            m.insert(name.to_owned(), Value::String(text));
        }
    }
    if m.contains_key("status") && plain("status", "integer") {
        m.insert("status".into(), Value::from(problem.status));
    }
    if let Some(code) = problem.code
        && m.contains_key("code")
        && plain("code", "integer")
    {
        m.insert("code".into(), Value::from(code));
    }
}

fn uuid(rng: &mut Rng) -> String {
    let (a, b) = (rng.next_u64(), rng.next_u64());
    // Version 4, RFC 4122 variant: what `format: uuid` checks accept.
    let b = (b & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    let a = (a & 0xFFFF_FFFF_FFFF_0FFF) | 0x4000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xFFFF,
        a & 0xFFFF,
        b >> 48,
        b & 0xFFFF_FFFF_FFFF
    )
}

/// Builds a value of a schema: examples and defaults first (on even
/// attempts), then enums, formats and bounds; `oneOf`/`anyOf` take one
/// member per attempt, with a discriminator's value set.
struct Synth<'a> {
    doc: &'a Value,
    rng: &'a mut Rng,
    attempt: u32,
    serial: &'a mut u64,
}

impl Synth<'_> {
    fn value(&mut self, schema: &Value, depth: usize) -> Value {
        let flat = flatten(self.doc, schema);
        self.flat_value(&flat, depth)
    }

    fn flat_value(&mut self, s: &Value, depth: usize) -> Value {
        let examples = self.attempt.is_multiple_of(2);
        if examples {
            if let Some(ex) = s.get("example") {
                return ex.clone();
            }
            if let Some(ex) = s.get("examples").and_then(Value::as_array).and_then(|a| a.first()) {
                return ex.clone();
            }
            if let Some(d) = s.get("default") {
                return d.clone();
            }
        }
        if let Some(c) = s.get("const") {
            return c.clone();
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            let choices: Vec<&Value> = e.iter().filter(|v| !v.is_null()).collect();
            // `enum: [null]`: only null (dropshot's empty body), where the
            // type lets it be; with a `type` that does not (propolis's
            // `type: string, enum: [null]`), the type's value, as
            // validators that check the type first expect.
            let null_allowed = match s.get("type") {
                None => true,
                Some(Value::Array(ts)) => ts.iter().any(|t| t == "null"),
                Some(_) => s.get("nullable").and_then(Value::as_bool) == Some(true),
            };
            if choices.is_empty() && !e.is_empty() && null_allowed {
                return Value::Null;
            }
            if !choices.is_empty() {
                let i = (self.attempt as usize + self.rng.below(choices.len() as u64) as usize) % choices.len();
                return choices[i].clone();
            }
        }
        for key in ["oneOf", "anyOf"] {
            if let Some(members) = s.get(key).and_then(Value::as_array).filter(|m| !m.is_empty()) {
                let i = self.attempt as usize % members.len();
                let mut v = self.value(&members[i], depth + 1);
                if let (Some(d), Value::Object(m)) = (s.get("discriminator"), &mut v)
                    && let Some(prop) = d.get("propertyName").and_then(Value::as_str)
                {
                    let target = members[i].get("$ref").and_then(Value::as_str).unwrap_or_default();
                    let mapped = d
                        .get("mapping")
                        .and_then(Value::as_object)
                        .and_then(|mp| mp.iter().find(|(_, r)| r.as_str() == Some(target)).map(|(k, _)| k.clone()))
                        .unwrap_or_else(|| target.rsplit('/').next().unwrap_or_default().to_owned());
                    if !mapped.is_empty() {
                        m.insert(prop.to_owned(), Value::String(mapped));
                    }
                }
                return v;
            }
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.clone(),
            Some(Value::Array(ts)) => {
                ts.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("null").to_owned()
            }
            _ if s.get("properties").is_some() || s.get("additionalProperties").is_some() => "object".into(),
            _ if s.get("items").is_some() => "array".into(),
            _ => String::new(),
        };
        match ty.as_str() {
            "object" => self.object(s, depth),
            "array" => self.array(s, depth),
            "string" => Value::String(self.string(s)),
            "integer" => self.integer(s),
            "number" => self.number(s),
            "boolean" => Value::Bool(self.rng.below(2) == 1),
            "null" => Value::Null,
            // A schema that allows anything.
            _ => Value::String("mock".into()),
        }
    }

    fn object(&mut self, s: &Value, depth: usize) -> Value {
        let mut out = Map::new();
        let required: Vec<&str> =
            s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        if let Some(props) = s.get("properties").and_then(Value::as_object) {
            for (k, p) in props {
                let flat = flatten(self.doc, p);
                // Responses never carry what only requests may send.
                if flat.get("writeOnly").and_then(Value::as_bool) == Some(true) {
                    continue;
                }
                let wanted = required.contains(&k.as_str()) || depth < FULL_DEPTH;
                if wanted && (depth < MAX_DEPTH || required.contains(&k.as_str())) {
                    out.insert(k.clone(), self.flat_value(&flat, depth + 1));
                }
            }
        }
        let min = s.get("minProperties").and_then(Value::as_u64).unwrap_or(0) as usize;
        let extra = match s.get("additionalProperties") {
            Some(Value::Bool(false)) => None,
            Some(Value::Object(schema)) if !schema.is_empty() => Some(Value::Object(schema.clone())),
            _ => Some(Value::Object(Map::new())),
        };
        if let Some(extra) = extra {
            let shallow_map = out.is_empty() && depth < FULL_DEPTH && s.get("properties").is_none();
            let mut i = 0;
            while out.len() < min.max(usize::from(shallow_map)) && i < 64 {
                let v = self.value(&extra, depth + 1);
                out.insert(format!("key{i}"), v);
                i += 1;
            }
        }
        Value::Object(out)
    }

    fn array(&mut self, s: &Value, depth: usize) -> Value {
        let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s.get("maxItems").and_then(Value::as_u64).map_or(usize::MAX, |m| m as usize);
        let want = if depth < FULL_DEPTH { min.max(1).min(max) } else { min };
        let items = s.get("items").cloned().unwrap_or(Value::Null);
        let unique = s.get("uniqueItems").and_then(Value::as_bool) == Some(true);
        let mut out: Vec<Value> = Vec::new();
        let mut tries = 0;
        while out.len() < want && tries < want * 4 + 4 {
            tries += 1;
            let v = self.value(&items, depth + 1);
            if unique && out.contains(&v) {
                // Another draw: a fresh serial, another enum member.
                self.attempt = self.attempt.wrapping_add(2);
                continue;
            }
            out.push(v);
        }
        Value::Array(out)
    }

    fn string(&mut self, s: &Value) -> String {
        *self.serial += 1;
        let n = *self.serial;
        let r = self.rng.next_u64();
        let format = s.get("format").and_then(Value::as_str).unwrap_or_default();
        let base = match format {
            "date-time" => format!("2026-01-{:02}T{:02}:{:02}:00Z", 1 + r % 28, r % 24, (r >> 8) % 60),
            "date" => format!("2026-01-{:02}", 1 + r % 28),
            "time" => format!("{:02}:{:02}:00", r % 24, (r >> 8) % 60),
            "uuid" => uuid(self.rng),
            "email" => format!("user{n}@example.com"),
            "uri" | "url" | "uri-reference" | "iri" => format!("https://example.com/mock/{n}"),
            "hostname" => format!("host{n}.example.com"),
            "ipv4" => format!("192.0.2.{}", 1 + r % 254),
            "ipv6" => format!("2001:db8::{:x}", 1 + r % 0xfffe),
            "byte" => "bW9jaw==".to_owned(),
            "duration" => "PT1H".to_owned(),
            _ => match self.attempt / 2 % 4 {
                0 => format!("{}{n}", WORDS[(r % WORDS.len() as u64) as usize]),
                1 => "a".repeat(1 + (r % 8) as usize),
                2 => format!("{}", 100 + r % 900),
                _ => format!("Mock-{n}"),
            },
        };
        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s.get("maxLength").and_then(Value::as_u64).map_or(usize::MAX, |m| m as usize);
        let mut out: String = base.chars().take(max).collect();
        let pad = if format.is_empty() { 'x' } else { '0' };
        while out.chars().count() < min {
            out.push(pad);
        }
        out
    }

    fn bounds(&self, s: &Value) -> (Option<f64>, Option<f64>, bool, bool) {
        let num = |k: &str| s.get(k).and_then(Value::as_f64);
        let (mut lo, mut hi) = (num("minimum"), num("maximum"));
        let (mut lo_ex, mut hi_ex) = (false, false);
        // 3.0 says exclusivity as booleans, 3.1 as the bound itself.
        match s.get("exclusiveMinimum") {
            Some(Value::Bool(true)) => lo_ex = true,
            Some(Value::Number(n)) => (lo, lo_ex) = (n.as_f64(), true),
            _ => {}
        }
        match s.get("exclusiveMaximum") {
            Some(Value::Bool(true)) => hi_ex = true,
            Some(Value::Number(n)) => (hi, hi_ex) = (n.as_f64(), true),
            _ => {}
        }
        (lo, hi, lo_ex, hi_ex)
    }

    fn integer(&mut self, s: &Value) -> Value {
        let (lo, hi, lo_ex, hi_ex) = self.bounds(s);
        let (fmt_lo, fmt_hi) = match s.get("format").and_then(Value::as_str) {
            Some("int32") => (f64::from(i32::MIN), f64::from(i32::MAX)),
            Some("uint32") => (0.0, f64::from(u32::MAX)),
            Some("uint64" | "uint") => (0.0, 9.0e15),
            _ => (-9.0e15, 9.0e15),
        };
        let lo = lo.map_or(fmt_lo.max(1.0), |l| if lo_ex { l.floor() + 1.0 } else { l.ceil() });
        let hi = hi.map_or(fmt_hi, |h| if hi_ex { h.ceil() - 1.0 } else { h.floor() });
        let hi = hi.max(lo);
        let span = (hi - lo).min(99.0) as u64;
        let mut v = lo as i64 + self.rng.below(span + 1) as i64;
        if let Some(m) = s.get("multipleOf").and_then(Value::as_i64).filter(|m| *m > 0) {
            v = (v + m - 1).div_euclid(m) * m;
            if (v as f64) > hi {
                v -= m;
            }
        }
        Value::from(v)
    }

    fn number(&mut self, s: &Value) -> Value {
        let (lo, hi, lo_ex, hi_ex) = self.bounds(s);
        let lo_v = lo.unwrap_or(0.0);
        let hi_v = hi.unwrap_or(lo_v + 100.0);
        let mut v = lo_v + (hi_v - lo_v) * (self.rng.below(1000) as f64 / 1000.0);
        if lo_ex && v <= lo_v {
            v = lo_v + (hi_v - lo_v) / 2.0;
        }
        if hi_ex && v >= hi_v {
            v = lo_v + (hi_v - lo_v) / 2.0;
        }
        if let Some(m) = s.get("multipleOf").and_then(Value::as_f64).filter(|m| *m > 0.0) {
            v = (v / m).ceil() * m;
        }
        serde_json::Number::from_f64(v).map_or(Value::from(0), Value::Number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn doc() -> Value {
        json!({
            "openapi": "3.0.3",
            "paths": {
                "/things": {"post": {"responses": {"201": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}}},
                            "get": {"responses": {"200": {"content": {"application/json": {"schema": {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}}, "next": {"type": "string"}, "total": {"type": "integer"}}}}}}, "400": {"description": "bad"}}}},
                "/things/{thingId}": {"get": {"responses": {"200": {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}, "404": {"description": "none"}}},
                                       "delete": {"responses": {"204": {"description": "gone"}}},
                                       "put": {"responses": {"200": {"headers": {"ETag": {"schema": {"type": "string"}}}, "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}}}, "412": {"description": "stale"}}}}
            },
            "components": {"schemas": {"Thing": {"type": "object", "required": ["thingId", "name"], "properties": {
                "thingId": {"type": "integer", "minimum": 1},
                "name": {"type": "string", "minLength": 3, "maxLength": 5},
                "secret": {"type": "string", "writeOnly": true},
                "kind": {"type": "string", "enum": ["a", "b"]}
            }}}}
        })
    }

    fn call<'a>(method: &'a str, template: &'a str, params: Value, body: Option<Value>) -> Call<'a> {
        Call { method, template, params, body, media: None }
    }

    #[test]
    fn create_read_list_delete() {
        let m = Mock::new(doc(), 7).expect("mock");
        let created = m
            .answer(call("post", "/things", json!({}), Some(json!({"name": "abc", "secret": "s"}))), |r| Ok(r.clone()))
            .expect("created");
        assert_eq!(created.status, 201);
        assert_eq!(created.body["name"], "abc");
        assert!(created.body.get("secret").is_none(), "writeOnly never answered");
        let id = created.body["thingId"].clone();
        let read = m.answer(call("get", "/things/{thingId}", json!({"thingId": id}), None), |r| Ok(r.clone()));
        assert_eq!(read.expect("read").body, created.body);
        let list = m.answer(call("get", "/things", json!({}), None), |r| Ok(r.clone())).expect("list");
        assert_eq!(list.body["items"], json!([created.body]));
        m.answer(call("delete", "/things/{thingId}", json!({"thingId": id}), None), |r| Ok(r.clone())).expect("gone");
        let again = m.answer(call("get", "/things/{thingId}", json!({"thingId": id}), None), |r| Ok(r.clone()));
        assert_eq!(again.expect_err("missing").status, 404);
    }

    #[test]
    fn links_name_what_an_operation_created() {
        let mut d = doc();
        d["paths"]["/jobs"] = json!({"post": {"operationId": "submit", "responses": {"202": {
            "content": {"application/json": {"schema": {"type": "object", "required": ["job"], "properties": {"job": {"type": "string", "format": "uuid"}}}}},
            "links": {"Read": {"operationId": "getJob", "parameters": {"jobId": "$response.body#/job"}}}}}}});
        d["paths"]["/jobs/{jobId}"] = json!({"get": {"operationId": "getJob", "responses": {
            "200": {"content": {"application/json": {"schema": {"type": "object", "required": ["jobId", "state"], "properties": {"jobId": {"type": "string"}, "state": {"type": "string", "enum": ["queued"]}}}}}},
            "404": {"description": "none"}}}});
        let m = Mock::new(d, 2).expect("mock");
        let submitted = m.answer(call("post", "/jobs", json!({}), None), |r| Ok(r.body.clone())).expect("submitted");
        let job = submitted["job"].clone();
        let read = m.answer(call("get", "/jobs/{jobId}", json!({"jobId": job}), None), |r| Ok(r.body.clone()));
        assert_eq!(read.expect("linked")["jobId"], job);
        let other = m.answer(call("get", "/jobs/{jobId}", json!({"jobId": "nope"}), None), |r| Ok(r.body.clone()));
        assert_eq!(other.expect_err("never created").status, 404);
    }

    #[test]
    fn lists_page_by_the_cursors_they_issue() {
        let m = Mock::new(doc(), 9).expect("mock");
        for _ in 0..3 {
            m.answer(call("post", "/things", json!({}), None), |r| Ok(r.clone())).expect("created");
        }
        let page = |params| m.answer(call("get", "/things", params, None), |r| Ok(r.body.clone()));
        let first = page(json!({"limit": 2})).expect("first page");
        assert_eq!(first["items"].as_array().map(Vec::len), Some(2));
        assert_eq!(first["total"], 3);
        let token = first["next"].as_str().expect("more follow").to_owned();
        let second = page(json!({"limit": 2, "page_token": token})).expect("second page");
        assert_eq!(second["items"].as_array().map(Vec::len), Some(1));
        assert!(second.get("next").is_none(), "the last page: {second}");
        assert_eq!(page(json!({"page_token": "forged"})).expect_err("not ours").status, 400);
    }

    #[test]
    fn if_match_names_the_version() {
        let m = Mock::new(doc(), 5).expect("mock");
        let created = m.answer(call("post", "/things", json!({}), None), |r| Ok(r.clone())).expect("created");
        let id = created.body["thingId"].clone();
        let put = |tag: &str| {
            let params = json!({"thingId": id, "If-Match": tag});
            m.answer(call("put", "/things/{thingId}", params, Some(json!({"name": "new"}))), |r| Ok(r.clone()))
        };
        let first = put("\"v1\"").expect("the current version");
        assert_eq!(first.headers["ETag"], "\"v2\"");
        assert_eq!(first.body["name"], "new");
        assert_eq!(put("\"v1\"").expect_err("stale").status, 412);
        put("*").expect("any version");
    }

    #[test]
    fn refused_replies_are_synthesized_again() {
        let m = Mock::new(doc(), 1).expect("mock");
        // A check that accepts only the second kind: the retries reach it.
        let r = m.answer(call("get", "/things/{thingId}", json!({"thingId": 99}), None), |r| Ok(r.clone()));
        assert!(r.is_err(), "nothing created yet");
        let created = m
            .answer(call("post", "/things", json!({}), None), |r| {
                if r.body["kind"] == "b" { Ok(r.clone()) } else { Err("kind".into()) }
            })
            .expect("a later attempt");
        assert_eq!(created.body["kind"], "b");
        let name = created.body["name"].as_str().expect("name");
        assert!((3..=5).contains(&name.chars().count()), "{name}");
    }

    #[test]
    fn same_seed_same_bodies() {
        let run = |seed| {
            let m = Mock::new(doc(), seed).expect("mock");
            (0..5)
                .map(|_| m.answer(call("post", "/things", json!({}), None), |r| Ok(r.body.clone())).expect("ok"))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(3), run(3));
        assert_ne!(run(3), run(4));
    }

    #[test]
    fn store_is_bounded() {
        let mut s = Store::default();
        for i in 0..MAX_RESOURCES + 5 {
            s.insert(("/c".into(), i.to_string()), Value::Null);
        }
        assert_eq!(s.items.len(), MAX_RESOURCES);
        assert_eq!(s.order.len(), MAX_RESOURCES);
        assert!(!s.items.contains_key(&("/c".to_owned(), "0".to_owned())), "the oldest went first");
    }
}
