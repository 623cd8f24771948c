//! Negative cases generated from the contract: a valid request per operation
//! (generated from the schemas), then one violation per constraint of every
//! body field and parameter (expect a 400 naming the field), and every way
//! of failing authentication on secured operations (expect a 401).
//! A constraint added to the YAML is tested without new code here.
//!
//! Size: about 660 lines of generation; the rest is its unit tests.

use serde_json::{Map, Value, json};

use super::checker::{Contract, Direction, FieldFormat, Operation, Parameter, escape, format_ok};

/// One request, relative to the API's base URL.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Template filled in and percent-encoded: `/users/0`.
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Option<Value>,
}

/// Which credential a case sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Valid,
    Absent,
    Empty,
    /// Well formed, but never issued.
    Wrong,
    Expired,
}

impl TokenUse {
    /// The registry entry (`x-error-codes` name) a rejected credential gets.
    pub fn rejection(self) -> Option<&'static str> {
        match self {
            TokenUse::Valid => None,
            TokenUse::Absent | TokenUse::Empty => Some("MissingToken"),
            TokenUse::Wrong => Some("InvalidToken"),
            TokenUse::Expired => Some("ExpiredToken"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            TokenUse::Valid => "valid token",
            TokenUse::Absent => "no token",
            TokenUse::Empty => "empty token",
            TokenUse::Wrong => "wrong token",
            TokenUse::Expired => "expired token",
        }
    }
}

/// How deep generation follows schemas. A recursive union tries its
/// recursive member first at every level, so the work is exponential in
/// this bound: 10 keeps it near a thousand values while nesting deeper
/// than any non-recursive body of the specs we know.
const MAX_GENERATION_DEPTH: usize = 10;

/// The registry entry of a failed validation.
pub const VALIDATION_FAILED: &str = "ValidationFailed";

#[derive(Debug, Clone)]
pub enum Expect {
    /// 400 naming `field` (a JSON path like `cc[0]`, or a parameter name).
    Invalid { field: String },
    /// 401 with the code registered under this name.
    Unauthorized { code: &'static str },
}

#[derive(Debug, Clone)]
pub struct Case {
    pub operation: String,
    /// `createUser 400 username maxLength`.
    pub name: String,
    pub request: Request,
    pub token: TokenUse,
    pub expect: Expect,
}

impl Case {
    pub fn status(&self) -> u16 {
        match self.expect {
            Expect::Invalid { .. } => 400,
            Expect::Unauthorized { .. } => 401,
        }
    }

    /// What the response body must say beyond status and code: for a 400,
    /// that `data.errors[].field` names the field as `format` writes it,
    /// and only related fields (another field named means the generated
    /// base request was not valid). A convention, not the spec: the run
    /// asks only when the format is declared.
    pub fn check_body(&self, body: &Value, format: FieldFormat) -> Result<(), String> {
        let Expect::Invalid { field } = &self.expect else { return Ok(()) };
        let field = &format.render(field);
        let named: Vec<&str> = body
            .pointer("/data/errors")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|e| e.get("field").and_then(Value::as_str))
            .collect();
        if !named.contains(&field.as_str()) {
            return Err(format!("data.errors[].field: expected {field:?} among them, got {named:?}"));
        }
        let related = |n: &str| n == field || is_within(n, field) || is_within(field, n);
        let others: Vec<&&str> = named.iter().filter(|n| !related(n)).collect();
        if !others.is_empty() {
            return Err(format!(
                "data.errors[].field: only {field:?} was violated, but the answer also names {others:?}"
            ));
        }
        Ok(())
    }
}

/// `child` is a member or item of `parent` (`cc[0]` in `cc`, `a.b` in `a`,
/// `/cc/0` in `/cc`).
fn is_within(child: &str, parent: &str) -> bool {
    child.strip_prefix(parent).is_some_and(|rest| rest.starts_with(['.', '[', '/']))
}

/// The generated cases, and what could not be generated (each a failure:
/// a constraint that cannot be tested must not pass silently).
#[derive(Debug, Default)]
pub struct Cases {
    pub cases: Vec<Case>,
    /// `(operationId, why)`.
    pub problems: Vec<(String, String)>,
}

