//! Ground truth: what a correct ingestion of a generated feed must find, to the cent, and the
//! tallies that compute it while the feed is written.

use crate::carriers::CarrierProfile;
use crate::defects::{expectation, Defect, DefectKind};
use crate::policy::{Change, PolicyRecord, Status};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The ground truth of a policy feed: what a correct ingestion must find.
///
/// Counts: `valid + rejected == rows`; `skipped` records (total rows a `[[skip]]` rule drops)
/// come on top of `rows`. Sums are over valid records only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyTruth {
    /// Policy records written (valid and defective), excluding headers, titles and total rows.
    pub rows: usize,
    /// Records a correct mapping accepts and the model validates.
    pub valid: usize,
    /// Defective records; each injected defect counts once.
    pub rejected: usize,
    /// Records a correct mapping skips (`[[skip]]`), such as a bordereau's "Total" rows. Rows
    /// dropped by `footer_rows` are not records and are not counted.
    pub skipped: usize,
    /// For delivery 2 and later: valid rows whose canonical record differs from the same
    /// policy in delivery 1 (as delivery 1 writes it without defects). Includes cancellations.
    pub changed_vs_first: usize,
    /// Valid rows whose status is cancelled.
    pub cancelled: usize,
    /// (canonical line of business, currency) to the premium summed over valid rows.
    #[serde(with = "by_line_and_currency")]
    pub premium_by_line: BTreeMap<(String, String), Decimal>,
    /// Currency to the premium summed over valid rows.
    pub premium_by_currency: BTreeMap<String, Decimal>,
    /// Coverages of the valid policies, as a correct mapping produces them (one per policy
    /// for the single-coverage feeds).
    pub coverages: usize,
    /// Canonical coverage code (as the mapping writes it) to the number of coverages.
    pub coverages_by_code: BTreeMap<String, usize>,
    /// Currency to the coverage premiums summed over valid policies; empty when the feed
    /// carries no premium per coverage. Where it does, the coverage premiums of a policy add
    /// up to its premium.
    pub coverage_premium_by_currency: BTreeMap<String, Decimal>,
    /// Every record a correct ingestion rejects, in file order.
    pub defects: Vec<Defect>,
    /// (line, defect kind label) of each defect, in file order: [`Defect::line`] and
    /// [`DefectKind::label`] of [`PolicyTruth::defects`], kept for older callers.
    #[serde(skip)]
    pub defect_lines: Vec<(u64, &'static str)>,
}

/// The ground truth of a claim feed.
///
/// `valid + rejected == rows`. A claim is rejected for one of its own defects, or because its
/// policy is rejected in the policy feed written with it ([`DefectKind::PolicyRejected`]: the
/// store refuses a claim on an unknown policy at commit). Sums are over valid claims only.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClaimTruth {
    pub rows: usize,
    pub valid: usize,
    /// Claims rejected, for their own defects or for their policy's.
    pub rejected: usize,
    /// Of `rejected`: claims that map and validate but whose policy the policy feed of the
    /// same generation rejects. (If an earlier delivery of that policy was ingested cleanly,
    /// the store knows it and accepts the claim.)
    pub policy_rejected: usize,
    /// Currency to cumulative paid, summed over valid claims.
    pub paid_by_currency: BTreeMap<String, Decimal>,
    /// Currency to outstanding reserve, summed over valid claims.
    pub reserve_by_currency: BTreeMap<String, Decimal>,
    /// Every claim a correct ingestion rejects, in file order (including the
    /// `policy_rejected` ones).
    pub defects: Vec<Defect>,
}

/// `premium_by_line` as a JSON list of `{line_of_business, currency, premium}`: JSON object
/// keys cannot be pairs.
mod by_line_and_currency {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    #[derive(Serialize, Deserialize)]
    struct Entry {
        line_of_business: String,
        currency: String,
        premium: Decimal,
    }

    pub(super) fn serialize<S: Serializer>(
        map: &BTreeMap<(String, String), Decimal>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter()
            .map(|((line, currency), premium)| Entry {
                line_of_business: line.clone(),
                currency: currency.clone(),
                premium: *premium,
            })
            .collect::<Vec<_>>()
            .serialize(s)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<(String, String), Decimal>, D::Error> {
        Ok(Vec::<Entry>::deserialize(d)?
            .into_iter()
            .map(|e| ((e.line_of_business, e.currency), e.premium))
            .collect())
    }
}

/// Where a record sits, as the readers number it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub record: u64,
    pub line: u64,
}

/// Cents to an exact decimal.
pub(crate) fn money(cents: i128) -> Decimal {
    Decimal::from_i128_with_scale(cents, 2)
}

/// One coverage of a policy as the feed writes it and the mapping reads it.
#[derive(Debug, Clone)]
pub(crate) struct CoverageRecord {
    /// The code as the feed writes it.
    pub code: &'static str,
    /// The code as a correct mapping produces it.
    pub canonical: &'static str,
    /// Whole currency units.
    pub limit: i64,
    pub deductible: i64,
    /// Cents, when the feed carries a premium per coverage.
    pub premium: Option<i64>,
}

