//! The second stage: the intermediate model of an API — operations with
//! their parameters, bodies and per-status responses, the Rust types every
//! schema becomes, the security schemes and the error-code registry.

pub mod names;
pub mod schema;
pub mod types;

use anyhow::{Context, Result, bail};
use heck::ToSnakeCase;
use indexmap::IndexMap;
use openapiv3 as oa;
use serde_json::Value;

use names::{pointer_segment as ptr_seg, type_name};
use schema::{Resolver, Schema, SchemaNode};
use types::{Field, RustType, TypeBuilder, TypeDef};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamIn {
    Query,
    Path,
    Header,
}

#[derive(Debug, Clone)]
pub struct Param {
    pub field: Field,
    pub location: ParamIn,
    pub description: Option<String>,
    pub deprecated: bool,
}

#[derive(Debug, Clone)]
pub struct Response {
    pub status: u16,
    pub description: String,
    /// Body schema and its Rust type; `None` for an empty body.
    pub body: Option<(Schema, RustType)>,
}

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    pub rust: String,
    pub method: &'static str,
    pub path: String,
    pub pointer: String,
    pub tags: Vec<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub deprecated: bool,
    pub params: Vec<Param>,
    /// Name of the generated params struct, when there are parameters.
    pub params_type: Option<String>,
    pub body: Option<(String, bool)>,
    pub body_description: Option<String>,
    pub responses: Vec<Response>,
    pub security: Option<String>,
}

