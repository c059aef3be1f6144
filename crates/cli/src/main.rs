//! `watchgrid`: the operator command line of a Watchgrid server. This file holds the clap
//! definitions, dispatch to `commands`, and the exit statuses (0 ok, 1 failure, 2 usage).

#![forbid(unsafe_code)]

mod args;
mod client;
mod commands;
mod config;
mod error;
mod output;
mod prompt;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::{Args, Parser, Subcommand};
use watchgrid_clientkit::text::one_line;
use watchgrid_wire::{DeviceStatus, DnsRecordType, Role};

use crate::args::{ServerUrl, TagList};
use crate::error::{CliError, EXIT_FAILURE, EXIT_OK, EXIT_USAGE};

#[derive(Debug, Parser)]
#[command(
    name = "watchgrid",
    version,
    about = "Operate a Watchgrid server: log in, manage tenants, users, API tokens, devices and \
             onboarding tokens, read the audit log",
    after_help = "Exit status: 0 success, 1 failure (server error, refused credentials, \
                  unreachable server), 2 bad arguments. See docs/cli.md.",
    arg_required_else_help = true
)]
pub struct Cli {
    /// The server's base URL [default: the server of the stored session]
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_SERVER",
        value_name = "URL",
        value_parser = args::server_url
    )]
    pub server: Option<ServerUrl>,

    /// Act in this tenant (sends X-Watchgrid-Tenant); with `login`, the tenant to log in to
    #[arg(long, global = true, value_name = "SLUG", value_parser = args::tenant_slug)]
    pub tenant: Option<String>,

    /// Print the API's JSON instead of tables
    #[arg(long, global = true)]
    pub json: bool,

    /// Use this API token (wgt_...) instead of the stored session; prefer the environment
    /// variable, as command lines are visible to other local users
    #[arg(
        long,
        global = true,
        env = "WATCHGRID_TOKEN",
        value_name = "TOKEN",
        hide_env_values = true
    )]
    pub token: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Log in and store the session
    Login(LoginArgs),
    /// Log out: revoke the session on the server and delete it here
    Logout,
    /// Show who you are, how, and in which tenant
    Whoami,
    /// Change your own password (every session is then signed out)
    Password(PasswordArgs),
    /// Manage tenants (superadmins)
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Tenants(TenantsCommand),
    /// Manage the users of the current tenant
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Users(UsersCommand),
    /// Manage the API tokens and (tokens onboarding) the onboarding tokens of the tenant
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Tokens(TokensCommand),
    /// Manage the devices of the current tenant
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Devices(DevicesCommand),
    /// Magic DNS: the tenant's custom records (device names need no setup)
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Dns(DnsCommand),
    /// Read the audit log, newest first
    Audit(AuditArgs),
    /// Log in to a device with SSH through the server: a short-lived certificate, an
    /// ephemeral key, strict host-key checking against the tenant's host CA
    Ssh(SshArgs),
    /// Relay standard input and output to a device's SSH port (ssh's ProxyCommand)
    SshProxy(SshProxyArgs),
    /// Get a certificate for your own SSH key, written next to it as <key>-cert.pub
    SshCert(SshCertArgs),
    /// Print an OpenSSH config block for the tenant's devices (and write its known_hosts and
    /// revoked host keys files)
    SshConfig(SshConfigArgs),
    /// Which Unix accounts a user, or every member with a role, may log in as with `ssh`
    /// (tenant admins; a new tenant grants none)
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    SshGrants(SshGrantsCommand),
    /// Show the versions of this client and of the server
    Version,
}

