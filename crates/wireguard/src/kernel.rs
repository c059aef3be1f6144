//! The kernel backend: a `wireguard` link created with `ip link add`, configured with `wg`
//! (wireguard-tools).
//!
//! `wg` rather than a netlink crate: the maintained Rust options either pull a second WireGuard
//! implementation and a newer compiler (defguard_wireguard_rs), pin an old netlink stack under
//! the LGPL (wireguard-control), or leave message splitting for 100,000 peers to us
//! (netlink-packet-wireguard); and none of that can be tested on hosts without the module.
//! `wg` is the reference client, batches large peer sets itself, and is the same tool an
//! operator uses by hand. Keys reach it only through stdin (`wg addconf NAME /dev/stdin`).
//!
//! Because `wg` also speaks the UAPI socket, [`KernelInterface::attach`] can manage any existing
//! interface `wg` can reach (a kernel link, or wireguard-go); the tests use it on wireguard-go.
//! For a boringtun interface use [`crate::UserspaceInterface::attach`] (or [`crate::attach`]):
//! `wg` updates peers in place, which boringtun 0.7.1 cannot do, and the socket this crate serves
//! for boringtun refuses such updates (`File exists`).

use std::fmt::Write as _;
use std::time::SystemTime;

use zeroize::Zeroize as _;

use crate::tool::WG;
use crate::uapi::handshake_time;
use crate::{ip, Backend, Error, InterfaceSpec, Peer, PeerStats, PublicKey, DEFAULT_MTU};

/// Peers per `wg set ... remove` command line (about 60 bytes each).
const REMOVE_CHUNK: usize = 1000;

/// A WireGuard interface in the kernel (or any interface `wg` can configure, via `attach`).
#[derive(Debug)]
pub struct KernelInterface {
    name: String,
    /// Created or adopted by `open`: deleted on drop. Attached interfaces are left alone.
    owned: bool,
}

impl KernelInterface {
    /// Creates the `wireguard` link (or adopts an existing one of that name, as after a crash),
    /// sets the key and port with `wg`, assigns the addresses, sets the MTU and sets the link up.
    /// Fails with [`Error::KernelModuleMissing`] when the kernel cannot create the link.
    pub fn open(spec: &InterfaceSpec) -> Result<Self, Error> {
        let name = spec.name.as_str();
        crate::validate_interface_name(name)?;
        match ip::add_link(name, "wireguard") {
            Ok(()) => {}
            Err(Error::Command { stderr, .. })
                if stderr.contains("Unknown device type") || stderr.contains("not supported") =>
            {
                return Err(Error::KernelModuleMissing(format!(
                    "`ip link add {name} type wireguard`: {stderr} (load the wireguard module or use the userspace backend)"
                )));
            }
            Err(Error::Command { stderr, .. }) if stderr.contains("File exists") => {
                match ip::link_state(name)? {
                    Some(state) if state.wireguard => {
                        tracing::info!(
                            interface = name,
                            "adopting the existing kernel WireGuard link"
                        );
                    }
                    _ => {
                        return Err(Error::InterfaceExists {
                            name: name.to_owned(),
                            detail: "a link with this name exists and is not a WireGuard link"
                                .into(),
                        })
                    }
                }
            }
            Err(err) => return Err(err),
        }
        // From here on, dropping `iface` deletes the link again.
        let iface = KernelInterface {
            name: name.to_owned(),
            owned: true,
        };
        WG.require()?;

        let mut conf = format!(
            "[Interface]\nPrivateKey = {}\n",
            spec.private_key.to_base64()
        );
        if let Some(port) = spec.listen_port.filter(|&p| p != 0) {
            let _ = writeln!(conf, "ListenPort = {port}");
        }
        let result = iface.wg(&["addconf", name, "/dev/stdin"], Some(conf.as_bytes()));
        conf.zeroize();
        if let Err(Error::Command { stderr, .. }) = &result {
            if stderr.contains("Address already in use") {
                return Err(Error::AddressInUse(spec.listen_port.unwrap_or_default()));
            }
        }
        result?;
        ip::configure(name, &spec.addresses, spec.mtu.unwrap_or(DEFAULT_MTU))?;
        tracing::info!(interface = name, public_key = %spec.private_key.public_key(), "kernel WireGuard interface up");
        Ok(iface)
    }

    /// Manages an interface that exists already and that `wg show NAME` can read; it is not
    /// deleted on drop.
    pub fn attach(name: &str) -> Result<Self, Error> {
        crate::validate_interface_name(name)?;
        let iface = KernelInterface {
            name: name.to_owned(),
            owned: false,
        };
        iface.wg(&["show", name, "listen-port"], None)?;
        Ok(iface)
    }

