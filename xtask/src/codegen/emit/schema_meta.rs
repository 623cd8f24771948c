//! Schemas for the served document: poem-openapi `MetaSchema` values built
//! from the IR exactly as the contract writes them, and the registration of
//! the components they reference.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use serde_json::Value;
use std::collections::BTreeSet;

use super::{ident, lit};
use crate::codegen::ir::Api;
use crate::codegen::ir::schema::{AdditionalProperties, Schema, SchemaNode};

fn json_lit(v: &Value) -> TokenStream {
    let s = lit(&v.to_string());
    quote!(crate::rt::json(#s))
}

/// `MetaSchemaRef` for a schema, exactly as the contract writes it.
pub(super) fn meta_ref(api: &Api, s: &Schema) -> TokenStream {
    match s {
        Schema::Ref(name) => {
            // poem-openapi registers types, not aliases: point at the target.
            let n = lit(api.aliases.get(name).unwrap_or(name));
            quote!(::poem_openapi::registry::MetaSchemaRef::Reference(::std::string::String::from(#n)))
        }
        Schema::Inline(node) => {
            let m = meta_schema(api, node);
            quote!(::poem_openapi::registry::MetaSchemaRef::Inline(::std::boxed::Box::new(#m)))
        }
    }
}

/// `MetaSchema` for an inline schema: one field set per keyword present,
/// in a fixed order so the output is stable.
pub(super) fn meta_schema(api: &Api, n: &SchemaNode) -> TokenStream {
    let mut sets = Vec::new();
    annotations(n, &mut sets);
    structure(api, n, &mut sets);
    constraints(n, &mut sets);
    quote!(::poem_openapi::registry::MetaSchema { #(#sets)* ..::poem_openapi::registry::MetaSchema::ANY })
}

/// Type, format and the keywords that describe rather than constrain.
fn annotations(n: &SchemaNode, sets: &mut Vec<TokenStream>) {
    if let Some(t) = n.ty {
        let t = t.as_str();
        sets.push(quote!(ty: #t,));
    }
    if let Some(f) = &n.format {
        let f = lit(f);
        sets.push(quote!(format: ::std::option::Option::Some(#f),));
    }
    if let Some(t) = &n.title {
        let t = lit(t);
        sets.push(quote!(title: ::std::option::Option::Some(::std::string::String::from(#t)),));
    }
    if let Some(d) = &n.description {
        let d = lit(d);
        sets.push(quote!(description: ::std::option::Option::Some(#d),));
    }
    if let Some((url, description)) = &n.external_docs {
        let url = lit(url);
        let description = match description {
            Some(d) => {
                let d = lit(d);
                quote!(::std::option::Option::Some(::std::string::String::from(#d)))
            }
            None => quote!(::std::option::Option::None),
        };
        sets.push(quote!(external_docs: ::std::option::Option::Some(::poem_openapi::registry::MetaExternalDocument {
            url: ::std::string::String::from(#url),
            description: #description,
        }),));
    }
    if let Some(v) = &n.default {
        let v = json_lit(v);
        sets.push(quote!(default: ::std::option::Option::Some(#v),));
    }
    if let Some(v) = &n.example {
        let v = json_lit(v);
        sets.push(quote!(example: ::std::option::Option::Some(#v),));
    }
    if !n.enum_values.is_empty() {
        let vs = n.enum_values.iter().map(json_lit);
        sets.push(quote!(enum_items: ::std::vec![#(#vs),*],));
    }
}

/// Keywords holding other schemas: properties, items, unions.
fn structure(api: &Api, n: &SchemaNode, sets: &mut Vec<TokenStream>) {
    if let Some(r) = &n.ref_of {
        let m = meta_ref(api, &Schema::Ref(r.clone()));
        sets.push(quote!(all_of: ::std::vec![#m],));
    }
    if !n.required.is_empty() {
        let rs = n.required.iter().map(|r| lit(r));
        sets.push(quote!(required: ::std::vec![#(#rs),*],));
    }
    if !n.properties.is_empty() {
        let ps = n.properties.iter().map(|p| {
            let k = lit(&p.name);
            let m = meta_ref(api, &p.schema);
            quote!((#k, #m))
        });
        sets.push(quote!(properties: ::std::vec![#(#ps),*],));
    }
    if let Some(i) = &n.items {
        let m = meta_ref(api, i);
        sets.push(quote!(items: ::std::option::Option::Some(::std::boxed::Box::new(#m)),));
    }
    match &n.additional_properties {
        Some(AdditionalProperties::Schema(s)) => {
            let m = meta_ref(api, s);
            sets.push(quote!(additional_properties: ::std::option::Option::Some(::std::boxed::Box::new(#m)),));
        }
        Some(AdditionalProperties::Any) => sets.push(quote!(additional_properties: ::std::option::Option::Some(::std::boxed::Box::new(
            ::poem_openapi::registry::MetaSchemaRef::Inline(::std::boxed::Box::new(::poem_openapi::registry::MetaSchema::ANY))
        )),)),
        // poem-openapi cannot say `false`: the served document gets it
        // from `DOC_PATCHES`.
        Some(AdditionalProperties::Forbidden) | None => {}
    }
    for (key, list) in [("one_of", &n.one_of), ("any_of", &n.any_of)] {
        if !list.is_empty() {
            let k = ident(key);
            let ms = list.iter().map(|s| meta_ref(api, s));
            sets.push(quote!(#k: ::std::vec![#(#ms),*],));
        }
    }
    if let Some(d) = &n.discriminator {
        let p = lit(&d.property);
        let m = d.explicit.iter().map(|(k, v)| {
            let (k, v) = (lit(k), lit(v));
            quote!((::std::string::String::from(#k), ::std::string::String::from(#v)))
        });
        sets.push(
            quote!(discriminator: ::std::option::Option::Some(::poem_openapi::registry::MetaDiscriminatorObject {
            property_name: #p,
            mapping: ::std::vec![#(#m),*],
        }),),
        );
    }
}

/// Flags and the validation keywords.
fn constraints(n: &SchemaNode, sets: &mut Vec<TokenStream>) {
    for (key, on) in [
        ("nullable", n.nullable),
        ("read_only", n.read_only),
        ("write_only", n.write_only),
        ("deprecated", n.deprecated),
    ] {
        if on {
            let k = ident(key);
            sets.push(quote!(#k: true,));
        }
    }
    for (key, v) in [("minimum", n.minimum), ("maximum", n.maximum), ("multiple_of", n.multiple_of)] {
        if let Some(v) = v {
            let k = ident(key);
            let v = Literal::f64_suffixed(v);
            sets.push(quote!(#k: ::std::option::Option::Some(#v),));
        }
    }
    if n.exclusive_minimum {
        sets.push(quote!(exclusive_minimum: ::std::option::Option::Some(true),));
    }
    if n.exclusive_maximum {
        sets.push(quote!(exclusive_maximum: ::std::option::Option::Some(true),));
    }
    for (key, v) in [
        ("min_length", n.min_length),
        ("max_length", n.max_length),
        ("min_items", n.min_items),
        ("max_items", n.max_items),
        ("min_properties", n.min_properties),
        ("max_properties", n.max_properties),
    ] {
        if let Some(v) = v {
            let k = ident(key);
            let v = Literal::usize_suffixed(v);
            sets.push(quote!(#k: ::std::option::Option::Some(#v),));
        }
    }
    if let Some(p) = &n.pattern {
        let p = lit(p);
        sets.push(quote!(pattern: ::std::option::Option::Some(::std::string::String::from(#p)),));
    }
    if n.unique_items {
        sets.push(quote!(unique_items: ::std::option::Option::Some(true),));
    }
}

/// Components referenced anywhere under `s`, to register with the document.
pub(super) fn refs_in(api: &Api, s: &Schema, out: &mut BTreeSet<String>) {
    match s {
        Schema::Ref(name) => {
            out.insert(api.aliases.get(name).unwrap_or(name).clone());
        }
        Schema::Inline(n) => refs_in_node(api, n, out),
    }
}

pub(super) fn refs_in_node(api: &Api, n: &SchemaNode, out: &mut BTreeSet<String>) {
    if let Some(r) = &n.ref_of {
        out.insert(api.aliases.get(r).unwrap_or(r).clone());
    }
    for p in &n.properties {
        refs_in(api, &p.schema, out);
    }
    for s in n.items.iter().chain(n.one_of.iter()).chain(n.any_of.iter()) {
        refs_in(api, s, out);
    }
    if let Some(AdditionalProperties::Schema(s)) = &n.additional_properties {
        refs_in(api, s, out);
    }
}

/// Rust type of a component name (after alias chains).
pub(super) fn component_type(api: &Api, name: &str) -> Option<String> {
    let name = api.aliases.get(name).map_or(name, String::as_str);
    api.types.values().find(|t| t.component.as_deref() == Some(name)).map(|t| t.rust_name.clone())
}

pub(super) fn register_calls(api: &Api, refs: &BTreeSet<String>) -> TokenStream {
    let calls = refs.iter().filter_map(|r| {
        if api.value_aliases.contains_key(r) {
            let f = alias_register_fn(r);
            return Some(quote!(crate::models::#f(registry);));
        }
        let t = ident(&component_type(api, r)?);
        Some(quote!(<crate::models::#t as ::poem_openapi::types::Type>::register(registry);))
    });
    quote!(#(#calls)*)
}

/// The function registering a value alias's schema with the document.
pub(super) fn alias_register_fn(component: &str) -> proc_macro2::Ident {
    quote::format_ident!("__register_{}", heck::ToSnakeCase::to_snake_case(component))
}
