//! Schema comparison. Both sides are resolved through local `$ref`s and
//! flattened through `allOf`, then compared keyword by keyword and
//! recursively through properties, items, additionalProperties and
//! oneOf/anyOf members. A change is rated by direction: in a request a
//! narrowed constraint refuses what old clients send, in a response a
//! widened one sends what old clients do not expect.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::{Ctx, Dir, Ptr, resolve};

/// Deep enough for any real document; a bound so a pathological one
/// (refs that only cycle through inline schemas on one side) still ends.
pub const MAX_DEPTH: usize = 64;

/// A schema and where it is written.
type Src = (Value, Ptr);

/// A schema with its `allOf` members merged: properties and `required`
/// united, any other keyword taken from the first schema that has it.
/// Each value keeps the pointer of the schema it came from. A property
/// declared by several members keeps every declaration: all of them apply
/// (`data: {type: object}` in an envelope and `data: {$ref: User}` beside
/// it are one property, a `User`).
struct Flat {
    /// The schema's location: its last source's, the most specific.
    ptr: Ptr,
    /// Every source's location, naming the schema in the visited set.
    key: String,
    kw: BTreeMap<String, Src>,
    props: BTreeMap<String, Vec<Src>>,
    required: BTreeSet<String>,
}

impl Flat {
    fn get(&self, k: &str) -> Option<&Value> {
        self.kw.get(k).map(|(v, _)| v)
    }

    /// Where keyword `k` is written, or the schema itself when it is not.
    fn at(&self, k: &str) -> Ptr {
        match self.kw.get(k) {
            Some((_, p)) => p.push(k),
            None => self.ptr.clone(),
        }
    }

    fn str(&self, k: &str) -> Option<&str> {
        self.get(k).and_then(Value::as_str)
    }

    fn flag(&self, k: &str) -> bool {
        self.get(k).and_then(Value::as_bool).unwrap_or(false)
    }
}

fn flatten(doc: &Value, srcs: &[Src]) -> Flat {
    let mut flat = Flat {
        ptr: Ptr::root(),
        key: String::new(),
        kw: BTreeMap::new(),
        props: BTreeMap::new(),
        required: BTreeSet::new(),
    };
    let mut key = Vec::new();
    for (v, ptr) in srcs {
        let (v, ptr) = resolve(doc, v, ptr);
        merge(doc, v, &ptr, &mut flat, 0);
        key.push(ptr.as_str().to_string());
        flat.ptr = ptr;
    }
    flat.key = key.join(" & ");
    flat
}

fn merge(doc: &Value, v: &Value, ptr: &Ptr, flat: &mut Flat, depth: usize) {
    let Some(o) = v.as_object() else { return };
    if depth > MAX_DEPTH {
        return;
    }
    // The schema's own keywords win over its allOf members'.
    for (k, val) in o {
        match k.as_str() {
            "allOf" | "$ref" => {}
            "properties" => {
                for (name, p) in val.as_object().into_iter().flatten() {
                    flat.props.entry(name.clone()).or_default().push((p.clone(), ptr.push("properties").push(name)));
                }
            }
            "required" => {
                flat.required.extend(val.as_array().into_iter().flatten().filter_map(Value::as_str).map(String::from))
            }
            _ => {
                flat.kw.entry(k.clone()).or_insert_with(|| (val.clone(), ptr.clone()));
            }
        }
    }
    for (i, m) in o.get("allOf").and_then(Value::as_array).into_iter().flatten().enumerate() {
        let (m, mptr) = resolve(doc, m, &ptr.push("allOf").idx(i));
        merge(doc, m, &mptr, flat, depth + 1);
    }
}

/// The non-null types a schema allows; `None` when it does not say (any type).
fn types(f: &Flat) -> Option<BTreeSet<String>> {
    // Without `type`, members or items still say what clients send and
    // expect; inferring it keeps `type: object` added beside them quiet.
    let Some(t) = f.get("type") else {
        if !f.props.is_empty() || f.get("additionalProperties").is_some() {
            return Some(["object".to_string()].into());
        }
        return f.get("items").map(|_| ["array".to_string()].into());
    };
    let set: BTreeSet<String> = match t {
        Value::String(s) => [s.clone()].into(),
        Value::Array(a) => a.iter().filter_map(Value::as_str).filter(|s| *s != "null").map(String::from).collect(),
        _ => return None,
    };
    Some(set)
}