    /// Runs `wg`; "no such interface" becomes [`Error::InterfaceGone`].
    fn wg(&self, args: &[&str], stdin: Option<&[u8]>) -> Result<String, Error> {
        WG.run(args, stdin).map_err(|err| match err {
            Error::Command { stderr, .. }
                if stderr.contains("No such device")
                    || stderr.contains("Unable to access interface") =>
            {
                Error::InterfaceGone(format!("interface {} is gone ({stderr})", self.name))
            }
            other => other,
        })
    }
}

impl Backend for KernelInterface {
    fn interface(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> Result<PublicKey, Error> {
        let out = self.wg(&["show", &self.name, "public-key"], None)?;
        out.trim()
            .parse()
            .map_err(|_| Error::Uapi(format!("interface {} reports no public key", self.name)))
    }

    fn listen_port(&self) -> Result<u16, Error> {
        let out = self.wg(&["show", &self.name, "listen-port"], None)?;
        out.trim().parse().map_err(|_| {
            Error::Uapi(format!(
                "interface {} reports listen port {:?}",
                self.name,
                out.trim()
            ))
        })
    }

    fn set_peer(&self, peer: &Peer) -> Result<(), Error> {
        self.set_peers(std::slice::from_ref(peer))
    }

    fn set_peers(&self, peers: &[Peer]) -> Result<(), Error> {
        if peers.is_empty() {
            return Ok(());
        }
        self.wg(
            &["addconf", &self.name, "/dev/stdin"],
            Some(addconf_text(peers).as_bytes()),
        )
        .map(drop)
    }

    fn remove_peer(&self, key: &PublicKey) -> Result<(), Error> {
        self.remove_peers(std::slice::from_ref(key))
    }

    fn remove_peers(&self, keys: &[PublicKey]) -> Result<(), Error> {
        for chunk in keys.chunks(REMOVE_CHUNK) {
            let texts: Vec<String> = chunk.iter().map(PublicKey::to_base64).collect();
            let mut args: Vec<&str> = vec!["set", &self.name];
            for key in &texts {
                args.extend(["peer", key.as_str(), "remove"]);
            }
            self.wg(&args, None)?;
        }
        Ok(())
    }

    fn peers(&self) -> Result<Vec<PeerStats>, Error> {
        parse_dump(
            &self.wg(&["show", &self.name, "dump"], None)?,
            SystemTime::now(),
        )
    }

    fn check(&self) -> Result<(), Error> {
        match ip::link_state(&self.name)? {
            None => Err(Error::InterfaceGone(format!(
                "interface {} is gone (no such link in this network namespace)",
                self.name
            ))),
            Some(state) if !state.up => Err(Error::InterfaceGone(format!(
                "interface {} is down",
                self.name
            ))),
            Some(_) => self
                .wg(&["show", &self.name, "listen-port"], None)
                .map(drop),
        }
    }
}

impl Drop for KernelInterface {
    fn drop(&mut self) {
        if self.owned {
            match ip::delete_link(&self.name) {
                Ok(()) => {
                    tracing::info!(interface = %self.name, "kernel WireGuard interface deleted")
                }
                Err(err) => {
                    tracing::warn!(interface = %self.name, error = %err, "cannot delete the WireGuard link")
                }
            }
        }
    }
}

/// `wg addconf` input that upserts the peers: a `[Peer]` section replaces the peer's allowed
/// IPs (wg sets the replace flag per section), and keepalive is always stated.
pub(crate) fn addconf_text(peers: &[Peer]) -> String {
    let mut out = String::with_capacity(peers.len() * 200);
    for peer in peers {
        let _ = write!(
            out,
            "[Peer]\nPublicKey = {}\nPersistentKeepalive = {}\n",
            peer.public_key,
            peer.persistent_keepalive.unwrap_or(0)
        );
        if let Some(endpoint) = peer.endpoint {
            let _ = writeln!(out, "Endpoint = {endpoint}");
        }
        if !peer.allowed_ips.is_empty() {
            let ips: Vec<String> = peer
                .allowed_ips
                .iter()
                .map(|n| n.trunc().to_string())
                .collect();
            let _ = writeln!(out, "AllowedIPs = {}", ips.join(", "));
        }
    }
    out
}

/// Parses `wg show NAME dump`: an interface line (private key, public key, port, fwmark), then
/// one line per peer: public key, preshared key, endpoint, allowed IPs, latest handshake,
/// transfer rx, transfer tx, persistent keepalive; tab-separated, `(none)`/`off` for nothing.
pub(crate) fn parse_dump(text: &str, now: SystemTime) -> Result<Vec<PeerStats>, Error> {
    let mut peers = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        if index == 0 || line.is_empty() {
            continue;
        }
        let bad = |what: &str| Error::Uapi(format!("`wg show dump` line {}: {what}", index + 1));
        let [key, _psk, endpoint, allowed, handshake, rx, tx, _keepalive] = fields[..] else {
            return Err(bad("expected 8 tab-separated fields"));
        };
        let public_key: PublicKey = key.parse().map_err(|_| bad("bad public key"))?;
        let endpoint = match endpoint {
            "(none)" => None,
            e => Some(e.parse().map_err(|_| bad("bad endpoint"))?),
        };
        let allowed_ips = match allowed {
            "(none)" | "" => Vec::new(),
            list => list
                .split(',')
                .map(|n| n.parse::<ipnet::IpNet>().map(|n| n.trunc()))
                .collect::<Result<_, _>>()
                .map_err(|_| bad("bad allowed IP"))?,
        };
        let handshake: u64 = handshake.parse().map_err(|_| bad("bad handshake time"))?;
        peers.push(PeerStats {
            public_key,
            endpoint,
            allowed_ips,
            last_handshake: handshake_time(handshake, 0, now),
            rx_bytes: rx.parse().map_err(|_| bad("bad rx"))?,
            tx_bytes: tx.parse().map_err(|_| bad("bad tx"))?,
        });
    }
    Ok(peers)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use std::time::{Duration, UNIX_EPOCH};

