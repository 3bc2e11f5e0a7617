//! `GET /v1/insights/...` end to end: a small portfolio computed by hand (three policies over
//! 2024 and 2025, an endorsement, a cancellation with a return premium, three claims whose
//! payments and reserves move over five deliveries) is ingested through the normal path,
//! the warehouse synced, and every metric compared with the numbers worked out below. The
//! same totals are read back with `carrierhub query` and `carrierhub portfolio`, and a
//! carrier's key never sees another carrier's numbers, whatever it asks for.

use crate::common;

use common::{response, Env, Server};
use reqwest::StatusCode;
use rust_decimal::Decimal;
use serde_json::{json, Value};
use std::path::Path;
use std::str::FromStr;

/// New policies, additional premiums and cancellations in one bordereau; any carrier.
const BORDEREAU_MAPPING: &str = r#"
[mapping]
name = "bordereau"

[source]
delimiter = ";"

[conventions]
date_format = "%d.%m.%Y"
decimal_separator = ","
thousands_separator = "."
currency = "EUR"

[route]
column = "Art"
policy = ["NEU"]
transaction = ["NT", "STORNO"]

[policy]
number = "Police"
line_of_business = { column = "Sparte", codes = "lob" }
status = { value = "active" }
effective_date = "Datum"
expiration_date = "Ende"
premium = "Betrag"
producer = "Makler"
[policy.insured]
name = "Name"

[transaction]
policy_number = "Police"
reference = "Vorgang"
type = { column = "Art", codes = "art" }
effective_date = "Datum"
premium = "Betrag"

[codes.lob]
WG = "homeowners"
KFZ = "personal_auto"

[codes.art]
NT = "endorsement"
STORNO = "cancellation"
"#;

/// Claims as states: paid to date and outstanding reserve.
const CLAIMS_MAPPING: &str = r#"
[mapping]
name = "claims"
record = "claim"

[source]
delimiter = ";"

[conventions]
date_format = "%d.%m.%Y"
decimal_separator = ","
thousands_separator = "."
currency = "EUR"

[fields]
number = "Schaden"
policy_number = "Police"
loss_date = "Schadentag"
reported_date = "Schadentag"
status = { value = "open" }
paid = "Zahlung"
reserve = "Reserve"
"#;

/// acme's policies. P1 (homeowners, book B1): 2024, 1000.00 over 366 days (a leap year).
/// P2 (homeowners, B2): 2024-07-01 to 2025-07-01, 730.00 over 365 days (2.00 a day).
/// P3 (personal_auto, B1): 2025, 365.00 over 365 days (1.00 a day), and +73.00 from
/// 2025-10-01 (92 days to the term's end).
const POLICIES: &str = "\
Art;Vorgang;Police;Sparte;Datum;Ende;Betrag;Name;Makler
NEU;V1;P1;WG;01.01.2024;01.01.2025;1.000,00;Anna;B1
NEU;V2;P2;WG;01.07.2024;01.07.2025;730,00;Ben;B2
NEU;V3;P3;KFZ;01.01.2025;01.01.2026;365,00;Cleo;B1
NT;V5;P3;;01.10.2025;;73,00;;
";

/// P2 cancelled on 2025-01-01, returning the unearned 181 days: 181 × 2.00 = 362.00.
const CANCELLATION: &str = "\
Art;Vorgang;Police;Sparte;Datum;Ende;Betrag;Name;Makler
STORNO;V4;P2;;01.01.2025;;-362,00;;
";

