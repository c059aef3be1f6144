//! wg-quick configuration files: parse, render, load and save (atomically, mode 0600).
//!
//! The grammar is wg-quick's: `[Interface]` and `[Peer]` sections, `Key = Value` lines, keys
//! and section names case-insensitive, `#` starts a comment anywhere on a line, lists are
//! comma-separated and may be split over repeated keys. Keys that only wg-quick acts on
//! (`Table`, `PreUp`, `PostUp`, `PreDown`, `PostDown`, `SaveConfig`) and `FwMark` are accepted
//! and dropped, as are DNS search domains; any other unknown key is an error naming its line.
//! [`WgQuickConfig::render_stripped`] gives what `wg-quick strip` gives: the part `wg setconf`
//! accepts.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

use ipnet::IpNet;

use crate::error::io_context;
use crate::key::{PresharedKey, PrivateKey, PublicKey};
use crate::{Error, InterfaceSpec, Peer};

/// A whole wg-quick file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WgQuickConfig {
    /// The `[Interface]` section.
    pub interface: InterfaceSection,
    /// The `[Peer]` sections, in file order.
    pub peers: Vec<PeerSection>,
}

/// The `[Interface]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InterfaceSection {
    /// `PrivateKey`.
    pub private_key: PrivateKey,
    /// `ListenPort`; none means a random port.
    pub listen_port: Option<u16>,
    /// `Address` (wg-quick only): the interface's addresses with their prefix.
    pub addresses: Vec<IpNet>,
    /// `DNS` (wg-quick only): resolver addresses. Search domains are not kept.
    pub dns: Vec<IpAddr>,
    /// `MTU` (wg-quick only).
    pub mtu: Option<u16>,
}

/// One `[Peer]` section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerSection {
    /// `PublicKey`.
    pub public_key: PublicKey,
    /// `PresharedKey`.
    pub preshared_key: Option<PresharedKey>,
    /// `AllowedIPs`.
    pub allowed_ips: Vec<IpNet>,
    /// `Endpoint`: `host:port`, `[v6]:port`; the host may be a DNS name.
    pub endpoint: Option<String>,
    /// `PersistentKeepalive` in seconds; `off` and `0` are none.
    pub persistent_keepalive: Option<u16>,
}

/// Keys wg-quick accepts in `[Interface]` that this type does not keep.
const IGNORED_INTERFACE_KEYS: &[&str] = &[
    "table",
    "preup",
    "postup",
    "predown",
    "postdown",
    "saveconfig",
    "fwmark",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Interface,
    Peer,
}

/// A `[Peer]` section being read: its header line and what it has so far.
struct PeerDraft {
    line: usize,
    public_key: Option<PublicKey>,
    preshared_key: Option<PresharedKey>,
    allowed_ips: Vec<IpNet>,
    endpoint: Option<String>,
    persistent_keepalive: Option<u16>,
}

