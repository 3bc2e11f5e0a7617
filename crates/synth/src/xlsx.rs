//! Spreadsheet bordereaux: Harbour Specialty's monthly premium bordereau as an XLSX workbook.
//!
//! The workbook looks like what an MGA's operations team sends: a title and a report date
//! above the header (so the header is on row 3), one sheet for new business and one for
//! renewals, real date cells, numeric premiums, limits in thousands, and a "Total" row at
//! the foot of each sheet. The renewals sheet is kept by hand and its expiry column has lost
//! its date format: the dates there are bare Excel serial numbers.

use crate::defects::DefectKind;
use crate::policy::{policy_number, status_code, PolicyBook, AS_OF};
use crate::rng::{Rng, Stream};
use crate::truth::{PolicyTally, Position};
use crate::PolicyTruth;
use chrono::{Datelike, NaiveDate};
use rust_xlsxwriter::{DocProperties, ExcelDateTime, Format, Workbook, Worksheet, XlsxError};
use std::io::{self, BufWriter, Write};

/// The sheets, in order; a policy is on the second when it renews an earlier term.
pub(crate) const SHEETS: [&str; 2] = ["New Business", "Renewals"];
/// 1-based row of the header; the title and the report date are above it.
pub(crate) const HEADER_ROW: u32 = 3;
/// Per mille of policies on the renewals sheet.
const RENEWALS: u64 = 400;

/// Column positions (0-based) in the header of the carrier's spec.
const REF: u16 = 0;
const INCEPTION: u16 = 6;
const EXPIRY: u16 = 7;
const PREMIUM: u16 = 9;

fn xlsx_error(e: XlsxError) -> io::Error {
    io::Error::other(format!("cannot write the workbook: {e}"))
}

/// Whether policy `index` is a renewal (and so on the second sheet). A presentation choice
/// drawn from its own stream, so it does not change the policy or differ between deliveries.
pub(crate) fn is_renewal(book: &PolicyBook, index: u64) -> bool {
    let key = crate::policy::carrier_key(book.profile);
    Rng::keyed(book.seed, key, Stream::Layout, 0, index).chance(RENEWALS)
}

fn excel_date(date: NaiveDate) -> Result<ExcelDateTime, XlsxError> {
    ExcelDateTime::from_ymd(date.year() as u16, date.month() as u8, date.day() as u8)
}

/// Cents as the number a spreadsheet cell holds. `cents / 100` is the double nearest the
/// decimal amount, and its shortest rendering is that amount, so a reader gets it back
/// exactly.
fn cents_number(cents: i64) -> f64 {
    cents as f64 / 100.0
}

struct Formats {
    title: Format,
    header: Format,
    date: Format,
    money: Format,
    total: Format,
}

/// The state that runs on from one sheet to the next: the truth so far and the number of
/// the last record (record numbers run on across sheets, as the readers count them).
struct Bordereau<'a> {
    book: &'a PolicyBook<'a>,
    formats: Formats,
    tally: PolicyTally,
    record: u64,
}

/// Writes the bordereau to `out` and returns its truth. Each sheet is streamed to a
/// temporary file row by row (constant-memory mode), then the workbook is zipped into `out`.
pub(crate) fn write_policies(
    book: &PolicyBook,
    out: &mut (impl Write + Send),
) -> io::Result<PolicyTruth> {
    let profile = book.profile;
    let mut workbook = Workbook::new();
    // A fixed creation date: the same options must give byte-identical files, and the zip
    // entries' timestamps are fixed by rust_xlsxwriter already.
    let created = excel_date(AS_OF).map_err(xlsx_error)?;
    workbook.set_properties(
        &DocProperties::new()
            .set_title("Premium bordereau")
            .set_company(profile.name)
            .set_author("Harbour Specialty Operations")
            .set_creation_datetime(&created),
    );
    let mut bordereau = Bordereau {
        book,
        formats: Formats {
            title: Format::new().set_bold().set_font_size(14),
            header: Format::new().set_bold().set_background_color("#DDEBF7"),
            date: Format::new().set_num_format("dd/mm/yyyy"),
            money: Format::new().set_num_format("#,##0.00"),
            total: Format::new().set_bold().set_num_format("#,##0.00"),
        },
        tally: PolicyTally::new(profile),
        record: 0,
    };
    for (i, sheet) in SHEETS.iter().enumerate() {
        let ws = workbook
            .add_worksheet_with_constant_memory()
            .map_err(xlsx_error)?;
        bordereau
            .write_sheet(ws, sheet, i == 1)
            .map_err(xlsx_error)?;
    }
    let mut out = BufWriter::with_capacity(1 << 16, out);
    workbook.save_to_writer(&mut out).map_err(xlsx_error)?;
    out.flush()?;
    Ok(bordereau.tally.finish())
}

