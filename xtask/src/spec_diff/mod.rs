//! `cargo xtask spec-diff BASE HEAD`: which changes between two OpenAPI 3.0
//! documents break clients written against BASE.
//!
//! The documents are plain `serde_json::Value` trees (YAML converted), not
//! openapiv3 types, so that the checker never refuses a spec it could still
//! say something about. This module loads the documents and walks paths,
//! operations, parameters, bodies, responses and security; `schema` compares
//! schemas, `rules` is the table of findings' ids and levels, `report`
//! formats them and `gate` is the CI step built on top.

pub mod gate;
pub mod report;
pub mod rules;
pub mod schema;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

pub use rules::Level;

/// One change, with the JSON pointer (RFC 6901, as a URI fragment) of where
/// it is in each document. The side where the thing does not exist points
/// at the nearest container that does.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Finding {
    pub level: Level,
    pub rule: &'static str,
    pub base: String,
    pub head: String,
    pub message: String,
}

impl Finding {
    /// `LEVEL rule base head`: the line the fixture corpus compares.
    pub fn key_line(&self) -> String {
        format!("{} {} {} {}", self.level, self.rule, self.base, self.head)
    }
}

/// A JSON pointer under construction (`#`-prefixed fragment form).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ptr(String);

impl Ptr {
    pub fn root() -> Self {
        Ptr("#".into())
    }

    /// `#/components/schemas/X` from a local `$ref` (already escaped).
    pub fn from_ref(r: &str) -> Self {
        Ptr(r.to_string())
    }

    pub fn push(&self, segment: &str) -> Self {
        Ptr(format!("{}/{}", self.0, segment.replace('~', "~0").replace('/', "~1")))
    }

    pub fn idx(&self, i: usize) -> Self {
        Ptr(format!("{}/{i}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Which way values flow through a schema: clients produce requests (the
/// server must keep accepting them) and consume responses (clients must keep
/// understanding them), so the same change is rated differently.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Dir {
    Request,
    Response,
}

/// Both documents and the findings so far.
pub struct Ctx<'a> {
    pub base: &'a Value,
    pub head: &'a Value,
    pub findings: Vec<Finding>,
    /// `(base ref, head ref, direction)` already compared: stops recursion
    /// through cyclic schemas and compares a shared component once.
    pub visited: HashSet<(String, String, Dir)>,
    /// What the schema being compared belongs to (`POST /items: request
    /// body application/json`), for schema findings' messages.
    pub scope: String,
}

impl Ctx<'_> {
    pub fn report(&mut self, rule: &'static str, base: &Ptr, head: &Ptr, message: impl Into<String>) {
        let r = rules::rule(rule);
        self.findings.push(Finding {
            level: r.level,
            rule: r.id,
            base: base.as_str().to_string(),
            head: head.as_str().to_string(),
            message: message.into(),
        });
    }

    /// A schema finding: the message prefixed with the scope.
    pub fn note(&mut self, rule: &'static str, base: &Ptr, head: &Ptr, message: impl Into<String>) {
        let message = format!("{}: {}", self.scope, message.into());
        self.report(rule, base, head, message);
    }
}

/// A loaded document and what to call it in reports (a path, or `REV:PATH`).
pub struct Doc {
    pub value: Value,
    pub name: String,
    /// The file a GitHub annotation should point at.
    pub file: String,
    pub text: String,
}

/// Reads `arg`: an existing file, or else `REV:PATH` through `git show`.
pub fn load(arg: &str) -> Result<Doc> {
    let path = Path::new(arg);
    let (text, file) = if path.is_file() {
        (std::fs::read_to_string(path).with_context(|| format!("reading {arg}"))?, arg.to_string())
    } else if let Some((rev, file)) = arg.split_once(':')
        && !rev.is_empty()
    {
        let out = Command::new("git")
            .args(["show", arg])
            .output()
            .with_context(|| format!("running `git show {arg}` (is git installed?)"))?;
        if !out.status.success() {
            bail!("`git show {arg}` failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        let text = String::from_utf8(out.stdout).with_context(|| format!("{arg} is not UTF-8"))?;
        (text, file.to_string())
    } else {
        bail!("{arg}: no such file, and not a git `REV:PATH`");
    };
    let value = parse(&text).with_context(|| format!("parsing {arg}"))?;
    if !value.is_object() {
        bail!("{arg}: not an OpenAPI document (the top level is not a mapping)");
    }
    Ok(Doc { value, name: arg.to_string(), file, text })
}

/// JSON or YAML text as JSON. YAML goes through `serde_yaml::Value` because
/// its mapping keys may be numbers (`200:` under `responses`), which a
/// `serde_json::Value` cannot hold as keys.
pub fn parse(text: &str) -> Result<Value> {
    if text.trim_start().starts_with('{')
        && let Ok(v) = serde_json::from_str(text)
    {
        return Ok(v);
    }
    let yaml: serde_yaml::Value = serde_yaml::from_str(text)?;
    yaml_to_json(yaml)
}

fn yaml_to_json(v: serde_yaml::Value) -> Result<Value> {
    use serde_yaml::Value as Y;
    Ok(match v {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                n.as_f64().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
            }
        }
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(yaml_to_json).collect::<Result<_>>()?),
        Y::Mapping(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    other => bail!("unsupported mapping key {other:?}"),
                };
                out.insert(key, yaml_to_json(v)?);
            }
            Value::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value)?,
    })
}

