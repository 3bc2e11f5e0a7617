//! Keeps the warehouse's Parquet files up to date from the store's outbox.
//!
//! The writer reads the published change events after its watermark (the publication
//! position, `published_seq`, of the last event it applied), in publication order, and works
//! out from them which partitions changed: it reads the
//! history of the policies and claims the events name, and [`touched_partitions`] names the
//! (table, carrier, month) partitions whose rows the changes altered (new versions, old
//! versions whose validity ended, records moved from one month to another, claims whose
//! policy version in force changed). It reads those months' rows from the store and writes
//! each of those partitions anew (`<table>/carrier=<id>/month=<YYYY-MM>/part-0.parquet`, each
//! put whole: a temporary file renamed into place, or one object PUT), removes those left
//! without rows, and only then stores the new watermark (`_carrierhub/watermark.json`). The
//! other months' files are left as they are. A writer that dies between the two applies the
//! same events again on restart and writes the same files: a partition's file is a function
//! of the store's rows alone, sorted by id, so nothing is duplicated or skipped and the
//! contents are identical.
//!
//! One writer per location: each step takes or renews a fenced lease in the store (named
//! after the location). A writer that does not hold it writes nothing; one whose lease ran
//! out while it worked renews it before its next file and before the watermark, sees the
//! token changed when another writer took over, and stops without storing its watermark.
//! The watermark records the token of the writer that stored it.
//!
//! Publication order, not ids: on PostgreSQL an outbox id is taken at INSERT and seen at
//! COMMIT, so an event with a lower id can become visible after one with a higher id was
//! applied, and a writer following ids would pass it for good. The relay numbers events as
//! it marks them published (`Store::mark_events_published`), and every position is committed
//! before a higher one can be seen, so a writer following positions misses nothing. An event
//! is therefore applied once the relay published it: with `serve`, that is within the
//! relay's poll; `carrierhub warehouse sync` publishes what is pending first.
//!
//! A watermark of the earlier version (an outbox id and no position) is taken up from the
//! start of the publication order, passing over the events with an id up to its own (that
//! version applied them; the bound is kept in the watermark as `legacy_through`).
//!
//! Invariant: a partition file is never appended to; it is replaced whole.

use crate::location::Location;
use crate::tables::{carrier_batches, touched_partitions, Change, PartitionSet, Table};
use crate::{Result, WarehouseError};
use carrierhub_store::{OutboxEvent, Store, WarehouseMonths, WarehouseSelection};
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// Events read per step.
pub const EVENTS_PER_STEP: usize = 10_000;
/// The name of every partition's file.
pub const PART_FILE: &str = "part-0.parquet";
/// How long a writer's lease lasts unless renewed.
pub const LEASE_TTL: Duration = Duration::from_secs(30);
const WATERMARK: [&str; 2] = ["_carrierhub", "watermark.json"];

/// What the writer has applied: every published event up to the publication position
/// `published_seq`, of which `outbox_id` is the last.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    /// The id of the last event applied (0: none). Without `published_seq` (a watermark of
    /// the earlier version, which followed ids): every event up to this id was applied.
    pub outbox_id: i64,
    /// The publication position of the last event applied: the writer reads after it.
    /// `None` in a new warehouse and in a watermark of the earlier version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub published_seq: Option<i64>,
    /// The events with an id up to this one were applied by the earlier version: the writer
    /// passes over them, wherever they are in the publication order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub legacy_through: Option<i64>,
    /// The lease token of the writer that stored it (0: before leases).
    #[serde(default)]
    pub token: i64,
    /// That writer (`host:pid:n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

impl Watermark {
    /// The publication position to read after.
    pub fn position(&self) -> i64 {
        self.published_seq.unwrap_or(0)
    }

    /// Events with an id up to this one are passed over (0: none): those the earlier
    /// version, which followed ids, applied.
    pub fn applied_through(&self) -> i64 {
        match (self.legacy_through, self.published_seq) {
            (Some(through), _) => through,
            (None, None) => self.outbox_id,
            (None, Some(_)) => 0,
        }
    }
}

