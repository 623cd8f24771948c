//! Parameters: path-level and operation-level parameters merged, each with
//! its location and serialization (style, explode) as the spec gives them,
//! and the struct an operation's parameters are validated into.

use anyhow::{Context, Result, bail};
use openapiv3 as oa;

use super::operations::OperationSite;
use super::schema::{JsonType, Schema, SchemaNode};
use super::types::{Field, TypeBuilder};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamLocation {
    Query,
    Path,
    Header,
    Cookie,
}

/// How a value is serialized (OpenAPI's `style`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamStyle {
    Form,
    SpaceDelimited,
    PipeDelimited,
    DeepObject,
    Matrix,
    Label,
    Simple,
}

/// As the spec spells it, for error messages.
impl std::fmt::Display for ParamStyle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Form => "form",
            Self::SpaceDelimited => "spaceDelimited",
            Self::PipeDelimited => "pipeDelimited",
            Self::DeepObject => "deepObject",
            Self::Matrix => "matrix",
            Self::Label => "label",
            Self::Simple => "simple",
        })
    }
}

#[derive(Debug, Clone)]
pub struct Parameter {
    /// Its name on the wire (query key, header, path template variable).
    pub name: String,
    /// The parameter as a field of the operation's params struct; its JSON
    /// name is the key validation reports, `name` unless two parameters
    /// share it (then `query.id`, `path.id`).
    pub field: Field,
    pub location: ParamLocation,
    pub style: ParamStyle,
    /// `explode`, with OpenAPI's default (true for `form` only).
    pub explode: bool,
    pub description: Option<String>,
    pub deprecated: bool,
    pub pointer: String,
    /// `oneOf: [scalar, array]`: the scalar's and the items' types.
    pub one_or_many: Option<(JsonType, JsonType)>,
    /// Declared with `content` instead of `schema`.
    pub content: Option<ParamContent>,
    /// Its schema (the `content` entry's, for one declared that way).
    pub schema: Schema,
    /// `x-field-mask` as written (see [`super::field_mask`]).
    pub field_mask: Option<serde_json::Value>,
}

/// A parameter's (or response header's) one `content` entry: the raw value
/// is a JSON document (parsed, then checked like a body) or, for other
/// media types, a string.
#[derive(Debug, Clone)]
pub struct ParamContent {
    pub media_type: String,
    pub json: bool,
    /// `content` as the spec writes it, for the served document:
    /// poem-openapi can only describe parameters and headers by `schema`.
    pub document: serde_json::Value,
}

/// The parameters of one operation, path-level first, operation-level
/// overriding by name and location.
pub fn parameters(
    b: &mut TypeBuilder<'_>,
    doc: &oa::OpenAPI,
    site: &OperationSite<'_>,
    op_type: &str,
) -> Result<Vec<Parameter>> {
    let pointer = &site.pointer;
    let mut raw: Vec<(String, &oa::Parameter)> = Vec::new();
    for (i, p) in site.path_params.iter().chain(&site.op.parameters).enumerate() {
        let pp = format!("{pointer}/parameters/{i}");
        let p = dereference(doc, p, &pp)?;
        let d = p.parameter_data_ref();
        raw.retain(|(_, q)| {
            !(q.parameter_data_ref().name == d.name && std::mem::discriminant(*q) == std::mem::discriminant(p))
        });
        raw.push((pp, p));
    }
    let mut params = Vec::new();
    for (pp, p) in raw {
        params.push(parameter(b, p, pp, op_type)?);
    }
    for seg in site.path.split('/').filter(|s| s.starts_with('{')) {
        let name = seg.trim_start_matches('{').trim_end_matches('}');
        if !params.iter().any(|p| p.location == ParamLocation::Path && p.name == name) {
            bail!("{pointer}: path parameter {name:?} is not declared");
        }
    }
    disambiguate(&mut params);
    Ok(params)
}

/// Parameters in different places may share a name (`id` in the path and
/// in the query), and different names may make one Rust name (`page-size`,
/// `page_size`): each gets its own field, named after its location.
fn disambiguate(params: &mut [Parameter]) {
    let taken = |params: &[Parameter], i: usize| {
        params.iter().enumerate().any(|(j, q)| {
            j != i && (q.field.rust_name == params[i].field.rust_name || q.field.json_name == params[i].field.json_name)
        })
    };
    let shared: Vec<usize> = (0..params.len()).filter(|&i| taken(params, i)).collect();
    for i in shared {
        let loc = params[i].location.as_str();
        params[i].field.json_name = format!("{loc}.{}", params[i].name);
        params[i].field.rust_name = format!("{loc}_{}", params[i].field.rust_name);
    }
    // Still equal only when the spec repeats a name in one place with
    // different spellings of one Rust name: number them.
    for i in 0..params.len() {
        let mut n = 2;
        while taken(params, i) {
            params[i].field.rust_name =
                format!("{}_{n}", params[i].field.rust_name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '_'));
            n += 1;
        }
    }
}

