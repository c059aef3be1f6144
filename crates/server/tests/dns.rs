//! Magic DNS wired into the server, in process, on SQLite and PostgreSQL, queried with the real
//! `dig`. The overlay is `127.0.0.0/8` here, so the server is `127.0.0.1` and enrolled devices
//! get `127.0.0.2`, `127.0.0.3`, ...: `dig -b <device address>` asks as that device, with no
//! network namespace needed. Covers names from registration, rename and delete; tenant
//! isolation; the custom-record API (validation naming the field, audit, answers at once,
//! update, delete, viewers read-only); loading at start-up; reserved tenant slugs; the `dns`
//! health check and the query counters.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use std::time::Duration;

use axum::http::StatusCode;
use common::TestApp;
use serde_json::{json, Value};
use watchgrid_testkit::wait::{wait_for_or, wait_until};
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(
    names_records_and_isolation_over_real_dns,
    listener_failure_is_reported_by_health,
    concurrent_creations_cannot_put_a_cname_beside_other_data,
    a_cname_and_a_rename_onto_its_name_cannot_both_win,
    a_cname_the_zone_has_not_learnt_still_holds_its_name
);

fn free_port() -> u16 {
    common::free_port()
}

/// `dig` as the device at `from`: the status and the answer section's data.
async fn dig(port: u16, from: &str, name: &str, qtype: &str, tcp: bool) -> (String, Vec<String>) {
    let mut cmd = tokio::process::Command::new("dig");
    cmd.args(["@127.0.0.1", "-p", &port.to_string(), "-b", from])
        .args([
            "+time=2",
            "+tries=1",
            "+noall",
            "+comments",
            "+answer",
            name,
            qtype,
        ]);
    if tcp {
        cmd.arg("+tcp");
    }
    let out = cmd.output().await.expect("dig runs (bind9-dnsutils)");
    watchgrid_testkit::dig::status_and_answers(&String::from_utf8_lossy(&out.stdout))
}

