//! The server's one typed [`Config`], built once at start-up from environment variables and
//! passed down explicitly. Nothing else in the server reads the environment.
//!
//! Parsing goes through the small [`Source`] trait, so tests build configurations from a map
//! without touching the process environment. Validation collects *every* problem and reports
//! them together, so an operator fixes a `.env` in one pass.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
#[cfg(test)]
use std::sync::Mutex;

use rand::distributions::{Alphanumeric, DistString};
use watchgrid_store::DatabaseUrl;

/// Where configuration values come from.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;

    /// Every variable name the source holds, so unknown `WATCHGRID_*` names can be warned
    /// about. A source that cannot list its names returns none.
    fn names(&self) -> Vec<String> {
        Vec::new()
    }
}

/// The process environment: the production source.
#[derive(Debug, Default)]
pub struct EnvSource;

impl Source for EnvSource {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect()
    }
}

/// A fixed map, for tests.
#[derive(Debug, Default, Clone)]
pub struct MapSource(pub HashMap<String, String>);

impl MapSource {
    pub fn new<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }
}

impl Source for MapSource {
    fn get(&self, name: &str) -> Option<String> {
        self.0.get(name).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.0.keys().cloned().collect()
    }
}

/// Wraps a source and remembers every name asked for; a test checks them against the docs.
#[cfg(test)]
#[derive(Debug)]
pub struct RecordingSource<S> {
    inner: S,
    pub names: Mutex<BTreeSet<String>>,
}

#[cfg(test)]
impl<S: Source> RecordingSource<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            names: Mutex::new(BTreeSet::new()),
        }
    }
}

#[cfg(test)]
impl<S: Source> Source for RecordingSource<S> {
    fn get(&self, name: &str) -> Option<String> {
        if let Ok(mut names) = self.names.lock() {
            names.insert(name.to_owned());
        }
        self.inner.get(name)
    }

    fn names(&self) -> Vec<String> {
        self.inner.names()
    }
}

/// `development`: the first run needs no configuration. `production`: every Required variable
/// must be set to a real value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// A value that must never reach a log: `Debug` and `Display` print `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Whether loading may write generated development secrets to the data directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretGeneration {
    /// `serve` and `migrate`: generate missing development secrets once and reuse them.
    Generate,
    /// `check-config`: validate only, write nothing.
    ReadOnly,
}

/// The server's configuration. Built by [`Config::load`]; see `docs/production.md`.
#[derive(Debug, Clone)]
pub struct Config {
    pub mode: Mode,
    pub data_dir: PathBuf,
    pub database: DatabaseUrl,
    /// `DATABASE_URL` with any password replaced by `***`, for logs.
    pub database_display: String,
    pub db_max_connections: u32,
    pub listen: SocketAddr,
    pub frontend_host: String,
    pub jwt_secret: Option<Secret>,
    pub admin_username: String,
    pub admin_password: Option<Secret>,
    pub log_format: LogFormat,
    pub log_level: String,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub rate_limits: crate::ratelimit::Capacities,
    /// Devices (agents and plain peers) one tenant may have.
    pub max_devices_per_tenant: u32,
    /// Audit rows older than this many days are deleted.
    pub audit_retention_days: u32,
    pub fleet: FleetConfig,
    pub dns: DnsConfig,
    pub ssh: SshConfig,
    /// Things worth telling the operator once logging is up (generated secrets, defaults).
    pub warnings: Vec<String>,
}

/// The WireGuard hub and the agent protocol.
#[derive(Debug, Clone)]
pub struct FleetConfig {
    /// The overlay network; its first address is the server's.
    pub overlay: ipnet::Ipv4Net,
    pub interface: String,
    pub listen_port: u16,
    /// `host:port` agents dial.
    pub endpoint: String,
    /// The server's WireGuard key and config (wg-quick format, mode 0600).
    pub wg_config: PathBuf,
    pub backend: WgBackendChoice,
    /// Where the agent API listens: the server's overlay address.
    pub agent_listen: SocketAddr,
    pub heartbeat_interval_secs: u32,
}

impl FleetConfig {
    /// The server's address on the overlay: the network's first host.
    pub fn server_ip(&self) -> std::net::Ipv4Addr {
        std::net::Ipv4Addr::from(u32::from(self.overlay.network()) + 1)
    }
}

