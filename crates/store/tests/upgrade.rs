//! Upgrading a store that holds data: the migrations added later apply on top of the
//! earlier ones with rows in place (the mappings table is rebuilt under the submissions that
//! refer to it).

use carrierhub_model::CarrierId;
use carrierhub_store::{SqliteStore, Store};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::Path;

const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");

/// A store migrated only up to (and including) migration `last`, as an older release left it.
async fn store_at(path: &Path, last: i64) {
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(MIGRATIONS).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= last {
            std::fs::copy(entry.path(), old.path().join(&name)).unwrap();
        }
    }
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .foreign_keys(true)
        .connect()
        .await
        .unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    for statement in [
        "INSERT INTO carriers VALUES ('acme', 'Acme', '2025-01-01T00:00:00Z')",
        "INSERT INTO mappings (id, carrier_id, name, record_kind, version, revision, sha256, spec, created_at) \
         VALUES (1, 'acme', 'acme-policies', 'policy', 1, 1, 'abc', '[mapping]', '2025-01-01T00:00:00Z')",
        "INSERT INTO documents VALUES ('d1', 10, '2025-01-01T00:00:00Z')",
        "INSERT INTO submissions (id, carrier_id, mapping_id, file_name, document_sha256, received_via, received_at, status) \
         VALUES (1, 'acme', 1, 'a.csv', 'd1', 'cli', '2025-01-01T00:00:00Z', 'completed')",
        "INSERT INTO submissions (id, carrier_id, mapping_id, file_name, document_sha256, received_via, received_at, status) \
         VALUES (2, 'acme', 1, 'b.csv', 'd1', 'cli', '2025-01-02T00:00:00Z', 'completed')",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    tx.commit().await.unwrap();
    conn.close().await.unwrap();
}

#[tokio::test]
async fn a_store_with_data_upgrades_to_the_current_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carrierhub.db");
    store_at(&path, 3).await;

    let store = SqliteStore::open(&path).await.expect("the upgrade applies");
    let carrier = CarrierId::parse("acme").unwrap();
    let mapping = store
        .find_mapping(&carrier, "acme-policies")
        .await
        .unwrap()
        .expect("the mapping survives the rebuild");
    assert_eq!(mapping.reference.id, 1);
    let submission = store.get_submission(2).await.unwrap().unwrap();
    assert_eq!(submission.mapping.name, "acme-policies");
    drop(store);

    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
        .foreign_keys(true)
        .connect()
        .await
        .unwrap();
    let violations = sqlx::query("PRAGMA foreign_key_check")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert!(violations.is_empty(), "no dangling references");
    sqlx::query(
        "INSERT INTO mappings (carrier_id, name, record_kind, version, revision, sha256, spec, created_at) \
         VALUES ('acme', 'acme-transactions', 'transaction', 1, 1, 'def', '', '2025-01-03T00:00:00Z')",
    )
    .execute(&mut conn)
    .await
    .expect("the widened record kind");
}
