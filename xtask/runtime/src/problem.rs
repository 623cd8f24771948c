//! [`Problem`]: a failure before any contract has given it a body. The
//! framework builds one for each failure it finds itself ([`Fault`]),
//! handlers return one for theirs, and the generated crate turns it into
//! the response the operation documents for its status — or, where the
//! spec documents none, into RFC 9457 `application/problem+json`.

use poem::{IntoResponse, Response, http::StatusCode};
use poem_openapi::{
    ApiResponse,
    registry::{MetaResponses, Registry},
};
use serde_json::Value;

use crate::FieldErrors;

/// The media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// The failures the framework answers by itself, before or around any
/// handler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// Parameters or body fail the schema (the data lists the fields).
    ValidationFailed,
    /// The body could not be read or is not JSON.
    MalformedBody,
    /// The body's `Content-Type` is not JSON.
    UnsupportedMediaType,
    /// The body exceeds the configured limit.
    PayloadTooLarge,
    /// A secured operation was called without (all of) the credentials one
    /// of its security requirements needs.
    MissingCredential,
    /// No operation at that path.
    RouteNotFound,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// None of the media types an operation answers in is acceptable to the
    /// client's `Accept`; raised only where the operation documents its
    /// status (elsewhere the first media type is sent, as RFC 9110 §12.5.1
    /// allows).
    NotAcceptable,
    /// A panic or another failure the client cannot fix.
    Internal,
}

impl Fault {
    pub const ALL: &'static [Fault] = &[
        Fault::ValidationFailed,
        Fault::MalformedBody,
        Fault::UnsupportedMediaType,
        Fault::PayloadTooLarge,
        Fault::MissingCredential,
        Fault::RouteNotFound,
        Fault::MethodNotAllowed,
        Fault::NotAcceptable,
        Fault::Internal,
    ];

    /// The status HTTP gives this failure; a contract's error registry may
    /// choose another (this project answers a too-large body with 400).
    pub const fn status(self) -> u16 {
        match self {
            Fault::ValidationFailed | Fault::MalformedBody => 400,
            Fault::UnsupportedMediaType => 415,
            Fault::PayloadTooLarge => 413,
            Fault::MissingCredential => 401,
            Fault::RouteNotFound => 404,
            Fault::MethodNotAllowed => 405,
            Fault::NotAcceptable => 406,
            Fault::Internal => 500,
        }
    }

    /// The variant's name, as an error registry names the entry that
    /// answers it.
    pub const fn name(self) -> &'static str {
        match self {
            Fault::ValidationFailed => "ValidationFailed",
            Fault::MalformedBody => "MalformedBody",
            Fault::UnsupportedMediaType => "UnsupportedMediaType",
            Fault::PayloadTooLarge => "PayloadTooLarge",
            Fault::MissingCredential => "MissingCredential",
            Fault::RouteNotFound => "RouteNotFound",
            Fault::MethodNotAllowed => "MethodNotAllowed",
            Fault::NotAcceptable => "NotAcceptable",
            Fault::Internal => "Internal",
        }
    }
}

/// A failure to answer with, in no contract's shape yet. The application's
/// error policy (a trait generated per spec) turns it into the body the
/// spec documents.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The status of the response.
    pub status: u16,
    /// Which framework failure this is; `None` for the application's own.
    pub fault: Option<Fault>,
    /// The numeric code of the contract's error registry, when it has one.
    pub code: Option<i64>,
    /// Short and the same for every occurrence (the registry's message, or
    /// the status's reason phrase).
    pub title: String,
    /// What is specific to this occurrence (which field conflicted).
    pub detail: Option<String>,
    /// Structured detail: for validation failures `{"errors": [{field,
    /// message}], "omitted": n}`, else whatever the application adds.
    pub data: Option<Value>,
}

impl Problem {
    /// A problem with `status` and its reason phrase as the title.
    pub fn new(status: u16) -> Self {
        let title = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
        Problem { status, fault: None, code: None, title: title.to_owned(), detail: None, data: None }
    }

    /// The framework's answer to `fault`, with HTTP's status for it; a
    /// generated crate with an error registry uses the registry's instead.
    pub fn from_fault(fault: Fault) -> Self {
        Problem { fault: Some(fault), ..Problem::new(fault.status()) }
    }

