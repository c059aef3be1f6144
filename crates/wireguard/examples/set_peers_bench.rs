//! Measures peer operations on a userspace (boringtun) interface with many peers, inside a
//! throwaway network namespace. Needs root. The figures in docs/wireguard.md come from:
//!
//! `cargo run --release -p watchgrid-wireguard --example set_peers_bench -- 10000 100000`

#![allow(
    clippy::unwrap_used,
    reason = "a measurement program: any failure ends it with a message"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use watchgrid_wireguard::testing::{unique_name, Netns, NsThread};
use watchgrid_wireguard::{
    diff, Backend as _, InterfaceSpec, Peer, PrivateKey, PublicKey, UserspaceInterface,
};

fn peers(n: u32, salt: [u8; 16], second_octet_offset: u32) -> Vec<Peer> {
    (0..n)
        .map(|i| {
            let mut bytes = [0u8; 32];
            bytes[..16].copy_from_slice(&salt);
            bytes[16..20].copy_from_slice(&i.to_be_bytes());
            let host = i + (second_octet_offset << 16);
            let [_, b, c, d] = host.to_be_bytes();
            Peer {
                public_key: PublicKey::from_bytes(bytes),
                allowed_ips: vec![format!("10.{b}.{c}.{d}/32").parse::<IpNet>().unwrap()],
                endpoint: None,
                persistent_keepalive: None,
            }
        })
        .collect()
}

fn timed<T>(label: &str, f: impl FnOnce() -> T) -> T {
    let started = Instant::now();
    let value = f();
    let elapsed = started.elapsed();
    println!("  {label:<44} {:>9.3} s", elapsed.as_secs_f64());
    value
}

fn main() {
    let counts: Vec<u32> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("peer counts"))
        .collect();
    let counts = if counts.is_empty() {
        vec![10_000]
    } else {
        counts
    };
    let ns = Netns::new("wgb");
    let thread = NsThread::enter(&ns);
    for n in counts {
        let salt = PrivateKey::generate().public_key().as_bytes()[..16]
            .try_into()
            .unwrap();
        let spec = InterfaceSpec {
            name: unique_name("wgb"),
            private_key: PrivateKey::generate(),
            listen_port: None,
            addresses: vec!["100.64.0.1/10".parse().unwrap()],
            mtu: None,
        };
        let iface = Arc::new(thread.run(move || UserspaceInterface::open(&spec).unwrap()));
        println!(
            "{n} peers on {} (boringtun 0.7.1):",
            iface.socket_path().display()
        );
        let desired = peers(n, salt, 0);
        timed("set_peers, all new (one transaction)", || {
            iface.set_peers(&desired).unwrap()
        });
        let actual = timed("peers()", || iface.peers().unwrap());
        assert_eq!(actual.len(), n as usize);
        let attached = UserspaceInterface::attach(iface.interface()).unwrap();
        let via_socket = timed("peers() via the socket (attach)", || {
            attached.peers().unwrap()
        });
        assert_eq!(via_socket.len(), n as usize);
        drop(attached);
        timed("check()", || {
            let iface = Arc::clone(&iface);
            thread.run(move || iface.check()).unwrap();
        });
        let d = timed("diff(desired, actual)", || diff(&desired, &actual));
        assert!(
            d.is_empty(),
            "diff after set_peers: {} upserts, {} removals",
            d.upsert.len(),
            d.remove.len()
        );
        timed("set_peers, all unchanged (read, skip)", || {
            iface.set_peers(&desired).unwrap()
        });
        let one = peers(1, [0xee; 16], 255);
        timed("set_peer, one new peer on a full interface", || {
            iface.set_peer(&one[0]).unwrap()
        });
        let changed = peers(n, salt, 128);
        timed("set_peers, all allowed IPs changed", || {
            iface.set_peers(&changed).unwrap()
        });
        let attached = UserspaceInterface::attach(iface.interface()).unwrap();
        timed("set_peers, all changed back, via the socket", || {
            attached.set_peers(&desired).unwrap()
        });
        drop(attached);
        timed("set_peers, all allowed IPs changed again", || {
            iface.set_peers(&changed).unwrap()
        });
        let keys: Vec<PublicKey> = changed
            .iter()
            .map(|p| p.public_key)
            .chain([one[0].public_key])
            .collect();
        timed("remove_peers, all", || iface.remove_peers(&keys).unwrap());
        assert!(iface.peers().unwrap().is_empty());
        // What the server's hub does at a cold start: the same load in batches. Each batch is
        // one transaction, during which boringtun forwards nothing; between batches it does.
        let batch_size = 5_000;
        let mut longest = Duration::ZERO;
        timed("set_peers, all new, in batches of 5,000", || {
            for batch in desired.chunks(batch_size) {
                let started = Instant::now();
                iface.set_peers(batch).unwrap();
                longest = longest.max(started.elapsed());
            }
        });
        println!(
            "  {:<44} {:>9.3} s",
            "  the longest batch",
            longest.as_secs_f64()
        );
        assert_eq!(iface.peers().unwrap().len(), n as usize);
        let closing = Instant::now();
        thread.run(move || drop(iface));
        println!(
            "  {:<44} {:>9.3} s",
            "drop (teardown)",
            closing.elapsed().as_secs_f64()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
