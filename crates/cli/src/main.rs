//! `carrierhub`: the one binary. Every verb an operator needs, over the same library crates.

mod app;
mod demo;
mod ingest;
mod mapping;
mod report;
mod serve;
mod telemetry;

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
    /// Log format: `pretty` or `json` (default: pretty on a terminal, json otherwise).
    #[arg(long, global = true, env = "CARRIERHUB_LOG_FORMAT")]
    log_format: Option<telemetry::LogFormat>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API, with the worker that processes submissions in the same process.
    Serve(serve::ServeArgs),
    /// Ingest one carrier file with its mapping, then print what happened.
    Ingest(ingest::IngestArgs),
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
    /// Print policies and premium by carrier and line of business.
    Portfolio(report::PortfolioArgs),
    /// Generate synthetic feeds for three carriers, ingest them, print a summary and serve.
    Demo(demo::DemoArgs),
    /// Write synthetic carrier feeds and their mappings into a directory.
    Gen(demo::GenArgs),
    /// Apply the store's migrations and exit.
    Migrate,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Commands that print their own report keep the log to warnings unless asked.
    let quiet_by_default = !matches!(cli.command, Command::Serve(_));
    telemetry::init(cli.log_format, quiet_by_default);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let data_dir = cli.data_dir;
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(&data_dir, args).await,
            Command::Ingest(args) => ingest::run(&data_dir, args).await,
            Command::Mapping(command) => mapping::run(&data_dir, command).await,
            Command::Replay(args) => mapping::replay(&data_dir, args).await,
            Command::Errors(args) => report::errors(&data_dir, args).await,
            Command::Submissions(args) => report::submissions(&data_dir, args).await,
            Command::Portfolio(args) => report::portfolio(&data_dir, args).await,
            Command::Demo(args) => demo::run(&data_dir, args).await,
            Command::Gen(args) => demo::gen(args),
            Command::Migrate => app::App::open(&data_dir).await.map(|app| {
                println!("store at {} is migrated", app.database_path.display());
                ExitCode::SUCCESS
            }),
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
