//! Listening sockets and the HTTP/1 connection loop shared by the API listener and the agent
//! API listener.
//!
//! Why not `axum::serve`: it listens with the standard library's backlog of 128 (bursts of
//! agents overflow it and the kernel drops SYNs, costing clients 1–3 s retries), and it serves
//! connections without a timer, so an idle or half-open connection is never closed. At 100,000
//! devices both matter (docs/benchmarks.md, "Accept queue" and "Where the memory goes").

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper::Request;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket};
use tower::ServiceExt;

/// The accept queue's length (the kernel caps it at `net.core.somaxconn`, 4096 by default).
pub const LISTEN_BACKLOG: u32 = 4096;

/// Bind `address` with [`LISTEN_BACKLOG`].
pub fn bind(address: SocketAddr) -> io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // As the standard library does, so a restarted server can bind while old connections
    // linger in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(LISTEN_BACKLOG)
}

/// How a listener treats its connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionPolicy {
    /// Whether a connection may carry more than one request.
    pub keep_alive: bool,
    /// How long a connection may take to send a request's headers, and how long it may sit
    /// idle between requests, before it is closed.
    pub header_read_timeout: Duration,
}

impl ConnectionPolicy {
    /// The API and dashboard: browsers and the CLI reuse connections; idle ones are closed
    /// after 30 s.
    pub const API: Self = Self {
        keep_alive: true,
        header_read_timeout: Duration::from_secs(30),
    };
    /// The agent API: one request per connection. An agent talks every ~30 s; holding 100,000
    /// idle connections would cost ~23 KiB each and a file descriptor. A connection that sends
    /// nothing (an agent that vanished mid-request) is closed after 15 s.
    pub const AGENT: Self = Self {
        keep_alive: false,
        header_read_timeout: Duration::from_secs(15),
    };
}