#[derive(Debug, Args)]
pub struct SshArgs {
    /// `[user@]device`: the Unix account (default: the certificate's first principal) and
    /// the device's name or Magic DNS name
    #[arg(value_name = "[USER@]DEVICE")]
    pub destination: String,
    /// Use this private key (its .pub next to it) instead of an ephemeral one
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
    /// Certificate validity in seconds [default: the tenant's]
    #[arg(long, value_name = "SECONDS")]
    pub validity: Option<u64>,
    /// An extra ssh option (`-o`), repeatable
    #[arg(short = 'o', long = "ssh-option", value_name = "OPTION")]
    pub ssh_option: Vec<String>,
    /// The ssh program to run
    #[arg(long, value_name = "PROGRAM", default_value = "ssh")]
    pub ssh_program: PathBuf,
    /// The command to run on the device (after `--`)
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct SshProxyArgs {
    /// The device's name or Magic DNS name (ssh's %h)
    #[arg(value_name = "DEVICE")]
    pub target: String,
}

#[derive(Debug, Args)]
pub struct SshCertArgs {
    /// The private key whose .pub to certify
    #[arg(short = 'i', long, value_name = "FILE")]
    pub identity: PathBuf,
    /// A principal to ask for, repeatable [default: all you are allowed]
    #[arg(long, value_name = "USER")]
    pub principal: Vec<String>,
    /// Certificate validity in seconds [default: the tenant's]
    #[arg(long, value_name = "SECONDS")]
    pub validity: Option<u64>,
}

#[derive(Debug, Args)]
pub struct SshConfigArgs {
    /// The private key ssh uses (get its certificate with `watchgrid ssh-cert`)
    #[arg(
        short = 'i',
        long,
        value_name = "FILE",
        default_value = "~/.ssh/id_ed25519"
    )]
    pub identity: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum SshGrantsCommand {
    /// List the tenant's grants
    List,
    /// Let a user (or a role) log in as these accounts, besides those already granted
    Add {
        #[command(flatten)]
        subject: GrantSubjectArgs,
        /// A Unix account name, repeatable
        #[arg(value_name = "ACCOUNT", required = true, value_parser = args::principal)]
        accounts: Vec<String>,
    },
    /// Stop letting a user (or a role) log in as these accounts
    Remove {
        #[command(flatten)]
        subject: GrantSubjectArgs,
        /// A Unix account name, repeatable
        #[arg(value_name = "ACCOUNT", required = true, value_parser = args::principal)]
        accounts: Vec<String>,
    },
}

/// Whose grant: one user's or one role's.
#[derive(Debug, Args)]
#[group(id = "subject", required = true, multiple = false)]
pub struct GrantSubjectArgs {
    /// The user (username or id)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Every member with this role: owner, admin, operator or viewer
    #[arg(long, value_name = "ROLE", value_parser = args::role)]
    pub role: Option<Role>,
}

