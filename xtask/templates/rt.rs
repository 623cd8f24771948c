//! Runtime support shared by every generated module: request extractors that
//! never fail on bad input (so every error can be collected and reported at
//! once), the structural pass over JSON that precedes `garde` validation, the
//! error envelope, and the middleware that turns every framework error into it.

use std::{
    collections::HashSet,
    fmt,
    hash::{BuildHasher, RandomState},
    marker::PhantomData,
    sync::Arc,
};

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

/// How request bodies are read; attach one with `Route::data` to override
/// the defaults (the service's config does).
#[derive(Debug, Clone)]
pub struct BodyLimits {
    /// Largest body accepted, in bytes.
    pub max_bytes: usize,
    /// Longest time the whole body may take to arrive (waiting for buffer
    /// room included), so a client trickling bytes cannot hold a connection
    /// and its buffer.
    pub read_timeout: std::time::Duration,
    /// Room shared by every request using these limits, in KiB: each body
    /// reserves its declared length (or `max_bytes`) before it is read.
    room: Arc<tokio::sync::Semaphore>,
    room_kib: u32,
}

impl BodyLimits {
    /// `max_buffered_bytes` bounds what all requests together may buffer.
    pub fn new(max_bytes: usize, read_timeout: std::time::Duration, max_buffered_bytes: usize) -> Self {
        let room_kib = u32::try_from(max_buffered_bytes / 1024).unwrap_or(u32::MAX).max(1);
        BodyLimits { max_bytes, read_timeout, room: Arc::new(tokio::sync::Semaphore::new(room_kib as usize)), room_kib }
    }

    /// KiB of body buffer not reserved right now.
    pub fn room_available_kib(&self) -> usize {
        self.room.available_permits()
    }

    /// The limits of requests that carry none: one room for all of them.
    fn fallback() -> &'static BodyLimits {
        static DEFAULT: std::sync::OnceLock<BodyLimits> = std::sync::OnceLock::new();
        DEFAULT.get_or_init(|| BodyLimits::new(1024 * 1024, std::time::Duration::from_secs(10), 256 * 1024 * 1024))
    }
}

/// Bodies at least this large are parsed and validated on a blocking
/// thread, so a big request never stalls the async threads.
pub const INLINE_PARSE_LIMIT: usize = 16 * 1024;

/// At most this many large bodies are parsed at once (one per core): a
/// parsed JSON tree takes several times the body's size in memory.
fn parse_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

// ---------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------

/// Most field errors one 400 lists; the rest are only counted (`omitted`),
/// so the answer to a huge bad request stays small.
pub const MAX_LISTED_ERRORS: usize = 100;

/// One failing field, by its JSON path (`cc[1]`, `page_size`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// Every failure of one request: the first [`MAX_LISTED_ERRORS`] in the
/// order found, and the count of all. Recording a failure costs time in the
/// length of its path, whatever came before, so collecting is linear.
#[derive(Debug)]
pub struct FieldErrors {
    listed: Vec<FieldError>,
    total: usize,
    /// Hashes of the locations the structural pass replaced by placeholders:
    /// garde's findings at or below them are about the placeholder, not user
    /// input. Keyed per request, so a client cannot aim for collisions.
    replaced: HashSet<u64>,
    keys: RandomState,
    /// Probing a oneOf member only needs to know whether anything failed.
    count_only: bool,
}

impl Default for FieldErrors {
    fn default() -> Self {
        FieldErrors {
            listed: Vec::new(),
            total: 0,
            replaced: HashSet::new(),
            keys: RandomState::new(),
            count_only: false,
        }
    }
}

impl FieldErrors {
    fn probe() -> Self {
        FieldErrors { count_only: true, keys: RandomState::new(), ..FieldErrors::default() }
    }

