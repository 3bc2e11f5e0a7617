//! The mapping language's features, each on a small record: sources (columns, paths,
//! constants, concatenation), transforms, typed reading, validation, conditions and routing.

use carrierhub_formats::{RecordData, RecordPosition, SourceRecord, Value};
use carrierhub_mapping::{ErrorKind, FieldError, Mapped, MappingSpec};
use carrierhub_model::{CanonicalRecord, CarrierId, Claim, Policy};
use rust_decimal::Decimal;
use std::str::FromStr;

fn carrier() -> CarrierId {
    CarrierId::parse("acme").unwrap()
}

fn row(values: &[&str]) -> SourceRecord {
    SourceRecord {
        position: RecordPosition { record: 1, line: 2 },
        data: RecordData::Row(
            values
                .iter()
                .map(|v| {
                    if v.is_empty() {
                        Value::Null
                    } else {
                        Value::Text(v.to_string())
                    }
                })
                .collect(),
        ),
    }
}

fn tree(value: Value) -> SourceRecord {
    SourceRecord {
        position: RecordPosition { record: 1, line: 1 },
        data: RecordData::Tree(value),
    }
}

fn text(s: &str) -> Value {
    Value::Text(s.to_owned())
}

fn map(entries: &[(&str, Value)]) -> Value {
    Value::Map(
        entries
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
    )
}

fn headers(h: &[&str]) -> Vec<String> {
    h.iter().map(|s| s.to_string()).collect()
}

fn policy(mapped: Mapped) -> Policy {
    match mapped {
        Mapped::Record(CanonicalRecord::Policy(p)) => p,
        other => panic!("expected a policy, got {other:?}"),
    }
}

fn claim(mapped: Mapped) -> Claim {
    match mapped {
        Mapped::Record(CanonicalRecord::Claim(c)) => c,
        other => panic!("expected a claim, got {other:?}"),
    }
}

fn rejected(mapped: Mapped) -> Vec<FieldError> {
    match mapped {
        Mapped::Rejected(e) => e,
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

const CSV_POLICY: &str = r#"
[mapping]
name = "t"
record = "policy"
[source]
format = "csv"
[conventions]
date_format = ["%d/%m/%Y", "%Y-%m-%d"]
currency = "GBP"
excel_serial = true
[fields]
number = { column = "Ref", regex = "^POL-(\\d+)$", pattern = "^\\d{4}$" }
line_of_business = { column = "Class", codes = "class", fallback = "inland_marine", case = "upper" }
status = { column = "Status", split = { separator = "/", part = -1 }, codes = "status" }
effective_date = "Start"
expiration_date = { column = "End", min = "2020-01-01" }
premium = { column = "Premium", thousands_separator = ",", min = "0", max = "100000" }
producer = { column = "Broker", required = true, one_of = ["B1", "B2"] }
[fields.insured]
name = { concat = ["First", "Last"], case = "title" }
country = { value = "gb" }
[[coverages]]
code = { value = "BLD" }
limit = { column = "Limit k", scale = "1000" }
deductible = { column = "Excess %", percent = true }
[[checks]]
rule = "date_order"
fields = ["effective_date", "expiration_date"]
[[skip]]
column = "Ref"
matches = "^(Total|TOTAL)"
[codes.class]
PROP = "commercial_property"
[codes.status]
LIVE = "active"
CXL = "cancelled"
"#;

const CSV_HEADER: [&str; 12] = [
    "Ref", "Class", "Status", "Start", "End", "Premium", "Broker", "First", "Last", "Limit k",
    "Excess %", "Notes",
];

fn csv_spec() -> carrierhub_mapping::BoundMapping {
    MappingSpec::parse("t.toml", CSV_POLICY)
        .unwrap()
        .bind(&headers(&CSV_HEADER))
        .unwrap()
}

#[test]
fn transforms_apply_in_order_and_amounts_read_symbols_percentages_and_scale() {
    let bound = csv_spec();
    assert_eq!(bound.unmapped_columns, ["Notes"]);
    let p = policy(bound.map_record(
        &carrier(),
        &row(&[
            "POL-0042",
            " prop ",
            "2024/LIVE",
            "45658",
            "31/12/2025",
            "£1,234.50",
            "B2",
            "ada",
            "LOVELACE",
            "250",
            "2.5%",
            "x",
        ]),
    ));
    assert_eq!(p.number.as_str(), "0042");
    assert_eq!(p.line_of_business.value.to_string(), "commercial_property");
    assert_eq!(p.line_of_business.original, "PROP");
    assert_eq!(p.status.original, "LIVE");
    assert_eq!(
        p.effective_date.to_string(),
        "2025-01-01",
        "Excel serial 45658"
    );
    assert_eq!(p.premium.amount, dec("1234.50"));
    assert_eq!(p.insured.name, "Ada Lovelace");
    assert_eq!(p.insured.country.as_deref(), Some("GB"));
    assert_eq!(p.coverages[0].limit.as_ref().unwrap().amount, dec("250000"));
    assert_eq!(
        p.coverages[0].deductible.as_ref().unwrap().amount,
        dec("0.025")
    );
}

#[test]
fn code_table_fallback_applies_to_unknown_codes() {
    let p = policy(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "MARINE",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "B1",
            "a",
            "b",
            "",
            "",
            "",
        ]),
    ));
    assert_eq!(p.line_of_business.value.to_string(), "inland_marine");
    assert_eq!(p.line_of_business.original, "MARINE");
    assert!(p.coverages.is_empty(), "a blank coverage group is no cover");
}

