//! OpenAPI 3.1 in, OpenAPI 3.0.3 out: a pre-pass over the parsed document,
//! before `openapiv3` (which reads 3.0 only) sees it.
//!
//! [`normalize`] rewrites a 3.1 document into the 3.0.3 document that says
//! the same thing, or stops with the JSON pointer of the first construct 3.0
//! cannot say; it never approximates. A document that is not 3.1 is left
//! untouched, so 3.0 specs take the same path and come out byte-for-byte as
//! before. The rewritten document says `openapi: 3.0.3`, so the IR's version
//! check passes and the *served* document of a generated server says 3.0.3
//! too: it is the normalized document that the server and the client are
//! generated from, not the file.
//!
//! The tree is a `serde_yaml::Value`, not a `serde_json::Value`: this
//! workspace builds `serde_json` without `preserve_order`, so a JSON map
//! would sort every object's keys, and the generator names inline types and
//! orders operations, properties and components in document order. A YAML
//! mapping keeps the order (and non-string keys such as an unquoted `200:`
//! status, which `openapiv3` reads as before).
//!
//! What changes (JSON Schema 2020-12 → the 3.0 schema dialect), wherever a
//! schema occurs (components, parameters, headers, bodies, responses,
//! callbacks, and every nested subschema):
//! - `type: [T, "null"]` → `type: T, nullable: true`; `type: [T]` → `type: T`.
//!   With an `enum` that does not list `null`, the enum already excludes
//!   null, so no `nullable` is added. `type: "null"` alone, and several
//!   non-null types, are refused: 3.0 has no null type, and a `oneOf` of one
//!   schema per type would have to split the type-specific keywords
//!   (`minimum`, `pattern`, `items` …) between its members, which is a
//!   rewrite of the schema rather than a translation (and the generator
//!   refuses schemas of several types anyway).
//! - `oneOf`/`anyOf` of one schema and `{type: "null"}` → that schema made
//!   nullable: `nullable: true` beside its `type` (and `null` added to its
//!   `enum`), or, for a `$ref`, `allOf: [{$ref}]` with `nullable: true`.
//!   That last form is the usual 3.0 spelling of "this component or null"
//!   and the one this generator reads so (a strict reading of 3.0.3 ties
//!   `nullable` to a `type` in the same object; 3.0 has no stricter way to
//!   say it short of copying the component). More members than one beside
//!   the null, or a `oneOf` member that itself allows null (null would then
//!   match two members and be rejected), are refused.
//! - `const: v` → `enum: [v]`; schema-level `examples: [a, …]` →
//!   `example: a` (annotations only); `exclusiveMinimum: n` →
//!   `minimum: n, exclusiveMinimum: true` (and for the maximum), keeping
//!   whichever of `minimum` and `exclusiveMinimum` is stricter.
//! - `$ref` with siblings → `allOf: [{$ref}]` plus the siblings, because 3.0
//!   ignores a `$ref`'s siblings and 3.1 applies them.
//! - strings: `contentEncoding: base64` → `format: byte`; a
//!   `contentMediaType` on the schema of a non-JSON body → `format: binary`
//!   (what 3.0 means by a binary body). Elsewhere `contentMediaType` is an
//!   annotation and is kept as `x-contentMediaType`.
//! - boolean schemas: `true` → `{}`, `false` → `{not: {}}`.
//! - `$comment` is dropped (a comment, no meaning).
//!
//! And outside schemas: `webhooks` is dropped with a warning (3.0 has no
//! place for them, and neither generator serves or calls them);
//! `jsonSchemaDialect` is dropped when it names the OAS 3.1 base dialect and
//! refused otherwise; `info.summary` and `license.identifier` become
//! `x-summary` and `x-identifier`; an absent `paths` becomes `{}`;
//! `components/pathItems` is refused where referenced and dropped with a
//! warning otherwise.
//!
//! Refused: the 2020-12 keywords 3.0 has no word for (`prefixItems`,
//! `if`/`then`/`else`, `$defs`, `unevaluatedProperties` …), 3.0's own
//! `nullable` and boolean `exclusiveMinimum` in a 3.1 document (meaningless
//! there, meaningful after the rewrite), `summary`/`description` beside a
//! `$ref` outside schemas (3.1 overrides with them, 3.0 ignores them), an
//! operation without `responses`, and `mutualTLS` security schemes.
//!
//! Size: about 680 lines of rules and 300 of their unit tests, one rule per
//! 3.1 keyword, kept together so the whole mapping reads in one place.

use anyhow::{Result, bail};
use serde_yaml::{Mapping, Value};

/// The version a normalized document says.
pub const TARGET_VERSION: &str = "3.0.3";

/// The dialect a 3.1 document's schemas use unless it says otherwise.
const OAS_BASE_DIALECT: &str = "https://spec.openapis.org/oas/3.1/dialect/base";

