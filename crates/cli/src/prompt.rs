//! Reading a username and passwords: from the terminal without echo, or one line at a time
//! from standard input (`--password-stdin`, for scripts).

use std::io::{BufRead, IsTerminal, Write};

use watchgrid_clientkit::text::io_text;

use crate::error::CliError;

/// The username: prompted for on the terminal when stdin is one.
pub fn username() -> Result<String, CliError> {
    if !std::io::stdin().is_terminal() {
        return Err(CliError::Usage(
            "missing '--username' (standard input is not a terminal to ask on)".to_string(),
        ));
    }
    eprint!("Username: ");
    let _ = std::io::stderr().flush();
    let name = read_line(&mut std::io::stdin().lock(), "a username")?;
    let name = name.trim().to_string();
    if name.is_empty() {
        return Err(CliError::Usage(
            "the username must not be empty".to_string(),
        ));
    }
    Ok(name)
}

/// A password typed on the terminal, not echoed.
pub fn password(prompt: &str) -> Result<String, CliError> {
    let password = rpassword::prompt_password(prompt).map_err(|e| {
        CliError::Usage(format!(
            "cannot ask for a password on the terminal ({}): use '--password-stdin'",
            io_text(&e)
        ))
    })?;
    not_empty(password)
}

/// A new password typed twice on the terminal.
pub fn new_password(prompt: &str) -> Result<String, CliError> {
    let first = password(prompt)?;
    let second = password("Repeat it: ")?;
    if first != second {
        return Err(CliError::Failed("the passwords do not match".to_string()));
    }
    Ok(first)
}

/// One password from standard input, the line ending removed (other whitespace is kept).
pub fn password_from_stdin(what: &str) -> Result<String, CliError> {
    not_empty(read_line(&mut std::io::stdin().lock(), what)?)
}

/// One line from `input` without its line ending; an error naming `what` at end of input.
pub fn read_line(input: &mut impl BufRead, what: &str) -> Result<String, CliError> {
    let mut line = String::new();
    let read = input
        .read_line(&mut line)
        .map_err(|e| CliError::Failed(format!("cannot read {what} from standard input: {e}")))?;
    if read == 0 {
        return Err(CliError::Usage(format!(
            "expected {what} on standard input, found the end of input"
        )));
    }
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    Ok(line)
}

fn not_empty(password: String) -> Result<String, CliError> {
    if password.is_empty() {
        Err(CliError::Usage(
            "the password must not be empty".to_string(),
        ))
    } else {
        Ok(password)
    }
}

#[cfg(test)]
mod tests {
    #![allow(
        clippy::unwrap_used,
        reason = "a test should fail loudly on any unexpected error"
    )]

    use super::*;

    #[test]
    fn lines_lose_only_their_ending() {
        let mut input = "  spaced pass \r\nsecond\nlast".as_bytes();
        assert_eq!(read_line(&mut input, "x").unwrap(), "  spaced pass ");
        assert_eq!(read_line(&mut input, "x").unwrap(), "second");
        assert_eq!(read_line(&mut input, "x").unwrap(), "last");
        let err = read_line(&mut input, "the new password").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.one_line(),
            "expected the new password on standard input, found the end of input"
        );
    }
}