impl WgQuickConfig {
    /// Parses a wg-quick file. Errors carry the 1-based line and name the key.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let mut section = Section::None;
        let mut interface_line = None;
        let mut private_key = None;
        let mut listen_port = None;
        let mut addresses = Vec::new();
        let mut dns = Vec::new();
        let mut mtu = None;
        let mut drafts: Vec<PeerDraft> = Vec::new();

        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let content = raw.split('#').next().unwrap_or_default().trim();
            if content.is_empty() {
                continue;
            }
            if content.starts_with('[') {
                let name = content.trim_start_matches('[').trim_end_matches(']').trim();
                if !content.ends_with(']') {
                    return Err(config_error(
                        line,
                        format!("unterminated section header {content:?}"),
                    ));
                }
                if name.eq_ignore_ascii_case("interface") {
                    if interface_line.is_some() {
                        return Err(config_error(line, "a second [Interface] section"));
                    }
                    interface_line = Some(line);
                    section = Section::Interface;
                } else if name.eq_ignore_ascii_case("peer") {
                    drafts.push(PeerDraft {
                        line,
                        public_key: None,
                        preshared_key: None,
                        allowed_ips: Vec::new(),
                        endpoint: None,
                        persistent_keepalive: None,
                    });
                    section = Section::Peer;
                } else {
                    return Err(config_error(line, format!("unknown section [{name}]")));
                }
                continue;
            }
            let Some((key, value)) = content.split_once('=') else {
                return Err(config_error(
                    line,
                    format!("expected `Key = Value`, found {content:?}"),
                ));
            };
            let key = key.trim();
            let value = value.trim();
            let lower = key.to_ascii_lowercase();
            let bad = |message: String| config_error(line, format!("{key}: {message}"));
            match section {
                Section::None => {
                    return Err(config_error(line, format!("{key}: outside of any section")))
                }
                Section::Interface => match lower.as_str() {
                    "privatekey" => {
                        private_key = Some(
                            value
                                .parse::<PrivateKey>()
                                .map_err(|e| bad(e.to_string()))?,
                        )
                    }
                    "listenport" => listen_port = Some(parse_number::<u16>(value).map_err(bad)?),
                    "address" => {
                        for item in list(value) {
                            addresses.push(parse_net(item).map_err(bad)?);
                        }
                    }
                    "dns" => {
                        for item in list(value) {
                            match item.parse::<IpAddr>() {
                                Ok(ip) => dns.push(ip),
                                // wg-quick treats a non-address as a search domain.
                                Err(_) => tracing::debug!(
                                    line,
                                    domain = item,
                                    "DNS search domain not kept"
                                ),
                            }
                        }
                    }
                    "mtu" => {
                        let value = parse_number::<u16>(value).map_err(bad)?;
                        if value < 576 {
                            return Err(bad(format!("{value} is below the minimum of 576")));
                        }
                        mtu = Some(value);
                    }
                    other if IGNORED_INTERFACE_KEYS.contains(&other) => {
                        tracing::debug!(line, key, "wg-quick key not kept");
                    }
                    _ => {
                        return Err(config_error(
                            line,
                            format!("{key}: unknown key in [Interface]"),
                        ))
                    }
                },
                Section::Peer => {
                    let Some(draft) = drafts.last_mut() else {
                        return Err(config_error(line, format!("{key}: outside of any section")));
                    };
                    match lower.as_str() {
                        "publickey" => {
                            draft.public_key =
                                Some(value.parse().map_err(|e: Error| bad(e.to_string()))?)
                        }
                        "presharedkey" => {
                            draft.preshared_key =
                                Some(value.parse().map_err(|e: Error| bad(e.to_string()))?)
                        }
                        "allowedips" => {
                            for item in list(value) {
                                draft.allowed_ips.push(parse_net(item).map_err(bad)?);
                            }
                        }
                        "endpoint" => {
                            validate_endpoint(value).map_err(bad)?;
                            draft.endpoint = Some(value.to_owned());
                        }
                        "persistentkeepalive" => {
                            draft.persistent_keepalive = if value.eq_ignore_ascii_case("off") {
                                None
                            } else {
                                Some(parse_number::<u16>(value).map_err(bad)?).filter(|&s| s != 0)
                            };
                        }
                        _ => {
                            return Err(config_error(line, format!("{key}: unknown key in [Peer]")))
                        }
                    }
                }
            }
        }

        let Some(interface_line) = interface_line else {
            return Err(config_error(1, "no [Interface] section"));
        };
        let Some(private_key) = private_key else {
            return Err(config_error(
                interface_line,
                "PrivateKey: missing from [Interface]",
            ));
        };
        let mut peers = Vec::with_capacity(drafts.len());
        for draft in drafts {
            let Some(public_key) = draft.public_key else {
                return Err(config_error(draft.line, "PublicKey: missing from [Peer]"));
            };
            peers.push(PeerSection {
                public_key,
                preshared_key: draft.preshared_key,
                allowed_ips: draft.allowed_ips,
                endpoint: draft.endpoint,
                persistent_keepalive: draft.persistent_keepalive,
            });
        }
        Ok(WgQuickConfig {
            interface: InterfaceSection {
                private_key,
                listen_port,
                addresses,
                dns,
                mtu,
            },
            peers,
        })
    }

    /// The file text: wg-quick's keys in wg-quick's order. `parse(render(c)) == c`.
    pub fn render(&self) -> String {
        self.render_with(true)
    }

    /// What `wg-quick strip` prints: the file without the wg-quick-only keys (`Address`, `DNS`,
    /// `MTU`), ready for `wg setconf` / `wg addconf`.
    pub fn render_stripped(&self) -> String {
        self.render_with(false)
    }

    fn render_with(&self, wg_quick_keys: bool) -> String {
        let mut out = String::new();
        let i = &self.interface;
        out.push_str("[Interface]\n");
        let _ = writeln!(out, "PrivateKey = {}", i.private_key.to_base64());
        if let Some(port) = i.listen_port {
            let _ = writeln!(out, "ListenPort = {port}");
        }
        if wg_quick_keys {
            if !i.addresses.is_empty() {
                let _ = writeln!(out, "Address = {}", join(&i.addresses));
            }
            if !i.dns.is_empty() {
                let _ = writeln!(out, "DNS = {}", join(&i.dns));
            }
            if let Some(mtu) = i.mtu {
                let _ = writeln!(out, "MTU = {mtu}");
            }
        }
        for peer in &self.peers {
            out.push_str("\n[Peer]\n");
            let _ = writeln!(out, "PublicKey = {}", peer.public_key);
            if let Some(psk) = &peer.preshared_key {
                let _ = writeln!(out, "PresharedKey = {}", psk.to_base64());
            }
            if !peer.allowed_ips.is_empty() {
                let _ = writeln!(out, "AllowedIPs = {}", join(&peer.allowed_ips));
            }
            if let Some(endpoint) = &peer.endpoint {
                let _ = writeln!(out, "Endpoint = {endpoint}");
            }
            if let Some(keepalive) = peer.persistent_keepalive {
                let _ = writeln!(out, "PersistentKeepalive = {keepalive}");
            }
        }
        out
    }

    /// Reads and parses a file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = fs::read_to_string(path)
            .map_err(|e| io_context(format!("reading {}", path.display()), e))?;
        Self::parse(&text)
    }

    /// Writes the file atomically (a temporary file in the same directory, fsync, rename), mode
    /// 0600. A missing parent directory is created with mode 0700.
    pub fn save(&self, path: &Path) -> Result<(), Error> {
        write_secret_file(path, self.render().as_bytes())
    }
}

