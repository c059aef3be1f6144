//! 1,000 wrong logins from one address against the real server: most are refused with 429,
//! the login-failure and rate-limit metrics count them, every one is in the audit log and the
//! log, and the rest of the API keeps answering quickly meanwhile.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::time::{Duration, Instant};

use common::ServerProcess;

const ATTEMPTS: usize = 1000;

fn counter(metrics: &str, series: &str) -> u64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("{series} missing:\n{metrics}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_wrong_logins() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::spawn(
        dir.path(),
        &[
            ("ADMIN_PASSWORD", "Flood-Admin-Pass-1"),
            ("WATCHGRID_LOG_FORMAT", "json"),
        ],
    );
    server
        .wait_for("/readyz", Duration::from_secs(30), |s, _| s == 200)
        .await;
    let client = server.client.clone();
    let login = client
        .post(format!("{}/api/auth/login", server.base))
        .json(&serde_json::json!({"username": "admin", "password": "Flood-Admin-Pass-1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 200);
    let admin: serde_json::Value = login.json().await.unwrap();
    let admin = admin["access_token"].as_str().unwrap().to_owned();

    // Meanwhile, another client keeps using the API.
    let probe = {
        let client = client.clone();
        let base = server.base.clone();
        let admin = admin.clone();
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut answered = 0;
            let deadline = Instant::now() + Duration::from_secs(120);
            loop {
                let started = Instant::now();
                let reply = client
                    .get(format!("{base}/api/auth/whoami"))
                    .bearer_auth(&admin)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(reply.status(), 200);
                worst = worst.max(started.elapsed());
                answered += 1;
                if answered >= 200 || Instant::now() > deadline {
                    return (answered, worst);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };

    let mut statuses = std::collections::BTreeMap::new();
    let mut retry_after_seen = false;
    for i in 0..ATTEMPTS {
        // Half against an existing account, half against a rotating set of names.
        let username = if i % 2 == 0 {
            "admin".to_owned()
        } else {
            format!("user{}", i % 37)
        };
        let reply = client
            .post(format!("{}/api/auth/login", server.base))
            .json(&serde_json::json!({"username": username, "password": "Wrong-Guess-123"}))
            .send()
            .await
            .unwrap();
        if reply.status() == 429 {
            retry_after_seen |= reply.headers().contains_key("retry-after");
        }
        *statuses.entry(reply.status().as_u16()).or_insert(0usize) += 1;
    }
    let (answered, worst) = probe.await.unwrap();

    let refused = statuses.get(&429).copied().unwrap_or(0);
    let rejected = statuses.get(&401).copied().unwrap_or(0);
    assert_eq!(refused + rejected, ATTEMPTS, "{statuses:?}");
    assert!(
        refused >= 900,
        "most attempts are rate limited: {statuses:?}"
    );
    assert!(retry_after_seen);
    assert!(
        answered >= 50,
        "the API kept answering ({answered} answers)"
    );
    assert!(
        worst < Duration::from_millis(1500),
        "slowest other request took {worst:?}"
    );

    let metrics = client
        .get(format!("{}/metrics", server.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let limited = counter(
        &metrics,
        r#"watchgrid_login_failures_total{reason="rate_limited"}"#,
    );
    let bad = counter(
        &metrics,
        r#"watchgrid_login_failures_total{reason="bad_password"}"#,
    ) + counter(
        &metrics,
        r#"watchgrid_login_failures_total{reason="unknown_user"}"#,
    );
    assert_eq!(limited as usize, refused);
    assert_eq!(bad as usize, rejected);
    let rejections = counter(
        &metrics,
        r#"watchgrid_rate_limit_rejections_total{limiter="login"}"#,
    ) + counter(
        &metrics,
        r#"watchgrid_rate_limit_rejections_total{limiter="login_account"}"#,
    );
    assert_eq!(rejections as usize, refused);

    // Every failure is in the audit log.
    let mut failures = 0;
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!(
            "{}/api/audit?action=auth.login&success=false&scope=all&limit=500",
            server.base
        );
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = page["items"].as_array().unwrap();
        assert!(items.iter().all(|e| e["client_addr"] == "127.0.0.1"));
        failures += items.len();
        cursor = page["next_cursor"].as_str().map(str::to_owned);
        if cursor.is_none() {
            break;
        }
    }
    assert_eq!(failures, ATTEMPTS);

    // And in the log, with the client address.
    let logs = server.logs();
    let invalid = logs
        .lines()
        .filter(|l| l.contains("invalid credentials") && l.contains("127.0.0.1"))
        .count();
    let limited_lines = logs
        .lines()
        .filter(|l| l.contains("login refused: rate limited") && l.contains("127.0.0.1"))
        .count();
    assert_eq!(invalid, rejected);
    assert_eq!(limited_lines, refused);
    assert!(
        !logs.contains("Wrong-Guess-123"),
        "passwords never reach the log"
    );
}