/// Magic DNS.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// UDP and TCP listeners; `None` when `WATCHGRID_DNS_LISTEN=off`.
    pub listen: Option<SocketAddr>,
    /// Whether `WATCHGRID_DNS_LISTEN` was set explicitly (then a failure to bind turns the `dns`
    /// health check red even without a WireGuard interface of the server's own).
    pub listen_explicit: bool,
    /// The suffix, lower case, without a trailing dot.
    pub domain: String,
    /// Resolvers for names outside the domain, tried in order; empty means REFUSED.
    pub upstreams: Vec<SocketAddr>,
    /// Queries per second (also the burst) answered per source address; `None` when
    /// `WATCHGRID_DNS_RATE_LIMIT=off`.
    pub rate_limit: Option<std::num::NonZeroU32>,
}

/// The SSH certificate authority.
#[derive(Debug, Clone)]
pub struct SshConfig {
    /// Where the per-tenant CA keys `ca_<tenant>_user` / `ca_<tenant>_host` live (mode 0600).
    pub ca_dir: PathBuf,
    /// The Magic DNS suffix (`WATCHGRID_DNS_DOMAIN`, read with the DNS settings): devices are
    /// `<device>.<tenant>.<domain>`; host certificates and the `@cert-authority` line name it.
    pub dns_domain: String,
    /// How long devices' host certificates are valid; agents renew them at half-life.
    pub host_cert_validity_secs: u32,
}

/// Which WireGuard implementation drives the hub interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WgBackendChoice {
    /// The kernel module when the host has it, else userspace (boringtun).
    Auto,
    Kernel,
    Userspace,
    /// This replica drives no interface (an API-only replica, or a benchmark).
    None,
}

/// Every problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub problems: Vec<Problem>,
    /// What would have been warned about had the configuration been valid (unknown
    /// variables): often the cause of a problem, e.g. a required variable misspelled.
    pub warnings: Vec<String>,
}

/// One variable and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub variable: &'static str,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.problems.len();
        writeln!(
            f,
            "invalid configuration ({count} problem{}):",
            if count == 1 { "" } else { "s" }
        )?;
        for problem in &self.problems {
            writeln!(f, "  - {}: {}", problem.variable, problem.message)?;
        }
        for warning in &self.warnings {
            writeln!(f, "  note: {warning}")?;
        }
        write!(f, "See docs/production.md for every variable.")
    }
}

impl std::error::Error for ConfigError {}

/// One warning per `WATCHGRID_*` variable in the source that neither the server nor another
/// Watchgrid program reads (a misspelling is otherwise silently ignored), with the closest
/// known name when one is near.
fn unknown_variables(r: &Reader<'_>) -> Vec<String> {
    let asked = r.asked.borrow();
    let known = || {
        asked
            .iter()
            .map(String::as_str)
            .chain(OTHER_PROGRAMS_VARIABLES.iter().copied())
    };
    let mut names = r.source.names();
    names.sort();
    names
        .into_iter()
        .filter(|name| name.starts_with("WATCHGRID_") && !known().any(|k| k == name))
        .map(|name| {
            // `WATCHGRID_FRONTEND_HOST` for `FRONTEND_HOST`: a prefix added out of habit.
            let unprefixed = name
                .strip_prefix("WATCHGRID_")
                .and_then(|rest| known().find(|k| *k == rest))
                .map(|k| (0, k));
            let closest = unprefixed.or_else(|| {
                known()
                    .filter(|k| k.starts_with("WATCHGRID_"))
                    .map(|k| (edit_distance(&name, k), k))
                    .min()
                    .filter(|(distance, _)| *distance <= 3)
            });
            match closest {
                Some((_, suggestion)) => {
                    format!("unknown variable {name} is ignored; did you mean {suggestion}?")
                }
                None => format!("unknown variable {name} is ignored (see docs/production.md)"),
            }
        })
        .collect()
}

/// Levenshtein distance over bytes (variable names are ASCII).
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous[j] + usize::from(ca != *cb);
            current.push(substitute.min(previous[j + 1] + 1).min(current[j] + 1));
        }
        previous = current;
    }
    previous[b.len()]
}

/// The variables that must be set to a real value in production (the Required table).
pub const REQUIRED_IN_PRODUCTION: &[&str] = &[
    "FRONTEND_HOST",
    "JWT_SECRET",
    "ADMIN_PASSWORD",
    "DATABASE_URL",
];

/// The minimum length of `JWT_SECRET`, as the runbook's first-install checklist says.
pub const JWT_SECRET_MIN_LEN: usize = 32;

