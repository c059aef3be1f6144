//! `AgentError`: every way a command can fail, its one-line message and its exit status.
//!
//! | Exit status | Meaning |
//! |---|---|
//! | 0 | success, or `run` stopped by SIGTERM/SIGINT |
//! | 1 | a runtime failure: not enrolled, already enrolled, an unreachable or refusing server, a local file or tunnel problem |
//! | 2 | bad arguments |
//! | 3 | `run` stopped because the server presents a WireGuard key other than the pinned one |

use std::fmt::Write as _;

use watchgrid_clientkit::files::FileError;
use watchgrid_clientkit::http::{envelope_line, server_error_request_id, status_line, ErrorAnswer};
use watchgrid_clientkit::text::one_line;
use watchgrid_wire::ErrorDetail;

pub use watchgrid_clientkit::exit::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

/// The exit status of `run` when the server's WireGuard key is not the pinned one. The systemd
/// unit does not restart on it (`RestartPreventExitStatus=3`).
pub const EXIT_KEY_CHANGED: u8 = 3;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// `run` or `status` without a stored enrollment.
    #[error(
        "this device is not enrolled ({} does not exist): run watchgrid-agent enroll --server URL \
         --token TOKEN first",
        state_file
    )]
    NotEnrolled { state_file: String },

    /// `enroll` over an existing enrollment without `--force`.
    #[error(
        "this device is already enrolled as {device_name} in tenant {tenant} ({state_file}); \
         pass --force to replace that enrollment"
    )]
    AlreadyEnrolled {
        device_name: String,
        tenant: String,
        state_file: String,
    },

    /// No TCP connection, a TLS failure, a timeout.
    #[error("cannot reach {url}: {reason}")]
    Unreachable { url: String, reason: String },

    /// The server answered with a non-success status.
    #[error("{}", api_message(action, *status, detail.as_deref(), *retry_after))]
    Api {
        /// What was attempted, e.g. `enrollment`, `heartbeat`.
        action: &'static str,
        status: u16,
        /// The error envelope, when the body was one (boxed to keep `Result`s small).
        detail: Option<Box<ErrorDetail>>,
        /// `Retry-After` in seconds (429, 503).
        retry_after: Option<u64>,
    },

    /// The server answered 2xx with a body the agent cannot use.
    #[error("the answer of {url} is not usable: {reason}")]
    InvalidAnswer { url: String, reason: String },

    /// The server presents another WireGuard key than the one pinned at enrollment.
    #[error("{}", crate::pin::refusal_message(pinned, presented, server_url))]
    KeyChanged {
        pinned: String,
        presented: String,
        server_url: String,
    },

    /// Any other runtime failure (files, the tunnel), already phrased for the user.
    #[error("{0}")]
    Failed(String),
}

impl AgentError {
    /// The server refused a request of `action` (a redirect included, reported by its status
    /// like any other refusal).
    pub fn api(action: &'static str, answer: ErrorAnswer) -> AgentError {
        if let Some(line) = answer.wrong_base_url() {
            return AgentError::Failed(format!("{action} failed: {line}"));
        }
        AgentError::Api {
            action,
            status: answer.status,
            detail: answer.detail,
            retry_after: answer.retry_after,
        }
    }

    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            AgentError::KeyChanged { .. } => EXIT_KEY_CHANGED,
            _ => EXIT_FAILURE,
        }
    }

    /// The message as one printable line (without the `watchgrid-agent: ` prefix).
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            AgentError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The request never got an answer from the server (as opposed to an answer we did not
    /// like): the case where the tunnel itself may be the problem.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, AgentError::Unreachable { .. })
    }
}

impl From<FileError> for AgentError {
    fn from(err: FileError) -> AgentError {
        AgentError::Failed(err.to_string())
    }
}

/// `<action> failed: <message>[: field: reason; ...] (HTTP <status>)`, plus the request id of a
/// 5xx and the `Retry-After` of a 429.
fn api_message(
    action: &str,
    status: u16,
    detail: Option<&ErrorDetail>,
    retry_after: Option<u64>,
) -> String {
    let mut line = format!("{action} failed: ");
    match detail {
        Some(detail) => {
            line.push_str(&envelope_line(detail));
            let _ = write!(line, " (HTTP {status}");
            if let Some(id) = server_error_request_id(status, detail) {
                let _ = write!(line, ", request id {id}");
            }
            line.push(')');
        }
        None => line.push_str(&status_line(status)),
    }
    if let Some(seconds) = retry_after {
        let _ = write!(line, "; retry after {seconds} s");
    }
    line
}

