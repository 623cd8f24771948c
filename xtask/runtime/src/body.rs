//! JSON request bodies: read within limits only when the operation asks
//! (after authentication), then parsed and validated, large ones on a
//! blocking thread.

use std::{marker::PhantomData, sync::Arc};

use poem::{Request, RequestBody, http::header};
use poem_openapi::{
    ApiExtractor, ApiExtractorType, ExtractParamOptions,
    registry::{MetaMediaType, MetaRequest, Registry},
};
use serde_json::Value;

use crate::{BodyMedia, FORM, Fault, FieldErrors, JSON, Json, Model, Problem, validate_value};

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
    /// Largest binary body streamed to a handler ([`crate::ByteStream`]),
    /// in bytes, unless its schema's `maxLength` says less. Streams are not
    /// buffered, so this bounds bytes and time, not memory.
    pub max_stream_bytes: usize,
    /// Slowest average rate a streamed body may arrive at, in bytes per
    /// second, after a grace period of `read_timeout`: a stream of `n` bytes
    /// has at most `read_timeout + n / min_stream_rate` to arrive, so a
    /// client trickling a byte now and then cannot hold a connection for as
    /// long as the limit would allow at any speed.
    pub min_stream_rate: u32,
}

impl BodyLimits {
    /// `max_buffered_bytes` bounds what all requests together may buffer.
    pub fn new(max_bytes: usize, read_timeout: std::time::Duration, max_buffered_bytes: usize) -> Self {
        let room_kib = u32::try_from(max_buffered_bytes / 1024).unwrap_or(u32::MAX).max(1);
        BodyLimits {
            max_bytes,
            read_timeout,
            room: Arc::new(tokio::sync::Semaphore::new(room_kib as usize)),
            room_kib,
            max_stream_bytes: DEFAULT_MAX_STREAM_BYTES,
            min_stream_rate: DEFAULT_MIN_STREAM_RATE,
        }
    }

    /// The same limits with another [`min_stream_rate`](Self::min_stream_rate)
    /// (at least 1 byte per second).
    pub fn with_min_stream_rate(mut self, bytes_per_second: u32) -> Self {
        self.min_stream_rate = bytes_per_second.max(1);
        self
    }

    /// The same limits with another [`max_stream_bytes`](Self::max_stream_bytes).
    pub fn with_max_stream_bytes(mut self, max: usize) -> Self {
        self.max_stream_bytes = max;
        self
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

/// [`BodyLimits::max_stream_bytes`] unless configured: 64 MiB.
pub const DEFAULT_MAX_STREAM_BYTES: usize = 64 * 1024 * 1024;

/// [`BodyLimits::min_stream_rate`] unless configured: 16 KiB/s, so the
/// default 64 MiB stream has at most about 68 minutes.
pub const DEFAULT_MIN_STREAM_RATE: u32 = 16 * 1024;

/// Bodies at least this large are parsed and validated on a blocking
/// thread, so a big request never stalls the async threads.
pub const INLINE_PARSE_LIMIT: usize = 16 * 1024;

/// At most this many large bodies are parsed at once (one per core): a
/// parsed JSON tree takes several times the body's size in memory.
fn parse_permits() -> &'static tokio::sync::Semaphore {
    static PERMITS: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    PERMITS.get_or_init(|| tokio::sync::Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())))
}

/// Why a JSON request body could not be read.
#[derive(Debug, Clone)]
pub enum BodyError {
    Missing,
    /// What was sent, and what the operation declares.
    ContentType(String, String),
    TooLarge(usize),
    Read(String),
    Malformed(String),
}

