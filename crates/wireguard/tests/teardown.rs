//! Teardown of a userspace interface: no link, socket or thread left, within a second, also
//! with a client connected. In a test binary of its own because it counts the process's
//! threads, which tests running beside it (under `cargo test`) would change. Needs root.

#![allow(clippy::unwrap_used, reason = "tests fail loudly")]

mod common;

use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use common::*;
use watchgrid_wireguard::testing::wait_until;
use watchgrid_wireguard::BackendKind;

/// The threads of this process.
fn thread_count() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[test]
fn drop_tears_everything_down() {
    let (a, _b) = pair();
    let spec_a = spec("wgd", TUNNEL_A, None);
    let name = spec_a.name.clone();
    let threads_before = thread_count();
    let wg = a.open(spec_a, BackendKind::Userspace).unwrap();
    let socket = socket_of(&name);
    assert!(socket.exists());
    let mode = std::os::unix::fs::PermissionsExt::mode(&socket.metadata().unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");
    assert!(a.has_link(&name));
    assert!(
        thread_count() > threads_before,
        "boringtun runs device threads"
    );
    // A client connected at teardown does not hold it up.
    let idle_client = UnixStream::connect(&socket).unwrap();
    wg.set_peer(&peer(
        watchgrid_wireguard::PrivateKey::generate().public_key(),
        TUNNEL_B,
        None,
    ))
    .unwrap();

    let started = Instant::now();
    a.close(wg);
    let took = started.elapsed();
    assert!(took < Duration::from_secs(1), "teardown took {took:?}");
    drop(idle_client);
    assert!(!socket.exists(), "UAPI socket left behind");
    assert!(!a.has_link(&name), "TUN link left behind");
    assert!(
        wait_until(Duration::from_secs(2), || thread_count() == threads_before),
        "device threads left behind: {} before, {} after",
        threads_before,
        thread_count()
    );
}
