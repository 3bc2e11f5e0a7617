//! The gateway, driven like a client against the real binary: authentication with API keys,
//! roles, the audit log, tenant isolation on every route, conditional GETs and the read
//! cache, and rate limits shared by two API processes through Redis.

use crate::common;

use base64::Engine;
use common::{response, Env, Server};
use reqwest::{Client, StatusCode};
use serde_json::Value;
use std::collections::BTreeSet;

/// Two carriers' policies in two books (producer codes), with a header the mapping reads.
const BOOKED_MAPPING: &str = r#"
[mapping]
name = "booked"
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
status = { column = "Status", codes = "status" }
effective_date = "Beginn"
expiration_date = "Ende"
premium = "Beitrag"
producer = "Vermittler"

[fields.insured]
name = "Name"

[codes.lob]
KFZ = "personal_auto"
WG = "homeowners"

[codes.status]
A = "active"
S = "cancelled"
"#;

fn feed(prefix: &str, premium: &str) -> String {
    format!(
        "Nr;Sparte;Status;Beginn;Ende;Beitrag;Name;Vermittler\n\
         {prefix}1;KFZ;A;01.01.2025;01.01.2026;{premium};Ada;AB12\n\
         {prefix}2;WG;A;01.01.2025;01.01.2026;20,00;Bea;ZZ\n\
         {prefix}3;WG;S;01.01.2025;01.01.2026;30,00;Cy;AB12\n\
         {prefix}4;XX;A;01.01.2025;01.01.2026;40,00;Dee;ZZ\n"
    )
}

/// `keys create` with `args`; returns the token.
fn key(env: &Env, args: &[&str]) -> String {
    let mut all = vec!["keys", "create", "--json"];
    all.extend_from_slice(args);
    let out = env.run(&all);
    assert!(
        out.status.success(),
        "keys create {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let created: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    created["token"].as_str().expect("a token").to_owned()
}

/// GET with a bearer token: status, headers, JSON body (Null when empty).
async fn get_as(
    client: &Client,
    server: &Server,
    token: &str,
    path: &str,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let r = client
        .get(server.url(path))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let (status, headers) = (r.status(), r.headers().clone());
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::Null),
    )
}

fn carriers_of(items: &Value) -> BTreeSet<String> {
    items
        .as_array()
        .unwrap_or_else(|| panic!("a list: {items}"))
        .iter()
        .map(|i| i["carrier"].as_str().unwrap().to_owned())
        .collect()
}

/// Ingests the booked feed for `carrier` and returns its submission id.
fn ingest(env: &Env, carrier: &str, prefix: &str) -> i64 {
    let mapping = env.write("booked.toml", BOOKED_MAPPING);
    let file = env.write(&format!("{carrier}.csv"), feed(prefix, "10,00"));
    env.ingest(carrier, &mapping, &file)["id"].as_i64().unwrap()
}

