//! Policy feeds: each policy regenerated from (seed, carrier, index), changed for later
//! deliveries, corrupted at planned positions, written row by row with its ground truth.

use crate::carriers::{CarrierProfile, CarrierSpec, CoverageSpec, FeedFormat, NumberStyle};
use crate::defects::{DefectKind, DefectPlan, Defects};
use crate::names;
use crate::rng::{fnv1a, Rng, Stream};
use crate::row::RowWriter;
use crate::truth::{CoverageRecord, PolicyTally, Position};
use crate::{FeedOptions, PolicyTruth};
use chrono::{Datelike, Days, Months, NaiveDate};
use std::io::{self, BufWriter, Write};

/// First possible effective date; effective dates spread over 2024 and 2025.
const FIRST_EFFECTIVE: NaiveDate = match NaiveDate::from_ymd_opt(2024, 1, 1) {
    Some(d) => d,
    None => panic!("valid date"),
};
const EFFECTIVE_SPAN_DAYS: u64 = 731;

/// The date the feeds describe the book at: a term that ended by then is expired (lapsed).
pub(crate) const AS_OF: NaiveDate = match NaiveDate::from_ymd_opt(2025, 12, 31) {
    Some(d) => d,
    None => panic!("valid date"),
};

/// Where a policy is, in carrier-neutral terms; each carrier has its own code for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Active,
    Cancelled,
    Ended,
}

/// One policy as a carrier holds it, before it is written in the carrier's format.
#[derive(Debug, Clone)]
pub(crate) struct PolicyRecord {
    pub index: u64,
    pub line: usize,
    pub status: Status,
    pub effective: NaiveDate,
    pub expiration: NaiveDate,
    /// Annual premium in cents.
    pub premium: i64,
    pub currency: usize,
    pub producer: usize,
    pub organisation: bool,
    pub insured: String,
    pub postal_code: String,
    /// Whole currency units.
    pub limit: i64,
    pub deductible: i64,
}

/// The key that separates one carrier's random streams from another's.
pub(crate) fn carrier_key(profile: &CarrierProfile) -> u64 {
    fnv1a(profile.id)
}

/// Policy `index` of this carrier's book as delivery 1 reports it.
pub(crate) fn base_policy(profile: &CarrierProfile, seed: u64, index: u64) -> PolicyRecord {
    let spec = profile.spec;
    let mut r = Rng::keyed(seed, carrier_key(profile), Stream::Policy, 0, index);
    let line = r.weighted(spec.lines.iter().map(|l| l.weight));
    let l = &spec.lines[line];
    // The later of two uniform days: a growing book, with more business written recently.
    let day = r
        .below(EFFECTIVE_SPAN_DAYS)
        .max(r.below(EFFECTIVE_SPAN_DAYS));
    let effective = FIRST_EFFECTIVE + Days::new(day);
    let expiration = term_end(spec, effective, 12);
    let status = if expiration <= AS_OF {
        Status::Ended
    } else if r.chance(25) {
        Status::Cancelled
    } else {
        Status::Active
    };
    let premium = r.skewed(l.premium.0, l.premium.1);
    let currency = r.weighted(spec.currencies.iter().map(|(_, w)| *w));
    let producer = r.below(spec.producers.len() as u64) as usize;
    let organisation = r.chance(l.organisations);
    let insured = if organisation {
        names::organisation(&mut r, spec.market)
    } else {
        names::person(&mut r, spec.market)
    };
    let postal_code = names::postal_code(&mut r, spec.market);
    PolicyRecord {
        index,
        line,
        status,
        effective,
        expiration,
        premium,
        currency,
        producer,
        organisation,
        insured,
        postal_code,
        limit: r.pick(l.limits),
        deductible: r.pick(l.deductibles),
    }
}

fn term_end(spec: &CarrierSpec, effective: NaiveDate, months: u32) -> NaiveDate {
    let end = effective + Months::new(months);
    if spec.term_less_a_day {
        end - Days::new(1)
    } else {
        end
    }
}

/// What a later delivery did to a policy relative to delivery 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    None,
    Endorsed,
    Cancelled,
}

