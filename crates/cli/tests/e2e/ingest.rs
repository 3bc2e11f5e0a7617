//! The user's story of `carrierhub ingest`: deliveries, changes, cancellations, re-sends.

use crate::common;

use carrierhub_synth::{
    carrier, write_claim_feed, write_policy_feed, Defects, FeedOptions, PolicyTruth,
};
use common::{counts, get, Env, Server};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

fn delivery(
    env: &Env,
    carrier_id: &str,
    policies: usize,
    delivery: u32,
) -> (PathBuf, PathBuf, PolicyTruth) {
    let profile = carrier(carrier_id).unwrap();
    let file = env.path(&format!("{carrier_id}-d{delivery}.csv"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let truth = write_policy_feed(
        &profile,
        &FeedOptions {
            policies,
            seed: 11,
            delivery,
            defects: Defects::default(),
        },
        &mut out,
    )
    .unwrap();
    drop(out);
    let mapping = env.write(
        &format!("{carrier_id}-policies.toml"),
        profile.policy_mapping,
    );
    (file, mapping, truth)
}

fn portfolio(env: &Env) -> BTreeMap<(String, String, String), Decimal> {
    let out = env.run(&["portfolio", "--json"]);
    assert!(out.status.success());
    let lines: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    lines
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                (
                    l["carrier"].as_str().unwrap().to_owned(),
                    l["line_of_business"].as_str().unwrap().to_owned(),
                    l["currency"].as_str().unwrap().to_owned(),
                ),
                Decimal::from_str(l["premium"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

fn expected(carrier: &str, truth: &PolicyTruth) -> BTreeMap<(String, String, String), Decimal> {
    truth
        .premium_by_line
        .iter()
        .map(|((line, ccy), p)| ((carrier.to_owned(), line.clone(), ccy.clone()), *p))
        .collect()
}

#[test]
fn a_second_delivery_versions_what_changed_and_a_resend_changes_nothing() {
    let env = Env::new();
    for carrier_id in ["rheinland", "thames"] {
        let (d1, mapping, _) = delivery(&env, carrier_id, 1_200, 1);
        let (d2, _, t2) = delivery(&env, carrier_id, 1_200, 2);
        assert!(
            t2.changed_vs_first >= 100 && t2.cancelled > 0,
            "the generator changes 10% and cancels some"
        );

        let first = env.ingest(carrier_id, &mapping, &d1);
        assert_eq!(first["status"], "completed");
        assert_eq!(counts(&first), [1_200, 1_200, 0, 0, 0]);

        let second = env.ingest(carrier_id, &mapping, &d2);
        let changed = t2.changed_vs_first as u64;
        assert_eq!(counts(&second), [1_200, 0, changed, 1_200 - changed, 0]);

        let resend = env.ingest(carrier_id, &mapping, &d2);
        assert_eq!(counts(&resend), [1_200, 0, 0, 1_200, 0]);
        assert_ne!(
            first["document_sha256"], second["document_sha256"],
            "different payloads have different hashes"
        );
        assert_eq!(second["document_sha256"], resend["document_sha256"]);
    }
    // Premium totals equal the generator's ground truth exactly, to the cent.
    let mut want = expected("rheinland", &delivery(&env, "rheinland", 1_200, 2).2);
    want.extend(expected("thames", &delivery(&env, "thames", 1_200, 2).2));
    assert_eq!(portfolio(&env), want);
}

#[test]
fn versions_and_cancellations_are_visible_through_the_api() {
    let env = Env::new();
    let (d1, mapping, _) = delivery(&env, "northwind", 300, 1);
    let (d2, _, t2) = delivery(&env, "northwind", 300, 2);
    env.ingest("northwind", &mapping, &d1);
    env.ingest("northwind", &mapping, &d2);
    let server = env.serve();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::new();
        let mut cancelled = 0;
        let mut versioned = 0;
        let mut cursor: Option<String> = None;
        loop {
            let mut path = "/v1/policies?carrier=northwind&limit=100".to_owned();
            if let Some(c) = &cursor {
                path.push_str(&format!("&cursor={c}"));
            }
            let (_, _, page) = get(&client, &server, &path).await;
            for p in page["items"].as_array().unwrap() {
                if p["status"]["code"] == "cancelled" {
                    cancelled += 1;
                }
                if p["version"] == 2 {
                    versioned += 1;
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_owned()),
                None => break,
            }
        }
        assert_eq!(cancelled, t2.cancelled);
        assert_eq!(versioned, t2.changed_vs_first);

        // Among the cancelled policies, those cancelled by the second delivery have two
        // versions: the active one, closed, and the cancelled one, current.
        let (_, _, page) = get(&client, &server, "/v1/policies?status=cancelled&limit=500").await;
        let mut newly_cancelled = 0;
        for p in page["items"].as_array().unwrap() {
            let id = p["id"].as_i64().unwrap();
            let (_, _, versions) =
                get(&client, &server, &format!("/v1/policies/{id}/versions")).await;
            let versions = versions["items"].as_array().unwrap();
            assert_eq!(versions.len() as i64, p["version"].as_i64().unwrap());
            let last = versions.last().unwrap();
            assert!(last["valid_to"].is_null());
            assert_eq!(last["record"]["status"]["value"], "cancelled");
            if versions.len() == 2 && versions[0]["record"]["status"]["value"] != "cancelled" {
                newly_cancelled += 1;
                assert!(
                    versions[0]["valid_to"].is_string(),
                    "the previous version is closed, not lost"
                );
                assert_eq!(versions[0]["lineage"]["submission_id"], 1);
                assert_eq!(versions[1]["lineage"]["submission_id"], 2);
                let (_, _, detail) = get(&client, &server, &format!("/v1/policies/{id}")).await;
                assert_eq!(detail["versions"], 2);
                assert_eq!(detail["lineage"]["submission_id"], 2);
            }
        }
        assert!(
            newly_cancelled > 0,
            "delivery 2 cancels some active policies"
        );
    });
}

/// Every item of a paginated list, following `next_cursor`; each page body must say it
/// describes `as_of` (or nothing, for a current read). `as_of` is sent with the first page
/// only: the cursors of an as-of list carry its instant.
async fn all_items(
    client: &reqwest::Client,
    server: &Server,
    path: &str,
    as_of: Option<&str>,
) -> Vec<serde_json::Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("{path}&limit=70");
        match (&cursor, as_of) {
            (None, Some(t)) => url.push_str(&format!("&as_of={t}")),
            (Some(c), _) => url.push_str(&format!("&cursor={c}")),
            (None, None) => {}
        }
        let (status, _, page) = get(client, server, &url).await;
        assert_eq!(status, 200, "{url}: {page}");
        assert_eq!(page["as_of"].as_str(), as_of, "{url}");
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => return items,
        }
    }
}

