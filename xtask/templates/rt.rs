//! Runtime support shared by every generated module: request extractors that
//! never fail on bad input (so every error can be collected and reported at
//! once), the structural pass over JSON that precedes `garde` validation, the
//! error envelope, and the middleware that turns every framework error into it.

use std::{fmt, marker::PhantomData, sync::Arc};

use poem::{
    Endpoint, EndpointExt, IntoResponse, Request, RequestBody, Response,
    http::{HeaderValue, StatusCode, header},
};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{
        MetaMediaType, MetaParamIn, MetaRequest, MetaSchemaRef, MetaSecurityScheme, Registry,
    },
};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

use crate::error_codes::ErrorCode;

/// The only media type the contract speaks.
pub const JSON: &str = "application/json";

/// Default cap on request bodies; override by attaching a [`BodyLimit`] with
/// `Route::data` (the service's config does).
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// Largest request body accepted, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

// ---------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------

/// One failing field, by its JSON path (`cc[1]`, `page_size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every failure of one request, in the order found.
#[derive(Debug, Default, Clone)]
pub struct FieldErrors(Vec<FieldError>);

impl FieldErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.0
    }

    /// True when `path` or one of its parents already failed the structural
    /// pass: garde then saw a placeholder there, not user input.
    fn covers(&self, path: &str) -> bool {
        self.0.iter().any(|e| is_same_or_child(path, &e.field))
    }

    /// The `data` member of a 400 envelope.
    pub fn to_data(&self) -> Value {
        serde_json::json!({ "errors": self.0 })
    }
}