/// Applies delivery `delivery`'s changes to policy `p` (a delivery-1 record).
///
/// Exactly one policy in each block of ten changes, so exactly 10% of a book whose size is a
/// multiple of ten. About 3% of the book is cancelled (part of that 10%); the rest get an
/// endorsement that always alters the canonical record: a premium adjustment, a term
/// extension with its extra premium, or a transfer to another producer.
pub(crate) fn apply_delivery(
    profile: &CarrierProfile,
    seed: u64,
    delivery: u32,
    p: &mut PolicyRecord,
) -> Change {
    if delivery < 2 {
        return Change::None;
    }
    let key = carrier_key(profile);
    let block = p.index / 10;
    let chosen = Rng::keyed(seed, key, Stream::ChangeBlock, delivery.into(), block).below(10);
    if p.index % 10 != chosen {
        return Change::None;
    }
    let spec = profile.spec;
    let mut r = Rng::keyed(seed, key, Stream::Change, delivery.into(), p.index);
    // About 73% of a book is active, so cancelling 41% of the changed active policies
    // cancels about 3% of the book.
    if p.status == Status::Active && r.chance(410) {
        let term_days = (p.expiration - p.effective).num_days();
        let in_force = r.between(15, term_days - 15);
        // Pro-rata return premium: the insurer keeps the premium for the days in force.
        p.premium = (p.premium * in_force + term_days / 2) / term_days;
        p.status = Status::Cancelled;
        return Change::Cancelled;
    }
    match r.below(3) {
        0 => adjust_premium(&mut r, p),
        // Only a running term is extended; an ended one gets a premium audit instead.
        1 if p.status != Status::Active => adjust_premium(&mut r, p),
        1 => {
            let months = r.between(1, 3);
            let new_end = term_end(spec, p.effective, 12 + months as u32);
            p.expiration = new_end;
            p.premium += (p.premium * months + 6) / 12;
        }
        _ => {
            let n = spec.producers.len() as u64;
            p.producer = ((p.producer as u64 + 1 + r.below(n - 1)) % n) as usize;
            if r.chance(500) {
                adjust_premium(&mut r, p);
            }
        }
    }
    Change::Endorsed
}

/// A mid-term premium adjustment between -10% and +15%, never zero.
fn adjust_premium(r: &mut Rng, p: &mut PolicyRecord) {
    let mut percent = r.between(-10, 14);
    if percent >= 0 {
        percent += 1;
    }
    let delta = p.premium * percent / 100;
    p.premium += if delta == 0 { 100 } else { delta };
}

pub(crate) fn policy_number(profile: &CarrierProfile, p: &PolicyRecord) -> String {
    let spec = profile.spec;
    let tag = spec.lines[p.line].number_tag;
    match spec.numbers {
        NumberStyle::Northwind => format!("NW-{tag}-{:07}", p.index + 1),
        NumberStyle::Rheinland => format!("RV/{}/{:06}", p.effective.year(), p.index + 1),
        NumberStyle::Thames => format!("TS{:06}", 100_000 + p.index),
        NumberStyle::Harbour => format!("HSP/{tag}/{:06}", p.index + 1),
        NumberStyle::Meridian => format!("MRD-{tag}-{:07}", p.index + 1),
        NumberStyle::Alpine => format!("ALP-{:08}", p.index + 1),
        NumberStyle::Keystone => format!("KS{:08}", p.index + 1),
    }
}

/// The carrier's status code for `status`.
pub(crate) fn status_code(spec: &CarrierSpec, status: Status) -> &'static str {
    match status {
        Status::Active => spec.status_active,
        Status::Cancelled => spec.status_cancelled,
        Status::Ended => spec.status_ended,
    }
}

