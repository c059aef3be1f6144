//! `watchgrid-agent run`: load the enrollment, bring up the WireGuard interface with the
//! server as its one peer, and heartbeat through it until SIGTERM/SIGINT. After repeated
//! failures to reach the agent API it checks the server's key against the pin and refuses a
//! changed one (exit status 3).
//!
//! Log lines an end-to-end test can wait for: `tunnel up`, `heartbeat ok`, `heartbeat failed`,
//! `server key changed`, `tunnel down`.

use std::net::SocketAddr;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use rand::rngs::StdRng;
use rand::SeedableRng;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tokio::sync::oneshot;
use tracing::{error, info, warn};
use watchgrid_clientkit::text::io_text;
use watchgrid_wire::Heartbeat;

use crate::api::{AgentApiClient, PublicClient};
use crate::args;
use crate::backoff::{self, Outcome};
use crate::config::Config;
use crate::dns::{self, Resolver, SplitDns};
use crate::error::AgentError;
use crate::host::{self, HostFacts, AGENT_VERSION};
use crate::net;
use crate::pin::{self, PinCheck};
use crate::state::{Enrollment, HeartbeatStatus, Phase, StateDir};
use crate::tunnel::Tunnel;

/// After this many heartbeats in a row that got no answer, the agent asks the server's public
/// URL for its key.
pub const PIN_CHECK_AFTER: u32 = 3;

pub async fn run(config: &Config) -> Result<(), AgentError> {
    let store = StateDir::new(&config.state_dir);
    let enrollment = store.require_enrollment()?;
    let damaged = |reason: String| {
        AgentError::Failed(format!(
            "{}: {reason}; re-enroll with --force",
            store.state_path().display()
        ))
    };
    let server = args::server_url(&enrollment.server_url).map_err(damaged)?;
    net::overlay_network(&enrollment.overlay_address).map_err(damaged)?;
    let public = PublicClient::new(server)?;
    let api = AgentApiClient::new(&enrollment.agent_api, &enrollment.credential)?;
    let mut signals = Signals::new()?;
    let mut rng = StdRng::from_entropy();
    info!(
        device = %enrollment.device_name,
        device_id = %enrollment.device_id,
        tenant = %enrollment.tenant,
        interface = %config.interface,
        version = AGENT_VERSION,
        "watchgrid-agent starting"
    );

    let Some(endpoint) =
        resolve_until_ok(&enrollment.server_endpoint, &mut signals, &mut rng).await
    else {
        info!("stopped before the tunnel came up");
        return Ok(());
    };
    let mut tunnel = Tunnel::open(&config.interface, &enrollment, endpoint).await?;
    signals.device_stopped = Some(tunnel.watch());
    info!(
        interface = %config.interface,
        address = %enrollment.overlay_address,
        endpoint = %endpoint,
        server_key = %enrollment.server_public_key,
        heartbeat_url = api.heartbeat_url(),
        "tunnel up"
    );

    // sshd's CA files and host certificate, beside the heartbeats; stopped with them.
    let ssh_task = config.ssh.clone().map(|ssh| {
        let manager = crate::ssh::SshManager::new(ssh, &config.state_dir);
        tokio::spawn(manager.run(api.clone()))
    });
    let mut heartbeats = Heartbeats::new(&enrollment, &store, public, api, tunnel, endpoint, rng);
    heartbeats.search_path = config.search_path.clone();
    heartbeats.split_dns(enrollment.dns.as_ref()).await;
    let result = heartbeats.run(&mut signals).await;
    if let Some(task) = ssh_task {
        task.abort();
    }
    let phase = match &result {
        Err(AgentError::KeyChanged { .. }) => Phase::KeyChanged,
        _ => Phase::Stopped,
    };
    heartbeats.finish(phase).await;
    result
}

/// SIGTERM and SIGINT, registered once at start, and the end of the WireGuard device once it
/// runs (the interface deleted or its device stopped; see `Tunnel::watch`).
#[derive(Debug)]
struct Signals {
    term: Signal,
    int: Signal,
    device_stopped: Option<oneshot::Receiver<()>>,
}