/// Five deliveries of acme's claims (paid to date; reserve), each dated (its transactions'
/// recording instant) at the end of a month:
///
/// | delivery   | C1 (P1, loss 2024-03-15) | C2 (P2, loss 2024-11-10) | C3 (P3, loss 2025-02-20) |
/// |------------|--------------------------|--------------------------|--------------------------|
/// | 2024-03-31 | 0; 500                   |                          |                          |
/// | 2024-06-30 | 200; 300                 |                          |                          |
/// | 2024-11-30 | 200; 300 (unchanged)     | 0; 1000                  |                          |
/// | 2025-02-28 | 450; 0                   | 600; 200                 | 0; 800                   |
/// | 2025-09-30 | 450; 0 (unchanged)       | 900; 0                   | 300; 400                 |
///
/// The transactions (payment, reserve change) they make:
/// 2024-03: C1 reserve +500.
/// 2024-06: C1 payment +200, reserve −200.
/// 2024-11: C2 reserve +1000.
/// 2025-02: C1 payment +250, reserve −300; C2 payment +600, reserve −800; C3 reserve +800.
/// 2025-09: C2 payment +300, reserve −200; C3 payment +300, reserve −400.
const CLAIM_DELIVERIES: [(&str, &str); 5] = [
    ("2024-03-31T12:00:00.000000Z", "C1;P1;15.03.2024;0,00;500,00\n"),
    ("2024-06-30T12:00:00.000000Z", "C1;P1;15.03.2024;200,00;300,00\n"),
    (
        "2024-11-30T12:00:00.000000Z",
        "C1;P1;15.03.2024;200,00;300,00\nC2;P2;10.11.2024;0,00;1.000,00\n",
    ),
    (
        "2025-02-28T12:00:00.000000Z",
        "C1;P1;15.03.2024;450,00;0,00\nC2;P2;10.11.2024;600,00;200,00\nC3;P3;20.02.2025;0,00;800,00\n",
    ),
    (
        "2025-09-30T12:00:00.000000Z",
        "C1;P1;15.03.2024;450,00;0,00\nC2;P2;10.11.2024;900,00;0,00\nC3;P3;20.02.2025;300,00;400,00\n",
    ),
];

/// beta: one policy of 2025 (9999.00) and one claim of 500.00 paid, for isolation; the
/// policy renewed for 2026 at 10950.00 (30.00 a day).
const BETA_POLICIES: &str = "\
Art;Vorgang;Police;Sparte;Datum;Ende;Betrag;Name;Makler
NEU;V1;P1;WG;01.01.2025;01.01.2026;9.999,00;Zed;B1
";
const BETA_RENEWAL: &str = "\
Art;Vorgang;Police;Sparte;Datum;Ende;Betrag;Name;Makler
NEU;V2;P1;WG;01.01.2026;01.01.2027;10.950,00;Zed;B1
";
const BETA_CLAIMS: &str =
    "Schaden;Police;Schadentag;Zahlung;Reserve\nX1;P1;01.05.2025;500,00;0,00\n";

/// The carriers' books ingested; the instant between acme's policies and its cancellation.
fn ingest(env: &Env) -> String {
    let bordereau = env.write("bordereau.toml", BORDEREAU_MAPPING);
    let claims = env.write("claims.toml", CLAIMS_MAPPING);
    env.ingest("acme", &bordereau, &env.write("p1.csv", POLICIES));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let before_cancellation =
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.ingest("acme", &bordereau, &env.write("p2.csv", CANCELLATION));
    for (i, (recorded, rows)) in CLAIM_DELIVERIES.iter().enumerate() {
        let file = env.write(
            &format!("claims-{i}.csv"),
            format!("Schaden;Police;Schadentag;Zahlung;Reserve\n{rows}"),
        );
        let submission = env.ingest("acme", &claims, &file);
        date_claim_transactions(env, submission["id"].as_i64().unwrap(), recorded);
    }
    env.ingest("beta", &bordereau, &env.write("b1.csv", BETA_POLICIES));
    env.ingest("beta", &bordereau, &env.write("b3.csv", BETA_RENEWAL));
    let beta = env.ingest("beta", &claims, &env.write("b2.csv", BETA_CLAIMS));
    date_claim_transactions(
        env,
        beta["id"].as_i64().unwrap(),
        "2025-05-31T12:00:00.000000Z",
    );
    before_cancellation
}

/// Dates a delivery's claim transactions as if it had arrived at `recorded`: the store
/// records each at the instant it is ingested, and these deliveries span two years.
fn date_claim_transactions(env: &Env, submission: i64, recorded: &str) {
    let db = env.data_dir().join("carrierhub.db");
    let recorded = recorded.to_owned();
    // A runtime of its own on a thread of its own: the tests call this from theirs.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", db.display()))
                .await
                .unwrap();
            let done = sqlx::query(
                "UPDATE claim_transactions SET recorded_at = ? WHERE submission_id = ?",
            )
            .bind(&recorded)
            .bind(submission)
            .execute(&pool)
            .await
            .unwrap();
            assert!(
                done.rows_affected() > 0,
                "submission {submission} made no claim transactions"
            );
            pool.close().await;
        });
    })
    .join()
    .unwrap();
}

