//! The embedded store: one SQLite file in WAL mode, written by one connection at a time.
//! `postgres.rs` is the server backend with the same semantics; a change of behaviour here is
//! a change there too, and `tests/conformance.rs` runs the same tests against both.
//!
//! SQLite allows one writer; rather than let concurrent writers collide on `SQLITE_BUSY`,
//! writes go through a single connection behind a mutex and open with `BEGIN IMMEDIATE`
//! (so another process writing the same file waits on the busy timeout instead of failing
//! mid-transaction). Reads use a small pool and never block the writer (WAL).
//!
//! A write whose caller is dropped part-way (a request past its time limit) must not leave its
//! transaction open: it would hold the file's write lock, and so stop the embedded broker on
//! the same file, until the next write of this store. [`Turn`] rolls such a transaction back
//! at once, in a task of its own.

use crate::cursor::page_of;
use crate::idempotency::{IdempotencyClaim, IdempotencyRequest, IdempotentResponse};
use crate::schema::{self, MigrationInfo};
use crate::types::*;
use crate::webhooks::*;
use crate::{submission_event, ClaimStep, Result, Scope, Store, StoreError};
use async_trait::async_trait;
use carrierhub_model::{
    derive_claim_transactions, derive_premium_transactions, CanonicalRecord, CarrierId, Claim,
    Money, Policy, PolicyStatus, PolicyTransaction, RecordKind,
};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use futures_util::TryStreamExt;
use rust_decimal::Decimal;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};
use std::collections::HashSet;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Mutex, OwnedMutexGuard};

mod events;
mod live;
mod restore;

pub use restore::{release_claims, ReleasedClaims};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    read: SqlitePool,
    writer: Arc<Mutex<Writer>>,
}

/// The one writing connection, and whether a transaction may be open on it.
struct Writer {
    conn: SqliteConnection,
    /// Set before `BEGIN` is sent and cleared once `COMMIT` or `ROLLBACK` has run, so that a
    /// caller dropped at any point leaves it set.
    open: bool,
}

impl Writer {
    /// Rolls back what a dropped caller left open. A `ROLLBACK` with nothing open fails
    /// harmlessly (the caller was dropped before its `BEGIN` ran).
    async fn close(&mut self) {
        if self.open {
            let _ = sqlx::query("ROLLBACK").execute(&mut self.conn).await;
            self.open = false;
        }
    }
}

/// A write turn: the writer, held until dropped. Dropped with a transaction open, it hands
/// the rollback to a task, so that the write lock is released now rather than at the next
/// write.
struct Turn {
    guard: Option<OwnedMutexGuard<Writer>>,
    writer: Arc<Mutex<Writer>>,
}

impl Turn {
    async fn take(writer: &Arc<Mutex<Writer>>) -> Self {
        Self {
            guard: Some(writer.clone().lock_owned().await),
            writer: writer.clone(),
        }
    }

    fn writer(&mut self) -> &mut Writer {
        self.guard
            .as_mut()
            .expect("a turn holds the writer until dropped")
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let Some(guard) = self.guard.take() else {
            return;
        };
        if !guard.open {
            return;
        }
        drop(guard);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let writer = self.writer.clone();
            runtime.spawn(async move { writer.lock().await.close().await });
        }
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// An instant as the database stores it: fixed precision, so that text order is time order.
fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// How the warehouse's reads are spelled in SQLite (see [`crate::warehouse`]).
const WAREHOUSE_DIALECT: crate::warehouse::Dialect = crate::warehouse::Dialect {
    ids: "(SELECT value FROM json_each(?))",
    texts: "(SELECT value FROM json_each(?))",
    policy_month: "substr(json_extract(v.record, '$.effective_date'), 1, 7)",
    claim_month: "substr(json_extract({}.record, '$.loss_date'), 1, 7)",
    premium_month: "substr(t.effective_date, 1, 7)",
};

fn lease_end(lease: Duration) -> String {
    (Utc::now() + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::minutes(5)))
        .to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn ts(s: &str) -> Result<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt(format!("timestamp '{s}': {e}")))
}

fn opt_ts(s: Option<String>) -> Result<Option<DateTime<Utc>>> {
    s.as_deref().map(ts).transpose()
}

fn date(s: &str) -> Result<NaiveDate> {
    NaiveDate::from_str(s).map_err(|e| StoreError::Corrupt(format!("date '{s}': {e}")))
}

fn money(amount: &str, currency: &str) -> Result<Money> {
    let amount = Decimal::from_str(amount)
        .map_err(|e| StoreError::Corrupt(format!("amount '{amount}': {e}")))?;
    let currency = carrierhub_model::Currency::parse(currency)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    Ok(Money::new(amount, currency))
}

fn amount_text(m: &Money) -> String {
    m.amount.normalize().to_string()
}

enum Upsert {
    Inserted,
    Updated,
    Unchanged,
    Rejected(NewRejection),
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and applies pending migrations.
    pub async fn open(path: &Path) -> Result<Self> {
        Self::open_with(path, true).await
    }

    /// Opens (creating if needed) the database file. With `migrate`, pending migrations are
    /// applied; without, opening fails, naming them, unless the schema is current.
    pub async fn open_with(path: &Path, migrate: bool) -> Result<Self> {
        if !migrate && !path.exists() {
            return Err(StoreError::Schema(format!(
                "SQLite database {}: does not exist yet; create it with `carrierhub migrate`",
                path.display()
            )));
        }
        let options = Self::options(path);
        let mut writer = Self::connect(path, &options).await?;
        if migrate {
            MIGRATOR.run(&mut writer).await?;
        } else {
            let applied = applied_migrations(&mut writer).await?;
            schema::check_current(
                &MIGRATOR,
                &applied,
                &format!("SQLite database {}", path.display()),
            )?;
        }
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await?;
        Ok(Self {
            read,
            writer: Arc::new(Mutex::new(Writer {
                conn: writer,
                open: false,
            })),
        })
    }

    /// Applies the pending migrations to the database file (creating it if needed) and
    /// returns the ones applied.
    pub async fn apply_migrations(path: &Path) -> Result<Vec<MigrationInfo>> {
        let mut conn = Self::connect(path, &Self::options(path)).await?;
        let before = applied_migrations(&mut conn).await?;
        MIGRATOR.run(&mut conn).await?;
        Ok(schema::pending(&MIGRATOR, &before))
    }

    /// See [`crate::pending_migrations`]; the file must exist.
    pub async fn pending_migrations(path: &Path) -> Result<Vec<MigrationInfo>> {
        if !path.exists() {
            return Err(StoreError::Schema(format!(
                "SQLite database {}: does not exist",
                path.display()
            )));
        }
        let mut conn = Self::connect(path, &Self::options(path)).await?;
        let applied = applied_migrations(&mut conn).await?;
        schema::check_known(
            &MIGRATOR,
            &applied,
            &format!("SQLite database {}", path.display()),
        )?;
        Ok(schema::pending(&MIGRATOR, &applied))
    }

    fn options(path: &Path) -> SqliteConnectOptions {
        SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .foreign_keys(true)
            .pragma("cache_size", "-32768")
    }

    async fn connect(path: &Path, options: &SqliteConnectOptions) -> Result<SqliteConnection> {
        SqliteConnection::connect_with(options)
            .await
            .map_err(|error| StoreError::Connect {
                target: format!("SQLite database {}", path.display()),
                error,
            })
    }

    /// Ends a filtered list query with keyset pagination on `id_column` and runs it. One row
    /// more than the page is fetched to tell whether a next page exists.
    async fn keyset_page<T>(
        &self,
        mut q: QueryBuilder<'_, Sqlite>,
        id_column: &str,
        page: &PageRequest,
        from_row: fn(&SqliteRow) -> Result<T>,
        id: fn(&T) -> i64,
    ) -> Result<Page<T>> {
        if let Some(after) = page.after_id {
            q.push(format!(" AND {id_column} > ")).push_bind(after);
        }
        q.push(format!(" ORDER BY {id_column} LIMIT "))
            .push_bind(page.limit as i64 + 1);
        let rows = q.build().fetch_all(&self.read).await?;
        let items = rows.iter().map(from_row).collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, page.limit, id))
    }

    async fn in_transaction<T, F>(&self, work: F) -> Result<T>
    where
        F: for<'c> FnOnce(
            &'c mut SqliteConnection,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<T>> + Send + 'c>,
        >,
    {
        let mut turn = Turn::take(&self.writer).await;
        let writer = turn.writer();
        writer.close().await;
        writer.open = true;
        if let Err(e) = sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut writer.conn)
            .await
        {
            writer.open = false;
            return Err(e.into());
        }
        let result = match work(&mut writer.conn).await {
            Ok(value) => match sqlx::query("COMMIT").execute(&mut writer.conn).await {
                Ok(_) => {
                    writer.open = false;
                    Ok(value)
                }
                Err(e) => Err(e.into()),
            },
            Err(e) => Err(e),
        };
        // Whatever did not commit is rolled back here, not left for the next write.
        writer.close().await;
        result
    }

    fn submission_from_row(row: &SqliteRow) -> Result<Submission> {
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
            received_at: ts(&row.try_get::<String, _>("received_at")?)?,
            status: SubmissionStatus::parse(&status)
                .ok_or_else(|| StoreError::Corrupt(format!("submission status '{status}'")))?,
            error: row.try_get("error")?,
            started_at: opt_ts(row.try_get("started_at")?)?,
            finished_at: opt_ts(row.try_get("finished_at")?)?,
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
            attempts: row.try_get::<i64, _>("attempts")? as u32,
            message_id: row.try_get("message_id")?,
        })
    }

    fn policy_summary_from_row(row: &SqliteRow) -> Result<PolicySummary> {
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
            effective_date: date(&row.try_get::<String, _>("effective_date")?)?,
            expiration_date: date(&row.try_get::<String, _>("expiration_date")?)?,
            premium: money(
                &row.try_get::<String, _>("premium")?,
                &row.try_get::<String, _>("currency")?,
            )?,
            producer: row.try_get("producer")?,
            insured_name: row.try_get("insured_name")?,
            extras: None,
            version: row.try_get("version")?,
            updated_at: ts(&row.try_get::<String, _>("updated_at")?)?,
        })
    }

    fn claim_summary_from_row(row: &SqliteRow) -> Result<ClaimSummary> {
        let currency: String = row.try_get("currency")?;
        let paid = money(&row.try_get::<String, _>("paid")?, &currency)?;
        let reserve = money(&row.try_get::<String, _>("reserve")?, &currency)?;
        let incurred = paid
            .checked_add(&reserve)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(ClaimSummary {
            id: row.try_get("id")?,
            carrier: row.try_get("carrier_id")?,
            number: row.try_get("claim_number")?,
            policy_id: row.try_get("policy_id")?,
            policy_number: row.try_get("policy_number")?,
            loss_date: date(&row.try_get::<String, _>("loss_date")?)?,
            reported_date: date(&row.try_get::<String, _>("reported_date")?)?,
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
            updated_at: ts(&row.try_get::<String, _>("updated_at")?)?,
        })
    }
}

