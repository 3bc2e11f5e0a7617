//! Keeps the warehouse's Parquet files up to date from the store's outbox.
//!
//! The writer reads change events after its watermark (the id of the last outbox event it
//! applied), in id order, and works out from them which partitions changed: it reads the
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

/// What the writer has applied: every outbox event up to `outbox_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub outbox_id: i64,
    /// The lease token of the writer that stored it (0: before leases).
    #[serde(default)]
    pub token: i64,
    /// That writer (`host:pid:n`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub writer: Option<String>,
}

/// What one step did.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Events applied (0: caught up, or another writer holds the lease).
    pub events: usize,
    pub carriers: BTreeSet<String>,
    /// Partition files written or removed.
    pub partitions: usize,
    pub rows: u64,
    pub watermark: i64,
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

    /// Applies the next events after the watermark (up to [`EVENTS_PER_STEP`]), if this
    /// writer holds (or takes) the location's lease.
    pub async fn step(&self) -> Result<Step> {
        let Some(token) = self.take_lease().await? else {
            return Ok(Step::default());
        };
        let mark = self.watermark().await?;
        let events = self
            .store
            .events_after(mark.outbox_id, self.events_per_step)
            .await?;
        let Some(last) = events.last() else {
            self.observe_lag(mark.outbox_id).await;
            return Ok(Step {
                watermark: mark.outbox_id,
                holder: true,
                ..Step::default()
            });
        };
        let last_id = last.id;
        let mut changes: BTreeMap<String, BTreeSet<Change>> = BTreeMap::new();
        for event in &events {
            if let Some(change) = change_of(event) {
                changes
                    .entry(event.carrier.clone())
                    .or_default()
                    .insert(change);
            }
        }
        let mut step = Step {
            events: events.len(),
            watermark: last_id,
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
        self.store_watermark(&Watermark {
            outbox_id: last_id,
            token,
            writer: Some(self.owner.clone()),
        })
        .await?;
        metrics::counter!("carrierhub_warehouse_events_applied_total")
            .increment(events.len() as u64);
        metrics::counter!("carrierhub_warehouse_partitions_written_total")
            .increment(step.partitions as u64);
        self.observe_lag(last_id).await;
        tracing::debug!(events = events.len(), watermark = last_id, carriers = ?step.carriers,
            partitions = step.partitions, rows = step.rows, "warehouse step");
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

    /// Applies events until none is left after the watermark; returns the last step's
    /// watermark, and gives the lease up. Fails when another writer holds the location's
    /// lease.
    pub async fn sync(&self) -> Result<i64> {
        let synced = self.sync_holding().await;
        self.release().await?;
        synced
    }

    async fn sync_holding(&self) -> Result<i64> {
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

    /// Sets the lag gauges: events after the watermark, and the age of the oldest of them.
    async fn observe_lag(&self, watermark: i64) {
        let Ok(last) = self.store.last_event_id().await else {
            return;
        };
        let behind = (last - watermark).max(0);
        metrics::gauge!("carrierhub_warehouse_lag_events").set(behind as f64);
        let seconds = if behind == 0 {
            0.0
        } else {
            match self.store.events_after(watermark, 1).await {
                Ok(next) => next.first().map_or(0.0, |e| {
                    (chrono::Utc::now() - e.created_at)
                        .num_milliseconds()
                        .max(0) as f64
                        / 1000.0
                }),
                Err(_) => return,
            }
        };
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
    use carrierhub_store::SqliteStore;

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
