//! The response checker: `spec/openapi.yaml` read at run time into a list of
//! operations, and a validator with OpenAPI 3.0 semantics that reports every
//! mismatch as `operation status where: expected …, got …`.
//!
//! Size: about 430 lines of checker; the rest is its unit tests.

use std::{fmt, path::Path};

use anyhow::{Context, Result, bail};
use serde_json::{Map, Value};

pub use super::validate::{Direction, Problem, describe, escape, format_ok, short, short_str};

/// The methods an OpenAPI path item may hold, in the order we list them.
const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// `$ref` chains and schema nesting deeper than this are reported, not followed
/// (a self-referencing schema with no data under it would otherwise loop).
pub(super) const MAX_DEPTH: usize = 64;

/// The contract: the document plus an index of its operations.
pub struct Contract {
    doc: Value,
    ops: Vec<Operation>,
    codes: Vec<RegisteredCode>,
    base_path: String,
    field_format: Option<FieldFormat>,
}

/// One operation, with `$ref`s of parameters, bodies and responses resolved
/// (schemas keep theirs; the validator follows them).
#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    /// Where it is defined, e.g. `#/paths/~1users/post` (coverage names items by pointer).
    pub at: String,
    /// Upper case, e.g. `GET`.
    pub method: String,
    /// The path template, e.g. `/users/{id}`.
    pub path: String,
    pub parameters: Vec<Parameter>,
    /// The JSON request body schema, if the operation takes one.
    pub request_body: Option<Value>,
    /// The JSON pointer of that schema in the document (`""` without one).
    pub request_body_at: String,
    /// Its media type as declared (`application/merge-patch+json`), which
    /// requests carrying it are sent with.
    pub request_media: Option<String>,
    /// The header carrying the API key, when the operation is secured by one.
    pub auth_header: Option<String>,
    /// The scopes the requirement naming that header's scheme lists (roles, for an API key).
    pub scopes: Vec<String>,
    /// Documented responses in document order, keyed `200`, `4XX` or `default`.
    pub responses: Vec<(String, ResponseDef)>,
    /// A query parameter with `x-field-mask`: its name and the pointer to
    /// the objects whose members it selects (`*` = every array item).
    pub field_mask: Option<(String, String)>,
    /// The examples the JSON request body's media type gives (`example`,
    /// then each of `examples`), for a scenario that prefers them.
    pub request_examples: Vec<Value>,
}

#[derive(Debug, Clone)]
pub struct Parameter {
    pub name: String,
    /// Where it is defined (its component when it is a `$ref`).
    pub at: String,
    /// `path`, `query`, `header` or `cookie`.
    pub location: String,
    pub required: bool,
    pub schema: Value,
    /// `explode`, with OpenAPI's default (true for `form`, the default style
    /// of query parameters): an array goes as repeated keys, else comma-joined.
    pub explode: bool,
    /// The parameter's own `example`, then each of its `examples`.
    pub examples: Vec<Value>,
}

/// What one documented status may carry: media types (without parameters,
/// lower case) and their schemas. Empty means "no body".
#[derive(Debug, Clone, Default)]
pub struct ResponseDef {
    pub content: Vec<(String, Option<Value>)>,
    /// The JSON pointer of each schema of `content`, in the same order.
    pub content_at: Vec<String>,
    /// Its documented headers (`Content-Type` is never one: OpenAPI ignores it there).
    pub headers: Vec<HeaderDef>,
}

/// A documented response header.
#[derive(Debug, Clone)]
pub struct HeaderDef {
    pub name: String,
    /// Where it is defined (its component when it is a `$ref`).
    pub at: String,
    pub required: bool,
    pub schema: Option<Value>,
}

/// An entry of the spec's `x-error-codes` registry.
#[derive(Debug, Clone)]
pub struct RegisteredCode {
    pub name: String,
    pub code: i64,
    pub status: u16,
}

/// A response as it came off the wire.
#[derive(Debug, Clone, Copy)]
pub struct Response<'a> {
    pub status: u16,
    pub content_type: Option<&'a str>,
    pub body: &'a [u8],
    /// Every header, `(name, value)`; names in any case.
    pub headers: &'a [(String, String)],
    /// The request's query string (without `?`): a field mask in it
    /// decides which required members may be absent.
    pub query: &'a str,
}

/// What a finding holds a deployment to. A deployment of the spec by
/// someone else must pass every `Spec` check; `Convention` findings are about
/// what this project's server does on top, checked only where the spec
/// declares the convention (an extension such as `x-error-codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// The documented status, media type, body schema, required headers.
    Spec,
    /// A registry code, the naming of a failing field, an expected value.
    Convention,
}

/// How `field` inside a validation error names the failing member:
/// `x-error-field-format` at the top level of the spec, or
/// `--error-field-format` for a spec that does not declare it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldFormat {
    /// `email`, `cc[0]`, `address.city` (this project's server).
    JsonName,
    /// `/email`, `/cc/0`, `/address/city` (RFC 6901).
    JsonPointer,
}

impl FieldFormat {
    pub fn parse(s: &str) -> Result<FieldFormat, String> {
        match s {
            "json-name" => Ok(FieldFormat::JsonName),
            "json-pointer" => Ok(FieldFormat::JsonPointer),
            other => Err(format!("expected json-name or json-pointer, got {other:?}")),
        }
    }

    /// `name` (in json-name form, as the generator and scenario spell
    /// fields) as this format writes it.
    pub fn render(self, name: &str) -> String {
        match self {
            FieldFormat::JsonName => name.to_owned(),
            FieldFormat::JsonPointer => {
                let mut out = String::new();
                for part in name.split('.') {
                    let (head, indexes) = part.split_once('[').map_or((part, ""), |(h, rest)| (h, rest));
                    out.push('/');
                    out.push_str(&head.replace('~', "~0").replace('/', "~1"));
                    for i in indexes.split('[').filter(|i| !i.is_empty()) {
                        out.push('/');
                        out.push_str(i.trim_end_matches(']'));
                    }
                }
                out
            }
        }
    }
}

