//! `carrierhub mapping check` (a dry run that writes nothing) and `carrierhub replay`.

use crate::app::{App, Location};
use crate::report::print_submission;
use anyhow::Context;
use carrierhub_mapping::MappingSpec;
use carrierhub_model::{CanonicalRecord, CarrierId};
use carrierhub_pipeline::{check_file, CheckOptions, CheckReport, NoProgress};
use carrierhub_store::SubmissionStatus;
use clap::{Args, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Subcommand)]
pub enum MappingCommand {
    /// Dry run: read and map a data file exactly as ingestion would, and write nothing.
    /// Exits 0 when every record maps, 1 when some are rejected.
    Check(CheckArgs),
}

#[derive(Args)]
pub struct CheckArgs {
    /// The mapping file (TOML).
    #[arg(long)]
    mapping: PathBuf,
    /// The carrier the records are for (default: the mapping's `carrier`).
    #[arg(long)]
    carrier: Option<String>,
    /// How many mapped records to show.
    #[arg(long, default_value_t = 3)]
    sample: usize,
    /// Examples to show per distinct error.
    #[arg(long, default_value_t = 3)]
    examples: usize,
    /// Stop after this many records.
    #[arg(long)]
    max_records: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
    /// Only count what the reader yields, without mapping (the baseline of bench/readers.sh).
    #[arg(long, hide = true)]
    count_only: bool,
    /// The data file.
    file: PathBuf,
}

pub async fn run(location: &Location, command: MappingCommand) -> anyhow::Result<ExitCode> {
    match command {
        MappingCommand::Check(args) => check(location, args).await,
    }
}

fn read_mapping(path: &Path) -> anyhow::Result<MappingSpec> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read mapping {}", path.display()))?;
    Ok(MappingSpec::parse(&path.display().to_string(), &text)?)
}