const JWT_SECRET_FILE: &str = "jwt_secret";
const ADMIN_PASSWORD_FILE: &str = "admin_password";

/// `WATCHGRID_*` names that other Watchgrid programs read (the agent, the CLI, the test and
/// benchmark tooling): they may share the server's environment and are not misspellings.
const OTHER_PROGRAMS_VARIABLES: &[&str] = &[
    "WATCHGRID_AGENT_INTERFACE",
    "WATCHGRID_AGENT_LOG_FORMAT",
    "WATCHGRID_AGENT_LOG_LEVEL",
    "WATCHGRID_AGENT_NO_SSH",
    "WATCHGRID_AGENT_SSHD_DROPIN",
    "WATCHGRID_AGENT_SSHD_PID_FILE",
    "WATCHGRID_AGENT_SSH_HOST_KEY",
    "WATCHGRID_AGENT_SSH_POLL_SECS",
    "WATCHGRID_AGENT_STATE_DIR",
    "WATCHGRID_AGENT_TOKEN",
    "WATCHGRID_CONFIG_DIR",
    "WATCHGRID_SERVER",
    "WATCHGRID_TOKEN",
    "WATCHGRID_BENCH_PG_URL",
    "WATCHGRID_PG_BIN",
    "WATCHGRID_SSH_CA_BACKUP_DIR",
    "WATCHGRID_SSH_CA_BACKUP_ITER",
    "WATCHGRID_SSH_CA_BACKUP_PASSPHRASE_FILE",
    "WATCHGRID_TEST_DATABASE_URL",
    "WATCHGRID_UPDATE_SNAPSHOTS",
];

/// Collects values and problems while a configuration is read.
struct Reader<'a> {
    source: &'a dyn Source,
    problems: Vec<Problem>,
    /// Every name asked for: what the server knows, for the unknown-variable warnings.
    asked: std::cell::RefCell<BTreeSet<String>>,
}