fn nullable(f: &Flat) -> bool {
    f.flag("nullable")
        || f.get("type").and_then(Value::as_array).is_some_and(|a| a.iter().any(|t| t.as_str() == Some("null")))
}

/// Whether every type in `small` is allowed by `big` (a number accepts integers).
fn covers(big: &Option<BTreeSet<String>>, small: &Option<BTreeSet<String>>) -> bool {
    match (big, small) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(b), Some(s)) => s.iter().all(|t| b.contains(t) || (t == "integer" && b.contains("number"))),
    }
}

fn show_types(t: &Option<BTreeSet<String>>) -> String {
    match t {
        None => "any".into(),
        Some(s) => s.iter().cloned().collect::<Vec<_>>().join("|"),
    }
}

pub fn compare(ctx: &mut Ctx, b: &Value, bptr: &Ptr, h: &Value, hptr: &Ptr, dir: Dir, depth: usize) {
    compare_all(ctx, &[(b.clone(), bptr.clone())], &[(h.clone(), hptr.clone())], dir, depth);
}

/// Compares the schema that is all of `b` with the one that is all of `h`.
fn compare_all(ctx: &mut Ctx, b: &[Src], h: &[Src], dir: Dir, depth: usize) {
    let (base, head) = (ctx.base, ctx.head);
    let (Some((_, bptr)), Some((_, hptr))) = (b.last(), h.last()) else { return };
    if depth > MAX_DEPTH {
        ctx.note("schema-depth-exceeded", bptr, hptr, format!("schemas nested deeper than {MAX_DEPTH} not compared"));
        return;
    }
    let bf = flatten(base, b);
    let hf = flatten(head, h);
    // Resolved pointers name each schema pair uniquely: comparing a pair
    // again (a cycle, or a component used twice) can only repeat findings.
    if !ctx.visited.insert((bf.key.clone(), hf.key.clone(), dir)) {
        return;
    }
    // What `resolve` could not follow is compared by its text alone.
    let unresolved = |doc: &Value, srcs: &[Src]| -> Vec<String> {
        srcs.iter()
            .filter_map(|(v, p)| resolve(doc, v, p).0.get("$ref").and_then(Value::as_str).map(String::from))
            .collect()
    };
    let (bu, hu) = (unresolved(base, b), unresolved(head, h));
    if bu != hu {
        let show = |u: &[String]| if u.is_empty() { "(none)".to_string() } else { u.join(", ") };
        ctx.note("schema-ref-unresolved", &bf.ptr, &hf.ptr, format!("$ref {} became {}", show(&bu), show(&hu)));
    }
    // A boolean schema or a non-object has nothing to compare keyword-wise.
    if !b.iter().chain(h).all(|(v, _)| v.is_object()) {
        return;
    }
    if let ([b], [h]) = (b, h)
        && lone_union(ctx, (&b.0, &b.1, &bf), (&h.0, &h.1, &hf), dir, depth)
    {
        return;
    }
    let req = dir == Dir::Request;
    type_and_nullable(ctx, &bf, &hf, req);
    format(ctx, &bf, &hf, req);
    enums(ctx, &bf, &hf, req);
    pattern(ctx, &bf, &hf, req);
    bounds(ctx, &bf, &hf, req);
    if let (Some(bd), Some(hd)) = (bf.get("default"), hf.get("default")) {
        if bd != hd {
            ctx.note("default-changed", &bf.at("default"), &hf.at("default"), format!("default {bd} became {hd}"));
        }
    } else if let Some(bd) = bf.get("default") {
        ctx.note("default-removed", &bf.at("default"), &hf.ptr, format!("default {bd} removed"));
    } else if let Some(hd) = hf.get("default") {
        ctx.note("default-added", &bf.ptr, &hf.at("default"), format!("default {hd} added"));
    }
    if !bf.flag("deprecated") && hf.flag("deprecated") {
        ctx.note("deprecated-added", &bf.ptr, &hf.at("deprecated"), "schema deprecated");
    }
    properties(ctx, &bf, &hf, dir, depth);
    additional(ctx, &bf, &hf, dir, depth);
    if let (Some(bi), Some(hi)) = (bf.get("items"), hf.get("items")) {
        let (bi, hi) = (bi.clone(), hi.clone());
        compare(ctx, &bi, &bf.at("items"), &hi, &hf.at("items"), dir, depth + 1);
    }
    for kw in ["oneOf", "anyOf"] {
        unions(ctx, &bf, &hf, kw, dir, depth);
    }
}