async fn check(location: &Location, args: CheckArgs) -> anyhow::Result<ExitCode> {
    let spec = read_mapping(&args.mapping)?;
    if args.count_only {
        return count_only(&spec, &args.file);
    }
    let carrier = match (&args.carrier, &spec.carrier) {
        (Some(c), _) => CarrierId::parse(c).context("--carrier")?,
        (None, Some(c)) => c.clone(),
        (None, None) => CarrierId::parse("check").expect("valid id"),
    };
    let file_name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| args.file.display().to_string());
    let options = CheckOptions {
        sample: args.sample,
        examples: args.examples,
        max_records: args.max_records,
    };
    let file = args.file.clone();
    let for_carrier = carrier.clone();
    let mut report = tokio::task::spawn_blocking(move || {
        check_file(&spec, &for_carrier, &file, &file_name, options)
    })
    .await??;
    // Claims need their policy: look the references up in the store, if there is one (a
    // dry run creates nothing, not even an empty store, nor a schema in a PostgreSQL database).
    let referenced = report.referenced_policies();
    let known = if !referenced.is_empty() && location.store_exists() {
        let migrate = location.database_url.is_none();
        let app = App::open_with(location, migrate).await?;
        app.store
            .known_policy_numbers(&carrier, &referenced)
            .await?
    } else {
        Default::default()
    };
    report.apply_known_policies(&known);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_report(&report);
    }
    Ok(if report.rejected == 0 && report.fatal.is_none() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads every record with the mapping's reader and nothing else.
fn count_only(spec: &MappingSpec, file: &Path) -> anyhow::Result<ExitCode> {
    let started = std::time::Instant::now();
    let mut reader = carrierhub_formats::open(&spec.reader_spec(), file)?;
    let (mut records, mut unreadable) = (0u64, 0u64);
    while let Some(item) = reader.next_record() {
        match item? {
            Ok(_) => records += 1,
            Err(_) => unreadable += 1,
        }
    }
    println!(
        "{}",
        serde_json::json!({
            "records": records,
            "unreadable": unreadable,
            "seconds": started.elapsed().as_secs_f64(),
        })
    );
    Ok(ExitCode::SUCCESS)
}

fn describe(record: &CanonicalRecord) -> String {
    match record {
        CanonicalRecord::Policy(p) => format!(
            "policy {} · {} · {} · {} to {} · premium {} · insured '{}'{}",
            p.number,
            p.line_of_business.value,
            p.status.value,
            p.effective_date,
            p.expiration_date,
            p.premium,
            p.insured.name,
            match p.coverages.len() {
                0 => String::new(),
                n => format!(" · {n} coverage{}", if n == 1 { "" } else { "s" }),
            }
        ),
        CanonicalRecord::Claim(c) => format!(
            "claim {} on policy {} · {} · loss {} · paid {} · reserve {}",
            c.number, c.policy_number, c.status.value, c.loss_date, c.paid, c.reserve
        ),
        CanonicalRecord::Transaction(t) => format!(
            "transaction {} on policy {} · {} · effective {} · premium change {}",
            t.reference, t.policy_number, t.transaction_type.value, t.effective_date, t.premium
        ),
    }
}

fn print_report(r: &CheckReport) {
    println!(
        "mapping {} ({}) on {}: nothing was written",
        r.mapping, r.format, r.file
    );
    println!(
        "  records {}{} · mapped {} · rejected {} · skipped {}",
        r.records,
        if r.truncated { " (stopped early)" } else { "" },
        r.mapped,
        r.rejected,
        r.skipped
    );
    if let Some(f) = &r.fatal {
        println!("  the payload stopped being readable: {f}");
    }
    if !r.sample.is_empty() {
        println!("\n  first mapped records:");
        for s in &r.sample {
            println!(
                "    record {} (line {}): {}",
                s.record,
                s.line,
                describe(&s.canonical)
            );
        }
    }
    if !r.errors.is_empty() {
        println!("\n  errors ({} distinct):", r.errors.len());
        for g in &r.errors {
            let field = g.field.as_deref().unwrap_or("(record)");
            let column = g
                .column
                .as_ref()
                .map(|c| format!(" ← '{c}'"))
                .unwrap_or_default();
            println!("    {}× {field}{column} [{}]", g.count, g.kind);
            for e in &g.examples {
                let sheet = e
                    .sheet
                    .as_ref()
                    .map(|s| format!(" of sheet '{s}'"))
                    .unwrap_or_default();
                println!(
                    "        record {} (line {}{sheet}): {}",
                    e.record, e.line, e.reason
                );
            }
        }
    }
    if !r.unmapped_codes.is_empty() {
        println!("\n  codes no code table translates:");
        for c in &r.unmapped_codes {
            let column = c
                .column
                .as_ref()
                .map(|c| format!(" ← '{c}'"))
                .unwrap_or_default();
            println!("    {}{column}: '{}' ×{}", c.field, c.value, c.count);
        }
    }
    if !r.unmapped_columns.is_empty() {
        println!(
            "\n  source columns no field reads: {}",
            r.unmapped_columns.join(", ")
        );
    }
}

#[derive(Args)]
pub struct ReplayArgs {
    /// The submission whose document to process again.
    submission: i64,
    /// The mapping to use (default: the latest revision of the mapping it used).
    #[arg(long)]
    mapping: Option<PathBuf>,
    /// Print the new submission as JSON.
    #[arg(long)]
    json: bool,
}

pub async fn replay(location: &Location, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(location).await?;
    let spec = args.mapping.as_deref().map(read_mapping).transpose()?;
    let receipt = app.pipeline.replay(args.submission, spec).await?;
    let owner = format!("cli-{}", std::process::id());
    let done = app
        .pipeline
        .process(receipt.submission.id, &owner, Arc::new(NoProgress))
        .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&done)?);
    } else {
        println!("replay of submission {}:", args.submission);
        print_submission(&done);
    }
    Ok(match done.status {
        SubmissionStatus::Completed => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}
