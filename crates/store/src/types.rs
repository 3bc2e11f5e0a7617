//! What goes into and comes out of a store. Output types serialise as the API shows them.

use carrierhub_model::{
    CanonicalRecord, CarrierId, Claim, ClaimStatus, Coverage, InsuredParty, LineOfBusiness, Money,
    Policy, PolicyStatus, RecordKind,
};
use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use std::borrow::Cow;
use utoipa::ToSchema;

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct CarrierSummary {
    pub id: String,
    pub name: String,
    pub policies: i64,
    pub claims: i64,
    pub submissions: i64,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct NewMapping<'a> {
    pub carrier: &'a CarrierId,
    pub name: &'a str,
    pub record: RecordKind,
    pub version: u32,
    pub sha256: &'a str,
    pub text: &'a str,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct MappingRef {
    pub id: i64,
    pub name: String,
    pub version: u32,
    /// Increments each time the carrier's mapping of this name changes.
    pub revision: u32,
    pub sha256: String,
}

#[derive(Debug, Clone)]
pub struct StoredMapping {
    pub reference: MappingRef,
    pub carrier: String,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct NewSubmission<'a> {
    pub carrier: &'a CarrierId,
    pub mapping_id: i64,
    pub file_name: &'a str,
    pub document_sha256: &'a str,
    /// `cli`, `api`, `replay`, …: who handed the payload in.
    pub received_via: &'a str,
    /// The submission whose document this one processes again.
    pub replay_of: Option<i64>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SubmissionStatus {
    Received,
    Processing,
    Completed,
    Failed,
}

impl SubmissionStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Processing => "processing",
            Self::Completed => "completed",
            Self::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => Self::Received,
            "processing" => Self::Processing,
            "completed" => Self::Completed,
            "failed" => Self::Failed,
            _ => return None,
        })
    }
}

/// Outcome counts of a submission.
/// `received = inserted + updated + unchanged + rejected + skipped`.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq, ToSchema)]
pub struct Counts {
    pub received: u64,
    pub inserted: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
    /// Records the mapping leaves out on purpose (total rows, routed-away record types).
    pub skipped: u64,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.received += other.received;
        self.inserted += other.inserted;
        self.updated += other.updated;
        self.unchanged += other.unchanged;
        self.rejected += other.rejected;
        self.skipped += other.skipped;
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Submission {
    pub id: i64,
    pub carrier: String,
    pub mapping: MappingRef,
    pub file_name: String,
    pub document_sha256: String,
    pub received_via: String,
    pub received_at: DateTime<Utc>,
    pub status: SubmissionStatus,
    pub error: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub counts: Counts,
    /// Records of the payload already committed; a resumed run starts after them.
    pub committed_through: u64,
    /// The submission this one replays (same document, usually a newer mapping).
    pub replay_of: Option<i64>,
    /// How many times a worker has claimed it: a submission whose workers keep dying or
    /// failing is given up (dead-lettered) after a limit instead of retried for ever.
    pub attempts: u32,
    /// The broker message whose processing committed the latest batch.
    pub message_id: Option<String>,
}

/// What claiming a submission for processing found.
#[derive(Debug, Clone)]
pub enum SubmissionClaim {
    /// The caller holds it until its lease ends (`attempts` counts this claim).
    Claimed(Submission),
    /// Completed or failed already: there is nothing to do.
    Finished(Submission),
    /// Another worker holds a live lease on it.
    Held { owner: String },
}

impl SubmissionClaim {
    /// The submission, when the claim succeeded.
    pub fn claimed(self) -> Option<Submission> {
        match self {
            Self::Claimed(s) => Some(s),
            _ => None,
        }
    }
}

/// A change event waiting in the outbox to be published.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutboxEvent {
    pub id: i64,
    /// `policy.created`, `claim.updated`, `submission.received`, …
    pub event_type: String,
    pub carrier: String,
    /// The policy's, claim's or submission's id.
    pub subject_id: i64,
    pub payload: serde_json::Value,
    pub created_at: DateTime<Utc>,
    /// The W3C trace context of the span that wrote the event (see [`crate::trace`]); only
    /// when traces are exported.
    #[serde(skip)]
    pub traceparent: Option<String>,
    /// The event's place in the publication order (`outbox.published_seq`), given when the
    /// relay marked it published; `None` while it is not. Readers that keep their own
    /// position (the warehouse) keep this one. Not part of any JSON the API sends.
    #[serde(skip)]
    pub published_seq: Option<i64>,
}