impl Reader<'_> {
    /// The trimmed value, `None` when unset or empty.
    fn get(&self, name: &str) -> Option<String> {
        self.asked.borrow_mut().insert(name.to_owned());
        self.source
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn problem(&mut self, variable: &'static str, message: impl Into<String>) {
        self.problems.push(Problem {
            variable,
            message: message.into(),
        });
    }

    /// Parse with `parse`, or fall back to `default` when unset; a parse failure is a problem.
    fn parse<T>(
        &mut self,
        name: &'static str,
        default: T,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> T
    where
        T: Clone,
    {
        match self.get(name) {
            None => default,
            Some(raw) => match parse(&raw) {
                Ok(value) => value,
                Err(reason) => {
                    self.problem(name, format!("{reason} (got {raw:?})"));
                    default
                }
            },
        }
    }
}

impl Config {
    /// Read, validate and (in development, with [`SecretGeneration::Generate`]) complete the
    /// configuration. Returns every problem at once.
    pub fn load(source: &dyn Source, secrets: SecretGeneration) -> Result<Config, ConfigError> {
        let mut r = Reader {
            source,
            problems: Vec::new(),
            asked: std::cell::RefCell::new(BTreeSet::new()),
        };
        let mut warnings = Vec::new();

        let mode = r.parse("WATCHGRID_MODE", Mode::Development, |v| match v {
            "development" => Ok(Mode::Development),
            "production" => Ok(Mode::Production),
            _ => Err("must be `development` or `production`".into()),
        });

        if mode == Mode::Production {
            for &name in REQUIRED_IN_PRODUCTION {
                match r.get(name) {
                    None => r.problem(name, "is required in production mode"),
                    Some(value) if is_placeholder(&value) => r.problem(
                        name,
                        "is a placeholder value; set a real one before starting in production",
                    ),
                    Some(_) => {}
                }
            }
        }

        let default_data_dir = match mode {
            Mode::Development => "./watchgrid-data",
            Mode::Production => "/var/lib/watchgrid",
        };
        let data_dir = PathBuf::from(
            r.get("WATCHGRID_DATA_DIR")
                .unwrap_or_else(|| default_data_dir.to_owned()),
        );

        let default_db = format!("sqlite://{}", data_dir.join("watchgrid.db").display());
        let raw_db = r.get("DATABASE_URL").unwrap_or(default_db);
        let database = match DatabaseUrl::parse(&raw_db) {
            Ok(url) => Some(url),
            Err(err) => {
                r.problem("DATABASE_URL", err.to_string());
                None
            }
        };
        let database_display = redact_url(&raw_db);

        let db_max_connections = r.parse("WATCHGRID_DB_MAX_CONNECTIONS", 10, |v| {
            match v.parse::<u32>() {
                Ok(n) if (1..=1000).contains(&n) => Ok(n),
                _ => Err("must be a whole number from 1 to 1000".into()),
            }
        });

        let listen = r.parse(
            "WATCHGRID_LISTEN",
            SocketAddr::from(([0, 0, 0, 0], 8080)),
            |v| {
                SocketAddr::from_str(v).map_err(|_| {
                    "must be an address and port such as 0.0.0.0:8080 or [::]:8080".into()
                })
            },
        );

        let frontend_host = match r.get("FRONTEND_HOST") {
            Some(host) => {
                if let Err(reason) = check_host(&host) {
                    r.problem("FRONTEND_HOST", format!("{reason} (got {host:?})"));
                }
                host
            }
            None => "localhost".to_owned(),
        };

        let jwt_secret = r.get("JWT_SECRET");
        if let Some(secret) = &jwt_secret {
            if secret.chars().count() < JWT_SECRET_MIN_LEN {
                r.problem(
                    "JWT_SECRET",
                    format!(
                        "must be at least {JWT_SECRET_MIN_LEN} characters (it has {}); \
                         generate one with `openssl rand -hex 32`",
                        secret.chars().count()
                    ),
                );
            }
        }
        let admin_password = r.get("ADMIN_PASSWORD");

        let admin_username = r.parse("ADMIN_USERNAME", "admin".to_owned(), |v| {
            if v.len() <= 64
                && v.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-@".contains(c))
            {
                Ok(v.to_owned())
            } else {
                Err(
                    "must be at most 64 characters of letters, digits, `.`, `_`, `-` and `@`"
                        .into(),
                )
            }
        });

        let log_format = r.parse("WATCHGRID_LOG_FORMAT", LogFormat::Text, |v| match v {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            _ => Err("must be `text` or `json`".into()),
        });
        let log_level = r.parse("WATCHGRID_LOG_LEVEL", "info".to_owned(), |v| {
            tracing_subscriber::EnvFilter::try_new(v)
                .map(|_| v.to_owned())
                .map_err(|e| format!("is not a valid log filter: {e}"))
        });

        let trusted_proxies = r.parse("WATCHGRID_TRUSTED_PROXIES", Vec::new(), |v| {
            v.split(',')
                .map(str::trim)
                .filter(|part| !part.is_empty())
                .map(|part| {
                    part.parse::<ipnet::IpNet>()
                        .or_else(|_| part.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                        .map_err(|_| {
                            format!("{part:?} is not a CIDR such as 10.0.0.0/8 or an address")
                        })
                })
                .collect()
        });
        let capacity = |r: &mut Reader<'_>, name: &'static str, default: u32| {
            let default = std::num::NonZeroU32::new(default).unwrap_or(std::num::NonZeroU32::MIN);
            r.parse(name, default, |v| {
                v.parse::<std::num::NonZeroU32>()
                    .ok()
                    .filter(|n| n.get() <= 1_000_000)
                    .ok_or_else(|| {
                        "must be a whole number from 1 to 1000000 (requests per minute)".to_owned()
                    })
            })
        };
        let rate_limits = crate::ratelimit::Capacities {
            login: capacity(&mut r, "WATCHGRID_RATELIMIT_LOGIN_CAPACITY", 10),
            registration: capacity(&mut r, "WATCHGRID_RATELIMIT_REGISTRATION_CAPACITY", 60),
            unauthenticated: capacity(&mut r, "WATCHGRID_RATELIMIT_UNAUTHENTICATED_CAPACITY", 600),
            device_creation: capacity(&mut r, "WATCHGRID_RATELIMIT_DEVICE_CREATION_CAPACITY", 60),
        };
        let max_devices_per_tenant = r.parse("WATCHGRID_MAX_DEVICES_PER_TENANT", 10_000, |v| {
            v.parse::<u32>()
                .ok()
                .filter(|n| (1..=16_777_216).contains(n))
                .ok_or_else(|| "must be a whole number of devices from 1 to 16777216".to_owned())
        });
        let audit_retention_days = r.parse("WATCHGRID_AUDIT_RETENTION_DAYS", 365, |v| {
            v.parse::<u32>()
                .ok()
                .filter(|d| (1..=36_500).contains(d))
                .ok_or_else(|| "must be a whole number of days from 1 to 36500".to_owned())
        });

        let fleet = read_fleet(&mut r, mode, &data_dir, &frontend_host);
        let dns = read_dns(&mut r, &fleet);
        let ssh = read_ssh(&mut r, mode, &data_dir, &dns.domain);
        // Leader election is not built yet. Refuse the values that promise it rather than
        // accept them and let two replicas each believe they lead.
        r.parse("WATCHGRID_LEADER_ELECTION", (), |v| match v {
            "none" => Ok(()),
            "postgres" | "kubernetes" => Err(
                "names leader election, which is not built yet: only `none` works today (run \
                 one replica with WireGuard and the others with WATCHGRID_WG_BACKEND=none)"
                    .into(),
            ),
            _ => Err("must be `none`, `postgres` or `kubernetes`".into()),
        });
        warnings.extend(unknown_variables(&r));

        if !r.problems.is_empty() {
            return Err(ConfigError {
                problems: r.problems,
                warnings,
            });
        }
        let Some(database) = database else {
            unreachable!("a DATABASE_URL parse failure is recorded as a problem")
        };

        let mut config = Config {
            mode,
            data_dir,
            database,
            database_display,
            db_max_connections,
            listen,
            frontend_host,
            jwt_secret: jwt_secret.map(Secret::new),
            admin_username,
            admin_password: admin_password.map(Secret::new),
            log_format,
            log_level,
            trusted_proxies,
            rate_limits,
            max_devices_per_tenant,
            audit_retention_days,
            fleet,
            dns,
            ssh,
            warnings: Vec::new(),
        };

        if mode == Mode::Development {
            config
                .fill_development_secrets(secrets, &mut warnings)
                .map_err(|message| ConfigError {
                    problems: vec![Problem {
                        variable: "WATCHGRID_DATA_DIR",
                        message,
                    }],
                    warnings: Vec::new(),
                })?;
        }
        config.warnings = warnings;
        Ok(config)
    }

    /// In development, secrets that are not set are generated once into the data directory
    /// (mode 0600) and reused on later starts.
    fn fill_development_secrets(
        &mut self,
        secrets: SecretGeneration,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        let missing: Vec<(&str, &str)> = [
            ("JWT_SECRET", JWT_SECRET_FILE, self.jwt_secret.is_none()),
            (
                "ADMIN_PASSWORD",
                ADMIN_PASSWORD_FILE,
                self.admin_password.is_none(),
            ),
        ]
        .into_iter()
        .filter(|(_, _, missing)| *missing)
        .map(|(var, file, _)| (var, file))
        .collect();
        if missing.is_empty() {
            return Ok(());
        }
        if secrets == SecretGeneration::Generate {
            ensure_private_dir(&self.data_dir)?;
        }
        for (variable, file) in missing {
            let path = self.data_dir.join(file);
            let value = match read_secret_file(&path)? {
                Some(value) => value,
                None if secrets == SecretGeneration::ReadOnly => {
                    warnings.push(format!(
                        "{variable} is not set; development mode will generate it into {} on first start",
                        path.display()
                    ));
                    continue;
                }
                None => {
                    let value = match variable {
                        "JWT_SECRET" => generate_jwt_secret(),
                        _ => generate_password(),
                    };
                    match publish_secret_file(&path, &value)? {
                        Published::Created => {
                            warnings.push(format!(
                                "{variable} is not set: generated one into {} (mode 0600, development mode only)",
                                path.display()
                            ));
                            value
                        }
                        // Another process starting on the same data directory won the race.
                        Published::Existing(theirs) => theirs,
                    }
                }
            };
            match variable {
                "JWT_SECRET" => self.jwt_secret = Some(Secret::new(value)),
                _ => self.admin_password = Some(Secret::new(value)),
            }
        }
        Ok(())
    }

    /// `JWT_SECRET`, present after a successful [`Config::load`] with secret generation.
    pub fn jwt_secret(&self) -> Option<&Secret> {
        self.jwt_secret.as_ref()
    }
}

fn read_fleet(r: &mut Reader<'_>, mode: Mode, data_dir: &Path, frontend_host: &str) -> FleetConfig {
    let default_overlay: ipnet::Ipv4Net = "100.64.0.0/10".parse().unwrap_or_default();
    let overlay = r.parse("WATCHGRID_OVERLAY_CIDR", default_overlay, |v| {
        let net: ipnet::Ipv4Net = v
            .parse()
            .map_err(|_| "must be an IPv4 network such as 100.64.0.0/10".to_owned())?;
        if net.prefix_len() > 29 {
            return Err("is too small: use a prefix of /29 or shorter".into());
        }
        Ok(net.trunc())
    });
    let interface = r.parse("WATCHGRID_WG_INTERFACE", "wg0".to_owned(), |v| {
        if !v.is_empty()
            && v.len() <= 15
            && v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "_=+.-".contains(c))
        {
            Ok(v.to_owned())
        } else {
            Err("must be an interface name of 1-15 letters, digits and _=+.-".into())
        }
    });
    let listen_port = r.parse("WATCHGRID_WG_LISTEN_PORT", 51820u16, |v| {
        v.parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| "must be a UDP port from 1 to 65535".to_owned())
    });
    let host_only = match frontend_host.rsplit_once(':') {
        Some((host, port)) if port.parse::<u16>().is_ok() && !host.contains(':') => host,
        Some((host, port)) if port.parse::<u16>().is_ok() && host.ends_with(']') => host,
        _ => frontend_host,
    };
    let endpoint = r.parse(
        "WATCHGRID_WG_ENDPOINT",
        format!("{host_only}:{listen_port}"),
        |v| match v.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p != 0) => {
                Ok(v.to_owned())
            }
            _ => Err("must be host:port, e.g. vpn.example.com:51820".into()),
        },
    );
    let default_wg_config = match mode {
        Mode::Production => PathBuf::from("/etc/wireguard/wg0.conf"),
        Mode::Development => data_dir.join("wg0.conf"),
    };
    let wg_config = r
        .get("WATCHGRID_WG_CONFIG")
        .map_or(default_wg_config, PathBuf::from);
    // Development servers do not create network interfaces on a developer's machine unless
    // asked to; production servers are the WireGuard hub by default.
    let default_backend = match mode {
        Mode::Production => WgBackendChoice::Auto,
        Mode::Development => WgBackendChoice::None,
    };
    let backend = r.parse("WATCHGRID_WG_BACKEND", default_backend, |v| match v {
        "auto" => Ok(WgBackendChoice::Auto),
        "kernel" => Ok(WgBackendChoice::Kernel),
        "userspace" => Ok(WgBackendChoice::Userspace),
        "none" => Ok(WgBackendChoice::None),
        _ => Err("must be auto, kernel, userspace or none".into()),
    });
    let server_ip = std::net::Ipv4Addr::from(u32::from(overlay.network()) + 1);
    let agent_listen = r.parse(
        "WATCHGRID_AGENT_LISTEN",
        SocketAddr::from((server_ip, 8081)),
        |v| {
            SocketAddr::from_str(v)
                .map_err(|_| "must be an address and port such as 100.64.0.1:8081".into())
        },
    );
    // Agents call the advertised agent API with their credential over plain HTTP: it must be
    // an address inside the overlay, so the credential only ever travels through the tunnel.
    if !matches!(agent_listen.ip(), std::net::IpAddr::V4(ip) if overlay.contains(&ip)) {
        r.problem(
            "WATCHGRID_AGENT_LISTEN",
            format!(
                "must be an address inside WATCHGRID_OVERLAY_CIDR ({overlay}), normally the server's \
                 overlay address {server_ip}, so that agents reach it only through the tunnel (got {agent_listen})"
            ),
        );
    }
    let heartbeat_interval_secs = r.parse("WATCHGRID_HEARTBEAT_INTERVAL_SECS", 30u32, |v| {
        v.parse::<u32>()
            .ok()
            .filter(|s| (5..=3600).contains(s))
            .ok_or_else(|| "must be a whole number of seconds from 5 to 3600".to_owned())
    });
    FleetConfig {
        overlay,
        interface,
        listen_port,
        endpoint,
        wg_config,
        backend,
        agent_listen,
        heartbeat_interval_secs,
    }
}

