//! `carrierhub`: the one binary. Every verb an operator needs, over the same library crates.

/// mimalloc instead of the system allocator: the batch writer and the query engine allocate
/// and free many small values, and glibc's `malloc` and `free` took about a fifth of the
/// client's CPU time in an ingest into PostgreSQL (`bench/postgres.sh` under `perf`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod app;
mod backup;
mod config;
mod demo;
mod dlq;
mod gauges;
mod ingest;
mod keys;
mod mapping;
mod report;
mod serve;
mod settings;
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
    /// The settings file (TOML): every setting of docs/configuration.md. The environment
    /// (`CARRIERHUB_<SECTION>_<KEY>`) overrides it, and flags given override both.
    #[arg(long, global = true, env = "CARRIERHUB_CONFIG")]
    config: Option<PathBuf>,
    /// Where the embedded store and the raw documents live (`data.dir`, default
    /// ./carrierhub-data).
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Keep the store in this PostgreSQL database (`postgres://user:password@host:port/db`)
    /// instead of SQLite in the data directory. Raw documents stay in the data directory
    /// (`database.url`).
    #[arg(long, global = true, value_parser = app::parse_database_url)]
    database_url: Option<String>,
    /// The message broker: `nats://host:port` for NATS JetStream (several processes and
    /// machines), or unset for the embedded broker in the store's database (`broker.url`).
    #[arg(long = "broker", global = true)]
    broker_url: Option<String>,
    /// Where the warehouse's Parquet files live: `s3://bucket/prefix` (credentials and
    /// endpoint from `AWS_*`), `gs://bucket/prefix` (`GOOGLE_*`) or a directory (default:
    /// `<data dir>/warehouse`; `warehouse.url`).
    #[arg(long = "warehouse", global = true)]
    warehouse_url: Option<String>,
    /// Log format: `pretty`, `json`, or `auto`, pretty on a terminal and json otherwise
    /// (`log.format`).
    #[arg(long, global = true)]
    log_format: Option<settings::LogFormat>,
    /// Export traces over OTLP/HTTP (protobuf) to this collector, such as
    /// `http://collector:4318` (spans go to `/v1/traces` under it; `traces.otlp_endpoint`).
    /// Off when unset.
    #[arg(long, global = true)]
    otlp_endpoint: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run CarrierHub: the HTTP API, the workers that process submissions and the relay that
    /// publishes change events, all in this process unless `--role` picks some.
    Serve(serve::ServeFlags),
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
    /// The settings: `config show` prints the effective ones (secrets redacted), `config
    /// check FILE` validates a settings file, `config docs` prints the reference.
    #[command(subcommand)]
    Config(config::ConfigCommand),
    /// Apply the store's pending migrations (SQLite in the data directory, or the
    /// `--database-url` database), print them, and exit.
    Migrate,
    /// Back up the embedded store and its documents into a directory, while the server runs
    /// (with PostgreSQL: use pg_dump; this says what to keep).
    Backup(backup::BackupArgs),
    /// Restore a backup into the data directory, after checking its integrity; refuses to
    /// replace an existing store without --force.
    Restore(backup::RestoreArgs),
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

/// The settings: defaults, the file, the environment, then the flags of this command line.
fn settings_of(cli: &Cli) -> anyhow::Result<settings::Settings> {
    if matches!(
        cli.command,
        Command::Config(config::ConfigCommand::Check { .. } | config::ConfigCommand::Docs)
    ) {
        return Ok(settings::Settings::default());
    }
    let mut s = settings::Settings::load(&settings::Sources {
        file: cli.config.as_deref(),
        env: Some(&settings::process_env),
    })?;
    if let Some(dir) = &cli.data_dir {
        s.data.dir = dir.clone();
    }
    if let Some(url) = &cli.database_url {
        s.database.url = Some(url.clone());
    }
    if let Some(url) = &cli.broker_url {
        s.broker.url = Some(url.clone());
    }
    if let Some(url) = &cli.warehouse_url {
        s.warehouse.url = Some(url.clone());
    }
    if let Some(format) = cli.log_format {
        s.log.format = format;
    }
    if let Some(endpoint) = &cli.otlp_endpoint {
        s.traces.otlp_endpoint = Some(endpoint.clone());
    }
    match &cli.command {
        Command::Serve(flags) => flags.apply(&mut s),
        Command::Demo(args) => args.serve.apply(&mut s),
        Command::Config(config::ConfigCommand::Show(args)) => args.serve.apply(&mut s),
        Command::Query(args) => args.limits.apply(&mut s.query),
        _ => {}
    }
    s.normalise();
    s.validate()?;
    Ok(s)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let settings = match settings_of(&cli) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // Commands that print their own report keep the log to warnings unless asked.
    let quiet_by_default = !matches!(cli.command, Command::Serve(_));
    let traces = match traces::start(settings.traces.otlp_endpoint.as_deref()) {
        Ok(traces) => traces,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    telemetry::init(&settings.log, quiet_by_default);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let location = settings.location();
    let serve_args = serve::ServeArgs::from_settings(&settings);
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(_) => serve::run(&location, serve_args).await,
            Command::Dlq(command) => dlq::run(&location, command).await,
            Command::Ingest(args) => ingest::run(&location, args).await,
            Command::Keys(command) => keys::run(&location, command).await,
            Command::Mapping(command) => mapping::run(&location, command).await,
            Command::Replay(args) => mapping::replay(&location, args).await,
            Command::Errors(args) => report::errors(&location, args).await,
            Command::Submissions(args) => report::submissions(&location, args).await,
            Command::Portfolio(args) => report::portfolio(&location, args).await,
            Command::Demo(args) => demo::run(&location, args, serve_args).await,
            Command::Gen(args) => demo::gen(args),
            Command::Query(args) => {
                warehouse::query(&location, args, settings.query.limits()).await
            }
            Command::Warehouse(command) => warehouse::run(&location, command).await,
            Command::Config(command) => config::run(command, &settings),
            Command::Migrate => migrate(&location).await,
            Command::Backup(args) => backup::backup(&location, args).await,
            Command::Restore(args) => backup::restore(&location, args).await,
        }
    });
    // Blocking work a shutdown left behind (a parser whose batches are no longer taken)
    // does not hold the exit up.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    // Then the exporter: the runtime's tasks may have held spans.
    traces.shutdown();
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
