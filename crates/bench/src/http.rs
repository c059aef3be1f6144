//! A minimal HTTP/1.1 client for the load generator: one request per new TCP connection, bound
//! to a chosen source address. Hand-written so that the generator, which shares the CPU with
//! the server under test, spends as few cycles per request as possible; it still sends a
//! complete, ordinary request and reads the whole response (status line, headers, and a body
//! of `Content-Length` bytes).

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Why a request failed; counted by kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Failure {
    Connect(String),
    Io(String),
    Timeout,
    /// The response could not be parsed.
    Protocol(&'static str),
    /// A status other than 200.
    Status(u16),
    /// 200, but the body lacked the expected text.
    Body,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Connect(e) => write!(f, "connect: {e}"),
            Failure::Io(e) => write!(f, "io: {e}"),
            Failure::Timeout => f.write_str("timeout"),
            Failure::Protocol(what) => write!(f, "bad response: {what}"),
            Failure::Status(code) => write!(f, "HTTP {code}"),
            Failure::Body => f.write_str("unexpected body"),
        }
    }
}

/// `POST path` with a JSON body and an optional bearer credential.
pub fn post_request(
    host: SocketAddr,
    path: &str,
    bearer: Option<&str>,
    body: &[u8],
    out: &mut Vec<u8>,
) {
    use std::io::Write;
    out.clear();
    // Writing to a Vec cannot fail.
    let _ = write!(out, "POST {path} HTTP/1.1\r\nHost: {host}\r\n");
    if let Some(token) = bearer {
        let _ = write!(out, "Authorization: Bearer {token}\r\n");
    }
    let _ = write!(
        out,
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    out.extend_from_slice(body);
}

/// `GET path`, closing the connection afterwards.
pub fn get_request(host: SocketAddr, path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// A parsed response head.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Head {
    pub status: u16,
    /// Bytes of the head including the blank line.
    pub len: usize,
    pub content_length: Option<usize>,
}

/// Parse a response head from the start of `buf`: `Ok(None)` while it is incomplete.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, Failure> {
    let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        if buf.len() > 16 * 1024 {
            return Err(Failure::Protocol("head longer than 16 KiB"));
        }
        return Ok(None);
    };
    let head =
        std::str::from_utf8(&buf[..end]).map_err(|_| Failure::Protocol("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(Failure::Protocol("not an HTTP/1.x status line"));
    }
    let status = parts
        .next()
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or(Failure::Protocol("no status code"))?;
    let mut content_length = None;
    for line in lines {
        if let Some((name, value)) = line.split_once(':') {
            if name.trim().eq_ignore_ascii_case("content-length") {
                content_length = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| Failure::Protocol("bad content-length"))?,
                );
            } else if name.trim().eq_ignore_ascii_case("transfer-encoding") {
                return Err(Failure::Protocol("chunked responses are not supported"));
            }
        }
    }
    Ok(Some(Head {
        status,
        len: end + 4,
        content_length,
    }))
}

/// Connect from `source` (port chosen by the kernel) to `target`.
pub async fn connect(source: Ipv4Addr, target: SocketAddr) -> Result<TcpStream, Failure> {
    let socket = TcpSocket::new_v4().map_err(|e| Failure::Connect(e.kind().to_string()))?;
    socket
        .bind(SocketAddr::from((source, 0)))
        .map_err(|e| Failure::Connect(format!("bind {source}: {}", e.kind())))?;
    let stream = socket
        .connect(target)
        .await
        .map_err(|e| Failure::Connect(e.kind().to_string()))?;
    stream
        .set_nodelay(true)
        .map_err(|e| Failure::Connect(e.kind().to_string()))?;
    Ok(stream)
}