fn settings(env: &Env, text: &str) -> String {
    env.write("carrierhub.toml", text)
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required_checked_and_every_refusal_is_audited() {
    let env = Env::new();
    ingest(&env, "acme", "A");
    let admin = key(&env, &["--role", "admin"]);
    let analyst = key(&env, &["--role", "analyst"]);
    let revoked = key(&env, &["--role", "admin"]);
    let config = settings(&env, "[auth]\napi_keys = true\nkey_cache_secs = 0\n");
    let server = env.serve_with(&["--config", &config]);
    let client = Client::new();

    // Health needs no key; data does.
    let (status, _, _) = get_as(&client, &server, "", "/healthz").await;
    assert_eq!(status, StatusCode::OK);
    let r = client.get(server.url("/v1/policies")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer realm=\"carrierhub\""));
    let (_, content_type, body) = response(r).await;
    assert_eq!(content_type, "application/problem+json");
    assert_eq!(body["status"], 401);

    // A wrong secret for a real id, a made-up key, a token that is no key: all refused.
    let tampered = format!("{}x", &admin[..admin.len() - 1]);
    for bad in [tampered.as_str(), "chk_aaaaaaaaaaaa_nope", "not-a-key"] {
        let (status, _, body) = get_as(&client, &server, bad, "/v1/policies").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{bad}: {body}");
    }
    // X-Api-Key works as well as Authorization.
    let r = client
        .get(server.url("/v1/policies"))
        .header("x-api-key", &analyst)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);

    // A revoked key stops working.
    let (status, _, _) = get_as(&client, &server, &revoked, "/v1/carriers").await;
    assert_eq!(status, StatusCode::OK);
    let id = revoked.split('_').nth(1).unwrap();
    assert!(env.run(&["keys", "revoke", id]).status.success());
    let (status, _, body) = get_as(&client, &server, &revoked, "/v1/carriers").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(
        body["detail"].as_str().unwrap().contains("revoked"),
        "{body}"
    );

    // Roles: an analyst reads, and may not upload, replay or read the audit log.
    let r = client
        .post(server.url("/v1/carriers/acme/submissions?mapping=booked"))
        .bearer_auth(&analyst)
        .body(feed("A", "11,00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    let (status, _, _) = get_as(&client, &server, &analyst, "/v1/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The admin's upload is a write: audited with who, what and from where.
    let r = client
        .post(server.url("/v1/carriers/acme/submissions?mapping=booked"))
        .bearer_auth(&admin)
        .header("x-request-id", "req-upload-1")
        .body(feed("A", "12,00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    let (status, _, audit) = get_as(&client, &server, &admin, "/v1/audit?limit=100").await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let entries = audit["items"].as_array().unwrap();
    let find = |action: &str, status: u64| {
        entries
            .iter()
            .filter(|e| e["action"] == action && e["status"] == status)
            .collect::<Vec<_>>()
    };
    let upload = find("POST /v1/carriers/{carrier}/submissions", 202);
    assert_eq!(upload.len(), 1, "{audit}");
    assert_eq!(
        upload[0]["actor"],
        format!("key:{}", admin.split('_').nth(1).unwrap())
    );
    assert_eq!(upload[0]["role"], "admin");
    assert_eq!(upload[0]["client"], "127.0.0.1");
    assert_eq!(upload[0]["request_id"], "req-upload-1");
    assert_eq!(upload[0]["target"], "/v1/carriers/acme/submissions");
    assert_eq!(
        find("POST /v1/carriers/{carrier}/submissions", 403).len(),
        1
    );
    assert_eq!(find("GET /v1/audit", 403).len(), 1);
    // The unauthenticated and bad-key requests, and the revoked key's.
    assert_eq!(find("GET /v1/policies", 401).len(), 4, "{audit}");
    assert_eq!(find("GET /v1/carriers", 401).len(), 1);
    let (_, _, denied) = get_as(&client, &server, &admin, "/v1/audit?denied=true&limit=100").await;
    assert!(denied["items"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| [401, 403, 429].contains(&e["status"].as_u64().unwrap())));
    // The key changes made with the CLI are there too.
    assert!(entries.iter().any(|e| e["action"] == "key.revoke"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn development_mode_serves_loopback_only() {
    let env = Env::new();
    let out = env
        .command()
        .args(["serve", "--bind", "0.0.0.0:0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("without authentication"), "{err}");
}

/// Every route, asked by a caller of carrier acme for carrier beta's objects: by id, by
/// filter, by list, by cursor; and by a caller of one book of beta.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_scoped_to_one_carrier_sees_nothing_of_another() {
    let env = Env::new();
    let acme_submission = ingest(&env, "acme", "A");
    let beta_submission = ingest(&env, "beta", "B");
    let admin = key(&env, &["--role", "admin"]);
    let acme = key(&env, &["--role", "carrier", "--carrier", "acme"]);
    let acme_operator = key(&env, &["--role", "operator", "--carrier", "acme"]);
    let beta_book = key(
        &env,
        &["--role", "analyst", "--carrier", "beta", "--book", "AB12"],
    );
    // Private webhook addresses allowed: the webhooks below point at a closed local port.
    let server = env.serve_with(&["--api-keys", "--webhooks-allow-private"]);
    let client = Client::new();

    let (_, _, all) = get_as(&client, &server, &admin, "/v1/policies").await;
    let ids_of = |carrier: &str| -> Vec<i64> {
        all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["carrier"] == carrier)
            .map(|p| p["id"].as_i64().unwrap())
            .collect()
    };
    let (acme_ids, beta_ids) = (ids_of("acme"), ids_of("beta"));
    assert_eq!((acme_ids.len(), beta_ids.len()), (3, 3), "{all}");

    // Lists and counts.
    let (_, _, carriers) = get_as(&client, &server, &acme, "/v1/carriers").await;
    let items = carriers["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{carriers}");
    assert_eq!(
        (items[0]["id"].as_str(), items[0]["policies"].as_i64()),
        (Some("acme"), Some(3))
    );
    for path in [
        "/v1/policies",
        "/v1/policies?carrier=beta",
        "/v1/policies?include=extras",
        "/v1/policies?as_of=2100-01-01",
        "/v1/claims",
        "/v1/claims?carrier=beta",
        "/v1/submissions",
        "/v1/submissions?carrier=beta",
        "/v1/carriers/beta/submissions",
        "/v1/portfolio",
    ] {
        let (status, _, body) = get_as(&client, &server, &acme, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        let seen = carriers_of(&body["items"]);
        assert!(seen.iter().all(|c| c == "acme"), "{path}: {body}");
        assert!(!body.to_string().contains("\"beta\""), "{path}: {body}");
    }
    // By id, on every route that takes one.
    for id in &beta_ids {
        for path in [
            format!("/v1/policies/{id}"),
            format!("/v1/policies/{id}?as_of=2100-01-01"),
            format!("/v1/policies/{id}/versions"),
            format!("/v1/policies/{id}/diff"),
        ] {
            let (status, _, body) = get_as(&client, &server, &acme, &path).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert!(!body.to_string().contains("beta"), "{path}: {body}");
        }
        let (_, _, claims) = get_as(
            &client,
            &server,
            &acme,
            &format!("/v1/claims?policy_id={id}"),
        )
        .await;
        assert_eq!(claims["items"], serde_json::json!([]));
    }
    // The same id answers the same 404 as one that does not exist at all.
    let (_, _, missing) = get_as(&client, &server, &acme, "/v1/policies/999999").await;
    let (_, _, hidden) = get_as(
        &client,
        &server,
        &acme,
        &format!("/v1/policies/{}", beta_ids[0]),
    )
    .await;
    assert_eq!(
        missing["detail"].as_str().unwrap().replace("999999", "N"),
        hidden["detail"]
            .as_str()
            .unwrap()
            .replace(&beta_ids[0].to_string(), "N")
    );
    for path in [
        format!("/v1/submissions/{beta_submission}"),
        format!("/v1/submissions/{beta_submission}/errors"),
    ] {
        let (status, _, body) = get_as(&client, &server, &acme, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
    }
    let (status, _, _) = get_as(
        &client,
        &server,
        &acme,
        &format!("/v1/submissions/{acme_submission}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // Cursor tampering: a cursor that points before every id still pages acme's only.
    for after in [0, beta_ids[0] - 1] {
        let cursor = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("v1:{after}"));
        let (status, _, body) = get_as(
            &client,
            &server,
            &acme,
            &format!("/v1/policies?limit=1&cursor={cursor}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            carriers_of(&body["items"]).iter().all(|c| c == "acme"),
            "{body}"
        );
    }

    // Writes: beta's feed and beta's submission do not exist for acme's callers.
    let r = client
        .post(server.url("/v1/carriers/beta/submissions?mapping=booked"))
        .bearer_auth(&acme)
        .body(feed("B", "99,00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .post(server.url(&format!("/v1/submissions/{beta_submission}/replay")))
        .bearer_auth(&acme_operator)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(feed("B", "1,00").into_bytes()).file_name("b.csv"),
        )
        .text("mapping", "booked")
        .text("carrier", "beta");
    let r = client
        .post(server.url("/v1/mappings/check"))
        .bearer_auth(&acme)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // Its own carrier's feed is accepted.
    let r = client
        .post(server.url("/v1/carriers/acme/submissions?mapping=booked"))
        .bearer_auth(&acme)
        .body(feed("A", "10,00"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);

    // One book of beta: its policies in book AB12, and no submission (they span books).
    let (_, _, policies) = get_as(&client, &server, &beta_book, "/v1/policies").await;
    let numbers: Vec<&str> = policies["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["B1", "B3"], "{policies}");
    let (_, _, subs) = get_as(&client, &server, &beta_book, "/v1/submissions").await;
    assert_eq!(subs["items"], serde_json::json!([]));
    let (status, _, _) = get_as(
        &client,
        &server,
        &beta_book,
        &format!("/v1/submissions/{beta_submission}"),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, _, portfolio) = get_as(&client, &server, &beta_book, "/v1/portfolio").await;
    let policies_seen: u64 = portfolio["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["policies"].as_u64().unwrap())
        .sum();
    assert_eq!(policies_seen, 2, "{portfolio}");
    let (_, _, carriers) = get_as(&client, &server, &beta_book, "/v1/carriers").await;
    assert_eq!(carriers["items"][0]["policies"], 2);
    assert_eq!(carriers["items"][0]["submissions"], 0);

    // Webhooks: another caller's webhook is a 404 like a missing one on every route, never
    // listed; a webhook for a carrier outside the caller's scope is refused and not made.
    let hook = serde_json::json!({ "url": "http://127.0.0.1:9/hook", "carriers": ["beta"] });
    let r = client
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&admin)
        .json(&hook)
        .send()
        .await
        .unwrap();
    let (status, _, created) = response(r).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let beta_hook = created["id"].as_i64().unwrap();
    let (_, _, listed) = get_as(&client, &server, &acme, "/v1/webhooks").await;
    assert_eq!(listed["items"], serde_json::json!([]), "{listed}");
    for path in [
        format!("/v1/webhooks/{beta_hook}"),
        format!("/v1/webhooks/{beta_hook}/deliveries"),
    ] {
        let (status, _, body) = get_as(&client, &server, &acme, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(!body.to_string().contains("beta"), "{path}: {body}");
    }
    let r = client
        .delete(server.url(&format!("/v1/webhooks/{beta_hook}")))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .post(server.url(&format!("/v1/webhooks/{beta_hook}/deliveries/1/redeliver")))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .post(server.url(&format!("/v1/webhooks/{beta_hook}/enable")))
        .bearer_auth(&acme)
        .json(&serde_json::json!({ "since": 0 }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = client
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&acme)
        .json(&hook)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let (_, _, listed) = get_as(&client, &server, &admin, "/v1/webhooks").await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");

    // Live totals: once the events are in, a carrier's key sees its carrier's lines only,
    // whatever it asks for; a book key counts its book's policies only.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let (_, _, live) = get_as(&client, &server, &admin, "/v1/insights/live").await;
        if carriers_of(&live["items"]) == BTreeSet::from(["acme".into(), "beta".into()]) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{live}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (_, _, live) = get_as(&client, &server, &acme, "/v1/insights/live").await;
    assert_eq!(carriers_of(&live["items"]), BTreeSet::from(["acme".into()]));
    let (_, _, live) = get_as(&client, &server, &acme, "/v1/insights/live?carrier=beta").await;
    assert_eq!(live["items"], serde_json::json!([]), "{live}");
    let (_, _, live) = get_as(&client, &server, &beta_book, "/v1/insights/live").await;
    let transactions: u64 = live["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["premium_transactions"].as_u64().unwrap())
        .sum();
    assert_eq!(transactions, 2, "{live}");
    assert_eq!(carriers_of(&live["items"]), BTreeSet::from(["beta".into()]));

    // Admin-only routes are refused, not answered with less.
    let (status, _, _) = get_as(&client, &server, &acme, "/v1/audit").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = get_as(&client, &server, &acme, "/metrics").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

/// Every route that needs credentials, and where its tenant isolation is checked. A new
/// route fails `every_route_has_a_tenant_isolation_check` until it is added here with its
/// checks.
const ISOLATION_CHECKED: &[(&str, &str, &str)] = &[
    ("GET", "/metrics", "admin and operator only: this file"),
    ("GET", "/v1/carriers", "this file"),
    ("GET", "/v1/carriers/{carrier}/submissions", "this file"),
    ("POST", "/v1/carriers/{carrier}/submissions", "this file"),
    ("GET", "/v1/policies", "this file"),
    ("GET", "/v1/policies/{id}", "this file"),
    ("GET", "/v1/policies/{id}/versions", "this file"),
    ("GET", "/v1/policies/{id}/diff", "this file"),
    ("GET", "/v1/claims", "this file"),
    ("GET", "/v1/submissions", "this file"),
    ("GET", "/v1/submissions/{id}", "this file"),
    ("GET", "/v1/submissions/{id}/errors", "this file"),
    ("POST", "/v1/submissions/{id}/replay", "this file"),
    ("POST", "/v1/mappings/check", "this file"),
    ("GET", "/v1/portfolio", "this file"),
    ("GET", "/v1/audit", "admin only: this file"),
    ("GET", "/v1/events", "e2e/events.rs"),
    ("GET", "/v1/webhooks", "this file"),
    ("POST", "/v1/webhooks", "this file and e2e/events.rs"),
    ("GET", "/v1/webhooks/{id}", "this file"),
    ("DELETE", "/v1/webhooks/{id}", "this file"),
    (
        "POST",
        "/v1/webhooks/{id}/enable",
        "this file and e2e/events.rs",
    ),
    ("GET", "/v1/webhooks/{id}/deliveries", "this file"),
    (
        "POST",
        "/v1/webhooks/{id}/deliveries/{delivery}/redeliver",
        "this file",
    ),
    ("POST", "/v1/query", "e2e/warehouse.rs"),
    ("GET", "/v1/insights/premium", "e2e/insights.rs"),
    ("GET", "/v1/insights/in-force", "e2e/insights.rs"),
    ("GET", "/v1/insights/earned", "e2e/insights.rs"),
    ("GET", "/v1/insights/incurred", "e2e/insights.rs"),
    ("GET", "/v1/insights/loss-ratio", "e2e/insights.rs"),
    ("GET", "/v1/insights/frequency-severity", "e2e/insights.rs"),
    ("GET", "/v1/insights/triangles", "e2e/insights.rs"),
    ("GET", "/v1/insights/live", "this file and e2e/live.rs"),
];

#[test]
fn every_route_has_a_tenant_isolation_check() {
    for r in carrierhub_api::openapi::ROUTES.iter().filter(|r| !r.public) {
        assert!(
            ISOLATION_CHECKED
                .iter()
                .any(|(m, p, _)| *m == r.method && *p == r.path),
            "{} {} has no tenant-isolation check: add one to \
             a_caller_scoped_to_one_carrier_sees_nothing_of_another and list it in \
             ISOLATION_CHECKED",
            r.method,
            r.path
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etags_answer_304_and_a_read_after_a_change_is_never_stale() {
    let env = Env::new();
    let submission = ingest(&env, "acme", "A");
    assert!(submission > 0);
    let server = env.serve();
    let client = Client::new();
    let (_, _, list) = get_as(&client, &server, "", "/v1/policies?limit=1").await;
    let id = list["items"][0]["id"].as_i64().unwrap();
    let path = format!("/v1/policies/{id}");

    let (status, headers, first) = get_as(&client, &server, "", &path).await;
    assert_eq!(status, StatusCode::OK);
    let tag = headers["etag"].to_str().unwrap().to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"'),
        "a strong tag: {tag}"
    );
    assert_eq!(headers["cache-control"], "private, no-cache");
    // Twice more (the second from the cache): the same bytes, the same tag.
    for _ in 0..2 {
        let (_, headers, again) = get_as(&client, &server, "", &path).await;
        assert_eq!(
            (headers["etag"].to_str().unwrap(), &again),
            (tag.as_str(), &first)
        );
    }
    let r = client
        .get(server.url(&path))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), tag);
    assert!(r.bytes().await.unwrap().is_empty());
    // Lists are tagged too.
    let (_, headers, _) = get_as(&client, &server, "", "/v1/policies").await;
    assert!(headers.contains_key("etag"));

    // The policy changes: the next read shows it, whatever was cached or tagged.
    let r = client
        .post(server.url("/v1/carriers/acme/submissions?mapping=booked"))
        .body(feed("A", "55,55"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let changed: Value = r.json().await.unwrap();
    server
        .wait_for_submission(&client, changed["id"].as_i64().unwrap())
        .await;
    let r = client
        .get(server.url(&path))
        .header("if-none-match", &tag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_ne!(r.headers()["etag"].to_str().unwrap(), tag);
    let now: Value = r.json().await.unwrap();
    assert_eq!(now["premium"]["amount"], "55.55", "{now}");
    assert_eq!(now["version"], 2);
}

/// The Redis the rate-limit test shares, or `None` (a skip, except under `CI=true`).
fn redis_url() -> Option<String> {
    let url = std::env::var("CARRIERHUB_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned());
    let addr = url
        .trim_start_matches("redis://")
        .rsplit('@')
        .next()
        .unwrap_or_default()
        .split('/')
        .next()
        .unwrap_or_default()
        .to_owned();
    match std::net::TcpStream::connect(&addr) {
        Ok(_) => Some(url),
        Err(e) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("Redis at {addr} is required under CI=true: {e}")
        }
        Err(e) => {
            eprintln!("skipping: no Redis at {addr}: {e}");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_api_processes_share_one_rate_limit_through_redis() {
    let Some(redis) = redis_url() else { return };
    let env = Env::new();
    ingest(&env, "acme", "A");
    let analyst = key(&env, &["--role", "analyst"]);
    let config = settings(
        &env,
        &format!(
            "[auth]\napi_keys = true\n[rate_limits]\nredis_url = \"{redis}\"\n\
             [rate_limits.analyst]\nreads = \"20/60s\"\n"
        ),
    );
    let servers = [
        env.serve_with(&["--role", "api", "--config", &config]),
        env.serve_with(&["--role", "api", "--config", &config]),
    ];
    let client = Client::new();
    let started = std::time::Instant::now();
    let elapsed = std::time::Duration::from_secs(3);
    let mut tasks = Vec::new();
    for (n, server) in servers.iter().enumerate() {
        for _ in 0..2 {
            let (client, url, token) =
                (client.clone(), server.url("/v1/policies"), analyst.clone());
            tasks.push(tokio::spawn(async move {
                let mut seen = Vec::new();
                while started.elapsed() < elapsed {
                    let r = client.get(&url).bearer_auth(&token).send().await.unwrap();
                    let limited = r.status() == StatusCode::TOO_MANY_REQUESTS;
                    if limited {
                        assert!(r.headers().contains_key("retry-after"));
                        assert!(r.headers()["ratelimit-policy"]
                            .to_str()
                            .unwrap()
                            .contains("q=20;w=60"));
                    } else {
                        assert_eq!(r.status(), StatusCode::OK);
                    }
                    seen.push((n, limited));
                }
                seen
            }));
        }
    }
    let mut results = Vec::new();
    for t in tasks {
        results.extend(t.await.unwrap());
    }
    let seconds = started.elapsed().as_secs_f64();
    let allowed = results.iter().filter(|(_, limited)| !limited).count();
    // A burst of 20, then one every 3 s: the two processes together stay within it.
    let bound = 20 + (seconds / 3.0).ceil() as usize;
    assert!(
        allowed <= bound,
        "{allowed} allowed in {seconds:.1} s, bound {bound}"
    );
    assert!(allowed >= 20, "the burst is allowed: {allowed}");
    for n in 0..2 {
        assert!(
            results.iter().any(|(s, limited)| *s == n && *limited),
            "server {n} refused some requests: the budget is shared"
        );
    }
}

mod oidc {
    //! OIDC bearer tokens through the binary: a test identity provider serves a JWKS of a
    //! real RSA key; tokens signed with it carry role and scope.

    use super::*;
    use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use serde_json::json;

    const KEY: &[u8] = include_bytes!("../../../api/tests/fixtures/test-only-rsa-a.pem");
    /// Never published by the provider.
    const OTHER_KEY: &[u8] = include_bytes!("../../../api/tests/fixtures/test-only-rsa-c.pem");
    const ISSUER: &str = "https://id.example.test/realms/hub";

    fn sign(pem: &[u8], kid: &str, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(pem).unwrap()).unwrap()
    }

    fn claims(exp_from_now: i64, carriers: &[&str]) -> Value {
        let now = jsonwebtoken::get_current_timestamp() as i64;
        json!({
            "iss": ISSUER, "aud": "carrierhub", "sub": "sso-user-7",
            "iat": now - 600, "exp": now + exp_from_now,
            "carrierhub_role": "carrier", "carrierhub_carriers": carriers,
        })
    }

    /// Serves `{"keys": [KEY as kid "a"]}` on a free port; returns the JWKS URL.
    async fn identity_provider() -> String {
        let mut jwk =
            Jwk::from_encoding_key(&EncodingKey::from_rsa_pem(KEY).unwrap(), Algorithm::RS256)
                .unwrap();
        jwk.common.key_id = Some("a".into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        let body = json!({ "keys": [jwk] });
        let app = axum::Router::new().route(
            "/jwks",
            axum::routing::get(move || {
                let body = body.clone();
                async move { axum::Json(body) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tokens_carry_role_and_scope_and_bad_ones_are_refused() {
        let env = Env::new();
        ingest(&env, "acme", "A");
        ingest(&env, "beta", "B");
        let jwks = identity_provider().await;
        let config = settings(
            &env,
            &format!(
                "[auth.oidc]\nissuer = \"{ISSUER}\"\naudience = \"carrierhub\"\n\
                 jwks_url = \"{jwks}\"\nleeway_secs = 5\n"
            ),
        );
        let server = env.serve_with(&["--config", &config]);
        let client = Client::new();

        let token = sign(KEY, "a", &claims(300, &["acme"]));
        let (status, _, body) = get_as(&client, &server, &token, "/v1/policies").await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(
            carriers_of(&body["items"]),
            BTreeSet::from(["acme".to_owned()])
        );
        // The carrier role may not replay; API keys are not accepted by this server.
        let r = client
            .post(server.url("/v1/submissions/1/replay"))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
        let (status, _, _) =
            get_as(&client, &server, "chk_aaaaaaaaaaaa_bbbb", "/v1/policies").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        let expired = sign(KEY, "a", &claims(-60, &["acme"]));
        let forged = sign(OTHER_KEY, "a", &claims(300, &["acme", "beta"]));
        let unknown_kid = sign(KEY, "z", &claims(300, &["beta"]));
        let b64 =
            |v: &Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let alg_none = format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": "a"})),
            b64(&claims(300, &["beta"]))
        );
        for (what, bad) in [
            ("expired", expired),
            ("forged", forged),
            ("unknown kid", unknown_kid),
            ("alg none", alg_none),
        ] {
            let (status, _, body) = get_as(&client, &server, &bad, "/v1/policies").await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        }
    }
}

/// `/metrics` counts requests by method, route template and status (a 404 off the routes
/// as `unmatched`, a 401 as well as a 200), and times them in a histogram with buckets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_by_route_and_status_and_timed() {
    let env = Env::new();
    let admin = key(&env, &["--role", "admin"]);
    let server = env.serve_with(&["--api-keys"]);
    let client = Client::new();
    for _ in 0..2 {
        let (status, _, _) = get_as(&client, &server, &admin, "/v1/policies/424242").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (status, _, _) = get_as(&client, &server, &admin, "/v1/carriers").await;
    assert_eq!(status, StatusCode::OK);
    let r = client.get(server.url("/v1/carriers")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let (status, _, _) = get_as(&client, &server, &admin, "/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _, _) = get_as(&client, &server, &admin, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    let text = client
        .get(server.url("/metrics"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let value = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).map(str::trim))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
            .parse()
            .unwrap()
    };
    let requests = |route: &str, status: &str| {
        value(&format!(
            "carrierhub_http_requests_total{{method=\"GET\",route=\"{route}\",status=\"{status}\"}} "
        ))
    };
    assert_eq!(requests("/v1/policies/{id}", "404"), 2.0);
    assert_eq!(requests("/v1/carriers", "200"), 1.0);
    assert_eq!(requests("/v1/carriers", "401"), 1.0);
    assert_eq!(requests("unmatched", "404"), 1.0);
    assert!(!text.contains("424242"), "a raw path became a label");
    assert_eq!(
        value(
            "carrierhub_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/policies/{id}\"} "
        ),
        2.0
    );
    assert_eq!(
        value(
            "carrierhub_http_request_duration_seconds_bucket{method=\"GET\",route=\"/v1/policies/{id}\",le=\"+Inf\"} "
        ),
        2.0
    );
}
