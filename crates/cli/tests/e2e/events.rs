//! Change events leaving CarrierHub, driven against the real binary: the `/v1/events` stream
//! (resumption, scope, live delivery) and webhooks (signatures verified by the
//! `standardwebhooks` Python package, retries, deduplication, a delivering process killed
//! mid-delivery, refused private addresses), on SQLite and PostgreSQL.
//!
//! The webhook receiver is `webhook_receiver.py`, run by the Python named in
//! `CARRIERHUB_TEST_PYTHON` (default `python3`) with `standardwebhooks` installed (`.ci/run`
//! makes such a virtual environment). Without it the webhook tests are skipped with a notice,
//! except under `CI=true`, where that is a failure.

use crate::common;

use carrierhub_store::testing::{running_in_ci, TestDatabase};
use common::{Env, Server};
use reqwest::{Client, StatusCode};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

// ---------------------------------------------------------------------------------------------
// Server-Sent Events

#[derive(Debug, Clone, PartialEq)]
struct SseEvent {
    id: i64,
    event: String,
    data: Value,
}

/// Reads an event stream as a browser's EventSource would.
struct SseReader {
    response: reqwest::Response,
    buffer: String,
}

impl SseReader {
    async fn open(client: &Client, url: &str, token: Option<&str>, last: Option<i64>) -> Self {
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(last) = last {
            request = request.header("last-event-id", last.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK, "GET {url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "GET {url}"
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event, or `None` when none comes within `wait`.
    async fn next(&mut self, wait: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let (mut id, mut event, mut data) = (None, None, String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                match (id, event) {
                    (Some(id), Some(event)) => {
                        return Some(SseEvent {
                            id,
                            event,
                            data: serde_json::from_str(&data).unwrap(),
                        })
                    }
                    // A keep-alive comment.
                    _ => continue,
                }
            }
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None)) => panic!("the event stream ended"),
                Ok(Err(e)) => panic!("the event stream failed: {e}"),
                Err(_) => return None,
            }
        }
    }

    /// Events until `idle` passes without one.
    async fn drain(&mut self, idle: Duration) -> Vec<SseEvent> {
        let mut out = Vec::new();
        while let Some(e) = self.next(idle).await {
            out.push(e);
        }
        out
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

fn ingest(env: &Env, carrier: &str) {
    let mapping = env.write("acme.toml", common::ACME_MAPPING);
    let file = env.write(&format!("{carrier}.csv"), common::ACME_FEED);
    env.ingest(carrier, &mapping, &file);
}

fn ids(events: &[SseEvent]) -> Vec<i64> {
    events.iter().map(|e| e.id).collect()
}

async fn the_event_stream_resumes_without_gaps_or_repeats_and_keeps_to_the_scope(env: Env) {
    let admin = key(&env, &["--role", "admin"]);
    let acme = key(&env, &["--role", "carrier", "--carrier", "acme"]);
    ingest(&env, "acme");
    ingest(&env, "beta");
    let server = env.serve_with(&["--api-keys"]);
    let client = Client::new();
    let url = |q: &str| server.url(&format!("/v1/events{q}"));
    let idle = Duration::from_secs(2);

    // Everything, in one go (the relay publishes what the ingests wrote).
    let mut all = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while all.len() < 2
        || all
            .iter()
            .filter(|e: &&SseEvent| e.event == "submission.completed")
            .count()
            < 2
    {
        assert!(Instant::now() < deadline, "events not published: {all:?}");
        let mut reader = SseReader::open(&client, &url("?after=0"), Some(&admin), None).await;
        all = reader.drain(idle).await;
    }
    let carriers: BTreeSet<&str> = all
        .iter()
        .map(|e| e.data["carrier"].as_str().unwrap())
        .collect();
    assert_eq!(carriers, BTreeSet::from(["acme", "beta"]));
    for e in &all {
        assert_eq!(e.data["id"], format!("event-{}", e.id));
        assert_eq!(e.data["type"], e.event);
    }
    assert_eq!(
        ids(&all).iter().collect::<BTreeSet<_>>().len(),
        all.len(),
        "an event twice"
    );

    // Read three, disconnect, resume with Last-Event-ID: nothing missed, nothing twice.
    let mut reader = SseReader::open(&client, &url("?after=0"), Some(&admin), None).await;
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(reader.next(idle).await.expect("an event"));
    }
    drop(reader);
    let last = seen.last().unwrap().id;
    let mut resumed = SseReader::open(&client, &url(""), Some(&admin), Some(last)).await;
    seen.extend(resumed.drain(idle).await);
    assert_eq!(ids(&seen), ids(&all));
    // `?after=` is the same position.
    let mut after =
        SseReader::open(&client, &url(&format!("?after={last}")), Some(&admin), None).await;
    assert_eq!(ids(&after.drain(idle).await), ids(&all[3..]));

    // A carrier's key sees only its carrier's events, whatever it asks for.
    let mut mine = SseReader::open(&client, &url("?after=0"), Some(&acme), None).await;
    let mine = mine.drain(idle).await;
    let expected: Vec<i64> = all
        .iter()
        .filter(|e| e.data["carrier"] == "acme")
        .map(|e| e.id)
        .collect();
    assert_eq!(ids(&mine), expected);
    let mut other =
        SseReader::open(&client, &url("?after=0&carrier=beta"), Some(&acme), None).await;
    assert!(
        other.drain(idle).await.is_empty(),
        "beta's events reached acme's key"
    );
    // Filters by type.
    let mut typed = SseReader::open(
        &client,
        &url("?after=0&types=submission.completed,submission.failed"),
        Some(&admin),
        None,
    )
    .await;
    let typed = typed.drain(idle).await;
    assert_eq!(typed.len(), 2);
    assert!(typed.iter().all(|e| e.event == "submission.completed"));

    // Live: a stream opened without a position gets the events published from then on,
    // promptly; the carrier's stream gets only its own.
    let mut live = SseReader::open(&client, &url(""), Some(&admin), None).await;
    let mut live_acme = SseReader::open(&client, &url(""), Some(&acme), None).await;
    let started = Instant::now();
    ingest(&env, "beta");
    let first = live
        .next(Duration::from_secs(10))
        .await
        .expect("a live event");
    assert_eq!(first.data["carrier"], "beta");
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(!ids(&all).contains(&first.id));
    assert!(live_acme.drain(idle).await.is_empty());

    // An unknown position and an unknown parameter are refused, naming them.
    let r = client
        .get(url(""))
        .bearer_auth(&admin)
        .header("last-event-id", "999999")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert!(r.text().await.unwrap().contains("999999"));
    let r = client
        .get(url("?since=1"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // Without credentials: 401.
    let r = client.get(url("")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_on_sqlite() {
    the_event_stream_resumes_without_gaps_or_repeats_and_keeps_to_the_scope(Env::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_stream_on_postgres() {
    let Some(db) = TestDatabase::create_or_skip("events::event_stream_on_postgres").await else {
        return;
    };
    the_event_stream_resumes_without_gaps_or_repeats_and_keeps_to_the_scope(Env::with_database(
        db.url(),
    ))
    .await;
}

// ---------------------------------------------------------------------------------------------
// Webhooks

/// The Python that runs the receiver, when it has `standardwebhooks`.
fn python() -> Option<String> {
    let python = std::env::var("CARRIERHUB_TEST_PYTHON")
        .ok()
        .filter(|p| !p.trim().is_empty())
        .unwrap_or_else(|| "python3".into());
    let ok = Command::new(&python)
        .args(["-c", "import standardwebhooks"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    let message = format!(
        "{python} cannot import standardwebhooks: set CARRIERHUB_TEST_PYTHON to a Python that \
         has it (pip install standardwebhooks; .ci/run makes one)"
    );
    if running_in_ci() {
        panic!("{message}");
    }
    eprintln!("skipping the webhook test: {message}");
    None
}

/// The receiver process (`webhook_receiver.py`).
struct Receiver {
    child: Child,
    url: String,
    secret_file: PathBuf,
    log: PathBuf,
}

impl Receiver {
    fn start(python: &str, env: &Env, options: &[&str]) -> Self {
        let secret_file = env.path("receiver-secret");
        let log = env.path("receiver.jsonl");
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/e2e/webhook_receiver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg("--secret-file")
            .arg(&secret_file)
            .arg("--log")
            .arg(&log)
            .args(options)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the receiver");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("receiver said {line:?}"));
        Self {
            child,
            url: format!("http://127.0.0.1:{port}/hook"),
            secret_file,
            log,
        }
    }

    fn lines(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Creates a webhook to `receiver` (as `token`, or the development caller); returns it.
async fn create_webhook(
    client: &Client,
    server: &Server,
    token: Option<&str>,
    receiver: &Receiver,
    body: Value,
) -> Value {
    let mut body = body;
    body["url"] = json!(receiver.url);
    let mut request = client.post(server.url("/v1/webhooks")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    let created: Value = r.json().await.unwrap();
    assert_eq!(status, StatusCode::CREATED, "{created}");
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    std::fs::write(&receiver.secret_file, secret).unwrap();
    created
}

async fn deliveries(client: &Client, server: &Server, token: Option<&str>, id: i64) -> Vec<Value> {
    let mut request = client.get(server.url(&format!("/v1/webhooks/{id}/deliveries?limit=500")));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let page: Value = request.send().await.unwrap().json().await.unwrap();
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .clone()
}

/// Waits until every delivery of webhook `id` is delivered (at least `at_least` of them).
async fn all_delivered(
    client: &Client,
    server: &Server,
    token: Option<&str>,
    id: i64,
    at_least: usize,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let items = deliveries(client, server, token, id).await;
        if items.len() >= at_least && items.iter().all(|d| d["status"] == "delivered") {
            return items;
        }
        assert!(Instant::now() < deadline, "not delivered: {items:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the receiver applied: event id → times (each must be once), after checking that
/// every request it got was verified.
fn effects(receiver: &Receiver) -> BTreeMap<String, usize> {
    let mut applied = BTreeMap::new();
    for line in receiver.lines() {
        if line.get("received").is_some() {
            continue;
        }
        assert_eq!(
            line["verified"], true,
            "a request failed verification: {line}"
        );
        let entry = applied
            .entry(line["id"].as_str().unwrap().to_owned())
            .or_insert(0);
        if line["applied"] == true {
            *entry += 1;
        }
    }
    applied
}

async fn webhooks_are_signed_retried_scoped_and_applied_once(env: Env, python: &str) {
    let acme = key(&env, &["--role", "carrier", "--carrier", "acme"]);
    let admin = key(&env, &["--role", "admin"]);
    let receiver = Receiver::start(python, &env, &["--fail-first", "2"]);
    let server = env.serve_with(&[
        "--api-keys",
        "--webhooks-allow-private",
        "--webhook-backoff-ms",
        "100",
    ]);
    let client = Client::new();
    let created = create_webhook(&client, &server, Some(&acme), &receiver, json!({})).await;
    let id = created["id"].as_i64().unwrap();
    assert_eq!(created["scope"]["carriers"], json!(["acme"]));
    // Shown once: never again.
    let shown: Value = client
        .get(server.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(shown.get("secret").is_none(), "{shown}");
    // Asking for another carrier's events is refused.
    let r = client
        .post(server.url("/v1/webhooks"))
        .bearer_auth(&acme)
        .json(&json!({"url": receiver.url, "carriers": ["beta"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);

    ingest(&env, "acme");
    ingest(&env, "beta");
    // Every acme event: the admin's stream says which there are.
    let mut everything = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while everything
        .iter()
        .filter(|e: &&SseEvent| e.event == "submission.completed")
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "events not published");
        let mut reader = SseReader::open(
            &client,
            &server.url("/v1/events?after=0"),
            Some(&admin),
            None,
        )
        .await;
        everything = reader.drain(Duration::from_secs(1)).await;
    }
    let acme_events: BTreeSet<String> = everything
        .iter()
        .filter(|e| e.data["carrier"] == "acme")
        .map(|e| format!("event-{}", e.id))
        .collect();
    assert!(everything.iter().any(|e| e.data["carrier"] == "beta"));

    let log = all_delivered(&client, &server, Some(&acme), id, acme_events.len()).await;
    assert_eq!(log.len(), acme_events.len(), "{log:#?}");
    for d in &log {
        assert_eq!(d["attempts"], 3, "{d}");
        let codes: Vec<&Value> = d["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["status_code"])
            .collect();
        assert_eq!(codes, [&json!(500), &json!(500), &json!(204)], "{d}");
        assert!(d["log"][0]["next_attempt_at"].is_string(), "{d}");
        assert!(
            d["log"][0]["error"].as_str().unwrap().contains("500"),
            "{d}"
        );
    }
    // The receiver verified every attempt with standardwebhooks, got each acme event (and no
    // other), and applied each once.
    let applied = effects(&receiver);
    assert_eq!(
        applied.keys().cloned().collect::<BTreeSet<_>>(),
        acme_events
    );
    assert!(applied.values().all(|n| *n == 1), "{applied:?}");
    assert!(receiver
        .lines()
        .iter()
        .filter(|l| l.get("carrier").is_some())
        .all(|l| l["carrier"] == "acme"));

    // A redelivery sends the same message again: same webhook-id, deduplicated.
    let first = &log[0];
    let r = client
        .post(server.url(&format!(
            "/v1/webhooks/{id}/deliveries/{}/redeliver",
            first["id"]
        )))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let d = deliveries(&client, &server, Some(&acme), id).await;
        let again = d.iter().find(|x| x["id"] == first["id"]).unwrap().clone();
        if again["status"] == "delivered" && again["attempts"] == 4 {
            break;
        }
        assert!(Instant::now() < deadline, "not redelivered: {again}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(effects(&receiver).values().all(|n| *n == 1));

    // Another caller does not see the webhook; the admin does; its creator deletes it.
    let other = key(&env, &["--role", "operator"]);
    let r = client
        .get(server.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let list: Value = client
        .get(server.url("/v1/webhooks"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let r = client
        .delete(server.url(&format!("/v1/webhooks/{id}")))
        .bearer_auth(&acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NO_CONTENT);

    // The metrics count deliveries by outcome.
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
        metrics.contains("carrierhub_webhook_deliveries_total{outcome=\"retry\"}"),
        "{metrics}"
    );
    assert!(metrics.contains("carrierhub_webhook_deliveries_total{outcome=\"delivered\"}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_sqlite() {
    let Some(python) = python() else { return };
    webhooks_are_signed_retried_scoped_and_applied_once(Env::new(), &python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_on_postgres() {
    let Some(python) = python() else { return };
    let Some(db) = TestDatabase::create_or_skip("events::webhooks_on_postgres").await else {
        return;
    };
    webhooks_are_signed_retried_scoped_and_applied_once(Env::with_database(db.url()), &python)
        .await;
}

async fn a_delivering_process_killed_mid_delivery_loses_nothing(env: Env, python: &str) {
    // Each answer takes a while, so that the kill lands while deliveries are in flight.
    let receiver = Receiver::start(python, &env, &["--delay", "1.0"]);
    let options = [
        "--webhooks-allow-private",
        "--webhook-timeout-secs",
        "3",
        "--webhook-backoff-ms",
        "100",
    ];
    let first = env.serve_with(&options);
    let client = Client::new();
    let created = create_webhook(&client, &first, None, &receiver, json!({})).await;
    let id = created["id"].as_i64().unwrap();
    ingest(&env, "acme");
    ingest(&env, "beta");
    // Kill the process once the receiver has requests in hand.
    let deadline = Instant::now() + Duration::from_secs(30);
    while receiver.lines().is_empty() {
        assert!(Instant::now() < deadline, "nothing was delivered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill();
    let in_flight = receiver.lines().len();
    assert!(in_flight > 0);

    let second = env.serve_with(&options);
    let mut reader = SseReader::open(&client, &second.url("/v1/events?after=0"), None, None).await;
    let mut everything = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while everything
        .iter()
        .filter(|e: &&SseEvent| e.event == "submission.completed")
        .count()
        < 2
    {
        assert!(
            Instant::now() < deadline,
            "events not published: {everything:?}"
        );
        everything.extend(reader.drain(Duration::from_secs(1)).await);
    }
    let expected: BTreeSet<String> = everything
        .iter()
        .map(|e| format!("event-{}", e.id))
        .collect();
    all_delivered(&client, &second, None, id, expected.len()).await;
    let once = effects(&receiver);
    assert_eq!(once.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(once.values().all(|n| *n == 1), "{once:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_deliverer_on_sqlite() {
    let Some(python) = python() else { return };
    a_delivering_process_killed_mid_delivery_loses_nothing(Env::new(), &python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_deliverer_on_postgres() {
    let Some(python) = python() else { return };
    let Some(db) = TestDatabase::create_or_skip("events::killed_deliverer_on_postgres").await
    else {
        return;
    };
    a_delivering_process_killed_mid_delivery_loses_nothing(Env::with_database(db.url()), &python)
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_to_private_addresses_are_refused_without_the_flag() {
    let env = Env::new();
    let server = env.serve();
    let client = Client::new();
    for url in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]:8080/hook",
        "http://localhost/hook",
    ] {
        let r = client
            .post(server.url("/v1/webhooks"))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
        assert_eq!(r.headers()["content-type"], "application/problem+json");
        let problem: Value = r.json().await.unwrap();
        assert_eq!(
            problem["type"], "https://carrierhub.dev/problems/webhook-url-refused",
            "{url}: {problem}"
        );
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("--webhooks-allow-private"),
            "{problem}"
        );
    }
    for url in [
        "ftp://example.com/x",
        "not a url",
        "http://user:pw@example.com/",
    ] {
        let r = client
            .post(server.url("/v1/webhooks"))
            .json(&json!({ "url": url }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY, "{url}");
    }
    let r = client
        .post(server.url("/v1/webhooks"))
        .json(&json!({ "url": "https://example.com/x", "event_types": ["policy.exploded"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let listed: Value = client
        .get(server.url("/v1/webhooks"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"], json!([]));
}

/// The events published so far (as the administrator's stream has them), once `completed`
/// submissions have completed.
async fn published(
    client: &Client,
    server: &Server,
    admin: &str,
    completed: usize,
) -> Vec<SseEvent> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut reader =
            SseReader::open(client, &server.url("/v1/events?after=0"), Some(admin), None).await;
        let all = reader.drain(Duration::from_secs(1)).await;
        if all
            .iter()
            .filter(|e| e.event == "submission.completed")
            .count()
            >= completed
        {
            return all;
        }
        assert!(Instant::now() < deadline, "events not published: {all:?}");
    }
}

fn event_ids(events: &[SseEvent], carrier: &str) -> BTreeSet<String> {
    events
        .iter()
        .filter(|e| e.data["carrier"] == carrier)
        .map(|e| format!("event-{}", e.id))
        .collect()
}

async fn post_json(
    client: &Client,
    url: String,
    token: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client.post(url).bearer_auth(token);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let r = request.send().await.unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// Uploads the acme feed for `carrier` to the server.
async fn upload(client: &Client, server: &Server, token: &str, carrier: &str) {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(common::ACME_FEED.to_vec()).file_name("feed.csv"),
        )
        .text("mapping_file", common::ACME_MAPPING);
    let r = client
        .post(server.url(&format!("/v1/carriers/{carrier}/submissions")))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::ACCEPTED);
}

async fn a_disabled_webhook_is_enabled_again_and_catches_up(env: Env, python: &str) {
    let acme = key(&env, &["--role", "carrier", "--carrier", "acme"]);
    let beta = key(&env, &["--role", "carrier", "--carrier", "beta"]);
    let admin = key(&env, &["--role", "admin"]);
    // The receiver answers 500 while this file exists.
    let down = env.path("receiver-down");
    std::fs::write(&down, "").unwrap();
    let receiver = Receiver::start(python, &env, &["--fail-while", down.to_str().unwrap()]);
    let server = env.serve_with(&[
        "--api-keys",
        "--webhooks-allow-private",
        "--webhook-backoff-ms",
        "100",
        "--webhook-disable-after-secs",
        "1",
    ]);
    let client = Client::new();
    let created = create_webhook(&client, &server, Some(&acme), &receiver, json!({})).await;
    let id = created["id"].as_i64().unwrap();
    let webhook_url = server.url(&format!("/v1/webhooks/{id}"));
    // Uploaded to the server, whose own worker processes the submissions.
    upload(&client, &server, &admin, "acme").await;
    upload(&client, &server, &admin, "beta").await;

    // Every delivery fails: after a second of that, the webhook is disabled.
    let deadline = Instant::now() + Duration::from_secs(30);
    let disabled = loop {
        let shown: Value = client
            .get(&webhook_url)
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if shown["disabled_at"].is_string() {
            break shown;
        }
        assert!(Instant::now() < deadline, "not disabled: {shown}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(disabled["failing_since"].is_string(), "{disabled}");
    assert!(disabled["disabled_reason"].is_string(), "{disabled}");
    // Events published while it is disabled are not queued for it.
    upload(&client, &server, &admin, "acme").await;
    let events = published(&client, &server, &admin, 3).await;
    let acme_events = event_ids(&events, "acme");
    let queued = deliveries(&client, &server, Some(&acme), id).await;
    assert!(queued.len() < acme_events.len(), "{queued:#?}");

    // Another carrier's key cannot enable it; a `since` that is no event or instant is
    // refused, naming the field.
    let enable_url = server.url(&format!("/v1/webhooks/{id}/enable"));
    let (status, _) = post_json(&client, enable_url.clone(), &beta, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    for since in [json!("yesterday"), json!(99_999_999), json!(-1)] {
        let (status, problem) = post_json(
            &client,
            enable_url.clone(),
            &acme,
            Some(json!({ "since": since })),
        )
        .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{since}: {problem}"
        );
        assert_eq!(problem["field"], "since", "{problem}");
    }

    // The receiver is back; enabled with a backfill from the first event, the webhook gets
    // every acme event, each once, and nothing of beta's.
    std::fs::remove_file(&down).unwrap();
    let (status, enabled) = post_json(
        &client,
        enable_url.clone(),
        &acme,
        Some(json!({ "since": 0 })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{enabled}");
    assert!(enabled["disabled_at"].is_null(), "{enabled}");
    assert!(enabled["disabled_reason"].is_null(), "{enabled}");
    assert!(enabled["failing_since"].is_null(), "{enabled}");
    assert_eq!(
        enabled["backfilled"],
        json!(acme_events.len() - queued.len()),
        "{enabled}"
    );
    let log = all_delivered(&client, &server, Some(&acme), id, acme_events.len()).await;
    assert_eq!(log.len(), acme_events.len());
    let applied = effects(&receiver);
    assert_eq!(
        applied.keys().cloned().collect::<BTreeSet<_>>(),
        acme_events
    );
    assert!(applied.values().all(|n| *n == 1), "{applied:?}");
    // Enabling again (without a body, or backfilling again) queues nothing twice.
    let (status, again) = post_json(&client, enable_url.clone(), &acme, None).await;
    assert_eq!((status, &again["backfilled"]), (StatusCode::OK, &json!(0)));
    let (_, again) = post_json(&client, enable_url, &acme, Some(json!({ "since": 0 }))).await;
    assert_eq!(again["backfilled"], 0, "{again}");

    // A new webhook with a backfill gets the past events of its scope at once: beta's
    // events after its first one, or from an instant on.
    let beta_events: Vec<&SseEvent> = events
        .iter()
        .filter(|e| e.data["carrier"] == "beta")
        .collect();
    let first = beta_events[0].id;
    let with_backfill = create_webhook(
        &client,
        &server,
        Some(&beta),
        &receiver,
        json!({ "since": first }),
    )
    .await;
    assert_eq!(
        with_backfill["backfilled"],
        json!(beta_events.len() - 1),
        "{with_backfill}"
    );
    let beta_id = with_backfill["id"].as_i64().unwrap();
    let log = all_delivered(
        &client,
        &server,
        Some(&beta),
        beta_id,
        beta_events.len() - 1,
    )
    .await;
    let sent: BTreeSet<i64> = log
        .iter()
        .map(|d| d["event_id"].as_i64().unwrap())
        .collect();
    let expected: BTreeSet<i64> = beta_events[1..].iter().map(|e| e.id).collect();
    assert_eq!(sent, expected);
    let (status, from_now) = post_json(
        &client,
        server.url("/v1/webhooks"),
        &beta,
        Some(json!({ "url": receiver.url, "since": chrono::Utc::now().to_rfc3339() })),
    )
    .await;
    assert_eq!(
        (status, &from_now["backfilled"]),
        (StatusCode::CREATED, &json!(0))
    );
    // A refused backfill creates nothing.
    let before: Value = client
        .get(server.url("/v1/webhooks"))
        .bearer_auth(&beta)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, _) = post_json(
        &client,
        server.url("/v1/webhooks"),
        &beta,
        Some(json!({ "url": receiver.url, "since": 99_999_999 })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let after: Value = client
        .get(server.url("/v1/webhooks"))
        .bearer_auth(&beta)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(before, after);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_and_backfill_on_sqlite() {
    let Some(python) = python() else { return };
    a_disabled_webhook_is_enabled_again_and_catches_up(Env::new(), &python).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enable_and_backfill_on_postgres() {
    let Some(python) = python() else { return };
    let Some(db) = TestDatabase::create_or_skip("events::enable_and_backfill_on_postgres").await
    else {
        return;
    };
    a_disabled_webhook_is_enabled_again_and_catches_up(Env::with_database(db.url()), &python).await;
}
