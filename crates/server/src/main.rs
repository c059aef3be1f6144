//! `watchgrid-server`: the command-line entry point (`serve`, `migrate`, `check-config`).

use std::process::ExitCode;

/// Less CPU and memory than glibc's allocator for the server's many small, short-lived
/// allocations (docs/benchmarks.md); `--no-default-features` builds without it.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve);
    let secrets = match command {
        Command::CheckConfig => SecretGeneration::ReadOnly,
        Command::Serve | Command::Migrate => SecretGeneration::Generate,
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
