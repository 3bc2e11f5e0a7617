//! The conformance suite's harness: a fresh database per test on either backend, the canonical
//! records the tests commit, and the few backend-specific helpers the `Store` API has no call
//! for (reading the outbox, forcing a failure inside a commit).
#![allow(dead_code)]

use carrierhub_model::*;
use carrierhub_store::testing::TestDatabase;
use carrierhub_store::Scope;
use carrierhub_store::*;
use chrono::NaiveDate;
use rust_decimal::Decimal;
use sqlx::Connection;
use std::sync::Arc;
use std::time::Duration;

/// Instantiates each named test (an `async fn(Target)`) once per backend: `sqlite::NAME` and
/// `postgres::NAME`.
macro_rules! conformance {
    ($($test:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    super::$test($crate::common::Target::sqlite()).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(target) = $crate::common::Target::postgres(
                        concat!("postgres::", stringify!($test)),
                    )
                    .await
                    else {
                        return;
                    };
                    super::$test(target).await;
                }
            )*
        }
    };
}

/// Where a test's data lives: a SQLite file in a temporary directory, or a PostgreSQL database
/// created for the test (dropped with the `Target`, also when the test fails).
pub struct Target {
    /// What `open_store` takes: the file's path or the database's URL.
    pub locator: String,
    pub kind: Kind,
    _dir: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Postgres,
}

/// An outbox row.
#[derive(Debug, Clone)]
pub struct Event {
    pub event_type: String,
    pub subject_id: i64,
    pub payload: serde_json::Value,
}

impl Target {
    pub fn sqlite() -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        Self {
            locator: dir.path().join("carrierhub.db").display().to_string(),
            kind: Kind::Sqlite,
            _dir: Some(dir),
            _database: None,
        }
    }

    /// A fresh PostgreSQL database; `None` (the test skips) when no server answers, except
    /// under CI, where that fails the test.
    pub async fn postgres(test: &str) -> Option<Self> {
        let database = TestDatabase::create_or_skip(test).await?;
        Some(Self {
            locator: database.url().to_owned(),
            kind: Kind::Postgres,
            _dir: None,
            _database: Some(database),
        })
    }

    /// Opens the store (migrating it). Each call is a new store on the same database, as a
    /// second process would open it.
    pub async fn store(&self) -> Arc<dyn Store> {
        open_store(&self.locator)
            .await
            .unwrap_or_else(|e| panic!("cannot open {:?} store: {e}", self.kind))
    }

    /// Every change event of the canonical model in the outbox, in order (submissions' own
    /// events are tested through the `Store` API).
    pub async fn outbox(&self) -> Vec<Event> {
        let rows: Vec<(String, i64, String)> = match self.kind {
            Kind::Sqlite => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.locator))
                        .await
                        .expect("connect to SQLite");
                sqlx::query_as(
                    "SELECT event_type, subject_id, payload FROM outbox \
                     WHERE event_type NOT LIKE 'submission.%' ORDER BY id",
                )
                .fetch_all(&mut conn)
                .await
                .expect("read the outbox")
            }
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.locator)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query_as(
                    "SELECT event_type, subject_id, payload::text FROM outbox \
                     WHERE event_type NOT LIKE 'submission.%' ORDER BY id",
                )
                .fetch_all(&mut conn)
                .await
                .expect("read the outbox")
            }
        };
        rows.into_iter()
            .map(|(event_type, subject_id, payload)| Event {
                event_type,
                subject_id,
                payload: serde_json::from_str(&payload).expect("payloads are JSON"),
            })
            .collect()
    }

    /// Makes every commit that would set a submission's `committed_through` to `through`
    /// fail at its last statement (the counters' update), after everything else was written.
    pub async fn fail_commits_through(&self, through: u64) {
        match self.kind {
            Kind::Sqlite => {
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite://{}", self.locator))
                        .await
                        .expect("connect to SQLite");
                sqlx::query(&format!(
                    "CREATE TRIGGER forced_failure BEFORE UPDATE OF committed_through ON submissions \
                     WHEN NEW.committed_through = {through} \
                     BEGIN SELECT RAISE(ABORT, 'forced failure'); END"
                ))
                .execute(&mut conn)
                .await
                .expect("create the trigger");
            }
            Kind::Postgres => {
                let mut conn = sqlx::PgConnection::connect(&self.locator)
                    .await
                    .expect("connect to PostgreSQL");
                sqlx::query(
                    "CREATE FUNCTION forced_failure() RETURNS trigger LANGUAGE plpgsql AS \
                     $$ BEGIN RAISE EXCEPTION 'forced failure'; END $$",
                )
                .execute(&mut conn)
                .await
                .expect("create the function");
                sqlx::query(&format!(
                    "CREATE TRIGGER forced_failure BEFORE UPDATE ON submissions FOR EACH ROW \
                     WHEN (NEW.committed_through = {through}) EXECUTE FUNCTION forced_failure()"
                ))
                .execute(&mut conn)
                .await
                .expect("create the trigger");
            }
        }
    }
}

