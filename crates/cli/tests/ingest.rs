//! The user's story of `carrierhub ingest`: deliveries, changes, cancellations, re-sends.

mod common;

use carrierhub_synth::{carrier, write_policy_feed, Defects, FeedOptions, PolicyTruth};
use common::{counts, get, Env};
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
