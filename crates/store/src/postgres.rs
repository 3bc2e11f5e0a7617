//! The server store: PostgreSQL, for several processes writing at once. Its behaviour is the
//! SQLite store's (`sqlite.rs`), record for record; `tests/conformance.rs` runs the same tests
//! against both.
//!
//! **Concurrency.** A batch is one READ COMMITTED transaction. It first locks its submission
//! row (`FOR UPDATE`: the lease check and the counters cannot race a new claim or another
//! batch), then the current rows of every policy and claim it writes, `FOR NO KEY UPDATE` in
//! id order, so that two batches never wait on each other in a cycle and a claim's foreign key
//! check on its policy is not blocked. A second writer of the same natural key therefore waits
//! for the first to commit, then reads the first's result (the reads after the locks are new
//! statements, with a new snapshot): no update is lost. A new key cannot be locked before it
//! exists: when another writer inserted the same key in the meantime, the batch's insert of it
//! fails on the unique key (a new policy's `COPY`) or does nothing (a new claim's
//! `ON CONFLICT DO NOTHING`), and the whole batch is rolled back and run again (it then finds
//! the key and makes the next version). Deadlocks and serialisation failures are retried
//! the same way. In the schema, the primary key (policy_id, version) and a unique index on the
//! open version make a lost or doubled version impossible whatever the code does.
//!
//! **Bulk path.** After the locks, a handful of queries read the state of every key the batch
//! mentions (current version, content hash, and the record where it will be needed). The
//! batch is then resolved in memory, record by record, exactly as the SQLite store resolves it,
//! and written with one statement per table. Rows that are pure inserts (versions, new
//! policies, premium and claim transactions, applied transactions, change events) go in with
//! one binary `COPY` each (`copy.rs`), the cheapest way into a table; the others (new claims,
//! rejections, changes to stored rows) with one multi-row statement: each column travels as one
//! array parameter and `UNNEST` turns the arrays back into rows.
//!
//! **Documents.** The store shares raw payloads' bytes (`document_chunks`), so that a worker
//! on another machine can process a file an API replica received. A document's chunks are
//! written in one transaction, chunk 0 first: a second process storing the same bytes at the
//! same moment waits on chunk 0's key, then finds it stored and stops, so the content is kept
//! once and a document is never half there.

use crate::cursor::page_of;
use crate::idempotency::{IdempotencyClaim, IdempotencyRequest, IdempotentResponse};
use crate::schema::{self, MigrationInfo};
use crate::types::*;
use crate::webhooks::*;
use crate::{
    redact_url, submission_event, ClaimStep, Result, Scope, Store, StoreError, DOCUMENT_CHUNK_BYTES,
};
use async_trait::async_trait;
use carrierhub_model::{
    derive_claim_transactions, derive_premium_transactions, CanonicalRecord, CarrierId, Claim,
    Currency, Money, Policy, PolicyNumber, PolicyStatus, PolicyTransaction, RecordKind,
};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use sqlx::postgres::types::PgInterval;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::types::Json;
use sqlx::{Connection, Postgres, QueryBuilder, Row};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::str::FromStr;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

mod copy;
mod events;
mod live;

use copy::{CopyError, CopyRows};

pub(crate) static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// How often a batch is run again after losing a race to another writer.
const MAX_ATTEMPTS: u32 = 8;

/// How long connecting to the server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Leases longer than this are cut to it (PostgreSQL's timestamps end in the year 294276).
const MAX_LEASE: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

pub struct PgStore {
    pool: PgPool,
}

/// The columns of `policies` a [`PolicySummary`] is read from (not the record).
const POLICY_SUMMARY_COLUMNS: &str = "id, carrier_id, policy_number, version, \
     line_of_business, line_of_business_original, status, status_original, effective_date, \
     expiration_date, premium, currency, producer, insured_name, updated_at";

/// A natural key: (carrier, policy or claim number).
type Key = (String, String);

fn policy_key(p: &Policy) -> Key {
    (p.carrier.as_str().to_owned(), p.number.as_str().to_owned())
}

fn claim_key(c: &Claim) -> Key {
    (c.carrier.as_str().to_owned(), c.number.as_str().to_owned())
}

fn claim_policy_key(c: &Claim) -> Key {
    (
        c.carrier.as_str().to_owned(),
        c.policy_number.as_str().to_owned(),
    )
}

fn transaction_key(t: &PolicyTransaction) -> Key {
    (
        t.carrier.as_str().to_owned(),
        t.policy_number.as_str().to_owned(),
    )
}

fn money(amount: Decimal, currency: &str) -> Result<Money> {
    let currency = Currency::parse(currency)
        .map_err(|e| StoreError::Corrupt(format!("currency '{currency}': {e}")))?;
    Ok(Money::new(amount, currency))
}

fn to_json<T: serde::Serialize>(value: &T, what: impl std::fmt::Display) -> Result<String> {
    serde_json::to_string(value)
        .map_err(|e| StoreError::Invalid(format!("{what} cannot be written as JSON: {e}")))
}

/// A record as JSON in its canonical form (its fields in declaration order), as the SQLite
/// store returns it: JSONB keeps keys in an order of its own.
fn canonical_value<T: serde::Serialize>(record: &T, what: &str) -> Result<serde_json::Value> {
    serde_json::to_value(record)
        .map_err(|e| StoreError::Corrupt(format!("{what} cannot be shown as JSON: {e}")))
}

fn lease_interval(lease: Duration) -> PgInterval {
    let micros = i64::try_from(lease.min(MAX_LEASE).as_micros()).unwrap_or(i64::MAX);
    PgInterval {
        months: 0,
        days: 0,
        microseconds: micros,
    }
}

