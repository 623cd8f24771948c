//! The HTTP listener: accepts connections and serves them with hyper, with a
//! bound on everything a client controls — how many connections, how long
//! the request head may take, how long a connection may sit idle, how large
//! the head may be. `poem::Server` exposes none of these, so this replaces it.

use std::{
    convert::Infallible,
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use anyhow::{Context as _, Result};
use http_body_util::combinators::BoxBody;
use hyper::body::{Bytes, Incoming};
use hyper_util::{
    rt::{TokioExecutor, TokioIo, TokioTimer},
    server::conn::auto,
};
use poem::{
    Addr, Endpoint, Request, Response,
    http::uri::Scheme,
    web::{LocalAddr, RemoteAddr},
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{Semaphore, watch},
    time::Instant,
};

/// What one client may cost the listener. Every field is a setting in
/// `Config` (and the README table).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Most connections served at once; past it the listener stops
    /// accepting, so new connections wait in the kernel's backlog.
    pub max_connections: usize,
    /// Longest time from a connection's first byte of a request to the end of
    /// its head (request line and headers); then the connection is closed.
    pub header_read_timeout: Duration,
    /// A connection with no request running and no byte moving either way for
    /// this long is closed (idle keep-alive, or a client that stopped reading).
    pub idle_timeout: Duration,
    /// Hard cap on a request head, enforced by hyper, which answers an
    /// oversized head with an empty `431` before any operation is chosen.
    /// The service's own header limit (an envelope `431`) sits below it.
    pub max_head_bytes: usize,
}

/// Serves `ep` on `listener` until `shutdown` resolves, then stops accepting
/// and asks every connection to finish its current request; connections
/// still open after `grace` are dropped.
pub async fn serve<E>(
    listener: TcpListener,
    ep: E,
    limits: Limits,
    shutdown: impl Future<Output = ()>,
    grace: Duration,
) -> Result<()>
where
    E: Endpoint<Output = Response> + 'static,
{
    let ep = Arc::new(ep);
    let local = listener.local_addr().context("reading the listen address")?;
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (stop_tx, stop_rx) = watch::channel(false);
    tracing::info!(addr = %local, max_connections = limits.max_connections, "listening");
    tokio::pin!(shutdown);
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let slot = tokio::select! {
            _ = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.context("connection slots closed")?,
        };
        let (socket, remote) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors (or memory) is not fatal: back
                    // off instead of spinning on accept, and say so at most
                    // once a second.
                    if last_accept_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                        tracing::warn!(error = %e, "accept failed; backing off");
                        last_accept_warning = Some(Instant::now());
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = socket.set_nodelay(true);
        let ep = ep.clone();
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            serve_connection(socket, local, remote, ep, limits, stop).await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let open = limits.max_connections - slots.available_permits();
    if open > 0 {
        tracing::info!(open, grace_secs = grace.as_secs_f32(), "finishing in-flight requests");
    }
    // Every connection returns its slot when it ends.
    let all = u32::try_from(limits.max_connections).unwrap_or(u32::MAX);
    if tokio::time::timeout(grace, slots.acquire_many(all)).await.is_err() {
        tracing::warn!(
            open = limits.max_connections - slots.available_permits(),
            "grace period over; dropping connections"
        );
    }
    Ok(())
}

async fn serve_connection<E>(
    socket: TcpStream,
    local: std::net::SocketAddr,
    remote: std::net::SocketAddr,
    ep: Arc<E>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) where
    E: Endpoint<Output = Response> + 'static,
{
    let activity = Arc::new(Activity::default());
    let io = TokioIo::new(Tracked { inner: socket, activity: activity.clone() });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let ep = ep.clone();
            let running = Running::start(activity.clone());
            async move {
                let req = Request::from((
                    req,
                    LocalAddr(Addr::SocketAddr(local)),
                    RemoteAddr(Addr::SocketAddr(remote)),
                    Scheme::HTTP,
                ));
                let resp = ep.get_response(req).await;
                drop(running);
                Ok::<_, Infallible>(hyper::Response::<BoxBody<Bytes, io::Error>>::from(resp))
            }
        })
    };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_head_bytes.max(8192))
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_head_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(64);
    let conn = builder.serve_connection_with_upgrades(io, service);
    tokio::pin!(conn);
    let mut stopping = *stop.borrow();
    if stopping {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        let idle_deadline = activity.last() + limits.idle_timeout;
        tokio::select! {
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, %remote, "connection ended with an error");
                }
                return;
            }
            changed = stop.changed(), if !stopping => {
                stopping = true;
                if changed.is_ok() {
                    conn.as_mut().graceful_shutdown();
                }
            }
            _ = tokio::time::sleep_until(idle_deadline) => {
                if activity.running() == 0 && activity.last() + limits.idle_timeout <= Instant::now() {
                    tracing::debug!(%remote, "closing idle connection");
                    return;
                }
            }
        }
    }
}

/// When bytes last moved on a connection, and how many of its requests are
/// being handled. A handler may take a while without any I/O; that is not
/// idleness.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    running: AtomicUsize,
}

impl Default for Activity {
    fn default() -> Self {
        Activity { epoch: Instant::now(), last_ms: AtomicU64::new(0), running: AtomicUsize::new(0) }
    }
}

