//! Semantic comparison of two OpenAPI documents, for the round-trip test
//! (the document the generated service emits vs `spec/openapi.yaml`).
//!
//! Normalization, applied to both sides:
//! - every `$ref` (schemas, responses, parameters, links) is inlined (a schema's
//!   reference back to itself stays a `$ref`), then
//!   `components` is dropped except `securitySchemes`;
//! - `allOf` is flattened into one object (a bare `type: object` member
//!   property yields to a more specific one, as the generator does);
//! - media types lose `; charset=…` and media-type level `example(s)`
//!   (poem-openapi cannot emit those);
//! - whole floats become integers (`100.0` → `100`), `required` lists are
//!   sorted, defaults are dropped (`deprecated: false`, `required: false`,
//!   also on response headers, where `Content-Type` is dropped as OpenAPI
//!   ignores it;
//!   query `explode: true`), parameters become a map keyed `in:name`, tags a
//!   map keyed by name;
//! - path-level `parameters` are copied into each operation of the path,
//!   and the document's `security` into each operation without its own;
//! - `allOf: [$ref]` to a scalar or array is that schema with the keywords
//!   beside it;
//! - the `openapi` version string and top-level `x-` extensions are dropped,
//!   and so are empty top-level `servers` and `tags` (the same as absent).
//!
//! Anything left is a real difference.

use serde_json::{Map, Value};

/// Normalizes one document (as JSON).
pub fn normalize(doc: &Value) -> Value {
    // The document's `security` is every operation's default: written out
    // per operation, so both spellings compare equal.
    let mut doc = doc.clone();
    if let Some(global) = doc.as_object_mut().and_then(|d| d.remove("security")) {
        for item in doc.get_mut("paths").and_then(Value::as_object_mut).into_iter().flat_map(|p| p.values_mut()) {
            for (method, op) in item.as_object_mut().into_iter().flatten() {
                if method != "parameters"
                    && let Some(op) = op.as_object_mut()
                    && !op.contains_key("security")
                {
                    op.insert("security".into(), global.clone());
                }
            }
        }
    }
    let doc = &doc;
    let components = doc.get("components").cloned().unwrap_or(Value::Null);
    let mut out = Map::new();
    for (k, v) in doc.as_object().into_iter().flatten() {
        match k.as_str() {
            "openapi" | "components" => {}
            k if k.starts_with("x-") => {}
            "servers" | "tags" if v.as_array().is_some_and(Vec::is_empty) => {}
            "paths" => {
                out.insert(k.clone(), paths(v, &components));
            }
            "tags" => {
                let mut m = Map::new();
                for t in v.as_array().into_iter().flatten() {
                    if let Some(name) = t.get("name").and_then(Value::as_str) {
                        m.insert(name.to_owned(), t.clone());
                    }
                }
                out.insert(k.clone(), Value::Object(m));
            }
            _ => {
                out.insert(k.clone(), numbers(v.clone()));
            }
        }
    }
    if let Some(s) = components.get("securitySchemes") {
        out.insert("securitySchemes".into(), s.clone());
    }
    Value::Object(out)
}

fn resolve<'a>(v: &'a Value, components: &'a Value) -> &'a Value {
    let mut cur = v;
    for _ in 0..32 {
        match cur.get("$ref").and_then(Value::as_str) {
            Some(r) => {
                let path: Vec<&str> = r.trim_start_matches("#/components/").split('/').collect();
                let mut target = components;
                for p in path {
                    target = target.get(p.replace("~1", "/").replace("~0", "~")).unwrap_or(&Value::Null);
                }
                cur = target;
            }
            None => return cur,
        }
    }
    cur
}

