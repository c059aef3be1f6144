//! Argument values clap cannot check by itself (server URL, tenant slug, role, timestamps,
//! numbers in a range, device names and tags, WireGuard keys), and the one-line rendering of
//! every command-line usage error.

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};
use clap::error::{ContextKind, ContextValue, ErrorKind};
// `--server`: checked as the agent checks its own.
pub use watchgrid_clientkit::server_url::{server_url, ServerUrl};
use watchgrid_wire::{DeviceStatus, Role};

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

/// A device name, as the server accepts it: a DNS label (the Magic DNS name), 1 to 63
/// lower-case letters, digits and `-`, not starting or ending with `-`.
pub fn device_name(text: &str) -> Result<String, String> {
    if is_dns_label(text) {
        Ok(text.to_string())
    } else {
        Err(
            "expected a device name: 1-63 lower-case letters, digits and '-', not starting or \
             ending with '-'"
                .to_string(),
        )
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && !text.starts_with('-')
        && !text.ends_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `DEVICE`: a device id (a UUID) or a device name. Returned as given (an id in lower case).
pub fn device_ref(text: &str) -> Result<String, String> {
    if is_uuid(text) {
        Ok(text.to_ascii_lowercase())
    } else if is_dns_label(text) {
        Ok(text.to_string())
    } else {
        Err(
            "expected a device id or a device name (lower-case letters, digits and '-')"
                .to_string(),
        )
    }
}

/// The textual shape of a UUID: `8-4-4-4-12` hexadecimal digits.
pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// `--name` of `devices list`: part of a device name (lower-case letters, digits and `-`).
pub fn name_filter(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if valid {
        Ok(text.to_string())
    } else {
        Err("expected part of a device name: lower-case letters, digits and '-'".to_string())
    }
}

/// The most tags a device or an onboarding token may carry.
pub const MAX_TAGS: usize = 32;

/// A tag: 1 to 63 lower-case letters, digits, `-`, `_`, `.` and `:`.
pub fn tag(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 63
        && text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.:".contains(&b));
    if valid {
        Ok(text.to_string())
    } else {
        Err("expected a tag: 1-63 lower-case letters, digits, '-', '_', '.' or ':'".to_string())
    }
}

/// A list of tags given as one argument (`--set a,b`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagList(pub Vec<String>);

/// A comma-separated list of tags (`a,b`); the empty string is the empty list.
pub fn tag_list(text: &str) -> Result<TagList, String> {
    if text.is_empty() {
        return Ok(TagList(Vec::new()));
    }
    let tags = text
        .split(',')
        .map(|t| {
            tag(t).map_err(|_| {
                format!(
                    "{t:?} is not a tag: expected tags of 1-63 lower-case letters, digits, '-', \
                     '_', '.' or ':', separated by ','"
                )
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_tag_count(&tags)?;
    Ok(TagList(tags))
}

/// At most [`MAX_TAGS`] different tags.
pub fn check_tag_count(tags: &[String]) -> Result<(), String> {
    let distinct: std::collections::BTreeSet<&String> = tags.iter().collect();
    if distinct.len() > MAX_TAGS {
        return Err(format!("expected at most {MAX_TAGS} different tags"));
    }
    Ok(())
}

/// `--status` of `devices list`.
pub fn device_status(text: &str) -> Result<DeviceStatus, String> {
    DEVICE_STATUSES
        .iter()
        .find(|(name, _)| *name == text)
        .map(|(_, status)| *status)
        .ok_or_else(|| {
            let names: Vec<&str> = DEVICE_STATUSES.iter().map(|(n, _)| *n).collect();
            format!("expected {}", or_list(&names))
        })
}

/// Every device status and its name on the wire (and in the `status` query parameter).
pub const DEVICE_STATUSES: [(&str, DeviceStatus); 4] = [
    ("online", DeviceStatus::Online),
    ("offline", DeviceStatus::Offline),
    ("pending", DeviceStatus::Pending),
    ("unknown", DeviceStatus::Unknown),
];

/// The name of a device status: `online`, `offline`, `pending`, `unknown`.
pub fn status_name(status: DeviceStatus) -> &'static str {
    DEVICE_STATUSES
        .iter()
        .find(|(_, s)| *s == status)
        .map_or("unknown", |(name, _)| name)
}

/// A WireGuard public key: 32 bytes in standard base64 (44 characters, ending in `=`).
pub fn public_key(text: &str) -> Result<String, String> {
    const EXPECTED: &str =
        "expected a WireGuard public key: 32 bytes in base64, as printed by wg pubkey";
    let bytes = text.as_bytes();
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/';
    // 32 bytes are 42 full characters and one holding the last 4 bits (its low 2 bits zero),
    // then one '='.
    let valid = bytes.len() == 44
        && bytes[..43].iter().all(alphabet)
        && bytes[43] == b'='
        && b"AEIMQUYcgkosw048".contains(&bytes[42]);
    if valid {
        Ok(text.to_string())
    } else {
        Err(EXPECTED.to_string())
    }
}

/// The longest onboarding token description the server accepts.
pub const MAX_DESCRIPTION: usize = 200;

/// An onboarding token's description: at most 200 characters, no control characters.
pub fn description(text: &str) -> Result<String, String> {
    if text.chars().count() <= MAX_DESCRIPTION && !text.chars().any(char::is_control) {
        Ok(text.to_string())
    } else {
        Err(format!(
            "expected at most {MAX_DESCRIPTION} characters without control characters"
        ))
    }
}

/// How many devices may enroll with an onboarding token: 1 to 100000.
pub fn max_uses(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=100_000).contains(&n) => Ok(n),
        _ => Err("expected a whole number from 1 to 100000".to_string()),
    }
}

/// An onboarding token's lifetime in hours: 1 to 8760 (a year).
pub fn hours(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=8760).contains(&n) => Ok(n),
        _ => Err("expected a number of hours from 1 to 8760".to_string()),
    }
}

/// A Magic DNS record name relative to the tenant's zone (`www`, `_http._tcp.api`): labels of
/// lower-case letters, digits, `-` and `_`, joined by dots. Upper case is folded, as the server
/// does.
pub fn record_name(text: &str) -> Result<String, String> {
    let lower = text.to_ascii_lowercase();
    let label_ok = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    };
    if lower.len() <= 190 && lower.split('.').all(label_ok) {
        Ok(lower)
    } else {
        Err(
            "expected a record name relative to the tenant's zone, such as www or _http._tcp.api: \
             labels of a-z, 0-9, '-' and '_' joined by '.'"
                .to_string(),
        )
    }
}