impl ParamLocation {
    pub fn as_str(self) -> &'static str {
        match self {
            ParamLocation::Query => "query",
            ParamLocation::Path => "path",
            ParamLocation::Header => "header",
            ParamLocation::Cookie => "cookie",
        }
    }
}

fn dereference<'d>(
    doc: &'d oa::OpenAPI,
    p: &'d oa::ReferenceOr<oa::Parameter>,
    pointer: &str,
) -> Result<&'d oa::Parameter> {
    match p {
        oa::ReferenceOr::Item(p) => Ok(p),
        oa::ReferenceOr::Reference { reference } => {
            let name = reference
                .strip_prefix("#/components/parameters/")
                .with_context(|| format!("{pointer}: unsupported $ref {reference}"))?;
            match doc.components.as_ref().and_then(|c| c.parameters.get(name)) {
                Some(oa::ReferenceOr::Item(p)) => Ok(p),
                _ => bail!("{pointer}: {reference} not found"),
            }
        }
    }
}

fn location_and_style(p: &oa::Parameter) -> (ParamLocation, ParamStyle) {
    match p {
        oa::Parameter::Query { style, .. } => (
            ParamLocation::Query,
            match style {
                oa::QueryStyle::Form => ParamStyle::Form,
                oa::QueryStyle::SpaceDelimited => ParamStyle::SpaceDelimited,
                oa::QueryStyle::PipeDelimited => ParamStyle::PipeDelimited,
                oa::QueryStyle::DeepObject => ParamStyle::DeepObject,
            },
        ),
        oa::Parameter::Path { style, .. } => (
            ParamLocation::Path,
            match style {
                oa::PathStyle::Matrix => ParamStyle::Matrix,
                oa::PathStyle::Label => ParamStyle::Label,
                oa::PathStyle::Simple => ParamStyle::Simple,
            },
        ),
        oa::Parameter::Header { .. } => (ParamLocation::Header, ParamStyle::Simple),
        oa::Parameter::Cookie { .. } => (ParamLocation::Cookie, ParamStyle::Form),
    }
}

fn parameter(b: &mut TypeBuilder<'_>, p: &oa::Parameter, pointer: String, op_type: &str) -> Result<Parameter> {
    let (location, style) = location_and_style(p);
    let data = p.parameter_data_ref();
    let (schema, content) = match &data.format {
        oa::ParameterSchemaOrContent::Schema(s) => (b.resolver.convert(s, &format!("{pointer}/schema"))?, None),
        oa::ParameterSchemaOrContent::Content(c) => {
            let (schema, content) = content_schema(b, c, &format!("{pointer}/content"))?;
            (schema, Some(content))
        }
    };
    // A JSON document may hold any value, so the scalar rule and the
    // style rules (which say how raw strings split) apply to `schema` only.
    let one_or_many = if content.is_some() {
        None
    } else {
        if style == ParamStyle::DeepObject {
            require_flat_object(b, &schema, &pointer)?;
        } else {
            require_scalar_or_array(b, &schema, &pointer)?;
        }
        let one_or_many = one_or_many(b, &b.resolver.resolve(&schema)?)?;
        // One `.3` could be the scalar or a one-item array: nothing in the
        // value says which, so the union is refused rather than guessed.
        if one_or_many.is_some() && matches!(style, ParamStyle::Label | ParamStyle::Matrix) {
            bail!("{pointer}/style: `{style}` does not apply to `oneOf` a scalar or an array");
        }
        one_or_many
    };
    let mut field = b.field(&data.name, &schema, data.required, &format!("{op_type}Params"))?;
    if location == ParamLocation::Path && !data.required {
        bail!("{pointer}: path parameters must be required");
    }
    if content.is_none() {
        require_default_style(location, style, &pointer)?;
        if matches!(style, ParamStyle::SpaceDelimited | ParamStyle::PipeDelimited)
            && !matches!(field.ty, super::types::RustType::Vec(_))
        {
            bail!("{pointer}/style: `{style}` applies to arrays only");
        }
    }
    field.required = data.required;
    Ok(Parameter {
        name: data.name.clone(),
        field,
        location,
        style,
        explode: data.explode.unwrap_or(style == ParamStyle::Form),
        description: data.description.clone(),
        deprecated: data.deprecated.unwrap_or(false),
        pointer,
        one_or_many,
        content,
        schema,
        field_mask: data.extensions.get(super::field_mask::EXTENSION).cloned(),
    })
}