/// Builds valid values and violations for one contract.
pub struct Generator<'a> {
    contract: &'a Contract,
    /// Mixed into generated strings so that runs never collide (usernames
    /// and emails are unique in the service).
    unique: String,
    /// Values generation cannot know, by field or parameter name (e.g. an
    /// `id` known not to exist, so a wrongly accepted request harms nothing).
    overrides: Vec<(String, Value)>,
    /// Try the spec's examples before generated values for scalars other
    /// than free text (the generic scenario: a foreign server's own rules
    /// about a `uri`, a price or a date are likelier to accept what its
    /// authors wrote down; free text stays generated, with `unique` in it,
    /// so reruns do not collide on unique names). Objects are generated
    /// member by member; a whole-body example is the fallback.
    examples_first: bool,
    /// Path parameter values chosen by the caller (an id it created, or one
    /// unlikely to exist), as text; `None` leaves the parameter to generation.
    path_values: Option<PathValues<'a>>,
    /// Base requests leave optional parameters out (a step that must
    /// succeed: an opaque `page_token` or an `If-Match` cannot be made up).
    required_params_only: bool,
}

/// See [`Generator::with_path_values`].
type PathValues<'a> = Box<dyn Fn(&Operation, &Parameter) -> Option<String> + 'a>;

impl<'a> Generator<'a> {
    pub fn new(contract: &'a Contract, unique: &str, overrides: Vec<(String, Value)>) -> Self {
        let unique = unique.chars().filter(char::is_ascii_alphanumeric).collect();
        Generator { contract, unique, overrides, examples_first: false, path_values: None, required_params_only: false }
    }

    /// Prefers the spec's examples (when valid) over generated values, for
    /// scalars other than free text.
    pub fn with_examples_first(mut self) -> Self {
        self.examples_first = true;
        self
    }

    /// Base requests without optional parameters.
    pub fn with_required_params_only(mut self) -> Self {
        self.required_params_only = true;
        self
    }

    /// Path parameter values from `f` (checked against the schema like any
    /// other value; an invalid one falls back to generation).
    pub fn with_path_values(mut self, f: impl Fn(&Operation, &Parameter) -> Option<String> + 'a) -> Self {
        self.path_values = Some(Box::new(f));
        self
    }

    /// Every negative case of every operation. `expired` says whether an
    /// expired token is available.
    pub fn cases(&self, expired: bool) -> Cases {
        let mut out = Cases::default();
        for op in self.contract.operations() {
            if let Err(why) = self.operation_cases(op, expired, &mut out.cases) {
                out.problems.push((op.id.clone(), why));
            }
        }
        out
    }

    fn operation_cases(&self, op: &Operation, expired: bool, out: &mut Vec<Case>) -> Result<(), String> {
        let base = self.base_request(op)?;
        if op.auth_header.is_some() {
            let mut uses = vec![TokenUse::Absent, TokenUse::Empty, TokenUse::Wrong];
            if expired {
                uses.push(TokenUse::Expired);
            }
            for token in uses {
                let code = token.rejection().unwrap_or(VALIDATION_FAILED);
                out.push(Case {
                    operation: op.id.clone(),
                    name: format!("{} 401 {}", op.id, token.label()),
                    request: base.request(op),
                    token,
                    expect: Expect::Unauthorized { code },
                });
            }
        }
        for (i, p) in op.parameters.iter().enumerate() {
            for v in self.parameter_violations(p, &base.params[i]) {
                let mut b = base.clone();
                b.params[i] = v.value;
                out.push(Case {
                    operation: op.id.clone(),
                    name: format!("{} 400 {} {}", op.id, p.name, v.label),
                    request: b.request(op),
                    token: TokenUse::Valid,
                    expect: Expect::Invalid { field: v.field.unwrap_or_else(|| p.name.clone()) },
                });
            }
        }
        if let (Some(schema), Some(body)) = (&op.request_body, &base.body) {
            let mut found = Vec::new();
            self.body_violations(schema, body, "", "", false, &mut found);
            for v in found {
                let mutated = apply(body, &v.pointer, v.change.clone());
                // The violation must really violate, at that field.
                let hits = self.contract.validate(schema, &mutated, Direction::Request);
                if !hits.iter().any(|p| p.pointer == v.pointer || p.pointer.starts_with(&format!("{}/", v.pointer))) {
                    return Err(format!(
                        "{} {}: the generated violation {} is valid; the generator needs teaching",
                        v.field,
                        v.label,
                        super::checker::short(&mutated)
                    ));
                }
                let mut b = base.clone();
                b.body = Some(mutated);
                out.push(Case {
                    operation: op.id.clone(),
                    name: format!("{} 400 {} {}", op.id, v.field, v.label),
                    request: b.request(op),
                    token: TokenUse::Valid,
                    expect: Expect::Invalid { field: v.field },
                });
            }
        }
        Ok(())
    }

