//! The ingestion pipeline: receive → parse → map → validate → commit.
//!
//! Architecture invariants:
//! - The raw payload is stored (content-addressed) and checked against its mapping *before*
//!   a submission exists: a payload that cannot be read leaves nothing behind. When the
//!   store shares documents (PostgreSQL), the payload's bytes are in the store before the
//!   submission is, so a worker on any machine can read every submission's document.
//! - Parsing and mapping stream record by record on a blocking thread; batches cross a
//!   bounded channel to the committer, so memory is flat whatever the file size.
//! - Each batch commits with the submission's progress (`committed_through`), so a worker
//!   that dies mid-file is resumed by another from the next record, with the same result as
//!   an uninterrupted run.

mod check;
mod documents;
mod relay;
pub mod webhooks;
mod worker;

pub use check::{
    check_file, CheckOptions, CheckReport, ErrorExample, ErrorGroup, SampleRecord, UnmappedCode,
};
pub use documents::{DocumentStore, StoredDocument};
pub use relay::Relay;
pub use webhooks::{Deliverer, WebhookConfig};
pub use worker::{
    ProcessFailure, Processed, Worker, WorkerConfig, SUBMISSIONS_FILTER, WORKER_GROUP,
};

use carrierhub_formats::{FormatError, RecordError, RecordReader};
use carrierhub_mapping::{BoundMapping, FieldError, Mapped, MappingError, MappingSpec};
use carrierhub_model::CarrierId;
use carrierhub_store::Scope;
use carrierhub_store::{
    Batch, Counts, NewMapping, NewRejection, NewSubmission, StagedRecord, Store, StoreError,
    Submission, SubmissionClaim,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    // The inner errors are displayed, not chained as sources: the message is complete
    // on its own and printing the chain would repeat it.
    #[error("{file}: {error}")]
    Unreadable { file: String, error: FormatError },
    #[error("{file}: {error}{hint}")]
    Mapping {
        file: String,
        error: MappingError,
        hint: String,
    },
    #[error("mapping '{mapping}' is for carrier '{mapping_carrier}', not '{carrier}'")]
    CarrierMismatch {
        mapping: String,
        mapping_carrier: String,
        carrier: String,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("submission {0} is being processed by another worker")]
    Busy(i64),
    #[error("submission {0} does not exist")]
    NoSuchSubmission(i64),
    /// The process is shutting down: the batches committed so far stay, the rest is
    /// processed when the submission is claimed again.
    #[error("submission {0} was interrupted by the shutdown after its last committed batch")]
    Interrupted(i64),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Told how a long ingest is going; the CLI draws a progress bar with it.
pub trait Progress: Send + Sync {
    fn started(&self, _total_bytes: u64) {}
    fn committed(&self, _bytes_read: u64, _counts: &Counts) {}
}

/// Reports nothing.
pub struct NoProgress;
impl Progress for NoProgress {}

/// A payload handed in for a carrier, to be mapped with `mapping`.
pub struct Delivery {
    pub carrier: CarrierId,
    pub mapping: MappingSpec,
    /// The name the payload had when sent; kept for errors and lineage.
    pub file_name: String,
    pub path: PathBuf,
    /// The file is a spool in the document store's incoming directory, which the pipeline
    /// takes over (moved into place, not copied).
    pub spooled: bool,
    /// `cli`, `api`, `replay`, …
    pub received_via: String,
    /// The submission whose document this delivery processes again.
    pub replay_of: Option<i64>,
}

/// What receiving a payload produced.
#[derive(Debug, Clone)]
pub struct Receipt {
    pub submission: Submission,
    pub document: StoredDocument,
    /// Header columns the mapping does not read.
    pub unmapped_columns: Vec<String>,
}

#[derive(Clone)]
pub struct Pipeline {
    store: Arc<dyn Store>,
    documents: DocumentStore,
    batch_size: usize,
    lease: Duration,
    /// Cancelled when the process shuts down: a submission being processed stops after the
    /// batch being committed.
    stop: tokio_util::sync::CancellationToken,
}

/// Records per batch (one transaction each). Measured on a million policies into PostgreSQL:
/// 2,000 took 25.4-28.8 s, 5,000 23.6-24.0 s, 8,000 and 20,000 no less; peak RSS 110, 155,
/// 185 and 355 MiB. Each commit's round trips and flush are paid per batch.
pub const DEFAULT_BATCH_SIZE: usize = 5_000;

impl Pipeline {
    pub fn new(store: Arc<dyn Store>, documents: DocumentStore) -> Self {
        Self {
            store,
            documents,
            batch_size: DEFAULT_BATCH_SIZE,
            lease: Duration::from_secs(120),
            stop: tokio_util::sync::CancellationToken::new(),
        }
    }

    /// Stops processing, after the batch being committed, once `stop` is cancelled
    /// ([`PipelineError::Interrupted`]).
    pub fn with_stop(mut self, stop: tokio_util::sync::CancellationToken) -> Self {
        self.stop = stop;
        self
    }

    pub fn with_batch_size(mut self, records: usize) -> Self {
        self.batch_size = records.max(1);
        self
    }

    /// How long a worker's claim on a submission holds without progress.
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease = lease;
        self
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn documents(&self) -> &DocumentStore {
        &self.documents
    }

    /// Stores the payload, checks it can be read with its mapping, and records a submission
    /// (status `received`). Nothing is recorded when the payload cannot be read.
    pub async fn receive(&self, delivery: Delivery) -> Result<Receipt, PipelineError> {
        if let Some(mc) = &delivery.mapping.carrier {
            if *mc != delivery.carrier {
                return Err(PipelineError::CarrierMismatch {
                    mapping: delivery.mapping.name.clone(),
                    mapping_carrier: mc.to_string(),
                    carrier: delivery.carrier.to_string(),
                });
            }
        }
        let documents = self.documents.clone();
        let path = delivery.path.clone();
        let file_name = delivery.file_name.clone();
        let spec = delivery.mapping.clone();
        let spooled = delivery.spooled;
        let (document, checked) = tokio::task::spawn_blocking(move || {
            let document = if spooled {
                documents.adopt(&path)?
            } else {
                let source = std::fs::File::open(&path).map_err(|e| {
                    std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
                })?;
                documents.put(source)?
            };
            let checked = preflight(&documents, &document, &spec, &file_name);
            if checked.is_err() {
                documents.discard(&document);
            }
            Ok::<_, PipelineError>((document, checked))
        })
        .await
        .expect("receive task panicked")?;
        let unmapped_columns = checked?;

        self.store
            .ensure_carrier(&delivery.carrier, delivery.carrier.as_str())
            .await?;
        let mapping = self
            .store
            .register_mapping(NewMapping {
                carrier: &delivery.carrier,
                name: &delivery.mapping.name,
                record: delivery.mapping.record,
                version: delivery.mapping.version,
                sha256: &delivery.mapping.sha256,
                text: &delivery.mapping.text,
            })
            .await?;
        if self.store.shares_documents() {
            let mut file = tokio::fs::File::open(&document.path).await?;
            let shared = self
                .store
                .store_document_content(&document.sha256, document.size_bytes, &mut file)
                .await?;
            if shared {
                tracing::debug!(sha256 = %document.sha256, bytes = document.size_bytes, "document shared in the store");
            }
        }
        self.store
            .record_document(&document.sha256, document.size_bytes)
            .await?;
        let id = self
            .store
            .create_submission(NewSubmission {
                carrier: &delivery.carrier,
                mapping_id: mapping.id,
                file_name: &delivery.file_name,
                document_sha256: &document.sha256,
                received_via: &delivery.received_via,
                replay_of: delivery.replay_of,
            })
            .await?;
        let submission = self
            .store
            .get_submission(id, &Scope::all())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("submission {id} vanished")))?;
        count_submission(delivery.carrier.as_str(), "received");
        tracing::info!(
            submission_id = id,
            carrier = %delivery.carrier,
            file = %delivery.file_name,
            sha256 = %document.sha256,
            bytes = document.size_bytes,
            "submission received"
        );
        Ok(Receipt {
            submission,
            document,
            unmapped_columns,
        })
    }

    /// Receives an earlier submission's document again as a new submission (a replay),
    /// mapped with `mapping`, or else with the latest revision of the mapping it used.
    /// Processing it writes new versions only where the mapped result differs from the
    /// current one: a mapping fix changes exactly the records it affects.
    pub async fn replay(
        &self,
        submission_id: i64,
        mapping: Option<MappingSpec>,
    ) -> Result<Receipt, PipelineError> {
        let original = self
            .store
            .get_submission(submission_id, &Scope::all())
            .await?
            .ok_or(PipelineError::NoSuchSubmission(submission_id))?;
        let carrier =
            CarrierId::parse(&original.carrier).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let spec = match mapping {
            Some(spec) => spec,
            None => {
                let stored = self
                    .store
                    .find_mapping(&carrier, &original.mapping.name)
                    .await?
                    .ok_or_else(|| {
                        StoreError::NotFound(format!(
                            "mapping '{}' of carrier '{carrier}'",
                            original.mapping.name
                        ))
                    })?;
                MappingSpec::parse(&stored.reference.name, &stored.text).map_err(|error| {
                    PipelineError::Mapping {
                        file: original.file_name.clone(),
                        error,
                        hint: String::new(),
                    }
                })?
            }
        };
        self.receive(Delivery {
            carrier,
            mapping: spec,
            file_name: original.file_name.clone(),
            path: self
                .documents
                .local_path(self.store.as_ref(), &original.document_sha256)
                .await?,
            spooled: false,
            received_via: "replay".to_owned(),
            replay_of: Some(submission_id),
        })
        .await
    }

    /// Processes a received submission to the end, as worker `owner`. Resumes after the
    /// records an earlier, interrupted run committed.
    pub async fn process(
        &self,
        submission_id: i64,
        owner: &str,
        progress: Arc<dyn Progress>,
    ) -> Result<Submission, PipelineError> {
        match self
            .store
            .claim_submission(submission_id, owner, self.lease)
            .await?
        {
            SubmissionClaim::Claimed(submission) => {
                self.run_claimed(submission, owner, None, progress).await
            }
            SubmissionClaim::Finished(_) | SubmissionClaim::Held { .. } => {
                Err(PipelineError::Busy(submission_id))
            }
        }
    }

    /// Processes a submission `owner` has claimed; batches commit with `message_id`. The
    /// claim's lease is renewed while it runs, also while no batch is ready yet.
    async fn run_claimed(
        &self,
        submission: Submission,
        owner: &str,
        message_id: Option<&str>,
        progress: Arc<dyn Progress>,
    ) -> Result<Submission, PipelineError> {
        let submission_id = submission.id;
        let heartbeat = {
            let store = self.store.clone();
            let owner = owner.to_owned();
            let lease = self.lease;
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(lease / 3);
                ticker.tick().await;
                loop {
                    ticker.tick().await;
                    match store
                        .extend_submission_lease(submission_id, &owner, lease)
                        .await
                    {
                        Ok(true) => {}
                        Ok(false) => break, // lost or finished; commits will say so
                        Err(e) => {
                            tracing::warn!(submission_id, error = %e, "cannot renew the lease")
                        }
                    }
                }
            })
        };
        let result = self
            .run_claimed_inner(submission, owner, message_id, progress)
            .await;
        heartbeat.abort();
        let _ = heartbeat.await;
        if let Err(PipelineError::Interrupted(_)) = result {
            // Hand the claim back at once (its heartbeat has stopped), so the next process
            // resumes the submission without waiting for the lease to run out.
            if let Err(e) = self
                .store
                .extend_submission_lease(submission_id, owner, Duration::ZERO)
                .await
            {
                tracing::warn!(submission_id, error = %e, "cannot release the claim");
            }
        }
        result
    }

    async fn run_claimed_inner(
        &self,
        submission: Submission,
        owner: &str,
        message_id: Option<&str>,
        progress: Arc<dyn Progress>,
    ) -> Result<Submission, PipelineError> {
        let submission_id = submission.id;
        let stored = self.store.get_mapping(submission.mapping.id).await?;
        let spec = match MappingSpec::parse(&stored.reference.name, &stored.text) {
            Ok(spec) => spec,
            Err(e) => {
                let done = self
                    .store
                    .finish_submission(submission_id, owner, Some(&e.to_string()))
                    .await?;
                count_submission(&done.carrier, done.status.as_str());
                return Ok(done);
            }
        };
        let carrier = CarrierId::parse(&submission.carrier)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tracing::info!(
            submission_id,
            carrier = %carrier,
            resume_after = submission.committed_through,
            "processing submission"
        );

        // Fetched first when this machine lacks it; the lease is renewed meanwhile.
        let path = self
            .documents
            .local_path(self.store.as_ref(), &submission.document_sha256)
            .await?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<(Batch, u64)>(2);
        progress.started(documents::file_size(&path));
        let job = ParseJob {
            path,
            file_name: submission.file_name.clone(),
            spec,
            carrier,
            submission_id,
            owner: owner.to_owned(),
            lease: self.lease,
            skip_through: submission.committed_through,
            batch_size: self.batch_size,
            message_id: message_id.map(str::to_owned),
        };
        let parser = tokio::task::spawn_blocking(move || job.run(tx));

        let mut counts = submission.counts;
        let mut commit_error = None;
        let mut interrupted = false;
        loop {
            // A shutdown stops taking batches; the one being committed is not cut short.
            let next = tokio::select! {
                biased;
                _ = self.stop.cancelled() => {
                    interrupted = true;
                    break;
                }
                next = rx.recv() => next,
            };
            let Some((batch, bytes)) = next else { break };
            // Its change events carry this span's trace context to the relay.
            let span = tracing::info_span!(
                "commit_batch",
                submission_id,
                records = batch.records.len(),
                rejections = batch.rejections.len(),
                through_record = batch.through_record,
            );
            match self.store.commit_batch(batch).instrument(span).await {
                Ok(outcome) => {
                    counts.add(&outcome.counts);
                    record_metrics(&submission.carrier, &outcome.counts);
                    progress.committed(bytes, &counts);
                }
                Err(e) => {
                    commit_error = Some(e);
                    break;
                }
            }
        }
        drop(rx);
        let parsed = match parser.await {
            Ok(parsed) => parsed,
            // A reader that panics is a bug; the submission is retried and, if it keeps
            // panicking, dead-lettered, instead of taking the worker down.
            Err(e) => return Err(PipelineError::Internal(format!("the parser failed: {e}"))),
        };
        if let Some(e) = commit_error {
            // Left `processing`: the lease expires and the submission is resumed.
            return Err(e.into());
        }
        if interrupted {
            tracing::info!(
                submission_id,
                committed_through = counts.received,
                "processing interrupted by the shutdown; it resumes after the last committed batch"
            );
            return Err(PipelineError::Interrupted(submission_id));
        }
        let error = parsed.err().map(|e| e.to_string());
        let done = self
            .store
            .finish_submission(submission_id, owner, error.as_deref())
            .await?;
        count_submission(&done.carrier, done.status.as_str());
        tracing::info!(
            submission_id,
            status = done.status.as_str(),
            received = done.counts.received,
            inserted = done.counts.inserted,
            updated = done.counts.updated,
            unchanged = done.counts.unchanged,
            rejected = done.counts.rejected,
            "submission processed"
        );
        Ok(done)
    }
}

