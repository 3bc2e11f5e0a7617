//! The synthetic feeds in every format, checked on their own terms: determinism, truths that
//! add up, workbooks that open with calamine, NDJSON that parses line by line, a JSON document
//! read element by element, well-formed XML, fixed-width records of the right length, a UTF-16
//! file with its byte-order mark, and a portfolio directory with its `truth.json`.
//! (Reconciling the feeds through the store is the job of the pipeline's tests.)

use calamine::{Data, DataType, Reader, Xlsx};
use carrierhub_synth::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Cursor;
use std::path::PathBuf;

fn policies(profile: &CarrierProfile, opts: &FeedOptions) -> (Vec<u8>, PolicyTruth) {
    let mut bytes = Vec::new();
    let truth = write_policy_feed(profile, opts, &mut bytes).unwrap();
    (bytes, truth)
}

fn claims(profile: &CarrierProfile, opts: &ClaimFeedOptions) -> (Vec<u8>, ClaimTruth) {
    let mut bytes = Vec::new();
    let truth = write_claim_feed_with(profile, opts, &mut bytes).unwrap();
    (bytes, truth)
}

/// Policy options with `rate` of the rows defective, over every kind the feed supports.
fn at_rate(
    profile: &CarrierProfile,
    rows: usize,
    seed: u64,
    delivery: u32,
    rate: f64,
) -> FeedOptions {
    FeedOptions {
        policies: rows,
        seed,
        delivery,
        defects: Defects::at_rate(rate, rows, profile.policy_defect_kinds()),
    }
}

fn claim_opts(profile: &CarrierProfile, policy: &FeedOptions, rate: f64) -> ClaimFeedOptions {
    let rows = claim_count(profile, policy.policies, policy.seed);
    ClaimFeedOptions {
        policies: policy.policies,
        seed: policy.seed,
        defects: Defects::at_rate(rate, rows, profile.claim_defect_kinds()),
        policy_defects: policy.defects.clone(),
    }
}

fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("carrierhub-synth-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn kinds(defects: &[Defect]) -> BTreeSet<DefectKind> {
    defects.iter().map(|d| d.kind).collect()
}

#[test]
fn the_carriers_cover_every_format() {
    let all = carriers();
    let ids: Vec<_> = all.iter().map(|c| c.id).collect();
    assert_eq!(
        ids,
        [
            "northwind",
            "rheinland",
            "thames",
            "harbour",
            "meridian",
            "alpine",
            "keystone"
        ]
    );
    let formats: BTreeSet<_> = all
        .iter()
        .flat_map(|c| [c.policy_format.label(), c.claim_format.label()])
        .collect();
    assert_eq!(
        formats,
        BTreeSet::from(["csv", "fixed", "json", "ndjson", "xlsx", "xml"])
    );
    assert!(all.iter().any(|c| c.claim_format != FeedFormat::Csv));
    // Each mapping is TOML for its carrier and names the feed's format.
    for c in &all {
        for (text, format, record) in [
            (c.policy_mapping, c.policy_format, "policy"),
            (c.claim_mapping, c.claim_format, "claim"),
        ] {
            let doc: toml::Table = text.parse().unwrap_or_else(|e| panic!("{}: {e}", c.id));
            assert_eq!(doc["mapping"]["carrier"].as_str(), Some(c.id));
            assert_eq!(doc["mapping"]["record"].as_str(), Some(record));
            assert_eq!(
                doc["source"]["format"].as_str(),
                Some(format.label()),
                "{}",
                c.id
            );
            if format == FeedFormat::Json {
                assert!(
                    doc["source"]["records"].is_str(),
                    "{}: a JSON pointer",
                    c.id
                );
            }
        }
        let extension = |f: FeedFormat| match f {
            FeedFormat::Xlsx => vec!["xlsx"],
            FeedFormat::Json => vec!["json"],
            FeedFormat::Ndjson => vec!["ndjson"],
            FeedFormat::Xml => vec!["xml"],
            FeedFormat::Fixed => vec!["dat"],
            FeedFormat::Csv => vec!["csv", "txt"],
        };
        for (file, format) in [
            (c.policy_file_name, c.policy_format),
            (c.claim_file_name, c.claim_format),
        ] {
            let ext = file.rsplit_once('.').unwrap().1;
            assert!(extension(format).contains(&ext), "{file}");
        }
        assert_eq!(c.policy_file_name_for(1), c.policy_file_name);
        assert!(c.policy_file_name_for(2).contains("-d2."), "{}", c.id);
    }
}