fn type_and_nullable(ctx: &mut Ctx, bf: &Flat, hf: &Flat, req: bool) {
    let (bt, ht) = (types(bf), types(hf));
    if bt != ht {
        let msg = format!("type {} became {}", show_types(&bt), show_types(&ht));
        let rule = match (req, covers(&ht, &bt), covers(&bt, &ht)) {
            (true, true, _) => "request-type-widened",
            (true, false, _) => "request-type-changed",
            (false, _, true) => "response-type-narrowed",
            (false, _, false) => "response-type-changed",
        };
        ctx.note(rule, &bf.at("type"), &hf.at("type"), msg);
    }
    let (bn, hn) = (nullable(bf), nullable(hf));
    let at = |f: &Flat| if f.get("nullable").is_some() { f.at("nullable") } else { f.at("type") };
    match (req, bn, hn) {
        (true, true, false) => ctx.note("request-nullable-removed", &at(bf), &at(hf), "null no longer accepted"),
        (true, false, true) => ctx.note("request-nullable-added", &at(bf), &at(hf), "null now accepted"),
        (false, false, true) => ctx.note("response-nullable-added", &at(bf), &at(hf), "null may now be sent"),
        (false, true, false) => ctx.note("response-nullable-removed", &at(bf), &at(hf), "null no longer sent"),
        _ => {}
    }
}

fn format(ctx: &mut Ctx, bf: &Flat, hf: &Flat, req: bool) {
    let (b, h) = (bf.str("format"), hf.str("format"));
    if b == h {
        return;
    }
    let msg = format!("format {} became {}", b.unwrap_or("(none)"), h.unwrap_or("(none)"));
    let rule = match (req, b.is_some(), h.is_some()) {
        (true, _, true) => "request-format-changed",
        (true, _, false) => "request-format-removed",
        (false, false, _) => "response-format-added",
        (false, true, _) => "response-format-changed",
    };
    ctx.note(rule, &bf.at("format"), &hf.at("format"), msg);
}

fn enums(ctx: &mut Ctx, bf: &Flat, hf: &Flat, req: bool) {
    let (b, h) = (bf.get("enum").and_then(Value::as_array), hf.get("enum").and_then(Value::as_array));
    match (b, h) {
        (None, None) => {}
        (Some(_), None) => {
            let rule = if req { "request-enum-removed" } else { "response-enum-removed" };
            ctx.note(rule, &bf.at("enum"), &hf.ptr, "enum removed: any value of the type allowed");
        }
        (None, Some(_)) => {
            let rule = if req { "request-enum-added" } else { "response-enum-added" };
            ctx.note(rule, &bf.ptr, &hf.at("enum"), "enum added");
        }
        (Some(b), Some(h)) => {
            for (i, v) in b.iter().enumerate() {
                if !h.contains(v) {
                    let rule = if req { "request-enum-value-removed" } else { "response-enum-value-removed" };
                    ctx.note(rule, &bf.at("enum").idx(i), &hf.at("enum"), format!("enum value {v} removed"));
                }
            }
            for (i, v) in h.iter().enumerate() {
                if !b.contains(v) {
                    let rule = if req { "request-enum-value-added" } else { "response-enum-value-added" };
                    ctx.note(rule, &bf.at("enum"), &hf.at("enum").idx(i), format!("enum value {v} added"));
                }
            }
        }
    }
}

fn pattern(ctx: &mut Ctx, bf: &Flat, hf: &Flat, req: bool) {
    let (b, h) = (bf.str("pattern"), hf.str("pattern"));
    if b == h {
        return;
    }
    let msg = format!("pattern {} became {}", b.unwrap_or("(none)"), h.unwrap_or("(none)"));
    let rule = match (req, b.is_some(), h.is_some()) {
        (false, _, _) => "response-pattern-changed",
        (true, false, _) => "request-pattern-added",
        (true, true, true) => "request-pattern-changed",
        (true, true, false) => "request-pattern-removed",
    };
    ctx.note(rule, &bf.at("pattern"), &hf.at("pattern"), msg);
}

/// A bound: its value and whether it is exclusive. `None` is unbounded.
type Bound = Option<(f64, bool)>;

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