impl PeerSection {
    /// The endpoint resolved to one socket address (a DNS lookup for a host name: blocking).
    pub fn resolve_endpoint(&self) -> Result<Option<SocketAddr>, Error> {
        let Some(endpoint) = &self.endpoint else {
            return Ok(None);
        };
        let failed = |message: String| Error::Endpoint {
            endpoint: endpoint.clone(),
            message,
        };
        let mut addrs = endpoint
            .to_socket_addrs()
            .map_err(|e| failed(e.to_string()))?;
        addrs
            .next()
            .map(Some)
            .ok_or_else(|| failed("no address".to_owned()))
    }

    /// The peer for a [`crate::Backend`], resolving the endpoint. The preshared key is not part
    /// of [`Peer`].
    pub fn to_peer(&self) -> Result<Peer, Error> {
        Ok(Peer {
            public_key: self.public_key,
            allowed_ips: self.allowed_ips.clone(),
            endpoint: self.resolve_endpoint()?,
            persistent_keepalive: self.persistent_keepalive,
        })
    }
}

impl From<&Peer> for PeerSection {
    fn from(peer: &Peer) -> Self {
        PeerSection {
            public_key: peer.public_key,
            preshared_key: None,
            allowed_ips: peer.allowed_ips.clone(),
            endpoint: peer.endpoint.map(|e| e.to_string()),
            persistent_keepalive: peer.persistent_keepalive,
        }
    }
}

impl InterfaceSpec {
    /// The spec for bringing up interface `name` as an `[Interface]` section describes it.
    pub fn from_section(name: impl Into<String>, section: &InterfaceSection) -> Self {
        InterfaceSpec {
            name: name.into(),
            private_key: section.private_key.clone(),
            listen_port: section.listen_port,
            addresses: section.addresses.clone(),
            mtu: section.mtu,
        }
    }
}

