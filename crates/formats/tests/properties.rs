//! Round trips: what a writer puts in, the readers give back, at the right line.

use crate::common;

use carrierhub_formats::{DelimitedOptions, DelimitedReader, ReaderSpec, SourceFormat, Value};
use common::*;
use proptest::prelude::*;

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            // Sometimes escape a non-ASCII character, as a surrogate pair if need be.
            c if (c as u32) > 0x7F && (c as u32) & 1 == 1 => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04X}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn csv_fields_and_lines_round_trip(
        rows in prop::collection::vec(prop::collection::vec("[a-z;\"\n\r é,]{0,8}", 3), 1..20),
        blank in prop::collection::vec(any::<bool>(), 20),
    ) {
        let mut text = b"a;b;c\n".to_vec();
        let mut lines = Vec::new();
        let mut kept = Vec::new();
        for (i, row) in rows.iter().enumerate() {
            if blank[i] {
                text.extend(b"\n");
            }
            // A row of empty or blank fields would read as a blank line.
            if row.iter().all(|f| f.trim().is_empty()) {
                continue;
            }
            lines.push(text.iter().filter(|b| **b == b'\n').count() as u64 + 1);
            let mut writer = csv::WriterBuilder::new()
                .delimiter(b';')
                .quote_style(csv::QuoteStyle::Necessary)
                .from_writer(Vec::new());
            writer.write_record(row).unwrap();
            text.extend(writer.into_inner().unwrap());
            kept.push(row.clone());
        }
        let reader = DelimitedReader::new(
            &text[..],
            DelimitedOptions { delimiter: b';', ..Default::default() },
        ).unwrap();
        let records: Vec<_> = reader.map(|r| r.unwrap().unwrap()).collect();
        prop_assert_eq!(records.len(), kept.len());
        for (i, record) in records.iter().enumerate() {
            prop_assert_eq!(&record.values, &kept[i]);
            prop_assert_eq!(record.position.line, lines[i]);
            prop_assert_eq!(record.position.record, i as u64 + 1);
        }
    }

    #[test]
    fn json_strings_and_numbers_round_trip(
        strings in prop::collection::vec(any::<String>(), 1..10),
        numbers in prop::collection::vec("-?(0|[1-9][0-9]{0,30})(\\.[0-9]{1,20})?([eE][+-]?[0-9]{1,3})?", 1..10),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let mut doc = String::from("[");
        for (i, s) in strings.iter().enumerate() {
            if i > 0 {
                doc.push_str(",\n");
            }
            doc.push_str(&format!("{{\"s\": {}, \"n\": {}}}", json_string(s), numbers[i % numbers.len()]));
        }
        doc.push(']');
        let path = write(dir.path(), "p.json", doc.as_bytes());
        let read = read(&ReaderSpec::for_format(SourceFormat::Json), &path).unwrap();
        prop_assert!(read.error.is_none());
        let ok = read.ok();
        prop_assert_eq!(ok.len(), strings.len());
        for (i, record) in ok.iter().enumerate() {
            prop_assert_eq!(record.position.line, i as u64 + 1);
            prop_assert_eq!(tree(record).get("s"), Some(&Value::Text(strings[i].clone())));
            prop_assert_eq!(
                tree(record).get("n"),
                Some(&Value::Number(numbers[i % numbers.len()].clone()))
            );
        }
    }
}
