//! Tests of configuration parsing, validation and development secret generation.

use std::os::unix::fs::PermissionsExt;

use super::*;

fn load(pairs: &[(&str, &str)], secrets: SecretGeneration) -> Result<Config, ConfigError> {
    Config::load(&MapSource::new(pairs.iter().copied()), secrets)
}

fn problem_for<'a>(err: &'a ConfigError, variable: &str) -> &'a str {
    err.problems
        .iter()
        .find(|p| p.variable == variable)
        .map(|p| p.message.as_str())
        .unwrap_or_else(|| panic!("no problem reported for {variable}: {err}"))
}

#[test]
fn development_needs_no_configuration() {
    let config = load(&[], SecretGeneration::ReadOnly).expect("empty config is valid");
    assert_eq!(config.mode, Mode::Development);
    assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(config.data_dir, PathBuf::from("./watchgrid-data"));
    assert_eq!(config.database.backend(), watchgrid_store::Backend::Sqlite);
    assert_eq!(config.admin_username, "admin");
    assert_eq!(config.log_format, LogFormat::Text);
    // Read-only loading writes nothing and says what would be generated.
    assert!(config.jwt_secret.is_none());
    assert!(config.warnings.iter().any(|w| w.contains("JWT_SECRET")));
}

#[test]
fn development_secrets_are_generated_once_with_mode_0600() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().join("data");
    let data = data_dir.to_str().unwrap();
    let first = load(&[("WATCHGRID_DATA_DIR", data)], SecretGeneration::Generate).unwrap();
    let secret = first.jwt_secret.clone().expect("generated");
    assert!(secret.expose().len() >= JWT_SECRET_MIN_LEN);
    assert!(first.admin_password.is_some());
    assert_eq!(first.warnings.len(), 2, "{:?}", first.warnings);
    for file in ["jwt_secret", "admin_password"] {
        let mode = std::fs::metadata(data_dir.join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
    let dir_mode = std::fs::metadata(&data_dir).unwrap().permissions().mode();
    assert_eq!(dir_mode & 0o777, 0o700);

    let second = load(&[("WATCHGRID_DATA_DIR", data)], SecretGeneration::Generate).unwrap();
    assert_eq!(
        second.jwt_secret, first.jwt_secret,
        "reused, not regenerated"
    );
    assert_eq!(second.admin_password, first.admin_password);
    assert!(second.warnings.is_empty(), "{:?}", second.warnings);

    // A value set in the environment wins over the generated file.
    let explicit = "x".repeat(40);
    let third = load(
        &[("WATCHGRID_DATA_DIR", data), ("JWT_SECRET", &explicit)],
        SecretGeneration::Generate,
    )
    .unwrap();
    assert_eq!(third.jwt_secret.unwrap().expose(), explicit);
}

#[test]
fn servers_starting_together_agree_on_one_generated_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwt_secret");
    let outcomes: Vec<Published> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let path = &path;
                scope.spawn(move || publish_secret_file(path, &format!("value-{i}")).unwrap())
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let created = outcomes
        .iter()
        .filter(|o| **o == Published::Created)
        .count();
    assert_eq!(created, 1, "{outcomes:?}");
    let winner = std::fs::read_to_string(&path).unwrap().trim().to_owned();
    for outcome in &outcomes {
        if let Published::Existing(theirs) = outcome {
            assert_eq!(theirs, &winner);
        }
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no temporary files left behind");
}

#[test]
fn without_hard_links_exclusive_creation_still_picks_one_secret() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("admin_password");
    assert_eq!(
        create_exclusively(&path, "first").unwrap(),
        Published::Created
    );
    assert_eq!(
        create_exclusively(&path, "second").unwrap(),
        Published::Existing("first".into())
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert!(
        no_hard_links(&std::io::Error::from_raw_os_error(1)),
        "EPERM"
    );
    assert!(
        no_hard_links(&std::io::Error::from_raw_os_error(95)),
        "EOPNOTSUPP"
    );
    assert!(
        !no_hard_links(&std::io::Error::from_raw_os_error(28)),
        "ENOSPC is a real failure"
    );
}

#[test]
fn loosened_secret_files_are_restricted_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    load(&[("WATCHGRID_DATA_DIR", data)], SecretGeneration::Generate).unwrap();
    let path = dir.path().join("jwt_secret");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    load(&[("WATCHGRID_DATA_DIR", data)], SecretGeneration::Generate).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn production_reports_every_problem_at_once() {
    let err = load(
        &[("WATCHGRID_MODE", "production"), ("JWT_SECRET", "short")],
        SecretGeneration::Generate,
    )
    .unwrap_err();
    let jwt = problem_for(&err, "JWT_SECRET");
    assert!(jwt.contains("at least 32 characters"), "{jwt}");
    for required in ["FRONTEND_HOST", "ADMIN_PASSWORD", "DATABASE_URL"] {
        assert_eq!(
            problem_for(&err, required),
            "is required in production mode"
        );
    }
    let text = err.to_string();
    assert!(
        text.starts_with("invalid configuration (4 problems):"),
        "{text}"
    );
    assert!(
        text.contains("JWT_SECRET: must be at least 32 characters"),
        "{text}"
    );
}

#[test]
fn production_rejects_placeholders() {
    let err = load(
        &[
            ("WATCHGRID_MODE", "production"),
            ("FRONTEND_HOST", "watchgrid.example.org"),
            ("JWT_SECRET", "changeme-changeme-changeme-changeme"),
            ("ADMIN_PASSWORD", "<your-admin-password>"),
            ("DATABASE_URL", "postgres://watchgrid:pw@db/watchgrid"),
        ],
        SecretGeneration::Generate,
    )
    .unwrap_err();
    assert_eq!(err.problems.len(), 2, "{err}");
    assert!(problem_for(&err, "JWT_SECRET").contains("placeholder"));
    assert!(problem_for(&err, "ADMIN_PASSWORD").contains("placeholder"));
}

#[test]
fn complete_production_configuration_is_accepted() {
    let secret = "0123456789abcdef0123456789abcdef";
    let config = load(
        &[
            ("WATCHGRID_MODE", "production"),
            ("FRONTEND_HOST", "watchgrid.example.org"),
            ("JWT_SECRET", secret),
            ("ADMIN_PASSWORD", "Sturdy-Horse-42"),
            (
                "DATABASE_URL",
                "postgres://watchgrid:hunter2@db:5432/watchgrid?sslmode=require",
            ),
            ("WATCHGRID_LISTEN", "[::]:9000"),
            ("WATCHGRID_LOG_FORMAT", "json"),
        ],
        SecretGeneration::Generate,
    )
    .unwrap();
    assert_eq!(config.mode, Mode::Production);
    assert_eq!(config.data_dir, PathBuf::from("/var/lib/watchgrid"));
    assert_eq!(
        config.database.backend(),
        watchgrid_store::Backend::Postgres
    );
    assert_eq!(
        config.database_display,
        "postgres://watchgrid:***@db:5432/watchgrid?sslmode=require"
    );
    assert_eq!(config.listen.port(), 9000);
    assert_eq!(config.log_format, LogFormat::Json);
    assert!(config.warnings.is_empty());
    // Secrets stay out of Debug output, and so out of logs.
    let debug = format!("{config:?}");
    assert!(!debug.contains(secret) && !debug.contains("Sturdy") && !debug.contains("hunter2"));
}

#[test]
fn malformed_values_are_named() {
    let err = load(
        &[
            ("WATCHGRID_MODE", "staging"),
            ("WATCHGRID_LISTEN", "8080"),
            ("DATABASE_URL", "mysql://x/y"),
            ("WATCHGRID_LOG_FORMAT", "xml"),
            ("WATCHGRID_DB_MAX_CONNECTIONS", "0"),
            ("FRONTEND_HOST", "https://watchgrid.example.org/"),
            ("ADMIN_USERNAME", "bad name"),
        ],
        SecretGeneration::ReadOnly,
    )
    .unwrap_err();
    let named: Vec<&str> = err.problems.iter().map(|p| p.variable).collect();
    assert_eq!(
        named,
        [
            "WATCHGRID_MODE",
            "DATABASE_URL",
            "WATCHGRID_DB_MAX_CONNECTIONS",
            "WATCHGRID_LISTEN",
            "FRONTEND_HOST",
            "ADMIN_USERNAME",
            "WATCHGRID_LOG_FORMAT",
        ]
    );
    assert!(problem_for(&err, "WATCHGRID_LISTEN").contains("\"8080\""));
}

#[test]
fn placeholders_are_recognised() {
    for value in [
        "changeme",
        "CHANGE_ME",
        "<secret>",
        "${JWT_SECRET}",
        "please-replace-me",
        "TODO",
    ] {
        assert!(is_placeholder(value), "{value}");
    }
    for value in [
        "6f1c2a0e9b3d4c5e8f7a6b5c4d3e2f1a",
        "Sturdy-Horse-42",
        "watchgrid.example.org",
    ] {
        assert!(!is_placeholder(value), "{value}");
    }
}

#[test]
fn hosts_are_checked() {
    for ok in [
        "watchgrid.example.org",
        "localhost",
        "10.0.0.1",
        "host:8443",
        "[::1]:443",
        "::1",
    ] {
        assert!(check_host(ok).is_ok(), "{ok}");
    }
    for bad in ["http://x", "x/y", "-bad.example", "host:99999", "a..b"] {
        assert!(check_host(bad).is_err(), "{bad}");
    }
}

#[test]
fn urls_are_redacted() {
    assert_eq!(redact_url("postgres://u:p@h/db"), "postgres://u:***@h/db");
    assert_eq!(redact_url("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_url("sqlite://./x.db"), "sqlite://./x.db");
}

/// Every variable the code reads is documented in docs/production.md, and every variable
/// documented there is read: the doc cannot drift from the code in either direction.
#[test]
fn every_variable_read_is_documented() {
    let doc_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/production.md");
    let doc = std::fs::read_to_string(doc_path).expect("docs/production.md exists");
    let documented = documented_variables(&doc);
    assert!(
        documented.contains("JWT_SECRET"),
        "tables not found in docs/production.md"
    );

    let mut read = BTreeSet::new();
    for mode in ["development", "production"] {
        let dir = tempfile::tempdir().unwrap();
        let source = RecordingSource::new(MapSource::new([
            ("WATCHGRID_MODE", mode),
            ("WATCHGRID_DATA_DIR", dir.path().to_str().unwrap()),
        ]));
        let _ = Config::load(&source, SecretGeneration::Generate);
        read.extend(source.names.lock().unwrap().iter().cloned());
    }
    let undocumented: Vec<_> = read.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "read but not in docs/production.md: {undocumented:?}"
    );
    let unread: Vec<_> = documented.difference(&read).collect();
    assert!(unread.is_empty(), "documented but never read: {unread:?}");
}

/// Names in the first column of the tables under the `### Required` and `### Optional` headings.
fn documented_variables(doc: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut in_table_section = false;
    for line in doc.lines() {
        if let Some(heading) = line.strip_prefix("### ") {
            in_table_section = heading.starts_with("Required") || heading.starts_with("Optional");
            continue;
        }
        if line.starts_with("## ") {
            in_table_section = false;
        }
        if in_table_section {
            if let Some(rest) = line.strip_prefix("| `") {
                if let Some((name, _)) = rest.split_once('`') {
                    names.insert(name.to_owned());
                }
            }
        }
    }
    names
}

#[test]
fn agent_api_must_listen_inside_the_overlay() {
    let err = load(
        &[("WATCHGRID_AGENT_LISTEN", "0.0.0.0:8081")],
        SecretGeneration::ReadOnly,
    )
    .unwrap_err();
    assert!(problem_for(&err, "WATCHGRID_AGENT_LISTEN").contains("inside WATCHGRID_OVERLAY_CIDR"));
    let config = load(
        &[("WATCHGRID_OVERLAY_CIDR", "10.50.0.0/16")],
        SecretGeneration::ReadOnly,
    )
    .unwrap();
    assert_eq!(
        config.fleet.agent_listen.to_string(),
        "10.50.0.1:8081",
        "follows the overlay"
    );
    assert_eq!(config.fleet.endpoint, "localhost:51820");
}

#[test]
fn dns_settings_default_to_the_overlay_and_are_checked() {
    let config = load(&[], SecretGeneration::ReadOnly).unwrap();
    assert_eq!(
        config.dns.listen,
        Some("100.64.0.1:53".parse().unwrap()),
        "the server's overlay address"
    );
    assert!(!config.dns.listen_explicit);
    assert_eq!(config.dns.domain, "watchgrid.internal");
    assert!(config.dns.upstreams.is_empty());
    assert_eq!(config.dns.rate_limit.map(|n| n.get()), Some(500));

    let config = load(
        &[
            ("WATCHGRID_DNS_LISTEN", "off"),
            ("WATCHGRID_DNS_DOMAIN", "Corp.Example."),
            ("WATCHGRID_DNS_UPSTREAMS", "192.0.2.53:5353, 192.0.2.54"),
            ("WATCHGRID_DNS_RATE_LIMIT", "OFF"),
        ],
        SecretGeneration::ReadOnly,
    )
    .unwrap();
    assert_eq!(config.dns.rate_limit, None);
    assert_eq!(config.dns.listen, None);
    assert!(config.dns.listen_explicit);
    assert_eq!(config.dns.domain, "corp.example");
    assert_eq!(
        config.dns.upstreams,
        [
            "192.0.2.53:5353".parse().unwrap(),
            "192.0.2.54:53".parse().unwrap()
        ]
    );

    let err = load(
        &[
            ("WATCHGRID_DNS_LISTEN", "53"),
            ("WATCHGRID_DNS_DOMAIN", "bad_domain.example"),
            ("WATCHGRID_DNS_UPSTREAMS", "1.1.1.1:53,nonsense"),
            ("WATCHGRID_DNS_RATE_LIMIT", "0"),
        ],
        SecretGeneration::ReadOnly,
    )
    .unwrap_err();
    assert!(problem_for(&err, "WATCHGRID_DNS_RATE_LIMIT").contains("above 0, or `off`"));
    assert!(problem_for(&err, "WATCHGRID_DNS_LISTEN").contains("or `off`"));
    assert!(problem_for(&err, "WATCHGRID_DNS_DOMAIN").contains("DNS-safe"));
    assert!(problem_for(&err, "WATCHGRID_DNS_UPSTREAMS").contains("\"nonsense\""));
}

/// A misspelled or invented `WATCHGRID_*` name is one warning each, with the closest known
/// name; known names (the server's and other Watchgrid programs') are not warned about.
#[test]
fn unknown_variables_are_warned_about_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    let config = load(
        &[
            ("WATCHGRID_DATA_DIR", dir.path().to_str().unwrap()),
            ("WATCHGRID_WG_BACKNED", "userspace"),
            ("WATCHGRID_FROBNICATE_EVERYTHING", "1"),
            ("WATCHGRID_AGENT_NO_SSH", "1"),
            ("WATCHGRID_LOG_LEVEL", "info"),
            ("HOME", "/root"),
        ],
        SecretGeneration::Generate,
    )
    .unwrap();
    let unknown: Vec<&String> = config
        .warnings
        .iter()
        .filter(|w| w.starts_with("unknown variable"))
        .collect();
    assert_eq!(
        unknown,
        [
            "unknown variable WATCHGRID_FROBNICATE_EVERYTHING is ignored (see docs/production.md)",
            "unknown variable WATCHGRID_WG_BACKNED is ignored; did you mean WATCHGRID_WG_BACKEND?",
        ],
        "{:?}",
        config.warnings
    );

    // Every documented variable, in either mode, is known.
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/production.md"
    ))
    .unwrap();
    let documented = documented_variables(&doc);
    let pairs: Vec<(&str, &str)> = documented.iter().map(|name| (name.as_str(), "")).collect();
    for mode in ["development", "production"] {
        let mut source = MapSource::new(pairs.iter().copied());
        source.0.insert("WATCHGRID_MODE".into(), mode.into());
        source.0.insert(
            "WATCHGRID_DATA_DIR".into(),
            dir.path().to_str().unwrap().into(),
        );
        let warnings = match Config::load(&source, SecretGeneration::ReadOnly) {
            Ok(config) => config.warnings,
            Err(err) => err.warnings,
        };
        assert!(
            !warnings.iter().any(|w| w.starts_with("unknown variable")),
            "{mode}: {warnings:?}"
        );
    }

    // With the configuration invalid, the notes still come with the problems.
    let err = load(
        &[
            ("WATCHGRID_MODE", "production"),
            ("WATCHGRID_FRONTEND_HOST", "watchgrid.example.com"),
        ],
        SecretGeneration::ReadOnly,
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("note: unknown variable WATCHGRID_FRONTEND_HOST is ignored; did you mean FRONTEND_HOST?"),
        "{err}"
    );
}

#[test]
fn leader_election_accepts_only_none_and_says_the_others_are_not_built() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    for ok in ["none", ""] {
        load(
            &[
                ("WATCHGRID_DATA_DIR", data_dir),
                ("WATCHGRID_LEADER_ELECTION", ok),
            ],
            SecretGeneration::Generate,
        )
        .unwrap();
    }
    let bogus = load(
        &[
            ("WATCHGRID_DATA_DIR", data_dir),
            ("WATCHGRID_LEADER_ELECTION", "bogus"),
        ],
        SecretGeneration::Generate,
    )
    .unwrap_err();
    assert_eq!(
        problem_for(&bogus, "WATCHGRID_LEADER_ELECTION"),
        "must be `none`, `postgres` or `kubernetes` (got \"bogus\")"
    );
    for later in ["postgres", "kubernetes"] {
        let err = load(
            &[
                ("WATCHGRID_DATA_DIR", data_dir),
                ("WATCHGRID_LEADER_ELECTION", later),
            ],
            SecretGeneration::Generate,
        )
        .unwrap_err();
        assert!(
            problem_for(&err, "WATCHGRID_LEADER_ELECTION").contains("not built yet"),
            "{err}"
        );
    }
}