/// Every finding from BASE to HEAD, sorted (most severe first), without duplicates.
pub fn diff(base: &Value, head: &Value) -> Vec<Finding> {
    let mut ctx = Ctx { base, head, findings: Vec::new(), visited: HashSet::new(), scope: String::new() };
    paths(&mut ctx);
    security_schemes(&mut ctx);
    let mut f = std::mem::take(&mut ctx.findings);
    f.sort_by(|a, b| b.level.cmp(&a.level).then_with(|| (a.rule, &a.base, &a.head).cmp(&(b.rule, &b.base, &b.head))));
    f.dedup_by(|a, b| a.rule == b.rule && a.base == b.base && a.head == b.head);
    f
}

/// Follows a local `$ref` chain (`#/...`), returning the target and its pointer.
/// A dangling or remote ref is returned as it is (then it compares as an
/// object with only `$ref`, which is as much as can be said about it).
pub fn resolve<'v>(doc: &'v Value, v: &'v Value, ptr: &Ptr) -> (&'v Value, Ptr) {
    let mut cur = v;
    let mut p = ptr.clone();
    for _ in 0..32 {
        let Some(r) = cur.get("$ref").and_then(Value::as_str) else { break };
        let Some(target) = r.strip_prefix('#').and_then(|frag| doc.pointer(frag)) else { break };
        p = Ptr::from_ref(r);
        cur = target;
    }
    (cur, p)
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// `/users/{id}` and `/users/{userId}` are the same path to a client.
fn path_shape(path: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in path.chars() {
        match c {
            '{' => {
                depth += 1;
                out.push_str("{}");
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// Template variable names in order: a renamed path parameter matches by position.
fn path_vars(path: &str) -> Vec<String> {
    path.split('{').skip(1).filter_map(|s| s.split_once('}').map(|(v, _)| v.to_string())).collect()
}

fn obj(v: Option<&Value>) -> Option<&Map<String, Value>> {
    v.and_then(Value::as_object)
}

fn paths(ctx: &mut Ctx) {
    let root = Ptr::root().push("paths");
    let empty = Map::new();
    let bp = obj(ctx.base.get("paths")).unwrap_or(&empty);
    let hp = obj(ctx.head.get("paths")).unwrap_or(&empty);
    let head_by_shape: BTreeMap<String, &String> = hp.keys().map(|k| (path_shape(k), k)).collect();
    let base_shapes: BTreeSet<String> = bp.keys().map(|k| path_shape(k)).collect();
    for (bk, bitem) in bp {
        let bptr = root.push(bk);
        match head_by_shape.get(&path_shape(bk)) {
            None => ctx.report("path-removed", &bptr, &root, format!("path {bk} removed")),
            Some(hk) => {
                let hitem = &hp[hk.as_str()];
                path_item(ctx, bk, bitem, &bptr, hk, hitem, &root.push(hk));
            }
        }
    }
    for hk in hp.keys() {
        if !base_shapes.contains(&path_shape(hk)) {
            ctx.report("path-added", &root, &root.push(hk), format!("path {hk} added"));
        }
    }
}

fn path_item(ctx: &mut Ctx, bpath: &str, bitem: &Value, bptr: &Ptr, hpath: &str, hitem: &Value, hptr: &Ptr) {
    let (base, head) = (ctx.base, ctx.head);
    let (bitem, bptr) = resolve(base, bitem, bptr);
    let (hitem, hptr) = resolve(head, hitem, hptr);
    for m in METHODS {
        let (bop, hop) = (bitem.get(m), hitem.get(m));
        match (bop, hop) {
            (Some(bop), Some(hop)) => {
                let op = Op { bpath, hpath, bitem, hitem, bop, hop, bptr: bptr.push(m), hptr: hptr.push(m), method: m };
                operation(ctx, &op);
            }
            (Some(_), None) => {
                ctx.report("operation-removed", &bptr.push(m), &hptr, format!("{} {bpath} removed", m.to_uppercase()))
            }
            (None, Some(_)) => {
                ctx.report("operation-added", &bptr, &hptr.push(m), format!("{} {hpath} added", m.to_uppercase()))
            }
            (None, None) => {}
        }
    }
}

struct Op<'v> {
    bpath: &'v str,
    hpath: &'v str,
    bitem: &'v Value,
    hitem: &'v Value,
    bop: &'v Value,
    hop: &'v Value,
    bptr: Ptr,
    hptr: Ptr,
    method: &'static str,
}

impl Op<'_> {
    fn name(&self) -> String {
        format!("{} {}", self.method.to_uppercase(), self.hpath)
    }
}

fn is_true(v: Option<&Value>) -> bool {
    v.and_then(Value::as_bool).unwrap_or(false)
}

fn operation(ctx: &mut Ctx, op: &Op) {
    let name = op.name();
    let (bid, hid) = (op.bop.get("operationId"), op.hop.get("operationId"));
    // Added or removed counts too: without one, generators name the method
    // after the method and path instead.
    if bid != hid {
        let show = |v: Option<&Value>| v.map_or_else(|| "(none)".to_string(), Value::to_string);
        let at = |v: Option<&Value>, p: &Ptr| if v.is_some() { p.push("operationId") } else { p.clone() };
        ctx.report(
            "operation-id-changed",
            &at(bid, &op.bptr),
            &at(hid, &op.hptr),
            format!("{name}: operationId {} became {}", show(bid), show(hid)),
        );
    }
    if !is_true(op.bop.get("deprecated")) && is_true(op.hop.get("deprecated")) {
        ctx.report("deprecated-added", &op.bptr, &op.hptr.push("deprecated"), format!("{name} deprecated"));
    }
    parameters(ctx, op);
    request_body(ctx, op);
    responses(ctx, op);
    security(ctx, op);
}

/// One side's parameters: path-level ones overridden by the operation's,
/// keyed for matching (`in:name`, header names case-folded, path parameters
/// by their position in the template).
fn collect_params(
    doc: &Value,
    path: &str,
    item: &Value,
    op: &Value,
    item_ptr: &Ptr,
    op_ptr: &Ptr,
) -> BTreeMap<String, (Value, Ptr, String)> {
    let vars = path_vars(path);
    let mut out = BTreeMap::new();
    for (src, sptr) in [(item, item_ptr), (op, op_ptr)] {
        for p in src.get("parameters").and_then(Value::as_array).into_iter().flatten() {
            let (p, _) = resolve(doc, p, sptr);
            let (Some(name), Some(loc)) = (p.get("name").and_then(Value::as_str), p.get("in").and_then(Value::as_str))
            else {
                continue;
            };
            let label = format!("{loc}:{name}");
            let key = match loc {
                "header" => format!("header:{}", name.to_ascii_lowercase()),
                "path" => match vars.iter().position(|v| v == name) {
                    Some(i) => format!("path:#{i}"),
                    None => label.clone(),
                },
                _ => label.clone(),
            };
            let ptr = sptr.push("parameters").push(&label);
            out.insert(key, (p.clone(), ptr, label));
        }
    }
    out
}

fn parameters(ctx: &mut Ctx, op: &Op) {
    let name = op.name();
    let bitem_ptr = Ptr(op.bptr.0.rsplit_once('/').map(|(a, _)| a.to_string()).unwrap_or_default());
    let hitem_ptr = Ptr(op.hptr.0.rsplit_once('/').map(|(a, _)| a.to_string()).unwrap_or_default());
    let bparams = collect_params(ctx.base, op.bpath, op.bitem, op.bop, &bitem_ptr, &op.bptr);
    let hparams = collect_params(ctx.head, op.hpath, op.hitem, op.hop, &hitem_ptr, &op.hptr);
    for (key, (bp, bptr, blabel)) in &bparams {
        let Some((hp, hptr, hlabel)) = hparams.get(key) else {
            ctx.report(
                "request-parameter-removed",
                bptr,
                &op.hptr.push("parameters"),
                format!("{name}: parameter {blabel} removed"),
            );
            continue;
        };
        let (breq, hreq) = (is_true(bp.get("required")), is_true(hp.get("required")));
        if !breq && hreq {
            ctx.report(
                "request-parameter-became-required",
                bptr,
                hptr,
                format!("{name}: parameter {hlabel} became required"),
            );
        } else if breq && !hreq {
            ctx.report(
                "request-parameter-became-optional",
                bptr,
                hptr,
                format!("{name}: parameter {hlabel} became optional"),
            );
        }
        let loc = key.split(':').next().unwrap_or("");
        let default_style = match loc {
            "query" | "cookie" => "form",
            _ => "simple",
        };
        let style = |p: &Value| p.get("style").and_then(Value::as_str).unwrap_or(default_style).to_string();
        let explode = |p: &Value| p.get("explode").and_then(Value::as_bool).unwrap_or(style(p) == "form");
        if style(bp) != style(hp) || explode(bp) != explode(hp) {
            ctx.report(
                "request-parameter-style-changed",
                bptr,
                hptr,
                format!(
                    "{name}: parameter {hlabel} style {}/explode {} became {}/explode {}",
                    style(bp),
                    explode(bp),
                    style(hp),
                    explode(hp)
                ),
            );
        }
        if !is_true(bp.get("deprecated")) && is_true(hp.get("deprecated")) {
            ctx.report("deprecated-added", bptr, hptr, format!("{name}: parameter {hlabel} deprecated"));
        }
        match (bp.get("schema"), hp.get("schema")) {
            (Some(bs), Some(hs)) => {
                ctx.scope = format!("{name}: parameter {hlabel}");
                schema::compare(ctx, bs, &bptr.push("schema"), hs, &hptr.push("schema"), Dir::Request, 0)
            }
            _ => content(ctx, bp, bptr, hp, hptr, Dir::Request, &format!("{name}: parameter {hlabel}")),
        }
    }
    for (key, (hp, hptr, hlabel)) in &hparams {
        if !bparams.contains_key(key) {
            let (rule, what) = if is_true(hp.get("required")) {
                ("request-parameter-required-added", "required parameter")
            } else {
                ("request-parameter-added", "optional parameter")
            };
            ctx.report(rule, &op.bptr.push("parameters"), hptr, format!("{name}: {what} {hlabel} added"));
        }
    }
}

/// Media types lower-cased without parameters: `application/json; charset=utf-8` is `application/json`.
fn media_key(m: &str) -> String {
    m.split(';').next().unwrap_or(m).trim().to_ascii_lowercase()
}

/// Compares the `content` maps under `b` and `h` (a body, a response, a parameter).
fn content(ctx: &mut Ctx, b: &Value, bptr: &Ptr, h: &Value, hptr: &Ptr, dir: Dir, what: &str) {
    let empty = Map::new();
    let bc = obj(b.get("content")).unwrap_or(&empty);
    let hc = obj(h.get("content")).unwrap_or(&empty);
    let (bcp, hcp) = (bptr.push("content"), hptr.push("content"));
    let hkeys: BTreeMap<String, &String> = hc.keys().map(|k| (media_key(k), k)).collect();
    let bkeys: BTreeSet<String> = bc.keys().map(|k| media_key(k)).collect();
    let (removed, added) = match dir {
        Dir::Request => ("request-media-type-removed", "request-media-type-added"),
        Dir::Response => ("response-media-type-removed", "response-media-type-added"),
    };
    for (bk, bm) in bc {
        match hkeys.get(&media_key(bk)) {
            None => ctx.report(removed, &bcp.push(bk), &hcp, format!("{what}: media type {bk} removed")),
            Some(hk) => {
                let hm = &hc[hk.as_str()];
                if let (Some(bs), Some(hs)) = (bm.get("schema"), hm.get("schema")) {
                    ctx.scope = format!("{what} {hk}");
                    schema::compare(ctx, bs, &bcp.push(bk).push("schema"), hs, &hcp.push(hk).push("schema"), dir, 0);
                }
            }
        }
    }
    for hk in hc.keys() {
        if !bkeys.contains(&media_key(hk)) {
            ctx.report(added, &bcp, &hcp.push(hk), format!("{what}: media type {hk} added"));
        }
    }
}

fn request_body(ctx: &mut Ctx, op: &Op) {
    let name = op.name();
    let (bb, hb) = (op.bop.get("requestBody"), op.hop.get("requestBody"));
    let (bptr, hptr) = (op.bptr.push("requestBody"), op.hptr.push("requestBody"));
    match (bb, hb) {
        (None, None) => {}
        (Some(_), None) => ctx.report("request-body-removed", &bptr, &op.hptr, format!("{name}: request body removed")),
        (None, Some(hb)) => {
            let (hb, _) = resolve(ctx.head, hb, &hptr);
            if is_true(hb.get("required")) {
                ctx.report(
                    "request-body-required-added",
                    &op.bptr,
                    &hptr,
                    format!("{name}: required request body added"),
                );
            } else {
                ctx.report("request-body-added", &op.bptr, &hptr, format!("{name}: optional request body added"));
            }
        }
        (Some(bb), Some(hb)) => {
            // Pointers into a shared `components/requestBodies` entry, where the change is.
            let (bb, bptr) = resolve(ctx.base, bb, &bptr);
            let (hb, hptr) = resolve(ctx.head, hb, &hptr);
            if !is_true(bb.get("required")) && is_true(hb.get("required")) {
                ctx.report(
                    "request-body-became-required",
                    &bptr,
                    &hptr,
                    format!("{name}: request body became required"),
                );
            }
            content(ctx, bb, &bptr, hb, &hptr, Dir::Request, &format!("{name}: request body"));
        }
    }
}

/// Status keys compared case-insensitively (`2xx` is `2XX`).
fn responses(ctx: &mut Ctx, op: &Op) {
    let name = op.name();
    let empty = Map::new();
    let br = obj(op.bop.get("responses")).unwrap_or(&empty);
    let hr = obj(op.hop.get("responses")).unwrap_or(&empty);
    let (bptr, hptr) = (op.bptr.push("responses"), op.hptr.push("responses"));
    let hkeys: BTreeMap<String, &String> = hr.keys().map(|k| (k.to_ascii_uppercase(), k)).collect();
    let bkeys: BTreeSet<String> = br.keys().map(|k| k.to_ascii_uppercase()).collect();
    for (bk, bresp) in br {
        let Some(hk) = hkeys.get(&bk.to_ascii_uppercase()) else {
            ctx.report("response-status-removed", &bptr.push(bk), &hptr, format!("{name}: response {bk} removed"));
            continue;
        };
        let (bresp, brp) = resolve(ctx.base, bresp, &bptr.push(bk));
        let (hresp, hrp) = resolve(ctx.head, &hr[hk.as_str()], &hptr.push(hk));
        let what = format!("{name}: response {hk}");
        content(ctx, bresp, &brp, hresp, &hrp, Dir::Response, &what);
        headers(ctx, bresp, &brp, hresp, &hrp, &what);
    }
    for hk in hr.keys() {
        if !bkeys.contains(&hk.to_ascii_uppercase()) {
            ctx.report("response-status-added", &bptr, &hptr.push(hk), format!("{name}: response {hk} added"));
        }
    }
}

fn headers(ctx: &mut Ctx, b: &Value, bptr: &Ptr, h: &Value, hptr: &Ptr, what: &str) {
    let empty = Map::new();
    let bh = obj(b.get("headers")).unwrap_or(&empty);
    let hh = obj(h.get("headers")).unwrap_or(&empty);
    let (bhp, hhp) = (bptr.push("headers"), hptr.push("headers"));
    let hkeys: BTreeMap<String, &String> = hh.keys().map(|k| (k.to_ascii_lowercase(), k)).collect();
    let bkeys: BTreeSet<String> = bh.keys().map(|k| k.to_ascii_lowercase()).collect();
    for (bk, bv) in bh {
        let Some(hk) = hkeys.get(&bk.to_ascii_lowercase()) else {
            ctx.report("response-header-removed", &bhp.push(bk), &hhp, format!("{what}: header {bk} removed"));
            continue;
        };
        let (bv, bvp) = resolve(ctx.base, bv, &bhp.push(bk));
        let (hv, hvp) = resolve(ctx.head, &hh[hk.as_str()], &hhp.push(hk));
        if let (Some(bs), Some(hs)) = (bv.get("schema"), hv.get("schema")) {
            ctx.scope = format!("{what}: header {hk}");
            schema::compare(ctx, bs, &bvp.push("schema"), hs, &hvp.push("schema"), Dir::Response, 0);
        }
    }
    for hk in hh.keys() {
        if !bkeys.contains(&hk.to_ascii_lowercase()) {
            ctx.report("response-header-added", &bhp, &hhp.push(hk), format!("{what}: header {hk} added"));
        }
    }
}

/// One security requirement: scheme name → scopes.
type Requirement = BTreeMap<String, BTreeSet<String>>;

/// The operation's effective requirements (its own `security`, else the
/// document's) and where they are written.
fn effective_security(doc: &Value, op: &Value, op_ptr: &Ptr) -> (Vec<Requirement>, Ptr) {
    let (list, ptr) = match op.get("security") {
        Some(s) => (s, op_ptr.push("security")),
        None => match doc.get("security") {
            Some(s) => (s, Ptr::root().push("security")),
            None => return (Vec::new(), op_ptr.clone()),
        },
    };
    let reqs = list
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_object)
        .map(|r| {
            r.iter()
                .map(|(k, v)| {
                    let scopes = v.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from);
                    (k.clone(), scopes.collect())
                })
                .collect()
        })
        .collect();
    (reqs, ptr)
}

fn security(ctx: &mut Ctx, op: &Op) {
    let name = op.name();
    let (breqs, bptr) = effective_security(ctx.base, op.bop, &op.bptr);
    let (hreqs, hptr) = effective_security(ctx.head, op.hop, &op.hptr);
    // No requirement, or an empty one among the alternatives, means anonymous calls are allowed.
    let anonymous = |reqs: &[Requirement]| reqs.is_empty() || reqs.iter().any(BTreeMap::is_empty);
    if anonymous(&breqs) && !anonymous(&hreqs) {
        ctx.report("security-added", &bptr, &hptr, format!("{name}: now requires authentication"));
        return;
    }
    if !anonymous(&breqs) && anonymous(&hreqs) {
        ctx.report("security-removed", &bptr, &hptr, format!("{name}: no longer requires authentication"));
        return;
    }
    let schemes = |r: &Requirement| r.keys().cloned().collect::<Vec<_>>();
    for (bi, b) in breqs.iter().enumerate() {
        if b.is_empty() {
            continue;
        }
        let Some((hi, h)) = hreqs.iter().enumerate().find(|(_, h)| schemes(h) == schemes(b)) else {
            ctx.report(
                "security-requirement-removed",
                &bptr.idx(bi),
                &hptr,
                format!("{name}: security requirement {} removed", schemes(b).join(" + ")),
            );
            continue;
        };
        for (scheme, bscopes) in b {
            let hscopes = &h[scheme];
            let (bp, hp) = (bptr.idx(bi).push(scheme), hptr.idx(hi).push(scheme));
            let added: Vec<_> = hscopes.difference(bscopes).cloned().collect();
            let removed: Vec<_> = bscopes.difference(hscopes).cloned().collect();
            if !added.is_empty() {
                let msg = format!("{name}: {scheme} now requires scope(s) {}", added.join(", "));
                ctx.report("operation-security-scope-added", &bp, &hp, msg);
            }
            if !removed.is_empty() {
                let msg = format!("{name}: {scheme} no longer requires scope(s) {}", removed.join(", "));
                ctx.report("operation-security-scope-removed", &bp, &hp, msg);
            }
        }
    }
    for (hi, h) in hreqs.iter().enumerate() {
        if !h.is_empty() && !breqs.iter().any(|b| schemes(b) == schemes(h)) {
            let msg = format!("{name}: security requirement {} added", schemes(h).join(" + "));
            ctx.report("security-requirement-added", &bptr, &hptr.idx(hi), msg);
        }
    }
}

fn security_schemes(ctx: &mut Ctx) {
    let root = Ptr::root().push("components").push("securitySchemes");
    let empty = Map::new();
    let (base, head) = (ctx.base, ctx.head);
    let bs = obj(base.pointer("/components/securitySchemes")).unwrap_or(&empty);
    let hs = obj(head.pointer("/components/securitySchemes")).unwrap_or(&empty);
    for (name, b) in bs {
        // A removed scheme shows up as the requirements naming it.
        let Some(h) = hs.get(name) else { continue };
        let (b, bp) = resolve(base, b, &root.push(name));
        let (h, hp) = resolve(head, h, &root.push(name));
        for field in ["type", "in", "name", "scheme"] {
            let lower = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_ascii_lowercase);
            // The HTTP scheme and `in` are case-insensitive; an apiKey's name is
            // a header name only sometimes, so it is compared exactly.
            let (bv, hv) = if field == "name" {
                (
                    b.get(field).and_then(Value::as_str).map(String::from),
                    h.get(field).and_then(Value::as_str).map(String::from),
                )
            } else {
                (lower(b.get(field)), lower(h.get(field)))
            };
            if bv != hv {
                let msg = format!(
                    "security scheme {name}: {field} {} became {}",
                    bv.as_deref().unwrap_or("(none)"),
                    hv.as_deref().unwrap_or("(none)")
                );
                ctx.report("security-scheme-changed", &bp.push(field), &hp.push(field), msg);
            }
        }
        let (Some(bflows), Some(hflows)) = (obj(b.get("flows")), obj(h.get("flows"))) else { continue };
        for (flow, bf) in bflows {
            let bfp = bp.push("flows").push(flow);
            let Some(hf) = hflows.get(flow) else {
                let msg = format!("security scheme {name}: flow {flow} removed");
                ctx.report("security-scheme-changed", &bfp, &hp.push("flows"), msg);
                continue;
            };
            let hfp = hp.push("flows").push(flow);
            let hscopes = obj(hf.get("scopes"));
            for scope in obj(bf.get("scopes")).into_iter().flat_map(|s| s.keys()) {
                if !hscopes.is_some_and(|h| h.contains_key(scope)) {
                    let msg = format!("security scheme {name}: flow {flow} no longer offers scope {scope}");
                    ctx.report(
                        "security-scheme-scope-removed",
                        &bfp.push("scopes").push(scope),
                        &hfp.push("scopes"),
                        msg,
                    );
                }
            }
        }
    }
}

