//! Argument values clap cannot check by itself (the server URL, an interface name, a log
//! filter), and the one-line rendering of every command-line usage error.

use clap::error::{ContextKind, ContextValue, ErrorKind};
// `--server`: checked as the CLI checks its own.
pub use watchgrid_clientkit::server_url::{server_url, ServerUrl};

/// A network interface name as the wireguard crate accepts it: 1 to 15 of
/// `A-Z a-z 0-9 _ = + . -`, not `.` or `..` (it also names the UAPI socket file).
pub fn interface_name(text: &str) -> Result<String, String> {
    crate::tunnel::check_interface_name(text)
        .map(|()| text.to_string())
        .map_err(|_| {
            "expected an interface name of 1 to 15 letters, digits or _=+.- characters".to_string()
        })
}

/// A `tracing` filter: a level or `target=level` directives.
pub fn log_filter(text: &str) -> Result<String, String> {
    tracing_subscriber::EnvFilter::try_new(text)
        .map(|_| text.to_string())
        .map_err(|_| {
            "expected a log level (error, warn, info, debug, trace) or tracing directives such \
             as watchgrid_agent=debug,info"
                .to_string()
        })
}

/// A clap error as one line, e.g.
/// `invalid value "x/y" for '--interface': expected an interface name ...`.
pub fn usage_line(err: &clap::Error) -> String {
    let context = |kind| err.get(kind);
    let string = |kind| match context(kind) {
        Some(ContextValue::String(s)) => Some(s.clone()),
        Some(ContextValue::Strings(v)) => Some(v.join(", ")),
        _ => None,
    };
    let line = match err.kind() {
        ErrorKind::ValueValidation | ErrorKind::InvalidValue => {
            let arg = string(ContextKind::InvalidArg).map(|a| arg_name(&a));
            let value = string(ContextKind::InvalidValue);
            let expected = match context(ContextKind::ValidValue) {
                Some(ContextValue::Strings(valid)) => {
                    Some(format!("expected {}", valid.join(", ")))
                }
                _ => std::error::Error::source(err).map(|e| e.to_string()),
            };
            match (arg, value) {
                (Some(arg), Some(value)) => {
                    let mut line = format!("invalid value {value:?} for '{arg}'");
                    if let Some(expected) = expected {
                        line.push_str(": ");
                        line.push_str(&expected);
                    }
                    Some(line)
                }
                _ => None,
            }
        }
        ErrorKind::MissingRequiredArgument => {
            let args: Vec<String> = match context(ContextKind::InvalidArg) {
                Some(ContextValue::Strings(args)) => args.iter().map(|a| arg_name(a)).collect(),
                Some(ContextValue::String(arg)) => vec![arg_name(arg)],
                _ => vec![],
            };
            (!args.is_empty()).then(|| {
                let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
                format!("missing required argument {}", quoted.join(", "))
            })
        }
        _ => None,
    };
    line.unwrap_or_else(|| first_line(err))
}

/// The first line of clap's own rendering, without its `error: ` prefix.
fn first_line(err: &clap::Error) -> String {
    let rendered = err.render().to_string();
    let line = rendered
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("invalid arguments");
    line.strip_prefix("error: ").unwrap_or(line).to_string()
}

/// `--server <URL>` → `--server`; `<NAME>` → `NAME`.
fn arg_name(arg: &str) -> String {
    if arg.starts_with('-') {
        arg.split([' ', '=']).next().unwrap_or(arg).to_string()
    } else {
        arg.trim_start_matches('<')
            .trim_end_matches("...")
            .trim_end_matches('>')
            .to_string()
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
    fn interface_names() {
        for good in ["watchgrid0", "wg-a_1.2", "a", "abcdefghijklmno", "wg=+"] {
            assert_eq!(interface_name(good).as_deref(), Ok(good));
        }
        for bad in [
            "",
            ".",
            "..",
            "abcdefghijklmnop",
            "wg/0",
            "wg 0",
            "wg0\n",
            "wgé",
        ] {
            assert!(interface_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn log_filters() {
        for good in ["info", "debug", "watchgrid_agent=debug,info", "warn"] {
            assert!(log_filter(good).is_ok(), "{good}");
        }
        assert!(log_filter("loud=[").is_err());
    }

    #[test]
    fn argument_names() {
        assert_eq!(arg_name("--server <URL>"), "--server");
        assert_eq!(arg_name("<NAME>"), "NAME");
        assert_eq!(arg_name("--force"), "--force");
    }
}