/// `content` on a parameter or a response header: exactly one media type
/// (OpenAPI says so), JSON with any schema, or another type whose schema is
/// a string, taken as is.
pub(super) fn content_schema(
    b: &mut TypeBuilder<'_>,
    content: &indexmap::IndexMap<String, oa::MediaType>,
    pointer: &str,
) -> Result<(Schema, ParamContent)> {
    let [(media_type, media)] = content.iter().collect::<Vec<_>>()[..] else {
        bail!("{pointer}: `content` must hold exactly one media type, not {}", content.len());
    };
    let at = format!("{pointer}/{}", super::names::pointer_segment(media_type));
    let s = media.schema.as_ref().with_context(|| format!("{at}: needs a `schema`"))?;
    let schema = b.resolver.convert(s, &format!("{at}/schema"))?;
    let json = super::media::is_json(media_type);
    if !json && b.resolver.resolve(&schema)?.ty != Some(JsonType::String) {
        bail!("{at}/schema: a value in `{media_type}` is its raw text, so its schema must be a string");
    }
    let document = serde_json::to_value(content).with_context(|| format!("{pointer}: cannot be written back"))?;
    Ok((schema, ParamContent { media_type: media_type.clone(), json, document }))
}

/// `oneOf: [scalar, array of scalars]` (either order): the scalar's and the
/// items' types, read as one value or repeated values.
pub fn one_or_many(b: &TypeBuilder<'_>, node: &SchemaNode) -> Result<Option<(JsonType, JsonType)>> {
    let scalar = |t: Option<JsonType>| {
        t.filter(|t| matches!(t, JsonType::String | JsonType::Integer | JsonType::Number | JsonType::Boolean))
    };
    let [a, c] = node.one_of.as_slice() else { return Ok(None) };
    let (a, c) = (b.resolver.resolve(a)?, b.resolver.resolve(c)?);
    let (one, many) = if a.ty == Some(JsonType::Array) { (c, a) } else { (a, c) };
    let Some(one) = scalar(one.ty) else { return Ok(None) };
    if many.ty != Some(JsonType::Array) {
        return Ok(None);
    }
    let item = b.resolver.resolve(many.items.as_ref().context("array without items")?)?;
    Ok(scalar(item.ty).map(|i| (one, i)))
}

/// `style: deepObject` (`filter[name]=x&filter[tags]=a`): an object whose
/// properties are scalars or arrays of them.
fn require_flat_object(b: &TypeBuilder<'_>, schema: &Schema, pointer: &str) -> Result<()> {
    let node = b.resolver.resolve(schema)?;
    if node.ty != Some(JsonType::Object) || node.properties.is_empty() {
        bail!("{pointer}/style: `deepObject` needs an object with properties");
    }
    for p in &node.properties {
        require_scalar_or_array(b, &p.schema, &format!("{pointer}/schema/properties/{}", p.name))?;
    }
    Ok(())
}

/// The runtime turns raw parameter strings into JSON scalars or lists of
/// them; objects in parameters would need a style it does not parse.
fn require_scalar_or_array(b: &TypeBuilder<'_>, schema: &Schema, pointer: &str) -> Result<()> {
    let node = b.resolver.resolve(schema)?;
    if one_or_many(b, &node)?.is_some() {
        return Ok(());
    }
    match node.ty {
        Some(JsonType::String | JsonType::Integer | JsonType::Number | JsonType::Boolean) => Ok(()),
        Some(JsonType::Array) => {
            let item = b.resolver.resolve(node.items.as_ref().context("array without items")?)?;
            if !matches!(item.ty, Some(JsonType::String | JsonType::Integer | JsonType::Number | JsonType::Boolean)) {
                bail!("{pointer}: array parameters must have scalar items");
            }
            Ok(())
        }
        _ => bail!("{pointer}: parameters must be scalars or arrays of scalars"),
    }
}

/// The runtime reads query arrays as repeated keys or one comma list, which
/// is `form` either way explode is set, header values as `simple`, and path
/// values as `simple`, `label` or `matrix`. Any other style would be
/// misread, so it is refused.
fn require_default_style(location: ParamLocation, style: ParamStyle, pointer: &str) -> Result<()> {
    // Arrays in one value split at a space or a pipe are read as declared
    // (an array schema is checked by require_scalar_or_array's caller).
    if location == ParamLocation::Query
        && matches!(style, ParamStyle::SpaceDelimited | ParamStyle::PipeDelimited | ParamStyle::DeepObject)
    {
        return Ok(());
    }
    if location == ParamLocation::Path && matches!(style, ParamStyle::Label | ParamStyle::Matrix) {
        return Ok(());
    }
    let expected = match location {
        ParamLocation::Query | ParamLocation::Cookie => ParamStyle::Form,
        ParamLocation::Path | ParamLocation::Header => ParamStyle::Simple,
    };
    if style != expected {
        bail!("{pointer}/style: `{style}` is not supported here, only `{expected}`");
    }
    Ok(())
}

/// The struct an operation's parameters are validated into, registered as a
/// generated type; `None` when the operation has no parameters.
pub fn params_struct(b: &mut TypeBuilder<'_>, params: &[Parameter], pointer: &str, op_type: &str) -> Option<String> {
    if params.is_empty() {
        return None;
    }
    let name = b.unique_name(format!("{op_type}Params"));
    let node =
        SchemaNode { pointer: format!("{pointer}/parameters"), ty: Some(JsonType::Object), ..SchemaNode::default() };
    b.synthetic_struct(&name, params.iter().map(|p| p.field.clone()).collect(), node);
    Some(name)
}
