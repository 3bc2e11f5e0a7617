//! The binary with its broker: `/metrics` after an upload counts what was processed and
//! published, and `carrierhub dlq` lists, shows and redrives what the pipeline gave up on.

use crate::common;

use carrierhub_broker::{Broker, EmbeddedBroker, Outgoing};
use common::{Env, ACME_FEED, ACME_MAPPING};
use std::time::{Duration, Instant};

fn metric(text: &str, name_and_labels: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name_and_labels))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_records_and_events_and_dlq_handles_a_poison_message() {
    let env = Env::new();
    let server = env.serve();
    let client = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(ACME_FEED.to_vec()).file_name("acme.csv"),
        )
        .text("mapping_file", ACME_MAPPING);
    let r = client
        .post(server.url("/v1/carriers/acme/submissions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_i64()
        .unwrap();
    let done = server.wait_for_submission(&client, id).await;
    let inserted = done["counts"]["inserted"].as_f64().unwrap();
    assert!(inserted > 0.0, "{done}");

    // Every record and every event shows in the metrics, once the relay has caught up.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let records = metric(
            &text,
            r#"carrierhub_pipeline_records_total{carrier="acme",outcome="inserted"}"#,
        );
        // submission.received + one policy.created per policy + submission.completed
        let events = metric(&text, "carrierhub_events_published_total");
        // The lag gauge is refreshed every few seconds.
        let lag = metric(
            &text,
            r#"carrierhub_broker_consumer_lag_messages{group="pipeline",state="pending"}"#,
        );
        // The store's gauges are refreshed every few seconds too: the relay has caught up
        // and nothing waits for a webhook.
        let relay_lag = metric(&text, "carrierhub_relay_lag_events ");
        let queue = metric(&text, r#"carrierhub_webhook_queue_deliveries{state="due"}"#);
        if records == Some(inserted)
            && events == Some(inserted + 2.0)
            && lag == Some(0.0)
            && relay_lag == Some(0.0)
            && queue == Some(0.0)
        {
            assert_eq!(metric(&text, "carrierhub_relay_lag_seconds "), Some(0.0));
            // One submission received and completed; its rejected records counted.
            for outcome in ["received", "completed"] {
                assert_eq!(
                    metric(
                        &text,
                        &format!(
                            r#"carrierhub_submissions_total{{carrier="acme",outcome="{outcome}"}}"#
                        )
                    ),
                    Some(1.0),
                    "{outcome}:\n{text}"
                );
            }
            assert_eq!(
                metric(
                    &text,
                    r#"carrierhub_submissions_total{carrier="acme",outcome="failed"}"#
                ),
                None
            );
            assert_eq!(
                metric(
                    &text,
                    r#"carrierhub_pipeline_records_total{carrier="acme",outcome="rejected"}"#
                ),
                done["counts"]["rejected"].as_f64(),
                "{text}"
            );
            // The upload, by its declared route.
            assert_eq!(
                metric(
                    &text,
                    r#"carrierhub_http_requests_total{method="POST",route="/v1/carriers/{carrier}/submissions",status="202"}"#
                ),
                Some(1.0),
                "{text}"
            );
            // The SQLite store's pools: readers and the one writing connection.
            let max_read = metric(&text, r#"carrierhub_db_pool_max_connections{pool="read"}"#);
            assert!(max_read.is_some_and(|n| n >= 1.0), "{text}");
            assert_eq!(
                metric(&text, r#"carrierhub_db_pool_max_connections{pool="write"}"#),
                Some(1.0)
            );
            let idle = metric(
                &text,
                r#"carrierhub_db_pool_connections{pool="read",state="idle"}"#,
            );
            let in_use = metric(
                &text,
                r#"carrierhub_db_pool_connections{pool="read",state="in_use"}"#,
            );
            assert!(
                idle.zip(in_use)
                    .is_some_and(|(i, u)| i + u <= max_read.unwrap()),
                "{text}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "metrics never showed {inserted} records, {} events and no lag:\n{text}",
            inserted + 2.0
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A message no worker can read becomes a dead letter; the pipeline goes on.
    let store = env.data_dir().join("carrierhub.db");
    let broker = EmbeddedBroker::open(store.to_str().unwrap()).await.unwrap();
    broker
        .publish(Outgoing::new(
            "events.submission.received.acme",
            "poison-1",
            b"{\"data\":{}}".to_vec(),
        ))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    let listed = loop {
        let out = env.run(&["dlq", "list", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).unwrap();
        if !text.trim().is_empty() {
            break text;
        }
        assert!(Instant::now() < deadline, "no dead letter appeared");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let letter: serde_json::Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(letter["message_id"], "poison-1");
    assert_eq!(letter["group"], "pipeline");
    assert!(
        letter["reason"]
            .as_str()
            .unwrap()
            .contains("not a submission.received event"),
        "{letter}"
    );
    let dead_id = letter["id"].as_u64().unwrap().to_string();

    let out = env.run(&["dlq", "show", &dead_id]);
    assert!(out.status.success());
    let shown: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["payload"], serde_json::json!({"data": {}}));

    let out = env.run(&["dlq", "redrive", &dead_id]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("published again"));
    // Still unreadable: it comes back as a new dead letter, with a new message id.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let out = env.run(&["dlq", "list", "--json"]);
        let text = String::from_utf8(out.stdout).unwrap();
        let ids: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if ids.len() == 1
            && ids[0]["id"].as_u64().map(|n| n.to_string()).as_deref() != Some(dead_id.as_str())
        {
            assert_ne!(ids[0]["message_id"], "poison-1");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the redriven message did not come back: {text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let out = env.run(&["dlq", "show", &dead_id]);
    assert!(!out.status.success(), "a redriven dead letter is gone");
    let metrics = client
        .get(server.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(
            &metrics,
            r#"carrierhub_dead_letters_total{group="pipeline"}"#
        ),
        Some(2.0),
        "{metrics}"
    );
}

/// A process without the relay: the submission's event waits in the outbox, and the relay's
/// lag says so (one event, older than zero seconds), as the webhooks' queue stays empty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn relay_lag_counts_the_events_nobody_published() {
    let env = Env::new();
    let server = env.serve_with(&["--role", "api"]);
    let client = reqwest::Client::new();
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(ACME_FEED.to_vec()).file_name("acme.csv"),
        )
        .text("mapping_file", ACME_MAPPING);
    let r = client
        .post(server.url("/v1/carriers/acme/submissions"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let text = client
            .get(server.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let events = metric(&text, "carrierhub_relay_lag_events ");
        let seconds = metric(&text, "carrierhub_relay_lag_seconds ");
        if events == Some(1.0) && seconds.is_some_and(|s| s > 0.0) {
            assert_eq!(
                metric(
                    &text,
                    r#"carrierhub_submissions_total{carrier="acme",outcome="received"}"#
                ),
                Some(1.0)
            );
            assert_eq!(
                metric(&text, r#"carrierhub_webhook_queue_deliveries{state="due"}"#),
                Some(0.0)
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the relay's lag never showed the unpublished event:\n{text}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
