//! Read-only reports: a submission's rejected records, submissions, the portfolio.

use crate::app::{App, Location};
use carrierhub_store::Scope;
use carrierhub_store::{parse_as_of, PageRequest, PortfolioLine, Submission, SubmissionFilter};
use chrono::{DateTime, Utc};
use clap::Args;
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::process::ExitCode;

pub fn print_submission(s: &Submission) {
    println!(
        "submission {} · {} · carrier {} · mapping {} (revision {}) · {}",
        s.id,
        s.file_name,
        s.carrier,
        s.mapping.name,
        s.mapping.revision,
        s.status.as_str()
    );
    let c = &s.counts;
    println!(
        "  received {} · inserted {} · updated {} · unchanged {} · rejected {}{}",
        c.received,
        c.inserted,
        c.updated,
        c.unchanged,
        c.rejected,
        if c.skipped > 0 {
            format!(" · skipped {}", c.skipped)
        } else {
            String::new()
        }
    );
    if let Some(of) = s.replay_of {
        println!("  replays submission {of}");
    }
    if let Some(e) = &s.error {
        println!("  error: {e}");
    }
    if c.rejected > 0 {
        println!("  see why: carrierhub errors {}", s.id);
    }
}

#[derive(Args)]
pub struct ErrorsArgs {
    /// The submission id, as `ingest` printed it.
    submission: i64,
    /// Print JSON lines instead of text.
    #[arg(long)]
    json: bool,
}

pub async fn errors(location: &Location, args: ErrorsArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(location).await?;
    let Some(submission) = app
        .store
        .get_submission(args.submission, &Scope::all())
        .await?
    else {
        anyhow::bail!("no submission {}", args.submission);
    };
    let mut page = PageRequest {
        after_id: None,
        limit: 500,
    };
    let mut shown = 0;
    loop {
        let rejections = app
            .store
            .list_rejections(submission.id, &Scope::all(), &page)
            .await?;
        for r in &rejections.items {
            shown += 1;
            if args.json {
                println!("{}", serde_json::to_string(r)?);
            } else {
                let field = match (&r.field, &r.column) {
                    (Some(f), Some(c)) => format!(" field {f} (column '{c}')"),
                    (Some(f), None) => format!(" field {f}"),
                    (None, Some(c)) => format!(" column '{c}'"),
                    (None, None) => String::new(),
                };
                let value = r
                    .value
                    .as_ref()
                    .map(|v| format!(" value '{v}'"))
                    .unwrap_or_default();
                let sheet = r
                    .sheet
                    .as_ref()
                    .map(|s| format!("[{s}]"))
                    .unwrap_or_default();
                println!(
                    "{}{sheet}:{}: record {}{field}{value}: {}",
                    r.file_name, r.line, r.record_number, r.reason
                );
            }
        }
        match rejections.items.last() {
            Some(last) if rejections.next_cursor.is_some() => page.after_id = Some(last.id),
            _ => break,
        }
    }
    if !args.json {
        eprintln!(
            "{shown} error(s) over {} rejected record(s) in submission {}",
            submission.counts.rejected, submission.id
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct SubmissionsArgs {
    #[arg(long)]
    carrier: Option<String>,
}

pub async fn submissions(location: &Location, args: SubmissionsArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(location).await?;
    let mut filter = SubmissionFilter {
        carrier: args.carrier,
        page: PageRequest {
            after_id: None,
            limit: 500,
        },
    };
    loop {
        let page = app.store.list_submissions(&Scope::all(), &filter).await?;
        for s in &page.items {
            print_submission(s);
        }
        match page.items.last() {
            Some(last) if page.next_cursor.is_some() => filter.page.after_id = Some(last.id),
            _ => break,
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct PortfolioArgs {
    /// Print JSON (an array of lines) instead of a table.
    #[arg(long)]
    json: bool,
    /// The portfolio as it was at this instant: RFC 3339 (`2025-12-01T00:00:00Z`), or a date
    /// (`2025-12-01`, midnight UTC). Default: now.
    #[arg(long, value_parser = parse_as_of)]
    as_of: Option<DateTime<Utc>>,
}

pub async fn portfolio(location: &Location, args: PortfolioArgs) -> anyhow::Result<ExitCode> {
    let app = App::open(location).await?;
    let lines = match args.as_of {
        Some(t) => app.store.portfolio_as_of(t, &Scope::all()).await?,
        None => app.store.portfolio(&Scope::all()).await?,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&lines)?);
    } else {
        if let Some(t) = args.as_of {
            println!(
                "as of {}",
                t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
            );
        }
        print_portfolio(&lines);
    }
    Ok(ExitCode::SUCCESS)
}

/// Premium with thousands separators, exactly as stored (no rounding).
fn grouped(amount: Decimal) -> String {
    let mut rounded = amount;
    rounded.rescale(2.max(amount.scale()));
    let text = rounded.to_string();
    let (int, frac) = text.split_once('.').unwrap_or((&text, ""));
    let (sign, digits) = int.strip_prefix('-').map(|d| ("-", d)).unwrap_or(("", int));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    format!("{sign}{out}.{frac}")
}

pub fn print_portfolio(lines: &[PortfolioLine]) {
    println!(
        "{:<12} {:<24} {:>9} {:>9} {:>20} {:<3}",
        "carrier", "line of business", "policies", "in force", "written premium", "ccy"
    );
    let mut totals: BTreeMap<&str, (u64, Decimal)> = BTreeMap::new();
    for l in lines {
        println!(
            "{:<12} {:<24} {:>9} {:>9} {:>20} {:<3}",
            l.carrier,
            l.line_of_business,
            l.policies,
            l.in_force,
            grouped(l.premium),
            l.currency
        );
        let t = totals.entry(&l.currency).or_default();
        t.0 += l.policies;
        t.1 += l.premium;
    }
    for (ccy, (n, premium)) in totals {
        println!(
            "{:<12} {:<24} {:>9} {:>9} {:>20} {:<3}",
            "all",
            "all",
            n,
            "",
            grouped(premium),
            ccy
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grouped_keeps_every_digit() {
        assert_eq!(grouped(Decimal::new(123456789, 2)), "1,234,567.89");
        assert_eq!(grouped(Decimal::new(-5, 1)), "-0.50");
        assert_eq!(grouped(Decimal::new(100, 0)), "100.00");
    }
}
