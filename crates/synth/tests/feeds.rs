//! End-to-end checks of the delimited-text carriers' feeds against the real readers and
//! mappings: the ground truth each writer returns must be exactly what ingestion finds. (The
//! carriers writing other formats are reconciled end to end in `crates/cli/tests/e2e/formats.rs`.)

use carrierhub_mapping::{ErrorKind, Mapped, MappingSpec};
use carrierhub_model::{CanonicalRecord, CarrierId, Claim, Policy};
use carrierhub_synth::*;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, HashMap};

/// How one data row fared.
#[derive(Debug)]
enum Outcome<T> {
    Ok(T),
    /// The reader could not read the row (wrong field count, bad encoding).
    Unreadable(String),
    /// The mapping rejected fields: (canonical field, reason).
    Unmappable(Vec<(String, String)>),
    /// Mapped, but the canonical record breaks a model rule.
    Invalid(Vec<String>),
}

/// Reads and maps `bytes` with `mapping` exactly as the pipeline does: (line, outcome).
fn ingest(
    profile: &CarrierProfile,
    mapping: &str,
    bytes: &[u8],
) -> Vec<(u64, Outcome<CanonicalRecord>)> {
    let spec = MappingSpec::parse("test.toml", mapping).expect("mapping parses");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    let mut reader =
        carrierhub_formats::open(&spec.reader_spec(), file.path()).expect("feed has a header");
    let bound = spec
        .bind(reader.headers())
        .expect("mapping fits the header");
    assert!(
        bound.unmapped_columns.is_empty(),
        "{:?}",
        bound.unmapped_columns
    );
    let carrier = CarrierId::parse(profile.id).unwrap();
    let mut out = Vec::new();
    while let Some(r) = reader.next_record() {
        match r.expect("the payload stays readable") {
            Err(e) => out.push((e.position.line, Outcome::Unreadable(e.reason))),
            Ok(raw) => {
                let line = raw.position.line;
                let outcome = match bound.map_record(&carrier, &raw) {
                    Mapped::Record(record) => Outcome::Ok(record),
                    Mapped::Skipped(reason) => panic!("line {line} skipped: {reason}"),
                    Mapped::Rejected(errors)
                        if errors.iter().all(|e| e.kind == ErrorKind::Model) =>
                    {
                        Outcome::Invalid(errors.into_iter().map(|e| e.field).collect())
                    }
                    Mapped::Rejected(errors) => Outcome::Unmappable(
                        errors.into_iter().map(|e| (e.field, e.reason)).collect(),
                    ),
                };
                out.push((line, outcome));
            }
        }
    }
    out
}

/// The carriers that write delimited text.
fn csv_carriers() -> Vec<CarrierProfile> {
    carriers()
        .into_iter()
        .filter(|c| c.policy_format == FeedFormat::Csv)
        .collect()
}

fn policies(profile: &CarrierProfile, bytes: &[u8]) -> Vec<(u64, Outcome<Policy>)> {
    ingest(profile, profile.policy_mapping, bytes)
        .into_iter()
        .map(|(line, o)| {
            let o = match o {
                Outcome::Ok(CanonicalRecord::Policy(p)) => Outcome::Ok(p),
                Outcome::Ok(other) => panic!("not a policy: {other:?}"),
                Outcome::Unreadable(e) => Outcome::Unreadable(e),
                Outcome::Unmappable(e) => Outcome::Unmappable(e),
                Outcome::Invalid(e) => Outcome::Invalid(e),
            };
            (line, o)
        })
        .collect()
}

fn feed(profile: &CarrierProfile, opts: &FeedOptions) -> (Vec<u8>, PolicyTruth) {
    let mut bytes = Vec::new();
    let truth = write_policy_feed(profile, opts, &mut bytes).unwrap();
    (bytes, truth)
}

fn opts(policies: usize, seed: u64, delivery: u32, defects: Defects) -> FeedOptions {
    FeedOptions {
        policies,
        seed,
        delivery,
        defects,
    }
}

type Totals = (
    BTreeMap<(String, String), Decimal>,
    BTreeMap<String, Decimal>,
);

fn premium_totals<'a>(policies: impl Iterator<Item = &'a Policy>) -> Totals {
    let mut by_line = BTreeMap::new();
    let mut by_currency = BTreeMap::new();
    for p in policies {
        let ccy = p.premium.currency.to_string();
        *by_line
            .entry((p.line_of_business.value.code().to_owned(), ccy.clone()))
            .or_insert(Decimal::ZERO) += p.premium.amount;
        *by_currency.entry(ccy).or_insert(Decimal::ZERO) += p.premium.amount;
    }
    (by_line, by_currency)
}

