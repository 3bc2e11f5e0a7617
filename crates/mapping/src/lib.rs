//! Declarative per-carrier mappings: a TOML file that says how one carrier's feed becomes
//! canonical records. Onboarding a carrier means writing one of these, not Rust.
//!
//! The life of a mapping: [`MappingSpec::parse`] checks the file itself (unknown keys, code
//! tables whose targets are not canonical codes, bad date formats, regular expressions,
//! options that do not fit the format); [`MappingSpec::reader_spec`] says how to read the
//! payload; [`MappingSpec::bind`] checks it against a payload's header (every mapped column
//! exists); [`BoundMapping::map_record`] applies skip rules and routing, then turns one
//! source record into a canonical record that passed every check, or the list of all its
//! field errors.

mod bind;
mod spec;
mod values;

pub use bind::{BoundMapping, ErrorKind, FieldError, Mapped};
pub use spec::{Case, Conventions, FieldSpec, MappingError, MappingSpec, SourceSpec, SplitSpec};
pub use values::{
    excel_serial_date, parse_amount, parse_date, parse_decimal, strip_currency, DecimalFormat,
    CURRENCY_SYMBOLS,
};

#[cfg(test)]
mod tests {
    use super::*;
    use carrierhub_formats::{RecordData, RecordPosition, SourceRecord, Value};
    use carrierhub_model::{CanonicalRecord, CarrierId};

    const SPEC: &str = r#"
        [mapping]
        name = "t"
        record = "claim"
        [conventions]
        date_format = ["%d/%m/%Y", "%Y-%m-%d"]
        [fields]
        number = "Claim"
        policy_number = { index = 2 }
        loss_date = "Loss"
        reported_date = "Reported"
        status = { column = "St", codes = "st" }
        cause = { column = "Cause", codes = "cause" }
        paid = "Paid"
        reserve = { column = "Reserve", default = "0" }
        currency = { column = "Ccy", codes = "ccy" }
        [codes.st]
        O = "open"
        C = "closed"
        [codes.cause]
        FL = "flood"
        "Sturm" = "storm"
        [codes.ccy]
        "£" = "GBP"
        EUR = "EUR"
    "#;

    fn record(values: &[&str]) -> SourceRecord {
        SourceRecord {
            position: RecordPosition { record: 1, line: 2 },
            data: RecordData::Row(values.iter().map(|v| Value::Text(v.to_string())).collect()),
        }
    }

    fn map(
        bound: &BoundMapping,
        carrier: &CarrierId,
        r: &SourceRecord,
    ) -> Result<CanonicalRecord, Vec<FieldError>> {
        match bound.map_record(carrier, r) {
            Mapped::Record(r) => Ok(r),
            Mapped::Rejected(e) => Err(e),
            Mapped::Skipped(s) => panic!("skipped: {s}"),
        }
    }

    fn bound() -> BoundMapping {
        let spec = MappingSpec::parse("t.toml", SPEC).unwrap();
        let headers: Vec<String> = [
            "Claim", "Pol", "Loss", "Reported", "St", "Cause", "Paid", "Reserve", "Ccy",
        ]
        .iter()
        .map(|h| h.to_string())
        .collect();
        spec.bind(&headers).unwrap()
    }

    #[test]
    fn code_tables_translate_free_text_and_currencies_too() {
        let carrier = CarrierId::parse("c").unwrap();
        let mapped = map(
            &bound(),
            &carrier,
            &record(&[
                "C1",
                "P1",
                "01/02/2025",
                "2025-02-03",
                "o",
                " sturm ",
                "10.5",
                "",
                "£",
            ]),
        )
        .unwrap();
        let CanonicalRecord::Claim(claim) = mapped else {
            panic!("a claim")
        };
        assert_eq!(claim.status.original, "o");
        assert_eq!(claim.cause.as_deref(), Some("storm"));
        assert_eq!(claim.paid.to_string(), "10.50 GBP");
        assert!(
            claim.reserve.amount.is_zero(),
            "the default applies to an empty value"
        );
    }

    #[test]
    fn every_field_error_of_a_record_is_reported() {
        let carrier = CarrierId::parse("c").unwrap();
        let errors = map(
            &bound(),
            &carrier,
            &record(&["", "P1", "31/02/2025", "x", "Z", "hail", "1,5", "", "USD"]),
        )
        .unwrap_err();
        let fields: Vec<_> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "number",
                "loss_date",
                "reported_date",
                "status",
                "cause",
                "currency",
                "paid"
            ]
        );
        assert_eq!(errors[1].column.as_deref(), Some("Loss"));
        assert!(errors[3].reason.contains("O, C") || errors[3].reason.contains("C, O"));
    }

    #[test]
    fn missing_columns_are_reported_together() {
        let spec = MappingSpec::parse("t.toml", SPEC).unwrap();
        let err = spec.bind(&["Claim".to_string()]).unwrap_err().to_string();
        assert!(
            err.contains("'Loss'") && err.contains("'Paid'") && err.contains("column 2"),
            "{err}"
        );
    }

    #[test]
    fn mapping_files_are_checked_before_any_data() {
        let unknown_key = SPEC.replace("cause = {", "casue = {");
        let err = MappingSpec::parse("t.toml", &unknown_key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t.toml") && err.contains("casue"), "{err}");
        let bad_target = SPEC.replace("O = \"open\"", "O = \"pending\"");
        let err = MappingSpec::parse("t.toml", &bad_target)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("codes.st") && err.contains("'pending'"),
            "{err}"
        );
        let no_table = SPEC.replace("codes = \"cause\"", "codes = \"causes\"");
        assert!(MappingSpec::parse("t.toml", &no_table)
            .unwrap_err()
            .to_string()
            .contains("[codes.causes]"));
        let no_currency = SPEC.replace("currency = { column = \"Ccy\", codes = \"ccy\" }", "");
        assert!(MappingSpec::parse("t.toml", &no_currency)
            .unwrap_err()
            .to_string()
            .contains("currency"));
    }
}