/// Magic DNS queries a second answered per source (`WATCHGRID_DNS_RATE_LIMIT`): far above what a
/// device's caching resolver asks, far below what would let one device crowd out the others.
const DEFAULT_DNS_RATE_LIMIT: u32 = 500;

fn read_dns(r: &mut Reader<'_>, fleet: &FleetConfig) -> DnsConfig {
    let default_listen = SocketAddr::from((fleet.server_ip(), 53));
    let listen_explicit = r.get("WATCHGRID_DNS_LISTEN").is_some();
    let listen = r.parse("WATCHGRID_DNS_LISTEN", Some(default_listen), |v| {
        if v.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        SocketAddr::from_str(v)
            .map(Some)
            .map_err(|_| "must be an address and port such as 100.64.0.1:53, or `off`".to_owned())
    });
    let domain = r.parse(
        "WATCHGRID_DNS_DOMAIN",
        "watchgrid.internal".to_owned(),
        |v| {
            let domain = v.trim_end_matches('.').to_ascii_lowercase();
            let labels_ok = domain
                .split('.')
                .all(|label| watchgrid_dns::normalize_host_label(label).is_ok());
            if labels_ok && domain.len() <= 120 {
                Ok(domain)
            } else {
                Err(
                    "must be a domain of DNS-safe labels (a-z, 0-9, '-'), at most 120 characters, \
                     such as watchgrid.internal"
                        .into(),
                )
            }
        },
    );
    let upstreams = r.parse("WATCHGRID_DNS_UPSTREAMS", Vec::new(), |v| {
        v.split(',')
            .map(str::trim)
            .filter(|part| !part.is_empty())
            .map(|part| {
                SocketAddr::from_str(part)
                    .or_else(|_| {
                        part.parse::<std::net::IpAddr>()
                            .map(|ip| SocketAddr::new(ip, 53))
                    })
                    .map_err(|_| format!("{part:?} is not an address such as 192.0.2.53:53"))
            })
            .collect()
    });
    let rate_limit = r.parse(
        "WATCHGRID_DNS_RATE_LIMIT",
        std::num::NonZeroU32::new(DEFAULT_DNS_RATE_LIMIT),
        |v| {
            if v.eq_ignore_ascii_case("off") {
                return Ok(None);
            }
            v.parse::<std::num::NonZeroU32>()
                .map(Some)
                .map_err(|_| "must be a number of queries per second above 0, or `off`".to_owned())
        },
    );
    DnsConfig {
        listen,
        listen_explicit,
        domain,
        upstreams,
        rate_limit,
    }
}

