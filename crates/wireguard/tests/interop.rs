//! Interoperability with the reference tools: Debian's wireguard-go (an independent WireGuard
//! implementation) configured with `wg setconf` from a rendered `WgQuickConfig`, talking to our
//! userspace interface; `attach` driving wireguard-go through its UAPI socket; and
//! `render_stripped` against `wg-quick strip`. Needs root, wireguard-go and wireguard-tools.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use watchgrid_wireguard::config::{InterfaceSection, PeerSection, WgQuickConfig};
use watchgrid_wireguard::testing::{require_root, require_tool, run_ok, unique_name, wait_until};
use watchgrid_wireguard::{Backend, BackendKind, Error, PrivateKey};

#[test]
fn render_stripped_matches_wg_quick_strip() {
    require_tool("wg-quick", "wireguard-tools");
    let dir = tempfile::tempdir().unwrap();
    let name = unique_name("wgs");
    let config = WgQuickConfig {
        interface: InterfaceSection {
            private_key: PrivateKey::generate(),
            listen_port: Some(51820),
            addresses: vec![
                "10.77.0.1/24".parse().unwrap(),
                "fd77::1/64".parse().unwrap(),
            ],
            dns: vec!["10.77.0.53".parse().unwrap()],
            mtu: Some(1380),
        },
        peers: vec![PeerSection {
            public_key: PrivateKey::generate().public_key(),
            preshared_key: Some(watchgrid_wireguard::PresharedKey::generate()),
            allowed_ips: vec![
                "10.77.0.2/32".parse().unwrap(),
                "fd77::2/128".parse().unwrap(),
            ],
            endpoint: Some("hub.example.com:51820".into()),
            persistent_keepalive: Some(25),
        }],
    };
    // wg-quick names the interface after the file.
    let path = dir.path().join(format!("{name}.conf"));
    let with_hooks = config.render().replacen(
        "[Interface]\n",
        "[Interface]\nPostUp = echo up\nTable = off\n",
        1,
    );
    std::fs::write(&path, &with_hooks).unwrap();
    let theirs = run_ok("wg-quick", &["strip", path.to_str().unwrap()]);
    let ours = WgQuickConfig::parse(&config.render_stripped()).unwrap();
    let parsed_theirs = WgQuickConfig::parse(&theirs).unwrap_or_else(|e| panic!("{e}: {theirs}"));
    assert_eq!(
        parsed_theirs,
        ours,
        "wg-quick strip:\n{theirs}\nours:\n{}",
        config.render_stripped()
    );
}

/// A wireguard-go process inside a namespace, stopped (and its socket removed) on drop.
fn start_wireguard_go(side: &Side, name: &str) -> watchgrid_wireguard::testing::ChildGuard {
    let socket = PathBuf::from(format!("/var/run/wireguard/{name}.sock"));
    let mut child = side
        .ns
        .spawn("wireguard-go", &["-f", name])
        .also_remove(&socket);
    assert!(
        wait_until(Duration::from_secs(10), || socket.exists()
            && side.has_link(name)),
        "wireguard-go did not create {name} (running: {})",
        child.is_running()
    );
    child
}

