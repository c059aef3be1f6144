//! Userspace (boringtun) interfaces in network namespaces joined by a veth pair: traffic through
//! the tunnel, peer stats, `wg show`, removal, health checks, teardown, naming rules, batches.
//! Needs root; fails (does not skip) without it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::collections::BTreeSet;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use ipnet::IpNet;
use watchgrid_wireguard::testing::{require_tool, run_ok};
use watchgrid_wireguard::{diff, Backend, BackendKind, Error, Peer, PublicKey};

#[test]
fn ping_through_the_tunnel() {
    require_tool("wg", "wireguard-tools");
    let (a, b) = pair();
    let spec_a = spec("wga", TUNNEL_A, Some(51820));
    let spec_b = spec("wgb", TUNNEL_B, Some(51821));
    let (name_a, key_a) = (spec_a.name.clone(), spec_a.private_key.public_key());
    let key_b = spec_b.private_key.public_key();
    let wg_a = a.open(spec_a, BackendKind::Userspace).unwrap();
    let wg_b = b.open(spec_b, BackendKind::Userspace).unwrap();

    assert_eq!(wg_a.interface(), name_a);
    assert_eq!(
        wg_a.public_key().unwrap(),
        key_a,
        "own_public_key from boringtun"
    );
    assert_eq!(wg_a.listen_port().unwrap(), 51820);
    a.check(&wg_a).unwrap();
    let mtu = a.ns.ip(&["-o", "link", "show", "dev", &name_a]);
    assert!(mtu.contains("mtu 1420"), "{mtu}");

    // A knows where B is; B learns A's endpoint from the handshake.
    wg_a.set_peer(&peer(key_b, TUNNEL_B, Some(format!("{UNDERLAY_B}:51821"))))
        .unwrap();
    wg_b.set_peer(&peer(key_a, TUNNEL_A, None)).unwrap();
    assert!(a.ping(TUNNEL_B, 3), "ping A -> B through the tunnel failed");
    assert!(b.ping(TUNNEL_A, 1), "ping B -> A through the tunnel failed");

    let seen_by_a = stats_of(wg_a.as_ref(), &key_b);
    assert_recent_handshake_and_traffic(&seen_by_a);
    assert_eq!(
        seen_by_a.endpoint,
        Some(format!("{UNDERLAY_B}:51821").parse().unwrap())
    );
    let seen_by_b = stats_of(wg_b.as_ref(), &key_a);
    assert_recent_handshake_and_traffic(&seen_by_b);
    assert_eq!(
        seen_by_b.endpoint,
        Some(format!("{UNDERLAY_A}:51820").parse().unwrap()),
        "learned endpoint"
    );

    // wireguard-tools reads the same UAPI socket.
    let shown = run_ok("wg", &["show", &name_a]);
    assert!(shown.contains(&format!("peer: {key_b}")), "{shown}");
    assert!(
        shown.contains(&format!("allowed ips: {TUNNEL_B}/32")),
        "{shown}"
    );
    // Handshake times reach `wg` as Unix times (boringtun itself reports ages).
    assert!(shown.contains("latest handshake: "), "{shown}");
    assert!(
        !shown.contains("years ago") && !shown.contains("year ago"),
        "{shown}"
    );
    let conf = run_ok("wg", &["showconf", &name_a]);
    assert!(conf.contains("ListenPort = 51820"), "{conf}");
    assert!(conf.contains(&format!("PublicKey = {key_b}")), "{conf}");

    // Setting the same peer again changes nothing: the session (and its counters) survive.
    let before = stats_of(wg_b.as_ref(), &key_a);
    wg_b.set_peer(&peer(key_a, TUNNEL_A, None)).unwrap();
    let after = stats_of(wg_b.as_ref(), &key_a);
    // boringtun reports handshake ages, so the absolute time moves by the time between reads.
    let t0 = before.last_handshake.unwrap();
    let t1 = after
        .last_handshake
        .expect("no handshake after an unchanged set_peer: the session was restarted");
    let drift = t1
        .duration_since(t0)
        .or_else(|e| Ok::<_, ()>(e.duration()))
        .unwrap();
    assert!(
        drift < Duration::from_secs(1),
        "handshake moved by {drift:?}: the session was restarted"
    );
    assert!(after.rx_bytes >= before.rx_bytes);

    // Changing B's view of A (one more allowed IP) re-adds A on boringtun, keeping the learned
    // endpoint, and traffic still flows.
    let mut wider = peer(key_a, TUNNEL_A, None);
    wider.allowed_ips.push("10.78.0.0/16".parse().unwrap());
    wg_b.set_peer(&wider).unwrap();
    let changed = stats_of(wg_b.as_ref(), &key_a);
    let nets: BTreeSet<IpNet> = changed.allowed_ips.iter().copied().collect();
    assert_eq!(nets, wider.allowed_ips.iter().copied().collect());
    assert_eq!(
        changed.endpoint, seen_by_b.endpoint,
        "learned endpoint kept across the re-add"
    );
    assert!(b.ping(TUNNEL_A, 2), "ping B -> A after the update failed");

    // Without the peer, A has nowhere to send B's packets.
    wg_a.remove_peer(&key_b).unwrap();
    assert!(wg_a.peers().unwrap().is_empty());
    assert!(!a.ping(TUNNEL_B, 1), "ping still works after remove_peer");
    wg_a.remove_peer(&key_b).unwrap(); // removing an absent peer is fine

    // The health check notices the link disappearing.
    a.check(&wg_a).unwrap();
    a.ns.ip(&["link", "set", "dev", &name_a, "down"]);
    let down = a.check(&wg_a).unwrap_err();
    assert!(
        down.to_string()
            .contains(&format!("interface {name_a} is down")),
        "{down}"
    );
    a.ns.ip(&["link", "del", &name_a]);
    match a.check(&wg_a) {
        Err(Error::InterfaceGone(message)) => assert!(
            message.contains(&format!("interface {name_a} is gone")),
            "{message}"
        ),
        other => panic!("check after deleting the link: {other:?}"),
    }
    a.close(wg_a);
    b.close(wg_b);
}

