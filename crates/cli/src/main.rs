//! `carrierhub`: the one binary. Every verb an operator needs, over the same library crates.

mod app;
mod config;
mod demo;
mod dlq;
mod gauges;
mod ingest;
mod keys;
mod mapping;
mod report;
mod serve;
mod telemetry;
mod traces;
mod warehouse;

use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "carrierhub",
    version,
    about = "Aggregate insurance carriers' feeds into one canonical model, and serve it."
)]
struct Cli {
    /// Where the embedded store and the raw documents live.
    #[arg(
        long,
        global = true,
        env = "CARRIERHUB_DATA_DIR",
        default_value = "./carrierhub-data"
    )]
    data_dir: PathBuf,
    /// Keep the store in this PostgreSQL database (`postgres://user:password@host:port/db`)
    /// instead of SQLite in the data directory. Raw documents stay in the data directory.
    #[arg(
        long,
        global = true,
        env = "CARRIERHUB_DATABASE_URL",
        value_parser = app::parse_database_url,
        hide_env_values = true
    )]
    database_url: Option<String>,
    /// The message broker: `nats://host:port` for NATS JetStream (several processes and
    /// machines), or unset for the embedded broker in the store's database.
    #[arg(
        long = "broker",
        global = true,
        env = "CARRIERHUB_BROKER_URL",
        hide_env_values = true
    )]
    broker_url: Option<String>,
    /// Where the warehouse's Parquet files live: `s3://bucket/prefix` (credentials and
    /// endpoint from `AWS_*`), `gs://bucket/prefix` (`GOOGLE_*`) or a directory (default:
    /// `<data dir>/warehouse`).
    #[arg(long = "warehouse", global = true, env = "CARRIERHUB_WAREHOUSE_URL")]
    warehouse_url: Option<String>,
    /// Log format: `pretty` or `json` (default: pretty on a terminal, json otherwise).
    #[arg(long, global = true, env = "CARRIERHUB_LOG_FORMAT")]
    log_format: Option<telemetry::LogFormat>,
    /// Export traces over OTLP/HTTP (protobuf) to this collector, such as
    /// `http://collector:4318` (spans go to `/v1/traces` under it). Off when unset.
    #[arg(long, global = true, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CarrierHub: the HTTP API, the workers that process submissions and the relay that
    /// publishes change events, all in this process unless `--role` picks some.
    Serve(serve::ServeArgs),
    /// Dead letters: messages the pipeline gave up on, with why; list, show and redrive.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Ingest one carrier file with its mapping, then print what happened.
    Ingest(ingest::IngestArgs),
    /// API keys: create (the key is printed once), list, revoke. Each change is audited.
    #[command(subcommand)]
    Keys(keys::KeysCommand),
    /// Work with mapping files: `mapping check` is a dry run that writes nothing.
    #[command(subcommand)]
    Mapping(mapping::MappingCommand),
    /// Process a submission's document again, with a newer mapping: new versions are
    /// written only where the result changed.
    Replay(mapping::ReplayArgs),
    /// List the records a submission rejected, with file, line, field and reason.
    Errors(report::ErrorsArgs),
    /// List submissions.
    Submissions(report::SubmissionsArgs),
    /// Print policies and premium by carrier and line of business, now or as they were at an
    /// instant (`--as-of`).
    Portfolio(report::PortfolioArgs),
    /// Generate synthetic feeds for three carriers, ingest them, print a summary and serve.
    Demo(demo::DemoArgs),
    /// Write synthetic carrier feeds and their mappings into a directory.
    Gen(demo::GenArgs),
    /// Run read-only SQL (SELECT, WITH, EXPLAIN) over the warehouse's Parquet tables.
    Query(warehouse::QueryArgs),
    /// The warehouse: `sync` brings its files up to date with the store and exits, `status`
    /// shows its watermark and lag, `gen-bench` writes synthetic tables for benchmarks.
    #[command(subcommand)]
    Warehouse(warehouse::WarehouseCommand),
    /// Apply the store's pending migrations (SQLite in the data directory, or the
    /// `--database-url` database), print them, and exit.
    Migrate,
}

/// `carrierhub migrate`: applies what is pending and says what it did.
async fn migrate(location: &app::Location) -> anyhow::Result<ExitCode> {
    let applied = location.migrate().await?;
    let store = location.describe();
    if applied.is_empty() {
        println!("{store}: no migration to apply; the schema is current");
    } else {
        println!("{store}: applied {} migration(s):", applied.len());
        for m in &applied {
            println!("  {m}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that print their own report keep the log to warnings unless asked.
    let quiet_by_default = !matches!(cli.command, Command::Serve(_));
    let traces = match traces::start(cli.otlp_endpoint.as_deref()) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(cli.log_format, quiet_by_default);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let location = app::Location {
        data_dir: cli.data_dir,
        database_url: cli.database_url.filter(|url| !url.is_empty()),
        broker_url: cli.broker_url.filter(|url| !url.is_empty()),
        warehouse_url: cli.warehouse_url.filter(|url| !url.is_empty()),
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&location, args).await,
            Command::Dlq(command) => dlq::run(&location, command).await,
            Command::Ingest(args) => ingest::run(&location, args).await,
            Command::Keys(command) => keys::run(&location, command).await,
            Command::Mapping(command) => mapping::run(&location, command).await,
            Command::Replay(args) => mapping::replay(&location, args).await,
            Command::Errors(args) => report::errors(&location, args).await,
            Command::Submissions(args) => report::submissions(&location, args).await,
            Command::Portfolio(args) => report::portfolio(&location, args).await,
            Command::Demo(args) => demo::run(&location, args).await,
            Command::Gen(args) => demo::gen(args),
            Command::Query(args) => warehouse::query(&location, args).await,
            Command::Warehouse(command) => warehouse::run(&location, command).await,
            Command::Migrate => migrate(&location).await,
        }
    });
    // The runtime goes first: its tasks may still hold spans.
    drop(runtime);
    traces.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
