//! `lib.rs`: the crate root — module list, `TITLE`/`VERSION`/`BASE_PATH`,
//! the `Auth` trait and scheme types, tags, the `Allow` table, and `app()`.

use anyhow::Result;
use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::operations::{auth_method, scheme_type};
use super::{doc_attrs, ident, lit, op_tag, opt_lit, tag_modules};
use crate::codegen::ir::names::type_name;
use crate::codegen::ir::{Api, Contact};

pub(super) fn lib_rs(api: &Api) -> Result<TokenStream> {
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
