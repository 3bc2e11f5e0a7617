//! The live view of today's premium and claims (`GET /v1/insights/live`), driven against the
//! real binary on SQLite and PostgreSQL: after an ingest its totals are exactly what was
//! ingested today; a later submission moves them by exactly its transactions within seconds;
//! a carrier's key and a book-restricted key see only their own; a second API replica on the
//! same database keeps the same totals.

use crate::common;

use carrierhub_store::testing::TestDatabase;
use common::{Env, Server};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Policies with a producer code (their book).
const POLICIES: &str = r#"
[mapping]
name = "live-policies"
record = "policy"

[source]
delimiter = ";"

[conventions]
date_format = "%d.%m.%Y"
decimal_separator = ","
currency = "EUR"

[fields]
number = "Nr"
line_of_business = { column = "Sparte", codes = "lob" }
status = { value = "active" }
effective_date = "Beginn"
expiration_date = "Ende"
premium = "Beitrag"
producer = "Vermittler"

[fields.insured]
name = "Name"

[codes.lob]
KFZ = "personal_auto"
WG = "homeowners"
"#;

/// Claims with paid and reserve.
const CLAIMS: &str = r#"
[mapping]
name = "live-claims"
record = "claim"

[source]
delimiter = ";"

[conventions]
date_format = "%d.%m.%Y"
decimal_separator = ","
currency = "EUR"

[fields]
number = "Schaden"
policy_number = "Nr"
loss_date = "Datum"
reported_date = "Datum"
status = { value = "open" }
paid = "Zahlung"
reserve = "Reserve"
"#;

const HEADER: &str = "Nr;Sparte;Beginn;Ende;Beitrag;Name;Vermittler\n";

fn policies(rows: &[&str]) -> String {
    let mut text = HEADER.to_owned();
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    text
}

fn claims(rows: &[&str]) -> String {
    let mut text = "Schaden;Nr;Datum;Zahlung;Reserve\n".to_owned();
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    text
}

fn ingest(env: &Env, carrier: &str, mapping: &str, name: &str, content: String) {
    let mapping_file = env.write(&format!("{name}.toml"), mapping);
    let file = env.write(&format!("{name}.csv"), content);
    let submission = env.ingest(carrier, &mapping_file, &file);
    assert_eq!(submission["counts"]["rejected"], 0, "{submission}");
}

