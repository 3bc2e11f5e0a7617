//! Property tests of the value parsers: whatever a carrier writes in a supported convention
//! reads back as exactly the value it stands for.

use carrierhub_formats::{RecordData, RecordPosition, SourceRecord, Value};
use carrierhub_mapping::{
    excel_serial_date, parse_amount, parse_date, parse_decimal, DecimalFormat, Mapped, MappingSpec,
};
use carrierhub_model::{CanonicalRecord, CarrierId};
use chrono::{Days, NaiveDate};
use proptest::prelude::*;
use rust_decimal::Decimal;

fn any_date() -> impl Strategy<Value = NaiveDate> {
    (0u64..60_000).prop_map(|d| NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + Days::new(d))
}

const FORMATS: [&str; 6] = [
    "%Y-%m-%d", "%d.%m.%Y", "%d/%m/%Y", "%m/%d/%Y", "%d %b %Y", "%Y%m%d",
];

/// Writes a decimal with `format`'s separators, grouping thousands when it has one.
fn write(value: Decimal, format: DecimalFormat) -> String {
    let plain = value.abs().to_string();
    let (int, frac) = plain.split_once('.').unwrap_or((&plain, ""));
    let mut grouped = String::new();
    for (i, c) in int.chars().enumerate() {
        if i > 0 && (int.len() - i) % 3 == 0 {
            if let Some(t) = format.thousands_separator {
                grouped.push(t);
            }
        }
        grouped.push(c);
    }
    let mut out = String::new();
    if value.is_sign_negative() && !value.is_zero() {
        out.push('-');
    }
    out.push_str(&grouped);
    if !frac.is_empty() {
        out.push(format.decimal_separator);
        out.push_str(frac);
    }
    out
}

fn conventions() -> impl Strategy<Value = DecimalFormat> {
    prop_oneof![
        Just(DecimalFormat {
            decimal_separator: '.',
            thousands_separator: None
        }),
        Just(DecimalFormat {
            decimal_separator: '.',
            thousands_separator: Some(',')
        }),
        Just(DecimalFormat {
            decimal_separator: ',',
            thousands_separator: Some('.')
        }),
        Just(DecimalFormat {
            decimal_separator: ',',
            thousands_separator: Some(' ')
        }),
        Just(DecimalFormat {
            decimal_separator: '.',
            thousands_separator: Some('\'')
        }),
    ]
}

proptest! {
    #[test]
    fn a_date_written_in_any_listed_format_reads_back(date in any_date(), pick in 0usize..6) {
        let formats: Vec<String> = FORMATS.iter().map(|f| f.to_string()).collect();
        let written = date.format(FORMATS[pick]).to_string();
        // Day-first and month-first formats are ambiguous for some dates: a list tries
        // them in order, so the one written must be first among the ambiguous ones.
        let mut ordered = vec![formats[pick].clone()];
        ordered.extend(formats.iter().filter(|f| **f != formats[pick]).cloned());
        prop_assert_eq!(parse_date(&written, &ordered).unwrap(), date);
    }

    #[test]
    fn an_impossible_date_is_an_error_never_a_different_day(
        year in 1990i32..2100, month in 1u32..=12, day in 29u32..=35
    ) {
        let written = format!("{day:02}.{month:02}.{year}");
        let parsed = parse_date(&written, &["%d.%m.%Y".to_string()]);
        match NaiveDate::from_ymd_opt(year, month, day) {
            Some(real) => prop_assert_eq!(parsed.unwrap(), real),
            None => prop_assert!(parsed.is_err()),
        }
    }

    #[test]
    fn excel_serials_count_days_from_1899_12_30(date in any_date()) {
        let serial = (date - NaiveDate::from_ymd_opt(1899, 12, 30).unwrap()).num_days();
        prop_assert_eq!(excel_serial_date(&serial.to_string()).unwrap(), date);
        prop_assert_eq!(excel_serial_date(&format!("{serial}.75")).unwrap(), date);
    }

    #[test]
    fn a_decimal_written_in_any_convention_reads_back_exactly(
        units in -10_000_000_000i64..10_000_000_000, scale in 0u32..5, format in conventions()
    ) {
        let value = Decimal::new(units, scale);
        let written = write(value, format);
        prop_assert_eq!(parse_decimal(&written, format).unwrap(), value);
    }

    #[test]
    fn amounts_with_currency_symbols_and_accounting_negatives_read_back(
        units in 0i64..1_000_000_000, symbol in prop::sample::select(vec!["£", "€", "$", "EUR ", " USD", ""]),
        negative in any::<bool>(), parens in any::<bool>()
    ) {
        let value = Decimal::new(units, 2);
        let format = DecimalFormat { decimal_separator: '.', thousands_separator: Some(',') };
        let body = write(value, format);
        let body = match (negative, parens) {
            (true, true) => format!("({body})"),
            (true, false) => format!("-{body}"),
            _ => body,
        };
        let written = if symbol.starts_with(' ') { format!("{body}{symbol}") } else { format!("{symbol}{body}") };
        let expected = if negative { -value } else { value };
        prop_assert_eq!(parse_amount(&written, format, false, None).unwrap(), expected);
    }

    #[test]
    fn text_that_is_not_a_number_is_never_read_as_one(s in "[a-zA-Z ]{1,12}") {
        prop_assert!(parse_decimal(&s, DecimalFormat::default()).is_err());
    }

    #[test]
    fn code_tables_match_codes_ignoring_case_and_spaces_and_reject_the_rest(
        codes in prop::collection::btree_map("[A-Z]{1,4}", prop::sample::select(vec!["active", "cancelled", "expired"]), 1..8),
        pick in any::<prop::sample::Index>(), pad in " {0,2}", lower in any::<bool>(),
        unknown in "[0-9]{1,3}"
    ) {
        let table: String = codes.iter().map(|(k, v)| format!("\"{k}\" = \"{v}\"\n")).collect();
        let text = format!(r#"
[mapping]
name = "p"
record = "policy"
[conventions]
currency = "EUR"
[fields]
number = {{ value = "P1" }}
line_of_business = {{ value = "homeowners" }}
status = {{ column = "S", codes = "s" }}
effective_date = {{ value = "2025-01-01" }}
expiration_date = {{ value = "2025-12-31" }}
premium = {{ value = "1" }}
[fields.insured]
name = {{ value = "x" }}
[codes.s]
{table}"#);
        let bound = MappingSpec::parse("p.toml", &text).unwrap().bind(&["S".to_string()]).unwrap();
        let (code, target) = pick.get(&codes.iter().collect::<Vec<_>>()).to_owned();
        let written = format!("{pad}{}{pad}", if lower { code.to_lowercase() } else { code.clone() });
        let record = |v: &str| SourceRecord {
            position: RecordPosition { record: 1, line: 2 },
            data: RecordData::Row(vec![Value::Text(v.to_owned())]),
        };
        let carrier = CarrierId::parse("c").unwrap();
        match bound.map_record(&carrier, &record(&written)) {
            Mapped::Record(CanonicalRecord::Policy(p)) => {
                prop_assert_eq!(p.status.value.to_string(), target.to_string());
                prop_assert_eq!(p.status.original, written.trim());
            }
            other => prop_assert!(false, "{:?}", other),
        }
        prop_assert!(matches!(bound.map_record(&carrier, &record(&unknown)), Mapped::Rejected(_)));
    }
}
