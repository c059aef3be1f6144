//! `CliError`: every way a command can fail, its one-line message and its exit status.
//!
//! | Exit status | Meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a runtime failure: an API error (any HTTP status), an expired session, an unreachable server, a local file problem |
//! | 2 | bad arguments: clap's usage errors and the CLI's own validation ([`CliError::Usage`]) |

use watchgrid_clientkit::files::FileError;
use watchgrid_clientkit::http::{envelope_line, server_error_request_id, status_line, ErrorAnswer};
use watchgrid_clientkit::text::one_line;
use watchgrid_wire::ErrorDetail;

pub use watchgrid_clientkit::exit::{EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The invocation is wrong: a missing or invalid argument that clap could not check.
    #[error("{0}")]
    Usage(String),

    /// No TCP connection, a TLS failure, a timeout.
    #[error("cannot reach {server} : {reason}")]
    Unreachable { server: String, reason: String },

    /// The server answered with a non-success status.
    #[error("{}", api_message(*status, detail.as_deref(), *retry_after, location.as_deref()))]
    Api {
        status: u16,
        /// The error envelope, when the body was one (boxed to keep `Result`s small).
        detail: Option<Box<ErrorDetail>>,
        /// `Retry-After` in seconds, on 429 and 503.
        retry_after: Option<u64>,
        /// `Location`, on a redirect (which the CLI does not follow).
        location: Option<String>,
    },

    /// The stored session was refused and could not be refreshed; the session file is gone.
    #[error("session expired: run watchgrid login")]
    SessionExpired,

    /// A request needed credentials and the CLI had none for this server.
    #[error(
        "not logged in to {server}{}: run watchgrid login (or set WATCHGRID_TOKEN)",
        stored_for.as_ref().map(|s| format!(" (the stored session is for {s})")).unwrap_or_default()
    )]
    NotLoggedIn {
        server: String,
        stored_for: Option<String>,
    },

    /// Writing to standard output failed (e.g. the reader of a pipe went away).
    #[error("cannot write to standard output: {0}")]
    Output(std::io::Error),

    /// Any other runtime failure, already phrased for the user.
    #[error("{0}")]
    Failed(String),

    /// A program the command ran (`ssh`) exited with this status; it has said why itself.
    #[error("the command exited with status {0}")]
    ChildExit(u8),
}

impl From<FileError> for CliError {
    fn from(err: FileError) -> CliError {
        CliError::Failed(err.to_string())
    }
}

impl From<ErrorAnswer> for CliError {
    fn from(answer: ErrorAnswer) -> CliError {
        if let Some(line) = answer.wrong_base_url() {
            return CliError::Failed(line);
        }
        CliError::Api {
            status: answer.status,
            detail: answer.detail,
            retry_after: answer.retry_after,
            location: answer.location,
        }
    }
}

impl CliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Usage(_) => EXIT_USAGE,
            CliError::ChildExit(code) => *code,
            _ => EXIT_FAILURE,
        }
    }

    /// The message as one printable line (without the `watchgrid: ` prefix).
    pub fn one_line(&self) -> String {
        one_line(&self.to_string())
    }

    /// Standard output was closed by its reader: not worth a message.
    pub fn is_broken_pipe(&self) -> bool {
        matches!(self, CliError::Output(e) if e.kind() == std::io::ErrorKind::BrokenPipe)
    }

    /// A 404 from the server said in the command's own words (which user, which tenant).
    pub fn or_not_found(self, what: impl FnOnce() -> String) -> CliError {
        match self {
            CliError::Api { status: 404, .. } => CliError::Failed(what()),
            other => other,
        }
    }

    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            CliError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// `message`, then each field's problem, then hints (request id of a 5xx, Retry-After).
