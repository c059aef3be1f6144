//! Identity and audit on SQLite and PostgreSQL: bootstrap, login, sessions, the password
//! policy, users and roles, API tokens, the audit log and its retention.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

mod common;

use axum::http::StatusCode;
use common::{TestApp, ADMIN_PASSWORD};
use serde_json::json;
use watchgrid_testkit::{backend_tests, TestBackend};

backend_tests!(
    bootstrap_creates_superadmin_and_default_tenant_once,
    weak_bootstrap_password_forces_a_change,
    failed_logins_look_alike_and_are_audited,
    sessions_refresh_rotate_and_logout_revokes,
    password_policy_is_enforced_with_reasons,
    users_and_roles,
    last_owner_is_protected,
    api_tokens_are_scoped_and_revocable,
    audit_log_filters_and_pages,
    audit_retention_deletes_only_old_rows,
    malformed_bodies_name_the_field,
);

async fn bootstrap_creates_superadmin_and_default_tenant_once(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let login = app.login("admin", ADMIN_PASSWORD).await;
    assert_eq!(login["user"]["is_superadmin"], true);
    assert_eq!(login["tenant"]["slug"], "default");
    assert_eq!(login["user"]["role"], "owner");
    let token = login["access_token"].as_str().unwrap().to_owned();

    // Change the password, then run the start-up sequence again: it must not overwrite it.
    let reply = app
        .call("POST", "/api/auth/password")
        .token(&token)
        .json(json!({"current_password": ADMIN_PASSWORD, "new_password": "Changed-Later-77"}))
        .send()
        .await;
    assert_eq!(reply.status, StatusCode::NO_CONTENT, "{}", reply.body);
    assert!(watchgrid_server::serve::prepare_database(&app.state).await);
    app.login("admin", "Changed-Later-77").await;
    let old = app
        .call("POST", "/api/auth/login")
        .json(json!({"username": "admin", "password": ADMIN_PASSWORD}))
        .send()
        .await;
    assert_eq!(old.status, StatusCode::UNAUTHORIZED);
    let token = app.admin_token_with("Changed-Later-77").await;
    let tenants = app
        .call("GET", "/api/tenants")
        .token(&token)
        .send()
        .await
        .json();
    assert_eq!(
        tenants.as_array().unwrap().len(),
        1,
        "one default tenant: {tenants}"
    );
}

async fn weak_bootstrap_password_forces_a_change(backend: TestBackend) {
    let app = TestApp::with_admin_password(backend, "admin").await;
    let login = app.login("admin", "admin").await;
    assert_eq!(login["user"]["must_change_password"], true);
    let token = login["access_token"].as_str().unwrap().to_owned();
    let blocked = app.call("GET", "/api/users").token(&token).send().await;
    assert_eq!(blocked.status, StatusCode::FORBIDDEN);
    assert_eq!(blocked.json()["error"]["code"], "password_change_required");
    let who = app
        .call("GET", "/api/auth/whoami")
        .token(&token)
        .send()
        .await;
    assert_eq!(who.json()["must_change_password"], true);

    let changed = app
        .call("POST", "/api/auth/password")
        .token(&token)
        .json(json!({"current_password": "admin", "new_password": "Now-Strong-enough-1"}))
        .send()
        .await;
    assert_eq!(changed.status, StatusCode::NO_CONTENT, "{}", changed.body);
    let token = app.login("admin", "Now-Strong-enough-1").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = app.call("GET", "/api/users").token(&token).send().await;
    assert_eq!(users.status, StatusCode::OK, "{}", users.body);
}

