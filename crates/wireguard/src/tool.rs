//! Running the external program this crate drives (`ip`): secrets, should one ever be passed,
//! only on stdin; failures as typed errors.

use std::io::{Read, Write as _};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::Error;

/// An external program and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Tool {
    pub program: &'static str,
    pub package: &'static str,
}

/// iproute2's `ip`.
pub(crate) const IP: Tool = Tool {
    program: "ip",
    package: "iproute2",
};

impl Tool {
    /// Runs the program and returns its stdout. `stdin` is written to its standard input and
    /// never appears in errors. A non-zero exit is [`Error::Command`], or
    /// [`Error::NoPermission`] when stderr says so. A program still running after
    /// [`run_timeout`] (wedged on a stuck kernel lock, say) is killed:
    /// [`Error::Timeout`].
    pub(crate) fn run(self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, Error> {
        self.run_within(args, stdin, run_timeout(stdin.map_or(0, <[u8]>::len)))
    }

    fn run_within(
        self,
        args: &[&str],
        stdin: Option<&[u8]>,
        limit: Duration,
    ) -> Result<String, Error> {
        let command_line = format!("{} {}", self.program, args.join(" "));
        let io = |e| crate::error::io_context(format!("running `{command_line}`"), e);
        let mut child = Command::new(self.program)
            .args(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => Error::ToolMissing {
                    tool: self.program,
                    package: self.package,
                },
                _ => io(e),
            })?;
        let deadline = Instant::now() + limit;
        let (status, stdout, stderr) = thread::scope(|scope| {
            if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
                // A program that exits early closes the pipe; its exit status tells why.
                scope.spawn(move || {
                    let _ = pipe.write_all(input);
                });
            }
            let stdout = child.stdout.take().map(|pipe| scope.spawn(|| drain(pipe)));
            let stderr = child.stderr.take().map(|pipe| scope.spawn(|| drain(pipe)));
            let status = wait_until(&mut child, deadline);
            if !matches!(status, Ok(Some(_))) {
                // Killing it closes its pipes, which ends the threads above.
                let _ = child.kill();
                let _ = child.wait();
            }
            let collect = |h: Option<thread::ScopedJoinHandle<'_, Vec<u8>>>| {
                h.and_then(|h| h.join().ok()).unwrap_or_default()
            };
            (status, collect(stdout), collect(stderr))
        });
        let status = match status {
            Ok(Some(status)) => status,
            Ok(None) => {
                return Err(Error::Timeout(format!(
                    "`{command_line}` did not finish within {}s and was killed",
                    limit.as_secs()
                )))
            }
            Err(e) => return Err(io(e)),
        };
        if status.success() {
            return Ok(String::from_utf8_lossy(&stdout).into_owned());
        }
        let mut stderr = String::from_utf8_lossy(&stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = format!("exited with {status}");
        }
        if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
            return Err(Error::NoPermission(format!("`{command_line}`: {stderr}")));
        }
        Err(Error::Command {
            command: command_line,
            stderr,
        })
    }
}

/// How long a command may run: 30 s, plus 1 s per MiB written to it.
fn run_timeout(stdin_bytes: usize) -> Duration {
    Duration::from_secs(30 + (stdin_bytes >> 20) as u64)
}

/// Reads a pipe to its end.
fn drain(mut pipe: impl Read) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = pipe.read_to_end(&mut out);
    out
}

/// Waits for the child to exit, until `deadline`; `None` if it is still running then.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(None);
        }
        thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_program_names_its_package() {
        let tool = Tool {
            program: "watchgrid-no-such-program",
            package: "some-package",
        };
        match tool.run(&[], None) {
            Err(Error::ToolMissing { tool, package }) => {
                assert_eq!(tool, "watchgrid-no-such-program");
                assert_eq!(package, "some-package");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn failures_carry_stderr_and_stdin_stays_out() {
        let sh = Tool {
            program: "sh",
            package: "dash",
        };
        match sh.run(
            &["-c", "cat >/dev/null; echo boom >&2; exit 3"],
            Some(b"secret"),
        ) {
            Err(Error::Command { command, stderr }) => {
                assert_eq!(stderr, "boom");
                assert!(!command.contains("secret"));
            }
            other => panic!("{other:?}"),
        }
        match sh.run(
            &[
                "-c",
                "echo 'RTNETLINK answers: Operation not permitted' >&2; exit 2",
            ],
            None,
        ) {
            Err(Error::NoPermission(message)) => {
                assert!(message.contains("RTNETLINK"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            sh.run(&["-c", "cat"], Some(b"echoed")).ok().as_deref(),
            Some("echoed")
        );
    }

    #[test]
    fn a_program_that_hangs_is_killed_at_its_limit() {
        let sh = Tool {
            program: "sh",
            package: "dash",
        };
        let started = Instant::now();
        match sh.run_within(
            &["-c", "echo partial; exec sleep 30"],
            Some(b"ignored"),
            Duration::from_millis(300),
        ) {
            Err(Error::Timeout(message)) => assert!(message.contains("sh -c"), "{message}"),
            other => panic!("{other:?}"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(run_timeout(0), Duration::from_secs(30));
        assert_eq!(run_timeout(10 << 20), Duration::from_secs(40));
    }
}
