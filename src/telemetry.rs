//! Logs and traces: the subscriber (`LOG_FORMAT` text or JSON lines through [`LogWriter`], the
//! trace and span ids in each line), and with `OTEL_EXPORTER_OTLP_ENDPOINT` the OpenTelemetry
//! spans — one per operation, SQL statement, queue script call, enqueue and task run — exported
//! over OTLP/HTTP. Without an endpoint no span beyond the request's log span is made, so the
//! request path pays one relaxed load per would-be span.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    sync::atomic::{AtomicBool, Ordering},
    time::Duration,
};

use anyhow::{Context as _, Result};
use opentelemetry::{
    Context,
    propagation::TextMapPropagator,
    trace::{TraceContextExt, TracerProvider as _},
};
use opentelemetry_sdk::{
    Resource,
    propagation::TraceContextPropagator,
    trace::{BatchConfigBuilder, BatchSpanProcessor, SdkTracerProvider},
};
use tracing::{Span, Subscriber, field::Empty};
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::{
    EnvFilter,
    fmt::{
        FmtContext, FormatEvent, FormatFields,
        format::{self, Writer},
    },
    layer::SubscriberExt,
    registry::LookupSpan,
    util::SubscriberInitExt,
};

use crate::{
    config::{Config, LogFormat},
    logwriter::{FlushGuard, LogWriter, UtcMicros},
};

/// Set once, before the first span, when spans are exported; read wherever a span would be made.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether spans are made and exported (`OTEL_EXPORTER_OTLP_ENDPOINT` is set).
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Most finished spans waiting for export (the batch processor's queue, `OTEL_BSP_MAX_QUEUE_SIZE`
/// overrides it). Past it new spans are dropped, never waited for; the SDK counts them and logs
/// the count (`opentelemetry_sdk` target) at the first drop and at shutdown. A span is well under
/// 1 KiB, so the queue holds about 2 MiB at most.
pub const SPAN_QUEUE: usize = 2048;

/// Longest one OTLP export request may take: a collector that hangs delays the next batch, it
/// never blocks a request (spans wait in the bounded queue meanwhile).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Largest collector reply read; OTLP replies are a few bytes (a partial-success message).
const MAX_REPLY_BYTES: usize = 64 * 1024;

/// Which process this is, for the default `service.name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Server,
    Worker,
}

/// Keep until the process ends; [`Telemetry::shutdown`] exports the spans still queued and
/// flushes the log lines.
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
    _logs: Option<FlushGuard>,
}

impl Telemetry {
    /// Exports what is queued (waiting for the exporter on a blocking thread: the batch
    /// processor's thread sends through this runtime), then lets the log writer flush on drop.
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider.clone() {
            let done = tokio::task::spawn_blocking(move || provider.shutdown()).await;
            if let Ok(Err(e)) = done {
                tracing::warn!(error = %e, "exporting the last spans failed");
            }
        }
    }
}

/// Installs the global subscriber: `LOG` filter, `LOG_FORMAT` lines on stdout through the log
/// writer thread and, with an OTLP endpoint, the OpenTelemetry layer and exporter. Must run
/// inside the tokio runtime (the exporter sends through it).
pub fn init(cfg: &Config, role: Role) -> Result<Telemetry> {
    let filter = EnvFilter::try_from_env("LOG").unwrap_or_else(|_| EnvFilter::new("info,tokio_postgres=warn"));
    let provider = match cfg.otel_exporter_otlp_endpoint.as_deref().filter(|e| !e.is_empty()) {
        Some(_) => Some(tracer_provider(cfg, role)?),
        None => None,
    };
    let otel = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("spec-server"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
    });
    // Colours only for a terminal: escape codes in a log file or pipe are noise, and styling
    // every line took a tenth of a request's instructions (callgrind).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let registry = tracing_subscriber::registry().with(filter).with(otel);
    let (writer, guard) = match LogWriter::spawn(std::io::stdout()) {
        Ok((writer, guard)) => (Some(writer), Some(guard)),
        Err(e) => {
            eprintln!("cannot start the log writer thread ({e}); writing logs synchronously");
            (None, None)
        }
    };
    let text = || format::Format::default().with_target(false).with_timer(UtcMicros);
    let json = || {
        format::format().json().with_target(false).with_timer(UtcMicros).with_current_span(true).with_span_list(false)
    };
    let layer = tracing_subscriber::fmt::layer().with_ansi(ansi);
    let installed = match (cfg.log_format, writer) {
        (LogFormat::Text, Some(w)) => {
            registry.with(layer.event_format(WithTraceIds::text(text())).with_writer(w)).try_init()
        }
        (LogFormat::Text, None) => {
            registry.with(layer.event_format(WithTraceIds::text(text())).with_writer(std::io::stdout)).try_init()
        }
        (LogFormat::Json, Some(w)) => registry
            .with(layer.json().with_ansi(false).event_format(WithTraceIds::json(json())).with_writer(w))
            .try_init(),
        (LogFormat::Json, None) => registry
            .with(layer.json().with_ansi(false).event_format(WithTraceIds::json(json())).with_writer(std::io::stdout))
            .try_init(),
    };
    installed.context("installing the log subscriber")?;
    if provider.is_some() {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        ENABLED.store(true, Ordering::Relaxed);
    }
    Ok(Telemetry { provider, _logs: guard })
}