/// Uploads `content` to the running server as a submission of `carrier` with the stored
/// mapping `mapping`, and waits until the server's worker has completed it.
async fn upload(
    client: &Client,
    server: &Server,
    token: &str,
    carrier: &str,
    mapping: &str,
    content: String,
) {
    let r = client
        .post(server.url(&format!(
            "/v1/carriers/{carrier}/submissions?mapping={mapping}&file_name=feed.csv"
        )))
        .bearer_auth(token)
        .body(content)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s: Value = client
            .get(server.url(&format!("/v1/submissions/{id}")))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if s["status"] == "completed" {
            assert_eq!(s["counts"]["rejected"], 0, "{s}");
            return;
        }
        assert!(Instant::now() < deadline, "submission {id}: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// `keys create` with `args`; returns the token.
fn key(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["keys", "create", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    created["token"].as_str().unwrap().to_owned()
}

async fn live(client: &Client, server: &Server, token: &str, query: &str) -> Value {
    let r = client
        .get(server.url(&format!("/v1/insights/live{query}")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::OK, "{body}");
    body
}

/// The items with their amounts as numbers (amounts are exact decimal strings, written
/// without trailing zeros or with them: compared by value here).
fn lines(body: &Value) -> Vec<Value> {
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{body}"))
        .iter()
        .map(|i| {
            let amount = |k: &str| -> f64 {
                i[k].as_str()
                    .unwrap_or_else(|| panic!("{k} is a decimal string: {i}"))
                    .parse()
                    .unwrap()
            };
            json!({
                "carrier": i["carrier"], "line": i["line_of_business"], "currency": i["currency"],
                "premium_transactions": i["premium_transactions"],
                "premium_written": amount("premium_written"),
                "claims_new": i["claims_new"], "claim_transactions": i["claim_transactions"],
                "claims_incurred": amount("claims_incurred"), "claims_paid": amount("claims_paid"),
            })
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn line(
    carrier: &str,
    line: &str,
    premium_transactions: u64,
    premium_written: f64,
    claims_new: u64,
    claim_transactions: u64,
    claims_incurred: f64,
    claims_paid: f64,
) -> Value {
    json!({
        "carrier": carrier, "line": line, "currency": "EUR",
        "premium_transactions": premium_transactions, "premium_written": premium_written,
        "claims_new": claims_new, "claim_transactions": claim_transactions,
        "claims_incurred": claims_incurred, "claims_paid": claims_paid,
    })
}

/// Polls until the caller's live lines are `expected`; returns how long that took.
async fn until_lines(
    client: &Client,
    server: &Server,
    token: &str,
    query: &str,
    expected: &[Value],
) -> Duration {
    let started = Instant::now();
    loop {
        let body = live(client, server, token, query).await;
        let got = lines(&body);
        if got == expected {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "live{query}: {got:#?}\nexpected {expected:#?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn live_totals_follow_the_events_within_the_scope(env: Env) {
    let admin = key(&env, &["--role", "admin"]);
    let beta = key(&env, &["--role", "carrier", "--carrier", "beta"]);
    let acme_book = key(
        &env,
        &["--role", "analyst", "--carrier", "acme", "--book", "AB12"],
    );
    ingest(
        &env,
        "acme",
        POLICIES,
        "acme-1",
        policies(&[
            "A1;KFZ;01.01.2026;01.01.2027;100,00;Ada;AB12",
            "A2;WG;01.01.2026;01.01.2027;20,00;Bea;ZZ",
            "A3;KFZ;01.01.2026;01.01.2027;30,50;Cy;ZZ",
        ]),
    );
    ingest(
        &env,
        "beta",
        POLICIES,
        "beta-1",
        policies(&["B1;KFZ;01.01.2026;01.01.2027;500,00;Dee;AB12"]),
    );
    ingest(
        &env,
        "acme",
        CLAIMS,
        "acme-claims-1",
        claims(&["S1;A1;02.01.2026;100,00;50,00"]),
    );
    let server = env.serve_with(&["--api-keys"]);
    let client = Client::new();

    // Everything ingested today, once the relay has published it.
    let ingested = [
        line("acme", "homeowners", 1, 20.0, 0, 0, 0.0, 0.0),
        line("acme", "personal_auto", 2, 130.5, 1, 2, 150.0, 100.0),
        line("beta", "personal_auto", 1, 500.0, 0, 0, 0.0, 0.0),
    ];
    until_lines(&client, &server, &admin, "", &ingested).await;
    let body = live(&client, &server, &admin, "").await;
    assert_eq!(
        body["day"],
        chrono::Utc::now().date_naive().to_string(),
        "{body}"
    );
    assert_eq!(body["lag_events"], 0, "{body}");
    // Filters.
    let homeowners = live(&client, &server, &admin, "?line=homeowners").await;
    assert_eq!(lines(&homeowners), [ingested[0].clone()]);
    let acme = live(&client, &server, &admin, "?carrier=acme").await;
    assert_eq!(lines(&acme), ingested[..2]);
    let r = client
        .get(server.url("/v1/insights/live?line=LEBEN"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("line"));

    // Scope: beta's key sees beta only, whatever it asks; the book key sees acme's AB12
    // policy and its claim, not the other book's.
    let mine = live(&client, &server, &beta, "").await;
    assert_eq!(lines(&mine), [ingested[2].clone()]);
    let theirs = live(&client, &server, &beta, "?carrier=acme").await;
    assert_eq!(lines(&theirs), Vec::<Value>::new());
    let book = live(&client, &server, &acme_book, "").await;
    assert_eq!(
        lines(&book),
        [line("acme", "personal_auto", 1, 100.0, 1, 2, 150.0, 100.0)]
    );

    // A second submission: an endorsement (+5), a new policy (7), a payment (+20) on S1,
    // and a new claim with a reserve of 10. The totals move by exactly that, promptly.
    upload(
        &client,
        &server,
        &admin,
        "acme",
        "live-policies",
        policies(&[
            "A1;KFZ;01.01.2026;01.01.2027;100,00;Ada;AB12",
            "A2;WG;01.01.2026;01.01.2027;25,00;Bea;ZZ",
            "A3;KFZ;01.01.2026;01.01.2027;30,50;Cy;ZZ",
            "A4;WG;01.01.2026;01.01.2027;7,00;Eve;ZZ",
        ]),
    )
    .await;
    upload(
        &client,
        &server,
        &admin,
        "acme",
        "live-claims",
        claims(&[
            "S1;A1;02.01.2026;120,00;50,00",
            "S2;A2;03.01.2026;0,00;10,00",
        ]),
    )
    .await;
    let moved = [
        line("acme", "homeowners", 3, 32.0, 1, 1, 10.0, 0.0),
        line("acme", "personal_auto", 2, 130.5, 1, 3, 170.0, 120.0),
        line("beta", "personal_auto", 1, 500.0, 0, 0, 0.0, 0.0),
    ];
    // (Timed from the commit of the last submission.)
    let took = until_lines(&client, &server, &admin, "", &moved).await;
    assert!(took < Duration::from_secs(5), "the totals took {took:?}");
    // Still never anything of acme's for beta.
    let mine = live(&client, &server, &beta, "").await;
    assert_eq!(lines(&mine), [moved[2].clone()]);

    // How far behind the view is, as metrics.
    let metrics = client
        .get(server.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("carrierhub_live_behind_seconds")
            && metrics.contains("carrierhub_live_lag_events 0"),
        "{metrics}"
    );

    // Another API replica on the same database (no relay of its own: it polls) seeds the
    // same totals from the store and follows the same events.
    if env.database_url.is_some() {
        let replica = env.serve_with(&["--api-keys", "--role", "api"]);
        until_lines(&client, &replica, &admin, "", &moved).await;
        upload(
            &client,
            &server,
            &admin,
            "beta",
            "live-policies",
            policies(&[
                "B1;KFZ;01.01.2026;01.01.2027;500,00;Dee;AB12",
                "B2;WG;01.01.2026;01.01.2027;1,25;Fay;AB12",
            ]),
        )
        .await;
        let mut after = moved.to_vec();
        after.insert(2, line("beta", "homeowners", 1, 1.25, 0, 0, 0.0, 0.0));
        for server in [&server, &replica] {
            until_lines(&client, server, &admin, "", &after).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_totals_on_sqlite() {
    live_totals_follow_the_events_within_the_scope(Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_totals_on_postgres() {
    let Some(db) = TestDatabase::create_or_skip("live::live_totals_on_postgres").await else {
        return;
    };
    live_totals_follow_the_events_within_the_scope(Env::with_database(db.url())).await;
}