/// `maximum` with 3.0's boolean `exclusiveMaximum` or 3.1's numeric one.
fn numeric_bound(f: &Flat, kw: &str, excl: &str) -> Bound {
    if let Some(n) = number(f.get(excl)) {
        return Some((n, true));
    }
    number(f.get(kw)).map(|n| (n, f.flag(excl)))
}

/// A zero lower bound on a length or count is no bound.
fn count_bound(f: &Flat, kw: &str) -> Bound {
    number(f.get(kw)).filter(|n| !(kw.starts_with("min") && *n == 0.0)).map(|n| (n, false))
}

/// Whether `h` is stricter than `b` (Some(true)), looser (Some(false)) or the same (None).
/// `upper` flips the sense: a smaller upper bound is stricter, a larger lower one is.
fn stricter(b: Bound, h: Bound, upper: bool) -> Option<bool> {
    match (b, h) {
        (None, None) => None,
        (None, Some(_)) => Some(true),
        (Some(_), None) => Some(false),
        (Some((bv, be)), Some((hv, he))) => {
            if bv == hv {
                (be != he).then_some(he)
            } else {
                Some((hv < bv) == upper)
            }
        }
    }
}

fn show(b: Bound) -> String {
    match b {
        None => "(none)".into(),
        Some((v, e)) => format!("{}{v}", if e { "exclusive " } else { "" }),
    }
}

fn bounds(ctx: &mut Ctx, bf: &Flat, hf: &Flat, req: bool) {
    // (keyword, rule when stricter, rule when looser, upper bound?)
    let checks = [
        ("maxLength", "request-max-length-decreased", "request-max-length-increased", true),
        ("minLength", "request-min-length-increased", "request-min-length-decreased", false),
        ("maxItems", "request-max-items-decreased", "request-max-items-increased", true),
        ("minItems", "request-min-items-increased", "request-min-items-decreased", false),
        ("maximum", "request-maximum-decreased", "request-maximum-increased", true),
        ("minimum", "request-minimum-increased", "request-minimum-decreased", false),
    ];
    for (kw, narrowed, widened, upper) in checks {
        let (b, h) = match kw {
            "maximum" => (numeric_bound(bf, kw, "exclusiveMaximum"), numeric_bound(hf, kw, "exclusiveMaximum")),
            "minimum" => (numeric_bound(bf, kw, "exclusiveMinimum"), numeric_bound(hf, kw, "exclusiveMinimum")),
            _ => (count_bound(bf, kw), count_bound(hf, kw)),
        };
        let Some(strict) = stricter(b, h, upper) else { continue };
        let rule = match (req, strict) {
            (true, true) => narrowed,
            (true, false) => widened,
            (false, true) => "response-constraint-narrowed",
            (false, false) => "response-constraint-widened",
        };
        // A 3.1 numeric exclusive bound is written under its own keyword.
        let at = |f: &Flat| match kw {
            "maximum" | "minimum" => {
                let excl = if kw == "maximum" { "exclusiveMaximum" } else { "exclusiveMinimum" };
                if number(f.get(excl)).is_some() { f.at(excl) } else { f.at(kw) }
            }
            _ => f.at(kw),
        };
        ctx.note(rule, &at(bf), &at(hf), format!("{kw} {} became {}", show(b), show(h)));
    }
}

/// Members a client never sees in this direction: readOnly ones are not
/// sent in requests, writeOnly ones not in responses.
fn hidden(f: &Flat, doc: &Value, name: &str, dir: Dir) -> bool {
    let flag = if dir == Dir::Request { "readOnly" } else { "writeOnly" };
    f.props.get(name).into_iter().flatten().any(|(v, p)| {
        let (v, _) = resolve(doc, v, p);
        v.get(flag).and_then(Value::as_bool).unwrap_or(false)
    })
}

/// Where a property is declared: its last (most specific) declaration.
fn declared(srcs: &[Src], f: &Flat) -> Ptr {
    srcs.last().map_or_else(|| f.ptr.push("properties"), |(_, p)| p.clone())
}

