//! Partial responses: a query parameter carrying `x-field-mask: <pointer>`
//! names which members of one object of the success bodies to send
//! (`?fields=id,email`). The pointer goes from the body to that object; a
//! `*` segment steps into every item of an array (`/data/items/*`). The
//! parameter's value must be an enum of that object's property names (or
//! an array of them), so an unknown name is a 400 naming it, and the
//! handler still returns the whole response: the glue drops the rest when
//! it serializes the body.
//!
//! Members the object requires are absent when not asked for: the
//! extension is how a reader of the spec (and the contract checker) knows
//! that `required` there holds only for the requested names.

use anyhow::{Context, Result, bail};

use super::media::is_json;
use super::params::{ParamLocation, Parameter};
use super::responses::Response;
use super::schema::{JsonType, Resolver, Schema};

pub const EXTENSION: &str = "x-field-mask";

/// One step of the pointer from the body to the masked object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    Key(String),
    Each,
}

#[derive(Debug, Clone)]
pub struct FieldMask {
    /// The parameter's field in the operation's params struct.
    pub param_field: String,
    pub steps: Vec<Step>,
    /// The property names the parameter admits.
    pub names: Vec<String>,
}

/// The operation's field mask, if one of its parameters declares one.
pub fn field_mask(resolver: &Resolver<'_>, params: &[Parameter], responses: &[Response]) -> Result<Option<FieldMask>> {
    let mut masked = params.iter().filter(|p| p.field_mask.is_some());
    let Some(p) = masked.next() else { return Ok(None) };
    if let Some(q) = masked.next() {
        bail!("{}/{EXTENSION}: a second field mask on one operation (the first is on {:?})", q.pointer, p.name);
    }
    let at = format!("{}/{EXTENSION}", p.pointer);
    if p.location != ParamLocation::Query || p.content.is_some() {
        bail!("{at}: a field mask must be a query parameter with a `schema`");
    }
    let text = p
        .field_mask
        .as_ref()
        .and_then(serde_json::Value::as_str)
        .with_context(|| format!("{at}: must be a JSON pointer string (`/data`, `/data/items/*`)"))?;
    let steps = steps(text).with_context(|| format!("{at}: {text:?}"))?;
    let names = mask_names(resolver, p).with_context(|| format!("{}/schema", p.pointer))?;

    let mut bodies = 0;
    for r in responses.iter().filter(|r| !r.is_error()) {
        for m in r.content.iter().filter(|m| is_json(&m.media_type)) {
            bodies += 1;
            let object = walk(resolver, &m.schema, &steps).with_context(|| format!("{at}: in {}", r.pointer))?;
            let props: Vec<String> = resolver.resolve(&object)?.properties.into_iter().map(|p| p.name).collect();
            if let Some(n) = names.iter().find(|n| !props.contains(n)) {
                bail!(
                    "{}/schema: {n:?} is not a property of the object {text} selects in {} (its properties: {})",
                    p.pointer,
                    r.pointer,
                    props.join(", ")
                );
            }
        }
    }
    if bodies == 0 {
        bail!("{at}: the operation has no JSON success body to mask");
    }
    Ok(Some(FieldMask { param_field: p.field.rust_name.clone(), steps, names }))
}

fn steps(pointer: &str) -> Result<Vec<Step>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let Some(rest) = pointer.strip_prefix('/') else { bail!("a JSON pointer starts with `/`") };
    Ok(rest
        .split('/')
        .map(|s| if s == "*" { Step::Each } else { Step::Key(s.replace("~1", "/").replace("~0", "~")) })
        .collect())
}

/// The names a mask parameter admits: its string enum, or its items'.
fn mask_names(resolver: &Resolver<'_>, p: &Parameter) -> Result<Vec<String>> {
    let mut node = resolver.resolve(&p.schema)?;
    if node.ty == Some(JsonType::Array) {
        let items = node.items.as_ref().context("an array of names needs `items`")?;
        node = resolver.resolve(items)?;
    }
    if node.ty != Some(JsonType::String) || node.enum_values.is_empty() {
        bail!("a field mask's value must be a string enum of property names, or an array of one");
    }
    node.enum_values
        .iter()
        .map(|v| v.as_str().map(str::to_owned).with_context(|| format!("enum value {v} is not a string")))
        .collect()
}

/// The schema the steps lead to from `schema`, which must be an object.
fn walk(resolver: &Resolver<'_>, schema: &Schema, steps: &[Step]) -> Result<Schema> {
    let mut cur = schema.clone();
    for (i, step) in steps.iter().enumerate() {
        let node = resolver.resolve(&cur)?;
        if !node.one_of.is_empty() || !node.any_of.is_empty() {
            bail!("step {} goes through a oneOf/anyOf ({}), which a mask cannot follow", i + 1, node.pointer);
        }
        cur = match step {
            Step::Key(k) => match node.properties.into_iter().find(|p| p.name == *k) {
                Some(p) => p.schema,
                None => bail!("{}: no property {k:?}", node.pointer),
            },
            Step::Each => match (node.ty, node.items) {
                (Some(JsonType::Array), Some(items)) => items,
                _ => bail!("{}: `*` steps into an array's items, and this is not an array", node.pointer),
            },
        };
    }
    let node = resolver.resolve(&cur)?;
    if node.ty != Some(JsonType::Object) && node.properties.is_empty() {
        bail!("{}: the masked value must be an object with properties", node.pointer);
    }
    if !node.one_of.is_empty() || !node.any_of.is_empty() {
        bail!("{}: the masked object is a oneOf/anyOf, whose members a mask cannot name", node.pointer);
    }
    Ok(cur)
}