fn paths(v: &Value, c: &Value) -> Value {
    let mut out = Map::new();
    for (path, item) in v.as_object().into_iter().flatten() {
        // Path-level parameters apply to every operation of the path (an
        // operation's own parameter of the same name and location wins).
        let shared: Vec<Value> = item.get("parameters").and_then(Value::as_array).cloned().unwrap_or_default();
        let mut ops = Map::new();
        for (method, op) in item.as_object().into_iter().flatten() {
            if method == "parameters" || method == "summary" || method == "description" {
                continue;
            }
            let mut op = op.clone();
            if !shared.is_empty()
                && let Some(o) = op.as_object_mut()
            {
                let own = o.entry("parameters").or_insert_with(|| Value::Array(vec![]));
                if let Some(list) = own.as_array_mut() {
                    let key = |p: &Value| {
                        let p = resolve(p, c);
                        (p.get("in").cloned(), p.get("name").cloned())
                    };
                    for sp in &shared {
                        if !list.iter().any(|p| key(p) == key(sp)) {
                            list.push(sp.clone());
                        }
                    }
                }
            }
            ops.insert(method.clone(), operation(&op, c));
        }
        out.insert(path.clone(), Value::Object(ops));
    }
    Value::Object(out)
}

/// Response headers, references inlined, defaults dropped; OpenAPI ignores
/// a header named `Content-Type`, so it is dropped too.
fn headers(v: &Value, c: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, h) in v.as_object().into_iter().flatten() {
        if name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        let mut hm = Map::new();
        for (k, v) in resolve(h, c).as_object().into_iter().flatten() {
            match k.as_str() {
                "deprecated" | "required" if v == &Value::Bool(false) => {}
                "schema" => {
                    hm.insert(k.clone(), numbers(resolve(v, c).clone()));
                }
                _ => {
                    hm.insert(k.clone(), numbers(v.clone()));
                }
            }
        }
        out.insert(name.clone(), Value::Object(hm));
    }
    out
}

fn operation(op: &Value, c: &Value) -> Value {
    let mut out = Map::new();
    for (k, v) in op.as_object().into_iter().flatten() {
        match k.as_str() {
            "deprecated" if v == &Value::Bool(false) => {}
            "parameters" => {
                let mut m = Map::new();
                for p in v.as_array().into_iter().flatten() {
                    let p = resolve(p, c);
                    let key = format!(
                        "{}:{}",
                        p.get("in").and_then(Value::as_str).unwrap_or(""),
                        p.get("name").and_then(Value::as_str).unwrap_or("")
                    );
                    m.insert(key, parameter(p, c));
                }
                out.insert(k.clone(), Value::Object(m));
            }
            "requestBody" => {
                let rb = resolve(v, c);
                let mut m = Map::new();
                for (k2, v2) in rb.as_object().into_iter().flatten() {
                    match k2.as_str() {
                        "required" if v2 == &Value::Bool(false) => {}
                        "content" => {
                            m.insert(k2.clone(), content(v2, c));
                        }
                        _ => {
                            m.insert(k2.clone(), numbers(v2.clone()));
                        }
                    }
                }
                out.insert(k.clone(), Value::Object(m));
            }
            "responses" => {
                let mut m = Map::new();
                for (status, r) in v.as_object().into_iter().flatten() {
                    let r = resolve(r, c);
                    let mut rm = Map::new();
                    for (k2, v2) in r.as_object().into_iter().flatten() {
                        match k2.as_str() {
                            "content" => {
                                rm.insert(k2.clone(), content(v2, c));
                            }
                            "headers" => {
                                let hs = headers(v2, c);
                                if !hs.is_empty() {
                                    rm.insert(k2.clone(), Value::Object(hs));
                                }
                            }
                            "links" => {
                                let ls = v2.as_object().into_iter().flatten();
                                let ls = ls.map(|(n, l)| (n.clone(), numbers(resolve(l, c).clone()))).collect();
                                rm.insert(k2.clone(), Value::Object(ls));
                            }
                            _ => {
                                rm.insert(k2.clone(), numbers(v2.clone()));
                            }
                        }
                    }
                    m.insert(status.clone(), Value::Object(rm));
                }
                out.insert(k.clone(), Value::Object(m));
            }
            _ => {
                out.insert(k.clone(), numbers(v.clone()));
            }
        }
    }
    Value::Object(out)
}

