//! Operations: one per path and method, with the parameters, request body,
//! responses and security requirements it declares, and the checks that tie
//! them together (input that can fail needs a 400, security needs a 401).

use anyhow::{Context, Result, bail};
use heck::ToSnakeCase;
use openapiv3 as oa;

use super::conditional;
use super::field_mask::{self, FieldMask};
use super::names::{fallback_operation_id, type_name};
use super::params::{self, Parameter};
use super::request_bodies::{self, RequestBody};
use super::responses::{self, Response, StatusKey};
use super::security::{self, SecurityRequirement, SecurityScheme};
use super::types::TypeBuilder;

#[derive(Debug, Clone)]
pub struct Operation {
    pub id: String,
    /// The trait method's name.
    pub fn_name: String,
    /// Lower case, as `#[oai(method = …)]` spells it.
    pub method: &'static str,
    pub path: String,
    pub pointer: String,
    pub tags: Vec<String>,
    pub summary: Option<String>,
    pub description: Option<String>,
    pub deprecated: bool,
    /// Path-level parameters merged with the operation's own.
    pub params: Vec<Parameter>,
    /// Name of the generated params struct, when there are parameters.
    pub params_type: Option<String>,
    pub request_body: Option<RequestBody>,
    /// Sorted by status.
    pub responses: Vec<Response>,
    /// Alternatives, any one of which admits a request; empty when the
    /// operation is open.
    pub security: Vec<SecurityRequirement>,
    /// The response enum the handler returns (see [`result_type_name`]).
    pub result_type: String,
    /// Generated as a raw handler: see [`RawHandler`].
    pub raw: Option<RawHandler>,
    /// Headers every response of a deprecated operation carries (see
    /// [`deprecation`]), with the extensions as the spec writes them.
    pub deprecation: Option<Deprecation>,
    /// Set when a response is in several media types (see [`OperationMedia`]).
    pub media: Option<OperationMedia>,
    /// A parameter selecting the members of the success bodies to send.
    pub field_mask: Option<FieldMask>,
}

/// The media types an operation's negotiated success responses are offered in, in
/// the order the spec first lists them (the server's preference): the glue
/// picks one from the request's `Accept` and passes it to the handler as
/// the enum `type_name`.
#[derive(Debug, Clone)]
pub struct OperationMedia {
    pub type_name: String,
    /// `(variant, media type)`.
    pub offers: Vec<(String, String)>,
}

fn operation_media(b: &mut TypeBuilder<'_>, responses: &[Response], op_type: &str) -> Option<OperationMedia> {
    let mut offers: Vec<(String, String)> = Vec::new();
    // Errors are not negotiated: one built from a problem is sent in its
    // first media type, so only what a handler answers with is offered.
    for r in responses.iter().filter(|r| !r.is_error()) {
        let Some(n) = &r.negotiated else { continue };
        for (v, m) in n.variants.iter().zip(&r.content) {
            if !offers.iter().any(|(ov, _)| ov == v) {
                offers.push((v.clone(), m.media_type.clone()));
            }
        }
    }
    if offers.is_empty() {
        return None;
    }
    let type_name = b.unique_name(format!("{op_type}Media"));
    b.reserved.push(type_name.clone());
    Some(OperationMedia { type_name, offers })
}

