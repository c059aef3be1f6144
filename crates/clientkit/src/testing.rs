//! Helpers for the integration tests of the binaries (feature `test-util`): their output as
//! text, and the contract that an error is exactly one line on stderr naming the program.

use std::process::Output;

pub fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8")
}

/// stderr must be exactly one line starting `<program>: `; returns it.
pub fn one_error_line(output: &Output, program: &str) -> String {
    let err = stderr(output);
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line on stderr, got {err:?}");
    assert!(lines[0].starts_with(&format!("{program}: ")), "{err:?}");
    lines[0].to_string()
}