    /// A valid request for `op`: every parameter and body field given.
    pub fn base_request(&self, op: &Operation) -> Result<Base, String> {
        let mut params = Vec::new();
        let ok = |schema: &Value, v: &Value| self.contract.validate(schema, v, Direction::Request).is_empty();
        for p in &op.parameters {
            let chosen = match (&self.path_values, p.location.as_str()) {
                (Some(f), "path") => {
                    f(op, p).filter(|text| ok(&p.schema, &coerce(self.contract.resolve(&p.schema), text)))
                }
                _ => None,
            };
            if let Some(text) = chosen {
                params.push(Some(text));
                continue;
            }
            if self.required_params_only && !p.required {
                params.push(None);
                continue;
            }
            let usable = |v: &&Value| ok(&p.schema, v) && param_text(p, v).is_some();
            let example = || p.examples.iter().find(usable).cloned();
            let first = if self.prefers_example(&p.schema) { example() } else { None };
            let v = first
                .or_else(|| self.valid(&p.schema, &p.name))
                .or_else(|| if self.examples_first { example() } else { None })
                .ok_or_else(|| format!("no valid value for parameter {}", p.name))?;
            params.push(Some(param_text(p, &v).ok_or_else(|| {
                format!("parameter {}: no valid value is a scalar or a list that fits one query key", p.name)
            })?));
        }
        let body = match &op.request_body {
            Some(schema) => {
                let example = || {
                    if self.examples_first { op.request_examples.iter().find(|v| ok(schema, v)).cloned() } else { None }
                };
                Some(self.valid(schema, "").or_else(example).ok_or_else(|| "no valid request body".to_owned())?)
            }
            None => None,
        };
        Ok(Base { params, body })
    }

    /// A value valid for `schema`: an override, else generated, else the
    /// schema's example or default; checked with the validator.
    pub fn valid(&self, schema: &Value, name: &str) -> Option<Value> {
        self.valid_at(schema, name, 0)
    }

    /// [`Generator::valid`] `depth` schemas down: recursive schemas (a
    /// `oneOf` member holding its union) end at [`MAX_GENERATION_DEPTH`].
    fn valid_at(&self, schema: &Value, name: &str, depth: usize) -> Option<Value> {
        let ok = |v: &Value| self.contract.validate(schema, v, Direction::Request).is_empty();
        if let Some((_, v)) = self.overrides.iter().find(|(n, _)| n == name) {
            return Some(v.clone()).filter(ok);
        }
        let s = self.contract.resolve(schema);
        let mut candidates = Vec::new();
        if self.prefers_example(s) {
            candidates.extend(s.get("example").cloned());
            candidates.extend(s.get("default").cloned());
        }
        candidates.extend(self.generate(s, name, depth));
        candidates.extend(s.get("example").cloned());
        candidates.extend(s.get("default").cloned());
        candidates.into_iter().find(ok)
    }

    /// Whether the spec's example goes before generation (see `examples_first`).
    fn prefers_example(&self, schema: &Value) -> bool {
        let s = self.contract.resolve(schema);
        let free_text = s.get("format").is_none() && s.get("enum").is_none();
        self.examples_first
            && match s.get("type").and_then(Value::as_str) {
                Some("integer" | "number" | "boolean") => true,
                Some("string") => !free_text,
                _ => false,
            }
    }