/// JSON Schema 2020-12 keywords with no OpenAPI 3.0 equivalent.
const UNSUPPORTED_KEYWORDS: &[&str] = &[
    "$id",
    "$schema",
    "$anchor",
    "$dynamicRef",
    "$dynamicAnchor",
    "$defs",
    "$vocabulary",
    "prefixItems",
    "contains",
    "minContains",
    "maxContains",
    "if",
    "then",
    "else",
    "dependentSchemas",
    "dependentRequired",
    "patternProperties",
    "propertyNames",
    "unevaluatedProperties",
    "unevaluatedItems",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/// Rewrites `doc` to OpenAPI 3.0.3 when it says 3.1.x; returns the
/// warnings (what was dropped) for the caller to print.
pub fn normalize(doc: &mut Value) -> Result<Vec<String>> {
    let Value::Mapping(root) = doc else { bail!("#: an OpenAPI document is an object") };
    match root.get("openapi") {
        Some(Value::String(v)) if v.starts_with("3.1") => {}
        // 3.0, or something the IR refuses with its own message.
        _ => return Ok(Vec::new()),
    }
    let mut warnings = Vec::new();
    root.insert("openapi".into(), TARGET_VERSION.into());

    if let Some(dialect) = root.shift_remove("jsonSchemaDialect")
        && dialect.as_str() != Some(OAS_BASE_DIALECT)
    {
        bail!("#/jsonSchemaDialect: schemas in dialect {dialect:?} cannot be read as OpenAPI 3.0 schemas");
    }
    if let Some(Value::Mapping(hooks)) = root.shift_remove("webhooks") {
        let names: Vec<String> = hooks.keys().map(key_str).collect();
        warnings.push(format!(
            "#/webhooks: dropped ({}): OpenAPI 3.0 cannot describe webhooks, and neither generator serves or calls them",
            names.join(", ")
        ));
    }
    if let Some(Value::Mapping(info)) = root.get_mut("info") {
        rename(info, "summary", "x-summary");
        if let Some(Value::Mapping(license)) = info.get_mut("license") {
            rename(license, "identifier", "x-identifier");
        }
    }
    if !root.contains_key("paths") {
        // 3.1 makes `paths` optional; 3.0 requires it.
        root.insert("paths".into(), Value::Mapping(Mapping::new()));
    }

    // References into components/pathItems cannot be kept (3.0 has no such
    // component); unreferenced ones are dropped.
    let mut refs = Vec::new();
    collect_refs(doc, "#", &mut refs);
    if let Some((at, r)) = refs
        .iter()
        .find(|(at, r)| r.starts_with("#/components/pathItems/") && !at.starts_with("#/components/pathItems/"))
    {
        bail!("{at}: references {r:?}; OpenAPI 3.0 has no `components/pathItems`");
    }
    let Value::Mapping(root) = doc else { bail!("#: an OpenAPI document is an object") };
    if let Some(Value::Mapping(components)) = root.get_mut("components")
        && components.shift_remove("pathItems").is_some()
    {
        warnings.push("#/components/pathItems: dropped (referenced nowhere; OpenAPI 3.0 has no such component)".into());
    }

    if let Some(Value::Mapping(paths)) = root.get_mut("paths") {
        for (k, item) in paths.iter_mut() {
            path_item(item, &format!("#/paths/{}", esc(&key_str(k))))?;
        }
    }
    if let Some(Value::Mapping(c)) = root.get_mut("components") {
        let each = |c: &mut Mapping, kind: &str, f: &dyn Fn(&mut Value, &str) -> Result<()>| -> Result<()> {
            if let Some(Value::Mapping(m)) = c.get_mut(kind) {
                for (k, v) in m.iter_mut() {
                    f(v, &format!("#/components/{kind}/{}", esc(&key_str(k))))?;
                }
            }
            Ok(())
        };
        each(c, "schemas", &|v, p| schema(v, p, None))?;
        each(c, "parameters", &parameter)?;
        each(c, "headers", &parameter)?;
        each(c, "requestBodies", &request_body)?;
        each(c, "responses", &response)?;
        each(c, "callbacks", &callback)?;
        each(c, "examples", &|v, p| plain_reference(v, p).map(drop))?;
        each(c, "links", &|v, p| plain_reference(v, p).map(drop))?;
        each(c, "securitySchemes", &security_scheme)?;
    }
    Ok(warnings)
}

fn path_item(v: &mut Value, ptr: &str) -> Result<()> {
    let Value::Mapping(m) = v else { bail!("{ptr}: a path item is an object") };
    if let Some(Value::Sequence(ps)) = m.get_mut("parameters") {
        for (i, p) in ps.iter_mut().enumerate() {
            parameter(p, &format!("{ptr}/parameters/{i}"))?;
        }
    }
    for method in METHODS {
        if let Some(op) = m.get_mut(*method) {
            operation(op, &format!("{ptr}/{method}"))?;
        }
    }
    Ok(())
}

fn operation(v: &mut Value, ptr: &str) -> Result<()> {
    let Value::Mapping(m) = v else { bail!("{ptr}: an operation is an object") };
    if let Some(Value::Sequence(ps)) = m.get_mut("parameters") {
        for (i, p) in ps.iter_mut().enumerate() {
            parameter(p, &format!("{ptr}/parameters/{i}"))?;
        }
    }
    if let Some(body) = m.get_mut("requestBody") {
        request_body(body, &format!("{ptr}/requestBody"))?;
    }
    // 3.1 makes `responses` optional; 3.0 requires at least one, and
    // inventing one would document a response the API never promised.
    let Some(Value::Mapping(responses)) = m.get_mut("responses") else {
        bail!("{ptr}/responses: absent; OpenAPI 3.0 requires an operation to document its responses")
    };
    for (k, r) in responses.iter_mut() {
        response(r, &format!("{ptr}/responses/{}", esc(&key_str(k))))?;
    }
    if let Some(Value::Mapping(cbs)) = m.get_mut("callbacks") {
        for (k, cb) in cbs.iter_mut() {
            callback(cb, &format!("{ptr}/callbacks/{}", esc(&key_str(k))))?;
        }
    }
    Ok(())
}

fn callback(v: &mut Value, ptr: &str) -> Result<()> {
    if plain_reference(v, ptr)? {
        return Ok(());
    }
    let Value::Mapping(m) = v else { bail!("{ptr}: a callback is an object") };
    for (k, item) in m.iter_mut() {
        path_item(item, &format!("{ptr}/{}", esc(&key_str(k))))?;
    }
    Ok(())
}

/// A parameter or a header (they share `schema` and `content`).
fn parameter(v: &mut Value, ptr: &str) -> Result<()> {
    if plain_reference(v, ptr)? {
        return Ok(());
    }
    let Value::Mapping(m) = v else { bail!("{ptr}: a parameter is an object") };
    if let Some(s) = m.get_mut("schema") {
        schema(s, &format!("{ptr}/schema"), None)?;
    }
    content(m, ptr)
}

fn request_body(v: &mut Value, ptr: &str) -> Result<()> {
    if plain_reference(v, ptr)? {
        return Ok(());
    }
    let Value::Mapping(m) = v else { bail!("{ptr}: a request body is an object") };
    content(m, ptr)
}

fn response(v: &mut Value, ptr: &str) -> Result<()> {
    if plain_reference(v, ptr)? {
        return Ok(());
    }
    let Value::Mapping(m) = v else { bail!("{ptr}: a response is an object") };
    if let Some(Value::Mapping(headers)) = m.get_mut("headers") {
        for (k, h) in headers.iter_mut() {
            parameter(h, &format!("{ptr}/headers/{}", esc(&key_str(k))))?;
        }
    }
    if let Some(Value::Mapping(links)) = m.get("links") {
        for (k, l) in links {
            plain_reference(l, &format!("{ptr}/links/{}", esc(&key_str(k))))?;
        }
    }
    content(m, ptr)
}

/// The `content` map of whatever `m` is: each media type's schema (a body,
/// so `contentMediaType` may mean binary), encodings' headers, examples.
fn content(m: &mut Mapping, ptr: &str) -> Result<()> {
    let Some(Value::Mapping(content)) = m.get_mut("content") else { return Ok(()) };
    for (k, media) in content.iter_mut() {
        let name = key_str(k);
        let ptr = format!("{ptr}/content/{}", esc(&name));
        let Value::Mapping(media) = media else { bail!("{ptr}: a media type is an object") };
        if let Some(s) = media.get_mut("schema") {
            schema(s, &format!("{ptr}/schema"), Some(&name))?;
        }
        if let Some(Value::Mapping(encodings)) = media.get_mut("encoding") {
            for (ek, e) in encodings.iter_mut() {
                let Value::Mapping(e) = e else { continue };
                if let Some(Value::Mapping(headers)) = e.get_mut("headers") {
                    for (hk, h) in headers.iter_mut() {
                        let at = format!("{ptr}/encoding/{}/headers/{}", esc(&key_str(ek)), esc(&key_str(hk)));
                        parameter(h, &at)?;
                    }
                }
            }
        }
        if let Some(Value::Mapping(examples)) = media.get("examples") {
            for (ek, e) in examples {
                plain_reference(e, &format!("{ptr}/examples/{}", esc(&key_str(ek))))?;
            }
        }
    }
    Ok(())
}

fn security_scheme(v: &mut Value, ptr: &str) -> Result<()> {
    if plain_reference(v, ptr)? {
        return Ok(());
    }
    if let Value::Mapping(m) = v
        && m.get("type").and_then(Value::as_str) == Some("mutualTLS")
    {
        bail!("{ptr}/type: `mutualTLS` security schemes do not exist in OpenAPI 3.0");
    }
    Ok(())
}

/// Whether `v` is a Reference Object outside a schema. 3.1 lets `summary`
/// and `description` beside its `$ref` override the target's; 3.0 ignores
/// them, so they are refused rather than lost.
fn plain_reference(v: &Value, ptr: &str) -> Result<bool> {
    let Value::Mapping(m) = v else { return Ok(false) };
    if !m.contains_key("$ref") {
        return Ok(false);
    }
    let others: Vec<String> = m.keys().map(key_str).filter(|k| k != "$ref").collect();
    if !others.is_empty() {
        bail!(
            "{ptr}: `{}` beside `$ref` override the referenced object in OpenAPI 3.1; 3.0 ignores them (copy the object or drop them)",
            others.join("`, `")
        );
    }
    Ok(true)
}

/// Normalizes one schema and its subschemas. `body` is the media type when
/// the schema is a body's.
fn schema(v: &mut Value, ptr: &str, body: Option<&str>) -> Result<()> {
    let m = match v {
        Value::Bool(true) => {
            *v = Value::Mapping(Mapping::new());
            return Ok(());
        }
        Value::Bool(false) => {
            let mut m = Mapping::new();
            m.insert("not".into(), Value::Mapping(Mapping::new()));
            *v = Value::Mapping(m);
            return Ok(());
        }
        Value::Mapping(m) => m,
        _ => bail!("{ptr}: a schema is an object or a boolean"),
    };
    for kw in UNSUPPORTED_KEYWORDS {
        if m.contains_key(*kw) {
            bail!("{ptr}/{}: `{kw}` (JSON Schema 2020-12) has no OpenAPI 3.0 equivalent", esc(kw));
        }
    }
    if m.contains_key("nullable") {
        bail!("{ptr}/nullable: not a 3.1 keyword (3.1 ignores it); write `type: [T, \"null\"]`");
    }
    if null_member(m, ptr, body)? {
        return Ok(());
    }
    m.shift_remove("$comment");
    const_to_enum(m, ptr)?;
    type_list(m, ptr)?;
    examples_to_example(m, ptr)?;
    exclusive_bound(m, ptr, "exclusiveMinimum", "minimum", |ex, b| ex >= b)?;
    exclusive_bound(m, ptr, "exclusiveMaximum", "maximum", |ex, b| ex <= b)?;
    content_keywords(m, ptr, body)?;

    if let Some(Value::Mapping(props)) = m.get_mut("properties") {
        for (k, s) in props.iter_mut() {
            schema(s, &format!("{ptr}/properties/{}", esc(&key_str(k))), None)?;
        }
    }
    if let Some(items) = m.get_mut("items") {
        if items.is_sequence() {
            bail!("{ptr}/items: an array of schemas is not a 2020-12 `items` (tuples are `prefixItems`)");
        }
        schema(items, &format!("{ptr}/items"), None)?;
    }
    if let Some(ap) = m.get_mut("additionalProperties")
        && !ap.is_bool()
    {
        // A boolean is 3.0's own spelling here; only a schema is rewritten.
        schema(ap, &format!("{ptr}/additionalProperties"), None)?;
    }
    for kw in ["allOf", "oneOf", "anyOf"] {
        let Some(list) = m.get_mut(kw) else { continue };
        let Value::Sequence(list) = list else { bail!("{ptr}/{kw}: a list of schemas") };
        for (i, s) in list.iter_mut().enumerate() {
            schema(s, &format!("{ptr}/{kw}/{i}"), None)?;
        }
    }
    if let Some(n) = m.get_mut("not") {
        schema(n, &format!("{ptr}/not"), None)?;
    }
    wrap_ref(m);
    Ok(())
}

/// `$ref` with siblings → `allOf: [{$ref}, …]` plus the siblings: 3.1
/// applies a `$ref`'s siblings, 3.0 ignores them.
fn wrap_ref(m: &mut Mapping) {
    if m.len() < 2 {
        return;
    }
    let Some(r) = m.shift_remove("$ref") else { return };
    let mut target = Mapping::new();
    target.insert("$ref".into(), r);
    let mut all = vec![Value::Mapping(target)];
    if let Some(Value::Sequence(rest)) = m.shift_remove("allOf") {
        all.extend(rest);
    }
    m.insert("allOf".into(), Value::Sequence(all));
}

fn const_to_enum(m: &mut Mapping, ptr: &str) -> Result<()> {
    let Some(c) = m.shift_remove("const") else { return Ok(()) };
    if let Some(e) = m.get("enum") {
        // Both apply in 3.1: what is left is the const, if the enum has it.
        let Value::Sequence(e) = e else { bail!("{ptr}/enum: a list of values") };
        if !e.contains(&c) {
            bail!("{ptr}/const: {c:?} is not in the schema's `enum`, so no value is allowed; 3.0 cannot say that");
        }
    }
    m.insert("enum".into(), Value::Sequence(vec![c]));
    Ok(())
}

fn type_list(m: &mut Mapping, ptr: &str) -> Result<()> {
    let Some(t) = m.get("type") else { return Ok(()) };
    let names: Vec<String> = match t {
        Value::String(s) => vec![s.clone()],
        Value::Sequence(list) => {
            let mut names = Vec::new();
            for x in list {
                let Some(s) = x.as_str() else { bail!("{ptr}/type: type names are strings") };
                if !names.iter().any(|n| n == s) {
                    names.push(s.to_owned());
                }
            }
            names
        }
        _ => bail!("{ptr}/type: a type name or a list of them"),
    };
    let null = names.iter().any(|n| n == "null");
    let others: Vec<&String> = names.iter().filter(|n| *n != "null").collect();
    let ty = match others.as_slice() {
        [] => bail!("{ptr}/type: `null` as the only type; OpenAPI 3.0 has no null type"),
        [one] => (*one).clone(),
        many => bail!(
            "{ptr}/type: several types ({}); an OpenAPI 3.0 schema has one `type` (see the openapi31 module docs)",
            many.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
        ),
    };
    m.insert("type".into(), ty.into());
    // An enum without null excludes null already; `nullable` would let
    // readers that ignore the enum for null accept it.
    let enum_allows_null = match m.get("enum") {
        Some(Value::Sequence(e)) => e.contains(&Value::Null),
        _ => true,
    };
    if null && enum_allows_null {
        m.insert("nullable".into(), true.into());
    }
    Ok(())
}

fn examples_to_example(m: &mut Mapping, ptr: &str) -> Result<()> {
    let Some(examples) = m.shift_remove("examples") else { return Ok(()) };
    let Value::Sequence(examples) = examples else { bail!("{ptr}/examples: a list of values in a 3.1 schema") };
    // Annotations only: 3.0 has room for one, and an explicit `example` wins.
    if !m.contains_key("example")
        && let Some(first) = examples.into_iter().next()
    {
        m.insert("example".into(), first);
    }
    Ok(())
}

/// A numeric `exclusiveMinimum` (`exclusiveMaximum`) becomes the bound with
/// 3.0's boolean flag; `stricter(ex, bound)` says whether it tightens an
/// existing `minimum` (`maximum`), which otherwise implies it already.
fn exclusive_bound(
    m: &mut Mapping,
    ptr: &str,
    key: &str,
    bound_key: &str,
    stricter: fn(f64, f64) -> bool,
) -> Result<()> {
    let Some(ex) = m.get(key) else { return Ok(()) };
    let ex_n = match ex {
        Value::Number(n) => n.as_f64(),
        Value::Bool(_) => bail!("{ptr}/{key}: a boolean is the 3.0 spelling; in a 3.1 schema it is the bound itself"),
        _ => None,
    };
    let Some(ex_n) = ex_n else { bail!("{ptr}/{key}: a number") };
    let ex = ex.clone();
    let tighter = match m.get(bound_key) {
        None => true,
        Some(Value::Number(b)) => match b.as_f64() {
            Some(b) => stricter(ex_n, b),
            None => bail!("{ptr}/{bound_key}: a number"),
        },
        Some(_) => bail!("{ptr}/{bound_key}: a number"),
    };
    if tighter {
        m.insert(bound_key.into(), ex);
        m.insert(key.into(), true.into());
    } else {
        m.shift_remove(key);
    }
    Ok(())
}

fn content_keywords(m: &mut Mapping, ptr: &str, body: Option<&str>) -> Result<()> {
    if !m.contains_key("contentEncoding") && !m.contains_key("contentMediaType") && !m.contains_key("contentSchema") {
        return Ok(());
    }
    if m.get("type").and_then(Value::as_str) != Some("string") {
        // 2020-12 applies them to strings only; elsewhere they say nothing.
        rename(m, "contentEncoding", "x-contentEncoding");
        rename(m, "contentMediaType", "x-contentMediaType");
        rename(m, "contentSchema", "x-contentSchema");
        return Ok(());
    }
    let encoding = m.shift_remove("contentEncoding");
    let media = m.get("contentMediaType").and_then(Value::as_str).map(str::to_owned);
    let binary_body = body.is_some_and(|b| !is_json(b));
    let format = match encoding.as_ref().map(|e| e.as_str()) {
        Some(Some("base64")) => Some("byte"),
        Some(e) => bail!("{ptr}/contentEncoding: {e:?} has no OpenAPI 3.0 format (only base64, as `format: byte`)"),
        // Raw octets of the body itself: 3.0's `format: binary`.
        None if media.is_some() && binary_body => Some("binary"),
        None => None,
    };
    if let Some(f) = format {
        match m.get("format").and_then(Value::as_str) {
            Some(have) if have != f => bail!("{ptr}/format: {have:?} beside content keywords that mean `format: {f}`"),
            _ => {
                m.insert("format".into(), f.into());
            }
        }
    }
    // The body's own media type says it already; any other is an annotation.
    if media.is_some() && media.as_deref() == body {
        m.shift_remove("contentMediaType");
    }
    rename(m, "contentMediaType", "x-contentMediaType");
    rename(m, "contentSchema", "x-contentSchema");
    Ok(())
}

/// `oneOf`/`anyOf` of one schema and `{type: "null"}`: normalizes the
/// member and the rest of the schema each with its own pointer, then merges
/// them, the member made nullable. Returns whether it applied.
fn null_member(m: &mut Mapping, ptr: &str, body: Option<&str>) -> Result<bool> {
    for kw in ["oneOf", "anyOf"] {
        let Some(Value::Sequence(list)) = m.get(kw) else { continue };
        let nulls: Vec<usize> = (0..list.len()).filter(|&i| is_null_schema(&list[i])).collect();
        let Some(&first_null) = nulls.first() else { continue };
        let members: Vec<usize> = (0..list.len()).filter(|i| !nulls.contains(i)).collect();
        let [member_at] = members.as_slice() else {
            bail!(
                "{ptr}/{kw}/{first_null}: a `null` member beside {} other members; 3.0 can make one schema nullable, not a union",
                members.len()
            );
        };
        let member_at = *member_at;
        if kw == "oneOf" && (nulls.len() > 1 || allows_null(&list[member_at])) {
            bail!(
                "{ptr}/{kw}: null matches more than one member, so this `oneOf` rejects it; write it without the null member"
            );
        }
        let Some(Value::Sequence(mut list)) = m.shift_remove(kw) else { return Ok(false) };
        let mut member = list.swap_remove(member_at);
        schema(&mut member, &format!("{ptr}/{kw}/{member_at}"), body)?;
        let mut rest = Value::Mapping(std::mem::take(m));
        schema(&mut rest, ptr, body)?;
        let (Value::Mapping(member), Value::Mapping(rest)) = (member, rest) else {
            bail!("{ptr}: normalized schemas are objects")
        };
        *m = rest;
        let is_ref = member.contains_key("$ref");
        for (k, v) in member {
            match m.get(&k) {
                Some(have) if *have != v => {
                    bail!("{ptr}/{kw}/{member_at}: `{}` also set beside `{kw}`, differently", key_str(&k))
                }
                _ => {
                    m.insert(k, v);
                }
            }
        }
        if let Some(Value::Sequence(e)) = m.get_mut("enum")
            && !e.contains(&Value::Null)
        {
            // The null member allowed null; the enum must let it through.
            e.push(Value::Null);
        }
        m.insert("nullable".into(), true.into());
        if is_ref {
            wrap_ref(m);
        }
        return Ok(true);
    }
    Ok(false)
}

/// `{type: "null"}` (or `["null"]`), nothing else but a comment.
fn is_null_schema(v: &Value) -> bool {
    let Value::Mapping(m) = v else { return false };
    let null_type = match m.get("type") {
        Some(Value::String(s)) => s == "null",
        Some(Value::Sequence(l)) => l.len() == 1 && l[0].as_str() == Some("null"),
        _ => false,
    };
    null_type && m.keys().all(|k| matches!(k.as_str(), Some("type" | "$comment")))
}

/// Whether a (3.1) schema visibly admits null by its type or enum.
fn allows_null(v: &Value) -> bool {
    let Value::Mapping(m) = v else { return matches!(v, Value::Bool(true)) };
    let by_type = matches!(m.get("type"), Some(Value::Sequence(l)) if l.iter().any(|t| t.as_str() == Some("null")));
    let by_enum = matches!(m.get("enum"), Some(Value::Sequence(e)) if e.contains(&Value::Null));
    by_type || by_enum
}

fn is_json(media: &str) -> bool {
    let essence = media.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    essence == "application/json" || essence.ends_with("+json")
}

/// Every `$ref` string under `v` with the pointer of the object holding it.
fn collect_refs(v: &Value, ptr: &str, out: &mut Vec<(String, String)>) {
    match v {
        Value::Mapping(m) => {
            for (k, child) in m {
                let key = key_str(k);
                if key == "$ref"
                    && let Some(r) = child.as_str()
                {
                    out.push((ptr.to_owned(), r.to_owned()));
                }
                collect_refs(child, &format!("{ptr}/{}", esc(&key)), out);
            }
        }
        Value::Sequence(list) => {
            for (i, child) in list.iter().enumerate() {
                collect_refs(child, &format!("{ptr}/{i}"), out);
            }
        }
        _ => {}
    }
}

fn rename(m: &mut Mapping, from: &str, to: &str) {
    if let Some(v) = m.shift_remove(from) {
        m.insert(to.into(), v);
    }
}

/// A map key as text (YAML keys may be numbers, e.g. an unquoted `200`).
fn key_str(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => format!("{other:?}"),
    }
}