pub const LEASE: Duration = Duration::from_secs(60);

pub fn carrier(id: &str) -> CarrierId {
    CarrierId::parse(id).expect("a valid carrier id")
}

pub fn eur(cents: i64) -> Money {
    Money::new(Decimal::new(cents, 2), Currency::parse("EUR").expect("EUR"))
}

pub fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).expect("a valid date")
}

pub fn policy_of(carrier_id: &str, number: &str, premium: Money, status: PolicyStatus) -> Policy {
    Policy {
        carrier: carrier(carrier_id),
        number: PolicyNumber::parse(number).expect("a valid policy number"),
        line_of_business: Coded::new(LineOfBusiness::Homeowners, "WG"),
        status: Coded::new(status, status.code()),
        effective_date: date(2025, 1, 1),
        expiration_date: date(2026, 1, 1),
        premium,
        producer: None,
        insured: InsuredParty {
            reference: None,
            kind: PartyKind::Person,
            name: "Ada".into(),
            postal_code: None,
            country: None,
        },
        coverages: vec![],
        extras: Default::default(),
    }
}

/// A policy of carrier `acme`, premium in euro cents.
pub fn policy(number: &str, cents: i64, status: PolicyStatus) -> CanonicalRecord {
    CanonicalRecord::Policy(policy_of("acme", number, eur(cents), status))
}

pub fn claim(number: &str, policy_number: &str, paid: i64, reserve: i64) -> CanonicalRecord {
    CanonicalRecord::Claim(Claim {
        carrier: carrier("acme"),
        number: ClaimNumber::parse(number).expect("a valid claim number"),
        policy_number: PolicyNumber::parse(policy_number).expect("a valid policy number"),
        loss_date: date(2025, 3, 1),
        reported_date: date(2025, 3, 5),
        status: Coded::new(ClaimStatus::Open, "O"),
        cause: Some("water".into()),
        paid: eur(paid),
        reserve: eur(reserve),
        extras: Default::default(),
    })
}

pub fn transaction(
    policy_number: &str,
    reference: &str,
    kind: TransactionType,
    cents: i64,
    effective: NaiveDate,
) -> CanonicalRecord {
    CanonicalRecord::Transaction(PolicyTransaction {
        carrier: carrier("acme"),
        policy_number: PolicyNumber::parse(policy_number).expect("a valid policy number"),
        reference: reference.into(),
        transaction_type: Coded::new(kind, kind.code()),
        effective_date: effective,
        premium: eur(cents),
    })
}

/// Registers carrier `acme`, a mapping and a document, and creates a submission (`received`).
pub async fn new_submission(store: &Arc<dyn Store>) -> i64 {
    let acme = carrier("acme");
    store.ensure_carrier(&acme, "Acme").await.expect("carrier");
    let mapping = store
        .register_mapping(NewMapping {
            carrier: &acme,
            name: "acme-policies",
            record: RecordKind::Policy,
            version: 1,
            sha256: "0",
            text: "",
        })
        .await
        .expect("mapping");
    store.record_document("d", 1).await.expect("document");
    store
        .create_submission(NewSubmission {
            carrier: &acme,
            mapping_id: mapping.id,
            file_name: "f.csv",
            document_sha256: "d",
            received_via: "test",
            replay_of: None,
        })
        .await
        .expect("submission")
}

