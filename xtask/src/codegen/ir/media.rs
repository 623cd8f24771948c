//! Media types: the content of a request or response body, keyed by media
//! type as OpenAPI does, each with its schema and the Rust type it decodes to.

use super::schema::Schema;
use super::types::RustType;

pub const JSON: &str = "application/json";

/// Whether `media_type` is JSON: `application/json` or a `+json` type
/// (`application/problem+json`, `application/merge-patch+json`), with or
/// without parameters (`; charset=utf-8`).
pub fn is_json(media_type: &str) -> bool {
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence == JSON || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// Whether `media_type` is `application/x-www-form-urlencoded`.
pub fn is_form(media_type: &str) -> bool {
    media_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("application/x-www-form-urlencoded")
}

/// Whether `media_type` is `multipart/form-data`.
pub fn is_multipart(media_type: &str) -> bool {
    media_type.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case("multipart/form-data")
}

/// Whether `media_type` is text (`text/plain`, `text/csv`, …): its body is
/// a Rust `String`; any other non-JSON type is bytes.
pub fn is_text(media_type: &str) -> bool {
    media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase().starts_with("text/")
}

/// One entry of a `content` map.
#[derive(Debug, Clone)]
pub struct MediaType {
    pub media_type: String,
    /// The schema as written, for the served document.
    pub schema: Schema,
    pub rust_type: RustType,
}
