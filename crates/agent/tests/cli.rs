//! The built `watchgrid-agent` binary as a user runs it: help, version, exit statuses, and
//! one-line errors for bad arguments, a missing enrollment and an unreachable server. (The
//! end-to-end test with a real server and agents in network namespaces lives with the server.)

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::process::{Command, Output, Stdio};

use watchgrid_clientkit::testing::{self, stderr, stdout};

/// A port nothing listens on: connections to it are refused at once.
const CLOSED: &str = "http://127.0.0.1:9";

/// Run `watchgrid-agent args` with an empty state directory and none of the user's agent
/// variables.
fn agent(args: &[&str]) -> (Output, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
        .args(args)
        .env("WATCHGRID_AGENT_STATE_DIR", state.path())
        .env_remove("WATCHGRID_AGENT_INTERFACE")
        .env_remove("WATCHGRID_AGENT_TOKEN")
        .env_remove("WATCHGRID_AGENT_LOG_FORMAT")
        .env_remove("WATCHGRID_AGENT_LOG_LEVEL")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (output, state)
}

/// stderr must be exactly one line starting `watchgrid-agent: `; returns it.
fn one_error_line(output: &Output) -> String {
    testing::one_error_line(output, "watchgrid-agent")
}

#[test]
fn help_lists_the_commands_and_options() {
    let (out, _dir) = agent(&["--help"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    for word in [
        "enroll",
        "run",
        "status",
        "down",
        "--state-dir",
        "--interface",
        "--log-format",
        "--log-level",
        "WATCHGRID_AGENT_STATE_DIR",
        "WATCHGRID_AGENT_INTERFACE",
        "Exit status",
    ] {
        assert!(text.contains(word), "{word} missing from {text}");
    }
    for command in ["enroll", "run", "status", "down"] {
        let (out, _dir) = agent(&[command, "--help"]);
        assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr(&out));
        assert!(stdout(&out).contains("--state-dir"), "{command}");
    }
    let (out, _dir) = agent(&["enroll", "--help"]);
    let text = stdout(&out);
    assert!(text.contains("--server") && text.contains("--token") && text.contains("--force"));
}

#[test]
fn no_command_exits_2() {
    // With nothing at all, clap prints the help; here the state directory comes from the
    // environment, so it says in one line that a command is missing.
    let (out, _dir) = agent(&[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        one_error_line(&out).contains("subcommand"),
        "{}",
        stderr(&out)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
        .env_remove("WATCHGRID_AGENT_STATE_DIR")
        .env_remove("WATCHGRID_AGENT_INTERFACE")
        .env_remove("WATCHGRID_AGENT_LOG_FORMAT")
        .env_remove("WATCHGRID_AGENT_LOG_LEVEL")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("Usage"), "{}", stderr(&out));
}

#[test]
fn help_never_shows_the_token_from_the_environment() {
    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
        .args(["enroll", "--help"])
        .env("WATCHGRID_AGENT_TOKEN", "wgo_supersecret")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(!stdout(&out).contains("supersecret"), "{}", stdout(&out));
}

#[test]
fn version_prints_the_agent_version() {
    let (out, _dir) = agent(&["--version"]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(
        stdout(&out).trim(),
        format!("watchgrid-agent {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bad_arguments_exit_2_with_one_line_naming_the_argument() {
    for (args, named) in [
        (
            &["--interface", "much-too-long-name", "status"][..],
            "'--interface'",
        ),
        (
            &["enroll", "--server", "wg.example.com", "--token", "t"],
            "'--server'",
        ),
        (&["enroll", "--token", "t"], "'--server'"),
        (&["--log-format", "xml", "run"], "'--log-format'"),
        (&["--log-level", "loud=[", "run"], "'--log-level'"),
        (&["run", "--bogus"], "--bogus"),
        (&["frobnicate"], "frobnicate"),
    ] {
        let (out, _dir) = agent(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        let line = one_error_line(&out);
        assert!(line.contains(named), "{args:?}: {line}");
    }
}

#[test]
fn run_without_an_enrollment_says_to_enroll() {
    let (out, state) = agent(&["run"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = one_error_line(&out);
    assert_eq!(
        line,
        format!(
            "watchgrid-agent: this device is not enrolled ({}/state.json does not exist): run \
             watchgrid-agent enroll --server URL --token TOKEN first",
            state.path().display()
        )
    );
}

#[test]
fn status_without_an_enrollment_exits_1() {
    let (out, _state) = agent(&["status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("not enrolled"));

    let (out, _state) = agent(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    assert_eq!(report["enrolled"], false);
}

#[test]
fn enroll_against_an_unreachable_server_names_the_url() {
    let (out, state) = agent(&["enroll", "--server", CLOSED, "--token", "wgo_x"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(
        one_error_line(&out),
        "watchgrid-agent: cannot reach http://127.0.0.1:9/api/agent/register: connection refused"
    );
    assert!(!state.path().join("state.json").exists());
    assert_eq!(stdout(&out), "");
}

#[test]
fn the_token_may_come_from_the_environment() {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
        .args(["enroll", "--server", CLOSED])
        .env("WATCHGRID_AGENT_STATE_DIR", state.path())
        .env("WATCHGRID_AGENT_TOKEN", "wgo_x")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(one_error_line(&out).contains("cannot reach"));
}

#[test]
fn down_without_a_running_agent_cleans_up_and_marks_the_status_stopped() {
    let state = tempfile::tempdir().unwrap();
    // A status.json left by a run that died: "running", with a pid that is not an agent.
    std::fs::write(
        state.path().join("status.json"),
        r#"{"phase":"running","pid":1,"started_at":"2025-01-31T09:00:00Z","updated_at":"2025-01-31T09:00:00Z","consecutive_failures":0,"heartbeat_interval_secs":30,"next_attempt_at":"2025-01-31T09:00:30Z"}"#,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
        .args(["--interface", "wgdowntest0", "down"])
        .env("WATCHGRID_AGENT_STATE_DIR", state.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out).trim(),
        "no watchgrid-agent run was running; split DNS removed"
    );
    let status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.path().join("status.json")).unwrap())
            .unwrap();
    assert_eq!(status["phase"], "stopped");
    assert!(status.get("next_attempt_at").is_none());
}

/// `WATCHGRID_AGENT_NO_SSH` takes the usual boolean spellings (issue 11, item 23: `1` was a
/// usage error); anything else is one line naming the option.
#[test]
fn no_ssh_from_the_environment_accepts_the_usual_booleans() {
    for value in ["1", "yes", "ON", "true", "0", "off", "False"] {
        let state = tempfile::tempdir().unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
            .env_clear()
            .env("WATCHGRID_AGENT_STATE_DIR", state.path())
            .env("WATCHGRID_AGENT_NO_SSH", value)
            .arg("status")
            .output()
            .unwrap();
        assert_eq!(
            out.status.code(),
            Some(1),
            "{value}: {}",
            one_error_line(&out)
        );
        assert!(one_error_line(&out).contains("not enrolled"), "{value}");
    }
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_watchgrid-agent"))
        .env_clear()
        .env("WATCHGRID_AGENT_STATE_DIR", state.path())
        .env("WATCHGRID_AGENT_NO_SSH", "maybe")
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        one_error_line(&out).contains("--no-ssh"),
        "{}",
        one_error_line(&out)
    );
}
