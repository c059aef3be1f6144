//! Devices join the fleet, for real: the server and two agents in their own network
//! namespaces on one LAN, each with a userspace WireGuard interface. Both agents enroll, reach
//! the server's overlay address through the tunnel, heartbeat and show up online; `wg show`
//! lists both peers; deleting a device cuts its tunnel and frees its address; a restarted
//! server keeps every device; a stock `wireguard-go` peer with a downloaded config joins; and a
//! server re-keyed with `watchgrid-server wireguard rekey` is refused by the agent with the
//! documented message.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use watchgrid_e2e::fleet::{self, Agent, SocketCleanup, ADMIN_PASSWORD, SERVER_LAN};
use watchgrid_e2e::{require_tool, wait_for, wait_for_or, Api};
use watchgrid_testkit::netns::{require_root, unique_tag, Lan, NetNs, Process, RootLink};

struct Server {
    process: Process,
}

fn start_server(ns: &NetNs, data: &Path, interface: &str, log: &Path) -> Server {
    Server {
        process: fleet::start_server(ns, data, interface, log, &[]),
    }
}

fn healthy(api: &Api) -> Option<Value> {
    match api.call("GET", "/healthz", None) {
        Ok((200, body)) if body["checks"]["wireguard"] == "ok" => Some(body),
        _ => None,
    }
}

fn device_status(api: &Api, id: &str) -> Option<String> {
    let (status, body) = api.call("GET", &format!("/api/devices/{id}"), None).ok()?;
    (status == 200).then(|| body["status"].as_str().unwrap_or_default().to_owned())
}

fn ping(ns: &NetNs, address: &str) -> bool {
    ns.exec(&["ping", "-c", "1", "-W", "1", address])
        .is_ok_and(|o| o.status.success())
}