fn parameter(p: &Value, c: &Value) -> Value {
    let mut out = Map::new();
    let in_query = p.get("in").and_then(Value::as_str) == Some("query");
    let style = p.get("style").and_then(Value::as_str).unwrap_or(match p.get("in").and_then(Value::as_str) {
        Some("query" | "cookie") => "form",
        _ => "simple",
    });
    for (k, v) in p.as_object().into_iter().flatten() {
        match k.as_str() {
            "deprecated" | "required" if v == &Value::Bool(false) => {}
            // `explode` changes nothing for scalar values, and its default
            // is `true` for the `form` style only.
            "explode" if *v == Value::Bool(style == "form") || !is_collection(p, c) => {}
            // Each location's default style.
            "style" if in_query && v == "form" => {}
            "style" if matches!(p.get("in").and_then(Value::as_str), Some("path" | "header")) && v == "simple" => {}
            "style" if p.get("in").and_then(Value::as_str) == Some("cookie") && v == "form" => {}
            "schema" => {
                out.insert(k.clone(), schema(v, c));
            }
            _ => {
                out.insert(k.clone(), numbers(v.clone()));
            }
        }
    }
    Value::Object(out)
}

fn is_collection(p: &Value, c: &Value) -> bool {
    let s = p.get("schema").map(|s| resolve(s, c));
    matches!(s.and_then(|s| s.get("type")).and_then(Value::as_str), Some("array" | "object"))
}

fn content(v: &Value, c: &Value) -> Value {
    let mut out = Map::new();
    for (mt, media) in v.as_object().into_iter().flatten() {
        let mt = mt.split(';').next().unwrap_or(mt).trim().to_owned();
        let mut m = Map::new();
        if let Some(s) = media.get("schema") {
            m.insert("schema".into(), schema(s, c));
        }
        out.insert(mt, Value::Object(m));
    }
    Value::Object(out)
}

thread_local! {
    /// The schema components being inlined right now, outermost first.
    static INLINING: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A schema with its references inlined, except a reference back to a
/// component being inlined (a recursive schema), which stays `$ref`.
fn schema(v: &Value, c: &Value) -> Value {
    let Some(r) = v.get("$ref").and_then(Value::as_str) else { return schema_inline(v, c) };
    if INLINING.with(|s| s.borrow().iter().any(|x| x == r)) {
        return serde_json::json!({ "$ref": r });
    }
    INLINING.with(|s| s.borrow_mut().push(r.to_owned()));
    let out = schema_inline(v, c);
    INLINING.with(|s| s.borrow_mut().pop());
    out
}

fn schema_inline(v: &Value, c: &Value) -> Value {
    let v = resolve(v, c);
    let Some(obj) = v.as_object() else { return numbers(v.clone()) };
    if let Some(members) = obj.get("allOf").and_then(Value::as_array) {
        // `allOf: [$ref]` to a scalar or an array (to annotate it): the
        // member with the keywords beside `allOf` on top, as the generator
        // reads it.
        if let [only] = members.as_slice() {
            let m = schema(only, c);
            if m.get("type").is_some_and(|t| t != "object")
                && let Some(m) = m.as_object()
            {
                let mut merged = m.clone();
                for (k, x) in obj.iter().filter(|(k, _)| k.as_str() != "allOf") {
                    merged.insert(k.clone(), numbers(x.clone()));
                }
                return Value::Object(merged);
            }
        }
        let mut merged = Map::new();
        merged.insert("type".into(), Value::from("object"));
        let mut props = Map::new();
        let mut required: Vec<Value> = Vec::new();
        for m in members {
            let m = schema(m, c);
            for (k, p) in m.get("properties").and_then(Value::as_object).into_iter().flatten() {
                let bare = |x: &Value| x.get("properties").is_none() && x.get("type") == Some(&Value::from("object"));
                match props.get(k) {
                    Some(existing) if !bare(existing) => {}
                    _ => {
                        props.insert(k.clone(), p.clone());
                    }
                }
            }
            for r in m.get("required").and_then(Value::as_array).into_iter().flatten() {
                if !required.contains(r) {
                    required.push(r.clone());
                }
            }
            if merged.get("description").is_none()
                && let Some(d) = m.get("description")
            {
                merged.insert("description".into(), d.clone());
            }
        }
        for (k, x) in obj {
            if k != "allOf" {
                merged.insert(k.clone(), schema_value(k, x, c));
            }
        }
        merged.insert("properties".into(), Value::Object(props));
        if !required.is_empty() {
            required.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            merged.insert("required".into(), Value::Array(required));
        }
        return Value::Object(merged);
    }
    let mut out = Map::new();
    for (k, x) in obj {
        out.insert(k.clone(), schema_value(k, x, c));
    }
    Value::Object(out)
}

fn schema_value(k: &str, x: &Value, c: &Value) -> Value {
    match k {
        "properties" => {
            Value::Object(x.as_object().into_iter().flatten().map(|(pk, pv)| (pk.clone(), schema(pv, c))).collect())
        }
        "items" | "additionalProperties" if x.is_object() => schema(x, c),
        "oneOf" | "anyOf" => Value::Array(x.as_array().into_iter().flatten().map(|s| schema(s, c)).collect()),
        "required" => {
            let mut r: Vec<Value> = x.as_array().cloned().unwrap_or_default();
            r.sort_by(|a, b| a.as_str().cmp(&b.as_str()));
            Value::Array(r)
        }
        _ => numbers(x.clone()),
    }
}

/// Whole floats become integers (poem-openapi writes `100.0`); trailing
/// newlines of `description`s (YAML block scalars) are dropped, as
/// poem-openapi trims them (so trailing white space of every string is).
fn numbers(v: Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.trim_end().to_owned()),
        Value::Number(n) if n.is_f64() => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(a) => Value::Array(a.into_iter().map(numbers).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, v)| (k, numbers(v))).collect()),
        other => other,
    }
}

