//! Unions without a discriminator: which member a value is. A `oneOf` is
//! read by each member's *signature* — the JSON types it admits and, for
//! objects, the properties it requires, the types and string enums of the
//! properties it declares, and whether it is closed. The generator admits
//! a `oneOf` only when every member has values no other member's signature
//! admits; members that differ only in a format, a length or a range
//! (which a signature cannot see), or one whose values all fit another, are
//! refused with the pointer instead of being told apart by luck of serde's
//! order. A value that fits two signatures (`{lives, good_boy}` for `Cat`
//! and `Dog`) is decided by the structural check, which requires exactly
//! one member to match.

use anyhow::{Result, bail};
use serde_json::Value;

use super::schema::{AdditionalProperties, JsonType, Resolver, Schema, SchemaNode};

/// JSON types as bits, `number` being integer or not.
pub mod types {
    pub const NULL: u8 = 1;
    pub const BOOL: u8 = 2;
    pub const INTEGER: u8 = 4;
    /// A number with a fraction.
    pub const FRACTION: u8 = 8;
    pub const STRING: u8 = 16;
    pub const ARRAY: u8 = 32;
    pub const OBJECT: u8 = 64;
    pub const ALL: u8 = 127;
}

/// One declared property of an object member.
#[derive(Debug, Clone, PartialEq)]
pub struct PropSig {
    pub name: String,
    pub required: bool,
    pub types: u8,
    /// Its string enum (a one-value enum is a constant tag).
    pub values: Option<Vec<String>>,
}

/// What a value must look like to be this member.
#[derive(Debug, Clone, PartialEq)]
pub struct Signature {
    pub types: u8,
    pub props: Vec<PropSig>,
    /// `additionalProperties: false`: no property beyond `props`.
    pub closed: bool,
}

fn type_bits(n: &SchemaNode) -> u8 {
    let t = match n.ty {
        _ if n.enum_values == [Value::Null] => types::NULL,
        None => types::ALL,
        Some(JsonType::Boolean) => types::BOOL,
        Some(JsonType::Integer) => types::INTEGER,
        Some(JsonType::Number) => types::INTEGER | types::FRACTION,
        Some(JsonType::String) => types::STRING,
        Some(JsonType::Array) => types::ARRAY,
        Some(JsonType::Object) => types::OBJECT,
    };
    if n.nullable { t | types::NULL } else { t }
}

/// The node a member stands for, with an annotated reference followed.
fn member_node(r: &Resolver<'_>, s: &Schema) -> Result<SchemaNode> {
    let n = r.resolve(s)?;
    match &n.ref_of {
        Some(name) => {
            let mut target = r.resolve(&Schema::Ref(name.clone()))?;
            target.nullable |= n.nullable;
            Ok(target)
        }
        None => Ok(n),
    }
}

pub fn signature(r: &Resolver<'_>, member: &Schema) -> Result<Signature> {
    let n = member_node(r, member)?;
    // A nested union admits what any of its members admits; its object
    // members' properties are not summed up (refused if that matters).
    let types = if !n.one_of.is_empty() || !n.any_of.is_empty() {
        let mut t = if n.nullable { types::NULL } else { 0 };
        for m in n.one_of.iter().chain(&n.any_of) {
            t |= signature(r, m)?.types;
        }
        t
    } else {
        type_bits(&n)
    };
    let mut props = Vec::new();
    for p in &n.properties {
        let pn = member_node(r, &p.schema)?;
        let values = (pn.ty == Some(JsonType::String) && !pn.enum_values.is_empty())
            .then(|| pn.enum_values.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect());
        let types = if pn.one_of.is_empty() && pn.any_of.is_empty() { type_bits(&pn) } else { types::ALL };
        props.push(PropSig { name: p.name.clone(), required: n.required.contains(&p.name), types, values });
    }
    // Required names without a declared schema still have to be present.
    for req in &n.required {
        if !props.iter().any(|p| &p.name == req) {
            props.push(PropSig { name: req.clone(), required: true, types: types::ALL, values: None });
        }
    }
    Ok(Signature { types, props, closed: n.additional_properties == Some(AdditionalProperties::Forbidden) })
}

/// Whether some value has signature `a` but not `b`.
fn separable(a: &Signature, b: &Signature) -> bool {
    if a.types & !b.types != 0 {
        return true;
    }
    if a.types & types::OBJECT == 0 {
        return false;
    }
    // An `a` object without a property `b` requires.
    if b.props.iter().any(|q| q.required && !a.props.iter().any(|p| p.name == q.name && p.required)) {
        return true;
    }
    // A property both declare, with a type or value `b` does not allow.
    let narrower = a.props.iter().any(|pa| {
        b.props.iter().find(|pb| pb.name == pa.name).is_some_and(|pb| {
            pa.types & !pb.types != 0
                || match (&pa.values, &pb.values) {
                    (None, Some(_)) => true,
                    (Some(x), Some(y)) => x.iter().any(|v| !y.contains(v)),
                    _ => false,
                }
        })
    });
    // A property `b`, closed, does not declare.
    let wider = b.closed && (!a.closed || a.props.iter().any(|pa| !b.props.iter().any(|pb| pb.name == pa.name)));
    narrower || wider
}

/// Refuses a `oneOf` two of whose members cannot be told apart: every
/// value of one has the other's signature too.
pub fn check_exclusive(pointer: &str, sigs: &[Signature]) -> Result<()> {
    for i in 0..sigs.len() {
        for j in 0..sigs.len() {
            if i != j && !separable(&sigs[i], &sigs[j]) {
                bail!(
                    "{pointer}/oneOf: every value of member {i} also fits member {j} (their types, required \
                     properties and enum values do not tell them apart), so which one a value is cannot be told; \
                     give them different types, a required property with different types or enum values, or a \
                     discriminator — or use anyOf if the first match is meant"
                );
            }
        }
    }
    Ok(())
}

/// A property that names each member by a one-value string enum (an
/// implicit tag, as dropshot writes internally tagged enums): the values,
/// in member order, used to name the members.
pub fn implicit_tag(sigs: &[Signature]) -> Option<(String, Vec<String>)> {
    let first = sigs.first()?;
    'candidates: for p in first.props.iter().filter(|p| p.required) {
        let mut values: Vec<String> = Vec::new();
        for s in sigs {
            let Some(q) = s.props.iter().find(|q| q.name == p.name && q.required) else { continue 'candidates };
            match q.values.as_deref() {
                Some([v]) if !values.contains(v) => values.push(v.clone()),
                _ => continue 'candidates,
            }
        }
        return Some((p.name.clone(), values));
    }
    None
}