/// One way a response breaks the contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub class: Class,
    pub operation: String,
    pub status: u16,
    /// `status`, `Content-Type`, or a JSON pointer into the body (`""` = the body itself).
    pub at: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.at.is_empty() { "(body)" } else { &self.at };
        write!(f, "{} {} {at}: expected {}, got {}", self.operation, self.status, self.expected, self.actual)
    }
}

impl Contract {
    /// The workspace's `spec/openapi.yaml`.
    pub fn workspace() -> Result<Contract> {
        Contract::load(&crate::workspace_root().join("spec/openapi.yaml"))
    }

    pub fn load(path: &Path) -> Result<Contract> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Contract::from_yaml(&text).with_context(|| format!("reading the contract {}", path.display()))
    }

    /// Parses an OpenAPI 3.0 document (YAML or JSON).
    pub fn from_yaml(text: &str) -> Result<Contract> {
        // serde_json's maps are sorted; the YAML mapping keeps document order,
        // which the coverage table follows.
        let yaml: serde_yaml::Value = serde_yaml::from_str(text).context("parsing YAML")?;
        let doc = serde_json::to_value(&yaml).context("converting YAML to JSON")?;
        let mut order = Vec::new();
        if let Some(paths) = yaml.get("paths").and_then(serde_yaml::Value::as_mapping) {
            for (path, item) in paths {
                let (Some(path), Some(item)) = (path.as_str(), item.as_mapping()) else { continue };
                for (method, _) in item {
                    if let Some(m) = method.as_str().filter(|m| METHODS.contains(m)) {
                        order.push((path.to_owned(), m.to_owned()));
                    }
                }
            }
        }
        let field_format = match doc.get("x-error-field-format") {
            None => None,
            Some(v) => Some(
                v.as_str()
                    .ok_or_else(|| "not a string".to_owned())
                    .and_then(FieldFormat::parse)
                    .map_err(|e| anyhow::anyhow!("/x-error-field-format: {e}"))?,
            ),
        };
        let mut contract =
            Contract { ops: Vec::new(), codes: registry(&doc)?, base_path: base_path(&doc), field_format, doc };
        for (path, method) in order {
            let op = contract.operation_at(&path, &method)?;
            contract.ops.push(op);
        }
        Ok(contract)
    }

    fn operation_at(&self, path: &str, method: &str) -> Result<Operation> {
        let item = &self.doc["paths"][path];
        let op_at = format!("#/paths/{}/{method}", escape(path));
        let op = self.resolve(&item[method]);
        // An operation without an operationId (allowed by OpenAPI) is named
        // by its method and path, which reports read as well.
        let id = match op.get("operationId").and_then(Value::as_str) {
            Some(id) => id.to_owned(),
            None => format!("{} {path}", method.to_uppercase()),
        };
        // Path-level parameters apply unless the operation redefines them.
        let mut parameters: Vec<Parameter> = Vec::new();
        let mut field_mask = None;
        let own = op.get("parameters").and_then(Value::as_array).into_iter().flatten().enumerate();
        let own = own.map(|(i, p)| (format!("{op_at}/parameters/{i}"), p));
        let shared = item.get("parameters").and_then(Value::as_array).into_iter().flatten().enumerate();
        let shared = shared.map(|(i, p)| (format!("#/paths/{}/parameters/{i}", escape(path)), p));
        for (at, p) in own.chain(shared) {
            let (at, p) = self.resolve_at(p, at);
            let name = p.get("name").and_then(Value::as_str).unwrap_or_default().to_owned();
            let location = p.get("in").and_then(Value::as_str).unwrap_or_default().to_owned();
            if parameters.iter().any(|q| q.name == name && q.location == location) {
                continue;
            }
            if let Some(at) = p.get("x-field-mask").and_then(Value::as_str).filter(|_| location == "query") {
                field_mask = Some((name.clone(), at.to_owned()));
            }
            let form = p
                .get("style")
                .and_then(Value::as_str)
                .map_or(location == "query" || location == "cookie", |s| s == "form");
            parameters.push(Parameter {
                examples: self.examples(p),
                at,
                explode: p.get("explode").and_then(Value::as_bool).unwrap_or(form),
                required: p.get("required").and_then(Value::as_bool).unwrap_or(location == "path"),
                schema: p.get("schema").cloned().unwrap_or(Value::Object(Map::new())),
                name,
                location,
            });
        }
        let body_def = op.get("requestBody").map(|b| self.resolve_at(b, format!("{op_at}/requestBody")));
        let json_body = body_def.as_ref().and_then(|(at, b)| {
            let content = b.get("content").and_then(Value::as_object)?;
            content
                .iter()
                .find(|(mt, _)| is_json(mt))
                .map(|(mt, media)| (format!("{at}/content/{}", escape(mt)), mt, media))
        });
        let request_media = json_body.as_ref().map(|(_, mt, _)| (*mt).clone());
        let request_examples = json_body.as_ref().map(|(_, _, media)| self.examples(media)).unwrap_or_default();
        let request_body = json_body.as_ref().and_then(|(_, _, media)| media.get("schema").cloned());
        let request_body_at = json_body.map(|(at, _, _)| format!("{at}/schema")).unwrap_or_default();
        let security = op.get("security").or_else(|| self.doc.get("security"));
        let keyed = security.and_then(Value::as_array).and_then(|reqs| {
            reqs.iter().filter_map(Value::as_object).flat_map(|r| r.iter()).find_map(|(scheme, scopes)| {
                let s = self.resolve(&self.doc["components"]["securitySchemes"][scheme]);
                let header =
                    s.get("type") == Some(&Value::from("apiKey")) && s.get("in") == Some(&Value::from("header"));
                let scopes: Vec<String> =
                    scopes.as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect();
                if header { s.get("name").and_then(Value::as_str).map(|n| (n.to_owned(), scopes)) } else { None }
            })
        });
        let (auth_header, scopes) = match keyed {
            Some((header, scopes)) => (Some(header), scopes),
            None => (None, Vec::new()),
        };
        let mut responses = Vec::new();
        for (status, r) in op.get("responses").and_then(Value::as_object).into_iter().flatten() {
            let (r_at, r) = self.resolve_at(r, format!("{op_at}/responses/{}", escape(status)));
            let media = r.get("content").and_then(Value::as_object).into_iter().flatten();
            let content = media.clone().map(|(mt, media)| (media_type(mt), media.get("schema").cloned())).collect();
            let content_at = media.map(|(mt, _)| format!("{r_at}/content/{}/schema", escape(mt))).collect();
            let headers = r
                .get("headers")
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(name, _)| !name.eq_ignore_ascii_case("content-type"))
                .map(|(name, h)| {
                    let (at, h) = self.resolve_at(h, format!("{r_at}/headers/{}", escape(name)));
                    HeaderDef {
                        at,
                        name: name.clone(),
                        required: h.get("required").and_then(Value::as_bool).unwrap_or(false),
                        schema: h.get("schema").cloned(),
                    }
                })
                .collect();
            responses.push((status.clone(), ResponseDef { content, content_at, headers }));
        }
        responses.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Operation {
            id,
            request_examples,
            at: op_at,
            request_body_at,
            method: method.to_uppercase(),
            path: path.to_owned(),
            parameters,
            request_body,
            request_media,
            auth_header,
            scopes,
            responses,
            field_mask,
        })
    }

    /// Follows link `name` of `op`'s `status` response for a response
    /// `body`: the linked operation and each parameter's value, from its
    /// `$response.body#/…` expression (the only kind this evaluates; an
    /// other expression or a pointer that finds nothing is an error).
    pub fn link(&self, op: &str, status: &str, name: &str, body: &Value) -> Result<(String, Vec<(String, Value)>)> {
        let o = self.operation(op).with_context(|| format!("no operation {op}"))?;
        let seg = |s: &str| s.replace('~', "~0").replace('/', "~1");
        let at = format!("/paths/{}/{}/responses/{status}/links/{}", seg(&o.path), o.method.to_lowercase(), seg(name));
        let link = self.doc.pointer(&at).with_context(|| format!("{op} {status} has no link {name:?}"))?;
        let target = link
            .get("operationId")
            .and_then(Value::as_str)
            .with_context(|| format!("link {name:?} names no operationId"))?;
        let mut params = Vec::new();
        for (p, expr) in link.get("parameters").and_then(Value::as_object).into_iter().flatten() {
            let pointer = expr.as_str().and_then(|e| e.strip_prefix("$response.body#")).with_context(|| {
                format!("link {name:?} parameter {p}: only $response.body#/… is evaluated, got {expr}")
            })?;
            let v = body
                .pointer(pointer)
                .with_context(|| format!("link {name:?} parameter {p}: {pointer} is not in the body"))?;
            params.push((p.clone(), v.clone()));
        }
        Ok((target.to_owned(), params))
    }

    /// `example`, then the `value` of each of `examples` (references
    /// followed), of a parameter or media type object.
    fn examples(&self, object: &Value) -> Vec<Value> {
        let mut out: Vec<Value> = object.get("example").cloned().into_iter().collect();
        for e in object.get("examples").and_then(Value::as_object).into_iter().flat_map(|m| m.values()) {
            out.extend(self.resolve(e).get("value").cloned());
        }
        out
    }

    /// The whole document, for what the operation index does not carry
    /// (security schemes, non-JSON request bodies).
    pub fn doc(&self) -> &Value {
        &self.doc
    }

    pub fn operations(&self) -> &[Operation] {
        &self.ops
    }

    pub fn operation(&self, id: &str) -> Option<&Operation> {
        self.ops.iter().find(|o| o.id == id)
    }

    /// The path of the first `servers` URL (`/api/v1`), or `""`.
    pub fn base_path(&self) -> &str {
        &self.base_path
    }

    /// The operation serving `method path`. `path` is a concrete path, with or
    /// without the spec's base path and query string; literal segments win
    /// over templated ones (`/tasks/email` before `/tasks/{task_id}`).
    pub fn find(&self, method: &str, path: &str) -> Option<&Operation> {
        let path = path.split('?').next().unwrap_or(path);
        let path = match path.strip_prefix(self.base_path.as_str()) {
            Some(rest) if !self.base_path.is_empty() && (rest.is_empty() || rest.starts_with('/')) => rest,
            _ => path,
        };
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        self.ops
            .iter()
            .filter(|o| o.method.eq_ignore_ascii_case(method))
            .filter_map(|o| {
                let t: Vec<&str> = o.path.trim_matches('/').split('/').collect();
                if t.len() != segments.len() {
                    return None;
                }
                let mut literal = 0;
                for (t, s) in t.iter().zip(&segments) {
                    if t.starts_with('{') && t.ends_with('}') {
                        if s.is_empty() {
                            return None;
                        }
                    } else if t == s {
                        literal += 1;
                    } else {
                        return None;
                    }
                }
                Some((literal, o))
            })
            .max_by_key(|(literal, _)| *literal)
            .map(|(_, o)| o)
    }

    /// The spec's `x-error-field-format`, if it declares one.
    pub fn field_format(&self) -> Option<FieldFormat> {
        self.field_format
    }

    /// The `x-error-codes` registry, in document order.
    pub fn error_codes(&self) -> &[RegisteredCode] {
        &self.codes
    }

    /// The registry entry named `name` (e.g. `MissingToken`).
    pub fn error_code(&self, name: &str) -> Option<&RegisteredCode> {
        self.codes.iter().find(|c| c.name == name)
    }

    /// Follows `$ref`s (local JSON pointers) until a non-reference value.
    pub fn resolve<'a>(&'a self, v: &'a Value) -> &'a Value {
        let mut cur = v;
        for _ in 0..MAX_DEPTH {
            match cur.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.pointer(r) {
                    Some(target) => cur = target,
                    None => return &Value::Null,
                },
                None => return cur,
            }
        }
        cur
    }

    /// [`Contract::resolve`], also giving the pointer of what it lands on
    /// (`at` itself when `v` is no reference), so shared components are
    /// named where they are defined.
    pub fn resolve_at<'a>(&'a self, v: &'a Value, at: String) -> (String, &'a Value) {
        let (mut at, mut cur) = (at, v);
        for _ in 0..MAX_DEPTH {
            match cur.get("$ref").and_then(Value::as_str) {
                Some(r) => match self.pointer(r) {
                    Some(target) => (at, cur) = (r.to_owned(), target),
                    None => return (r.to_owned(), &Value::Null),
                },
                None => break,
            }
        }
        (at, cur)
    }

    pub(super) fn pointer(&self, reference: &str) -> Option<&Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    /// Checks a response of the operation named `operation_id`.
    pub fn check_id(&self, operation_id: &str, resp: Response<'_>) -> Result<(), Vec<Mismatch>> {
        match self.operation(operation_id) {
            Some(op) => self.check(op, resp),
            None => Err(vec![Mismatch {
                class: Class::Spec,
                operation: operation_id.to_owned(),
                status: resp.status,
                at: "operation".into(),
                expected: "an operationId of the contract".into(),
                actual: format!("{operation_id:?}"),
            }]),
        }
    }

    /// Checks a response to `method path` (see [`Contract::find`]).
    pub fn check_request(&self, method: &str, path: &str, resp: Response<'_>) -> Result<(), Vec<Mismatch>> {
        match self.find(method, path) {
            Some(op) => self.check(op, resp),
            None => Err(vec![Mismatch {
                class: Class::Spec,
                operation: format!("{method} {path}"),
                status: resp.status,
                at: "operation".into(),
                expected: "a path and method of the contract".into(),
                actual: "no operation matches".into(),
            }]),
        }
    }

    /// Status, Content-Type and body of `resp` against `op`'s documentation.
    pub fn check(&self, op: &Operation, resp: Response<'_>) -> Result<(), Vec<Mismatch>> {
        let mismatch = |at: &str, expected: String, actual: String| Mismatch {
            class: Class::Spec,
            operation: op.id.clone(),
            status: resp.status,
            at: at.to_owned(),
            expected,
            actual,
        };
        let Some(def) = response_for(op, resp.status) else {
            let documented: Vec<&str> = op.responses.iter().map(|(s, _)| s.as_str()).collect();
            return Err(vec![mismatch(
                "status",
                format!("a documented status ({})", documented.join(", ")),
                format!("{} (not documented for {})", resp.status, op.id),
            )]);
        };
        let mut out = Vec::new();
        self.check_headers(def, resp.headers, &mut |at, e, a| out.push(mismatch(at, e, a)));
        if def.content.is_empty() {
            if !resp.body.is_empty() {
                out.push(mismatch("", "no body".into(), describe_bytes(resp.body)));
            }
            return if out.is_empty() { Ok(()) } else { Err(out) };
        }
        let actual_mt = resp.content_type.map(media_type);
        let documented = def.content.iter().find(|(mt, _)| actual_mt.as_deref().is_some_and(|a| media_matches(mt, a)));
        let (mt, schema) = match documented {
            Some((mt, schema)) => (mt.clone(), schema.clone()),
            None => {
                let names: Vec<&str> = def.content.iter().map(|(mt, _)| mt.as_str()).collect();
                out.push(mismatch(
                    "Content-Type",
                    names.join(" or "),
                    resp.content_type.map_or_else(|| "no Content-Type".to_owned(), str::to_owned),
                ));
                // Still check the body against the one documented shape, so a
                // plain-text error is reported for what it is.
                match def.content.as_slice() {
                    [(mt, schema)] => (mt.clone(), schema.clone()),
                    _ => return Err(out),
                }
            }
        };
        if let Some(schema) = schema.filter(|_| is_json(&mt)) {
            match serde_json::from_slice::<Value>(resp.body) {
                Ok(body) => {
                    let mask = if resp.status < 400 { field_mask(op, resp.query, &body) } else { None };
                    for p in self.validate(&schema, &body, Direction::Response) {
                        if mask.as_ref().is_some_and(|m| m.excuses(&p)) {
                            continue;
                        }
                        out.push(mismatch(&p.pointer, p.expected, p.actual));
                    }
                    if let Some(m) = &mask {
                        // Members beyond the mask break an extension, not the schema.
                        m.check(&mut |at, e, a| out.push(Mismatch { class: Class::Convention, ..mismatch(at, e, a) }));
                    }
                    // The registry is an extension: what it pairs goes beyond the schema.
                    self.check_error_code(resp.status, &body, &mut |at, e, a| {
                        out.push(Mismatch { class: Class::Convention, ..mismatch(at, e, a) });
                    });
                }
                Err(e) => {
                    out.push(mismatch("", "a JSON document".into(), format!("{} ({e})", describe_bytes(resp.body))))
                }
            }
        }
        if out.is_empty() { Ok(()) } else { Err(out) }
    }

    /// Each documented header: present when required, and its value valid
    /// against its schema (`simple` style: a scalar as its text).
    fn check_headers(&self, def: &ResponseDef, got: &[(String, String)], report: &mut dyn FnMut(&str, String, String)) {
        for h in &def.headers {
            let at = format!("header {}", h.name);
            let Some((_, value)) = got.iter().find(|(n, _)| n.eq_ignore_ascii_case(&h.name)) else {
                if h.required {
                    report(&at, "the header (required)".into(), "no such header".into());
                }
                continue;
            };
            let Some(schema) = &h.schema else { continue };
            let numeric = matches!(
                self.resolve(schema).get("type").and_then(Value::as_str),
                Some("integer" | "number" | "boolean")
            );
            let parsed = if numeric { serde_json::from_str::<Value>(value).ok() } else { None };
            let value = parsed.unwrap_or_else(|| Value::String(value.clone()));
            for p in self.validate(schema, &value, Direction::Response) {
                report(&format!("{at}{}", p.pointer), p.expected, p.actual);
            }
        }
    }

    /// With an `x-error-codes` registry, an error envelope's `code` must be
    /// registered for the status it came with.
    fn check_error_code(&self, status: u16, body: &Value, report: &mut dyn FnMut(&str, String, String)) {
        if self.codes.is_empty() || status < 400 {
            return;
        }
        let Some(code) = body.get("code").and_then(Value::as_i64) else { return };
        if self.codes.iter().any(|c| c.code == code && c.status == status) {
            return;
        }
        let allowed: Vec<String> =
            self.codes.iter().filter(|c| c.status == status).map(|c| format!("{} {}", c.code, c.name)).collect();
        let actual = match self.codes.iter().find(|c| c.code == code) {
            Some(c) => format!("{code} ({} is registered for {})", c.name, c.status),
            None => format!("{code} (not in x-error-codes)"),
        };
        report("/code", format!("an x-error-codes code for status {status} [{}]", allowed.join(", ")), actual);
    }
}

