//! SSH through Watchgrid, for real: the server, a device and an operator in their own network
//! namespaces on one LAN. The device runs the agent (userspace WireGuard) and a real `sshd`
//! that the agent configures through its drop-in: a host certificate from the tenant's host
//! CA, the tenant's user CA, the KRL. The operator's namespace has no WireGuard: `watchgrid
//! ssh` gets a certificate for an ephemeral key and reaches the device through the server's
//! relay with `StrictHostKeyChecking=yes`; plain `ssh` with the block `watchgrid ssh-config`
//! prints works too. A principal the caller is not allowed is refused at signing; a
//! certificate for another principal, an expired certificate and a revoked one (once the
//! agent fetched the new KRL) are refused by sshd, and OpenSSH's own tools parse every certificate and agree with the KRL. After
//! `watchgrid-server ssh-ca rotate`, certificates of the old and the new user CA both log in
//! (and the device's host certificate moves to the new host CA) until the grace period ends;
//! then only the new ones do; the `ssh-config` block written before the rotation keeps
//! working because `ssh-proxy` refreshes its known_hosts file. A renamed device gets a host
//! certificate for its new name.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use watchgrid_e2e::fleet::SocketCleanup;
use watchgrid_e2e::{program, require_tool, wait_for_or, Api};
use watchgrid_testkit::netns::{require_root, unique_tag, Lan, NetNs, Process, RootLink};

const ADMIN_PASSWORD: &str = "E2e-Ssh-Admin-Pass-1";
const SERVER_LAN: &str = "10.79.0.1";
const SSHD: &str = "/usr/sbin/sshd";

/// The key material (base64) of the newest host CA in a `GET /api/ssh/ca` answer.
fn new_host_ca_key(ca: &Value) -> &str {
    let line = ca["host"][1]["public_key"].as_str().unwrap();
    line.split_whitespace().nth(1).unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn keygen(args: &[&str]) -> String {
    let out = std::process::Command::new("ssh-keygen")
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "ssh-keygen {args:?}: {}", text(&out));
    text(&out)
}

/// A new Ed25519 key pair at `path` (and `path.pub`).
fn new_key(path: &Path) {
    keygen(&[
        "-q",
        "-t",
        "ed25519",
        "-N",
        "",
        "-f",
        path.to_str().unwrap(),
    ]);
}

/// The operator: `watchgrid` with an API token, in a namespace without WireGuard.
struct Operator {
    ns: NetNs,
    token: String,
}

impl Operator {
    fn watchgrid(&self, args: &[&str]) -> Output {
        let cli = program("watchgrid");
        let token = format!("WATCHGRID_TOKEN={}", self.token);
        let server = format!("http://{SERVER_LAN}:8080");
        let mut command = vec!["env", &token, cli.to_str().unwrap(), "--server", &server];
        command.extend_from_slice(args);
        self.ns.exec(&command).unwrap()
    }

    /// Plain OpenSSH with the user's key and certificate, through `watchgrid ssh-proxy`.
    fn plain_ssh(&self, key: &Path, known_hosts: &Path, host: &str) -> Output {
        let cli = program("watchgrid");
        let proxy = format!(
            "ProxyCommand=env WATCHGRID_TOKEN={} {} --server http://{SERVER_LAN}:8080 ssh-proxy %h",
            self.token,
            cli.display()
        );
        self.ns
            .exec(&[
                "ssh",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                &format!("UserKnownHostsFile={}", known_hosts.display()),
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "BatchMode=yes",
                "-i",
                key.to_str().unwrap(),
                "-o",
                &proxy,
                &format!("root@{host}"),
                "true",
            ])
            .unwrap()
    }
}