impl BodyError {
    /// The framework fault this failure is reported as, and its field
    /// error's message; the contract's [`crate::ErrorPolicy`] picks the code.
    pub fn into_error(self) -> (Fault, String) {
        match self {
            BodyError::Missing => (Fault::ValidationFailed, "request body is required".into()),
            BodyError::ContentType(ct, expected) => {
                (Fault::UnsupportedMediaType, format!("Content-Type must be {expected}, got {ct:?}"))
            }
            BodyError::TooLarge(limit) => (Fault::PayloadTooLarge, format!("request body exceeds {limit} bytes")),
            BodyError::Read(e) => (Fault::MalformedBody, format!("could not read body: {e}")),
            BodyError::Malformed(e) => (Fault::MalformedBody, format!("invalid JSON: {e}")),
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
pub struct JsonBody<T, M = Json, const REQUIRED: bool = true> {
    body: Option<poem::Body>,
    limits: BodyLimits,
    content_type: String,
    declared_len: Option<usize>,
    _model: PhantomData<(T, M)>,
}

impl<'a, T: poem_openapi::types::Type, M: BodyMedia, const REQUIRED: bool> ApiExtractor<'a>
    for JsonBody<T, M, REQUIRED>
{
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: M::TYPES.iter().map(|t| MetaMediaType { content_type: t, schema: T::schema_ref() }).collect(),
            required: REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let (body, limits, content_type, declared_len) = unread(request, body);
        Ok(Self { body, limits, content_type, declared_len, _model: PhantomData })
    }
}

impl<T: Model + Send + 'static, M: BodyMedia, const REQUIRED: bool> JsonBody<T, M, REQUIRED> {
    /// Reads the body within the size limit and read timeout, then parses
    /// (as the declared media type `Content-Type` names) and validates it
    /// as `T`, adding every failure to `errs`.
    pub async fn read(self, errs: &mut FieldErrors) -> Result<BodyOutcome<T>, BodyError> {
        let Some(bytes) =
            read_limited(self.body, &self.limits, self.declared_len, &self.content_type, M::TYPES).await?
        else {
            return Ok(BodyOutcome::Empty);
        };
        let form = M::TYPES.iter().any(|d| *d == FORM && accepts(&self.content_type, d)).then_some(M::FORM);
        let large = bytes.len() >= INLINE_PARSE_LIMIT;
        checked(large, errs, move |errs| parse_and_validate::<T>(&bytes, form, errs)).await?
    }
}

/// Runs `check` (parsing and validating a body into `errs`) in place, or,
/// when the body is `large`, on the blocking pool within the parse permits,
/// so a big body never holds an async thread.
async fn checked<R: Send + 'static>(
    large: bool,
    errs: &mut FieldErrors,
    check: impl FnOnce(&mut FieldErrors) -> R + Send + 'static,
) -> Result<R, BodyError> {
    if !large {
        return Ok(check(errs));
    }
    let permit = parse_permits().acquire().await.map_err(|_| BodyError::Read("the server is shutting down".into()))?;
    let mut moved = std::mem::take(errs);
    let joined = tokio::task::spawn_blocking(move || {
        let outcome = check(&mut moved);
        (outcome, moved)
    })
    .await;
    drop(permit);
    match joined {
        Ok((outcome, back)) => {
            *errs = back;
            Ok(outcome)
        }
        // A panic in validation is a bug: let the panic middleware answer 500.
        Err(e) => match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            Err(_) => Err(BodyError::Read("the server is shutting down".into())),
        },
    }
}

/// What every body extractor keeps of the request until the operation reads
/// the body: the body itself, the limits, `Content-Type` and the declared
/// `Content-Length`.
fn unread(request: &Request, body: &mut RequestBody) -> (Option<poem::Body>, BodyLimits, String, Option<usize>) {
    (
        body.take().ok(),
        request.data::<BodyLimits>().unwrap_or_else(|| BodyLimits::fallback()).clone(),
        request.content_type().unwrap_or_default().to_owned(),
        request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok()),
    )
}

