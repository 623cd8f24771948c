//! The client crate's `auth` module, generated from the spec's security:
//! a `Credentials` with one setter per `components/securitySchemes` entry,
//! the security requirements of every operation, and the progenitor
//! pre-hook that sends exactly the credentials the matched operation asks
//! for. Read from the openapiv3 document directly (the server's IR is not
//! shared with the client on purpose: progenitor sees the document too).

use anyhow::{Result, bail};
use heck::ToSnakeCase;
use openapiv3 as oa;
use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote};

use super::ir::names::{field_name, pointer_segment, type_name};

/// One entry of `components/securitySchemes`.
#[derive(Debug, Clone)]
struct Scheme {
    /// The key in `components/securitySchemes`.
    name: String,
    /// The setter of `Credentials` and the field holding the credential.
    ident: Ident,
    /// The variant of the generated `Scheme` enum.
    variant: Ident,
    kind: Kind,
}

/// How a scheme's credential travels.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// An API key in the header of this name (as declared).
    Header(String),
    Query(String),
    Cookie(String),
    /// `Authorization: Bearer …`: http bearer, and the access token of
    /// oauth2 and openIdConnect (the same wire format).
    Bearer(BearerOrigin),
    /// `Authorization: Basic base64(user:password)`.
    Basic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BearerOrigin {
    Http,
    OAuth2,
    OpenIdConnect,
}

impl Kind {
    /// Whether the credential is written into the `Authorization` header.
    fn uses_authorization(&self) -> bool {
        matches!(self, Kind::Bearer(_) | Kind::Basic)
            || matches!(self, Kind::Header(h) if h.eq_ignore_ascii_case("authorization"))
    }
}

/// The effective security of one operation.
#[derive(Debug, Clone)]
struct OpSecurity {
    method: String,
    template: String,
    /// Alternatives in document order, each the indices of the schemes it
    /// combines; an empty alternative (`{}`) makes the credentials optional.
    alternatives: Vec<Vec<usize>>,
    /// A JSON request body declared as a `+json` type other than
    /// `application/json` (progenitor only sends the latter; see
    /// [`super::client::json_body_type`]).
    content_type: Option<String>,
}

/// The rendered module and what `lib.rs` says about it.
pub struct AuthModule {
    pub tokens: TokenStream,
    /// Whether the spec uses `http basic` (the crate then needs `base64`).
    pub uses_base64: bool,
}

/// RFC 7230 `tchar`: what header and cookie names may be made of.
fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn schemes(doc: &oa::OpenAPI) -> Result<Vec<Scheme>> {
    let Some(components) = &doc.components else { return Ok(Vec::new()) };
    let mut out: Vec<Scheme> = Vec::new();
    for (name, entry) in &components.security_schemes {
        let pointer = format!("#/components/securitySchemes/{}", pointer_segment(name));
        let scheme = match entry {
            oa::ReferenceOr::Item(s) => s,
            oa::ReferenceOr::Reference { reference } => {
                let target = reference.strip_prefix("#/components/securitySchemes/");
                match target.and_then(|t| components.security_schemes.get(t)) {
                    Some(oa::ReferenceOr::Item(s)) => s,
                    _ => bail!("{pointer}: reference {reference:?} does not name a security scheme of this document"),
                }
            }
        };
        let kind = match scheme {
            oa::SecurityScheme::APIKey { location, name: key, .. } => match location {
                oa::APIKeyLocation::Header if is_token(key) => Kind::Header(key.clone()),
                oa::APIKeyLocation::Cookie if is_token(key) => Kind::Cookie(key.clone()),
                oa::APIKeyLocation::Query if !key.is_empty() => Kind::Query(key.clone()),
                _ => bail!("{pointer}/name: {key:?} is not a valid {location:?} name"),
            },
            oa::SecurityScheme::HTTP { scheme, .. } => match scheme.to_ascii_lowercase().as_str() {
                "bearer" => Kind::Bearer(BearerOrigin::Http),
                "basic" => Kind::Basic,
                _ => bail!("{pointer}: http scheme {scheme:?} is not supported"),
            },
            oa::SecurityScheme::OAuth2 { .. } => Kind::Bearer(BearerOrigin::OAuth2),
            oa::SecurityScheme::OpenIDConnect { .. } => Kind::Bearer(BearerOrigin::OpenIdConnect),
        };
        let ident = field_name(name);
        // An inherent `default` would shadow `Credentials::default()`.
        if ident == "default" || ident == "clone" {
            bail!("{pointer}: the scheme's setter would be named `{ident}`, which `Credentials` needs itself");
        }
        let variant = type_name(name);
        if let Some(other) = out.iter().find(|s| s.ident == ident || s.variant == variant) {
            bail!(
                "{pointer}: its setter `{ident}` or type `{variant}` is also that of scheme {:?}; rename one",
                other.name
            );
        }
        out.push(Scheme {
            name: name.clone(),
            ident: Ident::new(&ident, Span::call_site()),
            variant: Ident::new(&variant, Span::call_site()),
            kind,
        });
    }
    Ok(out)
}