async fn failed_logins_look_alike_and_are_audited(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let attempt = |username: &'static str, password: &'static str| {
        app.call("POST", "/api/auth/login")
            .json(json!({"username": username, "password": password}))
            .send()
    };
    let wrong_password = attempt("admin", "Not-The-Password-1").await;
    let unknown_user = attempt("nobody", "Not-The-Password-1").await;
    assert_eq!(wrong_password.status, StatusCode::UNAUTHORIZED);
    assert_eq!(unknown_user.status, StatusCode::UNAUTHORIZED);
    let strip = |mut v: serde_json::Value| {
        v["error"]["request_id"] = json!(null);
        v
    };
    assert_eq!(strip(wrong_password.json()), strip(unknown_user.json()));
    assert_eq!(
        wrong_password.json()["error"]["message"],
        "invalid credentials"
    );

    let token = app.admin_token().await;
    let audit = app
        .call("GET", "/api/audit?action=auth.login&scope=all")
        .token(&token)
        .send()
        .await
        .json();
    let items = audit["items"].as_array().unwrap();
    let failures: Vec<_> = items.iter().filter(|e| e["success"] == false).collect();
    assert_eq!(failures.len(), 2, "{audit}");
    assert!(failures.iter().any(|e| e["admin_user"] == "nobody"));
    assert!(failures.iter().all(|e| e["client_addr"] == "192.0.2.10"));
    assert!(items
        .iter()
        .any(|e| e["success"] == true && e["admin_user"] == "admin"));

    let metrics = app.get("/metrics").await.body;
    assert!(
        metrics.contains(r#"watchgrid_login_failures_total{reason="bad_password"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"watchgrid_login_failures_total{reason="unknown_user"} 1"#));
}

async fn sessions_refresh_rotate_and_logout_revokes(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let login = app.login("admin", ADMIN_PASSWORD).await;
    let refresh = login["refresh_token"].as_str().unwrap().to_owned();
    assert!(refresh.starts_with("wgr_"));

    let renewed = app
        .call("POST", "/api/auth/refresh")
        .json(json!({"refresh_token": refresh}))
        .send()
        .await;
    assert_eq!(renewed.status, StatusCode::OK, "{}", renewed.body);
    let renewed = renewed.json();
    let new_refresh = renewed["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(new_refresh, refresh);
    let access = renewed["access_token"].as_str().unwrap().to_owned();
    let who = app
        .call("GET", "/api/auth/whoami")
        .token(&access)
        .send()
        .await;
    assert_eq!(who.status, StatusCode::OK);
    assert_eq!(who.json()["via"], "session");

    let out = app
        .call("POST", "/api/auth/logout")
        .token(&access)
        .send()
        .await;
    assert_eq!(out.status, StatusCode::NO_CONTENT);
    let after = app
        .call("GET", "/api/auth/whoami")
        .token(&access)
        .send()
        .await;
    assert_eq!(
        after.status,
        StatusCode::UNAUTHORIZED,
        "access token dies with the session"
    );
    let refresh_after = app
        .call("POST", "/api/auth/refresh")
        .json(json!({"refresh_token": new_refresh}))
        .send()
        .await;
    assert_eq!(refresh_after.status, StatusCode::UNAUTHORIZED);

    // The old refresh token no longer works (and presenting it ends its session: see
    // `accounts_isolation`).
    let replay = app
        .call("POST", "/api/auth/refresh")
        .json(json!({"refresh_token": refresh}))
        .send()
        .await;
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED);

    let garbage = app
        .call("GET", "/api/auth/whoami")
        .token("not-a-token")
        .send()
        .await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert_eq!(garbage.json()["error"]["code"], "unauthorized");
}

async fn password_policy_is_enforced_with_reasons(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let token = app.admin_token().await;
    let cases: &[(&str, &str)] = &[
        ("Sh0rt-x", "at least 8 characters"),
        ("lowercase-only-1", "upper-case"),
        ("UPPERCASE-ONLY-1", "lower-case"),
        ("No-Digits-Here", "digit"),
        ("NoSpecials123", "special character"),
        ("P@SSW0RD", "commonly used"),
        ("p@ssw0rD", "commonly used"),
    ];
    for (password, reason) in cases {
        let reply = app
            .call("POST", "/api/users")
            .token(&token)
            .json(json!({"username": "carol", "password": password, "role": "viewer"}))
            .send()
            .await;
        assert_eq!(
            reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{password}: {}",
            reply.body
        );
        let body = reply.json();
        let fields = body["error"]["fields"].as_array().unwrap();
        assert!(
            fields.iter().any(|f| f["field"] == "password" && f["reason"].as_str().unwrap().contains(reason)),
            "{password}: expected {reason:?} in {body}"
        );
    }
    let ok = app
        .call("POST", "/api/users")
        .token(&token)
        .json(json!({"username": "carol", "password": "Carols-Own-Pass-5", "role": "viewer"}))
        .send()
        .await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.body);
}

async fn users_and_roles(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let created = app
        .call("POST", "/api/users")
        .token(&admin)
        .json(json!({"username": "Dave", "password": "Daves-Pass-word-1", "role": "admin"}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let dave = created.json();
    assert_eq!(dave["username"], "dave", "usernames are stored lower-case");
    let dave_id = dave["id"].as_str().unwrap().to_owned();

    let duplicate = app
        .call("POST", "/api/users")
        .token(&admin)
        .json(json!({"username": "DAVE", "password": "Daves-Pass-word-1", "role": "viewer"}))
        .send()
        .await;
    assert_eq!(duplicate.status, StatusCode::CONFLICT);

    // An admin cannot create an owner or promote anyone to owner.
    let dave_token = app.login("dave", "Daves-Pass-word-1").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let escalate = app
        .call("POST", "/api/users")
        .token(&dave_token)
        .json(json!({"username": "eve", "password": "Eves-Pass-word-1", "role": "owner"}))
        .send()
        .await;
    assert_eq!(escalate.status, StatusCode::FORBIDDEN);
    let self_promote = app
        .call("PATCH", format!("/api/users/{dave_id}"))
        .token(&dave_token)
        .json(json!({"role": "owner"}))
        .send()
        .await;
    assert_eq!(self_promote.status, StatusCode::FORBIDDEN);

    // A viewer cannot manage users at all.
    app.call("POST", "/api/users")
        .token(&admin)
        .json(json!({"username": "vic", "password": "Vics-Pass-word-1", "role": "viewer"}))
        .send()
        .await;
    let vic = app.login("vic", "Vics-Pass-word-1").await["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    let denied = app.call("GET", "/api/users").token(&vic).send().await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);

    // Paging.
    let page = app
        .call("GET", "/api/users?limit=2")
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    let cursor = page["next_cursor"].as_str().unwrap();
    let rest = app
        .call("GET", format!("/api/users?limit=2&cursor={cursor}"))
        .token(&admin)
        .send()
        .await
        .json();
    assert_eq!(rest["items"].as_array().unwrap().len(), 1, "{rest}");
    assert!(rest.get("next_cursor").is_none());

    // Disabling ends the user's sessions at once.
    let disabled = app
        .call("PATCH", format!("/api/users/{dave_id}"))
        .token(&admin)
        .json(json!({"disabled": true}))
        .send()
        .await;
    assert_eq!(disabled.status, StatusCode::OK, "{}", disabled.body);
    let gone = app
        .call("GET", "/api/auth/whoami")
        .token(&dave_token)
        .send()
        .await;
    assert_eq!(gone.status, StatusCode::UNAUTHORIZED);

    let removed = app
        .call("DELETE", format!("/api/users/{dave_id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(removed.status, StatusCode::NO_CONTENT);
    let missing = app
        .call("GET", format!("/api/users/{dave_id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
}

async fn last_owner_is_protected(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let tenant = app
        .call("POST", "/api/tenants")
        .token(&admin)
        .json(json!({"slug": "acme", "name": "Acme"}))
        .send()
        .await;
    assert_eq!(tenant.status, StatusCode::CREATED, "{}", tenant.body);
    let owner = app
        .call("POST", "/api/users")
        .token(&admin)
        .tenant("acme")
        .json(json!({"username": "olga", "password": "Olgas-Pass-word-1", "role": "owner"}))
        .send()
        .await
        .json();
    let olga = owner["id"].as_str().unwrap();
    for (method, body) in [
        ("DELETE", None),
        ("PATCH", Some(json!({"role": "admin"}))),
        ("PATCH", Some(json!({"disabled": true}))),
    ] {
        let mut call = app
            .call(method, format!("/api/users/{olga}"))
            .token(&admin)
            .tenant("acme");
        if let Some(body) = body {
            call = call.json(body);
        }
        let reply = call.send().await;
        assert_eq!(
            reply.status,
            StatusCode::CONFLICT,
            "{method}: {}",
            reply.body
        );
        assert!(reply.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("last owner"));
    }
    // A failed change is still audited, as a failure.
    let audit = app
        .call("GET", "/api/audit?action=user.&success=false")
        .token(&admin)
        .tenant("acme")
        .send()
        .await
        .json();
    assert_eq!(audit["items"].as_array().unwrap().len(), 3, "{audit}");
}

async fn api_tokens_are_scoped_and_revocable(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let created = app
        .call("POST", "/api/tokens")
        .token(&admin)
        .json(json!({"name": "ci", "role": "viewer", "expires_in_days": 30}))
        .send()
        .await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
    let created = created.json();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("wgt_"));
    let id = created["token"]["id"].as_str().unwrap().to_owned();

    let who = app
        .call("GET", "/api/auth/whoami")
        .token(&secret)
        .send()
        .await
        .json();
    assert_eq!(who["via"], "api_token");
    assert_eq!(who["role"], "viewer");
    assert_eq!(who["tenant"]["slug"], "default");
    // A viewer token cannot do admin work, nor reach another tenant.
    assert_eq!(
        app.call("GET", "/api/users")
            .token(&secret)
            .send()
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    app.call("POST", "/api/tenants")
        .token(&admin)
        .json(json!({"slug": "other", "name": "Other"}))
        .send()
        .await;
    let elsewhere = app
        .call("GET", "/api/auth/whoami")
        .token(&secret)
        .tenant("other")
        .send()
        .await;
    assert!(
        elsewhere.json().get("tenant").is_none(),
        "no scope in another tenant"
    );

    // The secret is never listed again.
    let listed = app.call("GET", "/api/tokens").token(&admin).send().await;
    assert!(!listed.body.contains(&secret));
    assert!(listed.body.contains("\"name\":\"ci\""));

    let revoked = app
        .call("DELETE", format!("/api/tokens/{id}"))
        .token(&admin)
        .send()
        .await;
    assert_eq!(revoked.status, StatusCode::NO_CONTENT);
    let dead = app
        .call("GET", "/api/auth/whoami")
        .token(&secret)
        .send()
        .await;
    assert_eq!(dead.status, StatusCode::UNAUTHORIZED);

    let bad = app
        .call("POST", "/api/tokens")
        .token(&admin)
        .json(json!({"name": "", "role": "viewer", "expires_in_days": 0}))
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    let fields: Vec<_> = bad.json()["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(fields, ["name", "expires_in_days"]);
}

async fn audit_log_filters_and_pages(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    for i in 0..5 {
        app.call("POST", "/api/tokens")
            .token(&admin)
            .json(json!({"name": format!("t{i}"), "role": "viewer"}))
            .send()
            .await;
    }
    let first = app
        .call("GET", "/api/audit?action=token.create&limit=2")
        .token(&admin)
        .send()
        .await
        .json();
    let items = first["items"].as_array().unwrap();
    assert_eq!(items.len(), 2);
    assert_eq!(items[0]["details"]["name"], "t4", "newest first");
    assert_eq!(items[0]["admin_user"], "admin");
    assert_eq!(items[0]["tenant"], "default");
    assert_eq!(items[0]["resource_type"], "api_token");
    let mut seen = 2;
    let mut cursor = first["next_cursor"].as_str().map(str::to_owned);
    while let Some(c) = cursor {
        let page = app
            .call(
                "GET",
                format!("/api/audit?action=token.create&limit=2&cursor={c}"),
            )
            .token(&admin)
            .send()
            .await
            .json();
        seen += page["items"].as_array().unwrap().len();
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    assert_eq!(seen, 5);
    let bad = app
        .call("GET", "/api/audit?success=maybe")
        .token(&admin)
        .send()
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad.json()["error"]["fields"][0]["field"], "success");
}

async fn audit_retention_deletes_only_old_rows(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let db = &app.state.db;
    let old = chrono::Utc::now() - chrono::Duration::days(40);
    let recent = chrono::Utc::now() - chrono::Duration::days(5);
    let stamp = |t: chrono::DateTime<chrono::Utc>| match backend {
        TestBackend::Sqlite => format!(
            "'{}'",
            t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, false)
        ),
        TestBackend::Postgres => format!("'{}'::timestamptz", t.to_rfc3339()),
    };
    for (when, n) in [(old, 2500), (recent, 3)] {
        for _ in 0..n / 500 + usize::from(n % 500 != 0) {
            let batch = if n >= 500 { 500 } else { n };
            let values: Vec<String> = (0..batch)
                .map(|_| {
                    format!(
                        "({}, 'seed', 'seed.action', 'test', TRUE, '{{}}')",
                        stamp(when)
                    )
                })
                .collect();
            db.execute_for_tests(&format!(
                "INSERT INTO admin_audit_log (timestamp, admin_user, action, resource_type, success, details) VALUES {}",
                values.join(", ")
            ))
            .await
            .unwrap();
        }
    }
    let count = |sql: &'static str| db.query_i64_for_tests(sql);
    assert_eq!(
        count("SELECT COUNT(*) FROM admin_audit_log WHERE admin_user = 'seed'")
            .await
            .unwrap(),
        2503
    );
    let deleted = watchgrid_server::audit::sweep(db, 30).await.unwrap();
    assert_eq!(deleted, 2500, "deleted in batches, all of them");
    assert_eq!(
        count("SELECT COUNT(*) FROM admin_audit_log WHERE admin_user = 'seed'")
            .await
            .unwrap(),
        3
    );
    // Rows the server wrote just now (the bootstrap) stay too.
    assert!(
        count("SELECT COUNT(*) FROM admin_audit_log WHERE action = 'user.bootstrap'")
            .await
            .unwrap()
            == 1
    );

    if backend == TestBackend::Postgres {
        // The runbook's support query and manual clean-up, verbatim.
        db.execute_for_tests(
            "SELECT timestamp, admin_user, action, resource_type, success FROM admin_audit_log ORDER BY timestamp DESC LIMIT 500",
        )
        .await
        .unwrap();
        db.execute_for_tests(
            "DELETE FROM admin_audit_log WHERE timestamp < now() - interval '30 days';",
        )
        .await
        .unwrap();
        db.execute_for_tests("VACUUM FULL admin_audit_log")
            .await
            .unwrap();
    }
}

async fn malformed_bodies_name_the_field(backend: TestBackend) {
    let app = TestApp::new(backend).await;
    let admin = app.admin_token().await;
    let missing = app
        .call("POST", "/api/users")
        .token(&admin)
        .json(json!({"role": "viewer"}))
        .send()
        .await;
    assert_eq!(missing.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(missing.json()["error"]["fields"][0]["field"], "username");
    let bad_role = app
        .call("POST", "/api/users")
        .token(&admin)
        .json(json!({"username": "x", "role": "boss"}))
        .send()
        .await;
    assert_eq!(bad_role.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(bad_role.json()["error"]["fields"][0]["field"], "role");
    let not_json = app
        .send(
            axum::http::Request::post("/api/auth/login")
                .header("content-type", "application/json")
                .body(axum::body::Body::from("{nope"))
                .unwrap(),
        )
        .await;
    assert_eq!(not_json.status, StatusCode::BAD_REQUEST);
    assert_eq!(not_json.json()["error"]["code"], "bad_request");
    let no_type = app
        .send(
            axum::http::Request::post("/api/auth/login")
                .body(axum::body::Body::from("{}"))
                .unwrap(),
        )
        .await;
    assert_eq!(no_type.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
}
