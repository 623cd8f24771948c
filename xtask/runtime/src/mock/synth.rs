//! The seeded generator and the synthesizer of schema-valid values.

use serde_json::{Map, Value};

use super::schema::flatten;

/// Below this depth optional properties are synthesized too; deeper, only
/// required ones (recursive schemas end there).
const FULL_DEPTH: usize = 3;
/// Deeper than this nothing optional is synthesized at all and arrays are
/// as short as allowed; `$ref` chains longer than it are cut.
pub(super) const MAX_DEPTH: usize = 16;

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
pub(super) struct Synth<'a> {
    pub(super) doc: &'a Value,
    pub(super) rng: &'a mut Rng,
    pub(super) attempt: u32,
    pub(super) serial: &'a mut u64,
}

impl Synth<'_> {
    pub(super) fn value(&mut self, schema: &Value, depth: usize) -> Value {
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

/// A fresh id for the id property's schema: the collection's serial for
/// integers (from its `minimum`), a seeded UUID for `format: uuid`, else
/// the serial as text.
pub(super) fn new_id(schema: &Value, n: u64, rng: &mut Rng) -> Value {
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
