//! The third stage for the server crate: the model becomes Rust source —
//! models with garde rules and exact schemas, one trait and one response enum
//! per operation, and the poem-openapi glue that calls the traits.

use anyhow::{Result, bail};
use heck::ToSnakeCase;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};
use serde_json::Value;
use std::collections::BTreeSet;

use super::ir::media::MediaType;
use super::ir::names::type_name;
use super::ir::operations::Operation;
use super::ir::params::ParamLocation;
use super::ir::responses::StatusKey;
use super::ir::schema::{AdditionalProperties, Schema, SchemaNode};
use super::ir::types::{EnumVariant, Field, Optionality, RustType, TypeDef, TypeKind, UnionVariant};
use super::ir::{Api, Contact};

/// Files of the server crate, path (relative to the crate) → contents
/// before formatting.
pub fn emit(api: &Api) -> Result<Vec<(String, TokenStream)>> {
    let request_types = request_reachable(api)?;
    let mut files = Vec::new();
    files.push(("src/lib.rs".to_owned(), lib_rs(api)?));
    files.push(("src/error_codes.rs".to_owned(), error_codes_rs(api)));
    files.push(("src/models.rs".to_owned(), models_rs(api, &request_types)?));
    for tag in tag_modules(api) {
        files.push((format!("src/{}.rs", tag.to_snake_case()), tag_rs(api, &tag)?));
    }
    Ok(files)
}

/// The trait (tag) an operation belongs to.
fn op_tag(op: &Operation) -> String {
    op.tags.first().cloned().unwrap_or_else(|| "Default".to_owned())
}

