//! Media types: the content of a request or response body, keyed by media
//! type as OpenAPI does, each with its schema and the Rust type it decodes to.

use super::schema::Schema;
use super::types::RustType;

/// The only media type the emitters generate today.
pub const JSON: &str = "application/json";

/// One entry of a `content` map.
#[derive(Debug, Clone)]
pub struct MediaType {
    pub media_type: String,
    /// The schema as written, for the served document.
    pub schema: Schema,
    pub rust_type: RustType,
}
