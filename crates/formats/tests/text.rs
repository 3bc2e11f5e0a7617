//! Delimited and fixed-width text through `open()`.

use crate::common;

use carrierhub_formats::{FixedColumn, FormatError, SourceFormat, TextEncoding, Value};
use common::*;

fn csv(delimiter: u8) -> carrierhub_formats::ReaderSpec {
    let mut spec = spec(SourceFormat::Csv);
    spec.delimiter = delimiter;
    spec
}

#[test]
fn csv_header_row_skips_titles_and_keeps_physical_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.csv",
        b"Bordereau \"March\n2025\nPolicy;Premium\nP1;10\n\nP2;\"multi\nline\"\nP3;30\nTotal;40\n",
    );
    let mut spec = csv(b';');
    spec.header_row = 3;
    spec.footer_rows = 1;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.headers, ["Policy", "Premium"]);
    assert!(read.error.is_none());
    assert_eq!(read.positions(), [(1, 4), (2, 6), (3, 8)]);
    let rows: Vec<_> = read.ok().iter().map(|r| row_text(r)).collect();
    assert_eq!(rows[1], ["P2", "multi\nline"]);
    assert_eq!(rows[2], ["P3", "30"]);
}

#[test]
fn csv_footer_rows_count_record_errors_too() {
    // A total row often has fewer fields: it is still a footer row.
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.csv", b"a,b,c\n1,2,3\n4,5,6\nTotal,9\n");
    let mut spec = csv(b',');
    spec.footer_rows = 1;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.positions(), [(1, 2), (2, 3)]);
    assert!(read.errors().is_empty());
}

#[test]
fn csv_header_row_past_the_end_is_a_layout_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.csv", b"title\nsub\n");
    let mut spec = csv(b',');
    spec.header_row = 5;
    let Err(FormatError::Layout(message)) = read(&spec, &path) else {
        panic!("expected a layout error")
    };
    assert!(message.contains("only 2 lines"), "{message}");
}

#[test]
fn csv_utf16_with_either_mark_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let content = "Name;Stadt\nMüller;Köln\n\n€uro;\"a;b\"\n";
    for (name, bytes) in [
        ("le.csv", utf16le(content, true)),
        ("be.csv", utf16be(content, true)),
    ] {
        let path = write(dir.path(), name, &bytes);
        // The mark wins over the declared encoding.
        let mut spec = csv(b';');
        spec.encoding = TextEncoding::Windows1252;
        let read = read(&spec, &path).unwrap();
        assert_eq!(read.headers, ["Name", "Stadt"], "{name}");
        assert_eq!(read.positions(), [(1, 2), (2, 4)], "{name}");
        assert_eq!(row_text(read.ok()[0]), ["Müller", "Köln"]);
        assert_eq!(row_text(read.ok()[1]), ["€uro", "a;b"]);
    }
    // `utf-16` without a mark is little-endian.
    let path = write(dir.path(), "nobom.csv", &utf16le(content, false));
    let mut spec = csv(b';');
    spec.encoding = TextEncoding::Utf16;
    let read = common::read(&spec, &path).unwrap();
    assert_eq!(row_text(read.ok()[0]), ["Müller", "Köln"]);
}

#[test]
fn csv_invalid_utf16_rejects_one_record_and_names_the_column() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = utf16le("Name;Stadt\nA;", true);
    bytes.extend([0x00, 0xDC]); // a lone low surrogate
    bytes.extend(utf16le("x\nB;Bonn\n", false));
    let path = write(dir.path(), "bad.csv", &bytes);
    let read = read(&csv(b';'), &path).unwrap();
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column.as_deref(), Some("Stadt"));
    assert!(errors[0].reason.contains("UTF-16"), "{}", errors[0].reason);
    assert_eq!(errors[0].position.line, 2);
    assert_eq!(row_text(read.ok()[0]), ["B", "Bonn"]);
}

#[test]
fn csv_windows_1252_decodes_the_euro_sign() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "w.csv", b"Name,Amount\nM\xfcller,\x80 12\n");
    let mut spec = csv(b',');
    spec.encoding = TextEncoding::Windows1252;
    let read = read(&spec, &path).unwrap();
    assert_eq!(row_text(read.ok()[0]), ["Müller", "€ 12"]);
    // A UTF-8 mark wins over a declared Windows-1252.
    let path = write(dir.path(), "u.csv", "\u{FEFF}Name\n€\n".as_bytes());
    let read = common::read(&spec, &path).unwrap();
    assert_eq!(read.headers, ["Name"]);
    assert_eq!(row_text(read.ok()[0]), ["€"]);
}

