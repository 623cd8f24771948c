//! Request bodies: the body an operation accepts, by media type. The
//! emitters validate a body into one named struct, so that is all this
//! admits today: one JSON object with properties.

use anyhow::{Context, Result, bail};
use openapiv3 as oa;

use super::media::{MediaType, is_form, is_json, is_multipart, is_text};
use super::names::pointer_segment;
use super::schema::JsonType;
use super::types::{RustType, TypeBuilder, TypeKind};

#[derive(Debug, Clone)]
pub struct RequestBody {
    pub pointer: String,
    pub description: Option<String>,
    pub required: bool,
    pub content: Vec<MediaType>,
    /// The generated struct a JSON body decodes into; for a text body with
    /// constraints, the newtype that checks them; else empty.
    pub model: String,
    /// A body that is not JSON: `String` for text, `Bytes` otherwise.
    pub raw: Option<RustType>,
    /// A binary body's `maxLength`: its byte limit as a stream.
    pub max_bytes: Option<usize>,
    /// `multipart/form-data`: `model`'s binary properties are file parts.
    pub multipart: bool,
}

pub fn request_body(
    b: &mut TypeBuilder<'_>,
    doc: &oa::OpenAPI,
    op: &oa::Operation,
    pointer: &str,
    op_type: &str,
) -> Result<Option<RequestBody>> {
    let bp = format!("{pointer}/requestBody");
    let rb = match &op.request_body {
        None => return Ok(None),
        Some(oa::ReferenceOr::Reference { reference }) => {
            let name = reference
                .strip_prefix("#/components/requestBodies/")
                .with_context(|| format!("{bp}: unsupported $ref {reference}"))?;
            match doc.components.as_ref().and_then(|c| c.request_bodies.get(name)) {
                Some(oa::ReferenceOr::Item(rb)) => rb,
                _ => bail!("{bp}: {reference} not found"),
            }
        }
        Some(oa::ReferenceOr::Item(rb)) => rb,
    };
    let (mt, media) = rb.content.first().with_context(|| format!("{bp}/content: no media type"))?;
    let mp = format!("{bp}/content/{}", pointer_segment(mt));
    if is_multipart(mt) {
        return multipart(b, rb, mt, media, &bp, op_type).map(Some);
    }
    let structured = |t: &str| is_json(t) || is_form(t);
    if rb.content.len() > 1 || is_form(mt) {
        // JSON and form bodies of one schema: chosen by Content-Type.
        for (t, m) in &rb.content {
            let p = format!("{bp}/content/{}", pointer_segment(t));
            if !structured(t) {
                bail!("{p}: several media types on one body are supported for JSON and form types only");
            }
            if m.schema != media.schema {
                bail!("{p}/schema: every media type of a body must have the same schema");
            }
        }
    }
    if !structured(mt) {
        let s = media.schema.as_ref().with_context(|| format!("{mp}: media type without schema"))?;
        let schema = b.resolver.convert(s, &format!("{mp}/schema"))?;
        let node = b.resolver.resolve(&schema)?;
        if node.ty != Some(JsonType::String) {
            bail!("{mp}/schema: a {mt} body must be a string (text, or bytes with format: binary)");
        }
        // A binary body is streamed, and `maxLength` is its byte limit; a
        // text body is checked as the string it is (length in characters,
        // pattern) through a newtype of its schema. Anything else would not
        // be checked, so it is refused rather than silently ignored.
        let binary_unchecked = node.min_length.is_some() || node.pattern.is_some() || !node.enum_values.is_empty();
        if !is_text(mt) && binary_unchecked {
            bail!(
                "{mp}/schema: constraints on a {mt} body are not checked (only `maxLength` of a binary body, as its \
                 byte limit, and lengths, patterns and enums of a text body)"
            );
        }
        let text_checked = is_text(mt) && (binary_unchecked || node.max_length.is_some());
        let model = if text_checked {
            let name = b.unique_name(format!("{op_type}RequestText"));
            let mut field = b.field("", &schema, true, &name)?;
            field.rust_name = "0".into();
            let mut wrapper = node.clone();
            wrapper.pointer = format!("{mp}/schema");
            b.synthetic_newtype(&name, field, wrapper);
            name
        } else {
            String::new()
        };
        let raw = if is_text(mt) { RustType::String } else { RustType::Bytes };
        return Ok(Some(RequestBody {
            pointer: bp,
            description: rb.description.clone(),
            required: rb.required,
            content: vec![MediaType { media_type: mt.clone(), schema, rust_type: raw.clone() }],
            model,
            raw: Some(raw),
            max_bytes: node.max_length,
            multipart: false,
        }));
    }
    let s = media.schema.as_ref().with_context(|| format!("{bp}: media type without schema"))?;
    let schema = b.resolver.convert(s, &format!("{bp}/content/{}/schema", pointer_segment(mt)))?;
    let node = b.resolver.resolve(&schema)?;
    let form = rb.content.keys().find(|t| is_form(t));
    let hint = format!("{op_type}Request");
    let rust_type = b.rust_type(&schema, &hint, None)?;
    let model = match &rust_type {
        RustType::Named(n) if b.types.get(n).is_some_and(|t| !matches!(t.kind, TypeKind::StrEnum(_))) => n.clone(),
        _ => {
            // An array, a scalar or an enum: wrapped, so the body is one
            // validated value like any other.
            let name = b.unique_name(format!("{hint}Body"));
            let mut field = b.field("", &schema, true, &name)?;
            field.rust_name = "0".into();
            let mut wrapper = node.clone();
            wrapper.pointer = format!("{bp}/content/{}/schema", pointer_segment(mt));
            b.synthetic_newtype(&name, field, wrapper);
            name
        }
    };
    if let Some(f) = form {
        // A form is flat: each property one value or a list of them.
        let p = format!("{bp}/content/{}/schema", pointer_segment(f));
        let Some(TypeKind::Struct(fields)) = b.types.get(&model).map(|t| &t.kind) else {
            bail!("{p}: a form body must be an object with properties");
        };
        for field in fields {
            let flat = match &field.ty {
                RustType::Vec(item) => !matches!(**item, RustType::Named(_) | RustType::Vec(_) | RustType::Map(_)),
                RustType::Named(n) => matches!(b.types.get(n).map(|t| &t.kind), Some(TypeKind::StrEnum(_))),
                RustType::Map(_) | RustType::JsonObject | RustType::Any | RustType::Bytes => false,
                _ => true,
            };
            if !flat || field.flatten {
                bail!(
                    "{p}/properties/{}: form fields must be scalars or arrays of scalars",
                    pointer_segment(&field.json_name)
                );
            }
        }
    }
    let content = rb
        .content
        .keys()
        .map(|t| MediaType { media_type: t.clone(), schema: schema.clone(), rust_type: rust_type.clone() })
        .collect();
    Ok(Some(RequestBody {
        pointer: bp,
        description: rb.description.clone(),
        required: rb.required,
        content,
        model,
        raw: None,
        max_bytes: None,
        multipart: false,
    }))
}

