//! Where canonical data lives: the [`Store`] trait and its two backends, the embedded
//! [`SqliteStore`] and the server [`PgStore`] (PostgreSQL), with the same behaviour: one
//! conformance suite (`tests/conformance.rs`) runs against both. [`open_store`] picks the
//! backend from a URL or path.
//!
//! Architecture invariants:
//! - A batch of records is committed in one transaction together with its rejections, its
//!   change events (outbox) and the submission's progress: all in or all out.
//! - Upserts are by natural key (carrier + policy number, carrier + claim number). A record
//!   whose content hash equals the current version's writes nothing; a changed one becomes a
//!   new version and the previous one is closed (`valid_to`), never overwritten.
//! - Every version points to the submission and record position it came from (lineage).
//! - A policy's or claim's versions cover consecutive, non-overlapping intervals
//!   `[valid_from, valid_to)`: at any instant at most one version is current, which is what
//!   as-of reads return. Each version also carries, in columns, the values as-of reads
//!   filter and sum on (carrier, line, status, premium; a claim's policy).

mod access;
mod cursor;
mod idempotency;
pub mod live;
mod postgres;
mod schema;
mod sqlite;
pub mod testing;
pub mod trace;
mod types;
mod warehouse;
mod webhooks;

pub use access::*;
pub use cursor::Cursor;
pub use idempotency::{IdempotencyClaim, IdempotencyRequest, IdempotentResponse};
pub use postgres::PgStore;
pub use schema::MigrationInfo;
pub use sqlite::{release_claims, ReleasedClaims, SqliteStore};
pub use types::*;
pub use webhooks::*;

use async_trait::async_trait;
use carrierhub_model::CarrierId;
use chrono::{DateTime, Utc};
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    // The cause is displayed, not chained as a source: the message is complete on its own.
    #[error("cannot connect to {target}: {error}")]
    Connect {
        /// The database, with any password masked.
        target: String,
        error: sqlx::Error,
    },
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The database's schema is not the one this build expects (behind, edited or newer).
    #[error("{0}")]
    Schema(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Reading or writing a document's bytes (the file they come from or go to).
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The size of the rows a document's content is stored in (the last one is shorter): a file
/// of a gigabyte is a thousand round trips, and a chunk in flight costs little memory.
pub const DOCUMENT_CHUNK_BYTES: usize = 1024 * 1024;

/// How a claim's transaction ended; the submission is read after it commits.
pub(crate) enum ClaimStep {
    Finished,
    Claimed,
    Held(String),
}

/// The payload of a submission's events (`submission.received`, `.completed`, `.failed`).
pub(crate) fn submission_event(
    id: i64,
    carrier: &str,
    file_name: &str,
    status: Option<&str>,
    error: Option<&str>,
) -> serde_json::Value {
    let mut event = serde_json::json!({
        "submission_id": id,
        "carrier": carrier,
        "file_name": file_name,
    });
    if let Some(status) = status {
        event["status"] = status.into();
    }
    if let Some(error) = error {
        event["error"] = error.into();
    }
    event
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Which backend a URL or path names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite database file (created on first use).
    Sqlite(PathBuf),
    /// A PostgreSQL connection URL.
    Postgres(String),
}

impl Backend {
    /// `postgres://…` and `postgresql://…` URLs name a PostgreSQL database; anything else is
    /// the path of a SQLite file (a leading `sqlite://` is dropped).
    pub fn parse(url_or_path: &str) -> Self {
        let lower = url_or_path.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            Self::Postgres(url_or_path.to_owned())
        } else {
            let path = url_or_path.strip_prefix("sqlite://").unwrap_or(url_or_path);
            Self::Sqlite(PathBuf::from(path))
        }
    }

    /// The database for messages: the file, or the URL with its password masked.
    pub fn describe(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("SQLite database {}", path.display()),
            Self::Postgres(url) => format!("PostgreSQL database {}", redact_url(url)),
        }
    }
}