    /// Records a failure at a path given as text (parameters, the body).
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.total += 1;
        if !self.count_only && self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(FieldError { field: field.into(), message: message.into() });
        }
    }

    /// Records a structural failure at `loc`, whose value is then replaced.
    fn fail(&mut self, loc: &Loc<'_>, message: impl fmt::Display) {
        self.total += 1;
        if self.count_only {
            return;
        }
        self.replaced.insert(loc.hash);
        if self.listed.len() < MAX_LISTED_ERRORS {
            self.listed.push(FieldError { field: loc.render(), message: message.to_string() });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// How many failures were found, listed or not.
    pub fn total(&self) -> usize {
        self.total
    }

    pub fn into_vec(self) -> Vec<FieldError> {
        self.listed
    }

    /// The `data` member of a 400 envelope: `errors` (at most
    /// [`MAX_LISTED_ERRORS`]) and, when some were left out, `omitted`.
    pub fn to_data(&self) -> Value {
        let omitted = self.total - self.listed.len();
        if omitted == 0 {
            serde_json::json!({ "errors": self.listed })
        } else {
            serde_json::json!({ "errors": self.listed, "omitted": omitted })
        }
    }

    fn child_hash(&self, parent: u64, seg: Seg<'_>) -> u64 {
        match seg {
            Seg::Key(k) => self.keys.hash_one((parent, 0u8, k)),
            Seg::Index(i) => self.keys.hash_one((parent, 1u8, i)),
        }
    }

    /// True when a garde finding at `path` (below `base`) is at or under a
    /// location the structural pass replaced.
    fn covers(&self, base: &str, path: &garde::Path, renames: &[(&str, &str)]) -> bool {
        if self.replaced.is_empty() {
            return false;
        }
        let mut h = 0;
        if !base.is_empty() {
            h = self.child_hash(h, Seg::Key(base));
        }
        if self.replaced.contains(&h) {
            return true;
        }
        for (kind, component) in path.__iter().rev() {
            let seg = match kind {
                garde::error::Kind::None => continue,
                garde::error::Kind::Key => {
                    let json = renames.iter().find(|(r, _)| *r == component.as_str()).map_or(component.as_str(), |(_, j)| *j);
                    Seg::Key(json)
                }
                garde::error::Kind::Index => match component.parse::<usize>() {
                    Ok(i) => Seg::Index(i),
                    Err(_) => Seg::Key(component.as_str()),
                },
            };
            h = self.child_hash(h, seg);
            if self.replaced.contains(&h) {
                return true;
            }
        }
        false
    }
}

#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

/// A location in the value being checked: a chain on the stack, rendered
/// as text only for the errors that are listed.
struct Loc<'a> {
    parent: Option<&'a Loc<'a>>,
    seg: Option<Seg<'a>>,
    hash: u64,
}

impl<'a> Loc<'a> {
    fn root(base: &'a str, errs: &FieldErrors) -> Loc<'a> {
        if base.is_empty() {
            Loc { parent: None, seg: None, hash: 0 }
        } else {
            Loc { parent: None, seg: Some(Seg::Key(base)), hash: errs.child_hash(0, Seg::Key(base)) }
        }
    }

    fn child(&'a self, seg: Seg<'a>, errs: &FieldErrors) -> Loc<'a> {
        Loc { parent: Some(self), seg: Some(seg), hash: errs.child_hash(self.hash, seg) }
    }