/// The coverages policy `p` lists. A line without a coverage list has one coverage, from
/// the policy's limit and deductible, under the carrier's constant code. Otherwise the
/// policy takes some of the line's coverages (drawn from its own stream, so they do not
/// change between deliveries), and their premiums split the policy premium exactly.
pub(crate) fn coverages(
    profile: &CarrierProfile,
    seed: u64,
    p: &PolicyRecord,
) -> Vec<CoverageRecord> {
    let spec = profile.spec;
    let line = &spec.lines[p.line];
    if line.coverages.is_empty() {
        return vec![CoverageRecord {
            code: spec.coverage_code,
            canonical: spec.coverage_code,
            limit: p.limit,
            deductible: p.deductible,
            premium: None,
        }];
    }
    let mut r = Rng::keyed(seed, carrier_key(profile), Stream::Coverage, 0, p.index);
    let mut chosen: Vec<&CoverageSpec> = line
        .coverages
        .iter()
        .filter(|c| r.chance(c.take_up))
        .collect();
    if chosen.is_empty() {
        chosen.push(&line.coverages[0]);
    }
    let shares: i64 = chosen.iter().map(|c| c.share).sum();
    let mut left = p.premium;
    let last = chosen.len() - 1;
    chosen
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let premium = if i == last {
                left
            } else {
                p.premium * c.share / shares
            };
            left -= premium;
            CoverageRecord {
                code: c.code,
                canonical: c.canonical,
                limit: r.pick(c.limits),
                deductible: r.pick(c.deductibles),
                premium: Some(premium),
            }
        })
        .collect()
}

/// A carrier's book for one delivery: which policies, as changed by the delivery, with which
/// defects. Any policy can be asked for in any order, so a writer may visit the book in
/// several passes (one per bordereau sheet).
pub(crate) struct PolicyBook<'a> {
    pub profile: &'a CarrierProfile,
    pub seed: u64,
    pub delivery: u32,
    pub rows: usize,
    plan: DefectPlan,
}

/// One policy of a [`PolicyBook`].
pub(crate) struct PolicyRow {
    pub p: PolicyRecord,
    pub change: Change,
    /// The defect and its ordinal among the feed's defects (which picks a variant).
    pub defect: Option<(usize, DefectKind)>,
}

impl<'a> PolicyBook<'a> {
    pub(crate) fn new(profile: &'a CarrierProfile, opts: &FeedOptions) -> io::Result<Self> {
        if opts.delivery == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "deliveries are numbered from 1",
            ));
        }
        Ok(Self {
            profile,
            seed: opts.seed,
            delivery: opts.delivery,
            rows: opts.policies,
            plan: policy_plan(profile, opts.policies, &opts.defects)?,
        })
    }

    pub(crate) fn row(&self, index: u64) -> PolicyRow {
        let mut p = base_policy(self.profile, self.seed, index);
        let change = apply_delivery(self.profile, self.seed, self.delivery, &mut p);
        PolicyRow {
            p,
            change,
            defect: self.plan.at(index),
        }
    }

    pub(crate) fn coverages(&self, p: &PolicyRecord) -> Vec<CoverageRecord> {
        coverages(self.profile, self.seed, p)
    }
}

/// Where `defects` go in a policy feed of `rows` policies; every defect rejects its policy.
pub(crate) fn policy_plan(
    profile: &CarrierProfile,
    rows: usize,
    defects: &Defects,
) -> io::Result<DefectPlan> {
    DefectPlan::new(
        defects,
        rows,
        profile.spec.policy_defects,
        profile.policy_file_name,
    )
}

/// Writes one delimited policy row; `defect` decides how (if at all) it is corrupted.
fn write_row(
    w: &mut RowWriter,
    profile: &CarrierProfile,
    p: &PolicyRecord,
    defect: Option<(usize, DefectKind)>,
) {
    let spec = profile.spec;
    let kind = defect.map(|(_, k)| k);
    let delimiter = match kind {
        Some(DefectKind::WrongDelimiter) => spec.wrong_delimiter,
        _ => spec.text.delimiter,
    };
    w.begin(delimiter);
    w.text(&policy_number(profile, p));
    w.text(match kind {
        Some(DefectKind::UnknownCode) => spec.unknown_line_code,
        _ => spec.lines[p.line].code,
    });
    w.text(status_code(spec, p.status));
    match defect {
        Some((ordinal, DefectKind::InvalidDate)) => {
            w.text(spec.invalid_dates[ordinal % spec.invalid_dates.len()])
        }
        _ => w.date(p.effective),
    }
    w.date(p.expiration);
    w.amount(match kind {
        Some(DefectKind::NegativePremium) => -p.premium,
        _ => p.premium,
    });
    if spec.multi_currency() {
        w.text(spec.currencies[p.currency].0);
    }
    w.text(&p.insured);
    w.text(if p.organisation {
        spec.organisation
    } else {
        spec.person
    });
    w.text(&p.postal_code);
    w.text(spec.producers[p.producer]);
    w.whole(p.limit);
    w.whole(p.deductible);
    if kind == Some(DefectKind::Truncated) {
        // Cut inside the expiry date (field 5): whatever came before is intact, as after an
        // interrupted upload, and the file ends without a line end.
        w.cut_in_field(4, 4);
    } else {
        w.end_row();
    }
}