/// Send `request` on `stream` and read one whole response into `buf`. Returns the status and
/// the body's range in `buf`.
pub async fn exchange(
    stream: &mut TcpStream,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(u16, std::ops::Range<usize>), Failure> {
    stream
        .write_all(request)
        .await
        .map_err(|e| Failure::Io(e.kind().to_string()))?;
    buf.clear();
    let mut chunk = [0u8; 4096];
    let head = loop {
        let n = stream
            .read(&mut chunk)
            .await
            .map_err(|e| Failure::Io(e.kind().to_string()))?;
        if n == 0 {
            return Err(Failure::Protocol(
                "connection closed before the response head",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(head) = parse_head(buf)? {
            break head;
        }
    };
    match head.content_length {
        Some(len) => {
            while buf.len() < head.len + len {
                let n = stream
                    .read(&mut chunk)
                    .await
                    .map_err(|e| Failure::Io(e.kind().to_string()))?;
                if n == 0 {
                    return Err(Failure::Protocol("connection closed inside the body"));
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            Ok((head.status, head.len..head.len + len))
        }
        None => {
            // No length: the body runs to the end of the connection.
            stream
                .read_to_end(buf)
                .await
                .map_err(|e| Failure::Io(e.kind().to_string()))?;
            Ok((head.status, head.len..buf.len()))
        }
    }
}

/// One request on a new connection from `source`, within `timeout`; checks for status 200
/// and a body containing `expect`.
pub async fn one_shot(
    source: Ipv4Addr,
    target: SocketAddr,
    request: &[u8],
    expect: &[u8],
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), Failure> {
    let attempt = async {
        let mut stream = connect(source, target).await?;
        let (status, body) = exchange(&mut stream, request, buf).await?;
        check(status, &buf[body], expect)
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .map_err(|_| Failure::Timeout)?
}

/// Status 200 and a body containing `expect`.
pub fn check(status: u16, body: &[u8], expect: &[u8]) -> Result<(), Failure> {
    if status != 200 {
        return Err(Failure::Status(status));
    }
    if !expect.is_empty() && !body.windows(expect.len()).any(|w| w == expect) {
        return Err(Failure::Body);
    }
    Ok(())
}

/// A GET from `source`, for readiness probes: the status, or the failure.
pub async fn get_status(source: Ipv4Addr, target: SocketAddr, path: &str) -> Result<u16, Failure> {
    let attempt = async {
        let mut stream = connect(source, target).await?;
        let mut buf = Vec::new();
        let (status, _) = exchange(&mut stream, &get_request(target, path), &mut buf).await?;
        Ok(status)
    };
    tokio::time::timeout(Duration::from_secs(5), attempt)
        .await
        .map_err(|_| Failure::Timeout)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_are_parsed_when_complete() {
        let response = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}";
        let head = parse_head(response).unwrap().unwrap();
        assert_eq!(head.status, 200);
        assert_eq!(head.content_length, Some(11));
        assert_eq!(&response[head.len..], b"{\"ok\":true}");
        assert_eq!(parse_head(&response[..20]).unwrap(), None);
        let unauthorized = b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\n\r\n";
        assert_eq!(parse_head(unauthorized).unwrap().unwrap().status, 401);
        assert!(parse_head(b"SSH-2.0-x\r\n\r\n").is_err());
        assert!(parse_head(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n").is_err());
    }

    #[test]
    fn requests_are_complete() {
        let mut out = Vec::new();
        let host: SocketAddr = "127.64.0.1:8081".parse().unwrap();
        post_request(host, "/api/agent/heartbeat", Some("wgd_x"), b"{}", &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "POST /api/agent/heartbeat HTTP/1.1\r\nHost: 127.64.0.1:8081\r\nAuthorization: Bearer wgd_x\r\n\
             Content-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
        );
    }

    #[test]
    fn checks_want_200_and_the_expected_text() {
        assert_eq!(check(200, b"{\"ok\":true}", b"\"ok\":true"), Ok(()));
        assert_eq!(check(200, b"{}", b"\"ok\":true"), Err(Failure::Body));
        assert_eq!(check(401, b"{}", b""), Err(Failure::Status(401)));
        assert_eq!(check(200, b"", b""), Ok(()));
    }
}
