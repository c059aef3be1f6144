//! `set=1` requests for boringtun, checked and split before they reach its UAPI channel.
//!
//! boringtun 0.7.1 applies a `set` line by line and stops at the first line it rejects; the
//! rest of the body is then left on the stream (see `channel.rs`). [`SetRequest::parse`]
//! therefore checks every line with boringtun's own rules first (a request it would reject is
//! rejected whole, with the errno boringtun would give, and nothing is applied), and splits the
//! request so that the only lines that can still fail at run time, `listen_port` (the port is
//! taken) and `fwmark`, each end a transaction of their own.
//!
//! [`SetRequest::check_against`] refuses what would crash the device: adding a peer that
//! exists (boringtun panics, "Modifying existing peers is not yet supported", and leaves the
//! device locked) or adding a peer before the device has a private key (another panic). It
//! follows boringtun's reading of a body exactly, including its quirk that `remove=` carries
//! over to the following peer sections of the same transaction.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::str::FromStr as _;

use boringtun::device::peer::AllowedIP;

use crate::error::{EEXIST, EINVAL, EPROTO};
use crate::key::hex_decode;
use crate::uapi::DeviceState;
use crate::PublicKey;

/// A request refused before it reached the device: the errno to answer and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rejection {
    pub errno: i32,
    pub reason: String,
}

fn reject(errno: i32, reason: impl Into<String>) -> Rejection {
    Rejection {
        errno,
        reason: reason.into(),
    }
}

/// One transaction: a run of whole lines of the request body, each ending with `\n`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Transaction<'a> {
    pub body: &'a str,
    /// A single `listen_port` or `fwmark` line: the one kind of transaction that can fail.
    pub single: bool,
}

impl Transaction<'_> {
    /// The whole transaction as sent: `set=1`, the body, the closing empty line.
    pub(crate) fn text(&self) -> String {
        format!("set=1\n{}\n", self.body)
    }
}

/// A checked `set=1` request.
#[derive(Debug, Clone)]
pub(crate) struct SetRequest<'a> {
    len: usize,
    transactions: Vec<Transaction<'a>>,
    /// The request sets a private key.
    sets_key: bool,
    /// The request clears every peer first (`replace_peers=true`).
    replaces_peers: bool,
    /// The last `listen_port` it sets.
    pub listen_port: Option<u16>,
    /// Each peer section as boringtun will apply it: the key and whether it removes the peer.
    commits: Vec<(PublicKey, bool)>,
}