/// Opens the store `url_or_path` names (see [`Backend::parse`]) and applies pending
/// migrations.
pub async fn open_store(url_or_path: &str) -> Result<Arc<dyn Store>> {
    open_store_with(url_or_path, true).await
}

/// Opens the store `url_or_path` names. With `migrate`, pending migrations are applied;
/// without, the store only checks that its schema is current and fails, naming the missing
/// migrations, when it is not.
pub async fn open_store_with(url_or_path: &str, migrate: bool) -> Result<Arc<dyn Store>> {
    Ok(match Backend::parse(url_or_path) {
        Backend::Sqlite(path) => Arc::new(SqliteStore::open_with(&path, migrate).await?),
        Backend::Postgres(url) => Arc::new(PgStore::connect_with(&url, migrate).await?),
    })
}

/// Applies the pending migrations of the store `url_or_path` names and returns the ones it
/// applied (empty when the schema was current).
pub async fn migrate(url_or_path: &str) -> Result<Vec<MigrationInfo>> {
    match Backend::parse(url_or_path) {
        Backend::Sqlite(path) => SqliteStore::apply_migrations(&path).await,
        Backend::Postgres(url) => PgStore::apply_migrations(&url).await,
    }
}

/// The migrations this build has that the store `url_or_path` names lacks (empty when its
/// schema is current). Fails, naming it, on a migration this build does not know, one that
/// failed part-way, or one changed since it was applied. Changes nothing.
pub async fn pending_migrations(url_or_path: &str) -> Result<Vec<MigrationInfo>> {
    match Backend::parse(url_or_path) {
        Backend::Sqlite(path) => SqliteStore::pending_migrations(&path).await,
        Backend::Postgres(url) => PgStore::pending_migrations(&url).await,
    }
}

/// `url` with the password (if any) replaced by `***`, for messages and logs.
pub fn redact_url(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return url.to_owned();
    };
    match authority[..at].find(':') {
        Some(colon) => format!(
            "{}{}:***{}",
            &url[..scheme_end],
            &authority[..colon],
            &rest[at..]
        ),
        None => url.to_owned(),
    }
}