/// Counts and sums a policy feed while it is written; integers in cents, so that a million
/// rows never touch a map or a decimal.
pub(crate) struct PolicyTally {
    profile: CarrierProfile,
    truth: PolicyTruth,
    /// Premium cents by line × currency, and whether a row was seen there.
    premium: Vec<i128>,
    seen: Vec<bool>,
    coverage_codes: BTreeMap<&'static str, usize>,
    coverage_premium: Vec<Option<i128>>,
}

impl PolicyTally {
    pub(crate) fn new(profile: &CarrierProfile) -> Self {
        let spec = profile.spec;
        let cells = spec.lines.len() * spec.currencies.len();
        Self {
            profile: profile.clone(),
            truth: PolicyTruth::default(),
            premium: vec![0; cells],
            seen: vec![false; cells],
            coverage_codes: BTreeMap::new(),
            coverage_premium: vec![None; spec.currencies.len()],
        }
    }

    /// A valid policy written with `coverages`.
    pub(crate) fn valid(&mut self, p: &PolicyRecord, change: Change, coverages: &[CoverageRecord]) {
        let t = &mut self.truth;
        t.rows += 1;
        t.valid += 1;
        if change != Change::None {
            t.changed_vs_first += 1;
        }
        if p.status == Status::Cancelled {
            t.cancelled += 1;
        }
        let i = p.line * self.profile.spec.currencies.len() + p.currency;
        self.premium[i] += i128::from(p.premium);
        self.seen[i] = true;
        for c in coverages {
            t.coverages += 1;
            *self.coverage_codes.entry(c.canonical).or_default() += 1;
            if let Some(cents) = c.premium {
                *self.coverage_premium[p.currency].get_or_insert(0) += i128::from(cents);
            }
        }
    }

    /// A skipped record (a total row).
    pub(crate) fn skipped(&mut self) {
        self.truth.skipped += 1;
    }

    /// A defective policy at `at`; `missing` is the field a missing-value defect leaves out
    /// and `columns` the width of a delimited header.
    pub(crate) fn defect(
        &mut self,
        at: Position,
        sheet: Option<&str>,
        kind: DefectKind,
        missing: &'static str,
        columns: usize,
    ) {
        let t = &mut self.truth;
        t.rows += 1;
        t.rejected += 1;
        let (field, reason) = expectation(kind, false, missing, columns);
        t.defect_lines.push((at.line, kind.label()));
        t.defects.push(Defect {
            record: at.record,
            line: at.line,
            sheet: sheet.map(str::to_owned),
            kind,
            field: field.map(str::to_owned),
            reason_contains: reason,
        });
    }

    pub(crate) fn finish(mut self) -> PolicyTruth {
        let spec = self.profile.spec;
        let n = spec.currencies.len();
        for (i, cents) in self.premium.iter().enumerate() {
            if !self.seen[i] {
                continue;
            }
            let line = spec.lines[i / n].canonical.code().to_owned();
            let currency = spec.currencies[i % n].0.to_owned();
            *self
                .truth
                .premium_by_line
                .entry((line, currency.clone()))
                .or_default() += money(*cents);
            *self.truth.premium_by_currency.entry(currency).or_default() += money(*cents);
        }
        for (code, count) in self.coverage_codes {
            self.truth.coverages_by_code.insert(code.to_owned(), count);
        }
        for (i, cents) in self.coverage_premium.iter().enumerate() {
            if let Some(cents) = cents {
                self.truth
                    .coverage_premium_by_currency
                    .insert(spec.currencies[i].0.to_owned(), money(*cents));
            }
        }
        self.truth
    }
}

/// Counts and sums a claim feed while it is written.
pub(crate) struct ClaimTally {
    profile: CarrierProfile,
    truth: ClaimTruth,
    paid: Vec<Option<(i128, i128)>>,
}

impl ClaimTally {
    pub(crate) fn new(profile: &CarrierProfile) -> Self {
        Self {
            profile: profile.clone(),
            truth: ClaimTruth::default(),
            paid: vec![None; profile.spec.currencies.len()],
        }
    }

    pub(crate) fn valid(&mut self, currency: usize, paid: i64, reserve: i64) {
        self.truth.rows += 1;
        self.truth.valid += 1;
        let (p, r) = self.paid[currency].get_or_insert((0, 0));
        *p += i128::from(paid);
        *r += i128::from(reserve);
    }

    /// A rejected claim: one of its own defects, or [`DefectKind::PolicyRejected`].
    pub(crate) fn defect(&mut self, at: Position, kind: DefectKind, columns: usize) {
        self.truth.rows += 1;
        self.truth.rejected += 1;
        if kind == DefectKind::PolicyRejected {
            self.truth.policy_rejected += 1;
        }
        let (field, reason) =
            expectation(kind, true, self.profile.spec.claim_missing_field, columns);
        self.truth.defects.push(Defect {
            record: at.record,
            line: at.line,
            sheet: None,
            kind,
            field: field.map(str::to_owned),
            reason_contains: reason,
        });
    }

    pub(crate) fn finish(mut self) -> ClaimTruth {
        for (i, sums) in self.paid.iter().enumerate() {
            if let Some((paid, reserve)) = sums {
                let code = self.profile.spec.currencies[i].0.to_owned();
                self.truth
                    .paid_by_currency
                    .insert(code.clone(), money(*paid));
                self.truth.reserve_by_currency.insert(code, money(*reserve));
            }
        }
        self.truth
    }
}
