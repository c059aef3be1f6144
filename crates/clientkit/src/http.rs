//! The HTTP side of a client of the server: a reqwest client that never follows a redirect, why
//! a request got no answer ([`transport_reason`]), and a refused request's status, error
//! envelope and hints ([`ErrorAnswer`]), with the parts of its one-line message that both
//! binaries say alike.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, LOCATION, RETRY_AFTER};
use reqwest::{Client, Response, StatusCode};
use watchgrid_wire::{ErrorBody, ErrorDetail};

use crate::text::{io_text, lower_first, strip_os_error};

/// How a client talks to one server.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// `watchgrid-cli/0.1.0`, `watchgrid-agent/0.1.0`.
    pub user_agent: &'static str,
    /// How long a connection may take to open.
    pub connect_timeout: Duration,
    /// How long a request may take in all.
    pub timeout: Duration,
    /// Whether the system's proxy settings apply (`false` for a request that must leave
    /// through the WireGuard interface).
    pub system_proxy: bool,
}

/// A reqwest client with these options. It follows no redirect: a redirect would resend the
/// credentials and the body somewhere else, so the caller reports it instead. The error is the
/// message for the user.
pub fn client(options: &ClientOptions) -> Result<Client, String> {
    let mut builder = Client::builder()
        .user_agent(options.user_agent)
        .connect_timeout(options.connect_timeout)
        .timeout(options.timeout)
        .redirect(reqwest::redirect::Policy::none());
    if !options.system_proxy {
        builder = builder.no_proxy();
    }
    builder
        .build()
        .map_err(|e| format!("cannot set up the HTTP client: {e}"))
}

/// Why a request did not get an answer, in a few words: `connection refused`, `timed out`,
/// `failed to lookup address information: ...`, a TLS problem.
pub fn transport_reason(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return "timed out".to_string();
    }
    let reason = chain_reason(err);
    if err.url().is_some_and(|url| url.scheme() == "https") && speaks_plain_http(&reason) {
        return format!(
            "the server speaks plain HTTP on this port, not HTTPS ({reason}): use http:// or \
             the port TLS is served on"
        );
    }
    reason
}

/// The TLS handshake got an answer that is no TLS record: an HTTP server (its `HTTP/1.1 400`)
/// in rustls' and OpenSSL's words.
fn speaks_plain_http(reason: &str) -> bool {
    [
        "InvalidContentType",
        "corrupt message",
        "wrong version number",
        "packet length too long",
    ]
    .iter()
    .any(|sign| reason.contains(sign))
}

fn chain_reason(err: &reqwest::Error) -> String {
    let mut innermost: Option<&(dyn std::error::Error + 'static)> = None;
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        // The OS error of a refused connection or a failed lookup; tokio-rustls also wraps TLS
        // errors in an io::Error, whose text is then the TLS error's.
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            return io_reason(io);
        }
        innermost = Some(cause);
        source = cause.source();
    }
    match innermost {
        Some(cause) => lower_first(&strip_os_error(&cause.to_string())),
        None => lower_first(&err.to_string()),
    }
}

fn io_reason(err: &std::io::Error) -> String {
    use std::io::ErrorKind;
    match err.kind() {
        ErrorKind::ConnectionRefused => "connection refused".to_string(),
        ErrorKind::ConnectionReset => "connection reset".to_string(),
        ErrorKind::ConnectionAborted => "connection aborted".to_string(),
        ErrorKind::TimedOut => "timed out".to_string(),
        _ => io_text(err),
    }
}

/// A non-success answer of the server: what a message about it can say.
#[derive(Debug)]
pub struct ErrorAnswer {
    pub status: u16,
    /// The error envelope, when the body was one (boxed to keep `Result`s small).
    pub detail: Option<Box<ErrorDetail>>,
    /// `Retry-After` in seconds (429, 503).
    pub retry_after: Option<u64>,
    /// `Location`, on a redirect (which the clients do not follow).
    pub location: Option<String>,
    /// The URL that was asked.
    pub url: String,
}

impl ErrorAnswer {
    /// Read a non-success answer: its status, the headers and the body as an error envelope.
    pub async fn read(response: Response) -> ErrorAnswer {
        let status = response.status().as_u16();
        let url = response.url().to_string();
        let retry_after = retry_after(response.headers());
        let location = header_text(response.headers(), LOCATION);
        // A body that is not the envelope (a proxy's HTML page) leaves only the status to
        // report.
        let detail = response
            .json::<ErrorBody>()
            .await
            .ok()
            .map(|body| Box::new(body.error));
        ErrorAnswer {
            status,
            detail,
            retry_after,
            location,
            url,
        }
    }