/// How a run ends: 1 when a finding is at or above `fail_on`.
pub fn exit_code(findings: &[Finding], fail_on: Level) -> u8 {
    u8::from(findings.iter().any(|f| f.level >= fail_on))
}

/// `--fail-on`: the level from which a finding fails the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum FailOn {
    #[value(name = "ERR", alias = "err")]
    Err,
    #[value(name = "WARN", alias = "warn")]
    Warn,
}

impl From<FailOn> for Level {
    fn from(f: FailOn) -> Level {
        match f {
            FailOn::Err => Level::Err,
            FailOn::Warn => Level::Warn,
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The old document: a file, or a git `REV:PATH` (`origin/main:spec/openapi.yaml`).
    #[arg(required_unless_present = "rules")]
    pub base: Option<String>,
    /// The new document, the same way.
    #[arg(required_unless_present = "rules")]
    pub head: Option<String>,
    /// Print the rule table (id, level, why) and exit.
    #[arg(long)]
    pub rules: bool,
    /// How to print the findings (github: workflow annotations on HEAD's file).
    #[arg(long, value_enum, default_value = "text")]
    pub format: report::Format,
    /// Exit 1 when a finding is at or above this level.
    #[arg(long, value_enum, default_value = "ERR")]
    pub fail_on: FailOn,
}

/// Runs the command: prints the report and returns the exit status
/// (0 clean, 1 findings at or above `--fail-on`, 2 the documents could not be read).
pub fn cli(args: &Args) -> u8 {
    if args.rules {
        print!("{}", rules::table());
        return 0;
    }
    match run(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn run(args: &Args) -> Result<u8> {
    let (Some(b), Some(h)) = (&args.base, &args.head) else { bail!("BASE and HEAD are required") };
    let base = load(b).context("loading BASE")?;
    let head = load(h).context("loading HEAD")?;
    let findings = diff(&base.value, &head.value);
    let fail_on = Level::from(args.fail_on);
    let meta = report::Meta {
        base: &base.name,
        head: &head.name,
        head_file: &head.file,
        head_text: Some(&head.text),
        fail_on,
    };
    print!("{}", report::render(args.format, &findings, &meta));
    Ok(exit_code(&findings, fail_on))
}
