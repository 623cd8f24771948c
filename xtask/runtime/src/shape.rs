//! Shapes, the structural half of validation, and [`validate_value`], which
//! runs the structural pass, serde and garde over one JSON value.

use std::fmt;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::field_errors::{FieldErrors, Loc, MAX_LISTED_ERRORS, Seg, join};

/// A static description of a JSON schema's structure (types, required,
/// nullable, enums, formats). It is checked before deserializing so that a
/// wrong type or a missing field is reported by name, together with every
/// other failure, instead of serde stopping at the first one.
#[derive(Debug)]
pub enum Shape {
    Any,
    Bool,
    Integer {
        min: i64,
        max: i64,
    },
    Number,
    String(StrFormat),
    Enum(&'static [&'static str]),
    Array(&'static Shape),
    Object(&'static [Prop]),
    /// An object with `additionalProperties: false`: any other property
    /// is reported (and dropped, so the rest can still be checked).
    ClosedObject(&'static [Prop]),
    Map(&'static Shape),
    /// Properties beside `additionalProperties: {schema}`: every other
    /// property's value has the `rest` shape.
    ObjectRest(&'static [Prop], &'static Shape),
    /// `minProperties` / `maxProperties` around an object's own shape.
    PropertyCount {
        min: usize,
        max: usize,
        inner: &'static Shape,
    },
    Nullable(&'static Shape),
    /// Exactly one member must match.
    OneOf(&'static [&'static Shape]),
    /// At least one member must match.
    AnyOf(&'static [&'static Shape]),
    /// A `oneOf` without discriminator: each member with its signature. Only
    /// members whose signature the value has are considered; one is checked
    /// in place (its errors are precise), several are tried in turn.
    OneOfSigned(&'static [(&'static crate::select::Signature, &'static Shape)]),
    /// A union whose member is named by a string property's value.
    Discriminated {
        property: &'static str,
        mapping: &'static [(&'static str, &'static Shape)],
    },
}

/// String formats that change the Rust type (and so must parse).
#[derive(Debug, Clone, Copy)]
pub enum StrFormat {
    Plain,
    Date,
    DateTime,
    Uuid,
    /// `*` or a list of entity-tags: an `If-Match` header that
    /// [`crate::etag::IfMatch`] reads.
    EntityTags,
}

/// One property of an object shape.
#[derive(Debug)]
pub struct Prop {
    pub name: &'static str,
    pub required: bool,
    pub shape: &'static Shape,
    pub access: Access,
}

/// `readOnly` / `writeOnly`: which direction a property travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadWrite,
    /// Only in responses: a request's value is ignored (dropped before the
    /// handler sees it), and it is never required there.
    ReadOnly,
    /// Only in requests: never serialized, and a response carrying it is
    /// a violation.
    WriteOnly,
}

impl Shape {
    /// A value of the right type standing in for a bad one, so the rest of
    /// the object can still be deserialized and checked by garde.
    fn placeholder(&self) -> Value {
        match self {
            Shape::Any | Shape::Nullable(_) => Value::Null,
            Shape::Bool => Value::Bool(false),
            Shape::Integer { min, .. } => Value::from((*min).max(0)),
            Shape::Number => Value::from(0),
            Shape::String(StrFormat::Plain) => Value::from(""),
            Shape::String(StrFormat::Date) => Value::from("1970-01-01"),
            Shape::String(StrFormat::DateTime) => Value::from("1970-01-01T00:00:00Z"),
            Shape::String(StrFormat::Uuid) => Value::from("00000000-0000-0000-0000-000000000000"),
            Shape::String(StrFormat::EntityTags) => Value::from("*"),
            Shape::Enum(values) => Value::from(values.first().copied().unwrap_or_default()),
            Shape::Array(_) => Value::Array(Vec::new()),
            Shape::Map(_) => Value::Object(Map::new()),
            Shape::PropertyCount { inner, .. } => inner.placeholder(),
            Shape::Object(props) | Shape::ClosedObject(props) | Shape::ObjectRest(props, _) => Value::Object(
                props.iter().filter(|p| p.required).map(|p| (p.name.to_owned(), p.shape.placeholder())).collect(),
            ),
            Shape::OneOf(variants) | Shape::AnyOf(variants) => {
                variants.first().map_or(Value::Null, |s| s.placeholder())
            }
            Shape::OneOfSigned(members) => members.first().map_or(Value::Null, |(_, s)| s.placeholder()),
            Shape::Discriminated { property, mapping } => match mapping.first() {
                Some((value, shape)) => {
                    let mut v = shape.placeholder();
                    if let Some(m) = v.as_object_mut() {
                        m.insert((*property).to_owned(), Value::from(*value));
                    }
                    v
                }
                None => Value::Null,
            },
        }
    }

    /// The placeholder of property `name` of an object shape.
    pub(crate) fn property_placeholder(&self, name: &str) -> Option<Value> {
        match self {
            Shape::Object(props) | Shape::ClosedObject(props) | Shape::ObjectRest(props, _) => {
                props.iter().find(|p| p.name == name).map(|p| p.shape.placeholder())
            }
            Shape::PropertyCount { inner, .. } => inner.property_placeholder(name),
            _ => None,
        }
    }

    /// Checks `value` in place. Bad members are reported and replaced by
    /// placeholders; returns false when `value` itself has the wrong type.
    /// Time is linear in the size of `value` (times the nesting of oneOf
    /// members in the schema, a constant).
    pub fn check(&self, value: &mut Value, base: &str, errs: &mut FieldErrors) -> bool {
        // Linear: every value is visited a bounded number of times, however
        // its unions nest (see `FieldErrors::budget`).
        errs.budget = errs.work.saturating_add(WORK_PER_VALUE.saturating_mul(count_values(value)));
        let root = Loc::root(base, errs);
        self.check_at(value, &root, errs)
    }

    fn check_at(&self, value: &mut Value, loc: &Loc<'_>, errs: &mut FieldErrors) -> bool {
        errs.work += 1;
        if errs.work > errs.budget {
            if !errs.over_budget {
                errs.over_budget = true;
                errs.fail(loc, "is too costly to validate (unions nested in unions that cannot be told apart)");
            }
            return false;
        }
        match self {
            Shape::Any => true,
            Shape::Nullable(inner) => value.is_null() || inner.check_at(value, loc, errs),
            _ if value.is_null() => expect(false, loc, "must not be null", errs),
            Shape::Bool => expect(value.is_boolean(), loc, "must be a boolean", errs),
            Shape::Number => expect(value.is_number(), loc, "must be a number", errs),
            Shape::Integer { min, max } => match value.as_i64() {
                Some(v) if (*min..=*max).contains(&v) => true,
                Some(_) => expect(false, loc, format_args!("must be an integer between {min} and {max}"), errs),
                None if value.is_u64() => expect(false, loc, "integer is out of range", errs),
                None => expect(false, loc, "must be an integer", errs),
            },
            Shape::String(format) => match value.as_str() {
                None => expect(false, loc, "must be a string", errs),
                Some(s) => match format {
                    StrFormat::Plain => true,
                    StrFormat::Date => expect(
                        s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
                        loc,
                        "must be a calendar date (YYYY-MM-DD)",
                        errs,
                    ),
                    StrFormat::DateTime => expect(
                        chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                        loc,
                        "must be an RFC 3339 date-time",
                        errs,
                    ),
                    StrFormat::Uuid => expect(uuid::Uuid::parse_str(s).is_ok(), loc, "must be a UUID", errs),
                    StrFormat::EntityTags => expect(
                        crate::etag::is_entity_tag_list(s),
                        loc,
                        "must be `*` or a list of entity-tags such as \"v1\" (RFC 9110 §13.1.1)",
                        errs,
                    ),
                },
            },
            Shape::Enum(values) => match value.as_str() {
                Some(s) if values.contains(&s) => true,
                // The value is named (shortened: it is the client's input),
                // so an unknown name in a list says which one it was.
                Some(s) => {
                    expect(false, loc, format_args!("{:?} is not one of: {}", Short(s), values.join(", ")), errs)
                }
                None => expect(false, loc, format_args!("must be one of: {}", values.join(", ")), errs),
            },
            Shape::Array(item) => {
                let Some(items) = value.as_array_mut() else {
                    return expect(false, loc, "must be an array", errs);
                };
                for (i, v) in items.iter_mut().enumerate() {
                    if !item.check_at(v, &loc.child(Seg::Index(i), errs), errs) {
                        *v = item.placeholder();
                    }
                }
                true
            }
            Shape::Map(item) => {
                let Some(map) = value.as_object_mut() else {
                    return expect(false, loc, "must be an object", errs);
                };
                for (k, v) in map.iter_mut() {
                    if !item.check_at(v, &loc.child(Seg::Key(k), errs), errs) {
                        *v = item.placeholder();
                    }
                }
                true
            }
            Shape::PropertyCount { min, max, inner } => {
                if let Some(n) = value.as_object().map(Map::len)
                    && !(*min..=*max).contains(&n)
                {
                    let msg = match (*min, *max) {
                        (0, max) => format!("must have at most {max} properties"),
                        (min, usize::MAX) => format!("must have at least {min} properties"),
                        (min, max) => format!("must have between {min} and {max} properties"),
                    };
                    errs.fail(loc, msg);
                }
                inner.check_at(value, loc, errs)
            }
            Shape::Object(props) | Shape::ClosedObject(props) | Shape::ObjectRest(props, _) => {
                let Some(map) = value.as_object_mut() else {
                    return expect(false, loc, "must be an object", errs);
                };
                if let Shape::ObjectRest(_, rest) = self {
                    for (k, v) in map.iter_mut().filter(|(k, _)| !props.iter().any(|p| p.name == k.as_str())) {
                        if !rest.check_at(v, &loc.child(Seg::Key(k), errs), errs) {
                            *v = rest.placeholder();
                        }
                    }
                }
                if matches!(self, Shape::ClosedObject(_)) {
                    let unknown: Vec<String> =
                        map.keys().filter(|k| !props.iter().any(|p| p.name == k.as_str())).cloned().collect();
                    for k in unknown {
                        errs.fail(&loc.child(Seg::Key(&k), errs), "is not a property of this object");
                        map.remove(&k);
                    }
                }
                for prop in props.iter() {
                    match (prop.access, errs.responding) {
                        (Access::ReadOnly, false) => {
                            map.remove(prop.name);
                            continue;
                        }
                        (Access::WriteOnly, true) => {
                            if map.contains_key(prop.name) {
                                errs.fail(&loc.child(Seg::Key(prop.name), errs), "is writeOnly: never in a response");
                            }
                            continue;
                        }
                        _ => {}
                    }
                    // Not collapsed into a guard: the check mutates `v`,
                    // which a match guard cannot.
                    #[allow(clippy::collapsible_match)]
                    match map.get_mut(prop.name) {
                        None if prop.required => {
                            errs.fail(&loc.child(Seg::Key(prop.name), errs), "is required");
                            map.insert(prop.name.to_owned(), prop.shape.placeholder());
                        }
                        None => {}
                        Some(v) => {
                            if !prop.shape.check_at(v, &loc.child(Seg::Key(prop.name), errs), errs) {
                                *v = prop.shape.placeholder();
                            }
                        }
                    }
                }
                true
            }
            Shape::Discriminated { property, mapping } => {
                let Some(map) = value.as_object() else {
                    return expect(false, loc, "must be an object", errs);
                };
                let named = map.get(*property).and_then(Value::as_str);
                match named.and_then(|n| mapping.iter().find(|(v, _)| *v == n)) {
                    // Checked as that member only, so its errors are precise.
                    Some((_, shape)) => shape.check_at(value, loc, errs),
                    None => {
                        let values: Vec<&str> = mapping.iter().map(|(v, _)| *v).collect();
                        let at = loc.child(Seg::Key(property), errs);
                        errs.fail(&at, format!("must be one of {}", values.join(", ")));
                        false
                    }
                }
            }
            Shape::OneOfSigned(members) => {
                let mut fitting = members.iter().filter(|(sig, _)| sig.fits(value)).map(|(_, s)| *s);
                match (fitting.next(), fitting.next()) {
                    (None, _) => expect(false, loc, "does not match any of the allowed schemas", errs),
                    (Some(only), None) => only.check_at(value, loc, errs),
                    (Some(a), Some(b)) => {
                        let candidates: Vec<&Shape> = [a, b].into_iter().chain(fitting).collect();
                        match probe_matches(&candidates, value, loc, errs) {
                            None => false,
                            Some(0) => expect(false, loc, "does not match any of the allowed schemas", errs),
                            Some(1) => true,
                            Some(_) => expect(false, loc, "matches more than one of the allowed schemas (oneOf)", errs),
                        }
                    }
                }
            }
            Shape::OneOf(variants) | Shape::AnyOf(variants) => {
                let Some(matching) = probe_matches(variants, value, loc, errs) else { return false };
                match (self, matching) {
                    (_, 0) => expect(false, loc, "does not match any of the allowed schemas", errs),
                    (Shape::OneOf(_), n) if n > 1 => {
                        expect(false, loc, "matches more than one of the allowed schemas (oneOf)", errs)
                    }
                    _ => true,
                }
            }
        }
    }
}

/// How many times the structural pass may visit each value of its input
/// (union members tried in turn visit a value once per member).
pub const WORK_PER_VALUE: usize = 32;

/// The number of JSON values in `v`, itself included.
fn count_values(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(count_values).sum::<usize>(),
        Value::Object(o) => 1 + o.values().map(count_values).sum::<usize>(),
        _ => 1,
    }
}

/// How many of `members` accept `value` without errors, each tried on a
/// copy; the work counts against `errs`' budget.
/// `None` (reported at `loc`) when the budget ran out meanwhile.
fn probe_matches(members: &[&Shape], value: &Value, loc: &Loc<'_>, errs: &mut FieldErrors) -> Option<usize> {
    let mut matching = 0;
    for s in members {
        let mut probe = value.clone();
        let mut scratch = FieldErrors::probe(errs);
        let root = Loc::root("", &scratch);
        let ok = s.check_at(&mut probe, &root, &mut scratch) && scratch.is_empty();
        errs.work += scratch.work;
        if errs.work > errs.budget {
            if !errs.over_budget {
                errs.over_budget = true;
                errs.fail(loc, "is too costly to validate (unions nested in unions that cannot be told apart)");
            }
            return None;
        }
        if ok {
            matching += 1;
        }
    }
    Some(matching)
}

fn expect(ok: bool, loc: &Loc<'_>, message: impl fmt::Display, errs: &mut FieldErrors) -> bool {
    if !ok {
        errs.fail(loc, message);
    }
    ok
}

/// Implemented by every generated request model: its structure and the map
/// from garde's Rust field paths to JSON paths.
pub trait Model: DeserializeOwned + garde::Validate<Context = ()> {
    const SHAPE: &'static Shape;
    /// `(rust_name, json_name)` pairs where the two differ.
    const RENAMES: &'static [(&'static str, &'static str)] = &[];
}

/// Structural pass, deserialization and garde validation of one JSON value;
/// every failure lands in `errs` under its JSON path.
pub fn validate_value<T: Model>(mut value: Value, base: &str, errs: &mut FieldErrors) -> Option<T> {
    let structural_ok = T::SHAPE.check(&mut value, base, errs);
    if !structural_ok {
        return None;
    }
    let parsed: T = match serde_json::from_value(value) {
        Ok(v) => v,
        Err(e) => {
            // The shapes mirror the types, so this means a generator bug;
            // still an envelope, never a panic.
            errs.push(base, format!("invalid value: {e}"));
            return None;
        }
    };
    if let Err(report) = parsed.validate() {
        for (path, error) in report.iter() {
            if errs.covers(base, path, T::RENAMES) {
                continue;
            }
            if errs.listed.len() < MAX_LISTED_ERRORS {
                let path = rename_path(&path.to_string(), T::RENAMES);
                let path = if base.is_empty() { path } else { join(base, &path) };
                // A failure of the whole value (a scalar or array body) is the body's.
                let path = if path.is_empty() { "body".to_owned() } else { path };
                errs.push(path, error.message().to_string());
            } else {
                errs.total += 1;
            }
        }
    }
    Some(parsed)
}

fn rename_path(path: &str, renames: &[(&str, &str)]) -> String {
    if renames.is_empty() {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len());
    let mut ident = String::new();
    // An ident renamed to nothing (a flattened map's field) leaves no
    // segment: `labels.additional_properties.legs` is `labels.legs`.
    let flush = |ident: &mut String, out: &mut String| {
        let json = renames.iter().find(|(r, _)| *r == ident.as_str()).map_or(ident.as_str(), |(_, j)| *j);
        if json.is_empty() && !ident.is_empty() && out.ends_with('.') {
            out.pop();
        }
        out.push_str(json);
        ident.clear();
    };
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                flush(&mut ident, &mut out);
                in_index = true;
                out.push(c);
            }
            ']' => {
                in_index = false;
                out.push(c);
            }
            '.' if !in_index => {
                flush(&mut ident, &mut out);
                if !out.is_empty() {
                    out.push(c);
                }
            }
            _ if in_index => out.push(c),
            _ => ident.push(c),
        }
    }
    flush(&mut ident, &mut out);
    out
}