/// The documented response for `status`: exact, then `4XX`-style, then `default`.
pub(crate) fn response_for(op: &Operation, status: u16) -> Option<&ResponseDef> {
    let exact = status.to_string();
    let range = format!("{}XX", status / 100);
    let find = |key: &str| op.responses.iter().find(|(s, _)| s.eq_ignore_ascii_case(key)).map(|(_, d)| d);
    find(&exact).or_else(|| find(&range)).or_else(|| find("default"))
}

fn registry(doc: &Value) -> Result<Vec<RegisteredCode>> {
    let mut out = Vec::new();
    for (i, e) in doc.get("x-error-codes").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let name = e.get("name").and_then(Value::as_str);
        let code = e.get("code").and_then(Value::as_i64);
        let status = e.get("status").and_then(Value::as_u64).and_then(|s| u16::try_from(s).ok());
        match (name, code, status) {
            (Some(name), Some(code), Some(status)) => out.push(RegisteredCode { name: name.to_owned(), code, status }),
            _ => bail!("/x-error-codes/{i}: expected name, code and status"),
        }
    }
    Ok(out)
}

fn base_path(doc: &Value) -> String {
    let url = doc.pointer("/servers/0/url").and_then(Value::as_str).unwrap_or("");
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    let path = if url.contains("://") { after_scheme.find('/').map_or("", |i| &after_scheme[i..]) } else { url };
    path.trim_end_matches('/').to_owned()
}