impl Activity {
    fn touch(&self) {
        let ms = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn running(&self) -> usize {
        self.running.load(Ordering::Relaxed)
    }
}

/// Counts a request as running until dropped (also when the client goes
/// away mid-request and hyper drops the handler's future).
struct Running(Arc<Activity>);

impl Running {
    fn start(activity: Arc<Activity>) -> Running {
        activity.running.fetch_add(1, Ordering::Relaxed);
        Running(activity)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.0.touch();
        self.0.running.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The socket, noting every read and write that made progress.
struct Tracked {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Tracked {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        res
    }
}

impl AsyncWrite for Tracked {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use poem::{EndpointExt, handler};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// Liveness guard only: a broken listener would hang the test instead.
    const GUARD: Duration = Duration::from_secs(30);

    fn limits() -> Limits {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            max_head_bytes: 64 * 1024,
        }
    }

    /// Serves `ep` in the background; returns its address.
    async fn start<E: Endpoint<Output = Response> + 'static>(ep: E, limits: Limits) -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(listener, ep, limits, std::future::pending(), Duration::from_secs(1)));
        addr
    }

    #[handler]
    fn hello() -> &'static str {
        "hello"
    }

    /// Reads until the server closes the connection; returns what it sent.
    async fn read_to_close(s: &mut TcpStream) -> String {
        let mut out = Vec::new();
        let _ = tokio::time::timeout(GUARD, s.read_to_end(&mut out)).await.expect("the server closed the connection");
        String::from_utf8_lossy(&out).into_owned()
    }

    #[tokio::test]
    async fn a_trickled_request_head_is_cut_off() {
        let addr = start(hello, Limits { header_read_timeout: Duration::from_millis(200), ..limits() }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
        // One header byte every 50 ms: always active, never finished.
        let closed = Arc::new(AtomicBool::new(false));
        let (mut rd, mut wr) = s.into_split();
        let writer = {
            let closed = closed.clone();
            tokio::spawn(async move {
                while !closed.load(Ordering::Relaxed) {
                    if wr.write_all(b"x").await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            })
        };
        let mut buf = Vec::new();
        let _ = tokio::time::timeout(GUARD, rd.read_to_end(&mut buf)).await.expect("closed by the header timeout");
        closed.store(true, Ordering::Relaxed);
        writer.abort();
        assert!(!String::from_utf8_lossy(&buf).contains("hello"));
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_but_a_slow_handler_is_not() {
        #[handler]
        async fn slow() -> &'static str {
            tokio::time::sleep(Duration::from_millis(600)).await;
            "done"
        }
        let addr = start(slow, Limits { idle_timeout: Duration::from_millis(150), ..limits() }).await;
        // Never sends anything: closed.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        assert_eq!(read_to_close(&mut idle).await, "");
        // A handler running longer than the idle timeout still answers, and
        // the kept-alive connection is closed once idle afterwards.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let got = read_to_close(&mut s).await;
        assert!(got.starts_with("HTTP/1.1 200") && got.ends_with("done"), "{got:?}");
    }

    #[tokio::test]
    async fn connections_past_the_cap_wait_for_a_free_slot() {
        let entered = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(tokio::sync::Notify::new());
        let ep = {
            let (entered, release) = (entered.clone(), release.clone());
            poem::endpoint::make(move |_req| {
                let (entered, release) = (entered.clone(), release.clone());
                async move {
                    entered.fetch_add(1, Ordering::SeqCst);
                    release.notified().await;
                    "released"
                }
            })
            .map_to_response()
        };
        let addr = start(ep, Limits { max_connections: 2, ..limits() }).await;
        let req = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(req).await.unwrap();
            held.push(s);
        }
        tokio::time::timeout(GUARD, async {
            while entered.load(Ordering::SeqCst) < 2 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        // The kernel completes the third handshake, but the listener does
        // not take the connection while both slots are held.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third.write_all(req).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(entered.load(Ordering::SeqCst), 2, "a third connection was served past the cap");
        release.notify_waiters();
        for mut s in held {
            assert!(read_to_close(&mut s).await.ends_with("released"));
        }
        // A slot is free again: the waiting connection is served.
        let served = tokio::spawn(async move { read_to_close(&mut third).await });
        tokio::time::timeout(GUARD, async {
            while entered.load(Ordering::SeqCst) < 3 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        release.notify_waiters();
        assert!(served.await.unwrap().ends_with("released"));
    }

    #[tokio::test]
    async fn a_head_past_the_hard_cap_is_refused_by_hyper() {
        let addr = start(hello, Limits { max_head_bytes: 8192, ..limits() }).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let head = format!("GET / HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n", "a".repeat(20_000));
        let _ = s.write_all(head.as_bytes()).await;
        let got = read_to_close(&mut s).await;
        assert!(got.starts_with("HTTP/1.1 431"), "{got:?}");
    }

    #[tokio::test]
    async fn shutdown_lets_a_running_request_finish() {
        let entered = Arc::new(AtomicBool::new(false));
        let ep = {
            let entered = entered.clone();
            poem::endpoint::make(move |_req| {
                let entered = entered.clone();
                async move {
                    entered.store(true, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    "finished"
                }
            })
            .map_to_response()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let stop = async move {
            let _ = rx.await;
        };
        let server = tokio::spawn(serve(listener, ep, limits(), stop, GUARD));
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::timeout(GUARD, async {
            while !entered.load(Ordering::SeqCst) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap();
        tx.send(()).unwrap();
        let got = read_to_close(&mut s).await;
        assert!(got.ends_with("finished"), "{got:?}");
        tokio::time::timeout(GUARD, server).await.unwrap().unwrap().unwrap();
        assert!(TcpStream::connect(addr).await.is_err(), "still accepting after shutdown");
    }
}
