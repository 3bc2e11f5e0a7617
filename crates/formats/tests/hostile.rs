//! Hostile payloads: each ends in a clear error with bounded memory, never a crash, and
//! where the problem is one record, the records after it still come through.

use crate::common;

use carrierhub_formats::{FormatError, ReaderSpec, SourceFormat};
use common::*;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use zip::write::SimpleFileOptions;
use zip::CompressionMethod;

const GIB: u64 = 1 << 30;

const CONTENT_TYPES: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"><Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" ContentType="application/xml"/><Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/><Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>"#;
const RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>"#;
const WORKBOOK: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="Sheet1" sheetId="1" r:id="rId1"/></sheets></workbook>"#;
const WORKBOOK_RELS: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>"#;
const SHEET_HEAD: &str = r#"<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>Policy</t></is></c></row>"#;
const SHEET_TAIL: &str = "</sheetData></worksheet>";

/// A real XLSX whose worksheet part inflates to about `sheet_bytes`: its header row, then
/// `filler` over and over (highly compressible, as a bomb is).
fn write_xlsx(path: &Path, sheet_bytes: u64, filler: &str) {
    let mut zip = zip::ZipWriter::new(std::io::BufWriter::new(
        std::fs::File::create(path).unwrap(),
    ));
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(9));
    for (name, body) in [
        ("[Content_Types].xml", CONTENT_TYPES),
        ("_rels/.rels", RELS),
        ("xl/workbook.xml", WORKBOOK),
        ("xl/_rels/workbook.xml.rels", WORKBOOK_RELS),
    ] {
        zip.start_file(name, options).unwrap();
        zip.write_all(body.as_bytes()).unwrap();
    }
    zip.start_file(
        "xl/worksheets/sheet1.xml",
        options.large_file(sheet_bytes >= u64::from(u32::MAX)),
    )
    .unwrap();
    zip.write_all(SHEET_HEAD.as_bytes()).unwrap();
    let chunk = filler.repeat((1 << 20) / filler.len());
    let mut written = (SHEET_HEAD.len() + SHEET_TAIL.len()) as u64;
    while written + (chunk.len() as u64) <= sheet_bytes {
        zip.write_all(chunk.as_bytes()).unwrap();
        written += chunk.len() as u64;
    }
    zip.write_all(SHEET_TAIL.as_bytes()).unwrap();
    zip.finish().unwrap();
}

/// The zip bomb: a worksheet of 1 GiB + 64 MiB of spaces (XML allows them between
/// elements), about 1 MiB compressed. Built once per target directory (a few seconds) and
/// reused.
fn zip_bomb() -> PathBuf {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("carrierhub-zip-bomb-v2.xlsx");
    if !path.exists() {
        let started = Instant::now();
        let partial = path.with_extension("partial");
        write_xlsx(&partial, GIB + (64 << 20), " ");
        std::fs::rename(&partial, &path).unwrap();
        eprintln!(
            "built the zip bomb ({} bytes) in {:.1?}",
            std::fs::metadata(&path).unwrap().len(),
            started.elapsed()
        );
    }
    path
}

#[test]
fn an_xlsx_that_expands_past_one_gib_is_refused_before_it_is_inflated() {
    let path = zip_bomb();
    let compressed = std::fs::metadata(&path).unwrap().len();
    assert!(
        compressed < 2 << 20,
        "the bomb is small: {compressed} bytes"
    );
    let started = Instant::now();
    let Err(FormatError::Limit(message)) = read(&spec(SourceFormat::Xlsx), &path) else {
        panic!("expected a limit error")
    };
    assert!(
        message.starts_with("the workbook's parts expand to 1.06 GiB (")
            && message.contains("more than the 1.00 GiB (1073741824 bytes) accepted")
            && message.contains("the largest part, 'xl/worksheets/sheet1.xml', is 1.06 GiB"),
        "{message}"
    );
    // Only the central directory was read.
    assert!(started.elapsed().as_secs() < 2, "{:?}", started.elapsed());

    // Under a higher total limit, the compression ratio still gives it away.
    let mut spec = spec(SourceFormat::Xlsx);
    spec.limits.max_uncompressed_bytes = 4 * GIB;
    let Err(FormatError::Limit(message)) = read(&spec, &path) else {
        panic!("expected a limit error")
    };
    assert!(
        message.starts_with("the workbook's part 'xl/worksheets/sheet1.xml' declares 1.06 GiB (")
            && message.contains(":1): a zip bomb?"),
        "{message}"
    );
}