#[derive(Debug, Clone)]
pub struct SecurityScheme {
    pub name: String,
    pub header: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ErrorCodeDef {
    pub name: String,
    pub code: i64,
    pub status: u16,
    pub message: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Tag {
    pub name: String,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ServerUrl {
    pub url: String,
    pub description: Option<String>,
}

/// The whole API as the emitters see it.
#[derive(Debug)]
pub struct Api {
    pub title: String,
    pub version: String,
    pub description: Option<String>,
    pub contact: Option<(Option<String>, Option<String>, Option<String>)>,
    pub servers: Vec<ServerUrl>,
    pub base_path: String,
    pub tags: Vec<Tag>,
    pub operations: Vec<Operation>,
    pub types: IndexMap<String, TypeDef>,
    /// Components that are only a `$ref` to another → the final target.
    pub aliases: IndexMap<String, String>,
    pub security: Vec<SecurityScheme>,
    pub error_codes: Vec<ErrorCodeDef>,
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

fn method_name(m: &str) -> &'static str {
    match m {
        "get" => "get",
        "put" => "put",
        "post" => "post",
        "delete" => "delete",
        "patch" => "patch",
        "head" => "head",
        "options" => "options",
        _ => "trace",
    }
}

/// Builds the model of a whole document.
pub fn build(doc: &oa::OpenAPI) -> Result<Api> {
    if !doc.openapi.starts_with("3.0") {
        bail!("#/openapi: only OpenAPI 3.0.x is supported, found {}", doc.openapi);
    }
    let mut b = TypeBuilder::new(Resolver::new(doc));

    // Components first, in document order, so their names win.
    let mut aliases = IndexMap::new();
    if let Some(c) = &doc.components {
        for name in c.schemas.keys() {
            let canon = b.resolver.canonical(name)?;
            if canon == *name {
                b.component(name)?;
            } else {
                aliases.insert(name.clone(), canon);
            }
        }
    }

    let mut security = Vec::new();
    if let Some(c) = &doc.components {
        for (name, s) in &c.security_schemes {
            let pointer = format!("#/components/securitySchemes/{}", ptr_seg(name));
            match s {
                oa::ReferenceOr::Item(oa::SecurityScheme::APIKey {
                    location: oa::APIKeyLocation::Header,
                    name: header,
                    description,
                    ..
                }) => {
                    security.push(SecurityScheme {
                        name: name.clone(),
                        header: header.clone(),
                        description: description.clone(),
                    });
                }
                _ => bail!("{pointer}: only `apiKey` schemes in a header are supported"),
            }
        }
    }

    let mut operations = Vec::new();
    for (path, item) in &doc.paths.paths {
        let pp = format!("#/paths/{}", ptr_seg(path));
        let item = match item {
            oa::ReferenceOr::Item(i) => i,
            oa::ReferenceOr::Reference { .. } => bail!("{pp}: path item references are not supported"),
        };
        for (method, op) in item.iter() {
            let pointer = format!("{pp}/{method}");
            operations.push(operation(
                &mut b,
                doc,
                path,
                method_name(method),
                op,
                &item.parameters,
                &pointer,
                &security,
            )?);
        }
    }

    let servers: Vec<ServerUrl> =
        doc.servers.iter().map(|s| ServerUrl { url: s.url.clone(), description: s.description.clone() }).collect();
    let base_path = servers.first().map(|s| base_path_of(&s.url)).unwrap_or_default();

    let tags = doc.tags.iter().map(|t| Tag { name: t.name.clone(), description: t.description.clone() }).collect();
    let error_codes = error_codes(doc)?;
    let contact = doc.info.contact.as_ref().map(|c| (c.name.clone(), c.url.clone(), c.email.clone()));

    Ok(Api {
        title: doc.info.title.clone(),
        version: doc.info.version.clone(),
        description: doc.info.description.clone(),
        contact,
        servers,
        base_path,
        tags,
        operations,
        types: b.types,
        aliases,
        security,
        error_codes,
    })
}

/// The path part of a server URL (`http://h:8080/api/v1` → `/api/v1`).
pub fn base_path_of(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("", |i| &rest[i..]);
    path.trim_end_matches('/').to_owned()
}

#[allow(clippy::too_many_arguments)]
fn operation(
    b: &mut TypeBuilder<'_>,
    doc: &oa::OpenAPI,
    path: &str,
    method: &'static str,
    op: &oa::Operation,
    shared_params: &[oa::ReferenceOr<oa::Parameter>],
    pointer: &str,
    schemes: &[SecurityScheme],
) -> Result<Operation> {
    let id = op.operation_id.clone().with_context(|| format!("{pointer}: every operation needs an operationId"))?;
    let op_type = type_name(&id);

    // Parameters (path-level first, operation-level overriding by name+in).
    let mut raw: Vec<(String, &oa::Parameter)> = Vec::new();
    for (i, p) in shared_params.iter().chain(&op.parameters).enumerate() {
        let p = match p {
            oa::ReferenceOr::Item(p) => p,
            oa::ReferenceOr::Reference { reference } => {
                let name = reference
                    .strip_prefix("#/components/parameters/")
                    .with_context(|| format!("{pointer}/parameters/{i}: unsupported $ref {reference}"))?;
                match doc.components.as_ref().and_then(|c| c.parameters.get(name)) {
                    Some(oa::ReferenceOr::Item(p)) => p,
                    _ => bail!("{pointer}/parameters/{i}: {reference} not found"),
                }
            }
        };
        let d = p.parameter_data_ref();
        raw.retain(|(_, q)| {
            !(q.parameter_data_ref().name == d.name && std::mem::discriminant(*q) == std::mem::discriminant(p))
        });
        raw.push((format!("{pointer}/parameters/{i}"), p));
    }
    let mut params = Vec::new();
    for (pp, p) in raw {
        let (location, data) = match p {
            oa::Parameter::Query { parameter_data, .. } => (ParamIn::Query, parameter_data),
            oa::Parameter::Path { parameter_data, .. } => (ParamIn::Path, parameter_data),
            oa::Parameter::Header { parameter_data, .. } => (ParamIn::Header, parameter_data),
            oa::Parameter::Cookie { .. } => bail!("{pp}: cookie parameters are not supported"),
        };
        let sch = match &data.format {
            oa::ParameterSchemaOrContent::Schema(s) => b.resolver.convert(s, &format!("{pp}/schema"))?,
            oa::ParameterSchemaOrContent::Content(_) => bail!("{pp}: parameters with `content` are not supported"),
        };
        let node = b.resolver.resolve(&sch)?;
        match node.ty {
            Some("string" | "integer" | "number" | "boolean") => {}
            Some("array") => {
                let item = b.resolver.resolve(node.items.as_ref().context("array without items")?)?;
                if !matches!(item.ty, Some("string" | "integer" | "number" | "boolean")) {
                    bail!("{pp}: array parameters must have scalar items");
                }
            }
            _ => bail!("{pp}: parameters must be scalars or arrays of scalars"),
        }
        let mut field = b.field(&data.name, &sch, data.required, &format!("{op_type}Params"))?;
        if location == ParamIn::Path && !data.required {
            bail!("{pp}: path parameters must be required");
        }
        field.required = data.required;
        params.push(Param {
            field,
            location,
            description: data.description.clone(),
            deprecated: data.deprecated.unwrap_or(false),
        });
    }
    for seg in path.split('/').filter(|s| s.starts_with('{')) {
        let name = seg.trim_start_matches('{').trim_end_matches('}');
        if !params.iter().any(|p| p.location == ParamIn::Path && p.field.json_name == name) {
            bail!("{pointer}: path parameter {name:?} is not declared");
        }
    }

    let params_type = if params.is_empty() {
        None
    } else {
        let name = b.unique_name(format!("{op_type}Params"));
        let node = SchemaNode { pointer: format!("{pointer}/parameters"), ty: Some("object"), ..SchemaNode::default() };
        b.synthetic_struct(&name, params.iter().map(|p| p.field.clone()).collect(), node);
        Some(name)
    };

    // Request body.
    let (body, body_description) = match &op.request_body {
        None => (None, None),
        Some(oa::ReferenceOr::Reference { .. }) => {
            bail!("{pointer}/requestBody: requestBody references are not supported")
        }
        Some(oa::ReferenceOr::Item(rb)) => {
            let bp = format!("{pointer}/requestBody");
            if rb.content.len() != 1 {
                bail!("{bp}: exactly one media type (application/json) is supported");
            }
            let (mt, media) = rb.content.first().context("no content")?;
            if mt != "application/json" {
                bail!("{bp}/content: media type {mt:?} is not supported (application/json only)");
            }
            let s = media.schema.as_ref().with_context(|| format!("{bp}: media type without schema"))?;
            let sch = b.resolver.convert(s, &format!("{bp}/content/application~1json/schema"))?;
            let node = b.resolver.resolve(&sch)?;
            if node.ty != Some("object") || node.properties.is_empty() {
                bail!("{bp}: the request body must be an object with properties");
            }
            let ty = match b.rust_type(&sch, &format!("{op_type}Request"), None)? {
                RustType::Named(n) => n,
                _ => bail!("{bp}: the request body must be an object"),
            };
            (Some((ty, rb.required)), rb.description.clone())
        }
    };

    // Responses.
    if op.responses.default.is_some() {
        bail!("{pointer}/responses/default: `default` responses are not supported; list each status");
    }
    let mut responses = Vec::new();
    for (status, resp) in &op.responses.responses {
        let rp = format!("{pointer}/responses/{status}");
        let status = match status {
            oa::StatusCode::Code(c) => *c,
            oa::StatusCode::Range(_) => bail!("{rp}: status ranges are not supported"),
        };
        let resp = match resp {
            oa::ReferenceOr::Item(r) => r,
            oa::ReferenceOr::Reference { reference } => {
                let name = reference
                    .strip_prefix("#/components/responses/")
                    .with_context(|| format!("{rp}: unsupported $ref {reference}"))?;
                match doc.components.as_ref().and_then(|c| c.responses.get(name)) {
                    Some(oa::ReferenceOr::Item(r)) => r,
                    _ => bail!("{rp}: {reference} not found"),
                }
            }
        };
        if !resp.headers.is_empty() {
            bail!("{rp}: response headers are not supported yet");
        }
        let body = match resp.content.len() {
            0 => None,
            1 => {
                let (mt, media) = resp.content.first().context("no content")?;
                if mt != "application/json" {
                    bail!("{rp}/content: media type {mt:?} is not supported (application/json only)");
                }
                let s = media.schema.as_ref().with_context(|| format!("{rp}: media type without schema"))?;
                let sch = b.resolver.convert(s, &format!("{rp}/content/application~1json/schema"))?;
                let ty = b.rust_type(&sch, &format!("{op_type}{status}Response"), None)?;
                Some((sch, ty))
            }
            _ => bail!("{rp}: one media type per response is supported"),
        };
        responses.push(Response { status, description: resp.description.clone(), body });
    }
    responses.sort_by_key(|r| r.status);

    // Security: one apiKey scheme, or none.
    let reqs = op.security.as_ref().or(doc.security.as_ref());
    let security = match reqs {
        None => None,
        Some(reqs) if reqs.is_empty() => None,
        Some(reqs) if reqs.len() == 1 && reqs[0].len() == 1 => {
            let name = reqs[0].keys().next().cloned().unwrap_or_default();
            if !schemes.iter().any(|s| s.name == name) {
                bail!("{pointer}/security: unknown scheme {name:?}");
            }
            Some(name)
        }
        Some(_) => bail!("{pointer}/security: exactly one security scheme per operation is supported"),
    };

    let has_status = |s: u16| responses.iter().any(|r| r.status == s);
    if (!params.is_empty() || body.is_some()) && !has_status(400) {
        bail!(
            "{pointer}/responses: the operation takes parameters or a body that can fail validation, \
             but documents no 400 response; add one (see spec/CHANGELOG.md)"
        );
    }
    if security.is_some() && !has_status(401) {
        bail!("{pointer}/responses: the operation is secured but documents no 401 response");
    }

    Ok(Operation {
        rust: id.to_snake_case(),
        id,
        method,
        path: path.to_owned(),
        pointer: pointer.to_owned(),
        tags: op.tags.clone(),
        summary: op.summary.clone(),
        description: op.description.clone(),
        deprecated: op.deprecated,
        params,
        params_type,
        body,
        body_description,
        responses,
        security,
    })
}

fn error_codes(doc: &oa::OpenAPI) -> Result<Vec<ErrorCodeDef>> {
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
