//! The second stage: the intermediate model of an API — operations with
//! their parameters, bodies and per-status responses, the Rust types every
//! schema becomes, the security schemes and the error-code registry.

use anyhow::{Context, Result, bail};
use heck::{ToSnakeCase, ToUpperCamelCase};
use indexmap::IndexMap;
use openapiv3 as oa;
use serde_json::Value;

use super::schema::{Node, Resolver, Sch, ptr_seg};

/// A Rust type a schema maps to.
#[derive(Debug, Clone, PartialEq)]
pub enum RTy {
    Named(String),
    String,
    Password,
    Date,
    DateTime,
    Uuid,
    I32,
    I64,
    F32,
    F64,
    Bool,
    Vec(Box<RTy>),
    Map(Box<RTy>),
    JsonObject,
    Any,
}

/// One generated struct field.
#[derive(Debug, Clone)]
pub struct Field {
    pub json: String,
    pub rust: String,
    pub ty: RTy,
    pub required: bool,
    pub nullable: bool,
    pub default: Option<Value>,
    /// The property's schema (for validation rules and shapes).
    pub sch: Sch,
    pub node: Node,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub enum Kind {
    Struct(Vec<Field>),
    /// (variant, wire value)
    StrEnum(Vec<(String, String)>),
    /// (variant, type)
    Union(Vec<(String, RTy, Sch)>),
}

/// One generated Rust type.
#[derive(Debug, Clone)]
pub struct TypeDef {
    pub rust: String,
    /// The component name when this type is `#/components/schemas/<name>`;
    /// otherwise it is emitted inline in the document.
    pub component: Option<String>,
    pub kind: Kind,
    pub node: Node,
}

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
    pub body: Option<(Sch, RTy)>,
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

const RUST_KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "crate", "dyn", "else", "enum", "extern", "false", "fn",
    "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return", "self", "Self",
    "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where", "while", "abstract", "become",
    "box", "do", "final", "macro", "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// A Rust field name for a JSON property name.
pub fn field_name(json: &str) -> String {
    let mut s = json.to_snake_case();
    if s.is_empty() || s.starts_with(|c: char| c.is_ascii_digit()) {
        s = format!("f_{s}");
    }
    if RUST_KEYWORDS.contains(&s.as_str()) {
        s.push('_');
    }
    s
}

/// A Rust type or variant name.
pub fn type_name(s: &str) -> String {
    let mut n = s.to_upper_camel_case();
    if n.is_empty() || n.starts_with(|c: char| c.is_ascii_digit()) {
        n = format!("V{n}");
    }
    if RUST_KEYWORDS.contains(&n.as_str()) {
        n.push('_');
    }
    n
}

/// A string enum's identity for reuse: its title and its values.
type EnumKey = (Option<String>, Vec<String>);

struct Builder<'a> {
    r: Resolver<'a>,
    types: IndexMap<String, TypeDef>,
    /// (title, values) of string enums → their type, for reuse.
    enums: Vec<(EnumKey, String)>,
    /// Component name → Rust name.
    components: IndexMap<String, String>,
}

impl<'a> Builder<'a> {
    fn unique_name(&self, base: String) -> String {
        if !self.types.contains_key(&base) && !self.components.values().any(|v| *v == base) {
            return base;
        }
        (2..)
            .map(|i| format!("{base}{i}"))
            .find(|n| !self.types.contains_key(n) && !self.components.values().any(|v| v == n))
            .unwrap_or(base)
    }

