//! Defects: what can be wrong with a carrier's record, how many of each kind to inject, where
//! in the feed they go, and what a correct ingestion must report for each one.

use serde::{Deserialize, Serialize};
use std::io;

/// A kind of defect. Each one is something real carriers' feeds get wrong, and each one makes
/// a correct mapping reject its record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DefectKind {
    /// Delimited text: a row written with another delimiter than the file's (unreadable).
    WrongDelimiter,
    /// An impossible date (`31.02.2025`), a placeholder (`00000000`) or text (`TBC`) in the
    /// effective date of a policy or the loss date of a claim.
    InvalidDate,
    /// A negative policy premium: it maps, then fails the model's validation.
    NegativePremium,
    /// A line-of-business code (policies) or claim status (claims) the mapping's code table
    /// does not know.
    UnknownCode,
    /// Delimited text: the last row is cut off mid-row, with no line end (unreadable).
    Truncated,
    /// A required value is absent: an empty cell, a missing JSON key, a missing XML element.
    MissingRequired,
    /// A policy premium or a claim reserve that is text rather than a number (`"n/a"`).
    NotANumber,
    /// A record that cannot be parsed at all (unreadable): an NDJSON line cut off mid-object,
    /// or an element of a JSON document with a bare `NaN` for an amount (as Python's
    /// `json.dumps` writes a float that is not a number).
    MalformedRecord,
    /// Fixed width: a value one character too long pushed the rest of the line one column to
    /// the right, so text runs past the layout's end and the reader refuses the line
    /// (unreadable).
    ShiftedLine,
    /// A claim with a negative outstanding reserve: it maps, then fails validation.
    NegativeReserve,
    /// Not injected: a claim on a policy that the policy feed of the same generation rejects.
    /// The store refuses it at commit (`policy '…' is not known`).
    PolicyRejected,
}

impl DefectKind {
    /// Every kind, in the order [`Defects`] spreads them over a feed.
    pub const ALL: [DefectKind; 11] = [
        Self::WrongDelimiter,
        Self::InvalidDate,
        Self::NegativePremium,
        Self::UnknownCode,
        Self::Truncated,
        Self::MissingRequired,
        Self::NotANumber,
        Self::MalformedRecord,
        Self::ShiftedLine,
        Self::NegativeReserve,
        Self::PolicyRejected,
    ];

    /// The kind's name, as in `truth.json` and [`crate::PolicyTruth::defect_lines`].
    pub const fn label(self) -> &'static str {
        match self {
            Self::WrongDelimiter => "wrong_delimiter",
            Self::InvalidDate => "invalid_date",
            Self::NegativePremium => "negative_premium",
            Self::UnknownCode => "unknown_code",
            Self::Truncated => "truncated",
            Self::MissingRequired => "missing_required",
            Self::NotANumber => "not_a_number",
            Self::MalformedRecord => "malformed_record",
            Self::ShiftedLine => "shifted_line",
            Self::NegativeReserve => "negative_reserve",
            Self::PolicyRejected => "policy_rejected",
        }
    }
}

impl std::fmt::Display for DefectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// How many records of each kind of defect to inject into one feed. Each defect replaces one
/// otherwise valid record; the defects are spread evenly over the feed, kinds interleaved.
///
/// Not every kind fits every feed: see [`crate::CarrierProfile::policy_defect_kinds`] and
/// [`crate::CarrierProfile::claim_defect_kinds`]. Asking a feed for a kind it cannot carry
/// is an `InvalidInput` error.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Defects {
    /// Rows written with another delimiter than the file's.
    pub wrong_delimiter: usize,
    /// Records whose effective date (policies) or loss date (claims) is not a valid date.
    pub invalid_dates: usize,
    /// Policies with a negative premium: they map, but fail the model's validation.
    pub negative_premium: usize,
    /// Records whose line-of-business code (policies) or status code (claims) is missing from
    /// the mapping's code table.
    pub unknown_codes: usize,
    /// The final row is cut off mid-row, with no line end.
    pub truncated_last_row: bool,
    /// Records that lack a required value (empty cell, missing key or element).
    pub missing_required: usize,
    /// Policies whose premium, or claims whose reserve, is text (`"n/a"`).
    pub not_a_number: usize,
    /// Records that cannot be parsed (an NDJSON line cut off mid-object, a JSON element with
    /// a bare `NaN`).
    pub malformed_records: usize,
    /// Fixed-width lines shifted one column to the right.
    pub shifted_lines: usize,
    /// Claims with a negative reserve.
    pub negative_reserve: usize,
}