    use super::*;
    use crate::config::WgQuickConfig;

    const A: &str = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";
    const B: &str = "TrMvSoP4jYQlY6RIzBgbssQqY3vxI2Pi+y71lOWWXX0=";

    #[test]
    fn parses_dump_from_kernel_and_boringtun() {
        let now = UNIX_EPOCH + Duration::from_secs(1_750_000_000);
        let text = format!(
            "(none)\t(none)\t51820\toff\n\
             {A}\t(none)\t192.0.2.1:51820\t10.0.0.2/32,fd00::2/128\t1749999940\t100\t200\t25\n\
             {B}\t(none)\t(none)\t(none)\t0\t0\t0\toff\n\
             {A}\t(none)\t[2001:db8::1]:1\t10.9.0.0/16\t7\t1\t2\toff\n"
        );
        let peers = parse_dump(&text, now).unwrap();
        assert_eq!(peers.len(), 3);
        assert_eq!(peers[0].public_key.to_string(), A);
        assert_eq!(peers[0].endpoint, Some("192.0.2.1:51820".parse().unwrap()));
        assert_eq!(peers[0].allowed_ips.len(), 2);
        assert_eq!(
            peers[0].last_handshake,
            Some(now - Duration::from_secs(60)),
            "a Unix time"
        );
        assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (100, 200));
        assert_eq!(peers[1].endpoint, None);
        assert!(peers[1].allowed_ips.is_empty());
        assert_eq!(peers[1].last_handshake, None);
        // boringtun behind wg: the "time" is an age.
        assert_eq!(peers[2].last_handshake, Some(now - Duration::from_secs(7)));
        assert!(parse_dump("iface\nnot\tenough\n", now).is_err());
    }

    #[test]
    fn addconf_text_is_what_wg_reads() {
        let peers = vec![
            Peer {
                public_key: A.parse().unwrap(),
                allowed_ips: vec![
                    "10.0.0.5/24".parse().unwrap(),
                    "fd00::2/128".parse().unwrap(),
                ],
                endpoint: Some("[2001:db8::1]:51820".parse().unwrap()),
                persistent_keepalive: Some(25),
            },
            Peer {
                public_key: B.parse().unwrap(),
                allowed_ips: vec![],
                endpoint: None,
                persistent_keepalive: None,
            },
        ];
        let text = addconf_text(&peers);
        assert_eq!(
            text,
            format!(
                "[Peer]\nPublicKey = {A}\nPersistentKeepalive = 25\nEndpoint = [2001:db8::1]:51820\nAllowedIPs = 10.0.0.0/24, fd00::2/128\n\
                 [Peer]\nPublicKey = {B}\nPersistentKeepalive = 0\n"
            )
        );
        // The same text with an [Interface] header is a valid wg-quick file with these peers.
        let file = format!(
            "[Interface]\nPrivateKey = {}\n{text}",
            crate::PrivateKey::generate().to_base64()
        );
        let parsed = WgQuickConfig::parse(&file).unwrap();
        let back: Vec<Peer> = parsed.peers.iter().map(|s| s.to_peer().unwrap()).collect();
        assert_eq!(back[1], peers[1]);
        assert_eq!(back[0].endpoint, peers[0].endpoint);
    }
}
