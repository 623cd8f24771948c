//! Keyword coverage: which parts of the contract a run exercised. The
//! inventory is built from the spec (every documented status and response
//! header, every constraint keyword of request schemas, every enum value,
//! every response enum value and optional property), each item named by the
//! JSON pointer where it is defined, so a component shared through `$ref`
//! counts once. The scenario marks items where it sends requests and checks
//! responses; the report shows exercised / total per category.
//!
//! "Exercised" means: a status was answered and conformed; a header was
//! present; a request constraint was violated by a request that got the
//! documented 400 `ValidationFailed`; a request enum value was used by a request that got a
//! 2xx; a response enum value or optional property was seen in a response.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    str::FromStr,
};

use serde_json::{Value, json};

use super::{
    checker::{Contract, Direction, Operation, Response, escape, is_json, media_matches, media_type, response_for},
    negative::{Request, coerce},
    recorder::Exchange,
};

/// Nesting deeper than this is not inventoried (self-referencing schemas).
const MAX_DEPTH: usize = 32;

/// String and number formats the validator checks; others (`password`,
/// `byte`) are annotations that no value can violate.
const CHECKED_FORMATS: &[&str] = &["date", "date-time", "uuid", "email", "int32", "int64"];

/// Keywords checked on the value itself, each violated alone.
const VALUE_KEYWORDS: &[&str] = &[
    "enum",
    "minLength",
    "maxLength",
    "pattern",
    "format",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minItems",
    "maxItems",
    "uniqueItems",
    "minProperties",
    "maxProperties",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Category {
    Statuses,
    ResponseHeaders,
    RequestConstraints,
    EnumValues,
    ResponseShapes,
}

impl Category {
    pub const ALL: [Category; 5] = [
        Category::Statuses,
        Category::ResponseHeaders,
        Category::RequestConstraints,
        Category::EnumValues,
        Category::ResponseShapes,
    ];

    /// As the table and JUnit name it.
    pub fn title(self) -> &'static str {
        match self {
            Category::Statuses => "statuses",
            Category::ResponseHeaders => "response headers",
            Category::RequestConstraints => "request constraints",
            Category::EnumValues => "enum values",
            Category::ResponseShapes => "response enums/optional properties",
        }
    }

    /// As `--min-coverage KEY=PCT` names it.
    pub fn key(self) -> &'static str {
        match self {
            Category::Statuses => "statuses",
            Category::ResponseHeaders => "headers",
            Category::RequestConstraints => "constraints",
            Category::EnumValues => "enums",
            Category::ResponseShapes => "responses",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Item {
    pub category: Category,
    /// `#/components/schemas/CreateUserRequest/properties/username/maxLength`.
    pub pointer: String,
    /// What the pointer does not say at a glance (`createUser 409`, an enum value).
    pub note: String,
    pub exercised: bool,
}

/// Minimum percentages: one for every category, or per category.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds {
    pub all: Option<f64>,
    pub per: Vec<(Category, f64)>,
}

impl Thresholds {
    /// Adds one `--min-coverage` value: `PCT` or `KEY=PCT`.
    pub fn add(&mut self, spec: &str) -> Result<(), String> {
        let pct = |s: &str| match s.trim().trim_end_matches('%').parse::<f64>() {
            Ok(p) if (0.0..=100.0).contains(&p) => Ok(p),
            _ => Err(format!("expected a percentage from 0 to 100, got {s:?}")),
        };
        match spec.split_once('=') {
            None => self.all = Some(pct(spec)?),
            Some((key, value)) => {
                let keys: Vec<&str> = Category::ALL.iter().map(|c| c.key()).collect();
                let Some(c) = Category::ALL.into_iter().find(|c| c.key() == key.trim()) else {
                    return Err(format!("unknown category {key:?}: expected one of {}", keys.join(", ")));
                };
                self.per.retain(|(k, _)| *k != c);
                self.per.push((c, pct(value)?));
            }
        }
        Ok(())
    }

    pub fn get(&self, c: Category) -> Option<f64> {
        self.per.iter().find(|(k, _)| *k == c).map(|(_, p)| *p).or(self.all)
    }
}

impl FromStr for Thresholds {
    type Err = String;

    /// Comma- or space-separated `--min-coverage` values.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut t = Thresholds::default();
        for part in s.split([',', ' ']).filter(|p| !p.is_empty()) {
            t.add(part)?;
        }
        Ok(t)
    }
}

/// What one request carried: each parameter of its operation as its schema
/// reads it (`None` = absent), and the JSON body.
#[derive(Debug, Clone, Default)]
pub struct Sent {
    pub params: Vec<Option<Value>>,
    pub body: Option<Value>,
}

impl Sent {
    /// A request as the negative cases build it (path relative to the base URL).
    pub fn from_request(contract: &Contract, op: &Operation, req: &Request) -> Sent {
        Sent::new(contract, op, &req.path, &req.query, &req.headers, req.body.clone())
    }