fn is_same_or_child(path: &str, parent: &str) -> bool {
    parent.is_empty()
        || path == parent
        || path
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.') || rest.starts_with('['))
}

fn join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

// ---------------------------------------------------------------------------
// Shapes: the structural half of validation
// ---------------------------------------------------------------------------

/// A static description of a JSON schema's structure (types, required,
/// nullable, enums, formats). It is checked before deserializing so that a
/// wrong type or a missing field is reported by name, together with every
/// other failure, instead of serde stopping at the first one.
#[derive(Debug)]
pub enum Shape {
    Any,
    Bool,
    Integer { min: i64, max: i64 },
    Number,
    String(StrFormat),
    Enum(&'static [&'static str]),
    Array(&'static Shape),
    Object(&'static [Prop]),
    Map(&'static Shape),
    Nullable(&'static Shape),
    /// Exactly one member must match.
    OneOf(&'static [&'static Shape]),
    /// At least one member must match.
    AnyOf(&'static [&'static Shape]),
}

/// String formats that change the Rust type (and so must parse).
#[derive(Debug, Clone, Copy)]
pub enum StrFormat {
    Plain,
    Date,
    DateTime,
    Uuid,
}

/// One property of an object shape.
#[derive(Debug)]
pub struct Prop {
    pub name: &'static str,
    pub required: bool,
    pub shape: &'static Shape,
}

impl Shape {
    /// A value of the right type standing in for a bad one, so the rest of
    /// the object can still be deserialized and checked by garde.
    fn placeholder(&self) -> Value {
        match self {
            Shape::Any | Shape::Nullable(_) => Value::Null,
            Shape::Bool => Value::Bool(false),
            Shape::Integer { min, .. } => Value::from((*min).max(0)),
            Shape::Number => Value::from(0),
            Shape::String(StrFormat::Plain) => Value::from(""),
            Shape::String(StrFormat::Date) => Value::from("1970-01-01"),
            Shape::String(StrFormat::DateTime) => Value::from("1970-01-01T00:00:00Z"),
            Shape::String(StrFormat::Uuid) => Value::from("00000000-0000-0000-0000-000000000000"),
            Shape::Enum(values) => Value::from(values.first().copied().unwrap_or_default()),
            Shape::Array(_) => Value::Array(Vec::new()),
            Shape::Map(_) => Value::Object(Map::new()),
            Shape::Object(props) => Value::Object(
                props
                    .iter()
                    .filter(|p| p.required)
                    .map(|p| (p.name.to_owned(), p.shape.placeholder()))
                    .collect(),
            ),
            Shape::OneOf(variants) | Shape::AnyOf(variants) => variants.first().map_or(Value::Null, |s| s.placeholder()),
        }
    }

    /// Checks `value` in place. Bad members are reported and replaced by
    /// placeholders; returns false when `value` itself has the wrong type.
    pub fn check(&self, value: &mut Value, path: &str, errs: &mut FieldErrors) -> bool {
        match self {
            Shape::Any => true,
            Shape::Nullable(inner) => value.is_null() || inner.check(value, path, errs),
            _ if value.is_null() => {
                errs.push(path, "must not be null");
                false
            }
            Shape::Bool => expect(value.is_boolean(), path, "must be a boolean", errs),
            Shape::Number => expect(value.is_number(), path, "must be a number", errs),
            Shape::Integer { min, max } => match value.as_i64() {
                Some(v) if (*min..=*max).contains(&v) => true,
                Some(_) => expect(false, path, &format!("must be an integer between {min} and {max}"), errs),
                None if value.is_u64() => expect(false, path, "integer is out of range", errs),
                None => expect(false, path, "must be an integer", errs),
            },
            Shape::String(format) => match value.as_str() {
                None => expect(false, path, "must be a string", errs),
                Some(s) => match format {
                    StrFormat::Plain => true,
                    StrFormat::Date => expect(
                        chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() && s.len() == 10,
                        path,
                        "must be a calendar date (YYYY-MM-DD)",
                        errs,
                    ),
                    StrFormat::DateTime => expect(
                        chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                        path,
                        "must be an RFC 3339 date-time",
                        errs,
                    ),
                    StrFormat::Uuid => expect(uuid::Uuid::parse_str(s).is_ok(), path, "must be a UUID", errs),
                },
            },
            Shape::Enum(values) => {
                let ok = value.as_str().is_some_and(|s| values.contains(&s));
                expect(ok, path, &format!("must be one of: {}", values.join(", ")), errs)
            }
            Shape::Array(item) => {
                let Some(items) = value.as_array_mut() else {
                    return expect(false, path, "must be an array", errs);
                };
                for (i, v) in items.iter_mut().enumerate() {
                    if !item.check(v, &format!("{path}[{i}]"), errs) {
                        *v = item.placeholder();
                    }
                }
                true
            }
            Shape::Map(item) => {
                let Some(map) = value.as_object_mut() else {
                    return expect(false, path, "must be an object", errs);
                };
                for (k, v) in map.iter_mut() {
                    if !item.check(v, &join(path, k), errs) {
                        *v = item.placeholder();
                    }
                }
                true
            }
            Shape::Object(props) => {
                let Some(map) = value.as_object_mut() else {
                    return expect(false, path, "must be an object", errs);
                };
                for prop in props.iter() {
                    let field = join(path, prop.name);
                    match map.get_mut(prop.name) {
                        None if prop.required => {
                            errs.push(field, "is required");
                            map.insert(prop.name.to_owned(), prop.shape.placeholder());
                        }
                        None => {}
                        Some(v) => {
                            if !prop.shape.check(v, &field, errs) {
                                *v = prop.shape.placeholder();
                            }
                        }
                    }
                }
                true
            }
            Shape::OneOf(variants) | Shape::AnyOf(variants) => {
                // A member matches when it accepts the value without errors.
                let matching = variants
                    .iter()
                    .filter(|s| {
                        let mut probe = value.clone();
                        let mut scratch = FieldErrors::default();
                        s.check(&mut probe, path, &mut scratch) && scratch.is_empty()
                    })
                    .count();
                match (self, matching) {
                    (_, 0) => expect(false, path, "does not match any of the allowed schemas", errs),
                    (Shape::OneOf(_), n) if n > 1 => {
                        expect(false, path, "matches more than one of the allowed schemas (oneOf)", errs)
                    }
                    _ => true,
                }
            }
        }
    }
}

fn expect(ok: bool, path: &str, message: &str, errs: &mut FieldErrors) -> bool {
    if !ok {
        errs.push(path, message);
    }
    ok
}

/// Implemented by every generated request model: its structure and the map
/// from garde's Rust field paths to JSON paths.
pub trait Model: DeserializeOwned + garde::Validate<Context = ()> {
    const SHAPE: &'static Shape;
    /// `(rust_name, json_name)` pairs where the two differ.
    const RENAMES: &'static [(&'static str, &'static str)] = &[];
}

/// Structural pass, deserialization and garde validation of one JSON value;
/// every failure lands in `errs` under its JSON path.
pub fn validate_value<T: Model>(mut value: Value, base: &str, errs: &mut FieldErrors) -> Option<T> {
    let structural_ok = T::SHAPE.check(&mut value, base, errs);
    if !structural_ok {
        return None;
    }
    let parsed: T = match serde_json::from_value(value) {
        Ok(v) => v,
        Err(e) => {
            // The shapes mirror the types, so this means a generator bug;
            // still an envelope, never a panic.
            errs.push(base, format!("invalid value: {e}"));
            return None;
        }
    };
    if let Err(report) = parsed.validate() {
        for (path, error) in report.iter() {
            let path = rename_path(&path.to_string(), T::RENAMES);
            let path = if base.is_empty() { path } else { join(base, &path) };
            if !errs.covers(&path) {
                errs.push(path, error.message().to_string());
            }
        }
    }
    Some(parsed)
}

fn rename_path(path: &str, renames: &[(&str, &str)]) -> String {
    if renames.is_empty() {
        return path.to_owned();
    }
    let mut out = String::with_capacity(path.len());
    let mut ident = String::new();
    let flush = |ident: &mut String, out: &mut String| {
        let json = renames
            .iter()
            .find(|(r, _)| *r == ident.as_str())
            .map_or(ident.as_str(), |(_, j)| *j);
        out.push_str(json);
        ident.clear();
    };
    let mut in_index = false;
    for c in path.chars() {
        match c {
            '[' => {
                flush(&mut ident, &mut out);
                in_index = true;
                out.push(c);
            }
            ']' => {
                in_index = false;
                out.push(c);
            }
            '.' if !in_index => {
                flush(&mut ident, &mut out);
                out.push(c);
            }
            _ if in_index => out.push(c),
            _ => ident.push(c),
        }
    }
    flush(&mut ident, &mut out);
    out
}

// ---------------------------------------------------------------------------
// Extractors. None of them fails on bad input: the generated operation
// collects all problems and answers one 400 naming every field.
// ---------------------------------------------------------------------------

/// The parameters of one operation, described for the OpenAPI document.
pub trait ParamSet: Send + Sync + 'static {
    const REQUIRED: &'static [bool];
    fn schema(index: usize) -> MetaSchemaRef;
    fn register(_registry: &mut Registry) {}
}

macro_rules! raw_param {
    ($name:ident, $in:expr, $doc:literal) => {
        #[doc = $doc]
        pub struct $name<P, const I: usize>(pub Vec<String>, PhantomData<P>);

        impl<'a, P: ParamSet, const I: usize> ApiExtractor<'a> for $name<P, I> {
            const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::Parameter];
            const PARAM_IS_REQUIRED: bool = P::REQUIRED[I];
            type ParamType = ();
            type ParamRawType = ();

            fn register(registry: &mut Registry) {
                P::register(registry);
            }

            fn param_in() -> Option<MetaParamIn> {
                Some($in)
            }

            fn param_schema_ref() -> Option<MetaSchemaRef> {
                Some(P::schema(I))
            }

            async fn from_request(
                request: &'a Request,
                _body: &mut RequestBody,
                opts: ExtractParamOptions<()>,
            ) -> poem::Result<Self> {
                Ok(Self(raw_values($in, request, opts.name), PhantomData))
            }
        }
    };
}

