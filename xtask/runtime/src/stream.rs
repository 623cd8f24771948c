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

/// How fast a streamed body must arrive: no gap between chunks longer than
/// `idle`, and, after a grace period of `idle`, an average of at least
/// `min_rate` bytes per second (see [`crate::BodyLimits::min_stream_rate`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pace {
    pub idle: Duration,
    pub min_rate: u32,
}

impl Pace {
    /// How long after the start `read` bytes may have taken.
    fn allowance(&self, read: usize) -> Duration {
        let rate = f64::from(self.min_rate.max(1));
        // f64 keeps the arithmetic overflow-free; precision is irrelevant here.
        self.idle.saturating_add(Duration::from_secs_f64(read as f64 / rate))
    }
}

/// A binary request body (`application/octet-stream`, `image/png`, …) as the
/// client sends it. Each [`chunk`](Self::chunk) waits at most the idle
/// timeout, and the body as a whole must keep the minimum rate; past the
/// byte limit the stream fails with the contract's answer to
/// [`Fault::PayloadTooLarge`], which the handler returns with `?`.
pub struct ByteStream {
    /// The first chunk, read before the handler runs to tell an empty body
    /// from one that has bytes (and to check its media type only then).
    first: Option<Bytes>,
    rest: Option<Chunks>,
    read: usize,
    limit: usize,
    pace: Pace,
    started: tokio::time::Instant,
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
        pace: Pace,
        problem: fn(Fault) -> Problem,
    ) -> Result<Option<ByteStream>, BodyError> {
        let mut s = ByteStream {
            first: None,
            rest: Some(Box::pin(body.into_bytes_stream())),
            read: 0,
            limit,
            pace,
            started: tokio::time::Instant::now(),
            problem,
        };
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
        // Whichever comes first: the idle gap, or the moment the bytes so far
        // fall below the minimum average rate.
        let idle_end = tokio::time::Instant::now() + self.pace.idle;
        let rate_end = self.started + self.pace.allowance(self.read);
        let next = match tokio::time::timeout_at(idle_end.min(rate_end), rest.next()).await {
            Err(_) => {
                self.rest = None;
                let why = if rate_end < idle_end {
                    format!(
                        "the body arrived slower than {} bytes/s ({} bytes in {} ms)",
                        self.pace.min_rate,
                        self.read,
                        self.started.elapsed().as_millis()
                    )
                } else {
                    format!("no body bytes arrived for {} ms", self.pace.idle.as_millis())
                };
                return Err(BodyError::Read(why));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` chunks of `size` bytes, one every `every`.
    fn trickle(n: usize, size: usize, every: Duration) -> poem::Body {
        let chunks = futures_util::stream::iter(0..n).then(move |_| async move {
            tokio::time::sleep(every).await;
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; size]))
        });
        poem::Body::from_bytes_stream(chunks)
    }

    fn problem(f: Fault) -> Problem {
        let _ = f;
        Problem::new(400)
    }

    async fn drain(body: poem::Body, pace: Pace) -> Result<usize, BodyError> {
        let Some(mut s) = ByteStream::open(body, 1 << 20, pace, problem).await? else { return Ok(0) };
        while s.next_raw().await?.is_some() {}
        Ok(s.bytes_read())
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickle_below_the_minimum_rate_fails_though_no_gap_is_idle() {
        let pace = Pace { idle: Duration::from_secs(1), min_rate: 1000 };
        // 10 bytes every 100 ms is 100 B/s: every gap is well within `idle`,
        // but after the grace second the average is far below 1000 B/s.
        let err = drain(trickle(1000, 10, Duration::from_millis(100)), pace).await.unwrap_err();
        assert!(matches!(&err, BodyError::Read(m) if m.contains("slower than 1000 bytes/s")), "{err:?}");
        // The same bytes at 10 kB/s arrive.
        let read = drain(trickle(100, 100, Duration::from_millis(10)), pace).await.unwrap();
        assert_eq!(read, 10_000);
        // A stall is still an idle timeout.
        let pace = Pace { idle: Duration::from_millis(200), min_rate: 1 };
        let err = drain(trickle(2, 10, Duration::from_millis(300)), pace).await.unwrap_err();
        assert!(matches!(&err, BodyError::Read(m) if m.contains("no body bytes arrived")), "{err:?}");
    }
}
