//! Throwaway PostgreSQL clusters started from the machine's PostgreSQL binaries.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A PostgreSQL cluster in a directory of its own, listening on 127.0.0.1 and a Unix socket in
/// that directory, with `trust` authentication for the `postgres` user. Durability is switched
/// off: it exists for tests. Dropping a cluster made by [`PgCluster::temporary`] stops it and
/// removes its files.
#[derive(Debug)]
pub struct PgCluster {
    root: PathBuf,
    port: u16,
    bin: PathBuf,
    /// Run the server as the `postgres` user: initdb refuses to run as root.
    as_postgres_user: bool,
    _temp: Option<tempfile::TempDir>,
}

impl PgCluster {
    /// A new cluster in a fresh temporary directory, initialised but not started.
    pub fn temporary() -> Result<Self> {
        let temp = tempfile::Builder::new().prefix("watchgrid-pg-").tempdir()?;
        let mut cluster = Self::init(temp.path())?;
        cluster._temp = Some(temp);
        Ok(cluster)
    }

    /// Initialise a cluster under `root` (which must be empty or absent).
    pub fn init(root: &Path) -> Result<Self> {
        let bin = postgres_bin_dir()?;
        let as_postgres_user = running_as_root();
        fs::create_dir_all(root)?;
        let port = free_port()?;
        let cluster = Self {
            root: root.to_path_buf(),
            port,
            bin,
            as_postgres_user,
            _temp: None,
        };
        if as_postgres_user {
            cluster.chown(root)?;
        }
        cluster.run(
            "initdb",
            &[
                "-D",
                cluster.data_dir().to_str().context("non-UTF-8 path")?,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        let settings = format!(
            "\n# watchgrid test cluster\nport = {port}\nlisten_addresses = '127.0.0.1'\n\
             unix_socket_directories = '{}'\nfsync = off\nsynchronous_commit = off\n\
             full_page_writes = off\nmax_connections = 300\nshared_buffers = 32MB\n",
            root.display()
        );
        append(&cluster.data_dir().join("postgresql.conf"), &settings)?;
        fs::write(root.join("port"), port.to_string())?;
        Ok(cluster)
    }

    /// Re-open a cluster that [`PgCluster::init`] made earlier (for the `stop` subcommand).
    pub fn open(root: &Path) -> Result<Self> {
        let port = fs::read_to_string(root.join("port"))
            .with_context(|| format!("{} holds no test cluster", root.display()))?
            .trim()
            .parse()?;
        Ok(Self {
            root: root.to_path_buf(),
            port,
            bin: postgres_bin_dir()?,
            as_postgres_user: running_as_root(),
            _temp: None,
        })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// URL of `database` on this cluster, over TCP.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Start the server and wait until it accepts connections.
    pub fn start(&self) -> Result<()> {
        let log = self.root.join("postgres.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().context("non-UTF-8 path")?,
                "-l",
                log.to_str().context("non-UTF-8 path")?,
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
    }

    /// Stop the server (fast shutdown: sessions are disconnected, as when an operator stops it).
    pub fn stop(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &[
                "-D",
                self.data_dir().to_str().context("non-UTF-8 path")?,
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
    }

    /// Append lines to `postgresql.conf` (takes effect at the next start).
    pub fn configure(&self, settings: &str) -> Result<()> {
        append(&self.data_dir().join("postgresql.conf"), settings)
    }

    /// Replace `pg_hba.conf` (takes effect at the next start).
    pub fn set_hba(&self, rules: &str) -> Result<()> {
        fs::write(self.data_dir().join("pg_hba.conf"), rules)?;
        if self.as_postgres_user {
            self.chown(&self.data_dir().join("pg_hba.conf"))?;
        }
        Ok(())
    }

    /// Run a program (such as `scripts/postgres-ssl-init.sh`) as the cluster's owner, with
    /// `PGDATA` pointing at the data directory.
    pub fn run_as_owner(&self, program: &Path, args: &[&str]) -> Result<()> {
        let mut command = if self.as_postgres_user {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        command.args(args).env("PGDATA", self.data_dir());
        check(command, &program.display().to_string())
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<()> {
        let program = self.bin.join(tool);
        self.run_as_owner(&program, args)
    }

    fn chown(&self, path: &Path) -> Result<()> {
        let mut command = Command::new("chown");
        command.arg("-R").arg("postgres:postgres").arg(path);
        check(command, "chown")
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if self._temp.is_some() && self.data_dir().join("postmaster.pid").exists() {
            let data = self.data_dir();
            if let Some(data) = data.to_str() {
                let _ = self.run("pg_ctl", &["-D", data, "-m", "immediate", "-w", "stop"]);
            }
        }
    }
}

fn check(mut command: Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("could not run {what}"))?;
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

fn append(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    let mut file = fs::OpenOptions::new().append(true).open(path)?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// Where `initdb` and `pg_ctl` live: `$WATCHGRID_PG_BIN`, else the newest
/// `/usr/lib/postgresql/*/bin`, else whatever `PATH` has.
pub fn postgres_bin_dir() -> Result<PathBuf> {
    if let Ok(dir) = std::env::var("WATCHGRID_PG_BIN") {
        let dir = PathBuf::from(dir);
        if dir.join("initdb").is_file() {
            return Ok(dir);
        }
        bail!("WATCHGRID_PG_BIN={} has no initdb", dir.display());
    }
    let mut candidates: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").is_file().then_some((version, bin))
        })
        .collect();
    candidates.sort();
    if let Some((_, bin)) = candidates.pop() {
        return Ok(bin);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    bail!(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found. Install them with \
         `apt-get install postgresql` (Debian/Ubuntu) or `brew install postgresql` (macOS), or \
         set WATCHGRID_PG_BIN to the directory that holds them."
    )
}