fn sync(env: &Env, warehouse: &Path) {
    let out = env
        .command()
        .arg("--warehouse")
        .arg(warehouse)
        .args(["warehouse", "sync"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn create_key(env: &Env, args: &[&str]) -> String {
    let out = env.run(&[&["keys", "create", "--json"], args].concat());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

async fn get(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    path: &str,
) -> (StatusCode, Value) {
    let r = client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, _, body) = response(r).await;
    (status, body)
}

/// The answer's items, asserting a 200.
async fn items(client: &reqwest::Client, server: &Server, token: &str, path: &str) -> Value {
    let (status, body) = get(client, server, token, path).await;
    assert_eq!(status, StatusCode::OK, "{path}: {body}");
    body["items"].clone()
}

fn query_decimal(env: &Env, warehouse: &Path, sql: &str) -> Decimal {
    let out = env
        .command()
        .arg("--warehouse")
        .arg(warehouse)
        .args(["query", "--format", "csv", sql])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let value = text
        .lines()
        .nth(1)
        .unwrap_or_else(|| panic!("{sql}: {text}"));
    Decimal::from_str(value.trim()).unwrap_or_else(|e| panic!("{sql}: '{value}': {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_of_a_hand_computed_portfolio() {
    let env = Env::new();
    let before_cancellation = ingest(&env);
    let warehouse = env.data_dir().join("warehouse");
    sync(&env, &warehouse);
    let acme = create_key(&env, &["--role", "carrier", "--carrier", "acme"]);
    let admin = create_key(&env, &["--role", "admin"]);
    let server = env.serve_with(&["--api-keys"]);
    let client = reqwest::Client::new();
    let two_years = "from=2024-01-01&to=2025-12-31";

    // Written premium by effective date. 2024: P1 1000 + P2 730 = 1730 (2 transactions).
    // 2025: P2's return −362 + P3 365 + P3's +73 = 76 (3 transactions).
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/premium?{two_years}&grain=year")
        )
        .await,
        json!([
            {"period": "2024", "currency": "EUR", "written_premium": "1730.00", "transactions": 2},
            {"period": "2025", "currency": "EUR", "written_premium": "76.00", "transactions": 3},
        ])
    );

    // Earned, each transaction evenly from its date to its term's end.
    // 2024: P1 1000 × 366/366 = 1000; P2 730 × 184/365 (Jul 1 – Dec 31) = 368 → 1368.
    // 2025: P2 730 × 181/365 = 362 and its return −362 × 181/181 = −362 → 0;
    //       P3 365 × 365/365 = 365 and +73 × 92/92 = 73 → 438.
    // Together 1806 = everything written (1730 + 76).
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/earned?{two_years}&grain=year")
        )
        .await,
        json!([
            {"period": "2024", "currency": "EUR", "earned_premium": "1368.00"},
            {"period": "2025", "currency": "EUR", "earned_premium": "438.00"},
        ])
    );
    // Q3 2024 alone: P1 1000 × 92/366 = 251.366…; P2 730 × 92/365 = 184 → 435.37.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            "/v1/insights/earned?from=2024-07-01&to=2024-09-30"
        )
        .await,
        json!([{"currency": "EUR", "earned_premium": "435.37"}])
    );
    // By line in 2025: homeowners (P2) 362 − 362 = 0; personal auto (P3) 438.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            "/v1/insights/earned?from=2025-01-01&to=2025-12-31&group_by=line"
        )
        .await,
        json!([
            {"line": "homeowners", "currency": "EUR", "earned_premium": "0.00"},
            {"line": "personal_auto", "currency": "EUR", "earned_premium": "438.00"},
        ])
    );
    // Book B2 (P2 alone) over both years: 368 + 0.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/earned?{two_years}&book=B2")
        )
        .await,
        json!([{"currency": "EUR", "earned_premium": "368.00"}])
    );

    // In force. 2024-12-31: P1 and P2 (cancelled only from 2025-01-01), 1000 + 730.
    // 2025-03-01: P3 alone, 365 (its +73 takes effect on 2025-10-01); 2025-12-01: 438.
    for (as_of, policies, premium) in [
        ("2024-12-31", 2, "1730.00"),
        ("2025-01-01", 1, "365.00"),
        ("2025-03-01", 1, "365.00"),
        ("2025-12-01", 1, "438.00"),
        ("2026-01-01", 0, ""),
    ] {
        let got = items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/in-force?as_of={as_of}"),
        )
        .await;
        if policies == 0 {
            assert_eq!(got, json!([]), "{as_of}");
        } else {
            assert_eq!(
                got,
                json!([{"currency": "EUR", "policies": policies, "premium": premium}]),
                "{as_of}"
            );
        }
    }
    // As known before the cancellation arrived, P2 was still in force on 2025-03-01:
    // 730 + 365 = 1095.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/in-force?as_of=2025-03-01&known_at={before_cancellation}")
        )
        .await,
        json!([{"currency": "EUR", "policies": 2, "premium": "1095.00"}])
    );

    // Incurred by recording date. 2024: paid 200; reserves +500 −200 +1000 = 1300 → 1500.
    // 2025: paid 250 + 600 + 300 + 300 = 1450; reserves −300 −800 +800 −200 −400 = −900
    // → 550.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/incurred?{two_years}&grain=year")
        )
        .await,
        json!([
            {"period": "2024", "currency": "EUR", "paid": "200.00", "reserve_change": "1300.00", "incurred": "1500.00"},
            {"period": "2025", "currency": "EUR", "paid": "1450.00", "reserve_change": "-900.00", "incurred": "550.00"},
        ])
    );

    // Loss ratio: 1500 / 1368 = 1.09649…; 550 / 438 = 1.25570…; both years 2050 / 1806.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/loss-ratio?{two_years}&grain=year")
        )
        .await,
        json!([
            {"period": "2024", "currency": "EUR", "earned_premium": "1368.00", "incurred": "1500.00", "loss_ratio": "1.0965"},
            {"period": "2025", "currency": "EUR", "earned_premium": "438.00", "incurred": "550.00", "loss_ratio": "1.2557"},
        ])
    );
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/loss-ratio?{two_years}")
        )
        .await,
        json!([{"currency": "EUR", "earned_premium": "1806.00", "incurred": "2050.00", "loss_ratio": "1.1351"}])
    );

    // Frequency and severity by loss date. 2024: C1, C2; exposure P1 366 days + P2 184
    // days = 550 days = 1.5068 policy-years; 2 × 365 / 550 = 1.3273; incurred to date
    // C1 450 + C2 900 = 1350, 675 a claim. 2025: C3; exposure P3's 365 days (P2 cancelled
    // on its first day, P1 ended); 1 claim a policy-year; C3 300 + 400 = 700.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("/v1/insights/frequency-severity?{two_years}&grain=year")
        )
        .await,
        json!([
            {"period": "2024", "currency": "EUR", "claims": 2, "exposure_policy_years": "1.5068", "frequency": "1.3273", "incurred": "1350.00", "severity": "675.00"},
            {"period": "2025", "currency": "EUR", "claims": 1, "exposure_policy_years": "1.0000", "frequency": "1.0000", "incurred": "700.00", "severity": "700.00"},
        ])
    );

    // Triangles by accident year, valued at 2025-12-31, cumulative.
    // Paid: AY 2024 (C1, C2): 200 in 2024; +250 +600 +300 in 2025 → 1350. AY 2025 (C3): 300.
    // Incurred: AY 2024: 500 + 1000 in 2024 (C1's +200 −200 nets out) = 1500; in 2025
    // C1 −50, C2 −200 and +100 → 1350 = C1 450 + C2 900. AY 2025: 800 − 100 = 700.
    let years = "/v1/insights/triangles?from=2024-01-01&to=2025-12-31&as_of=2025-12-31&grain=year";
    assert_eq!(
        items(&client, &server, &acme, &format!("{years}&measure=paid")).await,
        json!([
            {"currency": "EUR", "accident_period": "2024", "development": ["200.00", "1350.00"]},
            {"currency": "EUR", "accident_period": "2025", "development": ["300.00"]},
        ])
    );
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            &format!("{years}&measure=incurred")
        )
        .await,
        json!([
            {"currency": "EUR", "accident_period": "2024", "development": ["1500.00", "1350.00"]},
            {"currency": "EUR", "accident_period": "2025", "development": ["700.00"]},
        ])
    );
    // By quarter. AY 2024-Q1 (C1): +500 at age 0 (March), 0 at age 1 (June: +200 −200),
    // −50 at age 4 (2025-Q1), through age 7 (2025-Q4). AY 2024-Q4 (C2): +1000 at 0, −200 at
    // 1 (2025-Q1), +100 at 3 (2025-Q3). AY 2025-Q1 (C3): +800 at 0, −100 at 2 (2025-Q3).
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            "/v1/insights/triangles?from=2024-01-01&as_of=2025-12-31&grain=quarter"
        )
        .await,
        json!([
            {"currency": "EUR", "accident_period": "2024-Q1",
             "development": ["500.00", "500.00", "500.00", "500.00", "450.00", "450.00", "450.00", "450.00"]},
            {"currency": "EUR", "accident_period": "2024-Q4",
             "development": ["1000.00", "800.00", "800.00", "900.00", "900.00"]},
            {"currency": "EUR", "accident_period": "2025-Q1",
             "development": ["800.00", "800.00", "700.00", "700.00"]},
        ])
    );
    // Valued at 2024-12-31: only what was recorded by then.
    assert_eq!(
        items(
            &client,
            &server,
            &acme,
            "/v1/insights/triangles?from=2024-01-01&as_of=2024-12-31&measure=paid"
        )
        .await,
        json!([{"currency": "EUR", "accident_period": "2024", "development": ["200.00"]}])
    );

    // A renewal writes the new term's whole premium, though the model records only the
    // difference (10950 − 9999 = 951): 10950 written in 2026, earned 10950 × 90/365 = 2700
    // in its first quarter, in force at 10950 in 2026 and at 9999 before.
    assert_eq!(
        items(
            &client,
            &server,
            &admin,
            "/v1/insights/premium?carrier=beta&from=2026-01-01&to=2026-12-31"
        )
        .await,
        json!([{"currency": "EUR", "written_premium": "10950.00", "transactions": 1}])
    );
    assert_eq!(
        items(
            &client,
            &server,
            &admin,
            "/v1/insights/earned?carrier=beta&from=2026-01-01&to=2026-03-31"
        )
        .await,
        json!([{"currency": "EUR", "earned_premium": "2700.00"}])
    );
    for (as_of, premium) in [("2026-02-01", "10950.00"), ("2025-12-31", "9999.00")] {
        assert_eq!(
            items(
                &client,
                &server,
                &admin,
                &format!("/v1/insights/in-force?carrier=beta&as_of={as_of}")
            )
            .await,
            json!([{"currency": "EUR", "policies": 1, "premium": premium}]),
            "{as_of}"
        );
    }

    // The same totals by SQL and by the store's portfolio: everything written 1806 (what
    // is earned over both years), everything incurred 2050.
    let sql_written = query_decimal(
        &env,
        &warehouse,
        "SELECT SUM(amount) AS s FROM premium_transactions WHERE carrier = 'acme'",
    );
    assert_eq!(sql_written, Decimal::from(1806));
    let sql_incurred = query_decimal(
        &env,
        &warehouse,
        "SELECT SUM(amount) AS s FROM claim_transactions WHERE carrier = 'acme'",
    );
    assert_eq!(sql_incurred, Decimal::from(2050));
    let sql_2024_paid = query_decimal(
        &env,
        &warehouse,
        "SELECT SUM(amount) AS s FROM claim_transactions WHERE carrier = 'acme' \
         AND kind <> 'reserve_change' AND CAST(recorded_at AS BIGINT) < 1735689600000000",
    );
    assert_eq!(sql_2024_paid, Decimal::from(200));
    let out = env.run(&["portfolio", "--json"]);
    let lines: Value = serde_json::from_slice(&out.stdout).unwrap();
    let acme_premium: Decimal = lines
        .as_array()
        .unwrap()
        .iter()
        .filter(|l| l["carrier"] == "acme")
        .map(|l| Decimal::from_str(l["premium"].as_str().unwrap()).unwrap())
        .sum();
    assert_eq!(acme_premium, Decimal::from(1806));
}