raw_param!(Query, MetaParamIn::Query, "Raw values of one query parameter.");
raw_param!(Header, MetaParamIn::Header, "Raw values of one header parameter.");
// Named `Path` on purpose: poem-openapi recognises path parameters by the
// type's name and maps them to its internal `paramN` route segments.
raw_param!(Path, MetaParamIn::Path, "Raw value of one path parameter.");

fn raw_values(location: MetaParamIn, request: &Request, name: &str) -> Vec<String> {
    match location {
        MetaParamIn::Path => request.raw_path_param(name).map(str::to_owned).into_iter().collect(),
        MetaParamIn::Header => request
            .headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok().map(str::to_owned))
            .collect(),
        _ => form_urlencoded::parse(request.uri().query().unwrap_or_default().as_bytes())
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .collect(),
    }
}

/// How one raw parameter string becomes JSON before the structural pass.
#[derive(Debug, Clone, Copy)]
pub enum Coerce {
    String,
    Integer,
    Number,
    Bool,
    /// Repeated values (`?tag=a&tag=b`) or a comma list, each item coerced.
    Array(&'static Coerce),
}

/// Builds the JSON object the structural pass checks for a parameter set.
pub fn params_object(values: &[(&'static str, Vec<String>, Coerce)]) -> Value {
    let mut map = Map::new();
    for (name, raw, coerce) in values {
        let value = match coerce {
            Coerce::Array(item) => {
                let parts: Vec<&str> = if raw.len() == 1 {
                    raw[0].split(',').collect()
                } else {
                    raw.iter().map(String::as_str).collect()
                };
                if raw.is_empty() {
                    continue;
                }
                Value::Array(parts.into_iter().map(|s| coerce_one(s, item)).collect())
            }
            _ => match raw.first() {
                Some(s) => coerce_one(s, coerce),
                None => continue,
            },
        };
        map.insert((*name).to_owned(), value);
    }
    Value::Object(map)
}

fn coerce_one(s: &str, coerce: &Coerce) -> Value {
    // A string that does not parse stays a string, so the structural pass
    // reports "must be an integer" under the parameter's name.
    match coerce {
        Coerce::Integer => s.parse::<i64>().map_or_else(|_| Value::from(s), Value::from),
        Coerce::Number => s
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map_or_else(|| Value::from(s), Value::Number),
        Coerce::Bool => match s {
            "true" => Value::Bool(true),
            "false" => Value::Bool(false),
            _ => Value::from(s),
        },
        Coerce::String | Coerce::Array(_) => Value::from(s),
    }
}

/// Why a JSON request body could not be read.
#[derive(Debug, Clone)]
pub enum BodyError {
    Missing,
    ContentType(String),
    TooLarge(usize),
    Read(String),
    Malformed(String),
}

impl BodyError {
    /// The registry code and field error this failure is reported with.
    pub fn into_error(self) -> (ErrorCode, String) {
        match self {
            BodyError::Missing => (ErrorCode::ValidationFailed, "request body is required".into()),
            BodyError::ContentType(ct) => (
                ErrorCode::UnsupportedMediaType,
                format!("Content-Type must be {JSON}, got {ct:?}"),
            ),
            BodyError::TooLarge(limit) => {
                (ErrorCode::PayloadTooLarge, format!("request body exceeds {limit} bytes"))
            }
            BodyError::Read(e) => (ErrorCode::MalformedBody, format!("could not read body: {e}")),
            BodyError::Malformed(e) => (ErrorCode::MalformedBody, format!("invalid JSON: {e}")),
        }
    }
}

/// A JSON request body of model `T`, read but not yet validated.
pub struct JsonBody<T, const REQUIRED: bool = true>(pub Result<Option<Value>, BodyError>, PhantomData<T>);

impl<'a, T: poem_openapi::types::Type, const REQUIRED: bool> ApiExtractor<'a> for JsonBody<T, REQUIRED> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType {
                content_type: JSON,
                schema: T::schema_ref(),
            }],
            required: REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(Self(read_json(request, body).await, PhantomData))
    }
}