#[test]
fn same_options_same_bytes_in_every_format() {
    for profile in carriers() {
        let opts = at_rate(&profile, 600, 5, 2, 0.03);
        let (a, truth_a) = policies(&profile, &opts);
        let (b, truth_b) = policies(&profile, &opts);
        assert!(
            a == b,
            "{}: the policy feed differs between runs",
            profile.id
        );
        assert_eq!(truth_a, truth_b);
        let (other, _) = policies(
            &profile,
            &FeedOptions {
                seed: 6,
                ..opts.clone()
            },
        );
        assert!(a != other, "{}: the seed changes the feed", profile.id);

        let copts = claim_opts(&profile, &opts, 0.05);
        let (c1, t1) = claims(&profile, &copts);
        let (c2, t2) = claims(&profile, &copts);
        assert!(
            c1 == c2,
            "{}: the claim feed differs between runs",
            profile.id
        );
        assert_eq!(t1, t2);
    }
}

#[test]
fn truths_add_up_for_every_carrier() {
    for profile in carriers() {
        for (rows, delivery, rate) in [
            (0, 1, 0.0),
            (1_000, 1, 0.0),
            (1_000, 2, 0.01),
            (777, 3, 0.05),
        ] {
            let opts = at_rate(&profile, rows, 21, delivery, rate);
            let (_, t) = policies(&profile, &opts);
            let id = profile.id;
            assert_eq!(t.rows, rows, "{id}");
            assert_eq!(t.valid + t.rejected, t.rows, "{id}");
            assert_eq!(t.rejected, t.defects.len(), "{id}");
            assert_eq!(t.rejected, opts.defects.total(), "{id}");
            assert_eq!(t.rejected, (rate * rows as f64).round() as usize, "{id}");
            assert_eq!(t.defect_lines.len(), t.defects.len());
            // Defects in file order, one per record, of the kinds the feed supports.
            let records: Vec<u64> = t.defects.iter().map(|d| d.record).collect();
            assert!(records.windows(2).all(|w| w[0] < w[1]), "{id}: {records:?}");
            assert!(kinds(&t.defects)
                .iter()
                .all(|k| profile.policy_defect_kinds().contains(k)));
            if rate > 0.0 && rows > 0 {
                let wanted: BTreeSet<_> = profile
                    .policy_defect_kinds()
                    .iter()
                    .copied()
                    .filter(|k| *k != DefectKind::Truncated)
                    .collect();
                assert_eq!(kinds(&t.defects), wanted, "{id}: every kind is used");
            }
            for d in &t.defects {
                assert!(!d.reason_contains.is_empty());
                assert!(d.record >= 1 && d.line >= 1);
            }
            // Totals: lines add up to currencies; coverages to policies.
            let mut by_currency: BTreeMap<String, Decimal> = BTreeMap::new();
            for ((_, ccy), amount) in &t.premium_by_line {
                *by_currency.entry(ccy.clone()).or_default() += *amount;
            }
            assert_eq!(by_currency, t.premium_by_currency, "{id}");
            assert_eq!(t.coverages_by_code.values().sum::<usize>(), t.coverages);
            assert!(t.coverages >= t.valid && t.cancelled <= t.valid);
            if !t.coverage_premium_by_currency.is_empty() {
                assert_eq!(
                    t.coverage_premium_by_currency, t.premium_by_currency,
                    "{id}"
                );
                assert!(t.coverages > t.valid, "{id}: several coverages per policy");
            }
            if delivery == 1 {
                assert_eq!(t.changed_vs_first, 0);
            } else if rows > 0 {
                assert!(t.changed_vs_first > 0 && t.changed_vs_first <= t.valid / 9);
            }

            let copts = claim_opts(&profile, &opts, rate);
            let (_, c) = claims(&profile, &copts);
            assert_eq!(c.rows, claim_count(&profile, rows, 21), "{id}");
            assert_eq!(c.valid + c.rejected, c.rows, "{id}");
            assert_eq!(c.rejected, c.defects.len(), "{id}");
            assert_eq!(
                c.policy_rejected,
                c.defects
                    .iter()
                    .filter(|d| d.kind == DefectKind::PolicyRejected)
                    .count()
            );
            assert_eq!(
                c.rejected - c.policy_rejected,
                copts.defects.total(),
                "{id}"
            );
            for d in c
                .defects
                .iter()
                .filter(|d| d.kind == DefectKind::PolicyRejected)
            {
                assert_eq!(d.field.as_deref(), Some("policy_number"));
            }
            if rate == 0.0 {
                assert_eq!(c.valid, c.rows);
            }
        }
    }
}

