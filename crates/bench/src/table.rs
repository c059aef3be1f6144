//! `watchgrid-bench table`: the JSON lines of several runs as one markdown table.

use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::Value;

const HEADER: &str = "\
| Backend | Devices | Load | Heartbeats/s | Lowest 1 s | p50 ms | p99 ms | max ms | Failures \
| Server peak RSS MiB | CPU cores: server / generator / database / kernel workers / other \
| Bare axum req/s (before / after) | Ratio | `last_seen_at` written | DB lag s | Runs |
|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---:|---|";

pub fn run(files: &[PathBuf], median: bool) -> Result<()> {
    println!("{}", render(&read(files)?, median));
    Ok(())
}

/// Every result line of `files`, in order.
pub fn read(files: &[PathBuf]) -> Result<Vec<Value>> {
    let mut reports = Vec::new();
    for path in files {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            reports.push(
                serde_json::from_str(line)
                    .with_context(|| format!("{}:{}: not a result line", path.display(), n + 1))?,
            );
        }
    }
    Ok(reports)
}

/// One row per run, or with `median` one row per configuration: its median run by
/// heartbeats/s, with the number of runs and their range.
pub fn render(reports: &[Value], median: bool) -> String {
    let mut out = vec![HEADER.to_owned()];
    if !median {
        out.extend(reports.iter().map(|r| row(r, "1".into())));
        return out.join("\n");
    }
    let mut groups: Vec<(String, Vec<&Value>)> = Vec::new();
    for report in reports {
        let key = format!(
            "{} {} {} {} {} {} {}",
            report["backend"],
            report["devices"],
            report["rate"],
            report["concurrency"],
            report["keep_alive"],
            report["warmup_secs"],
            report["duration_secs"]
        );
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, runs)) => runs.push(report),
            None => groups.push((key, vec![report])),
        }
    }
    for (_, mut runs) in groups {
        let rate = |r: &Value| {
            r["server"]["outcome"]["requests_per_sec"]
                .as_f64()
                .unwrap_or(0.0)
        };
        runs.sort_by(|a, b| rate(a).total_cmp(&rate(b)));
        let middle = runs[(runs.len() - 1) / 2];
        let runs_note = if runs.len() == 1 {
            "1".to_owned()
        } else {
            format!(
                "{} ({:.0}–{:.0}/s)",
                runs.len(),
                rate(runs[0]),
                rate(runs[runs.len() - 1])
            )
        };
        out.push(row(middle, runs_note));
    }
    out.join("\n")
}

fn failures(measured: &Value) -> u64 {
    measured["outcome"]["failures"]
        .as_object()
        .map_or(0, |m| m.values().filter_map(Value::as_u64).sum())
}

/// Busy cores not explained by the server, the generator, the database or steal (computed
/// here from the raw figures, so result files from every version agree).
fn other_cores(cpu: &Value) -> f64 {
    let num = |name: &str| cpu[name].as_f64().unwrap_or(0.0);
    (num("machine_busy_cores")
        - num("server_cores")
        - num("load_generator_cores")
        - num("database_cores")
        - num("kernel_workers_cores")
        - num("steal_cores"))
    .max(0.0)
}

