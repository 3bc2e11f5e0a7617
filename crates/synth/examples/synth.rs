//! Writes one synthetic feed to a file and prints its ground truth and timing; for looking
//! at the data and for timing large feeds:
//! `cargo run --release -p carrierhub-synth --example synth -- northwind 1000000 /tmp/nw.csv [delivery] [claims]`
//! (each carrier writes its own format: `harbour` an XLSX workbook, `meridian` NDJSON,
//! `alpine` XML, `keystone` fixed width; name the output file accordingly).

use carrierhub_synth::{carrier, write_claim_feed, write_policy_feed, Defects, FeedOptions};
use std::time::Instant;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: synth CARRIER ROWS OUT_FILE [DELIVERY] [claims]";
    let profile = carrier(args.first().ok_or(usage)?).ok_or("unknown carrier")?;
    let rows: usize = args.get(1).ok_or(usage)?.parse()?;
    let path = args.get(2).ok_or(usage)?;
    let delivery: u32 = args.get(3).map(|d| d.parse()).transpose()?.unwrap_or(1);
    let mut file = std::fs::File::create(path)?;
    let started = Instant::now();
    if args.get(4).map(String::as_str) == Some("claims") {
        let truth = write_claim_feed(&profile, rows, 1, &mut file)?;
        println!("{truth:#?}");
    } else {
        let opts = FeedOptions {
            policies: rows,
            seed: 1,
            delivery,
            defects: Defects::default(),
        };
        let truth = write_policy_feed(&profile, &opts, &mut file)?;
        println!(
            "rows {} valid {} changed {} cancelled {}",
            truth.rows, truth.valid, truth.changed_vs_first, truth.cancelled
        );
        println!("{:#?}", truth.premium_by_currency);
    }
    eprintln!("{rows} policies in {:.2?}", started.elapsed());
    Ok(())
}
