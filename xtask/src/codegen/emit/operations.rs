//! Per-tag modules: the trait an application implements, and the
//! `#[OpenApi]` glue that authenticates, validates parameters and body, and
//! only then calls the trait.

use anyhow::Result;
use heck::ToSnakeCase;
use proc_macro2::{Literal, TokenStream};
use quote::{format_ident, quote};

use super::models::rust_type_tokens;
use super::params::{param_coerce, params_def};
use super::responses::response_enum;
use super::{doc_attrs, ident, lit, op_tag};
use crate::codegen::ir::Api;
use crate::codegen::ir::names::type_name;
use crate::codegen::ir::operations::Operation;
use crate::codegen::ir::params::ParamLocation;
use crate::codegen::ir::types::RustType;

pub(super) fn scheme_type(name: &str) -> proc_macro2::Ident {
    format_ident!("{}Scheme", type_name(name))
}

pub(super) fn auth_method(name: &str) -> proc_macro2::Ident {
    format_ident!("authenticate_{}", name.to_snake_case())
}

pub(super) fn tag_rs(api: &Api, tag: &str, checked: &std::collections::BTreeSet<String>) -> Result<TokenStream> {
    let ops: Vec<&Operation> = api.operations.iter().filter(|o| op_tag(o) == tag).collect();
    let trait_name = format_ident!("{}Api", type_name(tag));
    let server_name = format_ident!("{}Server", type_name(tag));
    let secured = ops.iter().any(|o| o.is_secured());
    let supertrait = if secured { quote!(crate::ErrorPolicy + crate::Auth) } else { quote!(crate::ErrorPolicy) };

    let mut trait_methods = Vec::new();
    let mut server_methods = Vec::new();
    let mut extra = Vec::new();
    for op in &ops {
        if op.raw.is_some() {
            trait_methods.push(raw_trait_method(op));
            server_methods.push(raw_server_method(api, op, &mut extra));
            continue;
        }
        trait_methods.push(trait_method(op));
        extra.push(response_enum(api, op, checked));
        extra.push(params_def(api, op)?);
        server_methods.push(server_method(api, op, &mut extra)?);
    }

    let tag_variant = format_ident!("{}", type_name(tag));
    Ok(quote! {
        //! Operations tagged the same in the contract: the trait to implement,
        //! a response enum per operation, and the HTTP glue.
        #![allow(clippy::too_many_arguments, unused_imports, unused_mut)]
        use crate::{rt, models::*};
        use poem_openapi::OpenApi;

        /// Implement this to serve the operations of this tag. Each method
        /// returns one of the responses the contract documents, or a
        /// problem, answered as the response documented for its status
        /// (built by the `ErrorPolicy`).
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

/// The trait method a handler implements: it receives only what passed
/// authentication and validation.
fn trait_method(op: &Operation) -> TokenStream {
    let m = ident(&op.fn_name);
    let resp = ident(&op.result_type);
    let mut args = Vec::new();
    if op.security_optional() {
        args.push(quote!(principal: ::std::option::Option<Self::Principal>));
    } else if op.is_secured() {
        args.push(quote!(principal: Self::Principal));
    }
    if let Some(pt) = &op.params_type {
        let pt = ident(pt);
        args.push(quote!(params: #pt));
    }
    if let Some(rb) = &op.request_body {
        let bt = match &rb.raw {
            // Binary bodies reach the handler as a stream, never buffered whole.
            Some(RustType::Bytes) => quote!(rt::ByteStream),
            Some(t) => rust_type_tokens(t),
            None => {
                let bt = ident(&rb.model);
                quote!(crate::models::#bt)
            }
        };
        if rb.required {
            args.push(quote!(body: #bt));
        } else {
            args.push(quote!(body: ::std::option::Option<#bt>));
        }
    }
    if let Some(media) = &op.media {
        let t = ident(&media.type_name);
        args.push(quote!(media: #t));
    }
    let doc = doc_attrs(&[
        op.summary.as_deref(),
        op.description.as_deref(),
        Some(&format!("`{} {}` (`{}`).", op.method.to_uppercase(), op.path, op.id)),
    ]);
    quote! {
        #doc
        fn #m(&self, #(#args),*) -> impl ::std::future::Future<Output = ::std::result::Result<#resp, rt::Problem>> + ::std::marker::Send;
    }
}

/// What the glue method is built from, step by step.
#[derive(Default)]
struct Glue {
    /// The `#[OpenApi]` method's extractor arguments.
    args: Vec<TokenStream>,
    /// Statements run before the handler, in order.
    prelude: Vec<TokenStream>,
    /// Arguments of the trait call.
    call: Vec<TokenStream>,
    /// Values that are `None` when their validation failed.
    validated: Vec<TokenStream>,
}

/// Picks the media type a negotiated operation answers in from `Accept`,
/// after validation. Nothing acceptable is the documented 406 where the
/// operation has one, else the server's first choice (RFC 9110 §12.5.1
/// lets a server disregard `Accept` rather than refuse).
fn negotiate(api: &Api, op: &Operation, glue: &mut Glue) -> TokenStream {
    let Some(media) = &op.media else { return quote!() };
    let t = ident(&media.type_name);
    let resp = ident(&op.result_type);
    let offers = media.offers.iter().map(|(_, m)| lit(m));
    glue.args.push(quote!(accept: rt::Accept));
    glue.call.push(quote!(media));
    let status = crate::codegen::ir::errors::fault_status(&api.error_codes, "NotAcceptable");
    let none = if crate::codegen::ir::responses::documented_for(&op.responses, status).is_some() {
        quote!(return crate::answer::<#resp, A>(crate::fault(rt::Fault::NotAcceptable)))
    } else {
        quote!(#t::ALL[0])
    };
    quote! {
        let media = match accept.choose(&[#(#offers),*]) {
            ::std::option::Option::Some(i) => #t::ALL.get(i).copied().unwrap_or(#t::ALL[0]),
            ::std::option::Option::None => #none,
        };
    }
}

/// The `#[OpenApi]` method: authenticate, then parameters, then the body,
/// then one 400 naming every failure, and only then the handler.
fn server_method(api: &Api, op: &Operation, extra: &mut Vec<TokenStream>) -> Result<TokenStream> {
    let m = ident(&op.fn_name);
    let resp = ident(&op.result_type);
    let oai = oai_attr(op);
    // poem-openapi reads the summary and description from the doc comment.
    let doc = doc_attrs(&[op.summary.as_deref(), op.description.as_deref()]);

    let mut glue = Glue::default();
    authenticate(op, &mut glue);
    if op.params_type.is_some() || op.request_body.is_some() {
        glue.prelude.push(quote!(let mut errs = rt::FieldErrors::default();));
    }
    extract_params(api, op, &mut glue)?;
    read_body(api, op, &mut glue, extra);
    let checks = validation_checks(op, &glue);
    let negotiate = negotiate(api, op, &mut glue);
    let Glue { args, prelude, call, .. } = glue;
    let tag = op_tag(op);
    let trait_name = format_ident!("{}Api", type_name(&tag));
    let op_id = lit(&op.id);
    // A conditional GET: the handler's 200 becomes the 304 when the
    // request's `If-None-Match` names its ETag.
    let (keep_condition, apply_condition) = match crate::codegen::ir::conditional::conditional_get(op) {
        Some(c) => {
            let f = ident(&c.param_field);
            (
                quote!(let if_none_match = params.#f.clone();),
                quote!(let r = r.not_modified_for(if_none_match.as_deref());),
            )
        }
        None => (quote!(), quote!()),
    };
    // A partial response: the mask is read before the handler takes the params.
    let (keep_mask, answer) = match &op.field_mask {
        Some(m) => {
            let f = ident(&m.param_field);
            let steps = m.steps.iter().map(|s| match s {
                crate::codegen::ir::field_mask::Step::Key(k) => {
                    let k = lit(k);
                    quote!(rt::MaskStep::Key(#k))
                }
                crate::codegen::ir::field_mask::Step::Each => quote!(rt::MaskStep::Each),
            });
            (
                quote!(let mask = rt::FieldMask::of(&[#(#steps),*], &params.#f);),
                quote!(rt::Answer::Rendered(r.render(mask.as_ref()))),
            )
        }
        None => (quote!(), quote!(rt::Answer::Documented(r))),
    };
    let body = quote! {
            #(#prelude)*
            #checks
            #negotiate
            #keep_condition
            #keep_mask
            match #trait_name::#m(&*self.0, #(#call),*).await {
                ::std::result::Result::Ok(r) => {
                    #apply_condition
                    if rt::response_checks() {
                        let mut errs = rt::FieldErrors::default();
                        r.check(&mut errs);
                        if !errs.is_empty() {
                            rt::report_invalid_response(#op_id, &errs);
                            return crate::answer::<#resp, A>(crate::fault(rt::Fault::Internal));
                        }
                    }
                    #answer
                }
                ::std::result::Result::Err(problem) => crate::answer::<#resp, A>(problem),
            }
    };
    Ok(deprecated_method(op, quote!(#doc #oai), quote!(#m(&self, #(#args),*)), quote!(rt::Answer<#resp>), body))
}

/// The glue method; a deprecated operation's answers all carry its
/// `Deprecation` / `Sunset` headers.
fn deprecated_method(
    op: &Operation,
    attrs: TokenStream,
    sig: TokenStream,
    answer: TokenStream,
    body: TokenStream,
) -> TokenStream {
    match &op.deprecation {
        None => quote! {
            #attrs
            async fn #sig -> #answer { #body }
        },
        Some(d) => {
            let hs = d.headers.iter().map(|(n, v)| {
                let (n, v) = (lit(&n.to_ascii_lowercase()), lit(v));
                quote!((#n, #v))
            });
            quote! {
                #attrs
                async fn #sig -> rt::WithHeaders<#answer> {
                    rt::WithHeaders(async { #body }.await, &[#(#hs),*])
                }
            }
        }
    }
}

fn oai_attr(op: &Operation) -> TokenStream {
    let path = lit(&poem_path(&op.path));
    let method = lit(op.method);
    let op_id = lit(&op.id);
    let tags = op.tags.iter().map(|t| {
        let v = format_ident!("{}", type_name(t));
        let s = lit(&format!("crate::ApiTags::{v}"));
        quote!(tag = #s)
    });
    let deprecated = if op.deprecated { quote!(deprecated,) } else { quote!() };
    quote!(#[oai(path = #path, method = #method, operation_id = #op_id, #(#tags,)* #deprecated)])
}

/// `/users/{id}` in poem's spelling, `/users/:id`.
fn poem_path(path: &str) -> String {
    path.split('/')
        .map(|s| {
            if s.starts_with('{') {
                format!(":{}", s.trim_start_matches('{').trim_end_matches('}'))
            } else {
                s.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

/// One extractor per scheme the operation uses; the alternatives are tried
/// in the spec's order, each only when all its credentials were sent. A
/// sent credential that is refused refuses the request even when `{}`
/// admits anonymous ones: a client that means to authenticate must learn
/// that it failed.
fn authenticate(op: &Operation, glue: &mut Glue) {
    if !op.is_secured() {
        return;
    }
    let reject = reject_fn(op);
    for scheme in op.schemes_used() {
        let st = scheme_type(scheme);
        let arg = cred_arg(scheme);
        glue.args.push(quote!(#arg: rt::SchemeCredential<crate::#st>));
    }
    let optional = op.security_optional();
    let alternatives = op.security.iter().filter(|r| !r.schemes.is_empty()).map(|r| {
        let present = r.schemes.iter().map(|u| {
            let arg = cred_arg(&u.scheme);
            quote!(#arg.0.is_present())
        });
        let checks: Vec<TokenStream> = r
            .schemes
            .iter()
            .map(|u| {
                let arg = cred_arg(&u.scheme);
                let op_id = lit(&op.id);
                let scopes = u.scopes.iter().map(|s| lit(s));
                let verify = verify_fn(&u.scheme);
                quote!(crate::#verify(&*self.0, &#arg.0, &rt::AuthContext { operation_id: #op_id, scopes: &[#(#scopes),*] }).await)
            })
            .collect();
        let first = &checks[0];
        let rest = &checks[1..];
        // No leading `::` after a label: `'auth ::std` would read as a label.
        let admitted = if optional { quote!(std::option::Option::Some(p)) } else { quote!(p) };
        quote! {
            if #(#present)&&* {
                let verified = async {
                    let p = #first?;
                    #( let _ = #rest?; )*
                    ::std::result::Result::Ok::<_, rt::Problem>(p)
                };
                match verified.await {
                    ::std::result::Result::Ok(p) => break 'auth #admitted,
                    ::std::result::Result::Err(e) => { rejected.get_or_insert(e); }
                }
            }
        }
    });
    let anonymous = if optional {
        quote! {
            if rejected.is_none() {
                break 'auth std::option::Option::None;
            }
        }
    } else {
        quote!()
    };
    glue.prelude.push(quote! {
        let principal = 'auth: {
            let mut rejected: ::std::option::Option<rt::Problem> = ::std::option::Option::None;
            #(#alternatives)*
            #anonymous
            return #reject(rejected.unwrap_or_else(|| crate::fault(rt::Fault::MissingCredential)));
        };
    });
    glue.call.push(quote!(principal));
}

/// What answers a refused credential: the documented response for its
/// status, or for a raw handler problem+json.
fn reject_fn(op: &Operation) -> TokenStream {
    if op.raw.is_some() {
        let marker = raw_marker(op);
        quote!(rt::RawAnswer::<#marker>::refused)
    } else {
        let resp = ident(&op.result_type);
        quote!(crate::answer::<#resp, A>)
    }
}

fn raw_marker(op: &Operation) -> proc_macro2::Ident {
    format_ident!("{}Raw", type_name(&op.id))
}

fn raw_trait_method(op: &Operation) -> TokenStream {
    let m = ident(&op.fn_name);
    let mut args = Vec::new();
    if op.security_optional() {
        args.push(quote!(principal: ::std::option::Option<Self::Principal>));
    } else if op.is_secured() {
        args.push(quote!(principal: Self::Principal));
    }
    let doc = doc_attrs(&[
        op.summary.as_deref(),
        op.description.as_deref(),
        Some(&format!(
            "`{} {}` (`{}`), a raw handler: the request as it came (only its credentials were checked) \
             and the response as the handler builds it. Nothing in it is checked against the contract.",
            op.method.to_uppercase(),
            op.path,
            op.id
        )),
    ]);
    quote! {
        #doc
        fn #m(&self, #(#args,)* request: &::poem::Request, body: ::poem::Body) -> impl ::std::future::Future<Output = ::poem::Response> + ::std::marker::Send;
    }
}

fn raw_server_method(api: &Api, op: &Operation, extra: &mut Vec<TokenStream>) -> TokenStream {
    let m = ident(&op.fn_name);
    let oai = oai_attr(op);
    let doc = doc_attrs(&[op.summary.as_deref(), op.description.as_deref()]);
    let marker = raw_marker(op);
    let refs: std::collections::BTreeSet<String> = op.raw.iter().flat_map(|r| r.schema_refs.iter().cloned()).collect();
    let regs = super::schema_meta::register_calls(api, &refs);
    extra.push(quote! {
        #[doc(hidden)]
        pub struct #marker;
        impl rt::RawOperation for #marker {
            fn register(registry: &mut ::poem_openapi::registry::Registry) {
                let _ = &registry;
                #regs
            }
        }
    });
    let mut glue = Glue::default();
    authenticate(op, &mut glue);
    let Glue { args, prelude, call, .. } = glue;
    let tag = op_tag(op);
    let trait_name = format_ident!("{}Api", type_name(&tag));
    let body_ts = quote! {
        #(#prelude)*
        rt::RawAnswer::Raw(#trait_name::#m(&*self.0, #(#call,)* request, body).await)
    };
    deprecated_method(
        op,
        quote!(#doc #oai),
        quote!(#m(&self, #(#args,)* request: &::poem::Request, body: ::poem::Body)),
        quote!(rt::RawAnswer<#marker>),
        body_ts,
    )
}

/// The crate-level function that verifies one scheme's credential.
pub(super) fn verify_fn(scheme: &str) -> proc_macro2::Ident {
    format_ident!("verify_{}", scheme.to_snake_case())
}

fn cred_arg(scheme: &str) -> proc_macro2::Ident {
    format_ident!("cred_{}", scheme.to_snake_case())
}

/// Raw extractors that never fail, one per parameter; their values are
/// coerced and validated together into the params struct.
fn extract_params(api: &Api, op: &Operation, glue: &mut Glue) -> Result<()> {
    let Some(pt) = &op.params_type else { return Ok(()) };
    let pt_i = ident(pt);
    let mut entries = Vec::new();
    for (i, p) in op.params.iter().enumerate() {
        let arg = format_ident!("p_{}", p.field.rust_name);
        let json = lit(&p.field.json_name);
        let wire = lit(&p.name);
        let idx = Literal::usize_unsuffixed(i);
        let extractor = match p.location {
            ParamLocation::Query if p.style == crate::codegen::ir::params::ParamStyle::DeepObject => {
                quote!(rt::DeepQuery<#pt_i, #idx>)
            }
            ParamLocation::Query => quote!(rt::Query<#pt_i, #idx>),
            ParamLocation::Path => quote!(rt::Path<#pt_i, #idx>),
            ParamLocation::Header => quote!(rt::Header<#pt_i, #idx>),
            ParamLocation::Cookie => quote!(rt::Cookie<#pt_i, #idx>),
        };
        let pdoc = doc_attrs(&[p.description.as_deref()]);
        let deprecated = if p.deprecated { quote!(, deprecated) } else { quote!() };
        glue.args.push(quote!(#pdoc #[oai(name = #wire #deprecated)] #arg: #extractor));
        let coerce = param_coerce(api, p);
        entries.push(quote!((#json, #arg.0, #coerce)));
    }
    glue.prelude.push(quote! {
        let params = rt::validate_params::<#pt_i>(&[#(#entries),*], &mut errs);
    });
    glue.call.push(quote!(params));
    glue.validated.push(quote!(params));
    Ok(())
}

fn read_body(api: &Api, op: &Operation, glue: &mut Glue, extra: &mut Vec<TokenStream>) {
    let Some(rb) = &op.request_body else { return };
    let resp = ident(&op.result_type);
    let bdoc = doc_attrs(&[rb.description.as_deref()]);
    if let Some(raw) = &rb.raw {
        // The body's own spec type: media type, required, schema.
        let spec = format_ident!("{}Body", type_name(&op.id));
        let mt = lit(&rb.content[0].media_type);
        let required = rb.required;
        let schema = super::schema_meta::meta_ref(api, &rb.content[0].schema);
        extra.push(quote! {
            #[doc(hidden)]
            pub struct #spec;
            impl rt::RawBodySpec for #spec {
                const MEDIA_TYPE: &'static str = #mt;
                const REQUIRED: bool = #required;
                fn schema() -> ::poem_openapi::registry::MetaSchemaRef { #schema }
            }
        });
        glue.args.push(quote!(#bdoc body: rt::RawBody<#spec>));
        let read = if *raw == RustType::String && !rb.model.is_empty() {
            let m = ident(&rb.model);
            // An enum's value goes back to the text it was read from.
            let text = match api.types.get(&rb.model).map(|t| &t.kind) {
                Some(crate::codegen::ir::types::TypeKind::Newtype(f)) if matches!(f.ty, RustType::Named(_)) => {
                    quote!(|m| ::std::string::ToString::to_string(&m.0))
                }
                _ => quote!(|m| m.0),
            };
            quote!(body.read_text_as::<crate::models::#m>(&mut errs, #text).await)
        } else if *raw == RustType::String {
            quote!(body.read_text().await)
        } else {
            let max = match rb.max_bytes {
                Some(n) => {
                    let n = proc_macro2::Literal::usize_unsuffixed(n);
                    quote!(::std::option::Option::Some(#n))
                }
                None => quote!(::std::option::Option::None),
            };
            quote!(body.into_stream(#max, crate::fault).await)
        };
        body_outcome(rb, &resp, read, glue);
        return;
    }
    let bt = ident(&rb.model);
    if rb.multipart {
        extra.push(multipart_model(api, rb));
        let req = if rb.required { quote!() } else { quote!(, false) };
        glue.args.push(quote!(#bdoc body: rt::MultipartBody<crate::models::#bt #req>));
        body_outcome(rb, &resp, quote!(body.read(&mut errs).await), glue);
        return;
    }
    let media = if rb.content.len() == 1 && rb.content[0].media_type == "application/json" {
        quote!(rt::Json)
    } else {
        // The declared media types, and for a form each field's coercion.
        let m = format_ident!("{}Media", type_name(&op.id));
        let types = rb.content.iter().map(|c| lit(&c.media_type));
        let form = if rb.content.iter().any(|c| crate::codegen::ir::media::is_form(&c.media_type)) {
            let fields = match api.types.get(&rb.model).map(|t| &t.kind) {
                Some(crate::codegen::ir::types::TypeKind::Struct(fields)) => fields.as_slice(),
                _ => &[],
            };
            let entries = fields.iter().map(|f| {
                let (n, c) = (lit(&f.json_name), super::params::coerce_of(&f.ty));
                quote!((#n, #c))
            });
            quote!(const FORM: &'static [(&'static str, rt::Coerce)] = &[#(#entries),*];)
        } else {
            quote!()
        };
        extra.push(quote! {
            #[doc(hidden)]
            pub struct #m;
            impl rt::BodyMedia for #m {
                const TYPES: &'static [&'static str] = &[#(#types),*];
                #form
            }
        });
        quote!(#m)
    };
    let req = if rb.required { quote!() } else { quote!(, false) };
    glue.args.push(quote!(#bdoc body: rt::JsonBody<crate::models::#bt, #media #req>));
    body_outcome(rb, &resp, quote!(body.read(&mut errs).await), glue);
}

/// How a multipart body's parts fill its model: text parts by coercion,
/// file parts set by name.
fn multipart_model(api: &Api, rb: &crate::codegen::ir::request_bodies::RequestBody) -> TokenStream {
    use crate::codegen::ir::types::{Optionality, TypeKind};
    let bt = ident(&rb.model);
    let fields = match api.types.get(&rb.model).map(|t| &t.kind) {
        Some(TypeKind::Struct(fields)) => fields.as_slice(),
        _ => &[],
    };
    let texts = fields.iter().filter(|f| !f.is_file()).map(|f| {
        let (n, c) = (lit(&f.json_name), super::params::coerce_of(&f.ty));
        quote!((#n, #c))
    });
    let files = fields.iter().filter(|f| f.is_file()).map(|f| {
        let (n, r, many) = (lit(&f.json_name), f.required, f.ty != RustType::File);
        quote!((#n, #r, #many))
    });
    let arms = fields.iter().filter(|f| f.is_file()).map(|f| {
        let (n, field) = (lit(&f.json_name), ident(&f.rust_name));
        let set = match (f.ty == RustType::File, f.optionality()) {
            (false, Optionality::Plain) => quote!(self.#field.push(part)),
            (false, _) => quote!(self.#field.get_or_insert_with(::std::vec::Vec::new).push(part)),
            (true, Optionality::Plain) => quote!(self.#field = part),
            (true, _) => quote!(self.#field = ::std::option::Option::Some(part)),
        };
        quote!(#n => #set,)
    });
    quote! {
        impl rt::MultipartModel for crate::models::#bt {
            const FIELDS: &'static [(&'static str, rt::Coerce)] = &[#(#texts),*];
            const FILES: &'static [(&'static str, bool, bool)] = &[#(#files),*];
            fn put_file(&mut self, name: &str, part: rt::FilePart) {
                match name {
                    #(#arms)*
                    _ => {}
                }
            }
        }
    }
}

/// What reading the body found: a value, a failure already in `errs`, no
/// body, or a body that could not be read at all (answered at once).
fn body_outcome(
    rb: &crate::codegen::ir::request_bodies::RequestBody,
    resp: &proc_macro2::Ident,
    read: TokenStream,
    glue: &mut Glue,
) {
    let missing = if rb.required {
        quote!({
            errs.push("body", "request body is required");
            ::std::option::Option::None
        })
    } else {
        quote!(::std::option::Option::Some(::std::option::Option::None))
    };
    let valid = if rb.required {
        quote!(::std::option::Option::Some(v))
    } else {
        quote!(::std::option::Option::Some(::std::option::Option::Some(v)))
    };
    // Read only now: after authentication and the parameters.
    glue.prelude.push(quote! {
        let body = match #read {
            ::std::result::Result::Ok(rt::BodyOutcome::Valid(v)) => #valid,
            ::std::result::Result::Ok(rt::BodyOutcome::Invalid) => ::std::option::Option::None,
            ::std::result::Result::Ok(rt::BodyOutcome::Empty) => #missing,
            ::std::result::Result::Err(e) => {
                let (fault, message) = e.into_error();
                let data = ::serde_json::json!({ "errors": [{ "field": "body", "message": message }] });
                return crate::answer::<#resp, A>(crate::fault(fault).with_data(data));
            }
        };
    });
    glue.call.push(quote!(body));
    glue.validated.push(quote!(body));
}

/// One 400 for every failure at once: a value that did not parse is `None`,
/// and a value that parsed may still have failed a rule.
fn validation_checks(op: &Operation, glue: &Glue) -> TokenStream {
    if op.params_type.is_none() && op.request_body.is_none() {
        return quote!();
    }
    let resp = ident(&op.result_type);
    let pats = glue.validated.iter().map(|v| quote!(::std::option::Option::Some(#v)));
    let vals = &glue.validated;
    quote! {
        let (#(#pats,)*) = (#(#vals,)*) else {
            return crate::answer::<#resp, A>(crate::fault(rt::Fault::ValidationFailed).with_field_errors(&errs));
        };
        if !errs.is_empty() {
            return crate::answer::<#resp, A>(crate::fault(rt::Fault::ValidationFailed).with_field_errors(&errs));
        }
    }
}
