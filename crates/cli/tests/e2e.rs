//! The `watchgrid` CLI against a real `watchgrid-server` (SQLite, a fresh data directory):
//! log in, list and add users, read the audit log, use API tokens, log out; and the errors a
//! user sees for a wrong password, an unreachable server and a bad argument.

#![forbid(unsafe_code)]
#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

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
        .current_dir(dir.path())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let url = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = Command::new("curl")
            .args(["-fsS", "-o", "/dev/null", &format!("{url}/readyz")])
            .status()
            .is_ok_and(|s| s.success());
        if ready {
            break;
        }
        assert!(Instant::now() < deadline, "server did not become ready");
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let stderr = String::from_utf8(out.stderr.clone()).unwrap();
    let lines: Vec<_> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one error line, got {stderr:?}");
    assert!(lines[0].starts_with("watchgrid: "), "{stderr:?}");
    lines[0].to_owned()
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