/// Reads a body within the size limit and read timeout, reserving room in
/// the shared buffer first; `None` when it is empty. The media type is
/// checked once there are bytes (an empty body has none to check).
async fn read_limited(
    body: Option<poem::Body>,
    limits: &BodyLimits,
    declared_len: Option<usize>,
    content_type: &str,
    declared: &'static [&'static str],
) -> Result<Option<bytes::Bytes>, BodyError> {
    let limit = limits.max_bytes;
    if declared_len.is_some_and(|n| n > limit) {
        return Err(BodyError::TooLarge(limit));
    }
    let Some(body) = body else {
        return Err(BodyError::Missing);
    };
    let deadline = tokio::time::Instant::now() + limits.read_timeout;
    let timed_out =
        || BodyError::Read(format!("the body did not arrive within {} ms", limits.read_timeout.as_millis()));
    // Room for the whole body before reading any of it, so many slow
    // uploads cannot add up to more memory than the configured total.
    let reserve = declared_len.unwrap_or(limit).min(limit).div_ceil(1024).max(1);
    // A body larger than the whole room (a configuration slip) takes all of it.
    let reserve = u32::try_from(reserve).unwrap_or(u32::MAX).min(limits.room_kib);
    let _room = match tokio::time::timeout_at(deadline, limits.room.clone().acquire_many_owned(reserve)).await {
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
        return Ok(None);
    }
    if !declared.iter().any(|d| accepts(content_type, d)) {
        return Err(BodyError::ContentType(content_type.to_owned(), declared.join(" or ")));
    }
    Ok(Some(bytes))
}

/// A body declared `application/json` also takes any `+json` type (a
/// client's vendor type); any other declared type is taken as declared.
/// Parameters (`; charset=utf-8`) never matter: JSON is UTF-8.
fn accepts(content_type: &str, declared: &str) -> bool {
    let essence = |t: &str| t.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    let (sent, declared) = (essence(content_type), essence(declared));
    sent == declared || (declared == JSON && sent.starts_with("application/") && sent.ends_with("+json"))
}

/// `form`: the body is `application/x-www-form-urlencoded`, read with
/// these fields' coercions (other keys are kept as strings, for a closed
/// object to report).
fn parse_and_validate<T: Model>(
    bytes: &[u8],
    form: Option<&'static [(&'static str, crate::Coerce)]>,
    errs: &mut FieldErrors,
) -> Result<BodyOutcome<T>, BodyError> {
    let value: Value = match form {
        Some(fields) => form_value(bytes, fields),
        None => serde_json::from_slice(bytes).map_err(|e| BodyError::Malformed(e.to_string()))?,
    };
    Ok(match validate_value::<T>(value, "", errs) {
        Some(v) => BodyOutcome::Valid(v),
        None => BodyOutcome::Invalid,
    })
}

/// A form body as the JSON object its schema describes. Linear in the body:
/// keys are grouped by a hash map, each value coerced once.
fn form_value(bytes: &[u8], fields: &'static [(&'static str, crate::Coerce)]) -> Value {
    let mut by_key: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        let entry = by_key.entry(k.to_string()).or_insert_with(|| {
            order.push(k.to_string());
            Vec::new()
        });
        entry.push(v.into_owned());
    }
    let entries: Vec<(&'static str, Vec<String>, crate::Coerce)> =
        fields.iter().map(|(name, c)| (*name, by_key.remove(*name).unwrap_or_default(), *c)).collect();
    let mut value = crate::params_object(&entries);
    if let Some(map) = value.as_object_mut() {
        for k in order {
            if let Some(mut vs) = by_key.remove(&k) {
                map.insert(k, Value::from(vs.swap_remove(0)));
            }
        }
    }
    value
}

/// A request body that is not JSON (`text/plain`, `application/octet-stream`),
/// described by a type the generated crate writes per operation.
pub trait RawBodySpec: Send + Sync + 'static {
    const MEDIA_TYPE: &'static str;
    const REQUIRED: bool;
    /// The body's schema for the served document.
    fn schema() -> poem_openapi::registry::MetaSchemaRef;
}

/// A text or binary request body, read within the same limits as JSON ones
/// and only when the operation asks (after authentication).
pub struct RawBody<S> {
    body: Option<poem::Body>,
    limits: BodyLimits,
    content_type: String,
    declared_len: Option<usize>,
    _spec: PhantomData<S>,
}

impl<'a, S: RawBodySpec> ApiExtractor<'a> for RawBody<S> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: S::MEDIA_TYPE, schema: S::schema() }],
            required: S::REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let (body, limits, content_type, declared_len) = unread(request, body);
        Ok(Self { body, limits, content_type, declared_len, _spec: PhantomData })
    }
}

