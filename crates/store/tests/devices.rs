//! Device storage on both backends: batched `last_seen_at` writes across SQLite's chunk size,
//! and onboarding-token uses that cannot exceed the limit.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use chrono::Utc;
use uuid::Uuid;
use watchgrid_store::devices::{self, DeviceRow, Json, OnboardingTokenRow};
use watchgrid_store::migrations::TEST_SCHEMA;
use watchgrid_store::{tenants, Database, DatabaseUrl};
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};

backend_tests!(
    touch_last_seen_writes_every_device_in_bounded_batches,
    facts_are_written_in_one_batch,
    token_uses_are_capped
);

async fn open(test_db: &TestDatabase) -> Database {
    Database::connect(&DatabaseUrl::parse(&test_db.url).unwrap(), 5)
        .await
        .unwrap()
}

fn device(tenant: Uuid, n: u32) -> DeviceRow {
    DeviceRow {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: format!("d{n}"),
        hostname: format!("d{n}"),
        kind: watchgrid_store::DeviceKind::Agent,
        os: String::new(),
        agent_version: String::new(),
        wg_public_key: format!("key-{n}"),
        overlay_ip: format!("100.64.{}.{}", n / 250, n % 250 + 2),
        credential_hash: None,
        tags: Json(vec![]),
        onboarding_token_id: None,
        created_at: Utc::now(),
        last_seen_at: None,
    }
}

async fn touch_last_seen_writes_every_device_in_bounded_batches(backend: TestBackend) {
    let test_db = TestDatabase::migrated(backend, &TEST_SCHEMA).await;
    let db = open(&test_db).await;
    let tenant = tenants::create_tenant(&db, "t", "T").await.unwrap();
    let count = devices::SQLITE_TOUCH_CHUNK as u32 * 2 + 37;
    let mut tx = db.begin().await.unwrap();
    let mut ids = Vec::new();
    for n in 0..count {
        let row = device(tenant.id, n);
        ids.push(row.id);
        devices::insert_device(&mut tx, &row).await.unwrap();
    }
    tx.commit().await.unwrap();
    let at = Utc::now();
    assert_eq!(
        devices::touch_last_seen(&db, &ids, at).await.unwrap(),
        u64::from(count)
    );
    let seen = db
        .query_i64_for_tests("SELECT COUNT(*) FROM devices WHERE last_seen_at IS NOT NULL")
        .await
        .unwrap();
    assert_eq!(seen, i64::from(count));
    // An older timestamp never moves last_seen_at backwards.
    let earlier = at - chrono::Duration::seconds(10);
    assert_eq!(
        devices::touch_last_seen(&db, &ids[..10], earlier)
            .await
            .unwrap(),
        0
    );
}

async fn facts_are_written_in_one_batch(backend: TestBackend) {
    let test_db = TestDatabase::migrated(backend, &TEST_SCHEMA).await;
    let db = open(&test_db).await;
    let tenant = tenants::create_tenant(&db, "t", "T").await.unwrap();
    let rows: Vec<DeviceRow> = (0..3).map(|n| device(tenant.id, n)).collect();
    for row in &rows {
        devices::insert_device(&db, row).await.unwrap();
    }
    let update = |row: &DeviceRow, n: u32| devices::FactsUpdate {
        id: row.id,
        hostname: format!("host-{n}"),
        os: format!("os-{n}"),
        agent_version: format!("1.{n}"),
    };
    // Two of three devices report new facts, plus one that was deleted meanwhile.
    let gone = devices::FactsUpdate {
        id: Uuid::new_v4(),
        ..update(&rows[0], 9)
    };
    let updates = [update(&rows[0], 0), update(&rows[2], 2), gone];
    assert_eq!(devices::update_facts_batch(&db, &updates).await.unwrap(), 2);
    let stored = devices::all_devices(&db).await.unwrap();
    let facts_of = |id: Uuid| {
        let row = stored.iter().find(|r| r.id == id).unwrap();
        (
            row.hostname.clone(),
            row.os.clone(),
            row.agent_version.clone(),
        )
    };
    assert_eq!(
        facts_of(rows[0].id),
        ("host-0".into(), "os-0".into(), "1.0".into())
    );
    assert_eq!(
        facts_of(rows[1].id),
        ("d1".into(), String::new(), String::new())
    );
    assert_eq!(
        facts_of(rows[2].id),
        ("host-2".into(), "os-2".into(), "1.2".into())
    );
    assert_eq!(devices::update_facts_batch(&db, &[]).await.unwrap(), 0);
}

async fn token_uses_are_capped(backend: TestBackend) {
    let test_db = TestDatabase::migrated(backend, &TEST_SCHEMA).await;
    let db = open(&test_db).await;
    let tenant = tenants::create_tenant(&db, "t", "T").await.unwrap();
    let token = OnboardingTokenRow {
        id: Uuid::new_v4(),
        tenant_id: tenant.id,
        description: "x".into(),
        max_uses: 3,
        uses: 0,
        tags: Json(vec![]),
        created_by: "test".into(),
        created_at: Utc::now(),
        expires_at: None,
        revoked_at: None,
    };
    devices::create_onboarding_token(&db, &token, b"hash")
        .await
        .unwrap();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..10 {
        let db = db.clone();
        tasks.spawn(async move {
            devices::consume_onboarding_token(&db, token.id, Utc::now())
                .await
                .unwrap()
        });
    }
    let mut taken = 0;
    while let Some(ok) = tasks.join_next().await {
        taken += usize::from(ok.unwrap());
    }
    assert_eq!(taken, 3, "exactly max_uses uses, however many race");
}
