//! The README's data-plane quickstart cannot rot: `scripts/demo.sh` runs end to end against the
//! built programs (server and agent in network namespaces, a device online through a real
//! tunnel, a ping and a Magic DNS answer through it) and leaves no namespace behind.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::Path;

use watchgrid_e2e::{program, require_tool};
use watchgrid_testkit::netns::require_root;

#[test]
fn the_demo_script_brings_a_device_online_through_a_tunnel() {
    require_root();
    require_tool("ping", "iputils-ping");
    require_tool("curl", "curl");
    require_tool("dig", "bind9-dnsutils");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/demo.sh");
    let server = program("watchgrid-server");
    let bin_dir = server.parent().unwrap();
    for other in ["watchgrid-agent", "watchgrid"] {
        program(other);
    }
    let out = std::process::Command::new("timeout")
        .args(["300", script.to_str().unwrap()])
        .args(["--bin-dir", bin_dir.to_str().unwrap(), "--no-wait"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for line in [
        "demo: server healthy",
        "demo: the device is online",
        "demo: ping through the tunnel ok",
        "demo: Magic DNS: ",
        "demo: done: a device enrolled and online through a real WireGuard tunnel",
    ] {
        assert!(
            stdout.contains(line),
            "{line:?} missing:\n{stdout}\n{stderr}"
        );
    }
    let dns = stdout
        .lines()
        .find(|l| l.starts_with("demo: Magic DNS: "))
        .unwrap();
    assert!(dns.ends_with("-> 100.64.0.2"), "{dns}");
    // Everything it made is gone.
    let tag = stdout
        .lines()
        .find_map(|l| l.strip_prefix("demo: tag "))
        .and_then(|rest| rest.split(';').next())
        .unwrap()
        .to_owned();
    let namespaces = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let namespaces = String::from_utf8_lossy(&namespaces.stdout);
    assert!(
        !namespaces.contains(&format!("wgdemo-srv-{tag}"))
            && !namespaces.contains(&format!("wgdemo-dev-{tag}")),
        "{namespaces}"
    );
    assert!(!Path::new(&format!("/var/run/wireguard/wgds{tag}.sock")).exists());
}