impl Defects {
    /// No defects.
    pub fn none() -> Self {
        Self::default()
    }

    /// About `rate` of `rows` records defective (`0.01` = 1%, rounded to the nearest record),
    /// shared round-robin among `kinds` in the order given: `at_rate(0.01, 1000, &[A, B, C])`
    /// gives 4 A, 3 B and 3 C. [`DefectKind::Truncated`] and [`DefectKind::PolicyRejected`]
    /// are not spread by rate and are ignored here (set `truncated_last_row` for the one). A
    /// rate at or below 0, or no usable kind, gives no defects; a rate of 1 or more makes every
    /// record defective.
    pub fn at_rate(rate: f64, rows: usize, kinds: &[DefectKind]) -> Self {
        let kinds: Vec<DefectKind> = kinds
            .iter()
            .copied()
            .filter(|k| !matches!(k, DefectKind::Truncated | DefectKind::PolicyRejected))
            .collect();
        let mut defects = Self::default();
        if kinds.is_empty() || rate.is_nan() || rate <= 0.0 {
            return defects;
        }
        let total = if rate >= 1.0 {
            rows
        } else {
            ((rate * rows as f64).round() as usize).min(rows)
        };
        for i in 0..total {
            defects.add(kinds[i % kinds.len()], 1);
        }
        defects
    }

    /// How many records get defect `kind` (the truncated last row counts as one).
    pub fn count(&self, kind: DefectKind) -> usize {
        match kind {
            DefectKind::WrongDelimiter => self.wrong_delimiter,
            DefectKind::InvalidDate => self.invalid_dates,
            DefectKind::NegativePremium => self.negative_premium,
            DefectKind::UnknownCode => self.unknown_codes,
            DefectKind::Truncated => usize::from(self.truncated_last_row),
            DefectKind::MissingRequired => self.missing_required,
            DefectKind::NotANumber => self.not_a_number,
            DefectKind::MalformedRecord => self.malformed_records,
            DefectKind::ShiftedLine => self.shifted_lines,
            DefectKind::NegativeReserve => self.negative_reserve,
            DefectKind::PolicyRejected => 0,
        }
    }

    /// Defective records in all.
    pub fn total(&self) -> usize {
        DefectKind::ALL.iter().map(|k| self.count(*k)).sum()
    }

    /// The kinds asked for (count above zero), in spreading order.
    pub fn kinds(&self) -> Vec<DefectKind> {
        DefectKind::ALL
            .into_iter()
            .filter(|k| self.count(*k) > 0)
            .collect()
    }

    fn add(&mut self, kind: DefectKind, n: usize) {
        match kind {
            DefectKind::WrongDelimiter => self.wrong_delimiter += n,
            DefectKind::InvalidDate => self.invalid_dates += n,
            DefectKind::NegativePremium => self.negative_premium += n,
            DefectKind::UnknownCode => self.unknown_codes += n,
            DefectKind::Truncated => self.truncated_last_row |= n > 0,
            DefectKind::MissingRequired => self.missing_required += n,
            DefectKind::NotANumber => self.not_a_number += n,
            DefectKind::MalformedRecord => self.malformed_records += n,
            DefectKind::ShiftedLine => self.shifted_lines += n,
            DefectKind::NegativeReserve => self.negative_reserve += n,
            DefectKind::PolicyRejected => {}
        }
    }
}

/// One record a correct ingestion must reject, as the ground truth records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Defect {
    /// 1-based data record number, as the readers count: header and title rows are not
    /// records, trailer rows dropped by `footer_rows` are never numbered, rows dropped by a
    /// `[[skip]]` rule are numbered (and counted as skipped).
    pub record: u64,
    /// Where the record starts: the physical line of a text file (header = line 1), the row
    /// within its sheet for a spreadsheet, the line of the opening tag, the line of the JSON
    /// object (of its opening `{`, in a pretty-printed document).
    pub line: u64,
    /// Spreadsheets: the sheet the row is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sheet: Option<String>,
    pub kind: DefectKind,
    /// The canonical field the rejection names (`effective_date`, `premium`,
    /// `line_of_business`, `number`, `policy_number`, …); `None` when the record cannot be
    /// read at all (the reader rejects it before any field is mapped).
    pub field: Option<String>,
    /// A short fragment the rejection's reason contains (`not a date`, `must not be negative`,
    /// `unknown`, `required`, `not a number`, `expected 12 fields`, `invalid JSON`,
    /// `layout ends at`, `not known`).
    pub reason_contains: String,
}

