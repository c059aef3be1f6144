//! What `/proc` says about a process (memory, CPU time) and about the machine (CPU busy time).

use std::fs;

/// `VmRSS` and `VmHWM` (peak resident set) of a process, in KiB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Memory {
    pub rss_kib: u64,
    pub peak_kib: u64,
}

/// Read a process's memory from `/proc/<pid>/status`.
pub fn memory(pid: u32) -> Option<Memory> {
    parse_status(&fs::read_to_string(format!("/proc/{pid}/status")).ok()?)
}

pub fn parse_status(text: &str) -> Option<Memory> {
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
    };
    Some(Memory {
        rss_kib: field("VmRSS:")?,
        peak_kib: field("VmHWM:")?,
    })
}

/// User plus system CPU time of a process, in clock ticks (`/proc/<pid>/stat` fields 14, 15).
pub fn cpu_ticks(pid: &str) -> Option<u64> {
    parse_stat(&fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

pub fn parse_stat(text: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state), so field N is at index N - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Machine-wide CPU time from `/proc/stat`, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MachineTicks {
    /// Everything but idle and iowait (steal included: the hypervisor took it from us).
    pub busy: u64,
    pub total: u64,
    pub softirq: u64,
    pub steal: u64,
}

impl MachineTicks {
    pub fn since(&self, earlier: &MachineTicks) -> MachineTicks {
        MachineTicks {
            busy: self.busy.saturating_sub(earlier.busy),
            total: self.total.saturating_sub(earlier.total),
            softirq: self.softirq.saturating_sub(earlier.softirq),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

pub fn machine_ticks() -> Option<MachineTicks> {
    parse_machine(&fs::read_to_string("/proc/stat").ok()?)
}

pub fn parse_machine(text: &str) -> Option<MachineTicks> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let at = |i: usize| values.get(i).copied().unwrap_or(0);
    let total: u64 = values.iter().take(8).sum();
    let idle = values.get(3)? + at(4);
    Some(MachineTicks {
        busy: total - idle,
        total,
        softirq: at(6),
        steal: at(7),
    })
}

/// CPU ticks of a PostgreSQL cluster: its postmaster (first line of `postmaster.pid` in the
/// data directory) and every process it started.
pub fn cluster_ticks(data_dir: &std::path::Path) -> Option<u64> {
    let postmaster: u32 = fs::read_to_string(data_dir.join("postmaster.pid"))
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()?;
    let mut ticks = cpu_ticks(&postmaster.to_string()).unwrap_or(0);
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if parent(&stat) == Some(postmaster) {
            ticks += parse_stat(&stat).unwrap_or(0);
        }
    }
    Some(ticks)
}

/// CPU ticks of the kernel's worker threads (`kworker/*`, which do the page-cache writeback of
/// the database files, and `ksoftirqd/*`, which handles network softirqs the interrupted
/// processes could not).
pub fn kernel_thread_ticks() -> u64 {
    let Ok(entries) = fs::read_dir("/proc") else {
        return 0;
    };
    let mut ticks = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if is_kernel_worker(&stat) {
            ticks += parse_stat(&stat).unwrap_or(0);
        }
    }
    ticks
}

pub fn is_kernel_worker(stat: &str) -> bool {
    let comm = stat
        .split_once('(')
        .and_then(|(_, rest)| rest.rsplit_once(')'))
        .map_or("", |(comm, _)| comm);
    comm.starts_with("kworker/") || comm.starts_with("ksoftirqd/")
}

/// The parent pid from a `/proc/<pid>/stat` line (field 4).
pub fn parent(stat: &str) -> Option<u32> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// The TCP counters that explain connection-level tail latency, from `/proc/net/netstat`
/// (this network namespace, so other programs' connections count too).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub struct TcpCounters {
    /// Connections dropped because a listener's accept queue was full (the client retries its
    /// SYN after 1 s, then 3 s, ...).
    pub listen_overflows: u64,
    pub syn_retransmits: u64,
}

impl TcpCounters {
    pub fn since(&self, earlier: &TcpCounters) -> TcpCounters {
        TcpCounters {
            listen_overflows: self
                .listen_overflows
                .saturating_sub(earlier.listen_overflows),
            syn_retransmits: self.syn_retransmits.saturating_sub(earlier.syn_retransmits),
        }
    }
}

pub fn tcp_counters() -> TcpCounters {
    parse_netstat(&fs::read_to_string("/proc/net/netstat").unwrap_or_default())
}

pub fn parse_netstat(text: &str) -> TcpCounters {
    let lines: Vec<&str> = text.lines().filter(|l| l.starts_with("TcpExt:")).collect();
    let mut counters = TcpCounters::default();
    if let [names, values, ..] = lines[..] {
        for (name, value) in names
            .split_whitespace()
            .zip(values.split_whitespace())
            .skip(1)
        {
            let value = value.parse().unwrap_or(0);
            match name {
                "ListenOverflows" => counters.listen_overflows = value,
                "TCPSynRetrans" => counters.syn_retransmits = value,
                _ => {}
            }
        }
    }
    counters
}

/// This process's soft limit on open files (`Max open files` in `/proc/self/limits`).
pub fn open_files_limit() -> Option<u64> {
    parse_limits(&fs::read_to_string("/proc/self/limits").ok()?)
}

pub fn parse_limits(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line["Max open files".len()..].split_whitespace().next()?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on every Linux this runs on otherwise).
pub fn ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields() {
        let text = "Name:\twatchgrid-serv\nVmPeak:\t  900000 kB\nVmHWM:\t   81234 kB\nVmRSS:\t   70000 kB\n";
        assert_eq!(
            parse_status(text),
            Some(Memory {
                rss_kib: 70000,
                peak_kib: 81234
            })
        );
        assert_eq!(parse_status("Name: x\n"), None);
    }

    #[test]
    fn stat_cpu_time() {
        let text =
            "1234 (watch grid) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 4 0 100 0";
        assert_eq!(parse_stat(text), Some(300));
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parent(text), Some(1));
        assert!(!is_kernel_worker(text));
        assert!(is_kernel_worker(
            "3013 (kworker/u8:4-flush-254:0) I 2 0 0 0 -1 0 0 0 0 0 40 360"
        ));
        assert!(is_kernel_worker(
            "14 (ksoftirqd/0) S 2 0 0 0 -1 0 0 0 0 0 1 2"
        ));
    }

    #[test]
    fn open_files() {
        let text = "Limit                     Soft Limit           Hard Limit           Units\n\
                    Max open files            20000                20000                files\n";
        assert_eq!(parse_limits(text), Some(20000));
        assert_eq!(
            parse_limits("Max open files unlimited unlimited files"),
            Some(u64::MAX)
        );
        assert_eq!(parse_limits(""), None);
    }

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent ListenOverflows ListenDrops TCPSynRetrans\n\
                    TcpExt: 0 12 12 30\nIpExt: InNoRoutes\nIpExt: 0\n";
        assert_eq!(
            parse_netstat(text),
            TcpCounters {
                listen_overflows: 12,
                syn_retransmits: 30
            }
        );
        assert_eq!(parse_netstat(""), TcpCounters::default());
    }

    #[test]
    fn machine_busy_time() {
        let text = "cpu  100 0 50 800 50 0 10 0 0 0\ncpu0 50 0 25 400 25 0 5 0 0 0\n";
        assert_eq!(
            parse_machine(text),
            Some(MachineTicks {
                busy: 160,
                total: 1010,
                softirq: 10,
                steal: 0
            })
        );
    }
}
