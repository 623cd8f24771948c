//! The mock crate (`cargo xtask mock`, `codegen --out DIR --mock`): a
//! binary implementing every tag trait, `Auth` and `ErrorPolicy` of the
//! server crate generated beside it over `rt::mock::Mock`, so its requests
//! are validated by the same generated glue as a real application's and its
//! answers go through the same typed response enums and checks.

use std::collections::BTreeSet;

use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::models::rust_type_tokens;
use super::operations::auth_method;
use super::policy::policy_method;
use super::responses::variant_name;
use super::{ident, lit, op_tag, tag_modules};
use crate::codegen::ir::Api;
use crate::codegen::ir::errors::error_body_types;
use crate::codegen::ir::media::MediaType;
use crate::codegen::ir::names::type_name;
use crate::codegen::ir::operations::Operation;
use crate::codegen::ir::responses::{Response, StatusKey};
use crate::codegen::ir::security::{HttpScheme, SchemeKind};
use crate::codegen::ir::types::RustType;

/// The mock's `src/main.rs`; `server_crate` is the Rust name of the server
/// crate it implements.
pub fn mock_main(api: &Api, server_crate: &str) -> anyhow::Result<TokenStream> {
    let mut checked = super::models::request_reachable(api)?;
    checked.extend(super::models::response_reachable(api));
    let krate = ident(server_crate);
    let policy = policy_impl(api, &checked);
    let auth = auth_impl(api);
    let tags = tag_modules(api).into_iter().map(|tag| {
        let trait_name = format_ident!("{}Api", type_name(&tag));
        let methods = api.operations.iter().filter(|o| op_tag(o) == tag).map(operation);
        quote! {
            impl api::#trait_name for MockApi {
                #(#methods)*
            }
        }
    });
    let self_check = self_check(api, &checked);
    Ok(quote! {
        //! The mock server of this spec (`cargo xtask mock`): no database, the
        //! generated glue validating every request, stateful CRUD by path
        //! pattern and seeded, schema-valid answers (see `rt::mock`).
        #![allow(clippy::all, unused_variables, unused_imports, unreachable_code)]

        use #krate as api;
        use api::rt;
        use rt::mock::{Call, Mock, Reply};

        /// The engine: one per process, so the error policy (whose methods
        /// take no `self`) reaches the same spec as the handlers.
        static ENGINE: ::std::sync::OnceLock<Mock> = ::std::sync::OnceLock::new();

        fn engine() -> &'static Mock {
            ENGINE.get().expect("the engine is set before the server starts")
        }

        /// Every trait of the server crate, over [`ENGINE`].
        pub struct MockApi {
            /// The one credential every security scheme accepts (unread
            /// when the spec has none).
            #[allow(dead_code)]
            token: ::std::string::String,
        }

        /// The typed response from a reply, or why it is not one; the
        /// response's own checks (the spec's rules) run here.
        fn checked<R>(r: R, check: impl Fn(&R, &mut rt::FieldErrors)) -> ::std::result::Result<R, ::std::string::String> {
            let mut errs = rt::FieldErrors::default();
            check(&r, &mut errs);
            if errs.is_empty() { Ok(r) } else { Err(errs.to_data().to_string()) }
        }

        #policy
        #auth
        #(#tags)*

        #self_check

        const USAGE: &str = "usage: mock [--port N] [--seed S] [--token T] [--host ADDR]";

        fn main() -> ::std::process::ExitCode {
            match run() {
                Ok(()) => ::std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("mock: {e}");
                    ::std::process::ExitCode::FAILURE
                }
            }
        }

        fn run() -> ::std::result::Result<(), ::std::string::String> {
            let mut port: u16 = 4010;
            let mut seed: u64 = 0;
            let mut token: ::std::option::Option<::std::string::String> = None;
            let mut host = ::std::string::String::from("127.0.0.1");
            let mut args = ::std::env::args().skip(1);
            while let Some(a) = args.next() {
                let mut value = || args.next().ok_or_else(|| format!("{a} needs a value; {USAGE}"));
                match a.as_str() {
                    "--port" => port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
                    "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
                    "--token" => token = Some(value()?),
                    "--host" => host = value()?,
                    other => return Err(format!("unknown argument {other:?}; {USAGE}")),
                }
            }
            let token = token.unwrap_or_else(|| format!("mock-{:016x}", rt::mock::Rng::new(seed ^ 0x6d6f636b).next_u64()));
            let doc: ::serde_json::Value = ::serde_json::from_str(include_str!("../spec.json"))
                .map_err(|e| format!("the embedded spec: {e}"))?;
            let engine = Mock::new(doc, seed)?;
            if ENGINE.set(engine).is_err() {
                return Err("the engine was set twice".into());
            }
            self_check()?;
            let runtime = ::tokio::runtime::Runtime::new().map_err(|e| format!("starting tokio: {e}"))?;
            runtime.block_on(async move {
                use ::poem::listener::{Acceptor, Listener};
                let acceptor = ::poem::listener::TcpListener::bind(format!("{host}:{port}"))
                    .into_acceptor()
                    .await
                    .map_err(|e| format!("binding {host}:{port}: {e}"))?;
                let addr = acceptor
                    .local_addr()
                    .first()
                    .and_then(|a| a.as_socket_addr().copied())
                    .ok_or("the listener has no address")?;
                println!("mock: listening on http://{addr}{}", api::BASE_PATH);
                println!("mock: token {token}");
                println!("mock: seed {seed}");
                let app = api::app(::std::sync::Arc::new(MockApi { token }));
                ::poem::Server::new_with_acceptor(acceptor).run(app).await.map_err(|e| format!("serving: {e}"))
            })
        }
    })
}