    fn generate(&self, s: &Value, name: &str, depth: usize) -> Option<Value> {
        if depth > MAX_GENERATION_DEPTH {
            return None;
        }
        let s = self.contract.resolve(s);
        if let Some(members) = s.get("allOf").and_then(Value::as_array) {
            let mut merged = Map::new();
            for m in members {
                match self.generate(m, name, depth + 1)? {
                    Value::Object(o) => merged.extend(o),
                    other => return Some(other),
                }
            }
            return Some(Value::Object(merged));
        }
        for kw in ["oneOf", "anyOf"] {
            if let Some(alts) = s.get(kw).and_then(Value::as_array) {
                return alts.iter().find_map(|a| self.valid_at(a, name, depth + 1));
            }
        }
        if let Some(first) = s.get("enum").and_then(Value::as_array).and_then(|e| e.first()) {
            return Some(first.clone());
        }
        let ty = s.get("type").and_then(Value::as_str).unwrap_or(if s.get("properties").is_some() {
            "object"
        } else {
            "string"
        });
        match ty {
            "string" => Some(Value::String(self.string(s))),
            "integer" | "number" => {
                let min = s.get("minimum").and_then(Value::as_i64);
                let max = s.get("maximum").and_then(Value::as_i64);
                let excl = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
                let lo = min.map(|m| if excl("exclusiveMinimum") { m + 1 } else { m });
                let hi = max.map(|m| if excl("exclusiveMaximum") { m - 1 } else { m });
                let v = lo.unwrap_or(1);
                Some(json!(hi.map_or(v, |h| v.min(h))))
            }
            "boolean" => Some(json!(true)),
            "array" => {
                let item = self.valid_at(s.get("items")?, name, depth + 1)?;
                let min = s.get("minItems").and_then(Value::as_u64).unwrap_or(1).max(1);
                let n = s.get("maxItems").and_then(Value::as_u64).map_or(min, |m| min.min(m));
                Some(Value::Array((0..n).map(|_| item.clone()).collect()))
            }
            "object" => {
                let required: Vec<&str> = s
                    .get("required")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .collect();
                let mut out = Map::new();
                for (prop, ps) in s.get("properties").and_then(Value::as_object).into_iter().flatten() {
                    if self.contract.resolve(ps).get("readOnly").and_then(Value::as_bool) == Some(true) {
                        continue;
                    }
                    // Optional properties are given too, so their constraints get tested.
                    match self.valid_at(ps, prop, depth + 1) {
                        Some(v) => {
                            out.insert(prop.clone(), v);
                        }
                        None if required.contains(&prop.as_str()) => return None,
                        None => {}
                    }
                }
                Some(Value::Object(out))
            }
            _ => None,
        }
    }

    fn string(&self, s: &Value) -> String {
        let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
        let max = s.get("maxLength").and_then(Value::as_u64).map(|m| m as usize);
        let fit = |mut text: String| {
            while text.chars().count() < min {
                text.push('x');
            }
            if let Some(max) = max {
                text = text.chars().take(max).collect();
            }
            text
        };
        match s.get("format").and_then(Value::as_str) {
            Some("date") => "2025-01-01".into(),
            Some("date-time") => "2025-01-01T00:00:00Z".into(),
            Some("uuid") => uuid::Uuid::new_v4().to_string(),
            Some("email") => {
                let domain = "@example.com";
                let local_max = max.map(|m| m.saturating_sub(domain.len()).max(1));
                let mut local = format!("ct{}", self.unique);
                if let Some(m) = local_max {
                    local = local.chars().take(m).collect();
                }
                format!("{local}{domain}")
            }
            _ => fit(format!("ct{}", self.unique)),
        }
    }

    fn parameter_violations(&self, p: &Parameter, base: &Option<String>) -> Vec<ParamViolation> {
        let mut out = Vec::new();
        if p.required && p.location != "path" {
            out.push(ParamViolation { label: "required".into(), field: None, value: None });
        }
        let Some(base) = base else { return out };
        let schema = self.contract.resolve(&p.schema);
        if schema.get("type").and_then(Value::as_str) == Some("array") {
            return self.array_violations(p, schema, base, out);
        }
        let typed = coerce(schema, base);
        let is_string = schema.get("type").and_then(Value::as_str) == Some("string");
        for v in self.scalar_violations(&p.schema, &typed) {
            let Change::Set(value) = v.change else { continue };
            // On the wire every parameter is text: a string parameter has
            // no wrong type to send.
            if is_string && v.label.starts_with("type") {
                continue;
            }
            let Some(text) = param_string(&value) else { continue };
            // Only violations that survive the trip through a string count:
            // `12345` is a fine value for a string parameter.
            let reparsed = coerce(self.contract.resolve(&p.schema), &text);
            if self.contract.validate(&p.schema, &reparsed, Direction::Request).is_empty() {
                continue;
            }
            // An empty path segment routes elsewhere.
            if p.location == "path" && text.is_empty() {
                continue;
            }
            out.push(ParamViolation { label: v.label, field: None, value: Some(text) });
        }
        out
    }