/// Every difference between `expected` and `actual`, one line each:
/// `<JSON pointer>: expected <value>, got <value>`.
pub fn diff(expected: &Value, actual: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_at("", expected, actual, &mut out);
    out
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 { format!("{}…", s.chars().take(160).collect::<String>()) } else { s }
}

fn diff_at(ptr: &str, e: &Value, a: &Value, out: &mut Vec<String>) {
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            for (k, ev) in eo {
                let p = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                match ao.get(k) {
                    Some(av) => diff_at(&p, ev, av, out),
                    None => out.push(format!("{p}: expected {}, missing in the emitted document", short(ev))),
                }
            }
            for (k, av) in ao {
                if !eo.contains_key(k) {
                    let p = format!("{ptr}/{}", k.replace('~', "~0").replace('/', "~1"));
                    out.push(format!("{p}: not in the spec, emitted {}", short(av)));
                }
            }
        }
        (Value::Array(ea), Value::Array(aa)) if ea.len() == aa.len() => {
            for (i, (ev, av)) in ea.iter().zip(aa).enumerate() {
                diff_at(&format!("{ptr}/{i}"), ev, av, out);
            }
        }
        _ if e == a => {}
        _ => out.push(format!("{ptr}: expected {}, got {}", short(e), short(a))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn flattens_all_of_and_ignores_float_spelling() {
        let spec = json!({"paths": {"/a": {"get": {"responses": {"200": {"description": "d", "content": {"application/json": {"schema": {
            "allOf": [{"$ref": "#/components/schemas/E"}, {"type": "object", "properties": {"data": {"type": "integer", "maximum": 100}}}]
        }}}}}}}}, "components": {"schemas": {"E": {"type": "object", "required": ["code"], "properties": {"code": {"type": "integer"}, "data": {"type": "object"}}}}}});
        let emitted = json!({"paths": {"/a": {"get": {"responses": {"200": {"description": "d", "content": {"application/json; charset=utf-8": {"schema": {
            "type": "object", "required": ["code"], "properties": {"code": {"type": "integer"}, "data": {"type": "integer", "maximum": 100.0}}
        }}}}}}}}});
        assert_eq!(diff(&normalize(&spec), &normalize(&emitted)), Vec::<String>::new());
    }

    #[test]
    fn reports_a_changed_constraint_by_pointer() {
        let a = json!({"paths": {"/a": {"get": {"parameters": [{"name": "p", "in": "query", "schema": {"type": "integer", "maximum": 100}}]}}}});
        let b = json!({"paths": {"/a": {"get": {"parameters": [{"name": "p", "in": "query", "schema": {"type": "integer", "maximum": 50}}]}}}});
        let d = diff(&normalize(&a), &normalize(&b));
        assert_eq!(d, vec!["/paths/~1a/get/parameters/query:p/schema/maximum: expected 100, got 50".to_owned()]);
    }
}
