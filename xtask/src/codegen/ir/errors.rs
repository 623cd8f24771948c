//! The error model: which status the framework answers each of its own
//! failures with (the registry's, else HTTP's), which documented response
//! of an operation carries it, which error body types the application's
//! error policy must build, and the operation/status pairs the spec leaves
//! undocumented (answered as `application/problem+json`, warned about, and
//! refused with `--strict`).

use std::collections::BTreeSet;

use super::Api;
use super::operations::Operation;
use super::registry::{ErrorCodeDef, FAULTS, OPERATION_ONLY_FAULTS};
use super::responses::{Response, documented_for};
use super::types::RustType;

/// The status the framework answers `fault` with: the registry's, else
/// the runtime's `Fault::status` (a test keeps this table equal to it).
pub fn fault_status(codes: &[ErrorCodeDef], fault: &str) -> u16 {
    if let Some(c) = codes.iter().find(|c| c.fault == Some(fault)) {
        return c.status;
    }
    match fault {
        "ValidationFailed" | "MalformedBody" => 400,
        "UnsupportedMediaType" => 415,
        "PayloadTooLarge" => 413,
        "MissingCredential" => 401,
        "RouteNotFound" => 404,
        "MethodNotAllowed" => 405,
        "NotAcceptable" => 406,
        _ => 500,
    }
}

/// The faults the glue of `op` may answer by itself.
pub fn operation_faults(op: &Operation) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !op.params.is_empty() || op.request_body.is_some() {
        out.push("ValidationFailed");
    }
    if op.request_body.is_some() {
        out.extend(["MalformedBody", "UnsupportedMediaType", "PayloadTooLarge"]);
    }
    if op.is_secured() {
        out.push("MissingCredential");
    }
    out
}

/// A status the framework may send for an operation that documents no
/// response for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Undocumented {
    pub operation: String,
    pub pointer: String,
    pub status: u16,
    pub fault: &'static str,
}

impl std::fmt::Display for Undocumented {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/responses: {} may answer {} ({}) but documents no response for it",
            self.pointer, self.operation, self.status, self.fault
        )
    }
}

/// Every (operation, status) the framework may answer without a documented
/// response; each is answered as `application/problem+json`.
pub fn undocumented(api: &Api) -> Vec<Undocumented> {
    let mut out = Vec::new();
    // A raw handler answers for itself (a refused credential is
    // problem+json, as its documentation in the crate says).
    for op in api.operations.iter().filter(|o| o.raw.is_none()) {
        for fault in operation_faults(op) {
            let status = fault_status(&api.error_codes, fault);
            if documented_for(&op.responses, status).is_none()
                && !out.iter().any(|u: &Undocumented| u.operation == op.id && u.status == status)
            {
                out.push(Undocumented { operation: op.id.clone(), pointer: op.pointer.clone(), status, fault });
            }
        }
    }
    out
}

/// The named body types of every error response: the application's error
/// policy builds each from a `Problem`. Responses whose body is not a named
/// type (a bare string, an array) are built by handlers only.
pub fn error_body_types(api: &Api) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for r in api.operations.iter().flat_map(|o| &o.responses).filter(|r| r.is_error()) {
        if let Some(name) = named_body(r)
            && !out.iter().any(|n| n == name)
        {
            out.push(name.to_owned());
        }
    }
    out
}

pub fn named_body(r: &Response) -> Option<&str> {
    match r.body().map(|m| &m.rust_type) {
        Some(RustType::Named(n)) => Some(n),
        _ => None,
    }
}

/// The body type of the answers no operation gives (unknown route, wrong
/// method, panic): the error type the spec uses most across its
/// operations for `status` (first in document order on a tie), else the
/// one it uses most for any failure; `None` means problem+json.
pub fn fallback_body(api: &Api, status: u16) -> Option<String> {
    let most_used = |pick: &dyn Fn(&Operation) -> Option<String>| {
        let mut counts: Vec<(String, usize)> = Vec::new();
        for name in api.operations.iter().filter_map(pick) {
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        // `max_by_key` keeps the last of equals; document order wants the first.
        counts.iter().rev().max_by_key(|(_, c)| *c).map(|(n, _)| n.clone())
    };
    most_used(&|op| documented_for(&op.responses, status).and_then(named_body).map(str::to_owned)).or_else(|| {
        most_used(&|op| op.responses.iter().filter(|r| r.is_error()).find_map(named_body).map(str::to_owned))
    })
}

/// The statuses the framework answers outside any operation, with the
/// fault each stands for.
pub fn global_faults(api: &Api) -> Vec<(&'static str, u16)> {
    let mut seen = BTreeSet::new();
    FAULTS
        .iter()
        .filter(|f| !OPERATION_ONLY_FAULTS.contains(f))
        .map(|f| (*f, fault_status(&api.error_codes, f)))
        .filter(|(_, s)| seen.insert(*s))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_without_an_entry_keep_http_statuses() {
        assert_eq!(fault_status(&[], "PayloadTooLarge"), 413);
        let entry = ErrorCodeDef {
            name: "TooBig".into(),
            code: 7,
            status: 400,
            message: "too big".into(),
            description: None,
            fault: Some("PayloadTooLarge"),
        };
        assert_eq!(fault_status(&[entry], "PayloadTooLarge"), 400);
    }
}
