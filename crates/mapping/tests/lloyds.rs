//! The Lloyd's Coverholder Reporting Standards examples: the premium and claims bordereaux
//! in `examples/bordereaux/` read with the mappings in `examples/mappings/`, and every
//! count and total checked against figures worked out by hand from the sample files.

use carrierhub_formats::RecordPosition;
use carrierhub_mapping::{ErrorKind, FieldError, Mapped, MappingSpec};
use carrierhub_model::{CanonicalRecord, CarrierId, Claim, Policy};
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

fn repo(path: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

fn dec(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

/// What reading one payload with one mapping produced, record by record.
struct Run {
    headers: Vec<String>,
    unmapped_columns: Vec<String>,
    records: Vec<(RecordPosition, Mapped)>,
}

impl Run {
    fn mapped(&self) -> Vec<&CanonicalRecord> {
        self.records
            .iter()
            .filter_map(|(_, m)| match m {
                Mapped::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn rejected(&self) -> Vec<(RecordPosition, &Vec<FieldError>)> {
        self.records
            .iter()
            .filter_map(|(p, m)| match m {
                Mapped::Rejected(e) => Some((*p, e)),
                _ => None,
            })
            .collect()
    }

    fn skipped(&self) -> Vec<(RecordPosition, &str)> {
        self.records
            .iter()
            .filter_map(|(p, m)| match m {
                Mapped::Skipped(reason) => Some((*p, reason.as_str())),
                _ => None,
            })
            .collect()
    }

    fn policies(&self) -> Vec<&Policy> {
        self.mapped()
            .into_iter()
            .map(|r| match r {
                CanonicalRecord::Policy(p) => p,
                other => panic!("expected a policy, got {other:?}"),
            })
            .collect()
    }

    fn claims(&self) -> Vec<&Claim> {
        self.mapped()
            .into_iter()
            .map(|r| match r {
                CanonicalRecord::Claim(c) => c,
                other => panic!("expected a claim, got {other:?}"),
            })
            .collect()
    }
}

/// Reads `data` with the mapping file `mapping`, exactly as ingestion does: the mapping's
/// reader, the mapping bound to the payload's header, each record mapped.
fn run(mapping: &str, data: &str) -> Run {
    let path = repo(mapping);
    let text = std::fs::read_to_string(&path).unwrap();
    let spec = MappingSpec::parse(&path.display().to_string(), &text).unwrap();
    let mut reader = carrierhub_formats::open(&spec.reader_spec(), &repo(data)).unwrap();
    let headers = reader.headers().to_vec();
    let bound = spec.bind(reader.headers()).unwrap();
    let carrier = CarrierId::parse("saltmarsh").unwrap();
    let mut records = Vec::new();
    while let Some(item) = reader.next_record() {
        let record = item
            .expect("the payload stays readable")
            .expect("every record is readable");
        let mapped = bound.map_record(&carrier, &record);
        records.push((record.position, mapped));
    }
    Run {
        headers,
        unmapped_columns: bound.unmapped_columns,
        records,
    }
}

fn premium_run() -> Run {
    run(
        "examples/mappings/lloyds-premium-bordereau.toml",
        "examples/bordereaux/lloyds-premium-bordereau.csv",
    )
}

fn claims_run() -> Run {
    run(
        "examples/mappings/lloyds-claims-bordereau.toml",
        "examples/bordereaux/lloyds-claims-bordereau.csv",
    )
}

/// Sums amounts per ISO currency code.
fn totals<'a>(
    amounts: impl IntoIterator<Item = &'a carrierhub_model::Money>,
) -> BTreeMap<String, Decimal> {
    let mut out = BTreeMap::new();
    for m in amounts {
        *out.entry(m.currency.to_string()).or_insert(Decimal::ZERO) += m.amount;
    }
    out
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, Decimal> {
    pairs.iter().map(|(c, a)| (c.to_string(), dec(a))).collect()
}

#[test]
fn premium_bordereau_counts_and_skipped_total_row() {
    let run = premium_run();
    assert_eq!(run.headers.len(), 19);
    assert_eq!(run.headers[8], "Insured Postcode, Zip Code or similar");
    assert_eq!(
        run.unmapped_columns,
        [
            "Unique Market Reference (UMR)",
            "Transaction Type",
            "Effective Date of Transaction",
            "Gross Premium Paid this time",
            "Commission %",
        ]
    );
    // 14 transactions and the totals row; the header is on line 3.
    assert_eq!(run.records.len(), 15);
    assert_eq!(run.records[0].0, RecordPosition { record: 1, line: 4 });
    assert_eq!(run.mapped().len(), 13);
    assert_eq!(run.rejected().len(), 1);

    let skipped = run.skipped();
    assert_eq!(skipped.len(), 1, "the totals row is skipped, not rejected");
    assert_eq!(
        skipped[0].0,
        RecordPosition {
            record: 15,
            line: 18
        }
    );
    assert!(
        skipped[0].1.contains("Reporting Period (End Date)") && skipped[0].1.contains("Total"),
        "{}",
        skipped[0].1
    );

    // Marine Cargo is not a class this binding authority may write.
    let (position, errors) = &run.rejected()[0];
    assert_eq!(
        *position,
        RecordPosition {
            record: 11,
            line: 14
        }
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "line_of_business");
    assert_eq!(errors[0].column.as_deref(), Some("Class of Business"));
    assert_eq!(errors[0].value, "Marine Cargo");
    assert_eq!(errors[0].kind, ErrorKind::UnknownCode);
    assert_eq!(
        errors[0].reason,
        "unknown line of business code 'Marine Cargo' (code table 'class_of_business' knows: \
         Cyber, Liability, Professional Indemnity, Property)"
    );
}

#[test]
fn premium_bordereau_money_totals() {
    let run = premium_run();
    let policies = run.policies();

    // Every mapped transaction row, per currency (SUA-25-0101 and SUA-25-0105 twice).
    assert_eq!(
        totals(policies.iter().map(|p| &p.premium)),
        expect(&[("EUR", "5567.00"), ("GBP", "20414.00")])
    );
    // The state after the bordereau: the last row of each certificate.
    let mut latest: BTreeMap<&str, &Policy> = BTreeMap::new();
    for p in &policies {
        latest.insert(p.number.as_str(), p);
    }
    assert_eq!(latest.len(), 11);
    assert_eq!(
        totals(latest.values().map(|p| &p.premium)),
        expect(&[("EUR", "5567.00"), ("GBP", "16824.00")])
    );
    // Sums insured (coverage limits) of the mapped rows.
    assert_eq!(
        totals(
            policies
                .iter()
                .flat_map(|p| &p.coverages)
                .filter_map(|c| c.limit.as_ref())
        ),
        expect(&[("EUR", "1850000.00"), ("GBP", "14520000.00")])
    );
    assert_eq!(
        totals(
            policies
                .iter()
                .flat_map(|p| &p.coverages)
                .filter_map(|c| c.deductible.as_ref())
        ),
        expect(&[("EUR", "3500.00"), ("GBP", "13000.00")])
    );
}

#[test]
fn premium_bordereau_codes_and_parts() {
    let run = premium_run();
    let policies = run.policies();

    let mut lines: BTreeMap<String, usize> = BTreeMap::new();
    for p in &policies {
        *lines
            .entry(p.line_of_business.value.to_string())
            .or_default() += 1;
    }
    assert_eq!(
        lines,
        [
            ("commercial_property", 5),
            ("cyber", 3),
            ("general_liability", 3),
            ("professional_liability", 2)
        ]
        .map(|(k, v)| (k.to_string(), v))
        .into()
    );

    // The flat cancellation of the cyber certificate: status cancelled, no premium left.
    let cancelled: Vec<&&Policy> = policies
        .iter()
        .filter(|p| p.status.value.to_string() == "cancelled")
        .collect();
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].number.as_str(), "SUA-25-0105");
    assert_eq!(cancelled[0].status.original, "Cancellation");
    assert_eq!(cancelled[0].premium.to_string(), "0.00 GBP");

    // The endorsement: a second row for SUA-25-0101 with the new total and sum insured.
    let bakery: Vec<&&Policy> = policies
        .iter()
        .filter(|p| p.number.as_str() == "SUA-25-0101")
        .collect();
    assert_eq!(bakery.len(), 2);
    assert_eq!(bakery[0].premium.to_string(), "2450.00 GBP");
    assert_eq!(bakery[1].premium.to_string(), "2862.50 GBP");
    assert_eq!(bakery[1].status.original, "Endorsement");
    let first = bakery[0];
    assert_eq!(first.effective_date.to_string(), "2025-03-01");
    assert_eq!(first.expiration_date.to_string(), "2026-02-28");
    assert_eq!(
        first.producer.as_deref(),
        Some("Saltmarsh Underwriting Agency Ltd")
    );
    assert_eq!(first.insured.name, "Thornbury Bakery Ltd");
    assert_eq!(first.insured.kind.to_string(), "organisation");
    assert_eq!(first.insured.postal_code.as_deref(), Some("BS35 1AA"));
    assert_eq!(first.insured.country.as_deref(), Some("GB"));
    assert_eq!(first.coverages.len(), 1);
    assert_eq!(first.coverages[0].code, "PROPERTY");
    assert_eq!(
        first.coverages[0].limit.unwrap().to_string(),
        "850000.00 GBP"
    );
    assert_eq!(
        first.coverages[0].deductible.unwrap().to_string(),
        "1000.00 GBP"
    );

    // An empty deductible leaves the coverage without one.
    let events = policies
        .iter()
        .find(|p| p.number.as_str() == "SUA-25-0107")
        .unwrap();
    assert_eq!(events.coverages[0].deductible, None);
    assert_eq!(
        events.coverages[0].limit.unwrap().to_string(),
        "2000000.00 GBP"
    );

    let irish = policies
        .iter()
        .filter(|p| p.insured.country.as_deref() == Some("IE"))
        .count();
    assert_eq!(irish, 2);
}

#[test]
fn claims_bordereau_counts_and_skipped_total_row() {
    let run = claims_run();
    assert_eq!(run.headers.len(), 22);
    assert_eq!(
        run.unmapped_columns,
        [
            "Unique Market Reference (UMR)",
            "Coverholder Name",
            "Insured Full Name or Company Name",
            "Class of Business",
            "Risk Inception Date",
            "Risk Expiry Date",
            "Loss Description",
            "Paid this month - Indemnity",
            "Paid this month - Fees",
            "Paid to Date - Fees",
            "Reserve - Fees",
            "Total Incurred",
        ]
    );
    // 12 claims and the totals row.
    assert_eq!(run.records.len(), 13);
    assert_eq!(run.mapped().len(), 11);

    let skipped = run.skipped();
    assert_eq!(skipped.len(), 1, "the totals row is skipped, not rejected");
    assert_eq!(
        skipped[0].0,
        RecordPosition {
            record: 13,
            line: 14
        }
    );

    // CLM-25-0010 was advised the day before its date of loss: a typo the model refuses.
    let rejected = run.rejected();
    assert_eq!(rejected.len(), 1);
    let (position, errors) = &rejected[0];
    assert_eq!(
        *position,
        RecordPosition {
            record: 10,
            line: 11
        }
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert_eq!(errors[0].field, "reported_date");
    assert_eq!(
        errors[0].column.as_deref(),
        Some("Date Claim First Advised")
    );
    assert_eq!(errors[0].value, "2025-06-17");
    assert_eq!(errors[0].kind, ErrorKind::Model);
    assert_eq!(errors[0].reason, "reported before the loss date 2025-06-18");
}

#[test]
fn claims_bordereau_money_totals_and_codes() {
    let run = claims_run();
    let claims = run.claims();

    assert_eq!(
        totals(claims.iter().map(|c| &c.paid)),
        expect(&[("EUR", "18240.00"), ("GBP", "11150.00")])
    );
    assert_eq!(
        totals(claims.iter().map(|c| &c.reserve)),
        expect(&[("EUR", "14000.00"), ("GBP", "110800.00")])
    );

    let mut statuses: BTreeMap<String, usize> = BTreeMap::new();
    for c in &claims {
        *statuses.entry(c.status.value.to_string()).or_default() += 1;
    }
    assert_eq!(
        statuses,
        [("closed", 2), ("denied", 1), ("open", 7), ("reopened", 1)]
            .map(|(k, v)| (k.to_string(), v))
            .into()
    );

    let by_number = |n: &str| *claims.iter().find(|c| c.number.as_str() == n).unwrap();
    let reopened = by_number("CLM-25-0008");
    assert_eq!(reopened.status.original, "Re-opened");
    assert_eq!(reopened.policy_number.as_str(), "SUA-25-0108");
    assert_eq!(reopened.loss_date.to_string(), "2025-04-01");
    assert_eq!(reopened.reported_date.to_string(), "2025-04-15");
    assert_eq!(reopened.cause.as_deref(), Some("professional_negligence"));
    assert_eq!(reopened.paid.to_string(), "2500.00 GBP");
    assert_eq!(reopened.reserve.to_string(), "15000.00 GBP");
    assert_eq!(
        by_number("CLM-25-0001").cause.as_deref(),
        Some("water"),
        "translated by the code table"
    );
    assert_eq!(
        by_number("CLM-25-0009").cause.as_deref(),
        Some("Cyber Attack"),
        "fallback = \"keep\" keeps a cause the table lacks"
    );
    assert_eq!(by_number("CLM-25-0003").paid.to_string(), "18240.00 EUR");
}

#[test]
fn claims_refer_to_certificates_of_the_premium_bordereau() {
    let premium = premium_run();
    let certificates: BTreeSet<&str> = premium
        .policies()
        .into_iter()
        .map(|p| p.number.as_str())
        .collect();
    let claims = claims_run();
    let mut claimed: BTreeSet<&str> = BTreeSet::new();
    for c in claims.claims() {
        assert!(
            certificates.contains(c.policy_number.as_str()),
            "claim {} is on certificate {}, which the premium bordereau does not hold",
            c.number,
            c.policy_number
        );
        claimed.insert(c.policy_number.as_str());
    }
    assert_eq!(claimed.len(), 9);
}