async fn read_json(request: &Request, body: &mut RequestBody) -> Result<Option<Value>, BodyError> {
    let limit = request.data::<BodyLimit>().map_or(DEFAULT_BODY_LIMIT, |l| l.0);
    let declared_len = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared_len.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let bytes = match body.take() {
        Ok(b) => b.into_bytes_limit(limit).await.map_err(|e| match e {
            poem::error::ReadBodyError::PayloadTooLarge => BodyError::TooLarge(limit),
            other => BodyError::Read(other.to_string()),
        })?,
        Err(_) => return Err(BodyError::Missing),
    };
    if bytes.is_empty() {
        return Ok(None);
    }
    let content_type = request.content_type().unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !(essence.eq_ignore_ascii_case(JSON) || essence.to_ascii_lowercase().ends_with("+json")) {
        return Err(BodyError::ContentType(content_type.to_owned()));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| BodyError::Malformed(e.to_string()))
}

/// Describes an `apiKey` security scheme carried in a header.
pub trait ApiKeySpec: Send + Sync + 'static {
    const SCHEME: &'static str;
    const HEADER: &'static str;
    const DESCRIPTION: Option<&'static str>;
}

/// The raw credential of an `apiKey` header scheme; verified by the
/// application's `Auth` implementation in the generated operation.
pub struct ApiKey<S>(pub Option<String>, PhantomData<S>);

impl<'a, S: ApiKeySpec> ApiExtractor<'a> for ApiKey<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            S::SCHEME,
            MetaSecurityScheme {
                ty: "apiKey",
                description: S::DESCRIPTION,
                name: Some(S::HEADER),
                key_in: Some("header"),
                scheme: None,
                bearer_format: None,
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![S::SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        Ok(Self(request.header(S::HEADER).map(str::to_owned), PhantomData))
    }
}

