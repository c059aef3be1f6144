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

/// The device's SSH host public key unless `--ssh-host-key` says otherwise.
pub const DEFAULT_SSH_HOST_KEY: &str = "/etc/ssh/ssh_host_ed25519_key.pub";
/// The sshd drop-in the agent owns unless `--sshd-dropin` says otherwise.
pub const DEFAULT_SSHD_DROPIN: &str = "/etc/ssh/sshd_config.d/watchgrid.conf";
/// sshd's pid file (it is sent SIGHUP to reload) unless `--sshd-pid-file` says otherwise.
pub const DEFAULT_SSHD_PID_FILE: &str = "/run/sshd.pid";

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

    /// Do not manage sshd: no host certificate, trusted user CA or KRL
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_NO_SSH",
        value_parser = watchgrid_clientkit::boolean::parse_bool
    )]
    pub no_ssh: bool,

    /// The SSH host public key to certify (sent at enrollment, renewed by run)
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_SSH_HOST_KEY",
        value_name = "FILE",
        default_value = DEFAULT_SSH_HOST_KEY
    )]
    pub ssh_host_key: PathBuf,

    /// The sshd_config drop-in the agent owns (HostCertificate, TrustedUserCAKeys,
    /// RevokedKeys); sshd must include it
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_SSHD_DROPIN",
        value_name = "FILE",
        default_value = DEFAULT_SSHD_DROPIN
    )]
    pub sshd_dropin: PathBuf,

    /// sshd's pid file: the agent sends that process SIGHUP when its configuration changed
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_SSHD_PID_FILE",
        value_name = "FILE",
        default_value = DEFAULT_SSHD_PID_FILE
    )]
    pub sshd_pid_file: PathBuf,

    /// How often run refreshes the user CA and the KRL and checks the host certificate
    /// (seconds, 1-3600)
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_AGENT_SSH_POLL_SECS",
        value_name = "SECONDS",
        default_value_t = 60,
        value_parser = clap::value_parser!(u64).range(1..=3600)
    )]
    pub ssh_poll_secs: u64,
}

/// Where and how the agent manages sshd; `None` in [`Config::ssh`] with `--no-ssh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshConfig {
    pub host_key: PathBuf,
    pub dropin: PathBuf,
    pub pid_file: PathBuf,
    pub poll: std::time::Duration,
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
    pub ssh: Option<SshConfig>,
}

impl From<GlobalArgs> for Config {
    fn from(args: GlobalArgs) -> Config {
        Config {
            state_dir: args.state_dir,
            interface: args.interface,
            log_format: args.log_format,
            log_level: args.log_level,
            search_path: std::env::var("PATH").ok(),
            ssh: (!args.no_ssh).then(|| SshConfig {
                host_key: args.ssh_host_key,
                dropin: args.sshd_dropin,
                pid_file: args.sshd_pid_file,
                poll: std::time::Duration::from_secs(args.ssh_poll_secs),
            }),
        }
    }
}
