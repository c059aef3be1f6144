//! Facts about the host the agent reports: hostname, operating system, kernel release and
//! uptime, read from `/proc` and `/etc/os-release`. The parsers are pure functions so they can
//! be tested on sample text.

use std::fs;

/// The agent's version, sent at enrollment and in every heartbeat.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What `enroll` and every heartbeat say about the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostFacts {
    pub hostname: String,
    pub os: String,
    pub kernel: Option<String>,
}

impl HostFacts {
    /// Read the facts of this host. Missing files give fallbacks, never an error: a heartbeat
    /// is worth more than a precise OS name.
    pub fn read() -> HostFacts {
        let kernel = read_trimmed("/proc/sys/kernel/osrelease");
        let os = ["/etc/os-release", "/usr/lib/os-release"]
            .iter()
            .find_map(|path| fs::read_to_string(path).ok())
            .and_then(|text| os_release_name(&text))
            .unwrap_or_else(|| {
                // What `uname -sr` says.
                let system =
                    read_trimmed("/proc/sys/kernel/ostype").unwrap_or_else(|| "Linux".into());
                match &kernel {
                    Some(release) => format!("{system} {release}"),
                    None => system,
                }
            });
        let hostname = read_trimmed("/proc/sys/kernel/hostname")
            .or_else(|| read_trimmed("/etc/hostname"))
            .unwrap_or_else(|| "localhost".into());
        HostFacts {
            hostname,
            os,
            kernel,
        }
    }
}

/// Seconds since boot, from `/proc/uptime`; 0 when it cannot be read.
pub fn uptime_secs() -> u64 {
    fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|text| parse_uptime(&text))
        .unwrap_or(0)
}

fn read_trimmed(path: &str) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

/// `/proc/uptime` is `12345.67 54321.00`: the first number, in whole seconds.
pub fn parse_uptime(text: &str) -> Option<u64> {
    let first = text.split_whitespace().next()?;
    let whole = first.split('.').next()?;
    whole.parse().ok()
}

/// The OS name of an os-release file: `PRETTY_NAME`, else `NAME VERSION`, else `NAME`.
pub fn os_release_name(text: &str) -> Option<String> {
    let mut pretty = None;
    let mut name = None;
    let mut version = None;
    for line in text.lines() {
        let Some((key, value)) = os_release_line(line) else {
            continue;
        };
        let slot = match key {
            "PRETTY_NAME" => &mut pretty,
            "NAME" => &mut name,
            "VERSION" => &mut version,
            _ => continue,
        };
        if !value.is_empty() {
            *slot = Some(value);
        }
    }
    pretty.or_else(|| match (name, version) {
        (Some(name), Some(version)) => Some(format!("{name} {version}")),
        (name, _) => name,
    })
}

/// One `KEY=value` line of os-release(5): the value unquoted (double quotes with backslash
/// escapes, single quotes verbatim, or bare). Comments, blank and malformed lines are `None`.
fn os_release_line(line: &str) -> Option<(&str, String)> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (key, raw) = line.split_once('=')?;
    if key.is_empty() || !key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    let value = if let Some(inner) = raw.strip_prefix('"') {
        let mut value = String::new();
        let mut chars = inner.chars();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => value.push(chars.next()?),
                c => value.push(c),
            }
        }
        value
    } else if let Some(inner) = raw.strip_prefix('\'') {
        inner.split_once('\'')?.0.to_string()
    } else {
        raw.to_string()
    };
    // Never let a hostile file put control characters into a log line or the dashboard.
    let value: String = value.chars().filter(|c| !c.is_control()).collect();
    Some((key, value.trim().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Option<&str>) {
        assert_eq!(os_release_name(text).as_deref(), expected, "{text:?}");
    }

    #[test]
    fn os_release_names() {
        check(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\n\
             VERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nID=debian\n",
            Some("Debian GNU/Linux 12 (bookworm)"),
        );
        check(
            "# comment\n\nNAME=Alpine\nVERSION='3.19 edge'\n",
            Some("Alpine 3.19 edge"),
        );
        check("NAME=\"Fedora Linux\"\n", Some("Fedora Linux"));
        check(
            "PRETTY_NAME=\"Say \\\"hi\\\" \\\\ \\$HOME\"\n",
            Some("Say \"hi\" \\ $HOME"),
        );
        check("PRETTY_NAME=''\nNAME=Arch\n", Some("Arch"));
        check(
            "  PRETTY_NAME=\"Ubuntu 24.04 LTS\"  \r\n",
            Some("Ubuntu 24.04 LTS"),
        );
        check("PRETTY_NAME=\"unterminated\nNAME=Gentoo\n", Some("Gentoo"));
        check("PRETTY_NAME=\"bell\u{7}\"\n", Some("bell"));
        check("ID=debian\nnot a line\n=x\n", None);
        check("", None);
    }

    #[test]
    fn uptimes() {
        for (text, expected) in [
            ("12345.67 54321.00\n", Some(12345)),
            ("0.50 0.10", Some(0)),
            ("350735\n", Some(350_735)),
            ("", None),
            ("abc 1", None),
        ] {
            assert_eq!(parse_uptime(text), expected, "{text:?}");
        }
    }

    #[test]
    fn this_host_has_facts() {
        let facts = HostFacts::read();
        assert!(!facts.hostname.is_empty());
        assert!(!facts.os.is_empty());
    }
}
