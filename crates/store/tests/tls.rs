//! PostgreSQL over TLS: `sslmode=require` and `verify-full` with a CA file, against a real
//! cluster whose certificate `scripts/postgres-ssl-init.sh` made and which refuses plain TCP.

#![allow(
    clippy::unwrap_used,
    reason = "a test should fail loudly on any unexpected error"
)]

use std::path::Path;

use watchgrid_store::{Database, DatabaseUrl};
use watchgrid_testkit::PgCluster;

async fn ping(url: &str) -> Result<(), String> {
    let parsed = DatabaseUrl::parse(url).map_err(|e| e.to_string())?;
    let db = Database::connect(&parsed, 1)
        .await
        .map_err(|e| e.to_string())?;
    let result = db.ping().await.map_err(|e| e.to_string());
    db.close().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_tls_require_and_verify_full() {
    let cluster = PgCluster::temporary().expect("PostgreSQL test cluster");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres-ssl-init.sh");
    cluster
        .run_as_owner(&script, &[])
        .expect("postgres-ssl-init.sh succeeds");
    cluster
        .set_hba(
            "local all all trust\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostnossl all all 0.0.0.0/0 reject\n",
        )
        .unwrap();
    cluster.start().expect("start with TLS");

    let ca = cluster.data_dir().join("ca.crt");
    // The script keeps an existing certificate: running it again changes nothing.
    let before = std::fs::read(cluster.data_dir().join("server.crt")).unwrap();
    cluster.run_as_owner(&script, &[]).unwrap();
    assert_eq!(
        before,
        std::fs::read(cluster.data_dir().join("server.crt")).unwrap()
    );

    let base = cluster.url("postgres");
    ping(&format!("{base}?sslmode=require"))
        .await
        .expect("sslmode=require connects");
    ping(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        ca.display()
    ))
    .await
    .expect("verify-full with the cluster's CA connects");

    let plain = ping(&format!("{base}?sslmode=disable")).await;
    assert!(plain.is_err(), "plain TCP must be refused by pg_hba");

    // A CA that did not sign the server certificate must fail verification.
    let other = tempfile::tempdir().unwrap();
    let other_ca = other.path().join("other-ca.crt");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .arg("-keyout")
        .arg(other.path().join("other.key"))
        .arg("-out")
        .arg(&other_ca)
        .args(["-days", "1", "-subj", "/CN=not the right CA"])
        .output()
        .unwrap()
        .status;
    assert!(status.success());
    let wrong = ping(&format!(
        "{base}?sslmode=verify-full&sslrootcert={}",
        other_ca.display()
    ))
    .await;
    assert!(wrong.is_err(), "an unknown CA must not verify");
}
