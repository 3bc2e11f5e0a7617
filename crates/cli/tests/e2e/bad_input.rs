//! Bad input: bad rows are rejected with file, line, field and reason while the rest is
//! committed; a payload that cannot be read at all leaves nothing behind.

use crate::common;

use common::{counts, Env, ACME_FEED, ACME_MAPPING};
use std::path::PathBuf;

fn acme(env: &Env) -> (PathBuf, PathBuf) {
    (
        env.write("acme.toml", ACME_MAPPING),
        env.write("acme-2025-11.csv", ACME_FEED),
    )
}

#[test]
fn bad_rows_are_rejected_with_line_field_and_reason_and_the_rest_is_committed() {
    let env = Env::new();
    let (mapping, feed) = acme(&env);
    let submission = env.ingest("acme", &mapping, &feed);
    assert_eq!(submission["status"], "completed");
    assert_eq!(counts(&submission), [8, 3, 0, 0, 5]);

    let id = submission["id"].as_i64().unwrap().to_string();
    let out = env.run(&["errors", &id, "--json"]);
    assert!(out.status.success());
    let errors: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let by_line = |line: u64| {
        errors
            .iter()
            .find(|e| e["line"] == line)
            .unwrap_or_else(|| panic!("no error for line {line} in {errors:?}"))
    };
    assert_eq!(errors.len(), 5, "{errors:?}");
    assert!(errors.iter().all(|e| e["file_name"] == "acme-2025-11.csv"));

    let wrong_delimiter = by_line(4);
    assert!(wrong_delimiter["reason"].as_str().unwrap().contains("','"));

    let bad_date = by_line(5);
    assert_eq!(bad_date["field"], "effective_date");
    assert_eq!(bad_date["column"], "Beginn");
    assert_eq!(bad_date["value"], "31.02.2025");

    let negative = by_line(6);
    assert_eq!(negative["field"], "premium");
    assert_eq!(negative["column"], "Beitrag");
    assert!(negative["reason"].as_str().unwrap().contains("negative"));

    let unknown_code = by_line(7);
    assert_eq!(unknown_code["field"], "line_of_business");
    assert_eq!(unknown_code["value"], "LEBEN");
    assert!(unknown_code["reason"].as_str().unwrap().contains("KFZ, WG"));

    let truncated = by_line(9);
    assert!(truncated["reason"].as_str().unwrap().contains("cut short"));

    // The good rows, decoded from ISO-8859-1, with exact premium.
    let out = env.run(&["portfolio", "--json"]);
    let lines: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let total: rust_decimal::Decimal = lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            l["premium"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum();
    assert_eq!(total.to_string(), "1334.49");

    let text = env.run(&["errors", &id]);
    let text = String::from_utf8(text.stdout).unwrap();
    assert!(
        text.contains("acme-2025-11.csv:5: record 4 field effective_date (column 'Beginn') value '31.02.2025'"),
        "{text}"
    );
}

fn assert_nothing_written(env: &Env) {
    let out = env.run(&["submissions"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "",
        "no submission recorded"
    );
    let out = env.run(&["portfolio", "--json"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "[]");
    let stored = env.data_dir().join("documents").join("sha256");
    let leftovers = std::fs::read_dir(&stored).map(|d| d.count()).unwrap_or(0);
    assert_eq!(leftovers, 0, "no document kept for a refused payload");
}

#[test]
fn an_unreadable_file_is_a_clear_error_and_leaves_nothing_behind() {
    let env = Env::new();
    let (mapping, _) = acme(&env);
    let cases: Vec<(PathBuf, &str)> = vec![
        (
            env.write("scan.csv", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0"),
            "does not look like delimited text: it is a PNG image",
        ),
        (env.write("empty.csv", b""), "empty"),
        (
            env.write(
                "commas.csv",
                "Nr,Sparte,Status,Beginn,Ende,Beitrag,Name\nP1,KFZ,A,01.01.2025,01.01.2026,1,X\n",
            ),
            "the header looks delimited by ','",
        ),
        (env.path("missing.csv"), "cannot open"),
    ];
    for (file, expected) in cases {
        let out = env.run(&[
            "ingest",
            "--carrier",
            "acme",
            "--mapping",
            mapping.to_str().unwrap(),
            file.to_str().unwrap(),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} should fail", file.display());
        assert!(stderr.contains(expected), "{}: {stderr}", file.display());
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(stderr.contains(name), "the error names the file: {stderr}");
    }
    assert_nothing_written(&env);
}

#[test]
fn a_broken_mapping_is_refused_before_anything_is_read() {
    let env = Env::new();
    let (_, feed) = acme(&env);
    let typo = env.write("typo.toml", ACME_MAPPING.replace("premium = ", "premum = "));
    let out = env.run(&[
        "ingest",
        "--carrier",
        "acme",
        "--mapping",
        typo.to_str().unwrap(),
        feed.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("typo.toml") && stderr.contains("premum"),
        "{stderr}"
    );

    let bad_code = env.write(
        "code.toml",
        ACME_MAPPING.replace("\"personal_auto\"", "\"motor\""),
    );
    let out = env.run(&[
        "ingest",
        "--carrier",
        "acme",
        "--mapping",
        bad_code.to_str().unwrap(),
        feed.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("codes.lob") && stderr.contains("'motor'"),
        "{stderr}"
    );
    assert_nothing_written(&env);
}

/// A policy mapping over JSON or XML records with the same fields.
fn tree_mapping(format: &str, extra: &str) -> String {
    format!(
        r#"
[mapping]
name = "hostile"
record = "policy"
[source]
format = "{format}"
{extra}
[conventions]
currency = "EUR"
[fields]
number = "id"
line_of_business = {{ value = "homeowners" }}
status = {{ value = "active" }}
effective_date = "start"
expiration_date = "end"
premium = "premium"
[fields.insured]
name = "name"
"#
    )
}

const JSON_POLICY: &str =
    r#"{"id": "P1", "start": "2025-01-01", "end": "2025-12-31", "premium": 10.5, "name": "A"}"#;

#[test]
fn hostile_payloads_end_in_a_clear_error_and_the_rest_is_kept() {
    let env = Env::new();

    // Entity expansion (billion laughs): refused before any record, nothing written.
    let xml_mapping = env.write(
        "xml.toml",
        tree_mapping("xml", "record_element = \"Policy\""),
    );
    let mut laughs =
        String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE lolz [\n <!ENTITY lol \"lol\">\n");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        laughs.push_str(&format!(
            " <!ENTITY lol{i} \"{}\">\n",
            format!("&{prev};").repeat(10)
        ));
    }
    laughs.push_str("]>\n<Policies><Policy><id>&lol9;</id></Policy></Policies>\n");
    let bomb = env.write("laughs.xml", laughs);
    let out = env.run(&[
        "ingest",
        "--carrier",
        "acme",
        "--mapping",
        xml_mapping.to_str().unwrap(),
        bomb.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("laughs.xml")
            && stderr.contains("DTDs and entity declarations are not accepted"),
        "{stderr}"
    );
    assert_nothing_written(&env);

    // JSON nested 100,000 deep between two valid records: that record is rejected with the
    // limit, the others are committed.
    let json_mapping = env.write("json.toml", tree_mapping("json", ""));
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let payload = format!(
        "[\n{JSON_POLICY},\n{deep},\n{}\n]\n",
        JSON_POLICY.replace("P1", "P2")
    );
    let feed = env.write("deep.json", payload);
    let submission = env.ingest("acme", &json_mapping, &feed);
    assert_eq!(counts(&submission), [3, 2, 0, 0, 1], "{submission}");
    let out = env.run(&["errors", &submission["id"].to_string(), "--json"]);
    let rejection: serde_json::Value = serde_json::from_str(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .next()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(rejection["line"], 3);
    assert!(
        rejection["reason"].as_str().unwrap().contains("nest"),
        "{rejection}"
    );

    // A 10 MB field: its record is rejected with the size, the next one is committed.
    let mut csv = ACME_FEED[..ACME_FEED.iter().position(|b| *b == b'\n').unwrap() + 1].to_vec();
    csv.extend_from_slice(b"P1;KFZ;A;01.01.2025;01.01.2026;1,00;");
    csv.extend(std::iter::repeat_n(b'x', 10 << 20));
    csv.extend_from_slice(b"\nP2;KFZ;A;01.01.2025;01.01.2026;2,00;Anna\n");
    let big = env.write("big-field.csv", csv);
    let mapping = env.write("acme.toml", ACME_MAPPING);
    let submission = env.ingest("globex", &mapping, &big);
    assert_eq!(counts(&submission), [2, 1, 0, 0, 1], "{submission}");
    let out = env.run(&["errors", &submission["id"].to_string()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("big-field.csv:2") && text.contains("10.0 MiB"),
        "{text}"
    );
}