/// Writes the preamble (a byte-order mark, if the encoding has one) and the header row.
pub(crate) fn write_header_row(
    w: &mut RowWriter,
    spec: &CarrierSpec,
    header: &[&str],
    out: &mut impl Write,
) -> io::Result<()> {
    out.write_all(w.preamble())?;
    w.begin(spec.text.delimiter);
    for column in header {
        w.text(column);
    }
    w.end_row();
    out.write_all(w.bytes())
}

pub(crate) fn write_policy_feed(
    profile: &CarrierProfile,
    opts: &FeedOptions,
    out: &mut (impl Write + Send),
) -> io::Result<PolicyTruth> {
    let book = PolicyBook::new(profile, opts)?;
    match profile.policy_format {
        FeedFormat::Csv => write_delimited(&book, out),
        FeedFormat::Xlsx => crate::xlsx::write_policies(&book, out),
        FeedFormat::Ndjson => crate::ndjson::write_policies(&book, out),
        FeedFormat::Xml => crate::xml::write_policies(&book, out),
        FeedFormat::Fixed => crate::fixed::write_policies(&book, out),
        FeedFormat::Json => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no synthetic carrier sends policies as a JSON document",
        )),
    }
}

/// A delimited policy feed: a header, then one row per policy on one line each.
fn write_delimited(book: &PolicyBook, out: &mut impl Write) -> io::Result<PolicyTruth> {
    let profile = book.profile;
    let spec = profile.spec;
    // Buffered here so that callers may pass a bare File; a million small writes would
    // otherwise be a million system calls.
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut w = RowWriter::new(spec.text);
    write_header_row(&mut w, spec, spec.policy_header, &mut out)?;
    let columns = spec.policy_header.len();

    let mut tally = PolicyTally::new(profile);
    for index in 0..book.rows as u64 {
        let row = book.row(index);
        write_row(&mut w, profile, &row.p, row.defect);
        out.write_all(w.bytes())?;
        // The header is line 1 and no row spans lines, so row i is on line i + 2.
        let at = Position {
            record: index + 1,
            line: index + 2,
        };
        match row.defect {
            Some((_, kind)) => tally.defect(at, None, kind, spec.policy_missing_field, columns),
            None => tally.valid(&row.p, row.change, &book.coverages(&row.p)),
        }
    }
    out.flush()?;
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exactly_one_policy_in_ten_changes() {
        let profile = crate::carrier("northwind").unwrap();
        let changed = (0..1000)
            .filter(|i| {
                let mut p = base_policy(&profile, 9, *i);
                apply_delivery(&profile, 9, 2, &mut p) != Change::None
            })
            .count();
        assert_eq!(changed, 100);
    }

    #[test]
    fn coverage_premiums_add_up_to_the_policy_premium() {
        for id in ["meridian", "alpine"] {
            let profile = crate::carrier(id).unwrap();
            let mut several = 0;
            for index in 0..500 {
                for delivery in [1, 2] {
                    let mut p = base_policy(&profile, 3, index);
                    apply_delivery(&profile, 3, delivery, &mut p);
                    let covs = coverages(&profile, 3, &p);
                    let sum: i64 = covs.iter().map(|c| c.premium.unwrap()).sum();
                    assert_eq!(sum, p.premium, "{id} {index}");
                    assert!(covs.iter().all(|c| c.premium.unwrap() >= 0));
                    several += usize::from(covs.len() > 1);
                }
            }
            assert!(several > 300, "{id}: {several}");
        }
        let thames = crate::carrier("thames").unwrap();
        let p = base_policy(&thames, 3, 0);
        let covs = coverages(&thames, 3, &p);
        assert_eq!(
            (covs.len(), covs[0].code, covs[0].premium),
            (1, "MAIN", None)
        );
    }
}
