//! `watchgrid-bench heartbeats`: seed a database; load the bare baseline, then the release
//! server, then the baseline again (to show drift on a shared machine); check the database.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

use anyhow::{Context, Result};
use chrono::Utc;
use serde::Serialize;
use tokio::time::Instant;

use crate::args::{Backend, HeartbeatArgs};
use crate::child::{self, Child};
use crate::http::Failure;
use crate::load::{self, Outcome, Plan, Target};
use crate::procfs::{self, MachineTicks};
use crate::seed::{self, Fixture, Written};

const LOCALHOST: Ipv4Addr = Ipv4Addr::LOCALHOST;

/// The whole result of one `heartbeats` run (one JSON line).
#[derive(Debug, Serialize)]
pub struct Report {
    pub backend: Backend,
    pub devices: u32,
    pub concurrency: u32,
    /// Extra environment given to the server (`--server-env`).
    pub server_env: Vec<String>,
    /// One connection per device, reused (else one per heartbeat).
    pub keep_alive: bool,
    /// `closed` (full speed) or `open` (fixed rate).
    pub mode: &'static str,
    pub rate: Option<f64>,
    pub warmup_secs: f64,
    pub duration_secs: f64,
    pub machine: Machine,
    pub seed_secs: f64,
    pub server: Measured,
    /// The server's start-up, from spawn to the first accepted heartbeat.
    pub server_ready_secs: f64,
    /// The server did not load its device index at start-up; one registration made it.
    pub index_reloaded_by_registration: bool,
    pub server_rss_ready_kib: u64,
    pub server_rss_after_kib: u64,
    pub db: Written,
    /// From the end of the load until every heard device's `last_seen_at` was written.
    pub db_write_lag_secs: f64,
    /// The bare baseline before and after the server.
    pub bare: Option<Measured>,
    pub bare_after: Option<Measured>,
    /// Server heartbeats/s over the mean of the two bare runs' requests/s.
    pub ratio: Option<f64>,
}

/// One process under load.
#[derive(Debug, Serialize)]
pub struct Measured {
    pub outcome: Outcome,
    /// VmHWM at the end of the run.
    pub rss_peak_kib: u64,
    pub cpu: Cpu,
    /// Cores busy with other work in the second before the load started.
    pub background_cores_before: f64,
    /// TCP trouble over the whole load (warm-up included).
    pub tcp: procfs::TcpCounters,
}

/// CPU use during the measured window, in cores (1.0 = one core busy all the time).
#[derive(Debug, Default, Clone, Copy, Serialize)]
pub struct Cpu {
    pub server_cores: f64,
    pub load_generator_cores: f64,
    /// The PostgreSQL cluster's processes (0 on SQLite, which runs inside the server).
    pub database_cores: f64,
    /// Kernel worker threads: page-cache writeback of the database's files, deferred softirqs.
    pub kernel_workers_cores: f64,
    /// The whole machine: the above, steal, anything else.
    pub machine_busy_cores: f64,
    /// Network softirq, mostly already inside the processes' figures (see `cpu_between`).
    pub softirq_cores: f64,
    pub steal_cores: f64,
    /// Busy time none of the above explains: other processes on the machine, kernel threads.
    pub other_cores: f64,
}

#[derive(Debug, Serialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub memory: String,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let meminfo = read("/proc/meminfo");
        let field = |text: &str, name: &str| {
            text.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
                .unwrap_or_default()
        };
        Machine {
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            cpu_model: field(&cpuinfo, "model name"),
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            memory: field(&meminfo, "MemTotal"),
        }
    }
}

/// Who to watch while loading.
#[derive(Debug, Clone)]
struct Watch {
    pid: u32,
    pg_data: Option<PathBuf>,
    ticks: f64,
    wait_quiet: Duration,
    quiet_cores: f64,
}

