//! The UAPI socket this crate serves for its userspace interfaces: what `wg` and other clients
//! can and cannot do through it, `attach` from another handle, and time limits on sockets that
//! stop answering. Needs root; fails (does not skip) without it.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::io::{BufRead as _, BufReader, Write as _};
use std::net::UdpSocket;
use std::os::unix::net::UnixListener;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use watchgrid_wireguard::testing::{require_root, require_tool, run, run_ok, unique_name};
use watchgrid_wireguard::{
    attach, Backend, BackendKind, Error, PrivateKey, PublicKey, UserspaceInterface,
};

fn new_key() -> PublicKey {
    PrivateKey::generate().public_key()
}

#[test]
fn wg_cannot_hang_the_device_or_desync_the_socket() {
    require_tool("wg", "wireguard-tools");
    let (a, _b) = pair();
    let spec_a = spec("wgp", TUNNEL_A, None);
    let name = spec_a.name.clone();
    let wg = a.open(spec_a, BackendKind::Userspace).unwrap();
    let key = new_key();
    wg.set_peer(&peer(key, TUNNEL_B, None)).unwrap();

    // An in-place update, which panics boringtun 0.7.1, is refused: EEXIST.
    let update = run(
        "wg",
        &[
            "set",
            &name,
            "peer",
            &key.to_string(),
            "allowed-ips",
            "10.77.0.9/32",
        ],
    );
    assert!(!update.status.success());
    let stderr = String::from_utf8_lossy(&update.stderr);
    assert!(stderr.contains("File exists"), "{stderr}");
    a.check(&wg).unwrap();
    let peers = wg.peers().unwrap();
    assert_eq!(peers.len(), 1);
    assert_eq!(
        peers[0].allowed_ips,
        vec![format!("{TUNNEL_B}/32").parse().unwrap()]
    );

    // New peers and removals through `wg set` work.
    let other = new_key();
    run_ok(
        "wg",
        &[
            "set",
            &name,
            "peer",
            &other.to_string(),
            "allowed-ips",
            "10.77.0.3/32",
            "persistent-keepalive",
            "25",
        ],
    );
    assert_eq!(wg.peers().unwrap().len(), 2);
    run_ok("wg", &["set", &name, "peer", &other.to_string(), "remove"]);
    assert_eq!(wg.peers().unwrap().len(), 1);

    // A listen port another socket holds is refused (boringtun would share it silently).
    let holder = a.thread.run(|| UdpSocket::bind("0.0.0.0:0").unwrap());
    let taken = holder.local_addr().unwrap().port().to_string();
    let moved = a.ns.exec("wg", &["set", &name, "listen-port", &taken]);
    assert!(!moved.status.success());
    assert!(
        String::from_utf8_lossy(&moved.stderr).contains("Address already in use"),
        "{moved:?}"
    );

    // Raw requests boringtun would stop reading part-way: refused whole, and the socket and
    // the device stay in step for what follows.
    let k = hex(&key);
    for (request, errno) in [
        ("set=1\nbogus=1\n\n".to_owned(), -22),
        ("set=1\nlisten_port=99999\n\n".to_owned(), -22),
        (
            format!(
                "set=1\npublic_key={}\nallowed_ip=10.0.0.1/32\nwhat=1\n\n",
                hex(&new_key())
            ),
            -22,
        ),
        (format!("set=1\npublic_key={k}\nremove\n\n"), -71),
        (
            format!("set=1\npublic_key={k}\nallowed_ip=10.77.0.8/32\n\n"),
            -17,
        ),
        ("hello=1\n\n".to_owned(), 5),
    ] {
        let answer = raw_uapi(&name, &request);
        assert_eq!(answer, format!("errno={errno}\n\n"), "{request:?}");
        let state = raw_uapi(&name, "get=1\n\n");
        assert!(state.ends_with("errno=0\n\n"), "{state}");
        assert!(state.contains(&format!("public_key={k}\n")), "{state}");
    }
    assert_eq!(
        wg.peers().unwrap().len(),
        1,
        "a refused request changed peers"
    );

    // Many clients at once, through the socket and through the handle.
    let before = wg.peers().unwrap();
    let workers: Vec<_> = (0..6)
        .map(|i| {
            let wg = Arc::clone(&wg);
            let name = name.clone();
            thread::spawn(move || {
                for _ in 0..15 {
                    match i % 3 {
                        0 => assert_eq!(wg.peers().unwrap().len(), 1),
                        1 => assert!(
                            run_ok("wg", &["show", &name, "peers"]).contains(&key.to_string())
                        ),
                        _ => assert!(raw_uapi(&name, "get=1\n\n").ends_with("errno=0\n\n")),
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    assert_eq!(wg.peers().unwrap().len(), before.len());

    // A client that connects and says nothing holds nobody up, and is cut off.
    let silent = std::os::unix::net::UnixStream::connect(socket_of(&name)).unwrap();
    let started = Instant::now();
    assert_eq!(wg.peers().unwrap().len(), 1);
    run_ok("wg", &["show", &name]);
    assert!(started.elapsed() < Duration::from_secs(2));
    silent
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut line = String::new();
    let n = BufReader::new(&silent).read_line(&mut line).unwrap();
    assert_eq!(
        n, 0,
        "expected the proxy to close an idle connection, got {line:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(8));

    a.check(&wg).unwrap();
    a.close(wg);
}

#[test]
fn attach_drives_another_handles_interface_and_leaves_it_running() {
    let (a, _b) = pair();
    let spec_a = spec("wgat", TUNNEL_A, Some(51830));
    let name = spec_a.name.clone();
    let own_key = spec_a.private_key.public_key();
    let owner = a.open(spec_a, BackendKind::Userspace).unwrap();

    // From the test's own thread (another network namespace): the socket path is host-wide.
    let attached = UserspaceInterface::attach(&name).unwrap();
    assert!(!attached.is_owned());
    assert!(format!("{attached:?}").contains("attached"));
    assert_eq!(attached.public_key().unwrap(), own_key);
    assert_eq!(attached.listen_port().unwrap(), 51830);
    let key = new_key();
    attached
        .set_peer(&peer(key, TUNNEL_B, Some("192.0.2.7:51820".into())))
        .unwrap();
    let seen = stats_of(owner.as_ref(), &key);
    assert_eq!(seen.endpoint, Some("192.0.2.7:51820".parse().unwrap()));
    assert_eq!(attached.peers().unwrap().len(), 1);
    attached.set_peer(&peer(key, TUNNEL_B, None)).unwrap(); // unchanged: nothing sent
    let mut wider = peer(key, TUNNEL_B, None);
    wider.allowed_ips.push("10.78.0.0/16".parse().unwrap());
    attached.set_peer(&wider).unwrap(); // re-added through the proxy's checks
    assert_eq!(stats_of(owner.as_ref(), &key).allowed_ips.len(), 2);
    attached.remove_peer(&key).unwrap();
    assert!(owner.peers().unwrap().is_empty());

    // The crate-level attach picks the userspace socket.
    let any = attach(&name).unwrap();
    assert_eq!(any.public_key().unwrap(), own_key);
    assert!(format!("{any:?}").starts_with("UserspaceInterface"));
    drop(any);
    let in_namespace = {
        let name = name.clone();
        a.thread.run(move || {
            let attached = UserspaceInterface::attach(&name).unwrap();
            attached.check()
        })
    };
    in_namespace.unwrap();

    // Dropping attached handles leaves the interface up.
    drop(attached);
    a.check(&owner).unwrap();
    assert_eq!(owner.public_key().unwrap(), own_key);

    // Nothing to attach to.
    match UserspaceInterface::attach(&unique_name("wgnone")) {
        Err(Error::InterfaceGone(message)) => {
            assert!(message.contains("no UAPI socket"), "{message}")
        }
        other => panic!("{other:?}"),
    }

    // Once the owner closes, an attached handle fails at once.
    let late = UserspaceInterface::attach(&name).unwrap();
    a.close(owner);
    let started = Instant::now();
    assert!(matches!(late.peers(), Err(Error::InterfaceGone(_))));
    assert!(started.elapsed() < Duration::from_secs(1));
}

/// Removes a socket file on drop, also when the test fails.
struct RemoveOnDrop(std::path::PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A UAPI socket that answers the first request (a probe) and then accepts connections without
/// ever answering, like a process whose device has stopped. The thread is left running.
fn silent_socket(name: &str) -> RemoveOnDrop {
    let path = socket_of(name);
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).unwrap();
    thread::spawn(move || {
        let mut held = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { break };
            if i == 0 {
                let mut line = String::new();
                let _ = BufReader::new(&conn).read_line(&mut line);
                let _ = conn.write_all(b"errno=5\n\n");
            } else {
                held.push(conn);
            }
        }
    });
    RemoveOnDrop(socket_of(name))
}

#[test]
fn calls_time_out_when_the_socket_stops_answering() {
    require_root();
    let name = unique_name("wgsil");
    let _socket = silent_socket(&name);
    let iface = UserspaceInterface::attach(&name).unwrap();
    type Call<'a> = &'a dyn Fn() -> Result<(), Error>;
    let calls: [(&str, Call<'_>); 2] = [
        ("peers", &|| iface.peers().map(drop)),
        ("set_peer", &|| {
            iface.set_peer(&peer(new_key(), TUNNEL_B, None))
        }),
    ];
    for (what, call) in calls {
        let started = Instant::now();
        let result = call();
        let took = started.elapsed();
        match result {
            Err(Error::Timeout(message)) => {
                assert!(
                    message.contains(&name) && message.contains("5s"),
                    "{what}: {message}"
                )
            }
            other => panic!("{what}: {other:?}"),
        }
        assert!(
            took >= Duration::from_secs(4) && took < Duration::from_secs(8),
            "{what} took {took:?}"
        );
    }
    // A fresh attach probes, and says the interface is stuck; opening the name is refused.
    match UserspaceInterface::attach(&name) {
        Err(Error::InterfaceGone(message)) => assert!(message.contains("stuck"), "{message}"),
        other => panic!("{other:?}"),
    }
}