/// Counts submissions by carrier and outcome: `received` when one is stored, `completed` or
/// `failed` when its processing ends (`carrierhub_submissions_total`).
pub fn count_submission(carrier: &str, outcome: &str) {
    metrics::counter!(
        "carrierhub_submissions_total",
        "carrier" => carrier.to_owned(),
        "outcome" => outcome.to_owned()
    )
    .increment(1);
}

/// Counts committed records by carrier and outcome (`rate()` of it is records per second).
fn record_metrics(carrier: &str, counts: &Counts) {
    for (outcome, n) in [
        ("inserted", counts.inserted),
        ("updated", counts.updated),
        ("unchanged", counts.unchanged),
        ("rejected", counts.rejected),
        ("skipped", counts.skipped),
    ] {
        if n > 0 {
            metrics::counter!(
                "carrierhub_pipeline_records_total",
                "carrier" => carrier.to_owned(),
                "outcome" => outcome
            )
            .increment(n);
        }
    }
}

fn bind(
    reader: &dyn RecordReader,
    spec: &MappingSpec,
    file_name: &str,
) -> Result<BoundMapping, PipelineError> {
    spec.bind(reader.headers()).map_err(|error| {
        let hint = reader
            .suspected_delimiter()
            .map(|d| {
                format!(
                    " (the header looks delimited by '{}', but mapping '{}' says '{}')",
                    char::from(d),
                    spec.name,
                    spec.source.delimiter
                )
            })
            .unwrap_or_default();
        PipelineError::Mapping {
            file: file_name.to_owned(),
            error,
            hint,
        }
    })
}

