//! The `watchgrid` CLI against a real `watchgrid-server` (SQLite, a fresh data directory, no
//! WireGuard interface: `WATCHGRID_WG_BACKEND=none`): log in, list and add users, read the
//! audit log, use API tokens, log out; onboarding tokens and devices; and the errors a user
//! sees for a wrong password, an unreachable server, an unknown device and a bad argument.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use watchgrid_testkit::wait::blocking::wait_until;

const ADMIN_PASSWORD: &str = "Cli-Admin-Pass-1";

/// `watchgrid-server` is built next to `watchgrid` by `cargo build --workspace` (which
/// `scripts/test.sh` runs before the tests).
fn server_binary() -> PathBuf {
    let cli = Path::new(env!("CARGO_BIN_EXE_watchgrid"));
    let server = cli.with_file_name("watchgrid-server");
    assert!(
        server.is_file(),
        "{} is missing: build it first (cargo build -p watchgrid-server)",
        server.display()
    );
    server
}

struct Server {
    child: Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let child = Command::new(server_binary())
        .env_clear()
        .env("WATCHGRID_LISTEN", format!("127.0.0.1:{port}"))
        .env("ADMIN_PASSWORD", ADMIN_PASSWORD)
        // No WireGuard interface: the control plane only.
        .env("WATCHGRID_WG_BACKEND", "none")
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    wait_until("the server to be ready", Duration::from_secs(30), || {
        Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", &format!("{url}/readyz")])
            .status()
            .is_ok_and(|s| s.success())
    });
    Server {
        child,
        url,
        _dir: dir,
    }
}

/// Runs the CLI with its own configuration directory.
struct Cli {
    config: tempfile::TempDir,
}

impl Cli {
    fn new() -> Self {
        Self {
            config: tempfile::tempdir().unwrap(),
        }
    }