/// One JSON pointer segment (RFC 6901).
fn esc(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).expect("test YAML")
    }

    /// Wraps a schema into a 3.1 document's components.
    fn doc_with_schema(s: &str) -> Value {
        let mut doc = yaml("openapi: 3.1.0\ninfo: {title: t, version: '1'}\ncomponents: {schemas: {}}");
        doc["components"]["schemas"]["S"] = yaml(s);
        doc
    }

    fn norm_schema(s: &str) -> Result<Value> {
        let mut doc = doc_with_schema(s);
        normalize(&mut doc)?;
        Ok(doc["components"]["schemas"]["S"].clone())
    }

    fn ok(input: &str, expected: &str) {
        let got = norm_schema(input).unwrap_or_else(|e| panic!("{input}: {e:#}"));
        assert_eq!(got, yaml(expected), "{input}");
    }

    fn refused(input: &str, pointer: &str) {
        let e = format!("{:#}", norm_schema(input).expect_err(input));
        assert!(e.starts_with(pointer), "{input}: expected {pointer}, got {e}");
    }

    #[test]
    fn a_30_document_is_untouched() {
        let text = "openapi: 3.0.3\ninfo: {title: t, version: '1'}\npaths: {}\ncomponents: {schemas: {S: {type: [string, 'null'], const: 1}}}";
        let mut doc = yaml(text);
        assert!(normalize(&mut doc).unwrap().is_empty());
        assert_eq!(doc, yaml(text));
    }

    #[test]
    fn version_paths_and_info() {
        let mut doc = yaml(
            r##"{"openapi": "3.1.0", "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
                "info": {"title": "t", "version": "1", "summary": "s", "license": {"name": "MIT", "identifier": "MIT"}}}"##,
        );
        assert!(normalize(&mut doc).unwrap().is_empty());
        assert_eq!(
            doc,
            yaml(
                r##"{"openapi": "3.0.3", "info": {"title": "t", "version": "1", "x-summary": "s",
                    "license": {"name": "MIT", "x-identifier": "MIT"}}, "paths": {}}"##
            )
        );
    }

    #[test]
    fn other_dialect_is_refused() {
        let mut doc =
            yaml(r##"{"openapi": "3.1.0", "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema"}"##);
        let e = format!("{:#}", normalize(&mut doc).unwrap_err());
        assert!(e.starts_with("#/jsonSchemaDialect:"), "{e}");
    }

    #[test]
    fn webhooks_are_dropped_with_a_warning() {
        let mut doc = yaml(
            r##"{"openapi": "3.1.1", "paths": {}, "webhooks": {"newPet": {"post": {"responses": {"200": {"description": "ok"}}}}}}"##,
        );
        let warnings = normalize(&mut doc).unwrap();
        assert_eq!(doc, yaml(r##"{"openapi": "3.0.3", "paths": {}}"##));
        assert!(warnings.len() == 1 && warnings[0].starts_with("#/webhooks: dropped (newPet)"), "{warnings:?}");
    }

    #[test]
    fn path_items_components() {
        let mut doc = yaml(r##"{"openapi": "3.1.0", "components": {"pathItems": {"P": {}}}}"##);
        let warnings = normalize(&mut doc).unwrap();
        assert_eq!(doc, yaml(r##"{"openapi": "3.0.3", "components": {}, "paths": {}}"##));
        assert!(warnings[0].starts_with("#/components/pathItems: dropped"), "{warnings:?}");

        let mut doc = yaml(
            r##"{"openapi": "3.1.0", "paths": {"/a": {"$ref": "#/components/pathItems/P"}}, "components": {"pathItems": {"P": {}}}}"##,
        );
        let e = format!("{:#}", normalize(&mut doc).unwrap_err());
        assert!(e.starts_with("#/paths/~1a: references \"#/components/pathItems/P\""), "{e}");
    }

    #[test]
    fn type_with_null() {
        ok(
            r##"{"type": ["string", "null"], "maxLength": 3}"##,
            r##"{"type": "string", "nullable": true, "maxLength": 3}"##,
        );
        ok(r##"{"type": ["integer"]}"##, r##"{"type": "integer"}"##);
        // The enum excludes null already.
        ok(r##"{"type": ["string", "null"], "enum": ["a", "b"]}"##, r##"{"type": "string", "enum": ["a", "b"]}"##);
        ok(
            r##"{"type": ["string", "null"], "enum": ["a", null]}"##,
            r##"{"type": "string", "nullable": true, "enum": ["a", null]}"##,
        );
    }

    #[test]
    fn type_null_alone_or_several_types_are_refused() {
        refused(r##"{"type": "null"}"##, "#/components/schemas/S/type:");
        refused(r##"{"type": ["null"]}"##, "#/components/schemas/S/type:");
        refused(r##"{"type": ["string", "integer", "null"]}"##, "#/components/schemas/S/type: several types");
        refused(
            r##"{"type": "object", "properties": {"a/b": {"type": ["string", "number"]}}}"##,
            "#/components/schemas/S/properties/a~1b/type:",
        );
    }

    #[test]
    fn const_becomes_a_one_value_enum() {
        ok(r##"{"type": "string", "const": "x"}"##, r##"{"type": "string", "enum": ["x"]}"##);
        ok(r##"{"const": 1, "enum": [1, 2]}"##, r##"{"enum": [1]}"##);
        refused(r##"{"const": 3, "enum": [1, 2]}"##, "#/components/schemas/S/const:");
    }

    #[test]
    fn examples_become_example() {
        ok(r##"{"type": "integer", "examples": [1, 2]}"##, r##"{"type": "integer", "example": 1}"##);
        ok(r##"{"type": "integer", "example": 0, "examples": [1]}"##, r##"{"type": "integer", "example": 0}"##);
        ok(r##"{"type": "integer", "examples": []}"##, r##"{"type": "integer"}"##);
        refused(r##"{"examples": {"a": 1}}"##, "#/components/schemas/S/examples:");
    }

    #[test]
    fn numeric_exclusive_bounds() {
        ok(
            r##"{"type": "number", "exclusiveMinimum": 0}"##,
            r##"{"type": "number", "minimum": 0, "exclusiveMinimum": true}"##,
        );
        ok(
            r##"{"type": "number", "exclusiveMaximum": 10.5}"##,
            r##"{"type": "number", "maximum": 10.5, "exclusiveMaximum": true}"##,
        );
        // Both apply; the stricter one is kept.
        ok(
            r##"{"type": "number", "minimum": 0, "exclusiveMinimum": 5}"##,
            r##"{"type": "number", "minimum": 5, "exclusiveMinimum": true}"##,
        );
        ok(r##"{"type": "number", "minimum": 5, "exclusiveMinimum": 0}"##, r##"{"type": "number", "minimum": 5}"##);
        ok(
            r##"{"type": "number", "maximum": 3, "exclusiveMaximum": 3}"##,
            r##"{"type": "number", "maximum": 3, "exclusiveMaximum": true}"##,
        );
        refused(
            r##"{"type": "number", "minimum": 0, "exclusiveMinimum": true}"##,
            "#/components/schemas/S/exclusiveMinimum:",
        );
    }

    #[test]
    fn ref_with_siblings_becomes_all_of() {
        ok(
            r##"{"$ref": "#/components/schemas/T", "description": "d"}"##,
            r##"{"allOf": [{"$ref": "#/components/schemas/T"}], "description": "d"}"##,
        );
        ok(r##"{"$ref": "#/components/schemas/T"}"##, r##"{"$ref": "#/components/schemas/T"}"##);
        ok(
            r##"{"$ref": "#/components/schemas/T", "allOf": [{"type": "object"}], "examples": ["x"]}"##,
            r##"{"allOf": [{"$ref": "#/components/schemas/T"}, {"type": "object"}], "example": "x"}"##,
        );
        ok(
            r##"{"type": "object", "properties": {"p": {"$ref": "#/components/schemas/T", "$comment": "c"}}}"##,
            r##"{"type": "object", "properties": {"p": {"$ref": "#/components/schemas/T"}}}"##,
        );
    }

    #[test]
    fn content_keywords() {
        ok(r##"{"type": "string", "contentEncoding": "base64"}"##, r##"{"type": "string", "format": "byte"}"##);
        ok(
            r##"{"type": "string", "contentMediaType": "image/png"}"##,
            r##"{"type": "string", "x-contentMediaType": "image/png"}"##,
        );
        refused(r##"{"type": "string", "contentEncoding": "base32"}"##, "#/components/schemas/S/contentEncoding:");
        refused(
            r##"{"type": "string", "format": "binary", "contentEncoding": "base64"}"##,
            "#/components/schemas/S/format:",
        );

        let mut doc = yaml(
            r##"{"openapi": "3.1.0", "paths": {"/f": {"put": {
                  "requestBody": {"content": {"image/png": {"schema": {"type": "string", "contentMediaType": "image/png"}}}},
                  "responses": {"200": {"description": "ok", "content": {"application/json": {"schema":
                      {"type": "string", "contentMediaType": "text/html"}}}}}}}}}"##,
        );
        normalize(&mut doc).unwrap();
        let op = &doc["paths"]["/f"]["put"];
        assert_eq!(
            op["requestBody"]["content"]["image/png"]["schema"],
            yaml(r##"{"type": "string", "format": "binary"}"##)
        );
        // A JSON string holding HTML is not a binary body.
        assert_eq!(
            op["responses"]["200"]["content"]["application/json"]["schema"],
            yaml(r##"{"type": "string", "x-contentMediaType": "text/html"}"##)
        );
    }

    #[test]
    fn null_member_of_a_union() {
        ok(
            r##"{"description": "d", "oneOf": [{"$ref": "#/components/schemas/T"}, {"type": "null"}]}"##,
            r##"{"description": "d", "nullable": true, "allOf": [{"$ref": "#/components/schemas/T"}]}"##,
        );
        ok(
            r##"{"anyOf": [{"type": "null"}, {"type": "integer", "exclusiveMinimum": 0}]}"##,
            r##"{"type": "integer", "minimum": 0, "exclusiveMinimum": true, "nullable": true}"##,
        );
        ok(
            r##"{"oneOf": [{"type": "string", "enum": ["a"]}, {"type": "null"}]}"##,
            r##"{"type": "string", "enum": ["a", null], "nullable": true}"##,
        );
    }

    #[test]
    fn null_member_refusals() {
        refused(
            r##"{"oneOf": [{"type": "string"}, {"type": "integer"}, {"type": "null"}]}"##,
            "#/components/schemas/S/oneOf/2:",
        );
        refused(r##"{"oneOf": [{"type": ["string", "null"]}, {"type": "null"}]}"##, "#/components/schemas/S/oneOf:");
        refused(
            r##"{"description": "x", "anyOf": [{"type": "string", "description": "y"}, {"type": "null"}]}"##,
            "#/components/schemas/S/anyOf/0:",
        );
        // Errors inside the member keep the member's pointer.
        refused(
            r##"{"anyOf": [{"type": "null"}, {"type": "string", "if": {}}]}"##,
            "#/components/schemas/S/anyOf/1/if:",
        );
    }

    #[test]
    fn boolean_schemas() {
        ok(
            r##"{"type": "object", "properties": {"a": true, "b": false}}"##,
            r##"{"type": "object", "properties": {"a": {}, "b": {"not": {}}}}"##,
        );
        ok(
            r##"{"type": "object", "additionalProperties": false}"##,
            r##"{"type": "object", "additionalProperties": false}"##,
        );
    }

    #[test]
    fn keywords_3_0_cannot_say_are_refused() {
        refused(r##"{"type": "array", "prefixItems": [{"type": "string"}]}"##, "#/components/schemas/S/prefixItems:");
        refused(r##"{"type": "object", "$defs": {}}"##, "#/components/schemas/S/$defs:");
        refused(
            r##"{"type": "array", "items": {"type": "object", "unevaluatedProperties": false}}"##,
            "#/components/schemas/S/items/unevaluatedProperties:",
        );
        refused(r##"{"type": "string", "nullable": true}"##, "#/components/schemas/S/nullable:");
        refused(r##"{"not": {"if": {}}}"##, "#/components/schemas/S/not/if:");
    }

    #[test]
    fn schemas_everywhere() {
        let mut doc = yaml(
            r##"{"openapi": "3.1.0", "paths": {"/a/{id}": {
                "parameters": [{"name": "id", "in": "path", "required": true, "schema": {"type": "string", "const": "x"}}],
                "get": {"parameters": [{"name": "q", "in": "query", "schema": {"type": ["integer", "null"]}}],
                        "responses": {"200": {"description": "ok",
                            "headers": {"X-N": {"schema": {"type": "integer", "examples": [3]}}},
                            "content": {"application/json": {"schema": {"type": "array", "items": {"type": ["string", "null"]}}}}}},
                        "callbacks": {"cb": {"{$request.body#/url}": {"post": {"requestBody": {"content": {"application/json": {
                            "schema": {"type": "object", "additionalProperties": {"type": ["number", "null"]}}}}},
                            "responses": {"200": {"description": "ok"}}}}}}}}},
              "components": {"requestBodies": {"B": {"content": {"application/json": {"schema": {"not": {"const": 1}}}}}}}}"##,
        );
        normalize(&mut doc).unwrap();
        let item = &doc["paths"]["/a/{id}"];
        assert_eq!(item["parameters"][0]["schema"], yaml(r##"{"type": "string", "enum": ["x"]}"##));
        let get = &item["get"];
        assert_eq!(get["parameters"][0]["schema"], yaml(r##"{"type": "integer", "nullable": true}"##));
        let ok200 = &get["responses"]["200"];
        assert_eq!(ok200["headers"]["X-N"]["schema"], yaml(r##"{"type": "integer", "example": 3}"##));
        assert_eq!(
            ok200["content"]["application/json"]["schema"]["items"],
            yaml(r##"{"type": "string", "nullable": true}"##)
        );
        let cb = &get["callbacks"]["cb"]["{$request.body#/url}"]["post"]["requestBody"]["content"]["application/json"];
        assert_eq!(cb["schema"]["additionalProperties"], yaml(r##"{"type": "number", "nullable": true}"##));
        assert_eq!(
            doc["components"]["requestBodies"]["B"]["content"]["application/json"]["schema"],
            yaml(r##"{"not": {"enum": [1]}}"##)
        );
    }

    #[test]
    fn document_level_refusals() {
        let cases = [
            (
                r##"{"openapi": "3.1.0", "paths": {"/a": {"get": {"parameters": [{"$ref": "#/components/parameters/P", "description": "d"}], "responses": {}}}}}"##,
                "#/paths/~1a/get/parameters/0: `description` beside `$ref`",
            ),
            (r##"{"openapi": "3.1.0", "paths": {"/a": {"get": {}}}}"##, "#/paths/~1a/get/responses: absent"),
            (
                r##"{"openapi": "3.1.0", "components": {"securitySchemes": {"m": {"type": "mutualTLS"}}}}"##,
                "#/components/securitySchemes/m/type:",
            ),
        ];
        for (text, pointer) in cases {
            let e = format!("{:#}", normalize(&mut yaml(text)).unwrap_err());
            assert!(e.starts_with(pointer), "{text}: expected {pointer}, got {e}");
        }
    }
}