    /// The Rust type of `sch`; inline objects, enums and unions become named
    /// types called `hint` (or the name of their `title`).
    fn rty(&mut self, sch: &Sch, hint: &str, prop: Option<&str>) -> Result<RTy> {
        let node = match sch {
            Sch::Ref(name) => {
                let canon = self.r.canonical(name)?;
                return Ok(RTy::Named(self.component_rust(&canon)?));
            }
            Sch::Inline(n) => n.as_ref(),
        };
        if !node.one_of.is_empty() || !node.any_of.is_empty() {
            let name = self.unique_name(node.title.as_deref().map_or_else(|| hint.to_owned(), type_name));
            self.union(node, &name, None)?;
            return Ok(RTy::Named(name));
        }
        Ok(match node.ty {
            None => RTy::Any,
            Some("boolean") => RTy::Bool,
            Some("integer") => match node.format.as_deref() {
                Some("int32") => RTy::I32,
                _ => RTy::I64,
            },
            Some("number") => match node.format.as_deref() {
                Some("float") => RTy::F32,
                _ => RTy::F64,
            },
            Some("string") if !node.enum_values.is_empty() => {
                let values: Vec<String> =
                    node.enum_values.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect();
                // Identical enums share one type; a `title` names it (and
                // only enums with the same title share).
                let key = (node.title.clone(), values.clone());
                if let Some((_, existing)) = self.enums.iter().find(|(k, _)| *k == key) {
                    return Ok(RTy::Named(existing.clone()));
                }
                let base = match (&node.title, prop) {
                    (Some(t), _) => type_name(t),
                    (None, Some(p)) if !self.types.contains_key(&type_name(p)) => type_name(p),
                    _ => hint.to_owned(),
                };
                let name = self.unique_name(base);
                self.enums.push((key, name.clone()));
                self.str_enum(node, &name, None, &values)?;
                RTy::Named(name)
            }
            Some("string") => match node.format.as_deref() {
                Some("date") => RTy::Date,
                Some("date-time") => RTy::DateTime,
                Some("uuid") => RTy::Uuid,
                Some("password") => RTy::Password,
                _ => RTy::String,
            },
            Some("array") => {
                let items = node.items.as_ref().context("array without items")?;
                RTy::Vec(Box::new(self.rty(items, &format!("{hint}Item"), None)?))
            }
            Some("object") if node.properties.is_empty() => match &node.additional_properties {
                Some(Some(v)) => RTy::Map(Box::new(self.rty(v, &format!("{hint}Value"), None)?)),
                _ => RTy::JsonObject,
            },
            Some("object") => {
                let name = self.unique_name(node.title.as_deref().map_or_else(|| hint.to_owned(), type_name));
                self.object(node, &name, None)?;
                RTy::Named(name)
            }
            Some(other) => bail!("{}: unsupported type {other}", node.pointer),
        })
    }

    fn component_rust(&mut self, name: &str) -> Result<String> {
        if let Some(r) = self.components.get(name) {
            return Ok(r.clone());
        }
        let rust = self.unique_name(type_name(name));
        self.components.insert(name.to_owned(), rust.clone());
        let pointer = format!("#/components/schemas/{}", ptr_seg(name));
        let sch = self.r.convert(self.r.component(name)?, &pointer)?;
        let node = self.r.resolve(&sch)?;
        if !node.one_of.is_empty() || !node.any_of.is_empty() {
            self.union(&node, &rust, Some(name))?;
        } else if node.ty == Some("string") && !node.enum_values.is_empty() {
            let values: Vec<String> =
                node.enum_values.iter().map(|v| v.as_str().unwrap_or_default().to_owned()).collect();
            self.enums.push(((None, values.clone()), rust.clone()));
            self.str_enum(&node, &rust, Some(name), &values)?;
        } else if node.ty == Some("object") && !node.properties.is_empty() {
            self.object(&node, &rust, Some(name))?;
        } else {
            // A component that is a plain scalar or array: a transparent
            // newtype would hide nothing useful, so it is an alias in Rust.
            bail!("{pointer}: components that are not objects, string enums or unions are not supported yet");
        }
        Ok(rust)
    }

    fn str_enum(&mut self, node: &Node, name: &str, component: Option<&str>, values: &[String]) -> Result<()> {
        let mut variants: Vec<(String, String)> = Vec::new();
        for v in values {
            let mut var = type_name(v);
            while variants.iter().any(|(n, _)| *n == var) {
                var.push('_');
            }
            variants.push((var, v.clone()));
        }
        self.types.insert(
            name.to_owned(),
            TypeDef {
                rust: name.to_owned(),
                component: component.map(str::to_owned),
                kind: Kind::StrEnum(variants),
                node: node.clone(),
            },
        );
        Ok(())
    }