impl<'a> SetRequest<'a> {
    /// Checks `body` (the lines after `set=1`, each ending with `\n`, without the closing empty
    /// line) as boringtun would read it, and splits it into transactions.
    pub(crate) fn parse(body: &'a str) -> Result<Self, Rejection> {
        if !body.is_empty() && !body.ends_with('\n') {
            return Err(reject(EPROTO, "the last line has no newline"));
        }
        let mut request = SetRequest {
            len: body.len(),
            transactions: Vec::new(),
            sets_key: false,
            replaces_peers: false,
            listen_port: None,
            commits: Vec::new(),
        };
        // Start of the run of lines not yet given to a transaction.
        let mut run: Option<usize> = None;
        // Inside peer sections: the current peer, and boringtun's `remove` (never reset
        // between sections of one transaction).
        let mut peer: Option<PublicKey> = None;
        let mut remove = false;
        let mut offset = 0;
        for (number, raw) in body.split_inclusive('\n').enumerate() {
            let number = number + 1;
            let line = &raw[..raw.len() - 1];
            let start = offset;
            offset += raw.len();
            if line.is_empty() {
                return Err(reject(
                    EPROTO,
                    format!("line {number}: an empty line inside the request"),
                ));
            }
            let bad = |what: &str| reject(EINVAL, format!("line {number}: {what}"));
            if let Some(current) = peer {
                let Some((key, value)) = line.split_once('=') else {
                    return Err(reject(EPROTO, format!("line {number}: no `=`")));
                };
                match key {
                    "remove" => remove = parse_bool(value).ok_or_else(|| bad("remove"))?,
                    "preshared_key" => {
                        hex_decode(value).ok_or_else(|| bad("preshared_key: not 64 hex digits"))?;
                    }
                    "endpoint" => {
                        value
                            .parse::<SocketAddr>()
                            .map_err(|_| bad("endpoint: not an address and port"))?;
                    }
                    "persistent_keepalive_interval" => {
                        value
                            .parse::<u16>()
                            .map_err(|_| bad("persistent_keepalive_interval"))?;
                    }
                    "replace_allowed_ips" => {
                        parse_bool(value).ok_or_else(|| bad("replace_allowed_ips"))?;
                    }
                    "allowed_ip" => {
                        AllowedIP::from_str(value).map_err(|_| bad("allowed_ip"))?;
                    }
                    "protocol_version" => {
                        if value.parse::<u32>() != Ok(1) {
                            return Err(bad("protocol_version: only 1 is known"));
                        }
                    }
                    "public_key" => {
                        request.commits.push((current, remove));
                        peer = Some(parse_key(value).ok_or_else(|| bad("public_key"))?);
                    }
                    other => {
                        return Err(bad(&format!(
                            "{:?} is not a peer key boringtun knows",
                            shorten(other)
                        )))
                    }
                }
                continue;
            }
            // Interface keys: boringtun wants exactly one `=`.
            let mut parts = line.split('=');
            let (Some(key), Some(value), None) = (parts.next(), parts.next(), parts.next()) else {
                return Err(reject(
                    EPROTO,
                    format!("line {number}: not one `key=value`"),
                ));
            };
            match key {
                "private_key" => {
                    hex_decode(value).ok_or_else(|| bad("private_key: not 64 hex digits"))?;
                    request.sets_key = true;
                    run.get_or_insert(start);
                }
                "replace_peers" => {
                    if parse_bool(value).ok_or_else(|| bad("replace_peers"))? {
                        request.replaces_peers = true;
                    }
                    run.get_or_insert(start);
                }
                "listen_port" | "fwmark" => {
                    if key == "listen_port" {
                        request.listen_port =
                            Some(value.parse::<u16>().map_err(|_| bad("listen_port"))?);
                    } else {
                        value.parse::<u32>().map_err(|_| bad("fwmark"))?;
                    }
                    if let Some(run_start) = run.take() {
                        request.push(&body[run_start..start], false);
                    }
                    request.push(raw, true);
                }
                "public_key" => {
                    peer = Some(parse_key(value).ok_or_else(|| bad("public_key"))?);
                    run.get_or_insert(start);
                }
                other => {
                    return Err(bad(&format!(
                        "{:?} is not an interface key boringtun knows",
                        shorten(other)
                    )))
                }
            }
        }
        if let Some(current) = peer {
            request.commits.push((current, remove));
        }
        if let Some(run_start) = run {
            request.push(&body[run_start..], false);
        }
        Ok(request)
    }

    fn push(&mut self, body: &'a str, single: bool) {
        self.transactions.push(Transaction { body, single });
    }

    /// The transactions to send, in order.
    pub(crate) fn transactions(&self) -> &[Transaction<'a>] {
        &self.transactions
    }

    /// Bytes in the request body (its time limit grows with it).
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether there is nothing to send.
    pub(crate) fn is_empty(&self) -> bool {
        self.transactions.is_empty()
    }

    /// Whether [`check_against`](Self::check_against) needs the device's state: the request
    /// adds a peer or sets a listen port.
    pub(crate) fn needs_state(&self) -> bool {
        self.listen_port.is_some() || self.commits.iter().any(|&(_, remove)| !remove)
    }