/// `application/json; charset=utf-8` → `application/json`.
pub fn media_type(header: &str) -> String {
    header.split(';').next().unwrap_or(header).trim().to_ascii_lowercase()
}

pub(crate) fn media_matches(documented: &str, actual: &str) -> bool {
    documented == actual
        || documented == "*/*"
        || documented.strip_suffix("/*").is_some_and(|major| actual.split('/').next() == Some(major))
}

pub fn is_json(mt: &str) -> bool {
    let mt = media_type(mt);
    mt == "application/json" || mt.ends_with("+json")
}

fn describe_bytes(body: &[u8]) -> String {
    if body.is_empty() {
        return "an empty body".into();
    }
    let text = String::from_utf8_lossy(body);
    format!("text {}", short_str(&text))
}

/// A request's field mask applied to its response body: the masked
/// objects' pointers and the names asked for.
struct AppliedMask {
    names: Vec<String>,
    objects: Vec<(String, Map<String, Value>)>,
}

impl AppliedMask {
    /// A required member not asked for is absent by design.
    fn excuses(&self, p: &Problem) -> bool {
        p.expected == "the required property"
            && self.objects.iter().any(|(at, _)| {
                p.pointer
                    .strip_prefix(at.as_str())
                    .and_then(|rest| rest.strip_prefix('/'))
                    .is_some_and(|name| !name.contains('/') && !self.names.iter().any(|n| escape(n) == name))
            })
    }