#[test]
fn operators_ssh_to_devices_through_the_server() {
    require_root();
    require_tool("ssh", "openssh-client");
    require_tool("ssh-keygen", "openssh-client");
    assert!(
        Path::new(SSHD).exists(),
        "{SSHD} is missing: apt-get install openssh-server (scripts/test.sh does this)"
    );
    std::fs::create_dir_all("/run/sshd").unwrap();

    let dir = tempfile::tempdir().unwrap();
    let tag = unique_tag();
    let server_iface = format!("wgs{tag}");
    let agent_iface = format!("wgd{tag}");
    let _sockets = SocketCleanup(vec![server_iface.clone(), agent_iface.clone()]);
    let srv = NetNs::new("ssrv").unwrap();
    let lan = Lan::new(&srv, &format!("{SERVER_LAN}/24")).unwrap();
    let net = std::process::id() % 200 + 20;
    let _root = RootLink::new(
        &srv,
        &format!("10.80.{net}.2/30"),
        &format!("10.80.{net}.1/30"),
    )
    .unwrap();
    let device = NetNs::new("sdev").unwrap();
    lan.attach(&srv, &device, "10.79.0.2/24").unwrap();
    let op_ns = NetNs::new("sop").unwrap();
    lan.attach(&srv, &op_ns, "10.79.0.3/24").unwrap();

    // The server.
    let data = dir.path().join("server-data");
    let server_log = dir.path().join("server.log");
    let _server = srv
        .spawn(
            &program("watchgrid-server"),
            &[],
            &[
                ("WATCHGRID_DATA_DIR", data.to_str().unwrap()),
                ("WATCHGRID_LISTEN", "0.0.0.0:8080"),
                ("ADMIN_PASSWORD", ADMIN_PASSWORD),
                ("WATCHGRID_WG_INTERFACE", &server_iface),
                ("WATCHGRID_WG_BACKEND", "userspace"),
                ("WATCHGRID_WG_ENDPOINT", &format!("{SERVER_LAN}:51820")),
                ("WATCHGRID_HEARTBEAT_INTERVAL_SECS", "5"),
            ],
            &server_log,
        )
        .unwrap();
    let server_logs = || std::fs::read_to_string(&server_log).unwrap_or_default();
    let mut api = Api::new(&format!("http://10.80.{net}.1:8080"));
    wait_for_or(
        "the server to be healthy",
        Duration::from_secs(30),
        || match api.call("GET", "/healthz", None) {
            Ok((200, body)) if body["checks"]["ssh_ca"] == "ok" => Some(()),
            _ => None,
        },
        server_logs,
    );
    api.login("admin", ADMIN_PASSWORD).unwrap();
    // The operator: an API token with the operator role; operators may log in as root.
    let (status, token) = api
        .call(
            "POST",
            "/api/tokens",
            Some(json!({"name": "ops", "role": "operator"})),
        )
        .unwrap();
    assert_eq!(status, 201, "{token}");
    let (status, grant) = api
        .call(
            "PUT",
            "/api/ssh/principals",
            Some(json!({"role": "operator", "principals": ["root"]})),
        )
        .unwrap();
    assert_eq!(status, 200, "{grant}");
    let operator = Operator {
        ns: op_ns,
        token: token["token"]["secret"]
            .as_str()
            .or(token["secret"].as_str())
            .unwrap()
            .to_owned(),
    };

    // The device: a host key, a real sshd (its config includes the agent's drop-in), and
    // the agent.
    let dev_dir = dir.path().join("device");
    std::fs::create_dir_all(dev_dir.join("sshd_config.d")).unwrap();
    let host_key = dev_dir.join("ssh_host_ed25519_key");
    new_key(&host_key);
    let sshd_config = dev_dir.join("sshd_config");
    let pid_file = dev_dir.join("sshd.pid");
    std::fs::write(
        &sshd_config,
        format!(
            "Include {dropins}/*.conf\nPort 22\nListenAddress 0.0.0.0\nHostKey {host_key}\n\
             PidFile {pid}\nAuthorizedKeysFile none\nPasswordAuthentication no\n\
             KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\nUsePAM no\n\
             StrictModes no\nLogLevel VERBOSE\n",
            dropins = dev_dir.join("sshd_config.d").display(),
            host_key = host_key.display(),
            pid = pid_file.display(),
        ),
    )
    .unwrap();
    let sshd_log = dir.path().join("sshd.log");
    let _sshd = device
        .spawn(
            Path::new(SSHD),
            &["-D", "-e", "-f", sshd_config.to_str().unwrap()],
            &[],
            &sshd_log,
        )
        .unwrap();
    let sshd_logs = || std::fs::read_to_string(&sshd_log).unwrap_or_default();
    wait_for_or(
        "sshd's pid file",
        Duration::from_secs(10),
        || pid_file.exists().then_some(()),
        sshd_logs,
    );

    let state = tempfile::tempdir().unwrap();
    let agent_log = dir.path().join("agent.log");
    let dropin = dev_dir.join("sshd_config.d/watchgrid.conf");
    let host_pub = format!("{}.pub", host_key.display());
    let agent_args = |rest: &[&'static str]| -> Vec<String> {
        let mut args: Vec<String> = vec![
            "--state-dir".into(),
            state.path().display().to_string(),
            "--interface".into(),
            agent_iface.clone(),
            "--ssh-host-key".into(),
            host_pub.clone(),
            "--sshd-dropin".into(),
            dropin.display().to_string(),
            "--sshd-pid-file".into(),
            pid_file.display().to_string(),
            "--ssh-poll-secs".into(),
            "1".into(),
        ];
        args.extend(rest.iter().map(|s| (*s).to_string()));
        args
    };
    let (_, onboarding) = api
        .call(
            "POST",
            "/api/onboarding-tokens",
            Some(json!({"description": "ssh e2e"})),
        )
        .unwrap();
    let onboarding = onboarding["secret"].as_str().unwrap().to_owned();
    let server_url = format!("http://{SERVER_LAN}:8080");
    let agent = program("watchgrid-agent");
    let mut enroll: Vec<String> = vec![agent.display().to_string()];
    enroll.extend(agent_args(&[]));
    enroll.extend(["enroll", "--server", &server_url, "--token", &onboarding].map(String::from));
    let enroll_refs: Vec<&str> = enroll.iter().map(String::as_str).collect();
    let out = device.exec(&enroll_refs).unwrap();
    assert!(out.status.success(), "enroll: {}", text(&out));
    assert!(
        text(&out).contains("SSH host certificate for "),
        "{}",
        text(&out)
    );
    let run_args = agent_args(&["run"]);
    let run_refs: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let _agent: Process = device.spawn(&agent, &run_refs, &[], &agent_log).unwrap();
    let agent_logs = || std::fs::read_to_string(&agent_log).unwrap_or_default();
    let all_logs = || {
        format!(
            "--- agent ---\n{}\n--- sshd ---\n{}\n--- server ---\n{}",
            agent_logs(),
            sshd_logs(),
            server_logs()
        )
    };
    wait_for_or(
        "the agent to configure and reload sshd",
        Duration::from_secs(60),
        || agent_logs().contains("sshd reloaded").then_some(()),
        all_logs,
    );
    let dropin_text = std::fs::read_to_string(&dropin).unwrap();
    assert!(dropin_text.contains("HostCertificate "), "{dropin_text}");
    let ssh_files = state.path().join("ssh");
    // OpenSSH parses the host certificate the agent installed.
    let host_cert = ssh_files.join("ssh_host_key-cert.pub");
    let listing = keygen(&["-L", "-f", host_cert.to_str().unwrap()]);
    assert!(listing.contains("host certificate"), "{listing}");
    let (_, ca) = api.call("GET", "/api/ssh/ca", None).unwrap();
    let (_, devices) = api.call("GET", "/api/devices", None).unwrap();
    let name = devices["items"][0]["name"].as_str().unwrap().to_owned();
    let overlay_ip = devices["items"][0]["overlay_ip"]
        .as_str()
        .unwrap()
        .to_owned();
    let fqdn = format!("{name}.default.watchgrid.internal");
    assert!(
        listing.contains(&format!("                {fqdn}\n")),
        "{listing}"
    );
    assert!(
        listing.contains(&format!("                {overlay_ip}\n")),
        "{listing}"
    );
    assert!(
        listing.contains(ca["host"][0]["fingerprint"].as_str().unwrap()),
        "{listing}"
    );

    // `watchgrid ssh root@device -- true` from the operator's namespace.
    let out = operator.watchgrid(&["ssh", &format!("root@{name}"), "--", "true"]);
    assert!(
        out.status.success(),
        "watchgrid ssh: {}\n{}",
        text(&out),
        all_logs()
    );
    let out = operator.watchgrid(&["ssh", &name, "--", "id", "-un"]);
    assert!(out.status.success(), "watchgrid ssh: {}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "root");
    assert!(
        sshd_logs().contains("Accepted publickey for root"),
        "{}",
        sshd_logs()
    );
    assert!(
        sshd_logs().contains("ID token:ops@default#"),
        "{}",
        sshd_logs()
    );
    // The relay is audited.
    let (_, audit) = api
        .call("GET", "/api/audit?action=ssh.relay.open", None)
        .unwrap();
    assert!(audit["items"].as_array().unwrap().len() >= 2, "{audit}");
    let metrics = api.text("/metrics").unwrap();
    assert!(
        !metrics.contains("watchgrid_ssh_relays_opened_total 0\n"),
        "{metrics}"
    );
    assert!(
        metrics.contains("watchgrid_ssh_relays_opened_total "),
        "{metrics}"
    );

    // A principal the operator is not allowed: refused at signing, naming it.
    let out = operator.watchgrid(&["ssh", &format!("postgres@{name}"), "--", "true"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("postgres"), "{}", text(&out));

    // The operator's own key with certificates from `watchgrid ssh-cert`, and plain ssh.
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("id_ed25519");
    new_key(&key);
    let known_hosts = keys.path().join("known_hosts");
    std::fs::write(&known_hosts, ca["known_hosts"].as_str().unwrap()).unwrap();
    let cert_for = |validity: &str| -> Value {
        let out = operator.watchgrid(&[
            "--json",
            "ssh-cert",
            "--identity",
            key.to_str().unwrap(),
            "--validity",
            validity,
        ]);
        assert!(out.status.success(), "ssh-cert: {}", text(&out));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let cert_path = PathBuf::from(format!("{}-cert.pub", key.display()));

    // An expired certificate: sshd refuses it.
    let expiring = cert_for("1");
    // sshd judges expiry by the clock: wait until the certificate's end has passed.
    let valid_before = expiring["valid_before"].as_str().unwrap().to_owned();
    watchgrid_testkit::wait::blocking::wait_until(
        "the one-second certificate to expire",
        Duration::from_secs(10),
        || chrono::Utc::now() > chrono::DateTime::parse_from_rfc3339(&valid_before).unwrap(),
    );
    let out = operator.plain_ssh(&key, &known_hosts, &fqdn);
    assert!(!out.status.success(), "an expired certificate logged in");
    wait_for_or(
        "sshd to log the expired certificate",
        Duration::from_secs(5),
        || sshd_logs().contains("expired").then_some(()),
        all_logs,
    );

    // A certificate for another principal than the account: sshd refuses it.
    let (status, grant) = api
        .call(
            "PUT",
            "/api/ssh/principals",
            Some(json!({"role": "operator", "principals": ["deploy", "root"]})),
        )
        .unwrap();
    assert_eq!(status, 200, "{grant}");
    let out = operator.watchgrid(&[
        "ssh-cert",
        "--identity",
        key.to_str().unwrap(),
        "--principal",
        "deploy",
    ]);
    assert!(out.status.success(), "ssh-cert: {}", text(&out));
    let out = operator.plain_ssh(&key, &known_hosts, &fqdn);
    assert!(
        !out.status.success(),
        "a certificate for deploy logged in as root"
    );
    wait_for_or(
        "sshd to log the principal mismatch",
        Duration::from_secs(5),
        || sshd_logs().contains("not a listed principal").then_some(()),
        all_logs,
    );

    // A valid one logs in; once revoked and the KRL fetched, it no longer does.
    let valid = cert_for("600");
    let out = operator.plain_ssh(&key, &known_hosts, &fqdn);
    assert!(
        out.status.success(),
        "plain ssh: {}\n{}",
        text(&out),
        all_logs()
    );
    // `watchgrid ssh-config`'s block makes plain `ssh root@<device>.<tenant>.<domain>` work.
    let config_dir = keys.path().join("watchgrid-config");
    let cli = program("watchgrid");
    let out = operator
        .ns
        .exec(&[
            "env",
            &format!("WATCHGRID_CONFIG_DIR={}", config_dir.display()),
            &format!("WATCHGRID_TOKEN={}", operator.token),
            cli.to_str().unwrap(),
            "--server",
            &format!("http://{SERVER_LAN}:8080"),
            "--tenant",
            "default",
            "ssh-config",
            "--identity",
            key.to_str().unwrap(),
        ])
        .unwrap();
    assert!(out.status.success(), "ssh-config: {}", text(&out));
    let block = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        block.contains("Host *.default.watchgrid.internal\n"),
        "{block}"
    );
    assert!(block.contains("StrictHostKeyChecking yes"), "{block}");
    let ssh_config = keys.path().join("ssh_config");
    std::fs::write(&ssh_config, &block).unwrap();
    // Plain ssh with that block, the CLI's configuration directory in its environment.
    let ssh_with_block = || {
        operator
            .ns
            .exec(&[
                "env",
                &format!("WATCHGRID_CONFIG_DIR={}", config_dir.display()),
                &format!("WATCHGRID_TOKEN={}", operator.token),
                "ssh",
                "-F",
                ssh_config.to_str().unwrap(),
                "-o",
                "BatchMode=yes",
                &format!("root@{fqdn}"),
                "true",
            ])
            .unwrap()
    };
    let out = ssh_with_block();
    assert!(
        out.status.success(),
        "ssh with the ssh-config block:\n{block}\n{}\n{}",
        text(&out),
        all_logs()
    );
    let krl_file = ssh_files.join("revoked_keys");
    let query = |cert: &Path| {
        std::process::Command::new("ssh-keygen")
            .args([
                "-Q",
                "-f",
                krl_file.to_str().unwrap(),
                cert.to_str().unwrap(),
            ])
            .output()
            .unwrap()
    };
    assert!(query(&cert_path).status.success(), "not revoked yet");
    let (status, revoked) = api
        .call(
            "POST",
            "/api/ssh/revocations",
            Some(json!({"serial": valid["serial"], "reason": "e2e"})),
        )
        .unwrap();
    assert_eq!(status, 200, "{revoked}");
    wait_for_or(
        "the agent to fetch the new KRL",
        Duration::from_secs(30),
        || {
            let out = query(&cert_path);
            (!out.status.success() && text(&out).contains("REVOKED")).then_some(())
        },
        all_logs,
    );
    let out = operator.plain_ssh(&key, &known_hosts, &fqdn);
    assert!(!out.status.success(), "a revoked certificate logged in");
    wait_for_or(
        "sshd to log the revoked certificate",
        Duration::from_secs(5),
        || sshd_logs().contains("revoked").then_some(()),
        all_logs,
    );
    // OpenSSH parses the operator's certificate and lists the revoked serial in the device's KRL.
    keygen(&["-L", "-f", cert_path.to_str().unwrap()]);
    let listing = keygen(&["-Q", "-l", "-f", krl_file.to_str().unwrap()]);
    assert!(
        listing.contains(&format!("serial: {}", valid["serial"])),
        "{listing}"
    );
    // Other certificates still work.
    let out = operator.watchgrid(&["ssh", &format!("root@{name}"), "--", "true"]);
    assert!(
        out.status.success(),
        "watchgrid ssh after a revocation: {}",
        text(&out)
    );

    // Rotation: a certificate of the current CA, then new CA keys with a short grace period.
    let old_key = keys.path().join("old_ed25519");
    new_key(&old_key);
    let out = operator.watchgrid(&["ssh-cert", "--identity", old_key.to_str().unwrap()]);
    assert!(out.status.success(), "ssh-cert: {}", text(&out));
    let renewals = agent_logs().matches("SSH host certificate renewed").count();
    let rotate = srv
        .exec(&[
            "env",
            &format!("WATCHGRID_DATA_DIR={}", data.display()),
            program("watchgrid-server").to_str().unwrap(),
            "ssh-ca",
            "rotate",
            "--tenant",
            "default",
            "--grace",
            "25s",
        ])
        .unwrap();
    assert!(rotate.status.success(), "rotate: {}", text(&rotate));
    assert!(
        text(&rotate).contains("new user CA generation 2"),
        "{}",
        text(&rotate)
    );
    let trusted = ssh_files.join("trusted_user_ca_keys");
    let trusted_lines = || {
        std::fs::read_to_string(&trusted)
            .unwrap_or_default()
            .lines()
            .count()
    };
    wait_for_or(
        "the device to trust both user CAs and hold a host certificate of the new host CA",
        Duration::from_secs(15),
        || {
            (trusted_lines() == 2
                && agent_logs().matches("SSH host certificate renewed").count() > renewals)
                .then_some(())
        },
        all_logs,
    );
    let (_, rotated) = api.call("GET", "/api/ssh/ca", None).unwrap();
    let new_host_ca = rotated["host"][1]["fingerprint"].as_str().unwrap();
    let listing = keygen(&["-L", "-f", host_cert.to_str().unwrap()]);
    assert!(listing.contains(new_host_ca), "{listing}");
    // Clients refresh their known_hosts (watchgrid ssh does it each time): both host CAs.
    std::fs::write(&known_hosts, rotated["known_hosts"].as_str().unwrap()).unwrap();
    let new = cert_for("600");
    assert_eq!(new["ca_fingerprint"], rotated["user"][1]["fingerprint"]);
    let out = operator.plain_ssh(&key, &known_hosts, &fqdn);
    assert!(
        out.status.success(),
        "new-CA certificate: {}\n{}",
        text(&out),
        all_logs()
    );
    let out = operator.plain_ssh(&old_key, &known_hosts, &fqdn);
    assert!(
        out.status.success(),
        "old-CA certificate during the grace period: {}\n{}",
        text(&out),
        all_logs()
    );
    let out = operator.watchgrid(&["ssh", &format!("root@{name}"), "--", "true"]);
    assert!(
        out.status.success(),
        "watchgrid ssh after the rotation: {}",
        text(&out)
    );
    // The ssh-config block written before the rotation still works: its ProxyCommand
    // (`watchgrid ssh-proxy`) refreshes the known_hosts file the block names, which listed
    // only the old host CA, while the device now presents a certificate of the new one.
    let before = std::fs::read_to_string(config_dir.join("ssh/known_hosts_default")).unwrap();
    assert!(
        !before.contains(new_host_ca_key(&rotated)),
        "not refreshed yet"
    );
    let out = ssh_with_block();
    assert!(
        out.status.success(),
        "ssh with the pre-rotation ssh-config block: {}\n{}",
        text(&out),
        all_logs()
    );
    let after = std::fs::read_to_string(config_dir.join("ssh/known_hosts_default")).unwrap();
    assert_eq!(after, rotated["known_hosts"].as_str().unwrap());
    // Once the grace period is over, the device trusts the new user CA only.
    wait_for_or(
        "the old user CA to drop out",
        Duration::from_secs(45),
        || (trusted_lines() == 1).then_some(()),
        all_logs,
    );
    let out = operator.plain_ssh(&old_key, &known_hosts, &fqdn);
    assert!(
        !out.status.success(),
        "an old-CA certificate logged in after the grace period"
    );
    let out = operator.plain_ssh(&key, &known_hosts, &fqdn);
    assert!(
        out.status.success(),
        "new-CA certificate after the grace period: {}",
        text(&out)
    );
    keygen(&["-L", "-f", &format!("{}-cert.pub", old_key.display())]);

    // A renamed device gets a host certificate for its new Magic DNS name at the next poll.
    let device_id = devices["items"][0]["id"].as_str().unwrap().to_owned();
    let renewals = agent_logs().matches("SSH host certificate renewed").count();
    let (status, renamed) = api
        .call(
            "PATCH",
            &format!("/api/devices/{device_id}"),
            Some(json!({"name": "renamed"})),
        )
        .unwrap();
    assert_eq!(status, 200, "{renamed}");
    wait_for_or(
        "the host certificate for the new name",
        Duration::from_secs(15),
        || (agent_logs().matches("SSH host certificate renewed").count() > renewals).then_some(()),
        all_logs,
    );
    let listing = keygen(&["-L", "-f", host_cert.to_str().unwrap()]);
    assert!(
        listing.contains("                renamed.default.watchgrid.internal\n"),
        "{listing}"
    );
    wait_for_or(
        "watchgrid ssh to the renamed device",
        Duration::from_secs(10),
        || {
            operator
                .watchgrid(&["ssh", "root@renamed", "--", "true"])
                .status
                .success()
                .then_some(())
        },
        all_logs,
    );
    // Deleting the device revokes its host certificate: ssh refuses the host key once it has
    // the tenant's KRL as `RevokedHostKeys` (the ssh-config block names the file; ssh-proxy
    // refreshes it). Straight to the device's sshd on the LAN, so that nothing but the
    // revocation changes between the two attempts.
    let renamed_fqdn = "renamed.default.watchgrid.internal";
    let revoked_file = config_dir.join("ssh/revoked_host_keys_default");
    assert!(
        block.contains(&format!("RevokedHostKeys {}", revoked_file.display())),
        "{block}"
    );
    let direct = || {
        operator
            .ns
            .exec(&[
                "ssh",
                "-F",
                ssh_config.to_str().unwrap(),
                "-o",
                "BatchMode=yes",
                "-o",
                "ProxyCommand=none",
                "-o",
                "HostName=10.79.0.2",
                "-o",
                &format!("HostKeyAlias={renamed_fqdn}"),
                &format!("root@{renamed_fqdn}"),
                "true",
            ])
            .unwrap()
    };
    let out = direct();
    assert!(
        out.status.success(),
        "ssh to the device before its deletion: {}\n{}",
        text(&out),
        all_logs()
    );
    let (status, deleted) = api
        .call("DELETE", &format!("/api/devices/{device_id}"), None)
        .unwrap();
    assert_eq!(status, 204, "{deleted}");
    // Any ssh through the block refreshes the file (this one then finds no device).
    let out = ssh_with_block();
    assert!(!out.status.success(), "a deleted device was reached");
    let host_cert_revoked = std::process::Command::new("ssh-keygen")
        .args([
            "-Q",
            "-f",
            revoked_file.to_str().unwrap(),
            host_cert.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        text(&host_cert_revoked).contains("REVOKED"),
        "the refreshed KRL does not list the deleted device's host certificate: {}",
        text(&host_cert_revoked)
    );
    let out = direct();
    assert!(
        !out.status.success(),
        "ssh accepted the deleted device's host certificate"
    );
    assert!(
        text(&out).contains("revoked"),
        "ssh refused for another reason: {}",
        text(&out)
    );
}