fn ok_policies(outcomes: &[(u64, Outcome<Policy>)]) -> Vec<&Policy> {
    outcomes
        .iter()
        .filter_map(|(_, o)| match o {
            Outcome::Ok(p) => Some(p),
            _ => None,
        })
        .collect()
}

#[test]
fn clean_feeds_map_without_errors_and_match_their_truth() {
    for profile in csv_carriers() {
        for delivery in [1, 2] {
            let (bytes, truth) = feed(&profile, &opts(3_000, 42, delivery, Defects::default()));
            let outcomes = policies(&profile, &bytes);
            assert_eq!(outcomes.len(), 3_000, "{}", profile.id);
            for (line, o) in &outcomes {
                assert!(
                    matches!(o, Outcome::Ok(_)),
                    "{} line {line}: {o:?}",
                    profile.id
                );
            }
            let ok = ok_policies(&outcomes);
            assert_eq!((truth.rows, truth.valid, truth.rejected), (3_000, 3_000, 0));
            assert!(truth.defect_lines.is_empty());
            let (by_line, by_currency) = premium_totals(ok.iter().copied());
            assert_eq!(
                by_line, truth.premium_by_line,
                "{} delivery {delivery}",
                profile.id
            );
            assert_eq!(by_currency, truth.premium_by_currency);
            let cancelled = ok
                .iter()
                .filter(|p| p.status.value == carrierhub_model::PolicyStatus::Cancelled)
                .count();
            assert_eq!(cancelled, truth.cancelled);

            // Realism: several lines, both party kinds, each policy with one coverage and
            // a unique number.
            assert!(
                truth.premium_by_line.len() >= 4,
                "{:?}",
                truth.premium_by_line
            );
            assert!(ok
                .iter()
                .any(|p| p.insured.kind == carrierhub_model::PartyKind::Organisation));
            assert!(ok
                .iter()
                .all(|p| p.coverages.len() == 1 && p.producer.is_some()));
            let numbers: std::collections::HashSet<_> = ok.iter().map(|p| &p.number).collect();
            assert_eq!(numbers.len(), ok.len());
        }
    }
}

#[test]
fn carriers_differ_in_format_and_thames_writes_several_currencies() {
    let all = carriers();
    assert_eq!(
        all.iter().map(|c| c.id).collect::<Vec<_>>(),
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
    assert_eq!(
        carrier("rheinland").unwrap().name,
        "Rheinland Versicherung AG"
    );
    assert!(carrier("acme").is_none());

    let rheinland = carrier("rheinland").unwrap();
    let (bytes, _) = feed(&rheinland, &opts(500, 1, 1, Defects::default()));
    assert!(
        std::str::from_utf8(&bytes).is_err(),
        "ISO-8859-1, not UTF-8"
    );
    assert!(
        bytes.windows(6).any(|w| w == b"M\xfcller"),
        "umlauts are single bytes"
    );
    assert!(bytes.starts_with(b"Policennummer;Sparte;Status;Beginn;Ablauf;Jahresbeitrag;"));

    let northwind = carrier("northwind").unwrap();
    let (bytes, _) = feed(&northwind, &opts(500, 1, 1, Defects::default()));
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("PolicyNo,LOB,Status,EffDate,ExpDate,GrossPremium,"));
    assert!(
        text.contains("\r\n") && text.contains(",\"1,"),
        "CRLF and quoted thousands"
    );

    let thames = carrier("thames").unwrap();
    let (_, truth) = feed(&thames, &opts(2_000, 1, 1, Defects::default()));
    let currencies: Vec<_> = truth
        .premium_by_currency
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(currencies, ["EUR", "GBP", "USD"]);
    assert!(truth.premium_by_currency["GBP"] > truth.premium_by_currency["EUR"] * Decimal::from(4));
}

