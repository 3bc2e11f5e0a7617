//! `carrierhub demo` and `carrierhub gen`: synthetic carriers, end to end.

use crate::app::{App, Location};
use crate::ingest::ingest_file;
use crate::report::{print_portfolio, print_submission};
use crate::serve::{serve_app, ServeArgs, ServeFlags};
use anyhow::Context;
use carrierhub_model::CarrierId;
use carrierhub_store::Scope;
use carrierhub_synth::{carriers, generate, generate_portfolio, CarrierSelection, GenOptions};
use clap::Args;
use std::path::PathBuf;
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
    pub serve: ServeFlags,
}

/// `serve` is what the settings and `args.serve` make of `serve`'s settings.
pub async fn run(
    location: &Location,
    args: DemoArgs,
    serve: ServeArgs,
) -> anyhow::Result<ExitCode> {
    serve.gateway()?;
    let feeds = location.data_dir.join("demo-feeds");
    println!(
        "Generating feeds for {} carriers ({} policies each) in {}",
        carriers().len(),
        args.policies,
        feeds.display()
    );
    let generated = generate_portfolio(&feeds, args.policies, args.seed)
        .with_context(|| format!("cannot write demo feeds to {}", feeds.display()))?;
    let app = App::open_with(location, !serve.no_migrate).await?;
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
    print_portfolio(&app.store.portfolio(&Scope::all()).await?);
    if args.no_serve {
        return Ok(ExitCode::SUCCESS);
    }
    let base = format!("http://{}", serve.bind);
    println!(
        "\nTry the API:\n\
         \x20 curl -s {base}/v1/carriers\n\
         \x20 curl -s '{base}/v1/policies?carrier=rheinland&line_of_business=personal_auto&limit=5'\n\
         \x20 curl -s {base}/v1/policies/1\n\
         \x20 curl -s {base}/v1/policies/1/versions\n\
         \x20 curl -s '{base}/v1/policies?carrier=meridian&include=extras&limit=2'\n\
         \x20 curl -s '{base}/v1/claims?status=open&limit=5'\n\
         \x20 curl -s {base}/v1/submissions/1\n\
         \x20 curl -s '{base}/v1/portfolio?as_of=2025-06-30'\n\
         \x20 curl -s {base}/v1/query -H 'content-type: application/json' -d '{{\"sql\": \"SELECT carrier, SUM(premium) FROM policies WHERE is_current GROUP BY carrier\"}}'\n\
         \x20 curl -s -F file=@{} -F mapping=northwind-policies {base}/v1/carriers/northwind/submissions\n\
         \x20 curl -s -F file=@{} -F mapping=harbour-policies -F carrier=harbour {base}/v1/mappings/check\n",
        generated[0].policy_file.display(),
        generated
            .iter()
            .find(|g| g.profile.id == "harbour")
            .map(|g| g.policy_file.display().to_string())
            .unwrap_or_default()
    );
    let broker = location.open_broker().await?;
    let mut serve = serve;
    // The demo keeps the warehouse too, so /v1/query answers.
    if !serve.roles.contains(&crate::serve::Role::Warehouse) {
        serve.roles.push(crate::serve::Role::Warehouse);
    }
    serve_app(app, broker, location.warehouse()?, serve).await?;
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct GenArgs {
    /// Directory to write feeds, mappings and `truth.json` into.
    #[arg(long)]
    out: PathBuf,
    /// Policy records per carrier.
    #[arg(long, default_value_t = 10_000)]
    policies: usize,
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// 1 for a first delivery; 2 or more re-deliver the same policies with 10% changed and
    /// about 3% cancelled.
    #[arg(long, default_value_t = 1)]
    delivery: u32,
    /// Only these carriers (repeatable; default: all).
    #[arg(long, conflicts_with = "carriers")]
    carrier: Vec<String>,
    /// Only the first N carriers.
    #[arg(long)]
    carriers: Option<usize>,
    /// Share of records made defective in every feed, e.g. 0.01 for 1%: realistic defects
    /// for each format (bad dates, unknown codes, negative amounts, broken rows, …).
    #[arg(long, default_value_t = 0.0)]
    defect_rate: f64,
    /// Do not write claim feeds.
    #[arg(long)]
    no_claims: bool,
}

pub fn gen(args: GenArgs) -> anyhow::Result<ExitCode> {
    if !(0.0..=1.0).contains(&args.defect_rate) {
        anyhow::bail!(
            "--defect-rate must be between 0 and 1, not {}",
            args.defect_rate
        );
    }
    let carriers = if !args.carrier.is_empty() {
        CarrierSelection::Only(args.carrier.clone())
    } else if let Some(n) = args.carriers {
        CarrierSelection::First(n)
    } else {
        CarrierSelection::All
    };
    let options = GenOptions {
        carriers,
        policies: args.policies,
        seed: args.seed,
        delivery: args.delivery,
        defect_rate: args.defect_rate,
        claims: !args.no_claims,
    };
    let generated = generate(&args.out, &options)
        .with_context(|| format!("cannot generate feeds into {}", args.out.display()))?;
    for g in &generated {
        let t = &g.policy_truth;
        println!(
            "{:<10} {} ({}): records {} · valid {} · rejected {} · skipped {} · premium {}",
            g.profile.id,
            g.policy_file.display(),
            g.profile.policy_format.label(),
            t.rows,
            t.valid,
            t.rejected,
            t.skipped,
            money_totals(&t.premium_by_currency)
        );
        if g.wrote_claims {
            let c = &g.claim_truth;
            println!(
                "{:<10} {} ({}): records {} · valid {} · rejected {}",
                "",
                g.claim_file.display(),
                g.profile.claim_format.label(),
                c.rows,
                c.valid,
                c.rejected,
            );
        }
    }
    println!(
        "mappings beside the feeds; ground truth in {}",
        args.out.join(options.truth_file_name()).display()
    );
    Ok(ExitCode::SUCCESS)
}

fn money_totals(totals: &std::collections::BTreeMap<String, rust_decimal::Decimal>) -> String {
    totals
        .iter()
        .map(|(ccy, amount)| format!("{amount} {ccy}"))
        .collect::<Vec<_>>()
        .join(", ")
}