    /// A member not asked for must not be sent.
    fn check(&self, report: &mut dyn FnMut(&str, String, String)) {
        for (at, object) in &self.objects {
            for (k, v) in object {
                if !self.names.contains(k) {
                    report(
                        &format!("{at}/{}", escape(k)),
                        format!("only the requested fields ({}), by x-field-mask", self.names.join(", ")),
                        short(v),
                    );
                }
            }
        }
    }
}

/// The mask of `op` named in `query` (`fields=a,b` or `fields=a&fields=b`),
/// with the objects it selects in `body`.
fn field_mask(op: &Operation, query: &str, body: &Value) -> Option<AppliedMask> {
    let (param, at) = op.field_mask.as_ref()?;
    let mut names: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        if k == param.as_str() {
            names.extend(v.split(',').map(str::to_owned));
        }
    }
    if names.is_empty() {
        return None;
    }
    let mut objects = Vec::new();
    let steps: Vec<String> = at.split('/').skip(1).map(|s| s.replace("~1", "/").replace("~0", "~")).collect();
    select(body, "", &steps, &mut objects);
    Some(AppliedMask { names, objects })
}

fn select(v: &Value, ptr: &str, steps: &[String], out: &mut Vec<(String, Map<String, Value>)>) {
    match steps.split_first() {
        None => {
            if let Value::Object(m) = v {
                out.push((ptr.to_owned(), m.clone()));
            }
        }
        Some((s, rest)) if s == "*" => {
            for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                select(item, &format!("{ptr}/{i}"), rest, out);
            }
        }
        Some((s, rest)) => {
            if let Some(child) = v.get(s.as_str()) {
                select(child, &format!("{ptr}/{}", escape(s)), rest, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    const SPEC: &str = include_str!("../../../spec/openapi.yaml");

    #[test]
    fn links_are_followed_by_their_runtime_expressions() {
        let c = Contract::from_yaml(SPEC).unwrap();
        let body = json!({"code": 0, "data": {"id": 7}});
        let (to, params) = c.link("createUser", "200", "DeleteUser", &body).unwrap();
        assert_eq!((to.as_str(), params), ("deleteUser", vec![("id".to_owned(), json!(7))]));
        // A body the expression finds nothing in, and a link that is not there.
        assert!(c.link("createUser", "200", "GetUserById", &json!({"data": {}})).is_err());
        assert!(c.link("createUser", "200", "Nope", &body).is_err());
    }

    fn contract() -> Contract {
        Contract::from_yaml(SPEC).unwrap()
    }

    fn user() -> Value {
        json!({"id": 7, "username": "alice", "email": "a@example.com", "status": "active",
               "created_at": "2025-11-12T16:00:00+08:00", "updated_at": "2025-11-12T08:00:00Z", "last_login_at": null})
    }

    fn ok(data: Value) -> Value {
        json!({"code": 0, "msg": "success", "data": data, "timestamp": "2025-11-12T16:00:00.123Z"})
    }

    /// The mismatches of a JSON response, one formatted line each.
    fn check(op: &str, status: u16, body: &Value) -> Vec<String> {
        let bytes = serde_json::to_vec(body).unwrap();
        // Every response documenting an ETag gets a valid one; the header
        // checks have their own test.
        let headers = [("ETag".to_owned(), "\"v1\"".to_owned())];
        let resp = Response {
            status,
            content_type: Some("application/json; charset=utf-8"),
            body: &bytes,
            headers: &headers,
            query: "",
        };
        match contract().check_id(op, resp) {
            Ok(()) => vec![],
            Err(m) => m.iter().map(ToString::to_string).collect(),
        }
    }

    fn check_headers(op: &str, status: u16, body: Option<&Value>, headers: &[(&str, &str)]) -> Vec<String> {
        let bytes = body.map(|b| serde_json::to_vec(b).unwrap()).unwrap_or_default();
        let headers: Vec<(String, String)> = headers.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect();
        let content_type = body.map(|_| "application/json");
        let resp = Response { status, content_type, body: &bytes, headers: &headers, query: "" };
        match contract().check_id(op, resp) {
            Ok(()) => vec![],
            Err(m) => m.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn documented_response_headers_are_checked() {
        let body = ok(user());
        assert_eq!(check_headers("getUserById", 200, Some(&body), &[("ETag", "\"v3\"")]), Vec::<String>::new());
        let missing = check_headers("getUserById", 200, Some(&body), &[]);
        assert!(missing.len() == 1 && missing[0].contains("header ETag"), "{missing:?}");
        let malformed = check_headers("getUserById", 200, Some(&body), &[("etag", "v3")]);
        assert!(malformed.len() == 1 && malformed[0].contains("header ETag"), "{malformed:?}");
        // A bodiless 304 carries only its ETag.
        assert_eq!(check_headers("getUserById", 304, None, &[("ETag", "\"v3\"")]), Vec::<String>::new());
        assert_eq!(check_headers("getUserById", 304, None, &[]).len(), 1);
    }

    #[test]
    fn conforming_responses_pass() {
        assert_eq!(check("createUser", 200, &ok(user())), Vec::<String>::new());
        assert_eq!(
            check("getUserById", 404, &json!({"code": 1003, "msg": "用户不存在", "timestamp": "2025-11-12T16:00:00Z"})),
            Vec::<String>::new()
        );
        let list = json!({"users": [user()], "page": 1, "page_size": 20, "total": 1, "total_pages": 1});
        assert_eq!(check("listUsers", 200, &ok(list)), Vec::<String>::new());
        let bad_request = json!({"code": 1001, "msg": "参数验证失败", "data": {"errors": [{"field": "cc[0]", "message": "x"}]}, "timestamp": "2025-11-12T16:00:00Z"});
        assert_eq!(check("submitEmailTask", 400, &bad_request), Vec::<String>::new());
        assert_eq!(
            check("healthCheck", 503, &json!({"status": "degraded", "postgres": "down", "redis": "up", "error": "x"})),
            Vec::<String>::new()
        );
        // deleteUser's `data` is optional: absent is fine.
        assert_eq!(
            check("deleteUser", 200, &json!({"code": 0, "msg": "success", "timestamp": "2025-11-12T16:00:00Z"})),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_wrong_enum_value_reads_like_a_diff() {
        let mut u = user();
        u["status"] = json!("enabled");
        assert_eq!(
            check("createUser", 200, &ok(u)),
            [r#"createUser 200 /data/status: expected one of ["active","inactive","suspended"], got "enabled""#]
        );
    }

    #[test]
    fn a_renamed_field_is_missing_and_named() {
        let mut u = user();
        let status = u.as_object_mut().unwrap().remove("status").unwrap();
        u["state"] = status;
        assert_eq!(
            check("getUserById", 200, &ok(u)),
            [
                "getUserById 200 /data/status: expected the required property, got nothing (undocumented properties present: state)"
            ]
        );
    }

    #[test]
    fn wrong_types_are_reported_with_the_actual_type() {
        let mut u = user();
        u["id"] = json!("7");
        assert_eq!(check("updateUser", 200, &ok(u)), ["updateUser 200 /data/id: expected integer, got string \"7\""]);
        // 1.0 is a number, not an integer.
        let mut u = user();
        u["id"] = json!(7.0);
        assert_eq!(check("updateUser", 200, &ok(u)), ["updateUser 200 /data/id: expected integer, got number 7.0"]);
        let list = json!({"users": {}, "page": 1, "page_size": 20, "total": 1, "total_pages": 1});
        assert_eq!(check("listUsers", 200, &ok(list)), ["listUsers 200 /data/users: expected array, got object {}"]);
    }

    #[test]
    fn an_undocumented_status_is_reported() {
        let body = json!({"code": 1003, "msg": "用户不存在", "timestamp": "2025-11-12T16:00:00Z"});
        assert_eq!(
            check("createUser", 404, &body),
            [
                "createUser 404 status: expected a documented status (200, 400, 401, 403, 409, 431, 500), got 404 (not documented for createUser)"
            ]
        );
    }

    #[test]
    fn a_plain_text_error_is_reported_twice() {
        let resp = Response {
            status: 500,
            content_type: Some("text/plain; charset=utf-8"),
            body: b"Internal Server Error",
            headers: &[],
            query: "",
        };
        let got: Vec<String> =
            contract().check_id("listUsers", resp).unwrap_err().iter().map(ToString::to_string).collect();
        assert_eq!(got.len(), 2, "{got:#?}");
        assert_eq!(got[0], "listUsers 500 Content-Type: expected application/json, got text/plain; charset=utf-8");
        assert!(
            got[1].starts_with(r#"listUsers 500 (body): expected a JSON document, got text "Internal Server Error""#),
            "{}",
            got[1]
        );
    }

    #[test]
    fn null_where_not_nullable() {
        let mut u = user();
        u["created_at"] = Value::Null;
        assert_eq!(check("createUser", 200, &ok(u)), ["createUser 200 /data/created_at: expected string, got null"]);
        // deleteUser's `data` is a non-nullable object: null is not "no data".
        let body = json!({"code": 0, "msg": "success", "data": null, "timestamp": "2025-11-12T16:00:00Z"});
        assert_eq!(check("deleteUser", 200, &body), ["deleteUser 200 /data: expected object, got null"]);
    }

    #[test]
    fn bad_dates_and_times() {
        for bad in ["2025-11-12 16:00:00Z", "2025-11-12T25:00:00Z", "2025-11-12T16:00:00", "yesterday"] {
            let mut u = user();
            u["updated_at"] = json!(bad);
            assert_eq!(
                check("createUser", 200, &ok(u)),
                [format!("createUser 200 /data/updated_at: expected a string in date-time format, got {}", json!(bad))],
            );
        }
        let c = contract();
        let sync = json!({"$ref": "#/components/schemas/SyncTaskRequest"});
        let good = json!({"sync_type": "sim_status", "start_date": "2024-02-29", "end_date": "2025-11-12"});
        assert_eq!(c.validate(&sync, &good, Direction::Request), vec![]);
        let bad = json!({"sync_type": "sim_status", "start_date": "2025-02-29", "end_date": "2025-11-12"});
        let problems: Vec<String> =
            c.validate(&sync, &bad, Direction::Request).iter().map(ToString::to_string).collect();
        assert_eq!(problems, [r#"/start_date: expected a string in date format, got "2025-02-29""#]);
    }

    #[test]
    fn formats_lengths_patterns_ranges_items() {
        let c = contract();
        let task = json!({"task_id": "550e8400-e29b-41d4-a716-44665544000", "queue": "default"});
        assert_eq!(
            check("submitSyncTask", 200, &ok(task)),
            [
                r#"submitSyncTask 200 /data/task_id: expected a string in uuid format, got "550e8400-e29b-41d4-a716-44665544000""#
            ]
        );
        let create = json!({"$ref": "#/components/schemas/CreateUserRequest"});
        let body = json!({"username": "a!", "email": "nope", "password": "short"});
        let problems: Vec<String> =
            c.validate(&create, &body, Direction::Request).iter().map(ToString::to_string).collect();
        assert_eq!(
            problems,
            [
                r#"/email: expected a string in email format, got "nope""#,
                r#"/password: expected at least 8 characters, got 5 ("short")"#,
                r#"/username: expected at least 3 characters, got 2 ("a!")"#,
                r#"/username: expected a string matching "^[a-zA-Z0-9_]+$", got "a!""#,
            ]
        );
        let sync = json!({"$ref": "#/components/schemas/SyncTaskRequest"});
        let body = json!({"sync_type": "sim_status", "start_date": "2025-01-01", "end_date": "2025-01-01", "batch_size": 1001});
        let problems: Vec<String> =
            c.validate(&sync, &body, Direction::Request).iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["/batch_size: expected a number ≤ 1000, got 1001"]);
        let email = json!({"$ref": "#/components/schemas/EmailTaskRequest"});
        let body = json!({"to": "a@example.com", "subject": "s", "body": "b", "cc": ["ok@example.com", 5]});
        let problems: Vec<String> =
            c.validate(&email, &body, Direction::Request).iter().map(ToString::to_string).collect();
        assert_eq!(problems, ["/cc/1: expected string, got integer 5"]);
        let int32 = json!({"type": "integer", "format": "int32"});
        let problems: Vec<String> = c
            .validate(&int32, &json!(3_000_000_000_i64), Direction::Response)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(problems, ["(value): expected a number in int32 range, got 3000000000"]);
    }

    #[test]
    fn all_of_checks_every_member() {
        // SuccessResponse (first member) pins `code` to 0 even though the
        // second member says nothing about it.
        let mut body = ok(user());
        body["code"] = json!(1);
        assert_eq!(check("getUserById", 200, &body), ["getUserById 200 /code: expected one of [0], got 1"]);
        let mut body = ok(user());
        body.as_object_mut().unwrap().remove("timestamp");
        assert_eq!(
            check("getUserById", 200, &body),
            ["getUserById 200 /timestamp: expected the required property, got nothing"]
        );
    }

    #[test]
    fn error_codes_must_be_registered_for_their_status() {
        let body = json!({"code": 1001, "msg": "x", "timestamp": "2025-11-12T16:00:00Z"});
        let got = check("getUserById", 404, &body);
        assert_eq!(got.len(), 1);
        assert!(
            got[0].starts_with("getUserById 404 /code: expected an x-error-codes code for status 404 [1003 UserNotFound, 1011 RouteNotFound, 1013 TaskNotFound], got 1001 (ValidationFailed is registered for 400)"),
            "{}",
            got[0]
        );
    }

    #[test]
    fn registry_pairings_are_conventions_an_undocumented_status_is_spec() {
        let c = contract();
        let classes = |op: &str, status: u16, body: &Value| -> Vec<Class> {
            let bytes = serde_json::to_vec(body).unwrap();
            let resp =
                Response { status, content_type: Some("application/json"), body: &bytes, headers: &[], query: "" };
            c.check_id(op, resp).err().unwrap_or_default().iter().map(|m| m.class).collect()
        };
        let unregistered = json!({"code": 4242, "msg": "x", "timestamp": "2025-11-12T16:00:00Z"});
        assert_eq!(classes("getUserById", 404, &unregistered), [Class::Convention]);
        assert_eq!(classes("getUserById", 500, &unregistered), [Class::Convention]);
        assert_eq!(classes("createUser", 404, &unregistered), [Class::Spec]);
    }

    #[test]
    fn field_formats_render_names() {
        assert_eq!(FieldFormat::JsonPointer.render("email"), "/email");
        assert_eq!(FieldFormat::JsonPointer.render("cc[0]"), "/cc/0");
        assert_eq!(FieldFormat::JsonPointer.render("a.b[1][2]"), "/a/b/1/2");
        assert_eq!(FieldFormat::JsonName.render("cc[0]"), "cc[0]");
        assert!(FieldFormat::parse("camel").is_err());
        // This repository's spec declares how it names fields.
        assert_eq!(contract().field_format(), Some(FieldFormat::JsonName));
        let declared = SMALL.replacen("paths:", "x-error-field-format: json-pointer\npaths:", 1);
        assert_eq!(Contract::from_yaml(&declared).unwrap().field_format(), Some(FieldFormat::JsonPointer));
    }

    const SMALL: &str = r#"
openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "http://x/base"}]
paths:
  /things/{id}:
    get:
      operationId: getThing
      responses:
        '200':
          description: ok
          content:
            application/json:
              schema:
                type: object
                additionalProperties: false
                properties:
                  shape:
                    oneOf:
                      - {type: object, required: [r], properties: {r: {type: number, minimum: 0, exclusiveMinimum: true}}}
                      - {type: object, required: [w], properties: {w: {type: integer, format: int32}}}
                  tags: {type: array, items: {type: string}, maxItems: 2, uniqueItems: true}
                  either: {anyOf: [{type: string, format: date}, {type: integer}]}
        '204': {description: nothing}
        4XX:
          description: error
          content: {application/problem+json: {schema: {type: object, required: [title]}}}
  /things/special:
    get:
      operationId: special
      responses: {'200': {description: ok}}
"#;

    fn small(status: u16, content_type: &str, body: &Value) -> Vec<String> {
        let c = Contract::from_yaml(SMALL).unwrap();
        let bytes = if body.is_null() { vec![] } else { serde_json::to_vec(body).unwrap() };
        let resp = Response { status, content_type: Some(content_type), body: &bytes, headers: &[], query: "" };
        match c.check_request("GET", "/base/things/9", resp) {
            Ok(()) => vec![],
            Err(m) => m.iter().map(ToString::to_string).collect(),
        }
    }

    #[test]
    fn one_of_any_of_and_additional_properties() {
        assert_eq!(small(200, "application/json", &json!({"shape": {"r": 1.5}, "either": 3})), Vec::<String>::new());
        assert_eq!(
            small(200, "application/json", &json!({"shape": {"r": 0}, "extra": 1})),
            [
                "getThing 200 /extra: expected no undocumented property (additionalProperties: false), got 1",
                r#"getThing 200 /shape: expected a match for one of the 2 oneOf alternatives, got {"r":0}; closest is #0: /r: expected a number > 0, got 0"#,
            ]
        );
        let both = json!({"shape": {"r": 1, "w": 2}});
        assert_eq!(
            small(200, "application/json", &both),
            ["getThing 200 /shape: expected exactly one oneOf alternative to match, got 2 matching (#0, #1)"]
        );
        let got = small(
            200,
            "application/json",
            &json!({"shape": {"w": 3_000_000_000_i64}, "tags": ["a", "a", "b"], "either": "2025-13-01"}),
        );
        assert_eq!(got.len(), 4, "{got:#?}");
        assert!(got[0].starts_with("getThing 200 /either: expected a match for one of the 2 anyOf alternatives"));
        // A tie goes to the first alternative.
        assert_eq!(
            got[1],
            "getThing 200 /shape: expected a match for one of the 2 oneOf alternatives, got {\"w\":3000000000}; closest is #0: /r: expected the required property, got nothing (undocumented properties present: w)"
        );
        assert_eq!(got[2], "getThing 200 /tags: expected at most 2 items, got 3");
        assert_eq!(got[3], r#"getThing 200 /tags/1: expected unique items, got a repeat of item 0: "a""#);
    }

    #[test]
    fn ranges_default_and_empty_bodies() {
        assert_eq!(small(204, "", &Value::Null), Vec::<String>::new());
        assert_eq!(
            small(204, "application/json", &json!({})),
            ["getThing 204 (body): expected no body, got text \"{}\""]
        );
        assert_eq!(small(422, "application/problem+json", &json!({"title": "x"})), Vec::<String>::new());
        assert_eq!(
            small(404, "application/problem+json", &json!({})),
            ["getThing 404 /title: expected the required property, got nothing"]
        );
        assert_eq!(small(500, "application/json", &json!({})).len(), 1);
    }

    #[test]
    fn finds_operations_by_concrete_path() {
        let c = contract();
        let id = |m: &str, p: &str| c.find(m, p).map(|o| o.id.clone());
        assert_eq!(id("GET", "/api/v1/users/5"), Some("getUserById".into()));
        assert_eq!(id("delete", "/users/5"), Some("deleteUser".into()));
        assert_eq!(id("GET", "/api/v1/users?page=2"), Some("listUsers".into()));
        assert_eq!(id("POST", "/api/v1/tasks/email"), Some("submitEmailTask".into()));
        assert_eq!(id("GET", "/api/v1/tasks/email"), Some("getTask".into()));
        assert_eq!(id("GET", "/api/v1/users/5/extra"), None);
        assert_eq!(c.base_path(), "/api/v1");
        let s = Contract::from_yaml(SMALL).unwrap();
        assert_eq!(s.find("GET", "/base/things/special").map(|o| o.id.as_str()), Some("special"));
        let op = c.operation("createUser").unwrap();
        assert_eq!(op.auth_header.as_deref(), Some("token"));
        assert!(c.operation("healthCheck").unwrap().auth_header.is_none());
        assert_eq!(op.scopes, ["users:write"]);
        assert_eq!(c.error_code("ExpiredToken").map(|c| (c.code, c.status)), Some((1006, 401)));
    }
}