#[test]
fn every_rule_failure_is_reported_with_its_field_column_and_kind() {
    let errors = rejected(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-12",
            "PROP",
            "2024/PAUSED",
            "2025-06-01",
            "31/12/2019",
            "250,000.00",
            "B9",
            "a",
            "b",
            "",
            "5%",
            "",
        ]),
    ));
    let got: Vec<(&str, Option<&str>, ErrorKind)> = errors
        .iter()
        .map(|e| (e.field.as_str(), e.column.as_deref(), e.kind))
        .collect();
    assert!(
        got.contains(&("number", Some("Ref"), ErrorKind::Pattern)),
        "{got:?}"
    );
    assert!(got.contains(&("status", Some("Status"), ErrorKind::UnknownCode)));
    assert!(got.contains(&("expiration_date", Some("End"), ErrorKind::Range)));
    assert!(got.contains(&("premium", Some("Premium"), ErrorKind::Range)));
    assert!(got.contains(&("producer", Some("Broker"), ErrorKind::OneOf)));
    let premium = errors.iter().find(|e| e.field == "premium").unwrap();
    assert!(
        premium.reason.contains("above the maximum 100000"),
        "{}",
        premium.reason
    );
}

#[test]
fn record_checks_and_model_rules_reject_after_mapping() {
    let errors = rejected(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/06/2025",
            "01/01/2025",
            "10",
            "B1",
            "a",
            "b",
            "",
            "",
            "",
        ]),
    ));
    assert!(
        errors
            .iter()
            .any(|e| e.kind == ErrorKind::Check && e.field == "expiration_date"),
        "{errors:?}"
    );
}

#[test]
fn required_optional_fields_and_skip_rules() {
    let errors = rejected(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "",
            "a",
            "b",
            "",
            "",
            "",
        ]),
    ));
    assert_eq!(errors[0].field, "producer");
    assert_eq!(errors[0].kind, ErrorKind::Required);
    let skipped = csv_spec().map_record(
        &carrier(),
        &row(&["Total", "", "", "", "", "99", "", "", "", "", "", ""]),
    );
    assert!(matches!(skipped, Mapped::Skipped(reason) if reason.contains("Ref")));
}

const JSON_POLICY: &str = r#"
[mapping]
name = "j"
record = "policy"
[source]
format = "ndjson"
[fields]
number = "policy/id"
line_of_business = { path = "policy/product", codes = "product" }
status = "status"
effective_date = "term/start"
expiration_date = "term/end"
premium = "premium/amount"
currency = "premium/currency"
[fields.insured]
name = "insured/name"
kind = { path = "insured/type", codes = "party" }
[[coverages]]
each = "coverages"
code = { path = "code", case = "upper" }
limit = "limit"
premium = { path = "premium", default = "0" }
[codes.product]
home = "homeowners"
[codes.party]
P = "person"
C = "organisation"
"#;

fn json_record(coverages: Value) -> SourceRecord {
    tree(map(&[
        (
            "policy",
            map(&[("id", text("H-1")), ("product", text("home"))]),
        ),
        ("status", text("active")),
        (
            "term",
            map(&[("start", text("2025-01-01")), ("end", text("2025-12-31"))]),
        ),
        (
            "premium",
            map(&[
                ("amount", Value::Number("1200.10".into())),
                ("currency", text("€")),
            ]),
        ),
        ("insured", map(&[("name", text("Jo")), ("type", text("P"))])),
        ("coverages", coverages),
        ("channel", text("web")),
    ]))
}

