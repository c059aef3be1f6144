//! Magic DNS record storage on both backends: filters, paging, updates and tenant isolation.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use chrono::Utc;
use uuid::Uuid;
use watchgrid_store::dns::{self, DnsRecordRow, RecordFilter};
use watchgrid_store::migrations::TEST_SCHEMA;
use watchgrid_store::{tenants, Database, DatabaseUrl, StoreError};
use watchgrid_testkit::{backend_tests, TestBackend, TestDatabase};

backend_tests!(records_filter_page_update_and_stay_in_their_tenant);

fn row(tenant: Uuid, name: &str, record_type: &str, value: &str) -> DnsRecordRow {
    DnsRecordRow {
        id: Uuid::new_v4(),
        tenant_id: tenant,
        name: name.into(),
        record_type: record_type.into(),
        ttl: 300,
        value: value.into(),
        created_by: "admin".into(),
        created_at: Utc::now(),
        updated_at: Utc::now(),
    }
}

async fn records_filter_page_update_and_stay_in_their_tenant(backend: TestBackend) {
    let test_db = TestDatabase::migrated(backend, &TEST_SCHEMA).await;
    let db = Database::connect(&DatabaseUrl::parse(&test_db.url).unwrap(), 5)
        .await
        .unwrap();
    let acme = tenants::create_tenant(&db, "acme", "Acme").await.unwrap();
    let globex = tenants::create_tenant(&db, "globex", "Globex")
        .await
        .unwrap();
    let rows = [
        row(acme.id, "www", "CNAME", "web.acme.watchgrid.internal."),
        row(acme.id, "api", "A", "192.0.2.1"),
        row(acme.id, "api", "TXT", "v=1"),
        row(acme.id, "api", "A", "192.0.2.2"),
        row(globex.id, "api", "A", "198.51.100.1"),
    ];
    for r in &rows {
        dns::insert_record(&db, r).await.unwrap();
    }
    let all = |filter: RecordFilter| {
        let db = db.clone();
        async move { dns::list_records(&db, acme.id, &filter, 100).await.unwrap() }
    };
    let listed = all(RecordFilter::default()).await;
    assert_eq!(
        listed.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        ["api", "api", "api", "www"],
        "by name, only acme's"
    );
    let a_at_api = all(RecordFilter {
        name: Some("api".into()),
        record_type: Some("A".into()),
        after: None,
    })
    .await;
    assert_eq!(a_at_api.len(), 2);
    assert!(a_at_api.iter().all(|r| r.record_type == "A"));

    // Paging by (name, id) visits every record once.
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let filter = RecordFilter {
            after: after.clone(),
            ..RecordFilter::default()
        };
        let page = dns::list_records(&db, acme.id, &filter, 1).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some((last.name.clone(), last.id));
        seen.push(last.id);
    }
    assert_eq!(seen, listed.iter().map(|r| r.id).collect::<Vec<_>>());

    assert_eq!(dns::records_at(&db, acme.id, "api").await.unwrap().len(), 3);
    let target = &rows[1];
    let later = Utc::now();
    dns::update_record(&db, acme.id, target.id, 60, "192.0.2.9", later)
        .await
        .unwrap();
    let updated = dns::record(&db, acme.id, target.id).await.unwrap().unwrap();
    assert_eq!((updated.ttl, updated.value.as_str()), (60, "192.0.2.9"));

    // Another tenant's record is invisible and untouchable.
    let foreign = &rows[4];
    assert!(dns::record(&db, acme.id, foreign.id)
        .await
        .unwrap()
        .is_none());
    assert!(matches!(
        dns::delete_record(&db, acme.id, foreign.id).await,
        Err(StoreError::NotFound)
    ));
    dns::delete_record(&db, acme.id, target.id).await.unwrap();
    assert_eq!(dns::all_records(&db).await.unwrap().len(), 4);
    // Deleting the tenant deletes its records.
    tenants::delete_tenant(&db, globex.id).await.unwrap();
    assert_eq!(dns::all_records(&db).await.unwrap().len(), 3);
}
