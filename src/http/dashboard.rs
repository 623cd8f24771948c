//! The queue dashboard at `/admin`: a static page, its script and its stylesheet, embedded in
//! the binary (it works without internet access) and served outside the API base path, as
//! Swagger UI is at `/docs`. It is not an API operation: the page holds no data and needs no
//! token; its script asks for an `admin` token and calls the admin operations of the contract.

use poem::{IntoResponse, Request, Response, http::Method, http::StatusCode};

const INDEX: &str = include_str!("dashboard/index.html");
const SCRIPT: &str = include_str!("dashboard/admin.js");
const STYLE: &str = include_str!("dashboard/admin.css");

/// Only this origin's files run: no inline script, no third-party host, no framing.
const CSP: &str =
    "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The asset at `path`, if it is one of the dashboard's.
fn asset(path: &str) -> Option<(&'static str, &'static str)> {
    match path {
        "/admin" | "/admin/" | "/admin/index.html" => Some((INDEX, "text/html; charset=utf-8")),
        "/admin/admin.js" => Some((SCRIPT, "text/javascript; charset=utf-8")),
        "/admin/admin.css" => Some((STYLE, "text/css; charset=utf-8")),
        _ => None,
    }
}

/// The answer to a `GET`/`HEAD` of a dashboard asset; `None` for everything else, which goes
/// on to the API (whose fallback answers unknown paths in the contract's envelope). A plain
/// function rather than a middleware layer of its own: every API request passes here, and a
/// layer costs each of them a future moved through it.
pub fn answer(req: &Request) -> Option<Response> {
    let is_read = req.method() == Method::GET || req.method() == Method::HEAD;
    let (body, content_type) = asset(req.uri().path()).filter(|_| is_read)?;
    let body = if req.method() == Method::HEAD { "" } else { body };
    Some(
        body.with_status(StatusCode::OK)
            .with_content_type(content_type)
            .with_header("content-security-policy", CSP)
            .with_header("x-content-type-options", "nosniff")
            .with_header("cache-control", "no-cache")
            .into_response(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_its_own_assets() {
        for needle in ["/admin/admin.js", "/admin/admin.css"] {
            assert!(INDEX.contains(needle), "{needle}");
            assert!(asset(needle).is_some());
        }
        // Nothing from another host: the page must work offline.
        for text in [INDEX, SCRIPT, STYLE] {
            let urls = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!urls.contains("http://") && !urls.contains("https://"), "no external URL");
        }
        assert!(asset("/admin/other").is_none());
    }
}
