//! JSON, NDJSON and XML through `open()`.

use crate::common;

use carrierhub_formats::{FormatError, ReaderSpec, SourceFormat, TextEncoding, Value};
use common::*;

fn json(records: &str) -> ReaderSpec {
    let mut spec = spec(SourceFormat::Json);
    spec.records = records.to_owned();
    spec
}

fn xml(element: &str) -> ReaderSpec {
    let mut spec = spec(SourceFormat::Xml);
    spec.record_element = element.to_owned();
    spec
}

#[test]
fn json_records_under_a_pointer_keep_exact_numbers_and_lines() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.json",
        br#"{
  "meta": {"skipped": [1, [2, [3]], "a \"]\" string"]},
  "data": {
    "policies": [
      {"number": "P1", "premium": 1234.50, "big": 123456789012345678901234567890,
       "insured": {"name": "Ann"}, "tags": ["a", "b"], "active": true, "end": null},
      {"number": "P2", "premium": 1e-7},
      "not an object",
      {"number": "P3", "premium": 01},
      {"number": "P4"}
    ],
    "after": 1
  }
}"#,
    );
    let read = read(&json("/data/policies"), &path).unwrap();
    assert!(read.error.is_none(), "{:?}", read.error);
    assert!(read.headers.is_empty());
    assert_eq!(read.positions(), [(1, 5), (2, 7), (3, 8), (4, 9), (5, 10)]);
    let ok = read.ok();
    let p1 = tree(ok[0]);
    assert_eq!(p1.get("premium"), Some(&number("1234.50")));
    assert_eq!(
        p1.get("big"),
        Some(&number("123456789012345678901234567890"))
    );
    assert_eq!(
        p1.get("insured").and_then(|v| v.get("name")),
        Some(&text("Ann"))
    );
    assert_eq!(
        p1.get("tags"),
        Some(&Value::List(vec![text("a"), text("b")]))
    );
    assert_eq!(p1.get("end"), Some(&Value::Null));
    let Value::Map(entries) = p1 else { panic!() };
    let keys: Vec<_> = entries.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        keys,
        ["number", "premium", "big", "insured", "tags", "active", "end"]
    );
    assert_eq!(tree(ok[1]).get("premium"), Some(&number("1e-7")));
    // A non-object element is still a record; the mapping reports it.
    assert_eq!(tree(ok[2]), &text("not an object"));
    // A syntax error inside one element rejects that record only.
    let errors = read.errors();
    assert_eq!(errors.len(), 1);
    assert_eq!(errors[0].position.line, 9);
    assert!(
        errors[0]
            .reason
            .starts_with("invalid JSON at line 9, column 35:")
            && errors[0].reason.contains("leading zeros"),
        "{}",
        errors[0].reason
    );
}

#[test]
fn json_document_array_utf16_and_structure_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.json",
        &utf16le("[{\"name\": \"Müller\"},\n {\"name\": \"€\"}]", true),
    );
    let read = read(&json(""), &path).unwrap();
    assert_eq!(read.positions(), [(1, 1), (2, 2)]);
    assert_eq!(tree(read.ok()[1]).get("name"), Some(&text("€")));

    // Between elements the structure is broken: the payload cannot be read further.
    let path = write(dir.path(), "b.json", b"[{\"a\":1}\n {\"a\":2}]");
    let read = common::read(&json(""), &path).unwrap();
    assert_eq!(read.records.len(), 1);
    let Some(FormatError::Malformed { line, reason, .. }) = read.error else {
        panic!()
    };
    assert_eq!(line, 2);
    assert!(
        reason.contains("expected ',' or ']' after record 1"),
        "{reason}"
    );

    // Cut short.
    let path = write(dir.path(), "c.json", b"[{\"a\":1},\n{\"a\":");
    let read = common::read(&json(""), &path).unwrap();
    assert_eq!(read.records.len(), 1);
    assert!(read
        .error
        .unwrap()
        .to_string()
        .contains("ends inside an object"),);
}

#[test]
fn json_pointer_problems_are_layout_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.json",
        br#"{"data": {"claims": [], "count": 0}}"#,
    );
    let Err(FormatError::Layout(m)) = read(&json("/data/policies"), &path) else {
        panic!()
    };
    assert_eq!(
        m,
        "records = '/data/policies': the object at '/data' has no key 'policies'; its keys: 'claims', 'count'"
    );
    let Err(FormatError::Layout(m)) = read(&json(""), &path) else {
        panic!()
    };
    assert!(
        m.starts_with("the document is an object, not an array of records"),
        "{m}"
    );
    let Err(FormatError::Layout(m)) = read(&json("/data/count"), &path) else {
        panic!()
    };
    assert!(m.contains("is a number, not an array"), "{m}");
    // An empty array is no records, not an error.
    let read = read(&json("/data/claims"), &path).unwrap();
    assert!(read.records.is_empty() && read.error.is_none());
}

#[test]
fn json_array_index_in_the_pointer() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.json",
        br#"{"batches": [{"items": [1]}, {"items": [2, 3]}]}"#,
    );
    let read = read(&json("/batches/1/items"), &path).unwrap();
    assert_eq!(
        read.ok()
            .iter()
            .map(|r| tree(r).clone())
            .collect::<Vec<_>>(),
        [number("2"), number("3")]
    );
}

