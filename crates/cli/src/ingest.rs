//! `carrierhub ingest`: one file, one mapping, a progress bar and a summary.

use crate::app::{App, Location};
use crate::report::print_submission;
use anyhow::Context;
use carrierhub_mapping::MappingSpec;
use carrierhub_model::CarrierId;
use carrierhub_pipeline::{Delivery, Progress};
use carrierhub_store::{Counts, Submission, SubmissionStatus};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Args)]
pub struct IngestArgs {
    /// The carrier the file comes from (e.g. `northwind`); created on first use.
    #[arg(long)]
    carrier: String,
    /// The carrier's mapping file (TOML) for this feed.
    #[arg(long)]
    mapping: PathBuf,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// The data file.
    file: PathBuf,
}

struct Bar(ProgressBar);

impl Progress for Bar {
    fn started(&self, total_bytes: u64) {
        self.0.set_length(total_bytes);
    }
    fn committed(&self, bytes_read: u64, counts: &Counts) {
        self.0.set_position(bytes_read);
        self.0.set_message(format!("{} records", counts.received));
    }
}

fn progress_bar() -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg} ({eta})",
        )
        .expect("valid template"),
    );
    bar
}

/// Receives and processes one file; shared by `ingest` and `demo`.
pub async fn ingest_file(
    app: &App,
    carrier: &CarrierId,
    mapping_path: &Path,
    file: &Path,
    show_progress: bool,
) -> anyhow::Result<(Submission, Vec<String>)> {
    let text = std::fs::read_to_string(mapping_path)
        .with_context(|| format!("cannot read mapping {}", mapping_path.display()))?;
    let spec = MappingSpec::parse(&mapping_path.display().to_string(), &text)?;
    let receipt = app
        .pipeline
        .receive(Delivery {
            carrier: carrier.clone(),
            mapping: spec,
            file_name: file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_else(|| file.display().to_string()),
            path: file.to_owned(),
            spooled: false,
            received_via: "cli".to_owned(),
            replay_of: None,
        })
        .await
        .with_context(|| format!("cannot ingest {}", file.display()))?;
    let bar = if show_progress {
        progress_bar()
    } else {
        ProgressBar::hidden()
    };
    let owner = format!("cli-{}", std::process::id());
    let done = app
        .pipeline
        .process(receipt.submission.id, &owner, Arc::new(Bar(bar.clone())))
        .await?;
    bar.finish_and_clear();
    Ok((done, receipt.unmapped_columns))
}

pub async fn run(location: &Location, args: IngestArgs) -> anyhow::Result<ExitCode> {
    let carrier = CarrierId::parse(&args.carrier).context("--carrier")?;
    let app = App::open(location).await?;
    let (submission, unmapped) =
        ingest_file(&app, &carrier, &args.mapping, &args.file, !args.json).await?;
    if args.json {
        let mut body = serde_json::to_value(&submission)?;
        body["unmapped_columns"] = serde_json::json!(unmapped);
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        print_submission(&submission);
        if !unmapped.is_empty() {
            println!("  columns no field reads: {}", unmapped.join(", "));
        }
    }
    Ok(match submission.status {
        SubmissionStatus::Completed => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
