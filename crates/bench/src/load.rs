//! The load generator: `concurrency` workers, each sending one request at a time on a new
//! TCP connection bound to the device's overlay address, over devices taken round-robin from
//! all of them. Closed loop by default (each worker sends its next request as soon as the
//! last one is answered: the saturation throughput); with a rate, open loop (request `k` is
//! due at `start + k / rate`, and its latency counts from when it was due, so a server that
//! falls behind is charged for the queueing too — no coordinated omission). Requests are released
//! on tokio's 1 ms timer tick, so open-loop latencies include up to about 1 ms of the
//! generator's own lateness; closed-loop latencies do not.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::addr::{self, Overlay};
use crate::http::{self, Failure};
use crate::stats::{Latency, PerSecond};

/// What the heartbeat handler (and the bare baseline) reads: what an agent sends.
pub const HEARTBEAT_BODY: &[u8] =
    br#"{"agent_version":"0.1.0","uptime_secs":1,"hostname":"h","os":"linux"}"#;

/// Where the load goes and what a good answer looks like.
#[derive(Debug, Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub path: String,
    /// Send each device's credential as `Authorization: Bearer`.
    pub credentials: bool,
    /// Text a 200 response's body must contain.
    pub expect: Vec<u8>,
}

/// How much load, for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    pub overlay: Overlay,
    pub devices: u32,
    /// The run's credential nonce (see [`addr::credential`]).
    pub run: String,
    pub concurrency: usize,
    pub warmup: Duration,
    pub duration: Duration,
    /// Requests per second for an open-loop run; `None` for closed loop.
    pub rate: Option<f64>,
    pub timeout: Duration,
    /// Keep one connection per device open and reuse it (what an agent's HTTP client pool
    /// does between heartbeats); otherwise a new connection per request.
    pub keep_alive: bool,
}

impl Plan {
    /// When the measured window opens and closes, for a load starting at `start`.
    pub fn window(&self, start: Instant) -> (Instant, Instant) {
        let open = start + self.warmup;
        (open, open + self.duration)
    }
}

/// The result of one load run.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// Successful requests completed inside the window.
    pub ok: u64,
    pub requests_per_sec: f64,
    pub latency: Option<Latency>,
    pub per_second: Option<PerSecond>,
    /// Completions in each second of the window.
    pub per_second_series: Vec<u64>,
    /// Failures over the whole run (warm-up included), by kind.
    pub failures: BTreeMap<String, u64>,
    /// Successful requests over the whole run.
    pub total_ok: u64,
    /// Distinct devices that got a 200 at least once.
    pub devices_heard: u64,
    #[serde(skip)]
    pub heard: Bitset,
}