    /// An array parameter's violations: one item that breaks the items'
    /// schema beside the valid one (alone, when exploded: a one-item list
    /// is the same in either style), and one item too many.
    fn array_violations(
        &self,
        p: &Parameter,
        schema: &Value,
        base: &str,
        mut out: Vec<ParamViolation>,
    ) -> Vec<ParamViolation> {
        let Some(items) = schema.get("items") else { return out };
        let first = base.split(',').next().unwrap_or(base);
        let typed = coerce(self.contract.resolve(items), first);
        let invalid = |text: &str| {
            let list = if p.explode { vec![text] } else { text.split(',').collect() };
            let reparsed = Value::Array(list.iter().map(|t| coerce(self.contract.resolve(items), t)).collect());
            !self.contract.validate(&p.schema, &reparsed, Direction::Request).is_empty()
        };
        let is_string = self.contract.resolve(items).get("type").and_then(Value::as_str) == Some("string");
        for v in self.scalar_violations(items, &typed) {
            let Change::Set(value) = v.change else { continue };
            if is_string && v.label.starts_with("type") {
                continue;
            }
            let Some(bad) = param_string(&value).filter(|b| !b.is_empty() && !b.contains(',')) else { continue };
            let (text, at) = if p.explode { (bad, 0) } else { (format!("{base},{bad}"), base.split(',').count()) };
            if invalid(&text) {
                let field = Some(format!("{}[{at}]", p.name));
                out.push(ParamViolation { label: format!("items {}", v.label), field, value: Some(text) });
            }
        }
        if let Some(max) = schema.get("maxItems").and_then(Value::as_u64).filter(|_| !p.explode) {
            let text = vec![first; max as usize + 1].join(",");
            if invalid(&text) {
                out.push(ParamViolation { label: "maxItems".into(), field: None, value: Some(text) });
            }
        }
        out
    }

    /// Violations of `schema` at one field (`field` names it, `pointer`
    /// locates it in the body), then of everything inside it.
    fn body_violations(
        &self,
        schema: &Value,
        value: &Value,
        pointer: &str,
        field: &str,
        required: bool,
        out: &mut Vec<BodyViolation>,
    ) {
        if !pointer.is_empty() {
            if required {
                out.push(BodyViolation {
                    field: field.into(),
                    pointer: pointer.into(),
                    label: "required".into(),
                    change: Change::Remove,
                });
            }
            for v in self.scalar_violations(schema, value) {
                out.push(BodyViolation {
                    field: field.into(),
                    pointer: pointer.into(),
                    label: v.label,
                    change: v.change,
                });
            }
        }
        for s in self.sources(schema) {
            let required: Vec<&str> =
                s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
            if let (Some(props), Some(obj)) = (s.get("properties").and_then(Value::as_object), value.as_object()) {
                for (name, ps) in props {
                    if let Some(v) = obj.get(name) {
                        let f = if field.is_empty() { name.clone() } else { format!("{field}.{name}") };
                        let ptr = format!("{pointer}/{}", escape(name));
                        self.body_violations(ps, v, &ptr, &f, required.contains(&name.as_str()), out);
                    }
                }
            }
            if let (Some(items), Some(first)) = (s.get("items"), value.as_array().and_then(|a| a.first())) {
                self.body_violations(items, first, &format!("{pointer}/0"), &format!("{field}[0]"), false, out);
            }
        }
    }

