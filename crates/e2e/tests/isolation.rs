//! Isolation in the data plane, for real: the server's namespace forwards IPv4
//! (`net.ipv4.ip_forward=1`), two devices of tenant `default` and one of tenant `globex` are
//! enrolled in their own namespaces. Each device's server peer is allowed the server's overlay
//! address only; even when every device widens its AllowedIPs to the whole overlay, none can
//! ping or open TCP to another device of either tenant, because the server forwards nothing
//! received on its WireGuard interface — also after the host's `ip_forward` is written again.
//! The server itself stays reachable: ping, the agent API (heartbeats) and Magic DNS.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use watchgrid_e2e::fleet::{self, Agent, SocketCleanup, ADMIN_PASSWORD, SERVER_LAN};
use watchgrid_e2e::{require_tool, wait_for, wait_for_or, Api};
use watchgrid_testkit::netns::{require_root, unique_tag, Lan, NetNs, RootLink};

const SERVER_IP: &str = "100.64.0.1";
/// The port of the TCP listener each device runs on its overlay address.
const PROBE_PORT: &str = "7001";

fn ping(ns: &NetNs, address: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", "1", address])
        .is_ok_and(|o| o.status.success())
}

/// Whether a TCP connection from `ns` to `address:port` is accepted within 2 s.
fn tcp_connects(ns: &NetNs, address: &str, port: &str) -> bool {
    let script = format!(
        "import socket,sys\ntry:\n    socket.create_connection(('{address}', {port}), timeout=2).close()\nexcept OSError:\n    sys.exit(1)\n"
    );
    ns.exec(&["python3", "-c", &script])
        .is_ok_and(|o| o.status.success())
}

/// A TCP listener on `address:PROBE_PORT` in `ns`, accepting forever.
fn tcp_listener(ns: &NetNs, address: &str, log: &Path) -> watchgrid_testkit::netns::Process {
    let script = format!(
        "import socket\ns = socket.socket()\ns.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\ns.bind(('{address}', {PROBE_PORT}))\ns.listen()\nwhile True:\n    s.accept()[0].close()\n"
    );
    ns.spawn(Path::new("/usr/bin/python3"), &["-c", &script], &[], log)
        .unwrap()
}

