//! The HTTP API, driven like a client: uploads, queries, pagination and problem+json errors.

use crate::common;

use carrierhub_synth::generate_portfolio;
use common::{get, response, Env};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

fn assert_problem(
    status: StatusCode,
    content_type: &str,
    body: &Value,
    want: StatusCode,
    detail: &str,
) {
    assert_eq!(status, want, "{body}");
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], want.as_u16());
    assert!(body["type"].is_string() && body["title"].is_string());
    let d = body["detail"].as_str().unwrap();
    assert!(d.contains(detail), "detail '{d}' should mention '{detail}'");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_are_accepted_processed_and_explained() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();

    let (status, _, health) = get(&client, &server, "/healthz").await;
    assert_eq!(
        (status, health["status"].as_str()),
        (StatusCode::OK, Some("ok"))
    );
    let (status, _, _) = get(&client, &server, "/readyz").await;
    assert_eq!(status, StatusCode::OK);

    // A multipart upload with the mapping file itself.
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(common::ACME_FEED.to_vec())
                .file_name("acme-2025-11.csv"),
        )
        .text("mapping_file", common::ACME_MAPPING);
    let r = client
        .post(server.url("/v1/carriers/acme/submissions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    let accepted: Value = r.json().await.unwrap();
    let id = accepted["id"].as_i64().unwrap();
    assert_eq!(location, format!("/v1/submissions/{id}"));

    let done = server.wait_for_submission(&client, id).await;
    assert_eq!(done["status"], "completed");
    assert_eq!(done["counts"]["inserted"], 3);
    assert_eq!(done["counts"]["rejected"], 5);
    let lines: BTreeSet<u64> = done["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, BTreeSet::from([4, 5, 6, 7, 9]));
    let (_, _, page) = get(
        &client,
        &server,
        &format!("/v1/submissions/{id}/errors?limit=2"),
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string());

    // The same payload again as a raw body, naming the mapping the carrier already used.
    let r = client
        .post(server.url("/v1/carriers/acme/submissions?mapping=acme-policies&file_name=again.csv"))
        .body(common::ACME_FEED.to_vec())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let again: Value = r.json().await.unwrap();
    let done = server
        .wait_for_submission(&client, again["id"].as_i64().unwrap())
        .await;
    assert_eq!(done["counts"]["unchanged"], 3);
    assert_eq!(done["counts"]["inserted"], 0);
    assert_eq!(done["document_sha256"], accepted["document_sha256"]);

    let (_, _, carriers) = get(&client, &server, "/v1/carriers").await;
    let acme = &carriers["items"][0];
    assert_eq!(
        (acme["id"].as_str(), acme["policies"].as_i64()),
        (Some("acme"), Some(3))
    );

    // The ISO-8859-1 name arrives intact.
    let (_, _, policies) = get(&client, &server, "/v1/policies?carrier=acme&limit=1").await;
    assert_eq!(policies["items"][0]["insured_name"], "Jürgen Müller");
    assert_eq!(policies["items"][0]["premium"]["amount"], "1234.5");
    assert_eq!(policies["items"][0]["premium"]["currency"], "EUR");
    assert_eq!(policies["items"][0]["line_of_business"]["original"], "KFZ");

    // Refusals are problem+json and name what is wrong.
    for (path, body, want, detail) in [
        (
            "/v1/carriers/acme/submissions?mapping=acme-policies&file_name=scan.png",
            b"\x89PNG\r\n\x1a\n\0\0\0".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "scan.png",
        ),
        (
            "/v1/carriers/acme/submissions?mapping=nope",
            b"a,b\n".to_vec(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "no mapping named 'nope'",
        ),
        (
            "/v1/carriers/Not%20A%20Slug/submissions?mapping=x",
            b"a\n".to_vec(),
            StatusCode::BAD_REQUEST,
            "carrier id",
        ),
    ] {
        let r = client
            .post(server.url(path))
            .body(body)
            .send()
            .await
            .unwrap();
        let (status, content_type, problem) = response(r).await;
        assert_problem(status, &content_type, &problem, want, detail);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_and_claims_are_filtered_and_paged() {
    let env = Env::new();
    let feeds = env.path("feeds");
    let generated = generate_portfolio(&feeds, 120, 5).unwrap();
    let mut total_policies = 0;
    let mut total_claims = 0;
    for g in &generated {
        let p = env.ingest(g.profile.id, &g.policy_mapping_file, &g.policy_file);
        let c = env.ingest(g.profile.id, &g.claim_mapping_file, &g.claim_file);
        total_policies += p["counts"]["inserted"].as_u64().unwrap();
        total_claims += c["counts"]["inserted"].as_u64().unwrap();
    }
    let valid: usize = generated.iter().map(|g| g.policy_truth.valid).sum();
    assert_eq!(total_policies, valid as u64);
    let server = env.serve();
    let client = Client::new();

    // Walking every page with a small limit sees every policy exactly once, in order.
    let mut ids = Vec::new();
    let mut path = "/v1/policies?limit=7".to_owned();
    loop {
        let (status, _, page) = get(&client, &server, &path).await;
        assert_eq!(status, StatusCode::OK);
        ids.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["id"].as_i64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/policies?limit=7&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(ids.len() as u64, total_policies);
    assert!(ids.windows(2).all(|w| w[0] < w[1]));

    // Filters combine; every item matches them.
    let (_, _, page) = get(
        &client,
        &server,
        "/v1/policies?carrier=thames&status=active&line_of_business=cyber&limit=500",
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert!(!items.is_empty());
    assert!(items.iter().all(|p| p["carrier"] == "thames"
        && p["status"]["code"] == "active"
        && p["line_of_business"]["code"] == "cyber"));

    // Claims: all of them, by status, and through their policy.
    let (_, _, claims) = get(&client, &server, "/v1/claims?limit=500").await;
    let claims = claims["items"].as_array().unwrap().clone();
    assert_eq!(claims.len() as u64, total_claims);
    let (_, _, open) = get(&client, &server, "/v1/claims?status=open&limit=500").await;
    let open = open["items"].as_array().unwrap();
    assert!(!open.is_empty() && open.iter().all(|c| c["status"]["code"] == "open"));
    assert_eq!(
        open.len(),
        claims
            .iter()
            .filter(|c| c["status"]["code"] == "open")
            .count()
    );

    let claim = &claims[0];
    let (status, _, policy) = get(
        &client,
        &server,
        &format!("/v1/policies/{}", claim["policy_id"]),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(policy["versions"], 1);
    assert_eq!(policy["number"], claim["policy_number"]);
    assert!(!policy["coverages"].as_array().unwrap().is_empty());
    assert!(policy["claims"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["id"] == claim["id"]));
    assert!(policy["lineage"]["line"].as_u64().unwrap() >= 2);

    // Bad requests name the parameter; unknown things are 404, all as problem+json.
    for (path, want, detail) in [
        (
            "/v1/policies?line_of_business=motor",
            StatusCode::BAD_REQUEST,
            "line_of_business",
        ),
        (
            "/v1/policies?stauts=active",
            StatusCode::BAD_REQUEST,
            "unknown query parameter 'stauts'",
        ),
        (
            "/v1/policies?cursor=forged",
            StatusCode::BAD_REQUEST,
            "cursor",
        ),
        (
            "/v1/policies?limit=100000",
            StatusCode::BAD_REQUEST,
            "limit",
        ),
        (
            "/v1/claims?status=settled",
            StatusCode::BAD_REQUEST,
            "claim status",
        ),
        ("/v1/policies/999999", StatusCode::NOT_FOUND, "999999"),
        ("/v1/policies/abc", StatusCode::NOT_FOUND, "abc"),
        ("/v1/submissions/424242", StatusCode::NOT_FOUND, "424242"),
        ("/v1/nowhere", StatusCode::NOT_FOUND, "/v1/nowhere"),
    ] {
        let (status, content_type, body) = get(&client, &server, path).await;
        assert_problem(status, &content_type, &body, want, detail);
    }
}

#[tokio::test]
async fn source_fields_the_model_lacks_are_kept_returned_and_filterable() {
    let env = Env::new();
    let mapping = env.write("acme.toml", common::ACME_MAPPING);
    let feed = env.write(
        "bestand.csv",
        "Nr;Sparte;Status;Beginn;Ende;Beitrag;Name;Makler-Nr.;Filiale\n\
         P1;KFZ;A;01.01.2025;01.01.2026;10,00;Anna;AB12;Nord\n\
         P2;WG;A;01.01.2025;01.01.2026;20,00;Ben;CD34;\n\
         P3;WG;A;01.01.2025;01.01.2026;30,00;Cem;AB12;Sued\n",
    );
    env.ingest("acme", &mapping, &feed);
    let server = env.serve();
    let client = Client::new();

    let (status, _, page) = get(&client, &server, "/v1/policies?extra.makler_nr=AB12").await;
    assert_eq!(status, 200, "{page}");
    let numbers: Vec<&str> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["P1", "P3"]);
    assert!(page["items"][0].get("extras").is_none(), "only when asked");

    let (_, _, page) = get(
        &client,
        &server,
        "/v1/policies?extra.makler_nr=AB12&extra.filiale=Sued&include=extras",
    )
    .await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        page["items"][0]["extras"],
        serde_json::json!({"filiale": "Sued", "makler_nr": "AB12"})
    );
    let id = page["items"][0]["id"].as_i64().unwrap();
    let (_, _, detail) = get(
        &client,
        &server,
        &format!("/v1/policies/{id}?include=extras"),
    )
    .await;
    assert_eq!(detail["extras"]["makler_nr"], "AB12");
    let (_, _, plain) = get(&client, &server, &format!("/v1/policies/{id}")).await;
    assert!(plain.get("extras").is_none());

    let (status, content_type, problem) =
        get(&client, &server, "/v1/policies?include=everything").await;
    assert_problem(
        status,
        &content_type,
        &problem,
        StatusCode::BAD_REQUEST,
        "unknown 'everything'",
    );
}