fn tag_modules(api: &Api) -> Vec<String> {
    let mut tags: Vec<String> = Vec::new();
    for op in &api.operations {
        let t = op_tag(op);
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    tags
}

fn ident(s: &str) -> proc_macro2::Ident {
    format_ident!("{}", s)
}

fn lit(s: &str) -> Literal {
    Literal::string(s)
}

fn opt_lit(s: Option<&str>) -> TokenStream {
    match s {
        Some(s) => {
            let l = lit(s);
            quote!(::std::option::Option::Some(#l))
        }
        None => quote!(::std::option::Option::None),
    }
}

fn doc_attrs(parts: &[Option<&str>]) -> TokenStream {
    let text: Vec<&str> = parts.iter().flatten().map(|s| s.trim_end()).filter(|s| !s.is_empty()).collect();
    if text.is_empty() {
        return quote!();
    }
    let joined = text.join("\n\n");
    let lines = joined.lines().map(|l| {
        let l = lit(&format!(" {l}"));
        quote!(#[doc = #l])
    });
    quote!(#(#lines)*)
}

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

fn rust_type_tokens(t: &RustType) -> TokenStream {
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
    }
}

fn field_type(f: &Field) -> TokenStream {
    let t = rust_type_tokens(&f.ty);
    match f.optionality() {
        Optionality::Plain => t,
        Optionality::Option => quote!(::std::option::Option<#t>),
        Optionality::DoubleOption => quote!(::std::option::Option<::std::option::Option<#t>>),
    }
}

/// Types reachable from request bodies and parameters: these get garde
/// rules, shapes and `rt::Model`.
fn request_reachable(api: &Api) -> Result<BTreeSet<String>> {
    fn walk(api: &Api, t: &RustType, out: &mut BTreeSet<String>, stack: &mut Vec<String>) -> Result<()> {
        match t {
            RustType::Named(n) => {
                if stack.contains(n) {
                    bail!("{}: recursive request schemas are not supported", api.types[n].node.pointer);
                }
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
        if let Some(rb) = &op.request_body {
            walk(api, &RustType::Named(rb.model.clone()), &mut out, &mut Vec::new())?;
        }
        if let Some(p) = &op.params_type {
            walk(api, &RustType::Named(p.clone()), &mut out, &mut Vec::new())?;
        }
    }
    Ok(out)
}

fn json_lit(v: &Value) -> TokenStream {
    let s = lit(&v.to_string());
    quote!(crate::rt::json(#s))
}

/// `MetaSchemaRef` for a schema, exactly as the contract writes it.
fn meta_ref(api: &Api, s: &Schema) -> TokenStream {
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

fn meta_schema(api: &Api, n: &SchemaNode) -> TokenStream {
    let mut sets = Vec::new();
    if let Some(t) = n.ty {
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
        None => {}
    }
    for (key, list) in [("one_of", &n.one_of), ("any_of", &n.any_of)] {
        if !list.is_empty() {
            let k = ident(key);
            let ms = list.iter().map(|s| meta_ref(api, s));
            sets.push(quote!(#k: ::std::vec![#(#ms),*],));
        }
    }
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
    quote!(::poem_openapi::registry::MetaSchema { #(#sets)* ..::poem_openapi::registry::MetaSchema::ANY })
}

/// Components referenced anywhere under `s`, to register with the document.
fn refs_in(api: &Api, s: &Schema, out: &mut BTreeSet<String>) {
    match s {
        Schema::Ref(name) => {
            out.insert(api.aliases.get(name).unwrap_or(name).clone());
        }
        Schema::Inline(n) => refs_in_node(api, n, out),
    }
}

fn refs_in_node(api: &Api, n: &SchemaNode, out: &mut BTreeSet<String>) {
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
fn component_type(api: &Api, name: &str) -> Option<String> {
    let name = api.aliases.get(name).map_or(name, String::as_str);
    api.types.values().find(|t| t.component.as_deref() == Some(name)).map(|t| t.rust_name.clone())
}

fn register_calls(api: &Api, refs: &BTreeSet<String>) -> TokenStream {
    let calls = refs.iter().filter_map(|r| component_type(api, r)).map(|t| {
        let t = ident(&t);
        quote!(<crate::models::#t as ::poem_openapi::types::Type>::register(registry);)
    });
    quote!(#(#calls)*)
}

fn models_rs(api: &Api, request: &BTreeSet<String>) -> Result<TokenStream> {
    let mut items = Vec::new();
    for t in api.types.values() {
        // Params structs live with their operation's tag module.
        if api.operations.iter().any(|o| o.params_type.as_deref() == Some(&t.rust_name)) {
            continue;
        }
        items.push(type_def(api, t, request.contains(&t.rust_name))?);
    }
    Ok(quote! {
        //! Models for every schema of the contract, component or inline.
        #![allow(clippy::large_enum_variant, clippy::derivable_impls)]
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
    let name = ident(&t.rust_name);
    let doc = type_doc(t);
    let type_impl = type_impl(api, t);
    Ok(match &t.kind {
        TypeKind::StrEnum(variants) => {
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
        TypeKind::Union(variants) => {
            let vs = variants.iter().map(|u| {
                let v = ident(&u.rust_name);
                let ty = rust_type_tokens(&u.ty);
                quote!(#v(#ty),)
            });
            let model = if request { union_model_impl(api, t, variants) } else { quote!() };
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
    })
}

fn is_struct(api: &Api, t: &RustType) -> bool {
    matches!(t, RustType::Named(n) if matches!(api.types.get(n).map(|t| &t.kind), Some(TypeKind::Struct(_)) | Some(TypeKind::Union(_))))
}

/// Unions validate structurally (the shape); garde sees each variant's own
/// rules through `dive`.
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
    let shape = shape_of_node(api, &t.node);
    quote! {
        impl ::garde::Validate for #name {
            type Context = ();
            fn validate_into(&self, ctx: &(), parent: &mut dyn ::core::ops::FnMut() -> ::garde::Path, report: &mut ::garde::Report) {
                match self { #(#arms)* }
            }
        }
        impl rt::Model for #name {
            const SHAPE: &'static rt::Shape = &#shape;
        }
    }
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
    let bad = || anyhow::anyhow!("{}: default {v} does not fit the schema", f.node.pointer);
    Ok(match &f.ty {
        RustType::Named(n) => match api.types.get(n).map(|t| &t.kind) {
            Some(TypeKind::StrEnum(vs)) => {
                let w = v.as_str().ok_or_else(bad)?;
                let var = &vs.iter().find(|e| e.wire == w).ok_or_else(bad)?.rust_name;
                let (n, var) = (ident(n), ident(var));
                quote!(#n::#var)
            }
            _ => bail!("{}: defaults are supported on scalars and string enums", f.node.pointer),
        },
        RustType::String => {
            let s = lit(v.as_str().ok_or_else(bad)?);
            quote!(::std::string::String::from(#s))
        }
        RustType::I64 | RustType::I32 => {
            let i = v.as_i64().ok_or_else(bad)?;
            let l = if f.ty == RustType::I32 {
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
        _ => bail!("{}: defaults are supported on scalars and string enums", f.node.pointer),
    })
}

fn struct_def(
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
    let mut renames = Vec::new();
    for f in fields {
        let fname = ident(&f.rust_name);
        let fty = field_type(f);
        let fdoc = doc_attrs(&[f.description.as_deref()]);
        let mut serde_attrs = Vec::new();
        if f.rust_name != f.json_name {
            let j = lit(&f.json_name);
            serde_attrs.push(quote!(rename = #j));
            let r = lit(&f.rust_name);
            renames.push(quote!((#r, #j)));
        }
        match f.optionality() {
            Optionality::Plain if f.default.is_some() => {
                let dfn = default_fn_name(&t.rust_name, &f.rust_name);
                let dfs = lit(&dfn.to_string());
                serde_attrs.push(quote!(default = #dfs));
                let e = default_expr(api, f)?;
                defaults.push(quote! {
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
        let serde_attr = if serde_attrs.is_empty() { quote!() } else { quote!(#[serde(#(#serde_attrs),*)]) };
        let garde_attr = if request { garde_rules(api, f)? } else { quote!() };
        fs.push(quote! {
            #fdoc
            #serde_attr
            #garde_attr
            pub #fname: #fty,
        });
    }
    let (derive_garde, model) = if request {
        let shape = shape_of_fields(api, fields);
        let renames = if renames.is_empty() {
            quote!()
        } else {
            quote!(const RENAMES: &'static [(&'static str, &'static str)] = &[#(#renames),*];)
        };
        (
            quote!(#[derive(::garde::Validate)]),
            quote! {
                impl rt::Model for #name {
                    const SHAPE: &'static rt::Shape = &#shape;
                    #renames
                }
            },
        )
    } else {
        (quote!(), quote!())
    };
    let envelope = envelope_impl(t, fields);
    Ok(quote! {
        #doc
        #[derive(Debug, Clone, PartialEq, ::serde::Serialize, ::serde::Deserialize)]
        #derive_garde
        pub struct #name { #(#fs)* }
        #(#defaults)*
        #model
        #envelope
        #type_impl
    })
}

/// An object with `code`, `msg`, `timestamp` and a free-form `data` is the
/// error envelope: generated code can then build it for framework errors.
fn envelope_impl(t: &TypeDef, fields: &[Field]) -> TokenStream {
    let get = |n: &str| fields.iter().find(|f| f.json_name == n);
    let (Some(code), Some(msg), Some(ts)) = (get("code"), get("msg"), get("timestamp")) else {
        return quote!();
    };
    let data = get("data");
    let ok = code.ty == RustType::I64
        && code.required
        && code.node.enum_values.is_empty()
        && msg.ty == RustType::String
        && msg.required
        && ts.ty == RustType::DateTime
        && ts.required
        && fields.len() == 3 + usize::from(data.is_some())
        && data.is_none_or(|d| d.ty == RustType::JsonObject && !d.required);
    if !ok {
        return quote!();
    }
    let name = ident(&t.rust_name);
    let data_set = match data.map(Field::optionality) {
        None => quote!(),
        Some(Optionality::DoubleOption) => quote!(data: data.map(|d| match d {
            ::serde_json::Value::Object(m) => ::std::option::Option::Some(m),
            _ => ::std::option::Option::None,
        }),),
        Some(_) => quote!(data: data.and_then(|d| match d {
            ::serde_json::Value::Object(m) => ::std::option::Option::Some(m),
            _ => ::std::option::Option::None,
        }),),
    };
    let unused = if data.is_none() { quote!(let _ = data;) } else { quote!() };
    quote! {
        impl rt::ErrorEnvelope for #name {
            fn envelope(code: i64, msg: ::std::string::String, data: ::std::option::Option<::serde_json::Value>) -> Self {
                #unused
                Self { code, msg, #data_set timestamp: rt::now() }
            }
        }
    }
}

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
fn garde_rules(api: &Api, f: &Field) -> Result<TokenStream> {
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

fn value_rules(api: &Api, ty: &RustType, n: &SchemaNode) -> Result<Vec<TokenStream>> {
    let mut rules = Vec::new();
    match ty {
        RustType::String | RustType::Password => {
            match (n.min_length, n.max_length) {
                (None, None) => {}
                (min, max) => {
                    let mut args = vec![quote!(chars)];
                    if let Some(m) = min {
                        let m = Literal::usize_unsuffixed(m);
                        args.push(quote!(min = #m));
                    }
                    if let Some(m) = max {
                        let m = Literal::usize_unsuffixed(m);
                        args.push(quote!(max = #m));
                    }
                    rules.push(quote!(length(#(#args),*)));
                }
            }
            if let Some(p) = &n.pattern {
                let p = lit(p);
                rules.push(quote!(pattern(#p)));
            }
            if n.format.as_deref() == Some("email") {
                rules.push(quote!(email));
            }
        }
        RustType::Date | RustType::DateTime | RustType::Uuid => {
            if n.min_length.is_some() || n.max_length.is_some() {
                bail!("{}: length limits on formatted strings are not supported", n.pointer);
            }
            // A pattern on a date (the contract's `^\d{4}-\d{2}-\d{2}$`) is
            // enforced by the shape's strict YYYY-MM-DD parse.
        }
        RustType::I64 | RustType::I32 | RustType::F64 | RustType::F32 => {
            let int = matches!(ty, RustType::I64 | RustType::I32);
            let mut args = Vec::new();
            if let Some(m) = n.minimum {
                if n.exclusive_minimum && !int {
                    bail!("{}: exclusiveMinimum on numbers is not supported", n.pointer);
                }
                let m = if n.exclusive_minimum { m + 1.0 } else { m };
                let m = if int {
                    f64_lit_int(m)
                } else {
                    let l = Literal::f64_unsuffixed(m);
                    quote!(#l)
                };
                args.push(quote!(min = #m));
            }
            if let Some(m) = n.maximum {
                if n.exclusive_maximum && !int {
                    bail!("{}: exclusiveMaximum on numbers is not supported", n.pointer);
                }
                let m = if n.exclusive_maximum { m - 1.0 } else { m };
                let m = if int {
                    f64_lit_int(m)
                } else {
                    let l = Literal::f64_unsuffixed(m);
                    quote!(#l)
                };
                args.push(quote!(max = #m));
            }
            if !args.is_empty() {
                rules.push(quote!(range(#(#args),*)));
            }
            if n.multiple_of.is_some() {
                bail!("{}: multipleOf is not supported", n.pointer);
            }
        }
        RustType::Vec(item) => {
            match (n.min_items, n.max_items) {
                (None, None) => {}
                (min, max) => {
                    let mut args = Vec::new();
                    if let Some(m) = min {
                        let m = Literal::usize_unsuffixed(m);
                        args.push(quote!(min = #m));
                    }
                    if let Some(m) = max {
                        let m = Literal::usize_unsuffixed(m);
                        args.push(quote!(max = #m));
                    }
                    rules.push(quote!(length(#(#args),*)));
                }
            }
            if n.unique_items {
                bail!("{}: uniqueItems is not supported", n.pointer);
            }
            let item_node = match &n.items {
                Some(Schema::Inline(i)) => (**i).clone(),
                Some(Schema::Ref(name)) => api
                    .types
                    .values()
                    .find(|t| t.component.as_deref() == Some(name))
                    .map(|t| t.node.clone())
                    .unwrap_or_default(),
                None => SchemaNode::default(),
            };
            let inner = value_rules(api, item, &item_node)?;
            if inner.iter().any(|r| r.to_string() == "dive") {
                // garde validates `Vec<T: Validate>` itself; `dive` is only
                // allowed at field level.
                rules.push(quote!(dive));
            } else if !inner.is_empty() {
                rules.push(quote!(inner(#(#inner),*)));
            }
        }
        RustType::Named(name) => {
            if matches!(api.types.get(name).map(|t| &t.kind), Some(TypeKind::Struct(_) | TypeKind::Union(_))) {
                rules.push(quote!(dive));
            }
        }
        RustType::Map(_) | RustType::JsonObject | RustType::Any | RustType::Bool => {}
    }
    Ok(rules)
}

fn shape_of_fields(api: &Api, fields: &[Field]) -> TokenStream {
    let props = fields.iter().map(|f| {
        let name = lit(&f.json_name);
        let required = f.required;
        let mut shape = shape_of(api, &f.ty, &f.node);
        if f.nullable {
            shape = quote!(rt::Shape::Nullable(&#shape));
        }
        quote!(rt::Prop { name: #name, required: #required, shape: &#shape })
    });
    quote!(rt::Shape::Object(&[#(#props),*]))
}

fn shape_of_node(api: &Api, n: &SchemaNode) -> TokenStream {
    let members = if n.one_of.is_empty() { &n.any_of } else { &n.one_of };
    let shapes = members.iter().map(|m| match m {
        Schema::Ref(name) => match component_type(api, name) {
            Some(t) => {
                let t = ident(&t);
                quote!(<#t as rt::Model>::SHAPE)
            }
            None => quote!(&rt::Shape::Any),
        },
        Schema::Inline(node) => {
            let ty = rty_of_inline(node);
            let s = shape_of(api, &ty, node);
            quote!(&#s)
        }
    });
    if n.one_of.is_empty() {
        quote!(rt::Shape::AnyOf(&[#(#shapes),*]))
    } else {
        quote!(rt::Shape::OneOf(&[#(#shapes),*]))
    }
}

fn rty_of_inline(n: &SchemaNode) -> RustType {
    match (n.ty, n.format.as_deref()) {
        (Some("integer"), Some("int32")) => RustType::I32,
        (Some("integer"), _) => RustType::I64,
        (Some("number"), _) => RustType::F64,
        (Some("boolean"), _) => RustType::Bool,
        (Some("string"), Some("date")) => RustType::Date,
        (Some("string"), Some("date-time")) => RustType::DateTime,
        (Some("string"), Some("uuid")) => RustType::Uuid,
        (Some("string"), _) => RustType::String,
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
                let t = ident(name);
                quote!(*<#t as rt::Model>::SHAPE)
            }
        },
        RustType::String | RustType::Password => quote!(rt::Shape::String(rt::StrFormat::Plain)),
        RustType::Date => quote!(rt::Shape::String(rt::StrFormat::Date)),
        RustType::DateTime => quote!(rt::Shape::String(rt::StrFormat::DateTime)),
        RustType::Uuid => quote!(rt::Shape::String(rt::StrFormat::Uuid)),
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
            let s = shape_of(api, item, &item_node);
            quote!(rt::Shape::Map(&#s))
        }
        RustType::JsonObject => quote!(rt::Shape::Map(&rt::Shape::Any)),
        RustType::Any => quote!(rt::Shape::Any),
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

// ---------------------------------------------------------------------------
// Error codes
// ---------------------------------------------------------------------------

fn error_codes_rs(api: &Api) -> TokenStream {
    let variants = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let doc =
            doc_attrs(&[Some(&format!("{} — HTTP {}: {}", c.code, c.status, c.message)), c.description.as_deref()]);
        quote!(#doc #v,)
    });
    let all = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        quote!(Self::#v)
    });
    let code_arms = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let code = Literal::i64_unsuffixed(c.code);
        quote!(Self::#v => #code,)
    });
    let status_arms = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let s = Literal::u16_unsuffixed(c.status);
        quote!(Self::#v => #s,)
    });
    let msg_arms = api.error_codes.iter().map(|c| {
        let v = ident(&c.name);
        let m = lit(&c.message);
        quote!(Self::#v => #m,)
    });
    quote! {
        //! The error-code registry declared in the spec's `x-error-codes`.

        /// Every error code the service answers with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum ErrorCode { #(#variants)* }

        impl ErrorCode {
            /// The whole registry, in the spec's order.
            pub const ALL: &'static [Self] = &[#(#all),*];

            /// The envelope's `code`.
            pub const fn code(self) -> i64 { match self { #(#code_arms)* } }

            /// The HTTP status this code is answered with.
            pub const fn status(self) -> u16 { match self { #(#status_arms)* } }

            /// The registry's message (the envelope's default `msg`).
            pub const fn message(self) -> &'static str { match self { #(#msg_arms)* } }

            /// The entry with envelope code `code`.
            pub fn from_code(code: i64) -> ::std::option::Option<Self> {
                Self::ALL.iter().copied().find(|c| c.code() == code)
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Per-tag modules: trait, response enums, params, glue
// ---------------------------------------------------------------------------

fn variant_name(status: u16) -> String {
    match status {
        200 => "Ok".into(),
        201 => "Created".into(),
        202 => "Accepted".into(),
        204 => "NoContent".into(),
        400 => "BadRequest".into(),
        401 => "Unauthorized".into(),
        403 => "Forbidden".into(),
        404 => "NotFound".into(),
        405 => "MethodNotAllowed".into(),
        409 => "Conflict".into(),
        410 => "Gone".into(),
        412 => "PreconditionFailed".into(),
        413 => "PayloadTooLarge".into(),
        415 => "UnsupportedMediaType".into(),
        422 => "UnprocessableEntity".into(),
        429 => "TooManyRequests".into(),
        500 => "InternalServerError".into(),
        502 => "BadGateway".into(),
        503 => "ServiceUnavailable".into(),
        504 => "GatewayTimeout".into(),
        s => format!("Status{s}"),
    }
}

/// A response with an exact status, which is every response the IR admits.
struct Documented<'a> {
    status: u16,
    description: &'a str,
    body: Option<&'a MediaType>,
}

fn documented(op: &Operation) -> Vec<Documented<'_>> {
    op.responses
        .iter()
        .filter_map(|r| match r.status {
            StatusKey::Code(status) => Some(Documented { status, description: &r.description, body: r.body() }),
            StatusKey::Range(_) | StatusKey::Default => None,
        })
        .collect()
}

/// The schema of a response body: a named type's own `schema_ref()` (so
/// the schema is emitted once, with the type), else built from the spec.
fn body_schema_ref(api: &Api, sch: &Schema, ty: &RustType) -> TokenStream {
    match ty {
        RustType::Named(t) => {
            let t = ident(t);
            quote!(<crate::models::#t as ::poem_openapi::types::Type>::schema_ref())
        }
        _ => meta_ref(api, sch),
    }
}

fn is_envelope_type(api: &Api, ty: &RustType) -> bool {
    let RustType::Named(n) = ty else { return false };
    let Some(TypeKind::Struct(fields)) = api.types.get(n).map(|t| &t.kind) else { return false };
    !envelope_impl(&api.types[n], fields).is_empty()
}

fn response_enum(api: &Api, op: &Operation) -> TokenStream {
    let name = ident(&op.result_type);
    let responses = documented(op);
    let doc = doc_attrs(&[Some(&format!("Every response `{}` documents, one variant per status.", op.id))]);
    let variants = responses.iter().map(|r| {
        let v = ident(&variant_name(r.status));
        let d = doc_attrs(&[Some(&format!("{} {}", r.status, r.description))]);
        match r.body {
            Some(m) => {
                let t = rust_type_tokens(&m.rust_type);
                quote!(#d #v(#t),)
            }
            None => quote!(#d #v,),
        }
    });
    let metas = responses.iter().map(|r| {
        let status = Literal::u16_unsuffixed(r.status);
        let desc = lit(r.description);
        let content = match r.body {
            Some(m) => {
                let m = body_schema_ref(api, &m.schema, &m.rust_type);
                quote!(::std::vec![::poem_openapi::registry::MetaMediaType { content_type: rt::JSON, schema: #m }])
            }
            None => quote!(::std::vec::Vec::new()),
        };
        quote!(::poem_openapi::registry::MetaResponse {
            description: #desc,
            status: ::std::option::Option::Some(#status),
            status_range: ::std::option::Option::None,
            content: #content,
            headers: ::std::vec::Vec::new(),
        })
    });
    // A named body type registers itself (and what it references); only
    // unnamed bodies (arrays, scalars) list their references here.
    let mut refs = BTreeSet::new();
    let mut named = BTreeSet::new();
    for r in &responses {
        match r.body.map(|m| (&m.schema, &m.rust_type)) {
            Some((_, RustType::Named(t))) => {
                named.insert(t.clone());
            }
            Some((schema, _)) => refs_in(api, schema, &mut refs),
            None => {}
        }
    }
    let named_regs = named.iter().map(|t| {
        let t = ident(t);
        quote!(<crate::models::#t as ::poem_openapi::types::Type>::register(registry);)
    });
    let regs = register_calls(api, &refs);
    let regs = quote!(#(#named_regs)* #regs);
    let into_arms = responses.iter().map(|r| {
        let v = ident(&variant_name(r.status));
        let status = Literal::u16_unsuffixed(r.status);
        match &r.body {
            Some(_) => quote!(Self::#v(body) => rt::json_response(#status, &body),),
            None => quote! {
                Self::#v => ::poem::Response::builder()
                    .status(::poem::http::StatusCode::from_u16(#status).unwrap_or(::poem::http::StatusCode::INTERNAL_SERVER_ERROR))
                    .finish(),
            },
        }
    });
    let error_variants: Vec<_> = responses
        .iter()
        .filter(|r| r.status >= 400)
        .filter(|r| r.body.is_some_and(|m| is_envelope_type(api, &m.rust_type)))
        .collect();
    let from_error = if error_variants.is_empty() {
        quote!()
    } else {
        let fallback = error_variants.iter().find(|r| r.status == 500).or(error_variants.last()).map(|r| r.status);
        let arms = error_variants.iter().map(|r| {
            let v = ident(&variant_name(r.status));
            let t = r.body.map(|m| rust_type_tokens(&m.rust_type));
            let s = Literal::u16_unsuffixed(r.status);
            if Some(r.status) == fallback {
                quote!(_ => Self::#v(<#t as rt::ErrorEnvelope>::envelope(code.code(), msg, data)),)
            } else {
                quote!(#s => Self::#v(<#t as rt::ErrorEnvelope>::envelope(code.code(), msg, data)),)
            }
        });
        // The fallback arm must come last.
        let mut arms: Vec<TokenStream> = arms.collect();
        arms.sort_by_key(|a| a.to_string().starts_with('_'));
        quote! {
            impl rt::FromErrorCode for #name {
                fn from_error(code: crate::ErrorCode, msg: ::std::option::Option<::std::string::String>, data: ::std::option::Option<::serde_json::Value>) -> Self {
                    let msg = msg.unwrap_or_else(|| ::std::borrow::ToOwned::to_owned(code.message()));
                    match code.status() { #(#arms)* }
                }
            }
        }
    };
    quote! {
        #doc
        #[derive(Debug, Clone, PartialEq)]
        pub enum #name { #(#variants)* }

        impl ::poem_openapi::ApiResponse for #name {
            fn meta() -> ::poem_openapi::registry::MetaResponses {
                ::poem_openapi::registry::MetaResponses { responses: ::std::vec![#(#metas),*] }
            }
            fn register(registry: &mut ::poem_openapi::registry::Registry) {
                let _ = &registry;
                #regs
            }
        }

        impl ::poem::IntoResponse for #name {
            fn into_response(self) -> ::poem::Response {
                match self { #(#into_arms)* }
            }
        }
        #from_error
    }
}

fn params_def(api: &Api, op: &Operation) -> Result<TokenStream> {
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

fn coerce_of(ty: &RustType) -> TokenStream {
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

fn scheme_type(name: &str) -> proc_macro2::Ident {
    format_ident!("{}Scheme", type_name(name))
}

fn auth_method(name: &str) -> proc_macro2::Ident {
    format_ident!("authenticate_{}", name.to_snake_case())
}

fn tag_rs(api: &Api, tag: &str) -> Result<TokenStream> {
    let ops: Vec<&Operation> = api.operations.iter().filter(|o| op_tag(o) == tag).collect();
    let trait_name = format_ident!("{}Api", type_name(tag));
    let server_name = format_ident!("{}Server", type_name(tag));
    let secured = ops.iter().any(|o| o.security_scheme().is_some());
    let supertrait =
        if secured { quote!(crate::Auth) } else { quote!(::std::marker::Send + ::std::marker::Sync + 'static) };

    let mut trait_methods = Vec::new();
    let mut server_methods = Vec::new();
    let mut extra = Vec::new();
    for op in &ops {
        let m = ident(&op.fn_name);
        let resp = ident(&op.result_type);
        let mut args = Vec::new();
        let mut call_args = Vec::new();
        if op.security_scheme().is_some() {
            args.push(quote!(principal: Self::Principal));
            call_args.push(quote!(principal));
        }
        if let Some(pt) = &op.params_type {
            let pt = ident(pt);
            args.push(quote!(params: #pt));
            call_args.push(quote!(params));
        }
        if let Some(rb) = &op.request_body {
            let bt = ident(&rb.model);
            if rb.required {
                args.push(quote!(body: crate::models::#bt));
            } else {
                args.push(quote!(body: ::std::option::Option<crate::models::#bt>));
            }
            call_args.push(quote!(body));
        }
        let doc = doc_attrs(&[
            op.summary.as_deref(),
            op.description.as_deref(),
            Some(&format!("`{} {}` (`{}`).", op.method.to_uppercase(), op.path, op.id)),
        ]);
        trait_methods.push(quote! {
            #doc
            fn #m(&self, #(#args),*) -> impl ::std::future::Future<Output = #resp> + ::std::marker::Send;
        });
        extra.push(response_enum(api, op));
        extra.push(params_def(api, op)?);
        server_methods.push(server_method(op)?);
    }

    let tag_variant = format_ident!("{}", type_name(tag));
    Ok(quote! {
        //! Operations tagged the same in the contract: the trait to implement,
        //! a response enum per operation, and the HTTP glue.
        #![allow(clippy::too_many_arguments, unused_imports)]
        use crate::{rt, models::*};
        use poem_openapi::OpenApi;

        /// Implement this to serve the operations of this tag; every method
        /// returns one of the statuses the contract documents.
        pub trait #trait_name: #supertrait {
            #(#trait_methods)*
        }

        #(#extra)*

        /// The poem-openapi service for this tag over an implementation `A`.
        pub struct #server_name<A>(pub ::std::sync::Arc<A>);

        impl<A> ::std::clone::Clone for #server_name<A> {
            fn clone(&self) -> Self { Self(::std::clone::Clone::clone(&self.0)) }
        }

        #[OpenApi]
        impl<A: #trait_name> #server_name<A> {
            #(#server_methods)*
        }

        const _: crate::ApiTags = crate::ApiTags::#tag_variant;
    })
}

fn server_method(op: &Operation) -> Result<TokenStream> {
    let m = ident(&op.fn_name);
    let resp = ident(&op.result_type);
    let path = lit(&op
        .path
        .split('/')
        .map(|s| {
            if s.starts_with('{') {
                format!(":{}", s.trim_start_matches('{').trim_end_matches('}'))
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/"));
    let method = lit(op.method);
    let op_id = lit(&op.id);
    let tags = op.tags.iter().map(|t| {
        let v = format_ident!("{}", type_name(t));
        let s = lit(&format!("crate::ApiTags::{v}"));
        quote!(tag = #s)
    });
    let deprecated = if op.deprecated { quote!(deprecated,) } else { quote!() };
    // poem-openapi reads the summary and description from the doc comment.
    let doc = doc_attrs(&[op.summary.as_deref(), op.description.as_deref()]);

    let mut args = Vec::new();
    let mut prelude = Vec::new();
    let mut call = Vec::new();
    if let Some(scheme) = op.security_scheme() {
        let st = scheme_type(scheme);
        let am = auth_method(scheme);
        args.push(quote!(auth: rt::ApiKey<crate::#st>));
        prelude.push(quote! {
            // An empty header is a missing credential, not a wrong one.
            let principal = match auth.0.filter(|t| !t.trim().is_empty()) {
                ::std::option::Option::None => return <#resp as rt::FromErrorCode>::from_error(crate::ErrorCode::MissingToken, ::std::option::Option::None, ::std::option::Option::None),
                ::std::option::Option::Some(token) => match crate::Auth::#am(&*self.0, &token).await {
                    ::std::result::Result::Ok(p) => p,
                    ::std::result::Result::Err(r) => return <#resp as rt::FromErrorCode>::from_error(r.code, r.msg, ::std::option::Option::None),
                },
            };
        });
        call.push(quote!(principal));
    }
    if op.params_type.is_some() || op.request_body.is_some() {
        prelude.push(quote!(let mut errs = rt::FieldErrors::default();));
    }
    if let Some(pt) = &op.params_type {
        let pt_i = ident(pt);
        let mut entries = Vec::new();
        for (i, p) in op.params.iter().enumerate() {
            let arg = format_ident!("p_{}", p.field.rust_name);
            let json = lit(&p.field.json_name);
            let idx = Literal::usize_unsuffixed(i);
            let extractor = match p.location {
                ParamLocation::Query => quote!(rt::Query<#pt_i, #idx>),
                ParamLocation::Path => quote!(rt::Path<#pt_i, #idx>),
                ParamLocation::Header => quote!(rt::Header<#pt_i, #idx>),
                ParamLocation::Cookie => bail!("{}: cookie parameters are not supported", p.pointer),
            };
            let pdoc = doc_attrs(&[p.description.as_deref()]);
            let deprecated = if p.deprecated { quote!(, deprecated) } else { quote!() };
            args.push(quote!(#pdoc #[oai(name = #json #deprecated)] #arg: #extractor));
            let coerce = coerce_of(&p.field.ty);
            entries.push(quote!((#json, #arg.0, #coerce)));
        }
        prelude.push(quote! {
            let params = rt::validate_value::<#pt_i>(rt::params_object(&[#(#entries),*]), "", &mut errs);
        });
        call.push(quote!(params));
    }
    if let Some(rb) = &op.request_body {
        let required = &rb.required;
        let bt = ident(&rb.model);
        let bdoc = doc_attrs(&[rb.description.as_deref()]);
        let req = if *required { quote!() } else { quote!(, false) };
        args.push(quote!(#bdoc body: rt::JsonBody<crate::models::#bt #req>));
        let missing = if *required {
            quote!({
                errs.push("body", "request body is required");
                ::std::option::Option::None
            })
        } else {
            quote!(::std::option::Option::Some(::std::option::Option::None))
        };
        let valid = if *required {
            quote!(::std::option::Option::Some(v))
        } else {
            quote!(::std::option::Option::Some(::std::option::Option::Some(v)))
        };
        // Read only now: after authentication and the parameters.
        prelude.push(quote! {
            let body = match body.read(&mut errs).await {
                ::std::result::Result::Ok(rt::BodyOutcome::Valid(v)) => #valid,
                ::std::result::Result::Ok(rt::BodyOutcome::Invalid) => ::std::option::Option::None,
                ::std::result::Result::Ok(rt::BodyOutcome::Empty) => #missing,
                ::std::result::Result::Err(e) => {
                    let (code, message) = e.into_error();
                    let data = ::serde_json::json!({ "errors": [{ "field": "body", "message": message }] });
                    return <#resp as rt::FromErrorCode>::from_error(code, ::std::option::Option::None, ::std::option::Option::Some(data));
                }
            };
        });
        call.push(quote!(body));
    }
    let needs_validation = op.params_type.is_some() || op.request_body.is_some();
    let checks = if needs_validation {
        let pats: Vec<TokenStream> = call
            .iter()
            .filter(|c| c.to_string() != "principal")
            .map(|c| quote!(::std::option::Option::Some(#c)))
            .collect();
        let vals: Vec<TokenStream> = call.iter().filter(|c| c.to_string() != "principal").cloned().collect();
        quote! {
            let (#(#pats,)*) = (#(#vals,)*) else {
                return <#resp as rt::FromErrorCode>::from_error(crate::ErrorCode::ValidationFailed, ::std::option::Option::None, ::std::option::Option::Some(errs.to_data()));
            };
            if !errs.is_empty() {
                return <#resp as rt::FromErrorCode>::from_error(crate::ErrorCode::ValidationFailed, ::std::option::Option::None, ::std::option::Option::Some(errs.to_data()));
            }
        }
    } else {
        quote!()
    };
    let tag = op_tag(op);
    let trait_name = format_ident!("{}Api", type_name(&tag));
    Ok(quote! {
        #doc
        #[oai(path = #path, method = #method, operation_id = #op_id, #(#tags,)* #deprecated)]
        async fn #m(&self, #(#args),*) -> #resp {
            #(#prelude)*
            #checks
            #trait_name::#m(&*self.0, #(#call),*).await
        }
    })
}

// ---------------------------------------------------------------------------
// lib.rs
// ---------------------------------------------------------------------------

fn lib_rs(api: &Api) -> Result<TokenStream> {
    let tags = tag_modules(api);
    let mods = tags.iter().map(|t| {
        let m = ident(&t.to_snake_case());
        quote!(pub mod #m; pub use #m::*;)
    });
    let title = lit(&api.title);
    let version = lit(&api.version);
    let base = lit(&api.base_path);
    let description = api.description.as_ref().map(|d| {
        let d = lit(d);
        quote!(let svc = svc.description(#d);)
    });
    let contact = api.contact.as_ref().map(|Contact { name, url, email }| {
        let mut c = quote!(::poem_openapi::ContactObject::new());
        if let Some(n) = name {
            let n = lit(n);
            c = quote!(#c.name(#n));
        }
        if let Some(u) = url {
            let u = lit(u);
            c = quote!(#c.url(#u));
        }
        if let Some(e) = email {
            let e = lit(e);
            c = quote!(#c.email(#e));
        }
        quote!(let svc = svc.contact(#c);)
    });
    let servers = api.servers.iter().map(|s| {
        let u = lit(&s.url);
        let d = s.description.as_ref().map(|d| {
            let d = lit(d);
            quote!(.description(#d))
        });
        quote!(let svc = svc.server(::poem_openapi::ServerObject::new(#u)#d);)
    });

    // Tags: every tag used by an operation or declared in the spec.
    let mut all_tags: Vec<(String, Option<String>)> =
        api.tags.iter().map(|t| (t.name.clone(), t.description.clone())).collect();
    for op in &api.operations {
        for t in op.tags.iter().cloned().chain(std::iter::once(op_tag(op))) {
            if !all_tags.iter().any(|(n, _)| *n == t) {
                all_tags.push((t, None));
            }
        }
    }
    let tag_variants = all_tags.iter().map(|(n, d)| {
        let v = format_ident!("{}", type_name(n));
        let doc = doc_attrs(&[d.as_deref()]);
        let nl = lit(n);
        quote!(#doc #[oai(rename = #nl)] #v,)
    });

    let servers_ty: Vec<_> = tags.iter().map(|t| format_ident!("{}Server", type_name(t))).collect();
    // poem-openapi implements `OpenApi` for tuples of two or more.
    let (services_ty, services_val) = if servers_ty.len() == 1 {
        let s = &servers_ty[0];
        (quote!(#s<A>), quote!(#s(app)))
    } else {
        (quote!((#(#servers_ty<A>,)*)), quote!((#(#servers_ty(::std::clone::Clone::clone(&app)),)*)))
    };
    let traits: Vec<_> = tags.iter().map(|t| format_ident!("{}Api", type_name(t))).collect();

    // The IR admits header API keys only.
    let schemes: Vec<(&str, &str, Option<&str>)> = api
        .security_schemes
        .iter()
        .filter_map(|s| s.api_key_header().map(|h| (s.name.as_str(), h, s.description.as_deref())))
        .collect();
    let auth = if schemes.is_empty() {
        quote!()
    } else {
        let methods = schemes.iter().map(|&(name, header, _)| {
            let m = auth_method(name);
            let d = doc_attrs(&[Some(&format!("Verifies a credential of the `{name}` scheme (header `{header}`). Answer an `rt::AuthRejection` whose code has status 401 for a bad credential, or 500 when the credential store cannot answer (fail closed)."))]);
            quote!(#d fn #m(&self, token: &str) -> impl ::std::future::Future<Output = ::std::result::Result<Self::Principal, rt::AuthRejection>> + ::std::marker::Send;)
        });
        let specs = schemes.iter().map(|&(name, header, description)| {
            let st = scheme_type(name);
            let n = lit(name);
            let h = lit(header);
            let d = opt_lit(description);
            quote! {
                /// The security scheme as declared in the contract.
                pub struct #st;
                impl rt::ApiKeySpec for #st {
                    const SCHEME: &'static str = #n;
                    const HEADER: &'static str = #h;
                    const DESCRIPTION: ::std::option::Option<&'static str> = #d;
                }
            }
        });
        quote! {
            /// Verifies credentials for secured operations; runs before the
            /// handler, which never sees an unauthenticated request.
            pub trait Auth: ::std::marker::Send + ::std::marker::Sync + 'static {
                /// Who made the request, as the handlers receive it.
                type Principal: ::std::marker::Send + 'static;
                #(#methods)*
            }
            #(#specs)*
        }
    };

    // Allow table for 405 answers.
    let mut allow: Vec<(String, Vec<String>)> = Vec::new();
    for op in &api.operations {
        match allow.iter_mut().find(|(p, _)| *p == op.path) {
            Some((_, ms)) => ms.push(op.method.to_uppercase()),
            None => allow.push((op.path.clone(), vec![op.method.to_uppercase()])),
        }
    }
    let allow_entries = allow.iter().map(|(p, ms)| {
        let p = lit(p);
        let m = lit(&ms.join(", "));
        quote!((#p, #m))
    });

    Ok(quote! {
        //! Server side of the contract: implement the per-tag traits (and
        //! `Auth`), then serve [`app`].
        #![allow(clippy::all)]

        pub mod rt;
        pub mod error_codes;
        pub mod models;
        #(#mods)*

        pub use error_codes::ErrorCode;
        pub use models::*;
        pub use poem_openapi;

        /// The API title and version from the contract's `info`.
        pub const TITLE: &str = #title;
        pub const VERSION: &str = #version;
        /// Path of `servers[0]`, under which every operation is mounted.
        pub const BASE_PATH: &str = #base;
        /// Documented methods per path, for 405 answers' `Allow` header.
        pub const ALLOW: rt::AllowTable = &[#(#allow_entries),*];

        #auth

        /// The contract's tags.
        #[derive(::poem_openapi::Tags)]
        pub enum ApiTags { #(#tag_variants)* }

        /// Everything one application implements.
        pub trait Api: #(#traits)+* {}
        impl<A: #(#traits)+*> Api for A {}

        /// The services of every tag over one application.
        pub type Services<A> = #services_ty;

        /// The OpenAPI service (document, routes) over `app`.
        pub fn openapi_service<A: Api>(app: ::std::sync::Arc<A>) -> ::poem_openapi::OpenApiService<Services<A>, ()> {
            let svc = ::poem_openapi::OpenApiService::new(#services_val, TITLE, VERSION);
            #description
            #contact
            #(#servers)*
            svc
        }

        /// The whole HTTP application: operations under [`BASE_PATH`], the
        /// document at `{BASE_PATH}/openapi.json` and `.yaml`, Swagger UI at
        /// `/docs`, and every framework error as the JSON envelope.
        pub fn app<A: Api>(app: ::std::sync::Arc<A>) -> impl ::poem::Endpoint<Output = ::poem::Response> {
            let svc = openapi_service(app);
            let route = ::poem::Route::new()
                .at(::std::format!("{BASE_PATH}/openapi.json"), svc.spec_endpoint())
                .at(::std::format!("{BASE_PATH}/openapi.yaml"), svc.spec_endpoint_yaml())
                .nest("/docs", svc.swagger_ui())
                .nest(BASE_PATH, svc);
            rt::envelope_errors(route, BASE_PATH, ALLOW)
        }
    })
}