/// What a correct ingestion reports for `kind`: (canonical field, reason fragment).
/// `missing` names the field a [`DefectKind::MissingRequired`] defect leaves out, and
/// `columns` is the width of a delimited header (for the unreadable-row fragments).
pub(crate) fn expectation(
    kind: DefectKind,
    claim: bool,
    missing: &'static str,
    columns: usize,
) -> (Option<&'static str>, String) {
    let date = if claim { "loss_date" } else { "effective_date" };
    match kind {
        DefectKind::WrongDelimiter | DefectKind::Truncated => {
            (None, format!("expected {columns} fields"))
        }
        DefectKind::InvalidDate => (Some(date), "not a date".into()),
        // The shift pushes the last column's final character past the layout's end, which
        // the fixed-width reader refuses before any field is read.
        DefectKind::ShiftedLine => (None, "layout ends at".into()),
        DefectKind::NegativePremium => (Some("premium"), "must not be negative".into()),
        DefectKind::UnknownCode => (
            Some(if claim { "status" } else { "line_of_business" }),
            "unknown".into(),
        ),
        DefectKind::MissingRequired => (Some(missing), "required".into()),
        DefectKind::NotANumber => (
            Some(if claim { "reserve" } else { "premium" }),
            "not a number".into(),
        ),
        DefectKind::MalformedRecord => (None, "invalid JSON".into()),
        DefectKind::NegativeReserve => (Some("reserve"), "must not be negative".into()),
        DefectKind::PolicyRejected => (Some("policy_number"), "not known".into()),
    }
}

/// Where the defects of one feed go: spread evenly over its records (kinds interleaved), the
/// truncated row last. Positions are computed, not stored, so the plan costs memory only per
/// defect, and any record can be asked about in any order.
#[derive(Debug, Clone)]
pub(crate) struct DefectPlan {
    kinds: Vec<DefectKind>,
    /// Records available to the spread defects (all but a truncated last row).
    span: u64,
    truncated_row: Option<u64>,
}