fn properties(ctx: &mut Ctx, bf: &Flat, hf: &Flat, dir: Dir, depth: usize) {
    let (base, head) = (ctx.base, ctx.head);
    let req = dir == Dir::Request;
    for (name, bsrcs) in &bf.props {
        if hidden(bf, base, name, dir) {
            continue;
        }
        let bp = declared(bsrcs, bf);
        let Some(hsrcs) = hf.props.get(name) else {
            let rule = if req { "request-property-removed" } else { "response-property-removed" };
            ctx.note(rule, &bp, &hf.ptr.push("properties"), format!("property {name} removed"));
            continue;
        };
        let hp = declared(hsrcs, hf);
        let (breq, hreq) = (bf.required.contains(name), hf.required.contains(name));
        let rule = match (req, breq, hreq) {
            (true, false, true) => Some("request-property-became-required"),
            (true, true, false) => Some("request-property-became-optional"),
            (false, true, false) => Some("response-property-became-optional"),
            (false, false, true) => Some("response-property-became-required"),
            _ => None,
        };
        if let Some(rule) = rule {
            let word = if hreq { "required" } else { "optional" };
            ctx.note(rule, &bp, &hp, format!("property {name} became {word}"));
        }
        compare_all(ctx, bsrcs, hsrcs, dir, depth + 1);
    }
    let closed = bf.get("additionalProperties") == Some(&Value::Bool(false));
    for (name, hsrcs) in &hf.props {
        if bf.props.contains_key(name) || hidden(hf, head, name, dir) {
            continue;
        }
        let rule = match (req, hf.required.contains(name), closed) {
            (true, true, _) => "request-property-required-added",
            (true, false, _) => "request-property-added",
            (false, _, true) => "response-property-added-closed",
            (false, _, false) => "response-property-added",
        };
        ctx.note(rule, &bf.ptr.push("properties"), &declared(hsrcs, hf), format!("property {name} added"));
    }
}

fn additional(ctx: &mut Ctx, bf: &Flat, hf: &Flat, dir: Dir, depth: usize) {
    let (b, h) = (bf.get("additionalProperties"), hf.get("additionalProperties"));
    let closed = |v: Option<&Value>| v == Some(&Value::Bool(false));
    let (bc, hc) = (closed(b), closed(h));
    let (bp, hp) = (bf.at("additionalProperties"), hf.at("additionalProperties"));
    match (dir, bc, hc) {
        (Dir::Request, false, true) => {
            ctx.note("request-additional-properties-closed", &bp, &hp, "additionalProperties: false added")
        }
        (Dir::Request, true, false) => {
            ctx.note("request-additional-properties-opened", &bp, &hp, "additionalProperties: false removed")
        }
        (Dir::Response, true, false) => {
            ctx.note("response-additional-properties-opened", &bp, &hp, "additionalProperties: false removed")
        }
        (Dir::Response, false, true) => {
            ctx.note("response-additional-properties-closed", &bp, &hp, "additionalProperties: false added")
        }
        _ => {
            if let (Some(b), Some(h)) = (b, h)
                && b.is_object()
                && h.is_object()
            {
                let (b, h) = (b.clone(), h.clone());
                compare(ctx, &b, &bp, &h, &hp, dir, depth + 1);
            }
        }
    }
}

/// A member fully resolved, for matching members that are the same schema
/// under another component name. A ref back into its own expansion stays a
/// placeholder (so cycles end, whatever the names), and a budget of nodes
/// keeps wide recursive schemas from expanding exponentially.
fn resolved_deep(doc: &Value, v: &Value, stack: &mut Vec<String>, budget: &mut usize) -> Value {
    if *budget == 0 {
        return Value::String("(budget)".into());
    }
    *budget -= 1;
    match v {
        Value::Object(o) => {
            if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                if stack.iter().any(|s| s == r) {
                    return Value::String("(cycle)".into());
                }
                if let Some(t) = r.strip_prefix('#').and_then(|f| doc.pointer(f)) {
                    stack.push(r.to_string());
                    let out = resolved_deep(doc, t, stack, budget);
                    stack.pop();
                    return out;
                }
            }
            Value::Object(o.iter().map(|(k, v)| (k.clone(), resolved_deep(doc, v, stack, budget))).collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(|v| resolved_deep(doc, v, stack, budget)).collect()),
        _ => v.clone(),
    }
}

/// Each member's full expansion, or `None` when it ran out of budget (then
/// it matches nothing by content).
fn expansions(doc: &Value, members: &[Value]) -> Vec<Option<Value>> {
    members
        .iter()
        .map(|m| {
            let mut budget = 10_000;
            let v = resolved_deep(doc, m, &mut Vec::new(), &mut budget);
            (budget > 0).then_some(v)
        })
        .collect()
}

