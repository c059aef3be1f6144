//! `watchgrid-server`: the command-line entry point (`serve`, `migrate`, `check-config`,
//! `ssh-ca rotate`, `wireguard rekey`).

use std::process::ExitCode;

/// Less CPU and memory than glibc's allocator for the server's many small, short-lived
/// allocations (docs/benchmarks.md); `--no-default-features` builds without it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Parser, Subcommand};
use watchgrid_server::config::{Config, EnvSource, SecretGeneration};
use watchgrid_server::{serve, telemetry};

#[derive(Debug, Parser)]
#[command(
    name = "watchgrid-server",
    version = watchgrid_server::VERSION,
    about = "The Watchgrid server: API, dashboard, agent endpoints, WireGuard hub, Magic DNS, SSH CA",
    long_about = "The Watchgrid server. Configuration comes from environment variables; \
                  see docs/production.md."
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Validate the configuration and exit: 0 when valid, 1 with every problem listed.
    CheckConfig,
    /// Manage the per-tenant SSH certificate authorities.
    #[command(subcommand)]
    SshCa(SshCaCommand),
    /// Manage the server's WireGuard key.
    #[command(subcommand)]
    Wireguard(WireguardCommand),
}

#[derive(Debug, Subcommand)]
enum WireguardCommand {
    /// Replace the server's WireGuard key (WATCHGRID_WG_CONFIG) with a new one, on purpose. The
    /// server never does this by itself once devices are enrolled: each of them pinned the old
    /// key and must re-enroll. Stop the server first; restart every replica with the new file.
    Rekey {
        /// Confirm the re-key although devices are enrolled.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Debug, Subcommand)]
enum SshCaCommand {
    /// Rotate a tenant's CA keys: a new key signs from now on; devices and clients trust the
    /// old and the new one until the grace period ends, then only the new one.
    Rotate {
        /// The tenant's slug.
        #[arg(long)]
        tenant: String,
        /// How long the old keys stay trusted: e.g. 90s, 30m, 48h, 7d. Make it longer than the
        /// tenant's longest user-certificate validity.
        #[arg(long, default_value = "48h", value_parser = parse_duration)]
        grace: std::time::Duration,
        /// Which CA: user, host, or both.
        #[arg(long, default_value = "both", value_parser = ["user", "host", "both"])]
        kind: String,
    },
}

/// `90s`, `30m`, `48h`, `7d`.
fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: u64 = number
        .parse()
        .map_err(|_| "expected a duration such as 90s, 30m, 48h or 7d".to_string())?;
    let secs = match unit {
        "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        "d" => n.saturating_mul(86400),
        _ => return Err("expected a duration such as 90s, 30m, 48h or 7d".into()),
    };
    Ok(std::time::Duration::from_secs(secs))
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => return ExitCode::from(clap_error(&err)),
    };
    let command = cli.command.unwrap_or(Command::Serve);
    let secrets = match command {
        Command::CheckConfig => SecretGeneration::ReadOnly,
        Command::Serve | Command::Migrate | Command::SshCa(_) | Command::Wireguard(_) => {
            SecretGeneration::Generate
        }
    };
    let config = match Config::load(&EnvSource, secrets) {
        Ok(config) => config,
        Err(err) => {
            eprintln!("watchgrid-server: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::CheckConfig = command {
        return check_config(&config);
    }
    telemetry::init(config.log_format, &config.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("watchgrid-server: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match command {
            Command::Migrate => serve::migrate_once(&config).await,
            Command::SshCa(SshCaCommand::Rotate {
                tenant,
                grace,
                kind,
            }) => rotate(&config, &tenant, grace, &kind).await,
            Command::Wireguard(WireguardCommand::Rekey { yes }) => rekey(&config, yes).await,
            _ => serve::serve(config).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "watchgrid-server failed");
            eprintln!("watchgrid-server: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// The exit status of a bad invocation, as the CLI and the agent use it.
const EXIT_USAGE: u8 = 2;

/// Print a parse error — help and version as clap prints them, a usage error as one line
/// naming the argument, like the CLI and the agent — and return the exit status.
fn clap_error(err: &clap::Error) -> u8 {
    match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = err.print();
            u8::try_from(err.exit_code()).unwrap_or(EXIT_USAGE)
        }
        _ => {
            eprintln!("watchgrid-server: {}", usage_line(err));
            EXIT_USAGE
        }
    }
}

/// A clap error as one line, e.g. `invalid value "7x" for '--grace': expected a duration
/// such as 90s, 30m, 48h or 7d`.
fn usage_line(err: &clap::Error) -> String {
    let string = |kind| match err.get(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    // `--grace <GRACE>` → `--grace`.
    let arg_name = |arg: String| arg.split([' ', '=']).next().unwrap_or_default().to_owned();
    let line = match err.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let expected = match err.get(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) => {
                    Some(format!("expected {}", valid.join(", ")))
                }
                _ => std::error::Error::source(err).map(|e| e.to_string()),
            };
            match (
                string(ContextKind::InvalidArg).map(arg_name),
                string(ContextKind::InvalidValue),
            ) {
                (Some(arg), Some(value)) => Some(match expected {
                    Some(expected) => format!("invalid value {value:?} for '{arg}': {expected}"),
                    None => format!("invalid value {value:?} for '{arg}'"),
                }),
                _ => None,
            }
        }
        ErrorKind::MissingRequiredArgument => string(ContextKind::InvalidArg)
            .map(|args| format!("missing required argument '{}'", arg_name(args))),
        _ => None,
    };
    line.unwrap_or_else(|| {
        // clap's own first line (`unexpected argument '--x' found`), without `error: `.
        let rendered = err.render().to_string();
        let first = rendered
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("invalid arguments");
        first.trim_start_matches("error: ").trim().to_owned()
    })
}

#[allow(
    clippy::print_stdout,
    reason = "ssh-ca rotate reports to the operator's terminal"
)]
async fn rotate(
    config: &Config,
    tenant: &str,
    grace: std::time::Duration,
    kind: &str,
) -> anyhow::Result<()> {
    use watchgrid_server::ssh::{CaKind, SshAuthority};
    let kinds: &[CaKind] = match kind {
        "user" => &[CaKind::User],
        "host" => &[CaKind::Host],
        _ => &CaKind::ALL,
    };
    let db = watchgrid_store::Database::connect(&config.database, 2).await?;
    let authority = std::sync::Arc::new(SshAuthority::new(config.ssh.ca_dir.clone()));
    let rotated = authority.rotate(&db, tenant, kinds, grace).await?;
    for r in &rotated {
        println!(
            "tenant {tenant}: new {} CA generation {} {} (trusted with {} until the grace period ends in {} s)",
            r.kind.as_str(),
            r.generation,
            r.fingerprint,
            if r.previous.is_empty() { "no other key".to_string() } else { r.previous.join(", ") },
            grace.as_secs()
        );
    }
    db.close().await;
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "wireguard rekey reports to the operator's terminal"
)]
async fn rekey(config: &Config, confirmed: bool) -> anyhow::Result<()> {
    let db = watchgrid_store::Database::connect(&config.database, 2).await?;
    let devices = watchgrid_store::devices::all_devices(&db).await?.len();
    if devices > 0 && !confirmed {
        db.close().await;
        anyhow::bail!(
            "{devices} enrolled device(s) pin the current WireGuard key and will refuse the server \
             until each re-enrolls; if the key file was lost, restore it from a backup instead \
             (docs/production.md, \"The WireGuard key\"). To re-key anyway, run again with --yes"
        );
    }
    let done = watchgrid_server::fleet::hub::rekey(&config.fleet, &db).await?;
    db.close().await;
    println!(
        "wrote a new WireGuard key to {} (WATCHGRID_WG_CONFIG): public key {} (was {})",
        config.fleet.wg_config.display(),
        done.new_public_key,
        done.old_public_key
            .map_or_else(|| "no readable key".to_owned(), |k| k.to_string()),
    );
    println!(
        "{} enrolled device(s) pinned the old key and will refuse the server until re-enrolled: \
         on each agent run `watchgrid-agent enroll --server <url> --token <new token> --force`; \
         plain devices need their wg-quick file again (watchgrid devices config <id>)",
        done.devices
    );
    println!(
        "start the server again (copy the file to every replica first) to serve the new key; \
         recorded in the audit log as wireguard.rekey"
    );
    Ok(())
}

#[allow(
    clippy::print_stdout,
    reason = "check-config reports to the operator's terminal"
)]
fn check_config(config: &Config) -> ExitCode {
    println!("configuration OK ({:?} mode)", config.mode);
    println!("  listen:   {}", config.listen);
    println!("  database: {}", config.database_display);
    println!("  data dir: {}", config.data_dir.display());
    for warning in &config.warnings {
        println!("  note: {warning}");
    }
    ExitCode::SUCCESS
}
