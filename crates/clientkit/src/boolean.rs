//! The one boolean parser of the CLI's and the agent's flags and environment variables, so
//! `WATCHGRID_AGENT_NO_SSH=1` works as an operator expects.

/// `1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`, in any case; the error says what is
/// accepted (clap adds the value and the argument's name).
pub fn parse_bool(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err("expected true or false (or 1/0, yes/no, on/off)".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::parse_bool;

    #[test]
    fn the_usual_spellings_are_accepted_in_any_case() {
        for yes in ["1", "true", "TRUE", "Yes", "on", " ON "] {
            assert_eq!(parse_bool(yes), Ok(true), "{yes}");
        }
        for no in ["0", "false", "False", "no", "NO", "off"] {
            assert_eq!(parse_bool(no), Ok(false), "{no}");
        }
        for bad in ["", "maybe", "2", "y"] {
            assert!(parse_bool(bad).is_err(), "{bad}");
        }
    }
}