    /// A request as the recorder saw it.
    pub fn from_exchange(contract: &Contract, op: &Operation, ex: &Exchange) -> Sent {
        let (path, query) = ex.path.split_once('?').unwrap_or((&ex.path, ""));
        let path = path.strip_prefix(contract.base_path()).unwrap_or(path);
        let query: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes()).into_owned().collect();
        let body = serde_json::from_slice(&ex.request_body).ok();
        Sent::new(contract, op, path, &query, &ex.request_headers, body)
    }

    fn new(
        contract: &Contract,
        op: &Operation,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Option<Value>,
    ) -> Sent {
        let template: Vec<&str> = op.path.trim_matches('/').split('/').collect();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let params = op
            .parameters
            .iter()
            .map(|p| {
                let texts: Vec<String> = match p.location.as_str() {
                    "path" => template
                        .iter()
                        .zip(&segments)
                        .filter(|(t, _)| **t == format!("{{{}}}", p.name))
                        .map(|(_, s)| decode(s))
                        .collect(),
                    "query" => query.iter().filter(|(k, _)| *k == p.name).map(|(_, v)| v.clone()).collect(),
                    "header" => headers
                        .iter()
                        .filter(|(k, _)| k.eq_ignore_ascii_case(&p.name))
                        .map(|(_, v)| v.clone())
                        .collect(),
                    _ => Vec::new(),
                };
                let first = texts.first()?;
                let schema = contract.resolve(&p.schema);
                Some(match schema.get("items").filter(|_| schema.get("type") == Some(&json!("array"))) {
                    Some(items) => {
                        let items = contract.resolve(items);
                        let list: Vec<&str> = if p.explode {
                            texts.iter().map(String::as_str).collect()
                        } else {
                            first.split(',').collect()
                        };
                        Value::Array(list.iter().map(|t| coerce(items, t)).collect())
                    }
                    None => coerce(schema, first),
                })
            })
            .collect();
        Sent { params, body }
    }
}

/// A percent-encoded path segment as text (the negative cases encode `+`,
/// so reading it as a space cannot happen for them).
fn decode(segment: &str) -> String {
    form_urlencoded::parse(format!("x={segment}").as_bytes()).next().map_or_else(String::new, |(_, v)| v.into_owned())
}

#[derive(Debug, Clone, Default)]
pub struct Coverage {
    items: Vec<Item>,
    index: HashMap<(Category, String), usize>,
    /// Where `--min-coverage` draws the line (empty: nowhere).
    pub thresholds: Thresholds,
}

impl Coverage {
    /// Every item of `contract`, none exercised.
    pub fn inventory(contract: &Contract) -> Coverage {
        let mut inv = Inventory { contract, cov: Coverage::default(), seen: HashSet::new() };
        for op in contract.operations() {
            for (status, def) in &op.responses {
                let at = format!("{}/responses/{}", op.at, escape(status));
                inv.cov.add(Category::Statuses, at, format!("{} {status}", op.id));
                for h in &def.headers {
                    inv.cov.add(Category::ResponseHeaders, h.at.clone(), format!("{} {status} {}", op.id, h.name));
                }
                for ((mt, schema), at) in def.content.iter().zip(&def.content_at) {
                    if let Some(schema) = schema.as_ref().filter(|_| is_json(mt)) {
                        inv.response(at.clone(), schema, &[], 0);
                    }
                }
            }
            for p in &op.parameters {
                // A path parameter cannot be left out: the path would be another.
                if p.required && p.location != "path" {
                    inv.cov.add(Category::RequestConstraints, format!("{}/required", p.at), p.name.clone());
                }
                inv.request(format!("{}/schema", p.at), &p.schema, true, 0);
            }
            if let Some(body) = &op.request_body {
                inv.request(op.request_body_at.clone(), body, false, 0);
            }
        }
        inv.cov
    }

    fn add(&mut self, category: Category, pointer: String, note: String) {
        let key = (category, pointer.clone());
        if !self.index.contains_key(&key) {
            self.index.insert(key, self.items.len());
            self.items.push(Item { category, pointer, note, exercised: false });
        }
    }

    /// Marks an item exercised; false when the inventory has no such item.
    pub fn mark(&mut self, category: Category, pointer: &str) -> bool {
        match self.index.get(&(category, pointer.to_owned())) {
            Some(&i) => {
                self.items[i].exercised = true;
                true
            }
            None => false,
        }
    }

    pub fn items(&self) -> &[Item] {
        &self.items
    }

    /// A documented status of `op` answered as documented (`key` as the
    /// spec spells it: `200`, `4XX`, `default`).
    pub fn status(&mut self, op_at: &str, key: &str) {
        self.mark(Category::Statuses, &format!("{op_at}/responses/{}", escape(key)));
    }

