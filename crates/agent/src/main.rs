//! `watchgrid-agent`: the Watchgrid daemon on a managed device. This file holds the clap
//! definitions, dispatch to `commands`, and the exit statuses (see `error`).

#![forbid(unsafe_code)]

mod api;
mod args;
mod backoff;
mod commands;
mod config;
mod dns;
mod error;
mod host;
mod net;
mod pin;
mod ssh;
mod state;
mod telemetry;
mod tunnel;

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use watchgrid_clientkit::text::one_line;

use crate::args::ServerUrl;
use crate::config::{Config, GlobalArgs};
use crate::error::{AgentError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "watchgrid-agent",
    version,
    about = "The Watchgrid agent: enroll this device with a Watchgrid server, keep its WireGuard \
             tunnel up and send heartbeats",
    after_help = "Exit status: 0 success (or run stopped by SIGTERM/SIGINT), 1 failure, 2 bad \
                  arguments, 3 the server's WireGuard key is not the pinned one (run refuses \
                  to connect; re-enroll with --force). See docs/agent.md.",
    arg_required_else_help = true
)]
struct Cli {
    #[command(flatten)]
    global: GlobalArgs,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Register this device with a server using an onboarding token, and store the enrollment
    Enroll(EnrollArgs),
    /// Bring up the WireGuard tunnel to the server and send heartbeats until stopped
    Run,
    /// Show the enrollment, the tunnel and the latest heartbeats
    Status(StatusArgs),
    /// Stop the tunnel and undo split DNS (stops a running `run`; keeps the enrollment)
    Down,
}

#[derive(Debug, Args)]
struct EnrollArgs {
    /// The server's public base URL, e.g. https://watchgrid.example.com
    #[arg(long, value_name = "URL", value_parser = args::server_url)]
    server: ServerUrl,

    /// The onboarding token (wgo_...); prefer the environment variable, as command lines are
    /// visible to other local users
    #[arg(
        long,
        value_name = "TOKEN",
        env = "WATCHGRID_AGENT_TOKEN",
        hide_env_values = true
    )]
    token: String,

    /// Replace an existing enrollment (a new key pair and device; the old device stays on the
    /// server until an admin deletes it)
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct StatusArgs {
    /// Print JSON instead of text
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(clap_error(&err)),
    };
    let config = Config::from(cli.global);
    telemetry::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("watchgrid-agent: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Enroll(args) => {
                commands::enroll::enroll(
                    &config,
                    commands::enroll::EnrollOptions {
                        server: args.server,
                        token: args.token,
                        force: args.force,
                    },
                )
                .await
            }
            Command::Run => commands::run::run(&config).await,
            Command::Status(args) => commands::status::status(&config, args.json).await,
            Command::Down => commands::down::down(&config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(err) => ExitCode::from(report(&err)),
    }
}

/// Print a parse error (help and version as clap prints them, usage errors as one line) and
/// return the exit status.
fn clap_error(err: &clap::Error) -> u8 {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE)
        }
        _ => {
            eprintln!("watchgrid-agent: {}", one_line(&args::usage_line(err)));
            EXIT_USAGE
        }
    }
}

/// Print a command's error as one line on stderr and return the exit status.
fn report(err: &AgentError) -> u8 {
    eprintln!("watchgrid-agent: {}", err.one_line());
    err.exit_code()
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use clap::CommandFactory;

    use super::*;

    /// The one-line message and exit status of a command line that does not parse.
    fn rejected(argv: &[&str]) -> (String, i32) {
        let mut full = vec!["watchgrid-agent"];
        full.extend(argv);
        let err = Cli::try_parse_from(full).unwrap_err();
        (args::usage_line(&err), err.exit_code())
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn usage_errors_name_the_argument() {
        for (argv, expected) in [
            (
                &["--interface", "much-too-long-name", "run"][..],
                "invalid value \"much-too-long-name\" for '--interface': expected an interface \
                 name of 1 to 15 letters, digits or _=+.- characters",
            ),
            (
                &["enroll", "--server", "wg.example.com", "--token", "t"],
                "invalid value \"wg.example.com\" for '--server': expected an http:// or \
                 https:// URL such as https://watchgrid.example.com",
            ),
            (
                &["--log-format", "xml", "run"],
                "invalid value \"xml\" for '--log-format': expected text, json",
            ),
            (
                &["enroll", "--token", "t"],
                "missing required argument '--server'",
            ),
        ] {
            assert_eq!(rejected(argv), (expected.to_string(), 2), "{argv:?}");
        }
        let (line, code) = rejected(&["frobnicate"]);
        assert_eq!(code, 2);
        assert!(line.contains("frobnicate"), "{line}");
    }

    #[test]
    fn globals_work_after_the_command_and_have_defaults() {
        let cli = Cli::try_parse_from([
            "watchgrid-agent",
            "status",
            "--json",
            "--state-dir",
            "/tmp/x",
            "--interface",
            "wgtest1",
        ])
        .unwrap();
        let config = Config::from(cli.global);
        assert_eq!(config.state_dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(config.interface, "wgtest1");

        let cli = Cli::try_parse_from(["watchgrid-agent", "run"]).unwrap();
        let config = Config::from(cli.global);
        assert_eq!(
            config.state_dir,
            std::path::PathBuf::from(config::DEFAULT_STATE_DIR)
        );
        assert_eq!(config.interface, config::DEFAULT_INTERFACE);
        assert_eq!(config.log_level, "info");
    }
}