/// How far the warehouse is behind the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lag {
    /// Published events after the watermark's position: the newest position less the
    /// watermark's (the relay numbers events without gaps).
    pub published: u64,
    /// Events the relay has not published yet: the warehouse reads them once it has.
    pub unpublished: u64,
    /// When the oldest of them was written (`None`: none is waiting).
    pub oldest: Option<chrono::DateTime<chrono::Utc>>,
    /// The newest publication position.
    pub last_published_seq: i64,
}

impl Lag {
    /// Events not yet in the warehouse, published or not.
    pub fn events(&self) -> u64 {
        self.published + self.unpublished
    }
}

/// What one step did.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Events the watermark moved past (0: caught up, or another writer holds the lease),
    /// including those an earlier version applied already.
    pub events: usize,
    pub carriers: BTreeSet<String>,
    /// Partition files written or removed.
    pub partitions: usize,
    pub rows: u64,
    /// The watermark after the step.
    pub watermark: Watermark,
    /// False when another writer holds the location's lease: nothing was done.
    pub holder: bool,
}

/// The lease as this writer last took it.
#[derive(Debug, Clone, Copy)]
struct Held {
    token: i64,
    /// Renew before writing past this (local clock; a margin before the store's expiry).
    renew_after: Instant,
}

pub struct WarehouseWriter {
    store: Arc<dyn Store>,
    location: Location,
    events_per_step: usize,
    owner: String,
    lease_ttl: Duration,
    held: Mutex<Option<Held>>,
}

