//! The kernel backend: a `wireguard` link created with `ip link add` (which also loads the
//! module on demand), configured and read over generic netlink (`crate::netlink`).
//!
//! Netlink rather than `wg(8)`: no process per change, a typed errno for every refusal, and the
//! socket stays bound to the network namespace the interface was opened in, whichever thread
//! calls later. Links and addresses still go through `ip`, as for the userspace backend
//! (`crate::ip`).
//!
//! For a userspace interface (boringtun, wireguard-go) use [`crate::UserspaceInterface::attach`]
//! (or [`crate::attach`]), which speaks the UAPI socket.

use crate::netlink::{DeviceUpdate, WireguardNetlink};
use crate::{ip, Backend, Error, InterfaceSpec, Peer, PeerStats, PublicKey, DEFAULT_MTU};

/// A WireGuard interface in the kernel.
#[derive(Debug)]
pub struct KernelInterface {
    name: String,
    netlink: WireguardNetlink,
    /// Created or adopted by `open`: deleted on drop. Attached interfaces are left alone.
    owned: bool,
}

impl KernelInterface {
    /// Creates the `wireguard` link (or adopts an existing one of that name, as after a crash),
    /// sets the key and port over netlink, assigns the addresses, sets the MTU and sets the
    /// link up. Fails with [`Error::KernelModuleMissing`] when the kernel cannot create the
    /// link or has no `wireguard` netlink family.
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
        // From here on, a failure deletes the link again.
        let netlink = match WireguardNetlink::connect() {
            Ok(netlink) => netlink,
            Err(err) => {
                let _ = ip::delete_link(name);
                return Err(err);
            }
        };
        let iface = KernelInterface {
            name: name.to_owned(),
            netlink,
            owned: true,
        };
        iface.netlink.set_device(
            name,
            &DeviceUpdate {
                private_key: Some(&spec.private_key),
                // Only a port asked for: an adopted link keeps the one it has, a new link
                // gets a random one from the kernel when it comes up.
                listen_port: spec.listen_port.filter(|&port| port != 0),
                ..DeviceUpdate::default()
            },
        )?;
        ip::configure(name, &spec.addresses, spec.mtu.unwrap_or(DEFAULT_MTU))?;
        tracing::info!(interface = name, public_key = %spec.private_key.public_key(), "kernel WireGuard interface up");
        Ok(iface)
    }

    /// Manages an existing kernel WireGuard interface of this network namespace; it is not
    /// deleted on drop. [`Error::InterfaceGone`] when there is none of that name.
    pub fn attach(name: &str) -> Result<Self, Error> {
        crate::validate_interface_name(name)?;
        let iface = KernelInterface {
            name: name.to_owned(),
            netlink: WireguardNetlink::connect()?,
            owned: false,
        };
        iface.netlink.get_device(name)?;
        Ok(iface)
    }

    fn update(&self, update: &DeviceUpdate<'_>) -> Result<(), Error> {
        self.netlink.set_device(&self.name, update)
    }
}

impl Backend for KernelInterface {
    fn interface(&self) -> &str {
        &self.name
    }

    fn public_key(&self) -> Result<PublicKey, Error> {
        self.netlink
            .get_device(&self.name)?
            .public_key
            .ok_or_else(|| {
                Error::Netlink(format!("interface {} has no private key set", self.name))
            })
    }

    fn listen_port(&self) -> Result<u16, Error> {
        Ok(self.netlink.get_device(&self.name)?.listen_port)
    }

    fn set_peer(&self, peer: &Peer) -> Result<(), Error> {
        self.set_peers(std::slice::from_ref(peer))
    }

    fn set_peers(&self, peers: &[Peer]) -> Result<(), Error> {
        if peers.is_empty() {
            return Ok(());
        }
        self.update(&DeviceUpdate {
            peers,
            ..DeviceUpdate::default()
        })
    }

    fn remove_peer(&self, key: &PublicKey) -> Result<(), Error> {
        self.remove_peers(std::slice::from_ref(key))
    }

    fn remove_peers(&self, keys: &[PublicKey]) -> Result<(), Error> {
        if keys.is_empty() {
            return Ok(());
        }
        self.update(&DeviceUpdate {
            remove: keys,
            ..DeviceUpdate::default()
        })
    }

    fn peers(&self) -> Result<Vec<PeerStats>, Error> {
        Ok(self.netlink.get_device(&self.name)?.peers)
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
            Some(state) if !state.wireguard => Err(Error::InterfaceGone(format!(
                "interface {} is no longer a WireGuard link",
                self.name
            ))),
            Some(_) => Ok(()),
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