/// Whether generated operations check every response their handler returns
/// against the spec (see [`check_response`]). On in debug builds, so a
/// handler that builds an invalid response fails the tests; the
/// application may turn it on in release builds too.
static RESPONSE_CHECKS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(cfg!(debug_assertions));

pub fn response_checks() -> bool {
    RESPONSE_CHECKS.load(std::sync::atomic::Ordering::Relaxed)
}

/// Turns response checks on or off for the whole process.
pub fn set_response_checks(on: bool) {
    RESPONSE_CHECKS.store(on, std::sync::atomic::Ordering::Relaxed);
}

/// Checks a response body as a request body would be checked (structure,
/// formats, garde rules), recording each violation under `base`.
pub fn check_response<T: Model + serde::Serialize>(body: &T, base: &str, errs: &mut FieldErrors) {
    let was = std::mem::replace(&mut errs.responding, true);
    match serde_json::to_value(body) {
        Ok(value) => {
            validate_value::<T>(value, base, errs);
        }
        Err(e) => errs.push(base, format!("does not serialize: {e}")),
    }
    errs.responding = was;
}

/// Checks the headers a handler set against their schemas: `headers` is a
/// generated struct of their values with the schemas' garde rules, and
/// `names` maps its fields to the header names, each failure reported as
/// `header <Name>`.
pub fn check_headers<T: garde::Validate<Context = ()>>(headers: &T, names: &[(&str, &str)], errs: &mut FieldErrors) {
    if let Err(report) = headers.validate() {
        for (path, error) in report.iter() {
            let field = path.to_string();
            let first = field.split(['.', '[']).next().unwrap_or_default();
            let name = names.iter().find(|(f, _)| *f == first).map_or(first, |(_, n)| *n);
            errs.push(format!("header {name}"), error.message().to_string());
        }
    }
}

