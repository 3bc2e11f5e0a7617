//! XLSX (written here with rust_xlsxwriter) and XLS (a committed fixture, see
//! fixtures/make_xls.py) through `open()`.

use crate::common;

use carrierhub_formats::{FormatError, ReaderSpec, SourceFormat, Value};
use chrono::NaiveDate;
use common::*;
use rust_xlsxwriter::{ExcelDateTime, Format, Formula, Workbook};
use std::path::{Path, PathBuf};

fn date(y: i32, m: u32, d: u32) -> Value {
    Value::DateTime(
        NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap(),
    )
}

/// Q1: a title, the header on row 3, four policies (one with #N/A), an empty row, a total.
/// Q2: the header on row 3 in another order, a column missing. Extra: an extra column.
fn workbook(dir: &Path) -> PathBuf {
    let path = dir.join("book.xlsx");
    let mut book = Workbook::new();
    let day = Format::new().set_num_format("yyyy-mm-dd");
    let q1 = book.add_worksheet().set_name("Q1").unwrap();
    q1.write_string(0, 0, "Bordereau Q1 2025").unwrap();
    for (col, name) in ["Policy", "Premium", "Count", "Inception", "Active"]
        .iter()
        .enumerate()
    {
        q1.write_string(2, col as u16, *name).unwrap();
    }
    let rows = [
        ("P-001", 1234.5, 3.0, (2025, 1, 15), true),
        ("P-002", 99.99, 1.0, (2025, 2, 1), false),
        ("P-003", 10.0, 2.0, (2025, 3, 31), true),
    ];
    for (i, (policy, premium, count, (y, m, d), active)) in rows.iter().enumerate() {
        let r = 3 + i as u32;
        q1.write_string(r, 0, *policy).unwrap();
        q1.write_number(r, 1, *premium).unwrap();
        q1.write_number(r, 2, *count).unwrap();
        q1.write_datetime_with_format(r, 3, ExcelDateTime::from_ymd(*y, *m, *d).unwrap(), &day)
            .unwrap();
        q1.write_boolean(r, 4, *active).unwrap();
    }
    q1.write_string(6, 0, "P-004").unwrap();
    q1.write_formula(6, 1, Formula::new("=NA()").set_result("#N/A"))
        .unwrap();
    // Row 8 is empty; row 9 is the total.
    q1.write_string(8, 0, "Total").unwrap();
    q1.write_number(8, 1, 1344.49).unwrap();

    let q2 = book.add_worksheet().set_name("Q2").unwrap();
    for (col, name) in [" premium ", "POLICY", "Inception"].iter().enumerate() {
        q2.write_string(2, col as u16, *name).unwrap();
    }
    q2.write_number(3, 0, 500.0).unwrap();
    q2.write_string(3, 1, "P-101").unwrap();
    q2.write_datetime_with_format(3, 2, ExcelDateTime::from_ymd(2025, 4, 2).unwrap(), &day)
        .unwrap();
    q2.write_number(4, 0, 750.25).unwrap();
    q2.write_string(4, 1, "P-102").unwrap();
    q2.write_string(5, 1, "Total").unwrap();

    let extra = book.add_worksheet().set_name("Extra").unwrap();
    for (col, name) in ["Policy", "Broker"].iter().enumerate() {
        extra.write_string(2, col as u16, *name).unwrap();
    }
    extra.write_string(3, 0, "P-201").unwrap();
    book.save(&path).unwrap();
    path
}

fn sheet_spec(format: SourceFormat, sheets: &[&str]) -> ReaderSpec {
    let mut spec = spec(format);
    spec.sheets = sheets.iter().map(|s| s.to_string()).collect();
    spec.header_row = 3;
    spec
}

/// The same assertions for XLSX and XLS, whose fixtures hold the same data.
fn check_two_sheets(path: &Path, format: SourceFormat, q2_footer: bool) {
    let mut spec = sheet_spec(format, &["Q1", "q2"]);
    spec.footer_rows = 1;
    let read = read(&spec, path).unwrap();
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(
        read.headers,
        ["Policy", "Premium", "Count", "Inception", "Active"]
    );
    // Q1: rows 4-7 (row 9, the total, dropped; row 8 empty); Q2: rows 4-5 (the footer
    // of Q2 is dropped too). Record numbers go on across sheets.
    let expected_q2 = if q2_footer {
        vec![(5, 4), (6, 5)]
    } else {
        vec![(5, 4)]
    };
    let mut expected = vec![(1, 4), (2, 5), (3, 6), (4, 7)];
    expected.extend(expected_q2);
    assert_eq!(read.positions(), expected);
    let ok = read.ok();
    assert_eq!(
        row(ok[0]),
        [
            text("P-001"),
            number("1234.5"),
            number("3"),
            date(2025, 1, 15),
            Value::Bool(true)
        ]
    );
    assert_eq!(row(ok[1])[1], number("99.99"));
    assert_eq!(row(ok[2])[1], number("10"));
    // Q2's columns are matched by name; its missing columns are null.
    assert_eq!(
        row(ok[3]),
        [
            text("P-101"),
            number("500"),
            Value::Null,
            date(2025, 4, 2),
            Value::Null
        ]
    );
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column.as_deref(), Some("Premium"));
    assert!(
        errors[0].reason.ends_with("cell B7 is the error #N/A"),
        "{}",
        errors[0].reason
    );
}

