//! Schema validation with OpenAPI 3.0 semantics (`nullable`, `allOf`, `oneOf`/`anyOf`,
//! formats, lengths, patterns, ranges, items, `additionalProperties`), over `serde_json`
//! values with `$ref`s followed through the contract document.

use std::{cmp::Ordering, fmt};

use regex::Regex;
use serde_json::{Map, Number, Value};

use super::checker::{Contract, MAX_DEPTH};

/// A schema violation inside one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// JSON pointer relative to the validated value.
    pub pointer: String,
    pub expected: String,
    pub actual: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let at = if self.pointer.is_empty() { "(value)" } else { &self.pointer };
        write!(f, "{at}: expected {}, got {}", self.expected, self.actual)
    }
}

/// Which way a value travels: `readOnly` properties are not required in
/// requests, `writeOnly` ones are neither required nor allowed in responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Request,
    Response,
}

impl Contract {
    /// Every way `value` fails `schema`, with OpenAPI 3.0 semantics.
    pub fn validate(&self, schema: &Value, value: &Value, dir: Direction) -> Vec<Problem> {
        let mut out = Vec::new();
        self.walk(schema, value, "", dir, 0, &mut out);
        out
    }

    fn walk(&self, schema: &Value, value: &Value, ptr: &str, dir: Direction, depth: usize, out: &mut Vec<Problem>) {
        let mut problem = |expected: String, actual: String| {
            out.push(Problem { pointer: ptr.to_owned(), expected, actual });
        };
        if depth > MAX_DEPTH {
            problem("a schema nested less deeply".into(), format!("more than {MAX_DEPTH} levels"));
            return;
        }
        if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
            match self.pointer(r) {
                Some(target) => self.walk(target, value, ptr, dir, depth + 1, out),
                None => problem(format!("a resolvable $ref {r:?}"), "nothing at that pointer".into()),
            }
            return;
        }
        let Some(s) = schema.as_object() else { return };
        let nullable = s.get("nullable").and_then(Value::as_bool).unwrap_or(false);
        if value.is_null() && nullable {
            return;
        }
        if let Some(ty) = s.get("type").and_then(Value::as_str)
            && !has_type(value, ty)
        {
            let expected = if nullable { format!("{ty} or null") } else { ty.to_owned() };
            problem(expected, describe(value));
            // Further keywords would only repeat the same finding.
            return;
        }
        if let Some(options) = s.get("enum").and_then(Value::as_array)
            && !options.contains(value)
        {
            problem(format!("one of {}", Value::Array(options.clone())), short(value));
        }
        for member in s.get("allOf").and_then(Value::as_array).into_iter().flatten() {
            self.walk(member, value, ptr, dir, depth + 1, out);
        }
        for (kw, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            if let Some(alts) = s.get(kw).and_then(Value::as_array) {
                self.alternatives(kw, alts, exactly_one, value, ptr, dir, depth, out);
            }
        }
        if let Some(not) = s.get("not")
            && self.validate_at(not, value, dir, depth).is_empty()
        {
            out.push(Problem { pointer: ptr.into(), expected: "a value failing `not`".into(), actual: short(value) });
        }
        match value {
            Value::String(text) => self.string(s, text, ptr, out),
            Value::Number(n) => number(s, n, ptr, out),
            Value::Array(items) => self.array(s, items, ptr, dir, depth, out),
            Value::Object(map) => self.object(s, map, ptr, dir, depth, out),
            _ => {}
        }
    }

    fn validate_at(&self, schema: &Value, value: &Value, dir: Direction, depth: usize) -> Vec<Problem> {
        let mut out = Vec::new();
        self.walk(schema, value, "", dir, depth + 1, &mut out);
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn alternatives(
        &self,
        kw: &str,
        alts: &[Value],
        exactly_one: bool,
        value: &Value,
        ptr: &str,
        dir: Direction,
        depth: usize,
        out: &mut Vec<Problem>,
    ) {
        if alts.is_empty() {
            return;
        }
        let none = Vec::new();
        let results: Vec<Vec<Problem>> = alts.iter().map(|a| self.validate_at(a, value, dir, depth)).collect();
        let matching: Vec<usize> = results.iter().enumerate().filter(|(_, r)| r.is_empty()).map(|(i, _)| i).collect();
        if exactly_one && matching.len() > 1 {
            out.push(Problem {
                pointer: ptr.into(),
                expected: format!("exactly one {kw} alternative to match"),
                actual: format!("{} matching (#{})", matching.len(), join(&matching, ", #")),
            });
        } else if matching.is_empty() {
            // The alternative that came closest says most about what is wrong.
            let (i, closest) = results.iter().enumerate().min_by_key(|(_, r)| r.len()).unwrap_or((0, &none));
            let why = closest.first().map(|p| format!("; closest is #{i}: {p}")).unwrap_or_default();
            out.push(Problem {
                pointer: ptr.into(),
                expected: format!("a match for one of the {} {kw} alternatives", alts.len()),
                actual: format!("{}{why}", short(value)),
            });
        }
    }

    fn string(&self, s: &Map<String, Value>, text: &str, ptr: &str, out: &mut Vec<Problem>) {
        let mut problem = |expected: String, actual: String| {
            out.push(Problem { pointer: ptr.to_owned(), expected, actual });
        };
        // JSON Schema counts characters (code points), not bytes.
        let len = text.chars().count() as u64;
        if let Some(min) = s.get("minLength").and_then(Value::as_u64)
            && len < min
        {
            problem(format!("at least {min} characters"), format!("{len} ({})", short_str(text)));
        }
        if let Some(max) = s.get("maxLength").and_then(Value::as_u64)
            && len > max
        {
            problem(format!("at most {max} characters"), format!("{len} ({})", short_str(text)));
        }
        if let Some(pattern) = s.get("pattern").and_then(Value::as_str) {
            match Regex::new(pattern) {
                Ok(re) if !re.is_match(text) => problem(format!("a string matching {pattern:?}"), short_str(text)),
                Ok(_) => {}
                Err(e) => problem(format!("a usable pattern {pattern:?}"), format!("a regex error: {e}")),
            }
        }
        if let Some(format) = s.get("format").and_then(Value::as_str)
            && !format_ok(format, text)
        {
            problem(format!("a string in {format} format"), short_str(text));
        }
    }

    fn array(
        &self,
        s: &Map<String, Value>,
        items: &[Value],
        ptr: &str,
        dir: Direction,
        depth: usize,
        out: &mut Vec<Problem>,
    ) {
        let len = items.len() as u64;
        if let Some(min) = s.get("minItems").and_then(Value::as_u64)
            && len < min
        {
            out.push(Problem {
                pointer: ptr.into(),
                expected: format!("at least {min} items"),
                actual: len.to_string(),
            });
        }
        if let Some(max) = s.get("maxItems").and_then(Value::as_u64)
            && len > max
        {
            out.push(Problem {
                pointer: ptr.into(),
                expected: format!("at most {max} items"),
                actual: len.to_string(),
            });
        }
        if s.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
            for (i, a) in items.iter().enumerate() {
                if let Some(j) = items[..i].iter().position(|b| b == a) {
                    out.push(Problem {
                        pointer: format!("{ptr}/{i}"),
                        expected: "unique items".into(),
                        actual: format!("a repeat of item {j}: {}", short(a)),
                    });
                }
            }
        }
        if let Some(item_schema) = s.get("items") {
            for (i, item) in items.iter().enumerate() {
                self.walk(item_schema, item, &format!("{ptr}/{i}"), dir, depth + 1, out);
            }
        }
    }

    fn object(
        &self,
        s: &Map<String, Value>,
        map: &Map<String, Value>,
        ptr: &str,
        dir: Direction,
        depth: usize,
        out: &mut Vec<Problem>,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        let flag = |name: &str, key: &str| {
            props.and_then(|p| p.get(name)).map(|p| self.resolve(p)).and_then(|p| p.get(key)).and_then(Value::as_bool)
                == Some(true)
        };
        let undocumented: Vec<&String> = map.keys().filter(|k| props.is_none_or(|p| !p.contains_key(*k))).collect();
        for name in s.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
            let exempt = match dir {
                Direction::Request => flag(name, "readOnly"),
                Direction::Response => flag(name, "writeOnly"),
            };
            if !map.contains_key(name) && !exempt {
                // A rename shows up as a missing property next to an unknown one.
                let hint = if undocumented.is_empty() {
                    String::new()
                } else {
                    format!(" (undocumented properties present: {})", join(&undocumented, ", "))
                };
                out.push(Problem {
                    pointer: format!("{ptr}/{}", escape(name)),
                    expected: "the required property".into(),
                    actual: format!("nothing{hint}"),
                });
            }
        }
        for (name, v) in map {
            let at = format!("{ptr}/{}", escape(name));
            match props.and_then(|p| p.get(name)) {
                Some(prop) => {
                    if dir == Direction::Response && flag(name, "writeOnly") {
                        out.push(Problem {
                            pointer: at.clone(),
                            expected: "no writeOnly property".into(),
                            actual: short(v),
                        });
                    }
                    self.walk(prop, v, &at, dir, depth + 1, out);
                }
                None => match s.get("additionalProperties") {
                    Some(Value::Bool(false)) => out.push(Problem {
                        pointer: at,
                        expected: "no undocumented property (additionalProperties: false)".into(),
                        actual: short(v),
                    }),
                    Some(extra @ Value::Object(_)) => self.walk(extra, v, &at, dir, depth + 1, out),
                    _ => {}
                },
            }
        }
        let count = map.len() as u64;
        if let Some(min) = s.get("minProperties").and_then(Value::as_u64)
            && count < min
        {
            out.push(Problem {
                pointer: ptr.into(),
                expected: format!("at least {min} properties"),
                actual: count.to_string(),
            });
        }
        if let Some(max) = s.get("maxProperties").and_then(Value::as_u64)
            && count > max
        {
            out.push(Problem {
                pointer: ptr.into(),
                expected: format!("at most {max} properties"),
                actual: count.to_string(),
            });
        }
    }
}