fn api_message(
    status: u16,
    detail: Option<&ErrorDetail>,
    retry_after: Option<u64>,
    location: Option<&str>,
) -> String {
    let mut line = match detail {
        Some(detail) if detail.code == "password_change_required" => {
            "you must change your password first: run watchgrid password".to_string()
        }
        Some(detail) if detail.code == "tenant_required" => {
            "no tenant selected: pass --tenant SLUG".to_string()
        }
        Some(detail) => {
            let mut line = envelope_line(detail);
            if let Some(id) = server_error_request_id(status, detail) {
                line.push_str(&format!(" (request id {id})"));
            }
            line
        }
        None => status_line(status),
    };
    if (300..400).contains(&status) {
        match location {
            Some(to) => line.push_str(&format!(
                " (redirect to {to}; pass the server's final URL as --server)"
            )),
            None => line.push_str(" (a redirect; pass the server's final URL as --server)"),
        }
    }
    if let Some(seconds) = retry_after {
        if !line.contains("retry after") {
            line.push_str(&format!(" (retry after {seconds} s)"));
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use watchgrid_wire::{ErrorDetail, FieldError};

    use super::*;

    fn api(status: u16, detail: Option<ErrorDetail>) -> CliError {
        CliError::Api {
            status,
            detail: detail.map(Box::new),
            retry_after: None,
            location: None,
        }
    }

    fn detail(message: &str, fields: Vec<FieldError>) -> ErrorDetail {
        ErrorDetail {
            code: "x".into(),
            message: message.into(),
            request_id: Some("req-1".into()),
            fields,
        }
    }

    #[test]
    fn envelope_message_is_the_line() {
        let err = api(401, Some(detail("invalid credentials", vec![])));
        assert_eq!(err.one_line(), "invalid credentials");
        assert_eq!(err.exit_code(), EXIT_FAILURE);
    }

    #[test]
    fn validation_fields_are_appended_on_the_same_line() {
        let err = api(
            422,
            Some(detail(
                "the request is invalid",
                vec![
                    FieldError::new("password", "must contain a digit"),
                    FieldError::new("password", "must be at least 12 characters\nlong"),
                ],
            )),
        );
        assert_eq!(
            err.one_line(),
            "the request is invalid: password: must contain a digit; \
             password: must be at least 12 characters long"
        );
    }

    #[test]
    fn server_errors_carry_the_request_id() {
        let err = api(500, Some(detail("internal error", vec![])));
        assert_eq!(err.one_line(), "internal error (request id req-1)");
    }

    #[test]
    fn retry_after_is_mentioned() {
        let err = CliError::Api {
            status: 429,
            detail: Some(Box::new(detail("too many login attempts", vec![]))),
            retry_after: Some(30),
            location: None,
        };
        assert_eq!(err.one_line(), "too many login attempts (retry after 30 s)");
        let err = CliError::Api {
            status: 429,
            detail: Some(Box::new(detail(
                "too many requests; retry after 30 s",
                vec![],
            ))),
            retry_after: Some(30),
            location: None,
        };
        assert_eq!(err.one_line(), "too many requests; retry after 30 s");
    }

    #[test]
    fn some_server_errors_are_said_in_cli_terms() {
        let mut change = detail(
            "you must change your password first (POST /api/auth/password)",
            vec![],
        );
        change.code = "password_change_required".into();
        assert_eq!(
            api(403, Some(change)).one_line(),
            "you must change your password first: run watchgrid password"
        );
        let mut no_tenant = detail(
            "no tenant selected: send the X-Watchgrid-Tenant header with a tenant slug",
            vec![],
        );
        no_tenant.code = "tenant_required".into();
        assert_eq!(
            api(400, Some(no_tenant)).one_line(),
            "no tenant selected: pass --tenant SLUG"
        );
        let missing = api(404, Some(detail("not found", vec![])));
        assert_eq!(
            missing
                .or_not_found(|| "user u1 not found".into())
                .one_line(),
            "user u1 not found"
        );
        let other = api(403, Some(detail("you are not allowed to do this", vec![])));
        assert_eq!(
            other.or_not_found(|| unreachable!()).one_line(),
            "you are not allowed to do this"
        );
    }

    #[test]
    fn a_body_that_is_not_an_envelope_names_the_status() {
        assert_eq!(
            api(502, None).one_line(),
            "the server answered 502 Bad Gateway"
        );
        let redirect = CliError::Api {
            status: 308,
            detail: None,
            retry_after: None,
            location: Some("https://h/".into()),
        };
        assert_eq!(
            redirect.one_line(),
            "the server answered 308 Permanent Redirect \
             (redirect to https://h/; pass the server's final URL as --server)"
        );
    }

    #[test]
    fn control_characters_never_reach_the_terminal() {
        let err = api(400, Some(detail("bad\r\n\u{1b}[31mred", vec![])));
        assert_eq!(err.one_line(), "bad   [31mred");
    }

    #[test]
    fn exit_codes() {
        assert_eq!(CliError::Usage("x".into()).exit_code(), EXIT_USAGE);
        assert_eq!(CliError::SessionExpired.exit_code(), EXIT_FAILURE);
        assert_eq!(
            CliError::SessionExpired.one_line(),
            "session expired: run watchgrid login"
        );
        let unreachable = CliError::Unreachable {
            server: "http://127.0.0.1:9".into(),
            reason: "connection refused".into(),
        };
        assert_eq!(
            unreachable.one_line(),
            "cannot reach http://127.0.0.1:9 : connection refused"
        );
        assert_eq!(unreachable.exit_code(), EXIT_FAILURE);
    }
}