async fn onboarding_token(app: &TestApp, token: &str, tenant: &str) -> String {
    let reply = app
        .call("POST", "/api/onboarding-tokens")
        .token(token)
        .tenant(tenant)
        .json(json!({"max_uses": 10}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::CREATED, "{}", reply.body);
    reply.json()["secret"].as_str().unwrap().to_owned()
}

/// Enroll a device; returns (id, overlay address, name).
async fn enroll(app: &TestApp, secret: &str, hostname: &str) -> (String, String, String) {
    let key = watchgrid_wireguard::key::PrivateKey::generate()
        .public_key()
        .to_string();
    let reply = app
        .call("POST", "/api/agent/register")
        .json(json!({"token": secret, "hostname": hostname, "os": "Debian 12", "agent_version": "0.1.0", "wg_public_key": key}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let body = reply.json();
    let ip = body["overlay_address"]
        .as_str()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    (
        body["device_id"].as_str().unwrap().to_owned(),
        ip,
        body["device_name"].as_str().unwrap().to_owned(),
    )
}

fn field_errors(reply: &common::Reply) -> Vec<String> {
    reply.json()["error"]["fields"]
        .as_array()
        .map(|fields| {
            fields
                .iter()
                .map(|f| f["field"].as_str().unwrap_or_default().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn names_records_and_isolation_over_real_dns(backend: TestBackend) {
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let app = TestApp::with_config(
        backend,
        &[
            ("WATCHGRID_OVERLAY_CIDR", "127.0.0.0/8"),
            ("WATCHGRID_AGENT_LISTEN", "127.0.0.1:1"),
            ("WATCHGRID_DNS_LISTEN", &listen),
        ],
    )
    .await;
    let root = app.admin_token().await;
    let created = app
        .call("POST", "/api/tenants")
        .token(&root)
        .json(json!({"slug": "globex", "name": "Globex"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let reserved = app
        .call("POST", "/api/tenants")
        .token(&root)
        .json(json!({"slug": "ns", "name": "Name server"}))
        .send()
        .await;
    assert_eq!(reserved.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(field_errors(&reserved), ["slug"], "{}", reserved.body);
    assert!(reserved.body.contains("reserved"), "{}", reserved.body);

    let default_secret = onboarding_token(&app, &root, "default").await;
    let (_, web_ip, web) = enroll(&app, &default_secret, "web.example.com").await;
    let (db_id, db_ip, db) = enroll(&app, &default_secret, "db").await;
    let globex_secret = onboarding_token(&app, &root, "globex").await;
    let (_, globex_ip, globex_web) = enroll(&app, &globex_secret, "web").await;
    assert_eq!(
        (web.as_str(), db.as_str(), globex_web.as_str()),
        ("web", "db", "web")
    );

    // The listener starts the way `start_fleet` starts it.
    tokio::spawn(watchgrid_server::serve::serve_dns(app.state.clone()));
    wait_until(
        "the dns check to be ok",
        Duration::from_secs(10),
        || async { app.get("/healthz").await.json()["checks"]["dns"] == "ok" },
    )
    .await;

    let d = "watchgrid.internal";
    for tcp in [false, true] {
        assert_eq!(
            dig(port, &web_ip, &format!("web.default.{d}"), "A", tcp).await,
            ("NOERROR".to_owned(), vec![web_ip.clone()]),
            "own name, tcp={tcp}"
        );
        assert_eq!(
            dig(port, &web_ip, &format!("db.default.{d}"), "A", tcp).await,
            ("NOERROR".to_owned(), vec![db_ip.clone()]),
            "sibling, tcp={tcp}"
        );
    }
    // Another tenant's names do not exist, for either side.
    assert_eq!(
        dig(port, &web_ip, &format!("web.globex.{d}"), "A", false)
            .await
            .0,
        "NXDOMAIN"
    );
    assert_eq!(
        dig(port, &globex_ip, &format!("db.default.{d}"), "A", false)
            .await
            .0,
        "NXDOMAIN"
    );
    assert_eq!(
        dig(port, &globex_ip, &format!("web.globex.{d}"), "A", false)
            .await
            .1,
        vec![globex_ip.clone()]
    );
    // PTR for a sibling; none for another tenant's address.
    let reverse = |ip: &str| {
        let mut octets: Vec<&str> = ip.split('.').collect();
        octets.reverse();
        format!("{}.in-addr.arpa", octets.join("."))
    };
    assert_eq!(
        dig(port, &web_ip, &reverse(&db_ip), "PTR", false).await.1,
        [format!("db.default.{d}.")]
    );
    assert_eq!(
        dig(port, &web_ip, &reverse(&globex_ip), "PTR", false)
            .await
            .0,
        "NXDOMAIN"
    );
    // Not a device: refused. No upstreams: outside names refused.
    assert_eq!(
        dig(port, "127.0.0.1", &format!("web.default.{d}"), "A", false)
            .await
            .0,
        "REFUSED"
    );
    assert_eq!(
        dig(port, &web_ip, "example.com", "A", false).await.0,
        "REFUSED"
    );

    // Custom records: validation names the field.
    for (body, field) in [
        (
            json!({"name": "bad name", "type": "A", "value": "192.0.2.1"}),
            "name",
        ),
        (
            json!({"name": "x", "type": "A", "value": "192.0.2.1", "ttl": 0}),
            "ttl",
        ),
        (
            json!({"name": "x", "type": "A", "value": "192.0.2.1", "ttl": 86401}),
            "ttl",
        ),
        (
            json!({"name": "x", "type": "A", "value": "not-an-address"}),
            "value",
        ),
        (
            json!({"name": "x", "type": "CNAME", "value": "example.com."}),
            "value",
        ),
        (
            json!({"name": "x", "type": "CNAME", "value": "web.globex.watchgrid.internal."}),
            "value",
        ),
    ] {
        let reply = app
            .call("POST", "/api/dns/records")
            .token(&root)
            .json(body.clone())
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            reply.body
        );
        assert_eq!(field_errors(&reply), [field], "{body}: {}", reply.body);
    }
    // A CNAME at a device's name conflicts with the device (409, like a rename onto a CNAME).
    let at_device = app
        .call("POST", "/api/dns/records")
        .token(&root)
        .json(json!({"name": "db", "type": "CNAME", "value": "web"}))
        .send()
        .await;
    assert_eq!(at_device.status, StatusCode::CONFLICT, "{}", at_device.body);
    let txt = app
        .call("POST", "/api/dns/records")
        .token(&root)
        .json(json!({"name": "api", "type": "TXT", "value": "v=1"}))
        .send()
        .await;
    assert_eq!(txt.status, StatusCode::CREATED, "{}", txt.body);
    let beside = app
        .call("POST", "/api/dns/records")
        .token(&root)
        .json(json!({"name": "api", "type": "CNAME", "value": "web"}))
        .send()
        .await;
    assert_eq!(
        field_errors(&beside),
        ["type"],
        "CNAME beside a TXT: {}",
        beside.body
    );

    // Created → answered at once (the next query, no waiting).
    let created = app
        .call("POST", "/api/dns/records")
        .token(&root)
        .json(json!({"name": "www", "type": "CNAME", "value": "web", "ttl": 60}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let record: Value = created.json();
    assert_eq!(record["fqdn"], format!("www.default.{d}."));
    assert_eq!(record["value"], format!("web.default.{d}."));
    assert_eq!(
        dig(port, &db_ip, &format!("www.default.{d}"), "A", false).await,
        (
            "NOERROR".to_owned(),
            vec![format!("web.default.{d}."), web_ip.clone()]
        )
    );
    // A device cannot be renamed onto a CNAME.
    let onto = app
        .call("PATCH", format!("/api/devices/{db_id}"))
        .token(&root)
        .json(json!({"name": "www"}))
        .send()
        .await;
    assert_eq!(onto.status, StatusCode::CONFLICT, "{}", onto.body);
    assert!(
        onto.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("CNAME"),
        "{}",
        onto.body
    );
    // Viewers read, only admins write.
    let list = app
        .call("GET", "/api/dns/records?type=CNAME")
        .token(&root)
        .send()
        .await
        .json();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(list["items"][0]["name"], "www");
    let id = record["id"].as_str().unwrap();
    let updated = app
        .call("PATCH", format!("/api/dns/records/{id}"))
        .token(&root)
        .json(json!({"value": "db"}))
        .send()
        .await;
    assert_eq!(updated.status, StatusCode::OK, "{}", updated.body);
    assert_eq!(
        dig(port, &web_ip, &format!("www.default.{d}"), "A", true)
            .await
            .1,
        [format!("db.default.{d}."), db_ip.clone()]
    );
    // The other tenant does not see it.
    assert_eq!(
        dig(port, &globex_ip, &format!("www.default.{d}"), "A", false)
            .await
            .0,
        "NXDOMAIN"
    );
    let deleted = app
        .call("DELETE", format!("/api/dns/records/{id}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    assert_eq!(
        dig(port, &web_ip, &format!("www.default.{d}"), "A", false)
            .await
            .0,
        "NXDOMAIN"
    );

    // Audited.
    let audit = app
        .call("GET", "/api/audit?limit=200")
        .token(&root)
        .send()
        .await;
    for action in [
        "dns_record.create",
        "dns_record.update",
        "dns_record.delete",
    ] {
        assert!(
            audit.body.contains(action),
            "{action} audited: {}",
            audit.body
        );
    }

    // Rename moves the name, delete removes it (and its PTR).
    let renamed = app
        .call("PATCH", format!("/api/devices/{db_id}"))
        .token(&root)
        .json(json!({"name": "database"}))
        .send()
        .await;
    assert_eq!(renamed.status, StatusCode::OK, "{}", renamed.body);
    assert_eq!(
        dig(port, &web_ip, &format!("db.default.{d}"), "A", false)
            .await
            .0,
        "NXDOMAIN"
    );
    assert_eq!(
        dig(port, &web_ip, &format!("database.default.{d}"), "A", false)
            .await
            .1,
        vec![db_ip.clone()]
    );
    assert_eq!(
        dig(port, &web_ip, &reverse(&db_ip), "PTR", false).await.1,
        [format!("database.default.{d}.")]
    );
    let gone = app
        .call("DELETE", format!("/api/devices/{db_id}"))
        .token(&root)
        .send()
        .await;
    assert_eq!(gone.status, StatusCode::NO_CONTENT);
    assert_eq!(
        dig(port, &web_ip, &format!("database.default.{d}"), "A", false)
            .await
            .0,
        "NXDOMAIN"
    );
    // A deleted device's address no longer asks as a device.
    assert_eq!(
        dig(port, &db_ip, &format!("web.default.{d}"), "A", false)
            .await
            .0,
        "REFUSED"
    );

    // Counters by response code.
    let metrics = app.get("/metrics").await.body;
    for series in [
        "watchgrid_dns_queries_total{rcode=\"noerror\"}",
        "watchgrid_dns_queries_total{rcode=\"nxdomain\"}",
        "watchgrid_dns_queries_total{rcode=\"refused\"}",
        "watchgrid_dns_forwarded_total",
        // The default per-source limit (500/s) is far above this test's queries.
        "watchgrid_rate_limit_rejections_total{limiter=\"dns\"} 0",
    ] {
        assert!(metrics.contains(series), "{series} in {metrics}");
    }
    let noerror: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("watchgrid_dns_queries_total{rcode=\"noerror\"} "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(noerror >= 10, "{noerror}");

    // A restarted server loads tenants, devices and records before it is ready.
    let kept = app
        .call("POST", "/api/dns/records")
        .token(&root)
        .json(json!({"name": "_http._tcp.web", "type": "SRV", "value": "10 5 8080 web"}))
        .send()
        .await;
    assert_eq!(kept.status, StatusCode::CREATED, "{}", kept.body);
    let port2 = free_port();
    let listen2 = format!("127.0.0.1:{port2}");
    let restarted = common::state_for(
        &app.db,
        &[
            ("WATCHGRID_OVERLAY_CIDR", "127.0.0.0/8"),
            ("WATCHGRID_AGENT_LISTEN", "127.0.0.1:1"),
            ("WATCHGRID_DNS_LISTEN", &listen2),
        ],
    )
    .await;
    assert!(watchgrid_server::serve::prepare_database(&restarted).await);
    tokio::spawn(watchgrid_server::serve::serve_dns(restarted.clone()));
    wait_until(
        "the restarted dns to listen",
        Duration::from_secs(10),
        || async { restarted.fleet.dns.check().is_ok() },
    )
    .await;
    assert_eq!(
        dig(port2, &web_ip, &format!("web.default.{d}"), "A", false)
            .await
            .1,
        vec![web_ip.clone()]
    );
    assert_eq!(
        dig(
            port2,
            &web_ip,
            &format!("_http._tcp.web.default.{d}"),
            "SRV",
            false
        )
        .await
        .1,
        [format!("10 5 8080 web.default.{d}.")]
    );
    assert_eq!(
        dig(port2, &globex_ip, &format!("web.globex.{d}"), "A", false)
            .await
            .1,
        vec![globex_ip.clone()]
    );
}

/// A listener that cannot bind keeps the server running; the `dns` health check names the
/// reason.
async fn listener_failure_is_reported_by_health(backend: TestBackend) {
    // 192.0.2.1 (TEST-NET-1) is not an address of this host.
    let app = TestApp::with_config(backend, &[("WATCHGRID_DNS_LISTEN", "192.0.2.1:53")]).await;
    tokio::spawn(watchgrid_server::serve::serve_dns(app.state.clone()));
    let last = std::sync::Mutex::new(String::new());
    let (health, check) = wait_for_or(
        "the dns check to report the failure",
        Duration::from_secs(10),
        || async {
            let health = app.get("/healthz").await;
            let check = health.json()["checks"]["dns"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if check.contains("cannot listen on 192.0.2.1:53") {
                return Some((health, check));
            }
            *last.lock().unwrap() = check;
            None
        },
        || format!("last check: {}", last.lock().unwrap()),
    )
    .await;
    assert_eq!(health.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(check.starts_with("error: "), "{check}");
    // The API still answers.
    assert_eq!(app.get("/api/version").await.status, StatusCode::OK);
    // Without an explicit listener and without a WireGuard interface there is no dns check.
    let quiet = TestApp::new(TestBackend::Sqlite).await;
    assert!(quiet.get("/healthz").await.json()["checks"]
        .get("dns")
        .is_none());
}

/// On PostgreSQL, a replica that did not make a change follows it, on one subscription: tenants
/// and records through `watchgrid_dns`, devices through `watchgrid_devices`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_follow_tenants_and_records() {
    let overlay = [
        ("WATCHGRID_OVERLAY_CIDR", "127.0.0.0/8"),
        ("WATCHGRID_AGENT_LISTEN", "127.0.0.1:1"),
    ];
    let app = TestApp::with_config(TestBackend::Postgres, &overlay).await;
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let mut pairs = overlay.to_vec();
    pairs.push(("WATCHGRID_DNS_LISTEN", &listen));
    let other = common::state_for(&app.db, &pairs).await;
    assert!(watchgrid_server::serve::prepare_database(&other).await);
    tokio::spawn(watchgrid_server::fleet::sync::follow_device_changes(
        other.db.clone(),
        other.fleet.clone(),
    ));
    tokio::spawn(watchgrid_server::serve::serve_dns(other.clone()));

    async fn eventually(port: u16, from: &str, name: &str, expect: (&str, &[&str])) {
        let mut last = None;
        for _ in 0..100 {
            let got = dig(port, from, name, "A", false).await;
            if got.0 == expect.0 && got.1 == expect.1 {
                return;
            }
            last = Some(got);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{name} from {from}: not {expect:?} within 5 s, last {last:?}");
    }

    let root = app.admin_token().await;
    let created = app
        .call("POST", "/api/tenants")
        .token(&root)
        .json(json!({"slug": "globex", "name": "Globex"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED);
    let secret = onboarding_token(&app, &root, "globex").await;
    let (_, ip, name) = enroll(&app, &secret, "web").await;
    let d = "watchgrid.internal";
    // A tenant and a device the other replica heard of only through notifications.
    eventually(
        port,
        &ip,
        &format!("{name}.globex.{d}"),
        ("NOERROR", &[ip.as_str()]),
    )
    .await;
    let record = app
        .call("POST", "/api/dns/records")
        .token(&root)
        .tenant("globex")
        .json(json!({"name": "api", "type": "A", "value": "192.0.2.5"}))
        .send()
        .await;
    assert_eq!(record.status, StatusCode::CREATED, "{}", record.body);
    eventually(
        port,
        &ip,
        &format!("api.globex.{d}"),
        ("NOERROR", &["192.0.2.5"]),
    )
    .await;
    let id = record.json()["id"].as_str().unwrap().to_owned();
    let deleted = app
        .call("DELETE", format!("/api/dns/records/{id}"))
        .token(&root)
        .tenant("globex")
        .send()
        .await;
    assert_eq!(deleted.status, StatusCode::NO_CONTENT);
    eventually(port, &ip, &format!("api.globex.{d}"), ("NXDOMAIN", &[])).await;
}

/// CNAMEs and A records created at the same name at the same moment: each transaction checks
/// the name's whole record set after writing, and on PostgreSQL none would see the others'
/// uncommitted rows without the tenant lock. Only records of one kind may win, every time.
async fn concurrent_creations_cannot_put_a_cname_beside_other_data(backend: TestBackend) {
    let app = std::sync::Arc::new(
        TestApp::with_config(
            backend,
            &[
                ("WATCHGRID_WG_BACKEND", "none"),
                ("WATCHGRID_DNS_LISTEN", "off"),
            ],
        )
        .await,
    );
    let root = app.admin_token().await;
    for round in 0..20 {
        let name = format!("race{round}");
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(8));
        let mut tasks = Vec::new();
        for i in 0..8 {
            let (app, root, name, start) = (app.clone(), root.clone(), name.clone(), start.clone());
            tasks.push(tokio::spawn(async move {
                let body = if i % 2 == 0 {
                    json!({"name": name, "type": "CNAME", "value": format!("web{i}")})
                } else {
                    json!({"name": name, "type": "A", "value": format!("100.64.0.{}", 10 + i)})
                };
                start.wait().await;
                let reply = app
                    .call("POST", "/api/dns/records")
                    .token(&root)
                    .json(body)
                    .send()
                    .await;
                (i % 2 == 0, reply.status)
            }));
        }
        let mut won = Vec::new();
        for task in tasks {
            let (is_cname, status) = task.await.unwrap();
            if status == StatusCode::CREATED {
                won.push(is_cname);
            }
        }
        let cnames = won.iter().filter(|c| **c).count();
        assert!(
            (cnames == 1 && won.len() == 1) || (cnames == 0 && !won.is_empty()),
            "round {round}: {cnames} CNAMEs among {} created records",
            won.len()
        );
    }
}

/// A CNAME created while a device is renamed onto the same name: both check the other's rows
/// under the tenant's name lock, so exactly one wins and the other is a 409, and the zone
/// answers whatever won (issue 11, item 14: on PostgreSQL both used to succeed).
async fn a_cname_and_a_rename_onto_its_name_cannot_both_win(backend: TestBackend) {
    let app = std::sync::Arc::new(
        TestApp::with_config(
            backend,
            &[
                ("WATCHGRID_WG_BACKEND", "none"),
                ("WATCHGRID_DNS_LISTEN", "off"),
            ],
        )
        .await,
    );
    let root = app.admin_token().await;
    let created = app
        .call("POST", "/api/devices")
        .token(&root)
        .json(json!({"name": "mover"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let device_id = created.json()["device"]["id"].as_str().unwrap().to_owned();
    let (mut cname_wins, mut rename_wins) = (0, 0);
    for round in 0..10 {
        let name = format!("contested{round}");
        let start = std::sync::Arc::new(tokio::sync::Barrier::new(2));
        let cname = {
            let (app, root, name, start) = (app.clone(), root.clone(), name.clone(), start.clone());
            tokio::spawn(async move {
                start.wait().await;
                app.call("POST", "/api/dns/records")
                    .token(&root)
                    .json(json!({"name": name, "type": "CNAME", "value": "elsewhere"}))
                    .send()
                    .await
            })
        };
        let rename = {
            let (app, root, name, start, id) = (
                app.clone(),
                root.clone(),
                name.clone(),
                start.clone(),
                device_id.clone(),
            );
            tokio::spawn(async move {
                start.wait().await;
                app.call("PATCH", format!("/api/devices/{id}"))
                    .token(&root)
                    .json(json!({"name": name}))
                    .send()
                    .await
            })
        };
        let (cname, rename) = (cname.await.unwrap(), rename.await.unwrap());
        match (cname.status, rename.status) {
            (StatusCode::CREATED, StatusCode::CONFLICT) => cname_wins += 1,
            (StatusCode::CONFLICT, StatusCode::OK) => rename_wins += 1,
            other => panic!(
                "round {round}: exactly one must win, the other 409: {other:?} {} / {}",
                cname.body, rename.body
            ),
        }
        let zone = app.state.fleet.dns.zone.has_cname("default", &name);
        assert_eq!(
            zone,
            cname.status == StatusCode::CREATED,
            "round {round}: zone"
        );
    }
    assert_eq!(cname_wins + rename_wins, 10);
}

/// A CNAME another replica wrote a moment ago is in the database before this replica's zone
/// learns of it: creating and enrolling devices check the database under the tenant's lock,
/// not only the zone in memory.
async fn a_cname_the_zone_has_not_learnt_still_holds_its_name(backend: TestBackend) {
    let app = TestApp::with_config(
        backend,
        &[
            ("WATCHGRID_WG_BACKEND", "none"),
            ("WATCHGRID_DNS_LISTEN", "off"),
        ],
    )
    .await;
    let root = app.admin_token().await;
    let tenant = watchgrid_store::tenants::tenant_by_slug(&app.state.db, "default")
        .await
        .unwrap()
        .unwrap();
    let now = chrono::Utc::now();
    // Written as another replica would: straight to the database, the zone untouched.
    for name in ["printer", "kiosk"] {
        let row = watchgrid_store::dns::DnsRecordRow {
            id: uuid::Uuid::new_v4(),
            tenant_id: tenant.id,
            name: name.into(),
            record_type: "CNAME".into(),
            ttl: 300,
            value: "elsewhere".into(),
            created_by: "replica-b".into(),
            created_at: now,
            updated_at: now,
        };
        watchgrid_store::dns::insert_record(&app.state.db, &row)
            .await
            .unwrap();
        assert!(!app.state.fleet.dns.zone.has_cname("default", name));
    }

    let plain = app
        .call("POST", "/api/devices")
        .token(&root)
        .json(json!({"name": "printer"}))
        .send()
        .await;
    assert_eq!(
        plain.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "{}",
        plain.body
    );
    assert_eq!(field_errors(&plain), vec!["name".to_owned()]);
    assert!(
        plain.body.contains("is a CNAME in Magic DNS"),
        "{}",
        plain.body
    );

    // Enrollment takes the next free name instead, and its address is not lost.
    let secret = onboarding_token(&app, &root, "default").await;
    let (_, ip, name) = enroll(&app, &secret, "kiosk").await;
    assert_eq!(name, "kiosk-2");
    let listed = app.call("GET", "/api/devices").token(&root).send().await;
    assert_eq!(listed.status, StatusCode::OK);
    let listed = listed.json();
    let names: Vec<&str> = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["kiosk-2"]);
    // The first address the failed attempts reserved went back to the pool.
    assert_eq!(ip, "100.64.0.2", "{ip}");
}
