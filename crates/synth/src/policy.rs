//! Policy feeds: each policy regenerated from (seed, carrier, index), changed for later
//! deliveries, corrupted at planned positions, written row by row with its ground truth.

use crate::carriers::{CarrierProfile, CarrierSpec, NumberStyle};
use crate::names;
use crate::rng::{fnv1a, Rng, Stream};
use crate::row::RowWriter;
use crate::{Defects, FeedOptions, PolicyTruth};
use chrono::{Datelike, Days, Months, NaiveDate};
use rust_decimal::Decimal;
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

/// A defect injected in place of a valid row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefectKind {
    WrongDelimiter,
    InvalidDate,
    NegativePremium,
    UnknownCode,
    Truncated,
}

impl DefectKind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::WrongDelimiter => "wrong_delimiter",
            Self::InvalidDate => "invalid_date",
            Self::NegativePremium => "negative_premium",
            Self::UnknownCode => "unknown_code",
            Self::Truncated => "truncated",
        }
    }
}

/// Where the defects go: spread evenly over the file (kinds interleaved), the truncated row
/// last. Positions are computed on the fly so the plan costs memory only per defect.
struct DefectPlan {
    kinds: Vec<DefectKind>,
    /// Rows available to the spread defects (all but a truncated last row).
    span: u64,
    next: usize,
    truncated_row: Option<u64>,
}

impl DefectPlan {
    fn new(defects: &Defects, rows: usize) -> io::Result<Self> {
        let counts = [
            (DefectKind::WrongDelimiter, defects.wrong_delimiter),
            (DefectKind::InvalidDate, defects.invalid_dates),
            (DefectKind::NegativePremium, defects.negative_premium),
            (DefectKind::UnknownCode, defects.unknown_codes),
        ];
        let spread: usize = counts.iter().map(|(_, n)| n).sum();
        let needed = spread + usize::from(defects.truncated_last_row);
        if needed > rows {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{needed} defect rows requested but the feed has only {rows} rows"),
            ));
        }
        // Round-robin over the kinds, so that every part of the file has every kind.
        let mut remaining = counts;
        let mut kinds = Vec::with_capacity(spread);
        while kinds.len() < spread {
            for (kind, left) in remaining.iter_mut() {
                if *left > 0 {
                    kinds.push(*kind);
                    *left -= 1;
                }
            }
        }
        Ok(Self {
            kinds,
            span: (rows - usize::from(defects.truncated_last_row)) as u64,
            next: 0,
            truncated_row: defects.truncated_last_row.then(|| rows as u64 - 1),
        })
    }

    /// Row of the k-th spread defect: the middle of the k-th of `kinds.len()` equal slices,
    /// so consecutive positions differ by at least one row.
    fn position(&self, k: usize) -> u64 {
        let d = self.kinds.len() as u128;
        (((2 * k as u128 + 1) * u128::from(self.span)) / (2 * d)) as u64
    }

    /// The defect for `row`; rows must be asked in increasing order.
    fn at(&mut self, row: u64) -> Option<DefectKind> {
        if self.truncated_row == Some(row) {
            return Some(DefectKind::Truncated);
        }
        if self.next < self.kinds.len() && self.position(self.next) == row {
            self.next += 1;
            return Some(self.kinds[self.next - 1]);
        }
        None
    }
}

pub(crate) fn policy_number(profile: &CarrierProfile, p: &PolicyRecord) -> String {
    let spec = profile.spec;
    match spec.numbers {
        NumberStyle::Northwind => {
            format!("NW-{}-{:07}", spec.lines[p.line].number_tag, p.index + 1)
        }
        NumberStyle::Rheinland => format!("RV/{}/{:06}", p.effective.year(), p.index + 1),
        NumberStyle::Thames => format!("TS{:06}", 100_000 + p.index),
    }
}

