//! Magic DNS for real: the server (userspace WireGuard, DNS on its overlay address) and three
//! agents in their own network namespaces, two in tenant `default` and one in `globex`, and a
//! `dnsmasq` upstream on a LAN address. With `dig` inside an enrolled device's namespace,
//! through the tunnel: its own and a sibling's name over UDP and TCP, another tenant's name
//! NXDOMAIN, a custom record right after creation and gone after deletion, a rename moving the
//! name, PTR, an outside name forwarded to dnsmasq; then malformed, oversized and flooding
//! traffic from a device does not wedge the server; `watchgrid-agent down` ends the tunnel.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use watchgrid_e2e::fleet::{self, Agent, SocketCleanup, ADMIN_PASSWORD, SERVER_LAN};
use watchgrid_e2e::{require_tool, wait_for_or, Api};
use watchgrid_testkit::dig;
use watchgrid_testkit::netns::{require_root, unique_tag, Lan, NetNs, RootLink};

const DNS: &str = "100.64.0.1";
const UPSTREAM: &str = "10.77.0.53";

/// `dig` inside `ns` against Magic DNS: the status and the answer records' data.
fn dig(ns: &NetNs, name: &str, qtype: &str, extra: &[&str]) -> (String, Vec<String>) {
    let at = format!("@{DNS}");
    let mut args = vec![
        "dig",
        &at,
        "+time=2",
        "+tries=1",
        "+noall",
        "+comments",
        "+answer",
        name,
        qtype,
    ];
    args.extend_from_slice(extra);
    let out = ns.exec(&args).unwrap();
    dig::status_and_answers(&String::from_utf8_lossy(&out.stdout))
}