/// Serve `router` on `listener` until `shutdown` resolves; then stop accepting, let every open
/// connection finish its current request, and return once all are closed. The router sees
/// the peer address as `ConnectInfo<SocketAddr>`; HTTP upgrades work.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    policy: ConnectionPolicy,
    shutdown: impl Future<Output = ()> + Send,
) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.keep_alive(policy.keep_alive)
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_read_timeout);
    // Every connection task holds a receiver: `closed()` on the sender resolves when the last
    // one is dropped, and a send asks them all to shut down gracefully.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_failed(&err).await;
                    continue;
                }
            },
        };
        // Responses are written in one go; do not hold the last segment back.
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let connection = http
            .serve_connection(Enveloped::new(TokioIo::new(stream), peer), service)
            .with_upgrades();
        let mut stop = stop_rx.clone();
        tokio::spawn(async move {
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                result = connection.as_mut() => {
                    if let Err(err) = result {
                        tracing::trace!(%peer, error = %err, "connection ended with an error");
                    }
                    return;
                }
                _ = stop.wait_for(|stopping| *stopping) => {}
            }
            connection.as_mut().graceful_shutdown();
            if let Err(err) = connection.await {
                tracing::trace!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    drop(stop_rx);
    let _ = stop_tx.send(true);
    stop_tx.closed().await;
}

/// hyper answers a request it cannot parse (headers beyond its buffer or its 100 fields, a URI
/// too long, bad syntax) by itself, with an empty body, before the router sees anything. This
/// wrapper of the connection replaces that answer with the API's error envelope, so every
/// 4xx a client gets says what went wrong. Nothing else is touched: the answer is recognised
/// as a whole write of a bodiless 400, 414 or 431 head, which the router never produces (the
/// request middleware gives every error of its own an envelope).
struct Enveloped<T> {
    inner: T,
    peer: SocketAddr,
    /// The envelope answer and how much of it is written, once hyper's answer was replaced.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<T> Enveloped<T> {
    fn new(inner: T, peer: SocketAddr) -> Self {
        Self {
            inner,
            peer,
            replacement: None,
        }
    }
}

impl<T: hyper::rt::Write + Unpin> Enveloped<T> {
    /// Write what is left of the replacement.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some((bytes, written)) = &mut self.replacement {
            while *written < bytes.len() {
                let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                *written += n;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Take hyper's write `buf` in place of the envelope if it is hyper's own parse-error
    /// answer; `true` if so.
    fn replaces(&mut self, buf: &[u8]) -> bool {
        if self.replacement.is_some() {
            return true;
        }
        match enveloped_parse_error(buf) {
            Some((answer, status, request_id)) => {
                tracing::info!(peer = %self.peer, status, %request_id, "refused a request that could not be read as HTTP/1.1");
                self.replacement = Some((answer, 0));
                true
            }
            None => false,
        }
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for Enveloped<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for Enveloped<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.replaces(buf) {
            // hyper's bytes count as written; the envelope goes out instead.
            ready!(this.drain(cx))?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let mut parts = bufs.iter().filter(|b| !b.is_empty());
        let only = match (parts.next(), parts.next()) {
            (Some(first), None) => Some(&**first),
            _ => None,
        };
        if this.replacement.is_some() || only.is_some_and(|head| this.replaces(head)) {
            ready!(this.drain(cx))?;
            return Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum()));
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// If `head` is hyper's bodiless answer to a request it could not parse, the answer with the
/// error envelope instead, its status and the request id it names.
fn enveloped_parse_error(head: &[u8]) -> Option<(Vec<u8>, u16, String)> {
    if head.len() > 1024 || !head.ends_with(b"\r\n\r\n") {
        return None;
    }
    let head = std::str::from_utf8(head).ok()?.to_ascii_lowercase();
    let status: u16 = head.strip_prefix("http/1.1 ")?.get(..3)?.parse().ok()?;
    if !head.contains("\r\ncontent-length: 0\r\n") {
        return None;
    }
    let (code, message) = match status {
        400 => ("bad_request", "the request could not be read as HTTP/1.1"),
        414 => ("uri_too_long", "the request's URI is too long"),
        431 => (
            "request_header_fields_too_large",
            "the request's headers are too large (at most 100 fields in about 400 KiB)",
        ),
        _ => return None,
    };
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::to_vec(&watchgrid_wire::ErrorBody {
        error: watchgrid_wire::ErrorDetail {
            code: code.to_owned(),
            message: message.to_owned(),
            request_id: Some(request_id.clone()),
            fields: Vec::new(),
        },
    })
    .ok()?;
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()?
        .canonical_reason()
        .unwrap_or("");
    let mut answer = format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    Some((answer, status, request_id))
}

/// Per-connection errors (the peer gave up before `accept`) are normal; anything else (out of
/// file descriptors, mostly) is logged and slowed down so the loop does not spin.
async fn accept_failed(err: &io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accepting a connection failed (is LimitNOFILE high enough?)");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly")]

    use std::net::Ipv4Addr;

    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;

    async fn start(policy: ConnectionPolicy) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
        let listener = bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let address = listener.local_addr().unwrap();
        let router = Router::new()
            .route(
                "/peer",
                axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                    peer.to_string()
                }),
            )
            .route(
                "/empty",
                axum::routing::get(|| async { axum::http::StatusCode::NO_CONTENT }),
            );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(serve(listener, router, policy, async {
            let _ = stopped.await;
        }));
        (address, stop)
    }

    async fn get(stream: &mut TcpStream) -> String {
        stream
            .write_all(b"GET /peer HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0; 4096];
        let n = stream.read(&mut buf).await.unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[tokio::test]
    async fn agent_policy_closes_after_one_request_and_passes_the_peer_address() {
        let (address, _stop) = start(ConnectionPolicy::AGENT).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let local = stream.local_addr().unwrap();
        let response = get(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(response.contains("connection: close"), "{response}");
        assert!(response.ends_with(&local.to_string()), "{response}");
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut rest));
        assert_eq!(
            read.await.unwrap().unwrap(),
            0,
            "the server closed the connection"
        );
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_the_header_read_timeout() {
        let policy = ConnectionPolicy {
            header_read_timeout: Duration::from_secs(1),
            ..ConnectionPolicy::API
        };
        let (address, _stop) = start(policy).await;
        let mut stream = TcpStream::connect(address).await.unwrap();
        let response = get(&mut stream).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            !response.contains("connection: close"),
            "kept alive: {response}"
        );
        // Nothing is sent: after the timeout the server closes the idle connection.
        let mut rest = Vec::new();
        let started = std::time::Instant::now();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest));
        assert_eq!(read.await.unwrap().unwrap(), 0);
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "closed only after the timeout"
        );
    }

    #[tokio::test]
    async fn listens_with_a_long_accept_queue() {
        let listener = bind((Ipv4Addr::LOCALHOST, 0).into()).unwrap();
        let port = listener.local_addr().unwrap().port();
        // `ss -ltn` shows the backlog as Send-Q of the listening socket.
        let output = std::process::Command::new("ss")
            .args(["-ltnH", &format!("sport = :{port}")])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout);
        let send_q: u32 = text.split_whitespace().nth(2).unwrap().parse().unwrap();
        let somaxconn: u32 = std::fs::read_to_string("/proc/sys/net/core/somaxconn")
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(send_q, LISTEN_BACKLOG.min(somaxconn), "{text}");
    }

    /// Send `request` and read until the server closes the connection.
    async fn exchange(address: SocketAddr, request: &[u8]) -> String {
        let mut stream = TcpStream::connect(address).await.unwrap();
        // The server may answer and close before it has read everything.
        let _ = stream.write_all(request).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer));
        let _ = read.await.unwrap();
        String::from_utf8_lossy(&answer).into_owned()
    }

    fn envelope_of(answer: &str) -> serde_json::Value {
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.contains("content-type: application/json"), "{head}");
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(length, body.len(), "{answer}");
        let value: serde_json::Value = serde_json::from_str(body).unwrap();
        let id = value["error"]["request_id"].as_str().unwrap();
        assert!(head.contains(&format!("x-request-id: {id}")), "{head}");
        value
    }

    #[tokio::test]
    async fn requests_hyper_cannot_parse_get_the_error_envelope() {
        let (address, _stop) = start(ConnectionPolicy::API).await;

        let huge = format!(
            "GET /peer HTTP/1.1\r\nhost: x\r\nx-big: {}\r\n\r\n",
            "a".repeat(2 * 1024 * 1024)
        );
        let answer = exchange(address, huge.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.200}");
        let envelope = envelope_of(&answer);
        assert_eq!(envelope["error"]["code"], "request_header_fields_too_large");

        let many: String = (0..150).map(|i| format!("x-h{i}: v\r\n")).collect();
        let answer = exchange(
            address,
            format!("GET /peer HTTP/1.1\r\nhost: x\r\n{many}\r\n").as_bytes(),
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:.200}");
        envelope_of(&answer);

        let answer = exchange(address, b"NOT HTTP AT ALL\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:.200}");
        assert_eq!(envelope_of(&answer)["error"]["code"], "bad_request");

        // The router's own answers pass untouched, a bodiless one included.
        let answer = exchange(
            address,
            b"GET /empty HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
        )
        .await;
        assert!(answer.starts_with("HTTP/1.1 204 "), "{answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{answer}");
        assert!(!answer.contains("application/json"), "{answer}");
    }
}
