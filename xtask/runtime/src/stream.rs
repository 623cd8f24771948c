//! Binary bodies streamed both ways: an upload the handler reads chunk by
//! chunk ([`ByteStream`]) and a download it may hand over as a stream
//! ([`Binary`]). Neither is ever buffered whole by the runtime, so their
//! limit is not the JSON body limit (which bounds memory) but one of bytes
//! and idle time, enforced while the handler reads.

use std::{fmt, pin::Pin, time::Duration};

use bytes::Bytes;
use futures_util::{Stream, StreamExt};

use crate::{BodyError, Fault, Problem};

type Chunks = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// A binary request body (`application/octet-stream`, `image/png`, …) as the
/// client sends it. Each [`chunk`](Self::chunk) waits at most the idle
/// timeout; past the byte limit the stream fails with the contract's
/// answer to [`Fault::PayloadTooLarge`], which the handler returns with `?`.
pub struct ByteStream {
    /// The first chunk, read before the handler runs to tell an empty body
    /// from one that has bytes (and to check its media type only then).
    first: Option<Bytes>,
    rest: Option<Chunks>,
    read: usize,
    limit: usize,
    idle: Duration,
    problem: fn(Fault) -> Problem,
}

impl fmt::Debug for ByteStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByteStream").field("read", &self.read).field("limit", &self.limit).finish_non_exhaustive()
    }
}

impl ByteStream {
    /// Reads the first chunk of `body`: `None` when the body is empty.
    /// `problem` turns a fault into the contract's error (the generated
    /// crate's `fault`).
    pub(crate) async fn open(
        body: poem::Body,
        limit: usize,
        idle: Duration,
        problem: fn(Fault) -> Problem,
    ) -> Result<Option<ByteStream>, BodyError> {
        let mut s =
            ByteStream { first: None, rest: Some(Box::pin(body.into_bytes_stream())), read: 0, limit, idle, problem };
        loop {
            match s.next_raw().await {
                Err(e) => return Err(e),
                Ok(None) => return Ok(None),
                // Empty data frames carry nothing: keep looking.
                Ok(Some(b)) if b.is_empty() => continue,
                Ok(Some(b)) => {
                    s.first = Some(b);
                    return Ok(Some(s));
                }
            }
        }
    }

    async fn next_raw(&mut self) -> Result<Option<Bytes>, BodyError> {
        if let Some(b) = self.first.take() {
            return Ok(Some(b));
        }
        let Some(rest) = self.rest.as_mut() else { return Ok(None) };
        let next = match tokio::time::timeout(self.idle, rest.next()).await {
            Err(_) => {
                self.rest = None;
                return Err(BodyError::Read(format!("no body bytes arrived for {} ms", self.idle.as_millis())));
            }
            Ok(n) => n,
        };
        match next {
            None => {
                self.rest = None;
                Ok(None)
            }
            Some(Err(e)) => {
                self.rest = None;
                Err(BodyError::Read(e.to_string()))
            }
            Some(Ok(b)) => {
                self.read = self.read.saturating_add(b.len());
                if self.read > self.limit {
                    self.rest = None;
                    return Err(BodyError::TooLarge(self.limit));
                }
                Ok(Some(b))
            }
        }
    }

    /// The next chunk of the body, `None` at its end. A body over the limit,
    /// one that stalls longer than the idle timeout or a broken connection
    /// is an error in the contract's format (its status as the error
    /// registry maps the fault); after one, the stream is over.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Problem> {
        self.next_raw().await.map_err(|e| {
            let (fault, message) = e.into_error();
            (self.problem)(fault).with_data(serde_json::json!({ "errors": [{ "field": "body", "message": message }] }))
        })
    }

    /// Bytes read so far.
    pub fn bytes_read(&self) -> usize {
        self.read
    }

    /// The most bytes this body may have.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// The whole body in memory, for a handler that needs it at once and
    /// accepts that it may be as large as [`limit`](Self::limit).
    pub async fn to_vec(mut self) -> Result<Vec<u8>, Problem> {
        let mut out = Vec::new();
        while let Some(b) = self.chunk().await? {
            out.extend_from_slice(&b);
        }
        Ok(out)
    }
}

/// A binary response body: bytes in memory or a stream the server writes as
/// it is produced (never collected). A stream's errors end the response
/// early: the status is already sent, so a client sees a truncated body
/// (with `Content-Length` unknown, a chunked one that does not end cleanly).
pub enum Binary {
    Bytes(Bytes),
    Stream(poem::Body),
}

impl Binary {
    /// A body written as `stream` yields it.
    pub fn from_stream<S, E>(stream: S) -> Binary
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<std::io::Error> + 'static,
    {
        Binary::Stream(poem::Body::from_bytes_stream(stream))
    }

    /// A body read from `reader` as the client takes it (a file, say).
    pub fn from_async_read(reader: impl tokio::io::AsyncRead + Send + 'static) -> Binary {
        Binary::Stream(poem::Body::from_async_read(reader))
    }

    /// The bytes of a body held in memory; `None` for a stream.
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Binary::Bytes(b) => Some(b),
            Binary::Stream(_) => None,
        }
    }
}

impl fmt::Debug for Binary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Binary::Bytes(b) => write!(f, "Binary::Bytes({} bytes)", b.len()),
            Binary::Stream(_) => f.write_str("Binary::Stream(..)"),
        }
    }
}

impl From<Binary> for poem::Body {
    fn from(b: Binary) -> poem::Body {
        match b {
            Binary::Bytes(b) => poem::Body::from_bytes(b),
            Binary::Stream(s) => s,
        }
    }
}

impl From<Vec<u8>> for Binary {
    fn from(v: Vec<u8>) -> Binary {
        Binary::Bytes(v.into())
    }
}

impl From<Bytes> for Binary {
    fn from(b: Bytes) -> Binary {
        Binary::Bytes(b)
    }
}

impl From<&'static [u8]> for Binary {
    fn from(b: &'static [u8]) -> Binary {
        Binary::Bytes(Bytes::from_static(b))
    }
}
