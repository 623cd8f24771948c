//! Responses: keyed as OpenAPI keys them (a status, a range such as `4XX`,
//! or `default`), each with its headers and its content by media type. The
//! emitters generate one enum variant per response (a range or `default`
//! variant carries its status); a response in several media types carries
//! an enum of them ([`Negotiated`]), chosen by the request's `Accept`.

use anyhow::{Context, Result, bail};
use openapiv3 as oa;

use super::media::{MediaType, is_json, is_text};
use super::names::{field_name, pointer_segment, type_name};
use super::schema::Schema;
use super::types::{RustType, TypeBuilder};

/// What a response is keyed by. Derived order sorts exact statuses first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum StatusKey {
    Code(u16),
    /// `1XX` … `5XX`, by its first digit.
    Range(u8),
    Default,
}

/// As the spec writes it (`200`, `4XX`, `default`); also part of the names
/// of inline body types.
impl std::fmt::Display for StatusKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Code(c) => write!(f, "{c}"),
            Self::Range(r) => write!(f, "{r}XX"),
            Self::Default => f.write_str("default"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusKey,
    pub pointer: String,
    pub description: String,
    pub headers: Vec<ResponseHeader>,
    /// Empty for a response without a body.
    pub content: Vec<MediaType>,
    /// Set when `content` has several media types.
    pub negotiated: Option<Negotiated>,
    /// `links` as the spec writes them (references to `components/links`
    /// inlined): the served document carries them for tools that follow
    /// them; nothing is generated from them.
    pub links: Option<serde_json::Value>,
}

/// A response in several media types: its body is the enum `type_name`,
/// one variant per media type (`variants[i]` carries `content[i]`).
#[derive(Debug, Clone)]
pub struct Negotiated {
    pub type_name: String,
    pub variants: Vec<String>,
}

/// The Rust variant naming a media type: `application/json` →
/// `ApplicationJson`, `application/vnd.api+json` → `ApplicationVndApiJson`.
pub fn media_variant(media_type: &str) -> String {
    use heck::ToUpperCamelCase;
    let essence = media_type.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    essence.replace(['/', '+', '.', '-'], " ").to_upper_camel_case()
}

impl Response {
    /// The first content entry, if any: the body of a response in one media
    /// type, the first (the server's preferred) of a negotiated one.
    pub fn body(&self) -> Option<&MediaType> {
        self.content.first()
    }

    /// Whether this response is the one documented for `status`, given
    /// that exact statuses win over ranges and ranges over `default`.
    pub fn covers(&self, status: u16) -> bool {
        match self.status {
            StatusKey::Code(c) => c == status,
            StatusKey::Range(r) => u16::from(r) == status / 100,
            StatusKey::Default => true,
        }
    }

    /// Documents a failure (4xx, 5xx, `4XX`, `5XX` or `default`).
    pub fn is_error(&self) -> bool {
        match self.status {
            StatusKey::Code(c) => c >= 400,
            StatusKey::Range(r) => r >= 4,
            StatusKey::Default => true,
        }
    }
}

/// The response documented for `status` among `responses` (sorted by
/// [`StatusKey`], so the first match is the most specific).
pub fn documented_for(responses: &[Response], status: u16) -> Option<&Response> {
    responses.iter().find(|r| r.covers(status))
}

/// A response header the handler sets: a scalar (or a list of scalars,
/// sent comma-separated), required or not, as its schema says.
#[derive(Debug, Clone)]
pub struct ResponseHeader {
    pub name: String,
    pub pointer: String,
    pub description: Option<String>,
    pub required: bool,
    pub deprecated: bool,
    pub schema: Schema,
    pub rust_type: RustType,
    /// The Rust field of the response variant that carries it.
    pub field: String,
    /// Declared with `content` instead of `schema`: sent as compact JSON
    /// when the media type is JSON.
    pub content: Option<super::params::ParamContent>,
}