/// The condition "version current at the instant bound as `?{param}`" on the versions table
/// aliased `v`: it began at or before, and had not ended by then.
fn current_at(param: u8) -> String {
    format!("v.valid_from <= ?{param} AND (v.valid_to IS NULL OR v.valid_to > ?{param})")
}

/// `AND expr IN (values)`; an empty list matches nothing.
fn push_in(q: &mut QueryBuilder<'_, Sqlite>, expr: &str, values: Vec<String>) {
    if values.is_empty() {
        q.push(" AND 0");
        return;
    }
    q.push(format!(" AND {expr} IN ("));
    let mut list = q.separated(", ");
    for v in values {
        list.push_bind(v);
    }
    q.push(")");
}

/// `AND column IN (carriers)` when `scope` restricts carriers.
fn push_carriers(q: &mut QueryBuilder<'_, Sqlite>, scope: &Scope, column: &str) {
    if let Some(carriers) = scope.carrier_list() {
        push_in(q, column, carriers);
    }
}

/// `AND producer IN (books)` when `scope` restricts books (a policy without a producer is in
/// no book).
fn push_books(q: &mut QueryBuilder<'_, Sqlite>, scope: &Scope, producer: &str) {
    if let Some(books) = scope.book_list() {
        push_in(q, producer, books);
    }
}

/// The scope of objects that span books (submissions and their rejections): the carriers,
/// and nothing at all under a book restriction.
fn push_carrier_wide(q: &mut QueryBuilder<'_, Sqlite>, scope: &Scope, column: &str) {
    if scope.books.is_some() {
        q.push(" AND 0");
    }
    push_carriers(q, scope, column);
}

fn policy_record(id: i64, version: i64, json: &str) -> Result<Policy> {
    serde_json::from_str(json)
        .map_err(|e| StoreError::Corrupt(format!("policy {id} v{version}: {e}")))
}

/// A policy as one of its versions (`policy_id`, `version`, `record`, `valid_from`) shows it.
fn policy_version_summary(row: &SqliteRow) -> Result<PolicySummary> {
    let id: i64 = row.try_get("policy_id")?;
    let version: i64 = row.try_get("version")?;
    let record = policy_record(id, version, &row.try_get::<String, _>("record")?)?;
    let valid_from = ts(&row.try_get::<String, _>("valid_from")?)?;
    Ok(PolicySummary::of_version(id, &record, version, valid_from))
}

/// A claim as one of its versions (`claim_id`, `policy_id`, `version`, `record`,
/// `valid_from`) shows it.
fn claim_version_summary(row: &SqliteRow) -> Result<ClaimSummary> {
    let id: i64 = row.try_get("claim_id")?;
    let version: i64 = row.try_get("version")?;
    let record: Claim = serde_json::from_str(&row.try_get::<String, _>("record")?)
        .map_err(|e| StoreError::Corrupt(format!("claim {id} v{version}: {e}")))?;
    let valid_from = ts(&row.try_get::<String, _>("valid_from")?)?;
    ClaimSummary::of_version(id, row.try_get("policy_id")?, &record, version, valid_from)
        .map_err(|e| StoreError::Corrupt(format!("claim {id} v{version}: {e}")))
}

const CLAIM_VERSION_SELECT: &str =
    "SELECT v.claim_id, v.policy_id, v.version, v.record, v.valid_from FROM claim_versions v";

/// Claim versions for an as-of list, through the as-of index (see `list_policies`), or
/// through a policy's claims when the list is of one policy's.
const CLAIM_VERSION_LIST: &str =
    "SELECT v.claim_id, v.policy_id, v.version, v.record, v.valid_from \
     FROM claim_versions v INDEXED BY claim_versions_as_of";
const POLICY_CLAIM_VERSION_LIST: &str =
    "SELECT v.claim_id, v.policy_id, v.version, v.record, v.valid_from \
     FROM claim_versions v INDEXED BY claim_versions_by_policy";

/// The rows of `_sqlx_migrations`; none when no migration ever ran.
async fn applied_migrations(conn: &mut SqliteConnection) -> Result<Vec<schema::AppliedMigration>> {
    let exists: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'",
    )
    .fetch_optional(&mut *conn)
    .await?;
    if exists.is_none() {
        return Ok(Vec::new());
    }
    let rows =
        sqlx::query("SELECT version, success, checksum FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&mut *conn)
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

const SUBMISSION_SELECT: &str =
    "SELECT s.*, m.name AS mapping_name, m.version AS mapping_version, \
     m.revision AS mapping_revision, m.sha256 AS mapping_sha256 \
     FROM submissions s JOIN mappings m ON m.id = s.mapping_id";

const CLAIM_SELECT: &str =
    "SELECT c.*, p.policy_number FROM claims c JOIN policies p ON p.id = c.policy_id";

async fn insert_rejection(
    conn: &mut SqliteConnection,
    submission_id: i64,
    r: &NewRejection,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO rejections (submission_id, record_number, source_line, sheet, field, source_column, value, reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(submission_id)
    .bind(r.record_number as i64)
    .bind(r.source_line as i64)
    .bind(&r.sheet)
    .bind(&r.field)
    .bind(&r.source_column)
    .bind(&r.value)
    .bind(&r.reason)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_event(
    conn: &mut SqliteConnection,
    event_type: &str,
    carrier: &CarrierId,
    subject_id: i64,
    payload: serde_json::Value,
    at: &str,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO outbox (event_type, carrier_id, subject_id, payload, created_at, traceparent) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(event_type)
    .bind(carrier.as_str())
    .bind(subject_id)
    .bind(payload.to_string())
    .bind(at)
    .bind(crate::trace::current())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Current version of a policy as the batch sees it.
#[derive(Clone)]
struct CurrentPolicy {
    id: i64,
    version: i64,
    content_hash: String,
    /// Transactions were applied to the policy: a reported state may be one they superseded.
    has_transactions: bool,
}

/// Rows a batch appends, written with multi-row INSERTs when the batch ends: per-statement
/// overhead, not SQLite, dominates row-by-row writes.
#[derive(Default)]
struct PendingRows {
    /// New policies, with ids assigned in Rust: the batch holds SQLite's only write lock, so
    /// `MAX(id) + 1` onwards is free.
    policies: Vec<(i64, Policy, String)>,
    next_policy_id: i64,
    versions: Vec<PendingVersion>,
    premium_transactions: Vec<(i64, i64, &'static str, String, String, String)>,
    events: Vec<(&'static str, String, i64, String)>,
}

struct PendingVersion {
    policy_id: i64,
    version: i64,
    content_hash: String,
    record: String,
    record_number: i64,
    source_line: i64,
    /// Set when a later record of the same batch supersedes this version.
    valid_to: Option<String>,
    /// The record's values as-of reads filter and sum on.
    carrier_id: String,
    line_of_business: &'static str,
    status: &'static str,
    premium: String,
    currency: String,
}

/// Multi-row INSERT chunk size, well under SQLite's bound-parameter limit.
const INSERT_CHUNK: usize = 400;

impl PendingRows {
    async fn flush(
        &mut self,
        conn: &mut SqliteConnection,
        submission_id: i64,
        at: &str,
    ) -> Result<()> {
        for chunk in self.policies.chunks(INSERT_CHUNK / 2) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO policies (id, carrier_id, policy_number, version, content_hash, line_of_business, \
                 line_of_business_original, status, status_original, effective_date, expiration_date, \
                 premium, currency, producer, insured_name, created_at, updated_at) ",
            );
            q.push_values(chunk, |mut b, (id, policy, hash)| {
                b.push_bind(*id)
                    .push_bind(policy.carrier.as_str())
                    .push_bind(policy.number.as_str())
                    .push_bind(1i64)
                    .push_bind(hash.as_str())
                    .push_bind(policy.line_of_business.value.code())
                    .push_bind(policy.line_of_business.original.as_str())
                    .push_bind(policy.status.value.code())
                    .push_bind(policy.status.original.as_str())
                    .push_bind(policy.effective_date.to_string())
                    .push_bind(policy.expiration_date.to_string())
                    .push_bind(amount_text(&policy.premium))
                    .push_bind(policy.premium.currency.as_str())
                    .push_bind(policy.producer.as_deref())
                    .push_bind(policy.insured.name.as_str())
                    .push_bind(at)
                    .push_bind(at);
            });
            q.build().execute(&mut *conn).await?;
        }
        self.policies.clear();
        for chunk in self.versions.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO policy_versions (policy_id, version, content_hash, record, submission_id, \
                 record_number, source_line, valid_from, valid_to, carrier_id, line_of_business, \
                 status, premium, currency) ",
            );
            q.push_values(chunk, |mut b, v| {
                b.push_bind(v.policy_id)
                    .push_bind(v.version)
                    .push_bind(v.content_hash.as_str())
                    .push_bind(v.record.as_str())
                    .push_bind(submission_id)
                    .push_bind(v.record_number)
                    .push_bind(v.source_line)
                    .push_bind(at)
                    .push_bind(v.valid_to.as_deref())
                    .push_bind(v.carrier_id.as_str())
                    .push_bind(v.line_of_business)
                    .push_bind(v.status)
                    .push_bind(v.premium.as_str())
                    .push_bind(v.currency.as_str());
            });
            q.build().execute(&mut *conn).await?;
        }
        self.versions.clear();
        for chunk in self.premium_transactions.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO premium_transactions (policy_id, policy_version, kind, amount, currency, \
                 effective_date, submission_id, recorded_at) ",
            );
            q.push_values(
                chunk,
                |mut b, (id, version, kind, amount, currency, effective)| {
                    b.push_bind(*id)
                        .push_bind(*version)
                        .push_bind(*kind)
                        .push_bind(amount.as_str())
                        .push_bind(currency.as_str())
                        .push_bind(effective.as_str())
                        .push_bind(submission_id)
                        .push_bind(at);
                },
            );
            q.build().execute(&mut *conn).await?;
        }
        self.premium_transactions.clear();
        let traceparent = crate::trace::current();
        for chunk in self.events.chunks(INSERT_CHUNK) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO outbox (event_type, carrier_id, subject_id, payload, created_at, traceparent) ",
            );
            q.push_values(chunk, |mut b, (event_type, carrier, subject, payload)| {
                b.push_bind(*event_type)
                    .push_bind(carrier.as_str())
                    .push_bind(*subject)
                    .push_bind(payload.as_str())
                    .push_bind(at)
                    .push_bind(traceparent.clone());
            });
            q.build().execute(&mut *conn).await?;
        }
        self.events.clear();
        Ok(())
    }
}