/// Opens a stored payload with its mapping's reader and binds the mapping to it.
pub fn open_bound(
    path: &Path,
    spec: &MappingSpec,
    file_name: &str,
) -> Result<(Box<dyn RecordReader>, BoundMapping), PipelineError> {
    let unreadable = |error| PipelineError::Unreadable {
        file: file_name.to_owned(),
        error,
    };
    // `open` sniffs the payload first: a PDF sent as CSV is named as a PDF.
    let reader = carrierhub_formats::open(&spec.reader_spec(), path).map_err(unreadable)?;
    let bound = bind(reader.as_ref(), spec, file_name)?;
    Ok((reader, bound))
}

/// Reads the header (and the first record) of a stored payload and binds the mapping to it.
fn preflight(
    documents: &DocumentStore,
    document: &StoredDocument,
    spec: &MappingSpec,
    file_name: &str,
) -> Result<Vec<String>, PipelineError> {
    let (mut reader, bound) = open_bound(&documents.path_of(&document.sha256), spec, file_name)?;
    // Read up to the first record: what comes before it (an XML prolog with a DTD, the
    // structure around a JSON array) is the payload's, and a payload that fails there is
    // refused before a submission exists.
    if let Some(Err(error)) = reader.next_record() {
        return Err(PipelineError::Unreadable {
            file: file_name.to_owned(),
            error,
        });
    }
    Ok(bound.unmapped_columns)
}

