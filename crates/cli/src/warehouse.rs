//! `carrierhub query` and `carrierhub warehouse …`: SQL over the warehouse's Parquet files,
//! bringing them up to date, and synthetic tables for benchmarks.

use crate::app::{App, Location};
use anyhow::Context;
use carrierhub_pipeline::Relay;
use carrierhub_store::Scope;
use carrierhub_warehouse::tables::{date32, Table, MONEY_PRECISION, MONEY_SCALE};
use carrierhub_warehouse::writer::{parquet_bytes, PART_FILE};
use carrierhub_warehouse::{Format, QueryEngine, QueryLimits, WarehouseWriter};
use chrono::NaiveDate;
use clap::{Args, Subcommand};
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args)]
pub struct QueryArgs {
    /// The SQL: SELECT, WITH or EXPLAIN over the tables policies, coverages,
    /// premium_transactions, claims and claim_transactions.
    pub sql: String,
    /// json (an array of objects), csv, arrow (an Arrow IPC stream) or parquet.
    #[arg(long, default_value = "json", value_parser = parse_format)]
    pub format: Format,
    /// Write the answer to this file instead of standard output.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Only these carriers' rows (repeatable); default: all.
    #[arg(long = "carrier")]
    pub carriers: Vec<String>,
    /// Only these books' (producer codes') rows (repeatable); default: all.
    #[arg(long = "book")]
    pub books: Vec<String>,
    #[command(flatten)]
    pub limits: QueryLimitArgs,
    /// Print the number of rows and the time taken to standard error.
    #[arg(long)]
    pub timing: bool,
}

/// Each query's memory and time limits; each flag given overrides the `[query]` settings.
#[derive(Args, Clone, Debug, Default)]
pub struct QueryLimitArgs {
    /// Memory one query may use, in MiB: its hash tables, sorts and aggregates
    /// (`query.memory_mib`, default 512).
    #[arg(long)]
    pub query_memory_mib: Option<usize>,
    /// Seconds one query may run (`query.timeout_secs`, default 25).
    #[arg(long)]
    pub query_timeout_secs: Option<u64>,
    /// Largest answer of one query, in MiB (`query.max_result_mib`, default 64).
    #[arg(long)]
    pub query_max_result_mib: Option<usize>,
}

impl QueryLimitArgs {
    pub fn apply(&self, query: &mut crate::settings::QuerySettings) {
        if let Some(v) = self.query_memory_mib {
            query.memory_mib = v;
        }
        if let Some(v) = self.query_timeout_secs {
            query.timeout_secs = v;
        }
        if let Some(v) = self.query_max_result_mib {
            query.max_result_mib = v;
        }
    }
}

fn parse_format(s: &str) -> Result<Format, String> {
    Format::parse(s).ok_or_else(|| format!("unknown format '{s}'; json, csv, arrow or parquet"))
}

#[derive(Subcommand)]
pub enum WarehouseCommand {
    /// Apply every change event after the watermark, then exit.
    Sync,
    /// The watermark, the newest event and the lag.
    Status,
    /// Write synthetic premium and claim transactions straight into a warehouse directory
    /// (for benchmarks; the store is not involved).
    GenBench(GenBenchArgs),
}

#[derive(Args)]
pub struct GenBenchArgs {
    /// The directory to write (it becomes a warehouse: `<table>/carrier=…/month=…/`).
    #[arg(long)]
    pub out: std::path::PathBuf,
    /// Claim transaction rows.
    #[arg(long, default_value_t = 10_000_000)]
    pub claim_transactions: u64,
    /// Premium transaction rows (default: a tenth of the claim transactions).
    #[arg(long)]
    pub premium_transactions: Option<u64>,
    #[arg(long, default_value_t = 7)]
    pub carriers: u32,
    #[arg(long, default_value_t = 24)]
    pub months: u32,
}

