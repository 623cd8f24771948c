//! Parameter structs: an operation's parameters as one validated struct,
//! with the per-parameter schemas the document lists and how the runtime
//! coerces their raw strings.

use anyhow::{Result, bail};
use proc_macro2::{Literal, TokenStream};
use quote::quote;
use std::collections::BTreeSet;

use super::models::struct_def;
use super::schema_meta::{meta_ref, refs_in, register_calls};
use super::{doc_attrs, ident};
use crate::codegen::ir::Api;
use crate::codegen::ir::operations::Operation;
use crate::codegen::ir::types::{RustType, TypeKind};

pub(super) fn params_def(api: &Api, op: &Operation) -> Result<TokenStream> {
    let Some(pt) = &op.params_type else { return Ok(quote!()) };
    let t = &api.types[pt];
    let TypeKind::Struct(fields) = &t.kind else { bail!("params type is not a struct") };
    let doc = doc_attrs(&[Some(&format!("The parameters of `{}`, parsed and validated.", op.id))]);
    let def = struct_def(api, t, fields, true, &doc, &quote!())?;
    let name = ident(pt);
    let required = op.params.iter().map(|p| p.field.required && p.field.default.is_none());
    let schema_arms = op.params.iter().enumerate().map(|(i, p)| {
        let i = Literal::usize_unsuffixed(i);
        let m = meta_ref(api, &p.field.schema);
        quote!(#i => #m,)
    });
    let mut refs = BTreeSet::new();
    for p in &op.params {
        refs_in(api, &p.field.schema, &mut refs);
    }
    let regs = register_calls(api, &refs);
    Ok(quote! {
        #def
        impl rt::ParamSet for #name {
            const REQUIRED: &'static [bool] = &[#(#required),*];
            fn schema(index: usize) -> ::poem_openapi::registry::MetaSchemaRef {
                match index {
                    #(#schema_arms)*
                    _ => ::poem_openapi::registry::MetaSchemaRef::Inline(::std::boxed::Box::new(::poem_openapi::registry::MetaSchema::ANY)),
                }
            }
            fn register(registry: &mut ::poem_openapi::registry::Registry) {
                let _ = &registry;
                #regs
            }
        }
    })
}

/// The coercion of a parameter: its type, and for arrays how the values
/// arrive (repeated or comma-separated for `form`; one value split at a
/// space or a pipe for `spaceDelimited`/`pipeDelimited` without explode;
/// one path segment with its prefix for `label`/`matrix`).
pub(super) fn param_coerce(api: &crate::codegen::ir::Api, p: &crate::codegen::ir::params::Parameter) -> TokenStream {
    use crate::codegen::ir::params::ParamStyle;
    if p.content.as_ref().is_some_and(|c| c.json) {
        return quote!(rt::Coerce::Json);
    }
    if p.style == ParamStyle::DeepObject
        && let RustType::Named(n) = &p.field.ty
        && let Some(crate::codegen::ir::types::TypeKind::Struct(fields)) = api.types.get(n).map(|t| &t.kind)
    {
        let entries = fields.iter().map(|f| {
            let (name, c) = (crate::codegen::emit::lit(&f.json_name), coerce_of(&f.ty));
            quote!((#name, #c))
        });
        return quote!(rt::Coerce::Deep(&[#(#entries),*]));
    }
    if matches!(p.style, ParamStyle::Label | ParamStyle::Matrix) {
        // Array or scalar, the runtime strips the prefix and splits.
        let (inner, explode) = (coerce_of(&p.field.ty), p.explode);
        return match p.style {
            ParamStyle::Label => quote!(rt::Coerce::Label(&#inner, #explode)),
            _ => {
                let wire = crate::codegen::emit::lit(&p.name);
                quote!(rt::Coerce::Matrix(#wire, &#inner, #explode))
            }
        };
    }
    let sep = match p.style {
        ParamStyle::SpaceDelimited if !p.explode => Some(' '),
        ParamStyle::PipeDelimited if !p.explode => Some('|'),
        _ => None,
    };
    if let Some((one, item)) = p.one_or_many {
        let (one, item) = (coerce_json(one), coerce_json(item));
        return quote!(rt::Coerce::OneOrMany(&#one, &#item));
    }
    match (&p.field.ty, sep) {
        (RustType::Vec(item), Some(sep)) => {
            let c = coerce_of(item);
            quote!(rt::Coerce::Split(&#c, #sep))
        }
        (ty, _) => coerce_of(ty),
    }
}

fn coerce_json(t: crate::codegen::ir::schema::JsonType) -> TokenStream {
    use crate::codegen::ir::schema::JsonType;
    match t {
        JsonType::Integer => quote!(rt::Coerce::Integer),
        JsonType::Number => quote!(rt::Coerce::Number),
        JsonType::Boolean => quote!(rt::Coerce::Bool),
        _ => quote!(rt::Coerce::String),
    }
}

pub(super) fn coerce_of(ty: &RustType) -> TokenStream {
    match ty {
        RustType::I32 | RustType::I64 => quote!(rt::Coerce::Integer),
        RustType::F32 | RustType::F64 => quote!(rt::Coerce::Number),
        RustType::Bool => quote!(rt::Coerce::Bool),
        RustType::Vec(i) => {
            let c = coerce_of(i);
            quote!(rt::Coerce::Array(&#c))
        }
        _ => quote!(rt::Coerce::String),
    }
}