pub async fn run(args: HeartbeatArgs) -> Result<()> {
    let me = std::env::current_exe()?;
    let server_bin = child::server_binary(args.server_bin.as_deref())?;
    if !server_bin.is_file() {
        anyhow::bail!(
            "{} not found: build it with `cargo build --release -p watchgrid-server` or pass --server-bin",
            server_bin.display()
        );
    }
    let dir = tempfile::Builder::new()
        .prefix("watchgrid-bench-")
        .tempdir()?;
    let run_id = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let overlay = args.overlay;
    let plan = Plan {
        overlay,
        devices: args.devices,
        run: run_id.clone(),
        concurrency: args.concurrency as usize,
        warmup: args.warmup,
        duration: args.duration,
        rate: args.rate,
        timeout: args.timeout,
        keep_alive: args.keep_alive,
    };
    if args.keep_alive {
        let limit = procfs::open_files_limit().unwrap_or(0);
        let needed = u64::from(args.devices) + 1000;
        if limit < needed {
            anyhow::bail!(
                "--keep-alive with {} devices needs at least {needed} open files in this process and \
                 the server (one connection each); the limit is {limit} (raise it with `ulimit -n`)",
                args.devices
            );
        }
    }
    let first_device = overlay.device_ip(0)?;
    let ticks = procfs::ticks_per_second();
    let label = format!("[{} {} devices]", args.backend, args.devices);

    eprintln!("{label} seeding the database in {}", dir.path().display());
    let seeding = StdInstant::now();
    let (mut fixture, db) = Fixture::create(args.backend, dir.path()).await?;
    fixture.seed(&db, overlay, args.devices, &run_id).await?;
    let token = format!("wgo_bench{run_id}");
    seed::create_token(&db, fixture.tenant.context("no tenant")?, &token).await?;
    db.close().await;
    // Write the seeded data out now, or the kernel's writeback of it lands in the first
    // measured window.
    let _ = tokio::process::Command::new("sync").status().await;
    let seed_secs = seeding.elapsed().as_secs_f64();
    eprintln!("  seeded in {seed_secs:.1}s ({})", fixture.url);
    let watch = |pid| Watch {
        pid,
        pg_data: fixture.pg_data_dir(),
        ticks,
        wait_quiet: args.wait_quiet,
        quiet_cores: args.quiet_cores,
    };

    let bare_run = |name: &'static str| {
        let (me, dir, plan, watch) = (me.clone(), dir.path().to_path_buf(), plan.clone(), watch);
        async move {
            let listen =
                SocketAddr::from((overlay.server_ip(), child::free_port(overlay.server_ip())?));
            let mut bare = Child::spawn(
                "bare-server",
                &me,
                &["bare-server".into(), "--listen".into(), listen.to_string()],
                &[],
                dir.join(format!("{name}.log")),
            )?;
            let target = Target {
                addr: listen,
                path: crate::bare::PATH.into(),
                credentials: true,
                expect: crate::bare::EXPECT.to_vec(),
            };
            child::wait_until(&mut bare, "bare-server", Duration::from_secs(30), || {
                one_request(&plan, &target, first_device)
            })
            .await?;
            let measured = measure(&plan, &target, &watch(bare.pid())).await?;
            bare.check_alive()?;
            bare.stop(Duration::from_secs(10)).await?;
            print_outcome(name, &measured);
            anyhow::Ok(measured)
        }
    };

    // The baseline first, while nothing else of ours runs.
    let bare = if args.no_bare {
        None
    } else {
        Some(bare_run("bare axum").await?)
    };

    // The real server.
    let http_listen = SocketAddr::from((LOCALHOST, child::free_port(LOCALHOST)?));
    let agent_listen =
        SocketAddr::from((overlay.server_ip(), child::free_port(overlay.server_ip())?));
    let env: Vec<(String, String)> = [
        ("WATCHGRID_MODE", "development".to_owned()),
        ("DATABASE_URL", fixture.url.clone()),
        (
            "WATCHGRID_DATA_DIR",
            dir.path().join("data").display().to_string(),
        ),
        ("WATCHGRID_LISTEN", http_listen.to_string()),
        ("WATCHGRID_WG_BACKEND", "none".to_owned()),
        ("WATCHGRID_OVERLAY_CIDR", overlay.to_string()),
        ("WATCHGRID_AGENT_LISTEN", agent_listen.to_string()),
        ("WATCHGRID_LOG_LEVEL", "warn".to_owned()),
        (
            "WATCHGRID_DB_MAX_CONNECTIONS",
            args.db_max_connections.to_string(),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .chain(args.server_env.iter().cloned())
    .collect();
    let spawned = StdInstant::now();
    let mut server = Child::spawn(
        "watchgrid-server",
        &server_bin,
        &[],
        &env,
        dir.path().join("server.log"),
    )?;
    let target = Target {
        addr: agent_listen,
        path: "/api/agent/heartbeat".into(),
        credentials: true,
        expect: br#""server_time""#.to_vec(),
    };
    let index_reloaded_by_registration = wait_for_server(
        &mut server,
        &plan,
        &target,
        http_listen,
        first_device,
        &token,
    )
    .await?;
    let server_ready_secs = spawned.elapsed().as_secs_f64();
    let ready_rss = procfs::memory(server.pid()).unwrap_or_default();
    eprintln!(
        "  server (pid {}) ready in {server_ready_secs:.1}s, RSS {} MiB",
        server.pid(),
        ready_rss.rss_kib / 1024
    );
    let since = Utc::now();
    let measured = measure(&plan, &target, &watch(server.pid())).await?;
    server.check_alive()?;
    let after_rss = procfs::memory(server.pid()).unwrap_or_default();
    print_outcome("watchgrid-server", &measured);

    let db = seed::open(&fixture.url, 2).await?;
    let (written, lag) = seed::wait_written(
        &db,
        &fixture.ids,
        &measured.outcome.heard,
        since,
        args.write_deadline,
    )
    .await?;
    db.close().await;
    let peak = procfs::memory(server.pid()).unwrap_or_default().peak_kib;
    let status = server.stop(Duration::from_secs(40)).await?;
    eprintln!(
        "  database: {}/{} heard devices have last_seen_at from this run ({} rows seen) {:.1}s after the load; server exited {status}",
        written.heard_written,
        written.heard,
        written.rows_seen,
        lag.as_secs_f64()
    );
    let measured = Measured {
        rss_peak_kib: peak,
        ..measured
    };

    let bare_after = if args.no_bare {
        None
    } else {
        Some(bare_run("bare axum (after)").await?)
    };
    let bare_rates: Vec<f64> = [&bare, &bare_after]
        .iter()
        .filter_map(|b| b.as_ref().map(|b| b.outcome.requests_per_sec))
        .filter(|r| *r > 0.0)
        .collect();
    let ratio = (!bare_rates.is_empty()).then(|| {
        measured.outcome.requests_per_sec
            / (bare_rates.iter().sum::<f64>() / bare_rates.len() as f64)
    });
    let report = Report {
        backend: args.backend,
        devices: args.devices,
        concurrency: args.concurrency,
        server_env: args
            .server_env
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect(),
        keep_alive: args.keep_alive,
        mode: if args.rate.is_some() {
            "open"
        } else {
            "closed"
        },
        rate: args.rate,
        warmup_secs: args.warmup.as_secs_f64(),
        duration_secs: args.duration.as_secs_f64(),
        machine: Machine::describe(),
        seed_secs,
        server: measured,
        server_ready_secs,
        index_reloaded_by_registration,
        server_rss_ready_kib: ready_rss.rss_kib,
        server_rss_after_kib: after_rss.rss_kib,
        db: written,
        db_write_lag_secs: lag.as_secs_f64(),
        bare,
        bare_after,
        ratio,
    };
    if let Some(ratio) = report.ratio {
        eprintln!("  ratio heartbeats/bare: {ratio:.2}");
    }
    if let Some(path) = &args.output {
        append_line(path, &serde_json::to_string(&report)?)?;
    }
    println!("{}", serde_json::to_string_pretty(&report)?);
    if args.keep {
        eprintln!("  kept {}", dir.keep().display());
    }
    drop(fixture);
    let failures = [
        Some(&report.server),
        report.bare.as_ref(),
        report.bare_after.as_ref(),
    ]
    .iter()
    .flatten()
    .map(|m| m.outcome.failure_count())
    .sum::<u64>();
    if failures > 0 {
        anyhow::bail!("{failures} requests failed (see \"failures\" above)");
    }
    if written.heard_written != written.heard {
        anyhow::bail!(
            "only {} of {} heard devices got last_seen_at within {:?}",
            written.heard_written,
            written.heard,
            args.write_deadline
        );
    }
    Ok(())
}

/// Wait for `/readyz`, then for the agent API to accept device 0's heartbeat. Returns whether
/// the index had to be reloaded by a registration (see [`register_one`]).
async fn wait_for_server(
    server: &mut Child,
    plan: &Plan,
    target: &Target,
    http: SocketAddr,
    first_device: Ipv4Addr,
    token: &str,
) -> Result<bool> {
    child::wait_until(
        server,
        "watchgrid-server /readyz",
        Duration::from_secs(120),
        || child::get_ok(LOCALHOST, http, "/readyz"),
    )
    .await?;
    // The agent API answers (200, or 401 for a device it does not know) once the fleet started.
    child::wait_until(
        server,
        "watchgrid-server agent API",
        Duration::from_secs(120),
        || async {
            match one_request(plan, target, first_device).await {
                Ok(()) | Err(Failure::Status(401)) => Ok(()),
                Err(other) => Err(other),
            }
        },
    )
    .await?;
    let reloaded = match one_request(plan, target, first_device).await {
        Err(Failure::Status(401)) => {
            eprintln!(
                "  WARNING: the server answers 401 for the seeded devices: it did not load its device \
                 index from the database at start-up. Registering one device to make it reload the \
                 index (the registration's address conflict makes it call DeviceIndex::load)."
            );
            register_one(http, token).await?;
            true
        }
        _ => false,
    };
    child::wait_until(
        server,
        "watchgrid-server heartbeats",
        Duration::from_secs(60),
        || one_request(plan, target, first_device),
    )
    .await?;
    Ok(reloaded)
}

/// Register one device with the onboarding token `token` through the public API. On a server
/// whose device index is empty the allocator offers the first overlay address, which a seeded
/// device holds: the insert conflicts, and the registration path reloads the whole index from
/// the database (`DeviceIndex::load`, what a start-up load would do) and retries.
async fn register_one(http: SocketAddr, token: &str) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({
        "token": token,
        "hostname": "bench-index-reload",
        "os": "linux",
        "agent_version": "0.1.0",
        // 32 zero bytes, base64.
        "wg_public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    }))?;
    let mut request = Vec::new();
    crate::http::post_request(http, "/api/agent/register", None, &body, &mut request);
    let mut buf = Vec::new();
    crate::http::one_shot(
        LOCALHOST,
        http,
        &request,
        br#""credential""#,
        &mut buf,
        Duration::from_secs(60),
    )
    .await
    .map_err(|f| {
        anyhow::anyhow!(
            "registering a device to reload the index: {f}: {}",
            String::from_utf8_lossy(&buf)
        )
    })
}

/// One heartbeat from device 0 at `source` (readiness probe).
async fn one_request(plan: &Plan, target: &Target, source: Ipv4Addr) -> Result<(), Failure> {
    let mut request = Vec::new();
    let credential = crate::addr::credential(&plan.run, 0);
    crate::http::post_request(
        target.addr,
        &target.path,
        Some(&credential),
        load::HEARTBEAT_BODY,
        &mut request,
    );
    let mut buf = Vec::new();
    crate::http::one_shot(
        source,
        target.addr,
        &request,
        &target.expect,
        &mut buf,
        Duration::from_secs(5),
    )
    .await
}

/// CPU counters at one instant, in clock ticks.
#[derive(Debug, Clone, Copy)]
struct Sample {
    watched: u64,
    me: u64,
    database: u64,
    kernel_workers: u64,
    machine: MachineTicks,
}

fn sample(watch: &Watch) -> Sample {
    Sample {
        watched: procfs::cpu_ticks(&watch.pid.to_string()).unwrap_or(0),
        me: procfs::cpu_ticks("self").unwrap_or(0),
        database: watch
            .pg_data
            .as_deref()
            .and_then(procfs::cluster_ticks)
            .unwrap_or(0),
        kernel_workers: procfs::kernel_thread_ticks(),
        machine: procfs::machine_ticks().unwrap_or_default(),
    }
}

/// Cores used over `secs` between two samples.
fn cpu_between(a: Sample, b: Sample, secs: f64, ticks: f64) -> Cpu {
    // /proc/stat's `cpu` line sums every CPU's ticks, so ticks over time are cores there too.
    let cores = |t: u64| t as f64 / ticks / secs;
    let m = b.machine.since(&a.machine);
    let mut cpu = Cpu {
        server_cores: cores(b.watched.saturating_sub(a.watched)),
        load_generator_cores: cores(b.me.saturating_sub(a.me)),
        database_cores: cores(b.database.saturating_sub(a.database)),
        kernel_workers_cores: cores(b.kernel_workers.saturating_sub(a.kernel_workers)),
        machine_busy_cores: cores(m.busy),
        softirq_cores: cores(m.softirq),
        steal_cores: cores(m.steal),
        other_cores: 0.0,
    };
    // Softirq time is not subtracted: with tick-based accounting the kernel charges a tick
    // spent in softirq both to the softirq column and to the process it interrupted (mostly
    // the server and the generator here, handling their own loopback packets).
    cpu.other_cores = (cpu.machine_busy_cores
        - cpu.server_cores
        - cpu.load_generator_cores
        - cpu.database_cores
        - cpu.kernel_workers_cores
        - cpu.steal_cores)
        .max(0.0);
    cpu
}

/// Cores busy over one second with anything but the watched processes (kernel workers
/// included: writeback left over from seeding is not quiet).
async fn background_cores(watch: &Watch) -> f64 {
    let a = sample(watch);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let b = sample(watch);
    let cpu = cpu_between(a, b, 1.0, watch.ticks);
    cpu.other_cores + cpu.kernel_workers_cores
}

/// Load `target` and sample CPU use over the measured window.
async fn measure(plan: &Plan, target: &Target, watch: &Watch) -> Result<Measured> {
    let waiting = StdInstant::now();
    let mut background = background_cores(watch).await;
    while background > watch.quiet_cores && waiting.elapsed() < watch.wait_quiet {
        eprintln!("  waiting for the machine to be quiet: other work uses {background:.2} cores");
        tokio::time::sleep(Duration::from_secs(4)).await;
        background = background_cores(watch).await;
    }
    if background > watch.quiet_cores {
        eprintln!(
            "  WARNING: other work used {background:.2} cores in the second before this load"
        );
    }
    let start = Instant::now() + Duration::from_millis(100);
    let (open, close) = plan.window(start);
    let sampler = {
        let watch = watch.clone();
        tokio::spawn(async move {
            tokio::time::sleep_until(open).await;
            let a = sample(&watch);
            tokio::time::sleep_until(close).await;
            let b = sample(&watch);
            cpu_between(a, b, close.duration_since(open).as_secs_f64(), watch.ticks)
        })
    };
    let tcp_before = procfs::tcp_counters();
    let outcome = load::run(plan, target, start).await?;
    let tcp = procfs::tcp_counters().since(&tcp_before);
    let cpu = sampler.await?;
    Ok(Measured {
        outcome,
        rss_peak_kib: procfs::memory(watch.pid).unwrap_or_default().peak_kib,
        cpu,
        background_cores_before: background,
        tcp,
    })
}

fn print_outcome(what: &str, m: &Measured) {
    let o = &m.outcome;
    let lat = o
        .latency
        .map(|l| {
            format!(
                "p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms",
                l.p50_ms, l.p99_ms, l.max_ms
            )
        })
        .unwrap_or_default();
    eprintln!(
        "  {what}: {:.0} req/s (per second {}), {lat}; failures {}; peak RSS {} MiB",
        o.requests_per_sec,
        o.per_second
            .map_or_else(String::new, |p| format!("{}..{}", p.min, p.max)),
        o.failure_count(),
        m.rss_peak_kib / 1024,
    );
    let c = &m.cpu;
    eprintln!(
        "    CPU cores: server {:.2}, generator {:.2}, database {:.2}, kernel workers {:.2} (softirq within those {:.2}), steal {:.2}, other {:.2}; machine {:.2} busy",
        c.server_cores,
        c.load_generator_cores,
        c.database_cores,
        c.kernel_workers_cores,
        c.softirq_cores,
        c.steal_cores,
        c.other_cores,
        c.machine_busy_cores
    );
    if c.other_cores > 0.2 {
        eprintln!("    WARNING: other work took {:.2} cores during this window: the figures above are low", c.other_cores);
    }
    if !o.failures.is_empty() {
        eprintln!("    failures: {:?}", o.failures);
    }
    if m.tcp.listen_overflows > 0 {
        eprintln!(
            "    {} connections overflowed an accept queue ({} SYN retransmits): expect ~1 s outliers",
            m.tcp.listen_overflows, m.tcp.syn_retransmits
        );
    }
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{line}")?;
    Ok(())
}