#[test]
fn devices_join_the_fleet() {
    require_root();
    require_tool("wg", "wireguard-tools");
    require_tool("wireguard-go", "wireguard-go");
    require_tool("ping", "iputils-ping");

    let dir = tempfile::tempdir().unwrap();
    let tag = unique_tag();
    // Userspace interfaces keep their UAPI socket in the host's /var/run/wireguard whatever
    // the namespace; remove this test's sockets however it ends.
    let _sockets = SocketCleanup(
        ["wgs", "wgaa", "wgab", "wgc"]
            .iter()
            .map(|p| format!("{p}{tag}"))
            .collect(),
    );
    let srv = NetNs::new("srv").unwrap();
    let lan = Lan::new(&srv, &format!("{SERVER_LAN}/24")).unwrap();
    let net = std::process::id() % 200 + 20;
    let _root = RootLink::new(
        &srv,
        &format!("10.78.{net}.2/30"),
        &format!("10.78.{net}.1/30"),
    )
    .unwrap();
    let mut agents = Vec::new();
    for (n, name) in ["a", "b"].iter().enumerate() {
        let ns = NetNs::new(name).unwrap();
        lan.attach(&srv, &ns, &format!("10.77.0.{}/24", n + 2))
            .unwrap();
        agents.push(Agent::new(ns, &format!("{name}{tag}"), dir.path()));
    }
    let data = dir.path().join("server-data");
    let server_iface = format!("wgs{tag}");
    let server_log = dir.path().join("server.log");
    let mut server = start_server(&srv, &data, &server_iface, &server_log);
    let server_logs = || std::fs::read_to_string(&server_log).unwrap_or_default();

    let mut api = Api::new(&format!("http://10.78.{net}.1:8080"));
    wait_for(
        "the server to be healthy with its WireGuard interface up",
        Duration::from_secs(30),
        || healthy(&api),
    );
    api.login("admin", ADMIN_PASSWORD).unwrap();
    let (_, token) = api
        .call(
            "POST",
            "/api/onboarding-tokens",
            Some(json!({"description": "e2e", "max_uses": 5})),
        )
        .unwrap();
    let token = token["secret"].as_str().unwrap().to_owned();

    // Both agents enroll and come online through their tunnels.
    let mut ids = Vec::new();
    for agent in &mut agents {
        let state = agent.enroll(&token);
        ids.push(state["device_id"].as_str().unwrap().to_owned());
        agent.run();
    }
    for (agent, id) in agents.iter().zip(&ids) {
        wait_for("the device to be online", Duration::from_secs(40), || {
            (device_status(&api, id).as_deref() == Some("online")).then_some(())
        });
        assert!(
            ping(&agent.ns, "100.64.0.1"),
            "ping through the tunnel\n{}",
            agent.log()
        );
    }
    let wg = srv.exec_ok(&["wg", "show", &server_iface]).unwrap();
    let wg = String::from_utf8_lossy(&wg.stdout).into_owned();
    assert_eq!(wg.matches("peer: ").count(), 2, "{wg}");
    assert_eq!(
        wg.matches("latest handshake").count(),
        2,
        "both peers have handshakes:\n{wg}"
    );
    assert!(
        server_logs().contains("Heartbeat from device"),
        "{}",
        server_logs()
    );
    let metrics = api.text("/metrics").unwrap();
    assert!(metrics.contains("watchgrid_wireguard_peers 2"), "{metrics}");

    // Deleting a device cuts its tunnel within seconds and frees its address.
    let (status, deleted) = api
        .call("GET", &format!("/api/devices/{}", ids[0]), None)
        .unwrap();
    assert_eq!(status, 200);
    let freed = deleted["overlay_ip"].as_str().unwrap().to_owned();
    let (status, _) = api
        .call("DELETE", &format!("/api/devices/{}", ids[0]), None)
        .unwrap();
    assert_eq!(status, 204);
    wait_for(
        "the deleted device's tunnel to stop",
        Duration::from_secs(10),
        || (!ping(&agents[0].ns, "100.64.0.1")).then_some(()),
    );
    assert!(
        ping(&agents[1].ns, "100.64.0.1"),
        "the other device is unaffected"
    );
    if let Some(mut p) = agents[0].process.take() {
        p.terminate(Duration::from_secs(10));
    }

    // A stock WireGuard peer (wireguard-go) with a downloaded plain config joins, and gets the
    // address the deleted device freed.
    let (status, plain) = api
        .call("POST", "/api/devices", Some(json!({"name": "phone"})))
        .unwrap();
    assert_eq!(status, 201, "{plain}");
    assert_eq!(
        plain["device"]["overlay_ip"].as_str().unwrap(),
        freed,
        "the freed address is reused"
    );
    let phone = NetNs::new("c").unwrap();
    lan.attach(&srv, &phone, "10.77.0.9/24").unwrap();
    let phone_iface = format!("wgc{tag}");
    let _wggo = phone
        .spawn(
            Path::new("/usr/bin/env"),
            &["wireguard-go", "-f", &phone_iface],
            &[("WG_PROCESS_FOREGROUND", "1")],
            &dir.path().join("wireguard-go.log"),
        )
        .unwrap();
    wait_for("wireguard-go's interface", Duration::from_secs(10), || {
        phone
            .exec(&["ip", "link", "show", &phone_iface])
            .ok()
            .filter(|o| o.status.success())
    });
    let config = plain["wireguard_config"].as_str().unwrap();
    let stripped: String = config
        .lines()
        .filter(|l| !l.starts_with("Address"))
        .map(|l| format!("{l}\n"))
        .collect();
    let conf_path = dir.path().join("phone.conf");
    std::fs::write(&conf_path, stripped).unwrap();
    phone
        .exec_ok(&["wg", "setconf", &phone_iface, conf_path.to_str().unwrap()])
        .unwrap();
    phone
        .exec_ok(&[
            "ip",
            "addr",
            "add",
            &format!("{freed}/32"),
            "dev",
            &phone_iface,
        ])
        .unwrap();
    phone
        .exec_ok(&["ip", "link", "set", &phone_iface, "up"])
        .unwrap();
    phone
        .exec_ok(&["ip", "route", "add", "100.64.0.0/10", "dev", &phone_iface])
        .unwrap();
    wait_for(
        "the wireguard-go peer to reach the server",
        Duration::from_secs(20),
        || ping(&phone, "100.64.0.1").then_some(()),
    );

    // A restarted server keeps every device; the agent carries on without re-enrolling.
    assert!(server
        .process
        .terminate(Duration::from_secs(40))
        .is_some_and(|s| s.success()));
    server = start_server(&srv, &data, &server_iface, &server_log);
    wait_for(
        "the restarted server to be healthy",
        Duration::from_secs(30),
        || healthy(&api),
    );
    api.login("admin", ADMIN_PASSWORD).unwrap();
    let before = agents[1].log().matches("heartbeat ok").count();
    // The agent's old WireGuard session is unknown to the restarted server: WireGuard
    // re-handshakes after about 15 s of silence, and the agent backs off meanwhile.
    wait_for_or(
        "heartbeats after the restart",
        Duration::from_secs(120),
        || (agents[1].log().matches("heartbeat ok").count() > before).then_some(()),
        || {
            format!(
                "--- agent ---\n{}\n--- server ---\n{}",
                agents[1].log(),
                server_logs()
            )
        },
    );
    assert!(ping(&agents[1].ns, "100.64.0.1"));
    // Heartbeats reach the database within a flush interval (1 s).
    wait_for(
        "the device online after the restart",
        Duration::from_secs(5),
        || (device_status(&api, &ids[1]).as_deref() == Some("online")).then_some(()),
    );
    let (_, list) = api.call("GET", "/api/devices", None).unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");

    // A server re-keyed on purpose (`wireguard rekey`; it never replaces a key by itself while
    // devices pin it) is refused by the agent.
    assert!(server.process.terminate(Duration::from_secs(40)).is_some());
    let rekey = std::process::Command::new(watchgrid_e2e::program("watchgrid-server"))
        .args(["wireguard", "rekey", "--yes"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("WATCHGRID_DATA_DIR", &data)
        .output()
        .unwrap();
    assert!(
        rekey.status.success(),
        "{}",
        String::from_utf8_lossy(&rekey.stderr)
    );
    server = start_server(&srv, &data, &server_iface, &server_log);
    wait_for("the server with a new key", Duration::from_secs(30), || {
        healthy(&api)
    });
    let exit = agents[1]
        .process
        .as_mut()
        .unwrap()
        .wait(Duration::from_secs(180));
    let log = agents[1].log();
    assert_eq!(
        exit.and_then(|s| s.code()),
        Some(3),
        "the agent exits with status 3:\n{log}"
    );
    assert!(log.contains("the server's WireGuard key changed"), "{log}");
    assert!(
        log.contains("watchgrid-agent enroll --server"),
        "the message says what to do:\n{log}"
    );
    drop(server);
}
