//! Versioning semantics of the store, checked in its tables: one open version per policy,
//! premium transactions that add up to the current premium, repeated keys within a batch.

use carrierhub_model::*;
use carrierhub_store::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::Row;
use std::time::Duration;

fn policy(number: &str, premium: i64, status: PolicyStatus) -> CanonicalRecord {
    let eur = Currency::parse("EUR").unwrap();
    CanonicalRecord::Policy(Policy {
        carrier: CarrierId::parse("acme").unwrap(),
        number: PolicyNumber::parse(number).unwrap(),
        line_of_business: Coded::new(LineOfBusiness::Homeowners, "WG"),
        status: Coded::new(status, status.code()),
        effective_date: NaiveDate::from_ymd_opt(2025, 1, 1).unwrap(),
        expiration_date: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
        premium: Money::new(Decimal::new(premium, 2), eur),
        producer: None,
        insured: InsuredParty {
            reference: None,
            kind: PartyKind::Person,
            name: "Ada".into(),
            postal_code: None,
            country: None,
        },
        coverages: vec![],
    })
}

async fn submission(store: &SqliteStore) -> i64 {
    let carrier = CarrierId::parse("acme").unwrap();
    store.ensure_carrier(&carrier, "Acme").await.unwrap();
    let mapping = store
        .register_mapping(NewMapping {
            carrier: &carrier,
            name: "m",
            record: RecordKind::Policy,
            version: 1,
            sha256: "0",
            text: "",
        })
        .await
        .unwrap();
    store.record_document("d", 1).await.unwrap();
    let id = store
        .create_submission(NewSubmission {
            carrier: &carrier,
            mapping_id: mapping.id,
            file_name: "f.csv",
            document_sha256: "d",
            received_via: "test",
            replay_of: None,
        })
        .await
        .unwrap();
    store
        .claim_submission(id, "w", Duration::from_secs(60))
        .await
        .unwrap()
        .unwrap();
    id
}

fn batch(submission_id: i64, records: Vec<CanonicalRecord>) -> Batch {
    let n = records.len() as u64;
    Batch {
        submission_id,
        owner: "w".into(),
        lease: Duration::from_secs(60),
        records: records
            .into_iter()
            .enumerate()
            .map(|(i, record)| StagedRecord {
                record,
                record_number: i as u64 + 1,
                source_line: i as u64 + 2,
                sheet: None,
            })
            .collect(),
        rejections: vec![],
        rejected_records: 0,
        skipped_records: 0,
        through_record: n,
    }
}

#[tokio::test]
async fn versions_transactions_and_events_follow_the_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("db.sqlite");
    let store = SqliteStore::open(&path).await.unwrap();
    let first = submission(&store).await;
    // The same policy three times in one batch: new, endorsed, then cancelled.
    let outcome = store
        .commit_batch(batch(
            first,
            vec![
                policy("P1", 10000, PolicyStatus::Active),
                policy("P2", 5000, PolicyStatus::Active),
                policy("P1", 12050, PolicyStatus::Active),
                policy("P1", 3000, PolicyStatus::Cancelled),
            ],
        ))
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.counts.inserted,
            outcome.counts.updated,
            outcome.counts.unchanged
        ),
        (2, 2, 0)
    );
    store.finish_submission(first, "w", None).await.unwrap();

    // A later batch repeating the final state writes nothing.
    let second = submission(&store).await;
    let outcome = store
        .commit_batch(batch(
            second,
            vec![policy("P1", 3000, PolicyStatus::Cancelled)],
        ))
        .await
        .unwrap();
    assert_eq!(outcome.counts.unchanged, 1);

    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    let open: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
         WHERE p.policy_number = 'P1' AND v.valid_to IS NULL",
    )
    .fetch_one(&db)
    .await
    .unwrap();
    assert_eq!(open, 1, "exactly one open version");
    let versions: Vec<(i64, Option<String>)> = sqlx::query(
        "SELECT v.version, v.valid_to FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
         WHERE p.policy_number = 'P1' ORDER BY v.version",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(versions.len(), 3);
    assert!(versions[..2].iter().all(|(_, to)| to.is_some()));

    let kinds: Vec<(String, String)> = sqlx::query(
        "SELECT t.kind, t.amount FROM premium_transactions t JOIN policies p ON p.id = t.policy_id \
         WHERE p.policy_number = 'P1' ORDER BY t.id",
    )
    .fetch_all(&db)
    .await
    .unwrap()
    .iter()
    .map(|r| (r.get(0), r.get(1)))
    .collect();
    assert_eq!(
        kinds,
        [
            ("new_business".to_owned(), "100".to_owned()),
            ("endorsement".to_owned(), "20.5".to_owned()),
            ("cancellation".to_owned(), "-90.5".to_owned()),
        ]
    );
    let events: Vec<String> = sqlx::query_scalar("SELECT event_type FROM outbox ORDER BY id")
        .fetch_all(&db)
        .await
        .unwrap();
    assert_eq!(
        events,
        [
            "policy.created",
            "policy.created",
            "policy.updated",
            "policy.cancelled"
        ]
    );
    let s = store.get_submission(first).await.unwrap().unwrap();
    assert_eq!((s.counts.received, s.committed_through), (4, 4));
}

#[tokio::test]
async fn a_batch_for_a_submission_held_by_another_worker_is_refused_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("db.sqlite"))
        .await
        .unwrap();
    let id = submission(&store).await;
    let mut b = batch(id, vec![policy("P1", 100, PolicyStatus::Active)]);
    b.owner = "someone-else".into();
    assert!(matches!(
        store.commit_batch(b).await,
        Err(StoreError::Invalid(_))
    ));
    let mut filter = PolicyFilter::default();
    filter.page.limit = 10;
    assert!(store.list_policies(&filter).await.unwrap().items.is_empty());
}