#[test]
fn claims_on_rejected_policies_are_counted() {
    let profile = carrier("meridian").unwrap();
    let opts = at_rate(&profile, 2_000, 3, 1, 0.2);
    let clean = ClaimFeedOptions {
        policies: 2_000,
        seed: 3,
        ..ClaimFeedOptions::default()
    };
    let (bytes_clean, clean_truth) = claims(&profile, &clean);
    let (bytes, truth) = claims(
        &profile,
        &ClaimFeedOptions {
            policy_defects: opts.defects.clone(),
            ..clean
        },
    );
    assert_eq!(
        bytes, bytes_clean,
        "the policy feed's defects do not change the claims"
    );
    assert_eq!(clean_truth.rejected, 0);
    assert!(truth.policy_rejected > 0);
    assert_eq!(truth.valid + truth.policy_rejected, clean_truth.valid);
    let paid: Decimal = truth.paid_by_currency.values().sum();
    let paid_clean: Decimal = clean_truth.paid_by_currency.values().sum();
    assert!(paid < paid_clean, "sums are over valid claims only");
}

fn cell(range: &calamine::Range<Data>, row: u64, col: u32) -> &Data {
    range
        .get_value((row as u32 - 1, col))
        .unwrap_or(&Data::Empty)
}

#[test]
fn harbour_bordereau_is_a_real_workbook() {
    let profile = carrier("harbour").unwrap();
    let opts = FeedOptions {
        policies: 1_500,
        seed: 8,
        delivery: 1,
        defects: Defects {
            invalid_dates: 3,
            negative_premium: 2,
            unknown_codes: 2,
            missing_required: 2,
            ..Defects::default()
        },
    };
    let (bytes, truth) = policies(&profile, &opts);
    assert!(bytes.starts_with(b"PK\x03\x04"), "an XLSX is a zip");
    let mut wb: Xlsx<_> = Xlsx::new(Cursor::new(bytes)).unwrap();
    assert_eq!(wb.sheet_names(), ["New Business", "Renewals"]);

    let mut defects = truth.defects.iter().peekable();
    let mut record = 0u64;
    let mut data_rows = 0;
    let mut premium: BTreeMap<String, Decimal> = BTreeMap::new();
    let mut renewal_serials = 0;
    for sheet in ["New Business", "Renewals"] {
        let range = wb.worksheet_range(sheet).unwrap();
        assert!(matches!(cell(&range, 1, 0), Data::String(t) if t.contains("Harbour Specialty")));
        assert_eq!(cell(&range, 2, 0), &Data::String("Report date".into()));
        assert!(
            cell(&range, 2, 1).is_datetime(),
            "the report date is a date cell"
        );
        let header: Vec<String> = (0..13).map(|c| cell(&range, 3, c).to_string()).collect();
        assert_eq!(header[0], "Policy Ref");
        assert_eq!(header[9], "Gross Premium");
        assert_eq!(header[10], "Limit (000s)");

        let last = range.end().unwrap().0 as u64 + 1;
        assert_eq!(cell(&range, last, 0), &Data::String("Total".into()));
        for row in 4..last {
            record += 1;
            data_rows += 1;
            let defect = defects.next_if(|d| d.record == record);
            if let Some(d) = defect {
                assert_eq!((d.line, d.sheet.as_deref()), (row, Some(sheet)));
                match d.kind {
                    DefectKind::InvalidDate => {
                        assert!(
                            matches!(cell(&range, row, 6), Data::String(t) if t == "TBC" || t == "TBA")
                        )
                    }
                    DefectKind::NegativePremium => {
                        assert!(cell(&range, row, 9).as_f64().unwrap() < 0.0)
                    }
                    DefectKind::UnknownCode => {
                        assert_eq!(cell(&range, row, 4), &Data::String("AVN - Aviation".into()))
                    }
                    DefectKind::MissingRequired => {
                        assert_eq!(d.field.as_deref(), Some("number"));
                        assert_eq!(cell(&range, row, 0), &Data::Empty);
                    }
                    other => panic!("{other:?} in a workbook"),
                }
                continue;
            }
            assert!(matches!(cell(&range, row, 0), Data::String(r) if r.starts_with("HSP/")));
            let inception = cell(&range, row, 6);
            assert!(inception.is_datetime(), "row {row}: {inception:?}");
            let expiry = cell(&range, row, 7);
            if sheet == "Renewals" {
                // A bare serial number: the column lost its date format.
                assert!(matches!(expiry, Data::Float(f) if *f > 45_000.0 && f.fract() == 0.0));
                renewal_serials += 1;
            } else {
                assert!(expiry.is_datetime());
            }
            let Data::Float(amount) = cell(&range, row, 9) else {
                panic!("row {row}: the premium is a number")
            };
            let ccy = cell(&range, row, 8).to_string();
            *premium.entry(ccy).or_default() += amount.to_string().parse::<Decimal>().unwrap();
        }
        record += 1; // the Total row is a record, skipped by the mapping
    }
    assert!(defects.next().is_none(), "every defect was found");
    assert_eq!(data_rows, truth.rows);
    assert_eq!(truth.skipped, 2);
    assert!(renewal_serials > 100);
    assert_eq!(
        premium, truth.premium_by_currency,
        "numeric cells hold the exact amounts"
    );
}

