//! Upgrading a store that holds data: the migrations added later apply on top of the
//! earlier ones with rows in place (the mappings table is rebuilt under the submissions that
//! refer to it; the versions' as-of columns are filled from their records).

use crate::common;

use carrierhub_model::{CanonicalRecord, CarrierId, PolicyStatus};
use carrierhub_store::testing::TestDatabase;
use carrierhub_store::Scope;
use carrierhub_store::{open_store, ClaimFilter, PolicyFilter, SqliteStore, Store};
use chrono::{DateTime, Utc};
use common::{claim, eur, ingest, policy_of};
use rust_decimal::Decimal;
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::path::Path;
use std::sync::Arc;

const MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite");
const PG_MIGRATIONS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres");

/// The migrations of `dir` up to (and including) `last`, in a directory of their own.
fn migrations_until(dir: &str, last: i64) -> tempfile::TempDir {
    let old = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let number: i64 = name.split('_').next().unwrap().parse().unwrap();
        if number <= last {
            std::fs::copy(entry.path(), old.path().join(&name)).unwrap();
        }
    }
    old
}

/// A store migrated only up to (and including) migration `last`, as an older release left it.
async fn store_at(path: &Path, last: i64) {
    let old = migrations_until(MIGRATIONS, last);
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
    let submission = store
        .get_submission(2, &Scope::all())
        .await
        .unwrap()
        .unwrap();
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

/// Rows an older release wrote (SQL both backends take): policy P1, active at 100.00 from
/// 2025-01-01, cancelled at 40.00 from 2025-02-01; its claim C1 from 2025-01-15.
fn history_rows() -> Vec<String> {
    let policy = |premium: i64, status: PolicyStatus| {
        serde_json::to_string(&policy_of("acme", "P1", eur(premium), status)).unwrap()
    };
    let CanonicalRecord::Claim(c1) = claim("C1", "P1", 0, 500) else {
        unreachable!()
    };
    let c1 = serde_json::to_string(&c1).unwrap();
    let (active, cancelled) = (
        policy(10_000, PolicyStatus::Active),
        policy(4_000, PolicyStatus::Cancelled),
    );
    vec![
        "INSERT INTO carriers VALUES ('acme', 'Acme', '2025-01-01T00:00:00.000000Z')".into(),
        "INSERT INTO mappings (id, carrier_id, name, record_kind, version, revision, sha256, spec, created_at) \
         VALUES (1, 'acme', 'acme-policies', 'policy', 1, 1, 'abc', '[mapping]', '2025-01-01T00:00:00.000000Z')".into(),
        "INSERT INTO documents VALUES ('d1', 10, '2025-01-01T00:00:00.000000Z')".into(),
        "INSERT INTO submissions (id, carrier_id, mapping_id, file_name, document_sha256, received_via, received_at, status) \
         VALUES (1, 'acme', 1, 'a.csv', 'd1', 'cli', '2025-01-01T00:00:00.000000Z', 'completed')".into(),
        "INSERT INTO policies (id, carrier_id, policy_number, version, content_hash, line_of_business, \
         line_of_business_original, status, status_original, effective_date, expiration_date, premium, \
         currency, producer, insured_name, created_at, updated_at) VALUES (1, 'acme', 'P1', 2, 'h2', \
         'homeowners', 'WG', 'cancelled', 'cancelled', '2025-01-01', '2026-01-01', '40', 'EUR', NULL, \
         'Ada', '2025-01-01T00:00:00.000000Z', '2025-02-01T00:00:00.000000Z')".into(),
        format!(
            "INSERT INTO policy_versions (policy_id, version, content_hash, record, submission_id, \
             record_number, source_line, valid_from, valid_to) VALUES \
             (1, 1, 'h1', '{active}', 1, 1, 2, '2025-01-01T00:00:00.000000Z', '2025-02-01T00:00:00.000000Z'), \
             (1, 2, 'h2', '{cancelled}', 1, 2, 3, '2025-02-01T00:00:00.000000Z', NULL)"
        ),
        "INSERT INTO claims (id, carrier_id, claim_number, policy_id, version, content_hash, loss_date, \
         reported_date, status, status_original, cause, paid, reserve, currency, created_at, updated_at) \
         VALUES (1, 'acme', 'C1', 1, 1, 'c1', '2025-03-01', '2025-03-05', 'open', 'O', 'water', '0', \
         '5', 'EUR', '2025-01-15T00:00:00.000000Z', '2025-01-15T00:00:00.000000Z')".into(),
        format!(
            "INSERT INTO claim_versions (claim_id, version, content_hash, record, submission_id, \
             record_number, source_line, valid_from) VALUES \
             (1, 1, 'c1', '{c1}', 1, 3, 4, '2025-01-15T00:00:00.000000Z')"
        ),
    ]
}

fn at(text: &str) -> DateTime<Utc> {
    carrierhub_store::parse_as_of(text).unwrap()
}

/// What as-of reads make of [`history_rows`] once the store is upgraded, and of a version
/// written after the upgrade.
async fn assert_history_reads(store: &Arc<dyn Store>) {
    let status_as_of = |t: &str, status: Option<PolicyStatus>| PolicyFilter {
        status,
        as_of: Some(at(t)),
        ..PolicyFilter::default()
    };
    let view = |filter: PolicyFilter| {
        let store = store.clone();
        async move {
            store
                .list_policies(&Scope::all(), &filter)
                .await
                .unwrap()
                .items
                .into_iter()
                .map(|p| (p.number, p.version, p.status.code, p.premium))
                .collect::<Vec<_>>()
        }
    };
    assert!(view(status_as_of("2024-12-31", None)).await.is_empty());
    assert_eq!(
        view(status_as_of("2025-01-10", Some(PolicyStatus::Active))).await,
        [("P1".to_owned(), 1, "active".to_owned(), eur(10_000))]
    );
    assert!(
        view(status_as_of("2025-01-10", Some(PolicyStatus::Cancelled)))
            .await
            .is_empty()
    );
    assert_eq!(
        view(status_as_of(
            "2025-02-01T00:00:00Z",
            Some(PolicyStatus::Cancelled)
        ))
        .await,
        [("P1".to_owned(), 2, "cancelled".to_owned(), eur(4_000))]
    );
    let lines = store
        .portfolio_as_of(at("2025-01-10"), &Scope::all())
        .await
        .unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| (l.policies, l.in_force, l.premium))
            .collect::<Vec<_>>(),
        [(1, 1, Decimal::from(100))]
    );
    for (t, claims) in [("2025-01-14", 0), ("2025-01-20", 1)] {
        let filter = ClaimFilter {
            policy_id: Some(1),
            as_of: Some(at(t)),
            ..ClaimFilter::default()
        };
        assert_eq!(
            store
                .list_claims(&Scope::all(), &filter)
                .await
                .unwrap()
                .items
                .len(),
            claims
        );
        let detail = store
            .get_policy_as_of(1, at(t), &Scope::all())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(detail.claims.len(), claims);
    }

    // A version written after the upgrade closes the backfilled one.
    ingest(
        store,
        vec![CanonicalRecord::Policy(policy_of(
            "acme",
            "P1",
            eur(12_300),
            PolicyStatus::Active,
        ))],
    )
    .await;
    let later = Utc::now() + chrono::Duration::days(1);
    assert_eq!(
        view(status_as_of(
            &later.to_rfc3339(),
            Some(PolicyStatus::Active)
        ))
        .await,
        [("P1".to_owned(), 3, "active".to_owned(), eur(12_300))]
    );
    assert_eq!(
        view(status_as_of("2025-03-01", None)).await,
        [("P1".to_owned(), 2, "cancelled".to_owned(), eur(4_000))]
    );
}