/// Writes `contents` to `path` atomically with mode 0600, creating a missing parent with 0700.
pub(crate) fn write_secret_file(path: &Path, contents: &[u8]) -> Result<(), Error> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !parent.exists() {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| io_context(format!("creating {}", parent.display()), e))?;
    }
    let file_name = path.file_name().ok_or_else(|| {
        Error::Io(std::io::Error::other(format!(
            "{} names no file",
            path.display()
        )))
    })?;
    let tmp = parent.join(format!(
        ".{}.tmp.{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(|e| io_context(format!("creating {}", tmp.display()), e))?;
        // A leftover temporary file from a crash may have another mode: set it explicitly.
        use std::os::unix::fs::PermissionsExt as _;
        file.set_permissions(fs::Permissions::from_mode(0o600))
            .map_err(|e| io_context(format!("chmod {}", tmp.display()), e))?;
        file.write_all(contents)
            .map_err(|e| io_context(format!("writing {}", tmp.display()), e))?;
        file.sync_all()
            .map_err(|e| io_context(format!("syncing {}", tmp.display()), e))?;
        fs::rename(&tmp, path)
            .map_err(|e| io_context(format!("renaming into {}", path.display()), e))?;
        if let Ok(dir) = fs::File::open(parent) {
            let _ = dir.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn config_error(line: usize, message: impl Into<String>) -> Error {
    Error::Config {
        line,
        message: message.into(),
    }
}

fn list(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|s| !s.is_empty())
}

fn join<T: std::fmt::Display>(items: &[T]) -> String {
    items
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn parse_number<T: std::str::FromStr>(value: &str) -> Result<T, String> {
    value
        .parse::<T>()
        .map_err(|_| format!("{value:?} is not a valid number"))
}

/// An address with or without a prefix length; a bare address is a host route (/32, /128).
fn parse_net(item: &str) -> Result<IpNet, String> {
    if let Ok(net) = item.parse::<IpNet>() {
        return Ok(net);
    }
    item.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{item:?} is not an address or network"))
}

/// `host:port` or `[v6]:port` with a non-empty host and a numeric port.
fn validate_endpoint(value: &str) -> Result<(), String> {
    let (host, port) = if let Some(rest) = value.strip_prefix('[') {
        let (host, after) = rest
            .split_once(']')
            .ok_or_else(|| format!("{value:?} has no closing `]`"))?;
        let port = after
            .strip_prefix(':')
            .ok_or_else(|| format!("{value:?} has no port"))?;
        host.parse::<std::net::Ipv6Addr>()
            .map_err(|_| format!("{host:?} is not an IPv6 address"))?;
        (host, port)
    } else {
        let (host, port) = value
            .rsplit_once(':')
            .ok_or_else(|| format!("{value:?} has no port"))?;
        if host.contains(':') {
            return Err(format!(
                "{value:?}: write an IPv6 endpoint as [address]:port"
            ));
        }
        (host, port)
    };
    if host.is_empty() {
        return Err(format!("{value:?} has no host"));
    }
    port.parse::<u16>()
        .map_err(|_| format!("{port:?} is not a port"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;

    const PRIVATE: &str = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
    const PEER_A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const PEER_B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";
    const PSK: &str = "E2mW9X+fOsU4vhHdmsVqGpEWTpsAWSlBRtXqrYcKTyY=";

    const REALISTIC: &str = "\
# Watchgrid device tunnel, written by hand
[Interface]
PrivateKey = yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=
ListenPort = 51820   # fixed so the firewall rule matches
Address = 10.100.0.5/16, fd00:100::5/64
Address = 10.101.0.5
DNS = 10.100.0.1, fd00:100::1, corp.example
MTU = 1380
Table = off
PostUp = iptables -A FORWARD -i %i -j ACCEPT; ip rule add pref 100 table main
PostDown = iptables -D FORWARD -i %i -j ACCEPT
SaveConfig = false
FwMark = 0x1234

[Peer]
# the hub
PublicKey = xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=
PresharedKey = E2mW9X+fOsU4vhHdmsVqGpEWTpsAWSlBRtXqrYcKTyY=
AllowedIPs = 10.100.0.0/16,fd00:100::/64
AllowedIPs = 192.0.2.7
Endpoint = hub.example.com:51820
PersistentKeepalive = 25

[peer]
publickey=TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=
endpoint=[2001:db8::1]:443
persistentkeepalive = off
";

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn parses_a_realistic_file() {
        let config = WgQuickConfig::parse(REALISTIC).unwrap();
        let i = &config.interface;
        assert_eq!(i.private_key.to_base64(), PRIVATE);
        assert_eq!(i.listen_port, Some(51820));
        assert_eq!(
            i.addresses,
            vec![
                net("10.100.0.5/16"),
                net("fd00:100::5/64"),
                net("10.101.0.5/32")
            ]
        );
        assert_eq!(
            i.dns,
            vec![
                "10.100.0.1".parse::<IpAddr>().unwrap(),
                "fd00:100::1".parse().unwrap()
            ]
        );
        assert_eq!(i.mtu, Some(1380));
        assert_eq!(config.peers.len(), 2);
        let hub = &config.peers[0];
        assert_eq!(hub.public_key.to_string(), PEER_A);
        assert_eq!(hub.preshared_key.as_ref().unwrap().to_base64(), PSK);
        assert_eq!(
            hub.allowed_ips,
            vec![
                net("10.100.0.0/16"),
                net("fd00:100::/64"),
                net("192.0.2.7/32")
            ]
        );
        assert_eq!(hub.endpoint.as_deref(), Some("hub.example.com:51820"));
        assert_eq!(hub.persistent_keepalive, Some(25));
        let second = &config.peers[1];
        assert_eq!(second.public_key.to_string(), PEER_B);
        assert!(second.allowed_ips.is_empty());
        assert_eq!(second.endpoint.as_deref(), Some("[2001:db8::1]:443"));
        assert_eq!(second.persistent_keepalive, None);
    }

    #[test]
    fn render_round_trips() {
        let config = WgQuickConfig::parse(REALISTIC).unwrap();
        let text = config.render();
        assert_eq!(WgQuickConfig::parse(&text).unwrap(), config);
        // Rendering is canonical: a second round renders the same text.
        assert_eq!(WgQuickConfig::parse(&text).unwrap().render(), text);
        assert!(text.starts_with("[Interface]\nPrivateKey = "), "{text}");
        assert!(
            text.contains("Address = 10.100.0.5/16, fd00:100::5/64, 10.101.0.5/32\n"),
            "{text}"
        );
        assert!(
            !text.contains("PostUp"),
            "wg-quick-only hooks are not kept: {text}"
        );

        let stripped = config.render_stripped();
        for gone in ["Address", "DNS", "MTU"] {
            assert!(!stripped.contains(gone), "{gone} in {stripped}");
        }
        let reparsed = WgQuickConfig::parse(&stripped).unwrap();
        assert_eq!(reparsed.peers, config.peers);
        assert!(reparsed.interface.addresses.is_empty());
    }

    #[test]
    fn minimal_file_round_trips() {
        let config = WgQuickConfig {
            interface: InterfaceSection {
                private_key: PrivateKey::generate(),
                listen_port: None,
                addresses: vec![],
                dns: vec![],
                mtu: None,
            },
            peers: vec![],
        };
        let text = config.render();
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(WgQuickConfig::parse(&text).unwrap(), config);
    }

    /// (file, expected line, expected words in the message)
    fn check_error(text: &str, line: usize, words: &[&str]) {
        match WgQuickConfig::parse(text) {
            Err(Error::Config { line: got, message }) => {
                assert_eq!(got, line, "{text:?}: {message}");
                for word in words {
                    assert!(
                        message.contains(word),
                        "{text:?}: {message:?} lacks {word:?}"
                    );
                }
            }
            other => panic!("{text:?}: expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let iface = format!("[Interface]\nPrivateKey = {PRIVATE}\n");
        check_error("", 1, &["no [Interface]"]);
        check_error("PrivateKey = x\n", 1, &["PrivateKey", "outside"]);
        check_error(
            "[Interface]\nListenPort = 1\n",
            1,
            &["PrivateKey", "missing"],
        );
        check_error(
            &format!("{iface}ListenPort = 70000\n"),
            3,
            &["ListenPort", "70000"],
        );
        check_error(&format!("{iface}ListenPort = \n"), 3, &["ListenPort"]);
        check_error(
            &format!("{iface}Address = 10.0.0.1/33\n"),
            3,
            &["Address", "10.0.0.1/33"],
        );
        check_error(&format!("{iface}MTU = 100\n"), 3, &["MTU", "576"]);
        check_error(&format!("{iface}Bogus = 1\n"), 3, &["Bogus", "unknown"]);
        check_error(&format!("{iface}just words\n"), 3, &["Key = Value"]);
        check_error(&format!("{iface}[Peers]\n"), 3, &["unknown section"]);
        check_error(&format!("{iface}[Peer\n"), 3, &["section header"]);
        check_error(
            &format!("{iface}\n[Interface]\n"),
            4,
            &["second [Interface]"],
        );
        check_error(
            &format!("{iface}\n[Peer]\nAllowedIPs = 10.0.0.0/8\n"),
            4,
            &["PublicKey", "missing"],
        );
        check_error(
            &format!("{iface}[Peer]\nPublicKey = nope\n"),
            4,
            &["PublicKey", "invalid key"],
        );
        check_error(
            &format!("{iface}[Peer]\nPublicKey = {PEER_A}\nEndpoint = host\n"),
            5,
            &["Endpoint", "no port"],
        );
        check_error(
            &format!("{iface}[Peer]\nPublicKey = {PEER_A}\nEndpoint = ::1:51820\n"),
            5,
            &["Endpoint", "[address]:port"],
        );
        check_error(
            &format!("{iface}[Peer]\nPublicKey = {PEER_A}\nEndpoint = h:x\n"),
            5,
            &["Endpoint", "port"],
        );
        check_error(
            &format!("{iface}[Peer]\nPublicKey = {PEER_A}\nPersistentKeepalive = soon\n"),
            5,
            &["PersistentKeepalive"],
        );
        check_error(
            &format!("{iface}[Peer]\nPublicKey = {PEER_A}\nPostUp = true\n"),
            5,
            &["PostUp", "unknown key in [Peer]"],
        );
        // A bad private key is reported without repeating it.
        let secretish = "c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2VjcmV0c2U"; // 43 characters
        match WgQuickConfig::parse(&format!("[Interface]\nPrivateKey = {secretish}\n")) {
            Err(err @ Error::Config { line: 2, .. }) => {
                assert!(!err.to_string().contains(secretish), "{err}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn keepalive_zero_is_off() {
        let text = format!("[Interface]\nPrivateKey = {PRIVATE}\n[Peer]\nPublicKey = {PEER_A}\nPersistentKeepalive = 0\n");
        assert_eq!(
            WgQuickConfig::parse(&text).unwrap().peers[0].persistent_keepalive,
            None
        );
    }

    #[test]
    fn save_is_private_and_atomic() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/deeper/wg0.conf");
        let config = WgQuickConfig::parse(REALISTIC).unwrap();
        config.save(&path).unwrap();
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("nested/deeper")), 0o700);
        assert_eq!(mode(&dir.path().join("nested")), 0o700);
        assert_eq!(WgQuickConfig::load(&path).unwrap(), config);

        // Overwriting replaces the file and leaves no temporary file behind.
        let mut changed = config.clone();
        changed.interface.listen_port = Some(1);
        changed.save(&path).unwrap();
        assert_eq!(WgQuickConfig::load(&path).unwrap(), changed);
        let names: Vec<_> = fs::read_dir(dir.path().join("nested/deeper"))
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("wg0.conf")]);

        match WgQuickConfig::load(&dir.path().join("missing.conf")) {
            Err(Error::Io(e)) => assert!(e.to_string().contains("missing.conf"), "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn peer_conversions() {
        let peer = Peer {
            public_key: PEER_A.parse().unwrap(),
            allowed_ips: vec![net("10.0.0.2/32")],
            endpoint: Some("192.0.2.1:51820".parse().unwrap()),
            persistent_keepalive: Some(25),
        };
        let section = PeerSection::from(&peer);
        assert_eq!(section.endpoint.as_deref(), Some("192.0.2.1:51820"));
        assert_eq!(section.to_peer().unwrap(), peer);
        let v6 = PeerSection {
            endpoint: Some("[::1]:1".into()),
            ..section.clone()
        };
        assert_eq!(
            v6.resolve_endpoint().unwrap(),
            Some("[::1]:1".parse().unwrap())
        );
        let none = PeerSection {
            endpoint: None,
            ..section
        };
        assert_eq!(none.resolve_endpoint().unwrap(), None);
    }
}
