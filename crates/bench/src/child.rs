//! The processes under test: the release `watchgrid-server` and the bare baseline, each a child
//! with its output in a log file, stopped with SIGTERM (and killed if the benchmark dies).

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::process::Command;

use crate::http::{self, Failure};

#[derive(Debug)]
pub struct Child {
    name: &'static str,
    child: tokio::process::Child,
    pid: u32,
    log: PathBuf,
}

impl Child {
    /// Start `program` with exactly `env` (nothing inherited), output to `log`.
    pub fn spawn(
        name: &'static str,
        program: &Path,
        args: &[String],
        env: &[(String, String)],
        log: PathBuf,
    ) -> Result<Child> {
        let out =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let err = out.try_clone()?;
        let child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let pid = child.id().context("the child has no pid")?;
        Ok(Child {
            name,
            child,
            pid,
            log,
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The end of the child's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Fail if the child has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "{} exited early ({status}); its log ({}) ends:\n{}",
                self.name,
                self.log.display(),
                self.log_tail()
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`.
    pub async fn stop(mut self, grace: Duration) -> Result<ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status()
            .await;
        match tokio::time::timeout(grace, self.child.wait()).await {
            Ok(status) => Ok(status?),
            Err(_) => {
                self.child.kill().await?;
                bail!(
                    "{} did not stop within {grace:?} of SIGTERM; killed",
                    self.name
                )
            }
        }
    }
}

/// A port that was free a moment ago on `ip`.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    Ok(std::net::TcpListener::bind((ip, 0))?.local_addr()?.port())
}

/// Poll until `probe` gives `Ok`, the child exits, or `limit` passes.
pub async fn wait_until<F, Fut>(
    child: &mut Child,
    what: &str,
    limit: Duration,
    mut probe: F,
) -> Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Failure>>,
{
    let started = Instant::now();
    let mut last = None;
    while started.elapsed() < limit {
        child.check_alive()?;
        match probe().await {
            Ok(()) => return Ok(started.elapsed()),
            Err(failure) => last = Some(failure),
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let hint = match &last {
        Some(Failure::Status(401)) => {
            "\n(401: the server does not know the seeded devices — is its device index loaded from the database at start-up?)"
        }
        _ => "",
    };
    bail!(
        "{what}: not ready after {limit:?}; last answer: {}{hint}\nlog ({}):\n{}",
        last.map_or_else(|| "none".to_owned(), |f| f.to_string()),
        child.log.display(),
        child.log_tail()
    )
}

/// `GET path` from `source` answers 200.
pub async fn get_ok(source: Ipv4Addr, target: SocketAddr, path: &str) -> Result<(), Failure> {
    match http::get_status(source, target, path).await? {
        200 => Ok(()),
        other => Err(Failure::Status(other)),
    }
}

/// `--server-bin`, else `watchgrid-server` next to this program.
pub fn server_binary(given: Option<&Path>) -> Result<PathBuf> {
    match given {
        Some(path) => Ok(path.to_path_buf()),
        None => Ok(std::env::current_exe()?
            .parent()
            .context("this program has no directory")?
            .join("watchgrid-server")),
    }
}
