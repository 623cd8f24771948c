//! Reading the spec's JSON schemas: `$ref`s followed, `allOf` flattened,
//! properties found by path, and values read and written at those paths.

use serde_json::{Map, Value};

use super::synth::MAX_DEPTH;
use crate::Problem;

/// Where a body schema carries the resource: the path of the object with
/// one of the `names` among its properties (the body itself, or an object
/// property of it up to two levels down), and the id property's name.
pub(super) fn locate(doc: &Value, schema: &Value, names: &[String]) -> Option<(Vec<String>, String)> {
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
pub(super) fn locate_array(doc: &Value, schema: &Value, depth: usize) -> Option<Vec<String>> {
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
pub(super) fn schema_at<'a>(doc: &'a Value, schema: &'a Value, at: &[String]) -> Option<&'a Value> {
    let mut s = resolve(doc, schema);
    for k in at {
        s = resolve(doc, property(doc, s, k)?);
    }
    Some(s)
}

pub(super) fn property_schema<'a>(doc: &'a Value, schema: &'a Value, at: &[String], name: &str) -> &'a Value {
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

pub(super) fn get_at_mut<'v>(v: &'v mut Value, at: &[String]) -> Option<&'v mut Value> {
    let mut cur = v;
    for k in at {
        cur = cur.as_object_mut()?.get_mut(k)?;
    }
    cur.is_object().then_some(cur)
}

pub(super) fn set_at(v: &mut Value, at: &[String], new: Value) {
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
pub(super) fn merge(
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

pub(super) fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub(super) fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Sorts responses: codes ascending, then `1XX`…`5XX`, then `default`.
pub(super) fn status_order(k: &str) -> u16 {
    match k.parse::<u16>() {
        Ok(c) => c,
        Err(_) if k == "default" => 999,
        Err(_) => k.chars().next().and_then(|c| c.to_digit(10)).map_or(998, |d| d as u16 * 100 + 600),
    }
}

/// Follows `$ref`s (local ones) to the schema they name.
pub(super) fn resolve<'a>(doc: &'a Value, mut v: &'a Value) -> &'a Value {
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
pub(super) fn flatten(doc: &Value, schema: &Value) -> Value {
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
pub(super) fn overlay_problem(doc: &Value, schema: &Value, v: &mut Value, problem: &Problem) {
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
