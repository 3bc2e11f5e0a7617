//! Claim feeds: about one claim per eight policies, each on a real policy of the same seed,
//! with a loss inside the policy term and amounts that fit the claim's status.

use crate::carriers::{CarrierProfile, FeedFormat, NumberStyle};
use crate::defects::{DefectKind, DefectPlan};
use crate::policy::PolicyRecord;
use crate::policy::{
    base_policy, carrier_key, policy_number, policy_plan, write_header_row, AS_OF,
};
use crate::rng::{Rng, Stream};
use crate::row::RowWriter;
use crate::truth::{ClaimTally, Position};
use crate::{ClaimFeedOptions, ClaimTruth};
use chrono::{Datelike, Days, NaiveDate};
use std::io::{self, BufWriter, Write};

/// Claim status in carrier-neutral terms, in the order of `CarrierSpec::claim_status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimState {
    Open = 0,
    Closed = 1,
    Reopened = 2,
    Denied = 3,
}

const STATE_WEIGHTS: [(ClaimState, u32); 4] = [
    (ClaimState::Open, 45),
    (ClaimState::Closed, 45),
    (ClaimState::Reopened, 4),
    (ClaimState::Denied, 6),
];

/// One claim as the carrier holds it, before it is written in the carrier's format.
#[derive(Debug, Clone)]
pub(crate) struct ClaimRecord {
    /// The claim policy, as delivery 1 reports it.
    pub policy: PolicyRecord,
    pub number: String,
    pub policy_number: String,
    pub loss: NaiveDate,
    pub reported: NaiveDate,
    pub state: ClaimState,
    pub cause: &'static str,
    /// Cents, in the policy's currency.
    pub paid: i64,
    pub reserve: i64,
}

impl ClaimRecord {
    pub(crate) fn status_code(&self, profile: &CarrierProfile) -> &'static str {
        profile.spec.claim_status[self.state as usize]
    }
}

fn claim_number(profile: &CarrierProfile, loss: NaiveDate, sequence: u64) -> String {
    let year = loss.year();
    match profile.spec.numbers {
        NumberStyle::Northwind => format!("CLM{year}-{sequence:06}"),
        NumberStyle::Rheinland => format!("S-{year}-{sequence:07}"),
        NumberStyle::Thames => format!("TSC/{sequence:06}"),
        NumberStyle::Harbour => format!("HSC-{sequence:06}"),
        NumberStyle::Meridian => format!("MRC-{year}-{sequence:06}"),
        NumberStyle::Alpine => format!("SCH-{year}-{sequence:06}"),
        NumberStyle::Keystone => format!("KC{year}{sequence:06}"),
    }
}

/// The claim stream of policy `index` and how many claims the policy has: 10% of policies
/// have one claim and 2.5% two, 0.125 claims per policy.
fn claims_of(profile: &CarrierProfile, seed: u64, index: u64) -> (Rng, u64) {
    let mut r = Rng::keyed(seed, carrier_key(profile), Stream::Claim, 0, index);
    let ticket = r.below(10_000);
    let count = if ticket < 1_000 {
        1
    } else if ticket < 1_125 {
        2
    } else {
        0
    };
    (r, count)
}

/// How many claims the claim feed for policies `0..policies` holds.
pub(crate) fn claim_count(profile: &CarrierProfile, policies: usize, seed: u64) -> usize {
    (0..policies as u64)
        .map(|i| claims_of(profile, seed, i).1 as usize)
        .sum()
}

/// Calls `f` with every claim on policies `0..policies`, in feed order.
pub(crate) fn for_each_claim(
    profile: &CarrierProfile,
    policies: usize,
    seed: u64,
    mut f: impl FnMut(ClaimRecord) -> io::Result<()>,
) -> io::Result<()> {
    let spec = profile.spec;
    let mut sequence = 0u64;
    for index in 0..policies as u64 {
        let (mut r, count) = claims_of(profile, seed, index);
        if count == 0 {
            continue;
        }
        let p = base_policy(profile, seed, index);
        let line = &spec.lines[p.line];
        let number_of_policy = policy_number(profile, &p);
        for _ in 0..count {
            sequence += 1;
            // A loss inside the term, and not after the date the feed describes.
            let last = (p.expiration - Days::new(1)).min(AS_OF);
            let span = (last - p.effective).num_days() as u64;
            let loss = p.effective + Days::new(r.below(span + 1));
            // Most losses are reported within a week, some take months (liability especially).
            let lag = match r.below(10) {
                0..=5 => r.below(8),
                6..=8 => r.between(8, 45) as u64,
                _ => r.between(46, 180) as u64,
            };
            // Not reported after the date the feed describes.
            let reported = (loss + Days::new(lag)).min(AS_OF);
            let state = STATE_WEIGHTS[r.weighted(STATE_WEIGHTS.iter().map(|(_, w)| *w))].0;
            let severity = r.skewed(line.severity.0, line.severity.1);
            let (paid, reserve) = match state {
                ClaimState::Closed => (severity, 0),
                ClaimState::Open => {
                    let paid = severity * r.between(0, 60) / 100;
                    (paid, (severity - paid).max(100))
                }
                ClaimState::Reopened => {
                    let paid = severity * r.between(50, 90) / 100;
                    (paid, (severity - paid).max(100) + severity / 5)
                }
                ClaimState::Denied => (0, 0),
            };
            let cause = r.pick(spec.causes[line.peril as usize]);
            f(ClaimRecord {
                policy: p.clone(),
                number: claim_number(profile, loss, sequence),
                policy_number: number_of_policy.clone(),
                loss,
                reported,
                state,
                cause,
                paid,
                reserve,
            })?;
        }
    }
    Ok(())
}