    fn union(&mut self, node: &Node, name: &str, component: Option<&str>) -> Result<()> {
        // Reserve the name before recursing so nested names stay stable.
        self.types.insert(
            name.to_owned(),
            TypeDef {
                rust: name.to_owned(),
                component: component.map(str::to_owned),
                kind: Kind::Union(vec![]),
                node: node.clone(),
            },
        );
        let members = if node.one_of.is_empty() { &node.any_of } else { &node.one_of };
        let mut variants = Vec::new();
        for (i, m) in members.iter().enumerate() {
            let ty = self.rty(m, &format!("{name}V{}", i + 1), None)?;
            let var = match &ty {
                RTy::Named(n) => n.clone(),
                RTy::String => "String".into(),
                RTy::I64 | RTy::I32 => "Integer".into(),
                RTy::F64 | RTy::F32 => "Number".into(),
                RTy::Bool => "Bool".into(),
                RTy::Vec(_) => "Array".into(),
                _ => format!("V{}", i + 1),
            };
            let var = if variants.iter().any(|(v, _, _): &(String, RTy, Sch)| *v == var) {
                format!("{var}{}", i + 1)
            } else {
                var
            };
            variants.push((var, ty, m.clone()));
        }
        if let Some(t) = self.types.get_mut(name) {
            t.kind = Kind::Union(variants);
        }
        Ok(())
    }

    fn object(&mut self, node: &Node, name: &str, component: Option<&str>) -> Result<()> {
        self.types.insert(
            name.to_owned(),
            TypeDef {
                rust: name.to_owned(),
                component: component.map(str::to_owned),
                kind: Kind::Struct(vec![]),
                node: node.clone(),
            },
        );
        let mut fields = Vec::new();
        for (json, sch) in &node.properties {
            fields.push(self.field(json, sch, node.required.contains(json), name)?);
        }
        if let Some(t) = self.types.get_mut(name) {
            t.kind = Kind::Struct(fields);
        }
        Ok(())
    }

    fn field(&mut self, json: &str, sch: &Sch, required: bool, parent: &str) -> Result<Field> {
        let ty = self.rty(sch, &format!("{parent}{}", type_name(json)), Some(json))?;
        let node = self.r.resolve(sch)?;
        let default = match sch {
            Sch::Inline(n) => n.default.clone(),
            Sch::Ref(_) => None,
        };
        Ok(Field {
            json: json.to_owned(),
            rust: field_name(json),
            ty,
            required,
            nullable: node.nullable,
            default,
            description: node.description.clone(),
            sch: sch.clone(),
            node,
        })
    }
}

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
    let mut b =
        Builder { r: Resolver::new(doc), types: IndexMap::new(), enums: Vec::new(), components: IndexMap::new() };

    // Components first, in document order, so their names win.
    let mut aliases = IndexMap::new();
    if let Some(c) = &doc.components {
        for name in c.schemas.keys() {
            let canon = b.r.canonical(name)?;
            if canon == *name {
                b.component_rust(name)?;
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
    b: &mut Builder<'_>,
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
            oa::ParameterSchemaOrContent::Schema(s) => b.r.convert(s, &format!("{pp}/schema"))?,
            oa::ParameterSchemaOrContent::Content(_) => bail!("{pp}: parameters with `content` are not supported"),
        };
        let node = b.r.resolve(&sch)?;
        match node.ty {
            Some("string" | "integer" | "number" | "boolean") => {}
            Some("array") => {
                let item = b.r.resolve(node.items.as_ref().context("array without items")?)?;
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
        if !params.iter().any(|p| p.location == ParamIn::Path && p.field.json == name) {
            bail!("{pointer}: path parameter {name:?} is not declared");
        }
    }

    let params_type = if params.is_empty() {
        None
    } else {
        let name = b.unique_name(format!("{op_type}Params"));
        let node = Node { pointer: format!("{pointer}/parameters"), ty: Some("object"), ..Node::default() };
        b.types.insert(
            name.clone(),
            TypeDef {
                rust: name.clone(),
                component: None,
                kind: Kind::Struct(params.iter().map(|p| p.field.clone()).collect()),
                node,
            },
        );
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
            let sch = b.r.convert(s, &format!("{bp}/content/application~1json/schema"))?;
            let node = b.r.resolve(&sch)?;
            if node.ty != Some("object") || node.properties.is_empty() {
                bail!("{bp}: the request body must be an object with properties");
            }
            let ty = match b.rty(&sch, &format!("{op_type}Request"), None)? {
                RTy::Named(n) => n,
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
                let sch = b.r.convert(s, &format!("{rp}/content/application~1json/schema"))?;
                let ty = b.rty(&sch, &format!("{op_type}{status}Response"), None)?;
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
