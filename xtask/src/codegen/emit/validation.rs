//! Validation: the garde rules and the structural shapes (`rt::Shape`) a
//! request type is checked against, each constraint in exactly one of them.

use anyhow::{Result, bail};
use proc_macro2::{Literal, TokenStream};
use quote::quote;
use serde_json::Value;

use super::schema_meta::component_type;
use super::{ident, lit};
use crate::codegen::ir::Api;
use crate::codegen::ir::schema::{AdditionalProperties, JsonType, Schema, SchemaNode};
use crate::codegen::ir::types::{Field, Optionality, RustType, TypeKind};

fn f64_lit_int(v: f64) -> TokenStream {
    if v.fract() == 0.0 && v.abs() < 9.0e15 {
        let l = Literal::i64_unsuffixed(v as i64);
        quote!(#l)
    } else {
        let l = Literal::f64_unsuffixed(v);
        quote!(#l)
    }
}

/// garde rules for one field: constraints the shape does not already cover.
pub(super) fn garde_rules(api: &Api, f: &Field) -> Result<TokenStream> {
    let mut rules = value_rules(api, &f.ty, &f.node)?;
    // Options are transparent to garde's rules except `inner`, which would
    // otherwise apply to the `Some` value instead of the items.
    let depth = match f.optionality() {
        Optionality::Plain => 0,
        Optionality::Option => 1,
        Optionality::DoubleOption => 2,
    };
    for r in rules.iter_mut() {
        if r.to_string().starts_with("inner") {
            for _ in 0..depth {
                *r = quote!(inner(#r));
            }
        }
    }
    if rules.is_empty() {
        return Ok(quote!(#[garde(skip)]));
    }
    Ok(quote!(#[garde(#(#rules),*)]))
}

/// garde rules for a value of type `ty` constrained by `n`. A constraint
/// neither garde nor the shape can check exactly is refused.
pub(super) fn value_rules(api: &Api, ty: &RustType, n: &SchemaNode) -> Result<Vec<TokenStream>> {
    match ty {
        // An `If-Match` is checked as the string the client sent.
        RustType::String | RustType::Password | RustType::IfMatch => Ok(string_rules(n)),
        RustType::Date | RustType::DateTime | RustType::Uuid => {
            if n.min_length.is_some() || n.max_length.is_some() {
                bail!("{}: length limits on formatted strings are not supported", n.pointer);
            }
            // A pattern on a date (the contract's `^\d{4}-\d{2}-\d{2}$`) is
            // enforced by the shape's strict YYYY-MM-DD parse.
            Ok(Vec::new())
        }
        RustType::I64 | RustType::I32 => number_rules(n, true),
        RustType::F64 | RustType::F32 => number_rules(n, false),
        RustType::Vec(item) => array_rules(api, item, n),
        RustType::Named(name) => {
            if matches!(
                api.types.get(name).map(|t| &t.kind),
                Some(TypeKind::Struct(_) | TypeKind::Union(_) | TypeKind::Newtype(_))
            ) {
                Ok(vec![quote!(dive)])
            } else {
                Ok(Vec::new())
            }
        }
        // Bytes are a whole non-JSON body: nothing in them to check.
        RustType::Map(item) => map_rules(api, item, n),
        RustType::Bool if !n.enum_values.is_empty() => {
            let allowed = n.enum_values.iter().filter_map(serde_json::Value::as_bool);
            Ok(vec![quote!(custom(rt::rules::bool_in(&[#(#allowed),*])))])
        }
        RustType::JsonObject | RustType::Any | RustType::Bool | RustType::Bytes | RustType::Unit | RustType::File => {
            Ok(Vec::new())
        }
    }
}

/// `min = …, max = …` for whichever bounds are given.
fn bounds(min: Option<usize>, max: Option<usize>) -> Vec<TokenStream> {
    let mut args = Vec::new();
    if let Some(m) = min {
        let m = Literal::usize_unsuffixed(m);
        args.push(quote!(min = #m));
    }
    if let Some(m) = max {
        let m = Literal::usize_unsuffixed(m);
        args.push(quote!(max = #m));
    }
    args
}

fn string_rules(n: &SchemaNode) -> Vec<TokenStream> {
    let mut rules = Vec::new();
    if n.min_length.is_some() || n.max_length.is_some() {
        // JSON Schema counts characters, not bytes.
        let args = std::iter::once(quote!(chars)).chain(bounds(n.min_length, n.max_length));
        rules.push(quote!(length(#(#args),*)));
    }
    // The ECMA-262 pattern, translated to the `regex` dialect (the served
    // document keeps the spec's spelling).
    if let Some(p) = &n.pattern_rust {
        let p = lit(p);
        rules.push(quote!(pattern(#p)));
    }
    match n.format.as_deref() {
        Some("email") => rules.push(quote!(email)),
        Some(f @ ("uri" | "ipv4" | "ipv6" | "hostname" | "byte")) => {
            let f = lit(f);
            rules.push(quote!(custom(rt::rules::format(#f))));
        }
        // Other formats are annotations (JSON Schema), or change the Rust
        // type (date, date-time, uuid), which checks them.
        _ => {}
    }
    rules
}

/// A range rule; exclusive bounds move by one on integers and are strict
/// comparisons on floats; `multipleOf` is a custom rule.
fn number_rules(n: &SchemaNode, int: bool) -> Result<Vec<TokenStream>> {
    let literal = |v: f64| {
        if int {
            f64_lit_int(v)
        } else {
            let l = Literal::f64_unsuffixed(v);
            quote!(#l)
        }
    };
    let mut args = Vec::new();
    let mut rules = Vec::new();
    let float = |v: f64| {
        let l = Literal::f64_unsuffixed(v);
        quote!(#l)
    };
    if let Some(m) = n.minimum {
        if n.exclusive_minimum && !int {
            let b = float(m);
            rules.push(quote!(custom(rt::rules::greater_than(#b))));
        } else {
            let m = literal(if n.exclusive_minimum { m + 1.0 } else { m });
            args.push(quote!(min = #m));
        }
    }
    if let Some(m) = n.maximum {
        if n.exclusive_maximum && !int {
            let b = float(m);
            rules.push(quote!(custom(rt::rules::less_than(#b))));
        } else {
            let m = literal(if n.exclusive_maximum { m - 1.0 } else { m });
            args.push(quote!(max = #m));
        }
    }
    if !args.is_empty() {
        rules.insert(0, quote!(range(#(#args),*)));
    }
    if let Some(m) = n.multiple_of {
        if m <= 0.0 {
            bail!("{}: multipleOf must be greater than 0", n.pointer);
        }
        let m = float(m);
        rules.push(quote!(custom(rt::rules::multiple_of(#m))));
    }
    Ok(rules)
}

/// Map values: structs are validated through `dive`; a constraint garde
/// would have to check on each scalar value is refused rather than left
/// unchecked.
fn map_rules(api: &Api, item: &RustType, n: &SchemaNode) -> Result<Vec<TokenStream>> {
    let item_node = match &n.additional_properties {
        Some(AdditionalProperties::Schema(v)) => node_of(api, v),
        _ => SchemaNode::default(),
    };
    let inner = value_rules(api, item, &item_node)?;
    if inner.iter().any(|r| r.to_string() == "dive") {
        return Ok(vec![quote!(dive)]);
    }
    if !inner.is_empty() {
        bail!(
            "{}/additionalProperties: constraints on the values of a map (length, pattern, range, format) are not supported",
            n.pointer
        );
    }
    Ok(Vec::new())
}

/// The node whose constraints apply to a schema: inline, or its component's.
pub(super) fn node_of(api: &Api, s: &Schema) -> SchemaNode {
    match s {
        Schema::Inline(i) => (**i).clone(),
        Schema::Ref(name) => api
            .types
            .values()
            .find(|t| t.component.as_deref() == Some(name))
            .map(|t| t.node.clone())
            .or_else(|| api.value_aliases.get(name).map(|a| a.node.clone()))
            .unwrap_or_default(),
    }
}

fn array_rules(api: &Api, item: &RustType, n: &SchemaNode) -> Result<Vec<TokenStream>> {
    let mut rules = Vec::new();
    if n.min_items.is_some() || n.max_items.is_some() {
        let args = bounds(n.min_items, n.max_items);
        rules.push(quote!(length(#(#args),*)));
    }
    if n.unique_items {
        rules.push(quote!(custom(rt::rules::unique_items)));
    }
    let item_node = n.items.as_ref().map(|i| node_of(api, i)).unwrap_or_default();
    let inner = value_rules(api, item, &item_node)?;
    if inner.iter().any(|r| r.to_string() == "dive") {
        // garde validates `Vec<T: Validate>` itself; `dive` is only
        // allowed at field level.
        rules.push(quote!(dive));
    } else if !inner.is_empty() {
        rules.push(quote!(inner(#(#inner),*)));
    }
    Ok(rules)
}

/// `closed`: `additionalProperties: false`, so unknown properties fail.
pub(super) fn shape_of_fields(api: &Api, fields: &[Field], closed: bool) -> TokenStream {
    let rest = fields.iter().find(|f| f.flatten).map(|f| match &f.ty {
        RustType::Map(item) => {
            let item_node = match &f.node.additional_properties {
                Some(AdditionalProperties::Schema(Schema::Inline(i))) => (**i).clone(),
                _ => SchemaNode::default(),
            };
            let mut s = shape_of(api, item, &item_node);
            if item_node.nullable {
                s = quote!(rt::Shape::Nullable(&#s));
            }
            s
        }
        _ => quote!(rt::Shape::Any),
    });
    // File parts are not in the JSON the structural pass sees.
    let props = fields.iter().filter(|f| !f.flatten && !f.is_file()).map(|f| {
        let name = lit(&f.json_name);
        let required = f.required;
        let mut shape = shape_of(api, &f.ty, &f.node);
        if f.nullable {
            shape = quote!(rt::Shape::Nullable(&#shape));
        }
        let access = match (f.node.read_only, f.node.write_only) {
            (true, _) => quote!(rt::Access::ReadOnly),
            (_, true) => quote!(rt::Access::WriteOnly),
            _ => quote!(rt::Access::ReadWrite),
        };
        quote!(rt::Prop { name: #name, required: #required, shape: &#shape, access: #access })
    });
    match (closed, rest) {
        (_, Some(rest)) => quote!(rt::Shape::ObjectRest(&[#(#props),*], &#rest)),
        (true, None) => quote!(rt::Shape::ClosedObject(&[#(#props),*])),
        (false, None) => quote!(rt::Shape::Object(&[#(#props),*])),
    }
}

/// `minProperties` / `maxProperties` around an object's shape.
pub(super) fn property_count(n: &SchemaNode, shape: TokenStream) -> TokenStream {
    if n.min_properties.is_none() && n.max_properties.is_none() {
        return shape;
    }
    let min = Literal::usize_unsuffixed(n.min_properties.unwrap_or(0));
    let max = match n.max_properties {
        Some(m) => {
            let m = Literal::usize_unsuffixed(m);
            quote!(#m)
        }
        None => quote!(usize::MAX),
    };
    quote!(rt::Shape::PropertyCount { min: #min, max: #max, inner: &#shape })
}

/// The shape of one field's value (without its nullability).
pub(super) fn shape_of_field_type(api: &Api, f: &Field) -> TokenStream {
    shape_of(api, &f.ty, &f.node)
}

/// The shape of a union: each member's, an inline object member by the
/// type generated for it.
pub(super) fn shape_of_union(
    api: &Api,
    n: &SchemaNode,
    variants: &[crate::codegen::ir::types::UnionVariant],
) -> TokenStream {
    if n.discriminator.is_some() {
        return shape_of_node(api, n);
    }
    let shapes: Vec<TokenStream> = variants
        .iter()
        .map(|v| match &v.schema {
            Schema::Inline(node) if node.ref_of.is_none() && matches!(v.ty, RustType::Named(_)) => {
                let s = shape_of(api, &v.ty, node);
                if node.nullable { quote!(&rt::Shape::Nullable(&#s)) } else { quote!(&#s) }
            }
            _ => member_shape(api, &v.schema),
        })
        .collect();
    if variants.iter().all(|v| v.signature.is_some()) {
        let members = variants.iter().zip(&shapes).filter_map(|(v, s)| {
            let sig = signature_tokens(v.signature.as_ref()?);
            Some(quote!((&#sig, #s)))
        });
        return quote!(rt::Shape::OneOfSigned(&[#(#members),*]));
    }
    if n.one_of.is_empty() {
        quote!(rt::Shape::AnyOf(&[#(#shapes),*]))
    } else {
        quote!(rt::Shape::OneOf(&[#(#shapes),*]))
    }
}

/// A member's signature as a `rt::select::Signature` constant.
pub(super) fn signature_tokens(s: &crate::codegen::ir::unions::Signature) -> TokenStream {
    let types = s.types;
    let closed = s.closed;
    let props = s.props.iter().map(|p| {
        let (n, r, ty) = (lit(&p.name), p.required, p.types);
        let values = match &p.values {
            Some(vs) => {
                let vs = vs.iter().map(|v| lit(v));
                quote!(::std::option::Option::Some(&[#(#vs),*]))
            }
            None => quote!(::std::option::Option::None),
        };
        quote!(rt::select::PropSig { name: #n, required: #r, types: #ty, values: #values })
    });
    quote!(rt::select::Signature { types: #types, props: &[#(#props),*], closed: #closed })
}

fn member_shape(api: &Api, m: &Schema) -> TokenStream {
    match m {
        Schema::Inline(node) if node.ref_of.is_some() => {
            let ty = RustType::Named(node.ref_of.as_deref().and_then(|r| component_type(api, r)).unwrap_or_default());
            let s = shape_of(api, &ty, node);
            if node.nullable { quote!(&rt::Shape::Nullable(&#s)) } else { quote!(&#s) }
        }
        Schema::Ref(name) => match (component_type(api, name), api.value_aliases.get(name)) {
            (Some(t), _) => shape_ref(api, &t),
            (None, Some(a)) => {
                let s = shape_of(api, &a.rust_type, &a.node);
                quote!(&#s)
            }
            (None, None) => quote!(&rt::Shape::Any),
        },
        Schema::Inline(node) => {
            let ty = rty_of_inline(node);
            let s = shape_of(api, &ty, node);
            quote!(&#s)
        }
    }
}

/// The static holding a recursive type's shape.
pub(super) fn shape_static(rust_name: &str) -> proc_macro2::Ident {
    quote::format_ident!("{}_SHAPE", heck::ToShoutySnakeCase::to_shouty_snake_case(rust_name))
}

/// `&'static Shape` of a generated type. A recursive type's static is named
/// directly: through the `Model` constant, a static's initializer would
/// depend on itself (const checking follows the reference).
fn shape_ref(api: &Api, rust_name: &str) -> TokenStream {
    if api.recursive.contains(rust_name) {
        let s = shape_static(rust_name);
        quote!(&#s)
    } else {
        let t = ident(rust_name);
        quote!(<#t as rt::Model>::SHAPE)
    }
}

fn shape_of_node(api: &Api, n: &SchemaNode) -> TokenStream {
    if let Some(d) = &n.discriminator {
        let property = lit(&d.property);
        let entries = d.mapping.iter().filter_map(|(value, component)| {
            let t = shape_ref(api, &component_type(api, component)?);
            let v = lit(value);
            Some(quote!((#v, #t)))
        });
        return quote!(rt::Shape::Discriminated { property: #property, mapping: &[#(#entries),*] });
    }
    let members = if n.one_of.is_empty() { &n.any_of } else { &n.one_of };
    let shapes = members.iter().map(|m| member_shape(api, m));
    if n.one_of.is_empty() {
        quote!(rt::Shape::AnyOf(&[#(#shapes),*]))
    } else {
        quote!(rt::Shape::OneOf(&[#(#shapes),*]))
    }
}

fn rty_of_inline(n: &SchemaNode) -> RustType {
    match (n.ty, n.format.as_deref()) {
        (Some(JsonType::Integer), Some("int32")) => RustType::I32,
        (Some(JsonType::Integer), _) => RustType::I64,
        (Some(JsonType::Number), _) => RustType::F64,
        (Some(JsonType::Boolean), _) => RustType::Bool,
        (Some(JsonType::String), Some("date")) => RustType::Date,
        (Some(JsonType::String), Some("date-time")) => RustType::DateTime,
        (Some(JsonType::String), Some("uuid")) => RustType::Uuid,
        (Some(JsonType::String), _) => RustType::String,
        _ => RustType::Any,
    }
}

fn shape_of(api: &Api, ty: &RustType, n: &SchemaNode) -> TokenStream {
    match ty {
        RustType::Named(name) => match api.types.get(name).map(|t| &t.kind) {
            Some(TypeKind::StrEnum(vs)) => {
                let ws = vs.iter().map(|e| lit(&e.wire));
                quote!(rt::Shape::Enum(&[#(#ws),*]))
            }
            _ => {
                let t = shape_ref(api, name);
                quote!(*#t)
            }
        },
        RustType::String | RustType::Password => quote!(rt::Shape::String(rt::StrFormat::Plain)),
        RustType::Date => quote!(rt::Shape::String(rt::StrFormat::Date)),
        RustType::DateTime => quote!(rt::Shape::String(rt::StrFormat::DateTime)),
        RustType::Uuid => quote!(rt::Shape::String(rt::StrFormat::Uuid)),
        RustType::IfMatch => quote!(rt::Shape::String(rt::StrFormat::EntityTags)),
        RustType::I32 => int_shape(n, i32::MIN as i64, i32::MAX as i64),
        RustType::I64 => int_shape(n, i64::MIN, i64::MAX),
        RustType::F32 | RustType::F64 => quote!(rt::Shape::Number),
        RustType::Bool => quote!(rt::Shape::Bool),
        RustType::Vec(item) => {
            let item_node = match &n.items {
                Some(Schema::Inline(i)) => (**i).clone(),
                _ => SchemaNode::default(),
            };
            let mut s = shape_of(api, item, &item_node);
            if item_node.nullable {
                s = quote!(rt::Shape::Nullable(&#s));
            }
            quote!(rt::Shape::Array(&#s))
        }
        RustType::Map(item) => {
            let item_node = match &n.additional_properties {
                Some(AdditionalProperties::Schema(Schema::Inline(i))) => (**i).clone(),
                _ => SchemaNode::default(),
            };
            let mut s = shape_of(api, item, &item_node);
            if item_node.nullable {
                s = quote!(rt::Shape::Nullable(&#s));
            }
            property_count(n, quote!(rt::Shape::Map(&#s)))
        }
        RustType::JsonObject => property_count(n, quote!(rt::Shape::Map(&rt::Shape::Any))),
        RustType::Any | RustType::Bytes | RustType::File => quote!(rt::Shape::Any),
        // Null, and nothing else.
        RustType::Unit => quote!(rt::Shape::Nullable(&rt::Shape::Enum(&[]))),
    }
}

fn int_shape(n: &SchemaNode, lo: i64, hi: i64) -> TokenStream {
    if !n.enum_values.is_empty() {
        // Integer enums: the shape's range cannot express them, garde has no
        // rule for them; a one-value enum (the envelope's `code: 0`) is the
        // common case and is exact as a range.
        let vals: Vec<i64> = n.enum_values.iter().filter_map(Value::as_i64).collect();
        if let (Some(min), Some(max)) = (vals.iter().min(), vals.iter().max())
            && vals.len() as i64 == max - min + 1
        {
            let (min, max) = (Literal::i64_unsuffixed(*min), Literal::i64_unsuffixed(*max));
            return quote!(rt::Shape::Integer { min: #min, max: #max });
        }
    }
    let (lo, hi) = (Literal::i64_unsuffixed(lo), Literal::i64_unsuffixed(hi));
    quote!(rt::Shape::Integer { min: #lo, max: #hi })
}