fn unions(ctx: &mut Ctx, bf: &Flat, hf: &Flat, kw: &str, dir: Dir, depth: usize) {
    let (Some(b), Some(h)) = (bf.get(kw).and_then(Value::as_array), hf.get(kw).and_then(Value::as_array)) else {
        return;
    };
    let (b, h) = (b.clone(), h.clone());
    let (b, h) = (Members { list: &b, at: bf.at(kw), alone: false }, Members { list: &h, at: hf.at(kw), alone: false });
    members(ctx, kw, &b, &h, dir, depth);
}

/// One side's members: a union's list at `at/0`, `at/1` …, or (`alone`) a
/// plain schema standing for a union of itself, at `at`.
struct Members<'a> {
    list: &'a [Value],
    at: Ptr,
    alone: bool,
}

impl Members<'_> {
    fn ptr(&self, i: usize) -> Ptr {
        if self.alone { self.at.clone() } else { self.at.idx(i) }
    }
}

/// A bare union (oneOf/anyOf and nothing else that constrains) on one side
/// and a schema without one on the other: the plain schema is compared as
/// a union of itself alone, so turning a schema into `oneOf: [it, other]`
/// is a member added rather than a type change.
fn lone_union(ctx: &mut Ctx, b: (&Value, &Ptr, &Flat), h: (&Value, &Ptr, &Flat), dir: Dir, depth: usize) -> bool {
    let union = |f: &Flat| ["oneOf", "anyOf"].into_iter().find(|k| f.get(k).is_some_and(Value::is_array));
    let bare = |f: &Flat| f.get("type").is_none() && f.props.is_empty();
    match (union(b.2), union(h.2)) {
        (None, Some(kw)) if bare(h.2) => {
            let hm = h.2.get(kw).and_then(Value::as_array).cloned().unwrap_or_default();
            let bm = Members { list: std::slice::from_ref(b.0), at: b.1.clone(), alone: true };
            members(ctx, kw, &bm, &Members { list: &hm, at: h.2.at(kw), alone: false }, dir, depth);
            true
        }
        (Some(kw), None) if bare(b.2) => {
            let bm = b.2.get(kw).and_then(Value::as_array).cloned().unwrap_or_default();
            let hm = Members { list: std::slice::from_ref(h.0), at: h.1.clone(), alone: true };
            members(ctx, kw, &Members { list: &bm, at: b.2.at(kw), alone: false }, &hm, dir, depth);
            true
        }
        _ => false,
    }
}

/// Matches two member lists and compares the pairs.
fn members(ctx: &mut Ctx, kw: &str, bm: &Members, hm: &Members, dir: Dir, depth: usize) {
    let (b, h) = (bm.list, hm.list);
    let (base, head) = (ctx.base, ctx.head);
    let mut pairs: Vec<(usize, usize)> = Vec::new();
    let mut bleft: Vec<usize> = (0..b.len()).collect();
    let mut hleft: Vec<usize> = (0..h.len()).collect();
    // Match by the same $ref, then by the same resolved schema, then by position.
    let by_ref = |v: &Value| v.get("$ref").and_then(Value::as_str).map(String::from);
    let (bx, hx) = (expansions(base, b), expansions(head, h));
    let passes: [&dyn Fn(usize, usize) -> bool; 2] =
        [&|i, j| by_ref(&b[i]).is_some() && by_ref(&b[i]) == by_ref(&h[j]), &|i, j| bx[i].is_some() && bx[i] == hx[j]];
    for pass in passes {
        bleft.retain(|&i| match hleft.iter().position(|&j| pass(i, j)) {
            Some(k) => {
                pairs.push((i, hleft.remove(k)));
                false
            }
            None => true,
        });
    }
    let n = bleft.len().min(hleft.len());
    pairs.extend(bleft.drain(..n).zip(hleft.drain(..n)));
    for (i, j) in pairs {
        compare(ctx, &b[i], &bm.ptr(i), &h[j], &hm.ptr(j), dir, depth + 1);
    }
    let (removed, added) = match dir {
        Dir::Request => ("request-union-member-removed", "request-union-member-added"),
        Dir::Response => ("response-union-member-removed", "response-union-member-added"),
    };
    for i in bleft {
        ctx.note(removed, &bm.ptr(i), &hm.at, format!("{kw} member {i} removed"));
    }
    for j in hleft {
        ctx.note(added, &bm.at, &hm.ptr(j), format!("{kw} member {j} added"));
    }
}