fn read_ssh(r: &mut Reader<'_>, mode: Mode, data_dir: &Path, dns_domain: &str) -> SshConfig {
    let default_ca_dir = match mode {
        Mode::Production => PathBuf::from("/etc/watchgrid"),
        Mode::Development => data_dir.to_path_buf(),
    };
    let ca_dir = r
        .get("WATCHGRID_SSH_CA_DIR")
        .map_or(default_ca_dir, PathBuf::from);
    let host_cert_validity_secs = r.parse(
        "WATCHGRID_SSH_HOST_CERT_VALIDITY_SECS",
        30 * 24 * 3600,
        |v| {
            v.parse::<u32>()
                .ok()
                .filter(|s| (60..=365 * 24 * 3600).contains(s))
                .ok_or_else(|| "must be a whole number of seconds from 60 to 31536000".to_owned())
        },
    );
    SshConfig {
        ca_dir,
        dns_domain: dns_domain.to_owned(),
        host_cert_validity_secs,
    }
}

/// Values that were obviously never filled in: `changeme`, `<your-secret>`, `TODO`, ...
pub fn is_placeholder(value: &str) -> bool {
    let lower = value.trim().to_ascii_lowercase();
    let squashed: String = lower
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect();
    const EXACT: &[&str] = &[
        "changeme",
        "change",
        "placeholder",
        "example",
        "todo",
        "tbd",
        "fixme",
        "secret",
        "password",
        "xxx",
        "xxxx",
        "xxxxxxxx",
        "replaceme",
        "default",
        "none",
        "null",
        "yoursecret",
        "yourpassword",
        "examplecom",
    ];
    const CONTAINS: &[&str] = &[
        "changeme",
        "replaceme",
        "placeholder",
        "yoursecret",
        "fillmein",
    ];
    (lower.starts_with('<') && lower.ends_with('>'))
        || (lower.starts_with("${") && lower.ends_with('}'))
        || EXACT.contains(&squashed.as_str())
        || CONTAINS.iter().any(|needle| squashed.contains(needle))
}