/// Loads the current version of every policy the batch mentions, a few queries per batch.
async fn prefetch_policies(
    conn: &mut SqliteConnection,
    batch: &Batch,
) -> Result<HashMap<(String, String), CurrentPolicy>> {
    let mut keys: Vec<(&str, &str)> = batch
        .records
        .iter()
        .filter_map(|s| match &s.record {
            CanonicalRecord::Policy(p) => Some((p.carrier.as_str(), p.number.as_str())),
            // A transaction reads its policy when it is applied.
            CanonicalRecord::Claim(_) | CanonicalRecord::Transaction(_) => None,
        })
        .collect();
    keys.sort_unstable();
    keys.dedup();
    let mut found = HashMap::with_capacity(keys.len());
    for chunk in keys.chunks(INSERT_CHUNK) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT id, carrier_id, policy_number, version, content_hash, \
             EXISTS (SELECT 1 FROM applied_transactions t WHERE t.policy_id = policies.id) AS has_transactions \
             FROM policies WHERE (carrier_id, policy_number) IN (",
        );
        // SQLite takes row values on the left of IN only with a subquery on the right.
        q.push_values(chunk, |mut b, (carrier, number)| {
            b.push_bind(*carrier).push_bind(*number);
        });
        q.push(")");
        for row in q.build().fetch_all(&mut *conn).await? {
            found.insert(
                (row.try_get("carrier_id")?, row.try_get("policy_number")?),
                CurrentPolicy {
                    id: row.try_get("id")?,
                    version: row.try_get("version")?,
                    content_hash: row.try_get("content_hash")?,
                    has_transactions: row.try_get("has_transactions")?,
                },
            );
        }
    }
    Ok(found)
}

/// Whether `hash` is a state of the policy that only transactions followed: a re-sent state
/// row the policy's applied transactions have moved on from, not a change.
async fn superseded_by_transactions(
    conn: &mut SqliteConnection,
    pending: &mut PendingRows,
    submission_id: i64,
    at: &str,
    policy_id: i64,
    hash: &str,
) -> Result<bool> {
    // Versions this batch has not written yet count too.
    if pending.versions.iter().any(|v| v.policy_id == policy_id) {
        pending.flush(conn, submission_id, at).await?;
    }
    let found: Option<i64> = sqlx::query_scalar(
        "SELECT v.version FROM policy_versions v WHERE v.policy_id = ?1 AND v.content_hash = ?2 \
         AND NOT EXISTS (SELECT 1 FROM policy_versions w WHERE w.policy_id = ?1 AND w.version > v.version \
         AND NOT EXISTS (SELECT 1 FROM applied_transactions t WHERE t.policy_id = ?1 AND t.policy_version = w.version)) \
         LIMIT 1",
    )
    .bind(policy_id)
    .bind(hash)
    .fetch_optional(&mut *conn)
    .await?;
    Ok(found.is_some())
}

