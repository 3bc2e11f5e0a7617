//! Where canonical data lives: the [`Store`] trait and its embedded SQLite backend.
//!
//! Architecture invariants:
//! - A batch of records is committed in one transaction together with its rejections, its
//!   change events (outbox) and the submission's progress: all in or all out.
//! - Upserts are by natural key (carrier + policy number, carrier + claim number). A record
//!   whose content hash equals the current version's writes nothing; a changed one becomes a
//!   new version and the previous one is closed (`valid_to`), never overwritten.
//! - Every version points to the submission and record position it came from (lineage).

mod cursor;
mod sqlite;
mod types;

pub use cursor::Cursor;
pub use sqlite::SqliteStore;
pub use types::*;

use async_trait::async_trait;
use carrierhub_model::CarrierId;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the pipeline and the API need from a store. Implementations must pass the
/// same behavioural tests (`tests/store_conformance.rs`).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Whether the store answers; used by readiness checks.
    async fn ping(&self) -> Result<()>;

    async fn ensure_carrier(&self, id: &CarrierId, name: &str) -> Result<()>;
    async fn list_carriers(&self) -> Result<Vec<CarrierSummary>>;

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

    async fn create_submission(&self, submission: NewSubmission<'_>) -> Result<i64>;
    /// Claims a received submission, or one whose previous worker's lease expired, for
    /// `owner` until `lease` from now. `None` when another worker holds it or it is finished.
    async fn claim_submission(
        &self,
        id: i64,
        owner: &str,
        lease: std::time::Duration,
    ) -> Result<Option<Submission>>;
    /// Ends `owner`'s processing: completed, or failed with `error`.
    async fn finish_submission(
        &self,
        id: i64,
        owner: &str,
        error: Option<&str>,
    ) -> Result<Submission>;
    async fn get_submission(&self, id: i64) -> Result<Option<Submission>>;
    async fn list_submissions(&self, filter: &SubmissionFilter) -> Result<Page<Submission>>;
    /// Submissions received or interrupted mid-processing, oldest first.
    async fn unfinished_submissions(&self) -> Result<Vec<Submission>>;

    /// Commits one batch: canonical records, rejections and the submission's progress, in
    /// one transaction, and extends the owner's lease. Refused unless `batch.owner` holds the
    /// submission. Records failing a referential check become rejections here.
    async fn commit_batch(&self, batch: Batch) -> Result<BatchOutcome>;

    async fn list_rejections(&self, submission: i64, page: &PageRequest)
        -> Result<Page<Rejection>>;

    async fn list_policies(&self, filter: &PolicyFilter) -> Result<Page<PolicySummary>>;
    async fn get_policy(&self, id: i64) -> Result<Option<PolicyDetail>>;
    async fn list_policy_versions(&self, id: i64) -> Result<Vec<PolicyVersion>>;
    async fn list_claims(&self, filter: &ClaimFilter) -> Result<Page<ClaimSummary>>;

    /// Policies and premium by carrier, line and currency, over current versions.
    async fn portfolio(&self) -> Result<Vec<PortfolioLine>>;
}