    /// A request answered with the documented 400: every request-side
    /// keyword it violates is exercised.
    pub fn rejected(&mut self, contract: &Contract, op: &Operation, sent: &Sent) {
        let mut hits = Vec::new();
        for (p, v) in op.parameters.iter().zip(&sent.params) {
            match v {
                Some(v) => violated(contract, format!("{}/schema", p.at), &p.schema, v, 0, &mut hits),
                None if p.required => hits.push(format!("{}/required", p.at)),
                None => {}
            }
        }
        if let (Some(schema), Some(body)) = (&op.request_body, &sent.body) {
            violated(contract, op.request_body_at.clone(), schema, body, 0, &mut hits);
        }
        for h in hits {
            self.mark(Category::RequestConstraints, &h);
        }
    }

    /// A request answered with a 2xx: the enum values it used (and any null
    /// a `nullable: true` let through) are exercised.
    pub fn accepted(&mut self, contract: &Contract, op: &Operation, sent: &Sent) {
        let mut hits = Vec::new();
        for (p, v) in op.parameters.iter().zip(&sent.params) {
            if let Some(v) = v {
                present(contract, format!("{}/schema", p.at), &p.schema, v, Direction::Request, 0, &mut hits);
            }
        }
        if let (Some(schema), Some(body)) = (&op.request_body, &sent.body) {
            present(contract, op.request_body_at.clone(), schema, body, Direction::Request, 0, &mut hits);
        }
        for h in hits {
            self.mark(Category::EnumValues, &h);
            self.mark(Category::RequestConstraints, &h);
        }
    }

    /// A response to `op`: the documented headers it carries, the enum
    /// values and optional properties its body shows.
    pub fn response(&mut self, contract: &Contract, op: &Operation, resp: Response<'_>) {
        let Some(def) = response_for(op, resp.status) else { return };
        for h in &def.headers {
            if resp.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&h.name)) {
                self.mark(Category::ResponseHeaders, &h.at);
            }
        }
        let Some(actual) = resp.content_type.map(media_type) else { return };
        let documented = def.content.iter().zip(&def.content_at).find(|((mt, _), _)| media_matches(mt, &actual));
        let Some(((mt, Some(schema)), at)) = documented else { return };
        if !is_json(mt) {
            return;
        }
        let Ok(body) = serde_json::from_slice::<Value>(resp.body) else { return };
        let mut hits = Vec::new();
        present(contract, at.clone(), schema, &body, Direction::Response, 0, &mut hits);
        for h in hits {
            self.mark(Category::ResponseShapes, &h);
        }
    }

    /// `(category, exercised, total)` for every category.
    pub fn counts(&self) -> Vec<(Category, usize, usize)> {
        Category::ALL
            .iter()
            .map(|&c| {
                let of = self.items.iter().filter(|i| i.category == c);
                (c, of.clone().filter(|i| i.exercised).count(), of.count())
            })
            .collect()
    }

    /// Each category below its threshold, as a sentence.
    pub fn shortfalls(&self) -> Vec<String> {
        self.counts()
            .into_iter()
            .filter_map(|(c, done, total)| {
                let min = self.thresholds.get(c)?;
                let got = percent(done, total);
                (got + 1e-9 < min).then(|| format!("{} coverage {got:.1}% is below {min}%", c.title()))
            })
            .collect()
    }

    /// The table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out =
            format!("{:<36}{:>10}{:>7}{:>8}{:>9}\n", "keyword coverage", "exercised", "total", "%", "minimum");
        for (c, done, total) in self.counts() {
            let min = self.thresholds.get(c).map_or_else(|| "–".to_owned(), |m| format!("{m}%"));
            let _ = writeln!(out, "{:<36}{done:>10}{total:>7}{:>8.1}{min:>9}", c.title(), percent(done, total));
        }
        out
    }

    /// Every unexercised item, by category, one pointer a line.
    pub fn details(&self) -> String {
        let mut out = String::new();
        for c in Category::ALL {
            for i in self.items.iter().filter(|i| i.category == c && !i.exercised) {
                let _ = writeln!(out, "NOT COVERED {}: {} ({})", c.key(), i.pointer, i.note);
            }
        }
        out
    }

    /// The `keyword-coverage` JUnit testsuite: one testcase per category,
    /// failed when below its threshold; `(xml, tests, failures)`.
    pub fn junit_suite(&self) -> (String, usize, usize) {
        let mut props = String::new();
        let mut cases = String::new();
        let mut failures = 0;
        for (c, done, total) in self.counts() {
            let key = c.key();
            let pct = percent(done, total);
            let _ = write!(
                props,
                "      <property name=\"{key}.exercised\" value=\"{done}\"/>\n      <property name=\"{key}.total\" value=\"{total}\"/>\n      <property name=\"{key}.percent\" value=\"{pct:.1}\"/>\n"
            );
            let _ = write!(cases, "    <testcase classname=\"keyword-coverage\" name=\"{}\">", c.title());
            if let Some(min) = self.thresholds.get(c).filter(|m| pct + 1e-9 < *m) {
                failures += 1;
                let _ = write!(cases, "<failure message=\"{done}/{total} = {pct:.1}%, below {min}%\"/>");
            }
            cases.push_str("</testcase>\n");
        }
        let n = Category::ALL.len();
        let xml = format!(
            "  <testsuite name=\"keyword-coverage\" tests=\"{n}\" failures=\"{failures}\" skipped=\"0\">\n    <properties>\n{props}    </properties>\n{cases}  </testsuite>\n"
        );
        (xml, n, failures)
    }
}

