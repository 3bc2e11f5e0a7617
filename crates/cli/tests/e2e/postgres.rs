//! The binary with its store in PostgreSQL (`--database-url`): deliveries, changes and
//! re-sends give the counts and the portfolio the generator's ground truth says, and the
//! same results as the embedded SQLite store. Each run gets a fresh database (see
//! `carrierhub_store::testing`); without a server the test skips with a notice, except under
//! `CI=true`, where it fails.

use crate::common;

use carrierhub_store::testing::TestDatabase;
use carrierhub_synth::{carrier, write_claim_feed, write_policy_feed, Defects, FeedOptions};
use common::{counts, get, Env};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;

const CARRIER: &str = "rheinland";
/// More than one batch (`DEFAULT_BATCH_SIZE`, 5,000 records) per delivery.
const POLICIES: usize = 5_500;

struct Feeds {
    policy_mapping: PathBuf,
    claim_mapping: PathBuf,
    d1: PathBuf,
    d2: PathBuf,
    claims: PathBuf,
}

fn write(dir: &std::path::Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write a feed");
    path
}

fn feeds(dir: &std::path::Path) -> (Feeds, usize, BTreeMap<(String, String, String), Decimal>) {
    let profile = carrier(CARRIER).expect("a synthetic carrier");
    let policy_feed = |delivery| {
        let mut bytes = Vec::new();
        let truth = write_policy_feed(
            &profile,
            &FeedOptions {
                policies: POLICIES,
                seed: 7,
                delivery,
                defects: Defects::default(),
            },
            &mut bytes,
        )
        .expect("generate a policy feed");
        (bytes, truth)
    };
    let (d1, _) = policy_feed(1);
    let (d2, t2) = policy_feed(2);
    let mut claims = Vec::new();
    let claim_truth =
        write_claim_feed(&profile, POLICIES, 7, &mut claims).expect("generate a claim feed");
    assert_eq!(claim_truth.rejected, 0);
    let expected = t2
        .premium_by_line
        .iter()
        .map(|((line, ccy), p)| ((CARRIER.to_owned(), line.clone(), ccy.clone()), *p))
        .collect();
    (
        Feeds {
            policy_mapping: write(dir, "policies.toml", profile.policy_mapping.as_bytes()),
            claim_mapping: write(dir, "claims.toml", profile.claim_mapping.as_bytes()),
            d1: write(dir, "d1.csv", &d1),
            d2: write(dir, "d2.csv", &d2),
            claims: write(dir, "claims.csv", &claims),
        },
        t2.changed_vs_first,
        expected,
    )
}

/// What one backend made of the deliveries: every submission's counts and the portfolio.
#[derive(Debug, PartialEq)]
struct Outcome {
    counts: Vec<[u64; 5]>,
    portfolio: serde_json::Value,
}

fn run_deliveries(env: &Env, feeds: &Feeds, changed: usize, claims: usize) -> Outcome {
    let n = POLICIES as u64;
    let changed = changed as u64;
    let first = env.ingest(CARRIER, &feeds.policy_mapping, &feeds.d1);
    assert_eq!(first["status"], "completed");
    assert_eq!(counts(&first), [n, n, 0, 0, 0]);
    let claimed = env.ingest(CARRIER, &feeds.claim_mapping, &feeds.claims);
    assert_eq!(
        counts(&claimed),
        [claims as u64, claims as u64, 0, 0, 0],
        "every claim finds its policy"
    );
    let second = env.ingest(CARRIER, &feeds.policy_mapping, &feeds.d2);
    assert_eq!(counts(&second), [n, 0, changed, n - changed, 0]);
    let resend = env.ingest(CARRIER, &feeds.policy_mapping, &feeds.d2);
    assert_eq!(counts(&resend), [n, 0, 0, n, 0]);

    let out = env.run(&["portfolio", "--json"]);
    assert!(
        out.status.success(),
        "portfolio failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Outcome {
        counts: [first, claimed, second, resend]
            .iter()
            .map(counts)
            .collect(),
        portfolio: serde_json::from_slice(&out.stdout).expect("portfolio --json prints JSON"),
    }
}

fn premium_by_line(portfolio: &serde_json::Value) -> BTreeMap<(String, String, String), Decimal> {
    portfolio
        .as_array()
        .expect("a list of lines")
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

#[test]
fn deliveries_on_postgres_match_the_truth_and_sqlite() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let Some(database) = runtime.block_on(TestDatabase::create_or_skip(
        "postgres::deliveries_on_postgres_match_the_truth_and_sqlite",
    )) else {
        return;
    };
    let pg = Env::with_database(database.url());
    let (feeds, changed, expected) = feeds(pg.dir.path());
    let claims = {
        let mut bytes = Vec::new();
        write_claim_feed(&carrier(CARRIER).unwrap(), POLICIES, 7, &mut bytes)
            .unwrap()
            .rows
    };

    // `migrate` on the fresh database applies the schema; ingest then finds it current.
    let out = pg.run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("PostgreSQL database") && said.contains("0001 canonical model"),
        "{said}"
    );
    let on_postgres = run_deliveries(&pg, &feeds, changed, claims);
    assert_eq!(
        premium_by_line(&on_postgres.portfolio),
        expected,
        "premium equals the ground truth to the cent"
    );
    // The documents stay in the data directory; the store is not there.
    assert!(pg.data_dir().join("documents").is_dir());
    assert!(!pg.data_dir().join("carrierhub.db").exists());

    let sqlite = Env::new();
    let on_sqlite = run_deliveries(&sqlite, &feeds, changed, claims);
    assert_eq!(
        on_postgres, on_sqlite,
        "both backends give the same results"
    );

    // The API reads the same store.
    let server = pg.serve();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let (status, _, portfolio) = get(&client, &server, "/v1/portfolio").await;
        assert!(status.is_success());
        assert_eq!(portfolio["items"], on_postgres.portfolio);
        let (_, _, page) = get(&client, &server, "/v1/policies?status=cancelled&limit=5").await;
        let first = &page["items"][0];
        let id = first["id"].as_i64().expect("a cancelled policy");
        let (_, _, versions) = get(&client, &server, &format!("/v1/policies/{id}/versions")).await;
        let versions = versions["items"].as_array().expect("versions");
        assert_eq!(versions.len() as i64, first["version"].as_i64().unwrap());
        assert!(versions.last().unwrap()["valid_to"].is_null());
    });
}