#[test]
fn an_xlsx_whose_parts_lie_about_their_size_cannot_inflate_past_it() {
    // A 40 MiB sheet declared as 2,000 bytes: the directory check passes, and zip stops
    // inflating at the declared size (the reader fails instead of reading on).
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("liar.xlsx");
    let row = r#"<row><c t="inlineStr"><is><t>AAAAAAAAAAAAAAAAAAAAAAAA</t></is></c></row>"#;
    write_xlsx(&path, 40 << 20, row);
    let mut bytes = std::fs::read(&path).unwrap();
    let name = b"xl/worksheets/sheet1.xml";
    let mut patched = 0;
    for i in 0..bytes.len() - 4 {
        let (size_at, name_len_at, name_at) = match &bytes[i..i + 4] {
            b"PK\x03\x04" => (i + 22, i + 26, i + 30),
            b"PK\x01\x02" => (i + 24, i + 28, i + 46),
            _ => continue,
        };
        let len = u16::from_le_bytes([bytes[name_len_at], bytes[name_len_at + 1]]) as usize;
        if bytes.get(name_at..name_at + len) == Some(&name[..]) {
            bytes[size_at..size_at + 4].copy_from_slice(&2000u32.to_le_bytes());
            patched += 1;
        }
    }
    assert_eq!(patched, 2, "local header and central directory");
    std::fs::write(&path, &bytes).unwrap();
    let error = match read(&spec(SourceFormat::Xlsx), &path) {
        Err(e) => e,
        Ok(read) => read.error.expect("the read must fail"),
    };
    assert!(
        error
            .to_string()
            .contains("larger than its declared uncompressed size"),
        "{error}"
    );
}

#[test]
fn xml_entity_expansion_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut doc =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    for i in 1..=9 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        doc.push_str(&format!(
            " <!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    doc.push_str("]>\n<lolz><Policy>&lol9;</Policy></lolz>\n");
    let path = write(dir.path(), "laughs.xml", doc.as_bytes());
    let mut spec = spec(SourceFormat::Xml);
    spec.record_element = "Policy".into();
    let error = match read(&spec, &path) {
        Err(e) => e,
        Ok(read) => read.error.expect("the read must fail"),
    };
    assert_eq!(
        error.to_string(),
        "refused: the XML has a DOCTYPE at line 2: DTDs and entity declarations are not accepted (entity expansion)"
    );

    // Without the DTD, the entity is unknown: that record fails, the next is read.
    let path = write(
        dir.path(),
        "entity.xml",
        b"<lolz><Policy>&lol9;</Policy><Policy>ok</Policy></lolz>",
    );
    let read = read(&spec, &path).unwrap();
    assert!(read.errors()[0].reason.contains("unknown entity '&lol9;'"));
    assert_eq!(tree(read.ok()[0]), &text("ok"));
}

#[test]
fn a_10_mib_csv_field_rejects_its_record_and_the_next_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut payload = b"Policy,Note\nP1,short\nP2,\"".to_vec();
    payload.extend(std::iter::repeat_n(b'x', 10 << 20));
    payload.extend(b"\"\nP3,after\n");
    let path = write(dir.path(), "big.csv", &payload);
    let read = read(&spec(SourceFormat::Csv), &path).unwrap();
    assert!(read.error.is_none());
    assert_eq!(read.positions(), [(1, 2), (2, 3), (3, 4)]);
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column.as_deref(), Some("Note"));
    assert_eq!(
        errors[0].reason,
        "the value is 10.0 MiB (10485760 bytes); the largest accepted value is 1.0 MiB (1048576 bytes)"
    );
    assert!(errors[0].value.as_ref().unwrap().len() < 200);
    assert_eq!(row_text(read.ok()[1]), ["P3", "after"]);
}