impl<S: RawBodySpec> RawBody<S> {
    /// The body as a stream the handler reads, at most `max_len` bytes (the
    /// schema's `maxLength`) or [`BodyLimits::max_stream_bytes`], each chunk
    /// within the read timeout. Its first chunk is read here, so an empty
    /// body is `Empty` and the media type is checked before the handler runs.
    pub async fn into_stream(
        self,
        max_len: Option<usize>,
        problem: fn(Fault) -> Problem,
    ) -> Result<BodyOutcome<crate::ByteStream>, BodyError> {
        let limit = max_len.map_or(self.limits.max_stream_bytes, |m| m.min(self.limits.max_stream_bytes));
        if self.declared_len.is_some_and(|n| n > limit) {
            return Err(BodyError::TooLarge(limit));
        }
        let Some(body) = self.body else { return Ok(BodyOutcome::Empty) };
        let pace = crate::stream::Pace { idle: self.limits.read_timeout, min_rate: self.limits.min_stream_rate };
        match crate::ByteStream::open(body, limit, pace, problem).await? {
            None => Ok(BodyOutcome::Empty),
            Some(_) if !accepts(&self.content_type, S::MEDIA_TYPE) => {
                Err(BodyError::ContentType(self.content_type, S::MEDIA_TYPE.to_owned()))
            }
            Some(s) => Ok(BodyOutcome::Valid(s)),
        }
    }

    /// The body as text; bytes that are not UTF-8 are a malformed body.
    pub async fn read_text(self) -> Result<BodyOutcome<String>, BodyError> {
        match read_limited(self.body, &self.limits, self.declared_len, &self.content_type, &[S::MEDIA_TYPE]).await? {
            None => Ok(BodyOutcome::Empty),
            Some(b) => String::from_utf8(b.to_vec())
                .map(BodyOutcome::Valid)
                .map_err(|_| BodyError::Malformed("the body is not UTF-8 text".into())),
        }
    }

    /// [`read_text`](Self::read_text), then the text checked as the string
    /// its schema describes (length, pattern), through `M`, the generated
    /// newtype of that schema; `text` takes the string back out of it.
    /// Large texts are checked on a blocking thread, as JSON bodies are.
    pub async fn read_text_as<M: Model + Send + 'static>(
        self,
        errs: &mut FieldErrors,
        text: fn(M) -> String,
    ) -> Result<BodyOutcome<String>, BodyError> {
        let s = match self.read_text().await? {
            BodyOutcome::Valid(s) => s,
            other => return Ok(other),
        };
        let large = s.len() >= INLINE_PARSE_LIMIT;
        checked(large, errs, move |errs| match validate_value::<M>(Value::String(s), "body", errs) {
            Some(m) => BodyOutcome::Valid(text(m)),
            None => BodyOutcome::Invalid,
        })
        .await
    }
}

/// One file part of a `multipart/form-data` body (a property declared
/// `type: string, format: binary`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FilePart {
    pub file_name: Option<String>,
    pub content_type: Option<String>,
    pub bytes: bytes::Bytes,
}

/// A model read from `multipart/form-data`: its text parts are coerced and
/// validated as a form's fields, its file parts set afterwards.
pub trait MultipartModel: Model + Send + 'static {
    /// Text parts: name and coercion.
    const FIELDS: &'static [(&'static str, crate::Coerce)];
    /// File parts: name, required, and whether several are allowed.
    const FILES: &'static [(&'static str, bool, bool)];
    fn put_file(&mut self, name: &str, part: FilePart);
}

/// Most parts one multipart body may have; a body of many tiny parts is
/// refused before it costs a map entry each.
pub const MAX_MULTIPART_PARTS: usize = 1000;

/// A `multipart/form-data` request body, read (within the same size limit,
/// read timeout and shared buffer room as every body) only when the
/// operation asks, after authentication.
pub struct MultipartBody<T, const REQUIRED: bool = true> {
    body: Option<poem::Body>,
    limits: BodyLimits,
    content_type: String,
    declared_len: Option<usize>,
    _model: PhantomData<T>,
}