#[test]
fn csv_a_field_over_the_limit_rejects_its_record_with_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(2000);
    let path = write(
        dir.path(),
        "big.csv",
        format!("a,b\n1,{big}\n2,3\n").as_bytes(),
    );
    let mut spec = csv(b',');
    spec.limits.max_field_bytes = 1024;
    let read = read(&spec, &path).unwrap();
    let errors = read.errors();
    assert_eq!(errors[0].column.as_deref(), Some("b"));
    assert!(
        errors[0].reason.contains("2.0 KiB (2000 bytes)")
            && errors[0].reason.contains("1.0 KiB (1024 bytes)"),
        "{}",
        errors[0].reason
    );
    assert!(errors[0].value.as_ref().unwrap().len() < 200);
    assert_eq!(row_text(read.ok()[0]), ["2", "3"]);
}

#[test]
fn csv_that_is_a_pdf_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.csv", b"%PDF-1.7\n...");
    let Err(e) = read(&csv(b','), &path) else {
        panic!()
    };
    assert_eq!(
        e.to_string(),
        "the payload does not look like delimited text: it is a PDF document"
    );
}

fn layout() -> Vec<FixedColumn> {
    vec![
        FixedColumn {
            name: "Policy".into(),
            start: 1,
            length: 6,
        },
        FixedColumn {
            name: "Name".into(),
            start: 7,
            length: 8,
        },
        FixedColumn {
            name: "Premium".into(),
            start: 15,
            length: 6,
        },
    ]
}

#[test]
fn fixed_width_cuts_columns_by_characters() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "f.txt",
        "HEADER LINE\nP00001Müller   12.50\n\nP00002Ørsted  \nP00003Li      100.00   \r\nP00004Too long 1.00 extra\nTOTAL       113.50\n"
            .as_bytes(),
    );
    let mut spec = spec(SourceFormat::Fixed);
    spec.layout = layout();
    spec.header_row = 1;
    spec.footer_rows = 1;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.headers, ["Policy", "Name", "Premium"]);
    assert_eq!(read.positions(), [(1, 2), (2, 4), (3, 5), (4, 6)]);
    let ok = read.ok();
    assert_eq!(
        row(ok[0]),
        [text("P00001"), text("Müller  "), text(" 12.50")]
    );
    // A short line: the missing column is null, one cut short keeps what is there.
    assert_eq!(row(ok[1]), [text("P00002"), text("Ørsted  "), Value::Null]);
    // Trailing spaces past the layout are fine.
    assert_eq!(row(ok[2])[2], text("100.00"));
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].reason,
        "the line is 25 characters; the layout ends at 20"
    );
}

#[test]
fn fixed_width_has_no_header_by_default_and_names_the_bad_column() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "f.txt",
        b"P00001M\xfcller   12.50\nP00002Smith    13.00\n",
    );
    let mut spec = spec(SourceFormat::Fixed);
    spec.layout = layout();
    let read = read(&spec, &path).unwrap();
    let errors = read.errors();
    assert_eq!(errors[0].position.line, 1);
    assert_eq!(errors[0].column.as_deref(), Some("Name"));
    assert!(
        errors[0].reason.contains("invalid UTF-8"),
        "{}",
        errors[0].reason
    );
    assert_eq!(read.ok()[0].position.line, 2);
    // Latin-1 reads the same line.
    let mut latin = spec.clone();
    latin.encoding = TextEncoding::Latin1;
    let read = common::read(&latin, &path).unwrap();
    assert_eq!(row(read.ok()[0])[1], text("Müller  "));
}

#[test]
fn fixed_width_rejects_a_bad_layout() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "f.txt", b"x\n");
    let mut spec = spec(SourceFormat::Fixed);
    let Err(FormatError::Layout(m)) = read(&spec, &path) else {
        panic!()
    };
    assert!(m.contains("layout"), "{m}");
    spec.layout = vec![FixedColumn {
        name: "A".into(),
        start: 0,
        length: 3,
    }];
    let Err(FormatError::Layout(m)) = read(&spec, &path) else {
        panic!()
    };
    assert!(m.contains("at least 1"), "{m}");
}
