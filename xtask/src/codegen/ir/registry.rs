//! The error-code registry (`x-error-codes`): every code the service answers
//! with, including those the generated framework itself needs.

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
}

/// Error codes the generated framework itself answers with; the spec's
/// registry must define each of them.
pub const FRAMEWORK_CODES: &[&str] = &[
    "ValidationFailed",
    "MissingToken",
    "MalformedBody",
    "UnsupportedMediaType",
    "PayloadTooLarge",
    "RouteNotFound",
    "MethodNotAllowed",
    "Internal",
];

pub fn error_codes(doc: &oa::OpenAPI) -> Result<Vec<ErrorCodeDef>> {
    let pointer = "#/x-error-codes";
    let list = doc.extensions.get("x-error-codes").with_context(|| {
        format!("{pointer}: the error-code registry is missing (a list of {{name, code, status, message}})")
    })?;
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
        out.push(ErrorCodeDef { name: type_name(&name), code, status, message, description: s("description") });
    }
    for needed in FRAMEWORK_CODES {
        if !out.iter().any(|c| c.name == *needed) {
            bail!("{pointer}: the registry must define `{needed}` (the generated framework answers with it)");
        }
    }
    Ok(out)
}