/// Why the application refused a credential; `code`'s HTTP status decides the
/// response (401 normally, 500 when the credential store cannot answer).
#[derive(Debug, Clone)]
pub struct AuthRejection {
    pub code: ErrorCode,
    pub msg: Option<String>,
}

impl AuthRejection {
    pub fn new(code: ErrorCode) -> Self {
        Self { code, msg: None }
    }
}

// ---------------------------------------------------------------------------
// Responses and the envelope
// ---------------------------------------------------------------------------

/// Current time as the envelope's `timestamp`.
pub fn now() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc::now()
}

/// Implemented by the generated error-body models (the schema used by the
/// framework's 400/401/500 answers), so generated code can build them.
pub trait ErrorEnvelope: Sized {
    fn envelope(code: i64, msg: String, data: Option<Value>) -> Self;

    /// The registry's message for `code`.
    fn from_code(code: ErrorCode) -> Self {
        Self::envelope(code.code(), code.message().to_owned(), None)
    }

    /// `code` with a specific message (e.g. which field conflicted).
    fn with_msg(code: ErrorCode, msg: impl Into<String>) -> Self {
        Self::envelope(code.code(), msg.into(), None)
    }

    /// The 400 answer naming every failing field.
    fn validation(errs: &FieldErrors) -> Self {
        Self::envelope(
            ErrorCode::ValidationFailed.code(),
            ErrorCode::ValidationFailed.message().to_owned(),
            Some(errs.to_data()),
        )
    }
}

/// Implemented by every per-operation response enum that documents error
/// statuses: builds the variant documented for `code`'s status.
pub trait FromErrorCode: Sized {
    fn from_error(code: ErrorCode, msg: Option<String>, data: Option<Value>) -> Self;
}

/// Serializes `body` as the response with `status`; a serialization failure
/// (never expected for generated models) is still an envelope.
pub fn json_response<T: Serialize>(status: u16, body: &T) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => Response::builder()
            .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .content_type(JSON)
            .body(bytes),
        Err(_) => Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .content_type(JSON)
            .body(r#"{"code":5000,"msg":"internal error"}"#),
    }
}

/// The envelope used where no operation's typed response applies (unknown
/// routes, wrong methods, panics).
#[derive(Debug, Serialize, Deserialize)]
pub struct Envelope {
    pub code: i64,
    pub msg: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    pub timestamp: chrono::DateTime<chrono::Utc>,
}

pub fn envelope_response(status: StatusCode, code: ErrorCode, msg: Option<String>, data: Option<Value>) -> Response {
    let body = Envelope {
        code: code.code(),
        msg: msg.unwrap_or_else(|| code.message().to_owned()),
        data,
        timestamp: now(),
    };
    json_response(status.as_u16(), &body)
}

/// Documented methods per route template (`/users/{id}`), relative to the
/// base path; used for 405's `Allow` header.
pub type AllowTable = &'static [(&'static str, &'static str)];

fn allow_for(path: &str, base: &str, table: AllowTable) -> Option<&'static str> {
    let rel = path.strip_prefix(base).unwrap_or(path);
    let rel = rel.trim_end_matches('/');
    let segs: Vec<&str> = rel.split('/').collect();
    table.iter().find_map(|(template, methods)| {
        let tsegs: Vec<&str> = template.trim_end_matches('/').split('/').collect();
        let matches = tsegs.len() == segs.len()
            && tsegs
                .iter()
                .zip(&segs)
                .all(|(t, s)| (t.starts_with('{') && t.ends_with('}') && !s.is_empty()) || t == s);
        matches.then_some(*methods)
    })
}

/// Wraps the whole application: panics become a 500 envelope, and every
/// error that escaped a typed response (unknown route, wrong method, body
/// read failures) becomes the envelope with `Content-Type: application/json`.
pub fn envelope_errors<E: Endpoint + 'static>(ep: E, base: &'static str, allow: AllowTable) -> impl Endpoint<Output = Response> {
    let ep = Arc::new(ep.with(poem::middleware::CatchPanic::new().with_handler(panic_response)));
    poem::endpoint::make(move |req: Request| {
        let ep = ep.clone();
        async move {
            let path = req.uri().path().to_owned();
            match ep.call(req).await {
                Ok(resp) => Ok::<Response, poem::Error>(resp.into_response()),
                Err(err) => Ok(error_to_envelope(err, &path, base, allow)),
            }
        }
    })
}