/// `multipart/form-data`: an object whose `format: binary` properties (or
/// arrays of them) are file parts and whose other properties are text
/// parts, flat like a form's fields. The model's binary fields become
/// `rt::FilePart`s (wherever the schema is used).
fn multipart(
    b: &mut TypeBuilder<'_>,
    rb: &oa::RequestBody,
    mt: &str,
    media: &oa::MediaType,
    bp: &str,
    op_type: &str,
) -> Result<RequestBody> {
    let mp = format!("{bp}/content/{}", pointer_segment(mt));
    if rb.content.len() > 1 {
        bail!("{bp}/content: a multipart body must be the body's only media type");
    }
    let s = media.schema.as_ref().with_context(|| format!("{mp}: media type without schema"))?;
    let schema = b.resolver.convert(s, &format!("{mp}/schema"))?;
    let rust_type = b.rust_type(&schema, &format!("{op_type}Request"), None)?;
    let model = match &rust_type {
        RustType::Named(n) if matches!(b.types.get(n).map(|t| &t.kind), Some(TypeKind::Struct(_))) => n.clone(),
        _ => bail!("{mp}/schema: a multipart body must be an object with properties"),
    };
    let Some(TypeKind::Struct(fields)) = b.types.get_mut(&model).map(|t| &mut t.kind) else {
        bail!("{mp}/schema: a multipart body must be an object with properties");
    };
    for f in fields.iter_mut() {
        let binary = |n: &super::schema::SchemaNode| n.format.as_deref() == Some("binary");
        let item_binary = match &f.node.items {
            Some(super::schema::Schema::Inline(i)) => binary(i),
            _ => false,
        };
        let p = format!("{mp}/schema/properties/{}", pointer_segment(&f.json_name));
        if f.flatten {
            bail!("{mp}/schema: additionalProperties in a multipart body are not supported");
        }
        if f.nullable && (binary(&f.node) || item_binary) {
            bail!("{p}: a file part cannot be null (leave it out instead)");
        }
        match &f.ty {
            RustType::String if binary(&f.node) => f.ty = RustType::File,
            RustType::Vec(item) if **item == RustType::String && item_binary => {
                f.ty = RustType::Vec(Box::new(RustType::File));
            }
            RustType::Vec(item) if matches!(**item, RustType::Named(_) | RustType::Vec(_) | RustType::Map(_)) => {
                bail!("{p}: multipart text parts must be scalars or arrays of scalars")
            }
            RustType::Map(_) | RustType::JsonObject | RustType::Any => {
                bail!("{p}: multipart text parts must be scalars or arrays of scalars")
            }
            _ => {}
        }
    }
    Ok(RequestBody {
        pointer: bp.to_owned(),
        description: rb.description.clone(),
        required: rb.required,
        content: vec![MediaType { media_type: mt.to_owned(), schema, rust_type }],
        model,
        raw: None,
        max_bytes: None,
        multipart: true,
    })
}