    fn run(&self, args: &[&str], stdin: &str, envs: &[(&str, &str)]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_watchgrid"));
        command
            .args(args)
            .env("WATCHGRID_CONFIG_DIR", self.config.path())
            .env_remove("WATCHGRID_SERVER")
            .env_remove("WATCHGRID_TOKEN")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run(args, stdin, &[]);
        assert!(
            out.status.success(),
            "watchgrid {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }
}

/// stderr is one line, `watchgrid: ...`; returns it.
fn error_line(out: &Output) -> String {
    watchgrid_clientkit::testing::one_error_line(out, "watchgrid")
}

#[test]
fn an_operator_session_end_to_end() {
    let server = start_server();
    let cli = Cli::new();
    let url_owned = server.url.clone();
    let url = url_owned.as_str();

    // A wrong password: exit 1, one clear line.
    let wrong = cli.run(
        &[
            "--server",
            url,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        "Not-The-Pass-1\n",
        &[],
    );
    assert_eq!(wrong.status.code(), Some(1));
    assert!(error_line(&wrong).contains("invalid credentials"));

    let login = cli.ok(
        &[
            "--server",
            url,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
    assert!(
        login.contains("Logged in to") && login.contains("admin"),
        "{login}"
    );
    let session = cli.config.path().join("session.json");
    let mode = std::fs::metadata(&session).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert!(!std::fs::read_to_string(&session)
        .unwrap()
        .contains(ADMIN_PASSWORD));

    let who = cli.ok(&["whoami"], "");
    assert!(who.contains("admin") && who.contains("default"), "{who}");

    cli.ok(
        &[
            "users",
            "add",
            "carol",
            "--role",
            "operator",
            "--password-stdin",
        ],
        "Carols-Pass-word-1\n",
    );
    let users = cli.ok(&["users", "list"], "");
    assert!(
        users
            .lines()
            .any(|l| l.contains("carol") && l.contains("operator")),
        "{users}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["--json", "users", "list"], "")).unwrap();
    let listed = json
        .as_array()
        .or_else(|| json["items"].as_array())
        .unwrap();
    assert!(listed.iter().any(|u| u["username"] == "carol"), "{json}");

    // A weak password is refused with the rule that failed, on one line.
    let weak = cli.run(
        &[
            "users",
            "add",
            "dan",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        "password\n",
        &[],
    );
    assert_eq!(weak.status.code(), Some(1));
    let line = error_line(&weak);
    assert!(
        line.contains("password") && line.contains("commonly used"),
        "{line}"
    );

    // A bad argument: exit 2, naming it.
    let bad = cli.run(&["users", "add", "erin", "--role", "boss"], "", &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(error_line(&bad).contains("--role"));

    let audit = cli.ok(&["audit", "--action", "user.create"], "");
    assert!(
        audit.contains("user.create") && audit.contains("admin"),
        "{audit}"
    );

    // An API token for automation.
    let secret = cli.ok(&["tokens", "create", "ci", "--role", "viewer"], "");
    let secret = secret.trim();
    assert!(secret.starts_with("wgt_"), "{secret}");
    let other = Cli::new();
    let via_token = other.run(
        &["--server", url, "whoami"],
        "",
        &[("WATCHGRID_TOKEN", secret)],
    );
    assert!(
        via_token.status.success(),
        "{}",
        String::from_utf8_lossy(&via_token.stderr)
    );
    let text = String::from_utf8(via_token.stdout).unwrap();
    assert!(
        text.contains("token:ci") && text.contains("viewer"),
        "{text}"
    );

    cli.ok(&["logout"], "");
    assert!(!session.exists(), "logout removes the session");
    let after = cli.run(&["--server", url, "whoami"], "", &[]);
    assert_eq!(after.status.code(), Some(1));
    error_line(&after);

    // The server going away: one line naming it.
    drop(server);
    let gone = cli.run(&["--server", url, "version"], "", &[]);
    assert_eq!(gone.status.code(), Some(1));
    let line = error_line(&gone);
    assert!(
        line.contains("cannot reach") && line.contains(url),
        "{line}"
    );
}

/// Log `cli` in to `url` as the administrator.
fn login(cli: &Cli, url: &str) {
    cli.ok(
        &[
            "--server",
            url,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        &format!("{ADMIN_PASSWORD}\n"),
    );
}

/// Any 32 bytes in base64 make a WireGuard public key as far as the server can tell.
const AGENT_KEY: &str = "MsFOkrCrPb/saX3s6N3LSEW4svOJSSVYV46mweRelVs=";

/// `POST /api/agent/register` as `watchgrid-agent enroll` sends it; the status and the body.
fn register(url: &str, token: &str, hostname: &str) -> (u16, serde_json::Value) {
    let body = serde_json::json!({
        "token": token,
        "hostname": hostname,
        "os": "linux",
        "agent_version": "0.1.0",
        "wg_public_key": AGENT_KEY,
    });
    let out = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            &body.to_string(),
            &format!("{url}/api/agent/register"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (
        status.trim().parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// A wg-quick file as sections of `key = value` lines (comments and blank lines skipped);
/// panics on anything else.
fn wg_quick(text: &str) -> Vec<(String, Vec<(String, String)>)> {
    let mut sections: Vec<(String, Vec<(String, String)>)> = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            sections.push((name.to_owned(), Vec::new()));
            continue;
        }
        let (key, value) = line.split_once('=').unwrap_or_else(|| panic!("{line:?}"));
        let section = sections.last_mut().unwrap_or_else(|| panic!("{line:?}"));
        section
            .1
            .push((key.trim().to_owned(), value.trim().to_owned()));
    }
    sections
}

fn value<'a>(section: &'a [(String, String)], key: &str) -> Option<&'a str> {
    section
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// The line of `table` naming `name` in its first column.
fn row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn devices_end_to_end() {
    let server = start_server();
    let url = server.url.as_str();
    let cli = Cli::new();
    login(&cli, url);

    // An onboarding token: the secret alone on stdout, the enroll command on stderr.
    let out = cli.run(
        &[
            "tokens",
            "onboarding",
            "create",
            "--description",
            "e2e batch",
            "--max-uses",
            "5",
            "--tag",
            "lab",
        ],
        "",
        &[],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let secret = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(secret.starts_with("wgo_"), "{secret}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains(&format!(
            "watchgrid-agent enroll --server {url} --token {}…",
            &secret[..8]
        )),
        "{stderr}"
    );
    // The secret itself is on standard output only, never in the hint on standard error.
    assert!(!stderr.contains(&secret), "{stderr}");
    let tokens = cli.ok(&["tokens", "onboarding", "list"], "");
    let line = tokens
        .lines()
        .find(|l| l.contains("e2e batch"))
        .unwrap_or_else(|| panic!("{tokens}"));
    assert!(
        line.contains("0/5") && line.contains("lab") && line.ends_with("active"),
        "{line}"
    );
    // API tokens are listed apart, as before.
    assert!(!cli.ok(&["tokens", "list"], "").contains("e2e batch"));

    // A device enrolls (as watchgrid-agent enroll would) and is pending until its first
    // heartbeat.
    let (status, answer) = register(url, &secret, "build-host");
    assert_eq!(status, 200, "{answer}");
    let name = answer["device_name"].as_str().unwrap().to_owned();
    let id = answer["device_id"].as_str().unwrap().to_owned();
    let list = cli.ok(&["devices", "list"], "");
    assert!(list.starts_with("NAME "), "{list}");
    let line = row(&list, &name).unwrap_or_else(|| panic!("{list}"));
    for part in ["pending", "agent", "lab", "never", id.as_str()] {
        assert!(line.contains(part), "{part} missing from {line:?}");
    }
    assert!(row(
        &cli.ok(&["devices", "list", "--status", "pending"], ""),
        &name
    )
    .is_some());
    assert!(row(
        &cli.ok(&["devices", "list", "--status", "online"], ""),
        &name
    )
    .is_none());
    let tokens = cli.ok(&["tokens", "onboarding", "list"], "");
    assert!(tokens.contains("1/5"), "{tokens}");

    // Rename by name; the old name is then unknown.
    let renamed = cli.ok(&["devices", "rename", &name, "builder-1"], "");
    assert!(renamed.contains("builder-1"), "{renamed}");
    let gone = cli.run(&["devices", "show", &name], "", &[]);
    assert_eq!(gone.status.code(), Some(1));
    assert_eq!(
        error_line(&gone),
        format!("watchgrid: device {name} not found in the current tenant")
    );

    // Tag by id; show by name.
    cli.ok(&["devices", "tag", &id, "--add", "site:fra"], "");
    let shown = cli.ok(&["devices", "show", "builder-1"], "");
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("tags") && l.ends_with("lab,site:fra")),
        "{shown}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["--json", "devices", "show", &id], "")).unwrap();
    assert_eq!(json["name"], "builder-1");
    assert_eq!(json["tags"], serde_json::json!(["lab", "site:fra"]));
    assert_eq!(json["status"], "pending");

    // A plain peer: its wg-quick file, with the private key, written 0600.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("phone.conf");
    let added = cli.ok(
        &[
            "devices",
            "add-plain",
            "phone",
            "--tag",
            "mobile",
            "--output",
            file.to_str().unwrap(),
        ],
        "",
    );
    assert!(added.contains("phone") && added.contains("0600"), "{added}");
    let mode = std::fs::metadata(&file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&file).unwrap();
    let sections = wg_quick(&text);
    let names: Vec<&str> = sections.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["Interface", "Peer"], "{text}");
    let interface = &sections[0].1;
    let peer = &sections[1].1;
    assert_eq!(
        value(interface, "PrivateKey").map(str::len),
        Some(44),
        "{text}"
    );
    assert!(
        value(interface, "Address").is_some_and(|a| a.ends_with("/32")),
        "{text}"
    );
    for key in ["PublicKey", "Endpoint", "AllowedIPs"] {
        assert!(value(peer, key).is_some(), "{key} missing from {text}");
    }
    let plain = cli.ok(&["devices", "list", "--tag", "mobile"], "");
    assert_eq!(plain.lines().count(), 2, "{plain}");
    let line = row(&plain, "phone").unwrap_or_else(|| panic!("{plain}"));
    assert!(line.contains("unknown") && line.contains("plain"), "{line}");
    // Downloaded again later, the file has no private key.
    let again = cli.ok(&["devices", "config", "phone"], "");
    assert!(
        !again.contains(value(interface, "PrivateKey").unwrap()),
        "{again}"
    );
    assert_eq!(wg_quick(&again).len(), 2, "{again}");
    assert_eq!(
        value(&wg_quick(&again)[1].1, "PublicKey"),
        value(peer, "PublicKey")
    );

    // Local validation: exit 2, one line naming the argument, nothing sent.
    let bad = cli.run(&["devices", "rename", "phone", "Bad_Name"], "", &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(error_line(&bad).contains("'NEW_NAME'"));
    let bad = cli.run(
        &["tokens", "onboarding", "create", "--expires-in-hours", "0"],
        "",
        &[],
    );
    assert_eq!(bad.status.code(), Some(2));
    assert!(error_line(&bad).contains("'--expires-in-hours'"));

    // Delete both.
    let deleted = cli.ok(&["devices", "delete", "builder-1"], "");
    assert!(deleted.contains(&id), "{deleted}");
    cli.ok(&["devices", "delete", "phone"], "");
    let list = cli.ok(&["devices", "list"], "");
    assert_eq!(list.lines().count(), 1, "{list}");
    let json: serde_json::Value =
        serde_json::from_str(&cli.ok(&["--json", "devices", "list"], "")).unwrap();
    assert_eq!(json, serde_json::json!([]));

    // A revoked onboarding token no longer registers anything.
    let second = cli.ok(
        &[
            "tokens",
            "onboarding",
            "create",
            "--description",
            "revoke me",
        ],
        "",
    );
    let second = second.trim();
    let listed: serde_json::Value =
        serde_json::from_str(&cli.ok(&["--json", "tokens", "onboarding", "list"], "")).unwrap();
    let token_id = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["description"] == "revoke me")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let revoked = cli.ok(&["tokens", "onboarding", "revoke", &token_id], "");
    assert!(revoked.contains(&token_id), "{revoked}");
    let (status, answer) = register(url, second, "late-host");
    assert_eq!(status, 401, "{answer}");
    let tokens = cli.ok(&["tokens", "onboarding", "list"], "");
    let line = tokens
        .lines()
        .find(|l| l.contains("revoke me"))
        .unwrap_or_else(|| panic!("{tokens}"));
    assert!(line.ends_with("revoked"), "{line}");
    let missing = cli.run(&["tokens", "onboarding", "revoke", &id], "", &[]);
    assert_eq!(missing.status.code(), Some(1));
    assert_eq!(
        error_line(&missing),
        format!("watchgrid: onboarding token {id} not found in the current tenant")
    );
}

#[test]
fn dns_records_end_to_end() {
    let server = start_server();
    let cli = Cli::new();
    login(&cli, &server.url);

    let added = cli.ok(
        &[
            "dns", "records", "add", "www", "cname", "web", "--ttl", "60",
        ],
        "",
    );
    assert!(
        added.contains(
            "www.default.watchgrid.internal. CNAME web.default.watchgrid.internal. (TTL 60"
        ),
        "{added}"
    );
    cli.ok(&["dns", "records", "add", "api", "A", "192.0.2.10"], "");
    cli.ok(
        &[
            "dns",
            "records",
            "add",
            "_http._tcp.api",
            "SRV",
            "10 5 8080 api",
        ],
        "",
    );

    let table = cli.ok(&["dns", "records", "list"], "");
    let names: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    assert_eq!(names, ["_http._tcp.api", "api", "www"], "{table}");
    let srv = record_row(&table, "_http._tcp.api").unwrap();
    assert!(
        srv.contains("10 5 8080 api.default.watchgrid.internal."),
        "{srv}"
    );

    let only_a = cli.ok(&["--json", "dns", "records", "list", "--type", "a"], "");
    let only_a: serde_json::Value = serde_json::from_str(&only_a).unwrap();
    assert_eq!(only_a.as_array().unwrap().len(), 1);
    assert_eq!(only_a[0]["value"], "192.0.2.10");
    assert_eq!(only_a[0]["ttl"], 300);

    // The server's validation, in one line naming the field.
    let outside = cli.run(
        &[
            "dns",
            "records",
            "add",
            "mail",
            "CNAME",
            "mail.example.com.",
        ],
        "",
        &[],
    );
    assert_eq!(outside.status.code(), Some(1));
    let line = error_line(&outside);
    assert!(line.contains("value") && line.contains("outside"), "{line}");
    let beside = cli.run(&["dns", "records", "add", "www", "TXT", "hello"], "", &[]);
    assert_eq!(beside.status.code(), Some(1));
    assert!(
        error_line(&beside).contains("CNAME"),
        "{}",
        error_line(&beside)
    );

    // Bad arguments: exit 2, naming the argument, before any request.
    for (args, arg) in [
        (
            vec!["dns", "records", "add", "a b", "A", "192.0.2.1"],
            "'NAME'",
        ),
        (
            vec!["dns", "records", "add", "x", "MX", "10 mail"],
            "'TYPE'",
        ),
        (
            vec!["dns", "records", "add", "x", "A", "192.0.2.1", "--ttl", "0"],
            "--ttl",
        ),
    ] {
        let out = cli.run(&args, "", &[]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let line = error_line(&out);
        assert!(line.contains(arg), "{args:?}: {line}");
    }

    // rm by the id list shows; the record is gone; an unknown id is a clear error.
    let id = record_row(&table, "www")
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let removed = cli.ok(&["dns", "records", "rm", &id], "");
    assert!(
        removed.contains(&format!("Deleted DNS record {id}")),
        "{removed}"
    );
    let table = cli.ok(&["dns", "records", "list"], "");
    assert!(record_row(&table, "www").is_none(), "{table}");
    let again = cli.run(&["dns", "records", "rm", &id], "", &[]);
    assert_eq!(again.status.code(), Some(1));
    assert!(
        error_line(&again).contains("not found"),
        "{}",
        error_line(&again)
    );

    // Audited.
    let audit = cli.ok(&["audit"], "");
    assert!(
        audit.contains("dns_record.create") && audit.contains("dns_record.delete"),
        "{audit}"
    );
}

/// The line of a `dns records list` table whose NAME (second column) is `name`.
fn record_row<'a>(table: &'a str, name: &str) -> Option<&'a str> {
    table
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name))
}

/// A fresh install grants no SSH principal: the first `watchgrid ssh` says exactly which
/// command to run, that command (`ssh-grants add`) works, and `watchgrid ssh` then gets its
/// certificate and runs ssh with the tenant's KRL as `RevokedHostKeys`. `ssh-grants list` and
/// `remove` show and undo grants.
#[test]
fn ssh_grants_end_to_end() {
    let server = start_server();
    let cli = Cli::new();
    login(&cli, &server.url);
    let dir = tempfile::tempdir().unwrap();
    let wg_file = dir.path().join("web.conf");
    cli.ok(
        &[
            "devices",
            "add-plain",
            "web",
            "--output",
            wg_file.to_str().unwrap(),
        ],
        "",
    );
    // Stands in for ssh: succeeds only if given a RevokedHostKeys file OpenSSH can read.
    let fake_ssh = dir.path().join("fake-ssh");
    std::fs::write(
        &fake_ssh,
        "#!/bin/sh\nfound=\nfor a in \"$@\"; do case \"$a\" in RevokedHostKeys=*) \
         ssh-keygen -Q -l -f \"${a#RevokedHostKeys=}\" >/dev/null || exit 4; found=1;; esac; \
         done\n[ -n \"$found\" ] || exit 3\n",
    )
    .unwrap();
    std::fs::set_permissions(&fake_ssh, std::fs::Permissions::from_mode(0o755)).unwrap();
    let ssh = |cli: &Cli| {
        cli.run(
            &[
                "ssh",
                "--ssh-program",
                fake_ssh.to_str().unwrap(),
                "root@web",
                "--",
                "true",
            ],
            "",
            &[],
        )
    };

    let refused = ssh(&cli);
    assert_eq!(refused.status.code(), Some(1));
    let line = error_line(&refused);
    let hint = "watchgrid --tenant default ssh-grants add --user admin root";
    assert!(line.contains(hint), "{line}");
    // Run what it says (the program and its arguments, as printed).
    let suggested: Vec<&str> = hint.split_whitespace().skip(1).collect();
    let added = cli.ok(&suggested, "");
    assert!(
        added.contains("user admin may log in as root in tenant default"),
        "{added}"
    );
    let out = ssh(&cli);
    assert!(
        out.status.success(),
        "watchgrid ssh after the grant: {:?} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    cli.ok(
        &["ssh-grants", "add", "--role", "operator", "deploy", "root"],
        "",
    );
    let table = cli.ok(&["ssh-grants", "list"], "");
    assert!(
        row(&table, "role:operator").is_some_and(|r| r.contains("deploy,root")),
        "{table}"
    );
    assert!(
        row(&table, "user:admin").is_some_and(|r| r.contains("root")),
        "{table}"
    );
    let removed = cli.ok(&["ssh-grants", "remove", "--user", "admin", "root"], "");
    assert!(removed.contains("(grant removed)"), "{removed}");
    let listed = cli.ok(&["--json", "ssh-grants", "list"], "");
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["role"], "operator");

    // Argument errors: one line naming the argument, exit 2, no request.
    let bad = cli.run(&["ssh-grants", "add", "--user", "admin", "-x"], "", &[]);
    assert_eq!(bad.status.code(), Some(2));
    let bad = cli.run(&["ssh-grants", "add", "--role", "boss", "root"], "", &[]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        error_line(&bad).contains("'--role'"),
        "{}",
        error_line(&bad)
    );
    let unknown = cli.run(&["ssh-grants", "add", "--user", "nobody", "root"], "", &[]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(
        error_line(&unknown).contains("user nobody not found"),
        "{}",
        error_line(&unknown)
    );
}

/// A wrong `--server` says what is wrong with it: a path that is no API endpoint names the URL
/// asked, and `https://` against the plain HTTP port says the server speaks HTTP there.
#[test]
fn a_wrong_server_url_is_named() {
    let server = start_server();
    let cli = Cli::new();
    let wrong = format!("{}/wrong", server.url);
    let out = cli.run(
        &[
            "--server",
            &wrong,
            "login",
            "--username",
            "admin",
            "--password-stdin",
        ],
        ADMIN_PASSWORD,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        error_line(&out),
        format!(
            "watchgrid: {wrong}/api/auth/login is not a Watchgrid API endpoint (404): pass \
             --server the server's base URL, such as https://watchgrid.example.com"
        )
    );

    let https = server.url.replace("http://", "https://");
    let out = cli.run(&["--server", &https, "version"], "", &[]);
    assert_eq!(out.status.code(), Some(1));
    let line = error_line(&out);
    assert!(
        line.starts_with(&format!(
            "watchgrid: cannot reach {https} : the server speaks plain HTTP on this port, not HTTPS"
        )),
        "{line}"
    );
}