    /// 401: the credential is missing or not accepted.
    pub fn unauthorized() -> Self {
        Problem::new(401)
    }

    /// 403: the credential is valid but lacks a scope or right.
    pub fn forbidden() -> Self {
        Problem::new(403)
    }

    pub fn with_status(mut self, status: u16) -> Self {
        self.status = status;
        self
    }

    pub fn with_code(mut self, code: i64) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_title(mut self, title: impl Into<String>) -> Self {
        self.title = title.into();
        self
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }

    /// Attaches every failing field (the first [`crate::MAX_LISTED_ERRORS`]).
    pub fn with_field_errors(self, errs: &FieldErrors) -> Self {
        self.with_data(errs.to_data())
    }

    /// `detail` if the occurrence has one, else `title`: what a contract
    /// with a single message field shows.
    pub fn message(&self) -> &str {
        self.detail.as_deref().unwrap_or(&self.title)
    }

    /// RFC 9457 problem details (`type` is `about:blank`, so `title` is the
    /// reason phrase's role); the registry code and the data are extension
    /// members, since a client may need the failing fields.
    pub fn to_problem_json(&self) -> Response {
        let mut body = serde_json::Map::new();
        body.insert("type".into(), Value::from("about:blank"));
        body.insert("title".into(), Value::from(self.title.as_str()));
        body.insert("status".into(), Value::from(self.status));
        if let Some(d) = &self.detail {
            body.insert("detail".into(), Value::from(d.as_str()));
        }
        if let Some(c) = self.code {
            body.insert("code".into(), Value::from(c));
        }
        if let Some(Value::Object(data)) = &self.data {
            for (k, v) in data {
                body.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        let bytes = serde_json::to_vec(&Value::Object(body)).unwrap_or_default();
        Response::builder()
            .status(StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
            .content_type(PROBLEM_JSON)
            .body(bytes)
    }
}

/// What a generated operation answers: a response its spec documents, or a
/// [`Problem`] for a status the spec leaves undocumented for it (generation
/// warned about each such pair; `--strict` refuses them).
#[derive(Debug)]
pub enum Answer<R> {
    Documented(R),
    Undocumented(Problem),
    /// A documented response already rendered (a partial response, see
    /// [`crate::FieldMask`]): the glue renders it once the mask is known.
    Rendered(Response),
}

impl<R: ApiResponse> ApiResponse for Answer<R> {
    fn meta() -> MetaResponses {
        R::meta()
    }

    fn register(registry: &mut Registry) {
        R::register(registry);
    }
}

impl<R: IntoResponse> IntoResponse for Answer<R> {
    fn into_response(self) -> Response {
        match self {
            Answer::Documented(r) => r.into_response(),
            Answer::Undocumented(p) => p.to_problem_json(),
            Answer::Rendered(r) => r,
        }
    }
}

/// What a raw operation's glue registers with the served document: the
/// schemas its spec text references (the document carries that text as the
/// spec writes it, through the doc patches).
pub trait RawOperation {
    fn register(registry: &mut Registry);
}

/// The answer of an operation generated as a raw handler (`--raw` or
/// `x-raw-handler: true`): whatever response the application built, or a
/// refused credential as `application/problem+json` (the generator cannot
/// know which documented body, if any, that status has).
pub enum RawAnswer<M> {
    Raw(Response),
    Refused(Problem, std::marker::PhantomData<M>),
}

impl<M> RawAnswer<M> {
    pub fn refused(problem: Problem) -> Self {
        Self::Refused(problem, std::marker::PhantomData)
    }
}

impl<M: RawOperation + Send> ApiResponse for RawAnswer<M> {
    fn meta() -> MetaResponses {
        // The operation's responses come from the spec's own text.
        MetaResponses { responses: Vec::new() }
    }

    fn register(registry: &mut Registry) {
        M::register(registry);
    }
}

impl<M: Send> IntoResponse for RawAnswer<M> {
    fn into_response(self) -> Response {
        match self {
            RawAnswer::Raw(r) => r,
            RawAnswer::Refused(p, _) => p.to_problem_json(),
        }
    }
}