/// Nothing to cover counts as fully covered.
pub fn percent(done: usize, total: usize) -> f64 {
    if total == 0 { 100.0 } else { done as f64 * 100.0 / total as f64 }
}

struct Inventory<'a> {
    contract: &'a Contract,
    cov: Coverage,
    /// Schemas already walked, by side and pointer: shared components once,
    /// and no loop on a self-referencing one.
    seen: HashSet<(bool, String)>,
}

impl Inventory<'_> {
    /// Request-side keywords of the schema at `at`. `text` says the value
    /// travels as text (a parameter), where `type: string` cannot be
    /// violated, nor `type: array` (any text is a list of one or more).
    fn request(&mut self, at: String, schema: &Value, text: bool, depth: usize) {
        let (at, s) = self.contract.resolve_at(schema, at);
        if depth > MAX_DEPTH || !self.seen.insert((true, at.clone())) {
            return;
        }
        let Some(s) = s.as_object() else { return };
        let rc = Category::RequestConstraints;
        let ty = s.get("type").and_then(Value::as_str);
        if let Some(ty) = ty.filter(|t| !(text && matches!(*t, "string" | "array"))) {
            self.cov.add(rc, format!("{at}/type"), ty.to_owned());
        }
        if s.contains_key("nullable") {
            self.cov.add(rc, format!("{at}/nullable"), String::new());
        }
        for &kw in VALUE_KEYWORDS {
            let Some(v) = s.get(kw) else { continue };
            let counts = match kw {
                "format" => v.as_str().is_some_and(|f| CHECKED_FORMATS.contains(&f)),
                "uniqueItems" => v == &json!(true),
                // OpenAPI 3.0's boolean exclusivity belongs to the bound next to it.
                "exclusiveMinimum" | "exclusiveMaximum" => v.is_number(),
                _ => true,
            };
            if counts {
                self.cov.add(rc, format!("{at}/{kw}"), short(v));
            }
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array) {
            for (i, v) in options.iter().enumerate() {
                self.cov.add(Category::EnumValues, format!("{at}/enum/{i}"), v.to_string());
            }
        }
        if s.get("additionalProperties") == Some(&json!(false)) {
            self.cov.add(rc, format!("{at}/additionalProperties"), String::new());
        }
        let props = s.get("properties").and_then(Value::as_object);
        // readOnly members are never sent, so neither are their constraints.
        let read_only = |name: &str| {
            props.and_then(|p| p.get(name)).map(|p| self.contract.resolve(p)).and_then(|p| p.get("readOnly"))
                == Some(&json!(true))
        };
        for (i, name) in s.get("required").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if let Some(name) = name.as_str().filter(|n| !read_only(n)) {
                self.cov.add(rc, format!("{at}/required/{i}"), name.to_owned());
            }
        }
        let read_only: Vec<String> =
            props.into_iter().flatten().map(|(n, _)| n).filter(|n| read_only(n)).cloned().collect();
        for (name, ps) in props.into_iter().flatten().filter(|(n, _)| !read_only.contains(n)) {
            self.request(format!("{at}/properties/{}", escape(name)), ps, false, depth + 1);
        }
        if let Some(items) = s.get("items") {
            self.request(format!("{at}/items"), items, text, depth + 1);
        }
        if let Some(extra @ Value::Object(_)) = s.get("additionalProperties") {
            self.request(format!("{at}/additionalProperties"), extra, false, depth + 1);
        }
        for kw in ["allOf", "oneOf", "anyOf"] {
            for (i, m) in s.get(kw).and_then(Value::as_array).into_iter().flatten().enumerate() {
                self.request(format!("{at}/{kw}/{i}"), m, text, depth + 1);
            }
        }
    }

    /// Response-side items of the schema at `at`: enum values and optional
    /// properties (`required` also counts what enclosing `allOf` members require).
    fn response(&mut self, at: String, schema: &Value, required: &[String], depth: usize) {
        let (at, s) = self.contract.resolve_at(schema, at);
        if depth > MAX_DEPTH || !self.seen.insert((false, at.clone())) {
            return;
        }
        let Some(s) = s.as_object() else { return };
        let rs = Category::ResponseShapes;
        for (i, v) in s.get("enum").and_then(Value::as_array).into_iter().flatten().enumerate() {
            self.cov.add(rs, format!("{at}/enum/{i}"), v.to_string());
        }
        let own = names(s.get("required"));
        let mut all_of_required: Vec<String> = required.iter().chain(&own).cloned().collect();
        for m in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            all_of_required.extend(names(self.contract.resolve(m).get("required")));
        }
        for (name, ps) in s.get("properties").and_then(Value::as_object).into_iter().flatten() {
            let p = self.contract.resolve(ps);
            if p.get("writeOnly") == Some(&json!(true)) {
                continue;
            }
            if !all_of_required.contains(name) {
                self.cov.add(rs, format!("{at}/properties/{}", escape(name)), format!("optional {name}"));
            }
            self.response(format!("{at}/properties/{}", escape(name)), ps, &[], depth + 1);
        }
        if let Some(items) = s.get("items") {
            self.response(format!("{at}/items"), items, &[], depth + 1);
        }
        if let Some(extra @ Value::Object(_)) = s.get("additionalProperties") {
            self.response(format!("{at}/additionalProperties"), extra, &[], depth + 1);
        }
        for (i, m) in s.get("allOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
            self.response(format!("{at}/allOf/{i}"), m, &all_of_required, depth + 1);
        }
        for kw in ["oneOf", "anyOf"] {
            for (i, m) in s.get(kw).and_then(Value::as_array).into_iter().flatten().enumerate() {
                self.response(format!("{at}/{kw}/{i}"), m, &[], depth + 1);
            }
        }
    }
}

