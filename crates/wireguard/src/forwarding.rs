//! Routing isolation of an interface: Linux must not forward packets received on it, whatever
//! the host's `net.ipv4.ip_forward`, so that peers reach this host and never each other.
//!
//! What Linux consults: for IPv4, the *input* interface's `net.ipv4.conf.<if>.forwarding`
//! (`ip_route_input_slow` refuses to forward when it is 0, answering "host unreachable"). For
//! IPv6 the per-interface `forwarding` only switches host/router behaviour; forwarding itself
//! follows `net.ipv6.conf.all.forwarding`, so the IPv6 guard is `disable_ipv6=1`, which makes
//! the interface drop every IPv6 packet it receives (the overlay is IPv4 only). Writing
//! `net.ipv4.ip_forward` (or `conf.all.forwarding`) later resets every interface's value to
//! the new one, which is why callers re-apply this periodically (see [`forwarding_enabled`]).
//!
//! Acts in the network namespace of the calling thread: `/proc/sys/net` shows the namespace of
//! the process that opens it.

use std::path::PathBuf;

use crate::error::os_error;
use crate::{validate_interface_name, Error};

/// The value each file must hold for the interface to forward nothing.
const SETTINGS: [(&str, &str, &str); 3] = [
    ("ipv4", "forwarding", "0"),
    ("ipv6", "forwarding", "0"),
    ("ipv6", "disable_ipv6", "1"),
];

/// Checks the name, also refusing `all` and `default`: those directories hold the host-wide
/// settings, not an interface's.
fn check_name(interface: &str) -> Result<(), Error> {
    validate_interface_name(interface)?;
    if interface == "all" || interface == "default" {
        return Err(Error::InvalidName {
            name: interface.to_owned(),
            reason: "names the host-wide sysctl settings",
        });
    }
    Ok(())
}

fn sysctl_path(family: &str, interface: &str, setting: &str) -> PathBuf {
    PathBuf::from(format!("/proc/sys/net/{family}/conf/{interface}/{setting}"))
}

/// Makes Linux forward no packet received on `interface` (IPv4 and IPv6). Returns whether
/// anything had to be changed. A kernel without IPv6 has nothing to change there.
pub fn disable_forwarding(interface: &str) -> Result<bool, Error> {
    check_name(interface)?;
    let mut changed = false;
    for (family, setting, wanted) in SETTINGS {
        let path = sysctl_path(family, interface, setting);
        let current = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if family == "ipv6" && err.kind() == std::io::ErrorKind::NotFound => continue,
            Err(err) => return Err(os_error(format!("reading {}", path.display()), err)),
        };
        if current.trim() != wanted {
            std::fs::write(&path, wanted)
                .map_err(|e| os_error(format!("writing {}", path.display()), e))?;
            changed = true;
        }
    }
    Ok(changed)
}

/// Whether Linux would forward IPv4 packets received on `interface` (its
/// `net.ipv4.conf.<if>.forwarding`).
pub fn forwarding_enabled(interface: &str) -> Result<bool, Error> {
    check_name(interface)?;
    let path = sysctl_path("ipv4", interface, "forwarding");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| os_error(format!("reading {}", path.display()), e))?;
    Ok(text.trim() != "0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_before_any_path_is_built() {
        assert!(matches!(
            disable_forwarding("../all"),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            disable_forwarding("all"),
            Err(Error::InvalidName { .. })
        ));
        assert!(matches!(
            forwarding_enabled(""),
            Err(Error::InvalidName { .. })
        ));
    }

    #[test]
    fn paths() {
        assert_eq!(
            sysctl_path("ipv4", "wg0", "forwarding"),
            PathBuf::from("/proc/sys/net/ipv4/conf/wg0/forwarding")
        );
    }
}
