//! Device addresses and credentials from an index. Every address in `127.0.0.0/8` is on the
//! loopback interface, so an overlay inside it (`127.64.0.0/10` by default) lets the load
//! generator connect *from* each device's overlay address, which is how the server
//! authenticates a heartbeat (TCP peer address == the device's overlay address).

use std::net::Ipv4Addr;

use anyhow::{bail, Result};
use sha2::{Digest, Sha256};

/// The default overlay: on loopback, and clear of `127.0.0.1`.
pub const DEFAULT_OVERLAY: &str = "127.64.0.0/10";

/// An IPv4 network, `a.b.c.d/len`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overlay {
    network: u32,
    prefix_len: u8,
}

impl std::str::FromStr for Overlay {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let (ip, len) = text
            .split_once('/')
            .ok_or_else(|| format!("{text:?} is not a network like 127.64.0.0/10"))?;
        let ip: Ipv4Addr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| (8..=29).contains(l))
            .ok_or_else(|| format!("prefix length {len:?} must be 8 to 29"))?;
        let mask = u32::MAX << (32 - prefix_len);
        let network = u32::from(ip) & mask;
        if Ipv4Addr::from(network).octets()[0] != 127 {
            return Err(format!(
                "{text} is not inside 127.0.0.0/8: the load generator can only bind loopback addresses"
            ));
        }
        Ok(Overlay {
            network,
            prefix_len,
        })
    }
}

impl std::fmt::Display for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", Ipv4Addr::from(self.network), self.prefix_len)
    }
}

impl Overlay {
    /// The server's address: the network's first host.
    pub fn server_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    /// How many devices fit: every host after the server's, short of the broadcast address.
    pub fn capacity(&self) -> u32 {
        (1u32 << (32 - self.prefix_len)) - 3
    }

    /// Device `index`'s address: the server's plus `1 + index` (device 0 is `.2`), exactly
    /// where the server's allocator would put the `index`-th registration.
    pub fn device_ip(&self, index: u32) -> Result<Ipv4Addr> {
        if index >= self.capacity() {
            bail!(
                "device {index} does not fit in {self} ({} addresses for devices)",
                self.capacity()
            );
        }
        Ok(Ipv4Addr::from(self.network + 2 + index))
    }
}

/// Device `index`'s agent credential in this run (`wgd_` like the server's own).
pub fn credential(run: &str, index: u32) -> String {
    format!("wgd_bench{run}_{index}")
}

/// What `devices.credential_hash` stores: SHA-256 of the whole credential.
pub fn credential_hash(credential: &str) -> Vec<u8> {
    Sha256::digest(credential.as_bytes()).to_vec()
}

/// A unique 44-character stand-in for device `index`'s WireGuard public key (the benchmark
/// runs with `WATCHGRID_WG_BACKEND=none`, so nothing decodes it).
pub fn public_key(index: u32) -> String {
    format!("bench{index:038}=")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_follow_the_index() {
        let overlay: Overlay = DEFAULT_OVERLAY.parse().unwrap();
        assert_eq!(overlay.server_ip(), Ipv4Addr::new(127, 64, 0, 1));
        assert_eq!(overlay.device_ip(0).unwrap(), Ipv4Addr::new(127, 64, 0, 2));
        assert_eq!(
            overlay.device_ip(253).unwrap(),
            Ipv4Addr::new(127, 64, 0, 255)
        );
        assert_eq!(
            overlay.device_ip(254).unwrap(),
            Ipv4Addr::new(127, 64, 1, 0)
        );
        assert_eq!(
            overlay.device_ip(99_999).unwrap(),
            Ipv4Addr::new(127, 65, 134, 161)
        );
        assert_eq!(overlay.capacity(), (1 << 22) - 3);
        let last = overlay.device_ip(overlay.capacity() - 1).unwrap();
        assert_eq!(
            last,
            Ipv4Addr::new(127, 127, 255, 254),
            "the broadcast is never used"
        );
        assert!(overlay.device_ip(overlay.capacity()).is_err());
    }

    #[test]
    fn overlays_must_be_loopback_networks() {
        let small: Overlay = "127.9.9.9/29".parse().unwrap();
        assert_eq!(small.to_string(), "127.9.9.8/29");
        assert_eq!(small.capacity(), 5);
        assert_eq!(small.device_ip(4).unwrap(), Ipv4Addr::new(127, 9, 9, 14));
        assert!(small.device_ip(5).is_err());
        for bad in [
            "100.64.0.0/10",
            "127.0.0.0",
            "127.0.0.0/30",
            "127.0.0.0/7",
            "x/10",
        ] {
            assert!(bad.parse::<Overlay>().is_err(), "{bad}");
        }
    }

    #[test]
    fn credentials_are_per_device_and_hashed_like_the_server() {
        assert_eq!(credential("ab", 7), "wgd_benchab_7");
        assert_ne!(credential("ab", 7), credential("ab", 8));
        // SHA-256("abc")
        assert_eq!(credential_hash("abc")[..4], [0xba, 0x78, 0x16, 0xbf],);
        assert_eq!(credential_hash("abc").len(), 32);
        assert_eq!(public_key(5).len(), 44);
        assert_ne!(public_key(5), public_key(50));
    }
}