impl DefectPlan {
    /// Plans `defects` over `rows` records of a feed that can carry `supported` kinds;
    /// `feed` names the feed in errors.
    pub(crate) fn new(
        defects: &Defects,
        rows: usize,
        supported: &[DefectKind],
        feed: &str,
    ) -> io::Result<Self> {
        let unsupported: Vec<&str> = defects
            .kinds()
            .into_iter()
            .filter(|k| !supported.contains(k))
            .map(DefectKind::label)
            .collect();
        if !unsupported.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{feed} cannot carry defects of kind {}; it supports: {}",
                    unsupported.join(", "),
                    supported
                        .iter()
                        .map(|k| k.label())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        }
        let needed = defects.total();
        if needed > rows {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{needed} defect rows requested but the feed has only {rows} rows"),
            ));
        }
        // Round-robin over the kinds, so that every part of the file has every kind.
        let spread: Vec<(DefectKind, usize)> = DefectKind::ALL
            .into_iter()
            .filter(|k| *k != DefectKind::Truncated)
            .map(|k| (k, defects.count(k)))
            .collect();
        let total: usize = spread.iter().map(|(_, n)| n).sum();
        let mut remaining = spread;
        let mut kinds = Vec::with_capacity(total);
        while kinds.len() < total {
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
            truncated_row: defects.truncated_last_row.then(|| rows as u64 - 1),
        })
    }

    /// A plan without defects.
    pub(crate) fn empty() -> Self {
        Self {
            kinds: Vec::new(),
            span: 0,
            truncated_row: None,
        }
    }

    /// Row of the k-th spread defect: the middle of the k-th of `kinds.len()` equal slices,
    /// so consecutive positions differ by at least one row.
    fn position(&self, k: usize) -> u64 {
        let d = self.kinds.len() as u128;
        (((2 * k as u128 + 1) * u128::from(self.span)) / (2 * d)) as u64
    }

    /// The defect of 0-based record `row`, with its ordinal among the feed's defects (which
    /// picks among a kind's variants, such as the invalid dates a carrier writes).
    pub(crate) fn at(&self, row: u64) -> Option<(usize, DefectKind)> {
        if self.truncated_row == Some(row) {
            return Some((self.kinds.len(), DefectKind::Truncated));
        }
        if self.kinds.is_empty() || row >= self.span {
            return None;
        }
        // position(k) ≈ (k + ½)·span/d, so k is within one of row·d/span.
        let d = self.kinds.len() as u128;
        let guess = (u128::from(row) * d / u128::from(self.span)) as usize;
        let last = self.kinds.len() - 1;
        (guess.saturating_sub(1)..=(guess + 1).min(last))
            .find(|k| self.position(*k) == row)
            .map(|k| (k, self.kinds[k]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CSV: &[DefectKind] = &[
        DefectKind::WrongDelimiter,
        DefectKind::InvalidDate,
        DefectKind::NegativePremium,
        DefectKind::UnknownCode,
        DefectKind::Truncated,
    ];

    #[test]
    fn defect_positions_are_distinct_and_spread() {
        let defects = Defects {
            wrong_delimiter: 3,
            invalid_dates: 2,
            negative_premium: 1,
            unknown_codes: 4,
            truncated_last_row: true,
            ..Defects::default()
        };
        let plan = DefectPlan::new(&defects, 11, CSV, "feed").unwrap();
        let found: Vec<_> = (0..11).filter_map(|r| plan.at(r).map(|k| (r, k))).collect();
        assert_eq!(found.len(), 11);
        assert_eq!(found[10], (10, (10, DefectKind::Truncated)));
        let plan = DefectPlan::new(&defects, 1000, CSV, "feed").unwrap();
        let rows: Vec<_> = (0..1000).filter(|r| plan.at(*r).is_some()).collect();
        assert_eq!(rows.len(), 11);
        assert!(rows.windows(2).all(|w| w[1] - w[0] >= 50), "{rows:?}");
        assert!(DefectPlan::new(&defects, 10, CSV, "feed").is_err());
    }

    #[test]
    fn ordinals_follow_file_order_and_kinds_interleave() {
        let defects = Defects {
            invalid_dates: 3,
            unknown_codes: 2,
            missing_required: 2,
            ..Defects::default()
        };
        let kinds = [
            DefectKind::InvalidDate,
            DefectKind::UnknownCode,
            DefectKind::MissingRequired,
        ];
        for rows in [7, 8, 100, 12_345] {
            let plan = DefectPlan::new(&defects, rows, &kinds, "feed").unwrap();
            let found: Vec<_> = (0..rows as u64).filter_map(|r| plan.at(r)).collect();
            let ordinals: Vec<_> = found.iter().map(|(k, _)| *k).collect();
            assert_eq!(ordinals, (0..7).collect::<Vec<_>>(), "rows {rows}");
            let labels: Vec<_> = found.iter().map(|(_, k)| k.label()).collect();
            assert_eq!(
                labels,
                [
                    "invalid_date",
                    "unknown_code",
                    "missing_required",
                    "invalid_date",
                    "unknown_code",
                    "missing_required",
                    "invalid_date"
                ]
            );
        }
    }

    #[test]
    fn unsupported_kinds_are_refused_by_name() {
        let defects = Defects {
            shifted_lines: 1,
            ..Defects::default()
        };
        let err = DefectPlan::new(&defects, 100, CSV, "thames-policies.csv").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("shifted_line"), "{err}");
    }

    #[test]
    fn rates_round_to_records_and_share_the_kinds() {
        let kinds = [
            DefectKind::InvalidDate,
            DefectKind::UnknownCode,
            DefectKind::Truncated,
            DefectKind::NotANumber,
        ];
        let d = Defects::at_rate(0.01, 1000, &kinds);
        assert_eq!(
            (d.invalid_dates, d.unknown_codes, d.not_a_number),
            (4, 3, 3)
        );
        assert!(!d.truncated_last_row);
        assert_eq!(d.total(), 10);
        assert_eq!(Defects::at_rate(0.0, 1000, &kinds).total(), 0);
        assert_eq!(Defects::at_rate(0.004, 100, &kinds).total(), 0);
        assert_eq!(Defects::at_rate(0.005, 100, &kinds).total(), 1);
        assert_eq!(Defects::at_rate(2.0, 10, &kinds).total(), 10);
        assert_eq!(Defects::at_rate(f64::NAN, 10, &kinds).total(), 0);
    }
}