fn number(s: &Map<String, Value>, n: &Number, ptr: &str, out: &mut Vec<Problem>) {
    let mut problem = |expected: String| {
        out.push(Problem { pointer: ptr.to_owned(), expected, actual: n.to_string() });
    };
    // OpenAPI 3.0 spells exclusivity as a boolean next to the bound; 3.1 as a number.
    let bound = |key: &str, excl: &str| -> Option<(Number, bool)> {
        match (s.get(key), s.get(excl)) {
            (Some(Value::Number(b)), Some(Value::Bool(e))) => Some((b.clone(), *e)),
            (Some(Value::Number(b)), _) => Some((b.clone(), false)),
            (_, Some(Value::Number(b))) => Some((b.clone(), true)),
            _ => None,
        }
    };
    if let Some((min, exclusive)) = bound("minimum", "exclusiveMinimum") {
        match num_cmp(n, &min) {
            Ordering::Less => problem(format!("a number ≥ {min}")),
            Ordering::Equal if exclusive => problem(format!("a number > {min}")),
            _ => {}
        }
    }
    if let Some((max, exclusive)) = bound("maximum", "exclusiveMaximum") {
        match num_cmp(n, &max) {
            Ordering::Greater => problem(format!("a number ≤ {max}")),
            Ordering::Equal if exclusive => problem(format!("a number < {max}")),
            _ => {}
        }
    }
    if let Some(m) = s.get("multipleOf").and_then(Value::as_f64)
        && let Some(v) = n.as_f64()
        && m > 0.0
    {
        let q = v / m;
        if (q - q.round()).abs() > 1e-9 {
            problem(format!("a multiple of {m}"));
        }
    }
    if let Some(format) = s.get("format").and_then(Value::as_str) {
        let fits = match format {
            "int32" => n.as_i64().is_some_and(|v| i32::try_from(v).is_ok()),
            "int64" => n.as_i64().is_some(),
            _ => true,
        };
        if !fits {
            problem(format!("a number in {format} range"));
        }
    }
}

