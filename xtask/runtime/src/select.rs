//! Which member of a `oneOf` without discriminator a value is, by the
//! members' signatures (the generator admits only unions whose signatures
//! no value shares, so at most one matches; see the generator's
//! `ir/unions.rs`).

use serde_json::Value;

/// JSON types as bits; the generator writes the same values.
pub mod types {
    pub const NULL: u8 = 1;
    pub const BOOL: u8 = 2;
    pub const INTEGER: u8 = 4;
    pub const FRACTION: u8 = 8;
    pub const STRING: u8 = 16;
    pub const ARRAY: u8 = 32;
    pub const OBJECT: u8 = 64;
}

/// One declared property of an object member.
#[derive(Debug)]
pub struct PropSig {
    pub name: &'static str,
    pub required: bool,
    pub types: u8,
    pub values: Option<&'static [&'static str]>,
}

/// What a value must look like to be one member.
#[derive(Debug)]
pub struct Signature {
    pub types: u8,
    pub props: &'static [PropSig],
    pub closed: bool,
}

fn type_of(v: &Value) -> u8 {
    match v {
        Value::Null => types::NULL,
        Value::Bool(_) => types::BOOL,
        Value::Number(n) if n.is_i64() || n.is_u64() => types::INTEGER,
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => types::INTEGER,
        Value::Number(_) => types::FRACTION,
        Value::String(_) => types::STRING,
        Value::Array(_) => types::ARRAY,
        Value::Object(_) => types::OBJECT,
    }
}

fn prop_fits(p: &PropSig, v: &Value) -> bool {
    type_of(v) & p.types != 0 && p.values.is_none_or(|vs| v.as_str().is_some_and(|s| vs.contains(&s)))
}

impl Signature {
    /// Whether `v` has this member's signature. Linear in the number of
    /// `v`'s properties times the member's (a constant of the schema).
    pub fn fits(&self, v: &Value) -> bool {
        if type_of(v) & self.types == 0 {
            return false;
        }
        let Value::Object(o) = v else { return true };
        if self.types & types::OBJECT == 0 {
            return true;
        }
        for p in self.props {
            match o.get(p.name) {
                Some(x) if !prop_fits(p, x) => return false,
                None if p.required => return false,
                _ => {}
            }
        }
        !self.closed || o.keys().all(|k| self.props.iter().any(|p| p.name == k))
    }
}

/// Every member whose signature `v` has, in order.
pub fn fitting(v: &Value, members: &[Signature]) -> Vec<usize> {
    members.iter().enumerate().filter(|(_, m)| m.fits(v)).map(|(i, _)| i).collect()
}