/// `FRONTEND_HOST` is a bare host name or address, optionally with a port: no scheme, no path.
fn check_host(host: &str) -> Result<(), String> {
    if host.contains("://") {
        return Err("must be a host name without a scheme, e.g. watchgrid.example.com".into());
    }
    if host.contains('/') {
        return Err("must be a host name without a path".into());
    }
    let name = match host.rsplit_once(':') {
        Some((name, _)) if !name.ends_with(']') && name.contains(':') => host, // bare IPv6
        Some((name, port)) => {
            if port.parse::<u16>().is_err() {
                return Err("has an invalid port".into());
            }
            name
        }
        None => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Ok(());
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if name.len() <= 253 && name.split('.').all(valid_label) {
        Ok(())
    } else {
        Err("is not a valid host name".into())
    }
}

/// Replace the password in a URL's user-info with `***`.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let authority_end = url[scheme_end..]
        .find(['/', '?'])
        .map_or(url.len(), |i| scheme_end + i);
    let authority = &url[scheme_end..authority_end];
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            let masked = if userinfo.contains(':') {
                format!("{user}:***")
            } else {
                user.to_owned()
            };
            format!(
                "{}{masked}@{host}{}",
                &url[..scheme_end],
                &url[authority_end..]
            )
        }
        None => url.to_owned(),
    }
}