#[test]
fn xlsx_sheets_headers_footers_and_typed_cells() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    check_two_sheets(&path, SourceFormat::Xlsx, true);
}

#[test]
fn xls_sheets_headers_footers_and_typed_cells() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies.xls");
    // The XLS fixture's Q2 has no footer row, so its last policy is dropped.
    check_two_sheets(&path, SourceFormat::Xls, false);
}

#[test]
fn xlsx_first_sheet_by_default_and_unknown_sheets_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    let spec = sheet_spec(SourceFormat::Xlsx, &[]);
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.records.len(), 5);
    let spec = sheet_spec(SourceFormat::Xlsx, &["Q3"]);
    let Err(FormatError::Layout(m)) = common::read(&spec, &path) else {
        panic!()
    };
    assert_eq!(
        m,
        "the workbook has no sheet 'Q3'; its sheets: 'Q1', 'Q2', 'Extra'"
    );
}

#[test]
fn xlsx_a_later_sheet_with_an_extra_column_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    let spec = sheet_spec(SourceFormat::Xlsx, &["Q1", "Extra"]);
    let Err(FormatError::Layout(m)) = read(&spec, &path) else {
        panic!()
    };
    assert!(
        m.contains("sheet 'Extra' has the column 'Broker' (cell B3)"),
        "{m}"
    );
}

#[test]
fn xlsx_header_row_one_reads_the_title_as_header() {
    // A wrong header_row gives a header of one title column and every data row as a
    // record with values outside it.
    let dir = tempfile::tempdir().unwrap();
    let path = workbook(dir.path());
    let mut spec = sheet_spec(SourceFormat::Xlsx, &["Q1"]);
    spec.header_row = 1;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.headers, ["Bordereau Q1 2025"]);
    assert!(read.errors()[0].reason.contains("has no header"));
}

#[test]
fn workbooks_of_the_wrong_kind_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let xlsx = workbook(dir.path());
    let xls = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/policies.xls");
    let csv = write(dir.path(), "a.xlsx", b"Policy;Premium\nP1;10\n");
    let Err(e) = read(&spec(SourceFormat::Xlsx), &xls) else {
        panic!()
    };
    assert!(e.to_string().contains("legacy XLS workbook"), "{e}");
    let Err(e) = read(&spec(SourceFormat::Xls), &xlsx) else {
        panic!()
    };
    assert!(
        e.to_string()
            .starts_with("the payload does not look like an XLS workbook: it is a ZIP archive"),
        "{e}"
    );
    let Err(e) = read(&spec(SourceFormat::Xlsx), &csv) else {
        panic!()
    };
    assert!(e.to_string().contains("a CSV file?"), "{e}");
    // A ZIP that is not a workbook.
    let zip = dir.path().join("not.xlsx");
    {
        let mut w = zip::ZipWriter::new(std::fs::File::create(&zip).unwrap());
        w.start_file("hello.txt", zip::write::SimpleFileOptions::default())
            .unwrap();
        std::io::Write::write_all(&mut w, b"hello").unwrap();
        w.finish().unwrap();
    }
    let Err(e) = read(&spec(SourceFormat::Xlsx), &zip) else {
        panic!()
    };
    assert!(e.to_string().contains("XLSX workbook"), "{e}");
}

#[test]
fn xlsx_shared_strings_are_limited_to_a_quarter_of_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strings.xlsx");
    let mut book = Workbook::new();
    let sheet = book.add_worksheet();
    sheet.write_string(0, 0, "Note").unwrap();
    for i in 1..=1000u32 {
        sheet
            .write_string(i, 0, format!("{i:06} {}", "z".repeat(100)))
            .unwrap();
    }
    book.save(&path).unwrap();
    let mut spec = spec(SourceFormat::Xlsx);
    spec.limits.max_uncompressed_bytes = 300_000;
    let Err(FormatError::Limit(m)) = read(&spec, &path) else {
        panic!()
    };
    assert!(
        m.starts_with("the workbook's shared-strings table 'xl/sharedStrings.xml' is ")
            && m.ends_with("at most 73.2 KiB (75000 bytes) is accepted"),
        "{m}"
    );
    // With the default budget the same workbook reads.
    let read = read(&spec_default_xlsx(), &path).unwrap();
    assert_eq!(read.records.len(), 1000);
}

fn spec_default_xlsx() -> ReaderSpec {
    spec(SourceFormat::Xlsx)
}