fn names(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).map(str::to_owned).collect()
}

fn short(v: &Value) -> String {
    super::checker::short(v)
}

/// Pointers of the keywords `value` violates in the schema at `at` and
/// inside it. Each keyword is judged by the validator alone, so coverage
/// and checking never disagree on what a keyword means.
fn violated(contract: &Contract, at: String, schema: &Value, value: &Value, depth: usize, out: &mut Vec<String>) {
    let (at, s) = contract.resolve_at(schema, at);
    let Some(s) = s.as_object().filter(|_| depth <= MAX_DEPTH) else { return };
    let breaks = |mini: Value| !contract.validate(&mini, value, Direction::Request).is_empty();
    if value.is_null() {
        match s.get("nullable") {
            Some(Value::Bool(true)) => {}
            Some(_) => out.push(format!("{at}/nullable")),
            None if s.contains_key("type") => out.push(format!("{at}/type")),
            None => {}
        }
        return;
    }
    if let Some(ty) = s.get("type")
        && breaks(json!({ "type": ty }))
    {
        // The validator stops at a wrong type: nothing else is judged.
        out.push(format!("{at}/type"));
        return;
    }
    for &kw in VALUE_KEYWORDS {
        let Some(v) = s.get(kw) else { continue };
        let mini = match kw {
            "minimum" => {
                json!({ "minimum": v, "exclusiveMinimum": s.get("exclusiveMinimum").filter(|e| e.is_boolean()) })
            }
            "maximum" => {
                json!({ "maximum": v, "exclusiveMaximum": s.get("exclusiveMaximum").filter(|e| e.is_boolean()) })
            }
            "exclusiveMinimum" | "exclusiveMaximum" if !v.is_number() => continue,
            _ => json!({ kw: v }),
        };
        if breaks(mini) {
            out.push(format!("{at}/{kw}"));
        }
    }
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(obj) = value.as_object() {
        for (i, name) in s.get("required").and_then(Value::as_array).into_iter().flatten().enumerate() {
            if name.as_str().is_some_and(|n| !obj.contains_key(n)) {
                out.push(format!("{at}/required/{i}"));
            }
        }
        if s.get("additionalProperties") == Some(&json!(false))
            && obj.keys().any(|k| props.is_none_or(|p| !p.contains_key(k)))
        {
            out.push(format!("{at}/additionalProperties"));
        }
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(ps) => violated(contract, format!("{at}/properties/{}", escape(name)), ps, v, depth + 1, out),
                None => {
                    if let Some(extra @ Value::Object(_)) = s.get("additionalProperties") {
                        violated(contract, format!("{at}/additionalProperties"), extra, v, depth + 1, out);
                    }
                }
            }
        }
    }
    if let (Some(items), Some(list)) = (s.get("items"), value.as_array()) {
        for v in list {
            violated(contract, format!("{at}/items"), items, v, depth + 1, out);
        }
    }
    for (i, m) in s.get("allOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
        violated(contract, format!("{at}/allOf/{i}"), m, value, depth + 1, out);
    }
}

