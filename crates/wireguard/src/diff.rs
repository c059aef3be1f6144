//! `diff`: what to change on an interface so its peers become the desired ones (pure).

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;

use ipnet::IpNet;

use crate::{Peer, PeerStats, PublicKey};

/// The changes that turn an interface's actual peers into the desired ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerDiff {
    /// Peers to add or update, sorted by public key.
    pub upsert: Vec<Peer>,
    /// Peers to remove, sorted by public key.
    pub remove: Vec<PublicKey>,
}

impl PeerDiff {
    /// True when the interface already has the desired peers.
    pub fn is_empty(&self) -> bool {
        self.upsert.is_empty() && self.remove.is_empty()
    }
}

/// Compares the desired peers with what [`crate::Backend::peers`] reports.
///
/// A desired peer is upserted when it is missing, when its allowed IPs differ as a set (after
/// masking host bits, which is what every implementation stores), or when it names an endpoint
/// and the interface has another one. A desired peer without an endpoint accepts whatever
/// endpoint the interface learned from the peer's packets (roaming devices). Persistent
/// keepalive is not compared: `PeerStats` does not report it. Actual peers that are not desired
/// are removed. If `desired` names a key twice, the last entry wins.
///
/// O(n log n): one hash map over `actual`, one sort of each output.
pub fn diff(desired: &[Peer], actual: &[PeerStats]) -> PeerDiff {
    let actual_by_key: HashMap<PublicKey, &PeerStats> =
        actual.iter().map(|p| (p.public_key, p)).collect();
    let mut last_by_key: HashMap<PublicKey, &Peer> = HashMap::with_capacity(desired.len());
    for peer in desired {
        last_by_key.insert(peer.public_key, peer);
    }

    let mut upsert: Vec<Peer> = last_by_key
        .values()
        .filter(|want| match actual_by_key.get(&want.public_key) {
            None => true,
            Some(have) => {
                !same_networks(&want.allowed_ips, &have.allowed_ips)
                    || endpoint_differs(want.endpoint, have.endpoint)
            }
        })
        .map(|p| (*p).clone())
        .collect();
    upsert.sort_by_key(|p| p.public_key);

    let wanted: HashSet<&PublicKey> = last_by_key.keys().collect();
    let mut remove: Vec<PublicKey> = actual
        .iter()
        .map(|p| p.public_key)
        .filter(|k| !wanted.contains(k))
        .collect();
    remove.sort();
    remove.dedup();
    PeerDiff { upsert, remove }
}

fn endpoint_differs(want: Option<SocketAddr>, have: Option<SocketAddr>) -> bool {
    want.is_some_and(|want| !same_endpoint(want, have))
}

/// Whether the interface's endpoint is the wanted one.
pub(crate) fn same_endpoint(want: SocketAddr, have: Option<SocketAddr>) -> bool {
    have.map(canonical) == Some(canonical(want))
}