/// An API portfolio body as (carrier, line, currency) to premium.
fn premium_by_line(body: &serde_json::Value) -> BTreeMap<(String, String, String), Decimal> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                (
                    l["carrier"].as_str().unwrap().to_owned(),
                    l["line_of_business"].as_str().unwrap().to_owned(),
                    l["currency"].as_str().unwrap().to_owned(),
                ),
                Decimal::from_str(l["premium"].as_str().unwrap()).unwrap(),
            )
        })
        .collect()
}

/// What the API showed while delivery 1 was current.
struct Snapshot {
    policies: Vec<serde_json::Value>,
    details: Vec<serde_json::Value>,
    claims: Vec<serde_json::Value>,
    cancelled: usize,
    portfolio: serde_json::Value,
}

#[test]
fn as_of_reads_show_the_book_as_it_was_between_deliveries() {
    let env = Env::new();
    let (d1, mapping, t1) = delivery(&env, "northwind", 300, 1);
    let (d2, _, t2) = delivery(&env, "northwind", 300, 2);
    let profile = carrier("northwind").unwrap();
    let mut claims = Vec::new();
    write_claim_feed(&profile, 300, 11, &mut claims).unwrap();
    let claims = env.write("northwind-claims.csv", claims);
    let claim_mapping = env.write("northwind-claims.toml", profile.claim_mapping);
    let rfc3339 =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let pause = || std::thread::sleep(std::time::Duration::from_millis(20));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = reqwest::Client::new();

    let before = rfc3339(chrono::Utc::now());
    pause();
    env.ingest("northwind", &mapping, &d1);
    env.ingest("northwind", &claim_mapping, &claims);
    let snapshot = {
        let server = env.serve();
        rt.block_on(async {
            let policies =
                all_items(&client, &server, "/v1/policies?carrier=northwind", None).await;
            let mut details = Vec::new();
            for p in &policies {
                let (_, _, detail) =
                    get(&client, &server, &format!("/v1/policies/{}", p["id"])).await;
                details.push(detail);
            }
            let (_, _, portfolio) = get(&client, &server, "/v1/portfolio").await;
            Snapshot {
                cancelled: all_items(&client, &server, "/v1/policies?status=cancelled", None)
                    .await
                    .len(),
                claims: all_items(&client, &server, "/v1/claims?carrier=northwind", None).await,
                policies,
                details,
                portfolio,
            }
        })
    };
    assert_eq!(snapshot.policies.len(), 300);
    assert!(!snapshot.claims.is_empty());
    assert_eq!(
        premium_by_line(&snapshot.portfolio),
        expected("northwind", &t1)
    );
    pause();
    let between = rfc3339(chrono::Utc::now());
    pause();
    env.ingest("northwind", &mapping, &d2);

    // The portfolio as of the instant between the deliveries is delivery 1's truth; now it
    // is delivery 2's, in the API and in the CLI.
    let out = env.run(&["portfolio", "--json", "--as-of", &between]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(lines, snapshot.portfolio["items"]);
    assert_eq!(portfolio(&env), expected("northwind", &t2));
    let out = env.run(&["portfolio", "--as-of", "last tuesday"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--as-of") && stderr.contains("RFC 3339"),
        "{stderr}"
    );

    let server = env.serve();
    rt.block_on(async {
        let (_, _, then) = get(&client, &server, &format!("/v1/portfolio?as_of={between}")).await;
        assert_eq!(then["as_of"], between.as_str());
        assert_eq!(then["items"], snapshot.portfolio["items"]);
        let (_, _, now) = get(&client, &server, "/v1/portfolio").await;
        assert_eq!(premium_by_line(&now), expected("northwind", &t2));
        assert!(
            now.get("as_of").is_none(),
            "a current read names no instant"
        );

        // Lists and details as of then are exactly what the API said then.
        let policies_then = all_items(
            &client,
            &server,
            "/v1/policies?carrier=northwind",
            Some(&between),
        )
        .await;
        assert_eq!(policies_then, snapshot.policies);
        // A cursor belongs to its list: the instant of another is refused.
        let (_, _, first) = get(
            &client,
            &server,
            &format!("/v1/policies?carrier=northwind&limit=10&as_of={between}"),
        )
        .await;
        let cursor = first["next_cursor"].as_str().unwrap();
        let (status, _, problem) = get(
            &client,
            &server,
            &format!("/v1/policies?carrier=northwind&limit=10&as_of=2020-01-01&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, 400);
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("belongs to the list as of"),
            "{problem}"
        );
        let (_, _, current) =
            get(&client, &server, "/v1/policies?carrier=northwind&limit=10").await;
        let current_cursor = current["next_cursor"].as_str().unwrap();
        let (status, _, _) = get(
            &client,
            &server,
            &format!(
                "/v1/policies?carrier=northwind&limit=10&as_of={between}&cursor={current_cursor}"
            ),
        )
        .await;
        assert_eq!(status, 400, "a current list's cursor with an instant");
        for detail in &snapshot.details {
            let id = &detail["id"];
            let path = format!("/v1/policies/{id}?as_of={between}");
            let (status, _, mut then) = get(&client, &server, &path).await;
            assert_eq!(status, 200, "{path}: {then}");
            assert_eq!(then["as_of"], between.as_str());
            then.as_object_mut().unwrap().remove("as_of");
            assert_eq!(&then, detail, "{path}");
        }
        let claims_then = all_items(
            &client,
            &server,
            "/v1/claims?carrier=northwind",
            Some(&between),
        )
        .await;
        assert_eq!(claims_then, snapshot.claims);

        // Filters apply to the status each policy had then.
        let cancelled_then = all_items(
            &client,
            &server,
            "/v1/policies?status=cancelled",
            Some(&between),
        )
        .await;
        assert_eq!(cancelled_then.len(), snapshot.cancelled);
        assert_eq!(snapshot.cancelled, t1.cancelled);
        let cancelled_now =
            all_items(&client, &server, "/v1/policies?status=cancelled", None).await;
        assert_eq!(cancelled_now.len(), t2.cancelled);
        assert!(t2.cancelled > t1.cancelled, "delivery 2 cancels policies");
        let versions_then: Vec<&serde_json::Value> =
            policies_then.iter().map(|p| &p["version"]).collect();
        assert!(versions_then.iter().all(|v| **v == 1));

        // Before delivery 1 nothing existed: an empty list, and a detail that says so.
        let before_d1 = all_items(
            &client,
            &server,
            "/v1/policies?carrier=northwind",
            Some(&before),
        )
        .await;
        assert!(before_d1.is_empty());
        let id = &snapshot.policies[0]["id"];
        let (status, content_type, problem) = get(
            &client,
            &server,
            &format!("/v1/policies/{id}?as_of={before}"),
        )
        .await;
        assert_eq!(status, 404);
        assert_eq!(content_type, "application/problem+json");
        let detail = problem["detail"].as_str().unwrap();
        assert!(detail.contains("did not exist yet"), "{detail}");
        let (status, _, problem) =
            get(&client, &server, "/v1/policies/999999?as_of=2026-01-01").await;
        assert_eq!(status, 404);
        assert_eq!(problem["detail"], "no policy with id '999999'");

        // A date alone is midnight UTC; anything else that is not RFC 3339 is refused.
        let (status, _, body) = get(&client, &server, "/v1/portfolio?as_of=2000-01-01").await;
        assert_eq!(status, 200);
        assert_eq!(body["as_of"], "2000-01-01T00:00:00Z");
        assert_eq!(body["items"], serde_json::json!([]));
        for (path, bad) in [
            ("/v1/policies?as_of=", "yesterday"),
            ("/v1/claims?as_of=", "2025-12-01T00:00:00"),
            ("/v1/portfolio?as_of=", "01.12.2025"),
            ("/v1/policies/1?as_of=", "2025-12-01T00:00:00 01:00"),
        ] {
            let (status, _, problem) = get(&client, &server, &format!("{path}{bad}")).await;
            assert_eq!(status, 400, "{path}{bad}: {problem}");
            let detail = problem["detail"].as_str().unwrap();
            assert!(
                detail.starts_with("query parameter 'as_of':") && detail.contains("RFC 3339"),
                "{detail}"
            );
        }
        let (_, _, problem) = get(
            &client,
            &server,
            "/v1/policies/1?as_of=2025-12-01T00:00:00+01:00",
        )
        .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("%2B"),
            "{problem}"
        );
        let (status, _, _) = get(
            &client,
            &server,
            "/v1/policies/1?as_of=2025-12-01T00:00:00%2B01:00",
        )
        .await;
        assert_eq!(status, 404, "a valid offset, before the policy existed");
    });
}