    /// Refuses a request that would make boringtun panic, given the device's current state.
    pub(crate) fn check_against(&self, state: &DeviceState) -> Result<(), Rejection> {
        let mut peers: HashSet<PublicKey> =
            state.peers.iter().map(|p| p.stats.public_key).collect();
        if self.replaces_peers {
            peers.clear();
        }
        let has_key = self.sets_key || state.public_key.is_some();
        for &(key, remove) in &self.commits {
            if remove {
                peers.remove(&key);
            } else if !has_key {
                return Err(reject(
                    EINVAL,
                    format!("peer {key}: the interface has no private key yet"),
                ));
            } else if !peers.insert(key) {
                return Err(reject(
                    EEXIST,
                    format!(
                        "peer {key} exists: boringtun 0.7.1 cannot change a peer in place (it panics and the interface hangs); remove the peer and add it again"
                    ),
                ));
            }
        }
        Ok(())
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    value.parse().ok()
}

fn parse_key(value: &str) -> Option<PublicKey> {
    hex_decode(value).map(PublicKey::from_bytes)
}

/// A key name as it may appear in a message: at most 40 characters.
fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests fail loudly on a bad fixture")]

    use super::*;
    use crate::uapi::PeerState;
    use crate::PeerStats;

    fn key(n: u8) -> PublicKey {
        PublicKey::from_bytes([n; 32])
    }

    fn hex(n: u8) -> String {
        key(n).to_hex()
    }

    fn state(keys: &[u8], has_key: bool) -> DeviceState {
        DeviceState {
            public_key: has_key.then(|| key(200)),
            updates_in_place: false,
            listen_port: Some(51820),
            peers: keys
                .iter()
                .map(|&n| PeerState {
                    stats: PeerStats {
                        public_key: key(n),
                        endpoint: None,
                        allowed_ips: Vec::new(),
                        last_handshake: None,
                        rx_bytes: 0,
                        tx_bytes: 0,
                    },
                    persistent_keepalive: None,
                })
                .collect(),
        }
    }