/// A carrier's claim feed: its claims, with their own defects and with the policies the
/// policy feed of the same generation rejects.
pub(crate) struct ClaimBook<'a> {
    pub profile: &'a CarrierProfile,
    pub policies: usize,
    pub seed: u64,
    plan: DefectPlan,
    rejected_policies: DefectPlan,
}

/// What becomes of one claim of a [`ClaimBook`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimFate {
    Valid,
    /// Written with this defect (and its ordinal among the feed's defects).
    Defective(usize, DefectKind),
    /// Written correctly, but its policy is rejected.
    PolicyRejected,
}

impl<'a> ClaimBook<'a> {
    pub(crate) fn new(profile: &'a CarrierProfile, opts: &ClaimFeedOptions) -> io::Result<Self> {
        let plan = if opts.defects.total() == 0 {
            DefectPlan::empty()
        } else {
            DefectPlan::new(
                &opts.defects,
                claim_count(profile, opts.policies, opts.seed),
                profile.spec.claim_defects,
                profile.claim_file_name,
            )?
        };
        Ok(Self {
            profile,
            policies: opts.policies,
            seed: opts.seed,
            plan,
            rejected_policies: policy_plan(profile, opts.policies, &opts.policy_defects)?,
        })
    }

    /// Calls `f` with every claim, its 0-based row and its fate, in feed order.
    pub(crate) fn for_each(
        &self,
        mut f: impl FnMut(u64, &ClaimRecord, ClaimFate) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut row = 0u64;
        for_each_claim(self.profile, self.policies, self.seed, |claim| {
            let fate = match self.plan.at(row) {
                Some((ordinal, kind)) => ClaimFate::Defective(ordinal, kind),
                None if self.rejected_policies.at(claim.policy.index).is_some() => {
                    ClaimFate::PolicyRejected
                }
                None => ClaimFate::Valid,
            };
            f(row, &claim, fate)?;
            row += 1;
            Ok(())
        })
    }
}

/// Records the claim's fate in `tally`.
pub(crate) fn tally_claim(
    tally: &mut ClaimTally,
    at: Position,
    claim: &ClaimRecord,
    fate: ClaimFate,
    columns: usize,
) {
    match fate {
        ClaimFate::Valid => tally.valid(claim.policy.currency, claim.paid, claim.reserve),
        ClaimFate::Defective(_, kind) => tally.defect(at, kind, columns),
        ClaimFate::PolicyRejected => tally.defect(at, DefectKind::PolicyRejected, columns),
    }
}

pub(crate) fn write_claim_feed(
    profile: &CarrierProfile,
    opts: &ClaimFeedOptions,
    out: &mut impl Write,
) -> io::Result<ClaimTruth> {
    let book = ClaimBook::new(profile, opts)?;
    match profile.claim_format {
        FeedFormat::Csv => write_delimited(&book, out),
        FeedFormat::Json => crate::json::write_claims(&book, out),
        FeedFormat::Xml => crate::xml::write_claims(&book, out),
        FeedFormat::Fixed => crate::fixed::write_claims(&book, out),
        FeedFormat::Xlsx | FeedFormat::Ndjson => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!(
                "no synthetic carrier sends claims as {}",
                profile.claim_format.label()
            ),
        )),
    }
}

/// The currency symbol a spreadsheet export prints before an amount.
fn currency_symbol(code: &str) -> &'static str {
    match code {
        "GBP" => "£",
        "EUR" => "€",
        "USD" => "$",
        _ => "",
    }
}

/// A delimited claim feed: a header, then one row per claim.
fn write_delimited(book: &ClaimBook, out: &mut impl Write) -> io::Result<ClaimTruth> {
    let profile = book.profile;
    let spec = profile.spec;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut w = RowWriter::new(spec.text);
    write_header_row(&mut w, spec, spec.claim_header, &mut out)?;
    let columns = spec.claim_header.len();
    // Harbour's claims are a spreadsheet export: amounts as displayed, with the currency
    // symbol, and the notification date column as Excel serial numbers.
    let spreadsheet_export = matches!(spec.numbers, NumberStyle::Harbour);
    let mut tally = ClaimTally::new(profile);
    book.for_each(|row, claim, fate| {
        let currency = spec.currencies[claim.policy.currency].0;
        w.begin(spec.text.delimiter);
        w.text(&claim.number);
        w.text(&claim.policy_number);
        match fate {
            ClaimFate::Defective(ordinal, DefectKind::InvalidDate) => {
                w.text(spec.invalid_dates[ordinal % spec.invalid_dates.len()])
            }
            _ => w.date(claim.loss),
        }
        if spreadsheet_export {
            w.serial(claim.reported);
        } else {
            w.date(claim.reported);
        }
        w.text(match fate {
            ClaimFate::Defective(_, DefectKind::UnknownCode) => spec.unknown_claim_status,
            _ => claim.status_code(profile),
        });
        w.text(claim.cause);
        if spreadsheet_export {
            w.amount_with_symbol(currency_symbol(currency), claim.paid);
            w.amount_with_symbol(currency_symbol(currency), claim.reserve);
        } else {
            w.amount(claim.paid);
            w.amount(claim.reserve);
        }
        if spec.multi_currency() {
            w.text(currency);
        }
        w.end_row();
        out.write_all(w.bytes())?;
        let at = Position {
            record: row + 1,
            line: row + 2,
        };
        tally_claim(&mut tally, at, claim, fate, columns);
        Ok(())
    })?;
    out.flush()?;
    Ok(tally.finish())
}
