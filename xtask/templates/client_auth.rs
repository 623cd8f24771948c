//! Credentials for the generated client: the `token` header is attached by
//! a progenitor pre-hook to every secured operation, never to the
//! operations the contract leaves open (e.g. `/health`).

/// What the client authenticates with.
#[derive(Clone, Default)]
pub struct Credentials {
    token: Option<String>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print the token itself.
        f.debug_struct("Credentials").field("token", &self.token.as_ref().map(|_| "***")).finish()
    }
}

impl Credentials {
    /// Credentials carrying an operator token.
    pub fn token(token: impl Into<String>) -> Self {
        Self { token: Some(token.into()) }
    }
}

impl crate::Client {
    /// The same client, sending `token` on secured operations.
    pub fn with_token(mut self, token: impl Into<String>) -> Self {
        self.inner = Credentials::token(token);
        self
    }
}

/// Whether `path` (a request path) matches the template `template`
/// (`/users/{id}`) under the client's base path.
fn matches_template(path: &str, template: &str) -> bool {
    let t: Vec<&str> = template.trim_matches('/').split('/').collect();
    let p: Vec<&str> = path.trim_matches('/').split('/').collect();
    if p.len() < t.len() {
        return false;
    }
    // The base URL's own path segments come first.
    let tail = &p[p.len() - t.len()..];
    t.iter().zip(tail).all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

/// progenitor pre-hook: adds the `token` header to secured operations.
pub(crate) fn attach_token(credentials: &Credentials, request: &mut reqwest::Request) {
    let Some(token) = &credentials.token else { return };
    let method = request.method().as_str().to_owned();
    let path = request.url().path().to_owned();
    let open = crate::UNSECURED.iter().any(|(m, t)| *m == method && matches_template(&path, t));
    if open {
        return;
    }
    if let Ok(value) = reqwest::header::HeaderValue::from_str(token) {
        request.headers_mut().insert("token", value);
    }
}