/// The checks a body type has: the response checks for a checked model,
/// none for the others (recursive types, scalars).
fn accept_closure(t: &str, checked: &BTreeSet<String>) -> TokenStream {
    if checked.contains(t) {
        quote!(|b| {
            let mut errs = rt::FieldErrors::default();
            rt::check_response(b, "", &mut errs);
            errs.is_empty()
        })
    } else {
        quote!(|_| true)
    }
}

fn schema_pointer(api: &Api, t: &str) -> String {
    api.types.get(t).map_or_else(|| format!("#/components/schemas/{t}"), |d| d.node.pointer.clone())
}

fn policy_impl(api: &Api, checked: &BTreeSet<String>) -> TokenStream {
    let methods = error_body_types(api).into_iter().map(|t| {
        let m = policy_method(&t);
        let ty = ident(&t);
        let ptr = lit(&schema_pointer(api, &t));
        let accept = accept_closure(&t, checked);
        quote! {
            fn #m(problem: &rt::Problem) -> api::models::#ty {
                match engine().error_body::<api::models::#ty>(#ptr, problem, #accept) {
                    Some(b) => b,
                    // Unreachable: `self_check` found a plain body for
                    // every error status before serving.
                    None => panic!("no valid {} body for status {}", #ptr, problem.status),
                }
            }
        }
    });
    quote! {
        impl api::ErrorPolicy for MockApi {
            #(#methods)*
        }
    }
}

/// Refuses to serve when an error body cannot be synthesized for some
/// error status, naming its schema.
fn self_check(api: &Api, checked: &BTreeSet<String>) -> TokenStream {
    let checks = error_body_types(api).into_iter().map(|t| {
        let ty = ident(&t);
        let ptr = lit(&schema_pointer(api, &t));
        let accept = accept_closure(&t, checked);
        quote! {
            for status in 400u16..600 {
                if engine().plain_error_body::<api::models::#ty>(#ptr, status, #accept).is_none() {
                    return Err(format!("{}: no synthesized value passes its checks (status {status})", #ptr));
                }
            }
        }
    });
    quote! {
        /// Every error body the policy may build, for every error status.
        fn self_check() -> ::std::result::Result<(), ::std::string::String> {
            #(#checks)*
            Ok(())
        }
    }
}

fn auth_impl(api: &Api) -> TokenStream {
    if api.security_schemes.is_empty() {
        return quote!();
    }
    let methods = api.security_schemes.iter().map(|s| {
        let m = auth_method(&s.name);
        let (arg, secret) = match &s.kind {
            // Basic: the token as the password (any user), or as the
            // whole `user:password`.
            SchemeKind::Http { scheme: HttpScheme::Basic, .. } => (
                quote!(credentials: &rt::BasicCredentials),
                quote!(credentials.password == self.token || format!("{}:{}", credentials.username, credentials.password) == self.token),
            ),
            SchemeKind::ApiKey { .. } => (quote!(key: &str), quote!(key == self.token)),
            _ => (quote!(token: &str), quote!(token == self.token)),
        };
        quote! {
            fn #m(&self, #arg, ctx: &rt::AuthContext) -> impl ::std::future::Future<Output = ::std::result::Result<(), rt::Problem>> + ::std::marker::Send {
                let accepted = #secret;
                async move {
                    if accepted {
                        Ok(())
                    } else {
                        Err(engine().problem(401).with_detail("not the mock's token"))
                    }
                }
            }
        }
    });
    quote! {
        impl api::Auth for MockApi {
            type Principal = ();
            #(#methods)*
        }
    }
}