#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The username [default: asked on the terminal]
    #[arg(long, value_name = "USERNAME")]
    pub username: Option<String>,
    /// Read the password from the first line of standard input
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Args)]
pub struct PasswordArgs {
    /// Read the current and the new password from the first two lines of standard input
    #[arg(long)]
    pub password_stdin: bool,
}

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// List every tenant
    List,
    /// Create a tenant
    Create {
        /// Lower-case letters, digits and '-'; cannot be changed later
        #[arg(value_parser = args::tenant_slug)]
        slug: String,
        /// The display name
        #[arg(long)]
        name: String,
    },
    /// Show one tenant
    Show {
        #[arg(value_parser = args::tenant_slug)]
        slug: String,
    },
    /// Change a tenant's display name
    Rename {
        #[arg(value_parser = args::tenant_slug)]
        slug: String,
        /// The new display name
        #[arg(long)]
        name: String,
    },
    /// Delete a tenant
    Delete {
        #[arg(value_parser = args::tenant_slug)]
        slug: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum UsersCommand {
    /// List the users of the tenant
    List,
    /// Add a user to the tenant: a new account, or with --existing an existing one
    Add {
        username: String,
        /// owner, admin, operator or viewer
        #[arg(long, value_parser = args::role)]
        role: Role,
        /// Read the new user's password from the first line of standard input
        #[arg(long, conflicts_with = "existing")]
        password_stdin: bool,
        /// Add an account that already exists (in another tenant); no password
        #[arg(long)]
        existing: bool,
    },
    /// Show one user
    Show { id: String },
    /// Change a user's role in the tenant
    SetRole {
        id: String,
        /// owner, admin, operator or viewer
        #[arg(value_parser = args::role)]
        role: Role,
    },
    /// Disable a user: they can no longer log in
    Disable { id: String },
    /// Enable a disabled user
    Enable { id: String },
    /// Set a new password for a user, who must change it at the next login
    ResetPassword {
        id: String,
        /// Read the new password from the first line of standard input
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user from the tenant
    Remove { id: String },
}

#[derive(Debug, Subcommand)]
pub enum TokensCommand {
    /// List the tenant's API tokens
    List,
    /// Create an API token; its secret is shown only once
    Create {
        name: String,
        /// owner, admin, operator or viewer
        #[arg(long, value_parser = args::role)]
        role: Role,
        /// Expire after this many days (1-3650) [default: never]
        #[arg(long, value_name = "N", value_parser = args::days)]
        expires_in_days: Option<u32>,
    },
    /// Revoke an API token
    Revoke { id: String },
    /// Manage onboarding tokens: the secrets devices enroll with (watchgrid-agent enroll)
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Onboarding(OnboardingCommand),
}

#[derive(Debug, Subcommand)]
pub enum OnboardingCommand {
    /// List the tenant's onboarding tokens
    List,
    /// Create an onboarding token; its secret is shown only once
    Create {
        /// What the token is for (at most 200 characters)
        #[arg(long, value_name = "TEXT", value_parser = args::description)]
        description: Option<String>,
        /// How many devices may enroll with it (1-100000) [default: the server's, 1]
        #[arg(long, value_name = "N", value_parser = args::max_uses)]
        max_uses: Option<u32>,
        /// Expire after this many hours (1-8760) [default: the server's, 24]
        #[arg(long, value_name = "H", value_parser = args::hours)]
        expires_in_hours: Option<u32>,
        /// Give every device it enrolls this tag (repeatable, or comma-separated)
        #[arg(
            long = "tag",
            value_name = "TAG",
            value_parser = args::tag,
            value_delimiter = ','
        )]
        tags: Vec<String>,
    },
    /// Revoke an onboarding token: no device can enroll with it any more
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DnsCommand {
    /// Custom records under <name>.<tenant>.<domain>: A, AAAA, CNAME, TXT and SRV
    #[command(subcommand, subcommand_required = true, arg_required_else_help = true)]
    Records(DnsRecordsCommand),
}

#[derive(Debug, Subcommand)]
pub enum DnsRecordsCommand {
    /// List the tenant's custom records, by name
    List {
        /// Only records at exactly this name
        #[arg(long, value_name = "NAME", value_parser = args::record_name)]
        name: Option<String>,
        /// Only records of this type (A, AAAA, CNAME, TXT, SRV)
        #[arg(long = "type", value_name = "TYPE", value_parser = args::record_type)]
        record_type: Option<DnsRecordType>,
    },
    /// Add a record; Magic DNS answers it at once
    Add {
        /// Relative to the tenant's zone: www, _http._tcp.api
        #[arg(value_parser = args::record_name)]
        name: String,
        /// A, AAAA, CNAME, TXT or SRV
        #[arg(value_name = "TYPE", value_parser = args::record_type)]
        record_type: DnsRecordType,
        /// An address, a target (web, or web.<tenant>.<domain>.), the TXT text, or for SRV
        /// "priority weight port target"
        value: String,
        /// Seconds (1-86400) [default: the server's, 300]
        #[arg(long, value_name = "SECONDS", value_parser = args::ttl)]
        ttl: Option<u32>,
    },
    /// Delete a record by id (see dns records list); Magic DNS stops answering it at once
    #[command(alias = "delete")]
    Rm { id: String },
}

#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// List the tenant's devices, by name
    List(DevicesListArgs),
    /// Show one device
    Show {
        /// The device's id or name
        #[arg(value_parser = args::device_ref)]
        device: String,
    },
    /// Rename a device (its Magic DNS name follows)
    Rename {
        /// The device's id or name
        #[arg(value_parser = args::device_ref)]
        device: String,
        /// 1-63 lower-case letters, digits and '-', not starting or ending with '-'
        #[arg(value_parser = args::device_name)]
        new_name: String,
    },
    /// Change a device's tags
    Tag {
        /// The device's id or name
        #[arg(value_parser = args::device_ref)]
        device: String,
        #[command(flatten)]
        change: TagChange,
    },
    /// Delete a device: its WireGuard peer is removed and its credential stops working
    Delete {
        /// The device's id or name
        #[arg(value_parser = args::device_ref)]
        device: String,
    },
    /// Add a device without the agent (a phone, a router) and get its wg-quick file
    AddPlain {
        /// 1-63 lower-case letters, digits and '-', not starting or ending with '-'
        #[arg(value_parser = args::device_name)]
        name: String,
        /// Give the device this tag (repeatable, or comma-separated)
        #[arg(
            long = "tag",
            value_name = "TAG",
            value_parser = args::tag,
            value_delimiter = ','
        )]
        tags: Vec<String>,
        /// The device's WireGuard public key [default: the server generates a key pair and
        /// the file holds its private key]
        #[arg(long, value_name = "KEY", value_parser = args::public_key)]
        public_key: Option<String>,
        /// Write the wg-quick file here (mode 0600) instead of standard output
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Print or save a device's wg-quick file (without the private key)
    Config {
        /// The device's id or name
        #[arg(value_parser = args::device_ref)]
        device: String,
        /// Write the wg-quick file here (mode 0600) instead of standard output
        #[arg(long, short = 'o', value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args)]
pub struct DevicesListArgs {
    /// Only devices with this status: online, offline, pending or unknown
    #[arg(long, value_name = "STATUS", value_parser = args::device_status)]
    pub status: Option<DeviceStatus>,
    /// Only devices with this tag
    #[arg(long, value_name = "TAG", value_parser = args::tag)]
    pub tag: Option<String>,
    /// Only devices whose name contains this
    #[arg(long, value_name = "TEXT", value_parser = args::name_filter)]
    pub name: Option<String>,
    /// Show only the first N devices (1-500) [default: every device]
    #[arg(long, value_name = "N", value_parser = args::limit)]
    pub limit: Option<u32>,
}

/// How `devices tag` changes the tags: replace them all, or add and remove some.
#[derive(Debug, Args)]
#[group(id = "change", required = true, multiple = true)]
pub struct TagChange {
    /// Replace every tag with these (comma-separated; '' for none)
    #[arg(
        long,
        value_name = "TAGS",
        value_parser = args::tag_list,
        conflicts_with_all = ["add", "remove"]
    )]
    pub set: Option<TagList>,
    /// Add this tag (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_parser = args::tag, value_delimiter = ',')]
    pub add: Vec<String>,
    /// Remove this tag (repeatable, or comma-separated)
    #[arg(long, value_name = "TAG", value_parser = args::tag, value_delimiter = ',')]
    pub remove: Vec<String>,
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Entries per page [default: the server's]
    #[arg(long, value_name = "N", value_parser = args::limit)]
    pub limit: Option<u32>,
    /// Continue from this cursor (printed when more entries exist)
    #[arg(long, value_name = "CURSOR")]
    pub cursor: Option<String>,
    /// Only entries by this actor (a username, or token:NAME)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
    /// Only this action, e.g. user.create, or actions starting with a prefix ending in '.',
    /// e.g. auth.
    #[arg(long, value_name = "ACTION")]
    pub action: Option<String>,
    /// Only this resource type: user, api_token, tenant or session
    #[arg(long, value_name = "TYPE")]
    pub resource_type: Option<String>,
    /// Only successful (true) or failed (false) actions
    #[arg(long, value_name = "BOOL", value_parser = watchgrid_clientkit::boolean::parse_bool)]
    pub success: Option<bool>,
    /// Only entries at or after this time: RFC 3339, or an age such as 30m, 12h, 7d
    #[arg(long, value_name = "TIME", value_parser = args::timestamp)]
    pub since: Option<String>,
    /// Only entries before this time: RFC 3339, or an age such as 30m, 12h, 7d
    #[arg(long, value_name = "TIME", value_parser = args::timestamp)]
    pub until: Option<String>,
    /// Every tenant's entries, not only the current tenant's (superadmins)
    #[arg(long)]
    pub all: bool,
    /// Fetch every page instead of the first
    #[arg(long)]
    pub follow_pages: bool,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(clap_error(&err)),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("watchgrid: cannot start the async runtime: {err}");
            return ExitCode::from(EXIT_FAILURE);
        }
    };
    match runtime.block_on(commands::run(cli)) {
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
            eprintln!("watchgrid: {}", one_line(&args::usage_line(err)));
            EXIT_USAGE
        }
    }
}