#[test]
fn json_paths_and_nested_arrays_become_coverages() {
    let spec = MappingSpec::parse("j.toml", JSON_POLICY).unwrap();
    let bound = spec.bind(&[]).unwrap();
    let p = policy(bound.map_record(
        &carrier(),
        &json_record(Value::List(vec![
            map(&[
                ("code", text("bld")),
                ("limit", Value::Number("300000".into())),
                ("premium", Value::Number("900.1".into())),
            ]),
            map(&[
                ("code", text("cnt")),
                ("limit", Value::Number("50000".into())),
            ]),
        ])),
    ));
    assert_eq!(p.number.as_str(), "H-1");
    assert_eq!(p.premium.to_string(), "1200.10 EUR", "'€' is EUR, built in");
    assert_eq!(p.coverages.len(), 2);
    assert_eq!(p.coverages[0].code, "BLD");
    assert_eq!(
        p.coverages[1].premium.as_ref().unwrap().amount,
        Decimal::ZERO
    );
    assert_eq!(p.coverages[1].limit.as_ref().unwrap().amount, dec("50000"));
}

#[test]
fn an_error_inside_a_nested_element_names_the_element() {
    let spec = MappingSpec::parse("j.toml", JSON_POLICY).unwrap();
    let errors = rejected(spec.bind(&[]).unwrap().map_record(
        &carrier(),
        &json_record(Value::List(vec![map(&[
            ("code", text("bld")),
            ("limit", text("lots")),
        ])])),
    ));
    assert_eq!(errors[0].field, "coverages[0].limit (element 1)");
    assert_eq!(errors[0].column.as_deref(), Some("limit"));
    assert_eq!(errors[0].kind, ErrorKind::Type);
}

#[test]
fn a_list_where_one_value_belongs_is_a_shape_error() {
    let spec = MappingSpec::parse("j.toml", JSON_POLICY).unwrap();
    let mut record = json_record(Value::List(vec![]));
    if let RecordData::Tree(Value::Map(entries)) = &mut record.data {
        entries[1].1 = Value::List(vec![text("a"), text("b")]);
    }
    let errors = rejected(spec.bind(&[]).unwrap().map_record(&carrier(), &record));
    assert_eq!(errors[0].field, "status");
    assert_eq!(errors[0].kind, ErrorKind::Shape);
}

const ROUTED: &str = r#"
[mapping]
name = "bordereau"
[source]
format = "csv"
[conventions]
currency = "USD"
[route]
column = "Type"
policy = ["P"]
claim = ["C"]
skip = ["T"]
[policy]
number = "Ref"
line_of_business = { value = "general_liability" }
status = { value = "active" }
effective_date = "Date"
expiration_date = "Date2"
premium = "Amount"
[policy.insured]
name = "Name"
[claim]
number = "Claim"
policy_number = "Ref"
loss_date = "Date"
reported_date = "Date2"
status = { value = "open" }
paid = "Amount"
reserve = { value = "0" }
"#;

#[test]
fn route_sends_rows_to_policies_claims_or_nowhere() {
    let spec = MappingSpec::parse("r.toml", ROUTED).unwrap();
    assert_eq!(spec.kinds.len(), 2);
    let bound = spec
        .bind(&headers(&[
            "Type", "Ref", "Claim", "Date", "Date2", "Amount", "Name",
        ]))
        .unwrap();
    let p = policy(bound.map_record(
        &carrier(),
        &row(&["P", "GL1", "", "2025-01-01", "2025-12-31", "100", "Co"]),
    ));
    assert_eq!(p.number.as_str(), "GL1");
    let c = claim(bound.map_record(
        &carrier(),
        &row(&["c", "GL1", "CL9", "2025-02-01", "2025-02-03", "55", ""]),
    ));
    assert_eq!(c.paid.amount, dec("55"));
    assert!(matches!(
        bound.map_record(&carrier(), &row(&["T", "", "", "", "", "155", ""])),
        Mapped::Skipped(_)
    ));
    let errors = rejected(bound.map_record(&carrier(), &row(&["X", "", "", "", "", "", ""])));
    assert_eq!(errors[0].kind, ErrorKind::Route);
    assert!(errors[0].reason.contains("P, C, T"), "{}", errors[0].reason);
}

