//! All of this crate's use of iproute2 (`ip`): links, addresses, MTU, link state and routes.
//!
//! Every function acts in the network namespace of the calling thread (the `ip` child process
//! inherits it). `ip` rather than a netlink crate: a handful of calls at start-up and in health
//! checks do not justify a netlink stack, and the commands are easy to replay by hand.

use ipnet::IpNet;

use crate::tool::IP;
use crate::Error;

/// What `ip link show` says about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LinkState {
    /// Administratively up (the `UP` flag).
    pub up: bool,
    /// The link kind is `wireguard` (a kernel WireGuard link).
    pub wireguard: bool,
}

/// The link's state, or none if there is no such link in this namespace.
pub(crate) fn link_state(name: &str) -> Result<Option<LinkState>, Error> {
    match IP.run(&["-o", "-d", "link", "show", "dev", name], None) {
        Ok(out) => Ok(Some(parse_link_state(&out))),
        Err(Error::Command { stderr, .. }) if stderr.contains("does not exist") => Ok(None),
        Err(err) => Err(err),
    }
}

fn parse_link_state(out: &str) -> LinkState {
    let flags = out
        .split_once('<')
        .and_then(|(_, rest)| rest.split_once('>'))
        .map(|(flags, _)| flags)
        .unwrap_or("");
    LinkState {
        up: flags.split(',').any(|f| f == "UP"),
        wireguard: out
            .split('\\')
            .any(|segment| segment.split_whitespace().next() == Some("wireguard")),
    }
}

/// `ip link add NAME type KIND`.
pub(crate) fn add_link(name: &str, kind: &str) -> Result<(), Error> {
    IP.run(&["link", "add", name, "type", kind], None).map(drop)
}

/// `ip link del NAME`.
pub(crate) fn delete_link(name: &str) -> Result<(), Error> {
    IP.run(&["link", "del", name], None).map(drop)
}

/// Assigns the addresses (replacing any others), sets the MTU and sets the link up.
pub(crate) fn configure(name: &str, addresses: &[IpNet], mtu: u16) -> Result<(), Error> {
    IP.run(&["address", "flush", "dev", name], None)?;
    for address in addresses {
        IP.run(&["address", "add", &address.to_string(), "dev", name], None)?;
    }
    IP.run(
        &["link", "set", "dev", name, "mtu", &mtu.to_string(), "up"],
        None,
    )
    .map(drop)
}

/// Routes `net` through `interface` (`ip route replace NET dev INTERFACE`), as wg-quick does for
/// a peer's allowed IPs that the interface's own addresses do not cover. Idempotent.
pub fn add_route(interface: &str, net: &IpNet) -> Result<(), Error> {
    crate::validate_interface_name(interface)?;
    IP.run(
        &[
            "route",
            "replace",
            &net.trunc().to_string(),
            "dev",
            interface,
        ],
        None,
    )
    .map(drop)
}

/// Removes a route added with [`add_route`]; a route that is not there is not an error.
pub fn delete_route(interface: &str, net: &IpNet) -> Result<(), Error> {
    crate::validate_interface_name(interface)?;
    match IP.run(
        &["route", "del", &net.trunc().to_string(), "dev", interface],
        None,
    ) {
        Ok(_) => Ok(()),
        Err(Error::Command { stderr, .. })
            if stderr.contains("No such process") || stderr.contains("does not exist") =>
        {
            Ok(())
        }
        Err(err) => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_link_show() {
        let tun = "2: wg7: <NO-CARRIER,POINTOPOINT,MULTICAST,NOARP,UP> mtu 1420 qdisc mq state DOWN mode DEFAULT group default qlen 500\\    link/none  promiscuity 0 \\    tun type tun pi off vnet_hdr off multi_queue numqueues 0 persist off addrgenmode eui64";
        assert_eq!(
            parse_link_state(tun),
            LinkState {
                up: true,
                wireguard: false
            }
        );
        let wg = "5: wg0: <POINTOPOINT,NOARP> mtu 1420 qdisc noop state DOWN mode DEFAULT group default qlen 1000\\    link/none  promiscuity 0 \\    wireguard addrgenmode none numtxqueues 1";
        assert_eq!(
            parse_link_state(wg),
            LinkState {
                up: false,
                wireguard: true
            }
        );
        let lower_up_only = "3: x: <LOWER_UP> mtu 1500";
        assert!(!parse_link_state(lower_up_only).up);
    }
}