/// IPv4-mapped IPv6 endpoints (from a dual-stack socket) compare equal to the IPv4 address.
fn canonical(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// The networks as a sorted set with host bits masked.
pub(crate) fn normalized(nets: &[IpNet]) -> Vec<IpNet> {
    let mut out: Vec<IpNet> = nets.iter().map(IpNet::trunc).collect();
    out.sort();
    out.dedup();
    out
}

pub(crate) fn same_networks(a: &[IpNet], b: &[IpNet]) -> bool {
    normalized(a) == normalized(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    /// Peer `n` with allowed IPs and an optional endpoint, written compactly: "10.0.0.1/32 fd00::1/128".
    fn want(n: u8, ips: &str, endpoint: Option<&str>) -> Peer {
        Peer {
            public_key: key(n),
            allowed_ips: ips.split_whitespace().map(|s| s.parse().unwrap()).collect(),
            endpoint: endpoint.map(|e| e.parse().unwrap()),
            persistent_keepalive: None,
        }
    }

    fn have(n: u8, ips: &str, endpoint: Option<&str>) -> PeerStats {
        let p = want(n, ips, endpoint);
        PeerStats {
            public_key: p.public_key,
            endpoint: p.endpoint,
            allowed_ips: p.allowed_ips,
            last_handshake: None,
            rx_bytes: 0,
            tx_bytes: 0,
        }
    }

    /// Checks that `diff` upserts exactly the keys `up` and removes exactly the keys `rm`.
    fn check(case: &str, desired: &[Peer], actual: &[PeerStats], up: &[u8], rm: &[u8]) {
        let d = diff(desired, actual);
        let got_up: Vec<PublicKey> = d.upsert.iter().map(|p| p.public_key).collect();
        let want_up: Vec<PublicKey> = up.iter().map(|&n| key(n)).collect();
        let want_rm: Vec<PublicKey> = rm.iter().map(|&n| key(n)).collect();
        assert_eq!(got_up, want_up, "{case}: upsert");
        assert_eq!(d.remove, want_rm, "{case}: remove");
        assert_eq!(
            d.is_empty(),
            up.is_empty() && rm.is_empty(),
            "{case}: is_empty"
        );
    }

    /// (name, desired, actual, keys upserted, keys removed)
    type Case = (&'static str, Vec<Peer>, Vec<PeerStats>, Vec<u8>, Vec<u8>);

    #[test]
    fn table() {
        let e1 = Some("192.0.2.1:51820");
        let e2 = Some("192.0.2.2:51820");
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("both empty", vec![], vec![], vec![], vec![]),
            ("all new", vec![want(2, "10.0.0.2/32", None), want(1, "10.0.0.1/32", None)], vec![], vec![1, 2], vec![]),
            ("all stale", vec![], vec![have(3, "10.0.0.3/32", None), have(1, "", None)], vec![], vec![1, 3]),
            ("in sync", vec![want(1, "10.0.0.1/32", None)], vec![have(1, "10.0.0.1/32", e1)], vec![], vec![]),
            ("allowed ips changed", vec![want(1, "10.0.0.9/32", None)], vec![have(1, "10.0.0.1/32", None)], vec![1], vec![]),
            ("allowed ip added", vec![want(1, "10.0.0.1/32 fd00::1/128", None)], vec![have(1, "10.0.0.1/32", None)], vec![1], vec![]),
            ("allowed ip dropped", vec![want(1, "", None)], vec![have(1, "10.0.0.1/32", None)], vec![1], vec![]),
            ("order does not matter", vec![want(1, "fd00::1/128 10.0.0.1/32", None)], vec![have(1, "10.0.0.1/32 fd00::1/128", None)], vec![], vec![]),
            ("duplicates do not matter", vec![want(1, "10.0.0.1/32 10.0.0.1/32", None)], vec![have(1, "10.0.0.1/32", None)], vec![], vec![]),
            ("host bits are masked", vec![want(1, "10.0.0.5/24", None)], vec![have(1, "10.0.0.0/24", None)], vec![], vec![]),
            ("learned endpoint is kept", vec![want(1, "10.0.0.1/32", None)], vec![have(1, "10.0.0.1/32", e2)], vec![], vec![]),
            ("endpoint to set", vec![want(1, "10.0.0.1/32", e1)], vec![have(1, "10.0.0.1/32", None)], vec![1], vec![]),
            ("endpoint changed", vec![want(1, "10.0.0.1/32", e1)], vec![have(1, "10.0.0.1/32", e2)], vec![1], vec![]),
            ("v4-mapped endpoint is the same", vec![want(1, "10.0.0.1/32", e1)], vec![have(1, "10.0.0.1/32", Some("[::ffff:192.0.2.1]:51820"))], vec![], vec![]),
            ("last duplicate wins", vec![want(1, "10.0.0.1/32", None), want(1, "10.0.0.2/32", None)], vec![have(1, "10.0.0.2/32", None)], vec![], vec![]),
            ("mixed", vec![want(1, "10.0.0.1/32", None), want(2, "10.0.0.2/32", None), want(4, "10.0.0.4/32", None)],
                      vec![have(1, "10.0.0.1/32", None), have(2, "10.0.0.22/32", None), have(3, "10.0.0.3/32", None)],
                      vec![2, 4], vec![3]),
        ];
        for (case, desired, actual, up, rm) in &cases {
            check(case, desired, actual, up, rm);
        }
    }

    #[test]
    fn upserts_carry_the_desired_peer() {
        let desired = vec![want(1, "10.0.0.1/32", Some("192.0.2.1:1"))];
        let d = diff(&desired, &[]);
        assert_eq!(d.upsert, desired);
    }

    #[test]
    fn large_inputs_are_fast_enough() {
        // 100,000 peers, half changed: well under a second even unoptimised.
        let n: u32 = 100_000;
        let peer = |i: u32, last: u8| {
            let mut bytes = [0u8; 32];
            bytes[..4].copy_from_slice(&i.to_be_bytes());
            let [_, b, c, d] = i.to_be_bytes();
            let ip = if last == 0 {
                format!("10.{b}.{c}.{d}/32")
            } else {
                format!("11.{b}.{c}.{d}/32")
            };
            (
                PublicKey::from_bytes(bytes),
                vec![ip.parse::<IpNet>().unwrap()],
            )
        };
        let desired: Vec<Peer> = (0..n)
            .map(|i| {
                let (public_key, allowed_ips) = peer(i, 0);
                Peer {
                    public_key,
                    allowed_ips,
                    endpoint: None,
                    persistent_keepalive: None,
                }
            })
            .collect();
        let actual: Vec<PeerStats> = (0..n)
            .map(|i| {
                let (public_key, allowed_ips) = peer(i, u8::from(i % 2 == 1));
                PeerStats {
                    public_key,
                    endpoint: None,
                    allowed_ips,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                }
            })
            .collect();
        let started = std::time::Instant::now();
        let d = diff(&desired, &actual);
        assert_eq!(d.upsert.len(), 50_000);
        assert!(d.remove.is_empty());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "{:?}",
            started.elapsed()
        );
    }
}
