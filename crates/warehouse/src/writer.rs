//! Keeps the warehouse's Parquet files up to date from the store's outbox.
//!
//! The writer reads change events after its watermark (the id of the last outbox event it
//! applied), in id order. For the carriers those events touch, it reads the carrier's
//! committed rows from the store and writes each table's months anew
//! (`<table>/carrier=<id>/month=<YYYY-MM>/part-0.parquet`, each put whole: a temporary file
//! renamed into place, or one object PUT), removes months that no longer have rows, and only
//! then stores the new watermark (`_carrierhub/watermark.json`). A writer that dies between
//! the two applies the same events again on restart and writes the same files: a partition's
//! file is a function of the store's rows alone, sorted by id, so nothing is duplicated or
//! skipped and the contents are identical.
//!
//! Invariant: a partition file is never appended to; it is replaced whole.

use crate::location::Location;
use crate::tables::{carrier_batches, Table};
use crate::{Result, WarehouseError};
use carrierhub_store::Store;
use datafusion::arrow::array::RecordBatch;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::Compression;
use datafusion::parquet::file::properties::WriterProperties;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

/// Events read per step.
pub const EVENTS_PER_STEP: usize = 10_000;
/// The name of every partition's file.
pub const PART_FILE: &str = "part-0.parquet";
const WATERMARK: [&str; 2] = ["_carrierhub", "watermark.json"];

/// What the writer has applied: every outbox event up to `outbox_id`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Watermark {
    pub outbox_id: i64,
}

/// What one step did.
#[derive(Debug, Clone, Default)]
pub struct Step {
    /// Events applied (0: caught up).
    pub events: usize,
    pub carriers: BTreeSet<String>,
    pub rows: u64,
    pub watermark: i64,
}

pub struct WarehouseWriter {
    store: Arc<dyn Store>,
    location: Location,
    events_per_step: usize,
}

impl WarehouseWriter {
    pub fn new(store: Arc<dyn Store>, location: Location) -> Self {
        Self {
            store,
            location,
            events_per_step: EVENTS_PER_STEP,
        }
    }

    /// Reads at most `n` events per step (default [`EVENTS_PER_STEP`]).
    pub fn with_events_per_step(mut self, n: usize) -> Self {
        self.events_per_step = n.max(1);
        self
    }

    pub fn location(&self) -> &Location {
        &self.location
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

    async fn store_watermark(&self, w: &Watermark) -> Result<()> {
        let bytes = serde_json::to_vec(w).expect("serialisable");
        self.location
            .store
            .put(&self.location.path(&WATERMARK), PutPayload::from(bytes))
            .await?;
        Ok(())
    }

    /// Applies the next events after the watermark (up to [`EVENTS_PER_STEP`]).
    pub async fn step(&self) -> Result<Step> {
        let mark = self.watermark().await?;
        let events = self
            .store
            .events_after(mark.outbox_id, self.events_per_step)
            .await?;
        let Some(last) = events.last() else {
            self.observe_lag(mark.outbox_id, None).await;
            return Ok(Step {
                watermark: mark.outbox_id,
                ..Step::default()
            });
        };
        let last_id = last.id;
        // Every event, submission events too, marks its carrier as touched: a carrier's
        // files are rewritten from what is committed, so an event seen late costs nothing.
        let carriers: BTreeSet<String> = events.iter().map(|e| e.carrier.clone()).collect();
        let mut rows = 0;
        for carrier in &carriers {
            rows += self.write_carrier(carrier).await?;
        }
        self.store_watermark(&Watermark { outbox_id: last_id })
            .await?;
        metrics::counter!("carrierhub_warehouse_events_applied_total")
            .increment(events.len() as u64);
        self.observe_lag(last_id, None).await;
        tracing::debug!(events = events.len(), watermark = last_id, carriers = ?carriers, rows, "warehouse step");
        Ok(Step {
            events: events.len(),
            carriers,
            rows,
            watermark: last_id,
        })
    }

    /// Applies events until none is left after the watermark; returns the last step's
    /// watermark.
    pub async fn sync(&self) -> Result<i64> {
        loop {
            let step = self.step().await?;
            if step.events == 0 {
                return Ok(step.watermark);
            }
        }
    }

    /// Runs until the process ends: a step, then a pause of `interval` (which bounds how
    /// often a busy carrier's files are rewritten); an error is logged and retried.
    pub async fn run(self, interval: Duration) {
        self.run_until(interval, tokio_util::sync::CancellationToken::new())
            .await
    }

    /// As [`WarehouseWriter::run`], until `stop` is cancelled: the step under way finishes
    /// (its files and watermark written), then it returns.
    pub async fn run_until(self, interval: Duration, stop: tokio_util::sync::CancellationToken) {
        tracing::info!(location = %self.location.describe(), "warehouse writer started");
        while !stop.is_cancelled() {
            if let Err(e) = self.step().await {
                tracing::warn!(error = %e, "warehouse step failed; retrying");
            }
            let _ = tokio::time::timeout(interval, stop.cancelled()).await;
        }
        tracing::info!("warehouse writer stopped");
    }

    /// Sets the lag gauges: events after the watermark, and the age of the oldest of them.
    async fn observe_lag(&self, watermark: i64, _hint: Option<()>) {
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

    /// Writes every table's months of `carrier` from the store; removes its other files.
    async fn write_carrier(&self, carrier: &str) -> Result<u64> {
        let data = self.store.warehouse_carrier(carrier).await?;
        let batches = tokio::task::spawn_blocking(move || {
            carrier_batches(&data)
                .into_iter()
                .map(|(table, months)| {
                    let files = months
                        .into_iter()
                        .map(|(month, batch)| {
                            let rows = batch.num_rows() as u64;
                            parquet_bytes(&batch).map(|bytes| (month, rows, bytes))
                        })
                        .collect::<Result<Vec<_>>>()?;
                    Ok((table, files))
                })
                .collect::<Result<Vec<_>>>()
        })
        .await
        .map_err(|e| WarehouseError::Corrupt(format!("writer task: {e}")))??;
        let carrier_dir = format!("carrier={carrier}");
        let mut total = 0;
        for (table, files) in batches {
            let mut written = HashSet::new();
            for (month, rows, bytes) in files {
                let path = self.location.path(&[
                    table.name(),
                    &carrier_dir,
                    &format!("month={month}"),
                    PART_FILE,
                ]);
                self.location
                    .store
                    .put(&path, PutPayload::from(bytes))
                    .await?;
                written.insert(path);
                total += rows;
                metrics::counter!("carrierhub_warehouse_rows_written_total", "table" => table.name())
                    .increment(rows);
            }
            self.remove_others(table, &carrier_dir, &written).await?;
        }
        Ok(total)
    }

    /// Deletes the files of `table` for the carrier that this write did not produce (months
    /// left without rows, temporary files of an interrupted write).
    async fn remove_others(
        &self,
        table: Table,
        carrier_dir: &str,
        keep: &HashSet<Path>,
    ) -> Result<()> {
        let dir = self.location.path(&[table.name(), carrier_dir]);
        let listed: Vec<_> = self.location.store.list(Some(&dir)).try_collect().await?;
        for object in listed {
            if !keep.contains(&object.location) {
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