#[test]
fn serve_without_migrating_refuses_a_database_behind_the_build() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let Some(database) = runtime.block_on(TestDatabase::create_or_skip(
        "postgres::serve_without_migrating_refuses_a_database_behind_the_build",
    )) else {
        return;
    };
    let env = Env::with_database(database.url());
    let out = env.run(&["serve", "--no-migrate", "--bind", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("schema is behind") && err.contains("carrierhub migrate"),
        "{err}"
    );
    let out = env.run(&["migrate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = env.run(&["migrate"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no migration to apply"));
    // Migrated, the database is current and `--no-migrate` starts.
    let server = env.serve_with(&["--no-migrate"]);
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let ready = client
            .get(server.url("/readyz"))
            .send()
            .await
            .expect("GET /readyz");
        assert!(ready.status().is_success());
    });
}

#[test]
fn a_nul_character_rejects_its_record_not_the_batch() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let Some(database) = runtime.block_on(TestDatabase::create_or_skip(
        "postgres::a_nul_character_rejects_its_record_not_the_batch",
    )) else {
        return;
    };
    let env = Env::with_database(database.url());
    let mapping = env.write("acme.toml", common::ACME_MAPPING);
    // PostgreSQL cannot store U+0000 in text: the record with one is rejected, naming its
    // field, and the rest of the batch is committed. (It comes after the first 8 KiB, which
    // are sniffed: a NUL there makes the file binary.)
    let mut bytes = b"Nr;Sparte;Status;Beginn;Ende;Beitrag;Name\n".to_vec();
    for i in 0..300 {
        bytes.extend(format!("P{i};KFZ;A;01.01.2025;01.01.2026;10,00;Anna\n").bytes());
    }
    bytes.extend(
        b"PX;KFZ;A;01.01.2025;01.01.2026;10,00;B\0b\nPY;KFZ;A;01.01.2025;01.01.2026;10,00;Cem\n",
    );
    let feed = env.write("bestand.csv", bytes);
    let submission = env.ingest("acme", &mapping, &feed);
    assert_eq!(submission["status"], "completed", "{submission}");
    assert_eq!(counts(&submission), [302, 301, 0, 0, 1]);
    let out = env.run(&["errors", &submission["id"].to_string()]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(
            "bestand.csv:302: record 301 field insured.name (column 'Name') value 'B\\0b'"
        ) && text.contains("NUL character"),
        "{text}"
    );
}

#[test]
fn a_worker_with_its_own_data_directory_processes_an_upload_of_the_api() {
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let Some(database) = runtime.block_on(TestDatabase::create_or_skip(
        "postgres::a_worker_with_its_own_data_directory_processes_an_upload_of_the_api",
    )) else {
        return;
    };
    // Two machines on one database: nothing on disk in common.
    let api_machine = Env::with_database(database.url());
    let worker_machine = Env::with_database(database.url());
    let (feeds, _, _) = feeds(api_machine.dir.path());
    let feed = std::fs::read(&feeds.d1).expect("read the feed");
    let api = api_machine.serve_with(&["--role", "api,relay"]);
    let _worker = worker_machine.serve_with(&["--role", "worker"]);

    runtime.block_on(async {
        let client = reqwest::Client::new();
        let form = reqwest::multipart::Form::new()
            .part(
                "file",
                reqwest::multipart::Part::bytes(feed.clone()).file_name("d1.csv"),
            )
            .text(
                "mapping_file",
                std::fs::read_to_string(&feeds.policy_mapping).unwrap(),
            );
        let r = client
            .post(api.url(&format!("/v1/carriers/{CARRIER}/submissions")))
            .multipart(form)
            .send()
            .await
            .expect("upload");
        assert_eq!(r.status(), 202);
        let accepted: serde_json::Value = r.json().await.unwrap();
        let id = accepted["id"].as_i64().unwrap();
        let sha = accepted["document_sha256"].as_str().unwrap().to_owned();

        let done = api.wait_for_submission(&client, id).await;
        assert_eq!(done["status"], "completed", "{done}");
        let n = POLICIES as u64;
        assert_eq!(counts(&done), [n, n, 0, 0, 0]);
        // The worker read the document from the store into its own data directory.
        let fetched = worker_machine
            .data_dir()
            .join("documents/sha256")
            .join(&sha[..2])
            .join(&sha);
        assert!(
            std::fs::read(&fetched).expect("the worker holds the document") == feed,
            "the worker's copy equals the upload"
        );
    });
}
