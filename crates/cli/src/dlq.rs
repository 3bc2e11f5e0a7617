//! `carrierhub dlq list|show|redrive`: the messages the pipeline gave up on.

use crate::app::{App, Location};
use carrierhub_broker::DeadLetter;
use carrierhub_pipeline::WORKER_GROUP;
use carrierhub_store::Scope;
use clap::Subcommand;
use std::process::ExitCode;

#[derive(Subcommand)]
pub enum DlqCommand {
    /// List dead letters, oldest first: id, consumer group, subject, deliveries and reason.
    List {
        /// Print JSON lines instead of a table.
        #[arg(long)]
        json: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show one dead letter with its headers and payload.
    Show { id: u64 },
    /// Publish a dead letter again for its consumers. A submission given up on is made
    /// receivable again first, so a worker processes it (resuming after what was committed).
    Redrive { id: u64 },
}

fn submission_of(letter: &DeadLetter) -> Option<i64> {
    let body: serde_json::Value = serde_json::from_slice(&letter.payload).ok()?;
    body["data"]["submission_id"].as_i64()
}

pub async fn run(location: &Location, command: DlqCommand) -> anyhow::Result<ExitCode> {
    let app = App::open(location).await?;
    let broker = location.open_broker().await?;
    match command {
        DlqCommand::List { json, limit } => {
            let letters = broker.dead_letters(0, limit).await?;
            if json {
                for l in &letters {
                    println!("{}", serde_json::to_string(l)?);
                }
            } else if letters.is_empty() {
                println!("no dead letters");
            } else {
                println!(
                    "{:>6}  {:<10} {:<45} {:>5}  REASON",
                    "ID", "GROUP", "SUBJECT", "TRIES"
                );
                for l in &letters {
                    println!(
                        "{:>6}  {:<10} {:<45} {:>5}  {}",
                        l.id, l.group, l.subject, l.deliveries, l.reason
                    );
                }
            }
        }
        DlqCommand::Show { id } => {
            let Some(letter) = broker.dead_letter(id).await? else {
                eprintln!("error: no dead letter {id}");
                return Ok(ExitCode::FAILURE);
            };
            let mut shown = serde_json::to_value(&letter)?;
            shown["payload"] = match serde_json::from_slice(&letter.payload) {
                Ok(json) => json,
                Err(_) => String::from_utf8_lossy(&letter.payload).into_owned().into(),
            };
            println!("{}", serde_json::to_string_pretty(&shown)?);
        }
        DlqCommand::Redrive { id } => {
            let Some(letter) = broker.dead_letter(id).await? else {
                eprintln!("error: no dead letter {id}");
                return Ok(ExitCode::FAILURE);
            };
            if letter.group == WORKER_GROUP {
                if let Some(submission) = submission_of(&letter) {
                    let s = app.store.get_submission(submission, &Scope::all()).await?;
                    if s.is_some_and(|s| s.status == carrierhub_store::SubmissionStatus::Failed) {
                        app.store.requeue_submission(submission).await?;
                        println!("submission {submission} is receivable again");
                    }
                }
            }
            match broker.redrive(id).await? {
                Some(p) => println!(
                    "dead letter {id} published again as message {} of the stream",
                    p.sequence
                ),
                None => {
                    eprintln!("error: dead letter {id} was redriven by someone else meanwhile");
                    return Ok(ExitCode::FAILURE);
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
