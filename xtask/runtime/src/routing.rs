//! Routing fallbacks: what answers when no operation does (unknown route,
//! wrong method, a panic). The bodies come from the contract's
//! [`ErrorPolicy`]; the runtime only decides which [`Fault`] happened.

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
    http::{HeaderValue, StatusCode, header},
};

use crate::{ErrorPolicy, Fault};

/// Documented methods per route template (`/users/{id}`), relative to the
/// base path; used for 405's `Allow` header.
pub type AllowTable = &'static [(&'static str, &'static str)];

fn allow_for(path: &str, base: &str, table: AllowTable) -> Option<&'static str> {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let rel = rel.trim_end_matches('/');
    let segs: Vec<&str> = rel.split('/').collect();
    table.iter().find_map(|(template, methods)| {
        let tsegs: Vec<&str> = template.trim_end_matches('/').split('/').collect();
        let matches = tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s);
        matches.then_some(*methods)
    })
}

/// The operations under `base`, the served document at
/// `{base}/openapi.json` and `{base}/openapi.yaml`, and Swagger UI at
/// `/docs`: the same layout for every generated API.
pub fn api_routes<T: poem_openapi::OpenApi + 'static>(svc: poem_openapi::OpenApiService<T, ()>, base: &str) -> Route {
    Route::new()
        .at(format!("{base}/openapi.json"), svc.spec_endpoint())
        .at(format!("{base}/openapi.yaml"), svc.spec_endpoint_yaml())
        .nest("/docs", svc.swagger_ui())
        .nest(base, svc)
}

/// Wraps the whole application: panics become the contract's 500, and
/// every error that escaped a typed response (unknown route, wrong method,
/// body read failures) becomes the answer `P` gives for its [`Fault`].
/// The policy is a type parameter, not a static, so two generated APIs can
/// be served by one process.
pub fn envelope_errors<P: ErrorPolicy, E: Endpoint + 'static>(
    ep: E,
    base: &'static str,
    allow: AllowTable,
) -> impl Endpoint<Output = Response> {
    let ep = Arc::new(ep.with(poem::middleware::CatchPanic::new().with_handler(panic_response::<P>)));
    poem::endpoint::make(move |req: Request| {
        let ep = ep.clone();
        async move {
            let path = req.uri().path().to_owned();
            match ep.call(req).await {
                Ok(resp) => Ok::<Response, poem::Error>(resp.into_response()),
                Err(err) => Ok(error_to_envelope::<P>(err, &path, base, allow)),
            }
        }
    })
}

/// The panic payload is reported by the panic hook (and so the logs); the
/// client only learns that something failed.
fn panic_response<P: ErrorPolicy>(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    P::fault_response(Fault::Internal, None)
}

/// Which fault a routing or framework error is; the status the client sees
/// is the policy's (the contract may answer a 413 as a documented 400).
fn error_to_envelope<P: ErrorPolicy>(err: poem::Error, path: &str, base: &str, allow: AllowTable) -> Response {
    match err.status() {
        StatusCode::NOT_FOUND => P::fault_response(Fault::RouteNotFound, None),
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut resp = P::fault_response(Fault::MethodNotAllowed, None);
            if let Some(methods) = allow_for(path, base, allow) {
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(methods));
            }
            resp
        }
        StatusCode::UNAUTHORIZED => P::fault_response(Fault::MissingToken, None),
        StatusCode::PAYLOAD_TOO_LARGE => P::fault_response(Fault::PayloadTooLarge, None),
        s if s.is_client_error() => P::fault_response(
            Fault::ValidationFailed,
            Some(serde_json::json!({ "errors": [{ "field": "", "message": err.to_string() }] })),
        ),
        _ => P::fault_response(Fault::Internal, None),
    }
}