async fn upsert_policy(
    conn: &mut SqliteConnection,
    current: &mut HashMap<(String, String), CurrentPolicy>,
    pending: &mut PendingRows,
    submission_id: i64,
    staged: &StagedRecord,
    policy: &Policy,
    at: &str,
) -> Result<Upsert> {
    let (json, hash) = staged.policy_json_and_hash(policy);
    let (json, hash) = (json.into_owned(), hash.into_owned());
    let key = (
        policy.carrier.as_str().to_owned(),
        policy.number.as_str().to_owned(),
    );
    let (policy_id, version, previous, outcome) = match current.get(&key).cloned() {
        Some(cur) => {
            if cur.content_hash == hash {
                return Ok(Upsert::Unchanged);
            }
            if cur.has_transactions
                && superseded_by_transactions(conn, pending, submission_id, at, cur.id, &hash)
                    .await?
            {
                return Ok(Upsert::Unchanged);
            }
            let (id, version) = (cur.id, cur.version);
            // The previous version may be one this batch has not written yet.
            let record = match pending
                .versions
                .iter_mut()
                .rev()
                .find(|v| v.policy_id == id && v.version == version)
            {
                Some(v) => {
                    v.valid_to = Some(at.to_owned());
                    v.record.clone()
                }
                None => {
                    sqlx::query(
                        "UPDATE policy_versions SET valid_to = ? WHERE policy_id = ? AND version = ?",
                    )
                    .bind(at)
                    .bind(id)
                    .bind(version)
                    .execute(&mut *conn)
                    .await?;
                    sqlx::query_scalar(
                        "SELECT record FROM policy_versions WHERE policy_id = ? AND version = ?",
                    )
                    .bind(id)
                    .bind(version)
                    .fetch_one(&mut *conn)
                    .await?
                }
            };
            let previous: Policy = serde_json::from_str(&record)
                .map_err(|e| StoreError::Corrupt(format!("policy {id} v{version}: {e}")))?;
            if pending.policies.iter().any(|(pid, _, _)| *pid == id) {
                // Inserted by this batch and not written yet: write it first, then update it.
                pending.flush(conn, submission_id, at).await?;
            }
            sqlx::query(
                "UPDATE policies SET version = ?, content_hash = ?, line_of_business = ?, \
                 line_of_business_original = ?, status = ?, status_original = ?, effective_date = ?, \
                 expiration_date = ?, premium = ?, currency = ?, producer = ?, insured_name = ?, \
                 updated_at = ? WHERE id = ?",
            )
            .bind(version + 1)
            .bind(&hash)
            .bind(policy.line_of_business.value.code())
            .bind(&policy.line_of_business.original)
            .bind(policy.status.value.code())
            .bind(&policy.status.original)
            .bind(policy.effective_date.to_string())
            .bind(policy.expiration_date.to_string())
            .bind(amount_text(&policy.premium))
            .bind(policy.premium.currency.as_str())
            .bind(&policy.producer)
            .bind(&policy.insured.name)
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            (id, version + 1, Some(previous), Upsert::Updated)
        }
        None => {
            let id = pending.next_policy_id;
            pending.next_policy_id += 1;
            pending.policies.push((id, policy.clone(), hash.clone()));
            (id, 1, None, Upsert::Inserted)
        }
    };
    let has_transactions = current.get(&key).is_some_and(|c| c.has_transactions);
    current.insert(
        key,
        CurrentPolicy {
            id: policy_id,
            version,
            content_hash: hash.clone(),
            has_transactions,
        },
    );
    pending.versions.push(PendingVersion {
        policy_id,
        version,
        content_hash: hash,
        record: json,
        record_number: staged.record_number as i64,
        source_line: staged.source_line as i64,
        valid_to: None,
        carrier_id: policy.carrier.as_str().to_owned(),
        line_of_business: policy.line_of_business.value.code(),
        status: policy.status.value.code(),
        premium: amount_text(&policy.premium),
        currency: policy.premium.currency.as_str().to_owned(),
    });
    for t in derive_premium_transactions(previous.as_ref(), policy) {
        pending.premium_transactions.push((
            policy_id,
            version,
            t.kind.code(),
            amount_text(&t.amount),
            t.amount.currency.as_str().to_owned(),
            t.effective_date.to_string(),
        ));
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
    pending.events.push((
        event_type,
        policy.carrier.as_str().to_owned(),
        policy_id,
        serde_json::json!({
            "policy_id": policy_id,
            "carrier": policy.carrier,
            "number": policy.number,
            "version": version,
            "status": policy.status.value,
            "premium": policy.premium,
            "submission_id": submission_id,
        })
        .to_string(),
    ));
    Ok(outcome)
}

/// Applies a transaction to its policy's current version: the result is the policy's next
/// version (through the same upsert as a reported state), and the transaction is recorded
/// by its reference so that sending it again changes nothing.
async fn apply_transaction(
    conn: &mut SqliteConnection,
    current: &mut HashMap<(String, String), CurrentPolicy>,
    pending: &mut PendingRows,
    submission_id: i64,
    staged: &StagedRecord,
    transaction: &PolicyTransaction,
    at: &str,
) -> Result<Upsert> {
    let reject = |field: &str, value: String, reason: String| {
        Ok(Upsert::Rejected(NewRejection {
            record_number: staged.record_number,
            source_line: staged.source_line,
            sheet: staged.sheet.as_deref().map(str::to_owned),
            field: Some(field.to_owned()),
            source_column: None,
            value: Some(value),
            reason,
        }))
    };
    // The policy may be one this batch has not written yet.
    pending.flush(conn, submission_id, at).await?;
    let row = sqlx::query(
        "SELECT p.id, p.version, p.content_hash, v.record FROM policies p \
         JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.version \
         WHERE p.carrier_id = ? AND p.policy_number = ?",
    )
    .bind(transaction.carrier.as_str())
    .bind(transaction.policy_number.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let Some(row) = row else {
        return reject(
            "policy_number",
            transaction.policy_number.to_string(),
            format!(
                "policy '{}' is not known for carrier '{}'; ingest the policy feed first",
                transaction.policy_number, transaction.carrier
            ),
        );
    };
    let policy_id: i64 = row.try_get("id")?;
    let hash = transaction.content_hash();
    let applied: Option<String> = sqlx::query_scalar(
        "SELECT content_hash FROM applied_transactions WHERE policy_id = ? AND reference = ?",
    )
    .bind(policy_id)
    .bind(&transaction.reference)
    .fetch_optional(&mut *conn)
    .await?;
    match applied {
        Some(h) if h == hash => return Ok(Upsert::Unchanged),
        Some(_) => {
            return reject(
                "reference",
                transaction.reference.clone(),
                format!(
                    "transaction '{}' was already applied to policy '{}' with other content; a correction needs a reference of its own",
                    transaction.reference, transaction.policy_number
                ),
            )
        }
        None => {}
    }
    let policy: Policy = serde_json::from_str(&row.try_get::<String, _>("record")?)
        .map_err(|e| StoreError::Corrupt(format!("policy {policy_id}'s current version: {e}")))?;
    let next = match transaction.apply_to(&policy) {
        Ok(next) => next,
        Err(v) => return reject(&v.field, v.value, v.reason),
    };
    current.insert(
        (
            policy.carrier.as_str().to_owned(),
            policy.number.as_str().to_owned(),
        ),
        CurrentPolicy {
            id: policy_id,
            version: row.try_get("version")?,
            content_hash: row.try_get("content_hash")?,
            has_transactions: true,
        },
    );
    let as_state = StagedRecord {
        record: CanonicalRecord::Policy(next.clone()),
        canonical: None,
        ..staged.clone()
    };
    let outcome =
        upsert_policy(conn, current, pending, submission_id, &as_state, &next, at).await?;
    let version = current
        .get(&(
            next.carrier.as_str().to_owned(),
            next.number.as_str().to_owned(),
        ))
        .map(|c| c.version)
        .unwrap_or_default();
    // The movement takes effect when the carrier says, not at the policy's inception.
    let effective = transaction.effective_date.to_string();
    for t in pending
        .premium_transactions
        .iter_mut()
        .filter(|t| t.0 == policy_id && t.1 == version)
    {
        t.5 = effective.clone();
    }
    sqlx::query(
        "INSERT INTO applied_transactions (policy_id, reference, content_hash, record, policy_version, \
         submission_id, record_number, applied_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(policy_id)
    .bind(&transaction.reference)
    .bind(&hash)
    .bind(serde_json::to_string(transaction).expect("canonical records serialise"))
    .bind(version)
    .bind(submission_id)
    .bind(staged.record_number as i64)
    .bind(at)
    .execute(&mut *conn)
    .await?;
    // A transaction that leaves the policy as it was (a zero endorsement) is still applied.
    Ok(match outcome {
        Upsert::Unchanged => Upsert::Updated,
        other => other,
    })
}

async fn upsert_claim(
    conn: &mut SqliteConnection,
    submission_id: i64,
    staged: &StagedRecord,
    claim: &Claim,
    at: &str,
) -> Result<Upsert> {
    let policy_id: Option<i64> =
        sqlx::query_scalar("SELECT id FROM policies WHERE carrier_id = ? AND policy_number = ?")
            .bind(claim.carrier.as_str())
            .bind(claim.policy_number.as_str())
            .fetch_optional(&mut *conn)
            .await?;
    let Some(policy_id) = policy_id else {
        return Ok(Upsert::Rejected(NewRejection {
            record_number: staged.record_number,
            source_line: staged.source_line,
            sheet: staged.sheet.as_deref().map(str::to_owned),
            field: Some("policy_number".into()),
            source_column: None,
            value: Some(claim.policy_number.to_string()),
            reason: format!(
                "policy '{}' is not known for carrier '{}'; ingest the policy feed first",
                claim.policy_number, claim.carrier
            ),
        }));
    };
    let hash = claim.content_hash();
    let current = sqlx::query(
        "SELECT c.id, c.version, c.content_hash, v.record FROM claims c \
         JOIN claim_versions v ON v.claim_id = c.id AND v.version = c.version \
         WHERE c.carrier_id = ? AND c.claim_number = ?",
    )
    .bind(claim.carrier.as_str())
    .bind(claim.number.as_str())
    .fetch_optional(&mut *conn)
    .await?;
    let (claim_id, version, previous, outcome) = match current {
        Some(row) => {
            if row.try_get::<String, _>("content_hash")? == hash {
                return Ok(Upsert::Unchanged);
            }
            let id: i64 = row.try_get("id")?;
            let version: i64 = row.try_get("version")?;
            let previous: Claim = serde_json::from_str(&row.try_get::<String, _>("record")?)
                .map_err(|e| StoreError::Corrupt(format!("claim {id} v{version}: {e}")))?;
            sqlx::query(
                "UPDATE claim_versions SET valid_to = ? WHERE claim_id = ? AND version = ?",
            )
            .bind(at)
            .bind(id)
            .bind(version)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "UPDATE claims SET policy_id = ?, version = ?, content_hash = ?, loss_date = ?, \
                 reported_date = ?, status = ?, status_original = ?, cause = ?, paid = ?, reserve = ?, \
                 currency = ?, updated_at = ? WHERE id = ?",
            )
            .bind(policy_id)
            .bind(version + 1)
            .bind(&hash)
            .bind(claim.loss_date.to_string())
            .bind(claim.reported_date.to_string())
            .bind(claim.status.value.code())
            .bind(&claim.status.original)
            .bind(&claim.cause)
            .bind(amount_text(&claim.paid))
            .bind(amount_text(&claim.reserve))
            .bind(claim.paid.currency.as_str())
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            (id, version + 1, Some(previous), Upsert::Updated)
        }
        None => {
            let id: i64 = sqlx::query_scalar(
                "INSERT INTO claims (carrier_id, claim_number, policy_id, version, content_hash, loss_date, \
                 reported_date, status, status_original, cause, paid, reserve, currency, created_at, updated_at) \
                 VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            )
            .bind(claim.carrier.as_str())
            .bind(claim.number.as_str())
            .bind(policy_id)
            .bind(&hash)
            .bind(claim.loss_date.to_string())
            .bind(claim.reported_date.to_string())
            .bind(claim.status.value.code())
            .bind(&claim.status.original)
            .bind(&claim.cause)
            .bind(amount_text(&claim.paid))
            .bind(amount_text(&claim.reserve))
            .bind(claim.paid.currency.as_str())
            .bind(at)
            .bind(at)
            .fetch_one(&mut *conn)
            .await?;
            (id, 1, None, Upsert::Inserted)
        }
    };
    sqlx::query(
        "INSERT INTO claim_versions (claim_id, version, content_hash, record, submission_id, \
         record_number, source_line, valid_from, carrier_id, status, policy_id) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(claim_id)
    .bind(version)
    .bind(&hash)
    .bind(serde_json::to_string(claim).expect("claims serialise"))
    .bind(submission_id)
    .bind(staged.record_number as i64)
    .bind(staged.source_line as i64)
    .bind(at)
    .bind(claim.carrier.as_str())
    .bind(claim.status.value.code())
    .bind(policy_id)
    .execute(&mut *conn)
    .await?;
    for t in derive_claim_transactions(previous.as_ref(), claim) {
        sqlx::query(
            "INSERT INTO claim_transactions (claim_id, claim_version, kind, amount, currency, \
             submission_id, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(claim_id)
        .bind(version)
        .bind(t.kind.code())
        .bind(amount_text(&t.amount))
        .bind(t.amount.currency.as_str())
        .bind(submission_id)
        .bind(at)
        .execute(&mut *conn)
        .await?;
    }
    insert_event(
        conn,
        if previous.is_none() {
            "claim.created"
        } else {
            "claim.updated"
        },
        &claim.carrier,
        claim_id,
        serde_json::json!({
            "claim_id": claim_id,
            "policy_id": policy_id,
            "carrier": claim.carrier,
            "number": claim.number,
            "version": version,
            "status": claim.status.value,
            "paid": claim.paid,
            "reserve": claim.reserve,
            "submission_id": submission_id,
        }),
        at,
    )
    .await?;
    Ok(outcome)
}

async fn apply_batch(conn: &mut SqliteConnection, batch: &Batch) -> Result<BatchOutcome> {
    let status = sqlx::query("SELECT status, lease_owner FROM submissions WHERE id = ?")
        .bind(batch.submission_id)
        .fetch_optional(&mut *conn)
        .await?;
    let status = status
        .map(|r| -> Result<(String, Option<String>)> {
            Ok((r.try_get("status")?, r.try_get("lease_owner")?))
        })
        .transpose()?;
    match status {
        Some((s, Some(owner))) if s == "processing" && owner == batch.owner => {}
        Some((s, owner)) => {
            return Err(StoreError::Invalid(format!(
                "submission {} is {s} and held by {}, not by {}",
                batch.submission_id,
                owner.as_deref().unwrap_or("nobody"),
                batch.owner
            )))
        }
        None => {
            return Err(StoreError::NotFound(format!(
                "submission {} does not exist",
                batch.submission_id
            )))
        }
    }
    let at = now();
    let mut counts = Counts {
        received: batch.records.len() as u64 + batch.rejected_records + batch.skipped_records,
        rejected: batch.rejected_records,
        skipped: batch.skipped_records,
        ..Counts::default()
    };
    for r in &batch.rejections {
        insert_rejection(conn, batch.submission_id, r).await?;
    }
    let mut current = prefetch_policies(conn, batch).await?;
    let mut pending = PendingRows {
        next_policy_id: sqlx::query_scalar::<_, i64>(
            "SELECT COALESCE(MAX(id), 0) + 1 FROM policies",
        )
        .fetch_one(&mut *conn)
        .await?,
        ..PendingRows::default()
    };
    for staged in &batch.records {
        let outcome = match &staged.record {
            CanonicalRecord::Policy(p) => {
                upsert_policy(
                    conn,
                    &mut current,
                    &mut pending,
                    batch.submission_id,
                    staged,
                    p,
                    &at,
                )
                .await?
            }
            CanonicalRecord::Claim(c) => {
                // A claim's policy may be one this batch has not written yet.
                pending.flush(conn, batch.submission_id, &at).await?;
                upsert_claim(conn, batch.submission_id, staged, c, &at).await?
            }
            CanonicalRecord::Transaction(t) => {
                apply_transaction(
                    conn,
                    &mut current,
                    &mut pending,
                    batch.submission_id,
                    staged,
                    t,
                    &at,
                )
                .await?
            }
        };
        match outcome {
            Upsert::Inserted => counts.inserted += 1,
            Upsert::Updated => counts.updated += 1,
            Upsert::Unchanged => counts.unchanged += 1,
            Upsert::Rejected(r) => {
                insert_rejection(conn, batch.submission_id, &r).await?;
                counts.rejected += 1;
            }
        }
    }
    pending.flush(conn, batch.submission_id, &at).await?;
    sqlx::query(
        "UPDATE submissions SET records = records + ?, inserted = inserted + ?, updated = updated + ?, \
         unchanged = unchanged + ?, rejected = rejected + ?, skipped = skipped + ?, committed_through = ?, \
         lease_until = ?, message_id = COALESCE(?, message_id) WHERE id = ?",
    )
    .bind(counts.received as i64)
    .bind(counts.inserted as i64)
    .bind(counts.updated as i64)
    .bind(counts.unchanged as i64)
    .bind(counts.rejected as i64)
    .bind(counts.skipped as i64)
    .bind(batch.through_record as i64)
    .bind(lease_end(batch.lease))
    .bind(&batch.message_id)
    .bind(batch.submission_id)
    .execute(&mut *conn)
    .await?;
    Ok(BatchOutcome { counts })
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn check_schema(&self) -> Result<()> {
        let target = format!(
            "SQLite database {}",
            self.read.connect_options().get_filename().display()
        );
        let mut conn = self.read.acquire().await?;
        let applied = applied_migrations(&mut conn).await?;
        schema::check_current(&MIGRATOR, &applied, &target)
    }

    async fn ensure_carrier(&self, id: &CarrierId, name: &str) -> Result<()> {
        let id = id.as_str().to_owned();
        let name = name.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO carriers (id, name, created_at) VALUES (?, ?, ?) \
                     ON CONFLICT (id) DO NOTHING",
                )
                .bind(&id)
                .bind(&name)
                .bind(now())
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn list_carriers(&self, scope: &Scope) -> Result<Vec<CarrierSummary>> {
        // Counts are of what the scope lets the caller see, never of the whole carrier.
        let mut q = QueryBuilder::<Sqlite>::new(
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
        q.push(") AS submissions FROM carriers c WHERE 1 = 1");
        push_carriers(&mut q, scope, "c.id");
        q.push(" ORDER BY c.id");
        let rows = q.build().fetch_all(&self.read).await?;
        rows.iter()
            .map(|r| {
                Ok(CarrierSummary {
                    id: r.try_get("id")?,
                    name: r.try_get("name")?,
                    policies: r.try_get("policies")?,
                    claims: r.try_get("claims")?,
                    submissions: r.try_get("submissions")?,
                    created_at: ts(&r.try_get::<String, _>("created_at")?)?,
                })
            })
            .collect()
    }

    async fn register_mapping(&self, m: NewMapping<'_>) -> Result<MappingRef> {
        let carrier = m.carrier.as_str().to_owned();
        let name = m.name.to_owned();
        let kind = match m.record {
            RecordKind::Policy => "policy",
            RecordKind::Claim => "claim",
            RecordKind::Transaction => "transaction",
        };
        let version = m.version;
        let sha = m.sha256.to_owned();
        let text = m.text.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let existing = sqlx::query(
                    "SELECT id, revision FROM mappings WHERE carrier_id = ? AND name = ? AND sha256 = ?",
                )
                .bind(&carrier)
                .bind(&name)
                .bind(&sha)
                .fetch_optional(&mut *conn)
                .await?;
                let (id, revision) = match existing {
                    Some(row) => (row.try_get("id")?, row.try_get::<i64, _>("revision")?),
                    None => {
                        let revision: i64 = sqlx::query_scalar(
                            "SELECT COALESCE(MAX(revision), 0) + 1 FROM mappings WHERE carrier_id = ? AND name = ?",
                        )
                        .bind(&carrier)
                        .bind(&name)
                        .fetch_one(&mut *conn)
                        .await?;
                        let id: i64 = sqlx::query_scalar(
                            "INSERT INTO mappings (carrier_id, name, record_kind, version, revision, sha256, spec, created_at) \
                             VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                        )
                        .bind(&carrier)
                        .bind(&name)
                        .bind(kind)
                        .bind(version as i64)
                        .bind(revision)
                        .bind(&sha)
                        .bind(&text)
                        .bind(now())
                        .fetch_one(&mut *conn)
                        .await?;
                        (id, revision)
                    }
                };
                Ok(MappingRef {
                    id,
                    name,
                    version,
                    revision: revision as u32,
                    sha256: sha,
                })
            })
        })
        .await
    }

    async fn find_mapping(&self, carrier: &CarrierId, name: &str) -> Result<Option<StoredMapping>> {
        // The revision the latest submission used: returning to an earlier text makes that
        // revision the current one again.
        let row = sqlx::query(
            "SELECT m.* FROM mappings m WHERE m.carrier_id = ? AND m.name = ? \
             ORDER BY COALESCE((SELECT MAX(s.id) FROM submissions s WHERE s.mapping_id = m.id), 0) DESC, \
             m.revision DESC LIMIT 1",
        )
        .bind(carrier.as_str())
        .bind(name)
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| stored_mapping(&r)).transpose()
    }

    async fn known_policy_numbers(
        &self,
        carrier: &CarrierId,
        numbers: &[String],
    ) -> Result<HashSet<String>> {
        let mut known = HashSet::new();
        for chunk in numbers.chunks(500) {
            let placeholders = vec!["?"; chunk.len()].join(", ");
            let sql = format!(
                "SELECT policy_number FROM policies WHERE carrier_id = ? AND policy_number IN ({placeholders})"
            );
            let mut query = sqlx::query_scalar::<_, String>(&sql).bind(carrier.as_str());
            for n in chunk {
                query = query.bind(n);
            }
            known.extend(query.fetch_all(&self.read).await?);
        }
        Ok(known)
    }

    async fn get_mapping(&self, id: i64) -> Result<StoredMapping> {
        let row = sqlx::query("SELECT * FROM mappings WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("mapping {id} does not exist")))?;
        stored_mapping(&row)
    }

    async fn record_document(&self, sha256: &str, size_bytes: u64) -> Result<()> {
        let sha = sha256.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "INSERT INTO documents (sha256, size_bytes, stored_at) VALUES (?, ?, ?) \
                     ON CONFLICT (sha256) DO NOTHING",
                )
                .bind(&sha)
                .bind(size_bytes as i64)
                .bind(now())
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    /// SQLite is one machine: documents stay in the data directory alone.
    fn shares_documents(&self) -> bool {
        false
    }

    async fn store_document_content(
        &self,
        _sha256: &str,
        _size_bytes: u64,
        _content: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
    ) -> Result<bool> {
        Ok(false)
    }

    async fn read_document_content(
        &self,
        sha256: &str,
        _sink: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> Result<u64> {
        Err(StoreError::NotFound(format!(
            "document {sha256}: a SQLite store keeps documents in the data directory only"
        )))
    }

    async fn create_submission(&self, s: NewSubmission<'_>) -> Result<i64> {
        let carrier = s.carrier.as_str().to_owned();
        let mapping_id = s.mapping_id;
        let file = s.file_name.to_owned();
        let sha = s.document_sha256.to_owned();
        let via = s.received_via.to_owned();
        let replay_of = s.replay_of;
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let id = sqlx::query_scalar(
                    "INSERT INTO submissions (carrier_id, mapping_id, file_name, document_sha256, received_via, \
                     received_at, status, replay_of) VALUES (?, ?, ?, ?, ?, ?, 'received', ?) RETURNING id",
                )
                .bind(&carrier)
                .bind(mapping_id)
                .bind(&file)
                .bind(&sha)
                .bind(&via)
                .bind(now())
                .bind(replay_of)
                .fetch_one(&mut *conn)
                .await?;
                let carrier = CarrierId::parse(&carrier).map_err(|e| StoreError::Invalid(e.to_string()))?;
                insert_event(
                    conn,
                    "submission.received",
                    &carrier,
                    id,
                    submission_event(id, carrier.as_str(), &file, None, None),
                    &now(),
                )
                .await?;
                Ok(id)
            })
        })
        .await
    }

    async fn claim_submission(
        &self,
        id: i64,
        owner: &str,
        lease: Duration,
    ) -> Result<SubmissionClaim> {
        let owner = owner.to_owned();
        let outcome = self
            .in_transaction(move |conn| {
                Box::pin(async move {
                    let at = now();
                    let row = sqlx::query(
                        "SELECT status, lease_owner, lease_until FROM submissions WHERE id = ?",
                    )
                    .bind(id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))?;
                    let status: String = row.try_get("status")?;
                    let holder: Option<String> = row.try_get("lease_owner")?;
                    let until: Option<String> = row.try_get("lease_until")?;
                    match status.as_str() {
                        "completed" | "failed" => return Ok(ClaimStep::Finished),
                        "processing" => {
                            let live = until.as_deref().is_some_and(|u| u >= at.as_str());
                            if let Some(h) = holder.filter(|h| *h != owner && live) {
                                return Ok(ClaimStep::Held(h));
                            }
                        }
                        _ => {}
                    }
                    sqlx::query(
                        "UPDATE submissions SET status = 'processing', started_at = COALESCE(started_at, ?), \
                         lease_owner = ?, lease_until = ?, attempts = attempts + 1 WHERE id = ?",
                    )
                    .bind(&at)
                    .bind(&owner)
                    .bind(lease_end(lease))
                    .bind(id)
                    .execute(&mut *conn)
                    .await?;
                    Ok(ClaimStep::Claimed)
                })
            })
            .await?;
        let submission = || async {
            self.get_submission(id, &Scope::all())
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))
        };
        Ok(match outcome {
            ClaimStep::Finished => SubmissionClaim::Finished(submission().await?),
            ClaimStep::Claimed => SubmissionClaim::Claimed(submission().await?),
            ClaimStep::Held(owner) => SubmissionClaim::Held { owner },
        })
    }

    async fn earlier_unfinished_submission(&self, id: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT e.id FROM submissions s JOIN submissions e ON e.carrier_id = s.carrier_id \
             WHERE s.id = ? AND e.id < s.id AND e.status IN ('received', 'processing') \
             ORDER BY e.id LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn extend_submission_lease(&self, id: i64, owner: &str, lease: Duration) -> Result<bool> {
        let owner = owner.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE submissions SET lease_until = ? \
                     WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                )
                .bind(lease_end(lease))
                .bind(id)
                .bind(&owner)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn requeue_submission(&self, id: i64) -> Result<Submission> {
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE submissions SET status = 'received', error = NULL, finished_at = NULL, \
                     attempts = 0, lease_owner = NULL, lease_until = NULL WHERE id = ? AND status = 'failed'",
                )
                .bind(id)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Invalid(format!(
                        "submission {id} cannot be queued again: it does not exist or has not failed"
                    )));
                }
                Ok(())
            })
        })
        .await?;
        self.get_submission(id, &Scope::all())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))
    }

    async fn finish_submission(
        &self,
        id: i64,
        owner: &str,
        error: Option<&str>,
    ) -> Result<Submission> {
        let error = error.map(str::to_owned);
        let owner = owner.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE submissions SET status = ?, error = ?, finished_at = ?, lease_owner = NULL, \
                     lease_until = NULL WHERE id = ? AND status = 'processing' AND lease_owner = ?",
                )
                .bind(if error.is_some() { "failed" } else { "completed" })
                .bind(&error)
                .bind(now())
                .bind(id)
                .bind(&owner)
                .execute(&mut *conn)
                .await?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Invalid(format!(
                        "submission {id} is not being processed by {owner}"
                    )));
                }
                let row = sqlx::query("SELECT carrier_id, file_name FROM submissions WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut *conn)
                    .await?;
                let carrier = CarrierId::parse(&row.try_get::<String, _>("carrier_id")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let file: String = row.try_get("file_name")?;
                let (kind, status) = match &error {
                    None => ("submission.completed", "completed"),
                    Some(_) => ("submission.failed", "failed"),
                };
                insert_event(
                    conn,
                    kind,
                    &carrier,
                    id,
                    submission_event(id, carrier.as_str(), &file, Some(status), error.as_deref()),
                    &now(),
                )
                .await?;
                Ok(())
            })
        })
        .await?;
        self.get_submission(id, &Scope::all())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("submission {id} does not exist")))
    }

    async fn get_submission(&self, id: i64, scope: &Scope) -> Result<Option<Submission>> {
        let mut q = QueryBuilder::<Sqlite>::new(SUBMISSION_SELECT);
        q.push(" WHERE s.id = ").push_bind(id);
        push_carrier_wide(&mut q, scope, "s.carrier_id");
        let row = q.build().fetch_optional(&self.read).await?;
        row.map(|r| Self::submission_from_row(&r)).transpose()
    }

    async fn list_submissions(
        &self,
        scope: &Scope,
        filter: &SubmissionFilter,
    ) -> Result<Page<Submission>> {
        let mut q = QueryBuilder::<Sqlite>::new(SUBMISSION_SELECT);
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
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(Self::submission_from_row).collect()
    }

    async fn commit_batch(&self, batch: Batch) -> Result<BatchOutcome> {
        self.in_transaction(move |conn| Box::pin(async move { apply_batch(conn, &batch).await }))
            .await
    }

    async fn list_rejections(
        &self,
        submission: i64,
        scope: &Scope,
        page: &PageRequest,
    ) -> Result<Page<Rejection>> {
        let mut q = QueryBuilder::<Sqlite>::new(
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
            // The version of each policy current then, with the values it had then. The as-of
            // index filters without reading the records (the planner would walk the primary
            // key and read every row).
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT v.policy_id, v.version, v.record, v.valid_from \
                 FROM policy_versions v INDEXED BY policy_versions_as_of WHERE v.valid_from <= ",
            );
            let at = instant(as_of);
            q.push_bind(at.clone())
                .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
                .push_bind(at)
                .push(")");
            push_carriers(&mut q, scope, "v.carrier_id");
            push_books(&mut q, scope, "json_extract(v.record, '$.producer')");
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
                q.push(
                    " AND EXISTS (SELECT 1 FROM policy_extras e WHERE e.policy_id = v.policy_id \
                     AND e.version = v.version AND e.key = ",
                )
                .push_bind(key.clone())
                .push(" AND e.value = ")
                .push_bind(value.clone())
                .push(")");
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
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM policies WHERE 1 = 1");
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
        // Through the extras rows' (key, value) index, to the policies whose current version
        // has them.
        for (key, value) in &filter.extras {
            q.push(
                " AND id IN (SELECT e.policy_id FROM policy_extras e JOIN policy_versions w \
                 ON w.policy_id = e.policy_id AND w.version = e.version \
                 WHERE w.valid_to IS NULL AND e.key = ",
            )
            .push_bind(key.clone())
            .push(" AND e.value = ")
            .push_bind(value.clone())
            .push(")");
        }
        let page = self
            .keyset_page(q, "id", &filter.page, Self::policy_summary_from_row, |p| {
                p.id
            })
            .await?;
        self.with_extras(page, filter.include_extras).await
    }

    async fn get_policy(&self, id: i64, scope: &Scope) -> Result<Option<PolicyDetail>> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT p.*, v.record, v.submission_id, v.record_number, v.source_line, \
             (SELECT COUNT(*) FROM policy_versions x WHERE x.policy_id = p.id) AS versions \
             FROM policies p JOIN policy_versions v ON v.policy_id = p.id AND v.version = p.version \
             WHERE p.id = ",
        );
        q.push_bind(id);
        push_carriers(&mut q, scope, "p.carrier_id");
        push_books(&mut q, scope, "p.producer");
        // The claims below are this policy's: in scope when it is.
        let Some(row) = q.build().fetch_optional(&self.read).await? else {
            return Ok(None);
        };
        let summary = Self::policy_summary_from_row(&row)?;
        let record: Policy = serde_json::from_str(&row.try_get::<String, _>("record")?)
            .map_err(|e| StoreError::Corrupt(format!("policy {id}: {e}")))?;
        let claims = sqlx::query(&format!(
            "{CLAIM_SELECT} WHERE c.policy_id = ? ORDER BY c.id"
        ))
        .bind(id)
        .fetch_all(&self.read)
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
            created_at: ts(&row.try_get::<String, _>("created_at")?)?,
        }))
    }

    async fn get_policy_as_of(
        &self,
        id: i64,
        as_of: DateTime<Utc>,
        scope: &Scope,
    ) -> Result<Option<PolicyDetail>> {
        let at = instant(as_of);
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT v.policy_id, v.version, v.record, v.valid_from, v.submission_id, \
             v.record_number, v.source_line, p.created_at \
             FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
             WHERE v.policy_id = ",
        );
        q.push_bind(id)
            .push(" AND v.valid_from <= ")
            .push_bind(at.clone())
            .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
            .push_bind(at.clone())
            .push(")");
        // In scope as it was then: the carrier never changes, the book may have.
        push_carriers(&mut q, scope, "v.carrier_id");
        push_books(&mut q, scope, "json_extract(v.record, '$.producer')");
        q.push(" ORDER BY v.valid_from DESC LIMIT 1");
        let Some(row) = q.build().fetch_optional(&self.read).await? else {
            return Ok(None);
        };
        let version: i64 = row.try_get("version")?;
        let record = policy_record(id, version, &row.try_get::<String, _>("record")?)?;
        let valid_from = ts(&row.try_get::<String, _>("valid_from")?)?;
        let summary = PolicySummary::of_version(id, &record, version, valid_from);
        let claims = sqlx::query(&format!(
            "{CLAIM_VERSION_SELECT} WHERE v.policy_id = ?1 AND {} ORDER BY v.claim_id",
            current_at(2)
        ))
        .bind(id)
        .bind(&at)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(claim_version_summary)
        .collect::<Result<Vec<_>>>()?;
        Ok(Some(PolicyDetail {
            summary: PolicySummary {
                extras: Some(record.extras.clone()),
                ..summary
            },
            insured: record.insured,
            coverages: record.coverages,
            claims,
            // Versions are numbered from 1: the current one's number is how many there were.
            versions: version,
            lineage: Lineage {
                submission_id: row.try_get("submission_id")?,
                record_number: row.try_get::<i64, _>("record_number")? as u64,
                line: row.try_get::<i64, _>("source_line")? as u64,
            },
            created_at: ts(&row.try_get::<String, _>("created_at")?)?,
        }))
    }

    async fn policy_stamp(&self, id: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT p.version || ':' || p.updated_at || ':' || \
             (SELECT COUNT(*) || ':' || COALESCE(SUM(c.version), 0) || ':' || \
             COALESCE(MAX(c.updated_at), '') FROM claims c WHERE c.policy_id = p.id) \
             FROM policies p WHERE p.id = ?",
        )
        .bind(id)
        .fetch_optional(&self.read)
        .await?)
    }

    async fn list_policy_versions(&self, id: i64, scope: &Scope) -> Result<Vec<PolicyVersion>> {
        if !scope.is_unrestricted() {
            let mut q = QueryBuilder::<Sqlite>::new("SELECT id FROM policies WHERE id = ");
            q.push_bind(id);
            push_carriers(&mut q, scope, "carrier_id");
            push_books(&mut q, scope, "producer");
            if q.build().fetch_optional(&self.read).await?.is_none() {
                return Ok(Vec::new());
            }
        }
        let rows =
            sqlx::query("SELECT * FROM policy_versions WHERE policy_id = ? ORDER BY version")
                .bind(id)
                .fetch_all(&self.read)
                .await?;
        let mut movements: HashMap<i64, Vec<PremiumMovement>> = HashMap::new();
        for r in sqlx::query(
            "SELECT policy_version, kind, amount, currency, effective_date FROM premium_transactions \
             WHERE policy_id = ? ORDER BY id",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?
        {
            let amount = money(&r.try_get::<String, _>("amount")?, &r.try_get::<String, _>("currency")?)?;
            let date: String = r.try_get("effective_date")?;
            movements
                .entry(r.try_get("policy_version")?)
                .or_default()
                .push(PremiumMovement {
                    kind: r.try_get("kind")?,
                    amount,
                    effective_date: NaiveDate::parse_from_str(&date, "%Y-%m-%d")
                        .map_err(|e| StoreError::Corrupt(format!("date '{date}': {e}")))?,
                });
        }
        let mut transactions: HashMap<i64, serde_json::Value> = HashMap::new();
        for r in sqlx::query(
            "SELECT policy_version, record FROM applied_transactions WHERE policy_id = ?",
        )
        .bind(id)
        .fetch_all(&self.read)
        .await?
        {
            transactions.insert(
                r.try_get("policy_version")?,
                serde_json::from_str(&r.try_get::<String, _>("record")?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            );
        }
        rows.iter()
            .map(|r| {
                let version: i64 = r.try_get("version")?;
                Ok(PolicyVersion {
                    version,
                    content_hash: r.try_get("content_hash")?,
                    record: serde_json::from_str(&r.try_get::<String, _>("record")?)
                        .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                    lineage: Lineage {
                        submission_id: r.try_get("submission_id")?,
                        record_number: r.try_get::<i64, _>("record_number")? as u64,
                        line: r.try_get::<i64, _>("source_line")? as u64,
                    },
                    valid_from: ts(&r.try_get::<String, _>("valid_from")?)?,
                    valid_to: opt_ts(r.try_get("valid_to")?)?,
                    premium_transactions: movements.remove(&version).unwrap_or_default(),
                    transaction: transactions.remove(&version),
                })
            })
            .collect()
    }

    async fn list_claims(&self, scope: &Scope, filter: &ClaimFilter) -> Result<Page<ClaimSummary>> {
        if let Some(as_of) = filter.as_of {
            let mut q = QueryBuilder::<Sqlite>::new(if filter.policy_id.is_some() {
                POLICY_CLAIM_VERSION_LIST
            } else {
                CLAIM_VERSION_LIST
            });
            let at = instant(as_of);
            q.push(" WHERE v.valid_from <= ")
                .push_bind(at.clone())
                .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
                .push_bind(at.clone())
                .push(")");
            push_carriers(&mut q, scope, "v.carrier_id");
            if let Some(books) = scope.book_list() {
                // The claim's policy as it was then is in one of the books.
                q.push(
                    " AND EXISTS (SELECT 1 FROM policy_versions w WHERE w.policy_id = v.policy_id \
                     AND w.valid_from <= ",
                )
                .push_bind(at.clone())
                .push(" AND (w.valid_to IS NULL OR w.valid_to > ")
                .push_bind(at)
                .push(")");
                push_in(&mut q, "json_extract(w.record, '$.producer')", books);
                q.push(")");
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
                q.push(
                    " AND EXISTS (SELECT 1 FROM claim_extras e WHERE e.claim_id = v.claim_id \
                     AND e.version = v.version AND e.key = ",
                )
                .push_bind(key.clone())
                .push(" AND e.value = ")
                .push_bind(value.clone())
                .push(")");
            }
            let page = self
                .keyset_page(q, "v.claim_id", &filter.page, claim_version_summary, |c| {
                    c.id
                })
                .await?;
            return self.with_claim_extras(page, filter.include_extras).await;
        }
        let mut q = QueryBuilder::<Sqlite>::new(CLAIM_SELECT);
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
                " AND c.id IN (SELECT e.claim_id FROM claim_extras e JOIN claim_versions w \
                 ON w.claim_id = e.claim_id AND w.version = e.version \
                 WHERE w.valid_to IS NULL AND e.key = ",
            )
            .push_bind(key.clone())
            .push(" AND e.value = ")
            .push_bind(value.clone())
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
            "SELECT {} FROM outbox o WHERE o.published_at IS NULL ORDER BY o.id LIMIT ?",
            events::EVENT_COLUMNS
        ))
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(events::event_from_row).collect()
    }

    async fn published_events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>> {
        let rows = sqlx::query(&format!(
            "SELECT {} FROM outbox o WHERE o.published_seq > ? \
             ORDER BY o.published_seq LIMIT ?",
            events::EVENT_COLUMNS
        ))
        .bind(after_seq)
        .bind(limit as i64)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(events::event_from_row).collect()
    }

    async fn last_event_id(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(MAX(id), 0) FROM outbox")
                .fetch_one(&self.read)
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
        // One read transaction, so the four reads see the same commit.
        let mut conn = self.read.acquire().await?;
        let mut tx = conn.begin().await?;
        let mut out = WarehouseCarrier::default();
        let sql = format!(
            "SELECT v.policy_id, v.version, v.record, v.submission_id, v.valid_from, v.valid_to \
             FROM policy_versions v JOIN policies p ON p.id = v.policy_id \
             WHERE p.carrier_id = ? AND ({}) ORDER BY v.policy_id, v.version",
            policy_cond.sql
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &policy_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            let policy_id: i64 = r.try_get("policy_id")?;
            let version: i64 = r.try_get("version")?;
            out.policy_versions.push(WarehousePolicyVersion {
                policy_id,
                version,
                record: policy_record(policy_id, version, &r.try_get::<String, _>("record")?)?,
                submission_id: r.try_get("submission_id")?,
                valid_from: ts(&r.try_get::<String, _>("valid_from")?)?,
                valid_to: opt_ts(r.try_get("valid_to")?)?,
            });
        }
        let sql = format!(
            "SELECT v.claim_id, v.version, v.record, v.submission_id, v.valid_from, v.valid_to, \
                    COALESCE(v.policy_id, c.policy_id) AS policy_id \
             FROM claim_versions v JOIN claims c ON c.id = v.claim_id \
             WHERE c.carrier_id = ? AND ({}) ORDER BY v.claim_id, v.version",
            claim_cond.sql
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &claim_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            let claim_id: i64 = r.try_get("claim_id")?;
            let version: i64 = r.try_get("version")?;
            let record: Claim = serde_json::from_str(&r.try_get::<String, _>("record")?)
                .map_err(|e| StoreError::Corrupt(format!("claim {claim_id} v{version}: {e}")))?;
            out.claim_versions.push(WarehouseClaimVersion {
                claim_id,
                version,
                policy_id: r.try_get("policy_id")?,
                record,
                submission_id: r.try_get("submission_id")?,
                valid_from: ts(&r.try_get::<String, _>("valid_from")?)?,
                valid_to: opt_ts(r.try_get("valid_to")?)?,
            });
        }
        let sql = format!(
            "SELECT t.id, t.policy_id, t.policy_version, t.kind, t.amount, t.currency, \
                    t.effective_date, t.submission_id, t.recorded_at \
             FROM premium_transactions t JOIN policies p ON p.id = t.policy_id \
             WHERE p.carrier_id = ? AND ({}) ORDER BY t.id",
            premium_cond.sql
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &premium_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            let amount: String = r.try_get("amount")?;
            out.premium_transactions.push(WarehousePremiumTransaction {
                id: r.try_get("id")?,
                policy_id: r.try_get("policy_id")?,
                policy_version: r.try_get("policy_version")?,
                kind: r.try_get("kind")?,
                amount: Decimal::from_str(&amount)
                    .map_err(|e| StoreError::Corrupt(format!("amount '{amount}': {e}")))?,
                currency: r.try_get("currency")?,
                effective_date: date(&r.try_get::<String, _>("effective_date")?)?,
                submission_id: r.try_get("submission_id")?,
                recorded_at: ts(&r.try_get::<String, _>("recorded_at")?)?,
            });
        }
        let sql = format!(
            "SELECT t.id, t.claim_id, t.claim_version, t.kind, t.amount, t.currency, \
                    t.submission_id, t.recorded_at \
             FROM claim_transactions t JOIN claims c ON c.id = t.claim_id \
             WHERE c.carrier_id = ? AND ({}) ORDER BY t.id",
            claim_tx_cond.sql
        );
        let mut q = sqlx::query(&sql).bind(carrier);
        for param in &claim_tx_cond.params {
            q = q.bind(param);
        }
        let rows = q.fetch_all(&mut *tx).await?;
        for r in &rows {
            let amount: String = r.try_get("amount")?;
            out.claim_transactions.push(WarehouseClaimTransaction {
                id: r.try_get("id")?,
                claim_id: r.try_get("claim_id")?,
                claim_version: r.try_get("claim_version")?,
                kind: r.try_get("kind")?,
                amount: Decimal::from_str(&amount)
                    .map_err(|e| StoreError::Corrupt(format!("amount '{amount}': {e}")))?,
                currency: r.try_get("currency")?,
                submission_id: r.try_get("submission_id")?,
                recorded_at: ts(&r.try_get::<String, _>("recorded_at")?)?,
            });
        }
        tx.rollback().await?;
        Ok(out)
    }

    async fn outbox_backlog(&self) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox WHERE published_at IS NULL",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(Backlog {
            ready: row.try_get::<i64, _>("n")? as u64,
            waiting: 0,
            oldest: row
                .try_get::<Option<String>, _>("oldest")?
                .map(|t| ts(&t))
                .transpose()?,
        })
    }

    async fn webhook_backlog(&self) -> Result<Backlog> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(next_attempt_at <= ?1), 0) AS ready, \
             COALESCE(SUM(next_attempt_at > ?1), 0) AS waiting, \
             MIN(CASE WHEN next_attempt_at <= ?1 THEN next_attempt_at END) AS oldest \
             FROM webhook_deliveries WHERE status = 'pending'",
        )
        .bind(now())
        .fetch_one(&self.read)
        .await?;
        Ok(Backlog {
            ready: row.try_get::<i64, _>("ready")? as u64,
            waiting: row.try_get::<i64, _>("waiting")? as u64,
            oldest: row
                .try_get::<Option<String>, _>("oldest")?
                .map(|t| ts(&t))
                .transpose()?,
        })
    }

    fn pool_use(&self) -> Vec<PoolUse> {
        let size = self.read.size();
        let idle = self.read.num_idle() as u32;
        let writing = u32::from(self.writer.try_lock().is_err());
        vec![
            PoolUse {
                pool: "read",
                in_use: size.saturating_sub(idle),
                idle,
                max: self.read.options().get_max_connections(),
            },
            PoolUse {
                pool: "write",
                in_use: writing,
                idle: 1 - writing,
                max: 1,
            },
        ]
    }

    async fn mark_events_published(&self, ids: &[i64]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let ids = ids.to_vec();
        self.in_transaction(move |conn| {
            Box::pin(async move { events::mark_published(conn, &ids).await })
        })
        .await
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
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "INSERT INTO leases (name, owner, until) VALUES (?, ?, ?) \
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, until = excluded.until \
                     WHERE leases.owner = excluded.owner OR leases.until < ?",
                )
                .bind(&name)
                .bind(&owner)
                .bind(lease_end(ttl))
                .bind(now())
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn take_fenced_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: Duration,
    ) -> Result<Option<FencedLease>> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO fenced_leases (name, owner, token, until) VALUES (?, ?, 1, ?) \
                     ON CONFLICT (name) DO UPDATE SET \
                        token = CASE WHEN fenced_leases.owner = excluded.owner \
                                THEN fenced_leases.token ELSE fenced_leases.token + 1 END, \
                        owner = excluded.owner, until = excluded.until \
                     WHERE fenced_leases.owner = excluded.owner OR fenced_leases.until < ? \
                     RETURNING token, until",
                )
                .bind(&name)
                .bind(&owner)
                .bind(lease_end(ttl))
                .bind(now())
                .fetch_optional(&mut *conn)
                .await?;
                row.map(|r| {
                    Ok(FencedLease {
                        token: r.try_get("token")?,
                        until: ts(&r.try_get::<String, _>("until")?)?,
                    })
                })
                .transpose()
            })
        })
        .await
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
        let scope = request.scope.to_owned();
        let key = request.key.to_owned();
        let fingerprint = request.fingerprint.to_owned();
        let token = request.token.to_owned();
        let (ttl, lock) = (request.ttl, request.lock);
        // The writer's `BEGIN IMMEDIATE` makes the read and the write one step: no other
        // connection, in this process or another, writes in between.
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let at = now();
                let row = sqlx::query(
                    "SELECT fingerprint, status, headers, body, locked_until, expires_at \
                     FROM idempotency_keys WHERE scope = ? AND key = ?",
                )
                .bind(&scope)
                .bind(&key)
                .fetch_optional(&mut *conn)
                .await?;
                if let Some(row) = row {
                    let status: Option<i64> = row.try_get("status")?;
                    let locked_until: Option<String> = row.try_get("locked_until")?;
                    let expired = row.try_get::<String, _>("expires_at")? <= at;
                    let abandoned =
                        status.is_none() && locked_until.is_none_or(|until| until <= at);
                    if !expired && !abandoned {
                        if row.try_get::<String, _>("fingerprint")? != fingerprint {
                            return Ok(IdempotencyClaim::Mismatch);
                        }
                        let Some(status) = status else {
                            return Ok(IdempotencyClaim::InProgress);
                        };
                        let headers: String = row.try_get("headers")?;
                        return Ok(IdempotencyClaim::Completed(IdempotentResponse {
                            status: u16::try_from(status).map_err(|_| {
                                StoreError::Corrupt(format!("idempotent response status {status}"))
                            })?,
                            headers: serde_json::from_str(&headers).map_err(|e| {
                                StoreError::Corrupt(format!("idempotent response headers: {e}"))
                            })?,
                            body: row.try_get("body")?,
                        }));
                    }
                }
                sqlx::query(
                    "INSERT INTO idempotency_keys (scope, key, fingerprint, token, locked_until, \
                     created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) \
                     ON CONFLICT (scope, key) DO UPDATE SET fingerprint = excluded.fingerprint, \
                     token = excluded.token, locked_until = excluded.locked_until, status = NULL, \
                     headers = NULL, body = NULL, created_at = excluded.created_at, \
                     expires_at = excluded.expires_at",
                )
                .bind(&scope)
                .bind(&key)
                .bind(&fingerprint)
                .bind(&token)
                .bind(from_now(lock))
                .bind(&at)
                .bind(from_now(ttl))
                .execute(&mut *conn)
                .await?;
                Ok(IdempotencyClaim::Acquired)
            })
        })
        .await
    }

    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        token: &str,
        response: &IdempotentResponse,
    ) -> Result<bool> {
        let (scope, key, token) = (scope.to_owned(), key.to_owned(), token.to_owned());
        let headers = serde_json::to_string(&response.headers)
            .map_err(|e| StoreError::Invalid(format!("response headers: {e}")))?;
        let status = i64::from(response.status);
        let body = response.body.clone();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query(
                    "UPDATE idempotency_keys SET status = ?, headers = ?, body = ?, token = NULL, \
                     locked_until = NULL WHERE scope = ? AND key = ? AND token = ?",
                )
                .bind(status)
                .bind(&headers)
                .bind(&body)
                .bind(&scope)
                .bind(&key)
                .bind(&token)
                .execute(&mut *conn)
                .await?;
                Ok(done.rows_affected() == 1)
            })
        })
        .await
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str, token: &str) -> Result<()> {
        let (scope, key, token) = (scope.to_owned(), key.to_owned(), token.to_owned());
        self.in_transaction(move |conn| {
            Box::pin(async move {
                sqlx::query(
                    "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND token = ? \
                     AND status IS NULL",
                )
                .bind(&scope)
                .bind(&key)
                .bind(&token)
                .execute(&mut *conn)
                .await?;
                Ok(())
            })
        })
        .await
    }

    async fn purge_idempotency_keys(&self) -> Result<u64> {
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM idempotency_keys WHERE expires_at <= ?")
                    .bind(now())
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }

    async fn create_api_key(&self, key: &crate::NewApiKey) -> Result<crate::ApiKey> {
        key.check()?;
        let scope = crate::access::to_stored_json(&key.scope, "the key's scope")?;
        let limits = crate::access::to_stored_json(&key.rate_limits, "the key's rate limits")?;
        let key = key.clone();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(
                    "INSERT INTO api_keys (id, secret_sha256, role, scope, description, \
                     created_at, created_by, expires_at, rate_limits) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING RETURNING *",
                )
                .bind(&key.id)
                .bind(&key.secret_sha256)
                .bind(key.role.as_str())
                .bind(&scope)
                .bind(&key.description)
                .bind(now())
                .bind(&key.created_by)
                .bind(key.expires_at.map(instant))
                .bind(&limits)
                .fetch_optional(&mut *conn)
                .await?;
                match row {
                    Some(row) => api_key_from_row(&row),
                    None => Err(StoreError::Invalid(format!(
                        "an API key with id '{}' exists already",
                        key.id
                    ))),
                }
            })
        })
        .await
    }

    async fn get_api_key(&self, id: &str) -> Result<Option<crate::ApiKey>> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(api_key_from_row).transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<crate::ApiKey>> {
        let rows = sqlx::query("SELECT * FROM api_keys ORDER BY created_at, id")
            .fetch_all(&self.read)
            .await?;
        rows.iter().map(api_key_from_row).collect()
    }

    async fn revoke_api_key(&self, id: &str) -> Result<Option<crate::ApiKey>> {
        let id = id.to_owned();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let row = sqlx::query(
                    "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ? \
                     RETURNING *",
                )
                .bind(now())
                .bind(&id)
                .fetch_optional(&mut *conn)
                .await?;
                row.as_ref().map(api_key_from_row).transpose()
            })
        })
        .await
    }

    async fn record_audit(&self, entry: &crate::NewAuditEntry) -> Result<i64> {
        let entry = entry.clone();
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO audit_log (at, actor, role, action, target, status, client, \
                     request_id, detail) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                )
                .bind(now())
                .bind(&entry.actor)
                .bind(&entry.role)
                .bind(&entry.action)
                .bind(&entry.target)
                .bind(i64::from(entry.status))
                .bind(&entry.client)
                .bind(&entry.request_id)
                .bind(&entry.detail)
                .fetch_one(&mut *conn)
                .await?;
                Ok(id)
            })
        })
        .await
    }

    async fn list_audit(&self, filter: &crate::AuditFilter) -> Result<Page<crate::AuditEntry>> {
        let limit = filter.page_limit();
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM audit_log WHERE 1 = 1");
        if let Some(actor) = &filter.actor {
            q.push(" AND actor = ").push_bind(actor.clone());
        }
        if filter.denied_only {
            q.push(" AND status IN (");
            let mut statuses = q.separated(", ");
            for status in crate::DENIED_STATUSES {
                statuses.push_bind(i64::from(status));
            }
            q.push(")");
        }
        if let Some(before) = filter.before_id {
            q.push(" AND id < ").push_bind(before);
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(&self.read).await?;
        let items = rows
            .iter()
            .map(audit_entry_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page_of(items, limit, |e| e.id))
    }

    async fn purge_audit(&self, older_than: DateTime<Utc>) -> Result<u64> {
        self.in_transaction(move |conn| {
            Box::pin(async move {
                let done = sqlx::query("DELETE FROM audit_log WHERE at < ?")
                    .bind(instant(older_than))
                    .execute(&mut *conn)
                    .await?;
                Ok(done.rows_affected())
            })
        })
        .await
    }
}

