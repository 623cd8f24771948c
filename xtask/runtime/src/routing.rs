//! Routing fallbacks: what answers when no operation does (unknown route,
//! wrong method, a panic). The bodies come from the generated crate's
//! [`Fallback`]; the runtime only decides which [`Fault`] happened.

use std::sync::Arc;

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, Response, Route,
    http::{HeaderValue, StatusCode, header},
};

use crate::{Fallback, Fault};

/// Documented methods per route template (`/users/{id}`), relative to the
/// base path; used for 405's `Allow` header.
pub type AllowTable = &'static [(&'static str, &'static str)];

/// Every operation as `(method, path template, operationId)`, relative to
/// the base path; the generated crate's `OPERATIONS`.
pub type OperationTable = &'static [(&'static str, &'static str, &'static str)];

/// The index in `table` of the operation `method` and `path` reach, if
/// any; of several templates that match, the one with the fewest
/// parameters, as the router prefers literal segments (`/users/batch-get`
/// over `/users/{id}`). No allocation: it runs once per request (metrics),
/// so segments are compared in lockstep rather than collected.
pub fn operation_for(table: OperationTable, base: &str, method: &str, path: &str) -> Option<usize> {
    let rel = path.strip_prefix(base)?.trim_end_matches('/');
    let mut best: Option<(usize, usize)> = None;
    for (i, (m, template, _)) in table.iter().enumerate() {
        if !m.eq_ignore_ascii_case(method) {
            continue;
        }
        if let Some(params) = template_params(template, rel)
            && best.is_none_or(|(_, fewest)| params < fewest)
        {
            best = Some((i, params));
        }
    }
    best.map(|(i, _)| i)
}

/// How many parameters `template` binds if it matches `rel`.
fn template_params(template: &str, rel: &str) -> Option<usize> {
    let mut segs = rel.split('/');
    let mut tsegs = template.trim_end_matches('/').split('/');
    let mut params = 0;
    loop {
        match (tsegs.next(), segs.next()) {
            (None, None) => return Some(params),
            (Some(t), Some(s)) if t.starts_with('{') && t.ends_with('}') && !s.is_empty() => params += 1,
            (Some(t), Some(s)) if t == s => {}
            _ => return None,
        }
    }
}

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

/// What the served document must say that poem-openapi cannot express:
/// (JSON pointer into the document, the value as JSON; `null` removes).
/// poem-openapi lists one security alternative per scheme and no AND,
/// reads a lone description as the summary, and has no
/// `additionalProperties: false`.
pub type DocPatches = &'static [(&'static str, &'static str)];

/// The operations under `base`, the served document at
/// `{base}/openapi.json` and `{base}/openapi.yaml`, and Swagger UI at
/// `/docs`: the same layout for every generated API.
pub fn api_routes<T: poem_openapi::OpenApi + 'static>(
    svc: poem_openapi::OpenApiService<T, ()>,
    base: &str,
    patches: DocPatches,
) -> Route {
    let doc = served_document(&svc.spec(), patches);
    let yaml = serde_yaml_like(&doc);
    let json = serde_json::to_vec_pretty(&doc).unwrap_or_default();
    Route::new()
        .at(format!("{base}/openapi.json"), static_body(json, "application/json"))
        .at(format!("{base}/openapi.yaml"), static_body(yaml, "application/x-yaml"))
        .nest("/docs", svc.swagger_ui())
        .nest(base, svc)
}

/// poem-openapi's document (`spec`) with `patches` applied: the document
/// `{base}/openapi.json` serves, built once at start-up. A patch whose
/// parent is not in the document is skipped.
pub fn served_document(spec: &str, patches: DocPatches) -> serde_json::Value {
    let mut doc: serde_json::Value = serde_json::from_str(spec).unwrap_or_default();
    for (pointer, value) in patches {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(value) else { continue };
        let Some((parent, key)) = pointer.rsplit_once('/') else { continue };
        let key = key.replace("~1", "/").replace("~0", "~");
        if let Some(serde_json::Value::Object(parent)) = doc.pointer_mut(parent) {
            if value.is_null() {
                parent.remove(&key);
            } else {
                parent.insert(key, value);
            }
        }
    }
    doc
}

fn serde_yaml_like(doc: &serde_json::Value) -> Vec<u8> {
    serde_yaml::to_string(doc).unwrap_or_default().into_bytes()
}

fn static_body(body: Vec<u8>, content_type: &'static str) -> impl Endpoint<Output = Response> {
    // One shared buffer: each answer clones a reference, not the document.
    let body = bytes::Bytes::from(body);
    poem::endpoint::make_sync(move |_| {
        Response::builder().content_type(content_type).body(poem::Body::from_bytes(body.clone()))
    })
}

/// Wraps the whole application: panics become the contract's 500, and
/// every error that escaped a typed response (unknown route, wrong method,
/// body read failures) becomes the answer `P` gives for its [`Fault`].
/// The policy is a type parameter, not a static, so two generated APIs can
/// be served by one process.
pub fn envelope_errors<P: Fallback, E: Endpoint + 'static>(
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
fn panic_response<P: Fallback>(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    P::respond(P::problem(Fault::Internal))
}

/// Which fault a routing or framework error is; the status the client sees
/// is the policy's (the contract may answer a 413 as a documented 400).
fn error_to_envelope<P: Fallback>(err: poem::Error, path: &str, base: &str, allow: AllowTable) -> Response {
    let answer = |fault: Fault| P::respond(P::problem(fault));
    match err.status() {
        StatusCode::NOT_FOUND => answer(Fault::RouteNotFound),
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut resp = answer(Fault::MethodNotAllowed);
            if let Some(methods) = allow_for(path, base, allow) {
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(methods));
            }
            resp
        }
        StatusCode::UNAUTHORIZED => answer(Fault::MissingCredential),
        StatusCode::PAYLOAD_TOO_LARGE => answer(Fault::PayloadTooLarge),
        s if s.is_client_error() => {
            let data = serde_json::json!({ "errors": [{ "field": "", "message": err.to_string() }] });
            P::respond(P::problem(Fault::ValidationFailed).with_data(data))
        }
        _ => answer(Fault::Internal),
    }
}

#[cfg(test)]
mod operation_tests {
    use super::operation_for;

    const T: super::OperationTable = &[
        ("GET", "/users", "listUsers"),
        ("GET", "/users/{id}", "getUser"),
        ("DELETE", "/users/{id}", "deleteUser"),
        ("GET", "/users/me", "me"),
    ];

    #[test]
    fn operations_are_found_by_method_and_template() {
        assert_eq!(operation_for(T, "/api", "GET", "/api/users"), Some(0));
        assert_eq!(operation_for(T, "/api", "GET", "/api/users/"), Some(0));
        assert_eq!(operation_for(T, "/api", "GET", "/api/users/7"), Some(1));
        assert_eq!(operation_for(T, "/api", "DELETE", "/api/users/7"), Some(2));
        assert_eq!(operation_for(T, "/api", "POST", "/api/users/7"), None);
        assert_eq!(operation_for(T, "/api", "GET", "/api/users/7/x"), None);
        assert_eq!(operation_for(T, "/api", "GET", "/api/users//"), Some(0));
        assert_eq!(operation_for(T, "/api", "GET", "/other/users"), None);
        // A literal segment wins over a parameter, wherever the table lists it.
        assert_eq!(operation_for(T, "/api", "GET", "/api/users/me"), Some(3));
    }
}
