//! The server's background tasks under the supervisor: the ones started are the ones
//! docs/production.md lists, in its order and placement, and shutdown stops them all.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::time::Duration;

use common::TestApp;
use watchgrid_core::runtime::{Leadership, Placement, Supervisor};
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(background_tasks_are_the_documented_ones_and_stop_in_time);

/// `(task, runs on)` rows of the "Background tasks" table in docs/production.md.
fn documented_tasks() -> Vec<(String, String)> {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/production.md"
    ))
    .unwrap();
    let section = doc.split("## Background tasks").nth(1).unwrap();
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let name = cells.get(1)?.strip_prefix('`')?.strip_suffix('`')?;
            Some((name.to_owned(), cells.get(2)?.to_string()))
        })
        .collect()
}

async fn background_tasks_are_the_documented_ones_and_stop_in_time(backend: TestBackend) {
    let app = TestApp::with_config(
        backend,
        &[
            ("WATCHGRID_WG_BACKEND", "none"),
            ("WATCHGRID_DNS_LISTEN", "off"),
        ],
    )
    .await;
    let supervisor = Supervisor::new(Leadership::always());
    // What `serve` starts before start-up finishes, then the rest.
    supervisor.spawn(
        "rate_limit_cleanup",
        Placement::EveryReplica,
        |stop| async move {
            stop.cancelled().await;
            Ok(())
        },
    );
    watchgrid_server::serve::start_background(&app.state, &supervisor);
    let started: Vec<(String, String)> = supervisor
        .tasks()
        .into_iter()
        .map(|(name, placement)| {
            let runs_on = match placement {
                Placement::EveryReplica => "every replica",
                Placement::LeaderOnly => "the leader",
            };
            (name.to_owned(), runs_on.to_owned())
        })
        .collect();
    assert_eq!(started, documented_tasks());
    // Every task honours cancellation: none needs the abort after the limit.
    tokio::time::timeout(
        Duration::from_secs(5),
        supervisor.shutdown(Duration::from_secs(10)),
    )
    .await
    .expect("every background task stops when cancelled");
    assert!(supervisor.tasks().is_empty());
}