    /// The schema objects whose keywords apply to a value: the resolved
    /// schema and, recursively, its `allOf` members.
    fn sources<'s>(&'s self, schema: &'s Value) -> Vec<&'s Value> {
        fn walk<'a>(c: &'a Contract, s: &'a Value, out: &mut Vec<&'a Value>, depth: usize) {
            let s = c.resolve(s);
            out.push(s);
            if depth < 16 {
                for m in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
                    walk(c, m, out, depth + 1);
                }
            }
        }
        let mut out = Vec::new();
        walk(self.contract, schema, &mut out, 0);
        out
    }

    /// One violation per constraint keyword on this value (not inside it).
    fn scalar_violations(&self, schema: &Value, value: &Value) -> Vec<Violation> {
        let mut out = Vec::new();
        let mut add = |label: &str, v: Value| out.push(Violation { label: label.to_owned(), change: Change::Set(v) });
        for s in self.sources(schema) {
            if let Some(ty) = s.get("type").and_then(Value::as_str) {
                match ty {
                    "string" => add("type (number for string)", json!(12345)),
                    "integer" => {
                        add("type (string for integer)", json!("ct"));
                        add("type (1.5 for integer)", json!(1.5));
                    }
                    other => add(&format!("type (string for {other})"), json!("ct")),
                }
                if s.get("nullable").and_then(Value::as_bool) != Some(true) {
                    add("type (null, not nullable)", Value::Null);
                }
            }
            if let Some(options) = s.get("enum").and_then(Value::as_array) {
                let outside = if options.iter().all(Value::is_number) {
                    json!(options.iter().filter_map(Value::as_i64).max().unwrap_or(0) + 1)
                } else {
                    json!("ct_not_in_enum")
                };
                if !options.contains(&outside) {
                    add("enum", outside);
                }
            }
            if let Some(text) = value.as_str() {
                if let Some(min) = s.get("minLength").and_then(Value::as_u64).filter(|m| *m > 0) {
                    add("minLength", json!(text.chars().take(min as usize - 1).collect::<String>()));
                }
                if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                    let pad = (max as usize + 1).saturating_sub(text.chars().count());
                    add("maxLength", json!(format!("{}{text}", "x".repeat(pad))));
                }
                if let Some(re) = s.get("pattern").and_then(Value::as_str).and_then(|p| regex::Regex::new(p).ok()) {
                    let candidates = ["!", "#", " ", "-", "ct!", "ä", "0", "a"];
                    if let Some(c) = candidates.iter().find(|c| !re.is_match(c)) {
                        add("pattern", json!(c));
                    }
                }
                if let Some(format) = s.get("format").and_then(Value::as_str) {
                    // Values of the right shape where one exists, so the
                    // format check itself is what rejects them.
                    let bad = match format {
                        "date" => Some("2025-02-30"),
                        "date-time" => Some("2025-13-01T00:00:00Z"),
                        "uuid" => Some("not-a-uuid"),
                        "email" => Some("not-an-email"),
                        _ => None,
                    };
                    if let Some(bad) = bad.filter(|b| !format_ok(format, b)) {
                        add("format", json!(bad));
                    }
                }
            }
            if value.is_number() {
                let excl = |k: &str| s.get(k).and_then(Value::as_bool) == Some(true);
                let int = s.get("type").and_then(Value::as_str) == Some("integer");
                if let Some(min) = s.get("minimum").and_then(Value::as_f64) {
                    let v = if excl("exclusiveMinimum") { min } else { min - 1.0 };
                    add("minimum", number(v, int));
                }
                if let Some(max) = s.get("maximum").and_then(Value::as_f64) {
                    let v = if excl("exclusiveMaximum") { max } else { max + 1.0 };
                    add("maximum", number(v, int));
                }
                if s.get("format").and_then(Value::as_str) == Some("int32") {
                    add("format", json!(i64::from(i32::MAX) + 1));
                }
            }
            if let Some(items) = value.as_array() {
                if let Some(min) = s.get("minItems").and_then(Value::as_u64).filter(|m| *m > 0) {
                    add("minItems", Value::Array(items.iter().take(min as usize - 1).cloned().collect()));
                }
                if let (Some(max), Some(first)) = (s.get("maxItems").and_then(Value::as_u64), items.first()) {
                    add("maxItems", Value::Array(vec![first.clone(); max as usize + 1]));
                }
                if let (Some(true), Some(first)) = (s.get("uniqueItems").and_then(Value::as_bool), items.first()) {
                    add("uniqueItems", Value::Array(vec![first.clone(), first.clone()]));
                }
            }
            if let (Some(Value::Bool(false)), Some(obj)) = (s.get("additionalProperties"), value.as_object()) {
                let mut extra = obj.clone();
                extra.insert("ct_unexpected".into(), json!(1));
                add("additionalProperties", Value::Object(extra));
            }
        }
        out
    }
}

/// The valid request of an operation: parameter values in the operation's
/// order (`None` = left out) and the body.
#[derive(Debug, Clone)]
pub struct Base {
    pub params: Vec<Option<String>>,
    pub body: Option<Value>,
}

impl Base {
    pub fn request(&self, op: &Operation) -> Request {
        let mut path = op.path.clone();
        let (mut query, mut headers, mut cookies) = (Vec::new(), Vec::new(), Vec::new());
        for (p, v) in op.parameters.iter().zip(&self.params) {
            let Some(v) = v else { continue };
            match p.location.as_str() {
                "path" => path = path.replace(&format!("{{{}}}", p.name), &encode_segment(v)),
                "query" => query.push((p.name.clone(), v.clone())),
                "header" => headers.push((p.name.clone(), v.clone())),
                "cookie" => cookies.push(format!("{}={}", p.name, encode_segment(v))),
                _ => {}
            }
        }
        if !cookies.is_empty() {
            headers.push(("cookie".to_owned(), cookies.join("; ")));
        }
        // The body goes as the media type the operation declares.
        if self.body.is_some()
            && let Some(mt) = op.request_media.as_deref().filter(|mt| *mt != "application/json")
        {
            headers.push(("content-type".to_owned(), mt.to_owned()));
        }
        Request { method: op.method.clone(), path, query, headers, body: self.body.clone() }
    }
}

