//! `watchgrid-bench ssh-certs`: user-certificate signing through the release server's real API
//! (`POST /api/ssh/certificates`: authentication, principal grants, the per-tenant serial, the
//! certificate record and the audit row in one transaction, an Ed25519 signature), closed loop
//! over keep-alive connections, certificates per second and latency percentiles.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use tokio::time::Instant;

use crate::child::{self, Child};
use crate::http::{self, Failure};
use crate::stats::{Latency, PerSecond};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;
const ADMIN_PASSWORD: &str = "Bench-Admin-Pass-1";

#[derive(Debug, Clone, clap::Args)]
pub struct SshCertArgs {
    /// Requests in flight at once (one worker and one keep-alive connection each).
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub concurrency: u32,
    /// Length of the measured window.
    #[arg(long, default_value = "20s", value_parser = crate::args::parse_duration)]
    pub duration: Duration,
    /// Load before the window opens (not measured).
    #[arg(long, default_value = "5s", value_parser = crate::args::parse_duration)]
    pub warmup: Duration,
    /// Run the server on this PostgreSQL database (`postgres://...`), which must be empty
    /// (the CA keys of an earlier run are gone, so its tenants would fail the `ssh_ca`
    /// check); default: a fresh SQLite file.
    #[arg(long)]
    pub database_url: Option<String>,
    /// The server binary; by default `watchgrid-server` next to this program.
    #[arg(long)]
    pub server_bin: Option<PathBuf>,
    /// The server's `WATCHGRID_DB_MAX_CONNECTIONS`.
    #[arg(long, default_value_t = 10)]
    pub db_max_connections: u32,
    /// Append the result as one JSON line to this file.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

/// One run's result.
#[derive(Debug, Serialize)]
pub struct SshCertResult {
    pub database: String,
    pub concurrency: u32,
    pub duration_secs: f64,
    pub certificates: u64,
    pub certificates_per_sec: f64,
    pub latency: Option<Latency>,
    pub per_second: Option<PerSecond>,
    pub failures: std::collections::BTreeMap<String, u64>,
    /// Serials the server issued, checked distinct afterwards through the API.
    pub serials_checked_distinct: u64,
    pub server_rss_mib: u64,
    pub machine: crate::bench::Machine,
    pub at: String,
}

/// A request with a method, bearer token and JSON body.
fn request(
    method: &str,
    host: SocketAddr,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> Vec<u8> {
    let mut out = Vec::new();
    http::post_request(host, path, token, body, &mut out);
    if method != "POST" {
        out.splice(0..4, method.bytes());
    }
    out
}

/// One exchange on a new connection; the status and body.
async fn call(
    host: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: serde_json::Value,
) -> Result<(u16, serde_json::Value)> {
    let mut stream = http::connect(LOCALHOST, host)
        .await
        .map_err(|f| anyhow::anyhow!("{path}: {f}"))?;
    let mut buf = Vec::new();
    let req = request(method, host, path, token, body.to_string().as_bytes());
    let (status, range) = http::exchange(&mut stream, &req, &mut buf)
        .await
        .map_err(|f| anyhow::anyhow!("{path}: {f}"))?;
    Ok((
        status,
        serde_json::from_slice(&buf[range]).unwrap_or_default(),
    ))
}

pub async fn run(args: SshCertArgs) -> Result<()> {
    let server_bin = child::server_binary(args.server_bin.as_deref())?;
    let dir = tempfile::tempdir()?;
    let port = child::free_port(LOCALHOST)?;
    let listen = SocketAddr::from((LOCALHOST, port));
    let mut env: Vec<(String, String)> = [
        ("WATCHGRID_MODE", "development".to_owned()),
        (
            "WATCHGRID_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("WATCHGRID_LISTEN", listen.to_string()),
        ("WATCHGRID_WG_BACKEND", "none".to_owned()),
        ("WATCHGRID_LOG_LEVEL", "warn".to_owned()),
        ("ADMIN_PASSWORD", ADMIN_PASSWORD.to_owned()),
        (
            "WATCHGRID_DB_MAX_CONNECTIONS",
            args.db_max_connections.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let database = match &args.database_url {
        Some(url) => {
            env.push(("DATABASE_URL".into(), url.clone()));
            "postgres".to_owned()
        }
        None => "sqlite".to_owned(),
    };
    let mut server = Child::spawn(
        "watchgrid-server",
        &server_bin,
        &[],
        &env,
        dir.path().join("server.log"),
    )?;
    child::wait_until(
        &mut server,
        "watchgrid-server /readyz",
        Duration::from_secs(120),
        || child::get_ok(LOCALHOST, listen, "/readyz"),
    )
    .await?;
    let (status, login) = call(
        listen,
        "POST",
        "/api/auth/login",
        None,
        serde_json::json!({"username": "admin", "password": ADMIN_PASSWORD}),
    )
    .await?;
    if status != 200 {
        bail!("login: HTTP {status} {login}");
    }
    let token = login["access_token"]
        .as_str()
        .context("login answer without a token")?
        .to_owned();
    let (status, grant) = call(
        listen,
        "PUT",
        "/api/ssh/principals",
        Some(&token),
        serde_json::json!({"role": "owner", "principals": ["root", "deploy"]}),
    )
    .await?;
    if status != 200 {
        bail!("granting principals: HTTP {status} {grant}");
    }
    let key = watchgrid_sshca::CaKey::generate("bench user key")
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .public_key_openssh();
    let body = serde_json::json!({"public_key": key}).to_string();
    let sign = Arc::new(request(
        "POST",
        listen,
        "/api/ssh/certificates",
        Some(&token),
        body.as_bytes(),
    ));

    eprintln!(
        "ssh-certs: {database}, {} workers, {:?} warm-up, {:?} measured",
        args.concurrency, args.warmup, args.duration
    );
    let start = Instant::now();
    let open = start + args.warmup;
    let close = open + args.duration;
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let sign = sign.clone();
        workers.push(tokio::spawn(async move {
            let mut latencies: Vec<u32> = Vec::new();
            let mut buckets: Vec<u64> = Vec::new();
            let mut failures: std::collections::BTreeMap<Failure, u64> = Default::default();
            let mut buf = Vec::with_capacity(4096);
            let mut stream = None;
            while Instant::now() < close {
                let sent = Instant::now();
                let attempt = async {
                    let mut s = match stream.take() {
                        Some(s) => s,
                        None => http::connect(LOCALHOST, listen).await?,
                    };
                    let (status, range) = http::exchange(&mut s, &sign, &mut buf).await?;
                    if status != 201 {
                        return Err(Failure::Status(status));
                    }
                    if !buf[range].windows(14).any(|w| w == b"\"certificate\":") {
                        return Err(Failure::Body);
                    }
                    Ok(s)
                };
                match tokio::time::timeout(Duration::from_secs(10), attempt).await {
                    Ok(Ok(s)) => {
                        stream = Some(s);
                        let done = Instant::now();
                        if done >= open && done < close {
                            latencies.push(
                                u32::try_from(done.duration_since(sent).as_micros())
                                    .unwrap_or(u32::MAX),
                            );
                            let second = done.duration_since(open).as_secs() as usize;
                            if buckets.len() <= second {
                                buckets.resize(second + 1, 0);
                            }
                            buckets[second] += 1;
                        }
                    }
                    Ok(Err(failure)) => *failures.entry(failure).or_default() += 1,
                    Err(_) => *failures.entry(Failure::Timeout).or_default() += 1,
                }
            }
            (latencies, buckets, failures)
        }));
    }
    let mut latencies = Vec::new();
    let mut buckets: Vec<u64> = Vec::new();
    let mut failures = std::collections::BTreeMap::new();
    for worker in workers {
        let (l, b, f) = worker.await?;
        latencies.extend(l);
        if buckets.len() < b.len() {
            buckets.resize(b.len(), 0);
        }
        for (total, n) in buckets.iter_mut().zip(&b) {
            *total += n;
        }
        for (failure, n) in f {
            *failures.entry(failure.to_string()).or_default() += n;
        }
    }
    let rss = crate::procfs::memory(server.pid())
        .unwrap_or_default()
        .rss_kib
        / 1024;
    // The newest 500 certificates must have distinct serials.
    let (status, issued) = call(
        listen,
        "GET",
        "/api/ssh/certificates?limit=500",
        Some(&token),
        serde_json::Value::Null,
    )
    .await?;
    if status != 200 {
        bail!("listing certificates: HTTP {status}");
    }
    let serials: std::collections::BTreeSet<u64> = issued
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["serial"].as_u64()).collect())
        .unwrap_or_default();
    let listed = issued.as_array().map_or(0, Vec::len);
    if serials.len() != listed {
        bail!("duplicate serials among the newest {listed} certificates");
    }
    server.check_alive()?;
    server.stop(Duration::from_secs(30)).await?;
    let window = args.duration.as_secs_f64();
    let count = latencies.len() as u64;
    let result = SshCertResult {
        database,
        concurrency: args.concurrency,
        duration_secs: window,
        certificates: count,
        certificates_per_sec: count as f64 / window,
        latency: Latency::from_micros(&mut latencies),
        per_second: PerSecond::from_buckets(&buckets, window),
        failures,
        serials_checked_distinct: serials.len() as u64,
        server_rss_mib: rss,
        machine: crate::bench::Machine::describe(),
        at: chrono::Utc::now().to_rfc3339(),
    };
    let line = serde_json::to_string(&result)?;
    println!("{line}");
    if let Some(path) = &args.output {
        use std::io::Write;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        writeln!(file, "{line}")?;
    }
    match &result.latency {
        Some(l) => eprintln!(
            "ssh-certs: {:.0} certificates/s, p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms, failures {:?}",
            result.certificates_per_sec, l.p50_ms, l.p99_ms, l.max_ms, result.failures
        ),
        None => eprintln!("ssh-certs: no certificate in the window; failures {:?}", result.failures),
    }
    Ok(())
}
