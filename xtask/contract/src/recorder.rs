//! A recording reverse proxy on a loopback port. The typed client decodes
//! responses and drops their bytes, so every request of a run goes through
//! this proxy instead, and the checker sees each response exactly as sent.

use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use poem::{
    Endpoint, Request, Response,
    http::{HeaderMap, StatusCode, header},
    listener::{Acceptor, Listener, TcpListener},
};

/// One request and the upstream's answer, byte for byte.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// Upper case, e.g. `POST`.
    pub method: String,
    /// The request path (with the base path) and query.
    pub path: String,
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    /// The response's headers as `(lower-case name, value)` (a value that is
    /// not visible ASCII is read lossily).
    pub headers: Vec<(String, String)>,
    /// Set when the upstream could not be reached; `status` is then 0.
    pub error: Option<String>,
    /// What was sent, for keyword coverage (which enum values a request used).
    pub request_headers: Vec<(String, String)>,
    pub request_body: Vec<u8>,
}

impl Exchange {
    /// The response as the checker reads it.
    pub fn response(&self) -> super::checker::Response<'_> {
        super::checker::Response {
            status: self.status,
            content_type: self.content_type.as_deref(),
            body: &self.body,
            headers: &self.headers,
            query: self.path.split_once('?').map_or("", |(_, q)| q),
        }
    }
}

/// Stops serving when dropped.
pub struct Recorder {
    base_url: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Recorder {
    /// Proxies `http://127.0.0.1:<port><base path>` to `upstream_base`
    /// (`http://host:port/api/v1`), keeping paths unchanged.
    pub async fn start(upstream_base: &str) -> Result<Recorder> {
        let url =
            reqwest::Url::parse(upstream_base).with_context(|| format!("parsing the base URL {upstream_base:?}"))?;
        let origin = url.origin().ascii_serialization();
        let base_path = url.path().trim_end_matches('/').to_owned();
        // No redirects, no decompression: the client must see what the server sent.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(std::time::Duration::from_secs(30))
            .build()
            .context("building the proxy's HTTP client")?;
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.context("binding the recording proxy")?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("the recording proxy has no socket address")?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let forward = Forward { origin, http, log: log.clone() };
        let server = tokio::spawn(async move {
            if let Err(e) = poem::Server::new_with_acceptor(acceptor).run(forward).await {
                eprintln!("contract: the recording proxy stopped: {e}");
            }
        });
        Ok(Recorder { base_url: format!("http://{addr}{base_path}"), log, server })
    }

    /// The base URL to give clients instead of the upstream's.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The exchanges recorded since the last call, oldest first.
    pub fn take(&self) -> Vec<Exchange> {
        match self.log.lock() {
            Ok(mut log) => std::mem::take(&mut *log),
            Err(poisoned) => std::mem::take(&mut *poisoned.into_inner()),
        }
    }
}

struct Forward {
    origin: String,
    http: reqwest::Client,
    log: Arc<Mutex<Vec<Exchange>>>,
}

/// Connection-level headers, which describe one hop and are not forwarded.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    for h in [
        header::CONNECTION,
        header::HOST,
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHORIZATION,
        header::ACCEPT_ENCODING,
    ] {
        headers.remove(h);
    }
    headers.remove("keep-alive");
}

impl Forward {
    fn record(&self, exchange: Exchange) {
        match self.log.lock() {
            Ok(mut log) => log.push(exchange),
            Err(poisoned) => poisoned.into_inner().push(exchange),
        }
    }
}

impl Endpoint for Forward {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let method = req.method().clone();
        let path = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned());
        let mut headers = req.headers().clone();
        strip_hop_by_hop(&mut headers);
        let body = req.into_body().into_bytes().await?;
        let request = Sent { headers: pairs(&headers), body: body.to_vec() };
        let sent = self
            .http
            .request(method.clone(), format!("{}{path}", self.origin))
            .headers(headers)
            .body(body)
            .send()
            .await;
        let upstream = match sent {
            Ok(r) => r,
            Err(e) => return Ok(self.failed(method.as_str(), path, format!("{e}"), request)),
        };
        let status = upstream.status();
        let mut headers = upstream.headers().clone();
        let bytes = match upstream.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Ok(self.failed(method.as_str(), path, format!("reading the response body: {e}"), request));
            }
        };
        self.record(Exchange {
            method: method.as_str().to_owned(),
            path,
            status: status.as_u16(),
            content_type: headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned),
            body: bytes.to_vec(),
            headers: pairs(&headers),
            error: None,
            request_headers: request.headers,
            request_body: request.body,
        });
        strip_hop_by_hop(&mut headers);
        let mut resp = Response::builder().status(status).body(bytes);
        *resp.headers_mut() = headers;
        Ok(resp)
    }
}

impl Forward {
    fn failed(&self, method: &str, path: String, error: String, sent: Sent) -> Response {
        self.record(Exchange {
            method: method.to_owned(),
            path,
            status: 0,
            content_type: None,
            body: Vec::new(),
            headers: Vec::new(),
            error: Some(error.clone()),
            request_headers: sent.headers,
            request_body: sent.body,
        });
        Response::builder().status(StatusCode::BAD_GATEWAY).body(error)
    }
}

/// The request as forwarded.
struct Sent {
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

/// Headers as `(lower-case name, value)`; a value that is not visible ASCII is read lossily.
fn pairs(headers: &HeaderMap) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.as_str().to_owned(), String::from_utf8_lossy(v.as_bytes()).into_owned())).collect()
}