impl<'a, T: poem_openapi::types::Type, const REQUIRED: bool> ApiExtractor<'a> for MultipartBody<T, REQUIRED> {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::RequestObject];
    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        T::register(registry);
    }

    fn request_meta() -> Option<MetaRequest> {
        Some(MetaRequest {
            description: None,
            content: vec![MetaMediaType { content_type: MULTIPART, schema: T::schema_ref() }],
            required: REQUIRED,
        })
    }

    async fn from_request(
        request: &'a Request,
        body: &mut RequestBody,
        _opts: ExtractParamOptions<()>,
    ) -> poem::Result<Self> {
        let (body, limits, content_type, declared_len) = unread(request, body);
        Ok(Self { body, limits, content_type, declared_len, _model: PhantomData })
    }
}

/// `multipart/form-data`.
pub const MULTIPART: &str = "multipart/form-data";

impl<T: MultipartModel, const REQUIRED: bool> MultipartBody<T, REQUIRED> {
    /// Reads the body, then its parts: text parts validated like a form's
    /// fields (every failure in `errs`), file parts kept as they came.
    pub async fn read(self, errs: &mut FieldErrors) -> Result<BodyOutcome<T>, BodyError> {
        let Some(bytes) =
            read_limited(self.body, &self.limits, self.declared_len, &self.content_type, &[MULTIPART]).await?
        else {
            return Ok(BodyOutcome::Empty);
        };
        let boundary = multer::parse_boundary(&self.content_type)
            .map_err(|e| BodyError::Malformed(format!("multipart body without a usable boundary: {e}")))?;
        let stream = futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
        let mut parts = multer::Multipart::new(stream, boundary);
        let mut texts: Vec<(String, String)> = Vec::new();
        let mut files: Vec<(String, FilePart)> = Vec::new();
        let malformed = |e: multer::Error| BodyError::Malformed(format!("multipart body: {e}"));
        while let Some(field) = parts.next_field().await.map_err(malformed)? {
            if texts.len() + files.len() >= MAX_MULTIPART_PARTS {
                return Err(BodyError::Malformed(format!("more than {MAX_MULTIPART_PARTS} parts")));
            }
            let name = field.name().unwrap_or_default().to_owned();
            if T::FILES.iter().any(|(n, ..)| *n == name) {
                let file_name = field.file_name().map(str::to_owned);
                let content_type = field.content_type().map(ToString::to_string);
                let bytes = field.bytes().await.map_err(malformed)?;
                files.push((name, FilePart { file_name, content_type, bytes }));
            } else {
                let text = field.text().await.map_err(malformed)?;
                texts.push((name, text));
            }
        }
        let form: String = form_urlencoded::Serializer::new(String::new()).extend_pairs(&texts).finish();
        let mut value = form_value(form.as_bytes(), T::FIELDS);
        // A file part where a text part is declared, or the reverse, is
        // reported by the structural pass like any wrong value.
        for (name, required, _) in T::FILES {
            if *required && !files.iter().any(|(n, _)| n == name) {
                errs.push(*name, "is required");
            }
        }
        if let Some(map) = value.as_object_mut() {
            for (name, ..) in T::FILES {
                map.remove(*name);
            }
        }
        let Some(mut model) = validate_value::<T>(value, "", errs) else { return Ok(BodyOutcome::Invalid) };
        for (name, &(_, _, many)) in T::FILES.iter().map(|f| (f.0, f)) {
            let mut of_name = files.iter().filter(|(n, _)| n == name);
            if !many && of_name.clone().count() > 1 {
                errs.push(name, "only one file may be sent here");
            }
            if let Some((_, first)) = of_name.next() {
                model.put_file(name, first.clone());
            }
            if many {
                for (_, more) in of_name {
                    model.put_file(name, more.clone());
                }
            }
        }
        Ok(if errs.is_empty() { BodyOutcome::Valid(model) } else { BodyOutcome::Invalid })
    }
}