#[test]
fn meridian_policy_lines_are_json_except_the_malformed_ones() {
    let profile = carrier("meridian").unwrap();
    let opts = at_rate(&profile, 2_000, 4, 1, 0.02);
    let (bytes, truth) = policies(&profile, &opts);
    let text = String::from_utf8(bytes).unwrap();
    let defects: BTreeMap<u64, &Defect> = truth.defects.iter().map(|d| (d.line, d)).collect();
    let mut coverages = 0;
    for (i, line) in text.lines().enumerate() {
        let n = i as u64 + 1;
        let parsed = serde_json::from_str::<serde_json::Value>(line);
        match defects.get(&n).map(|d| d.kind) {
            Some(DefectKind::MalformedRecord) => {
                assert!(parsed.is_err(), "line {n} should be malformed");
                continue;
            }
            kind => {
                let v = parsed.unwrap_or_else(|e| panic!("line {n}: {e}"));
                match kind {
                    Some(DefectKind::MissingRequired) => assert!(v.get("effective_date").is_none()),
                    Some(DefectKind::NotANumber) => assert_eq!(v["total_premium"], "n/a"),
                    Some(DefectKind::UnknownCode) => assert_eq!(v["product"], "pet_v1"),
                    Some(other) => panic!("{other:?}"),
                    None => {
                        // Coverage premiums add up to the policy premium, to the cent.
                        let total: Decimal = v["total_premium"].to_string().parse().unwrap();
                        let sum: Decimal = v["coverages"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .map(|c| c["premium"].to_string().parse::<Decimal>().unwrap())
                            .sum();
                        assert_eq!(sum, total, "line {n}");
                        coverages += v["coverages"].as_array().unwrap().len();
                        assert!(v["insured"]["address"]["postal_code"].is_string());
                    }
                }
            }
        }
    }
    assert_eq!(text.lines().count(), truth.rows);
    assert_eq!(coverages, truth.coverages);
    assert!(
        truth.coverages_by_code.contains_key("roadside"),
        "kept by the fallback"
    );
}

/// How one claim of a document fared through the reader and the mapping: the claim, or the
/// rejections as (canonical field, reason); an element the reader cannot parse has no field.
type ClaimOutcome = Result<carrierhub_model::Claim, Vec<(Option<String>, String)>>;

/// Reads and maps `bytes` with `profile`'s claim mapping as the pipeline does:
/// (record, line, outcome) per record.
fn read_claims(profile: &CarrierProfile, bytes: &[u8]) -> Vec<(u64, u64, ClaimOutcome)> {
    use carrierhub_mapping::{Mapped, MappingSpec};
    use carrierhub_model::{CanonicalRecord, CarrierId};
    let spec = MappingSpec::parse("claims.toml", profile.claim_mapping).expect("mapping parses");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let mut reader = carrierhub_formats::open(&spec.reader_spec(), file.path()).unwrap();
    let bound = spec.bind(reader.headers()).expect("the mapping binds");
    let carrier = CarrierId::parse(profile.id).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_record() {
        match r.expect("the document stays readable") {
            Err(e) => out.push((
                e.position.record,
                e.position.line,
                Err(vec![(e.column, e.reason)]),
            )),
            Ok(raw) => {
                let outcome = match bound.map_record(&carrier, &raw) {
                    Mapped::Record(CanonicalRecord::Claim(c)) => Ok(c),
                    Mapped::Rejected(errors) => Err(errors
                        .into_iter()
                        .map(|e| (Some(e.field), e.reason))
                        .collect()),
                    _ => panic!("record {} is not a claim", raw.position.record),
                };
                out.push((raw.position.record, raw.position.line, outcome));
            }
        }
    }
    out
}

#[test]
fn meridian_claims_are_one_json_document_read_element_by_element() {
    let profile = carrier("meridian").unwrap();
    assert_eq!(profile.claim_format, FeedFormat::Json);
    assert_eq!(profile.claim_file_name, "meridian-claims.json");
    let opts = at_rate(&profile, 3_000, 4, 1, 0.02);
    let (bytes, truth) = claims(&profile, &claim_opts(&profile, &opts, 0.05));
    let mut wanted: BTreeSet<DefectKind> = profile.claim_defect_kinds().iter().copied().collect();
    wanted.insert(DefectKind::PolicyRejected);
    assert_eq!(kinds(&truth.defects), wanted);
    let text = std::str::from_utf8(&bytes).unwrap();

    // Pretty-printed: each claim spans several lines, and its line in the truth is the line
    // of its opening brace (the array's elements are indented by six spaces).
    let starts: Vec<u64> = text
        .lines()
        .enumerate()
        .filter(|(_, l)| *l == "      {")
        .map(|(i, _)| i as u64 + 1)
        .collect();
    assert_eq!(starts.len(), truth.rows);
    assert_eq!(starts[0], 9, "after the export details");
    assert!(
        starts.windows(2).all(|w| w[1] - w[0] >= 12),
        "a claim per 12+ lines"
    );
    for d in &truth.defects {
        assert_eq!(starts[d.record as usize - 1], d.line, "{d:?}");
    }

    // Through the real reader and mapping: every claim on its record and line, each defect
    // rejected for its field with its reason, nothing else rejected, the sums to the cent.
    // (Claims on rejected policies map; the store refuses them.)
    let read = read_claims(&profile, &bytes);
    assert_eq!(
        read.len(),
        truth.rows,
        "the reader reads past every bad element"
    );
    let own: BTreeMap<u64, &Defect> = truth
        .defects
        .iter()
        .filter(|d| d.kind != DefectKind::PolicyRejected)
        .map(|d| (d.record, d))
        .collect();
    let on_rejected_policies: BTreeSet<u64> = truth
        .defects
        .iter()
        .filter(|d| d.kind == DefectKind::PolicyRejected)
        .map(|d| d.record)
        .collect();
    let (mut paid, mut reserve) = (BTreeMap::new(), BTreeMap::new());
    for (i, (record, line, outcome)) in read.iter().enumerate() {
        assert_eq!(*record, i as u64 + 1);
        assert_eq!(*line, starts[i], "record {record}");
        match (own.get(record), outcome) {
            (Some(d), Err(errors)) => assert!(
                errors
                    .iter()
                    .any(|(field, reason)| field.as_deref() == d.field.as_deref()
                        && reason.contains(&d.reason_contains)),
                "{d:?} rejected differently: {errors:?}"
            ),
            (Some(d), Ok(_)) => panic!("{d:?} was accepted"),
            (None, Err(errors)) => panic!("record {record} rejected: {errors:?}"),
            (None, Ok(c)) if !on_rejected_policies.contains(record) => {
                let ccy = c.paid.currency.to_string();
                *paid.entry(ccy.clone()).or_insert(Decimal::ZERO) += c.paid.amount;
                *reserve.entry(ccy).or_insert(Decimal::ZERO) += c.reserve.amount;
            }
            (None, Ok(_)) => {}
        }
    }
    assert_eq!(paid, truth.paid_by_currency);
    assert_eq!(reserve, truth.reserve_by_currency);
    let malformed = truth
        .defects
        .iter()
        .filter(|d| d.kind == DefectKind::MalformedRecord)
        .count();
    assert_eq!(text.matches(": NaN,").count(), malformed);

    // Without defects the document is plain JSON: the export's details, the claims at
    // /data/claims, their count.
    let clean = ClaimFeedOptions {
        policies: 3_000,
        seed: 4,
        ..ClaimFeedOptions::default()
    };
    let (bytes, truth) = claims(&profile, &clean);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(doc["export"]["carrier"], "meridian");
    let items = doc["data"]["claims"].as_array().unwrap();
    assert_eq!(items.len(), truth.rows);
    assert_eq!(doc["count"], truth.rows);
    assert!(items.iter().all(|c| c["loss"]["date"].is_string()
        && c["paid"].is_number()
        && c["status"].is_string()));
    let empty = ClaimFeedOptions {
        policies: 0,
        ..clean.clone()
    };
    let (bytes, truth) = claims(&profile, &empty);
    let doc: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!((truth.rows, doc["count"].as_u64()), (0, Some(0)));
    assert_eq!(doc["data"]["claims"], serde_json::json!([]));
    assert!(read_claims(&profile, &bytes).is_empty());
}

/// Why a malformed claim element is a bare `NaN` rather than an element cut short: a cut
/// leaves brackets (or a string) open, so the reader cannot find where the element ends and
/// does not come back to the claims after it. The `NaN` element is rejected on its own.
#[test]
fn a_claim_element_cut_short_is_not_resynchronised() {
    use carrierhub_formats::{JsonReader, Limits, RecordReader, TextEncoding};
    let profile = carrier("meridian").unwrap();
    let (bytes, truth) = claims(
        &profile,
        &ClaimFeedOptions {
            policies: 400,
            seed: 4,
            ..ClaimFeedOptions::default()
        },
    );
    assert!(truth.rows > 20);
    let text = String::from_utf8(bytes).unwrap();
    let starts: Vec<usize> = text
        .match_indices("\n      {\n")
        .map(|(i, _)| i + 1)
        .collect();
    let (second, third) = (starts[1], starts[2]);
    for cut in [(third - second) / 3, (third - second) * 2 / 3] {
        let broken = format!("{}\n{}", &text[..second + cut], &text[third..]);
        let mut reader = JsonReader::new(
            broken.as_bytes(),
            "/data/claims",
            TextEncoding::Utf8,
            Limits::default(),
        )
        .unwrap();
        let (mut records, mut failed) = (0, false);
        while let Some(r) = reader.next_record() {
            match r {
                Ok(_) => records += 1,
                Err(_) => failed = true,
            }
        }
        assert!(
            failed || records < truth.rows - 1,
            "cut at {cut}: {records} records of {}",
            truth.rows - 1
        );
    }
}

/// The line each element named `name` opens on, checking that the whole document is
/// well-formed.
fn element_lines(xml: &[u8], name: &str) -> Vec<u64> {
    let mut reader = quick_xml::Reader::from_reader(xml);
    reader.config_mut().check_end_names = true;
    let mut buf = Vec::new();
    let mut lines = Vec::new();
    loop {
        let before = reader.buffer_position() as usize;
        match reader.read_event_into(&mut buf) {
            Ok(quick_xml::events::Event::Start(e)) if e.name().as_ref() == name => {
                // The event starts after any whitespace that preceded it.
                let skipped = xml[before..]
                    .iter()
                    .take_while(|b| b.is_ascii_whitespace())
                    .count();
                let at = before + skipped;
                lines.push(xml[..at].iter().filter(|b| **b == b'\n').count() as u64 + 1);
            }
            Ok(quick_xml::events::Event::Eof) => break,
            Ok(_) => {}
            Err(e) => panic!("not well-formed at {}: {e}", reader.buffer_position()),
        }
        buf.clear();
    }
    lines
}

#[test]
fn alpine_exports_are_well_formed_xml() {
    let profile = carrier("alpine").unwrap();
    let opts = at_rate(&profile, 1_200, 9, 2, 0.03);
    let (bytes, truth) = policies(&profile, &opts);
    let starts = element_lines(&bytes, "Policy");
    assert_eq!(starts.len(), truth.rows);
    assert_eq!(starts[0], 4);
    for d in &truth.defects {
        assert_eq!(starts[d.record as usize - 1], d.line, "{d:?}");
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.contains("&amp;"), "names with & are escaped");
    assert!(text.contains("'"), "Swiss amounts: 1'234.50");

    let (claim_bytes, claim_truth) = claims(&profile, &claim_opts(&profile, &opts, 0.05));
    let starts = element_lines(&claim_bytes, "Claim");
    assert_eq!(starts.len(), claim_truth.rows);
    for d in &claim_truth.defects {
        assert_eq!(starts[d.record as usize - 1], d.line, "{d:?}");
    }
    assert!(kinds(&claim_truth.defects).contains(&DefectKind::NegativeReserve));
}

#[test]
fn keystone_extracts_are_fixed_width_windows_1252() {
    let profile = carrier("keystone").unwrap();
    let opts = at_rate(&profile, 1_000, 2, 1, 0.03);
    let (bytes, truth) = policies(&profile, &opts);
    // Windows-1252: one byte per character, so every line is 120 bytes plus CRLF.
    let lines: Vec<&[u8]> = bytes.split_inclusive(|b| *b == b'\n').collect();
    assert_eq!(lines.len(), truth.rows + 2, "header, records, trailer");
    assert!(lines.iter().all(|l| l.len() == 122 && l.ends_with(b"\r\n")));
    assert!(lines[0].starts_with(b"HDR"));
    assert!(lines[lines.len() - 1].starts_with(b"TRL000001000"));
    assert!(
        std::str::from_utf8(&bytes).is_err() || !bytes.iter().any(|b| *b >= 0x80),
        "accented names are single Windows-1252 bytes, not UTF-8"
    );
    // The layout ends at column 101; only a shifted line has anything beyond it.
    let shifted: BTreeSet<u64> = truth
        .defects
        .iter()
        .filter(|d| d.kind == DefectKind::ShiftedLine)
        .map(|d| d.line)
        .collect();
    assert!(!shifted.is_empty());
    for (i, line) in lines.iter().enumerate().skip(1).take(truth.rows) {
        let beyond = line[101..120].iter().any(|b| *b != b' ');
        assert_eq!(beyond, shifted.contains(&(i as u64 + 1)), "line {}", i + 1);
    }
    for d in &truth.defects {
        assert_eq!(d.line, d.record + 1);
        if d.kind == DefectKind::InvalidDate {
            let date = &lines[d.line as usize - 1][44..52];
            assert!(date == b"00000000" || date == b"99999999");
        }
    }
    let doc: toml::Table = profile.policy_mapping.parse().unwrap();
    let layout = doc["source"]["layout"].as_array().unwrap();
    let end = layout
        .iter()
        .map(|c| c["start"].as_integer().unwrap() + c["length"].as_integer().unwrap() - 1)
        .max();
    assert_eq!(end, Some(101), "the mapping's layout is the writer's");
}

#[test]
fn harbour_claims_are_utf16_tab_delimited_with_a_bom() {
    let profile = carrier("harbour").unwrap();
    let opts = at_rate(&profile, 2_000, 6, 1, 0.0);
    let (bytes, truth) = claims(&profile, &claim_opts(&profile, &opts, 0.02));
    assert!(
        bytes.starts_with(&[0xFF, 0xFE]),
        "a UTF-16LE byte-order mark"
    );
    let units: Vec<u16> = bytes[2..]
        .chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let text = String::from_utf16(&units).unwrap();
    let rows: Vec<Vec<&str>> = text
        .split_terminator("\r\n")
        .map(|l| l.split('\t').collect())
        .collect();
    assert_eq!(rows[0][0], "Claim Ref");
    assert_eq!(rows.len(), truth.rows + 1);
    assert!(rows.iter().all(|r| r.len() == 9));
    for (i, row) in rows.iter().enumerate().skip(1) {
        assert!(row[3].parse::<u32>().is_ok(), "an Excel serial: {}", row[3]);
        assert!(
            ["£", "$", "€"].iter().any(|s| row[6].starts_with(s)),
            "{}",
            row[6]
        );
        if let Some(d) = truth.defects.iter().find(|d| d.line == i as u64 + 1) {
            assert_eq!(d.record, i as u64);
        }
    }
}

#[test]
fn later_deliveries_change_exactly_the_counted_records() {
    for id in ["meridian", "keystone"] {
        let profile = carrier(id).unwrap();
        let (first, _) = policies(&profile, &at_rate(&profile, 1_000, 13, 1, 0.0));
        let (second, truth) = policies(&profile, &at_rate(&profile, 1_000, 13, 2, 0.0));
        // Records only: the mainframe's trailer carries a premium total, which changes too.
        let records = |bytes: &[u8]| -> Vec<Vec<u8>> {
            let lines: Vec<Vec<u8>> = bytes.split(|b| *b == b'\n').map(<[u8]>::to_vec).collect();
            let skip = usize::from(id == "keystone");
            lines[skip..skip + 1_000].to_vec()
        };
        let differing = records(&first)
            .iter()
            .zip(records(&second).iter())
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(truth.changed_vs_first, 100, "{id}: exactly 10%");
        assert_eq!(differing, truth.changed_vs_first, "{id}");
    }
}

#[test]
fn generate_writes_a_portfolio_with_its_truth() {
    let dir = scratch_dir("generate");
    let opts = GenOptions {
        carriers: CarrierSelection::Only(vec![
            "harbour".into(),
            "keystone".into(),
            "thames".into(),
        ]),
        policies: 800,
        seed: 17,
        delivery: 1,
        defect_rate: 0.01,
        claims: true,
    };
    let generated = generate(&dir, &opts).unwrap();
    let ids: Vec<_> = generated.iter().map(|g| g.profile.id).collect();
    assert_eq!(ids, ["harbour", "keystone", "thames"]);
    let truth = PortfolioTruth::read(&dir.join("truth.json")).unwrap();
    assert_eq!(truth.carriers.len(), 3);
    assert_eq!(truth.defect_rate, Some(0.01));
    for g in &generated {
        assert!(g.policy_file.exists() && g.claim_file.exists() && g.wrote_claims);
        assert!(g.policy_mapping_file.exists() && g.claim_mapping_file.exists());
        let t = truth.carrier(g.profile.id).unwrap();
        assert_eq!(t.policies, g.policy_truth, "{}", g.profile.id);
        assert_eq!(t.claims.as_ref(), Some(&g.claim_truth));
        assert_eq!(t.policy_format, g.profile.policy_format);
        assert_eq!(g.policy_truth.rejected, 8);
        assert_eq!(
            g.claim_truth.rejected - g.claim_truth.policy_rejected,
            g.claim_defects.total()
        );
    }
    // The same options again: byte-identical files, the workbook included.
    let again = scratch_dir("generate-again");
    generate(&again, &opts).unwrap();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name();
        let a = std::fs::read(dir.join(&name)).unwrap();
        let b = std::fs::read(again.join(&name)).unwrap();
        assert!(a == b, "{name:?} differs between runs");
    }

    // A later delivery, without claims, into the same directory.
    let later = generate(
        &dir,
        &GenOptions {
            delivery: 2,
            claims: false,
            carriers: CarrierSelection::First(4),
            ..opts.clone()
        },
    )
    .unwrap();
    assert_eq!(later.len(), 4);
    assert!(dir.join("harbour-policies-d2.xlsx").exists());
    let t2 = PortfolioTruth::read(&dir.join("truth-d2.json")).unwrap();
    assert!(t2
        .carriers
        .iter()
        .all(|c| c.claims.is_none() && c.claim_file.is_none()));
    assert!(later.iter().all(|g| g.policy_truth.changed_vs_first > 0));

    for bad in [
        CarrierSelection::Only(vec!["acme".into()]),
        CarrierSelection::First(99),
    ] {
        let err = generate(
            &dir,
            &GenOptions {
                carriers: bad,
                ..opts.clone()
            },
        )
        .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("northwind"), "{err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&again).unwrap();
}

#[test]
fn the_demo_portfolio_has_every_carrier_with_defects() {
    let dir = scratch_dir("demo");
    let generated = generate_portfolio(&dir, 1_000, 9).unwrap();
    assert_eq!(generated.len(), carriers().len());
    for g in &generated {
        assert!(
            g.policy_truth.rejected > 0,
            "{}: the demo shows rejected rows",
            g.profile.id
        );
        assert_eq!(
            std::fs::read_to_string(&g.policy_mapping_file).unwrap(),
            g.profile.policy_mapping
        );
    }
    let truth = PortfolioTruth::read(&dir.join("truth.json")).unwrap();
    assert_eq!(truth.defect_rate, None);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn defects_a_feed_cannot_carry_are_refused() {
    let profile = carrier("harbour").unwrap();
    let err = write_policy_feed(
        &profile,
        &FeedOptions {
            policies: 100,
            seed: 1,
            delivery: 1,
            defects: Defects {
                wrong_delimiter: 1,
                ..Defects::default()
            },
        },
        &mut Vec::new(),
    )
    .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("wrong_delimiter"), "{err}");
}