/// The blocking half of processing: reads, maps and validates, and hands batches over.
struct ParseJob {
    /// The document's local file.
    path: PathBuf,
    file_name: String,
    spec: MappingSpec,
    carrier: CarrierId,
    submission_id: i64,
    owner: String,
    lease: Duration,
    skip_through: u64,
    batch_size: usize,
    message_id: Option<String>,
}

impl ParseJob {
    fn empty_batch(&self) -> Batch {
        Batch {
            submission_id: self.submission_id,
            owner: self.owner.clone(),
            lease: self.lease,
            records: Vec::with_capacity(self.batch_size),
            rejections: Vec::new(),
            rejected_records: 0,
            skipped_records: 0,
            through_record: self.skip_through,
            message_id: self.message_id.clone(),
        }
    }

    fn run(self, tx: tokio::sync::mpsc::Sender<(Batch, u64)>) -> Result<(), PipelineError> {
        let (mut reader, bound) = open_bound(&self.path, &self.spec, &self.file_name)?;
        let mut batch = self.empty_batch();
        let mut pending = 0usize;
        let mut sheet: Option<Arc<str>> = None;
        let send = |batch: Batch, bytes: u64| tx.blocking_send((batch, bytes)).is_ok();
        while let Some(item) = reader.next_record() {
            let item = match item {
                Ok(item) => item,
                Err(fatal) => {
                    // Keep what was read before the payload became unreadable.
                    if pending > 0 {
                        send(batch, reader.byte_offset());
                    }
                    // A malformed-text error carries its line; others get the byte offset.
                    let at = match &fatal {
                        FormatError::Malformed { .. } | FormatError::Limit(_) => String::new(),
                        _ => format!(" at byte {}", reader.byte_offset()),
                    };
                    return Err(PipelineError::Unreadable {
                        file: format!("{}{at}", self.file_name),
                        error: fatal,
                    });
                }
            };
            let record_number = match &item {
                Ok(raw) => raw.position.record,
                Err(e) => e.position.record,
            };
            if record_number <= self.skip_through {
                continue;
            }
            // Spreadsheet rows are numbered per sheet; the sheet goes with the line.
            sheet = match (reader.sheet(), sheet.take()) {
                (Some(now), Some(last)) if *last == *now => Some(last),
                (now, _) => now.map(Arc::from),
            };
            match item {
                Err(e) => reject_unreadable(&mut batch, e, sheet.as_deref()),
                Ok(raw) => match bound.map_record(&self.carrier, &raw) {
                    Mapped::Record(record) => batch.records.push(StagedRecord::mapped(
                        record,
                        record_number,
                        raw.position.line,
                        sheet.clone(),
                    )),
                    Mapped::Skipped(_) => batch.skipped_records += 1,
                    Mapped::Rejected(errors) => reject_unmappable(
                        &mut batch,
                        (record_number, raw.position.line, sheet.as_deref()),
                        errors,
                    ),
                },
            }
            batch.through_record = record_number;
            pending += 1;
            if pending >= self.batch_size {
                if !send(
                    std::mem::replace(&mut batch, self.empty_batch()),
                    reader.byte_offset(),
                ) {
                    return Ok(()); // the committer stopped; it reports why
                }
                batch.through_record = record_number;
                pending = 0;
            }
        }
        if pending > 0 {
            send(batch, reader.byte_offset());
        }
        Ok(())
    }
}

/// A NUL character cannot be stored by every backend (PostgreSQL refuses it in text): a
/// rejection shows it escaped.
fn printable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\\0")
    } else {
        text
    }
}

fn reject_unreadable(batch: &mut Batch, e: RecordError, sheet: Option<&str>) {
    batch.rejections.push(NewRejection {
        record_number: e.position.record,
        source_line: e.position.line,
        sheet: sheet.map(str::to_owned),
        field: None,
        source_column: e.column.map(printable),
        value: e.value.map(printable),
        reason: printable(e.reason),
    });
    batch.rejected_records += 1;
}

/// Rejects one record for all its field errors; `at` is (record, line, sheet).
fn reject_unmappable(batch: &mut Batch, at: (u64, u64, Option<&str>), errors: Vec<FieldError>) {
    let (record, line, sheet) = at;
    for e in errors {
        batch.rejections.push(NewRejection {
            record_number: record,
            source_line: line,
            sheet: sheet.map(str::to_owned),
            field: Some(e.field),
            source_column: e.column.map(printable),
            value: Some(printable(e.value)),
            reason: printable(e.reason),
        });
    }
    batch.rejected_records += 1;
}