/// The rows of `_sqlx_migrations`; none when no migration ever ran.
async fn applied_migrations(pool: &PgPool) -> Result<Vec<schema::AppliedMigration>> {
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
        .fetch_one(pool)
        .await?;
    if !exists {
        return Ok(Vec::new());
    }
    let rows =
        sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(pool)
            .await?;
    rows.iter()
        .map(|r| {
            Ok(schema::AppliedMigration {
                version: r.try_get("version")?,
                success: r.try_get("success")?,
                checksum: r.try_get("checksum")?,
            })
        })
        .collect()
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`) and
    /// applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, true).await
    }

    /// Connects to the database at `url`. With `migrate`, pending migrations are applied;
    /// without, connecting fails, naming them, unless the schema is current.
    pub async fn connect_with(url: &str, migrate: bool) -> Result<Self> {
        let pool = Self::pool(url).await?;
        if migrate {
            MIGRATOR.run(&pool).await?;
        } else {
            let applied = applied_migrations(&pool).await?;
            schema::check_current(
                &MIGRATOR,
                &applied,
                &format!("PostgreSQL database {}", redact_url(url)),
            )?;
        }
        Ok(Self { pool })
    }

    /// Applies the pending migrations to the database at `url` and returns the ones applied.
    pub async fn apply_migrations(url: &str) -> Result<Vec<MigrationInfo>> {
        let pool = Self::pool(url).await?;
        let before = applied_migrations(&pool).await?;
        MIGRATOR.run(&pool).await?;
        pool.close().await;
        Ok(schema::pending(&MIGRATOR, &before))
    }

    /// See [`crate::pending_migrations`].
    pub async fn pending_migrations(url: &str) -> Result<Vec<MigrationInfo>> {
        let pool = Self::pool(url).await?;
        let applied = applied_migrations(&pool).await;
        pool.close().await;
        let applied = applied?;
        schema::check_known(
            &MIGRATOR,
            &applied,
            &format!("PostgreSQL database {}", redact_url(url)),
        )?;
        Ok(schema::pending(&MIGRATOR, &applied))
    }

    async fn pool(url: &str) -> Result<PgPool> {
        let connect_error = |error| StoreError::Connect {
            target: format!("PostgreSQL database {}", redact_url(url)),
            error,
        };
        let options = PgConnectOptions::from_str(url)
            .map_err(connect_error)?
            .application_name("carrierhub");
        // One connection first, so that an unreachable server or a wrong database is named
        // at once (the pool would retry until its timeout and then say only that).
        let probe = tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| connect_error(sqlx::Error::PoolTimedOut))?
            .map_err(connect_error)?;
        let _ = probe.close().await;
        PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(CONNECT_TIMEOUT)
            .connect_with(options)
            .await
            .map_err(connect_error)
    }

    /// Ends a filtered list query with keyset pagination on `id_column` and runs it. One row
    /// more than the page is fetched to tell whether a next page exists.
    async fn keyset_page<T>(
        &self,
        mut q: QueryBuilder<'_, Postgres>,
        id_column: &str,
        page: &PageRequest,
        from_row: fn(&PgRow) -> Result<T>,
        id: fn(&T) -> i64,
    ) -> Result<Page<T>> {
        if let Some(after) = page.after_id {
            q.push(format!(" AND {id_column} > ")).push_bind(after);
        }
        q.push(format!(" ORDER BY {id_column} LIMIT "))
            .push_bind(i64::from(page.limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, page.limit, id))
    }

    fn submission_from_row(row: &PgRow) -> Result<Submission> {
        let status: String = row.try_get("status")?;
        Ok(Submission {
            id: row.try_get("id")?,
            carrier: row.try_get("carrier_id")?,
            mapping: MappingRef {
                id: row.try_get("mapping_id")?,
                name: row.try_get("mapping_name")?,
                version: row.try_get::<i64, _>("mapping_version")? as u32,
                revision: row.try_get::<i64, _>("mapping_revision")? as u32,
                sha256: row.try_get("mapping_sha256")?,
            },
            file_name: row.try_get("file_name")?,
            document_sha256: row.try_get("document_sha256")?,
            received_via: row.try_get("received_via")?,
            received_at: row.try_get("received_at")?,
            status: SubmissionStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("submission status '{status}'")))?,
            error: row.try_get("error")?,
            started_at: row.try_get("started_at")?,
            finished_at: row.try_get("finished_at")?,
            counts: Counts {
                received: row.try_get::<i64, _>("records")? as u64,
                inserted: row.try_get::<i64, _>("inserted")? as u64,
                updated: row.try_get::<i64, _>("updated")? as u64,
                unchanged: row.try_get::<i64, _>("unchanged")? as u64,
                rejected: row.try_get::<i64, _>("rejected")? as u64,
                skipped: row.try_get::<i64, _>("skipped")? as u64,
            },
            committed_through: row.try_get::<i64, _>("committed_through")? as u64,
            replay_of: row.try_get("replay_of")?,
            attempts: row.try_get::<i32, _>("attempts")? as u32,
            message_id: row.try_get("message_id")?,
        })
    }

    fn policy_summary_from_row(row: &PgRow) -> Result<PolicySummary> {
        Ok(PolicySummary {
            id: row.try_get("id")?,
            carrier: row.try_get("carrier_id")?,
            number: row.try_get("policy_number")?,
            line_of_business: CodeValue {
                code: row.try_get("line_of_business")?,
                original: row.try_get("line_of_business_original")?,
            },
            status: CodeValue {
                code: row.try_get("status")?,
                original: row.try_get("status_original")?,
            },
            effective_date: row.try_get("effective_date")?,
            expiration_date: row.try_get("expiration_date")?,
            premium: money(
                row.try_get("premium")?,
                &row.try_get::<String, _>("currency")?,
            )?,
            producer: row.try_get("producer")?,
            insured_name: row.try_get("insured_name")?,
            extras: None,
            version: row.try_get("version")?,
            updated_at: row.try_get("updated_at")?,
        })
    }

    fn claim_summary_from_row(row: &PgRow) -> Result<ClaimSummary> {
        let currency: String = row.try_get("currency")?;
        let paid = money(row.try_get("paid")?, &currency)?;
        let reserve = money(row.try_get("reserve")?, &currency)?;
        let incurred = paid
            .checked_add(&reserve)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(ClaimSummary {
            id: row.try_get("id")?,
            carrier: row.try_get("carrier_id")?,
            number: row.try_get("claim_number")?,
            policy_id: row.try_get("policy_id")?,
            policy_number: row.try_get("policy_number")?,
            loss_date: row.try_get("loss_date")?,
            reported_date: row.try_get("reported_date")?,
            status: CodeValue {
                code: row.try_get("status")?,
                original: row.try_get("status_original")?,
            },
            cause: row.try_get("cause")?,
            paid,
            reserve,
            incurred,
            version: row.try_get("version")?,
            extras: None,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

const SUBMISSION_SELECT: &str =
    "SELECT s.*, m.name AS mapping_name, m.version AS mapping_version, \
     m.revision AS mapping_revision, m.sha256 AS mapping_sha256 \
     FROM submissions s JOIN mappings m ON m.id = s.mapping_id";

const CLAIM_SELECT: &str =
    "SELECT c.*, p.policy_number FROM claims c JOIN policies p ON p.id = c.policy_id";

const CLAIM_VERSION_SELECT: &str =
    "SELECT v.claim_id, v.policy_id, v.version, v.record, v.valid_from FROM claim_versions v";

/// The condition "version current at the instant bound as `${param}`" on the versions table
/// aliased `v`: it began at or before, and had not ended by then.
fn current_at(param: u8) -> String {
    format!("v.valid_from <= ${param} AND (v.valid_to IS NULL OR v.valid_to > ${param})")
}

/// `AND column = ANY(carriers)` when `scope` restricts carriers.
fn push_carriers(q: &mut QueryBuilder<'_, Postgres>, scope: &Scope, column: &str) {
    if let Some(carriers) = scope.carrier_list() {
        q.push(format!(" AND {column} = ANY("))
            .push_bind(carriers)
            .push(")");
    }
}

/// `AND producer = ANY(books)` when `scope` restricts books (a policy without a producer is
/// in no book).
fn push_books(q: &mut QueryBuilder<'_, Postgres>, scope: &Scope, producer: &str) {
    if let Some(books) = scope.book_list() {
        q.push(format!(" AND {producer} = ANY("))
            .push_bind(books)
            .push(")");
    }
}

/// The scope of objects that span books (submissions and their rejections): the carriers,
/// and nothing at all under a book restriction.
fn push_carrier_wide(q: &mut QueryBuilder<'_, Postgres>, scope: &Scope, column: &str) {
    if scope.books.is_some() {
        q.push(" AND FALSE");
    }
    push_carriers(q, scope, column);
}

/// A policy as one of its versions (`policy_id`, `version`, `record`, `valid_from`) shows it,
/// with the version's record.
fn policy_version(row: &PgRow) -> Result<(PolicySummary, Policy)> {
    let id: i64 = row.try_get("policy_id")?;
    let version: i64 = row.try_get("version")?;
    let Json(record): Json<Policy> = row
        .try_get("record")
        .map_err(|e| StoreError::Corrupt(format!("policy {id} v{version}: {e}")))?;
    let summary = PolicySummary::of_version(id, &record, version, row.try_get("valid_from")?);
    Ok((summary, record))
}

fn policy_version_summary(row: &PgRow) -> Result<PolicySummary> {
    policy_version(row).map(|(summary, _)| summary)
}

/// A claim as one of its versions (`claim_id`, `policy_id`, `version`, `record`,
/// `valid_from`) shows it.
fn claim_version_summary(row: &PgRow) -> Result<ClaimSummary> {
    let id: i64 = row.try_get("claim_id")?;
    let version: i64 = row.try_get("version")?;
    let Json(record): Json<Claim> = row
        .try_get("record")
        .map_err(|e| StoreError::Corrupt(format!("claim {id} v{version}: {e}")))?;
    ClaimSummary::of_version(
        id,
        row.try_get("policy_id")?,
        &record,
        version,
        row.try_get("valid_from")?,
    )
    .map_err(|e| StoreError::Corrupt(format!("claim {id} v{version}: {e}")))
}

// ---------------------------------------------------------------------------------------------
// Committing a batch
// ---------------------------------------------------------------------------------------------

/// Why one attempt at a batch failed.
enum BatchError {
    /// Another writer got in first (a key it created, a deadlock): run the batch again.
    Retry(String),
    Store(StoreError),
}

impl From<StoreError> for BatchError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<sqlx::Error> for BatchError {
    fn from(e: sqlx::Error) -> Self {
        // 40P01 deadlock_detected, 40001 serialization_failure: nothing of the attempt is
        // kept, and running it again sees the other writer's result.
        let code = e
            .as_database_error()
            .and_then(|d| d.code())
            .map(|c| c.into_owned());
        match code.as_deref() {
            Some("40P01") | Some("40001") => Self::Retry(e.to_string()),
            _ => Self::Store(e.into()),
        }
    }
}

impl From<CopyError> for BatchError {
    fn from(e: CopyError) -> Self {
        match e {
            CopyError::Store(e) => Self::Store(e),
            CopyError::Database(e) => e.into(),
        }
    }
}

type BatchResult<T> = std::result::Result<T, BatchError>;

/// What one record did.
enum Upsert {
    Inserted,
    Updated,
    Unchanged,
    Rejected(NewRejection),
}

/// A policy's current version as the batch sees it.
struct CurrentPolicy<'b> {
    id: i64,
    version: i64,
    content_hash: String,
    /// The current version's record; read from the database only where needed. A record
    /// of the batch is borrowed from it, not copied.
    record: Option<Cow<'b, Policy>>,
    /// Transactions were applied to the policy: a reported state may be one they superseded.
    has_transactions: bool,
    /// The version the database holds; `None` for a policy the batch creates.
    stored_version: Option<i64>,
    /// Index in `versions` of the open version the batch wrote, if any.
    open_pending: Option<usize>,
}

/// A claim's current version as the batch sees it.
struct CurrentClaim {
    id: i64,
    version: i64,
    content_hash: String,
    record: Option<Claim>,
    stored_version: Option<i64>,
    open_pending: Option<usize>,
    policy_id: i64,
}

struct PendingVersion<'b> {
    owner_id: i64,
    version: i64,
    content_hash: String,
    /// The record's JSON text; a policy's is borrowed from the batch, serialised there.
    record: Cow<'b, str>,
    record_number: i64,
    source_line: i64,
    /// Set when a later record of the same batch supersedes this version.
    valid_to: Option<DateTime<Utc>>,
    /// The record's values as-of reads filter and sum on, written in columns of their own.
    columns: VersionColumns,
}

/// A version's columns besides its record, for as-of reads.
enum VersionColumns {
    Policy {
        carrier: String,
        line_of_business: &'static str,
        status: &'static str,
        premium: Decimal,
        currency: String,
    },
    Claim {
        carrier: String,
        status: &'static str,
        policy_id: i64,
    },
}

struct PendingPremium {
    policy_id: i64,
    version: i64,
    kind: &'static str,
    amount: Decimal,
    currency: String,
    effective_date: NaiveDate,
}

struct PendingClaimTransaction {
    claim_id: i64,
    version: i64,
    kind: &'static str,
    amount: Decimal,
    currency: String,
}

struct PendingEvent {
    event_type: &'static str,
    carrier: String,
    subject_id: i64,
    payload: String,
}

/// A policy event's payload, serialised straight to text (JSONB orders its keys itself).
#[derive(serde::Serialize)]
struct PolicyEventPayload<'p> {
    policy_id: i64,
    carrier: &'p CarrierId,
    number: &'p PolicyNumber,
    version: i64,
    status: &'p PolicyStatus,
    premium: &'p Money,
    submission_id: i64,
}

struct PendingApplied {
    policy_id: i64,
    reference: String,
    content_hash: String,
    record: String,
    version: i64,
    record_number: i64,
}

/// The database's history of a policy, for the "superseded by transactions" rule.
struct StoredHistory {
    versions: Vec<(i64, String)>,
    applied_versions: Vec<i64>,
}

/// One batch, resolved in memory and then written in bulk.
struct BatchState<'b> {
    batch: &'b Batch,
    at: DateTime<Utc>,
    /// Content hash of each record of the batch (policies and claims), in batch order.
    hashes: Vec<Option<Cow<'b, str>>>,
    /// A policy record's canonical JSON, serialised with its hash; taken when it is written.
    policy_json: Vec<Option<Cow<'b, str>>>,
    /// Policies the batch writes or reads for a transaction: the ones stored (locked), and
    /// the ones it creates, from the moment it creates them.
    policies: HashMap<Key, CurrentPolicy<'b>>,
    /// Stored policies the batch's claims refer to and the batch does not otherwise touch.
    referenced_policies: HashMap<Key, i64>,
    claims: HashMap<Key, CurrentClaim>,
    /// Transactions applied, by (policy id, reference): content hash.
    applied: HashMap<(i64, String), String>,
    history: HashMap<i64, StoredHistory>,
    new_policy_ids: VecDeque<i64>,
    new_claim_ids: VecDeque<i64>,
    rejections: Vec<NewRejection>,
    policy_versions: Vec<PendingVersion<'b>>,
    claim_versions: Vec<PendingVersion<'b>>,
    /// Stored open versions the batch closes: (id, version).
    close_policy_versions: Vec<(i64, i64)>,
    close_claim_versions: Vec<(i64, i64)>,
    premiums: Vec<PendingPremium>,
    claim_transactions: Vec<PendingClaimTransaction>,
    events: Vec<PendingEvent>,
    applied_rows: Vec<PendingApplied>,
}

fn internal(what: &str) -> BatchError {
    BatchError::Store(StoreError::Invalid(format!(
        "internal error while committing a batch: {what}"
    )))
}

/// Splits keys into the two arrays `UNNEST($1::text[], $2::text[])` takes.
fn key_arrays<'k>(keys: impl IntoIterator<Item = &'k Key>) -> (Vec<&'k str>, Vec<&'k str>) {
    keys.into_iter()
        .map(|(c, n)| (c.as_str(), n.as_str()))
        .unzip()
}

/// Refuses the batch unless `batch.owner` holds the submission; locks the submission row.
async fn check_lease(conn: &mut PgConnection, batch: &Batch) -> BatchResult<()> {
    let row = sqlx::query("SELECT status, lease_owner FROM submissions WHERE id = $1 FOR UPDATE")
        .bind(batch.submission_id)
        .fetch_optional(&mut *conn)
        .await?;
    let Some(row) = row else {
        return Err(StoreError::NotFound(format!(
            "submission {} does not exist",
            batch.submission_id
        ))
        .into());
    };
    let status: String = row.try_get("status")?;
    let owner: Option<String> = row.try_get("lease_owner")?;
    match owner {
        Some(owner) if status == "processing" && owner == batch.owner => Ok(()),
        owner => Err(StoreError::Invalid(format!(
            "submission {} is {status} and held by {}, not by {}",
            batch.submission_id,
            owner.as_deref().unwrap_or("nobody"),
            batch.owner
        ))
        .into()),
    }
}

/// `n` new ids from the identity sequence of `table`, ascending.
async fn allocate_ids(
    conn: &mut PgConnection,
    table: &str,
    n: usize,
) -> BatchResult<VecDeque<i64>> {
    if n == 0 {
        return Ok(VecDeque::new());
    }
    // The sequence is looked up once (`OFFSET 0` keeps the subquery from being folded into
    // the outer one): `nextval` of its name as text would look the name up again for every
    // id, eight times the cost of `nextval` itself.
    let mut ids: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(q.seq) \
         FROM (SELECT pg_get_serial_sequence($1, 'id')::regclass AS seq OFFSET 0) q, \
              generate_series(1, $2)",
    )
    .bind(table)
    .bind(n as i64)
    .fetch_all(&mut *conn)
    .await?;
    ids.sort_unstable();
    Ok(ids.into())
}

impl<'b> BatchState<'b> {
    /// Locks and reads everything the batch needs from the database, a few queries in all.
    async fn load(conn: &mut PgConnection, batch: &'b Batch) -> BatchResult<Self> {
        let mut hashes: Vec<Option<Cow<'b, str>>> = Vec::with_capacity(batch.records.len());
        let mut policy_json: Vec<Option<Cow<'b, str>>> = Vec::with_capacity(batch.records.len());
        for staged in &batch.records {
            let (json, hash) = match &staged.record {
                CanonicalRecord::Policy(p) => {
                    let (json, hash) = staged.policy_json_and_hash(p);
                    (Some(json), Some(hash))
                }
                CanonicalRecord::Claim(c) => (None, Some(Cow::Owned(c.content_hash()))),
                CanonicalRecord::Transaction(_) => (None, None),
            };
            hashes.push(hash);
            policy_json.push(json);
        }

        let mut policy_keys = HashSet::new();
        let mut claim_keys = HashSet::new();
        let mut claim_policy_keys = HashSet::new();
        for staged in &batch.records {
            match &staged.record {
                CanonicalRecord::Policy(p) => {
                    policy_keys.insert(policy_key(p));
                }
                CanonicalRecord::Transaction(t) => {
                    policy_keys.insert(transaction_key(t));
                }
                CanonicalRecord::Claim(c) => {
                    claim_keys.insert(claim_key(c));
                    claim_policy_keys.insert(claim_policy_key(c));
                }
            }
        }

        // The stored policies, read without locks first: a policy every record of the batch
        // finds unchanged (its hash is the stored one, and no transaction of the batch
        // applies to it) is neither written nor locked. A re-sent file then locks nothing:
        // locking a row writes it (its page and the log), which is most of a re-send's cost.
        // Reporting it unchanged is right as of this read; a writer that changes it
        // meanwhile is ordered after this batch, which did not write it. Keys not stored are
        // not locked either: a writer creating one first makes this batch's insert conflict,
        // and the batch runs again (`write_policies`).
        let mut unlocked: HashMap<Key, (i64, i64, String)> = HashMap::new();
        if !policy_keys.is_empty() {
            let (carriers, numbers) = key_arrays(&policy_keys);
            let rows = sqlx::query(
                "SELECT p.id, p.carrier_id, p.policy_number, p.version, p.content_hash \
                 FROM policies p \
                 WHERE (p.carrier_id, p.policy_number) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
            )
            .bind(&carriers)
            .bind(&numbers)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                unlocked.insert(
                    (row.try_get("carrier_id")?, row.try_get("policy_number")?),
                    (
                        row.try_get("id")?,
                        row.try_get("version")?,
                        row.try_get("content_hash")?,
                    ),
                );
            }
        }
        let mut to_lock: HashSet<Key> = HashSet::new();
        for (staged, hash) in batch.records.iter().zip(&hashes) {
            let key = match &staged.record {
                CanonicalRecord::Policy(p) => {
                    let key = policy_key(p);
                    match unlocked.get(&key) {
                        Some((_, _, stored)) if hash.as_deref() == Some(stored.as_str()) => {
                            continue
                        }
                        _ => key,
                    }
                }
                CanonicalRecord::Transaction(t) => transaction_key(t),
                CanonicalRecord::Claim(_) => continue,
            };
            if unlocked.contains_key(&key) {
                to_lock.insert(key);
            }
        }

        // Locks first, in id order; then the reads, as new statements that see what the
        // writers we waited for committed.
        let policy_ids = lock_rows(conn, "policies", "policy_number", &to_lock).await?;
        let claim_ids = lock_rows(conn, "claims", "claim_number", &claim_keys).await?;

        let mut policies = HashMap::with_capacity(policy_keys.len());
        for (key, (id, version, content_hash)) in unlocked {
            if !to_lock.contains(&key) {
                policies.insert(
                    key,
                    CurrentPolicy {
                        id,
                        version,
                        content_hash,
                        record: None,
                        has_transactions: false,
                        stored_version: Some(version),
                        open_pending: None,
                    },
                );
            }
        }
        if !policy_ids.is_empty() {
            let rows = sqlx::query(
                "SELECT p.id, p.carrier_id, p.policy_number, p.version, p.content_hash, \
                 EXISTS (SELECT 1 FROM applied_transactions t WHERE t.policy_id = p.id) AS has_transactions \
                 FROM policies p WHERE p.id = ANY($1)",
            )
            .bind(&policy_ids)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let version: i64 = row.try_get("version")?;
                policies.insert(
                    (row.try_get("carrier_id")?, row.try_get("policy_number")?),
                    CurrentPolicy {
                        id: row.try_get("id")?,
                        version,
                        content_hash: row.try_get("content_hash")?,
                        record: None,
                        has_transactions: row.try_get("has_transactions")?,
                        stored_version: Some(version),
                        open_pending: None,
                    },
                );
            }
        }
        let mut claims = HashMap::with_capacity(claim_keys.len());
        if !claim_ids.is_empty() {
            let rows = sqlx::query(
                "SELECT id, carrier_id, claim_number, version, content_hash, policy_id \
                 FROM claims WHERE id = ANY($1)",
            )
            .bind(&claim_ids)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let version: i64 = row.try_get("version")?;
                claims.insert(
                    (row.try_get("carrier_id")?, row.try_get("claim_number")?),
                    CurrentClaim {
                        id: row.try_get("id")?,
                        version,
                        content_hash: row.try_get("content_hash")?,
                        record: None,
                        stored_version: Some(version),
                        open_pending: None,
                        policy_id: row.try_get("policy_id")?,
                    },
                );
            }
        }

        // Policies the claims refer to, not locked: a policy is never deleted, and the
        // claims' foreign keys hold their key for the transaction.
        let mut referenced_policies = HashMap::new();
        let unseen: Vec<&Key> = claim_policy_keys
            .iter()
            .filter(|k| !policies.contains_key(*k))
            .collect();
        if !unseen.is_empty() {
            let (carriers, numbers) = key_arrays(unseen);
            let rows = sqlx::query(
                "SELECT p.id, p.carrier_id, p.policy_number FROM policies p \
                 WHERE (p.carrier_id, p.policy_number) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
            )
            .bind(&carriers)
            .bind(&numbers)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                referenced_policies.insert(
                    (row.try_get("carrier_id")?, row.try_get("policy_number")?),
                    row.try_get("id")?,
                );
            }
        }

        // The current records of the policies and claims that will change (a record with
        // another hash, or a transaction), in one query each.
        let mut wanted_policies = HashSet::new();
        let mut wanted_claims = HashSet::new();
        for (staged, hash) in batch.records.iter().zip(&hashes) {
            match &staged.record {
                CanonicalRecord::Policy(p) => {
                    if let Some(cur) = policies.get(&policy_key(p)) {
                        if hash.as_deref() != Some(cur.content_hash.as_str()) {
                            wanted_policies.insert(cur.id);
                        }
                    }
                }
                CanonicalRecord::Transaction(t) => {
                    if let Some(cur) = policies.get(&transaction_key(t)) {
                        wanted_policies.insert(cur.id);
                    }
                }
                CanonicalRecord::Claim(c) => {
                    if let Some(cur) = claims.get(&claim_key(c)) {
                        if hash.as_deref() != Some(cur.content_hash.as_str()) {
                            wanted_claims.insert(cur.id);
                        }
                    }
                }
            }
        }
        if !wanted_policies.is_empty() {
            let ids: Vec<i64> = wanted_policies.into_iter().collect();
            let mut records: HashMap<i64, Policy> = HashMap::with_capacity(ids.len());
            let rows = sqlx::query(
                "SELECT p.id AS policy_id, p.record FROM policies p WHERE p.id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let id: i64 = row.try_get("policy_id")?;
                let Json(record): Json<Policy> = row.try_get("record").map_err(|e| {
                    StoreError::Corrupt(format!("policy {id}'s current version: {e}"))
                })?;
                records.insert(id, record);
            }
            for cur in policies.values_mut() {
                cur.record = records.remove(&cur.id).map(Cow::Owned);
            }
        }
        if !wanted_claims.is_empty() {
            let ids: Vec<i64> = wanted_claims.into_iter().collect();
            let mut records: HashMap<i64, Claim> = HashMap::with_capacity(ids.len());
            let rows = sqlx::query(
                "SELECT v.claim_id, v.record FROM claims c \
                 JOIN claim_versions v ON v.claim_id = c.id AND v.version = c.version \
                 WHERE c.id = ANY($1)",
            )
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                let id: i64 = row.try_get("claim_id")?;
                let Json(record): Json<Claim> = row.try_get("record").map_err(|e| {
                    StoreError::Corrupt(format!("claim {id}'s current version: {e}"))
                })?;
                records.insert(id, record);
            }
            for cur in claims.values_mut() {
                cur.record = records.remove(&cur.id);
            }
        }

        // Transactions already applied to the stored policies, by reference.
        let mut applied = HashMap::new();
        let (tx_policies, tx_references): (Vec<i64>, Vec<&str>) = batch
            .records
            .iter()
            .filter_map(|s| match &s.record {
                CanonicalRecord::Transaction(t) => policies
                    .get(&transaction_key(t))
                    .map(|cur| (cur.id, t.reference.as_str())),
                _ => None,
            })
            .unzip();
        if !tx_policies.is_empty() {
            let rows = sqlx::query(
                "SELECT a.policy_id, a.reference, a.content_hash FROM applied_transactions a \
                 WHERE (a.policy_id, a.reference) IN (SELECT * FROM UNNEST($1::bigint[], $2::text[]))",
            )
            .bind(&tx_policies)
            .bind(&tx_references)
            .fetch_all(&mut *conn)
            .await?;
            for row in rows {
                applied.insert(
                    (row.try_get("policy_id")?, row.try_get("reference")?),
                    row.try_get("content_hash")?,
                );
            }
        }

        // Ids for the rows the batch creates, taken in one query per table. A new policy is
        // any key of a policy record not stored; a new claim, any claim key not stored whose
        // policy is known when the claim comes (stored, or created earlier in the batch).
        let mut new_claims: HashSet<Key> = HashSet::new();
        let mut created: HashSet<Key> = HashSet::new();
        for staged in &batch.records {
            match &staged.record {
                CanonicalRecord::Policy(p) => {
                    let key = policy_key(p);
                    if !policies.contains_key(&key) {
                        created.insert(key);
                    }
                }
                CanonicalRecord::Claim(c) => {
                    let policy = claim_policy_key(c);
                    let known = policies.contains_key(&policy)
                        || referenced_policies.contains_key(&policy)
                        || created.contains(&policy);
                    let key = claim_key(c);
                    if known && !claims.contains_key(&key) {
                        new_claims.insert(key);
                    }
                }
                CanonicalRecord::Transaction(_) => {}
            }
        }
        // The carriers of the policies the batch creates must exist: the schema leaves this
        // to the writer (postgres/0008), one query per batch instead of a check per row.
        let mut carriers: Vec<&str> = created.iter().map(|(c, _)| c.as_str()).collect();
        carriers.sort_unstable();
        carriers.dedup();
        if !carriers.is_empty() {
            let known: Vec<String> =
                sqlx::query_scalar("SELECT id FROM carriers WHERE id = ANY($1)")
                    .bind(&carriers)
                    .fetch_all(&mut *conn)
                    .await?;
            if let Some(missing) = carriers.iter().find(|c| !known.iter().any(|k| k == *c)) {
                return Err(StoreError::Invalid(format!(
                    "carrier '{missing}' does not exist; register it before ingesting its policies"
                ))
                .into());
            }
        }
        let new_policy_ids = allocate_ids(conn, "policies", created.len()).await?;
        let new_claim_ids = allocate_ids(conn, "claims", new_claims.len()).await?;

        // The batch's time, read after the locks: a writer we waited for committed earlier,
        // so versions follow each other in time.
        let at: DateTime<Utc> = sqlx::query_scalar("SELECT clock_timestamp()")
            .fetch_one(&mut *conn)
            .await?;

        Ok(Self {
            batch,
            at,
            hashes,
            policy_json,
            policies,
            referenced_policies,
            claims,
            applied,
            history: HashMap::new(),
            new_policy_ids,
            new_claim_ids,
            rejections: Vec::new(),
            policy_versions: Vec::new(),
            claim_versions: Vec::new(),
            close_policy_versions: Vec::new(),
            close_claim_versions: Vec::new(),
            premiums: Vec::new(),
            claim_transactions: Vec::new(),
            events: Vec::new(),
            applied_rows: Vec::new(),
        })
    }

    fn rejection(staged: &StagedRecord, field: &str, value: String, reason: String) -> Upsert {
        Upsert::Rejected(NewRejection {
            record_number: staged.record_number,
            source_line: staged.source_line,
            sheet: staged.sheet.as_deref().map(str::to_owned),
            field: Some(field.to_owned()),
            source_column: None,
            value: Some(value),
            reason,
        })
    }

    /// The current record of a policy, read if `load` did not.
    async fn policy_record(
        &mut self,
        conn: &mut PgConnection,
        key: &Key,
    ) -> BatchResult<Cow<'b, Policy>> {
        let cur = self
            .policies
            .get(key)
            .ok_or_else(|| internal("a policy's state vanished"))?;
        if let Some(record) = &cur.record {
            return Ok(record.clone());
        }
        let (id, version) = (cur.id, cur.version);
        let Json(record): Json<Policy> =
            sqlx::query_scalar("SELECT record FROM policies WHERE id = $1 AND version = $2")
                .bind(id)
                .bind(version)
                .fetch_one(&mut *conn)
                .await
                .map_err(|e| StoreError::Corrupt(format!("policy {id} v{version}: {e}")))?;
        Ok(Cow::Owned(record))
    }

    async fn claim_record(&mut self, conn: &mut PgConnection, key: &Key) -> BatchResult<Claim> {
        let cur = self
            .claims
            .get(key)
            .ok_or_else(|| internal("a claim's state vanished"))?;
        if let Some(record) = &cur.record {
            return Ok(record.clone());
        }
        let (id, version) = (cur.id, cur.version);
        let Json(record): Json<Claim> = sqlx::query_scalar(
            "SELECT record FROM claim_versions WHERE claim_id = $1 AND version = $2",
        )
        .bind(id)
        .bind(version)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| StoreError::Corrupt(format!("claim {id} v{version}: {e}")))?;
        Ok(record)
    }

    /// Whether `hash` is a state of the policy that only transactions followed: a re-sent
    /// state row the policy's applied transactions have moved on from, not a change.
    async fn superseded_by_transactions(
        &mut self,
        conn: &mut PgConnection,
        policy_id: i64,
        hash: &str,
    ) -> BatchResult<bool> {
        let stored = match self.history.entry(policy_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let versions = sqlx::query(
                    "SELECT version, content_hash FROM policy_versions WHERE policy_id = $1",
                )
                .bind(policy_id)
                .fetch_all(&mut *conn)
                .await?
                .iter()
                .map(|r| Ok((r.try_get("version")?, r.try_get("content_hash")?)))
                .collect::<Result<Vec<(i64, String)>>>()?;
                let applied_versions: Vec<i64> = sqlx::query_scalar(
                    "SELECT policy_version FROM applied_transactions WHERE policy_id = $1",
                )
                .bind(policy_id)
                .fetch_all(&mut *conn)
                .await?;
                e.insert(StoredHistory {
                    versions,
                    applied_versions,
                })
            }
        };
        // The batch's own versions and transactions count too.
        let versions: Vec<(i64, &str)> = stored
            .versions
            .iter()
            .map(|(v, h)| (*v, h.as_str()))
            .chain(
                self.policy_versions
                    .iter()
                    .filter(|v| v.owner_id == policy_id)
                    .map(|v| (v.version, v.content_hash.as_str())),
            )
            .collect();
        let applied: HashSet<i64> = stored
            .applied_versions
            .iter()
            .copied()
            .chain(
                self.applied_rows
                    .iter()
                    .filter(|a| a.policy_id == policy_id)
                    .map(|a| a.version),
            )
            .collect();
        Ok(versions.iter().any(|(v, h)| {
            *h == hash
                && versions
                    .iter()
                    .all(|(w, _)| *w <= *v || applied.contains(w))
        }))
    }

    async fn upsert_policy(
        &mut self,
        conn: &mut PgConnection,
        staged: &StagedRecord,
        record: Cow<'b, Policy>,
        hash: Cow<'b, str>,
        json: Option<Cow<'b, str>>,
    ) -> BatchResult<Upsert> {
        let policy: &Policy = &record;
        let key = policy_key(policy);
        let index = self.policy_versions.len();
        let (policy_id, version, previous, outcome) = match self.policies.get(&key) {
            Some(cur) => {
                if *cur.content_hash == *hash {
                    return Ok(Upsert::Unchanged);
                }
                let id = cur.id;
                if cur.has_transactions && self.superseded_by_transactions(conn, id, &hash).await? {
                    return Ok(Upsert::Unchanged);
                }
                let previous = self.policy_record(conn, &key).await?;
                let at = self.at;
                let cur = self
                    .policies
                    .get_mut(&key)
                    .ok_or_else(|| internal("a policy's state vanished"))?;
                // The previous version is one this batch wrote, or the stored one.
                match cur.open_pending {
                    Some(i) => self.policy_versions[i].valid_to = Some(at),
                    None => self.close_policy_versions.push((cur.id, cur.version)),
                }
                cur.version += 1;
                cur.content_hash = hash.to_string();
                cur.record = Some(record.clone());
                cur.open_pending = Some(index);
                (cur.id, cur.version, Some(previous), Upsert::Updated)
            }
            None => {
                let id = self
                    .new_policy_ids
                    .pop_front()
                    .ok_or_else(|| internal("more new policies than ids taken"))?;
                self.policies.insert(
                    key,
                    CurrentPolicy {
                        id,
                        version: 1,
                        content_hash: hash.to_string(),
                        record: Some(record.clone()),
                        has_transactions: false,
                        stored_version: None,
                        open_pending: Some(index),
                    },
                );
                (id, 1, None, Upsert::Inserted)
            }
        };
        let record = match json {
            Some(json) => json,
            None => Cow::Owned(to_json(policy, format_args!("policy '{}'", policy.number))?),
        };
        self.policy_versions.push(PendingVersion {
            owner_id: policy_id,
            version,
            content_hash: hash.into_owned(),
            record,
            record_number: staged.record_number as i64,
            source_line: staged.source_line as i64,
            valid_to: None,
            columns: VersionColumns::Policy {
                carrier: policy.carrier.as_str().to_owned(),
                line_of_business: policy.line_of_business.value.code(),
                status: policy.status.value.code(),
                premium: policy.premium.amount.normalize(),
                currency: policy.premium.currency.as_str().to_owned(),
            },
        });
        for t in derive_premium_transactions(previous.as_deref(), policy) {
            self.premiums.push(PendingPremium {
                policy_id,
                version,
                kind: t.kind.code(),
                amount: t.amount.amount.normalize(),
                currency: t.amount.currency.as_str().to_owned(),
                effective_date: t.effective_date,
            });
        }
        let became_cancelled = policy.status.value == PolicyStatus::Cancelled
            && previous
                .as_ref()
                .is_some_and(|p| p.status.value != PolicyStatus::Cancelled);
        let event_type = match (&previous, became_cancelled) {
            (None, _) => "policy.created",
            (Some(_), true) => "policy.cancelled",
            (Some(_), false) => "policy.updated",
        };
        self.events.push(PendingEvent {
            event_type,
            carrier: policy.carrier.as_str().to_owned(),
            subject_id: policy_id,
            payload: to_json(
                &PolicyEventPayload {
                    policy_id,
                    carrier: &policy.carrier,
                    number: &policy.number,
                    version,
                    status: &policy.status.value,
                    premium: &policy.premium,
                    submission_id: self.batch.submission_id,
                },
                format_args!("policy '{}''s event", policy.number),
            )?,
        });
        Ok(outcome)
    }

    /// Applies a transaction to its policy's current version: the result is the policy's
    /// next version (through the same upsert as a reported state), and the transaction is
    /// recorded by its reference so that sending it again changes nothing.
    async fn apply_transaction(
        &mut self,
        conn: &mut PgConnection,
        staged: &StagedRecord,
        transaction: &PolicyTransaction,
    ) -> BatchResult<Upsert> {
        let key = transaction_key(transaction);
        let Some(cur) = self.policies.get(&key) else {
            return Ok(Self::rejection(
                staged,
                "policy_number",
                transaction.policy_number.to_string(),
                format!(
                    "policy '{}' is not known for carrier '{}'; ingest the policy feed first",
                    transaction.policy_number, transaction.carrier
                ),
            ));
        };
        let policy_id = cur.id;
        let hash = transaction.content_hash();
        match self
            .applied
            .get(&(policy_id, transaction.reference.clone()))
        {
            Some(h) if *h == hash => return Ok(Upsert::Unchanged),
            Some(_) => {
                return Ok(Self::rejection(
                    staged,
                    "reference",
                    transaction.reference.clone(),
                    format!(
                        "transaction '{}' was already applied to policy '{}' with other content; a correction needs a reference of its own",
                        transaction.reference, transaction.policy_number
                    ),
                ))
            }
            None => {}
        }
        let policy = self.policy_record(conn, &key).await?;
        let next = match transaction.apply_to(&policy) {
            Ok(next) => next,
            Err(v) => return Ok(Self::rejection(staged, &v.field, v.value, v.reason)),
        };
        if let Some(cur) = self.policies.get_mut(&key) {
            cur.has_transactions = true;
        }
        let first_premium = self.premiums.len();
        let next_hash = next.content_hash();
        let outcome = self
            .upsert_policy(conn, staged, Cow::Owned(next), Cow::Owned(next_hash), None)
            .await?;
        let version = self
            .policies
            .get(&key)
            .map(|c| c.version)
            .ok_or_else(|| internal("a policy's state vanished"))?;
        // The movement takes effect when the carrier says, not at the policy's inception.
        for p in &mut self.premiums[first_premium..] {
            p.effective_date = transaction.effective_date;
        }
        self.applied
            .insert((policy_id, transaction.reference.clone()), hash.clone());
        self.applied_rows.push(PendingApplied {
            policy_id,
            reference: transaction.reference.clone(),
            content_hash: hash,
            record: to_json(
                transaction,
                format_args!("transaction '{}'", transaction.reference),
            )?,
            version,
            record_number: staged.record_number as i64,
        });
        // A transaction that leaves the policy as it was (a zero endorsement) is still applied.
        Ok(match outcome {
            Upsert::Unchanged => Upsert::Updated,
            other => other,
        })
    }

    async fn upsert_claim(
        &mut self,
        conn: &mut PgConnection,
        staged: &StagedRecord,
        claim: &Claim,
        hash: String,
    ) -> BatchResult<Upsert> {
        let policy = claim_policy_key(claim);
        let policy_id = match self.policies.get(&policy) {
            Some(p) => Some(p.id),
            None => self.referenced_policies.get(&policy).copied(),
        };
        let Some(policy_id) = policy_id else {
            return Ok(Self::rejection(
                staged,
                "policy_number",
                claim.policy_number.to_string(),
                format!(
                    "policy '{}' is not known for carrier '{}'; ingest the policy feed first",
                    claim.policy_number, claim.carrier
                ),
            ));
        };
        let key = claim_key(claim);
        let record = to_json(claim, format_args!("claim '{}'", claim.number))?;
        let index = self.claim_versions.len();
        let (claim_id, version, previous, outcome) = match self.claims.get(&key) {
            Some(cur) => {
                if cur.content_hash == hash {
                    return Ok(Upsert::Unchanged);
                }
                let previous = self.claim_record(conn, &key).await?;
                let at = self.at;
                let cur = self
                    .claims
                    .get_mut(&key)
                    .ok_or_else(|| internal("a claim's state vanished"))?;
                match cur.open_pending {
                    Some(i) => self.claim_versions[i].valid_to = Some(at),
                    None => self.close_claim_versions.push((cur.id, cur.version)),
                }
                cur.version += 1;
                cur.content_hash = hash.clone();
                cur.record = Some(claim.clone());
                cur.open_pending = Some(index);
                cur.policy_id = policy_id;
                (cur.id, cur.version, Some(previous), Upsert::Updated)
            }
            None => {
                let id = self
                    .new_claim_ids
                    .pop_front()
                    .ok_or_else(|| internal("more new claims than ids taken"))?;
                self.claims.insert(
                    key,
                    CurrentClaim {
                        id,
                        version: 1,
                        content_hash: hash.clone(),
                        record: Some(claim.clone()),
                        stored_version: None,
                        open_pending: Some(index),
                        policy_id,
                    },
                );
                (id, 1, None, Upsert::Inserted)
            }
        };
        self.claim_versions.push(PendingVersion {
            owner_id: claim_id,
            version,
            content_hash: hash,
            record: Cow::Owned(record),
            record_number: staged.record_number as i64,
            source_line: staged.source_line as i64,
            valid_to: None,
            columns: VersionColumns::Claim {
                carrier: claim.carrier.as_str().to_owned(),
                status: claim.status.value.code(),
                policy_id,
            },
        });
        for t in derive_claim_transactions(previous.as_ref(), claim) {
            self.claim_transactions.push(PendingClaimTransaction {
                claim_id,
                version,
                kind: t.kind.code(),
                amount: t.amount.amount.normalize(),
                currency: t.amount.currency.as_str().to_owned(),
            });
        }
        self.events.push(PendingEvent {
            event_type: if previous.is_none() {
                "claim.created"
            } else {
                "claim.updated"
            },
            carrier: claim.carrier.as_str().to_owned(),
            subject_id: claim_id,
            payload: serde_json::json!({
                "claim_id": claim_id,
                "policy_id": policy_id,
                "carrier": claim.carrier,
                "number": claim.number,
                "version": version,
                "status": claim.status.value,
                "paid": claim.paid,
                "reserve": claim.reserve,
                "submission_id": self.batch.submission_id,
            })
            .to_string(),
        });
        Ok(outcome)
    }

    /// Resolves every record of the batch, in order.
    async fn resolve(&mut self, conn: &mut PgConnection) -> BatchResult<Counts> {
        let batch = self.batch;
        let mut counts = Counts {
            received: batch.records.len() as u64 + batch.rejected_records + batch.skipped_records,
            rejected: batch.rejected_records,
            skipped: batch.skipped_records,
            ..Counts::default()
        };
        for (i, staged) in batch.records.iter().enumerate() {
            let hash = self.hashes.get(i).cloned().flatten();
            let outcome = match &staged.record {
                CanonicalRecord::Policy(p) => {
                    let hash = hash.ok_or_else(|| internal("a policy's hash is missing"))?;
                    let json = self.policy_json.get_mut(i).and_then(Option::take);
                    self.upsert_policy(conn, staged, Cow::Borrowed(p), hash, json)
                        .await?
                }
                CanonicalRecord::Claim(c) => {
                    let hash = hash.ok_or_else(|| internal("a claim's hash is missing"))?;
                    self.upsert_claim(conn, staged, c, hash.into_owned())
                        .await?
                }
                CanonicalRecord::Transaction(t) => self.apply_transaction(conn, staged, t).await?,
            };
            match outcome {
                Upsert::Inserted => counts.inserted += 1,
                Upsert::Updated => counts.updated += 1,
                Upsert::Unchanged => counts.unchanged += 1,
                Upsert::Rejected(r) => {
                    self.rejections.push(r);
                    counts.rejected += 1;
                }
            }
        }
        Ok(counts)
    }

    /// Writes what the batch resolved: one statement per table and kind of change.
    async fn write(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let submission_id = self.batch.submission_id;
        self.write_rejections(conn).await?;
        self.write_policies(conn).await?;
        self.write_premiums(conn).await?;
        self.write_claims(conn).await?;
        write_versions(
            conn,
            "claim_versions",
            "claim_id",
            &self.close_claim_versions,
            &self.claim_versions.iter().collect::<Vec<_>>(),
            submission_id,
            self.at,
        )
        .await?;
        self.write_claim_transactions(conn).await?;
        self.write_applied(conn).await?;
        self.write_events(conn).await?;
        Ok(())
    }

    async fn write_rejections(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let all: Vec<&NewRejection> = self
            .batch
            .rejections
            .iter()
            .chain(&self.rejections)
            .collect();
        if all.is_empty() {
            return Ok(());
        }
        let record_numbers: Vec<i64> = all.iter().map(|r| r.record_number as i64).collect();
        let lines: Vec<i64> = all.iter().map(|r| r.source_line as i64).collect();
        let sheets: Vec<Option<&str>> = all.iter().map(|r| r.sheet.as_deref()).collect();
        let fields: Vec<Option<&str>> = all.iter().map(|r| r.field.as_deref()).collect();
        let columns: Vec<Option<&str>> = all.iter().map(|r| r.source_column.as_deref()).collect();
        let values: Vec<Option<&str>> = all.iter().map(|r| r.value.as_deref()).collect();
        let reasons: Vec<&str> = all.iter().map(|r| r.reason.as_str()).collect();
        sqlx::query(
            "INSERT INTO rejections (submission_id, record_number, source_line, sheet, field, \
             source_column, value, reason) \
             SELECT $1, u.record_number, u.source_line, u.sheet, u.field, u.source_column, u.value, u.reason \
             FROM UNNEST($2::bigint[], $3::bigint[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[]) \
             WITH ORDINALITY AS u(record_number, source_line, sheet, field, source_column, value, reason, n) \
             ORDER BY u.n",
        )
        .bind(self.batch.submission_id)
        .bind(&record_numbers)
        .bind(&lines)
        .bind(&sheets)
        .bind(&fields)
        .bind(&columns)
        .bind(&values)
        .bind(&reasons)
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    /// Writes the batch's policy versions. The stored versions it supersedes move from
    /// `policies` to `policy_history` (closed at the batch's time) before their rows are
    /// rewritten; versions the batch wrote and superseded itself go straight to
    /// `policy_history`; each policy's last version is its `policies` row: one `COPY` of the
    /// new policies, one `UPDATE` of the changed ones.
    async fn write_policies(&self, conn: &mut PgConnection) -> BatchResult<()> {
        if !self.close_policy_versions.is_empty() {
            let (ids, numbers): (Vec<i64>, Vec<i64>) =
                self.close_policy_versions.iter().copied().unzip();
            let done = sqlx::query(
                "INSERT INTO policy_history (policy_id, version, content_hash, record, \
                 submission_id, record_number, source_line, valid_from, valid_to, carrier_id, \
                 line_of_business, status, premium, currency) \
                 SELECT p.id, p.version, p.content_hash, p.record, p.submission_id, \
                 p.record_number, p.source_line, p.updated_at, $1, p.carrier_id, \
                 p.line_of_business, p.status, p.premium, p.currency \
                 FROM policies p JOIN UNNEST($2::bigint[], $3::bigint[]) AS u(id, version) \
                 ON p.id = u.id AND p.version = u.version",
            )
            .bind(self.at)
            .bind(&ids)
            .bind(&numbers)
            .execute(&mut *conn)
            .await?;
            if done.rows_affected() != ids.len() as u64 {
                // The rows are locked: a version moved under the lock is a bug, and running
                // the batch again is the safe answer.
                return Err(BatchError::Retry(
                    "a policy's version changed under its lock".into(),
                ));
            }
        }
        let superseded: Vec<&PendingVersion> = self
            .policy_versions
            .iter()
            .filter(|v| v.valid_to.is_some())
            .collect();
        write_versions(
            conn,
            "policy_history",
            "policy_id",
            &[],
            &superseded,
            self.batch.submission_id,
            self.at,
        )
        .await?;

        let mut created: Vec<CurrentRow<'_>> = Vec::new();
        let mut changed: Vec<CurrentRow<'_>> = Vec::new();
        for cur in self.policies.values() {
            if cur.stored_version == Some(cur.version) {
                continue;
            }
            let (Some(record), Some(pending)) = (
                cur.record.as_ref(),
                cur.open_pending.and_then(|i| self.policy_versions.get(i)),
            ) else {
                return Err(internal("a written policy has no record"));
            };
            if pending.valid_to.is_some() || pending.version != cur.version {
                return Err(internal("a policy's last version is not its open one"));
            }
            let row = CurrentRow {
                cur,
                record,
                pending,
            };
            match cur.stored_version {
                None => created.push(row),
                Some(_) => changed.push(row),
            }
        }
        if !created.is_empty() {
            copy_new_policies(conn, created, self.batch.submission_id, self.at).await?;
        }
        if changed.is_empty() {
            return Ok(());
        }
        changed.sort_by_key(|r| r.cur.id);
        let ids: Vec<i64> = changed.iter().map(|r| r.cur.id).collect();
        let expected: Vec<i64> = changed
            .iter()
            .map(|r| r.cur.stored_version.unwrap_or_default())
            .collect();
        let versions: Vec<i64> = changed.iter().map(|r| r.cur.version).collect();
        let hashes: Vec<&str> = changed
            .iter()
            .map(|r| r.cur.content_hash.as_str())
            .collect();
        let lobs: Vec<&str> = changed
            .iter()
            .map(|r| r.record.line_of_business.value.code())
            .collect();
        let lob_originals: Vec<&str> = changed
            .iter()
            .map(|r| r.record.line_of_business.original.as_str())
            .collect();
        let statuses: Vec<&str> = changed
            .iter()
            .map(|r| r.record.status.value.code())
            .collect();
        let status_originals: Vec<&str> = changed
            .iter()
            .map(|r| r.record.status.original.as_str())
            .collect();
        let effective: Vec<NaiveDate> = changed.iter().map(|r| r.record.effective_date).collect();
        let expiration: Vec<NaiveDate> = changed.iter().map(|r| r.record.expiration_date).collect();
        let premiums: Vec<Decimal> = changed
            .iter()
            .map(|r| r.record.premium.amount.normalize())
            .collect();
        let currencies: Vec<&str> = changed
            .iter()
            .map(|r| r.record.premium.currency.as_str())
            .collect();
        let producers: Vec<Option<&str>> = changed
            .iter()
            .map(|r| r.record.producer.as_deref())
            .collect();
        let insured: Vec<&str> = changed
            .iter()
            .map(|r| r.record.insured.name.as_str())
            .collect();
        let records: Vec<&str> = changed.iter().map(|r| r.pending.record.as_ref()).collect();
        let record_numbers: Vec<i64> = changed.iter().map(|r| r.pending.record_number).collect();
        let source_lines: Vec<i64> = changed.iter().map(|r| r.pending.source_line).collect();
        let done = sqlx::query(
            "UPDATE policies p SET version = u.version, content_hash = u.content_hash, \
             line_of_business = u.lob, line_of_business_original = u.lob_original, \
             status = u.status, status_original = u.status_original, \
             effective_date = u.effective_date, expiration_date = u.expiration_date, \
             premium = u.premium, currency = u.currency, producer = u.producer, \
             insured_name = u.insured_name, record = u.record::jsonb, submission_id = $18, \
             record_number = u.record_number, source_line = u.source_line, updated_at = $19 \
             FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[], \
             $6::text[], $7::text[], $8::text[], $9::date[], $10::date[], $11::numeric[], \
             $12::text[], $13::text[], $14::text[], $15::text[], $16::bigint[], $17::bigint[]) \
             AS u(id, expected, version, content_hash, lob, lob_original, status, \
             status_original, effective_date, expiration_date, premium, currency, producer, \
             insured_name, record, record_number, source_line) \
             WHERE p.id = u.id AND p.version = u.expected",
        )
        .bind(&ids)
        .bind(&expected)
        .bind(&versions)
        .bind(&hashes)
        .bind(&lobs)
        .bind(&lob_originals)
        .bind(&statuses)
        .bind(&status_originals)
        .bind(&effective)
        .bind(&expiration)
        .bind(&premiums)
        .bind(&currencies)
        .bind(&producers)
        .bind(&insured)
        .bind(&records)
        .bind(&record_numbers)
        .bind(&source_lines)
        .bind(self.batch.submission_id)
        .bind(self.at)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != ids.len() as u64 {
            return Err(BatchError::Retry(
                "a policy's version changed under its lock".into(),
            ));
        }
        Ok(())
    }
    async fn write_premiums(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let mut copy = CopyRows::new(
            "premium_transactions",
            &[
                "policy_id",
                "policy_version",
                "kind",
                "amount",
                "currency",
                "effective_date",
                "submission_id",
                "recorded_at",
            ],
        );
        for t in &self.premiums {
            copy.row()?;
            copy.value(&t.policy_id)?;
            copy.value(&t.version)?;
            copy.text(t.kind)?;
            copy.value(&t.amount)?;
            copy.text(&t.currency)?;
            copy.value(&t.effective_date)?;
            copy.value(&self.batch.submission_id)?;
            copy.value(&self.at)?;
        }
        copy.send(conn).await?;
        Ok(())
    }

    async fn write_claims(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let mut created: Vec<&CurrentClaim> = Vec::new();
        let mut changed: Vec<&CurrentClaim> = Vec::new();
        for cur in self.claims.values() {
            match cur.stored_version {
                None => created.push(cur),
                Some(v) if v != cur.version => changed.push(cur),
                Some(_) => {}
            }
        }
        created.sort_by_key(|c| c.id);
        changed.sort_by_key(|c| c.id);
        for (rows, is_new) in [(&created, true), (&changed, false)] {
            if rows.is_empty() {
                continue;
            }
            let mut records = Vec::with_capacity(rows.len());
            for cur in rows.iter() {
                records.push(
                    cur.record
                        .as_ref()
                        .ok_or_else(|| internal("a written claim has no record"))?,
                );
            }
            let ids: Vec<i64> = rows.iter().map(|c| c.id).collect();
            let policy_ids: Vec<i64> = rows.iter().map(|c| c.policy_id).collect();
            let versions: Vec<i64> = rows.iter().map(|c| c.version).collect();
            let hashes: Vec<&str> = rows.iter().map(|c| c.content_hash.as_str()).collect();
            let loss: Vec<NaiveDate> = records.iter().map(|c| c.loss_date).collect();
            let reported: Vec<NaiveDate> = records.iter().map(|c| c.reported_date).collect();
            let statuses: Vec<&str> = records.iter().map(|c| c.status.value.code()).collect();
            let status_originals: Vec<&str> =
                records.iter().map(|c| c.status.original.as_str()).collect();
            let causes: Vec<Option<&str>> = records.iter().map(|c| c.cause.as_deref()).collect();
            let paid: Vec<Decimal> = records.iter().map(|c| c.paid.amount.normalize()).collect();
            let reserve: Vec<Decimal> = records
                .iter()
                .map(|c| c.reserve.amount.normalize())
                .collect();
            let currencies: Vec<&str> = records.iter().map(|c| c.paid.currency.as_str()).collect();
            if is_new {
                let carriers: Vec<&str> = records.iter().map(|c| c.carrier.as_str()).collect();
                let numbers: Vec<&str> = records.iter().map(|c| c.number.as_str()).collect();
                let inserted: Vec<i64> = sqlx::query_scalar(
                    "INSERT INTO claims (id, carrier_id, claim_number, policy_id, version, content_hash, \
                     loss_date, reported_date, status, status_original, cause, paid, reserve, currency, \
                     created_at, updated_at) \
                     SELECT u.id, u.carrier_id, u.claim_number, u.policy_id, u.version, u.content_hash, \
                     u.loss_date, u.reported_date, u.status, u.status_original, u.cause, u.paid, \
                     u.reserve, u.currency, $15, $15 \
                     FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], \
                     $6::text[], $7::date[], $8::date[], $9::text[], $10::text[], $11::text[], \
                     $12::numeric[], $13::numeric[], $14::text[]) \
                     AS u(id, carrier_id, claim_number, policy_id, version, content_hash, loss_date, \
                     reported_date, status, status_original, cause, paid, reserve, currency) \
                     ORDER BY u.carrier_id, u.claim_number \
                     ON CONFLICT (carrier_id, claim_number) DO NOTHING RETURNING id",
                )
                .bind(&ids)
                .bind(&carriers)
                .bind(&numbers)
                .bind(&policy_ids)
                .bind(&versions)
                .bind(&hashes)
                .bind(&loss)
                .bind(&reported)
                .bind(&statuses)
                .bind(&status_originals)
                .bind(&causes)
                .bind(&paid)
                .bind(&reserve)
                .bind(&currencies)
                .bind(self.at)
                .fetch_all(&mut *conn)
                .await?;
                if inserted.len() != ids.len() {
                    let inserted: HashSet<i64> = inserted.into_iter().collect();
                    let lost = records
                        .iter()
                        .zip(&ids)
                        .find(|(_, id)| !inserted.contains(id))
                        .map(|(c, _)| format!("{}/{}", c.carrier, c.number))
                        .unwrap_or_default();
                    return Err(BatchError::Retry(format!(
                        "claim {lost} was created by another writer meanwhile"
                    )));
                }
            } else {
                let expected: Vec<i64> = rows
                    .iter()
                    .map(|c| c.stored_version.unwrap_or_default())
                    .collect();
                let done = sqlx::query(
                    "UPDATE claims c SET policy_id = u.policy_id, version = u.version, \
                     content_hash = u.content_hash, loss_date = u.loss_date, \
                     reported_date = u.reported_date, status = u.status, \
                     status_original = u.status_original, cause = u.cause, paid = u.paid, \
                     reserve = u.reserve, currency = u.currency, updated_at = $14 \
                     FROM UNNEST($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[], \
                     $6::date[], $7::date[], $8::text[], $9::text[], $10::text[], $11::numeric[], \
                     $12::numeric[], $13::text[]) \
                     AS u(id, expected, policy_id, version, content_hash, loss_date, reported_date, \
                     status, status_original, cause, paid, reserve, currency) \
                     WHERE c.id = u.id AND c.version = u.expected",
                )
                .bind(&ids)
                .bind(&expected)
                .bind(&policy_ids)
                .bind(&versions)
                .bind(&hashes)
                .bind(&loss)
                .bind(&reported)
                .bind(&statuses)
                .bind(&status_originals)
                .bind(&causes)
                .bind(&paid)
                .bind(&reserve)
                .bind(&currencies)
                .bind(self.at)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() != ids.len() as u64 {
                    return Err(BatchError::Retry(
                        "a claim's version changed under its lock".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn write_claim_transactions(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let mut copy = CopyRows::new(
            "claim_transactions",
            &[
                "claim_id",
                "claim_version",
                "kind",
                "amount",
                "currency",
                "submission_id",
                "recorded_at",
            ],
        );
        for t in &self.claim_transactions {
            copy.row()?;
            copy.value(&t.claim_id)?;
            copy.value(&t.version)?;
            copy.text(t.kind)?;
            copy.value(&t.amount)?;
            copy.text(&t.currency)?;
            copy.value(&self.batch.submission_id)?;
            copy.value(&self.at)?;
        }
        copy.send(conn).await?;
        Ok(())
    }

    async fn write_applied(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let mut copy = CopyRows::new(
            "applied_transactions",
            &[
                "policy_id",
                "reference",
                "content_hash",
                "record",
                "policy_version",
                "submission_id",
                "record_number",
                "applied_at",
            ],
        );
        for a in &self.applied_rows {
            copy.row()?;
            copy.value(&a.policy_id)?;
            copy.text(&a.reference)?;
            copy.text(&a.content_hash)?;
            copy.jsonb(&a.record)?;
            copy.value(&a.version)?;
            copy.value(&self.batch.submission_id)?;
            copy.value(&a.record_number)?;
            copy.value(&self.at)?;
        }
        copy.send(conn).await?;
        Ok(())
    }

    /// The change events, in batch order (the outbox's ids, and so the order they are
    /// published in, follow the rows' order in the `COPY`).
    async fn write_events(&self, conn: &mut PgConnection) -> BatchResult<()> {
        let mut copy = CopyRows::new(
            "outbox",
            &[
                "event_type",
                "carrier_id",
                "subject_id",
                "payload",
                "created_at",
                "traceparent",
            ],
        );
        let traceparent = crate::trace::current();
        for e in &self.events {
            copy.row()?;
            copy.text(e.event_type)?;
            copy.text(&e.carrier)?;
            copy.value(&e.subject_id)?;
            copy.jsonb(&e.payload)?;
            copy.value(&self.at)?;
            copy.opt_text(traceparent.as_deref())?;
        }
        copy.send(conn).await?;
        Ok(())
    }
}

/// The columns of a new `policies` row, in the order [`copy_new_policies`] writes them.
const POLICY_COLUMNS: &[&str] = &[
    "id",
    "carrier_id",
    "policy_number",
    "version",
    "content_hash",
    "line_of_business",
    "line_of_business_original",
    "status",
    "status_original",
    "effective_date",
    "expiration_date",
    "premium",
    "currency",
    "producer",
    "insured_name",
    "created_at",
    "updated_at",
    "record",
    "submission_id",
    "record_number",
    "source_line",
];

/// A policy's version that becomes its `policies` row.
struct CurrentRow<'s> {
    cur: &'s CurrentPolicy<'s>,
    record: &'s Policy,
    pending: &'s PendingVersion<'s>,
}

/// Inserts the batch's new policies with one `COPY`, in key order (two batches creating some of
/// the same keys then meet them in the same order). A key another writer created meanwhile
/// fails the `COPY` on the unique key (carrier, number), after that writer committed: the batch
/// is run again, and then finds the policy stored.
async fn copy_new_policies(
    conn: &mut PgConnection,
    mut rows: Vec<CurrentRow<'_>>,
    submission_id: i64,
    at: DateTime<Utc>,
) -> BatchResult<()> {
    rows.sort_by(|a, b| {
        (a.record.carrier.as_str(), a.record.number.as_str())
            .cmp(&(b.record.carrier.as_str(), b.record.number.as_str()))
    });
    let mut copy = CopyRows::new("policies", POLICY_COLUMNS);
    for CurrentRow {
        cur,
        record: p,
        pending,
    } in rows
    {
        copy.row()?;
        copy.value(&cur.id)?;
        copy.text(p.carrier.as_str())?;
        copy.text(p.number.as_str())?;
        copy.value(&cur.version)?;
        copy.text(&cur.content_hash)?;
        copy.text(p.line_of_business.value.code())?;
        copy.text(&p.line_of_business.original)?;
        copy.text(p.status.value.code())?;
        copy.text(&p.status.original)?;
        copy.value(&p.effective_date)?;
        copy.value(&p.expiration_date)?;
        copy.value(&p.premium.amount.normalize())?;
        copy.text(p.premium.currency.as_str())?;
        copy.opt_text(p.producer.as_deref())?;
        copy.text(&p.insured.name)?;
        copy.value(&at)?;
        copy.value(&at)?;
        copy.jsonb(&pending.record)?;
        copy.value(&submission_id)?;
        copy.value(&pending.record_number)?;
        copy.value(&pending.source_line)?;
    }
    match copy.send(conn).await {
        Err(CopyError::Database(e)) if is_unique_violation(&e) => Err(BatchError::Retry(format!(
            "a policy was created by another writer meanwhile: {e}"
        ))),
        other => Ok(other?),
    }
}

/// A unique key refused a row (SQLSTATE 23505).
fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .and_then(|d| d.code())
        .is_some_and(|c| c == "23505")
}

/// Locks the current rows of `keys` in `table` (`FOR NO KEY UPDATE`, in id order) and
/// returns their ids.
async fn lock_rows(
    conn: &mut PgConnection,
    table: &str,
    number_column: &str,
    keys: &HashSet<Key>,
) -> BatchResult<Vec<i64>> {
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (carriers, numbers) = key_arrays(keys);
    let ids = sqlx::query_scalar(&format!(
        "SELECT t.id FROM {table} t \
         WHERE (t.carrier_id, t.{number_column}) IN (SELECT * FROM UNNEST($1::text[], $2::text[])) \
         ORDER BY t.id FOR NO KEY UPDATE"
    ))
    .bind(&carriers)
    .bind(&numbers)
    .fetch_all(&mut *conn)
    .await?;
    Ok(ids)
}

/// Closes the stored versions the batch superseded (`close`: claims; a policy's move to
/// `policy_history` is in `write_policies`), then inserts `versions`.
async fn write_versions(
    conn: &mut PgConnection,
    table: &'static str,
    owner_column: &str,
    close: &[(i64, i64)],
    versions: &[&PendingVersion<'_>],
    submission_id: i64,
    at: DateTime<Utc>,
) -> BatchResult<()> {
    if !close.is_empty() {
        let (ids, numbers): (Vec<i64>, Vec<i64>) = close.iter().copied().unzip();
        let done = sqlx::query(&format!(
            "UPDATE {table} v SET valid_to = $1 \
             FROM UNNEST($2::bigint[], $3::bigint[]) AS u(owner_id, version) \
             WHERE v.{owner_column} = u.owner_id AND v.version = u.version AND v.valid_to IS NULL"
        ))
        .bind(at)
        .bind(&ids)
        .bind(&numbers)
        .execute(&mut *conn)
        .await?;
        if done.rows_affected() != close.len() as u64 {
            return Err(BatchError::Retry(format!(
                "a version in {table} was closed by another writer meanwhile"
            )));
        }
    }
    if versions.is_empty() {
        return Ok(());
    }
    let columns = if table == "policy_history" {
        POLICY_VERSION_COLUMNS
    } else {
        CLAIM_VERSION_COLUMNS
    };
    let mut copy = CopyRows::new(table, columns);
    for v in versions {
        copy.row()?;
        copy.value(&v.owner_id)?;
        copy.value(&v.version)?;
        copy.text(&v.content_hash)?;
        copy.jsonb(&v.record)?;
        copy.value(&submission_id)?;
        copy.value(&v.record_number)?;
        copy.value(&v.source_line)?;
        copy.value(&at)?;
        copy.value(&v.valid_to)?;
        // The as-of columns: a policy's carrier, status, line, premium and currency; a claim's
        // carrier, status and policy.
        match (&v.columns, table == "policy_history") {
            (
                VersionColumns::Policy {
                    carrier,
                    line_of_business,
                    status,
                    premium,
                    currency,
                },
                true,
            ) => {
                copy.text(carrier)?;
                copy.text(status)?;
                copy.text(line_of_business)?;
                copy.value(premium)?;
                copy.text(currency)?;
            }
            (
                VersionColumns::Claim {
                    carrier,
                    status,
                    policy_id,
                },
                false,
            ) => {
                copy.text(carrier)?;
                copy.text(status)?;
                copy.value(policy_id)?;
            }
            _ => return Err(internal("a version's columns are not its table's")),
        }
    }
    copy.send(conn).await?;
    Ok(())
}

/// The columns of a `policy_history` row, in the order [`write_versions`] writes them.
const POLICY_VERSION_COLUMNS: &[&str] = &[
    "policy_id",
    "version",
    "content_hash",
    "record",
    "submission_id",
    "record_number",
    "source_line",
    "valid_from",
    "valid_to",
    "carrier_id",
    "status",
    "line_of_business",
    "premium",
    "currency",
];

/// The columns of a `claim_versions` row, in the order [`write_versions`] writes them.
const CLAIM_VERSION_COLUMNS: &[&str] = &[
    "claim_id",
    "version",
    "content_hash",
    "record",
    "submission_id",
    "record_number",
    "source_line",
    "valid_from",
    "valid_to",
    "carrier_id",
    "status",
    "policy_id",
];

/// One attempt at a batch, inside the caller's transaction.
async fn insert_submission_event(
    conn: &mut PgConnection,
    event_type: &str,
    carrier: &str,
    subject_id: i64,
    payload: serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (event_type, carrier_id, subject_id, payload, created_at, traceparent) \
         VALUES ($1, $2, $3, $4, clock_timestamp(), $5)",
    )
    .bind(event_type)
    .bind(carrier)
    .bind(subject_id)
    .bind(payload)
    .bind(crate::trace::current())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn apply_batch(conn: &mut PgConnection, batch: &Batch) -> BatchResult<BatchOutcome> {
    check_lease(conn, batch).await?;
    let mut state = BatchState::load(conn, batch).await?;
    let counts = state.resolve(conn).await?;
    state.write(conn).await?;
    sqlx::query(
        "UPDATE submissions SET records = records + $1, inserted = inserted + $2, \
         updated = updated + $3, unchanged = unchanged + $4, rejected = rejected + $5, \
         skipped = skipped + $6, committed_through = $7, \
         lease_until = clock_timestamp() + $8, message_id = COALESCE($10, message_id) WHERE id = $9",
    )
    .bind(counts.received as i64)
    .bind(counts.inserted as i64)
    .bind(counts.updated as i64)
    .bind(counts.unchanged as i64)
    .bind(counts.rejected as i64)
    .bind(counts.skipped as i64)
    .bind(batch.through_record as i64)
    .bind(lease_interval(batch.lease))
    .bind(batch.submission_id)
    .bind(&batch.message_id)
    .execute(&mut *conn)
    .await?;
    Ok(BatchOutcome { counts })
}

/// How the warehouse's reads are spelled in PostgreSQL (see [`crate::warehouse`]).
const WAREHOUSE_DIALECT: crate::warehouse::Dialect = crate::warehouse::Dialect {
    ids: "(SELECT jsonb_array_elements_text(?::jsonb)::bigint)",
    texts: "(SELECT jsonb_array_elements_text(?::jsonb))",
    policy_month: "substr(v.record->>'effective_date', 1, 7)",
    claim_month: "substr({}.record->>'loss_date', 1, 7)",
    premium_month: "to_char(t.effective_date, 'YYYY-MM')",
};

/// `sql` with its `?` parameters numbered `$2`, `$3`, … (`$1` is the carrier).
fn sql_params(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 8);
    let mut n = 1;
    for ch in sql.chars() {
        if ch == '?' {
            n += 1;
            out.push_str(&format!("${n}"));
        } else {
            out.push(ch);
        }
    }
    out
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn check_schema(&self) -> Result<()> {
        let applied = applied_migrations(&self.pool).await?;
        schema::check_current(&MIGRATOR, &applied, "the PostgreSQL database")
    }

    async fn ensure_carrier(&self, id: &CarrierId, name: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO carriers (id, name, created_at) VALUES ($1, $2, clock_timestamp()) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(id.as_str())
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_carriers(&self, scope: &Scope) -> Result<Vec<CarrierSummary>> {
        // Counts are of what the scope lets the caller see, never of the whole carrier.
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT c.id, c.name, c.created_at, \
             (SELECT COUNT(*) FROM policies p WHERE p.carrier_id = c.id",
        );
        push_books(&mut q, scope, "p.producer");
        q.push(
            ") AS policies, (SELECT COUNT(*) FROM claims k JOIN policies p ON p.id = k.policy_id \
             WHERE k.carrier_id = c.id",
        );
        push_books(&mut q, scope, "p.producer");
        q.push(") AS claims, (SELECT COUNT(*) FROM submissions s WHERE s.carrier_id = c.id");
        push_carrier_wide(&mut q, scope, "s.carrier_id");
        q.push(") AS submissions FROM carriers c WHERE TRUE");
        push_carriers(&mut q, scope, "c.id");
        q.push(" ORDER BY c.id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                Ok(CarrierSummary {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    policies: r.try_get("policies")?,
                    claims: r.try_get("claims")?,
                    submissions: r.try_get("submissions")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn register_mapping(&self, m: NewMapping<'_>) -> Result<MappingRef> {
        let kind = match m.record {
            RecordKind::Policy => "policy",
            RecordKind::Claim => "claim",
            RecordKind::Transaction => "transaction",
        };
        let mut tx = self.pool.begin().await?;
        // Revisions are numbered per (carrier, name): registrations of one name take turns.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!("mapping:{}/{}", m.carrier.as_str(), m.name))
            .execute(&mut *tx)
            .await?;
        let existing = sqlx::query(
            "SELECT id, revision FROM mappings WHERE carrier_id = $1 AND name = $2 AND sha256 = $3",
        )
        .bind(m.carrier.as_str())
        .bind(m.name)
        .bind(m.sha256)
        .fetch_optional(&mut *tx)
        .await?;
        let (id, revision): (i64, i64) = match existing {
            Some(row) => (row.try_get("id")?, row.try_get("revision")?),
            None => {
                let row = sqlx::query(
                    "INSERT INTO mappings (carrier_id, name, record_kind, version, revision, sha256, spec, created_at) \
                     SELECT $1, $2, $3, $4, COALESCE(MAX(revision), 0) + 1, $5, $6, clock_timestamp() \
                     FROM mappings WHERE carrier_id = $1 AND name = $2 \
                     RETURNING id, revision",
                )
                .bind(m.carrier.as_str())
                .bind(m.name)
                .bind(kind)
                .bind(i64::from(m.version))
                .bind(m.sha256)
                .bind(m.text)
                .fetch_one(&mut *tx)
                .await?;
                (row.try_get("id")?, row.try_get("revision")?)
            }
        };
        tx.commit().await?;
        Ok(MappingRef {
            id,
            name: m.name.to_owned(),
            version: m.version,
            revision: revision as u32,
            sha256: m.sha256.to_owned(),
        })
    }

    async fn find_mapping(&self, carrier: &CarrierId, name: &str) -> Result<Option<StoredMapping>> {
        // The revision the latest submission used: returning to an earlier text makes that
        // revision the current one again.
        let row = sqlx::query(
            "SELECT m.* FROM mappings m WHERE m.carrier_id = $1 AND m.name = $2 \
             ORDER BY COALESCE((SELECT MAX(s.id) FROM submissions s WHERE s.mapping_id = m.id), 0) DESC, \
             m.revision DESC LIMIT 1",
        )
        .bind(carrier.as_str())
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| stored_mapping(&r)).transpose()
    }

    async fn get_mapping(&self, id: i64) -> Result<StoredMapping> {
        let row = sqlx::query("SELECT * FROM mappings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("mapping {id} does not exist")))?;
        stored_mapping(&row)
    }

    async fn known_policy_numbers(
        &self,
        carrier: &CarrierId,
        numbers: &[String],
    ) -> Result<HashSet<String>> {
        if numbers.is_empty() {
            return Ok(HashSet::new());
        }
        let known: Vec<String> = sqlx::query_scalar(
            "SELECT policy_number FROM policies WHERE carrier_id = $1 AND policy_number = ANY($2)",
        )
        .bind(carrier.as_str())
        .bind(numbers)
        .fetch_all(&self.pool)
        .await?;
        Ok(known.into_iter().collect())
    }

    async fn record_document(&self, sha256: &str, size_bytes: u64) -> Result<()> {
        sqlx::query(
            "INSERT INTO documents (sha256, size_bytes, stored_at) VALUES ($1, $2, clock_timestamp()) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(size_bytes as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    fn shares_documents(&self) -> bool {
        true
    }

    async fn store_document_content(
        &self,
        sha256: &str,
        size_bytes: u64,
        content: &mut (dyn AsyncRead + Send + Unpin),
    ) -> Result<bool> {
        let stored: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM document_chunks WHERE sha256 = $1 AND seq = 0)",
        )
        .bind(sha256)
        .fetch_one(&self.pool)
        .await?;
        if stored {
            return Ok(false);
        }
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO documents (sha256, size_bytes, stored_at) VALUES ($1, $2, clock_timestamp()) \
             ON CONFLICT (sha256) DO NOTHING",
        )
        .bind(sha256)
        .bind(size_bytes as i64)
        .execute(&mut *tx)
        .await?;
        let mut chunk = vec![0u8; DOCUMENT_CHUNK_BYTES];
        let mut total = 0u64;
        for seq in 0i32.. {
            // Fill the chunk (a read may return less), short only at the end of the content.
            let mut n = 0;
            while n < chunk.len() {
                match content.read(&mut chunk[n..]).await {
                    Ok(0) => break,
                    Ok(read) => n += read,
                    Err(e) => {
                        return Err(std::io::Error::new(
                            e.kind(),
                            format!("cannot read document {sha256}: {e}"),
                        )
                        .into())
                    }
                }
            }
            if n == 0 && seq > 0 {
                break;
            }
            let written = sqlx::query(
                "INSERT INTO document_chunks (sha256, seq, bytes) VALUES ($1, $2, $3) \
                 ON CONFLICT (sha256, seq) DO NOTHING",
            )
            .bind(sha256)
            .bind(seq)
            .bind(&chunk[..n])
            .execute(&mut *tx)
            .await?
            .rows_affected();
            if written == 0 {
                // Another process stored these bytes meanwhile (this insert waited for its
                // commit): keep its copy, write nothing (the transaction rolls back).
                return Ok(false);
            }
            total += n as u64;
            if n < DOCUMENT_CHUNK_BYTES {
                break;
            }
        }
        if total != size_bytes {
            return Err(StoreError::Invalid(format!(
                "document {sha256} has {total} bytes, not the {size_bytes} recorded: not stored"
            )));
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn read_document_content(
        &self,
        sha256: &str,
        sink: &mut (dyn AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        // One chunk per query, in order, until there is none: memory holds one chunk, and a
        // document's chunks never change once committed.
        let mut total = 0u64;
        for seq in 0i32.. {
            let chunk: Option<Vec<u8>> = sqlx::query_scalar(
                "SELECT bytes FROM document_chunks WHERE sha256 = $1 AND seq = $2",
            )
            .bind(sha256)
            .bind(seq)
            .fetch_optional(&self.pool)
            .await?;
            match chunk {
                Some(bytes) => {
                    sink.write_all(&bytes).await?;
                    total += bytes.len() as u64;
                }
                None if seq == 0 => {
                    return Err(StoreError::NotFound(format!(
                        "document {sha256} is not in the store (received before it shared \
                         documents? it is in the data directory that received it)"
                    )))
                }
                None => break,
            }
        }
        sink.flush().await?;
        Ok(total)
    }

    async fn create_submission(&self, s: NewSubmission<'_>) -> Result<i64> {
        let mut tx = self.pool.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO submissions (carrier_id, mapping_id, file_name, document_sha256, received_via, \
             received_at, status, replay_of) \
             VALUES ($1, $2, $3, $4, $5, clock_timestamp(), 'received', $6) RETURNING id",
        )
        .bind(s.carrier.as_str())
        .bind(s.mapping_id)
        .bind(s.file_name)
        .bind(s.document_sha256)
        .bind(s.received_via)
        .bind(s.replay_of)
        .fetch_one(&mut *tx)
        .await?;
        insert_submission_event(
            &mut tx,
            "submission.received",
            s.carrier.as_str(),
            id,
            submission_event(id, s.carrier.as_str(), s.file_name, None, None),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn claim_submission(
        &self,
        id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<SubmissionClaim> {
        let mut tx = self.pool.begin().await?;
        let row = sqlx::query(
            "SELECT status, lease_owner, lease_until >= clock_timestamp() AS live \
             FROM submissions WHERE id = $1 FOR UPDATE",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))?;
        let status: String = row.try_get("status")?;
        let holder: Option<String> = row.try_get("lease_owner")?;
        let live: Option<bool> = row.try_get("live")?;
        let step = match status.as_str() {
            "completed" | "failed" => ClaimStep::Finished,
            "processing" if live == Some(true) && holder.as_deref().is_some_and(|h| h != owner) => {
                ClaimStep::Held(holder.unwrap_or_default())
            }
            _ => {
                sqlx::query(
                    "UPDATE submissions SET status = 'processing', \
                     started_at = COALESCE(started_at, clock_timestamp()), \
                     lease_owner = $1, lease_until = clock_timestamp() + $2, \
                     attempts = attempts + 1 WHERE id = $3",
                )
                .bind(owner)
                .bind(lease_interval(lease))
                .bind(id)
                .execute(&mut *tx)
                .await?;
                ClaimStep::Claimed
            }
        };
        tx.commit().await?;
        let submission = || async {
            self.get_submission(id, &Scope::all())
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))
        };
        Ok(match step {
            ClaimStep::Finished => SubmissionClaim::Finished(submission().await?),
            ClaimStep::Claimed => SubmissionClaim::Claimed(submission().await?),
            ClaimStep::Held(owner) => SubmissionClaim::Held { owner },
        })
    }

    async fn earlier_unfinished_submission(&self, id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT e.id FROM submissions s JOIN submissions e ON e.carrier_id = s.carrier_id \
             WHERE s.id = $1 AND e.id < s.id AND e.status IN ('received', 'processing') \
             ORDER BY e.id LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn extend_submission_lease(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE submissions SET lease_until = clock_timestamp() + $1 \
             WHERE id = $2 AND status = 'processing' AND lease_owner = $3",
        )
        .bind(lease_interval(lease))
        .bind(id)
        .bind(owner)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn finish_submission(
        &self,
        id: i64,
        owner: &str,
        error: Option<&str>,
    ) -> Result<Submission> {
        let mut tx = self.pool.begin().await?;
        let done = sqlx::query(
            "UPDATE submissions SET status = $1, error = $2, finished_at = clock_timestamp(), \
             lease_owner = NULL, lease_until = NULL \
             WHERE id = $3 AND status = 'processing' AND lease_owner = $4 \
             RETURNING carrier_id, file_name",
        )
        .bind(if error.is_some() {
            "failed"
        } else {
            "completed"
        })
        .bind(error)
        .bind(id)
        .bind(owner)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = done else {
            return Err(StoreError::Invalid(format!(
                "submission {id} is not being processed by {owner}"
            )));
        };
        let carrier: String = row.try_get("carrier_id")?;
        let file: String = row.try_get("file_name")?;
        let (kind, status) = match error {
            None => ("submission.completed", "completed"),
            Some(_) => ("submission.failed", "failed"),
        };
        insert_submission_event(
            &mut tx,
            kind,
            &carrier,
            id,
            submission_event(id, &carrier, &file, Some(status), error),
        )
        .await?;
        tx.commit().await?;
        self.get_submission(id, &Scope::all())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))
    }

    async fn requeue_submission(&self, id: i64) -> Result<Submission> {
        let done = sqlx::query(
            "UPDATE submissions SET status = 'received', error = NULL, finished_at = NULL, \
             attempts = 0, lease_owner = NULL, lease_until = NULL WHERE id = $1 AND status = 'failed'",
        )
        .bind(id)
        .execute(&self.pool)
        .await?;
        if done.rows_affected() != 1 {
            return Err(StoreError::Invalid(format!(
                "submission {id} cannot be queued again: it does not exist or has not failed"
            )));
        }
        self.get_submission(id, &Scope::all())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))
    }

    async fn get_submission(&self, id: i64, scope: &Scope) -> Result<Option<Submission>> {
        let mut q = QueryBuilder::<Postgres>::new(SUBMISSION_SELECT);
        q.push(" WHERE s.id = ").push_bind(id);
        push_carrier_wide(&mut q, scope, "s.carrier_id");
        let row = q.build().fetch_optional(&self.pool).await?;
        row.map(|r| Self::submission_from_row(&r)).transpose()
    }

    async fn list_submissions(
        &self,
        scope: &Scope,
        filter: &SubmissionFilter,
    ) -> Result<Page<Submission>> {
        let mut q = QueryBuilder::<Postgres>::new(SUBMISSION_SELECT);
        q.push(" WHERE 1 = 1");
        push_carrier_wide(&mut q, scope, "s.carrier_id");
        if let Some(c) = &filter.carrier {
            q.push(" AND s.carrier_id = ").push_bind(c.clone());
        }
        self.keyset_page(q, "s.id", &filter.page, Self::submission_from_row, |s| s.id)
            .await
    }

    async fn unfinished_submissions(&self) -> Result<Vec<Submission>> {
        let rows = sqlx::query(&format!(
            "{SUBMISSION_SELECT} WHERE s.status IN ('received', 'processing') ORDER BY s.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(Self::submission_from_row).collect()
    }

    async fn commit_batch(&self, batch: Batch) -> Result<BatchOutcome> {
        let mut attempt = 1;
        loop {
            let mut tx = self.pool.begin().await?;
            let failure = match apply_batch(&mut tx, &batch).await {
                Ok(outcome) => match tx.commit().await {
                    Ok(()) => {
                        batch.release();
                        return Ok(outcome);
                    }
                    Err(e) => BatchError::from(e),
                },
                Err(e) => {
                    // Dropping the transaction would roll it back too; this returns the
                    // connection to the pool clean before the next attempt.
                    let _ = tx.rollback().await;
                    e
                }
            };
            match failure {
                BatchError::Retry(reason) if attempt < MAX_ATTEMPTS => {
                    tracing::debug!(
                        submission_id = batch.submission_id,
                        attempt,
                        %reason,
                        "batch raced another writer; running it again"
                    );
                    tokio::time::sleep(Duration::from_millis(5 * u64::from(attempt))).await;
                    attempt += 1;
                }
                BatchError::Retry(reason) => {
                    return Err(StoreError::Invalid(format!(
                        "a batch of submission {} lost {attempt} races with other writers; last: {reason}",
                        batch.submission_id
                    )))
                }
                BatchError::Store(e) => return Err(e),
            }
        }
    }

    async fn list_rejections(
        &self,
        submission: i64,
        scope: &Scope,
        page: &PageRequest,
    ) -> Result<Page<Rejection>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT r.*, s.file_name FROM rejections r JOIN submissions s ON s.id = r.submission_id \
             WHERE r.submission_id = ",
        );
        q.push_bind(submission);
        push_carrier_wide(&mut q, scope, "s.carrier_id");
        self.keyset_page(q, "r.id", page, rejection_from_row, |r| r.id)
            .await
    }

    async fn list_policies(
        &self,
        scope: &Scope,
        filter: &PolicyFilter,
    ) -> Result<Page<PolicySummary>> {
        if let Some(as_of) = filter.as_of {
            // The version of each policy current then, with the values it had then.
            let mut q = QueryBuilder::<Postgres>::new(
                "SELECT v.policy_id, v.version, v.record, v.valid_from FROM policy_versions v \
                 WHERE v.valid_from <= ",
            );
            q.push_bind(as_of)
                .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
                .push_bind(as_of)
                .push(")");
            push_carriers(&mut q, scope, "v.carrier_id");
            push_books(&mut q, scope, "v.record ->> 'producer'");
            if let Some(c) = &filter.carrier {
                q.push(" AND v.carrier_id = ").push_bind(c.clone());
            }
            if let Some(l) = filter.line_of_business {
                q.push(" AND v.line_of_business = ").push_bind(l.code());
            }
            if let Some(s) = filter.status {
                q.push(" AND v.status = ").push_bind(s.code());
            }
            for (key, value) in &filter.extras {
                q.push(" AND v.record -> 'extras' @> ")
                    .push_bind(extras_filter(key, value));
            }
            let page = self
                .keyset_page(
                    q,
                    "v.policy_id",
                    &filter.page,
                    policy_version_summary,
                    |p| p.id,
                )
                .await?;
            return self.with_extras(page, filter.include_extras).await;
        }
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "SELECT {POLICY_SUMMARY_COLUMNS} FROM policies WHERE 1 = 1"
        ));
        push_carriers(&mut q, scope, "carrier_id");
        push_books(&mut q, scope, "producer");
        if let Some(c) = &filter.carrier {
            q.push(" AND carrier_id = ").push_bind(c.clone());
        }
        if let Some(l) = filter.line_of_business {
            q.push(" AND line_of_business = ").push_bind(l.code());
        }
        if let Some(s) = filter.status {
            q.push(" AND status = ").push_bind(s.code());
        }
        // Through the GIN index on the current records' extras (`policies_extras`).
        for (key, value) in &filter.extras {
            q.push(" AND record -> 'extras' @> ")
                .push_bind(extras_filter(key, value));
        }
        let page = self
            .keyset_page(q, "id", &filter.page, Self::policy_summary_from_row, |p| {
                p.id
            })
            .await?;
        self.with_extras(page, filter.include_extras).await
    }

    async fn get_policy(&self, id: i64, scope: &Scope) -> Result<Option<PolicyDetail>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT p.*, (SELECT COUNT(*) FROM policy_versions x WHERE x.policy_id = p.id) AS versions \
             FROM policies p WHERE p.id = ",
        );
        q.push_bind(id);
        push_carriers(&mut q, scope, "p.carrier_id");
        push_books(&mut q, scope, "p.producer");
        // The claims below are this policy's: in scope when it is.
        let Some(row) = q.build().fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let summary = Self::policy_summary_from_row(&row)?;
        let Json(record): Json<Policy> = row
            .try_get("record")
            .map_err(|e| StoreError::Corrupt(format!("policy {id}: {e}")))?;
        let claims = sqlx::query(&format!(
            "{CLAIM_SELECT} WHERE c.policy_id = $1 ORDER BY c.id"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(Self::claim_summary_from_row)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(PolicyDetail {
            summary: PolicySummary {
                extras: Some(record.extras.clone()),
                ..summary
            },
            insured: record.insured,
            coverages: record.coverages,
            claims,
            versions: row.try_get("versions")?,
            lineage: Lineage {
                submission_id: row.try_get("submission_id")?,
                record_number: row.try_get::<i64, _>("record_number")? as u64,
                line: row.try_get::<i64, _>("source_line")? as u64,
            },
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn get_policy_as_of(
        &self,
        id: i64,
        as_of: DateTime<Utc>,
        scope: &Scope,
    ) -> Result<Option<PolicyDetail>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT v.policy_id, v.version, v.record, v.valid_from, v.submission_id, \
             v.record_number, v.source_line, p.created_at \
             FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
             WHERE v.policy_id = ",
        );
        q.push_bind(id)
            .push(" AND v.valid_from <= ")
            .push_bind(as_of)
            .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
            .push_bind(as_of)
            .push(")");
        // In scope as it was then: the carrier never changes, the book may have.
        push_carriers(&mut q, scope, "v.carrier_id");
        push_books(&mut q, scope, "v.record ->> 'producer'");
        q.push(" ORDER BY v.valid_from DESC LIMIT 1");
        let Some(row) = q.build().fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let (summary, record) = policy_version(&row)?;
        let claims = sqlx::query(&format!(
            "{CLAIM_VERSION_SELECT} WHERE v.policy_id = $1 AND {} ORDER BY v.claim_id",
            current_at(2)
        ))
        .bind(id)
        .bind(as_of)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(claim_version_summary)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(PolicyDetail {
            // Versions are numbered from 1: the current one's number is how many there were.
            versions: summary.version,
            summary: PolicySummary {
                extras: Some(record.extras.clone()),
                ..summary
            },
            insured: record.insured,
            coverages: record.coverages,
            claims,
            lineage: Lineage {
                submission_id: row.try_get("submission_id")?,
                record_number: row.try_get::<i64, _>("record_number")? as u64,
                line: row.try_get::<i64, _>("source_line")? as u64,
            },
            created_at: row.try_get("created_at")?,
        }))
    }

    async fn policy_stamp(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT concat_ws(':', p.version, extract(epoch FROM p.updated_at), \
             k.n, k.versions, extract(epoch FROM k.latest)) \
             FROM policies p, LATERAL (SELECT COUNT(*) AS n, COALESCE(SUM(c.version), 0) AS versions, \
             MAX(c.updated_at) AS latest FROM claims c WHERE c.policy_id = p.id) k \
             WHERE p.id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_policy_versions(&self, id: i64, scope: &Scope) -> Result<Vec<PolicyVersion>> {
        if !scope.is_unrestricted() {
            let mut q = QueryBuilder::<Postgres>::new("SELECT id FROM policies WHERE id = ");
            q.push_bind(id);
            push_carriers(&mut q, scope, "carrier_id");
            push_books(&mut q, scope, "producer");
            if q.build().fetch_optional(&self.pool).await?.is_none() {
                return Ok(Vec::new());
            }
        }
        let rows =
            sqlx::query("SELECT * FROM policy_versions WHERE policy_id = $1 ORDER BY version")
                .bind(id)
                .fetch_all(&self.pool)
                .await?;
        let mut movements: HashMap<i64, Vec<PremiumMovement>> = HashMap::new();
        for r in sqlx::query(
            "SELECT policy_version, kind, amount, currency, effective_date FROM premium_transactions \
             WHERE policy_id = $1 ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            movements
                .entry(r.try_get("policy_version")?)
                .or_default()
                .push(PremiumMovement {
                    kind: r.try_get("kind")?,
                    amount: money(r.try_get("amount")?, &r.try_get::<String, _>("currency")?)?,
                    effective_date: r.try_get("effective_date")?,
                });
        }
        let mut transactions: HashMap<i64, serde_json::Value> = HashMap::new();
        for r in sqlx::query(
            "SELECT policy_version, record FROM applied_transactions WHERE policy_id = $1",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        {
            let Json(transaction): Json<PolicyTransaction> = r
                .try_get("record")
                .map_err(|e| StoreError::Corrupt(format!("policy {id}'s transaction: {e}")))?;
            transactions.insert(
                r.try_get("policy_version")?,
                canonical_value(&transaction, "a transaction")?,
            );
        }
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                Ok(PolicyVersion {
                    version,
                    content_hash: r.try_get("content_hash")?,
                    record: {
                        let Json(policy): Json<Policy> = r.try_get("record").map_err(|e| {
                            StoreError::Corrupt(format!("policy {id} v{version}: {e}"))
                        })?;
                        canonical_value(&policy, "a policy version")?
                    },
                    lineage: Lineage {
                        submission_id: r.try_get("submission_id")?,
                        record_number: r.try_get::<i64, _>("record_number")? as u64,
                        line: r.try_get::<i64, _>("source_line")? as u64,
                    },
                    valid_from: r.try_get("valid_from")?,
                    valid_to: r.try_get("valid_to")?,
                    premium_transactions: movements.remove(&version).unwrap_or_default(),
                    transaction: transactions.remove(&version),
                })
            })
            .collect()
    }

    async fn list_claims(&self, scope: &Scope, filter: &ClaimFilter) -> Result<Page<ClaimSummary>> {
        if let Some(as_of) = filter.as_of {
            let mut q = QueryBuilder::<Postgres>::new(CLAIM_VERSION_SELECT);
            q.push(" WHERE v.valid_from <= ")
                .push_bind(as_of)
                .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
                .push_bind(as_of)
                .push(")");
            push_carriers(&mut q, scope, "v.carrier_id");
            if let Some(books) = scope.book_list() {
                // The claim's policy as it was then is in one of the books.
                q.push(
                    " AND EXISTS (SELECT 1 FROM policy_versions w WHERE w.policy_id = v.policy_id \
                     AND w.valid_from <= ",
                )
                .push_bind(as_of)
                .push(" AND (w.valid_to IS NULL OR w.valid_to > ")
                .push_bind(as_of)
                .push(") AND w.record ->> 'producer' = ANY(")
                .push_bind(books)
                .push("))");
            }
            if let Some(c) = &filter.carrier {
                q.push(" AND v.carrier_id = ").push_bind(c.clone());
            }
            if let Some(s) = filter.status {
                q.push(" AND v.status = ").push_bind(s.code());
            }
            if let Some(p) = filter.policy_id {
                q.push(" AND v.policy_id = ").push_bind(p);
            }
            for (key, value) in &filter.extras {
                q.push(" AND v.record -> 'extras' @> ")
                    .push_bind(extras_filter(key, value));
            }
            let page = self
                .keyset_page(q, "v.claim_id", &filter.page, claim_version_summary, |c| {
                    c.id
                })
                .await?;
            return self.with_claim_extras(page, filter.include_extras).await;
        }
        let mut q = QueryBuilder::<Postgres>::new(CLAIM_SELECT);
        q.push(" WHERE 1 = 1");
        push_carriers(&mut q, scope, "c.carrier_id");
        push_books(&mut q, scope, "p.producer");
        if let Some(c) = &filter.carrier {
            q.push(" AND c.carrier_id = ").push_bind(c.clone());
        }
        if let Some(s) = filter.status {
            q.push(" AND c.status = ").push_bind(s.code());
        }
        if let Some(p) = filter.policy_id {
            q.push(" AND c.policy_id = ").push_bind(p);
        }
        for (key, value) in &filter.extras {
            q.push(
                " AND c.id IN (SELECT w.claim_id FROM claim_versions w \
                 WHERE w.valid_to IS NULL AND w.record -> 'extras' @> ",
            )
            .push_bind(extras_filter(key, value))
            .push(")");
        }
        let page = self
            .keyset_page(q, "c.id", &filter.page, Self::claim_summary_from_row, |c| {
                c.id
            })
            .await?;
        self.with_claim_extras(page, filter.include_extras).await
    }

    async fn unpublished_events(&self, limit: usize) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM outbox o WHERE o.published_at IS NULL ORDER BY o.id LIMIT $1",
            events::EVENT_COLUMNS
        ))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(events::event_from_row).collect()
    }

    async fn published_events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM outbox o WHERE o.published_seq > $1 \
             ORDER BY o.published_seq LIMIT $2",
            events::EVENT_COLUMNS
        ))
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(events::event_from_row).collect()
    }

    async fn last_event_id(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(id), 0)::BIGINT FROM outbox")
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn warehouse_rows(
        &self,
        carrier: &str,
        selection: &WarehouseSelection,
    ) -> Result<WarehouseCarrier> {
        let [policy_cond, claim_cond, premium_cond, claim_tx_cond] =
            crate::warehouse::conditions(&WAREHOUSE_DIALECT, carrier, selection);
        // One repeatable-read transaction, so the four reads see the same snapshot.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .execute(&mut *tx)
            .await?;
        let mut out = WarehouseCarrier::default();
        let sql = format!(
            "SELECT v.policy_id, v.version, v.record, v.submission_id, v.valid_from, v.valid_to \
             FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
             WHERE p.carrier_id = $1 AND ({}) ORDER BY v.policy_id, v.version",
            sql_params(&policy_cond.sql)
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &policy_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            let policy_id: i64 = r.try_get("policy_id")?;
            let version: i64 = r.try_get("version")?;
            let Json(record): Json<Policy> = r
                .try_get("record")
                .map_err(|e| StoreError::Corrupt(format!("policy {policy_id} v{version}: {e}")))?;
            out.policy_versions.push(WarehousePolicyVersion {
                policy_id,
                version,
                record,
                submission_id: r.try_get("submission_id")?,
                valid_from: r.try_get("valid_from")?,
                valid_to: r.try_get("valid_to")?,
            });
        }
        let sql = format!(
            "SELECT v.claim_id, v.version, v.record, v.submission_id, v.valid_from, v.valid_to, \
                    COALESCE(v.policy_id, c.policy_id) AS policy_id \
             FROM claim_versions v JOIN claims c ON c.id = v.claim_id \
             WHERE c.carrier_id = $1 AND ({}) ORDER BY v.claim_id, v.version",
            sql_params(&claim_cond.sql)
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &claim_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            let claim_id: i64 = r.try_get("claim_id")?;
            let version: i64 = r.try_get("version")?;
            let Json(record): Json<Claim> = r
                .try_get("record")
                .map_err(|e| StoreError::Corrupt(format!("claim {claim_id} v{version}: {e}")))?;
            out.claim_versions.push(WarehouseClaimVersion {
                claim_id,
                version,
                policy_id: r.try_get("policy_id")?,
                record,
                submission_id: r.try_get("submission_id")?,
                valid_from: r.try_get("valid_from")?,
                valid_to: r.try_get("valid_to")?,
            });
        }
        let sql = format!(
            "SELECT t.id, t.policy_id, t.policy_version, t.kind, t.amount, t.currency, \
                    t.effective_date, t.submission_id, t.recorded_at \
             FROM premium_transactions t JOIN policies p ON p.id = t.policy_id \
             WHERE p.carrier_id = $1 AND ({}) ORDER BY t.id",
            sql_params(&premium_cond.sql)
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &premium_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            out.premium_transactions.push(WarehousePremiumTransaction {
                id: r.try_get("id")?,
                policy_id: r.try_get("policy_id")?,
                policy_version: r.try_get("policy_version")?,
                kind: r.try_get("kind")?,
                amount: r.try_get("amount")?,
                currency: r.try_get("currency")?,
                effective_date: r.try_get("effective_date")?,
                submission_id: r.try_get("submission_id")?,
                recorded_at: r.try_get("recorded_at")?,
            });
        }
        let sql = format!(
            "SELECT t.id, t.claim_id, t.claim_version, t.kind, t.amount, t.currency, \
                    t.submission_id, t.recorded_at \
             FROM claim_transactions t JOIN claims c ON c.id = t.claim_id \
             WHERE c.carrier_id = $1 AND ({}) ORDER BY t.id",
            sql_params(&claim_tx_cond.sql)
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &claim_tx_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            out.claim_transactions.push(WarehouseClaimTransaction {
                id: r.try_get("id")?,
                claim_id: r.try_get("claim_id")?,
                claim_version: r.try_get("claim_version")?,
                kind: r.try_get("kind")?,
                amount: r.try_get("amount")?,
                currency: r.try_get("currency")?,
                submission_id: r.try_get("submission_id")?,
                recorded_at: r.try_get("recorded_at")?,
            });
        }
        tx.rollback().await?;
        Ok(out)
    }

    async fn outbox_backlog(&self) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            ready: row.try_get::<i64, _>("n")? as u64,
            waiting: 0,
            oldest: row.try_get("oldest")?,
        })
    }

    async fn webhook_backlog(&self) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE next_attempt_at <= now()) AS ready, \
             COUNT(*) FILTER (WHERE next_attempt_at > now()) AS waiting, \
             MIN(next_attempt_at) FILTER (WHERE next_attempt_at <= now()) AS oldest \
             FROM webhook_deliveries WHERE status = 'pending'",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Backlog {
            ready: row.try_get::<i64, _>("ready")? as u64,
            waiting: row.try_get::<i64, _>("waiting")? as u64,
            oldest: row.try_get("oldest")?,
        })
    }

    fn pool_use(&self) -> Vec<PoolUse> {
        let size = self.pool.size();
        let idle = self.pool.num_idle() as u32;
        vec![PoolUse {
            pool: "main",
            in_use: size.saturating_sub(idle),
            idle,
            max: self.pool.options().get_max_connections(),
        }]
    }

    async fn mark_events_published(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        self.mark_published(ids).await
    }

    async fn list_events(&self, scope: &Scope, filter: &EventFilter) -> Result<Vec<OutboxEvent>> {
        self.list_events_impl(scope, filter).await
    }

    async fn last_published_event(&self) -> Result<Option<i64>> {
        self.last_published_event_impl().await
    }

    async fn last_published_seq(&self) -> Result<i64> {
        self.last_published_seq_impl().await
    }

    async fn live_movements(
        &self,
        range: &crate::live::LiveRange,
    ) -> Result<Vec<crate::live::LiveRow>> {
        self.live_movements_impl(range).await
    }

    async fn create_webhook(&self, webhook: &NewWebhook) -> Result<Webhook> {
        self.create_webhook_impl(webhook).await
    }

    async fn list_webhooks(&self, owner: Option<&str>) -> Result<Vec<Webhook>> {
        self.list_webhooks_impl(owner).await
    }

    async fn get_webhook(&self, id: i64, owner: Option<&str>) -> Result<Option<Webhook>> {
        self.get_webhook_impl(id, owner).await
    }

    async fn enable_webhook(&self, id: i64, owner: Option<&str>) -> Result<Option<Webhook>> {
        self.enable_webhook_impl(id, owner).await
    }

    async fn backfill_webhook(&self, id: i64, from: Backfill) -> Result<u64> {
        self.backfill_webhook_impl(id, from).await
    }

    async fn delete_webhook(&self, id: i64, owner: Option<&str>) -> Result<bool> {
        self.delete_webhook_impl(id, owner).await
    }

    async fn claim_deliveries(
        &self,
        owner: &str,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<DueDelivery>> {
        self.claim_deliveries_impl(owner, limit, lease).await
    }

    async fn record_delivery_attempt(&self, result: &AttemptResult) -> Result<()> {
        self.record_delivery_attempt_impl(result).await
    }

    async fn list_deliveries(&self, webhook: i64, page: &PageRequest) -> Result<Page<Delivery>> {
        self.list_deliveries_impl(webhook, page).await
    }

    async fn redeliver(&self, webhook: i64, delivery: i64) -> Result<Option<Delivery>> {
        self.redeliver_impl(webhook, delivery).await
    }

    async fn take_lease(&self, name: &str, owner: &str, ttl: Duration) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO leases (name, owner, until) VALUES ($1, $2, clock_timestamp() + $3) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
             WHERE leases.owner = excluded.owner OR leases.until < clock_timestamp()",
        )
        .bind(name)
        .bind(owner)
        .bind(lease_interval(ttl))
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn take_fenced_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<FencedLease>> {
        let row = sqlx::query(
            "INSERT INTO fenced_leases (name, owner, token, until) \
             VALUES ($1, $2, 1, clock_timestamp() + $3) \
             ON CONFLICT (name) DO UPDATE SET \
                token = CASE WHEN fenced_leases.owner = excluded.owner \
                        THEN fenced_leases.token ELSE fenced_leases.token + 1 END, \
                owner = excluded.owner, until = excluded.until \
             WHERE fenced_leases.owner = excluded.owner \
                OR fenced_leases.until < clock_timestamp() \
             RETURNING token, until",
        )
        .bind(name)
        .bind(owner)
        .bind(lease_interval(ttl))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(FencedLease {
                token: r.try_get("token")?,
                until: r.try_get("until")?,
            })
        })
        .transpose()
    }

    async fn portfolio(&self, scope: &Scope) -> Result<Vec<PortfolioLine>> {
        self.sum_portfolio(None, scope).await
    }

    async fn portfolio_as_of(
        &self,
        as_of: DateTime<Utc>,
        scope: &Scope,
    ) -> Result<Vec<PortfolioLine>> {
        self.sum_portfolio(Some(as_of), scope).await
    }

    async fn claim_idempotency_key(
        &self,
        request: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim> {
        let mut tx = self.pool.begin().await?;
        // One statement decides: a new key is inserted, a free one (expired, or abandoned in
        // flight) is taken over, and a live one is left as it is. Two requests inserting the
        // same new key meet on the primary key: the second waits for the first to commit,
        // then finds its claim live. Either way the row stays locked until this transaction
        // ends, so the read below sees what decided.
        let acquired: Option<String> = sqlx::query_scalar(
            "INSERT INTO idempotency_keys (scope, key, fingerprint, token, locked_until, \
             created_at, expires_at) \
             VALUES ($1, $2, $3, $4, clock_timestamp() + $5, clock_timestamp(), \
             clock_timestamp() + $6) \
             ON CONFLICT (scope, key) DO UPDATE SET fingerprint = EXCLUDED.fingerprint, \
             token = EXCLUDED.token, locked_until = EXCLUDED.locked_until, status = NULL, \
             headers = NULL, body = NULL, created_at = EXCLUDED.created_at, \
             expires_at = EXCLUDED.expires_at \
             WHERE idempotency_keys.expires_at <= clock_timestamp() \
             OR (idempotency_keys.status IS NULL \
             AND idempotency_keys.locked_until <= clock_timestamp()) \
             RETURNING token",
        )
        .bind(request.scope)
        .bind(request.key)
        .bind(request.fingerprint)
        .bind(request.token)
        .bind(lease_interval(request.lock))
        .bind(lease_interval(request.ttl))
        .fetch_optional(&mut *tx)
        .await?;
        if acquired.is_some() {
            tx.commit().await?;
            return Ok(IdempotencyClaim::Acquired);
        }
        let row = sqlx::query(
            "SELECT fingerprint, status, headers, body FROM idempotency_keys \
             WHERE scope = $1 AND key = $2",
        )
        .bind(request.scope)
        .bind(request.key)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        if row.try_get::<String, _>("fingerprint")? != request.fingerprint {
            return Ok(IdempotencyClaim::Mismatch);
        }
        let Some(status) = row.try_get::<Option<i32>, _>("status")? else {
            return Ok(IdempotencyClaim::InProgress);
        };
        let Json(headers) = row.try_get::<Json<Vec<(String, String)>>, _>("headers")?;
        Ok(IdempotencyClaim::Completed(IdempotentResponse {
            status: u16::try_from(status)
                .map_err(|_| StoreError::Corrupt(format!("idempotent response status {status}")))?,
            headers,
            body: row.try_get("body")?,
        }))
    }

    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        token: &str,
        response: &IdempotentResponse,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE idempotency_keys SET status = $4, headers = $5, body = $6, token = NULL, \
             locked_until = NULL WHERE scope = $1 AND key = $2 AND token = $3",
        )
        .bind(scope)
        .bind(key)
        .bind(token)
        .bind(i32::from(response.status))
        .bind(Json(&response.headers))
        .bind(&response.body)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str, token: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = $1 AND key = $2 AND token = $3 \
             AND status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn purge_idempotency_keys(&self) -> Result<u64> {
        let done =
            sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= clock_timestamp()")
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected())
    }

    async fn create_api_key(&self, key: &crate::NewApiKey) -> Result<crate::ApiKey> {
        key.check()?;
        // `created_at` is truncated to microseconds by the column; the key is returned as
        // stored, so that it equals what `get_api_key` reads.
        let row = sqlx::query(
            "INSERT INTO api_keys (id, secret_sha256, role, scope, description, created_at, \
             created_by, expires_at, rate_limits) \
             VALUES ($1, $2, $3, $4, $5, clock_timestamp(), $6, $7, $8) \
             ON CONFLICT (id) DO NOTHING RETURNING *",
        )
        .bind(&key.id)
        .bind(&key.secret_sha256)
        .bind(key.role.as_str())
        .bind(Json(&key.scope))
        .bind(&key.description)
        .bind(&key.created_by)
        .bind(key.expires_at)
        .bind(Json(&key.rate_limits))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => api_key_from_row(&row),
            None => Err(StoreError::Invalid(format!(
                "an API key with id '{}' exists already",
                key.id
            ))),
        }
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<crate::ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<crate::ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str) -> Result<Option<crate::ApiKey>> {
        let row = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, clock_timestamp()) \
             WHERE id = $1 RETURNING *",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn record_audit(&self, entry: &crate::NewAuditEntry) -> Result<i64> {
        let id = sqlx::query_scalar(
            "INSERT INTO audit_log (at, actor, role, action, target, status, client, \
             request_id, detail) \
             VALUES (clock_timestamp(), $1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(&entry.actor)
        .bind(&entry.role)
        .bind(&entry.action)
        .bind(&entry.target)
        .bind(i32::from(entry.status))
        .bind(&entry.client)
        .bind(&entry.request_id)
        .bind(&entry.detail)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    async fn list_audit(&self, filter: &crate::AuditFilter) -> Result<Page<crate::AuditEntry>> {
        let limit = filter.page_limit();
        let mut q = QueryBuilder::<Postgres>::new("SELECT * FROM audit_log WHERE TRUE");
        if let Some(actor) = &filter.actor {
            q.push(" AND actor = ").push_bind(actor.clone());
        }
        if filter.denied_only {
            // Literal, so that the partial index `audit_log_denied` applies.
            let statuses = crate::DENIED_STATUSES.map(|s| s.to_string()).join(", ");
            q.push(format!(" AND status IN ({statuses})"));
        }
        if let Some(before) = filter.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        let items = rows
            .iter()
            .map(audit_entry_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, limit, |e| e.id))
    }

    async fn purge_audit(&self, older_than: DateTime<Utc>) -> Result<u64> {
        let done = sqlx::query("DELETE FROM audit_log WHERE at < $1")
            .bind(older_than)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}

impl PgStore {
    /// The portfolio over the current versions (`policies`), or over the versions current at
    /// `as_of` (columns the `policy_versions_as_of` index holds).
    async fn sum_portfolio(
        &self,
        as_of: Option<DateTime<Utc>>,
        scope: &Scope,
    ) -> Result<Vec<PortfolioLine>> {
        // NUMERIC sums are exact. Groups sort byte by byte, as the SQLite store sorts them.
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT v.carrier_id, v.line_of_business, v.currency, COUNT(*) AS policies, \
             COUNT(*) FILTER (WHERE v.status = ",
        );
        q.push_bind(PolicyStatus::Active.code())
            .push(") AS in_force, SUM(v.premium) AS premium FROM ");
        match as_of {
            None => {
                q.push("policies v WHERE TRUE");
                push_books(&mut q, scope, "v.producer");
            }
            Some(t) => {
                q.push("policy_versions v WHERE v.valid_from <= ")
                    .push_bind(t)
                    .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
                    .push_bind(t)
                    .push(")");
                push_books(&mut q, scope, "v.record ->> 'producer'");
            }
        }
        push_carriers(&mut q, scope, "v.carrier_id");
        q.push(
            " GROUP BY v.carrier_id, v.line_of_business, v.currency \
             ORDER BY v.carrier_id COLLATE \"C\", v.line_of_business COLLATE \"C\", \
             v.currency COLLATE \"C\"",
        );
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter()
            .map(|r| {
                let carrier: String = r.try_get("carrier_id")?;
                let premium: Decimal = r.try_get("premium").map_err(|e| {
                    StoreError::Corrupt(format!("premium sum of carrier '{carrier}': {e}"))
                })?;
                Ok(PortfolioLine {
                    line_of_business: r.try_get("line_of_business")?,
                    currency: r.try_get("currency")?,
                    policies: r.try_get::<i64, _>("policies")? as u64,
                    in_force: r.try_get::<i64, _>("in_force")? as u64,
                    premium,
                    carrier,
                })
            })
            .collect()
    }
}

fn stored_mapping(r: &PgRow) -> Result<StoredMapping> {
    Ok(StoredMapping {
        reference: MappingRef {
            id: r.try_get("id")?,
            name: r.try_get("name")?,
            version: r.try_get::<i64, _>("version")? as u32,
            revision: r.try_get::<i64, _>("revision")? as u32,
            sha256: r.try_get("sha256")?,
        },
        carrier: r.try_get("carrier_id")?,
        text: r.try_get("spec")?,
    })
}

fn rejection_from_row(r: &PgRow) -> Result<Rejection> {
    Ok(Rejection {
        id: r.try_get("id")?,
        submission_id: r.try_get("submission_id")?,
        file_name: r.try_get("file_name")?,
        record_number: r.try_get::<i64, _>("record_number")? as u64,
        line: r.try_get::<i64, _>("source_line")? as u64,
        sheet: r.try_get("sheet")?,
        field: r.try_get("field")?,
        column: r.try_get("source_column")?,
        value: r.try_get("value")?,
        reason: r.try_get("reason")?,
    })
}

impl PgStore {
    /// Fills each claim summary's extras from its version's record, when asked for.
    async fn with_claim_extras(
        &self,
        mut page: Page<ClaimSummary>,
        include: bool,
    ) -> Result<Page<ClaimSummary>> {
        if include {
            let keys: Vec<(i64, i64)> = page.items.iter().map(|c| (c.id, c.version)).collect();
            let mut found = self
                .version_extras("claim_versions", "claim_id", &keys)
                .await?;
            for c in &mut page.items {
                c.extras = Some(found.remove(&c.id).unwrap_or_default());
            }
        }
        Ok(page)
    }

    /// Fills each policy summary's extras from its version's record, when asked for.
    async fn with_extras(
        &self,
        mut page: Page<PolicySummary>,
        include: bool,
    ) -> Result<Page<PolicySummary>> {
        if include {
            let keys: Vec<(i64, i64)> = page.items.iter().map(|p| (p.id, p.version)).collect();
            let mut found = self
                .version_extras("policy_versions", "policy_id", &keys)
                .await?;
            for p in &mut page.items {
                p.extras = Some(found.remove(&p.id).unwrap_or_default());
            }
        }
        Ok(page)
    }

    /// The extras of the given (id, version)s of `table`, by id.
    async fn version_extras(
        &self,
        table: &str,
        id_column: &str,
        keys: &[(i64, i64)],
    ) -> Result<HashMap<i64, BTreeMap<String, String>>> {
        let mut found = HashMap::new();
        if keys.is_empty() {
            return Ok(found);
        }
        let ids: Vec<i64> = keys.iter().map(|k| k.0).collect();
        let versions: Vec<i64> = keys.iter().map(|k| k.1).collect();
        let rows = sqlx::query(&format!(
            "SELECT v.{id_column} AS id, v.record -> 'extras' AS extras FROM {table} v \
             JOIN UNNEST($1::bigint[], $2::bigint[]) AS k(id, version) \
             ON k.id = v.{id_column} AND k.version = v.version"
        ))
        .bind(&ids)
        .bind(&versions)
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let extras: Option<Json<BTreeMap<String, String>>> = row.try_get("extras")?;
            found.insert(
                row.try_get::<i64, _>("id")?,
                extras.map(|Json(e)| e).unwrap_or_default(),
            );
        }
        Ok(found)
    }
}

/// A JSONB containment filter for one extras key and value: `{"key": "value"}`.
fn extras_filter(key: &str, value: &str) -> Json<serde_json::Value> {
    Json(serde_json::json!({ key: value }))
}

/// A JSONB column read into `T`; a value that is not one is corrupt data.
fn stored_json<T: serde::de::DeserializeOwned>(r: &PgRow, column: &str, what: &str) -> Result<T> {
    let Json(value) = r.try_get::<Json<serde_json::Value>, _>(column)?;
    serde_json::from_value(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn api_key_from_row(r: &PgRow) -> Result<crate::ApiKey> {
    Ok(crate::ApiKey {
        id: r.try_get("id")?,
        secret_sha256: r.try_get("secret_sha256")?,
        role: crate::access::stored_role(&r.try_get::<String, _>("role")?)?,
        scope: stored_json(r, "scope", "API key scope")?,
        description: r.try_get("description")?,
        created_at: r.try_get("created_at")?,
        created_by: r.try_get("created_by")?,
        expires_at: r.try_get("expires_at")?,
        revoked_at: r.try_get("revoked_at")?,
        rate_limits: stored_json(r, "rate_limits", "API key rate limits")?,
    })
}

fn audit_entry_from_row(r: &PgRow) -> Result<crate::AuditEntry> {
    Ok(crate::AuditEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        entry: crate::NewAuditEntry {
            actor: r.try_get("actor")?,
            role: r.try_get("role")?,
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            status: crate::access::stored_status(i64::from(r.try_get::<i32, _>("status")?))?,
            client: r.try_get("client")?,
            request_id: r.try_get("request_id")?,
            detail: r.try_get("detail")?,
        },
    })
}