    /// `owner.since`, `cc[1]`.
    fn render(&self) -> String {
        let mut segs = Vec::new();
        let mut at = Some(self);
        while let Some(loc) = at {
            segs.extend(loc.seg);
            at = loc.parent;
        }
        let mut out = String::new();
        for seg in segs.iter().rev() {
            match seg {
                Seg::Key(k) => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(k);
                }
                Seg::Index(i) => {
                    out.push('[');
                    out.push_str(&i.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
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
    /// Time is linear in the size of `value` (times the nesting of oneOf
    /// members in the schema, a constant).
    pub fn check(&self, value: &mut Value, base: &str, errs: &mut FieldErrors) -> bool {
        let root = Loc::root(base, errs);
        self.check_at(value, &root, errs)
    }

    fn check_at(&self, value: &mut Value, loc: &Loc<'_>, errs: &mut FieldErrors) -> bool {
        match self {
            Shape::Any => true,
            Shape::Nullable(inner) => value.is_null() || inner.check_at(value, loc, errs),
            _ if value.is_null() => expect(false, loc, "must not be null", errs),
            Shape::Bool => expect(value.is_boolean(), loc, "must be a boolean", errs),
            Shape::Number => expect(value.is_number(), loc, "must be a number", errs),
            Shape::Integer { min, max } => match value.as_i64() {
                Some(v) if (*min..=*max).contains(&v) => true,
                Some(_) => expect(false, loc, format_args!("must be an integer between {min} and {max}"), errs),
                None if value.is_u64() => expect(false, loc, "integer is out of range", errs),
                None => expect(false, loc, "must be an integer", errs),
            },
            Shape::String(format) => match value.as_str() {
                None => expect(false, loc, "must be a string", errs),
                Some(s) => match format {
                    StrFormat::Plain => true,
                    StrFormat::Date => expect(
                        s.len() == 10 && chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
                        loc,
                        "must be a calendar date (YYYY-MM-DD)",
                        errs,
                    ),
                    StrFormat::DateTime => expect(
                        chrono::DateTime::parse_from_rfc3339(s).is_ok(),
                        loc,
                        "must be an RFC 3339 date-time",
                        errs,
                    ),
                    StrFormat::Uuid => expect(uuid::Uuid::parse_str(s).is_ok(), loc, "must be a UUID", errs),
                },
            },
            Shape::Enum(values) => {
                let ok = value.as_str().is_some_and(|s| values.contains(&s));
                expect(ok, loc, format_args!("must be one of: {}", values.join(", ")), errs)
            }
            Shape::Array(item) => {
                let Some(items) = value.as_array_mut() else {
                    return expect(false, loc, "must be an array", errs);
                };
                for (i, v) in items.iter_mut().enumerate() {
                    if !item.check_at(v, &loc.child(Seg::Index(i), errs), errs) {
                        *v = item.placeholder();
                    }
                }
                true
            }
            Shape::Map(item) => {
                let Some(map) = value.as_object_mut() else {
                    return expect(false, loc, "must be an object", errs);
                };
                for (k, v) in map.iter_mut() {
                    if !item.check_at(v, &loc.child(Seg::Key(k), errs), errs) {
                        *v = item.placeholder();
                    }
                }
                true
            }
            Shape::Object(props) => {
                let Some(map) = value.as_object_mut() else {
                    return expect(false, loc, "must be an object", errs);
                };
                for prop in props.iter() {
                    match map.get_mut(prop.name) {
                        None if prop.required => {
                            errs.fail(&loc.child(Seg::Key(prop.name), errs), "is required");
                            map.insert(prop.name.to_owned(), prop.shape.placeholder());
                        }
                        None => {}
                        Some(v) => {
                            if !prop.shape.check_at(v, &loc.child(Seg::Key(prop.name), errs), errs) {
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
                        let mut scratch = FieldErrors::probe();
                        let root = Loc::root("", &scratch);
                        s.check_at(&mut probe, &root, &mut scratch) && scratch.is_empty()
                    })
                    .count();
                match (self, matching) {
                    (_, 0) => expect(false, loc, "does not match any of the allowed schemas", errs),
                    (Shape::OneOf(_), n) if n > 1 => {
                        expect(false, loc, "matches more than one of the allowed schemas (oneOf)", errs)
                    }
                    _ => true,
                }
            }
        }
    }
}

fn expect(ok: bool, loc: &Loc<'_>, message: impl fmt::Display, errs: &mut FieldErrors) -> bool {
    if !ok {
        errs.fail(loc, message);
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
            if errs.covers(base, path, T::RENAMES) {
                continue;
            }
            if errs.listed.len() < MAX_LISTED_ERRORS {
                let path = rename_path(&path.to_string(), T::RENAMES);
                let path = if base.is_empty() { path } else { join(base, &path) };
                errs.push(path, error.message().to_string());
            } else {
                errs.total += 1;
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

/// What reading and validating a request body found.
#[derive(Debug)]
pub enum BodyOutcome<T> {
    /// No body was sent.
    Empty,
    /// The body is JSON but fails the schema; the failures are in the errors.
    Invalid,
    Valid(T),
}

/// A JSON request body of model `T`, not yet read: the generated operation
/// reads it only after the credentials were accepted, so an unauthenticated
/// client costs no body buffer and no parsing.
pub struct JsonBody<T, const REQUIRED: bool = true> {
    body: Option<poem::Body>,
    limits: BodyLimits,
    content_type: String,
    declared_len: Option<usize>,
    _model: PhantomData<T>,
}

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
        Ok(Self {
            body: body.take().ok(),
            limits: request.data::<BodyLimits>().unwrap_or_else(|| BodyLimits::fallback()).clone(),
            content_type: request.content_type().unwrap_or_default().to_owned(),
            declared_len: request
                .headers()
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok()),
            _model: PhantomData,
        })
    }
}

impl<T: Model + Send + 'static, const REQUIRED: bool> JsonBody<T, REQUIRED> {
    /// Reads the body within the size limit and read timeout, then parses
    /// and validates it as `T`, adding every failure to `errs`.
    pub async fn read(self, errs: &mut FieldErrors) -> Result<BodyOutcome<T>, BodyError> {
        let limit = self.limits.max_bytes;
        if self.declared_len.is_some_and(|n| n > limit) {
            return Err(BodyError::TooLarge(limit));
        }
        let Some(body) = self.body else {
            return Err(BodyError::Missing);
        };
        let deadline = tokio::time::Instant::now() + self.limits.read_timeout;
        let timed_out = || {
            BodyError::Read(format!("the body did not arrive within {} ms", self.limits.read_timeout.as_millis()))
        };
        // Room for the whole body before reading any of it, so many slow
        // uploads cannot add up to more memory than the configured total.
        let reserve = self.declared_len.unwrap_or(limit).min(limit).div_ceil(1024).max(1);
        // A body larger than the whole room (a configuration slip) takes all of it.
        let reserve = u32::try_from(reserve).unwrap_or(u32::MAX).min(self.limits.room_kib);
        let _room = match tokio::time::timeout_at(deadline, self.limits.room.clone().acquire_many_owned(reserve)).await {
            Ok(Ok(permit)) => permit,
            Ok(Err(_)) => return Err(BodyError::Read("the server is shutting down".into())),
            Err(_) => return Err(timed_out()),
        };
        let bytes = match tokio::time::timeout_at(deadline, body.into_bytes_limit(limit)).await {
            Err(_) => return Err(timed_out()),
            Ok(read) => read.map_err(|e| match e {
                poem::error::ReadBodyError::PayloadTooLarge => BodyError::TooLarge(limit),
                other => BodyError::Read(other.to_string()),
            })?,
        };
        if bytes.is_empty() {
            return Ok(BodyOutcome::Empty);
        }
        let essence = self.content_type.split(';').next().unwrap_or_default().trim();
        if !(essence.eq_ignore_ascii_case(JSON) || essence.to_ascii_lowercase().ends_with("+json")) {
            return Err(BodyError::ContentType(self.content_type));
        }
        if bytes.len() < INLINE_PARSE_LIMIT {
            return parse_and_validate(&bytes, errs);
        }
        let permit = parse_permits()
            .acquire()
            .await
            .map_err(|_| BodyError::Read("the server is shutting down".into()))?;
        let mut moved = std::mem::take(errs);
        let job = tokio::task::spawn_blocking(move || {
            let outcome = parse_and_validate::<T>(&bytes, &mut moved);
            (outcome, moved)
        });
        let joined = job.await;
        drop(permit);
        match joined {
            Ok((outcome, back)) => {
                *errs = back;
                outcome
            }
            // A panic in validation is a bug: let the panic middleware answer 500.
            Err(e) => match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(_) => Err(BodyError::Read("the server is shutting down".into())),
            },
        }
    }
}

fn parse_and_validate<T: Model>(bytes: &[u8], errs: &mut FieldErrors) -> Result<BodyOutcome<T>, BodyError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?;
    Ok(match validate_value::<T>(value, "", errs) {
        Some(v) => BodyOutcome::Valid(v),
        None => BodyOutcome::Invalid,
    })
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

    static CC: Shape = Shape::Object(&[Prop { name: "cc", required: false, shape: &Shape::Array(&Shape::String(StrFormat::Plain)) }]);

    #[test]
    fn coverage_is_by_location() {
        let mut errs = FieldErrors::default();
        let mut v = serde_json::json!({ "cc": ["a", 1] });
        assert!(CC.check(&mut v, "", &mut errs));
        assert_eq!(errs.total(), 1);
        let cc = garde::Path::new("cc");
        assert!(errs.covers("", &cc.join(1usize), &[]));
        assert!(errs.covers("", &cc.join(1usize).join("x"), &[]));
        assert!(!errs.covers("", &cc, &[]));
        assert!(!errs.covers("", &cc.join(10usize), &[]));
        assert!(!errs.covers("", &garde::Path::new("subject"), &[]));
        assert!(!errs.covers("body", &cc.join(1usize), &[]));
        assert_eq!(errs.into_vec()[0].field, "cc[1]");
    }

    #[test]
    fn lists_at_most_the_cap_and_counts_the_rest() {
        let mut errs = FieldErrors::default();
        let mut v = serde_json::json!({ "cc": vec![0; MAX_LISTED_ERRORS + 150] });
        CC.check(&mut v, "", &mut errs);
        assert_eq!(errs.total(), MAX_LISTED_ERRORS + 150);
        let data = errs.to_data();
        assert_eq!(data["errors"].as_array().map(Vec::len), Some(MAX_LISTED_ERRORS));
        assert_eq!(data["errors"][MAX_LISTED_ERRORS - 1]["field"], format!("cc[{}]", MAX_LISTED_ERRORS - 1));
        assert_eq!(data["omitted"], 150);
    }
}
