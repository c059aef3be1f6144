//! Argument values clap cannot check by itself (server URL, tenant slug, role, timestamps,
//! numbers in a range), and the one-line rendering of every command-line usage error.

use std::fmt;

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::error::{ContextKind, ContextValue, ErrorKind};
use reqwest::Url;
use watchgrid_wire::Role;

/// A server's base URL: `http` or `https`, a host, no credentials, query or fragment.
/// Displayed without a trailing slash, which is also how the session file stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl(Url);

impl ServerUrl {
    pub fn url(&self) -> &Url {
        &self.0
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str().trim_end_matches('/')
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for ServerUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        server_url(text)
    }
}

pub fn server_url(text: &str) -> Result<ServerUrl, String> {
    const EXPECTED: &str =
        "expected an http:// or https:// URL such as https://watchgrid.example.com";
    let url = Url::parse(text.trim()).map_err(|_| EXPECTED.to_string())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(EXPECTED.to_string());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("the URL must not contain credentials".to_string());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("the URL must not have a query or fragment".to_string());
    }
    Ok(ServerUrl(url))
}

/// A tenant slug: lower-case letters, digits and `-`, at most 63 characters.
pub fn tenant_slug(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(text.to_string())
    } else {
        Err("expected a tenant slug: lower-case letters, digits and '-'".to_string())
    }
}

pub fn role(text: &str) -> Result<Role, String> {
    text.parse::<Role>().map_err(|_| {
        let names: Vec<&str> = Role::ALL.iter().map(|r| r.as_str()).collect();
        format!("expected {}", or_list(&names))
    })
}

/// An RFC 3339 time, or an age such as `30m`, `12h`, `7d` (that long before now). Returned
/// as RFC 3339 in UTC, ready for a query string.
pub fn timestamp(text: &str) -> Result<String, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time
            .with_timezone(&Utc)
            .to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    if let Some(age) = age(text) {
        if let Some(time) = Utc::now().checked_sub_signed(age) {
            return Ok(time.to_rfc3339_opts(SecondsFormat::Secs, true));
        }
    }
    Err("expected an RFC 3339 time such as 2025-01-31T09:00:00Z, \
         or an age such as 30m, 12h or 7d"
        .to_string())
}

fn age(text: &str) -> Option<TimeDelta> {
    let unit = text.chars().last()?;
    let number: i64 = text[..text.len() - unit.len_utf8()].parse().ok()?;
    if number < 0 {
        return None;
    }
    match unit {
        's' => TimeDelta::try_seconds(number),
        'm' => TimeDelta::try_minutes(number),
        'h' => TimeDelta::try_hours(number),
        'd' => TimeDelta::try_days(number),
        'w' => TimeDelta::try_weeks(number),
        _ => None,
    }
}

/// An API token's lifetime in days, as the server accepts it: 1 to 3650.
pub fn days(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=3650).contains(&n) => Ok(n),
        _ => Err("expected a number of days from 1 to 3650".to_string()),
    }
}

/// The largest page the server returns.
pub const MAX_PAGE: u32 = 500;

/// A page size, as the server accepts it: 1 to 500.
pub fn limit(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        _ => Err(format!("expected a whole number from 1 to {MAX_PAGE}")),
    }
}

/// `a`, `a or b`, `a, b or c`.
pub fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

/// A clap error as one line, e.g.
/// `invalid value "boss" for '--role': expected owner, admin, operator or viewer`.
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
                    let valid: Vec<&str> = valid.iter().map(String::as_str).collect();
                    Some(format!("expected {}", or_list(&valid)))
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

/// `--role <ROLE>` → `--role`; `<ROLE>` → `ROLE`.
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
    fn server_urls() {
        assert_eq!(
            server_url("http://127.0.0.1:9").unwrap().as_str(),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            server_url("HTTPS://WG.Example.com:443/").unwrap().as_str(),
            "https://wg.example.com"
        );
        assert_eq!(
            server_url("https://h/prefix/").unwrap().as_str(),
            "https://h/prefix"
        );
        for bad in [
            "",
            "wg.example.com",
            "ftp://h",
            "https://u:p@h",
            "https://h/?x=1",
        ] {
            assert!(server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn slugs() {
        assert!(tenant_slug("acme-2").is_ok());
        for bad in ["", "Acme", "a b", "a_b", &"a".repeat(64)] {
            assert!(tenant_slug(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roles() {
        assert_eq!(role("admin"), Ok(Role::Admin));
        assert_eq!(
            role("boss"),
            Err("expected owner, admin, operator or viewer".to_string())
        );
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            timestamp("2025-01-31T10:00:00+01:00").unwrap(),
            "2025-01-31T09:00:00Z"
        );
        assert_eq!(
            timestamp("2025-01-31T09:00:00.250Z").unwrap(),
            "2025-01-31T09:00:00.250Z"
        );
        let day_ago = DateTime::parse_from_rfc3339(&timestamp("1d").unwrap()).unwrap();
        let age = Utc::now() - day_ago.with_timezone(&Utc);
        assert!((86_399..=86_401).contains(&age.num_seconds()), "{age}");
        for bad in [
            "yesterday",
            "2025-01-31",
            "2025-01-31 09:00",
            "-1d",
            "5y",
            "d",
            "",
        ] {
            assert!(timestamp(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn numbers() {
        assert_eq!(days("30"), Ok(30));
        assert!(days("0").is_err());
        assert!(days("3651").is_err());
        assert_eq!(limit("1"), Ok(1));
        assert_eq!(limit("500"), Ok(500));
        assert!(limit("501").is_err());
        assert!(limit("0").is_err());
        assert!(limit("ten").is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(or_list(&["a"]), "a");
        assert_eq!(or_list(&["a", "b"]), "a or b");
        assert_eq!(or_list(&["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn argument_names() {
        assert_eq!(arg_name("--role <ROLE>"), "--role");
        assert_eq!(arg_name("<ROLE>"), "ROLE");
        assert_eq!(arg_name("--json"), "--json");
    }
}