    /// A 404 that is no API answer (the server's `unknown_endpoint`, or a 404 without the
    /// envelope from whatever else listens there): the base URL given is wrong. The line says
    /// so, naming the URL asked.
    pub fn wrong_base_url(&self) -> Option<String> {
        let unknown = match &self.detail {
            None => true,
            Some(detail) => detail.code == "unknown_endpoint",
        };
        (self.status == 404 && unknown).then(|| {
            format!(
                "{} is not a Watchgrid API endpoint (404): pass --server the server's base URL, \
                 such as https://watchgrid.example.com",
                self.url
            )
        })
    }
}

/// `Retry-After` in seconds (the HTTP-date form is not used by Watchgrid).
pub fn retry_after(headers: &HeaderMap) -> Option<u64> {
    header_text(headers, RETRY_AFTER)?.trim().parse().ok()
}

fn header_text(headers: &HeaderMap, name: HeaderName) -> Option<String> {
    headers.get(name)?.to_str().ok().map(str::to_string)
}

/// The envelope's message, then each field's problem: `message: field: reason; field: reason`.
pub fn envelope_line(detail: &ErrorDetail) -> String {
    let mut line = detail.message.clone();
    if !detail.fields.is_empty() {
        let fields: Vec<String> = detail
            .fields
            .iter()
            .map(|f| format!("{}: {}", f.field, f.reason))
            .collect();
        line.push_str(": ");
        line.push_str(&fields.join("; "));
    }
    line
}

/// The request id worth quoting: a server error's, which the server logged with its detail.
/// A 4xx is the caller's own doing and is explained by the message.
pub fn server_error_request_id(status: u16, detail: &ErrorDetail) -> Option<&str> {
    if status >= 500 {
        detail.request_id.as_deref()
    } else {
        None
    }
}

/// A status without an envelope: `the server answered 502 Bad Gateway` (or just the number
/// when it has no name).
pub fn status_line(status: u16) -> String {
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    format!("the server answered {status} {reason}")
        .trim_end()
        .to_string()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use reqwest::header::HeaderValue;
    use watchgrid_wire::FieldError;

    use super::*;

    fn detail(message: &str, fields: Vec<FieldError>) -> ErrorDetail {
        ErrorDetail {
            code: "x".into(),
            message: message.into(),
            request_id: Some("req-1".into()),
            fields,
        }
    }

    fn answer(status: u16, detail: Option<ErrorDetail>) -> ErrorAnswer {
        ErrorAnswer {
            status,
            detail: detail.map(Box::new),
            retry_after: None,
            location: None,
            url: "http://h:8080/wrong/api/auth/me".into(),
        }
    }

    #[test]
    fn only_route_404s_blame_the_base_url() {
        let mut unknown = detail("no such API endpoint: /wrong/api/auth/me", vec![]);
        unknown.code = "unknown_endpoint".into();
        let line = answer(404, Some(unknown)).wrong_base_url().unwrap();
        assert!(
            line.starts_with("http://h:8080/wrong/api/auth/me is not a Watchgrid API endpoint"),
            "{line}"
        );
        assert!(answer(404, None).wrong_base_url().is_some());
        let mut missing = detail("not found", vec![]);
        missing.code = "not_found".into();
        assert_eq!(answer(404, Some(missing)).wrong_base_url(), None);
        assert_eq!(answer(401, None).wrong_base_url(), None);
    }

    #[test]
    fn envelopes_list_their_fields_in_order() {
        assert_eq!(envelope_line(&detail("invalid", vec![])), "invalid");
        assert_eq!(
            envelope_line(&detail(
                "invalid",
                vec![FieldError::new("a", "1"), FieldError::new("b", "2")]
            )),
            "invalid: a: 1; b: 2"
        );
    }

    #[test]
    fn only_server_errors_quote_the_request_id() {
        let detail = detail("internal error", vec![]);
        assert_eq!(server_error_request_id(500, &detail), Some("req-1"));
        assert_eq!(server_error_request_id(503, &detail), Some("req-1"));
        assert_eq!(server_error_request_id(401, &detail), None);
        let anonymous = ErrorDetail {
            request_id: None,
            ..detail
        };
        assert_eq!(server_error_request_id(500, &anonymous), None);
    }

    #[test]
    fn a_status_without_an_envelope_is_named() {
        assert_eq!(status_line(502), "the server answered 502 Bad Gateway");
        assert_eq!(
            status_line(308),
            "the server answered 308 Permanent Redirect"
        );
        assert_eq!(status_line(599), "the server answered 599");
    }

    #[test]
    fn retry_after_is_read_in_seconds() {
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, HeaderValue::from_static(" 17 "));
        assert_eq!(retry_after(&headers), Some(17));
        headers.insert(
            RETRY_AFTER,
            HeaderValue::from_static("Wed, 21 Oct 2015 07:28:00 GMT"),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn clients_build_with_and_without_proxies() {
        for system_proxy in [true, false] {
            client(&ClientOptions {
                user_agent: "watchgrid-test/0",
                connect_timeout: Duration::from_secs(1),
                timeout: Duration::from_secs(2),
                system_proxy,
            })
            .unwrap();
        }
    }
}
