//! The built `watchgrid` binary as a user runs it: help, version, exit statuses, and one-line
//! errors for bad arguments and an unreachable server. (End-to-end tests against a real
//! server live with the server.)

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::process::{Command, Output, Stdio};

use watchgrid_clientkit::testing::{self, stderr, stdout};

/// A port nothing listens on: connections to it are refused at once.
const CLOSED: &str = "http://127.0.0.1:9";

/// Run `watchgrid args` with an empty configuration directory and none of the user's
/// Watchgrid variables.
fn watchgrid(args: &[&str]) -> (Output, tempfile::TempDir) {
    let config = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_watchgrid"))
        .args(args)
        .env("WATCHGRID_CONFIG_DIR", config.path())
        .env_remove("WATCHGRID_SERVER")
        .env_remove("WATCHGRID_TOKEN")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, config)
}

/// stderr must be exactly one line starting `watchgrid: `; returns it.
fn one_error_line(output: &Output) -> String {
    testing::one_error_line(output, "watchgrid")
}

#[test]
fn help_lists_the_commands() {
    let (out, _dir) = watchgrid(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for command in [
        "login", "logout", "whoami", "password", "tenants", "users", "tokens", "devices", "audit",
        "version",
    ] {
        assert!(text.contains(command), "{command} missing from {text}");
    }
    assert!(text.contains("WATCHGRID_SERVER"), "{text}");

    let (out, _dir) = watchgrid(&["users", "add", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(stdout(&out).contains("--password-stdin"));

    let (out, _dir) = watchgrid(&["tokens", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for command in ["list", "create", "revoke", "onboarding"] {
        assert!(text.contains(command), "{command} missing from {text}");
    }

    let (out, _dir) = watchgrid(&["devices", "--help"]);
    assert_eq!(out.status.code(), Some(0));
    let text = stdout(&out);
    for command in [
        "list",
        "show",
        "rename",
        "tag",
        "delete",
        "add-plain",
        "config",
    ] {
        assert!(text.contains(command), "{command} missing from {text}");
    }
}

#[test]
fn ssh_arguments_are_checked_before_any_request() {
    let (out, _dir) = watchgrid(&["--help"]);
    for command in ["ssh", "ssh-proxy", "ssh-cert", "ssh-config"] {
        assert!(stdout(&out).contains(command), "{command} missing");
    }
    let (out, _dir) = watchgrid(&["--server", CLOSED, "ssh"]);
    assert_eq!(out.status.code(), Some(2));
    for args in [
        &[
            "--server",
            CLOSED,
            "ssh",
            "-i",
            "/nonexistent/key",
            "web-01",
        ][..],
        &[
            "--server",
            CLOSED,
            "ssh-cert",
            "--identity",
            "/nonexistent/key",
        ][..],
    ] {
        let (out, _dir) = watchgrid(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let line = one_error_line(&out);
        assert!(
            line.contains("'--identity'") && line.contains("/nonexistent/key.pub"),
            "{line}"
        );
    }
}

#[test]
fn device_arguments_are_checked_before_any_request() {
    let (out, _dir) = watchgrid(&["--server", CLOSED, "devices", "rename", "laptop", "-x"]);
    assert_eq!(out.status.code(), Some(2));
    let (out, _dir) = watchgrid(&["--server", CLOSED, "devices", "rename", "laptop", "Laptop"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("'NEW_NAME'"));
    let (out, _dir) = watchgrid(&[
        "--server",
        CLOSED,
        "tokens",
        "onboarding",
        "create",
        "--max-uses",
        "100001",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("'--max-uses'"));
}

#[test]
fn an_unwritable_output_file_fails_before_the_device_is_created() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("missing").join("phone.conf");
    let (out, _config) = watchgrid(&[
        "--server",
        CLOSED,
        "--token",
        "wgt_x",
        "devices",
        "add-plain",
        "phone",
        "--output",
        file.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    // The file is the problem, not the (unreachable) server: nothing was sent.
    assert_eq!(
        one_error_line(&out),
        format!(
            "watchgrid: cannot write {}: no such file or directory",
            file.display()
        )
    );
}

#[test]
fn help_never_shows_the_token_from_the_environment() {
    let config = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid"))
        .arg("--help")
        .env("WATCHGRID_CONFIG_DIR", config.path())
        .env("WATCHGRID_TOKEN", "wgt_supersecret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("supersecret"), "{}", stdout(&out));
}

#[test]
fn version_flag_prints_the_client_version() {
    let (out, _dir) = watchgrid(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("watchgrid {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_argument_exits_2_with_one_line_naming_it() {
    let (out, _dir) = watchgrid(&["users", "add", "bob", "--role", "boss"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_error_line(&out),
        "watchgrid: invalid value \"boss\" for '--role': expected owner, admin, operator or viewer"
    );

    let (out, _dir) = watchgrid(&["audit", "--since", "last tuesday"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("'--since'"));

    let (out, _dir) = watchgrid(&[
        "--server", CLOSED, "audit", "--since", "1d", "--until", "2d",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("'--until'"));

    let (out, _dir) = watchgrid(&["tenants", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(one_error_line(&out).contains("frobnicate"));
}

#[test]
fn no_server_is_a_usage_error() {
    let (out, _dir) = watchgrid(&["whoami"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        one_error_line(&out),
        "watchgrid: no server: pass --server URL or log in first"
    );
}

#[test]
fn an_unreachable_server_exits_1_naming_the_url() {
    let expected = format!("watchgrid: cannot reach {CLOSED} : connection refused");

    let (out, _dir) = watchgrid(&["--server", CLOSED, "whoami"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(one_error_line(&out), expected);
    assert_eq!(stdout(&out), "");

    let (out, _dir) = watchgrid(&["--server", CLOSED, "version"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(one_error_line(&out), expected);
    assert!(stdout(&out).contains(env!("CARGO_PKG_VERSION")));
}

#[test]
fn the_server_can_come_from_the_environment() {
    let config = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid"))
        .args(["tokens", "list"])
        .env("WATCHGRID_CONFIG_DIR", config.path())
        .env("WATCHGRID_SERVER", format!("{CLOSED}/"))
        .env("WATCHGRID_TOKEN", "wgt_x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        one_error_line(&out),
        format!("watchgrid: cannot reach {CLOSED} : connection refused")
    );
}

#[test]
fn login_against_an_unreachable_server_stores_nothing() {
    let config = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_watchgrid"))
        .args([
            "--server",
            CLOSED,
            "login",
            "--username",
            "alice",
            "--password-stdin",
        ])
        .env("WATCHGRID_CONFIG_DIR", config.path())
        .env_remove("WATCHGRID_SERVER")
        .env_remove("WATCHGRID_TOKEN")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"correct horse battery staple\n").unwrap();
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let line = one_error_line(&out);
    assert!(line.contains("cannot reach"), "{line}");
    assert!(!line.contains("staple"), "{line}");
    assert!(!config.path().join("session.json").exists());
}

#[test]
fn logout_without_a_session_succeeds() {
    let (out, _dir) = watchgrid(&["logout"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "Not logged in.\n");
}