#[test]
fn ndjson_a_bad_line_is_one_record_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "a.ndjson",
        b"{\"n\": 1, \"premium\": 10.10}\n\n{\"n\": 2,, }\r\n{\"n\": 3}\n   \n[1,2]",
    );
    let read = read(&spec(SourceFormat::Ndjson), &path).unwrap();
    assert_eq!(read.positions(), [(1, 1), (2, 3), (3, 4), (4, 6)]);
    let ok = read.ok();
    assert_eq!(tree(ok[0]).get("premium"), Some(&number("10.10")));
    assert_eq!(tree(ok[2]), &Value::List(vec![number("1"), number("2")]));
    let errors = read.errors();
    assert!(
        errors[0]
            .reason
            .starts_with("invalid JSON at line 3, column 9:"),
        "{}",
        errors[0].reason
    );
}

#[test]
fn ndjson_a_line_over_the_limit_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let big = format!("{{\"x\": \"{}\"}}", "y".repeat(5000));
    let path = write(
        dir.path(),
        "a.ndjson",
        format!("{{\"n\":1}}\n{big}\n{{\"n\":3}}\n").as_bytes(),
    );
    let mut spec = spec(SourceFormat::Ndjson);
    spec.limits.max_record_bytes = 1024;
    let read = read(&spec, &path).unwrap();
    assert_eq!(read.positions(), [(1, 1), (2, 2), (3, 3)]);
    assert!(
        read.errors()[0].reason.contains("4.9 KiB (5009 bytes)"),
        "{}",
        read.errors()[0].reason
    );
}

const BORDEREAU: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<!-- a comment -->
<b:Bordereau xmlns:b="urn:example:bordereau" period="2025-03">
  <b:Header><b:Carrier>Northwind</b:Carrier></b:Header>
  <b:Policies>
    <b:Policy id="P1" status="active">
      <b:Premium currency="EUR">1234.50</b:Premium>
      <b:Insured><b:Name>Ann &amp; Bob</b:Name></b:Insured>
      <b:Coverage code="FIRE"/>
      <b:Coverage code="FLOOD"/>
      <b:Note>mixed <b:em>content</b:em> here</b:Note>
      <b:Empty/>
      <b:Data><![CDATA[<raw> & text]]></b:Data>
    </b:Policy>
    <b:Policy id="P2"><b:Premium>&#49;0</b:Premium><b:Bad>&unknown;</b:Bad></b:Policy>
    <b:Policy
        id="P3"><b:Premium>30</b:Premium></b:Policy>
  </b:Policies>
</b:Bordereau>
"#;

#[test]
fn xml_records_by_path_with_attributes_and_repeated_children() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.xml", BORDEREAU.as_bytes());
    for element in [
        "Policy",
        "Bordereau/Policies/Policy",
        "/Bordereau/Policies/Policy",
    ] {
        let read = read(&xml(element), &path).unwrap();
        assert!(read.error.is_none(), "{:?}", read.error);
        assert_eq!(read.positions(), [(1, 6), (2, 15), (3, 16)], "{element}");
        let p1 = tree(read.ok()[0]);
        assert_eq!(p1.get("@id"), Some(&text("P1")));
        assert_eq!(
            p1.get("Premium"),
            Some(&Value::Map(vec![
                ("@currency".into(), text("EUR")),
                ("#text".into(), text("1234.50"))
            ]))
        );
        assert_eq!(
            p1.get("Insured").and_then(|i| i.get("Name")),
            Some(&text("Ann & Bob"))
        );
        let coverages = p1.get("Coverage").unwrap().items();
        assert_eq!(coverages.len(), 2);
        assert_eq!(coverages[1].get("@code"), Some(&text("FLOOD")));
        let note = p1.get("Note").unwrap();
        assert_eq!(note.get("em"), Some(&text("content")));
        assert_eq!(note.get("#text"), Some(&text("mixed  here")));
        assert_eq!(p1.get("Empty"), Some(&text("")));
        assert_eq!(p1.get("Data"), Some(&text("<raw> & text")));
        let errors = read.errors();
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].column.as_deref(), Some("Bad"));
        assert!(errors[0].reason.contains("unknown entity '&unknown;'"));
        assert_eq!(
            tree(read.ok()[1]).get("Premium"),
            Some(&text("30")),
            "P3 after the bad P2"
        );
    }
    // A path that matches nothing lists the elements it saw.
    let Some(FormatError::Layout(m)) = read(&xml("Claim"), &path).unwrap().error else {
        panic!()
    };
    assert!(
        m.contains("no element matches record_element = 'Claim'") && m.contains("Policies"),
        "{m}"
    );
    // An absolute path must match from the root.
    let Some(FormatError::Layout(_)) = read(&xml("/Policies/Policy"), &path).unwrap().error else {
        panic!()
    };
}

