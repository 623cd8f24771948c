//! `models.rs`: one Rust type per schema (structs, string enums, untagged
//! unions) with its serde attributes, its exact schema for the document, and,
//! for types a request can carry, garde rules and the structural shape.

use anyhow::{Result, bail};
use heck::ToSnakeCase;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use serde_json::Value;
use std::collections::BTreeSet;

use super::schema_meta::{meta_schema, refs_in_node, register_calls};
use super::validation::{garde_rules, shape_of_fields};
use super::{doc_attrs, ident, lit};
use crate::codegen::ir::Api;
use crate::codegen::ir::schema::{AdditionalProperties, Schema};
use crate::codegen::ir::types::{EnumVariant, Field, Optionality, RustType, TypeDef, TypeKind, UnionVariant};

pub(super) fn rust_type_tokens(t: &RustType) -> TokenStream {
    match t {
        RustType::Named(n) => {
            let n = ident(n);
            quote!(#n)
        }
        RustType::String => quote!(::std::string::String),
        RustType::Password => quote!(crate::rt::Password),
        RustType::Date => quote!(::chrono::NaiveDate),
        RustType::DateTime => quote!(::chrono::DateTime<::chrono::Utc>),
        RustType::Uuid => quote!(::uuid::Uuid),
        RustType::I32 => quote!(i32),
        RustType::I64 => quote!(i64),
        RustType::F32 => quote!(f32),
        RustType::F64 => quote!(f64),
        RustType::Bool => quote!(bool),
        RustType::Vec(i) => {
            let i = rust_type_tokens(i);
            quote!(::std::vec::Vec<#i>)
        }
        RustType::Map(i) => {
            let i = rust_type_tokens(i);
            quote!(::std::collections::BTreeMap<::std::string::String, #i>)
        }
        RustType::JsonObject => quote!(::serde_json::Map<::std::string::String, ::serde_json::Value>),
        RustType::Any => quote!(::serde_json::Value),
        RustType::Bytes => quote!(::std::vec::Vec<u8>),
        RustType::File => quote!(rt::FilePart),
        RustType::IfMatch => quote!(rt::etag::IfMatch),
        RustType::Unit => quote!(()),
    }
}

fn field_type(f: &Field) -> TokenStream {
    let t = rust_type_tokens(&f.ty);
    let t = if f.boxed { quote!(::std::boxed::Box<#t>) } else { t };
    match f.optionality() {
        Optionality::Plain => t,
        Optionality::Option => quote!(::std::option::Option<#t>),
        Optionality::DoubleOption => quote!(::std::option::Option<::std::option::Option<#t>>),
    }
}

/// Types reachable from request bodies and parameters: these get garde
/// rules, shapes and `rt::Model`.
pub(super) fn request_reachable(api: &Api) -> Result<BTreeSet<String>> {
    fn walk(api: &Api, t: &RustType, out: &mut BTreeSet<String>, stack: &mut Vec<String>) -> Result<()> {
        match t {
            RustType::Named(n) => {
                if !out.insert(n.clone()) {
                    return Ok(());
                }
                stack.push(n.clone());
                match &api.types[n].kind {
                    TypeKind::Struct(fields) => {
                        for f in fields {
                            walk(api, &f.ty, out, stack)?;
                        }
                    }
                    TypeKind::Union(vs) => {
                        for v in vs {
                            walk(api, &v.ty, out, stack)?;
                        }
                    }
                    TypeKind::Newtype(f) => walk(api, &f.ty, out, stack)?,
                    TypeKind::StrEnum(_) => {}
                }
                stack.pop();
                Ok(())
            }
            RustType::Vec(i) | RustType::Map(i) => walk(api, i, out, stack),
            _ => Ok(()),
        }
    }
    let mut out = BTreeSet::new();
    for op in &api.operations {
        if let Some(rb) = op.request_body.as_ref().filter(|rb| rb.raw.is_none()) {
            walk(api, &RustType::Named(rb.model.clone()), &mut out, &mut Vec::new())?;
        }
        if let Some(p) = &op.params_type {
            walk(api, &RustType::Named(p.clone()), &mut out, &mut Vec::new())?;
        }
    }
    Ok(out)
}

/// A scalar, array or map component: a Rust `type` alias, and the function
/// that registers its named schema (what references to it point at).
fn value_alias(api: &Api, component: &str, a: &crate::codegen::ir::types::ValueAlias) -> TokenStream {
    let name = ident(&a.rust_name);
    let ty = rust_type_tokens(&a.rust_type);
    let doc = doc_attrs(&[
        a.node.description.as_deref(),
        Some(&format!("Schema `#/components/schemas/{component}` (its constraints apply where it is used).")),
    ]);
    let f = super::schema_meta::alias_register_fn(component);
    let c = lit(component);
    let meta = meta_schema(api, &a.node);
    let mut refs = BTreeSet::new();
    refs_in_node(api, &a.node, &mut refs);
    let regs = register_calls(api, &refs);
    quote! {
        #doc
        pub type #name = #ty;

        #[doc(hidden)]
        pub fn #f(registry: &mut ::poem_openapi::registry::Registry) {
            /// Names the schema's owner for poem-openapi's duplicate check.
            struct Owner;
            registry.create_schema::<Owner, _>(::std::string::String::from(#c), |registry| {
                let _ = &registry;
                #regs
                #meta
            });
        }
    }
}

/// The types of response bodies (and what they contain), which get the
/// same checks as requests so responses can be checked against the spec.
/// A recursive type is left out, with everything that leads to it: its
/// static shape would be infinite.
pub(super) fn response_reachable(api: &Api) -> BTreeSet<String> {
    fn walk(api: &Api, t: &RustType, out: &mut BTreeSet<String>, stack: &mut Vec<String>) -> bool {
        match t {
            RustType::Named(n) => {
                if stack.contains(n) {
                    // A recursive type: its shape is a static, so the
                    // cycle is finite in the checks too.
                    return true;
                }
                if out.contains(n) {
                    return true;
                }
                stack.push(n.clone());
                let ok = match &api.types[n].kind {
                    TypeKind::Struct(fields) => fields.iter().all(|f| walk(api, &f.ty, out, stack)),
                    TypeKind::Union(vs) => vs.iter().all(|v| walk(api, &v.ty, out, stack)),
                    TypeKind::Newtype(f) => walk(api, &f.ty, out, stack),
                    TypeKind::StrEnum(_) => true,
                };
                stack.pop();
                if ok {
                    out.insert(n.clone());
                }
                ok
            }
            RustType::Vec(i) | RustType::Map(i) => walk(api, i, out, stack),
            _ => true,
        }
    }
    let mut out = BTreeSet::new();
    for r in api.operations.iter().flat_map(|o| &o.responses) {
        for m in &r.content {
            let mut found = BTreeSet::new();
            if walk(api, &m.rust_type, &mut found, &mut Vec::new()) {
                out.extend(found);
            }
        }
    }
    out
}

pub(super) fn models_rs(api: &Api, request: &BTreeSet<String>) -> Result<TokenStream> {
    let mut items = Vec::new();
    for t in api.types.values() {
        // Params structs live with their operation's tag module.
        if api.operations.iter().any(|o| o.params_type.as_deref() == Some(&t.rust_name)) {
            continue;
        }
        items.push(type_def(api, t, request.contains(&t.rust_name))?);
    }
    for (component, a) in &api.value_aliases {
        items.push(value_alias(api, component, a));
    }
    Ok(quote! {
        //! Models for every schema of the contract, component or inline.
        #![allow(clippy::large_enum_variant, clippy::derivable_impls)]
        #[allow(unused_imports)]
        use crate::rt;
        #(#items)*
    })
}

fn type_doc(t: &TypeDef) -> TokenStream {
    let origin = match &t.component {
        Some(c) => format!("Schema `#/components/schemas/{c}`."),
        None => format!("Inline schema at `{}`.", t.node.pointer),
    };
    doc_attrs(&[t.node.description.as_deref(), Some(&origin)])
}

fn type_def(api: &Api, t: &TypeDef, request: bool) -> Result<TokenStream> {
    let doc = type_doc(t);
    let type_impl = type_impl(api, t);
    Ok(match &t.kind {
        TypeKind::StrEnum(variants) => str_enum_def(t, variants, &doc, &type_impl),
        TypeKind::Union(variants) => {
            let name = ident(&t.rust_name);
            let vs = variants.iter().map(|u| {
                let v = ident(&u.rust_name);
                let ty = rust_type_tokens(&u.ty);
                quote!(#v(#ty),)
            });
            let model = if request { union_model_impl(api, t, variants) } else { quote!() };
            if let Some(d) = &t.node.discriminator {
                let de = discriminated_deserialize(api, t, variants, d);
                return Ok(quote! {
                    #doc
                    #[derive(Debug, Clone, PartialEq, ::serde::Serialize)]
                    #[serde(untagged)]
                    pub enum #name { #(#vs)* }
                    #de
                    #model
                    #type_impl
                });
            }
            if variants.iter().all(|v| v.signature.is_some()) {
                let de = selected_deserialize(t, variants);
                return Ok(quote! {
                    #doc
                    #[derive(Debug, Clone, PartialEq, ::serde::Serialize)]
                    #[serde(untagged)]
                    pub enum #name { #(#vs)* }
                    #de
                    #model
                    #type_impl
                });
            }
            // anyOf: the first member that reads the value.
            quote! {
                #doc
                #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
                #[serde(untagged)]
                pub enum #name { #(#vs)* }
                #model
                #type_impl
            }
        }
        TypeKind::Struct(fields) => struct_def(api, t, fields, request, &doc, &type_impl)?,
        TypeKind::Newtype(f) => newtype_def(api, t, f, &doc, &type_impl)?,
    })
}

/// A string enum with its wire values, `ALL`, `Display`, `FromStr` and,
/// when the schema has one, its default.
fn str_enum_def(t: &TypeDef, variants: &[EnumVariant], doc: &TokenStream, type_impl: &TokenStream) -> TokenStream {
    let name = ident(&t.rust_name);
    let vs = variants.iter().map(|EnumVariant { rust_name: v, wire: w }| {
        let v = ident(v);
        let w = lit(w);
        quote!(#[serde(rename = #w)] #v,)
    });
    let arms = variants.iter().map(|EnumVariant { rust_name: v, wire: w }| {
        let v = ident(v);
        let w = lit(w);
        quote!(Self::#v => #w,)
    });
    let parse_arms = variants.iter().map(|EnumVariant { rust_name: v, wire: w }| {
        let v = ident(v);
        let w = lit(w);
        quote!(#w => ::std::result::Result::Ok(Self::#v),)
    });
    let all = variants.iter().map(|e| {
        let v = ident(&e.rust_name);
        quote!(Self::#v)
    });
    let default_impl = t.node.default.as_ref().and_then(Value::as_str).and_then(|d| {
        variants.iter().find(|e| e.wire == d).map(|e| {
            let v = ident(&e.rust_name);
            quote! {
                impl ::std::default::Default for #name {
                    fn default() -> Self { Self::#v }
                }
            }
        })
    });
    quote! {
        #doc
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        pub enum #name { #(#vs)* }

        impl #name {
            /// Every value, in the contract's order.
            pub const ALL: &'static [Self] = &[#(#all),*];

            /// The wire value.
            pub const fn as_str(self) -> &'static str {
                match self { #(#arms)* }
            }
        }

        impl ::std::fmt::Display for #name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for #name {
            type Err = ::std::string::String;
            fn from_str(s: &str) -> ::std::result::Result<Self, Self::Err> {
                match s {
                    #(#parse_arms)*
                    other => ::std::result::Result::Err(::std::format!("unknown value {other:?}")),
                }
            }
        }
        #default_impl
        #type_impl
    }
}

fn is_struct(api: &Api, t: &RustType) -> bool {
    matches!(t, RustType::Named(n) if matches!(api.types.get(n).map(|t| &t.kind), Some(TypeKind::Struct(_) | TypeKind::Union(_) | TypeKind::Newtype(_))))
}

/// Unions validate structurally (the shape); garde sees each variant's own
/// rules through `dive`.
/// A discriminated union is read by its property's value, never by trying
/// members in turn: members that differ only in that value stay apart.
fn discriminated_deserialize(
    api: &Api,
    t: &TypeDef,
    variants: &[UnionVariant],
    d: &crate::codegen::ir::schema::Discriminator,
) -> TokenStream {
    let name = ident(&t.rust_name);
    let property = lit(&d.property);
    let arms = d.mapping.iter().filter_map(|(value, component)| {
        let v = variants.iter().find(|u| matches!(&u.schema, Schema::Ref(c) if c == component))?;
        let var = ident(&v.rust_name);
        let val = lit(value);
        let _ = api;
        Some(quote!(::std::option::Option::Some(#val) => ::serde_json::from_value(value).map(Self::#var).map_err(::serde::de::Error::custom),))
    });
    let values = lit(&d.mapping.iter().map(|(v, _)| v.as_str()).collect::<Vec<_>>().join(", "));
    quote! {
        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                let value = <::serde_json::Value as ::serde::Deserialize>::deserialize(deserializer)?;
                let tag = value.get(#property).and_then(::serde_json::Value::as_str).map(::std::borrow::ToOwned::to_owned);
                match tag.as_deref() {
                    #(#arms)*
                    _ => ::std::result::Result::Err(::serde::de::Error::custom(::std::concat!("`", #property, "` must be one of ", #values))),
                }
            }
        }
    }
}

/// A `oneOf` without discriminator is read as the one member whose
/// signature the value has (`rt::select`), never by trying members in turn.
fn selected_deserialize(t: &TypeDef, variants: &[UnionVariant]) -> TokenStream {
    let name = ident(&t.rust_name);
    let sigs = variants.iter().filter_map(|v| v.signature.as_ref()).map(super::validation::signature_tokens);
    let arms = variants.iter().enumerate().map(|(i, v)| {
        let var = ident(&v.rust_name);
        let i = Literal::usize_unsuffixed(i);
        quote!(#i => ::serde_json::from_value(value).map(Self::#var).map_err(::serde::de::Error::custom),)
    });
    let what = lit(&format!("a value matching one of the {} members of {}", variants.len(), t.node.pointer));
    quote! {
        impl<'de> ::serde::Deserialize<'de> for #name {
            fn deserialize<D: ::serde::Deserializer<'de>>(deserializer: D) -> ::std::result::Result<Self, D::Error> {
                const MEMBERS: &[rt::select::Signature] = &[#(#sigs),*];
                let value = <::serde_json::Value as ::serde::Deserialize>::deserialize(deserializer)?;
                let read = |i: usize, value: ::serde_json::Value| -> ::std::result::Result<Self, ::serde_json::Error> {
                    match i {
                        #(#arms)*
                        _ => ::std::result::Result::Err(::serde::de::Error::custom(::std::concat!("expected ", #what))),
                    }
                };
                // The one member whose signature fits; where several fit
                // (the structural check then let exactly one match), the
                // one that reads.
                let fits = rt::select::fitting(&value, MEMBERS);
                let result = match fits.as_slice() {
                    [i] => read(*i, value),
                    [] => read(usize::MAX, value),
                    many => many
                        .iter()
                        .find_map(|i| read(*i, value.clone()).ok())
                        .map_or_else(|| read(usize::MAX, value), ::std::result::Result::Ok),
                };
                result.map_err(::serde::de::Error::custom)
            }
        }
    }
}

fn union_model_impl(api: &Api, t: &TypeDef, variants: &[UnionVariant]) -> TokenStream {
    let name = ident(&t.rust_name);
    let arms = variants.iter().map(|u| {
        let v = ident(&u.rust_name);
        if is_struct(api, &u.ty) {
            quote!(Self::#v(inner) => ::garde::Validate::validate_into(inner, ctx, parent, report),)
        } else {
            quote!(Self::#v(_) => {})
        }
    });
    let shape = super::validation::shape_of_union(api, &t.node, variants);
    let (shape_static, shape) = shape_item(api, t, shape);
    quote! {
        impl ::garde::Validate for #name {
            type Context = ();
            fn validate_into(&self, ctx: &(), parent: &mut dyn ::core::ops::FnMut() -> ::garde::Path, report: &mut ::garde::Report) {
                // Unused when no member has rules of its own.
                let _ = (&ctx, &parent, &report);
                match self { #(#arms)* }
            }
        }
        #shape_static
        impl rt::Model for #name {
            const SHAPE: &'static rt::Shape = #shape;
        }
    }
}

/// The shape as a constant expression, and for a recursive type the static
/// holding it (a constant cannot contain itself; a static can point at
/// itself).
fn shape_item(api: &Api, t: &TypeDef, shape: TokenStream) -> (TokenStream, TokenStream) {
    if !api.recursive.contains(&t.rust_name) {
        return (quote!(), quote!(&#shape));
    }
    let s = super::validation::shape_static(&t.rust_name);
    (quote! { #[doc(hidden)] pub static #s: rt::Shape = #shape; }, quote!(&#s))
}

fn type_impl(api: &Api, t: &TypeDef) -> TokenStream {
    let name = ident(&t.rust_name);
    let mut refs = BTreeSet::new();
    refs_in_node(api, &t.node, &mut refs);
    let meta = meta_schema(api, &t.node);
    match &t.component {
        Some(c) => {
            refs.remove(c);
            let regs = register_calls(api, &refs);
            let c = lit(c);
            quote! {
                rt::impl_type!(#name, #c,
                    ::poem_openapi::registry::MetaSchemaRef::Reference(::std::string::String::from(#c)),
                    |registry| {
                        registry.create_schema::<#name, _>(::std::string::String::from(#c), |registry| {
                            let _ = &registry;
                            #regs
                            #meta
                        });
                    });
            }
        }
        None => {
            let regs = register_calls(api, &refs);
            let n = lit(&t.rust_name);
            quote! {
                rt::impl_type!(#name, #n,
                    ::poem_openapi::registry::MetaSchemaRef::Inline(::std::boxed::Box::new(#meta)),
                    |registry| { let _ = &registry; #regs });
            }
        }
    }
}

fn default_fn_name(t: &str, f: &str) -> proc_macro2::Ident {
    format_ident!("default_{}_{}", t.to_snake_case(), f)
}

fn default_expr(api: &Api, f: &Field) -> Result<TokenStream> {
    let v = f.default.as_ref().map_or(&Value::Null, |v| v);
    value_expr(api, &f.ty, v, &f.node.pointer)
}

/// A Rust expression for the JSON value `v` of type `ty` (a default).
fn value_expr(api: &Api, ty: &RustType, v: &Value, pointer: &str) -> Result<TokenStream> {
    let bad = || anyhow::anyhow!("{pointer}: default {v} does not fit the schema");
    Ok(match ty {
        RustType::Vec(item) => {
            let items = v.as_array().ok_or_else(bad)?;
            let items = items.iter().map(|i| value_expr(api, item, i, pointer)).collect::<Result<Vec<_>>>()?;
            quote!(::std::vec![#(#items),*])
        }
        RustType::Map(item) => {
            let entries = v.as_object().ok_or_else(bad)?;
            let entries = entries
                .iter()
                .map(|(k, i)| {
                    let k = lit(k);
                    let i = value_expr(api, item, i, pointer)?;
                    Ok(quote!((::std::string::String::from(#k), #i)))
                })
                .collect::<Result<Vec<_>>>()?;
            quote!(::std::collections::BTreeMap::from([#(#entries),*]))
        }
        RustType::JsonObject | RustType::Any => {
            if *ty == RustType::JsonObject && !v.is_object() {
                return Err(bad());
            }
            let text = lit(&v.to_string());
            // Checked JSON at generation time: this cannot fail.
            quote!(::serde_json::from_str(#text).unwrap_or_default())
        }
        RustType::Named(n) => match api.types.get(n).map(|t| &t.kind) {
            Some(TypeKind::StrEnum(vs)) => {
                let w = v.as_str().ok_or_else(bad)?;
                let var = &vs.iter().find(|e| e.wire == w).ok_or_else(bad)?.rust_name;
                let (n, var) = (ident(n), ident(var));
                quote!(#n::#var)
            }
            _ => bail!("{pointer}: defaults are supported on scalars, string enums, arrays and maps of them"),
        },
        RustType::String => {
            let s = lit(v.as_str().ok_or_else(bad)?);
            quote!(::std::string::String::from(#s))
        }
        RustType::I64 | RustType::I32 => {
            let i = v.as_i64().ok_or_else(bad)?;
            let l = if *ty == RustType::I32 {
                Literal::i32_unsuffixed(i32::try_from(i)?)
            } else {
                Literal::i64_unsuffixed(i)
            };
            quote!(#l)
        }
        RustType::F64 | RustType::F32 => {
            let x = Literal::f64_unsuffixed(v.as_f64().ok_or_else(bad)?);
            quote!(#x)
        }
        RustType::Bool => {
            if v.as_bool().ok_or_else(bad)? {
                quote!(true)
            } else {
                quote!(false)
            }
        }
        _ => bail!("{pointer}: defaults are supported on scalars, string enums, arrays and maps of them"),
    })
}

/// A struct with serde attributes per field and, for request types, garde
/// rules, `rt::Model` (shape and renames) for the structural pass.
pub(super) fn struct_def(
    api: &Api,
    t: &TypeDef,
    fields: &[Field],
    request: bool,
    doc: &TokenStream,
    type_impl: &TokenStream,
) -> Result<TokenStream> {
    let name = ident(&t.rust_name);
    let mut fs = Vec::new();
    let mut defaults = Vec::new();
    for f in fields {
        let StructField { field, default_fn } = struct_field(api, t, f, request)?;
        fs.push(field);
        defaults.extend(default_fn);
    }
    // `additionalProperties: false`: also what lets an untagged union tell
    // this member from one with fewer properties.
    let deny_unknown = if t.node.additional_properties == Some(AdditionalProperties::Forbidden) {
        quote!(#[serde(deny_unknown_fields)])
    } else {
        quote!()
    };
    let (derive_garde, model) =
        if request { (quote!(#[derive(::garde::Validate)]), model_impl(api, t, fields)) } else { (quote!(), quote!()) };
    Ok(quote! {
        #doc
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #deny_unknown
        #derive_garde
        pub struct #name { #(#fs)* }
        #(#defaults)*
        #model
        #type_impl
    })
}

/// A value standing for its one field (a request body that is not an
/// object, a constrained map value): validated as a field would be, and
/// `garde(transparent)`, so its errors are at the value's own path.
fn newtype_def(api: &Api, t: &TypeDef, f: &Field, doc: &TokenStream, type_impl: &TokenStream) -> Result<TokenStream> {
    let name = ident(&t.rust_name);
    let ty = field_type(f);
    let garde_attr = garde_rules(api, f)?;
    // garde counts only checked fields: a skipped one leaves nothing to be transparent over.
    let transparent = if garde_attr.to_string().contains("skip") { quote!() } else { quote!(#[garde(transparent)]) };
    let mut shape = super::validation::shape_of_field_type(api, f);
    if f.nullable {
        shape = quote!(rt::Shape::Nullable(&#shape));
    }
    let (shape_static, shape) = shape_item(api, t, shape);
    Ok(quote! {
        #doc
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize, ::garde::Validate)]
        #[serde(transparent)]
        #transparent
        pub struct #name(#garde_attr pub #ty);
        #shape_static
        impl rt::Model for #name {
            const SHAPE: &'static rt::Shape = #shape;
            const RENAMES: &'static [(&'static str, &'static str)] = &[("0", "")];
        }
        #type_impl
    })
}

/// One field's declaration, and the function serde calls for its default.
struct StructField {
    field: TokenStream,
    default_fn: Option<TokenStream>,
}

fn struct_field(api: &Api, t: &TypeDef, f: &Field, request: bool) -> Result<StructField> {
    let fname = ident(&f.rust_name);
    let fty = field_type(f);
    let fdoc = doc_attrs(&[f.description.as_deref()]);
    let mut serde_attrs = Vec::new();
    let mut default_fn = None;
    if f.rust_name != f.json_name {
        let j = lit(&f.json_name);
        serde_attrs.push(quote!(rename = #j));
    }
    match f.optionality() {
        Optionality::Plain if f.default.is_some() => {
            let dfn = default_fn_name(&t.rust_name, &f.rust_name);
            let dfs = lit(&dfn.to_string());
            serde_attrs.push(quote!(default = #dfs));
            let e = default_expr(api, f)?;
            default_fn = Some(quote! {
                fn #dfn() -> #fty { #e }
            });
        }
        Optionality::Plain => {}
        Optionality::Option if f.required => {}
        Optionality::Option => {
            serde_attrs.push(quote!(default, skip_serializing_if = "Option::is_none"));
        }
        Optionality::DoubleOption => {
            serde_attrs.push(quote!(default, skip_serializing_if = "Option::is_none", with = "rt::double_option"));
        }
    }
    if f.flatten {
        serde_attrs.push(quote!(flatten));
    }
    // The same text as chrono's `Serialize`, without its per-field `fmt` calls.
    if f.ty == RustType::DateTime {
        match f.optionality() {
            Optionality::Plain => serde_attrs.push(quote!(serialize_with = "rt::datetime::serialize")),
            Optionality::Option => serde_attrs.push(quote!(serialize_with = "rt::datetime::serialize_opt")),
            Optionality::DoubleOption => {}
        }
    }
    if f.node.write_only {
        // Never in a response, whatever the handler sets.
        serde_attrs.retain(|a| !a.to_string().contains("skip_serializing_if"));
        serde_attrs.push(quote!(skip_serializing));
    }
    if f.is_file() {
        // Set from the multipart body's file parts, never from JSON.
        serde_attrs.clear();
        serde_attrs.push(quote!(skip));
    }
    let serde_attr = if serde_attrs.is_empty() { quote!() } else { quote!(#[serde(#(#serde_attrs),*)]) };
    let garde_attr = if request { garde_rules(api, f)? } else { quote!() };
    Ok(StructField {
        field: quote! {
            #fdoc
            #serde_attr
            #garde_attr
            pub #fname: #fty,
        },
        default_fn,
    })
}

/// The Rust → JSON names of `fields` and of every struct they lead to:
/// garde reports a nested failure by Rust names all the way down, and only
/// the outermost model's table is consulted. A flattened map's field has no
/// JSON name (its keys are the object's own). The first spelling of a Rust
/// name wins (two structs naming one Rust field differently on the wire
/// would need per-path tables; the generator derives Rust names from JSON
/// names, so that takes two JSON names converting alike).
fn collect_renames(api: &Api, fields: &[Field], out: &mut Vec<(String, String)>, seen: &mut BTreeSet<String>) {
    fn walk(api: &Api, t: &RustType, out: &mut Vec<(String, String)>, seen: &mut BTreeSet<String>) {
        match t {
            RustType::Named(n) if seen.insert(n.clone()) => match api.types.get(n).map(|t| &t.kind) {
                Some(TypeKind::Struct(fs)) => collect_renames(api, fs, out, seen),
                Some(TypeKind::Newtype(f)) => walk(api, &f.ty, out, seen),
                Some(TypeKind::Union(vs)) => vs.iter().for_each(|v| walk(api, &v.ty, out, seen)),
                _ => {}
            },
            RustType::Vec(i) | RustType::Map(i) => walk(api, i, out, seen),
            _ => {}
        }
    }
    for f in fields {
        let json = if f.flatten { String::new() } else { f.json_name.clone() };
        if f.rust_name != json && !out.iter().any(|(r, _)| *r == f.rust_name) {
            out.push((f.rust_name.clone(), json));
        }
        walk(api, &f.ty, out, seen);
    }
}

/// `rt::Model`: the shape checked before garde, and the Rust → JSON names
/// that let garde's paths be reported in the contract's spelling.
fn model_impl(api: &Api, t: &TypeDef, fields: &[Field]) -> TokenStream {
    let name = ident(&t.rust_name);
    let shape = shape_of_fields(api, fields, t.node.additional_properties == Some(AdditionalProperties::Forbidden));
    let shape = super::validation::property_count(&t.node, shape);
    let mut pairs = Vec::new();
    collect_renames(api, fields, &mut pairs, &mut BTreeSet::new());
    let renames: Vec<TokenStream> = pairs
        .iter()
        .map(|(r, j)| {
            let (r, j) = (lit(r), lit(j));
            quote!((#r, #j))
        })
        .collect();
    let renames = if renames.is_empty() {
        quote!()
    } else {
        quote!(const RENAMES: &'static [(&'static str, &'static str)] = &[#(#renames),*];)
    };
    let (shape_static, shape) = shape_item(api, t, shape);
    quote! {
        #shape_static
        impl rt::Model for #name {
            const SHAPE: &'static rt::Shape = #shape;
            #renames
        }
    }
}