/// The instant `span` from now as the database stores it; spans past the year 9999 end there.
fn from_now(span: Duration) -> String {
    let end = chrono::Duration::from_std(span)
        .ok()
        .and_then(|d| Utc::now().checked_add_signed(d))
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
        .min("9999-12-31T23:59:59Z".parse().expect("a valid instant"));
    instant(end)
}

impl SqliteStore {
    /// The portfolio over the current versions (`policies`), or over the versions current at
    /// `as_of` (read from the `policy_versions_as_of` index alone).
    async fn sum_portfolio(
        &self,
        as_of: Option<DateTime<Utc>>,
        scope: &Scope,
    ) -> Result<Vec<PortfolioLine>> {
        // Premium is summed in Rust: SQLite's SUM would go through floating point.
        let mut lines: BTreeMap<(String, String, String), PortfolioLine> = BTreeMap::new();
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT v.carrier_id, v.line_of_business, v.currency, v.status, v.premium FROM ",
        );
        match as_of {
            None => {
                q.push("policies v WHERE 1 = 1");
                push_books(&mut q, scope, "v.producer");
            }
            Some(t) => {
                let at = instant(t);
                q.push("policy_versions v WHERE v.valid_from <= ")
                    .push_bind(at.clone())
                    .push(" AND (v.valid_to IS NULL OR v.valid_to > ")
                    .push_bind(at)
                    .push(")");
                push_books(&mut q, scope, "json_extract(v.record, '$.producer')");
            }
        }
        push_carriers(&mut q, scope, "v.carrier_id");
        let query = q.build();
        let mut rows = query.fetch(&self.read);
        while let Some(row) = rows.try_next().await? {
            let carrier: String = row.try_get("carrier_id")?;
            let lob: String = row.try_get("line_of_business")?;
            let currency: String = row.try_get("currency")?;
            let status: String = row.try_get("status")?;
            let premium: String = row.try_get("premium")?;
            let premium = Decimal::from_str(&premium)
                .map_err(|e| StoreError::Corrupt(format!("premium '{premium}': {e}")))?;
            let line = lines
                .entry((carrier.clone(), lob.clone(), currency.clone()))
                .or_insert_with(|| PortfolioLine {
                    carrier,
                    line_of_business: lob,
                    currency,
                    policies: 0,
                    in_force: 0,
                    premium: Decimal::ZERO,
                });
            line.policies += 1;
            if status == PolicyStatus::Active.code() {
                line.in_force += 1;
            }
            line.premium += premium;
        }
        Ok(lines.into_values().collect())
    }
}