fn sysctl(ns: &NetNs, key: &str) -> String {
    let out = ns.exec_ok(&["sysctl", "-n", key]).unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn overlay_ip(state: &Value) -> String {
    let address = state["overlay_address"].as_str().unwrap();
    address.split('/').next().unwrap().to_owned()
}

#[test]
fn devices_reach_the_server_and_never_each_other() {
    require_root();
    require_tool("wg", "wireguard-tools");
    require_tool("ping", "iputils-ping");
    require_tool("dig", "bind9-dnsutils");
    require_tool("python3", "python3");

    let dir = tempfile::tempdir().unwrap();
    let tag = unique_tag();
    let _sockets = SocketCleanup(
        ["wgs", "wgaa", "wgab", "wgag"]
            .iter()
            .map(|p| format!("{p}{tag}"))
            .collect(),
    );
    let srv = NetNs::new("isrv").unwrap();
    // The host routes: without the server's own guard, it would forward between devices.
    srv.exec_ok(&["sysctl", "-w", "net.ipv4.ip_forward=1"])
        .unwrap();
    let lan = Lan::new(&srv, &format!("{SERVER_LAN}/24")).unwrap();
    let net = std::process::id() % 200 + 20;
    let _root = RootLink::new(
        &srv,
        &format!("10.81.{net}.2/30"),
        &format!("10.81.{net}.1/30"),
    )
    .unwrap();
    let mut agents = Vec::new();
    for (n, name) in ["a", "b", "g"].iter().enumerate() {
        let ns = NetNs::new(&format!("i{name}")).unwrap();
        lan.attach(&srv, &ns, &format!("10.77.0.{}/24", n + 2))
            .unwrap();
        agents.push(Agent::new(ns, &format!("{name}{tag}"), dir.path()));
    }
    let server_iface = format!("wgs{tag}");
    let server_log = dir.path().join("server.log");
    let _server = fleet::start_server(
        &srv,
        &dir.path().join("server-data"),
        &server_iface,
        &server_log,
        &[],
    );
    let server_logs = || std::fs::read_to_string(&server_log).unwrap_or_default();

    let mut api = Api::new(&format!("http://10.81.{net}.1:8080"));
    wait_for_or(
        "the server healthy with WireGuard up",
        Duration::from_secs(60),
        || match api.call("GET", "/healthz", None) {
            Ok((200, body)) if body["checks"]["wireguard"] == "ok" => Some(body),
            _ => None,
        },
        server_logs,
    );
    // Linux decides on the receiving interface's own setting; the hub turned it off.
    let iface_forwarding = format!("net.ipv4.conf.{server_iface}.forwarding");
    assert_eq!(sysctl(&srv, "net.ipv4.ip_forward"), "1");
    assert_eq!(sysctl(&srv, &iface_forwarding), "0");

    api.login("admin", ADMIN_PASSWORD).unwrap();
    let (status, _) = api
        .call(
            "POST",
            "/api/tenants",
            Some(json!({"slug": "globex", "name": "Globex"})),
        )
        .unwrap();
    assert_eq!(status, 201);
    let token = |tenant: &str| {
        let (_, body) = api
            .call_in(
                tenant,
                "POST",
                "/api/onboarding-tokens",
                Some(json!({"max_uses": 5})),
            )
            .unwrap();
        body["secret"].as_str().unwrap().to_owned()
    };
    let (default_token, globex_token) = (token("default"), token("globex"));
    let mut states = Vec::new();
    for (i, agent) in agents.iter_mut().enumerate() {
        states.push(agent.enroll(if i < 2 { &default_token } else { &globex_token }));
        agent.run();
    }
    let ips: Vec<String> = states.iter().map(overlay_ip).collect();
    let mut listeners = Vec::new();
    for (i, agent) in agents.iter().enumerate() {
        wait_for_or(
            "the device online through its tunnel",
            Duration::from_secs(60),
            || ping(&agent.ns, SERVER_IP).then_some(()),
            || format!("{}\n--- server ---\n{}", agent.log(), server_logs()),
        );
        listeners.push(tcp_listener(
            &agent.ns,
            &ips[i],
            &dir.path().join(format!("listener-{i}.log")),
        ));
        // The listener answers on the device itself.
        wait_for("the device's TCP listener", Duration::from_secs(10), || {
            tcp_connects(&agent.ns, &ips[i], PROBE_PORT).then_some(())
        });
    }

    // The server peer is allowed the server's address only.
    let server_key = states[0]["server_public_key"].as_str().unwrap();
    for agent in &agents {
        let out = agent
            .ns
            .exec_ok(&["wg", "show", &agent.interface, "allowed-ips"])
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            format!("{server_key}\t{SERVER_IP}/32")
        );
    }

    // Devices that widen their AllowedIPs to the whole overlay (as agents before this release
    // and old plain configs did, or a hostile peer would) still reach no other device: what
    // stops them now is the server, which forwards nothing. (boringtun refuses `wg set` on an
    // existing peer: remove it and add it back wider.)
    let endpoint = format!("{SERVER_LAN}:51820");
    for agent in &agents {
        let iface = agent.interface.as_str();
        agent
            .ns
            .exec_ok(&["wg", "set", iface, "peer", server_key, "remove"])
            .unwrap();
        agent
            .ns
            .exec_ok(&[
                "wg",
                "set",
                iface,
                "peer",
                server_key,
                "allowed-ips",
                "100.64.0.0/10",
                "endpoint",
                &endpoint,
                "persistent-keepalive",
                "25",
            ])
            .unwrap();
    }
    for agent in &agents {
        wait_for(
            "the widened tunnel to reach the server",
            Duration::from_secs(30),
            || ping(&agent.ns, SERVER_IP).then_some(()),
        );
    }
    let isolated = |from: usize| {
        for (to, target) in ips.iter().enumerate().filter(|(to, _)| *to != from) {
            assert!(
                !ping(&agents[from].ns, target),
                "device {from} pinged device {to} ({target})"
            );
            assert!(
                !tcp_connects(&agents[from].ns, target, PROBE_PORT),
                "device {from} opened TCP to device {to} ({target})"
            );
        }
    };
    for from in 0..agents.len() {
        isolated(from);
    }

    // Writing the host's ip_forward resets every interface's value; the hub turns its own off
    // again within seconds. (The kernel resets them only on a change, so toggle it.)
    for value in ["0", "1"] {
        srv.exec_ok(&["sysctl", "-w", &format!("net.ipv4.ip_forward={value}")])
            .unwrap();
    }
    wait_for_or(
        "forwarding off again on the server's interface",
        Duration::from_secs(20),
        || (sysctl(&srv, &iface_forwarding) == "0").then_some(()),
        server_logs,
    );
    assert!(
        server_logs().contains("turned it off again"),
        "{}",
        server_logs()
    );
    isolated(0);

    // The server itself stays reachable: ping, heartbeats on the agent API, Magic DNS.
    for (i, agent) in agents.iter().enumerate() {
        assert!(ping(&agent.ns, SERVER_IP), "device {i} pings the server");
        let id = states[i]["device_id"].as_str().unwrap();
        wait_for("the device online", Duration::from_secs(30), || {
            let (status, body) = api
                .call_in(
                    if i < 2 { "default" } else { "globex" },
                    "GET",
                    &format!("/api/devices/{id}"),
                    None,
                )
                .ok()?;
            (status == 200 && body["status"] == "online").then_some(())
        });
    }
    let sibling = format!(
        "{}.default.watchgrid.internal",
        states[1]["device_name"].as_str().unwrap()
    );
    let out = agents[0]
        .ns
        .exec_ok(&[
            "dig",
            &format!("@{SERVER_IP}"),
            "+time=2",
            "+tries=2",
            "+short",
            &sibling,
        ])
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ips[1]);
    drop(listeners);
}
