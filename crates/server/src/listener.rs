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
            .serve_connection(TokioIo::new(stream), service)
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
        let router = Router::new().route(
            "/peer",
            axum::routing::get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move {
                peer.to_string()
            }),
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
}