/// Logs a response that broke the spec: the operation and every failing
/// JSON path. The generated operation answers its 500 instead, since the
/// fault is the server's, not the client's.
pub fn report_invalid_response(operation: &'static str, errs: &FieldErrors) {
    let failures: Vec<String> = errs
        .listed
        .iter()
        .map(|e| format!("{}: {}", if e.field.is_empty() { "(body)" } else { &e.field }, e.message))
        .collect();
    tracing::error!(operation, failures = %failures.join("; "), "the handler's response does not match the spec");
}

/// At most 64 characters of a client's string, for an error message.
struct Short<'a>(&'a str);

impl std::fmt::Debug for Short<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.char_indices().nth(64) {
            None => write!(f, "{:?}", self.0),
            Some((i, _)) => write!(f, "{:?}…", &self.0[..i]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `T: oneOf [{child: T}, {child: T, n?: integer}]`: every value matches
    /// both members' structure down to the leaf, so trying them in turn at
    /// each level would take 2^depth; the budget stops it.
    static NODE: Shape = Shape::OneOf(&[&A, &B]);
    static A: Shape =
        Shape::Object(&[Prop { name: "child", required: false, shape: &NODE, access: Access::ReadWrite }]);
    static B: Shape = Shape::Object(&[
        Prop { name: "child", required: false, shape: &NODE, access: Access::ReadWrite },
        Prop { name: "n", required: false, shape: &Shape::Integer { min: 0, max: 9 }, access: Access::ReadWrite },
    ]);

    #[test]
    fn nested_ambiguous_unions_cost_linear_time() {
        let mut v = serde_json::json!({});
        for _ in 0..60 {
            v = serde_json::json!({ "child": v });
        }
        let mut errs = FieldErrors::default();
        assert!(!NODE.check(&mut v, "", &mut errs) || !errs.is_empty());
        // Linear: the budget, overshot by at most one probe.
        assert!(errs.work <= 2 * WORK_PER_VALUE * 61, "{}", errs.work);
        assert!(errs.listed.iter().any(|e| e.message.contains("too costly")), "{:?}", errs.listed);
    }

    #[test]
    fn renames_only_identifiers() {
        let renames = &[("user_name", "userName")];
        assert_eq!(rename_path("user_name", renames), "userName");
        assert_eq!(rename_path("items[1].user_name", renames), "items[1].userName");
    }

    #[test]
    fn a_flattened_map_leaves_no_segment() {
        let renames = &[("additional_properties", ""), ("type_", "type")];
        assert_eq!(rename_path("labels.additional_properties.legs", renames), "labels.legs");
        assert_eq!(rename_path("additional_properties.legs", renames), "legs");
        assert_eq!(rename_path("data.type_", renames), "data.type");
    }

    static CC: Shape = Shape::Object(&[Prop {
        name: "cc",
        required: false,
        shape: &Shape::Array(&Shape::String(StrFormat::Plain)),
        access: Access::ReadWrite,
    }]);

    #[test]
    fn coverage_is_by_location() {
        let mut errs = FieldErrors::default();
        let mut v = serde_json::json!({ "cc": ["a", 1] });
        assert!(CC.check(&mut v, "", &mut errs));
        assert_eq!(errs.total(), 1);
        let cc = garde::Path::new("cc");
        assert!(errs.covers("", &cc.join(1usize), &[]));
        assert!(errs.covers("", &cc.join(1usize).join("x"), &[]));
        assert!(!errs.covers("", &cc, &[]));
        assert!(!errs.covers("", &cc.join(10usize), &[]));
        assert!(!errs.covers("", &garde::Path::new("subject"), &[]));
        assert!(!errs.covers("body", &cc.join(1usize), &[]));
        assert_eq!(errs.into_vec()[0].field, "cc[1]");
    }

    #[test]
    fn lists_at_most_the_cap_and_counts_the_rest() {
        let mut errs = FieldErrors::default();
        let mut v = serde_json::json!({ "cc": vec![0; MAX_LISTED_ERRORS + 150] });
        CC.check(&mut v, "", &mut errs);
        assert_eq!(errs.total(), MAX_LISTED_ERRORS + 150);
        let data = errs.to_data();
        assert_eq!(data["errors"].as_array().map(Vec::len), Some(MAX_LISTED_ERRORS));
        assert_eq!(data["errors"][MAX_LISTED_ERRORS - 1]["field"], format!("cc[{}]", MAX_LISTED_ERRORS - 1));
        assert_eq!(data["omitted"], 150);
    }
}
