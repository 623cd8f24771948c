//! `lib.rs`: the crate root — module list, `TITLE`/`VERSION`/`BASE_PATH`,
//! the `Auth` trait and scheme types, tags, the `Allow` table, and `app()`.

use heck::ToSnakeCase;
use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::operations::{auth_method, scheme_type};
use super::{doc_attrs, ident, lit, op_tag, opt_lit, tag_modules};
use crate::codegen::ir::names::type_name;
use crate::codegen::ir::{Api, Contact, Tag};

pub(super) fn lib_rs(api: &Api) -> TokenStream {
    let tags = tag_modules(api);
    let mods = tags.iter().map(|t| {
        let m = ident(&t.to_snake_case());
        quote!(pub mod #m; pub use #m::*;)
    });
    let title = lit(&api.title);
    let version = lit(&api.version);
    let base = lit(&api.base_path);
    let info = document_info(api);
    let tag_variants = tag_variants(api);
    let Services { ty: services_ty, value: services_val } = services(&tags);
    let traits: Vec<_> = tags.iter().map(|t| format_ident!("{}Api", type_name(t))).collect();
    let auth = auth(api);
    let allow_entries = allow_table(api);

    quote! {
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
            #info
            svc
        }

        /// The whole HTTP application: operations under [`BASE_PATH`], the
        /// document at `{BASE_PATH}/openapi.json` and `.yaml`, Swagger UI at
        /// `/docs`, and every framework error as the JSON envelope.
        pub fn app<A: Api>(app: ::std::sync::Arc<A>) -> impl ::poem::Endpoint<Output = ::poem::Response> {
            let route = rt::api_routes(openapi_service(app), BASE_PATH);
            rt::envelope_errors::<crate::ErrorCode, _>(route, BASE_PATH, ALLOW)
        }
    }
}

/// `info.description`, `info.contact` and `servers`, as statements that
/// rebind `svc`.
fn document_info(api: &Api) -> TokenStream {
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
    quote!(#description #contact #(#servers)*)
}

/// Variants of `ApiTags`: every tag declared in the spec, then every other
/// tag an operation uses (including the default tag of untagged ones).
fn tag_variants(api: &Api) -> Vec<TokenStream> {
    let mut all_tags: Vec<Tag> = api.tags.clone();
    for op in &api.operations {
        for t in op.tags.iter().cloned().chain(std::iter::once(op_tag(op))) {
            if !all_tags.iter().any(|known| known.name == t) {
                all_tags.push(Tag { name: t, description: None });
            }
        }
    }
    all_tags
        .iter()
        .map(|t| {
            let v = format_ident!("{}", type_name(&t.name));
            let doc = doc_attrs(&[t.description.as_deref()]);
            let nl = lit(&t.name);
            quote!(#doc #[oai(rename = #nl)] #v,)
        })
        .collect()
}

/// The `Services<A>` type and the value `openapi_service` builds.
struct Services {
    ty: TokenStream,
    value: TokenStream,
}

fn services(tags: &[String]) -> Services {
    let servers: Vec<_> = tags.iter().map(|t| format_ident!("{}Server", type_name(t))).collect();
    // poem-openapi implements `OpenApi` for tuples of two or more.
    if let [s] = servers.as_slice() {
        Services { ty: quote!(#s<A>), value: quote!(#s(app)) }
    } else {
        Services { ty: quote!((#(#servers<A>,)*)), value: quote!((#(#servers(::std::clone::Clone::clone(&app)),)*)) }
    }
}

/// The `Auth` trait, one method per scheme, and a type per scheme for the
/// extractor; nothing when the API has no schemes.
fn auth(api: &Api) -> TokenStream {
    // The IR admits header API keys only, so `filter_map` drops nothing.
    let schemes: Vec<ApiKeyScheme<'_>> = api
        .security_schemes
        .iter()
        .filter_map(|s| {
            s.api_key_header().map(|header| ApiKeyScheme {
                name: &s.name,
                header,
                description: s.description.as_deref(),
            })
        })
        .collect();
    if schemes.is_empty() {
        return quote!();
    }
    let methods = schemes.iter().map(|s| {
        let m = auth_method(s.name);
        let d = doc_attrs(&[Some(&format!("Verifies a credential of the `{}` scheme (header `{}`). Answer an `rt::AuthRejection` whose code has status 401 for a bad credential, or 500 when the credential store cannot answer (fail closed).", s.name, s.header))]);
        quote!(#d fn #m(&self, token: &str) -> impl ::std::future::Future<Output = ::std::result::Result<Self::Principal, rt::AuthRejection>> + ::std::marker::Send;)
    });
    let specs = schemes.iter().map(|s| {
        let st = scheme_type(s.name);
        let n = lit(s.name);
        let h = lit(s.header);
        let d = opt_lit(s.description);
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
}

struct ApiKeyScheme<'a> {
    name: &'a str,
    header: &'a str,
    description: Option<&'a str>,
}

/// Documented methods per path, in the spec's order, for 405 answers.
fn allow_table(api: &Api) -> Vec<TokenStream> {
    struct Allowed<'a> {
        path: &'a str,
        methods: Vec<String>,
    }
    let mut allow: Vec<Allowed<'_>> = Vec::new();
    for op in &api.operations {
        let method = op.method.to_uppercase();
        match allow.iter_mut().find(|a| a.path == op.path) {
            Some(a) => a.methods.push(method),
            None => allow.push(Allowed { path: &op.path, methods: vec![method] }),
        }
    }
    allow
        .iter()
        .map(|a| {
            let p = lit(a.path);
            let m = lit(&a.methods.join(", "));
            quote!((#p, #m))
        })
        .collect()
}