#[derive(Debug, Clone)]
enum Change {
    Set(Value),
    Remove,
}

struct Violation {
    label: String,
    change: Change,
}

struct BodyViolation {
    field: String,
    pointer: String,
    label: String,
    change: Change,
}

struct ParamViolation {
    label: String,
    /// The name the 400 must give, when not the parameter's own (an item: `fields[1]`).
    field: Option<String>,
    /// `None` leaves the parameter out.
    value: Option<String>,
}

fn number(v: f64, int: bool) -> Value {
    if int && v.fract() == 0.0 { json!(v as i64) } else { json!(v) }
}

/// `body` with the value at `pointer` replaced or removed.
fn apply(body: &Value, pointer: &str, change: Change) -> Value {
    let mut out = body.clone();
    let (parent, last) = pointer.rsplit_once('/').unwrap_or(("", pointer));
    let last = last.replace("~1", "/").replace("~0", "~");
    if let Some(target) = out.pointer_mut(parent) {
        match (target, change) {
            (Value::Object(o), Change::Set(v)) => {
                o.insert(last, v);
            }
            (Value::Object(o), Change::Remove) => {
                o.remove(&last);
            }
            (Value::Array(a), change) => {
                if let Ok(i) = last.parse::<usize>()
                    && i < a.len()
                {
                    match change {
                        Change::Set(v) => a[i] = v,
                        Change::Remove => {
                            a.remove(i);
                        }
                    }
                }
            }
            _ => {}
        }
    }
    out
}

/// A scalar as it travels in a path, query or header.
/// A valid parameter value on the wire: a scalar as its text, a list of
/// scalars comma-joined (or its one item, for an exploded parameter).
fn param_text(p: &Parameter, v: &Value) -> Option<String> {
    match v.as_array() {
        Some(items) if !p.explode => items.iter().map(param_string).collect::<Option<Vec<_>>>().map(|t| t.join(",")),
        Some(items) => match items.as_slice() {
            [one] => param_string(one),
            _ => None,
        },
        None => param_string(v),
    }
}