/// What waits to be sent, for the metrics: the outbox's unpublished events (the relay's lag)
/// or the webhooks' pending deliveries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Outbox: events committed and not yet published. Webhooks: deliveries due now.
    pub ready: u64,
    /// Webhooks: pending deliveries waiting for a later retry (0 for the outbox).
    pub waiting: u64,
    /// When the oldest of `ready` was written (outbox) or fell due (webhooks).
    pub oldest: Option<DateTime<Utc>>,
}

/// The connections of one of the store's pools, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolUse {
    /// `read` and `write` for SQLite (one writing connection), `main` for PostgreSQL.
    pub pool: &'static str,
    pub in_use: u32,
    pub idle: u32,
    pub max: u32,
}

#[derive(Debug, Clone, Default)]
pub struct SubmissionFilter {
    pub carrier: Option<String>,
    pub page: PageRequest,
}

/// One canonical record ready to commit, with where it came from.
#[derive(Debug, Clone)]
pub struct StagedRecord {
    pub record: CanonicalRecord,
    pub record_number: u64,
    pub source_line: u64,
    /// Spreadsheets: the sheet `source_line` is a row of.
    pub sheet: Option<std::sync::Arc<str>>,
    /// A policy's canonical JSON and content hash (`Policy::canonical_json_and_hash`), when
    /// they were computed with the record ([`StagedRecord::mapped`]); `None`: the store
    /// computes them. The pipeline computes them on its parsing thread, so that the writer,
    /// which holds the batch's transaction meanwhile, does not.
    pub canonical: Option<(String, String)>,
}

impl StagedRecord {
    /// A record as mapped from a payload, a policy's canonical JSON and hash computed now.
    pub fn mapped(
        record: CanonicalRecord,
        record_number: u64,
        source_line: u64,
        sheet: Option<std::sync::Arc<str>>,
    ) -> Self {
        let canonical = match &record {
            CanonicalRecord::Policy(p) => Some(p.canonical_json_and_hash()),
            _ => None,
        };
        Self {
            record,
            record_number,
            source_line,
            sheet,
            canonical,
        }
    }