impl Outcome {
    pub fn failure_count(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// One bit per device.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bitset(Vec<u64>);

impl Bitset {
    pub fn new(len: u32) -> Bitset {
        Bitset(vec![0; (len as usize).div_ceil(64)])
    }

    pub fn set(&mut self, i: u32) {
        self.0[i as usize / 64] |= 1 << (i % 64);
    }

    pub fn get(&self, i: u32) -> bool {
        self.0
            .get(i as usize / 64)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    pub fn union(&mut self, other: &Bitset) {
        for (a, b) in self.0.iter_mut().zip(&other.0) {
            *a |= b;
        }
    }

    pub fn count(&self) -> u64 {
        self.0.iter().map(|w| u64::from(w.count_ones())).sum()
    }
}

#[derive(Debug)]
struct WorkerResult {
    latencies_us: Vec<u32>,
    buckets: Vec<u64>,
    failures: BTreeMap<Failure, u64>,
    total_ok: u64,
    heard: Bitset,
}

/// Run `plan` against `target`, starting at `start` (which may be slightly in the future so a
/// caller can schedule samplers on the same clock).
pub async fn run(plan: &Plan, target: &Target, start: Instant) -> anyhow::Result<Outcome> {
    if plan.devices == 0 || plan.concurrency == 0 {
        anyhow::bail!("need at least one device and one worker");
    }
    // Fail before the run if the last device does not fit.
    plan.overlay.device_ip(plan.devices - 1)?;
    let tickets = Arc::new(AtomicU64::new(0));
    let plan = Arc::new(plan.clone());
    let target = Arc::new(target.clone());
    let slots: Arc<Slots> = Arc::new(if plan.keep_alive {
        (0..plan.devices).map(|_| Mutex::new(None)).collect()
    } else {
        Vec::new()
    });
    let mut workers = Vec::with_capacity(plan.concurrency);
    for _ in 0..plan.concurrency {
        let (plan, target, tickets, slots) =
            (plan.clone(), target.clone(), tickets.clone(), slots.clone());
        workers.push(tokio::spawn(async move {
            worker(&plan, &target, &tickets, &slots, start).await
        }));
    }
    let mut latencies = Vec::new();
    let mut buckets: Vec<u64> = Vec::new();
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut total_ok = 0;
    let mut heard = Bitset::new(plan.devices);
    for handle in workers {
        let result = handle.await?;
        latencies.extend_from_slice(&result.latencies_us);
        if buckets.len() < result.buckets.len() {
            buckets.resize(result.buckets.len(), 0);
        }
        for (total, n) in buckets.iter_mut().zip(&result.buckets) {
            *total += n;
        }
        for (failure, n) in result.failures {
            *failures.entry(failure.to_string()).or_default() += n;
        }
        total_ok += result.total_ok;
        heard.union(&result.heard);
    }
    let window = plan.duration.as_secs_f64();
    let ok = latencies.len() as u64;
    Ok(Outcome {
        ok,
        requests_per_sec: ok as f64 / window,
        latency: Latency::from_micros(&mut latencies),
        per_second: PerSecond::from_buckets(&buckets, window),
        per_second_series: buckets,
        failures,
        total_ok,
        devices_heard: heard.count(),
        heard,
    })
}

/// Each device's open connection in keep-alive mode (taken out while in use).
type Slots = Vec<Mutex<Option<TcpStream>>>;

/// One request for `device`: on its kept connection if there is one (opening it otherwise,
/// and keeping it after a success), else on a new connection.
async fn send(
    plan: &Plan,
    target: &Target,
    slots: &Slots,
    device: u32,
    source: std::net::Ipv4Addr,
    request: &[u8],
    buf: &mut Vec<u8>,
) -> Result<(), Failure> {
    if !plan.keep_alive {
        return http::one_shot(
            source,
            target.addr,
            request,
            &target.expect,
            buf,
            plan.timeout,
        )
        .await;
    }
    let slot = &slots[device as usize];
    let kept = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
    let attempt = async {
        let mut stream = match kept {
            Some(stream) => stream,
            None => http::connect(source, target.addr).await?,
        };
        let (status, body) = http::exchange(&mut stream, request, buf).await?;
        http::check(status, &buf[body], &target.expect)?;
        Ok(stream)
    };
    let stream = tokio::time::timeout(plan.timeout, attempt)
        .await
        .map_err(|_| Failure::Timeout)??;
    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(stream);
    Ok(())
}

async fn worker(
    plan: &Plan,
    target: &Target,
    tickets: &AtomicU64,
    slots: &Slots,
    start: Instant,
) -> WorkerResult {
    let (open, close) = plan.window(start);
    let mut result = WorkerResult {
        latencies_us: Vec::new(),
        buckets: Vec::new(),
        failures: BTreeMap::new(),
        total_ok: 0,
        heard: Bitset::new(plan.devices),
    };
    let mut request = Vec::with_capacity(512);
    let mut buf = Vec::with_capacity(1024);
    tokio::time::sleep_until(start).await;
    loop {
        let ticket = tickets.fetch_add(1, Ordering::Relaxed);
        let due = match plan.rate {
            Some(rate) => start + Duration::from_secs_f64(ticket as f64 / rate),
            None => Instant::now(),
        };
        if due >= close {
            break;
        }
        // Only sleep for a request that is not due yet: tokio's timer has a 1 ms tick, and a
        // sleep until "now" would add up to a tick to every closed-loop request.
        if due > Instant::now() {
            tokio::time::sleep_until(due).await;
        }
        let device = (ticket % u64::from(plan.devices)) as u32;
        let Ok(source) = plan.overlay.device_ip(device) else {
            break;
        };
        let credential = target
            .credentials
            .then(|| addr::credential(&plan.run, device));
        http::post_request(
            target.addr,
            &target.path,
            credential.as_deref(),
            HEARTBEAT_BODY,
            &mut request,
        );
        let outcome = send(plan, target, slots, device, source, &request, &mut buf).await;
        let done = Instant::now();
        match outcome {
            Ok(()) => {
                result.total_ok += 1;
                result.heard.set(device);
                if done >= open && done < close {
                    let micros = done.duration_since(due).as_micros();
                    result
                        .latencies_us
                        .push(u32::try_from(micros).unwrap_or(u32::MAX));
                    let second = done.duration_since(open).as_secs() as usize;
                    if result.buckets.len() <= second {
                        result.buckets.resize(second + 1, 0);
                    }
                    result.buckets[second] += 1;
                }
            }
            Err(failure) => *result.failures.entry(failure).or_default() += 1,
        }
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitsets_count_distinct_devices() {
        let mut a = Bitset::new(130);
        a.set(0);
        a.set(129);
        a.set(129);
        let mut b = Bitset::new(130);
        b.set(64);
        b.set(0);
        a.union(&b);
        assert_eq!(a.count(), 3);
        assert!(a.get(64) && a.get(129) && !a.get(1) && !a.get(500));
    }

    #[test]
    fn the_body_is_an_agent_heartbeat() {
        let value: serde_json::Value = serde_json::from_slice(HEARTBEAT_BODY).unwrap();
        assert_eq!(value["agent_version"], "0.1.0");
        assert_eq!(value["uptime_secs"], 1);
        assert_eq!(value["hostname"], "h");
        assert_eq!(value["os"], "linux");
    }

    /// A real (tiny) run against an in-process server on loopback addresses.
    #[tokio::test]
    async fn a_short_run_counts_requests_and_devices() {
        let listener = tokio::net::TcpListener::bind("127.77.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(crate::bare::serve(listener));
        let plan = Plan {
            overlay: "127.77.0.0/24".parse().unwrap(),
            devices: 5,
            run: "t".into(),
            concurrency: 2,
            warmup: Duration::from_millis(50),
            duration: Duration::from_millis(300),
            rate: None,
            timeout: Duration::from_secs(5),
            keep_alive: false,
        };
        let target = Target {
            addr,
            path: crate::bare::PATH.into(),
            credentials: true,
            expect: crate::bare::EXPECT.to_vec(),
        };
        let outcome = run(&plan, &target, Instant::now()).await.unwrap();
        assert_eq!(outcome.failure_count(), 0, "{:?}", outcome.failures);
        assert!(outcome.ok > 0);
        assert_eq!(outcome.devices_heard, 5);
        assert!(outcome.latency.is_some());
        // An open-loop run sends about rate × time requests.
        let plan = Plan {
            rate: Some(100.0),
            ..plan
        };
        let outcome = run(&plan, &target, Instant::now()).await.unwrap();
        assert_eq!(outcome.failure_count(), 0, "{:?}", outcome.failures);
        assert!((20..=40).contains(&outcome.ok), "{}", outcome.ok);
        // Keep-alive: the same counts, over one connection per device.
        let plan = Plan {
            rate: None,
            keep_alive: true,
            ..plan
        };
        let outcome = run(&plan, &target, Instant::now()).await.unwrap();
        assert_eq!(outcome.failure_count(), 0, "{:?}", outcome.failures);
        assert_eq!(outcome.devices_heard, 5);
    }
}