    fn bodies<'a>(request: &SetRequest<'a>) -> Vec<(&'a str, bool)> {
        request
            .transactions()
            .iter()
            .map(|t| (t.body, t.single))
            .collect()
    }

    #[test]
    fn listen_port_and_fwmark_end_transactions_of_their_own() {
        let body = format!(
            "private_key={}\nlisten_port=51820\nfwmark=7\nreplace_peers=true\npublic_key={}\nallowed_ip=10.0.0.1/32\n",
            hex(1),
            hex(2)
        );
        let request = SetRequest::parse(&body).unwrap();
        let key_line = format!("private_key={}\n", hex(1));
        let rest = format!(
            "replace_peers=true\npublic_key={}\nallowed_ip=10.0.0.1/32\n",
            hex(2)
        );
        assert_eq!(
            bodies(&request),
            vec![
                (key_line.as_str(), false),
                ("listen_port=51820\n", true),
                ("fwmark=7\n", true),
                (rest.as_str(), false),
            ]
        );
        assert_eq!(request.listen_port, Some(51820));
        assert_eq!(
            request.transactions()[1].text(),
            "set=1\nlisten_port=51820\n\n"
        );
        assert_eq!(request.len(), body.len());

        // Just a port: one transaction; nothing: none.
        let port = SetRequest::parse("listen_port=0\n").unwrap();
        assert_eq!(bodies(&port), vec![("listen_port=0\n", true)]);
        assert!(SetRequest::parse("").unwrap().is_empty());
    }

    #[test]
    fn what_boringtun_would_reject_is_rejected_whole() {
        let k = hex(1);
        let cases: Vec<(String, i32)> = vec![
            ("listen_port=70000\n".into(), EINVAL),
            ("listen_port=1=2\n".into(), EPROTO),
            ("nonsense\n".into(), EPROTO),
            ("fwmark=x\n".into(), EINVAL),
            ("replace_peers=yes\n".into(), EINVAL),
            ("private_key=abc\n".into(), EINVAL),
            ("update_only=true\n".into(), EINVAL),
            (format!("public_key={k}\nupdate_only=true\n"), EINVAL),
            (format!("public_key={k}\nallowed_ip=10.0.0.1/33\n"), EINVAL),
            (format!("public_key={k}\nallowed_ip=10.0.0.1\n"), EINVAL),
            (format!("public_key={k}\nendpoint=example.com:1\n"), EINVAL),
            (format!("public_key={k}\nprotocol_version=2\n"), EINVAL),
            (format!("public_key={k}\nremove\n"), EPROTO),
            (format!("public_key={k}\nlisten_port=1\n"), EINVAL),
            (format!("public_key={k}\n\npublic_key={k}\n"), EPROTO),
            (format!("public_key={k}"), EPROTO),
            // Multi-byte characters where boringtun slices hex pairs: rejected, not a panic.
            (format!("public_key={}\n", "é".repeat(32)), EINVAL),
        ];
        for (body, errno) in cases {
            let got = SetRequest::parse(&body).unwrap_err();
            assert_eq!(got.errno, errno, "{body:?}: {}", got.reason);
        }
        // Values may hold `=` inside peer sections (boringtun splits there once).
        SetRequest::parse(&format!(
            "public_key={k}\npreshared_key={}\nendpoint=[2001:db8::1]:51820\npersistent_keepalive_interval=25\nreplace_allowed_ips=true\nallowed_ip=fd00::/64\nprotocol_version=1\n",
            hex(3)
        ))
        .unwrap();
    }

    #[test]
    fn peers_that_exist_cannot_be_added_again() {
        // `wg set wg0 peer K allowed-ips ...` on an existing peer.
        let update = format!(
            "public_key={}\nreplace_allowed_ips=true\nallowed_ip=10.0.0.9/32\n",
            hex(1)
        );
        let request = SetRequest::parse(&update).unwrap();
        assert!(request.needs_state());
        let refused = request.check_against(&state(&[1], true)).unwrap_err();
        assert_eq!(refused.errno, EEXIST);
        assert!(refused.reason.contains("in place"), "{}", refused.reason);
        request.check_against(&state(&[2], true)).unwrap();

        // Removed first, in the same transaction: fine (what this crate sends).
        let readd = format!(
            "public_key={0}\nremove=true\npublic_key={0}\nremove=false\nallowed_ip=10.0.0.9/32\n",
            hex(1)
        );
        SetRequest::parse(&readd)
            .unwrap()
            .check_against(&state(&[1], true))
            .unwrap();

        // Twice in one transaction: the second add panics boringtun too.
        let twice = format!("public_key={0}\npublic_key={0}\n", hex(5));
        assert_eq!(
            SetRequest::parse(&twice)
                .unwrap()
                .check_against(&state(&[], true))
                .unwrap_err()
                .errno,
            EEXIST
        );

        // `replace_peers=true` clears them first (`wg setconf`).
        let setconf = format!(
            "private_key={}\nreplace_peers=true\npublic_key={}\nallowed_ip=10.0.0.1/32\n",
            hex(9),
            hex(1)
        );
        SetRequest::parse(&setconf)
            .unwrap()
            .check_against(&state(&[1], false))
            .unwrap();
    }

    #[test]
    fn remove_carries_over_between_sections_as_in_boringtun() {
        // boringtun never resets `remove` between sections: peer 2 is removed too, so adding
        // nothing here, and peer 2 existing is no conflict.
        let body = format!(
            "public_key={}\nremove=true\npublic_key={}\n",
            hex(1),
            hex(2)
        );
        let request = SetRequest::parse(&body).unwrap();
        assert!(!request.needs_state());
        request.check_against(&state(&[1, 2], true)).unwrap();
    }

    #[test]
    fn no_peers_before_a_private_key() {
        let body = format!("public_key={}\nallowed_ip=10.0.0.1/32\n", hex(1));
        let request = SetRequest::parse(&body).unwrap();
        assert_eq!(
            request.check_against(&state(&[], false)).unwrap_err().errno,
            EINVAL
        );
        request.check_against(&state(&[], true)).unwrap();
        let with_key = format!("private_key={}\n{body}", hex(7));
        SetRequest::parse(&with_key)
            .unwrap()
            .check_against(&state(&[], false))
            .unwrap();
    }
}
