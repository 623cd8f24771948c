//! Response enums: one per operation, a variant per documented status, with
//! their document metadata, their conversion to HTTP responses and, when
//! the operation documents error envelopes, `rt::FromErrorCode`.

use proc_macro2::{Literal, TokenStream};
use quote::quote;
use std::collections::BTreeSet;

use super::models::{envelope_impl, rust_type_tokens};
use super::schema_meta::{meta_ref, refs_in, register_calls};
use super::{doc_attrs, ident, lit};
use crate::codegen::ir::Api;
use crate::codegen::ir::media::MediaType;
use crate::codegen::ir::operations::Operation;
use crate::codegen::ir::responses::StatusKey;
use crate::codegen::ir::types::{RustType, TypeKind};

/// The variant of a status, named as the HTTP reason phrase.
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

/// The operation's result type with its `ApiResponse` (document),
/// `IntoResponse` (HTTP) and, when it can carry envelopes,
/// `FromErrorCode` (framework errors) impls.
pub(super) fn response_enum(api: &Api, op: &Operation) -> TokenStream {
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
    let metas = responses.iter().map(|r| response_meta(api, r));
    let regs = registrations(api, &responses);
    let into_arms = responses.iter().map(into_response_arm);
    let from_error = from_error_impl(api, &name, &responses);
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

fn response_meta(api: &Api, r: &Documented<'_>) -> TokenStream {
    let status = Literal::u16_unsuffixed(r.status);
    let desc = lit(r.description);
    let content = match r.body {
        Some(m) => {
            let m = body_schema_ref(api, m);
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
}

/// The schema of a response body: a named type's own `schema_ref()` (so
/// the schema is emitted once, with the type), else built from the spec.
fn body_schema_ref(api: &Api, body: &MediaType) -> TokenStream {
    match &body.rust_type {
        RustType::Named(t) => {
            let t = ident(t);
            quote!(<crate::models::#t as ::poem_openapi::types::Type>::schema_ref())
        }
        _ => meta_ref(api, &body.schema),
    }
}

/// A named body type registers itself (and what it references); only
/// unnamed bodies (arrays, scalars) list their references here.
fn registrations(api: &Api, responses: &[Documented<'_>]) -> TokenStream {
    let mut refs = BTreeSet::new();
    let mut named = BTreeSet::new();
    for body in responses.iter().filter_map(|r| r.body) {
        match &body.rust_type {
            RustType::Named(t) => {
                named.insert(t.clone());
            }
            _ => refs_in(api, &body.schema, &mut refs),
        }
    }
    let named_regs = named.iter().map(|t| {
        let t = ident(t);
        quote!(<crate::models::#t as ::poem_openapi::types::Type>::register(registry);)
    });
    let regs = register_calls(api, &refs);
    quote!(#(#named_regs)* #regs)
}

fn into_response_arm(r: &Documented<'_>) -> TokenStream {
    let v = ident(&variant_name(r.status));
    let status = Literal::u16_unsuffixed(r.status);
    match r.body {
        Some(_) => quote!(Self::#v(body) => rt::json_response(#status, &body),),
        None => quote! {
            Self::#v => ::poem::Response::builder()
                .status(::poem::http::StatusCode::from_u16(#status).unwrap_or(::poem::http::StatusCode::INTERNAL_SERVER_ERROR))
                .finish(),
        },
    }
}

fn is_envelope_type(api: &Api, ty: &RustType) -> bool {
    let RustType::Named(n) = ty else { return false };
    let Some(TypeKind::Struct(fields)) = api.types.get(n).map(|t| &t.kind) else { return false };
    !envelope_impl(&api.types[n], fields).is_empty()
}

/// Framework errors (validation, authentication, body) become the variant
/// documented for their status; a status the operation does not document
/// falls back to its 500, else to its last error variant, so a handler's
/// enum is never bypassed.
fn from_error_impl(api: &Api, name: &proc_macro2::Ident, responses: &[Documented<'_>]) -> TokenStream {
    let error_variants: Vec<_> = responses
        .iter()
        .filter(|r| r.status >= 400)
        .filter(|r| r.body.is_some_and(|m| is_envelope_type(api, &m.rust_type)))
        .collect();
    if error_variants.is_empty() {
        return quote!();
    }
    let fallback = error_variants.iter().find(|r| r.status == 500).or(error_variants.last()).map(|r| r.status);
    let mut arms: Vec<TokenStream> = error_variants
        .iter()
        .map(|r| {
            let v = ident(&variant_name(r.status));
            let t = r.body.map(|m| rust_type_tokens(&m.rust_type));
            let s = Literal::u16_unsuffixed(r.status);
            if Some(r.status) == fallback {
                quote!(_ => Self::#v(<#t as rt::ErrorEnvelope>::envelope(code.code(), msg, data)),)
            } else {
                quote!(#s => Self::#v(<#t as rt::ErrorEnvelope>::envelope(code.code(), msg, data)),)
            }
        })
        .collect();
    // The fallback arm must come last.
    arms.sort_by_key(|a| a.to_string().starts_with('_'));
    quote! {
        impl rt::FromErrorCode for #name {
            fn from_error(code: crate::ErrorCode, msg: ::std::option::Option<::std::string::String>, data: ::std::option::Option<::serde_json::Value>) -> Self {
                let msg = msg.unwrap_or_else(|| ::std::borrow::ToOwned::to_owned(code.message()));
                match code.status() { #(#arms)* }
            }
        }
    }
}
