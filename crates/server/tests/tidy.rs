//! Repository hygiene the compiler does not check: every Rust file says what it is for on its
//! first line, and only the configuration module reads the environment.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::{Path, PathBuf};

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            if path
                .file_name()
                .is_some_and(|n| n != "target" && n != "node_modules")
            {
                rust_files(&path, out);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_rust_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    rust_files(&workspace_root().join("crates"), &mut files);
    assert!(files.len() > 10, "found too few files: {files:?}");
    files
}

#[test]
fn every_rust_file_opens_with_a_doc_line() {
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let text = std::fs::read_to_string(path).unwrap();
            !text.starts_with("//!")
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "files without a leading `//!` line: {offenders:?}"
    );
}

/// Configuration is read once, into `Config`; a stray `env::var` would bypass validation and
/// the documentation check. Test fixtures and build scripts are exempt.
#[test]
fn only_the_config_module_reads_the_environment() {
    let offenders: Vec<_> = all_rust_files()
        .into_iter()
        .filter(|path| {
            let p = path.to_string_lossy();
            let exempt = p.ends_with("/src/config.rs")
                || p.ends_with("build.rs")
                || p.contains("/testkit/")
                || p.contains("/tests/");
            !exempt && {
                let text = std::fs::read_to_string(path).unwrap();
                text.contains("env::var(")
                    || text.contains("env::var_os(")
                    || text.contains("env::vars(")
            }
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "environment read outside config.rs: {offenders:?}"
    );
}

/// Every series the server registers is in docs/production.md's metrics table (three were
/// missing: issue 11, item 23), named as scraped (`_total` on counters).
#[test]
fn every_metric_series_is_documented() {
    let doc = std::fs::read_to_string(workspace_root().join("docs/production.md")).unwrap();
    let metrics = watchgrid_server::metrics::Metrics::new();
    let text = metrics.render(watchgrid_store::PoolStats { open: 0, in_use: 0 });
    let mut missing = Vec::new();
    let mut seen = 0;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = rest.split_once(' ').unwrap();
        let scraped = if kind == "counter" {
            format!("{name}_total")
        } else {
            name.to_owned()
        };
        seen += 1;
        if !doc.contains(&format!("| `{scraped}` |")) {
            missing.push(scraped);
        }
    }
    assert!(seen >= 10, "no series found in:\n{text}");
    assert!(
        missing.is_empty(),
        "not in docs/production.md's metrics table: {missing:?}"
    );
}