impl Signals {
    fn new() -> Result<Signals, AgentError> {
        let register = |kind| {
            signal(kind).map_err(|e| {
                AgentError::Failed(format!("cannot listen for signals: {}", io_text(&e)))
            })
        };
        Ok(Signals {
            term: register(SignalKind::terminate())?,
            int: register(SignalKind::interrupt())?,
            device_stopped: None,
        })
    }

    /// Wait for a stop request. Cancel-safe.
    async fn recv(&mut self) {
        let device_stopped = async {
            match self.device_stopped.as_mut() {
                Some(rx) => {
                    let _ = rx.await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = self.term.recv() => info!("SIGTERM received; stopping"),
            _ = self.int.recv() => info!("SIGINT received; stopping"),
            () = device_stopped => warn!("the WireGuard interface stopped on its own; stopping"),
        }
    }
}

/// Resolve the server's endpoint, retrying with backoff (the network may come up after the
/// agent at boot). `None` when a signal came first.
async fn resolve_until_ok(
    endpoint: &str,
    signals: &mut Signals,
    rng: &mut StdRng,
) -> Option<SocketAddr> {
    let mut failures = 0;
    loop {
        match net::resolve_endpoint(endpoint).await {
            Ok(addr) => return Some(addr),
            Err(reason) => {
                failures += 1;
                let delay = backoff::next_delay(
                    Outcome::Failure {
                        consecutive: failures,
                    },
                    rng,
                );
                warn!(
                    endpoint,
                    error = %reason,
                    retry_in = ?millis(delay),
                    "cannot resolve the server's WireGuard endpoint"
                );
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = signals.recv() => return None,
                }
            }
        }
    }
}

/// The heartbeat loop's state.
struct Heartbeats<'a> {
    enrollment: &'a Enrollment,
    public: PublicClient,
    api: AgentApiClient,
    tunnel: Tunnel,
    /// Where the server's WireGuard packets go now.
    endpoint: SocketAddr,
    rng: StdRng,
    /// The server's interval, before jitter.
    interval: Duration,
    /// Failed heartbeats in a row, whatever the cause.
    failures: u32,
    /// Heartbeats in a row that got no answer at all.
    unanswered: u32,
    status: StatusFile<'a>,
    /// The resolver split DNS goes through, detected once the tunnel is up.
    resolver: Option<Resolver>,
    /// The split DNS settings applied (or attempted) last.
    dns: Option<SplitDns>,
    /// `PATH`, to find `resolvectl`.
    search_path: Option<String>,
}

/// `status.json` and what goes in it.
struct StatusFile<'a> {
    store: &'a StateDir,
    status: HeartbeatStatus,
    /// Whether the last write failed (warn once, not every time).
    write_failed: bool,
}

impl StatusFile<'_> {
    fn save(&mut self) {
        self.status.updated_at = now();
        match self.store.save_status(&self.status) {
            Ok(()) => self.write_failed = false,
            Err(err) if !self.write_failed => {
                self.write_failed = true;
                warn!(error = %err.one_line(), "cannot write the status file");
            }
            Err(_) => {}
        }
    }
}