/// The responses of one operation, sorted by status. Each is checked before
/// the next is converted, so the first unsupported one is the one reported.
pub fn responses(
    b: &mut TypeBuilder<'_>,
    doc: &oa::OpenAPI,
    op: &oa::Operation,
    pointer: &str,
    op_type: &str,
) -> Result<Vec<Response>> {
    let mut keyed: Vec<(StatusKey, String, &oa::ReferenceOr<oa::Response>)> = Vec::new();
    if let Some(d) = &op.responses.default {
        keyed.push((StatusKey::Default, format!("{pointer}/responses/default"), d));
    }
    for (status, resp) in &op.responses.responses {
        let key = match status {
            oa::StatusCode::Code(c) => StatusKey::Code(*c),
            oa::StatusCode::Range(r) => match u8::try_from(*r) {
                Ok(r @ 1..=5) => StatusKey::Range(r),
                _ => bail!("{pointer}/responses/{status}: not an HTTP status range"),
            },
        };
        keyed.push((key, format!("{pointer}/responses/{status}"), resp));
    }
    let mut out = Vec::new();
    for (status, rp, resp) in keyed {
        let resp = dereference(doc, resp, &rp)?;
        let headers = headers(b, doc, resp, &rp, &format!("{op_type}{status}"))?;
        let content = content(b, resp, &rp, status, op_type)?;
        let negotiated = negotiated(b, &content, &rp, status, op_type)?;
        let links = links(doc, resp, &rp)?;
        out.push(Response {
            status,
            pointer: rp,
            description: resp.description.clone(),
            headers,
            content,
            negotiated,
            links,
        });
    }
    out.sort_by_key(|r| r.status);
    Ok(out)
}

/// OpenAPI: a header named `Content-Type` is ignored (the media type says
/// it). Field names avoid the variant's own `status` and `body`.
fn headers(
    b: &mut TypeBuilder<'_>,
    doc: &oa::OpenAPI,
    resp: &oa::Response,
    rp: &str,
    hint: &str,
) -> Result<Vec<ResponseHeader>> {
    let mut out: Vec<ResponseHeader> = Vec::new();
    for (name, h) in &resp.headers {
        if name.eq_ignore_ascii_case("content-type") {
            continue;
        }
        let hp = format!("{rp}/headers/{}", pointer_segment(name));
        // RFC 9110 token characters.
        if name.is_empty() || !name.bytes().all(|c| c.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&c)) {
            bail!("{hp}: {name:?} is not a valid HTTP header name");
        }
        let h = match h {
            oa::ReferenceOr::Item(h) => h,
            oa::ReferenceOr::Reference { reference } => {
                let key = reference
                    .strip_prefix("#/components/headers/")
                    .with_context(|| format!("{hp}: unsupported $ref {reference}"))?;
                match doc.components.as_ref().and_then(|c| c.headers.get(key)) {
                    Some(oa::ReferenceOr::Item(h)) => h,
                    _ => bail!("{hp}: {reference} not found"),
                }
            }
        };
        let (schema, content) = match &h.format {
            oa::ParameterSchemaOrContent::Schema(s) => (b.resolver.convert(s, &format!("{hp}/schema"))?, None),
            oa::ParameterSchemaOrContent::Content(c) => {
                let (schema, content) = super::params::content_schema(b, c, &format!("{hp}/content"))?;
                (schema, Some(content))
            }
        };
        let rust_type = b.rust_type(&schema, &format!("{hint}{}Header", type_name(name)), None)?;
        let scalar = |t: &RustType| {
            matches!(
                t,
                RustType::String
                    | RustType::I32
                    | RustType::I64
                    | RustType::F32
                    | RustType::F64
                    | RustType::Bool
                    | RustType::Uuid
                    | RustType::Date
                    | RustType::DateTime
            )
        };
        let ok = match &rust_type {
            RustType::Vec(item) => scalar(item),
            t => scalar(t),
        };
        // A JSON document may hold any value.
        if !ok && !content.as_ref().is_some_and(|c| c.json) {
            bail!("{hp}/schema: response headers must be scalars or arrays of scalars");
        }
        // Header names are case-insensitive: `ETag` is the field `etag`.
        let mut field = field_name(&name.to_ascii_lowercase());
        while field == "status" || field == "body" || out.iter().any(|o| o.field == field) {
            field.push('_');
        }
        out.push(ResponseHeader {
            name: name.clone(),
            pointer: hp,
            description: h.description.clone(),
            required: h.required,
            deprecated: h.deprecated.unwrap_or(false),
            schema,
            rust_type,
            field,
            content,
        });
    }
    Ok(out)
}

