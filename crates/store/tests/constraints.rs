//! A refused write names its constraint, alike on both backends: the server answers a taken
//! device name, address or key differently (retry with another address; refuse the key).

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use chrono::Utc;
use uuid::Uuid;
use watchgrid_store::devices::{self, DeviceRow, Json};
use watchgrid_store::migrations::TEST_SCHEMA;
use watchgrid_store::users::{self, NewUser};
use watchgrid_store::{tenants, Constraint, Database, DatabaseUrl, StoreError};
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};

backend_tests!(each_unique_constraint_is_named);

fn device(tenant: Uuid, name: &str, key: &str, ip: &str) -> DeviceRow {
    DeviceRow {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: name.into(),
        hostname: name.into(),
        kind: watchgrid_store::DeviceKind::Agent,
        os: String::new(),
        agent_version: String::new(),
        wg_public_key: key.into(),
        overlay_ip: ip.into(),
        credential_hash: None,
        tags: Json(vec![]),
        onboarding_token_id: None,
        created_at: Utc::now(),
        last_seen_at: None,
    }
}

fn conflict(result: Result<impl std::fmt::Debug, StoreError>) -> Constraint {
    match result {
        Err(StoreError::Conflict(constraint)) => constraint,
        other => panic!("expected a conflict, got {other:?}"),
    }
}

async fn each_unique_constraint_is_named(backend: TestBackend) {
    let test_db = TestDatabase::migrated(backend, &TEST_SCHEMA).await;
    let db = Database::connect(&DatabaseUrl::parse(&test_db.url).unwrap(), 5)
        .await
        .unwrap();
    let tenant = tenants::create_tenant(&db, "acme", "Acme").await.unwrap();
    assert_eq!(
        conflict(tenants::create_tenant(&db, "acme", "Again").await),
        Constraint::TenantSlug
    );

    devices::insert_device(&db, &device(tenant.id, "web", "key-1", "100.64.0.2"))
        .await
        .unwrap();
    let cases = [
        (
            device(tenant.id, "web", "key-2", "100.64.0.3"),
            Constraint::DeviceName,
        ),
        (
            device(tenant.id, "db", "key-2", "100.64.0.2"),
            Constraint::DeviceAddress,
        ),
        (
            device(tenant.id, "db", "key-1", "100.64.0.3"),
            Constraint::DeviceKey,
        ),
    ];
    for (row, expected) in cases {
        assert_eq!(conflict(devices::insert_device(&db, &row).await), expected);
    }
    // The same name in another tenant is no conflict.
    let other = tenants::create_tenant(&db, "other", "Other").await.unwrap();
    devices::insert_device(&db, &device(other.id, "web", "key-3", "100.64.0.4"))
        .await
        .unwrap();

    let user = || NewUser {
        username: "alice",
        password_hash: "x",
        is_superadmin: false,
        must_change_password: false,
    };
    users::create_user(&db, user()).await.unwrap();
    assert_eq!(
        conflict(users::create_user(&db, user()).await),
        Constraint::Username
    );
}
