//! Readiness and graceful shutdown, driving the binary:
//!
//! - `/readyz` names its checks (database, migrations, broker, shutdown) and answers 503 when
//!   one fails: a schema migrated by a "newer release", a NATS server gone; a worker-only
//!   process answers it on its admin port;
//! - SIGTERM while a worker is in the middle of a large submission: the process exits 0
//!   within the grace period, leaving the submission after a committed batch, and after a
//!   restart the store holds every record exactly once (the same tables as an
//!   uninterrupted ingest of the file);
//! - SIGTERM while an upload is being streamed slowly: `/readyz` answers 503 (draining), new
//!   connections are refused once the delay is over, and the upload still gets its 202.

use crate::common;

use common::{Env, Server};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn store_of(env: &Env) -> String {
    env.data_dir().join("carrierhub.db").display().to_string()
}

async fn sqlite(path: &str) -> sqlx::SqlitePool {
    sqlx::SqlitePool::connect(&format!("sqlite://{path}"))
        .await
        .expect("open the SQLite store")
}

async fn readyz(client: &reqwest::Client, url: &str) -> (StatusCode, Value) {
    let r = client.get(url).send().await.expect("GET /readyz");
    let status = r.status();
    (status, r.json().await.expect("a JSON body"))
}

fn check<'a>(body: &'a Value, name: &str) -> &'a str {
    body["checks"][name]["status"]
        .as_str()
        .unwrap_or_else(|| panic!("no check {name} in {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_its_checks_and_fails_on_a_schema_this_build_does_not_know() {
    let env = Env::new();
    let server = env.serve();
    let client = reqwest::Client::new();
    let (status, body) = readyz(&client, &server.url("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    for name in ["database", "migrations", "broker", "shutdown"] {
        assert_eq!(check(&body, name), "ok", "{body}");
    }

    // A worker-only process answers on its admin port.
    let worker = env.serve_with(&["--role", "worker"]);
    let (status, body) = readyz(&client, &worker.url("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(check(&body, "broker"), "ok", "{body}");

    // A newer release migrates the database: this build must stop taking traffic.
    let pool = sqlite(&store_of(&env)).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time) \
         VALUES (9999, 'from a newer release', 1, x'00', 1)",
    )
    .execute(&pool)
    .await
    .unwrap();
    for server in [&server, &worker] {
        let (status, body) = readyz(&client, &server.url("/readyz")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert_eq!(body["status"], "not_ready");
        assert_eq!(check(&body, "migrations"), "failing", "{body}");
        assert!(
            body["checks"]["migrations"]["detail"]
                .as_str()
                .unwrap()
                .contains("9999"),
            "{body}"
        );
        assert_eq!(check(&body, "database"), "ok", "{body}");
        // Liveness is not readiness.
        let health = client.get(server.url("/healthz")).send().await.unwrap();
        assert_eq!(health.status(), StatusCode::OK);
    }
    sqlx::query("DELETE FROM _sqlx_migrations WHERE version = 9999")
        .execute(&pool)
        .await
        .unwrap();
    let (status, body) = readyz(&client, &server.url("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_fails_while_the_nats_server_is_down() {
    let Some(mut nats) = carrierhub_broker::testing::NatsServer::start_or_skip() else {
        return;
    };
    let env = Env::new();
    let server = env.serve_with(&["--broker", &nats.url()]);
    let client = reqwest::Client::new();
    let (status, body) = readyz(&client, &server.url("/readyz")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(check(&body, "broker"), "ok", "{body}");
    nats.kill();
    let (status, body) = readyz(&client, &server.url("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(check(&body, "broker"), "failing", "{body}");
    assert_eq!(check(&body, "database"), "ok", "{body}");
    nats.start();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = readyz(&client, &server.url("/readyz")).await;
        if status == StatusCode::OK {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A large policy feed of one carrier and its mapping, from `carrierhub gen`.
fn large_feed(dir: &Path, policies: usize) -> (String, PathBuf, PathBuf) {
    let out = Command::new(common::BIN)
        .args(["gen", "--out"])
        .arg(dir)
        .args([
            "--policies",
            &policies.to_string(),
            "--defect-rate",
            "0.002",
        ])
        .args(["--carrier", "northwind", "--no-claims"])
        .output()
        .expect("run gen");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The delimited feed: the one streamed fastest, so the test is about the shutdown.
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let feed = names
        .iter()
        .find(|n| n.contains("-policies.") && n.ends_with(".csv"))
        .unwrap_or_else(|| panic!("no CSV policy feed in {names:?}"));
    let carrier = feed.split("-policies.").next().unwrap().to_owned();
    let mapping = dir.join(format!("{carrier}-policies.toml"));
    (carrier, mapping, dir.join(feed))
}

/// The canonical rows a submission leaves, sorted, for comparing two stores.
async fn canonical_rows(store: &str) -> Vec<String> {
    let pool = sqlite(store).await;
    let mut rows = Vec::new();
    for sql in [
        "SELECT 'v ' || p.carrier_id || '/' || p.policy_number || '#' || v.version || ':' || v.content_hash \
         FROM policy_versions v JOIN policies p ON p.id = v.policy_id",
        "SELECT 't ' || p.carrier_id || '/' || p.policy_number || ' ' || t.kind || ' ' || CAST(t.amount AS TEXT) \
         FROM premium_transactions t JOIN policies p ON p.id = t.policy_id",
        "SELECT 'r ' || r.record_number || ':' || COALESCE(r.field, '') FROM rejections r",
        "SELECT 'e ' || event_type || ' ' || subject_id FROM outbox WHERE event_type NOT LIKE 'submission.%'",
    ] {
        let part: Vec<String> = sqlx::query_scalar(sql).fetch_all(&pool).await.unwrap();
        rows.extend(part);
    }
    pool.close().await;
    rows.sort();
    rows
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_an_ingest_exits_0_and_the_restart_commits_every_record_once() {
    let feeds = tempfile::tempdir().unwrap();
    let (carrier, mapping, feed) = large_feed(feeds.path(), 40_000);

    // The reference: the same file ingested without interruption.
    let reference = Env::new();
    let done = reference.ingest(&carrier, &mapping, &feed);
    let records = done["counts"]["received"].as_u64().unwrap();
    let want = canonical_rows(&store_of(&reference)).await;

    let env = Env::new();
    let grace = 30;
    let mut server = env.serve_with(&["--shutdown-grace-secs", &grace.to_string()]);
    let client = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(std::fs::read(&feed).unwrap())
                .file_name(feed.file_name().unwrap().to_string_lossy().into_owned()),
        )
        .text("mapping_file", std::fs::read_to_string(&mapping).unwrap());
    let r = client
        .post(server.url(&format!("/v1/carriers/{carrier}/submissions")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let id = r.json::<Value>().await.unwrap()["id"].as_i64().unwrap();

    // Wait until the worker has committed a batch, then SIGTERM.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, _, s) = common::get(&client, &server, &format!("/v1/submissions/{id}")).await;
        assert_ne!(s["status"], "completed", "finished before the signal: {s}");
        if s["status"] == "processing" && s["counts"]["received"].as_u64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "never processing: {s}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.terminate();
    let (status, took) = server
        .wait_exit(Duration::from_secs(grace + 10))
        .expect("the process did not exit after SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    assert!(took < Duration::from_secs(grace), "took {took:?}");

    // Interrupted after a committed batch, its claim handed back.
    let pool = sqlite(&store_of(&env)).await;
    let (state, through, lease_until): (String, i64, Option<String>) = sqlx::query_as(
        "SELECT status, committed_through, lease_until FROM submissions WHERE id = ?",
    )
    .bind(id)
    .fetch_one(&pool)
    .await
    .unwrap();
    pool.close().await;
    assert_eq!(state, "processing", "the shutdown did not interrupt it");
    assert!(
        through > 0 && (through as u64) < records,
        "committed through {through} of {records}"
    );
    let released = lease_until
        .as_deref()
        .is_some_and(|u| u <= chrono::Utc::now().to_rfc3339().as_str());
    assert!(released, "the claim was not handed back: {lease_until:?}");
    eprintln!("SIGTERM after record {through} of {records}; exit 0 in {took:?}");

    // The restart resumes after the last committed batch.
    let restarted = env.serve();
    let done = restarted.wait_for_submission(&client, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["received"].as_u64(), Some(records), "{done}");
    let got = canonical_rows(&store_of(&env)).await;
    assert_eq!(got.len(), want.len(), "rows after the restart");
    assert!(
        got == want,
        "the restarted ingest differs from an uninterrupted one"
    );
}

/// A multipart upload of the small ACME feed, as raw HTTP/1.1, in two halves.
fn slow_upload(carrier: &str) -> (Vec<u8>, Vec<u8>) {
    let boundary = "carrierhub-test-boundary";
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"mapping_file\"\r\n\r\n{}\r\n",
            common::ACME_MAPPING
        )
        .as_bytes(),
    );
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"acme.csv\"\r\n\
             Content-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(common::ACME_FEED);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let head = format!(
        "POST /v1/carriers/{carrier}/submissions HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let mut first = head.into_bytes();
    let split = body.len() / 2;
    first.extend_from_slice(&body[..split]);
    (first, body[split..].to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_a_slow_upload_drains_it_and_readyz_says_so() {
    let env = Env::new();
    let delay = 2;
    let mut server = env.serve_with(&["--shutdown-delay-secs", &delay.to_string()]);
    let client = reqwest::Client::new();
    let address = server.base.trim_start_matches("http://").to_owned();

    let (first, rest) = slow_upload("acme");
    let mut upload = tokio::net::TcpStream::connect(&address).await.unwrap();
    upload.write_all(&first).await.unwrap();
    upload.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    server.terminate();
    let signalled = Instant::now();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Draining: readiness fails at once, while the listener still accepts for the delay.
    let (status, body) = readyz(&client, &server.url("/readyz")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(check(&body, "shutdown"), "draining", "{body}");
    assert_eq!(check(&body, "database"), "ok", "{body}");

    // After the delay, new connections are refused; the upload is still in flight.
    let after_delay = signalled + Duration::from_secs(delay) + Duration::from_millis(700);
    tokio::time::sleep_until(after_delay.into()).await;
    let refused = reqwest::Client::new()
        .get(server.url("/healthz"))
        .timeout(Duration::from_secs(2))
        .send()
        .await;
    assert!(
        refused.is_err(),
        "a new request was accepted after the delay: {refused:?}"
    );

    // The rest of the body, slowly; the request gets its normal answer.
    for chunk in rest.chunks(64) {
        upload.write_all(chunk).await.unwrap();
        upload.flush().await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut response = Vec::new();
    upload.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(
        response.starts_with("HTTP/1.1 202"),
        "the upload's answer: {response}"
    );
    let json = &response[response.find('{').expect("a JSON body")..];
    let id = serde_json::from_str::<Value>(json).unwrap()["id"]
        .as_i64()
        .unwrap();

    let (status, took) = server
        .wait_exit(Duration::from_secs(30))
        .expect("the process did not exit after SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status}");
    eprintln!(
        "exit 0 {:?} after SIGTERM ({took:?} after the upload's answer was read)",
        signalled.elapsed()
    );

    // The accepted upload is processed after the restart.
    let restarted: Server = env.serve();
    let done = restarted.wait_for_submission(&client, id).await;
    assert_eq!(done["status"], "completed", "{done}");
    assert_eq!(done["counts"]["inserted"], 3, "{done}");
    assert_eq!(done["counts"]["rejected"], 5, "{done}");
}