fn dereference<'d>(
    doc: &'d oa::OpenAPI,
    resp: &'d oa::ReferenceOr<oa::Response>,
    pointer: &str,
) -> Result<&'d oa::Response> {
    match resp {
        oa::ReferenceOr::Item(r) => Ok(r),
        oa::ReferenceOr::Reference { reference } => {
            let name = reference
                .strip_prefix("#/components/responses/")
                .with_context(|| format!("{pointer}: unsupported $ref {reference}"))?;
            match doc.components.as_ref().and_then(|c| c.responses.get(name)) {
                Some(oa::ReferenceOr::Item(r)) => Ok(r),
                _ => bail!("{pointer}: {reference} not found"),
            }
        }
    }
}

fn links(doc: &oa::OpenAPI, resp: &oa::Response, pointer: &str) -> Result<Option<serde_json::Value>> {
    if resp.links.is_empty() {
        return Ok(None);
    }
    let mut out = serde_json::Map::new();
    for (name, link) in &resp.links {
        let link = match link {
            oa::ReferenceOr::Item(l) => l,
            oa::ReferenceOr::Reference { reference } => {
                let target = reference
                    .strip_prefix("#/components/links/")
                    .and_then(|n| doc.components.as_ref().and_then(|c| c.links.get(n)).and_then(|l| l.as_item()));
                target.with_context(|| format!("{pointer}/links/{}: {reference} not found", pointer_segment(name)))?
            }
        };
        out.insert(name.clone(), serde_json::to_value(link).with_context(|| format!("{pointer}/links"))?);
    }
    Ok(Some(serde_json::Value::Object(out)))
}

/// The body enum of a response in several media types. Each must be a
/// media type, not a range (`text/*` names no type to label the body
/// with), and their variant names must differ.
fn negotiated(
    b: &mut TypeBuilder<'_>,
    content: &[MediaType],
    pointer: &str,
    status: StatusKey,
    op_type: &str,
) -> Result<Option<Negotiated>> {
    if content.len() < 2 {
        return Ok(None);
    }
    let mut variants: Vec<String> = Vec::new();
    for m in content {
        let mp = format!("{pointer}/content/{}", pointer_segment(&m.media_type));
        if m.media_type.contains('*') {
            bail!("{mp}: a media range cannot label one of several bodies; name the media type");
        }
        let v = media_variant(&m.media_type);
        if variants.contains(&v) {
            bail!("{mp}: its Rust variant {v} is also another media type's; the two cannot be told apart");
        }
        variants.push(v);
    }
    let type_name = b.unique_name(format!("{op_type}{status}Content"));
    b.reserved.push(type_name.clone());
    Ok(Some(Negotiated { type_name, variants }))
}

fn content(
    b: &mut TypeBuilder<'_>,
    resp: &oa::Response,
    pointer: &str,
    status: StatusKey,
    op_type: &str,
) -> Result<Vec<MediaType>> {
    let mut out = Vec::new();
    for (mt, media) in &resp.content {
        let mp = format!("{pointer}/content/{}", pointer_segment(mt));
        if !is_json(mt) {
            // Text and bytes: the schema, if any, must say string.
            let schema = match &media.schema {
                Some(s) => b.resolver.convert(s, &format!("{mp}/schema"))?,
                None => Schema::Inline(Box::new(super::schema::SchemaNode {
                    pointer: mp.clone(),
                    ty: Some(super::schema::JsonType::String),
                    format: (!is_text(mt)).then(|| "binary".to_owned()),
                    ..Default::default()
                })),
            };
            if b.resolver.resolve(&schema)?.ty != Some(super::schema::JsonType::String) {
                bail!("{mp}/schema: a {mt} body must be a string (text, or bytes with format: binary)");
            }
            let rust_type = if is_text(mt) { RustType::String } else { RustType::Bytes };
            out.push(MediaType { media_type: mt.clone(), schema, rust_type });
            continue;
        }
        let s = media.schema.as_ref().with_context(|| format!("{pointer}: media type without schema"))?;
        let schema = b.resolver.convert(s, &format!("{mp}/schema"))?;
        let rust_type = b.rust_type(&schema, &format!("{op_type}{status}Response"), None)?;
        out.push(MediaType { media_type: mt.clone(), schema, rust_type });
    }
    Ok(out)
}