/// The SDK's provider over the OTLP/HTTP protobuf exporter (endpoint, headers and timeout from
/// the `OTEL_EXPORTER_OTLP_*` variables, as the exporter reads them), a batch processor with a
/// bounded queue, and the sampler `OTEL_TRACES_SAMPLER` names (parent-based always-on unset).
fn tracer_provider(cfg: &Config, role: Role) -> Result<SdkTracerProvider> {
    use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
    let client = reqwest::Client::builder().timeout(EXPORT_TIMEOUT).build().context("building the OTLP HTTP client")?;
    let http = OtlpHttp { client, runtime: tokio::runtime::Handle::current() };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
        .with_http_client(http)
        .with_timeout(EXPORT_TIMEOUT)
        .build()
        .context("building the OTLP span exporter (OTEL_EXPORTER_OTLP_ENDPOINT)")?;
    let queue = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE").ok().and_then(|v| v.parse().ok()).unwrap_or(SPAN_QUEUE);
    let batch = BatchConfigBuilder::default().with_max_queue_size(queue).build();
    let processor = BatchSpanProcessor::builder(exporter).with_batch_config(batch).build();
    let name = cfg.otel_service_name.clone().unwrap_or_else(|| {
        match role {
            Role::Server => "spec-server",
            Role::Worker => "spec-server-worker",
        }
        .to_owned()
    });
    Ok(SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_resource(Resource::builder().with_service_name(name).build())
        .build())
}

/// The exporter's HTTP client: reqwest (the version the service already uses) run on the
/// service's runtime. The batch processor exports from a thread of its own with a plain
/// executor, so each send is spawned onto the runtime and awaited from there.
#[derive(Debug)]
struct OtlpHttp {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for OtlpHttp {
    async fn send_bytes(
        &self,
        request: opentelemetry_http::Request<opentelemetry_http::Bytes>,
    ) -> Result<opentelemetry_http::Response<opentelemetry_http::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let sent = self.runtime.spawn(async move {
            let request = reqwest::Request::try_from(request)?;
            let mut reply = client.execute(request).await?;
            let mut out = opentelemetry_http::Response::builder().status(reply.status());
            if let Some(headers) = out.headers_mut() {
                *headers = std::mem::take(reply.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = reply.chunk().await? {
                if body.len() + chunk.len() > MAX_REPLY_BYTES {
                    return Err(format!("the collector's reply is over {MAX_REPLY_BYTES} bytes").into());
                }
                body.extend_from_slice(&chunk);
            }
            let reply: Result<_, opentelemetry_http::HttpError> = Ok(out.body(body.into())?);
            reply
        });
        sent.await?
    }
}

/// An event formatter that appends the current OpenTelemetry span's ids: ` trace_id=… span_id=…`
/// at the end of a text line, `"trace_id":…,"span_id":…` first in a JSON object. Without
/// tracing (or outside any span) the line is the inner format's, unbuffered.
struct WithTraceIds<E> {
    inner: E,
    json: bool,
}

impl<E> WithTraceIds<E> {
    fn text(inner: E) -> Self {
        WithTraceIds { inner, json: false }
    }
    fn json(inner: E) -> Self {
        WithTraceIds { inner, json: true }
    }
}

/// The trace and span id of the innermost entered span (the OpenTelemetry layer makes its
/// context current on entry), if there is one.
fn current_ids() -> Option<(opentelemetry::TraceId, opentelemetry::SpanId)> {
    Context::map_current(|cx| {
        let sc = cx.span().span_context().clone();
        sc.is_valid().then(|| (sc.trace_id(), sc.span_id()))
    })
}

impl<S, N, E> FormatEvent<S, N> for WithTraceIds<E>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + 'static,
    E: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let ids = if enabled() { current_ids() } else { None };
        let Some((trace, span)) = ids else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Formatted aside first, so the ids can go where readers look for them.
        let mut line = String::with_capacity(320);
        self.inner.format_event(ctx, Writer::new(&mut line), event)?;
        if self.json {
            // The inner format writes one non-empty object and a newline: `{"timestamp":…}\n`.
            let rest = line.strip_prefix('{').ok_or(fmt::Error)?;
            write!(writer, "{{\"trace_id\":\"{trace}\",\"span_id\":\"{span}\",{rest}")
        } else {
            let body = line.strip_suffix('\n').unwrap_or(&line);
            writeln!(writer, "{body} trace_id={trace} span_id={span}")
        }
    }
}