#[cfg(test)]
mod tests {
    use watchgrid_wire::{ErrorBody, FieldError};

    use super::*;

    fn api(status: u16, body: Option<&str>, retry_after: Option<u64>) -> AgentError {
        let detail = body.map(|text| {
            let body: ErrorBody = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}"));
            Box::new(body.error)
        });
        AgentError::Api {
            action: "enrollment",
            status,
            detail,
            retry_after,
        }
    }

    /// One envelope (or none) in, one line out.
    fn check(status: u16, body: Option<&str>, retry_after: Option<u64>, expected: &str) {
        let err = api(status, body, retry_after);
        assert_eq!(err.one_line(), expected);
        assert_eq!(err.exit_code(), EXIT_FAILURE);
        assert_eq!(err.status(), Some(status));
    }

    #[test]
    fn error_envelopes_become_one_line() {
        check(
            401,
            Some(
                r#"{"error":{"code":"invalid_token","message":"the onboarding token is invalid or expired","request_id":"r1"}}"#,
            ),
            None,
            "enrollment failed: the onboarding token is invalid or expired (HTTP 401)",
        );
        check(
            409,
            Some(
                r#"{"error":{"code":"token_used_up","message":"the onboarding token has been used up"}}"#,
            ),
            None,
            "enrollment failed: the onboarding token has been used up (HTTP 409)",
        );
        check(
            422,
            Some(
                r#"{"error":{"code":"validation_failed","message":"request body is invalid","fields":[{"field":"hostname","reason":"must not be empty"},{"field":"wg_public_key","reason":"not a WireGuard\nkey"}]}}"#,
            ),
            None,
            "enrollment failed: request body is invalid: hostname: must not be empty; \
             wg_public_key: not a WireGuard key (HTTP 422)",
        );
        check(
            500,
            Some(
                r#"{"error":{"code":"internal","message":"internal error","request_id":"req-9"}}"#,
            ),
            None,
            "enrollment failed: internal error (HTTP 500, request id req-9)",
        );
        check(
            429,
            Some(r#"{"error":{"code":"rate_limited","message":"too many registrations"}}"#),
            Some(30),
            "enrollment failed: too many registrations (HTTP 429); retry after 30 s",
        );
        check(
            502,
            None,
            None,
            "enrollment failed: the server answered 502 Bad Gateway",
        );
        check(
            599,
            None,
            None,
            "enrollment failed: the server answered 599",
        );
        check(
            400,
            Some(r#"{"error":{"code":"x","message":"bad\r\n\u001b[31mred"}}"#),
            None,
            "enrollment failed: bad   [31mred (HTTP 400)",
        );
    }

    #[test]
    fn exit_codes() {
        let changed = AgentError::KeyChanged {
            pinned: "a".into(),
            presented: "b".into(),
            server_url: "https://h".into(),
        };
        assert_eq!(changed.exit_code(), EXIT_KEY_CHANGED);
        let missing = AgentError::NotEnrolled {
            state_file: "/var/lib/watchgrid-agent/state.json".into(),
        };
        assert_eq!(missing.exit_code(), EXIT_FAILURE);
        assert_eq!(
            missing.one_line(),
            "this device is not enrolled (/var/lib/watchgrid-agent/state.json does not exist): \
             run watchgrid-agent enroll --server URL --token TOKEN first"
        );
        let unreachable = AgentError::Unreachable {
            url: "http://127.0.0.1:9/api/agent/register".into(),
            reason: "connection refused".into(),
        };
        assert!(unreachable.is_unreachable());
        assert_eq!(unreachable.exit_code(), EXIT_FAILURE);
        assert_eq!(
            unreachable.one_line(),
            "cannot reach http://127.0.0.1:9/api/agent/register: connection refused"
        );
    }

    #[test]
    fn field_errors_keep_their_order() {
        let detail = ErrorDetail {
            code: "validation_failed".into(),
            message: "invalid".into(),
            request_id: None,
            fields: vec![FieldError::new("a", "1"), FieldError::new("b", "2")],
        };
        let err = AgentError::Api {
            action: "heartbeat",
            status: 422,
            detail: Some(Box::new(detail)),
            retry_after: None,
        };
        assert_eq!(
            err.one_line(),
            "heartbeat failed: invalid: a: 1; b: 2 (HTTP 422)"
        );
    }
}