#[test]
fn wireguard_go_interop() {
    require_root();
    require_tool("wireguard-go", "wireguard-go");
    require_tool("wg", "wireguard-tools");
    let (a, b) = pair();

    // A: our userspace interface.
    let spec_a = spec("wgia", TUNNEL_A, Some(51820));
    let key_a = spec_a.private_key.public_key();
    let ours = a.open(spec_a, BackendKind::Userspace).unwrap();

    // B: wireguard-go, configured by `wg setconf` from a rendered config, addressed with `ip`.
    let name_b = unique_name("wgib");
    let go = start_wireguard_go(&b, &name_b);
    let key_b_private = PrivateKey::generate();
    let key_b = key_b_private.public_key();
    let config_b = WgQuickConfig {
        interface: InterfaceSection {
            private_key: key_b_private,
            listen_port: Some(51821),
            addresses: vec![format!("{TUNNEL_B}/24").parse().unwrap()],
            dns: vec![],
            mtu: Some(1420),
        },
        peers: vec![PeerSection {
            public_key: key_a,
            preshared_key: None,
            allowed_ips: vec![format!("{TUNNEL_A}/32").parse().unwrap()],
            endpoint: None,
            persistent_keepalive: None,
        }],
    };
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("b.conf");
    config_b.save(&conf).unwrap();
    let stripped = dir.path().join("b-stripped.conf");
    std::fs::write(
        &stripped,
        WgQuickConfig::load(&conf).unwrap().render_stripped(),
    )
    .unwrap();
    let setconf =
        b.ns.exec("wg", &["setconf", &name_b, stripped.to_str().unwrap()]);
    assert!(
        setconf.status.success(),
        "wg setconf: {}",
        String::from_utf8_lossy(&setconf.stderr)
    );
    for address in &config_b.interface.addresses {
        b.ns.ip(&["address", "add", &address.to_string(), "dev", &name_b]);
    }
    b.ns.ip(&["link", "set", "dev", &name_b, "mtu", "1420", "up"]);

    ours.set_peer(&peer(key_b, TUNNEL_B, Some(format!("{UNDERLAY_B}:51821"))))
        .unwrap();
    assert!(a.ping(TUNNEL_B, 3), "ping boringtun -> wireguard-go failed");
    assert!(b.ping(TUNNEL_A, 1), "ping wireguard-go -> boringtun failed");
    assert_recent_handshake_and_traffic(&stats_of(ours.as_ref(), &key_b));

    // Our UAPI client on wireguard-go (picked by `attach` from the socket), which reports
    // handshakes as Unix times and private_key rather than own_public_key.
    let attached: Arc<dyn Backend> = b
        .thread
        .run({
            let name = name_b.clone();
            move || watchgrid_wireguard::attach(&name).map(Arc::<dyn Backend>::from)
        })
        .unwrap();
    assert_eq!(attached.public_key().unwrap(), key_b);
    assert_eq!(attached.listen_port().unwrap(), 51821);
    b.check(&attached).unwrap();
    let seen_by_go = stats_of(attached.as_ref(), &key_a);
    assert_recent_handshake_and_traffic(&seen_by_go);
    assert_eq!(
        seen_by_go.endpoint,
        Some(format!("{UNDERLAY_A}:51820").parse().unwrap())
    );

    // An update in place (wireguard-go is not boringtun): allowed IPs replaced, session kept.
    let mut wider = peer(key_a, TUNNEL_A, None);
    wider.allowed_ips.push("10.78.0.0/16".parse().unwrap());
    attached.set_peer(&wider).unwrap();
    let updated = stats_of(attached.as_ref(), &key_a);
    assert_eq!(updated.allowed_ips.len(), 2, "{updated:?}");
    assert_eq!(
        updated.last_handshake, seen_by_go.last_handshake,
        "wireguard-go updates in place"
    );
    wider.allowed_ips.truncate(1);
    attached.set_peers(std::slice::from_ref(&wider)).unwrap();
    assert_eq!(
        stats_of(attached.as_ref(), &key_a).allowed_ips.len(),
        1,
        "allowed IPs were appended, not replaced"
    );
    assert!(b.ping(TUNNEL_A, 1));

    // Removal.
    attached.remove_peer(&key_a).unwrap();
    assert!(attached.peers().unwrap().is_empty());
    assert!(
        !a.ping(TUNNEL_B, 1),
        "ping still works after wireguard-go removed the peer"
    );

    // Stopping wireguard-go: the attached backend reports the interface gone.
    drop(go);
    match b.check(&attached) {
        Err(Error::InterfaceGone(message)) => assert!(message.contains(&name_b), "{message}"),
        other => panic!("check after wireguard-go stopped: {other:?}"),
    }
    b.close(attached); // attached interfaces are not deleted: nothing to do, must not panic
    a.close(ours);
}