fn ensure_private_dir(dir: &Path) -> Result<(), String> {
    if !dir.exists() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create data directory {}: {e}", dir.display()))?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| format!("cannot restrict data directory {}: {e}", dir.display()))?;
    }
    Ok(())
}

fn read_secret_file(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let mode = std::fs::metadata(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?
                .permissions()
                .mode();
            if mode & 0o077 != 0 {
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .map_err(|e| format!("cannot restrict {} to 0600: {e}", path.display()))?;
            }
            let value = text.trim().to_owned();
            if value.is_empty() {
                Err(format!(
                    "{} is empty; delete it to have a new secret generated",
                    path.display()
                ))
            } else {
                Ok(Some(value))
            }
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(err) => Err(format!("cannot read {}: {err}", path.display())),
    }
}

/// What [`publish_secret_file`] found.
#[derive(Debug, PartialEq, Eq)]
enum Published {
    /// The file now holds our value.
    Created,
    /// Another process published the file first; this is its value.
    Existing(String),
}

/// Publishes a generated secret at `path` unless one appears there first. The value is written
/// and synced to a private temporary file, which is then hard-linked into place: `link(2)`
/// never replaces a file, so when two servers start at once on one data directory exactly one
/// value wins, and the other reads it whole, never half-written.
fn publish_secret_file(path: &Path, value: &str) -> Result<Published, String> {
    // Random, not the pid: servers in containers sharing a volume may all be pid 1.
    let temporary = path.with_extension(format!("tmp-{:016x}", rand::random::<u64>()));
    let written = write_new_secret(&temporary, value)
        .map_err(|e| format!("cannot write {}: {e}", temporary.display()));
    let linked = written.and_then(|()| match std::fs::hard_link(&temporary, path) {
        Ok(()) => Ok(Published::Created),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => theirs(path),
        // A file system without hard links (some network and FUSE mounts): exclusive
        // creation still picks one winner, though a loser could then read a partial file.
        Err(err) if no_hard_links(&err) => create_exclusively(path, value),
        Err(err) => Err(format!("cannot create {}: {err}", path.display())),
    });
    let _ = std::fs::remove_file(&temporary);
    linked
}

/// The secret another process published at `path`.
fn theirs(path: &Path) -> Result<Published, String> {
    match read_secret_file(path)? {
        Some(theirs) => Ok(Published::Existing(theirs)),
        None => Err(format!("{} vanished while being created", path.display())),
    }
}

fn no_hard_links(err: &std::io::Error) -> bool {
    err.kind() == std::io::ErrorKind::Unsupported
        || matches!(
            err.raw_os_error(),
            Some(code) if code == libc_errno::EPERM || code == libc_errno::EOPNOTSUPP
        )
}

/// Linux errno values used above (std has no constants for them).
mod libc_errno {
    pub const EPERM: i32 = 1;
    pub const EOPNOTSUPP: i32 = 95;
}

fn create_exclusively(path: &Path, value: &str) -> Result<Published, String> {
    match write_new_secret(path, value) {
        Ok(()) => Ok(Published::Created),
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => theirs(path),
        Err(err) => Err(format!("cannot create {}: {err}", path.display())),
    }
}

/// Creates `path` (failing if it exists), mode 0600 from the start, with `value` and a
/// newline, synced to disk.
fn write_new_secret(path: &Path, value: &str) -> std::io::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(format!("{value}\n").as_bytes())?;
    file.sync_all()
}

fn generate_jwt_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::Rng::fill(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

/// A random password that satisfies the password policy (upper, lower, digit, special).
fn generate_password() -> String {
    let random = Alphanumeric.sample_string(&mut rand::rngs::OsRng, 20);
    format!("{random}-Wg7")
}

#[cfg(test)]
mod tests;