/// A new submission, claimed by `owner`.
pub async fn claimed_submission(store: &Arc<dyn Store>, owner: &str) -> i64 {
    let id = new_submission(store).await;
    store
        .claim_submission(id, owner, LEASE)
        .await
        .expect("claim")
        .claimed()
        .expect("a received submission can be claimed");
    id
}

/// A batch of `records`, numbered from 1 (line = record + 1), by `owner`.
pub fn batch(submission_id: i64, owner: &str, records: Vec<CanonicalRecord>) -> Batch {
    let n = records.len() as u64;
    Batch {
        message_id: None,
        submission_id,
        owner: owner.into(),
        lease: LEASE,
        records: records
            .into_iter()
            .enumerate()
            .map(|(i, record)| StagedRecord::mapped(record, i as u64 + 1, i as u64 + 2, None))
            .collect(),
        rejections: vec![],
        rejected_records: 0,
        skipped_records: 0,
        through_record: n,
    }
}

/// Commits `records` as one batch of a new submission, claimed and finished by `owner`.
pub async fn ingest(store: &Arc<dyn Store>, records: Vec<CanonicalRecord>) -> (i64, Counts) {
    let id = claimed_submission(store, "w").await;
    let outcome = store
        .commit_batch(batch(id, "w", records))
        .await
        .expect("commit");
    store
        .finish_submission(id, "w", None)
        .await
        .expect("finish");
    (id, outcome.counts)
}

/// (inserted, updated, unchanged, rejected)
pub fn iuur(c: &Counts) -> (u64, u64, u64, u64) {
    (c.inserted, c.updated, c.unchanged, c.rejected)
}

/// Every policy (current versions), through the paginated list.
pub async fn all_policies(store: &Arc<dyn Store>, filter: PolicyFilter) -> Vec<PolicySummary> {
    let mut filter = filter;
    let mut out = Vec::new();
    loop {
        let page = store
            .list_policies(&Scope::all(), &filter)
            .await
            .expect("list policies");
        out.extend(page.items);
        match page.next_cursor {
            Some(c) => {
                filter.page.after_id = Some(Cursor::decode(&c).expect("our cursor").after_id)
            }
            None => return out,
        }
    }
}

/// The id of policy `number` of `acme`.
pub async fn policy_id(store: &Arc<dyn Store>, number: &str) -> i64 {
    all_policies(
        store,
        PolicyFilter {
            carrier: Some("acme".into()),
            ..PolicyFilter::default()
        },
    )
    .await
    .into_iter()
    .find(|p| p.number == number)
    .unwrap_or_else(|| panic!("policy {number} exists"))
    .id
}

/// Checks the version chain of a policy: numbered 1..n, each closed when the next began,
/// exactly one open (the last), and premium movements adding up to the current premium.
pub async fn assert_consistent_history(store: &Arc<dyn Store>, id: i64) -> Vec<PolicyVersion> {
    let versions = store
        .list_policy_versions(id, &Scope::all())
        .await
        .expect("versions");
    assert!(!versions.is_empty(), "policy {id} has versions");
    for (i, v) in versions.iter().enumerate() {
        assert_eq!(
            v.version,
            i as i64 + 1,
            "versions are numbered without gaps"
        );
    }
    for pair in versions.windows(2) {
        assert_eq!(
            pair[0].valid_to,
            Some(pair[1].valid_from),
            "version {} is closed when version {} begins",
            pair[0].version,
            pair[1].version
        );
    }
    let open = versions.iter().filter(|v| v.valid_to.is_none()).count();
    assert_eq!(open, 1, "exactly one open version");
    let detail = store
        .get_policy(id, &Scope::all())
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(detail.versions, versions.len() as i64);
    assert_eq!(detail.summary.version, versions.len() as i64);
    let moved: Decimal = versions
        .iter()
        .flat_map(|v| &v.premium_transactions)
        .map(|t| t.amount.amount)
        .sum();
    assert_eq!(
        moved, detail.summary.premium.amount,
        "premium movements add up to the current premium"
    );
    versions
}