fn stored_mapping(r: &SqliteRow) -> Result<StoredMapping> {
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

fn rejection_from_row(r: &SqliteRow) -> Result<Rejection> {
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

impl SqliteStore {
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
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {id_column} AS id, json_extract(record, '$.extras') AS extras FROM {table} WHERE "
        ));
        let mut or = q.separated(" OR ");
        for (id, version) in keys {
            or.push(format!("({id_column} = "))
                .push_bind_unseparated(*id)
                .push_unseparated(" AND version = ")
                .push_bind_unseparated(*version)
                .push_unseparated(")");
        }
        for row in q.build().fetch_all(&self.read).await? {
            let text: Option<String> = row.try_get("extras")?;
            let extras = match text {
                Some(t) => serde_json::from_str(&t)
                    .map_err(|e| StoreError::Corrupt(format!("extras: {e}")))?,
                None => BTreeMap::new(),
            };
            found.insert(row.try_get::<i64, _>("id")?, extras);
        }
        Ok(found)
    }
}

fn api_key_from_row(r: &SqliteRow) -> Result<crate::ApiKey> {
    Ok(crate::ApiKey {
        id: r.try_get("id")?,
        secret_sha256: r.try_get("secret_sha256")?,
        role: crate::access::stored_role(&r.try_get::<String, _>("role")?)?,
        scope: crate::access::from_stored_json(&r.try_get::<String, _>("scope")?, "API key scope")?,
        description: r.try_get("description")?,
        created_at: ts(&r.try_get::<String, _>("created_at")?)?,
        created_by: r.try_get("created_by")?,
        expires_at: opt_ts(r.try_get("expires_at")?)?,
        revoked_at: opt_ts(r.try_get("revoked_at")?)?,
        rate_limits: crate::access::from_stored_json(
            &r.try_get::<String, _>("rate_limits")?,
            "API key rate limits",
        )?,
    })
}

