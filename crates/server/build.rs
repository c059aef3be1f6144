//! Records the git commit and build time for `/api/version` and `--version`.
//!
//! `WATCHGRID_BUILD_COMMIT` and `WATCHGRID_BUILD_DATE` override both (container builds have no
//! `.git`); `SOURCE_DATE_EPOCH` is honoured for reproducible builds.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=WATCHGRID_BUILD_COMMIT");
    println!("cargo:rerun-if-env-changed=WATCHGRID_BUILD_DATE");
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
    for path in [
        "../../.git/HEAD",
        "../../.git/refs/heads",
        "../../.git/packed-refs",
    ] {
        if std::path::Path::new(path).exists() {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    let commit = std::env::var("WATCHGRID_BUILD_COMMIT")
        .ok()
        .or_else(|| run("git", &["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|| "unknown".to_owned());
    let built = std::env::var("WATCHGRID_BUILD_DATE")
        .ok()
        .or_else(|| {
            let epoch = std::env::var("SOURCE_DATE_EPOCH").ok()?;
            run(
                "date",
                &["-u", "-d", &format!("@{epoch}"), "+%Y-%m-%dT%H:%M:%SZ"],
            )
        })
        .or_else(|| run("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"]))
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=WATCHGRID_BUILD_COMMIT={commit}");
    println!("cargo:rustc-env=WATCHGRID_BUILD_DATE={built}");
}

fn run(program: &str, args: &[&str]) -> Option<String> {
    let output = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?.trim().to_owned();
    (output.status.success() && !text.is_empty()).then_some(text)
}