#[test]
fn mapping_files_are_checked_before_any_data() {
    let cases = [
        (
            CSV_POLICY
                .replace("format = \"csv\"", "format = \"json\"")
                .replace(
                    "effective_date = \"Start\"",
                    "effective_date = { index = 4 }",
                ),
            "has no columns; use `path`",
        ),
        (
            CSV_POLICY.replace("regex = \"^POL-(\\\\d+)$\"", "regex = \"(\""),
            "regular expression",
        ),
        (
            CSV_POLICY.replace("fallback = \"inland_marine\"", "fallback = \"boats\""),
            "fallback",
        ),
        (
            CSV_POLICY.replace("min = \"2020-01-01\"", "min = \"soon\""),
            "YYYY-MM-DD",
        ),
        (
            CSV_POLICY.replace(
                "fields = [\"effective_date\", \"expiration_date\"]",
                "fields = [\"premium\", \"expiration_date\"]",
            ),
            "not a date field",
        ),
        (
            CSV_POLICY.replace(
                "matches = \"^(Total|TOTAL)\"",
                "matches = \"x\"\nequals = \"y\"",
            ),
            "exactly one test",
        ),
        (
            CSV_POLICY.replace("[source]\nformat = \"csv\"", "[source]\nformat = \"xml\""),
            "record_element is required",
        ),
        (
            ROUTED.replace("claim = [\"C\"]", "claim = [\"C\", \"p\"]"),
            "listed for both",
        ),
        (
            ROUTED.replace("skip = [\"T\"]", "skip = [\"T\"]\ntransaction = [\"AP\"]"),
            "route.transaction sends records to transactions, but there is no [transaction] section",
        ),
        (
            CSV_POLICY.replace(
                "premium = { column = \"Premium\",",
                "premium = { column = \"Premium\", codes = \"class\",",
            ),
            "amounts and dates are read by their format",
        ),
        (
            CSV_POLICY.replace(
                "[source]\nformat = \"csv\"",
                "[source]\nformat = \"xlsx\"\nencoding = \"utf-16\"",
            ),
            "source.encoding does not apply to format 'xlsx'",
        ),
        (
            ROUTED
                .replace("[route]", "[mapping2]")
                .replace("\ncolumn = \"Type\"", ""),
            "unknown field `mapping2`",
        ),
    ];
    for (text, expected) in cases {
        let err = MappingSpec::parse("t.toml", &text).unwrap_err().to_string();
        assert!(err.contains(expected), "expected '{expected}' in: {err}");
    }
}

#[test]
fn numbers_go_through_text_checks_and_a_single_element_answers_index_zero() {
    let spec_text = JSON_POLICY
        .replace(
            "premium = \"premium/amount\"",
            "premium = { path = \"premium/amount\", pattern = \"^1\" }",
        )
        .replace("[[coverages]]\neach = \"coverages\"\ncode = { path = \"code\", case = \"upper\" }\nlimit = \"limit\"\npremium = { path = \"premium\", default = \"0\" }",
            "[[coverages]]\ncode = { path = \"coverages/0/code\" }\nlimit = \"coverages/0/limit\"");
    let bound = MappingSpec::parse("j.toml", &spec_text)
        .unwrap()
        .bind(&[])
        .unwrap();
    // One coverage object, not a list: `coverages/0` is that object.
    let single = map(&[("code", text("bld")), ("limit", Value::Number("10".into()))]);
    let p = policy(bound.map_record(&carrier(), &json_record(single)));
    assert_eq!(p.coverages.len(), 1);
    assert_eq!(p.coverages[0].code, "bld");
    // The pattern applies to a JSON number as written.
    let mut record = json_record(Value::Null);
    if let RecordData::Tree(Value::Map(entries)) = &mut record.data {
        entries[3].1 = map(&[
            ("amount", Value::Number("200.10".into())),
            ("currency", text("EUR")),
        ]);
    }
    let errors = rejected(bound.map_record(&carrier(), &record));
    assert_eq!(errors[0].field, "premium");
    assert_eq!(errors[0].kind, ErrorKind::Pattern);
}

