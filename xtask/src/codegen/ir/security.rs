//! Security: the schemes of `components/securitySchemes`, typed as OpenAPI
//! defines them, and each operation's requirements — alternatives (OR), each
//! a set of schemes that must all pass (AND), with the scopes they need
//! (OAuth 2.0 scopes, or the roles a 3.1 document may list for any scheme).

use anyhow::{Result, bail};
use openapiv3 as oa;

use super::names::pointer_segment;

#[derive(Debug, Clone)]
pub struct SecurityScheme {
    /// The key in `components/securitySchemes`.
    pub name: String,
    pub pointer: String,
    pub description: Option<String>,
    pub kind: SchemeKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum SchemeKind {
    ApiKey { name: String, location: ApiKeyLocation },
    Http { scheme: HttpScheme, bearer_format: Option<String> },
    OAuth2 { flows: Vec<OAuth2Flow> },
    OpenIdConnect { url: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiKeyLocation {
    Header,
    Query,
    Cookie,
}

/// The `scheme` of an `http` security scheme (RFC 7235), case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HttpScheme {
    Basic,
    Bearer,
    Other(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct OAuth2Flow {
    pub kind: OAuth2FlowKind,
    pub authorization_url: Option<String>,
    pub token_url: Option<String>,
    pub refresh_url: Option<String>,
    pub scopes: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuth2FlowKind {
    Implicit,
    Password,
    ClientCredentials,
    AuthorizationCode,
}

/// One alternative of an operation's `security`: every scheme listed must
/// accept the request.
#[derive(Debug, Clone, PartialEq)]
pub struct SecurityRequirement {
    pub schemes: Vec<SchemeUse>,
}

/// A scheme named by a requirement, with the scopes it must grant.
#[derive(Debug, Clone, PartialEq)]
pub struct SchemeUse {
    pub scheme: String,
    pub scopes: Vec<String>,
}

/// Every scheme of the document, in order; one the emitters cannot
/// authenticate with stops generation, used or not.
pub fn schemes(doc: &oa::OpenAPI) -> Result<Vec<SecurityScheme>> {
    let mut out = Vec::new();
    let Some(c) = &doc.components else { return Ok(out) };
    for (name, s) in &c.security_schemes {
        let pointer = format!("#/components/securitySchemes/{}", pointer_segment(name));
        let scheme = match s {
            oa::ReferenceOr::Item(s) => scheme(name, s, pointer),
            oa::ReferenceOr::Reference { .. } => bail!("{pointer}: security scheme references are not supported"),
        };
        require_emittable(&scheme)?;
        out.push(scheme);
    }
    Ok(out)
}

fn scheme(name: &str, s: &oa::SecurityScheme, pointer: String) -> SecurityScheme {
    let (kind, description) = match s {
        oa::SecurityScheme::APIKey { location, name, description, .. } => {
            let location = match location {
                oa::APIKeyLocation::Header => ApiKeyLocation::Header,
                oa::APIKeyLocation::Query => ApiKeyLocation::Query,
                oa::APIKeyLocation::Cookie => ApiKeyLocation::Cookie,
            };
            (SchemeKind::ApiKey { name: name.clone(), location }, description)
        }
        oa::SecurityScheme::HTTP { scheme, bearer_format, description, .. } => {
            let scheme = match scheme.to_ascii_lowercase().as_str() {
                "basic" => HttpScheme::Basic,
                "bearer" => HttpScheme::Bearer,
                _ => HttpScheme::Other(scheme.clone()),
            };
            (SchemeKind::Http { scheme, bearer_format: bearer_format.clone() }, description)
        }
        oa::SecurityScheme::OAuth2 { flows, description, .. } => {
            (SchemeKind::OAuth2 { flows: oauth2_flows(flows) }, description)
        }
        oa::SecurityScheme::OpenIDConnect { open_id_connect_url, description, .. } => {
            (SchemeKind::OpenIdConnect { url: open_id_connect_url.clone() }, description)
        }
    };
    SecurityScheme { name: name.to_owned(), pointer, description: description.clone(), kind }
}

fn oauth2_flows(flows: &oa::OAuth2Flows) -> Vec<OAuth2Flow> {
    let scopes = |s: &indexmap::IndexMap<String, String>| s.keys().cloned().collect();
    let mut out = Vec::new();
    if let Some(f) = &flows.implicit {
        out.push(OAuth2Flow {
            kind: OAuth2FlowKind::Implicit,
            authorization_url: Some(f.authorization_url.clone()),
            token_url: None,
            refresh_url: f.refresh_url.clone(),
            scopes: scopes(&f.scopes),
        });
    }
    if let Some(f) = &flows.password {
        out.push(OAuth2Flow {
            kind: OAuth2FlowKind::Password,
            authorization_url: None,
            token_url: Some(f.token_url.clone()),
            refresh_url: f.refresh_url.clone(),
            scopes: scopes(&f.scopes),
        });
    }
    if let Some(f) = &flows.client_credentials {
        out.push(OAuth2Flow {
            kind: OAuth2FlowKind::ClientCredentials,
            authorization_url: None,
            token_url: Some(f.token_url.clone()),
            refresh_url: f.refresh_url.clone(),
            scopes: scopes(&f.scopes),
        });
    }
    if let Some(f) = &flows.authorization_code {
        out.push(OAuth2Flow {
            kind: OAuth2FlowKind::AuthorizationCode,
            authorization_url: Some(f.authorization_url.clone()),
            token_url: Some(f.token_url.clone()),
            refresh_url: f.refresh_url.clone(),
            scopes: scopes(&f.scopes),
        });
    }
    out
}

/// HTTP schemes other than basic and bearer (digest, HOBA, …) need a
/// challenge–response exchange the generated glue does not implement.
fn require_emittable(scheme: &SecurityScheme) -> Result<()> {
    if let SchemeKind::Http { scheme: HttpScheme::Other(other), .. } = &scheme.kind {
        bail!(
            "{}/scheme: HTTP authentication scheme {other:?} is not supported (basic and bearer are)",
            scheme.pointer
        );
    }
    Ok(())
}

/// An operation's requirements (its own, else the document's): any one
/// alternative admits a request; an empty alternative (`{}`) makes the
/// credential optional.
pub fn requirements(
    doc: &oa::OpenAPI,
    op: &oa::Operation,
    pointer: &str,
    schemes: &[SecurityScheme],
) -> Result<Vec<SecurityRequirement>> {
    let declared = op.security.as_ref().or(doc.security.as_ref()).map(Vec::as_slice).unwrap_or_default();
    let requirements: Vec<SecurityRequirement> = declared
        .iter()
        .map(|r| SecurityRequirement {
            schemes: r
                .iter()
                .map(|(scheme, scopes)| SchemeUse { scheme: scheme.clone(), scopes: scopes.clone() })
                .collect(),
        })
        .collect();
    let at = if op.security.is_some() { format!("{pointer}/security") } else { "#/security".to_owned() };
    for (i, r) in requirements.iter().enumerate() {
        for u in &r.schemes {
            // Scopes are accepted for every kind of scheme: on one other than
            // oauth2 and openIdConnect they are roles (OpenAPI 3.1 §4.8.30),
            // handed to the verifier in `AuthContext::scopes` all the same.
            // 3.0 wants that list empty: see `role_scope_warnings`.
            if !schemes.iter().any(|s| s.name == u.scheme) {
                bail!("{at}/{i}: unknown security scheme {:?}", u.scheme);
            }
        }
    }
    Ok(requirements)
}

/// The warning for a 3.0 document whose requirements list scopes for a
/// scheme without them (apiKey, http), naming each, or none. OpenAPI 3.0
/// says that list must be empty; 3.1 allows it as the roles the request
/// needs, which is how the generator reads it either way. The caller knows
/// the document's version (a 3.1 document reaches the IR already rewritten
/// as 3.0.3).
pub fn role_scope_warnings(doc: &oa::OpenAPI) -> Vec<String> {
    let kinds: Vec<(&str, bool)> = doc
        .components
        .iter()
        .flat_map(|c| &c.security_schemes)
        .map(|(name, s)| {
            let oauth_like = matches!(
                s,
                oa::ReferenceOr::Item(oa::SecurityScheme::OAuth2 { .. } | oa::SecurityScheme::OpenIDConnect { .. })
            );
            (name.as_str(), oauth_like)
        })
        .collect();
    let without_scopes = |scheme: &str| kinds.iter().any(|(n, oauth_like)| *n == scheme && !oauth_like);
    let mut places: Vec<(String, &[oa::SecurityRequirement])> = Vec::new();
    if let Some(global) = &doc.security {
        places.push(("#/security".to_owned(), global));
    }
    for (path, method, op) in doc.operations() {
        if let Some(own) = &op.security {
            places.push((format!("#/paths/{}/{method}/security", pointer_segment(path)), own));
        }
    }
    let mut at_fault = Vec::new();
    for (at, requirements) in places {
        for (i, r) in requirements.iter().enumerate() {
            for (scheme, scopes) in r {
                if !scopes.is_empty() && without_scopes(scheme) {
                    at_fault.push(format!("{at}/{i}/{}", pointer_segment(scheme)));
                }
            }
        }
    }
    if at_fault.is_empty() {
        return Vec::new();
    }
    vec![format!(
        "OpenAPI 3.0 allows scopes only for oauth2 and openIdConnect schemes; these are passed to the \
         verifier as roles in AuthContext::scopes, as OpenAPI 3.1 reads them:\n  {}",
        at_fault.join("\n  ")
    )]
}