impl<'a> Heartbeats<'a> {
    fn new(
        enrollment: &'a Enrollment,
        store: &'a StateDir,
        public: PublicClient,
        api: AgentApiClient,
        tunnel: Tunnel,
        endpoint: SocketAddr,
        rng: StdRng,
    ) -> Heartbeats<'a> {
        let now = now();
        Heartbeats {
            enrollment,
            public,
            api,
            tunnel,
            endpoint,
            rng,
            interval: backoff::server_interval(enrollment.heartbeat_interval_secs),
            failures: 0,
            unanswered: 0,
            resolver: None,
            dns: None,
            search_path: None,
            status: StatusFile {
                store,
                write_failed: false,
                status: HeartbeatStatus {
                    phase: Phase::Running,
                    pid: std::process::id(),
                    started_at: now.clone(),
                    updated_at: now,
                    last_attempt_at: None,
                    last_success_at: None,
                    consecutive_failures: 0,
                    last_error: None,
                    heartbeat_interval_secs: enrollment.heartbeat_interval_secs,
                    next_attempt_at: None,
                    tunnel: None,
                },
            },
        }
    }

    /// Point the device's resolver at Magic DNS for the Watchgrid domain, when the server
    /// announces it and it differs from what is applied.
    async fn split_dns(&mut self, settings: Option<&watchgrid_wire::DnsSettings>) {
        let Some(settings) = settings else {
            return;
        };
        let split = match SplitDns::from_wire(settings) {
            Ok(split) => split,
            Err(reason) => {
                warn!(error = %reason, "the server's DNS settings are unusable; split DNS not configured");
                return;
            }
        };
        if self.dns.as_ref() == Some(&split) {
            return;
        }
        let resolver = self
            .resolver
            .get_or_insert_with(|| dns::detect_host(self.search_path.as_deref()));
        dns::configure(resolver, self.tunnel.interface(), &split).await;
        self.dns = Some(split);
    }

    /// Heartbeat until a signal (`Ok`) or a changed server key (`Err(KeyChanged)`).
    async fn run(&mut self, signals: &mut Signals) -> Result<(), AgentError> {
        loop {
            let delay = tokio::select! {
                delay = self.attempt() => delay?,
                () = signals.recv() => return Ok(()),
            };
            self.status.status.next_attempt_at = chrono::TimeDelta::from_std(delay)
                .ok()
                .and_then(|d| Utc::now().checked_add_signed(d))
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
            self.status.save();
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = signals.recv() => return Ok(()),
            }
        }
    }

    /// One heartbeat, and the delay before the next.
    async fn attempt(&mut self) -> Result<Duration, AgentError> {
        let facts = HostFacts::read();
        let beat = Heartbeat {
            agent_version: AGENT_VERSION.to_string(),
            uptime_secs: host::uptime_secs(),
            hostname: facts.hostname,
            os: facts.os,
            kernel: facts.kernel,
        };
        self.status.status.last_attempt_at = Some(now());
        let result = self.api.heartbeat(&beat).await;
        self.status.status.tunnel = self.tunnel.snapshot().await;
        match result {
            Ok(ack) => {
                // Every success at info: one line per interval is the agent's pulse in the
                // journal (and what an end-to-end test waits for).
                info!(
                    interval_secs = ack.heartbeat_interval_secs,
                    server_time = %ack.server_time,
                    after_failures = self.failures,
                    "heartbeat ok"
                );
                self.failures = 0;
                self.unanswered = 0;
                self.interval = backoff::server_interval(ack.heartbeat_interval_secs);
                self.status.status.heartbeat_interval_secs = ack.heartbeat_interval_secs;
                self.status.status.last_success_at = self.status.status.last_attempt_at.clone();
                self.status.status.consecutive_failures = 0;
                self.status.status.last_error = None;
                self.split_dns(ack.dns.as_ref()).await;
                Ok(backoff::next_delay(
                    Outcome::Success {
                        interval: self.interval,
                    },
                    &mut self.rng,
                ))
            }
            Err(err) => {
                self.failures = self.failures.saturating_add(1);
                self.status.status.consecutive_failures = self.failures;
                self.status.status.last_error = Some(err.one_line());
                if err.status() == Some(401) {
                    self.unanswered = 0;
                    let delay = backoff::next_delay(Outcome::Refused, &mut self.rng);
                    error!(
                        device = %self.enrollment.device_name,
                        retry_in = ?millis(delay),
                        "heartbeat failed: the server refused this device's credential (HTTP \
                         401): the device was deleted or its credential revoked. Not \
                         re-enrolling; to enroll again run watchgrid-agent enroll --force with \
                         a new token"
                    );
                    return Ok(delay);
                }
                let delay = backoff::next_delay(
                    Outcome::Failure {
                        consecutive: self.failures,
                    },
                    &mut self.rng,
                );
                let handshake = self
                    .status
                    .status
                    .tunnel
                    .as_ref()
                    .and_then(|t| t.last_handshake_at.clone())
                    .unwrap_or_else(|| "never".into());
                warn!(
                    error = %err.one_line(),
                    consecutive_failures = self.failures,
                    last_handshake = %handshake,
                    retry_in = ?millis(delay),
                    "heartbeat failed"
                );
                if err.is_unreachable() {
                    self.unanswered = self.unanswered.saturating_add(1);
                    if self.unanswered >= PIN_CHECK_AFTER {
                        self.check_server().await?;
                    }
                } else {
                    // The server answered through the tunnel, so it holds the pinned key.
                    self.unanswered = 0;
                }
                Ok(delay)
            }
        }
    }

    /// Ask the public URL for the server's key and endpoint: a changed key ends the run; a
    /// changed endpoint (or a re-resolved name) is followed, as the key authenticates it.
    async fn check_server(&mut self) -> Result<(), AgentError> {
        let info = match self.public.server_info().await {
            Ok(info) => info,
            Err(err) => {
                warn!(
                    error = %err.one_line(),
                    "cannot check the server's WireGuard key over the public URL; retrying later"
                );
                return Ok(());
            }
        };
        match pin::check(&self.enrollment.server_public_key, &info.server_public_key) {
            PinCheck::Changed { pinned, presented } => {
                error!(
                    pinned = %pinned,
                    presented = %presented,
                    server = %self.enrollment.server_url,
                    "server key changed: refusing to connect"
                );
                let err = AgentError::KeyChanged {
                    pinned,
                    presented,
                    server_url: self.enrollment.server_url.clone(),
                };
                self.status.status.last_error = Some(err.one_line());
                Err(err)
            }
            PinCheck::Matches => {
                let endpoint_text = if info.server_endpoint.trim().is_empty() {
                    self.enrollment.server_endpoint.as_str()
                } else {
                    info.server_endpoint.trim()
                };
                if endpoint_text != self.enrollment.server_endpoint {
                    warn!(
                        enrolled = %self.enrollment.server_endpoint,
                        now = %endpoint_text,
                        "the server announces another WireGuard endpoint; following it"
                    );
                }
                match net::resolve_endpoint(endpoint_text).await {
                    Ok(addr) if addr != self.endpoint => {
                        self.tunnel.set_endpoint(addr).await?;
                        info!(from = %self.endpoint, to = %addr, "server endpoint updated");
                        self.endpoint = addr;
                    }
                    Ok(_) => {}
                    Err(reason) => warn!(error = %reason, "cannot resolve the server's endpoint"),
                }
                let handshook = self
                    .status
                    .status
                    .tunnel
                    .as_ref()
                    .is_some_and(|t| t.last_handshake_at.is_some());
                warn!(
                    handshake = handshook,
                    "the server's key is unchanged but its agent API does not answer through \
                     the tunnel; if this device was deleted on the server, re-enroll it"
                );
                Ok(())
            }
        }
    }

    /// Tear the tunnel down and record the end of the run in status.json.
    async fn finish(self, phase: Phase) {
        let Heartbeats {
            tunnel,
            mut status,
            resolver,
            ..
        } = self;
        let interface = tunnel.interface().to_string();
        if let Some(resolver) = &resolver {
            if let Err(reason) = dns::revert(resolver, &interface).await {
                warn!(error = %reason, "cannot remove the split DNS settings");
            }
        }
        tunnel.close().await;
        info!(interface = %interface, "tunnel down");
        status.status.phase = phase;
        status.status.next_attempt_at = None;
        status.save();
    }
}

/// A delay rounded to milliseconds, for log lines.
fn millis(delay: Duration) -> Duration {
    Duration::from_millis(u64::try_from(delay.as_millis()).unwrap_or(u64::MAX))
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Secs, true)
}
