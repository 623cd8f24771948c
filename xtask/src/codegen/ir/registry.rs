//! The error-code registry (`x-error-codes`, optional): every code the
//! service answers with, its status and message. An entry named like a
//! framework fault (`ValidationFailed`, …), or naming one with `fault:`,
//! decides that fault's status and code; faults without an entry keep
//! HTTP's status.

use anyhow::{Context, Result, bail};
use openapiv3 as oa;
use serde_json::Value;

use super::names::type_name;

/// One entry of the registry.
#[derive(Debug, Clone)]
pub struct ErrorCodeDef {
    pub name: String,
    pub code: i64,
    pub status: u16,
    pub message: String,
    pub description: Option<String>,
    /// The framework fault this entry answers, if any.
    pub fault: Option<&'static str>,
}

/// The framework's faults, by the name an entry gives them (the runtime's
/// `Fault` variants).
pub const FAULTS: &[&str] = &[
    "ValidationFailed",
    "MalformedBody",
    "UnsupportedMediaType",
    "PayloadTooLarge",
    "MissingCredential",
    "RouteNotFound",
    "MethodNotAllowed",
    "NotAcceptable",
    "Internal",
];

/// Faults raised only by an operation that documents their status, never
/// outside one: no fallback answer is generated for them.
pub const OPERATION_ONLY_FAULTS: &[&str] = &["NotAcceptable"];

pub fn error_codes(doc: &oa::OpenAPI) -> Result<Vec<ErrorCodeDef>> {
    let pointer = "#/x-error-codes";
    let Some(list) = doc.extensions.get("x-error-codes") else { return Ok(Vec::new()) };
    let list = list.as_array().with_context(|| format!("{pointer}: must be a list"))?;
    let mut out: Vec<ErrorCodeDef> = Vec::new();
    for (i, e) in list.iter().enumerate() {
        let p = format!("{pointer}/{i}");
        let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
        let name = s("name").with_context(|| format!("{p}: `name` (a Rust variant name) is required"))?;
        let code = e.get("code").and_then(Value::as_i64).with_context(|| format!("{p}: integer `code` is required"))?;
        let status = e
            .get("status")
            .and_then(Value::as_u64)
            .and_then(|s| u16::try_from(s).ok())
            .filter(|s| (100..600).contains(s))
            .with_context(|| format!("{p}: `status` must be an HTTP status"))?;
        let message = s("message").with_context(|| format!("{p}: `message` is required"))?;
        if out.iter().any(|o| o.code == code || o.name == name) {
            bail!("{p}: duplicate code {code} or name {name}");
        }
        let fault =
            match s("fault") {
                Some(f) => {
                    Some(FAULTS.iter().copied().find(|known| *known == f).with_context(|| {
                        format!("{p}/fault: {f:?} is not a framework fault ({})", FAULTS.join(", "))
                    })?)
                }
                None => FAULTS.iter().copied().find(|known| *known == name),
            };
        if let Some(f) = fault
            && let Some(other) = out.iter().find(|o| o.fault == Some(f))
        {
            bail!("{p}: fault {f} is already answered by {}", other.name);
        }
        out.push(ErrorCodeDef { name: type_name(&name), code, status, message, description: s("description"), fault });
    }
    Ok(out)
}