/// Numbers compared exactly when both are integers (ids near 2^63 lose
/// precision as floats), as floats otherwise.
fn num_cmp(a: &Number, b: &Number) -> Ordering {
    let int = |n: &Number| n.as_i64().map(i128::from).or_else(|| n.as_u64().map(i128::from));
    match (int(a), int(b)) {
        (Some(x), Some(y)) => x.cmp(&y),
        _ => a.as_f64().unwrap_or(f64::NAN).partial_cmp(&b.as_f64().unwrap_or(f64::NAN)).unwrap_or(Ordering::Equal),
    }
}

/// JSON types as OpenAPI names them. `integer` is a number written without a
/// fraction or exponent: `1.0` is a number but not an integer.
fn has_type(v: &Value, ty: &str) -> bool {
    match ty {
        "string" => v.is_string(),
        "integer" => v.as_number().is_some_and(|n| n.is_i64() || n.is_u64()),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        "array" => v.is_array(),
        "object" => v.is_object(),
        // An unknown type name is the spec's problem, not the value's.
        _ => true,
    }
}

/// The string formats we check; others (`password`, `byte`, …) are open, as
/// OpenAPI allows.
pub fn format_ok(format: &str, s: &str) -> bool {
    static PATTERNS: std::sync::OnceLock<[Regex; 4]> = std::sync::OnceLock::new();
    let [date_time, date, uuid, email] = PATTERNS.get_or_init(|| {
        [
            r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$",
            r"^\d{4}-\d{2}-\d{2}$",
            r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            r"^[^@\s]+@[^@\s.]+(\.[^@\s.]+)*$",
        ]
        .map(|p| Regex::new(p).unwrap_or_else(|e| unreachable!("built-in pattern {p}: {e}")))
    });
    match format {
        // RFC 3339: the shape, then real calendar and clock values.
        "date-time" => date_time.is_match(s) && chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => date.is_match(s) && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "uuid" => uuid.is_match(s),
        "email" => email.is_match(s),
        _ => true,
    }
}

/// `/`-and-`~` escaping of one JSON pointer segment.
pub fn escape(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

pub(super) fn join<T: fmt::Display>(items: &[T], sep: &str) -> String {
    items.iter().map(ToString::to_string).collect::<Vec<_>>().join(sep)
}

/// A value as compact JSON, cut at 120 characters.
pub fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 120 { format!("{}…", s.chars().take(120).collect::<String>()) } else { s }
}

pub fn short_str(s: &str) -> String {
    short(&Value::from(s))
}

/// A value with its JSON type, for type mismatches: `string "5"`, `null`.
pub fn describe(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(_) => format!("boolean {v}"),
        Value::Number(n) if n.is_f64() => format!("number {n}"),
        Value::Number(n) => format!("integer {n}"),
        Value::String(_) => format!("string {}", short(v)),
        Value::Array(a) => format!("array of {} items", a.len()),
        Value::Object(_) => format!("object {}", short(v)),
    }
}