/// Pointers of what `value` shows in the schema at `at`: the enum value it
/// takes, each property present, a null a `nullable: true` allows. Only
/// alternatives (`oneOf`/`anyOf`) that `value` matches are followed.
fn present(
    contract: &Contract,
    at: String,
    schema: &Value,
    value: &Value,
    dir: Direction,
    depth: usize,
    out: &mut Vec<String>,
) {
    let (at, s) = contract.resolve_at(schema, at);
    let Some(s) = s.as_object().filter(|_| depth <= MAX_DEPTH) else { return };
    if value.is_null() {
        if s.get("nullable") == Some(&json!(true)) {
            out.push(format!("{at}/nullable"));
        }
        return;
    }
    if let Some(i) = s.get("enum").and_then(Value::as_array).and_then(|e| e.iter().position(|o| o == value)) {
        out.push(format!("{at}/enum/{i}"));
    }
    let props = s.get("properties").and_then(Value::as_object);
    if let Some(obj) = value.as_object() {
        for (name, v) in obj {
            match props.and_then(|p| p.get(name)) {
                Some(ps) => {
                    let p_at = format!("{at}/properties/{}", escape(name));
                    out.push(p_at.clone());
                    present(contract, p_at, ps, v, dir, depth + 1, out);
                }
                None => {
                    if let Some(extra @ Value::Object(_)) = s.get("additionalProperties") {
                        present(contract, format!("{at}/additionalProperties"), extra, v, dir, depth + 1, out);
                    }
                }
            }
        }
    }
    if let (Some(items), Some(list)) = (s.get("items"), value.as_array()) {
        for v in list {
            present(contract, format!("{at}/items"), items, v, dir, depth + 1, out);
        }
    }
    for (i, m) in s.get("allOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
        present(contract, format!("{at}/allOf/{i}"), m, value, dir, depth + 1, out);
    }
    for kw in ["oneOf", "anyOf"] {
        for (i, m) in s.get(kw).and_then(Value::as_array).into_iter().flatten().enumerate() {
            if contract.validate(m, value, dir).is_empty() {
                present(contract, format!("{at}/{kw}/{i}"), m, value, dir, depth + 1, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SMALL: &str = r##"
openapi: 3.0.3
info: {title: t, version: "1"}
servers: [{url: "http://x/base"}]
paths:
  /users:
    post:
      operationId: createUser
      parameters:
        - {$ref: '#/components/parameters/Key'}
        - {name: mode, in: query, schema: {type: string, enum: [fast, slow]}}
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewUser'}
      responses:
        '200':
          description: ok
          headers:
            ETag: {$ref: '#/components/headers/ETag'}
          content:
            application/json:
              schema:
                allOf:
                  - {$ref: '#/components/schemas/Envelope'}
                  - {type: object, required: [data], properties: {data: {$ref: '#/components/schemas/User'}}}
        '409': {description: taken}
  /users/{id}:
    put:
      operationId: updateUser
      parameters:
        - {name: id, in: path, required: true, schema: {type: integer, minimum: 1}}
      requestBody:
        content:
          application/json:
            schema: {$ref: '#/components/schemas/NewUser'}
      responses:
        '200':
          description: ok
          headers:
            ETag: {$ref: '#/components/headers/ETag'}
components:
  headers:
    ETag: {schema: {type: string}}
  parameters:
    Key: {name: Idempotency-Key, in: header, required: true, schema: {type: string, minLength: 8}}
  schemas:
    NewUser:
      type: object
      additionalProperties: false
      required: [username]
      properties:
        id: {type: integer, readOnly: true, minimum: 1}
        username: {type: string, minLength: 3, maxLength: 50, pattern: '^[a-z]+$'}
        status: {$ref: '#/components/schemas/Status'}
        password: {type: string, format: password}
        age: {type: integer, minimum: 0, exclusiveMinimum: true}
        note: {type: string, nullable: true}
    Status: {type: string, enum: [active, inactive]}
    Envelope:
      type: object
      required: [code]
      properties:
        code: {type: integer}
        data: {type: object}
        msg: {type: string}
    User:
      type: object
      required: [id]
      properties:
        id: {type: integer}
        status: {$ref: '#/components/schemas/Status'}
        nickname: {type: string}
"##;

    fn inventory() -> (Contract, Coverage) {
        let c = Contract::from_yaml(SMALL).unwrap();
        let cov = Coverage::inventory(&c);
        (c, cov)
    }

    fn pointers(cov: &Coverage, category: Category) -> Vec<&str> {
        cov.items().iter().filter(|i| i.category == category).map(|i| i.pointer.as_str()).collect()
    }

    #[test]
    fn the_inventory_names_items_where_they_are_defined_once() {
        let (_, cov) = inventory();
        assert_eq!(
            pointers(&cov, Category::Statuses),
            [
                "#/paths/~1users/post/responses/200",
                "#/paths/~1users/post/responses/409",
                "#/paths/~1users~1{id}/put/responses/200"
            ]
        );
        // Two operations share the header component: one item.
        assert_eq!(pointers(&cov, Category::ResponseHeaders), ["#/components/headers/ETag"]);
        let rc = pointers(&cov, Category::RequestConstraints);
        let n = "#/components/schemas/NewUser";
        for want in [
            "#/components/parameters/Key/required".to_owned(),
            "#/components/parameters/Key/schema/minLength".to_owned(),
            "#/paths/~1users/post/parameters/1/schema/enum".to_owned(),
            "#/paths/~1users~1{id}/put/parameters/0/schema/type".to_owned(),
            "#/paths/~1users~1{id}/put/parameters/0/schema/minimum".to_owned(),
            format!("{n}/type"),
            format!("{n}/additionalProperties"),
            format!("{n}/required/0"),
            format!("{n}/properties/username/maxLength"),
            format!("{n}/properties/username/pattern"),
            format!("{n}/properties/age/minimum"),
            format!("{n}/properties/note/nullable"),
            "#/components/schemas/Status/enum".to_owned(),
        ] {
            assert!(rc.contains(&want.as_str()), "missing {want} in {rc:#?}");
        }
        // NewUser is the body of two operations, but counted once.
        assert_eq!(rc.iter().filter(|p| **p == format!("{n}/properties/username/maxLength")).count(), 1);
        for absent in [
            // A string parameter travels as text: it cannot be of another type.
            "#/components/parameters/Key/schema/type",
            // A path parameter cannot be left out.
            "#/paths/~1users~1{id}/put/parameters/0/required",
            // readOnly members are not sent; `password` is no checked format.
            "#/components/schemas/NewUser/properties/id/minimum",
            "#/components/schemas/NewUser/properties/password/format",
            // Boolean exclusivity is part of the bound.
            "#/components/schemas/NewUser/properties/age/exclusiveMinimum",
        ] {
            assert!(!rc.contains(&absent), "unexpected {absent}");
        }
        assert_eq!(
            pointers(&cov, Category::EnumValues),
            [
                "#/paths/~1users/post/parameters/1/schema/enum/0",
                "#/paths/~1users/post/parameters/1/schema/enum/1",
                "#/components/schemas/Status/enum/0",
                "#/components/schemas/Status/enum/1",
            ]
        );
        // The envelope's `data` is required by its allOf sibling; `msg` is optional.
        let rs = pointers(&cov, Category::ResponseShapes);
        assert!(rs.contains(&"#/components/schemas/Envelope/properties/msg"), "{rs:#?}");
        assert!(!rs.contains(&"#/components/schemas/Envelope/properties/data"), "{rs:#?}");
        assert!(!rs.contains(&"#/components/schemas/User/properties/id"), "{rs:#?}");
        assert!(rs.contains(&"#/components/schemas/User/properties/nickname"), "{rs:#?}");
        assert!(rs.contains(&"#/components/schemas/Status/enum/1"), "{rs:#?}");
    }

    fn exercised(cov: &Coverage, category: Category) -> Vec<&str> {
        cov.items().iter().filter(|i| i.category == category && i.exercised).map(|i| i.pointer.as_str()).collect()
    }

    #[test]
    fn rejected_requests_mark_what_they_violate() {
        let (c, mut cov) = inventory();
        let op = c.operation("createUser").unwrap().clone();
        let req = Request {
            method: "POST".into(),
            path: "/users".into(),
            query: vec![("mode".into(), "warp".into())],
            headers: vec![],
            body: Some(json!({"username": "ab", "age": 0, "note": null, "extra": 1})),
        };
        cov.rejected(&c, &op, &Sent::from_request(&c, &op, &req));
        let got = exercised(&cov, Category::RequestConstraints);
        assert_eq!(
            got,
            [
                "#/components/parameters/Key/required",
                "#/paths/~1users/post/parameters/1/schema/enum",
                "#/components/schemas/NewUser/additionalProperties",
                "#/components/schemas/NewUser/properties/age/minimum",
                "#/components/schemas/NewUser/properties/username/minLength",
            ]
        );
        // Nothing is credited to enum values by a rejection.
        assert!(exercised(&cov, Category::EnumValues).is_empty());
        let missing = Request { body: Some(json!({"note": 5})), query: vec![], ..req };
        cov.rejected(&c, &op, &Sent::from_request(&c, &op, &missing));
        let got = exercised(&cov, Category::RequestConstraints);
        assert!(got.contains(&"#/components/schemas/NewUser/required/0"), "{got:#?}");
        assert!(got.contains(&"#/components/schemas/NewUser/properties/note/type"), "{got:#?}");
    }

    #[test]
    fn accepted_requests_mark_enum_values_and_responses_what_they_show() {
        let (c, mut cov) = inventory();
        let op = c.operation("createUser").unwrap().clone();
        let req = Request {
            method: "POST".into(),
            path: "/users".into(),
            query: vec![("mode".into(), "slow".into())],
            headers: vec![("Idempotency-Key".into(), "12345678".into())],
            body: Some(json!({"username": "abc", "status": "inactive", "note": null})),
        };
        cov.accepted(&c, &op, &Sent::from_request(&c, &op, &req));
        assert_eq!(
            exercised(&cov, Category::EnumValues),
            ["#/paths/~1users/post/parameters/1/schema/enum/1", "#/components/schemas/Status/enum/1"]
        );
        assert_eq!(
            exercised(&cov, Category::RequestConstraints),
            ["#/components/schemas/NewUser/properties/note/nullable"]
        );
        let body = serde_json::to_vec(&json!({"code": 0, "data": {"id": 1, "status": "active"}})).unwrap();
        let headers = [("etag".to_owned(), "\"v1\"".to_owned())];
        let resp =
            Response { status: 200, content_type: Some("application/json"), body: &body, headers: &headers, query: "" };
        cov.response(&c, &op, resp);
        assert_eq!(exercised(&cov, Category::ResponseHeaders), ["#/components/headers/ETag"]);
        // A response enum value is its own item, apart from the request-side
        // one; `status` is optional, and was there.
        assert_eq!(
            exercised(&cov, Category::ResponseShapes),
            ["#/components/schemas/User/properties/status", "#/components/schemas/Status/enum/0"]
        );
        cov.status("#/paths/~1users/post", "409");
        assert_eq!(exercised(&cov, Category::Statuses), ["#/paths/~1users/post/responses/409"]);
    }

    #[test]
    fn a_recorded_exchange_reads_as_what_was_sent() {
        let (c, mut cov) = inventory();
        let op = c.operation("updateUser").unwrap().clone();
        let ex = Exchange {
            method: "PUT".into(),
            path: "/base/users/0?x=1".into(),
            status: 400,
            content_type: None,
            body: vec![],
            headers: vec![],
            error: None,
            request_headers: vec![],
            request_body: br#"{"username": "abc", "status": "gone"}"#.to_vec(),
        };
        let sent = Sent::from_exchange(&c, &op, &ex);
        assert_eq!(sent.params, [Some(json!(0))]);
        cov.rejected(&c, &op, &sent);
        assert_eq!(
            exercised(&cov, Category::RequestConstraints),
            // In inventory order: createUser's body defined NewUser first.
            ["#/components/schemas/Status/enum", "#/paths/~1users~1{id}/put/parameters/0/schema/minimum"]
        );
    }

    #[test]
    fn the_workspace_spec_has_an_inventory() {
        let c = Contract::from_yaml(include_str!("../../../spec/openapi.yaml")).unwrap();
        let cov = Coverage::inventory(&c);
        let has = |cat: Category, p: &str| cov.items().iter().any(|i| i.category == cat && i.pointer == p);
        assert!(has(Category::Statuses, "#/paths/~1users/post/responses/409"));
        assert!(has(
            Category::RequestConstraints,
            "#/components/schemas/CreateUserRequest/properties/username/maxLength"
        ));
        assert!(has(Category::RequestConstraints, "#/components/schemas/CreateUserRequest/required/0"));
        assert!(has(Category::RequestConstraints, "#/components/schemas/UserMergePatch/additionalProperties"));
        for (cat, _, total) in cov.counts() {
            assert!(total > 0, "no {} in the spec", cat.title());
        }
        let mut seen = HashSet::new();
        assert!(cov.items().iter().all(|i| seen.insert((i.category, i.pointer.clone()))), "an item twice");
    }

    #[test]
    fn thresholds_table_and_junit() {
        let (_, mut cov) = inventory();
        let t: Thresholds = "50,statuses=30".parse().unwrap();
        assert_eq!(t.get(Category::Statuses), Some(30.0));
        assert_eq!(t.get(Category::EnumValues), Some(50.0));
        assert!("nope=5".parse::<Thresholds>().unwrap_err().contains("unknown category"));
        assert!("150".parse::<Thresholds>().is_err());
        cov.thresholds = t;
        cov.status("#/paths/~1users/post", "200");
        // 1 of 3 statuses (33%) meets 30%; every other category is at 0%, below 50%.
        let short = cov.shortfalls();
        assert_eq!(short.len(), 4, "{short:#?}");
        assert!(!short.iter().any(|s| s.starts_with("statuses")));
        let table = cov.table();
        assert!(table.lines().nth(1).unwrap().starts_with("statuses"), "{table}");
        assert!(table.contains("33.3"), "{table}");
        let (xml, tests, failures) = cov.junit_suite();
        assert_eq!((tests, failures), (5, 4));
        assert!(xml.contains(r#"<property name="statuses.exercised" value="1"/>"#), "{xml}");
        assert!(xml.contains(r#"<testcase classname="keyword-coverage" name="statuses"></testcase>"#), "{xml}");
        assert!(cov.details().contains("NOT COVERED statuses: #/paths/~1users/post/responses/409 (createUser 409)"));
    }
}