impl Bordereau<'_> {
    fn write_sheet(
        &mut self,
        ws: &mut Worksheet,
        name: &str,
        renewals: bool,
    ) -> Result<(), XlsxError> {
        let profile = self.book.profile;
        let f = &self.formats;
        ws.set_name(name)?;
        for (col, width) in [
            12.0, 34.0, 12.0, 10.0, 28.0, 10.0, 13.0, 13.0, 9.0, 14.0, 12.0, 10.0, 12.0,
        ]
        .into_iter()
        .enumerate()
        {
            ws.set_column_width(col as u16, width)?;
        }
        ws.set_freeze_panes(HEADER_ROW, 0)?;
        ws.write_string_with_format(
            0,
            0,
            format!("{} — Premium Bordereau", profile.name),
            &f.title,
        )?;
        ws.write_string(1, 0, "Report date")?;
        ws.write_datetime_with_format(1, 1, excel_date(AS_OF)?, &f.date)?;
        for (col, title) in profile.spec.policy_header.iter().enumerate() {
            ws.write_string_with_format(HEADER_ROW - 1, col as u16, *title, &f.header)?;
        }

        let mut row = HEADER_ROW; // 0-based index of the next data row
        let mut total: i128 = 0;
        for index in 0..self.book.rows as u64 {
            if is_renewal(self.book, index) != renewals {
                continue;
            }
            total += i128::from(self.write_row(ws, name, renewals, row, index)?);
            row += 1;
        }
        // The foot of the sheet: a total the readers must skip, not map.
        let f = &self.formats;
        ws.write_string_with_format(row, REF, "Total", &f.total)?;
        ws.write_number_with_format(row, PREMIUM, total as f64 / 100.0, &f.total)?;
        self.record += 1;
        self.tally.skipped();
        Ok(())
    }

    /// Writes policy `index` on 0-based `row` and returns the premium as written, in cents.
    fn write_row(
        &mut self,
        ws: &mut Worksheet,
        sheet: &str,
        renewals: bool,
        row: u32,
        index: u64,
    ) -> Result<i64, XlsxError> {
        let book = self.book;
        let profile = book.profile;
        let spec = profile.spec;
        let f = &self.formats;
        let r = book.row(index);
        let p = &r.p;
        let kind = r.defect.map(|(_, k)| k);

        // An empty policy reference: the cell is simply not written.
        if kind != Some(DefectKind::MissingRequired) {
            ws.write_string(row, REF, policy_number(profile, p))?;
        }
        ws.write_string(row, 1, &p.insured)?;
        let party = if p.organisation {
            spec.organisation
        } else {
            spec.person
        };
        ws.write_string(row, 2, party)?;
        ws.write_string(row, 3, &p.postal_code)?;
        let class = match kind {
            Some(DefectKind::UnknownCode) => spec.unknown_line_code,
            _ => spec.lines[p.line].code,
        };
        ws.write_string(row, 4, class)?;
        ws.write_string(row, 5, status_code(spec, p.status))?;
        match r.defect {
            Some((ordinal, DefectKind::InvalidDate)) => {
                let text = spec.invalid_dates[ordinal % spec.invalid_dates.len()];
                ws.write_string(row, INCEPTION, text)?;
            }
            _ => {
                ws.write_datetime_with_format(row, INCEPTION, excel_date(p.effective)?, &f.date)?;
            }
        }
        if renewals {
            ws.write_number(row, EXPIRY, crate::row::excel_serial(p.expiration) as f64)?;
        } else {
            ws.write_datetime_with_format(row, EXPIRY, excel_date(p.expiration)?, &f.date)?;
        }
        ws.write_string(row, 8, spec.currencies[p.currency].0)?;
        let premium = match kind {
            Some(DefectKind::NegativePremium) => -p.premium,
            _ => p.premium,
        };
        ws.write_number_with_format(row, PREMIUM, cents_number(premium), &f.money)?;
        ws.write_number(row, 10, (p.limit / 1000) as f64)?;
        ws.write_number(row, 11, p.deductible as f64)?;
        ws.write_string(row, 12, spec.producers[p.producer])?;

        self.record += 1;
        let at = Position {
            record: self.record,
            line: u64::from(row) + 1,
        };
        match kind {
            Some(kind) => {
                let missing = spec.policy_missing_field;
                let columns = spec.policy_header.len();
                self.tally.defect(at, Some(sheet), kind, missing, columns);
            }
            None => self.tally.valid(p, r.change, &book.coverages(p)),
        }
        Ok(premium)
    }
}
