//! The worker as a broker consumer, on the embedded broker: it processes what the relay
//! publishes, and gives up on a submission whose workers keep dying, which then becomes a dead
//! letter with the reason, blocking neither the carrier's later submissions nor anything else.

use carrierhub_broker::{Broker, EmbeddedBroker, Outgoing};
use carrierhub_mapping::MappingSpec;
use carrierhub_model::CarrierId;
use carrierhub_pipeline::{
    Delivery, DocumentStore, Pipeline, Relay, Worker, WorkerConfig, WORKER_GROUP,
};
use carrierhub_store::Scope;
use carrierhub_store::{SqliteStore, Store, SubmissionStatus};
use carrierhub_synth::{carrier, write_policy_feed, Defects, FeedOptions};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

struct Setup {
    _dir: tempfile::TempDir,
    store: Arc<dyn Store>,
    broker: Arc<dyn Broker>,
    pipeline: Pipeline,
    feed: std::path::PathBuf,
    mapping: MappingSpec,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("hub.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).await.unwrap());
    let broker: Arc<dyn Broker> =
        Arc::new(EmbeddedBroker::open(db.to_str().unwrap()).await.unwrap());
    let pipeline = Pipeline::new(
        store.clone(),
        DocumentStore::new(dir.path().join("documents")),
    )
    .with_batch_size(100)
    .with_lease(Duration::from_millis(600));
    let profile = carrier("northwind").unwrap();
    let mut bytes = Vec::new();
    write_policy_feed(
        &profile,
        &FeedOptions {
            policies: 300,
            seed: 3,
            delivery: 1,
            defects: Defects::default(),
        },
        &mut bytes,
    )
    .unwrap();
    let feed = dir.path().join("northwind.csv");
    std::fs::write(&feed, bytes).unwrap();
    let mapping = MappingSpec::parse("northwind-policies", profile.policy_mapping).unwrap();
    Setup {
        _dir: dir,
        store,
        broker,
        pipeline,
        feed,
        mapping,
    }
}

async fn receive(s: &Setup, path: &Path) -> i64 {
    s.pipeline
        .receive(Delivery {
            carrier: CarrierId::parse("northwind").unwrap(),
            mapping: s.mapping.clone(),
            file_name: "northwind.csv".into(),
            path: path.to_owned(),
            spooled: false,
            received_via: "test".into(),
            replay_of: None,
        })
        .await
        .unwrap()
        .submission
        .id
}

async fn wait_for(store: &Arc<dyn Store>, id: i64) -> carrierhub_store::Submission {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s = store
            .get_submission(id, &Scope::all())
            .await
            .unwrap()
            .unwrap();
        if matches!(
            s.status,
            SubmissionStatus::Completed | SubmissionStatus::Failed
        ) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "submission {id} not finished: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn config(max_attempts: u32) -> WorkerConfig {
    WorkerConfig {
        concurrency: 2,
        ack_wait: Duration::from_millis(600),
        max_attempts,
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(200),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_whose_workers_keep_dying_is_given_up_and_blocks_nothing() {
    let s = setup().await;
    let doomed = receive(&s, &s.feed).await;
    // Two workers took it and died (their leases lapse unrenewed).
    for dead in ["w-dead-1", "w-dead-2"] {
        s.store
            .claim_submission(doomed, dead, Duration::from_millis(1))
            .await
            .unwrap()
            .claimed()
            .expect("claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // A later submission of the same carrier waits for the doomed one, then goes on.
    let later = receive(&s, &s.feed).await;
    // And a message that is no submission event at all.
    s.broker
        .publish(Outgoing::new(
            "events.submission.received.northwind",
            "garbage-1",
            b"not json".to_vec(),
        ))
        .await
        .unwrap();

    tokio::spawn(Relay::new(s.store.clone(), s.broker.clone()).run());
    tokio::spawn(Worker::new(s.pipeline.clone(), s.broker.clone(), config(2)).run());

    let given_up = wait_for(&s.store, doomed).await;
    assert_eq!(given_up.status, SubmissionStatus::Failed);
    assert_eq!(given_up.attempts, 3);
    let reason = given_up.error.unwrap();
    assert!(
        reason.contains("given up after 3 attempts") && reason.contains("died"),
        "{reason}"
    );
    let done = wait_for(&s.store, later).await;
    assert_eq!(done.status, SubmissionStatus::Completed);
    // The doomed one wrote nothing, so the later one inserts every policy.
    assert_eq!(done.counts.inserted, 300, "{:?}", done.counts);

    let deadline = Instant::now() + Duration::from_secs(10);
    let letters = loop {
        let letters = s.broker.dead_letters(0, 10).await.unwrap();
        if letters.len() == 2 || Instant::now() > deadline {
            break letters;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(letters.len(), 2, "{letters:?}");
    assert!(letters.iter().all(|l| l.group == WORKER_GROUP));
    let garbage = letters
        .iter()
        .find(|l| l.message_id == "garbage-1")
        .unwrap();
    assert!(
        garbage.reason.contains("not a submission.received event"),
        "{}",
        garbage.reason
    );
    let doomed_letter = letters
        .iter()
        .find(|l| l.message_id != "garbage-1")
        .unwrap();
    assert_eq!(doomed_letter.reason, reason);
    let body: serde_json::Value = serde_json::from_slice(&doomed_letter.payload).unwrap();
    assert_eq!(body["data"]["submission_id"], doomed);

    // Redriven (as `carrierhub dlq redrive` does): receivable again, processed, resumed.
    s.store.requeue_submission(doomed).await.unwrap();
    s.broker.redrive(doomed_letter.id).await.unwrap().unwrap();
    let redriven = wait_for(&s.store, doomed).await;
    assert_eq!(redriven.status, SubmissionStatus::Completed, "{redriven:?}");
    // The same file, after the later submission: nothing changes.
    assert_eq!(redriven.counts.received, 300);
    assert_eq!(redriven.counts.unchanged, 300, "{:?}", redriven.counts);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submissions_are_processed_from_their_events_and_changes_published() {
    let s = setup().await;
    let first = receive(&s, &s.feed).await;
    let mut subscriber = s
        .broker
        .consumer(carrierhub_broker::ConsumerConfig::new(
            "audit",
            "events.policy.>",
        ))
        .await
        .unwrap();
    tokio::spawn(Relay::new(s.store.clone(), s.broker.clone()).run());
    tokio::spawn(Worker::new(s.pipeline.clone(), s.broker.clone(), config(5)).run());
    let done = wait_for(&s.store, first).await;
    assert_eq!(done.status, SubmissionStatus::Completed);
    assert_eq!(done.counts.inserted, 300);
    assert!(done
        .message_id
        .as_deref()
        .is_some_and(|m| m.starts_with("event-")));
    let mut created = 0;
    while created < 300 {
        let d = subscriber
            .next(Duration::from_secs(10))
            .await
            .unwrap()
            .expect("every policy.created event");
        assert!(d.message.subject.starts_with("events.policy.created."));
        let body: serde_json::Value = serde_json::from_slice(&d.message.payload).unwrap();
        assert_eq!(body["type"], "policy.created");
        assert_eq!(body["carrier"], "northwind");
        assert_eq!(d.message.id, body["id"]);
        created += 1;
        d.ack().await.unwrap();
    }
    assert!(subscriber
        .next(Duration::from_millis(500))
        .await
        .unwrap()
        .is_none());
}
