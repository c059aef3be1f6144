//! `watchgrid-bench`: load benchmarks for Watchgrid. `heartbeats` measures heartbeat ingestion
//! through the release server's real HTTP stack and database beside a bare axum handler loaded
//! the same way; `ssh-certs` measures user-certificate signing through the API; see
//! `docs/benchmarks.md`, `scripts/bench-heartbeats.sh` and `scripts/bench-ssh-certs.sh`.

#![forbid(unsafe_code)]

mod addr;
mod args;
mod bare;
mod bench;
mod child;
mod http;
mod load;
mod procfs;
mod seed;
mod sshcerts;
mod stats;
mod table;

use clap::Parser;

use crate::args::{Cli, Command};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("watchgrid-bench: cannot start the runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Heartbeats(args) => bench::run(args).await,
            Command::BareServer { listen } => {
                let listener = tokio::net::TcpListener::bind(listen).await?;
                bare::serve(listener).await?;
                Ok(())
            }
            Command::Table { files, median } => table::run(&files, median),
            Command::SshCerts(args) => sshcerts::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("watchgrid-bench: {err:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