pub async fn query(
    location: &Location,
    args: QueryArgs,
    limits: QueryLimits,
) -> anyhow::Result<ExitCode> {
    let engine = QueryEngine::new(location.warehouse()?, limits);
    let scope = Scope {
        carriers: (!args.carriers.is_empty()).then(|| args.carriers.iter().cloned().collect()),
        books: (!args.books.is_empty()).then(|| args.books.iter().cloned().collect()),
    };
    let started = Instant::now();
    let out = match engine.run(&args.sql, &scope, args.format).await {
        Ok(out) => out,
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let elapsed = started.elapsed();
    match &args.out {
        Some(path) => std::fs::write(path, &out.body)
            .with_context(|| format!("cannot write {}", path.display()))?,
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout.write_all(&out.body)?;
            if matches!(args.format, Format::Json) {
                stdout.write_all(b"\n")?;
            }
            stdout.flush()?;
        }
    }
    if args.timing {
        eprintln!("{} rows in {:.3} s", out.rows, elapsed.as_secs_f64());
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn run(location: &Location, command: WarehouseCommand) -> anyhow::Result<ExitCode> {
    match command {
        WarehouseCommand::Sync => {
            let app = App::open(location).await?;
            publish_pending(&app, location).await;
            let writer = WarehouseWriter::new(app.store.clone(), location.warehouse()?);
            let watermark = writer.sync().await?;
            println!(
                "warehouse {} is up to date through event {} (publication position {})",
                writer.location().describe(),
                watermark.outbox_id,
                watermark.position()
            );
        }
        WarehouseCommand::Status => {
            let app = App::open(location).await?;
            let writer = WarehouseWriter::new(app.store.clone(), location.warehouse()?);
            let watermark = writer.watermark().await?;
            let lag = writer.lag(&watermark).await?;
            let last = app.store.last_event_id().await?;
            println!(
                "{}",
                serde_json::json!({
                    "location": writer.location().describe(),
                    "watermark": watermark.outbox_id,
                    "published_seq": watermark.position(),
                    "last_event": last,
                    "last_published_seq": lag.last_published_seq,
                    "unpublished": lag.unpublished,
                    "lag_events": lag.events(),
                })
            );
        }
        WarehouseCommand::GenBench(args) => gen_bench(args).await?,
    }
    Ok(ExitCode::SUCCESS)
}

/// How long `warehouse sync` waits for another relay (a running server's) to publish the
/// events that were pending when it started.
const PUBLISH_WAIT: Duration = Duration::from_secs(30);
/// How often it looks meanwhile.
const PUBLISH_POLL: Duration = Duration::from_millis(200);

/// Publishes the outbox's pending events through the relay (to the configured broker), so
/// that every event committed before the sync began is in the publication order the
/// warehouse follows: without a server nothing else publishes them. When another relay (a
/// running server's) holds the relay's lease, waits until it has published them, at most
/// [`PUBLISH_WAIT`]. Gives the lease up afterwards, so a server's relay need not wait for it
/// to run out. A failure or a wait given up is said on standard error, and the sync applies
/// what is published (the rest is applied by the next sync or the warehouse role).
async fn publish_pending(app: &App, location: &Location) {
    match publish_pending_through(app, location).await {
        Ok(Published::All) => {}
        Ok(Published::GaveUp { pending }) => eprintln!(
            "warning: another relay (a running server's) holds the outbox's lease and has not \
             published the events written before the sync began within {} s ({pending} \
             unpublished now); the warehouse is brought up to date with the events published \
             so far, and the rest is applied by the next sync",
            PUBLISH_WAIT.as_secs()
        ),
        Err(e) => eprintln!(
            "warning: cannot publish the outbox's pending events ({e:#}); the warehouse is \
             brought up to date with the events published so far"
        ),
    }
}

enum Published {
    /// Every event written before the sync began is published.
    All,
    /// Another relay holds the lease, and this many events are still unpublished.
    GaveUp { pending: u64 },
}

async fn publish_pending_through(app: &App, location: &Location) -> anyhow::Result<Published> {
    let through = app.store.last_event_id().await?;
    // Whether an event written before the sync began is unpublished (the oldest by id).
    let pending = || async move {
        let oldest = app.store.unpublished_events(1).await?;
        anyhow::Ok(oldest.first().is_some_and(|e| e.id <= through))
    };
    if !pending().await? {
        return Ok(Published::All);
    }
    let broker = location.open_broker().await?;
    let relay = Relay::new(app.store.clone(), broker);
    let deadline = Instant::now() + PUBLISH_WAIT;
    let outcome = async {
        loop {
            relay.publish_pending().await.context("the relay failed")?;
            if !pending().await? {
                return Ok(Published::All);
            }
            if Instant::now() >= deadline {
                return Ok(Published::GaveUp {
                    pending: app.store.outbox_backlog().await?.ready,
                });
            }
            tokio::time::sleep(PUBLISH_POLL).await;
        }
    }
    .await;
    relay
        .release()
        .await
        .context("cannot give the relay's lease up")?;
    outcome
}

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const LINES: [&str; 6] = [
    "personal_auto",
    "homeowners",
    "commercial_property",
    "general_liability",
    "workers_compensation",
    "commercial_auto",
];

async fn gen_bench(args: GenBenchArgs) -> anyhow::Result<()> {
    use carrierhub_warehouse::datafusion::arrow::array::{
        ArrayRef, Date32Array, Decimal128Array, Int64Array, RecordBatch, StringArray,
        TimestampMicrosecondArray,
    };
    let location = carrierhub_warehouse::Location::parse(&args.out.display().to_string())?;
    let store =
        carrierhub_warehouse::object_store::local::LocalFileSystem::new_with_prefix(&args.out)?;
    let store: Arc<dyn carrierhub_warehouse::object_store::ObjectStore> = Arc::new(store);
    let partitions = u64::from(args.carriers.max(1)) * u64::from(args.months.max(1));
    let premium_rows = args
        .premium_transactions
        .unwrap_or(args.claim_transactions / 10);
    let start = NaiveDate::from_ymd_opt(2024, 1, 1).expect("date");
    let mut written = 0u64;
    let mut id = 0i64;
    for p in 0..partitions {
        let carrier = format!("carrier{:02}", p / u64::from(args.months));
        let month_index = (p % u64::from(args.months)) as u32;
        let first = start
            .checked_add_months(chrono::Months::new(month_index))
            .expect("date");
        let month = carrierhub_warehouse::tables::month_of(first);
        let mut rng = Rng(p + 1);
        for table in [Table::ClaimTransactions, Table::PremiumTransactions] {
            let total = if table == Table::ClaimTransactions {
                args.claim_transactions
            } else {
                premium_rows
            };
            let n = (total / partitions + u64::from(p < total % partitions)) as usize;
            let money = |v: Vec<i128>| -> ArrayRef {
                Arc::new(
                    Decimal128Array::from(v)
                        .with_precision_and_scale(MONEY_PRECISION, MONEY_SCALE)
                        .expect("precision"),
                )
            };
            let ids: Vec<i64> = (0..n as i64).map(|i| id + i).collect();
            id += n as i64;
            let line: Vec<&str> = (0..n).map(|_| LINES[rng.below(6) as usize]).collect();
            let day: Vec<i32> = (0..n)
                .map(|_| date32(first) + rng.below(28) as i32)
                .collect();
            let producer: Vec<Option<String>> = (0..n)
                .map(|_| Some(format!("P{:03}", rng.below(200))))
                .collect();
            let recorded: Vec<i64> = day.iter().map(|d| i64::from(*d) * 86_400_000_000).collect();
            let batch = if table == Table::ClaimTransactions {
                let amount: Vec<i128> = (0..n)
                    .map(|_| i128::from(rng.below(500_000)) * 10_000_000)
                    .collect();
                let claim_ids: Vec<i64> = ids.iter().map(|i| i / 3).collect();
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int64Array::from(claim_ids.clone())),
                    Arc::new(StringArray::from_iter_values(
                        claim_ids.iter().map(|c| format!("C{c}")),
                    )),
                    Arc::new(Int64Array::from(vec![1; n])),
                    Arc::new(Int64Array::from(
                        claim_ids.iter().map(|c| c / 2).collect::<Vec<_>>(),
                    )),
                    Arc::new(StringArray::from_iter_values((0..n).map(|i| {
                        if i % 3 == 0 {
                            "reserve"
                        } else {
                            "payment"
                        }
                    }))),
                    money(amount),
                    Arc::new(StringArray::from(vec!["EUR"; n])),
                    Arc::new(StringArray::from(line)),
                    Arc::new(StringArray::from(producer)),
                    Arc::new(Date32Array::from(day)),
                    Arc::new(Int64Array::from(vec![1; n])),
                    Arc::new(TimestampMicrosecondArray::from(recorded).with_timezone("UTC")),
                ];
                RecordBatch::try_new(table.file_schema(), columns)?
            } else {
                let amount: Vec<i128> = (0..n)
                    .map(|_| i128::from(rng.below(2_000_000) + 10_000) * 10_000_000)
                    .collect();
                let columns: Vec<ArrayRef> = vec![
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(Int64Array::from(ids.clone())),
                    Arc::new(StringArray::from_iter_values(
                        ids.iter().map(|c| format!("P{c}")),
                    )),
                    Arc::new(Int64Array::from(vec![1; n])),
                    Arc::new(StringArray::from(vec!["new_business"; n])),
                    money(amount),
                    Arc::new(StringArray::from(vec!["EUR"; n])),
                    Arc::new(Date32Array::from(day)),
                    Arc::new(StringArray::from(line)),
                    Arc::new(StringArray::from(producer)),
                    Arc::new(Int64Array::from(vec![1; n])),
                    Arc::new(TimestampMicrosecondArray::from(recorded).with_timezone("UTC")),
                ];
                RecordBatch::try_new(table.file_schema(), columns)?
            };
            let bytes = tokio::task::spawn_blocking(move || parquet_bytes(&batch)).await??;
            let path = carrierhub_warehouse::object_store::path::Path::from(format!(
                "{}/carrier={carrier}/month={month}/{PART_FILE}",
                table.name()
            ));
            carrierhub_warehouse::object_store::ObjectStoreExt::put(
                store.as_ref(),
                &path,
                bytes.into(),
            )
            .await?;
            written += n as u64;
        }
    }
    println!(
        "wrote {written} rows ({} claim transactions) in {partitions} partitions to {}",
        args.claim_transactions,
        location.describe()
    );
    Ok(())
}