/// The span of one HTTP request, named by its operationId (the method alone for a request
/// matching no operation), continuing the caller's trace when it sent a valid `traceparent`
/// (an invalid one starts a new trace, never an error). Only with tracing enabled.
pub fn request_span(request_id: &str, method: &str, path: &str, headers: &poem::http::HeaderMap) -> Span {
    let op = api_server::rt::operation_for(api_server::OPERATIONS, api_server::BASE_PATH, method, path)
        .and_then(|i| api_server::OPERATIONS.get(i));
    let (name, route) = match op {
        Some((_, template, id)) => (*id, Some(*template)),
        None => (method, None),
    };
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        otel.name = name,
        otel.kind = "server",
        http.request.method = method,
        url.path = path,
        http.route = route,
        http.response.status_code = Empty,
        otel.status_code = Empty,
    );
    let parent = TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(headers));
    if parent.span().span_context().is_valid() {
        let _ = span.set_parent(parent);
    }
    span
}

/// Records the answer's status on a [`request_span`]; a 5xx marks the span failed.
pub fn record_status(span: &Span, status: u16) {
    span.record("http.response.status_code", status);
    if status >= 500 {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one SQL statement, named by the store's name for it (`users.get`): never the
/// SQL text or its parameters. `None` without tracing.
pub fn sql_span(statement: &'static str) -> Option<Span> {
    enabled().then(|| {
        tracing::info_span!(
            "sql",
            otel.name = statement,
            otel.kind = "client",
            db.system.name = "postgresql",
            db.query.summary = statement,
            otel.status_code = Empty,
        )
    })
}

/// The span of one queue script call (`EVALSHA`, with its repeats after failures in transit),
/// named `queue.<script>`. `None` without tracing.
pub fn script_span(script: &'static str) -> Option<Span> {
    enabled().then(|| {
        tracing::info_span!(
            "queue.script",
            otel.name = format!("queue.{script}"),
            otel.kind = "client",
            db.system.name = "redis",
            db.operation.name = "EVALSHA",
            queue.script = script,
            otel.status_code = Empty,
        )
    })
}

/// `call` inside `span` when there is one (a failure marks the span failed), else `call`
/// itself. Not an `async fn`: one would keep `call` twice in its state (the argument and the
/// instrumented copy), and the queue's batch futures, spawned and moved by value, grew by a
/// third of a submitEmailTask's instructions in memcpy (callgrind). The traced case is boxed,
/// so without tracing the future is exactly `call`.
pub fn in_span<'a, T, E>(
    span: Option<Span>,
    call: impl Future<Output = Result<T, E>> + 'a,
) -> impl Future<Output = Result<T, E>> + 'a {
    use futures_util::future::Either;
    match span {
        None => Either::Left(call),
        Some(span) => Either::Right(Box::pin(async move {
            let result = tracing::Instrument::instrument(call, span.clone()).await;
            if result.is_err() {
                record_error(&span);
            }
            result
        })),
    }
}

/// Marks a span from [`sql_span`], [`script_span`] or [`task_span`] failed.
pub fn record_error(span: &Span) {
    span.record("otel.status_code", "ERROR");
}

/// The producer span around enqueueing `count` tasks of `kind`. `None` without tracing.
pub fn enqueue_span(kind: &str, count: usize) -> Option<Span> {
    enabled().then(|| tracing::info_span!("task.enqueue", otel.kind = "producer", task.kind = kind, task.count = count))
}

/// A span's context as a W3C `traceparent` value (what a task record carries), if it has one.
pub fn traceparent(span: &Span) -> Option<String> {
    let cx = span.context();
    if !cx.span().span_context().is_valid() {
        return None;
    }
    let mut carrier = HashMap::with_capacity(1);
    TraceContextPropagator::new().inject_context(&cx, &mut carrier);
    carrier.remove("traceparent")
}

/// The consumer span of one task run, a child of the span that enqueued it when its record
/// carries a valid `traceparent` (records from before traceparents, or with a bad one, start a
/// trace of their own). `None` without tracing.
pub fn task_span(id: &uuid::Uuid, kind: &str, attempt: u32, traceparent: Option<&str>) -> Option<Span> {
    if !enabled() {
        return None;
    }
    let span = tracing::info_span!(
        "task.handle",
        otel.name = format!("task.handle {kind}"),
        otel.kind = "consumer",
        task.id = %id,
        task.kind = kind,
        task.attempt = attempt,
        otel.status_code = Empty,
    );
    if let Some(tp) = traceparent {
        let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
        let parent = TraceContextPropagator::new().extract(&carrier);
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    Some(span)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;

    #[test]
    fn a_traceparent_round_trips_through_a_task_record() {
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let carrier = HashMap::from([("traceparent".to_owned(), tp.to_owned())]);
        let cx = TraceContextPropagator::new().extract(&carrier);
        assert!(cx.span().span_context().is_valid());
        let mut out = HashMap::new();
        TraceContextPropagator::new().inject_context(&cx, &mut out);
        assert_eq!(out.get("traceparent").map(String::as_str), Some(tp));
        let bad = HashMap::from([("traceparent".to_owned(), "00-zz-00f067aa0ba902b7-01".to_owned())]);
        assert!(!TraceContextPropagator::new().extract(&bad).span().span_context().is_valid());
    }
}