#[test]
fn exactly_the_defect_rows_are_rejected_on_their_lines() {
    let defects = Defects {
        wrong_delimiter: 3,
        invalid_dates: 4,
        negative_premium: 2,
        unknown_codes: 3,
        truncated_last_row: true,
        ..Defects::default()
    };
    for profile in csv_carriers() {
        for delivery in [1, 3] {
            let (bytes, truth) = feed(&profile, &opts(2_000, 7, delivery, defects.clone()));
            assert_eq!(
                (truth.rows, truth.rejected, truth.valid),
                (2_000, 13, 1_987)
            );
            assert_eq!(truth.defect_lines.last(), Some(&(2_001, "truncated")));
            assert!(
                !bytes.ends_with(b"\n"),
                "a truncated file has no final line end"
            );

            let outcomes = policies(&profile, &bytes);
            assert_eq!(outcomes.len(), 2_000);
            let mut failed = Vec::new();
            for (line, o) in &outcomes {
                let kind = match o {
                    Outcome::Ok(_) => continue,
                    Outcome::Unreadable(reason) => {
                        if reason.contains("cut short") && !reason.contains("delimiter") {
                            "truncated"
                        } else {
                            "wrong_delimiter"
                        }
                    }
                    Outcome::Unmappable(errors) => {
                        assert_eq!(errors.len(), 1, "{errors:?}");
                        match errors[0].0.as_str() {
                            "effective_date" => "invalid_date",
                            "line_of_business" => "unknown_code",
                            other => panic!("{} line {line}: unexpected field {other}", profile.id),
                        }
                    }
                    Outcome::Invalid(fields) => {
                        assert_eq!(fields, &["premium"]);
                        "negative_premium"
                    }
                };
                failed.push((*line, kind));
            }
            assert_eq!(
                failed, truth.defect_lines,
                "{} delivery {delivery}",
                profile.id
            );

            let ok = ok_policies(&outcomes);
            assert_eq!(ok.len(), truth.valid);
            let (by_line, by_currency) = premium_totals(ok.iter().copied());
            assert_eq!(by_line, truth.premium_by_line);
            assert_eq!(by_currency, truth.premium_by_currency);
        }
    }
}

#[test]
fn later_deliveries_change_exactly_the_counted_policies() {
    for profile in csv_carriers() {
        let (first, first_truth) = feed(&profile, &opts(5_000, 11, 1, Defects::default()));
        assert_eq!(first_truth.changed_vs_first, 0);
        let first = policies(&profile, &first);
        let first: HashMap<String, Policy> = ok_policies(&first)
            .into_iter()
            .map(|p| (p.number.to_string(), p.clone()))
            .collect();

        for (delivery, defects) in [
            (2, Defects::default()),
            (
                3,
                Defects {
                    invalid_dates: 5,
                    unknown_codes: 5,
                    ..Defects::default()
                },
            ),
        ] {
            let (bytes, truth) = feed(&profile, &opts(5_000, 11, delivery, defects));
            let later = policies(&profile, &bytes);
            let later = ok_policies(&later);
            assert_eq!(later.len(), truth.valid);
            let mut changed = 0;
            let mut cancelled_now = 0;
            for p in &later {
                let before = first.get(p.number.as_str()).expect("same policies");
                if before != *p {
                    changed += 1;
                    assert_eq!(before.effective_date, p.effective_date);
                    assert_eq!(before.insured, p.insured);
                    if p.status.value == carrierhub_model::PolicyStatus::Cancelled
                        && before.status.value != p.status.value
                    {
                        cancelled_now += 1;
                        assert!(p.premium.amount < before.premium.amount, "pro rata");
                    }
                }
            }
            assert_eq!(
                changed, truth.changed_vs_first,
                "{} delivery {delivery}",
                profile.id
            );
            if truth.valid == 5_000 {
                assert_eq!(changed, 500, "exactly 10%");
            }
            // About 3% of the book is newly cancelled.
            assert!(
                (90..=220).contains(&cancelled_now),
                "{} {cancelled_now}",
                profile.id
            );
        }
    }
}

#[test]
fn same_seed_same_bytes() {
    for profile in csv_carriers() {
        let options = opts(
            1_000,
            5,
            2,
            Defects {
                wrong_delimiter: 2,
                truncated_last_row: true,
                ..Defects::default()
            },
        );
        let (a, truth_a) = feed(&profile, &options);
        let (b, truth_b) = feed(&profile, &options);
        assert_eq!(a, b);
        assert_eq!(truth_a, truth_b);
        let (other_seed, _) = feed(
            &profile,
            &FeedOptions {
                seed: 6,
                ..options.clone()
            },
        );
        assert_ne!(a, other_seed);
        let (other_delivery, _) = feed(
            &profile,
            &FeedOptions {
                delivery: 3,
                ..options
            },
        );
        assert_ne!(a, other_delivery);

        let mut c1 = Vec::new();
        let mut c2 = Vec::new();
        write_claim_feed(&profile, 1_000, 5, &mut c1).unwrap();
        write_claim_feed(&profile, 1_000, 5, &mut c2).unwrap();
        assert_eq!(c1, c2);
    }
}

