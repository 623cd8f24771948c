//! Security: the raw credential of each scheme, read from where the scheme
//! says (a header, the query, a cookie, `Authorization`), and the context
//! the application's scheme handler sees. Verification is the
//! application's; which requirement admits a request is decided in the
//! generated operation.

use std::marker::PhantomData;

use poem::{Request, RequestBody};
use poem_openapi::registry::MetaParamIn;

use crate::params::raw_values;
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaSecurityScheme, Registry},
};

/// Where a scheme's credential travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialIn {
    /// An API key in the header of that name.
    Header(&'static str),
    /// An API key in the query parameter of that name.
    Query(&'static str),
    /// An API key in the cookie of that name.
    Cookie(&'static str),
    /// `Authorization: Bearer <token>` (http bearer, oauth2, openIdConnect).
    Bearer,
    /// `Authorization: Basic <base64(user:password)>`.
    Basic,
}

/// One security scheme of a spec, as its generated type describes it.
pub trait SchemeSpec: Send + Sync + 'static {
    /// Its key in `components/securitySchemes`.
    const NAME: &'static str;
    const IN: CredentialIn;
    /// The scheme for the served document.
    fn meta() -> MetaSecurityScheme;
}

/// A user name and password sent with HTTP basic authentication.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicCredentials").field("username", &self.username).field("password", &"***").finish()
    }
}

/// What the request carried for one scheme.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// Nothing, or an empty value: the scheme does not apply.
    Absent,
    /// A key or token.
    Token(String),
    Basic(BasicCredentials),
    /// Sent but unreadable (a `Basic` value that is not base64 of
    /// `user:password`); the request is refused as unauthenticated.
    Malformed(&'static str),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credential::Absent => f.write_str("Absent"),
            Credential::Token(_) => f.write_str("Token(***)"),
            Credential::Basic(b) => b.fmt(f),
            Credential::Malformed(why) => write!(f, "Malformed({why})"),
        }
    }
}

impl Credential {
    pub fn is_present(&self) -> bool {
        !matches!(self, Credential::Absent)
    }
}

/// What a scheme handler is told besides the credential: which operation
/// and which scopes the admitting requirement asks of this scheme (empty
/// for schemes without scopes). Answering 403 for a missing scope is the
/// handler's decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthContext {
    pub operation_id: &'static str,
    pub scopes: &'static [&'static str],
}

/// The extractor of scheme `S`'s credential; it never fails, so the
/// operation can weigh alternatives.
pub struct SchemeCredential<S>(pub Credential, PhantomData<S>);

impl<'a, S: SchemeSpec> ApiExtractor<'a> for SchemeCredential<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(S::NAME, S::meta());
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![S::NAME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(Self(read(request, S::IN), PhantomData))
    }
}

fn token(value: Option<&str>) -> Credential {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Credential::Token(v.to_owned()),
        _ => Credential::Absent,
    }
}

/// `Authorization`'s credentials after `scheme` (case-insensitive, RFC 9110).
fn authorization<'r>(request: &'r Request, scheme: &str) -> Option<&'r str> {
    let value = request.header(poem::http::header::AUTHORIZATION)?.trim_start();
    let (name, rest) = value.split_once(' ')?;
    name.eq_ignore_ascii_case(scheme).then(|| rest.trim())
}

fn read(request: &Request, at: CredentialIn) -> Credential {
    match at {
        CredentialIn::Header(name) => token(raw_values(MetaParamIn::Header, request, name).first().map(String::as_str)),
        CredentialIn::Query(name) => token(raw_values(MetaParamIn::Query, request, name).first().map(String::as_str)),
        CredentialIn::Cookie(name) => token(raw_values(MetaParamIn::Cookie, request, name).first().map(String::as_str)),
        CredentialIn::Bearer => token(authorization(request, "Bearer")),
        CredentialIn::Basic => match authorization(request, "Basic") {
            None => Credential::Absent,
            Some(encoded) => basic(encoded),
        },
    }
}

fn basic(encoded: &str) -> Credential {
    use base64::Engine as _;
    let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(encoded) else {
        return Credential::Malformed("the Basic credentials are not base64");
    };
    let Ok(text) = String::from_utf8(bytes) else {
        return Credential::Malformed("the Basic credentials are not UTF-8");
    };
    match text.split_once(':') {
        Some((user, password)) => {
            Credential::Basic(BasicCredentials { username: user.to_owned(), password: password.to_owned() })
        }
        None => Credential::Malformed("the Basic credentials have no ':'"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(header: (&str, &str), uri: &str) -> Request {
        Request::builder().uri(uri.parse().expect("uri")).header(header.0, header.1).finish()
    }

    #[test]
    fn credentials_are_read_where_the_scheme_says() {
        let r = req(("X-Key", " k1 "), "/x?api_key=q%201&other=2");
        assert_eq!(read(&r, CredentialIn::Header("x-key")), Credential::Token("k1".into()));
        assert_eq!(read(&r, CredentialIn::Query("api_key")), Credential::Token("q 1".into()));
        assert_eq!(read(&r, CredentialIn::Query("missing")), Credential::Absent);
        let r = req(("Cookie", "a=1; session=s3; b=2"), "/");
        assert_eq!(read(&r, CredentialIn::Cookie("session")), Credential::Token("s3".into()));
        let r = req(("Authorization", "bearer tok"), "/");
        assert_eq!(read(&r, CredentialIn::Bearer), Credential::Token("tok".into()));
        assert_eq!(read(&r, CredentialIn::Basic), Credential::Absent);
        let r = req(("Authorization", "Basic dXNlcjpwOnc="), "/");
        let Credential::Basic(b) = read(&r, CredentialIn::Basic) else { panic!("basic") };
        assert_eq!((b.username.as_str(), b.password.as_str()), ("user", "p:w"));
        let r = req(("Authorization", "Basic !!"), "/");
        assert!(matches!(read(&r, CredentialIn::Basic), Credential::Malformed(_)));
        let r = req(("X-Key", "   "), "/");
        assert_eq!(read(&r, CredentialIn::Header("x-key")), Credential::Absent);
    }
}