/// `deprecated: true` with `x-deprecated-at` and/or `x-sunset` (dates or
/// date-times): every response says so in `Deprecation` (RFC 9745,
/// `@<unix seconds>`) and `Sunset` (RFC 8594, an HTTP-date).
#[derive(Debug, Clone)]
pub struct Deprecation {
    /// `(name, value)` of each header, in that order.
    pub headers: Vec<(&'static str, String)>,
    /// `(extension, value)` as written, for the served document.
    pub extensions: Vec<(&'static str, serde_json::Value)>,
}

fn moment(v: &serde_json::Value, pointer: &str) -> Result<chrono::DateTime<chrono::Utc>> {
    let s = v.as_str().with_context(|| format!("{pointer}: must be a date or date-time string"))?;
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    let d = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .with_context(|| format!("{pointer}: {s:?} is neither a date (YYYY-MM-DD) nor an RFC 3339 date-time"))?;
    Ok(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
}

/// The deprecation headers of `op`, from `x-deprecated-at` and `x-sunset`.
pub fn deprecation(op: &oa::Operation, pointer: &str) -> Result<Option<Deprecation>> {
    let at = op.extensions.get("x-deprecated-at");
    let sunset = op.extensions.get("x-sunset");
    if at.is_none() && sunset.is_none() {
        return Ok(None);
    }
    if !op.deprecated {
        bail!("{pointer}: `x-deprecated-at` and `x-sunset` need `deprecated: true`");
    }
    let mut d = Deprecation { headers: Vec::new(), extensions: Vec::new() };
    let mut since = None;
    if let Some(v) = at {
        let t = moment(v, &format!("{pointer}/x-deprecated-at"))?;
        d.headers.push(("Deprecation", format!("@{}", t.timestamp())));
        d.extensions.push(("x-deprecated-at", v.clone()));
        since = Some(t);
    }
    if let Some(v) = sunset {
        let t = moment(v, &format!("{pointer}/x-sunset"))?;
        if since.is_some_and(|s| s > t) {
            bail!("{pointer}/x-sunset: the sunset comes before `x-deprecated-at`");
        }
        d.headers.push(("Sunset", t.format("%a, %d %b %Y %H:%M:%S GMT").to_string()));
        d.extensions.push(("x-sunset", v.clone()));
    }
    Ok(Some(d))
}

/// An operation the application serves by hand (`--raw ID` or
/// `x-raw-handler: true`): for a construct the generator cannot type (a
/// WebSocket upgrade, say) without giving up the rest of the spec. Only its
/// security is generated; its parameters, body and responses are not
/// read, and the served document carries the operation as the spec writes
/// it.
#[derive(Debug, Clone)]
pub struct RawHandler {
    /// The operation object, references to components other than schemas
    /// inlined (the served document has only schemas).
    pub document: serde_json::Value,
    /// Schema components it references, to register with the document.
    pub schema_refs: Vec<String>,
}

/// The extension that marks an operation as a raw handler.
pub const RAW_EXTENSION: &str = "x-raw-handler";

impl Operation {
    /// Whether a credential is checked at all.
    pub fn is_secured(&self) -> bool {
        !self.security.is_empty()
    }

    /// Whether a request without credentials is admitted too (`{}`).
    pub fn security_optional(&self) -> bool {
        self.security.iter().any(|r| r.schemes.is_empty())
    }

    /// Every scheme some alternative uses, once, in first-use order.
    pub fn schemes_used(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for u in self.security.iter().flat_map(|r| &r.schemes) {
            if !out.contains(&u.scheme.as_str()) {
                out.push(&u.scheme);
            }
        }
        out
    }

    pub fn has_status(&self, code: u16) -> bool {
        self.responses.iter().any(|r| r.status == StatusKey::Code(code))
    }
}

/// Where an operation sits in the document.
pub struct OperationSite<'d> {
    pub path: &'d str,
    pub method: &'static str,
    pub op: &'d oa::Operation,
    /// Parameters declared on the path item, shared by its operations.
    pub path_params: &'d [oa::ReferenceOr<oa::Parameter>],
    pub pointer: String,
}

pub fn method_name(m: &str) -> &'static str {
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

/// Builds one operation. The order of the steps is the order inline types
/// are named in, so it must not change without regenerating.
pub fn operation(
    b: &mut TypeBuilder<'_>,
    doc: &oa::OpenAPI,
    site: &OperationSite<'_>,
    schemes: &[SecurityScheme],
) -> Result<Operation> {
    let (op, pointer) = (site.op, site.pointer.as_str());
    let id = op.operation_id.clone().unwrap_or_else(|| fallback_operation_id(site.method, site.path));
    let op_type = type_name(&id);

    let raw = match op.extensions.get(RAW_EXTENSION) {
        None | Some(serde_json::Value::Bool(false)) => None,
        Some(serde_json::Value::Bool(true)) => Some(raw_handler(b, doc, op, pointer)?),
        Some(other) => bail!("{pointer}/{RAW_EXTENSION}: must be true or false, found {other}"),
    };
    let hint = |e: anyhow::Error| {
        anyhow::anyhow!(
            "{e:#}\n  (to serve this operation by hand and keep the rest typed, generate it as a raw handler: \
             `--raw {id}`, or `{RAW_EXTENSION}: true` on the operation)"
        )
    };
    let (params, params_type, request_body, responses) = if raw.is_some() {
        (Vec::new(), None, None, Vec::new())
    } else {
        let mut params = params::parameters(b, doc, site, &op_type).map_err(hint)?;
        conditional::type_if_match(op, &mut params);
        let params_type = params::params_struct(b, &params, pointer, &op_type);
        let request_body = request_bodies::request_body(b, doc, op, pointer, &op_type).map_err(hint)?;
        let responses = responses::responses(b, doc, op, pointer, &op_type).map_err(hint)?;
        (params, params_type, request_body, responses)
    };
    let security = security::requirements(doc, op, pointer, schemes)?;
    let deprecation = deprecation(op, pointer)?;
    let media = operation_media(b, &responses, &op_type);
    let field_mask = field_mask::field_mask(&b.resolver, &params, &responses)?;

    let operation = Operation {
        fn_name: id.to_snake_case(),
        id,
        method: site.method,
        path: site.path.to_owned(),
        pointer: pointer.to_owned(),
        tags: op.tags.clone(),
        summary: op.summary.clone(),
        description: op.description.clone(),
        deprecated: op.deprecated,
        params,
        params_type,
        request_body,
        responses,
        security,
        result_type: String::new(),
        raw,
        deprecation,
        media,
        field_mask,
    };
    Ok(operation)
}

/// The name of an operation's response enum: always `{Op}Response`. The
/// names are reserved before any schema is named, so a schema called the
/// same becomes `{Name}Body` instead, and adding a schema never renames a
/// handler's return type.
pub fn result_type_name(operation_id: &str) -> String {
    format!("{}Response", type_name(operation_id))
}

/// The operation as the served document will carry it.
fn raw_handler(b: &mut TypeBuilder<'_>, doc: &oa::OpenAPI, op: &oa::Operation, pointer: &str) -> Result<RawHandler> {
    let components = serde_json::to_value(&doc.components).context("serializing components")?;
    let mut document = serde_json::to_value(op).with_context(|| format!("{pointer}: serializing the operation"))?;
    if let Some(o) = document.as_object_mut() {
        o.remove(RAW_EXTENSION);
        // poem-openapi writes the id the glue declares; keep the spec's
        // (absent or not) rather than two spellings.
    }
    let mut schema_refs = Vec::new();
    inline_refs(&mut document, &components, &mut schema_refs, pointer, 0)?;
    for name in &schema_refs {
        b.component(name)?;
    }
    Ok(RawHandler { document, schema_refs })
}

/// Replaces each `$ref` to a component other than a schema by the
/// component (a chain of them at most 32 deep) and collects schema names.
fn inline_refs(
    v: &mut serde_json::Value,
    components: &serde_json::Value,
    schemas: &mut Vec<String>,
    pointer: &str,
    depth: usize,
) -> Result<()> {
    if depth > 32 {
        bail!("{pointer}: references nested more than 32 deep");
    }
    match v {
        serde_json::Value::Object(o) => {
            if let Some(serde_json::Value::String(r)) = o.get("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    if !schemas.iter().any(|s| s == name) {
                        schemas.push(name.to_owned());
                    }
                    return Ok(());
                }
                let target = r
                    .strip_prefix("#/components")
                    .and_then(|p| components.pointer(p))
                    .with_context(|| format!("{pointer}: unresolved $ref {r:?}"))?
                    .clone();
                *v = target;
                return inline_refs(v, components, schemas, pointer, depth + 1);
            }
            for x in o.values_mut() {
                inline_refs(x, components, schemas, pointer, depth)?;
            }
        }
        serde_json::Value::Array(a) => {
            for x in a {
                inline_refs(x, components, schemas, pointer, depth)?;
            }
        }
        _ => {}
    }
    Ok(())
}