fn param_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A parameter string read the way its schema types it (what the server
/// does before validating); unparseable text stays a string.
pub(crate) fn coerce(schema: &Value, text: &str) -> Value {
    match schema.get("type").and_then(Value::as_str) {
        Some("integer") => text
            .parse::<i64>()
            .map(Value::from)
            .or_else(|_| text.parse::<u64>().map(Value::from))
            .unwrap_or_else(|_| json!(text)),
        Some("number") => text
            .parse::<f64>()
            .ok()
            .and_then(|f| serde_json::Number::from_f64(f).map(Value::Number))
            .unwrap_or_else(|| json!(text)),
        Some("boolean") => match text {
            "true" => json!(true),
            "false" => json!(false),
            _ => json!(text),
        },
        _ => json!(text),
    }
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    const SPEC: &str = include_str!("../../../spec/openapi.yaml");

    fn generated() -> (Contract, Vec<Case>) {
        let c = Contract::from_yaml(SPEC).unwrap();
        let cases = {
            let g = Generator::new(&c, "u1", vec![("id".into(), json!(424242))]);
            let built = g.cases(true);
            assert!(built.problems.is_empty(), "{:?}", built.problems);
            built.cases
        };
        (c, cases)
    }

    fn names(cases: &[Case], op: &str) -> Vec<String> {
        cases.iter().filter(|c| c.operation == op).map(|c| c.name.clone()).collect()
    }

    #[test]
    fn every_constraint_of_create_user_gets_a_case() {
        let (_, cases) = generated();
        let got = names(&cases, "createUser");
        for want in [
            "createUser 401 no token",
            "createUser 401 empty token",
            "createUser 401 wrong token",
            "createUser 401 expired token",
            "createUser 400 username required",
            "createUser 400 username minLength",
            "createUser 400 username maxLength",
            "createUser 400 username pattern",
            "createUser 400 username type (number for string)",
            "createUser 400 username type (null, not nullable)",
            "createUser 400 email format",
            "createUser 400 email maxLength",
            "createUser 400 password minLength",
        ] {
            assert!(got.contains(&want.to_owned()), "missing {want:?} in {got:#?}");
        }
        // `format: password` is not a checkable format: no case for it.
        assert!(!got.iter().any(|n| n.starts_with("createUser 400 password format")));
    }

    #[test]
    fn parameters_arrays_and_headers() {
        let (_, cases) = generated();
        let list = names(&cases, "listUsers");
        for want in [
            "listUsers 400 page minimum",
            "listUsers 400 page type (string for integer)",
            "listUsers 400 page type (1.5 for integer)",
            "listUsers 400 page_size maximum",
            "listUsers 400 status enum",
        ] {
            assert!(list.contains(&want.to_owned()), "missing {want:?} in {list:#?}");
        }
        // A string query parameter cannot be sent as a number or null.
        assert!(!list.iter().any(|n| n.starts_with("listUsers 400 status type")), "{list:#?}");
        let email = names(&cases, "submitEmailTask");
        for want in [
            "submitEmailTask 400 cc[0] format",
            "submitEmailTask 400 Idempotency-Key minLength",
            "submitEmailTask 400 Idempotency-Key maxLength",
        ] {
            assert!(email.contains(&want.to_owned()), "missing {want:?} in {email:#?}");
        }
        let get = cases.iter().find(|c| c.name == "getUserById 400 id minimum").unwrap();
        assert_eq!(get.request.path, "/users/0");
        let task = names(&cases, "getTask");
        assert!(task.contains(&"getTask 400 task_id format".to_owned()), "{task:#?}");
        // Health is open: no cases at all.
        assert!(names(&cases, "healthCheck").is_empty());
    }

    #[test]
    fn base_requests_are_valid_and_violations_are_not() {
        let (c, cases) = generated();
        let g = Generator::new(&c, "u1", vec![]);
        for op in c.operations() {
            let base = g.base_request(op).unwrap();
            if let (Some(schema), Some(body)) = (&op.request_body, &base.body) {
                assert_eq!(c.validate(schema, body, Direction::Request), vec![], "{}", op.id);
            }
        }
        let sync = cases.iter().find(|c| c.name == "submitSyncTask 400 start_date format").unwrap();
        assert_eq!(sync.request.body.as_ref().unwrap()["start_date"], "2025-02-30");
        let user = cases.iter().find(|c| c.name == "createUser 400 username maxLength").unwrap();
        assert_eq!(user.request.body.as_ref().unwrap()["username"].as_str().unwrap().len(), 51);
        let required = cases.iter().find(|c| c.name == "createUser 400 email required").unwrap();
        assert!(required.request.body.as_ref().unwrap().get("email").is_none());
    }

    #[test]
    fn a_new_constraint_in_the_yaml_is_tested_without_new_code() {
        let spec = SPEC.replace(
            "        body:\n          type: string\n",
            "        body:\n          type: string\n          minLength: 2\n          pattern: '^[A-Z]'\n",
        );
        assert_ne!(spec, SPEC);
        let c = Contract::from_yaml(&spec).unwrap();
        let built = Generator::new(&c, "u1", vec![]).cases(false);
        assert!(built.problems.is_empty(), "{:?}", built.problems);
        let email = names(&built.cases, "submitEmailTask");
        assert!(email.contains(&"submitEmailTask 400 body minLength".to_owned()), "{email:#?}");
        assert!(email.contains(&"submitEmailTask 400 body pattern".to_owned()), "{email:#?}");
        assert!(!email.contains(&"submitEmailTask 401 expired token".to_owned()));
    }

    #[test]
    fn the_answer_must_name_the_field_and_only_it() {
        let (_, cases) = generated();
        let case = cases.iter().find(|c| c.name == "submitEmailTask 400 cc[0] format").unwrap();
        let body = |fields: &[&str]| json!({"data": {"errors": fields.iter().map(|f| json!({"field": f, "message": "m"})).collect::<Vec<_>>()}});
        let name = FieldFormat::JsonName;
        assert_eq!(case.check_body(&body(&["cc[0]"]), name), Ok(()));
        assert!(case.check_body(&body(&["cc"]), name).unwrap_err().contains("expected \"cc[0]\" among them"));
        assert!(case.check_body(&body(&["cc[0]", "to"]), name).unwrap_err().contains("also names [\"to\"]"));
        let pointer = FieldFormat::JsonPointer;
        assert_eq!(case.check_body(&body(&["/cc/0", "/cc"]), pointer), Ok(()));
        assert!(case.check_body(&body(&["cc[0]"]), pointer).is_err());
    }
}
