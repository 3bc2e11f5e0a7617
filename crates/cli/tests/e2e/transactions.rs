//! Transactions on existing policies: a bordereau routes its rows to new policies or to
//! additional/return premiums and cancellations, each applied once to the policy's current
//! version, whatever how often the file is sent.

use crate::common;

use common::{counts, get, Env};

const BORDEREAU_MAPPING: &str = r#"
[mapping]
name = "acme-bordereau"
carrier = "acme"

[source]
delimiter = ";"

[conventions]
date_format = "%d.%m.%Y"
decimal_separator = ","
thousands_separator = "."
currency = "EUR"

# New risks are policies; additional and return premiums and cancellations are transactions
# on a policy reported before; the total row is left out.
[route]
column = "Art"
policy = ["NEU"]
transaction = ["NT", "STORNO"]
skip = ["SUMME"]

[policy]
number = "Police"
line_of_business = { value = "homeowners" }
status = { value = "active" }
effective_date = "Datum"
expiration_date = "Ende"
premium = "Betrag"
[policy.insured]
name = "Name"

[transaction]
policy_number = "Police"
reference = "Vorgang"
type = { column = "Art", codes = "art" }
effective_date = "Datum"
premium = "Betrag"

[codes.art]
NT = "endorsement"      # Nachtrag: additional or return premium
STORNO = "cancellation"
"#;

const BORDEREAU: &str = "\
Art;Vorgang;Police;Datum;Ende;Betrag;Name
NEU;V1;P1;01.01.2025;01.01.2026;1.000,00;Anna
NEU;V2;P2;01.02.2025;01.02.2026;500,00;Ben
NT;V3;P1;01.06.2025;;150,00;
NT;V4;P2;01.07.2025;;-20,00;
STORNO;V5;P2;01.09.2025;;-200,00;
NT;V6;P9;01.06.2025;;10,00;
NT;V7;P1;01.08.2025;;-5.000,00;
SUMME;;;;;2.430,00;
";

#[tokio::test]
async fn transactions_are_applied_once_to_the_policys_current_version() {
    let env = Env::new();
    let mapping = env.write("bordereau.toml", BORDEREAU_MAPPING);
    let feed = env.write("bordereau.csv", BORDEREAU);
    let first = env.ingest("acme", &mapping, &feed);
    // 2 policies inserted; V3, V4, V5 update them; V6 (unknown policy) and V7 (a return
    // premium larger than the premium) are rejected; the total row is skipped.
    assert_eq!(counts(&first), [8, 2, 3, 0, 2], "{first}");
    assert_eq!(first["counts"]["skipped"], 1);
    let out = env.run(&["errors", &first["id"].to_string()]);
    let errors = String::from_utf8(out.stdout).unwrap();
    assert!(
        errors.contains(
            "bordereau.csv:7: record 6 field policy_number value 'P9': policy 'P9' is not known"
        ),
        "{errors}"
    );
    assert!(
        errors.contains("bordereau.csv:8: record 7 field premium")
            && errors.contains("exceeds the policy's premium 1150.00 EUR"),
        "{errors}"
    );

    // Sent again, nothing changes: each transaction is known by its reference.
    let again = env.ingest("acme", &mapping, &feed);
    assert_eq!(counts(&again), [8, 0, 0, 5, 2], "{again}");

    // A different amount under an applied reference is refused, not applied on top.
    let corrected = env.write(
        "corrected.csv",
        "Art;Vorgang;Police;Datum;Ende;Betrag;Name\nNT;V3;P1;01.06.2025;;175,00;\n",
    );
    let refused = env.ingest("acme", &mapping, &corrected);
    assert_eq!(counts(&refused), [1, 0, 0, 0, 1]);
    let out = env.run(&["errors", &refused["id"].to_string()]);
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("transaction 'V3' was already applied to policy 'P1' with other content"));

    // The versions show the states and the premium movements they made.
    let server = env.serve();
    let client = reqwest::Client::new();
    let (_, _, page) = get(&client, &server, "/v1/policies?carrier=acme").await;
    let id_of = |number: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["number"] == number)
            .unwrap()["id"]
            .as_i64()
            .unwrap()
    };
    let (_, _, p1) = get(
        &client,
        &server,
        &format!("/v1/policies/{}/versions", id_of("P1")),
    )
    .await;
    let p1 = p1["items"].as_array().unwrap_or_else(|| panic!("{p1}"));
    assert_eq!(p1.len(), 2);
    assert_eq!(p1[1]["record"]["premium"]["amount"], "1150");
    assert_eq!(p1[1]["transaction"]["reference"], "V3");
    assert_eq!(p1[1]["premium_transactions"][0]["kind"], "endorsement");
    assert_eq!(p1[1]["premium_transactions"][0]["amount"]["amount"], "150");
    assert_eq!(
        p1[1]["premium_transactions"][0]["effective_date"], "2025-06-01",
        "a movement is effective when the transaction says"
    );

    let (_, _, p2) = get(
        &client,
        &server,
        &format!("/v1/policies/{}/versions", id_of("P2")),
    )
    .await;
    let p2 = p2["items"].as_array().unwrap();
    assert_eq!(p2.len(), 3);
    assert_eq!(p2[2]["record"]["status"]["value"], "cancelled");
    assert_eq!(p2[2]["record"]["status"]["original"], "STORNO");
    assert_eq!(p2[2]["record"]["premium"]["amount"], "280");
    let movements: Vec<(String, String)> = p2
        .iter()
        .flat_map(|v| v["premium_transactions"].as_array().unwrap().clone())
        .map(|t| {
            (
                t["kind"].as_str().unwrap().to_owned(),
                t["amount"]["amount"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        movements,
        [
            ("new_business".to_owned(), "500".to_owned()),
            ("endorsement".to_owned(), "-20".to_owned()),
            ("cancellation".to_owned(), "-200".to_owned()),
        ],
        "the movements add up to the current premium"
    );

    // What changed between two versions, field by field.
    let (status, _, diff) = get(
        &client,
        &server,
        &format!("/v1/policies/{}/diff?from=1&to=3", id_of("P2")),
    )
    .await;
    assert_eq!(status, 200, "{diff}");
    let changes: Vec<(String, serde_json::Value, serde_json::Value)> = diff["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["path"].as_str().unwrap().to_owned(),
                c["before"].clone(),
                c["after"].clone(),
            )
        })
        .collect();
    assert_eq!(
        changes,
        [
            ("premium/amount".to_owned(), "500".into(), "280".into()),
            (
                "status/original".to_owned(),
                "active".into(),
                "STORNO".into()
            ),
            (
                "status/value".to_owned(),
                "active".into(),
                "cancelled".into()
            ),
        ]
    );
    assert_eq!(diff["to"]["lineage"]["line"], 6);
    // By default, the previous version against the current one.
    let (_, _, last) = get(
        &client,
        &server,
        &format!("/v1/policies/{}/diff", id_of("P2")),
    )
    .await;
    assert_eq!(last["from"]["version"], 2);
    let (status, _, problem) = get(
        &client,
        &server,
        &format!("/v1/policies/{}/diff?from=7", id_of("P2")),
    )
    .await;
    assert_eq!(status, 400);
    assert!(problem["detail"]
        .as_str()
        .unwrap()
        .contains("versions 1 to 3, not 7"));
}