/// Every operation's effective security: its own, else the document's.
fn operations(doc: &oa::OpenAPI, schemes: &[Scheme]) -> Result<Vec<OpSecurity>> {
    let resolve = |reqs: &[oa::SecurityRequirement], pointer: &str| -> Result<Vec<Vec<usize>>> {
        let mut alternatives = Vec::new();
        for (i, req) in reqs.iter().enumerate() {
            let mut alt = Vec::new();
            for name in req.keys() {
                let Some(idx) = schemes.iter().position(|s| s.name == *name) else {
                    bail!("{pointer}/{i}: unknown security scheme {name:?} (not in components/securitySchemes)");
                };
                alt.push(idx);
            }
            // Two credentials in one header cannot both be sent.
            let authz: Vec<&str> =
                alt.iter().map(|&i| &schemes[i]).filter(|s| s.kind.uses_authorization()).map(|s| &*s.name).collect();
            if authz.len() > 1 {
                bail!("{pointer}/{i}: schemes {authz:?} all need the Authorization header; they cannot be combined");
            }
            for (a, &x) in alt.iter().enumerate() {
                for &y in &alt[a + 1..] {
                    if let (Kind::Header(h), Kind::Header(k)) = (&schemes[x].kind, &schemes[y].kind)
                        && h.eq_ignore_ascii_case(k)
                    {
                        bail!(
                            "{pointer}/{i}: schemes {:?} and {:?} both send header {h:?}",
                            schemes[x].name,
                            schemes[y].name
                        );
                    }
                }
            }
            alternatives.push(alt);
        }
        Ok(alternatives)
    };
    let global = match &doc.security {
        Some(reqs) => resolve(reqs, "#/security")?,
        None => Vec::new(),
    };
    let mut out = Vec::new();
    for (path, item) in &doc.paths.paths {
        let oa::ReferenceOr::Item(item) = item else {
            bail!("#/paths/{}: path item references are not supported", pointer_segment(path))
        };
        for (method, op) in item.iter() {
            let alternatives = match &op.security {
                Some(reqs) => resolve(reqs, &format!("#/paths/{}/{method}/security", pointer_segment(path)))?,
                None => global.clone(),
            };
            let content_type = super::client::json_body_type(op);
            out.push(OpSecurity {
                method: method.to_ascii_uppercase(),
                template: path.clone(),
                alternatives,
                content_type,
            });
        }
    }
    Ok(out)
}

/// What the credential of `s` is and where it goes.
fn what(s: &Scheme) -> String {
    match &s.kind {
        Kind::Header(h) => format!("API key, sent in the `{h}` header"),
        Kind::Query(q) => format!("API key, sent as the `{q}` query parameter"),
        Kind::Cookie(c) => format!("API key, sent as the `{c}` cookie"),
        Kind::Bearer(BearerOrigin::Http) => "bearer token, sent as `Authorization: Bearer …`".to_owned(),
        Kind::Bearer(BearerOrigin::OAuth2) => {
            "OAuth 2.0 access token (obtained elsewhere), sent as `Authorization: Bearer …`".to_owned()
        }
        Kind::Bearer(BearerOrigin::OpenIdConnect) => {
            "OpenID Connect access token (obtained elsewhere), sent as `Authorization: Bearer …`".to_owned()
        }
        Kind::Basic => "user and password, sent as `Authorization: Basic base64(user:password)`".to_owned(),
    }
}

/// The doc line of the setter of `s`.
fn setter_doc(s: &Scheme) -> String {
    format!(" The credential of security scheme `{}`: {}.", s.name, what(s))
}

