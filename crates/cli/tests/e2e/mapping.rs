//! Onboarding a carrier: a dry run of a mapping that writes nothing, then a fixed mapping
//! replayed over the same submission.

use crate::common;

use common::{counts, get, response, Env, ACME_FEED, ACME_MAPPING};

#[test]
fn mapping_check_reports_samples_errors_unmapped_columns_and_codes_and_writes_nothing() {
    let env = Env::new();
    let mapping = env.write("acme.toml", ACME_MAPPING);
    let feed = env.write("bestand.csv", ACME_FEED);
    let out = env.run(&[
        "mapping",
        "check",
        "--mapping",
        mapping.to_str().unwrap(),
        "--json",
        "--sample",
        "2",
        feed.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(1), "some records are rejected");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["records"], 8);
    assert_eq!(report["mapped"], 3, "{report:#}");
    assert_eq!(report["rejected"], 5);
    assert_eq!(report["sample"].as_array().unwrap().len(), 2);
    assert_eq!(report["sample"][0]["canonical"]["number"], "P1");
    assert_eq!(
        report["sample"][0]["canonical"]["insured"]["name"],
        "Jürgen Müller"
    );
    let errors = report["errors"].as_array().unwrap();
    let find = |field: &str, kind: &str| {
        errors
            .iter()
            .find(|e| e["field"] == field && e["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} error on {field} in {report:#}"))
    };
    let date = find("effective_date", "type");
    assert_eq!(date["count"], 1);
    assert_eq!(date["column"], "Beginn");
    assert_eq!(date["examples"][0]["line"], 5);
    assert!(date["examples"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("31.02.2025"));
    assert_eq!(find("premium", "model")["count"], 1);
    assert_eq!(find("line_of_business", "unknown_code")["count"], 1);
    let unreadable: Vec<_> = errors
        .iter()
        .filter(|e| e["kind"] == "unreadable")
        .collect();
    assert_eq!(
        unreadable
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>(),
        2,
        "the comma row and the cut-off last row"
    );
    assert_eq!(
        report["unmapped_codes"],
        serde_json::json!([{"field": "line_of_business", "column": "Sparte", "value": "LEBEN", "count": 1}])
    );
    assert_eq!(report["unmapped_columns"], serde_json::json!([]));

    // The text report says the same for people.
    let out = env.run(&[
        "mapping",
        "check",
        "--mapping",
        mapping.to_str().unwrap(),
        feed.to_str().unwrap(),
    ]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("nothing was written"), "{text}");
    assert!(text.contains("'LEBEN' ×1"), "{text}");

    // Nothing was written: not even the data directory exists.
    assert!(!env.data_dir().exists());
}

#[test]
fn a_fixed_mapping_replayed_writes_new_versions_only_where_the_result_changed() {
    let env = Env::new();
    let mapping = env.write("acme.toml", ACME_MAPPING);
    let feed = env.write("bestand.csv", ACME_FEED);
    let first = env.ingest("acme", &mapping, &feed);
    assert_eq!(counts(&first), [8, 3, 0, 0, 5]);

    // The carrier explains LEBEN (life) and that WG is contents as well as buildings; the
    // new revision of the mapping changes P2 and P7's line and admits P6.
    let fixed = ACME_MAPPING
        .replace("WG = \"homeowners\"", "WG = \"dwelling_fire\"")
        .replace("[codes.status]", "LEBEN = \"life\"\n\n[codes.status]");
    let fixed_path = env.write("acme-v2.toml", &fixed);
    let id = first["id"].as_i64().unwrap().to_string();
    let out = env.run(&[
        "replay",
        &id,
        "--mapping",
        fixed_path.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replay: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replay["replay_of"], first["id"]);
    assert_eq!(replay["mapping"]["revision"], 2);
    // P1 unchanged; P2 and P7 updated; P6 inserted; the other four still rejected.
    assert_eq!(counts(&replay), [8, 1, 2, 1, 4]);

    // Replaying again with the same mapping changes nothing.
    let out = env.run(&["replay", &id, "--json"]);
    assert!(out.status.success());
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(again["mapping"]["revision"], 2, "the latest revision");
    assert_eq!(counts(&again), [8, 0, 0, 4, 4]);

    let out = env.run(&["replay", "999", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("submission 999 does not exist"));
}

#[tokio::test]
async fn the_api_checks_a_mapping_and_replays_a_submission() {
    let env = Env::new();
    let server = env.serve();
    let client = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .text("mapping_file", ACME_MAPPING)
        .text("carrier", "acme")
        .part(
            "file",
            reqwest::multipart::Part::bytes(ACME_FEED.to_vec()).file_name("bestand.csv"),
        );
    let (status, _, report) = response(
        client
            .post(server.url("/v1/mappings/check?sample=1"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["mapped"], 3);
    assert_eq!(report["rejected"], 5);
    assert_eq!(report["file"], "bestand.csv");
    assert_eq!(report["sample"].as_array().unwrap().len(), 1);
    let (_, _, submissions) = get(&client, &server, "/v1/submissions").await;
    assert_eq!(
        submissions["items"],
        serde_json::json!([]),
        "a dry run writes nothing"
    );

    // A mapping that does not fit is a 422 naming the missing column.
    let form = reqwest::multipart::Form::new()
        .text(
            "mapping_file",
            ACME_MAPPING.replace("\"Beitrag\"", "\"Praemie\""),
        )
        .part("file", reqwest::multipart::Part::bytes(ACME_FEED.to_vec()));
    let (status, content_type, problem) = response(
        client
            .post(server.url("/v1/mappings/check"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(content_type, "application/problem+json");
    assert!(
        problem["detail"].as_str().unwrap().contains("'Praemie'"),
        "{problem}"
    );

    // Upload, then replay it with a fixed mapping sent as the body.
    let form = reqwest::multipart::Form::new()
        .text("mapping_file", ACME_MAPPING)
        .part("file", reqwest::multipart::Part::bytes(ACME_FEED.to_vec()));
    let (status, _, created) = response(
        client
            .post(server.url("/v1/carriers/acme/submissions"))
            .multipart(form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{created}");
    let id = created["id"].as_i64().unwrap();
    let done = server.wait_for_submission(&client, id).await;
    assert_eq!(counts(&done), [8, 3, 0, 0, 5]);
    let fixed = ACME_MAPPING.replace("[codes.status]", "LEBEN = \"life\"\n\n[codes.status]");
    let (status, _, replay) = response(
        client
            .post(server.url(&format!("/v1/submissions/{id}/replay")))
            .header("content-type", "application/toml")
            .body(fixed)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 202, "{replay}");
    assert_eq!(replay["replay_of"], id);
    let done = server
        .wait_for_submission(&client, replay["id"].as_i64().unwrap())
        .await;
    assert_eq!(counts(&done), [8, 1, 0, 3, 4]);
    let (status, _, _) = response(
        client
            .post(server.url("/v1/submissions/77/replay"))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 404);
}

const ACME_CLAIMS: &str = r#"
[mapping]
name = "acme-claims"
carrier = "acme"
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
reserve = { value = "0" }
[[checks]]
rule = "reference_exists"
field = "policy_number"
"#;

#[test]
fn a_dry_run_of_claims_looks_their_policies_up_as_ingestion_would() {
    let env = Env::new();
    let claims = env.write("acme-claims.toml", ACME_CLAIMS);
    let feed = env.write(
        "schaeden.csv",
        "Schaden;Nr;Datum;Zahlung\nS1;P1;02.02.2025;100,00\nS2;P9;03.02.2025;5,00\nS3;P1;04.02.2025;1,00\n",
    );
    let check = |env: &Env| -> serde_json::Value {
        let out = env.run(&[
            "mapping",
            "check",
            "--mapping",
            claims.to_str().unwrap(),
            "--json",
            feed.to_str().unwrap(),
        ]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    // No store yet: no policy is known, so ingestion would reject every claim.
    let report = check(&env);
    assert_eq!(
        (report["mapped"].as_u64(), report["rejected"].as_u64()),
        (Some(0), Some(3))
    );
    assert_eq!(report["references_checked"], true);
    assert!(!env.data_dir().exists(), "a dry run creates no store");

    let mapping = env.write("acme.toml", ACME_MAPPING);
    let policies = env.write("bestand.csv", ACME_FEED);
    env.ingest("acme", &mapping, &policies);
    let report = check(&env);
    assert_eq!(
        (report["mapped"].as_u64(), report["rejected"].as_u64()),
        (Some(2), Some(1))
    );
    let reference = &report["errors"][0];
    assert_eq!(reference["field"], "policy_number");
    assert_eq!(reference["kind"], "reference");
    assert_eq!(reference["examples"][0]["value"], "P9");
    assert_eq!(reference["examples"][0]["line"], 3);

    // The mapping is acme's: a dry run for another carrier is refused like an ingest.
    let out = env.run(&[
        "mapping",
        "check",
        "--carrier",
        "globex",
        "--mapping",
        claims.to_str().unwrap(),
        feed.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("is for carrier 'acme', not 'globex'"));
}

#[test]
fn returning_to_an_earlier_mapping_makes_it_current_again() {
    let env = Env::new();
    let v1 = env.write("acme.toml", ACME_MAPPING);
    let v2 = env.write(
        "acme-v2.toml",
        ACME_MAPPING.replace("[codes.status]", "LEBEN = \"life\"\n\n[codes.status]"),
    );
    let feed = env.write("bestand.csv", ACME_FEED);
    let first = env.ingest("acme", &v1, &feed);
    let second = env.ingest("acme", &v2, &feed);
    let third = env.ingest("acme", &v1, &feed);
    assert_eq!(first["mapping"]["revision"], 1);
    assert_eq!(second["mapping"]["revision"], 2);
    assert_eq!(
        third["mapping"]["revision"], 1,
        "the same text is the same revision"
    );
    // A replay without a mapping uses the current one: revision 1, used last.
    let out = env.run(&["replay", &second["id"].to_string(), "--json"]);
    assert!(out.status.success());
    let replay: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(replay["mapping"]["revision"], 1);
}