/// `host:pid:n`, unique among the writers of this process.
fn owner_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_owned());
    format!(
        "{host}:{}:{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A change event's record: policy and claim events; submission events change no row.
fn change_of(event: &OutboxEvent) -> Option<Change> {
    let version = event.payload.get("version").and_then(|v| v.as_i64());
    if event.event_type.starts_with("policy.") {
        let id = event
            .payload
            .get("policy_id")
            .and_then(|v| v.as_i64())
            .unwrap_or(event.subject_id);
        Some(Change::Policy { id, version })
    } else if event.event_type.starts_with("claim.") {
        let id = event
            .payload
            .get("claim_id")
            .and_then(|v| v.as_i64())
            .unwrap_or(event.subject_id);
        Some(Change::Claim { id, version })
    } else {
        None
    }
}

impl WarehouseWriter {
    pub fn new(store: Arc<dyn Store>, location: Location) -> Self {
        Self {
            store,
            location,
            events_per_step: EVENTS_PER_STEP,
            owner: owner_id(),
            lease_ttl: LEASE_TTL,
            held: Mutex::new(None),
        }
    }

    /// Reads at most `n` events per step (default [`EVENTS_PER_STEP`]).
    pub fn with_events_per_step(mut self, n: usize) -> Self {
        self.events_per_step = n.max(1);
        self
    }

    /// How long the writer's lease lasts unless renewed (default [`LEASE_TTL`]): how long
    /// another writer waits to take over after this one dies.
    pub fn with_lease_ttl(mut self, ttl: Duration) -> Self {
        self.lease_ttl = ttl.max(Duration::from_millis(100));
        self
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// This writer's name in the lease and the watermark (`host:pid:n`).
    pub fn owner(&self) -> &str {
        &self.owner
    }

    fn lease_name(&self) -> String {
        format!("warehouse:{}", self.location.describe())
    }

    /// The stored watermark (0 when the warehouse is new).
    pub async fn watermark(&self) -> Result<Watermark> {
        match self
            .location
            .store
            .get(&self.location.path(&WATERMARK))
            .await
        {
            Ok(got) => {
                let bytes = got.bytes().await?;
                serde_json::from_slice(&bytes)
                    .map_err(|e| WarehouseError::Corrupt(format!("watermark: {e}")))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(Watermark::default()),
            Err(e) => Err(e.into()),
        }
    }

    /// Takes or renews the lease: its token, or `None` while another writer holds it.
    async fn take_lease(&self) -> Result<Option<i64>> {
        let asked = Instant::now();
        let taken = self
            .store
            .take_fenced_lease(&self.lease_name(), &self.owner, self.lease_ttl)
            .await?;
        let mut held = self.held.lock().await;
        *held = taken.as_ref().map(|l| Held {
            token: l.token,
            // Renewed with a fifth of the lease to spare, counted from before the request.
            renew_after: asked + self.lease_ttl * 4 / 5,
        });
        Ok(taken.map(|l| l.token))
    }

    /// Fails with [`WarehouseError::LeaseLost`] unless this writer still holds the lease
    /// with `token`; renews it first when due, or always with `renew`.
    async fn fence(&self, token: i64, renew: bool) -> Result<()> {
        let due = match *self.held.lock().await {
            Some(h) if h.token == token => renew || Instant::now() >= h.renew_after,
            _ => return Err(self.lost(token)),
        };
        if due && self.take_lease().await? != Some(token) {
            return Err(self.lost(token));
        }
        Ok(())
    }

    fn lost(&self, token: i64) -> WarehouseError {
        WarehouseError::LeaseLost(format!(
            "writer {} lost the lease of {} (token {token}) to another writer; it stops \
             without storing its watermark",
            self.owner,
            self.location.describe()
        ))
    }

    async fn store_watermark(&self, w: &Watermark) -> Result<()> {
        let bytes = serde_json::to_vec(w).expect("serialisable");
        self.location
            .store
            .put(&self.location.path(&WATERMARK), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Applies the next published events after the watermark (up to [`EVENTS_PER_STEP`]),
    /// if this writer holds (or takes) the location's lease.
    pub async fn step(&self) -> Result<Step> {
        let Some(token) = self.take_lease().await? else {
            return Ok(Step::default());
        };
        let mark = self.watermark().await?;
        let applied_through = mark.applied_through();
        let mut position = mark.position();
        let mut last = None;
        let mut read = 0;
        let mut events = Vec::new();
        // Events an earlier version applied are passed over; a step goes on reading until it
        // has events to apply or has read them all.
        loop {
            let batch = self
                .store
                .published_events_after(position, self.events_per_step)
                .await?;
            let full = batch.len() >= self.events_per_step;
            for event in batch {
                let seq = event.published_seq.ok_or_else(|| {
                    WarehouseError::Corrupt(format!(
                        "outbox event {} was read as published without its position",
                        event.id
                    ))
                })?;
                position = seq;
                last = Some((event.id, seq));
                read += 1;
                if event.id > applied_through {
                    events.push(event);
                }
            }
            if !events.is_empty() || !full {
                break;
            }
        }
        let Some((last_id, last_seq)) = last else {
            self.observe_lag(&mark).await;
            return Ok(Step {
                watermark: mark,
                holder: true,
                ..Step::default()
            });
        };
        let mut changes: BTreeMap<String, BTreeSet<Change>> = BTreeMap::new();
        for event in &events {
            if let Some(change) = change_of(event) {
                changes
                    .entry(event.carrier.clone())
                    .or_default()
                    .insert(change);
            }
        }
        let watermark = Watermark {
            outbox_id: last_id,
            published_seq: Some(last_seq),
            legacy_through: (applied_through > 0).then_some(applied_through),
            token,
            writer: Some(self.owner.clone()),
        };
        let mut step = Step {
            events: read,
            watermark: watermark.clone(),
            holder: true,
            ..Step::default()
        };
        for (carrier, changes) in &changes {
            let (partitions, rows) = self.write_changes(carrier, changes, token).await?;
            if partitions > 0 {
                step.carriers.insert(carrier.clone());
            }
            step.partitions += partitions;
            step.rows += rows;
        }
        self.fence(token, true).await?;
        self.store_watermark(&watermark).await?;
        metrics::counter!("carrierhub_warehouse_events_applied_total")
            .increment(events.len() as u64);
        metrics::counter!("carrierhub_warehouse_partitions_written_total")
            .increment(step.partitions as u64);
        self.observe_lag(&watermark).await;
        tracing::debug!(events = read, applied = events.len(), watermark = last_id,
            position = last_seq, carriers = ?step.carriers, partitions = step.partitions,
            rows = step.rows, "warehouse step");
        Ok(step)
    }

    /// Gives the lease up (it expires now) so that another writer, a later `warehouse sync`
    /// say, need not wait for it to run out.
    pub async fn release(&self) -> Result<()> {
        let mut held = self.held.lock().await;
        if held.take().is_some() {
            self.store
                .take_fenced_lease(&self.lease_name(), &self.owner, Duration::ZERO)
                .await?;
        }
        Ok(())
    }

    /// Applies published events until none is left after the watermark; returns the
    /// watermark, and gives the lease up. Fails when another writer holds the location's
    /// lease. Events not yet published are not applied (see the module's documentation).
    pub async fn sync(&self) -> Result<Watermark> {
        let synced = self.sync_holding().await;
        self.release().await?;
        synced
    }

    async fn sync_holding(&self) -> Result<Watermark> {
        loop {
            let step = self.step().await?;
            if !step.holder {
                return Err(WarehouseError::LeaseLost(format!(
                    "another writer holds the lease of {}; it is written by one writer at a \
                     time (stop the other, or wait until its lease runs out)",
                    self.location.describe()
                )));
            }
            if step.events == 0 {
                return Ok(step.watermark);
            }
        }
    }

    /// Runs until the process ends: a step, then a pause of `interval` (which bounds how
    /// often a busy month's files are rewritten); an error is logged and retried. While
    /// another writer holds the lease, it stands by and takes over when that lease runs out.
    pub async fn run(self, interval: Duration) {
        self.run_until(interval, tokio_util::sync::CancellationToken::new())
            .await
    }

    /// As [`WarehouseWriter::run`], until `stop` is cancelled: the step under way finishes
    /// (its files and watermark written), the lease is released, then it returns.
    pub async fn run_until(self, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        tracing::info!(location = %self.location.describe(), owner = %self.owner,
            "warehouse writer started");
        let mut holder = None;
        while !stop.is_cancelled() {
            match self.step().await {
                Ok(step) => {
                    if holder != Some(step.holder) {
                        if step.holder {
                            tracing::info!(owner = %self.owner, "warehouse writer holds the lease");
                        } else {
                            tracing::info!(owner = %self.owner,
                                "another warehouse writer holds the lease; standing by");
                        }
                        holder = Some(step.holder);
                    }
                }
                Err(e @ WarehouseError::LeaseLost(_)) => {
                    tracing::warn!(error = %e, "warehouse step stopped");
                    holder = Some(false);
                }
                Err(e) => tracing::warn!(error = %e, "warehouse step failed; retrying"),
            }
            let _ = tokio::time::timeout(interval, stop.cancelled()).await;
        }
        // A standby writer takes over at once instead of after the lease runs out.
        if let Err(e) = self.release().await {
            tracing::warn!(error = %e, "cannot release the warehouse lease; it runs out by itself");
        }
        tracing::info!("warehouse writer stopped");
    }

    /// How far the warehouse at `watermark` is behind the store: the published events after
    /// its position, those not published yet, and when the oldest of them was written. A
    /// watermark of the earlier version counts from the start of the publication order
    /// until its first step.
    pub async fn lag(&self, watermark: &Watermark) -> Result<Lag> {
        let last_published_seq = self.store.last_published_seq().await?;
        let backlog = self.store.outbox_backlog().await?;
        let published = (last_published_seq - watermark.position()).max(0) as u64;
        let next = if published > 0 {
            self.store
                .published_events_after(watermark.position(), 1)
                .await?
                .first()
                .map(|e| e.created_at)
        } else {
            None
        };
        let oldest = match (next, backlog.oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        Ok(Lag {
            published,
            unpublished: backlog.ready,
            oldest,
            last_published_seq,
        })
    }

    /// Sets the lag gauges: events not yet applied (published after the watermark, and not
    /// yet published), and the age of the oldest of them.
    async fn observe_lag(&self, watermark: &Watermark) {
        let Ok(lag) = self.lag(watermark).await else {
            return;
        };
        metrics::gauge!("carrierhub_warehouse_lag_events").set(lag.events() as f64);
        let seconds = lag.oldest.map_or(0.0, |oldest| {
            (chrono::Utc::now() - oldest).num_milliseconds().max(0) as f64 / 1000.0
        });
        metrics::gauge!("carrierhub_warehouse_lag_seconds").set(seconds);
    }

    /// Rewrites the partitions of `carrier` that `changes` touched, from the store; returns
    /// how many files were written or removed, and the rows written.
    async fn write_changes(
        &self,
        carrier: &str,
        changes: &BTreeSet<Change>,
        token: i64,
    ) -> Result<(usize, u64)> {
        let mut policies = BTreeSet::new();
        let mut claims = BTreeSet::new();
        for change in changes {
            match *change {
                Change::Policy { id, .. } => policies.insert(id),
                Change::Claim { id, .. } => claims.insert(id),
            };
        }
        let history = self
            .store
            .warehouse_rows(
                carrier,
                &WarehouseSelection::Records {
                    policies: policies.into_iter().collect(),
                    claims: claims.into_iter().collect(),
                },
            )
            .await?;
        let changes: Vec<Change> = changes.iter().copied().collect();
        let touched = touched_partitions(&changes, &history);
        drop(history);
        if touched.is_empty() {
            return Ok((0, 0));
        }
        self.write_partitions(carrier, &touched, token).await
    }

    /// Writes the partitions `touched` of `carrier` from the store's rows of their months;
    /// removes those left without rows.
    pub(crate) async fn write_partitions(
        &self,
        carrier: &str,
        touched: &PartitionSet,
        token: i64,
    ) -> Result<(usize, u64)> {
        let months = |tables: &[Table]| -> Vec<String> {
            let set: BTreeSet<&String> = tables
                .iter()
                .filter_map(|t| touched.get(t))
                .flatten()
                .collect();
            set.into_iter().cloned().collect()
        };
        let selection = WarehouseSelection::Months(WarehouseMonths {
            policies: months(&[Table::Policies, Table::Coverages]),
            premium_transactions: months(&[Table::PremiumTransactions]),
            claims: months(&[Table::Claims]),
            claim_transactions: months(&[Table::ClaimTransactions]),
        });
        let data = self.store.warehouse_rows(carrier, &selection).await?;
        let wanted = touched.clone();
        // Only the touched partitions: the rows read for reference (the versions of the
        // policies that transactions and claims refer to) make partial other months.
        let files = tokio::task::spawn_blocking(move || {
            let mut files = Vec::new();
            for (table, batches) in carrier_batches(&data) {
                let Some(months) = wanted.get(&table) else {
                    continue;
                };
                let mut built: BTreeMap<String, RecordBatch> = batches.into_iter().collect();
                for month in months {
                    let file = match built.remove(month) {
                        Some(batch) => {
                            let rows = batch.num_rows() as u64;
                            Some((rows, parquet_bytes(&batch)?))
                        }
                        None => None,
                    };
                    files.push((table, month.clone(), file));
                }
            }
            Ok::<_, WarehouseError>(files)
        })
        .await
        .map_err(|e| WarehouseError::Corrupt(format!("writer task: {e}")))??;
        let carrier_dir = format!("carrier={carrier}");
        let (mut partitions, mut total) = (0, 0);
        for (table, month, file) in files {
            self.fence(token, false).await?;
            let dir = self
                .location
                .path(&[table.name(), &carrier_dir, &format!("month={month}")]);
            let path = dir.clone().join(PART_FILE);
            match file {
                Some((rows, bytes)) => {
                    self.location
                        .store
                        .put(&path, PutPayload::from(bytes))
                        .await?;
                    total += rows;
                    metrics::counter!("carrierhub_warehouse_rows_written_total", "table" => table.name())
                        .increment(rows);
                    self.remove_in(&dir, Some(&path)).await?;
                }
                None => self.remove_in(&dir, None).await?,
            }
            partitions += 1;
        }
        Ok((partitions, total))
    }

    /// Deletes the objects of a partition's directory but `keep` (a month left without
    /// rows; temporary files of an interrupted write).
    async fn remove_in(&self, dir: &Path, keep: Option<&Path>) -> Result<()> {
        let listed: Vec<_> = match self.location.store.list(Some(dir)).try_collect().await {
            Ok(listed) => listed,
            Err(object_store::Error::NotFound { .. }) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        for object in listed {
            if Some(&object.location) != keep {
                match self.location.store.delete(&object.location).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
    }
}

/// A record batch as a Parquet file (Snappy; no timestamps in the metadata, so the same rows
/// give the same bytes).
pub fn parquet_bytes(batch: &RecordBatch) -> Result<Vec<u8>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_created_by("carrierhub".to_owned())
        .build();
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), Some(props))?;
    writer.write(batch)?;
    writer.close()?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use carrierhub_model::*;
    use carrierhub_store::{Batch, NewMapping, NewSubmission, SqliteStore, StagedRecord};

    async fn sqlite_store(dir: &std::path::Path) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(&dir.join("store.db")).await.unwrap())
    }

    /// Commits policy `number` of carrier `acme`, effective on the first of `month` 2025, as
    /// a submission of its own; returns the ids of the events it wrote (none published).
    async fn commit_policy(store: &Arc<dyn Store>, number: &str, month: u32) -> Vec<i64> {
        let before = store.last_event_id().await.unwrap();
        let acme = CarrierId::parse("acme").unwrap();
        store.ensure_carrier(&acme, "Acme").await.unwrap();
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
            .unwrap();
        store.record_document("d", 1).await.unwrap();
        let submission = store
            .create_submission(NewSubmission {
                carrier: &acme,
                mapping_id: mapping.id,
                file_name: "f.csv",
                document_sha256: "d",
                received_via: "test",
                replay_of: None,
            })
            .await
            .unwrap();
        let lease = Duration::from_secs(60);
        store
            .claim_submission(submission, "w", lease)
            .await
            .unwrap()
            .claimed()
            .unwrap();
        let eur = Currency::parse("EUR").unwrap();
        let policy = Policy {
            carrier: acme.clone(),
            number: PolicyNumber::parse(number).unwrap(),
            line_of_business: Coded::new(LineOfBusiness::Homeowners, "WG"),
            status: Coded::new(PolicyStatus::Active, "A"),
            effective_date: chrono::NaiveDate::from_ymd_opt(2025, month, 1).unwrap(),
            expiration_date: chrono::NaiveDate::from_ymd_opt(2026, month, 1).unwrap(),
            premium: Money::new(rust_decimal::Decimal::new(10000, 2), eur),
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
        };
        store
            .commit_batch(Batch {
                message_id: None,
                submission_id: submission,
                owner: "w".into(),
                lease,
                records: vec![StagedRecord {
                    record: CanonicalRecord::Policy(policy),
                    record_number: 1,
                    source_line: 2,
                    sheet: None,
                    canonical: None,
                }],
                rejections: vec![],
                rejected_records: 0,
                skipped_records: 0,
                through_record: 1,
            })
            .await
            .unwrap();
        store
            .finish_submission(submission, "w", None)
            .await
            .unwrap();
        let ids: Vec<i64> = store
            .unpublished_events(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.id)
            .filter(|id| *id > before)
            .collect();
        assert!(ids.len() >= 2, "a submission and a policy event: {ids:?}");
        ids
    }

    /// Whether the warehouse at `dir` has acme's `policies` file of month `2025-MM`.
    fn has_month(dir: &std::path::Path, month: u32) -> bool {
        dir.join(format!(
            "policies/carrier=acme/month=2025-{month:02}/{PART_FILE}"
        ))
        .exists()
    }

    #[tokio::test]
    async fn the_writer_follows_the_publication_order_and_applies_a_lower_id_published_later() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let wh = dir.path().join("wh");
        let writer = WarehouseWriter::new(
            store.clone(),
            Location::parse(wh.to_str().unwrap()).unwrap(),
        );
        let january = commit_policy(&store, "P1", 1).await;
        let march = commit_policy(&store, "P2", 3).await;

        // Nothing is published: nothing is applied, and all of it is the lag.
        let step = writer.step().await.unwrap();
        assert_eq!((step.holder, step.events), (true, 0));
        let lag = writer
            .lag(&writer.watermark().await.unwrap())
            .await
            .unwrap();
        assert_eq!(lag.published, 0);
        assert_eq!(lag.unpublished as usize, january.len() + march.len());
        assert!(lag.oldest.is_some());

        // The higher ids are published first (as when the lower ones commit later).
        store.mark_events_published(&march).await.unwrap();
        let step = writer.step().await.unwrap();
        assert_eq!(step.events, march.len());
        assert!(has_month(&wh, 3) && !has_month(&wh, 1));
        let mark = writer.watermark().await.unwrap();
        assert_eq!(mark.outbox_id, *march.last().unwrap());
        assert_eq!(mark.published_seq, Some(march.len() as i64));
        assert_eq!(mark.legacy_through, None);
        let lag = writer.lag(&mark).await.unwrap();
        assert_eq!(
            (lag.published, lag.unpublished as usize),
            (0, january.len())
        );

        // The lower ids, published later, come after that position: applied, not passed.
        store.mark_events_published(&january).await.unwrap();
        let lag = writer.lag(&mark).await.unwrap();
        assert_eq!(
            (lag.published as usize, lag.unpublished),
            (january.len(), 0)
        );
        let step = writer.step().await.unwrap();
        assert_eq!(step.events, january.len());
        assert!(has_month(&wh, 1) && has_month(&wh, 3));
        let mark = writer.watermark().await.unwrap();
        assert_eq!(mark.outbox_id, *january.last().unwrap());
        assert_eq!(
            mark.published_seq,
            Some((january.len() + march.len()) as i64)
        );
        let lag = writer.lag(&mark).await.unwrap();
        assert_eq!((lag.events(), lag.oldest), (0, None));
        assert_eq!(writer.step().await.unwrap().events, 0);
    }

    #[tokio::test]
    async fn a_watermark_of_the_earlier_release_is_taken_up_past_the_events_it_applied() {
        let dir = tempfile::tempdir().unwrap();
        let store = sqlite_store(dir.path()).await;
        let wh = dir.path().join("wh");
        let location = Location::parse(wh.to_str().unwrap()).unwrap();
        let january = commit_policy(&store, "P1", 1).await;
        let march = commit_policy(&store, "P2", 3).await;
        store
            .mark_events_published(&[january.clone(), march.clone()].concat())
            .await
            .unwrap();
        // The earlier release applied January's events and stored their last id.
        let through = *january.last().unwrap();
        location
            .store
            .put(
                &location.path(&WATERMARK),
                PutPayload::from(format!(r#"{{"outbox_id":{through},"token":1}}"#).into_bytes()),
            )
            .await
            .unwrap();
        let writer = WarehouseWriter::new(store.clone(), location).with_events_per_step(1);
        assert_eq!(writer.watermark().await.unwrap().applied_through(), through);

        // One event at a time: the first step passes over January's to the first of March's.
        let step = writer.step().await.unwrap();
        assert_eq!(step.events, january.len() + 1);
        let synced = writer.sync().await.unwrap();
        assert!(has_month(&wh, 3), "March's policy is written");
        assert!(
            !has_month(&wh, 1),
            "January's, applied before, is passed over"
        );
        assert_eq!(
            synced,
            Watermark {
                outbox_id: *march.last().unwrap(),
                published_seq: Some((january.len() + march.len()) as i64),
                legacy_through: Some(through),
                token: synced.token,
                writer: Some(writer.owner().to_owned()),
            }
        );
        assert_eq!(writer.watermark().await.unwrap(), synced);
    }

    #[tokio::test]
    async fn one_writer_holds_a_location_and_a_replaced_one_finds_out_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            SqliteStore::open(&dir.path().join("store.db"))
                .await
                .unwrap(),
        );
        let location = Location::parse(dir.path().join("wh").to_str().unwrap()).unwrap();
        let ttl = Duration::from_millis(300);
        let a = WarehouseWriter::new(store.clone(), location.clone()).with_lease_ttl(ttl);
        let b = WarehouseWriter::new(store.clone(), location.clone()).with_lease_ttl(ttl);
        assert_ne!(a.owner(), b.owner());
        assert!(a.step().await.unwrap().holder);
        assert!(!b.step().await.unwrap().holder);
        assert!(matches!(b.sync().await, Err(WarehouseError::LeaseLost(_))));
        // Another location has a lease of its own.
        let elsewhere = Location::parse(dir.path().join("other").to_str().unwrap()).unwrap();
        let c = WarehouseWriter::new(store.clone(), elsewhere).with_lease_ttl(ttl);
        assert!(c.step().await.unwrap().holder);

        // A stalls past its lease; B takes it over.
        let token = a.held.lock().await.expect("held").token;
        a.fence(token, false).await.unwrap();
        tokio::time::sleep(ttl + Duration::from_millis(50)).await;
        assert!(b.step().await.unwrap().holder);
        let taken = b.held.lock().await.expect("held").token;
        assert_eq!(taken, token + 1);
        // A, going on, finds out before its next file or its watermark, and stands by.
        for renew in [false, true] {
            assert!(matches!(
                a.fence(token, renew).await,
                Err(WarehouseError::LeaseLost(_))
            ));
        }
        assert!(!a.step().await.unwrap().holder);
        assert!(b.step().await.unwrap().holder);
    }
}