#[test]
fn an_unbalanced_quote_stops_at_the_record_limit() {
    // The quote never closes: the csv crate would buffer the rest of the payload as one
    // field. The guard refuses the payload once the record passes max_record_bytes.
    let dir = tempfile::tempdir().unwrap();
    let mut payload = b"Policy,Note\nP1,ok\nP2,\"never closed".to_vec();
    payload.extend(std::iter::repeat_n(b'y', 3 << 20));
    let path = write(dir.path(), "quote.csv", &payload);
    let mut spec = spec(SourceFormat::Csv);
    spec.limits.max_record_bytes = 1 << 20;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.records.len(), 1);
    let Some(FormatError::Limit(message)) = read.error else {
        panic!("{:?}", read.error)
    };
    assert_eq!(
        message,
        "record 2 starting at line 3 is larger than 1.0 MiB (1048576 bytes) and its end was not found (an unbalanced quote?); the payload is not read further"
    );
}

#[test]
fn bytes_invalid_for_the_declared_encoding_reject_one_record() {
    let dir = tempfile::tempdir().unwrap();
    // Declared UTF-8, one Latin-1 field.
    let path = write(
        dir.path(),
        "latin.csv",
        b"Policy;Insured\nP1;Anna\nP2;J\xfcrgen\nP3;Bea\n",
    );
    let mut spec = spec(SourceFormat::Csv);
    spec.delimiter = b';';
    let read = read(&spec, &path).unwrap();
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].position.line, 3);
    assert_eq!(
        errors[0].to_string(),
        "record 2 (line 3), column 'Insured': invalid UTF-8 (byte 0xFC at offset 1); is the file encoded as ISO-8859-1 or Windows-1252?"
    );
    assert_eq!(read.ok().len(), 2);

    // Declared UTF-16 (with its mark), one unpaired surrogate.
    let mut bytes = utf16le("Policy;Insured\nP1;Anna\nP2;", true);
    bytes.extend([0x3D, 0xD8]);
    bytes.extend(utf16le("x\nP3;Bea\n", false));
    let path = write(dir.path(), "utf16.csv", &bytes);
    let read = common::read(&spec, &path).unwrap();
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].column.as_deref(), Some("Insured"));
    assert!(errors[0]
        .reason
        .starts_with("invalid UTF-16 (little-endian) byte sequence"));
    assert_eq!(read.ok().len(), 2);

    // NDJSON and XML name the member.
    let path = write(
        dir.path(),
        "bad.ndjson",
        b"{\"insured\": {\"name\": \"J\xfcrgen\"}}\n{\"insured\": {\"name\": \"Bea\"}}\n",
    );
    let read = common::read(&ReaderSpec::for_format(SourceFormat::Ndjson), &path).unwrap();
    assert_eq!(read.errors()[0].column.as_deref(), Some("insured/name"));
    assert_eq!(read.ok().len(), 1);
}

