//! Command-line arguments. Everything is a flag: the benchmark reads no environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

use crate::addr::Overlay;

#[derive(Debug, Parser)]
#[command(
    name = "watchgrid-bench",
    version,
    about = "Load benchmarks for Watchgrid"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Heartbeat ingestion through the release server and a real database, beside a bare
    /// axum handler loaded the same way.
    Heartbeats(HeartbeatArgs),
    /// Serve the bare axum baseline (`POST /hb`) until killed; started by `heartbeats`.
    BareServer {
        #[arg(long)]
        listen: SocketAddr,
    },
    /// User-certificate signing through the release server's API (POST /api/ssh/certificates).
    SshCerts(crate::sshcerts::SshCertArgs),
    /// Print the JSON lines that `heartbeats --output` appended as a markdown table.
    Table {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// One row per configuration: its median run (by heartbeats/s) and the range.
        #[arg(long)]
        median: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

#[derive(Debug, Clone, clap::Args)]
pub struct HeartbeatArgs {
    /// The database the server runs on: a fresh SQLite file or a throwaway PostgreSQL cluster.
    #[arg(long, value_enum)]
    pub backend: Backend,
    /// Registered agent devices; the load goes round-robin over all of them.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
    pub devices: u32,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before the window opens (not measured).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Requests in flight at once (one worker each).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// Open loop at this many requests per second (latency counted from when each request
    /// was due); without it, closed loop at full speed.
    #[arg(long, value_parser = parse_rate)]
    pub rate: Option<f64>,
    /// Keep one connection per device open and reuse it for that device's heartbeats (as the
    /// agent's HTTP client pool does); needs a file-descriptor limit above the device count,
    /// in this process and in the server.
    #[arg(long)]
    pub keep_alive: bool,
    /// The overlay network (inside 127.0.0.0/8); the server is its first address.
    #[arg(long, default_value = crate::addr::DEFAULT_OVERLAY)]
    pub overlay: Overlay,
    /// The server binary; by default `watchgrid-server` next to this program.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// Extra `KEY=VALUE` for the server's environment, after the benchmark's own (repeatable),
    /// e.g. `LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2` to try another allocator.
    #[arg(long = "server-env", value_parser = parse_env)]
    pub server_env: Vec<(String, String)>,
    /// The server's `WATCHGRID_DB_MAX_CONNECTIONS`.
    #[arg(long, default_value_t = 10)]
    pub db_max_connections: u32,
    /// Per-request deadline (connect included); a request past it is a failure.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,
    /// How long to wait after the load for every heard device's `last_seen_at`.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    pub write_deadline: Duration,
    /// Before each load phase, wait up to this long for the machine to be quiet (other
    /// processes using less than `--quiet-cores`); `0s` measures whatever else is running.
    #[arg(long, default_value = "0s", value_parser = parse_duration_or_zero)]
    pub wait_quiet: Duration,
    /// What counts as quiet: cores busy with other work over one second.
    #[arg(long, default_value_t = 0.15)]
    pub quiet_cores: f64,
    /// Skip the bare axum baseline.
    #[arg(long)]
    pub no_bare: bool,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Keep the temporary directory (database, server logs) and print its path.
    #[arg(long)]
    pub keep: bool,
}

/// `500ms`, `20s`, `2m`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = match text.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 500ms, 20s or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        _ => return Err(format!("{text:?}: the unit must be ms, s or m")),
    };
    if !seconds.is_finite() || seconds <= 0.0 {
        return Err(format!("{text:?} must be positive"));
    }
    Ok(Duration::from_secs_f64(seconds))
}

fn parse_duration_or_zero(text: &str) -> Result<Duration, String> {
    if text
        .trim()
        .trim_end_matches(['s', 'm'])
        .trim_end_matches('m')
        == "0"
    {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

fn parse_env(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

fn parse_rate(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|r| r.is_finite() && *r > 0.0)
        .ok_or_else(|| format!("{text:?} is not a positive number of requests per second"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("7"), Ok(Duration::from_secs(7)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        for bad in ["", "s", "10h", "0s", "-1s", "x"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_duration_or_zero("0s"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration_or_zero("3m"), Ok(Duration::from_secs(180)));
    }

    #[test]
    fn heartbeat_arguments() {
        let cli = Cli::try_parse_from([
            "watchgrid-bench",
            "heartbeats",
            "--backend",
            "postgres",
            "--devices",
            "100000",
            "--duration",
            "20s",
            "--concurrency",
            "32",
            "--server-env",
            "MALLOC_ARENA_MAX=2",
            "--server-env",
            "A=b=c",
        ])
        .unwrap();
        let Command::Heartbeats(args) = cli.command else {
            panic!("wrong subcommand");
        };
        assert_eq!(args.backend, Backend::Postgres);
        assert_eq!(args.devices, 100_000);
        assert_eq!(args.duration, Duration::from_secs(20));
        assert_eq!(args.warmup, Duration::from_secs(5));
        assert_eq!(args.concurrency, 32);
        assert_eq!(args.rate, None);
        assert_eq!(args.overlay.to_string(), "127.64.0.0/10");
        assert_eq!(args.db_max_connections, 10);
        assert_eq!(args.wait_quiet, Duration::ZERO);
        assert_eq!(
            args.server_env,
            [
                ("MALLOC_ARENA_MAX".into(), "2".into()),
                ("A".into(), "b=c".into())
            ]
        );
        assert!(!args.keep_alive);

        let cli = Cli::try_parse_from([
            "watchgrid-bench",
            "heartbeats",
            "--backend",
            "sqlite",
            "--rate",
            "20000",
        ])
        .unwrap();
        let Command::Heartbeats(args) = cli.command else {
            panic!("wrong subcommand");
        };
        assert_eq!(args.rate, Some(20000.0));
        assert_eq!(args.devices, 10_000);

        for bad in [
            &["watchgrid-bench", "heartbeats"][..],
            &["watchgrid-bench", "heartbeats", "--backend", "mysql"],
            &[
                "watchgrid-bench",
                "heartbeats",
                "--backend",
                "sqlite",
                "--devices",
                "0",
            ],
            &[
                "watchgrid-bench",
                "heartbeats",
                "--backend",
                "sqlite",
                "--rate",
                "0",
            ],
            &[
                "watchgrid-bench",
                "heartbeats",
                "--backend",
                "sqlite",
                "--overlay",
                "10.0.0.0/8",
            ],
            &[
                "watchgrid-bench",
                "heartbeats",
                "--backend",
                "sqlite",
                "--server-env",
                "=x",
            ],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn other_subcommands() {
        let cli = Cli::try_parse_from([
            "watchgrid-bench",
            "bare-server",
            "--listen",
            "127.64.0.1:9000",
        ])
        .unwrap();
        assert!(matches!(cli.command, Command::BareServer { listen } if listen.port() == 9000));
        assert!(Cli::try_parse_from(["watchgrid-bench", "table"]).is_err());
    }
}