fn row(r: &Value, runs: String) -> String {
    let num = |v: &Value| v.as_f64().unwrap_or(f64::NAN);
    let server = &r["server"];
    let outcome = &server["outcome"];
    let latency = &outcome["latency"];
    let cpu = &server["cpu"];
    let bare_failures = failures(&r["bare"]) + failures(&r["bare_after"]);
    let connections = if r["keep_alive"].as_bool() == Some(true) {
        "keep-alive"
    } else {
        "new conn"
    };
    let window = format!(
        "{}+{} s",
        r["warmup_secs"].as_f64().unwrap_or(f64::NAN),
        r["duration_secs"].as_f64().unwrap_or(f64::NAN)
    );
    let load = match r["rate"].as_f64() {
        Some(rate) => format!(
            "open {rate:.0}/s, c={}, {connections}, {window}",
            r["concurrency"]
        ),
        None => format!("closed, c={}, {connections}, {window}", r["concurrency"]),
    };
    let bare_rate = |b: &Value| {
        b["outcome"]["requests_per_sec"]
            .as_f64()
            .map_or_else(|| "–".to_owned(), |x| format!("{x:.0}"))
    };
    let bare = format!(
        "{} / {}",
        bare_rate(&r["bare"]),
        bare_rate(&r["bare_after"])
    );
    let ratio = r["ratio"]
        .as_f64()
        .map_or_else(|| "–".to_owned(), |x| format!("{x:.2}"));
    let failed = failures(server);
    format!(
        "| {} | {} | {} | {:.0} | {} | {:.2} | {:.2} | {:.1} | {} | {:.0} | {:.2} / {:.2} / {:.2} / {:.2} / {:.2} | {} | {} | {}/{} | {:.1} | {runs} |",
        r["backend"].as_str().unwrap_or("?"),
        r["devices"],
        load,
        num(&outcome["requests_per_sec"]),
        outcome["per_second"]["min"],
        num(&latency["p50_ms"]),
        num(&latency["p99_ms"]),
        num(&latency["max_ms"]),
        if bare_failures > 0 {
            format!("{failed} (+{bare_failures} bare)")
        } else {
            failed.to_string()
        },
        num(&server["rss_peak_kib"]) / 1024.0,
        num(&cpu["server_cores"]),
        num(&cpu["load_generator_cores"]),
        num(&cpu["database_cores"]),
        cpu["kernel_workers_cores"].as_f64().unwrap_or(0.0),
        other_cores(cpu),
        bare,
        ratio,
        r["db"]["heard_written"],
        r["db"]["heard"],
        num(&r["db_write_lag_secs"]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_show_the_key_figures() {
        let report = serde_json::json!({
            "backend": "sqlite", "devices": 10000, "concurrency": 64, "rate": null,
            "keep_alive": false, "warmup_secs": 5.0, "duration_secs": 20.0,
            "server": {
                "outcome": {
                    "requests_per_sec": 12345.6, "per_second": {"min": 12000, "max": 12600},
                    "latency": {"p50_ms": 4.5, "p99_ms": 12.25, "max_ms": 40.0},
                    "failures": {}
                },
                "rss_peak_kib": 51200,
                "cpu": {"server_cores": 1.1, "load_generator_cores": 0.7, "database_cores": 0.0,
                        "steal_cores": 0.0, "machine_busy_cores": 1.85}
            },
            "bare": {"outcome": {"requests_per_sec": 20000.0, "failures": {}}},
            "bare_after": {"outcome": {"requests_per_sec": 19000.4, "failures": {"timeout": 2}}},
            "ratio": 0.633,
            "db": {"heard": 10000, "heard_written": 10000},
            "db_write_lag_secs": 1.2
        });
        assert_eq!(
            row(&report, "1".into()),
            "| sqlite | 10000 | closed, c=64, new conn, 5+20 s | 12346 | 12000 | 4.50 | 12.25 | 40.0 | 0 (+2 bare) | 50 \
             | 1.10 / 0.70 / 0.00 / 0.00 / 0.05 | 20000 / 19000 | 0.63 | 10000/10000 | 1.2 | 1 |"
        );
        let open = serde_json::json!({"rate": 20000.0, "concurrency": 256, "keep_alive": true, "bare": null,
                                      "warmup_secs": 45.0, "duration_secs": 20.0});
        assert!(row(&open, "1".into()).contains("| open 20000/s, c=256, keep-alive, 45+20 s |"));
        assert!(row(&open, "1".into()).contains("| – / – | – |"));
    }

    #[test]
    fn the_median_run_stands_for_its_configuration() {
        let run = |backend: &str, rate: f64| {
            serde_json::json!({
                "backend": backend, "devices": 10, "concurrency": 64, "rate": null, "keep_alive": false,
                "server": {"outcome": {"requests_per_sec": rate}}
            })
        };
        let reports = [
            run("sqlite", 300.0),
            run("postgres", 50.0),
            run("sqlite", 100.0),
            run("sqlite", 200.0),
        ];
        let table = render(&reports, true);
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert!(
            rows[0].starts_with("| sqlite | 10 | closed, c=64, new conn, NaN+NaN s | 200 |"),
            "{}",
            rows[0]
        );
        assert!(rows[0].ends_with("| 3 (100–300/s) |"), "{}", rows[0]);
        assert!(
            rows[1].starts_with("| postgres | 10 |") && rows[1].ends_with("| 1 |"),
            "{}",
            rows[1]
        );
        assert_eq!(render(&reports, false).lines().count(), 2 + 4);
    }
}