/// Everything the pipeline and the API need from a store. Implementations must pass the
/// same behavioural tests (`tests/conformance.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store answers; used by readiness checks.
    async fn ping(&self) -> Result<()>;
    /// Fails, naming the migrations, unless the database's schema is exactly this build's
    /// latest (none pending, none unknown); used by readiness checks, so a process whose
    /// database was migrated by a newer release, or rolled back, stops taking traffic.
    async fn check_schema(&self) -> Result<()>;

    async fn ensure_carrier(&self, id: &CarrierId, name: &str) -> Result<()>;
    /// The carriers in `scope`, with counts of what `scope` lets the caller see.
    async fn list_carriers(&self, scope: &Scope) -> Result<Vec<CarrierSummary>>;

    /// Records a mapping's text; the same text for the same carrier and name is one revision.
    async fn register_mapping(&self, mapping: NewMapping<'_>) -> Result<MappingRef>;
    /// The current revision of a carrier's mapping called `name`: the one its latest
    /// submission used (returning to an earlier text makes that revision current again).
    async fn find_mapping(&self, carrier: &CarrierId, name: &str) -> Result<Option<StoredMapping>>;
    async fn get_mapping(&self, id: i64) -> Result<StoredMapping>;

    /// Which of `numbers` are policies of `carrier` (for dry runs' reference checks).
    async fn known_policy_numbers(
        &self,
        carrier: &CarrierId,
        numbers: &[String],
    ) -> Result<std::collections::HashSet<String>>;

    /// Records that a document (raw payload) with this hash is stored.
    async fn record_document(&self, sha256: &str, size_bytes: u64) -> Result<()>;
    /// Whether the store holds documents' content, so that processes on other machines can
    /// read a document received here (PostgreSQL). When false (SQLite, one machine),
    /// documents live only in the data directory and the two methods below do nothing.
    fn shares_documents(&self) -> bool;
    /// Records the document and stores its content, read from `content` in chunks of
    /// [`DOCUMENT_CHUNK_BYTES`] (never whole), in one transaction: a document's content is
    /// stored entirely or not at all. Content already stored is neither read nor stored
    /// again, also when another process stores it at the same moment. True when this call
    /// stored it. Fails, storing nothing, when `content` does not hold `size_bytes` bytes.
    /// The caller vouches that `sha256` is the content's hash (readers verify it).
    async fn store_document_content(
        &self,
        sha256: &str,
        size_bytes: u64,
        content: &mut (dyn tokio::io::AsyncRead + Send + Unpin),
    ) -> Result<bool>;
    /// Writes a document's stored content to `sink`, a chunk at a time, and returns its size.
    /// `NotFound` when the store holds no content for it (never stored, received before the
    /// store shared documents, or a store that does not share them).
    async fn read_document_content(
        &self,
        sha256: &str,
        sink: &mut (dyn tokio::io::AsyncWrite + Send + Unpin),
    ) -> Result<u64>;

    /// Records a received submission, and in the same transaction its `submission.received`
    /// event (the outbox relay publishes it; a worker consuming it processes the submission).
    async fn create_submission(&self, submission: NewSubmission<'_>) -> Result<i64>;
    /// Claims a submission for `owner` until `lease` from now: a received one, or one whose
    /// previous worker's lease expired (it resumes after `committed_through`). Counts an
    /// attempt when claimed.
    async fn claim_submission(
        &self,
        id: i64,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<SubmissionClaim>;
    /// The oldest unfinished submission of the same carrier received before `id`, if any.
    /// Workers process a carrier's submissions in the order they arrived (so a policy's
    /// changes apply in order) and leave `id` until that one is finished.
    async fn earlier_unfinished_submission(&self, id: i64) -> Result<Option<i64>>;
    /// Extends `owner`'s lease on a submission it is processing; false when it lost it.
    async fn extend_submission_lease(
        &self,
        id: i64,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<bool>;
    /// Ends `owner`'s processing: completed, or failed with `error`. Writes the
    /// `submission.completed` or `submission.failed` event in the same transaction.
    async fn finish_submission(
        &self,
        id: i64,
        owner: &str,
        error: Option<&str>,
    ) -> Result<Submission>;
    /// Makes a failed submission receivable again (a dead letter redriven): status
    /// `received`, attempts and error cleared; its progress is kept, so it resumes.
    async fn requeue_submission(&self, id: i64) -> Result<Submission>;
    /// The submission, if `scope` covers it (see [`Scope::allows_carrier_wide`]).
    async fn get_submission(&self, id: i64, scope: &Scope) -> Result<Option<Submission>>;
    async fn list_submissions(
        &self,
        scope: &Scope,
        filter: &SubmissionFilter,
    ) -> Result<Page<Submission>>;
    /// Submissions received or interrupted mid-processing, oldest first.
    async fn unfinished_submissions(&self) -> Result<Vec<Submission>>;

    /// Commits one batch: canonical records, rejections and the submission's progress, in
    /// one transaction, and extends the owner's lease. Refused unless `batch.owner` holds the
    /// submission. Records failing a referential check become rejections here.
    async fn commit_batch(&self, batch: Batch) -> Result<BatchOutcome>;

    /// A submission's rejections; empty when `scope` does not cover the submission.
    async fn list_rejections(
        &self,
        submission: i64,
        scope: &Scope,
        page: &PageRequest,
    ) -> Result<Page<Rejection>>;

    /// Current versions of policies, or with `filter.as_of` the versions current at that
    /// instant (policies that did not exist yet are absent), in id order.
    async fn list_policies(
        &self,
        scope: &Scope,
        filter: &PolicyFilter,
    ) -> Result<Page<PolicySummary>>;
    async fn get_policy(&self, id: i64, scope: &Scope) -> Result<Option<PolicyDetail>>;
    /// The policy as it was at `as_of`: the version current then, with the claims as they
    /// were then. `None` when no such policy existed at that instant (see
    /// [`Store::list_policy_versions`] to tell "not yet" from "never").
    async fn get_policy_as_of(
        &self,
        id: i64,
        as_of: DateTime<Utc>,
        scope: &Scope,
    ) -> Result<Option<PolicyDetail>>;
    /// A policy's versions, oldest first; empty when the policy, as it is now, is outside
    /// `scope`.
    async fn list_policy_versions(&self, id: i64, scope: &Scope) -> Result<Vec<PolicyVersion>>;
    /// A short text that changes whenever policy `id`'s detail ([`Store::get_policy`])
    /// does: a new version, or a claim of it created, changed or moved. `None` when there is
    /// no such policy. Caches check it to serve a detail only while it is current; it is not
    /// scoped (what it reveals is whether an id exists, which callers get from the cache's
    /// scoped answer anyway).
    async fn policy_stamp(&self, id: i64) -> Result<Option<String>>;
    /// Current versions of claims, or with `filter.as_of` the versions current at that
    /// instant, in id order.
    async fn list_claims(&self, scope: &Scope, filter: &ClaimFilter) -> Result<Page<ClaimSummary>>;

    /// Outbox events not yet published, oldest first.
    async fn unpublished_events(&self, limit: usize) -> Result<Vec<OutboxEvent>>;
    /// Published events at publication positions (`published_seq`) above `after_seq`, in
    /// publication order, each with its position: the feed of consumers that keep their own
    /// position (the warehouse's watermark). Unpublished events are not returned. Ids are
    /// no position: on PostgreSQL an event with a lower id can commit after one with a
    /// higher id was read, while every position is committed before any higher one is seen.
    async fn published_events_after(
        &self,
        after_seq: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEvent>>;
    /// The id of the newest outbox event (0 when there is none).
    async fn last_event_id(&self) -> Result<i64>;
    /// Every version of a carrier's policies and claims and every premium and claim
    /// transaction, as committed now (unscoped: the warehouse applies scope when it is read).
    async fn warehouse_carrier(&self, carrier: &str) -> Result<WarehouseCarrier> {
        self.warehouse_rows(carrier, &WarehouseSelection::All).await
    }
    /// The rows of a carrier that `selection` names, each list in the order of
    /// [`WarehouseCarrier`], read in one transaction (one snapshot). Unscoped.
    async fn warehouse_rows(
        &self,
        carrier: &str,
        selection: &WarehouseSelection,
    ) -> Result<WarehouseCarrier>;
    /// Marks events as published (after the broker acknowledged them), in one transaction
    /// that also gives each newly published event its place in the publication order
    /// (read by [`Store::list_events`]) and queues its deliveries to the webhooks that
    /// want it (their filters and scope applied). Events published already are left as
    /// they are, so publishing again queues nothing twice.
    async fn mark_events_published(&self, ids: &[i64]) -> Result<()>;
    /// The relay's lag: events committed and not yet published, and when the oldest of them
    /// was written.
    async fn outbox_backlog(&self) -> Result<Backlog>;
    /// The webhooks' queue: pending deliveries due now (and since when the oldest is due),
    /// and those waiting for a retry.
    async fn webhook_backlog(&self) -> Result<Backlog>;
    /// The connections of the store's pools now.
    fn pool_use(&self) -> Vec<PoolUse>;

    // Change events for readers and webhooks (see the `webhooks` module).

    /// Published events within `scope` (carriers; under a book restriction, only policy and
    /// claim events of policies in the books), in publication order, after `filter.after`.
    async fn list_events(&self, scope: &Scope, filter: &EventFilter) -> Result<Vec<OutboxEvent>>;
    /// The id of the event published last, if any: where a reader who wants only new events
    /// starts.
    async fn last_published_event(&self) -> Result<Option<i64>>;
    /// The publication position (`published_seq`) of the event published last; 0 when none
    /// is. Every event at a lower position is committed and readable when this is read.
    async fn last_published_seq(&self) -> Result<i64>;
    /// The premium and claim movements of the events published in `range` (see the `live`
    /// module), unscoped, summed by key (several rows may share a key: add them).
    async fn live_movements(&self, range: &live::LiveRange) -> Result<Vec<live::LiveRow>>;
    /// Stores a webhook; deliveries are queued for events published from then on.
    async fn create_webhook(&self, webhook: &NewWebhook) -> Result<Webhook>;
    /// Webhooks, oldest first; with `owner`, only those it created.
    async fn list_webhooks(&self, owner: Option<&str>) -> Result<Vec<Webhook>>;
    /// The webhook (with its secret); `None` when there is none, or `owner` did not create it.
    async fn get_webhook(&self, id: i64, owner: Option<&str>) -> Result<Option<Webhook>>;
    /// Enables a webhook again: clears when and why it was disabled and since when it was
    /// failing; its pending deliveries become due now. Events published while it was
    /// disabled were not queued for it (see [`Store::backfill_webhook`]). `None` when there
    /// is no such webhook (for `owner`).
    async fn enable_webhook(&self, id: i64, owner: Option<&str>) -> Result<Option<Webhook>>;
    /// Queues deliveries to an enabled webhook of the events published so far that `from`
    /// names, its filters and scope applied, in publication order, due now; an event queued
    /// for it already (delivered or not) is left as it is. Returns how many were queued (0
    /// for a disabled or missing webhook). `NotFound` when `from` is an event id that names
    /// no published event.
    async fn backfill_webhook(&self, id: i64, from: Backfill) -> Result<u64>;
    /// Removes a webhook and its deliveries; false when there was none (for `owner`).
    async fn delete_webhook(&self, id: i64, owner: Option<&str>) -> Result<bool>;
    /// Claims up to `limit` deliveries that are due (pending, their time come, not leased by
    /// a live claim, their webhook enabled) for `owner` until `lease` from now, oldest due
    /// first. Two processes never claim the same delivery while its lease runs.
    async fn claim_deliveries(
        &self,
        owner: &str,
        limit: usize,
        lease: std::time::Duration,
    ) -> Result<Vec<DueDelivery>>;
    /// Records an attempt in the delivery log and moves the delivery on (delivered, retried
    /// later, or given up); tracks the webhook's failures and disables it after
    /// `result.disable_after` of failures without a success. Nothing happens to a delivery
    /// that is no longer pending.
    async fn record_delivery_attempt(&self, result: &AttemptResult) -> Result<()>;
    /// A webhook's deliveries, oldest first, with their attempts.
    async fn list_deliveries(&self, webhook: i64, page: &PageRequest) -> Result<Page<Delivery>>;
    /// Queues a delivery again, due now (whatever its status); `None` when the webhook has
    /// no such delivery.
    async fn redeliver(&self, webhook: i64, delivery: i64) -> Result<Option<Delivery>>;
    /// Takes or renews the named lease for `owner` until `ttl` from now: true when `owner`
    /// holds it. One holder at a time; an expired lease is taken over.
    async fn take_lease(&self, name: &str, owner: &str, ttl: std::time::Duration) -> Result<bool>;
    /// Takes or renews the named fenced lease for `owner` until `ttl` from now; `None` while
    /// another owner holds it (not expired). The returned token stays the same while `owner`
    /// renews it, and grows whenever the lease changes hands: a holder compares it with the
    /// one it took to learn that it lost the lease in between. Separate from
    /// [`Store::take_lease`]'s leases.
    async fn take_fenced_lease(
        &self,
        name: &str,
        owner: &str,
        ttl: std::time::Duration,
    ) -> Result<Option<FencedLease>>;

    /// Policies and premium by carrier, line and currency, over current versions.
    async fn portfolio(&self, scope: &Scope) -> Result<Vec<PortfolioLine>>;
    /// The same summary over the versions that were current at `as_of`.
    async fn portfolio_as_of(
        &self,
        as_of: DateTime<Utc>,
        scope: &Scope,
    ) -> Result<Vec<PortfolioLine>>;

    // Idempotency keys (see the `idempotency` module): claimed, then completed or released.

    /// Claims `request.key` in `request.scope` for the request with `request.fingerprint`,
    /// atomically: of several requests claiming a free key at once, exactly one gets
    /// [`IdempotencyClaim::Acquired`]. A key that expired, was released, or whose claim was
    /// abandoned (still in flight after its lock) is free again, whatever its fingerprint.
    async fn claim_idempotency_key(
        &self,
        request: &IdempotencyRequest<'_>,
    ) -> Result<IdempotencyClaim>;
    /// Records the response of the request whose claim is `token`'s. `false` when that claim
    /// was lost (taken over after its lock ran out, or expired and removed): nothing is
    /// recorded then.
    async fn complete_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        token: &str,
        response: &IdempotentResponse,
    ) -> Result<bool>;
    /// Gives up `token`'s claim without a response, so that the next request with the key
    /// proceeds as if it were the first. A completed key, or another request's claim, stays.
    async fn release_idempotency_key(&self, scope: &str, key: &str, token: &str) -> Result<()>;
    /// Removes the keys past their time to live; returns how many.
    async fn purge_idempotency_keys(&self) -> Result<u64>;

    // API keys and the audit log (see the `access` module). Unscoped: only administrators
    // (and the CLI, which has the database) reach them.

    /// Stores a new API key (its hash, never its secret) and returns it as stored, with its
    /// creation time. `Invalid` when a key with the same id exists, or the hash is not a
    /// lower-case hex SHA-256.
    async fn create_api_key(&self, key: &NewApiKey) -> Result<ApiKey>;
    /// The key with this id, with its `secret_sha256` (for [`verify_token`]), also when it
    /// is expired or revoked ([`ApiKey::is_active`] tells).
    async fn get_api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// Every key, revoked and expired ones too, oldest first.
    async fn list_api_keys(&self) -> Result<Vec<ApiKey>>;
    /// Revokes a key from now on and returns it; `None` when there is no such key. Revoking
    /// a revoked key changes nothing: it keeps the time of its first revocation.
    async fn revoke_api_key(&self, id: &str) -> Result<Option<ApiKey>>;
    /// Appends an entry to the audit log, stamped with the store's clock; returns its id.
    async fn record_audit(&self, entry: &NewAuditEntry) -> Result<i64>;
    /// Audit entries, newest first, `filter.page_limit()` at a time. The next page is the
    /// one with `before_id` = [`AuditFilter::parse_cursor`] of this page's `next_cursor`.
    async fn list_audit(&self, filter: &AuditFilter) -> Result<Page<AuditEntry>>;
    /// Removes the audit entries recorded before `older_than`; returns how many.
    async fn purge_audit(&self, older_than: DateTime<Utc>) -> Result<u64>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_pick_the_backend() {
        assert_eq!(
            Backend::parse("postgres://u@h/db"),
            Backend::Postgres("postgres://u@h/db".into())
        );
        assert_eq!(
            Backend::parse("PostgreSQL://h/db"),
            Backend::Postgres("PostgreSQL://h/db".into())
        );
        assert_eq!(
            Backend::parse("data/carrierhub.db"),
            Backend::Sqlite("data/carrierhub.db".into())
        );
        assert_eq!(
            Backend::parse("sqlite:///tmp/x.db"),
            Backend::Sqlite("/tmp/x.db".into())
        );
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("postgres://app:s3cr:et@db:5432/hub?sslmode=disable"),
            "postgres://app:***@db:5432/hub?sslmode=disable"
        );
        assert_eq!(redact_url("postgres://app@db/hub"), "postgres://app@db/hub");
        assert_eq!(redact_url("postgres://db/hub"), "postgres://db/hub");
        assert_eq!(redact_url("not a url"), "not a url");
    }
}