#[tokio::test]
async fn sqlite_versions_written_before_as_of_reads_are_backfilled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("carrierhub.db");
    let old = migrations_until(MIGRATIONS, 4);
    let mut conn = SqliteConnectOptions::new()
        .filename(&path)
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
    for statement in history_rows() {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    conn.close().await.unwrap();

    let store = open_store(path.to_str().unwrap()).await.unwrap();
    assert_history_reads(&store).await;
}

#[tokio::test]
async fn postgres_versions_written_before_as_of_reads_are_backfilled() {
    let Some(database) =
        TestDatabase::create_or_skip("postgres_versions_written_before_as_of_reads_are_backfilled")
            .await
    else {
        return;
    };
    let old = migrations_until(PG_MIGRATIONS, 1);
    let mut conn = sqlx::PgConnection::connect(database.url()).await.unwrap();
    sqlx::migrate::Migrator::new(old.path())
        .await
        .unwrap()
        .run(&mut conn)
        .await
        .unwrap();
    for statement in history_rows() {
        sqlx::query(&statement).execute(&mut conn).await.unwrap();
    }
    // Identity columns do not advance on explicit ids: as a release that wrote these rows
    // through them would have left them.
    for table in ["mappings", "submissions", "policies", "claims"] {
        sqlx::query(&format!(
            "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"
        ))
        .execute(&mut conn)
        .await
        .unwrap();
    }
    conn.close().await.unwrap();

    let store = open_store(database.url()).await.unwrap();
    assert_history_reads(&store).await;

    // postgres/0014 moved the current version into its `policies` row: the history table
    // holds the superseded versions only (v1 from before the upgrade, v2 closed by the
    // ingest above), each closed, and the versions read back whole, lineage included.
    let mut conn = sqlx::PgConnection::connect(database.url()).await.unwrap();
    let history: Vec<(i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT version, record_number, source_line, valid_to IS NOT NULL \
         FROM policy_history WHERE policy_id = 1 ORDER BY version",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(history, [(1, 1, 2, true), (2, 2, 3, true)]);
    let (version, number): (i64, String) =
        sqlx::query_as("SELECT version, record ->> 'number' FROM policies WHERE id = 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!((version, number.as_str()), (3, "P1"));
    conn.close().await.unwrap();
    let versions = store.list_policy_versions(1, &Scope::all()).await.unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.version, v.lineage.record_number, v.lineage.line))
            .collect::<Vec<_>>(),
        [(1, 1, 2), (2, 2, 3), (3, 1, 2)]
    );
    assert_eq!(versions[0].valid_from, at("2025-01-01T00:00:00Z"));
    assert_eq!(versions[0].valid_to, Some(at("2025-02-01T00:00:00Z")));
    assert_eq!(versions[1].valid_from, at("2025-02-01T00:00:00Z"));
    assert_eq!(versions[1].valid_to, Some(versions[2].valid_from));
    assert_eq!(versions[2].valid_to, None);
}