/// Writes one policy row; `defect` decides how (if at all) it is corrupted.
fn write_row(
    w: &mut RowWriter,
    profile: &CarrierProfile,
    p: &PolicyRecord,
    defect: Option<DefectKind>,
    defect_ordinal: usize,
) {
    let spec = profile.spec;
    let delimiter = match defect {
        Some(DefectKind::WrongDelimiter) => spec.wrong_delimiter,
        _ => spec.text.delimiter,
    };
    w.begin(delimiter);
    w.text(&policy_number(profile, p));
    w.text(match defect {
        Some(DefectKind::UnknownCode) => spec.unknown_line_code,
        _ => spec.lines[p.line].code,
    });
    w.text(match p.status {
        Status::Active => spec.status_active,
        Status::Cancelled => spec.status_cancelled,
        Status::Ended => spec.status_ended,
    });
    match defect {
        Some(DefectKind::InvalidDate) => {
            w.text(spec.invalid_dates[defect_ordinal % spec.invalid_dates.len()])
        }
        _ => w.date(p.effective),
    }
    w.date(p.expiration);
    w.amount(match defect {
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
    if defect == Some(DefectKind::Truncated) {
        // Cut inside the expiry date (field 5): whatever came before is intact, as after an
        // interrupted upload, and the file ends without a line end.
        w.cut_in_field(4, 4);
    } else {
        w.end_row();
    }
}

fn write_header(w: &mut RowWriter, spec: &CarrierSpec, header: &[&str]) {
    w.begin(spec.text.delimiter);
    for column in header {
        w.text(column);
    }
    w.end_row();
}

pub(crate) fn write_header_row(
    w: &mut RowWriter,
    spec: &CarrierSpec,
    header: &[&str],
    out: &mut impl Write,
) -> io::Result<()> {
    write_header(w, spec, header);
    out.write_all(w.bytes())
}

/// Running premium totals by (line, currency), in cents, so that a million rows never touch
/// a map or a decimal.
pub(crate) struct Totals {
    currencies: usize,
    cents: Vec<i128>,
    rows: Vec<usize>,
}

impl Totals {
    pub(crate) fn new(lines: usize, currencies: usize) -> Self {
        Self {
            currencies,
            cents: vec![0; lines * currencies],
            rows: vec![0; lines * currencies],
        }
    }

    pub(crate) fn add(&mut self, line: usize, currency: usize, cents: i64) {
        let i = line * self.currencies + currency;
        self.cents[i] += i128::from(cents);
        self.rows[i] += 1;
    }

    /// (line index, currency index, total) for every combination that had a row.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (usize, usize, Decimal)> + '_ {
        (0..self.cents.len())
            .filter(|i| self.rows[*i] > 0)
            .map(|i| {
                (
                    i / self.currencies,
                    i % self.currencies,
                    Decimal::from_i128_with_scale(self.cents[i], 2),
                )
            })
    }
}

pub(crate) fn write_policy_feed(
    profile: &CarrierProfile,
    opts: &FeedOptions,
    out: &mut impl Write,
) -> io::Result<PolicyTruth> {
    if opts.delivery == 0 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "deliveries are numbered from 1",
        ));
    }
    let spec = profile.spec;
    let mut plan = DefectPlan::new(&opts.defects, opts.policies)?;
    // Buffered here so that callers may pass a bare File; a million small writes would
    // otherwise be a million system calls.
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut w = RowWriter::new(spec.text);
    write_header_row(&mut w, spec, spec.policy_header, &mut out)?;

    let mut truth = PolicyTruth::default();
    let mut totals = Totals::new(spec.lines.len(), spec.currencies.len());
    let mut defects_written = 0usize;
    for index in 0..opts.policies as u64 {
        let mut p = base_policy(profile, opts.seed, index);
        let change = apply_delivery(profile, opts.seed, opts.delivery, &mut p);
        let defect = plan.at(index);
        write_row(&mut w, profile, &p, defect, defects_written);
        out.write_all(w.bytes())?;
        truth.rows += 1;
        match defect {
            Some(kind) => {
                defects_written += 1;
                truth.rejected += 1;
                // The header is line 1 and no row spans lines, so row i is on line i + 2.
                truth.defect_lines.push((index + 2, kind.label()));
            }
            None => {
                truth.valid += 1;
                if change != Change::None {
                    truth.changed_vs_first += 1;
                }
                if p.status == Status::Cancelled {
                    truth.cancelled += 1;
                }
                totals.add(p.line, p.currency, p.premium);
            }
        }
    }
    out.flush()?;

    for (line, currency, amount) in totals.entries() {
        let line_code = spec.lines[line].canonical.code().to_owned();
        let currency_code = spec.currencies[currency].0.to_owned();
        *truth
            .premium_by_line
            .entry((line_code, currency_code.clone()))
            .or_default() += amount;
        *truth.premium_by_currency.entry(currency_code).or_default() += amount;
    }
    Ok(truth)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect_positions_are_distinct_and_spread() {
        let defects = Defects {
            wrong_delimiter: 3,
            invalid_dates: 2,
            negative_premium: 1,
            unknown_codes: 4,
            truncated_last_row: true,
        };
        let mut plan = DefectPlan::new(&defects, 11).unwrap();
        let found: Vec<_> = (0..11).filter_map(|r| plan.at(r).map(|k| (r, k))).collect();
        assert_eq!(found.len(), 11);
        assert_eq!(found[10], (10, DefectKind::Truncated));
        let mut plan = DefectPlan::new(&defects, 1000).unwrap();
        let rows: Vec<_> = (0..1000).filter(|r| plan.at(*r).is_some()).collect();
        assert_eq!(rows.len(), 11);
        assert!(rows.windows(2).all(|w| w[1] - w[0] >= 50), "{rows:?}");
        assert!(DefectPlan::new(&defects, 10).is_err());
    }

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
}