    /// A policy record's canonical JSON and content hash: the ones computed with it
    /// (borrowed), or computed now.
    pub(crate) fn policy_json_and_hash(
        &self,
        policy: &carrierhub_model::Policy,
    ) -> (Cow<'_, str>, Cow<'_, str>) {
        match &self.canonical {
            Some((json, hash)) => (Cow::Borrowed(json), Cow::Borrowed(hash)),
            None => {
                let (json, hash) = policy.canonical_json_and_hash();
                (Cow::Owned(json), Cow::Owned(hash))
            }
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NewRejection {
    pub record_number: u64,
    pub source_line: u64,
    /// Spreadsheets: the sheet `source_line` is a row of.
    pub sheet: Option<String>,
    pub field: Option<String>,
    pub source_column: Option<String>,
    pub value: Option<String>,
    pub reason: String,
}

/// One transaction's worth of a submission. Records and rejections are in payload order;
/// `through_record` is the last payload record the batch covers.
#[derive(Debug, Clone)]
pub struct Batch {
    pub submission_id: i64,
    /// The worker that claimed the submission.
    pub owner: String,
    pub lease: std::time::Duration,
    pub records: Vec<StagedRecord>,
    pub rejections: Vec<NewRejection>,
    /// Number of distinct payload records the rejections cover.
    pub rejected_records: u64,
    /// Payload records the mapping skipped.
    pub skipped_records: u64,
    pub through_record: u64,
    /// The broker message being processed, recorded with the progress it committed.
    pub message_id: Option<String>,
}

impl Batch {
    /// Frees a committed batch off the committing task: its records were allocated by the
    /// thread that parsed them, and freeing thousands of them is work the next batch's
    /// transaction need not wait for. Small batches, or no runtime, are dropped here.
    pub(crate) fn release(self) {
        const IN_BACKGROUND_FROM: usize = 256;
        if self.records.len() < IN_BACKGROUND_FROM {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn_blocking(move || drop(self));
        }
    }
}

#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct BatchOutcome {
    pub counts: Counts,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Rejection {
    pub id: i64,
    pub submission_id: i64,
    pub file_name: String,
    pub record_number: u64,
    pub line: u64,
    /// Spreadsheets: the sheet `line` is a row of.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub field: Option<String>,
    pub column: Option<String>,
    pub value: Option<String>,
    pub reason: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    pub after_id: Option<i64>,
    pub limit: u32,
}

impl Default for PageRequest {
    fn default() -> Self {
        Self {
            after_id: None,
            limit: 50,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass as `cursor` to get the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Clone, Default)]
pub struct PolicyFilter {
    pub carrier: Option<String>,
    pub line_of_business: Option<LineOfBusiness>,
    pub status: Option<PolicyStatus>,
    /// Read the versions current at this instant instead of the current ones; the filters
    /// then apply to those versions' values (the status the policy had then).
    pub as_of: Option<DateTime<Utc>>,
    /// Only policies whose extras hold these keys with these values (all of them).
    pub extras: Vec<(String, String)>,
    /// Return each policy's extras.
    pub include_extras: bool,
    pub page: PageRequest,
}

#[derive(Debug, Clone, Default)]
pub struct ClaimFilter {
    pub carrier: Option<String>,
    pub status: Option<ClaimStatus>,
    pub policy_id: Option<i64>,
    /// Read the versions current at this instant (see [`PolicyFilter::as_of`]).
    pub as_of: Option<DateTime<Utc>>,
    /// Only claims whose extras hold these keys with these values (all of them).
    pub extras: Vec<(String, String)>,
    /// Return each claim's extras.
    pub include_extras: bool,
    pub page: PageRequest,
}

/// Parses the instant of an as-of read: an RFC 3339 timestamp (`2025-12-01T00:00:00Z`,
/// `2025-12-01T09:30:00+01:00`), or a date alone (`2025-12-01`), which means midnight UTC of
/// that day. The error says what was expected, for the caller to name its parameter.
pub fn parse_as_of(text: &str) -> Result<DateTime<Utc>, String> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    if let Ok(day) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        if text.len() == 10 {
            return Ok(day.and_time(chrono::NaiveTime::MIN).and_utc());
        }
    }
    let hint = if text.contains(' ') {
        " (in a URL, the '+' of an offset must be sent as %2B)"
    } else {
        ""
    };
    Err(format!(
        "'{text}' is not an RFC 3339 timestamp such as 2025-12-01T00:00:00Z or \
         2025-12-01T00:00:00+01:00, nor a date such as 2025-12-01 (midnight UTC){hint}"
    ))
}

/// A normalised code and the carrier's original.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct CodeValue {
    pub code: String,
    pub original: String,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct PolicySummary {
    pub id: i64,
    pub carrier: String,
    pub number: String,
    pub line_of_business: CodeValue,
    pub status: CodeValue,
    pub effective_date: NaiveDate,
    pub expiration_date: NaiveDate,
    pub premium: Money,
    pub producer: Option<String>,
    pub insured_name: String,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    /// The source fields the model has no place for; present when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extras: Option<std::collections::BTreeMap<String, String>>,
}

impl PolicySummary {
    /// The summary of a stored version: its record, number, and the instant it began.
    pub(crate) fn of_version(
        id: i64,
        record: &Policy,
        version: i64,
        valid_from: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            carrier: record.carrier.as_str().to_owned(),
            number: record.number.as_str().to_owned(),
            line_of_business: CodeValue {
                code: record.line_of_business.value.code().to_owned(),
                original: record.line_of_business.original.clone(),
            },
            status: CodeValue {
                code: record.status.value.code().to_owned(),
                original: record.status.original.clone(),
            },
            effective_date: record.effective_date,
            expiration_date: record.expiration_date,
            premium: Money::new(record.premium.amount, record.premium.currency),
            producer: record.producer.clone(),
            insured_name: record.insured.name.clone(),
            version,
            updated_at: valid_from,
            extras: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Lineage {
    pub submission_id: i64,
    pub record_number: u64,
    pub line: u64,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct PolicyDetail {
    #[serde(flatten)]
    pub summary: PolicySummary,
    pub insured: InsuredParty,
    pub coverages: Vec<Coverage>,
    pub claims: Vec<ClaimSummary>,
    pub versions: i64,
    pub lineage: Lineage,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct PolicyVersion {
    pub version: i64,
    pub content_hash: String,
    pub record: serde_json::Value,
    pub lineage: Lineage,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
    /// The premium movements this version made (new business, endorsement, …).
    pub premium_transactions: Vec<PremiumMovement>,
    /// The carrier's transaction this version results from, when it was reported as one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transaction: Option<serde_json::Value>,
}

/// A premium transaction as stored: derived from two consecutive versions.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct PremiumMovement {
    pub kind: String,
    pub amount: Money,
    pub effective_date: NaiveDate,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct ClaimSummary {
    pub id: i64,
    pub carrier: String,
    pub number: String,
    pub policy_id: i64,
    pub policy_number: String,
    pub loss_date: NaiveDate,
    pub reported_date: NaiveDate,
    pub status: CodeValue,
    pub cause: Option<String>,
    pub paid: Money,
    pub reserve: Money,
    pub incurred: Money,
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    /// The source fields the model has no place for; present when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub extras: Option<std::collections::BTreeMap<String, String>>,
}

impl ClaimSummary {
    /// The summary of a stored version: its record, the policy it belonged to then, its
    /// number, and the instant it began.
    pub(crate) fn of_version(
        id: i64,
        policy_id: i64,
        record: &Claim,
        version: i64,
        valid_from: DateTime<Utc>,
    ) -> Result<Self, carrierhub_model::MoneyError> {
        let paid = Money::new(record.paid.amount, record.paid.currency);
        let reserve = Money::new(record.reserve.amount, record.reserve.currency);
        Ok(Self {
            id,
            carrier: record.carrier.as_str().to_owned(),
            number: record.number.as_str().to_owned(),
            policy_id,
            policy_number: record.policy_number.as_str().to_owned(),
            loss_date: record.loss_date,
            reported_date: record.reported_date,
            status: CodeValue {
                code: record.status.value.code().to_owned(),
                original: record.status.original.clone(),
            },
            cause: record.cause.clone(),
            incurred: paid.checked_add(&reserve)?,
            paid,
            reserve,
            version,
            updated_at: valid_from,
            extras: None,
        })
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct PortfolioLine {
    pub carrier: String,
    pub line_of_business: String,
    pub currency: String,
    pub policies: u64,
    pub in_force: u64,
    pub premium: Decimal,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn as_of_takes_rfc3339_or_a_date_at_midnight_utc() {
        let utc = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        assert_eq!(
            parse_as_of("2025-12-01T00:00:00Z"),
            Ok(utc("2025-12-01T00:00:00Z"))
        );
        assert_eq!(
            parse_as_of("2025-12-01T09:30:00.25+01:00"),
            Ok(utc("2025-12-01T08:30:00.25Z"))
        );
        assert_eq!(parse_as_of("2025-12-01"), Ok(utc("2025-12-01T00:00:00Z")));
        for bad in [
            "",
            "yesterday",
            "2025-12-01T00:00:00",
            "2025-12-1",
            "01.12.2025",
        ] {
            let e = parse_as_of(bad).unwrap_err();
            assert!(e.contains("RFC 3339") && !e.contains("%2B"), "{bad}: {e}");
        }
        // A '+' sent unencoded in a URL arrives as a space.
        assert!(parse_as_of("2025-12-01T00:00:00 01:00")
            .unwrap_err()
            .contains("%2B"));
    }
}

/// Which of a carrier's rows [`crate::Store::warehouse_rows`] reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WarehouseSelection {
    /// Every row of the carrier.
    All,
    /// The history of these records: every version of the policies and their premium
    /// transactions; every version of the claims, and every claim version that names one of
    /// the policies; the transactions of all those claim versions' claims. What the warehouse
    /// needs to work out which partitions a change touches.
    Records {
        policies: Vec<i64>,
        claims: Vec<i64>,
    },
    /// The rows of these month partitions, and what they refer to (see [`WarehouseMonths`]).
    Months(WarehouseMonths),
}

/// Month partitions (`YYYY-MM`) of the warehouse's tables, as [`WarehouseSelection::Months`]
/// reads them. Besides the rows of the months, the read returns every version of each
/// policy that a returned premium transaction or claim version refers to (their line and
/// producer come from it), whatever its month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WarehouseMonths {
    /// Policy versions by the month of their effective date (the policies and coverages
    /// tables).
    pub policies: Vec<String>,
    /// Premium transactions by the month of their effective date.
    pub premium_transactions: Vec<String>,
    /// Claim versions by the month of their loss date.
    pub claims: Vec<String>,
    /// Claim transactions by the month of their claim version's loss date (those claim
    /// versions are returned too).
    pub claim_transactions: Vec<String>,
}

/// A fenced lease (see [`crate::Store::take_fenced_lease`]): held by one owner at a time; the
/// token grows by one whenever the lease changes hands, so a holder that was replaced can
/// tell by its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FencedLease {
    pub token: i64,
    pub until: DateTime<Utc>,
}

/// Everything of one carrier the warehouse keeps (see [`crate::Store::warehouse_carrier`]):
/// every version of its policies and claims and every premium and claim transaction.
#[derive(Debug, Clone, Default)]
pub struct WarehouseCarrier {
    /// By policy id, then version.
    pub policy_versions: Vec<WarehousePolicyVersion>,
    /// By claim id, then version.
    pub claim_versions: Vec<WarehouseClaimVersion>,
    /// By id.
    pub premium_transactions: Vec<WarehousePremiumTransaction>,
    /// By id.
    pub claim_transactions: Vec<WarehouseClaimTransaction>,
}

#[derive(Debug, Clone)]
pub struct WarehousePolicyVersion {
    pub policy_id: i64,
    pub version: i64,
    pub record: Policy,
    pub submission_id: i64,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct WarehouseClaimVersion {
    pub claim_id: i64,
    pub version: i64,
    /// The policy the version's record names.
    pub policy_id: i64,
    pub record: Claim,
    pub submission_id: i64,
    pub valid_from: DateTime<Utc>,
    pub valid_to: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct WarehousePremiumTransaction {
    pub id: i64,
    pub policy_id: i64,
    pub policy_version: i64,
    pub kind: String,
    pub amount: Decimal,
    pub currency: String,
    pub effective_date: NaiveDate,
    pub submission_id: i64,
    pub recorded_at: DateTime<Utc>,
}

#[derive(Debug, Clone)]
pub struct WarehouseClaimTransaction {
    pub id: i64,
    pub claim_id: i64,
    pub claim_version: i64,
    pub kind: String,
    pub amount: Decimal,
    pub currency: String,
    pub submission_id: i64,
    pub recorded_at: DateTime<Utc>,
}
