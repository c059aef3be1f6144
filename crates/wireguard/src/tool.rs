//! Running the external programs this crate drives (`ip`, `wg`): secrets only ever on stdin,
//! failures as typed errors.

use std::io::Write as _;
use std::process::{Command, Stdio};

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
/// wireguard-tools' `wg`.
pub(crate) const WG: Tool = Tool {
    program: "wg",
    package: "wireguard-tools",
};

impl Tool {
    /// Runs the program and returns its stdout. `stdin` is written to its standard input and
    /// never appears in errors. A non-zero exit is [`Error::Command`], or
    /// [`Error::NoPermission`] when stderr says so.
    pub(crate) fn run(self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, Error> {
        let command_line = format!("{} {}", self.program, args.join(" "));
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
                _ => crate::error::io_context(format!("running `{command_line}`"), e),
            })?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // A program that exits early closes the pipe; its exit status tells why.
            let _ = pipe.write_all(input);
        }
        let output = child
            .wait_with_output()
            .map_err(|e| crate::error::io_context(format!("running `{command_line}`"), e))?;
        if output.status.success() {
            return Ok(String::from_utf8_lossy(&output.stdout).into_owned());
        }
        let mut stderr = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        if stderr.is_empty() {
            stderr = format!("exited with {}", output.status);
        }
        if stderr.contains("Operation not permitted") || stderr.contains("Permission denied") {
            return Err(Error::NoPermission(format!("`{command_line}`: {stderr}")));
        }
        Err(Error::Command {
            command: command_line,
            stderr,
        })
    }

    /// Whether the program can be started at all.
    pub(crate) fn require(self) -> Result<(), Error> {
        match Command::new(self.program)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
        {
            Ok(_) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::ToolMissing {
                tool: self.program,
                package: self.package,
            }),
            Err(e) => Err(crate::error::io_context(
                format!("running `{} --version`", self.program),
                e,
            )),
        }
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
        assert!(matches!(tool.require(), Err(Error::ToolMissing { .. })));
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
}
