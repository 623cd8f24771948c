//! Conditional requests (RFC 9110 §13) read from the spec: what the
//! designer writes as headers and statuses becomes behaviour the generated
//! glue enforces, so handlers supply a version and never parse validators.
//!
//! - An `If-Match` header parameter on an operation that documents 412 is
//!   typed `rt::etag::IfMatch`: a malformed value is a 400 before the
//!   handler runs, and the handler compares with `IfMatch::matches`.
//! - A GET with an `If-None-Match` header parameter, a 200 carrying a
//!   required string `ETag` and a documented bodiless 304 answers that 304
//!   when the request names the handler's ETag ([`conditional_get`]).

use openapiv3 as oa;

use super::operations::Operation;
use super::params::{ParamLocation, Parameter};
use super::responses::{ResponseHeader, StatusKey};
use super::types::RustType;

/// Types the `If-Match` parameter of an operation documenting 412 (a
/// string parameter; any other schema is left as the spec types it).
pub fn type_if_match(op: &oa::Operation, params: &mut [Parameter]) {
    let documents_412 = op.responses.responses.contains_key(&oa::StatusCode::Code(412));
    if !documents_412 {
        return;
    }
    for p in params {
        if p.location == ParamLocation::Header
            && p.name.eq_ignore_ascii_case("if-match")
            && p.field.ty == RustType::String
        {
            p.field.ty = RustType::IfMatch;
        }
    }
}

/// A GET whose spec makes it a conditional request.
#[derive(Debug, Clone)]
pub struct ConditionalGet {
    /// The params field holding `If-None-Match`.
    pub param_field: String,
    /// The 200's field holding its `ETag`.
    pub ok_etag_field: String,
    /// Whether the 304 carries the `ETag` too.
    pub not_modified_etag: bool,
}

/// The conditional GET an operation is, if it is one: an `If-None-Match`
/// header parameter, a 200 with a required string `ETag` header and a 304
/// without a body whose headers are at most that `ETag`.
pub fn conditional_get(op: &Operation) -> Option<ConditionalGet> {
    if op.method != "get" {
        return None;
    }
    let param = op
        .params
        .iter()
        .find(|p| p.location == ParamLocation::Header && p.name.eq_ignore_ascii_case("if-none-match"))?;
    let is_etag = |h: &ResponseHeader| h.name.eq_ignore_ascii_case("etag");
    let ok = op.responses.iter().find(|r| r.status == StatusKey::Code(200))?;
    let etag = ok.headers.iter().find(|h| is_etag(h)).filter(|h| h.required && h.rust_type == RustType::String)?;
    let nm = op.responses.iter().find(|r| r.status == StatusKey::Code(304))?;
    if nm.body().is_some() || nm.headers.iter().any(|h| !is_etag(h) || h.rust_type != RustType::String) {
        return None;
    }
    Some(ConditionalGet {
        param_field: param.field.rust_name.clone(),
        ok_etag_field: etag.field.clone(),
        not_modified_etag: nm.headers.iter().any(is_etag),
    })
}