/// Print a command's error as one line on stderr and return the exit status.
fn report(err: &CliError) -> u8 {
    if err.is_broken_pipe() {
        // The reader of our output went away (`watchgrid audit | head`): nothing to say.
        return EXIT_OK;
    }
    if let CliError::ChildExit(code) = err {
        // ssh's own message is already on stderr.
        return *code;
    }
    eprintln!("watchgrid: {}", err.one_line());
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
        let mut full = vec!["watchgrid"];
        full.extend(argv);
        let err = Cli::try_parse_from(full).unwrap_err();
        (args::usage_line(&err), err.exit_code())
    }

    #[test]
    fn the_definitions_are_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn an_invalid_role_names_the_argument() {
        assert_eq!(
            rejected(&["users", "add", "bob", "--role", "boss"]),
            (
                "invalid value \"boss\" for '--role': expected owner, admin, operator or viewer"
                    .to_string(),
                2
            )
        );
        assert_eq!(
            rejected(&["tokens", "create", "ci", "--role", "root"]).0,
            "invalid value \"root\" for '--role': expected owner, admin, operator or viewer"
        );
        assert_eq!(
            rejected(&["users", "set-role", "u1", "boss"]).0,
            "invalid value \"boss\" for 'ROLE': expected owner, admin, operator or viewer"
        );
    }

    #[test]
    fn a_malformed_timestamp_names_the_argument() {
        let (line, code) = rejected(&["audit", "--since", "yesterday"]);
        assert_eq!(code, 2);
        assert_eq!(
            line,
            "invalid value \"yesterday\" for '--since': expected an RFC 3339 time such as \
             2025-01-31T09:00:00Z, or an age such as 30m, 12h or 7d"
        );
        assert!(rejected(&["audit", "--until", "2025-13-01T00:00:00Z"])
            .0
            .starts_with("invalid value \"2025-13-01T00:00:00Z\" for '--until': "));
    }

    #[test]
    fn other_usage_errors_are_one_line() {
        assert_eq!(
            rejected(&["audit", "--success", "maybe"]),
            (
                "invalid value \"maybe\" for '--success': expected true or false (or 1/0, yes/no, on/off)".to_string(),
                2
            )
        );
        assert_eq!(
            rejected(&[
                "tokens",
                "create",
                "ci",
                "--role",
                "viewer",
                "--expires-in-days",
                "0"
            ])
            .0,
            "invalid value \"0\" for '--expires-in-days': expected a number of days from 1 to 3650"
        );
        assert_eq!(
            rejected(&["--server", "wg.example.com", "whoami"]).0,
            "invalid value \"wg.example.com\" for '--server': expected an http:// or https:// \
             URL such as https://watchgrid.example.com"
        );
        assert_eq!(
            rejected(&["users", "add", "bob"]).0,
            "missing required argument '--role'"
        );
        let (line, code) = rejected(&[
            "users",
            "add",
            "bob",
            "--role",
            "admin",
            "--existing",
            "--password-stdin",
        ]);
        assert_eq!(code, 2);
        assert!(
            line.contains("--password-stdin") && line.contains("--existing"),
            "{line}"
        );
        let (line, code) = rejected(&["frobnicate"]);
        assert_eq!(code, 2);
        assert!(line.contains("frobnicate"), "{line}");
        for argv in [
            &["audit", "--bogus"][..],
            &["tenants", "create", "Bad Slug", "--name", "x"],
        ] {
            let (line, code) = rejected(argv);
            assert_eq!(code, 2);
            assert!(!line.contains('\n'), "{line}");
        }
    }

    #[test]
    fn device_arguments_are_checked_locally() {
        assert_eq!(
            rejected(&["devices", "rename", "laptop", "Bad_Name"]),
            (
                "invalid value \"Bad_Name\" for 'NEW_NAME': expected a device name: 1-63 \
                 lower-case letters, digits and '-', not starting or ending with '-'"
                    .to_string(),
                2
            )
        );
        assert_eq!(
            rejected(&["devices", "add-plain", "-phone"]).1,
            2,
            "a leading '-' is not a name"
        );
        assert_eq!(
            rejected(&["devices", "add-plain", "phone", "--tag", "ok,Not-OK"]).0,
            "invalid value \"Not-OK\" for '--tag': expected a tag: 1-63 lower-case letters, \
             digits, '-', '_', '.' or ':'"
        );
        assert_eq!(
            rejected(&["devices", "add-plain", "phone", "--public-key", "abc"]).0,
            "invalid value \"abc\" for '--public-key': expected a WireGuard public key: 32 \
             bytes in base64, as printed by wg pubkey"
        );
        assert_eq!(
            rejected(&["devices", "list", "--status", "up"]).0,
            "invalid value \"up\" for '--status': expected online, offline, pending or unknown"
        );
        assert_eq!(
            rejected(&["devices", "list", "--limit", "0"]).0,
            "invalid value \"0\" for '--limit': expected a whole number from 1 to 500"
        );
        assert!(rejected(&["devices", "show", "My Laptop"])
            .0
            .starts_with("invalid value \"My Laptop\" for 'DEVICE': "));
        assert!(rejected(&["devices", "tag", "laptop", "--set", "a,B"])
            .0
            .starts_with("invalid value \"a,B\" for '--set': \"B\" is not a tag"));
    }

    #[test]
    fn tag_changes_need_one_kind_of_change() {
        let (line, code) = rejected(&["devices", "tag", "laptop"]);
        assert_eq!(code, 2);
        assert_eq!(
            line,
            "missing required argument: one of '--set', '--add' or '--remove'"
        );
        let (line, code) = rejected(&["devices", "tag", "laptop", "--set", "a", "--add", "b"]);
        assert_eq!(code, 2);
        assert!(line.contains("--set") && line.contains("--add"), "{line}");
        let cli = Cli::try_parse_from([
            "watchgrid",
            "devices",
            "tag",
            "laptop",
            "--add",
            "a,b",
            "--add",
            "c",
            "--remove",
            "d",
        ])
        .unwrap();
        let Command::Devices(DevicesCommand::Tag { device, change }) = cli.command else {
            panic!("not devices tag: {cli:?}");
        };
        assert_eq!(device, "laptop");
        assert_eq!(change.add, ["a", "b", "c"]);
        assert_eq!(change.remove, ["d"]);
        assert_eq!(change.set, None);
        let cli =
            Cli::try_parse_from(["watchgrid", "devices", "tag", "laptop", "--set", ""]).unwrap();
        let Command::Devices(DevicesCommand::Tag { change, .. }) = cli.command else {
            panic!("not devices tag: {cli:?}");
        };
        assert_eq!(change.set, Some(TagList(vec![])));
    }

    #[test]
    fn onboarding_tokens_live_beside_api_tokens() {
        assert_eq!(
            rejected(&["tokens", "onboarding", "create", "--max-uses", "0"]),
            (
                "invalid value \"0\" for '--max-uses': expected a whole number from 1 to 100000"
                    .to_string(),
                2
            )
        );
        assert_eq!(
            rejected(&[
                "tokens",
                "onboarding",
                "create",
                "--expires-in-hours",
                "8761"
            ])
            .0,
            "invalid value \"8761\" for '--expires-in-hours': expected a number of hours from \
             1 to 8760"
        );
        assert_eq!(
            rejected(&["tokens", "onboarding", "create", "--tag", "A"]).0,
            "invalid value \"A\" for '--tag': expected a tag: 1-63 lower-case letters, digits, \
             '-', '_', '.' or ':'"
        );
        let cli = Cli::try_parse_from([
            "watchgrid",
            "tokens",
            "onboarding",
            "create",
            "--description",
            "lab",
            "--max-uses",
            "5",
            "--tag",
            "lab",
            "--tag",
            "site:fra",
        ])
        .unwrap();
        let Command::Tokens(TokensCommand::Onboarding(OnboardingCommand::Create {
            description,
            max_uses,
            expires_in_hours,
            tags,
        })) = cli.command
        else {
            panic!("not tokens onboarding create: {cli:?}");
        };
        assert_eq!(description.as_deref(), Some("lab"));
        assert_eq!(max_uses, Some(5));
        assert_eq!(expires_in_hours, None);
        assert_eq!(tags, ["lab", "site:fra"]);
        // The API token commands are as they were.
        let cli = Cli::try_parse_from(["watchgrid", "tokens", "create", "ci", "--role", "viewer"])
            .unwrap();
        assert!(matches!(
            cli.command,
            Command::Tokens(TokensCommand::Create { .. })
        ));
        let cli = Cli::try_parse_from(["watchgrid", "tokens", "revoke", "k1"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Tokens(TokensCommand::Revoke { .. })
        ));
    }

    #[test]
    fn globals_work_after_the_command() {
        let cli = Cli::try_parse_from([
            "watchgrid",
            "users",
            "list",
            "--tenant",
            "acme",
            "--json",
            "--server",
            "http://127.0.0.1:8080/",
        ])
        .unwrap();
        assert_eq!(cli.tenant.as_deref(), Some("acme"));
        assert!(cli.json);
        assert_eq!(cli.server.unwrap().as_str(), "http://127.0.0.1:8080");
    }
}