fn audit_entry_from_row(r: &SqliteRow) -> Result<crate::AuditEntry> {
    Ok(crate::AuditEntry {
        id: r.try_get("id")?,
        at: ts(&r.try_get::<String, _>("at")?)?,
        entry: crate::NewAuditEntry {
            actor: r.try_get("actor")?,
            role: r.try_get("role")?,
            action: r.try_get("action")?,
            target: r.try_get("target")?,
            status: crate::access::stored_status(r.try_get("status")?)?,
            client: r.try_get("client")?,
            request_id: r.try_get("request_id")?,
            detail: r.try_get("detail")?,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{ConnectOptions, Connection};

    /// A write whose caller is dropped inside its transaction (a request past its time limit)
    /// releases the file's write lock at once, not at the store's next write, and leaves
    /// nothing of its work behind.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_write_dropped_midway_releases_the_write_lock_at_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hub.db");
        let store = SqliteStore::open_with(&path, true).await.unwrap();
        let dropped = tokio::time::timeout(
            Duration::from_millis(200),
            store.in_transaction(|conn| {
                Box::pin(async move {
                    sqlx::query("CREATE TABLE scratch (x INTEGER)")
                        .execute(&mut *conn)
                        .await?;
                    std::future::pending::<()>().await;
                    Ok(())
                })
            }),
        )
        .await;
        assert!(dropped.is_err(), "the write was meant to be cut off");

        // Another process's writer, willing to wait a little but not for ever.
        let mut other = SqliteConnectOptions::new()
            .filename(&path)
            .busy_timeout(Duration::from_secs(3))
            .connect()
            .await
            .unwrap();
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut other)
            .await
            .expect("the dropped write still holds the write lock");
        let scratch: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM sqlite_master WHERE name = 'scratch'")
                .fetch_one(&mut other)
                .await
                .unwrap();
        assert_eq!(scratch, 0, "the dropped write's work was kept");
        sqlx::query("ROLLBACK").execute(&mut other).await.unwrap();
        other.close().await.unwrap();

        // The store writes on.
        let made: i64 = store
            .in_transaction(|conn| {
                Box::pin(async move {
                    sqlx::query("CREATE TABLE scratch (x INTEGER)")
                        .execute(&mut *conn)
                        .await?;
                    Ok(sqlx::query_scalar("SELECT COUNT(*) FROM scratch")
                        .fetch_one(&mut *conn)
                        .await?)
                })
            })
            .await
            .unwrap();
        assert_eq!(made, 0);
    }
}