#[test]
fn canonical_defaults_beside_a_code_table_and_a_code_only_coverage() {
    let spec_text = CSV_POLICY
        .replace(
            "status = { column = \"Status\", split = { separator = \"/\", part = -1 }, codes = \"status\" }",
            "status = { column = \"Status\", codes = \"status\", default = \"active\" }",
        )
        .replace("\"%Y-%m-%d\"]", "\"%Y%m%d\"]")
        .replace("code = { value = \"BLD\" }\nlimit = { column = \"Limit k\", scale = \"1000\" }\ndeductible = { column = \"Excess %\", percent = true }", "code = \"Notes\"");
    let bound = MappingSpec::parse("t.toml", &spec_text)
        .unwrap()
        .bind(&headers(&CSV_HEADER))
        .unwrap();
    let p = policy(bound.map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "",
            "20250101",
            "31/12/2025",
            "£12.00",
            "B1",
            "a",
            "b",
            "",
            "",
            "FLOOD",
        ]),
    ));
    assert_eq!(
        p.status.value.to_string(),
        "active",
        "the default is canonical"
    );
    assert_eq!(
        p.coverages.len(),
        1,
        "a coverage with a code and no amounts"
    );
    assert_eq!(p.coverages[0].code, "FLOOD");
    assert_eq!(
        p.effective_date.to_string(),
        "2025-01-01",
        "all digits, but the date formats are tried before Excel serials"
    );
    assert_eq!(p.premium.amount, dec("12.00"));
    let gbp = carrierhub_mapping::DecimalFormat::default();
    assert_eq!(
        carrierhub_mapping::parse_amount("(£12.00)", gbp, false, None).unwrap(),
        dec("-12.00")
    );
}

#[test]
fn source_fields_the_model_has_no_place_for_are_kept_as_extras() {
    // By default, every column no field reads, under a snake_case key, when it has a value.
    let p = policy(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "B1",
            "a",
            "b",
            "",
            "",
            "Rush job",
        ]),
    ));
    assert_eq!(
        p.extras.into_iter().collect::<Vec<_>>(),
        [("notes".to_owned(), "Rush job".to_owned())]
    );
    let blank = policy(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "B1",
            "a",
            "b",
            "",
            "",
            "",
        ]),
    ));
    assert!(blank.extras.is_empty(), "an empty column is not kept");

    // `keep = "none"`, or a list of columns.
    let none = CSV_POLICY.replace(
        "[codes.class]",
        "[extras]\nkeep = \"none\"\n\n[codes.class]",
    );
    let bound = MappingSpec::parse("t.toml", &none)
        .unwrap()
        .bind(&headers(&CSV_HEADER))
        .unwrap();
    let p = policy(bound.map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "B1",
            "a",
            "b",
            "",
            "",
            "Rush job",
        ]),
    ));
    assert!(p.extras.is_empty());
    let listed = CSV_POLICY.replace(
        "[codes.class]",
        "[extras]\nkeep = [\"Notes\", \"Broker\"]\n\n[codes.class]",
    );
    let bound = MappingSpec::parse("t.toml", &listed)
        .unwrap()
        .bind(&headers(&CSV_HEADER))
        .unwrap();
    let p = policy(bound.map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "B1",
            "a",
            "b",
            "",
            "",
            "Rush job",
        ]),
    ));
    assert_eq!(p.extras.len(), 2, "a column a field reads may be kept too");
    assert_eq!(p.extras["broker"], "B1");
    let missing = CSV_POLICY.replace(
        "[codes.class]",
        "[extras]\nkeep = [\"Branch\"]\n\n[codes.class]",
    );
    let err = MappingSpec::parse("t.toml", &missing)
        .unwrap()
        .bind(&headers(&CSV_HEADER))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'Branch' (for extras)"), "{err}");

    // JSON and XML: every leaf outside lists that no field reads.
    let spec = MappingSpec::parse("j.toml", JSON_POLICY).unwrap();
    let p = policy(spec.bind(&[]).unwrap().map_record(
        &carrier(),
        &json_record(Value::List(vec![map(&[
            ("code", text("bld")),
            ("limit", Value::Number("1".into())),
            ("note", text("in a list: not an extra")),
        ])])),
    ));
    assert_eq!(
        p.extras.into_iter().collect::<Vec<_>>(),
        [("channel".to_owned(), "web".to_owned())]
    );
}

#[test]
fn a_nul_character_is_refused_with_its_field() {
    let errors = rejected(csv_spec().map_record(
        &carrier(),
        &row(&[
            "POL-0001",
            "PROP",
            "LIVE",
            "01/01/2025",
            "31/12/2025",
            "10",
            "B1",
            "a\0x",
            "b",
            "",
            "",
            "",
        ]),
    ));
    assert_eq!(errors[0].field, "insured.name");
    assert!(errors[0].reason.contains("NUL"), "{}", errors[0].reason);
    assert_eq!(errors[0].value, "a\\0x b", "shown escaped");
}