fn a(ns: &NetNs, name: &str) -> (String, Vec<String>) {
    dig(ns, name, "A", &[])
}

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn magic_dns_through_the_tunnel() {
    require_root();
    require_tool("wg", "wireguard-tools");
    require_tool("dig", "bind9-dnsutils");
    require_tool("dnsmasq", "dnsmasq");

    let dir = tempfile::tempdir().unwrap();
    let tag = unique_tag();
    let _sockets = SocketCleanup(
        ["wgs", "wgaa", "wgab", "wgag"]
            .iter()
            .map(|p| format!("{p}{tag}"))
            .collect(),
    );
    let srv = NetNs::new("dsrv").unwrap();
    let lan = Lan::new(&srv, &format!("{SERVER_LAN}/24")).unwrap();
    let net = std::process::id() % 200 + 20;
    let _root = RootLink::new(
        &srv,
        &format!("10.79.{net}.2/30"),
        &format!("10.79.{net}.1/30"),
    )
    .unwrap();

    // The upstream resolver: dnsmasq on its own namespace's LAN address.
    let up = NetNs::new("dup").unwrap();
    lan.attach(&srv, &up, &format!("{UPSTREAM}/24")).unwrap();
    let _dnsmasq = up
        .spawn(
            Path::new("/usr/sbin/dnsmasq"),
            &[
                "--keep-in-foreground",
                "--no-resolv",
                "--no-hosts",
                "--conf-file=/dev/null",
                "--pid-file",
                "--bind-interfaces",
                &format!("--listen-address={UPSTREAM}"),
                "--port=53",
                "--address=/outside.test/192.0.2.77",
                "--local-ttl=300",
                "--user=root",
            ],
            &[],
            &dir.path().join("dnsmasq.log"),
        )
        .unwrap();

    let mut agents = Vec::new();
    for (n, name) in ["a", "b", "g"].iter().enumerate() {
        let ns = NetNs::new(&format!("d{name}")).unwrap();
        lan.attach(&srv, &ns, &format!("10.77.0.{}/24", n + 2))
            .unwrap();
        agents.push(Agent::new(ns, &format!("{name}{tag}"), dir.path()));
    }
    let server_iface = format!("wgs{tag}");
    let server_log = dir.path().join("server.log");
    let upstreams = format!("{UPSTREAM}:53");
    let _server = fleet::start_server(
        &srv,
        &dir.path().join("server-data"),
        &server_iface,
        &server_log,
        &[
            ("WATCHGRID_DNS_UPSTREAMS", &upstreams),
            // Low enough that the flood below goes over it.
            ("WATCHGRID_DNS_RATE_LIMIT", "300"),
        ],
    );
    let server_logs = || std::fs::read_to_string(&server_log).unwrap_or_default();

    let mut api = Api::new(&format!("http://10.79.{net}.1:8080"));
    wait_for_or(
        "the server healthy with WireGuard and DNS up",
        Duration::from_secs(30),
        || match api.call("GET", "/healthz", None) {
            Ok((200, body)) if body["checks"]["dns"] == "ok" => Some(body),
            _ => None,
        },
        server_logs,
    );
    api.login("admin", ADMIN_PASSWORD).unwrap();
    let (status, _) = api
        .call(
            "POST",
            "/api/tenants",
            Some(json!({"slug": "globex", "name": "Globex"})),
        )
        .unwrap();
    assert_eq!(status, 201);
    let token = |api: &Api, tenant: &str| {
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
    let default_token = token(&api, "default");
    let globex_token = token(&api, "globex");

    let mut states: Vec<Value> = Vec::new();
    for (i, agent) in agents.iter_mut().enumerate() {
        let secret = if i < 2 { &default_token } else { &globex_token };
        states.push(agent.enroll(secret));
        agent.run();
    }
    let name = |i: usize| states[i]["device_name"].as_str().unwrap().to_owned();
    let ip = |i: usize| {
        states[i]["overlay_address"]
            .as_str()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .to_owned()
    };
    let d = "watchgrid.internal";
    let (a_ns, g_ns) = (&agents[0].ns, &agents[2].ns);
    // The tunnels are up once the devices' own names answer through them.
    for (i, agent) in agents.iter().enumerate() {
        let tenant = if i < 2 { "default" } else { "globex" };
        let fqdn = format!("{}.{tenant}.{d}", name(i));
        wait_for_or(
            "the device's own name through its tunnel",
            Duration::from_secs(40),
            || (a(&agent.ns, &fqdn).1 == [ip(i)]).then_some(()),
            || format!("{}\n--- server ---\n{}", agent.log(), server_logs()),
        );
    }

    // The agents learned the DNS settings at enrollment. This host runs no systemd-resolved for
    // the namespaces' links, so split DNS falls back to a warning that says what to do.
    assert_eq!(states[0]["dns"]["server"], DNS);
    assert_eq!(states[0]["dns"]["domain"], d);
    let log = agents[0].log();
    assert!(
        log.contains("split DNS not configured") && log.contains(&format!("server=/{d}/{DNS}")),
        "{log}"
    );

    // Own and sibling names over UDP and TCP.
    for transport in [&[][..], &["+tcp"][..]] {
        for i in [0, 1] {
            let fqdn = format!("{}.default.{d}", name(i));
            assert_eq!(
                dig(a_ns, &fqdn, "A", transport),
                ("NOERROR".to_owned(), vec![ip(i)]),
                "{fqdn} {transport:?}"
            );
        }
    }
    // Another tenant's names do not exist, in either direction.
    assert_eq!(a(a_ns, &format!("{}.globex.{d}", name(2))).0, "NXDOMAIN");
    assert_eq!(a(g_ns, &format!("{}.default.{d}", name(0))).0, "NXDOMAIN");
    // PTR.
    let reverse = |ip: &str| {
        let mut octets: Vec<&str> = ip.split('.').collect();
        octets.reverse();
        format!("{}.in-addr.arpa", octets.join("."))
    };
    assert_eq!(
        dig(a_ns, &reverse(&ip(1)), "PTR", &[]).1,
        [format!("{}.default.{d}.", name(1))]
    );
    // An outside name goes to the upstream dnsmasq.
    let (status, answers) = a(a_ns, "host.outside.test");
    assert_eq!(
        (status.as_str(), answers),
        ("NOERROR", vec!["192.0.2.77".to_owned()])
    );

    // A custom record answers right after the API call returns, and is gone after deletion.
    let started = Instant::now();
    let (status, record) = api
        .call(
            "POST",
            "/api/dns/records",
            Some(json!({"name": "api", "type": "A", "value": "192.0.2.10", "ttl": 30})),
        )
        .unwrap();
    assert_eq!(status, 201, "{record}");
    let created_in = started.elapsed();
    let first_answer = {
        let fqdn = format!("api.default.{d}");
        assert_eq!(
            a(a_ns, &fqdn),
            ("NOERROR".to_owned(), vec!["192.0.2.10".to_owned()])
        );
        started.elapsed()
    };
    eprintln!(
        "custom record: API answered in {created_in:?}, first correct DNS answer (one dig) after {first_answer:?}"
    );
    assert_eq!(a(g_ns, &format!("api.default.{d}")).0, "NXDOMAIN");
    let (status, _) = api
        .call(
            "DELETE",
            &format!("/api/dns/records/{}", record["id"].as_str().unwrap()),
            None,
        )
        .unwrap();
    assert_eq!(status, 204);
    assert_eq!(a(a_ns, &format!("api.default.{d}")).0, "NXDOMAIN");

    // Rename moves the name (and the PTR).
    let (status, renamed) = api
        .call(
            "PATCH",
            &format!("/api/devices/{}", states[1]["device_id"].as_str().unwrap()),
            Some(json!({"name": "renamed"})),
        )
        .unwrap();
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(a(a_ns, &format!("{}.default.{d}", name(1))).0, "NXDOMAIN");
    assert_eq!(a(a_ns, &format!("renamed.default.{d}")).1, [ip(1)]);
    assert_eq!(
        dig(a_ns, &reverse(&ip(1)), "PTR", &[]).1,
        [format!("renamed.default.{d}.")]
    );

    // Malformed, oversized and flooding traffic from a device, over the tunnel.
    let before = api.text("/metrics").unwrap();
    let abuse = format!(
        r#"
        exec 3<>/dev/udp/{DNS}/53
        for i in $(seq 1 200); do head -c $((RANDOM % 700 + 1)) /dev/urandom >&3; done
        printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00' >&3
        {{ printf '\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00'; head -c 60000 /dev/urandom; }} | dd bs=60012 count=1 iflag=fullblock status=none >&3
        for i in $(seq 1 5000); do
          printf '\x56\x78\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x05flood\x07default\x09watchgrid\x08internal\x00\x00\x01\x00\x01' >&3
        done
        for fd in 10 11 12 13 14 15 16 17 18 19; do eval "exec $fd<>/dev/tcp/{DNS}/53"; done
        exec 4<>/dev/tcp/{DNS}/53
        {{ printf '\xff\xff'; head -c 65535 /dev/urandom; }} >&4 2>/dev/null
        exec 4>&-
        exec 5<>/dev/tcp/{DNS}/53
        printf '\x40\x00garbage' >&5
        exec 5>&-
        sleep 1.5  # the flood spent this source's query budget; it refills at 300/s
        dig @{DNS} +time=2 +tries=3 +short renamed.default.{d} A
        "#
    );
    let flood_started = Instant::now();
    let out = a_ns.exec(&["bash", "-c", &abuse]).unwrap();
    let flood_took = flood_started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        ip(1),
        "answers while idle TCP connections are held open: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The server still answers everyone, at once, over UDP and TCP, and stays healthy.
    assert_eq!(a(g_ns, &format!("{}.globex.{d}", name(2))).1, [ip(2)]);
    assert_eq!(
        dig(a_ns, &format!("renamed.default.{d}"), "A", &["+tcp"]).1,
        [ip(1)]
    );
    let (status, health) = api.call("GET", "/healthz", None).unwrap();
    assert_eq!(status, 200, "{health}");
    let after = api.text("/metrics").unwrap();
    let nx = "watchgrid_dns_queries_total{rcode=\"nxdomain\"}";
    let flooded = counter(&after, nx) - counter(&before, nx);
    eprintln!("abuse took {flood_took:?}; {flooded} flood queries answered NXDOMAIN");
    // The kernel drops what the socket buffer cannot hold while the machine is busy; what
    // matters is that the flood was served at all and did not wedge anything (checked above).
    assert!(flooded >= 200, "the flood was served: {flooded}");
    // Up to the source's rate: 5,000 queries sent far faster than 300/s went over it, and
    // only device a's budget was spent (device g was answered at once, above).
    let limited_metric = "watchgrid_rate_limit_rejections_total{limiter=\"dns\"}";
    let limited = counter(&after, limited_metric) - counter(&before, limited_metric);
    eprintln!("{limited} flood queries refused by the per-source rate limit");
    assert!(limited > 0, "the flood was rate limited");
    assert!(counter(&after, "watchgrid_dns_forwarded_total") >= 1);

    // watchgrid-agent down stops run and removes the interface; the others carry on.
    let agent = &mut agents[0];
    let out = agent.command(&["down"]);
    assert!(
        out.status.success(),
        "down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(said.contains("stopped watchgrid-agent run"), "{said}");
    let exit = agent
        .process
        .as_mut()
        .unwrap()
        .wait(Duration::from_secs(10));
    assert_eq!(exit.and_then(|s| s.code()), Some(0), "{}", agent.log());
    assert!(agent.log().contains("tunnel down"), "{}", agent.log());
    assert!(!agent
        .ns
        .exec(&["ip", "link", "show", &agent.interface])
        .unwrap()
        .status
        .success());
    assert_eq!(a(&agents[1].ns, &format!("renamed.default.{d}")).1, [ip(1)]);
}