/// Every insight route with parameters that reach acme's numbers.
const ROUTES: [&str; 7] = [
    "/v1/insights/premium?from=2024-01-01&to=2025-12-31",
    "/v1/insights/in-force?as_of=2025-06-30",
    "/v1/insights/earned?from=2024-01-01&to=2025-12-31",
    "/v1/insights/incurred?from=2024-01-01&to=2025-12-31",
    "/v1/insights/loss-ratio?from=2024-01-01&to=2025-12-31",
    "/v1/insights/frequency-severity?from=2024-01-01&to=2025-12-31",
    "/v1/insights/triangles?from=2024-01-01&as_of=2025-12-31",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carriers_key_never_sees_another_carriers_numbers() {
    let env = Env::new();
    ingest(&env);
    sync(&env, &env.data_dir().join("warehouse"));
    let admin = create_key(&env, &["--role", "admin"]);
    let acme = create_key(&env, &["--role", "carrier", "--carrier", "acme"]);
    let beta = create_key(&env, &["--role", "carrier", "--carrier", "beta"]);
    let acme_b1 = create_key(
        &env,
        &["--role", "carrier", "--carrier", "acme", "--book", "B1"],
    );
    let server = env.serve_with(&["--api-keys"]);
    let client = reqwest::Client::new();

    for route in ROUTES {
        let by_carrier = format!("{route}&group_by=carrier");
        // The administrator sees both carriers; each carrier only itself.
        let all = items(&client, &server, &admin, &by_carrier).await;
        let carriers = |items: &Value| -> Vec<String> {
            let mut c: Vec<String> = items
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["carrier"].as_str().unwrap().to_owned())
                .collect();
            c.dedup();
            c
        };
        assert_eq!(carriers(&all), ["acme", "beta"], "{route}: {all}");
        for (token, mine, other) in [(&acme, "acme", "beta"), (&beta, "beta", "acme")] {
            let seen = items(&client, &server, token, &by_carrier).await;
            let expected: Vec<&Value> = all
                .as_array()
                .unwrap()
                .iter()
                .filter(|i| i["carrier"] == mine)
                .collect();
            assert_eq!(
                seen.as_array().unwrap().iter().collect::<Vec<_>>(),
                expected,
                "{route}"
            );
            // Asking for the other carrier by name finds nothing.
            let asked = items(
                &client,
                &server,
                token,
                &format!("{by_carrier}&carrier={other}"),
            )
            .await;
            assert_eq!(asked, json!([]), "{route} as {mine} asking for {other}");
        }
        // A key of acme's book B1 sees B1's numbers alone, even when it asks for B2.
        let b1 = items(
            &client,
            &server,
            &acme_b1,
            &format!("{route}&group_by=book"),
        )
        .await;
        for item in b1.as_array().unwrap() {
            assert_eq!(item["book"], "B1", "{route}: {b1}");
        }
        let b2 = items(&client, &server, &acme_b1, &format!("{route}&book=B2")).await;
        assert_eq!(b2, json!([]), "{route}");
    }

    // Bad parameters are a 400 naming the parameter.
    for (query, name) in [
        ("/v1/insights/earned?grain=week", "grain"),
        ("/v1/insights/earned?from=2025-13-01", "from"),
        ("/v1/insights/earned?from=2025-06-01&to=2025-01-01", "from"),
        ("/v1/insights/earned?line=boats", "line"),
        ("/v1/insights/earned?group_by=colour", "group_by"),
        ("/v1/insights/earned?known_at=yesterday", "known_at"),
        (
            "/v1/insights/earned?from=0001-01-01&to=9999-12-31&grain=month",
            "grain",
        ),
        ("/v1/insights/in-force?as_of=soon", "as_of"),
        ("/v1/insights/triangles?measure=reported", "measure"),
        ("/v1/insights/in-force?from=2025-01-01", "from"),
    ] {
        let (status, body) = get(&client, &server, &admin, query).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert!(
            body["detail"]
                .as_str()
                .unwrap()
                .contains(&format!("'{name}'")),
            "{query}: {body}"
        );
    }
}