fn principal_arg(op: &Operation) -> TokenStream {
    if op.security_optional() {
        quote!(_principal: ::std::option::Option<()>,)
    } else if op.is_secured() {
        quote!(_principal: (),)
    } else {
        quote!()
    }
}

fn operation(op: &Operation) -> TokenStream {
    let m = ident(&op.fn_name);
    let principal = principal_arg(op);
    let method = lit(op.method);
    let template = lit(&op.path);
    if op.raw.is_some() {
        // The raw handler's contract is outside the glue: its first
        // documented success, synthesized.
        return quote! {
            async fn #m(&self, #principal request: &::poem::Request, body: ::poem::Body) -> ::poem::Response {
                let call = Call { method: #method, template: #template, params: ::serde_json::Value::Null, body: None, media: None };
                match engine().answer(call, |r| Ok(r.clone())) {
                    Ok(r) => {
                        let status = ::poem::http::StatusCode::from_u16(r.status).unwrap_or(::poem::http::StatusCode::INTERNAL_SERVER_ERROR);
                        let mut b = ::poem::Response::builder().status(status);
                        if let Some(mt) = &r.media {
                            b = b.content_type(mt.as_str());
                        }
                        let bytes = if r.body.is_string() { r.bytes() } else if r.body.is_null() { Vec::new() } else { r.body.to_string().into_bytes() };
                        b.body(bytes)
                    }
                    Err(p) => p.to_problem_json(),
                }
            }
        };
    }
    let resp = ident(&op.result_type);
    let mut args = vec![principal];
    let params = match &op.params_type {
        Some(pt) => {
            let pt = ident(pt);
            args.push(quote!(params: api::#pt,));
            quote!(::serde_json::to_value(&params).unwrap_or(::serde_json::Value::Null))
        }
        None => quote!(::serde_json::Value::Object(::serde_json::Map::new())),
    };
    let body = match &op.request_body {
        Some(rb) => {
            let (ty, json) = match &rb.raw {
                Some(RustType::Bytes) => (quote!(rt::ByteStream), false),
                Some(t) => (rust_type_tokens(t), true),
                None => {
                    let bt = ident(&rb.model);
                    (quote!(api::models::#bt), !rb.multipart)
                }
            };
            let ty = if rb.required { ty } else { quote!(::std::option::Option<#ty>) };
            args.push(quote!(body: #ty,));
            // File parts and streams are not JSON: nothing of them is kept.
            if json { quote!(::serde_json::to_value(&body).ok()) } else { quote!(None) }
        }
        None => quote!(None),
    };
    let media = match &op.media {
        Some(media) => {
            let t = ident(&media.type_name);
            args.push(quote!(media: api::#t,));
            quote!(Some(media.media_type()))
        }
        None => quote!(None),
    };
    let mut responses: Vec<&Response> = op.responses.iter().collect();
    responses.sort_by_key(|r| match r.status {
        StatusKey::Code(_) => 0,
        StatusKey::Range(_) => 1,
        StatusKey::Default => 2,
    });
    let arms = responses.iter().map(|r| response_arm(op, r));
    let has_default = responses.iter().any(|r| r.status == StatusKey::Default);
    let rest =
        if has_default { quote!() } else { quote!(other => return Err(format!("status {other} is not documented")),) };
    quote! {
        async fn #m(&self, #(#args)*) -> ::std::result::Result<api::#resp, rt::Problem> {
            let call = Call { method: #method, template: #template, params: #params, body: #body, media: #media };
            engine().answer(call, |reply: &Reply| {
                let r = match reply.status {
                    #(#arms)*
                    #rest
                };
                checked(r, api::#resp::check)
            })
        }
    }
}

fn variant(r: &Response) -> proc_macro2::Ident {
    match r.status {
        StatusKey::Code(c) => ident(&variant_name(c)),
        StatusKey::Range(d) => format_ident!("Status{d}xx"),
        StatusKey::Default => ident("Default"),
    }
}

fn body_expr(m: &MediaType) -> TokenStream {
    match m.rust_type {
        RustType::Bytes => quote!(rt::Binary::from(reply.bytes())),
        _ => quote!(reply.body()?),
    }
}

/// `pattern => variant` for one documented response: ranges and `default`
/// bind the status they carry.
fn response_arm(op: &Operation, r: &Response) -> TokenStream {
    let resp = ident(&op.result_type);
    let v = variant(r);
    let (pat, status) = match r.status {
        StatusKey::Code(c) => {
            let c = Literal::u16_unsuffixed(c);
            (quote!(#c), None)
        }
        StatusKey::Range(d) => {
            let d = Literal::u16_unsuffixed(u16::from(d));
            (quote!(s if s / 100 == #d), Some(quote!(s)))
        }
        StatusKey::Default => (quote!(s), Some(quote!(s))),
    };
    let body = match (&r.negotiated, r.content.first()) {
        (Some(n), _) => {
            let t = ident(&n.type_name);
            let mut chain = TokenStream::new();
            for (i, (vn, m)) in n.variants.iter().zip(&r.content).enumerate().rev() {
                let vn = ident(vn);
                let e = body_expr(m);
                let mt = lit(&m.media_type);
                chain = if i + 1 == n.variants.len() {
                    quote!(api::#t::#vn(#e))
                } else {
                    quote!(if reply.media.as_deref() == Some(#mt) { api::#t::#vn(#e) } else { #chain })
                };
            }
            Some(chain)
        }
        (None, Some(m)) => Some(body_expr(m)),
        (None, None) => None,
    };
    let construct = if !r.headers.is_empty() {
        let status = status.map(|s| quote!(status: #s,));
        let body = body.map(|b| quote!(body: #b,));
        let headers = r.headers.iter().map(|h| {
            let f = ident(&h.field);
            let n = lit(&h.name);
            quote!(#f: reply.header(#n)?,)
        });
        quote!(api::#resp::#v { #status #body #(#headers)* })
    } else {
        match (status, body) {
            (Some(s), Some(b)) => quote!(api::#resp::#v(#s, #b)),
            (None, Some(b)) => quote!(api::#resp::#v(#b)),
            (Some(s), None) => quote!(api::#resp::#v(#s)),
            (None, None) => quote!(api::#resp::#v),
        }
    };
    quote!(#pat => #construct,)
}

/// The mock crate's `Cargo.toml`: the server crate beside it and the
/// runtime by path.
pub fn mock_cargo_toml(crate_name: &str, server_crate: &str, spec: &std::path::Path, runtime: &str) -> String {
    let dep = |d: &str| super::Deps::Standalone { runtime: runtime.to_owned() }.line(d);
    format!(
        r#"# @generated by `cargo xtask codegen` from {spec}.
# Do not edit by hand: edit the spec and run `cargo xtask codegen`.
[package]
name = "{crate_name}"
version = "0.1.0"
edition = "2024"
rust-version = "1.88"
publish = false
description = "Mock server generated from {spec}: every operation over rt::mock, no database."

[dependencies]
{server_crate} = {{ path = "../server" }}
spec-first-runtime = {{ path = {runtime:?} }}
{poem}
{serde_json}
{tokio}
"#,
        spec = spec.display(),
        poem = dep("poem"),
        serde_json = dep("serde_json"),
        tokio = dep("tokio"),
    )
}
