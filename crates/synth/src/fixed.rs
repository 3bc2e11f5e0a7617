//! Fixed-width mainframe extracts: Keystone's policy master and claim files.
//!
//! Each file has a header record (`HDR`) on line 1, one fixed-length record per policy or
//! claim, and a trailer record (`TRL`) with the record count. Text is upper case and padded
//! with spaces, dates are `YYYYMMDD`, amounts are zero-padded cents with an implied decimal
//! point (COBOL `PIC 9(9)V99`), lines end in CRLF, and the code page is Windows-1252.

use crate::carriers::CarrierSpec;
use crate::claim::{tally_claim, ClaimBook, ClaimFate};
use crate::defects::DefectKind;
use crate::policy::{policy_number, status_code, PolicyBook, AS_OF};
use crate::row::{windows_1252, write_date, DateStyle};
use crate::truth::{ClaimTally, PolicyTally, Position};
use crate::{ClaimTruth, PolicyTruth};
use chrono::NaiveDate;
use std::io::{self, BufWriter, Write};

/// One column of a layout: name, 1-based start, width in characters.
pub(crate) type Column = (&'static str, usize, usize);

/// The policy record, 120 characters. The names are those of the mapping's `layout`.
pub(crate) const POLICY_LAYOUT: &[Column] = &[
    ("POLICY-NO", 1, 10),
    ("LOB", 11, 3),
    ("STATUS", 14, 1),
    ("INSURED-NAME", 15, 30),
    ("EFF-DATE", 45, 8),
    ("EXP-DATE", 53, 8),
    ("PREMIUM", 61, 11),
    ("INSURED-TYPE", 72, 1),
    ("ZIP", 73, 5),
    ("AGENT", 78, 8),
    ("LIMIT", 86, 9),
    ("DEDUCTIBLE", 95, 7),
];
pub(crate) const POLICY_WIDTH: usize = 120;

/// The claim record, 100 characters.
pub(crate) const CLAIM_LAYOUT: &[Column] = &[
    ("CLAIM-NO", 1, 12),
    ("POLICY-NO", 13, 10),
    ("LOSS-DATE", 23, 8),
    ("REPORT-DATE", 31, 8),
    ("CLM-STATUS", 39, 1),
    ("CAUSE", 40, 20),
    ("PAID", 60, 11),
    ("RESERVE", 71, 11),
];
pub(crate) const CLAIM_WIDTH: usize = 100;

/// The width of column `name` of `layout`.
fn width(layout: &[Column], name: &str) -> usize {
    layout
        .iter()
        .find(|c| c.0 == name)
        .map(|c| c.2)
        .unwrap_or_else(|| panic!("no column {name} in the layout"))
}

/// Assembles one fixed-length record field by field.
struct Record {
    text: String,
    bytes: Vec<u8>,
}

impl Record {
    fn new() -> Self {
        Self {
            text: String::with_capacity(128),
            bytes: Vec::with_capacity(128),
        }
    }

    fn clear(&mut self) {
        self.text.clear();
    }

    /// `value` left-aligned and space-padded (or cut) to `width` characters.
    fn alpha(&mut self, value: &str, width: usize) {
        let mut n = 0;
        for c in value.chars().take(width) {
            self.text.push(c);
            n += 1;
        }
        self.text.extend(std::iter::repeat_n(' ', width - n));
    }

    /// A value that overflows its column by one character: `width + 1` characters, the last
    /// a letter, pushing every later column one to the right.
    fn overflow(&mut self, value: &str, width: usize) {
        let long = format!("{value} ESTATE");
        self.alpha(&long, width);
        let extra = long.chars().nth(width).filter(|c| c.is_alphabetic());
        self.text.push(extra.unwrap_or('X'));
    }

    /// `value` right-aligned and zero-padded to `width` digits.
    fn numeric(&mut self, value: u64, width: usize) {
        let digits = value.to_string();
        debug_assert!(digits.len() <= width, "{value} does not fit {width} digits");
        self.text
            .extend(std::iter::repeat_n('0', width.saturating_sub(digits.len())));
        self.text.push_str(&digits);
    }

    fn date(&mut self, date: NaiveDate) {
        write_date(&mut self.text, date, DateStyle::Compact);
    }

    /// Pads (or cuts: the record length is fixed) the record to `width` characters and
    /// encodes it, with its line end.
    fn finish(&mut self, width: usize, spec: &CarrierSpec) -> &[u8] {
        self.bytes.clear();
        let mut n = 0;
        for c in self.text.chars().take(width) {
            self.bytes.push(windows_1252(c));
            n += 1;
        }
        self.bytes.extend(std::iter::repeat_n(b' ', width - n));
        if spec.text.crlf {
            self.bytes.push(b'\r');
        }
        self.bytes.push(b'\n');
        &self.bytes
    }
}

fn header(r: &mut Record, title: &str, width: usize, spec: &CarrierSpec) -> Vec<u8> {
    r.clear();
    r.alpha("HDR", 3);
    r.alpha(title, 60);
    r.alpha("RUN-DATE ", 9);
    r.date(AS_OF);
    r.finish(width, spec).to_vec()
}

fn trailer(
    r: &mut Record,
    count: u64,
    total_cents: u64,
    width: usize,
    spec: &CarrierSpec,
) -> Vec<u8> {
    r.clear();
    r.alpha("TRL", 3);
    r.numeric(count, 9);
    r.numeric(total_cents, 15);
    r.finish(width, spec).to_vec()
}

/// The policy master extract: `HDR`, one record per policy (record `k` on line `k + 1`), `TRL`.
pub(crate) fn write_policies(book: &PolicyBook, out: &mut impl Write) -> io::Result<PolicyTruth> {
    let profile = book.profile;
    let spec = profile.spec;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut r = Record::new();
    out.write_all(&header(
        &mut r,
        "KEYSTONE F&C POLICY MASTER EXTRACT",
        POLICY_WIDTH,
        spec,
    ))?;
    let w = |name| width(POLICY_LAYOUT, name);
    let mut tally = PolicyTally::new(profile);
    let mut total: u64 = 0;
    for index in 0..book.rows as u64 {
        let row = book.row(index);
        let p = &row.p;
        let kind = row.defect.map(|(_, k)| k);
        r.clear();
        r.alpha(&policy_number(profile, p), w("POLICY-NO"));
        r.alpha(
            match kind {
                Some(DefectKind::UnknownCode) => spec.unknown_line_code,
                _ => spec.lines[p.line].code,
            },
            w("LOB"),
        );
        r.alpha(status_code(spec, p.status), w("STATUS"));
        let name = p.insured.to_uppercase();
        if kind == Some(DefectKind::ShiftedLine) {
            r.overflow(&name, w("INSURED-NAME"));
        } else {
            r.alpha(&name, w("INSURED-NAME"));
        }
        match row.defect {
            Some((ordinal, DefectKind::InvalidDate)) => r.alpha(
                spec.invalid_dates[ordinal % spec.invalid_dates.len()],
                w("EFF-DATE"),
            ),
            _ => r.date(p.effective),
        }
        r.date(p.expiration);
        r.numeric(p.premium.unsigned_abs(), w("PREMIUM"));
        r.alpha(
            if p.organisation {
                spec.organisation
            } else {
                spec.person
            },
            w("INSURED-TYPE"),
        );
        r.alpha(&p.postal_code, w("ZIP"));
        r.alpha(spec.producers[p.producer], w("AGENT"));
        r.numeric(p.limit.unsigned_abs(), w("LIMIT"));
        r.numeric(p.deductible.unsigned_abs(), w("DEDUCTIBLE"));
        out.write_all(r.finish(POLICY_WIDTH, spec))?;
        total += p.premium.unsigned_abs();

        let at = Position {
            record: index + 1,
            line: index + 2,
        };
        match kind {
            Some(kind) => tally.defect(at, None, kind, spec.policy_missing_field, 0),
            None => tally.valid(p, row.change, &book.coverages(p)),
        }
    }
    out.write_all(&trailer(
        &mut r,
        book.rows as u64,
        total,
        POLICY_WIDTH,
        spec,
    ))?;
    out.flush()?;
    Ok(tally.finish())
}

/// The claim extract: `HDR`, one record per claim (record `k` on line `k + 1`), `TRL`.
pub(crate) fn write_claims(book: &ClaimBook, out: &mut impl Write) -> io::Result<ClaimTruth> {
    let profile = book.profile;
    let spec = profile.spec;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut r = Record::new();
    out.write_all(&header(
        &mut r,
        "KEYSTONE F&C CLAIM EXTRACT",
        CLAIM_WIDTH,
        spec,
    ))?;
    let w = |name| width(CLAIM_LAYOUT, name);
    let mut tally = ClaimTally::new(profile);
    let mut count = 0u64;
    let mut total = 0u64;
    book.for_each(|row, claim, fate| {
        r.clear();
        r.alpha(&claim.number, w("CLAIM-NO"));
        r.alpha(&claim.policy_number, w("POLICY-NO"));
        match fate {
            ClaimFate::Defective(ordinal, DefectKind::InvalidDate) => r.alpha(
                spec.invalid_dates[ordinal % spec.invalid_dates.len()],
                w("LOSS-DATE"),
            ),
            _ => r.date(claim.loss),
        }
        r.date(claim.reported);
        r.alpha(
            match fate {
                ClaimFate::Defective(_, DefectKind::UnknownCode) => spec.unknown_claim_status,
                _ => claim.status_code(profile),
            },
            w("CLM-STATUS"),
        );
        r.alpha(claim.cause, w("CAUSE"));
        r.numeric(claim.paid.unsigned_abs(), w("PAID"));
        r.numeric(claim.reserve.unsigned_abs(), w("RESERVE"));
        out.write_all(r.finish(CLAIM_WIDTH, spec))?;
        count += 1;
        total += claim.paid.unsigned_abs();
        let at = Position {
            record: row + 1,
            line: row + 2,
        };
        tally_claim(&mut tally, at, claim, fate, 0);
        Ok(())
    })?;
    out.write_all(&trailer(&mut r, count, total, CLAIM_WIDTH, spec))?;
    out.flush()?;
    Ok(tally.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_are_contiguous_and_fit_the_record() {
        for (layout, record) in [(POLICY_LAYOUT, POLICY_WIDTH), (CLAIM_LAYOUT, CLAIM_WIDTH)] {
            let mut next = 1;
            for (name, start, len) in layout {
                assert_eq!(*start, next, "{name}");
                next = start + len;
            }
            assert!(next <= record);
        }
    }
}