#[test]
fn impossible_options_are_refused() {
    let profile = carrier("thames").unwrap();
    let too_many = Defects {
        unknown_codes: 10,
        truncated_last_row: true,
        ..Defects::default()
    };
    assert!(write_policy_feed(&profile, &opts(10, 1, 1, too_many), &mut Vec::new()).is_err());
    assert!(write_policy_feed(
        &profile,
        &opts(10, 1, 0, Defects::default()),
        &mut Vec::new()
    )
    .is_err());
    let (bytes, truth) = feed(&profile, &opts(0, 1, 1, Defects::default()));
    assert_eq!(truth, PolicyTruth::default());
    assert_eq!(
        bytes.iter().filter(|b| **b == b'\n').count(),
        1,
        "header only"
    );
}

#[test]
fn claim_feeds_map_cleanly_onto_real_policies() {
    for profile in csv_carriers() {
        let (policy_bytes, _) = feed(&profile, &opts(4_000, 3, 1, Defects::default()));
        let terms: HashMap<String, Policy> = ok_policies(&policies(&profile, &policy_bytes))
            .into_iter()
            .map(|p| (p.number.to_string(), p.clone()))
            .collect();

        let mut bytes = Vec::new();
        let truth = write_claim_feed(&profile, 4_000, 3, &mut bytes).unwrap();
        assert_eq!(truth.valid, truth.rows);
        assert!(
            (400..=600).contains(&truth.rows),
            "{} claims {}",
            profile.id,
            truth.rows
        );

        let mut paid: BTreeMap<String, Decimal> = BTreeMap::new();
        let mut reserve: BTreeMap<String, Decimal> = BTreeMap::new();
        let claims: Vec<Claim> = ingest(&profile, profile.claim_mapping, &bytes)
            .into_iter()
            .map(|(line, o)| match o {
                Outcome::Ok(CanonicalRecord::Claim(c)) => c,
                other => panic!("{} line {line}: {other:?}", profile.id),
            })
            .collect();
        assert_eq!(claims.len(), truth.rows);
        for c in &claims {
            let policy = terms
                .get(c.policy_number.as_str())
                .expect("claim on a known policy");
            assert!(policy.effective_date <= c.loss_date && c.loss_date < policy.expiration_date);
            assert!(c.reported_date >= c.loss_date);
            assert_eq!(c.paid.currency, policy.premium.currency);
            *paid.entry(c.paid.currency.to_string()).or_default() += c.paid.amount;
            *reserve.entry(c.reserve.currency.to_string()).or_default() += c.reserve.amount;
        }
        assert_eq!(paid, truth.paid_by_currency, "{}", profile.id);
        assert_eq!(reserve, truth.reserve_by_currency);
        let statuses: std::collections::HashSet<_> =
            claims.iter().map(|c| c.status.value).collect();
        assert_eq!(statuses.len(), 4, "{statuses:?}");
    }
}

#[test]
fn portfolio_writes_feeds_and_mappings() {
    let dir = std::env::temp_dir().join(format!("carrierhub-synth-{}", std::process::id()));
    let generated = generate_portfolio(&dir, 1_000, 9).unwrap();
    assert_eq!(generated.len(), 7);
    for g in generated
        .iter()
        .filter(|g| g.profile.policy_format == FeedFormat::Csv)
    {
        let bytes = std::fs::read(&g.policy_file).unwrap();
        let mapping = std::fs::read_to_string(&g.policy_mapping_file).unwrap();
        assert_eq!(mapping, g.profile.policy_mapping);
        assert!(g.policy_truth.rejected > 0, "the demo shows rejected rows");
        let outcomes = policies(&g.profile, &bytes);
        assert_eq!(ok_policies(&outcomes).len(), g.policy_truth.valid);
        let claims = std::fs::read(&g.claim_file).unwrap();
        let claim_mapping = std::fs::read_to_string(&g.claim_mapping_file).unwrap();
        let mapped = ingest(&g.profile, &claim_mapping, &claims);
        assert_eq!(mapped.len(), g.claim_truth.rows);
        assert!(mapped.iter().all(|(_, o)| matches!(o, Outcome::Ok(_))));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
