//! Response enums: one per operation, a variant per documented status, with
//! their document metadata, their conversion to HTTP responses and
//! `FromProblem` (a failure as the variant documented for its status).

use proc_macro2::{Literal, TokenStream};
use quote::{ToTokens, quote};
use std::collections::BTreeSet;

use super::models::rust_type_tokens;
use super::policy::policy_method;
use super::schema_meta::{meta_ref, refs_in, register_calls};
use super::{doc_attrs, ident, lit};
use crate::codegen::ir::Api;
use crate::codegen::ir::errors::named_body;
use crate::codegen::ir::media::MediaType;
use crate::codegen::ir::operations::Operation;
use crate::codegen::ir::responses::Response;
use crate::codegen::ir::responses::StatusKey;
use crate::codegen::ir::types::RustType;

/// A response body's Rust type: a binary one is [`rt::Binary`], which the
/// handler may fill with a stream.
fn body_type(m: &crate::codegen::ir::media::MediaType) -> TokenStream {
    match m.rust_type {
        RustType::Bytes => quote!(rt::Binary),
        ref t => rust_type_tokens(t),
    }
}

/// The variant of a status, named as the HTTP reason phrase.
pub(super) fn variant_name(status: u16) -> String {
    match status {
        200 => "Ok".into(),
        201 => "Created".into(),
        202 => "Accepted".into(),
        204 => "NoContent".into(),
        301 => "MovedPermanently".into(),
        302 => "Found".into(),
        303 => "SeeOther".into(),
        304 => "NotModified".into(),
        307 => "TemporaryRedirect".into(),
        400 => "BadRequest".into(),
        401 => "Unauthorized".into(),
        403 => "Forbidden".into(),
        404 => "NotFound".into(),
        405 => "MethodNotAllowed".into(),
        406 => "NotAcceptable".into(),
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

/// A response as the enum sees it: its variant, and whether the variant
/// carries the status (ranges and `default` do).
struct Documented<'a> {
    key: StatusKey,
    description: &'a str,
    /// The body, or the first of a negotiated one's media types.
    body: Option<&'a MediaType>,
    response: &'a Response,
    /// A success response of an operation with a field mask: its JSON is
    /// written through the request's mask (`mask` in scope).
    masked: bool,
}

impl Documented<'_> {
    fn variant(&self) -> proc_macro2::Ident {
        match self.key {
            StatusKey::Code(c) => ident(&variant_name(c)),
            StatusKey::Range(r) => ident(&format!("Status{r}xx")),
            StatusKey::Default => ident("Default"),
        }
    }

    fn carries_status(&self) -> bool {
        !matches!(self.key, StatusKey::Code(_))
    }

    /// The Rust type of the variant's body: its media type's, or the enum
    /// of a negotiated one's.
    fn body_type(&self) -> Option<TokenStream> {
        match &self.response.negotiated {
            Some(n) => {
                let t = ident(&n.type_name);
                Some(quote!(#t))
            }
            None => self.body.map(body_type),
        }
    }

    /// Whether a body may be a stream (then it can be neither cloned nor
    /// compared).
    fn streams(&self) -> bool {
        self.response.content.iter().any(|m| m.rust_type == RustType::Bytes)
    }
}

/// The enum of the media types `op` answers in and, per negotiated
/// response, the enum of its bodies.
fn media_enums(op: &Operation) -> TokenStream {
    let Some(media) = &op.media else { return quote!() };
    let name = ident(&media.type_name);
    let variants: Vec<_> = media.offers.iter().map(|(v, _)| ident(v)).collect();
    let types = media.offers.iter().map(|(_, m)| lit(m));
    let docs = media.offers.iter().map(|(_, m)| doc_attrs(&[Some(&format!("`{m}`"))]));
    let doc = doc_attrs(&[Some(&format!(
        "The media types `{}` answers in, the server's preference first. The glue picks one from the \
         request's `Accept` (RFC 9110 §12.5.1) and passes it to the handler, which answers in it.",
        op.id
    ))]);
    let bodies = op.responses.iter().filter_map(|r| {
        let n = r.negotiated.as_ref()?;
        let t = ident(&n.type_name);
        let vs = n.variants.iter().zip(&r.content).map(|(v, m)| {
            let v = ident(v);
            let ty = body_type(m);
            let d = doc_attrs(&[Some(&format!("As `{}`.", m.media_type))]);
            quote!(#d #v(#ty),)
        });
        let derives = if r.content.iter().any(|m| m.rust_type == RustType::Bytes) {
            quote!(#[derive(Debug)])
        } else {
            quote!(#[derive(Debug, Clone, PartialEq)])
        };
        let d = doc_attrs(&[Some(&format!("The body of `{}`'s {} in each media type it documents.", op.id, r.status))]);
        Some(quote! { #d #derives pub enum #t { #(#vs)* } })
    });
    quote! {
        #doc
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum #name { #(#docs #variants,)* }
        impl #name {
            /// Every media type, in the order offered.
            pub const ALL: &'static [Self] = &[#(Self::#variants),*];
            /// The media type as the spec writes it.
            pub const fn media_type(self) -> &'static str {
                match self { #(Self::#variants => #types,)* }
            }
        }
        #(#bodies)*
    }
}

fn documented(op: &Operation) -> Vec<Documented<'_>> {
    op.responses
        .iter()
        .map(|r| Documented {
            key: r.status,
            description: &r.description,
            body: r.body(),
            response: r,
            masked: op.field_mask.is_some() && !r.is_error(),
        })
        .collect()
}

/// The operation's result type with its `ApiResponse` (document),
/// `IntoResponse` (HTTP), `FromProblem` (a failure as the response
/// documented for its status) and `check` (the body against the spec).
pub(super) fn response_enum(api: &Api, op: &Operation, checked: &BTreeSet<String>) -> TokenStream {
    let name = ident(&op.result_type);
    let responses = documented(op);
    let doc = doc_attrs(&[Some(&format!("Every response `{}` documents, one variant per status.", op.id))]);
    let variants = responses.iter().map(|r| {
        let v = r.variant();
        let what = match r.key {
            StatusKey::Code(_) => String::new(),
            StatusKey::Range(_) => " (the status is the first field, within the range)".to_owned(),
            StatusKey::Default => " (any status not listed; the first field)".to_owned(),
        };
        let d = doc_attrs(&[Some(&format!("{} {}{what}", r.key, r.description))]);
        let status = if r.carries_status() { quote!(u16,) } else { quote!() };
        if !r.response.headers.is_empty() {
            let status = if r.carries_status() { quote!(status: u16,) } else { quote!() };
            let body = r.body_type().map(|t| quote!(body: #t,));
            let headers = r.response.headers.iter().map(|h| {
                let f = ident(&h.field);
                let t = rust_type_tokens(&h.rust_type);
                let hd = doc_attrs(&[Some(&format!("The `{}` header.", h.name)), h.description.as_deref()]);
                if h.required { quote!(#hd #f: #t,) } else { quote!(#hd #f: ::std::option::Option<#t>,) }
            });
            return quote!(#d #v { #status #body #(#headers)* },);
        }
        match r.body_type() {
            Some(t) => quote!(#d #v(#status #t),),
            None if r.carries_status() => quote!(#d #v(u16),),
            None => quote!(#d #v,),
        }
    });
    let metas = responses.iter().map(|r| response_meta(api, r));
    let regs = registrations(api, &responses);
    let into_arms = responses.iter().map(into_response_arm);
    let into_response = if op.field_mask.is_some() {
        quote! {
            impl ::poem::IntoResponse for #name {
                fn into_response(self) -> ::poem::Response {
                    self.render(::std::option::Option::None)
                }
            }
            impl #name {
                /// The response with only the members `mask` names in
                /// its success body (see `x-field-mask`); `None` sends it whole.
                pub fn render(self, mask: ::std::option::Option<&rt::FieldMask>) -> ::poem::Response {
                    match self { #(#into_arms)* }
                }
            }
        }
    } else {
        quote! {
            impl ::poem::IntoResponse for #name {
                fn into_response(self) -> ::poem::Response {
                    match self { #(#into_arms)* }
                }
            }
        }
    };
    let from_problem = from_problem_impl(&name, &responses);
    let check = check_impl(api, &name, &responses, checked);
    let conditional = crate::codegen::ir::conditional::conditional_get(op).map(|c| {
        let keep = if c.not_modified_etag { quote!(Self::NotModified { etag }) } else { quote!(Self::NotModified) };
        let f = ident(&c.ok_etag_field);
        let bind = if c.ok_etag_field == "etag" { quote!(etag) } else { quote!(#f: etag) };
        quote! {
            impl #name {
                /// RFC 9110 §13.1.2: the 200 this operation answers becomes
                /// its documented 304 when the request's `If-None-Match`
                /// names its `ETag` (weak comparison), so handlers never
                /// compare validators themselves.
                pub fn not_modified_for(self, if_none_match: ::std::option::Option<&str>) -> Self {
                    match self {
                        Self::Ok { #bind, .. } if rt::etag::none_match_fails(if_none_match, &etag) => #keep,
                        other => other,
                    }
                }
            }
        }
    });
    // A streamed body can be neither cloned nor compared.
    let streams = responses.iter().any(Documented::streams);
    let media = media_enums(op);
    let derives = if streams { quote!(#[derive(Debug)]) } else { quote!(#[derive(Debug, Clone, PartialEq)]) };
    quote! {
        #doc
        #derives
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

        #into_response
        #from_problem
        #check
        #conditional
        #media
    }
}

/// `check`: the variant's body against its schema (the same structural
/// pass and rules as requests), every failure under its JSON path, and its
/// headers against theirs (`header <Name>`). Bodies of types without checks
/// (recursive ones, bare scalars) pass; a negotiated body is checked in its
/// JSON variants.
fn check_impl(
    api: &Api,
    name: &proc_macro2::Ident,
    responses: &[Documented<'_>],
    checked: &BTreeSet<String>,
) -> TokenStream {
    let mut arms = Vec::new();
    for r in responses {
        let headers = header_checks(api, r);
        let bodies: Vec<(TokenStream, &MediaType)> = match &r.response.negotiated {
            Some(n) => {
                let t = ident(&n.type_name);
                n.variants
                    .iter()
                    .zip(&r.response.content)
                    .map(|(v, m)| {
                        let v = ident(v);
                        (quote!(#t::#v(body)), m)
                    })
                    .collect()
            }
            None => r.body.map(|m| (quote!(body), m)).into_iter().collect(),
        };
        let mut any_body = false;
        for (inner, m) in &bodies {
            if let Some(call) = body_check(m, checked) {
                any_body = true;
                let bound = headers.as_ref().map_or(&[][..], |(f, _)| f.as_slice());
                let pat = variant_pattern(r, Some(inner), bound);
                let hs = headers.as_ref().map(|(_, stmt)| stmt.clone());
                arms.push(quote!(#pat => { #call; #hs }));
            }
        }
        if let Some((bound, stmt)) = &headers {
            // Bodies without checks, or no body: the headers still are.
            let pat = variant_pattern(r, None, bound);
            if !any_body || bodies.len() > 1 {
                arms.push(quote!(#pat => { #stmt }));
            }
        }
    }
    quote! {
        impl #name {
            /// Checks the body and headers against the spec (see `rt::response_checks`).
            #[doc(hidden)]
            pub fn check(&self, errs: &mut rt::FieldErrors) {
                let _ = &errs;
                match self {
                    #(#arms)*
                    #[allow(unreachable_patterns)]
                    _ => {}
                }
            }
        }
    }
}

/// The pattern of `r`'s variant binding `body` (by `inner`) when given and
/// the header fields `headers`.
fn variant_pattern(r: &Documented<'_>, inner: Option<&TokenStream>, headers: &[proc_macro2::Ident]) -> TokenStream {
    let v = r.variant();
    if !r.response.headers.is_empty() {
        let body = match inner {
            Some(i) if r.response.negotiated.is_some() => quote!(body: #i,),
            Some(_) => quote!(body,),
            None => quote!(),
        };
        return quote!(Self::#v { #body #(#headers,)* .. });
    }
    match (inner, r.carries_status()) {
        (Some(i), true) => quote!(Self::#v(_, #i)),
        (Some(i), false) => quote!(Self::#v(#i)),
        (None, true) => quote!(Self::#v(..)),
        (None, false) => quote!(Self::#v { .. }),
    }
}

/// The check of one body bound to `body`, if its type has one.
fn body_check(m: &MediaType, checked: &BTreeSet<String>) -> Option<TokenStream> {
    match &m.rust_type {
        RustType::Named(t) if checked.contains(t) => {
            let t = ident(t);
            Some(quote!(rt::check_response::<crate::models::#t>(body, "", errs)))
        }
        RustType::Vec(item) => match item.as_ref() {
            RustType::Named(t) if checked.contains(t) => {
                let t = ident(t);
                Some(quote!(for (i, item) in body.iter().enumerate() {
                    rt::check_response::<crate::models::#t>(item, &::std::format!("[{i}]"), errs);
                }))
            }
            _ => None,
        },
        _ => None,
    }
}

/// The checks of `r`'s headers that have rules (length, pattern, range,
/// format, enum): a struct of their values with those garde rules, checked
/// by `rt::check_headers`. `None` when no header has one.
fn header_checks(api: &Api, r: &Documented<'_>) -> Option<(Vec<proc_macro2::Ident>, TokenStream)> {
    let mut fields = Vec::new();
    let mut names = Vec::new();
    let mut used = Vec::new();
    for h in &r.response.headers {
        // A JSON (`content`) header of a generated type is checked by its
        // type only: response-only models carry no garde derive.
        let named = |t: &RustType| matches!(t, RustType::Named(_));
        if named(&h.rust_type) || matches!(&h.rust_type, RustType::Vec(i) if named(i)) {
            continue;
        }
        let node = super::validation::node_of(api, &h.schema);
        let rules = super::validation::value_rules(api, &h.rust_type, &node).ok()?;
        if rules.is_empty() {
            continue;
        }
        let f = ident(&h.field);
        let t = rust_type_tokens(&h.rust_type);
        let t = if h.required { t } else { quote!(::std::option::Option<#t>) };
        // An optional header: rules on items go one `inner` deeper (garde
        // applies the others through the Option).
        let rules: Vec<TokenStream> = if h.required {
            rules
        } else {
            rules.into_iter().map(|r| if r.to_string().starts_with("inner") { quote!(inner(#r)) } else { r }).collect()
        };
        fields.push(quote!(#[garde(#(#rules),*)] #f: #t,));
        let (fl, nl) = (lit(&h.field), lit(&h.name));
        names.push(quote!((#fl, #nl)));
        used.push(f);
    }
    if used.is_empty() {
        return None;
    }
    let stmt = quote! {
        #[derive(::garde::Validate)]
        struct Headers { #(#fields)* }
        rt::check_headers(&Headers { #(#used: ::std::clone::Clone::clone(#used)),* }, &[#(#names),*], errs);
    };
    Some((used, stmt))
}

fn response_meta(api: &Api, r: &Documented<'_>) -> TokenStream {
    let (status, range) = match r.key {
        StatusKey::Code(c) => {
            let c = Literal::u16_unsuffixed(c);
            (quote!(::std::option::Option::Some(#c)), quote!(::std::option::Option::None))
        }
        StatusKey::Range(_) => {
            let l = lit(&r.key.to_string());
            (
                quote!(::std::option::Option::None),
                quote!(::std::option::Option::Some(::std::string::ToString::to_string(#l))),
            )
        }
        StatusKey::Default => (quote!(::std::option::Option::None), quote!(::std::option::Option::None)),
    };
    let headers = r.response.headers.iter().map(|h| {
        let n = lit(&h.name);
        let d = match &h.description {
            Some(d) => {
                let d = lit(d);
                quote!(::std::option::Option::Some(::std::string::ToString::to_string(#d)))
            }
            None => quote!(::std::option::Option::None),
        };
        let (req, dep) = (h.required, h.deprecated);
        let schema = meta_ref(api, &h.schema);
        quote!(::poem_openapi::registry::MetaHeader {
            name: ::std::string::ToString::to_string(#n),
            description: #d,
            required: #req,
            deprecated: #dep,
            schema: #schema,
        })
    });
    let desc = lit(r.description);
    let media = r.response.content.iter().map(|m| {
        let ct = lit(&m.media_type);
        let m = body_schema_ref(api, m);
        quote!(::poem_openapi::registry::MetaMediaType { content_type: #ct, schema: #m })
    });
    let content =
        if r.response.content.is_empty() { quote!(::std::vec::Vec::new()) } else { quote!(::std::vec![#(#media),*]) };
    quote!(::poem_openapi::registry::MetaResponse {
        description: #desc,
        status: #status,
        status_range: #range,
        headers: ::std::vec![#(#headers),*],
        content: #content,
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
    for body in responses.iter().flat_map(|r| &r.response.content) {
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
    let v = r.variant();
    if !r.response.headers.is_empty() {
        return into_response_with_headers(r);
    }
    let bare = |status: TokenStream| {
        quote!(::poem::Response::builder()
            .status(::poem::http::StatusCode::from_u16(#status).unwrap_or(::poem::http::StatusCode::INTERNAL_SERVER_ERROR))
            .finish())
    };
    match (r.key, r.body) {
        (StatusKey::Code(c), Some(_)) => {
            let c = Literal::u16_unsuffixed(c);
            let w = write_body(quote!(#c), r);
            quote!(Self::#v(body) => #w,)
        }
        (StatusKey::Code(c), None) => {
            let b = bare(Literal::u16_unsuffixed(c).into_token_stream());
            quote!(Self::#v => #b,)
        }
        (_, Some(_)) => {
            let w = write_body(quote!(status), r);
            quote!(Self::#v(status, body) => #w,)
        }
        (_, None) => {
            let b = bare(quote!(status));
            quote!(Self::#v(status) => #b,)
        }
    }
}

/// `body` (the variant's) written with its media type; a negotiated body
/// in the media type of its variant, with `Vary: Accept`, since the choice
/// depended on it.
fn write_body(status: TokenStream, r: &Documented<'_>) -> TokenStream {
    let Some(n) = &r.response.negotiated else {
        return r.body.map_or_else(|| quote!(rt::json_response(#status, &body)), |m| write_media(&status, m, r.masked));
    };
    let t = ident(&n.type_name);
    let arms = n.variants.iter().zip(&r.response.content).map(|(v, m)| {
        let v = ident(v);
        let w = write_media(&status, m, r.masked);
        quote!(#t::#v(body) => #w,)
    });
    quote!({
        let mut response = match body { #(#arms)* };
        response.headers_mut().append(
            ::poem::http::header::VARY,
            ::poem::http::HeaderValue::from_static("accept"),
        );
        response
    })
}

/// `body` serialized as media type `m` (through the request's field mask
/// when `masked`).
fn write_media(status: &TokenStream, m: &MediaType, masked: bool) -> TokenStream {
    match (m.media_type.as_str(), &m.rust_type) {
        // Text and bytes go out as they are, with the declared media type.
        (mt, RustType::String | RustType::Bytes) if !crate::codegen::ir::media::is_json(mt) => {
            let mt = lit(mt);
            quote!(rt::raw_response(#status, #mt, body))
        }
        (mt, _) if masked => {
            let mt = lit(mt);
            quote!(rt::masked_json_response(#status, &body, #mt, mask))
        }
        (mt, _) if mt != "application/json" => {
            let mt = lit(mt);
            quote!(rt::json_response_as(#status, &body, #mt))
        }
        _ => quote!(rt::json_response(#status, &body)),
    }
}

/// A variant with headers: the body (or none), then each header; a value
/// that is not a valid header value (a newline in a string) is a 500, as
/// the handler built a response the protocol cannot carry.
fn into_response_with_headers(r: &Documented<'_>) -> TokenStream {
    let v = r.variant();
    let status = match r.key {
        StatusKey::Code(c) => Literal::u16_unsuffixed(c).into_token_stream(),
        _ => quote!(status),
    };
    let bind_status = if r.carries_status() { quote!(status,) } else { quote!() };
    let bind_body = if r.body.is_some() { quote!(body,) } else { quote!() };
    let fields: Vec<_> = r.response.headers.iter().map(|h| ident(&h.field)).collect();
    let base = if r.body.is_some() {
        write_body(status.clone(), r)
    } else {
        quote!(::poem::Response::builder()
            .status(::poem::http::StatusCode::from_u16(#status).unwrap_or(::poem::http::StatusCode::INTERNAL_SERVER_ERROR))
            .finish())
    };
    let sets = r.response.headers.iter().map(|h| {
        let f = ident(&h.field);
        let n = lit(&h.name);
        let json = h.content.as_ref().is_some_and(|c| c.json);
        let value = if json { quote!(&rt::JsonHeader(value)) } else { quote!(value) };
        if h.required {
            let value = if json { quote!(&rt::JsonHeader(&#f)) } else { quote!(&#f) };
            quote!(if let ::std::result::Result::Err(p) = rt::set_header(&mut response, #n, #value) { return p.to_problem_json(); })
        } else {
            quote!(if let ::std::option::Option::Some(value) = &#f {
                if let ::std::result::Result::Err(p) = rt::set_header(&mut response, #n, #value) { return p.to_problem_json(); }
            })
        }
    });
    quote! {
        Self::#v { #bind_status #bind_body #(#fields),* } => {
            let mut response = #base;
            #(#sets)*
            response
        }
    }
}

/// `value` as the body of `r`: itself, or the first variant of a
/// negotiated body (an error built from a problem is sent in the server's
/// preferred media type).
fn in_first_media(r: &Documented<'_>, value: TokenStream) -> TokenStream {
    match &r.response.negotiated {
        Some(n) => {
            let (t, v) = (ident(&n.type_name), ident(&n.variants[0]));
            quote!(#t::#v(#value))
        }
        None => value,
    }
}

/// A problem becomes the variant documented for its status (exact, then
/// range, then `default`), its body built by the application's error
/// policy; a status the operation does not document is given back, and the
/// glue answers it as problem+json. Success responses never carry one.
fn from_problem_impl(name: &proc_macro2::Ident, responses: &[Documented<'_>]) -> TokenStream {
    let arms = responses.iter().filter(|r| r.response.is_error()).filter_map(|r| {
        let v = r.variant();
        // A problem carries no header values: a required header rules the
        // variant out.
        if r.response.headers.iter().any(|h| h.required) {
            return None;
        }
        let pattern = match r.key {
            StatusKey::Code(c) => {
                let c = Literal::u16_unsuffixed(c);
                quote!(#c)
            }
            StatusKey::Range(d) => {
                let d = Literal::u16_unsuffixed(u16::from(d));
                quote!(s if s / 100 == #d)
            }
            StatusKey::Default => quote!(s if s >= 400),
        };
        let status = if r.carries_status() { quote!(s,) } else { quote!() };
        if !r.response.headers.is_empty() {
            let status = if r.carries_status() { quote!(status: s,) } else { quote!() };
            let body = match (r.body, named_body(r.response)) {
                (None, _) => quote!(),
                (Some(_), Some(t)) => {
                    let m = policy_method(t);
                    let b = in_first_media(r, quote!(P::#m(&problem)));
                    quote!(body: #b,)
                }
                (Some(_), None) => return None,
            };
            let nones = r.response.headers.iter().map(|h| {
                let f = ident(&h.field);
                quote!(#f: ::std::option::Option::None,)
            });
            return Some(quote!(#pattern => ::std::result::Result::Ok(Self::#v { #status #body #(#nones)* }),));
        }
        let value = match (r.body, named_body(r.response)) {
            (None, _) if r.carries_status() => quote!(Self::#v(s)),
            (None, _) => quote!(Self::#v),
            (Some(_), Some(t)) => {
                let m = policy_method(t);
                let b = in_first_media(r, quote!(P::#m(&problem)));
                quote!(Self::#v(#status #b))
            }
            // A body the policy cannot build (not a named type): only a
            // handler can answer this status.
            (Some(_), None) => return None,
        };
        Some(quote!(#pattern => ::std::result::Result::Ok(#value),))
    });
    quote! {
        impl crate::FromProblem for #name {
            fn from_problem<P: crate::ErrorPolicy>(problem: rt::Problem) -> ::std::result::Result<Self, rt::Problem> {
                match problem.status {
                    #(#arms)*
                    _ => ::std::result::Result::Err(problem),
                }
            }
        }
    }
}