/// The `auth` module of the client crate. Refuses a `with_…` helper that
/// would collide with an operation's method on `Client` (progenitor names
/// those after the snake-case operation id).
pub fn render(doc: &oa::OpenAPI) -> Result<AuthModule> {
    let schemes = schemes(doc)?;
    let ops = operations(doc, &schemes)?;
    let op_names: Vec<String> = doc
        .paths
        .paths
        .iter()
        .filter_map(|(_, i)| i.as_item())
        .flat_map(|i| i.iter().filter_map(|(_, op)| op.operation_id.as_ref().map(|id| id.to_snake_case())))
        .collect();
    for s in &schemes {
        let helper = format!("with_{}", s.ident);
        if op_names.contains(&helper) {
            bail!(
                "#/components/securitySchemes/{}: the client helper `{helper}` would collide with the operation of that name",
                pointer_segment(&s.name)
            );
        }
    }

    let variants: Vec<&Ident> = schemes.iter().map(|s| &s.variant).collect();
    let variant_docs = schemes.iter().map(|s| format!(" `{}`", s.name));
    let fields = schemes.iter().map(|s| {
        let id = &s.ident;
        match s.kind {
            Kind::Basic => quote!(#id: Option<(String, String)>),
            _ => quote!(#id: Option<String>),
        }
    });
    let debug_fields = schemes.iter().map(|s| {
        let id = &s.ident;
        let name = id.to_string();
        quote!(.field(#name, &self.#id.as_ref().map(|_| "***")))
    });
    let setters = schemes.iter().map(|s| {
        let id = &s.ident;
        let doc = setter_doc(s);
        match s.kind {
            Kind::Basic => quote! {
                #[doc = #doc]
                pub fn #id(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
                    self.#id = Some((user.into(), password.into()));
                    self
                }
            },
            _ => quote! {
                #[doc = #doc]
                pub fn #id(mut self, credential: impl Into<String>) -> Self {
                    self.#id = Some(credential.into());
                    self
                }
            },
        }
    });
    let has_arms = schemes.iter().map(|s| {
        let (v, id) = (&s.variant, &s.ident);
        quote!(Scheme::#v => self.#id.is_some())
    });
    let helpers = schemes.iter().map(|s| {
        let id = &s.ident;
        let with = format_ident!("with_{}", id);
        let doc = format!(" The same client, with the credential of `{}` (see [`Credentials::{id}`]).", s.name);
        match s.kind {
            Kind::Basic => quote! {
                #[doc = #doc]
                pub fn #with(mut self, user: impl Into<String>, password: impl Into<String>) -> Self {
                    self.inner = std::mem::take(&mut self.inner).#id(user, password);
                    self
                }
            },
            _ => quote! {
                #[doc = #doc]
                pub fn #with(mut self, credential: impl Into<String>) -> Self {
                    self.inner = std::mem::take(&mut self.inner).#id(credential);
                    self
                }
            },
        }
    });
    // `with_token`: kept for specs with one key-or-token scheme, as before.
    let with_token = match schemes.as_slice() {
        [s] if matches!(
            s.kind,
            Kind::Header(_) | Kind::Query(_) | Kind::Cookie(_) | Kind::Bearer(BearerOrigin::Http)
        ) && s.ident != "token" =>
        {
            let with = format_ident!("with_{}", s.ident);
            let doc = format!(" The same client, with the credential of `{}` (the spec's only scheme).", s.name);
            quote! {
                #[doc = #doc]
                pub fn with_token(self, token: impl Into<String>) -> Self {
                    self.#with(token)
                }
            }
        }
        _ => quote!(),
    };
    let send_arms = schemes.iter().map(|s| {
        let (v, id, name) = (&s.variant, &s.ident, &s.name);
        let body = match &s.kind {
            Kind::Header(h) => {
                let h = h.to_ascii_lowercase();
                quote! {
                request.headers_mut().insert(reqwest::header::HeaderName::from_static(#h), header_value(#name, key)?);
            }},
            Kind::Query(q) => quote! {
                request.url_mut().query_pairs_mut().append_pair(#q, key);
            },
            Kind::Cookie(c) => quote! {
                add_cookie(request, #name, #c, key)?;
            },
            Kind::Bearer(_) => quote! {
                let value = header_value(#name, &format!("Bearer {key}"))?;
                request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
            },
            Kind::Basic => quote! {
                let (user, password) = key;
                let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
                let value = header_value(#name, &format!("Basic {encoded}"))?;
                request.headers_mut().insert(reqwest::header::AUTHORIZATION, value);
            },
        };
        quote! {
            Scheme::#v => {
                let Some(key) = &credentials.#id else { return Ok(()) };
                #body
            }
        }
    });
    let uses_base64 = schemes.iter().any(|s| s.kind == Kind::Basic);
    let uses_cookie = schemes.iter().any(|s| matches!(s.kind, Kind::Cookie(_)));
    let base64_use = if uses_base64 {
        quote!(
            use base64::Engine as _;
        )
    } else {
        quote!()
    };
    let cookie_fn = if uses_cookie {
        quote! {
            /// Appends `name=value` to the request's `Cookie` header (`; `
            /// separated), refusing a value that would end the cookie early.
            fn add_cookie(
                request: &mut reqwest::Request,
                scheme: &'static str,
                name: &str,
                value: &str,
            ) -> Result<(), CredentialError> {
                if !value.bytes().all(|b| b.is_ascii_graphic() && !matches!(b, b'"' | b',' | b';' | b'\\')) {
                    return Err(CredentialError { scheme });
                }
                let pair = format!("{name}={value}");
                let line = match request.headers().get(reqwest::header::COOKIE).and_then(|v| v.to_str().ok()) {
                    Some(existing) if !existing.is_empty() => format!("{existing}; {pair}"),
                    _ => pair,
                };
                request.headers_mut().insert(reqwest::header::COOKIE, header_value(scheme, &line)?);
                Ok(())
            }
        }
    } else {
        quote!()
    };
    let op_entries = ops.iter().map(|o| {
        let (m, t) = (&o.method, &o.template);
        let alts = o.alternatives.iter().map(|alt| {
            let vs = alt.iter().map(|&i| &schemes[i].variant);
            quote!(&[#(Scheme::#vs),*])
        });
        let ct = match &o.content_type {
            Some(c) => quote!(::std::option::Option::Some(#c)),
            None => quote!(::std::option::Option::None),
        };
        quote!(Operation { method: #m, template: #t, security: &[#(#alts),*], content_type: #ct })
    });

    let module_doc = module_doc(&schemes);
    // A spec without schemes matches on an empty enum: the rest is dead.
    let no_schemes_allow =
        if schemes.is_empty() { quote!(#[allow(unused_variables, unreachable_code)]) } else { quote!() };
    let tokens = quote! {
        #(#![doc = #module_doc])*

        #base64_use

        /// A security scheme of the spec (`components/securitySchemes`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        enum Scheme {
            #(#[doc = #variant_docs] #variants),*
        }

        /// What the client authenticates with: at most one credential per
        /// security scheme of the spec, each set by the setter named after
        /// the scheme. `Debug` never prints a credential.
        #[derive(Clone, Default, PartialEq, Eq)]
        pub struct Credentials {
            #(#fields),*
        }

        impl std::fmt::Debug for Credentials {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct("Credentials") #(#debug_fields)* .finish()
            }
        }

        impl Credentials {
            #(#setters)*

            /// Whether the credential of `scheme` is configured.
            fn has(&self, scheme: Scheme) -> bool {
                match scheme {
                    #(#has_arms),*
                }
            }
        }

        impl crate::Client {
            #(#helpers)*
            #with_token
        }

        /// An operation of the spec and its effective security.
        struct Operation {
            method: &'static str,
            /// The path template, relative to the base URL.
            template: &'static str,
            /// Alternatives (OR) in document order, each a set of schemes
            /// sent together (AND); `&[]` among them makes the credentials
            /// optional, and no alternative at all means open.
            security: &'static [&'static [Scheme]],
            /// The body's declared media type, where it is a `+json` type
            /// other than `application/json` (progenitor sends JSON as the
            /// latter; this hook names it as the spec does).
            content_type: ::std::option::Option<&'static str>,
        }

        /// Every operation: the operation's own `security`, else the
        /// document's.
        const OPERATIONS: &[Operation] = &[#(#op_entries),*];

        /// A configured credential that cannot be put into a request (a
        /// character a header or cookie may not carry). The credential
        /// itself is not part of the message.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct CredentialError {
            scheme: &'static str,
        }

        impl std::fmt::Display for CredentialError {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "the credential of security scheme `{}` cannot be sent: it contains a character its header or cookie may not carry", self.scheme)
            }
        }

        impl std::error::Error for CredentialError {}

        /// Whether one segment of a request path matches one segment of a
        /// template: literals equal, each `{param}` standing for any text.
        fn segment_matches(template: &str, segment: &str) -> bool {
            if !template.contains('{') {
                return template == segment;
            }
            // Literal pieces between the parameters, in order.
            let mut pieces = Vec::new();
            let mut rest = template;
            while let Some(open) = rest.find('{') {
                pieces.push(&rest[..open]);
                rest = rest[open..].find('}').map_or("", |close| &rest[open + close + 1..]);
            }
            pieces.push(rest);
            let (first, last) = (pieces[0], pieces[pieces.len() - 1]);
            let Some(mut tail) = segment.strip_prefix(first) else { return false };
            for piece in &pieces[1..pieces.len() - 1] {
                match tail.find(piece) {
                    Some(at) => tail = &tail[at + piece.len()..],
                    None => return false,
                }
            }
            tail.len() >= last.len() && tail.ends_with(last)
        }

        /// The operation a request was built for: the template matching
        /// the end of its path (the base URL's own path comes first) with
        /// the most literal segments, then the longest; path parameters
        /// are percent-encoded by the client, so each fills one segment.
        fn operation(method: &str, path: &str) -> Option<&'static Operation> {
            let path: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
            let mut best: Option<(&'static Operation, (usize, usize))> = None;
            for op in OPERATIONS.iter().filter(|op| op.method == method) {
                let template: Vec<&str> = op.template.strip_prefix('/').unwrap_or(op.template).split('/').collect();
                if template.len() > path.len() {
                    continue;
                }
                let tail = &path[path.len() - template.len()..];
                if !template.iter().zip(tail).all(|(t, p)| segment_matches(t, p)) {
                    continue;
                }
                let score = (template.iter().filter(|t| !t.contains('{')).count(), template.len());
                if best.is_none_or(|(_, s)| score > s) {
                    best = Some((op, score));
                }
            }
            best.map(|(op, _)| op)
        }

        /// Adds the credential of `scheme` to `request`.
        #no_schemes_allow
        fn send(credentials: &Credentials, scheme: Scheme, request: &mut reqwest::Request) -> Result<(), CredentialError> {
            match scheme {
                #(#send_arms)*
            }
            Ok(())
        }

        /// A header value marked sensitive (never logged by the HTTP stack).
        fn header_value(scheme: &'static str, value: &str) -> Result<reqwest::header::HeaderValue, CredentialError> {
            let mut value = reqwest::header::HeaderValue::from_str(value).map_err(|_| CredentialError { scheme })?;
            value.set_sensitive(true);
            Ok(value)
        }

        #cookie_fn

        /// progenitor pre-hook: finds the request's operation and sends the
        /// credentials of its first alternative whose credentials are all
        /// configured — all of them, and nothing else. An open operation
        /// gets none; when no alternative can be satisfied the request goes
        /// out without credentials and the server answers 401. Public, so
        /// a request built by hand can be authenticated the same way.
        pub async fn apply(credentials: &Credentials, request: &mut reqwest::Request) -> Result<(), CredentialError> {
            let Some(op) = operation(request.method().as_str(), request.url().path()) else { return Ok(()) };
            if let (Some(ct), Some(_)) = (op.content_type, request.body()) {
                request.headers_mut().insert(reqwest::header::CONTENT_TYPE, reqwest::header::HeaderValue::from_static(ct));
            }
            let chosen = op.security.iter().find(|alt| !alt.is_empty() && alt.iter().all(|s| credentials.has(*s)));
            for scheme in chosen.copied().unwrap_or_default() {
                send(credentials, *scheme, request)?;
            }
            Ok(())
        }
    };
    Ok(AuthModule { tokens, uses_base64 })
}

/// The module's `//!` lines: the schemes and the rules of selection.
fn module_doc(schemes: &[Scheme]) -> Vec<String> {
    let mut lines = vec![
        " Credentials, generated from the spec's security schemes: each".to_owned(),
        " operation gets exactly the credentials its `security` (else the".to_owned(),
        " document's) declares, attached by a progenitor pre-hook.".to_owned(),
        "".to_owned(),
        " - Alternatives (OR): the first whose credentials are *all* configured".to_owned(),
        "   is sent, all of its schemes together (AND).".to_owned(),
        " - Optional (`{}` among the alternatives): configured credentials are".to_owned(),
        "   sent, and nothing otherwise. Open (`security: []`): nothing, ever.".to_owned(),
        " - No alternative satisfiable: the request goes out *without*".to_owned(),
        "   credentials, and the server answers 401.".to_owned(),
        " - OAuth 2.0 and OpenID Connect scopes are not checked here: the".to_owned(),
        "   access token (obtained elsewhere) carries them.".to_owned(),
        " - A cookie credential is appended to the request's `Cookie` header;".to_owned(),
        "   reqwest adds its default headers and cookie store only where the".to_owned(),
        "   request has none, so those cookies are not sent alongside it.".to_owned(),
        "".to_owned(),
        " Schemes, each with its setter of [`Credentials`] and helper of `Client`:".to_owned(),
    ];
    if schemes.is_empty() {
        lines.push(" none; every operation is sent without credentials.".to_owned());
    }
    for s in schemes {
        lines.push(format!(" - `{}`: {} (`.{}(…)`, `with_{}(…)`).", s.name, what(s), s.ident, s.ident));
    }
    lines
}
