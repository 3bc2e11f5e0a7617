//! `carrierhub demo` and `carrierhub gen`: synthetic carriers, end to end.

use crate::app::App;
use crate::ingest::ingest_file;
use crate::report::{print_portfolio, print_submission};
use crate::serve::{serve_app, ServeArgs};
use anyhow::Context;
use carrierhub_model::CarrierId;
use carrierhub_synth::{
    carriers, demo_defects, generate_portfolio, write_claim_feed, write_policy_feed, Defects,
    FeedOptions,
};
use clap::Args;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Args)]
pub struct DemoArgs {
    /// Policies per carrier.
    #[arg(long, default_value_t = 2_000)]
    policies: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Ingest and print the summary, then exit instead of serving.
    #[arg(long)]
    no_serve: bool,
    #[command(flatten)]
    serve: ServeArgs,
}

pub async fn run(data_dir: &Path, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let feeds = data_dir.join("demo-feeds");
    println!(
        "Generating feeds for {} carriers ({} policies each) in {}",
        carriers().len(),
        args.policies,
        feeds.display()
    );
    let generated = generate_portfolio(&feeds, args.policies, args.seed)
        .with_context(|| format!("cannot write demo feeds to {}", feeds.display()))?;
    let app = App::open(data_dir).await?;
    for g in &generated {
        let carrier = CarrierId::parse(g.profile.id)?;
        app.store.ensure_carrier(&carrier, g.profile.name).await?;
        println!("\n{} ({})", g.profile.name, g.profile.id);
        for (mapping, file) in [
            (&g.policy_mapping_file, &g.policy_file),
            (&g.claim_mapping_file, &g.claim_file),
        ] {
            let (submission, _) = ingest_file(&app, &carrier, mapping, file, true).await?;
            print_submission(&submission);
        }
    }
    println!("\nPortfolio (current versions):\n");
    print_portfolio(&app.store.portfolio().await?);
    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    let base = format!("http://{}", args.serve.bind);
    println!(
        "\nTry the API:\n\
         \x20 curl -s {base}/v1/carriers\n\
         \x20 curl -s '{base}/v1/policies?carrier=rheinland&line_of_business=personal_auto&limit=5'\n\
         \x20 curl -s {base}/v1/policies/1\n\
         \x20 curl -s '{base}/v1/claims?status=open&limit=5'\n\
         \x20 curl -s {base}/v1/submissions/1\n\
         \x20 curl -s {base}/v1/portfolio\n\
         \x20 curl -s -F file=@{} -F mapping=northwind-policies {base}/v1/carriers/northwind/submissions\n",
        generated[0].policy_file.display()
    );
    serve_app(app, args.serve).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct GenArgs {
    /// Directory to write feeds and mappings into.
    #[arg(long)]
    out: PathBuf,
    /// Policy rows per carrier.
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// 1 for a first delivery; 2 or more re-deliver the same policies with 10% changed and
    /// about 3% cancelled.
    #[arg(long, default_value_t = 1)]
    delivery: u32,
    /// Only this carrier (default: all).
    #[arg(long)]
    carrier: Option<String>,
    /// Inject the demo's realistic defects (bad dates, unknown codes, …).
    #[arg(long)]
    defects: bool,
    /// Also write claim feeds.
    #[arg(long)]
    claims: bool,
}

pub fn gen(args: GenArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let selected: Vec<_> = carriers()
        .into_iter()
        .filter(|c| args.carrier.as_deref().is_none_or(|id| id == c.id))
        .collect();
    if selected.is_empty() {
        anyhow::bail!(
            "unknown carrier; synthetic carriers are: {}",
            carriers()
                .iter()
                .map(|c| c.id)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    for profile in selected {
        let suffix = if args.delivery > 1 {
            format!("-d{}", args.delivery)
        } else {
            String::new()
        };
        let name = profile
            .policy_file_name
            .replace(".csv", &format!("{suffix}.csv"));
        let path = args.out.join(name);
        let opts = FeedOptions {
            policies: args.policies,
            seed: args.seed,
            delivery: args.delivery,
            defects: if args.defects {
                demo_defects(&profile, args.policies)
            } else {
                Defects::default()
            },
        };
        let mut out = BufWriter::new(std::fs::File::create(&path)?);
        let truth = write_policy_feed(&profile, &opts, &mut out)?;
        out.flush()?;
        std::fs::write(
            args.out.join(profile.policy_mapping_file_name()),
            profile.policy_mapping,
        )?;
        println!(
            "{} rows={} valid={} rejected={} premium={:?}",
            path.display(),
            truth.rows,
            truth.valid,
            truth.rejected,
            truth.premium_by_currency
        );
        if args.claims {
            let path = args.out.join(profile.claim_file_name);
            let mut out = BufWriter::new(std::fs::File::create(&path)?);
            let truth = write_claim_feed(&profile, args.policies, args.seed, &mut out)?;
            out.flush()?;
            std::fs::write(
                args.out.join(profile.claim_mapping_file_name()),
                profile.claim_mapping,
            )?;
            println!("{} rows={}", path.display(), truth.rows);
        }
    }
    Ok(ExitCode::SUCCESS)
}
