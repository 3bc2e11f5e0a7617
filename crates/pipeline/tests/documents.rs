//! Documents shared through the store (PostgreSQL): a process whose data directory lacks a
//! document fetches it from the store, verified and put in place atomically, and processes
//! or replays a submission another machine received. Without a PostgreSQL server the tests
//! skip with a notice, except under `CI=true`, where they fail.

use carrierhub_mapping::MappingSpec;
use carrierhub_model::CarrierId;
use carrierhub_pipeline::{Delivery, DocumentStore, NoProgress, Pipeline, PipelineError};
use carrierhub_store::testing::TestDatabase;
use carrierhub_store::{open_store, Store, StoreError, SubmissionStatus, DOCUMENT_CHUNK_BYTES};
use carrierhub_synth::{carrier, write_policy_feed, Defects, FeedOptions};
use sha2::{Digest, Sha256};
use std::path::Path;
use std::sync::Arc;

/// A process of its own: its own connections to the database, its own data directory.
async fn machine(url: &str, dir: &Path) -> Pipeline {
    let store: Arc<dyn Store> = open_store(url).await.unwrap();
    Pipeline::new(store, DocumentStore::new(dir.join("documents"))).with_batch_size(100)
}

fn files_in(dir: &Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_document_is_fetched_whole_and_verified_once_per_machine() {
    let Some(database) = TestDatabase::create_or_skip(
        "pipeline::a_document_is_fetched_whole_and_verified_once_per_machine",
    )
    .await
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let here = machine(database.url(), &tmp.path().join("a")).await;
    let elsewhere = machine(database.url(), &tmp.path().join("b")).await;

    // Several chunks, stored as receiving would.
    let bytes: Vec<u8> = (0..DOCUMENT_CHUNK_BYTES * 5 / 2)
        .map(|i| (i % 251) as u8)
        .collect();
    let sha = hex::encode(Sha256::digest(&bytes));
    assert!(here
        .store()
        .store_document_content(&sha, bytes.len() as u64, &mut &bytes[..])
        .await
        .unwrap());

    // Two fetches at once on the machine that lacks it: both end with the whole file.
    let documents = elsewhere.documents();
    let store = elsewhere.store().as_ref();
    let (a, b) = tokio::join!(
        documents.local_path(store, &sha),
        documents.local_path(store, &sha)
    );
    let path = a.unwrap();
    assert_eq!(path, b.unwrap());
    assert_eq!(path, documents.path_of(&sha));
    assert!(std::fs::read(&path).unwrap() == bytes);
    assert_eq!(
        files_in(&documents.incoming_dir()),
        0,
        "no temporary file left"
    );

    // Bytes that do not hash to their name are refused, and nothing is put in place.
    let wrong = "0".repeat(64);
    here.store()
        .store_document_content(&wrong, bytes.len() as u64, &mut &bytes[..])
        .await
        .unwrap();
    let err = documents.local_path(store, &wrong).await.unwrap_err();
    assert!(
        matches!(&err, PipelineError::Store(StoreError::Corrupt(m)) if m.contains(&sha)),
        "{err}"
    );
    assert!(!documents.path_of(&wrong).exists());
    assert_eq!(
        files_in(&documents.incoming_dir()),
        0,
        "no temporary file left"
    );

    // A document the store does not hold is not found, naming it.
    let missing = "f".repeat(64);
    let err = documents.local_path(store, &missing).await.unwrap_err();
    assert!(
        matches!(&err, PipelineError::Store(StoreError::NotFound(m)) if m.contains(&missing)),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submission_received_on_one_machine_is_processed_and_replayed_on_another() {
    let Some(database) = TestDatabase::create_or_skip(
        "pipeline::a_submission_received_on_one_machine_is_processed_and_replayed_on_another",
    )
    .await
    else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let api = machine(database.url(), &tmp.path().join("api")).await;
    let worker = machine(database.url(), &tmp.path().join("worker")).await;

    let profile = carrier("northwind").unwrap();
    let mut feed = Vec::new();
    write_policy_feed(
        &profile,
        &FeedOptions {
            policies: 300,
            seed: 5,
            delivery: 1,
            defects: Defects::default(),
        },
        &mut feed,
    )
    .unwrap();
    let file = tmp.path().join("northwind.csv");
    std::fs::write(&file, &feed).unwrap();
    let receipt = api
        .receive(Delivery {
            carrier: CarrierId::parse("northwind").unwrap(),
            mapping: MappingSpec::parse("northwind-policies", profile.policy_mapping).unwrap(),
            file_name: "northwind.csv".into(),
            path: file,
            spooled: false,
            received_via: "test".into(),
            replay_of: None,
        })
        .await
        .unwrap();
    let sha = &receipt.document.sha256;
    let fetched = worker.documents().path_of(sha);
    assert!(!fetched.exists());

    let done = worker
        .process(receipt.submission.id, "worker", Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!(done.status, SubmissionStatus::Completed, "{:?}", done.error);
    assert_eq!((done.counts.received, done.counts.inserted), (300, 300));
    assert!(std::fs::read(&fetched).unwrap() == feed);

    // A replay on a third machine reads the document from the store too.
    let third = machine(database.url(), &tmp.path().join("third")).await;
    let replay = third.replay(receipt.submission.id, None).await.unwrap();
    assert_eq!(&replay.document.sha256, sha);
    let done = third
        .process(replay.submission.id, "third", Arc::new(NoProgress))
        .await
        .unwrap();
    assert_eq!((done.counts.received, done.counts.unchanged), (300, 300));
}