#[test]
fn xml_encodings_from_the_mark_or_the_declaration() {
    let dir = tempfile::tempdir().unwrap();
    let doc = "<?xml version=\"1.0\"?>\n<r><p n=\"1\">Müller €</p>\n<p n=\"2\">x</p></r>";
    for (name, bytes) in [
        ("le.xml", utf16le(doc, true)),
        ("be.xml", utf16be(doc, true)),
    ] {
        let path = write(dir.path(), name, &bytes);
        let read = read(&xml("p"), &path).unwrap();
        assert_eq!(read.positions(), [(1, 2), (2, 3)], "{name}");
        assert_eq!(tree(read.ok()[0]).get("#text"), Some(&text("Müller €")));
    }
    let path = write(
        dir.path(),
        "w.xml",
        b"<?xml version=\"1.0\" encoding=\"windows-1252\"?><r><p>M\xfcller \x80</p></r>",
    );
    let read = read(&xml("p"), &path).unwrap();
    assert_eq!(tree(read.ok()[0]), &text("Müller €"));
    // Invalid UTF-8 rejects its record, naming the element.
    let path = write(
        dir.path(),
        "bad.xml",
        b"<r><p><a>M\xfcller</a></p><p><a>ok</a></p></r>",
    );
    let read = common::read(&xml("p"), &path).unwrap();
    let errors = read.errors();
    assert_eq!(errors[0].column.as_deref(), Some("a"));
    assert!(
        errors[0].reason.contains("invalid UTF-8"),
        "{}",
        errors[0].reason
    );
    assert_eq!(tree(read.ok()[0]).get("a"), Some(&text("ok")));
    // Declared encoding for a payload without a declaration.
    let path = write(dir.path(), "l.xml", b"<r><p>M\xfcller</p></r>");
    let mut spec = xml("p");
    spec.encoding = TextEncoding::Latin1;
    let read = common::read(&spec, &path).unwrap();
    assert_eq!(tree(read.ok()[0]), &text("Müller"));
}

#[test]
fn xml_malformed_structure_is_a_format_error_with_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.xml", b"<r>\n<p>1</p>\n<p>2</q>\n</r>");
    let read = read(&xml("p"), &path).unwrap();
    assert_eq!(read.records.len(), 1);
    let Some(FormatError::Malformed { line, .. }) = read.error else {
        panic!("{:?}", read.error)
    };
    assert_eq!(line, 3);
}

#[test]
fn records_over_the_size_limit_are_rejected_and_the_next_is_read() {
    let dir = tempfile::tempdir().unwrap();
    let big = "x".repeat(3000);
    let path = write(
        dir.path(),
        "a.json",
        format!(
            "[{{\"a\": 1}},\n{{\"a\": \"{big}\", \"b\": [1, {{\"c\": \"]\"}}]}},\n{{\"a\": 3}}]"
        )
        .as_bytes(),
    );
    let mut spec = json("");
    spec.limits.max_record_bytes = 1024;
    let read = read(&spec, &path).unwrap();
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.positions(), [(1, 1), (2, 2), (3, 3)]);
    assert_eq!(
        read.errors()[0].reason,
        "the record is 3.0 KiB (3031 bytes); the largest accepted record is 1.0 KiB (1024 bytes)"
    );
    assert_eq!(tree(read.ok()[1]).get("a"), Some(&number("3")));

    let path = write(
        dir.path(),
        "a.xml",
        format!("<r>\n<p>1</p>\n<p><a>{big}</a><b/></p>\n<p>3</p></r>").as_bytes(),
    );
    let mut spec = xml("p");
    spec.limits.max_record_bytes = 1024;
    let read = common::read(&spec, &path).unwrap();
    assert!(read.error.is_none(), "{:?}", read.error);
    assert_eq!(read.positions(), [(1, 2), (2, 3), (3, 4)]);
    assert!(
        read.errors()[0].reason.contains("larger than 1.0 KiB"),
        "{}",
        read.errors()[0].reason
    );
    assert_eq!(tree(read.ok()[1]), &text("3"));

    // A field over max_field_bytes rejects only its record, naming the member.
    let mut spec = xml("p");
    spec.limits.max_field_bytes = 100;
    let read = common::read(&spec, &path).unwrap();
    assert_eq!(read.errors()[0].column.as_deref(), Some("a"));
    assert_eq!(read.ok().len(), 2);
    let mut spec = json("");
    spec.limits.max_field_bytes = 100;
    let path = dir.path().join("a.json");
    let read = common::read(&spec, &path).unwrap();
    assert_eq!(read.errors()[0].column.as_deref(), Some("a"));
    assert_eq!(read.ok().len(), 2);
}

#[test]
fn xml_an_empty_delivery_is_not_a_wrong_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(
        dir.path(),
        "empty.xml",
        b"<Bordereau><Policies></Policies></Bordereau>",
    );
    let read = read(&xml("Bordereau/Policies/Policy"), &path).unwrap();
    assert!(read.records.is_empty() && read.error.is_none());
    let Some(FormatError::Layout(m)) = common::read(&xml("Policy"), &path).unwrap().error else {
        panic!()
    };
    assert!(m.contains("Bordereau, Policies"), "{m}");
}