/// A Magic DNS record type: A, AAAA, CNAME, TXT or SRV (any case).
pub fn record_type(text: &str) -> Result<watchgrid_wire::DnsRecordType, String> {
    text.parse()
        .map_err(|_| "expected A, AAAA, CNAME, TXT or SRV".to_string())
}

/// A record TTL in seconds: 1 to 86400.
pub fn ttl(text: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if (1..=86_400).contains(&n) => Ok(n),
        _ => Err("expected a number of seconds from 1 to 86400".to_string()),
    }
}

/// A Unix account name an SSH certificate may carry, as the server accepts it: 1-64 letters,
/// digits, `.`, `_` and `-`, not starting with `-`.
pub fn principal(text: &str) -> Result<String, String> {
    let valid = !text.is_empty()
        && text.len() <= 64
        && !text.starts_with('-')
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if valid {
        Ok(text.to_string())
    } else {
        Err(
            "expected a Unix account name: 1-64 letters, digits, '.', '_' and '-', not starting \
             with '-'"
                .to_string(),
        )
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
                Some(ContextValue::Strings(args)) => args.clone(),
                Some(ContextValue::String(arg)) => vec![arg.clone()],
                _ => vec![],
            };
            (!args.is_empty()).then(|| match alternatives(&args) {
                // A required group: `<--set <TAGS>|--add <TAG>|--remove <TAG>>`.
                Some(names) => {
                    let quoted: Vec<String> = names.iter().map(|a| format!("'{a}'")).collect();
                    let quoted: Vec<&str> = quoted.iter().map(String::as_str).collect();
                    format!("missing required argument: one of {}", or_list(&quoted))
                }
                None => {
                    let quoted: Vec<String> =
                        args.iter().map(|a| format!("'{}'", arg_name(a))).collect();
                    format!("missing required argument {}", quoted.join(", "))
                }
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

/// The names of a required group's alternatives, as clap renders the group: one argument
/// `<--set <TAGS>|--add <TAG>|--remove <TAG>>`. `None` for anything else.
fn alternatives(args: &[String]) -> Option<Vec<String>> {
    match args {
        [group] if group.contains('|') => {
            let inner = group
                .strip_prefix('<')
                .and_then(|g| g.strip_suffix('>'))
                .unwrap_or(group);
            Some(inner.split('|').map(arg_name).collect())
        }
        _ => None,
    }
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
    fn device_names() {
        for good in ["laptop", "web-01", "a", &"a".repeat(63), "0b6e1f7e"] {
            assert_eq!(device_name(good).as_deref(), Ok(good), "{good}");
        }
        for bad in [
            "",
            "-web",
            "web-",
            "Web",
            "web_01",
            "web.01",
            "my laptop",
            &"a".repeat(64),
        ] {
            assert!(device_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn device_references_are_ids_or_names() {
        assert_eq!(
            device_ref("0B6E1F7E-5D3C-4B8E-9F0A-2A1C3D4E5F60").unwrap(),
            "0b6e1f7e-5d3c-4b8e-9f0a-2a1c3d4e5f60"
        );
        assert_eq!(device_ref("laptop").unwrap(), "laptop");
        assert!(is_uuid("0b6e1f7e-5d3c-4b8e-9f0a-2a1c3d4e5f60"));
        assert!(!is_uuid("0b6e1f7e-5d3c-4b8e-9f0a-2a1c3d4e5f6"));
        assert!(!is_uuid("0b6e1f7e5d3c4b8e9f0a2a1c3d4e5f60"));
        assert!(!is_uuid("0b6e1f7e-5d3c-4b8e-9f0a-2a1c3d4e5f6g"));
        for bad in ["", "My-Laptop", "-x", "a b", "../etc"] {
            assert!(device_ref(bad).is_err(), "{bad}");
        }
        assert_eq!(name_filter("-web").unwrap(), "-web");
        assert!(name_filter("Web").is_err());
    }

    #[test]
    fn tags() {
        for good in ["prod", "site:fra-1", "team_a.b", &"t".repeat(63)] {
            assert_eq!(tag(good).as_deref(), Ok(good), "{good}");
        }
        for bad in ["", "Prod", "a b", "a,b", "x/y", &"t".repeat(64)] {
            assert!(tag(bad).is_err(), "{bad}");
        }
        assert_eq!(
            tag_list("a,site:fra").unwrap(),
            TagList(vec!["a".into(), "site:fra".into()])
        );
        assert_eq!(tag_list("").unwrap(), TagList(vec![]));
        assert!(tag_list("a,,b").is_err());
        assert!(tag_list("a,B").unwrap_err().contains("\"B\""));
        let many: Vec<String> = (0..33).map(|i| format!("t{i}")).collect();
        assert!(tag_list(&many.join(",")).is_err());
        assert!(tag_list(&many[..32].join(",")).is_ok());
        let mut repeated = many[..32].to_vec();
        repeated.push("t0".into());
        assert!(check_tag_count(&repeated).is_ok());
        assert!(check_tag_count(&many).is_err());
    }

    #[test]
    fn statuses() {
        assert_eq!(device_status("pending"), Ok(DeviceStatus::Pending));
        assert_eq!(
            device_status("up"),
            Err("expected online, offline, pending or unknown".to_string())
        );
        for (name, status) in DEVICE_STATUSES {
            assert_eq!(status_name(status), name);
        }
    }

    #[test]
    fn public_keys() {
        let key = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
        assert_eq!(public_key(key).as_deref(), Ok(key));
        for bad in [
            "",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg==",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dh=",
            "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8-g=",
            "not a key",
        ] {
            assert!(public_key(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn onboarding_numbers_and_description() {
        assert_eq!(max_uses("1"), Ok(1));
        assert_eq!(max_uses("100000"), Ok(100_000));
        assert!(max_uses("0").is_err());
        assert!(max_uses("100001").is_err());
        assert!(max_uses("-1").is_err());
        assert_eq!(hours("1"), Ok(1));
        assert_eq!(hours("8760"), Ok(8760));
        assert!(hours("0").is_err());
        assert!(hours("8761").is_err());
        assert!(hours("1.5").is_err());
        assert!(description("lab machines, batch 3").is_ok());
        assert!(description("").is_ok());
        assert!(description(&"d".repeat(200)).is_ok());
        assert!(description(&"d".repeat(201)).is_err());
        assert!(description("two\nlines").is_err());
    }

    #[test]
    fn lists() {
        assert_eq!(or_list(&["a"]), "a");
        assert_eq!(or_list(&["a", "b"]), "a or b");
        assert_eq!(or_list(&["a", "b", "c"]), "a, b or c");
    }

    #[test]
    fn group_alternatives() {
        assert_eq!(
            alternatives(&["<--set <TAGS>|--add <TAG>|--remove <TAG>>".to_string()]),
            Some(vec!["--set".into(), "--add".into(), "--remove".into()])
        );
        assert_eq!(alternatives(&["--role <ROLE>".to_string()]), None);
    }

    #[test]
    fn argument_names() {
        assert_eq!(arg_name("--role <ROLE>"), "--role");
        assert_eq!(arg_name("<ROLE>"), "ROLE");
        assert_eq!(arg_name("--json"), "--json");
    }
}