/// The blocked-signal mask of the calling thread.
fn blocked_signals() -> String {
    let status = std::fs::read_to_string("/proc/thread-self/status").unwrap();
    status
        .lines()
        .find(|l| l.starts_with("SigBlk:"))
        .unwrap()
        .to_owned()
}

#[test]
fn names_must_be_unique_across_namespaces() {
    let (a, b) = pair();
    let spec_a = spec("wgu", TUNNEL_A, None);
    let name = spec_a.name.clone();
    // A socket file nobody listens on (left by a crash) is replaced.
    drop(UnixListener::bind(socket_of(&name)).unwrap());
    assert!(socket_of(&name).exists());
    let mask_before = a.thread.run(blocked_signals);
    let wg = a.open(spec_a.clone(), BackendKind::Userspace).unwrap();
    assert_eq!(
        a.thread.run(blocked_signals),
        mask_before,
        "open changed the caller's signal mask"
    );

    // The same name again in the same namespace: the link exists.
    match a.open(spec_a.clone(), BackendKind::Userspace) {
        Err(Error::InterfaceExists { name: n, detail }) => {
            assert!(n == name && detail.contains("link"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    // The same name in another namespace: the UAPI socket path is shared, so it is refused.
    match b.open(spec_a, BackendKind::Userspace) {
        Err(Error::InterfaceExists { detail, .. }) => {
            assert!(detail.contains("network namespaces"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
    a.check(&wg).unwrap(); // untouched by the refused attempts

    // Another interface on a port that is taken (boringtun itself would share it silently).
    let port = wg.listen_port().unwrap();
    let mut same_port = spec("wgu", TUNNEL_B, Some(port));
    match a.open(same_port.clone(), BackendKind::Userspace) {
        Err(Error::AddressInUse(p)) => assert_eq!(p, port),
        other => panic!("{other:?}"),
    }
    assert!(
        !a.has_link(&same_port.name),
        "a refused interface left its link"
    );
    // In another namespace the port is free.
    same_port.name = watchgrid_wireguard::testing::unique_name("wgu");
    let other = b.open(same_port, BackendKind::Userspace).unwrap();
    b.close(other);

    let mut bad = spec("wgu", TUNNEL_A, None);
    bad.name = "has space".into();
    assert!(matches!(
        a.open(bad, BackendKind::Userspace),
        Err(Error::InvalidName { .. })
    ));
    a.close(wg);
}

#[test]
fn kernel_backend_fails_clearly_and_auto_falls_back() {
    let (a, _b) = pair();
    let spec_k = spec("wgk", TUNNEL_A, None);
    let name = spec_k.name.clone();
    let has_module =
        a.ns.exec("ip", &["link", "add", "wgprobe0", "type", "wireguard"])
            .status
            .success();
    if has_module {
        a.ns.ip(&["link", "del", "wgprobe0"]);
    }
    match a.open(spec_k, BackendKind::Kernel) {
        Err(Error::KernelModuleMissing(message)) => {
            assert!(!has_module);
            assert!(message.contains("userspace"), "{message}");
        }
        Ok(wg) => {
            assert!(has_module);
            a.check(&wg).unwrap();
            a.close(wg);
        }
        Err(other) => panic!("open(Kernel): {other}"),
    }
    assert!(
        !a.has_link(&name),
        "a failed or closed kernel interface left its link"
    );

    let spec_auto = spec("wgk", TUNNEL_A, None);
    let auto = a.open(spec_auto, BackendKind::Auto).unwrap();
    a.check(&auto).unwrap();
    let described = format!("{auto:?}");
    assert!(
        described.starts_with(if has_module {
            "KernelInterface"
        } else {
            "UserspaceInterface"
        }),
        "{described}"
    );
    a.close(auto);
}

#[test]
fn many_peers_reconcile_in_batches() {
    let (a, _b) = pair();
    let wg: Arc<dyn Backend> = a
        .open(spec("wgm", TUNNEL_A, None), BackendKind::Userspace)
        .unwrap();
    let make = |i: u32, net: u8| {
        let mut bytes = [0u8; 32];
        bytes[..4].copy_from_slice(&i.to_be_bytes());
        let [_, _, c, d] = i.to_be_bytes();
        Peer {
            public_key: PublicKey::from_bytes(bytes),
            allowed_ips: vec![format!("10.{net}.{c}.{d}/32").parse().unwrap()],
            endpoint: None,
            persistent_keepalive: None,
        }
    };
    let mut desired: Vec<Peer> = (0..2_000).map(|i| make(i, 100)).collect();
    wg.set_peers(&desired).unwrap();
    let actual = wg.peers().unwrap();
    assert_eq!(actual.len(), 2_000);
    assert!(diff(&desired, &actual).is_empty());

    // The server's periodic reconcile: 100 changed, 100 gone, 100 new.
    for p in &mut desired[..100] {
        *p = make(
            u32::from_be_bytes(p.public_key.as_bytes()[..4].try_into().unwrap()),
            101,
        );
    }
    desired.truncate(1_900);
    desired.extend((5_000..5_100).map(|i| make(i, 102)));
    let d = diff(&desired, &wg.peers().unwrap());
    assert_eq!((d.upsert.len(), d.remove.len()), (200, 100));
    wg.set_peers(&d.upsert).unwrap();
    wg.remove_peers(&d.remove).unwrap();
    assert!(
        diff(&desired, &wg.peers().unwrap()).is_empty(),
        "not converged after one reconcile"
    );

    // Removing everything (one transaction).
    let keys: Vec<PublicKey> = desired.iter().map(|p| p.public_key).collect();
    wg.remove_peers(&keys).unwrap();
    assert!(wg.peers().unwrap().is_empty());
    a.check(&wg).unwrap();
    a.close(wg);
}

/// boringtun 0.7.1 panics when a `set` changes an existing peer in place, and the panic leaves
/// the device locked. This crate never sends that itself and refuses it from other tools (see
/// `tests/uapi.rs`); a test hook sends it anyway, and the health check must notice quickly,
/// later calls must fail at once, and dropping must still free the name.
#[test]
fn a_stuck_device_fails_its_check_quickly() {
    let (a, _b) = pair();
    let spec_a = spec("wgs", TUNNEL_A, None);
    let name = spec_a.name.clone();
    let wg = a.open_userspace(spec_a.clone());
    let key = watchgrid_wireguard::PrivateKey::generate().public_key();
    wg.set_peer(&peer(key, TUNNEL_B, None)).unwrap();

    // The in-place update hangs the device; the call gives up after its time limit.
    let hung = {
        let wg = Arc::clone(&wg);
        let body = format!("public_key={}\nallowed_ip=10.77.0.9/32\n", hex(&key));
        std::thread::spawn(move || {
            let started = Instant::now();
            let result = wg.send_unchecked_for_tests(&body, Duration::from_secs(8));
            (result, started.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let as_backend: Arc<dyn Backend> = wg.clone();
    match a.check(&as_backend) {
        Err(Error::InterfaceGone(message)) => assert!(message.contains("stuck"), "{message}"),
        other => panic!("check on a stuck device: {other:?}"),
    }
    assert!(
        started.elapsed() < Duration::from_secs(7),
        "check took {:?}",
        started.elapsed()
    );
    drop(as_backend);
    let (result, took) = hung.join().unwrap();
    assert!(matches!(result, Err(Error::Timeout(_))), "{result:?}");
    assert!(took < Duration::from_secs(9), "the hung set took {took:?}");

    // The channel is known to be unusable now: calls fail at once, and say why.
    let started = Instant::now();
    match wg.peers() {
        Err(Error::InterfaceGone(message)) => assert!(message.contains("stuck"), "{message}"),
        other => panic!("peers() on a stuck device: {other:?}"),
    }
    assert!(started.elapsed() < Duration::from_millis(100));

    // Dropping gives up on the hung device threads and deletes the link: the name is free.
    let started = Instant::now();
    a.close(wg);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "teardown took {:?}",
        started.elapsed()
    );
    assert!(!a.has_link(&name), "the hung device's link was left behind");
    assert!(!socket_of(&name).exists());
    let again = a.open(spec_a, BackendKind::Userspace).unwrap();
    a.check(&again).unwrap();
    a.close(again);
}
