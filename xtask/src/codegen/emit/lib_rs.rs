//! `lib.rs`: the crate root — module list, `TITLE`/`VERSION`/`BASE_PATH`,
//! the `Auth` trait and scheme types, the error policy, tags, the `Allow`
//! and security tables, and `app()`.

use proc_macro2::TokenStream;
use quote::{format_ident, quote};

use super::operations::{auth_method, scheme_type, verify_fn};
use super::policy::policy;
use super::{doc_attrs, ident, lit, op_tag, opt_lit, tag_module, tag_modules};
use crate::codegen::ir::names::{pointer_segment, type_name};
use crate::codegen::ir::schema::AdditionalProperties;
use crate::codegen::ir::security::{
    ApiKeyLocation, HttpScheme, OAuth2Flow, OAuth2FlowKind, SchemeKind, SecurityScheme,
};
use crate::codegen::ir::{Api, Contact, Tag};

pub(super) fn lib_rs(api: &Api) -> TokenStream {
    let tags = tag_modules(api);
    let mods = tags.iter().map(|t| {
        let m = ident(&tag_module(t));
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
    let policy = policy(api);
    let allow_entries = allow_table(api);
    let operation_entries = operation_table(api);
    let doc_patches = doc_patches(api);
    let registry = if api.error_codes.is_empty() {
        quote!()
    } else {
        quote!(
            pub mod error_codes;
            pub use error_codes::ErrorCode;
        )
    };

    quote! {
        //! Server side of the contract: implement the per-tag traits (and
        //! `Auth`), then serve [`app`].
        #![allow(clippy::all)]

        pub mod rt;
        pub mod models;
        #registry
        #(#mods)*

        #[allow(unused_imports)]
        pub use models::*;
        pub use poem_openapi;

        /// The API title and version from the contract's `info`.
        pub const TITLE: &str = #title;
        pub const VERSION: &str = #version;
        /// Path of `servers[0]`, under which every operation is mounted.
        pub const BASE_PATH: &str = #base;
        /// Documented methods per path, for 405 answers' `Allow` header.
        pub const ALLOW: rt::AllowTable = &[#(#allow_entries),*];
        /// Every operation as `(method, path template, operationId)`, in
        /// the contract's order: how middleware names the operation a
        /// request reached (`rt::operation_for`) without strings of its own.
        pub const OPERATIONS: rt::OperationTable = &[#(#operation_entries),*];
        /// What the served document says about operations that
        /// poem-openapi cannot express (AND of schemes, a description
        /// without a summary), as the spec writes it.
        pub const DOC_PATCHES: rt::DocPatches = &[#(#doc_patches),*];

        #auth

        #policy


        /// The contract's tags.
        #[derive(::poem_openapi::Tags)]
        pub enum ApiTags { #(#tag_variants)* }

        /// Everything one application implements.
        pub trait Api: ErrorPolicy #(+ #traits)* {}
        impl<A: ErrorPolicy #(+ #traits)*> Api for A {}

        /// The services of every tag over one application.
        pub type Services<A> = #services_ty;

        /// The document the application serves at
        /// `{BASE_PATH}/openapi.json`, as JSON.
        pub fn document<A: Api>(app: ::std::sync::Arc<A>) -> ::serde_json::Value {
            rt::served_document(&openapi_service(app).spec(), DOC_PATCHES)
        }

        /// The OpenAPI service (document, routes) over `app`.
        pub fn openapi_service<A: Api>(app: ::std::sync::Arc<A>) -> ::poem_openapi::OpenApiService<Services<A>, ()> {
            let svc = ::poem_openapi::OpenApiService::new(#services_val, TITLE, VERSION);
            #info
            svc
        }

        /// The whole HTTP application: operations under [`BASE_PATH`], the
        /// document at `{BASE_PATH}/openapi.json` and `.yaml`, Swagger UI at
        /// `/docs`, and every framework error in the spec's error format.
        pub fn app<A: Api>(app: ::std::sync::Arc<A>) -> impl ::poem::Endpoint<Output = ::poem::Response> {
            app_at(app, BASE_PATH)
        }

        /// [`app`] mounted under `base` instead of [`BASE_PATH`] (a
        /// deployment behind a prefix, or another value of the server
        /// URL's variables); `""` mounts at the root.
        pub fn app_at<A: Api>(app: ::std::sync::Arc<A>, base: &'static str) -> impl ::poem::Endpoint<Output = ::poem::Response> {
            let route = rt::api_routes(openapi_service(app), base, DOC_PATCHES);
            rt::envelope_errors::<Fallback<A>, _>(route, base, ALLOW)
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
    let license = api.license.as_ref().map(|(name, url)| {
        let n = lit(name);
        let u = url.as_ref().map(|u| {
            let u = lit(u);
            quote!(.url(#u))
        });
        quote!(let svc = svc.license(::poem_openapi::LicenseObject::new(#n)#u);)
    });
    let terms = api.terms_of_service.as_ref().map(|t| {
        let t = lit(t);
        quote!(let svc = svc.terms_of_service(#t);)
    });
    let servers = api.servers.iter().map(|s| {
        let u = lit(&s.url);
        let d = s.description.as_ref().map(|d| {
            let d = lit(d);
            quote!(.description(#d))
        });
        let vars = s.variables.iter().map(|v| {
            let (n, def, desc) = (lit(&v.name), lit(&v.default), lit(v.description.as_deref().unwrap_or("")));
            if v.enumeration.is_empty() {
                quote!(.variable(#n, #desc, #def))
            } else {
                let e = v.enumeration.iter().map(|x| lit(x));
                quote!(.enum_variable(#n, #desc, #def, ::std::vec![#(#e),*]))
            }
        });
        quote!(let svc = svc.server(::poem_openapi::ServerObject::new(#u)#d #(#vars)*);)
    });
    quote!(#description #contact #license #terms #(#servers)*)
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
    if api.security_schemes.is_empty() {
        return quote!();
    }
    let methods = api.security_schemes.iter().map(|s| {
        let m = auth_method(&s.name);
        let (what, credential) = match &s.kind {
            SchemeKind::ApiKey { name, location } => {
                let at = match location {
                    ApiKeyLocation::Header => "header",
                    ApiKeyLocation::Query => "query parameter",
                    ApiKeyLocation::Cookie => "cookie",
                };
                (format!("an API key in the {at} `{name}`"), quote!(key: &str))
            }
            SchemeKind::Http { scheme: HttpScheme::Basic, .. } => {
                ("HTTP basic credentials".to_owned(), quote!(credentials: &rt::BasicCredentials))
            }
            SchemeKind::Http { .. } => ("an HTTP bearer token".to_owned(), quote!(token: &str)),
            SchemeKind::OAuth2 { .. } => ("an OAuth 2 access token (bearer)".to_owned(), quote!(token: &str)),
            SchemeKind::OpenIdConnect { .. } => {
                ("an OpenID Connect access token (bearer)".to_owned(), quote!(token: &str))
            }
        };
        let d = doc_attrs(&[
            Some(&format!("Verifies the `{}` scheme: {what}.", s.name)),
            s.description.as_deref(),
            Some(
                "`ctx` names the operation and the scopes its requirement asks of this scheme. Return the \
                 principal, or the problem to answer: 401 for a credential that is not accepted, 403 for \
                 one that lacks a scope, 5xx when the credential store cannot answer (fail closed).",
            ),
        ]);
        quote!(#d fn #m(&self, #credential, ctx: &rt::AuthContext) -> impl ::std::future::Future<Output = ::std::result::Result<Self::Principal, rt::Problem>> + ::std::marker::Send;)
    });
    let specs = api.security_schemes.iter().map(scheme_spec);
    let verifiers = api.security_schemes.iter().map(|s| {
        let v = verify_fn(&s.name);
        let m = auth_method(&s.name);
        let accepted = match s.kind {
            SchemeKind::Http { scheme: HttpScheme::Basic, .. } => quote!(rt::Credential::Basic(c)),
            _ => quote!(rt::Credential::Token(c)),
        };
        let d = doc_attrs(&[Some(&format!(
            "The `{}` credential through [`Auth::{m}`]; an unreadable one is a missing one.",
            s.name
        ))]);
        quote! {
            #d
            #[doc(hidden)]
            pub async fn #v<A: Auth>(app: &A, credential: &rt::Credential, ctx: &rt::AuthContext) -> ::std::result::Result<A::Principal, rt::Problem> {
                match credential {
                    #accepted => app.#m(c, ctx).await,
                    rt::Credential::Malformed(why) => ::std::result::Result::Err(fault(rt::Fault::MissingCredential).with_detail(*why)),
                    _ => ::std::result::Result::Err(fault(rt::Fault::MissingCredential)),
                }
            }
        }
    });
    quote! {
        /// Verifies credentials for secured operations; runs before the
        /// handler, which never sees an unauthenticated request. Every
        /// scheme of the admitting requirement is verified; the handler
        /// receives the principal of its first.
        pub trait Auth: ::std::marker::Send + ::std::marker::Sync + 'static {
            /// Who made the request, as the handlers receive it.
            type Principal: ::std::marker::Send + 'static;
            #(#methods)*
        }
        #(#specs)*
        #(#verifiers)*
    }
}

/// The scheme's type: where its credential travels and its document entry.
fn scheme_spec(s: &SecurityScheme) -> TokenStream {
    let st = scheme_type(&s.name);
    let n = lit(&s.name);
    let d = opt_lit(s.description.as_deref());
    let none = quote!(::std::option::Option::None);
    let some = |v: &str| {
        let v = lit(v);
        quote!(::std::option::Option::Some(#v))
    };
    let (at, ty, name, key_in, scheme, bearer_format, flows, oidc) = match &s.kind {
        SchemeKind::ApiKey { name, location } => {
            let l = lit(name);
            let (at, key_in) = match location {
                ApiKeyLocation::Header => (quote!(Header(#l)), "header"),
                ApiKeyLocation::Query => (quote!(Query(#l)), "query"),
                ApiKeyLocation::Cookie => (quote!(Cookie(#l)), "cookie"),
            };
            (at, "apiKey", some(name), some(key_in), none.clone(), none.clone(), none.clone(), none.clone())
        }
        SchemeKind::Http { scheme, bearer_format } => {
            let (at, sch) = match scheme {
                HttpScheme::Basic => (quote!(Basic), "basic"),
                _ => (quote!(Bearer), "bearer"),
            };
            let bf = bearer_format.as_deref().map_or(none.clone(), some);
            (at, "http", none.clone(), none.clone(), some(sch), bf, none.clone(), none.clone())
        }
        SchemeKind::OAuth2 { flows } => {
            let f = oauth_flows(flows);
            (quote!(Bearer), "oauth2", none.clone(), none.clone(), none.clone(), none.clone(), f, none.clone())
        }
        SchemeKind::OpenIdConnect { url } => (
            quote!(Bearer),
            "openIdConnect",
            none.clone(),
            none.clone(),
            none.clone(),
            none.clone(),
            none.clone(),
            some(url),
        ),
    };
    let ty = lit(ty);
    quote! {
        /// The security scheme as declared in the contract.
        pub struct #st;
        impl rt::SchemeSpec for #st {
            const NAME: &'static str = #n;
            const IN: rt::CredentialIn = rt::CredentialIn::#at;
            fn meta() -> ::poem_openapi::registry::MetaSecurityScheme {
                ::poem_openapi::registry::MetaSecurityScheme {
                    ty: #ty,
                    description: #d,
                    name: #name,
                    key_in: #key_in,
                    scheme: #scheme,
                    bearer_format: #bearer_format,
                    flows: #flows,
                    openid_connect_url: #oidc,
                }
            }
        }
    }
}

fn oauth_flows(flows: &[OAuth2Flow]) -> TokenStream {
    let flow = |kind: OAuth2FlowKind| {
        let Some(f) = flows.iter().find(|f| f.kind == kind) else { return quote!(::std::option::Option::None) };
        let opt = |v: &Option<String>| opt_lit(v.as_deref());
        let (a, t, r) = (opt(&f.authorization_url), opt(&f.token_url), opt(&f.refresh_url));
        let scopes = f.scopes.iter().map(|s| {
            let s = lit(s);
            quote!(::poem_openapi::registry::MetaOAuthScope { name: #s, description: ::std::option::Option::None })
        });
        quote!(::std::option::Option::Some(::poem_openapi::registry::MetaOAuthFlow {
            authorization_url: #a,
            token_url: #t,
            refresh_url: #r,
            scopes: ::std::vec![#(#scopes),*],
        }))
    };
    let (i, p, c, a) = (
        flow(OAuth2FlowKind::Implicit),
        flow(OAuth2FlowKind::Password),
        flow(OAuth2FlowKind::ClientCredentials),
        flow(OAuth2FlowKind::AuthorizationCode),
    );
    quote!(::std::option::Option::Some(::poem_openapi::registry::MetaOAuthFlows {
        implicit: #i,
        password: #p,
        client_credentials: #c,
        authorization_code: #a,
    }))
}

/// `(pointer, value as JSON)` for what poem-openapi would get wrong: each
/// operation's `security` (OR of AND), a description with no summary
/// (poem-openapi would make it the summary), `additionalProperties: false`.
fn doc_patches(api: &Api) -> Vec<TokenStream> {
    let mut patches: Vec<(String, serde_json::Value)> = Vec::new();
    for o in &api.operations {
        let at = format!("/paths/{}/{}", pointer_segment(&o.path), o.method);
        if let Some(raw) = &o.raw {
            // As the spec writes it: the glue knows nothing of its
            // parameters and responses.
            patches.push((at, raw.document.clone()));
            continue;
        }
        if o.is_secured() {
            let reqs: Vec<serde_json::Value> = o
                .security
                .iter()
                .map(|r| {
                    serde_json::Value::Object(
                        r.schemes.iter().map(|u| (u.scheme.clone(), serde_json::json!(u.scopes))).collect(),
                    )
                })
                .collect();
            patches.push((format!("{at}/security"), serde_json::Value::Array(reqs)));
        }
        // poem-openapi writes every parameter as its location's default
        // style; the extractors come in `params` order.
        for (i, p) in o.params.iter().enumerate() {
            use crate::codegen::ir::params::ParamStyle;
            // poem-openapi has no `content` on parameters: as the spec
            // writes it, in place of the schema and the style it implies.
            if let Some(c) = &p.content {
                for k in ["schema", "style", "explode"] {
                    patches.push((format!("{at}/parameters/{i}/{k}"), serde_json::Value::Null));
                }
                patches.push((format!("{at}/parameters/{i}/content"), c.document.clone()));
                continue;
            }
            if matches!(
                p.style,
                ParamStyle::SpaceDelimited
                    | ParamStyle::PipeDelimited
                    | ParamStyle::DeepObject
                    | ParamStyle::Label
                    | ParamStyle::Matrix
            ) {
                patches.push((format!("{at}/parameters/{i}/style"), serde_json::json!(p.style.to_string())));
                patches.push((format!("{at}/parameters/{i}/explode"), serde_json::json!(p.explode)));
            } else if !p.explode && p.style == ParamStyle::Form {
                // poem-openapi writes every form parameter exploded.
                patches.push((format!("{at}/parameters/{i}/explode"), serde_json::json!(false)));
            }
            if let Some(mask) = &p.field_mask {
                patches
                    .push((format!("{at}/parameters/{i}/{}", crate::codegen::ir::field_mask::EXTENSION), mask.clone()));
            }
        }
        // The deprecation extensions, which poem-openapi does not write.
        for (k, v) in o.deprecation.iter().flat_map(|d| &d.extensions) {
            patches.push((format!("{at}/{k}"), v.clone()));
        }
        // poem-openapi has no response links, nor `content` on headers: as
        // the spec writes them.
        for r in &o.responses {
            for h in &r.headers {
                if let Some(c) = &h.content {
                    let hp = format!("{at}/responses/{}/headers/{}", r.status, pointer_segment(&h.name));
                    patches.push((format!("{hp}/schema"), serde_json::Value::Null));
                    patches.push((format!("{hp}/content"), c.document.clone()));
                }
            }
            if let Some(links) = &r.links {
                patches.push((format!("{at}/responses/{}/links", r.status), links.clone()));
            }
        }
        let summary_splits = o.summary.as_deref().is_some_and(|s| s.contains("\n\n"));
        if (o.summary.is_none() && o.description.is_some()) || summary_splits {
            patches.push((format!("{at}/summary"), serde_json::json!(o.summary)));
            patches.push((format!("{at}/description"), serde_json::json!(o.description)));
        }
    }
    for t in api.types.values() {
        if t.node.additional_properties == Some(AdditionalProperties::Forbidden) {
            let at = match &t.component {
                Some(c) => format!("/components/schemas/{}", pointer_segment(c)),
                None => t.node.pointer.trim_start_matches('#').to_owned(),
            };
            patches.push((format!("{at}/additionalProperties"), serde_json::Value::Bool(false)));
        }
    }
    patches
        .into_iter()
        .map(|(p, v)| {
            let (p, v) = (lit(&p), lit(&v.to_string()));
            quote!((#p, #v))
        })
        .collect()
}

/// Documented methods per path, in the spec's order, for 405 answers.
fn operation_table(api: &Api) -> Vec<TokenStream> {
    api.operations
        .iter()
        .map(|op| {
            let m = lit(&op.method.to_uppercase());
            let p = lit(&op.path);
            let id = lit(&op.id);
            quote!((#m, #p, #id))
        })
        .collect()
}

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
