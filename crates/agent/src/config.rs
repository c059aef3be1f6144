//! The agent's one typed configuration, built once from the command line and passed down. The
//! global options may come from the environment (`WATCHGRID_AGENT_*`, read by clap's `env`
//! attributes here; `enroll --token` also reads `WATCHGRID_AGENT_TOKEN`, in `main.rs`). Nothing
//! in the agent reads the environment itself, except `PATH` here (where split DNS looks for
//! `resolvectl`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::args;

/// Where the enrollment and the heartbeat status live unless `--state-dir` says otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/watchgrid-agent";
/// The agent's WireGuard interface unless `--interface` says otherwise.
pub const DEFAULT_INTERFACE: &str = "watchgrid0";

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The options every subcommand takes.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// The directory of state.json (the enrollment) and status.json (heartbeats); created 0700
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_STATE_DIR",
        value_name = "DIR",
        default_value = DEFAULT_STATE_DIR
    )]
    pub state_dir: PathBuf,

    /// The agent's WireGuard interface (at most 15 characters). Its UAPI socket,
    /// /var/run/wireguard/NAME.sock, is shared by every network namespace: several agents on
    /// one host need different names
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_INTERFACE",
        value_name = "NAME",
        default_value = DEFAULT_INTERFACE,
        value_parser = args::interface_name
    )]
    pub interface: String,

    /// Log line format on stderr
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_LOG_FORMAT",
        value_enum,
        default_value = "text"
    )]
    pub log_format: LogFormat,

    /// Log filter: a level (error, warn, info, debug, trace) or tracing directives such as
    /// watchgrid_agent=debug,info
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_LOG_LEVEL",
        value_name = "FILTER",
        default_value = "info",
        value_parser = args::log_filter
    )]
    pub log_level: String,
}

/// Everything the commands need to know about where and how they run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub state_dir: PathBuf,
    pub interface: String,
    pub log_format: LogFormat,
    pub log_level: String,
    /// `PATH`: where `resolvectl` is looked for (split DNS).
    pub search_path: Option<String>,
}

impl From<GlobalArgs> for Config {
    fn from(args: GlobalArgs) -> Config {
        Config {
            state_dir: args.state_dir,
            interface: args.interface,
            log_format: args.log_format,
            log_level: args.log_level,
            search_path: std::env::var("PATH").ok(),
        }
    }
}