fn deep_json(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

#[test]
fn json_nested_100000_deep_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let json = ReaderSpec::for_format(SourceFormat::Json);

    // As the document: its one element is far too deep.
    let path = write(dir.path(), "deep.json", deep_json(100_000).as_bytes());
    let read = read(&json, &path).unwrap();
    assert!(read.error.is_none());
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors[0].reason,
        "invalid JSON at line 1, column 65: nested deeper than 64 levels of arrays and objects"
    );

    // As a document of objects (no array): a clear layout error.
    let objects = format!("{}1{}", "{\"a\":".repeat(100_000), "}".repeat(100_000));
    let path = write(dir.path(), "objects.json", objects.as_bytes());
    let Err(FormatError::Layout(m)) = common::read(&json, &path) else {
        panic!()
    };
    assert!(m.starts_with("the document is an object"), "{m}");

    // Under a pointer, the walk past deep siblings costs no stack.
    let wrapped = format!("{{\"skip\": {objects}, \"data\": [{{\"ok\": 1}}]}}");
    let path = write(dir.path(), "wrapped.json", wrapped.as_bytes());
    let mut under = json.clone();
    under.records = "/data".into();
    let read = common::read(&under, &path).unwrap();
    assert_eq!(read.ok().len(), 1);

    // Unclosed: the payload ends inside the element.
    let path = write(dir.path(), "open.json", "[".repeat(100_000).as_bytes());
    let read = common::read(&json, &path).unwrap();
    assert!(matches!(read.error, Some(FormatError::Malformed { .. })));

    // As one element among valid ones: the others come through.
    let payload = format!("[{{\"ok\": 1}},\n{},\n{{\"ok\": 2}}]", deep_json(100_000));
    let path = write(dir.path(), "mixed.json", payload.as_bytes());
    let read = common::read(&json, &path).unwrap();
    assert!(read.error.is_none());
    assert_eq!(read.positions(), [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(read.ok().len(), 2);
    assert!(read.errors()[0]
        .reason
        .contains("nested deeper than 64 levels"));

    // The same in NDJSON.
    let payload = format!("{{\"ok\": 1}}\n{}\n{{\"ok\": 2}}\n", deep_json(100_000));
    let path = write(dir.path(), "mixed.ndjson", payload.as_bytes());
    let read = common::read(&ReaderSpec::for_format(SourceFormat::Ndjson), &path).unwrap();
    assert_eq!(read.ok().len(), 2);
    assert_eq!(read.errors().len(), 1);
}

#[test]
fn xml_nested_100000_deep_is_an_error_not_a_crash() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = ReaderSpec::for_format(SourceFormat::Xml);
    spec.record_element = "Policy".into();
    // Inside a record: that record fails, the next is read.
    let payload = format!(
        "<r><Policy>{}{}</Policy><Policy>ok</Policy></r>",
        "<a>".repeat(100_000),
        "</a>".repeat(100_000)
    );
    let path = write(dir.path(), "deep.xml", payload.as_bytes());
    let read = read(&spec, &path).unwrap();
    assert!(read.error.is_none(), "{:?}", read.error);
    assert!(read.errors()[0]
        .reason
        .contains("nested deeper than 64 levels"));
    assert_eq!(tree(read.ok()[0]), &text("ok"));
    // Outside any record: the payload is refused.
    let payload = format!("{}<Policy/>", "<a>".repeat(100_000));
    let path = write(dir.path(), "deep2.xml", payload.as_bytes());
    let Some(FormatError::Limit(m)) = common::read(&spec, &path).unwrap().error else {
        panic!()
    };
    assert!(m.contains("nested deeper than 64 levels"), "{m}");
}

#[test]
fn one_xml_text_larger_than_a_record_stops_with_a_limit() {
    // quick-xml buffers one event whole, so a single text past max_record_bytes cannot
    // be skipped with bounded memory: the guard refuses the payload there.
    let dir = tempfile::tempdir().unwrap();
    let mut payload = b"<r>\n<p>1</p>\n<p>".to_vec();
    payload.extend(std::iter::repeat_n(b'z', 3 << 20));
    payload.extend(b"</p><p>3</p></r>");
    let path = write(dir.path(), "text.xml", &payload);
    let mut spec = ReaderSpec::for_format(SourceFormat::Xml);
    spec.record_element = "p".into();
    spec.limits.max_record_bytes = 1 << 20;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.records.len(), 1);
    let Some(FormatError::Limit(m)) = read.error else {
        panic!("{:?}", read.error)
    };
    assert_eq!(
        m,
        "an XML tag or text near line 3 is larger than 1.0 MiB (1048576 bytes); the payload is not read further"
    );
}