/// The panic payload is reported by the panic hook (and so the logs); the
/// client only learns that something failed.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    envelope_response(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None, None)
}

fn error_to_envelope(err: poem::Error, path: &str, base: &str, allow: AllowTable) -> Response {
    let status = err.status();
    match status {
        StatusCode::NOT_FOUND => envelope_response(status, ErrorCode::RouteNotFound, None, None),
        StatusCode::METHOD_NOT_ALLOWED => {
            let mut resp = envelope_response(status, ErrorCode::MethodNotAllowed, None, None);
            if let Some(methods) = allow_for(path, base, allow) {
                resp.headers_mut().insert(header::ALLOW, HeaderValue::from_static(methods));
            }
            resp
        }
        StatusCode::UNAUTHORIZED => envelope_response(status, ErrorCode::MissingToken, None, None),
        StatusCode::PAYLOAD_TOO_LARGE => {
            envelope_response(StatusCode::BAD_REQUEST, ErrorCode::PayloadTooLarge, None, None)
        }
        s if s.is_client_error() => envelope_response(
            StatusCode::BAD_REQUEST,
            ErrorCode::ValidationFailed,
            None,
            Some(serde_json::json!({ "errors": [{ "field": "", "message": err.to_string() }] })),
        ),
        _ => envelope_response(StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal, None, None),
    }
}

// ---------------------------------------------------------------------------
// Value types with wire rules of their own
// ---------------------------------------------------------------------------

/// `format: password`: a string that never shows in `Debug` or logs.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Password(String);

impl Password {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself; call only to hash or verify it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(***)")
    }
}

impl garde::rules::length::chars::HasChars for Password {
    fn num_chars(&self) -> usize {
        self.0.chars().count()
    }
}

impl garde::rules::AsStr for Password {
    fn as_str(&self) -> &str {
        &self.0
    }
}

/// `serde(with)` helper keeping absent (`None`) and `null` (`Some(None)`)
/// apart for optional nullable fields.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<T: Serialize, S: Serializer>(v: &Option<Option<T>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(inner) => inner.serialize(s),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T: Deserialize<'de>, D: Deserializer<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
        Option::<T>::deserialize(d).map(Some)
    }
}

/// Implements poem-openapi's `Type` for a generated model from its schema
/// functions, so the emitted document carries exactly the contract's schema.
#[macro_export]
#[doc(hidden)]
macro_rules! __impl_type {
    ($ty:ty, $name:expr, $schema_ref:expr, $register:expr) => {
        impl ::poem_openapi::types::Type for $ty {
            const IS_REQUIRED: bool = true;
            type RawValueType = Self;
            type RawElementValueType = Self;

            fn name() -> ::std::borrow::Cow<'static, str> {
                ::std::borrow::Cow::Borrowed($name)
            }

            fn schema_ref() -> ::poem_openapi::registry::MetaSchemaRef {
                $schema_ref
            }

            fn register(registry: &mut ::poem_openapi::registry::Registry) {
                let f: fn(&mut ::poem_openapi::registry::Registry) = $register;
                f(registry)
            }

            fn as_raw_value(&self) -> Option<&Self::RawValueType> {
                Some(self)
            }

            fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self::RawElementValueType> + 'a> {
                Box::new(self.as_raw_value().into_iter())
            }
        }
    };
}
pub use __impl_type as impl_type;

/// A JSON literal from the contract (defaults, examples, enum values). The
/// generator wrote valid JSON, so the `Null` fallback is never taken.
pub fn json(literal: &str) -> Value {
    serde_json::from_str(literal).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renames_only_identifiers() {
        let renames = &[("user_name", "userName")];
        assert_eq!(rename_path("user_name", renames), "userName");
        assert_eq!(rename_path("items[1].user_name", renames), "items[1].userName");
    }

    #[test]
    fn coverage_is_by_path_prefix() {
        let mut errs = FieldErrors::default();
        errs.push("cc[1]", "must be a string");
        assert!(errs.covers("cc[1]"));
        assert!(errs.covers("cc[1].x"));
        assert!(!errs.covers("cc"));
        assert!(!errs.covers("cc[10]"));
        assert!(!errs.covers("subject"));
    }
}
